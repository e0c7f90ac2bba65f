//! Misbehaving hooks: a floor rule that traps for placement `trap`, a bid filter that answers
//! with one decision too many when given bids (bad output), and a request filter that always
//! traps (so a version advertising it fails its warm-up).

use bourse_plugin_sdk::hooks::{
    BidDecision, BidView, ExchangeHooks, FloorContext, RequestDecision, RequestView,
};

struct Trap;

impl ExchangeHooks for Trap {
    fn floor(context: FloorContext) -> f64 {
        if context.placement_id == "trap" {
            panic!("no floor for placement {}", context.placement_id);
        }
        context.current_floor
    }

    fn filter_bids(_request: RequestView, bids: Vec<BidView>) -> Vec<BidDecision> {
        if bids.is_empty() {
            return Vec::new();
        }
        bids.iter()
            .chain(bids.first())
            .map(|_| BidDecision::Keep)
            .collect()
    }

    fn filter_request(request: RequestView) -> RequestDecision {
        panic!("request {} refused by panicking", request.id)
    }
}

bourse_plugin_sdk::export_hooks!(Trap);
