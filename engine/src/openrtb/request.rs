//! The BidRequest and its objects (OpenRTB 2.6 section 3.2).

use super::{MediaType, MediaTypes, Raw, Text};
use crate::openrtb_object;

openrtb_object! {
    /// The top-level bid request (3.2.1). Notes where its members arrived, so that partner
    /// bodies can be spliced from the text it was read from.
    pub struct BidRequest [arrival] {
        "id" => id: Text,
        "imp" => imp: Vec<Imp>,
        "site" => site: Option<Site>,
        "app" => app: Option<App>,
        "dooh" => dooh: Option<Dooh>,
        "device" => device: Option<Device>,
        "user" => user: Option<User>,
        "test" => test: Option<u8>,
        /// Auction type: 1 first price, 2 second price plus (the default).
        "at" => at: Option<i64>,
        /// Milliseconds the supply side waits for our answer, including network latency.
        "tmax" => tmax: Option<i64>,
        "wseat" => wseat: Vec<Text>,
        "bseat" => bseat: Vec<Text>,
        "allimps" => allimps: Option<u8>,
        "cur" => cur: Vec<Text>,
        "wlang" => wlang: Vec<Text>,
        "wlangb" => wlangb: Vec<Text>,
        "acat" => acat: Vec<Text>,
        "bcat" => bcat: Vec<Text>,
        "cattax" => cattax: Option<i64>,
        "badv" => badv: Vec<Text>,
        "bapp" => bapp: Vec<Text>,
        "source" => source: Option<Source>,
        "regs" => regs: Option<Regs>,
    }
}

impl BidRequest {
    /// The auction type with the spec's default (2, second price) applied.
    pub fn auction_type(&self) -> i64 {
        self.at.unwrap_or(2)
    }

    /// The impression with this id.
    pub fn imp_by_id(&self, id: &str) -> Option<&Imp> {
        self.imp.iter().find(|imp| imp.id == id)
    }

    /// The publisher, from whichever of site, app or dooh is present.
    pub fn publisher(&self) -> Option<&Publisher> {
        self.site
            .as_ref()
            .and_then(|s| s.publisher.as_ref())
            .or_else(|| self.app.as_ref().and_then(|a| a.publisher.as_ref()))
            .or_else(|| self.dooh.as_ref().and_then(|d| d.publisher.as_ref()))
    }

    /// The media types offered by any impression.
    pub fn media_types(&self) -> MediaTypes {
        self.imp
            .iter()
            .fold(MediaTypes::NONE, |acc, imp| acc.union(imp.media_types()))
    }
}

openrtb_object! {
    /// An impression on offer (3.2.4).
    pub struct Imp {
        "id" => id: Text,
        "metric" => metric: Vec<Metric>,
        "banner" => banner: Option<Banner>,
        "video" => video: Option<Video>,
        "audio" => audio: Option<Audio>,
        "native" => native: Option<Native>,
        "pmp" => pmp: Option<Pmp>,
        "displaymanager" => displaymanager: Option<Text>,
        "displaymanagerver" => displaymanagerver: Option<Text>,
        "instl" => instl: Option<u8>,
        "tagid" => tagid: Option<Text>,
        "bidfloor" => bidfloor: Option<f64>,
        "bidfloorcur" => bidfloorcur: Option<Text>,
        "clickbrowser" => clickbrowser: Option<u8>,
        "secure" => secure: Option<u8>,
        "iframebuster" => iframebuster: Vec<Text>,
        "rwdd" => rwdd: Option<u8>,
        "ssai" => ssai: Option<i64>,
        "exp" => exp: Option<i64>,
        "qty" => qty: Option<Raw>,
        "dt" => dt: Option<f64>,
        "refresh" => refresh: Option<Raw>,
    }
}

impl Imp {
    /// The media types this impression offers.
    pub fn media_types(&self) -> MediaTypes {
        let mut set = MediaTypes::NONE;
        if self.banner.is_some() {
            set = set.with(MediaType::Banner);
        }
        if self.video.is_some() {
            set = set.with(MediaType::Video);
        }
        if self.audio.is_some() {
            set = set.with(MediaType::Audio);
        }
        if self.native.is_some() {
            set = set.with(MediaType::Native);
        }
        set
    }

    /// Removes the media objects outside `keep`.
    pub fn retain_media(&mut self, keep: MediaTypes) {
        if !keep.contains(MediaType::Banner) {
            self.banner = None;
        }
        if !keep.contains(MediaType::Video) {
            self.video = None;
        }
        if !keep.contains(MediaType::Audio) {
            self.audio = None;
        }
        if !keep.contains(MediaType::Native) {
            self.native = None;
        }
    }

