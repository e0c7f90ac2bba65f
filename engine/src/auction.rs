//! The auction proper: bid validation with OpenRTB loss reasons, and first/second price clearing.
//!
//! Everything here is pure: prices are already in the auction currency and adjusted, so the rules
//! can be tested exhaustively without sockets.

use crate::openrtb::{Bid, BidRequest, Imp, MediaType, Text};
use serde::Serialize;

/// OpenRTB 2.6 loss reason codes (List 5.25) that bourse reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[repr(u16)]
pub enum LossReason {
    /// The bid won.
    Won = 0,
    /// Something failed inside the exchange.
    InternalError = 1,
    /// The bid arrived after the deadline.
    Expired = 2,
    /// The bid is malformed (for example an unknown impression or a bad price).
    InvalidBidResponse = 3,
    /// The deal id is not one offered for this impression.
    InvalidDealId = 4,
    /// The bid carries neither markup nor a win notice URL.
    MissingMarkup = 7,
    /// The bid has no price.
    MissingBidPrice = 9,
    /// Below the impression's floor.
    BelowAuctionFloor = 100,
    /// Below the deal's floor.
    BelowDealFloor = 101,
    /// Another bid was higher.
    LostToHigherBid = 102,
    /// A deal bid won.
    LostToDealBid = 103,
    /// The buyer seat is blocked.
    BuyerSeatBlocked = 104,
    /// Refused by the exchange's policy: a bid filter plugin dropped it.
    DisapprovedByExchange = 202,
    /// The creative's size is not offered.
    SizeNotAllowed = 203,
    /// The creative's format is not offered by the impression.
    IncorrectCreativeFormat = 204,
    /// The advertiser domain is blocked (`badv`).
    AdvertiserExclusions = 205,
    /// The app bundle is blocked (`bapp`).
    AppBundleExclusions = 206,
    /// The category is blocked (`bcat`).
    CategoryExclusions = 209,
    /// A creative attribute is blocked (`battr`).
    CreativeAttributeExclusions = 210,
}

impl LossReason {
    /// The numeric code for `${AUCTION_LOSS}`.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            LossReason::Won => "won",
            LossReason::InternalError => "internal_error",
            LossReason::Expired => "expired",
            LossReason::InvalidBidResponse => "invalid_bid",
            LossReason::InvalidDealId => "invalid_deal",
            LossReason::MissingMarkup => "missing_markup",
            LossReason::MissingBidPrice => "missing_price",
            LossReason::BelowAuctionFloor => "below_floor",
            LossReason::BelowDealFloor => "below_deal_floor",
            LossReason::LostToHigherBid => "lost_to_higher_bid",
            LossReason::LostToDealBid => "lost_to_deal",
            LossReason::BuyerSeatBlocked => "seat_blocked",
            LossReason::DisapprovedByExchange => "disapproved",
            LossReason::SizeNotAllowed => "size_not_allowed",
            LossReason::IncorrectCreativeFormat => "wrong_format",
            LossReason::AdvertiserExclusions => "blocked_advertiser",
            LossReason::AppBundleExclusions => "blocked_app",
            LossReason::CategoryExclusions => "blocked_category",
            LossReason::CreativeAttributeExclusions => "blocked_attribute",
        }
    }
}

/// The terms one impression is sold under, in the auction currency.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpTerms {
    /// The impression's floor (never below the exchange's minimum).
    pub floor: f64,
    /// The floor of each offered deal, by deal id, with the deal's auction type override.
    pub deals: Vec<DealTerms>,
    /// Whether only deal bids may win.
    pub private_auction: bool,
}

/// A deal's floor and rules, in the auction currency.
#[derive(Debug, Clone, PartialEq)]
pub struct DealTerms {
    /// Deal id.
    pub id: Text,
    /// Deal floor.
    pub floor: f64,
    /// Auction type override: 1 first price, 2 second price, 3 fixed price at the floor.
    pub at: Option<i64>,
    /// Seats allowed to bid on the deal (empty: any).
    pub wseat: Vec<Text>,
}

