//! Native 1.2 in the auction: every native impression's request read and checked per the spec
//! once per auction (a 400 names the offending field inside `imp[i].native.request`), and every
//! native bid's `adm` checked against the assets its impression asked for.

use crate::auction::{Candidate, LossReason};
use crate::openrtb::native::{
    AssetKind, EXCHANGE_SPECIFIC, NativeRequest, NativeResponse, RequestAsset, parse_native,
};
use crate::openrtb::{BidRequest, MediaType};
use crate::validate::Rejection;
use std::collections::HashSet;

/// The parsed Native requests of one auction's native impressions, by impression index. Empty
/// (and unallocated) when no impression offers native.
#[derive(Debug, Default)]
pub struct NativeImps {
    imps: Vec<(usize, NativeRequest)>,
}

impl NativeImps {
    /// Reads and checks the Native request of every native impression.
    pub fn parse(req: &BidRequest) -> Result<NativeImps, Rejection> {
        let mut imps = Vec::new();
        for (i, imp) in req.imp.iter().enumerate() {
            let Some(native) = &imp.native else {
                continue;
            };
            let text = native.request.as_deref().unwrap_or("");
            let base = format!("imp[{i}].native.request");
            if text.is_empty() {
                return Err(Rejection::new(base, "required", "native needs a request"));
            }
            imps.push((i, validate_request(text, &base)?));
        }
        Ok(NativeImps { imps })
    }

    /// The Native request of impression `imp`, if it offers native.
    pub fn get(&self, imp: usize) -> Option<&NativeRequest> {
        self.imps.iter().find(|(i, _)| *i == imp).map(|(_, r)| r)
    }

    /// Checks a native bid's markup against its impression's request; other bids pass.
    pub fn check_bid(&self, c: &Candidate) -> Result<(), NativeRefusal> {
        if c.media_type != MediaType::Native {
            return Ok(());
        }
        let Some(request) = self.get(c.imp) else {
            return Ok(());
        };
        match c.bid.adm.as_deref() {
            // The markup is fetched from the partner's nurl at render time (check_bid already
            // refused a bid with neither), so there is nothing to read here.
            None | Some("") => Ok(()),
            Some(adm) => check_response(request, adm),
        }
    }
}

/// Why a native bid was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeRefusal {
    /// The `adm` is not a Native 1.2 response.
    NotNative,
    /// The response's assets do not answer the request's: an unknown id, an asset of another
    /// kind than asked, or a required asset left out.
    Assets,
}

impl NativeRefusal {
    /// The loss reason the partner is told.
    ///
    /// Both are 204, "Creative Filtered – Incorrect Creative Format": for a native impression
    /// the format *is* the asset layout the request describes, and a markup that is not a native
    /// response, or that does not fill the layout asked for, cannot be rendered in it. 3
    /// ("Invalid Bid Response") is about the bid object itself, and 200 ("Creative Filtered –
    /// General; Reason Unknown") would hide a reason we know.
    pub fn loss_reason(self) -> LossReason {
        LossReason::IncorrectCreativeFormat
    }

    /// A label for `bourse_bidder_rejected_bids_total`, finer than the loss code.
    pub fn label(self) -> &'static str {
        match self {
            NativeRefusal::NotNative => "native_markup",
            NativeRefusal::Assets => "native_assets",
        }
    }
}

/// Whether a native `adm` answers `request`: a Native response whose asset ids are the
/// request's (each of the kind asked for) and which carries every required asset. A response
/// that embeds no assets but points at them (`assetsurl`, `dcourl`) where the request said it
/// supports that cannot be checked here and passes.
pub fn check_response(request: &NativeRequest, adm: &str) -> Result<(), NativeRefusal> {
    let (response, _) =
        parse_native::<NativeResponse>(adm).map_err(|_| NativeRefusal::NotNative)?;
    if response.assets.is_empty()
        && ((response.assetsurl.is_some() && request.aurlsupport == Some(1))
            || (response.dcourl.is_some() && request.durlsupport == Some(1)))
    {
        return Ok(());
    }
    for asset in &response.assets {
        let asked = asset
            .id
            .and_then(|id| request.assets.iter().find(|a| a.id == Some(id)));
        match (asked, asset.kind()) {
            (Some(asked), Some(kind)) if asked.kind() == Some(kind) => {}
            _ => return Err(NativeRefusal::Assets),
        }
    }
    let answered = |wanted: &RequestAsset| response.assets.iter().any(|a| a.id == wanted.id);
    if request
        .assets
        .iter()
        .any(|wanted| wanted.is_required() && !answered(wanted))
    {
        return Err(NativeRefusal::Assets);
    }
    Ok(())
}

