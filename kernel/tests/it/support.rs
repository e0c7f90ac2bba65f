//! A test plugin whose handler can hold requests, and helpers to drive a kernel over sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bourse_kernel::{
    ConfigIssue, Handler, Kernel, Manifest, Mount, MountedAt, Plugin, PluginCtx, PluginError,
    Request, Response,
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{Notify, Semaphore, watch};

/// What the test plugins did, shared with the test.
pub struct Probe {
    events: Mutex<Vec<String>>,
    changed: Notify,
    /// One permit per request that reached a holding path (`/slow`, `/hang`).
    pub entered: Semaphore,
    release: watch::Sender<bool>,
    pub starts: AtomicUsize,
    /// Configs prepared (one per table per load).
    pub prepares: AtomicUsize,
}

impl Probe {
    pub fn new() -> Arc<Self> {
        Arc::new(Probe {
            events: Mutex::new(Vec::new()),
            changed: Notify::new(),
            entered: Semaphore::new(0),
            release: watch::channel(false).0,
            starts: AtomicUsize::new(0),
            prepares: AtomicUsize::new(0),
        })
    }

    pub fn record(&self, event: String) {
        self.events.lock().push(event);
        self.changed.notify_waiters();
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().clone()
    }

    /// Lets every held `/slow` request finish.
    pub fn release_slow(&self) {
        self.release.send_replace(true);
    }

    /// Waits until `n` requests are held in handlers.
    pub async fn wait_entered(&self, n: u32) {
        within(self.entered.acquire_many(n)).await.unwrap().forget();
    }

    /// Waits (up to 10 s) until `event` has been recorded; returns the events at that point.
    pub async fn wait_for(&self, event: &str) -> Vec<String> {
        within(async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let events = self.events();
                if events.iter().any(|e| e == event) {
                    return events;
                }
                changed.await;
            }
        })
        .await
    }
}

/// Fails the test instead of hanging forever.
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out after 10 s")
}

pub struct TestPlugin {
    pub name: &'static str,
    pub mounts: Vec<&'static str>,
    pub probe: Arc<Probe>,
}

/// What a test plugin instance keeps across its generations.
pub struct TestState {
    /// The instance name, as the kernel gave it at init.
    name: String,
    /// Requests served by every generation of the instance.
    served: AtomicUsize,
    /// The reply text the active generation committed.
    committed: Mutex<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    #[allow(dead_code)] // only there to be type-checked
    pub timeout: u64,
    #[serde(default)]
    pub bidders: Vec<Bidder>,
    #[serde(default)]
    pub fail_start: bool,
    /// Start waits for `Probe::release_slow` (and counts as entered).
    #[serde(default)]
    pub hold_start: bool,
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// `drain` and `stop` never finish (the kernel must cut them off).
    #[serde(default)]
    pub hang_on_stop: bool,
}

