//! Hot swap, standby and rollback, removal, and memory across many swaps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bourse_wasm::{InstallOptions, LifecycleError, PluginState, Registry};

use crate::support::*;

/// The floor each build answers for the USA at noon.
const V1_FLOOR: f64 = 1.5;
const V2_FLOOR: f64 = 2.5;

/// Version `1.0.n` of the floor rule: the first table for odd `n`, the second for even.
fn version(n: u64) -> Vec<u8> {
    let build = if n % 2 == 1 {
        "floor-rule"
    } else {
        "floor-rule-v2"
    };
    // The widest time per call: these tests judge swaps and memory, and on a loaded 2-core
    // machine a call's first touch of a fresh instance (page faults count as its CPU time) can
    // pass the example's 5 ms while a hundred modules compile beside it. Time limits have
    // their own tests (limits.rs).
    signed_with(
        build,
        &[
            ("version", &format!("\"1.0.{n}\"")),
            ("time-per-call-ms", "1000"),
        ],
    )
}

fn expected_floor(patch: u64) -> f64 {
    if patch % 2 == 1 { V1_FLOOR } else { V2_FLOOR }
}

/// Callers hammering the floor rule while versions are swapped under them. Each call checks
/// that it succeeded, and that its version is at least the last one whose install had
/// returned before the call began, with that version's rule.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Load {
    fn start(registry: Arc<Registry>, installed: Arc<AtomicU64>, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (registry, installed, stop) =
                    (registry.clone(), installed.clone(), stop.clone());
                std::thread::spawn(move || {
                    let context = floor_context("USA", 12, 0.1);
                    let mut calls = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let at_least = installed.load(Ordering::Acquire);
                        let hooks = registry.hooks("floor-rule").expect("always installed");
                        let patch = hooks.version().patch;
                        let floor = hooks.floor(&context).expect("no call fails during swaps");
                        assert!(
                            patch >= at_least,
                            "version 1.0.{patch} after 1.0.{at_least} was in"
                        );
                        assert_eq!(floor, expected_floor(patch), "version 1.0.{patch}");
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("a caller failed"))
            .sum()
    }
}

#[test]
fn swaps_under_load_fail_no_call_and_take_effect_at_once() {
    let f = default_fixture();
    f.registry
        .install(&version(1), InstallOptions::default())
        .unwrap();
    let installed = Arc::new(AtomicU64::new(1));
    let load = Load::start(f.registry.clone(), installed.clone(), 2);
    for n in 2..=6 {
        std::thread::sleep(Duration::from_millis(20));
        let outcome = f
            .registry
            .install(&version(n), InstallOptions::default())
            .unwrap();
        assert_eq!(outcome.replaced.unwrap().patch, n - 1);
        installed.store(n, Ordering::Release);
    }
    std::thread::sleep(Duration::from_millis(20));
    let calls = load.stop();
    assert!(calls > 0);
    let status = &f.registry.status()[0];
    assert_eq!(
        (status.version.patch, status.standby.as_ref().unwrap().patch),
        (6, 5)
    );
    assert_eq!(
        f.counter("bourse_wasm_swaps_total", &[("plugin", "floor-rule")]),
        6.0
    );
    assert_eq!(
        f.counter(
            "bourse_wasm_calls_total",
            &[("plugin", "floor-rule"), ("hook", "floor_rule")]
        ),
        // Every caller's calls plus one warm-up probe per version.
        (calls + 6) as f64
    );
}

