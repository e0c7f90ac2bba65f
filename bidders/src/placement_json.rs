//! `placement_json`: a partner with its own JSON API — one call per placement, a flat list of bids.
//!
//! Many smaller partners (and most Prebid.js-era SSP endpoints) do not speak OpenRTB. This adapter
//! sends one POST per impression to the endpoint, where `{placement_id}` and `{publisher_id}`
//! in the endpoint are replaced by the impression's placement and the spec's publisher (if the
//! endpoint has no `{placement_id}`, the placement goes into the query as `placement_id`). The
//! body is a small camelCase JSON object: sizes or video settings, floor, page or app, device,
//! user id, privacy signals and the supply chain.
//!
//! The answer is a flat JSON array of bids, `[{"cpm", "ad" | "vastXml" | "vastUrl", "width",
//! "height", "creativeId", "currency", "mediaType", ...}]`, turned into OpenRTB bids. An empty
//! array or empty body is a no-bid. The partner buys banner and video only.
//!
//! Params: `params.publisher_id` (required) and, per impression, `placement_id` (required) from
//! `imp.ext.prebid.bidder.<name>` or `imp.ext.bidder`.

use crate::common::{self, Headers};
use bourse_engine::bidder::{
    AdapterError, Bidder, BidderBids, BidderRequest, BidderResponse, BidderSpec, CallInfo,
    Outbound, Requests, TypedBid,
};
use bourse_engine::openrtb::{Bid, BidRequest, Imp, MediaType, MediaTypes, SupplyChain, Text};
use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// The name a spec's `adapter` uses.
pub const NAME: &str = "placement_json";

/// What this partner buys.
fn supported() -> MediaTypes {
    MediaTypes::NONE
        .with(MediaType::Banner)
        .with(MediaType::Video)
}

/// A per-placement JSON partner, with its spec checked and parsed.
#[derive(Debug)]
pub struct PlacementJson {
    name: String,
    endpoint: String,
    media: MediaTypes,
    publisher_id: String,
    headers: Headers,
}

/// Builds the adapter, or says what is wrong with the spec.
pub fn build(spec: &BidderSpec) -> Result<Arc<dyn Bidder>, String> {
    common::known_params(&spec.params, &["publisher_id"])?;
    let publisher_id = common::id_param(&spec.params, "publisher_id")?
        .ok_or("param `publisher_id` is required: the partner's id for this publisher")?;
    let adapter = PlacementJson {
        name: spec.name.clone(),
        endpoint: spec.endpoint.clone(),
        media: common::media(spec, supported())?,
        publisher_id,
        headers: common::extra_headers(spec)?,
    };
    // The template must make a valid URL once filled in.
    common::check_endpoint(&adapter.uri("placement"))?;
    Ok(Arc::new(adapter))
}

impl Bidder for PlacementJson {
    fn make_requests(&self, outbound: &Outbound<'_>, call: &CallInfo<'_>) -> Requests {
        let Some(req) = outbound.restricted(self.media) else {
            return Requests::default();
        };
        let mut out = Requests::default();
        // Addressed by its name or by an alias of it (`ext.prebid.aliases`).
        let code = outbound.prebid_code(&self.name).unwrap_or(&self.name);
        for imp in &req.imp {
            match self.imp_request(&req, imp, code, call.tmax_ms) {
                Ok(request) => out.requests.push(request),
                Err(msg) => {
                    let imp_id = common::quote(&imp.id);
                    out.errors
                        .push(AdapterError::BadInput(format!("imp `{imp_id}`: {msg}")));
                }
            }
        }
        out
    }

