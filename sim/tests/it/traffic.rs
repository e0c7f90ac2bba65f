//! The traffic generator over real loopback sockets: latency correction, seeded requests,
//! counts, rates, modes, reports and the committed scenarios.

use bourse_engine::openrtb::BidRequest;
use bourse_engine::validate::{Limits, validate};
use bourse_sim::bidder::{Faults, SimBidder, SimBidderConfig};
use bourse_sim::population::{ID_LEN, Mix, RequestPool};
use bourse_sim::report::Report;
use bourse_sim::scenario::Scenario;
use bourse_sim::traffic::{self, Mode, Step, TrafficConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How the test server answers.
#[derive(Clone, Copy)]
enum Server {
    /// 204 at once.
    Fast,
    /// 204 at once, except that a request arriving between `from` and `to` after the first
    /// request is held for `hold` first: a server-wide stall.
    Stall {
        from: Duration,
        to: Duration,
        hold: Duration,
    },
    /// Every request is held this long.
    Slow(Duration),
}

/// Starts a loopback HTTP/1.1 server; returns the URL of its auction endpoint.
async fn server(kind: Server) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = Arc::new(OnceLock::<Instant>::new());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let first = first.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let first = first.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            let started = *first.get_or_init(Instant::now);
                            let hold = match kind {
                                Server::Fast => Duration::ZERO,
                                Server::Stall { from, to, hold } => {
                                    let at = started.elapsed();
                                    if at >= from && at < to {
                                        hold
                                    } else {
                                        Duration::ZERO
                                    }
                                }
                                Server::Slow(hold) => hold,
                            };
                            if !hold.is_zero() {
                                tokio::time::sleep(hold).await;
                            }
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::NO_CONTENT;
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}/openrtb2/auction")
}

fn assert_counts_add_up(report: &Report) {
    let c = &report.counts;
    assert_eq!(
        c.sent,
        c.bid_responses + c.no_bids + c.errors.total(),
        "sent = bids + no-bids + errors: {c:?}"
    );
}

