//! The wasm host as the kernel's plugin kind `wasm`: one instance owns the registry of signed
//! plugins and its watched folder, answers the site plugins under its mount
//! (`<mount>/<site>/…`), shows every plugin in the admin (state, version, signer, calls,
//! errors, p99; install from a file, forced or not, activate, roll back, remove), and lends the registry to the exchange's
//! auctions through a [`HooksSlot`] the binary shares between the two kinds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use askama::Template;
use bourse_kernel::admin::{AdminReply, AdminRequest, AdminSection, Alert, AlertLevel, NavLink};
use bourse_kernel::{
    ConfigIssue, Handler, Manifest, Mount, MountedAt, Plugin, PluginCtx, PluginError, Request,
    Response, error_response, full, read_body,
};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::host::InMemoryHost;
use crate::metrics::WasmMetrics;
use crate::registry::{PluginState, Registry};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::signing::{PublicKey, TrustedKeys};
use crate::watch::{PluginDirWatcher, WatchTiming};

/// Where the running host's registry is, for the exchange's hooks: empty while no `wasm`
/// instance runs. The binary makes one and hands it to both kinds.
pub type HooksSlot = Arc<ArcSwapOption<Registry>>;

/// The plugin kind `wasm`.
pub struct WasmPlugin {
    slot: HooksSlot,
}

impl WasmPlugin {
    /// The kind, publishing its registry into `slot` while an instance runs.
    pub fn new(slot: HooksSlot) -> Self {
        WasmPlugin { slot }
    }
}

/// `[plugins.<name>]` of kind `wasm`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// The watched folder of `NAME.plugin` artifacts, relative to the config file's folder.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Keys whose signatures are accepted, by the name the admin shows as the signer: an
    /// ed25519 public key as base64 or SPKI PEM.
    #[serde(default)]
    pub trusted_keys: BTreeMap<String, String>,
    /// How plugins run; read when the instance starts.
    #[serde(default)]
    pub runtime: RuntimeSettings,
    /// Largest request body a site plugin is given.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_dir() -> PathBuf {
    PathBuf::from("plugins")
}

fn default_max_body() -> usize {
    1024 * 1024
}

/// `[plugins.<name>.runtime]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Ready instances kept per active plugin version.
    pub pool_size: usize,
    /// Failures within `failure_window_secs` that quarantine a plugin.
    pub quarantine_after: u32,
    pub failure_window_secs: u64,
    /// How long a replaced version may take to finish its calls.
    pub drain_timeout_ms: u64,
    /// What each site plugin may keep in its key/value store.
    pub kv_bytes_per_plugin: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let runtime = RuntimeConfig::default();
        RuntimeSettings {
            pool_size: runtime.pool_size,
            quarantine_after: runtime.quarantine_after,
            failure_window_secs: runtime.failure_window.as_secs(),
            drain_timeout_ms: runtime.drain_timeout.as_millis() as u64,
            kv_bytes_per_plugin: 4 * 1024 * 1024,
        }
    }
}

impl RuntimeSettings {
    fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            pool_size: self.pool_size,
            quarantine_after: self.quarantine_after,
            failure_window: Duration::from_secs(self.failure_window_secs),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            ..RuntimeConfig::default()
        }
    }
}

/// The config, checked, with its keys parsed.
pub struct PreparedWasm {
    config: WasmConfig,
    trusted: TrustedKeys,
}

/// What lives as long as the instance: the registry and the folder it follows.
pub struct WasmState {
    registry: Arc<Registry>,
    runtime: RuntimeSettings,
    watcher: Mutex<Option<(PathBuf, PluginDirWatcher)>>,
}

impl WasmState {
    /// The registry (for tests and the binary's wiring).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Follows `dir`, unless it already does.
    fn follow(&self, dir: &Path) -> Result<(), PluginError> {
        let mut watcher = self.watcher.lock();
        if watcher.as_ref().is_some_and(|(watched, _)| watched == dir) {
            return Ok(());
        }
        let followed = PluginDirWatcher::follow(dir, WatchTiming::default(), self.registry.clone())
            .map_err(|e| PluginError(format!("dir: cannot watch {}: {e}", dir.display())))?;
        *watcher = Some((dir.to_owned(), followed));
        Ok(())
    }
}

