//! Shared services for every plugin: unique counts, exactly-once keys, rate limits, an event
//! bus and a clock, each in this process or shared by every node through Redis.
//!
//! [`Services::start`] builds them from the `[services]` table ([`ServicesConfig`]);
//! [`Services::reconfigure`] applies a changed table live, swapping backends behind every
//! handle already given out; [`Services::shutdown`] flushes and stops the background tasks.
//! Nothing here knows what the plugins count or guard: dimensions, namespaces, limiter names
//! and topics are theirs to choose.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bourse_services::{Services, ServicesConfig, Window};
//!
//! let registry = prometheus::Registry::new();
//! let services = Services::start(&ServicesConfig::default(), &registry).await?;
//! let placement = services.uniques.dimension("placement")?;
//! let now = services.clock.unix_secs();
//! let slot: Arc<str> = "homepage-top".into();
//! services.uniques.record(0x1234_5678_9abc_def0, now, &[(placement, slot)]);
//! services.uniques.flush().await?;
//! let reached = services.uniques.count(placement, "homepage-top", Window::Hour(now)).await?;
//!
//! let billed = services.once.namespace("billed")?;
//! if billed.first("imp-42", Duration::from_secs(86_400)).await? {
//!     // bill it, exactly once
//! }
//! services.shutdown(Duration::from_secs(5)).await;
//! # let _ = reached;
//! # Ok(())
//! # }
//! ```

mod clock;
mod config;
mod error;
mod events;
mod limits;
mod once;
mod redis_conn;
mod uniques;

#[cfg(test)]
#[path = "../tests/it/support.rs"]
mod test_support;

pub use clock::{Clock, ManualClock};
pub use config::{
    EventsConfig, MAX_PRECISION, MAX_SUBSCRIBER_CAPACITY, MIN_PRECISION, OnceConfig,
    ServicesConfig, UniquesConfig,
};
pub use error::ServiceError;
pub use events::{EventBus, EventError, MAX_TOPIC_NAME_LEN, MAX_TOPICS, Subscription, Topic};
pub use limits::{
    DirectLimiter, KeyedLimiter, LimitError, MAX_LIMITER_NAME_LEN, MAX_LIMITERS, Rate, RateLimits,
    Refused,
};
pub use once::{
    Claim, MAX_NAMESPACE_LEN, MAX_ONCE_KEY_LEN, MAX_ONCE_TTL, OnceError, OnceKeys, OnceNamespace,
};
pub use uniques::{
    Backend, Dimension, MAX_DIMENSION_NAME_LEN, MAX_DIMENSIONS, MAX_ID_LEN, MAX_KEYS_PER_ITEM,
    UniqueCount, Uniques, UniquesError, Window,
};

use std::sync::Arc;
use std::time::Duration;

use once::RedisOnce;
use redis::aio::ConnectionManager;
use redis_conn::{connect, redact_url};
use uniques::{Context, Plan, UniquesMetrics};

/// Every shared service. Cheap to clone: each field is a handle, and every handle follows
/// [`Services::reconfigure`].
#[derive(Clone)]
pub struct Services {
    /// Unique counts (HyperLogLog), in process or in Redis.
    pub uniques: Uniques,
    /// Exactly-once keys, in process or Redis `SET NX`.
    pub once: OnceKeys,
    /// Named rate limiters, in process.
    pub limits: RateLimits,
    /// Typed topics for domain events.
    pub events: EventBus,
    /// The clock the services read (the wall clock unless started with a manual one).
    pub clock: Clock,
    /// The config in force; `None` once shut down. Held across a reconfiguration so two never
    /// interleave.
    applied: Arc<tokio::sync::Mutex<Option<ServicesConfig>>>,
}

impl Services {
    /// Builds every service from `config` and registers their metric families in `registry`.
    ///
    /// Fails on a config with problems, outside a Tokio runtime, when a family is already
    /// registered in `registry`, or when the configured Redis does not answer within
    /// `redis_timeout_ms` (later outages are retried, not fatal).
    pub async fn start(
        config: &ServicesConfig,
        registry: &prometheus::Registry,
    ) -> Result<Services, ServiceError> {
        Services::start_with_clock(config, registry, Clock::wall()).await
    }

