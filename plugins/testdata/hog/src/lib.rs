//! A floor rule that allocates until refused for placement `hog` (and answers the current floor
//! for any other): the host must stop it at its memory cap.

use bourse_plugin_sdk::hooks::{ExchangeHooks, FloorContext};

struct Hog;

impl ExchangeHooks for Hog {
    fn floor(context: FloorContext) -> f64 {
        if context.placement_id != "hog" {
            return context.current_floor;
        }
        let mut held: Vec<Vec<u8>> = Vec::new();
        loop {
            held.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&held);
            if held.len() > 1 << 16 {
                return context.current_floor;
            }
        }
    }
}

bourse_plugin_sdk::export_hooks!(Hog);
