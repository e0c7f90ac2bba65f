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

use aggregator::{Command, Stopped};
use in_process::InProcessStore;
use item::{Item, Rejection};
use redis_store::RedisUniquesStore;

use crate::config::{MIN_PRECISION, UniquesConfig};

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
/// What a backend switch ([`Services::reconfigure`](crate::Services::reconfigure)) keeps:
/// - in process → in process: every sketch, if the precision is unchanged (a new precision
///   starts empty: sketches of different precisions cannot be merged);
/// - Redis → anything: the pending batch is written to the old Redis first;
/// - in process → Redis: this node's in-process counts are not carried over (a HyperLogLog++
///   sketch cannot be replayed into Redis); Redis counts what is recorded from then on, plus
///   what other nodes wrote;
/// - every item recorded before the switch is counted by the old backend or counted as dropped,
///   and items recorded during the switch wait in the new queue (up to `channel_capacity`).
#[derive(Clone)]
pub struct Uniques {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Generation>,
    context: Context,
}

/// One backend and its aggregator task.
struct Generation {
    commands: mpsc::Sender<Command>,
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
    fn new(plan: &Plan) -> (Arc<Generation>, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(plan.config().channel_capacity);
        let (source, precision) = match plan {
            Plan::InProcess(config) => (Source::InProcess, config.precision),
            // Redis HyperLogLogs always have 2^14 registers.
            Plan::Redis { store, .. } => (Source::Redis(store.clone()), MIN_PRECISION),
        };
        let generation = Generation {
            commands,
            source,
            precision,
            task: Mutex::new(None),
        };
        (Arc::new(generation), receiver)
    }

    /// Spawns the aggregator; an in-process one adopts `previous` if its precision matches.
    fn spawn(
        &self,
        plan: Plan,
        receiver: mpsc::Receiver<Command>,
        context: Context,
        previous: Option<InProcessStore>,
    ) {
        let task = match plan {
            Plan::InProcess(config) => {
                let store = match previous {
                    Some(mut store) if store.precision() == config.precision => {
                        store.retune(&config);
                        store
                    }
                    _ => InProcessStore::new(&config),
                };
                tokio::spawn(aggregator::run_in_process(receiver, store, context, config))
            }
            Plan::Redis { store, config } => {
                tokio::spawn(aggregator::run_redis(receiver, store, context, config))
            }
        };
        *self.task.lock() = Some(task);
    }

    /// Asks the aggregator to count what is queued and stop, waiting at most `deadline`
    /// (then the task is aborted and what it still held is lost). `None` if it had already
    /// stopped.
    async fn stop(&self, deadline: Option<Duration>) -> Option<Stopped> {
        let mut task = self.task.lock().take();
        let stopping = async {
            let (reply, response) = oneshot::channel();
            self.commands.send(Command::Stop(reply)).await.ok()?;
            let stopped = response.await.ok();
            if let Some(task) = task.as_mut() {
                // The task returns right after replying.
                let _ = task.await;
            }
            stopped
        };
        match deadline {
            None => stopping.await,
            Some(deadline) => match tokio::time::timeout(deadline, stopping).await {
                Ok(stopped) => stopped,
                Err(_) => {
                    if let Some(task) = task {
                        task.abort();
                    }
                    tracing::warn!(
                        ?deadline,
                        "uniques: the aggregator did not stop in time; its pending items are lost"
                    );
                    None
                }
            },
        }
    }
}

impl Uniques {
    /// Starts the first backend.
    pub(crate) fn start(plan: Plan, context: Context) -> Self {
        let (generation, receiver) = Generation::new(&plan);
        generation.spawn(plan, receiver, context.clone(), None);
        Uniques {
            shared: Arc::new(Shared {
                current: ArcSwap::new(generation),
                context,
            }),
        }
    }

    /// Swaps in the planned backend behind every handle, then stops the old one (which counts
    /// or writes what it still holds) and starts the new aggregator, handing it the old
    /// sketches when both are in process with one precision.
    pub(crate) async fn switch(&self, plan: Plan) {
        let (generation, receiver) = Generation::new(&plan);
        let old = self.shared.current.swap(Arc::clone(&generation));
        let stopped = old.stop(None).await;
        let previous = match stopped {
            Some(Stopped { flushed, store }) => {
                if let Err(err) = flushed {
                    tracing::warn!(error = %err, "uniques: the last write to the old Redis failed; its items were dropped");
                }
                store
            }
            None => None,
        };
        generation.spawn(plan, receiver, self.shared.context.clone(), previous);
    }

    /// Counts or writes what is queued and stops the aggregator, waiting at most `deadline`.
    /// Items recorded afterwards are dropped and counted; queries fail with
    /// [`UniquesError::Stopped`] (in process) or keep reading Redis.
    pub(crate) async fn shutdown(&self, deadline: Duration) {
        let current = self.shared.current.load_full();
        if let Some(Stopped {
            flushed: Err(err), ..
        }) = current.stop(Some(deadline)).await
        {
            tracing::warn!(error = %err, "uniques: the last write to Redis failed; its items were dropped");
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
    /// is dropped and counted in `bourse_reach_events_dropped_total`. Up to four keys are held
    /// without allocating; an item with no key or more than [`MAX_KEYS_PER_ITEM`], an empty or
    /// over-long id ([`MAX_ID_LEN`]) is refused and counted under `invalid_id`.
    pub fn record(&self, item_hash: u64, timestamp: u64, keys: &[(Dimension, Arc<str>)]) {
        let metrics = &self.shared.context.metrics;
        if keys.len() > MAX_KEYS_PER_ITEM {
            return metrics.reject(Rejection::InvalidId);
        }
        let item = Item {
            item_hash,
            timestamp,
            keys: keys.iter().cloned().collect(),
        };
        let current = self.shared.current.load();
        if current.commands.try_send(Command::Record(item)).is_err() {
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
        let commands = self.shared.current.load().commands.clone();
        ask(&commands, Command::Flush).await
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
                ask(&current.commands, |reply| Command::Estimate {
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
                ask(&current.commands, |reply| Command::Counts { window, reply }).await
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
