//! In-process unique counts: one HyperLogLog sketch per dimension, id and hour or day bucket,
//! owned by the aggregator task alone (so no locks), with old buckets evicted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::dimension::{Dimension, DimensionList};
use super::item::{Item, Rejection, UniqueCount};
use super::sketch::ItemSketch;
use super::window::{Retention, SECS_PER_DAY, SECS_PER_HOUR, Window};
use crate::config::UniquesConfig;

/// The sketches of one bucket, per dimension (by index) and id.
#[derive(Default)]
struct Bucket {
    sketches: Vec<HashMap<Arc<str>, ItemSketch>>,
}

impl Bucket {
    /// Adds the item under each of its ids; `false` if some dimension was full.
    fn insert(&mut self, item: &Item, empty: &ItemSketch, max_ids: usize) -> bool {
        let mut all_admitted = true;
        for (dimension, id) in &item.keys {
            let index = dimension.index();
            if self.sketches.len() <= index {
                self.sketches.resize_with(index + 1, HashMap::new);
            }
            let sketches = &mut self.sketches[index];
            if let Some(sketch) = sketches.get_mut(&**id) {
                sketch.insert(item.item_hash);
            } else if sketches.len() < max_ids {
                let mut sketch = empty.clone();
                sketch.insert(item.item_hash);
                sketches.insert(Arc::clone(id), sketch);
            } else {
                all_admitted = false;
            }
        }
        all_admitted
    }

    fn estimate(&mut self, dimension: Dimension, id: &str) -> u64 {
        self.sketches
            .get_mut(dimension.index())
            .and_then(|sketches| sketches.get_mut(id))
            .map_or(0, ItemSketch::estimate)
    }

    fn counts(
        &mut self,
        window: Window,
        dimensions: &DimensionList,
        include: &impl Fn(usize) -> bool,
    ) -> Vec<UniqueCount> {
        let mut counts = Vec::new();
        for (index, sketches) in self.sketches.iter_mut().enumerate() {
            let Some(info) = dimensions.get(index) else {
                continue;
            };
            if !include(index) {
                continue;
            }
            let mut ids: Vec<UniqueCount> = sketches
                .iter_mut()
                .map(|(id, sketch)| UniqueCount {
                    dimension: Arc::clone(&info.name),
                    id: id.to_string(),
                    window,
                    estimate: sketch.estimate(),
                })
                .collect();
            ids.sort_by(|a, b| a.id.cmp(&b.id));
            counts.append(&mut ids);
        }
        counts
    }
}

/// All sketches of this node, by hour index and day index (since the Unix epoch).
///
/// Memory is bounded by `(hour_buckets + day_buckets) × dimensions × max_ids_per_dimension`
/// sketches of at most 2^precision × 6 bits each (12 KiB at precision 14); small ones stay
/// sparse.
pub(crate) struct InProcessStore {
    empty: ItemSketch,
    precision: u8,
    retention: Retention,
    max_ids_per_dimension: usize,
    hours: BTreeMap<u64, Bucket>,
    days: BTreeMap<u64, Bucket>,
}

impl InProcessStore {
    /// An empty store; `config` has passed
    /// [`ServicesConfig::problems`](crate::ServicesConfig::problems).
    pub(crate) fn new(config: &UniquesConfig) -> Self {
        InProcessStore {
            empty: ItemSketch::new(config.precision),
            precision: config.precision,
            retention: config.retention(),
            max_ids_per_dimension: config.max_ids_per_dimension,
            hours: BTreeMap::new(),
            days: BTreeMap::new(),
        }
    }

    /// Takes the new retention and id limit, keeping every sketch (the precision must match:
    /// sketches of different precisions cannot be merged or compared).
    pub(crate) fn retune(&mut self, config: &UniquesConfig) {
        debug_assert_eq!(self.precision, config.precision);
        self.retention = config.retention();
        self.max_ids_per_dimension = config.max_ids_per_dimension;
    }

    pub(crate) fn precision(&self) -> u8 {
        self.precision
    }

