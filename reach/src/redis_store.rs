//! Redis reach store: raw user hashes are `PFADD`ed to per-hour HyperLogLog keys shared by every
//! node, and day counts are `PFMERGE` roll-ups of the day's 24 hour keys.
//!
//! Key layout (`P` = `key_prefix`, `DIM` = `placement` | `publisher` | `bidder`):
//!
//! | key | type | TTL |
//! |-----|------|-----|
//! | `P:reach:DIM:ID:h:YYYYMMDDHH` | HLL of the hour's users | `(hour_buckets + 1)` h after last write |
//! | `P:reach:DIM:ID:d:YYYYMMDD` | HLL roll-up of the day's hours | `(day_buckets + 1)` d after last roll-up |
//! | `P:reach:index:h:YYYYMMDDHH` | set of `DIM:ID` written that hour | as hour keys |
//! | `P:reach:index:d:YYYYMMDD` | set of `DIM:ID` written that day | as day keys |
//!
//! Elements are the user hashes as 8 big-endian bytes, so every node adds the same element for
//! the same user and Redis's own hashing decides the register. Local `hyperloglogplus` sketches
//! are never sent: their encoding is unrelated to Redis's.
//!
//! Why a roll-up instead of `PFCOUNT` over 24 keys at every read: the day key outlives the hour
//! keys (so a day stays countable after its hours expire), repeated reads of a settled day are a
//! single-key `PFCOUNT` that Redis caches, and `PFMERGE` is an idempotent union, so any node may
//! roll up at any time without coordination. A roll-up runs on every day query, on every gauge
//! refresh (current day) and once when a day ends; a day read is therefore as fresh as its hours.
//! The index sets exist so queries list ids without `SCAN`; ids come from config, so they stay
//! small.
//!
//! Keys of one id do not share a Redis Cluster hash slot, so multi-key `PFMERGE` needs a single
//! Redis (or a primary with replicas), not Cluster.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, RedisError, RedisResult, RedisWrite, ToRedisArgs};

use crate::config::ReachConfig;
use crate::event::{Dimension, ReachCount};
use crate::window::{SECS_PER_DAY, SECS_PER_HOUR, Window, day_label, hour_label};

/// Elements per `PFADD` command: large enough to amortise the command, small enough to keep
/// Redis responsive to other clients while it runs.
const PFADD_CHUNK: usize = 10_000;
/// Elements per pipeline round trip (about 1.4 MB on the wire).
const ELEMENTS_PER_PIPELINE: usize = 100_000;

/// Connects a reconnecting multiplexed Redis connection with bounded timeouts.
pub(crate) async fn connect(url: &str, timeout: Duration) -> RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

/// The URL without its password, for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Builds every Redis key of the reach layout.
#[derive(Debug)]
pub(crate) struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub(crate) fn new(key_prefix: &str) -> Self {
        KeyLayout {
            prefix: format!("{key_prefix}:reach"),
        }
    }

    pub(crate) fn hour_key(&self, dimension: Dimension, id: &str, hour: u64) -> String {
        format!(
            "{}:{}:{id}:h:{}",
            self.prefix,
            dimension.as_str(),
            hour_label(hour)
        )
    }

    pub(crate) fn day_key(&self, dimension: Dimension, id: &str, day: u64) -> String {
        format!(
            "{}:{}:{id}:d:{}",
            self.prefix,
            dimension.as_str(),
            day_label(day)
        )
    }

    fn hour_index(&self, hour: u64) -> String {
        format!("{}:index:h:{}", self.prefix, hour_label(hour))
    }

    fn day_index(&self, day: u64) -> String {
        format!("{}:index:d:{}", self.prefix, day_label(day))
    }

    fn member(dimension: Dimension, id: &str) -> String {
        format!("{}:{id}", dimension.as_str())
    }

    fn parse_member(member: &str) -> Option<(Dimension, &str)> {
        let (dimension, id) = member.split_once(':')?;
        Some((Dimension::parse(dimension)?, id))
    }
}

/// One id of one dimension in one hour: where a pending user hash goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BucketKey {
    pub(crate) dimension: Dimension,
    pub(crate) id: Arc<str>,
    pub(crate) hour: u64,
}

/// User hashes waiting to be sent, per bucket. Repeats are harmless (`PFADD` is idempotent);
/// the aggregator skips only back-to-back repeats, which cost nothing to detect.
pub(crate) type PendingUsers = HashMap<BucketKey, Vec<u64>>;

/// User hashes as `PFADD` elements: one 8-byte big-endian argument each.
struct UserElements<'a>(&'a [u64]);

