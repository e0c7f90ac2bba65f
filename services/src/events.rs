//! The event bus: typed topics that carry domain events off the request path to the tasks
//! that act on them, through a bounded queue per subscriber that drops (and counts) rather than
//! waits.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::config::MAX_SUBSCRIBER_CAPACITY;

/// Most topics one bus holds: each name is a label value of the drop counter.
pub const MAX_TOPICS: usize = 256;
/// Longest topic name, in bytes.
pub const MAX_TOPIC_NAME_LEN: usize = 64;

/// Why a topic could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    /// The name cannot be a metric label value.
    #[error("events: topic name {0:?} must be 1 to 64 bytes of a-z, 0-9, _, - and .")]
    InvalidName(String),
    /// The topic exists with another event type.
    #[error("events: topic {topic:?} carries {existing}, not {requested}")]
    TypeClash {
        /// The topic's name.
        topic: String,
        /// The type it was made with.
        existing: &'static str,
        /// The type asked for.
        requested: &'static str,
    },
    /// [`MAX_TOPICS`] topics exist.
    #[error("events: at most {0} topics can exist")]
    TooManyTopics(usize),
}

/// Typed topics by name. Cheap to clone; clones share the topics.
#[derive(Clone)]
pub struct EventBus {
    shared: Arc<BusShared>,
}

struct BusShared {
    topics: Mutex<HashMap<String, Registered>>,
    dropped: IntCounterVec,
    default_capacity: AtomicUsize,
    closed: AtomicBool,
}

/// A topic with its type erased; `downcast` recovers it for the type it was made with.
struct Registered {
    type_name: &'static str,
    topic: Arc<dyn Any + Send + Sync>,
    close: Arc<dyn Fn() + Send + Sync>,
}

