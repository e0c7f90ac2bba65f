//! The live route table: mount prefixes resolved to the current generation of a plugin, each
//! generation with a lock-free in-flight tracker that draining waits on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Handler;

/// One started instance of a plugin.
pub(crate) struct Generation {
    pub(crate) plugin: &'static str,
    pub(crate) number: u64,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) inflight: Inflight,
    /// Handed to the plugin as `PluginCtx::shutdown`; cancelled after its drain.
    pub(crate) shutdown: CancellationToken,
    /// Whether it is counted as `active` in the state gauge.
    pub(crate) activated: AtomicBool,
}

/// Counts requests in flight on a generation; draining waits for zero.
#[derive(Default)]
pub(crate) struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held for the duration of one request on one generation.
pub(crate) struct InflightToken<'a>(&'a Inflight);

impl Inflight {
    pub(crate) fn enter(&self) -> InflightToken<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InflightToken(self)
    }

    pub(crate) fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight, or `deadline` passes. Returns whether it went idle.
    pub(crate) async fn wait_idle(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                // Register before checking, so a token dropped in between still wakes us.
                notified.as_mut().enable();
                if self.current() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }
}

impl Drop for InflightToken<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Status-class counters of one mount, resolved when the table is built.
#[derive(Clone)]
pub(crate) struct StatusCounters([IntCounter; 5]);

impl StatusCounters {
    pub(crate) fn new(vec: &prometheus::IntCounterVec, mount: &str) -> Self {
        StatusCounters(
            ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| vec.with_label_values(&[mount, class])),
        )
    }

    pub(crate) fn record(&self, status: http::StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.0[class].inc();
    }
}

pub(crate) struct Route {
    prefix: &'static str,
    pub(crate) generation: Arc<Generation>,
    pub(crate) counters: StatusCounters,
}

impl Route {
    pub(crate) fn new(
        prefix: &'static str,
        generation: Arc<Generation>,
        counters: StatusCounters,
    ) -> Self {
        Route {
            prefix,
            generation,
            counters,
        }
    }

    fn matches(&self, path: &str) -> bool {
        matches_prefix(self.prefix, path)
    }
}

/// Whether `prefix` mounts `path` (see `Manifest::mounts`).
pub(crate) fn matches_prefix(prefix: &str, path: &str) -> bool {
    match prefix.strip_suffix('/') {
        Some(bare) => path.starts_with(prefix) || path == bare,
        None => {
            path.starts_with(prefix)
                && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
        }
    }
}

/// An immutable routing snapshot; replaced whole on every apply.
pub(crate) struct RouteTable {
    /// Longest prefix first.
    routes: Vec<Route>,
}

impl RouteTable {
    pub(crate) fn empty() -> Self {
        RouteTable { routes: Vec::new() }
    }

    pub(crate) fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.prefix.cmp(b.prefix))
        });
        RouteTable { routes }
    }

    pub(crate) fn resolve(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_prefix_matches_the_bare_path_too() {
        assert!(matches_prefix("/openrtb2/", "/openrtb2/auction"));
        assert!(matches_prefix("/openrtb2/", "/openrtb2"));
        assert!(!matches_prefix("/openrtb2/", "/openrtb22"));
        assert!(!matches_prefix("/openrtb2/", "/openrtb"));
    }

    #[test]
    fn bare_prefix_matches_whole_segments_only() {
        assert!(matches_prefix("/api", "/api"));
        assert!(matches_prefix("/api", "/api/x"));
        assert!(!matches_prefix("/api", "/apix"));
        assert!(matches_prefix("/", "/anything"));
    }

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_token_drops() {
        let inflight = Arc::new(Inflight::default());
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let held = inflight.clone();
        let task = tokio::spawn(async move {
            let _token = held.enter();
            entered_tx.send(()).unwrap();
            release_rx.await.unwrap();
        });
        entered_rx.await.unwrap();
        assert_eq!(inflight.current(), 1);
        let waiter = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.wait_idle(Duration::from_secs(30)).await })
        };
        release_tx.send(()).unwrap();
        assert!(waiter.await.unwrap());
        task.await.unwrap();
        assert_eq!(inflight.current(), 0);
    }

    #[tokio::test]
    async fn wait_idle_gives_up_at_the_deadline() {
        let inflight = Inflight::default();
        let _token = inflight.enter();
        assert!(!inflight.wait_idle(Duration::from_millis(20)).await);
    }
}
