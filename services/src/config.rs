//! The `[services]` table: where shared state lives (Redis or this process) and the tuning of
//! each service, with defaults and every problem reported by its dotted path.

use std::time::Duration;

use serde::Deserialize;

use crate::uniques::Retention;

/// Lowest accepted HyperLogLog precision: below it the 1 % mean error target is not met.
pub const MIN_PRECISION: u8 = 14;
/// Highest accepted precision: above it a dense sketch exceeds 48 KiB per id and bucket.
pub const MAX_PRECISION: u8 = 16;

/// The `[services]` table. Every field has a default, so an empty table (or none) runs every
/// service in this process. Unknown fields are refused so that a typo does not silently fall
/// back to a default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    /// `redis://…` URL. When set, unique counts and exactly-once keys live in Redis and are
    /// shared by every node; when absent both stay in this process.
    pub redis_url: Option<String>,
    /// First segment of every Redis key (`{key_prefix}:uniq:…`, `{key_prefix}:{namespace}:…`).
    pub key_prefix: String,
    /// Redis connect and response timeout, in milliseconds.
    pub redis_timeout_ms: u64,
    /// `[services.uniques]`: unique counting.
    pub uniques: UniquesConfig,
    /// `[services.once]`: exactly-once keys.
    pub once: OnceConfig,
    /// `[services.events]`: the event bus.
    pub events: EventsConfig,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            redis_url: None,
            key_prefix: "bourse".to_owned(),
            redis_timeout_ms: 1_000,
            uniques: UniquesConfig::default(),
            once: OnceConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

/// `[services.uniques]`: how unique counts are batched, kept and bounded.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniquesConfig {
    /// In-process HyperLogLog precision, 14 to 16 (2^p registers, standard error 1.04/√2^p).
    /// Redis mode ignores it: Redis HyperLogLogs always have 2^14 registers.
    pub precision: u8,
    /// Items the request path can queue for the aggregator; beyond it items are dropped (and
    /// counted), never waited for. Read at start only: the queue outlives reconfigurations.
    pub channel_capacity: usize,
    /// Redis mode: send a batch once this many items are pending.
    pub batch_size: usize,
    /// Redis mode: send pending items at least this often, in milliseconds.
    pub flush_interval_ms: u64,
    /// How often the unique-count gauges are refreshed and old buckets evicted, in milliseconds.
    pub metrics_interval_ms: u64,
    /// Hour buckets kept, counting the current hour; older items are refused.
    pub hour_buckets: u64,
    /// Day buckets kept, counting the current day.
    pub day_buckets: u64,
    /// Items stamped further than this many seconds ahead of the clock are refused.
    pub max_future_skew_secs: u64,
    /// Distinct ids accepted per dimension and bucket; items naming more are refused, which
    /// bounds memory and Redis keys whatever the ids are made of.
    pub max_ids_per_dimension: usize,
    /// Redis mode: items held for retry while Redis fails; beyond it they are dropped.
    pub max_pending_events: usize,
}

impl Default for UniquesConfig {
    fn default() -> Self {
        UniquesConfig {
            precision: MIN_PRECISION,
            channel_capacity: 65_536,
            batch_size: 10_000,
            flush_interval_ms: 250,
            metrics_interval_ms: 15_000,
            hour_buckets: 48,
            day_buckets: 2,
            max_future_skew_secs: 300,
            max_ids_per_dimension: 10_000,
            max_pending_events: 200_000,
        }
    }
}

/// `[services.once]`: the in-process store of exactly-once keys.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnceConfig {
    /// Keys held in process before new ones are refused (keys are never evicted before their
    /// TTL, since forgetting one could let something happen twice). In Redis mode this node
    /// also remembers its own claims here, up to the same limit.
    pub max_keys: u64,
}

impl Default for OnceConfig {
    fn default() -> Self {
        OnceConfig {
            max_keys: 2_000_000,
        }
    }
}

/// `[services.events]`: the event bus.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Queue capacity of a subscriber that does not choose its own; a full queue drops.
    pub default_capacity: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            default_capacity: 4_096,
        }
    }
}

/// Largest subscriber queue accepted, by config or by a subscriber.
pub const MAX_SUBSCRIBER_CAPACITY: usize = 1 << 24;

/// Collects `(dotted path, message)` pairs.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn check(&mut self, ok: bool, path: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push((path.to_owned(), message()));
        }
    }

    fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        path: &str,
        value: T,
        min: T,
        max: T,
    ) {
        self.check(value >= min && value <= max, path, || {
            format!("is {value}; it must be between {min} and {max}")
        });
    }
}

