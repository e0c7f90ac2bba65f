//! Brand safety: drops bids whose advertiser domain or content category is on a block list.

use bourse_plugin_sdk::hooks::{BidDecision, BidView, ExchangeHooks, RequestView};

/// Advertiser domains refused, with every subdomain.
const BLOCKED_DOMAINS: &[&str] = &["casino.example", "payday-loans.example", "malware.test"];

/// IAB content categories refused; a tier-1 code (`IAB25`) also refuses its tier-2 codes.
const BLOCKED_CATEGORIES: &[&str] = &["IAB25", "IAB26", "IAB7-39", "IAB8-18"];

fn domain_blocked(domain: &str) -> Option<&'static str> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    BLOCKED_DOMAINS.iter().copied().find(|blocked| {
        domain == *blocked
            || domain
                .strip_suffix(blocked)
                .is_some_and(|rest| rest.ends_with('.'))
    })
}

fn category_blocked(category: &str) -> Option<&'static str> {
    BLOCKED_CATEGORIES.iter().copied().find(|blocked| {
        category == *blocked
            || category
                .strip_prefix(blocked)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

fn decide(bid: &BidView) -> BidDecision {
    if let Some(blocked) = bid.adomain.iter().find_map(|d| domain_blocked(d)) {
        return BidDecision::Drop(format!("advertiser domain {blocked} is blocked"));
    }
    if let Some(blocked) = bid.cat.iter().find_map(|c| category_blocked(c)) {
        return BidDecision::Drop(format!("category {blocked} is blocked"));
    }
    BidDecision::Keep
}

struct BrandSafety;

impl ExchangeHooks for BrandSafety {
    fn filter_bids(_request: RequestView, bids: Vec<BidView>) -> Vec<BidDecision> {
        bids.iter().map(decide).collect()
    }
}

bourse_plugin_sdk::export_hooks!(BrandSafety);
