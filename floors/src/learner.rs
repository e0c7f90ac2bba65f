//! The background learner: owns every key's window, turns observations into floors and
//! publishes them as a new snapshot.

use crate::estimate::{Guards, RevenueCurve, Sample, next_floor};
use crate::floors::Shared;
use crate::key::{FloorKey, Segment};
use crate::observation::Observation;
use crate::table::{FloorReport, FloorTable, PlacementFloors};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the running learner empties the channel. Short enough that a full channel needs
/// millions of auctions per second; long enough to cost nothing when idle.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Counters of what the learner did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearnerStats {
    /// Observations taken from the channel.
    pub observations: u64,
    /// Observations refused: a floor that is not a finite non-negative price, or a top bid
    /// above 1,000,000 CPM.
    pub invalid: u64,
    /// Observations of placements beyond `max_placements`, ignored.
    pub ignored_placements: u64,
    /// Segments forgotten to make room for a new one (the least observed still learning).
    pub segments_evicted: u64,
    /// Segment observations that only fed their placement: every slot held a learned floor.
    pub segments_refused: u64,
    /// Recomputations of all keys with new samples.
    pub recomputations: u64,
    /// Snapshots published.
    pub published: u64,
}

/// What the learner keeps for one key.
#[derive(Debug, Default)]
struct KeyState {
    /// Recent uncensored auctions (run without a learned floor), oldest first.
    window: VecDeque<Sample>,
    /// Uncensored auctions added since the floor was last recomputed.
    fresh: usize,
    /// Observations of any kind.
    observations: u64,
    floor: Option<f64>,
    floor_changes: u64,
    revenue_at_floor: Option<f64>,
    revenue_at_static: Option<f64>,
    /// Revenue and count of the auctions that ran at the learned floor.
    realized_revenue: f64,
    realized_auctions: u64,
}

impl KeyState {
    fn record(&mut self, sample: Sample, uncensored: bool, window: usize) {
        self.observations += 1;
        if uncensored {
            if self.window.len() >= window {
                self.window.pop_front();
            }
            self.window.push_back(sample);
            self.fresh += 1;
        } else {
            // The sample is encoded at the floor it ran at, so reserve 0 prices it as it cleared.
            self.realized_revenue += sample.revenue(0.0);
            self.realized_auctions += 1;
        }
    }

    fn report(&self, key: FloorKey) -> FloorReport {
        FloorReport {
            key,
            learned_floor: self.floor,
            observations: self.observations,
            window: self.window.len(),
            estimated_revenue_at_floor: self.revenue_at_floor,
            estimated_revenue_at_static: self.revenue_at_static,
            realized_revenue_at_floor: (self.realized_auctions > 0)
                .then(|| self.realized_revenue / self.realized_auctions as f64),
            floor_changes: self.floor_changes,
        }
    }
}

/// One placement: its own state and its segments'.
#[derive(Debug, Default)]
struct PlacementState {
    placement: KeyState,
    segments: HashMap<Segment, KeyState>,
}

impl PlacementState {
    /// The state of `segment`, made room for if needed; `None` when the placement is at its
    /// segment limit and every segment holds a learned floor.
    fn segment(
        &mut self,
        segment: Segment,
        max_segments: usize,
        stats: &mut LearnerStats,
    ) -> Option<&mut KeyState> {
        if !self.segments.contains_key(&segment) && self.segments.len() >= max_segments {
            // Hostile or long-tail segments churn among the least-observed slots, while
            // segments with real traffic keep theirs.
            let victim = self
                .segments
                .iter()
                .filter(|(_, state)| state.floor.is_none())
                .min_by_key(|(_, state)| state.observations)
                .map(|(&victim, _)| victim);
            match victim {
                Some(victim) => {
                    self.segments.remove(&victim);
                    stats.segments_evicted += 1;
                }
                None => {
                    stats.segments_refused += 1;
                    return None;
                }
            }
        }
        Some(self.segments.entry(segment).or_default())
    }
}

