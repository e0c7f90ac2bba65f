//! A floor rule that never returns: the host must cut it off at its deadline.

use bourse_plugin_sdk::hooks::{ExchangeHooks, FloorContext};

struct Spin;

impl ExchangeHooks for Spin {
    fn floor(context: FloorContext) -> f64 {
        let mut n = context.current_floor;
        loop {
            n = std::hint::black_box(n + 1.0);
        }
    }
}

bourse_plugin_sdk::export_hooks!(Spin);
