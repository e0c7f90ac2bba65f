//! The running kernel: binds the listener, starts plugin generations, serves requests through
//! the route table, applies new config live, and shuts down gracefully.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::config::{self, ConfigError, LoadedConfig, PluginConfig, ServerConfig};
use crate::etcd::{self, EtcdLink, EtcdMetrics};
use crate::plugin::{AnyConfig, Erased, ErasedPlugin, Manifest, Plugin, PluginCtx, PluginError};
use crate::routes::{Generation, Inflight, Route, RouteTable, StatusCounters};
use crate::{ConfigErrors, Metrics, PeerAddr, Request, Response, error_response, full};

/// The kernel before it serves: a set of registered plugins.
pub struct Kernel {
    plugins: Vec<Arc<dyn ErasedPlugin>>,
    metrics: Metrics,
}

/// Registers plugins; see [`Kernel::builder`].
#[derive(Default)]
pub struct KernelBuilder {
    plugins: Vec<Arc<dyn ErasedPlugin>>,
    metrics: Option<Metrics>,
}

impl KernelBuilder {
    /// Registers a compiled-in plugin. Its config lives in `[plugins.<manifest name>]`.
    pub fn plugin<P: Plugin>(mut self, plugin: P) -> Self {
        self.plugins.push(Arc::new(Erased(plugin)));
        self
    }

    /// Uses this registry instead of a fresh one (to share it with code outside the kernel).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn build(self) -> Kernel {
        Kernel {
            plugins: self.plugins,
            metrics: self.metrics.unwrap_or_default(),
        }
    }
}

impl Kernel {
    pub fn builder() -> KernelBuilder {
        KernelBuilder::default()
    }

    /// The registry every plugin generation receives.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Parses and validates a config file: TOML syntax, the type of every table, and
    /// [`Plugin::validate`]. Errors name `file:line:column` and the dotted path.
    pub fn load_config_file(&self, path: &Path) -> Result<LoadedConfig, ConfigErrors> {
        config::load_file(&self.plugins, path)
    }

    /// As [`Kernel::load_config_file`], for config text; `origin` names it in errors.
    pub fn load_config_str(&self, text: &str, origin: &str) -> Result<LoadedConfig, ConfigErrors> {
        config::load_str(&self.plugins, text, origin, current_dir())
    }