impl Plugin for WasmPlugin {
    type Config = WasmConfig;
    type Prepared = PreparedWasm;
    type State = WasmState;

    fn manifest(&self) -> Manifest {
        Manifest {
            kind: "wasm".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "Signed WebAssembly plugins: exchange hooks and small sites, hot-swapped"
                .to_owned(),
            mount: Mount::paths(["/ext/"]),
        }
    }

    fn prepare(&self, config: WasmConfig) -> Result<PreparedWasm, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut trusted = TrustedKeys::new();
        for (name, text) in &config.trusted_keys {
            match PublicKey::parse(text) {
                Ok(key) => trusted = trusted.with(name.clone(), key),
                Err(e) => issues.push(ConfigIssue::new(
                    format!("trusted_keys.{name}"),
                    format!("not an ed25519 public key (base64 or PEM): {e}"),
                )),
            }
        }
        let runtime = &config.runtime;
        for (path, zero) in [
            ("runtime.pool_size", runtime.pool_size == 0),
            ("runtime.quarantine_after", runtime.quarantine_after == 0),
            (
                "runtime.failure_window_secs",
                runtime.failure_window_secs == 0,
            ),
        ] {
            if zero {
                issues.push(ConfigIssue::new(path, "must be at least 1"));
            }
        }
        if runtime.pool_size > 256 {
            issues.push(ConfigIssue::new(
                "runtime.pool_size",
                "at most 256 instances per plugin",
            ));
        }
        if config.dir.as_os_str().is_empty() {
            issues.push(ConfigIssue::new("dir", "must name a folder"));
        }
        if issues.is_empty() {
            Ok(PreparedWasm { config, trusted })
        } else {
            Err(issues)
        }
    }

    async fn init(
        &self,
        ctx: &PluginCtx,
        prepared: &PreparedWasm,
    ) -> Result<WasmState, PluginError> {
        if self.slot.load().is_some() {
            return Err(PluginError(
                "another `wasm` instance already hosts this process's plugins; keep one".into(),
            ));
        }
        let settings = prepared.config.runtime.clone();
        let host = Arc::new(InMemoryHost::new(settings.kv_bytes_per_plugin));
        let runtime = Runtime::with_host(settings.runtime_config(), host)
            .map_err(|e| PluginError(e.to_string()))?;
        let metrics = WasmMetrics::in_kernel(&ctx.metrics)
            .map_err(|e| PluginError(format!("metrics: {e}")))?;
        let registry = Arc::new(Registry::new(runtime, prepared.trusted.clone(), metrics));
        let state = WasmState {
            registry: registry.clone(),
            runtime: settings,
            watcher: Mutex::new(None),
        };
        // The folder is scanned at once, on the watcher's thread; later changes follow.
        state.follow(&ctx.config_dir.join(&prepared.config.dir))?;
        self.slot.store(Some(registry));
        Ok(state)
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        state: Arc<WasmState>,
        prepared: PreparedWasm,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        if prepared.config.runtime != state.runtime {
            return Err(PluginError(
                "runtime: these settings apply when the instance starts; remove the instance and add it again, or restart bourse".into(),
            ));
        }
        let name = ctx.name.to_string();
        Ok(Arc::new(WasmHandler {
            dir: ctx.config_dir.join(&prepared.config.dir),
            trusted: prepared.trusted,
            max_body_bytes: prepared.config.max_body_bytes,
            state,
            name,
        }))
    }

    async fn stop(&self, state: Arc<WasmState>, _deadline: tokio::time::Instant) {
        state.watcher.lock().take();
        if let Some(registry) = self.slot.load().as_ref()
            && Arc::ptr_eq(registry, &state.registry)
        {
            self.slot.store(None);
        }
    }
}

