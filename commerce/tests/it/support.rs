//! Test stores: a fresh SQLite file, or a fresh schema on the local PostgreSQL (started when it is
//! not running), so tests never share data with each other or with other developers' runs; a
//! real SMTP server and Stripe's own signer. The sites' tests through the binary include this
//! file too (`tests/it/main.rs` of the root crate), so it names its helpers' files from
//! [`commerce_dir`].

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bourse_commerce::migrate::Module;
use bourse_commerce::{Store, StoreConfig};
use sqlx::Executor;

/// The PostgreSQL the tests use; `BOURSE_TEST_POSTGRES_URL` overrides it.
pub fn postgres_url() -> String {
    std::env::var("BOURSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The commerce crate's folder, whichever crate's tests include this file.
pub fn commerce_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if dir.join("tests/smtp/server.py").exists() {
        dir
    } else {
        dir.join("commerce")
    }
}

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of one engine; removed when dropped (PostgreSQL schemas are dropped
/// by [`TestDb::cleanup`]).
pub struct TestDb {
    pub config: StoreConfig,
    pub engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(engine: Engine) -> TestDb {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path: PathBuf = dir.path().join("sites.db");
                TestDb {
                    config: StoreConfig::sqlite(path),
                    engine,
                    _dir: Some(dir),
                }
            }
            Engine::Postgres => {
                ensure_postgres().await;
                let schema = format!("t_{}", hex_id());
                TestDb {
                    config: StoreConfig::postgres(postgres_url(), Some(&schema)),
                    engine,
                    _dir: None,
                }
            }
        }
    }

    /// Opens a store with `modules` migrated.
    pub async fn open(&self, modules: &[&Module]) -> Store {
        Store::open(&self.config, modules).await.unwrap().0
    }

    /// Drops the PostgreSQL schema (SQLite files go with the temporary directory).
    pub async fn cleanup(self) {
        if let Some(schema) = &self.config.schema {
            let plain = StoreConfig::postgres(postgres_url(), None);
            let store = Store::connect(&plain).await.unwrap();
            store
                .writer()
                .execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
                .await
                .unwrap();
            store.close().await;
        }
    }
}

fn hex_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes sure PostgreSQL answers on the test URL, starting the local cluster if it does not.
pub async fn ensure_postgres() {
    if postgres_answers().await {
        return;
    }
    // Debian's clusters, whatever their version, then the service as a whole.
    let mut commands: Vec<Vec<String>> = std::fs::read_dir("/etc/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| {
            let version = version.file_name().to_string_lossy().into_owned();
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                &version,
                "main",
                "start",
            ]
            .map(str::to_owned)
            .to_vec()
        })
        .collect();
    commands.push(
        ["service", "postgresql", "start"]
            .map(str::to_owned)
            .to_vec(),
    );
    for command in commands {
        let _ = Command::new(&command[0]).args(&command[1..]).status();
        for _ in 0..50 {
            if postgres_answers().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    panic!(
        "PostgreSQL does not answer at {} and could not be started",
        postgres_url()
    );
}

async fn postgres_answers() -> bool {
    let config = StoreConfig::postgres(postgres_url(), None);
    match Store::connect(&config).await {
        Ok(store) => {
            let ok = store.reader().execute("SELECT 1").await.is_ok();
            store.close().await;
            ok
        }
        Err(_) => false,
    }
}

/// A real SMTP server (Python's aiosmtpd, installed from PyPI when missing) recording what it
/// receives; killed when dropped.
pub struct SmtpServer {
    pub port: u16,
    out: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server that refuses the first `fail_first` messages with a temporary error.
    pub fn start(fail_first: u32) -> SmtpServer {
        Self::start_with(&["--fail-first", &fail_first.to_string()])
    }

    /// Starts a server with extra arguments (see `tests/smtp/server.py`).
    pub fn start_with(args: &[&str]) -> SmtpServer {
        use std::io::BufRead;
        ensure_aiosmtpd();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let script = commerce_dir().join("tests/smtp/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--out")
            .arg(&out)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP server printed `{line}`, not its port"));
        SmtpServer {
            port,
            out,
            child,
            _dir: dir,
        }
    }

    /// Everything recorded so far: accepted messages and refused attempts.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The accepted messages.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r.get("refused").is_none())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure_aiosmtpd() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let present = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            let installed = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "aiosmtpd"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(installed, "could not install aiosmtpd with pip");
        }
    });
}

/// The `Stripe-Signature` header Stripe's own Node library (`stripe` from npm, installed into
/// `tests/stripe-node` when missing) generates for `payload` at `timestamp`.
pub fn stripe_node_signature(payload: &str, secret: &str, timestamp: i64) -> String {
    use std::io::Write;
    let dir = commerce_dir().join("tests/stripe-node");
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if !dir.join("node_modules/stripe").exists() {
            let ok = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "npm ci in {} failed", dir.display());
        }
    });
    let mut child = Command::new("node")
        .arg("sign.js")
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs");
    let input = serde_json::json!({"payload": payload, "secret": secret, "timestamp": timestamp});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "sign.js failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Serves `handler` over HTTP/1 on a free loopback port; returns the address.
pub async fn serve<F, Fut>(handler: F) -> std::net::SocketAddr
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