    /// Binds `server.listen`, starts serving (`/readyz` says 503 until plugins are up), starts
    /// generation 1 of every plugin, and routes to them.
    ///
    /// With `[server.etcd]`, the shared config in etcd (with this node's local settings laid
    /// over it) is what starts, and it is watched from then on; an empty key is seeded with this
    /// node's file. When etcd cannot be reached the file starts, and etcd is tried again in the
    /// background.
    pub async fn start(self, config: LoadedConfig) -> anyhow::Result<Running> {
        let manifests = check_manifests(&self.plugins)?;
        let (config, etcd_start) = self.join_etcd(config).await?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let local_addr = listener.local_addr()?;
        let shared = Shared::new(self.metrics.clone(), &config.server)?;
        let stop_accepting = CancellationToken::new();
        let accept_task = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            stop_accepting.clone(),
        ));
        let audit = AuditLog::new(
            config
                .server
                .audit_log
                .as_ref()
                .map(|p| config.config_dir.join(p)),
        );
        let (center, center_requests) = crate::ConfigCenter::new(audit.shared());
        let host = Host {
            center,
            plugins: self.plugins,
            manifests,
            shared: shared.clone(),
            root: CancellationToken::new(),
            retiring: TaskTracker::new(),
        };

        let LoadedConfig {
            server,
            plugins,
            source,
            config_dir,
            text,
            ..
        } = config;
        let mut audit = audit;
        let mut configs: Vec<Option<PluginConfig>> = plugins.into_iter().map(Some).collect();
        let mut pending = Vec::new();
        for plugin in &host.plugins {
            let name = plugin.manifest().name;
            let entry = configs
                .iter_mut()
                .find(|c| c.as_ref().is_some_and(|c| c.name == name));
            let Some(PluginConfig { raw, typed, .. }) = entry.and_then(Option::take) else {
                stop_accepting.cancel();
                let _ = accept_task.await;
                bail!("config has no table for plugin {name}; load it with this kernel");
            };
            pending.push((plugin.clone(), name, raw, typed));
        }
        let started = futures_util::future::join_all(pending.into_iter().map(
            |(plugin, name, raw, typed)| {
                let host = &host;
                let config_dir = config_dir.clone();
                async move {
                    let generation = host
                        .start_generation(&plugin, name, 1, typed, config_dir)
                        .await;
                    (name, raw, generation)
                }
            },
        ))
        .await;

        let mut current = Vec::new();
        let mut failures = Vec::new();
        for (name, raw, generation) in started {
            match generation {
                Ok(generation) => current.push(Current {
                    name,
                    raw,
                    generation,
                }),
                Err(error) => failures.push(format!("plugin {name} failed to start: {error}")),
            }
        }
        if !failures.is_empty() {
            for entry in current {
                host.retire(entry.generation, server.drain_deadline());
            }
            stop_accepting.cancel();
            let _ = accept_task.await;
            host.retiring.close();
            host.retiring.wait().await;
            host.root.cancel();
            bail!("{}", failures.join("; "));
        }

        host.install(&current);
        shared.ready.store(true, Ordering::Release);
        tracing::info!(addr = %local_addr, plugins = current.len(), "kernel serving");
        let startup_who = etcd_start.as_ref().and_then(|s| s.applied).map_or_else(
            || "startup".to_owned(),
            |rev| format!("startup from etcd rev {rev}"),
        );
        audit.record(&startup_who, &text, unix_now());
        let (etcd, etcd_updates) = match etcd_start {
            Some(start) => {
                let (sender, receiver) = mpsc::unbounded_channel();
                etcd::spawn_watch(
                    start.link.settings.clone(),
                    start.next_revision,
                    start.seed,
                    sender,
                    start.link.metrics.clone(),
                    host.root.child_token(),
                );
                (Some(tokio::sync::Mutex::new(start.link)), Some(receiver))
            }
            None => (None, None),
        };
        Ok(Running {
            host,
            local_addr,
            state: tokio::sync::Mutex::new(State {
                current,
                server,
                source,
                audit,
            }),
            stop_accepting,
            accept_task: parking_lot::Mutex::new(Some(accept_task)),
            center_requests: tokio::sync::Mutex::new(center_requests),
            etcd,
            etcd_updates: parking_lot::Mutex::new(etcd_updates),
        })
    }

    /// With `[server.etcd]`: reads (or seeds) the shared config and returns the config to start
    /// from, with the link to keep. Without it, the config unchanged.
    async fn join_etcd(
        &self,
        config: LoadedConfig,
    ) -> anyhow::Result<(LoadedConfig, Option<EtcdStart>)> {
        let Some(settings) = config.server.etcd.clone() else {
            return Ok((config, None));
        };
        let metrics = EtcdMetrics::register(&self.metrics).context("registering etcd metrics")?;
        let mut link = EtcdLink::new(
            settings.clone(),
            config.text.clone(),
            config.config_dir.clone(),
            metrics,
        );
        let seed = etcd::shared_document(&config.text)
            .context("extracting the shared part of the config")?;
        let fetched = match link.client().await {
            Ok(client) => etcd::fetch_or_seed(client, &settings, Some(&seed)).await,
            Err(error) => Err(error),
        };
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(
                    key = settings.key,
                    error,
                    "etcd cannot be reached at start-up: serving the local config file and \
                     trying etcd again in the background"
                );
                let start = EtcdStart {
                    link,
                    next_revision: None,
                    seed: Some(seed),
                    applied: None,
                };
                return Ok((config, Some(start)));
            }
        };
        let mut start = EtcdStart {
            link,
            next_revision: Some(fetched.revision + 1),
            seed: None,
            applied: None,
        };
        let Some((revision, document)) = fetched.value else {
            return Ok((config, Some(start)));
        };
        let link = &mut start.link;
        link.seen = revision;
        let loaded = document.and_then(|text| {
            load_etcd_document(&self.plugins, link, &text, config.source.clone())
                .map(|loaded| (text, loaded))
                .map_err(|errors| errors.to_string())
        });
        match loaded {
            Ok((document, loaded)) => {
                link.last_document = Some(document);
                link.metrics.applied(revision);
                if etcd::same_config(&loaded.text, &config.text) {
                    // This node's file already says it (it seeded etcd, say): keep its text.
                    return Ok((config, Some(start)));
                }
                tracing::info!(revision, "starting from the shared config in etcd");
                // So that a restart without etcd serves it. A file that cannot be written
                // (mounted read-only, say) stays as it was: the watcher starts from its bytes.
                match loaded
                    .source
                    .as_deref()
                    .map(|p| (p, write_config_file(p, &loaded.text)))
                {
                    Some((_, Ok(()))) => link.local_text = loaded.text.clone(),
                    Some((path, Err(error))) => tracing::warn!(
                        path = %path.display(),
                        %error,
                        "cannot write the config from etcd to the config file"
                    ),
                    None => {}
                }
                start.applied = Some(revision);
                Ok((loaded, Some(start)))
            }
            Err(error) => {
                link.metrics.outcome("refused");
                tracing::error!(
                    revision,
                    error,
                    "the shared config in etcd is refused: serving the local config file"
                );
                Ok((config, Some(start)))
            }
        }
    }
}

