//! Request-path cost of learned floors per auction (`floor_for` plus `observe`), and the
//! learner's cost per observation.

use bourse_floors::{
    AuctionType, FloorKey, Floors, LearnedFloorsConfig, Observation, Segment, TopBids,
};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Auctions timed between two drains: far under the channel's capacity.
const CHUNK: u64 = 4_096;

fn request_path(c: &mut Criterion) {
    let config = LearnedFloorsConfig {
        enabled: true,
        recompute_every_observations: 5_000,
        ..LearnedFloorsConfig::default()
    };
    let (floors, mut learner) = Floors::with_seed(config, 1).expect("valid configuration");
    let placement: Arc<str> = Arc::from("homepage-top-728x90");
    let segment = Segment::from_request(Some(2), Some("USA"), Some((728, 90)));
    let key = FloorKey::new(Arc::clone(&placement), segment);
    // Learn a placement and a segment floor first (two uniform bidders: r* = 0.5), so lookups
    // hit a populated snapshot.
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..20_000 {
        let decision = floors.floor_for(&key);
        let floor_used = decision.floor;
        let bids = (0..2)
            .map(|_| rng.random::<f64>())
            .filter(|&bid| bid >= floor_used);
        floors.observe(Observation {
            key: key.clone(),
            floor_used,
            explore: decision.explore,
            bids: TopBids::from_prices(bids),
            auction_type: AuctionType::Second,
        });
        learner.drain();
    }
    learner.publish();
    assert!(
        floors.snapshot().learned_floors() > 0,
        "a floor was learned"
    );

    let observation = |decision: bourse_floors::Decision| Observation {
        key: key.clone(),
        floor_used: decision.floor,
        explore: decision.explore,
        bids: TopBids::new(Some(1.2), Some(0.8)),
        auction_type: AuctionType::Second,
    };
    let mut group = c.benchmark_group("floors");
    group.bench_function("floor_for", |b| {
        b.iter(|| black_box(floors.floor_for(black_box(&key))))
    });
    // The request path of one auction. Timed in chunks well under the channel's capacity,
    // with the learner draining between chunks off the clock, so every observation is queued
    // (none takes the cheaper dropped path).
    group.bench_function("floor_for+observe", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let chunk = left.min(CHUNK);
                let start = Instant::now();
                for _ in 0..chunk {
                    let decision = floors.floor_for(black_box(&key));
                    black_box(floors.observe(observation(decision)));
                }
                elapsed += start.elapsed();
                learner.drain();
                left -= chunk;
            }
            elapsed
        })
    });
    // The learner's cost per observation (off the request path): how many auctions per second
    // one learner keeps up with.
    group.bench_function("learner drain per observation", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let chunk = left.min(CHUNK);
                for _ in 0..chunk {
                    floors.observe(observation(floors.floor_for(&key)));
                }
                let start = Instant::now();
                learner.drain();
                elapsed += start.elapsed();
                left -= chunk;
            }
            elapsed
        })
    });
    group.finish();
    assert_eq!(floors.dropped(), 0, "the bench measured the dropped path");
}

criterion_group!(benches, request_path);
criterion_main!(benches);
