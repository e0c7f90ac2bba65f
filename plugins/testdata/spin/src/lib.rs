//! A floor rule that never returns for placement `spin` (and answers the current floor for any
//! other): the host must cut it off at its deadline or when its fuel runs out.

use bourse_plugin_sdk::hooks::{ExchangeHooks, FloorContext};

struct Spin;

impl ExchangeHooks for Spin {
    fn floor(context: FloorContext) -> f64 {
        if context.placement_id != "spin" {
            return context.current_floor;
        }
        let mut n = context.current_floor;
        loop {
            n = std::hint::black_box(n + 1.0);
        }
    }
}

bourse_plugin_sdk::export_hooks!(Spin);
