//! Win, billing and loss notices: our URLs in the response, partners' URLs fired with macros.

use crate::support::*;
use bourse_engine::notice::{NoticeKind, TokenSigner};
use serde_json::{Value, json};

async fn first_price_auction() -> (Partner, Partner, Exchange, Value) {
    let alpha = partner_with_notices("alpha-seat", 4.0).await;
    let beta = partner_with_notices("beta-seat", 2.0).await;
    let ex = Exchange::start(&config(
        "",
        &[bidder("alpha", &alpha, ""), bidder("beta", &beta, "")],
    ))
    .await;
    let mut request = banner_request("notice-1", &[("1", 0.5)]);
    request["at"] = json!(1);
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200, "{response}");
    (alpha, beta, ex, response)
}

/// The path and query of one of our notice URLs, with the supply side's macros filled in.
fn ours(response: &Value, field: &str, price: &str) -> String {
    let url = response["seatbid"][0]["bid"][0][field].as_str().unwrap();
    let path = url
        .strip_prefix("http://bourse.test")
        .expect("our public_url");
    path.replace("${AUCTION_PRICE}", price)
        .replace("${AUCTION_LOSS}", "102")
        .replace("${AUCTION_MIN_TO_WIN}", "5.4")
}

#[tokio::test]
async fn losers_get_their_loss_notice_with_code_and_price_to_beat() {
    let (_alpha, beta, _ex, _) = first_price_auction().await;
    let losses = beta.wait_notices("loss", 1).await;
    assert_eq!(losses.len(), 1, "{losses:?}");
    let q = query(&losses[0]);
    assert_eq!(q["auction"], "notice-1");
    assert_eq!(q["bid"], "beta-seat-bid-0");
    assert_eq!(q["imp"], "1");
    assert_eq!(q["seat"], "beta-seat");
    assert_eq!(q["ad"], "beta-seat-ad");
    assert_eq!(q["loss"], "102");
    assert_eq!(q["min"], "4", "the winning price in the loser's terms");
    assert_eq!(q["cur"], "USD");
}

#[tokio::test]
async fn the_response_carries_our_notice_urls_and_expanded_markup() {
    let (alpha, _beta, _ex, response) = first_price_auction().await;
    let bid = &response["seatbid"][0]["bid"][0];
    for field in ["nurl", "burl", "lurl"] {
        assert!(
            bid[field]
                .as_str()
                .unwrap()
                .starts_with("http://bourse.test/notice/"),
            "{bid}"
        );
    }
    assert_eq!(
        bid["adm"], "<div>alpha-seat ad, price 4</div>",
        "AUCTION_PRICE in markup is the partner's price"
    );
    assert!(
        alpha.notices.lock().unwrap().is_empty(),
        "nothing fires at the winner before the supply side does"
    );
}

