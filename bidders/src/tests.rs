//! Unit tests of the registry: every adapter builds from a valid spec and refuses a bad one clearly.

use super::*;
use bourse_engine::bidder::BidderSpec;
use serde_json::json;

fn spec(adapter: &str, params: serde_json::Value) -> BidderSpec {
    let mut spec = BidderSpec::new("partner", "https://partner.example/bid");
    spec.adapter = adapter.to_owned();
    spec.params = params.as_object().cloned().unwrap_or_default();
    spec
}

fn refusal(spec: &BidderSpec) -> String {
    match registry().build(spec) {
        Ok(_) => panic!("spec for `{}` should be refused", spec.adapter),
        Err(msg) => msg,
    }
}

#[test]
fn registry_lists_every_adapter_once() {
    let names: Vec<_> = registry().names().collect();
    assert_eq!(names, ["openrtb", "openrtb25", "placement_json"]);
    assert_eq!(names.len(), ADAPTERS.len());
}

#[test]
fn every_adapter_builds_from_a_valid_spec() {
    let valid = [
        spec("openrtb", json!({})),
        spec("openrtb25", json!({ "publisher_id": "pub-1" })),
        spec("placement_json", json!({ "publisher_id": 42 })),
    ];
    for spec in &valid {
        if let Err(msg) = registry().build(spec) {
            panic!("`{}` refused a valid spec: {msg}", spec.adapter);
        }
    }
}

#[test]
fn unknown_adapter_is_refused_with_the_known_names() {
    let msg = refusal(&spec("nope", json!({})));
    assert_eq!(
        msg,
        "unknown adapter `nope` (known: openrtb, openrtb25, placement_json)"
    );
}

#[test]
fn bad_endpoint_is_refused() {
    let mut bad = spec("openrtb", json!({}));
    bad.endpoint = "not a url".to_owned();
    assert!(
        refusal(&bad).starts_with("endpoint `not a url` is not a valid URL"),
        "{}",
        refusal(&bad)
    );
    bad.endpoint = "ftp://partner.example/bid".to_owned();
    assert_eq!(
        refusal(&bad),
        "endpoint `ftp://partner.example/bid` has scheme `ftp`; use http or https"
    );
}

#[test]
fn reserved_and_malformed_headers_are_refused() {
    let mut bad = spec("openrtb", json!({}));
    bad.headers
        .insert("Content-Type".to_owned(), "text/plain".to_owned());
    assert_eq!(
        refusal(&bad),
        "header `Content-Type` is set by the exchange and cannot be configured"
    );
    bad.headers.clear();
    bad.headers
        .insert("x-api-key".to_owned(), "line\nbreak".to_owned());
    assert_eq!(
        refusal(&bad),
        "header `x-api-key` has a value that is not valid in HTTP"
    );
}

#[test]
fn params_are_checked() {
    assert_eq!(
        refusal(&spec("openrtb", json!({ "publisher_id": "x" }))),
        "unknown param `publisher_id`: this adapter takes no params"
    );
    for adapter in ["openrtb25", "placement_json"] {
        assert_eq!(
            refusal(&spec(adapter, json!({}))),
            "param `publisher_id` is required: the partner's id for this publisher"
        );
        assert_eq!(
            refusal(&spec(adapter, json!({ "publisher_id": "" }))),
            "param `publisher_id` must be a non-empty string or an integer"
        );
        assert_eq!(
            refusal(&spec(
                adapter,
                json!({ "publisher_id": "p", "publisher": "p" })
            )),
            "unknown param `publisher` (known: publisher_id)"
        );
    }
}

#[test]
fn media_outside_what_the_partner_buys_is_refused() {
    let mut native_only = spec("placement_json", json!({ "publisher_id": "p" }));
    native_only.media = vec![bourse_engine::openrtb::MediaType::Native];
    assert_eq!(
        refusal(&native_only),
        "`media` must list at least one of: banner, video"
    );
    let mut none = spec("openrtb", json!({}));
    none.media.clear();
    assert_eq!(
        refusal(&none),
        "`media` must list at least one of: banner, video, audio, native"
    );
}

#[test]
fn placement_json_endpoint_template_must_make_a_url() {
    let mut bad = spec("placement_json", json!({ "publisher_id": "p" }));
    bad.endpoint = "{placement_id}".to_owned();
    assert!(
        refusal(&bad).contains("is not a valid URL"),
        "{}",
        refusal(&bad)
    );
}

#[test]
fn a_bid_that_cannot_be_placed_is_refused_with_its_ids_quoted() {
    use bourse_engine::bidder::BidderRequest;
    use bourse_engine::openrtb::{Bid, BidRequest, MediaType, MediaTypes};
    let auction: BidRequest = serde_json::from_value(json!({
        "id": "r",
        "imp": [
            {"id": "1", "banner": {"w": 300, "h": 250}},
            {"id": "2", "banner": {"w": 300, "h": 250}, "video": {"mimes": ["video/mp4"]}}
        ]
    }))
    .unwrap();
    let request = BidderRequest {
        method: http::Method::POST,
        uri: "https://partner.example/bid".into(),
        headers: Vec::new(),
        body: bytes::Bytes::new(),
        imp_ids: vec!["1".into(), "2".into()],
    };
    let long_id = "b".repeat(200);
    let bid = |impid: &str| Bid {
        id: long_id.as_str().into(),
        impid: impid.into(),
        ..Bid::default()
    };
    let place =
        |bid: &Bid, declared| common::bid_media(&auction, &request, MediaTypes::ALL, bid, declared);
    assert_eq!(place(&bid("1"), Ok(None)), Ok(MediaType::Banner));
    let quoted = common::quote(&long_id);
    assert!(quoted.ends_with('…') && quoted.len() < long_id.len());
    assert_eq!(
        place(&bid("9"), Ok(None)),
        Err(format!(
            "bid `{quoted}` is for impression `9`, which this request did not offer"
        ))
    );
    assert_eq!(
        place(&bid("1"), Ok(Some(MediaType::Video))),
        Err(format!(
            "bid `{quoted}` is video but impression `1` did not offer video"
        ))
    );
    assert_eq!(
        place(&bid("2"), Ok(None)),
        Err(format!(
            "bid `{quoted}` does not say its media type and impression `2` offers several"
        ))
    );
    assert_eq!(
        place(&bid("2"), Err("unknown mtype".into())),
        Err(format!("bid `{quoted}`: unknown mtype"))
    );
}
