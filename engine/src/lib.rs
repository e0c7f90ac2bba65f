//! The bidding core of bourse: OpenRTB 2.6 model, validation, fan-out, auction and notices.

pub mod auction;
pub mod bidder;
pub mod bidder_params;
pub mod client;
pub mod currency;
pub mod delivery;
pub mod exchange;
pub mod hooks;
pub mod ledger;
pub mod metrics;
pub mod native;
pub mod notice;
pub mod openrtb;
pub mod outbound;
pub mod pricing;
pub mod signals;
pub mod validate;

pub use exchange::{ExchangeConfig, ExchangePlugin};
pub use hooks::{AuctionHooks, BidHook, HookBid, RequestHook};
