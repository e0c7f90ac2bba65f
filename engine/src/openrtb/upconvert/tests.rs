use super::*;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// Upconverts `request` (JSON) and returns it as JSON.
fn up(request: Value) -> Value {
    let mut req: BidRequest = serde_json::from_value(request).unwrap();
    upconvert(&mut req).unwrap();
    serde_json::to_value(&req).unwrap()
}

fn refused(request: Value) -> Rejection {
    let mut req: BidRequest = serde_json::from_value(request).unwrap();
    upconvert(&mut req).expect_err("the request must be refused")
}

fn base(extra: Value) -> Value {
    let mut request = json!({"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]});
    for (key, value) in extra.as_object().unwrap() {
        request[key] = value.clone();
    }
    request
}

#[test]
fn regs_ext_gdpr_and_us_privacy_move_to_regs() {
    let out = up(base(
        json!({"regs": {"ext": {"gdpr": 1, "us_privacy": "1YNN", "gpc": "1"}}}),
    ));
    assert_eq!(
        out["regs"],
        json!({"gdpr": 1, "us_privacy": "1YNN", "ext": {"gpc": "1"}})
    );
}

#[test]
fn regs_ext_gpp_and_gpp_sid_move_to_regs() {
    let out = up(base(
        json!({"regs": {"ext": {"gpp": "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", "gpp_sid": [2, 6]}}}),
    ));
    assert_eq!(
        out["regs"],
        json!({"gpp": "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA", "gpp_sid": [2, 6]}),
        "an ext left empty is dropped"
    );
}

#[test]
fn user_ext_consent_moves_to_user_consent() {
    let out = up(base(
        json!({"user": {"id": "u", "ext": {"consent": "CPXxRfA"}}}),
    ));
    assert_eq!(out["user"], json!({"id": "u", "consent": "CPXxRfA"}));
}

#[test]
fn user_ext_eids_move_to_user_eids() {
    let eids = json!([{"source": "id5-sync.com", "uids": [{"id": "ID5*x", "atype": 1, "ext": {"linkType": 2}}]}]);
    let out = up(base(
        json!({"user": {"ext": {"eids": eids, "other": true}}}),
    ));
    assert_eq!(out["user"], json!({"eids": eids, "ext": {"other": true}}));
}

#[test]
fn source_ext_schain_moves_to_source_schain() {
    let schain = json!({"complete": 1, "ver": "1.0", "nodes": [
        {"asi": "ssp.example", "sid": "pub-1", "hp": 1},
        {"asi": "reseller.example", "sid": "r-9", "rid": "req-7", "hp": 1}
    ]});
    let out = up(base(
        json!({"source": {"tid": "t", "ext": {"schain": schain}}}),
    ));
    assert_eq!(out["source"], json!({"tid": "t", "schain": schain}));
}

#[test]
fn imp_ext_prebid_is_rewarded_inventory_moves_to_rwdd() {
    let out = up(
        json!({"id": "r", "imp": [{"id": "1", "video": {"mimes": ["video/mp4"]},
        "ext": {"prebid": {"is_rewarded_inventory": 1, "bidder": {"a": {"p": 1}}}, "gpid": "/x"}}]}),
    );
    assert_eq!(out["imp"][0]["rwdd"], 1);
    assert_eq!(
        out["imp"][0]["ext"],
        json!({"prebid": {"bidder": {"a": {"p": 1}}}, "gpid": "/x"})
    );
    let alone = up(
        json!({"id": "r", "imp": [{"id": "1", "banner": {"w": 1, "h": 1},
        "ext": {"prebid": {"is_rewarded_inventory": 0}}}]}),
    );
    assert_eq!(alone["imp"][0]["rwdd"], 0);
    assert!(alone["imp"][0].get("ext").is_none(), "{alone}");
}

#[test]
fn the_26_field_wins_and_the_25_copy_is_dropped() {
    let out = up(base(json!({
        "regs": {"gdpr": 0, "us_privacy": "1NNN", "ext": {"gdpr": 1, "us_privacy": "1YYY"}},
        "user": {"consent": "new", "eids": [{"source": "a.com", "uids": [{"id": "1"}]}],
                 "ext": {"consent": "old", "eids": [{"source": "b.com", "uids": [{"id": "2"}]}]}},
        "source": {"schain": {"complete": 1, "ver": "1.0", "nodes": [{"asi": "new.example", "sid": "1"}]},
                   "ext": {"schain": {"complete": 0, "ver": "1.0", "nodes": [{"asi": "old.example", "sid": "2"}]}}}
    })));
    assert_eq!(out["regs"], json!({"gdpr": 0, "us_privacy": "1NNN"}));
    assert_eq!(
        out["user"],
        json!({"consent": "new", "eids": [{"source": "a.com", "uids": [{"id": "1"}]}]})
    );
    assert_eq!(out["source"]["schain"]["nodes"][0]["asi"], "new.example");
    assert!(out["source"].get("ext").is_none(), "{out}");
}

#[test]
fn a_26_request_is_left_byte_for_byte_alone() {
    let request = base(json!({
        "regs": {"gdpr": 1, "ext": {"dsa": {"required": 1}}},
        "user": {"consent": "c", "ext": {"data": {"gdpr_consent": "no move"}}},
        "source": {"tid": "t", "ext": {"nested": {"schain": "not top level"}}}
    }));
    let mut req: BidRequest = serde_json::from_value(request).unwrap();
    let before = req.clone();
    upconvert(&mut req).unwrap();
    // Compared as text: not even an `ext` was rewritten.
    assert_eq!(format!("{req:?}"), format!("{before:?}"));
}

#[test]
fn a_25_value_of_the_wrong_type_is_refused_where_it_was_sent() {
    let cases = [
        (
            json!({"regs": {"ext": {"gdpr": "1"}}}),
            "regs.ext.gdpr",
            "type",
        ),
        (
            json!({"regs": {"ext": {"gdpr": 2}}}),
            "regs.ext.gdpr",
            "boolean",
        ),
        (
            json!({"regs": {"ext": {"us_privacy": 1}}}),
            "regs.ext.us_privacy",
            "type",
        ),
        (
            json!({"regs": {"ext": {"gpp_sid": "2"}}}),
            "regs.ext.gpp_sid",
            "type",
        ),
        (
            json!({"user": {"ext": {"consent": {}}}}),
            "user.ext.consent",
            "type",
        ),
        (
            json!({"user": {"ext": {"eids": {"source": "x"}}}}),
            "user.ext.eids",
            "type",
        ),
        (
            json!({"source": {"ext": {"schain": []}}}),
            "source.ext.schain",
            "type",
        ),
    ];
    for (extra, field, rule) in cases {
        let err = refused(base(extra.clone()));
        assert_eq!(
            (err.field.as_str(), err.rule),
            (field, rule),
            "{extra}: {err}"
        );
        assert!(!err.message.contains("invalid type"), "our words: {err}");
    }
    let err = refused(
        json!({"id": "r", "imp": [{"id": "1", "banner": {"w": 1, "h": 1},
        "ext": {"prebid": {"is_rewarded_inventory": true}}}]}),
    );
    assert_eq!(err.field, "imp[0].ext.prebid.is_rewarded_inventory");
}
