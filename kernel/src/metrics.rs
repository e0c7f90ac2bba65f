//! The process-wide Prometheus registry handed to every plugin, with register-or-reuse semantics
//! so a new plugin generation gets back the counters of the one it replaces.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::core::Collector;

type Hook = Box<dyn Fn() + Send + Sync>;

/// One Prometheus registry shared by the whole process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: prometheus::Registry,
    /// Collectors registered through [`Metrics::register`], keyed by their descriptor ids.
    known: Mutex<HashMap<Vec<u64>, Box<dyn Any + Send + Sync>>>,
    /// Run before every render, to refresh gauges computed from state (kept off the hot path).
    before_render: Mutex<Vec<Hook>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the process collector (CPU, memory, fds) where the OS supports it.
    pub fn new() -> Self {
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        if let Err(error) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(%error, "process metrics unavailable");
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                known: Mutex::new(HashMap::new()),
                before_render: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The underlying registry.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.registry
    }

    /// Registers a collector and returns it. If a collector with the same descriptors and Rust
    /// type was registered before (for example by the previous generation of the same plugin),
    /// that one is returned instead, so counters carry on across reloads. A clash with a different
    /// type or different descriptors is an error, as in Prometheus.
    pub fn register<C: Collector + Clone + 'static>(
        &self,
        collector: C,
    ) -> Result<C, prometheus::Error> {
        let mut key: Vec<u64> = collector.desc().iter().map(|desc| desc.id).collect();
        key.sort_unstable();
        let mut known = self.inner.known.lock();
        if let Some(existing) = known.get(&key) {
            return match existing.downcast_ref::<C>() {
                Some(existing) => Ok(existing.clone()),
                None => Err(prometheus::Error::AlreadyReg),
            };
        }
        self.inner.registry.register(Box::new(collector.clone()))?;
        known.insert(key, Box::new(collector.clone()));
        Ok(collector)
    }

    /// Adds a hook run before every render (to refresh gauges computed from live state).
    pub fn on_render(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.inner.before_render.lock().push(Box::new(hook));
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        for hook in self.inner.before_render.lock().iter() {
            hook();
        }
        let families = self.inner.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|error| format!("# metrics encoding failed: {error}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_the_same_counter_twice_returns_the_first() {
        let metrics = Metrics::new();
        let first = metrics
            .register(prometheus::IntCounter::new("bourse_test_things_total", "things").unwrap())
            .unwrap();
        first.inc();
        let second = metrics
            .register(prometheus::IntCounter::new("bourse_test_things_total", "things").unwrap())
            .unwrap();
        second.inc();
        assert_eq!(first.get(), 2);
        assert!(metrics.render().contains("bourse_test_things_total 2"));
    }

    #[test]
    fn same_name_with_another_type_is_refused() {
        let metrics = Metrics::new();
        metrics
            .register(prometheus::IntCounter::new("bourse_test_clash_total", "x").unwrap())
            .unwrap();
        let clash =
            metrics.register(prometheus::IntGauge::new("bourse_test_clash_total", "x").unwrap());
        assert!(clash.is_err());
    }
}
