//! Unique counts (HyperLogLog) per dimension and id, per UTC hour and day: recorded without
//! blocking, counted by a background aggregator in process or in Redis.
//!
//! The request path calls [`Uniques::record`], which only queues the item; the aggregator counts
//! it into in-process HyperLogLog++ sketches, or batches pipelined `PFADD`s into Redis (when
//! `redis_url` is set, so every node shares the counts). A reconfiguration swaps the backend
//! behind every handle: see [`Uniques`] for what a switch keeps.

mod aggregator;
mod dimension;
mod in_process;
mod item;
mod metrics;
mod redis_store;
mod sketch;
mod window;

pub use dimension::{Dimension, MAX_DIMENSION_NAME_LEN, MAX_DIMENSIONS};
pub use item::{Backend, MAX_ID_LEN, MAX_KEYS_PER_ITEM, UniqueCount};
pub use window::Window;

pub(crate) use aggregator::Context;
pub(crate) use metrics::UniquesMetrics;
pub(crate) use window::Retention;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use aggregator::{Command, StopRequest, Stopped};
use in_process::InProcessStore;
use item::{Item, Rejection};
use redis_store::RedisUniquesStore;

use crate::config::UniquesConfig;

/// Registers of a Redis HyperLogLog: always 2^14.
const REDIS_PRECISION: u8 = 14;

/// Why a unique-count call failed.
#[derive(Debug, thiserror::Error)]
pub enum UniquesError {
    /// A dimension name that cannot be used in Redis keys and metric labels.
    #[error("uniques: dimension name {name:?} {reason}")]
    InvalidDimension {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`MAX_DIMENSIONS`] names are already interned.
    #[error("uniques: at most {limit} dimensions can be interned")]
    TooManyDimensions {
        /// [`MAX_DIMENSIONS`].
        limit: usize,
    },
    /// The name was interned with the other gauge choice
    /// ([`Uniques::dimension`] versus [`Uniques::dimension_without_gauges`]).
    #[error("uniques: dimension {name:?} is already interned with the other gauge choice")]
    GaugeChoiceClash {
        /// The dimension's name.
        name: String,
    },
    /// A Redis read or write failed (pending items are kept and retried).
    #[error("uniques: Redis command failed: {0}")]
    Redis(#[from] redis::RedisError),
    /// The aggregator has stopped (after a shutdown), so nothing can be flushed or queried.
    #[error("uniques: the aggregator has stopped")]
    Stopped,
}

/// Unique counts. Cheap to clone; every clone records into the same counts and follows every
/// reconfiguration.
///
/// The queue between the request path and the aggregator lives as long as the handles: a
/// backend switch ([`Services::reconfigure`](crate::Services::reconfigure)) stops the old
/// aggregator at a marker in the queue and hands the queue to the new one, so every item is
/// counted by one of them (or counted as dropped while the queue is full). What a switch keeps:
/// - in process → in process: every sketch, if the precision is unchanged (a new precision
///   starts empty: sketches of different precisions cannot be merged);
/// - Redis → anything: the pending batch is written to the old Redis first;
/// - in process → Redis: this node's in-process counts are not carried over (a HyperLogLog++
///   sketch cannot be replayed into Redis); Redis counts what is recorded from then on, plus
///   what other nodes wrote.
///
/// `uniques.channel_capacity` is read at start only: the queue is never replaced.
#[derive(Clone)]
pub struct Uniques {
    shared: Arc<Shared>,
}

struct Shared {
    /// The request path's end of the queue, fixed for the life of the handles so that
    /// recording is a plain `try_send`.
    commands: mpsc::Sender<Command>,
    /// The backend answering queries; replaced by a switch.
    current: ArcSwap<Generation>,
    context: Context,
}

/// One backend and its aggregator task.
struct Generation {
    source: Source,
    precision: u8,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
enum Source {
    /// Queries ask the aggregator task, which owns the sketches.
    InProcess,
    /// Queries read Redis directly, so they never wait behind ingestion.
    Redis(RedisUniquesStore),
}

/// A backend ready to be started: Redis already connected, so starting it cannot fail.
pub(crate) enum Plan {
    InProcess(UniquesConfig),
    Redis {
        store: RedisUniquesStore,
        config: UniquesConfig,
    },
}

impl Plan {
    /// An in-process plan, or a Redis one over `connection`.
    pub(crate) fn new(
        config: &UniquesConfig,
        redis: Option<(redis::aio::ConnectionManager, &str)>,
    ) -> Self {
        match redis {
            None => Plan::InProcess(config.clone()),
            Some((connection, key_prefix)) => Plan::Redis {
                store: RedisUniquesStore::new(connection, key_prefix, config),
                config: config.clone(),
            },
        }
    }

