//! Unique counts in Redis: raw item hashes are `PFADD`ed to per-hour HyperLogLog keys shared by
//! every node, and day counts are `PFMERGE` roll-ups of the day's 24 hour keys.
//!
//! Key layout (`P` = `key_prefix`, `DIM` = a dimension name such as `placement` or `link`):
//!
//! | key | type | TTL |
//! |-----|------|-----|
//! | `P:uniq:DIM:ID:h:YYYYMMDDHH` | HLL of the hour's items | `(hour_buckets + 1)` h after last write |
//! | `P:uniq:DIM:ID:d:YYYYMMDD` | HLL roll-up of the day's hours | `(day_buckets + 1)` d after last roll-up |
//! | `P:uniq-index:h:YYYYMMDDHH` | set of `DIM:ID` written that hour | as hour keys |
//! | `P:uniq-index:d:YYYYMMDD` | set of `DIM:ID` written that day | as day keys |
//!
//! Elements are the item hashes as 8 big-endian bytes, so every node adds the same element for
//! the same item and Redis's own hashing decides the register. Local `hyperloglogplus` sketches
//! are never sent: their encoding is unrelated to Redis's.
//!
//! Why a roll-up instead of `PFCOUNT` over 24 keys at every read: the day key outlives the hour
//! keys (so a day stays countable after its hours expire), repeated reads of a settled day are a
//! single-key `PFCOUNT` that Redis caches, and `PFMERGE` is an idempotent union, so any node may
//! roll up at any time without coordination. A roll-up runs on every day query, on every gauge
//! refresh (current day) and once when a day ends; a day read is therefore as fresh as its hours.
//! The index sets exist so queries list ids without `SCAN`; `max_ids_per_dimension` bounds them.
//!
//! Keys of one id do not share a Redis Cluster hash slot, so multi-key `PFMERGE` needs a single
//! Redis (or a primary with replicas), not Cluster.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{Pipeline, RedisError, RedisResult, RedisWrite, ToRedisArgs};

use super::dimension::{Dimension, DimensionList, position};
use super::item::UniqueCount;
use super::window::{SECS_PER_DAY, SECS_PER_HOUR, Window, day_label, hour_label};
use crate::config::UniquesConfig;

/// Elements per `PFADD` command: large enough to amortise the command, small enough to keep
/// Redis responsive to other clients while it runs.
const PFADD_CHUNK: usize = 10_000;
/// Elements per pipeline round trip (about 1.4 MB on the wire).
const ELEMENTS_PER_PIPELINE: usize = 100_000;

/// Builds every Redis key of the layout.
#[derive(Debug)]
pub(crate) struct KeyLayout {
    /// `P:uniq`.
    counts: String,
    /// `P:uniq-index`.
    index: String,
}

impl KeyLayout {
    pub(crate) fn new(key_prefix: &str) -> Self {
        KeyLayout {
            counts: format!("{key_prefix}:uniq"),
            index: format!("{key_prefix}:uniq-index"),
        }
    }

    pub(crate) fn hour_key(&self, dimension: &str, id: &str, hour: u64) -> String {
        format!("{}:{dimension}:{id}:h:{}", self.counts, hour_label(hour))
    }

    pub(crate) fn day_key(&self, dimension: &str, id: &str, day: u64) -> String {
        format!("{}:{dimension}:{id}:d:{}", self.counts, day_label(day))
    }

    fn hour_index(&self, hour: u64) -> String {
        format!("{}:h:{}", self.index, hour_label(hour))
    }

    fn day_index(&self, day: u64) -> String {
        format!("{}:d:{}", self.index, day_label(day))
    }

    fn member(dimension: &str, id: &str) -> String {
        format!("{dimension}:{id}")
    }

    /// Dimension names hold no `:`, so the first one ends the name and ids may hold more.
    fn parse_member(member: &str) -> Option<(&str, &str)> {
        member
            .split_once(':')
            .filter(|(dimension, id)| !dimension.is_empty() && !id.is_empty())
    }
}