impl ToRedisArgs for UserElements<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        for user in self.0 {
            out.write_arg(&user.to_be_bytes());
        }
    }

    fn num_of_args(&self) -> usize {
        self.0.len()
    }
}

/// Reads and writes reach counts in Redis. Cloning shares the connection.
#[derive(Clone)]
pub(crate) struct RedisReachStore {
    connection: ConnectionManager,
    keys: Arc<KeyLayout>,
    hour_ttl_secs: u64,
    day_ttl_secs: u64,
}

impl RedisReachStore {
    pub(crate) fn new(connection: ConnectionManager, config: &ReachConfig) -> Self {
        RedisReachStore {
            connection,
            keys: Arc::new(KeyLayout::new(&config.key_prefix)),
            // One bucket of slack so a late write or roll-up never finds its key already gone.
            hour_ttl_secs: (config.hour_buckets + 1) * SECS_PER_HOUR,
            day_ttl_secs: (config.day_buckets + 1) * SECS_PER_DAY,
        }
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    /// Sends every pending user with pipelined `PFADD`s (each followed by the key's `EXPIRE`),
    /// and adds the buckets for which `needs_index` is true to the hour and day indexes.
    ///
    /// Adding to a HyperLogLog or a set is idempotent, so after an error the caller can resend
    /// the same batch: buckets already written are unchanged by the repeat.
    pub(crate) async fn write(
        &mut self,
        pending: &PendingUsers,
        needs_index: impl Fn(&BucketKey) -> bool,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut elements_in_pipe = 0;
        for (bucket, users) in pending.iter() {
            let id = &*bucket.id;
            let hour_key = self.keys.hour_key(bucket.dimension, id, bucket.hour);
            for chunk in users.chunks(PFADD_CHUNK) {
                pipe.cmd("PFADD")
                    .arg(&hour_key)
                    .arg(UserElements(chunk))
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
            let member = KeyLayout::member(bucket.dimension, id);
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
        dimension: Dimension,
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

    /// Estimated unique users of one id in one window (0 if never seen or expired).
    pub(crate) async fn uniques(
        &mut self,
        dimension: Dimension,
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

    /// Every id written in the window, sorted by dimension then id (rolls a day up first,
    /// from all its hours).
    pub(crate) async fn counts(&mut self, window: Window) -> RedisResult<Vec<ReachCount>> {
        let hours = match window {
            Window::Hour(_) => 0..0,
            Window::Day(ts) => hours_of_day(ts / SECS_PER_DAY),
        };
        self.counts_rolling_up(window, hours).await
    }

    /// Today's counts for the gauges: merges only the current and previous hour into the day
    /// keys (earlier hours were merged by earlier refreshes, and a late write to them is picked
    /// up by the next day query or the end-of-day roll-up), so a refresh costs 2 hour keys per
    /// id instead of 24.
    pub(crate) async fn today_counts(&mut self, now: u64) -> RedisResult<Vec<ReachCount>> {
        let current_hour = now / SECS_PER_HOUR;
        let day_hours = hours_of_day(now / SECS_PER_DAY);
        let recent = current_hour.saturating_sub(1).max(day_hours.start)..current_hour + 1;
        self.counts_rolling_up(Window::Day(now), recent).await
    }

    /// Lists the window's ids from its index, then counts each: the hour key for an hour; for a
    /// day, the day key after merging `day_hours` into it.
    async fn counts_rolling_up(
        &mut self,
        window: Window,
        day_hours: Range<u64>,
    ) -> RedisResult<Vec<ReachCount>> {
        let window = window.normalized();
        let index = match window {
            Window::Hour(ts) => self.keys.hour_index(ts / SECS_PER_HOUR),
            Window::Day(ts) => self.keys.day_index(ts / SECS_PER_DAY),
        };
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut self.connection)
            .await?;
        let mut ids: Vec<(Dimension, String)> = members
            .iter()
            .filter_map(|member| {
                let parsed = KeyLayout::parse_member(member);
                if parsed.is_none() {
                    tracing::warn!(index, member, "ignoring a malformed reach index member");
                }
                parsed.map(|(dimension, id)| (dimension, id.to_owned()))
            })
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort();
        let mut pipe = redis::pipe();
        for (dimension, id) in &ids {
            match window {
                Window::Hour(ts) => {
                    pipe.cmd("PFCOUNT")
                        .arg(self.keys.hour_key(*dimension, id, ts / SECS_PER_HOUR));
                }
                Window::Day(ts) => self.add_day_rollup(
                    &mut pipe,
                    *dimension,
                    id,
                    ts / SECS_PER_DAY,
                    day_hours.clone(),
                ),
            }
        }
        let uniques: Vec<u64> = pipe.query_async(&mut self.connection).await?;
        if uniques.len() != ids.len() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "reach: Redis returned a different number of counts than ids requested",
            )));
        }
        Ok(ids
            .into_iter()
            .zip(uniques)
            .map(|((dimension, id), uniques)| ReachCount {
                dimension,
                id,
                window,
                uniques,
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
            keys.hour_key(Dimension::Placement, "slot-7", hour),
            "bourse:reach:placement:slot-7:h:2026030105"
        );
        assert_eq!(
            keys.day_key(Dimension::Bidder, "dsp", hour / 24),
            "bourse:reach:bidder:dsp:d:20260301"
        );
        assert_eq!(keys.hour_index(hour), "bourse:reach:index:h:2026030105");
        assert_eq!(keys.day_index(hour / 24), "bourse:reach:index:d:20260301");
    }

    #[test]
    fn members_round_trip_even_with_colons_in_ids() {
        let member = KeyLayout::member(Dimension::Publisher, "site:news:1");
        assert_eq!(
            KeyLayout::parse_member(&member),
            Some((Dimension::Publisher, "site:news:1"))
        );
        assert_eq!(KeyLayout::parse_member("region:eu"), None);
        assert_eq!(KeyLayout::parse_member("nocolon"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://user:secret@cache:6379/0"),
            "redis://***@cache:6379/0"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}

/// The production write path against a real Redis: accuracy and key layout.
#[cfg(test)]
mod with_redis {
    use super::*;
    use crate::sketch::distinct_users;
    use crate::test_support::{delete_keys, redis_url, unique_prefix};
    use crate::window::unix_now;

    /// Users sent per write, as the aggregator would over successive flushes.
    const USERS_PER_WRITE: usize = 100_000;

    async fn store(prefix: &str) -> RedisReachStore {
        let connection = connect(&redis_url(), Duration::from_secs(5)).await.unwrap();
        let config = ReachConfig {
            key_prefix: prefix.to_owned(),
            ..ReachConfig::default()
        };
        RedisReachStore::new(connection, &config)
    }

    /// Sends `n` distinct users of one trial through the production write path, in
    /// flush-sized batches, and returns Redis's estimate.
    async fn run_trial(mut store: RedisReachStore, trial: u64, n: u64, hour: u64) -> u64 {
        let id: Arc<str> = format!("slot-{trial}").into();
        let bucket = BucketKey {
            dimension: Dimension::Placement,
            id: Arc::clone(&id),
            hour,
        };
        let mut chunk = Vec::with_capacity(USERS_PER_WRITE);
        for user in distinct_users(trial, n) {
            chunk.push(user);
            if chunk.len() == USERS_PER_WRITE {
                let pending = PendingUsers::from([(bucket.clone(), std::mem::take(&mut chunk))]);
                store.write(&pending, |_| true).await.unwrap();
            }
        }
        let pending = PendingUsers::from([(bucket, chunk)]);
        store.write(&pending, |_| true).await.unwrap();
        let window = Window::Hour(hour * SECS_PER_HOUR);
        store
            .uniques(Dimension::Placement, &id, window)
            .await
            .unwrap()
    }

    async fn assert_accurate(n: u64, trials: u64) {
        let started = std::time::Instant::now();
        let prefix = unique_prefix("accuracy");
        let store = store(&prefix).await;
        let hour = unix_now() / SECS_PER_HOUR;
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
    async fn redis_accuracy_at_one_thousand_users() {
        assert_accurate(1_000, 40).await;
    }

    #[tokio::test]
    async fn redis_accuracy_at_one_hundred_thousand_users() {
        assert_accurate(100_000, 10).await;
    }

    #[tokio::test]
    async fn redis_accuracy_at_ten_million_users() {
        assert_accurate(10_000_000, 10).await;
    }

    #[tokio::test]
    async fn keys_written_follow_the_layout_and_carry_ttls() {
        let prefix = unique_prefix("layout");
        let mut store = store(&prefix).await;
        let hour = unix_now() / SECS_PER_HOUR;
        let pending = PendingUsers::from([(
            BucketKey {
                dimension: Dimension::Bidder,
                id: "dsp".into(),
                hour,
            },
            vec![1, 2, 2, 3],
        )]);
        store.write(&pending, |_| true).await.unwrap();
        let hour_key = store.keys().hour_key(Dimension::Bidder, "dsp", hour);
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
        delete_keys(&redis_url(), &prefix);
    }
}
