use super::*;
use crate::openrtb::Bid;

/// A valid request: a required title, a required main image, an optional sponsor line.
const GOOD: &str = r#"{"ver":"1.2","context":2,"contextsubtype":20,"plcmttype":1,"plcmtcnt":1,"seq":0,
    "assets":[{"id":1,"required":1,"title":{"len":90}},
              {"id":2,"required":1,"img":{"type":3,"wmin":600,"hmin":314,"mimes":["image/png"]}},
              {"id":3,"data":{"type":1,"len":25}},
              {"id":4,"video":{"mimes":["video/mp4"],"minduration":5,"maxduration":30,"protocols":[2,3,7]}}],
    "eventtrackers":[{"event":1,"methods":[1,2]}],"aurlsupport":0,"durlsupport":0,"privacy":1,"ext":{"x":1}}"#;

/// `GOOD` with `edit` applied to its JSON, checked as imp 0's request.
fn check_edited(edit: impl FnOnce(&mut serde_json::Value)) -> Result<NativeRequest, Rejection> {
    let mut value: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    edit(&mut value);
    validate_request(&value.to_string(), "imp[0].native.request")
}

fn refused(edit: impl FnOnce(&mut serde_json::Value), field: &str, rule: &str) {
    let err = check_edited(edit).expect_err("the request must be refused");
    assert_eq!((err.field.as_str(), err.rule), (field, rule), "{err}");
    assert!(
        !err.message.contains("invalid type") && !err.message.contains("expected"),
        "our own words, not serde's: {err}"
    );
}

#[test]
fn a_spec_request_is_read_with_every_field() {
    let req = validate_request(GOOD, "imp[0].native.request").unwrap();
    assert_eq!(req.ver.as_deref(), Some("1.2"));
    assert_eq!(
        (req.context, req.contextsubtype, req.plcmttype),
        (Some(2), Some(20), Some(1))
    );
    assert_eq!(req.assets.len(), 4);
    assert_eq!(req.assets[0].kind(), Some(AssetKind::Title));
    assert!(req.assets[1].is_required() && !req.assets[2].is_required());
    assert_eq!(req.assets[1].img.as_ref().unwrap().wmin, Some(600));
    assert_eq!(
        req.assets[3].video.as_ref().unwrap().protocols,
        vec![2, 3, 7]
    );
    assert_eq!(req.eventtrackers[0].methods, vec![1, 2]);
    assert_eq!(req.privacy, Some(1));
    assert!(req.ext.is_some());
}

#[test]
fn the_older_native_wrapper_is_read_too() {
    let wrapped = format!(r#"{{"native":{GOOD}}}"#);
    let req = validate_request(&wrapped, "imp[0].native.request").unwrap();
    assert_eq!(req.assets.len(), 4);
    // Paths inside the wrapper say so.
    let bad = r#"{"native":{"assets":[{"id":1,"title":{}}]}}"#;
    let err = validate_request(bad, "imp[0].native.request").unwrap_err();
    assert_eq!(
        err.field,
        "imp[0].native.request.native.assets[0].title.len"
    );
}

#[test]
fn a_request_that_is_not_json_is_refused_at_the_request() {
    for text in ["{\"assets\":[", "not json", "[1,2]", "42"] {
        let err = validate_request(text, "imp[3].native.request").unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.rule),
            ("imp[3].native.request", "json"),
            "{text}: {err}"
        );
    }
}

#[test]
fn wrong_types_are_refused_with_their_path_in_our_words() {
    refused(
        |v| v["assets"][2]["img"] = serde_json::json!({"w": "wide"}),
        "imp[0].native.request.assets[2].img.w",
        "type",
    );
    refused(
        |v| v["assets"][0]["title"]["len"] = serde_json::json!(-1.5),
        "imp[0].native.request.assets[0].title.len",
        "type",
    );
    refused(
        |v| v["plcmtcnt"] = serde_json::json!("one"),
        "imp[0].native.request.plcmtcnt",
        "type",
    );
}

