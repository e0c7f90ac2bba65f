//! A simulated demand partner: an HTTP server speaking OpenRTB 2.6 whose latency, bid rate,
//! prices, behaviour and faults are drawn from seeded distributions, and which records the win,
//! billing and loss notices it receives.

use arc_swap::ArcSwap;
use bourse_engine::openrtb::{Bid, BidRequest, BidResponse, Imp, MediaType, SeatBid};
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
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a "hanging" partner holds a request: far past any deadline, but finite so that
/// tests and load runs end.
const HANG: Duration = Duration::from_secs(30);

/// One simulated partner's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimBidderConfig {
    /// Name (also the default seat).
    pub name: String,
    /// Seed of every random draw; the same seed and requests give the same answers.
    #[serde(default)]
    pub seed: u64,
    /// Response time before the answer.
    #[serde(default)]
    pub latency: Latency,
    /// A share of requests that get an extra delay.
    #[serde(default)]
    pub tail: Option<Tail>,
    /// A share of requests never answered in any sensible time.
    #[serde(default)]
    pub timeout_share: f64,
    /// Probability of bidding on each impression it can buy.
    #[serde(default = "one")]
    pub bid_rate: f64,
    /// The partner's value for an impression, CPM.
    #[serde(default)]
    pub price: PriceDistribution,
    /// How a value becomes a bid.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Media types it buys.
    #[serde(default = "all_media")]
    pub media: Vec<MediaType>,
    /// Never bid under the impression's floor (bid nothing instead).
    #[serde(default = "yes")]
    pub respect_floor: bool,
    /// Currency of its bids.
    #[serde(default = "usd")]
    pub currency: String,
    /// Seat name; the partner's name when absent.
    #[serde(default)]
    pub seat: Option<String>,
    /// Advertiser domains on its bids.
    #[serde(default)]
    pub adomain: Vec<String>,
    /// IAB categories on its bids.
    #[serde(default)]
    pub cat: Vec<String>,
    /// Deals it buys: when an impression offers one, it bids on the deal at or above its floor.
    #[serde(default)]
    pub deal_ids: Vec<String>,
    /// Misbehaviour on demand.
    #[serde(default)]
    pub faults: Faults,
}

fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn usd() -> String {
    "USD".into()
}
fn all_media() -> Vec<MediaType> {
    MediaType::ALL.to_vec()
}

impl SimBidderConfig {
    /// A truthful partner bidding on everything at a fixed price, answering at once.
    pub fn new(name: impl Into<String>) -> Self {
        serde_json::from_value(serde_json::json!({ "name": name.into() }))
            .expect("defaults deserialize")
    }
}

/// Response time distribution, milliseconds.
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

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 0.0 }
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

/// Distribution of a partner's value for an impression, CPM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
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
        /// Shape.
        sigma: f64,
    },
    /// Exponential with the given mean.
    Exponential {
        /// Mean CPM.
        mean: f64,
    },
}

impl Default for PriceDistribution {
    fn default() -> Self {
        PriceDistribution::Fixed { value: 1.0 }
    }
}

impl PriceDistribution {
    /// Draws one value.
    pub fn sample(&self, rng: &mut StdRng) -> f64 {
        match *self {
            PriceDistribution::Fixed { value } => value,
            PriceDistribution::Uniform { min, max } => {
                if max > min {
                    rng.random_range(min..max)
                } else {
                    min
                }
            }
            PriceDistribution::LogNormal { median, sigma } => {
                LogNormal::new(median.max(1e-9).ln(), sigma.max(0.0))
                    .map_or(median, |d| d.sample(rng))
            }
            PriceDistribution::Exponential { mean } => {
                Exp::new(1.0 / mean.max(1e-9)).map_or(mean, |d| d.sample(rng))
            }
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
        /// Fraction of the value bid, 0..1.
        factor: f64,
    },
}

/// Shares of requests answered badly, each drawn independently per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Answer HTTP 500.
    #[serde(default)]
    pub http_500: f64,
    /// Answer 200 with a body that is not JSON.
    #[serde(default)]
    pub garbage: f64,
    /// Send status and headers announcing a body, then hold the body back.
    #[serde(default)]
    pub hang_after_headers: f64,
    /// Bid for an impression id the request does not have.
    #[serde(default)]
    pub unknown_imp: f64,
    /// Answer 200 with an empty `seatbid`.
    #[serde(default)]
    pub empty_seatbid: f64,
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// Which URL was called.
    pub kind: NoticeKind,
    /// Query parameters.
    pub params: BTreeMap<String, String>,
}

