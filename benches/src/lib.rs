//! Shared inputs for bourse's benchmarks (realistic requests, responses and bid sets) and the
//! end-to-end harness behind `bourse-e2e`.

pub mod e2e;
pub mod native_floor;

use bourse_engine::auction::Candidate;
use bourse_engine::openrtb::{Bid, BidRequest, MediaType};

/// A typical display request from a news site: two banner impressions, a deal, GDPR consent,
/// a supply chain and `ext` objects (about 2.4 KB of JSON).
pub const BANNER_SITE: &str = include_str!("../data/banner-site.json");

/// A rewarded in-app video request: one video impression with a companion, a deal, a mobile
/// device with a precise location, structured user agent and SKAdNetwork `ext` (about 3.5 KB).
pub const APP_VIDEO: &str = include_str!("../data/app-video.json");

/// A partner's answer to [`BANNER_SITE`]: one seat, two banner bids with markup, win, billing
/// and loss URLs, and a bid `ext`.
pub const BID_RESPONSE: &str = include_str!("../data/bid-response.json");

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
                seat: format!("seat-{bidder}").into(),
                bid: Bid {
                    id: format!("bid-{bidder}-{imp_index}").into(),
                    impid: imp.id.clone(),
                    price: Some(price),
                    adm: Some("<a href=\"https://adv.example/c\"><img src=\"https://cdn.adv.example/a.png\"></a>".into()),
                    adomain: vec!["adv.example".into()],
                    crid: Some(format!("cr-{bidder}").into()),
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
