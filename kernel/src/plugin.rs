//! The plugin contract. A plugin *kind* is registered once (compiled in); each
//! `[plugins.<name>]` table runs one *instance* of a kind. An instance has process-lifetime
//! state built once (pools, sketches, learned tables, queues) and a handler per *generation*,
//! built from each applied config. Config is deserialized and prepared once per load.

use std::any::Any;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminSection;
use crate::{Metrics, Mount, Request, Response};

/// What a plugin kind is and where its instances answer by default.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The kind's name: what `kind = "…"` names in a plugin table, and the instance name when
    /// the table says no `kind` (`[plugins.exchange]` runs the kind `exchange`).
    pub kind: String,
    pub version: String,
    /// One line for operators (the admin's plugin list).
    pub description: String,
    /// Where an instance is mounted unless its table sets `mount`.
    pub mount: Mount,
}

/// Serves the requests of one plugin generation.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response>;

    /// Called once when this generation becomes the one serving, after the route table swap and
    /// before the previous generation drains. Commit the config into the instance's state here
    /// (never in `Plugin::start`, which may still be rolled back).
    fn activate(&self) {}

    /// Called once when this generation is retired, after its in-flight requests finished or the
    /// drain deadline passed (e.g. flush queues). It must be done by `deadline` (the kernel cuts
    /// it off there): hand what cannot be finished to the instance's state, or make it durable.
    /// `PluginCtx::shutdown` is cancelled after it.
    fn drain<'a>(&'a self, _deadline: tokio::time::Instant) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// The pages this plugin adds to the admin, if any.
    fn admin(&self) -> Option<&dyn AdminSection> {
        None
    }

    /// The answer to a request that arrives while the server already handles
    /// `[server.connections] max_inflight` requests: it must be cheap (the request is not
    /// handled). 503 with `Retry-After` unless a plugin knows better (an exchange answers "no
    /// bid").
    fn overloaded(&self, _req: &Request) -> Response {
        overloaded_response()
    }
}