/// One id of one dimension in one hour: where a pending item hash goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BucketKey {
    pub(crate) dimension: Dimension,
    pub(crate) id: Arc<str>,
    pub(crate) hour: u64,
}

/// Item hashes waiting to be sent, per bucket. Repeats are harmless (`PFADD` is idempotent);
/// the aggregator skips only back-to-back repeats, which cost nothing to detect.
pub(crate) type PendingItems = HashMap<BucketKey, Vec<u64>>;

/// Item hashes as `PFADD` elements: one 8-byte big-endian argument each.
struct ItemElements<'a>(&'a [u64]);

impl ToRedisArgs for ItemElements<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        for item in self.0 {
            out.write_arg(&item.to_be_bytes());
        }
    }

    fn num_of_args(&self) -> usize {
        self.0.len()
    }
}

/// Reads and writes unique counts in Redis. Cloning shares the connection.
#[derive(Clone)]
pub(crate) struct RedisUniquesStore {
    connection: ConnectionManager,
    keys: Arc<KeyLayout>,
    hour_ttl_secs: u64,
    day_ttl_secs: u64,
}

impl RedisUniquesStore {
    pub(crate) fn new(
        connection: ConnectionManager,
        key_prefix: &str,
        config: &UniquesConfig,
    ) -> Self {
        RedisUniquesStore {
            connection,
            keys: Arc::new(KeyLayout::new(key_prefix)),
            // One bucket of slack so a late write or roll-up never finds its key already gone.
            hour_ttl_secs: (config.hour_buckets + 1) * SECS_PER_HOUR,
            day_ttl_secs: (config.day_buckets + 1) * SECS_PER_DAY,
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    /// Sends every pending item with pipelined `PFADD`s (each followed by the key's `EXPIRE`),
    /// and adds the buckets for which `needs_index` is true to the hour and day indexes.
    /// `dimensions` names the pending buckets' dimensions (an unknown one is skipped: the
    /// aggregator refuses such items before they are pending).
    ///
    /// Adding to a HyperLogLog or a set is idempotent, so after an error the caller can resend
    /// the same batch: buckets already written are unchanged by the repeat.
    pub(crate) async fn write(
        &mut self,
        pending: &PendingItems,
        dimensions: &DimensionList,
        needs_index: impl Fn(&BucketKey) -> bool,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut elements_in_pipe = 0;
        for (bucket, items) in pending.iter() {
            let Some(info) = dimensions.get(bucket.dimension.index()) else {
                continue;
            };
            let (dimension, id) = (&*info.name, &*bucket.id);
            let hour_key = self.keys.hour_key(dimension, id, bucket.hour);
            for chunk in items.chunks(PFADD_CHUNK) {
                pipe.cmd("PFADD")
                    .arg(&hour_key)
                    .arg(ItemElements(chunk))
                    .ignore();
                // Right after each PFADD, so a key never outlives a failed batch without a TTL.
                pipe.cmd("EXPIRE")
                    .arg(&hour_key)
                    .arg(self.hour_ttl_secs)
                    .ignore();
                elements_in_pipe += chunk.len();
                if elements_in_pipe >= ELEMENTS_PER_PIPELINE {
                    pipe.exec_async(&mut self.connection).await?;
                    pipe.clear();
                    elements_in_pipe = 0;
                }
            }
            if !needs_index(bucket) {
                continue;
            }
            let member = KeyLayout::member(dimension, id);
            let hour_index = self.keys.hour_index(bucket.hour);
            let day_index = self
                .keys
                .day_index(bucket.hour * SECS_PER_HOUR / SECS_PER_DAY);
            pipe.cmd("SADD").arg(&hour_index).arg(&member).ignore();
            pipe.cmd("EXPIRE")
                .arg(&hour_index)
                .arg(self.hour_ttl_secs)
                .ignore();
            pipe.cmd("SADD").arg(&day_index).arg(&member).ignore();
            pipe.cmd("EXPIRE")
                .arg(&day_index)
                .arg(self.day_ttl_secs)
                .ignore();
        }
        if !pipe.is_empty() {
            pipe.exec_async(&mut self.connection).await?;
        }
        Ok(())
    }

    /// Appends "merge these hour keys of the day into the day key, refresh its TTL, count it".
    fn add_day_rollup(
        &self,
        pipe: &mut Pipeline,
        dimension: &str,
        id: &str,
        day: u64,
        hours: Range<u64>,
    ) {
        let day_key = self.keys.day_key(dimension, id, day);
        let merge = pipe.cmd("PFMERGE").arg(&day_key);
        for hour in hours {
            merge.arg(self.keys.hour_key(dimension, id, hour));
        }
        merge.ignore();
        pipe.cmd("EXPIRE")
            .arg(&day_key)
            .arg(self.day_ttl_secs)
            .ignore();
        pipe.cmd("PFCOUNT").arg(&day_key);
    }

    /// Estimated distinct items of one id in one window (0 if never seen or expired).
    pub(crate) async fn estimate(
        &mut self,
        dimension: &str,
        id: &str,
        window: Window,
    ) -> RedisResult<u64> {
        let mut pipe = redis::pipe();
        match window {
            Window::Hour(ts) => {
                let hour_key = self.keys.hour_key(dimension, id, ts / SECS_PER_HOUR);
                pipe.cmd("PFCOUNT").arg(hour_key);
            }
            Window::Day(ts) => {
                let day = ts / SECS_PER_DAY;
                self.add_day_rollup(&mut pipe, dimension, id, day, hours_of_day(day));
            }
        }
        let (count,): (u64,) = pipe.query_async(&mut self.connection).await?;
        Ok(count)
    }

    /// Every id written in the window by any node, of the dimensions `include` accepts (by
    /// name), sorted in `order`'s interning order (names this node never interned last, by
    /// name), then by id. Rolls a day up first, from all its hours.
    pub(crate) async fn counts(
        &mut self,
        window: Window,
        order: &DimensionList,
        include: impl Fn(&str) -> bool,
    ) -> RedisResult<Vec<UniqueCount>> {
        let hours = match window {
            Window::Hour(_) => 0..0,
            Window::Day(ts) => hours_of_day(ts / SECS_PER_DAY),
        };
        self.counts_rolling_up(window, hours, order, include).await
    }

    /// Today's counts for the gauges: merges only the current and previous hour into the day
    /// keys (earlier hours were merged by earlier refreshes, and a late write to them is picked
    /// up by the next day query or the end-of-day roll-up), so a refresh costs 2 hour keys per
    /// id instead of 24.
    pub(crate) async fn today_counts(
        &mut self,
        now: u64,
        order: &DimensionList,
        include: impl Fn(&str) -> bool,
    ) -> RedisResult<Vec<UniqueCount>> {
        let current_hour = now / SECS_PER_HOUR;
        let day_hours = hours_of_day(now / SECS_PER_DAY);
        let recent = current_hour.saturating_sub(1).max(day_hours.start)..current_hour + 1;
        self.counts_rolling_up(Window::Day(now), recent, order, include)
            .await
    }

    /// Lists the window's ids from its index, then counts each: the hour key for an hour; for a
    /// day, the day key after merging `day_hours` into it.
    async fn counts_rolling_up(
        &mut self,
        window: Window,
        day_hours: Range<u64>,
        order: &DimensionList,
        include: impl Fn(&str) -> bool,
    ) -> RedisResult<Vec<UniqueCount>> {
        let window = window.normalized();
        let index = match window {
            Window::Hour(ts) => self.keys.hour_index(ts / SECS_PER_HOUR),
            Window::Day(ts) => self.keys.day_index(ts / SECS_PER_DAY),
        };
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut self.connection)
            .await?;
        let mut ids: Vec<(usize, &str, &str)> = members
            .iter()
            .filter_map(|member| {
                let parsed = KeyLayout::parse_member(member);
                if parsed.is_none() {
                    tracing::warn!(
                        index,
                        member,
                        "ignoring a malformed unique-count index member"
                    );
                }
                parsed
            })
            .filter(|(dimension, _)| include(dimension))
            .map(|(dimension, id)| {
                let rank = position(order, dimension).unwrap_or(usize::MAX);
                (rank, dimension, id)
            })
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort_unstable();
        let mut pipe = redis::pipe();
        for &(_, dimension, id) in &ids {
            match window {
                Window::Hour(ts) => {
                    pipe.cmd("PFCOUNT")
                        .arg(self.keys.hour_key(dimension, id, ts / SECS_PER_HOUR));
                }
                Window::Day(ts) => self.add_day_rollup(
                    &mut pipe,
                    dimension,
                    id,
                    ts / SECS_PER_DAY,
                    day_hours.clone(),
                ),
            }
        }
        let estimates: Vec<u64> = pipe.query_async(&mut self.connection).await?;
        if estimates.len() != ids.len() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "uniques: Redis returned a different number of counts than ids requested",
            )));
        }
        // One shared name per dimension rather than one allocation per count.
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        Ok(ids
            .into_iter()
            .zip(estimates)
            .map(|((_, dimension, id), estimate)| UniqueCount {
                dimension: Arc::clone(names.entry(dimension).or_insert_with(|| dimension.into())),
                id: id.to_owned(),
                window,
                estimate,
            })
            .collect())
    }
}