    fn make_bids(
        &self,
        auction: &BidRequest,
        request: &BidderRequest,
        response: &BidderResponse,
    ) -> Result<Option<BidderBids>, AdapterError> {
        if !common::check_status(response)? || response.body.trim_ascii().is_empty() {
            return Ok(None);
        }
        let list: Vec<Value> = serde_json::from_slice(&response.body)
            .map_err(|e| common::malformed("bid list", &e))?;
        let Some(imp_id) = request.imp_ids.first() else {
            return Ok(None);
        };
        let mut out = BidderBids::default();
        for (index, value) in list.into_iter().enumerate() {
            match self.typed_bid(auction, request, imp_id, index, value, &mut out.currency) {
                Ok(bid) => out.bids.push(bid),
                Err(msg) => out.errors.push(AdapterError::BadServerResponse(msg)),
            }
        }
        if out.bids.is_empty() && out.errors.is_empty() {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

impl PlacementJson {
    /// The endpoint with the placement and publisher filled in.
    fn uri(&self, placement: &str) -> String {
        let mut uri = self
            .endpoint
            .replace("{publisher_id}", &encode(&self.publisher_id));
        if uri.contains("{placement_id}") {
            uri = uri.replace("{placement_id}", &encode(placement));
        } else {
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str("placement_id=");
            uri.push_str(&encode(placement));
        }
        uri
    }

    /// The partner call for one impression.
    fn imp_request(
        &self,
        req: &BidRequest,
        imp: &Imp,
        code: &str,
        tmax_ms: u64,
    ) -> Result<BidderRequest, String> {
        let ext = common::ext_object(imp.ext.as_ref(), "imp.ext")?;
        let params = common::imp_params(&ext, code)?;
        let placement =
            common::id_param(&params, "placement_id")?.ok_or("missing param `placement_id`")?;

        let banner = match &imp.banner {
            None => None,
            Some(banner) => {
                let mut sizes: Vec<[u32; 2]> = banner
                    .format
                    .iter()
                    .filter_map(|f| Some([f.w?, f.h?]))
                    .collect();
                if sizes.is_empty() {
                    sizes.extend(banner.w.zip(banner.h).map(|(w, h)| [w, h]));
                }
                if sizes.is_empty() {
                    return Err("banner has no size (`format` or `w`/`h`)".to_owned());
                }
                Some(BannerAsk { sizes })
            }
        };
        let video = imp.video.as_ref().map(|v| VideoAsk {
            mimes: &v.mimes,
            min_duration: v.minduration,
            max_duration: v.maxduration,
            protocols: &v.protocols,
            player_size: v.w.zip(v.h).map(|(w, h)| [w, h]),
            start_delay: v.startdelay,
            plcmt: v.plcmt,
            skip: v.skip,
        });
        let site = req.site.as_ref();
        let app = req.app.as_ref();
        let device = req.device.as_ref();
        let regs = req.regs.as_ref();
        let ask = PlacementAsk {
            request_id: &req.id,
            imp_id: &imp.id,
            placement_id: &placement,
            publisher_id: &self.publisher_id,
            tmax: tmax_ms,
            test: (req.test == Some(1)).then_some(true),
            banner,
            video,
            floor: imp.bidfloor.filter(|f| *f > 0.0).map(|price| Floor {
                price,
                currency: imp
                    .bidfloorcur
                    .as_deref()
                    .unwrap_or(bourse_engine::openrtb::DEFAULT_CURRENCY),
            }),
            secure: imp.secure,
            page: site.and_then(|s| s.page.as_deref()),
            domain: site
                .and_then(|s| s.domain.as_deref())
                .or(app.and_then(|a| a.domain.as_deref())),
            referrer: site.and_then(|s| s.referrer.as_deref()),
            bundle: app.and_then(|a| a.bundle.as_deref()),
            store_url: app.and_then(|a| a.storeurl.as_deref()),
            ua: device.and_then(|d| d.ua.as_deref()),
            ip: device.and_then(|d| d.ip.as_deref().or(d.ipv6.as_deref())),
            ifa: device.and_then(|d| d.ifa.as_deref()),
            device_type: device.and_then(|d| d.devicetype),
            buyer_uid: req.user.as_ref().and_then(|u| u.buyeruid.as_deref()),
            gdpr: regs.and_then(|r| r.gdpr),
            consent: req.user.as_ref().and_then(|u| u.consent.as_deref()),
            us_privacy: regs.and_then(|r| r.us_privacy.as_deref()),
            gpp: regs.and_then(|r| r.gpp.as_deref()),
            gpp_sid: regs.map_or(&[], |r| &r.gpp_sid),
            coppa: regs.and_then(|r| r.coppa),
            schain: req.source.as_ref().and_then(|s| s.schain.as_ref()),
        };
        let body = serde_json::to_vec(&ask).expect("placement request serializes");
        Ok(BidderRequest {
            method: Method::POST,
            uri: self.uri(&placement),
            headers: self.headers.clone(),
            body: Bytes::from(body),
            imp_ids: vec![imp.id.clone()],
        })
    }

    /// One bid of the partner's list as an OpenRTB bid.
    fn typed_bid(
        &self,
        auction: &BidRequest,
        request: &BidderRequest,
        imp_id: &str,
        index: usize,
        value: Value,
        currency: &mut Option<Text>,
    ) -> Result<TypedBid, String> {
        let pb: PartnerBid = serde_json::from_value(value)
            .map_err(|e| format!("bid #{index}: malformed: {}", common::quote(&e.to_string())))?;
        let id = pb
            .bid_id
            .map(IdValue::into_string)
            .unwrap_or_else(|| format!("{imp_id}-{index}"));
        let bid_imp = pb
            .request_id
            .map(IdValue::into_string)
            .unwrap_or_else(|| imp_id.to_owned());
        let price = pb
            .cpm
            .ok_or_else(|| format!("bid `{}` has no cpm", common::quote(&id)))?;
        let adm = pb.ad.or(pb.vast_xml);
        if adm.is_none() && pb.vast_url.is_none() {
            return Err(format!(
                "bid `{}` has no markup (`ad`, `vastXml` or `vastUrl`)",
                common::quote(&id)
            ));
        }
        let cur = pb
            .currency
            .unwrap_or_else(|| bourse_engine::openrtb::DEFAULT_CURRENCY.to_owned());
        match currency {
            None => *currency = Some(cur.into()),
            Some(first) if first.eq_ignore_ascii_case(&cur) => {}
            Some(first) => {
                return Err(format!(
                    "bid `{}` is in {} but the response's first bid is in {first}",
                    common::quote(&id),
                    common::quote(&cur)
                ));
            }
        }
        let declared = match pb.media_type.as_deref() {
            None => Ok(None),
            Some(name) => common::media_by_name(name)
                .map(Some)
                .ok_or_else(|| format!("unknown mediaType `{}`", common::quote(name))),
        };
        let mut bid = Bid {
            id: id.into(),
            impid: bid_imp.into(),
            price: Some(price),
            // Without inline markup, OpenRTB fetches the markup from `nurl`.
            nurl: if adm.is_none() { pb.vast_url } else { None },
            adm,
            adomain: pb.adomain,
            crid: pb.creative_id.map(|id| id.into_string().into()),
            dealid: pb.deal_id.map(|id| id.into_string().into()),
            w: pb.width,
            h: pb.height,
            exp: pb.ttl,
            ..Bid::default()
        };
        let media_type = common::bid_media(auction, request, self.media, &bid, declared)?;
        bid.mtype = Some(i64::from(media_type.mtype()));
        Ok(TypedBid {
            bid,
            media_type,
            seat: None,
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value is safe in a path
/// segment and in a query alike (`a b/c` → `a%20b%2Fc`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The partner's request body for one placement.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlacementAsk<'a> {
    request_id: &'a str,
    imp_id: &'a str,
    placement_id: &'a str,
    publisher_id: &'a str,
    tmax: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    test: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    banner: Option<BannerAsk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<VideoAsk<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    floor: Option<Floor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secure: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ua: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifa: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_type: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    buyer_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gdpr: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    us_privacy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpp: Option<&'a str>,
    #[serde(skip_serializing_if = "<[i64]>::is_empty")]
    gpp_sid: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    coppa: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schain: Option<&'a SupplyChain>,
}

#[derive(Serialize)]
struct BannerAsk {
    sizes: Vec<[u32; 2]>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VideoAsk<'a> {
    #[serde(skip_serializing_if = "<[bourse_engine::openrtb::Text]>::is_empty")]
    mimes: &'a [bourse_engine::openrtb::Text],
    #[serde(skip_serializing_if = "Option::is_none")]
    min_duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_duration: Option<i64>,
    #[serde(skip_serializing_if = "<[i64]>::is_empty")]
    protocols: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    player_size: Option<[u32; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_delay: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plcmt: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip: Option<u8>,
}

#[derive(Serialize)]
struct Floor<'a> {
    price: f64,
    currency: &'a str,
}

/// One bid as the partner sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartnerBid {
    /// The impression id echoed back (optional: the call already names one impression).
    request_id: Option<IdValue>,
    bid_id: Option<IdValue>,
    cpm: Option<f64>,
    currency: Option<String>,
    ad: Option<String>,
    vast_xml: Option<String>,
    vast_url: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    creative_id: Option<IdValue>,
    deal_id: Option<IdValue>,
    media_type: Option<String>,
    #[serde(default)]
    adomain: Vec<Text>,
    ttl: Option<i64>,
}

/// An id partners send as a string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::Text(s) => s,
            IdValue::Number(n) => n.to_string(),
        }
    }
}
