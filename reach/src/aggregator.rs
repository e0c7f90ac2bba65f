//! The background task that owns the counts: it drains the request path's queue into
//! in-process sketches or into batched Redis writes, evicts old buckets and refreshes gauges.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior, interval};

use crate::config::ReachConfig;
use crate::error::ReachError;
use crate::event::{Dimension, ReachCount, ReachEvent, Rejection};
use crate::in_process::InProcessStore;
use crate::metrics::{GaugePublisher, ReachMetrics};
use crate::redis_store::{BucketKey, PendingUsers, RedisReachStore};
use crate::window::{Retention, SECS_PER_DAY, SECS_PER_HOUR, Window, unix_now};

/// Commands taken from the queue per wake-up: amortises the wake-up without starving ticks.
const RECEIVE_BATCH: usize = 512;

/// Everything sent to the aggregator. Events and control messages share one FIFO queue, so a
/// flush or query sees every event recorded before it.
pub(crate) enum Command {
    Record(ReachEvent),
    Flush(oneshot::Sender<Result<(), ReachError>>),
    Counts {
        window: Window,
        reply: oneshot::Sender<Result<Vec<ReachCount>, ReachError>>,
    },
    Uniques {
        dimension: Dimension,
        id: String,
        window: Window,
        reply: oneshot::Sender<Result<u64, ReachError>>,
    },
    Shutdown(oneshot::Sender<Result<(), ReachError>>),
}

