//! Shared inputs for bourse's benchmarks: realistic requests and bid sets.

use bourse_engine::auction::Candidate;
use bourse_engine::openrtb::{Bid, BidRequest, MediaType};

/// A typical display request from a news site: two banner impressions, a deal, GDPR consent,
/// a supply chain and `ext` objects (about 2.4 KB of JSON).
pub const BANNER_SITE: &str = include_str!("../data/banner-site.json");

/// The typical request, parsed.
pub fn banner_site() -> BidRequest {
    serde_json::from_str(BANNER_SITE).expect("benchmark request parses")
}

/// `per_imp` bids on each impression of `request`, from distinct bidders, with rising prices.
pub fn candidates(request: &BidRequest, per_imp: usize) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (imp_index, imp) in request.imp.iter().enumerate() {
        let format = imp.banner.as_ref().and_then(|b| b.format.first());
        for bidder in 0..per_imp {
            let price = 0.5 + bidder as f64 * 0.37;
            out.push(Candidate {
                bidder,
                imp: imp_index,
                seat: format!("seat-{bidder}"),
                bid: Bid {
                    id: format!("bid-{bidder}-{imp_index}"),
                    impid: imp.id.clone(),
                    price: Some(price),
                    adm: Some("<a href=\"https://adv.example/c\"><img src=\"https://cdn.adv.example/a.png\"></a>".into()),
                    adomain: vec!["adv.example".into()],
                    crid: Some(format!("cr-{bidder}")),
                    w: format.and_then(|f| f.w),
                    h: format.and_then(|f| f.h),
                    mtype: Some(1),
                    ..Bid::default()
                },
                media_type: MediaType::Banner,
                price,
            });
        }
    }
    out
}
