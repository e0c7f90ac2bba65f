//! The kernel's public face: [`Kernel`] (registered plugin kinds, loading config) and
//! [`Running`] (a serving kernel): start, apply a config (from the API, the file, SIGHUP, a
//! plugin's `ConfigCenter` or etcd), the serving loop that takes those changes in turn, and the
//! graceful stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::center::{ApplyRequest, Refusal};
use crate::config::{self, LoadedConfig, Registered, ServerConfig};
use crate::extension::{AnyExtensionConfig, ErasedExtension, Extension};
use crate::host::{ApplyReport, Host, Instance};
use crate::plugin::{Erased, ErasedPlugin, Plugin};
use crate::serve::{Shared, accept_loop};
use crate::time::unix_now;
use crate::{ConfigErrors, Metrics, etcd};

/// The kernel before it serves: the registered plugin kinds and extensions.
pub struct Kernel {
    pub(crate) registered: Registered,
    pub(crate) metrics: Metrics,
}

/// Registers plugin kinds and extensions; see [`Kernel::builder`].
#[derive(Default)]
pub struct KernelBuilder {
    kinds: Vec<Arc<dyn ErasedPlugin>>,
    extensions: Vec<Arc<dyn ErasedExtension>>,
    metrics: Option<Metrics>,
}

impl KernelBuilder {
    /// Registers a compiled-in plugin kind. `[plugins.<kind>]` runs an instance of it, as does
    /// any `[plugins.<name>]` with `kind = "<kind>"`.
    ///
    /// # Panics
    /// When a kind of the same name is already registered (a wiring bug).
    pub fn plugin<P: Plugin>(mut self, plugin: P) -> Self {
        let erased = Erased::new(plugin);
        let kind = erased.manifest.kind.clone();
        assert!(
            !self.kinds.iter().any(|k| k.manifest().kind == kind),
            "two plugin kinds are named {kind}"
        );
        self.kinds.push(Arc::new(erased));
        self
    }

    /// Registers an extension: its top-level table `[E::NAME]` configures one shared component
    /// that every plugin reaches through `PluginCtx::extensions`.
    ///
    /// # Panics
    /// When the name is the kernel's own (`server`, `log`, `services`, `plugins`) or taken.
    pub fn extension<E: Extension>(mut self) -> Self {
        assert!(
            !["server", "log", "services", "plugins"].contains(&E::NAME)
                && !self.extensions.iter().any(|e| e.name() == E::NAME),
            "the extension name {} is taken",
            E::NAME
        );
        self.extensions
            .push(Arc::new(crate::extension::Erased::<E>::new()));
        self
    }

    /// Uses this registry instead of a fresh one (to share it with code outside the kernel).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn build(self) -> Kernel {
        Kernel {
            registered: Registered {
                kinds: self.kinds,
                extensions: self.extensions,
            },
            metrics: self.metrics.unwrap_or_default(),
        }
    }
}

impl Kernel {
    pub fn builder() -> KernelBuilder {
        KernelBuilder::default()
    }

    /// The registry every plugin receives.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Parses and validates a config file: TOML syntax, the type of every table, mounts, and
    /// [`Plugin::prepare`]. Errors name `file:line:column` and the dotted path.
    pub fn load_config_file(&self, path: &Path) -> Result<LoadedConfig, ConfigErrors> {
        config::load_file(&self.registered, path)
    }

    /// As [`Kernel::load_config_file`], for config text; `origin` names it in errors.
    pub fn load_config_str(&self, text: &str, origin: &str) -> Result<LoadedConfig, ConfigErrors> {
        config::load_str(&self.registered, text, origin, current_dir())
    }

