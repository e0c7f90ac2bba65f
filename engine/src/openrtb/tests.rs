use super::*;
use pretty_assertions::assert_eq;

#[test]
fn unknown_fields_and_ext_survive_a_round_trip() {
    let input = r#"{"id":"r1","imp":[{"id":"1","banner":{"format":[{"w":300,"h":250,"ext":{"f":1}}],"ext":{"b":true},"newfield":[1,2]},"ext":{"prebid":{"bidder":{"x":{"p":7}}}}}],"site":{"page":"https://a.example/p","publisher":{"id":"pub","ext":{"k":"v"}}},"regs":{"gdpr":1,"us_privacy":"1YNN","gpp":"DBABMA~","gpp_sid":[2]},"user":{"consent":"CO","eids":[{"source":"id5","uids":[{"id":"u","atype":1}]}]},"future":{"nested":"value"},"ext":{"top":1}}"#;
    let req: BidRequest = serde_json::from_str(input).unwrap();
    assert_eq!(req.imp[0].banner.as_ref().unwrap().unknown[0].0, "newfield");
    assert_eq!(req.regs.as_ref().unwrap().gdpr, Some(1));
    assert_eq!(
        req.user.as_ref().unwrap().eids[0].uids[0].id.as_deref(),
        Some("u")
    );
    let out = serde_json::to_value(&req).unwrap();
    let expected: serde_json::Value = serde_json::from_str(input).unwrap();
    assert_eq!(out, expected);
}

#[test]
fn absent_fields_are_not_invented_on_output() {
    let req: BidRequest =
        serde_json::from_str(r#"{"id":"r","imp":[{"id":"1","video":{"mimes":["video/mp4"]}}]}"#)
            .unwrap();
    assert_eq!(
        serde_json::to_string(&req).unwrap(),
        r#"{"id":"r","imp":[{"id":"1","video":{"mimes":["video/mp4"]}}]}"#
    );
    assert_eq!(req.auction_type(), 2, "the spec's default auction type");
}

#[test]
fn nulls_read_as_absent_and_duplicates_are_refused() {
    let req: BidRequest = serde_json::from_str(
        r#"{"id":"r","imp":[{"id":"1","banner":null,"native":{"request":"{}"}}],"bcat":null}"#,
    )
    .unwrap();
    assert!(req.imp[0].banner.is_none());
    assert!(req.bcat.is_empty());
    let err = serde_json::from_str::<BidRequest>(
        r#"{"id":"r","imp":[{"id":"1","bidfloor":1,"bidfloor":0}]}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("duplicate field `bidfloor`"),
        "{err}"
    );
}

#[test]
fn media_types_follow_the_impressions() {
    let req: BidRequest = serde_json::from_str(
        r#"{"id":"r","imp":[{"id":"1","banner":{"w":1,"h":1}},{"id":"2","video":{"mimes":["a"]},"audio":{"mimes":["b"]}}]}"#,
    )
    .unwrap();
    let media = req.media_types();
    assert!(
        media.contains(MediaType::Banner)
            && media.contains(MediaType::Video)
            && media.contains(MediaType::Audio)
    );
    assert!(!media.contains(MediaType::Native));
    let mut imp = req.imp[1].clone();
    imp.retain_media(MediaTypes::NONE.with(MediaType::Video));
    assert!(imp.audio.is_none() && imp.video.is_some());
}

#[test]
fn responses_keep_bid_ext() {
    let input = r#"{"id":"r","seatbid":[{"seat":"s","bid":[{"id":"b","impid":"1","price":1.5,"adm":"<a>","mtype":1,"ext":{"dsp":{"x":1}}}]}],"cur":"EUR"}"#;
    let resp: BidResponse = serde_json::from_str(input).unwrap();
    assert_eq!(resp.seatbid[0].bid[0].price, Some(1.5));
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        serde_json::from_str::<serde_json::Value>(input).unwrap()
    );
}

