//! Errors of the reach aggregator and its query handle.

use crate::config::ConfigError;

/// Why starting, flushing or querying reach failed.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `start` was polled outside a Tokio runtime, which the aggregator task needs.
    #[error("reach: start() must run inside a Tokio runtime")]
    NoRuntime,
    /// The configured Redis did not answer at start-up.
    #[error("reach: cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the client reported.
        #[source]
        source: redis::RedisError,
    },
    /// A Redis read or write failed (pending events are kept and retried).
    #[error("reach: Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// The aggregator task has shut down (or panicked), so nothing can be flushed or queried.
    #[error("reach: the aggregator task has stopped")]
    AggregatorStopped,
    /// A metric could not be created.
    #[error("reach: cannot create metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}