    /// Binds `server.listen`, starts serving (`/readyz` says 503 until plugins are up), starts
    /// every configured plugin instance, and routes to them.
    ///
    /// With `[server.etcd]`, the shared config in etcd (with this node's local settings laid
    /// over it) is what starts, and it is watched from then on; an empty key is seeded with this
    /// node's file. When etcd cannot be reached the file starts, and etcd is tried again in the
    /// background.
    pub async fn start(self, config: LoadedConfig) -> anyhow::Result<Running> {
        #[cfg(feature = "etcd")]
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
        let mut audit = AuditLog::new(
            config
                .server
                .audit_log
                .as_ref()
                .map(|p| config.config_dir.join(p)),
        );
        let (center, center_requests) = crate::ConfigCenter::new(audit.shared());
        let services =
            match bourse_services::Services::start(&config.services, self.metrics.registry()).await
            {
                Ok(services) => services,
                Err(error) => {
                    stop_accepting.cancel();
                    let _ = accept_task.await;
                    bail!("services: {error}");
                }
            };
        let mut running_extensions = std::collections::HashMap::new();
        let mut started: Vec<(
            Arc<dyn ErasedExtension>,
            Arc<dyn std::any::Any + Send + Sync>,
        )> = Vec::new();
        for (extension, (name, table)) in self.registered.extensions.iter().zip(&config.extensions)
        {
            match extension.start(table, &self.metrics).await {
                Ok(shared) => {
                    running_extensions.insert(extension.type_id(), shared.clone());
                    started.push((extension.clone(), shared));
                }
                Err(error) => {
                    let deadline = tokio::time::Instant::now() + config.server.shutdown_grace();
                    for (extension, shared) in started.iter().rev() {
                        extension.stop(shared, deadline).await;
                    }
                    services.shutdown(config.server.shutdown_grace()).await;
                    stop_accepting.cancel();
                    let _ = accept_task.await;
                    bail!("[{name}]: {error}");
                }
            }
        }
        let host = Host {
            registered: self.registered,
            extensions: crate::Extensions::new(running_extensions),
            services,
            center,
            shared: shared.clone(),
            root: CancellationToken::new(),
            retiring: TaskTracker::new(),
        };

        let LoadedConfig {
            server,
            services,
            extensions,
            plugins,
            source,
            config_dir,
            text,
            ..
        } = config;
        let mut current = Vec::new();
        if let Err(failures) = host
            .transition(&mut current, plugins, config_dir, server.drain_deadline())
            .await
        {
            stop_accepting.cancel();
            let _ = accept_task.await;
            host.retiring.close();
            host.retiring.wait().await;
            host.stop_extensions(tokio::time::Instant::now() + server.shutdown_grace())
                .await;
            host.services.shutdown(server.shutdown_grace()).await;
            host.root.cancel();
            bail!("{}", failures.join("; "));
        }
        shared.ready.store(true, Ordering::Release);
        tracing::info!(addr = %local_addr, plugins = current.len(), "kernel serving");
        #[cfg(feature = "etcd")]
        let startup_who = etcd_start.as_ref().and_then(|s| s.applied).map_or_else(
            || "startup".to_owned(),
            |rev| format!("startup from etcd rev {rev}"),
        );
        #[cfg(not(feature = "etcd"))]
        let startup_who = "startup".to_owned();
        audit.record(&startup_who, &text, unix_now());
        #[cfg(feature = "etcd")]
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
        #[cfg(not(feature = "etcd"))]
        let etcd_updates = None;
        Ok(Running {
            host,
            local_addr,
            state: tokio::sync::Mutex::new(State {
                current,
                server,
                services,
                extensions,
                source,
                audit,
            }),
            stop_accepting,
            accept_task: parking_lot::Mutex::new(Some(accept_task)),
            center_requests: tokio::sync::Mutex::new(center_requests),
            #[cfg(feature = "etcd")]
            etcd,
            etcd_updates: parking_lot::Mutex::new(etcd_updates),
        })
    }
}

/// Replaces the config file in one rename, so a watcher never reads half of it.
pub(crate) fn write_config_file(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("center.tmp");
    std::fs::write(&temp, text).and_then(|()| std::fs::rename(&temp, path))
}

pub(crate) fn current_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// A serving kernel.
pub struct Running {
    pub(crate) host: Host,
    local_addr: SocketAddr,
    /// Serializes apply, reload and shutdown.
    pub(crate) state: tokio::sync::Mutex<State>,
    stop_accepting: CancellationToken,
    accept_task: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Configs plugins ask to apply (`ConfigCenter::apply`), served by `run_until_signal` or
    /// `serve_config_center`.
    center_requests: tokio::sync::Mutex<mpsc::UnboundedReceiver<ApplyRequest>>,
    /// With `[server.etcd]`: what this node last saw there and a client to publish changes.
    /// Locked before `state`, never after.
    #[cfg(feature = "etcd")]
    pub(crate) etcd: Option<tokio::sync::Mutex<etcd::EtcdLink>>,
    /// Changes the etcd watch saw, applied by `run_until_signal` or `serve_config_center`.
    etcd_updates: parking_lot::Mutex<Option<mpsc::UnboundedReceiver<etcd::Update>>>,
}