/// One generation: the folder and keys in force, the site routes and the admin pages.
struct WasmHandler {
    dir: PathBuf,
    trusted: TrustedKeys,
    max_body_bytes: usize,
    state: Arc<WasmState>,
    name: String,
}

impl Handler for WasmHandler {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(self.serve_site(req))
    }

    fn activate(&self) {
        self.state.registry.set_trusted_keys(self.trusted.clone());
        if let Err(e) = self.state.follow(&self.dir) {
            tracing::warn!(plugin = %self.name, error = %e.0, "plugin folder not followed");
        }
    }

    fn admin(&self) -> Option<&dyn AdminSection> {
        Some(self)
    }
}

impl WasmHandler {
    /// `<mount>/<site>/<rest>` answered by site plugin `<site>` with the path `/<rest>`.
    async fn serve_site(&self, req: Request) -> Response {
        let prefix = req
            .extensions()
            .get::<MountedAt>()
            .map(|m| m.0.trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let path = req.uri().path();
        let below = path.strip_prefix(prefix.as_str()).unwrap_or(path);
        let below = below.trim_start_matches('/');
        let (site, rest) = below.split_once('/').unwrap_or((below, ""));
        let Some(plugin) = self.state.registry.site(site) else {
            return error_response(http::StatusCode::NOT_FOUND, "no_such_site");
        };
        let (site, rest) = (site.to_owned(), format!("/{rest}"));
        let (mut parts, body) = req.into_parts();
        let body = match read_body(&parts.headers, body, self.max_body_bytes).await {
            Ok(body) => body,
            Err(e) => return error_response(e.status(), e.code()),
        };
        let target = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest,
        };
        match target.parse() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return error_response(http::StatusCode::BAD_REQUEST, "bad_path"),
        }
        let request = crate::plugin::site_request(&parts, body.to_vec());
        match plugin.handle_blocking(request).await {
            Ok(response) => response.map(full),
            Err(e) => {
                tracing::debug!(%site, error = %e, "site plugin failed");
                error_response(http::StatusCode::BAD_GATEWAY, "plugin_failed")
            }
        }
    }
}

