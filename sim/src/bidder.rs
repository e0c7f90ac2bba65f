//! A simulated demand partner: an HTTP/1.1 and h2c server speaking OpenRTB 2.6 whose latency,
//! bid rate, prices, behaviour and faults are drawn from seeded distributions, and which records
//! the win, billing and loss notices it receives.
//!
//! Routes (every other request gets 404, or 405 for a method that is neither GET nor POST):
//!
//! - `POST` to **any path** (bourse is given `http://ADDR/bid`): a `BidRequest` (JSON, optionally
//!   `content-encoding: gzip`) answered with a `BidResponse` (200) or nothing (204); a body that
//!   is not a bid request gets 400.
//! - `GET /win`, `GET /bill`, `GET /loss`: notices, recorded with their query parameters.
//! - `GET /stats`: the counters as JSON.
//!
//! Every draw for a request comes from a random generator seeded by the configured `seed` and the
//! request's `id`, so the same requests give the same answers whatever their order or
//! concurrency, and a run is repeatable.

use arc_swap::ArcSwap;
use bourse_engine::openrtb::{
    Bid, BidRequest, BidResponse, DEFAULT_CURRENCY, Deal, Imp, MediaType, SeatBid, Text,
};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a "hanging" partner holds a request: far past any deadline, but finite so that
/// tests and load runs end. Shutting the partner down releases it at once.
pub const HANG: Duration = Duration::from_secs(30);

/// One simulated partner's behaviour. Every field but `name` has a default; unknown keys are
/// refused so that a typo in a scenario file does not silently fall back to a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBidderConfig {
    /// Name (also the default seat, and the prefix of bid, creative and campaign ids).
    pub name: String,
    /// Seed of every random draw; the same seed and requests give the same answers.
    #[serde(default)]
    pub seed: u64,
    /// Response time before the answer. Default: none.
    #[serde(default)]
    pub latency: Latency,
    /// A share of requests that get an extra delay on top of `latency`.
    #[serde(default)]
    pub tail: Option<Tail>,
    /// A share of requests never answered in any sensible time (held for [`HANG`], then 204).
    #[serde(default)]
    pub timeout_share: f64,
    /// Probability of bidding on each impression it can buy. Default 1.
    #[serde(default = "one")]
    pub bid_rate: f64,
    /// The partner's value for an impression, CPM in `currency`. Default: fixed 1.0.
    #[serde(default)]
    pub price: PriceDistribution,
    /// How a value becomes a bid. Default: truthful.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Media types it buys, in order of preference when an impression offers several.
    /// Default: all four.
    #[serde(default = "all_media")]
    pub media: Vec<MediaType>,
    /// Never bid under the impression's `bidfloor` (bid nothing instead). Default true.
    /// Deal bids always meet the deal's floor.
    #[serde(default = "yes")]
    pub respect_floor: bool,
    /// Currency of its bids. Default USD.
    #[serde(default = "usd")]
    pub currency: String,
    /// Exchange rates for reading floors in other currencies: units of `currency` one unit of
    /// the key is worth (`{ EUR = 1.08 }` for a USD partner). A floor in a currency with no rate
    /// here is taken at face value.
    #[serde(default)]
    pub rates: BTreeMap<String, f64>,
    /// Seat name; the partner's name when absent.
    #[serde(default)]
    pub seat: Option<String>,
    /// Advertiser domains on its bids; `NAME.example` when empty.
    #[serde(default)]
    pub adomain: Vec<String>,
    /// IAB content categories on its bids.
    #[serde(default)]
    pub cat: Vec<String>,
    /// Deals it buys: when an impression offers one, it bids on the deal at or above its floor.
    #[serde(default)]
    pub deal_ids: Vec<String>,
    /// Misbehaviour on demand; changeable at run time with [`SimBidderHandle::set_faults`].
    #[serde(default)]
    pub faults: Faults,
    /// How many notices the log keeps (the most recent ones); the counters count them all.
    #[serde(default = "notice_log_limit")]
    pub notice_log_limit: usize,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn usd() -> String {
    DEFAULT_CURRENCY.into()
}
fn all_media() -> Vec<MediaType> {
    MediaType::ALL.to_vec()
}
fn notice_log_limit() -> usize {
    100_000
}

impl SimBidderConfig {
    /// A truthful partner bidding 1.0 USD CPM on everything, answering at once.
    pub fn new(name: impl Into<String>) -> Self {
        SimBidderConfig {
            name: name.into(),
            seed: 0,
            latency: Latency::default(),
            tail: None,
            timeout_share: 0.0,
            bid_rate: one(),
            price: PriceDistribution::default(),
            behaviour: Behaviour::default(),
            media: all_media(),
            respect_floor: yes(),
            currency: usd(),
            rates: BTreeMap::new(),
            seat: None,
            adomain: Vec::new(),
            cat: Vec::new(),
            deal_ids: Vec::new(),
            faults: Faults::default(),
            notice_log_limit: notice_log_limit(),
        }
    }

