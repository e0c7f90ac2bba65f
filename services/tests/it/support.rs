//! Test support shared by unit and integration tests: a Redis to test against (the one on
//! `BOURSE_TEST_REDIS`, default port 6379, started there when nothing answers), unique key
//! prefixes, killable private servers and metric reads.
#![allow(dead_code)] // Unit and integration tests each use a different subset.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// URL of a Redis that answers PING: `BOURSE_TEST_REDIS` (default `redis://127.0.0.1:6379`),
/// started as a daemon on that port when nothing answers (left running for later test runs).
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(find_or_start_redis).clone()
}

fn find_or_start_redis() -> String {
    let url =
        std::env::var("BOURSE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    if answers_ping(&url) {
        return url;
    }
    let port = url
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse::<u16>().ok())
        .unwrap_or(6379);
    // Another test process may be starting it too; the loser fails to bind, which is fine.
    let _ = Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-server must be installed to run the Redis tests");
    wait_for_ping(&url);
    url
}

/// True if a Redis at `url` answers PING within a second.
pub fn answers_ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
        return false;
    };
    redis::cmd("PING")
        .query::<String>(&mut connection)
        .is_ok_and(|pong| pong == "PONG")
}

fn wait_for_ping(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers_ping(url) {
        assert!(
            Instant::now() < deadline,
            "Redis at {url} did not start within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A key prefix no other test (or run) shares.
pub fn unique_prefix(test: &str) -> String {
    format!("bt-{test}-{:016x}", rand::random::<u64>())
}

/// Deletes every key under `prefix:` (test hygiene; the keys also carry TTLs).
pub fn delete_keys(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("test Redis URL");
    let mut connection = client.get_connection().expect("test Redis connection");
    let keys: Vec<String> =
        redis::Commands::scan_match::<_, String>(&mut connection, format!("{prefix}:*"))
            .expect("SCAN")
            .collect::<Result<_, _>>()
            .expect("SCAN reply");
    for chunk in keys.chunks(500) {
        redis::cmd("DEL")
            .arg(chunk)
            .exec(&mut connection)
            .expect("DEL");
    }
}

/// A Redis server owned by one test, on a free port, killed on demand or when dropped.
pub struct PrivateRedis {
    child: Child,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
}

/// A loopback port nothing listens on (at the time of the call).
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl PrivateRedis {
    /// Starts `redis-server` on a free port as a child process.
    pub fn start() -> Self {
        Self::start_on(unused_port())
    }

    /// Starts `redis-server` on `port` as a child process (e.g. to restart a killed one).
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run the Redis tests");
        let url = format!("redis://127.0.0.1:{port}");
        wait_for_ping(&url);
        PrivateRedis { child, url }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("a port in the URL")
    }

    /// Kills the server (only this child process) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
