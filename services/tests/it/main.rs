//! The shared services through their public API, against a real Redis where they use one.

mod events;
mod limits;
mod once;
mod reconfigure;
mod support;
mod uniques_in_process;
mod uniques_redis;

use std::sync::Arc;

use bourse_services::{Dimension, Services, ServicesConfig};
use prometheus::Registry;
use prometheus::proto::MetricType;

/// A node: its services and the registry they report to.
pub struct Node {
    pub services: Services,
    pub registry: Registry,
}

impl Node {
    pub async fn start(config: &ServicesConfig) -> Node {
        let registry = Registry::new();
        let services = Services::start(config, &registry).await.unwrap();
        Node { services, registry }
    }

    /// The value of the series of `name` carrying all `labels` (gauge or counter).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_value(&self.registry, name, labels)
    }
}

pub fn metric_value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = registry.gather();
    let family = families.iter().find(|family| family.name() == name)?;
    let metric = family.get_metric().iter().find(|metric| {
        labels.iter().all(|(key, value)| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == *key && label.value() == *value)
        })
    })?;
    Some(match family.get_field_type() {
        MetricType::GAUGE => metric.get_gauge().get_value(),
        _ => metric.get_counter().get_value(),
    })
}

/// The exchange's three dimensions, as it would intern them.
pub struct AdDimensions {
    pub placement: Dimension,
    pub publisher: Dimension,
    pub bidder: Dimension,
}

impl AdDimensions {
    pub fn intern(services: &Services) -> Self {
        AdDimensions {
            placement: services.uniques.dimension("placement").unwrap(),
            publisher: services.uniques.dimension("publisher").unwrap(),
            bidder: services.uniques.dimension("bidder").unwrap(),
        }
    }

    /// One user seen on `placement` of publisher `news` through bidder `dsp-a`.
    pub fn keys(&self, placement: &Arc<str>) -> [(Dimension, Arc<str>); 3] {
        [
            (self.placement, Arc::clone(placement)),
            (self.publisher, "news".into()),
            (self.bidder, "dsp-a".into()),
        ]
    }
}

/// Distinct pseudo-random item hashes: `items(a..b)` and `items(c..d)` overlap exactly where
/// the index ranges do.
pub fn items(range: std::ops::Range<u64>) -> impl Iterator<Item = u64> {
    range.map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

pub fn now() -> u64 {
    bourse_services::Clock::wall().unix_secs()
}

pub fn relative_error(estimate: u64, truth: u64) -> f64 {
    (estimate as f64 - truth as f64).abs() / truth as f64
}
