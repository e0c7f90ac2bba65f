//! The kernel's own metrics: requests by mount and status class, plugin generations, states
//! and in-flight requests, config applies, and gauges of the tokio runtime.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::Metrics;

/// The kernel's own metrics.
pub(crate) struct KernelMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) generation: IntGaugeVec,
    pub(crate) inflight: IntGaugeVec,
    pub(crate) applies: IntCounterVec,
    pub(crate) state: IntGaugeVec,
    /// Configs in force since the process started: 1 at startup, +1 per successful apply.
    pub(crate) config_generation: IntGauge,
    /// Unix time the config in force was applied.
    pub(crate) config_applied_at: IntGauge,
    pub(crate) runtime: RuntimeGauges,
    pub(crate) connections_open: IntGauge,
    pub(crate) connections_refused: IntCounter,
    pub(crate) connections_idle_closed: IntCounter,
    pub(crate) connections_slow_head_closed: IntCounter,
    pub(crate) overloaded: IntCounter,
}

/// Gauges of the tokio runtime that serves requests, read at scrape time.
pub(crate) struct RuntimeGauges {
    workers: IntGauge,
    alive_tasks: IntGauge,
    global_queue_depth: IntGauge,
}

impl RuntimeGauges {
    fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).and_then(|gauge| metrics.register(gauge))
        };
        Ok(RuntimeGauges {
            workers: gauge(
                "bourse_runtime_workers",
                "Worker threads of the tokio runtime",
            )?,
            alive_tasks: gauge(
                "bourse_runtime_alive_tasks",
                "Tasks alive in the tokio runtime (connections, requests, background work)",
            )?,
            global_queue_depth: gauge(
                "bourse_runtime_global_queue_depth",
                "Tasks waiting in the tokio runtime's global queue (a backlog means saturation)",
            )?,
        })
    }

    pub(crate) fn refresh(&self, runtime: &tokio::runtime::Handle) {
        let stats = runtime.metrics();
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.workers.set(to_i64(stats.num_workers()));
        self.alive_tasks.set(to_i64(stats.num_alive_tasks()));
        self.global_queue_depth
            .set(to_i64(stats.global_queue_depth()));
    }
}

impl KernelMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        Ok(KernelMetrics {
            requests: metrics.register(IntCounterVec::new(
                Opts::new(
                    "bourse_http_requests_total",
                    "HTTP requests served, by mount prefix and status class",
                ),
                &["mount", "status"],
            )?)?,
            generation: metrics.register(IntGaugeVec::new(
                Opts::new(
                    "bourse_kernel_plugin_generation",
                    "Generation number of the plugin's active instance",
                ),
                &["plugin"],
            )?)?,
            inflight: metrics.register(IntGaugeVec::new(
                Opts::new(
                    "bourse_kernel_plugin_inflight",
                    "Requests in flight on a plugin, all generations",
                ),
                &["plugin"],
            )?)?,
            applies: metrics.register(IntCounterVec::new(
                Opts::new(
                    "bourse_kernel_config_applies_total",
                    "Live config applies, by result",
                ),
                &["result"],
            )?)?,
            state: metrics.register(IntGaugeVec::new(
                Opts::new(
                    "bourse_kernel_plugin_state",
                    "Generations of a plugin in each lifecycle state",
                ),
                &["plugin", "state"],
            )?)?,
            config_generation: metrics.register(IntGauge::new(
                "bourse_kernel_config_generation",
                "Configs in force since the process started: 1 at startup, +1 per successful apply",
            )?)?,
            config_applied_at: metrics.register(IntGauge::new(
                "bourse_kernel_config_last_applied_timestamp_seconds",
                "Unix time the config in force was applied",
            )?)?,
            runtime: RuntimeGauges::register(metrics)?,
            connections_open: metrics.register(IntGauge::new(
                "bourse_kernel_connections_open",
                "Client connections open now",
            )?)?,
            connections_refused: metrics.register(IntCounter::new(
                "bourse_kernel_connections_refused_total",
                "Connections answered 503 and closed because [server.connections] max were open",
            )?)?,
            connections_idle_closed: metrics.register(IntCounter::new(
                "bourse_kernel_connections_idle_closed_total",
                "Connections closed after idle_timeout_ms with no request and no traffic",
            )?)?,
            connections_slow_head_closed: metrics.register(IntCounter::new(
                "bourse_kernel_connections_slow_head_closed_total",
                "Connections closed because a request head took longer than header_timeout_ms",
            )?)?,
            overloaded: metrics.register(IntCounter::new(
                "bourse_kernel_overloaded_total",
                "Requests given the overload answer because max_inflight were being handled",
            )?)?,
        })
    }
}
