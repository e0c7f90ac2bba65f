//! Reach through the public API with the in-process aggregator: counting, accuracy end to end,
//! bounded queue, metrics, shutdown and config errors.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bourse_reach::{Backend, Dimension, ReachConfig, ReachError, ReachEvent, Window};
use prometheus::Registry;
use prometheus::proto::MetricType;

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

/// Distinct pseudo-random user hashes (a bijection of the index), different per trial.
fn users(trial: u64, n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(move |i| (i + (trial << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[tokio::test]
async fn counts_unique_users_per_dimension_and_window() {
    let reach = bourse_reach::start(ReachConfig::default()).await.unwrap();
    let ts = now();
    let (top, side): (Arc<str>, Arc<str>) = ("top".into(), "side".into());
    for user in 0..300 {
        reach.recorder.record(event(user, &top, ts));
        // Every user seen twice on the side slot: still one unique.
        reach.recorder.record(event(user + 200, &side, ts));
        reach.recorder.record(event(user + 200, &side, ts));
    }
    reach.recorder.flush().await.unwrap();

    let hour = reach.query.counts(Window::Hour(ts)).await.unwrap();
    let summary: Vec<String> = hour
        .iter()
        .map(|count| {
            format!(
                "{}/{}={}",
                count.dimension.as_str(),
                count.id,
                count.uniques
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "placement/side=300",
            "placement/top=300",
            "publisher/news=500",
            "bidder/dsp-a=500"
        ]
    );
    let day_uniques = reach
        .query
        .uniques(Dimension::Publisher, "news", Window::Day(ts))
        .await
        .unwrap();
    assert_eq!(day_uniques, 500);
    assert_eq!(
        reach
            .query
            .uniques(Dimension::Placement, "unknown", Window::Hour(ts))
            .await
            .unwrap(),
        0
    );

    let report = reach
        .query
        .report(&[Window::Hour(ts), Window::Day(ts)])
        .await
        .unwrap();
    assert_eq!(report.backend, Backend::InProcess);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["backend"], "in_process");
    assert_eq!(json["precision"], 14);
    assert_eq!(json["windows"][0]["window"]["granularity"], "hour");
    assert_eq!(json["windows"][0]["window"]["start"], ts - ts % 3_600);
    assert_eq!(json["windows"][1]["window"]["granularity"], "day");
    assert_eq!(json["windows"][1]["counts"][2]["dimension"], "publisher");
    assert_eq!(json["windows"][1]["counts"][2]["uniques"], 500);

    assert_eq!(reach.recorder.dropped_events(), 0);
    reach.aggregator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_accuracy_through_the_recorder() {
    // Room for a whole trial, so nothing is dropped while the producer outruns the aggregator.
    let reach = bourse_reach::start(ReachConfig {
        channel_capacity: 200_000,
        ..ReachConfig::default()
    })
    .await
    .unwrap();
    let ts = now();
    for (n, trials) in [(1_000, 10), (100_000, 3)] {
        for trial in 0..trials {
            let placement: Arc<str> = format!("slot-{n}-{trial}").into();
            for user in users(trial, n) {
                reach.recorder.record(event(user, &placement, ts));
            }
            reach.recorder.flush().await.unwrap();
            let estimate = reach
                .query
                .uniques(Dimension::Placement, &placement, Window::Hour(ts))
                .await
                .unwrap();
            // The accuracy statistics live in the unit tests; here every event must arrive.
            let error = (estimate as f64 - n as f64).abs() / n as f64;
            assert!(error <= 0.03, "n={n} trial={trial}: {estimate}");
        }
    }
    assert_eq!(reach.recorder.dropped_events(), 0);
    reach.aggregator.shutdown().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_events_without_blocking() {
    let reach = bourse_reach::start(ReachConfig {
        channel_capacity: 4,
        ..ReachConfig::default()
    })
    .await
    .unwrap();
    let placement: Arc<str> = "slot".into();
    let ts = now();
    // On a current-thread runtime the aggregator cannot run until this test awaits, so the
    // queue fills after 4 events and every further record must return at once.
    let started = Instant::now();
    for user in 0..10_000 {
        reach.recorder.record(event(user, &placement, ts));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "10 000 records took {elapsed:?}"
    );
    assert_eq!(reach.recorder.dropped_events(), 9_996);

    reach.recorder.flush().await.unwrap();
    let uniques = reach
        .query
        .uniques(Dimension::Placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert_eq!(uniques, 4);
    reach.aggregator.shutdown().await.unwrap();
}

/// The value of the series of `name` carrying all `labels` (gauge or counter).
fn metric_value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = registry.gather();
    let family = families.iter().find(|family| family.name() == name)?;
    let metric = family.get_metric().iter().find(|metric| {
        labels.iter().all(|(key, value)| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == *key && label.value() == *value)
        })
    })?;
    Some(match family.get_field_type() {
        MetricType::GAUGE => metric.get_gauge().get_value(),
        _ => metric.get_counter().get_value(),
    })
}

#[tokio::test]
async fn gauges_and_counters_are_exported() {
    let reach = bourse_reach::start(ReachConfig {
        metrics_interval_ms: 20,
        ..ReachConfig::default()
    })
    .await
    .unwrap();
    let registry = Registry::new();
    reach.query.register_metrics(&registry).unwrap();
    let placement: Arc<str> = "slot".into();
    let ts = now();
    for user in 0..250 {
        reach.recorder.record(event(user, &placement, ts));
    }
    // Refused: older than the 48 retained hours, and an empty id.
    reach.recorder.record(event(1, &placement, ts - 72 * 3_600));
    reach.recorder.record(event(1, &"".into(), ts));
    reach.recorder.flush().await.unwrap();

    let hour_labels = [
        ("dimension", "placement"),
        ("id", "slot"),
        ("window", "hour"),
    ];
    let day_labels = [("dimension", "bidder"), ("id", "dsp-a"), ("window", "day")];
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_value(&registry, "bourse_reach_unique_users", &hour_labels) != Some(250.0) {
        assert!(Instant::now() < deadline, "hour gauge never reached 250");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        metric_value(&registry, "bourse_reach_unique_users", &day_labels),
        Some(250.0)
    );
    let rejected = |reason| {
        metric_value(
            &registry,
            "bourse_reach_events_rejected_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(rejected("too_old"), Some(1.0));
    assert_eq!(rejected("invalid_id"), Some(1.0));
    assert_eq!(rejected("in_future"), Some(0.0));
    assert_eq!(
        metric_value(&registry, "bourse_reach_events_dropped_total", &[]),
        Some(0.0)
    );
    reach.aggregator.shutdown().await.unwrap();
}

#[tokio::test]
async fn after_shutdown_events_are_dropped_and_queries_fail() {
    let reach = bourse_reach::start(ReachConfig::default()).await.unwrap();
    reach.aggregator.shutdown().await.unwrap();
    reach.recorder.record(event(1, &"slot".into(), now()));
    assert_eq!(reach.recorder.dropped_events(), 1);
    let err = reach
        .query
        .counts(Window::current_hour())
        .await
        .unwrap_err();
    assert!(matches!(err, ReachError::AggregatorStopped), "{err}");
    assert!(matches!(
        reach.recorder.flush().await,
        Err(ReachError::AggregatorStopped)
    ));
}

#[tokio::test]
async fn invalid_config_is_refused_with_the_field_named() {
    let err = bourse_reach::start(ReachConfig {
        precision: 20,
        ..ReachConfig::default()
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ReachError::Config(_)));
    assert_eq!(
        err.to_string(),
        "reach config: `precision` is 20; it must be between 14 and 16"
    );

    let config: ReachConfig =
        serde_json::from_str(r#"{"precision": 16, "hour_buckets": 72}"#).unwrap();
    let reach = bourse_reach::start(config).await.unwrap();
    let report = reach.query.report(&[Window::current_day()]).await.unwrap();
    assert_eq!(report.precision, 16);
    assert!(report.windows[0].counts.is_empty());
    reach.aggregator.shutdown().await.unwrap();
}
