//! A cluster sharing its config through a real etcd (Debian's `etcd-server`, started here on
//! free loopback ports): a change written to etcd reaches every node within a second, a node
//! that was down catches up when it comes back, the nodes resume after etcd restarts, an edit
//! on one node reaches the others, and an invalid document is refused with its line.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "/bourse/test-config";

/// An etcd of our own on free loopback ports with a temporary data dir, killed on drop.
struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    async fn start() -> Etcd {
        let dir = std::env::temp_dir().join(format!("bourse-etcd-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn();
        etcd.wait_ready().await;
        etcd
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=bourse-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bourse-test={peer_url}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd must be installed (apt-get install -y etcd-server)");
        self.child = Some(child);
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    async fn client(&self) -> Option<etcd_client::Client> {
        let connect = etcd_client::Client::connect([self.endpoint()], None);
        tokio::time::timeout(Duration::from_secs(1), connect)
            .await
            .ok()?
            .ok()
    }

    /// Waits until etcd answers a read.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(mut client) = self.client().await {
                let read = client.get("probe", None);
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), read).await {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start: {}",
                std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes `text` under the key and returns the revision of the write.
    async fn put(&self, text: &str) -> i64 {
        let mut client = self.client().await.expect("etcd answers");
        let answer = client.put(KEY, text, None).await.unwrap();
        answer.header().unwrap().revision()
    }

    /// The key's value and mod revision.
    async fn get(&self) -> (String, i64) {
        let mut client = self.client().await.expect("etcd answers");
        let answer = client.get(KEY, None).await.unwrap();
        let kv = answer.kvs().first().expect("the key exists");
        (kv.value_str().unwrap().to_owned(), kv.mod_revision())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything the nodes share: it is what the test writes to etcd.
fn shared_config(partner: &Partner, floor: &str) -> String {
    format!(
        "[log]\nformat = \"json\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"etcd-secret\"\npublic_url = \"http://bourse.test\"\n\n\
         [[plugins.exchange.publishers]]\nid = \"news\"\n\n\
         [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\
         floor = {floor}\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{}\"\nnotice_allowed_hosts = [\"127.0.0.1\"]\n",
        partner.endpoint()
    )
}

/// A node's own file: its listener and etcd settings, then the shared part it bootstraps from.
fn node_config(partner: &Partner, etcd: &Etcd, floor: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[server.etcd]\nendpoints = [\"{}\"]\nkey = \"{KEY}\"\n\n{}",
        etcd.endpoint(),
        shared_config(partner, floor)
    )
}

/// Waits until every node runs auctions at `want`; returns how long that took from `since`.
async fn wait_for_floor(nodes: &[&Node], partner: &Partner, want: f64, since: Instant) -> Duration {
    for node in nodes {
        let mut seen = 0.0;
        while since.elapsed() < Duration::from_secs(15) {
            seen = floor_seen(node, partner).await;
            if seen == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen, want, "floor after 15 s: {}", node.stderr());
    }
    since.elapsed()
}

/// Waits up to 5 s for `node` to report `want` in `series`, and asserts it does: a node counts
/// an applied change just after its auctions start using it.
async fn wait_for_metric(node: &Node, series: &str, want: f64) {
    let since = Instant::now();
    let mut seen = node.metric(series).await;
    while seen != want && since.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        seen = node.metric(series).await;
    }
    assert_eq!(seen, want, "{series} after 5 s");
}

#[tokio::test]
async fn a_change_in_etcd_reaches_every_node_within_a_second_and_a_returning_node_catches_up() {
    let etcd = Etcd::start().await;
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let bootstrap = node_config(&partner, &etcd, "0.5");
    let a = Node::start(&bootstrap);
    let b = Node::start(&bootstrap);

    // The first node seeded the empty key with the shared part of its file.
    let (seeded, _) = etcd.get().await;
    assert!(seeded.contains("floor = 0.5"), "{seeded}");
    assert!(
        !seeded.contains("listen") && !seeded.contains("endpoints"),
        "node-local settings stay out of etcd: {seeded}"
    );
    assert_eq!(floor_seen(&a, &partner).await, 0.5);
    assert_eq!(floor_seen(&b, &partner).await, 0.5);

    // A change written to etcd is served by both nodes within a second.
    let applied = "bourse_kernel_etcd_events_total{outcome=\"applied\"}";
    let applied_before = [a.metric(applied).await, b.metric(applied).await];
    let written = Instant::now();
    let revision = etcd.put(&shared_config(&partner, "1.25")).await;
    let took = wait_for_floor(&[&a, &b], &partner, 1.25, written).await;
    eprintln!("both nodes serve the etcd change {took:?} after the write");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for (node, before) in [&a, &b].into_iter().zip(applied_before) {
        wait_for_metric(node, "bourse_kernel_etcd_revision", revision as f64).await;
        assert_eq!(node.metric(applied).await, before + 1.0);
    }
    // Applying it (and writing it to each node's file) writes nothing back to etcd.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(etcd.get().await.1, revision, "no echo of the change");

    // B is down while the change is made; when it comes back, from a stale file, its first
    // auction already runs at the new floor.
    drop(b);
    let revision = etcd.put(&shared_config(&partner, "2.5")).await;
    wait_for_floor(&[&a], &partner, 2.5, Instant::now()).await;
    let b = Node::start(&bootstrap);
    assert_eq!(
        floor_seen(&b, &partner).await,
        2.5,
        "the returning node caught up"
    );
    wait_for_metric(&b, "bourse_kernel_etcd_revision", revision as f64).await;
    assert!(
        std::fs::read_to_string(&b.config_path)
            .unwrap()
            .contains("floor = 2.5"),
        "its file holds what it serves"
    );

    // An edit of A's own file goes to etcd, and through it to B.
    let edited = std::fs::read_to_string(&a.config_path)
        .unwrap()
        .replace("floor = 2.5", "floor = 0.75");
    let saved = Instant::now();
    save_by_rename(&a.config_path, &edited);
    let took = wait_for_floor(&[&a, &b], &partner, 0.75, saved).await;
    eprintln!("an edit of one node's file reached both nodes after {took:?}");
    let (shared, _) = etcd.get().await;
    assert!(shared.contains("floor = 0.75"), "{shared}");
    assert!(!shared.contains("listen"), "{shared}");
}

#[tokio::test]
async fn nodes_catch_up_after_etcd_restarts_and_start_without_it() {
    let mut etcd = Etcd::start().await;
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let bootstrap = node_config(&partner, &etcd, "0.5");
    let a = Node::start(&bootstrap);
    let b = Node::start(&bootstrap);
    let started = Instant::now();
    wait_for_floor(&[&a, &b], &partner, 0.5, started).await;

    // etcd goes away; a node started meanwhile serves its own file rather than refusing.
    etcd.kill();
    let c = Node::start(&node_config(&partner, &etcd, "0.6"));
    assert_eq!(floor_seen(&c, &partner).await, 0.6);
    assert_eq!(
        floor_seen(&a, &partner).await,
        0.5,
        "the others keep serving"
    );

    // etcd comes back on the same data; a change written then reaches every node.
    etcd.spawn();
    etcd.wait_ready().await;
    let written = Instant::now();
    etcd.put(&shared_config(&partner, "1.5")).await;
    let took = wait_for_floor(&[&a, &b, &c], &partner, 1.5, written).await;
    eprintln!("after the etcd restart, all nodes serve the change {took:?} after the write");
    for node in [&a, &b, &c] {
        assert!(
            node.metric("bourse_kernel_etcd_reconnects_total").await >= 1.0,
            "{}",
            node.stderr()
        );
    }
}

#[tokio::test]
async fn an_invalid_document_in_etcd_is_refused_with_its_line_and_the_old_config_serves() {
    let etcd = Etcd::start().await;
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let a = Node::start(&node_config(&partner, &etcd, "0.5"));
    assert_eq!(floor_seen(&a, &partner).await, 0.5);

    let refused = "bourse_kernel_etcd_events_total{outcome=\"refused\"}";
    let wait_refusals = |count: f64| {
        let a = &a;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while a.metric(refused).await < count {
                assert!(Instant::now() < deadline, "not refused: {}", a.stderr());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // A value of the wrong type: refused, named by its line in the etcd document.
    let bad = shared_config(&partner, "\"high\"");
    let bad_line = bad.lines().position(|l| l.starts_with("floor = ")).unwrap() + 1;
    etcd.put(&bad).await;
    wait_refusals(1.0).await;
    // The refusal names the line.
    a.wait_logged(&format!("etcd:{KEY}:{bad_line}:")).await;
    assert_eq!(floor_seen(&a, &partner).await, 0.5, "the old config serves");

    // Broken TOML, likewise.
    etcd.put("[plugins.exchange\nfee = 1\n").await;
    wait_refusals(2.0).await;
    a.wait_logged(&format!("etcd:{KEY}:1:")).await;
    assert_eq!(floor_seen(&a, &partner).await, 0.5);

    // A valid document after them applies.
    let written = Instant::now();
    etcd.put(&shared_config(&partner, "0.9")).await;
    wait_for_floor(&[&a], &partner, 0.9, written).await;
}

/// A plugin that shows its `value` on GET and applies a POSTed config through its
/// `ConfigCenter`, as the admin does.
struct CenterProbe;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CenterProbeConfig {
    value: String,
}

struct CenterProbeHandler {
    value: String,
    center: bourse_kernel::ConfigCenter,
}

impl bourse_kernel::Plugin for CenterProbe {
    type Config = CenterProbeConfig;
    type Prepared = CenterProbeConfig;
    type State = ();

    fn manifest(&self) -> bourse_kernel::Manifest {
        bourse_kernel::Manifest {
            kind: "probe".to_owned(),
            version: "0.0.0".to_owned(),
            description: "shows its value, applies a POSTed config".to_owned(),
            mount: bourse_kernel::Mount::paths(["/probe"]),
        }
    }

    fn prepare(
        &self,
        config: CenterProbeConfig,
    ) -> Result<CenterProbeConfig, Vec<bourse_kernel::ConfigIssue>> {
        Ok(config)
    }

    async fn init(
        &self,
        _ctx: &bourse_kernel::PluginCtx,
        _config: &CenterProbeConfig,
    ) -> Result<(), bourse_kernel::PluginError> {
        Ok(())
    }

    async fn start(
        &self,
        ctx: bourse_kernel::PluginCtx,
        _state: std::sync::Arc<()>,
        config: CenterProbeConfig,
    ) -> Result<std::sync::Arc<dyn bourse_kernel::Handler>, bourse_kernel::PluginError> {
        Ok(std::sync::Arc::new(CenterProbeHandler {
            value: config.value,
            center: ctx.config_center,
        }))
    }
}

impl bourse_kernel::Handler for CenterProbeHandler {
    fn handle<'a>(
        &'a self,
        req: bourse_kernel::Request,
    ) -> futures_util::future::BoxFuture<'a, bourse_kernel::Response> {
        use http_body_util::BodyExt;
        Box::pin(async move {
            if req.method() != http::Method::POST {
                return http::Response::new(bourse_kernel::full(self.value.clone()));
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            let (status, answer) = match self.center.apply(text, "probe".to_owned()).await {
                Ok(()) => (200, String::new()),
                Err(refusal) => (422, refusal.to_string()),
            };
            let mut response = http::Response::new(bourse_kernel::full(answer));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            response
        })
    }
}

fn probe_config(etcd: &Etcd, value: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[server.etcd]\nendpoints = [\"{}\"]\nkey = \"{KEY}\"\n\n\
         [plugins.probe]\nvalue = \"{value}\"\n",
        etcd.endpoint()
    )
}

/// An in-process kernel running only the probe, applying its `ConfigCenter` requests and etcd's
/// changes in the background.
async fn probe_kernel(config: &str) -> (std::sync::Arc<bourse_kernel::Running>, Exchange) {
    let kernel = bourse_kernel::Kernel::builder().plugin(CenterProbe).build();
    let loaded = kernel
        .load_config_str(config, "probe.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    let running = std::sync::Arc::new(kernel.start(loaded).await.expect("kernel starts"));
    let serving = running.clone();
    tokio::spawn(async move { serving.serve_config_center().await });
    let client = Exchange {
        running: None,
        addr: running.local_addr(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    };
    (running, client)
}

async fn probe_value(node: &Exchange) -> String {
    String::from_utf8(node.get("/probe").await.1.to_vec()).unwrap()
}

#[tokio::test]
async fn a_config_center_apply_on_one_node_reaches_the_other_through_etcd() {
    let etcd = Etcd::start().await;
    let (_a, a) = probe_kernel(&probe_config(&etcd, "one")).await;
    let (_b, b) = probe_kernel(&probe_config(&etcd, "one")).await;
    assert_eq!(probe_value(&b).await, "one");

    // Applied on A through its ConfigCenter (as the admin does): B serves it too.
    let post = |text: String| {
        http::Request::post(a.url("/probe"))
            .body(Full::new(Bytes::from(text)))
            .unwrap()
    };
    let applied = Instant::now();
    let (status, _, body) = a.send(post(probe_config(&etcd, "two"))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(probe_value(&a).await, "two", "applied before the answer");
    while probe_value(&b).await != "two" {
        assert!(
            applied.elapsed() < Duration::from_secs(1),
            "B did not follow"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (shared, revision) = etcd.get().await;
    assert!(
        shared.contains("value = \"two\"") && !shared.contains("listen"),
        "{shared}"
    );

    // An invalid config is refused with its line, and neither node nor etcd changes.
    let (status, _, body) = a
        .send(post("[plugins.probe]\nvalue = 2\n".to_owned()))
        .await;
    assert_eq!(status, 422);
    let error = String::from_utf8_lossy(&body);
    assert!(error.contains("config center:2:"), "{error}");
    assert_eq!(etcd.get().await.1, revision);
    assert_eq!(probe_value(&a).await, "two");
}

#[tokio::test]
async fn a_local_change_does_not_overwrite_one_made_in_etcd_that_the_node_has_not_seen() {
    let etcd = Etcd::start().await;
    let dir = std::env::temp_dir().join(format!("bourse-probe-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("probe.toml");
    std::fs::write(&path, probe_config(&etcd, "one")).unwrap();
    let kernel = bourse_kernel::Kernel::builder().plugin(CenterProbe).build();
    let loaded = kernel.load_config_file(&path).unwrap();
    // Nothing applies etcd's changes here, so this node keeps the revision it seeded.
    let running = kernel.start(loaded).await.expect("kernel starts");
    assert!(etcd.get().await.0.contains("value = \"one\""));

    let theirs = probe_config(&etcd, "theirs");
    let revision = etcd.put(&theirs).await;
    std::fs::write(&path, probe_config(&etcd, "mine")).unwrap();
    let error = format!("{:#}", running.reload().await.unwrap_err());
    assert!(
        error.contains("changed since this node last saw it"),
        "{error}"
    );
    assert_eq!(
        etcd.get().await,
        (theirs, revision),
        "etcd keeps their change"
    );
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `signal` (`STOP`, `CONT`) to a node.
fn signal(node: &Node, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(node.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test]
async fn a_node_whose_missed_revisions_were_compacted_reads_the_current_config() {
    let mut etcd = Etcd::start().await;
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let a = Node::start(&node_config(&partner, &etcd, "0.5"));
    assert_eq!(floor_seen(&a, &partner).await, 0.5);

    // While the node is frozen, etcd restarts (breaking its watch), two changes are made and
    // the history before the last one is compacted away.
    signal(&a, "STOP");
    etcd.kill();
    etcd.spawn();
    etcd.wait_ready().await;
    etcd.put(&shared_config(&partner, "1.1")).await;
    let revision = etcd.put(&shared_config(&partner, "1.7")).await;
    let mut client = etcd.client().await.unwrap();
    client.compact(revision, None).await.unwrap();
    signal(&a, "CONT");

    // Resuming from its last revision fails; it reads the current value instead.
    let resumed = Instant::now();
    wait_for_floor(&[&a], &partner, 1.7, resumed).await;
    wait_for_metric(&a, "bourse_kernel_etcd_revision", revision as f64).await;
    // The compaction was met.
    a.wait_logged("compacted").await;
}

#[tokio::test]
async fn an_admin_change_on_one_node_reaches_the_other_through_etcd() {
    let etcd = Etcd::start().await;
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let bootstrap = format!("{}{}", node_config(&partner, &etcd, "0.5"), admin_section());
    let a = Node::start(&bootstrap);
    let b = Node::start(&bootstrap);
    assert_eq!(floor_seen(&b, &partner).await, 0.5);

    // An operator signed in on A changes a floor; B serves it within a second, through etcd.
    let session = sign_in(&a).await;
    let (_, _, page) = node_request(
        &a,
        http::Method::GET,
        "/admin/exchange/floors",
        &session,
        &[],
    )
    .await;
    let csrf = csrf_in(&page);
    let changed = Instant::now();
    let (status, _, body) = node_request(
        &a,
        http::Method::POST,
        "/admin/exchange/floors",
        &session,
        &[("csrf", &csrf), ("id", "news-top"), ("floor", "1.75")],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let took = wait_for_floor(&[&a, &b], &partner, 1.75, changed).await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (shared, _) = etcd.get().await;
    assert!(
        shared.contains("floor = 1.75") && !shared.contains("listen"),
        "{shared}"
    );
    // B's history says where the change came from.
    let session = sign_in(&b).await;
    let (_, _, page) = node_request(&b, http::Method::GET, "/admin/config", &session, &[]).await;
    assert!(page.contains("etcd rev"), "{page}");
}
