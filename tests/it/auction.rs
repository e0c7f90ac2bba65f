//! Auctions that clear: first and second price, floors, deals, currency, adjustments, fees.

use crate::support::*;
use bourse_engine::pricing::{gross_of_fee, net_of_fee};
use serde_json::{Value, json};

fn price_of(response: &Value, imp: &str) -> f64 {
    response["seatbid"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["bid"].as_array().unwrap())
        .find(|b| b["impid"] == imp)
        .unwrap_or_else(|| panic!("no bid for imp {imp} in {response}"))["price"]
        .as_f64()
        .unwrap()
}

fn seat_of(response: &Value, imp: &str) -> String {
    response["seatbid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["bid"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["impid"] == imp)
        })
        .unwrap()["seat"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn two_partners(a: f64, b: f64, extra: &str) -> (Partner, Partner, Exchange) {
    let pa = Partner::start(move |r| Reply::Json(bids(r, "alpha", &[("1", a)]))).await;
    let pb = Partner::start(move |r| Reply::Json(bids(r, "beta", &[("1", b)]))).await;
    let ex = Exchange::start(&config(
        extra,
        &[bidder("alpha", &pa, ""), bidder("beta", &pb, "")],
    ))
    .await;
    (pa, pb, ex)
}

#[tokio::test]
async fn first_price_charges_the_winning_bid_less_our_fee() {
    let (_a, _b, ex) = two_partners(2.0, 3.0, "").await;
    let mut request = banner_request("fp-1", &[("1", 0.5)]);
    request["at"] = json!(1);
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["id"], "fp-1");
    assert_eq!(seat_of(&response, "1"), "beta");
    assert!(
        (price_of(&response, "1") - 3.0 * 0.9).abs() < 1e-9,
        "{response}"
    );
    assert_eq!(response["cur"], "USD");
}

#[tokio::test]
async fn second_price_clears_at_the_next_bid_plus_increment() {
    let (_a, _b, ex) = two_partners(2.0, 3.0, "").await;
    let (status, response) = ex.auction(&banner_request("sp-1", &[("1", 0.5)])).await;
    assert_eq!(status, 200);
    assert_eq!(seat_of(&response, "1"), "beta");
    assert!(
        (price_of(&response, "1") - 2.01 * 0.9).abs() < 1e-9,
        "{response}"
    );
}

#[tokio::test]
async fn a_lone_bid_in_second_price_clears_at_the_floor() {
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha", &[("1", 4.0)]))).await;
    let ex = Exchange::start(&config("", &[bidder("alpha", &pa, "")])).await;
    let (_, response) = ex.auction(&banner_request("sp-2", &[("1", 1.5)])).await;
    // The 1.5 floor is net of the 10% fee: the auction clears at 1.5 / 0.9 plus the increment.
    assert!(
        (price_of(&response, "1") - net_of_fee(gross_of_fee(1.5, 0.1) + 0.01, 0.1)).abs() < 1e-9,
        "{response}"
    );
    assert!(price_of(&response, "1") >= 1.5);
}

#[tokio::test]
async fn bids_below_the_floor_never_win() {
    let (_a, _b, ex) = two_partners(0.8, 0.9, "").await;
    let (status, _) = ex.auction(&banner_request("floor-1", &[("1", 1.0)])).await;
    assert_eq!(status, 204);
    assert_eq!(
        ex.metric("bourse_bidder_rejected_bids_total{bidder=\"alpha\",reason=\"below_floor\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn floors_in_another_currency_are_converted() {
    // 1 EUR = 1.10 USD: a 1.00 EUR floor is 1.10 USD net, 1.10 / 0.9 = 1.222 USD gross, so
    // a 1.20 USD bid loses and 1.30 wins.
    let (_a, _b, ex) = two_partners(1.20, 1.30, "[plugins.exchange.rates]\nEUR = 1.10\n").await;
    let mut request = banner_request("cur-1", &[("1", 1.0)]);
    request["imp"][0]["bidfloorcur"] = json!("EUR");
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200);
    assert_eq!(seat_of(&response, "1"), "beta");
    let gross_floor = gross_of_fee(1.0 * 1.10, 0.1);
    assert!(
        (price_of(&response, "1") - net_of_fee(gross_floor + 0.01, 0.1)).abs() < 1e-9,
        "second price floored at 1.10 USD net: {response}"
    );
    assert!(price_of(&response, "1") >= 1.10);
}

#[tokio::test]
async fn the_auction_runs_in_the_requested_currency() {
    // Partners bid in USD; the request wants EUR (1 EUR = 1.25 USD).
    let (_a, _b, ex) = two_partners(2.5, 5.0, "[plugins.exchange.rates]\nEUR = 1.25\n").await;
    let mut request = banner_request("cur-2", &[("1", 0.0)]);
    request["cur"] = json!(["EUR"]);
    request["at"] = json!(1);
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200);
    assert_eq!(response["cur"], "EUR");
    assert!(
        (price_of(&response, "1") - 4.0 * 0.9).abs() < 1e-9,
        "{response}"
    );
}

