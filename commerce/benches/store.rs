//! What `sqlx::Any` costs over the engines' own drivers: the same point read (a stock level, as
//! every checkout page does) through an `Any` pool and through a native `SqlitePool`/`PgPool` on
//! the same database. The figures decide store.rs's choice of one query path; see BENCHMARKS.md.
//!
//! PostgreSQL is measured when it answers at `BOURSE_TEST_POSTGRES_URL` (default the local
//! test database), in a schema of its own that is dropped afterwards.

use bourse_commerce::{Store, StoreConfig, schema, stock};
use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::Row;

const READ: &str = "SELECT capacity, held, sold FROM stock_items WHERE site = $1 AND item = $2";

async fn seeded(config: &StoreConfig) -> Store {
    let store = Store::open(config, &schema::ALL).await.unwrap().0;
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, "courses", "cohort", 100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store
}

fn any_vs_native(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = rt.block_on(seeded(&StoreConfig::sqlite(&path)));
    let native = rt
        .block_on(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&format!("sqlite://{}", path.display())),
        )
        .unwrap();
    let mut group = c.benchmark_group("store_point_read");
    group.bench_function("sqlite_any", |b| {
        b.to_async(&rt).iter(|| async {
            let row = sqlx::query(READ)
                .bind("courses")
                .bind("cohort")
                .fetch_one(store.reader())
                .await
                .unwrap();
            row.get::<i64, _>("capacity")
        })
    });
    group.bench_function("sqlite_native", |b| {
        b.to_async(&rt).iter(|| async {
            let row = sqlx::query(READ)
                .bind("courses")
                .bind("cohort")
                .fetch_one(&native)
                .await
                .unwrap();
            row.get::<i64, _>("capacity")
        })
    });

    let url = std::env::var("BOURSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema_name = format!("bench_{}", std::process::id());
    let config = StoreConfig::postgres(&url, Some(&schema_name));
    if let Ok(pg) = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(3), seeded(&config)).await
    }) {
        let search_path = format!("SET search_path TO \"{schema_name}\"");
        let native = rt
            .block_on(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .after_connect(move |conn, _| {
                        let search_path = search_path.clone();
                        Box::pin(async move {
                            sqlx::Executor::execute(conn, search_path.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect(&url),
            )
            .unwrap();
        group.bench_function("postgres_any", |b| {
            b.to_async(&rt).iter(|| async {
                let row = sqlx::query(READ)
                    .bind("courses")
                    .bind("cohort")
                    .fetch_one(pg.reader())
                    .await
                    .unwrap();
                row.get::<i64, _>("capacity")
            })
        });
        group.bench_function("postgres_native", |b| {
            b.to_async(&rt).iter(|| async {
                let row = sqlx::query(READ)
                    .bind("courses")
                    .bind("cohort")
                    .fetch_one(&native)
                    .await
                    .unwrap();
                row.get::<i64, _>("capacity")
            })
        });
        rt.block_on(async {
            sqlx::Executor::execute(
                &native,
                format!("DROP SCHEMA \"{schema_name}\" CASCADE").as_str(),
            )
            .await
            .unwrap();
        });
    }
    group.finish();
}

criterion_group!(benches, any_vs_native);
criterion_main!(benches);