pub(crate) struct State {
    pub(crate) current: Vec<Instance>,
    pub(crate) server: ServerConfig,
    /// `[services]` in force.
    pub(crate) services: bourse_services::ServicesConfig,
    /// Every extension's table in force.
    pub(crate) extensions: Vec<(&'static str, AnyExtensionConfig)>,
    pub(crate) source: Option<PathBuf>,
    pub(crate) audit: AuditLog,
}

impl Running {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics(&self) -> &Metrics {
        &self.host.shared.metrics
    }

    /// Every plugin instance running now.
    pub fn plugins(&self) -> crate::PluginDirectory {
        self.host.shared.directory.clone()
    }

    /// As [`Kernel::load_config_file`], for a config to [`Running::apply`].
    pub fn load_config_file(&self, path: &Path) -> Result<LoadedConfig, ConfigErrors> {
        config::load_file(self.registered(), path)
    }

    /// As [`Kernel::load_config_str`], for a config to [`Running::apply`].
    pub fn load_config_str(&self, text: &str, origin: &str) -> Result<LoadedConfig, ConfigErrors> {
        config::load_str(self.registered(), text, origin, current_dir())
    }

    fn registered(&self) -> &Registered {
        &self.host.registered
    }

    /// Applies a new config live. Instances whose table changed get a new generation, new
    /// tables start new instances, and removed tables drain and stop theirs; all new
    /// generations are started first, and if any fails, nothing changes and the error is
    /// returned. Otherwise the route table is swapped atomically and what was replaced drains in
    /// the background (up to `server.drain_deadline_ms`). `server.listen` and `[log]` changes
    /// need a restart.
    pub async fn apply(&self, config: LoadedConfig) -> anyhow::Result<ApplyReport> {
        Ok(self.apply_as(config, "api").await?)
    }

    /// Counts an apply refused before it reached [`Running::apply_as`] (which counts its own).
    pub(crate) fn count_refused_apply(&self) {
        self.host
            .shared
            .kernel
            .applies
            .with_label_values(&["error"])
            .inc();
    }

    /// [`Running::apply`], recording `who` in the audit log when the config changes.
    pub async fn apply_as(&self, config: LoadedConfig, who: &str) -> Result<ApplyReport, Refusal> {
        let result = self.apply_inner(config, who).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        let kernel = &self.host.shared.kernel;
        kernel.applies.with_label_values(&[label]).inc();
        match &result {
            Ok(_) => {
                kernel.config_generation.inc();
                kernel.config_applied_at.set(unix_now() as i64);
            }
            Err(error) => tracing::error!(
                error = %error,
                "config apply failed; previous generations keep serving"
            ),
        }
        result
    }

