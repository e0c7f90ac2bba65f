//! Versioned schema migrations, one numbered series per module (`accounts`, `payments`, `mail`,
//! and each site's own), applied at start in one transaction and recorded in
//! `commerce_migrations`. A database that has a module at a version this binary does not know is
//! refused, naming the module and both versions, rather than run by code that does not know its
//! schema.
//!
//! Hand-written rather than `sqlx::migrate!` because sqlx keeps one series per database and
//! neither separates modules nor refuses a newer database with the module's name.

use sha2::{Digest, Sha256};
use sqlx::{Executor, Row};

use crate::clock;
use crate::store::{Backend, Store};

/// One step of a module's schema. `sql` must run unchanged on SQLite and PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// A named series of migrations, versions 1, 2, 3… in order.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

impl Module {
    /// The newest version this binary knows.
    pub fn latest(&self) -> i64 {
        self.migrations.last().map_or(0, |m| m.version)
    }
}

/// A migration applied by this start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub module: String,
    pub version: i64,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the database has module `{module}` at version {database}, newer than this binary's \
         {binary}: run a bourse at least as new as the one that migrated it"
    )]
    DatabaseNewer {
        module: String,
        database: i64,
        binary: i64,
    },
    #[error(
        "module `{module}` migration {version} ({name}) differs from the one applied to the \
         database: a released migration must never change"
    )]
    Changed {
        module: String,
        version: i64,
        name: String,
    },
    #[error("module `{module}`: migrations must be numbered 1, 2, 3… in order; found {found}")]
    BadSeries { module: String, found: i64 },
    #[error("module `{module}` migration {version} ({name}) failed: {source}")]
    Failed {
        module: String,
        version: i64,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrations: {0}")]
    Sql(#[from] sqlx::Error),
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS commerce_migrations (
    module TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (module, version)
)";

/// Serialises migrating nodes on PostgreSQL (an arbitrary constant key).
const PG_LOCK_KEY: i64 = 0x626f_7572_7365_6d67;

/// Applies every missing migration of `modules` in one transaction.
pub async fn apply(store: &Store, modules: &[&Module]) -> Result<Vec<Applied>, MigrateError> {
    for module in modules {
        for (index, migration) in module.migrations.iter().enumerate() {
            if migration.version != index as i64 + 1 {
                return Err(MigrateError::BadSeries {
                    module: module.name.to_owned(),
                    found: migration.version,
                });
            }
        }
    }
    let mut tx = match store.backend() {
        Backend::Sqlite => store.writer().begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => store.writer().begin().await?,
    };
    if store.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
    }
    // `Executor::execute` with plain text runs it unprepared, every statement in turn, like
    // `raw_sql`, whose future the compiler cannot prove `Send` inside a plugin's `init`.
    (&mut *tx).execute(CREATE_TABLE).await?;
    let mut applied = Vec::new();
    for module in modules {
        let rows = sqlx::query(
            "SELECT version, name, checksum FROM commerce_migrations WHERE module = $1 \
             ORDER BY version",
        )
        .bind(module.name)
        .fetch_all(&mut *tx)
        .await?;
        let mut current = 0;
        for row in rows {
            let version: i64 = row.try_get("version")?;
            let checksum: String = row.try_get("checksum")?;
            let Some(known) = module.migrations.iter().find(|m| m.version == version) else {
                return Err(MigrateError::DatabaseNewer {
                    module: module.name.to_owned(),
                    database: version,
                    binary: module.latest(),
                });
            };
            if checksum != checksum_of(known.sql) {
                return Err(MigrateError::Changed {
                    module: module.name.to_owned(),
                    version,
                    name: known.name.to_owned(),
                });
            }
            current = current.max(version);
        }
        for migration in module.migrations.iter().filter(|m| m.version > current) {
            (&mut *tx)
                .execute(migration.sql)
                .await
                .map_err(|source| MigrateError::Failed {
                    module: module.name.to_owned(),
                    version: migration.version,
                    name: migration.name.to_owned(),
                    source,
                })?;
            sqlx::query(
                "INSERT INTO commerce_migrations (module, version, name, checksum, applied_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(module.name)
            .bind(migration.version)
            .bind(migration.name)
            .bind(checksum_of(migration.sql))
            .bind(clock::now())
            .execute(&mut *tx)
            .await?;
            applied.push(Applied {
                module: module.name.to_owned(),
                version: migration.version,
                name: migration.name.to_owned(),
            });
        }
    }
    tx.commit().await?;
    for step in &applied {
        tracing::info!(module = %step.module, version = step.version, name = %step.name, "migration applied");
    }
    Ok(applied)
}

/// The version of `module` recorded in the database (0 when never migrated).
pub async fn current_version(store: &Store, module: &str) -> Result<i64, MigrateError> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) AS v FROM commerce_migrations \
         WHERE module = $1",
    )
    .bind(module)
    .fetch_one(store.reader())
    .await?;
    Ok(row.try_get("v")?)
}

fn checksum_of(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}
