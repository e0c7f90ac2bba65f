//! Helpers every adapter shares: spec checks, partner params, and reading OpenRTB responses.

use bourse_engine::bidder::{
    AdapterError, BidderBids, BidderRequest, BidderResponse, BidderSpec, TypedBid,
};
use bourse_engine::openrtb::{Bid, BidRequest, BidResponse, MediaType, MediaTypes, Raw};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value};

/// Headers an adapter adds to each request it builds.
pub(crate) type Headers = Vec<(HeaderName, HeaderValue)>;

/// Headers the engine or the adapter itself sets; a spec may not configure them.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "host",
    "x-openrtb-version",
];

/// Longest partner-supplied text quoted in an error message.
const QUOTE_MAX: usize = 64;

/// Checks that the spec's endpoint is an absolute http(s) URL.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("endpoint `{endpoint}` is not a valid URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "endpoint `{endpoint}` has scheme `{other}`; use http or https"
        )),
    }
}

/// The spec's media types restricted to what the adapter can carry; an error when none remain.
pub(crate) fn media(spec: &BidderSpec, supported: MediaTypes) -> Result<MediaTypes, String> {
    let media = spec.media_types().intersection(supported);
    if media.is_empty() {
        let names: Vec<_> = supported.iter().map(MediaType::as_str).collect();
        return Err(format!(
            "`media` must list at least one of: {}",
            names.join(", ")
        ));
    }
    Ok(media)
}

/// The spec's extra headers, parsed once; reserved or malformed ones are refused.
pub(crate) fn extra_headers(spec: &BidderSpec) -> Result<Headers, String> {
    spec.headers
        .iter()
        .map(|(name, value)| {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name `{name}` is not a valid HTTP header name"))?;
            if RESERVED_HEADERS.contains(&parsed.as_str()) {
                return Err(format!(
                    "header `{name}` is set by the exchange and cannot be configured"
                ));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
            Ok((parsed, value))
        })
        .collect()
}

/// Refuses params the adapter does not know, so a typo does not silently drop a setting.
pub(crate) fn known_params(params: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) if known.is_empty() => Err(format!(
            "unknown param `{key}`: this adapter takes no params"
        )),
        Some(key) => Err(format!(
            "unknown param `{key}` (known: {})",
            known.join(", ")
        )),
    }
}

/// A string-or-integer identifier param (`"123"` and `123` are the same id); `None` when absent.
pub(crate) fn id_param(params: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(format!(
            "param `{key}` must be a non-empty string or an integer"
        )),
    }
}

/// An `ext` as a JSON object (empty when absent); `what` names it in the error.
pub(crate) fn ext_object(ext: Option<&Raw>, what: &str) -> Result<Map<String, Value>, String> {
    match ext.map(|raw| raw.parse::<Value>()) {
        None => Ok(Map::new()),
        Some(Ok(Value::Object(map))) => Ok(map),
        Some(Ok(Value::Null)) => Ok(Map::new()),
        Some(Ok(_)) => Err(format!("`{what}` must be a JSON object")),
        Some(Err(e)) => Err(format!("`{what}` is not valid JSON: {e}")),
    }
}

/// Writes an `ext` back; an empty object becomes an absent `ext`.
pub(crate) fn set_ext(ext: &mut Option<Raw>, map: Map<String, Value>) {
    *ext = if map.is_empty() {
        None
    } else {
        // A JSON map always serializes.
        Some(Raw::from_value(&map).expect("a JSON object serializes"))
    };
}

/// This partner's params for one impression: `imp.ext.prebid.bidder.<code>` (the request names
/// the partner by `code`, its name or an alias of it) or else `imp.ext.bidder` (already
/// addressed to whoever receives it).
pub(crate) fn imp_params(
    imp_ext: &Map<String, Value>,
    bidder: &str,
) -> Result<Map<String, Value>, String> {
    let named = imp_ext
        .get("prebid")
        .and_then(|p| p.get("bidder"))
        .and_then(|b| b.get(bidder));
    let (found, path) = match named {
        Some(v) => (Some(v), format!("imp.ext.prebid.bidder.{bidder}")),
        None => (imp_ext.get("bidder"), "imp.ext.bidder".to_owned()),
    };
    match found {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(_) => Err(format!("`{path}` must be a JSON object")),
    }
}

