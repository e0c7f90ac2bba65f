//! etcd as a config source: a cluster keeps its shared config as TOML text under one etcd key;
//! every node applies each revision it sees, with its own node-local settings laid over it.
//!
//! Node-local settings are `[server] listen`, `audit_log` and `etcd`: they come from the node's
//! own file and win over whatever the shared document says (two nodes on one machine listen on
//! different ports). Everything else is shared. The watch resumes from the last revision seen,
//! so a node that lost etcd (restart, network) catches up on reconnecting; a revision that was
//! compacted away is replaced by a fresh read.
//!
//! Changes made on a node (its file, SIGHUP, a plugin's `ConfigCenter`) are validated, then
//! written to etcd with a compare-and-swap on the revision the node last saw, then applied: they
//! reach every node, and one made elsewhere meanwhile is refused rather than overwritten. Every
//! document a node applies from etcd is also written to its file, so that a restart while etcd
//! is down serves the latest config rather than the bootstrap one, and a later edit of the file
//! starts from what runs.

// Without the `etcd` feature only the settings' checks are used; the text helpers stay built
// (and tested) so both builds keep one definition of the shared document.
#![cfg_attr(not(feature = "etcd"), allow(dead_code))]

use std::time::Duration;

use serde::Deserialize;

#[cfg(feature = "etcd")]
mod apply;
#[cfg(feature = "etcd")]
mod client;
#[cfg(feature = "etcd")]
pub(crate) use client::{EtcdLink, EtcdMetrics, fetch_or_seed, spawn_watch};

/// Why `[server.etcd]` is refused by a build without etcd support.
pub(crate) const NOT_BUILT_IN: &str = "this bourse was built without etcd support; build it \
    with `cargo build --release --features etcd` (which needs `protoc`) to share config \
    through etcd";

/// The `[server]` keys that belong to one node and never come from etcd.
pub(crate) const NODE_LOCAL: [&str; 3] = ["listen", "audit_log", "etcd"];

/// Longest wait between two attempts to reach etcd again.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// `[server.etcd]`: where the cluster's shared config lives. Absent: no etcd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster, `http://host:port` (TLS is not supported yet).
    pub endpoints: Vec<String>,
    /// The key holding the shared config as TOML text.
    pub key: String,
    /// How long to wait for etcd to connect or to answer one request.
    pub timeout_ms: u64,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            key: "/bourse/config".to_owned(),
            timeout_ms: 1_000,
        }
    }
}

impl EtcdConfig {
    /// Problems with these settings as `(path below server.etcd, message)`.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.endpoints.is_empty() {
            problems.push((
                "endpoints".to_owned(),
                "list at least one endpoint".to_owned(),
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let host = endpoint
                .strip_prefix("http://")
                .map(|rest| rest.split('/').next().unwrap_or(""));
            let valid = host.is_some_and(|h| !h.is_empty() && h.parse::<http::Uri>().is_ok());
            if !valid {
                problems.push((
                    format!("endpoints[{i}]"),
                    format!("expected http://host:port, found {endpoint:?}"),
                ));
            }
        }
        if self.key.is_empty() {
            problems.push(("key".to_owned(), "the key must not be empty".to_owned()));
        }
        if self.timeout_ms == 0 {
            problems.push(("timeout_ms".to_owned(), "must be at least 1".to_owned()));
        }
        problems
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How errors in the etcd document name it: `etcd:/bourse/config:LINE:COL`.
    pub(crate) fn origin(&self) -> String {
        format!("etcd:{}", self.key)
    }
}

/// Parses a config text into an editable document. `toml` checks the syntax first: toml_edit
/// 0.23 can panic recovering from some syntax errors (`==\n[.`, found by the fuzzer), and what
/// is in etcd is anyone's writing.
fn editable(text: &str) -> Result<toml_edit::DocumentMut, String> {
    text.parse::<toml::Table>().map_err(|e| e.to_string())?;
    text.parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())
}

/// The shared part of a config text: the text without the node-local `[server]` keys (and
/// without `[server]` itself when nothing else is left in it). Comments stay.
pub(crate) fn shared_document(text: &str) -> Result<String, String> {
    let mut doc = editable(text)?;
    if let Some(server) = doc.get_mut("server").and_then(|s| s.as_table_like_mut()) {
        for key in NODE_LOCAL {
            server.remove(key);
        }
        if server.is_empty() {
            doc.remove("server");
        }
    }
    Ok(doc.to_string())
}

