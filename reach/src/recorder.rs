//! The request-path handle: records events without blocking or locking.

use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};

use crate::aggregator::Command;
use crate::error::ReachError;
use crate::event::ReachEvent;

/// Records reach events for the aggregator. Cheap to clone (one `Arc` each for the queue and the
/// drop counter); every clone feeds the same aggregator.
#[derive(Clone)]
pub struct ReachRecorder {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) dropped: IntCounter,
}

impl ReachRecorder {
    /// Queues one event. Never waits and takes no lock: if the queue is full (or the aggregator
    /// has stopped) the event is dropped and counted in `bourse_reach_events_dropped_total`.
    pub fn record(&self, event: ReachEvent) {
        if self.commands.try_send(Command::Record(event)).is_err() {
            self.dropped.inc();
        }
    }

    /// Events dropped so far because the queue was full, the aggregator had stopped, or (Redis
    /// mode) Redis stayed unavailable longer than `max_pending_events` allowed.
    pub fn dropped_events(&self) -> u64 {
        self.dropped.get()
    }

    /// Waits until every event recorded before this call is counted: in a sketch (in-process) or
    /// written to Redis. Not for the request path: it waits for queue space and for Redis.
    pub async fn flush(&self) -> Result<(), ReachError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| ReachError::AggregatorStopped)?;
        response.await.map_err(|_| ReachError::AggregatorStopped)?
    }
}
