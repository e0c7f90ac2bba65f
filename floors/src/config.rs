//! Configuration of learned floors (`LearnedFloorsConfig`) and its checks.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything learned floors are configured with. Every field has a default, unknown keys are
/// refused, and [`LearnedFloorsConfig::validate`] checks what the types cannot.
///
/// Memory is bounded by `max_placements × (1 + max_segments_per_placement) × window` samples of
/// 12 bytes each (see [`LearnedFloorsConfig::memory_bound_bytes`]; about 428 MB with the
/// defaults), whatever the traffic. Windows grow with traffic, so a quiet key costs little.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnedFloorsConfig {
    /// Learn and apply floors. Off by default: a floor changes what the exchange sells.
    pub enabled: bool,
    /// Share of auctions of a key with a learned floor that run at the static floor instead, so
    /// the learner keeps seeing bids below the learned floor. In `(0, 0.5]`; default 0.05.
    pub exploration_share: f64,
    /// Uncensored auctions a key needs in its window before its learned floor applies.
    /// In `[100, window]`; default 1,000.
    pub min_observations: usize,
    /// Uncensored auctions kept per key (a ring: the newest replace the oldest).
    /// In `[100, 65,536]`; default 4,096.
    pub window: usize,
    /// Highest floor ever learned, in the auction currency (CPM). Finite and positive;
    /// default 50.
    pub max_floor: f64,
    /// Largest relative change of a floor in one update (0.25: at most ±25 %). In `(0, 1]`;
    /// default 0.25. A key's first learned floor is not limited.
    pub max_step: f64,
    /// Smallest estimated revenue gain, relative to the current floor's, that moves a floor
    /// (0.01: 1 %). In `[0, 0.5]`; default 0.01.
    pub hysteresis: f64,
    /// Floors are recomputed at least this often while observations arrive, in milliseconds.
    /// In `[10, 3,600,000]`; default 1,000.
    pub recompute_interval_ms: u64,
    /// Floors are also recomputed after this many observations. At least 1; default 10,000.
    pub recompute_every_observations: u64,
    /// Observations that can wait for the learner; beyond that they are dropped and counted.
    /// In `[16, 16,777,216]`; default 65,536.
    pub channel_capacity: usize,
    /// Segments learned per placement; the traffic of further segments only feeds the
    /// placement-level floor. At most 4,096; default 16 (0 learns placement floors only).
    pub max_segments_per_placement: usize,
    /// Placements learned; observations of further placements are ignored. In `[1, 1,000,000]`;
    /// default 512. Placements come from configuration, so this is a safety net.
    pub max_placements: usize,
}

impl Default for LearnedFloorsConfig {
    fn default() -> Self {
        LearnedFloorsConfig {
            enabled: false,
            exploration_share: 0.05,
            min_observations: 1_000,
            window: 4_096,
            max_floor: 50.0,
            max_step: 0.25,
            hysteresis: 0.01,
            recompute_interval_ms: 1_000,
            recompute_every_observations: 10_000,
            channel_capacity: 65_536,
            max_segments_per_placement: 16,
            max_placements: 512,
        }
    }
}

/// A configuration value out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("learned floors: `{field}` {problem}, got {value}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What it must be.
    pub problem: String,
    /// The value given.
    pub value: String,
}

/// Bytes one sample of the window takes (two `f32` prices and the auction type, padded).
pub(crate) const SAMPLE_BYTES: usize = 12;

