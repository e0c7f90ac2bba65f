//! Partners that misbehave never hurt the auction: it ends in time with the others' bids, and
//! every failure is counted for the partner that caused it.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// One honest partner bidding 1.0 beside one that misbehaves as `reply` says.
async fn with_bad_partner(reply: Reply) -> (Partner, Partner, Exchange) {
    let good = Partner::start(|r| Reply::Json(bids(r, "good", &[("1", 1.0)]))).await;
    let bad = Partner::start(move |_| reply.clone()).await;
    let ex = Exchange::start(&config(
        "budget_ms = 20",
        &[
            bidder("good", &good, ""),
            bidder("bad", &bad, "timeout_ms = 150"),
        ],
    ))
    .await;
    (good, bad, ex)
}

/// Asserts one metric sample's value.
async fn assert_counted(ex: &Exchange, series: &str, expected: f64) {
    assert_eq!(ex.metric(series).await, expected, "{series}");
}

async fn good_bid_wins_in_time(ex: &Exchange) {
    let mut request = banner_request("mis-1", &[("1", 0.1)]);
    request["tmax"] = json!(200);
    let started = Instant::now();
    let (status, response) = ex.auction(&request).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["seatbid"][0]["seat"], "good");
    assert!(
        took < Duration::from_millis(200 + 100),
        "the auction respects its deadline, took {took:?}"
    );
}

#[tokio::test]
async fn a_partner_that_never_answers_times_out() {
    let (_g, _b, ex) = with_bad_partner(Reply::Hang).await;
    good_bid_wins_in_time(&ex).await;
    assert_counted(&ex, "bourse_bidder_timeouts_total{bidder=\"bad\"}", 1.0).await;
    assert_counted(&ex, "bourse_bidder_timeouts_total{bidder=\"good\"}", 0.0).await;
}

#[tokio::test]
async fn a_partner_that_hangs_after_headers_times_out() {
    let (_g, _b, ex) = with_bad_partner(Reply::HangAfterHeaders).await;
    good_bid_wins_in_time(&ex).await;
    assert_counted(&ex, "bourse_bidder_timeouts_total{bidder=\"bad\"}", 1.0).await;
}

#[tokio::test]
async fn a_slow_partner_past_its_own_timeout_is_cut_off() {
    let (_g, _b, ex) = with_bad_partner(Reply::After(
        Duration::from_millis(400),
        Box::new(Reply::Status(204)),
    ))
    .await;
    good_bid_wins_in_time(&ex).await;
    assert_counted(&ex, "bourse_bidder_timeouts_total{bidder=\"bad\"}", 1.0).await;
}

#[tokio::test]
async fn server_errors_are_counted() {
    let (_g, _b, ex) = with_bad_partner(Reply::Status(503)).await;
    good_bid_wins_in_time(&ex).await;
    assert_counted(
        &ex,
        "bourse_bidder_errors_total{bidder=\"bad\",kind=\"http_status\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_counted() {
    let (_g, _b, ex) = with_bad_partner(Reply::Garbage).await;
    good_bid_wins_in_time(&ex).await;
    assert_counted(
        &ex,
        "bourse_bidder_errors_total{bidder=\"bad\",kind=\"bad_response\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn bids_for_unknown_impressions_are_dropped_and_counted() {
    let (_g, _b, ex) = with_bad_partner(Reply::Json(json!({
        "id": "mis-1",
        "seatbid": [{"seat": "bad", "bid": [{"id": "x", "impid": "no-such-imp", "price": 50.0, "adm": "<b>", "mtype": 1}]}]
    })))
    .await;
    good_bid_wins_in_time(&ex).await;
    assert!(
        ex.metric("bourse_bidder_errors_total{bidder=\"bad\",kind=\"bad_response\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_refused_connection_is_counted() {
    let good = Partner::start(|r| Reply::Json(bids(r, "good", &[("1", 1.0)]))).await;
    // A port nothing listens on: bind, learn the port, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ex = Exchange::start(&config(
        "",
        &[
            bidder("good", &good, ""),
            format!("name = \"gone\"\nendpoint = \"http://{closed}/bid\""),
        ],
    ))
    .await;
    good_bid_wins_in_time(&ex).await;
    assert_counted(
        &ex,
        "bourse_bidder_errors_total{bidder=\"gone\",kind=\"connect\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn impressions_an_adapter_cannot_offer_are_counted_while_the_rest_go_out() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "legacy", &[("2", 1.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[bidder(
            "legacy",
            &partner,
            "adapter = \"openrtb25\"\nparams = { publisher_id = \"pub-9\" }",
        )],
    ))
    .await;
    let mut request = banner_request("partial-1", &[("1", 0.1), ("2", 0.1)]);
    request["imp"][0]["ext"] = json!({"bidder": {"placement_id": []}});
    request["imp"][1]["ext"] = json!({"bidder": {"placement_id": "slot-2"}});
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200, "{response}");
    let sent = partner.last_request();
    let imps: Vec<&str> = sent["imp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        imps,
        vec!["2"],
        "only the impression with valid params is offered"
    );
    assert_counted(
        &ex,
        "bourse_bidder_errors_total{bidder=\"legacy\",kind=\"bad_input\"}",
        1.0,
    )
    .await;
}