/// Hour indexes (hours since the epoch) of a day index.
fn hours_of_day(day: u64) -> Range<u64> {
    day * 24..day * 24 + 24
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let keys = KeyLayout::new("bourse");
        // 2026-03-01 05:00 UTC is hour index 492 317.
        let hour = 1_772_341_200 / SECS_PER_HOUR;
        assert_eq!(
            keys.hour_key("placement", "slot-7", hour),
            "bourse:uniq:placement:slot-7:h:2026030105"
        );
        assert_eq!(
            keys.day_key("bidder", "dsp", hour / 24),
            "bourse:uniq:bidder:dsp:d:20260301"
        );
        assert_eq!(keys.hour_index(hour), "bourse:uniq-index:h:2026030105");
        assert_eq!(keys.day_index(hour / 24), "bourse:uniq-index:d:20260301");
    }

    #[test]
    fn members_round_trip_even_with_colons_in_ids() {
        let member = KeyLayout::member("publisher", "site:news:1");
        assert_eq!(
            KeyLayout::parse_member(&member),
            Some(("publisher", "site:news:1"))
        );
        assert_eq!(KeyLayout::parse_member(":x"), None);
        assert_eq!(KeyLayout::parse_member("link:"), None);
        assert_eq!(KeyLayout::parse_member("nocolon"), None);
    }
}

