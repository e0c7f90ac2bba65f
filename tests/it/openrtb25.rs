//! OpenRTB 2.5 clients: their `ext` forms reach 2.6 partners as 2.6 fields, 2.5 partners as the
//! 2.5 forms, and both with the whole upstream supply chain plus our node.

use crate::support::*;
use serde_json::{Value, json};

/// A banner request in the 2.5 forms Prebid.js and older SSPs send, with a two-node chain.
fn request_25(id: &str) -> Value {
    let mut request = banner_request(id, &[("1", 0.1)]);
    request["regs"] = json!({"ext": {"gdpr": 1, "us_privacy": "1YNN"}});
    request["user"] = json!({"id": "u-1", "ext": {
        "consent": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
        "eids": [{"source": "id5-sync.com", "uids": [{"id": "ID5-abc", "atype": 1}]}]
    }});
    request["source"] = json!({"ext": {"schain": {"complete": 1, "ver": "1.0", "nodes": [
        {"asi": "ssp.example", "sid": "pub-77", "hp": 1},
        {"asi": "reseller.example", "sid": "r-9", "rid": "upstream-req", "hp": 1}
    ]}}});
    request
}

fn asis(nodes: &Value) -> Vec<&str> {
    nodes
        .as_array()
        .unwrap_or_else(|| panic!("no nodes in {nodes}"))
        .iter()
        .map(|n| n["asi"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_25_request_reaches_a_26_partner_with_26_fields_and_the_whole_supply_chain() {
    let partner = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config(
        "schain_asi = \"bourse.test\"",
        &[bidder("alpha", &partner, "")],
    ))
    .await;
    let (status, body) = ex.auction(&request_25("up-1")).await;
    assert_eq!(status, 204, "{body}");
    let sent = partner.last_request();
    assert_eq!(sent["regs"]["gdpr"], 1);
    assert_eq!(sent["regs"]["us_privacy"], "1YNN");
    assert!(sent["regs"].get("ext").is_none(), "no 2.5 copy: {sent}");
    assert_eq!(
        sent["user"]["consent"],
        "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"
    );
    assert_eq!(sent["user"]["eids"][0]["source"], "id5-sync.com");
    assert_eq!(sent["user"]["eids"][0]["uids"][0]["id"], "ID5-abc");
    assert!(sent["user"].get("ext").is_none(), "{sent}");
    let schain = &sent["source"]["schain"];
    assert_eq!(
        asis(&schain["nodes"]),
        ["ssp.example", "reseller.example", "bourse.test"],
        "every upstream node, then ours"
    );
    assert_eq!(schain["complete"], 1, "as the seller sent it");
    assert_eq!(schain["nodes"][2]["sid"], "pub-1");
    assert_eq!(schain["nodes"][2]["rid"], "up-1");
    assert!(
        sent["source"]["ext"].get("schain").is_none(),
        "no second, stale chain: {sent}"
    );
}

#[tokio::test]
async fn a_25_partner_gets_the_25_forms_back_with_the_whole_supply_chain() {
    let partner = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config(
        "schain_asi = \"bourse.test\"",
        &[bidder(
            "old",
            &partner,
            "adapter = \"openrtb25\"\nparams = { publisher_id = \"pub-9\" }",
        )],
    ))
    .await;
    let (status, _) = ex.auction(&request_25("up-2")).await;
    assert_eq!(status, 204);
    let sent = partner.last_request();
    assert_eq!(sent["regs"]["ext"]["gdpr"], 1);
    assert_eq!(sent["regs"]["ext"]["us_privacy"], "1YNN");
    assert_eq!(sent["user"]["ext"]["eids"][0]["source"], "id5-sync.com");
    assert!(sent["source"].get("schain").is_none(), "{sent}");
    let schain = &sent["source"]["ext"]["schain"];
    assert_eq!(
        asis(&schain["nodes"]),
        ["ssp.example", "reseller.example", "bourse.test"]
    );
    assert_eq!(schain["complete"], 1);
}

#[tokio::test]
async fn without_an_upstream_chain_ours_stands_alone_and_incomplete() {
    let partner = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config(
        "schain_asi = \"bourse.test\"",
        &[bidder("alpha", &partner, "")],
    ))
    .await;
    let (status, _) = ex.auction(&banner_request("up-3", &[("1", 0.1)])).await;
    assert_eq!(status, 204);
    let schain = partner.last_request()["source"]["schain"].clone();
    assert_eq!(asis(&schain["nodes"]), ["bourse.test"]);
    assert_eq!(schain["complete"], 0);
}

#[tokio::test]
async fn a_25_value_of_the_wrong_type_is_refused_where_it_was_sent() {
    let partner = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config("", &[bidder("alpha", &partner, "")])).await;
    let mut request = banner_request("up-4", &[("1", 0.1)]);
    request["regs"] = json!({"ext": {"gdpr": "yes"}});
    let (status, body) = ex.auction(&request).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "regs.ext.gdpr");
    assert_eq!(partner.request_count(), 0);
}
