//! Unique counts against a real Redis: shared counts across two nodes, day roll-ups, batching,
//! outages, dimensions other nodes interned and start-up failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_services::{Backend, ServiceError, Services, ServicesConfig, UniquesConfig, Window};

use crate::support::{PrivateRedis, delete_keys, redis_url, unique_prefix, unused_port};
use crate::{AdDimensions, Node, items, now, relative_error};

fn redis_config(prefix: &str, url: &str) -> ServicesConfig {
    ServicesConfig {
        redis_url: Some(url.to_owned()),
        key_prefix: prefix.to_owned(),
        uniques: UniquesConfig {
            // Room for a whole test's items: drops would make counts wrong for the wrong reason.
            channel_capacity: 400_000,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    }
}

async fn node(prefix: &str, url: &str) -> Node {
    Node::start(&redis_config(prefix, url)).await
}

#[tokio::test]
async fn counts_are_written_to_redis_and_reported() {
    let url = redis_url();
    let prefix = unique_prefix("basic");
    let node = node(&prefix, &url).await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    let (top, side): (Arc<str>, Arc<str>) = ("top".into(), "side".into());
    for user in items(0..300) {
        uniques.record(user, ts, &ad.keys(&top));
    }
    for user in items(200..500) {
        // Repeats (back to back and not) must not inflate the count.
        uniques.record(user, ts, &ad.keys(&side));
        uniques.record(user, ts, &ad.keys(&side));
    }
    uniques.flush().await.unwrap();

    let hour = uniques.counts(Window::Hour(ts)).await.unwrap();
    let listed: Vec<(&str, &str)> = hour
        .iter()
        .map(|count| (&*count.dimension, count.id.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("placement", "side"),
            ("placement", "top"),
            ("publisher", "news"),
            ("bidder", "dsp-a"),
        ]
    );
    for (count, truth) in hour.iter().zip([300, 300, 500, 500]) {
        assert!(
            relative_error(count.estimate, truth) <= 0.03,
            "{count:?} vs {truth}"
        );
    }
    assert_eq!(uniques.backend(), Backend::Redis);
    assert_eq!(uniques.precision(), 14);
    assert_eq!(uniques.counts(Window::Day(ts)).await.unwrap().len(), 4);
    assert_eq!(
        uniques
            .count(ad.bidder, "unknown", Window::Day(ts))
            .await
            .unwrap(),
        0
    );
    node.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_accuracy_through_record() {
    let url = redis_url();
    let prefix = unique_prefix("pipeline");
    let node = node(&prefix, &url).await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    for (n, trials) in [(1_000_u64, 10_u64), (100_000, 3)] {
        for trial in 0..trials {
            let placement: Arc<str> = format!("slot-{n}-{trial}").into();
            let first = (trial + 1) << 40;
            for user in items(first..first + n) {
                uniques.record(user, ts, &ad.keys(&placement));
            }
            uniques.flush().await.unwrap();
            let estimate = uniques
                .count(ad.placement, &placement, Window::Hour(ts))
                .await
                .unwrap();
            // The accuracy statistics live in the unit tests; here every item must arrive.
            assert!(
                relative_error(estimate, n) <= 0.03,
                "n={n} trial={trial}: {estimate}"
            );
        }
    }
    assert_eq!(uniques.dropped(), 0);
    node.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_count() {
    let url = redis_url();
    let prefix = unique_prefix("nodes");
    let (node_a, node_b) = (node(&prefix, &url).await, node(&prefix, &url).await);
    let (ad_a, ad_b) = (
        AdDimensions::intern(&node_a.services),
        AdDimensions::intern(&node_b.services),
    );
    let ts = now();
    let shared: Arc<str> = "shared".into();
    // 60 000 items each, 20 000 in common: the union is 100 000.
    for user in items(0..60_000) {
        node_a
            .services
            .uniques
            .record(user, ts, &ad_a.keys(&shared));
    }
    for user in items(40_000..100_000) {
        node_b
            .services
            .uniques
            .record(user, ts, &ad_b.keys(&shared));
    }
    node_a.services.uniques.flush().await.unwrap();
    node_b.services.uniques.flush().await.unwrap();

    let seen_by_a = node_a
        .services
        .uniques
        .count(ad_a.placement, "shared", Window::Hour(ts))
        .await
        .unwrap();
    let seen_by_b = node_b
        .services
        .uniques
        .count(ad_b.placement, "shared", Window::Hour(ts))
        .await
        .unwrap();
    assert_eq!(seen_by_a, seen_by_b);
    // Not the sum (120 000) nor either node alone (60 000).
    assert!(
        relative_error(seen_by_a, 100_000) <= 0.03,
        "union of both nodes estimated at {seen_by_a}"
    );
    node_a.services.shutdown(Duration::from_secs(5)).await;
    node_b.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test]
async fn dimensions_another_node_interned_are_listed_after_ours() {
    let url = redis_url();
    let prefix = unique_prefix("foreign");
    let (node_a, node_b) = (node(&prefix, &url).await, node(&prefix, &url).await);
    let ad = AdDimensions::intern(&node_a.services);
    // Only node B knows "link" (a site's dimension); node A still reports it, by name.
    let link = node_b
        .services
        .uniques
        .dimension_without_gauges("link")
        .unwrap();
    let ts = now();
    node_a
        .services
        .uniques
        .record(1, ts, &ad.keys(&"slot".into()));
    node_b
        .services
        .uniques
        .record(2, ts, &[(link, "short:abc".into())]);
    node_a.services.uniques.flush().await.unwrap();
    node_b.services.uniques.flush().await.unwrap();
    let listed: Vec<String> = node_a
        .services
        .uniques
        .counts(Window::Hour(ts))
        .await
        .unwrap()
        .iter()
        .map(|count| format!("{}/{}={}", count.dimension, count.id, count.estimate))
        .collect();
    assert_eq!(
        listed,
        [
            "placement/slot=1",
            "publisher/news=1",
            "bidder/dsp-a=1",
            "link/short:abc=1"
        ]
    );
    node_a.services.shutdown(Duration::from_secs(5)).await;
    node_b.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_rolls_up_to_the_union_of_its_hours() {
    let url = redis_url();
    let prefix = unique_prefix("rollup");
    let (node_a, node_b) = (node(&prefix, &url).await, node(&prefix, &url).await);
    let (ad_a, ad_b) = (
        AdDimensions::intern(&node_a.services),
        AdDimensions::intern(&node_b.services),
    );
    // Yesterday is whole and inside the 48 retained hours whatever the time of day.
    let yesterday = now() / 86_400 * 86_400 - 86_400;
    let slot: Arc<str> = "slot".into();
    // Three hours with audiences of 60 000 shifted by 20 000: the day has 100 000 items.
    for (index, hour) in [3_u64, 10, 15].into_iter().enumerate() {
        let ts = yesterday + hour * 3_600 + 59;
        let first = index as u64 * 20_000;
        for user in items(first..first + 60_000) {
            // Split across the two nodes, as a load balancer would.
            if user % 2 == 0 {
                node_a.services.uniques.record(user, ts, &ad_a.keys(&slot));
            } else {
                node_b.services.uniques.record(user, ts, &ad_b.keys(&slot));
            }
        }
    }
    node_a.services.uniques.flush().await.unwrap();
    node_b.services.uniques.flush().await.unwrap();

    let day = node_a
        .services
        .uniques
        .count(ad_a.placement, "slot", Window::Day(yesterday))
        .await
        .unwrap();
    assert!(
        relative_error(day, 100_000) <= 0.03,
        "day estimated at {day}"
    );

    // The roll-up is exactly the union Redis computes over the day's hour keys.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let date = Window::Day(yesterday).label();
    let hour_keys: Vec<String> = (0..24)
        .map(|hour| format!("{prefix}:uniq:placement:slot:h:{date}{hour:02}"))
        .collect();
    let union: u64 = redis::cmd("PFCOUNT")
        .arg(&hour_keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(day, union);
    let day_key = format!("{prefix}:uniq:placement:slot:d:{date}");
    let day_ttl: i64 = redis::cmd("TTL")
        .arg(&day_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        (2 * 86_400..=3 * 86_400).contains(&day_ttl),
        "day key TTL {day_ttl}"
    );

    // Each hour on its own is a third of the items, and the listing shows the day too.
    let hour_10 = node_b
        .services
        .uniques
        .count(ad_b.placement, "slot", Window::Hour(yesterday + 10 * 3_600))
        .await
        .unwrap();
    assert!(
        relative_error(hour_10, 60_000) <= 0.03,
        "hour estimated at {hour_10}"
    );
    let listed = node_b
        .services
        .uniques
        .counts(Window::Day(yesterday))
        .await
        .unwrap();
    let listed_slot = listed
        .iter()
        .find(|count| &*count.dimension == "placement" && count.id == "slot")
        .unwrap();
    assert_eq!(listed_slot.estimate, day);
    node_a.services.shutdown(Duration::from_secs(5)).await;
    node_b.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test]
async fn gauges_show_every_nodes_items_for_the_current_hour_and_day() {
    let url = redis_url();
    let prefix = unique_prefix("gauges");
    let config = ServicesConfig {
        uniques: UniquesConfig {
            metrics_interval_ms: 50,
            ..UniquesConfig::default()
        },
        ..redis_config(&prefix, &url)
    };
    let node_a = Node::start(&config).await;
    let node_b = Node::start(&config).await;
    let (ad_a, ad_b) = (
        AdDimensions::intern(&node_a.services),
        AdDimensions::intern(&node_b.services),
    );
    let ts = now();
    let slot: Arc<str> = "slot".into();
    for user in items(0..400) {
        node_a.services.uniques.record(user, ts, &ad_a.keys(&slot));
    }
    for user in items(300..700) {
        node_b.services.uniques.record(user, ts, &ad_b.keys(&slot));
    }
    node_a.services.uniques.flush().await.unwrap();
    node_b.services.uniques.flush().await.unwrap();
    let expected = node_a
        .services
        .uniques
        .count(ad_a.placement, "slot", Window::Day(ts))
        .await
        .unwrap();
    assert!(relative_error(expected, 700) <= 0.03, "{expected}");

    // Node A's gauges include node B's items: both windows converge on the shared count.
    let gauge = |window: &str| {
        node_a
            .metric(
                "bourse_reach_unique_users",
                &[
                    ("dimension", "placement"),
                    ("id", "slot"),
                    ("window", window),
                ],
            )
            .map(|value| value as u64)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while gauge("hour") != Some(expected) || gauge("day") != Some(expected) {
        assert!(
            Instant::now() < deadline,
            "gauges stuck at hour {:?}, day {:?}; expected {expected}",
            gauge("hour"),
            gauge("day")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node_a.services.shutdown(Duration::from_secs(5)).await;
    node_b.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_the_batch_until_redis_is_back() {
    let mut redis_server = PrivateRedis::start();
    let url = redis_server.url.clone();
    let node = Node::start(&ServicesConfig {
        redis_url: Some(url.clone()),
        redis_timeout_ms: 300,
        uniques: UniquesConfig {
            // Only explicit flushes write, so the test decides when Redis is asked.
            flush_interval_ms: 3_600_000,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    })
    .await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    let slot: Arc<str> = "slot".into();
    for user in items(0..500) {
        uniques.record(user, ts, &ad.keys(&slot));
    }
    uniques.flush().await.unwrap();
    // Redis dies (taking the first 500 items with it: no persistence) while more arrive.
    redis_server.kill();
    for user in items(1_000..1_600) {
        uniques.record(user, ts, &ad.keys(&slot));
    }
    let err = uniques.flush().await.unwrap_err();
    assert!(
        matches!(err, bourse_services::UniquesError::Redis(_)),
        "{err}"
    );
    assert!(node.metric("bourse_reach_redis_errors_total", &[]).unwrap() >= 1.0);

    // Same port, empty server: the retained batch is written once it answers again.
    let _restarted = PrivateRedis::start_on(redis_server.port());
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = uniques.flush().await {
        assert!(Instant::now() < deadline, "Redis never came back: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counted = uniques
        .count(ad.placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert!(relative_error(counted, 600) <= 0.03, "{counted}");
    // The slot was indexed before the outage; it is indexed again on the new server.
    let listed = uniques.counts(Window::Hour(ts)).await.unwrap();
    assert!(listed.iter().any(|count| count.id == "slot"), "{listed:?}");
    assert_eq!(uniques.dropped(), 0);
    node.services.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_writes_the_pending_batch() {
    let url = redis_url();
    let prefix = unique_prefix("shutdown");
    let node = Node::start(&ServicesConfig {
        uniques: UniquesConfig {
            flush_interval_ms: 3_600_000,
            ..UniquesConfig::default()
        },
        ..redis_config(&prefix, &url)
    })
    .await;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    for user in items(0..200) {
        node.services
            .uniques
            .record(user, ts, &ad.keys(&"slot".into()));
    }
    node.services.shutdown(Duration::from_secs(5)).await;
    let reader = crate::Node::start(&redis_config(&prefix, &url)).await;
    let placement = reader.services.uniques.dimension("placement").unwrap();
    let counted = reader
        .services
        .uniques
        .count(placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert!(relative_error(counted, 200) <= 0.03, "{counted}");
    reader.services.shutdown(Duration::from_secs(5)).await;
    delete_keys(&url, &prefix);
}

#[tokio::test]
async fn an_unreachable_redis_fails_start_with_a_redacted_url() {
    let port = unused_port();
    let started = Instant::now();
    let err = Services::start(
        &ServicesConfig {
            redis_url: Some(format!("redis://user:hunter2@127.0.0.1:{port}")),
            redis_timeout_ms: 200,
            ..ServicesConfig::default()
        },
        &prometheus::Registry::new(),
    )
    .await
    .err()
    .unwrap();
    let message = err.to_string();
    assert!(matches!(err, ServiceError::Connect { .. }), "{message}");
    assert!(
        message.contains(&format!("redis://***@127.0.0.1:{port}")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
