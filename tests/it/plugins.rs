//! The exchange on the kernel's plugin contract: what lives for the instance (partners' pools
//! and QPS limiters) survives an unrelated edit, instances are added and removed by a config
//! apply under simulator load without a failed request, and a host-mounted instance answers only
//! for its host.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

fn apply<'a>(
    ex: &'a Exchange,
    text: &str,
) -> impl Future<Output = bourse_kernel::ApplyReport> + use<'a> {
    let running = ex.running.as_ref().unwrap();
    let loaded = running
        .load_config_str(text, "test.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    async move { running.apply(loaded).await.expect("the change applies") }
}

#[tokio::test]
async fn a_partners_pool_survives_an_unrelated_edit_but_not_a_pool_setting_or_endpoint_change() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "p", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config("", &[bidder("p", &partner, "")])).await;
    assert_eq!(
        ex.auction(&banner_request("pool-1", &[("1", 0.1)])).await.0,
        200
    );
    assert_eq!(partner.connections.load(SeqCst), 1);

    // The default tmax has nothing to do with the partner's connections: the pool is kept.
    let report = apply(
        &ex,
        &config("default_tmax_ms = 400", &[bidder("p", &partner, "")]),
    )
    .await;
    assert_eq!(report.restarted, ["exchange"]);
    assert_eq!(
        ex.auction(&banner_request("pool-2", &[("1", 0.1)])).await.0,
        200
    );
    assert_eq!(
        partner.connections.load(SeqCst),
        1,
        "the new generation reused the kept-alive connection"
    );

    // A pool setting changes: a new pool, a new connection.
    let resized = bidder("p", &partner, "max_idle_connections = 7");
    apply(
        &ex,
        &config("default_tmax_ms = 400", std::slice::from_ref(&resized)),
    )
    .await;
    assert_eq!(
        ex.auction(&banner_request("pool-3", &[("1", 0.1)])).await.0,
        200
    );
    assert_eq!(partner.connections.load(SeqCst), 2);

    // The endpoint moves (the pool holds it, read once): a new pool, a new connection.
    let moved = resized.replace("/bid\"", "/bid?v=2\"");
    assert_ne!(moved, resized);
    apply(&ex, &config("default_tmax_ms = 400", &[moved])).await;
    assert_eq!(
        ex.auction(&banner_request("pool-4", &[("1", 0.1)])).await.0,
        200
    );
    assert_eq!(partner.connections.load(SeqCst), 3);
}

#[tokio::test]
async fn a_partners_qps_tokens_survive_an_unrelated_edit() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "p", &[("1", 1.0)]))).await;
    let limited = |extra: &str| config(extra, &[bidder("p", &partner, "qps = 1")]);
    let ex = Exchange::start(&limited("")).await;
    let throttled = "bourse_bidder_throttled_total{bidder=\"p\"}";
    // The limiter allows one request a second. A fresh limiter would let the first auction
    // after the edit through at once; the kept one has no token left until a second passed
    // since the last request. Tried until one round fits well inside that second.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 5, "no round fitted in a second on this machine");
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let asked = partner.request_count();
        let started = Instant::now();
        ex.auction(&banner_request("qps-a", &[("1", 0.1)])).await;
        assert_eq!(
            partner.request_count(),
            asked + 1,
            "a full bucket lets one through"
        );
        let before = ex.metric(throttled).await;
        apply(
            &ex,
            &limited(&format!("default_tmax_ms = {}", 400 + rounds)),
        )
        .await;
        ex.auction(&banner_request("qps-b", &[("1", 0.1)])).await;
        if started.elapsed() >= Duration::from_millis(800) {
            continue;
        }
        assert_eq!(
            partner.request_count(),
            asked + 1,
            "the edit did not refill the partner's bucket"
        );
        assert_eq!(ex.metric(throttled).await, before + 1.0);
        break;
    }
    // A new QPS cap is a new limiter, with its own full bucket.
    let asked = partner.request_count();
    apply(&ex, &config("", &[bidder("p", &partner, "qps = 2")])).await;
    ex.auction(&banner_request("qps-c", &[("1", 0.1)])).await;
    assert_eq!(partner.request_count(), asked + 1);
}

/// A second exchange instance, answering only for `second.example` with its own partner.
fn second_instance(partner: &Partner) -> String {
    format!(
        "\n[plugins.second]\nkind = \"exchange\"\nmount = {{ hosts = [\"second.example\"] }}\n\
         notice_secret = \"second-secret\"\npublic_url = \"http://second.example\"\n\n\
         [[plugins.second.bidders]]\n{}\n",
        bidder("only-second", partner, "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_added_and_removed_under_simulator_load_fails_no_request() {
    let mut scenario = bourse_sim::scenario::Scenario::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/four-bidders.toml"),
    )
    .unwrap();
    // Steady load a debug build serves with room to spare on two shared cores.
    scenario.traffic.mode = bourse_sim::traffic::Mode::Open { rate: 80.0 };
    scenario.traffic.duration_secs = Some(6.0);
    scenario.traffic.warmup_secs = 0.0;
    scenario.traffic.connections = 16;
    let bidders = scenario.start_bidders().await.unwrap();
    let base = bourse::sim::exchange_config(&scenario, &bidders).unwrap();
    let node = Node::start(&base);
    let second = Partner::start(|r| Reply::Json(bids(r, "second-seat", &[("1", 3.0)]))).await;

    let target = node.url("/openrtb2/auction");
    let traffic = scenario.traffic.clone();
    let load = tokio::spawn(async move {
        bourse_sim::traffic::run(&target, &traffic, 7, false)
            .await
            .unwrap()
    });
    let for_host = |host: &'static str, id: &str| {
        http::Request::post(node.url("/openrtb2/auction"))
            .header("host", host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&banner_request(id, &[("1", 0.1)])).unwrap(),
            )))
            .unwrap()
    };
    // Waits until requests for `host` do (or do not) reach the second instance's partner.
    let reaches_second = |host: &'static str| {
        let node = &node;
        async move {
            let (status, body) = node.send(for_host(host, "probe")).await;
            status == 200 && String::from_utf8_lossy(&body).contains("second-seat")
        }
    };

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // Added by a saved config file (the watcher applies it like any change).
    save_by_rename(
        &node.config_path,
        &format!("{base}{}", second_instance(&second)),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reaches_second("second.example").await {
        assert!(
            Instant::now() < deadline,
            "the second instance never answered: {}",
            node.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It answers for its host only; every other host still gets the first instance.
    assert!(!reaches_second("first.example").await);
    let asked = second.request_count();

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    save_by_rename(&node.config_path, &base);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reaches_second("second.example").await {
        assert!(
            Instant::now() < deadline,
            "the second instance was never removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after_removal = second.request_count();
    assert!(!reaches_second("second.example").await);
    assert_eq!(
        second.request_count(),
        after_removal,
        "its partner is asked no more"
    );
    assert!(after_removal >= asked);

    let report = load.await.unwrap();
    assert!(report.counts.sent > 400, "{:?}", report.counts);
    assert_eq!(
        report.counts.errors.total(),
        0,
        "no simulated request failed: {:?}",
        report.counts.errors
    );
}