    /// Checks what the types cannot: shares between 0 and 1, distributions with sensible
    /// parameters, a shading factor in (0, 1], a three-letter currency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        let mut shares = vec![
            ("bid_rate", self.bid_rate),
            ("timeout_share", self.timeout_share),
        ];
        if let Some(tail) = &self.tail {
            shares.push(("tail.share", tail.share));
            non_negative("tail.ms", tail.ms)?;
        }
        shares.extend(self.faults.shares());
        for (field, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(ConfigError::new(
                    field,
                    format!("must be between 0 and 1, got {share}"),
                ));
            }
        }
        self.latency.validate()?;
        self.price.validate("price")?;
        if let Behaviour::Shading { factor } = self.behaviour
            && !(factor > 0.0 && factor <= 1.0)
        {
            return Err(ConfigError::new(
                "behaviour.factor",
                format!("must be in (0, 1], got {factor}"),
            ));
        }
        if !is_currency(&self.currency) {
            return Err(ConfigError::new(
                "currency",
                format!("must be three upper-case letters, got `{}`", self.currency),
            ));
        }
        for (currency, rate) in &self.rates {
            if !(is_currency(currency) && rate.is_finite() && *rate > 0.0) {
                return Err(ConfigError::new(
                    "rates",
                    format!("`{currency} = {rate}` needs a currency code and a positive rate"),
                ));
            }
        }
        Ok(())
    }

    fn seat_name(&self) -> &str {
        self.seat.as_deref().unwrap_or(&self.name)
    }

    /// `amount` in `from` (USD when absent), in this partner's currency.
    fn to_own_currency(&self, amount: f64, from: Option<&str>) -> f64 {
        let from = from.unwrap_or(DEFAULT_CURRENCY);
        if from == self.currency {
            amount
        } else {
            amount * self.rates.get(from).copied().unwrap_or(1.0)
        }
    }
}

fn is_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn non_negative(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a finite number ≥ 0, got {value}"),
        ))
    }
}

fn positive(field: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a finite number > 0, got {value}"),
        ))
    }
}

fn ordered(field: &str, min: f64, max: f64) -> Result<(), ConfigError> {
    if min <= max {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("the minimum {min} exceeds the maximum {max}"),
        ))
    }
}

/// A simulated partner's configuration makes no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct ConfigError {
    /// The offending field, dotted (`faults.http_500`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Response time distribution, milliseconds (`{ kind = "fixed", ms = 10 }`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always the same.
    Fixed {
        /// Milliseconds.
        ms: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound.
        min_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Log-normal around a median, as real partners' latencies are.
    LogNormal {
        /// Median milliseconds.
        median_ms: f64,
        /// Shape: larger is a longer tail.
        sigma: f64,
    },
}

/// A uniform draw in `[min, max)`, or `min` when the range is empty.
fn uniform<R: Rng + ?Sized>(rng: &mut R, min: f64, max: f64) -> f64 {
    if max > min {
        rng.random_range(min..max)
    } else {
        min
    }
}

/// A log-normal draw with the given median; the median itself when the shape is invalid.
fn log_normal<R: Rng + ?Sized>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    LogNormal::new(median.max(1e-9).ln(), sigma.max(0.0)).map_or(median, |d| d.sample(rng))
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 0.0 }
    }
}

impl Latency {
    /// Draws one response time, milliseconds.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => uniform(rng, min_ms, max_ms),
            Latency::LogNormal { median_ms, sigma } => log_normal(rng, median_ms, sigma),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Latency::Fixed { ms } => non_negative("latency.ms", ms),
            Latency::Uniform { min_ms, max_ms } => {
                non_negative("latency.min_ms", min_ms)?;
                non_negative("latency.max_ms", max_ms)?;
                ordered("latency", min_ms, max_ms)
            }
            Latency::LogNormal { median_ms, sigma } => {
                positive("latency.median_ms", median_ms)?;
                non_negative("latency.sigma", sigma)
            }
        }
    }
}

/// A share of requests delayed by an extra amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tail {
    /// Share of requests, 0..1.
    pub share: f64,
    /// Extra milliseconds.
    pub ms: f64,
}

