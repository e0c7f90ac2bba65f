//! The SQL store every site shares: an embedded SQLite file by default, PostgreSQL when a URL is
//! configured, behind one query path.
//!
//! Why `sqlx::Any` rather than an enum over two typed pools: every query this crate writes uses
//! only what both engines accept unchanged — `$N` placeholders (SQLite reads `$1` as parameter 1),
//! `BIGINT`/`TEXT` columns mapped to `i64`/`String`, `ON CONFLICT … DO NOTHING`, `RETURNING` and
//! single-statement conditional `UPDATE`s — so `Any` costs nothing in expressiveness, and its
//! per-row value conversion is noise next to a database round trip (measured by
//! `benches/store.rs`: a point read costs the same through `Any` and through `PgPool`, see
//! BENCHMARKS.md). What does differ (SQLite's
//! pragmas and `BEGIN IMMEDIATE`, PostgreSQL's schema and advisory lock) is confined to this file
//! and `migrate.rs`, keyed by [`Backend`].
//!
//! SQLite is opened in WAL mode with `synchronous=FULL` (a committed payment survives power loss),
//! a busy timeout, and all writes funnelled through one writer connection, so writers queue in
//! the pool instead of failing with `SQLITE_BUSY`; reads use their own pool and never block on
//! the writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor};

use crate::migrate::{self, Applied, MigrateError, Module};

/// A write transaction on the store.
pub type Tx = sqlx::Transaction<'static, Any>;
/// A connection, inside a transaction or not; the functions of this crate that write take one, so
/// their effect joins the caller's transaction.
pub type Conn = sqlx::AnyConnection;

/// `[sites.store]`: where the sites keep their data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A `postgres://…` URL; when absent, the SQLite file at `path` is used.
    #[serde(default)]
    pub url: Option<String>,
    /// The SQLite file, created when missing.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// PostgreSQL schema holding the tables (created when missing); default `public`.
    #[serde(default)]
    pub schema: Option<String>,
    /// Reader connections (PostgreSQL: all connections).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long SQLite waits on a lock held by another process before giving up.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,
    /// How long a query waits for a free connection before failing.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

fn default_path() -> PathBuf {
    PathBuf::from("bourse-sites.db")
}
fn default_max_connections() -> u32 {
    8
}
fn default_busy_timeout_ms() -> u64 {
    5_000
}
fn default_acquire_timeout_ms() -> u64 {
    30_000
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            path: default_path(),
            schema: None,
            max_connections: default_max_connections(),
            busy_timeout_ms: default_busy_timeout_ms(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
        }
    }
}