/// Counters of what the partner did.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Bid requests received.
    pub requests: AtomicU64,
    /// Bids sent.
    pub bids: AtomicU64,
    /// Requests answered without a bid.
    pub no_bids: AtomicU64,
    /// Faults injected, by kind.
    pub http_500: AtomicU64,
    /// Garbage bodies sent.
    pub garbage: AtomicU64,
    /// Hangs after headers.
    pub hang_after_headers: AtomicU64,
    /// Requests never answered in time.
    pub timeouts: AtomicU64,
    /// Bids for unknown impressions.
    pub unknown_imp: AtomicU64,
    /// Empty seatbid answers.
    pub empty_seatbid: AtomicU64,
    /// Notices received.
    pub notices: AtomicU64,
}

struct State {
    config: SimBidderConfig,
    faults: ArcSwap<Faults>,
    stats: SimStats,
    notices: Mutex<Vec<Notice>>,
    addr: SocketAddr,
}

/// A running simulated partner; dropping it stops the server.
pub struct SimBidderHandle {
    state: Arc<State>,
    stop: CancellationToken,
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

    /// The URL to configure in bourse for this partner.
    pub fn endpoint(&self) -> String {
        format!("http://{}/bid", self.state.addr)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// Live counters.
    pub fn stats(&self) -> &SimStats {
        &self.state.stats
    }

    /// Every notice received so far.
    pub fn notices(&self) -> Vec<Notice> {
        self.state.notices.lock().clone()
    }

    /// Changes the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.state.faults.store(Arc::new(faults));
    }

