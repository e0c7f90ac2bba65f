//! Live reconfiguration: backends swapped behind the handles already given out, from process
//! to Redis and back, with what each switch keeps; failed switches that change nothing; and
//! recording while switching.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bourse_services::{
    Backend, EventsConfig, OnceConfig, ServiceError, ServicesConfig, UniquesConfig, Window,
};

use crate::support::{PrivateRedis, delete_keys, redis_url, unique_prefix, unused_port};
use crate::{AdDimensions, Node, items, now, relative_error};

fn redis_config(prefix: &str, url: &str) -> ServicesConfig {
    ServicesConfig {
        redis_url: Some(url.to_owned()),
        key_prefix: prefix.to_owned(),
        uniques: UniquesConfig {
            // Only explicit flushes and switches write, so the test knows what is pending.
            flush_interval_ms: 3_600_000,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_process_to_redis_and_back() {
    let url = redis_url();
    let prefix = unique_prefix("switch");
    let in_process = ServicesConfig {
        redis_url: None,
        ..redis_config(&prefix, &url)
    };
    let node = Node::start(&in_process).await;
    // Handles taken before any switch: they must follow every switch.
    let uniques = node.services.uniques.clone();
    let billed = node.services.once.namespace("billed").unwrap();
    let ad = AdDimensions::intern(&node.services);
    let slot: Arc<str> = "slot".into();
    let ts = now();
    let minute = Duration::from_secs(60);

    // In process: 300 users and a billed impression.
    for user in items(0..300) {
        uniques.record(user, ts, &ad.keys(&slot));
    }
    assert!(billed.first("imp-1", minute).await.unwrap());
    assert_eq!(
        uniques
            .count(ad.placement, "slot", Window::Hour(ts))
            .await
            .unwrap(),
        300
    );

    // To Redis. The impression billed in process is copied there: another node sharing that
    // Redis refuses it too.
    node.services
        .reconfigure(&redis_config(&prefix, &url))
        .await
        .unwrap();
    assert_eq!(uniques.backend(), Backend::Redis);
    assert_eq!(node.services.once.backend(), Backend::Redis);
    let other = Node::start(&redis_config(&prefix, &url)).await;
    let other_billed = other.services.once.namespace("billed").unwrap();
    assert!(!other_billed.first("imp-1", minute).await.unwrap());
    assert!(!billed.first("imp-1", minute).await.unwrap());
    // Redis counts what is recorded from now on (the in-process sketch cannot be replayed).
    for user in items(1_000..1_200) {
        uniques.record(user, ts, &ad.keys(&slot));
    }
    uniques.flush().await.unwrap();
    let in_redis = uniques
        .count(ad.placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert!(relative_error(in_redis, 200) <= 0.03, "{in_redis}");
    // A claim won in Redis by this node.
    assert!(billed.first("imp-2", minute).await.unwrap());

    // Pending items (no flush) must reach Redis when leaving it.
    for user in items(2_000..2_100) {
        uniques.record(user, ts, &ad.keys(&slot));
    }
    node.services.reconfigure(&in_process).await.unwrap();
    assert_eq!(uniques.backend(), Backend::InProcess);
    assert_eq!(node.services.once.backend(), Backend::InProcess);
    let other_placement = other.services.uniques.dimension("placement").unwrap();
    let written = other
        .services
        .uniques
        .count(other_placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert!(relative_error(written, 300) <= 0.03, "{written}");
    // Back in process, this node still refuses what it billed in either mode.
    assert!(!billed.first("imp-1", minute).await.unwrap());
    assert!(!billed.first("imp-2", minute).await.unwrap());
    assert!(billed.first("imp-3", minute).await.unwrap());
    // In-process counts start again from what is recorded now.
    uniques.record(7, ts, &ad.keys(&slot));
    assert_eq!(
        uniques
            .count(ad.placement, "slot", Window::Hour(ts))
            .await
            .unwrap(),
        1
    );
    assert_eq!(uniques.dropped(), 0);
    node.services.shutdown(Duration::from_secs(5)).await;
    other.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test]
async fn retuning_in_process_keeps_the_sketches_unless_the_precision_changes() {
    let node = Node::start(&ServicesConfig::default()).await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    let slot: Arc<str> = "slot".into();
    for user in 0..50 {
        uniques.record(user, ts, &ad.keys(&slot));
    }
    let tuned = ServicesConfig {
        uniques: UniquesConfig {
            max_ids_per_dimension: 1,
            batch_size: 500,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    };
    node.services.reconfigure(&tuned).await.unwrap();
    assert_eq!(
        uniques
            .count(ad.placement, "slot", Window::Hour(ts))
            .await
            .unwrap(),
        50
    );
    // The new id limit applies to the kept sketches.
    uniques.record(1, ts, &ad.keys(&"other".into()));
    uniques.flush().await.unwrap();
    assert_eq!(
        node.metric(
            "bourse_reach_events_rejected_total",
            &[("reason", "too_many_ids")]
        ),
        Some(1.0)
    );

    let finer = ServicesConfig {
        uniques: UniquesConfig {
            precision: 16,
            ..tuned.uniques.clone()
        },
        ..tuned
    };
    node.services.reconfigure(&finer).await.unwrap();
    assert_eq!(uniques.precision(), 16);
    assert_eq!(
        uniques
            .count(ad.placement, "slot", Window::Hour(ts))
            .await
            .unwrap(),
        0,
        "sketches of another precision cannot be kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_recorded_while_switching_are_counted_or_counted_as_dropped() {
    let node = Node::start(&ServicesConfig::default()).await;
    let uniques = node.services.uniques.clone();
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    let recording = Arc::new(AtomicBool::new(true));
    let producer = {
        let uniques = uniques.clone();
        let keys = ad.keys(&"slot".into());
        let recording = Arc::clone(&recording);
        std::thread::spawn(move || {
            let mut recorded = 0_u64;
            while recording.load(Ordering::Relaxed) && recorded < 1_000 {
                uniques.record(recorded, ts, &keys);
                recorded += 1;
                if recorded.is_multiple_of(50) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            recorded
        })
    };
    // Alternate between two tunings that keep the sketches.
    for round in 0..20 {
        let config = ServicesConfig {
            uniques: UniquesConfig {
                max_ids_per_dimension: 10_000 + round % 2,
                ..UniquesConfig::default()
            },
            ..ServicesConfig::default()
        };
        node.services.reconfigure(&config).await.unwrap();
    }
    recording.store(false, Ordering::Relaxed);
    let recorded = tokio::task::spawn_blocking(move || producer.join().unwrap())
        .await
        .unwrap();
    uniques.flush().await.unwrap();
    let counted = uniques
        .count(ad.placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    // Up to 1 000 distinct items the sketch is exact. The queue is handed from one aggregator
    // to the next, so with room in it a switch loses nothing.
    assert_eq!(uniques.dropped(), 0);
    assert_eq!(counted, recorded);
    assert!(recorded > 0);
}

#[tokio::test]
async fn a_failed_switch_changes_nothing() {
    let node = Node::start(&ServicesConfig::default()).await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let billed = node.services.once.namespace("billed").unwrap();
    let ts = now();
    uniques.record(1, ts, &ad.keys(&"slot".into()));
    assert!(billed.first("imp", Duration::from_secs(60)).await.unwrap());

    let unreachable = ServicesConfig {
        redis_url: Some(format!("redis://127.0.0.1:{}", unused_port())),
        redis_timeout_ms: 200,
        events: EventsConfig {
            default_capacity: 7,
        },
        ..ServicesConfig::default()
    };
    let err = node.services.reconfigure(&unreachable).await.unwrap_err();
    assert!(matches!(err, ServiceError::Connect { .. }), "{err}");
    assert_eq!(uniques.backend(), Backend::InProcess);
    assert_eq!(node.services.once.backend(), Backend::InProcess);
    assert_eq!(
        uniques
            .count(ad.placement, "slot", Window::Hour(ts))
            .await
            .unwrap(),
        1
    );
    assert!(!billed.first("imp", Duration::from_secs(60)).await.unwrap());
    // Not even the parts that needed no Redis were applied.
    let topic = node.services.events.topic::<u32>("probe").unwrap();
    let mut subscription = topic.subscribe_default();
    for value in 0..10 {
        topic.publish(value);
    }
    let mut received = Vec::new();
    subscription.recv_many(&mut received, 100).await;
    assert_eq!(received.len(), 10, "default capacity is still 4 096");

    let bad = ServicesConfig {
        key_prefix: String::new(),
        ..ServicesConfig::default()
    };
    let err = node.services.reconfigure(&bad).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "services config: `key_prefix` must be 1 to 64 bytes without whitespace"
    );
}

#[tokio::test]
async fn settings_without_a_backend_apply_in_place() {
    let node = Node::start(&ServicesConfig::default()).await;
    let billed = node.services.once.namespace("billed").unwrap();
    let minute = Duration::from_secs(60);
    assert!(billed.first("a", minute).await.unwrap());
    node.services
        .reconfigure(&ServicesConfig {
            once: OnceConfig { max_keys: 1 },
            events: EventsConfig {
                default_capacity: 2,
            },
            ..ServicesConfig::default()
        })
        .await
        .unwrap();
    // The key taken before is kept, and the new limit counts it.
    assert!(!billed.first("a", minute).await.unwrap());
    assert!(matches!(
        billed.first("b", minute).await,
        Err(bourse_services::OnceError::Full { limit: 1 })
    ));
    let topic = node.services.events.topic::<u32>("capacity").unwrap();
    let _subscription = topic.subscribe_default();
    for value in 0..5 {
        topic.publish(value);
    }
    assert_eq!(topic.dropped(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_redis_gets_the_pending_batch_written_to_the_old_one_and_the_keys() {
    let old_redis = PrivateRedis::start();
    let new_redis = PrivateRedis::start();
    let node = Node::start(&redis_config("bourse", &old_redis.url)).await;
    let ad = AdDimensions::intern(&node.services);
    let billed = node.services.once.namespace("billed").unwrap();
    let ts = now();
    for user in items(0..100) {
        node.services
            .uniques
            .record(user, ts, &ad.keys(&"slot".into()));
    }
    assert!(billed.first("imp", Duration::from_secs(60)).await.unwrap());
    node.services
        .reconfigure(&redis_config("bourse", &new_redis.url))
        .await
        .unwrap();

    let count_in = |url: &str| {
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_connection().unwrap();
        let key = format!("bourse:uniq:placement:slot:h:{}", Window::Hour(ts).label());
        redis::cmd("PFCOUNT")
            .arg(key)
            .query::<u64>(&mut connection)
            .unwrap()
    };
    assert!(relative_error(count_in(&old_redis.url), 100) <= 0.03);
    assert_eq!(count_in(&new_redis.url), 0);
    // The billed key was copied into the new Redis, with its TTL.
    let client = redis::Client::open(new_redis.url.as_str()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("bourse:billed:imp")
        .query(&mut connection)
        .unwrap();
    assert!((50_000..=60_000).contains(&ttl), "PTTL {ttl}");
    node.services.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_unchanged_config_is_a_no_op() {
    let url = redis_url();
    let prefix = unique_prefix("unchanged");
    let config = redis_config(&prefix, &url);
    let node = Node::start(&config).await;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    node.services
        .uniques
        .record(1, ts, &ad.keys(&"slot".into()));
    node.services.reconfigure(&config.clone()).await.unwrap();
    // A switch would have written the pending item to Redis; nothing was switched.
    let reader = Node::start(&config).await;
    let placement = reader.services.uniques.dimension("placement").unwrap();
    let window = Window::Hour(ts);
    assert_eq!(
        reader
            .services
            .uniques
            .count(placement, "slot", window)
            .await
            .unwrap(),
        0
    );
    node.services.uniques.flush().await.unwrap();
    assert_eq!(
        reader
            .services
            .uniques
            .count(placement, "slot", window)
            .await
            .unwrap(),
        1
    );
    delete_keys(&url, &prefix);
}
