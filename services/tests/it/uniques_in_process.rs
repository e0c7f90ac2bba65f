//! Unique counts with the in-process aggregator: counting, accuracy end to end, the bounded
//! queue, metrics, the manual clock, shutdown and config errors.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bourse_services::{
    Backend, Clock, ServiceError, Services, ServicesConfig, UniquesConfig, UniquesError, Window,
};

use crate::{AdDimensions, Node, items, now};

fn summary(counts: &[bourse_services::UniqueCount]) -> Vec<String> {
    counts
        .iter()
        .map(|count| format!("{}/{}={}", count.dimension, count.id, count.estimate))
        .collect()
}

#[tokio::test]
async fn counts_unique_items_per_dimension_and_window() {
    let node = Node::start(&ServicesConfig::default()).await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let ts = now();
    let (top, side): (Arc<str>, Arc<str>) = ("top".into(), "side".into());
    for user in 0..300 {
        uniques.record(user, ts, &ad.keys(&top));
        // Every user seen twice on the side slot: still one unique.
        uniques.record(user + 200, ts, &ad.keys(&side));
        uniques.record(user + 200, ts, &ad.keys(&side));
    }
    uniques.flush().await.unwrap();

    let hour = uniques.counts(Window::Hour(ts)).await.unwrap();
    assert_eq!(
        summary(&hour),
        [
            "placement/side=300",
            "placement/top=300",
            "publisher/news=500",
            "bidder/dsp-a=500"
        ]
    );
    assert_eq!(
        uniques
            .count(ad.publisher, "news", Window::Day(ts))
            .await
            .unwrap(),
        500
    );
    assert_eq!(
        uniques
            .count(ad.placement, "unknown", Window::Hour(ts))
            .await
            .unwrap(),
        0
    );
    assert_eq!(uniques.backend(), Backend::InProcess);
    assert_eq!(uniques.precision(), 14);

    let json = serde_json::to_value(&hour[2]).unwrap();
    assert_eq!(json["dimension"], "publisher");
    assert_eq!(json["id"], "news");
    assert_eq!(json["estimate"], 500);
    assert_eq!(json["window"]["granularity"], "hour");
    assert_eq!(json["window"]["start"], ts - ts % 3_600);
    assert_eq!(uniques.dropped(), 0);
    node.services.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn dimensions_are_interned_once_and_named_back() {
    let node = Node::start(&ServicesConfig::default()).await;
    let uniques = &node.services.uniques;
    let link = uniques.dimension_without_gauges("link").unwrap();
    assert_eq!(uniques.dimension_without_gauges("link").unwrap(), link);
    assert_eq!(uniques.dimension_name(link).as_deref(), Some("link"));
    let err = uniques.dimension("link").unwrap_err();
    assert!(
        matches!(err, UniquesError::GaugeChoiceClash { .. }),
        "{err}"
    );
    let err = uniques.dimension("API key").unwrap_err();
    assert_eq!(
        err.to_string(),
        "uniques: dimension name \"API key\" must start with a lower-case letter and hold only \
         a-z, 0-9 and _"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_accuracy_through_record() {
    // Room for a whole trial, so nothing is dropped while the producer outruns the aggregator.
    let node = Node::start(&ServicesConfig {
        uniques: UniquesConfig {
            channel_capacity: 200_000,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    })
    .await;
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
            let error = (estimate as f64 - n as f64).abs() / n as f64;
            assert!(error <= 0.03, "n={n} trial={trial}: {estimate}");
        }
    }
    assert_eq!(uniques.dropped(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_items_without_blocking() {
    let node = Node::start(&ServicesConfig {
        uniques: UniquesConfig {
            channel_capacity: 4,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    })
    .await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let placement: Arc<str> = "slot".into();
    let ts = now();
    // On a current-thread runtime the aggregator cannot run until this test awaits, so the
    // queue fills after 4 items and every further record must return at once.
    let started = Instant::now();
    for user in 0..10_000 {
        uniques.record(user, ts, &ad.keys(&placement));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "10 000 records took {elapsed:?}"
    );
    assert_eq!(uniques.dropped(), 9_996);
    assert_eq!(
        node.metric("bourse_reach_events_dropped_total", &[]),
        Some(9_996.0)
    );

    uniques.flush().await.unwrap();
    let counted = uniques
        .count(ad.placement, "slot", Window::Hour(ts))
        .await
        .unwrap();
    assert_eq!(counted, 4);
}

#[tokio::test]
async fn gauges_and_counters_are_exported_for_dimensions_that_ask_for_them() {
    let node = Node::start(&ServicesConfig {
        uniques: UniquesConfig {
            metrics_interval_ms: 20,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    })
    .await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let link = uniques.dimension_without_gauges("link").unwrap();
    let placement: Arc<str> = "slot".into();
    let ts = now();
    for user in 0..250 {
        uniques.record(user, ts, &ad.keys(&placement));
        uniques.record(user, ts, &[(link, "short-1".into())]);
    }
    // Refused: older than the 48 retained hours, an empty id, no key at all, too many keys.
    uniques.record(1, ts - 72 * 3_600, &ad.keys(&placement));
    uniques.record(1, ts, &ad.keys(&"".into()));
    uniques.record(1, ts, &[]);
    let many: Vec<_> = (0..17)
        .map(|i| (link, Arc::from(format!("l{i}"))))
        .collect();
    uniques.record(1, ts, &many);
    uniques.flush().await.unwrap();

    let hour_labels = [
        ("dimension", "placement"),
        ("id", "slot"),
        ("window", "hour"),
    ];
    let day_labels = [("dimension", "bidder"), ("id", "dsp-a"), ("window", "day")];
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.metric("bourse_reach_unique_users", &hour_labels) != Some(250.0) {
        assert!(Instant::now() < deadline, "hour gauge never reached 250");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        node.metric("bourse_reach_unique_users", &day_labels),
        Some(250.0)
    );
    // Counted, but never a label.
    assert_eq!(
        node.metric("bourse_reach_unique_users", &[("dimension", "link")]),
        None
    );
    assert_eq!(
        uniques
            .count(link, "short-1", Window::Hour(ts))
            .await
            .unwrap(),
        250
    );
    let rejected =
        |reason| node.metric("bourse_reach_events_rejected_total", &[("reason", reason)]);
    assert_eq!(rejected("too_old"), Some(1.0));
    assert_eq!(rejected("invalid_id"), Some(3.0));
    assert_eq!(rejected("in_future"), Some(0.0));
    assert_eq!(rejected("too_many_ids"), Some(0.0));
    assert_eq!(
        node.metric("bourse_reach_events_dropped_total", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn items_are_judged_by_the_services_clock() {
    // A manual clock two years back: items stamped by it are current, wall-clock ones are
    // "in the future".
    let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let (clock, control) = Clock::manual(start);
    let registry = prometheus::Registry::new();
    let services = Services::start_with_clock(&ServicesConfig::default(), &registry, clock)
        .await
        .unwrap();
    let ad = AdDimensions::intern(&services);
    let slot: Arc<str> = "slot".into();
    let then = services.clock.unix_secs();
    assert_eq!(then, 1_700_000_000);
    services.uniques.record(1, then, &ad.keys(&slot));
    services.uniques.record(2, now(), &ad.keys(&slot));
    services.uniques.flush().await.unwrap();
    assert_eq!(
        services
            .uniques
            .count(ad.placement, "slot", Window::current_hour(&services.clock))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        crate::metric_value(
            &registry,
            "bourse_reach_events_rejected_total",
            &[("reason", "in_future")]
        ),
        Some(1.0)
    );
    // Three days later by that clock, the item is too old to record.
    control.advance(Duration::from_secs(3 * 86_400));
    services.uniques.record(3, then, &ad.keys(&slot));
    services.uniques.flush().await.unwrap();
    assert_eq!(
        crate::metric_value(
            &registry,
            "bourse_reach_events_rejected_total",
            &[("reason", "too_old")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn after_shutdown_items_are_dropped_and_queries_fail() {
    let node = Node::start(&ServicesConfig::default()).await;
    let uniques = &node.services.uniques;
    let ad = AdDimensions::intern(&node.services);
    let slot: Arc<str> = "slot".into();
    uniques.record(1, now(), &ad.keys(&slot));
    node.services.shutdown(Duration::from_secs(5)).await;
    uniques.record(2, now(), &ad.keys(&slot));
    assert_eq!(uniques.dropped(), 1);
    let err = uniques.counts(Window::Hour(now())).await.unwrap_err();
    assert!(matches!(err, UniquesError::Stopped), "{err}");
    assert!(matches!(uniques.flush().await, Err(UniquesError::Stopped)));
    // A second shutdown is harmless; a reconfiguration is refused.
    node.services.shutdown(Duration::from_secs(1)).await;
    let err = node
        .services
        .reconfigure(&ServicesConfig {
            key_prefix: "other".into(),
            ..ServicesConfig::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::ShutDown), "{err}");
}

#[tokio::test]
async fn invalid_config_is_refused_with_every_path_named() {
    let registry = prometheus::Registry::new();
    let err = Services::start(
        &ServicesConfig {
            uniques: UniquesConfig {
                precision: 20,
                batch_size: 0,
                ..UniquesConfig::default()
            },
            ..ServicesConfig::default()
        },
        &registry,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "services config: `uniques.precision` is 20; it must be between 14 and 16; \
         `uniques.batch_size` is 0; it must be between 1 and 1000000"
    );
    // Nothing was registered by the refused start.
    assert!(registry.gather().is_empty());

    let config: ServicesConfig =
        serde_json::from_str(r#"{"uniques": {"precision": 16, "hour_buckets": 72}}"#).unwrap();
    let node = Node::start(&config).await;
    assert_eq!(node.services.uniques.precision(), 16);
    assert!(
        node.services
            .uniques
            .counts(Window::Day(now()))
            .await
            .unwrap()
            .is_empty()
    );
    // One registry cannot take a second set of services: their families would clash.
    let err = Services::start(&ServicesConfig::default(), &node.registry)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ServiceError::Metrics(_)), "{err}");
}
