//! Per-bidder `imp.ext`: each partner receives only its own Prebid params, as `imp.ext.bidder`.
//!
//! A Prebid request names every bidder's params in `imp.ext.prebid.bidder.<code>`, and may map
//! alias codes to bidders in `ext.prebid.aliases`. Prebid Server hands each bidder an `imp.ext`
//! with its own params under `bidder` and none of the others'; so do we. A partner is addressed
//! by its configured name, or else by an alias whose target is that name.
//!
//! The split is read once per auction and only when some `imp.ext` mentions `prebid` (one scan
//! of its text, nothing parsed, for every other request). The body of each partner is then the
//! shared body with each impression's `ext` spliced in ([`Template`]): the request is
//! serialized once per media set with a marker in place of each such `ext`, and each partner's
//! body is those bytes with its own `ext` text between them.

use crate::openrtb::{BidRequest, Raw, Text};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The members of one `imp.ext` that carried `prebid.bidder`, split for re-assembly.
#[derive(Debug, Clone, PartialEq)]
struct SplitExt {
    /// Every other member, as JSON text `"key":value,…` (no braces; empty when none).
    rest: String,
    /// The params under `prebid.bidder`, by bidder code.
    params: BTreeMap<String, Raw>,
}

/// One auction's Prebid bidder params, split per impression.
#[derive(Debug, Clone, PartialEq)]
pub struct BidderParams {
    /// By impression id: its split `ext` (only impressions that carried `prebid.bidder`).
    imps: BTreeMap<Text, SplitExt>,
    /// `ext.prebid.aliases`: alias code → the bidder it stands for.
    aliases: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RequestExt {
    prebid: Option<RequestPrebid>,
}

#[derive(serde::Deserialize)]
struct RequestPrebid {
    #[serde(default)]
    aliases: BTreeMap<String, serde_json::Value>,
}

/// Whether a raw `ext` may carry Prebid's objects: a text scan, no parsing.
fn mentions_prebid(ext: Option<&Raw>) -> bool {
    ext.is_some_and(|raw| raw.names_any(&["prebid"]))
}

impl BidderParams {
    /// Splits the request's Prebid params; `None` when no impression carries
    /// `imp.ext.prebid.bidder` (as an object), which is every non-Prebid request.
    pub fn of(request: &BidRequest) -> Option<Self> {
        if !request
            .imp
            .iter()
            .any(|imp| mentions_prebid(imp.ext.as_ref()))
        {
            return None;
        }
        let imps: BTreeMap<Text, SplitExt> = request
            .imp
            .iter()
            .filter(|imp| mentions_prebid(imp.ext.as_ref()))
            .filter_map(|imp| Some((imp.id.clone(), split(imp.ext.as_ref()?)?)))
            .collect();
        if imps.is_empty() {
            return None;
        }
        let aliases = request
            .ext
            .as_ref()
            .filter(|ext| mentions_prebid(Some(ext)))
            .and_then(|ext| ext.parse::<RequestExt>().ok())
            .and_then(|ext| ext.prebid)
            .map(|prebid| {
                prebid
                    .aliases
                    .into_iter()
                    .filter_map(|(alias, target)| match target {
                        serde_json::Value::String(target) => Some((alias, target)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(BidderParams { imps, aliases })
    }

    /// The code that addresses the partner named `bidder` in this request: its own name when
    /// some impression names it, else the first alias of it that some impression names.
    pub fn code_for(&self, bidder: &str) -> Option<&str> {
        let named = |code: &str| self.imps.values().any(|s| s.params.contains_key(code));
        if named(bidder) {
            return self.imps.values().find_map(|s| {
                s.params
                    .get_key_value(bidder)
                    .map(|(code, _)| code.as_str())
            });
        }
        self.aliases
            .iter()
            .filter(|(_, target)| target.as_str() == bidder)
            .map(|(alias, _)| alias.as_str())
            .find(|alias| named(alias))
    }

    /// The params `code` has on impression `imp_id`, as JSON text.
    pub fn params(&self, imp_id: &str, code: &str) -> Option<&str> {
        self.imps.get(imp_id)?.params.get(code).map(|raw| raw.get())
    }

    /// Whether impression `imp_id` had its `ext` split (and so needs a per-bidder one).
    pub fn splits(&self, imp_id: &str) -> bool {
        self.imps.contains_key(imp_id)
    }

    /// The `imp.ext` JSON text the bidder addressed by `code` (or, with `None`, a partner the
    /// request does not address) receives for impression `imp_id`: its own params under
    /// `bidder`, every other member as sent, no other bidder's params.
    pub fn ext_for(&self, imp_id: &str, code: Option<&str>) -> Option<String> {
        let split = self.imps.get(imp_id)?;
        let params = code.and_then(|code| split.params.get(code));
        let mut out =
            String::with_capacity(split.rest.len() + params.map_or(0, |p| p.get().len()) + 12);
        out.push('{');
        if let Some(params) = params {
            out.push_str("\"bidder\":");
            out.push_str(params.get());
            if !split.rest.is_empty() {
                out.push(',');
            }
        }
        out.push_str(&split.rest);
        out.push('}');
        Some(out)
    }
}

/// Splits one `imp.ext` whose `prebid.bidder` is an object; `None` otherwise (left as sent).
fn split(ext: &Raw) -> Option<SplitExt> {
    let mut members: BTreeMap<String, Box<RawValue>> = ext.parse().ok()?;
    let prebid = members.remove("prebid")?;
    let mut prebid: BTreeMap<String, Box<RawValue>> = serde_json::from_str(prebid.get()).ok()?;
    let params: BTreeMap<String, Raw> =
        serde_json::from_str(prebid.remove("bidder")?.get()).ok()?;
    // An `imp.ext.bidder` sent alongside is replaced by each bidder's own.
    members.remove("bidder");
    let mut rest = String::new();
    let mut push = |key: &str, value: &str| {
        if !rest.is_empty() {
            rest.push(',');
        }
        // A key read from JSON serializes back to valid JSON.
        rest.push_str(&serde_json::to_string(key).expect("a string serializes"));
        rest.push(':');
        rest.push_str(value);
    };
    for (key, value) in &members {
        push(key, value.get());
    }
    if !prebid.is_empty() {
        let prebid = serde_json::to_string(&prebid).expect("a JSON object serializes");
        push("prebid", &prebid);
    }
    Some(SplitExt { rest, params })
}

/// A per-process random tag, so no request can spell a template's markers.
static MARKER_TAG: LazyLock<u64> = LazyLock::new(rand::random);

/// A request body serialized once with a marker for each split `imp.ext`, from which each
/// bidder's body is assembled by copying bytes.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    body: Vec<u8>,
    /// Byte range of each marker in `body`, in order, and the impression it stands for.
    slots: Vec<(std::ops::Range<usize>, Text)>,
}

impl Template {
    /// Serializes `request` with markers in place of the `ext` of every impression `params`
    /// split. `None` when a marker cannot be found exactly once (the caller then serializes
    /// each bidder's request in full).
    pub(crate) fn build(request: &BidRequest, params: &BidderParams) -> Option<Template> {
        let mut marked = request.clone();
        let mut markers = Vec::new();
        for (i, imp) in marked.imp.iter_mut().enumerate() {
            if params.splits(&imp.id) {
                let marker = format!("\"bourse-imp-ext-{:016x}-{i}\"", *MARKER_TAG);
                imp.ext = Some(Raw::from_json(&marker).ok()?);
                markers.push((marker, imp.id.clone()));
            }
        }
        let body = serde_json::to_vec(&marked).ok()?;
        let mut slots = Vec::with_capacity(markers.len());
        let mut from = 0;
        for (marker, imp_id) in markers {
            // Exactly once, and after the previous one.
            let start = find(&body, marker.as_bytes())?;
            let end = start + marker.len();
            if start < from || find(&body[end..], marker.as_bytes()).is_some() {
                return None;
            }
            slots.push((start..end, imp_id));
            from = end;
        }
        Some(Template { body, slots })
    }

    /// The body for the bidder addressed by `code` (`None`: not addressed).
    pub(crate) fn body_for(&self, params: &BidderParams, code: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64 * self.slots.len());
        let mut from = 0;
        for (range, imp_id) in &self.slots {
            out.extend_from_slice(&self.body[from..range.start]);
            let ext = params.ext_for(imp_id, code).unwrap_or_else(|| "{}".into());
            out.extend_from_slice(ext.as_bytes());
            from = range.end;
        }
        out.extend_from_slice(&self.body[from..]);
        out
    }
}

/// Serializes `request` for the bidder addressed by `code` the slow way: a copy with each
/// split `imp.ext` replaced. What [`Template::body_for`] does when no template can be built.
pub(crate) fn body_without_template(
    request: &BidRequest,
    params: &BidderParams,
    code: Option<&str>,
) -> Vec<u8> {
    let mut copy = request.clone();
    for imp in &mut copy.imp {
        if let Some(ext) = params.ext_for(&imp.id, code) {
            imp.ext = Raw::from_json(&ext).ok();
        }
    }
    crate::openrtb::to_json(&copy)
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
