//! The bidding core of bourse: OpenRTB 2.6 model, validation, fan-out, auction and notices.

pub mod auction;
pub mod bidder;
pub mod currency;
pub mod openrtb;
pub mod validate;
