//! Metric families of the wasm plugins (`bourse_wasm_*`). The `plugin` label takes only the
//! names of installed plugins, and a removed plugin's series are deleted; every other label is
//! a fixed enumeration.

use prometheus::core::Metric as _;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::plugin::{CallKind, HookErrorKind};
use crate::registry::PluginState;
use crate::signing::RefusalReason;

/// Bucket bounds of the call-duration histogram, in seconds: 1 µs to 1 s.
const DURATION_BUCKETS: [f64; 19] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0,
];

/// Every family, registered once per registry of plugins.
#[derive(Clone)]
pub struct WasmMetrics {
    calls: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    refusals: IntCounterVec,
    swaps: IntCounterVec,
    quarantines: IntCounterVec,
    instances: IntCounterVec,
    state: IntGaugeVec,
}

impl WasmMetrics {
    /// Creates and registers the families.
    pub fn new(registry: &Registry) -> prometheus::Result<WasmMetrics> {
        let metrics = Self::families()?;
        registry.register(Box::new(metrics.calls.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.refusals.clone()))?;
        registry.register(Box::new(metrics.swaps.clone()))?;
        registry.register(Box::new(metrics.quarantines.clone()))?;
        registry.register(Box::new(metrics.instances.clone()))?;
        registry.register(Box::new(metrics.state.clone()))?;
        Ok(metrics.with_refusal_series())
    }

    /// The families in the kernel's registry, reusing the ones an earlier instance registered
    /// (so counters carry on when the host is removed and added again).
    pub fn in_kernel(metrics: &bourse_kernel::Metrics) -> prometheus::Result<WasmMetrics> {
        let families = Self::families()?;
        Ok(WasmMetrics {
            calls: metrics.register(families.calls)?,
            errors: metrics.register(families.errors)?,
            duration: metrics.register(families.duration)?,
            refusals: metrics.register(families.refusals)?,
            swaps: metrics.register(families.swaps)?,
            quarantines: metrics.register(families.quarantines)?,
            instances: metrics.register(families.instances)?,
            state: metrics.register(families.state)?,
        }
        .with_refusal_series())
    }

    fn with_refusal_series(self) -> WasmMetrics {
        for reason in RefusalReason::ALL {
            self.refusals.with_label_values(&[reason.as_str()]);
        }
        self
    }

