//! What the auction's hooks cost in one auction of the typical request (two impressions, four
//! bids): every stage as `run.rs` calls it (`active`, the request filter, the floor rule on
//! each impression, the bid filter), with the floor-rule example as a signed wasm plugin
//! against the same rule compiled in, and with no plugin installed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bourse::hooks::{WasmAuctionHooks, slot};
use bourse_benches::native_floor::NativeFloorRule;
use bourse_benches::{banner_site, candidates};
use bourse_engine::openrtb::BidRequest;
use bourse_engine::{AuctionHooks, HookBid};
use bourse_wasm::{
    InstallOptions, Registry, Runtime, RuntimeConfig, SecretKey, TrustedKeys, WasmMetrics, sign,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// A registry holding the floor-rule example, signed with a fresh key.
fn registry_with_floor_rule() -> Arc<Registry> {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let built = Command::new("bash")
        .arg(plugins.join("build.sh"))
        .status()
        .unwrap();
    assert!(built.success(), "plugins/build.sh failed");
    let key = SecretKey::generate().unwrap();
    let module = std::fs::read(plugins.join("dist/floor-rule.wasm")).unwrap();
    let manifest = std::fs::read(plugins.join("dist/floor-rule.toml")).unwrap();
    let registry = Registry::new(
        Runtime::new(RuntimeConfig::default()).unwrap(),
        TrustedKeys::new().with("bench", key.public()),
        WasmMetrics::new(&prometheus::Registry::new()).unwrap(),
    );
    registry
        .install(
            &sign(&module, &manifest, &key).unwrap(),
            InstallOptions::default(),
        )
        .unwrap();
    Arc::new(registry)
}

/// The hook stages of one auction, as the exchange runs them.
fn one_auction(hooks: &dyn AuctionHooks, request: &BidRequest, bids: &[HookBid<'_>]) -> usize {
    if !hooks.active() {
        return 0;
    }
    let _ = hooks.filter_request(request);
    let mut floors = vec![0.1; request.imp.len()];
    hooks.floors(request, &mut floors);
    hooks.filter_bids(request, bids).len()
}

fn hooks(c: &mut Criterion) {
    let mut request = banner_site();
    if let Some(device) = request.device.as_mut()
        && let Some(geo) = device.geo.as_mut()
    {
        geo.country = Some("USA".into());
    }
    let candidates = candidates(&request, 2);
    let bids: Vec<HookBid<'_>> = candidates
        .iter()
        .map(|candidate| HookBid {
            bidder: "dsp",
            candidate,
        })
        .collect();

    let wasm_slot = slot();
    wasm_slot.store(Some(registry_with_floor_rule()));
    let wasm = WasmAuctionHooks::new(wasm_slot);
    let native = NativeFloorRule;
    let none = WasmAuctionHooks::new(slot());

    let mut group = c.benchmark_group("auction_hooks");
    group.bench_function("floor_rule_wasm", |b| {
        b.iter(|| one_auction(&wasm, &request, &bids))
    });
    group.bench_function("floor_rule_compiled_in", |b| {
        b.iter(|| one_auction(&native, &request, &bids))
    });
    group.bench_function("no_plugin_installed", |b| {
        b.iter(|| one_auction(&none, &request, &bids))
    });
    group.finish();
}

criterion_group!(benches, hooks);
criterion_main!(benches);