/// What `Kernel::start` learnt from etcd.
struct EtcdStart {
    link: EtcdLink,
    /// Where the watch resumes; `None`: etcd was not reached, read it first.
    next_revision: Option<i64>,
    /// What to seed an empty key with, when etcd was not reached at start-up.
    seed: Option<String>,
    /// The revision started from, when it was etcd's document.
    applied: Option<i64>,
}

/// Validates `text` from etcd on its own (errors name `etcd:KEY:LINE:COL`), then loads it with
/// the node's local settings laid over it.
fn load_etcd_document(
    plugins: &[Arc<dyn ErasedPlugin>],
    link: &EtcdLink,
    text: &str,
    source: Option<PathBuf>,
) -> Result<LoadedConfig, crate::ConfigErrors> {
    let origin = link.settings.origin();
    config::load_str(plugins, text, &origin, link.config_dir.clone())?;
    let merged = etcd::overlay_node_local(text, &link.local_text).map_err(|error| {
        crate::ConfigErrors(vec![ConfigError {
            file: origin.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot lay this node's settings over it: {error}"),
        }])
    })?;
    let merged_origin = format!("{origin} (with this node's [server] settings)");
    let mut loaded = config::load_str(plugins, &merged, &merged_origin, link.config_dir.clone())?;
    loaded.source = source;
    Ok(loaded)
}

/// Replaces the config file in one rename, so a watcher never reads half of it.
fn write_config_file(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("center.tmp");
    std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, path))
}

fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn check_manifests(plugins: &[Arc<dyn ErasedPlugin>]) -> anyhow::Result<Vec<Manifest>> {
    let manifests: Vec<Manifest> = plugins.iter().map(|p| p.manifest()).collect();
    let mut names = HashMap::new();
    let mut mounts = HashMap::new();
    for manifest in &manifests {
        if names.insert(manifest.name, ()).is_some() {
            bail!("two plugins are named {}", manifest.name);
        }
        for mount in &manifest.mounts {
            if !mount.starts_with('/') {
                bail!(
                    "plugin {}: mount {mount:?} must start with '/'",
                    manifest.name
                );
            }
            if let Some(other) = mounts.insert(*mount, manifest.name) {
                bail!("plugins {other} and {} both mount {mount}", manifest.name);
            }
        }
    }
    Ok(manifests)
}

/// What `Running::apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Plugins whose table changed and now serve from a new generation.
    pub restarted: Vec<String>,
    /// Plugins whose table did not change; their generation keeps serving.
    pub unchanged: Vec<String>,
}

/// A serving kernel.
pub struct Running {
    host: Host,
    local_addr: SocketAddr,
    /// Serializes apply, reload and shutdown.
    state: tokio::sync::Mutex<State>,
    stop_accepting: CancellationToken,
    accept_task: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Configs plugins ask to apply (`ConfigCenter::apply`), served by `run_until_signal` or
    /// `serve_config_center`.
    center_requests: tokio::sync::Mutex<mpsc::UnboundedReceiver<crate::center::ApplyRequest>>,
    /// With `[server.etcd]`: what this node last saw there and a client to publish changes.
    /// Locked before `state`, never after.
    etcd: Option<tokio::sync::Mutex<EtcdLink>>,
    /// Changes the etcd watch saw, applied by `run_until_signal` or `serve_config_center`.
    etcd_updates: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<etcd::Update>>>,
}

struct State {
    current: Vec<Current>,
    server: ServerConfig,
    source: Option<PathBuf>,
    audit: AuditLog,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Current {
    name: &'static str,
    raw: toml::Table,
    generation: Arc<Generation>,
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.host.shared.metrics
    }

    /// As [`Kernel::load_config_file`], for a config to [`Running::apply`].
    pub fn load_config_file(&self, path: &Path) -> Result<LoadedConfig, ConfigErrors> {
        config::load_file(&self.host.plugins, path)
    }

    /// As [`Kernel::load_config_str`], for a config to [`Running::apply`].
    pub fn load_config_str(&self, text: &str, origin: &str) -> Result<LoadedConfig, ConfigErrors> {
        config::load_str(&self.host.plugins, text, origin, current_dir())
    }

    /// Applies a new config live. Only plugins whose table changed get a new generation: all of
    /// them are started first; if any fails, none is swapped in, the old generations keep
    /// serving and the error is returned. Otherwise the route table is swapped atomically and the
    /// old generations drain in the background (up to `server.drain_deadline_ms`), then get
    /// `Handler::drain`. `server.listen` and `[log]` changes need a restart.
    pub async fn apply(&self, config: LoadedConfig) -> anyhow::Result<ApplyReport> {
        self.apply_as(config, "api").await
    }

