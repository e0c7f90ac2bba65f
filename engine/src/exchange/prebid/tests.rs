//! Tests of what a Prebid request asks and the Prebid parts of the answer.

use super::*;
use serde_json::json;

fn request(value: Value) -> BidRequest {
    serde_json::from_value(value).unwrap()
}

fn prebid_request(ext_prebid: Value) -> BidRequest {
    request(json!({
        "id": "r",
        "site": {"page": "https://news.example/"},
        "imp": [{"id": "div-1", "banner": {"format": [{"w": 300, "h": 250}]},
                 "ext": {"prebid": {"bidder": {"alpha": {"p": 1}, "b2": {"q": 2}}}}}],
        "ext": {"prebid": ext_prebid}
    }))
}

fn bid(price: f64) -> Bid {
    serde_json::from_value(json!({
        "id": "b", "impid": "div-1", "price": price, "w": 300, "h": 250, "crid": "c1",
        "ext": {"dsa": {"behalf": "x"}, "prebid": {"video": {"duration": 5}}}
    }))
    .unwrap()
}

fn ask(ext_prebid: Value) -> Ask {
    let req = prebid_request(ext_prebid);
    let mut ask = Ask::of(&req).unwrap().unwrap();
    ask.set_params(BidderParams::of(&req));
    ask
}

fn bid_ext(bid: &Bid) -> Value {
    bid.ext.as_ref().unwrap().parse().unwrap()
}

#[test]
fn only_requests_with_an_ext_prebid_object_are_prebid_ones() {
    assert!(!is_prebid(&request(json!({"id": "r", "imp": []}))));
    assert!(!is_prebid(&request(
        json!({"id": "r", "imp": [], "ext": {"prebid": 1}})
    )));
    assert!(!is_prebid(&request(
        json!({"id": "r", "imp": [], "ext": {"x": "\"prebid\""}})
    )));
    assert!(is_prebid(&request(
        json!({"id": "r", "imp": [], "ext": {"prebid": {}}})
    )));
    assert_eq!(
        Ask::of(&request(json!({"id": "r", "imp": []}))).unwrap(),
        None
    );
}

#[test]
fn what_prebid_js_sends_gets_winner_keys_at_medium_granularity() {
    // Prebid.js's own targeting ask (and fields we accept without acting on them).
    let ask = ask(json!({
        "auctiontimestamp": 1, "channel": {"name": "pbjs", "version": "v11"},
        "targeting": {"includewinners": true, "includebidderkeys": false},
        "cache": {"bids": {}}, "returnallbidstatus": true, "createtids": false
    }));
    let mut b = bid(1.2345);
    let seat = ask.decorate_bid(&mut b, MediaType::Banner, "alpha");
    assert_eq!(seat.as_deref(), Some("alpha"));
    let ext = bid_ext(&b);
    assert_eq!(
        ext["prebid"]["targeting"],
        json!({"hb_pb": "1.20", "hb_bidder": "alpha", "hb_size": "300x250"})
    );
    assert_eq!(ext["prebid"]["type"], "banner");
    assert_eq!(ext["prebid"]["meta"]["adaptercode"], "alpha");
    assert_eq!(
        ext["prebid"]["video"]["duration"], 5,
        "the partner's ext.prebid stays"
    );
    assert_eq!(ext["dsa"]["behalf"], "x", "and the rest of its ext");
}

#[test]
fn bidder_keys_are_suffixed_with_the_code_and_cut_to_twenty_characters() {
    let ask = ask(json!({
        "aliases": {"b2": "beta"},
        "targeting": {"pricegranularity": "dense", "includeformat": true}
    }));
    let mut b = bid(2.0);
    b.dealid = Some("deal-9".into());
    let seat = ask.decorate_bid(&mut b, MediaType::Banner, "beta");
    assert_eq!(
        seat.as_deref(),
        Some("b2"),
        "answered under the alias the request used"
    );
    assert_eq!(
        bid_ext(&b)["prebid"]["targeting"],
        json!({
            "hb_pb": "2.00", "hb_pb_b2": "2.00",
            "hb_bidder": "b2", "hb_bidder_b2": "b2",
            "hb_size": "300x250", "hb_size_b2": "300x250",
            "hb_deal": "deal-9", "hb_deal_b2": "deal-9",
            "hb_format": "banner", "hb_format_b2": "banner"
        })
    );
    let ask = {
        let req = request(json!({
            "id": "r", "app": {"bundle": "com.example"},
            "imp": [{"id": "div-1", "banner": {"w": 1, "h": 1},
                     "ext": {"prebid": {"bidder": {"averyveryverylongbidder": {}}}}}],
            "ext": {"prebid": {"targeting": {}}}
        }));
        let mut ask = Ask::of(&req).unwrap().unwrap();
        ask.set_params(BidderParams::of(&req));
        ask
    };
    let mut b = bid(0.57);
    ask.decorate_bid(&mut b, MediaType::Banner, "averyveryverylongbidder");
    let targeting = bid_ext(&b)["prebid"]["targeting"].clone();
    assert_eq!(targeting["hb_pb_averyveryveryl"], "0.50");
    assert_eq!(targeting["hb_bidder_averyveryv"], "averyveryverylongbidder");
    assert_eq!(targeting["hb_env"], "mobile-app");
    assert_eq!(targeting["hb_env_averyveryvery"], "mobile-app");
}

