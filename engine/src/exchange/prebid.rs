//! Prebid clients (Prebid.js's Prebid Server adapter, and any caller speaking Prebid Server's
//! dialect): what their `ext.prebid` asks for and the Prebid parts of our answer.
//!
//! A request is a Prebid one when its `ext.prebid` is an object. We read its `targeting`
//! (price granularity, per media type too, winner and bidder keys, `hb_format`, key length);
//! everything else there (`cache`, `channel`, `returnallbidstatus`, `auctiontimestamp`, …) is
//! accepted and left alone. Each bid of the answer then carries `ext.prebid.type`, its
//! `ext.prebid.targeting` when targeting was asked for (`hb_pb`, `hb_bidder`, `hb_size`,
//! `hb_deal`, `hb_env`, `hb_format`, and the `_<bidder>`-suffixed keys, cut to the key length
//! as Prebid Server does), its seat is the bidder code the request used for that partner (so
//! Prebid.js matches it to its bid request), and the answer's `ext.responsetimemillis` says how
//! long each partner took. Every bid we answer with won its impression, so it gets the winner
//! keys as well as its bidder's. A body gzipped by Prebid.js (`?gzip=1`) is read as gzip.

mod granularity;

pub use granularity::Granularity;

use crate::bidder_params::BidderParams;
use crate::openrtb::{Bid, BidRequest, BidResponse, MediaType, Raw};
use crate::validate::Rejection;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Prebid Server's longest targeting key unless the request says otherwise.
const MAX_KEY_LENGTH: usize = 20;

/// What a Prebid request asked of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// `ext.prebid.targeting`, when present.
    targeting: Option<Targeting>,
    /// The request is for an app (`hb_env` = `mobile-app`).
    app: bool,
    /// Bidder codes the request used, set once the partners' requests are built.
    params: Option<BidderParams>,
    /// Milliseconds each partner took, by the code it is answered under.
    response_ms: BTreeMap<String, u64>,
}

/// `ext.prebid.targeting`, read.
#[derive(Debug, Clone, PartialEq)]
struct Targeting {
    granularity: Granularity,
    /// `mediatypepricegranularity`: per media type, over `granularity`.
    by_media: Vec<(MediaType, Granularity)>,
    include_winners: bool,
    include_bidder_keys: bool,
    include_format: bool,
    max_key_length: usize,
}

/// Whether the request speaks Prebid Server's dialect: a text scan of `ext`, then a parse only
/// when `prebid` appears in it.
pub fn is_prebid(request: &BidRequest) -> bool {
    prebid_object(request).is_some()
}

fn prebid_object(request: &BidRequest) -> Option<Map<String, Value>> {
    let ext = request.ext.as_ref()?;
    if !ext.names_any(&["prebid"]) {
        return None;
    }
    match ext.parse::<Map<String, Value>>().ok()?.remove("prebid")? {
        Value::Object(prebid) => Some(prebid),
        _ => None,
    }
}

/// Prebid.js with `endpointCompression` gzips its body and says so in the query (`?gzip=1`),
/// not in `Content-Encoding` (a page cannot set that on a simple request): the query is read as
/// the header would be. A body that says its own encoding keeps it.
pub fn gzip_from_query(uri: &http::Uri, headers: &mut http::HeaderMap) {
    let asked = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "gzip=1"));
    if asked && !headers.contains_key(http::header::CONTENT_ENCODING) {
        headers.insert(
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
    }
}

fn flag(object: &Map<String, Value>, key: &str, default: bool) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(default)
}

impl Ask {
    /// Reads a Prebid request's `ext.prebid`; `Ok(None)` for any other request. Only a
    /// targeting setting we cannot honour (a malformed price granularity) is refused.
    pub fn of(request: &BidRequest) -> Result<Option<Ask>, Rejection> {
        let Some(prebid) = prebid_object(request) else {
            return Ok(None);
        };
        let targeting = match prebid.get("targeting") {
            Some(Value::Object(t)) => Some(Targeting::read(t)?),
            _ => None,
        };
        Ok(Some(Ask {
            targeting,
            app: request.app.is_some(),
            params: None,
            response_ms: BTreeMap::new(),
        }))
    }

    /// Hands over the request's split bidder params (see [`BidderParams`]).
    pub fn set_params(&mut self, params: Option<BidderParams>) {
        self.params = params;
    }

    /// The code the request used for the partner named `bidder`, if it named it.
    pub fn code(&self, bidder: &str) -> Option<&str> {
        self.params.as_ref()?.code_for(bidder)
    }

    /// Records how long the partner named `bidder` took (the longest of its calls).
    pub fn responded(&mut self, bidder: &str, ms: u64) {
        let code = self.code(bidder).unwrap_or(bidder).to_owned();
        let entry = self.response_ms.entry(code).or_default();
        *entry = (*entry).max(ms);
    }

