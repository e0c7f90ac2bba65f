//! What the WebAssembly plugin tests share: the real modules (`plugins/build.sh`), a trusted
//! test key, signed artifacts, the watched folder and the `wasm` table, and the probes that read
//! which floor rule an auction used.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bourse_wasm::{SecretKey, sign};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::support::*;

/// The wasm crate's own test support: the built modules (`dist`, `module`, `manifest`), the
/// trusted test key (`key`) and signing with manifest edits (`signed_with`, `edit_manifest`).
#[path = "../../wasm/tests/it/support.rs"]
#[allow(dead_code)]
mod library;

pub use library::{dist, key};

/// Module `build` signed by `signer` with its manifest's top-level `key = value` lines edited.
pub fn artifact_by(signer: &SecretKey, build: &str, edits: &[(&str, &str)]) -> Vec<u8> {
    let manifest = library::edit_manifest(&library::manifest(build), edits);
    sign(&library::module(build), manifest.as_bytes(), signer).unwrap()
}

/// Module `build` signed by the trusted test key.
pub fn artifact(build: &str, edits: &[(&str, &str)]) -> Vec<u8> {
    library::signed_with(build, edits)
}

/// Puts a file into the watched folder the way operators are told to: beside it, then renamed.
pub fn drop_in(dir: &Path, file: &str, bytes: &[u8]) {
    let staging = dir.join(format!(".{file}.tmp"));
    std::fs::write(&staging, bytes).unwrap();
    std::fs::rename(&staging, dir.join(file)).unwrap();
}

/// A fresh watched folder.
pub fn plugin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bourse-wasm-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `wasm` instance's table, trusting the tests' key.
pub fn wasm_table(dir: &Path, runtime: &str) -> String {
    format!(
        "\n[plugins.wasm]\ndir = {:?}\n[plugins.wasm.trusted_keys]\ntests = {:?}\n[plugins.wasm.runtime]\n{runtime}\n",
        dir.display().to_string(),
        key().public().to_string()
    )
}

/// Waits until a metric series reaches `value`.
pub async fn metric_reaches(node: &Node, series: &str, value: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = node.metric(series).await;
        if now >= value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now}, never reached {value}: {}",
            node.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The floor each build of the example floor rule sets for the USA now, with no fee.
pub fn usa_floor(v2: bool) -> f64 {
    let hour = (bourse_kernel::unix_now_ms() / 3_600_000) % 24;
    match (v2, hour < 8) {
        (false, true) => 0.80,
        (false, false) => 1.50,
        (true, true) => 1.00,
        (true, false) => 2.50,
    }
}

/// An auction from the USA for placement `probe-slot` with a seller's floor of 0.10.
pub fn usa_request(id: &str) -> Value {
    json!({
        "id": id,
        "imp": [{"id": "1", "tagid": "probe-slot", "banner": {"format": [{"w": 300, "h": 250}]}, "bidfloor": 0.1}],
        "site": {"page": "https://news.example/a", "publisher": {"id": "pub-1"}},
        "device": {"ua": "Mozilla/5.0", "ip": "203.0.113.9", "geo": {"country": "USA"}},
        "tmax": 500,
    })
}

pub async fn auction(node: &Node, request: &Value) -> (http::StatusCode, Bytes) {
    let req = http::Request::post(node.url("/openrtb2/auction"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(request.to_string())))
        .unwrap();
    node.send(req).await
}

/// The floor the partner was told in the auction with this request id.
pub fn floor_told(partner: &Partner, id: &str) -> Option<f64> {
    partner
        .requests
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, request)| request["id"] == id)
        .and_then(|(_, request)| request["imp"][0]["bidfloor"].as_f64())
}

pub async fn metrics_text(node: &Node) -> String {
    let (status, text) = node_get(node, "/metrics", "").await;
    assert_eq!(status, 200);
    text
}
