//! `openrtb25`: a partner still on OpenRTB 2.5, so 2.6 fields move back into `ext` or are dropped.
//!
//! The request is one POST with every impression the partner buys, like `openrtb`, but rewritten:
//!
//! - 2.6 fields with a 2.5 home move into `ext`: `regs.gdpr`, `regs.us_privacy`, `regs.gpp` and
//!   `regs.gpp_sid` → `regs.ext.*`; `user.consent` and `user.eids` → `user.ext.*`;
//!   `source.schain` → `source.ext.schain`; `imp.rwdd` → `imp.ext.prebid.is_rewarded_inventory`.
//! - 2.6-only fields without one are dropped (a 2.5 partner need not tolerate them), and `dooh`
//!   inventory, which 2.5 cannot express, is refused.
//! - `params.publisher_id` (required) becomes `site.publisher.id` or `app.publisher.id`; a
//!   per-impression `placement_id` from `imp.ext.prebid.bidder.<name>` (or an alias of the
//!   name, `ext.prebid.aliases`) or `imp.ext.bidder`
//!   becomes `imp.tagid`, and `imp.ext` carries only this partner's params under `bidder`.
//!
//! 2.5 has no `mtype`, so the bid's media type is read from `bid.ext.prebid.type` (`mtype` is
//! honoured if the partner sends it), or inferred when the impression offered one media type.

use crate::common::{self, Headers};
use bourse_engine::bidder::{
    AdapterError, Bidder, BidderBids, BidderRequest, BidderResponse, BidderSpec, CallInfo,
    Outbound, Requests,
};
use bourse_engine::openrtb::{Bid, BidRequest, Imp, MediaType, MediaTypes, Publisher, Raw};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The name a spec's `adapter` uses.
pub const NAME: &str = "openrtb25";

/// An OpenRTB 2.5 partner, with its spec checked and parsed.
#[derive(Debug)]
pub struct OpenRtb25 {
    name: String,
    endpoint: String,
    media: MediaTypes,
    publisher_id: String,
    headers: Headers,
}

/// Builds the adapter, or says what is wrong with the spec.
pub fn build(spec: &BidderSpec) -> Result<Arc<dyn Bidder>, String> {
    common::check_endpoint(&spec.endpoint)?;
    common::known_params(&spec.params, &["publisher_id"])?;
    let publisher_id = common::id_param(&spec.params, "publisher_id")?
        .ok_or("param `publisher_id` is required: the partner's id for this publisher")?;
    let mut headers = vec![(
        HeaderName::from_static("x-openrtb-version"),
        HeaderValue::from_static("2.5"),
    )];
    headers.extend(common::extra_headers(spec)?);
    Ok(Arc::new(OpenRtb25 {
        name: spec.name.clone(),
        endpoint: spec.endpoint.clone(),
        media: common::media(spec, MediaTypes::ALL)?,
        publisher_id,
        headers,
    }))
}

impl Bidder for OpenRtb25 {
    fn make_requests(&self, outbound: &Outbound<'_>, call: &CallInfo<'_>) -> Requests {
        let Some(restricted) = outbound.restricted(self.media) else {
            return Requests::default();
        };
        let mut req = (*restricted).clone();
        let mut errors = Vec::new();
        // Addressed by its name or by an alias of it (`ext.prebid.aliases`).
        let code = outbound.prebid_code(&self.name).unwrap_or(&self.name);
        req.imp.retain_mut(|imp| match self.imp_to_25(imp, code) {
            Ok(()) => true,
            Err(msg) => {
                let imp_id = common::quote(&imp.id);
                errors.push(AdapterError::BadInput(format!("imp `{imp_id}`: {msg}")));
                false
            }
        });
        if req.imp.is_empty() {
            return Requests {
                requests: Vec::new(),
                errors,
            };
        }
        req.tmax = Some(call.tmax_ms as i64);
        if let Err(msg) = self.request_to_25(&mut req) {
            errors.push(AdapterError::BadInput(msg));
            return Requests {
                requests: Vec::new(),
                errors,
            };
        }
        let imp_ids = req.imp.iter().map(|imp| imp.id.clone()).collect();
        let body = bourse_engine::openrtb::to_json(&req);
        let request = BidderRequest {
            method: Method::POST,
            uri: self.endpoint.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
            imp_ids,
        };
        Requests {
            requests: vec![request],
            errors,
        }
    }

    fn make_bids(
        &self,
        auction: &BidRequest,
        request: &BidderRequest,
        response: &BidderResponse,
    ) -> Result<Option<BidderBids>, AdapterError> {
        common::openrtb_bids(auction, request, response, self.media, declared_media)
    }
}

