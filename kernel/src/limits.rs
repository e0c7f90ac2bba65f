//! Connection hygiene: how many connections and requests the server takes at once, how long a
//! client may take to send headers and body, how long a connection may sit idle, and HTTP/2's
//! keep-alive and stream limits. Beyond a limit the answer is fast and small (a 503, or the
//! plugin's own overload answer), never an unbounded queue.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// `[server.connections]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Open connections at most; one more is answered 503 and closed.
    pub max: usize,
    /// Requests being handled at once at most; one more gets its plugin's overload answer (503
    /// unless the plugin says otherwise) without being handled.
    pub max_inflight: usize,
    /// The whole request head must arrive within this, in milliseconds (slow headers).
    pub header_timeout_ms: u64,
    /// The whole request body must arrive within this after the head, in milliseconds (slow
    /// bodies); a late one gets 408.
    pub body_timeout_ms: u64,
    /// A connection with no request in flight and no byte read or written for this long is
    /// closed, in milliseconds.
    pub idle_timeout_ms: u64,
    /// HTTP/2: a ping this often to find dead peers, in milliseconds.
    pub http2_keepalive_ms: u64,
    /// HTTP/2: streams (requests) one connection may have open at once.
    pub http2_max_streams: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 10_000,
            max_inflight: 4_096,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            http2_keepalive_ms: 20_000,
            http2_max_streams: 256,
        }
    }
}

impl ConnectionsConfig {
    /// Problems as (field, message) relative to `server.connections`.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut at_least = |field: &str, value: u64, min: u64| {
            if value < min {
                problems.push((field.to_owned(), format!("must be at least {min}")));
            }
        };
        at_least("max", self.max as u64, 1);
        at_least("max_inflight", self.max_inflight as u64, 1);
        at_least("header_timeout_ms", self.header_timeout_ms, 100);
        at_least("body_timeout_ms", self.body_timeout_ms, 100);
        at_least("idle_timeout_ms", self.idle_timeout_ms, 100);
        at_least("http2_keepalive_ms", self.http2_keepalive_ms, 100);
        at_least("http2_max_streams", u64::from(self.http2_max_streams), 1);
        problems
    }

    pub(crate) fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// What one connection has been doing, for its idle watchdog.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Set whenever a byte is read or written or a request starts or ends; the watchdog clears
    /// it. A flag rather than a timestamp, so the serving path never reads the clock for it.
    moved: AtomicBool,
    /// Requests of this connection being handled.
    pub(crate) requests: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity::default())
    }

    fn touch(&self) {
        // Relaxed, and no store when already set: the watchdog only needs to know it moved.
        if !self.moved.load(Ordering::Relaxed) {
            self.moved.store(true, Ordering::Relaxed);
        }
    }
}

/// The idle watchdog's view of one connection: since when it has seen nothing move.
#[derive(Debug)]
pub(crate) struct IdleWatch {
    quiet_since: Instant,
}

impl IdleWatch {
    pub(crate) fn new() -> Self {
        IdleWatch {
            quiet_since: Instant::now(),
        }
    }

    /// Called on each watchdog tick: whether nothing moved and no request was being handled
    /// for `timeout` (give or take one tick).
    pub(crate) fn idle_for(&mut self, activity: &Activity, timeout: Duration) -> bool {
        let now = Instant::now();
        if activity.moved.swap(false, Ordering::Relaxed)
            || activity.requests.load(Ordering::Acquire) > 0
        {
            self.quiet_since = now;
            return false;
        }
        now.duration_since(self.quiet_since) >= timeout
    }
}

/// Holds one request of a connection as being handled; dropped when the response is ready.
pub(crate) struct RequestGuard(pub(crate) Arc<Activity>);

impl RequestGuard {
    pub(crate) fn enter(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        RequestGuard(activity.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A socket that records when bytes last moved.
pub(crate) struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_no_request_and_no_bytes() {
        let activity = Activity::new();
        let mut watch = IdleWatch::new();
        let timeout = Duration::from_millis(400);
        activity.touch();
        assert!(!watch.idle_for(&activity, timeout), "it just moved");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(watch.idle_for(&activity, timeout));
        let guard = RequestGuard::enter(&activity);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(
            !watch.idle_for(&activity, timeout),
            "a request is in flight"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!watch.idle_for(&activity, timeout), "still in flight");
        drop(guard);
        assert!(!watch.idle_for(&activity, timeout), "it just answered");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(
            !watch.idle_for(&activity, timeout),
            "quiet for less than the timeout"
        );
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(watch.idle_for(&activity, timeout));
    }

    #[test]
    fn limits_below_their_floor_are_named() {
        let config = ConnectionsConfig {
            max: 0,
            body_timeout_ms: 5,
            ..ConnectionsConfig::default()
        };
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["max", "body_timeout_ms"]);
    }
}
