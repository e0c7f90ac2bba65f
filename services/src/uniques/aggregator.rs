//! The background task that owns the counts: it drains the request path's queue into
//! in-process sketches or into batched Redis writes, evicts old buckets and refreshes gauges.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior, interval_at};

use super::UniquesError;
use super::dimension::{Dimension, Dimensions};
use super::in_process::InProcessStore;
use super::item::{Item, Rejection, UniqueCount};
use super::metrics::UniquesMetrics;
use super::redis_store::{BucketKey, PendingItems, RedisUniquesStore};
use super::window::{Retention, SECS_PER_DAY, SECS_PER_HOUR, Window};
use crate::clock::Clock;
use crate::config::UniquesConfig;

/// Commands taken from the queue per wake-up: amortises the wake-up without starving ticks.
const RECEIVE_BATCH: usize = 512;

type Reply<T> = oneshot::Sender<Result<T, UniquesError>>;

/// Everything sent to the aggregator. Items and control messages share one FIFO queue, so a
/// flush or query sees every item recorded before it.
pub(crate) enum Command {
    Record(Item),
    Flush(Reply<()>),
    Counts {
        window: Window,
        reply: Reply<Vec<UniqueCount>>,
    },
    Estimate {
        dimension: Dimension,
        id: String,
        window: Window,
        reply: Reply<u64>,
    },
    /// Stops the aggregator. For a switch (`last: false`) it stops at this command, writes what
    /// it holds (Redis) and hands back the queue and its sketches to its successor; at shutdown
    /// (`last: true`) it closes the queue and counts (or writes) everything still in it first.
    Stop(StopRequest),
}

pub(crate) struct StopRequest {
    pub(crate) last: bool,
    pub(crate) reply: oneshot::Sender<Stopped>,
}

/// What a stopped aggregator hands back.
pub(crate) struct Stopped {
    /// Redis mode: whether the last write succeeded (if not, its items were dropped).
    pub(crate) flushed: Result<(), UniquesError>,
    /// In-process mode, for a switch: every sketch, for the successor.
    pub(crate) store: Option<InProcessStore>,
    /// For a switch: the queue, still open, for the successor.
    pub(crate) commands: Option<mpsc::Receiver<Command>>,
}

impl Stopped {
    /// The answer to a stop request that came after the first one in a batch.
    fn nothing() -> Self {
        Stopped {
            flushed: Ok(()),
            store: None,
            commands: None,
        }
    }
}

/// What every aggregator shares with the [`Uniques`](crate::Uniques) handle.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) dimensions: Arc<Dimensions>,
    pub(crate) metrics: UniquesMetrics,
    pub(crate) clock: Clock,
}

/// Ticks every `period`, the first time at once.
fn ticker(period: Duration) -> Interval {
    ticker_from(tokio::time::Instant::now(), period)
}

