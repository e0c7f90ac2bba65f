use super::*;

fn parse(json: &str) -> BidRequest {
    serde_json::from_str(json).expect("test request parses")
}

fn check(json: &str, field: &str, rule: &str) {
    let err = validate(&parse(json), &Limits::default()).expect_err("request must be refused");
    assert_eq!((err.field.as_str(), err.rule), (field, rule), "{err}");
}

#[test]
fn accepts_a_typical_request() {
    let req = parse(
        r#"{"id":"a","imp":[{"id":"1","banner":{"format":[{"w":300,"h":250}]},"bidfloor":0.5,"bidfloorcur":"EUR"}],
            "site":{"page":"https://example.com"},"cur":["USD"],"tmax":250,"regs":{"gdpr":1,"us_privacy":"1YNN"}}"#,
    );
    assert_eq!(validate(&req, &Limits::default()), Ok(()));
}

#[test]
fn refuses_each_broken_rule() {
    check(
        r#"{"id":"","imp":[{"id":"1","banner":{"w":1,"h":1}}]}"#,
        "id",
        "required",
    );
    check(r#"{"id":"a","imp":[]}"#, "imp", "required");
    check(r#"{"id":"a","imp":[{"id":"1"}]}"#, "imp[0]", "required");
    check(
        r#"{"id":"a","imp":[{"id":"","banner":{"w":1,"h":1}}]}"#,
        "imp[0].id",
        "required",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}},{"id":"1","banner":{"w":1,"h":1}}]}"#,
        "imp[1].id",
        "unique",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{}}]}"#,
        "imp[0].banner",
        "size",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"format":[{"w":0,"h":250}]}}]}"#,
        "imp[0].banner.format[0]",
        "size",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1},"bidfloor":-1}]}"#,
        "imp[0].bidfloor",
        "non_negative",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1},"bidfloorcur":"usd"}]}"#,
        "imp[0].bidfloorcur",
        "currency",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","video":{"w":640,"h":480}}]}"#,
        "imp[0].video.mimes",
        "required",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","audio":{}}]}"#,
        "imp[0].audio.mimes",
        "required",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","native":{}}]}"#,
        "imp[0].native.request",
        "required",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"at":3}"#,
        "at",
        "enum",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"tmax":0}"#,
        "tmax",
        "range",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"cur":["US"]}"#,
        "cur[0]",
        "currency",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"site":{},"app":{}}"#,
        "site",
        "exclusive",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"regs":{"gdpr":2}}"#,
        "regs.gdpr",
        "boolean",
    );
    for (json, field) in [
        (
            r#"{"id":"a","imp":[{"id":"1","video":{"mimes":["v"],"minbitrate":-1}}]}"#,
            "imp[0].video.minbitrate",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","video":{"mimes":["v"],"maxbitrate":-300}}]}"#,
            "imp[0].video.maxbitrate",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","video":{"mimes":["v"],"maxseq":-2}}]}"#,
            "imp[0].video.maxseq",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","video":{"mimes":["v"],"sequence":-1}}]}"#,
            "imp[0].video.sequence",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","audio":{"mimes":["a"],"minbitrate":-1}}]}"#,
            "imp[0].audio.minbitrate",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","audio":{"mimes":["a"],"maxbitrate":-1}}]}"#,
            "imp[0].audio.maxbitrate",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","audio":{"mimes":["a"],"maxseq":-1}}]}"#,
            "imp[0].audio.maxseq",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","audio":{"mimes":["a"],"sequence":-9}}]}"#,
            "imp[0].audio.sequence",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"device":{"geo":{"accuracy":-5}}}"#,
            "device.geo.accuracy",
        ),
        (
            r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"user":{"geo":{"accuracy":-1}}}"#,
            "user.geo.accuracy",
        ),
    ] {
        check(json, field, "non_negative");
        let err = validate(&parse(json), &Limits::default()).unwrap_err();
        assert!(err.message.starts_with("must be 0 or more, got -"), "{err}");
    }
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"source":{"schain":{"complete":1,"nodes":[{"sid":"x"}]}}}"#,
        "source.schain.nodes[0].asi",
        "required",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1},"pmp":{"private_auction":1,"deals":[]}}]}"#,
        "imp[0].pmp.deals",
        "required",
    );
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1},"pmp":{"deals":[{"id":"d"},{"id":"d"}]}}]}"#,
        "imp[0].pmp.deals[1].id",
        "unique",
    );
}