fn small(mut traffic: TrafficConfig) -> TrafficConfig {
    traffic.pool_size = 64;
    traffic.mix.users = 200;
    traffic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_the_corrected_latency() {
    let target = server(Server::Stall {
        from: Duration::from_millis(500),
        to: Duration::from_millis(1500),
        hold: Duration::from_secs(1),
    })
    .await;
    let mut traffic = small(TrafficConfig::open(200.0, 3.0));
    traffic.connections = 8;
    traffic.timeout_ms = 5000;
    let report = traffic::run(&target, &traffic, 1, false).await.unwrap();
    // Shown when the test fails.
    eprintln!("{}", report.to_text());
    assert_counts_add_up(&report);
    assert_eq!(report.counts.sent, 600);
    assert_eq!(report.counts.errors.total(), 0, "{:?}", report.counts);
    let (corrected, naive) = (&report.latency, &report.latency_uncorrected);
    assert!(corrected.p99_ms >= 500.0, "corrected p99 {corrected:?}");
    assert!(corrected.max_ms >= 900.0, "corrected max {corrected:?}");
    assert!(
        corrected.p99_ms > 10.0 * naive.p50_ms,
        "corrected {corrected:?} vs naive {naive:?}"
    );
    // Requests queued behind the stalled connections were sent late: measured from their actual
    // send they look fast, measured from their scheduled time they do not.
    assert!(
        naive.p90_ms < corrected.p90_ms,
        "corrected {corrected:?} vs naive {naive:?}"
    );
    let stalled = report
        .timeline
        .iter()
        .filter_map(|s| s.p99_ms)
        .fold(0.0, f64::max);
    assert!(stalled >= 500.0, "the stall shows in the timeline");
}

#[test]
fn a_seed_makes_the_request_sequence_repeatable() {
    let mix = Mix {
        deal_share: 0.3,
        deal_ids: vec!["deal-a".into(), "deal-b".into()],
        audio: 0.1,
        eur_share: 0.2,
        second_price_share: 0.5,
        users: 300,
        ..Mix::default()
    };
    let bodies = |seed: u64| {
        let pool = RequestPool::generate(seed, &mix, 50);
        (0..120u64)
            .map(|i| {
                let mut body = pool.body(i).to_vec();
                body[7..7 + ID_LEN].fill(b'x');
                body
            })
            .collect::<Vec<_>>()
    };
    let first = bodies(7);
    assert_eq!(first, bodies(7), "the same seed gives the same requests");
    assert_ne!(first, bodies(8), "another seed gives other requests");
    assert_eq!(first[0], first[50], "the pool is cycled");
}

#[test]
fn generated_requests_are_valid_openrtb_with_unique_ids() {
    let mix = Mix {
        deal_share: 0.5,
        deal_ids: vec!["deal-a".into()],
        audio: 0.2,
        app_share: 0.5,
        ..Mix::default()
    };
    let pool = RequestPool::generate(3, &mix, 200);
    let mut ids = HashSet::new();
    let (mut apps, mut deals, mut media) = (0, 0, HashSet::new());
    for i in 0..400u64 {
        let body = pool.body(i);
        let request: BidRequest = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
        validate(&request, &Limits::default()).unwrap();
        assert_eq!(request.id, pool.id(i));
        assert!(ids.insert(request.id.clone()), "ids are unique");
        assert!((1..=3).contains(&request.imp.len()));
        apps += usize::from(request.app.is_some());
        for imp in &request.imp {
            media.extend(imp.media_types().iter());
            if let Some(pmp) = &imp.pmp {
                assert_eq!(pmp.deals[0].id, "deal-a");
                deals += 1;
            }
        }
    }
    assert!(apps > 100 && apps < 300, "about half from apps: {apps}");
    assert!(deals > 0, "some impressions offer the deal");
    assert_eq!(media.len(), 4, "every media type appears: {media:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_add_up_against_a_simulated_bidder() {
    let mut config = SimBidderConfig::new("counted");
    config.seed = 5;
    config.bid_rate = 0.5;
    config.faults = Faults {
        http_500: 0.1,
        ..Faults::default()
    };
    let sim = SimBidder::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let traffic = small(TrafficConfig::open(150.0, 1.0));
    let report = traffic::run(&sim.endpoint(), &traffic, 9, false)
        .await
        .unwrap();
    eprintln!("{}", report.to_text());
    assert_counts_add_up(&report);
    let c = &report.counts;
    assert_eq!(c.sent, 150);
    assert!(c.bid_responses > 0 && c.no_bids > 0, "{c:?}");
    assert!(c.errors.status_5xx > 0, "the injected 500s are counted");
    assert_eq!(c.errors.total(), c.errors.status_5xx, "{c:?}");
    assert!(report.bids >= c.bid_responses && report.net_cleared > 0.0);
    assert!(report.fill_rate > 0.0 && report.net_clearing_ecpm > 0.0);
    assert!(report.fill_rate <= 1.0 && report.net_per_thousand_requests > 0.0);
    let requests = sim
        .stats()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(requests, 150, "every request reached the bidder, parsed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_achieves_its_rate_against_a_fast_server() {
    let target = server(Server::Fast).await;
    let traffic = small(TrafficConfig::open(200.0, 2.0));
    let report = traffic::run(&target, &traffic, 2, false).await.unwrap();
    assert_counts_add_up(&report);
    assert_eq!(report.offered_rate, Some(200.0));
    assert!(
        report.achieved_rate >= 180.0,
        "achieved {}",
        report.achieved_rate
    );
    assert_eq!(report.counts.no_bids, 400);
    assert_eq!(report.no_bid_share, 1.0);
    assert_eq!(report.timeline.iter().map(|s| s.sent).sum::<u64>(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warmup_and_steps_are_counted_apart() {
    let target = server(Server::Fast).await;
    let mut traffic = small(TrafficConfig::stepped(vec![
        Step {
            rate: 100.0,
            secs: 0.5,
        },
        Step {
            rate: 200.0,
            secs: 0.5,
        },
    ]));
    traffic.warmup_secs = 0.2;
    let report = traffic::run(&target, &traffic, 2, false).await.unwrap();
    assert_counts_add_up(&report);
    assert_eq!(report.counts.warmup, 20);
    assert_eq!(report.counts.sent, 150);
    assert_eq!(report.offered_rate, Some(150.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_waits_for_answers() {
    let target = server(Server::Slow(Duration::from_millis(20))).await;
    let traffic = small(TrafficConfig::closed(4, 1.0));
    let report = traffic::run(&target, &traffic, 2, false).await.unwrap();
    assert_counts_add_up(&report);
    assert_eq!(report.offered_rate, None);
    // 4 workers at >= 20 ms each: at most about 200 requests in a second.
    assert!(
        report.counts.sent > 10 && report.counts.sent <= 210,
        "{:?}",
        report.counts
    );
    assert!(report.latency.p50_ms >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_gives_timeouts_and_overloads() {
    let target = server(Server::Slow(Duration::from_secs(5))).await;
    let mut traffic = small(TrafficConfig::open(200.0, 0.5));
    traffic.max_in_flight = 10;
    traffic.connections = 10;
    traffic.timeout_ms = 300;
    let report = traffic::run(&target, &traffic, 2, false).await.unwrap();
    assert_counts_add_up(&report);
    let errors = &report.counts.errors;
    assert!(errors.timeout > 0 && errors.overload > 0, "{errors:?}");
    assert_eq!(errors.total(), 100);
    assert!(
        report.latency.p50_ms >= 300.0,
        "timeouts count at the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_prints_serializes_and_plots() {
    let target = server(Server::Fast).await;
    let traffic = small(TrafficConfig::open(100.0, 1.0));
    let report = traffic::run(&target, &traffic, 2, false).await.unwrap();
    let text = report.to_text();
    for needle in ["open loop at 100/s", "p99.9", "no-bids", "timeline", "eCPM"] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["counts"]["sent"], 100);
    assert!(json["latency"]["p99_ms"].is_number());
    let path = std::env::temp_dir().join(format!("bourse-sim-plot-{}.svg", std::process::id()));
    report.plot_svg(&path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(svg.starts_with("<svg") && svg.contains("p99"), "{svg}");
}

#[test]
fn every_committed_scenario_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let scenario = Scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            names.push(scenario.name);
        }
    }
    names.sort();
    for expected in [
        "four-bidders",
        "hanging-bidder",
        "no-bid",
        "realistic",
        "smoke",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let hanging = Scenario::load(dir.join("hanging-bidder.toml")).unwrap();
    assert_eq!(hanging.bidders.len(), 4);
    assert_eq!(
        hanging
            .bidders
            .iter()
            .filter(|b| b.timeout_share == 1.0)
            .count(),
        1
    );
    let smoke = Scenario::load(dir.join("smoke.toml")).unwrap();
    assert!(smoke.traffic.duration() <= 5.0, "smoke stays short");
}

#[test]
fn a_bad_scenario_says_what_and_where() {
    let error = Scenario::parse(
        "name = \"x\"\nseed = 1\n[traffic]\nmode = { kind = \"open\", rate = 10 }\nduration_secs = 1\nrate = 5\n",
    )
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("rate") && message.contains("line 6"),
        "{message}"
    );
    let error = Scenario::parse(
        "name = \"x\"\nseed = 1\n[traffic]\nmode = { kind = \"open\", rate = 0 }\nduration_secs = 1\n",
    )
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("traffic.mode.rate"),
        "{error:#}"
    );
    let error = Scenario::parse(
        "name = \"x\"\nseed = 1\n[traffic]\nmode = { kind = \"closed\", concurrency = 2 }\n",
    )
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("duration_secs is required"),
        "{error:#}"
    );
    let mode = Scenario::parse(
        "name = \"x\"\nseed = 1\n[traffic]\nmode = { kind = \"stepped\", steps = [{ rate = 10, secs = 1 }, { rate = 20, secs = 2 }] }\n",
    )
    .unwrap()
    .traffic
    .mode;
    assert!(matches!(mode, Mode::Stepped { steps } if steps.len() == 2));
}

#[tokio::test]
async fn a_scenario_starts_its_bidders_and_configures_the_exchange() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/realistic.toml");
    let scenario = Scenario::load(path).unwrap();
    let bidders = scenario.start_bidders().await.unwrap();
    assert_eq!(bidders.len(), scenario.bidders.len());
    let table = scenario.exchange_table(&bidders);
    let config: bourse_engine::ExchangeConfig = toml::Value::Table(table).try_into().unwrap();
    assert_eq!(config.bidders.len(), bidders.len());
    assert_eq!(config.bidders[0].endpoint, bidders[0].endpoint());
    assert_eq!(config.bidders[0].timeout_ms, scenario.bidder_timeout_ms);
    assert_eq!(config.rates.get("EUR"), Some(&1.08), "the extras are kept");
}
