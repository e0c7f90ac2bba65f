//! The bidder adapter contract, in the spirit of Prebid Server's adapters.
//!
//! An adapter turns the auction's request into the HTTP requests one demand partner expects
//! ([`Bidder::make_requests`]) and turns that partner's HTTP responses into typed bids
//! ([`Bidder::make_bids`]). Adapters never do I/O: the engine sends the requests over pooled
//! connections, enforces deadlines and counts failures, so an adapter is testable with fixtures.

use crate::bidder_params::{BidderParams, Template, body_without_template};
use crate::openrtb::splice::{Changed, Received, write_spliced};
use crate::openrtb::{Bid, BidRequest, MediaType, MediaTypes, Text};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One demand partner as configured (`[[plugins.exchange.bidders]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidderSpec {
    /// Unique name; also the metric label and the default seat.
    pub name: String,
    /// Adapter that speaks this partner's protocol (see `bourse-bidders`' registry).
    #[serde(default = "default_adapter")]
    pub adapter: String,
    /// Where bid requests go.
    pub endpoint: String,
    /// The longest we wait for this partner, in milliseconds (the auction's deadline may be shorter).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Requests per second sent at most; 0 means no cap.
    #[serde(default)]
    pub qps: u32,
    /// Whether to gzip request bodies for this partner.
    #[serde(default)]
    pub gzip: bool,
    /// Media types this partner buys.
    #[serde(default = "default_media")]
    pub media: Vec<MediaType>,
    /// Multiplier applied to this partner's bid prices before the auction ranks them.
    #[serde(default = "default_adjustment")]
    pub adjustment: f64,
    /// Whether the partner is asked at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Speak HTTP/2 with prior knowledge (h2c) or over TLS ALPN instead of HTTP/1.1.
    #[serde(default)]
    pub http2: bool,
    /// Idle keep-alive connections kept open to this partner.
    #[serde(default = "default_pool")]
    pub max_idle_connections: usize,
    /// A PEM file of certificate authorities trusted for this partner's https endpoint and
    /// notice URLs besides the bundled web PKI roots (a partner behind a private CA), relative
    /// to the config file.
    /// Read again at every config apply, so a renewed file takes effect with the next reload.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Extra headers sent with every request (for example an API key).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Hosts (names or addresses) this partner's notice URLs may name although they are not
    /// public: a partner inside our own network. Any other loopback, private or link-local
    /// address is refused.
    #[serde(default)]
    pub notice_allowed_hosts: Vec<String>,
    /// Adapter-specific parameters.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

fn default_adapter() -> String {
    "openrtb".to_owned()
}
fn default_timeout_ms() -> u64 {
    200
}
fn default_media() -> Vec<MediaType> {
    MediaType::ALL.to_vec()
}
fn default_adjustment() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_pool() -> usize {
    64
}

impl BidderSpec {
    /// A spec with defaults for everything but name and endpoint.
    pub fn new(name: impl Into<String>, endpoint: impl Into<String>) -> Self {
        BidderSpec {
            name: name.into(),
            adapter: default_adapter(),
            endpoint: endpoint.into(),
            timeout_ms: default_timeout_ms(),
            qps: 0,
            gzip: false,
            media: default_media(),
            adjustment: default_adjustment(),
            enabled: true,
            http2: false,
            max_idle_connections: default_pool(),
            ca_file: None,
            headers: BTreeMap::new(),
            notice_allowed_hosts: Vec::new(),
            params: serde_json::Map::new(),
        }
    }

    /// The media types this partner buys, as a set.
    pub fn media_types(&self) -> MediaTypes {
        self.media.iter().copied().collect()
    }
}

/// One HTTP request to a partner, built once per auction and sent as is.
#[derive(Debug, Clone, PartialEq)]
pub struct BidderRequest {
    /// HTTP method, nearly always POST.
    pub method: http::Method,
    /// Full URL.
    pub uri: String,
    /// Headers beyond the ones the engine adds (content-type, and content-encoding for gzip).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Body bytes (uncompressed; the engine gzips when the partner asks for it).
    pub body: Bytes,
    /// Ids of the request's impressions this HTTP request offers.
    pub imp_ids: Vec<Text>,
}

/// The HTTP requests an adapter built for one auction, and what it could not offer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests {
    /// Requests to send.
    pub requests: Vec<BidderRequest>,
    /// Problems that kept part (or all) of the auction from this partner.
    pub errors: Vec<AdapterError>,
}

impl Requests {
    /// One request and no problem.
    pub fn one(request: BidderRequest) -> Self {
        Requests {
            requests: vec![request],
            errors: Vec::new(),
        }
    }

    /// Nothing to send, for this reason.
    pub fn failed(error: AdapterError) -> Self {
        Requests {
            requests: Vec::new(),
            errors: vec![error],
        }
    }
}

/// A partner's HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct BidderResponse {
    /// HTTP status.
    pub status: http::StatusCode,
    /// Body bytes (already gunzipped).
    pub body: Bytes,
}

/// A bid with the media type it fills and the seat that placed it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedBid {
    /// The bid as the partner sent it (after translation into OpenRTB terms).
    pub bid: Bid,
    /// What the bid's markup is.
    pub media_type: MediaType,
    /// Buyer seat, when the partner names one.
    pub seat: Option<Text>,
}

/// The bids from one partner response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BidderBids {
    /// Currency of every price in `bids` (OpenRTB default USD when `None`).
    pub currency: Option<Text>,
    /// The bids.
    pub bids: Vec<TypedBid>,
    /// Bids the adapter had to drop (for example an unknown markup type), with the reason.
    pub errors: Vec<AdapterError>,
}

/// What went wrong inside an adapter, and whose fault it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterError {
    /// The auction's request cannot be expressed for this partner (for example missing params).
    #[error("bad input: {0}")]
    BadInput(String),
    /// The partner answered with something that is not a valid response.
    #[error("bad server response: {0}")]
    BadServerResponse(String),
    /// The partner answered with an HTTP error status.
    #[error("bidder returned HTTP {0}")]
    Status(u16),
}

impl AdapterError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AdapterError::BadInput(_) => "bad_input",
            AdapterError::BadServerResponse(_) => "bad_response",
            AdapterError::Status(_) => "http_status",
        }
    }
}

/// The outbound view of one auction's request, shared by every adapter in that auction.
///
/// The engine has already set what all partners see (our supply-chain node, `tmax`, floors in
/// the auction currency). Adapters ask for the request restricted to the media types they buy;
/// each restriction is built at most once per auction, and so is each plain OpenRTB body.
/// When the request carries Prebid bidder params, each partner's body carries only its own
/// ([`Outbound::bidder_body`]).
pub struct Outbound<'a> {
    request: &'a BidRequest,
    offered: MediaTypes,
    restricted: RefCell<Vec<(MediaTypes, Arc<BidRequest>)>>,
    bodies: RefCell<Vec<(MediaTypes, u64, Bytes)>>,
    params: OnceCell<Option<BidderParams>>,
    templates: RefCell<Vec<(MediaTypes, u64, Option<Template>)>>,
    bidder_bodies: RefCell<Vec<BidderBody>>,
    /// The request's members as they arrived and what the exchange changed since: plain
    /// bodies are spliced from them rather than written whole.
    splice: Option<(&'a Received<'a>, Changed)>,
}

/// One partner body with Prebid params spliced in: media set, `tmax`, the code the partner was
/// addressed by (`None`: not addressed) and the bytes.
type BidderBody = (MediaTypes, u64, Option<String>, Bytes);

impl fmt::Debug for Outbound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("id", &self.request.id)
            .finish()
    }
}

impl<'a> Outbound<'a> {
    /// Wraps the auction's outbound request.
    pub fn new(request: &'a BidRequest) -> Self {
        Outbound {
            offered: request.media_types(),
            request,
            restricted: RefCell::default(),
            bodies: RefCell::default(),
            params: OnceCell::new(),
            templates: RefCell::default(),
            bidder_bodies: RefCell::default(),
            splice: None,
        }
    }

    /// Splices plain bodies from the members `received` (the request's JSON as it arrived),
    /// writing from the model only those `changed` since. Every change to the request after it
    /// was read must be in `changed`; debug builds check each body against the whole request.
    pub fn spliced_from(mut self, received: &'a Received<'a>, changed: Changed) -> Self {
        self.splice = Some((received, changed));
        self
    }

    /// The request's Prebid bidder params, split once per auction; `None` for a request
    /// without `imp.ext.prebid.bidder`.
    pub fn bidder_params(&self) -> Option<&BidderParams> {
        self.params
            .get_or_init(|| BidderParams::of(self.request))
            .as_ref()
    }

    /// Wraps the auction's outbound request whose Prebid bidder params the caller has already
    /// split ([`BidderParams::of`]), so they are not split twice.
    pub fn with_bidder_params(request: &'a BidRequest, params: Option<BidderParams>) -> Self {
        let outbound = Outbound::new(request);
        // A fresh cell: it cannot be full already.
        let _ = outbound.params.set(params);
        outbound
    }

    /// The split Prebid bidder params, handed over once every partner's body is built.
    pub fn into_bidder_params(self) -> Option<BidderParams> {
        self.params.into_inner().flatten()
    }

    /// The code under which the request addresses the partner named `bidder` (its name or an
    /// alias of it, in `imp.ext.prebid.bidder`), if it does.
    pub fn prebid_code(&self, bidder: &str) -> Option<&str> {
        self.bidder_params()?.code_for(bidder)
    }

    /// [`Self::openrtb_body`] for the partner named `bidder`: the same shared bytes unless the
    /// request carries Prebid bidder params, in which case each impression's `ext` holds this
    /// partner's params alone under `bidder` (and no other partner's). Partners addressed the
    /// same way (all those not addressed, say) share one body.
    pub fn bidder_body(
        &self,
        media: MediaTypes,
        tmax_ms: u64,
        bidder: &str,
    ) -> Option<(Bytes, Vec<Text>)> {
        let Some(params) = self.bidder_params() else {
            return self.openrtb_body(media, tmax_ms);
        };
        let media = self.effective(media);
        let req = self.restricted(media)?;
        let imp_ids = req.imp.iter().map(|i| i.id.clone()).collect();
        let code = params.code_for(bidder);
        if let Some((.., body)) = self
            .bidder_bodies
            .borrow()
            .iter()
            .find(|(m, t, c, _)| *m == media && *t == tmax_ms && c.as_deref() == code)
        {
            return Some((body.clone(), imp_ids));
        }
        let mut templates = self.templates.borrow_mut();
        let template = match templates
            .iter()
            .position(|(m, t, _)| *m == media && *t == tmax_ms)
        {
            Some(i) => &templates[i].2,
            None => {
                let built = if req.tmax == Some(tmax_ms as i64) {
                    Template::build(&req, params)
                } else {
                    let mut with_tmax = (*req).clone();
                    with_tmax.tmax = Some(tmax_ms as i64);
                    Template::build(&with_tmax, params)
                };
                templates.push((media, tmax_ms, built));
                &templates.last().expect("just pushed").2
            }
        };
        let body = match template {
            Some(template) => template.body_for(params, code),
            None => {
                let mut with_tmax = (*req).clone();
                with_tmax.tmax = Some(tmax_ms as i64);
                body_without_template(&with_tmax, params, code)
            }
        };
        let body = Bytes::from(body);
        self.bidder_bodies.borrow_mut().push((
            media,
            tmax_ms,
            code.map(str::to_owned),
            body.clone(),
        ));
        Some((body, imp_ids))
    }

    /// The whole outbound request.
    pub fn request(&self) -> &'a BidRequest {
        self.request
    }

    /// What a restriction to `media` really depends on: the media types the request offers
    /// among them. Partners with different media lists but the same overlap share one copy
    /// and one body.
    fn effective(&self, media: MediaTypes) -> MediaTypes {
        media.intersection(self.offered)
    }

    /// The request with only impressions (and media objects) in `media`; `None` if none remain.
    /// When every impression already fits, this is the request itself, not a copy.
    pub fn restricted(&self, media: MediaTypes) -> Option<SharedRequest<'a>> {
        let media = self.effective(media);
        let fits = self
            .request
            .imp
            .iter()
            .all(|imp| imp.media_types().is_subset_of(media));
        if fits {
            return (!self.request.imp.is_empty()).then_some(SharedRequest::Whole(self.request));
        }
        if let Some((_, req)) = self.restricted.borrow().iter().find(|(m, _)| *m == media) {
            return Some(SharedRequest::Restricted(req.clone()));
        }
        let mut req = self.request.clone();
        req.imp.retain_mut(|imp| {
            imp.retain_media(media);
            !imp.media_types().is_empty()
        });
        if req.imp.is_empty() {
            return None;
        }
        let req = Arc::new(req);
        self.restricted.borrow_mut().push((media, req.clone()));
        Some(SharedRequest::Restricted(req))
    }

    /// The plain OpenRTB 2.6 JSON body for `media` with `tmax` set, built once per pair. When
    /// `tmax` is already the request's (the exchange sets it to the bidders' budget), nothing
    /// is copied before serializing.
    pub fn openrtb_body(&self, media: MediaTypes, tmax_ms: u64) -> Option<(Bytes, Vec<Text>)> {
        let media = self.effective(media);
        let req = self.restricted(media)?;
        let imp_ids = req.imp.iter().map(|i| i.id.clone()).collect();
        if let Some((_, _, body)) = self
            .bodies
            .borrow()
            .iter()
            .find(|(m, t, _)| *m == media && *t == tmax_ms)
        {
            return Some((body.clone(), imp_ids));
        }
        // A copy restricted to some media types has fewer impressions than arrived.
        let restricted = matches!(req, SharedRequest::Restricted(_));
        let with_tmax;
        let req: &BidRequest = if req.tmax == Some(tmax_ms as i64) {
            &req
        } else {
            with_tmax = BidRequest {
                tmax: Some(tmax_ms as i64),
                ..(*req).clone()
            };
            &with_tmax
        };
        let body = match self.splice {
            Some((received, mut changed)) => {
                changed.mark("tmax");
                if restricted {
                    changed.mark("imp");
                }
                let body = write_spliced(req, received, changed);
                #[cfg(debug_assertions)]
                crate::openrtb::splice::check_spliced(&body, req);
                body
            }
            None => crate::openrtb::to_json(req),
        };
        let body = Bytes::from(body);
        self.bodies
            .borrow_mut()
            .push((media, tmax_ms, body.clone()));
        Some((body, imp_ids))
    }
}

/// The outbound request, or a copy restricted to some media types, shared within one auction.
#[derive(Debug, Clone)]
pub enum SharedRequest<'a> {
    /// The whole outbound request, borrowed.
    Whole(&'a BidRequest),
    /// A restricted copy, built once per media set.
    Restricted(Arc<BidRequest>),
}

impl std::ops::Deref for SharedRequest<'_> {
    type Target = BidRequest;

    fn deref(&self) -> &BidRequest {
        match self {
            SharedRequest::Whole(req) => req,
            SharedRequest::Restricted(req) => req,
        }
    }
}

/// What an adapter knows about the call it is building.
#[derive(Debug)]
pub struct CallInfo<'a> {
    /// This partner's configuration.
    pub spec: &'a BidderSpec,
    /// Milliseconds the partner has to answer (what it should put in its own `tmax` reasoning).
    pub tmax_ms: u64,
}

/// A demand partner's protocol.
pub trait Bidder: Send + Sync + 'static {
    /// Builds the HTTP requests for this auction, and says what it could not offer (for
    /// example impressions skipped for missing params) while still sending the rest. No
    /// request means the partner is not asked.
    fn make_requests(&self, outbound: &Outbound<'_>, call: &CallInfo<'_>) -> Requests;

    /// Turns one HTTP response into bids; `Ok(None)` is a no-bid. `auction` is the outbound
    /// request the call was built from (its id and impressions, for checking the answer).
    fn make_bids(
        &self,
        auction: &BidRequest,
        request: &BidderRequest,
        response: &BidderResponse,
    ) -> Result<Option<BidderBids>, AdapterError>;
}

/// Builds an adapter from a partner's configuration, or says what is wrong with it.
pub type AdapterFactory = fn(&BidderSpec) -> Result<Arc<dyn Bidder>, String>;

/// The adapters the exchange can use, by name.
#[derive(Clone, Default)]
pub struct AdapterRegistry {
    factories: BTreeMap<&'static str, AdapterFactory>,
}

impl fmt::Debug for AdapterRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl AdapterRegistry {
    /// Adds an adapter under `name`.
    pub fn register(mut self, name: &'static str, factory: AdapterFactory) -> Self {
        self.factories.insert(name, factory);
        self
    }

    /// Builds the adapter a partner's spec names.
    pub fn build(&self, spec: &BidderSpec) -> Result<Arc<dyn Bidder>, String> {
        match self.factories.get(spec.adapter.as_str()) {
            Some(factory) => factory(spec),
            None => Err(format!(
                "unknown adapter `{}` (known: {})",
                spec.adapter,
                self.names().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Names of every registered adapter.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partners_with_the_same_overlap_share_one_body() {
        let request: BidRequest = serde_json::from_str(
            r#"{"id":"r","tmax":200,"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#,
        )
        .unwrap();
        let outbound = Outbound::new(&request);
        let banner = MediaTypes::NONE.with(MediaType::Banner);
        let banner_video = banner.with(MediaType::Video);
        let (a, _) = outbound.openrtb_body(banner, 200).unwrap();
        let (b, _) = outbound.openrtb_body(banner_video, 200).unwrap();
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "one serialization for both partners"
        );
        assert!(matches!(
            outbound.restricted(banner_video),
            Some(SharedRequest::Whole(_))
        ));
        assert!(
            outbound
                .openrtb_body(MediaTypes::NONE.with(MediaType::Audio), 200)
                .is_none()
        );
        let (c, _) = outbound.openrtb_body(banner, 150).unwrap();
        assert!(String::from_utf8_lossy(&c).contains("\"tmax\":150"));
    }
}