impl EventBus {
    pub(crate) fn new(
        default_capacity: usize,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let dropped = IntCounterVec::new(
            Opts::new(
                "bourse_kernel_events_dropped_total",
                "Events not delivered to a subscriber because its queue was full, per topic.",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(EventBus {
            shared: Arc::new(BusShared {
                topics: Mutex::new(HashMap::new()),
                dropped,
                default_capacity: AtomicUsize::new(default_capacity),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The topic `name` carrying events of type `T`, made on first use. The same name and type
    /// always give the same topic; the same name with another type is an error. Names are 1 to
    /// 64 bytes of `a-z`, `0-9`, `_`, `-` and `.` (for example `exchange.impression`).
    pub fn topic<T: Clone + Send + Sync + 'static>(
        &self,
        name: &str,
    ) -> Result<Topic<T>, EventError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_TOPIC_NAME_LEN
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
        if !valid {
            return Err(EventError::InvalidName(name.to_owned()));
        }
        let mut topics = self.shared.topics.lock();
        if let Some(registered) = topics.get(name) {
            return match Arc::clone(&registered.topic).downcast::<TopicInner<T>>() {
                Ok(inner) => Ok(Topic { inner }),
                Err(_) => Err(EventError::TypeClash {
                    topic: name.to_owned(),
                    existing: registered.type_name,
                    requested: std::any::type_name::<T>(),
                }),
            };
        }
        if topics.len() >= MAX_TOPICS {
            return Err(EventError::TooManyTopics(MAX_TOPICS));
        }
        let inner = Arc::new(TopicInner::<T> {
            subscribers: ArcSwap::from_pointee(Vec::new()),
            listening: AtomicUsize::new(0),
            changing: Mutex::new(()),
            next_id: AtomicU64::new(0),
            dropped: self.shared.dropped.with_label_values(&[name]),
            bus: Arc::downgrade(&self.shared),
        });
        let closing = Arc::clone(&inner);
        topics.insert(
            name.to_owned(),
            Registered {
                type_name: std::any::type_name::<T>(),
                topic: inner.clone(),
                close: Arc::new(move || closing.close()),
            },
        );
        Ok(Topic { inner })
    }

    /// Ends every subscription (each still receives what was queued, then `None`); later
    /// publishes are no-ops and later subscriptions end at once.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let closers: Vec<_> = self
            .shared
            .topics
            .lock()
            .values()
            .map(|registered| Arc::clone(&registered.close))
            .collect();
        for close in closers {
            close();
        }
    }

    pub(crate) fn set_default_capacity(&self, capacity: usize) {
        self.shared
            .default_capacity
            .store(capacity, Ordering::Release);
    }

    /// Names of the topics that exist, with their event type, sorted by name.
    pub fn topics(&self) -> Vec<(String, &'static str)> {
        let mut topics: Vec<_> = self
            .shared
            .topics
            .lock()
            .iter()
            .map(|(name, registered)| (name.clone(), registered.type_name))
            .collect();
        topics.sort();
        topics
    }
}

/// One subscriber's queue.
struct Subscriber<T> {
    id: u64,
    sender: mpsc::Sender<T>,
}

struct TopicInner<T> {
    /// Read by every publish without a lock; replaced (under `changing`) when a subscriber
    /// comes or goes.
    subscribers: ArcSwap<Vec<Subscriber<T>>>,
    /// `subscribers.len()`, so a topic nobody listens to costs one relaxed load per publish.
    listening: AtomicUsize,
    changing: Mutex<()>,
    next_id: AtomicU64,
    dropped: IntCounter,
    bus: std::sync::Weak<BusShared>,
}

impl<T> TopicInner<T> {
    /// Publishes a new subscriber list; the caller holds `changing`.
    fn replace(&self, subscribers: Vec<Subscriber<T>>) {
        self.listening.store(subscribers.len(), Ordering::Release);
        self.subscribers.store(Arc::new(subscribers));
    }

    fn close(&self) {
        let _changing = self.changing.lock();
        self.replace(Vec::new());
    }

    fn unsubscribe(&self, id: u64) {
        let _changing = self.changing.lock();
        let current = self.subscribers.load();
        if current.iter().any(|subscriber| subscriber.id == id) {
            let remaining = current
                .iter()
                .filter(|subscriber| subscriber.id != id)
                .map(|subscriber| Subscriber {
                    id: subscriber.id,
                    sender: subscriber.sender.clone(),
                })
                .collect();
            self.replace(remaining);
        }
    }
}

/// A typed topic. Cheap to clone; clones publish to the same subscribers.
pub struct Topic<T> {
    inner: Arc<TopicInner<T>>,
}

impl<T> Clone for Topic<T> {
    fn clone(&self) -> Self {
        Topic {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Topic<T> {
    /// Hands `event` to every current subscriber. Never waits and takes no lock: a subscriber
    /// whose queue is full misses it (counted in `bourse_kernel_events_dropped_total{topic}`);
    /// with no subscriber this is one atomic load. The event is cloned for all but
    /// the last subscriber, so large events are best wrapped in an `Arc`.
    pub fn publish(&self, event: T) {
        if self.inner.listening.load(Ordering::Acquire) == 0 {
            return;
        }
        let subscribers = self.inner.subscribers.load();
        if let Some((last, others)) = subscribers.split_last() {
            for subscriber in others {
                self.offer(subscriber, event.clone());
            }
            self.offer(last, event);
        }
    }

    fn offer(&self, subscriber: &Subscriber<T>, event: T) {
        if let Err(TrySendError::Full(_)) = subscriber.sender.try_send(event) {
            self.inner.dropped.inc();
        }
        // Closed: the subscription is being dropped and is about to leave the list.
    }

    /// A new subscriber receiving every event published from now on, with a queue of
    /// `capacity` events (1 to 2^24; values outside are brought into that range).
    pub fn subscribe(&self, capacity: usize) -> Subscription<T> {
        let capacity = capacity.clamp(1, MAX_SUBSCRIBER_CAPACITY);
        let (sender, receiver) = mpsc::channel(capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let bus_open = self
            .inner
            .bus
            .upgrade()
            .is_some_and(|bus| !bus.closed.load(Ordering::Acquire));
        if bus_open {
            let _changing = self.inner.changing.lock();
            let current = self.inner.subscribers.load();
            let mut grown: Vec<Subscriber<T>> = current
                .iter()
                .map(|subscriber| Subscriber {
                    id: subscriber.id,
                    sender: subscriber.sender.clone(),
                })
                .collect();
            grown.push(Subscriber { id, sender });
            self.inner.replace(grown);
        }
        Subscription {
            receiver,
            topic: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// A subscriber with the configured `events.default_capacity`.
    pub fn subscribe_default(&self) -> Subscription<T> {
        let capacity = self
            .inner
            .bus
            .upgrade()
            .map_or(1, |bus| bus.default_capacity.load(Ordering::Acquire));
        self.subscribe(capacity)
    }

    /// Current subscribers.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.load().len()
    }

    /// Events dropped so far on this topic (all subscribers).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.get()
    }
}

/// One subscriber's end of a topic. Dropping it unsubscribes.
pub struct Subscription<T> {
    receiver: mpsc::Receiver<T>,
    topic: std::sync::Weak<TopicInner<T>>,
    id: u64,
}

impl<T> Subscription<T> {
    /// The next event; `None` once the bus is shut down and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        self.receiver.recv().await
    }

    /// Waits for at least one event, then moves up to `limit` queued events into `buffer`;
    /// returns how many (0 once the bus is shut down and the queue is empty).
    pub async fn recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        self.receiver.recv_many(buffer, limit.max(1)).await
    }

    /// The next queued event, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        self.receiver.try_recv().ok()
    }

    /// Events waiting in this subscriber's queue.
    pub fn queued(&self) -> usize {
        self.receiver.len()
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(topic) = self.topic.upgrade() {
            topic.unsubscribe(self.id);
        }
    }
}