/// The production write path against a real Redis: accuracy and key layout.
#[cfg(test)]
mod with_redis {
    use std::time::Duration;

    use super::*;
    use crate::redis_conn::connect;
    use crate::test_support::{delete_keys, redis_url, unique_prefix};
    use crate::uniques::dimension::Dimensions;
    use crate::uniques::sketch::distinct_items;

    /// Items sent per write, as the aggregator would over successive flushes.
    const ITEMS_PER_WRITE: usize = 100_000;

    async fn store(prefix: &str) -> RedisUniquesStore {
        let connection = connect(&redis_url(), Duration::from_secs(5)).await.unwrap();
        RedisUniquesStore::new(connection, prefix, &UniquesConfig::default())
    }

    fn now() -> u64 {
        crate::Clock::wall().unix_secs()
    }

    /// Sends `n` distinct items of one trial through the production write path, in
    /// flush-sized batches, and returns Redis's estimate.
    async fn run_trial(mut store: RedisUniquesStore, trial: u64, n: u64, hour: u64) -> u64 {
        let table = Dimensions::default();
        let placement = table.intern("placement", true).unwrap();
        let dimensions = table.snapshot();
        let id: Arc<str> = format!("slot-{trial}").into();
        let bucket = BucketKey {
            dimension: placement,
            id: Arc::clone(&id),
            hour,
        };
        let mut chunk = Vec::with_capacity(ITEMS_PER_WRITE);
        for item in distinct_items(trial, n) {
            chunk.push(item);
            if chunk.len() == ITEMS_PER_WRITE {
                let pending = PendingItems::from([(bucket.clone(), std::mem::take(&mut chunk))]);
                store.write(&pending, &dimensions, |_| true).await.unwrap();
            }
        }
        let pending = PendingItems::from([(bucket, chunk)]);
        store.write(&pending, &dimensions, |_| true).await.unwrap();
        let window = Window::Hour(hour * SECS_PER_HOUR);
        store.estimate("placement", &id, window).await.unwrap()
    }