#[test]
fn each_kind_of_invalid_asset_is_refused_with_its_path() {
    use serde_json::json;
    refused(
        |v| v["assets"] = json!([]),
        "imp[0].native.request.assets",
        "required",
    );
    refused(
        |v| {
            v.as_object_mut().unwrap().remove("assets");
        },
        "imp[0].native.request.assets",
        "required",
    );
    refused(
        |v| v["assets"][2]["id"] = json!(1),
        "imp[0].native.request.assets[2].id",
        "unique",
    );
    refused(
        |v| {
            v["assets"][1].as_object_mut().unwrap().remove("id");
        },
        "imp[0].native.request.assets[1].id",
        "required",
    );
    // Not exactly one of title, img, video and data: none, or two.
    refused(
        |v| v["assets"][2] = json!({"id": 3, "required": 1}),
        "imp[0].native.request.assets[2]",
        "one_of",
    );
    refused(
        |v| v["assets"][0]["img"] = json!({"type": 3}),
        "imp[0].native.request.assets[0]",
        "one_of",
    );
    refused(
        |v| v["assets"][0]["title"] = json!({}),
        "imp[0].native.request.assets[0].title.len",
        "required",
    );
    refused(
        |v| v["assets"][0]["title"]["len"] = json!(0),
        "imp[0].native.request.assets[0].title.len",
        "range",
    );
    refused(
        |v| v["assets"][1]["img"]["type"] = json!(7),
        "imp[0].native.request.assets[1].img.type",
        "enum",
    );
    refused(
        |v| v["assets"][1]["img"]["hmin"] = json!(-1),
        "imp[0].native.request.assets[1].img.hmin",
        "range",
    );
    refused(
        |v| {
            v["assets"][2]["data"]
                .as_object_mut()
                .unwrap()
                .remove("type");
        },
        "imp[0].native.request.assets[2].data.type",
        "required",
    );
    refused(
        |v| v["assets"][2]["data"]["type"] = json!(13),
        "imp[0].native.request.assets[2].data.type",
        "enum",
    );
    refused(
        |v| v["assets"][3]["video"]["mimes"] = json!([]),
        "imp[0].native.request.assets[3].video.mimes",
        "required",
    );
    refused(
        |v| {
            v["assets"][3]["video"]
                .as_object_mut()
                .unwrap()
                .remove("maxduration");
        },
        "imp[0].native.request.assets[3].video.maxduration",
        "required",
    );
    refused(
        |v| v["assets"][3]["video"]["protocols"] = json!([2, 99]),
        "imp[0].native.request.assets[3].video.protocols[1]",
        "enum",
    );
    refused(
        |v| v["assets"][0]["required"] = json!(2),
        "imp[0].native.request.assets[0].required",
        "boolean",
    );
}

#[test]
fn invalid_context_placement_and_tracker_values_are_refused() {
    use serde_json::json;
    refused(
        |v| v["context"] = json!(4),
        "imp[0].native.request.context",
        "enum",
    );
    refused(
        |v| v["contextsubtype"] = json!(16),
        "imp[0].native.request.contextsubtype",
        "enum",
    );
    // 20 is a social subtype; context 1 is content.
    refused(
        |v| v["context"] = json!(1),
        "imp[0].native.request.contextsubtype",
        "combination",
    );
    refused(
        |v| v["plcmttype"] = json!(0),
        "imp[0].native.request.plcmttype",
        "enum",
    );
    refused(
        |v| v["plcmtcnt"] = json!(0),
        "imp[0].native.request.plcmtcnt",
        "range",
    );
    refused(
        |v| v["seq"] = json!(-1),
        "imp[0].native.request.seq",
        "range",
    );
    refused(
        |v| v["aurlsupport"] = json!(3),
        "imp[0].native.request.aurlsupport",
        "boolean",
    );
    refused(
        |v| v["eventtrackers"][0]["event"] = json!(5),
        "imp[0].native.request.eventtrackers[0].event",
        "enum",
    );
    refused(
        |v| v["eventtrackers"][0]["methods"] = json!([]),
        "imp[0].native.request.eventtrackers[0].methods",
        "required",
    );
    refused(
        |v| v["eventtrackers"][0]["methods"] = json!([1, 3]),
        "imp[0].native.request.eventtrackers[0].methods[1]",
        "enum",
    );
}

#[test]
fn exchange_specific_values_are_allowed() {
    use serde_json::json;
    let req = check_edited(|v| {
        v["context"] = json!(500);
        v["contextsubtype"] = json!(501);
        v["plcmttype"] = json!(502);
        v["assets"][1]["img"]["type"] = json!(503);
        v["assets"][2]["data"]["type"] = json!(504);
        v["eventtrackers"][0] = json!({"event": 555, "methods": [500]});
    });
    assert!(req.is_ok(), "{req:?}");
}