impl LearnedFloorsConfig {
    /// Checks every field's range; the error names the field, the rule and the value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let share = self.exploration_share;
        check(
            "exploration_share",
            share > 0.0 && share <= 0.5,
            "must be in (0, 0.5]: without exploration a floor can never learn to come down",
            share,
        )?;
        check(
            "window",
            (100..=65_536).contains(&self.window),
            "must be in [100, 65536]",
            self.window,
        )?;
        check(
            "min_observations",
            self.min_observations >= 100 && self.min_observations <= self.window,
            &format!(
                "must be at least 100 (fewer cannot estimate a revenue curve) and at most `window` ({})",
                self.window
            ),
            self.min_observations,
        )?;
        check(
            "max_floor",
            self.max_floor.is_finite() && self.max_floor > 0.0,
            "must be a finite positive CPM",
            self.max_floor,
        )?;
        check(
            "max_step",
            self.max_step > 0.0 && self.max_step <= 1.0,
            "must be in (0, 1] (a relative change per update)",
            self.max_step,
        )?;
        check(
            "hysteresis",
            (0.0..=0.5).contains(&self.hysteresis),
            "must be in [0, 0.5] (a relative revenue gain)",
            self.hysteresis,
        )?;
        check(
            "recompute_interval_ms",
            (10..=3_600_000).contains(&self.recompute_interval_ms),
            "must be in [10, 3600000] milliseconds",
            self.recompute_interval_ms,
        )?;
        check(
            "recompute_every_observations",
            self.recompute_every_observations >= 1,
            "must be at least 1",
            self.recompute_every_observations,
        )?;
        check(
            "channel_capacity",
            (16..=1 << 24).contains(&self.channel_capacity),
            "must be in [16, 16777216]",
            self.channel_capacity,
        )?;
        check(
            "max_segments_per_placement",
            self.max_segments_per_placement <= 4_096,
            "must be at most 4096",
            self.max_segments_per_placement,
        )?;
        check(
            "max_placements",
            (1..=1_000_000).contains(&self.max_placements),
            "must be in [1, 1000000]",
            self.max_placements,
        )
    }

    /// The most memory the learner's windows can take, in bytes, whatever the traffic.
    pub fn memory_bound_bytes(&self) -> u64 {
        let keys = self.max_placements as u64 * (1 + self.max_segments_per_placement as u64);
        keys * self.window as u64 * SAMPLE_BYTES as u64
    }

    /// [`LearnedFloorsConfig::recompute_interval_ms`] as a duration.
    pub fn recompute_interval(&self) -> Duration {
        Duration::from_millis(self.recompute_interval_ms)
    }
}

fn check(
    field: &'static str,
    ok: bool,
    problem: &str,
    value: impl std::fmt::Display,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            problem: problem.to_owned(),
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounded() {
        let config = LearnedFloorsConfig::default();
        assert_eq!(config.validate(), Ok(()));
        // 512 placements × 17 keys × 4,096 samples × 12 bytes: about 428 MB at worst.
        assert_eq!(config.memory_bound_bytes(), 512 * 17 * 4_096 * 12);
    }

    #[test]
    fn each_out_of_range_field_is_named_with_its_value() {
        // (how to break the configuration, the field named, the value shown)
        type Case = (fn(&mut LearnedFloorsConfig), &'static str, &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.exploration_share = 0.0, "exploration_share", "0"),
            (
                |c| c.exploration_share = f64::NAN,
                "exploration_share",
                "NaN",
            ),
            (|c| c.exploration_share = 0.6, "exploration_share", "0.6"),
            (|c| c.window = 10, "window", "10"),
            (|c| c.min_observations = 5_000, "min_observations", "5000"),
            (|c| c.min_observations = 10, "min_observations", "10"),
            (|c| c.max_floor = f64::INFINITY, "max_floor", "inf"),
            (|c| c.max_floor = -1.0, "max_floor", "-1"),
            (|c| c.max_step = 0.0, "max_step", "0"),
            (|c| c.max_step = 1.5, "max_step", "1.5"),
            (|c| c.hysteresis = -0.1, "hysteresis", "-0.1"),
            (
                |c| c.recompute_interval_ms = 1,
                "recompute_interval_ms",
                "1",
            ),
            (
                |c| c.recompute_every_observations = 0,
                "recompute_every_observations",
                "0",
            ),
            (|c| c.channel_capacity = 0, "channel_capacity", "0"),
            (
                |c| c.max_segments_per_placement = 10_000,
                "max_segments_per_placement",
                "10000",
            ),
            (|c| c.max_placements = 0, "max_placements", "0"),
        ];
        for (break_it, field, value) in cases {
            let mut config = LearnedFloorsConfig::default();
            break_it(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, field);
            assert_eq!(error.value, value);
            let message = error.to_string();
            assert!(
                message.contains(field) && message.contains(value),
                "{message}"
            );
        }
    }

    #[test]
    fn message_reads_well() {
        let config = LearnedFloorsConfig {
            min_observations: 50,
            ..LearnedFloorsConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "learned floors: `min_observations` must be at least 100 (fewer cannot estimate a \
             revenue curve) and at most `window` (4096), got 50"
        );
    }
}
