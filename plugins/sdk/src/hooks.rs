//! Exchange hooks: request filter and enrichment, bid filter and adjustment, floor rule.

/// Generated bindings of `bourse:exchange-hooks/hooks`; plugin authors use the re-exports.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: ["../wit/host", "../wit/exchange-hooks"],
        world: "bourse:exchange-hooks/hooks",
        pub_export_macro: true,
        export_macro_name: "__export_hooks_world",
        default_bindings_module: "bourse_plugin_sdk::hooks::bindings",
        runtime_path: "bourse_plugin_sdk::__private::wit_bindgen::rt",
        generate_all,
    });
}

pub use bindings::bourse::exchange_hooks::types::{
    BidDecision, BidView, Enrichment, FloorContext, ImpView, RequestDecision, RequestView, Size,
    Verdict,
};

/// The hooks a plugin implements. Each has a do-nothing default, so a plugin writes only the
/// ones it advertises in its manifest's `hooks` list; the host calls no other.
pub trait ExchangeHooks {
    /// Keep or drop a request before any bidder is called, and add enrichment pairs.
    fn filter_request(request: RequestView) -> RequestDecision {
        let _ = request;
        RequestDecision {
            verdict: Verdict::Keep,
            enrich: Vec::new(),
        }
    }

    /// One decision per bid, in the order of `bids`: keep, drop with a reason, or a new price.
    fn filter_bids(request: RequestView, bids: Vec<BidView>) -> Vec<BidDecision> {
        let _ = request;
        bids.iter().map(|_| BidDecision::Keep).collect()
    }

    /// The floor of one impression, in the auction currency.
    fn floor(context: FloorContext) -> f64 {
        context.current_floor
    }
}

/// Exports a type implementing [`ExchangeHooks`] as the plugin's hooks.
///
/// ```ignore
/// struct MyRule;
/// impl bourse_plugin_sdk::hooks::ExchangeHooks for MyRule { /* ... */ }
/// bourse_plugin_sdk::export_hooks!(MyRule);
/// ```
#[macro_export]
macro_rules! export_hooks {
    ($plugin:ty) => {
        const _: () = {
            use $crate::hooks::bindings::exports::bourse::exchange_hooks as __hooks;
            use $crate::hooks::{BidDecision, BidView, ExchangeHooks, FloorContext};
            use $crate::hooks::{RequestDecision, RequestView};

            struct __Exports;

            impl __hooks::request_filter::Guest for __Exports {
                fn filter_request(request: RequestView) -> RequestDecision {
                    <$plugin as ExchangeHooks>::filter_request(request)
                }
            }
            impl __hooks::bid_filter::Guest for __Exports {
                fn filter_bids(request: RequestView, bids: Vec<BidView>) -> Vec<BidDecision> {
                    <$plugin as ExchangeHooks>::filter_bids(request, bids)
                }
            }
            impl __hooks::floor_rule::Guest for __Exports {
                fn floor(context: FloorContext) -> f64 {
                    <$plugin as ExchangeHooks>::floor(context)
                }
            }

            $crate::hooks::bindings::__export_hooks_world!(
                __Exports with_types_in $crate::hooks::bindings
            );
        };
    };
}
