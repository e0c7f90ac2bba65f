//! Exactly-once keys: for each key exactly one caller is told "first" until its TTL ends,
//! across threads (in process) or across every node (Redis `SET NX`).
//!
//! Keys live in namespaces ([`OnceKeys::namespace`]) so plugins sharing the service never
//! collide; in Redis a key is `{key_prefix}:{namespace}:{key}` (the exchange's `billed`
//! namespace therefore keeps the `{key_prefix}:billed:{key}` keys it has always written).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use redis::aio::ConnectionManager;

use crate::uniques::Backend;

/// Longest accepted key, in bytes (namespace excluded).
pub const MAX_ONCE_KEY_LEN: usize = 512;
/// Longest accepted TTL.
pub const MAX_ONCE_TTL: Duration = Duration::from_secs(366 * 86_400);
/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 32;
/// Namespaces other services write under the same prefix.
const RESERVED_NAMESPACES: [&str; 2] = ["uniq", "uniq-index"];

/// Why an exactly-once call could not answer. Every error means "unknown": the caller must not
/// act, since acting on an error could act twice.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    /// The namespace name cannot be used.
    #[error(
        "once keys: namespace {0:?} must be 1 to 32 bytes of a-z, 0-9, _ and -, and not uniq \
         or uniq-index"
    )]
    InvalidNamespace(String),
    /// The key is empty or longer than [`MAX_ONCE_KEY_LEN`].
    #[error("once keys: key must be 1 to {MAX_ONCE_KEY_LEN} bytes, got {0} bytes")]
    InvalidKey(usize),
    /// The TTL is zero or longer than [`MAX_ONCE_TTL`].
    #[error("once keys: ttl must be above zero and at most 366 days, got {0:?}")]
    InvalidTtl(Duration),
    /// The in-process map holds `once.max_keys` live keys. Keys are never evicted before their
    /// TTL (that could let something happen twice), so new keys are refused instead.
    #[error(
        "once keys: {limit} keys are already held in process; refusing new keys rather than \
         risk doing something twice (raise services.once.max_keys, shorten the TTL or configure \
         Redis)"
    )]
    Full {
        /// The configured `once.max_keys`.
        limit: u64,
    },
    /// Redis failed or timed out: whether the key was taken is unknown.
    #[error("once keys: Redis failed, so the answer is unknown: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered `SET … NX` with something other than OK or nil.
    #[error("once keys: unexpected Redis reply to SET NX: {0}")]
    UnexpectedReply(String),
}

/// Refusals counted in `bourse_kernel_once_refusals_total{reason}`.
#[derive(Clone, Copy)]
enum Refusal {
    Full,
    Redis,
}

/// Exactly-once keys. Cheap to clone; clones share the keys and follow every reconfiguration.
///
/// Every node keeps an in-process map. In process mode it is the store. In Redis mode the node
/// also remembers there the keys it claimed (while it has room), so a repeat reaching the same
/// node is answered without a round trip, and a switch back to in-process mode still knows
/// this node's claims. A switch from in process to Redis first copies the live keys into Redis
/// (`SET NX` with their remaining TTL), so no node takes them afresh. Leaving Redis forgets
/// the keys *other* nodes claimed there: only do it when this node is alone.
#[derive(Clone)]
pub struct OnceKeys {
    shared: Arc<OnceShared>,
}

struct OnceShared {
    local: LocalKeys,
    redis: ArcSwapOption<RedisOnce>,
    refused: [IntCounter; 2],
}