fn ticker(config_interval: std::time::Duration) -> Interval {
    let mut ticker = interval(config_interval);
    // After a stall, one catch-up tick is enough: ticks only flush and refresh.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Runs the in-process aggregator until shutdown or until every sender is gone.
pub(crate) async fn run_in_process(
    mut commands: mpsc::Receiver<Command>,
    mut store: InProcessStore,
    metrics: ReachMetrics,
    config: ReachConfig,
) {
    let mut gauges = GaugePublisher::new(&metrics);
    let mut maintenance = ticker(config.metrics_interval());
    let mut received = Vec::with_capacity(RECEIVE_BATCH);
    loop {
        tokio::select! {
            count = commands.recv_many(&mut received, RECEIVE_BATCH) => {
                if count == 0 {
                    return;
                }
                let now = unix_now();
                for command in received.drain(..) {
                    match command {
                        Command::Record(event) => {
                            if let Err(reason) = store.insert(&event, now) {
                                metrics.reject(reason);
                            }
                        }
                        Command::Flush(reply) => {
                            // Every earlier event is already in a sketch.
                            let _ = reply.send(Ok(()));
                        }
                        Command::Counts { window, reply } => {
                            let _ = reply.send(Ok(store.counts(window)));
                        }
                        Command::Uniques { dimension, id, window, reply } => {
                            let _ = reply.send(Ok(store.uniques(dimension, &id, window)));
                        }
                        Command::Shutdown(reply) => {
                            let _ = reply.send(Ok(()));
                            return;
                        }
                    }
                }
            }
            _ = maintenance.tick() => {
                let now = unix_now();
                store.evict(now);
                let hour = store.counts(Window::Hour(now));
                let day = store.counts(Window::Day(now));
                gauges.publish(&hour, &day);
            }
        }
    }
}

/// Ids admitted per hour and dimension in Redis mode, to enforce `max_ids_per_dimension`
/// without asking Redis, and whether this node has already put each one in the Redis indexes.
struct HourIds {
    max_ids_per_dimension: usize,
    /// Hour → per dimension: id → indexed in Redis.
    hours: BTreeMap<u64, [HashMap<Arc<str>, bool>; 3]>,
}

impl HourIds {
    fn admit(&mut self, hour: u64, dimension: Dimension, id: &Arc<str>) -> bool {
        let ids = &mut self.hours.entry(hour).or_default()[dimension.index()];
        if ids.contains_key(&**id) {
            true
        } else if ids.len() < self.max_ids_per_dimension {
            ids.insert(Arc::clone(id), false);
            true
        } else {
            false
        }
    }

    fn is_indexed(&self, bucket: &BucketKey) -> bool {
        self.hours
            .get(&bucket.hour)
            .and_then(|ids| ids[bucket.dimension.index()].get(&*bucket.id))
            .is_some_and(|indexed| *indexed)
    }

    fn mark_indexed(&mut self, bucket: &BucketKey) {
        if let Some(indexed) = self
            .hours
            .get_mut(&bucket.hour)
            .and_then(|ids| ids[bucket.dimension.index()].get_mut(&*bucket.id))
        {
            *indexed = true;
        }
    }

    /// After a failed write Redis may have restarted empty: index everything again.
    fn forget_indexing(&mut self) {
        for dimensions in self.hours.values_mut() {
            for indexed in dimensions.iter_mut().flat_map(HashMap::values_mut) {
                *indexed = false;
            }
        }
    }

    fn evict_before(&mut self, oldest_hour: u64) {
        self.hours = self.hours.split_off(&oldest_hour);
    }
}

/// Redis-mode state: pending user hashes per bucket and the store they are flushed to.
struct RedisIngest {
    store: RedisReachStore,
    metrics: ReachMetrics,
    retention: Retention,
    ids: HourIds,
    pending: PendingUsers,
    pending_events: usize,
    batch_size: usize,
    max_pending_events: usize,
    /// False after a failed write: size-triggered flushes then wait for the next tick, so a
    /// Redis outage is retried once per flush interval rather than once per event.
    last_write_ok: bool,
}

impl RedisIngest {
    fn accept(&mut self, event: &ReachEvent, now: u64) {
        if !event.has_valid_ids() {
            return self.metrics.reject(Rejection::InvalidId);
        }
        if let Err(reason) = self.retention.admit(event.timestamp, now) {
            return self.metrics.reject(reason);
        }
        if self.pending_events >= self.max_pending_events {
            // Redis has been failing for a while; holding more would grow without bound.
            return self.metrics.events_dropped.inc();
        }
        let hour = event.timestamp / SECS_PER_HOUR;
        let mut admitted = true;
        for dimension in Dimension::ALL {
            let id = event.id(dimension);
            if self.ids.admit(hour, dimension, id) {
                let bucket = BucketKey {
                    dimension,
                    id: Arc::clone(id),
                    hour,
                };
                let users = self.pending.entry(bucket).or_default();
                // Several slots of one page view arrive back to back with the same user.
                if users.last() != Some(&event.user_hash) {
                    users.push(event.user_hash);
                }
            } else {
                admitted = false;
            }
        }
        self.pending_events += 1;
        if !admitted {
            self.metrics.reject(Rejection::TooManyIds);
        }
    }

    fn batch_is_full(&self) -> bool {
        self.last_write_ok && self.pending_events >= self.batch_size
    }

    /// Sends everything pending; on failure keeps it for the next attempt.
    async fn flush(&mut self) -> Result<(), ReachError> {
        if self.pending_events == 0 {
            return Ok(());
        }
        let ids = &self.ids;
        let written = self
            .store
            .write(&self.pending, |bucket| !ids.is_indexed(bucket))
            .await;
        match written {
            Ok(()) => {
                for bucket in self.pending.keys() {
                    self.ids.mark_indexed(bucket);
                }
                self.pending.clear();
                self.pending_events = 0;
                self.last_write_ok = true;
                Ok(())
            }
            Err(err) => {
                self.metrics.redis_errors.inc();
                self.last_write_ok = false;
                self.ids.forget_indexing();
                tracing::warn!(
                    error = %err,
                    pending_events = self.pending_events,
                    "reach: Redis write failed; keeping the batch for retry"
                );
                Err(err.into())
            }
        }
    }

    /// Last flush before stopping: what cannot be sent is counted as dropped.
    async fn flush_final(&mut self) -> Result<(), ReachError> {
        let result = self.flush().await;
        if result.is_err() {
            self.metrics
                .events_dropped
                .inc_by(self.pending_events as u64);
            self.pending.clear();
            self.pending_events = 0;
        }
        result
    }
}

/// Aborts the gauge task when the aggregator ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the Redis aggregator until shutdown or until every sender is gone.
pub(crate) async fn run_redis(
    mut commands: mpsc::Receiver<Command>,
    store: RedisReachStore,
    metrics: ReachMetrics,
    config: ReachConfig,
) {
    let _gauge_task = AbortOnDrop(tokio::spawn(refresh_redis_gauges(
        store.clone(),
        metrics.clone(),
        config.clone(),
    )));
    let mut ingest = RedisIngest {
        store,
        metrics,
        retention: config.retention(),
        ids: HourIds {
            max_ids_per_dimension: config.max_ids_per_dimension,
            hours: BTreeMap::new(),
        },
        pending: PendingUsers::new(),
        pending_events: 0,
        batch_size: config.batch_size,
        max_pending_events: config.max_pending_events,
        last_write_ok: true,
    };
    let mut flush_ticker = ticker(config.flush_interval());
    let mut maintenance = ticker(config.metrics_interval());
    let mut received = Vec::with_capacity(RECEIVE_BATCH);
    loop {
        tokio::select! {
            count = commands.recv_many(&mut received, RECEIVE_BATCH) => {
                if count == 0 {
                    let _ = ingest.flush_final().await;
                    return;
                }
                let now = unix_now();
                for command in received.drain(..) {
                    match command {
                        Command::Record(event) => {
                            ingest.accept(&event, now);
                            if ingest.batch_is_full() {
                                // Errors are counted and logged; the batch is retried.
                                let _ = ingest.flush().await;
                            }
                        }
                        Command::Flush(reply) => {
                            let _ = reply.send(ingest.flush().await);
                        }
                        // ReachQuery reads Redis directly; answering here too keeps the
                        // protocol total without blocking ingestion.
                        Command::Counts { window, reply } => {
                            let mut store = ingest.store.clone();
                            tokio::spawn(async move {
                                let _ = reply.send(store.counts(window).await.map_err(Into::into));
                            });
                        }
                        Command::Uniques { dimension, id, window, reply } => {
                            let mut store = ingest.store.clone();
                            tokio::spawn(async move {
                                let result = store.uniques(dimension, &id, window).await;
                                let _ = reply.send(result.map_err(Into::into));
                            });
                        }
                        Command::Shutdown(reply) => {
                            let _ = reply.send(ingest.flush_final().await);
                            return;
                        }
                    }
                }
            }
            _ = flush_ticker.tick() => {
                let _ = ingest.flush().await;
            }
            _ = maintenance.tick() => {
                ingest.ids.evict_before(ingest.retention.oldest_hour(unix_now()));
            }
        }
    }
}

/// Refreshes the gauges from Redis (so they show every node's users) and rolls up each day
/// once more after it ends, so its day key is complete before the hour keys expire.
async fn refresh_redis_gauges(
    mut store: RedisReachStore,
    metrics: ReachMetrics,
    config: ReachConfig,
) {
    let mut gauges = GaugePublisher::new(&metrics);
    let mut ticks = ticker(config.metrics_interval());
    let mut last_day = None;
    loop {
        ticks.tick().await;
        let now = unix_now();
        let today = now / SECS_PER_DAY;
        let refreshed = async {
            if let Some(previous) = last_day.filter(|&day| day != today) {
                store.counts(Window::Day(previous * SECS_PER_DAY)).await?;
            }
            let hour = store.counts(Window::Hour(now)).await?;
            let day = store.today_counts(now).await?;
            Ok::<_, redis::RedisError>((hour, day))
        }
        .await;
        match refreshed {
            Ok((hour, day)) => {
                gauges.publish(&hour, &day);
                last_day = Some(today);
            }
            Err(err) => {
                metrics.redis_errors.inc();
                tracing::warn!(error = %err, "reach: refreshing unique-user gauges from Redis failed");
            }
        }
    }
}