impl StoreConfig {
    /// An embedded SQLite store at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            ..StoreConfig::default()
        }
    }

    /// A PostgreSQL store at `url`, optionally in its own schema.
    pub fn postgres(url: impl Into<String>, schema: Option<&str>) -> Self {
        StoreConfig {
            url: Some(url.into()),
            schema: schema.map(str::to_owned),
            ..StoreConfig::default()
        }
    }

    /// Checks the fields that serde cannot, naming the field and the rule broken.
    pub fn validate(&self) -> Result<(), StoreError> {
        if let Some(url) = &self.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(StoreError::config(
                "url",
                "must start with postgres:// or postgresql://",
            ));
        }
        if let Some(schema) = &self.schema {
            if self.url.is_none() {
                return Err(StoreError::config(
                    "schema",
                    "applies to PostgreSQL only; set url too",
                ));
            }
            let valid = schema.len() <= 63
                && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(StoreError::config(
                    "schema",
                    "must be 1-63 characters of a-z, 0-9 and _, not starting with a digit",
                ));
            }
        }
        if self.max_connections == 0 {
            return Err(StoreError::config("max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What went wrong opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store config: {field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("cannot open the store at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

impl StoreError {
    fn config(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Config {
            field,
            message: message.into(),
        }
    }
}

/// The store: a writer pool and a reader pool (one and the same pool on PostgreSQL).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    writer: AnyPool,
    reader: AnyPool,
}

impl Store {
    /// Connects without migrating; see [`Store::open`].
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        sqlx::any::install_default_drivers();
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        match &config.url {
            Some(url) => connect_postgres(url, config, acquire).await,
            None => connect_sqlite(&config.path, config, acquire).await,
        }
    }

    /// Connects and applies the migrations of `modules`, refusing a database newer than them.
    pub async fn open(
        config: &StoreConfig,
        modules: &[&Module],
    ) -> Result<(Store, Vec<Applied>), StoreError> {
        let store = Store::connect(config).await?;
        let applied = migrate::apply(&store, modules).await?;
        Ok((store, applied))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads outside a transaction.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool writes go through (one connection on SQLite).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Begins a write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`), so a transaction that reads before it writes never fails on upgrade when
    /// another process holds the file.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        Ok(tx)
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

async fn connect_sqlite(
    path: &Path,
    config: &StoreConfig,
    acquire: Duration,
) -> Result<Store, StoreError> {
    let target = path.display().to_string();
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| StoreError::config("path", e.to_string()))?
            .join(path)
    };
    if let Some(parent) = absolute.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::config("path", format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let file_url = url::Url::from_file_path(&absolute)
        .map_err(|()| StoreError::config("path", "is not a valid file path"))?;
    let url = format!("sqlite://{}?mode=rwc", file_url.path());
    let options: AnyConnectOptions = url.parse().map_err(|source| StoreError::Connect {
        target: target.clone(),
        source,
    })?;
    let pragmas = sqlite_pragmas(config.busy_timeout_ms);
    let writer = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire)
        .after_connect(pragmas.clone())
        .connect_with(options.clone())
        .await
        .map_err(|source| StoreError::Connect {
            target: target.clone(),
            source,
        })?;
    let reader = AnyPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(acquire)
        .after_connect(pragmas)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect { target, source })?;
    Ok(Store {
        backend: Backend::Sqlite,
        writer,
        reader,
    })
}

/// Per-connection SQLite settings (busy timeout, WAL, full sync, foreign keys).
fn sqlite_pragmas(
    busy_ms: u64,
) -> impl for<'c> Fn(
    &'c mut sqlx::AnyConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> BoxFuture<'c, Result<(), sqlx::Error>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |conn, _meta| {
        Box::pin(async move {
            let pragmas = format!(
                "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
            );
            conn.execute(pragmas.as_str()).await?;
            Ok(())
        })
    }
}

async fn connect_postgres(
    url: &str,
    config: &StoreConfig,
    acquire: Duration,
) -> Result<Store, StoreError> {
    let target = redact_url(url);
    let options: AnyConnectOptions = url.parse().map_err(|source| StoreError::Connect {
        target: target.clone(),
        source,
    })?;
    let schema = config.schema.clone();
    let mut pool = AnyPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(acquire);
    if let Some(schema) = schema.clone() {
        pool = pool.after_connect(move |conn, _meta| {
            let schema = schema.clone();
            Box::pin(async move {
                // Validated as [a-z_][a-z0-9_]*, so quoting cannot be escaped.
                conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                    .await?;
                Ok(())
            })
        });
    }
    let pool = pool
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect { target, source })?;
    if let Some(schema) = &config.schema {
        // Two nodes starting together may both try to create it; the loser's unique-violation
        // is harmless, so it simply checks again.
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        if pool.execute(create.as_str()).await.is_err() {
            pool.execute(create.as_str()).await?;
        }
    }
    Ok(Store {
        backend: Backend::Postgres,
        writer: pool.clone(),
        reader: pool,
    })
}

/// The URL without its password, for error messages and logs.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable postgres url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_unknown_fields_and_bad_values() {
        let err = toml_like(r#"{"path":"x.db","pth":"y"}"#).unwrap_err();
        assert!(err.contains("unknown field `pth`"), "{err}");
        let bad_url = StoreConfig {
            url: Some("mysql://x".into()),
            ..StoreConfig::default()
        };
        assert!(matches!(
            bad_url.validate(),
            Err(StoreError::Config { field: "url", .. })
        ));
        let bad_schema = StoreConfig::postgres("postgres://localhost/test", Some("Drop;"));
        assert!(matches!(
            bad_schema.validate(),
            Err(StoreError::Config {
                field: "schema",
                ..
            })
        ));
    }

    fn toml_like(json: &str) -> Result<StoreConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn redacts_the_password() {
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
    }
}
