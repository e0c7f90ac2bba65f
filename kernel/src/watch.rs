//! Watching the config file: every saved change, including an editor's write-to-temp-then-rename,
//! becomes one reload.
//!
//! The parent directory is watched, not the file: a rename replaces the file's inode, and a
//! watch on the old inode would go quiet. Every event in the directory triggers a rescan that
//! compares the file's bytes with the last ones seen, so bursts of events (temp file written,
//! renamed, attributes changed) settle into at most one reload, and unrelated files in the
//! directory cost a read and nothing else.

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long to wait for a burst of file-system events to end before rescanning.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// A running watch on one config file.
pub(crate) struct ConfigWatcher {
    /// Kept alive: dropping it ends the watch.
    _watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<()>,
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl ConfigWatcher {
    /// Starts watching `path`'s directory. `applied` is the text the running config was
    /// loaded from: if the file already differs (saved between loading and watching), that
    /// counts as the first change.
    pub(crate) fn start(path: &Path, applied: Option<&str>) -> notify::Result<ConfigWatcher> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let (tx, events) = mpsc::unbounded_channel();
        let tx_initial = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        let last = match applied {
            Some(text) => Some(text.as_bytes().to_vec()),
            None => std::fs::read(&path).ok(),
        };
        // One rescan now catches a save that happened before the watch began.
        let _ = tx_initial.send(());
        Ok(ConfigWatcher {
            _watcher: watcher,
            events,
            last,
            path,
        })
    }

    /// Waits for the file's bytes to change (or to appear after a removal); `None` once the
    /// watch has ended.
    async fn next_change(&mut self) -> Option<()> {
        loop {
            self.events.recv().await?;
            tokio::time::sleep(DEBOUNCE).await;
            while self.events.try_recv().is_ok() {}
            // A file caught between an editor's delete and its rename reads as missing: that
            // is no change yet, the next event brings the new file.
            let Ok(current) = std::fs::read(&self.path) else {
                continue;
            };
            if self.last.as_ref() != Some(&current) {
                self.last = Some(current);
                return Some(());
            }
        }
    }
}

/// The next change of the watched file, or never when there is no watcher (for `select!`).
pub(crate) async fn changed(watcher: &mut Option<ConfigWatcher>) -> Option<()> {
    match watcher {
        Some(watcher) => watcher.next_change().await,
        None => std::future::pending().await,
    }
}