impl ServicesConfig {
    /// Every problem of this table as `(path, message)`, the path relative to `[services]`
    /// (e.g. `uniques.precision`). Empty when the config can be used.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Problems::default();
        if let Some(url) = &self.redis_url {
            let client = redis::Client::open(url.as_str());
            problems.check(client.is_ok(), "redis_url", || {
                let reason = client.err().map(|err| err.to_string()).unwrap_or_default();
                format!("is not a usable Redis URL ({reason})")
            });
        }
        problems.check(valid_key_prefix(&self.key_prefix), "key_prefix", || {
            "must be 1 to 64 bytes without whitespace".to_owned()
        });
        problems.in_range("redis_timeout_ms", self.redis_timeout_ms, 1, 60_000);

        let uniques = &self.uniques;
        problems.in_range(
            "uniques.precision",
            uniques.precision,
            MIN_PRECISION,
            MAX_PRECISION,
        );
        problems.in_range(
            "uniques.channel_capacity",
            uniques.channel_capacity,
            1,
            16_777_216,
        );
        problems.in_range("uniques.batch_size", uniques.batch_size, 1, 1_000_000);
        problems.in_range(
            "uniques.flush_interval_ms",
            uniques.flush_interval_ms,
            1,
            3_600_000,
        );
        problems.in_range(
            "uniques.metrics_interval_ms",
            uniques.metrics_interval_ms,
            10,
            3_600_000,
        );
        // 24 hours at least, so the previous day is still whole when it is rolled up.
        problems.in_range("uniques.hour_buckets", uniques.hour_buckets, 24, 744);
        problems.in_range("uniques.day_buckets", uniques.day_buckets, 1, 31);
        problems.in_range(
            "uniques.max_future_skew_secs",
            uniques.max_future_skew_secs,
            0,
            3_600,
        );
        problems.in_range(
            "uniques.max_ids_per_dimension",
            uniques.max_ids_per_dimension,
            1,
            1_000_000,
        );
        problems.in_range(
            "uniques.max_pending_events",
            uniques.max_pending_events,
            uniques.batch_size,
            100_000_000,
        );
        problems.in_range("once.max_keys", self.once.max_keys, 1, 1_000_000_000);
        problems.in_range(
            "events.default_capacity",
            self.events.default_capacity,
            1,
            MAX_SUBSCRIBER_CAPACITY,
        );
        problems.0
    }

    pub(crate) fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

fn valid_key_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.len() <= 64
        && !prefix.contains(|c: char| c.is_whitespace() || c.is_control())
}

impl UniquesConfig {
    pub(crate) fn retention(&self) -> Retention {
        Retention {
            hour_buckets: self.hour_buckets,
            day_buckets: self.day_buckets,
            max_future_skew_secs: self.max_future_skew_secs,
        }
    }

    pub(crate) fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }

    pub(crate) fn metrics_interval(&self) -> Duration {
        Duration::from_millis(self.metrics_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_defaults() {
        let config: ServicesConfig = toml_like("{}");
        assert_eq!(config, ServicesConfig::default());
        assert_eq!(config.problems(), Vec::new());
        let nested: ServicesConfig = toml_like(r#"{"uniques": {"precision": 15}, "once": {}}"#);
        assert_eq!(nested.uniques.precision, 15);
        assert_eq!(nested.uniques.batch_size, 10_000);
        assert_eq!(nested.once, OnceConfig::default());
    }

    fn toml_like(json: &str) -> ServicesConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        for (json, field) in [
            (r#"{"redis_ulr": "redis://x"}"#, "redis_ulr"),
            (r#"{"uniques": {"precison": 15}}"#, "precison"),
            (r#"{"once": {"max_key": 1}}"#, "max_key"),
            (r#"{"events": {"capacity": 1}}"#, "capacity"),
        ] {
            let err = serde_json::from_str::<ServicesConfig>(json).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("unknown field `{field}`")),
                "{err}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let config = ServicesConfig {
            redis_url: Some("http://nope".into()),
            key_prefix: "a b".into(),
            uniques: UniquesConfig {
                precision: 12,
                channel_capacity: 0,
                hour_buckets: 3,
                max_pending_events: 10,
                ..UniquesConfig::default()
            },
            once: OnceConfig { max_keys: 0 },
            events: EventsConfig {
                default_capacity: 0,
            },
            ..ServicesConfig::default()
        };
        let problems = config.problems();
        let paths: Vec<&str> = problems.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "redis_url",
                "key_prefix",
                "uniques.precision",
                "uniques.channel_capacity",
                "uniques.hour_buckets",
                "uniques.max_pending_events",
                "once.max_keys",
                "events.default_capacity",
            ]
        );
        assert!(problems[0].1.starts_with("is not a usable Redis URL"));
        assert_eq!(problems[2].1, "is 12; it must be between 14 and 16");
        assert_eq!(
            problems[5].1,
            "is 10; it must be between 10000 and 100000000"
        );
    }
}
