//! Seats that are never oversold: 1,000 concurrent reservations for 100 seats on SQLite, on
//! PostgreSQL, and on two separate pools sharing one PostgreSQL (as two processes would); and the
//! life of a hold (confirm, release, expiry, return).

use std::sync::Arc;

use bourse_commerce::stock::{self, Confirmed, HoldState, StockError};
use bourse_commerce::{Store, schema};

use crate::support::{Engine, TestDb};

const SITE: &str = "courses";
const ITEM: &str = "cohort-2027-01";

/// Runs `attempts` reservations of one seat each, spread round-robin over `stores`, all at once.
async fn race(stores: &[Store], attempts: usize) -> (usize, usize) {
    let stores: Arc<Vec<Store>> = Arc::new(stores.to_vec());
    let mut tasks = Vec::with_capacity(attempts);
    for i in 0..attempts {
        let stores = stores.clone();
        tasks.push(tokio::spawn(async move {
            let store = &stores[i % stores.len()];
            let mut tx = store.begin().await.unwrap();
            let hold_until = bourse_commerce::clock::now() + 1800;
            match stock::reserve(&mut tx, SITE, ITEM, 1, hold_until, None).await {
                Ok(hold) => {
                    tx.commit().await.unwrap();
                    assert_eq!(hold.state, HoldState::Held);
                    Ok(())
                }
                Err(StockError::SoldOut {
                    requested,
                    available,
                    ..
                }) => {
                    assert_eq!((requested, available), (1, 0));
                    Err(())
                }
                Err(other) => panic!("reservation failed unexpectedly: {other}"),
            }
        }));
    }
    let mut reserved = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => reserved += 1,
            Err(()) => refused += 1,
        }
    }
    (reserved, refused)
}

async fn thousand_for_a_hundred(db: &TestDb, stores: &[Store]) {
    let mut tx = stores[0].begin().await.unwrap();
    stock::set_capacity(&mut tx, SITE, ITEM, 100).await.unwrap();
    tx.commit().await.unwrap();

    let (reserved, refused) = race(stores, 1000).await;
    assert_eq!((reserved, refused), (100, 900), "on {:?}", db.engine);
    let level = stock::level(&stores[0], SITE, ITEM).await.unwrap();
    assert_eq!((level.held, level.sold, level.available()), (100, 0, 0));
    let holds: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM stock_holds WHERE item = $1 AND state = 'held'",
    )
    .bind(ITEM)
    .fetch_one(stores[0].reader())
    .await
    .unwrap();
    assert_eq!(holds, 100, "one hold row per seat taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_never_oversells_1000_concurrent_reservations() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    thousand_for_a_hundred(&db, std::slice::from_ref(&store)).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_never_oversells_1000_concurrent_reservations() {
    let db = TestDb::new(Engine::Postgres).await;
    let store = db.open(&schema::ALL).await;
    thousand_for_a_hundred(&db, std::slice::from_ref(&store)).await;
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_on_one_postgres_never_oversell() {
    let db = TestDb::new(Engine::Postgres).await;
    let first = db.open(&schema::ALL).await;
    let second = db.open(&schema::ALL).await;
    thousand_for_a_hundred(&db, &[first.clone(), second.clone()]).await;
    first.close().await;
    second.close().await;
    db.cleanup().await;
}

async fn hold_lifecycle(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, SITE, ITEM, 2).await.unwrap();
    let now = bourse_commerce::clock::now();
    let paid = stock::reserve(&mut tx, SITE, ITEM, 1, now + 600, Some("ord_a"))
        .await
        .unwrap();
    let lapsed = stock::reserve(&mut tx, SITE, ITEM, 1, now - 1, Some("ord_b"))
        .await
        .unwrap();
    assert!(matches!(
        stock::reserve(&mut tx, SITE, ITEM, 1, now + 600, None).await,
        Err(StockError::SoldOut { available: 0, .. })
    ));
    assert!(matches!(
        stock::reserve(&mut tx, SITE, ITEM, 0, now, None).await,
        Err(StockError::BadQuantity(0))
    ));
    assert!(matches!(
        stock::reserve(&mut tx, SITE, "no-such-item", 1, now, None).await,
        Err(StockError::UnknownItem { .. })
    ));
    assert_eq!(
        stock::confirm(&mut tx, &paid.id).await.unwrap(),
        Confirmed::Sold
    );
    assert_eq!(
        stock::confirm(&mut tx, &paid.id).await.unwrap(),
        Confirmed::AlreadySold
    );
    tx.commit().await.unwrap();

    // The lapsed hold is released by the expiry sweep, once.
    assert_eq!(stock::release_expired(&store, SITE, now).await.unwrap(), 1);
    assert_eq!(stock::release_expired(&store, SITE, now).await.unwrap(), 0);
    let level = stock::level(&store, SITE, ITEM).await.unwrap();
    assert_eq!((level.held, level.sold), (0, 1));

    // A payment arriving after its hold lapsed still gets the seat while one is free…
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        stock::confirm(&mut tx, &lapsed.id).await.unwrap(),
        Confirmed::Reacquired
    );
    // …and capacity cannot drop below what is sold.
    assert!(matches!(
        stock::set_capacity(&mut tx, SITE, ITEM, 1).await,
        Err(StockError::CapacityBelowCommitted {
            capacity: 1,
            committed: 2
        })
    ));
    // A refund returns the seat, once.
    assert!(stock::return_sold(&mut tx, &paid.id).await.unwrap());
    assert!(!stock::return_sold(&mut tx, &paid.id).await.unwrap());
    let holds = stock::holds_of_order(&mut tx, "ord_a").await.unwrap();
    assert_eq!(holds[0].state, HoldState::Returned);
    tx.commit().await.unwrap();
    let level = stock::level(&store, SITE, ITEM).await.unwrap();
    assert_eq!((level.held, level.sold, level.available()), (0, 1, 1));

    // With the seat gone, a lapsed hold's late payment is reported lost (to be refunded).
    let mut tx = store.begin().await.unwrap();
    let late = stock::reserve(&mut tx, SITE, ITEM, 1, now - 1, None)
        .await
        .unwrap();
    assert!(stock::release(&mut tx, &late.id).await.unwrap());
    assert!(!stock::release(&mut tx, &late.id).await.unwrap());
    stock::reserve(&mut tx, SITE, ITEM, 1, now + 600, None)
        .await
        .unwrap();
    assert_eq!(
        stock::confirm(&mut tx, &late.id).await.unwrap(),
        Confirmed::Lost
    );
    tx.commit().await.unwrap();
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_hold_lifecycle() {
    hold_lifecycle(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_hold_lifecycle() {
    hold_lifecycle(Engine::Postgres).await;
}
