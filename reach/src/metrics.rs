//! Prometheus series for reach: unique-user gauges for the current hour and day, and counters
//! for events that were dropped or refused.

use std::collections::HashSet;

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::event::{Dimension, ReachCount, Rejection};

/// The collectors of one reach instance (not global, so several can live in one process).
#[derive(Clone)]
pub(crate) struct ReachMetrics {
    /// `bourse_reach_unique_users{dimension,id,window}`: current hour and day only.
    pub(crate) unique_users: IntGaugeVec,
    /// `bourse_reach_events_dropped_total`: lost to a full channel, a stopped aggregator or a
    /// Redis outage longer than the pending buffer.
    pub(crate) events_dropped: IntCounter,
    /// `bourse_reach_events_rejected_total{reason}`: refused by the aggregator.
    pub(crate) events_rejected: IntCounterVec,
    /// `bourse_reach_redis_errors_total`: failed Redis writes and gauge refreshes.
    pub(crate) redis_errors: IntCounter,
}

impl ReachMetrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let events_rejected = IntCounterVec::new(
            Opts::new(
                "bourse_reach_events_rejected_total",
                "Reach events refused by the aggregator, by reason.",
            ),
            &["reason"],
        )?;
        for reason in Rejection::ALL {
            events_rejected.with_label_values(&[reason.as_str()]);
        }
        Ok(ReachMetrics {
            unique_users: IntGaugeVec::new(
                Opts::new(
                    "bourse_reach_unique_users",
                    "Estimated unique users (HyperLogLog) in the current hour or day.",
                ),
                &["dimension", "id", "window"],
            )?,
            events_dropped: IntCounter::new(
                "bourse_reach_events_dropped_total",
                "Reach events lost before counting (full queue, stopped aggregator, Redis outage).",
            )?,
            events_rejected,
            redis_errors: IntCounter::new(
                "bourse_reach_redis_errors_total",
                "Failed Redis operations of the reach aggregator.",
            )?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.unique_users.clone()))?;
        registry.register(Box::new(self.events_dropped.clone()))?;
        registry.register(Box::new(self.events_rejected.clone()))?;
        registry.register(Box::new(self.redis_errors.clone()))?;
        Ok(())
    }

    pub(crate) fn reject(&self, reason: Rejection) {
        self.events_rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// Keeps `bourse_reach_unique_users` equal to the latest counts, removing the series of ids
/// that left the current hour or day so the label set stays bounded.
pub(crate) struct GaugePublisher {
    gauges: IntGaugeVec,
    published: HashSet<(Dimension, String, &'static str)>,
}

impl GaugePublisher {
    pub(crate) fn new(metrics: &ReachMetrics) -> Self {
        GaugePublisher {
            gauges: metrics.unique_users.clone(),
            published: HashSet::new(),
        }
    }

    /// Publishes the counts of the current hour and day.
    pub(crate) fn publish(&mut self, hour: &[ReachCount], day: &[ReachCount]) {
        let mut now_published = HashSet::with_capacity(hour.len() + day.len());
        for count in hour.iter().chain(day) {
            let window = count.window.granularity();
            self.gauges
                .with_label_values(&[count.dimension.as_str(), &count.id, window])
                .set(i64::try_from(count.uniques).unwrap_or(i64::MAX));
            now_published.insert((count.dimension, count.id.clone(), window));
        }
        for (dimension, id, window) in self.published.difference(&now_published) {
            // Absent only if never created, which cannot happen for a published series.
            let _ = self
                .gauges
                .remove_label_values(&[dimension.as_str(), id, window]);
        }
        self.published = now_published;
    }
}