    /// [`Services::start`] with the given clock (e.g. a manual one in tests).
    pub async fn start_with_clock(
        config: &ServicesConfig,
        registry: &prometheus::Registry,
        clock: Clock,
    ) -> Result<Services, ServiceError> {
        check(config)?;
        tokio::runtime::Handle::try_current().map_err(|_| ServiceError::NoRuntime)?;
        let (uniques_redis, once_redis) = match &config.redis_url {
            None => (None, None),
            Some(url) => {
                // Two connections: a large PFADD pipeline must not hold up exactly-once checks.
                let uniques = connect_to(url, config).await?;
                let once = connect_to(url, config).await?;
                (Some(uniques), Some(once))
            }
        };
        let metrics = UniquesMetrics::new()?;
        metrics.register(registry)?;
        let once = OnceKeys::new(
            config.once.max_keys,
            once_redis.map(|connection| RedisOnce::new(connection, &config.key_prefix)),
            registry,
        )?;
        let events = EventBus::new(config.events.default_capacity, registry)?;
        let limits = RateLimits::new(registry)?;
        let plan = Plan::new(
            &config.uniques,
            uniques_redis.map(|connection| (connection, config.key_prefix.as_str())),
        );
        let uniques = Uniques::start(
            plan,
            Context {
                dimensions: Arc::default(),
                metrics,
                clock: clock.clone(),
            },
        );
        Ok(Services {
            uniques,
            once,
            limits,
            events,
            clock,
            applied: Arc::new(tokio::sync::Mutex::new(Some(config.clone()))),
        })
    }

    /// Applies a changed `[services]` table live. Only what changed is rebuilt: a new Redis
    /// URL, prefix or timeout connects first (failing here changes nothing), copies this node's
    /// exactly-once keys into the new Redis, then swaps the new backends in behind every
    /// handle and flushes and stops the old ones; tuning changes restart only the unique-count
    /// aggregator (keeping its sketches where it can, see [`Uniques`]). An unchanged table is a
    /// no-op.
    pub async fn reconfigure(&self, config: &ServicesConfig) -> Result<(), ServiceError> {
        check(config)?;
        let mut applied = self.applied.lock().await;
        let Some(current) = applied.as_ref() else {
            return Err(ServiceError::ShutDown);
        };
        if current == config {
            return Ok(());
        }
        let backend_changed = current.redis_url != config.redis_url
            || current.key_prefix != config.key_prefix
            || current.redis_timeout_ms != config.redis_timeout_ms;
        let uniques_changed = backend_changed || current.uniques != config.uniques;

        // Everything that can fail happens before anything is swapped.
        let mut uniques_plan = None;
        let mut once_redis = None;
        if backend_changed && let Some(url) = &config.redis_url {
            let once = RedisOnce::new(connect_to(url, config).await?, &config.key_prefix);
            let copied = self.once.copy_into(&once).await.map_err(|source| {
                ServiceError::MigrateOnceKeys {
                    url: redact_url(url),
                    source,
                }
            })?;
            tracing::info!(copied, "once keys: copied this node's keys into Redis");
            once_redis = Some(once);
        }
        if uniques_changed {
            let redis = match &config.redis_url {
                Some(url) => Some(connect_to(url, config).await?),
                None => None,
            };
            uniques_plan = Some(Plan::new(
                &config.uniques,
                redis.map(|connection| (connection, config.key_prefix.as_str())),
            ));
        }

        if current.uniques.channel_capacity != config.uniques.channel_capacity {
            tracing::warn!(
                in_force = current.uniques.channel_capacity,
                configured = config.uniques.channel_capacity,
                "services.uniques.channel_capacity takes effect at the next start"
            );
        }
        if backend_changed {
            self.once.switch(once_redis);
        }
        self.once.set_max_keys(config.once.max_keys);
        self.events
            .set_default_capacity(config.events.default_capacity);
        if let Some(plan) = uniques_plan {
            self.uniques.switch(plan).await;
        }
        *applied = Some(config.clone());
        Ok(())
    }

    /// Writes pending unique counts (to Redis) and stops the background tasks, waiting at most
    /// `deadline`; ends every event subscription (after what is queued). Afterwards recorded
    /// items are dropped and counted, and [`Services::reconfigure`] fails. Exactly-once keys
    /// and rate limits keep answering: they have no background work to stop.
    pub async fn shutdown(&self, deadline: Duration) {
        let mut applied = self.applied.lock().await;
        if applied.take().is_none() {
            return;
        }
        self.limits.shutdown();
        self.events.close();
        self.uniques.shutdown(deadline).await;
    }
}

fn check(config: &ServicesConfig) -> Result<(), ServiceError> {
    let problems = config.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::Config(problems))
    }
}

async fn connect_to(url: &str, config: &ServicesConfig) -> Result<ConnectionManager, ServiceError> {
    connect(url, config.redis_timeout())
        .await
        .map_err(|source| ServiceError::Connect {
            url: redact_url(url),
            source,
        })
}