    /// The deal with this id in the impression's private marketplace.
    pub fn deal(&self, id: &str) -> Option<&Deal> {
        self.pmp.as_ref()?.deals.iter().find(|d| d.id == id)
    }

    /// Whether only deal bids may win (`pmp.private_auction = 1`).
    pub fn is_private_auction(&self) -> bool {
        self.pmp.as_ref().and_then(|p| p.private_auction) == Some(1)
    }
}

openrtb_object! {
    /// A measurement about the impression, such as viewability (3.2.5).
    pub struct Metric {
        "type" => metric_type: Option<Text>,
        "value" => value: Option<f64>,
        "vendor" => vendor: Option<Text>,
    }
}

openrtb_object! {
    /// A display ad slot (3.2.6).
    pub struct Banner {
        "format" => format: Vec<Format>,
        "w" => w: Option<u32>,
        "h" => h: Option<u32>,
        "btype" => btype: Vec<i64>,
        "battr" => battr: Vec<i64>,
        "pos" => pos: Option<i64>,
        "mimes" => mimes: Vec<Text>,
        "topframe" => topframe: Option<u8>,
        "expdir" => expdir: Vec<i64>,
        "api" => api: Vec<i64>,
        "id" => id: Option<Text>,
        "vcm" => vcm: Option<u8>,
    }
}

openrtb_object! {
    /// An allowed banner size (3.2.10).
    pub struct Format {
        "w" => w: Option<u32>,
        "h" => h: Option<u32>,
        "wratio" => wratio: Option<u32>,
        "hratio" => hratio: Option<u32>,
        "wmin" => wmin: Option<u32>,
    }
}

openrtb_object! {
    /// A video slot (3.2.7).
    pub struct Video {
        "mimes" => mimes: Vec<Text>,
        "minduration" => minduration: Option<i64>,
        "maxduration" => maxduration: Option<i64>,
        "startdelay" => startdelay: Option<i64>,
        "maxseq" => maxseq: Option<i64>,
        "poddur" => poddur: Option<i64>,
        "protocols" => protocols: Vec<i64>,
        "w" => w: Option<u32>,
        "h" => h: Option<u32>,
        "podid" => podid: Option<Text>,
        "podseq" => podseq: Option<i64>,
        "rqddurs" => rqddurs: Vec<i64>,
        "placement" => placement: Option<i64>,
        "plcmt" => plcmt: Option<i64>,
        "linearity" => linearity: Option<i64>,
        "skip" => skip: Option<u8>,
        "skipmin" => skipmin: Option<i64>,
        "skipafter" => skipafter: Option<i64>,
        "sequence" => sequence: Option<i64>,
        "slotinpod" => slotinpod: Option<i64>,
        "mincpmpersec" => mincpmpersec: Option<f64>,
        "battr" => battr: Vec<i64>,
        "maxextended" => maxextended: Option<i64>,
        "minbitrate" => minbitrate: Option<i64>,
        "maxbitrate" => maxbitrate: Option<i64>,
        "boxingallowed" => boxingallowed: Option<u8>,
        "playbackmethod" => playbackmethod: Vec<i64>,
        "playbackend" => playbackend: Option<i64>,
        "delivery" => delivery: Vec<i64>,
        "pos" => pos: Option<i64>,
        "companionad" => companionad: Vec<Banner>,
        "api" => api: Vec<i64>,
        "companiontype" => companiontype: Vec<i64>,
        "poddedupe" => poddedupe: Vec<i64>,
    }
}

openrtb_object! {
    /// An audio slot (3.2.8).
    pub struct Audio {
        "mimes" => mimes: Vec<Text>,
        "minduration" => minduration: Option<i64>,
        "maxduration" => maxduration: Option<i64>,
        "poddur" => poddur: Option<i64>,
        "protocols" => protocols: Vec<i64>,
        "startdelay" => startdelay: Option<i64>,
        "rqddurs" => rqddurs: Vec<i64>,
        "podid" => podid: Option<Text>,
        "podseq" => podseq: Option<i64>,
        "sequence" => sequence: Option<i64>,
        "slotinpod" => slotinpod: Option<i64>,
        "mincpmpersec" => mincpmpersec: Option<f64>,
        "battr" => battr: Vec<i64>,
        "maxextended" => maxextended: Option<i64>,
        "minbitrate" => minbitrate: Option<i64>,
        "maxbitrate" => maxbitrate: Option<i64>,
        "delivery" => delivery: Vec<i64>,
        "companionad" => companionad: Vec<Banner>,
        "api" => api: Vec<i64>,
        "companiontype" => companiontype: Vec<i64>,
        "maxseq" => maxseq: Option<i64>,
        "feed" => feed: Option<i64>,
        "stitched" => stitched: Option<u8>,
        "nvol" => nvol: Option<i64>,
        "poddedupe" => poddedupe: Vec<i64>,
    }
}