/// Distribution of a value, CPM (`{ kind = "uniform", min = 0.5, max = 3.0 }`).
///
/// `log_normal` reads either `{ median, sigma }` or the textbook `{ mu, sigma }` (the mean of
/// the logarithm; `median = e^mu`); it is kept, and written back, as a median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    deny_unknown_fields,
    try_from = "RawPriceDistribution"
)]
pub enum PriceDistribution {
    /// Always the same value.
    Fixed {
        /// CPM.
        value: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// Log-normal with the given median.
    LogNormal {
        /// Median CPM.
        median: f64,
        /// Shape: the standard deviation of the logarithm.
        sigma: f64,
    },
    /// Exponential with the given mean.
    Exponential {
        /// Mean CPM.
        mean: f64,
    },
}

/// What a price distribution reads as, before the two log-normal forms become one.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawPriceDistribution {
    Fixed {
        value: f64,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    LogNormal {
        median: Option<f64>,
        mu: Option<f64>,
        sigma: f64,
    },
    Exponential {
        mean: f64,
    },
}

impl TryFrom<RawPriceDistribution> for PriceDistribution {
    type Error = String;

    fn try_from(raw: RawPriceDistribution) -> Result<Self, String> {
        Ok(match raw {
            RawPriceDistribution::Fixed { value } => PriceDistribution::Fixed { value },
            RawPriceDistribution::Uniform { min, max } => PriceDistribution::Uniform { min, max },
            RawPriceDistribution::Exponential { mean } => PriceDistribution::Exponential { mean },
            RawPriceDistribution::LogNormal { median, mu, sigma } => {
                let median = match (median, mu) {
                    (Some(median), None) => median,
                    (None, Some(mu)) => mu.exp(),
                    _ => return Err("log_normal needs exactly one of `median` and `mu`".into()),
                };
                PriceDistribution::LogNormal { median, sigma }
            }
        })
    }
}

impl Default for PriceDistribution {
    fn default() -> Self {
        PriceDistribution::Fixed { value: 1.0 }
    }
}

impl PriceDistribution {
    /// Draws one value.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match *self {
            PriceDistribution::Fixed { value } => value,
            PriceDistribution::Uniform { min, max } => uniform(rng, min, max),
            PriceDistribution::LogNormal { median, sigma } => log_normal(rng, median, sigma),
            PriceDistribution::Exponential { mean } => {
                Exp::new(1.0 / mean.max(1e-9)).map_or(mean, |d| d.sample(rng))
            }
        }
    }

    /// Checks the parameters; `field` names the distribution in the error.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let at = |name: &str| format!("{field}.{name}");
        match *self {
            PriceDistribution::Fixed { value } => non_negative(&at("value"), value),
            PriceDistribution::Uniform { min, max } => {
                non_negative(&at("min"), min)?;
                non_negative(&at("max"), max)?;
                ordered(field, min, max)
            }
            PriceDistribution::LogNormal { median, sigma } => {
                positive(&at("median"), median)?;
                non_negative(&at("sigma"), sigma)
            }
            PriceDistribution::Exponential { mean } => positive(&at("mean"), mean),
        }
    }
}

/// How a value becomes a bid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Behaviour {
    /// Bid the value (the dominant strategy in second price).
    #[default]
    Truthful,
    /// Bid a fraction of the value (typical in first price).
    Shading {
        /// Fraction of the value bid, in (0, 1].
        factor: f64,
    },
}

/// Shares of requests answered badly, each drawn independently per request. When several are
/// drawn for one request the first in field order wins. A share above 1 acts as 1, below 0 as 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Answer HTTP 500.
    #[serde(default)]
    pub http_500: f64,
    /// Answer 200 with a body that is not JSON.
    #[serde(default)]
    pub garbage: f64,
    /// Send status and headers announcing a body (`content-length`), then hold the body back
    /// for [`HANG`].
    #[serde(default)]
    pub hang_after_headers: f64,
    /// Bid for an impression id the request does not have (when it would have bid at all).
    #[serde(default)]
    pub unknown_imp: f64,
    /// Answer 200 with an empty `seatbid`.
    #[serde(default)]
    pub empty_seatbid: f64,
}

impl Faults {
    fn shares(&self) -> [(&'static str, f64); 5] {
        [
            ("faults.http_500", self.http_500),
            ("faults.garbage", self.garbage),
            ("faults.hang_after_headers", self.hang_after_headers),
            ("faults.unknown_imp", self.unknown_imp),
            ("faults.empty_seatbid", self.empty_seatbid),
        ]
    }
}

/// The kind of a notice received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// `/win` (nurl).
    Win,
    /// `/bill` (burl).
    Bill,
    /// `/loss` (lurl).
    Loss,
}

