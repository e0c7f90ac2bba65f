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
    check(
        r#"{"id":"a","imp":[{"id":"1","banner":{"w":1,"h":1}}],"regs":{"us_privacy":"1Y"}}"#,
        "regs.us_privacy",
        "format",
    );
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
    assert!(err.message.contains("duplicate field `id`"), "{err}");
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