fn default_body_limit() -> usize {
    1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bidder {
    pub endpoint: String,
}

impl Plugin for TestPlugin {
    type Config = TestConfig;
    type Prepared = TestConfig;
    type State = TestState;

    fn manifest(&self) -> Manifest {
        Manifest {
            kind: self.name.to_owned(),
            version: "0.0.0".to_owned(),
            description: format!("test plugin {}", self.name),
            mount: Mount::paths(self.mounts.iter().copied()),
        }
    }

    fn prepare(&self, config: TestConfig) -> Result<TestConfig, Vec<ConfigIssue>> {
        self.probe.prepares.fetch_add(1, Ordering::SeqCst);
        let issues: Vec<ConfigIssue> = config
            .bidders
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                !b.endpoint.starts_with("http://") && !b.endpoint.starts_with("https://")
            })
            .map(|(i, _)| {
                ConfigIssue::new(format!("bidders[{i}].endpoint"), "must be an http(s) URL")
            })
            .collect();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(issues)
        }
    }

    async fn init(&self, ctx: &PluginCtx, _config: &TestConfig) -> Result<TestState, PluginError> {
        self.probe.record(format!("init {}", ctx.name));
        let probe = self.probe.clone();
        let (lifetime, name) = (ctx.lifetime.clone(), ctx.name.to_string());
        tokio::spawn(async move {
            lifetime.cancelled().await;
            probe.record(format!("ended {name}"));
        });
        Ok(TestState {
            name: ctx.name.to_string(),
            served: AtomicUsize::new(0),
            committed: Mutex::new(String::new()),
        })
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        state: Arc<TestState>,
        config: TestConfig,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        let name = ctx.name.to_string();
        if config.fail_start {
            self.probe
                .record(format!("failed {name} gen{}", ctx.generation));
            return Err(PluginError("told to fail".into()));
        }
        if config.hold_start {
            let mut release = self.probe.release.subscribe();
            self.probe.entered.add_permits(1);
            release.wait_for(|released| *released).await.unwrap();
        }
        self.probe.starts.fetch_add(1, Ordering::SeqCst);
        self.probe
            .record(format!("start {name} gen{}", ctx.generation));
        let label = format!("{name} gen{}", ctx.generation);
        let probe = self.probe.clone();
        let token = ctx.shutdown.clone();
        let cancelled = label.clone();
        tokio::spawn(async move {
            token.cancelled().await;
            probe.record(format!("cancelled {cancelled}"));
        });
        Ok(Arc::new(TestHandler {
            label,
            reply: config.reply,
            limit: config.body_limit,
            probe: self.probe.clone(),
            state,
            center: ctx.config_center.clone(),
            name,
            hang_on_stop: config.hang_on_stop,
            extensions: ctx.extensions.clone(),
        }))
    }

    async fn stop(&self, state: Arc<TestState>, _deadline: tokio::time::Instant) {
        self.probe.record(format!(
            "stop {} after {}",
            state.name,
            state.served.load(Ordering::SeqCst)
        ));
    }
}

struct TestHandler {
    label: String,
    reply: String,
    limit: usize,
    probe: Arc<Probe>,
    state: Arc<TestState>,
    center: bourse_kernel::ConfigCenter,
    name: String,
    hang_on_stop: bool,
    extensions: bourse_kernel::Extensions,
}

impl TestHandler {
    fn text(&self, status: http::StatusCode, body: String) -> Response {
        let mut response = http::Response::new(bourse_kernel::full(body));
        *response.status_mut() = status;
        response
    }
}

