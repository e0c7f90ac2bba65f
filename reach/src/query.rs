//! The reporting handle: reach counts per window, a JSON report shape and metric registration.

use prometheus::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::aggregator::Command;
use crate::error::ReachError;
use crate::event::{Backend, Dimension, ReachCount, ReachReport, WindowReport};
use crate::metrics::ReachMetrics;
use crate::redis_store::RedisReachStore;
use crate::window::{Window, unix_now};

#[derive(Clone)]
enum QuerySource {
    /// Asks the aggregator task, which owns the sketches.
    InProcess(mpsc::Sender<Command>),
    /// Reads Redis directly, so queries never wait behind ingestion.
    Redis(RedisReachStore),
}

/// Answers reach queries. Cheap to clone.
///
/// In-process, a query is queued behind the events recorded before it, so it sees them all.
/// In Redis mode it sees what has been written to Redis by every node: call
/// [`ReachRecorder::flush`](crate::ReachRecorder::flush) first to include this node's pending
/// events.
#[derive(Clone)]
pub struct ReachQuery {
    source: QuerySource,
    metrics: ReachMetrics,
    precision: u8,
}

impl ReachQuery {
    pub(crate) fn in_process(
        commands: mpsc::Sender<Command>,
        metrics: ReachMetrics,
        precision: u8,
    ) -> Self {
        ReachQuery {
            source: QuerySource::InProcess(commands),
            metrics,
            precision,
        }
    }

    pub(crate) fn redis(store: RedisReachStore, metrics: ReachMetrics) -> Self {
        ReachQuery {
            source: QuerySource::Redis(store),
            metrics,
            // Redis HyperLogLogs always have 2^14 registers.
            precision: 14,
        }
    }

    /// Which store answers.
    pub fn backend(&self) -> Backend {
        match self.source {
            QuerySource::InProcess(_) => Backend::InProcess,
            QuerySource::Redis(_) => Backend::Redis,
        }
    }

    /// Unique users of every id seen in the window, sorted by dimension then id. A window
    /// outside retention yields an empty list.
    pub async fn counts(&self, window: Window) -> Result<Vec<ReachCount>, ReachError> {
        match &self.source {
            QuerySource::InProcess(commands) => {
                ask(commands, |reply| Command::Counts { window, reply }).await
            }
            QuerySource::Redis(store) => Ok(store.clone().counts(window).await?),
        }
    }

    /// Unique users of one id in one window (0 if never seen, evicted or expired).
    pub async fn uniques(
        &self,
        dimension: Dimension,
        id: &str,
        window: Window,
    ) -> Result<u64, ReachError> {
        match &self.source {
            QuerySource::InProcess(commands) => {
                let id = id.to_owned();
                ask(commands, |reply| Command::Uniques {
                    dimension,
                    id,
                    window,
                    reply,
                })
                .await
            }
            QuerySource::Redis(store) => Ok(store.clone().uniques(dimension, id, window).await?),
        }
    }

    /// The `/reach` JSON body for the given windows (e.g. current hour and current day).
    pub async fn report(&self, windows: &[Window]) -> Result<ReachReport, ReachError> {
        let mut reports = Vec::with_capacity(windows.len());
        for &window in windows {
            reports.push(WindowReport {
                window: window.normalized(),
                counts: self.counts(window).await?,
            });
        }
        Ok(ReachReport {
            backend: self.backend(),
            precision: self.precision,
            generated_at: unix_now(),
            windows: reports,
        })
    }

    /// Registers `bourse_reach_unique_users{dimension,id,window}`,
    /// `bourse_reach_events_dropped_total`, `bourse_reach_events_rejected_total{reason}` and
    /// `bourse_reach_redis_errors_total`. The gauges cover the current hour and day only and are
    /// refreshed every `metrics_interval_ms`; in Redis mode they show all nodes' users, so every
    /// node reports the same value (aggregate with `max`, not `sum`).
    pub fn register_metrics(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        self.metrics.register(registry)
    }
}

/// Sends a query to the aggregator and waits for its answer.
async fn ask<T>(
    commands: &mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<Result<T, ReachError>>) -> Command,
) -> Result<T, ReachError> {
    let (reply, response) = oneshot::channel();
    commands
        .send(command(reply))
        .await
        .map_err(|_| ReachError::AggregatorStopped)?;
    response.await.map_err(|_| ReachError::AggregatorStopped)?
}
