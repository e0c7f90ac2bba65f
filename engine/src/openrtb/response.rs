//! The BidResponse and its objects (OpenRTB 2.6 section 4.2).

use super::Text;
use crate::openrtb_object;

openrtb_object! {
    /// The top-level bid response (4.2.1).
    pub struct BidResponse {
        "id" => id: Text,
        "seatbid" => seatbid: Vec<SeatBid>,
        "bidid" => bidid: Option<Text>,
        "cur" => cur: Option<Text>,
        "customdata" => customdata: Option<Text>,
        /// No-bid reason code.
        "nbr" => nbr: Option<i64>,
    }
}

openrtb_object! {
    /// The bids of one buyer seat (4.2.2).
    pub struct SeatBid {
        "bid" => bid: Vec<Bid>,
        "seat" => seat: Option<Text>,
        "group" => group: Option<u8>,
    }
}

openrtb_object! {
    /// An offer to buy one impression (4.2.3).
    pub struct Bid {
        "id" => id: Text,
        "impid" => impid: Text,
        "price" => price: Option<f64>,
        "nurl" => nurl: Option<String>,
        "burl" => burl: Option<String>,
        "lurl" => lurl: Option<String>,
        "adm" => adm: Option<String>,
        "adid" => adid: Option<Text>,
        "adomain" => adomain: Vec<Text>,
        "bundle" => bundle: Option<Text>,
        "iurl" => iurl: Option<Text>,
        "cid" => cid: Option<Text>,
        "crid" => crid: Option<Text>,
        "tactic" => tactic: Option<Text>,
        "cattax" => cattax: Option<i64>,
        "cat" => cat: Vec<Text>,
        "attr" => attr: Vec<i64>,
        "apis" => apis: Vec<i64>,
        "api" => api: Option<i64>,
        "protocol" => protocol: Option<i64>,
        "qagmediarating" => qagmediarating: Option<i64>,
        "language" => language: Option<Text>,
        "langb" => langb: Option<Text>,
        "dealid" => dealid: Option<Text>,
        "w" => w: Option<u32>,
        "h" => h: Option<u32>,
        "wratio" => wratio: Option<u32>,
        "hratio" => hratio: Option<u32>,
        "exp" => exp: Option<i64>,
        "dur" => dur: Option<i64>,
        /// Markup type: 1 banner, 2 video, 3 audio, 4 native.
        "mtype" => mtype: Option<i64>,
        "slotinpod" => slotinpod: Option<i64>,
    }
}