    fn families() -> prometheus::Result<WasmMetrics> {
        Ok(WasmMetrics {
            calls: IntCounterVec::new(
                Opts::new(
                    "bourse_wasm_calls_total",
                    "Calls into wasm plugins, by plugin and hook",
                ),
                &["plugin", "hook"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "bourse_wasm_call_errors_total",
                    "Failed calls into wasm plugins, by plugin and kind of failure",
                ),
                &["plugin", "kind"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "bourse_wasm_call_duration_seconds",
                    "Time of one call into a wasm plugin, by plugin and hook",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["plugin", "hook"],
            )?,
            refusals: IntCounterVec::new(
                Opts::new(
                    "bourse_wasm_refusals_total",
                    "Plugin artifacts refused at install, by reason",
                ),
                &["reason"],
            )?,
            swaps: IntCounterVec::new(
                Opts::new(
                    "bourse_wasm_swaps_total",
                    "Versions of a plugin made active (installs, rollbacks)",
                ),
                &["plugin"],
            )?,
            quarantines: IntCounterVec::new(
                Opts::new(
                    "bourse_wasm_quarantines_total",
                    "Times a plugin was quarantined after repeated failures",
                ),
                &["plugin"],
            )?,
            instances: IntCounterVec::new(
                Opts::new(
                    "bourse_wasm_instances_created_total",
                    "Plugin instances created (warm-up, pool misses, replacements after a failure)",
                ),
                &["plugin"],
            )?,
            state: IntGaugeVec::new(
                Opts::new(
                    "bourse_wasm_plugin_state",
                    "1 for the lifecycle state each installed plugin's active version is in",
                ),
                &["plugin", "state"],
            )?,
        })
    }

    pub(crate) fn refused(&self, reason: RefusalReason) {
        self.refusals.with_label_values(&[reason.as_str()]).inc();
    }

    /// The handles of one plugin, resolved once when it is installed.
    pub(crate) fn plugin(&self, plugin: &str) -> PluginMetrics {
        let per_call = |kind: CallKind| CallMetrics {
            calls: self.calls.with_label_values(&[plugin, kind.as_str()]),
            duration: self.duration.with_label_values(&[plugin, kind.as_str()]),
        };
        PluginMetrics {
            calls: CallKind::ALL.map(per_call),
            errors: HookErrorKind::COUNTED
                .map(|k| self.errors.with_label_values(&[plugin, k.as_str()])),
            swaps: self.swaps.with_label_values(&[plugin]),
            quarantines: self.quarantines.with_label_values(&[plugin]),
            instances: self.instances.with_label_values(&[plugin]),
            states: PluginState::ALL.map(|s| self.state.with_label_values(&[plugin, s.as_str()])),
        }
    }

    /// Deletes every series of a removed plugin, keeping the `plugin` label bounded.
    pub(crate) fn forget(&self, plugin: &str) {
        for kind in CallKind::ALL {
            let _ = self.calls.remove_label_values(&[plugin, kind.as_str()]);
            let _ = self.duration.remove_label_values(&[plugin, kind.as_str()]);
        }
        for kind in HookErrorKind::COUNTED {
            let _ = self.errors.remove_label_values(&[plugin, kind.as_str()]);
        }
        for state in PluginState::ALL {
            let _ = self.state.remove_label_values(&[plugin, state.as_str()]);
        }
        let _ = self.swaps.remove_label_values(&[plugin]);
        let _ = self.quarantines.remove_label_values(&[plugin]);
        let _ = self.instances.remove_label_values(&[plugin]);
    }
}

#[derive(Clone)]
pub(crate) struct CallMetrics {
    pub(crate) calls: IntCounter,
    pub(crate) duration: prometheus::Histogram,
}

/// Pre-resolved handles of one plugin: nothing is looked up by label on a call.
#[derive(Clone)]
pub(crate) struct PluginMetrics {
    pub(crate) calls: [CallMetrics; 4],
    pub(crate) errors: [IntCounter; 6],
    pub(crate) swaps: IntCounter,
    pub(crate) quarantines: IntCounter,
    pub(crate) instances: IntCounter,
    states: [IntGauge; 10],
}

impl PluginMetrics {
    /// Sets 1 on `state` and 0 on every other state.
    pub(crate) fn set_state(&self, state: PluginState) {
        for (each, gauge) in PluginState::ALL.iter().zip(&self.states) {
            gauge.set(i64::from(*each == state));
        }
    }

    pub(crate) fn error(&self, kind: HookErrorKind) {
        if let Some(i) = HookErrorKind::COUNTED.iter().position(|k| *k == kind) {
            self.errors[i].inc();
        }
    }

    /// Calls and errors so far, and the 99th percentile of call time over every hook (the
    /// upper bound of the bucket it falls in).
    pub(crate) fn summary(&self) -> CallSummary {
        let calls = self.calls.iter().map(|c| c.calls.get()).sum();
        let errors = self.errors.iter().map(IntCounter::get).sum();
        let mut buckets = [0u64; DURATION_BUCKETS.len()];
        let mut total = 0;
        for call in &self.calls {
            let proto = call.duration.metric();
            let histogram = proto.get_histogram();
            total += histogram.get_sample_count();
            for (slot, bucket) in buckets.iter_mut().zip(histogram.get_bucket()) {
                *slot += bucket.cumulative_count();
            }
        }
        let p99_seconds = (total > 0).then(|| {
            let rank = (total as f64 * 0.99).ceil() as u64;
            buckets
                .iter()
                .position(|&cumulative| cumulative >= rank)
                .map_or(f64::INFINITY, |i| DURATION_BUCKETS[i])
        });
        CallSummary {
            calls,
            errors,
            p99_seconds,
        }
    }
}

/// A plugin's call counts for the admin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallSummary {
    pub calls: u64,
    pub errors: u64,
    /// `None` before the first call; infinite when over the last bucket (1 s).
    pub p99_seconds: Option<f64>,
}