    async fn apply_inner(&self, config: LoadedConfig, who: &str) -> Result<ApplyReport, Refusal> {
        let mut state = self.state.lock().await;
        if self.host.shared.shutting_down.load(Ordering::Acquire) {
            return Err(Refusal::Unavailable(
                "the server is shutting down".to_owned(),
            ));
        }
        let LoadedConfig {
            server,
            services,
            extensions,
            plugins,
            source,
            config_dir,
            text,
            ..
        } = config;
        let audit_file = server.audit_log.as_ref().map(|p| config_dir.join(p));
        // The services change first, behind the handles every plugin holds: a plugin started
        // below already sees the new backends. Refused, nothing else changes.
        let services_changed = services != state.services;
        if services_changed {
            self.host
                .services
                .reconfigure(&services)
                .await
                .map_err(|error| Refusal::Start(format!("services: {error}")))?;
        }
        // Then the extensions whose table changed, each refusing the apply if it cannot take it.
        let mut reconfigured: Vec<usize> = Vec::new();
        for (index, (name, wanted)) in extensions.iter().enumerate() {
            let extension = &self.host.registered.extensions[index];
            let (_, in_force) = &state.extensions[index];
            if extension.same(in_force, wanted) {
                continue;
            }
            let shared = self.host.extension_state(index);
            if let Err(error) = extension.reconfigure(&shared, wanted).await {
                self.undo_extensions(&state, &reconfigured).await;
                if services_changed {
                    let _ = self.host.services.reconfigure(&state.services).await;
                }
                return Err(Refusal::Start(format!("[{name}]: {error}")));
            }
            reconfigured.push(index);
        }
        let report = self
            .host
            .transition(
                &mut state.current,
                plugins,
                config_dir,
                server.drain_deadline(),
            )
            .await;
        let report = match report {
            Ok(report) => report,
            Err(failures) => {
                self.undo_extensions(&state, &reconfigured).await;
                if services_changed
                    && let Err(error) = self.host.services.reconfigure(&state.services).await
                {
                    tracing::error!(%error, "services could not be put back after a refused apply");
                }
                return Err(Refusal::Start(failures.join("; ")));
            }
        };
        state.services = services;
        state.extensions = extensions;

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
        let shared = &self.host.shared;
        shared
            .shutdown_grace_ms
            .store(server.shutdown_grace_ms, Ordering::Release);
        shared
            .watch_config
            .store(server.watch_config, Ordering::Release);
        shared.limits.store(Arc::new(server.connections.clone()));
        shared
            .access
            .store(Arc::new(crate::access::Access::new(&server.access)));
        state.server = server;
        if source.is_some() {
            state.source = source;
        }
        state.audit.set_file(audit_file);
        state.audit.record(who, &text, unix_now());
        tracing::info!(
            restarted = ?report.restarted,
            added = ?report.added,
            removed = ?report.removed,
            unchanged = ?report.unchanged,
            "config applied"
        );
        Ok(report)
    }

