//! Publisher ad tags: `GET /tag.js`, `POST /ad` (one auction for every slot on a page, the same
//! auction as `/openrtb2/auction`), and the beacons the rendered ads fire: `/beacon/imp`
//! (billing, exactly once), `/beacon/view` (viewability) and `/click` (a signed redirect).

use super::run::now_secs;
use super::{Exchange, no_content};
use crate::ledger::LedgerEntry;
use crate::notice::{NoticeKind, Sealed, TokenError, WinToken};
use crate::openrtb::{BidRequest, BidResponse};
use bourse_floors::{AuctionType, Decision, FloorKey, Observation, Segment, TopBids};
use bourse_kernel::{
    Asset, ClientAddr, EmbeddedAssets, Request, Response, json_response, read_body,
};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;
use tokio::time::Instant;

/// The tag, embedded in the binary and served by exact name only. Short enough a cache life
/// that a new version reaches pages within minutes; the ETag makes revalidation a 304.
static TAG_ASSETS: LazyLock<EmbeddedAssets> = LazyLock::new(|| {
    EmbeddedAssets::new(
        &[Asset {
            name: "tag.js",
            bytes: include_bytes!("../../assets/tag.js"),
            content_type: "application/javascript; charset=utf-8",
        }],
        "public, max-age=300",
    )
});

/// Most slots one `/ad` call may ask for.
const MAX_SLOTS: usize = 20;
/// Largest `/ad` body accepted.
const MAX_AD_BODY: usize = 64 * 1024;

/// What the tag sends to `/ad`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdRequest {
    page: String,
    #[serde(default, rename = "ref")]
    referrer: Option<String>,
    slots: Vec<SlotRequest>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    consent: Option<ConsentSignal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotRequest {
    id: String,
    placement: String,
    #[serde(default)]
    sizes: Vec<[u16; 2]>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentSignal {
    /// The user refused (or the browser sent Global Privacy Control).
    #[serde(default)]
    denied: bool,
}

/// What `/ad` answers: one entry per filled slot, and why the others are empty.
#[derive(Debug, Serialize)]
struct AdAnswer {
    slots: Vec<SlotAd>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<SkippedSlot>,
}

#[derive(Debug, Serialize)]
struct SlotAd {
    id: String,
    w: u16,
    h: u16,
    /// A complete HTML document for the sandboxed iframe's `srcdoc`.
    html: String,
    /// Impression beacon: fire once the ad has rendered.
    imp: String,
    /// Viewability beacon: fire once the ad was at least half in view for a second.
    view: String,
}

#[derive(Debug, Serialize)]
struct SkippedSlot {
    id: String,
    reason: &'static str,
}

/// What a beacon is for. The order is that of `metrics::BEACON_OUTCOMES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BeaconKind {
    /// The ad rendered: bill it.
    Impression,
    /// The ad was viewable.
    View,
    /// The user clicked through to `target`.
    Click,
}

impl BeaconKind {
    fn as_str(self) -> &'static str {
        match self {
            BeaconKind::Impression => "imp",
            BeaconKind::View => "view",
            BeaconKind::Click => "click",
        }
    }
}

/// Everything a beacon needs, signed into its URL so any node can honour it and nobody can
/// change the price, the placement or a click's destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeaconToken {
    /// What the beacon is for.
    pub kind: BeaconKind,
    /// Our auction (bid request) id.
    pub auction: String,
    /// Impression id within the auction.
    pub imp: String,
    /// Publisher id from config.
    pub publisher: String,
    /// Placement id from config.
    pub placement: String,
    /// Winning bidder's name from config.
    pub bidder: String,
    /// Deal id of the winning bid, if any.
    pub deal: Option<String>,
    /// Clearing price, CPM in `currency` (gross: what the buyer pays).
    pub cpm: f64,
    /// Currency of `cpm`.
    pub currency: String,
    /// What billing the winning partner needs (impressions only). Held here, inside the
    /// beacon's own signature, never as a notice token of its own: a page sees this URL, and
    /// nothing in it can be presented at `/notice/bill`.
    pub bill: Option<WinToken>,
    /// The first-party user id, when the user consented.
    pub uid: Option<String>,
    /// Where a click goes: a landing page taken from the winning ad's markup.
    pub target: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

impl Sealed for BeaconToken {
    const DOMAIN: &'static [u8] = b"B";
}

fn with_cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

fn bad_request(code: &str, message: impl Into<String>) -> Response {
    with_cors(json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": code, "message": message.into()}),
    ))
}