openrtb_object! {
    /// A native slot; `request` is the Native Ads request as a JSON string (3.2.9).
    pub struct Native {
        "request" => request: Option<Text>,
        "ver" => ver: Option<Text>,
        "api" => api: Vec<i64>,
        "battr" => battr: Vec<i64>,
    }
}

openrtb_object! {
    /// Private marketplace terms for an impression (3.2.11).
    pub struct Pmp {
        /// 1 when only the listed deals may bid.
        "private_auction" => private_auction: Option<u8>,
        "deals" => deals: Vec<Deal>,
    }
}

openrtb_object! {
    /// A deal between a buyer and the seller (3.2.12).
    pub struct Deal {
        "id" => id: Text,
        "bidfloor" => bidfloor: Option<f64>,
        "bidfloorcur" => bidfloorcur: Option<Text>,
        "at" => at: Option<i64>,
        "wseat" => wseat: Vec<Text>,
        "wadomain" => wadomain: Vec<Text>,
        "guar" => guar: Option<u8>,
        "mincpmpersec" => mincpmpersec: Option<f64>,
        "durfloors" => durfloors: Option<Raw>,
    }
}

openrtb_object! {
    /// A website carrying the impression (3.2.13).
    pub struct Site {
        "id" => id: Option<Text>,
        "name" => name: Option<Text>,
        "domain" => domain: Option<Text>,
        "cattax" => cattax: Option<i64>,
        "cat" => cat: Vec<Text>,
        "sectioncat" => sectioncat: Vec<Text>,
        "pagecat" => pagecat: Vec<Text>,
        "page" => page: Option<Text>,
        "ref" => referrer: Option<Text>,
        "search" => search: Option<Text>,
        "mobile" => mobile: Option<u8>,
        "privacypolicy" => privacypolicy: Option<u8>,
        "publisher" => publisher: Option<Publisher>,
        "content" => content: Option<Content>,
        "keywords" => keywords: Option<Text>,
        "kwarray" => kwarray: Vec<Text>,
        "inventorypartnerdomain" => inventorypartnerdomain: Option<Text>,
    }
}

openrtb_object! {
    /// A mobile or CTV application carrying the impression (3.2.14).
    pub struct App {
        "id" => id: Option<Text>,
        "name" => name: Option<Text>,
        "bundle" => bundle: Option<Text>,
        "domain" => domain: Option<Text>,
        "storeurl" => storeurl: Option<Text>,
        "cattax" => cattax: Option<i64>,
        "cat" => cat: Vec<Text>,
        "sectioncat" => sectioncat: Vec<Text>,
        "pagecat" => pagecat: Vec<Text>,
        "ver" => ver: Option<Text>,
        "privacypolicy" => privacypolicy: Option<u8>,
        "paid" => paid: Option<u8>,
        "publisher" => publisher: Option<Publisher>,
        "content" => content: Option<Content>,
        "keywords" => keywords: Option<Text>,
        "kwarray" => kwarray: Vec<Text>,
        "inventorypartnerdomain" => inventorypartnerdomain: Option<Text>,
    }
}

openrtb_object! {
    /// A digital out-of-home screen carrying the impression (3.2.23).
    pub struct Dooh {
        "id" => id: Option<Text>,
        "name" => name: Option<Text>,
        "venuetype" => venuetype: Vec<Text>,
        "venuetypetax" => venuetypetax: Option<i64>,
        "publisher" => publisher: Option<Publisher>,
        "domain" => domain: Option<Text>,
        "keywords" => keywords: Option<Text>,
        "content" => content: Option<Content>,
    }
}

openrtb_object! {
    /// The seller of the inventory (3.2.15).
    pub struct Publisher {
        "id" => id: Option<Text>,
        "name" => name: Option<Text>,
        "cattax" => cattax: Option<i64>,
        "cat" => cat: Vec<Text>,
        "domain" => domain: Option<Text>,
    }
}

openrtb_object! {
    /// The content around the impression (3.2.16); fields not listed pass through verbatim.
    pub struct Content {
        "id" => id: Option<Text>,
        "episode" => episode: Option<i64>,
        "title" => title: Option<Text>,
        "series" => series: Option<Text>,
        "season" => season: Option<Text>,
        "url" => url: Option<Text>,
        "cattax" => cattax: Option<i64>,
        "cat" => cat: Vec<Text>,
        "livestream" => livestream: Option<u8>,
        "len" => len: Option<i64>,
        "language" => language: Option<Text>,
        "langb" => langb: Option<Text>,
        "data" => data: Vec<Data>,
    }
}

