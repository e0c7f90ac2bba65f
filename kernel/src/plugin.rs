//! The plugin contract: a manifest, typed config with semantic validation, a start that returns a
//! request handler, and a drain called when that handler's generation is retired.

use std::any::Any;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::{Metrics, Request, Response};

/// What a plugin is and where it is mounted.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Unique name; also the name of its config table, `[plugins.<name>]`.
    pub name: &'static str,
    pub version: &'static str,
    /// Path prefixes routed to this plugin, e.g. `"/openrtb2/"`. A prefix ending in `/` also
    /// matches the path without it (`"/openrtb2"`); one without matches whole segments only
    /// (`"/api"` matches `/api` and `/api/x`, not `/apix`). The longest matching prefix wins.
    pub mounts: Vec<&'static str>,
}

/// Serves the requests of one plugin generation.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response>;

    /// Called once when this generation is retired, after its in-flight requests finished or the
    /// drain deadline passed (e.g. flush queues). `PluginCtx::shutdown` is cancelled after it.
    fn drain<'a>(&'a self) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// A compiled-in plugin.
pub trait Plugin: Send + Sync + 'static {
    /// The typed form of `[plugins.<name>]`. Use `#[serde(deny_unknown_fields)]` to turn typos
    /// into config errors.
    type Config: serde::de::DeserializeOwned + Send + Sync + 'static;

    fn manifest(&self) -> Manifest;

    /// Semantic checks beyond types; each issue's path is relative to the plugin's table, e.g.
    /// `"bidders[2].endpoint"`.
    fn validate(&self, _config: &Self::Config) -> Vec<ConfigIssue> {
        Vec::new()
    }

    /// Builds a handler for a new generation. The old generation keeps serving until this
    /// returns `Ok`; an `Err` leaves it in place.
    fn start(
        &self,
        ctx: PluginCtx,
        config: Self::Config,
    ) -> impl Future<Output = Result<Arc<dyn Handler>, PluginError>> + Send;
}

/// A semantic config problem found by [`Plugin::validate`].
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

/// What the kernel gives a plugin generation at start.
#[derive(Clone)]
pub struct PluginCtx {
    pub name: &'static str,
    /// 1 for the first start, then +1 per restart of this plugin.
    pub generation: u64,
    pub metrics: Metrics,
    /// The folder of the config file (the working directory for a config given as a string),
    /// to resolve relative paths in plugin config.
    pub config_dir: PathBuf,
    /// Cancelled when this generation is retired (after its drain) or the process shuts down;
    /// background tasks of the generation should stop on it.
    pub shutdown: CancellationToken,
    /// The config center: history of applied configs, and applying one.
    pub config_center: crate::ConfigCenter,
}

/// Typed config of one plugin, type-erased so a `LoadedConfig` can hold every plugin's.
pub(crate) type AnyConfig = Box<dyn Any + Send + Sync>;

/// Per-table outcome of deserializing and validating one plugin's config.
pub(crate) enum ParseOutcome {
    Ok(AnyConfig),
    /// serde error: path relative to the plugin table, message.
    Type {
        path: Vec<PathSegment>,
        message: String,
    },
    /// Plugin::validate issues.
    Issues(Vec<ConfigIssue>),
}

/// One step of a path inside a TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSegment {
    Key(String),
    Index(usize),
}

/// [`Plugin`] with its associated type erased, as stored by the kernel.
pub(crate) trait ErasedPlugin: Send + Sync + 'static {
    fn manifest(&self) -> Manifest;
    fn parse(&self, table: toml::Value) -> ParseOutcome;
    fn start(
        &self,
        ctx: PluginCtx,
        config: AnyConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn Handler>, PluginError>>;
}

pub(crate) struct Erased<P>(pub P);

impl<P: Plugin> ErasedPlugin for Erased<P> {
    fn manifest(&self) -> Manifest {
        self.0.manifest()
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
        let issues = self.0.validate(&config);
        if issues.is_empty() {
            ParseOutcome::Ok(Box::new(config))
        } else {
            ParseOutcome::Issues(issues)
        }
    }

    fn start(
        &self,
        ctx: PluginCtx,
        config: AnyConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn Handler>, PluginError>> {
        Box::pin(async move {
            let config = config.downcast::<P::Config>().map_err(|_| {
                PluginError(format!("config for plugin {} has the wrong type", ctx.name))
            })?;
            self.0.start(ctx, *config).await
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
