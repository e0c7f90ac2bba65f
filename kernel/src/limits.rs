//! Connection hygiene: how many connections and requests the server takes at once, how long a
//! client may take to send headers and body, how long a connection may sit idle, and HTTP/2's
//! keep-alive and stream limits. Beyond a limit the answer is fast and small (a 503, or the
//! plugin's own overload answer), never an unbounded queue.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// A request head must arrive whole within this of its first byte (a new connection's
    /// first head, of the accept), in milliseconds (slow headers); enforced within a quarter
    /// more. Between requests a kept-alive connection is timed by `idle_timeout_ms`.
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

    pub(crate) fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
}

/// What one connection has been doing, for its watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Set whenever a byte is read or written or a request starts or ends; the watchdog clears
    /// it. A flag rather than a timestamp, so the serving path never reads the clock for it.
    moved: AtomicBool,
    /// Requests of this connection being handled.
    pub(crate) requests: AtomicUsize,
    /// The watchdog's ticks so far: the coarse clock a request head is timed by.
    ticks: AtomicU64,
    /// One more than the tick at which an HTTP/1 request head began to arrive; 0 when none is
    /// on its way. A connection starts with one on its way: its first head is timed from the
    /// accept.
    head_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            moved: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            head_since: AtomicU64::new(1),
        })
    }

    /// Bytes arrived with no request being handled: a head is on its way, timed from the
    /// current tick unless it already was.
    fn head_arriving(&self) {
        if self.requests.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0
        {
            let now = self.ticks.load(Ordering::Relaxed);
            self.head_since.store(now + 1, Ordering::Relaxed);
        }
    }

    /// The connection speaks HTTP/2, which has no head to time.
    fn no_heads(&self) {
        self.head_since.store(0, Ordering::Relaxed);
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

/// Times request heads by the watchdog's ticks, so that a slow head is cut off without a timer
/// per request: hyper's own head timeout allocated, registered and cancelled one for every
/// request, which cost about a tenth of a 1-bidder auction's CPU (BENCHMARKS.md).
#[derive(Debug)]
pub(crate) struct HeadWatch {
    /// Whole ticks a head may take, plus one for the part of a tick before it began.
    late_after: u64,
}

impl HeadWatch {
    /// The watchdog's tick for a connection timed out after `idle` and heads after `header`:
    /// a quarter of the shorter, so either is enforced within a quarter of it.
    pub(crate) fn tick(idle: Duration, header: Duration) -> Duration {
        (idle.min(header) / 4).max(Duration::from_millis(1))
    }

    pub(crate) fn new(header: Duration, tick: Duration) -> Self {
        let ticks = header.as_nanos().div_ceil(tick.as_nanos().max(1));
        HeadWatch {
            late_after: u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1),
        }
    }

    /// Called on each watchdog tick: counts it, and tells whether a head has been on its way
    /// for at least the head timeout (and at most a tick more).
    pub(crate) fn late(&self, activity: &Activity) -> bool {
        let now = activity.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let since = activity.head_since.load(Ordering::Relaxed);
        since != 0 && now - (since - 1) >= self.late_after
    }
}

/// Holds one request of a connection as being handled; dropped when the response is ready.
pub(crate) struct RequestGuard(pub(crate) Arc<Activity>);

