//! The traffic generator: open-loop (fixed or stepped rate, latency measured from each request's
//! scheduled time to correct coordinated omission) or closed-loop load against
//! `/openrtb2/auction`, with seeded realistic requests.

use crate::population::{Mix, RequestPool};
use crate::report::{ErrorKind, Outcome, Recorder, Report, RunInfo, Sample};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How load is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// A fixed rate, whatever the server does: request `i` is scheduled at `start + i / rate`.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// Consecutive open-loop phases; the run lasts the sum of their `secs`.
    Stepped {
        /// The phases, in order.
        steps: Vec<Step>,
    },
    /// `concurrency` workers, each sending its next request when the previous one returned.
    /// Finds the ceiling; its latencies are corrected with `record_correct` and the mean
    /// latency so far as the expected interval.
    Closed {
        /// Number of workers.
        concurrency: usize,
    },
}

/// One phase of a stepped run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Requests per second.
    pub rate: f64,
    /// How long, seconds.
    pub secs: f64,
}

/// A load run: mode, length, limits and the requests' mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficConfig {
    /// How load is applied.
    pub mode: Mode,
    /// Length of the measured period, seconds. Required for `open` and `closed`; a `stepped`
    /// run lasts the sum of its steps (a value here must match it).
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// Load applied before the measured period (at the first rate), whose results are dropped.
    #[serde(default)]
    pub warmup_secs: f64,
    /// A request without a complete answer this long after its scheduled time (plus any
    /// forgiven [`TIMER_SLACK`]) is a `timeout`; a closed-loop request, after its send.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Most requests outstanding (on the wire or waiting for a connection); an open-loop
    /// request beyond it is not sent and counts as `overload`.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most HTTP/1.1 keep-alive connections, hence requests on the wire at once (open loop);
    /// also the idle pool size. A request waits for a free connection: that wait is in the
    /// corrected latency and not in the uncorrected one.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Distinct pre-serialized requests, cycled through with fresh ids.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Sent as `Authorization: Bearer <token>` when bourse lists supply partners.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// What the requests look like.
    #[serde(default)]
    pub mix: Mix,
}

fn default_timeout_ms() -> u64 {
    1000
}
fn default_max_in_flight() -> usize {
    10_000
}
fn default_connections() -> usize {
    256
}
fn default_pool_size() -> usize {
    4096
}

impl TrafficConfig {
    /// An open-loop run at `rate` requests per second for `secs` seconds, other fields default.
    pub fn open(rate: f64, secs: f64) -> TrafficConfig {
        TrafficConfig::with_mode(Mode::Open { rate }, Some(secs))
    }

    /// A closed-loop run of `concurrency` workers for `secs` seconds, other fields default.
    pub fn closed(concurrency: usize, secs: f64) -> TrafficConfig {
        TrafficConfig::with_mode(Mode::Closed { concurrency }, Some(secs))
    }

    /// A stepped open-loop run, other fields default.
    pub fn stepped(steps: Vec<Step>) -> TrafficConfig {
        TrafficConfig::with_mode(Mode::Stepped { steps }, None)
    }

    fn with_mode(mode: Mode, duration_secs: Option<f64>) -> TrafficConfig {
        TrafficConfig {
            mode,
            duration_secs,
            warmup_secs: 0.0,
            timeout_ms: default_timeout_ms(),
            max_in_flight: default_max_in_flight(),
            connections: default_connections(),
            pool_size: default_pool_size(),
            bearer_token: None,
            mix: Mix::default(),
        }
    }

    /// Length of the measured period, seconds.
    pub fn duration(&self) -> f64 {
        match &self.mode {
            Mode::Stepped { steps } => steps.iter().map(|s| s.secs).sum(),
            _ => self.duration_secs.unwrap_or(0.0),
        }
    }