/// The Redis side: `{key_prefix}:` and a connection of its own (a big uniques pipeline on a
/// shared multiplexed connection would hold these small commands behind it).
pub(crate) struct RedisOnce {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisOnce {
    pub(crate) fn new(connection: ConnectionManager, key_prefix: &str) -> Self {
        RedisOnce {
            connection,
            prefix: format!("{key_prefix}:"),
        }
    }
}

/// Deletes the key only if it still holds this claim's token, so a release never frees a claim
/// that expired and was taken again by someone else.
const RELEASE_IF_OURS: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"#;

impl OnceKeys {
    pub(crate) fn new(
        max_keys: u64,
        redis: Option<RedisOnce>,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let refused_family = IntCounterVec::new(
            Opts::new(
                "bourse_kernel_once_refusals_total",
                "Exactly-once checks that could not answer, by reason (full: in-process map at \
                 once.max_keys; redis: Redis failed).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(refused_family.clone()))?;
        let refused = ["full", "redis"].map(|reason| refused_family.with_label_values(&[reason]));
        Ok(OnceKeys {
            shared: Arc::new(OnceShared {
                local: LocalKeys::new(max_keys),
                redis: ArcSwapOption::new(redis.map(Arc::new)),
                refused,
            }),
        })
    }

    /// A namespace of keys: `name` is 1 to 32 bytes of `a-z`, `0-9`, `_` and `-` (for example
    /// `billed`, `order`, `webhook`).
    pub fn namespace(&self, name: &str) -> Result<OnceNamespace, OnceError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAMESPACE_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            && !RESERVED_NAMESPACES.contains(&name);
        if !valid {
            return Err(OnceError::InvalidNamespace(name.to_owned()));
        }
        Ok(OnceNamespace {
            keys: self.clone(),
            name: name.into(),
        })
    }

    /// Where the keys are decided now.
    pub fn backend(&self) -> Backend {
        if self.shared.redis.load().is_some() {
            Backend::Redis
        } else {
            Backend::InProcess
        }
    }

    /// Keys held in this process (in Redis mode: this node's remembered claims), after
    /// letting go of the expired and released ones.
    pub fn held_in_process(&self) -> u64 {
        self.shared.local.keys.run_pending_tasks();
        self.shared.local.held.load(Ordering::Acquire)
    }

    pub(crate) fn set_max_keys(&self, max_keys: u64) {
        self.shared
            .local
            .max_keys
            .store(max_keys, Ordering::Release);
    }

    fn refuse(&self, refusal: Refusal, error: OnceError) -> OnceError {
        self.shared.refused[refusal as usize].inc();
        error
    }

    /// Copies every live in-process key into `redis` with `SET NX` and its remaining TTL,
    /// leaving keys some node already holds there alone. Runs before a switch to that Redis.
    pub(crate) async fn copy_into(&self, redis: &RedisOnce) -> redis::RedisResult<u64> {
        /// Keys per pipeline round trip.
        const CHUNK: usize = 1_000;
        let now = Instant::now();
        let mut connection = redis.connection.clone();
        let mut pipe = redis::pipe();
        let (mut in_pipe, mut copied) = (0, 0);
        for (key, held) in self.shared.local.keys.iter() {
            let remaining = held.expires_at.saturating_duration_since(now);
            if remaining.is_zero() {
                continue;
            }
            pipe.cmd("SET")
                .arg(format!("{}{key}", redis.prefix))
                .arg(held.token)
                .arg("NX")
                .arg("PX")
                .arg(millis_rounded_up(remaining))
                .ignore();
            in_pipe += 1;
            copied += 1;
            if in_pipe == CHUNK {
                pipe.exec_async(&mut connection).await?;
                pipe.clear();
                in_pipe = 0;
            }
        }
        if in_pipe > 0 {
            pipe.exec_async(&mut connection).await?;
        }
        Ok(copied)
    }

    /// Makes `redis` (or, with `None`, this process) decide from now on.
    pub(crate) fn switch(&self, redis: Option<RedisOnce>) {
        self.shared.redis.store(redis.map(Arc::new));
    }
}

/// Keys of one namespace. Cheap to clone.
#[derive(Clone)]
pub struct OnceNamespace {
    keys: OnceKeys,
    name: Arc<str>,
}

impl OnceNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `true` for exactly one of any number of concurrent or repeated calls with `key` until
    /// `ttl` after that call; `false` for the others. Once the TTL has passed the key is new
    /// again. An error means the answer is unknown (Redis down or slow, map full, bad input):
    /// do not act on an error.
    pub async fn first(&self, key: &str, ttl: Duration) -> Result<bool, OnceError> {
        Ok(self.take(key, ttl, 0).await?.is_some())
    }