/// Reads the status: `Ok(false)` is a no-bid (204), `Ok(true)` a body to read (200).
pub(crate) fn check_status(response: &BidderResponse) -> Result<bool, AdapterError> {
    match response.status {
        StatusCode::NO_CONTENT => Ok(false),
        StatusCode::OK => Ok(true),
        other => Err(AdapterError::Status(other.as_u16())),
    }
}

/// A short, bounded message for a body that does not parse.
pub(crate) fn malformed(what: &str, err: &serde_json::Error) -> AdapterError {
    AdapterError::BadServerResponse(format!("malformed {what}: {}", quote(&err.to_string())))
}

/// Partner-supplied text cut to a length fit for an error message.
pub(crate) fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The media type a bid fills, checked against what its impression offered in this call.
///
/// `declared` is what the partner said (if anything); without it the type is inferred when the
/// impression offered exactly one media type.
pub(crate) fn bid_media(
    auction: &BidRequest,
    request: &BidderRequest,
    media: MediaTypes,
    bid: &Bid,
    declared: Result<Option<MediaType>, String>,
) -> Result<MediaType, String> {
    // Quoted only for an error: a bid that is placed costs no copy of its ids.
    let (bid_id, imp_id) = (|| quote(&bid.id), || quote(&bid.impid));
    if !request.imp_ids.contains(&bid.impid) {
        return Err(format!(
            "bid `{}` is for impression `{}`, which this request did not offer",
            bid_id(),
            imp_id()
        ));
    }
    let offered = auction
        .imp_by_id(&bid.impid)
        .map_or(MediaTypes::NONE, |imp| {
            imp.media_types().intersection(media)
        });
    match declared.map_err(|e| format!("bid `{}`: {e}", bid_id()))? {
        Some(m) if offered.contains(m) => Ok(m),
        Some(m) => Err(format!(
            "bid `{}` is {} but impression `{}` did not offer {}",
            bid_id(),
            m.as_str(),
            imp_id(),
            m.as_str()
        )),
        None => {
            let mut types = offered.iter();
            match (types.next(), types.next()) {
                (Some(m), None) => Ok(m),
                _ => Err(format!(
                    "bid `{}` does not say its media type and impression `{}` offers several",
                    bid_id(),
                    imp_id()
                )),
            }
        }
    }
}

/// Reads an OpenRTB BidResponse (2.5 or 2.6) into typed bids.
///
/// `declared` reads the media type a bid says it has, in the partner's dialect. Bids that cannot be
/// placed are dropped and reported in [`BidderBids::errors`].
pub(crate) fn openrtb_bids(
    auction: &BidRequest,
    request: &BidderRequest,
    response: &BidderResponse,
    media: MediaTypes,
    declared: fn(&Bid) -> Result<Option<MediaType>, String>,
) -> Result<Option<BidderBids>, AdapterError> {
    if !check_status(response)? {
        return Ok(None);
    }
    let parsed: BidResponse = bourse_engine::openrtb::from_json(&response.body)
        .map_err(|e| malformed("BidResponse", &e))?;
    if parsed.id != auction.id {
        return Err(AdapterError::BadServerResponse(format!(
            "response id `{}` does not match request id `{}`",
            quote(&parsed.id),
            quote(&auction.id)
        )));
    }
    let mut out = BidderBids {
        currency: parsed.cur,
        ..BidderBids::default()
    };
    for seatbid in parsed.seatbid {
        for bid in seatbid.bid {
            match bid_media(auction, request, media, &bid, declared(&bid)) {
                Ok(media_type) => out.bids.push(TypedBid {
                    bid,
                    media_type,
                    seat: seatbid.seat.clone(),
                }),
                Err(msg) => out.errors.push(AdapterError::BadServerResponse(msg)),
            }
        }
    }
    if out.bids.is_empty() && out.errors.is_empty() {
        return Ok(None);
    }
    Ok(Some(out))
}

/// The OpenRTB 2.6 `mtype` of a bid, if it has one.
pub(crate) fn mtype(bid: &Bid) -> Result<Option<MediaType>, String> {
    match bid.mtype {
        None => Ok(None),
        Some(v) => MediaType::from_mtype(v)
            .map(Some)
            .ok_or_else(|| format!("unknown mtype {v}")),
    }
}

/// A media type by its lower-case name, as partners spell it (`"banner"`, `"VIDEO"`).
pub(crate) fn media_by_name(name: &str) -> Option<MediaType> {
    MediaType::ALL
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(name))
}