openrtb_object! {
    /// The user's device (3.2.18).
    pub struct Device {
        "geo" => geo: Option<Geo>,
        "dnt" => dnt: Option<u8>,
        "lmt" => lmt: Option<u8>,
        "ua" => ua: Option<Text>,
        "sua" => sua: Option<Raw>,
        "ip" => ip: Option<Text>,
        "ipv6" => ipv6: Option<Text>,
        "devicetype" => devicetype: Option<i64>,
        "make" => make: Option<Text>,
        "model" => model: Option<Text>,
        "os" => os: Option<Text>,
        "osv" => osv: Option<Text>,
        "hwv" => hwv: Option<Text>,
        "h" => h: Option<u32>,
        "w" => w: Option<u32>,
        "ppi" => ppi: Option<u32>,
        "pxratio" => pxratio: Option<f64>,
        "js" => js: Option<u8>,
        "geofetch" => geofetch: Option<u8>,
        "flashver" => flashver: Option<Text>,
        "language" => language: Option<Text>,
        "langb" => langb: Option<Text>,
        "carrier" => carrier: Option<Text>,
        "mccmnc" => mccmnc: Option<Text>,
        "connectiontype" => connectiontype: Option<i64>,
        "ifa" => ifa: Option<Text>,
    }
}

openrtb_object! {
    /// A location (3.2.19).
    pub struct Geo {
        "lat" => lat: Option<f64>,
        "lon" => lon: Option<f64>,
        "type" => geo_type: Option<i64>,
        "accuracy" => accuracy: Option<i64>,
        "lastfix" => lastfix: Option<i64>,
        "ipservice" => ipservice: Option<i64>,
        "country" => country: Option<Text>,
        "region" => region: Option<Text>,
        "regionfips104" => regionfips104: Option<Text>,
        "metro" => metro: Option<Text>,
        "city" => city: Option<Text>,
        "zip" => zip: Option<Text>,
        "utcoffset" => utcoffset: Option<i64>,
    }
}

openrtb_object! {
    /// The human user (3.2.20).
    pub struct User {
        "id" => id: Option<Text>,
        "buyeruid" => buyeruid: Option<Text>,
        "yob" => yob: Option<i64>,
        "gender" => gender: Option<Text>,
        "keywords" => keywords: Option<Text>,
        "kwarray" => kwarray: Vec<Text>,
        "customdata" => customdata: Option<Text>,
        "geo" => geo: Option<Geo>,
        "data" => data: Vec<Data>,
        /// The TCF consent string when GDPR applies.
        "consent" => consent: Option<Text>,
        "eids" => eids: Vec<Eid>,
    }
}

openrtb_object! {
    /// Third-party data about the user or content (3.2.21).
    pub struct Data {
        "id" => id: Option<Text>,
        "name" => name: Option<Text>,
        "segment" => segment: Vec<Segment>,
    }
}

openrtb_object! {
    /// One data segment (3.2.22).
    pub struct Segment {
        "id" => id: Option<Text>,
        "name" => name: Option<Text>,
        "value" => value: Option<Text>,
    }
}

openrtb_object! {
    /// Extended identifiers from one source (3.2.27).
    pub struct Eid {
        "inserter" => inserter: Option<Text>,
        "source" => source: Option<Text>,
        "matcher" => matcher: Option<Text>,
        "mm" => mm: Option<i64>,
        "uids" => uids: Vec<Uid>,
    }
}

openrtb_object! {
    /// One identifier of a user (3.2.28).
    pub struct Uid {
        "id" => id: Option<Text>,
        "atype" => atype: Option<i64>,
    }
}

openrtb_object! {
    /// Regulations that apply to the request (3.2.3).
    pub struct Regs {
        "coppa" => coppa: Option<u8>,
        "gdpr" => gdpr: Option<u8>,
        "us_privacy" => us_privacy: Option<Text>,
        "gpp" => gpp: Option<Text>,
        "gpp_sid" => gpp_sid: Vec<i64>,
    }
}

openrtb_object! {
    /// Upstream decisioning and the supply chain (3.2.2).
    pub struct Source {
        "fd" => fd: Option<u8>,
        "tid" => tid: Option<Text>,
        "pchain" => pchain: Option<Text>,
        "schain" => schain: Option<SupplyChain>,
    }
}

openrtb_object! {
    /// The chain of sellers the request passed through (3.2.25).
    pub struct SupplyChain {
        "complete" => complete: Option<u8>,
        "nodes" => nodes: Vec<SupplyChainNode>,
        "ver" => ver: Option<Text>,
    }
}

openrtb_object! {
    /// One seller in the supply chain (3.2.26).
    pub struct SupplyChainNode {
        "asi" => asi: Option<Text>,
        "sid" => sid: Option<Text>,
        "rid" => rid: Option<Text>,
        "name" => name: Option<Text>,
        "domain" => domain: Option<Text>,
        "hp" => hp: Option<u8>,
    }
}
