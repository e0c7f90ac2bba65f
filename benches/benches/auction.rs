//! Per-stage costs of one auction on a typical request: parse, validate, build bidder
//! requests, clear, serialize, and the whole in-process pipeline.

use bourse_benches::{BANNER_SITE, banner_site, candidates};
use bourse_engine::auction::{Candidate, Rules, check_bid, clear, imp_terms};
use bourse_engine::bidder::{BidderSpec, CallInfo, Outbound};
use bourse_engine::openrtb::{BidRequest, BidResponse, SeatBid};
use bourse_engine::validate::{Limits, validate};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const BIDDERS: usize = 4;

/// Floors, bid checks and clearing; the candidates stand for bids already parsed.
fn auction_once(request: &BidRequest, cands: &[Candidate]) -> usize {
    let terms: Vec<_> = request
        .imp
        .iter()
        .map(|imp| imp_terms(imp, 0.0, |a, _| Some(a)).unwrap())
        .collect();
    let valid: Vec<bool> = cands
        .iter()
        .map(|c| check_bid(request, &terms, c).is_ok())
        .collect();
    clear(
        &terms,
        cands,
        &valid,
        Rules {
            auction_type: 2,
            increment: 0.01,
        },
    )
    .winners
    .len()
}

fn stages(c: &mut Criterion) {
    let request = banner_site();
    let limits = Limits::default();
    let registry = bourse_bidders::registry();
    let specs: Vec<BidderSpec> = (0..BIDDERS)
        .map(|i| {
            BidderSpec::new(
                format!("dsp-{i}"),
                format!("http://127.0.0.1:{}/bid", 9000 + i),
            )
        })
        .collect();
    let adapters: Vec<_> = specs.iter().map(|s| registry.build(s).unwrap()).collect();

    let cands = candidates(&request, BIDDERS);
    let mut group = c.benchmark_group("stages");
    group.throughput(Throughput::Bytes(BANNER_SITE.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| serde_json::from_str::<BidRequest>(black_box(BANNER_SITE)).unwrap())
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate", |b| {
        b.iter(|| validate(black_box(&request), &limits))
    });
    // The exchange sets the outbound tmax to the bidders' budget before adapters run.
    let mut outbound_request = request.clone();
    outbound_request.tmax = Some(200);
    group.bench_function("build_requests_4_bidders", |b| {
        b.iter(|| {
            let outbound = Outbound::new(black_box(&outbound_request));
            let mut n = 0;
            for (spec, adapter) in specs.iter().zip(&adapters) {
                n += adapter
                    .make_requests(&outbound, &CallInfo { spec, tmax_ms: 200 })
                    .requests
                    .len();
            }
            n
        })
    });
    group.bench_function("auction_4_bids_per_imp", |b| {
        b.iter(|| auction_once(black_box(&request), &cands))
    });
    let response = BidResponse {
        id: request.id.clone(),
        seatbid: vec![SeatBid {
            bid: candidates(&request, 1).into_iter().map(|c| c.bid).collect(),
            ..SeatBid::default()
        }],
        cur: Some("USD".into()),
        ..BidResponse::default()
    };
    group.bench_function("serialize_response", |b| {
        b.iter(|| serde_json::to_vec(black_box(&response)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_validate_auction", |b| {
        b.iter(|| {
            let request: BidRequest = serde_json::from_str(black_box(BANNER_SITE)).unwrap();
            validate(&request, &limits).unwrap();
            auction_once(&request, &cands)
        })
    });
    group.finish();
}

/// What an auction's spans cost with OTLP export off, under the subscriber `bourse serve`
/// installs: one `auction` span and a `bidder_call` child per partner, created and recorded
/// the way `engine/src/exchange/run.rs` does (`exchange.rs` runs the real path end to end).
fn spans_export_off(c: &mut Criterion) {
    use bourse_kernel::TRACE_TARGET;
    use tracing::field::Empty;
    let _telemetry = bourse_kernel::init_logging(&bourse_kernel::LogConfig::default()).unwrap();
    let request = banner_site();
    let names: Vec<String> = (0..BIDDERS).map(|i| format!("dsp-{i}")).collect();
    let mut group = c.benchmark_group("tracing");
    group.throughput(Throughput::Elements(1));
    group.bench_function("auction_spans_4_bidders_export_off", |b| {
        b.iter(|| {
            let span = tracing::info_span!(
                target: TRACE_TARGET,
                "auction",
                otel.kind = "server",
                request_id = %black_box(&request).id,
                imps = request.imp.len() as i64,
                bidders = Empty,
                outcome = Empty,
                winning_price = Empty,
            );
            if !span.is_disabled() {
                span.record("bidders", BIDDERS as i64);
            }
            let calls: [tracing::Span; BIDDERS] = std::array::from_fn(|i| {
                tracing::info_span!(
                    target: TRACE_TARGET,
                    parent: &span,
                    "bidder_call",
                    otel.kind = "client",
                    bidder = %names[i],
                    outcome = Empty,
                    http.response.status_code = Empty,
                    otel.status_code = Empty,
                )
            });
            for call in &calls {
                if !call.is_disabled() {
                    call.record("outcome", "bid");
                }
            }
            if !span.is_disabled() {
                span.record("outcome", "bid");
            }
            black_box(calls)
        })
    });
    // What the bench itself spends moving five `Span` values, and one disabled span alone.
    group.bench_function("floor_span_none", |b| {
        b.iter(|| {
            let span = tracing::Span::none();
            let calls: [tracing::Span; BIDDERS] = std::array::from_fn(|_| tracing::Span::none());
            black_box(&span);
            black_box(calls)
        })
    });
    group.bench_function("one_disabled_span", |b| {
        b.iter(|| black_box(tracing::info_span!(target: TRACE_TARGET, "auction", imps = 1i64)))
    });
    group.finish();
}

criterion_group!(benches, stages, spans_export_off);
criterion_main!(benches);
