//! OpenRTB 2.5 → 2.6 on the way in: the `ext` homes 2.5 clients still use for what 2.6 made
//! first-class fields are moved to those fields, the 2.6 field winning when both are present.
//!
//! | 2.5 (`ext`)                              | 2.6                 |
//! | ---------------------------------------- | ------------------- |
//! | `regs.ext.gdpr`                          | `regs.gdpr`         |
//! | `regs.ext.us_privacy`                    | `regs.us_privacy`   |
//! | `regs.ext.gpp`, `regs.ext.gpp_sid`       | `regs.gpp`, `regs.gpp_sid` |
//! | `user.ext.consent`                       | `user.consent`      |
//! | `user.ext.eids`                          | `user.eids`         |
//! | `source.ext.schain`                      | `source.schain`     |
//! | `imp.ext.prebid.is_rewarded_inventory`   | `imp.rwdd`          |
//!
//! The 2.5 copy is removed either way (as Prebid Server does), so a partner never sees two
//! versions of one signal. An `ext` is only read when its text names one of these keys: a 2.6
//! request pays a few substring scans and allocates nothing.

use super::splice::Changed;
use super::{BidRequest, Eid, Raw, SupplyChain};
use crate::openrtb_object;
use crate::validate::Rejection;
use serde::de::DeserializeOwned;

openrtb_object! {
    /// `regs.ext` as far as the move cares.
    pub struct RegsExt {
        "gdpr" => gdpr: Option<Raw>,
        "us_privacy" => us_privacy: Option<Raw>,
        "gpp" => gpp: Option<Raw>,
        "gpp_sid" => gpp_sid: Option<Raw>,
    }
}

openrtb_object! {
    /// `user.ext` as far as the move cares.
    pub struct UserExt {
        "consent" => consent: Option<Raw>,
        "eids" => eids: Option<Raw>,
    }
}

openrtb_object! {
    /// `source.ext` as far as the move cares.
    pub struct SourceExt {
        "schain" => schain: Option<Raw>,
    }
}

openrtb_object! {
    /// `imp.ext` as far as the move cares.
    pub struct ImpExt {
        "prebid" => prebid: Option<ImpPrebidExt>,
    }
}

openrtb_object! {
    /// `imp.ext.prebid` as far as the move cares.
    pub struct ImpPrebidExt {
        "is_rewarded_inventory" => is_rewarded_inventory: Option<Raw>,
    }
}

/// Whether `ext` is present and its text names one of `keys` (a cheap filter before parsing).
fn names_any(ext: &Option<Raw>, keys: &[&str]) -> bool {
    ext.as_ref().is_some_and(|raw| raw.names_any(keys))
}

/// Reads an `ext` into its typed view; `None` when it is not an object this model can read,
/// in which case it is left as it is.
fn read_ext<T: DeserializeOwned>(ext: &Option<Raw>) -> Option<T> {
    ext.as_ref().and_then(|raw| raw.parse::<T>().ok())
}

/// Writes what is left of an `ext` back; an `ext` left empty is dropped.
fn write_ext<T: serde::Serialize + Default + PartialEq>(ext: &mut Option<Raw>, rest: &T) {
    *ext = if *rest == T::default() {
        None
    } else {
        // Every part of `rest` was read from JSON, so it writes back as JSON.
        Raw::from_value(rest).ok()
    };
}

/// Reads a moved value into the 2.6 field's type, or refuses the request naming the 2.5 path.
fn convert<T: DeserializeOwned>(raw: &Raw, field: &str, expected: &str) -> Result<T, Rejection> {
    raw.parse::<T>()
        .map_err(|_| Rejection::new(field, "type", format!("must be {expected}")))
}

/// Reads a moved 0/1 flag.
fn flag(raw: &Raw, field: impl Fn() -> String) -> Result<u8, Rejection> {
    let value: i64 = convert(raw, &field(), "0 or 1")?;
    match value {
        0 | 1 => Ok(value as u8),
        _ => Err(Rejection::new(
            field(),
            "boolean",
            format!("must be 0 or 1, got {value}"),
        )),
    }
}