#[test]
fn the_auction_reads_native_requests_once_with_their_imp_path() {
    let request = format!(
        r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":1,"h":1}}}},{{"id":"2","native":{{"request":{}}}}}]}}"#,
        serde_json::to_string(GOOD).unwrap()
    );
    let req: BidRequest = serde_json::from_str(&request).unwrap();
    let natives = NativeImps::parse(&req).unwrap();
    assert!(natives.get(0).is_none());
    assert_eq!(natives.get(1).unwrap().assets.len(), 4);

    let bad = r#"{"id":"r","imp":[{"id":"1","banner":{"w":1,"h":1}},{"id":"2","native":{"request":"{\"assets\":[{\"id\":1,\"img\":{\"type\":9}}]}"}}]}"#;
    let req: BidRequest = serde_json::from_str(bad).unwrap();
    let err = NativeImps::parse(&req).unwrap_err();
    assert_eq!(err.field, "imp[1].native.request.assets[0].img.type");

    let banner_only: BidRequest =
        serde_json::from_str(r#"{"id":"r","imp":[{"id":"1","banner":{"w":1,"h":1}}]}"#).unwrap();
    let none = NativeImps::parse(&banner_only).unwrap();
    assert_eq!(none.imps.capacity(), 0, "nothing allocated without native");
}

fn request() -> NativeRequest {
    validate_request(GOOD, "r").unwrap()
}

const ANSWER: &str = r#"{"ver":"1.2","assets":[{"id":1,"title":{"text":"Hello"}},
    {"id":2,"img":{"url":"https://a.example/i.png","w":1200,"h":627}},
    {"id":3,"data":{"value":"Acme"}}],"link":{"url":"https://a.example"}}"#;

#[test]
fn a_response_answering_the_assets_passes() {
    assert_eq!(check_response(&request(), ANSWER), Ok(()));
    // The older wrapper, and optional assets left out.
    let wrapped = r#"{"native":{"assets":[{"id":1,"title":{"text":"Hi"}},{"id":2,"img":{"url":"u"}}],"link":{"url":"l"}}}"#;
    assert_eq!(check_response(&request(), wrapped), Ok(()));
    // Assets served from a URL cannot be checked here: fine where the request allows it.
    let by_url = r#"{"assetsurl":"https://a.example/assets"}"#;
    assert_eq!(
        check_response(&request(), by_url),
        Err(NativeRefusal::Assets),
        "aurlsupport is 0"
    );
    let mut allows = request();
    allows.aurlsupport = Some(1);
    assert_eq!(check_response(&allows, by_url), Ok(()));
}

#[test]
fn a_response_that_does_not_answer_the_assets_is_refused() {
    let cases = [
        // Required image left out.
        (
            r#"{"assets":[{"id":1,"title":{"text":"Hi"}}],"link":{"url":"l"}}"#,
            NativeRefusal::Assets,
        ),
        // An id the request never asked for.
        (
            r#"{"assets":[{"id":1,"title":{"text":"Hi"}},{"id":2,"img":{"url":"u"}},{"id":9,"data":{"value":"x"}}]}"#,
            NativeRefusal::Assets,
        ),
        // Asset 1 is a title, not an image.
        (
            r#"{"assets":[{"id":1,"img":{"url":"u"}},{"id":2,"img":{"url":"u"}}]}"#,
            NativeRefusal::Assets,
        ),
        // An asset without an id.
        (
            r#"{"assets":[{"title":{"text":"Hi"}},{"id":1,"title":{"text":"Hi"}},{"id":2,"img":{"url":"u"}}]}"#,
            NativeRefusal::Assets,
        ),
        ("<div>a banner</div>", NativeRefusal::NotNative),
        (r#"{"assets":"none"}"#, NativeRefusal::NotNative),
    ];
    for (adm, expected) in cases {
        assert_eq!(check_response(&request(), adm), Err(expected), "{adm}");
    }
    assert_eq!(
        NativeRefusal::Assets.loss_reason().code(),
        204,
        "Creative Filtered – Incorrect Creative Format"
    );
}

#[test]
fn only_native_bids_are_checked() {
    let req: BidRequest = serde_json::from_str(&format!(
        r#"{{"id":"r","imp":[{{"id":"1","native":{{"request":{}}},"banner":{{"w":1,"h":1}}}}]}}"#,
        serde_json::to_string(GOOD).unwrap()
    ))
    .unwrap();
    let natives = NativeImps::parse(&req).unwrap();
    let candidate = |media_type, adm: &str| Candidate {
        bidder: 0,
        imp: 0,
        seat: "s".into(),
        bid: Bid {
            adm: Some(adm.to_owned()),
            ..Bid::default()
        },
        media_type,
        price: 1.0,
    };
    assert_eq!(
        natives.check_bid(&candidate(MediaType::Banner, "<div>")),
        Ok(())
    );
    assert_eq!(
        natives.check_bid(&candidate(MediaType::Native, "<div>")),
        Err(NativeRefusal::NotNative)
    );
    assert_eq!(
        natives.check_bid(&candidate(MediaType::Native, ANSWER)),
        Ok(())
    );
}
