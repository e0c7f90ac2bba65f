//! In-process reach store: one HyperLogLog sketch per id, dimension and hour or day bucket,
//! owned by the aggregator task alone (so no locks), with old buckets evicted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{ConfigError, ReachConfig};
use crate::event::{Dimension, ReachCount, ReachEvent, Rejection};
use crate::sketch::UserSketch;
use crate::window::{Retention, SECS_PER_DAY, SECS_PER_HOUR, Window};

/// The sketches of one bucket, per dimension (indexed by [`Dimension::index`]) and id.
#[derive(Default)]
struct Bucket {
    sketches: [HashMap<Arc<str>, UserSketch>; 3],
}

impl Bucket {
    /// Adds the event's user under each of its ids; `false` if some dimension was full.
    fn insert(&mut self, event: &ReachEvent, empty: &UserSketch, max_ids: usize) -> bool {
        let mut all_admitted = true;
        for dimension in Dimension::ALL {
            let id = event.id(dimension);
            let sketches = &mut self.sketches[dimension.index()];
            if let Some(sketch) = sketches.get_mut(&**id) {
                sketch.insert(event.user_hash);
            } else if sketches.len() < max_ids {
                let mut sketch = empty.clone();
                sketch.insert(event.user_hash);
                sketches.insert(Arc::clone(id), sketch);
            } else {
                all_admitted = false;
            }
        }
        all_admitted
    }

    fn uniques(&mut self, dimension: Dimension, id: &str) -> u64 {
        self.sketches[dimension.index()]
            .get_mut(id)
            .map_or(0, UserSketch::estimate)
    }

    fn counts(&mut self, window: Window) -> Vec<ReachCount> {
        let mut counts = Vec::new();
        for dimension in Dimension::ALL {
            for (id, sketch) in &mut self.sketches[dimension.index()] {
                counts.push(ReachCount {
                    dimension,
                    id: id.to_string(),
                    window,
                    uniques: sketch.estimate(),
                });
            }
        }
        counts.sort_by(|a, b| (a.dimension, &a.id).cmp(&(b.dimension, &b.id)));
        counts
    }
}

/// All sketches of this node, by hour index and day index (since the Unix epoch).
///
/// Memory is bounded by `(hour_buckets + day_buckets) × 3 × max_ids_per_dimension` sketches of
/// at most 2^precision × 6 bits each (12 KiB at precision 14); small ones stay sparse.
pub(crate) struct InProcessStore {
    empty: UserSketch,
    precision: u8,
    retention: Retention,
    max_ids_per_dimension: usize,
    hours: BTreeMap<u64, Bucket>,
    days: BTreeMap<u64, Bucket>,
}

impl InProcessStore {
    pub(crate) fn new(config: &ReachConfig) -> Result<Self, ConfigError> {
        Ok(InProcessStore {
            empty: UserSketch::new(config.precision)?,
            precision: config.precision,
            retention: config.retention(),
            max_ids_per_dimension: config.max_ids_per_dimension,
            hours: BTreeMap::new(),
            days: BTreeMap::new(),
        })
    }

    pub(crate) fn precision(&self) -> u8 {
        self.precision
    }

    /// Counts the event's user in its hour and day buckets. A refused event may still have been
    /// counted for the dimensions that had room (only with [`Rejection::TooManyIds`]).
    pub(crate) fn insert(&mut self, event: &ReachEvent, now: u64) -> Result<(), Rejection> {
        if !event.has_valid_ids() {
            return Err(Rejection::InvalidId);
        }
        self.retention.admit(event.timestamp, now)?;
        let max_ids = self.max_ids_per_dimension;
        let hour = event.timestamp / SECS_PER_HOUR;
        let mut admitted = self
            .hours
            .entry(hour)
            .or_default()
            .insert(event, &self.empty, max_ids);
        // An hour still kept can belong to a day already evicted (with few day buckets).
        let day = event.timestamp / SECS_PER_DAY;
        if day >= self.retention.oldest_day(now) {
            admitted &= self
                .days
                .entry(day)
                .or_default()
                .insert(event, &self.empty, max_ids);
        }
        if admitted {
            Ok(())
        } else {
            Err(Rejection::TooManyIds)
        }
    }

    /// Drops the buckets that have left the retention window at `now`.
    pub(crate) fn evict(&mut self, now: u64) {
        self.hours = self.hours.split_off(&self.retention.oldest_hour(now));
        self.days = self.days.split_off(&self.retention.oldest_day(now));
    }

    fn bucket(&mut self, window: Window) -> Option<&mut Bucket> {
        match window {
            Window::Hour(ts) => self.hours.get_mut(&(ts / SECS_PER_HOUR)),
            Window::Day(ts) => self.days.get_mut(&(ts / SECS_PER_DAY)),
        }
    }

    /// Estimated unique users of one id in one window (0 if never seen or evicted).
    pub(crate) fn uniques(&mut self, dimension: Dimension, id: &str, window: Window) -> u64 {
        self.bucket(window)
            .map_or(0, |bucket| bucket.uniques(dimension, id))
    }

    /// Every id seen in the window, sorted by dimension then id.
    pub(crate) fn counts(&mut self, window: Window) -> Vec<ReachCount> {
        let window = window.normalized();
        self.bucket(window)
            .map_or_else(Vec::new, |bucket| bucket.counts(window))
    }

