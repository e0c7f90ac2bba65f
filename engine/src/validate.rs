//! Bid request validation, with a machine-readable reason (field and rule) for every rejection.

use crate::currency::is_currency_code;
use crate::openrtb::{BidRequest, Imp, Text};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;

/// The rule of a request whose currencies (`cur`, a floor's `bidfloorcur`) have no configured
/// rate: well formed, but not something this exchange can price, so the auction answers a
/// no-bid with a reason rather than a 400.
pub const UNSUPPORTED_CURRENCY: &str = "unsupported_currency";

/// Why a request was refused: which field broke which rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Always `invalid_request`, so clients can tell our 400s from others.
    pub error: &'static str,
    /// JSON path of the offending field, such as `imp[1].banner.format[0].w`.
    pub field: String,
    /// A stable rule name, such as `required` or `positive`.
    pub rule: &'static str,
    /// A human explanation.
    pub message: String,
}

impl Rejection {
    /// A rejection of `field` under `rule`.
    pub fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            error: "invalid_request",
            field: field.into(),
            rule,
            message: message.into(),
        }
    }

    /// A rejection for a body that is not a well-formed BidRequest.
    pub fn from_parse_error(body: &[u8]) -> Self {
        parse_error::explain::<BidRequest>(body)
    }

    /// A rejection for a body that does not parse as a `T`, in the same words.
    pub fn from_parse_error_as<T: serde::de::DeserializeOwned>(body: &[u8]) -> Self {
        parse_error::explain::<T>(body)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.field, self.rule, self.message)
    }
}

/// Limits a request must respect.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most impressions in one request.
    pub max_imps: usize,
    /// Largest `tmax` accepted, in milliseconds.
    pub max_tmax_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_imps: 100,
            max_tmax_ms: 10_000,
        }
    }
}

type Check = Result<(), Rejection>;

fn reject<T>(
    field: impl Into<String>,
    rule: &'static str,
    message: impl Into<String>,
) -> Result<T, Rejection> {
    Err(Rejection::new(field, rule, message))
}

// Paths are `fmt::Arguments` so that a passing check formats nothing.
fn flag(field: fmt::Arguments<'_>, value: Option<u8>) -> Check {
    match value {
        None | Some(0) | Some(1) => Ok(()),
        Some(v) => reject(
            field.to_string(),
            "boolean",
            format!("must be 0 or 1, got {v}"),
        ),
    }
}

fn currency(field: fmt::Arguments<'_>, value: Option<&str>) -> Check {
    match value {
        Some(code) if !is_currency_code(code) => reject(
            field.to_string(),
            "currency",
            format!("`{code}` is not an ISO-4217 code"),
        ),
        _ => Ok(()),
    }
}

fn floor(field: fmt::Arguments<'_>, value: Option<f64>) -> Check {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => reject(
            field.to_string(),
            "non_negative",
            format!("must be a finite number >= 0, got {v}"),
        ),
        _ => Ok(()),
    }
}

/// Up to this many impressions, repeated ids are found by comparing pairs.
const SMALL_IMP_COUNT: usize = 8;

/// Refuses a negative count or rate. The field's name is only written out for a refusal: the
/// check runs for several fields of every request.
#[inline]
fn non_negative(field: impl FnOnce() -> String, value: Option<i64>) -> Check {
    match value {
        Some(v) if v < 0 => negative(field(), v),
        _ => Ok(()),
    }
}

#[cold]
fn negative(field: String, value: i64) -> Check {
    reject(
        field,
        "non_negative",
        format!("must be 0 or more, got {value}"),
    )
}

/// The rules video and audio share: `mimes` is required, and the counts and rates are not
/// negative.
fn stream(i: usize, kind: &str, mimes: &[Text], counts: [(&str, Option<i64>); 4]) -> Check {
    if mimes.is_empty() {
        return reject(
            format!("imp[{i}].{kind}.mimes"),
            "required",
            format!("{kind} needs mimes"),
        );
    }
    for (name, value) in counts {
        non_negative(|| format!("imp[{i}].{kind}.{name}"), value)?;
    }
    Ok(())
}