#[tokio::test]
async fn a_win_notice_fires_the_partners_nurl_once_with_its_price() {
    let (alpha, _beta, ex, response) = first_price_auction().await;
    // The supply side quotes the price it charged: our 4.0 less the 10% fee.
    let path = ours(&response, "nurl", "3.6");
    let (status, _) = ex.get(&path).await;
    assert_eq!(status, 204);
    let (status, _) = ex.get(&path).await;
    assert_eq!(status, 204, "a repeated notice is acknowledged");
    let wins = alpha.wait_notices("win", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        alpha.wait_notices("win", 1).await.len(),
        1,
        "fired once: {wins:?}"
    );
    let q = query(&wins[0]);
    assert_eq!(
        (q["auction"].as_str(), q["bid"].as_str(), q["imp"].as_str()),
        ("notice-1", "alpha-seat-bid-0", "1")
    );
    assert_eq!(
        (q["seat"].as_str(), q["ad"].as_str(), q["cur"].as_str()),
        ("alpha-seat", "alpha-seat-ad", "USD")
    );
    assert_eq!(q["price"], "4", "3.6 net grossed up by the fee");
    assert_eq!(
        ex.metric("bourse_exchange_notice_requests_total{kind=\"win\",outcome=\"duplicate\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_billing_notice_fires_the_burl_and_counts_revenue() {
    let (alpha, _beta, ex, response) = first_price_auction().await;
    let (status, _) = ex.get(&ours(&response, "burl", "3.6")).await;
    assert_eq!(status, 204);
    let bills = alpha.wait_notices("bill", 1).await;
    assert_eq!(query(&bills[0])["price"], "4");
    let revenue = ex.metric("bourse_exchange_billed_revenue_total").await;
    assert!(
        (revenue - 0.004).abs() < 1e-9,
        "4 CPM is 0.004 per impression, got {revenue}"
    );
    let fee = ex.metric("bourse_exchange_fee_total").await;
    assert!((fee - 0.0004).abs() < 1e-9, "{fee}");
}

#[tokio::test]
async fn an_upstream_loss_fires_the_winners_lurl() {
    let (alpha, _beta, ex, response) = first_price_auction().await;
    let (status, _) = ex.get(&ours(&response, "lurl", "")).await;
    assert_eq!(status, 204);
    let losses = alpha.wait_notices("loss", 1).await;
    let q = query(&losses[0]);
    assert_eq!(q["loss"], "102");
    assert_eq!(q["min"], "6", "5.4 net is 6 gross");
}

#[tokio::test]
async fn forged_altered_and_expired_tokens_are_refused() {
    let (alpha, _beta, ex, response) = first_price_auction().await;
    let path = ours(&response, "nurl", "3.6");
    let token = query(&path)["t"].clone();
    let (payload, signature) = token.split_once('.').unwrap();

    // One character changed in the middle: still valid base64, no longer what we signed.
    let mut altered_payload = payload.to_owned().into_bytes();
    altered_payload[10] = if altered_payload[10] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let altered_payload = String::from_utf8(altered_payload).unwrap();
    let altered = format!("/notice/win?t={altered_payload}.{signature}");
    assert_eq!(
        ex.get(&altered).await.0,
        403,
        "an altered payload fails the MAC"
    );
    assert_eq!(ex.get("/notice/win?t=not%20base64.x").await.0, 400);
    let replayed_as_bill = format!("/notice/bill?t={token}");
    assert_eq!(
        ex.get(&replayed_as_bill).await.0,
        403,
        "a win token is no good for billing"
    );
    let forged_key =
        TokenSigner::new(b"not-our-secret").sign(&sample_token(NoticeKind::Win, u64::MAX));
    assert_eq!(ex.get(&format!("/notice/win?t={forged_key}")).await.0, 403);
    let expired = TokenSigner::new(b"test-secret").sign(&sample_token(NoticeKind::Win, 1));
    assert_eq!(ex.get(&format!("/notice/win?t={expired}")).await.0, 410);
    assert_eq!(ex.get("/notice/win").await.0, 400);
    assert_eq!(ex.get("/notice/nope?t=x").await.0, 404);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        alpha.notices.lock().unwrap().is_empty(),
        "no refused notice reaches a partner"
    );
    assert_eq!(
        ex.metric("bourse_exchange_notice_requests_total{kind=\"win\",outcome=\"forged\"}")
            .await,
        2.0
    );
    assert_eq!(
        ex.metric("bourse_exchange_notice_requests_total{kind=\"bill\",outcome=\"forged\"}")
            .await,
        1.0
    );
    assert_eq!(
        ex.metric("bourse_exchange_notice_requests_total{kind=\"win\",outcome=\"expired\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_bid_without_markup_keeps_the_partners_nurl_expanded() {
    let partner = Partner::start(|r| {
        Reply::Json(bids_with(r, "nm", &[("1", 2.0)], |b| {
            b.as_object_mut().unwrap().remove("adm");
            b["nurl"] = json!("http://dsp.example/serve?p=${AUCTION_PRICE}&i=${AUCTION_IMP_ID}");
        }))
    })
    .await;
    let ex = Exchange::start(&config("", &[bidder("nm", &partner, "")])).await;
    let mut request = banner_request("nm-1", &[("1", 0.5)]);
    request["at"] = json!(1);
    let (status, response) = ex.auction(&request).await;
    assert_eq!(status, 200);
    assert_eq!(
        response["seatbid"][0]["bid"][0]["nurl"],
        "http://dsp.example/serve?p=2&i=1"
    );
}

#[tokio::test]
async fn failing_notice_urls_are_retried_a_bounded_number_of_times() {
    // A notice sink whose /fail paths answer 503.
    let sink = Partner::start(|_| Reply::Status(204)).await;
    let loser_lurl = format!("http://{}/fail-loss?loss=${{AUCTION_LOSS}}", sink.addr);
    let loser = Partner::start(move |r| {
        Reply::Json(bids_with(r, "loser", &[("1", 1.0)], |b| {
            b["lurl"] = json!(loser_lurl)
        }))
    })
    .await;
    let winner = Partner::start(|r| Reply::Json(bids(r, "winner", &[("1", 2.0)]))).await;
    let ex = Exchange::start(&config(
        "[plugins.exchange.notices]\nattempts = 3\nbackoff_ms = 10",
        &[bidder("loser", &loser, ""), bidder("winner", &winner, "")],
    ))
    .await;
    let (status, _) = ex.auction(&banner_request("retry-1", &[("1", 0.1)])).await;
    assert_eq!(status, 200);
    let attempts = sink.wait_notices("fail-loss", 3).await;
    assert_eq!(attempts.len(), 3, "three attempts in all: {attempts:?}");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        sink.wait_notices("fail-loss", 3).await.len(),
        3,
        "and no more"
    );
    assert_eq!(
        ex.metric("bourse_exchange_notices_total{kind=\"loss\",outcome=\"retried\"}")
            .await,
        2.0
    );
    assert_eq!(
        ex.metric("bourse_exchange_notices_total{kind=\"loss\",outcome=\"failed\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn loss_notices_can_be_turned_off() {
    let alpha = partner_with_notices("alpha-seat", 4.0).await;
    let beta = partner_with_notices("beta-seat", 2.0).await;
    let ex = Exchange::start(&config(
        "[plugins.exchange.notices]\nlosses = false",
        &[bidder("alpha", &alpha, ""), bidder("beta", &beta, "")],
    ))
    .await;
    let (status, _) = ex.auction(&banner_request("quiet-1", &[("1", 0.5)])).await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(beta.notices.lock().unwrap().is_empty(), "no lurl fired");
}
