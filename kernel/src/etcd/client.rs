//! The etcd client side of the config source (built with the `etcd` feature): connecting,
//! reading or seeding the key, publishing with a compare-and-swap, and the watch that resumes
//! from the last revision seen.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, Txn, TxnOp, WatchOptions,
};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EtcdConfig, FIRST_BACKOFF, MAX_BACKOFF, Update, same_config, shared_document};
use crate::Metrics;

/// The kernel's etcd metrics.
#[derive(Clone)]
pub(crate) struct EtcdMetrics {
    /// Documents seen, by outcome: applied, unchanged, refused, deleted.
    events: IntCounterVec,
    reconnects: IntCounter,
    revision: IntGauge,
}

impl EtcdMetrics {
    pub(crate) fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let events = metrics.register(IntCounterVec::new(
            Opts::new(
                "bourse_kernel_etcd_events_total",
                "Config documents seen in etcd, by outcome",
            ),
            &["outcome"],
        )?)?;
        for outcome in ["applied", "unchanged", "refused", "deleted"] {
            events.with_label_values(&[outcome]);
        }
        Ok(EtcdMetrics {
            events,
            reconnects: metrics.register(IntCounter::new(
                "bourse_kernel_etcd_reconnects_total",
                "Times the connection or watch to etcd broke and was made again",
            )?)?,
            revision: metrics.register(IntGauge::new(
                "bourse_kernel_etcd_revision",
                "Mod revision of the last config document applied from etcd",
            )?)?,
        })
    }

    pub(crate) fn outcome(&self, outcome: &str) {
        self.events.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn applied(&self, revision: i64) {
        self.outcome("applied");
        self.revision.set(revision);
    }
}

/// What one read of the key found.
pub(crate) struct Fetched {
    /// The store's revision when it was read: watch from the next one.
    pub revision: i64,
    /// The value and its mod revision, when the key exists.
    pub value: Option<(i64, Result<String, String>)>,
}

/// Connects with the configured timeout and a keep-alive that notices a vanished etcd.
pub(crate) async fn connect(settings: &EtcdConfig) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(settings.timeout())
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    within(
        settings,
        Client::connect(settings.endpoints.clone(), Some(options)),
    )
    .await
}

/// `request` within the configured timeout: a balanced channel with no live endpoint waits
/// forever rather than failing.
async fn within<T>(
    settings: &EtcdConfig,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(settings.timeout(), request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("etcd: {error}")),
        Err(_) => Err(format!(
            "etcd did not answer within {} ms",
            settings.timeout_ms
        )),
    }
}

fn text_of(value: &[u8]) -> Result<String, String> {
    String::from_utf8(value.to_vec()).map_err(|_| "the value is not UTF-8 text".to_owned())
}

/// Reads the key; when it is absent and `seed` is given, writes `seed` there unless another
/// node got there first (put-if-absent), so a cluster bootstraps from its first node.
pub(crate) async fn fetch_or_seed(
    client: &mut Client,
    settings: &EtcdConfig,
    seed: Option<&str>,
) -> Result<Fetched, String> {
    let key = settings.key.as_str();
    let got = within(settings, client.get(key, None)).await?;
    let revision = got.header().map_or(0, |h| h.revision());
    if let Some(kv) = got.kvs().first() {
        return Ok(Fetched {
            revision,
            value: Some((kv.mod_revision(), text_of(kv.value()))),
        });
    }
    let Some(seed) = seed else {
        return Ok(Fetched {
            revision,
            value: None,
        });
    };
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, seed, None)])
        .or_else([TxnOp::get(key, None)]);
    let answer = within(settings, client.txn(txn)).await?;
    let revision = answer.header().map_or(0, |h| h.revision());
    if answer.succeeded() {
        tracing::info!(
            key,
            revision,
            "etcd had no shared config: seeded it from this node's file"
        );
        return Ok(Fetched {
            revision,
            value: Some((revision, Ok(seed.to_owned()))),
        });
    }
    // Another node seeded it between our read and our write: take theirs.
    let theirs = answer.op_responses().into_iter().find_map(|op| match op {
        etcd_client::TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| (kv.mod_revision(), text_of(kv.value()))),
        _ => None,
    });
    Ok(Fetched {
        revision,
        value: theirs,
    })
}

/// Writes `text` as the shared document if the key is still at `seen` (its mod revision as this
/// node last saw it; 0: absent), so a change made elsewhere meanwhile is not silently lost.
/// Returns the new revision.
pub(crate) async fn publish(
    client: &mut Client,
    settings: &EtcdConfig,
    seen: i64,
    text: &str,
) -> Result<i64, String> {
    let key = settings.key.as_str();
    let compare = if seen == 0 {
        Compare::create_revision(key, CompareOp::Equal, 0)
    } else {
        Compare::mod_revision(key, CompareOp::Equal, seen)
    };
    let txn = Txn::new()
        .when([compare])
        .and_then([TxnOp::put(key, text, None)]);
    let answer = within(settings, client.txn(txn)).await?;
    if !answer.succeeded() {
        return Err(format!(
            "the shared config in etcd changed since this node last saw it (revision {seen}); \
             nothing was applied: try again on the current config"
        ));
    }
    Ok(answer.header().map_or(0, |h| h.revision()))
}

