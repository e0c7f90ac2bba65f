//! Delivery of partners' notice URLs (nurl, burl, lurl) off the request path. Each partner has
//! its own bounded queue, connection pool and concurrency, so one partner whose endpoint hangs
//! or fails can never delay or drop another's notices. Every URL passes the outbound policy
//! (`outbound.rs`). Failed attempts are retried with backoff from a per-partner schedule, not by
//! sleeping tasks, so at a stop everything still owed is known: billing notices still owed then
//! are written to a spool file and sent after the next start; the rest are logged and counted
//! as given up. Nothing is dropped silently.

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::Roots;
use crate::notice::NoticeKind;
use crate::outbound::{Allowed, GuardedResolver, check_url, guarded_connector};

/// Bytes of a partner's answer read at most (the body is never used).
const MAX_ANSWER: usize = 16 * 1024;

/// How one partner's notices are delivered (from the exchange's and the bidder's config).
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerPolicy {
    /// Attempts in all, at least 1.
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub backoff: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Notices waiting at most; a full queue drops win and loss notices (counted) and keeps
    /// billing ones for the spool.
    pub queue: usize,
    /// Notices being sent at once.
    pub concurrency: usize,
    /// Non-public hosts this partner may name.
    pub allowed_hosts: Vec<String>,
    /// The authorities its https notice URLs may chain to: those its bid requests trust.
    pub roots: Roots,
}

/// One notice owed to a partner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notice {
    pub bidder: String,
    pub kind: NoticeKind,
    pub url: String,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
}

/// The counters of delivery, per partner and kind.
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// `bourse_exchange_notices_total{kind,outcome}`.
    pub notices: IntCounterVec,
    /// `bourse_exchange_notices_refused_total{bidder,reason}`: URLs the outbound policy refused.
    pub refused: IntCounterVec,
}

struct Scheduled {
    due: Instant,
    notice: Notice,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Earliest first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due)
    }
}

/// Tells a worker to deliver what it can by the deadline, then hand back everything still
/// owed. It travels apart from the notices, so a full queue never delays it.
type Stop = (Instant, oneshot::Sender<Vec<Notice>>);

/// The sending end of one partner's queue.
#[derive(Clone)]
pub struct PartnerQueue {
    name: Arc<str>,
    tx: mpsc::Sender<Notice>,
    stop: mpsc::UnboundedSender<Stop>,
    allowed: Allowed,
    metrics: DeliveryMetrics,
    /// Billing notices that found the queue full, kept for the spool rather than dropped.
    overflow: Arc<Mutex<Vec<Notice>>>,
}

impl std::fmt::Debug for PartnerQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartnerQueue {
    /// Queues one of this partner's URLs; never waits. A URL the outbound policy refuses is
    /// counted and never fetched.
    pub fn fire(&self, kind: NoticeKind, url: String) {
        if url.is_empty() {
            return;
        }
        if let Err(refusal) = check_url(&url, &self.allowed) {
            self.metrics
                .refused
                .with_label_values(&[&self.name, refusal.reason()])
                .inc();
            tracing::debug!(bidder = &*self.name, %refusal, "notice URL refused");
            return;
        }
        let notice = Notice {
            bidder: self.name.to_string(),
            kind,
            url,
            attempts: 0,
        };
        if let Err(mpsc::error::TrySendError::Full(notice)) = self.tx.try_send(notice) {
            if notice.kind == NoticeKind::Bill {
                self.overflow.lock().push(notice);
                count(&self.metrics, notice_kind(NoticeKind::Bill), "deferred");
            } else {
                count(&self.metrics, notice_kind(notice.kind), "dropped");
            }
        }
    }
}

fn notice_kind(kind: NoticeKind) -> &'static str {
    kind.as_str()
}

fn count(metrics: &DeliveryMetrics, kind: &str, outcome: &str) {
    metrics.notices.with_label_values(&[kind, outcome]).inc();
}

/// Every partner's queue, owned by the exchange instance.
pub struct Delivery {
    partners: Mutex<HashMap<String, (PartnerPolicy, PartnerQueue)>>,
    /// The same queues, for the request path to read without a lock.
    queues: arc_swap::ArcSwap<HashMap<String, PartnerQueue>>,
    workers: Mutex<JoinSet<()>>,
    metrics: DeliveryMetrics,
    spool: Option<PathBuf>,
    /// Notices read back from the spool at start, waiting for their partner's queue.
    recovered: Mutex<Vec<Notice>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Delivery with no partner yet; billing notices left in `spool` by an earlier run are read
    /// back and sent once their partner's queue exists ([`Delivery::configure`]).
    pub fn new(spool: Option<PathBuf>, metrics: DeliveryMetrics) -> Self {
        let recovered = spool.as_deref().map(read_spool).unwrap_or_default();
        if !recovered.is_empty() {
            tracing::info!(
                notices = recovered.len(),
                "billing notices left from the last run will be sent"
            );
            for notice in &recovered {
                count(&metrics, notice_kind(notice.kind), "recovered");
            }
        }
        Delivery {
            partners: Mutex::new(HashMap::new()),
            queues: arc_swap::ArcSwap::from_pointee(HashMap::new()),
            workers: Mutex::new(JoinSet::new()),
            metrics,
            spool,
            recovered: Mutex::new(recovered),
        }
    }