impl OpenRtb25 {
    /// Rewrites one impression for 2.5 and this partner's params.
    fn imp_to_25(&self, imp: &mut Imp, code: &str) -> Result<(), String> {
        let mut ext = common::ext_object(imp.ext.as_ref(), "imp.ext")?;
        let params = common::imp_params(&ext, code)?;
        if let Some(placement) = common::id_param(&params, "placement_id")? {
            imp.tagid = Some(placement.into());
        }
        // Other partners' params (and Prebid's own settings) are not this partner's business.
        ext.remove("prebid");
        if params.is_empty() {
            ext.remove("bidder");
        } else {
            ext.insert("bidder".to_owned(), Value::Object(params));
        }
        if let Some(rwdd) = imp.rwdd.take() {
            ext.insert(
                "prebid".to_owned(),
                serde_json::json!({ "is_rewarded_inventory": rwdd }),
            );
        }
        common::set_ext(&mut imp.ext, ext);

        imp.ssai = None;
        imp.qty = None;
        imp.dt = None;
        imp.refresh = None;
        if let Some(video) = &mut imp.video {
            video.maxseq = None;
            video.poddur = None;
            video.podid = None;
            video.podseq = None;
            video.rqddurs.clear();
            video.slotinpod = None;
            video.mincpmpersec = None;
            video.plcmt = None;
            video.poddedupe.clear();
        }
        if let Some(audio) = &mut imp.audio {
            audio.poddur = None;
            audio.rqddurs.clear();
            audio.podid = None;
            audio.podseq = None;
            audio.slotinpod = None;
            audio.mincpmpersec = None;
            audio.poddedupe.clear();
        }
        if let Some(pmp) = &mut imp.pmp {
            for deal in &mut pmp.deals {
                deal.guar = None;
                deal.mincpmpersec = None;
                deal.durfloors = None;
            }
        }
        Ok(())
    }

    /// Rewrites the request-level objects for 2.5 and sets the partner's publisher id.
    fn request_to_25(&self, req: &mut BidRequest) -> Result<(), String> {
        if req.dooh.take().is_some() && req.site.is_none() && req.app.is_none() {
            return Err("dooh inventory cannot be expressed in OpenRTB 2.5".to_owned());
        }
        req.wlangb.clear();
        req.cattax = None;
        req.acat.clear();

        let publisher = if let Some(site) = &mut req.site {
            site.cattax = None;
            site.kwarray.clear();
            site.inventorypartnerdomain = None;
            if let Some(content) = &mut site.content {
                content.cattax = None;
                content.langb = None;
            }
            Some(&mut site.publisher)
        } else if let Some(app) = &mut req.app {
            app.cattax = None;
            app.kwarray.clear();
            app.inventorypartnerdomain = None;
            if let Some(content) = &mut app.content {
                content.cattax = None;
                content.langb = None;
            }
            Some(&mut app.publisher)
        } else {
            None
        };
        if let Some(publisher) = publisher {
            let publisher = publisher.get_or_insert_with(Publisher::default);
            publisher.id = Some(self.publisher_id.as_str().into());
            publisher.cattax = None;
        }

        if let Some(device) = &mut req.device {
            device.sua = None;
            device.langb = None;
        }
        if let Some(regs) = &mut req.regs {
            let mut moved = Moves::default();
            moved.put("gdpr", regs.gdpr.take());
            moved.put("us_privacy", regs.us_privacy.take());
            moved.put("gpp", regs.gpp.take());
            moved.put(
                "gpp_sid",
                Some(std::mem::take(&mut regs.gpp_sid)).filter(|v| !v.is_empty()),
            );
            moved.apply(&mut regs.ext, "regs.ext")?;
        }
        if let Some(user) = &mut req.user {
            user.kwarray.clear();
            let mut moved = Moves::default();
            moved.put("consent", user.consent.take());
            moved.put(
                "eids",
                Some(std::mem::take(&mut user.eids)).filter(|v| !v.is_empty()),
            );
            moved.apply(&mut user.ext, "user.ext")?;
        }
        if let Some(source) = &mut req.source {
            let mut moved = Moves::default();
            moved.put("schain", source.schain.take());
            moved.apply(&mut source.ext, "source.ext")?;
        }
        Ok(())
    }
}

/// Values on their way from a 2.6 field into the object's `ext`.
#[derive(Default)]
struct Moves(Vec<(&'static str, Value)>);

impl Moves {
    fn put<T: Serialize>(&mut self, key: &'static str, value: Option<T>) {
        if let Some(value) = value {
            // Our OpenRTB model always serializes.
            self.0.push((
                key,
                serde_json::to_value(value).expect("OpenRTB value serializes"),
            ));
        }
    }

    /// Writes the values into `ext`, the 2.6 value replacing any 2.5 one already there.
    fn apply(self, ext: &mut Option<Raw>, what: &str) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut map: Map<String, Value> = common::ext_object(ext.as_ref(), what)?;
        for (key, value) in self.0 {
            map.insert(key.to_owned(), value);
        }
        common::set_ext(ext, map);
        Ok(())
    }
}

/// The media type a 2.5 bid declares: `ext.prebid.type`, or `mtype` when the partner sends one.
fn declared_media(bid: &Bid) -> Result<Option<MediaType>, String> {
    let from_ext = match &bid.ext {
        None => None,
        Some(raw) => match raw.parse::<Value>() {
            Ok(ext) => match ext.pointer("/prebid/type") {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) => {
                    Some(common::media_by_name(name).ok_or_else(|| {
                        format!("unknown ext.prebid.type `{}`", common::quote(name))
                    })?)
                }
                Some(_) => return Err("ext.prebid.type must be a string".to_owned()),
            },
            Err(_) => None,
        },
    };
    match from_ext {
        Some(m) => Ok(Some(m)),
        None => common::mtype(bid),
    }
}