/// Host of an http(s) URL, lower-cased.
fn page_host(page: &str) -> Option<(url::Url, String)> {
    let url = url::Url::parse(page).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    Some((url, host))
}

/// Whether `host` is `domain` or one of its subdomains.
fn on_domain(host: &str, domain: &str) -> bool {
    let domain = domain.to_ascii_lowercase();
    host == domain
        || host
            .strip_suffix(domain.as_str())
            .is_some_and(|rest| rest.ends_with('.'))
}

/// OpenRTB device type (list 5.21) from a user agent: 4 phone, 5 tablet, 2 personal computer.
fn device_type_of(ua: &str) -> i64 {
    if ua.contains("iPad") || ua.contains("Tablet") {
        5
    } else if ua.contains("Mobi") || ua.contains("iPhone") || ua.contains("Android") {
        4
    } else {
        2
    }
}

fn valid_uid(uid: &str) -> bool {
    (8..=64).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The client's IP, as the kernel established it (the TCP peer, or behind a trusted proxy the
/// address it forwarded).
fn client_ip(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ClientAddr>()
        .map(|client| client.0.to_string())
}

/// The value of query parameter `name` in one of our own notice URLs.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// Absolute http(s) `href` targets in the markup, in order, without duplicates.
fn link_targets(markup: &str) -> Vec<String> {
    let mut targets: Vec<String> = Vec::new();
    let mut rest = markup;
    while let Some(at) = rest.find("href=") {
        rest = &rest[at + 5..];
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        let Some(end) = rest[1..].find(quote) else {
            break;
        };
        let target = html_unescape(&rest[1..1 + end]);
        if (target.starts_with("http://") || target.starts_with("https://"))
            && !targets.contains(&target)
        {
            targets.push(target);
        }
        rest = &rest[1 + end..];
    }
    targets
}

fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn html_escape_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Points every listed target in `markup` at its click URL instead.
fn route_clicks(markup: &str, clicks: &[(String, String)]) -> String {
    let mut out = markup.to_owned();
    for (target, click) in clicks {
        for quote in ['"', '\''] {
            for written in [target.clone(), html_escape_attr(target)] {
                let from = format!("href={quote}{written}{quote}");
                let to = format!("href={quote}{}{quote}", html_escape_attr(click));
                out = out.replace(&from, &to);
            }
        }
    }
    out
}

/// The iframe document around the winning markup: no margins, links open in the top window
/// (the sandbox allows that only on a user's click).
fn ad_document(markup: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_top\">\
         <style>html,body{{margin:0;padding:0;overflow:hidden}}</style></head><body>{markup}</body></html>"
    )
}

impl Exchange {
    fn slot_outcome(&self, outcome: &'static str) {
        self.shared.metrics.tag_slots.inc(outcome);
    }

    fn beacon_outcome(&self, kind: BeaconKind, outcome: &'static str) {
        self.shared.metrics.beacons[kind as usize].inc(outcome);
    }

    /// `GET /tag.js`: the tag, cacheable, revalidated by its ETag.
    pub(crate) fn tag_js(&self, req: &Request) -> Response {
        with_cors(TAG_ASSETS.serve("tag.js", req.headers().get(header::IF_NONE_MATCH)))
    }