/// Checks a parsed request against OpenRTB 2.6's rules and our limits.
pub fn validate(req: &BidRequest, limits: &Limits) -> Check {
    if req.id.is_empty() {
        return reject("id", "required", "the request id is required");
    }
    if req.imp.is_empty() {
        return reject("imp", "required", "at least one impression is required");
    }
    if req.imp.len() > limits.max_imps {
        return reject(
            "imp",
            "max_items",
            format!("at most {} impressions", limits.max_imps),
        );
    }
    let distribution = [req.site.is_some(), req.app.is_some(), req.dooh.is_some()];
    if distribution.iter().filter(|present| **present).count() > 1 {
        return reject(
            "site",
            "exclusive",
            "only one of site, app and dooh may be present",
        );
    }
    match req.at {
        None | Some(1) | Some(2) => {}
        Some(at) => {
            return reject(
                "at",
                "enum",
                format!("auction type {at} is not supported (1 or 2)"),
            );
        }
    }
    if let Some(tmax) = req.tmax
        && (tmax <= 0 || tmax > limits.max_tmax_ms)
    {
        return reject(
            "tmax",
            "range",
            format!("must be between 1 and {} ms", limits.max_tmax_ms),
        );
    }
    for (i, code) in req.cur.iter().enumerate() {
        currency(format_args!("cur[{i}]"), Some(code))?;
    }
    flag(format_args!("test"), req.test)?;
    flag(format_args!("allimps"), req.allimps)?;
    if let Some(regs) = &req.regs {
        flag(format_args!("regs.coppa"), regs.coppa)?;
        flag(format_args!("regs.gdpr"), regs.gdpr)?;
        // A malformed `regs.us_privacy` is not refused: `signals::drop_malformed` ignores it.
    }
    for (at, geo) in [
        (
            "device.geo",
            req.device.as_ref().and_then(|d| d.geo.as_ref()),
        ),
        ("user.geo", req.user.as_ref().and_then(|u| u.geo.as_ref())),
    ] {
        if let Some(geo) = geo {
            non_negative(|| format!("{at}.accuracy"), geo.accuracy)?;
        }
    }
    if let Some(schain) = req.source.as_ref().and_then(|s| s.schain.as_ref()) {
        flag(format_args!("source.schain.complete"), schain.complete)?;
        for (i, node) in schain.nodes.iter().enumerate() {
            // Formatted only when refused, as every path here.
            let at = |field: &str| format!("source.schain.nodes[{i}].{field}");
            if node.asi.as_deref().unwrap_or("").is_empty() {
                return reject(at("asi"), "required", "each supply-chain node needs asi");
            }
            if node.sid.as_deref().unwrap_or("").is_empty() {
                return reject(at("sid"), "required", "each supply-chain node needs sid");
            }
            flag(format_args!("source.schain.nodes[{i}].hp"), node.hp)?;
        }
    }
    // Most requests hold a handful of impressions: comparing with the earlier ones costs less
    // than building a set.
    let mut seen = (req.imp.len() > SMALL_IMP_COUNT).then(|| HashSet::with_capacity(req.imp.len()));
    for (i, imp) in req.imp.iter().enumerate() {
        validate_imp(i, imp)?;
        let repeated = match &mut seen {
            Some(seen) => !seen.insert(imp.id.as_str()),
            None => req.imp[..i].iter().any(|earlier| earlier.id == imp.id),
        };
        if repeated {
            return reject(
                format!("imp[{i}].id"),
                "unique",
                format!("impression id `{}` repeats", imp.id),
            );
        }
    }
    Ok(())
}

