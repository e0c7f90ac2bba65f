//! The auction's extension points: a request filter, a floor rule and a bid filter, provided
//! from outside the engine (the signed WebAssembly plugins the binary wires in, or compiled-in
//! code) without the engine knowing who answers.
//!
//! A hook can narrow an auction, never loosen the seller's terms: a dropped request or bid is
//! out, a floor may be raised but not lowered below what the exchange would use, and an
//! adjusted price goes through the exchange's own checks again.

use crate::auction::Candidate;
use crate::openrtb::{BidRequest, Raw};

/// What a request filter decided.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestHook {
    /// Go on, adding these key/value pairs to the partners' `ext.bourse.enrich`.
    Keep(Vec<(String, String)>),
    /// End the auction without calling anyone, for this reason (counted, logged at debug).
    Drop(String),
}

/// What a bid filter decided for one bid.
#[derive(Debug, Clone, PartialEq)]
pub enum BidHook {
    Keep,
    /// The bid loses with loss code 202 (creative disapproved by the exchange).
    Drop(String),
    /// A new price in the auction currency, checked against the floor again.
    Adjust(f64),
}

/// One bid offered to the bid filter.
#[derive(Debug, Clone, Copy)]
pub struct HookBid<'a> {
    /// The configured name of the bidder that placed it.
    pub bidder: &'a str,
    pub candidate: &'a Candidate,
}

/// The auction's hooks. Each is called on the auction's own task and must answer within the
/// caller's time limits (the wasm host cuts a call at its plugin's limit and skips it).
pub trait AuctionHooks: Send + Sync + 'static {
    /// Whether any hook may answer now; checked once per stage, so an exchange with nothing
    /// installed pays for this call alone.
    fn active(&self) -> bool;

    /// Once per valid request that some bidder is eligible for, before any bidder is called.
    fn filter_request(&self, request: &BidRequest) -> RequestHook;

    /// Each impression's floor: `floors[i]` holds, net of our fee and in the auction currency,
    /// the floor the exchange would use for `request.imp[i]`; a rule may set it higher.
    fn floors(&self, request: &BidRequest, floors: &mut [f64]);

    /// One decision per bid, in order, for the bids that passed the exchange's checks.
    fn filter_bids(&self, request: &BidRequest, bids: &[HookBid<'_>]) -> Vec<BidHook>;
}

/// Adds enrichment pairs to `ext.bourse.enrich` of the request partners receive, keeping every
/// other member of `ext` as it was.
pub(crate) fn enrich(request: &mut BidRequest, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        return;
    }
    let mut ext: serde_json::Map<String, serde_json::Value> = request
        .ext
        .as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let bourse = ext
        .entry("bourse")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if !bourse.is_object() {
        *bourse = serde_json::Value::Object(Default::default());
    }
    if let Some(bourse) = bourse.as_object_mut() {
        let enriched = bourse
            .entry("enrich")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if !enriched.is_object() {
            *enriched = serde_json::Value::Object(Default::default());
        }
        if let Some(enriched) = enriched.as_object_mut() {
            for (key, value) in pairs {
                enriched.insert(key.clone(), serde_json::Value::String(value.clone()));
            }
        }
    }
    request.ext = Raw::from_value(&ext).ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrichment_joins_an_existing_ext_without_losing_its_members() {
        let mut request: BidRequest =
            serde_json::from_str(r#"{"id":"r","imp":[],"ext":{"prebid":{"debug":true}}}"#).unwrap();
        enrich(
            &mut request,
            &[
                ("segment".into(), "sports".into()),
                ("tier".into(), "1".into()),
            ],
        );
        let ext: serde_json::Value =
            serde_json::from_str(request.ext.as_ref().unwrap().get()).unwrap();
        assert_eq!(ext["prebid"]["debug"], true);
        assert_eq!(ext["bourse"]["enrich"]["segment"], "sports");
        assert_eq!(ext["bourse"]["enrich"]["tier"], "1");
    }

    #[test]
    fn no_pairs_leave_the_request_untouched() {
        let mut request: BidRequest = serde_json::from_str(r#"{"id":"r","imp":[]}"#).unwrap();
        enrich(&mut request, &[]);
        assert!(request.ext.is_none());
    }
}
