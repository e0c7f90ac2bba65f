//! The request-path handle: a lock-free floor lookup with the exploration draw, and a
//! non-blocking hand-off of observations to the learner.

use crate::config::{ConfigError, LearnedFloorsConfig};
use crate::key::FloorKey;
use crate::learner::Learner;
use crate::metrics::FloorMetrics;
use crate::observation::Observation;
use crate::table::{FloorSource, FloorTable};
use arc_swap::ArcSwap;
use crossbeam_queue::SegQueue;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Why floors could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FloorsError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A metric could not be created (never expected: names and labels are constants).
    #[error("learned floors: metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The floor to apply to one auction of one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The learned floor in the auction currency (CPM), 0 when none applies. The exchange runs
    /// the auction at `max(static floor, floor)`.
    pub floor: f64,
    /// The auction runs without a learned floor (none is learned yet, or this auction was drawn
    /// for exploration), so its bids show the landscape down to the static floor. Pass it back
    /// in [`Observation::explore`].
    pub explore: bool,
    /// Which level of the fallback chain the learned floor came from (or would have, when
    /// withheld for exploration).
    pub source: FloorSource,
}

impl Decision {
    /// No learned floor, nothing to learn from (learned floors disabled).
    const DISABLED: Decision = Decision {
        floor: 0.0,
        explore: false,
        source: FloorSource::None,
    };
}

/// State shared by the request-path handles and the learner.
pub(crate) struct Shared {
    /// The configuration in force; [`Floors::reconfigure`] replaces it live.
    pub(crate) config: ArcSwap<LearnedFloorsConfig>,
    /// `config.enabled`, read on the request path without loading the config.
    enabled: AtomicBool,
    pub(crate) table: ArcSwap<FloorTable>,
    /// Observations for the learner. Bounded by `capacity` through `queued`, rather than by
    /// the queue itself, so that a new `channel_capacity` applies live.
    pub(crate) queue: SegQueue<Observation>,
    pub(crate) queued: AtomicUsize,
    capacity: AtomicUsize,
    pub(crate) metrics: FloorMetrics,
    /// An auction explores when its draw is under this (the exploration share of 2^64).
    exploration_threshold: AtomicU64,
    exploration_seed: u64,
    exploration_counter: AtomicU64,
}

/// Learned floors, as the exchange uses them on the request path. Cheap to clone; every clone
/// reads the same snapshot and feeds the same learner.
///
/// ```
/// use bourse_floors::{AuctionType, FloorKey, Floors, LearnedFloorsConfig, Observation, TopBids};
/// use std::sync::Arc;
///
/// let config = LearnedFloorsConfig { enabled: true, ..LearnedFloorsConfig::default() };
/// let (floors, mut learner) = Floors::new(config).unwrap();
/// let key = FloorKey::placement(Arc::from("homepage-top"));
/// let decision = floors.floor_for(&key);
/// let static_floor = 0.1;
/// let floor_used = decision.floor.max(static_floor);
/// // ... run the auction at `floor_used` ...
/// floors.observe(Observation {
///     key,
///     floor_used,
///     explore: decision.explore,
///     bids: TopBids::new(Some(1.2), Some(0.8)),
///     auction_type: AuctionType::Second,
/// });
/// learner.drain(); // or `tokio::spawn(learner.run(shutdown))`
/// ```
#[derive(Clone)]
pub struct Floors {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Floors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floors")
            .field("enabled", &self.shared.enabled.load(Ordering::Relaxed))
            .field("queued", &self.shared.queued.load(Ordering::Relaxed))
            .field("generation", &self.shared.table.load().generation())
            .finish()
    }
}

impl Floors {
    /// Validates `config` and builds the request-path handle and the learner that owns all
    /// learning state. Run the learner with [`Learner::run`] (a tokio task), or drive it with
    /// [`Learner::drain`].
    pub fn new(config: LearnedFloorsConfig) -> Result<(Floors, Learner), FloorsError> {
        Floors::with_seed(config, RandomState::new().hash_one(0u8))
    }