    /// Counts an apply refused before it reached [`Running::apply_as`] (which counts its own).
    fn count_refused_apply(&self) {
        self.host
            .shared
            .kernel
            .applies
            .with_label_values(&["error"])
            .inc();
    }

    /// [`Running::apply`], recording `who` in the audit log when the config changes.
    pub async fn apply_as(&self, config: LoadedConfig, who: &str) -> anyhow::Result<ApplyReport> {
        let result = self.apply_inner(config, who).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        let kernel = &self.host.shared.kernel;
        kernel.applies.with_label_values(&[label]).inc();
        if result.is_ok() {
            kernel.config_generation.inc();
            kernel.config_applied_at.set(unix_now() as i64);
        }
        if let Err(error) = &result {
            tracing::error!(
                error = format!("{error:#}"),
                "config apply failed; previous generations keep serving"
            );
        }
        result
    }

    async fn apply_inner(&self, config: LoadedConfig, who: &str) -> anyhow::Result<ApplyReport> {
        let mut state = self.state.lock().await;
        if self.host.shared.shutting_down.load(Ordering::Acquire) {
            bail!("kernel is shutting down");
        }
        let LoadedConfig {
            server,
            plugins,
            source,
            config_dir,
            text,
            ..
        } = config;
        let audit_file = server.audit_log.as_ref().map(|p| config_dir.join(p));
        let mut report = ApplyReport::default();
        let mut changed = Vec::new();
        for PluginConfig { name, raw, typed } in plugins {
            let Some(index) = state.current.iter().position(|c| c.name == name) else {
                bail!("config has plugin {name} that this kernel does not run");
            };
            if state.current[index].raw == raw {
                report.unchanged.push(name.to_owned());
            } else {
                changed.push((index, raw, typed));
            }
        }
        if report.unchanged.len() + changed.len() != state.current.len() {
            bail!("config does not cover every plugin; load it with this kernel");
        }

        let host = &self.host;
        let started =
            futures_util::future::join_all(changed.into_iter().map(|(index, raw, typed)| {
                let current = &state.current[index];
                let plugin = host
                    .plugins
                    .iter()
                    .find(|p| p.manifest().name == current.name)
                    .cloned();
                let (name, number) = (current.name, current.generation.number + 1);
                let config_dir = config_dir.clone();
                async move {
                    let result = match plugin {
                        Some(plugin) => {
                            host.start_generation(&plugin, name, number, typed, config_dir)
                                .await
                        }
                        None => Err(PluginError(format!("plugin {name} is not registered"))),
                    };
                    (index, raw, result)
                }
            }))
            .await;

        let drain_deadline = server.drain_deadline();
        let mut failures = Vec::new();
        let mut swaps = Vec::new();
        for (index, raw, result) in started {
            let name = state.current[index].name;
            match result {
                Ok(generation) => swaps.push((index, raw, generation)),
                Err(error) => failures.push(format!("plugin {name} failed to start: {error}")),
            }
        }
        if !failures.is_empty() {
            for (_, _, generation) in swaps {
                host.retire(generation, drain_deadline);
            }
            bail!("{}", failures.join("; "));
        }

        let mut old = Vec::new();
        for (index, raw, generation) in swaps {
            let entry = &mut state.current[index];
            report.restarted.push(entry.name.to_owned());
            entry.raw = raw;
            old.push(std::mem::replace(&mut entry.generation, generation));
        }
        host.install(&state.current);
        for generation in old {
            host.retire(generation, drain_deadline);
        }

        if server.etcd != state.server.etcd {
            tracing::warn!("server.etcd changed; it takes effect on restart");
        }
        if server.listen != state.server.listen {
            tracing::warn!(
                serving = %self.local_addr,
                configured = %server.listen,
                "server.listen changed; it takes effect on restart"
            );
        }
        host.shared
            .shutdown_grace_ms
            .store(server.shutdown_grace_ms, Ordering::Release);
        host.shared
            .watch_config
            .store(server.watch_config, Ordering::Release);
        state.server = server;
        if source.is_some() {
            state.source = source;
        }
        state.audit.set_file(audit_file);
        state.audit.record(who, &text, unix_now());
        report.restarted.sort();
        report.unchanged.sort();
        tracing::info!(restarted = ?report.restarted, unchanged = ?report.unchanged, "config applied");
        Ok(report)
    }

    /// Re-reads the file the running config came from and applies it (SIGHUP).
    pub async fn reload(&self) -> anyhow::Result<ApplyReport> {
        self.reload_as("SIGHUP").await
    }

