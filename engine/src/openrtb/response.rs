//! The BidResponse and its objects (OpenRTB 2.6 section 4.2).

use crate::openrtb_object;

openrtb_object! {
    /// The top-level bid response (4.2.1).
    pub struct BidResponse {
        "id" => id: String,
        "seatbid" => seatbid: Vec<SeatBid>,
        "bidid" => bidid: Option<String>,
        "cur" => cur: Option<String>,
        "customdata" => customdata: Option<String>,
        /// No-bid reason code.
        "nbr" => nbr: Option<i64>,
    }
}

openrtb_object! {
    /// The bids of one buyer seat (4.2.2).
    pub struct SeatBid {
        "bid" => bid: Vec<Bid>,
        "seat" => seat: Option<String>,
        "group" => group: Option<u8>,
    }
}

openrtb_object! {
    /// An offer to buy one impression (4.2.3).
    pub struct Bid {
        "id" => id: String,
        "impid" => impid: String,
        "price" => price: Option<f64>,
        "nurl" => nurl: Option<String>,
        "burl" => burl: Option<String>,
        "lurl" => lurl: Option<String>,
        "adm" => adm: Option<String>,
        "adid" => adid: Option<String>,
        "adomain" => adomain: Vec<String>,
        "bundle" => bundle: Option<String>,
        "iurl" => iurl: Option<String>,
        "cid" => cid: Option<String>,
        "crid" => crid: Option<String>,
        "tactic" => tactic: Option<String>,
        "cattax" => cattax: Option<i64>,
        "cat" => cat: Vec<String>,
        "attr" => attr: Vec<i64>,
        "apis" => apis: Vec<i64>,
        "api" => api: Option<i64>,
        "protocol" => protocol: Option<i64>,
        "qagmediarating" => qagmediarating: Option<i64>,
        "language" => language: Option<String>,
        "langb" => langb: Option<String>,
        "dealid" => dealid: Option<String>,
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
