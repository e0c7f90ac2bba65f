//! JSON libraries compared on our real shapes: `serde_json`, `sonic-rs` and `simd-json`, each
//! through its serde front end, parsing bid requests and bid responses and serializing them.
//!
//! Our OpenRTB types keep `ext` and unknown fields as `serde_json::value::RawValue`, which only
//! `serde_json` can produce or write: RawValue is a private serde_json protocol (a magic newtype
//! name), so another library's deserializer fails on it and its serializer writes the wrapper
//! object instead of the value. Before measuring, [`check_typed`] and [`check_serialized`] try
//! each library on each shape and print what works; a combination that fails or writes wrong
//! JSON is left out of the measurements. What every library can do is measured too: parsing
//! into its own value tree, and parsing a typed struct without RawValue (the baseline
//! forwarder's prices-only view of a bid response).

use bourse_benches::{APP_VIDEO, BANNER_SITE, BID_RESPONSE, banner_site, candidates};
use bourse_engine::openrtb::{BidRequest, BidResponse, SeatBid};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::hint::black_box;

/// A library's serde front end, as the hot path would call it (bytes in, bytes out).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lib {
    SerdeJson,
    SonicRs,
    SimdJson,
}

const LIBS: [Lib; 3] = [Lib::SerdeJson, Lib::SonicRs, Lib::SimdJson];

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::SerdeJson => "serde_json",
            Lib::SonicRs => "sonic_rs",
            Lib::SimdJson => "simd_json",
        }
    }

    /// Parses `T`. simd-json parses in place, so it gets a copy of the input; the copy is
    /// part of its cost because a request body arrives as shared, immutable `Bytes`.
    fn parse<T: DeserializeOwned>(self, json: &[u8]) -> Result<T, String> {
        match self {
            Lib::SerdeJson => serde_json::from_slice(json).map_err(|e| e.to_string()),
            Lib::SonicRs => sonic_rs::from_slice(json).map_err(|e| e.to_string()),
            Lib::SimdJson => {
                let mut copy = json.to_vec();
                simd_json::serde::from_slice(&mut copy).map_err(|e| e.to_string())
            }
        }
    }

    fn serialize<T: Serialize>(self, value: &T) -> Result<Vec<u8>, String> {
        match self {
            Lib::SerdeJson => serde_json::to_vec(value).map_err(|e| e.to_string()),
            Lib::SonicRs => sonic_rs::to_vec(value).map_err(|e| e.to_string()),
            Lib::SimdJson => simd_json::serde::to_vec(value).map_err(|e| e.to_string()),
        }
    }
}

/// The meaning of some JSON, for comparing outputs whatever their formatting.
fn meaning(json: &[u8]) -> serde_json::Value {
    serde_json::from_slice(json).expect("valid JSON")
}

/// Whether `lib` parses `json` into `T` with the same meaning serde_json gives it.
fn check_typed<T: DeserializeOwned + Serialize>(lib: Lib, json: &[u8]) -> Result<(), String> {
    let parsed: T = lib.parse(json)?;
    let back = serde_json::to_vec(&parsed).map_err(|e| e.to_string())?;
    if meaning(&back) == meaning(json) {
        Ok(())
    } else {
        Err("parses, but loses or changes fields".into())
    }
}

/// Whether `lib` writes `value` as JSON with the meaning serde_json writes.
fn check_serialized<T: Serialize>(lib: Lib, value: &T) -> Result<(), String> {
    let out = lib.serialize(value)?;
    let expected = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    match serde_json::from_slice::<serde_json::Value>(&out) {
        Ok(v) if v == meaning(&expected) => Ok(()),
        Ok(_) => Err(format!(
            "writes different JSON: {}…",
            String::from_utf8_lossy(&out[..out.len().min(120)])
        )),
        Err(e) => Err(format!("writes invalid JSON: {e}")),
    }
}

fn report(what: &str, lib: Lib, result: &Result<(), String>) -> bool {
    match result {
        Ok(()) => {
            eprintln!("json compat: {what:28} {:10} ok", lib.name());
            true
        }
        Err(e) => {
            eprintln!("json compat: {what:28} {:10} UNSUPPORTED: {e}", lib.name());
            false
        }
    }
}

/// Only the prices of a bid response: a typed view without RawValue that every library reads.
#[derive(Deserialize)]
struct Prices {
    #[serde(default)]
    seatbid: Vec<SeatPrices>,
}

#[derive(Deserialize)]
struct SeatPrices {
    #[serde(default)]
    bid: Vec<BidPrice>,
}

#[derive(Deserialize)]
struct BidPrice {
    #[serde(default)]
    price: f64,
}

impl Prices {
    fn best(&self) -> f64 {
        self.seatbid
            .iter()
            .flat_map(|s| &s.bid)
            .map(|b| b.price)
            .fold(0.0, f64::max)
    }
}