    /// `POST /ad`: one auction for every slot on the page.
    pub(crate) async fn ad(&self, req: Request) -> Response {
        let started = Instant::now();
        match *req.method() {
            http::Method::POST => {}
            http::Method::OPTIONS => {
                let mut response = with_cors(no_content());
                let headers = response.headers_mut();
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("POST"),
                );
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("content-type"),
                );
                return response;
            }
            _ => {
                return with_cors(json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &serde_json::json!({"error": "method_not_allowed", "message": "use POST"}),
                ));
            }
        }
        let ip = client_ip(&req);
        let ua = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (parts, body) = req.into_parts();
        let bytes = match read_body(&parts.headers, body, MAX_AD_BODY).await {
            Ok(bytes) => bytes,
            Err(err) => return bad_request(err.code(), err.to_string()),
        };
        let ad: AdRequest = match serde_json::from_slice(&bytes) {
            Ok(ad) => ad,
            Err(_) => {
                let rejection =
                    crate::validate::Rejection::from_parse_error_as::<AdRequest>(&bytes);
                return bad_request("bad_json", rejection.to_string());
            }
        };
        if ad.slots.is_empty() || ad.slots.len() > MAX_SLOTS {
            return bad_request("slots", format!("send 1 to {MAX_SLOTS} slots"));
        }
        let Some((page_url, host)) = page_host(&ad.page).filter(|_| ad.page.len() <= 4096) else {
            return bad_request("page", "`page` must be the page's http(s) URL");
        };
        let consented = !ad.consent.as_ref().is_some_and(|c| c.denied);
        let uid = ad
            .uid
            .filter(|uid| consented && valid_uid(uid))
            .map(|uid| uid.to_ascii_lowercase());

        // Resolve every slot against config; all served slots belong to one publisher.
        let mut skipped = Vec::new();
        let mut served: Vec<(usize, &SlotRequest, Vec<[u16; 2]>)> = Vec::new();
        let mut publisher_index = None;
        for slot in &ad.slots {
            let reason = match self.placement_index.get(slot.placement.as_str()) {
                None => Some("unknown_placement"),
                Some(&p) => {
                    let placement = &self.config.placements[p];
                    let publisher = self.publisher_index[placement.publisher.as_str()];
                    let owner = &self.config.publishers[publisher];
                    let sizes: Vec<[u16; 2]> = if slot.sizes.is_empty() {
                        placement.sizes.clone()
                    } else {
                        slot.sizes
                            .iter()
                            .filter(|s| placement.sizes.contains(s))
                            .copied()
                            .collect()
                    };
                    if !placement.enabled || !owner.enabled {
                        Some("disabled")
                    } else if owner
                        .domain
                        .as_deref()
                        .is_some_and(|domain| !on_domain(&host, domain))
                    {
                        Some("wrong_domain")
                    } else if publisher_index.is_some_and(|first| first != publisher) {
                        Some("another_publisher")
                    } else if sizes.is_empty() {
                        Some("no_matching_size")
                    } else if served.iter().any(|(_, s, _)| s.id == slot.id) {
                        Some("duplicate_slot_id")
                    } else {
                        publisher_index = Some(publisher);
                        served.push((p, slot, sizes));
                        None
                    }
                }
            };
            if let Some(reason) = reason {
                self.slot_outcome(reason);
                skipped.push(SkippedSlot {
                    id: slot.id.chars().take(64).collect(),
                    reason,
                });
            }
        }
        let Some(publisher_index) = publisher_index else {
            return with_cors(json_response(
                StatusCode::OK,
                &AdAnswer {
                    slots: Vec::new(),
                    skipped,
                },
            ));
        };
        let publisher = &self.config.publishers[publisher_index];

        // Each slot runs at max(static floor, learned floor) for its placement and segment.
        let device_type = ua.as_deref().map(device_type_of);
        let floors: Vec<(FloorKey, Decision, f64)> = served
            .iter()
            .map(|(p, _, sizes)| {
                let [w, h] = sizes[0];
                let key = FloorKey::new(
                    self.placement_keys[*p].clone(),
                    Segment::from_request(device_type, None, Some((i64::from(w), i64::from(h)))),
                );
                let decision = self.shared.floors.floor_for(&key);
                let used = self.config.placements[*p].floor.max(decision.floor);
                (key, decision, used)
            })
            .collect();
        let mut request = match self.tag_request(
            &page_url,
            ad.referrer.as_deref(),
            publisher,
            &served,
            &floors,
            uid.as_deref(),
            ip,
            ua,
            consented,
        ) {
            Ok(request) => request,
            Err(message) => return bad_request("request", message),
        };
        let mut landscape = Vec::new();
        let response = match self
            .run_observed(&mut request, None, started, Some(&mut landscape))
            .await
        {
            Ok(response) => response,
            Err(rejection) => return bad_request("request", rejection.to_string()),
        };
        let auction_type = if request.auction_type() == 1 {
            AuctionType::First
        } else {
            AuctionType::Second
        };
        for (i, (key, decision, used)) in floors.into_iter().enumerate() {
            let [first, second] = landscape.get(i).copied().unwrap_or([None, None]);
            self.shared.floors.observe(Observation {
                key,
                floor_used: used,
                explore: decision.explore,
                bids: TopBids::new(first, second),
                auction_type,
            });
        }
        let slots = match response {
            Some(response) => self.fill_slots(&request, response, &served, uid.as_deref()),
            None => Vec::new(),
        };
        for _ in slots.len()..served.len() {
            self.slot_outcome("no_bid");
        }
        for _ in &slots {
            self.slot_outcome("filled");
        }
        // Counted beside OpenRTB auctions, so auctions/s and fill rate cover both endpoints.
        let outcome = if slots.is_empty() { "no_bid" } else { "bid" };
        self.shared.metrics.ad_outcomes.inc(outcome);
        self.shared
            .metrics
            .auction_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut response = json_response(StatusCode::OK, &AdAnswer { slots, skipped });
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        with_cors(response)
    }

    /// The OpenRTB 2.6 request for a page's slots.
    #[allow(clippy::too_many_arguments)]
    fn tag_request(
        &self,
        page: &url::Url,
        referrer: Option<&str>,
        publisher: &super::config::Publisher,
        served: &[(usize, &SlotRequest, Vec<[u16; 2]>)],
        floors: &[(FloorKey, Decision, f64)],
        uid: Option<&str>,
        ip: Option<String>,
        ua: Option<String>,
        consented: bool,
    ) -> Result<BidRequest, String> {
        let secure = u8::from(page.scheme() == "https");
        let imps: Vec<serde_json::Value> = served
            .iter()
            .enumerate()
            .map(|(i, (p, _, sizes))| {
                let placement = &self.config.placements[*p];
                let format: Vec<_> = sizes
                    .iter()
                    .map(|[w, h]| serde_json::json!({"w": w, "h": h}))
                    .collect();
                serde_json::json!({
                    "id": (i + 1).to_string(),
                    "tagid": placement.id,
                    "banner": {"format": format, "w": sizes[0][0], "h": sizes[0][1]},
                    "bidfloor": floors[i].2,
                    "bidfloorcur": self.config.currency,
                    "secure": secure,
                })
            })
            .collect();
        let referrer = referrer
            .filter(|r| r.len() <= 4096 && page_host(r).is_some())
            .map(str::to_owned);
        let mut device = serde_json::json!({});
        if let Some(ua) = &ua {
            device["devicetype"] = device_type_of(ua).into();
        }
        if let Some(ua) = ua {
            device["ua"] = ua.into();
        }
        if let Some(ip) = ip {
            let key = if ip.contains(':') { "ipv6" } else { "ip" };
            device[key] = ip.into();
        }
        let mut request = serde_json::json!({
            "id": format!("{:032x}", rand::random::<u128>()),
            "imp": imps,
            "site": {
                "id": publisher.id,
                "domain": page.host_str(),
                "page": page.as_str(),
                "publisher": {"id": publisher.id, "name": publisher.name},
            },
            "device": device,
            "at": self.config.tags.auction_type,
            "tmax": self.config.tags.tmax_ms,
            "cur": [self.config.currency],
        });
        if let Some(referrer) = referrer {
            request["site"]["ref"] = referrer.into();
        }
        if let Some(uid) = uid {
            request["user"] = serde_json::json!({"id": uid});
        }
        if !consented {
            // The user said no: partners must not personalise or keep an id.
            request["regs"] = serde_json::json!({"ext": {"consent_denied": 1}});
        }
        serde_json::from_value(request).map_err(|e| e.to_string())
    }

    /// Turns the auction's winning bids into rendered slots with signed beacons, and tells
    /// each winning partner it won.
    fn fill_slots(
        &self,
        request: &BidRequest,
        response: BidResponse,
        served: &[(usize, &SlotRequest, Vec<[u16; 2]>)],
        uid: Option<&str>,
    ) -> Vec<SlotAd> {
        let now = now_secs();
        let exp = now + self.config.tags.beacon_ttl_secs;
        let mut slots = Vec::new();
        for bid in response.seatbid.into_iter().flat_map(|s| s.bid) {
            let Some(index) = bid
                .impid
                .parse::<usize>()
                .ok()
                .and_then(|i| i.checked_sub(1))
            else {
                continue;
            };
            let Some((p, slot, sizes)) = served.get(index) else {
                continue;
            };
            let Some(markup) = bid.adm.as_deref().filter(|m| !m.is_empty()) else {
                // The markup would have to be fetched from the partner's nurl; tags need it inline.
                self.slot_outcome("no_markup");
                continue;
            };
            let quoted = bid.price.unwrap_or_default();
            let bill = bid.burl.as_deref().and_then(|u| query_param(u, "t"));
            let Some(win) = bill.and_then(|t| self.signer.verify(t, now).ok()) else {
                continue;
            };
            // We are the seller here: the auction's outcome is final, so the partner hears of
            // its win now, at the price it pays.
            if let Some(nurl_token) = bid.nurl.as_deref().and_then(|u| query_param(u, "t"))
                && let Ok(token) = self.signer.verify(nurl_token, now)
                && token.kind == NoticeKind::Win
            {
                self.honour(NoticeKind::Win, &token, Some(quoted), None, None);
            }
            let placement = &self.config.placements[*p];
            let (w, h) = match (bid.w, bid.h) {
                (Some(w), Some(h)) if sizes.contains(&[w as u16, h as u16]) => (w as u16, h as u16),
                _ => (sizes[0][0], sizes[0][1]),
            };
            // The gross whose net is the quoted price: the ledger's net is then never below it.
            let cpm = crate::pricing::gross_of_fee(quoted, self.config.fee);
            let token = |kind: BeaconKind, target: Option<String>| BeaconToken {
                kind,
                auction: request.id.to_string(),
                imp: bid.impid.to_string(),
                publisher: placement.publisher.clone(),
                placement: placement.id.clone(),
                bidder: win.bidder.clone(),
                deal: bid.dealid.as_deref().map(str::to_owned),
                cpm,
                currency: self.config.currency.clone(),
                bill: (kind == BeaconKind::Impression).then(|| win.clone()),
                uid: uid.map(str::to_owned),
                target,
                exp,
            };
            let base = self.config.public_url.trim_end_matches('/');
            let clicks: Vec<(String, String)> = link_targets(markup)
                .into_iter()
                .map(|target| {
                    let sealed = self
                        .signer
                        .seal(&token(BeaconKind::Click, Some(target.clone())));
                    (target, format!("{base}/click?t={sealed}"))
                })
                .collect();
            let imp = self.signer.seal(&token(BeaconKind::Impression, None));
            let view = self.signer.seal(&token(BeaconKind::View, None));
            slots.push(SlotAd {
                id: slot.id.clone(),
                w,
                h,
                html: ad_document(&route_clicks(markup, &clicks)),
                imp: format!("{base}/beacon/imp?t={imp}"),
                view: format!("{base}/beacon/view?t={view}"),
            });
        }
        slots
    }

    /// Opens a beacon token of `kind`, answering the refusal when it is not good.
    fn open_beacon(&self, kind: BeaconKind, req: &Request) -> Result<BeaconToken, Box<Response>> {
        let text = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v.into_owned());
        let opened = match text {
            None => Err(TokenError::Malformed),
            Some(text) => match self.signer.open::<BeaconToken>(&text) {
                // A genuine token of another kind is as good as forged here.
                Ok(token) if token.kind != kind => Err(TokenError::BadSignature),
                Ok(token) if token.exp < now_secs() => Err(TokenError::Expired),
                other => other,
            },
        };
        opened.map_err(|err| {
            let (status, outcome) = match err {
                TokenError::Expired => (StatusCode::GONE, "expired"),
                TokenError::BadSignature => (StatusCode::FORBIDDEN, "forged"),
                TokenError::Malformed => (StatusCode::BAD_REQUEST, "malformed"),
            };
            self.beacon_outcome(kind, outcome);
            Box::new(with_cors(json_response(
                status,
                &serde_json::json!({"error": "bad_token", "message": err.to_string()}),
            )))
        })
    }

    /// `/beacon/imp` and `/beacon/view`, by GET or POST (`navigator.sendBeacon`).
    pub(crate) async fn beacon(&self, kind: BeaconKind, req: Request) -> Response {
        let token = match self.open_beacon(kind, &req) {
            Ok(token) => token,
            Err(refusal) => return *refusal,
        };
        // An impression's key is its bill's: the one every path that can bill it shares.
        let key = match (&token.bill, kind) {
            (Some(bill), BeaconKind::Impression) => bill.billing_key(),
            _ => format!("{}:{}:{}", kind.as_str(), token.auction, token.imp),
        };
        let ttl = std::time::Duration::from_secs(self.config.tags.beacon_ttl_secs + 60);
        match self.shared.billing.first(&key, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                self.beacon_outcome(kind, "duplicate");
                return with_cors(no_content());
            }
            Err(error) => {
                // Refusing is safe: the tag's page can retry; billing twice cannot be undone.
                tracing::error!(%error, "cannot check whether an impression was billed");
                self.beacon_outcome(kind, "error");
                return with_cors(bourse_kernel::error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dedup_unavailable",
                ));
            }
        }
        match kind {
            BeaconKind::Impression => self.bill(&token),
            BeaconKind::View => {
                self.shared.metrics.viewable.inc();
                self.beacon_outcome(kind, "counted");
            }
            BeaconKind::Click => {}
        }
        with_cors(no_content())
    }

    /// Bills one impression: the partner's burl, the revenue metrics, the ledger and reach.
    fn bill(&self, token: &BeaconToken) {
        let now = now_secs();
        // The bill may have a shorter life than the beacon; the beacon's signature covers it.
        if let Some(win) = token
            .bill
            .as_ref()
            .filter(|win| win.kind == NoticeKind::Bill)
        {
            self.honour(
                NoticeKind::Bill,
                win,
                Some(crate::pricing::net_of_fee(token.cpm, self.config.fee)),
                None,
                None,
            );
        }
        let (gross, fee, net) = LedgerEntry::amounts(token.cpm, self.config.fee);
        self.shared.ledger.record(LedgerEntry {
            ts: now,
            auction: token.auction.clone(),
            imp: token.imp.clone(),
            publisher: token.publisher.clone(),
            placement: token.placement.clone(),
            bidder: token.bidder.clone(),
            deal: token.deal.clone(),
            currency: token.currency.clone(),
            gross_micros: gross,
            fee_micros: fee,
            net_micros: net,
        });
        if let Some(uid) = &token.uid {
            self.shared.reach.record(
                uid,
                self.config_id(&token.publisher),
                self.config_id(&token.placement),
                self.config_id(&token.bidder),
                now,
            );
        }
        match self
            .placement_index
            .get(token.placement.as_str())
            .filter(|&&p| self.config.placements[p].publisher == token.publisher)
        {
            Some(&p) => self.billed_impressions[p].inc(),
            // A token signed under an earlier configuration: still one of our own ids.
            None => self
                .shared
                .metrics
                .billed_impressions
                .with_label_values(&[token.publisher.as_str(), token.placement.as_str()])
                .inc(),
        }
        self.beacon_outcome(BeaconKind::Impression, "billed");
    }

    /// `GET /click`: a redirect to a landing page named in a signed token, never elsewhere.
    pub(crate) fn click(&self, req: &Request) -> Response {
        let token = match self.open_beacon(BeaconKind::Click, req) {
            Ok(token) => token,
            Err(refusal) => return *refusal,
        };
        let target = token
            .target
            .as_deref()
            .and_then(|t| url::Url::parse(t).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        let Some(target) = target.and_then(|t| HeaderValue::from_str(t.as_str()).ok()) else {
            self.beacon_outcome(BeaconKind::Click, "malformed");
            return bad_request("bad_target", "the click has no landing page");
        };
        self.beacon_outcome(BeaconKind::Click, "redirected");
        let mut response = Response::new(bourse_kernel::empty());
        *response.status_mut() = StatusCode::FOUND;
        response.headers_mut().insert(header::LOCATION, target);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_themselves_and_subdomains_only() {
        assert!(on_domain("news.example", "news.example"));
        assert!(on_domain("www.news.example", "News.Example"));
        assert!(!on_domain("badnews.example", "news.example"));
        assert!(!on_domain("news.example.evil", "news.example"));
    }

    #[test]
    fn clicks_are_routed_for_every_quoting_and_escaping() {
        let markup = "<a href=\"https://adv.example/landing?a=1&amp;b=2\">x</a>\
                      <a href='https://adv.example/other'>y</a><a href=\"/relative\">z</a>\
                      <a href=\"javascript:alert(1)\">w</a>";
        let targets = link_targets(markup);
        assert_eq!(
            targets,
            vec![
                "https://adv.example/landing?a=1&b=2".to_owned(),
                "https://adv.example/other".to_owned()
            ]
        );
        let clicks: Vec<(String, String)> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), format!("https://x/click?t={i}&z=1")))
            .collect();
        let routed = route_clicks(markup, &clicks);
        assert!(
            routed.contains("href=\"https://x/click?t=0&amp;z=1\""),
            "{routed}"
        );
        assert!(
            routed.contains("href='https://x/click?t=1&amp;z=1'"),
            "{routed}"
        );
        assert!(!routed.contains("adv.example"), "{routed}");
        assert!(routed.contains("href=\"/relative\""));
    }

    #[test]
    fn user_ids_are_bounded_tokens() {
        assert!(valid_uid("0123456789abcdef0123456789abcdef"));
        assert!(!valid_uid("short"));
        assert!(!valid_uid("has space in it"));
        assert!(!valid_uid(&"a".repeat(65)));
    }

    #[test]
    fn query_params_come_from_our_own_urls() {
        let url = "http://x/notice/bill?t=abc.def&p=${AUCTION_PRICE}";
        assert_eq!(query_param(url, "t"), Some("abc.def"));
        assert_eq!(query_param(url, "q"), None);
    }
}