    /// Checks the configuration; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, x: f64| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(format!("traffic.{name} must be a number above 0, got {x}"))
            }
        };
        match &self.mode {
            Mode::Open { rate } => positive("mode.rate", *rate)?,
            Mode::Stepped { steps } => {
                if steps.is_empty() {
                    return Err("traffic.mode.steps needs at least one step".into());
                }
                for (n, step) in steps.iter().enumerate() {
                    positive(&format!("mode.steps[{n}].rate"), step.rate)?;
                    positive(&format!("mode.steps[{n}].secs"), step.secs)?;
                }
                if let Some(d) = self.duration_secs
                    && (d - self.duration()).abs() > 1e-9
                {
                    return Err(format!(
                        "traffic.duration_secs ({d}) differs from the steps' total ({}); leave it out",
                        self.duration()
                    ));
                }
            }
            Mode::Closed { concurrency } => {
                if *concurrency == 0 {
                    return Err("traffic.mode.concurrency must be at least 1".into());
                }
            }
        }
        if !matches!(self.mode, Mode::Stepped { .. }) {
            let Some(d) = self.duration_secs else {
                return Err("traffic.duration_secs is required".into());
            };
            positive("duration_secs", d)?;
        }
        if !(self.warmup_secs.is_finite() && self.warmup_secs >= 0.0) {
            return Err("traffic.warmup_secs must be >= 0".into());
        }
        if self.timeout_ms == 0 {
            return Err("traffic.timeout_ms must be at least 1".into());
        }
        if self.connections == 0 {
            return Err("traffic.connections must be at least 1".into());
        }
        if self.max_in_flight < self.connections {
            return Err(format!(
                "traffic.max_in_flight ({}) must be at least traffic.connections ({})",
                self.max_in_flight, self.connections
            ));
        }
        self.mix.validate()
    }

    fn describe(&self) -> String {
        match &self.mode {
            Mode::Open { rate } => format!("open loop at {rate}/s"),
            Mode::Stepped { steps } => {
                let steps: Vec<String> = steps
                    .iter()
                    .map(|s| format!("{}/s for {} s", s.rate, s.secs))
                    .collect();
                format!("stepped open loop ({})", steps.join(", "))
            }
            Mode::Closed { concurrency } => format!("closed loop with {concurrency} workers"),
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How late the generator may launch a request before the lateness counts as latency: tokio's
/// timers fire on millisecond ticks, so a request due between two ticks leaves up to about a
/// millisecond late through no fault of the server. Larger lateness (a starved generator, which
/// on a shared machine may be the server's doing) is counted; the report shows it as
/// `schedule_lag`.
pub const TIMER_SLACK: Duration = Duration::from_millis(2);

struct Shared {
    client: HttpClient,
    uri: http::Uri,
    bearer: Option<http::HeaderValue>,
    pool: RequestPool,
    timeout: Duration,
    start: Instant,
    measure_from: Instant,
    connections: Semaphore,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    issued: AtomicU64,
    errors: AtomicU64,
    recorder: Mutex<Recorder>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    seatbid: Vec<AnswerSeat>,
}

#[derive(Deserialize)]
struct AnswerSeat {
    #[serde(default)]
    bid: Vec<AnswerBid>,
}

#[derive(Deserialize)]
struct AnswerBid {
    #[serde(default)]
    price: f64,
}

impl Shared {
    /// Sends request `i` and reads the whole answer.
    async fn exchange(&self, i: u64) -> Outcome {
        let mut request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-openrtb-version", "2.6");
        if let Some(bearer) = &self.bearer {
            request = request.header(http::header::AUTHORIZATION, bearer.clone());
        }
        let request = request
            .body(Full::new(self.pool.body(i)))
            .expect("a valid request");
        let Ok(response) = self.client.request(request).await else {
            return Outcome::Error(ErrorKind::Connect);
        };
        let status = response.status().as_u16();
        // Read every answer to the end so that the connection goes back to the pool.
        let Ok(body) = response.into_body().collect().await else {
            return Outcome::Error(ErrorKind::Connect);
        };
        match status {
            200 => match serde_json::from_slice::<Answer>(&body.to_bytes()) {
                Ok(answer) => {
                    let bids = answer.seatbid.iter().flat_map(|s| &s.bid);
                    Outcome::Bids {
                        count: bids.clone().count() as u64,
                        value: bids.map(|b| b.price).sum(),
                    }
                }
                Err(_) => Outcome::Error(ErrorKind::BadBody),
            },
            204 => Outcome::NoBid,
            400..=499 => Outcome::Error(ErrorKind::Status4xx),
            500..=599 => Outcome::Error(ErrorKind::Status5xx),
            _ => Outcome::Error(ErrorKind::BadBody),
        }
    }

    fn since_measure(&self, at: Instant) -> Option<Duration> {
        (at >= self.measure_from).then(|| at - self.measure_from)
    }

    /// Records one outcome. `scheduled` is when the request was due, `lag` how late the
    /// generator itself launched it, `sent` when it went on the wire (after any wait for a
    /// connection).
    fn record(
        &self,
        scheduled: Instant,
        lag: Duration,
        sent: Option<Instant>,
        outcome: Outcome,
        expected: Option<Duration>,
    ) {
        let finished = Instant::now();
        if matches!(outcome, Outcome::Error(_)) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        // Latency is known for any answer and for a timeout (a lower bound: the deadline).
        let measured = matches!(
            outcome,
            Outcome::Bids { .. }
                | Outcome::NoBid
                | Outcome::Error(
                    ErrorKind::Status4xx
                        | ErrorKind::Status5xx
                        | ErrorKind::BadBody
                        | ErrorKind::Timeout
                )
        );
        // The generator's own lateness up to TIMER_SLACK is timer resolution, not back-pressure.
        let from = scheduled + lag.min(TIMER_SLACK);
        let sample = Sample {
            scheduled: self.since_measure(scheduled),
            finished: self.since_measure(finished),
            corrected: measured.then(|| finished.saturating_duration_since(from)),
            uncorrected: sent.filter(|_| measured).map(|sent| finished - sent),
            lag: Some(lag),
            expected_interval: expected,
            outcome,
        };
        self.recorder.lock().record(sample);
    }

    /// Open loop: one task per request, measured from `scheduled`.
    fn launch(self: &Arc<Self>, i: u64, scheduled: Instant) {
        self.issued.fetch_add(1, Ordering::Relaxed);
        let lag = Instant::now().saturating_duration_since(scheduled);
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.record(
                scheduled,
                lag,
                None,
                Outcome::Error(ErrorKind::Overload),
                None,
            );
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            // Counted from the same instant as the latency, so a timeout records >= timeout_ms.
            let deadline = scheduled + lag.min(TIMER_SLACK) + shared.timeout;
            let mut sent = None;
            let attempt = async {
                let _connection = shared
                    .connections
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                sent = Some(Instant::now());
                shared.exchange(i).await
            };
            let outcome = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or(Outcome::Error(ErrorKind::Timeout));
            shared.record(scheduled, lag, sent, outcome, None);
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Runs `traffic` against `target`, the full URL of bourse's `/openrtb2/auction`, with requests
/// drawn from `seed`; shows a progress bar on stderr when `progress` is true.
///
/// Returns once every request has an outcome (at most `timeout_ms` after the last schedule).
pub async fn run(
    target: &str,
    traffic: &TrafficConfig,
    seed: u64,
    progress: bool,
) -> anyhow::Result<Report> {
    traffic.validate().map_err(anyhow::Error::msg)?;
    let uri: http::Uri = target
        .parse()
        .with_context(|| format!("target `{target}` is not a URL"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        bail!("target `{target}` must be an http:// URL (https is not supported)");
    }
    let bearer = traffic
        .bearer_token
        .as_ref()
        .map(|t| http::HeaderValue::from_str(&format!("Bearer {t}")))
        .transpose()
        .context("traffic.bearer_token is not a valid header value")?;
    let pool = RequestPool::generate(seed, &traffic.mix, traffic.pool_size);
    let timeout = Duration::from_millis(traffic.timeout_ms);
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeout));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(traffic.connections)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let warmup = Duration::from_secs_f64(traffic.warmup_secs);
    let duration = Duration::from_secs_f64(traffic.duration());
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client,
        uri,
        bearer,
        pool,
        timeout,
        start,
        measure_from: start + warmup,
        connections: Semaphore::new(traffic.connections),
        in_flight: AtomicUsize::new(0),
        max_in_flight: traffic.max_in_flight,
        issued: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        recorder: Mutex::new(Recorder::new()),
    });
    let bar = progress.then(|| progress_bar(&shared, warmup + duration + timeout));
    let offered_rate = match &traffic.mode {
        Mode::Open { rate } => {
            open_loop(
                &shared,
                &phases(*rate, traffic.warmup_secs, &[(*rate, traffic.duration())]),
            )
            .await;
            Some(*rate)
        }
        Mode::Stepped { steps } => {
            let list: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, s.secs)).collect();
            open_loop(&shared, &phases(steps[0].rate, traffic.warmup_secs, &list)).await;
            let total: f64 = list.iter().map(|(rate, secs)| rate * secs).sum();
            Some(total / traffic.duration())
        }
        Mode::Closed { concurrency } => {
            closed_loop(&shared, *concurrency, start + warmup + duration).await;
            None
        }
    };
    // Every request ends by its deadline; wait for the stragglers.
    while shared.in_flight.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let recorder = std::mem::replace(&mut *shared.recorder.lock(), Recorder::new());
    Ok(recorder.finish(RunInfo {
        mode: traffic.describe(),
        duration_secs: traffic.duration(),
        warmup_secs: traffic.warmup_secs,
        offered_rate,
    }))
}

