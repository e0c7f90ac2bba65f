//! Config loading: TOML syntax, per-plugin typed tables, semantic validation, and every error
//! mapped back to `file:line:column` through the document's spans.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::Mount;
use crate::access::AccessConfig;
use crate::etcd::EtcdConfig;
use crate::extension::{AnyExtensionConfig, ErasedExtension};
use crate::limits::ConnectionsConfig;
use crate::plugin::{AnyConfig, ErasedPlugin, ParseOutcome, PathSegment, segments};
use crate::routes::MountPoint;

/// `[server]`: where to listen and how long to wait for in-flight work.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Deadline for in-flight requests at SIGTERM/SIGINT.
    pub shutdown_grace_ms: u64,
    /// Deadline for a retired plugin generation to finish its in-flight requests.
    pub drain_deadline_ms: u64,
    /// Watch the config file and apply every saved change (as SIGHUP would).
    pub watch_config: bool,
    /// Append every applied config (who, when, diff, full text) to this JSON-lines file,
    /// relative to the config file; `bourse config history` and `rollback` read it.
    pub audit_log: Option<PathBuf>,
    /// `[server.etcd]`: share the config through etcd (see `etcd.rs`). Absent: no etcd.
    pub etcd: Option<EtcdConfig>,
    /// `[server.connections]`: connection and request limits and timeouts.
    pub connections: ConnectionsConfig,
    /// `[server.access]`: trusted proxies and who may read `/metrics`.
    pub access: AccessConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_ms: 10_000,
            drain_deadline_ms: 5_000,
            watch_config: true,
            audit_log: None,
            etcd: None,
            connections: ConnectionsConfig::default(),
            access: AccessConfig::default(),
        }
    }
}

impl ServerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn drain_deadline(&self) -> Duration {
        Duration::from_millis(self.drain_deadline_ms)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// `[log]`: format and level (an `EnvFilter` directive such as `info` or `bourse=debug,info`),
/// and `[log.otlp]`, which turns on OTLP export of spans (read at start only).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    pub otlp: Option<crate::OtlpConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: "info".to_owned(),
            otlp: None,
        }
    }
}

/// A parsed and validated config, ready for `Kernel::start` or `Running::apply`.
pub struct LoadedConfig {
    pub server: ServerConfig,
    pub log: LogConfig,
    /// `[services]`: the shared services' backends (Redis or in process) and tuning.
    pub services: bourse_services::ServicesConfig,
    /// Every registered extension's table, typed (in registration order).
    pub(crate) extensions: Vec<(&'static str, AnyExtensionConfig)>,
    pub(crate) plugins: Vec<PluginConfig>,
    pub(crate) source: Option<PathBuf>,
    pub(crate) config_dir: PathBuf,
    /// The text it was parsed from, for the audit log.
    pub(crate) text: String,
}

impl fmt::Debug for LoadedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedConfig")
            .field("server", &self.server)
            .field("log", &self.log)
            .field(
                "plugins",
                &self.plugins.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("source", &self.source)
            .finish()
    }
}

impl LoadedConfig {
    /// The file this config was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The raw `[plugins.<name>]` table, when the config runs that instance.
    pub fn plugin_table(&self, name: &str) -> Option<&toml::Table> {
        self.plugins
            .iter()
            .find(|p| &*p.name == name)
            .map(|p| &p.raw)
    }

    /// The names of the plugin instances this config runs.
    pub fn plugin_names(&self) -> Vec<&str> {
        self.plugins.iter().map(|p| &*p.name).collect()
    }
}

/// One `[plugins.<name>]` table, checked and prepared.
pub(crate) struct PluginConfig {
    pub(crate) name: Arc<str>,
    pub(crate) kind: Arc<dyn ErasedPlugin>,
    /// The table as written (with `kind` and `mount`), compared on apply to decide whether to
    /// restart.
    pub(crate) raw: toml::Table,
    pub(crate) mount: Mount,
    /// Taken when the instance starts with it.
    pub(crate) typed: Option<AnyConfig>,
}

/// The keys of a plugin table that the kernel reads itself; the plugin never sees them.
const KERNEL_KEYS: [&str; 2] = ["kind", "mount"];