    /// The partners and their policies in force: a partner whose policy is unchanged keeps its
    /// queue (and what is in it); a new or changed one gets a new queue; one no longer listed
    /// finishes what it has in the background and goes.
    pub fn configure(&self, wanted: &[(String, PartnerPolicy)]) {
        let mut partners = self.partners.lock();
        let mut next = HashMap::new();
        for (name, policy) in wanted {
            match partners.remove(name) {
                Some((kept, queue)) if kept == *policy => {
                    next.insert(name.clone(), (kept, queue));
                }
                old => {
                    if let Some((_, queue)) = old {
                        self.retire(queue);
                    }
                    let queue = self.spawn(name, policy.clone());
                    next.insert(name.clone(), (policy.clone(), queue));
                }
            }
        }
        for (_, (_, queue)) in partners.drain() {
            self.retire(queue);
        }
        *partners = next;
        self.queues.store(Arc::new(
            partners
                .iter()
                .map(|(name, (_, queue))| (name.clone(), queue.clone()))
                .collect(),
        ));
        let recovered = std::mem::take(&mut *self.recovered.lock());
        let mut waiting = Vec::new();
        for notice in recovered {
            match partners.get(&notice.bidder) {
                Some((_, queue)) => {
                    if let Err(refused) = queue.tx.try_send(notice) {
                        waiting.push(refused.into_inner());
                    }
                }
                // A partner no longer configured is still owed its billing notices.
                None => waiting.push(notice),
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(
                notices = waiting.len(),
                "recovered billing notices whose partner is not configured are kept for the spool"
            );
        }
        *self.recovered.lock() = waiting;
    }

    /// The queue of partner `name`, if configured. Lock-free: read on the auction path.
    pub fn queue(&self, name: &str) -> Option<PartnerQueue> {
        self.queues.load().get(name).cloned()
    }

    /// A notice for a partner that is no longer configured (its token was signed under an
    /// earlier config): a billing notice is still owed and kept for the spool; others are
    /// counted as given up.
    pub fn fire_unconfigured(&self, bidder: &str, kind: NoticeKind, url: String) {
        if kind == NoticeKind::Bill {
            count(&self.metrics, "bill", "deferred");
            self.recovered.lock().push(Notice {
                bidder: bidder.to_owned(),
                kind,
                url,
                attempts: 0,
            });
        } else {
            count(&self.metrics, notice_kind(kind), "given_up");
        }
    }

    fn spawn(&self, name: &str, policy: PartnerPolicy) -> PartnerQueue {
        let (tx, rx) = mpsc::channel(policy.queue.max(1));
        let (stop, stops) = mpsc::unbounded_channel();
        let allowed = Allowed::new(&policy.allowed_hosts);
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(policy.concurrency)
            .build(
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(policy.roots.client_config())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(guarded_connector(allowed.clone())),
            );
        let queue = PartnerQueue {
            name: Arc::from(name),
            tx,
            stop,
            allowed,
            metrics: self.metrics.clone(),
            overflow: Arc::default(),
        };
        let worker = Worker {
            rx,
            stops,
            client,
            policy,
            metrics: self.metrics.clone(),
        };
        self.workers.lock().spawn(worker.run());
        queue
    }

    /// Lets a queue that is no longer configured finish in the background (its notices are
    /// still owed), bounded by its own policy's retries.
    fn retire(&self, queue: PartnerQueue) {
        let overflowed = std::mem::take(&mut *queue.overflow.lock());
        self.recovered.lock().extend(overflowed);
        let (done, owed) = oneshot::channel();
        // The retired queue gets a minute to deliver what it holds.
        let deadline = Instant::now() + Duration::from_secs(60);
        if queue.stop.send((deadline, done)).is_err() {
            return;
        }
        let metrics = self.metrics.clone();
        self.workers.lock().spawn(async move {
            for notice in owed.await.unwrap_or_default() {
                count(&metrics, notice_kind(notice.kind), "given_up");
                tracing::warn!(
                    bidder = notice.bidder,
                    kind = notice.kind.as_str(),
                    "a removed partner's notice was not delivered; given up"
                );
            }
        });
    }

    /// Stops every queue by `deadline`: what can be delivered by then is; billing notices still
    /// owed are written to the spool (with any recovered ones not yet sent); the rest are
    /// counted as given up.
    pub async fn shutdown(&self, deadline: Instant) {
        let queues: Vec<PartnerQueue> = self
            .partners
            .lock()
            .drain()
            .map(|(_, (_, queue))| queue)
            .collect();
        self.queues.store(Arc::default());
        // Leave room to write the spool before the deadline.
        let sending_until = deadline - Duration::from_millis(200).min(deadline - Instant::now());
        let stops = queues.iter().map(|queue| {
            let (done, owed) = oneshot::channel();
            let sent = queue.stop.send((sending_until, done)).is_ok();
            async move {
                if !sent {
                    return Vec::new();
                }
                owed.await.unwrap_or_default()
            }
        });
        let mut owed: Vec<Notice> = futures_util::future::join_all(stops)
            .await
            .into_iter()
            .flatten()
            .collect();
        for queue in &queues {
            owed.extend(std::mem::take(&mut *queue.overflow.lock()));
        }
        owed.extend(std::mem::take(&mut *self.recovered.lock()));
        let (bills, others): (Vec<Notice>, Vec<Notice>) =
            owed.into_iter().partition(|n| n.kind == NoticeKind::Bill);
        for notice in &others {
            count(&self.metrics, notice_kind(notice.kind), "given_up");
            tracing::warn!(
                bidder = notice.bidder,
                kind = notice.kind.as_str(),
                url = notice.url,
                "notice not delivered before shutdown; given up"
            );
        }
        match &self.spool {
            Some(path) => match write_spool(path, &bills) {
                Ok(()) => {
                    for _ in &bills {
                        count(&self.metrics, "bill", "spooled");
                    }
                    if !bills.is_empty() {
                        tracing::info!(notices = bills.len(), path = %path.display(), "billing notices spooled for the next start");
                    }
                }
                Err(error) => {
                    tracing::error!(%error, path = %path.display(), notices = bills.len(), "cannot write the notice spool; billing notices given up");
                    for notice in &bills {
                        count(&self.metrics, "bill", "given_up");
                        tracing::error!(
                            bidder = notice.bidder,
                            url = notice.url,
                            "billing notice given up"
                        );
                    }
                }
            },
            None => {
                for notice in &bills {
                    count(&self.metrics, "bill", "given_up");
                    tracing::error!(
                        bidder = notice.bidder,
                        url = notice.url,
                        "billing notice given up: no spool configured"
                    );
                }
            }
        }
        let mut workers = std::mem::take(&mut *self.workers.lock());
        workers.abort_all();
        while workers.join_next().await.is_some() {}
    }
}

/// One partner's sender: takes notices from its queue, sends up to `concurrency` at once,
/// schedules retries, and hands back what is still owed when told to stop.
struct Worker {
    rx: mpsc::Receiver<Notice>,
    stops: mpsc::UnboundedReceiver<Stop>,
    client: Client<
        hyper_rustls::HttpsConnector<
            hyper_util::client::legacy::connect::HttpConnector<GuardedResolver>,
        >,
        Empty<Bytes>,
    >,
    policy: PartnerPolicy,
    metrics: DeliveryMetrics,
}

enum Outcome {
    Delivered,
    Retry,
    GiveUp,
}

impl Worker {
    async fn run(mut self) {
        let mut retries: BinaryHeap<Scheduled> = BinaryHeap::new();
        let mut sending: JoinSet<(u64, Outcome)> = JoinSet::new();
        // What each send in flight carries, so a send cut off at a stop is still known.
        let mut in_flight: HashMap<u64, Notice> = HashMap::new();
        let mut next_id = 0u64;
        let mut stop: Option<Stop> = None;
        let concurrency = self.policy.concurrency.max(1);
        loop {
            let room = sending.len() < concurrency;
            let next_retry = retries.peek().map(|s| s.due);
            tokio::select! {
                Some(told) = self.stops.recv(), if stop.is_none() => stop = Some(told),
                notice = self.rx.recv(), if room => match notice {
                    Some(notice) => {
                        next_id += 1;
                        self.send(&mut sending, &mut in_flight, next_id, notice);
                    }
                    None => return,
                },
                Some(done) = sending.join_next(), if !sending.is_empty() => {
                    let Ok((id, outcome)) = done else { continue };
                    let Some(notice) = in_flight.remove(&id) else { continue };
                    self.settle(notice, outcome, &mut retries);
                }
                _ = sleep_until(next_retry), if room && next_retry.is_some() => {
                    if let Some(scheduled) = retries.pop() {
                        next_id += 1;
                        self.send(&mut sending, &mut in_flight, next_id, scheduled.notice);
                    }
                }
                _ = sleep_until(stop.as_ref().map(|(d, _)| *d)), if stop.is_some() => break,
            }
            // Told to stop, nothing in flight or waiting and no retry due before the deadline:
            // done early.
            if let Some((deadline, _)) = &stop
                && sending.is_empty()
                && self.rx.is_empty()
                && retries.peek().is_none_or(|s| s.due > *deadline)
            {
                break;
            }
        }
        sending.abort_all();
        let mut owed: Vec<Notice> = retries.into_iter().map(|s| s.notice).collect();
        // Sends cut off at the deadline may or may not have arrived: owed, to be safe.
        owed.extend(in_flight.into_values());
        while let Ok(notice) = self.rx.try_recv() {
            owed.push(notice);
        }
        if let Some((_, reply)) = stop {
            let _ = reply.send(owed);
        }
    }