/// 503 `{"error":"overloaded"}` with `Retry-After: 1`.
pub fn overloaded_response() -> Response {
    let mut response = crate::error_response(http::StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    response
}

/// A compiled-in plugin kind.
pub trait Plugin: Send + Sync + 'static {
    /// The table as written, minus the kernel's own keys (`kind`, `mount`). Use
    /// `#[serde(deny_unknown_fields)]` to turn typos into config errors.
    type Config: serde::de::DeserializeOwned + Send + Sync + 'static;
    /// The config checked and built into what a generation needs (adapters, parsed rules):
    /// done once per load, never repeated at start.
    type Prepared: Send + Sync + 'static;
    /// What lives as long as the instance, across generations.
    type State: Send + Sync + 'static;

    fn manifest(&self) -> Manifest;

    /// Checks beyond types and builds what needs no I/O. Each issue's path is relative to the
    /// plugin's table, e.g. `"bidders[2].endpoint"`.
    fn prepare(&self, config: Self::Config) -> Result<Self::Prepared, Vec<ConfigIssue>>;

    /// Builds the instance's state, once, before its first generation starts.
    fn init(
        &self,
        ctx: &PluginCtx,
        config: &Self::Prepared,
    ) -> impl Future<Output = Result<Self::State, PluginError>> + Send;

    /// Builds a handler for a new generation. The old generation keeps serving until the whole
    /// apply succeeded; an `Err` leaves it in place. Do not change `state` here: that belongs
    /// in [`Handler::activate`].
    fn start(
        &self,
        ctx: PluginCtx,
        state: Arc<Self::State>,
        config: Self::Prepared,
    ) -> impl Future<Output = Result<Arc<dyn Handler>, PluginError>> + Send;

    /// Called once when the instance is removed from the config or the process stops, after
    /// its last generation drained: stop and flush background work, by `deadline` (the kernel
    /// cuts it off there; SIGTERM's deadline is `shutdown_grace_ms` after the signal).
    fn stop(
        &self,
        _state: Arc<Self::State>,
        _deadline: tokio::time::Instant,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A semantic config problem found by [`Plugin::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted path relative to the plugin's table, e.g. `bidders[2].endpoint`; empty for the
    /// table itself.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A plugin failed to start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

/// What the kernel gives a plugin instance at init and each generation at start.
#[derive(Clone)]
pub struct PluginCtx {
    /// The instance's name: its table is `[plugins.<name>]`.
    pub name: Arc<str>,
    /// The kind it runs.
    pub kind: Arc<str>,
    /// 1 for the first start, then +1 per restart of this instance (0 at `init`).
    pub generation: u64,
    pub metrics: Metrics,
    /// The folder of the config file (the working directory for a config given as a string),
    /// to resolve relative paths in plugin config.
    pub config_dir: PathBuf,
    /// Cancelled when this generation is retired (after its drain) or the process shuts down;
    /// background tasks of the generation stop on it.
    pub shutdown: CancellationToken,
    /// Cancelled when the instance is removed or the process stops (after `Plugin::stop`);
    /// background tasks of the instance's state stop on it.
    pub lifetime: CancellationToken,
    /// The config center: history of applied configs, and applying one.
    pub config_center: crate::ConfigCenter,
    /// Every running instance, for plugins that present the others (the admin).
    pub plugins: crate::PluginDirectory,
    /// Services shared by every plugin and, through Redis when configured, every node: unique
    /// counts, exactly-once keys, rate limits, the event bus, the clock.
    pub services: bourse_services::Services,
    /// The extensions the binary registered (e.g. the paying sites' store, mail and payments).
    pub extensions: crate::Extensions,
}

impl std::fmt::Debug for PluginCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCtx")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Prepared config of one plugin, type-erased so a `LoadedConfig` can hold every plugin's.
pub(crate) type AnyConfig = Box<dyn Any + Send + Sync>;
/// An instance's state, type-erased.
pub(crate) type AnyState = Arc<dyn Any + Send + Sync>;

/// Per-table outcome of deserializing and preparing one plugin's config.
pub(crate) enum ParseOutcome {
    Ok(AnyConfig),
    /// serde error: path relative to the plugin table, message.
    Type {
        path: Vec<PathSegment>,
        message: String,
    },
    /// Plugin::prepare issues.
    Issues(Vec<ConfigIssue>),
}

/// One step of a path inside a TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSegment {
    Key(String),
    Index(usize),
}

/// [`Plugin`] with its associated types erased, as stored by the kernel.
pub(crate) trait ErasedPlugin: Send + Sync + 'static {
    fn manifest(&self) -> &Manifest;
    fn parse(&self, table: toml::Value) -> ParseOutcome;
    fn init<'a>(
        &'a self,
        ctx: &'a PluginCtx,
        config: &'a AnyConfig,
    ) -> BoxFuture<'a, Result<AnyState, PluginError>>;
    fn start(
        &self,
        ctx: PluginCtx,
        state: AnyState,
        config: AnyConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn Handler>, PluginError>>;
    fn stop(&self, state: AnyState, deadline: tokio::time::Instant) -> BoxFuture<'_, ()>;
}

pub(crate) struct Erased<P> {
    pub plugin: P,
    pub manifest: Manifest,
}

impl<P: Plugin> Erased<P> {
    pub(crate) fn new(plugin: P) -> Self {
        let manifest = plugin.manifest();
        Erased { plugin, manifest }
    }
}

fn wrong_type(what: &str) -> PluginError {
    PluginError(format!("{what} has the wrong type for this plugin kind"))
}

impl<P: Plugin> ErasedPlugin for Erased<P> {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn parse(&self, table: toml::Value) -> ParseOutcome {
        let config: P::Config = match serde_path_to_error::deserialize(table) {
            Ok(config) => config,
            Err(error) => {
                let path = segments(error.path());
                let inner = error.into_inner();
                return ParseOutcome::Type {
                    path,
                    message: inner.message().to_owned(),
                };
            }
        };
        match self.plugin.prepare(config) {
            Ok(prepared) => ParseOutcome::Ok(Box::new(prepared)),
            Err(issues) => ParseOutcome::Issues(issues),
        }
    }

    fn init<'a>(
        &'a self,
        ctx: &'a PluginCtx,
        config: &'a AnyConfig,
    ) -> BoxFuture<'a, Result<AnyState, PluginError>> {
        Box::pin(async move {
            let config = config
                .downcast_ref::<P::Prepared>()
                .ok_or_else(|| wrong_type("config"))?;
            let state = self.plugin.init(ctx, config).await?;
            Ok(Arc::new(state) as AnyState)
        })
    }

    fn start(
        &self,
        ctx: PluginCtx,
        state: AnyState,
        config: AnyConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn Handler>, PluginError>> {
        Box::pin(async move {
            let config = config
                .downcast::<P::Prepared>()
                .map_err(|_| wrong_type("config"))?;
            let state = state
                .downcast::<P::State>()
                .map_err(|_| wrong_type("state"))?;
            self.plugin.start(ctx, state, *config).await
        })
    }

    fn stop(&self, state: AnyState, deadline: tokio::time::Instant) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match state.downcast::<P::State>() {
                Ok(state) => self.plugin.stop(state, deadline).await,
                Err(_) => tracing::error!(kind = self.manifest.kind, "{}", wrong_type("state")),
            }
        })
    }
}

/// serde_path_to_error's path as our segments (enum variants and unknown steps are skipped).
pub(crate) fn segments(path: &serde_path_to_error::Path) -> Vec<PathSegment> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(PathSegment::Index(*index)),
            Segment::Map { key } => Some(PathSegment::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}
