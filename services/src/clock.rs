//! The clock every service and plugin reads: the wall clock, or a manual one that tests set
//! and advance.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time. Cheap to clone; reading it is a branch and either the system clock or one
/// atomic load (no trait object).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// `None`: the system clock. `Some`: milliseconds since the epoch, set by a [`ManualClock`].
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn wall() -> Self {
        Clock { manual: None }
    }

    /// A clock that stands still at `start` until its [`ManualClock`] moves it.
    pub fn manual(start: SystemTime) -> (Clock, ManualClock) {
        let millis = Arc::new(AtomicU64::new(millis_since_epoch(start)));
        (
            Clock {
                manual: Some(Arc::clone(&millis)),
            },
            ManualClock { millis },
        )
    }

    /// Milliseconds since the Unix epoch (0 if the clock is before 1970).
    pub fn unix_millis(&self) -> u64 {
        match &self.manual {
            None => millis_since_epoch(SystemTime::now()),
            Some(millis) => millis.load(Ordering::Relaxed),
        }
    }

    /// Seconds since the Unix epoch (0 if the clock is before 1970).
    pub fn unix_secs(&self) -> u64 {
        match &self.manual {
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs()),
            Some(millis) => millis.load(Ordering::Relaxed) / 1_000,
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(millis) => UNIX_EPOCH + Duration::from_millis(millis.load(Ordering::Relaxed)),
        }
    }

    /// `true` for a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }
}

/// Moves a manual [`Clock`] (and every clone of it).
#[derive(Clone, Debug)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// Moves the clock forward by `by` (millisecond resolution).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        // `fetch_update` never fails with a closure that always returns `Some`.
        let _ = self
            .millis
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `to` (it may go backwards, as a wall clock can).
    pub fn set(&self, to: SystemTime) {
        self.millis.store(millis_since_epoch(to), Ordering::Relaxed);
    }
}

fn millis_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_follows_the_system_clock() {
        let clock = Clock::wall();
        let before = SystemTime::now();
        let read = clock.now();
        let after = SystemTime::now();
        assert!(before <= read && read <= after);
        let secs = clock.unix_secs();
        let millis = clock.unix_millis();
        assert!(millis / 1_000 >= secs && millis / 1_000 <= secs + 1);
        assert!(secs > 1_700_000_000, "{secs}");
        assert!(!clock.is_manual());
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_every_clone_sees_it() {
        let start = UNIX_EPOCH + Duration::from_millis(1_800_000_000_250);
        let (clock, control) = Clock::manual(start);
        let copy = clock.clone();
        assert_eq!(clock.unix_millis(), 1_800_000_000_250);
        assert_eq!(clock.unix_secs(), 1_800_000_000);
        control.advance(Duration::from_millis(800));
        assert_eq!(copy.unix_millis(), 1_800_000_001_050);
        assert_eq!(copy.unix_secs(), 1_800_000_001);
        assert_eq!(copy.now(), start + Duration::from_millis(800));
        control.set(UNIX_EPOCH + Duration::from_secs(5));
        assert_eq!(clock.unix_secs(), 5);
        control.set(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(clock.unix_millis(), 0);
        assert!(clock.is_manual());
    }
}