    fn settle(&self, mut notice: Notice, outcome: Outcome, retries: &mut BinaryHeap<Scheduled>) {
        let kind = notice_kind(notice.kind);
        match outcome {
            Outcome::Delivered => count(&self.metrics, kind, "sent"),
            Outcome::GiveUp => {
                count(&self.metrics, kind, "failed");
                tracing::warn!(
                    bidder = notice.bidder,
                    kind,
                    attempts = notice.attempts,
                    "notice given up after its last attempt"
                );
            }
            Outcome::Retry => {
                count(&self.metrics, kind, "retried");
                let doublings = notice.attempts.saturating_sub(1).min(16);
                let wait = self.policy.backoff * 2u32.pow(doublings);
                notice.attempts = notice.attempts.min(self.policy.attempts);
                retries.push(Scheduled {
                    due: Instant::now() + wait,
                    notice,
                });
            }
        }
    }

    fn send(
        &self,
        sending: &mut JoinSet<(u64, Outcome)>,
        in_flight: &mut HashMap<u64, Notice>,
        id: u64,
        mut notice: Notice,
    ) {
        notice.attempts += 1;
        let (client, policy) = (self.client.clone(), self.policy.clone());
        let (url, attempts) = (notice.url.clone(), notice.attempts);
        in_flight.insert(id, notice);
        sending.spawn(async move { (id, attempt(&client, &url, &policy, attempts).await) });
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when).await,
        None => std::future::pending().await,
    }
}

