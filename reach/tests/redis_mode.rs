//! Reach through the public API against a real Redis: shared counts across two nodes, day
//! roll-ups, batching, outages and start-up failures.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bourse_reach::{Backend, Dimension, Reach, ReachConfig, ReachError, ReachEvent, Window};
use support::{PrivateRedis, delete_keys, redis_url, unique_prefix};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn event(user_hash: u64, placement: &Arc<str>, timestamp: u64) -> ReachEvent {
    ReachEvent {
        user_hash,
        placement: Arc::clone(placement),
        publisher: "news".into(),
        bidder: "dsp-a".into(),
        timestamp,
    }
}

/// Distinct pseudo-random user hashes: `users(lo, hi)` and `users(a, b)` overlap exactly where
/// the index ranges do.
fn users(range: std::ops::Range<u64>) -> impl Iterator<Item = u64> {
    range.map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

async fn node(prefix: &str, url: &str) -> Reach {
    bourse_reach::start(ReachConfig {
        redis_url: Some(url.to_owned()),
        key_prefix: prefix.to_owned(),
        // Room for a whole test's events: drops would make counts wrong for the wrong reason.
        channel_capacity: 400_000,
        ..ReachConfig::default()
    })
    .await
    .unwrap()
}

fn relative_error(estimate: u64, truth: u64) -> f64 {
    (estimate as f64 - truth as f64).abs() / truth as f64
}

#[tokio::test]
async fn counts_are_written_to_redis_and_reported() {
    let url = redis_url();
    let prefix = unique_prefix("basic");
    let reach = node(&prefix, &url).await;
    let ts = now();
    let (top, side): (Arc<str>, Arc<str>) = ("top".into(), "side".into());
    for user in users(0..300) {
        reach.recorder.record(event(user, &top, ts));
    }
    for user in users(200..500) {
        // Repeats (back to back and not) must not inflate the count.
        reach.recorder.record(event(user, &side, ts));
        reach.recorder.record(event(user, &side, ts));
    }
    reach.recorder.flush().await.unwrap();

    let hour = reach.query.counts(Window::Hour(ts)).await.unwrap();
    let summary: Vec<(Dimension, &str)> = hour
        .iter()
        .map(|count| (count.dimension, count.id.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (Dimension::Placement, "side"),
            (Dimension::Placement, "top"),
            (Dimension::Publisher, "news"),
            (Dimension::Bidder, "dsp-a"),
        ]
    );
    for (count, truth) in hour.iter().zip([300, 300, 500, 500]) {
        assert!(
            relative_error(count.uniques, truth) <= 0.03,
            "{count:?} vs {truth}"
        );
    }
    let report = reach
        .query
        .report(&[Window::Hour(ts), Window::Day(ts)])
        .await
        .unwrap();
    assert_eq!(report.backend, Backend::Redis);
    assert_eq!(report.precision, 14);
    assert_eq!(report.windows[1].counts.len(), 4);
    assert_eq!(
        reach
            .query
            .uniques(Dimension::Bidder, "unknown", Window::Day(ts))
            .await
            .unwrap(),
        0
    );
    reach.aggregator.shutdown().await.unwrap();
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_accuracy_through_the_recorder() {
    let url = redis_url();
    let prefix = unique_prefix("pipeline");
    let reach = node(&prefix, &url).await;
    let ts = now();
    for (n, trials) in [(1_000_u64, 10_u64), (100_000, 3)] {
        for trial in 0..trials {
            let placement: Arc<str> = format!("slot-{n}-{trial}").into();
            let first = (trial + 1) << 40;
            for user in users(first..first + n) {
                reach.recorder.record(event(user, &placement, ts));
            }
            reach.recorder.flush().await.unwrap();
            let estimate = reach
                .query
                .uniques(Dimension::Placement, &placement, Window::Hour(ts))
                .await
                .unwrap();
            // The accuracy statistics live in the unit tests; here every event must arrive.
            assert!(
                relative_error(estimate, n) <= 0.03,
                "n={n} trial={trial}: {estimate}"
            );
        }
    }
    assert_eq!(reach.recorder.dropped_events(), 0);
    reach.aggregator.shutdown().await.unwrap();
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_count() {
    let url = redis_url();
    let prefix = unique_prefix("nodes");
    let (node_a, node_b) = (node(&prefix, &url).await, node(&prefix, &url).await);
    let ts = now();
    let shared: Arc<str> = "shared".into();
    // 60 000 users each, 20 000 in common: the union is 100 000.
    for user in users(0..60_000) {
        node_a.recorder.record(event(user, &shared, ts));
    }
    for user in users(40_000..100_000) {
        node_b.recorder.record(event(user, &shared, ts));
    }
    node_a.recorder.flush().await.unwrap();
    node_b.recorder.flush().await.unwrap();

    let seen_by_a = node_a
        .query
        .uniques(Dimension::Placement, "shared", Window::Hour(ts))
        .await
        .unwrap();
    let seen_by_b = node_b
        .query
        .uniques(Dimension::Placement, "shared", Window::Hour(ts))
        .await
        .unwrap();
    assert_eq!(seen_by_a, seen_by_b);
    assert!(
        relative_error(seen_by_a, 100_000) <= 0.03,
        "union of both nodes estimated at {seen_by_a}"
    );
    // Not the sum (120 000) nor either node alone (60 000).
    node_a.aggregator.shutdown().await.unwrap();
    node_b.aggregator.shutdown().await.unwrap();
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_rolls_up_to_the_union_of_its_hours() {
    let url = redis_url();
    let prefix = unique_prefix("rollup");
    let (node_a, node_b) = (node(&prefix, &url).await, node(&prefix, &url).await);
    // Yesterday is whole and inside the 48 retained hours whatever the time of day.
    let yesterday = now() / 86_400 * 86_400 - 86_400;
    let slot: Arc<str> = "slot".into();
    // Three hours with audiences of 60 000 shifted by 20 000: the day has 100 000 users.
    for (index, hour) in [3_u64, 10, 15].into_iter().enumerate() {
        let ts = yesterday + hour * 3_600 + 59;
        let first = index as u64 * 20_000;
        for user in users(first..first + 60_000) {
            // Split across the two nodes, as a load balancer would.
            let recorder = if user % 2 == 0 {
                &node_a.recorder
            } else {
                &node_b.recorder
            };
            recorder.record(event(user, &slot, ts));
        }
    }
    node_a.recorder.flush().await.unwrap();
    node_b.recorder.flush().await.unwrap();

    let day = node_a
        .query
        .uniques(Dimension::Placement, "slot", Window::Day(yesterday))
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
        .map(|hour| format!("{prefix}:reach:placement:slot:h:{date}{hour:02}"))
        .collect();
    let union: u64 = redis::cmd("PFCOUNT")
        .arg(&hour_keys)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(day, union);
    let day_key = format!("{prefix}:reach:placement:slot:d:{date}");
    let day_ttl: i64 = redis::cmd("TTL")
        .arg(&day_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        (2 * 86_400..=3 * 86_400).contains(&day_ttl),
        "day key TTL {day_ttl}"
    );

    // Each hour on its own is a third of the users, and the listing shows the day too.
    let hour_10 = node_b
        .query
        .uniques(
            Dimension::Placement,
            "slot",
            Window::Hour(yesterday + 10 * 3_600),
        )
        .await
        .unwrap();
    assert!(
        relative_error(hour_10, 60_000) <= 0.03,
        "hour estimated at {hour_10}"
    );
    let listed = node_b.query.counts(Window::Day(yesterday)).await.unwrap();
    let listed_slot = listed
        .iter()
        .find(|count| count.dimension == Dimension::Placement && count.id == "slot")
        .unwrap();
    assert_eq!(listed_slot.uniques, day);
    node_a.aggregator.shutdown().await.unwrap();
    node_b.aggregator.shutdown().await.unwrap();
    delete_keys(&url, &prefix);
}

#[tokio::test]
async fn gauges_show_every_nodes_users_for_the_current_hour_and_day() {
    let url = redis_url();
    let prefix = unique_prefix("gauges");
    let config = ReachConfig {
        redis_url: Some(url.clone()),
        key_prefix: prefix.clone(),
        metrics_interval_ms: 50,
        ..ReachConfig::default()
    };
    let node_a = bourse_reach::start(config.clone()).await.unwrap();
    let node_b = bourse_reach::start(config).await.unwrap();
    let registry = prometheus::Registry::new();
    node_a.query.register_metrics(&registry).unwrap();
    let ts = now();
    let slot: Arc<str> = "slot".into();
    for user in users(0..400) {
        node_a.recorder.record(event(user, &slot, ts));
    }
    for user in users(300..700) {
        node_b.recorder.record(event(user, &slot, ts));
    }
    node_a.recorder.flush().await.unwrap();
    node_b.recorder.flush().await.unwrap();
    let expected = node_a
        .query
        .uniques(Dimension::Placement, "slot", Window::Day(ts))
        .await
        .unwrap();
    assert!(relative_error(expected, 700) <= 0.03, "{expected}");

    // Node A's gauges include node B's users: both windows converge on the shared count.
    let gauge = |window: &str| {
        registry
            .gather()
            .iter()
            .filter(|family| family.name() == "bourse_reach_unique_users")
            .flat_map(|family| family.get_metric())
            .find(|metric| {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|label| label.name() == name)
                        .map(|label| label.value().to_owned())
                };
                label("dimension").as_deref() == Some("placement")
                    && label("id").as_deref() == Some("slot")
                    && label("window").as_deref() == Some(window)
            })
            .map(|metric| metric.get_gauge().get_value() as u64)
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
    node_a.aggregator.shutdown().await.unwrap();
    node_b.aggregator.shutdown().await.unwrap();
    delete_keys(&url, &prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_keeps_the_batch_until_redis_is_back() {
    let mut redis_server = PrivateRedis::start();
    let url = redis_server.url.clone();
    let reach = bourse_reach::start(ReachConfig {
        redis_url: Some(url.clone()),
        // Only explicit flushes write, so the test decides when Redis is asked.
        flush_interval_ms: 3_600_000,
        redis_timeout_ms: 300,
        ..ReachConfig::default()
    })
    .await
    .unwrap();
    let ts = now();
    let slot: Arc<str> = "slot".into();
    for user in users(0..500) {
        reach.recorder.record(event(user, &slot, ts));
    }
    reach.recorder.flush().await.unwrap();
    // Redis dies (taking the first 500 users with it: no persistence) while more arrive.
    redis_server.kill();
    for user in users(1_000..1_600) {
        reach.recorder.record(event(user, &slot, ts));
    }
    let err = reach.recorder.flush().await.unwrap_err();
    assert!(matches!(err, ReachError::Redis(_)), "{err}");

    // Same port, empty server: the retained batch is written once it answers again.
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    let _restarted = PrivateRedis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = reach.recorder.flush().await {
        assert!(Instant::now() < deadline, "Redis never came back: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let uniques = reach
        .query
        .uniques(Dimension::Placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert!(relative_error(uniques, 600) <= 0.03, "{uniques}");
    // The slot was indexed before the outage; it is indexed again on the new server.
    let listed = reach.query.counts(Window::Hour(ts)).await.unwrap();
    assert!(listed.iter().any(|count| count.id == "slot"), "{listed:?}");
    assert_eq!(reach.recorder.dropped_events(), 0);
    reach.aggregator.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_fails_start_with_a_redacted_url() {
    let port = support::unused_port();
    let started = Instant::now();
    let err = bourse_reach::start(ReachConfig {
        redis_url: Some(format!("redis://user:hunter2@127.0.0.1:{port}")),
        redis_timeout_ms: 200,
        ..ReachConfig::default()
    })
    .await
    .err()
    .unwrap();
    let message = err.to_string();
    assert!(matches!(err, ReachError::Connect { .. }), "{message}");
    assert!(
        message.contains(&format!("redis://***@127.0.0.1:{port}")),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