#[test]
fn rollback_swaps_active_and_standby() {
    let f = default_fixture();
    let floor = || {
        f.registry
            .hooks("floor-rule")
            .unwrap()
            .floor(&floor_context("USA", 12, 0.1))
            .unwrap()
    };
    assert_eq!(
        f.registry.rollback("floor-rule"),
        Err(LifecycleError::Unknown("floor-rule".into()))
    );
    f.registry
        .install(&version(1), InstallOptions::default())
        .unwrap();
    assert_eq!(
        f.registry.rollback("floor-rule"),
        Err(LifecycleError::NoStandby("floor-rule".into()))
    );
    f.registry
        .install(&version(2), InstallOptions::default())
        .unwrap();
    assert_eq!(floor(), V2_FLOOR);
    assert_eq!(f.registry.rollback("floor-rule").unwrap().patch, 1);
    assert_eq!(floor(), V1_FLOOR);
    assert_eq!(f.registry.status()[0].standby.as_ref().unwrap().patch, 2);
    // Rolling back again returns to the newer version.
    assert_eq!(f.registry.rollback("floor-rule").unwrap().patch, 2);
    assert_eq!(floor(), V2_FLOOR);
    let states: Vec<PluginState> = f.registry.events().iter().map(|e| e.state).collect();
    for state in [
        PluginState::Discovered,
        PluginState::Verifying,
        PluginState::Compiling,
        PluginState::Warming,
        PluginState::Active,
        PluginState::Draining,
        PluginState::Standby,
    ] {
        assert!(states.contains(&state), "no {state:?} in {states:?}");
    }
}

#[test]
fn a_third_version_retires_the_first() {
    let f = default_fixture();
    for n in 1..=3 {
        f.registry
            .install(&version(n), InstallOptions::default())
            .unwrap();
    }
    let retired: Vec<u64> = f
        .registry
        .events()
        .iter()
        .filter(|e| e.state == PluginState::Retired)
        .map(|e| e.version.as_ref().unwrap().patch)
        .collect();
    assert_eq!(retired, [1]);
}

#[test]
fn removal_stops_calls_and_forgets_the_series() {
    let f = default_fixture();
    f.registry
        .install(&version(1), InstallOptions::default())
        .unwrap();
    let held = f.registry.hooks("floor-rule").unwrap();
    assert!(f.has_series("bourse_wasm_calls_total", "plugin", "floor-rule"));
    f.registry.remove("floor-rule").unwrap();
    assert!(f.registry.hooks("floor-rule").is_none());
    assert!(f.registry.status().is_empty());
    assert!(!f.has_series("bourse_wasm_calls_total", "plugin", "floor-rule"));
    assert!(!f.has_series("bourse_wasm_plugin_state", "plugin", "floor-rule"));
    // A request that took the handle before the removal finishes on it.
    assert_eq!(
        held.floor(&floor_context("USA", 12, 0.1)).unwrap(),
        V1_FLOOR
    );
    assert_eq!(
        f.registry.remove("floor-rule"),
        Err(LifecycleError::Unknown("floor-rule".into()))
    );
    // Installing again starts from scratch: any version is accepted.
    f.registry
        .install(
            &signed_with("floor-rule", &[("version", "\"0.1.0\"")]),
            InstallOptions::default(),
        )
        .unwrap();
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

const SWAPS: u64 = 100;
const CHILD: &str = "BOURSE_WASM_SWAP_MEMORY_CHILD";

/// Runs in a process of its own (this test re-runs itself), so that no other test's memory is
/// counted.
#[test]
fn memory_after_a_hundred_swaps_stays_within_ten_percent_of_after_the_first() {
    if std::env::var_os(CHILD).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lifecycle::memory_after_a_hundred_swaps_stays_within_ten_percent_of_after_the_first", "--nocapture"])
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the swap-memory run failed");
        return;
    }
    let f = default_fixture();
    let artifacts: Vec<Vec<u8>> = (1..=SWAPS + 1).map(version).collect();
    f.registry
        .install(&artifacts[0], InstallOptions::default())
        .unwrap();
    let installed = Arc::new(AtomicU64::new(1));
    let load = Load::start(f.registry.clone(), installed.clone(), 2);
    let mut after_first = 0;
    for n in 2..=SWAPS + 1 {
        f.registry
            .install(&artifacts[n as usize - 1], InstallOptions::default())
            .unwrap();
        installed.store(n, Ordering::Release);
        if n == 2 {
            after_first = resident_bytes();
        }
    }
    let after_last = resident_bytes();
    let calls = load.stop();
    eprintln!(
        "resident after the first swap {after_first} B, after the {SWAPS}th {after_last} B; {calls} calls"
    );
    assert!(calls > 0);
    assert!(
        (after_last as f64) <= after_first as f64 * 1.10,
        "resident memory grew from {after_first} to {after_last} bytes"
    );
    assert_eq!(f.registry.status()[0].version.patch, SWAPS + 1);
}
