//! Request-path cost of `ReachRecorder::record`: queuing an event the aggregator will count, and
//! dropping one when the queue is full.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bourse_reach::{ReachConfig, ReachEvent, ReachRecorder};
use criterion::{Criterion, criterion_group, criterion_main};

/// Events recorded between two untimed flushes: keeps the queue from ever filling.
const EVENTS_PER_ROUND: u64 = 100_000;

/// The ids as the exchange would hold them: resolved from config once, cloned per event.
struct Ids {
    placement: Arc<str>,
    publisher: Arc<str>,
    bidder: Arc<str>,
    timestamp: u64,
}

impl Ids {
    fn new() -> Self {
        Ids {
            placement: "homepage-top-728x90".into(),
            publisher: "news-site".into(),
            bidder: "dsp-a".into(),
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        }
    }

    fn event(&self, user_hash: u64) -> ReachEvent {
        ReachEvent {
            user_hash,
            placement: Arc::clone(&self.placement),
            publisher: Arc::clone(&self.publisher),
            bidder: Arc::clone(&self.bidder),
            timestamp: self.timestamp,
        }
    }
}

fn record_n(recorder: &ReachRecorder, ids: &Ids, first_user: u64, count: u64) {
    for user in first_user..first_user + count {
        recorder.record(black_box(
            ids.event(user.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        ));
    }
}

fn record(c: &mut Criterion) {
    let ids = Ids::new();
    let mut group = c.benchmark_group("reach_record");

    // Accepted: the aggregator runs on its own worker thread and counts every event, as in the
    // exchange; only the `record` calls are timed, the flush between rounds is not.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reach = runtime
        .block_on(bourse_reach::start(ReachConfig {
            channel_capacity: EVENTS_PER_ROUND as usize * 2,
            ..ReachConfig::default()
        }))
        .unwrap();
    let mut next_user = 0;
    group.bench_function("accepted", |bencher| {
        bencher.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut remaining = iterations;
            while remaining > 0 {
                let round = remaining.min(EVENTS_PER_ROUND);
                let started = Instant::now();
                record_n(&reach.recorder, &ids, next_user, round);
                timed += started.elapsed();
                next_user += round;
                remaining -= round;
                runtime.block_on(reach.recorder.flush()).unwrap();
            }
            timed
        });
    });
    assert_eq!(
        reach.recorder.dropped_events(),
        0,
        "the accepted case dropped events"
    );
    runtime.block_on(reach.aggregator.shutdown()).unwrap();

    // Dropped: a queue of one whose aggregator never runs (its runtime is not driven).
    let idle_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stalled = idle_runtime
        .block_on(bourse_reach::start(ReachConfig {
            channel_capacity: 1,
            ..ReachConfig::default()
        }))
        .unwrap();
    stalled.recorder.record(ids.event(0));
    group.bench_function("dropped_queue_full", |bencher| {
        let mut user = 1;
        bencher.iter(|| {
            user += 1;
            stalled.recorder.record(black_box(ids.event(user)));
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = record
}
criterion_main!(benches);