type Check = Result<(), Rejection>;

fn reject(path: String, rule: &'static str, message: impl Into<String>) -> Check {
    Err(Rejection::new(path, rule, message))
}

/// A value of a Native enumeration: one of the spec's, or one left to exchanges (500 and up).
fn listed(value: i64, spec: impl Fn(i64) -> bool) -> bool {
    spec(value) || value >= EXCHANGE_SPECIFIC
}

fn enumerated(
    path: impl FnOnce() -> String,
    value: Option<i64>,
    spec: impl Fn(i64) -> bool,
    what: &str,
) -> Check {
    match value {
        Some(v) if !listed(v, spec) => reject(
            path(),
            "enum",
            format!("{v} is not a Native 1.2 {what} (nor 500 or above, for exchange values)"),
        ),
        _ => Ok(()),
    }
}

fn flag(path: impl FnOnce() -> String, value: Option<i64>) -> Check {
    match value {
        None | Some(0) | Some(1) => Ok(()),
        Some(v) => reject(path(), "boolean", format!("must be 0 or 1, got {v}")),
    }
}

fn at_least(path: impl FnOnce() -> String, value: Option<i64>, min: i64) -> Check {
    match value {
        Some(v) if v < min => reject(path(), "range", format!("must be {min} or more, got {v}")),
        _ => Ok(()),
    }
}

/// Reads `text` (an `imp.native.request`) and checks it per Native 1.2; `base` is the request's
/// own path, such as `imp[0].native.request`.
pub fn validate_request(text: &str, base: &str) -> Result<NativeRequest, Rejection> {
    let (request, wrapped) = parse_native::<NativeRequest>(text).map_err(|err| {
        let field = if err.path.is_empty() {
            base.to_owned()
        } else {
            format!("{base}.{}", err.path)
        };
        Rejection::new(field, err.rule, err.message)
    })?;
    let root = if wrapped {
        format!("{base}.native")
    } else {
        base.to_owned()
    };
    check_request(&request, &root)?;
    Ok(request)
}

fn check_request(req: &NativeRequest, root: &str) -> Check {
    let at = |field: &str| format!("{root}.{field}");
    enumerated(
        || at("context"),
        req.context,
        |v| (1..=3).contains(&v),
        "context type (1 content, 2 social, 3 product)",
    )?;
    enumerated(
        || at("contextsubtype"),
        req.contextsubtype,
        |v| matches!(v, 10..=15 | 20..=22 | 30..=32),
        "context subtype (10-15, 20-22, 30-32)",
    )?;
    // Subtypes come in tens, one ten per context type: 1x content, 2x social, 3x product.
    if let (Some(context @ 1..=3), Some(sub @ 10..=32)) = (req.context, req.contextsubtype)
        && sub / 10 != context
    {
        return reject(
            at("contextsubtype"),
            "combination",
            format!(
                "subtype {sub} belongs to context type {}, not {context}",
                sub / 10
            ),
        );
    }
    enumerated(
        || at("plcmttype"),
        req.plcmttype,
        |v| (1..=4).contains(&v),
        "placement type (1 in feed, 2 atomic unit, 3 outside content, 4 recommendation widget)",
    )?;
    at_least(|| at("plcmtcnt"), req.plcmtcnt, 1)?;
    at_least(|| at("seq"), req.seq, 0)?;
    flag(|| at("aurlsupport"), req.aurlsupport)?;
    flag(|| at("durlsupport"), req.durlsupport)?;
    flag(|| at("privacy"), req.privacy)?;
    if req.assets.is_empty() {
        return reject(
            at("assets"),
            "required",
            "a native request asks for at least one asset",
        );
    }
    let mut ids = HashSet::with_capacity(req.assets.len());
    for (a, asset) in req.assets.iter().enumerate() {
        let path = format!("{root}.assets[{a}]");
        check_asset(asset, &path)?;
        if let Some(id) = asset.id
            && !ids.insert(id)
        {
            return reject(
                format!("{path}.id"),
                "unique",
                format!("asset id {id} repeats"),
            );
        }
    }
    for (e, tracker) in req.eventtrackers.iter().enumerate() {
        let path = format!("{root}.eventtrackers[{e}]");
        match tracker.event {
            None => {
                return reject(
                    format!("{path}.event"),
                    "required",
                    "an event tracker names its event",
                );
            }
            event => enumerated(
                || format!("{path}.event"),
                event,
                |v| (1..=4).contains(&v),
                "event type (1 impression, 2 viewable MRC 50, 3 viewable MRC 100, 4 viewable video 50)",
            )?,
        }
        if tracker.methods.is_empty() {
            return reject(
                format!("{path}.methods"),
                "required",
                "an event tracker lists at least one method",
            );
        }
        for (m, method) in tracker.methods.iter().enumerate() {
            enumerated(
                || format!("{path}.methods[{m}]"),
                Some(*method),
                |v| (1..=2).contains(&v),
                "tracking method (1 image, 2 JavaScript)",
            )?;
        }
    }
    Ok(())
}

