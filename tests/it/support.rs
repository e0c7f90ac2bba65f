//! Test support: a running exchange, scripted partners on loopback, and an HTTP client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What a scripted partner answers to one bid request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this JSON body.
    Json(Value),
    /// This status with an empty body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
    /// Never answers.
    Hang,
    /// Sends status and headers announcing a body, then never sends it.
    HangAfterHeaders,
    /// Waits, then answers.
    After(Duration, Box<Reply>),
}

type Script = dyn Fn(&Value) -> Reply + Send + Sync;

/// A demand partner on loopback that answers as scripted and records what it receives.
pub struct Partner {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<(http::HeaderMap, Value)>>>,
    pub notices: Arc<Mutex<Vec<String>>>,
    /// The HTTP version of every bid request received.
    pub versions: Arc<Mutex<Vec<http::Version>>>,
    /// TCP connections accepted.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl Partner {
    pub async fn start(script: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Partner {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let notices = Arc::new(Mutex::new(Vec::new()));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        let script: Arc<Script> = Arc::new(script);
        let (req_log, notice_log, version_log) =
            (requests.clone(), notices.clone(), versions.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (script, req_log, notice_log, version_log) = (
                    script.clone(),
                    req_log.clone(),
                    notice_log.clone(),
                    version_log.clone(),
                );
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            let (script, req_log, notice_log) =
                                (script.clone(), req_log.clone(), notice_log.clone());
                            if req.method() == http::Method::POST {
                                version_log.lock().unwrap().push(req.version());
                            }
                            async move {
                                Ok::<_, Infallible>(
                                    serve(req, &*script, &req_log, &notice_log).await,
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Partner {
            addr,
            requests,
            notices,
            versions,
            connections,
        }
    }

    /// The URL bourse sends bid requests to.
    pub fn endpoint(&self) -> String {
        format!("http://{}/bid", self.addr)
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last_request(&self) -> Value {
        self.requests
            .lock()
            .unwrap()
            .last()
            .expect("partner got a request")
            .1
            .clone()
    }

    /// Waits up to two seconds for notices matching `kind` and returns their query strings.
    pub async fn wait_notices(&self, kind: &str, count: usize) -> Vec<String> {
        let prefix = format!("/{kind}?");
        for _ in 0..200 {
            let found: Vec<String> = self
                .notices
                .lock()
                .unwrap()
                .iter()
                .filter(|n| n.starts_with(&prefix))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.notices
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

async fn serve(
    req: http::Request<Incoming>,
    script: &Script,
    requests: &Mutex<Vec<(http::HeaderMap, Value)>>,
    notices: &Mutex<Vec<String>>,
) -> http::Response<
    http_body_util::StreamBody<
        futures_util::stream::BoxStream<'static, Result<hyper::body::Frame<Bytes>, Infallible>>,
    >,
> {
    use futures_util::StreamExt;
    let respond = |status: u16, body: Bytes, content_length: Option<usize>, hang: bool| {
        let chunks: futures_util::stream::BoxStream<'static, _> = if hang {
            futures_util::stream::pending().boxed()
        } else {
            futures_util::stream::iter([Ok(hyper::body::Frame::data(body))]).boxed()
        };
        let mut builder = http::Response::builder().status(status);
        if let Some(len) = content_length {
            builder = builder.header(http::header::CONTENT_LENGTH, len);
        }
        builder
            .body(http_body_util::StreamBody::new(chunks))
            .unwrap()
    };
    if req.method() == http::Method::GET {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        // Notice paths under /fail answer 503, to exercise retries.
        let status = if path.starts_with("/fail") { 503 } else { 200 };
        notices.lock().unwrap().push(path);
        return respond(status, Bytes::new(), Some(0), false);
    }
    let headers = req.headers().clone();
    let gzipped = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let raw = req.into_body().collect().await.unwrap().to_bytes();
    let body: Vec<u8> = if gzipped {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw.to_vec()
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push((headers, value.clone()));
    let mut reply = script(&value);
    loop {
        match reply {
            Reply::After(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Json(json) => {
                let bytes = Bytes::from(serde_json::to_vec(&json).unwrap());
                let len = bytes.len();
                return respond(200, bytes, Some(len), false);
            }
            Reply::Status(status) => return respond(status, Bytes::new(), Some(0), false),
            Reply::Garbage => {
                return respond(200, Bytes::from_static(b"{\"id\": nope"), None, false);
            }
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return respond(204, Bytes::new(), Some(0), false);
            }
            Reply::HangAfterHeaders => return respond(200, Bytes::new(), Some(500), true),
        }
    }
}

/// A partner bidding `price` on imp 1 whose nurl, burl and lurl point at itself, carrying
/// every macro (see [`QUERY`]).
pub async fn partner_with_notices(seat: &'static str, price: f64) -> Partner {
    // The script needs the partner's own address, known only once it is bound.
    let slot: std::sync::Arc<std::sync::OnceLock<String>> = Default::default();
    let script_slot = slot.clone();
    let partner = Partner::start(move |r| {
        let base = script_slot.get().cloned().unwrap_or_default();
        Reply::Json(bids_with(r, seat, &[("1", price)], |b| {
            b["nurl"] = serde_json::json!(format!("{base}/win?{}", QUERY));
            b["burl"] = serde_json::json!(format!("{base}/bill?{}", QUERY));
            b["lurl"] = serde_json::json!(format!("{base}/loss?{}", QUERY));
        }))
    })
    .await;
    slot.set(format!("http://{}", partner.addr)).unwrap();
    partner
}

/// A notice query naming every OpenRTB macro, so tests can read what each one became.
pub const QUERY: &str = "auction=${AUCTION_ID}&bid=${AUCTION_BID_ID}&imp=${AUCTION_IMP_ID}&seat=${AUCTION_SEAT_ID}&ad=${AUCTION_AD_ID}&price=${AUCTION_PRICE}&cur=${AUCTION_CURRENCY}&loss=${AUCTION_LOSS}&min=${AUCTION_MIN_TO_WIN}";

/// A bid response with one bid per `(impid, price)`.
pub fn bids(request: &Value, seat: &str, bids: &[(&str, f64)]) -> Value {
    bids_with(request, seat, bids, |_| {})
}

/// A bid at `price` from `seat` on every impression of `request`, each edited by `edit`.
pub fn bids_on_every_imp(
    request: &Value,
    seat: &str,
    price: f64,
    edit: impl Fn(&mut Value),
) -> Value {
    let imps: Vec<&str> = request["imp"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|imp| imp["id"].as_str())
        .collect();
    let pairs: Vec<(&str, f64)> = imps.into_iter().map(|imp| (imp, price)).collect();
    bids_with(request, seat, &pairs, edit)
}

/// Like [`bids`], letting the test edit each bid.
pub fn bids_with(
    request: &Value,
    seat: &str,
    bids: &[(&str, f64)],
    edit: impl Fn(&mut Value),
) -> Value {
    let bid_list: Vec<Value> = bids
        .iter()
        .enumerate()
        .map(|(n, (imp, price))| {
            let mut bid = serde_json::json!({
                "id": format!("{seat}-bid-{n}"),
                "impid": imp,
                "price": price,
                "adm": format!("<div>{seat} ad, price ${{AUCTION_PRICE}}</div>"),
                "adid": format!("{seat}-ad"),
                "crid": format!("{seat}-creative"),
                "adomain": [format!("{seat}.example")],
                "mtype": 1,
            });
            edit(&mut bid);
            bid
        })
        .collect();
    serde_json::json!({"id": request["id"], "seatbid": [{"seat": seat, "bid": bid_list}]})
}

/// A running exchange on loopback.
pub struct Exchange {
    pub running: Option<bourse_kernel::Running>,
    pub addr: SocketAddr,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

/// The exchange table with the test's settings, for bidders given as TOML snippets.
pub fn config(exchange_extra: &str, bidders: &[String]) -> String {
    // The spool goes into the test's own `[plugins.exchange.notices]` when it has one: a dotted
    // key would define that table a second time.
    let spool = format!("spool_path = {:?}\n", test_spool());
    let notices = "[plugins.exchange.notices]\n";
    let (dotted, exchange_extra) = match exchange_extra.find(notices) {
        Some(at) => {
            let after = at + notices.len();
            let extra = format!(
                "{}{spool}{}",
                &exchange_extra[..after],
                &exchange_extra[after..]
            );
            (String::new(), extra)
        }
        None => (format!("notices.{spool}"), exchange_extra.to_owned()),
    };
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_ms = 2000\n\n[log]\nformat = \"text\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"test-secret\"\nfee = 0.1\nincrement = 0.01\n\
         public_url = \"http://bourse.test\"\n{dotted}{exchange_extra}\n"
    );
    for bidder in bidders {
        text.push_str("\n[[plugins.exchange.bidders]]\n");
        text.push_str(bidder);
        text.push('\n');
    }
    text
}

/// A notice spool of the test's own, so a stop with billing notices owed writes nothing into
/// the source tree.
pub fn test_spool() -> String {
    std::env::temp_dir()
        .join(format!(
            "bourse-test-{}-{}.spool",
            std::process::id(),
            rand::random::<u32>()
        ))
        .display()
        .to_string()
}

/// One `[[plugins.exchange.bidders]]` body for a partner (on loopback, which its notice URLs
/// may therefore name).
pub fn bidder(name: &str, partner: &Partner, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nendpoint = \"{}\"\nnotice_allowed_hosts = [\"127.0.0.1\"]\n{extra}",
        partner.endpoint()
    )
}

impl Exchange {
    pub async fn start(config_text: &str) -> Exchange {
        let kernel = bourse::kernel();
        let loaded = kernel
            .load_config_str(config_text, "test.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        let running = kernel.start(loaded).await.expect("exchange starts");
        let addr = running.local_addr();
        Exchange {
            running: Some(running),
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request and returns status, headers and body bytes.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> (http::StatusCode, http::HeaderMap, Bytes) {
        let response = self.client.request(req).await.expect("exchange answers");
        let (parts, body) = response.into_parts();
        (
            parts.status,
            parts.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    }

    /// POSTs a bid request and returns status and body (JSON or Null).
    pub async fn auction(&self, request: &Value) -> (http::StatusCode, Value) {
        let req = http::Request::post(self.url("/openrtb2/auction"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(request).unwrap())))
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path_and_query: &str) -> (http::StatusCode, Bytes) {
        let req = http::Request::get(self.url(path_and_query))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, _, body) = self.send(req).await;
        (status, body)
    }

    /// The value of one sample in `/metrics`, e.g. `bourse_bidder_timeouts_total{bidder="a"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").await;
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            tokio::spawn(running.shutdown());
        }
    }
}

/// A typical banner request with one or more impressions.
pub fn banner_request(id: &str, imps: &[(&str, f64)]) -> Value {
    let imp: Vec<Value> = imps
        .iter()
        .map(|(imp_id, floor)| {
            serde_json::json!({"id": imp_id, "banner": {"format": [{"w": 300, "h": 250}]}, "bidfloor": floor})
        })
        .collect();
    serde_json::json!({
        "id": id,
        "imp": imp,
        "site": {"page": "https://news.example/a", "publisher": {"id": "pub-1"}},
        "device": {"ua": "Mozilla/5.0", "ip": "203.0.113.9"},
        "tmax": 300,
    })
}

/// Parses a query string into pairs.
pub fn query(text: &str) -> std::collections::BTreeMap<String, String> {
    let query = text.split_once('?').map_or(text, |(_, q)| q);
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// URL of a Redis answering PING: `BOURSE_TEST_REDIS` (default `redis://127.0.0.1:6379`), else
/// one started on port 6390 with Debian's `redis-server` (left running for later tests).
pub fn redis_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let configured = std::env::var("BOURSE_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        if redis_answers(&configured) {
            return configured;
        }
        let fallback = "redis://127.0.0.1:6390".to_owned();
        if !redis_answers(&fallback) {
            // Another test process may start it at the same time; the loser fails to bind.
            let _ = std::process::Command::new("redis-server")
                .args(["--port", "6390", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "yes"])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("redis-server must be installed (apt-get install -y redis-server)");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !redis_answers(&fallback) {
                assert!(std::time::Instant::now() < deadline, "Redis did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        fallback
    })
    .clone()
}

/// Whether a Redis at `redis://host:port` answers `PING` within a second.
fn redis_answers(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(addr) = url
        .strip_prefix("redis://")
        .and_then(|a| a.split('/').next())
        .and_then(|a| std::net::ToSocketAddrs::to_socket_addrs(a).ok()?.next())
    else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}

/// The `bourse` binary the tests start: this build's, or `BOURSE_TEST_BIN` (a release build, for
/// the measured runs recorded in BENCHMARKS.md).
pub fn bourse_binary() -> std::path::PathBuf {
    std::env::var_os("BOURSE_TEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_bourse").into())
}

/// A `bourse serve` child process, stopped on drop.
pub struct Node {
    child: std::process::Child,
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The config file it serves.
    pub config_path: std::path::PathBuf,
    /// Everything it has written to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Node {
    /// Starts the real binary on `config_text` and waits until it serves.
    pub fn start(config_text: &str) -> Node {
        Node::start_with_env(config_text, &[])
    }

    /// [`Node::start`] with extra environment variables for the process.
    pub fn start_with_env(config_text: &str, env: &[(&str, &str)]) -> Node {
        let dir = std::env::temp_dir().join(format!("bourse-node-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bourse.toml");
        std::fs::write(&path, config_text).unwrap();
        Node::start_at(&path, env)
    }

    /// Starts the real binary on the config file at `path` (say, again after a stop: relative
    /// paths in it, such as the notice spool, are the same files).
    pub fn start_at(path: &std::path::Path, env: &[(&str, &str)]) -> Node {
        use std::io::BufRead;
        let path = path.to_path_buf();
        let mut child = std::process::Command::new(bourse_binary())
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bourse starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                // It exited: say why, once its stderr has been read to the end.
                let status = child.wait().unwrap();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "bourse did not start ({status}): {}",
                    stderr.lock().unwrap()
                );
            };
            let line = line.unwrap();
            if let Some(url) = line.strip_prefix("bourse is serving on http://") {
                break url.trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Node {
            child,
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
            config_path: path,
            stderr,
        }
    }

    /// The process id, to signal it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (without blocking the runtime) for the graceful stop.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "bourse did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process has logged to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the process has logged `text`: its stderr is read by a thread,
    /// so a line logged a moment ago may not be here yet.
    pub async fn wait_logged(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.stderr().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "never logged {text:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request and returns status, headers and the body as text.
    pub async fn client_request(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> (http::StatusCode, http::HeaderMap, String) {
        let response = self.client.request(req).await.expect("node answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Sends a request and returns its status once its body is read, or why there is none (a
    /// node killed mid-request).
    pub async fn raw_request(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::StatusCode, String> {
        let response = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
    }

    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> (http::StatusCode, Bytes) {
        let response = self.client.request(req).await.expect("node answers");
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    pub async fn metric(&self, series: &str) -> f64 {
        let req = http::Request::get(self.url("/metrics"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let text = String::from_utf8(self.send(req).await.1.to_vec()).unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A notice token of `kind` for bidder `alpha` whose partner URL would steal a notice if it
/// were ever honoured, for tests that forge or replay tokens.
pub fn sample_token(
    kind: bourse_engine::notice::NoticeKind,
    exp: u64,
) -> bourse_engine::notice::WinToken {
    bourse_engine::notice::WinToken {
        kind,
        auction: "a".into(),
        reference: bourse_engine::notice::AuctionRef { node: 1, seq: 2 },
        bid: "b".into(),
        imp: "1".into(),
        seat: "s".into(),
        ad: String::new(),
        bidder: "alpha".into(),
        price: 100.0,
        bid_price: 100.0,
        cur: "USD".into(),
        gross_up: 1.0,
        partner_url: Some("http://127.0.0.1:9/steal".into()),
        exp,
    }
}

/// The value of the first hidden `csrf` field in an admin page.
pub fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

/// The value of `name` in a response's `Set-Cookie` headers, as `name=value`.
pub fn cookie_from(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

pub async fn node_request(
    node: &Node,
    method: http::Method,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = http::Request::builder()
        .method(method)
        .uri(node.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    node.client_request(req).await
}

/// A bidder URL on a loopback port nothing listens on: every call to it is refused.
pub fn refused_endpoint() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/bid", closed.local_addr().unwrap())
}

/// A signed-in GET of an admin page: its status and text.
pub async fn node_get(node: &Node, path: &str, cookie: &str) -> (http::StatusCode, String) {
    let (status, _, page) = node_request(node, http::Method::GET, path, cookie, &[]).await;
    (status, page)
}

pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// A users file holding `ops`, and the admin table pointing at it.
pub fn admin_section() -> String {
    let dir = std::env::temp_dir().join(format!("bourse-admin-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.json");
    bourse_admin::Users::set_password(&users, "ops", ADMIN_PASSWORD).unwrap();
    format!(
        "\n[plugins.admin]\nusers_file = {:?}\n",
        users.display().to_string()
    )
}

/// Signs in as `ops` and returns the session cookie.
pub async fn sign_in(node: &Node) -> String {
    let (_, headers, page) = node_request(node, http::Method::GET, "/admin/login", "", &[]).await;
    let login_cookie = cookie_from(&headers, "bourse_admin_csrf");
    let (status, headers, _) = node_request(
        node,
        http::Method::POST,
        "/admin/login",
        &login_cookie,
        &[
            ("csrf", &csrf_in(&page)),
            ("user", "ops"),
            ("password", ADMIN_PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, 303);
    cookie_from(&headers, "bourse_admin_session")
}

/// Writes `text` beside `path` and renames it over `path`, as most editors save.
pub fn save_by_rename(path: &std::path::Path, text: &str) {
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// The floor the partner saw in the auction for one `/ad` call to `node` for `news-top`.
pub async fn floor_seen(node: &Node, partner: &Partner) -> f64 {
    let body = serde_json::json!({"page": "https://news.example/", "slots": [{"id": "a", "placement": "news-top"}]});
    let req = http::Request::post(node.url("/ad"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _) = node.send(req).await;
    assert_eq!(status, 200);
    partner.last_request()["imp"][0]["bidfloor"]
        .as_f64()
        .unwrap()
}

/// Serves HTML on a free loopback port for as long as the test runs: `page(path)` is the body
/// answered to every request for `path`.
pub async fn serve_html(page: impl Fn(&str) -> String + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let page = Arc::new(page);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let mut response =
                        http::Response::new(Full::new(Bytes::from(page(req.uri().path()))));
                    response
                        .headers_mut()
                        .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Serves files on a free loopback port for as long as the test runs: `file(path)` is the
/// content type and body answered for `path`, or `None` for a 404.
pub async fn serve_files(
    file: impl Fn(&str) -> Option<(&'static str, Vec<u8>)> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let file = Arc::new(file);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let file = file.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let response = match file(req.uri().path()) {
                        Some((content_type, body)) => {
                            let mut response = http::Response::new(Full::new(Bytes::from(body)));
                            response
                                .headers_mut()
                                .insert("content-type", content_type.parse().unwrap());
                            response
                        }
                        None => {
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = http::StatusCode::NOT_FOUND;
                            response
                        }
                    };
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A loopback port free a moment ago (bound, read, released) for a server the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