/// The warm-up (at `warmup_rate`) followed by the measured phases, as (rate, seconds).
fn phases(warmup_rate: f64, warmup_secs: f64, measured: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut all = Vec::with_capacity(measured.len() + 1);
    if warmup_secs > 0.0 {
        all.push((warmup_rate, warmup_secs));
    }
    all.extend_from_slice(measured);
    all
}

/// Issues every request at its scheduled time, late or not, never waiting for answers.
async fn open_loop(shared: &Arc<Shared>, phases: &[(f64, f64)]) {
    let mut i = 0u64;
    let mut phase_start = 0.0;
    for &(rate, secs) in phases {
        let count = (rate * secs).round() as u64;
        for j in 0..count {
            let scheduled = shared.start + Duration::from_secs_f64(phase_start + j as f64 / rate);
            if scheduled > Instant::now() {
                tokio::time::sleep_until(scheduled).await;
            }
            shared.launch(i, scheduled);
            i += 1;
        }
        phase_start += secs;
    }
}

/// `concurrency` workers, each sending when its previous request ended, until `end`.
async fn closed_loop(shared: &Arc<Shared>, concurrency: usize, end: Instant) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (shared, next) = (shared.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    shared.issued.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let outcome = tokio::time::timeout(shared.timeout, shared.exchange(i))
                        .await
                        .unwrap_or(Outcome::Error(ErrorKind::Timeout));
                    // A worker meant to send every `mean latency`: a slower answer hid the
                    // requests it would have sent meanwhile, which `record_correct` fills in.
                    let expected = shared.recorder.lock().mean_latency();
                    shared.record(sent, Duration::ZERO, Some(sent), outcome, expected);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

fn progress_bar(shared: &Arc<Shared>, total: Duration) -> ProgressBar {
    let bar =
        ProgressBar::with_draw_target(Some(total.as_millis() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:40}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let (shared, ticker) = (Arc::downgrade(shared), bar.clone());
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(250));
        while let Some(shared) = shared.upgrade() {
            ticker.set_position(shared.start.elapsed().as_millis() as u64);
            ticker.set_message(format!(
                "sent {}  in flight {}  errors {}",
                shared.issued.load(Ordering::Relaxed),
                shared.in_flight.load(Ordering::Relaxed),
                shared.errors.load(Ordering::Relaxed)
            ));
            drop(shared);
            if ticker.is_finished() {
                return;
            }
            interval.tick().await;
        }
    });
    bar
}