impl RequestGuard {
    pub(crate) fn enter(activity: &Arc<Activity>) -> Self {
        activity.requests.fetch_add(1, Ordering::AcqRel);
        // Its head has arrived whole (a head read ahead of it, pipelined, is timed as idle).
        activity.head_since.store(0, Ordering::Relaxed);
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

/// What a connection's first bytes said it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// This many bytes read so far, all of them the start of HTTP/2's preface.
    Unknown(usize),
    Http1,
    Http2,
}

/// What an HTTP/2 connection starts with (RFC 9113, 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A socket that records when bytes last moved, and when an HTTP/1 request head began to
/// arrive.
pub(crate) struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    protocol: Protocol,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Tracked {
            inner,
            activity,
            protocol: Protocol::Unknown(0),
        }
    }

    /// Tells HTTP/2 from HTTP/1 by the preface, from the first bytes read.
    fn sniff(&mut self, read: &[u8]) {
        let Protocol::Unknown(matched) = self.protocol else {
            return;
        };
        let expected = &HTTP2_PREFACE[matched..];
        let compared = read.len().min(expected.len());
        self.protocol = if read[..compared] != expected[..compared] {
            Protocol::Http1
        } else if compared == expected.len() {
            Protocol::Http2
        } else {
            Protocol::Unknown(matched + compared)
        };
        if self.protocol == Protocol::Http2 {
            self.activity.no_heads();
        }
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
            if self.protocol != Protocol::Http1 {
                let this = &mut *self;
                this.sniff(&buf.filled()[before..]);
            }
            if self.protocol != Protocol::Http2 {
                self.activity.head_arriving();
            }
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
    fn a_head_is_late_a_timeout_after_its_first_byte_and_never_once_whole() {
        let header = Duration::from_millis(400);
        let tick = HeadWatch::tick(Duration::from_secs(60), header);
        assert_eq!(tick, Duration::from_millis(100));
        let watch = HeadWatch::new(header, tick);
        let activity = Activity::new();
        // A new connection's first head is timed from the accept (tick 0).
        for tick in 1..=4 {
            assert!(!watch.late(&activity), "tick {tick} is within the timeout");
        }
        assert!(watch.late(&activity), "five ticks after the accept");

        let guard = RequestGuard::enter(&activity);
        for _ in 0..10 {
            assert!(
                !watch.late(&activity),
                "no head is on its way while handling"
            );
        }
        drop(guard);
        for _ in 0..10 {
            assert!(
                !watch.late(&activity),
                "a quiet kept-alive connection is idle, not late"
            );
        }
        activity.head_arriving();
        activity.head_arriving();
        for _ in 1..=4 {
            assert!(!watch.late(&activity));
        }
        assert!(
            watch.late(&activity),
            "timed from its first byte, not its last"
        );
    }

    /// Reads `bytes` through a `Tracked` socket `chunk` bytes at a time.
    async fn read_in_chunks(bytes: &[u8], chunk: usize) -> (Arc<Activity>, Protocol) {
        let activity = Activity::new();
        let mut tracked = Tracked::new(bytes, activity.clone());
        let mut storage = vec![0u8; chunk];
        loop {
            let mut buf = ReadBuf::new(&mut storage);
            std::future::poll_fn(|cx| Pin::new(&mut tracked).poll_read(cx, &mut buf))
                .await
                .unwrap();
            if buf.filled().is_empty() {
                return (activity, tracked.protocol);
            }
        }
    }

    #[tokio::test]
    async fn http2_is_told_by_its_preface_however_it_is_split_and_has_no_head_timed() {
        let mut h2 = HTTP2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        for chunk in [1, 5, 24, 64] {
            let (activity, protocol) = read_in_chunks(&h2, chunk).await;
            assert_eq!(protocol, Protocol::Http2, "read {chunk} bytes at a time");
            assert_eq!(activity.head_since.load(Ordering::Relaxed), 0);
        }
        for (request, chunk) in [
            (&b"POST /openrtb2/auction HTTP/1.1\r\n"[..], 3),
            (b"PRI /not-a-preface HTTP/1.1\r\n", 4),
            (b"PRI * HTTP/2.0\r\n\r\nXX", 64),
        ] {
            let (activity, protocol) = read_in_chunks(request, chunk).await;
            assert_eq!(
                protocol,
                Protocol::Http1,
                "{}",
                String::from_utf8_lossy(request)
            );
            assert_ne!(activity.head_since.load(Ordering::Relaxed), 0);
        }
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
