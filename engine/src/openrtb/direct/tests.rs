use super::*;
use crate::openrtb::{BidRequest, BidResponse, from_json};
use pretty_assertions::assert_eq;

/// What serde reads from `text`, and what the direct reader reads (`None` if it declined).
fn both(text: &str) -> (serde_json::Result<BidRequest>, Option<BidRequest>) {
    let mut direct = BidRequest::default();
    let accepted = read(text, &mut direct).is_ok();
    (serde_json::from_str(text), accepted.then_some(direct))
}

/// The direct reader takes `text` and reads it as serde does: the same value, written back the
/// same byte for byte (kept raw values verbatim), with its members noted at the same places.
fn assert_read_alike(text: &str) -> BidRequest {
    let (by_serde, direct) = both(text);
    let by_serde = by_serde.unwrap_or_else(|err| panic!("serde refused {text}: {err}"));
    let direct = direct.unwrap_or_else(|| panic!("the direct reader declined {text}"));
    assert_eq!(direct, by_serde);
    assert_eq!(
        String::from_utf8(crate::openrtb::to_json(&direct)).unwrap(),
        String::from_utf8(crate::openrtb::to_json(&by_serde)).unwrap()
    );
    assert_eq!(direct.arrival.members(text), by_serde.arrival.members(text));
    direct
}

#[test]
fn the_harness_requests_are_read_directly_as_serde_reads_them() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/data");
    for name in ["banner-site.json", "app-video.json"] {
        let text = std::fs::read_to_string(format!("{root}/{name}")).unwrap();
        let request = assert_read_alike(&text);
        assert!(!request.imp.is_empty(), "{name}");
    }
}

#[test]
fn every_request_in_the_fuzz_corpus_reads_as_serde_reads_it_or_is_declined() {
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/openrtb_request"
    );
    let (mut direct_reads, mut declined_refusals) = (0, 0);
    for entry in std::fs::read_dir(corpus).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        match both(text) {
            (Ok(_), Some(_)) => {
                assert_read_alike(text);
                direct_reads += 1;
            }
            (Err(_), Some(direct)) => panic!("direct took what serde refuses: {text} → {direct:?}"),
            (Err(_), None) => declined_refusals += 1,
            // Declining a good document costs a second read, never a different answer.
            (Ok(_), None) => {}
        }
    }
    assert!(direct_reads > 100, "{direct_reads} read directly");
    assert!(declined_refusals > 10, "{declined_refusals} refusals seen");
}

#[test]
fn unicode_escapes_and_escaped_names_are_read_through_serde_and_come_out_the_same() {
    let request = assert_read_alike(
        r#"{"id":"a\"b\u00e9","imp":[{"id":"1","tagid":"x\/y\\z","banner":{"w":1}}],"c\u0075r":["USD"],"b\ncat":1}"#,
    );
    assert_eq!(request.id, "a\"bé");
    assert_eq!(request.imp[0].tagid.as_deref(), Some("x/y\\z"));
    assert_eq!(
        request.cur,
        ["USD"],
        "an escaped name is still the member's name"
    );
    assert_eq!(request.unknown[0].0, "b\ncat");
}

#[test]
fn strings_with_escapes_other_than_unicode_ones_are_read_directly() {
    let request = assert_read_alike(
        r#"{"id":"a\"b\\c\/d\be\ff\ng\rh\ti","imp":[{"id":"\"","tagid":"a long tag id past the inline twenty-four bytes \"quoted\""}]}"#,
    );
    assert_eq!(request.id, "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti");
    assert_eq!(request.imp[0].id, "\"");
    assert_eq!(
        request.imp[0].tagid.as_deref(),
        Some("a long tag id past the inline twenty-four bytes \"quoted\"")
    );
    let answer = r#"{"id":"r","seatbid":[{"bid":[{"id":"b","impid":"1","price":1,"adm":"<a href=\"x\">\n</a>\\"}]}]}"#;
    let mut direct = BidResponse::default();
    assert_eq!(
        read(answer, &mut direct),
        Ok(()),
        "markup with escaped quotes"
    );
    assert_eq!(direct, serde_json::from_str::<BidResponse>(answer).unwrap());
    assert_eq!(
        direct.seatbid[0].bid[0].adm.as_deref(),
        Some("<a href=\"x\">\n</a>\\")
    );
}