    /// Puts the extensions at `indexes` back to the tables in force (an apply was refused).
    async fn undo_extensions(&self, state: &State, indexes: &[usize]) {
        for &index in indexes {
            let extension = &self.host.registered.extensions[index];
            let (name, in_force) = &state.extensions[index];
            let shared = self.host.extension_state(index);
            if let Err(error) = extension.reconfigure(&shared, in_force).await {
                tracing::error!(extension = name, %error, "could not be put back after a refused apply");
            }
        }
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
                    self.answer_center_request(request).await;
                }
                Some(update) = next_etcd_update(&mut etcd_updates) => {
                    self.apply_etcd_update(update).await;
                }
            }
        }
    }

    async fn answer_center_request(&self, request: ApplyRequest) {
        let result = self
            .apply_center_request(
                &request.text,
                &request.who,
                request.based_on,
                request.check_only,
            )
            .await;
        // A check is not an apply: nothing to count.
        if result.is_err() && !request.check_only {
            self.count_refused_apply_unless_counted(&result);
        }
        let _ = request.reply.send(result);
    }

    /// A refusal that never reached `apply_as` is counted here; one from `apply_as` was counted
    /// there.
    fn count_refused_apply_unless_counted(&self, result: &Result<(), Refusal>) {
        if matches!(
            result,
            Err(Refusal::Invalid(_) | Refusal::Conflict(_) | Refusal::Unavailable(_))
        ) {
            self.count_refused_apply();
        }
    }

    /// One `ConfigCenter` change: check it is based on the config in force, validate it once
    /// (and stop there for a `check_only` request); with etcd, publish the shared part there so
    /// every node gets it; rewrite the config file (when there is one) so disk and process
    /// agree; then apply it under `who`.
    async fn apply_center_request(
        &self,
        text: &str,
        who: &str,
        based_on: Option<u64>,
        check_only: bool,
    ) -> Result<(), Refusal> {
        let (source, in_force) = {
            let state = self.state.lock().await;
            (state.source.clone(), state.audit.last_seq())
        };
        if let Some(seq) = based_on
            && in_force != Some(seq)
        {
            return Err(Refusal::Conflict(
                "the config changed while this change was made; nothing was applied, so \
                 look again and redo it"
                    .to_owned(),
            ));
        }
        // Relative paths resolve against the file's folder, as on a reload.
        let (origin, dir) = match &source {
            Some(path) => (path.display().to_string(), config::folder_of(path)),
            None => ("config center".to_owned(), current_dir()),
        };
        let mut loaded =
            config::load_str(self.registered(), text, &origin, dir).map_err(Refusal::Invalid)?;
        if check_only {
            return Ok(());
        }
        loaded.source = source.clone();
        #[cfg(feature = "etcd")]
        let mut link = match &self.etcd {
            Some(link) => Some(link.lock().await),
            None => None,
        };
        #[cfg(feature = "etcd")]
        if let Some(link) = link.as_mut() {
            link.publish_shared(text).await.map_err(|error| {
                if error.contains("changed") {
                    Refusal::Conflict(error)
                } else {
                    Refusal::Unavailable(error)
                }
            })?;
        }
        if let Some(path) = &source {
            write_config_file(path, text).map_err(|e| {
                Refusal::Unavailable(format!("cannot write {}: {e}", path.display()))
            })?;
        }
        self.apply_as(loaded, who).await?;
        #[cfg(feature = "etcd")]
        if let Some(link) = link.as_mut() {
            link.local_text = text.to_owned();
        }
        Ok(())
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
        let config = match self.load_config_file(&path) {
            Ok(config) => config,
            Err(errors) => {
                self.count_refused_apply();
                return Err(
                    anyhow::Error::new(errors).context(format!("reloading {}", path.display()))
                );
            }
        };
        #[cfg(feature = "etcd")]
        if let Some(link) = &self.etcd {
            // etcd is the source: the shared part goes there first, or nowhere.
            let mut link = link.lock().await;
            if let Err(error) = link.publish_shared(&config.text).await {
                self.count_refused_apply();
                bail!("{error}; {} is not applied", path.display());
            }
            let text = config.text.clone();
            let report = self.apply_as(config, who).await?;
            link.local_text = text;
            return Ok(report);
        }
        Ok(self.apply_as(config, who).await?)
    }

    /// Graceful stop, all within `server.shutdown_grace_ms`: `/readyz` turns 503, the listener
    /// closes, in-flight requests finish (their connections are cut at the deadline), then every
    /// plugin generation drains and every instance stops with what is left of the grace period
    /// (each is cut off at the deadline, however much it still had queued), and every token is
    /// cancelled.
    pub async fn shutdown(self) {
        let shared = &self.host.shared;
        shared.ready.store(false, Ordering::Release);
        shared.shutting_down.store(true, Ordering::Release);
        let mut state = self.state.lock().await;
        let deadline = tokio::time::Instant::now() + state.server.shutdown_grace();
        tracing::info!("shutting down");
        self.stop_accepting.cancel();
        let accept_task = self.accept_task.lock().take();
        if let Some(task) = accept_task {
            let _ = task.await;
        }
        let instances = std::mem::take(&mut state.current);
        self.host.install(&[]);
        for instance in instances {
            self.host.remove(instance, deadline);
        }
        self.host.retiring.close();
        // Every task above stops itself by the deadline; the margin only absorbs scheduling.
        let margin = std::time::Duration::from_millis(250);
        if tokio::time::timeout_at(deadline + margin, self.host.retiring.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace passed with plugins still stopping; leaving them");
        }
        // Plugins flushed into the extensions and services as they stopped; those flush last.
        self.host.stop_extensions(deadline).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()) + margin;
        self.host.services.shutdown(left).await;
        self.host.root.cancel();
        tracing::info!("shut down");
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully; SIGHUP, and with
    /// `server.watch_config` every saved change to the config file, reloads it and logs the
    /// outcome.
    pub async fn run_until_signal(self) {
        let (source, applied) = {
            let state = self.state.lock().await;
            (state.source.clone(), state.audit.current_text())
        };
        #[cfg(feature = "etcd")]
        let applied = match &self.etcd {
            // With etcd the file may hold less than what runs (it could not be rewritten): only
            // a change of its bytes is an edit, never a difference from the shared config.
            Some(link) => Some(link.lock().await.local_text.clone()),
            None => applied,
        };
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
                            self.answer_center_request(request).await;
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

#[cfg(not(feature = "etcd"))]
impl Running {
    /// Without etcd support no watch runs, so there is never an update to apply.
    async fn apply_etcd_update(&self, _update: etcd::Update) {}
}

impl Drop for Running {
    /// Dropping without `shutdown` stops accepting and cancels plugin tokens, without waiting.
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        self.host.root.cancel();
    }
}