#[test]
fn interstitial_banners_need_no_size() {
    for banner in [r#"{}"#, r#"{"w":0,"h":0}"#, r#"{"format":[{"w":0,"h":0}]}"#] {
        let json = format!(r#"{{"id":"a","imp":[{{"id":"1","instl":1,"banner":{banner}}}]}}"#);
        assert_eq!(
            validate(&parse(&json), &Limits::default()),
            Ok(()),
            "{json}"
        );
        // Not an interstitial: the same banner still needs a size.
        let json = json.replace(r#""instl":1,"#, "");
        assert!(
            validate(&parse(&json), &Limits::default()).is_err(),
            "{json}"
        );
    }
}

#[test]
fn a_malformed_us_privacy_string_is_not_the_validators_concern() {
    // `signals::drop_malformed` ignores and counts it before validation.
    let req =
        parse(r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"regs":{"us_privacy":"1Y"}}"#);
    assert_eq!(validate(&req, &Limits::default()), Ok(()));
}

/// Parses `body` (which must not parse) and checks the rejection's field, rule and message.
fn refused(body: &str, field: &str, rule: &str, message: &str) {
    let err = Rejection::from_parse_error(body.as_bytes());
    assert_eq!(
        (err.field.as_str(), err.rule, err.message.as_str()),
        (field, rule, message),
        "{body}"
    );
}

#[test]
fn parse_errors_are_in_our_words() {
    refused(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":-1,"h":50}}]}"#,
        "imp[0].banner.w",
        "non_negative",
        "must be a whole number from 0 to 4294967295, got -1",
    );
    refused(
        r#"{"id":"a","imp":[{"id":"1","banner":{"format":[{"w":300,"h":-250}]}}]}"#,
        "imp[0].banner.format[0].h",
        "non_negative",
        "must be a whole number from 0 to 4294967295, got -250",
    );
    refused(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1},"instl":300}]}"#,
        "imp[0].instl",
        "range",
        "must be a whole number from 0 to 255, got 300",
    );
    refused(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":"wide","h":1}}]}"#,
        "imp[0].banner.w",
        "type",
        "must be a whole number from 0 to 4294967295, got a string",
    );
    refused(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1.5,"h":1}}]}"#,
        "imp[0].banner.w",
        "type",
        "must be a whole number from 0 to 4294967295, got 1.5",
    );
    refused(
        r#"{"id":"a","imp":{"id":"1"}}"#,
        "imp",
        "type",
        "must be an array, got an object",
    );
    refused(
        r#"{"id":7,"imp":[]}"#,
        "id",
        "type",
        "must be a string, got 7",
    );
    refused(
        r#"{"id":"a","imp":[{"id":"1","bidfloor":"1.0"}]}"#,
        "imp[0].bidfloor",
        "type",
        "must be a number, got a string",
    );
    refused(
        r#"{"id":"a","id":"b","imp":[]}"#,
        "id",
        "unique",
        "this field appears more than once in its object",
    );
    refused(r#"[1,2]"#, "", "type", "must be an object, got an array");
}

