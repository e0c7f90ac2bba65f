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
            json!({"id": "x", "imp": [{"id": "1", "banner": {"w": 1, "h": 1}}], "cur": ["usd"]}),
            "cur[0]",
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
        6.0
    );
}

/// One request sent as raw bytes must be refused with exactly this field, rule and message.
async fn refused(ex: &Exchange, body: &str, field: &str, rule: &str, message: &str) {
    let (status, answer) = post(ex, body.to_owned(), &[]).await;
    assert_eq!(status, 400, "{body}: {answer}");
    assert_eq!(answer["error"], "invalid_request", "{answer}");
    assert_eq!(
        (
            answer["field"].as_str(),
            answer["rule"].as_str(),
            answer["message"].as_str()
        ),
        (Some(field), Some(rule), Some(message)),
        "{body}"
    );
}

#[tokio::test]
async fn refusals_are_in_our_words_with_a_field_path() {
    let (partner, ex) = exchange().await;
    // Negative sizes: parse errors, told in our words, never serde's.
    refused(
        &ex,
        r#"{"id":"x","imp":[{"id":"1","banner":{"w":-1,"h":250}}]}"#,
        "imp[0].banner.w",
        "non_negative",
        "must be a whole number from 0 to 4294967295, got -1",
    )
    .await;
    refused(
        &ex,
        r#"{"id":"x","imp":[{"id":"1","banner":{"format":[{"w":300,"h":-50}]}}]}"#,
        "imp[0].banner.format[0].h",
        "non_negative",
        "must be a whole number from 0 to 4294967295, got -50",
    )
    .await;
    // Negative counts and rates: validation.
    for (body, field, got) in [
        (
            r#"{"id":"x","imp":[{"id":"1","video":{"mimes":["video/mp4"],"minbitrate":-1}}]}"#,
            "imp[0].video.minbitrate",
            -1,
        ),
        (
            r#"{"id":"x","imp":[{"id":"1","video":{"mimes":["video/mp4"],"maxbitrate":-2}}]}"#,
            "imp[0].video.maxbitrate",
            -2,
        ),
        (
            r#"{"id":"x","imp":[{"id":"1","video":{"mimes":["video/mp4"],"maxseq":-3}}]}"#,
            "imp[0].video.maxseq",
            -3,
        ),
        (
            r#"{"id":"x","imp":[{"id":"1","audio":{"mimes":["audio/mp4"],"sequence":-4}}]}"#,
            "imp[0].audio.sequence",
            -4,
        ),
        (
            r#"{"id":"x","imp":[{"id":"1","banner":{"w":1,"h":1}}],"device":{"geo":{"accuracy":-5}}}"#,
            "device.geo.accuracy",
            -5,
        ),
    ] {
        refused(
            &ex,
            body,
            field,
            "non_negative",
            &format!("must be 0 or more, got {got}"),
        )
        .await;
    }
    // Non-object ext, wherever it is.
    for (body, field) in [
        (
            r#"{"id":"x","imp":[{"id":"1","banner":{"w":1,"h":1}}],"ext":5}"#,
            "ext",
        ),
        (
            r#"{"id":"x","imp":[{"id":"1","banner":{"w":1,"h":1},"ext":"bidder"}]}"#,
            "imp[0].ext",
        ),
        (
            r#"{"id":"x","imp":[{"id":"1","banner":{"w":1,"h":1}}],"user":{"ext":[1]}}"#,
            "user.ext",
        ),
    ] {
        refused(&ex, body, field, "object", "ext must be an object").await;
    }
    // A syntax error where a key should be: the path ends at the object, never at `?`.
    refused(
        &ex,
        r#"{"id":"x","imp":[{"id":"1",}]}"#,
        "imp[0]",
        "json",
        "not valid JSON: a trailing comma at line 1, column 28",
    )
    .await;
    assert_eq!(partner.request_count(), 0, "nothing reaches a partner");
}

#[tokio::test]
async fn lenient_where_real_traffic_is_loose() {
    let (partner, ex) = exchange().await;
    // A size-less or 0x0 interstitial banner is a full-screen one.
    for banner in [json!({}), json!({"w": 0, "h": 0})] {
        let request = json!({"id": "instl", "imp": [{"id": "1", "instl": 1, "banner": banner}]});
        let (status, answer) = ex.auction(&request).await;
        assert_eq!(status, 200, "{banner}: {answer}");
    }
    // A malformed US Privacy string is ignored (partners never see it) and counted.
    let mut request = banner_request("usp", &[("1", 0.1)]);
    request["regs"] = json!({"us_privacy": "1YN", "gdpr": 0});
    let (status, answer) = ex.auction(&request).await;
    assert_eq!(status, 200, "{answer}");
    let sent = partner.last_request();
    assert!(sent["regs"].get("us_privacy").is_none(), "{sent}");
    assert_eq!(sent["regs"]["gdpr"], 0);
    request["regs"] = json!({"us_privacy": "2YNN"});
    assert_eq!(ex.auction(&request).await.0, 200);
    request["regs"] = json!({"us_privacy": "1YNN"});
    assert_eq!(ex.auction(&request).await.0, 200);
    assert_eq!(partner.last_request()["regs"]["us_privacy"], "1YNN");
    let ignored = |reason: &str| {
        format!(
            "bourse_exchange_ignored_signals_total{{reason=\"{reason}\",signal=\"regs.us_privacy\"}}"
        )
    };
    assert_eq!(ex.metric(&ignored("length")).await, 1.0);
    assert_eq!(ex.metric(&ignored("version")).await, 1.0);
    assert_eq!(ex.metric(&ignored("characters")).await, 0.0);
}

#[tokio::test]
async fn currencies_without_a_rate_get_a_no_bid_with_a_reason() {
    let (partner, ex) = exchange().await;
    let mut unpriced_cur = banner_request("jpy", &[("1", 0.1)]);
    unpriced_cur["cur"] = json!(["JPY"]);
    let mut unpriced_floor = banner_request("chf", &[("1", 0.1)]);
    unpriced_floor["imp"][0]["bidfloorcur"] = json!("CHF");
    let mut unpriced_deal = banner_request("deal", &[("1", 0.1)]);
    unpriced_deal["imp"][0]["pmp"] =
        json!({"deals": [{"id": "d", "bidfloor": 1.0, "bidfloorcur": "SEK"}]});
    for request in [&unpriced_cur, &unpriced_floor, &unpriced_deal] {
        let req = http::Request::post(ex.url("/openrtb2/auction"))
            .body(Full::new(Bytes::from(serde_json::to_vec(request).unwrap())))
            .unwrap();
        let (status, headers, body) = ex.send(req).await;
        assert_eq!(status, 204, "{request}");
        assert_eq!(headers["x-openrtb-nbr"], "501");
        assert!(body.is_empty());
    }
    assert_eq!(partner.request_count(), 0);
    assert_eq!(
        ex.metric(
            "bourse_exchange_requests_total{endpoint=\"auction\",outcome=\"unsupported_currency\"}"
        )
        .await,
        3.0
    );
    assert_eq!(
        ex.metric("bourse_exchange_requests_total{endpoint=\"auction\",outcome=\"invalid\"}")
            .await,
        0.0
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
