//! Exactly-once keys: one "first" per key under concurrency, in process and across two nodes
//! on one Redis; TTL expiry; claims and releases; namespaces; and errors (never "first") when
//! the answer is unknown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_services::{
    Backend, OnceConfig, OnceError, OnceNamespace, ServiceError, Services, ServicesConfig,
};

use crate::Node;
use crate::support::{PrivateRedis, delete_keys, redis_url, unique_prefix, unused_port};

const TASKS: usize = 50;

/// Runs `TASKS` concurrent `first(key)` calls, alternating between the given namespaces, and
/// returns how many were told "first".
async fn concurrent_firsts(namespaces: &[OnceNamespace], key: &str) -> usize {
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let namespace = namespaces[task % namespaces.len()].clone();
            let start = Arc::clone(&start);
            let key = key.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                namespace
                    .first(&key, Duration::from_secs(60))
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

fn in_process(max_keys: u64) -> ServicesConfig {
    ServicesConfig {
        once: OnceConfig { max_keys },
        ..ServicesConfig::default()
    }
}

fn redis_config(prefix: &str) -> ServicesConfig {
    ServicesConfig {
        redis_url: Some(redis_url()),
        key_prefix: prefix.to_owned(),
        ..ServicesConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_concurrent_duplicates_yield_exactly_one_first() {
    let node = Node::start(&in_process(1_000_000)).await;
    let billed = node.services.once.namespace("billed").unwrap();
    assert_eq!(node.services.once.backend(), Backend::InProcess);
    for key in 0..100 {
        let firsts = concurrent_firsts(std::slice::from_ref(&billed), &format!("imp-{key}")).await;
        assert_eq!(firsts, 1, "key imp-{key}");
    }
    assert_eq!(node.services.once.held_in_process(), 100);
}

#[tokio::test]
async fn namespaces_keep_their_keys_apart() {
    let node = Node::start(&in_process(100)).await;
    let billed = node.services.once.namespace("billed").unwrap();
    let orders = node.services.once.namespace("order").unwrap();
    let ttl = Duration::from_secs(60);
    assert!(billed.first("42", ttl).await.unwrap());
    assert!(orders.first("42", ttl).await.unwrap());
    assert!(!billed.first("42", ttl).await.unwrap());
    // A second handle on a namespace shares its keys.
    let billed_again = node.services.once.namespace("billed").unwrap();
    assert!(!billed_again.first("42", ttl).await.unwrap());
}

#[tokio::test]
async fn in_process_keys_are_new_again_after_their_ttl() {
    let node = Node::start(&in_process(100)).await;
    let wins = node.services.once.namespace("win").unwrap();
    let ttl = Duration::from_millis(200);
    assert!(wins.first("win-1", ttl).await.unwrap());
    assert!(!wins.first("win-1", ttl).await.unwrap());
    // A repeat does not extend the window: the key expires 200 ms after it was first taken.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!wins.first("win-1", Duration::from_secs(60)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(wins.first("win-1", ttl).await.unwrap());
    assert!(!wins.first("win-1", ttl).await.unwrap());
}

#[tokio::test]
async fn in_process_refuses_new_keys_when_full_instead_of_forgetting_old_ones() {
    let node = Node::start(&in_process(3)).await;
    let billed = node.services.once.namespace("billed").unwrap();
    let minute = Duration::from_secs(60);
    for key in ["a", "b", "c"] {
        assert!(billed.first(key, minute).await.unwrap());
    }
    let err = billed.first("d", minute).await.unwrap_err();
    assert!(matches!(err, OnceError::Full { limit: 3 }), "{err}");
    assert_eq!(
        node.metric("bourse_kernel_once_refusals_total", &[("reason", "full")]),
        Some(1.0)
    );
    // Known keys still answer (as repeats), so nothing already done can be done again.
    assert!(!billed.first("a", minute).await.unwrap());

    // Expired keys give their slot back once moka's timer wheel (about 1 s buckets) runs.
    let small = Node::start(&in_process(1)).await;
    let short = small.services.once.namespace("short").unwrap();
    let ttl = Duration::from_millis(50);
    assert!(short.first("x", ttl).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match short.first("y", ttl).await {
            Ok(first) => break assert!(first),
            Err(OnceError::Full { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("slot of an expired key never came back: {err}"),
        }
    }
}

#[tokio::test]
async fn bad_namespaces_keys_and_ttls_are_errors() {
    let node = Node::start(&in_process(10)).await;
    assert!(matches!(
        node.services.once.namespace("uniq"),
        Err(OnceError::InvalidNamespace(_))
    ));
    let keys = node.services.once.namespace("k").unwrap();
    let ttl = Duration::from_secs(1);
    assert!(matches!(
        keys.first("", ttl).await,
        Err(OnceError::InvalidKey(0))
    ));
    let long = "k".repeat(bourse_services::MAX_ONCE_KEY_LEN + 1);
    assert!(matches!(
        keys.first(&long, ttl).await,
        Err(OnceError::InvalidKey(513))
    ));
    assert!(matches!(
        keys.first("k", Duration::ZERO).await,
        Err(OnceError::InvalidTtl(_))
    ));
    assert!(matches!(
        keys.claim("k", bourse_services::MAX_ONCE_TTL + Duration::from_secs(1))
            .await,
        Err(OnceError::InvalidTtl(_))
    ));
}

/// Claims behave alike in process and in Redis: a release lets the next caller win; a dropped
/// claim keeps the key; a late release never frees someone else's claim.
async fn check_claims(services: &Services) {
    let orders = services.once.namespace("order").unwrap();
    let minute = Duration::from_secs(60);
    let claim = orders.claim("o-1", minute).await.unwrap().unwrap();
    assert_eq!(claim.key(), "order:o-1");
    assert!(orders.claim("o-1", minute).await.unwrap().is_none());
    assert!(!orders.first("o-1", minute).await.unwrap());
    claim.release().await.unwrap();
    let retried = orders.claim("o-1", minute).await.unwrap();
    assert!(retried.is_some(), "a released key is free again");
    drop(retried);
    assert!(
        !orders.first("o-1", minute).await.unwrap(),
        "dropping keeps it"
    );

    // The claim expires and someone else takes the key; the late release leaves theirs alone.
    let short = Duration::from_millis(150);
    let stale = orders.claim("o-2", short).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = orders.claim("o-2", minute).await.unwrap();
    assert!(fresh.is_some(), "an expired claim is free again");
    stale.release().await.unwrap();
    assert!(!orders.first("o-2", minute).await.unwrap());
    // `first` keys cannot be released by anyone: it hands out no claim.
    assert!(orders.first("o-3", minute).await.unwrap());
    assert!(orders.claim("o-3", minute).await.unwrap().is_none());
}

#[tokio::test]
async fn in_process_claims_can_be_released() {
    let node = Node::start(&in_process(100)).await;
    check_claims(&node.services).await;
    // Released keys give their slot back.
    let held = node.services.once.held_in_process();
    let scratch = node.services.once.namespace("scratch").unwrap();
    let claim = scratch
        .claim("s", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.services.once.held_in_process(), held + 1);
    claim.release().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while node.services.once.held_in_process() != held {
        assert!(Instant::now() < deadline, "a released key kept its slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn redis_claims_can_be_released() {
    let prefix = unique_prefix("claims");
    let node = Node::start(&redis_config(&prefix)).await;
    check_claims(&node.services).await;
    // Another node sees what Redis holds: the retried claim of o-1 and the fresh one of o-2,
    // which the stale release left alone.
    let other = Node::start(&redis_config(&prefix)).await;
    let orders = other.services.once.namespace("order").unwrap();
    for key in ["o-1", "o-2", "o-3"] {
        assert!(
            !orders.first(key, Duration::from_secs(60)).await.unwrap(),
            "{key}"
        );
    }
    delete_keys(&redis_url(), &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_concurrent_duplicates_on_two_nodes_yield_exactly_one_first() {
    let prefix = unique_prefix("once");
    // Two nodes with their own connections.
    let (node_a, node_b) = (
        Node::start(&redis_config(&prefix)).await,
        Node::start(&redis_config(&prefix)).await,
    );
    assert_eq!(node_a.services.once.backend(), Backend::Redis);
    let namespaces = [
        node_a.services.once.namespace("billed").unwrap(),
        node_b.services.once.namespace("billed").unwrap(),
    ];
    for key in 0..20 {
        let firsts = concurrent_firsts(&namespaces, &format!("imp-{key}")).await;
        assert_eq!(firsts, 1, "key imp-{key}");
    }
    // Each node remembers the claims it won, to answer its own repeats without Redis.
    assert_eq!(
        node_a.services.once.held_in_process() + node_b.services.once.held_in_process(),
        20
    );

    // Stored as documented (`{prefix}:{namespace}:{key}`), with the TTL in milliseconds.
    assert!(
        namespaces[0]
            .first("ttl", Duration::from_millis(1_500))
            .await
            .unwrap()
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:billed:ttl"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((1_000..=1_500).contains(&ttl), "PTTL {ttl}");
    delete_keys(&redis_url(), &prefix);
}

#[tokio::test]
async fn redis_keys_are_new_again_after_their_ttl() {
    let prefix = unique_prefix("once-ttl");
    let (node_a, node_b) = (
        Node::start(&redis_config(&prefix)).await,
        Node::start(&redis_config(&prefix)).await,
    );
    let (wins_a, wins_b) = (
        node_a.services.once.namespace("win").unwrap(),
        node_b.services.once.namespace("win").unwrap(),
    );
    let ttl = Duration::from_millis(300);
    assert!(wins_a.first("win", ttl).await.unwrap());
    assert!(!wins_b.first("win", ttl).await.unwrap());
    assert!(!wins_a.first("win", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(wins_b.first("win", ttl).await.unwrap());
    assert!(!wins_a.first("win", ttl).await.unwrap());
    delete_keys(&redis_url(), &prefix);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_never_a_first() {
    let port = unused_port();
    let err = Services::start(
        &ServicesConfig {
            redis_url: Some(format!("redis://127.0.0.1:{port}")),
            redis_timeout_ms: 200,
            ..ServicesConfig::default()
        },
        &prometheus::Registry::new(),
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ServiceError::Connect { .. }), "{err}");

    // Connected first, then Redis goes away: every answer is an error.
    let mut server = PrivateRedis::start();
    let node = Node::start(&ServicesConfig {
        redis_url: Some(server.url.clone()),
        redis_timeout_ms: 300,
        ..ServicesConfig::default()
    })
    .await;
    let billed = node.services.once.namespace("billed").unwrap();
    assert!(
        billed
            .first("before", Duration::from_secs(60))
            .await
            .unwrap()
    );
    server.kill();
    let started = Instant::now();
    for attempt in 0..3 {
        let result = billed.first("after", Duration::from_secs(60)).await;
        assert!(
            matches!(result, Err(OnceError::Redis(_))),
            "attempt {attempt}: {result:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        node.metric("bourse_kernel_once_refusals_total", &[("reason", "redis")]),
        Some(3.0)
    );
    // This node's own earlier claim is still known without Redis.
    assert!(
        !billed
            .first("before", Duration::from_secs(60))
            .await
            .unwrap()
    );
}