impl Handler for TestHandler {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        if req.uri().path().ends_with("/panic-before-future") {
            panic!("handler told to panic before it made its future");
        }
        Box::pin(async move {
            let served = self.state.served.fetch_add(1, Ordering::SeqCst) + 1;
            let path = req.uri().path().to_owned();
            let reply = format!("{} {} {}", self.label, self.reply, path);
            if let Some(reply) = path.strip_prefix("/x/set-reply/") {
                // Edits this instance's own table through the config center.
                let (name, reply) = (self.name.clone(), reply.to_owned());
                let edited = self
                    .center
                    .edit("test".into(), move |doc| {
                        let table = bourse_kernel::plugin_table(doc, &name)?;
                        if reply == "bad" {
                            table["bidders"] = toml_edit::value(toml_edit::Array::new());
                            let mut bidder = toml_edit::InlineTable::new();
                            bidder.insert("endpoint", "ftp://nowhere".into());
                            table["bidders"].as_array_mut().unwrap().push(bidder);
                        } else {
                            table["reply"] = toml_edit::value(reply);
                        }
                        Ok(())
                    })
                    .await;
                return match edited {
                    Ok(()) => self.text(http::StatusCode::OK, "applied".into()),
                    Err(refusal) => self.text(
                        http::StatusCode::UNPROCESSABLE_ENTITY,
                        refusal
                            .problems()
                            .iter()
                            .map(|p| format!("{} @{}", p.path, p.line))
                            .collect::<Vec<_>>()
                            .join(";"),
                    ),
                };
            }
            if path.ends_with("/greeting") {
                let text = self
                    .extensions
                    .get::<Greeting>()
                    .map(|shared| shared.lock().clone());
                return self.text(http::StatusCode::OK, format!("{text:?}"));
            }
            if path.ends_with("/client") {
                let client = req.extensions().get::<bourse_kernel::ClientAddr>().copied();
                return self.text(
                    http::StatusCode::OK,
                    format!(
                        "{:?} loopback={}",
                        client.map(|c| c.0),
                        client.is_some_and(|c| c.is_loopback())
                    ),
                );
            }
            if path.ends_with("/state") {
                let mounted = req.extensions().get::<MountedAt>().map(|m| m.0.to_string());
                let committed = self.state.committed.lock().clone();
                return self.text(
                    http::StatusCode::OK,
                    format!(
                        "{} served={served} committed={committed} mounted={mounted:?}",
                        self.label
                    ),
                );
            }
            if path.ends_with("/slow") {
                let mut release = self.probe.release.subscribe();
                self.probe.entered.add_permits(1);
                release.wait_for(|released| *released).await.unwrap();
                self.probe.record(format!("done {}", self.label));
            } else if path.ends_with("/hang") {
                self.probe.entered.add_permits(1);
                std::future::pending::<()>().await;
            } else if path.ends_with("/panic") {
                panic!("handler told to panic");
            } else if path.ends_with("/echo") {
                let (parts, body) = req.into_parts();
                return match bourse_kernel::read_body(&parts.headers, body, self.limit).await {
                    Ok(bytes) => http::Response::new(bourse_kernel::full(bytes)),
                    Err(error) => error.to_response(),
                };
            }
            self.text(http::StatusCode::OK, reply)
        })
    }

    fn activate(&self) {
        *self.state.committed.lock() = self.reply.clone();
        self.probe.record(format!("activate {}", self.label));
    }

    fn drain<'a>(&'a self, _deadline: tokio::time::Instant) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.probe.record(format!("drain {}", self.label));
            if self.hang_on_stop {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// A test extension: `[greeting] text = "…"`, shared by every plugin.
pub struct Greeting;

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreetingConfig {
    #[serde(default)]
    pub text: String,
}

impl bourse_kernel::Extension for Greeting {
    const NAME: &'static str = "greeting";
    type Config = GreetingConfig;
    type Shared = Mutex<String>;

    fn check(config: &GreetingConfig) -> Vec<ConfigIssue> {
        if config.text.len() > 20 {
            vec![ConfigIssue::new("text", "at most 20 characters")]
        } else {
            Vec::new()
        }
    }

    async fn start(
        config: &GreetingConfig,
        _metrics: &bourse_kernel::Metrics,
    ) -> Result<Mutex<String>, PluginError> {
        Ok(Mutex::new(config.text.clone()))
    }

    async fn reconfigure(
        shared: &Mutex<String>,
        config: &GreetingConfig,
    ) -> Result<(), PluginError> {
        if config.text == "refuse" {
            return Err(PluginError("told to refuse".into()));
        }
        *shared.lock() = config.text.clone();
        Ok(())
    }
}

/// `alpha` on `/x/`, `beta` on `/x/y/`, and the `greeting` extension.
pub fn kernel(probe: &Arc<Probe>) -> Kernel {
    Kernel::builder()
        .extension::<Greeting>()
        .plugin(TestPlugin {
            name: "alpha",
            mounts: vec!["/x/"],
            probe: probe.clone(),
        })
        .plugin(TestPlugin {
            name: "beta",
            mounts: vec!["/x/y/"],
            probe: probe.clone(),
        })
        .build()
}

pub const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_ms = 30000
drain_deadline_ms = 30000

[log]
format = "text"

[plugins.alpha]
reply = "A"

[plugins.beta]
reply = "B"
"#;

pub async fn start(probe: &Arc<Probe>, text: &str) -> bourse_kernel::Running {
    let kernel = kernel(probe);
    let config = kernel
        .load_config_str(text, "test.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    kernel.start(config).await.unwrap()
}

/// A port that was free a moment ago, for tests that must know the address before start returns.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(
    client: &HttpClient,
    req: http::Request<Full<Bytes>>,
) -> (http::StatusCode, String) {
    let response = within(client.request(req)).await.unwrap();
    let status = response.status();
    let body = within(response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> (http::StatusCode, String) {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap();
    send(client, req).await
}
