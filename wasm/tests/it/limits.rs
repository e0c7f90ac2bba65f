//! Misbehaving plugins are cut off within their limits, their failures counted, and they are
//! quarantined after the configured number; healthy calls beside them are unaffected.

use std::time::{Duration, Instant};

use bourse_wasm::{
    FloorContext, HookErrorKind, InstallOptions, PluginState, RefusalReason, Registry, Runtime,
    RuntimeConfig, WasmMetrics,
};

use crate::hooks::{bid, request};
use crate::support::*;

const QUARANTINE_AFTER: u32 = 3;

fn fixture_quarantining() -> Fixture {
    fixture(RuntimeConfig {
        quarantine_after: QUARANTINE_AFTER,
        ..RuntimeConfig::default()
    })
}

fn at(placement: &str) -> FloorContext {
    FloorContext {
        placement_id: placement.into(),
        ..floor_context("USA", 12, 0.5)
    }
}

/// Calls the failing placement until quarantine, checking each failure's kind and that a
/// healthy placement still answers between failures (a fresh instance replaces a failed one).
fn fails_then_quarantined(f: &Fixture, name: &str, kind: HookErrorKind, max_call: Duration) {
    for attempt in 1..=QUARANTINE_AFTER {
        let hooks = f
            .registry
            .hooks(name)
            .unwrap_or_else(|| panic!("{name} quarantined early"));
        let started = Instant::now();
        let error = hooks.floor(&at(name)).unwrap_err();
        let took = started.elapsed();
        assert_eq!(error.kind, kind, "{name} attempt {attempt}: {error}");
        assert!(took < max_call, "{name} ran {took:?}, over {max_call:?}");
        if attempt < QUARANTINE_AFTER {
            assert_eq!(
                hooks.floor(&at("healthy")).unwrap(),
                0.5,
                "{name} between failures"
            );
        }
    }
    assert!(
        f.registry.hooks(name).is_none(),
        "{name} should be quarantined"
    );
    let status = f
        .registry
        .status()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    assert_eq!(status.state, PluginState::Quarantined);
    let reason = status.reason.unwrap();
    assert!(reason.contains(kind.as_str()), "{reason}");
    assert_eq!(
        f.counter(
            "bourse_wasm_call_errors_total",
            &[("plugin", name), ("kind", kind.as_str())]
        ),
        f64::from(QUARANTINE_AFTER)
    );
    assert_eq!(
        f.counter("bourse_wasm_quarantines_total", &[("plugin", name)]),
        1.0
    );
}

#[test]
fn a_plugin_looping_forever_is_cut_at_its_deadline_then_quarantined() {
    let f = fixture_quarantining();
    // 5 ms per call and fuel for far longer than that: the epoch deadline cuts it.
    f.registry
        .install(&signed("spin"), InstallOptions::default())
        .unwrap();
    fails_then_quarantined(&f, "spin", HookErrorKind::Timeout, Duration::from_secs(2));
}

