//! Tests of the per-bidder `imp.ext` split and its spliced bodies.

use super::*;
use crate::bidder::Outbound;
use crate::openrtb::{MediaType, MediaTypes};
use serde_json::{Value, json};

fn request(value: Value) -> BidRequest {
    serde_json::from_value(value).unwrap()
}

fn prebid_request() -> BidRequest {
    request(json!({
        "id": "r", "tmax": 200,
        "imp": [
            {"id": "1", "banner": {"w": 300, "h": 250},
             "ext": {"gpid": "/slot/1", "bidder": {"stale": true},
                     "prebid": {"adunitcode": "div-1",
                                "bidder": {"alpha": {"placement": 11}, "b-alias": {"zone": "z"}}}}},
            {"id": "2", "banner": {"w": 728, "h": 90},
             "ext": {"prebid": {"bidder": {"alpha": {"placement": 22}}}}},
            {"id": "3", "banner": {"w": 320, "h": 50}, "ext": {"data": {"x": 1}}}
        ],
        "ext": {"prebid": {"aliases": {"b-alias": "beta", "odd": 7}}}
    }))
}

fn imp_exts(body: &[u8]) -> Vec<Value> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["imp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|imp| imp["ext"].clone())
        .collect()
}

#[test]
fn each_bidder_sees_only_its_own_params_as_imp_ext_bidder() {
    let req = prebid_request();
    let params = BidderParams::of(&req).unwrap();
    assert_eq!(params.code_for("alpha"), Some("alpha"));
    assert_eq!(
        params.code_for("beta"),
        Some("b-alias"),
        "through the alias"
    );
    assert_eq!(params.code_for("gamma"), None);

    let outbound = Outbound::new(&req);
    let banner = MediaTypes::NONE.with(MediaType::Banner);
    let (alpha, ids) = outbound.bidder_body(banner, 200, "alpha").unwrap();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(
        imp_exts(&alpha),
        [
            json!({"bidder": {"placement": 11}, "gpid": "/slot/1", "prebid": {"adunitcode": "div-1"}}),
            json!({"bidder": {"placement": 22}}),
            json!({"data": {"x": 1}}),
        ]
    );
    let (beta, _) = outbound.bidder_body(banner, 200, "beta").unwrap();
    assert_eq!(
        imp_exts(&beta),
        [
            json!({"bidder": {"zone": "z"}, "gpid": "/slot/1", "prebid": {"adunitcode": "div-1"}}),
            json!({}),
            json!({"data": {"x": 1}}),
        ]
    );
    let (gamma, _) = outbound.bidder_body(banner, 200, "gamma").unwrap();
    let text = String::from_utf8_lossy(&gamma);
    assert!(
        !text.contains("placement") && !text.contains("zone"),
        "{text}"
    );
    let (delta, _) = outbound.bidder_body(banner, 200, "delta").unwrap();
    assert_eq!(
        gamma.as_ptr(),
        delta.as_ptr(),
        "partners not addressed share one body"
    );

    // Everything but the ext is the shared body's.
    let mut shared: Value =
        serde_json::from_slice(&outbound.openrtb_body(banner, 200).unwrap().0).unwrap();
    let mut spliced: Value = serde_json::from_slice(&alpha).unwrap();
    for v in [&mut shared, &mut spliced] {
        for imp in v["imp"].as_array_mut().unwrap() {
            imp.as_object_mut().unwrap().remove("ext");
        }
    }
    assert_eq!(shared, spliced);
}

#[test]
fn spliced_bodies_equal_full_serialization() {
    let req = prebid_request();
    let params = BidderParams::of(&req).unwrap();
    let template = Template::build(&req, &params).unwrap();
    for code in [Some("alpha"), Some("b-alias"), None] {
        assert_eq!(
            template.body_for(&params, code),
            body_without_template(&req, &params, code),
            "{code:?}"
        );
    }
}

#[test]
fn a_request_spelling_a_marker_falls_back_to_full_serialization() {
    let mut req = prebid_request();
    let marker = format!("bourse-imp-ext-{:016x}-0", *MARKER_TAG);
    req.imp[2].tagid = Some(marker.into());
    let params = BidderParams::of(&req).unwrap();
    assert!(Template::build(&req, &params).is_none());
    let outbound = Outbound::new(&req);
    let banner = MediaTypes::NONE.with(MediaType::Banner);
    let (alpha, _) = outbound.bidder_body(banner, 200, "alpha").unwrap();
    assert_eq!(imp_exts(&alpha)[0]["bidder"], json!({"placement": 11}));
    assert_eq!(imp_exts(&alpha)[1]["bidder"], json!({"placement": 22}));
}

#[test]
fn requests_without_prebid_params_share_the_plain_body() {
    for req in [
        request(json!({"id": "r", "tmax": 200, "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}]})),
        // `prebid` without `bidder`, or a `bidder` that is not an object: left as sent.
        request(
            json!({"id": "r", "tmax": 200, "imp": [{"id": "1", "banner": {"w": 1, "h": 1},
            "ext": {"prebid": {"adunitcode": "x"}}}]}),
        ),
        request(
            json!({"id": "r", "tmax": 200, "imp": [{"id": "1", "banner": {"w": 1, "h": 1},
            "ext": {"prebid": {"bidder": "alpha"}}}]}),
        ),
    ] {
        assert!(BidderParams::of(&req).is_none());
        let outbound = Outbound::new(&req);
        let banner = MediaTypes::NONE.with(MediaType::Banner);
        let (a, _) = outbound.bidder_body(banner, 200, "alpha").unwrap();
        let (shared, _) = outbound.openrtb_body(banner, 200).unwrap();
        assert_eq!(a.as_ptr(), shared.as_ptr());
    }
}

#[test]
fn a_restricted_request_and_another_tmax_keep_each_bidders_params() {
    let mut req = prebid_request();
    req.imp[1].banner = None;
    req.imp[1].video = Some(Default::default());
    let outbound = Outbound::new(&req);
    let banner = MediaTypes::NONE.with(MediaType::Banner);
    let (alpha, ids) = outbound.bidder_body(banner, 150, "alpha").unwrap();
    assert_eq!(ids, ["1", "3"]);
    let v: Value = serde_json::from_slice(&alpha).unwrap();
    assert_eq!(v["tmax"], 150);
    assert_eq!(v["imp"][0]["ext"]["bidder"], json!({"placement": 11}));
}
