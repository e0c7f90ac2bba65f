//! Misbehaving hooks: a floor rule that traps on every call, and a bid filter that answers with
//! the wrong number of decisions (bad output).

use bourse_plugin_sdk::hooks::{BidDecision, BidView, ExchangeHooks, FloorContext, RequestView};

struct Trap;

impl ExchangeHooks for Trap {
    fn floor(context: FloorContext) -> f64 {
        panic!("no floor for placement {}", context.placement_id)
    }

    fn filter_bids(_request: RequestView, bids: Vec<BidView>) -> Vec<BidDecision> {
        bids.iter().chain(bids.iter()).map(|_| BidDecision::Keep).collect()
    }
}

bourse_plugin_sdk::export_hooks!(Trap);
