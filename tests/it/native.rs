//! Native 1.2 end to end: requests checked per the spec, and native bids checked against the
//! assets their impression asked for.

use crate::support::*;
use serde_json::{Value, json};

/// A required title and main image, an optional sponsor line.
const NATIVE_REQUEST: &str = r#"{"ver":"1.2","context":1,"plcmttype":1,"assets":[{"id":1,"required":1,"title":{"len":50}},{"id":2,"required":1,"img":{"type":3,"wmin":600,"hmin":314}},{"id":3,"data":{"type":1}}],"eventtrackers":[{"event":1,"methods":[1]}]}"#;

fn native_request(id: &str, native: &str) -> Value {
    json!({
        "id": id,
        "imp": [{"id": "1", "native": {"request": native, "ver": "1.2"}, "bidfloor": 0.1}],
        "site": {"page": "https://news.example/a", "publisher": {"id": "pub-1"}},
        "tmax": 500
    })
}

/// A native bid from `seat` at `price` whose markup is `adm`.
fn native_partner_reply(request: &Value, seat: &str, price: f64, adm: &'static str) -> Value {
    bids_with(request, seat, &[("1", price)], |bid| {
        bid["adm"] = json!(adm);
        bid["mtype"] = json!(4);
    })
}

const COMPLETE: &str = r#"{"ver":"1.2","assets":[{"id":1,"title":{"text":"Read this"}},{"id":2,"img":{"url":"https://good.example/i.png","w":1200,"h":627}}],"link":{"url":"https://good.example"}}"#;
const NO_IMAGE: &str = r#"{"native":{"assets":[{"id":1,"title":{"text":"Read this"}},{"id":3,"data":{"value":"Acme"}}],"link":{"url":"https://lazy.example"}}}"#;

#[tokio::test]
async fn a_native_bid_leaving_out_a_required_asset_loses_to_one_that_answers() {
    let lazy =
        Partner::start(|r| Reply::Json(native_partner_reply(r, "lazy", 5.0, NO_IMAGE))).await;
    let good =
        Partner::start(|r| Reply::Json(native_partner_reply(r, "good", 2.0, COMPLETE))).await;
    let ex = Exchange::start(&config(
        "",
        &[bidder("lazy", &lazy, ""), bidder("good", &good, "")],
    ))
    .await;
    let (status, response) = ex.auction(&native_request("nat-1", NATIVE_REQUEST)).await;
    assert_eq!(status, 200, "{response}");
    let bid = &response["seatbid"][0]["bid"][0];
    assert_eq!(response["seatbid"][0]["seat"], "good", "{response}");
    assert_eq!(bid["adm"], COMPLETE);
    assert_eq!(
        ex.metric("bourse_bidder_rejected_bids_total{bidder=\"lazy\",reason=\"native_assets\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_lone_native_bid_without_a_required_asset_gets_no_fill() {
    let lazy =
        Partner::start(|r| Reply::Json(native_partner_reply(r, "lazy", 5.0, NO_IMAGE))).await;
    let ex = Exchange::start(&config("", &[bidder("lazy", &lazy, "")])).await;
    let (status, _) = ex.auction(&native_request("nat-2", NATIVE_REQUEST)).await;
    assert_eq!(status, 204);
    // Markup that is not native at all loses too, counted apart.
    let html =
        Partner::start(|r| Reply::Json(native_partner_reply(r, "html", 5.0, "<div>ad</div>")))
            .await;
    let ex = Exchange::start(&config("", &[bidder("html", &html, "")])).await;
    let (status, _) = ex.auction(&native_request("nat-3", NATIVE_REQUEST)).await;
    assert_eq!(status, 204);
    assert_eq!(
        ex.metric("bourse_bidder_rejected_bids_total{bidder=\"html\",reason=\"native_markup\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_invalid_native_request_is_refused_with_the_assets_path() {
    let partner = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config("", &[bidder("alpha", &partner, "")])).await;
    let cases = [
        ("not json", "imp[0].native.request", "json"),
        (
            r#"{"assets":[]}"#,
            "imp[0].native.request.assets",
            "required",
        ),
        (
            r#"{"assets":[{"id":1,"title":{"len":20}},{"id":2,"img":{"type":8}}]}"#,
            "imp[0].native.request.assets[1].img.type",
            "enum",
        ),
        (
            r#"{"native":{"assets":[{"id":1,"title":{"len":20}},{"id":1,"data":{"type":2}}]}}"#,
            "imp[0].native.request.native.assets[1].id",
            "unique",
        ),
    ];
    for (native, field, rule) in cases {
        let (status, body) = ex.auction(&native_request("nat-bad", native)).await;
        assert_eq!(status, 400, "{native}: {body}");
        assert_eq!(
            (
                body["field"].as_str().unwrap(),
                body["rule"].as_str().unwrap()
            ),
            (field, rule),
            "{body}"
        );
    }
    assert_eq!(
        partner.request_count(),
        0,
        "nothing invalid reaches a partner"
    );
}
