//! The watched folder: rescan on start, rename into place, in-place writes once stable,
//! deletions, and a folder created after the watcher started.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bourse_wasm::watch::{DirEvent, PluginDirWatcher, WatchTiming};

use crate::support::*;

const TIMING: WatchTiming = WatchTiming {
    settle: Duration::from_millis(100),
    rescan: Duration::from_millis(500),
};

/// Waits up to thirty seconds for `check` to hold: an install compiles on the watcher's thread,
/// at a low priority, which a machine busy with other tests serves last.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn version_of(f: &Fixture) -> Option<String> {
    f.registry
        .hooks("floor-rule")
        .map(|h| h.version().to_string())
}

fn put_by_rename(dir: &Path, name: &str, bytes: &[u8]) {
    let staging = dir.join(format!(".{name}.tmp"));
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, dir.join(name)).unwrap();
}

#[test]
fn the_folder_is_followed_from_start_to_removal() {
    let f = default_fixture();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    // Present before the watcher starts: installed by the first scan.
    std::fs::write(dir.join("floor-rule.plugin"), signed("floor-rule")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a plugin").unwrap();
    let _watcher = PluginDirWatcher::follow(&dir, TIMING, f.registry.clone()).unwrap();
    eventually("the first install", || {
        version_of(&f).as_deref() == Some("1.0.0")
    });

    // A new version renamed into place.
    put_by_rename(
        &dir,
        "floor-rule.plugin",
        &signed_with("floor-rule-v2", &[("version", "\"1.1.0\"")]),
    );
    eventually("the renamed version", || {
        version_of(&f).as_deref() == Some("1.1.0")
    });

    // Rewritten in place.
    std::fs::write(
        dir.join("floor-rule.plugin"),
        signed_with("floor-rule", &[("version", "\"1.2.0\"")]),
    )
    .unwrap();
    eventually("the rewritten version", || {
        version_of(&f).as_deref() == Some("1.2.0")
    });

    // A refused file leaves the running version in place.
    std::fs::write(dir.join("unsigned.plugin"), module("floor-rule")).unwrap();
    eventually("the refusal", || {
        f.counter("bourse_wasm_refusals_total", &[("reason", "unsigned")]) == 1.0
    });
    assert_eq!(version_of(&f).as_deref(), Some("1.2.0"));

    // The file now holds another plugin: the floor rule it held is removed.
    std::fs::write(dir.join("floor-rule.plugin"), signed("brand-safety")).unwrap();
    eventually("the other plugin", || {
        f.registry.hooks("brand-safety").is_some()
    });
    eventually("the floor rule's removal", || version_of(&f).is_none());

    std::fs::remove_file(dir.join("floor-rule.plugin")).unwrap();
    eventually("the removal", || f.registry.status().is_empty());
}

#[test]
fn a_folder_created_after_start_is_watched() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("later");
    let (events, received) = mpsc::channel();
    let _watcher = PluginDirWatcher::start(&dir, TIMING, move |e| {
        let _ = events.send(e);
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    std::fs::create_dir(&dir).unwrap();
    put_by_rename(&dir, "a.plugin", b"content");
    let event = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(event, DirEvent::Install(dir.join("a.plugin")));
    std::fs::remove_file(dir.join("a.plugin")).unwrap();
    let event = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(event, DirEvent::Remove(dir.join("a.plugin")));
}

#[test]
fn a_file_still_growing_is_not_installed_until_it_settles() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().to_owned();
    let (events, received) = mpsc::channel();
    // A settle interval far longer than the gaps between writes, even on a busy machine.
    let timing = WatchTiming {
        settle: Duration::from_secs(2),
        rescan: Duration::from_secs(5),
    };
    let _watcher = PluginDirWatcher::start(&dir, timing, move |e| {
        let _ = events.send(e);
    })
    .unwrap();
    let path = dir.join("slow.plugin");
    let mut file = std::fs::File::create(&path).unwrap();
    // Grows every 20 ms for a fifth of a second: never unchanged for the settle interval.
    for _ in 0..10 {
        use std::io::Write;
        file.write_all(&[7; 1000]).unwrap();
        file.flush().unwrap();
        assert!(
            received.try_recv().is_err(),
            "installed while still growing"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(file);
    let event = received.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(event, DirEvent::Install(path.clone()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 10_000);
}