#[test]
fn an_ext_that_is_not_an_object_is_refused_where_it_is() {
    for (body, field) in [
        (r#"{"id":"a","imp":[],"ext":5}"#, "ext"),
        (r#"{"id":"a","imp":[{"id":"1","ext":"x"}]}"#, "imp[0].ext"),
        (
            r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1,"ext":[1]}}]}"#,
            "imp[0].banner.ext",
        ),
        (
            r#"{"id":"a","imp":[],"site":{"publisher":{"ext":true}}}"#,
            "site.publisher.ext",
        ),
        (r#"{"id":"a","imp":[],"regs":{"ext":  1.5}}"#, "regs.ext"),
    ] {
        refused(body, field, "object", "ext must be an object");
    }
    // An object, or null (no ext), is fine.
    let req: BidRequest =
        serde_json::from_str(r#"{"id":"a","imp":[],"ext":null,"regs":{"ext": {"gdpr":1}}}"#)
            .unwrap();
    assert!(req.ext.is_none());
    assert_eq!(req.regs.unwrap().ext.unwrap().get(), r#"{"gdpr":1}"#);
}

#[test]
fn syntax_errors_end_their_path_at_a_field_never_at_a_placeholder() {
    // Regression: a syntax error where a key was expected reported `imp[0].?`.
    for body in [
        r#"{"id":"a","imp":[{"id":"1",}]}"#,
        r#"{"id":"a","imp":[{"id":"1", 5: 1}]}"#,
        r#"{"id":"a","imp":[{"id":"1","#,
        r#"{"id":"a",}"#,
    ] {
        let err = Rejection::from_parse_error(body.as_bytes());
        assert_eq!(err.rule, "json", "{body}: {err}");
        assert!(!err.field.contains('?'), "{body}: {err}");
        assert!(err.message.starts_with("not valid JSON: "), "{err}");
        assert!(err.message.contains(" at line 1, column "), "{err}");
    }
    let err = Rejection::from_parse_error(br#"{"id":"a","imp":[{"id":"1",}]}"#);
    assert_eq!(err.field, "imp[0]");
    assert_eq!(
        err.message,
        "not valid JSON: a trailing comma at line 1, column 28"
    );
    let err = Rejection::from_parse_error(br#"{"id":"a","imp":[]} x"#);
    assert_eq!(
        (err.field.as_str(), err.message.as_str()),
        (
            "",
            "not valid JSON: text after the end of the JSON at line 1, column 21"
        )
    );
}

#[test]
fn parse_errors_never_quote_serde() {
    for body in [
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":-1}}]}"#,
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":"<script>"}}]}"#,
        r#"{"id":"a","imp":[{"id":"1","ext":5}]}"#,
        r#"{"id":"a","imp":[{"id":"1","#,
        r#"{"id":"a","imp":[{"id":"1",}]}"#,
        r#"{"id":"a","tmax":99999999999999999999999}"#,
        r#"{"id":"a","imp":[],"cur":"USD"}"#,
        r#"nope"#,
    ] {
        let err = Rejection::from_parse_error(body.as_bytes());
        for serde_words in [
            "invalid value",
            "invalid type",
            "expected u",
            "expected i",
            "<script>",
            "EOF",
        ] {
            assert!(!err.message.contains(serde_words), "{body}: {err}");
        }
        assert!(!err.field.ends_with('?'), "{body}: {err}");
    }
}

#[test]
fn parse_errors_name_the_field() {
    let err =
        Rejection::from_parse_error(br#"{"id":"a","imp":[{"id":"1","banner":{"w":"wide"}}]}"#);
    assert_eq!(
        (err.field.as_str(), err.rule),
        ("imp[0].banner.w", "type"),
        "{err}"
    );
    let err = Rejection::from_parse_error(br#"{"id":"a","imp":[{"id":"1","#);
    assert_eq!(err.rule, "json");
    let err = Rejection::from_parse_error(br#"{"id":"a","id":"b","imp":[]}"#);
    assert_eq!((err.field.as_str(), err.rule), ("id", "unique"), "{err}");
}

#[test]
fn finds_a_repeated_impression_id_among_few_and_among_many() {
    for count in [2, SMALL_IMP_COUNT, SMALL_IMP_COUNT + 1, 40] {
        let mut imps: Vec<String> = (0..count)
            .map(|n| format!(r#"{{"id":"i{n}","banner":{{"w":1,"h":1}}}}"#))
            .collect();
        let json = |imps: &[String]| format!(r#"{{"id":"a","imp":[{}]}}"#, imps.join(","));
        assert_eq!(
            validate(&parse(&json(&imps)), &Limits::default()),
            Ok(()),
            "{count} distinct ids"
        );
        imps[count - 1] = r#"{"id":"i0","banner":{"w":1,"h":1}}"#.to_owned();
        check(&json(&imps), &format!("imp[{}].id", count - 1), "unique");
    }
}