/// Longest plugin instance name: it appears in URLs (`/admin/<name>/`) and metric labels.
const MAX_NAME_LEN: usize = 64;

fn instance_name_problem(name: &str) -> Option<String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    (!valid).then(|| {
        format!(
            "a plugin name starts with a-z and holds a-z, 0-9, `-` and `_` only, at most \
             {MAX_NAME_LEN} characters; `{name}` does not"
        )
    })
}

/// One config problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path such as `plugins.exchange.bidders[2].endpoint`; empty for syntax errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config; Display prints one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What a config is checked against: the registered plugin kinds and extensions.
pub(crate) struct Registered {
    pub(crate) kinds: Vec<Arc<dyn ErasedPlugin>>,
    pub(crate) extensions: Vec<Arc<dyn ErasedExtension>>,
}

pub(crate) fn load_file(
    registered: &Registered,
    path: &Path,
) -> Result<LoadedConfig, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors(vec![ConfigError {
            file: origin.clone(),
            line: 0,
            column: 0,
            path: String::new(),
            message: format!("cannot read config file: {error}"),
        }])
    })?;
    let mut config = load_str(registered, &text, &origin, folder_of(path))?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

/// The folder relative paths in a config file resolve against.
pub(crate) fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(crate) fn load_str(
    registered: &Registered,
    text: &str,
    origin: &str,
    config_dir: PathBuf,
) -> Result<LoadedConfig, ConfigErrors> {
    let syntax_error = |span: Option<std::ops::Range<usize>>, message: &str| {
        let (line, column) = line_col(text, span.map_or(0, |s| s.start));
        ConfigErrors(vec![ConfigError {
            file: origin.to_owned(),
            line,
            column,
            path: String::new(),
            message: message.trim().to_owned(),
        }])
    };
    // `toml` first: it reports every syntax error, while toml_edit 0.23 can panic recovering
    // from some (`==\n[.`, found by the fuzzer in fuzz/); toml_edit then only sees valid TOML.
    let root: toml::Table =
        toml::from_str(text).map_err(|error| syntax_error(error.span(), error.message()))?;
    let doc = toml_edit::Document::parse(text)
        .map_err(|error| syntax_error(error.span(), error.message()))?;
    let mut errors = Errors {
        text,
        doc: &doc,
        origin,
        list: Vec::new(),
    };

    let plugins = &registered.kinds;
    let mut server = ServerConfig::default();
    let mut log = LogConfig::default();
    let mut services = bourse_services::ServicesConfig::default();
    let mut extension_tables: HashMap<String, toml::Value> = HashMap::new();
    let mut plugin_tables = toml::Table::new();
    for (key, value) in root {
        match key.as_str() {
            "server" => {
                if let Some(parsed) = errors.typed::<ServerConfig>("server", value) {
                    for (path, message) in parsed.etcd.iter().flat_map(EtcdConfig::problems) {
                        errors.push(&path_of(&format!("server.etcd.{path}")), message);
                    }
                    for (path, message) in parsed.connections.problems() {
                        errors.push(&path_of(&format!("server.connections.{path}")), message);
                    }
                    for (path, message) in parsed.access.problems() {
                        errors.push(&path_of(&format!("server.access.{path}")), message);
                    }
                    if parsed.etcd.is_some() && !cfg!(feature = "etcd") {
                        errors.push(&path_of("server.etcd"), crate::etcd::NOT_BUILT_IN);
                    }
                    server = parsed;
                }
            }
            "log" => {
                if let Some(parsed) = errors.typed::<LogConfig>("log", value) {
                    if let Err(error) = tracing_subscriber::EnvFilter::try_new(&parsed.level) {
                        errors.push(&path_of("log.level"), format!("invalid log level: {error}"));
                    }
                    for (field, message) in parsed.otlp.iter().flat_map(|o| o.problems()) {
                        errors.push(&path_of(&format!("log.otlp.{field}")), message);
                    }
                    log = parsed;
                }
            }
            "services" => {
                if let Some(parsed) =
                    errors.typed::<bourse_services::ServicesConfig>("services", value)
                {
                    for (path, message) in parsed.problems() {
                        errors.push(&path_of(&format!("services.{path}")), message);
                    }
                    services = parsed;
                }
            }
            "plugins" => match value {
                toml::Value::Table(table) => plugin_tables = table,
                other => errors.push(
                    &path_of("plugins"),
                    format!(
                        "expected a table of plugin tables, found {}",
                        other.type_str()
                    ),
                ),
            },
            other if registered.extensions.iter().any(|e| e.name() == other) => {
                extension_tables.insert(other.to_owned(), value);
            }
            other => {
                let mut known = vec!["`server`", "`log`", "`services`", "`plugins`"]
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>();
                known.extend(
                    registered
                        .extensions
                        .iter()
                        .map(|e| format!("`{}`", e.name())),
                );
                errors.push(
                    &[PathSegment::Key(other.to_owned())],
                    format!(
                        "unknown key `{other}`; expected one of {}",
                        known.join(", ")
                    ),
                )
            }
        }
    }

    let mut extensions = Vec::with_capacity(registered.extensions.len());
    for extension in &registered.extensions {
        let name = extension.name();
        let base = vec![PathSegment::Key(name.to_owned())];
        match extension.parse(extension_tables.remove(name)) {
            Ok(config) => {
                for issue in extension.issues(&config) {
                    errors.push(
                        &[base.clone(), parse_path(&issue.path)].concat(),
                        issue.message,
                    );
                }
                extensions.push((name, config));
            }
            Err((path, message)) => errors.push(&[base, path].concat(), message),
        }
    }

    let mut loaded = Vec::with_capacity(plugin_tables.len());
    let mut mounted: HashMap<MountPoint, String> = HashMap::new();
    for (name, value) in plugin_tables {
        let base = vec![
            PathSegment::Key("plugins".into()),
            PathSegment::Key(name.clone()),
        ];
        let at = |field: &str| -> Vec<PathSegment> { [base.clone(), parse_path(field)].concat() };
        if let Some(problem) = instance_name_problem(&name) {
            errors.push(&base, problem);
            continue;
        }
        let raw = match value {
            toml::Value::Table(table) => table,
            other => {
                errors.push(
                    &base,
                    format!("expected a table, found {}", other.type_str()),
                );
                continue;
            }
        };
        let kind_name = match raw.get("kind") {
            None => name.clone(),
            Some(toml::Value::String(kind)) => kind.clone(),
            Some(other) => {
                errors.push(
                    &at("kind"),
                    format!("expected a plugin kind name, found {}", other.type_str()),
                );
                continue;
            }
        };
        let Some(kind) = plugins
            .iter()
            .find(|p| p.manifest().kind == kind_name)
            .cloned()
        else {
            let known = plugins
                .iter()
                .map(|p| format!("`{}`", p.manifest().kind))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ");
            let (path, what) = if raw.contains_key("kind") {
                (at("kind"), format!("unknown plugin kind `{kind_name}`"))
            } else {
                (
                    base.clone(),
                    format!(
                        "unknown plugin `{kind_name}` (set `kind` to run a registered kind under another name)"
                    ),
                )
            };
            errors.push(&path, format!("{what}; registered kinds: {known}"));
            continue;
        };
        let mount = match raw.get("mount") {
            None => kind.manifest().mount.clone(),
            Some(value) => match serde_path_to_error::deserialize::<_, Mount>(value.clone()) {
                Ok(mount) => mount,
                Err(error) => {
                    let path = [at("mount"), segments(error.path())].concat();
                    errors.push(&path, error.into_inner().message().to_owned());
                    continue;
                }
            },
        };
        for (field, message) in mount.problems() {
            errors.push(&at(&format!("mount.{field}")), message);
        }
        for point in mount.points() {
            if let Some(other) = mounted.insert(point.clone(), name.clone()) {
                let field = if raw.contains_key("mount") {
                    at("mount")
                } else {
                    base.clone()
                };
                errors.push(
                    &field,
                    format!("`{}` is already mounted by plugin `{other}`", point.label()),
                );
            }
        }
        let mut own = raw.clone();
        for key in KERNEL_KEYS {
            own.remove(key);
        }
        match kind.parse(toml::Value::Table(own)) {
            ParseOutcome::Ok(typed) => loaded.push(PluginConfig {
                name: Arc::from(name.as_str()),
                kind,
                raw,
                mount,
                typed: Some(typed),
            }),
            ParseOutcome::Type { path, message } => {
                errors.push(&[base.clone(), path].concat(), message);
            }
            ParseOutcome::Issues(issues) => {
                for issue in issues {
                    errors.push(
                        &[base.clone(), parse_path(&issue.path)].concat(),
                        issue.message,
                    );
                }
            }
        }
    }

    if !errors.list.is_empty() {
        // In file order, as a reader fixes them.
        errors.list.sort_by_key(|e| (e.line, e.column));
        return Err(ConfigErrors(errors.list));
    }
    Ok(LoadedConfig {
        server,
        log,
        services,
        extensions,
        plugins: loaded,
        source: None,
        config_dir,
        text: text.to_owned(),
    })
}