/// Parsing into each library's own value tree (no RawValue involved): like for like.
fn bench_value_trees(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    json: &[u8],
) {
    group.bench_function("serde_json/value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(json)).unwrap())
    });
    group.bench_function("sonic_rs/value", |b| {
        b.iter(|| sonic_rs::from_slice::<sonic_rs::Value>(black_box(json)).unwrap())
    });
    group.bench_function("simd_json/owned_value", |b| {
        b.iter(|| {
            let mut copy = black_box(json).to_vec();
            simd_json::to_owned_value(&mut copy).unwrap()
        })
    });
    group.bench_function("simd_json/borrowed_value", |b| {
        b.iter(|| {
            let mut copy = black_box(json).to_vec();
            // The tree borrows `copy`; measuring its construction is the point.
            simd_json::to_borrowed_value(&mut copy)
                .map(|v| drop(black_box(v)))
                .unwrap()
        })
    });
}

fn parse_requests(c: &mut Criterion) {
    for (shape, json) in [("banner-site", BANNER_SITE), ("app-video", APP_VIDEO)] {
        let json = json.as_bytes();
        let mut group = c.benchmark_group(format!("json_parse/{shape}"));
        group.throughput(Throughput::Bytes(json.len() as u64));
        for lib in LIBS {
            if report(
                &format!("parse BidRequest {shape}"),
                lib,
                &check_typed::<BidRequest>(lib, json),
            ) {
                group.bench_function(format!("{}/BidRequest", lib.name()), |b| {
                    b.iter(|| lib.parse::<BidRequest>(black_box(json)).unwrap())
                });
            }
        }
        bench_value_trees(&mut group, json);
        group.finish();
    }
}

fn parse_responses(c: &mut Criterion) {
    let json = BID_RESPONSE.as_bytes();
    let mut group = c.benchmark_group("json_parse/bid-response");
    group.throughput(Throughput::Bytes(json.len() as u64));
    for lib in LIBS {
        if report(
            "parse BidResponse",
            lib,
            &check_typed::<BidResponse>(lib, json),
        ) {
            group.bench_function(format!("{}/BidResponse", lib.name()), |b| {
                b.iter(|| lib.parse::<BidResponse>(black_box(json)).unwrap())
            });
        }
    }
    for lib in LIBS {
        let best = lib.parse::<Prices>(json).map(|p| p.best());
        if report(
            "parse prices-only view",
            lib,
            &best.map(|_| ()).map_err(|e| e.to_string()),
        ) {
            group.bench_function(format!("{}/prices_only", lib.name()), |b| {
                b.iter(|| lib.parse::<Prices>(black_box(json)).unwrap().best())
            });
        }
    }
    bench_value_trees(&mut group, json);
    group.finish();
}

fn serialize(c: &mut Criterion) {
    let banner = banner_site();
    let video: BidRequest = serde_json::from_str(APP_VIDEO).unwrap();
    // The response bourse writes: one seat, one bid per impression, no `ext` (so no RawValue).
    let response = BidResponse {
        id: banner.id.clone(),
        seatbid: vec![SeatBid {
            bid: candidates(&banner, 1).into_iter().map(|c| c.bid).collect(),
            ..SeatBid::default()
        }],
        cur: Some("USD".into()),
        ..BidResponse::default()
    };
    // A partner's response as parsed, with a bid `ext` (RawValue).
    let partner: BidResponse = serde_json::from_str(BID_RESPONSE).unwrap();

    fn typed<T: Serialize>(c: &mut Criterion, shape: &str, value: &T) {
        let bytes = serde_json::to_vec(value).unwrap().len() as u64;
        let mut group = c.benchmark_group(format!("json_serialize/{shape}"));
        group.throughput(Throughput::Bytes(bytes));
        for lib in LIBS {
            if report(
                &format!("serialize {shape}"),
                lib,
                &check_serialized(lib, value),
            ) {
                group.bench_function(lib.name(), |b| {
                    b.iter(|| lib.serialize(black_box(value)).unwrap())
                });
            }
        }
        group.finish();
    }
    typed(c, "BidRequest banner-site", &banner);
    typed(c, "BidRequest app-video", &video);
    typed(c, "BidResponse ours", &response);
    typed(c, "BidResponse partner", &partner);

    // Writing each library's own value tree of the banner request: like for like.
    let mut group = c.benchmark_group("json_serialize/value banner-site");
    group.throughput(Throughput::Bytes(BANNER_SITE.len() as u64));
    let serde_value: serde_json::Value = serde_json::from_str(BANNER_SITE).unwrap();
    let sonic_value: sonic_rs::Value = sonic_rs::from_str(BANNER_SITE).unwrap();
    let simd_value = simd_json::to_owned_value(&mut BANNER_SITE.as_bytes().to_vec()).unwrap();
    group.bench_function("serde_json/value", |b| {
        b.iter(|| serde_json::to_vec(black_box(&serde_value)).unwrap())
    });
    group.bench_function("sonic_rs/value", |b| {
        b.iter(|| sonic_rs::to_vec(black_box(&sonic_value)).unwrap())
    });
    group.bench_function("simd_json/owned_value", |b| {
        b.iter(|| simd_json::to_vec(black_box(&simd_value)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, parse_requests, parse_responses, serialize);
criterion_main!(benches);
