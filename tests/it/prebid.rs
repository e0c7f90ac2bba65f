//! Prebid requests over real sockets: each bidder receives only its own params (aliases too),
//! the answer carries Prebid's targeting under the codes the request used, and the endpoint
//! answers a browser's CORS preflight and credentialed calls.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

/// A request as Prebid.js's Prebid Server adapter shapes it: two ad units, params for two
/// bidders (one through an alias) and for a third that bourse does not know.
fn prebid_request(id: &str) -> Value {
    let mut request = banner_request(id, &[("div-1", 0.0), ("div-2", 0.0)]);
    request["imp"][0]["ext"] = json!({
        "gpid": "/1234/div-1",
        "prebid": {"adunitcode": "div-1", "bidder": {
            "alpha": {"placementId": 111}, "b-alias": {"zone": "beta-z1"}, "other": {"secret": "o1"}
        }}
    });
    request["imp"][1]["ext"] = json!({
        "prebid": {"adunitcode": "div-2", "bidder": {"alpha": {"placementId": 222}}}
    });
    request["ext"] = json!({"prebid": {
        "aliases": {"b-alias": "beta"},
        "auctiontimestamp": 1_700_000_000_000_u64,
        "channel": {"name": "pbjs", "version": "v11.36.0"},
        "targeting": {"includewinners": true, "includebidderkeys": true},
        "cache": {"bids": {}},
        "returnallbidstatus": true,
        "createtids": false
    }});
    request
}

/// Partners `alpha` (bidding 1.0) and `beta` (bidding 2.0) on `div-1`, and an exchange with both.
async fn alpha_and_beta() -> (Partner, Partner, Exchange) {
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha-seat", &[("div-1", 1.0)]))).await;
    let pb = Partner::start(|r| Reply::Json(bids(r, "beta-seat", &[("div-1", 2.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[bidder("alpha", &pa, ""), bidder("beta", &pb, "")],
    ))
    .await;
    (pa, pb, ex)
}

#[tokio::test]
async fn two_bidders_each_receive_only_their_own_params() {
    let (pa, pb, ex) = alpha_and_beta().await;
    let (status, _) = ex.auction(&prebid_request("pb-params")).await;
    assert_eq!(status, 200);

    let alpha = pa.last_request();
    assert_eq!(
        alpha["imp"][0]["ext"],
        json!({"bidder": {"placementId": 111}, "gpid": "/1234/div-1", "prebid": {"adunitcode": "div-1"}})
    );
    assert_eq!(
        alpha["imp"][1]["ext"],
        json!({"bidder": {"placementId": 222}, "prebid": {"adunitcode": "div-2"}})
    );
    let beta = pb.last_request();
    assert_eq!(
        beta["imp"][0]["ext"],
        json!({"bidder": {"zone": "beta-z1"}, "gpid": "/1234/div-1", "prebid": {"adunitcode": "div-1"}})
    );
    assert_eq!(
        beta["imp"][1]["ext"],
        json!({"prebid": {"adunitcode": "div-2"}})
    );
    // Neither sees the other's params, nor the params of a bidder we do not have (`o1`).
    for (name, seen, others) in [
        ("alpha", &alpha, ["beta-z1", "o1"]),
        ("beta", &beta, ["placementId", "o1"]),
    ] {
        let text = seen.to_string();
        for other in others {
            assert!(!text.contains(other), "{name} saw `{other}`: {text}");
        }
    }
    // Everything else about the request is the same for both.
    let strip = |mut v: Value| {
        for imp in v["imp"].as_array_mut().unwrap() {
            imp.as_object_mut().unwrap().remove("ext");
        }
        v
    };
    assert_eq!(strip(alpha), strip(beta));
}

#[tokio::test]
async fn a_request_naming_some_of_our_bidders_asks_only_those() {
    let (pa, pb, ex) = alpha_and_beta().await;
    let mut named = prebid_request("pb-named");
    named["ext"]["prebid"]["aliases"] = json!({});
    let (status, response) = ex.auction(&named).await;
    assert_eq!(status, 200);
    assert_eq!(
        (pa.request_count(), pb.request_count()),
        (1, 0),
        "{response}"
    );
    assert_eq!(response["seatbid"][0]["seat"], "alpha");

    // Params only for bidders we do not have: every partner is asked, none sees them.
    let mut foreign = banner_request("pb-foreign", &[("div-1", 0.0)]);
    foreign["imp"][0]["ext"] =
        json!({"prebid": {"bidder": {"appnexus": {"placementId": 13144370}}}});
    let (status, _) = ex.auction(&foreign).await;
    assert_eq!(status, 200);
    assert_eq!((pa.request_count(), pb.request_count()), (2, 1));
    assert_eq!(pb.last_request()["imp"][0].get("ext"), Some(&json!({})));
}

#[tokio::test]
async fn a_prebid_request_is_answered_with_targeting_under_its_codes() {
    let pa = Partner::start(|r| {
        Reply::Json(bids_with(r, "alpha-seat", &[("div-1", 1.0)], |b| {
            b["w"] = json!(300);
            b["h"] = json!(250);
        }))
    })
    .await;
    let pb = Partner::start(|r| {
        Reply::Json(bids_with(
            r,
            "beta-seat",
            &[("div-1", 2.0), ("div-2", 1.5)],
            |b| {
                b["w"] = json!(300);
                b["h"] = json!(250);
            },
        ))
    })
    .await;
    let ex = Exchange::start(&config(
        "",
        &[bidder("alpha", &pa, ""), bidder("beta", &pb, "")],
    ))
    .await;
    let mut request = prebid_request("pb-answer");
    request["at"] = json!(1);
    let req = http::Request::post(ex.url("/openrtb2/auction"))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "http://publisher.example:8080")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&request).unwrap(),
        )))
        .unwrap();
    let (status, headers, body) = ex.send(req).await;
    let response: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://publisher.example:8080"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");

    // beta wins both (first price, 10% fee): it is answered under the alias the page used.
    let seatbids = response["seatbid"].as_array().unwrap();
    assert_eq!(seatbids.len(), 1, "{response}");
    assert_eq!(seatbids[0]["seat"], "b-alias");
    let bids = seatbids[0]["bid"].as_array().unwrap();
    let div1 = bids.iter().find(|b| b["impid"] == "div-1").unwrap();
    let price = div1["price"].as_f64().unwrap();
    assert!((price - 2.0 * 0.9).abs() < 1e-9, "{div1}");
    assert_eq!(div1["crid"], "beta-seat-creative");
    assert_eq!(div1["w"], 300);
    assert_eq!(div1["ext"]["prebid"]["type"], "banner");
    assert_eq!(
        div1["ext"]["prebid"]["targeting"],
        json!({
            "hb_pb": "1.80", "hb_pb_b-alias": "1.80",
            "hb_bidder": "b-alias", "hb_bidder_b-alias": "b-alias",
            "hb_size": "300x250", "hb_size_b-alias": "300x250"
        })
    );
    let div2 = bids.iter().find(|b| b["impid"] == "div-2").unwrap();
    assert_eq!(
        div2["ext"]["prebid"]["targeting"]["hb_pb"], "1.30",
        "1.35 rounds down"
    );
    assert_eq!(response["cur"], "USD");
    let times = &response["ext"]["responsetimemillis"];
    assert!(
        times["b-alias"].is_u64() && times["alpha"].is_u64(),
        "{response}"
    );
}

