//! The bidding core of bourse: OpenRTB 2.6 model, validation, fan-out, auction and notices.

pub mod bidder;
pub mod openrtb;