fn validate_imp(i: usize, imp: &Imp) -> Check {
    if imp.id.is_empty() {
        return reject(
            format!("imp[{i}].id"),
            "required",
            "each impression needs an id",
        );
    }
    if imp.media_types().is_empty() {
        return reject(
            format!("imp[{i}]"),
            "required",
            "an impression needs banner, video, audio or native",
        );
    }
    floor(format_args!("imp[{i}].bidfloor"), imp.bidfloor)?;
    currency(
        format_args!("imp[{i}].bidfloorcur"),
        imp.bidfloorcur.as_deref(),
    )?;
    flag(format_args!("imp[{i}].instl"), imp.instl)?;
    flag(format_args!("imp[{i}].secure"), imp.secure)?;
    // An interstitial fills the screen: a banner without a size (or 0x0) means exactly that.
    if let Some(banner) = imp.banner.as_ref().filter(|_| imp.instl != Some(1)) {
        let has_size = banner.w.is_some() && banner.h.is_some();
        if banner.format.is_empty() && !has_size {
            return reject(
                format!("imp[{i}].banner"),
                "size",
                "a banner needs format or w and h",
            );
        }
        for (f, format) in banner.format.iter().enumerate() {
            let sized = matches!((format.w, format.h), (Some(w), Some(h)) if w > 0 && h > 0);
            let ratio =
                matches!((format.wratio, format.hratio), (Some(w), Some(h)) if w > 0 && h > 0);
            if !sized && !ratio {
                return reject(
                    format!("imp[{i}].banner.format[{f}]"),
                    "size",
                    "a format needs w and h (or wratio and hratio) above 0",
                );
            }
        }
        if let (Some(0), _) | (_, Some(0)) = (banner.w, banner.h) {
            return reject(
                format!("imp[{i}].banner"),
                "positive",
                "w and h must be above 0",
            );
        }
    }
    if let Some(video) = &imp.video {
        stream(
            i,
            "video",
            &video.mimes,
            [
                ("minbitrate", video.minbitrate),
                ("maxbitrate", video.maxbitrate),
                ("maxseq", video.maxseq),
                ("sequence", video.sequence),
            ],
        )?;
        if let (Some(min), Some(max)) = (video.minduration, video.maxduration)
            && min > max
        {
            return reject(
                format!("imp[{i}].video.minduration"),
                "range",
                "minduration exceeds maxduration",
            );
        }
    }
    if let Some(audio) = &imp.audio {
        stream(
            i,
            "audio",
            &audio.mimes,
            [
                ("minbitrate", audio.minbitrate),
                ("maxbitrate", audio.maxbitrate),
                ("maxseq", audio.maxseq),
                ("sequence", audio.sequence),
            ],
        )?;
    }
    if let Some(native) = &imp.native
        && native.request.as_deref().unwrap_or("").is_empty()
    {
        return reject(
            format!("imp[{i}].native.request"),
            "required",
            "native needs a request",
        );
    }
    if let Some(pmp) = &imp.pmp {
        flag(
            format_args!("imp[{i}].pmp.private_auction"),
            pmp.private_auction,
        )?;
        if pmp.private_auction == Some(1) && pmp.deals.is_empty() {
            return reject(
                format!("imp[{i}].pmp.deals"),
                "required",
                "a private auction needs deals",
            );
        }
        let mut ids = HashSet::new();
        for (d, deal) in pmp.deals.iter().enumerate() {
            if deal.id.is_empty() {
                return reject(
                    format!("imp[{i}].pmp.deals[{d}].id"),
                    "required",
                    "each deal needs an id",
                );
            }
            if !ids.insert(deal.id.as_str()) {
                return reject(
                    format!("imp[{i}].pmp.deals[{d}].id"),
                    "unique",
                    format!("deal id `{}` repeats", deal.id),
                );
            }
            floor(
                format_args!("imp[{i}].pmp.deals[{d}].bidfloor"),
                deal.bidfloor,
            )?;
            currency(
                format_args!("imp[{i}].pmp.deals[{d}].bidfloorcur"),
                deal.bidfloorcur.as_deref(),
            )?;
            match deal.at {
                None | Some(1) | Some(2) | Some(3) => {}
                Some(v) => {
                    return reject(
                        format!("imp[{i}].pmp.deals[{d}].at"),
                        "enum",
                        format!("deal auction type {v} is not supported"),
                    );
                }
            }
        }
    }
    Ok(())
}

pub(crate) mod parse_error;

#[cfg(test)]
mod tests;
