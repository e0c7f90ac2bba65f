//! Prometheus series of unique counting: gauges for the current hour and day, and counters for
//! items dropped or refused. The `bourse_reach_*` names are kept so dashboards keep working.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::item::{Rejection, UniqueCount};

/// The collectors of one [`Uniques`](crate::Uniques), shared by every backend it switches
/// through, so counts and drops carry on across a reconfiguration.
#[derive(Clone)]
pub(crate) struct UniquesMetrics {
    /// `bourse_reach_events_dropped_total`: lost to a full queue, a stopped aggregator or a
    /// Redis outage longer than the pending buffer.
    pub(crate) dropped: IntCounter,
    /// `bourse_reach_events_rejected_total{reason}`, resolved per reason.
    rejected: [IntCounter; 4],
    rejected_family: IntCounterVec,
    /// `bourse_reach_redis_errors_total`: failed Redis writes and gauge refreshes.
    pub(crate) redis_errors: IntCounter,
    /// `bourse_reach_unique_users{dimension,id,window}` and the series it has published.
    pub(crate) gauges: Arc<Mutex<GaugePublisher>>,
}

impl UniquesMetrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let rejected_family = IntCounterVec::new(
            Opts::new(
                "bourse_reach_events_rejected_total",
                "Items refused by the unique-count aggregator, by reason.",
            ),
            &["reason"],
        )?;
        let rejected = Rejection::ALL.map(|reason| {
            rejected_family
                .get_metric_with_label_values(&[reason.as_str()])
                .expect("one label value for a one-label family")
        });
        let unique_users = IntGaugeVec::new(
            Opts::new(
                "bourse_reach_unique_users",
                "Estimated distinct items (HyperLogLog) in the current hour or day, per dimension \
                 and id.",
            ),
            &["dimension", "id", "window"],
        )?;
        Ok(UniquesMetrics {
            dropped: IntCounter::new(
                "bourse_reach_events_dropped_total",
                "Items lost before counting (full queue, stopped aggregator, Redis outage).",
            )?,
            rejected,
            rejected_family,
            redis_errors: IntCounter::new(
                "bourse_reach_redis_errors_total",
                "Failed Redis operations of the unique-count aggregator.",
            )?,
            gauges: Arc::new(Mutex::new(GaugePublisher {
                gauges: unique_users,
                published: HashSet::new(),
            })),
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.gauges.lock().gauges.clone()))?;
        registry.register(Box::new(self.dropped.clone()))?;
        registry.register(Box::new(self.rejected_family.clone()))?;
        registry.register(Box::new(self.redis_errors.clone()))?;
        Ok(())
    }

    pub(crate) fn reject(&self, reason: Rejection) {
        self.rejected[reason.index()].inc();
    }

    /// Publishes the current hour's and day's counts (of dimensions that export gauges).
    pub(crate) fn publish(&self, hour: &[UniqueCount], day: &[UniqueCount]) {
        self.gauges.lock().publish(hour, day);
    }
}

/// Keeps `bourse_reach_unique_users` equal to the latest counts, removing the series of ids
/// that left the current hour or day so the label set stays bounded.
pub(crate) struct GaugePublisher {
    gauges: IntGaugeVec,
    published: HashSet<(Arc<str>, String, &'static str)>,
}

impl GaugePublisher {
    fn publish(&mut self, hour: &[UniqueCount], day: &[UniqueCount]) {
        let mut now_published = HashSet::with_capacity(hour.len() + day.len());
        for count in hour.iter().chain(day) {
            let window = count.window.granularity();
            self.gauges
                .with_label_values(&[&*count.dimension, &count.id, window])
                .set(i64::try_from(count.estimate).unwrap_or(i64::MAX));
            now_published.insert((Arc::clone(&count.dimension), count.id.clone(), window));
        }
        for (dimension, id, window) in self.published.difference(&now_published) {
            // Absent only if never created, which cannot happen for a published series.
            let _ = self.gauges.remove_label_values(&[&**dimension, id, window]);
        }
        self.published = now_published;
    }
}
