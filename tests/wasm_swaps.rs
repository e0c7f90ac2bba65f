//! A hundred swaps of the floor-rule plugin under the simulator's load, through the real
//! binary. A test binary of its own, so that no other test shares the two cores with the load
//! it judges latency under (test binaries run one after another).

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "it/wasm_support.rs"]
#[allow(dead_code, unused_imports)]
mod wasm_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::*;
use wasm_support::*;

/// Swaps of the floor rule (versions 1.0.1 … 1.0.101, the two tables alternating).
const SWAPS: u64 = 100;

/// The Done-when line: under the simulator's load, a hundred swaps of the floor rule fail no
/// auction and slow none past its deadline, the auction after each swap uses the new rule, and
/// resident memory after the hundredth swap is within 10% of after the first. The load runs at
/// half the ceiling, measured first on this very node (the plugin active, the same partners,
/// the same machine), whatever the build; `BOURSE_SWAP_LOAD_RATE` sets a rate instead.
/// `BOURSE_TEST_BIN` runs another build of bourse (a release build, say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_floor_rule_swaps_under_simulator_load_fail_no_auction() {
    let scenario_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/four-bidders.toml");
    let scenario = bourse_sim::scenario::Scenario::load(&scenario_path).unwrap();
    let bidders = scenario.start_bidders().await.unwrap();
    let probe = Partner::start(|_| Reply::Status(204)).await;
    let mut root: toml::Table =
        toml::from_str(&bourse::sim::exchange_config(&scenario, &bidders).unwrap()).unwrap();
    let exchange = root["plugins"]["exchange"].as_table_mut().unwrap();
    exchange.insert("fee".into(), 0.0.into());
    let probe_bidder: toml::Table = toml::from_str(&bidder("probe", &probe, "")).unwrap();
    exchange["bidders"]
        .as_array_mut()
        .unwrap()
        .push(probe_bidder.into());
    let dir = plugin_dir();
    drop_in(
        &dir,
        "floor-rule.plugin",
        &artifact("floor-rule", &[("version", "\"1.0.1\"")]),
    );
    let node = Node::start(&format!(
        "{}{}",
        toml::to_string(&root).unwrap(),
        wasm_table(&dir, "")
    ));
    let swaps = "bourse_wasm_swaps_total{plugin=\"floor-rule\"}";
    metric_reaches(&node, swaps, 1.0, Duration::from_secs(30)).await;

    let rate: f64 = match std::env::var("BOURSE_SWAP_LOAD_RATE") {
        Ok(rate) => rate.parse().expect("BOURSE_SWAP_LOAD_RATE is a number"),
        Err(_) => ceiling(&node, &dir) / 2.0,
    };
    eprintln!("load: {rate:.0} auctions/s");
    let answered_before = node
        .metric("bourse_exchange_auction_duration_seconds_count")
        .await;
    let in_time_before = node
        .metric("bourse_exchange_auction_duration_seconds_bucket{le=\"0.25\"}")
        .await;
    let load = Load::start(&scenario_path, &node.url("/openrtb2/auction"), rate, &dir);
    let load_started = Instant::now();
    // Connection pools, buffers and the admin's history fill during the first seconds of load:
    // memory is compared once they have.
    tokio::time::sleep(Duration::from_secs(15)).await;

    let artifacts: Vec<Vec<u8>> = (2..=SWAPS + 1)
        .map(|n| {
            let build = if n % 2 == 1 {
                "floor-rule"
            } else {
                "floor-rule-v2"
            };
            artifact(build, &[("version", &format!("\"1.0.{n}\""))])
        })
        .collect();
    let mut after_first = 0;
    for (i, bytes) in artifacts.iter().enumerate() {
        let n = i as u64 + 2;
        drop_in(&dir, "floor-rule.plugin", bytes);
        metric_reaches(&node, swaps, n as f64, Duration::from_secs(30)).await;
        let id = format!("probe-{n}");
        let (status, _) = auction(&node, &usa_request(&id)).await;
        assert!(status == 200 || status == 204, "probe {n}: {status}");
        let expected = usa_floor(n.is_multiple_of(2));
        assert_eq!(
            floor_told(&probe, &id),
            Some(expected),
            "the auction after swap {n} did not use version 1.0.{n}"
        );
        if n == 2 {
            after_first = resident_kib(node.pid());
        }
    }
    let after_last = resident_kib(node.pid());
    let swapping = load_started.elapsed();
    let reports = load.finish().await;
    let count = |path: &str| -> u64 {
        reports
            .iter()
            .map(|r| r.pointer(path).and_then(Value::as_u64).unwrap_or(0))
            .sum()
    };
    let sent = count("/counts/sent");
    let failed: u64 = reports.iter().map(failed_auctions).sum();
    assert!(
        sent as f64 > rate * swapping.as_secs_f64() * 0.8,
        "the load ran: {sent} auctions in {swapping:?}"
    );
    assert_eq!(failed, 0, "failed auctions under swaps");
    // Every auction answered within its deadline: the requests' tmax, measured from when
    // each was due to be sent.
    let slowest = reports
        .iter()
        .filter_map(|r| r["latency"]["max_ms"].as_f64())
        .fold(0.0, f64::max);
    let tmax = f64::from(scenario.traffic.mix.tmax_ms);
    assert!(
        slowest < tmax,
        "an auction took {slowest} ms, past its tmax of {tmax} ms"
    );
    // And on the server's side: every auction answered by its own deadline (tmax less the
    // exchange's budget), so none in the histogram past 250 ms.
    let answered = node
        .metric("bourse_exchange_auction_duration_seconds_count")
        .await
        - answered_before;
    let in_time = node
        .metric("bourse_exchange_auction_duration_seconds_bucket{le=\"0.25\"}")
        .await
        - in_time_before;
    assert!(
        answered >= sent as f64,
        "{answered} auctions for {sent} sent"
    );
    assert_eq!(in_time, answered, "auctions past 250 ms on the server");
    let metrics = node
        .send(
            http::Request::get(node.url("/metrics"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .1;
    let failed_calls: Vec<&str> = std::str::from_utf8(&metrics)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("bourse_wasm_call_errors_total{") && !l.ends_with(" 0"))
        .collect();
    assert!(
        failed_calls.is_empty(),
        "failed floor-rule calls: {failed_calls:?}"
    );
    eprintln!(
        "{SWAPS} swaps in {swapping:?} under {sent} auctions in {} rounds of load; resident after the first {after_first} KiB, after the last {after_last} KiB; slowest auction {slowest} ms; latency per round {:?}",
        reports.len(),
        reports
            .iter()
            .map(|r| r["latency"].to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        after_last as f64 <= after_first as f64 * 1.10,
        "resident memory grew from {after_first} KiB to {after_last} KiB"
    );
}

/// The node's ceiling in auctions per second: the simulator's closed loop (64 workers, each
/// sending when its last answer came) against it, for a few seconds.
fn ceiling(node: &Node, dir: &Path) -> f64 {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/ceiling.toml");
    let report = sim_run(
        &scenario,
        &node.url("/openrtb2/auction"),
        &["--duration", "8"],
        &dir.join("ceiling.json"),
    );
    let achieved = report["achieved_rate"].as_f64().unwrap();
    let failed = failed_auctions(&report);
    assert!(
        achieved > 0.0 && failed == 0,
        "the ceiling run: {achieved}/s, {failed} failed auctions"
    );
    eprintln!("ceiling: {achieved:.0} auctions/s");
    achieved
}

/// One `bourse sim run` of a scenario against `target`; its JSON report.
fn sim_run(scenario: &Path, target: &str, args: &[&str], report: &Path) -> Value {
    let status = Command::new(bourse_binary())
        .args(["sim", "run"])
        .arg(scenario)
        .args(["--target", target])
        .args(args)
        .arg("--json")
        .arg(report)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bourse sim run {args:?} failed");
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

/// Failed auctions in a `bourse sim run` report, whatever the kind of failure.
fn failed_auctions(report: &Value) -> u64 {
    report["counts"]["errors"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .sum()
}

/// `bourse sim run` in back-to-back rounds of `ROUND_SECS` until stopped, so the load lasts as
/// long as the swaps do, however slow the machine; each round's JSON report is kept.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rounds: std::thread::JoinHandle<Vec<Value>>,
}

const ROUND_SECS: u64 = 20;

impl Load {
    fn start(scenario: &Path, target: &str, rate: f64, dir: &Path) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (scenario, target, dir, stopped) = (
            scenario.to_owned(),
            target.to_owned(),
            dir.to_owned(),
            stop.clone(),
        );
        let rounds = std::thread::spawn(move || {
            let mut reports = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let path = dir.join(format!("load-{}.json", reports.len()));
                let (rate, secs) = (rate.to_string(), ROUND_SECS.to_string());
                let args = ["--rate", &rate, "--duration", &secs];
                reports.push(sim_run(&scenario, &target, &args, &path));
            }
            reports
        });
        Load { stop, rounds }
    }

    /// Lets the running round end and returns every round's report.
    async fn finish(self) -> Vec<Value> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || self.rounds.join().expect("the load failed"))
            .await
            .unwrap()
    }
}

/// Resident memory of a process, KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