struct Errors<'a> {
    text: &'a str,
    doc: &'a toml_edit::Document<&'a str>,
    origin: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, path: &[PathSegment], message: impl Into<String>) {
        let offset = locate(self.doc, path).map_or(0, |span| span.start);
        let (line, column) = line_col(self.text, offset);
        self.list.push(ConfigError {
            file: self.origin.to_owned(),
            line,
            column,
            path: format_path(path),
            message: message.into(),
        });
    }

    /// Deserializes one top-level table, recording the error (with its path) on failure.
    fn typed<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        value: toml::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let path = [
                    vec![PathSegment::Key(key.to_owned())],
                    segments(error.path()),
                ]
                .concat();
                self.push(&path, error.into_inner().message().to_owned());
                None
            }
        }
    }
}

fn path_of(dotted: &str) -> Vec<PathSegment> {
    parse_path(dotted)
}

/// Parses `a.b[2].c` into segments. Quoted keys are not understood; a path that does not
/// resolve still points at its nearest existing parent.
pub(crate) fn parse_path(dotted: &str) -> Vec<PathSegment> {
    let mut out = Vec::new();
    for part in dotted.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(PathSegment::Key(name.to_owned()));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            match stripped[..end].parse() {
                Ok(index) => out.push(PathSegment::Index(index)),
                Err(_) => out.push(PathSegment::Key(stripped[..end].to_owned())),
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

pub(crate) fn format_path(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            PathSegment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            PathSegment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

enum Node<'a> {
    Item(&'a toml_edit::Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn span(&self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
        }
    }

    /// The child at `segment`, with the span of its key when it has one.
    fn child(&self, segment: &PathSegment) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match (self, segment) {
            (Node::Item(item), PathSegment::Key(key)) => {
                let (k, child) = item.as_table_like()?.get_key_value(key)?;
                Some((k.span(), Node::Item(child)))
            }
            (Node::Value(toml_edit::Value::InlineTable(table)), PathSegment::Key(key)) => {
                let (k, child) = table.get_key_value(key)?;
                Some((k.span(), Node::Item(child)))
            }
            (Node::Table(table), PathSegment::Key(key)) => {
                let (k, child) = table.get_key_value(key)?;
                Some((k.span(), Node::Item(child)))
            }
            (Node::Item(toml_edit::Item::ArrayOfTables(array)), PathSegment::Index(i)) => {
                Some((None, Node::Table(array.get(*i)?)))
            }
            (
                Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(array))),
                PathSegment::Index(i),
            )
            | (Node::Value(toml_edit::Value::Array(array)), PathSegment::Index(i)) => {
                Some((None, Node::Value(array.get(*i)?)))
            }
            _ => None,
        }
    }
}

/// The span of the deepest existing node on `path`: the node's own span (a value, or a table's
/// header), else its key, else the nearest parent that has one.
fn locate(doc: &toml_edit::Document<&str>, path: &[PathSegment]) -> Option<Range<usize>> {
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for segment in path {
        match node.child(segment) {
            Some((key_span, child)) => {
                best = child.span().or(key_span).or(best);
                node = child;
            }
            None => break,
        }
    }
    best
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests;