    /// Counts the item in its hour and day buckets. A refused item may still have been counted
    /// for the dimensions that had room (only with [`Rejection::TooManyIds`]).
    pub(crate) fn insert(
        &mut self,
        item: &Item,
        known_dimensions: usize,
        now: u64,
    ) -> Result<(), Rejection> {
        item.check(known_dimensions)?;
        self.retention.admit(item.timestamp, now)?;
        let max_ids = self.max_ids_per_dimension;
        let hour = item.timestamp / SECS_PER_HOUR;
        let mut admitted = self
            .hours
            .entry(hour)
            .or_default()
            .insert(item, &self.empty, max_ids);
        // An hour still kept can belong to a day already evicted (with few day buckets).
        let day = item.timestamp / SECS_PER_DAY;
        if day >= self.retention.oldest_day(now) {
            admitted &= self
                .days
                .entry(day)
                .or_default()
                .insert(item, &self.empty, max_ids);
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

    /// Estimated distinct items of one id in one window (0 if never seen or evicted).
    pub(crate) fn estimate(&mut self, dimension: Dimension, id: &str, window: Window) -> u64 {
        self.bucket(window)
            .map_or(0, |bucket| bucket.estimate(dimension, id))
    }

    /// Every id seen in the window of the dimensions `include` accepts (by index), in
    /// interning order, then by id.
    pub(crate) fn counts(
        &mut self,
        window: Window,
        dimensions: &DimensionList,
        include: impl Fn(usize) -> bool,
    ) -> Vec<UniqueCount> {
        let window = window.normalized();
        self.bucket(window).map_or_else(Vec::new, |bucket| {
            bucket.counts(window, dimensions, &include)
        })
    }

    /// The union of the hour sketches of one id within a day: used to check day buckets.
    #[cfg(test)]
    fn merged_hours_of_day(&self, dimension: Dimension, id: &str, day_start: u64) -> ItemSketch {
        let first_hour = day_start / SECS_PER_HOUR;
        let mut union = self.empty.clone();
        for (_, bucket) in self.hours.range(first_hour..first_hour + 24) {
            if let Some(sketch) = bucket
                .sketches
                .get(dimension.index())
                .and_then(|sketches| sketches.get(id))
            {
                union.merge(sketch).unwrap();
            }
        }
        union
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uniques::dimension::Dimensions;
    use crate::uniques::sketch::distinct_items;

    const NOW: u64 = 1_800_000_000;

    struct Fixture {
        table: Dimensions,
        placement: Dimension,
        publisher: Dimension,
        bidder: Dimension,
    }

    impl Fixture {
        fn new() -> Self {
            let table = Dimensions::default();
            let placement = table.intern("placement", true).unwrap();
            let publisher = table.intern("publisher", true).unwrap();
            let bidder = table.intern("bidder", true).unwrap();
            Fixture {
                table,
                placement,
                publisher,
                bidder,
            }
        }

        fn item(&self, item_hash: u64, placement: &str, timestamp: u64) -> Item {
            Item {
                item_hash,
                timestamp,
                keys: [
                    (self.placement, placement.into()),
                    (self.publisher, "pub-1".into()),
                    (self.bidder, "bidder-a".into()),
                ]
                .into_iter()
                .collect(),
            }
        }

        fn insert(
            &self,
            store: &mut InProcessStore,
            item_hash: u64,
            placement: &str,
            timestamp: u64,
        ) -> Result<(), Rejection> {
            store.insert(&self.item(item_hash, placement, timestamp), 3, NOW)
        }
    }

    fn store(config: UniquesConfig) -> InProcessStore {
        InProcessStore::new(&config)
    }

    #[test]
    fn counts_per_dimension_hour_and_day() {
        let fx = Fixture::new();
        let mut store = store(UniquesConfig::default());
        for item in 0..100 {
            fx.insert(&mut store, item, "slot-1", NOW).unwrap();
        }
        for item in 50..120 {
            fx.insert(&mut store, item, "slot-2", NOW).unwrap();
        }
        let hour = store.counts(Window::Hour(NOW), &fx.table.snapshot(), |_| true);
        let summary: Vec<(&str, &str, u64)> = hour
            .iter()
            .map(|count| (&*count.dimension, count.id.as_str(), count.estimate))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("placement", "slot-1", 100),
                ("placement", "slot-2", 70),
                ("publisher", "pub-1", 120),
                ("bidder", "bidder-a", 120),
            ]
        );
        assert_eq!(hour[0].window, Window::Hour(NOW - NOW % 3_600));
        assert_eq!(store.estimate(fx.publisher, "pub-1", Window::Day(NOW)), 120);
        assert_eq!(store.estimate(fx.publisher, "other", Window::Day(NOW)), 0);
        assert_eq!(store.estimate(fx.publisher, "pub-1", Window::Day(0)), 0);
        // A filter leaves whole dimensions out.
        let only_bidders = store.counts(Window::Hour(NOW), &fx.table.snapshot(), |index| {
            index == fx.bidder.index()
        });
        assert_eq!(only_bidders.len(), 1);
        assert_eq!(&*only_bidders[0].dimension, "bidder");
    }

    #[test]
    fn day_bucket_equals_union_of_its_hours() {
        let fx = Fixture::new();
        let mut store = store(UniquesConfig::default());
        let day_start = NOW - NOW % SECS_PER_DAY - SECS_PER_DAY;
        // Three hours of yesterday with overlapping audiences of 60 000 items each.
        for (slot, hour) in [3_u64, 10, 15].into_iter().enumerate() {
            let ts = day_start + hour * SECS_PER_HOUR;
            for item in distinct_items(0, 100_000).skip(slot * 20_000).take(60_000) {
                fx.insert(&mut store, item, "slot", ts).unwrap();
            }
        }
        let day = store.estimate(fx.placement, "slot", Window::Day(day_start));
        let mut union = store.merged_hours_of_day(fx.placement, "slot", day_start);
        assert_eq!(day, union.estimate());
        let error = (day as f64 - 100_000.0).abs() / 100_000.0;
        assert!(error < 0.03, "day estimate {day} vs 100 000 true uniques");
    }

    #[test]
    fn old_buckets_are_evicted_and_old_items_refused() {
        let fx = Fixture::new();
        let mut store = store(UniquesConfig::default());
        let hour_start = NOW - NOW % SECS_PER_HOUR;
        let two_days_ago = hour_start - 47 * SECS_PER_HOUR;
        fx.insert(&mut store, 1, "slot", two_days_ago).unwrap();
        fx.insert(&mut store, 2, "slot", NOW).unwrap();
        assert_eq!(
            fx.insert(&mut store, 3, "slot", two_days_ago - 1),
            Err(Rejection::TooOld)
        );
        assert_eq!(
            fx.insert(&mut store, 3, "slot", NOW + 3_600),
            Err(Rejection::InFuture)
        );
        assert_eq!(store.hours.len(), 2);

        // One hour later the oldest hour leaves the window.
        store.evict(NOW + SECS_PER_HOUR);
        assert_eq!(store.hours.len(), 1);
        assert_eq!(
            store.estimate(fx.placement, "slot", Window::Hour(two_days_ago)),
            0
        );
        assert_eq!(store.estimate(fx.placement, "slot", Window::Hour(NOW)), 1);

        // Three days later everything is gone.
        store.evict(NOW + 3 * SECS_PER_DAY);
        assert!(store.hours.is_empty() && store.days.is_empty());
    }

    #[test]
    fn ids_beyond_the_limit_are_refused_but_known_ids_still_count() {
        let fx = Fixture::new();
        let mut store = store(UniquesConfig {
            max_ids_per_dimension: 2,
            ..UniquesConfig::default()
        });
        fx.insert(&mut store, 1, "slot-1", NOW).unwrap();
        fx.insert(&mut store, 2, "slot-2", NOW).unwrap();
        assert_eq!(
            fx.insert(&mut store, 3, "slot-3", NOW),
            Err(Rejection::TooManyIds)
        );
        fx.insert(&mut store, 4, "slot-1", NOW).unwrap();
        let placements: Vec<String> = store
            .counts(Window::Hour(NOW), &fx.table.snapshot(), |index| {
                index == fx.placement.index()
            })
            .into_iter()
            .map(|count| format!("{}={}", count.id, count.estimate))
            .collect();
        assert_eq!(placements, ["slot-1=2", "slot-2=1"]);
        // The publisher had room, so the refused item still counts there.
        assert_eq!(store.estimate(fx.publisher, "pub-1", Window::Hour(NOW)), 4);
    }

    #[test]
    fn retuning_keeps_sketches_and_applies_the_new_limits() {
        let fx = Fixture::new();
        let mut store = store(UniquesConfig::default());
        fx.insert(&mut store, 1, "slot-1", NOW).unwrap();
        store.retune(&UniquesConfig {
            max_ids_per_dimension: 1,
            ..UniquesConfig::default()
        });
        assert_eq!(store.estimate(fx.placement, "slot-1", Window::Hour(NOW)), 1);
        assert_eq!(
            fx.insert(&mut store, 2, "slot-2", NOW),
            Err(Rejection::TooManyIds)
        );
    }

    #[test]
    fn malformed_items_are_refused() {
        let fx = Fixture::new();
        let mut store = store(UniquesConfig::default());
        assert_eq!(fx.insert(&mut store, 1, "", NOW), Err(Rejection::InvalidId));
        let huge = "x".repeat(crate::uniques::MAX_ID_LEN + 1);
        assert_eq!(
            fx.insert(&mut store, 1, &huge, NOW),
            Err(Rejection::InvalidId)
        );
        let no_keys = Item {
            item_hash: 1,
            timestamp: NOW,
            keys: Default::default(),
        };
        assert_eq!(store.insert(&no_keys, 3, NOW), Err(Rejection::InvalidId));
        // A dimension this table never interned.
        assert_eq!(
            store.insert(&fx.item(1, "slot", NOW), 2, NOW),
            Err(Rejection::InvalidId)
        );
        assert!(
            store
                .counts(Window::Hour(NOW), &fx.table.snapshot(), |_| true)
                .is_empty()
        );
    }
}