    /// As [`Floors::new`], with the exploration draws seeded: the same calls in the same order
    /// explore the same auctions (simulations and tests).
    pub fn with_seed(
        config: LearnedFloorsConfig,
        seed: u64,
    ) -> Result<(Floors, Learner), FloorsError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            queue: SegQueue::new(),
            queued: AtomicUsize::new(0),
            capacity: AtomicUsize::new(config.channel_capacity),
            table: ArcSwap::from_pointee(FloorTable::default()),
            metrics: FloorMetrics::new()?,
            enabled: AtomicBool::new(config.enabled),
            exploration_threshold: AtomicU64::new(exploration_threshold(&config)),
            exploration_seed: seed,
            exploration_counter: AtomicU64::new(0),
            config: ArcSwap::from_pointee(config),
        });
        let learner = Learner::new(Arc::clone(&shared));
        Ok((Floors { shared }, learner))
    }

    /// The learned floor for one auction of `key`, and whether the auction explores.
    ///
    /// Lock-free: one snapshot load, two hash lookups, and an atomic counter for the
    /// exploration draw when a learned floor exists. Falls back from the key's segment to its
    /// placement to no learned floor.
    pub fn floor_for(&self, key: &FloorKey) -> Decision {
        let shared = &*self.shared;
        if !shared.enabled.load(Ordering::Relaxed) {
            return Decision::DISABLED;
        }
        let (floor, source) = shared.table.load().lookup(key);
        let Some(floor) = floor else {
            return Decision {
                floor: 0.0,
                explore: true,
                source,
            };
        };
        if self.draw_exploration() {
            shared.metrics.explorations.inc();
            return Decision {
                floor: 0.0,
                explore: true,
                source,
            };
        }
        Decision {
            floor,
            explore: false,
            source,
        }
    }

    /// Hands one auction to the learner without blocking; returns whether it was queued. When
    /// the channel is full the observation is dropped and counted.
    pub fn observe(&self, observation: Observation) -> bool {
        let shared = &*self.shared;
        if !shared.enabled.load(Ordering::Relaxed) {
            return false;
        }
        let capacity = shared.capacity.load(Ordering::Relaxed);
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= capacity {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            shared.metrics.dropped.inc();
            return false;
        }
        shared.queue.push(observation);
        true
    }

    /// Registers the floors' metrics.
    pub fn register(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        self.shared.metrics.register(registry)
    }

    /// Takes the floors' metrics out of `registry`, so that floors built later can register
    /// theirs.
    pub fn unregister(&self, registry: &prometheus::Registry) {
        self.shared.metrics.unregister(registry);
    }

    /// The snapshot in force: learned floors and the per-key report for admin pages.
    pub fn snapshot(&self) -> Arc<FloorTable> {
        self.shared.table.load_full()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<LearnedFloorsConfig> {
        self.shared.config.load_full()
    }

    /// Puts `config` in force live: the next `floor_for` and the learner's next step follow it;
    /// what was learned is kept (turning floors off stops applying them, turning them on again
    /// resumes from the same table). An invalid config is refused and changes nothing.
    pub fn reconfigure(&self, config: LearnedFloorsConfig) -> Result<(), FloorsError> {
        config.validate()?;
        let shared = &*self.shared;
        shared
            .capacity
            .store(config.channel_capacity, Ordering::Relaxed);
        shared
            .exploration_threshold
            .store(exploration_threshold(&config), Ordering::Relaxed);
        shared.enabled.store(config.enabled, Ordering::Relaxed);
        shared.config.store(Arc::new(config));
        Ok(())
    }

    /// Observations dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.shared.metrics.dropped.get()
    }

    /// Auctions whose learned floor was withheld for exploration so far.
    pub fn explorations(&self) -> u64 {
        self.shared.metrics.explorations.get()
    }

    /// One draw of the exploration coin: a counter through a mixing function, so concurrent
    /// callers never wait on each other and a seeded run is repeatable.
    fn draw_exploration(&self) -> bool {
        let shared = &*self.shared;
        let count = shared.exploration_counter.fetch_add(1, Ordering::Relaxed);
        mix(shared.exploration_seed ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            < shared.exploration_threshold.load(Ordering::Relaxed)
    }
}

/// An auction explores when its draw is under this: the exploration share of 2^64 (the share is
/// at most 0.5, so the product fits in a u64).
fn exploration_threshold(config: &LearnedFloorsConfig) -> u64 {
    (config.exploration_share * 2f64.powi(64)) as u64
}

/// A 64-bit finaliser (SplitMix64's): consecutive inputs give independent-looking outputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exploration_draws_hit_the_configured_share() {
        let config = LearnedFloorsConfig {
            enabled: true,
            exploration_share: 0.05,
            ..LearnedFloorsConfig::default()
        };
        let (floors, _learner) = Floors::with_seed(config, 7).unwrap();
        let draws = 200_000;
        let explored = (0..draws).filter(|_| floors.draw_exploration()).count();
        let share = explored as f64 / draws as f64;
        assert!((share - 0.05).abs() < 0.003, "{share}");
    }
}
