//! Rate limits: named in-process limiters over `governor` (GCRA: one atomic compare-and-swap
//! per check, no lock), direct (one bucket) or keyed (a bucket per key), each counting its
//! refusals in `bourse_kernel_rate_limited_total{limiter}`.
//!
//! The seam for the shared, multi-level version: callers hold [`DirectLimiter`] and
//! [`KeyedLimiter`] handles and call a synchronous `check`. A Redis-backed limiter becomes
//! another state behind the same handles that answers from a share of the quota it leases from
//! Redis in the background, so the request path still never waits for the network and callers
//! do not change.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::task::JoinHandle;

/// Most limiters alive at once: each name is a label value of the refusal counter.
pub const MAX_LIMITERS: usize = 1_024;
/// Longest limiter name, in bytes.
pub const MAX_LIMITER_NAME_LEN: usize = 64;
/// How often keyed limiters forget keys whose bucket is full again.
const FORGET_IDLE_KEYS_EVERY: Duration = Duration::from_secs(30);

/// Why a limiter could not be made.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// A rate of zero, or one too fast to represent (under a nanosecond per unit).
    #[error("rate limits: {count} per {period:?} is not a usable rate")]
    InvalidRate {
        /// Units allowed per period.
        count: u32,
        /// The period.
        period: Duration,
    },
    /// The name cannot be a metric label value.
    #[error(
        "rate limits: limiter name {0:?} must be 1 to 64 bytes of letters, digits, _, -, ., : and /"
    )]
    InvalidName(String),
    /// The name is in use by a limiter of another kind (direct versus keyed, or another key
    /// type).
    #[error("rate limits: limiter {name:?} is a {existing}, not a {requested}")]
    KindClash {
        /// The limiter's name.
        name: String,
        /// What it is.
        existing: String,
        /// What was asked for.
        requested: String,
    },
    /// [`MAX_LIMITERS`] limiters are alive.
    #[error("rate limits: at most {0} limiters can be alive at once")]
    TooMany(usize),
}

/// A rate: `count` units per `period`, with bursts of up to `burst` units (by default
/// `count`: a full period's worth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
}

impl Rate {
    /// `count` per `period`; fails for a zero count or a rate above one unit per nanosecond.
    pub fn new(count: u32, period: Duration) -> Result<Rate, LimitError> {
        let invalid = LimitError::InvalidRate { count, period };
        let nonzero = NonZeroU32::new(count).ok_or_else(|| invalid.clone())?;
        if (period / count).is_zero() {
            return Err(invalid);
        }
        Ok(Rate {
            count: nonzero,
            period,
            burst: nonzero,
        })
    }

    /// `count` per second.
    pub fn per_second(count: u32) -> Result<Rate, LimitError> {
        Rate::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    pub fn per_minute(count: u32) -> Result<Rate, LimitError> {
        Rate::new(count, Duration::from_secs(60))
    }

    /// The same rate with bursts of up to `burst` units (at least 1).
    pub fn with_burst(self, burst: u32) -> Rate {
        Rate {
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            ..self
        }
    }

    fn quota(self) -> Quota {
        // `new` refused every rate whose interval rounds to zero.
        Quota::with_period(self.period / self.count.get())
            .expect("a non-zero replenish interval")
            .allow_burst(self.burst)
    }
}

/// A refused check: try again after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// When the next unit will be available.
    pub retry_after: Duration,
}

/// Hands out named limiters. Cheap to clone.
///
/// Asking again for a live name with the same kind and rate returns the same limiter, so its
/// state survives a configuration change that leaves it alone; a new rate makes a fresh
/// limiter under that name (holders of the old one keep it until they drop it).
#[derive(Clone)]
pub struct RateLimits {
    shared: Arc<LimitsShared>,
}

struct LimitsShared {
    limiters: Mutex<HashMap<String, Registered>>,
    refused: IntCounterVec,
    housekeeping: Mutex<Option<JoinHandle<()>>>,
}