/// Watches the key from `next_revision` (or, when `None`, reads it first, seeding it with
/// `seed` when absent) and sends every change until `stop`. A broken watch is made again with
/// backoff from the revision after the last one seen.
pub(crate) fn spawn_watch(
    settings: EtcdConfig,
    mut next_revision: Option<i64>,
    mut seed: Option<String>,
    updates: mpsc::UnboundedSender<Update>,
    metrics: EtcdMetrics,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let watched = watch_once(
                &settings,
                &mut next_revision,
                &mut seed,
                &updates,
                &mut backoff,
            );
            let error = tokio::select! {
                _ = stop.cancelled() => return,
                error = watched => error,
            };
            if updates.is_closed() {
                return;
            }
            metrics.reconnects.inc();
            tracing::warn!(
                key = settings.key,
                error,
                retry_in_ms = backoff.as_millis() as u64,
                "etcd watch broken; reconnecting"
            );
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// One connection's worth of watching; returns why it ended.
async fn watch_once(
    settings: &EtcdConfig,
    next_revision: &mut Option<i64>,
    seed: &mut Option<String>,
    updates: &mpsc::UnboundedSender<Update>,
    backoff: &mut Duration,
) -> String {
    let result: Result<(), String> = async {
        let mut client = connect(settings).await?;
        let start = match *next_revision {
            Some(revision) => revision,
            None => {
                let fetched = fetch_or_seed(&mut client, settings, seed.as_deref()).await?;
                *seed = None;
                if let Some((revision, text)) = fetched.value {
                    let _ = updates.send(Update::Put { revision, text });
                }
                fetched.revision + 1
            }
        };
        *next_revision = Some(start);
        let options = WatchOptions::new().with_start_revision(start);
        let mut stream =
            within(settings, client.watch(settings.key.as_str(), Some(options))).await?;
        tracing::info!(key = settings.key, from_revision = start, "watching etcd");
        loop {
            let Some(answer) = stream.message().await.map_err(|e| format!("etcd: {e}"))? else {
                return Err("etcd closed the watch".to_owned());
            };
            if answer.created() {
                *backoff = FIRST_BACKOFF;
            }
            if answer.canceled() {
                let compacted = answer.compact_revision();
                if compacted > 0 {
                    // What we missed is gone from history: read the current value instead.
                    *next_revision = None;
                    return Err(format!(
                        "revisions up to {compacted} were compacted; reading the current value"
                    ));
                }
                return Err(format!(
                    "etcd cancelled the watch: {}",
                    answer.cancel_reason()
                ));
            }
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                let update = match event.event_type() {
                    EventType::Put => Update::Put {
                        revision,
                        text: text_of(kv.value()),
                    },
                    EventType::Delete => Update::Deleted { revision },
                };
                *next_revision = Some(revision + 1);
                if updates.send(update).is_err() {
                    return Err("the server stopped".to_owned());
                }
            }
        }
    }
    .await;
    match result {
        Ok(()) => "watch ended".to_owned(),
        Err(error) => error,
    }
}

/// A node's link to etcd, held by the running kernel: settings, what it last saw, and a client
/// for writing.
pub(crate) struct EtcdLink {
    pub settings: EtcdConfig,
    /// The node's config file text as it last read or wrote it; its node-local `[server]` keys
    /// are laid over every document.
    pub local_text: String,
    pub config_dir: PathBuf,
    /// The key's mod revision as last seen (0: absent or never seen).
    pub seen: i64,
    /// The shared document last applied, to skip no-op changes.
    pub last_document: Option<String>,
    pub metrics: EtcdMetrics,
    client: Option<Client>,
}

impl EtcdLink {
    pub(crate) fn new(
        settings: EtcdConfig,
        local_text: String,
        config_dir: PathBuf,
        metrics: EtcdMetrics,
    ) -> Self {
        EtcdLink {
            settings,
            local_text,
            config_dir,
            seen: 0,
            last_document: None,
            metrics,
            client: None,
        }
    }

    /// A connected client, made on first use and again after an error.
    pub(crate) async fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.is_none() {
            self.client = Some(connect(&self.settings).await?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Publishes the shared part of `text` when it differs from the document last applied.
    /// Returns whether it wrote.
    pub(crate) async fn publish_shared(&mut self, text: &str) -> Result<bool, String> {
        let shared = shared_document(text).map_err(|e| e.to_string())?;
        if self
            .last_document
            .as_deref()
            .is_some_and(|last| same_config(last, &shared))
        {
            return Ok(false);
        }
        let seen = self.seen;
        let settings = self.settings.clone();
        let client = self.client().await?;
        match publish(client, &settings, seen, &shared).await {
            Ok(revision) => {
                self.seen = revision;
                self.last_document = Some(shared);
                self.metrics.revision.set(revision);
                tracing::info!(key = settings.key, revision, "config published to etcd");
                Ok(true)
            }
            Err(error) => {
                self.client = None;
                Err(error)
            }
        }
    }
}