    /// Stops accepting connections.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}

impl Drop for SimBidderHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts simulated partners.
#[derive(Debug)]
pub struct SimBidder;

type ResponseBody =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

impl SimBidder {
    /// Binds `addr` (port 0 for any) and serves until the handle is dropped.
    pub async fn spawn(
        config: SimBidderConfig,
        addr: SocketAddr,
    ) -> std::io::Result<SimBidderHandle> {
        let listener = TcpListener::bind(addr).await?;
        let state = Arc::new(State {
            faults: ArcSwap::from_pointee(config.faults.clone()),
            config,
            stats: SimStats::default(),
            notices: Mutex::new(Vec::new()),
            addr: listener.local_addr()?,
        });
        let stop = CancellationToken::new();
        let (accept_state, accept_stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = accept_stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let _ = stream.set_nodelay(true);
                let (state, stop) = (accept_state.clone(), accept_stop.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(serve(&state, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(SimBidderHandle { state, stop })
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> http::Response<ResponseBody> {
    use futures_util::StreamExt;
    let body: Bytes = body.into();
    let stream = futures_util::stream::iter([Ok(Frame::data(body))]).boxed();
    let mut response = http::Response::new(StreamBody::new(stream));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn hang_after_headers() -> http::Response<ResponseBody> {
    use futures_util::StreamExt;
    let stream = futures_util::stream::once(async {
        tokio::time::sleep(HANG).await;
        Ok(Frame::data(Bytes::from_static(b"{}")))
    })
    .boxed();
    let mut response = http::Response::new(StreamBody::new(stream));
    response.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("2"),
    );
    response
}

async fn serve(state: &State, req: http::Request<Incoming>) -> http::Response<ResponseBody> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET {
        let kind = match path.as_str() {
            "/win" => NoticeKind::Win,
            "/bill" => NoticeKind::Bill,
            "/loss" => NoticeKind::Loss,
            _ => return respond(StatusCode::NOT_FOUND, Bytes::new()),
        };
        let params = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        state.stats.notices.fetch_add(1, Ordering::Relaxed);
        state.notices.lock().push(Notice { kind, params });
        return respond(StatusCode::OK, Bytes::new());
    }
    if req.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, Bytes::new());
    }
    let gzipped = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v == "gzip");
    let Ok(collected) = req.into_body().collect().await else {
        return respond(StatusCode::BAD_REQUEST, Bytes::new());
    };
    let raw = collected.to_bytes();
    let body = if gzipped {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return respond(StatusCode::BAD_REQUEST, "bad gzip");
        }
        Bytes::from(out)
    } else {
        raw
    };
    let Ok(request) = serde_json::from_slice::<BidRequest>(&body) else {
        return respond(StatusCode::BAD_REQUEST, "not an OpenRTB bid request");
    };
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    answer(state, &request).await
}

/// The seeded random source for one request: the same seed and request id draw the same numbers.
fn rng_for(seed: u64, request_id: &str) -> StdRng {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request_id.hash(&mut hasher);
    StdRng::seed_from_u64(seed ^ hasher.finish())
}

async fn answer(state: &State, request: &BidRequest) -> http::Response<ResponseBody> {
    let config = &state.config;
    let faults = state.faults.load();
    let stats = &state.stats;
    let mut rng = rng_for(config.seed, &request.id);
    // Draw every fault every time, so one fault's share does not shift the others' draws.
    let draws: [f64; 6] = std::array::from_fn(|_| rng.random::<f64>());
    if draws[0] < faults.http_500 {
        stats.http_500.fetch_add(1, Ordering::Relaxed);
        return respond(StatusCode::INTERNAL_SERVER_ERROR, "simulated failure");
    }
    if draws[1] < faults.garbage {
        stats.garbage.fetch_add(1, Ordering::Relaxed);
        return respond(StatusCode::OK, "{\"id\": \"garbage");
    }
    if draws[2] < faults.hang_after_headers {
        stats.hang_after_headers.fetch_add(1, Ordering::Relaxed);
        return hang_after_headers();
    }
    if draws[3] < config.timeout_share {
        stats.timeouts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(HANG).await;
        return respond(StatusCode::NO_CONTENT, Bytes::new());
    }
    let delay = latency_ms(config, &mut rng);
    if delay > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(delay / 1000.0)).await;
    }
    if draws[4] < faults.empty_seatbid {
        stats.empty_seatbid.fetch_add(1, Ordering::Relaxed);
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
    let seat = config.seat.clone().unwrap_or_else(|| config.name.clone());
    let mut bids = Vec::new();
    for imp in &request.imp {
        if let Some(mut bid) = bid_for(config, imp, &mut rng, &state.addr, bids.len()) {
            if unknown_imp {
                bid.impid = format!("unknown-{}", imp.id);
            }
            bids.push(bid);
        }
    }
    if unknown_imp && !bids.is_empty() {
        stats.unknown_imp.fetch_add(1, Ordering::Relaxed);
    }
    if bids.is_empty() {
        stats.no_bids.fetch_add(1, Ordering::Relaxed);
        return respond(StatusCode::NO_CONTENT, Bytes::new());
    }
    stats.bids.fetch_add(bids.len() as u64, Ordering::Relaxed);
    let response = BidResponse {
        id: request.id.clone(),
        seatbid: vec![SeatBid {
            bid: bids,
            seat: Some(seat),
            ..SeatBid::default()
        }],
        cur: Some(config.currency.clone()),
        ..BidResponse::default()
    };
    respond(
        StatusCode::OK,
        serde_json::to_vec(&response).expect("serializes"),
    )
}

fn latency_ms(config: &SimBidderConfig, rng: &mut StdRng) -> f64 {
    let base = match config.latency {
        Latency::Fixed { ms } => ms,
        Latency::Uniform { min_ms, max_ms } => {
            if max_ms > min_ms {
                rng.random_range(min_ms..max_ms)
            } else {
                min_ms
            }
        }
        Latency::LogNormal { median_ms, sigma } => {
            LogNormal::new(median_ms.max(1e-6).ln(), sigma.max(0.0))
                .map_or(median_ms, |d| d.sample(rng))
        }
    };
    let tail = match &config.tail {
        Some(tail) if rng.random::<f64>() < tail.share => tail.ms,
        _ => 0.0,
    };
    (base + tail).max(0.0)
}

/// The media type this partner answers an impression with, in its order of preference.
fn media_for(config: &SimBidderConfig, imp: &Imp) -> Option<MediaType> {
    let offered = imp.media_types();
    config.media.iter().copied().find(|m| offered.contains(*m))
}

fn bid_for(
    config: &SimBidderConfig,
    imp: &Imp,
    rng: &mut StdRng,
    addr: &SocketAddr,
    n: usize,
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
    let deal = imp
        .pmp
        .as_ref()
        .and_then(|pmp| pmp.deals.iter().find(|d| config.deal_ids.contains(&d.id)));
    if let Some(deal) = deal {
        price = price.max(deal.bidfloor.unwrap_or(0.0));
    } else if config.respect_floor && price < imp.bidfloor.unwrap_or(0.0) {
        return None;
    }
    if !(price.is_finite() && price > 0.0) {
        return None;
    }
    let (w, h) = size_for(imp, media);
    let id = format!("{}-{}-{n}", config.name, imp.id);
    let notice = |kind: &str| {
        format!(
            "http://{addr}/{kind}?auction=${{AUCTION_ID}}&bid=${{AUCTION_BID_ID}}&imp=${{AUCTION_IMP_ID}}&seat=${{AUCTION_SEAT_ID}}&ad=${{AUCTION_AD_ID}}&price=${{AUCTION_PRICE}}&cur=${{AUCTION_CURRENCY}}{}",
            if kind == "loss" {
                "&loss=${AUCTION_LOSS}&min=${AUCTION_MIN_TO_WIN}"
            } else {
                ""
            }
        )
    };
    let domain = config
        .adomain
        .first()
        .cloned()
        .unwrap_or_else(|| format!("{}.example", config.name));
    Some(Bid {
        id,
        impid: imp.id.clone(),
        price: Some((price * 10_000.0).round() / 10_000.0),
        nurl: Some(notice("win")),
        burl: Some(notice("bill")),
        lurl: Some(notice("loss")),
        adm: Some(markup(media, &config.name, &domain, w, h)),
        adid: Some(format!("{}-ad-{}", config.name, media.as_str())),
        adomain: vec![domain],
        cid: Some(format!("{}-campaign", config.name)),
        crid: Some(format!("{}-creative-{}", config.name, media.as_str())),
        cat: config.cat.clone(),
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

fn markup(media: MediaType, name: &str, domain: &str, w: Option<u32>, h: Option<u32>) -> String {
    let (w, h) = (w.unwrap_or(300), h.unwrap_or(250));
    match media {
        MediaType::Banner => format!(
            "<div style=\"width:{w}px;height:{h}px;display:flex;align-items:center;justify-content:center;\
             background:#f4f1ea;font:14px sans-serif\"><a href=\"https://{domain}/landing\" target=\"_blank\" \
             rel=\"noopener\">{name}: an ad at ${{AUCTION_PRICE}} CPM</a></div>"
        ),
        MediaType::Video | MediaType::Audio => format!(
            "<VAST version=\"4.0\"><Ad id=\"{name}\"><InLine><AdSystem>{name}</AdSystem><AdTitle>{name}</AdTitle>\
             <Impression><![CDATA[https://{domain}/imp]]></Impression><Creatives><Creative><Linear>\
             <Duration>00:00:15</Duration><MediaFiles><MediaFile delivery=\"progressive\" type=\"video/mp4\" \
             width=\"{w}\" height=\"{h}\"><![CDATA[https://{domain}/ad.mp4]]></MediaFile></MediaFiles></Linear>\
             </Creative></Creatives></InLine></Ad></VAST>"
        ),
        MediaType::Native => serde_json::json!({
            "native": {
                "ver": "1.2",
                "assets": [
                    {"id": 1, "title": {"text": format!("{name} presents")}},
                    {"id": 2, "img": {"url": format!("https://{domain}/img.png"), "w": 1200, "h": 627}},
                    {"id": 3, "data": {"value": format!("Sponsored by {domain}")}}
                ],
                "link": {"url": format!("https://{domain}/landing")}
            }
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_distributions_stay_in_range_and_repeat_with_a_seed() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let uniform = PriceDistribution::Uniform { min: 1.0, max: 2.0 };
        for _ in 0..1000 {
            let (x, y) = (uniform.sample(&mut a), uniform.sample(&mut b));
            assert_eq!(x, y);
            assert!((1.0..2.0).contains(&x));
        }
        let lognormal = PriceDistribution::LogNormal {
            median: 2.0,
            sigma: 0.5,
        };
        let mut draws: Vec<f64> = (0..10_001).map(|_| lognormal.sample(&mut a)).collect();
        draws.sort_by(f64::total_cmp);
        assert!((draws[5000] - 2.0).abs() < 0.1, "median {}", draws[5000]);
        let exp = PriceDistribution::Exponential { mean: 3.0 };
        let mean = (0..20_000).map(|_| exp.sample(&mut a)).sum::<f64>() / 20_000.0;
        assert!((mean - 3.0).abs() < 0.15, "mean {mean}");
    }

    #[test]
    fn configs_read_from_toml_like_json() {
        let config: SimBidderConfig = serde_json::from_value(serde_json::json!({
            "name": "x",
            "latency": {"kind": "log_normal", "median_ms": 20.0, "sigma": 0.4},
            "price": {"kind": "uniform", "min": 0.5, "max": 3.0},
            "behaviour": {"kind": "shading", "factor": 0.8},
            "faults": {"http_500": 0.01}
        }))
        .unwrap();
        assert_eq!(config.behaviour, Behaviour::Shading { factor: 0.8 });
        assert_eq!(config.faults.http_500, 0.01);
        assert!(
            serde_json::from_value::<SimBidderConfig>(serde_json::json!({"name": "x", "typo": 1}))
                .is_err()
        );
    }
}