/// A live limiter, held weakly: the registry never keeps a limiter alive by itself.
struct Registered {
    kind: Kind,
    rate: Rate,
    limiter: Weak<dyn Any + Send + Sync>,
    forget_idle: Option<Weak<dyn ForgetIdle>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Keyed(TypeId, &'static str),
}

impl Kind {
    fn describe(self) -> String {
        match self {
            Kind::Direct => "direct limiter".to_owned(),
            Kind::Keyed(_, key) => format!("limiter keyed by {key}"),
        }
    }
}

/// Keyed limiters drop keys whose bucket is full again, which bounds their memory to the keys
/// seen recently.
trait ForgetIdle: Send + Sync {
    fn forget_idle_keys(&self);
}

impl RateLimits {
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let refused = IntCounterVec::new(
            Opts::new(
                "bourse_kernel_rate_limited_total",
                "Checks refused by a rate limiter, per limiter name.",
            ),
            &["limiter"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        let shared = Arc::new(LimitsShared {
            limiters: Mutex::new(HashMap::new()),
            refused,
            housekeeping: Mutex::new(None),
        });
        let task = tokio::spawn(forget_idle_keys(Arc::downgrade(&shared)));
        *shared.housekeeping.lock() = Some(task);
        Ok(RateLimits { shared })
    }

    /// One bucket shared by every caller, e.g. a partner's QPS cap.
    pub fn direct(&self, name: &str, rate: Rate) -> Result<DirectLimiter, LimitError> {
        let inner = self.get_or_make(name, rate, Kind::Direct, |refused| {
            let inner = Arc::new(DirectInner {
                limiter: RateLimiter::direct(rate.quota()),
                refused,
            });
            (inner, None)
        })?;
        Ok(DirectLimiter { inner, rate })
    }

    /// A bucket per key, e.g. sign-in attempts per client address.
    pub fn keyed<K>(&self, name: &str, rate: Rate) -> Result<KeyedLimiter<K>, LimitError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        let kind = Kind::Keyed(TypeId::of::<K>(), std::any::type_name::<K>());
        let inner = self.get_or_make(name, rate, kind, |refused| {
            let inner = Arc::new(KeyedInner::<K> {
                limiter: RateLimiter::keyed(rate.quota()),
                refused,
            });
            let forget: Arc<dyn ForgetIdle> = inner.clone();
            (inner, Some(Arc::downgrade(&forget)))
        })?;
        Ok(KeyedLimiter { inner, rate })
    }

    fn get_or_make<T: Any + Send + Sync>(
        &self,
        name: &str,
        rate: Rate,
        kind: Kind,
        make: impl FnOnce(IntCounter) -> (Arc<T>, Option<Weak<dyn ForgetIdle>>),
    ) -> Result<Arc<T>, LimitError> {
        check_name(name)?;
        let mut limiters = self.shared.limiters.lock();
        if let Some(registered) = limiters.get(name)
            && let Some(live) = registered.limiter.upgrade()
        {
            if registered.kind != kind {
                return Err(LimitError::KindClash {
                    name: name.to_owned(),
                    existing: registered.kind.describe(),
                    requested: kind.describe(),
                });
            }
            if registered.rate == rate
                && let Ok(same) = live.downcast::<T>()
            {
                return Ok(same);
            }
        }
        if !limiters.contains_key(name) && limiters.len() >= MAX_LIMITERS {
            limiters.retain(|_, registered| registered.limiter.strong_count() > 0);
            if limiters.len() >= MAX_LIMITERS {
                return Err(LimitError::TooMany(MAX_LIMITERS));
            }
        }
        let refused = self.shared.refused.with_label_values(&[name]);
        let (limiter, forget_idle) = make(refused);
        let erased: Arc<dyn Any + Send + Sync> = limiter.clone();
        limiters.insert(
            name.to_owned(),
            Registered {
                kind,
                rate,
                limiter: Arc::downgrade(&erased),
                forget_idle,
            },
        );
        Ok(limiter)
    }