    fn config(&self) -> &UniquesConfig {
        match self {
            Plan::InProcess(config) | Plan::Redis { config, .. } => config,
        }
    }
}

impl Generation {
    /// Spawns the aggregator on `receiver`; an in-process one adopts `previous` if its
    /// precision matches.
    fn start(
        plan: Plan,
        receiver: mpsc::Receiver<Command>,
        context: Context,
        previous: Option<InProcessStore>,
    ) -> Arc<Generation> {
        let (source, precision, task) = match plan {
            Plan::InProcess(config) => {
                let store = match previous {
                    Some(mut store) if store.precision() == config.precision => {
                        store.retune(&config);
                        store
                    }
                    _ => InProcessStore::new(&config),
                };
                let precision = config.precision;
                let task =
                    tokio::spawn(aggregator::run_in_process(receiver, store, context, config));
                (Source::InProcess, precision, task)
            }
            Plan::Redis { store, config } => {
                let source = Source::Redis(store.clone());
                let task = tokio::spawn(aggregator::run_redis(receiver, store, context, config));
                (source, REDIS_PRECISION, task)
            }
        };
        Arc::new(Generation {
            source,
            precision,
            task: Mutex::new(Some(task)),
        })
    }
}

impl Uniques {
    /// Starts the first backend.
    pub(crate) fn start(plan: Plan, context: Context) -> Self {
        let (commands, receiver) = mpsc::channel(plan.config().channel_capacity);
        let generation = Generation::start(plan, receiver, context.clone(), None);
        Uniques {
            shared: Arc::new(Shared {
                commands,
                current: ArcSwap::new(generation),
                context,
            }),
        }
    }

    /// Stops the current aggregator at a marker in the queue, waiting at most `deadline` (then
    /// the task is aborted and what it still held is lost). `None` if it had already stopped.
    async fn stop(&self, last: bool, deadline: Option<Duration>) -> Option<Stopped> {
        let current = self.shared.current.load_full();
        let mut task = current.task.lock().take()?;
        let stopping = async {
            let (reply, response) = oneshot::channel();
            let request = StopRequest { last, reply };
            self.shared
                .commands
                .send(Command::Stop(request))
                .await
                .ok()?;
            let stopped = response.await.ok();
            // The task returns right after replying.
            let _ = (&mut task).await;
            stopped
        };
        match deadline {
            None => stopping.await,
            Some(deadline) => match tokio::time::timeout(deadline, stopping).await {
                Ok(stopped) => stopped,
                Err(_) => {
                    task.abort();
                    tracing::warn!(
                        ?deadline,
                        "uniques: the aggregator did not stop in time; its pending items are lost"
                    );
                    None
                }
            },
        }
    }

    /// Starts the planned backend on the same queue after the old aggregator has counted (or
    /// written) everything queued before the switch, handing over its sketches when both are
    /// in process with one precision.
    pub(crate) async fn switch(&self, plan: Plan) {
        let Some(stopped) = self.stop(false, None).await else {
            tracing::error!(
                "uniques: the aggregator had stopped; the switch cannot take its queue"
            );
            return;
        };
        if let Err(err) = stopped.flushed {
            tracing::warn!(
                error = %err,
                "uniques: the last write to the old Redis failed; its items were dropped"
            );
        }
        let Some(receiver) = stopped.commands else {
            tracing::error!("uniques: the old aggregator kept its queue; the switch is abandoned");
            return;
        };
        let generation =
            Generation::start(plan, receiver, self.shared.context.clone(), stopped.store);
        self.shared.current.store(generation);
    }

    /// Counts or writes what is queued and stops the aggregator, waiting at most `deadline`.
    /// Items recorded afterwards are dropped and counted; queries fail with
    /// [`UniquesError::Stopped`] (in process) or keep reading Redis.
    pub(crate) async fn shutdown(&self, deadline: Duration) {
        if let Some(Stopped {
            flushed: Err(err), ..
        }) = self.stop(true, Some(deadline)).await
        {
            tracing::warn!(
                error = %err,
                "uniques: the last write to Redis failed; its items were dropped"
            );
        }
    }

    /// The dimension named `name`, interned on first use, whose ids are exported as labels of
    /// `bourse_reach_unique_users` (the current hour's and day's counts). Use it for ids that
    /// come from configuration (placements, publishers, bidders). Names are 1 to 32 bytes of
    /// `a-z`, `0-9` and `_`, starting with a letter; at most [`MAX_DIMENSIONS`] exist.
    pub fn dimension(&self, name: &str) -> Result<Dimension, UniquesError> {
        self.shared.context.dimensions.intern(name, true)
    }