    async fn assert_accurate(n: u64, trials: u64) {
        let started = std::time::Instant::now();
        let prefix = unique_prefix("accuracy");
        let store = store(&prefix).await;
        let hour = now() / SECS_PER_HOUR;
        let mut errors = Vec::new();
        for trial in 0..trials {
            let estimate = run_trial(store.clone(), trial, n, hour).await;
            errors.push((estimate as f64 - n as f64).abs() / n as f64);
        }
        delete_keys(&redis_url(), &prefix);
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let worst = errors.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "Redis, n={n}, trials={trials}: mean {:.3} %, worst {:.3} %, {:?}",
            mean * 100.0,
            worst * 100.0,
            started.elapsed()
        );
        assert!(mean <= 0.01, "mean relative error {mean} > 1 % at n={n}");
        assert!(worst <= 0.03, "worst relative error {worst} > 3 % at n={n}");
    }

    // Ten trials at 10^5 and 10^7 for the same reason as the in-process tests (see
    // `sketch.rs`): Redis's σ is also about 0.81 % (2^14 registers).
    #[tokio::test]
    async fn redis_accuracy_at_one_thousand_items() {
        assert_accurate(1_000, 40).await;
    }

    #[tokio::test]
    async fn redis_accuracy_at_one_hundred_thousand_items() {
        assert_accurate(100_000, 10).await;
    }

    #[tokio::test]
    async fn redis_accuracy_at_ten_million_items() {
        assert_accurate(10_000_000, 10).await;
    }

    #[tokio::test]
    async fn keys_written_follow_the_layout_and_carry_ttls() {
        let prefix = unique_prefix("layout");
        let mut store = store(&prefix).await;
        let table = Dimensions::default();
        let bidder = table.intern("bidder", true).unwrap();
        let hour = now() / SECS_PER_HOUR;
        let pending = PendingItems::from([(
            BucketKey {
                dimension: bidder,
                id: "dsp".into(),
                hour,
            },
            vec![1, 2, 2, 3],
        )]);
        store
            .write(&pending, &table.snapshot(), |_| true)
            .await
            .unwrap();
        let hour_key = store.keys().hour_key("bidder", "dsp", hour);
        assert!(hour_key.starts_with(&format!("{prefix}:uniq:bidder:dsp:h:")));
        let mut connection = store.connection.clone();
        let ttl: i64 = redis::cmd("TTL")
            .arg(&hour_key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(
            (48 * 3_600..=49 * 3_600).contains(&ttl),
            "hour key TTL {ttl}"
        );
        let count: u64 = redis::cmd("PFCOUNT")
            .arg(&hour_key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(count, 3);
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(store.keys().hour_index(hour))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(members, ["bidder:dsp"]);
        delete_keys(&redis_url(), &prefix);
    }
}
