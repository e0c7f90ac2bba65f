//! Connection threads: each accepted connection is served, from its first byte to its last, on
//! one thread of its own runtime, and everything its requests do (a handler's calls out, their
//! timers, what they spawn) stays on that thread.
//!
//! On the process's multi-thread runtime a connection's task moved to whichever worker polled
//! the I/O that woke it: an auction began on one thread and ended on the other, so its memory
//! was freed across threads (mimalloc then collects those blocks at its next allocation there),
//! and each wake-up could hand the task to the other core. With the whole auction on one
//! thread, the harness's server CPU per auction fell by 8–14% (BENCHMARKS.md, "connection
//! threads"). The cost is the usual one of a thread per core: a connection never moves to an
//! idle thread, so a handler that computes for long holds up the other connections of its
//! thread. The accept loop gives each connection to the thread serving the fewest.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// Which connection thread this is, on one.
    static CONNECTION_THREAD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the connection thread the caller runs on (0, 1, ...), or `None` off them (the
/// process's shared runtime, a test's). Per-thread state (a partner's idle connections) is kept
/// by this index, so that what a thread's reactor drives is used on that thread.
pub fn connection_thread() -> Option<usize> {
    CONNECTION_THREAD.with(Cell::get)
}

/// The connection threads of one running kernel. They stop when the last handle to them is
/// dropped, after the kernel's shutdown: a service's pooled connection may have been opened on
/// one of them and must stay usable until the services have flushed.
pub(crate) struct ConnectionThreads {
    threads: Vec<ConnectionThread>,
    stop: CancellationToken,
}

struct ConnectionThread {
    runtime: Handle,
    /// Connections this thread serves now.
    serving: Arc<AtomicUsize>,
}

/// Counts a connection against its thread while it is served.
pub(crate) struct Serving(Arc<AtomicUsize>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionThreads {
    /// Starts `count` threads (at least one), each running a single-threaded runtime.
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut threads = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let stopped = stop.clone();
            std::thread::Builder::new()
                .name(format!("bourse-conn-{index}"))
                .spawn(move || {
                    CONNECTION_THREAD.with(|thread| thread.set(Some(index)));
                    // Tasks handed to this runtime run while it blocks here; dropping it at
                    // the end cancels whatever is left.
                    runtime.block_on(stopped.cancelled());
                })?;
            threads.push(ConnectionThread {
                runtime: handle,
                serving: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(ConnectionThreads { threads, stop })
    }

    /// The runtime of the thread serving the fewest connections, and the count to hold while
    /// serving one there.
    pub(crate) fn least_busy(&self) -> (&Handle, Serving) {
        let thread = self
            .threads
            .iter()
            .min_by_key(|thread| thread.serving.load(Ordering::Relaxed))
            .expect("at least one connection thread");
        thread.serving.fetch_add(1, Ordering::Relaxed);
        (&thread.runtime, Serving(thread.serving.clone()))
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The default count: one thread per core.
pub(crate) fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_knows_its_index_and_connections_go_to_the_least_busy() {
        let threads = ConnectionThreads::start(2).unwrap();
        assert_eq!(connection_thread(), None);
        let (first, held_first) = threads.least_busy();
        let first_index = first.block_on(async {
            tokio::task::spawn(async { connection_thread() })
                .await
                .unwrap()
        });
        let (second, held_second) = threads.least_busy();
        let second_index = second.block_on(async {
            tokio::task::spawn(async { connection_thread() })
                .await
                .unwrap()
        });
        let mut indices = [first_index, second_index];
        indices.sort();
        assert_eq!(indices, [Some(0), Some(1)]);
        drop(held_first);
        // The first thread is free again: it gets the next connection.
        let (third, _held_third) = threads.least_busy();
        let third_index = third.block_on(async {
            tokio::task::spawn(async { connection_thread() })
                .await
                .unwrap()
        });
        assert_eq!(third_index, first_index);
        drop(held_second);
    }
}