fn check_asset(asset: &RequestAsset, path: &str) -> Check {
    match asset.id {
        None => {
            return reject(
                format!("{path}.id"),
                "required",
                "each asset needs an id, which the response answers with",
            );
        }
        id => at_least(|| format!("{path}.id"), id, 0)?,
    }
    flag(|| format!("{path}.required"), asset.required)?;
    let at = |kind: AssetKind, field: &str| format!("{path}.{}.{field}", kind.as_str());
    match (&asset.title, &asset.img, &asset.video, &asset.data) {
        (Some(title), None, None, None) => match title.len {
            None => reject(
                at(AssetKind::Title, "len"),
                "required",
                "a title asset gives its len",
            ),
            len => at_least(|| at(AssetKind::Title, "len"), len, 1),
        },
        (None, Some(img), None, None) => {
            let at = |field: &str| at(AssetKind::Img, field);
            enumerated(
                || at("type"),
                img.image_type,
                |v| (1..=3).contains(&v),
                "image type (1 icon, 2 logo, 3 main)",
            )?;
            at_least(|| at("w"), img.w, 0)?;
            at_least(|| at("h"), img.h, 0)?;
            at_least(|| at("wmin"), img.wmin, 0)?;
            at_least(|| at("hmin"), img.hmin, 0)
        }
        (None, None, Some(video), None) => {
            let at = |field: &str| at(AssetKind::Video, field);
            if video.mimes.is_empty() {
                return reject(at("mimes"), "required", "a video asset lists its mimes");
            }
            let (Some(min), Some(max)) = (video.minduration, video.maxduration) else {
                let missing = if video.minduration.is_none() {
                    "minduration"
                } else {
                    "maxduration"
                };
                return reject(
                    at(missing),
                    "required",
                    "a video asset gives minduration and maxduration",
                );
            };
            at_least(|| at("minduration"), Some(min), 0)?;
            at_least(|| at("maxduration"), Some(max), 1)?;
            if min > max {
                return reject(
                    at("minduration"),
                    "range",
                    "minduration exceeds maxduration",
                );
            }
            if video.protocols.is_empty() {
                return reject(
                    at("protocols"),
                    "required",
                    "a video asset lists its protocols",
                );
            }
            for (p, protocol) in video.protocols.iter().enumerate() {
                enumerated(
                    || at(&format!("protocols[{p}]")),
                    Some(*protocol),
                    |v| (1..=14).contains(&v),
                    "video protocol (OpenRTB list 5.8: 1-14)",
                )?;
            }
            Ok(())
        }
        (None, None, None, Some(data)) => {
            let at = |field: &str| at(AssetKind::Data, field);
            match data.data_type {
                None => return reject(at("type"), "required", "a data asset gives its type"),
                data_type => enumerated(
                    || at("type"),
                    data_type,
                    |v| (1..=12).contains(&v),
                    "data type (1 sponsored ... 12 call to action)",
                )?,
            }
            at_least(|| at("len"), data.len, 1)
        }
        _ => reject(
            path.to_owned(),
            "one_of",
            "an asset is exactly one of title, img, video and data",
        ),
    }
}

#[cfg(test)]
mod tests;
