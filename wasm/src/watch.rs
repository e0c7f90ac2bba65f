//! The watched plugin folder: artifacts (`*.plugin`) dropped in, replaced or deleted become
//! install and remove events, once each file is stable.
//!
//! Both the folder and its parent are watched (`notify`), so the folder may be created,
//! deleted or swapped for another after start. A file counts as stable when its size and
//! modification time have not changed for one settle interval, or at once when it
//! was renamed into place (the safe way to deploy). Every start rescans the folder, and a scan
//! also runs periodically in case an event was missed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::artifact::ARTIFACT_SUFFIX;
use crate::registry::Registry;

/// A change of the watched folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirEvent {
    /// A new or changed artifact, stable.
    Install(PathBuf),
    /// An artifact that was installed from this path is gone.
    Remove(PathBuf),
}

/// Timing of the watcher.
#[derive(Clone, Copy, Debug)]
pub struct WatchTiming {
    /// How long a file's size and modification time must stay the same for it to be stable.
    pub settle: Duration,
    /// Scan at least this often even without events.
    pub rescan: Duration,
}

impl Default for WatchTiming {
    fn default() -> Self {
        WatchTiming {
            settle: Duration::from_millis(250),
            rescan: Duration::from_secs(5),
        }
    }
}

/// Watches a plugin folder until dropped.
pub struct PluginDirWatcher {
    stop: Arc<AtomicBool>,
    poke: Sender<Poke>,
    thread: Option<JoinHandle<()>>,
}

enum Poke {
    Changed,
    RenamedInto(PathBuf),
}

impl Drop for PluginDirWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.poke.send(Poke::Changed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Stat of one file: what must not change between two scans.
type Stamp = (u64, Option<SystemTime>);

impl PluginDirWatcher {
    /// Starts watching `dir` (which need not exist yet); every event goes to `on_event`, on
    /// the watcher's own thread, in order.
    pub fn start(
        dir: &Path,
        timing: WatchTiming,
        on_event: impl FnMut(DirEvent) + Send + 'static,
    ) -> Result<PluginDirWatcher, notify::Error> {
        let dir = absolute(dir);
        let parent = dir
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| dir.clone());
        let (poke, pokes) = mpsc::channel();
        let notify_poke = poke.clone();
        let watched_dir = dir.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else {
                    let _ = notify_poke.send(Poke::Changed);
                    return;
                };
                let renamed = matches!(
                    event.kind,
                    EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                );
                for path in &event.paths {
                    if renamed && path.parent() == Some(watched_dir.as_path()) {
                        let _ = notify_poke.send(Poke::RenamedInto(path.clone()));
                    }
                }
                let _ = notify_poke.send(Poke::Changed);
            })?;
        if parent.is_dir() {
            watcher.watch(&parent, RecursiveMode::NonRecursive)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wasm-plugin-dir".into())
                .spawn(move || {
                    // Installs compile and warm on this thread: at a low priority (nice 10, about
                    // a tenth of a busy core's share), so that on a busy machine a swap takes
                    // longer rather than slowing auctions, and still ends.
                    if let Err(e) = rustix::process::setpriority_process(None, 10) {
                        tracing::debug!(error = %e, "the plugin folder's thread keeps its priority");
                    }
                    let mut scanner = Scanner::new(dir, watcher, timing);
                    scanner.run(&pokes, &stop, on_event);
                })
                .map_err(|e| notify::Error::generic(&e.to_string()))?
        };
        Ok(PluginDirWatcher {
            stop,
            poke,
            thread: Some(thread),
        })
    }

    /// Starts watching `dir` and applies each event to `registry`: installs (never forced)
    /// and removals of plugins installed from a deleted file.
    pub fn follow(
        dir: &Path,
        timing: WatchTiming,
        registry: Arc<Registry>,
    ) -> Result<PluginDirWatcher, notify::Error> {
        Self::start(dir, timing, move |event| match event {
            DirEvent::Install(path) => {
                let before = registry.name_of_source(&path);
                // A refusal is counted and logged by the registry; the running version stays.
                if let Ok(installed) = registry.install_file(&path, false)
                    && let Some(before) = before.filter(|b| *b != installed.name)
                {
                    // The file now holds another plugin: the one it held is gone.
                    let _ = registry.remove(&before);
                }
            }
            DirEvent::Remove(path) => {
                if let Some(name) = registry.name_of_source(&path) {
                    let _ = registry.remove(&name);
                }
            }
        })
    }
}

fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

struct Scanner {
    dir: PathBuf,
    watcher: RecommendedWatcher,
    dir_watched: bool,
    timing: WatchTiming,
    /// Last stamp seen per file, and since when it has been unchanged.
    seen: HashMap<PathBuf, (Stamp, Instant)>,
    /// Stamp each installed file had when its install event went out.
    emitted: HashMap<PathBuf, Stamp>,
    renamed: HashSet<PathBuf>,
}

impl Scanner {
    fn new(dir: PathBuf, watcher: RecommendedWatcher, timing: WatchTiming) -> Self {
        Scanner {
            dir,
            watcher,
            dir_watched: false,
            timing,
            seen: HashMap::new(),
            emitted: HashMap::new(),
            renamed: HashSet::new(),
        }
    }

    fn run(
        &mut self,
        pokes: &Receiver<Poke>,
        stop: &AtomicBool,
        mut on_event: impl FnMut(DirEvent),
    ) {
        let mut events = Vec::new();
        loop {
            self.scan(&mut events);
            for event in events.drain(..) {
                on_event(event);
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // While a file is settling, look again after one settle interval.
            let unsettled = self
                .seen
                .iter()
                .any(|(p, (s, _))| self.emitted.get(p) != Some(s));
            let wait = if unsettled {
                self.timing.settle
            } else {
                self.timing.rescan
            };
            match pokes.recv_timeout(wait) {
                Ok(poke) => {
                    self.take(poke);
                    // Let a burst of events land before scanning once for all of them.
                    std::thread::sleep(Duration::from_millis(20));
                    while let Ok(poke) = pokes.try_recv() {
                        self.take(poke);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    fn take(&mut self, poke: Poke) {
        if let Poke::RenamedInto(path) = poke {
            self.renamed.insert(path);
        }
    }

    fn scan(&mut self, events: &mut Vec<DirEvent>) {
        let exists = self.dir.is_dir();
        if exists && !self.dir_watched {
            self.dir_watched = self
                .watcher
                .watch(&self.dir, RecursiveMode::NonRecursive)
                .is_ok();
        } else if !exists {
            self.dir_watched = false;
        }
        let scanned_at = Instant::now();
        let mut now = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let is_artifact = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(ARTIFACT_SUFFIX) && !n.starts_with('.'));
                let Ok(meta) = entry.metadata() else { continue };
                if is_artifact && meta.is_file() {
                    now.insert(path, (meta.len(), meta.modified().ok()));
                }
            }
        }
        let mut seen = HashMap::with_capacity(now.len());
        for (path, stamp) in &now {
            let since = match self.seen.get(path) {
                Some((previous, since)) if previous == stamp => *since,
                _ => scanned_at,
            };
            seen.insert(path.clone(), (*stamp, since));
            if self.emitted.get(path) == Some(stamp) {
                continue;
            }
            let stable = scanned_at.duration_since(since) >= self.timing.settle
                || self.renamed.contains(path);
            if stable {
                self.emitted.insert(path.clone(), *stamp);
                events.push(DirEvent::Install(path.clone()));
            }
        }
        let gone: Vec<PathBuf> = self
            .emitted
            .keys()
            .filter(|p| !now.contains_key(*p))
            .cloned()
            .collect();
        for path in gone {
            self.emitted.remove(&path);
            events.push(DirEvent::Remove(path));
        }
        self.renamed.clear();
        self.seen = seen;
    }
}