/// One plugin's row in the admin.
struct Row {
    name: String,
    state: &'static str,
    version: String,
    interface: String,
    signer: String,
    module: String,
    standby: String,
    reason: String,
    calls: u64,
    errors: u64,
    p99: String,
    source: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>Plugins</h1>
<p class="muted">Signed WebAssembly plugins from <code>{{ dir }}</code>. Drop a signed <code>NAME.plugin</code> there (or run <code>bourse plugin install</code>) to add or upgrade one; delete it to remove it. Counts since this node started.</p>
{% if let Some(notice) = notice %}<p class="notice">{{ notice }}</p>{% endif %}
<div class="scroll">
<table class="list stack plugins">
  <thead><tr><th>Plugin</th><th>State</th><th>Version</th><th>Interface</th><th>Signer</th><th>Calls</th><th>Errors</th><th>p99</th><th>Standby</th><th class="actions">Actions</th></tr></thead>
  <tbody>
  {% for p in rows %}
    <tr data-plugin="{{ p.name }}">
      <td data-label="Plugin" class="key">{{ p.name }}<br><small title="module SHA-256">{{ p.module }}</small>{% if !p.source.is_empty() %}<br><small>{{ p.source }}</small>{% endif %}</td>
      <td data-label="State" class="state-{{ p.state }}">{{ p.state }}{% if !p.reason.is_empty() %}<br><small>{{ p.reason }}</small>{% endif %}</td>
      <td data-label="Version">{{ p.version }}</td>
      <td data-label="Interface">{{ p.interface }}</td>
      <td data-label="Signer">{{ p.signer }}</td>
      <td data-label="Calls">{{ p.calls }}</td>
      <td data-label="Errors">{{ p.errors }}</td>
      <td data-label="p99">{{ p.p99 }}</td>
      <td data-label="Standby">{{ p.standby }}</td>
      <td data-label="Actions" class="actions">
        {% if p.state == "quarantined" %}<form method="post" action="{{ base }}/activate" class="inline"><input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="name" value="{{ p.name }}"><button type="submit">Activate</button></form>{% endif %}
        {% if !p.standby.is_empty() %}<form method="post" action="{{ base }}/rollback" class="inline"><input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="name" value="{{ p.name }}"><button type="submit">Roll back to {{ p.standby }}</button></form>{% endif %}
        <form method="post" action="{{ base }}/remove" class="inline"><input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="name" value="{{ p.name }}"><button type="submit">Remove</button></form>
      </td>
    </tr>
  {% else %}
    <tr><td colspan="10">No plugin is installed.</td></tr>
  {% endfor %}
  </tbody>
</table>
</div>
<h2>Install from a file</h2>
<p class="muted">An artifact already on this server (copied there by the deploy), verified like any other. Force installs a version older than the running one (a deliberate downgrade; a roll back to the standby needs no force).</p>
<form method="post" action="{{ base }}/install" class="stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label>Path of the <code>.plugin</code> file <input name="path" required placeholder="/srv/bourse/releases/floor-rule-1.2.0.plugin"></label>
  <label><input type="checkbox" name="force" value="on"> Force (allow an older version)</label>
  <button type="submit">Install</button>
</form>
<h2>Lifecycle</h2>
<div class="scroll">
<table class="list stack lifecycle">
  <thead><tr><th>When (UTC)</th><th>Plugin</th><th>Version</th><th>State</th><th>Detail</th></tr></thead>
  <tbody>
  {% for e in events %}
    <tr><td data-label="When">{{ e.0 }}</td><td data-label="Plugin">{{ e.1 }}</td><td data-label="Version">{{ e.2 }}</td><td data-label="State" class="state-{{ e.3 }}">{{ e.3 }}</td><td data-label="Detail">{{ e.4 }}</td></tr>
  {% else %}
    <tr><td colspan="5">Nothing happened yet.</td></tr>
  {% endfor %}
  </tbody>
</table>
</div>"#
)]
struct PluginsPage<'a> {
    dir: String,
    notice: Option<String>,
    rows: Vec<Row>,
    events: Vec<(String, String, String, &'static str, String)>,
    base: &'a str,
    csrf: &'a str,
}

/// Newest lifecycle events shown.
const EVENTS_SHOWN: usize = 50;

fn p99_text(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s.is_infinite() => "over 1 s".into(),
        Some(s) if s < 1e-3 => format!("≤ {:.0} µs", s * 1e6),
        Some(s) => format!("≤ {:.1} ms", s * 1e3),
    }
}