#[test]
fn the_epoch_ticker_sleeps_while_plugins_are_idle_and_a_runaway_call_still_wakes_it() {
    let runtime = Runtime::new(RuntimeConfig {
        quarantine_after: 10,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let registry = Registry::new(
        runtime.clone(),
        trusted(),
        WasmMetrics::new(&prometheus::Registry::new()).unwrap(),
    );
    registry
        .install(&signed("spin"), InstallOptions::default())
        .unwrap();
    let hooks = registry.hooks("spin").unwrap();
    for round in 1..=2 {
        let idle = Instant::now();
        while runtime.epoch_ticking() {
            assert!(
                idle.elapsed() < Duration::from_secs(5),
                "round {round}: the ticker never slept"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Asleep, the epoch does not move: only the call's own wake-up can cut it off.
        let started = Instant::now();
        let error = hooks.floor(&at("spin")).unwrap_err();
        assert_eq!(error.kind, HookErrorKind::Timeout, "round {round}: {error}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "round {round}: ran {took:?}");
        assert!(
            runtime.epoch_ticking(),
            "round {round}: asleep just after a call"
        );
    }
}

#[test]
fn a_plugin_looping_forever_runs_out_of_fuel_first_when_fuel_is_short() {
    let f = fixture_quarantining();
    let bytes = signed_with(
        "spin",
        &[("time-per-call-ms", "1000"), ("fuel-per-call", "200000")],
    );
    f.registry
        .install(&bytes, InstallOptions::default())
        .unwrap();
    fails_then_quarantined(
        &f,
        "spin",
        HookErrorKind::FuelExhausted,
        Duration::from_secs(2),
    );
}

#[test]
fn a_plugin_allocating_past_its_cap_is_stopped_then_quarantined() {
    let f = fixture_quarantining();
    f.registry
        .install(&signed("hog"), InstallOptions::default())
        .unwrap();
    fails_then_quarantined(
        &f,
        "hog",
        HookErrorKind::MemoryLimit,
        Duration::from_secs(2),
    );
}

#[test]
fn a_trapping_plugin_is_quarantined_and_can_be_activated_again() {
    let f = fixture_quarantining();
    f.registry
        .install(&signed("trap"), InstallOptions::default())
        .unwrap();
    fails_then_quarantined(&f, "trap", HookErrorKind::Trap, Duration::from_secs(2));
    f.registry.activate("trap").unwrap();
    let hooks = f.registry.hooks("trap").expect("active again");
    assert_eq!(hooks.floor(&at("healthy")).unwrap(), 0.5);
    let status = f
        .registry
        .status()
        .into_iter()
        .find(|s| s.name == "trap")
        .unwrap();
    assert_eq!((status.state, status.reason), (PluginState::Active, None));
}

#[test]
fn a_quarantined_plugin_returns_quarantined_to_holders_of_an_old_handle() {
    let f = fixture_quarantining();
    f.registry
        .install(&signed("trap"), InstallOptions::default())
        .unwrap();
    let held = f.registry.hooks("trap").unwrap();
    for _ in 0..QUARANTINE_AFTER {
        let _ = held.floor(&at("trap"));
    }
    let error = held.floor(&at("healthy")).unwrap_err();
    assert_eq!(error.kind, HookErrorKind::Quarantined);
}

#[test]
fn a_wrong_number_of_bid_decisions_is_bad_output() {
    let f = fixture_quarantining();
    f.registry
        .install(&signed("trap"), InstallOptions::default())
        .unwrap();
    let hooks = f.registry.hooks("trap").unwrap();
    let error = hooks
        .filter_bids(&request(), &[bid(&[], &[]), bid(&[], &[])])
        .unwrap_err();
    assert_eq!(error.kind, HookErrorKind::BadOutput);
    assert!(error.detail.contains("3 decisions for 2 bids"), "{error}");
    assert_eq!(
        f.counter(
            "bourse_wasm_call_errors_total",
            &[("plugin", "trap"), ("kind", "bad_output")]
        ),
        1.0
    );
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let f = fixture(RuntimeConfig {
        quarantine_after: 2,
        failure_window: Duration::from_millis(200),
        ..RuntimeConfig::default()
    });
    f.registry
        .install(&signed("trap"), InstallOptions::default())
        .unwrap();
    let hooks = f.registry.hooks("trap").unwrap();
    for _ in 0..3 {
        assert_eq!(
            hooks.floor(&at("trap")).unwrap_err().kind,
            HookErrorKind::Trap
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(f.registry.hooks("trap").is_some());
}

#[test]
fn a_version_that_fails_its_warm_up_never_becomes_active() {
    let f = default_fixture();
    f.registry
        .install(&signed("trap"), InstallOptions::default())
        .unwrap();
    // The next version advertises its request filter, which always traps.
    let bytes = signed_with(
        "trap",
        &[
            ("version", "\"1.1.0\""),
            ("hooks", "[\"floor-rule\", \"request-filter\"]"),
        ],
    );
    let refusal = f
        .registry
        .install(&bytes, InstallOptions::default())
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::WarmupFailed, "{refusal}");
    assert_eq!(
        f.registry.hooks("trap").unwrap().version().to_string(),
        "1.0.0"
    );
    assert_eq!(
        f.counter("bourse_wasm_refusals_total", &[("reason", "warmup_failed")]),
        1.0
    );
}

#[test]
fn a_first_version_that_fails_its_warm_up_leaves_no_series() {
    let f = default_fixture();
    let bytes = signed_with("trap", &[("hooks", "[\"request-filter\"]")]);
    let refusal = f
        .registry
        .install(&bytes, InstallOptions::default())
        .unwrap_err();
    assert_eq!(refusal.reason, RefusalReason::WarmupFailed);
    assert!(f.registry.hooks("trap").is_none());
    assert!(!f.has_series("bourse_wasm_calls_total", "plugin", "trap"));
}