    /// The union of the hour sketches of one id within a day: used to check day buckets.
    #[cfg(test)]
    fn merged_hours_of_day(&self, dimension: Dimension, id: &str, day_start: u64) -> UserSketch {
        let first_hour = day_start / SECS_PER_HOUR;
        let mut union = self.empty.clone();
        for (_, bucket) in self.hours.range(first_hour..first_hour + 24) {
            if let Some(sketch) = bucket.sketches[dimension.index()].get(id) {
                union.merge(sketch).unwrap();
            }
        }
        union
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch::distinct_users;

    const NOW: u64 = 1_800_000_000;

    fn event(user_hash: u64, placement: &str, timestamp: u64) -> ReachEvent {
        ReachEvent {
            user_hash,
            placement: placement.into(),
            publisher: "pub-1".into(),
            bidder: "bidder-a".into(),
            timestamp,
        }
    }

    fn store(config: ReachConfig) -> InProcessStore {
        InProcessStore::new(&config).unwrap()
    }

    #[test]
    fn counts_per_dimension_hour_and_day() {
        let mut store = store(ReachConfig::default());
        for user in 0..100 {
            store.insert(&event(user, "slot-1", NOW), NOW).unwrap();
        }
        for user in 50..120 {
            store.insert(&event(user, "slot-2", NOW), NOW).unwrap();
        }
        let hour = store.counts(Window::Hour(NOW));
        let summary: Vec<(Dimension, &str, u64)> = hour
            .iter()
            .map(|count| (count.dimension, count.id.as_str(), count.uniques))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Dimension::Placement, "slot-1", 100),
                (Dimension::Placement, "slot-2", 70),
                (Dimension::Publisher, "pub-1", 120),
                (Dimension::Bidder, "bidder-a", 120),
            ]
        );
        assert_eq!(hour[0].window, Window::Hour(NOW - NOW % 3_600));
        assert_eq!(
            store.uniques(Dimension::Publisher, "pub-1", Window::Day(NOW)),
            120
        );
        assert_eq!(
            store.uniques(Dimension::Publisher, "other", Window::Day(NOW)),
            0
        );
        assert_eq!(
            store.uniques(Dimension::Publisher, "pub-1", Window::Day(0)),
            0
        );
    }

    #[test]
    fn day_bucket_equals_union_of_its_hours() {
        let mut store = store(ReachConfig::default());
        let day_start = NOW - NOW % SECS_PER_DAY - SECS_PER_DAY;
        // Three hours of yesterday with overlapping audiences of 60 000 users each.
        for (slot, hour) in [3_u64, 10, 15].into_iter().enumerate() {
            let ts = day_start + hour * SECS_PER_HOUR;
            for user in distinct_users(0, 100_000).skip(slot * 20_000).take(60_000) {
                store.insert(&event(user, "slot", ts), NOW).unwrap();
            }
        }
        let day = store.uniques(Dimension::Placement, "slot", Window::Day(day_start));
        let mut union = store.merged_hours_of_day(Dimension::Placement, "slot", day_start);
        assert_eq!(day, union.estimate());
        let error = (day as f64 - 100_000.0).abs() / 100_000.0;
        assert!(error < 0.03, "day estimate {day} vs 100 000 true uniques");
    }

    #[test]
    fn old_buckets_are_evicted_and_old_events_refused() {
        let mut store = store(ReachConfig::default());
        let hour_start = NOW - NOW % SECS_PER_HOUR;
        let two_days_ago = hour_start - 47 * SECS_PER_HOUR;
        store.insert(&event(1, "slot", two_days_ago), NOW).unwrap();
        store.insert(&event(2, "slot", NOW), NOW).unwrap();
        assert_eq!(
            store.insert(&event(3, "slot", two_days_ago - 1), NOW),
            Err(Rejection::TooOld)
        );
        assert_eq!(
            store.insert(&event(3, "slot", NOW + 3_600), NOW),
            Err(Rejection::InFuture)
        );
        assert_eq!(store.hours.len(), 2);

        // One hour later the oldest hour leaves the window.
        store.evict(NOW + SECS_PER_HOUR);
        assert_eq!(store.hours.len(), 1);
        assert_eq!(
            store.uniques(Dimension::Placement, "slot", Window::Hour(two_days_ago)),
            0
        );
        assert_eq!(
            store.uniques(Dimension::Placement, "slot", Window::Hour(NOW)),
            1
        );

        // Three days later everything is gone.
        store.evict(NOW + 3 * SECS_PER_DAY);
        assert!(store.hours.is_empty() && store.days.is_empty());
    }

    #[test]
    fn ids_beyond_the_limit_are_refused_but_known_ids_still_count() {
        let mut store = store(ReachConfig {
            max_ids_per_dimension: 2,
            ..ReachConfig::default()
        });
        store.insert(&event(1, "slot-1", NOW), NOW).unwrap();
        store.insert(&event(2, "slot-2", NOW), NOW).unwrap();
        assert_eq!(
            store.insert(&event(3, "slot-3", NOW), NOW),
            Err(Rejection::TooManyIds)
        );
        store.insert(&event(4, "slot-1", NOW), NOW).unwrap();
        let placements: Vec<String> = store
            .counts(Window::Hour(NOW))
            .into_iter()
            .filter(|count| count.dimension == Dimension::Placement)
            .map(|count| format!("{}={}", count.id, count.uniques))
            .collect();
        assert_eq!(placements, ["slot-1=2", "slot-2=1"]);
        // The publisher had room, so the refused event's user still counts there.
        assert_eq!(
            store.uniques(Dimension::Publisher, "pub-1", Window::Hour(NOW)),
            4
        );
    }

    #[test]
    fn empty_or_huge_ids_are_refused() {
        let mut store = store(ReachConfig::default());
        assert_eq!(
            store.insert(&event(1, "", NOW), NOW),
            Err(Rejection::InvalidId)
        );
        let huge = "x".repeat(crate::event::MAX_ID_LEN + 1);
        assert_eq!(
            store.insert(&event(1, &huge, NOW), NOW),
            Err(Rejection::InvalidId)
        );
        assert!(store.counts(Window::Hour(NOW)).is_empty());
    }
}
