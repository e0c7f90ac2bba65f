//! Prometheus metrics of learned floors. Labels come from configured placements only (never from
//! segments, which come from request data), so series stay bounded.

use prometheus::{GaugeVec, IntCounter, Opts, Registry};

/// The metric handles, created with the floors and registered on demand.
#[derive(Debug, Clone)]
pub(crate) struct FloorMetrics {
    /// `bourse_floors_learned_cpm{placement}`: the placement-level learned floor.
    pub(crate) learned_cpm: GaugeVec,
    /// `bourse_floors_observations_total`: observations the learner received.
    pub(crate) observations: IntCounter,
    /// `bourse_floors_observations_dropped_total`: observations dropped on a full channel.
    pub(crate) dropped: IntCounter,
    /// `bourse_floors_explorations_total`: auctions whose learned floor was withheld.
    pub(crate) explorations: IntCounter,
}

impl FloorMetrics {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        Ok(FloorMetrics {
            learned_cpm: GaugeVec::new(
                Opts::new(
                    "bourse_floors_learned_cpm",
                    "Learned placement-level floor, CPM in the auction currency",
                ),
                &["placement"],
            )?,
            observations: IntCounter::new(
                "bourse_floors_observations_total",
                "Auction observations received by the floor learner",
            )?,
            dropped: IntCounter::new(
                "bourse_floors_observations_dropped_total",
                "Auction observations dropped because the learner's channel was full",
            )?,
            explorations: IntCounter::new(
                "bourse_floors_explorations_total",
                "Auctions run at the static floor instead of a learned one, for exploration",
            )?,
        })
    }

    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.learned_cpm.clone()))?;
        registry.register(Box::new(self.observations.clone()))?;
        registry.register(Box::new(self.dropped.clone()))?;
        registry.register(Box::new(self.explorations.clone()))
    }

    /// Takes these metrics out of `registry` (when the floors are dropped for good).
    pub(crate) fn unregister(&self, registry: &Registry) {
        for collector in [
            Box::new(self.learned_cpm.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.observations.clone()),
            Box::new(self.dropped.clone()),
            Box::new(self.explorations.clone()),
        ] {
            // Absent (never registered, or registered elsewhere): nothing to take out.
            let _ = registry.unregister(collector);
        }
    }
}
