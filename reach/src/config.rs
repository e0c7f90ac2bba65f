//! Settings for reach counting and billing de-duplication, with defaults and validation.

use std::time::Duration;

use serde::Deserialize;

use crate::window::Retention;

/// Lowest accepted HyperLogLog precision: below it the 1 % mean error target is not met.
pub const MIN_PRECISION: u8 = 14;
/// Highest accepted precision: above it a dense sketch exceeds 48 KiB per id and bucket.
pub const MAX_PRECISION: u8 = 16;

/// Configuration of the reach aggregator and of [`BillingDedup`](crate::BillingDedup).
///
/// Every field has a default, so `{}` (or an empty TOML table) is a valid in-process config.
/// Unknown fields are refused so that a typo does not silently fall back to a default.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReachConfig {
    /// `redis://…` URL. When set, counts and billing de-duplication live in Redis and are shared
    /// by every node; when absent both stay in this process.
    pub redis_url: Option<String>,
    /// First segment of every Redis key (`{key_prefix}:reach:…`, `{key_prefix}:billed:…`).
    pub key_prefix: String,
    /// In-process HyperLogLog precision, 14 to 16 (2^p registers, standard error 1.04/√2^p).
    /// Redis mode ignores it: Redis HyperLogLogs always have 2^14 registers.
    pub precision: u8,
    /// Events the request path can queue for the aggregator; beyond it events are dropped
    /// (and counted), never waited for.
    pub channel_capacity: usize,
    /// Redis mode: send a batch once this many events are pending.
    pub batch_size: usize,
    /// Redis mode: send pending events at least this often, in milliseconds.
    pub flush_interval_ms: u64,
    /// How often the unique-user gauges are refreshed and old buckets evicted, in milliseconds.
    pub metrics_interval_ms: u64,
    /// Hour buckets kept, counting the current hour; older events are refused.
    pub hour_buckets: u64,
    /// Day buckets kept, counting the current day.
    pub day_buckets: u64,
    /// Events stamped further than this many seconds ahead of the wall clock are refused.
    pub max_future_skew_secs: u64,
    /// Distinct ids accepted per dimension and bucket; events naming more are refused, which
    /// bounds memory if an id ever stops coming from config.
    pub max_ids_per_dimension: usize,
    /// Redis mode: events held for retry while Redis fails; beyond it they are dropped.
    pub max_pending_events: usize,
    /// Redis connect and response timeout, in milliseconds.
    pub redis_timeout_ms: u64,
    /// In-process billing de-duplication: keys held before `first_seen` refuses new ones
    /// (keys are never evicted early, since that could bill twice).
    pub dedup_max_keys: u64,
}

impl Default for ReachConfig {
    fn default() -> Self {
        ReachConfig {
            redis_url: None,
            key_prefix: "bourse".to_owned(),
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
            redis_timeout_ms: 1_000,
            dedup_max_keys: 2_000_000,
        }
    }
}

/// A config value outside its accepted range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("reach config: `{field}` {problem}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it and what is accepted.
        problem: String,
    },
}

fn check(
    ok: bool,
    field: &'static str,
    problem: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            problem: problem(),
        })
    }
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    check(value >= min && value <= max, field, || {
        format!("is {value}; it must be between {min} and {max}")
    })
}

impl ReachConfig {
    /// Checks every field; `start` and `BillingDedup::from_config` call this first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            let client = redis::Client::open(url.as_str());
            check(client.is_ok(), "redis_url", || {
                let reason = client.err().map(|err| err.to_string()).unwrap_or_default();
                format!("is not a usable Redis URL ({reason})")
            })?;
        }
        check(
            !self.key_prefix.is_empty()
                && self.key_prefix.len() <= 64
                && !self
                    .key_prefix
                    .contains(|c: char| c.is_whitespace() || c.is_control()),
            "key_prefix",
            || "must be 1 to 64 bytes without whitespace".to_owned(),
        )?;
        in_range("precision", self.precision, MIN_PRECISION, MAX_PRECISION)?;
        in_range("channel_capacity", self.channel_capacity, 1, 16_777_216)?;
        in_range("batch_size", self.batch_size, 1, 1_000_000)?;
        in_range("flush_interval_ms", self.flush_interval_ms, 1, 3_600_000)?;
        in_range(
            "metrics_interval_ms",
            self.metrics_interval_ms,
            10,
            3_600_000,
        )?;
        // 24 hours at least, so the previous day is still whole when it is rolled up.
        in_range("hour_buckets", self.hour_buckets, 24, 744)?;
        in_range("day_buckets", self.day_buckets, 1, 31)?;
        in_range("max_future_skew_secs", self.max_future_skew_secs, 0, 3_600)?;
        in_range(
            "max_ids_per_dimension",
            self.max_ids_per_dimension,
            1,
            1_000_000,
        )?;
        in_range(
            "max_pending_events",
            self.max_pending_events,
            self.batch_size,
            100_000_000,
        )?;
        in_range("redis_timeout_ms", self.redis_timeout_ms, 1, 60_000)?;
        in_range("dedup_max_keys", self.dedup_max_keys, 1, 1_000_000_000)?;
        Ok(())
    }

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

    pub(crate) fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let config: ReachConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, ReachConfig::default());
        config.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<ReachConfig>(r#"{"precison": 15}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `precison`"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases: Vec<(ReachConfig, &str)> = vec![
            (
                ReachConfig {
                    precision: 12,
                    ..ReachConfig::default()
                },
                "`precision` is 12",
            ),
            (
                ReachConfig {
                    channel_capacity: 0,
                    ..ReachConfig::default()
                },
                "`channel_capacity`",
            ),
            (
                ReachConfig {
                    flush_interval_ms: 0,
                    ..ReachConfig::default()
                },
                "`flush_interval_ms`",
            ),
            (
                ReachConfig {
                    hour_buckets: 3,
                    ..ReachConfig::default()
                },
                "`hour_buckets`",
            ),
            (
                ReachConfig {
                    key_prefix: "a b".into(),
                    ..ReachConfig::default()
                },
                "`key_prefix`",
            ),
            (
                ReachConfig {
                    max_pending_events: 10,
                    ..ReachConfig::default()
                },
                "`max_pending_events` is 10; it must be between 10000",
            ),
            (
                ReachConfig {
                    redis_url: Some("http://nope".into()),
                    ..ReachConfig::default()
                },
                "`redis_url` is not a usable Redis URL",
            ),
        ];
        for (config, expected) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }
}