    /// Like [`Uniques::dimension`], for ids that come from users' data (links, API keys): they
    /// are counted and queried but never become metric labels.
    pub fn dimension_without_gauges(&self, name: &str) -> Result<Dimension, UniquesError> {
        self.shared.context.dimensions.intern(name, false)
    }

    /// The name `dimension` was interned under.
    pub fn dimension_name(&self, dimension: Dimension) -> Option<Arc<str>> {
        self.shared.context.dimensions.name(dimension)
    }

    /// Queues one item (any 64-bit hash of a user, visitor or device: it is mixed again before
    /// counting) seen at `timestamp` (Unix seconds) under each `(dimension, id)` of `keys`.
    ///
    /// Never waits and takes no lock: with the queue full (or the aggregator stopped) the item
    /// is dropped and counted in `bourse_reach_events_dropped_total`. Up to three keys are held
    /// without allocating; an item with no key or more than [`MAX_KEYS_PER_ITEM`], an empty or
    /// over-long id ([`MAX_ID_LEN`]) is refused and counted under `invalid_id`.
    pub fn record(&self, item_hash: u64, timestamp: u64, keys: &[(Dimension, Arc<str>)]) {
        let metrics = &self.shared.context.metrics;
        if keys.len() > MAX_KEYS_PER_ITEM {
            return metrics.reject(Rejection::InvalidId);
        }
        let commands = &self.shared.commands;
        // A full queue is told apart before cloning the keys: dropping stays the cheapest path.
        if commands.capacity() == 0 {
            return metrics.dropped.inc();
        }
        let item = Item {
            item_hash,
            timestamp,
            keys: keys.iter().cloned().collect(),
        };
        if commands.try_send(Command::Record(item)).is_err() {
            metrics.dropped.inc();
        }
    }

    /// Items dropped so far because the queue was full, the aggregator had stopped, or (Redis
    /// mode) Redis stayed unavailable longer than `max_pending_events` allowed.
    pub fn dropped(&self) -> u64 {
        self.shared.context.metrics.dropped.get()
    }

    /// Waits until every item recorded before this call is counted: in a sketch (in process) or
    /// written to Redis. Not for the request path: it waits for queue space and for Redis.
    pub async fn flush(&self) -> Result<(), UniquesError> {
        ask(&self.shared.commands, Command::Flush).await
    }

    /// Estimated distinct items of one id of one dimension in one window (0 if never seen).
    ///
    /// In process, the query is queued behind the items recorded before it, so it sees them
    /// all. In Redis mode it sees what every node has written: [`Uniques::flush`] first to
    /// include this node's pending items.
    pub async fn count(
        &self,
        dimension: Dimension,
        id: &str,
        window: Window,
    ) -> Result<u64, UniquesError> {
        let current = self.shared.current.load_full();
        match &current.source {
            Source::InProcess => {
                let id = id.to_owned();
                ask(&self.shared.commands, |reply| Command::Estimate {
                    dimension,
                    id,
                    window,
                    reply,
                })
                .await
            }
            Source::Redis(store) => match self.dimension_name(dimension) {
                Some(name) => Ok(store.clone().estimate(&name, id, window).await?),
                None => Ok(0),
            },
        }
    }

    /// Every id counted in the window, in dimension interning order, then by id. In Redis mode
    /// this includes the ids other nodes wrote, even under dimensions this node never interned
    /// (listed last, by name).
    pub async fn counts(&self, window: Window) -> Result<Vec<UniqueCount>, UniquesError> {
        let current = self.shared.current.load_full();
        match &current.source {
            Source::InProcess => {
                ask(&self.shared.commands, |reply| Command::Counts {
                    window,
                    reply,
                })
                .await
            }
            Source::Redis(store) => {
                let order = self.shared.context.dimensions.snapshot();
                Ok(store.clone().counts(window, &order, |_| true).await?)
            }
        }
    }

    /// Where the counts live now.
    pub fn backend(&self) -> Backend {
        match self.shared.current.load().source {
            Source::InProcess => Backend::InProcess,
            Source::Redis(_) => Backend::Redis,
        }
    }

    /// HyperLogLog precision of the current backend (registers = 2^precision); Redis: 14.
    pub fn precision(&self) -> u8 {
        self.shared.current.load().precision
    }
}

/// Sends a command to the aggregator and waits for its answer.
async fn ask<T>(
    commands: &mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<Result<T, UniquesError>>) -> Command,
) -> Result<T, UniquesError> {
    let (reply, response) = oneshot::channel();
    commands
        .send(command(reply))
        .await
        .map_err(|_| UniquesError::Stopped)?;
    response.await.map_err(|_| UniquesError::Stopped)?
}
