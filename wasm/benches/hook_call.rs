//! The cost of one hook call through the instance pool: the floor rule (one impression) and the
//! brand-safety bid filter (ten bids), each on the real example module.

use std::path::Path;
use std::process::Command;

use bourse_wasm::{
    BidView, FloorContext, InstallOptions, Registry, RequestView, Runtime, RuntimeConfig,
    SecretKey, TrustedKeys, WasmMetrics, sign,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn signed(key: &SecretKey, name: &str) -> Vec<u8> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let module = std::fs::read(dist.join(format!("{name}.wasm"))).unwrap();
    let manifest = std::fs::read(dist.join(format!("{name}.toml"))).unwrap();
    sign(&module, &manifest, key).unwrap()
}

fn registry() -> Registry {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let status = Command::new("bash")
        .arg(plugins.join("build.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "plugins/build.sh failed");
    let key = SecretKey::generate().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let metrics = WasmMetrics::new(&prometheus::Registry::new()).unwrap();
    let registry = Registry::new(
        runtime,
        TrustedKeys::new().with("bench", key.public()),
        metrics,
    );
    for name in ["floor-rule", "brand-safety"] {
        registry
            .install(&signed(&key, name), InstallOptions::default())
            .unwrap();
    }
    registry
}

fn hook_call(c: &mut Criterion) {
    let registry = registry();
    let context = FloorContext {
        placement_id: "homepage-top".into(),
        publisher_id: "pub-1".into(),
        country: Some("USA".into()),
        hour: 14,
        device_type: Some(2),
        current_floor: 0.4,
    };
    let request = RequestView {
        id: "9f3c2a".into(),
        site_domain: Some("news.example".into()),
        app_domain: None,
        publisher_id: Some("pub-1".into()),
        country: Some("USA".into()),
        device_type: Some(2),
        user_id_present: true,
        imps: Vec::new(),
    };
    let bids: Vec<BidView> = (0..10)
        .map(|i| BidView {
            imp_id: "1".into(),
            bidder: format!("bidder-{i}"),
            price: 1.0 + f64::from(i) / 10.0,
            adomain: vec![format!("brand{i}.example")],
            cat: vec!["IAB18".into()],
            crid: Some(format!("cr-{i}")),
            w: 300,
            h: 250,
            deal_id: None,
        })
        .collect();

    let mut group = c.benchmark_group("wasm_hook");
    group.throughput(Throughput::Elements(1));
    group.bench_function("floor_rule", |b| {
        b.iter(|| {
            let hooks = registry.hooks("floor-rule").unwrap();
            std::hint::black_box(hooks.floor(&context).unwrap())
        })
    });
    group.throughput(Throughput::Elements(bids.len() as u64));
    group.bench_function("bid_filter_10_bids", |b| {
        b.iter(|| {
            let hooks = registry.hooks("brand-safety").unwrap();
            std::hint::black_box(hooks.filter_bids(&request, &bids).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, hook_call);
criterion_main!(benches);
