//! Unique reach per placement, publisher and bidder (HyperLogLog), and exact de-duplication of billing events.
//!
//! Reach: the request path calls [`ReachRecorder::record`], which only queues the event; a
//! background aggregator counts it, either in in-process HyperLogLog++ sketches (default) or by
//! batching `PFADD`s into Redis (when `redis_url` is set, so every node shares the counts). Read
//! counts with [`ReachQuery`], serve [`ReachReport`] as JSON, and export gauges with
//! [`ReachQuery::register_metrics`].
//!
//! Billing: [`BillingDedup::first_seen`] answers `true` exactly once per key and TTL, in process
//! or across nodes through Redis `SET NX`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bourse_reach::ReachError> {
//! use std::sync::Arc;
//! use bourse_reach::{Dimension, ReachConfig, ReachEvent, Window};
//!
//! let reach = bourse_reach::start(ReachConfig::default()).await?;
//! let placement: Arc<str> = "homepage-top".into();
//! reach.recorder.record(ReachEvent {
//!     user_hash: 0x1234_5678_9abc_def0,
//!     placement: placement.clone(),
//!     publisher: "news-site".into(),
//!     bidder: "dsp-a".into(),
//!     timestamp: 1_767_225_600,
//! });
//! reach.recorder.flush().await?;
//! let uniques = reach
//!     .query
//!     .uniques(Dimension::Placement, &placement, Window::Hour(1_767_225_600))
//!     .await?;
//! # let _ = uniques;
//! reach.aggregator.shutdown().await
//! # }
//! ```

mod aggregator;
mod config;
mod dedup;
mod error;
mod event;
mod in_process;
mod metrics;
mod query;
mod recorder;
mod redis_store;
mod sketch;
mod window;

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

pub use config::{ConfigError, MAX_PRECISION, MIN_PRECISION, ReachConfig};
pub use dedup::{BillingDedup, DedupError, MAX_DEDUP_KEY_LEN, MAX_DEDUP_TTL};
pub use error::ReachError;
pub use event::{
    Backend, Dimension, MAX_ID_LEN, ReachCount, ReachEvent, ReachReport, WindowReport,
};
pub use query::ReachQuery;
pub use recorder::ReachRecorder;
pub use window::Window;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use aggregator::Command;
use in_process::InProcessStore;
use metrics::ReachMetrics;
use redis_store::{RedisReachStore, connect, redact_url};

/// The three handles returned by [`start`].
pub struct Reach {
    /// For the request path: clone freely.
    pub recorder: ReachRecorder,
    /// For reports and metrics: clone freely.
    pub query: ReachQuery,
    /// Stops the aggregator.
    pub aggregator: ReachAggregator,
}

/// Owns the aggregator task.
///
/// The task also ends by itself once every recorder, query and this handle are dropped
/// (after a last flush in Redis mode).
pub struct ReachAggregator {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl ReachAggregator {
    /// Counts (or, in Redis mode, writes) every event queued before this call, then stops the
    /// task. Events recorded afterwards are dropped and counted. In Redis mode an error means the
    /// final write failed and the pending events were dropped.
    pub async fn shutdown(self) -> Result<(), ReachError> {
        let (reply, response) = oneshot::channel();
        let flushed = match self.commands.send(Command::Shutdown(reply)).await {
            Ok(()) => response.await.map_err(|_| ReachError::AggregatorStopped)?,
            Err(_) => Err(ReachError::AggregatorStopped),
        };
        drop(self.commands);
        self.task.await.map_err(|_| ReachError::AggregatorStopped)?;
        flushed
    }

    /// `true` once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Validates `config`, connects to Redis if configured, and spawns the aggregator on the
/// current Tokio runtime.
///
/// Fails on a refused config, outside a Tokio runtime, or when the configured Redis does not
/// answer within `redis_timeout_ms` (later outages are retried, not fatal).
pub async fn start(config: ReachConfig) -> Result<Reach, ReachError> {
    config.validate()?;
    tokio::runtime::Handle::try_current().map_err(|_| ReachError::NoRuntime)?;
    let metrics = ReachMetrics::new()?;
    let (commands, receiver) = mpsc::channel(config.channel_capacity);
    let (query, task) = match &config.redis_url {
        None => {
            let store = InProcessStore::new(&config)?;
            let query =
                ReachQuery::in_process(commands.clone(), metrics.clone(), store.precision());
            let task = tokio::spawn(aggregator::run_in_process(
                receiver,
                store,
                metrics.clone(),
                config.clone(),
            ));
            (query, task)
        }
        Some(url) => {
            let connection = connect(url, config.redis_timeout())
                .await
                .map_err(|source| ReachError::Connect {
                    url: redact_url(url),
                    source,
                })?;
            let store = RedisReachStore::new(connection, &config);
            let query = ReachQuery::redis(store.clone(), metrics.clone());
            let task = tokio::spawn(aggregator::run_redis(
                receiver,
                store,
                metrics.clone(),
                config.clone(),
            ));
            (query, task)
        }
    };
    let recorder = ReachRecorder {
        commands: commands.clone(),
        dropped: metrics.events_dropped.clone(),
    };
    Ok(Reach {
        recorder,
        query,
        aggregator: ReachAggregator { commands, task },
    })
}