impl WasmHandler {
    fn page(&self, req: &AdminRequest, notice: Option<String>) -> AdminReply {
        let rows = self
            .state
            .registry
            .status()
            .into_iter()
            .map(|s| Row {
                state: s.state.as_str(),
                version: s.version.to_string(),
                interface: s.interface,
                signer: s.signer,
                module: s.module_sha256.chars().take(12).collect(),
                standby: s.standby.map(|v| v.to_string()).unwrap_or_default(),
                reason: s.reason.unwrap_or_default(),
                calls: s.calls.calls,
                errors: s.calls.errors,
                p99: p99_text(s.calls.p99_seconds),
                source: s
                    .source
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                name: s.name,
            })
            .collect();
        let events = self
            .state
            .registry
            .events()
            .into_iter()
            .rev()
            .take(EVENTS_SHOWN)
            .map(|e| {
                let at =
                    e.at.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                (
                    bourse_kernel::utc_datetime(at),
                    e.subject,
                    e.version.map(|v| v.to_string()).unwrap_or_default(),
                    e.state.as_str(),
                    e.detail,
                )
            })
            .collect();
        let page = PluginsPage {
            dir: self.dir.display().to_string(),
            notice,
            rows,
            events,
            base: &req.base,
            csrf: &req.csrf,
        };
        match page.render() {
            Ok(body) => AdminReply::page("Plugins", "", body),
            Err(e) => AdminReply::text(http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    /// Installs an artifact from a path on this server: only a `.plugin` file, read within the
    /// artifact's size cap and verified like the folder's (a refusal leaves everything as it was).
    async fn install(&self, req: &AdminRequest) -> AdminReply {
        let path = PathBuf::from(req.form.text("path").trim());
        let force = req.form.checked("force");
        if path.extension().and_then(|e| e.to_str()) != Some("plugin") || !path.is_absolute() {
            return self
                .page(
                    req,
                    Some("path: give the absolute path of a `.plugin` file".into()),
                )
                .with_status(http::StatusCode::UNPROCESSABLE_ENTITY);
        }
        let registry = self.state.registry.clone();
        let source = path.clone();
        let outcome = tokio::task::spawn_blocking(move || registry.install_file(&source, force))
            .await
            .map_err(|e| e.to_string())
            .and_then(|installed| installed.map_err(|refusal| refusal.to_string()));
        tracing::info!(user = %req.user, path = %path.display(), force, ok = outcome.is_ok(), "plugin installed from the admin");
        match outcome {
            Ok(installed) => {
                let replaced = installed
                    .replaced
                    .map(|v| format!(", replacing {v} (now on standby)"))
                    .unwrap_or_default();
                self.page(
                    req,
                    Some(format!(
                        "Installed {} {}{replaced}.",
                        installed.name, installed.version
                    )),
                )
            }
            Err(refused) => self
                .page(req, Some(format!("Refused: {refused}")))
                .with_status(http::StatusCode::UNPROCESSABLE_ENTITY),
        }
    }

    /// Activates, rolls back or removes a plugin (on a blocking thread: a change compiles,
    /// warms or drains), then shows the list with what happened.
    async fn act(&self, req: &AdminRequest, action: &'static str) -> AdminReply {
        let name = req.form.text("name");
        let registry = self.state.registry.clone();
        let plugin = name.clone();
        let outcome = tokio::task::spawn_blocking(move || match action {
            "activate" => registry
                .activate(&plugin)
                .map(|()| format!("Activated {plugin}.")),
            "rollback" => registry
                .rollback(&plugin)
                .map(|version| format!("Rolled {plugin} back to {version}.")),
            _ => registry.remove(&plugin).map(|()| {
                format!("Removed {plugin}. Delete its file from the folder too, or the next start installs it again.")
            }),
        })
        .await
        .unwrap_or_else(|e| Err(crate::registry::LifecycleError::Unknown(e.to_string())));
        tracing::info!(user = %req.user, action, plugin = %name, ok = outcome.is_ok(), "plugin lifecycle from the admin");
        match outcome {
            Ok(done) => self.page(req, Some(done)),
            Err(e) => self
                .page(req, Some(e.to_string()))
                .with_status(http::StatusCode::UNPROCESSABLE_ENTITY),
        }
    }
}

impl AdminSection for WasmHandler {
    fn title(&self) -> String {
        "Plugins".into()
    }

    fn nav(&self) -> Vec<NavLink> {
        vec![NavLink::new("Plugins", "")]
    }

    fn alerts(&self, base: &str) -> Vec<Alert> {
        self.state
            .registry
            .status()
            .into_iter()
            .filter(|s| s.state == PluginState::Quarantined)
            .map(|s| Alert {
                level: AlertLevel::Degraded,
                text: format!(
                    "plugin {} {} is quarantined: {}",
                    s.name,
                    s.version,
                    s.reason.unwrap_or_else(|| "repeated failures".into())
                ),
                href: base.to_owned(),
            })
            .collect()
    }

    fn serve<'a>(&'a self, req: AdminRequest) -> BoxFuture<'a, AdminReply> {
        Box::pin(async move {
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/") => self.page(&req, None),
                ("POST", "/install") => self.install(&req).await,
                ("POST", "/activate") => self.act(&req, "activate").await,
                ("POST", "/rollback") => self.act(&req, "rollback").await,
                ("POST", "/remove") => self.act(&req, "remove").await,
                _ => AdminReply::text(http::StatusCode::NOT_FOUND, "no such page"),
            }
        })
    }
}