#[tokio::test]
async fn a_prebid_no_bid_is_json_gzip_may_be_in_the_query_and_bad_granularity_is_refused() {
    let pa = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config("", &[bidder("alpha", &pa, "")])).await;
    let (status, response) = ex.auction(&prebid_request("pb-none")).await;
    assert_eq!(status, 200);
    assert_eq!(response, json!({"id": "pb-none"}));

    // Prebid.js's `endpointCompression`: a gzipped body flagged in the query only.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        &serde_json::to_vec(&prebid_request("pb-gz")).unwrap(),
    )
    .unwrap();
    let req = http::Request::post(ex.url("/openrtb2/auction?gzip=1"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(gz.finish().unwrap())))
        .unwrap();
    let (status, _, body) = ex.send(req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"id": "pb-gz"})
    );

    let mut bad = prebid_request("pb-bad");
    bad["ext"]["prebid"]["targeting"]["pricegranularity"] = json!({"ranges": [{"max": 5}]});
    let (status, response) = ex.auction(&bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        response["field"],
        "ext.prebid.targeting.pricegranularity.ranges[0].increment"
    );
}

#[tokio::test]
async fn the_auction_answers_a_cors_preflight_without_credentials_of_its_own() {
    let pa = Partner::start(|_| Reply::Status(204)).await;
    // Supply tokens configured: the preflight still passes (browsers send none with it).
    let ex = Exchange::start(&config(
        "[[plugins.exchange.supply]]\nname = \"pbjs\"\ntoken = \"prebid-page-token-0001\"\n",
        &[bidder("alpha", &pa, "")],
    ))
    .await;
    let req = http::Request::options(ex.url("/openrtb2/auction"))
        .header("origin", "https://news.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = ex.send(req).await;
    assert_eq!(status, 204);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://news.example"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-methods"], "POST, OPTIONS");
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization,content-type"
    );

    // An unauthorized call still tells the page why.
    let req = http::Request::post(ex.url("/openrtb2/auction"))
        .header("origin", "https://news.example")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let (status, headers, _) = ex.send(req).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://news.example"
    );
}