#[test]
fn an_ext_names_a_key_only_as_a_whole_quoted_string() {
    let ext = Raw::from_json(r#"{"gpid":"/1/top","prebid":{"bidder":{}}}"#).unwrap();
    assert!(ext.names_any(&["prebid"]));
    assert!(ext.names_any(&["schain", "gpid"]));
    assert!(!ext.names_any(&["bid"]), "a key's tail is not the key");
    assert!(!ext.names_any(&["prebi"]), "a key's head is not the key");
    assert!(!ext.names_any(&["top"]));
    assert!(!Raw::from_json("{}").unwrap().names_any(&["prebid"]));
    // The key as the text's last string still counts.
    assert!(
        Raw::from_json(r#"{"a":"prebid"}"#)
            .unwrap()
            .names_any(&["prebid"])
    );
}

#[test]
fn from_json_reads_what_from_slice_reads_and_refuses_what_it_refuses() {
    let body = r#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250},"ext":{"k":"é"}}]}"#;
    let ours: BidRequest = from_json(body.as_bytes()).unwrap();
    let theirs: BidRequest = serde_json::from_slice(body.as_bytes()).unwrap();
    assert_eq!(ours, theirs);
    // Not UTF-8: the same error, naming the same place.
    let bad = b"{\"id\":\"r\xff\",\"imp\":[]}";
    let ours = from_json::<BidRequest>(bad).unwrap_err().to_string();
    let theirs = serde_json::from_slice::<BidRequest>(bad)
        .unwrap_err()
        .to_string();
    assert_eq!(ours, theirs);
    assert!(from_json::<BidRequest>(b"{\"id\":").is_err());
}

#[test]
fn request_strings_read_alike_inline_or_on_the_heap() {
    // Text holds up to 24 bytes inline and longer ones on the heap: both sides of that line,
    // with escapes and non-ASCII, must read as the text says and write back the same.
    for len in [0, 1, 23, 24, 25, 200] {
        let plain = "x".repeat(len);
        let escaped = format!("{}\\\"é\\u00e9", "y".repeat(len));
        let json = format!(
            r#"{{"id":"{plain}","imp":[{{"id":"{escaped}","tagid":"{plain}"}}],"bcat":["{escaped}"]}}"#
        );
        let req: BidRequest = serde_json::from_str(&json).unwrap();
        let unescaped = format!("{}\"éé", "y".repeat(len));
        assert_eq!(req.id, plain);
        assert_eq!(req.imp[0].id, unescaped);
        assert_eq!(req.imp[0].tagid.as_deref(), Some(plain.as_str()));
        assert_eq!(req.bcat, [unescaped.as_str()]);
        let again: BidRequest = serde_json::from_slice(&to_json(&req)).unwrap();
        assert_eq!(again, req);
    }
    let req: BidRequest = serde_json::from_str(r#"{"id":null,"imp":[]}"#).unwrap();
    assert!(req.id.is_empty());
    let err = serde_json::from_str::<BidRequest>(r#"{"id":"a","id":"b","imp":[]}"#).unwrap_err();
    assert!(err.to_string().contains("duplicate field `id`"), "{err}");
}

#[test]
fn objects_are_filled_in_place_as_the_text_says() {
    // Nine impressions (the array grows while its objects are filled in their slots), arrays of
    // objects inside objects, and nulls for an object and for an array of objects.
    let imps: Vec<String> = (1..=9)
        .map(|i| {
            format!(
                r#"{{"id":"{i}","banner":{{"format":[{{"w":300,"h":250}},{{"w":728,"h":90,"ext":{{"f":{i}}}}}]}},"pmp":{{"deals":[{{"id":"d{i}","bidfloor":1.5}}]}},"bidfloor":0.{i}}}"#
            )
        })
        .collect();
    let input = format!(
        r#"{{"id":"r","imp":[{}],"site":{{"id":"s","publisher":{{"id":"p"}},"content":null}},"app":null,"user":{{"eids":[{{"source":"id5","uids":[{{"id":"u1"}},{{"id":"u2","atype":3}}]}}],"data":null}},"source":{{"schain":{{"complete":1,"ver":"1.0","nodes":[{{"asi":"a.example","sid":"1","hp":1}},{{"asi":"b.example","sid":"2","hp":1}}]}}}},"future":[1,{{"k":null}}]}}"#,
        imps.join(",")
    );
    let boxed = object::read_boxed::<BidRequest>(&input).unwrap();
    let (read, text) = from_json_text_boxed::<BidRequest>(input.as_bytes());
    assert_eq!(text, Some(input.as_str()));
    assert_eq!(read.unwrap(), boxed);
    assert_eq!(boxed.imp.len(), 9);
    assert_eq!(boxed.imp[8].id, "9");
    assert_eq!(boxed.imp[8].bidfloor, Some(0.9));
    assert_eq!(boxed.imp[4].banner.as_ref().unwrap().format[1].w, Some(728));
    assert!(boxed.app.is_none());
    assert!(boxed.site.as_ref().unwrap().content.is_none());
    let uids = &boxed.user.as_ref().unwrap().eids[0].uids;
    assert_eq!(uids[1].atype, Some(3));
    // Written back, it says what the text said, less the nulls (absent members).
    let mut expected: serde_json::Value = serde_json::from_str(&input).unwrap();
    let object = expected.as_object_mut().unwrap();
    object.remove("app");
    object["site"].as_object_mut().unwrap().remove("content");
    object["user"].as_object_mut().unwrap().remove("data");
    assert_eq!(serde_json::to_value(&*boxed).unwrap(), expected);
}

#[test]
fn a_misshapen_object_is_refused_in_the_by_value_readers_words() {
    // The words and places are those of the reader before objects were filled in place.
    let refusal = |body: &str| {
        object::read_boxed::<BidRequest>(body)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refusal(r#"{"id":"r","site":3}"#),
        "invalid type: integer `3`, expected a Site object at line 1 column 18"
    );
    assert_eq!(
        refusal(r#"{"id":"r","imp":[null]}"#),
        "invalid type: null, expected a Imp object at line 1 column 21"
    );
    assert_eq!(
        refusal(r#"{"id":"r","imp":{"id":"1"}}"#),
        "invalid type: map, expected a sequence at line 1 column 16"
    );
    assert_eq!(
        refusal(r#"{"id":"r","imp":[{"id":"1"}],"imp":[{"id":"2"}]}"#),
        "duplicate field `imp` at line 1 column 34"
    );
    assert_eq!(
        refusal(r#"{"id":"r"} {"#),
        "trailing characters at line 1 column 12"
    );
    // The by-value reader, which explains a refusal field by field, agrees on each.
    for body in [
        r#"{"id":"r","site":3}"#,
        r#"{"id":"r","imp":[null]}"#,
        r#"{"id":"r","imp":{"id":"1"}}"#,
        r#"{"id":"r"} {"#,
    ] {
        assert_eq!(
            refusal(body),
            serde_json::from_str::<BidRequest>(body)
                .unwrap_err()
                .to_string()
        );
    }
}
