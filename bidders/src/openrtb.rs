//! `openrtb`: the generic OpenRTB 2.6 adapter — the auction's shared body, one POST, standard bids.
//!
//! Configured only by the spec (endpoint, timeout, QPS, gzip, media, headers); it takes no params.
//! The request body is the one [`Outbound::bidder_body`] builds once per media set and `tmax`,
//! so every `openrtb` partner buying the same media shares the same bytes (unless the request
//! carries Prebid bidder params: then each partner's `imp.ext` holds only its own, as
//! `imp.ext.bidder`). `ext` and unknown
//! fields pass through untouched. Bids are typed by `mtype`, or inferred when the impression
//! offered one media type.

use crate::common::{self, Headers};
use bourse_engine::bidder::{
    AdapterError, Bidder, BidderBids, BidderRequest, BidderResponse, BidderSpec, CallInfo,
    Outbound, Requests,
};
use bourse_engine::openrtb::{BidRequest, MediaTypes};
use http::{HeaderName, HeaderValue, Method};
use std::sync::Arc;

/// The name a spec's `adapter` uses.
pub const NAME: &str = "openrtb";

/// The generic OpenRTB 2.6 adapter, with its spec checked and parsed.
#[derive(Debug)]
pub struct OpenRtb {
    endpoint: String,
    media: MediaTypes,
    headers: Headers,
}

/// Builds the adapter, or says what is wrong with the spec.
pub fn build(spec: &BidderSpec) -> Result<Arc<dyn Bidder>, String> {
    common::check_endpoint(&spec.endpoint)?;
    common::known_params(&spec.params, &[])?;
    let mut headers = vec![(
        HeaderName::from_static("x-openrtb-version"),
        HeaderValue::from_static("2.6"),
    )];
    headers.extend(common::extra_headers(spec)?);
    Ok(Arc::new(OpenRtb {
        endpoint: spec.endpoint.clone(),
        media: common::media(spec, MediaTypes::ALL)?,
        headers,
    }))
}

impl Bidder for OpenRtb {
    fn make_requests(&self, outbound: &Outbound<'_>, call: &CallInfo<'_>) -> Requests {
        let Some((body, imp_ids)) = outbound.bidder_body(self.media, call.tmax_ms, &call.spec.name)
        else {
            return Requests::default();
        };
        Requests::one(BidderRequest {
            method: Method::POST,
            uri: self.endpoint.clone(),
            headers: self.headers.clone(),
            body,
            imp_ids,
        })
    }

    fn make_bids(
        &self,
        auction: &BidRequest,
        request: &BidderRequest,
        response: &BidderResponse,
    ) -> Result<Option<BidderBids>, AdapterError> {
        common::openrtb_bids(auction, request, response, self.media, common::mtype)
    }
}