/// One notice the partner received, with its query parameters decoded.
///
/// The URLs it hands out name the parameters `auction`, `bid`, `imp`, `seat`, `ad`, `price`,
/// `cur` (all three kinds) and `loss`, `min` (loss only), each carrying the matching
/// `${AUCTION_…}` macro; a parameter still holding `${…}` was not substituted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// Which URL was called.
    pub kind: NoticeKind,
    /// Query parameters.
    pub params: BTreeMap<String, String>,
}

impl Notice {
    /// A query parameter, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Parameters whose macro the sender left unsubstituted (`${…}` still in the value).
    pub fn unsubstituted(&self) -> Vec<&str> {
        self.params
            .iter()
            .filter(|(_, v)| v.contains("${"))
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Live counters of what the partner did; lock-free, read with [`SimStats::snapshot`].
#[derive(Debug, Default)]
pub struct SimStats {
    /// Bid requests received (bodies that parsed as one).
    pub requests: AtomicU64,
    /// Bodies that were not a bid request (answered 400).
    pub bad_requests: AtomicU64,
    /// Bids sent.
    pub bids: AtomicU64,
    /// Requests answered without a bid (204).
    pub no_bids: AtomicU64,
    /// Faults injected: HTTP 500s.
    pub http_500: AtomicU64,
    /// Faults injected: garbage bodies.
    pub garbage: AtomicU64,
    /// Faults injected: hangs after headers.
    pub hang_after_headers: AtomicU64,
    /// Requests never answered in time (`timeout_share`).
    pub timeouts: AtomicU64,
    /// Faults injected: answers bidding on unknown impressions.
    pub unknown_imp: AtomicU64,
    /// Faults injected: empty seatbid answers.
    pub empty_seatbid: AtomicU64,
    /// Notices received, all kinds.
    pub notices: AtomicU64,
    /// Win notices received.
    pub wins: AtomicU64,
    /// Billing notices received.
    pub bills: AtomicU64,
    /// Loss notices received.
    pub losses: AtomicU64,
}

/// The counters at one moment, as plain numbers; each field as in [`SimStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimStatsSnapshot {
    pub requests: u64,
    pub bad_requests: u64,
    pub bids: u64,
    pub no_bids: u64,
    pub http_500: u64,
    pub garbage: u64,
    pub hang_after_headers: u64,
    pub timeouts: u64,
    pub unknown_imp: u64,
    pub empty_seatbid: u64,
    pub notices: u64,
    pub wins: u64,
    pub bills: u64,
    pub losses: u64,
}

impl SimStats {
    /// Reads every counter (each atomically, not all at one instant).
    pub fn snapshot(&self) -> SimStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SimStatsSnapshot {
            requests: get(&self.requests),
            bad_requests: get(&self.bad_requests),
            bids: get(&self.bids),
            no_bids: get(&self.no_bids),
            http_500: get(&self.http_500),
            garbage: get(&self.garbage),
            hang_after_headers: get(&self.hang_after_headers),
            timeouts: get(&self.timeouts),
            unknown_imp: get(&self.unknown_imp),
            empty_seatbid: get(&self.empty_seatbid),
            notices: get(&self.notices),
            wins: get(&self.wins),
            bills: get(&self.bills),
            losses: get(&self.losses),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct State {
    config: SimBidderConfig,
    faults: ArcSwap<Faults>,
    stats: SimStats,
    notices: Mutex<VecDeque<Notice>>,
    notice_arrived: Notify,
    addr: SocketAddr,
    stop: CancellationToken,
}

/// A running simulated partner; dropping it stops the server.
pub struct SimBidderHandle {
    state: Arc<State>,
}

impl std::fmt::Debug for SimBidderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBidderHandle")
            .field("name", &self.state.config.name)
            .field("addr", &self.state.addr)
            .finish()
    }
}

impl SimBidderHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// The URL to configure in bourse for this partner (`http://ADDR/bid`).
    pub fn endpoint(&self) -> String {
        format!("http://{}/bid", self.state.addr)
    }