/// Moves every 2.5 `ext` form present in `req` to its 2.6 field. Refuses a 2.5 value whose
/// type is wrong, naming where it was sent (`regs.ext.gdpr`). Answers which top-level members
/// it changed.
pub fn upconvert(req: &mut BidRequest) -> Result<Changed, Rejection> {
    let mut changed = Changed::default();
    if let Some(regs) = &mut req.regs
        && names_any(&regs.ext, &["gdpr", "us_privacy", "gpp", "gpp_sid"])
        && let Some(mut ext) = read_ext::<RegsExt>(&regs.ext).filter(|e| {
            e.gdpr.is_some() || e.us_privacy.is_some() || e.gpp.is_some() || e.gpp_sid.is_some()
        })
    {
        let (gdpr, usp, gpp, gpp_sid) = (
            ext.gdpr.take(),
            ext.us_privacy.take(),
            ext.gpp.take(),
            ext.gpp_sid.take(),
        );
        if let Some(raw) = gdpr
            && regs.gdpr.is_none()
        {
            regs.gdpr = Some(flag(&raw, || "regs.ext.gdpr".to_owned())?);
        }
        if let Some(raw) = usp
            && regs.us_privacy.is_none()
        {
            regs.us_privacy = Some(convert(&raw, "regs.ext.us_privacy", "a string")?);
        }
        if let Some(raw) = gpp
            && regs.gpp.is_none()
        {
            regs.gpp = Some(convert(&raw, "regs.ext.gpp", "a string")?);
        }
        if let Some(raw) = gpp_sid
            && regs.gpp_sid.is_empty()
        {
            regs.gpp_sid = convert(&raw, "regs.ext.gpp_sid", "an array of integers")?;
        }
        write_ext(&mut regs.ext, &ext);
        changed.mark("regs");
    }
    if let Some(user) = &mut req.user
        && names_any(&user.ext, &["consent", "eids"])
        && let Some(mut ext) =
            read_ext::<UserExt>(&user.ext).filter(|e| e.consent.is_some() || e.eids.is_some())
    {
        if let Some(raw) = ext.consent.take()
            && user.consent.is_none()
        {
            user.consent = Some(convert(&raw, "user.ext.consent", "a string")?);
        }
        if let Some(raw) = ext.eids.take()
            && user.eids.is_empty()
        {
            user.eids = convert::<Vec<Eid>>(
                &raw,
                "user.ext.eids",
                "an array of extended identifier objects",
            )?;
        }
        write_ext(&mut user.ext, &ext);
        changed.mark("user");
    }
    if let Some(source) = &mut req.source
        && names_any(&source.ext, &["schain"])
        && let Some(mut ext) = read_ext::<SourceExt>(&source.ext).filter(|e| e.schain.is_some())
    {
        if let Some(raw) = ext.schain.take()
            && source.schain.is_none()
        {
            source.schain = Some(convert::<SupplyChain>(
                &raw,
                "source.ext.schain",
                "a supply chain object (complete, nodes, ver)",
            )?);
        }
        write_ext(&mut source.ext, &ext);
        changed.mark("source");
    }
    for (i, imp) in req.imp.iter_mut().enumerate() {
        if !names_any(&imp.ext, &["is_rewarded_inventory"]) {
            continue;
        }
        let Some(mut ext) = read_ext::<ImpExt>(&imp.ext) else {
            continue;
        };
        let Some(raw) = ext
            .prebid
            .as_mut()
            .and_then(|p| p.is_rewarded_inventory.take())
        else {
            continue;
        };
        if imp.rwdd.is_none() {
            imp.rwdd = Some(flag(&raw, || {
                format!("imp[{i}].ext.prebid.is_rewarded_inventory")
            })?);
        }
        if ext
            .prebid
            .as_ref()
            .is_some_and(|p| *p == ImpPrebidExt::default())
        {
            ext.prebid = None;
        }
        write_ext(&mut imp.ext, &ext);
        changed.mark("imp");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests;