/// A bid that reached the auction, priced in the auction currency after adjustment.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Index of the bidder (in the exchange's bidder list) that placed it.
    pub bidder: usize,
    /// Index of the impression in the request.
    pub imp: usize,
    /// The seat that placed it (the bidder's name when the partner names none).
    pub seat: Text,
    /// The bid as received.
    pub bid: Bid,
    /// What the markup is.
    pub media_type: MediaType,
    /// Price used for ranking and clearing: auction currency, adjusted.
    pub price: f64,
}

/// How the auction clears.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// 1 first price, 2 second price.
    pub auction_type: i64,
    /// Added to the second price in a second-price auction.
    pub increment: f64,
}

/// The winner of one impression.
#[derive(Debug, Clone, PartialEq)]
pub struct Winner {
    /// Index into the candidate list.
    pub candidate: usize,
    /// Price the winner pays, in the auction currency, on the adjusted scale.
    pub clearing: f64,
}

/// What happened to every candidate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// At most one winner per impression, in impression order.
    pub winners: Vec<Winner>,
    /// Every candidate that did not win, with the reason.
    pub losers: Vec<(usize, LossReason)>,
}

/// Terms for every impression: floors converted by the caller through `convert`, which returns
/// the amount in the auction currency or `None` for an unknown currency.
pub fn imp_terms(
    imp: &Imp,
    min_floor: f64,
    convert: impl Fn(f64, &str) -> Option<f64>,
) -> Result<ImpTerms, String> {
    let cur = imp
        .bidfloorcur
        .as_deref()
        .unwrap_or(crate::openrtb::DEFAULT_CURRENCY);
    let floor = convert(imp.bidfloor.unwrap_or(0.0), cur)
        .ok_or_else(|| format!("no conversion rate for bidfloorcur `{cur}`"))?;
    let mut deals = Vec::new();
    if let Some(pmp) = &imp.pmp {
        for deal in &pmp.deals {
            let dcur = deal
                .bidfloorcur
                .as_deref()
                .unwrap_or(crate::openrtb::DEFAULT_CURRENCY);
            let dfloor = convert(deal.bidfloor.unwrap_or(0.0), dcur)
                .ok_or_else(|| format!("no conversion rate for deal bidfloorcur `{dcur}`"))?;
            deals.push(DealTerms {
                id: deal.id.clone(),
                floor: dfloor.max(min_floor),
                at: deal.at,
                wseat: deal.wseat.clone(),
            });
        }
    }
    Ok(ImpTerms {
        floor: floor.max(min_floor),
        deals,
        private_auction: imp.is_private_auction(),
    })
}

/// Whether an advertiser domain is `blocked` or one of its subdomains, ignoring ASCII case and
/// a leading `www.`. Compared in place: it runs for every bid against every `badv` entry.
fn domain_blocked(adomain: &str, blocked: &str) -> bool {
    let adomain = adomain.trim().trim_start_matches("www.").as_bytes();
    let blocked = blocked.trim().trim_start_matches("www.").as_bytes();
    if adomain.eq_ignore_ascii_case(blocked) {
        return true;
    }
    let Some(dot) = adomain.len().checked_sub(blocked.len() + 1) else {
        return false;
    };
    adomain[dot] == b'.' && adomain[dot + 1..].eq_ignore_ascii_case(blocked)
}