#[test]
fn granularity_per_media_type_and_custom_ranges() {
    let ask = ask(json!({"targeting": {
        "pricegranularity": {"precision": 2, "ranges": [{"max": 5, "increment": 1}]},
        "mediatypepricegranularity": {"video": "high"},
        "includebidderkeys": false
    }}));
    let mut banner = bid(3.99);
    ask.decorate_bid(&mut banner, MediaType::Banner, "alpha");
    assert_eq!(bid_ext(&banner)["prebid"]["targeting"]["hb_pb"], "3.00");
    let mut video = bid(3.99);
    ask.decorate_bid(&mut video, MediaType::Video, "alpha");
    assert_eq!(bid_ext(&video)["prebid"]["targeting"]["hb_pb"], "3.99");
    assert_eq!(bid_ext(&video)["prebid"]["type"], "video");
}

#[test]
fn without_targeting_only_the_type_is_added_and_unnamed_partners_keep_their_seat() {
    let ask = ask(json!({}));
    let mut b = bid(1.0);
    assert_eq!(ask.decorate_bid(&mut b, MediaType::Native, "gamma"), None);
    let ext = bid_ext(&b);
    assert_eq!(ext["prebid"]["type"], "native");
    assert!(ext["prebid"].get("targeting").is_none());
}

#[test]
fn a_bad_price_granularity_is_refused_with_its_path() {
    let req = prebid_request(
        json!({"targeting": {"pricegranularity": {"ranges": [{"max": 1, "increment": -1}]}}}),
    );
    let rejection = Ask::of(&req).unwrap_err();
    assert_eq!(
        rejection.field,
        "ext.prebid.targeting.pricegranularity.ranges[0].increment"
    );
    let req =
        prebid_request(json!({"targeting": {"mediatypepricegranularity": {"banner": "fine"}}}));
    assert_eq!(
        Ask::of(&req).unwrap_err().field,
        "ext.prebid.targeting.mediatypepricegranularity.banner"
    );
}

#[test]
fn response_times_are_reported_by_code() {
    let mut ask = ask(json!({"aliases": {"b2": "beta"}}));
    ask.responded("beta", 12);
    ask.responded("beta", 30);
    ask.responded("gamma", 7);
    let mut response = BidResponse::default();
    ask.finish(&mut response);
    let ext: Value = response.ext.unwrap().parse().unwrap();
    assert_eq!(ext["responsetimemillis"], json!({"b2": 30, "gamma": 7}));
}

#[test]
fn gzip_in_the_query_stands_for_the_header() {
    let mut headers = http::HeaderMap::new();
    gzip_from_query(&"/openrtb2/auction?gzip=1".parse().unwrap(), &mut headers);
    assert_eq!(headers[http::header::CONTENT_ENCODING], "gzip");
    for (uri, declared) in [
        ("/openrtb2/auction", None),
        ("/openrtb2/auction?gzip=0&x=gzip=1", None),
        ("/openrtb2/auction?gzip=1", Some("identity")),
    ] {
        let mut headers = http::HeaderMap::new();
        if let Some(d) = declared {
            headers.insert(http::header::CONTENT_ENCODING, d.parse().unwrap());
        }
        gzip_from_query(&uri.parse().unwrap(), &mut headers);
        assert_eq!(
            headers
                .get(http::header::CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap()),
            declared,
            "{uri}"
        );
    }
}
