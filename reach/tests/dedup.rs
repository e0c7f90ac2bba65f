//! Billing de-duplication: exactly one "first" per key under concurrency, in process and across
//! two Redis connections; TTL expiry; and errors (never "first") when the answer is unknown.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_reach::{Backend, BillingDedup, DedupError, ReachConfig};
use support::{PrivateRedis, delete_keys, redis_url, unique_prefix};

const TASKS: usize = 50;

/// Runs `TASKS` concurrent `first_seen(key)` calls, alternating between the given instances,
/// and returns how many were told "first".
async fn concurrent_firsts(instances: &[BillingDedup], key: &str) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let dedup = instances[task % instances.len()].clone();
            let start = Arc::clone(&start);
            let key = key.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                dedup
                    .first_seen(&key, Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        firsts += usize::from(task.await.unwrap());
    }
    firsts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_concurrent_duplicates_yield_exactly_one_first() {
    let dedup = BillingDedup::in_process(1_000_000);
    assert_eq!(dedup.backend(), Backend::InProcess);
    for key in 0..100 {
        let firsts = concurrent_firsts(std::slice::from_ref(&dedup), &format!("imp-{key}")).await;
        assert_eq!(firsts, 1, "key imp-{key}");
    }
}

#[tokio::test]
async fn in_process_keys_are_new_again_after_their_ttl() {
    let dedup = BillingDedup::in_process(100);
    let ttl = Duration::from_millis(200);
    assert!(dedup.first_seen("win-1", ttl).await.unwrap());
    assert!(!dedup.first_seen("win-1", ttl).await.unwrap());
    // A repeat does not extend the window: the key expires 200 ms after it was first seen.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        !dedup
            .first_seen("win-1", Duration::from_secs(60))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(dedup.first_seen("win-1", ttl).await.unwrap());
    assert!(!dedup.first_seen("win-1", ttl).await.unwrap());
}

#[tokio::test]
async fn in_process_refuses_new_keys_when_full_instead_of_forgetting_old_ones() {
    let dedup = BillingDedup::in_process(3);
    for key in ["a", "b", "c"] {
        assert!(
            dedup
                .first_seen(key, Duration::from_secs(60))
                .await
                .unwrap()
        );
    }
    let err = dedup
        .first_seen("d", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, DedupError::Full { limit: 3 }), "{err}");
    // Known keys still answer (as duplicates), so nothing already billed can be billed again.
    assert!(
        !dedup
            .first_seen("a", Duration::from_secs(60))
            .await
            .unwrap()
    );

    // Expired keys give their slot back once moka's timer wheel (about 1 s buckets) runs.
    let short = BillingDedup::in_process(1);
    let ttl = Duration::from_millis(50);
    assert!(short.first_seen("x", ttl).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match short.first_seen("y", ttl).await {
            Ok(first) => break assert!(first),
            Err(DedupError::Full { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("slot of an expired key never came back: {err}"),
        }
    }
}

#[tokio::test]
async fn bad_keys_and_ttls_are_errors() {
    let dedup = BillingDedup::in_process(10);
    let ttl = Duration::from_secs(1);
    assert!(matches!(
        dedup.first_seen("", ttl).await,
        Err(DedupError::InvalidKey(0))
    ));
    let long = "k".repeat(bourse_reach::MAX_DEDUP_KEY_LEN + 1);
    assert!(matches!(
        dedup.first_seen(&long, ttl).await,
        Err(DedupError::InvalidKey(513))
    ));
    assert!(matches!(
        dedup.first_seen("k", Duration::ZERO).await,
        Err(DedupError::InvalidTtl(_))
    ));
    assert!(matches!(
        dedup
            .first_seen("k", bourse_reach::MAX_DEDUP_TTL + Duration::from_secs(1))
            .await,
        Err(DedupError::InvalidTtl(_))
    ));
}

async fn redis_dedup(prefix: &str) -> BillingDedup {
    BillingDedup::redis(&redis_url(), prefix, Duration::from_secs(2))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_duplicates_on_two_connections_yield_exactly_one_first() {
    let prefix = unique_prefix("dedup");
    // Two instances with their own connections, as two exchange nodes would have.
    let nodes = [redis_dedup(&prefix).await, redis_dedup(&prefix).await];
    assert_eq!(nodes[0].backend(), Backend::Redis);
    for key in 0..20 {
        let firsts = concurrent_firsts(&nodes, &format!("imp-{key}")).await;
        assert_eq!(firsts, 1, "key imp-{key}");
    }

    // Stored as documented, with the TTL rounded up to whole seconds.
    assert!(
        nodes[0]
            .first_seen("ttl", Duration::from_millis(1_500))
            .await
            .unwrap()
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:billed:ttl"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(ttl, 2);
    delete_keys(&redis_url(), &prefix);
}

#[tokio::test]
async fn redis_keys_are_new_again_after_their_ttl() {
    let prefix = unique_prefix("dedup-ttl");
    let dedup = redis_dedup(&prefix).await;
    assert!(
        dedup
            .first_seen("win", Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert!(
        !dedup
            .first_seen("win", Duration::from_secs(1))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(
        dedup
            .first_seen("win", Duration::from_secs(1))
            .await
            .unwrap()
    );
    delete_keys(&redis_url(), &prefix);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_never_a_first() {
    let port = support::unused_port();
    let err = BillingDedup::redis(
        &format!("redis://127.0.0.1:{port}"),
        "bourse",
        Duration::from_millis(200),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, DedupError::Connect { .. }), "{err}");

    // Connected first, then Redis goes away: every answer is an error.
    let mut server = PrivateRedis::start();
    let dedup = BillingDedup::redis(&server.url, "bourse", Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        dedup
            .first_seen("before", Duration::from_secs(60))
            .await
            .unwrap()
    );
    server.kill();
    let started = Instant::now();
    for attempt in 0..3 {
        let result = dedup.first_seen("after", Duration::from_secs(60)).await;
        assert!(
            matches!(result, Err(DedupError::Redis(_))),
            "attempt {attempt}: {result:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn from_config_picks_the_backend() {
    let in_process = BillingDedup::from_config(&ReachConfig::default())
        .await
        .unwrap();
    assert_eq!(in_process.backend(), Backend::InProcess);
    let redis = BillingDedup::from_config(&ReachConfig {
        redis_url: Some(redis_url()),
        ..ReachConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(redis.backend(), Backend::Redis);
    let err = BillingDedup::from_config(&ReachConfig {
        key_prefix: String::new(),
        ..ReachConfig::default()
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, DedupError::Config(_)), "{err}");
}
