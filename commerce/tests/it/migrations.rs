//! Migrations: applied once, nothing to do at restart, a newer or altered database refused.

use bourse_commerce::migrate::{self, MigrateError};
use bourse_commerce::schema;
use bourse_commerce::{Store, StoreError};

use crate::support::{Engine, TestDb};

async fn applied_once_and_idempotent(engine: Engine) {
    let db = TestDb::new(engine).await;
    let (store, applied) = Store::open(&db.config, &schema::ALL).await.unwrap();
    let modules: Vec<_> = applied.iter().map(|a| a.module.as_str()).collect();
    assert_eq!(modules, ["accounts", "payments", "mail", "tenants"]);
    store.close().await;

    // A restart applies nothing and finds every module at its version.
    let (store, applied) = Store::open(&db.config, &schema::ALL).await.unwrap();
    assert!(applied.is_empty(), "{applied:?}");
    for module in schema::ALL {
        assert_eq!(
            migrate::current_version(&store, module.name).await.unwrap(),
            module.latest()
        );
    }
    // The tables exist and work.
    let mut tx = store.begin().await.unwrap();
    bourse_commerce::stock::set_capacity(&mut tx, "s", "i", 3)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    db.cleanup().await;
}

async fn newer_database_refused(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    sqlx::query(
        "INSERT INTO commerce_migrations (module, version, name, checksum, applied_at) \
         VALUES ('payments', 2, 'from_the_future', 'x', 0)",
    )
    .execute(store.writer())
    .await
    .unwrap();
    store.close().await;

    let err = Store::open(&db.config, &schema::ALL).await.unwrap_err();
    match &err {
        StoreError::Migrate(MigrateError::DatabaseNewer {
            module,
            database,
            binary,
        }) => {
            assert_eq!((module.as_str(), *database, *binary), ("payments", 2, 1));
        }
        other => panic!("expected DatabaseNewer, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("`payments`") && message.contains("version 2") && message.contains("1"),
        "{message}"
    );
    db.cleanup().await;
}

async fn altered_migration_refused(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    sqlx::query("UPDATE commerce_migrations SET checksum = 'edited' WHERE module = 'mail'")
        .execute(store.writer())
        .await
        .unwrap();
    store.close().await;
    let err = Store::open(&db.config, &schema::ALL).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Migrate(MigrateError::Changed { module, .. }) if module == "mail"),
        "{err:?}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_migrations_apply_once_and_are_idempotent() {
    applied_once_and_idempotent(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_migrations_apply_once_and_are_idempotent() {
    applied_once_and_idempotent(Engine::Postgres).await;
}

#[tokio::test]
async fn sqlite_newer_database_is_refused() {
    newer_database_refused(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_newer_database_is_refused() {
    newer_database_refused(Engine::Postgres).await;
}

#[tokio::test]
async fn sqlite_altered_migration_is_refused() {
    altered_migration_refused(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_altered_migration_is_refused() {
    altered_migration_refused(Engine::Postgres).await;
}

#[tokio::test]
async fn sqlite_file_is_in_wal_mode_with_full_sync() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.writer())
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL is 2");
    store.close().await;
}

#[tokio::test]
async fn two_nodes_migrating_one_postgres_at_once_both_start() {
    let db = TestDb::new(Engine::Postgres).await;
    let (a, b) = tokio::join!(
        Store::open(&db.config, &schema::ALL),
        Store::open(&db.config, &schema::ALL)
    );
    let (a, applied_a) = a.unwrap();
    let (b, applied_b) = b.unwrap();
    assert_eq!(
        applied_a.len() + applied_b.len(),
        schema::ALL.len(),
        "each migration applied by exactly one node"
    );
    a.close().await;
    b.close().await;
    db.cleanup().await;
}