#[tokio::test]
async fn bids_in_a_currency_without_a_rate_are_refused() {
    let pa = Partner::start(|r| {
        let mut body = bids(r, "alpha", &[("1", 9.0)]);
        body["cur"] = json!("JPY");
        Reply::Json(body)
    })
    .await;
    let pb = Partner::start(|r| Reply::Json(bids(r, "beta", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[bidder("alpha", &pa, ""), bidder("beta", &pb, "")],
    ))
    .await;
    let (_, response) = ex.auction(&banner_request("cur-3", &[("1", 0.1)])).await;
    assert_eq!(seat_of(&response, "1"), "beta");
}

#[tokio::test]
async fn deals_win_with_their_own_floor_and_private_auctions_refuse_open_bids() {
    let deal_partner = Partner::start(|r| {
        Reply::Json(bids_with(r, "deal-seat", &[("1", 2.5)], |b| {
            b["dealid"] = json!("d-1")
        }))
    })
    .await;
    let open_partner = Partner::start(|r| Reply::Json(bids(r, "open", &[("1", 9.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[
            bidder("dealer", &deal_partner, ""),
            bidder("opener", &open_partner, ""),
        ],
    ))
    .await;
    let mut request = banner_request("deal-1", &[("1", 0.5)]);
    request["imp"][0]["pmp"] = json!({"private_auction": 1, "deals": [{"id": "d-1", "bidfloor": 2.0, "wseat": ["deal-seat"]}]});
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(seat_of(&response, "1"), "deal-seat");
    assert_eq!(response["seatbid"][0]["bid"][0]["dealid"], "d-1");
    // Alone among valid bids, the deal clears at its own (grossed-up) floor plus the increment.
    assert!(
        (price_of(&response, "1") - net_of_fee(gross_of_fee(2.0, 0.1) + 0.01, 0.1)).abs() < 1e-9,
        "{response}"
    );
    assert!(price_of(&response, "1") >= 2.0);

    request["imp"][0]["pmp"]["deals"][0]["bidfloor"] = json!(3.0);
    request["id"] = json!("deal-2");
    let (status, _) = ex.auction(&request).await;
    assert_eq!(
        status, 204,
        "a deal bid under the deal floor and an open bid in a private auction both lose"
    );
}

#[tokio::test]
async fn blocked_categories_advertisers_and_apps_are_respected() {
    let pa = Partner::start(|r| {
        Reply::Json(bids_with(r, "alpha", &[("1", 5.0)], |b| {
            b["cat"] = json!(["IAB25"])
        }))
    })
    .await;
    let pb = Partner::start(|r| {
        Reply::Json(bids_with(r, "beta", &[("1", 4.0)], |b| {
            b["adomain"] = json!(["shop.blocked.example"])
        }))
    })
    .await;
    let pc = Partner::start(|r| {
        Reply::Json(bids_with(r, "gamma", &[("1", 3.0)], |b| {
            b["bundle"] = json!("com.blocked")
        }))
    })
    .await;
    let pd = Partner::start(|r| Reply::Json(bids(r, "delta", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[
            bidder("alpha", &pa, ""),
            bidder("beta", &pb, ""),
            bidder("gamma", &pc, ""),
            bidder("delta", &pd, ""),
        ],
    ))
    .await;
    let mut request = banner_request("block-1", &[("1", 0.1)]);
    request["bcat"] = json!(["IAB25"]);
    request["badv"] = json!(["blocked.example"]);
    request["bapp"] = json!(["com.blocked"]);
    let (_, response) = ex.auction(&request).await;
    assert_eq!(seat_of(&response, "1"), "delta");
    for (bidder, reason) in [
        ("alpha", "blocked_category"),
        ("beta", "blocked_advertiser"),
        ("gamma", "blocked_app"),
    ] {
        let series =
            format!("bourse_bidder_rejected_bids_total{{bidder=\"{bidder}\",reason=\"{reason}\"}}");
        assert_eq!(ex.metric(&series).await, 1.0, "{series}");
    }
}

#[tokio::test]
async fn adjustments_change_the_ranking_and_every_imp_gets_its_own_winner() {
    // alpha bids more but is adjusted down to 0.5x: 3.0 -> 1.5 < beta's 2.0 on imp 1.
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha", &[("1", 3.0), ("2", 6.0)]))).await;
    let pb = Partner::start(|r| Reply::Json(bids(r, "beta", &[("1", 2.0), ("2", 2.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[
            bidder("alpha", &pa, "adjustment = 0.5"),
            bidder("beta", &pb, ""),
        ],
    ))
    .await;
    let mut request = banner_request("adj-1", &[("1", 0.1), ("2", 0.1)]);
    request["at"] = json!(1);
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200);
    assert_eq!(seat_of(&response, "1"), "beta");
    assert_eq!(seat_of(&response, "2"), "alpha");
    assert!(
        (price_of(&response, "2") - 3.0 * 0.9).abs() < 1e-9,
        "adjusted 6.0 * 0.5: {response}"
    );
    let bid_ids: Vec<&str> = response["seatbid"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["bid"].as_array().unwrap())
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(bid_ids.len(), 2);
    assert_ne!(bid_ids[0], bid_ids[1], "bid ids are unique in a response");
}

#[tokio::test]
async fn partners_get_the_request_with_our_supply_chain_node_and_their_deadline() {
    let pa = Partner::start(|_| Reply::Status(204)).await;
    let ex = Exchange::start(&config(
        "schain_asi = \"bourse.test\"\nbudget_ms = 30",
        &[bidder("alpha", &pa, "")],
    ))
    .await;
    let mut request = banner_request("out-1", &[("1", 0.1)]);
    request["tmax"] = json!(180);
    request["imp"][0]["ext"] = json!({"gpid": "/1/home"});
    request["future_field"] = json!({"kept": true});
    let (status, _) = ex.auction(&request).await;
    assert_eq!(status, 204);
    let sent = pa.last_request();
    assert_eq!(sent["tmax"], 150, "tmax minus our budget");
    assert_eq!(sent["imp"][0]["ext"]["gpid"], "/1/home");
    assert_eq!(sent["future_field"]["kept"], true);
    let nodes = sent["source"]["schain"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.last().unwrap()["asi"], "bourse.test");
    assert_eq!(nodes.last().unwrap()["sid"], "pub-1");
}

#[tokio::test]
async fn only_eligible_partners_are_asked() {
    let banner_only = Partner::start(|r| Reply::Json(bids(r, "b", &[("1", 1.0)]))).await;
    let disabled = Partner::start(|r| Reply::Json(bids(r, "d", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[
            bidder("banner-only", &banner_only, "media = [\"banner\"]"),
            bidder("off", &disabled, "enabled = false"),
        ],
    ))
    .await;
    let video = json!({"id": "v-1", "imp": [{"id": "1", "video": {"mimes": ["video/mp4"], "w": 640, "h": 360}}]});
    let (status, _) = ex.auction(&video).await;
    assert_eq!(status, 204, "no partner buys video: the no-bid fast path");
    assert_eq!(banner_only.request_count(), 0);
    let (status, _) = ex.auction(&banner_request("b-1", &[("1", 0.1)])).await;
    assert_eq!(status, 200);
    assert_eq!(banner_only.request_count(), 1);
    assert_eq!(disabled.request_count(), 0);
}

#[tokio::test]
async fn a_qps_cap_keeps_a_partner_out_once_spent() {
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config("", &[bidder("alpha", &pa, "qps = 2")])).await;
    for n in 0..6 {
        ex.auction(&banner_request(&format!("q-{n}"), &[("1", 0.1)]))
            .await;
    }
    assert!(
        pa.request_count() <= 3,
        "a cap of 2/s lets at most the burst through, got {}",
        pa.request_count()
    );
    assert!(
        ex.metric("bourse_bidder_throttled_total{bidder=\"alpha\"}")
            .await
            >= 3.0
    );
}

#[tokio::test]
async fn gzip_partners_receive_compressed_requests() {
    let pa = Partner::start(|r| Reply::Json(bids(r, "alpha", &[("1", 1.0)]))).await;
    let ex = Exchange::start(&config("", &[bidder("alpha", &pa, "gzip = true")])).await;
    let (status, _) = ex.auction(&banner_request("gz-1", &[("1", 0.1)])).await;
    assert_eq!(status, 200);
    let requests = pa.requests.lock().unwrap();
    let (headers, body) = requests.last().unwrap();
    assert_eq!(headers.get("content-encoding").unwrap(), "gzip");
    assert_eq!(body["id"], "gz-1", "the partner could decode the body");
}

#[tokio::test]
async fn partner_connections_are_kept_alive_and_http2_is_spoken_when_configured() {
    let h1 = Partner::start(|r| Reply::Json(bids(r, "h1", &[("1", 1.0)]))).await;
    let h2 = Partner::start(|r| Reply::Json(bids(r, "h2", &[("1", 1.5)]))).await;
    let ex = Exchange::start(&config(
        "",
        &[bidder("h1", &h1, ""), bidder("h2", &h2, "http2 = true")],
    ))
    .await;
    for n in 0..5 {
        let (status, _) = ex
            .auction(&banner_request(&format!("ka-{n}"), &[("1", 0.1)]))
            .await;
        assert_eq!(status, 200);
    }
    let ordering = std::sync::atomic::Ordering::SeqCst;
    assert_eq!(
        h1.connections.load(ordering),
        1,
        "five sequential auctions reuse one connection"
    );
    assert_eq!(h2.connections.load(ordering), 1);
    assert!(
        h1.versions
            .lock()
            .unwrap()
            .iter()
            .all(|v| *v == http::Version::HTTP_11)
    );
    assert!(
        h2.versions
            .lock()
            .unwrap()
            .iter()
            .all(|v| *v == http::Version::HTTP_2)
    );
    assert_eq!(h2.versions.lock().unwrap().len(), 5);
}