    /// Adds the Prebid parts to one winning bid of partner `bidder`, whose markup is `media`;
    /// returns the seat to answer it under when the request named that partner.
    pub fn decorate_bid(&self, bid: &mut Bid, media: MediaType, bidder: &str) -> Option<String> {
        let code = self.code(bidder);
        let mut prebid = Map::new();
        prebid.insert("type".into(), Value::from(media.as_str()));
        if let Some(targeting) = &self.targeting {
            let keys = targeting.keys(bid, media, code.unwrap_or(bidder), self.app);
            if !keys.is_empty() {
                prebid.insert("targeting".into(), Value::Object(keys));
            }
        }
        prebid.insert(
            "meta".into(),
            serde_json::json!({ "adaptercode": code.unwrap_or(bidder) }),
        );
        let mut ext = match bid.ext.as_ref().map(|raw| raw.parse::<Value>()) {
            Some(Ok(Value::Object(ext))) => ext,
            _ => Map::new(),
        };
        // The partner's own `ext.prebid` members stay unless ours replace them.
        match ext.get_mut("prebid") {
            Some(Value::Object(theirs)) => theirs.extend(prebid),
            _ => {
                ext.insert("prebid".into(), Value::Object(prebid));
            }
        }
        bid.ext = Raw::from_value(&ext).ok();
        code.map(str::to_owned)
    }

    /// Adds `ext.responsetimemillis` to the answer.
    pub fn finish(&self, response: &mut BidResponse) {
        if self.response_ms.is_empty() {
            return;
        }
        let mut ext = match response.ext.as_ref().map(|raw| raw.parse::<Value>()) {
            Some(Ok(Value::Object(ext))) => ext,
            _ => Map::new(),
        };
        ext.insert(
            "responsetimemillis".into(),
            serde_json::to_value(&self.response_ms).unwrap_or_default(),
        );
        response.ext = Raw::from_value(&ext).ok();
    }
}

impl Targeting {
    fn read(t: &Map<String, Value>) -> Result<Targeting, Rejection> {
        let at = |member: &str, rest: &str| format!("ext.prebid.targeting.{member}{rest}");
        let granularity = match t.get("pricegranularity") {
            None | Some(Value::Null) => Granularity::medium(),
            Some(value) => Granularity::from_json(value).map_err(|(rest, message)| {
                Rejection::new(at("pricegranularity", &rest), "price_granularity", message)
            })?,
        };
        let mut by_media = Vec::new();
        if let Some(Value::Object(per)) = t.get("mediatypepricegranularity") {
            for media in MediaType::ALL {
                if let Some(value) = per.get(media.as_str()).filter(|v| !v.is_null()) {
                    let g = Granularity::from_json(value).map_err(|(rest, message)| {
                        let member = format!(".{}{rest}", media.as_str());
                        Rejection::new(
                            at("mediatypepricegranularity", &member),
                            "price_granularity",
                            message,
                        )
                    })?;
                    by_media.push((media, g));
                }
            }
        }
        let max_key_length = match t.get("truncatetargetattr").and_then(Value::as_i64) {
            Some(n) if n > 0 => n as usize,
            _ => MAX_KEY_LENGTH,
        };
        Ok(Targeting {
            granularity,
            by_media,
            include_winners: flag(t, "includewinners", true),
            include_bidder_keys: flag(t, "includebidderkeys", true),
            include_format: flag(t, "includeformat", false),
            max_key_length,
        })
    }

    /// The targeting keys of a bid that won its impression, placed by `code`.
    fn keys(&self, bid: &Bid, media: MediaType, code: &str, app: bool) -> Map<String, Value> {
        let granularity = self
            .by_media
            .iter()
            .find(|(m, _)| *m == media)
            .map_or(&self.granularity, |(_, g)| g);
        let mut values: Vec<(&str, String)> = vec![
            ("hb_pb", granularity.bucket(bid.price.unwrap_or(0.0))),
            ("hb_bidder", code.to_owned()),
        ];
        if let (Some(w), Some(h)) = (bid.w.filter(|w| *w > 0), bid.h.filter(|h| *h > 0)) {
            values.push(("hb_size", format!("{w}x{h}")));
        }
        if let Some(deal) = bid.dealid.as_deref().filter(|d| !d.is_empty()) {
            values.push(("hb_deal", deal.to_owned()));
        }
        if app {
            values.push(("hb_env", "mobile-app".to_owned()));
        }
        if self.include_format {
            values.push(("hb_format", media.as_str().to_owned()));
        }
        let mut keys = Map::new();
        for (key, value) in values {
            if self.include_bidder_keys {
                let suffixed = format!("{key}_{code}");
                keys.insert(
                    truncate(&suffixed, self.max_key_length).to_owned(),
                    Value::from(value.clone()),
                );
            }
            if self.include_winners {
                keys.insert(
                    truncate(key, self.max_key_length).to_owned(),
                    Value::from(value),
                );
            }
        }
        keys
    }
}

/// `key` cut to at most `max` bytes, on a character boundary.
fn truncate(key: &str, max: usize) -> &str {
    if key.len() <= max {
        return key;
    }
    let mut end = max;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

#[cfg(test)]
mod tests;