/// The learner: consumes observations, keeps a bounded window per key and recomputes floors
/// every `recompute_every_observations` observations (and, when running, every
/// `recompute_interval_ms`), publishing a new snapshot when a floor changes.
pub struct Learner {
    shared: Arc<Shared>,
    placements: HashMap<Arc<str>, PlacementState>,
    curve: RevenueCurve,
    since_recompute: u64,
    last_recompute: Instant,
    unpublished: bool,
    stats: LearnerStats,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner")
            .field("placements", &self.placements.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Learner {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Learner {
            shared,
            placements: HashMap::new(),
            curve: RevenueCurve::default(),
            since_recompute: 0,
            last_recompute: Instant::now(),
            unpublished: false,
            stats: LearnerStats::default(),
        }
    }

    /// Runs until `shutdown` completes or every [`crate::Floors`] handle is dropped: empties
    /// the channel every 10 ms and recomputes on the configured interval. Spawn it on tokio.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            self.drain();
            let interval = self.shared.config.load().recompute_interval();
            if self.last_recompute.elapsed() >= interval {
                self.recompute();
                if self.unpublished {
                    // Refreshes the report's estimates even when no floor moved.
                    self.publish();
                }
            }
            if Arc::strong_count(&self.shared) == 1 {
                tracing::debug!("learned floors: every handle dropped, learner stops");
                break;
            }
        }
    }

    /// Takes every queued observation (at most one channel's worth, so a flood cannot hold
    /// it), recomputing whenever `recompute_every_observations` have arrived. Returns how many
    /// it took.
    pub fn drain(&mut self) -> usize {
        let (every, capacity) = {
            let config = self.shared.config.load();
            (config.recompute_every_observations, config.channel_capacity)
        };
        let mut taken = 0;
        while taken < capacity {
            let Some(observation) = self.shared.queue.pop() else {
                break;
            };
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            taken += 1;
            self.ingest(observation);
            self.since_recompute += 1;
            if self.since_recompute >= every {
                self.recompute();
            }
        }
        self.shared.metrics.observations.inc_by(taken as u64);
        taken
    }

    fn ingest(&mut self, observation: Observation) {
        self.stats.observations += 1;
        self.unpublished = true;
        let config = self.shared.config.load_full();
        let Some(sample) = Sample::new(
            observation.bids,
            observation.floor_used,
            observation.auction_type,
        ) else {
            self.stats.invalid += 1;
            return;
        };
        let placements = self.placements.len();
        let FloorKey { placement, segment } = observation.key;
        let state = match self.placements.entry(placement) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                if placements >= config.max_placements {
                    self.stats.ignored_placements += 1;
                    return;
                }
                entry.insert(PlacementState::default())
            }
        };
        // Every auction of a segment also counts for its placement, the segment's fallback.
        state
            .placement
            .record(sample, observation.explore, config.window);
        if !segment.is_any()
            && let Some(segment) =
                state.segment(segment, config.max_segments_per_placement, &mut self.stats)
        {
            segment.record(sample, observation.explore, config.window);
        }
    }

    /// Recomputes the floor of every key with enough new samples, and publishes a snapshot if
    /// any floor changed.
    pub fn recompute(&mut self) {
        let config = self.shared.config.load_full();
        let guards = Guards {
            max_floor: config.max_floor,
            max_step: config.max_step,
            hysteresis: config.hysteresis,
        };
        // A key is re-estimated after 1/64 of its window is new: its curve barely moves before.
        let fresh_needed = (config.window / 64).max(1);
        let mut changed = false;
        for state in self.placements.values_mut() {
            let keys = std::iter::once(&mut state.placement).chain(state.segments.values_mut());
            for key in keys {
                if key.fresh < fresh_needed || key.window.len() < config.min_observations {
                    continue;
                }
                let samples = key.window.make_contiguous();
                self.curve.rebuild(samples.iter());
                let update = next_floor(&self.curve, samples, key.floor, guards);
                if update.floor != key.floor {
                    key.floor_changes += 1;
                    changed = true;
                }
                key.floor = update.floor;
                key.revenue_at_floor = Some(update.revenue_at_floor);
                key.revenue_at_static = Some(update.revenue_at_static);
                key.fresh = 0;
            }
        }
        self.stats.recomputations += 1;
        self.since_recompute = 0;
        self.last_recompute = Instant::now();
        if changed {
            self.publish();
        }
    }

    /// Publishes a new snapshot of every floor and the report, and updates the placement gauges.
    pub fn publish(&mut self) {
        let generation = self.shared.table.load().generation() + 1;
        let mut table = FloorTable {
            generation,
            ..FloorTable::default()
        };
        for (placement, state) in &self.placements {
            let floors = PlacementFloors {
                placement: state.placement.floor,
                segments: state
                    .segments
                    .iter()
                    .filter_map(|(&segment, key)| Some((segment, key.floor?)))
                    .collect(),
            };
            if let Some(floor) = floors.placement {
                self.shared
                    .metrics
                    .learned_cpm
                    .with_label_values(&[&**placement])
                    .set(floor);
            }
            if floors.placement.is_some() || !floors.segments.is_empty() {
                table.placements.insert(Arc::clone(placement), floors);
            }
            table.report.push(
                state
                    .placement
                    .report(FloorKey::placement(Arc::clone(placement))),
            );
            for (&segment, key) in &state.segments {
                table
                    .report
                    .push(key.report(FloorKey::new(Arc::clone(placement), segment)));
            }
        }
        table.report.sort_by(|a, b| {
            (&a.key.placement, a.key.segment).cmp(&(&b.key.placement, b.key.segment))
        });
        self.shared.table.store(Arc::new(table));
        self.unpublished = false;
        self.stats.published += 1;
    }

    /// What the learner did so far.
    pub fn stats(&self) -> LearnerStats {
        self.stats
    }

    /// Placements tracked.
    pub fn placements(&self) -> usize {
        self.placements.len()
    }

    /// Segments tracked, over every placement (placement-level keys not counted).
    pub fn segments(&self) -> usize {
        self.placements.values().map(|p| p.segments.len()).sum()
    }
}
