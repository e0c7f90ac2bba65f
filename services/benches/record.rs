//! Request-path costs of the shared services: `Uniques::record` (queuing an item the aggregator
//! will count, and dropping one when the queue is full) and `Topic::publish` (with no, one and
//! four subscribers), and a direct rate-limit check.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bourse_services::{Dimension, Rate, Services, ServicesConfig, UniquesConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use prometheus::Registry;

/// Items recorded between two untimed flushes: keeps the queue from ever filling.
const ITEMS_PER_ROUND: u64 = 100_000;

/// The keys as the exchange would hold them: resolved from config once, cloned per item.
struct Keys {
    keys: [(Dimension, Arc<str>); 3],
    timestamp: u64,
}

impl Keys {
    fn new(services: &Services) -> Self {
        let uniques = &services.uniques;
        Keys {
            keys: [
                (
                    uniques.dimension("placement").unwrap(),
                    "homepage-top-728x90".into(),
                ),
                (uniques.dimension("publisher").unwrap(), "news-site".into()),
                (uniques.dimension("bidder").unwrap(), "dsp-a".into()),
            ],
            timestamp: services.clock.unix_secs(),
        }
    }
}

fn record_n(services: &Services, keys: &Keys, first_item: u64, count: u64) {
    for item in first_item..first_item + count {
        services.uniques.record(
            black_box(item.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            keys.timestamp,
            black_box(&keys.keys),
        );
    }
}

fn start(runtime: &tokio::runtime::Runtime, channel_capacity: usize) -> Services {
    let config = ServicesConfig {
        uniques: UniquesConfig {
            channel_capacity,
            ..UniquesConfig::default()
        },
        ..ServicesConfig::default()
    };
    runtime
        .block_on(Services::start(&config, &Registry::new()))
        .unwrap()
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("uniques_record");

    // Accepted: the aggregator runs on its own worker thread and counts every item, as in the
    // exchange; only the `record` calls are timed, the flush between rounds is not.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let services = start(&runtime, ITEMS_PER_ROUND as usize * 2);
    let keys = Keys::new(&services);
    let mut next_item = 0;
    group.bench_function("accepted", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut remaining = iterations;
            while remaining > 0 {
                let round = remaining.min(ITEMS_PER_ROUND);
                let started = Instant::now();
                record_n(&services, &keys, next_item, round);
                timed += started.elapsed();
                next_item += round;
                remaining -= round;
                runtime.block_on(services.uniques.flush()).unwrap();
            }
            timed
        });
    });
    assert_eq!(
        services.uniques.dropped(),
        0,
        "the accepted case dropped items"
    );
    runtime.block_on(services.shutdown(Duration::from_secs(5)));

    // Dropped: a queue of one whose aggregator never runs (its runtime is not driven).
    let idle_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stalled = start(&idle_runtime, 1);
    let keys = Keys::new(&stalled);
    record_n(&stalled, &keys, 0, 1);
    group.bench_function("dropped_queue_full", |bencher| {
        let mut item = 1;
        bencher.iter(|| {
            item += 1;
            record_n(&stalled, &keys, item, 1);
        });
    });
    group.finish();
}

/// A domain event as a site would publish it: small, with a shared string.
#[derive(Clone)]
struct Event {
    placement: Arc<str>,
    price_micros: u64,
}

fn publish(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let services = start(&runtime, 1_024);
    let mut group = c.benchmark_group("events_publish");
    let event = Event {
        placement: "homepage-top".into(),
        price_micros: 1_250_000,
    };
    for subscribers in [0_usize, 1, 4] {
        let topic = services
            .events
            .topic::<Event>(&format!("bench.s{subscribers}"))
            .unwrap();
        let mut subscriptions: Vec<_> = (0..subscribers)
            .map(|_| topic.subscribe(ITEMS_PER_ROUND as usize))
            .collect();
        group.bench_function(format!("{subscribers}_subscribers"), |bencher| {
            bencher.iter_custom(|iterations| {
                let mut timed = Duration::ZERO;
                let mut remaining = iterations;
                while remaining > 0 {
                    let round = remaining.min(ITEMS_PER_ROUND);
                    let started = Instant::now();
                    for _ in 0..round {
                        topic.publish(black_box(event.clone()));
                    }
                    timed += started.elapsed();
                    remaining -= round;
                    // Untimed: empty every queue so the next round is never dropped.
                    for subscription in &mut subscriptions {
                        while let Some(received) = subscription.try_recv() {
                            black_box((&received.placement, received.price_micros));
                        }
                    }
                }
                timed
            });
        });
        assert_eq!(
            topic.dropped(),
            0,
            "{subscribers} subscribers dropped events"
        );
    }
    group.finish();
}

fn limits(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let services = start(&runtime, 1_024);
    // A rate no benchmark reaches: every check passes, as for a partner under its cap.
    let limiter = services
        .limits
        .direct("bench", Rate::per_second(1_000_000_000).unwrap())
        .unwrap();
    c.bench_function("limits_direct_check", |bencher| {
        bencher.iter(|| black_box(limiter.check()));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = record, publish, limits
}
criterion_main!(benches);
