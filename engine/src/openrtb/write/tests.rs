use super::*;
use crate::openrtb::{BidRequest, BidResponse, Imp};
use pretty_assertions::assert_eq;

/// What the direct writer writes for `value`, and what serde_json writes.
fn both<T: Object + serde::Serialize>(value: &T) -> (String, String) {
    let mut direct = Vec::new();
    value.write_direct(&mut direct);
    (
        String::from_utf8(direct).expect("the writer writes UTF-8"),
        serde_json::to_string(value).unwrap(),
    )
}

#[test]
fn every_request_in_the_fuzz_corpus_is_written_as_serde_writes_it() {
    let corpus = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/openrtb_request"
    );
    let mut written = 0;
    for entry in std::fs::read_dir(corpus).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let Ok(request) = serde_json::from_slice::<BidRequest>(&bytes) else {
            continue;
        };
        let (direct, by_serde) = both(&request);
        assert_eq!(direct, by_serde);
        written += 1;
    }
    assert!(written > 100, "{written} requests written");
}

#[test]
fn an_answer_with_markup_urls_floats_and_kept_values_is_written_as_serde_writes_it() {
    let text = r#"{"id":"r","seatbid":[{"seat":"s","bid":[{"id":"b","impid":"1","price":1.25,"adm":"<div class=\"ad\">é\n\t\u0001\u007f</div>","nurl":"https://n.example/w?p=${AUCTION_PRICE}","adomain":["a.example","\\"],"w":300,"h":250,"mtype":1,"ext":{"dsp":{"x":[1, 2]}},"x\"y":{"k" : null}}]}],"cur":"EUR","bidid":"x"}"#;
    let mut answer: BidResponse = serde_json::from_str(text).unwrap();
    answer.seatbid[0].bid[0].price = Some(1e-7);
    let (direct, by_serde) = both(&answer);
    assert_eq!(direct, by_serde);
    assert!(direct.contains(r#""x\"y":{"k" : null}"#), "{direct}");
    assert_eq!(both(&BidResponse::default()), ("{}".into(), "{}".into()));
}

#[test]
fn numbers_json_cannot_hold_are_written_as_null_as_serde_writes_them() {
    for floor in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        5e-324,
        f64::MAX,
    ] {
        let imp = Imp {
            id: "1".into(),
            bidfloor: Some(floor),
            ..Imp::default()
        };
        let (direct, by_serde) = both(&imp);
        assert_eq!(direct, by_serde, "floor {floor}");
    }
}

proptest::proptest! {
    /// Any text, as a string member, as an unknown member's name and as a floor next to it,
    /// is written as serde_json writes it.
    #[test]
    fn any_text_and_number_is_written_as_serde_writes_it(
        text in "(.|[\"\\\\\n\r\t\u{0}-\u{1f}\u{7f}])*",
        floor in proptest::num::f64::ANY,
        secure in proptest::prelude::any::<u8>(),
        tmax in proptest::prelude::any::<i64>(),
    ) {
        let request = BidRequest {
            id: text.as_str().into(),
            tmax: Some(tmax),
            imp: vec![Imp {
                id: "1".into(),
                tagid: Some(text.as_str().into()),
                bidfloor: Some(floor),
                secure: Some(secure),
                unknown: vec![(text.clone(), crate::openrtb::Raw::from_json("[true]").unwrap())],
                ..Imp::default()
            }],
            ..BidRequest::default()
        };
        let (direct, by_serde) = both(&request);
        proptest::prop_assert_eq!(direct, by_serde);
    }
}