async fn attempt<C>(
    client: &Client<C, Empty<Bytes>>,
    url: &str,
    policy: &PartnerPolicy,
    attempt: u32,
) -> Outcome
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Outcome::GiveUp;
    };
    let request = http::Request::get(uri)
        .body(Empty::new())
        .expect("valid request");
    let answer = tokio::time::timeout(policy.timeout, async {
        let response = client.request(request).await?;
        let status = response.status();
        // Read a little of the body (so the connection can be reused), never all of it.
        let _ = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    match answer {
        // A redirect is not followed: the partner got our request, which is what a notice is.
        Ok(Ok(status)) if status.is_success() || status.is_redirection() => Outcome::Delivered,
        Ok(Ok(status)) if status.is_client_error() => Outcome::GiveUp,
        _ if attempt >= policy.attempts.max(1) => Outcome::GiveUp,
        _ => Outcome::Retry,
    }
}

/// Reads the notices a previous run spooled; a missing file is an empty spool.
fn read_spool(path: &std::path::Path) -> Vec<Notice> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::error!(%error, path = %path.display(), "cannot read the notice spool");
            return Vec::new();
        }
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| match serde_json::from_str::<Notice>(line) {
            Ok(notice) => Some(Notice {
                attempts: 0,
                ..notice
            }),
            Err(error) => {
                tracing::error!(%error, line, "an unreadable line in the notice spool is skipped");
                None
            }
        })
        .collect()
}

/// Replaces the spool with `notices` (removing it when there are none), durably: written to a
/// temporary file, synced, then renamed over the spool.
fn write_spool(path: &std::path::Path, notices: &[Notice]) -> std::io::Result<()> {
    use std::io::Write as _;
    if notices.is_empty() {
        return match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
    }
    let temp = path.with_extension("spool.tmp");
    let mut file = std::fs::File::create(&temp)?;
    for notice in notices {
        serde_json::to_writer(&mut file, notice)?;
        file.write_all(b"\n")?;
    }
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself is durable once the folder is synced.
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}

/// Counters resolved for one kind, for callers that count per kind without a label lookup.
pub fn kind_counter(metrics: &DeliveryMetrics, kind: NoticeKind, outcome: &str) -> IntCounter {
    metrics.notices.with_label_values(&[kind.as_str(), outcome])
}
