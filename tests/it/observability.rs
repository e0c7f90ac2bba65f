//! Observability end to end: the shipped Prometheus configuration scrapes the real binary under
//! simulator load and every query of every shipped Grafana dashboard returns data; promtool
//! accepts the shipped configuration and alerting rules; and metric label sets stay bounded by
//! the configuration whatever ids requests carry.

use crate::support::*;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The shipped monitoring files.
fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

/// Runs Debian's `promtool` (package `prometheus`) and returns whether it succeeded and what
/// it said.
fn promtool(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool must be installed (apt-get install -y prometheus)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[test]
fn promtool_accepts_the_shipped_scrape_config_and_alerting_rules() {
    let dir = grafana_dir().join("prometheus");
    let config = dir.join("prometheus.yml");
    let rules = dir.join("alerts.yml");
    let (ok, said) = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(ok, "promtool check config: {said}");
    // The config names the rules file, so checking it also found and checked the rules.
    assert!(said.contains("1 rule files found"), "{said}");
    let (ok, said) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "promtool check rules: {said}");
    // Each alert fires on the situation it names, and not before (alerts.test.yml).
    let (ok, said) = promtool(&[
        "test",
        "rules",
        dir.join("alerts.test.yml").to_str().unwrap(),
    ]);
    assert!(ok, "promtool test rules: {said}");
    for alert in [
        "BourseBidderDown",
        "BourseBidderErrorRate",
        "BourseBidderTimeoutRate",
        "BourseOverheadP99High",
        "BourseFillRateDrop",
        "BourseBeaconForgerySpike",
        "BourseConfigApplyFailed",
    ] {
        let text = std::fs::read_to_string(&rules).unwrap();
        assert!(
            text.contains(&format!("alert: {alert}")),
            "{alert} is shipped"
        );
    }
}

