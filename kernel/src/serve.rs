//! Serving: the accept loop (HTTP/1.1 and h2c on one listener), the kernel's own endpoints
//! (`/metrics`, `/healthz`, `/readyz`), and routing every other request to the generation its
//! mount resolves to, holding that generation's in-flight token until the response is ready.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use http::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::access::{Access, ClientAddr};
use crate::config::ServerConfig;
use crate::host::{PluginDirectory, PluginEntry, inflight_totals};
use crate::kernel_metrics::KernelMetrics;
use crate::limits::{Activity, ConnectionsConfig, HeadWatch, IdleWatch, RequestGuard, Tracked};
use crate::routes::{Generation, RouteTable, StatusCounters};
use crate::{Metrics, Request, RequestBody, Response, error_response, full};

/// State read by every connection.
pub(crate) struct Shared {
    pub(crate) routes: ArcSwap<RouteTable>,
    pub(crate) ready: AtomicBool,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) shutdown_grace_ms: AtomicU64,
    /// `server.watch_config`, read when `run_until_signal` starts.
    pub(crate) watch_config: AtomicBool,
    pub(crate) metrics: Metrics,
    pub(crate) kernel: KernelMetrics,
    pub(crate) builtin: StatusCounters,
    pub(crate) unrouted: StatusCounters,
    /// Retired generations still draining (for the in-flight gauge).
    pub(crate) draining: parking_lot::Mutex<Vec<Arc<Generation>>>,
    /// Every running instance (including those that mount no path).
    pub(crate) directory: PluginDirectory,
    /// `[server.connections]` in force (a change applies to connections opened after it).
    pub(crate) limits: ArcSwap<ConnectionsConfig>,
    /// `[server.access]` in force.
    pub(crate) access: ArcSwap<Access>,
    pub(crate) open_connections: AtomicUsize,
    /// Requests being handled, against `limits.max_inflight`.
    inflight: AtomicUsize,
}

/// One request counted against `[server.connections] max_inflight`.
struct InflightSlot<'a>(&'a AtomicUsize);

impl<'a> InflightSlot<'a> {
    fn take(shared: &'a Shared) -> Option<Self> {
        let max = shared.limits.load().max_inflight;
        if shared.inflight.fetch_add(1, Ordering::AcqRel) >= max {
            shared.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InflightSlot(&shared.inflight))
    }
}

impl Drop for InflightSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    pub(crate) fn new(metrics: Metrics, server: &ServerConfig) -> anyhow::Result<Arc<Self>> {
        let kernel = KernelMetrics::register(&metrics).context("registering kernel metrics")?;
        let builtin = StatusCounters::new(&kernel.requests, "builtin");
        let unrouted = StatusCounters::new(&kernel.requests, "none");
        for result in ["ok", "error"] {
            kernel.applies.with_label_values(&[result]);
        }
        kernel.config_generation.set(1);
        kernel.config_applied_at.set(crate::time::unix_now() as i64);
        let shared = Arc::new(Shared {
            routes: ArcSwap::from_pointee(RouteTable::empty()),
            ready: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            shutdown_grace_ms: AtomicU64::new(server.shutdown_grace_ms),
            watch_config: AtomicBool::new(server.watch_config),
            metrics: metrics.clone(),
            kernel,
            builtin,
            unrouted,
            draining: parking_lot::Mutex::new(Vec::new()),
            directory: PluginDirectory::default(),
            limits: ArcSwap::from_pointee(server.connections.clone()),
            access: ArcSwap::from_pointee(Access::new(&server.access)),
            open_connections: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
        });
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        // The runtime the kernel starts on is the one serving; `start` is async, so it exists.
        let runtime = tokio::runtime::Handle::try_current().ok();
        metrics.on_render(move || {
            if let Some(shared) = weak.upgrade() {
                shared.refresh_inflight();
                if let Some(runtime) = &runtime {
                    shared.kernel.runtime.refresh(runtime);
                }
            }
        });
        Ok(shared)
    }

    /// Sets the in-flight gauge from the generations' counters (at scrape time, not per request).
    fn refresh_inflight(&self) {
        let draining = self.draining.lock().clone();
        let live = self.directory.list();
        let totals = inflight_totals(
            live.iter()
                .map(PluginEntry::serving_generation)
                .chain(&draining),
        );
        // Instances removed since the last scrape disappear rather than keep their last value.
        self.kernel.inflight.reset();
        for (plugin, total) in totals {
            self.kernel
                .inflight
                .with_label_values(&[&plugin])
                .set(total);
        }
    }

    pub(crate) async fn handle(&self, req: Request) -> Response {
        match req.uri().path() {
            // Never turned away: health must be answerable when the server is saturated.
            "/metrics" | "/healthz" | "/readyz" => {
                let response = self.builtin(&req);
                self.builtin.record(response.status());
                return response;
            }
            _ => {}
        }
        let _inflight = match InflightSlot::take(self) {
            Some(slot) => slot,
            None => return self.overloaded(&req),
        };
        let table = self.routes.load_full();
        let Some(route) = table.resolve(&req) else {
            self.unrouted.record(StatusCode::NOT_FOUND);
            return error_response(StatusCode::NOT_FOUND, "not_found");
        };
        let generation = &route.generation;
        let _token = generation.inflight.enter();
        let mut req = req;
        req.extensions_mut().insert(route.mounted_at.clone());
        // A panic is caught both where the handler builds its future and where it is polled.
        let handled =
            match std::panic::catch_unwind(AssertUnwindSafe(|| generation.handler.handle(req))) {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
        let response = match handled {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(
                    plugin = &*generation.plugin,
                    generation = generation.number,
                    "handler panicked"
                );
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        route.counters.record(response.status());
        response
    }

    /// The answer to a request beyond `max_inflight`: its plugin's overload answer, without
    /// handling it.
    fn overloaded(&self, req: &Request) -> Response {
        self.kernel.overloaded.inc();
        let table = self.routes.load();
        let Some(route) = table.resolve(req) else {
            return crate::plugin::overloaded_response();
        };
        let response = route.generation.handler.overloaded(req);
        route.counters.record(response.status());
        response
    }

    fn builtin(&self, req: &Request) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        }
        let text = |status: StatusCode, content_type: &'static str, body: String| {
            let mut response = http::Response::new(full(body));
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(content_type),
            );
            response
        };
        match req.uri().path() {
            "/metrics" => {
                let client = req
                    .extensions()
                    .get::<ClientAddr>()
                    .copied()
                    .unwrap_or(ClientAddr(std::net::Ipv4Addr::LOCALHOST.into()));
                if !self.access.load().may_read_metrics(client, req.headers()) {
                    let mut refused = error_response(StatusCode::UNAUTHORIZED, "unauthorized");
                    refused.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer realm=\"metrics\""),
                    );
                    return refused;
                }
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.metrics.render(),
                )
            }
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".to_owned()),
            _ if self.ready.load(Ordering::Acquire) => {
                text(StatusCode::OK, "text/plain", "ready\n".to_owned())
            }
            _ => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready\n".to_owned(),
            ),
        }
    }
}