/// Checks one candidate against the request and its impression's terms.
pub fn check_bid(req: &BidRequest, terms: &[ImpTerms], c: &Candidate) -> Result<(), LossReason> {
    let imp = &req.imp[c.imp];
    let terms = &terms[c.imp];
    let bid = &c.bid;
    match bid.price {
        None => return Err(LossReason::MissingBidPrice),
        Some(p) if !p.is_finite() || p <= 0.0 || !c.price.is_finite() || c.price <= 0.0 => {
            return Err(LossReason::InvalidBidResponse);
        }
        Some(_) => {}
    }
    if bid.adm.as_deref().unwrap_or("").is_empty() && bid.nurl.as_deref().unwrap_or("").is_empty() {
        return Err(LossReason::MissingMarkup);
    }
    if !imp.media_types().contains(c.media_type) {
        return Err(LossReason::IncorrectCreativeFormat);
    }
    if c.media_type == MediaType::Banner {
        if let (Some(w), Some(h), Some(banner)) = (bid.w, bid.h, imp.banner.as_ref()) {
            let mut fixed_sizes = banner
                .format
                .iter()
                .filter_map(|f| Some((f.w?, f.h?)))
                .chain(banner.w.zip(banner.h))
                // 0x0 is an interstitial's "any size", not a size a creative must match.
                .filter(|&(w, h)| w > 0 && h > 0)
                .peekable();
            let has_ratio = banner.format.iter().any(|f| f.wratio.is_some());
            if !has_ratio && fixed_sizes.peek().is_some() && !fixed_sizes.any(|size| size == (w, h))
            {
                return Err(LossReason::SizeNotAllowed);
            }
        }
        let battr = imp
            .banner
            .as_ref()
            .map(|b| b.battr.as_slice())
            .unwrap_or(&[]);
        if bid.attr.iter().any(|a| battr.contains(a)) {
            return Err(LossReason::CreativeAttributeExclusions);
        }
    }
    if req.bseat.contains(&c.seat) || (!req.wseat.is_empty() && !req.wseat.contains(&c.seat)) {
        return Err(LossReason::BuyerSeatBlocked);
    }
    if bid.cat.iter().any(|cat| req.bcat.contains(cat)) {
        return Err(LossReason::CategoryExclusions);
    }
    if bid
        .adomain
        .iter()
        .any(|d| req.badv.iter().any(|b| domain_blocked(d, b)))
    {
        return Err(LossReason::AdvertiserExclusions);
    }
    if let Some(bundle) = &bid.bundle
        && req.bapp.contains(bundle)
    {
        return Err(LossReason::AppBundleExclusions);
    }
    match bid.dealid.as_deref().filter(|d| !d.is_empty()) {
        Some(deal_id) => {
            let deal = terms
                .deals
                .iter()
                .find(|d| d.id == deal_id)
                .ok_or(LossReason::InvalidDealId)?;
            if !deal.wseat.is_empty() && !deal.wseat.contains(&c.seat) {
                return Err(LossReason::BuyerSeatBlocked);
            }
            if c.price < deal.floor {
                return Err(LossReason::BelowDealFloor);
            }
        }
        None if terms.private_auction => return Err(LossReason::InvalidDealId),
        None if c.price < terms.floor => return Err(LossReason::BelowAuctionFloor),
        None => {}
    }
    Ok(())
}

/// Runs the auction over already-checked candidates: `valid[i]` says whether candidate `i`
/// passed [`check_bid`]. Ties go to the candidate that arrived first.
pub fn clear(
    terms: &[ImpTerms],
    candidates: &[Candidate],
    valid: &[bool],
    rules: Rules,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| valid[i]).collect();
    // Stable sort keeps arrival order among equal prices.
    order.sort_by(|&a, &b| {
        let (ca, cb) = (&candidates[a], &candidates[b]);
        ca.imp.cmp(&cb.imp).then(cb.price.total_cmp(&ca.price))
    });
    let mut start = 0;
    while start < order.len() {
        let imp = candidates[order[start]].imp;
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| candidates[i].imp == imp)
                .count();
        let ranked = &order[start..end];
        let winner = &candidates[ranked[0]];
        let deal = winner
            .bid
            .dealid
            .as_deref()
            .and_then(|id| terms[imp].deals.iter().find(|d| d.id == id));
        let floor = deal.map_or(terms[imp].floor, |d| d.floor);
        let auction_type = deal.and_then(|d| d.at).unwrap_or(rules.auction_type);
        let clearing = match auction_type {
            1 => winner.price,
            3 => floor.min(winner.price),
            _ => {
                let second = ranked.get(1).map_or(floor, |&i| candidates[i].price);
                (second.max(floor) + rules.increment).min(winner.price)
            }
        };
        outcome.winners.push(Winner {
            candidate: ranked[0],
            clearing,
        });
        let reason = if deal.is_some() {
            LossReason::LostToDealBid
        } else {
            LossReason::LostToHigherBid
        };
        for &i in &ranked[1..] {
            let loser_is_deal = candidates[i].bid.dealid.is_some();
            outcome.losers.push((
                i,
                if loser_is_deal {
                    LossReason::LostToHigherBid
                } else {
                    reason
                },
            ));
        }
        start = end;
    }
    outcome
}

#[cfg(test)]
mod tests;