#[test]
fn instances_up_is_red_at_zero_and_green_from_one() {
    let kernel: Value = serde_json::from_str(
        &std::fs::read_to_string(grafana_dir().join("dashboards/bourse-kernel.json")).unwrap(),
    )
    .unwrap();
    let panel = kernel["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "Instances up")
        .expect("the kernel dashboard has an Instances up panel");
    let steps = &panel["fieldConfig"]["defaults"]["thresholds"]["steps"];
    assert_eq!(steps[0]["color"], "red", "{steps}");
    assert_eq!(
        (&steps[1]["color"], &steps[1]["value"]),
        (&Value::from("green"), &Value::from(1)),
        "{steps}"
    );
}

/// A Prometheus server started on the shipped configuration, scraping one bourse; killed and
/// its storage removed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    dir: PathBuf,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Prometheus {
    /// Copies the shipped config with 1 s scrape and evaluation intervals and `target` as the
    /// only file_sd target (the things a deployment or a test changes), with these alerting
    /// `rules`, backfills `history` (OpenMetrics text) into the store, and starts Prometheus
    /// on a free port.
    async fn start_with(target: SocketAddr, rules: &str, history: &str) -> Prometheus {
        let shipped = grafana_dir().join("prometheus");
        let dir = std::env::temp_dir().join(format!("bourse-prom-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("targets")).unwrap();
        let config = std::fs::read_to_string(shipped.join("prometheus.yml")).unwrap();
        assert_eq!(config.matches("scrape_interval: 15s").count(), 1);
        assert_eq!(config.matches("evaluation_interval: 15s").count(), 1);
        std::fs::write(
            dir.join("prometheus.yml"),
            config
                .replace("scrape_interval: 15s", "scrape_interval: 1s")
                .replace("evaluation_interval: 15s", "evaluation_interval: 1s"),
        )
        .unwrap();
        std::fs::write(dir.join("alerts.yml"), rules).unwrap();
        let targets = std::fs::read_to_string(shipped.join("targets/bourse.json")).unwrap();
        assert!(targets.contains("127.0.0.1:8080"), "{targets}");
        std::fs::write(
            dir.join("targets/bourse.json"),
            targets.replace("127.0.0.1:8080", &target.to_string()),
        )
        .unwrap();
        if !history.is_empty() {
            let file = dir.join("history.om");
            std::fs::write(&file, history).unwrap();
            let (ok, said) = promtool(&[
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                file.to_str().unwrap(),
                dir.join("data").to_str().unwrap(),
            ]);
            assert!(ok, "promtool backfills the history: {said}");
        }
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus must be installed (apt-get install -y prometheus)");
        let prometheus = Prometheus {
            child,
            addr,
            dir,
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while prometheus.get("/-/ready").await.map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready: {}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path_and_query: &str) -> Option<(u16, Value)> {
        let req = http::Request::get(format!("http://{}{path_and_query}", self.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.client.request(req).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `GET /api/v1/<api>` with these parameters; the `data` of a successful answer.
    async fn api(&self, api: &str, params: &[(&str, &str)]) -> Value {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, body) = self
            .get(&format!("/api/v1/{api}?{query}"))
            .await
            .expect("Prometheus answers");
        assert_eq!(status, 200, "{api} {params:?}: {body}");
        assert_eq!(body["status"], "success", "{api} {params:?}: {body}");
        body["data"].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every `(panel title, expr)` of a dashboard, rows' nested panels included.
fn panel_queries(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
        if let Some(nested) = panel["panels"].as_array() {
            panel_queries(nested, out);
        }
    }
}

/// Replaces Grafana's variables as Grafana would with every option selected: template
/// variables by their `allValue`, `$__rate_interval` by four scrape intervals.
fn substitute(expr: &str, variables: &[(String, String)]) -> String {
    let mut expr = expr
        .replace("$__rate_interval", "4s")
        .replace("$__interval", "1s");
    // Longest names first, so `$bidder` does not eat the start of a longer name.
    for (name, value) in variables {
        expr = expr
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    expr
}

/// Billed revenue as `target` would have reported it a week and a day before now (two hours
/// up to a few minutes past each moment, a sample a minute), in OpenMetrics for promtool's
/// backfill: a test cannot wait a week for the comparison panels' data.
fn revenue_history(target: SocketAddr) -> String {
    let now = unix_now() as i64;
    let mut text = String::from("# TYPE bourse_exchange_billed_revenue counter\n");
    for back in [7 * 86_400, 86_400] {
        for minute in 0..=125_i64 {
            let at = now - back - 7_200 + minute * 60;
            let billed = minute as f64 * 0.05;
            text.push_str(&format!(
                "bourse_exchange_billed_revenue_total{{instance=\"{target}\",job=\"bourse\"}} {billed} {at}\n"
            ));
        }
    }
    text + "# EOF\n"
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const SITE: &str = r#"
public_url = "http://bourse.test"
notice_secret = "observability-secret"
fee = 0.1

[[publishers]]
id = "news"
name = "Example News"

[[placements]]
id = "news-top"
publisher = "news"
sizes = [[300, 250]]
floor = 0.2

[[placements]]
id = "news-side"
publisher = "news"
sizes = [[300, 250]]
floor = 0.1

[floors]
enabled = true
min_observations = 100
window = 200
recompute_interval_ms = 50
"#;

/// The real binary serving a scenario's simulated bidders plus one publisher with two tag
/// placements, learned floors and reach.
fn node_config(
    scenario: &bourse_sim::scenario::Scenario,
    bidders: &[bourse_sim::bidder::SimBidderHandle],
) -> String {
    let text = bourse::sim::exchange_config(scenario, bidders).unwrap();
    let mut root: toml::Table = toml::from_str(&text).unwrap();
    let site: toml::Table = toml::from_str(SITE).unwrap();
    let exchange = root["plugins"]["exchange"].as_table().cloned().unwrap();
    let mut exchange = exchange;
    exchange.extend(site);
    root["plugins"]
        .as_table_mut()
        .unwrap()
        .insert("exchange".into(), toml::Value::Table(exchange));
    // The courses site, for the sites dashboard: its store in a file of this run.
    let sites_db = std::env::temp_dir().join(format!(
        "bourse-observability-sites-{:016x}.db",
        rand::random::<u64>()
    ));
    root.insert(
        "sites".into(),
        toml::from_str(&format!(
            "[store]\npath = {:?}\n",
            sites_db.display().to_string()
        ))
        .unwrap(),
    );
    root["plugins"].as_table_mut().unwrap().insert(
        "courses".into(),
        toml::from_str(
            "public_url = \"http://bourse.test/courses\"\n\
             [stripe]\nsecret_key = \"sk_test_observability\"\n\
             webhook_secret = \"whsec_observability_test\"\ntest_mode = true\n",
        )
        .unwrap(),
    );
    // Reach gauges refreshed often enough for the test's few seconds of load.
    root.insert(
        "services".into(),
        toml::from_str("[uniques]\nmetrics_interval_ms = 200\n").unwrap(),
    );
    toml::to_string(&root).unwrap()
}

/// The path and query of one of our URLs (public_url is http://bourse.test here).
fn local(url: &str) -> String {
    url.strip_prefix("http://bourse.test")
        .unwrap_or_else(|| panic!("not one of ours: {url}"))
        .to_owned()
}

async fn post_node(node: &Node, path: &str, body: Vec<u8>) -> (http::StatusCode, Bytes) {
    let req = http::Request::post(node.url(path))
        .header("content-type", "text/plain")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1",
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    node.send(req).await
}

/// How long the load lasts: at least `MIN_LOAD`, and until the ad tags have shown enough pages
/// for the floor learner (100 auctions per placement), even on a busy machine.
const MIN_LOAD: Duration = Duration::from_secs(9);
const MAX_LOAD: Duration = Duration::from_secs(40);
const ENOUGH_PAGES: usize = 140;
/// Pages in flight at once.
const TAG_WORKERS: u64 = 8;

/// Shared progress of the load.
#[derive(Default)]
struct Load {
    pages: std::sync::atomic::AtomicUsize,
    billed: std::sync::atomic::AtomicUsize,
    /// Set when the simulator's last run ends, so the ad tags stop with it and every rate()
    /// window at the end holds both kinds of traffic.
    finished: std::sync::atomic::AtomicBool,
}

impl Load {
    fn done(&self, started: Instant) -> bool {
        let elapsed = started.elapsed();
        elapsed >= MAX_LOAD
            || (elapsed >= MIN_LOAD
                && self.pages.load(std::sync::atomic::Ordering::Relaxed) >= ENOUGH_PAGES)
    }
}

/// Pages asking for both placements until the simulator stops, each rendered ad beaconed
/// (impression and view), a share replayed and a share forged, as browsers and fraudsters would.
async fn drive_ad_tags(node: &Node, worker: u64, load: &Load) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut n = worker;
    while !load.finished.load(Relaxed) {
        n += TAG_WORKERS;
        load.pages.fetch_add(1, Relaxed);
        let page = json!({
            "page": format!("https://news.example/story?id={n}"),
            "slots": [
                {"id": "top", "placement": "news-top"},
                {"id": "side", "placement": "news-side"},
            ],
            "uid": format!("{:032x}", n % 400),
            "consent": {"denied": false},
        });
        let (status, body) = post_node(node, "/ad", serde_json::to_vec(&page).unwrap()).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).unwrap();
        for slot in answer["slots"].as_array().into_iter().flatten() {
            let imp = local(slot["imp"].as_str().unwrap());
            let view = local(slot["view"].as_str().unwrap());
            if post_node(node, &imp, Vec::new()).await.0 == 204 {
                load.billed.fetch_add(1, Relaxed);
            }
            post_node(node, &view, Vec::new()).await;
            if n.is_multiple_of(5) {
                post_node(node, &imp, Vec::new()).await; // replayed: a duplicate
            }
            if n.is_multiple_of(7) {
                // A token whose signature no longer matches: forged.
                let forged = imp.replacen("t=", "t=x", 1);
                post_node(node, &forged, Vec::new()).await;
            }
        }
    }
}

/// The simulator's open-loop traffic, in three-second runs until the load is done; the bids
/// of all runs.
async fn drive_simulator(
    target: &str,
    scenario: &bourse_sim::scenario::Scenario,
    load: &Load,
    started: Instant,
) -> u64 {
    let mut bids = 0;
    let mut seed = scenario.seed;
    while !load.done(started) {
        let report = bourse_sim::traffic::run(target, &scenario.traffic, seed, false)
            .await
            .unwrap();
        bids += report.bids;
        seed += 1;
    }
    load.finished
        .store(true, std::sync::atomic::Ordering::Relaxed);
    bids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_prometheus_scraping_bourse_under_load() {
    let mut scenario = bourse_sim::scenario::Scenario::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/four-bidders.toml"),
    )
    .unwrap();
    // Light but steady: enough for every rate() window, easy on two cores.
    scenario.traffic.mode = bourse_sim::traffic::Mode::Open { rate: 100.0 };
    scenario.traffic.duration_secs = Some(3.0);
    scenario.traffic.warmup_secs = 0.0;
    scenario.traffic.connections = 16;
    let bidders = scenario.start_bidders().await.unwrap();
    let node = Node::start(&node_config(&scenario, &bidders));
    // The overview compares the last hour's revenue with the same hour a day and a week ago:
    // that history is backfilled, so those queries read stored data too.
    let rules = std::fs::read_to_string(grafana_dir().join("prometheus/alerts.yml")).unwrap();
    let prometheus = Prometheus::start_with(node.addr, &rules, &revenue_history(node.addr)).await;

    let started = Instant::now();
    let target = node.url("/openrtb2/auction");
    let load = Load::default();
    let (bids, (), ()) = tokio::join!(
        drive_simulator(&target, &scenario, &load, started),
        async {
            futures_util::future::join_all(
                (0..TAG_WORKERS).map(|worker| drive_ad_tags(&node, worker, &load)),
            )
            .await;
        },
        // The courses site's webhook refuses unsigned deliveries: the sites dashboard's
        // webhook panels have traffic to show.
        async {
            while !load.done(started) {
                let (status, _) =
                    post_node(&node, "/courses/webhooks/stripe", b"{}".to_vec()).await;
                assert_eq!(status, http::StatusCode::BAD_REQUEST);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    );
    let load_ended = unix_now();
    assert!(bids > 100, "the simulator's auctions cleared: {bids} bids");
    let (pages, billed) = (load.pages.into_inner(), load.billed.into_inner());
    assert!(
        pages >= ENOUGH_PAGES && billed > 50,
        "ad tags billed {billed} impressions on {pages} pages"
    );
    // Let the scrape after the load land.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Evaluate inside the load, so rate() windows of 4 s hold traffic on every side.
    let at = format!("{:.3}", load_ended - 1.0);

    let up = prometheus
        .api("query", &[("query", "up{job=\"bourse\"}"), ("time", &at)])
        .await;
    assert_eq!(up["result"][0]["value"][1], "1", "bourse scraped: {up}");

    let mut checked = 0;
    let mut failures = Vec::new();
    let dashboards = grafana_dir().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dashboards)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "six dashboards: {files:?}");
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let templating = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            templating
                .iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{name} picks its Prometheus data source through a variable"
        );
        let mut variables: Vec<(String, String)> = Vec::new();
        for variable in templating.iter().filter(|v| v["type"] == "query") {
            let var = variable["name"].as_str().unwrap().to_owned();
            variables.push((
                var.clone(),
                variable["allValue"].as_str().unwrap().to_owned(),
            ));
            // The variable's own options come from a label_values(metric, label) query.
            let definition = variable["definition"].as_str().unwrap();
            let (metric, label) = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|d| d.split_once(", "))
                .unwrap_or_else(|| panic!("{name}: ${var} is label_values(metric, label)"));
            let values = prometheus
                .api(&format!("label/{label}/values"), &[("match[]", metric)])
                .await;
            if values.as_array().is_none_or(|v| v.is_empty()) {
                failures.push(format!("{name}: variable ${var} has no options"));
            }
        }
        variables.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
        let mut queries = Vec::new();
        panel_queries(dashboard["panels"].as_array().unwrap(), &mut queries);
        assert!(queries.len() >= 8, "{name} has {} queries", queries.len());
        for (panel, expr) in queries {
            let query = substitute(&expr, &variables);
            assert!(
                !query.contains('$'),
                "{name} / {panel}: unsubstituted {query}"
            );
            let data = prometheus
                .api("query", &[("query", &query), ("time", &at)])
                .await;
            checked += 1;
            let finite = data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|series| {
                    series["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(f64::is_finite)
                });
            if !finite {
                failures.push(format!("{name} / {panel}: {query} -> {data}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries returned no data:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(prometheus);
    drop(node);
    drop(bidders);
}

/// A recognisable prefix for ids no configuration contains.
const HOSTILE: &str = "hostile-";

fn hostile_id() -> String {
    format!("{HOSTILE}{:012x}", rand::random::<u64>() >> 16)
}

/// Every sample of a Prometheus text exposition as (family, labels).
fn series(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let Some((name, rest)) = line.split_once('{') else {
                let name = line.split_whitespace().next().unwrap();
                return (name.to_owned(), BTreeMap::new());
            };
            let body = &rest[..rest.rfind('}').unwrap()];
            let mut labels = BTreeMap::new();
            let mut chars = body.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "{line}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.push(chars.next().unwrap()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
                if chars.peek() == Some(&',') {
                    chars.next();
                }
                labels.insert(key.trim().to_owned(), value);
            }
            (name.to_owned(), labels)
        })
        .collect()
}

async fn send_hostile(ex: &Exchange, n: usize) {
    let path = match n % 10 {
        0..=5 => "/openrtb2/auction".to_owned(),
        6 | 7 => "/ad".to_owned(),
        8 => format!("/beacon/imp?t={}", ["garbage", "a.b", &hostile_id()][n % 3]),
        _ => [
            format!("/notice/{}?t=x", hostile_id()),
            format!("/notice/win?t={}", hostile_id()),
            format!("/{}", hostile_id()),
        ][n % 3]
            .clone(),
    };
    let body = match path.as_str() {
        "/openrtb2/auction" => {
            let mut request = banner_request(&hostile_id(), &[("1", 0.01), ("2", 0.01)]);
            request["site"]["publisher"]["id"] = json!(hostile_id());
            request["site"]["id"] = json!(hostile_id());
            request["imp"][0]["tagid"] = json!(hostile_id());
            request["imp"][1]["tagid"] = json!(hostile_id());
            let bidder = hostile_id();
            request["imp"][0]["ext"] = json!({bidder.clone(): {"placement": hostile_id()}, "prebid": {"bidder": {bidder: {}}}});
            request["ext"] = json!({"prebid": {"bidder": {hostile_id(): {}}}});
            if n.is_multiple_of(7) {
                request["cur"] = json!([hostile_id()]); // an unknown currency: refused
            }
            serde_json::to_vec(&request).unwrap()
        }
        "/ad" => serde_json::to_vec(&json!({
            "page": format!("https://{}.example/", hostile_id()),
            "slots": [
                {"id": hostile_id(), "placement": hostile_id()},
                {"id": hostile_id(), "placement": "news-top"},
            ],
            "uid": hostile_id(),
        }))
        .unwrap(),
        _ => Vec::new(),
    };
    let method = if body.is_empty() && n.is_multiple_of(2) {
        http::Method::GET
    } else {
        http::Method::POST
    };
    let mut req = http::Request::builder().method(method).uri(ex.url(&path));
    if n.is_multiple_of(13) {
        req = req.header("content-encoding", hostile_id());
    }
    let (status, _, _) = ex
        .send(req.body(Full::new(Bytes::from(body))).unwrap())
        .await;
    assert!(status.as_u16() < 500, "{path}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_stay_bounded_by_config_whatever_ids_requests_carry() {
    let bid_on_everything = |r: &Value| {
        Reply::Json(bids_on_every_imp(r, "seat", 1.5, |b| {
            b["w"] = json!(300);
            b["h"] = json!(250);
        }))
    };
    let alpha = Partner::start(bid_on_everything).await;
    let beta = Partner::start(|_| Reply::Status(204)).await;
    let site = r#"
[[plugins.exchange.publishers]]
id = "news"

[[plugins.exchange.placements]]
id = "news-top"
publisher = "news"
sizes = [[300, 250]]
floor = 0.2

[[plugins.exchange.placements]]
id = "news-side"
publisher = "news"
sizes = [[300, 250]]
"#;
    let ex = Exchange::start(&config(
        site,
        &[bidder("alpha", &alpha, ""), bidder("beta", &beta, "")],
    ))
    .await;
    let configured: BTreeMap<&str, BTreeSet<&str>> = [
        ("bidder", ["alpha", "beta"].into()),
        ("publisher", ["news"].into()),
        ("placement", ["news-top", "news-side"].into()),
        // Reach counts ids of the dimensions above.
        (
            "id",
            ["alpha", "beta", "news", "news-top", "news-side"].into(),
        ),
    ]
    .into();

    let scrape = || async {
        let (status, body) = ex.get("/metrics").await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).unwrap()
    };
    let mut after_half = BTreeSet::new();
    for half in 0..2 {
        futures_util::stream::iter(half * 1000..(half + 1) * 1000)
            .for_each_concurrent(32, |n| send_hostile(&ex, n))
            .await;
        if half == 0 {
            after_half = series(&scrape().await).into_iter().collect();
        }
    }
    let text = scrape().await;
    assert!(
        !text.contains(HOSTILE),
        "a request value became a label value:\n{}",
        text.lines()
            .filter(|l| l.contains(HOSTILE))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The requests reached the exchange and were counted, under bounded labels.
    for (series, at_least) in [
        ("bourse_bidder_requests_total{bidder=\"alpha\"}", 500.0),
        ("bourse_bidder_wins_total{bidder=\"alpha\"}", 500.0),
        (
            "bourse_adserve_slots_total{outcome=\"unknown_placement\"}",
            100.0,
        ),
        (
            "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"malformed\"}",
            10.0,
        ),
        (
            "bourse_http_requests_total{mount=\"none\",status=\"4xx\"}",
            10.0,
        ),
    ] {
        let counted = ex.metric(series).await;
        assert!(
            counted >= at_least,
            "{series} = {counted}, expected >= {at_least}"
        );
    }
    let all = series(&text);
    let mut values: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (name, labels) in &all {
        for (label, value) in labels {
            values
                .entry((name.clone(), label.clone()))
                .or_default()
                .insert(value.clone());
        }
    }
    for ((family, label), seen) in &values {
        if let Some(allowed) = configured.get(label.as_str()) {
            let extra: Vec<&String> = seen
                .iter()
                .filter(|v| !allowed.contains(v.as_str()))
                .collect();
            assert!(
                extra.is_empty(),
                "{family}{{{label}}} has unconfigured values {extra:?}"
            );
        }
        // Fixed enumerations (outcomes, reasons, kinds, histogram buckets) stay small.
        assert!(
            seen.len() <= 32,
            "{family}{{{label}}} has {} values: {seen:?}",
            seen.len()
        );
    }
    // A second thousand requests with as many new ids again added no series at all.
    let grown: Vec<_> = all
        .into_iter()
        .filter(|s| !after_half.contains(s))
        .collect();
    assert!(
        grown.is_empty(),
        "series added by the second half: {grown:?}"
    );
}

#[tokio::test]
async fn configured_floors_and_the_config_generation_follow_live_applies() {
    let partner = Partner::start(|_| Reply::Status(204)).await;
    let placements = |side_floor: Option<f64>| {
        let mut text = "[[plugins.exchange.publishers]]\nid = \"news\"\n\n\
             [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\n\
             sizes = [[300, 250]]\nfloor = 0.25\n"
            .to_owned();
        if let Some(floor) = side_floor {
            text.push_str(&format!(
                "\n[[plugins.exchange.placements]]\nid = \"news-side\"\npublisher = \"news\"\n\
                 sizes = [[300, 250]]\nfloor = {floor}\n"
            ));
        }
        config(&text, &[bidder("p", &partner, "")])
    };
    let ex = Exchange::start(&placements(Some(0.5))).await;
    assert_eq!(ex.metric("bourse_kernel_config_generation").await, 1.0);
    let top = "bourse_floors_configured_cpm{placement=\"news-top\"}";
    let side = "bourse_floors_configured_cpm{placement=\"news-side\"}";
    assert_eq!(ex.metric(top).await, 0.25);
    assert_eq!(ex.metric(side).await, 0.5);
    assert!(ex.metric("bourse_runtime_workers").await >= 1.0);
    assert!(ex.metric("bourse_runtime_alive_tasks").await >= 1.0);

    let running = ex.running.as_ref().unwrap();
    let apply = |text: String| async move {
        let loaded = running.load_config_str(&text, "test.toml").unwrap();
        running.apply(loaded).await
    };
    apply(placements(Some(0.75))).await.unwrap();
    assert_eq!(ex.metric(side).await, 0.75, "a changed floor shows");
    apply(placements(None)).await.unwrap();
    let (_, body) = ex.get("/metrics").await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        !text.lines().any(|line| line.starts_with(side)),
        "a removed placement loses its floor series:\n{text}"
    );
    assert_eq!(ex.metric(top).await, 0.25);
    assert_eq!(ex.metric("bourse_kernel_config_generation").await, 3.0);
    assert_eq!(
        ex.metric("bourse_kernel_config_applies_total{result=\"ok\"}")
            .await,
        2.0
    );
    let applied_at = ex
        .metric("bourse_kernel_config_last_applied_timestamp_seconds")
        .await;
    assert!((unix_now() - applied_at).abs() < 60.0, "{applied_at}");
}

/// The names and states of the alerts Prometheus holds for `bidder`.
async fn bidder_alerts(prometheus: &Prometheus, bidder: &str) -> Vec<(String, String)> {
    let data = prometheus.api("alerts", &[]).await;
    data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|alert| alert["labels"]["bidder"] == bidder)
        .map(|alert| {
            (
                alert["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                alert["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Polls until `done` holds for the bidder's alerts, or fails after `within`.
async fn wait_for_alerts(
    prometheus: &Prometheus,
    bidder: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let alerts = bidder_alerts(prometheus, bidder).await;
        if done(&alerts) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}; alerts now: {alerts:?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The shipped BourseBidderDown rule fires in a real Prometheus scraping bourse while a
/// bidder fails, and resolves once it answers again. Its windows are shortened (2 m → 10 s,
/// `for` 1 m → 5 s) so the test takes seconds; the rule's expression and labels are the
/// shipped ones, and alerts.test.yml checks it at its real timings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bidder_down_alert_fires_in_prometheus_during_an_outage_and_resolves_after_it() {
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outage = failing.clone();
    let partner = Partner::start(move |r| {
        if outage.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(503)
        } else {
            Reply::Json(bids(r, "flaky-seat", &[("1", 1.0)]))
        }
    })
    .await;
    let steady = Partner::start(|r| Reply::Json(bids(r, "steady-seat", &[("1", 0.8)]))).await;
    let exchange = Exchange::start(&config(
        "",
        &[bidder("flaky", &partner, ""), bidder("steady", &steady, "")],
    ))
    .await;

    let shipped = std::fs::read_to_string(grafana_dir().join("prometheus/alerts.yml")).unwrap();
    let start = shipped.find("- alert: BourseBidderDown").unwrap();
    let rule = &shipped[start..start + shipped[start..].find("\n\n").unwrap()];
    assert_eq!(rule.matches("[2m]").count(), 4, "{rule}");
    assert_eq!(rule.matches("for: 1m").count(), 1, "{rule}");
    let fast = rule.replace("[2m]", "[10s]").replace("for: 1m", "for: 5s");
    let prometheus = Prometheus::start_with(exchange.addr, &shipped.replace(rule, &fast), "").await;

    // Twenty auctions a second until the test ends.
    let load = {
        let (addr, client) = (exchange.addr, exchange.client.clone());
        tokio::spawn(async move {
            for n in 0u64.. {
                let request = banner_request(&format!("alert-{n}"), &[("1", 0.1)]);
                let req = http::Request::post(format!("http://{addr}/openrtb2/auction"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(
                        serde_json::to_vec(&request).unwrap(),
                    )))
                    .unwrap();
                let _ = client.request(req).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // Healthy: once Prometheus has scraped the bidder's traffic over a window of the rule, it
    // holds no alert for the bidder.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let calls = prometheus
            .api(
                "query",
                &[(
                    "query",
                    "sum(rate(bourse_bidder_requests_total{bidder=\"flaky\"}[10s]))",
                )],
            )
            .await;
        let rate = calls["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        if rate.is_some_and(|rate| rate > 5.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus sees the flaky bidder's calls: {calls}; {} calls made",
            partner.request_count()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bidder_alerts(&prometheus, "flaky").await, vec![]);

    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for_alerts(
        &prometheus,
        "flaky",
        Duration::from_secs(45),
        "BourseBidderDown fires for the failing bidder",
        |alerts| {
            alerts
                .iter()
                .any(|(name, state)| name == "BourseBidderDown" && state == "firing")
        },
    )
    .await;
    assert_eq!(
        bidder_alerts(&prometheus, "steady").await,
        vec![],
        "the healthy bidder raises nothing"
    );

    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for_alerts(
        &prometheus,
        "flaky",
        Duration::from_secs(45),
        "BourseBidderDown resolves once the bidder answers",
        |alerts| !alerts.iter().any(|(name, _)| name == "BourseBidderDown"),
    )
    .await;
    load.abort();
}

/// A dashboard panel's query (the `legend`'s target, or its only one) with every
/// `rate(X[$__rate_interval])` replaced by the raw counter `X` and every instance and bidder
/// selected: the figure over everything the node counted since it started.
fn dashboard_total(file: &str, title: &str, legend: Option<&str>) -> String {
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(grafana_dir().join("dashboards").join(file)).unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    panel_queries(dashboard["panels"].as_array().unwrap(), &mut queries);
    let panel = |expr: &str| {
        let legend_of = |expr: &str| -> Option<String> {
            fn find(panels: &[Value], expr: &str) -> Option<String> {
                panels.iter().find_map(|p| {
                    p["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|t| t["expr"] == expr)
                        .and_then(|t| t["legendFormat"].as_str().map(str::to_owned))
                        .or_else(|| find(p["panels"].as_array()?, expr))
                })
            }
            find(dashboard["panels"].as_array().unwrap(), expr)
        };
        legend.is_none_or(|l| legend_of(expr).as_deref() == Some(l))
    };
    let exprs: Vec<&String> = queries
        .iter()
        .filter(|(t, e)| t == title && panel(e))
        .map(|(_, e)| e)
        .collect();
    assert_eq!(exprs.len(), 1, "{file} / {title} / {legend:?}: {exprs:?}");
    let mut expr = substitute(
        exprs[0],
        &[
            ("instance".to_owned(), ".*".to_owned()),
            ("bidder".to_owned(), ".*".to_owned()),
        ],
    );
    // `rate(X[window])` becomes `X`, whatever the window.
    while let Some(start) = expr.find("rate(") {
        let open = start + "rate(".len();
        let close = expr[open..].find("])").expect("a rate over a window") + open;
        let window = expr[open..close].rfind('[').expect("a window") + open;
        expr = format!(
            "{}{}{}",
            &expr[..start],
            &expr[open..window],
            &expr[close + 2..]
        );
    }
    assert!(!expr.contains('$') && !expr.contains("rate"), "{expr}");
    expr
}

/// The value of an instant query's only series, or per value of `label`.
async fn promql(
    prometheus: &Prometheus,
    query: &str,
    label: Option<&str>,
) -> BTreeMap<String, f64> {
    let data = prometheus.api("query", &[("query", query)]).await;
    data["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {data}"))
        .iter()
        .map(|series| {
            let key = label.map_or("", |l| series["metric"][l].as_str().unwrap_or_default());
            let value = series["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (key.to_owned(), value)
        })
        .collect()
}

/// An admin `series.json` answer's total of one figure.
fn admin_total(view: &Value, figure: &str) -> f64 {
    view["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == figure)
        .and_then(|pair| pair[1].as_f64())
        .unwrap_or_else(|| panic!("the admin has no {figure}: {view}"))
}

/// Equal within `relative` of the larger, for figures summed in another order or divided.
fn agree(what: &str, values: &[(&str, f64)], relative: f64) {
    let largest = values.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max);
    assert!(largest > 0.0, "{what} is zero everywhere: {values:?}");
    for (who, value) in values {
        assert!(
            (value - values[0].1).abs() <= relative * largest,
            "{what}: {who} says {value}, {} says {}: {values:?}",
            values[0].0,
            values[0].1
        );
    }
}

/// Each figure of docs/metrics.md's dictionary agrees, over a run, wherever it is shown: the
/// auction figures in the admin, the simulator's report and the dashboards' PromQL; the billing
/// figures in the revenue dashboard, the ledger and the admin's publisher page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_the_simulator_and_prometheus_agree_on_every_figure_of_a_run() {
    let mut scenario = bourse_sim::scenario::Scenario::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/four-bidders.toml"),
    )
    .unwrap();
    scenario.traffic.mode = bourse_sim::traffic::Mode::Open { rate: 100.0 };
    scenario.traffic.duration_secs = Some(4.0);
    scenario.traffic.warmup_secs = 0.0;
    scenario.traffic.connections = 16;
    let bidders = scenario.start_bidders().await.unwrap();
    // SITE's fee: answers carry clearing prices net of it.
    let fee = 0.1;
    let node = Node::start(&(node_config(&scenario, &bidders) + &admin_section()));
    let rules = std::fs::read_to_string(grafana_dir().join("prometheus/alerts.yml")).unwrap();
    let prometheus = Prometheus::start_with(node.addr, &rules, "").await;
    let session = sign_in(&node).await;

    let report = bourse_sim::traffic::run(
        &node.url("/openrtb2/auction"),
        &scenario.traffic,
        scenario.seed,
        false,
    )
    .await
    .unwrap();
    let c = &report.counts;
    assert_eq!(c.errors.total(), 0, "every request answered: {c:?}");
    assert!(c.bid_responses > 100 && c.no_bids > 0, "{c:?}");
    let answered = (c.bid_responses + c.no_bids) as f64;

    // Totals are exact once the admin's sampler (every second) and Prometheus's scrape (every
    // second) have both read the registry after the last auction.
    let auctions =
        r#"sum(bourse_exchange_requests_total{endpoint=~"auction|ad",outcome=~"bid|no_bid"})"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scraped = promql(&prometheus, auctions, None).await;
        if scraped.get("").copied() == Some(answered) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus counted {scraped:?} auctions, the simulator {answered}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let admin = |query: String| {
        let (node, session) = (&node, &session);
        async move {
            let (status, body) = node_get(
                node,
                &format!("/admin/exchange/series.json?{query}"),
                session,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let exchange = admin("range=15m".to_owned()).await;
    assert_eq!(admin_total(&exchange, "auctions"), answered, "{exchange}");
    let one = |map: BTreeMap<String, f64>| map[""];

    // Fill rate: counts on every side, so only the division rounds.
    let fill = dashboard_total("bourse-overview.json", "OpenRTB fill rate", None);
    agree(
        "fill rate",
        &[
            ("the simulator", report.fill_rate),
            ("the admin", admin_total(&exchange, "fill_pct") / 100.0),
            (
                "the overview dashboard",
                one(promql(&prometheus, &fill, None).await),
            ),
        ],
        1e-12,
    );

    // Wins: every bid in an answer is a won impression.
    let wins = one(promql(&prometheus, "sum(bourse_bidder_wins_total)", None).await);
    assert_eq!(wins, report.bids as f64, "wins counted and bids answered");
    let requests = one(promql(
        &prometheus,
        r#"sum(bourse_exchange_requests_total{endpoint="auction"})"#,
        None,
    )
    .await);
    agree(
        "bids per request",
        &[
            ("the simulator", report.bids_per_request),
            (
                "the dictionary, from Prometheus",
                bourse_figures::bids_per_request(wins, requests).unwrap(),
            ),
        ],
        1e-12,
    );

    // Cleared revenue and clearing eCPM: sums of the same prices in other orders (the admin
    // adds a second's differences; the simulator adds each answer's price, net of the fee by
    // one multiplication each), so they agree to a few ulps of the total; 1e-9 is far above
    // that and far below a single impression's share (1 / hundreds).
    let cleared = dashboard_total("bourse-revenue.json", "Revenue per hour", Some("cleared"));
    let cleared = one(promql(&prometheus, &cleared, None).await) / 3600.0;
    agree(
        "cleared revenue",
        &[
            ("the admin", admin_total(&exchange, "cleared")),
            ("the revenue dashboard", cleared),
            (
                "the simulator, grossed up",
                report.net_cleared / (1.0 - fee),
            ),
        ],
        1e-9,
    );
    agree(
        "net cleared",
        &[
            ("the simulator", report.net_cleared),
            (
                "the dictionary, from Prometheus",
                bourse_figures::net_cleared(cleared, fee),
            ),
        ],
        1e-9,
    );
    let ecpm = dashboard_total("bourse-revenue.json", "Clearing eCPM", None);
    agree(
        "clearing eCPM",
        &[
            ("the admin", admin_total(&exchange, "ecpm")),
            (
                "the revenue dashboard",
                one(promql(&prometheus, &ecpm, None).await),
            ),
            (
                "the simulator, grossed up",
                report.net_clearing_ecpm / (1.0 - fee),
            ),
        ],
        1e-9,
    );
    agree(
        "revenue per thousand requests",
        &[
            ("the simulator", report.net_per_thousand_requests),
            (
                "the dictionary, from Prometheus",
                bourse_figures::revenue_per_thousand_requests(
                    bourse_figures::net_cleared(cleared, fee),
                    c.sent as f64,
                )
                .unwrap(),
            ),
        ],
        1e-9,
    );

    // Per bidder: bid rate and clearing eCPM, the admin's bidder page against the bidders
    // dashboard.
    let bid_rates = promql(
        &prometheus,
        &dashboard_total("bourse-bidders.json", "Bid rate", None),
        Some("bidder"),
    )
    .await;
    let ecpms = promql(
        &prometheus,
        &dashboard_total("bourse-bidders.json", "Clearing eCPM", None),
        Some("bidder"),
    )
    .await;
    // Win rate and failed calls per bidder: the dictionary's PromQL over the run's totals; the
    // overview's success rate is the failed share's complement.
    let win_rates = promql(
        &prometheus,
        "sum by (bidder) (bourse_bidder_wins_total) / sum by (bidder) (bourse_bidder_requests_total)",
        Some("bidder"),
    )
    .await;
    let failed = promql(
        &prometheus,
        "(sum by (bidder) (bourse_bidder_timeouts_total) + sum by (bidder) (bourse_bidder_errors_total)) / sum by (bidder) (bourse_bidder_requests_total)",
        Some("bidder"),
    )
    .await;
    let successes = promql(
        &prometheus,
        &dashboard_total(
            "bourse-overview.json",
            "Bidder success rate, last minute",
            None,
        ),
        Some("bidder"),
    )
    .await;
    assert_eq!(bid_rates.len(), 4, "{bid_rates:?}");
    for (bidder, rate) in &bid_rates {
        let view = admin(format!("range=15m&bidder={bidder}")).await;
        assert!(*rate > 0.0 && *rate < 1.0, "{bidder}: bid rate {rate}");
        agree(
            &format!("{bidder}'s bid rate"),
            &[
                ("the admin", admin_total(&view, "bid_rate_pct") / 100.0),
                ("the bidders dashboard", *rate),
            ],
            1e-12,
        );
        agree(
            &format!("{bidder}'s win rate"),
            &[
                ("the admin", admin_total(&view, "win_rate_pct") / 100.0),
                ("the dictionary's PromQL", win_rates[bidder]),
            ],
            1e-12,
        );
        // Often no call failed at all: compared absolutely, so zero agrees with zero.
        for (who, share) in [
            ("the admin", admin_total(&view, "failed_pct") / 100.0),
            ("the overview's success rate", 1.0 - successes[bidder]),
        ] {
            assert!(
                (share - failed[bidder]).abs() <= 1e-12,
                "{bidder}'s failed calls: {who} says {share}, the dictionary's PromQL {}",
                failed[bidder]
            );
        }
        agree(
            &format!("{bidder}'s clearing eCPM"),
            &[
                ("the admin", admin_total(&view, "ecpm")),
                ("the bidders dashboard", ecpms[bidder]),
            ],
            1e-9,
        );
    }

    // Billing: ad-tag pages on the same node, each ad's impression beacon fired (some twice,
    // some forged), so billed revenue, fee and net to sellers reach the counters, the ledger
    // (its `/ledger` report) and the admin's publisher page.
    let tags = Load::default();
    tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tags.finished
                .store(true, std::sync::atomic::Ordering::Relaxed);
        },
        futures_util::future::join_all((0..4).map(|worker| drive_ad_tags(&node, worker, &tags)))
    );
    let beaconed = tags.billed.into_inner() as f64;
    assert!(beaconed >= 10.0, "{beaconed} impressions billed");
    let deadline = Instant::now() + Duration::from_secs(15);
    let ledger = loop {
        let (status, body) = node_get(&node, "/ledger", &session).await;
        assert_eq!(status, 200, "{body}");
        let ledger: Value = serde_json::from_str(&body).unwrap();
        let scraped = promql(
            &prometheus,
            "sum(bourse_adserve_billed_impressions_total)",
            None,
        )
        .await;
        if ledger["day"]["total"]["impressions"].as_f64() == Some(beaconed)
            && scraped.get("").copied() == Some(beaconed)
        {
            break ledger["day"]["total"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{beaconed} billed; the ledger holds {ledger}, Prometheus {scraped:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let micros = |field: &str| ledger[field].as_f64().unwrap() / 1e6;
    let per_hour = |title: &str| dashboard_total("bourse-revenue.json", title, None);
    let billed =
        one(promql(&prometheus, &per_hour("Billed revenue per hour"), None).await) / 3600.0;
    let fee_charged = one(promql(&prometheus, &per_hour("Fee per hour"), None).await) / 3600.0;
    // The ledger rounds each impression's gross and fee to micro-units (and its net is their
    // difference), so its totals may differ from the counters' by a micro-unit per impression;
    // the admin prints two decimals.
    let ledger_rounding = |of: f64| beaconed * 1e-6 / of;
    let (page_status, page) =
        node_get(&node, "/admin/exchange/publishers/view?id=news", &session).await;
    assert_eq!(page_status, 200, "{page}");
    let today = page
        .split("<tr>")
        .find(|row| row.contains("Today ("))
        .unwrap_or_else(|| panic!("the publisher page has today's billing: {page}"));
    let cell = |label: &str| -> f64 {
        let marker = format!("data-label=\"{label}\">");
        let start = today
            .find(&marker)
            .unwrap_or_else(|| panic!("{label} in {today}"))
            + marker.len();
        today[start..start + today[start..].find('<').unwrap()]
            .replace(',', "")
            .parse()
            .unwrap_or_else(|e| panic!("{label} in {today}: {e}"))
    };
    assert_eq!(cell("Impressions"), beaconed, "{today}");
    for (figure, from_counters, from_ledger, on_page) in [
        (
            "billed revenue",
            billed,
            micros("gross_micros"),
            cell("Gross"),
        ),
        ("fee", fee_charged, micros("fee_micros"), cell("Fee")),
        (
            "net to sellers",
            bourse_figures::net_to_sellers(billed, fee_charged),
            micros("net_micros"),
            cell("Net to seller"),
        ),
    ] {
        agree(
            figure,
            &[
                ("the revenue dashboard", from_counters),
                ("the ledger", from_ledger),
            ],
            ledger_rounding(from_counters),
        );
        // The page prints the ledger's figure to the cent: half a cent of rounding on top of
        // the ledger's own micro-unit per impression (0.455000 printed 0.46 against counters
        // summing to 0.454996).
        assert!(
            (on_page - from_counters).abs() <= 0.005 + beaconed * 1e-6 + 1e-9,
            "{figure}: the admin shows {on_page}, the dashboard {from_counters}"
        );
    }
    agree(
        "take rate",
        &[
            (
                "the revenue dashboard",
                one(promql(&prometheus, &per_hour("Take rate"), None).await),
            ),
            (
                "the dictionary, from the ledger",
                bourse_figures::take_rate(micros("fee_micros"), micros("gross_micros")).unwrap(),
            ),
        ],
        2.0 * ledger_rounding(fee_charged),
    );
    let billed_ecpm = one(promql(&prometheus, &per_hour("Billed eCPM"), None).await);
    agree(
        "billed eCPM",
        &[
            ("the revenue dashboard", billed_ecpm),
            (
                "the dictionary, from the ledger",
                bourse_figures::billed_ecpm(micros("gross_micros"), beaconed).unwrap(),
            ),
        ],
        ledger_rounding(billed),
    );
    let shown = cell("Billed eCPM");
    assert!(
        (shown - billed_ecpm).abs() <= 0.5e-2 * billed_ecpm.max(1.0),
        "billed eCPM: the admin shows {shown}, the dashboard {billed_ecpm}"
    );
    drop(prometheus);
    drop(node);
    drop(bidders);
}
