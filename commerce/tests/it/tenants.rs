//! Tenants, subscriptions, metered usage and API keys on both engines.

use bourse_commerce::apikeys::{self, ApiKeyError, KeyOwner};
use bourse_commerce::tenants::{self, Role, Subscription, SubscriptionState};
use bourse_commerce::{Store, schema};

use crate::support::{Engine, TestDb};

async fn tenants_plans_usage_and_keys(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store: Store = db.open(&schema::ALL).await;
    let mut tx = store.begin().await.unwrap();
    let acme = tenants::create(&mut tx, "saas", "  Acme  ", "acct_owner")
        .await
        .unwrap();
    assert_eq!(acme.name, "Acme");
    tenants::add_member(&mut tx, &acme.id, "acct_dev", Role::Member)
        .await
        .unwrap();
    tenants::add_member(&mut tx, &acme.id, "acct_dev", Role::Admin)
        .await
        .unwrap();
    assert!(
        tenants::create(&mut tx, "saas", " ", "acct_owner")
            .await
            .is_err()
    );
    tx.commit().await.unwrap();
    assert_eq!(
        tenants::role_of(&store, &acme.id, "acct_owner")
            .await
            .unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(
        tenants::role_of(&store, &acme.id, "acct_dev")
            .await
            .unwrap(),
        Some(Role::Admin)
    );
    assert_eq!(
        tenants::role_of(&store, &acme.id, "acct_x").await.unwrap(),
        None
    );
    let mine = tenants::tenants_of(&store, "saas", "acct_dev")
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);

    // Subscription updates converge on the newest state, keyed by the provider's id.
    let mut sub = Subscription {
        site: "saas".into(),
        tenant_id: Some(acme.id.clone()),
        account_id: None,
        plan: "team".into(),
        state: SubscriptionState::Active,
        provider_ref: "sub_1".into(),
        current_period_end: Some(2_000_000_000),
    };
    let mut tx = store.begin().await.unwrap();
    tenants::upsert_subscription(&mut tx, &sub).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        tenants::plan_of_tenant(&store, "saas", &acme.id)
            .await
            .unwrap()
            .as_deref(),
        Some("team")
    );
    sub.state = SubscriptionState::Canceled;
    let mut tx = store.begin().await.unwrap();
    tenants::upsert_subscription(&mut tx, &sub).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        tenants::plan_of_tenant(&store, "saas", &acme.id)
            .await
            .unwrap(),
        None
    );

    // Usage counters add up under concurrency.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            tenants::record_usage(&mut tx, "api", "key_1", "requests", 0, 5)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tenants::record_usage(&mut tx, "api", "key_1", "requests", 0, 0)
            .await
            .unwrap(),
        100
    );
    tx.commit().await.unwrap();

    // API keys: shown once, verified by hash, revocable.
    let owner = KeyOwner {
        account_id: Some("acct_dev".into()),
        tenant_id: Some(acme.id.clone()),
    };
    let mut tx = store.begin().await.unwrap();
    let issued = apikeys::issue(&mut tx, "api", &owner, "ci", Some("pro"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(issued.key.starts_with(&format!("bsk_{}_", issued.prefix)));
    let stored: String = sqlx::query_scalar("SELECT key_hash FROM api_keys WHERE id = $1")
        .bind(&issued.id)
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert!(
        !stored.contains(&issued.key) && stored.len() == 64,
        "only the hash is stored"
    );
    let key = apikeys::verify(&store, &issued.key).await.unwrap();
    assert_eq!(
        (key.plan.as_deref(), key.label.as_str()),
        (Some("pro"), "ci")
    );
    let forged = format!("bsk_{}_{}", issued.prefix, "A".repeat(43));
    assert!(matches!(
        apikeys::verify(&store, &forged).await,
        Err(ApiKeyError::Unknown)
    ));
    assert!(matches!(
        apikeys::verify(&store, "sk_nope").await,
        Err(ApiKeyError::Malformed)
    ));
    let listed = apikeys::list(&store, "api", "acct_dev").await.unwrap();
    assert_eq!(listed.len(), 1);
    let mut tx = store.begin().await.unwrap();
    assert!(apikeys::revoke(&mut tx, &issued.id).await.unwrap());
    tx.commit().await.unwrap();
    assert!(matches!(
        apikeys::verify(&store, &issued.key).await,
        Err(ApiKeyError::Revoked)
    ));
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tenants_plans_usage_and_keys() {
    tenants_plans_usage_and_keys(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tenants_plans_usage_and_keys() {
    tenants_plans_usage_and_keys(Engine::Postgres).await;
}
