//! Exact de-duplication of billing events: for each key exactly one caller is told "first",
//! across threads (in-process) or across every node (Redis `SET NX`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use redis::aio::ConnectionManager;

use crate::config::{ConfigError, ReachConfig};
use crate::event::Backend;
use crate::redis_store::{connect, redact_url};

/// Longest accepted billing key, in bytes.
pub const MAX_DEDUP_KEY_LEN: usize = 512;
/// Longest accepted de-duplication window.
pub const MAX_DEDUP_TTL: Duration = Duration::from_secs(366 * 86_400);

/// Why `first_seen` could not give an answer. Every error means "unknown": the caller must not
/// bill, since billing on an error could bill twice.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    /// The key is empty or longer than [`MAX_DEDUP_KEY_LEN`].
    #[error("billing dedup: key must be 1 to {MAX_DEDUP_KEY_LEN} bytes, got {0} bytes")]
    InvalidKey(usize),
    /// The TTL is zero or longer than [`MAX_DEDUP_TTL`].
    #[error("billing dedup: ttl must be above zero and at most 366 days, got {0:?}")]
    InvalidTtl(Duration),
    /// The in-process map holds `dedup_max_keys` live keys. Keys are never evicted before their
    /// TTL (that could bill twice), so new keys are refused instead.
    #[error(
        "billing dedup: {limit} keys are already held in process; refusing new keys rather than \
         risk billing twice (raise dedup_max_keys, shorten the TTL or configure Redis)"
    )]
    Full {
        /// The configured `dedup_max_keys`.
        limit: u64,
    },
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configured Redis did not answer at start-up.
    #[error("billing dedup: cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
    /// Redis failed or timed out: whether the key was seen is unknown.
    #[error("billing dedup: Redis failed, so the event must not be billed now: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered `SET … NX` with something other than OK or nil.
    #[error("billing dedup: unexpected Redis reply to SET NX: {0}")]
    UnexpectedReply(String),
}

/// Expires each in-process key after the TTL it was first seen with.
struct TtlPerKey;

impl Expiry<String, Duration> for TtlPerKey {
    fn expire_after_create(
        &self,
        _key: &String,
        ttl: &Duration,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

/// The in-process map and an exact count of the keys it holds (moka's own count trails
/// inserts, which would let a burst overshoot the limit).
struct SeenKeys {
    /// Key → the TTL it was inserted with (read by [`TtlPerKey`]).
    keys: Cache<String, Duration>,
    /// Inserted minus removed; a slot is reserved before inserting and released if the key
    /// turned out to be present.
    held: Arc<AtomicU64>,
    max_keys: u64,
}

#[derive(Clone)]
enum DedupStore {
    InProcess(Arc<SeenKeys>),
    Redis {
        connection: ConnectionManager,
        /// `{key_prefix}:billed:`.
        prefix: String,
    },
}

/// Tells whether a billing event (e.g. an impression or win notice id) is seen for the first
/// time within its TTL. Cheap to clone; clones share the same keys.
#[derive(Clone)]
pub struct BillingDedup {
    store: DedupStore,
}

impl BillingDedup {
    /// Keys held in this process only: exact for one node. Holds at most `max_keys` keys;
    /// beyond that new keys get [`DedupError::Full`] until old ones expire (an expired key
    /// gives its slot back within about a second, the granularity of moka's expiry wheel).
    pub fn in_process(max_keys: u64) -> Self {
        let held = Arc::new(AtomicU64::new(0));
        let released = Arc::clone(&held);
        let keys = Cache::builder()
            .expire_after(TtlPerKey)
            .eviction_listener(move |_key, _ttl, _cause| {
                released.fetch_sub(1, Ordering::AcqRel);
            })
            .build();
        BillingDedup {
            store: DedupStore::InProcess(Arc::new(SeenKeys {
                keys,
                held,
                max_keys,
            })),
        }
    }

    /// Keys held in Redis under `{key_prefix}:billed:{key}`: exact across every node using the
    /// same Redis. Fails if Redis does not answer within `timeout`.
    pub async fn redis(url: &str, key_prefix: &str, timeout: Duration) -> Result<Self, DedupError> {
        let connection = connect(url, timeout)
            .await
            .map_err(|source| DedupError::Connect {
                url: redact_url(url),
                source,
            })?;
        Ok(BillingDedup {
            store: DedupStore::Redis {
                connection,
                prefix: format!("{key_prefix}:billed:"),
            },
        })
    }

    /// Redis when `redis_url` is set, otherwise in-process with `dedup_max_keys`.
    pub async fn from_config(config: &ReachConfig) -> Result<Self, DedupError> {
        config.validate()?;
        match &config.redis_url {
            Some(url) => Self::redis(url, &config.key_prefix, config.redis_timeout()).await,
            None => Ok(Self::in_process(config.dedup_max_keys)),
        }
    }

    /// Where the keys live.
    pub fn backend(&self) -> Backend {
        match self.store {
            DedupStore::InProcess(_) => Backend::InProcess,
            DedupStore::Redis { .. } => Backend::Redis,
        }
    }

    /// `true` for exactly one of any number of concurrent or repeated calls with `key` until
    /// `ttl` after that call; `false` for the others. Once the TTL has passed the key counts as
    /// new again. Redis rounds the TTL up to whole seconds (`SET key 1 NX EX ttl`).
    ///
    /// An error means the answer is unknown (Redis down or slow, map full, bad input): do not
    /// bill on an error.
    pub async fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, DedupError> {
        if key.is_empty() || key.len() > MAX_DEDUP_KEY_LEN {
            return Err(DedupError::InvalidKey(key.len()));
        }
        if ttl.is_zero() || ttl > MAX_DEDUP_TTL {
            return Err(DedupError::InvalidTtl(ttl));
        }
        match &self.store {
            DedupStore::InProcess(seen) => seen.first_seen(key, ttl),
            DedupStore::Redis { connection, prefix } => {
                let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                let reply: redis::Value = redis::cmd("SET")
                    .arg(format!("{prefix}{key}"))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl_secs)
                    .query_async(&mut connection.clone())
                    .await?;
                match reply {
                    redis::Value::Okay => Ok(true),
                    redis::Value::SimpleString(text) if text == "OK" => Ok(true),
                    redis::Value::Nil => Ok(false),
                    other => Err(DedupError::UnexpectedReply(format!("{other:?}"))),
                }
            }
        }
    }
}

impl SeenKeys {
    fn first_seen(&self, key: &str, ttl: Duration) -> Result<bool, DedupError> {
        // Repeats are the common case and need no slot.
        if self.keys.contains_key(key) {
            return Ok(false);
        }
        if !self.reserve_slot() {
            // Expired keys still hold slots until moka's housekeeping removes them.
            self.keys.run_pending_tasks();
            if !self.reserve_slot() {
                return Err(DedupError::Full {
                    limit: self.max_keys,
                });
            }
        }
        // Atomic insert-if-absent: concurrent callers for one key are coalesced and only the one
        // whose closure ran gets a fresh entry. An expired entry counts as absent.
        let fresh = self
            .keys
            .entry_by_ref(key)
            .or_insert_with(|| ttl)
            .is_fresh();
        if !fresh {
            self.held.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(fresh)
    }

    fn reserve_slot(&self) -> bool {
        let max_keys = self.max_keys;
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < max_keys).then_some(held + 1)
            })
            .is_ok()
    }
}
