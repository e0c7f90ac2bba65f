//! What issue 4's features add to each tag auction (learned floor lookup and observation, the
//! signed impression, view and click URLs of a filled slot) and to each billed impression
//! (opening the beacon, exact de-duplication, ledger amounts, reach recording).

use bourse_engine::exchange::{BeaconKind, BeaconToken};
use bourse_engine::ledger::LedgerEntry;
use bourse_engine::notice::{AuctionRef, NoticeKind, TokenSigner, WinToken};
use bourse_floors::{
    AuctionType, FloorKey, Floors, LearnedFloorsConfig, Observation, Segment, TopBids,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn token(kind: BeaconKind) -> BeaconToken {
    BeaconToken {
        kind,
        auction: "6f1c2a9e4b7d4c1e9f3a2d5e6b7c8d90".into(),
        imp: "1".into(),
        publisher: "news".into(),
        placement: "news-top".into(),
        bidder: "dsp-a".into(),
        deal: None,
        cpm: 2.35,
        currency: "USD".into(),
        bill: (kind == BeaconKind::Impression).then(|| WinToken {
            kind: NoticeKind::Bill,
            auction: "6f1c2a9e4b7d4c1e9f3a2d5e6b7c8d90".into(),
            reference: AuctionRef {
                node: 0x9c3b_1f0e_7a2d_4c5b,
                seq: 1,
            },
            bid: "bid-1".into(),
            imp: "1".into(),
            seat: "seat-a".into(),
            ad: String::new(),
            bidder: "dsp-a".into(),
            price: 2.1,
            bid_price: 2.4,
            cur: "USD".into(),
            gross_up: 1.1,
            partner_url: Some("https://dsp-a.example/bill?p=${AUCTION_PRICE}".into()),
            exp: 1_900_000_000,
        }),
        uid: Some("0123456789abcdef0123456789abcdef".into()),
        target: (kind == BeaconKind::Click)
            .then(|| "https://advertiser.example/landing?campaign=42".into()),
        exp: 1_900_000_000,
    }
}

fn adserve(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let config = LearnedFloorsConfig {
        enabled: true,
        ..LearnedFloorsConfig::default()
    };
    let (floors, learner) = Floors::new(config).unwrap();
    runtime.spawn(learner.run(std::future::pending::<()>()));
    let placement: Arc<str> = "news-top".into();
    let signer = TokenSigner::new(b"benchmark-secret-0123456789abcdef");
    let tokens = [
        token(BeaconKind::Impression),
        token(BeaconKind::View),
        token(BeaconKind::Click),
    ];

    let mut group = c.benchmark_group("adserve");
    group.throughput(Throughput::Elements(1));
    group.bench_function("per_slot_on_the_auction_path", |b| {
        b.iter(|| {
            let key = FloorKey::new(
                placement.clone(),
                Segment::from_request(Some(2), None, Some((300, 250))),
            );
            let decision = floors.floor_for(&key);
            let used = decision.floor.max(0.5);
            floors.observe(Observation {
                key,
                floor_used: used,
                explore: decision.explore,
                bids: TopBids::new(Some(2.4), Some(1.9)),
                auction_type: AuctionType::Second,
            });
            let sealed: usize = tokens.iter().map(|t| signer.seal(black_box(t)).len()).sum();
            black_box(sealed)
        })
    });

    let registry = prometheus::Registry::new();
    let services = runtime
        .block_on(bourse_services::Services::start(
            &bourse_services::ServicesConfig::default(),
            &registry,
        ))
        .unwrap();
    let dedup = services.once.namespace("billed").unwrap();
    let dimensions =
        ["placement", "publisher", "bidder"].map(|name| services.uniques.dimension(name).unwrap());
    let sealed = signer.seal(&tokens[0]);
    let mut n = 0u64;
    group.bench_function("per_billed_impression", |b| {
        b.iter(|| {
            n += 1;
            let token: BeaconToken = signer.open(black_box(&sealed)).unwrap();
            let key = format!("imp:{}:{n}", token.auction);
            let fresh = runtime
                .block_on(dedup.first(&key, Duration::from_secs(3600)))
                .unwrap();
            let amounts = LedgerEntry::amounts(token.cpm, 0.15);
            services.uniques.record(
                n,
                services.clock.unix_secs(),
                &dimensions.map(|d| (d, placement.clone())),
            );
            black_box((fresh, amounts))
        })
    });
    group.finish();
}

criterion_group!(benches, adserve);
criterion_main!(benches);