    /// Applies configs that plugins send through their `ConfigCenter`, and with
    /// `[server.etcd]` every change seen in etcd, until the process shuts down.
    /// `run_until_signal` does this itself; call it when serving otherwise.
    pub async fn serve_config_center(&self) {
        let mut etcd_updates = self.etcd_updates.lock().take();
        let mut requests = self.center_requests.lock().await;
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    let result = self.apply_center_request(&request.text, &request.who).await;
                    let _ = request.reply.send(result);
                }
                Some(update) = next_etcd_update(&mut etcd_updates) => {
                    self.apply_etcd_update(update).await;
                }
            }
        }
    }

    /// One `ConfigCenter::apply`: validate; with etcd, publish the shared part there so every
    /// node gets it; rewrite the config file (when there is one) so disk and process agree;
    /// then apply it under `who`.
    async fn apply_center_request(&self, text: &str, who: &str) -> Result<(), String> {
        let source = self.state.lock().await.source.clone();
        let mut loaded = match &source {
            Some(path) => self.load_config_str(text, &path.display().to_string()),
            None => self.load_config_str(text, "config center"),
        }
        .map_err(|e| e.to_string())?;
        let mut link = match &self.etcd {
            Some(link) => Some(link.lock().await),
            None => None,
        };
        if let Some(link) = link.as_mut() {
            link.publish_shared(text).await?;
        }
        if let Some(path) = &source {
            write_config_file(path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            // Relative paths resolve against the file's folder, as on a reload.
            loaded = self.load_config_file(path).map_err(|e| e.to_string())?;
        }
        self.apply_as(loaded, who)
            .await
            .map_err(|e| format!("{e:#}"))?;
        if let Some(link) = link.as_mut() {
            link.local_text = text.to_owned();
        }
        Ok(())
    }

    /// One change the etcd watch saw: validated on its own and with this node's settings laid
    /// over it, then applied as `etcd rev N`, and written to the config file so that a restart
    /// without etcd serves it too. A document that fails is refused and logged with its line;
    /// the running config keeps serving.
    async fn apply_etcd_update(&self, update: etcd::Update) {
        let Some(link) = &self.etcd else { return };
        let mut link = link.lock().await;
        let (revision, text) = match update {
            etcd::Update::Deleted { revision } => {
                link.seen = 0;
                // The next change made here publishes again, whatever it is.
                link.last_document = None;
                link.metrics.outcome("deleted");
                tracing::warn!(
                    key = link.settings.key,
                    revision,
                    "the shared config was deleted from etcd; this node keeps serving its config"
                );
                return;
            }
            etcd::Update::Put { revision, text } => (revision, text),
        };
        link.seen = revision;
        if let Ok(text) = &text
            && link.last_document.as_deref() == Some(text.as_str())
        {
            link.metrics.outcome("unchanged");
            return;
        }
        let source = self.state.lock().await.source.clone();
        let loaded = text.and_then(|text| {
            load_etcd_document(&self.host.plugins, &link, &text, source.clone())
                .map(|loaded| (text, loaded))
                .map_err(|errors| errors.to_string())
        });
        let (document, loaded) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                link.metrics.outcome("refused");
                self.count_refused_apply();
                tracing::error!(
                    revision,
                    error,
                    "config in etcd refused; the running config keeps serving"
                );
                return;
            }
        };
        let effective = loaded.text.clone();
        if self
            .apply_as(loaded, &format!("etcd rev {revision}"))
            .await
            .is_err()
        {
            link.metrics.outcome("refused");
            return;
        }
        link.last_document = Some(document);
        link.metrics.applied(revision);
        if let Some(path) = source {
            match write_config_file(&path, &effective) {
                Ok(()) => link.local_text = effective,
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    %error,
                    "cannot write the config from etcd to the config file"
                ),
            }
        }
    }

    /// Every applied config this process remembers (the last 100), oldest first.
    pub async fn history(&self) -> Vec<crate::AuditEntry> {
        self.state.lock().await.audit.entries()
    }

    /// [`Running::reload`], recording `who` in the audit log.
    pub async fn reload_as(&self, who: &str) -> anyhow::Result<ApplyReport> {
        let source = self.state.lock().await.source.clone();
        let Some(path) = source else {
            self.count_refused_apply();
            bail!("the running config was not loaded from a file; nothing to reload");
        };
        match self.load_config_file(&path) {
            Ok(config) => {
                let Some(link) = &self.etcd else {
                    return self.apply_as(config, who).await;
                };
                // etcd is the source: the shared part goes there first, or nowhere.
                let mut link = link.lock().await;
                if let Err(error) = link.publish_shared(&config.text).await {
                    self.count_refused_apply();
                    bail!("{error}; {} is not applied", path.display());
                }
                let text = config.text.clone();
                let report = self.apply_as(config, who).await?;
                link.local_text = text;
                Ok(report)
            }
            Err(errors) => {
                self.count_refused_apply();
                Err(anyhow::Error::new(errors).context(format!("reloading {}", path.display())))
            }
        }
    }

    /// Graceful stop: `/readyz` turns 503, the listener closes, in-flight requests finish (up to
    /// `server.shutdown_grace_ms`, then their connections are cut), every plugin generation is
    /// drained, and every `PluginCtx::shutdown` token is cancelled.
    pub async fn shutdown(self) {
        let shared = &self.host.shared;
        shared.ready.store(false, Ordering::Release);
        shared.shutting_down.store(true, Ordering::Release);
        let mut state = self.state.lock().await;
        tracing::info!("shutting down");
        self.stop_accepting.cancel();
        let accept_task = self.accept_task.lock().take();
        if let Some(task) = accept_task {
            let _ = task.await;
        }
        let drain_deadline = state.server.drain_deadline();
        for entry in state.current.drain(..) {
            self.host.retire(entry.generation, drain_deadline);
        }
        self.host.install(&[]);
        self.host.retiring.close();
        self.host.retiring.wait().await;
        self.host.root.cancel();
        tracing::info!("shut down");
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; SIGHUP, and with
    /// `server.watch_config` every saved change to the config file, reloads it and logs the
    /// outcome.
    pub async fn run_until_signal(self) {
        let (source, mut applied) = {
            let state = self.state.lock().await;
            (state.source.clone(), state.audit.current_text())
        };
        if let Some(link) = &self.etcd {
            // With etcd the file may hold less than what runs (it could not be rewritten): only
            // a change of its bytes is an edit, never a difference from the shared config.
            applied = Some(link.lock().await.local_text.clone());
        }
        let mut etcd_updates = self.etcd_updates.lock().take();
        let watch_enabled = self.host.shared.watch_config.load(Ordering::Acquire);
        let mut watcher = match source.filter(|_| watch_enabled) {
            Some(path) => match crate::watch::ConfigWatcher::start(&path, applied.as_deref()) {
                Ok(watcher) => Some(watcher),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot watch the config file; SIGHUP still reloads it");
                    None
                }
            },
            None => None,
        };
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            );
            match signals {
                (Ok(mut term), Ok(mut int), Ok(mut hup)) => loop {
                    tokio::select! {
                        _ = term.recv() => { tracing::info!("SIGTERM"); break; }
                        _ = int.recv() => { tracing::info!("SIGINT"); break; }
                        _ = hup.recv() => {
                            tracing::info!("SIGHUP: reloading config");
                            // apply() logs its own failures; a reload that fails to parse is logged here.
                            if let Err(error) = self.reload().await {
                                tracing::error!(error = format!("{error:#}"), "reload failed");
                            }
                        }
                        Some(request) = async { self.center_requests.lock().await.recv().await } => {
                            let result = self.apply_center_request(&request.text, &request.who).await;
                            let _ = request.reply.send(result);
                        }
                        Some(update) = next_etcd_update(&mut etcd_updates) => {
                            self.apply_etcd_update(update).await;
                        }
                        Some(()) = crate::watch::changed(&mut watcher) => {
                            tracing::info!("config file changed: applying it");
                            if let Err(error) = self.reload_as("file change").await {
                                tracing::error!(error = format!("{error:#}"), "config file change refused; the running config keeps serving");
                            }
                        }
                    }
                },
                _ => {
                    tracing::warn!("cannot install signal handlers; waiting for ctrl-c");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        self.shutdown().await;
    }
}