#[test]
fn whitespace_nulls_numbers_and_kept_values_read_as_serde_reads_them() {
    let request = assert_read_alike(concat!(
        " {\n\t\"id\" : \"r\" , \"imp\" : [ { \"id\":\"1\", \"bidfloor\": 0.0000012345678901234567,",
        " \"secure\":0, \"banner\" : null, \"video\": {\"w\":0,\"battr\":[ ],\"mimes\":[\"a\" , \"b\"]},",
        " \"qty\": {\"multiplier\": 1.5e3}, \"ext\": {\"a\": [1, {\"b\": null}]}} ],",
        " \"tmax\": -120, \"at\": 1, \"bcat\": null, \"device\": {\"geo\": {\"lat\": -33.8688, \"lon\": 151}},",
        " \"future\": [true, false, null, \"s\", -1.5E-3, {}], \"user\": null, \"ext\": null } \r\n"
    ));
    assert_eq!(request.tmax, Some(-120));
    let negative_zero = assert_read_alike(r#"{"id":"r","imp":[{"id":"1","bidfloor":-0}]}"#);
    assert!(negative_zero.imp[0].bidfloor.unwrap().is_sign_negative());
    assert_eq!(
        request.imp[0].bidfloor,
        Some(0.000_001_234_567_890_123_456_7)
    );
    let geo = request.device.unwrap().geo.unwrap();
    assert_eq!((geo.lat, geo.lon), (Some(-33.8688), Some(151.0)));
    assert_eq!(
        request.unknown[0].1.get(),
        r#"[true, false, null, "s", -1.5E-3, {}]"#
    );
    assert!(request.user.is_none() && request.ext.is_none() && request.bcat.is_empty());
}

#[test]
fn what_the_direct_reader_declines_is_read_or_refused_by_serde_in_its_own_words() {
    let cases = [
        // Refused: the words and columns are serde's.
        r#"{"id":"r","imp":[],}"#,
        r#"{"id":"r","imp":[{"id":"1","w":1}],"id":"s"}"#,
        r#"{"id":"r","imp":[{"id":"1","banner":{"w":1.0}}]}"#,
        r#"{"id":"r","imp":[{"id":"1","banner":{"w":-1}}]}"#,
        r#"{"id":"r","imp":[{"id":"1","secure":256}]}"#,
        r#"{"id":"r","imp":[{"id":"1","secure":-0}]}"#,
        r#"{"id":"r","imp":[{"id":"1","bidfloor":1e999}]}"#,
        r#"{"id":"r","imp":[{"id":"1","bidfloor":01}]}"#,
        r#"{"id":"r","imp":[{"id":"1","bidfloor":1.}]}"#,
        r#"{"id":"r","imp":[null]}"#,
        r#"{"id":"r","imp":{"id":"1"}}"#,
        r#"{"id":"r","imp":[],"ext":[1]}"#,
        r#"{"id":"r","cur":["USD",null]}"#,
        r#"{"id":"r","tmax":9223372036854775808}"#,
        r#"{"id":"r","imp":[]} x"#,
        "{\"id\":\"r\u{1}\"}",
        r#"{"id":"r\x"}"#,
        "{\"id\":\"r\\\"\u{1}\"}",
        r#"{"id":"r\"#,
        r#"{"id":"r\"}"#,
        r#"{"id":"r\n\ud800"}"#,
        r#"{"id":"r","imp":[{"id":"1","ext":{"a":[1,]}}]}"#,
        r#"{"id":"r""#,
        "",
        "[]",
        // Read, by serde: forms the direct reader leaves to it.
        r#"{"id":"r","imp":[{"id":"1","bidfloor":1e2,"banner":{"w":3E0}}]}"#,
        r#"{"id":"r","tmax":12345678901234567890123456789012345678901}"#,
    ];
    for text in cases {
        let (by_serde, direct) = both(text);
        assert!(direct.is_none(), "the direct reader took {text}");
        let ours = from_json::<BidRequest>(text.as_bytes());
        let boxed = crate::openrtb::from_json_text_boxed::<BidRequest>(text.as_bytes()).0;
        match by_serde {
            Ok(request) => {
                assert_eq!(ours.unwrap(), request);
                assert_eq!(*boxed.unwrap(), request);
            }
            Err(err) => {
                assert_eq!(ours.unwrap_err().to_string(), err.to_string());
                assert_eq!(boxed.unwrap_err().to_string(), err.to_string());
            }
        }
    }
}

#[test]
fn nesting_near_serdes_limit_is_left_to_serde() {
    for depth in [90, 97, 98, 124, 125, 126, 127, 200] {
        let ext = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!(r#"{{"id":"r","imp":[{{"id":"1","ext":{{"a":{ext}}}}}]}}"#);
        let (by_serde, direct) = both(&text);
        if let Some(direct) = direct {
            assert_eq!(
                direct,
                by_serde.expect("serde reads what the direct reader read")
            );
        }
        let ours = from_json::<BidRequest>(text.as_bytes()).map_err(|e| e.to_string());
        let theirs = serde_json::from_str::<BidRequest>(&text).map_err(|e| e.to_string());
        assert_eq!(ours, theirs, "nested {depth} deep");
    }
    let shallow = format!(
        r#"{{"id":"r","ext":{{"a":{}1{}}}}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    assert!(
        both(&shallow).1.is_some(),
        "ordinary nesting is read directly"
    );
}

#[test]
fn partner_answers_are_read_directly_as_serde_reads_them() {
    let text = r#"{"id":"r","seatbid":[{"seat":"s","bid":[{"id":"b","impid":"1","price":1.25,"adm":"<div class=\"ad\">é</div>","nurl":"https://n.example/w?p=${AUCTION_PRICE}","adomain":["a.example"],"w":300,"h":250,"mtype":1,"ext":{"dsp":{"x":1}}}]}],"cur":"EUR","bidid":"x"}"#;
    let mut direct = BidResponse::default();
    assert_eq!(read(text, &mut direct), Ok(()));
    let by_serde: BidResponse = serde_json::from_str(text).unwrap();
    assert_eq!(direct, by_serde);
    assert_eq!(
        direct.seatbid[0].bid[0].adm.as_deref(),
        Some("<div class=\"ad\">é</div>")
    );
    assert_eq!(from_json::<BidResponse>(text.as_bytes()).unwrap(), by_serde);
}

proptest::proptest! {
    /// Any string as serde_json writes it (escaping quotes, backslashes and control characters)
    /// reads back the same through the direct reader; one with no control character but the
    /// five with short escapes is read directly, without serde's help.
    #[test]
    fn a_written_string_reads_back_the_same(value in "(.|[\"\\\\/\n\r\t\u{8}\u{c}])*") {
        let text = format!(r#"{{"id":{},"imp":[]}}"#, serde_json::to_string(&value).unwrap());
        let (by_serde, direct) = both(&text);
        let by_serde = by_serde.unwrap();
        proptest::prop_assert_eq!(&by_serde.id, value.as_str());
        let short_escapes_only = value
            .chars()
            .all(|c| c >= ' ' || matches!(c, '\n' | '\r' | '\t' | '\u{8}' | '\u{c}'));
        match direct {
            Some(direct) => proptest::prop_assert_eq!(direct, by_serde),
            None => proptest::prop_assert!(!short_escapes_only, "declined {}", text),
        }
    }
}

proptest::proptest! {
    /// The word-at-a-time scan stops where a byte-by-byte scan would.
    #[test]
    fn a_plain_run_ends_where_a_byte_scan_says(bytes in proptest::collection::vec(
        proptest::prop_oneof![
            8 => proptest::prelude::Just(b'a'),
            1 => proptest::prelude::any::<u8>(),
            1 => proptest::prop_oneof![
                proptest::prelude::Just(b'"'),
                proptest::prelude::Just(b'\\'),
                proptest::prelude::Just(0x1f_u8),
                proptest::prelude::Just(0x20_u8),
            ],
        ], 0..70),
        from in 0usize..70)
    {
        let from = from.min(bytes.len());
        let expected = bytes[from..].iter().position(|&b| ends_plain_run(b)).map_or(bytes.len(), |i| from + i);
        proptest::prop_assert_eq!(plain_run_end(&bytes, from), expected);
    }
}