/// Accepts connections until `stop`, then shuts them down gracefully within the grace period.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Usually out of file descriptors; back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let limits = shared.limits.load_full();
                let Some(slot) = ConnectionSlot::take(&shared, limits.max) else {
                    shared.kernel.connections_refused.inc();
                    connections.spawn(refuse_connection(stream));
                    continue;
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    shared.clone(),
                    limits,
                    stop.clone(),
                    slot,
                ));
            }
        }
    }
    drop(listener);
    let grace = Duration::from_millis(shared.shutdown_grace_ms.load(Ordering::Acquire));
    let open = connections.len();
    if tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "shutdown grace passed; closing remaining connections"
        );
        connections.abort_all();
    } else {
        tracing::info!(connections = open, "connections closed gracefully");
    }
    while connections.join_next().await.is_some() {}
}

/// One open connection counted against `[server.connections] max`.
struct ConnectionSlot(Arc<Shared>);

impl ConnectionSlot {
    fn take(shared: &Arc<Shared>, max: usize) -> Option<Self> {
        if shared.open_connections.fetch_add(1, Ordering::AcqRel) >= max {
            shared.open_connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        shared.kernel.connections_open.inc();
        Some(ConnectionSlot(shared.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.0.kernel.connections_open.dec();
    }
}

/// A connection past the limit: one short 503 and close, without reading the request.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let answer = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// How the watchdog ends a connection.
enum Close {
    /// After the request in flight, if any (the process stops, or it sat idle).
    Gracefully,
    /// At once (a request head did not arrive in time).
    Now,
}

/// Serves one connection until it ends, the process stops (graceful), it sits idle, or a
/// request head does not arrive within `header_timeout_ms`.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    limits: Arc<ConnectionsConfig>,
    stop: CancellationToken,
    _slot: ConnectionSlot,
) {
    let activity = Activity::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Slow heads are cut off by the watchdog below (`HeadWatch`), not by hyper's timer.
    builder.http1().header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(limits.http2_keepalive_ms))
        .keep_alive_timeout(Duration::from_millis(limits.http2_keepalive_ms))
        .max_concurrent_streams(limits.http2_max_streams);
    let body_timeout = limits.body_timeout();
    let service_activity = activity.clone();
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = service_shared.clone();
        let guard = RequestGuard::enter(&service_activity);
        let mut req = req.map(|body| RequestBody::streamed(body, body_timeout));
        let client = shared.access.load().client(peer.ip(), req.headers());
        req.extensions_mut().insert(client);
        async move {
            let response = shared.handle(req).await;
            drop(guard);
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let idle = limits.idle_timeout();
    let tick = HeadWatch::tick(idle, limits.header_timeout());
    let mut watchdog = tokio::time::interval(tick);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_watch = IdleWatch::new();
    let head_watch = HeadWatch::new(limits.header_timeout(), tick);
    let guard_shared = shared.clone();
    // Why the connection must close before its client ends it: the process stops, it sits idle,
    // or a request head takes too long.
    let guard = async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Close::Gracefully,
                _ = watchdog.tick() => {
                    if head_watch.late(&activity) {
                        guard_shared.kernel.connections_slow_head_closed.inc();
                        return Close::Now;
                    }
                    if idle_watch.idle_for(&activity, idle) {
                        guard_shared.kernel.connections_idle_closed.inc();
                        return Close::Gracefully;
                    }
                }
            }
        }
    };
    // In a FuturesUnordered the guard is polled only when its own timer or token wakes it, not
    // on each of the connection's many wake-ups (reads, writes, the handler's progress).
    let mut guard: FuturesUnordered<_> = std::iter::once(guard).collect();
    tokio::select! {
        biased;
        ended = connection.as_mut() => {
            if let Err(error) = ended {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
            return;
        }
        close = guard.next() => match close {
            // A head half sent is never answered: hyper would wait for the rest of it.
            Some(Close::Now) => return,
            _ => connection.as_mut().graceful_shutdown(),
        },
    }
    if let Err(error) = connection.await {
        tracing::debug!(%peer, error = %error, "connection ended with an error");
    }
}
