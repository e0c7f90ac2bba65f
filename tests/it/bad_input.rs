//! Requests bourse must refuse, each with a clear, machine-readable reason.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use std::io::Write;

async fn exchange() -> (Partner, Exchange) {
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config(
        "max_body_bytes = 4096",
        &[bidder("alpha", &pa, "")],
    ))
    .await;
    (pa, ex)
}

async fn post(
    ex: &Exchange,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> (http::StatusCode, Value) {
    let mut req = http::Request::post(ex.url("/openrtb2/auction"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (status, _, body) = ex.send(req.body(Full::new(body.into())).unwrap()).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_problem() {
    let (partner, ex) = exchange().await;
    let (status, body) = post(&ex, "{\"id\": \"x\", \"imp\": [", &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["rule"], "json");
    let (status, body) = post(
        &ex,
        r#"{"id":"x","imp":[{"id":"1","banner":{"w":"wide","h":250}}]}"#,
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        (body["field"].as_str(), body["rule"].as_str()),
        (Some("imp[0].banner.w"), Some("type")),
        "{body}"
    );
    assert_eq!(partner.request_count(), 0, "nothing reaches a partner");
}

#[tokio::test]
async fn invalid_requests_name_the_field_and_rule() {
    let (_partner, ex) = exchange().await;
    let cases = [
        (json!({"id": "x", "imp": []}), "imp", "required"),
        (
            json!({"id": "", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}]}),
            "id",
            "required",
        ),
        (
            json!({"id": "x", "imp": [{"id": "1"}]}),
            "imp[0]",
            "required",
        ),
        (
            json!({"id": "x", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}, "bidfloor": -2}]}),
            "imp[0].bidfloor",
            "non_negative",
        ),
        (
            json!({"id": "x", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}], "at": 7}),
            "at",
            "enum",
        ),
        (
            json!({"id": "x", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}], "cur": ["JPY"]}),
            "cur",
            "currency",
        ),
        (
            json!({"id": "x", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}, "bidfloorcur": "CHF"}]}),
            "imp[0].bidfloorcur",
            "currency",
        ),
    ];
    for (request, field, rule) in cases {
        let (status, body) = ex.auction(&request).await;
        assert_eq!(status, 400, "{request}");
        assert_eq!(
            (body["field"].as_str(), body["rule"].as_str()),
            (Some(field), Some(rule)),
            "{body}"
        );
    }
    assert_eq!(
        ex.metric("bourse_exchange_requests_total{endpoint=\"auction\",outcome=\"invalid\"}")
            .await,
        7.0
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_plain_or_gzipped() {
    let (_partner, ex) = exchange().await;
    let big = vec![b' '; 10_000];
    let (status, body) = post(&ex, big.clone(), &[]).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "body_too_large");
    // Small on the wire, large once inflated.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&big).unwrap();
    let (status, _) = post(&ex, enc.finish().unwrap(), &[("content-encoding", "gzip")]).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn gzip_requests_are_accepted_and_bad_gzip_refused() {
    let (_partner, ex) = exchange().await;
    let request = serde_json::to_vec(&banner_request("gz-in", &[("1", 0.1)])).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&request).unwrap();
    let (status, body) = post(&ex, enc.finish().unwrap(), &[("content-encoding", "gzip")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "gz-in");
    let (status, body) = post(&ex, "not gzip at all", &[("content-encoding", "gzip")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "bad_gzip");
    let (status, _) = post(&ex, request, &[("content-encoding", "br")]).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn only_post_is_allowed_on_the_auction_endpoint() {
    let (_partner, ex) = exchange().await;
    let (status, _) = ex.get("/openrtb2/auction").await;
    assert_eq!(status, 405);
    let (status, _) = ex.get("/openrtb2/nothing-here").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn supply_partners_must_present_their_token_when_configured() {
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config(
        "[[plugins.exchange.supply]]\nname = \"ssp-one\"\ntoken = \"0123456789abcdef-one\"\n\
         [[plugins.exchange.supply]]\nname = \"ssp-two\"\ntoken = \"0123456789abcdef-two\"",
        &[bidder("alpha", &pa, "")],
    ))
    .await;
    let body = serde_json::to_vec(&banner_request("auth-1", &[("1", 0.1)])).unwrap();
    let (status, reason) = post(&ex, body.clone(), &[]).await;
    assert_eq!(status, 401);
    assert_eq!(reason["error"], "unauthorized");
    let (status, _) = post(
        &ex,
        body.clone(),
        &[("authorization", "Bearer 0123456789abcdef-thr")],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = post(
        &ex,
        body.clone(),
        &[("authorization", "Bearer 0123456789abcdef-two")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        pa.request_count(),
        1,
        "refused callers never reach a partner"
    );
}
