//! Time windows (UTC hours and days) that unique counts are kept over, and their labels.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::item::Rejection;
use crate::clock::Clock;

/// Seconds in one hour bucket.
pub(crate) const SECS_PER_HOUR: u64 = 3_600;
/// Seconds in one day bucket.
pub(crate) const SECS_PER_DAY: u64 = 86_400;

/// A counting window: the UTC hour or UTC day that contains a Unix timestamp (seconds).
///
/// Any timestamp inside the window names it; [`Window::start`] gives its first second, and
/// counts returned by queries always carry the normalised form (`Hour(start)` / `Day(start)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// The UTC hour containing this Unix timestamp.
    Hour(u64),
    /// The UTC day (00:00–23:59:59) containing this Unix timestamp.
    Day(u64),
}

impl Window {
    /// The hour containing the clock's current time.
    pub fn current_hour(clock: &Clock) -> Self {
        Window::Hour(clock.unix_secs())
    }

    /// The day containing the clock's current time.
    pub fn current_day(clock: &Clock) -> Self {
        Window::Day(clock.unix_secs())
    }

    /// The same window, named by its first second.
    pub fn normalized(self) -> Self {
        match self {
            Window::Hour(_) => Window::Hour(self.start()),
            Window::Day(_) => Window::Day(self.start()),
        }
    }

    /// Unix timestamp of the window's first second.
    pub fn start(self) -> u64 {
        match self {
            Window::Hour(ts) => ts - ts % SECS_PER_HOUR,
            Window::Day(ts) => ts - ts % SECS_PER_DAY,
        }
    }

    /// `"hour"` or `"day"`: the granularity, as used in metric labels and JSON.
    pub fn granularity(self) -> &'static str {
        match self {
            Window::Hour(_) => "hour",
            Window::Day(_) => "day",
        }
    }

    /// UTC label: `YYYYMMDDHH` for an hour, `YYYYMMDD` for a day (as in Redis keys).
    pub fn label(self) -> String {
        match self {
            Window::Hour(ts) => hour_label(ts / SECS_PER_HOUR),
            Window::Day(ts) => day_label(ts / SECS_PER_DAY),
        }
    }
}

/// Serialised as `{"granularity": "hour", "start": 1767225600, "label": "2026010100"}`.
impl Serialize for Window {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("Window", 3)?;
        state.serialize_field("granularity", self.granularity())?;
        state.serialize_field("start", &self.start())?;
        state.serialize_field("label", &self.label())?;
        state.end()
    }
}

/// Which buckets are kept and which event timestamps are accepted, relative to "now".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    /// Hour buckets kept, counting the current one (at least 1).
    pub(crate) hour_buckets: u64,
    /// Day buckets kept, counting the current one (at least 1).
    pub(crate) day_buckets: u64,
    /// How far ahead of `now` an event may be stamped.
    pub(crate) max_future_skew_secs: u64,
}

impl Retention {
    /// Oldest hour index still kept at `now`.
    pub(crate) fn oldest_hour(&self, now: u64) -> u64 {
        (now / SECS_PER_HOUR).saturating_sub(self.hour_buckets.saturating_sub(1))
    }

    /// Oldest day index still kept at `now`.
    pub(crate) fn oldest_day(&self, now: u64) -> u64 {
        (now / SECS_PER_DAY).saturating_sub(self.day_buckets.saturating_sub(1))
    }

    /// Refuses an event older than the kept hours or too far in the future.
    pub(crate) fn admit(&self, timestamp: u64, now: u64) -> Result<(), Rejection> {
        if timestamp / SECS_PER_HOUR < self.oldest_hour(now) {
            Err(Rejection::TooOld)
        } else if timestamp > now.saturating_add(self.max_future_skew_secs) {
            Err(Rejection::InFuture)
        } else {
            Ok(())
        }
    }
}

/// `YYYYMMDDHH` for an hour index (hours since the epoch).
pub(crate) fn hour_label(hour_index: u64) -> String {
    let (year, month, day) = civil_date(hour_index / 24);
    format!("{year:04}{month:02}{day:02}{:02}", hour_index % 24)
}

/// `YYYYMMDD` for a day index (days since the epoch).
pub(crate) fn day_label(day_index: u64) -> String {
    let (year, month, day) = civil_date(day_index);
    format!("{year:04}{month:02}{day:02}")
}

/// Proleptic Gregorian (year, month, day) of a day index, by counting 400-year eras that start
/// on 1 March (so the leap day is the last day of each shifted year).
fn civil_date(day_index: u64) -> (u64, u64, u64) {
    const DAYS_PER_ERA: u64 = 146_097;
    // 1970-01-01 is day 719_468 counted from 0000-03-01.
    let days = day_index + 719_468;
    let era = days / DAYS_PER_ERA;
    let day_of_era = days % DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March … 11 = February.
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_known_utc_dates() {
        assert_eq!(Window::Hour(0).label(), "1970010100");
        assert_eq!(Window::Day(0).label(), "19700101");
        // 2000-02-29 13:20:00 UTC (a leap day in a year divisible by 400).
        assert_eq!(Window::Hour(951_830_400).label(), "2000022913");
        // 2024-12-31 23:59:59 UTC: last second of a leap year.
        assert_eq!(Window::Hour(1_735_689_599).label(), "2024123123");
        assert_eq!(Window::Day(1_735_689_599).label(), "20241231");
        // 2026-03-01 00:00:00 UTC: the day after 28 February in a common year.
        assert_eq!(Window::Day(1_772_323_200).label(), "20260301");
        // 2100-02-28 is followed by 2100-03-01 (2100 is not a leap year).
        assert_eq!(Window::Day(4_107_456_000).label(), "21000228");
        assert_eq!(Window::Day(4_107_542_400).label(), "21000301");
    }

    #[test]
    fn extreme_timestamps_do_not_panic() {
        assert!(!Window::Hour(u64::MAX).label().is_empty());
        assert!(!Window::Day(u64::MAX).label().is_empty());
    }

    #[test]
    fn retention_refuses_old_and_future_events() {
        let retention = Retention {
            hour_buckets: 48,
            day_buckets: 2,
            max_future_skew_secs: 300,
        };
        let now = 1_800_000_000;
        let current_hour_start = now - now % SECS_PER_HOUR;
        assert_eq!(retention.admit(now, now), Ok(()));
        assert_eq!(retention.admit(now + 300, now), Ok(()));
        assert_eq!(retention.admit(now + 301, now), Err(Rejection::InFuture));
        let oldest_kept = current_hour_start - 47 * SECS_PER_HOUR;
        assert_eq!(retention.admit(oldest_kept, now), Ok(()));
        assert_eq!(
            retention.admit(oldest_kept - 1, now),
            Err(Rejection::TooOld)
        );
        assert_eq!(retention.admit(0, 10), Ok(()));
    }

    #[test]
    fn windows_normalise_to_their_first_second() {
        assert_eq!(Window::Hour(7_199).normalized(), Window::Hour(3_600));
        assert_eq!(Window::Day(86_399).normalized(), Window::Day(0));
        let json = serde_json::to_string(&Window::Hour(3_601)).unwrap();
        assert_eq!(
            json,
            r#"{"granularity":"hour","start":3600,"label":"1970010101"}"#
        );
    }
}