    /// Like [`OnceNamespace::first`], but the winner gets a [`Claim`] it can give back with
    /// [`Claim::release`] if its work failed, so a retry can take the key again. Dropping the
    /// claim keeps it until its TTL.
    pub async fn claim(&self, key: &str, ttl: Duration) -> Result<Option<Claim>, OnceError> {
        // Odd, so never the `0` that `first` stores and no claim can release.
        let token = rand::random::<u64>() | 1;
        self.take(key, ttl, token).await
    }

    async fn take(&self, key: &str, ttl: Duration, token: u64) -> Result<Option<Claim>, OnceError> {
        if key.is_empty() || key.len() > MAX_ONCE_KEY_LEN {
            return Err(OnceError::InvalidKey(key.len()));
        }
        if ttl.is_zero() || ttl > MAX_ONCE_TTL {
            return Err(OnceError::InvalidTtl(ttl));
        }
        let full_key = format!("{}:{key}", self.name);
        let keys = &self.keys;
        let local = &keys.shared.local;
        // This node's own claims (and, in process, every claim) answer without a round trip.
        if local.keys.contains_key(&full_key) {
            return Ok(None);
        }
        let taken = match keys.shared.redis.load_full() {
            None => local
                .take(&full_key, ttl, token)
                .map_err(|err| keys.refuse(Refusal::Full, err))?,
            Some(redis) => {
                let taken = set_nx(&redis, &full_key, ttl, token)
                    .await
                    .map_err(|err| keys.refuse(Refusal::Redis, err))?;
                if taken {
                    // Best effort: with the map full the claim lives in Redis only.
                    let _ = local.take(&full_key, ttl, token);
                }
                taken
            }
        };
        Ok(taken.then(|| Claim {
            keys: keys.clone(),
            full_key,
            token,
        }))
    }
}

async fn set_nx(
    redis: &RedisOnce,
    full_key: &str,
    ttl: Duration,
    token: u64,
) -> Result<bool, OnceError> {
    let reply: redis::Value = redis::cmd("SET")
        .arg(format!("{}{full_key}", redis.prefix))
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(millis_rounded_up(ttl))
        .query_async(&mut redis.connection.clone())
        .await?;
    match reply {
        redis::Value::Okay => Ok(true),
        redis::Value::SimpleString(text) if text == "OK" => Ok(true),
        redis::Value::Nil => Ok(false),
        other => Err(OnceError::UnexpectedReply(format!("{other:?}"))),
    }
}

/// Whole milliseconds, rounded up so a key never expires before its TTL.
fn millis_rounded_up(ttl: Duration) -> u64 {
    let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    millis.saturating_add(u64::from(!ttl.subsec_nanos().is_multiple_of(1_000_000)))
}

/// A key won by [`OnceNamespace::claim`]. Dropping it keeps the key until its TTL;
/// [`Claim::release`] gives it back.
#[must_use = "dropping a claim keeps the key; call release() to give it back"]
pub struct Claim {
    keys: OnceKeys,
    full_key: String,
    token: u64,
}

impl Claim {
    /// The claimed key, with its namespace (`billed:…`).
    pub fn key(&self) -> &str {
        &self.full_key
    }