/// The next change the etcd watch saw, or never when there is no etcd (for `select!`).
async fn next_etcd_update(
    updates: &mut Option<mpsc::UnboundedReceiver<etcd::Update>>,
) -> Option<etcd::Update> {
    match updates {
        Some(updates) => updates.recv().await,
        None => std::future::pending().await,
    }
}

impl Drop for Running {
    /// Dropping without `shutdown` stops accepting and cancels plugin tokens, without waiting.
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        self.host.root.cancel();
    }
}

/// Plugin lifecycle operations shared by start, apply and shutdown.
struct Host {
    /// Handed to every plugin generation.
    center: crate::ConfigCenter,
    plugins: Vec<Arc<dyn ErasedPlugin>>,
    manifests: Vec<Manifest>,
    shared: Arc<Shared>,
    /// Parent of every generation's shutdown token.
    root: CancellationToken,
    /// Background drains of retired generations.
    retiring: TaskTracker,
}

impl Host {
    async fn start_generation(
        &self,
        plugin: &Arc<dyn ErasedPlugin>,
        name: &'static str,
        number: u64,
        typed: AnyConfig,
        config_dir: PathBuf,
    ) -> Result<Arc<Generation>, PluginError> {
        let kernel = &self.shared.kernel;
        let starting = kernel.state.with_label_values(&[name, "starting"]);
        starting.inc();
        let shutdown = self.root.child_token();
        let ctx = PluginCtx {
            name,
            generation: number,
            metrics: self.shared.metrics.clone(),
            config_dir,
            shutdown: shutdown.clone(),
            config_center: self.center.clone(),
        };
        tracing::info!(
            plugin = name,
            generation = number,
            "starting plugin generation"
        );
        let result = AssertUnwindSafe(plugin.start(ctx, typed))
            .catch_unwind()
            .await;
        starting.dec();
        let handler = match result {
            Ok(Ok(handler)) => handler,
            Ok(Err(error)) => {
                shutdown.cancel();
                return Err(error);
            }
            Err(_) => {
                shutdown.cancel();
                return Err(PluginError("start panicked".to_owned()));
            }
        };
        Ok(Arc::new(Generation {
            plugin: name,
            number,
            handler,
            inflight: Inflight::default(),
            shutdown,
            activated: AtomicBool::new(false),
        }))
    }