    /// Stops the task that trims keyed limiters.
    pub(crate) fn shutdown(&self) {
        if let Some(task) = self.shared.housekeeping.lock().take() {
            task.abort();
        }
    }
}

fn check_name(name: &str) -> Result<(), LimitError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_LIMITER_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'));
    if valid {
        Ok(())
    } else {
        Err(LimitError::InvalidName(name.to_owned()))
    }
}

/// Every [`FORGET_IDLE_KEYS_EVERY`], trims every live keyed limiter; ends with the registry.
async fn forget_idle_keys(shared: Weak<LimitsShared>) {
    let mut ticks = tokio::time::interval(FORGET_IDLE_KEYS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let keyed: Vec<Arc<dyn ForgetIdle>> = shared
            .limiters
            .lock()
            .values()
            .filter_map(|registered| registered.forget_idle.as_ref()?.upgrade())
            .collect();
        for limiter in keyed {
            limiter.forget_idle_keys();
        }
    }
}

struct DirectInner {
    limiter: DefaultDirectRateLimiter,
    refused: IntCounter,
}

/// One bucket. Cheap to clone; clones share the bucket.
#[derive(Clone)]
pub struct DirectLimiter {
    inner: Arc<DirectInner>,
    rate: Rate,
}

impl DirectLimiter {
    /// Takes one unit, or says when one will be available (and counts the refusal).
    pub fn check(&self) -> Result<(), Refused> {
        let limiter = &self.inner.limiter;
        limiter.check().map_err(|not_until| {
            self.inner.refused.inc();
            Refused {
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            }
        })
    }

    /// The rate it was made with.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// `true` if both handles share one bucket.
    pub fn same_bucket(&self, other: &DirectLimiter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

struct KeyedInner<K: Hash + Eq + Clone + Send + Sync + 'static> {
    limiter: DefaultKeyedRateLimiter<K>,
    refused: IntCounter,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> ForgetIdle for KeyedInner<K> {
    fn forget_idle_keys(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// A bucket per key. Cheap to clone; clones share the buckets.
pub struct KeyedLimiter<K: Hash + Eq + Clone + Send + Sync + 'static> {
    inner: Arc<KeyedInner<K>>,
    rate: Rate,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Clone for KeyedLimiter<K> {
    fn clone(&self) -> Self {
        KeyedLimiter {
            inner: Arc::clone(&self.inner),
            rate: self.rate,
        }
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> KeyedLimiter<K> {
    /// Takes one unit from `key`'s bucket, or says when one will be available (and counts the
    /// refusal).
    pub fn check(&self, key: &K) -> Result<(), Refused> {
        let limiter = &self.inner.limiter;
        limiter.check_key(key).map_err(|not_until| {
            self.inner.refused.inc();
            Refused {
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            }
        })
    }

    /// Keys currently tracked (idle ones are forgotten every 30 seconds).
    pub fn tracked_keys(&self) -> usize {
        self.inner.limiter.len()
    }

    /// Forgets now the keys whose bucket is full again (the background task does it every 30 s).
    pub fn forget_idle_keys(&self) {
        self.inner.forget_idle_keys();
    }

    /// The rate it was made with.
    pub fn rate(&self) -> Rate {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_refuse_zero_and_sub_nanosecond_intervals() {
        assert!(Rate::per_second(0).is_err());
        assert!(Rate::new(2, Duration::from_nanos(1)).is_err());
        let rate = Rate::per_second(10).unwrap();
        assert_eq!(
            rate.quota().replenish_interval(),
            Duration::from_millis(100)
        );
        assert_eq!(rate.quota().burst_size().get(), 10);
        assert_eq!(rate.with_burst(0).quota().burst_size().get(), 1);
        assert_eq!(
            Rate::per_minute(0).unwrap_err().to_string(),
            "rate limits: 0 per 60s is not a usable rate"
        );
    }

    #[test]
    fn names_are_checked() {
        for good in ["admin.sign_in", "bidder:dsp-a", "api/v1"] {
            assert_eq!(check_name(good), Ok(()));
        }
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