/// `shared` with the node-local `[server]` keys of `local` laid over it: the node's effective
/// config. Node-local keys in `shared` are dropped, present in `local` or not.
pub(crate) fn overlay_node_local(shared: &str, local: &str) -> Result<String, String> {
    let mut doc = editable(shared)?;
    let local = editable(local)?;
    let local_server = local.get("server").and_then(|s| s.as_table_like());
    if !doc.contains_key("server") {
        doc.insert("server", toml_edit::table());
    }
    // A `server` that is no table is left for validation to refuse, with its line.
    if let Some(server) = doc.get_mut("server").and_then(|s| s.as_table_like_mut()) {
        for key in NODE_LOCAL {
            server.remove(key);
            if let Some(item) = local_server.and_then(|s| s.get(key)) {
                server.insert(key, item.clone());
            }
        }
    }
    Ok(doc.to_string())
}

/// Whether two config texts say the same thing (formatting and comments aside).
pub(crate) fn same_config(a: &str, b: &str) -> bool {
    match (a.parse::<toml::Table>(), b.parse::<toml::Table>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// What the watch saw happen to the key.
#[derive(Debug)]
pub(crate) enum Update {
    /// A new value at this mod revision; `Err` when it is not UTF-8 text.
    Put {
        revision: i64,
        text: Result<String, String>,
    },
    /// The key was deleted at this revision.
    Deleted { revision: i64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "[server]\nlisten = \"127.0.0.1:9001\"\nwatch_config = false\n\n\
                         [server.etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n\n\
                         [plugins.exchange]\nfee = 0.1\n";

    #[test]
    fn a_syntax_error_from_etcd_is_an_error_not_a_panic() {
        assert!(shared_document("==\n[.").is_err());
        assert!(overlay_node_local("==\n[.", LOCAL).is_err());
    }

    #[test]
    fn the_shared_document_leaves_node_local_settings_out() {
        let shared = shared_document(LOCAL).unwrap();
        assert!(!shared.contains("listen"), "{shared}");
        assert!(!shared.contains("etcd"), "{shared}");
        assert!(shared.contains("watch_config = false"), "{shared}");
        assert!(shared.contains("fee = 0.1"), "{shared}");
        let only_local = "[server]\nlisten = \"127.0.0.1:1\"\n\n[plugins.exchange]\nfee = 1\n";
        let shared = shared_document(only_local).unwrap();
        assert!(!shared.contains("[server]"), "{shared}");
    }

    #[test]
    fn the_node_keeps_its_own_settings_over_the_shared_ones() {
        let shared = "[server]\nlisten = \"10.0.0.1:80\"\naudit_log = \"shared.jsonl\"\n\
                      watch_config = true\n\n[plugins.exchange]\nfee = 0.2\n";
        let merged = overlay_node_local(shared, LOCAL).unwrap();
        let table: toml::Table = merged.parse().unwrap();
        let server = table["server"].as_table().unwrap();
        assert_eq!(server["listen"].as_str(), Some("127.0.0.1:9001"));
        assert!(
            server.get("audit_log").is_none(),
            "the node has none: {merged}"
        );
        assert_eq!(server["watch_config"].as_bool(), Some(true), "shared wins");
        assert!(server["etcd"].as_table().is_some(), "{merged}");
        assert_eq!(table["plugins"]["exchange"]["fee"].as_float(), Some(0.2));
        // A document with no [server] at all still gets the node's.
        let merged = overlay_node_local("[plugins.exchange]\nfee = 0.3\n", LOCAL).unwrap();
        let table: toml::Table = merged.parse().unwrap();
        assert_eq!(table["server"]["listen"].as_str(), Some("127.0.0.1:9001"));
        // Laying the node over its own shared part gives back the same config.
        let round = overlay_node_local(&shared_document(LOCAL).unwrap(), LOCAL).unwrap();
        assert!(same_config(&round, LOCAL), "{round}");
    }

    #[test]
    fn bad_settings_are_named() {
        let settings = EtcdConfig {
            endpoints: vec!["127.0.0.1:2379".into(), "http://ok:1".into()],
            key: String::new(),
            timeout_ms: 0,
        };
        let paths: Vec<String> = settings.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["endpoints[0]", "key", "timeout_ms"]);
        assert!(EtcdConfig::default().problems().is_empty());
    }
}