    /// Builds a route table for these generations and swaps it in.
    fn install(&self, current: &[Current]) {
        let kernel = &self.shared.kernel;
        let mut routes = Vec::new();
        for entry in current {
            let Some(manifest) = self.manifests.iter().find(|m| m.name == entry.name) else {
                continue;
            };
            for mount in &manifest.mounts {
                let counters = StatusCounters::new(&kernel.requests, mount);
                routes.push(Route::new(mount, entry.generation.clone(), counters));
            }
        }
        self.shared.routes.store(Arc::new(RouteTable::new(routes)));
        *self.shared.live.lock() = current.iter().map(|c| c.generation.clone()).collect();
        for entry in current {
            self.activate(&entry.generation);
        }
    }

    fn activate(&self, generation: &Arc<Generation>) {
        let kernel = &self.shared.kernel;
        if generation.activated.swap(true, Ordering::AcqRel) {
            return;
        }
        kernel
            .state
            .with_label_values(&[generation.plugin, "active"])
            .inc();
        kernel
            .generation
            .with_label_values(&[generation.plugin])
            .set(generation.number as i64);
        tracing::info!(
            plugin = generation.plugin,
            generation = generation.number,
            "plugin generation active"
        );
    }

    /// Drains a generation in the background: waits for its in-flight requests (up to the
    /// deadline), calls `Handler::drain`, then cancels its shutdown token.
    fn retire(&self, generation: Arc<Generation>, deadline: Duration) {
        let shared = self.shared.clone();
        let kernel = &shared.kernel;
        if generation.activated.swap(false, Ordering::AcqRel) {
            kernel
                .state
                .with_label_values(&[generation.plugin, "active"])
                .dec();
        }
        let draining = kernel
            .state
            .with_label_values(&[generation.plugin, "draining"]);
        draining.inc();
        shared.draining.lock().push(generation.clone());
        self.retiring.spawn(async move {
            let (plugin, number) = (generation.plugin, generation.number);
            tracing::info!(
                plugin,
                generation = number,
                inflight = generation.inflight.current(),
                "draining plugin generation"
            );
            if !generation.inflight.wait_idle(deadline).await {
                tracing::warn!(
                    plugin,
                    generation = number,
                    inflight = generation.inflight.current(),
                    deadline_ms = deadline.as_millis() as u64,
                    "drain deadline passed with requests still in flight"
                );
            }
            if AssertUnwindSafe(generation.handler.drain())
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(plugin, generation = number, "drain panicked");
            }
            generation.shutdown.cancel();
            shared
                .draining
                .lock()
                .retain(|g| !Arc::ptr_eq(g, &generation));
            draining.dec();
            tracing::info!(plugin, generation = number, "plugin generation retired");
        });
    }
}

/// The kernel's own metrics.
struct KernelMetrics {
    requests: IntCounterVec,
    generation: IntGaugeVec,
    inflight: IntGaugeVec,
    applies: IntCounterVec,
    state: IntGaugeVec,
    /// Configs in force since the process started: 1 at startup, +1 per successful apply.
    config_generation: IntGauge,
    /// Unix time the config in force was applied.
    config_applied_at: IntGauge,
    runtime: RuntimeGauges,
}

/// Gauges of the tokio runtime that serves requests, read at scrape time.
struct RuntimeGauges {
    workers: IntGauge,
    alive_tasks: IntGauge,
    global_queue_depth: IntGauge,
}

