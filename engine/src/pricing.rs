//! Net floors: a seller's floor is what the seller receives, so the auction enforces (and
//! partners are told) that floor grossed up by the exchange's fee.
//!
//! The answer carries `clearing × (1 − fee)`. For it never to fall below a floor `F`, the
//! clearing price must be at least `F / (1 − fee)`; computed naively in floating point, a clearing
//! price exactly at that quotient can come back as `0.9999999999999999 × F`. [`gross_of_fee`]
//! therefore returns the smallest `f64` whose [`net_of_fee`] is at least `F`: multiplication by a
//! positive constant is monotone in IEEE arithmetic, so any clearing price at or above it nets at
//! least `F`, with no tolerance anywhere.

use crate::auction::ImpTerms;
use crate::openrtb::{DEFAULT_CURRENCY, Imp, Text};

/// What the seller receives of a price the buyer pays: `gross × (1 − fee)`. Every net figure
/// (the answer's `bid.price`, the ledger's net) is computed by this one expression, so that
/// [`gross_of_fee`]'s guarantee holds for all of them.
#[inline]
pub fn net_of_fee(gross: f64, fee: f64) -> f64 {
    gross * (1.0 - fee)
}

/// The smallest price whose [`net_of_fee`] is at least `net`: the gross floor for a net one.
/// Zero, negative and non-finite amounts, and a fee of zero, come back unchanged.
pub fn gross_of_fee(net: f64, fee: f64) -> f64 {
    let keep = 1.0 - fee;
    if !net.is_finite() || net <= 0.0 || keep.is_nan() || keep <= 0.0 || keep == 1.0 {
        return net;
    }
    let mut gross = net / keep;
    if !gross.is_finite() {
        return gross;
    }
    // The quotient is correctly rounded, so it is within an ulp or two of the answer: step up
    // until the net is enough, then down while it still is. Both loops end after a few steps.
    while gross * keep < net {
        gross = gross.next_up();
    }
    for _ in 0..4 {
        let lower = gross.next_down();
        if lower * keep >= net {
            gross = lower;
        } else {
            break;
        }
    }
    gross
}

/// What a winning partner pays, in its currency and on its scale (`${AUCTION_PRICE}`): the
/// clearing price times `to_bidder` (partner units per auction-currency unit on the adjusted
/// scale), never above what it bid.
#[inline]
pub fn bidder_price(clearing: f64, to_bidder: f64, bid_price: f64) -> f64 {
    (clearing * to_bidder).min(bid_price)
}

/// The gross floor as partners are told it: rounded up to the millionth (the precision of
/// `${AUCTION_PRICE}`). A gross floor such as `0.41111111111111115` written out in full can be
/// read back an ulp low by a JSON parser that is not correctly rounded (serde_json's default
/// among them), so a partner bidding exactly what it was told would fall short of it; a short
/// decimal reads back exactly, and any bid at or above it meets the gross floor.
pub fn told_floor(gross: f64) -> f64 {
    if gross.is_nan() || gross <= 0.0 || gross >= 1e9 {
        return gross;
    }
    let millionths = (gross * 1e6).ceil();
    let told = millionths / 1e6;
    if told >= gross {
        told
    } else {
        (millionths + 1.0) / 1e6
    }
}

/// Turns an impression's net floors (the seller's, the exchange minimum, its deals') into the
/// gross floors the auction enforces, in place.
pub fn gross_up_terms(terms: &mut ImpTerms, fee: f64) {
    terms.floor = gross_of_fee(terms.floor, fee);
    for deal in &mut terms.deals {
        deal.floor = gross_of_fee(deal.floor, fee);
    }
}

/// Tells partners the floors in force: where an impression's (or a deal's) enforced floor is not
/// what the seller wrote, it is written into the impression as `bidfloor` in the auction
/// `currency`, rounded up by [`told_floor`]. A floor already stated in the auction currency at
/// the enforced amount is left alone, so with no fee and no exchange minimum nothing is written
/// (nor allocated). Answers whether it wrote anything.
pub fn tell_floors(imp: &mut Imp, terms: &ImpTerms, currency: &str) -> bool {
    let mut told = restate(
        &mut imp.bidfloor,
        &mut imp.bidfloorcur,
        terms.floor,
        currency,
    );
    if let Some(pmp) = &mut imp.pmp {
        for deal in &mut pmp.deals {
            if let Some(enforced) = terms.deals.iter().find(|d| d.id == deal.id) {
                told |= restate(
                    &mut deal.bidfloor,
                    &mut deal.bidfloorcur,
                    enforced.floor,
                    currency,
                );
            }
        }
    }
    told
}

fn restate(floor: &mut Option<f64>, cur: &mut Option<Text>, enforced: f64, currency: &str) -> bool {
    let stated_cur = cur.as_deref().unwrap_or(DEFAULT_CURRENCY);
    let stated = floor.unwrap_or(0.0);
    if stated_cur == currency && stated == enforced {
        return false;
    }
    if enforced <= 0.0 && stated <= 0.0 {
        return false;
    }
    *floor = Some(told_floor(enforced));
    if stated_cur != currency {
        *cur = Some(currency.into());
    }
    true
}

#[cfg(test)]
mod tests;
