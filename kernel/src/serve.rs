//! Serving: the accept loop (HTTP/1.1 and h2c on one listener), the kernel's own endpoints
//! (`/metrics`, `/healthz`, `/readyz`), and routing every other request to the generation its
//! mount resolves to, holding that generation's in-flight token until the response is ready.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::host::{PluginDirectory, PluginEntry, inflight_totals};
use crate::kernel_metrics::KernelMetrics;
use crate::routes::{Generation, RouteTable, StatusCounters};
use crate::{Metrics, PeerAddr, Request, RequestBody, Response, error_response, full};

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
            self.kernel.inflight.with_label_values(&[&plugin]).set(total);
        }
    }

    pub(crate) async fn handle(&self, req: Request) -> Response {
        match req.uri().path() {
            "/metrics" | "/healthz" | "/readyz" => {
                let response = self.builtin(&req);
                self.builtin.record(response.status());
                return response;
            }
            _ => {}
        }
        let table = self.routes.load_full();
        let Some(route) = table.resolve(&req) else {
            self.unrouted.record(StatusCode::NOT_FOUND);
            return error_response(StatusCode::NOT_FOUND, "not_found");
        };
        let generation = &route.generation;
        let _token = generation.inflight.enter();
        let mut req = req;
        req.extensions_mut().insert(route.mounted_at.clone());
        let response = match AssertUnwindSafe(generation.handler.handle(req))
            .catch_unwind()
            .await
        {
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
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
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
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
                let shared = shared.clone();
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    let mut req = req.map(RequestBody::Incoming);
                    req.extensions_mut().insert(PeerAddr(peer));
                    async move { Ok::<_, Infallible>(shared.handle(req).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, error = %error, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    let grace = Duration::from_millis(shared.shutdown_grace_ms.load(Ordering::Acquire));
    let open = graceful.count();
    if tokio::time::timeout(grace, graceful.shutdown())
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