    /// The address its URLs name (bid endpoint and notices), without the port.
    pub fn endpoint_host(&self) -> String {
        self.state.addr.ip().to_string()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// The configuration it was started with (faults as they were at the start).
    pub fn config(&self) -> &SimBidderConfig {
        &self.state.config
    }

    /// Live counters.
    pub fn stats(&self) -> &SimStats {
        &self.state.stats
    }

    /// The notices received so far, oldest first (the most recent `notice_log_limit`).
    pub fn notices(&self) -> Vec<Notice> {
        self.state.notices.lock().iter().cloned().collect()
    }

    /// Waits until `count` notices have been received in all, or `timeout` passes, then returns
    /// the log. Notices are fired after the auction answers, so tests wait for them.
    pub async fn wait_for_notices(&self, count: usize, timeout: Duration) -> Vec<Notice> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.notice_arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.state.stats.notices.load(Ordering::Relaxed) >= count as u64 {
                break;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        self.notices()
    }

    /// The faults injected now.
    pub fn faults(&self) -> Faults {
        Faults::clone(&self.state.faults.load())
    }

    /// Changes the faults injected from the next request on.
    pub fn set_faults(&self, faults: Faults) {
        self.state.faults.store(Arc::new(faults));
    }

    /// Stops accepting connections, closes the open ones and releases every held request.
    pub fn shutdown(&self) {
        self.state.stop.cancel();
    }
}

impl Drop for SimBidderHandle {
    fn drop(&mut self) {
        self.state.stop.cancel();
    }
}

/// Starts simulated partners.
#[derive(Debug)]
pub struct SimBidder;

type ResponseBody =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

impl SimBidder {
    /// Checks the configuration, binds `addr` (port 0 for any free port) and serves HTTP/1.1
    /// and h2c (prior knowledge) until the handle is shut down or dropped. A configuration that
    /// does not validate is an `InvalidInput` error.
    pub async fn spawn(
        config: SimBidderConfig,
        addr: SocketAddr,
    ) -> std::io::Result<SimBidderHandle> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr).await?;
        let state = Arc::new(State {
            faults: ArcSwap::from_pointee(config.faults.clone()),
            config,
            stats: SimStats::default(),
            notices: Mutex::new(VecDeque::new()),
            notice_arrived: Notify::new(),
            addr: listener.local_addr()?,
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept(listener, state.clone()));
        Ok(SimBidderHandle { state })
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = tokio::select! {
            _ = state.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    tracing::debug!(%error, "simulated bidder accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let stop = state.stop.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(serve(&state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> http::Response<ResponseBody> {
    use futures_util::StreamExt;
    let body: Bytes = body.into();
    let stream = futures_util::stream::iter([Ok(Frame::data(body))]).boxed();
    let mut response = http::Response::new(StreamBody::new(stream));
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    response
}

fn hang_after_headers(stop: CancellationToken) -> http::Response<ResponseBody> {
    use futures_util::StreamExt;
    let stream = futures_util::stream::once(async move {
        tokio::select! {
            _ = tokio::time::sleep(HANG) => {}
            _ = stop.cancelled() => {}
        }
        Ok(Frame::data(Bytes::from_static(b"{}")))
    })
    .boxed();
    let mut response = http::Response::new(StreamBody::new(stream));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("2"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn serve(state: &State, req: http::Request<Incoming>) -> http::Response<ResponseBody> {
    match *req.method() {
        Method::GET => {}
        Method::POST => return bid_request(state, req).await,
        _ => return respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
    }
    let (kind, counter) = match req.uri().path() {
        "/win" => (NoticeKind::Win, &state.stats.wins),
        "/bill" => (NoticeKind::Bill, &state.stats.bills),
        "/loss" => (NoticeKind::Loss, &state.stats.losses),
        "/stats" => {
            let body = serde_json::to_vec(&state.stats.snapshot()).expect("serializes");
            return respond(StatusCode::OK, body);
        }
        _ => return respond(StatusCode::NOT_FOUND, Bytes::new()),
    };
    let params = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    {
        let mut log = state.notices.lock();
        if state.config.notice_log_limit > 0 {
            if log.len() >= state.config.notice_log_limit {
                log.pop_front();
            }
            log.push_back(Notice { kind, params });
        }
        // Counted under the lock so a waiter that sees the count also sees the notice.
        bump(counter);
        bump(&state.stats.notices);
    }
    state.notice_arrived.notify_waiters();
    respond(StatusCode::OK, Bytes::new())
}

async fn bid_request(state: &State, req: http::Request<Incoming>) -> http::Response<ResponseBody> {
    let gzipped = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let Ok(collected) = req.into_body().collect().await else {
        bump(&state.stats.bad_requests);
        return respond(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let raw = collected.to_bytes();
    let body = if gzipped {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .is_err()
        {
            bump(&state.stats.bad_requests);
            return respond(StatusCode::BAD_REQUEST, "bad gzip");
        }
        Bytes::from(out)
    } else {
        raw
    };
    let Ok(request) = serde_json::from_slice::<BidRequest>(&body) else {
        bump(&state.stats.bad_requests);
        return respond(StatusCode::BAD_REQUEST, "not an OpenRTB bid request");
    };
    bump(&state.stats.requests);
    answer(state, &request).await
}

/// FNV-1a, 64 bits: a hash that, unlike `DefaultHasher`, stays the same across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The seeded random source for one request: the same seed and request id draw the same
/// numbers, and seeds or ids that differ draw independent ones.
fn rng_for(seed: u64, request_id: &str) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&fnv1a(request_id.as_bytes()).to_le_bytes());
    key[16..24].copy_from_slice(&(request_id.len() as u64).to_le_bytes());
    key[24..].copy_from_slice(b"bourse-s");
    StdRng::from_seed(key)
}

async fn hold(stop: &CancellationToken, duration: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.cancelled() => {}
    }
}

async fn answer(state: &State, request: &BidRequest) -> http::Response<ResponseBody> {
    let config = &state.config;
    let faults = state.faults.load();
    let stats = &state.stats;
    let mut rng = rng_for(config.seed, &request.id);
    // Draw every fault every time, so that one fault's share does not shift the others' draws
    // (or the prices that follow) when it changes.
    let draws: [f64; 6] = std::array::from_fn(|_| rng.random::<f64>());
    if draws[0] < faults.http_500 {
        bump(&stats.http_500);
        return respond(StatusCode::INTERNAL_SERVER_ERROR, "simulated failure");
    }
    if draws[1] < faults.garbage {
        bump(&stats.garbage);
        return respond(StatusCode::OK, "{\"id\": \"garbage");
    }
    if draws[2] < faults.hang_after_headers {
        bump(&stats.hang_after_headers);
        return hang_after_headers(state.stop.clone());
    }
    if draws[3] < config.timeout_share {
        bump(&stats.timeouts);
        hold(&state.stop, HANG).await;
        return respond(StatusCode::NO_CONTENT, Bytes::new());
    }
    let delay = latency_ms(config, &mut rng);
    if delay > 0.0 {
        hold(&state.stop, Duration::from_secs_f64(delay / 1000.0)).await;
    }
    if draws[4] < faults.empty_seatbid {
        bump(&stats.empty_seatbid);
        let empty = BidResponse {
            id: request.id.clone(),
            ..BidResponse::default()
        };
        return respond(
            StatusCode::OK,
            serde_json::to_vec(&empty).expect("serializes"),
        );
    }
    let unknown_imp = draws[5] < faults.unknown_imp;
    let request_key = fnv1a(request.id.as_bytes());
    let mut bids = Vec::new();
    for imp in &request.imp {
        let id = format!("{}-{request_key:016x}-{}", config.name, bids.len());
        if let Some(mut bid) = bid_for(config, imp, &mut rng, &state.addr, id) {
            if unknown_imp {
                bid.impid = format!("unknown-{}", imp.id).into();
            }
            bids.push(bid);
        }
    }
    if bids.is_empty() {
        bump(&stats.no_bids);
        return respond(StatusCode::NO_CONTENT, Bytes::new());
    }
    if unknown_imp {
        bump(&stats.unknown_imp);
    }
    stats.bids.fetch_add(bids.len() as u64, Ordering::Relaxed);
    let response = BidResponse {
        id: request.id.clone(),
        seatbid: vec![SeatBid {
            bid: bids,
            seat: Some(config.seat_name().into()),
            ..SeatBid::default()
        }],
        cur: Some(config.currency.as_str().into()),
        ..BidResponse::default()
    };
    respond(
        StatusCode::OK,
        serde_json::to_vec(&response).expect("serializes"),
    )
}

fn latency_ms(config: &SimBidderConfig, rng: &mut StdRng) -> f64 {
    let base = config.latency.sample(rng);
    // Drawn whether or not a tail is configured, so adding one does not shift the prices.
    let tail_draw = rng.random::<f64>();
    let tail = match &config.tail {
        Some(tail) if tail_draw < tail.share => tail.ms,
        _ => 0.0,
    };
    (base + tail).max(0.0)
}

/// The media type this partner answers an impression with, in its order of preference.
fn media_for(config: &SimBidderConfig, imp: &Imp) -> Option<MediaType> {
    let offered = imp.media_types();
    config.media.iter().copied().find(|m| offered.contains(*m))
}

/// The first deal the impression offers that this partner buys.
fn deal_for<'a>(config: &SimBidderConfig, imp: &'a Imp) -> Option<&'a Deal> {
    imp.pmp
        .as_ref()?
        .deals
        .iter()
        .find(|d| config.deal_ids.iter().any(|id| *id == d.id))
}

/// A price rounded to 4 decimals, never below `floor`.
fn at_least(price: f64, floor: f64) -> f64 {
    let rounded = (price * 10_000.0).round() / 10_000.0;
    if rounded < floor {
        (floor * 10_000.0).ceil() / 10_000.0
    } else {
        rounded
    }
}

fn bid_for(
    config: &SimBidderConfig,
    imp: &Imp,
    rng: &mut StdRng,
    addr: &SocketAddr,
    id: String,
) -> Option<Bid> {
    let media = media_for(config, imp)?;
    // Draw both numbers whatever happens, so that one impression's outcome never shifts the next's.
    let (bids, value) = (
        rng.random::<f64>() < config.bid_rate,
        config.price.sample(rng),
    );
    if !bids {
        return None;
    }
    let mut price = match config.behaviour {
        Behaviour::Truthful => value,
        Behaviour::Shading { factor } => value * factor,
    };
    let deal = deal_for(config, imp);
    let floor = if let Some(deal) = deal {
        // A deal's terms are its floor: bid at least that, whatever the value.
        let floor =
            config.to_own_currency(deal.bidfloor.unwrap_or(0.0), deal.bidfloorcur.as_deref());
        price = price.max(floor);
        floor
    } else {
        let floor = config.to_own_currency(imp.bidfloor.unwrap_or(0.0), imp.bidfloorcur.as_deref());
        if config.respect_floor && price < floor {
            return None;
        }
        if config.respect_floor { floor } else { 0.0 }
    };
    if !(price.is_finite() && price > 0.0) {
        return None;
    }
    let price = at_least(price, floor);
    let (w, h) = size_for(imp, media);
    let notice = |kind: &str| {
        format!(
            "http://{addr}/{kind}?auction=${{AUCTION_ID}}&bid=${{AUCTION_BID_ID}}&imp=${{AUCTION_IMP_ID}}\
             &seat=${{AUCTION_SEAT_ID}}&ad=${{AUCTION_AD_ID}}&price=${{AUCTION_PRICE}}&cur=${{AUCTION_CURRENCY}}{}",
            if kind == "loss" {
                "&loss=${AUCTION_LOSS}&min=${AUCTION_MIN_TO_WIN}"
            } else {
                ""
            }
        )
    };
    let adomain: Vec<Text> = if config.adomain.is_empty() {
        vec![format!("{}.example", config.name).into()]
    } else {
        config.adomain.iter().map(|d| d.as_str().into()).collect()
    };
    Some(Bid {
        id: id.into(),
        impid: imp.id.clone(),
        price: Some(price),
        nurl: Some(notice("win")),
        burl: Some(notice("bill")),
        lurl: Some(notice("loss")),
        adm: Some(match media {
            MediaType::Native => native_markup(imp, &config.name, &adomain[0]),
            _ => markup(media, &config.name, &adomain[0], w, h),
        }),
        adid: Some(format!("{}-ad-{}", config.name, media.as_str()).into()),
        adomain,
        cid: Some(format!("{}-campaign", config.name).into()),
        crid: Some(format!("{}-creative-{}", config.name, media.as_str()).into()),
        cat: config.cat.iter().map(|c| c.as_str().into()).collect(),
        dealid: deal.map(|d| d.id.clone()),
        w,
        h,
        mtype: Some(i64::from(media.mtype())),
        ..Bid::default()
    })
}

fn size_for(imp: &Imp, media: MediaType) -> (Option<u32>, Option<u32>) {
    match media {
        MediaType::Banner => {
            let banner = imp.banner.as_ref();
            let format =
                banner.and_then(|b| b.format.iter().find(|f| f.w.is_some() && f.h.is_some()));
            match format {
                Some(f) => (f.w, f.h),
                None => (banner.and_then(|b| b.w), banner.and_then(|b| b.h)),
            }
        }
        MediaType::Video => (
            imp.video.as_ref().and_then(|v| v.w),
            imp.video.as_ref().and_then(|v| v.h),
        ),
        _ => (None, None),
    }
}

/// Plausible creative markup: an HTML banner, or a VAST 4.0 inline ad for video and audio
/// (native markup is [`native_markup`], which answers the impression's request).
fn markup(media: MediaType, name: &str, domain: &str, w: Option<u32>, h: Option<u32>) -> String {
    let (w, h) = (w.unwrap_or(300), h.unwrap_or(250));
    match media {
        MediaType::Banner => format!(
            "<div style=\"width:{w}px;height:{h}px;display:flex;align-items:center;justify-content:center;\
             background:#f4f1ea;font:14px sans-serif\"><a href=\"https://{domain}/landing\" target=\"_blank\" \
             rel=\"noopener\">{name}: an ad at ${{AUCTION_PRICE}} CPM</a></div>"
        ),
        MediaType::Video | MediaType::Audio => {
            let file = if media == MediaType::Video {
                format!(
                    "<MediaFile delivery=\"progressive\" type=\"video/mp4\" width=\"{w}\" height=\"{h}\">\
                     <![CDATA[https://{domain}/ad.mp4]]></MediaFile>"
                )
            } else {
                format!(
                    "<MediaFile delivery=\"progressive\" type=\"audio/mpeg\">\
                     <![CDATA[https://{domain}/ad.mp3]]></MediaFile>"
                )
            };
            format!(
                "<VAST version=\"4.0\"><Ad id=\"{name}\"><InLine><AdSystem>{name}</AdSystem>\
                 <AdServingId>{name}-${{AUCTION_ID}}</AdServingId><AdTitle>{name}</AdTitle>\
                 <Impression><![CDATA[https://{domain}/imp]]></Impression><Creatives><Creative>\
                 <UniversalAdId idRegistry=\"unknown\">{name}-creative</UniversalAdId><Linear>\
                 <Duration>00:00:15</Duration><MediaFiles>{file}</MediaFiles></Linear>\
                 </Creative></Creatives></InLine></Ad></VAST>"
            )
        }
        // Native answers the impression's own request: see `native_markup`.
        MediaType::Native => native_markup(&Imp::default(), name, domain),
    }
}
/// A Native 1.2 response answering every asset the impression's native request asks for (title
/// cut to its `len`, images at their requested or minimum size, data by type, video as VAST), in
/// the 1.2 form. A request that cannot be read (bourse never forwards one) gets a title, a main
/// image and a sponsor line under ids 1 to 3.
fn native_markup(imp: &Imp, name: &str, domain: &str) -> String {
    use bourse_engine::openrtb::native::{
        DataResponse, ImageResponse, Link, NativeRequest, NativeResponse, ResponseAsset,
        TitleResponse, VideoResponse, parse_native,
    };
    let request = imp
        .native
        .as_ref()
        .and_then(|n| n.request.as_deref())
        .and_then(|text| parse_native::<NativeRequest>(text).ok())
        .map(|(request, _)| request)
        .filter(|request| !request.assets.is_empty())
        .unwrap_or_else(|| NativeRequest {
            assets: serde_json::from_str(
                r#"[{"id":1,"title":{"len":90}},{"id":2,"img":{"type":3,"w":1200,"h":627}},
                    {"id":3,"data":{"type":1}}]"#,
            )
            .expect("the fallback assets are Native 1.2"),
            ..NativeRequest::default()
        });
    let assets = request
        .assets
        .iter()
        .map(|asked| {
            let mut answer = ResponseAsset {
                id: asked.id,
                ..ResponseAsset::default()
            };
            if let Some(title) = &asked.title {
                let text = format!("{name} presents: the product you were looking for");
                let len = title
                    .len
                    .and_then(|l| usize::try_from(l).ok())
                    .unwrap_or(90);
                answer.title = Some(TitleResponse {
                    text: text.chars().take(len.max(1)).collect(),
                    ..TitleResponse::default()
                });
            } else if let Some(img) = &asked.img {
                let (w, h) = match img.image_type {
                    Some(1) => (
                        img.w.or(img.wmin).unwrap_or(80),
                        img.h.or(img.hmin).unwrap_or(80),
                    ),
                    _ => (
                        img.w.or(img.wmin).unwrap_or(1200),
                        img.h.or(img.hmin).unwrap_or(627),
                    ),
                };
                answer.img = Some(ImageResponse {
                    url: format!("https://{domain}/img-{w}x{h}.png"),
                    w: Some(w),
                    h: Some(h),
                    ..ImageResponse::default()
                });
            } else if let Some(data) = &asked.data {
                let value = match data.data_type {
                    Some(1) => format!("Sponsored by {domain}"),
                    Some(3) => "4.5".to_owned(),
                    Some(6) | Some(7) => "9.99".to_owned(),
                    Some(12) => "Learn more".to_owned(),
                    _ => format!("{name}: a fine offer"),
                };
                let len = data.len.and_then(|l| usize::try_from(l).ok());
                answer.data = Some(DataResponse {
                    value: match len {
                        Some(len) => value.chars().take(len.max(1)).collect(),
                        None => value,
                    },
                    ..DataResponse::default()
                });
            } else if asked.video.is_some() {
                answer.video = Some(VideoResponse {
                    vasttag: markup(MediaType::Video, name, domain, None, None),
                    ..VideoResponse::default()
                });
            }
            answer
        })
        .collect();
    let response = NativeResponse {
        ver: Some("1.2".to_owned()),
        assets,
        link: Some(Link {
            url: format!("https://{domain}/landing"),
            ..Link::default()
        }),
        ..NativeResponse::default()
    };
    serde_json::to_string(&response).expect("a native response serializes")
}

#[cfg(test)]
mod tests;