/// Ticks every `period`, the first time at `start`.
fn ticker_from(start: tokio::time::Instant, period: Duration) -> Interval {
    let mut ticker = interval_at(start, period);
    // After a stall, one catch-up tick is enough: ticks only flush and refresh.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The in-process aggregator's state: the sketches and what it needs to fill them.
struct InProcessIngest {
    store: InProcessStore,
    context: Context,
    /// Dimensions interned when the current batch was received: every item in it was recorded
    /// after its dimensions were interned.
    known_dimensions: usize,
}

impl InProcessIngest {
    fn handle(&mut self, command: Command, now: u64) -> Option<StopRequest> {
        match command {
            Command::Record(item) => {
                if let Err(reason) = self.store.insert(&item, self.known_dimensions, now) {
                    self.context.metrics.reject(reason);
                }
            }
            // Every earlier item is already in a sketch.
            Command::Flush(reply) => {
                let _ = reply.send(Ok(()));
            }
            Command::Counts { window, reply } => {
                let dimensions = self.context.dimensions.snapshot();
                let _ = reply.send(Ok(self.store.counts(window, &dimensions, |_| true)));
            }
            Command::Estimate {
                dimension,
                id,
                window,
                reply,
            } => {
                let _ = reply.send(Ok(self.store.estimate(dimension, &id, window)));
            }
            Command::Stop(request) => return Some(request),
        }
        None
    }

    fn maintain(&mut self) {
        let now = self.context.clock.unix_secs();
        self.store.evict(now);
        let dimensions = self.context.dimensions.snapshot();
        let exported = |index: usize| dimensions.get(index).is_some_and(|info| info.gauges);
        let hour = self.store.counts(Window::Hour(now), &dimensions, exported);
        let day = self.store.counts(Window::Day(now), &dimensions, exported);
        self.context.metrics.publish(&hour, &day);
    }
}

/// Runs the in-process aggregator until stopped or until every sender is gone.
pub(crate) async fn run_in_process(
    mut commands: mpsc::Receiver<Command>,
    store: InProcessStore,
    context: Context,
    config: UniquesConfig,
) {
    let mut ingest = InProcessIngest {
        store,
        context,
        known_dimensions: 0,
    };
    let mut maintenance = ticker(config.metrics_interval());
    let mut received = Vec::with_capacity(RECEIVE_BATCH);
    loop {
        tokio::select! {
            count = commands.recv_many(&mut received, RECEIVE_BATCH) => {
                if count == 0 {
                    return;
                }
                let now = ingest.context.clock.unix_secs();
                ingest.known_dimensions = ingest.context.dimensions.len();
                let mut stop: Option<StopRequest> = None;
                for command in received.drain(..) {
                    if let Some(request) = ingest.handle(command, now) {
                        keep_first(&mut stop, request);
                    }
                }
                if let Some(StopRequest { last, reply }) = stop {
                    let stopped = if last {
                        let clock = ingest.context.clock.clone();
                        drain_after_stop(&mut commands, &clock, |command, now| {
                            ingest.known_dimensions = ingest.context.dimensions.len();
                            ingest.handle(command, now)
                        }).await;
                        Stopped::nothing()
                    } else {
                        Stopped {
                            flushed: Ok(()),
                            store: Some(ingest.store),
                            commands: Some(commands),
                        }
                    };
                    let _ = reply.send(stopped);
                    return;
                }
            }
            _ = maintenance.tick() => ingest.maintain(),
        }
    }
}

/// Keeps the first stop request of a batch; a later one (there is none while reconfigurations
/// and shutdown are serialised) is told there is nothing to hand over.
fn keep_first(stop: &mut Option<StopRequest>, request: StopRequest) {
    if stop.is_none() {
        *stop = Some(request);
    } else {
        let _ = request.reply.send(Stopped::nothing());
    }
}

/// Closes the queue and handles what is still in it, so that every item whose `try_send`
/// succeeded is counted; later sends fail and are counted as dropped by the recorder.
async fn drain_after_stop<F>(commands: &mut mpsc::Receiver<Command>, clock: &Clock, mut handle: F)
where
    F: FnMut(Command, u64) -> Option<StopRequest>,
{
    commands.close();
    while let Some(command) = commands.recv().await {
        if let Some(extra) = handle(command, clock.unix_secs()) {
            let _ = extra.reply.send(Stopped::nothing());
        }
    }
}

/// Ids admitted per hour and dimension in Redis mode, to enforce `max_ids_per_dimension`
/// without asking Redis, and whether this node has already put each one in the Redis indexes.
struct HourIds {
    max_ids_per_dimension: usize,
    /// Hour → per dimension index: id → indexed in Redis.
    hours: BTreeMap<u64, Vec<HashMap<Arc<str>, bool>>>,
}

impl HourIds {
    fn admit(&mut self, hour: u64, dimension: Dimension, id: &Arc<str>) -> bool {
        let dimensions = self.hours.entry(hour).or_default();
        if dimensions.len() <= dimension.index() {
            dimensions.resize_with(dimension.index() + 1, HashMap::new);
        }
        let ids = &mut dimensions[dimension.index()];
        if ids.contains_key(&**id) {
            true
        } else if ids.len() < self.max_ids_per_dimension {
            ids.insert(Arc::clone(id), false);
            true
        } else {
            false
        }
    }

    fn ids(&self, bucket: &BucketKey) -> Option<&HashMap<Arc<str>, bool>> {
        self.hours.get(&bucket.hour)?.get(bucket.dimension.index())
    }

    fn is_indexed(&self, bucket: &BucketKey) -> bool {
        self.ids(bucket)
            .and_then(|ids| ids.get(&*bucket.id))
            .is_some_and(|indexed| *indexed)
    }

    fn mark_indexed(&mut self, bucket: &BucketKey) {
        if let Some(indexed) = self
            .hours
            .get_mut(&bucket.hour)
            .and_then(|dimensions| dimensions.get_mut(bucket.dimension.index()))
            .and_then(|ids| ids.get_mut(&*bucket.id))
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

/// Redis-mode state: pending item hashes per bucket and the store they are flushed to.
struct RedisIngest {
    store: RedisUniquesStore,
    context: Context,
    /// As in [`InProcessIngest`].
    known_dimensions: usize,
    retention: Retention,
    ids: HourIds,
    pending: PendingItems,
    pending_items: usize,
    batch_size: usize,
    max_pending_items: usize,
    /// False after a failed write: size-triggered flushes then wait for the next tick, so a
    /// Redis outage is retried once per flush interval rather than once per item.
    last_write_ok: bool,
}

impl RedisIngest {
    fn accept(&mut self, item: &Item, now: u64) {
        let metrics = &self.context.metrics;
        if let Err(reason) = item.check(self.known_dimensions) {
            return metrics.reject(reason);
        }
        if let Err(reason) = self.retention.admit(item.timestamp, now) {
            return metrics.reject(reason);
        }
        if self.pending_items >= self.max_pending_items {
            // Redis has been failing for a while; holding more would grow without bound.
            return metrics.dropped.inc();
        }
        let hour = item.timestamp / SECS_PER_HOUR;
        let mut admitted = true;
        for (dimension, id) in &item.keys {
            if self.ids.admit(hour, *dimension, id) {
                let bucket = BucketKey {
                    dimension: *dimension,
                    id: Arc::clone(id),
                    hour,
                };
                let items = self.pending.entry(bucket).or_default();
                // Several slots of one page view arrive back to back with the same item.
                if items.last() != Some(&item.item_hash) {
                    items.push(item.item_hash);
                }
            } else {
                admitted = false;
            }
        }
        self.pending_items += 1;
        if !admitted {
            metrics.reject(Rejection::TooManyIds);
        }
    }

    fn batch_is_full(&self) -> bool {
        self.last_write_ok && self.pending_items >= self.batch_size
    }

    /// Sends everything pending; on failure keeps it for the next attempt.
    async fn flush(&mut self) -> Result<(), UniquesError> {
        if self.pending_items == 0 {
            return Ok(());
        }
        let ids = &self.ids;
        let dimensions = self.context.dimensions.snapshot();
        let written = self
            .store
            .write(&self.pending, &dimensions, |bucket| !ids.is_indexed(bucket))
            .await;
        match written {
            Ok(()) => {
                for bucket in self.pending.keys() {
                    self.ids.mark_indexed(bucket);
                }
                self.pending.clear();
                self.pending_items = 0;
                self.last_write_ok = true;
                Ok(())
            }
            Err(err) => {
                self.context.metrics.redis_errors.inc();
                self.last_write_ok = false;
                self.ids.forget_indexing();
                tracing::warn!(
                    error = %err,
                    pending_items = self.pending_items,
                    "uniques: Redis write failed; keeping the batch for retry"
                );
                Err(err.into())
            }
        }
    }

    /// Last flush before stopping: what cannot be sent is counted as dropped.
    async fn flush_final(&mut self) -> Result<(), UniquesError> {
        let result = self.flush().await;
        if result.is_err() {
            self.context
                .metrics
                .dropped
                .inc_by(self.pending_items as u64);
            self.pending.clear();
            self.pending_items = 0;
        }
        result
    }

    /// Takes one command; size-triggered flushes happen here. Returns a stop request.
    async fn handle(&mut self, command: Command, now: u64) -> Option<StopRequest> {
        match command {
            Command::Record(item) => {
                self.accept(&item, now);
                if self.batch_is_full() {
                    // Errors are counted and logged; the batch is retried.
                    let _ = self.flush().await;
                }
            }
            Command::Flush(reply) => {
                let _ = reply.send(self.flush().await);
            }
            // The `Uniques` handle reads Redis directly; answering here too keeps the protocol
            // total without blocking ingestion.
            Command::Counts { window, reply } => {
                let mut store = self.store.clone();
                let dimensions = self.context.dimensions.snapshot();
                tokio::spawn(async move {
                    let counts = store.counts(window, &dimensions, |_| true).await;
                    let _ = reply.send(counts.map_err(Into::into));
                });
            }
            Command::Estimate {
                dimension,
                id,
                window,
                reply,
            } => {
                let mut store = self.store.clone();
                let name = self.context.dimensions.name(dimension);
                tokio::spawn(async move {
                    let result = match name {
                        Some(name) => store.estimate(&name, &id, window).await,
                        None => Ok(0),
                    };
                    let _ = reply.send(result.map_err(Into::into));
                });
            }
            Command::Stop(request) => return Some(request),
        }
        None
    }
}

/// Aborts the gauge task when the aggregator ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the Redis aggregator until stopped or until every sender is gone.
pub(crate) async fn run_redis(
    mut commands: mpsc::Receiver<Command>,
    store: RedisUniquesStore,
    context: Context,
    config: UniquesConfig,
) {
    let _gauge_task = AbortOnDrop(tokio::spawn(refresh_redis_gauges(
        store.clone(),
        context.clone(),
        config.metrics_interval(),
    )));
    let mut ingest = RedisIngest {
        store,
        retention: config.retention(),
        ids: HourIds {
            max_ids_per_dimension: config.max_ids_per_dimension,
            hours: BTreeMap::new(),
        },
        pending: PendingItems::new(),
        pending_items: 0,
        batch_size: config.batch_size,
        max_pending_items: config.max_pending_events,
        last_write_ok: true,
        context,
        known_dimensions: 0,
    };
    // Nothing is pending yet: the first flush is one interval away.
    let first_flush = tokio::time::Instant::now() + config.flush_interval();
    let mut flush_ticker = ticker_from(first_flush, config.flush_interval());
    let mut maintenance = ticker(config.metrics_interval());
    let mut received = Vec::with_capacity(RECEIVE_BATCH);
    loop {
        tokio::select! {
            count = commands.recv_many(&mut received, RECEIVE_BATCH) => {
                if count == 0 {
                    let _ = ingest.flush_final().await;
                    return;
                }
                let now = ingest.context.clock.unix_secs();
                ingest.known_dimensions = ingest.context.dimensions.len();
                let mut stop: Option<StopRequest> = None;
                for command in received.drain(..) {
                    if let Some(request) = ingest.handle(command, now).await {
                        keep_first(&mut stop, request);
                    }
                }
                if let Some(StopRequest { last, reply }) = stop {
                    if last {
                        commands.close();
                        while let Some(command) = commands.recv().await {
                            let now = ingest.context.clock.unix_secs();
                            ingest.known_dimensions = ingest.context.dimensions.len();
                            if let Some(extra) = ingest.handle(command, now).await {
                                let _ = extra.reply.send(Stopped::nothing());
                            }
                        }
                    }
                    let flushed = ingest.flush_final().await;
                    let commands = (!last).then_some(commands);
                    let _ = reply.send(Stopped { flushed, store: None, commands });
                    return;
                }
            }
            _ = flush_ticker.tick() => {
                let _ = ingest.flush().await;
            }
            _ = maintenance.tick() => {
                let oldest = ingest.retention.oldest_hour(ingest.context.clock.unix_secs());
                ingest.ids.evict_before(oldest);
            }
        }
    }
}

/// Refreshes the gauges from Redis (so they show every node's items) and rolls up each day
/// once more after it ends, so its day key is complete before the hour keys expire.
async fn refresh_redis_gauges(mut store: RedisUniquesStore, context: Context, period: Duration) {
    let mut ticks = ticker(period);
    let mut last_day = None;
    loop {
        ticks.tick().await;
        let now = context.clock.unix_secs();
        let today = now / SECS_PER_DAY;
        let dimensions = context.dimensions.snapshot();
        let exported = |name: &str| {
            dimensions
                .iter()
                .any(|info| &*info.name == name && info.gauges)
        };
        let refreshed = async {
            if let Some(previous) = last_day.filter(|&day| day != today) {
                store
                    .counts(Window::Day(previous * SECS_PER_DAY), &dimensions, |_| true)
                    .await?;
            }
            let hour = store
                .counts(Window::Hour(now), &dimensions, exported)
                .await?;
            let day = store.today_counts(now, &dimensions, exported).await?;
            Ok::<_, redis::RedisError>((hour, day))
        }
        .await;
        match refreshed {
            Ok((hour, day)) => {
                context.metrics.publish(&hour, &day);
                last_day = Some(today);
            }
            Err(err) => {
                context.metrics.redis_errors.inc();
                tracing::warn!(error = %err, "uniques: refreshing the gauges from Redis failed");
            }
        }
    }
}