impl RuntimeGauges {
    fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).and_then(|gauge| metrics.register(gauge))
        };
        Ok(RuntimeGauges {
            workers: gauge(
                "bourse_runtime_workers",
                "Worker threads of the tokio runtime",
            )?,
            alive_tasks: gauge(
                "bourse_runtime_alive_tasks",
                "Tasks alive in the tokio runtime (connections, requests, background work)",
            )?,
            global_queue_depth: gauge(
                "bourse_runtime_global_queue_depth",
                "Tasks waiting in the tokio runtime's global queue (a backlog means saturation)",
            )?,
        })
    }

    fn refresh(&self, runtime: &tokio::runtime::Handle) {
        let stats = runtime.metrics();
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.workers.set(to_i64(stats.num_workers()));
        self.alive_tasks.set(to_i64(stats.num_alive_tasks()));
        self.global_queue_depth
            .set(to_i64(stats.global_queue_depth()));
    }
}

impl KernelMetrics {
    fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        Ok(KernelMetrics {
            requests: metrics.register(IntCounterVec::new(
                Opts::new(
                    "bourse_http_requests_total",
                    "HTTP requests served, by mount prefix and status class",
                ),
                &["mount", "status"],
            )?)?,
            generation: metrics.register(IntGaugeVec::new(
                Opts::new(
                    "bourse_kernel_plugin_generation",
                    "Generation number of the plugin's active instance",
                ),
                &["plugin"],
            )?)?,
            inflight: metrics.register(IntGaugeVec::new(
                Opts::new(
                    "bourse_kernel_plugin_inflight",
                    "Requests in flight on a plugin, all generations",
                ),
                &["plugin"],
            )?)?,
            applies: metrics.register(IntCounterVec::new(
                Opts::new(
                    "bourse_kernel_config_applies_total",
                    "Live config applies, by result",
                ),
                &["result"],
            )?)?,
            state: metrics.register(IntGaugeVec::new(
                Opts::new(
                    "bourse_kernel_plugin_state",
                    "Generations of a plugin in each lifecycle state",
                ),
                &["plugin", "state"],
            )?)?,
            config_generation: metrics.register(IntGauge::new(
                "bourse_kernel_config_generation",
                "Configs in force since the process started: 1 at startup, +1 per successful apply",
            )?)?,
            config_applied_at: metrics.register(IntGauge::new(
                "bourse_kernel_config_last_applied_timestamp_seconds",
                "Unix time the config in force was applied",
            )?)?,
            runtime: RuntimeGauges::register(metrics)?,
        })
    }
}

/// State read by every connection.
struct Shared {
    routes: ArcSwap<RouteTable>,
    ready: AtomicBool,
    shutting_down: AtomicBool,
    shutdown_grace_ms: AtomicU64,
    /// `server.watch_config`, read when `run_until_signal` starts.
    watch_config: AtomicBool,
    metrics: Metrics,
    kernel: KernelMetrics,
    builtin: StatusCounters,
    unrouted: StatusCounters,
    /// Retired generations still draining (for the in-flight gauge).
    draining: parking_lot::Mutex<Vec<Arc<Generation>>>,
    /// The current generation of every plugin (including those that mount no path).
    live: parking_lot::Mutex<Vec<Arc<Generation>>>,
}

impl Shared {
    fn new(metrics: Metrics, server: &ServerConfig) -> anyhow::Result<Arc<Self>> {
        let kernel = KernelMetrics::register(&metrics).context("registering kernel metrics")?;
        let builtin = StatusCounters::new(&kernel.requests, "builtin");
        let unrouted = StatusCounters::new(&kernel.requests, "none");
        for result in ["ok", "error"] {
            kernel.applies.with_label_values(&[result]);
        }
        kernel.config_generation.set(1);
        kernel.config_applied_at.set(unix_now() as i64);
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
            live: parking_lot::Mutex::new(Vec::new()),
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
        let mut totals: HashMap<&'static str, i64> = HashMap::new();
        let live = self.live.lock().clone();
        let draining = self.draining.lock().clone();
        for generation in live.iter().chain(&draining) {
            *totals.entry(generation.plugin).or_default() += generation.inflight.current() as i64;
        }
        for (plugin, total) in totals {
            self.kernel.inflight.with_label_values(&[plugin]).set(total);
        }
    }

    async fn handle(&self, req: Request) -> Response {
        match req.uri().path() {
            "/metrics" | "/healthz" | "/readyz" => {
                let response = self.builtin(&req);
                self.builtin.record(response.status());
                return response;
            }
            _ => {}
        }
        let table = self.routes.load_full();
        let Some(route) = table.resolve(req.uri().path()) else {
            self.unrouted.record(StatusCode::NOT_FOUND);
            return error_response(StatusCode::NOT_FOUND, "not_found");
        };
        let generation = &route.generation;
        let _token = generation.inflight.enter();
        let response = match AssertUnwindSafe(generation.handler.handle(req))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(_) => {
                tracing::error!(
                    plugin = generation.plugin,
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
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
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
                let service = hyper::service::service_fn(move |mut req: Request| {
                    let shared = shared.clone();
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