    /// Gives the key back, so the next `first` or `claim` wins it, unless it has expired and
    /// been taken by someone else meanwhile (then that claim is left alone). An error means
    /// the key may still be held until its TTL.
    pub async fn release(self) -> Result<(), OnceError> {
        if let Some(redis) = self.keys.shared.redis.load_full() {
            let _: i64 = redis::Script::new(RELEASE_IF_OURS)
                .key(format!("{}{}", redis.prefix, self.full_key))
                .arg(self.token)
                .invoke_async(&mut redis.connection.clone())
                .await
                .map_err(|err| self.keys.refuse(Refusal::Redis, err.into()))?;
        }
        self.keys.shared.local.release(&self.full_key, self.token);
        Ok(())
    }
}

/// A held key: its TTL (read by [`TtlPerKey`]), when it ends and who holds it.
#[derive(Clone, Copy)]
struct Held {
    ttl: Duration,
    expires_at: Instant,
    token: u64,
}

/// Expires each in-process key after the TTL it was taken with.
struct TtlPerKey;

impl Expiry<String, Held> for TtlPerKey {
    fn expire_after_create(
        &self,
        _key: &String,
        held: &Held,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(held.ttl)
    }
}

/// The in-process map and an exact count of the keys it holds (moka's own count trails
/// inserts, which would let a burst overshoot the limit).
struct LocalKeys {
    keys: Cache<String, Held>,
    /// Inserted minus removed; a slot is reserved before inserting and released if the key
    /// turned out to be present.
    held: Arc<AtomicU64>,
    max_keys: AtomicU64,
}

impl LocalKeys {
    fn new(max_keys: u64) -> Self {
        let held = Arc::new(AtomicU64::new(0));
        let released = Arc::clone(&held);
        let keys = Cache::builder()
            .expire_after(TtlPerKey)
            .eviction_listener(move |_key, _held, _cause| {
                released.fetch_sub(1, Ordering::AcqRel);
            })
            .build();
        LocalKeys {
            keys,
            held,
            max_keys: AtomicU64::new(max_keys),
        }
    }

    /// Takes `key` unless it is held; an expired key counts as absent.
    fn take(&self, key: &str, ttl: Duration, token: u64) -> Result<bool, OnceError> {
        if !self.reserve_slot() {
            // Expired keys still hold slots until moka's housekeeping removes them.
            self.keys.run_pending_tasks();
            if !self.reserve_slot() {
                return Err(OnceError::Full {
                    limit: self.max_keys.load(Ordering::Acquire),
                });
            }
        }
        // Atomic insert-if-absent: concurrent callers for one key are coalesced and only the one
        // whose closure ran gets a fresh entry.
        let fresh = self
            .keys
            .entry_by_ref(key)
            .or_insert_with(|| Held {
                ttl,
                expires_at: Instant::now() + ttl,
                token,
            })
            .is_fresh();
        if !fresh {
            self.held.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(fresh)
    }

    /// Removes `key` if `token` still holds it.
    fn release(&self, key: &str, token: u64) {
        self.keys
            .entry_by_ref(key)
            .and_compute_with(|entry| match entry {
                Some(entry) if entry.value().token == token => Op::Remove,
                _ => Op::Nop,
            });
    }

    fn reserve_slot(&self) -> bool {
        let max_keys = self.max_keys.load(Ordering::Acquire);
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max_keys).then_some(held + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(millis_rounded_up(Duration::from_millis(1_500)), 1_500);
        assert_eq!(millis_rounded_up(Duration::from_micros(1_500_001)), 1_501);
        assert_eq!(millis_rounded_up(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn namespaces_are_checked() {
        let keys = OnceKeys::new(10, None, &Registry::new()).unwrap();
        for good in ["billed", "order-v2", "a_1"] {
            assert_eq!(keys.namespace(good).unwrap().name(), good);
        }
        for bad in [
            "",
            "Billed",
            "a:b",
            "a b",
            "uniq",
            "uniq-index",
            &"x".repeat(33),
        ] {
            assert!(
                matches!(keys.namespace(bad), Err(OnceError::InvalidNamespace(_))),
                "{bad:?}"
            );
        }
    }
}
