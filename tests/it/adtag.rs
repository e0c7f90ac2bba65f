//! Publisher ad tags over HTTP: `/tag.js`, `/ad`, impression and view beacons billed exactly
//! once, signed click redirects, the ledger and reach reports.

use crate::support::*;
use bourse_engine::notice::{NoticeKind, TokenSigner};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

const LANDING: &str = "https://advertiser.example/landing?c=1&x=2";

/// A partner that bids `price` on every impression with a clickable ad and notice URLs.
async fn advertiser(price: f64) -> Partner {
    let slot: std::sync::Arc<std::sync::OnceLock<String>> = Default::default();
    let script_slot = slot.clone();
    let partner = Partner::start(move |r| {
        let base = script_slot.get().cloned().unwrap_or_default();
        Reply::Json(bids_on_every_imp(r, "adv", price, |b| {
            b["adm"] = json!(format!(
                "<a href=\"{}\">Buy at ${{AUCTION_PRICE}}</a>",
                LANDING.replace('&', "&amp;")
            ));
            b["nurl"] = json!(format!("{base}/win?price=${{AUCTION_PRICE}}"));
            b["burl"] = json!(format!("{base}/bill?price=${{AUCTION_PRICE}}"));
            b["w"] = json!(300);
            b["h"] = json!(250);
        }))
    })
    .await;
    slot.set(format!("http://{}", partner.addr)).unwrap();
    partner
}

/// Publishers and placements, the same the /ad fuzz target serves.
const SITE: &str = include_str!("../data/adtag-site.toml");

async fn site() -> (Partner, Exchange) {
    let partner = advertiser(2.0).await;
    let ex = Exchange::start(&config(SITE, &[bidder("adv", &partner, "")])).await;
    (partner, ex)
}

async fn ad(ex: &Exchange, body: &Value) -> (http::StatusCode, Value) {
    let req = http::Request::post(ex.url("/ad"))
        .header("content-type", "text/plain")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1",
        )
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let (status, headers, body) = ex.send(req).await;
    assert_eq!(headers["access-control-allow-origin"], "*");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn page_body(slots: Value) -> Value {
    json!({
        "page": "https://www.news.example/story?id=7",
        "ref": "https://search.example/",
        "slots": slots,
        "uid": "0123456789abcdef0123456789abcdef",
        "consent": {"denied": false},
    })
}

/// Path and query of one of our URLs (public_url is http://bourse.test in tests).
fn path_of(url: &str) -> String {
    url.strip_prefix("http://bourse.test")
        .expect("our public_url")
        .to_owned()
}

async fn post(ex: &Exchange, path: &str) -> http::StatusCode {
    let req = http::Request::post(ex.url(path))
        .body(Full::new(Bytes::new()))
        .unwrap();
    ex.send(req).await.0
}

#[tokio::test]
async fn the_tag_is_served_cacheable_and_revalidates() {
    let (_partner, ex) = site().await;
    let req = http::Request::get(ex.url("/tag.js"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = ex.send(req).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert!(String::from_utf8_lossy(&body).contains("bourse-ad"));
    let etag = headers["etag"].clone();
    let req = http::Request::get(ex.url("/tag.js"))
        .header("if-none-match", etag)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = ex.send(req).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
}

#[tokio::test]
async fn one_call_fills_every_slot_with_a_proper_openrtb_request() {
    let (partner, ex) = site().await;
    let (status, answer) = ad(
        &ex,
        &page_body(json!([
            {"id": "a", "placement": "news-top", "sizes": [[300, 250]]},
            {"id": "b", "placement": "news-side"},
            {"id": "c", "placement": "nope"},
            {"id": "d", "placement": "blog-top"},
        ])),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let slots = answer["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{answer}");
    let skipped: Vec<(&str, &str)> = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        skipped,
        vec![("c", "unknown_placement"), ("d", "wrong_domain")]
    );
    // news-top's 0.50 floor is net of the 10% fee: partners are asked for 0.50 / 0.9.
    for (slot, price) in slots.iter().zip(["0.565556", "0.01"]) {
        assert_eq!(
            (slot["w"].as_u64(), slot["h"].as_u64()),
            (Some(300), Some(250))
        );
        let html = slot["html"].as_str().unwrap();
        assert!(html.contains("http://bourse.test/click?t="), "{html}");
        assert!(
            !html.contains("advertiser.example"),
            "clicks go through us: {html}"
        );
        // Alone in a second-price auction, the partner pays the floor (0.50 / 0.9 on
        // news-top, none on news-side) plus the increment.
        assert!(
            html.contains(&format!("Buy at {price}<")),
            "markup expanded: {html}"
        );
    }
    assert_eq!(partner.request_count(), 1, "one auction for the page");
    let sent = partner.last_request();
    assert_eq!(sent["imp"].as_array().unwrap().len(), 2);
    assert_eq!(sent["imp"][0]["tagid"], "news-top");
    assert_eq!(
        sent["imp"][0]["bidfloor"], 0.555556,
        "told the floor grossed up for the fee: 0.50 / 0.9, rounded up to the millionth"
    );
    assert_eq!(
        sent["imp"][0]["banner"]["format"],
        json!([{"w": 300, "h": 250}])
    );
    assert_eq!(sent["site"]["page"], "https://www.news.example/story?id=7");
    assert_eq!(sent["site"]["ref"], "https://search.example/");
    assert_eq!(sent["site"]["publisher"]["id"], "news");
    assert_eq!(sent["user"]["id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(sent["device"]["ip"], "127.0.0.1");
    assert!(
        sent["device"]["ua"]
            .as_str()
            .unwrap()
            .contains("TestBrowser")
    );
    assert_eq!(sent["at"], 2);
    // The partner hears of its win at once: the tag's auction is final.
    let wins = partner.wait_notices("win", 2).await;
    assert_eq!(wins.len(), 2, "{wins:?}");
}

#[tokio::test]
async fn without_consent_no_user_id_leaves_bourse() {
    let (partner, ex) = site().await;
    let mut body = page_body(json!([{"id": "a", "placement": "news-top"}]));
    body["consent"] = json!({"denied": true});
    let (status, answer) = ad(&ex, &body).await;
    assert_eq!(status, 200, "{answer}");
    let sent = partner.last_request();
    assert!(sent.get("user").is_none(), "{sent}");
    assert_eq!(sent["regs"]["ext"]["consent_denied"], 1);
}

#[tokio::test]
async fn bad_ad_calls_get_clear_errors() {
    let (_partner, ex) = site().await;
    for (body, code) in [
        (
            json!({"page": "ftp://x", "slots": [{"id": "a", "placement": "news-top"}]}),
            "page",
        ),
        (
            json!({"page": "https://news.example/", "slots": []}),
            "slots",
        ),
        (json!({"page": "https://news.example/"}), "bad_json"),
    ] {
        let (status, answer) = ad(&ex, &body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"], code, "{answer}");
    }
    let (status, _) = ex.get("/ad").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn an_impression_is_billed_once_however_often_the_beacon_fires() {
    let (partner, ex) = site().await;
    let (_, answer) = ad(
        &ex,
        &page_body(json!([{"id": "a", "placement": "news-top"}])),
    )
    .await;
    let imp = path_of(answer["slots"][0]["imp"].as_str().unwrap());
    // Concurrent duplicates, as a page firing sendBeacon twice would send them.
    let statuses = futures_util::future::join_all((0..8).map(|_| post(&ex, &imp))).await;
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    assert_eq!(ex.get(&imp).await.0, 204);
    let bills = partner.wait_notices("bill", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(partner.wait_notices("bill", 1).await.len(), 1, "{bills:?}");
    assert_eq!(
        query(&bills[0])["price"],
        "0.565556",
        "the partner is billed the second-price clearing: gross floor 0.50 / 0.9 plus increment"
    );
    let metric = |outcome: &str| {
        format!("bourse_adserve_beacons_total{{kind=\"imp\",outcome=\"{outcome}\"}}")
    };
    assert_eq!(ex.metric(&metric("billed")).await, 1.0);
    assert_eq!(ex.metric(&metric("duplicate")).await, 8.0);
    assert_eq!(
        ex.metric(
            "bourse_adserve_billed_impressions_total{placement=\"news-top\",publisher=\"news\"}"
        )
        .await,
        1.0
    );

    // The ledger holds exactly that impression, and its amounts add up.
    let (status, body) = ex.get("/ledger").await;
    assert_eq!(status, 200);
    let ledger: Value = serde_json::from_slice(&body).unwrap();
    let day = &ledger["day"]["total"];
    assert_eq!(day["impressions"], 1, "{ledger}");
    let gross = day["gross_micros"].as_u64().unwrap();
    assert_eq!(
        gross, 566,
        "a 0.565556 CPM impression is 0.000565556 = 566 micros"
    );
    assert_eq!(day["fee_micros"].as_u64().unwrap(), 57, "10% fee, the rest");
    assert_eq!(
        day["net_micros"].as_u64().unwrap(),
        509,
        "the seller nets its 0.50 floor plus 90% of the increment"
    );
    assert_eq!(ledger["day"]["rows"][0]["placement"], "news-top");

    // Reach: one user on that placement.
    let mut count = Value::Null;
    for _ in 0..50 {
        let (_, body) = ex.get("/reach").await;
        let report: Value = serde_json::from_slice(&body).unwrap();
        count = report.clone();
        if report.to_string().contains("news-top") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(count.to_string().contains("news-top"), "{count}");
}

#[tokio::test]
async fn viewability_is_its_own_counter_counted_once() {
    let (_partner, ex) = site().await;
    let (_, answer) = ad(
        &ex,
        &page_body(json!([{"id": "a", "placement": "news-top"}])),
    )
    .await;
    let view = path_of(answer["slots"][0]["view"].as_str().unwrap());
    assert_eq!(post(&ex, &view).await, 204);
    assert_eq!(post(&ex, &view).await, 204);
    assert_eq!(
        ex.metric("bourse_adserve_viewable_impressions_total").await,
        1.0
    );
    assert_eq!(
        ex.metric("bourse_adserve_beacons_total{kind=\"imp\",outcome=\"billed\"}")
            .await,
        0.0,
        "a view beacon bills nothing"
    );
}

#[tokio::test]
async fn forged_altered_expired_and_misused_tokens_are_refused_and_never_billed() {
    let (partner, ex) = site().await;
    let (_, answer) = ad(
        &ex,
        &page_body(json!([{"id": "a", "placement": "news-top"}])),
    )
    .await;
    let imp = path_of(answer["slots"][0]["imp"].as_str().unwrap());
    let view = path_of(answer["slots"][0]["view"].as_str().unwrap());
    let token = query(&imp)["t"].clone();
    let (payload, signature) = token.split_once('.').unwrap();
    let mut altered = payload.as_bytes().to_vec();
    altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(
        post(&ex, &format!("/beacon/imp?t={altered}.{signature}")).await,
        403
    );
    let foreign = TokenSigner::new(b"someone-else").sign(&sample_token(NoticeKind::Bill, u64::MAX));
    assert_eq!(post(&ex, &format!("/beacon/imp?t={foreign}")).await, 403);
    // A view token is not an impression token, and an impression token is no click.
    let view_token = query(&view)["t"].clone();
    assert_eq!(post(&ex, &format!("/beacon/imp?t={view_token}")).await, 403);
    assert_eq!(ex.get(&format!("/click?t={token}")).await.0, 403);
    // One of our own notice tokens, validly signed, is not a beacon either, and the beacon a
    // page can read is no bill notice.
    let ours = TokenSigner::new(b"test-secret").sign(&sample_token(NoticeKind::Bill, u64::MAX));
    assert_eq!(post(&ex, &format!("/beacon/imp?t={ours}")).await, 403);
    assert_eq!(ex.get(&format!("/notice/bill?t={token}")).await.0, 403);
    assert_eq!(post(&ex, "/beacon/imp").await, 400);
    assert_eq!(post(&ex, "/beacon/imp?t=garbage").await, 400);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        partner.wait_notices("bill", 0).await.is_empty(),
        "nothing billed"
    );
    assert_eq!(
        ex.metric("bourse_adserve_beacons_total{kind=\"imp\",outcome=\"forged\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn expired_beacons_are_refused() {
    let partner = advertiser(2.0).await;
    let ex = Exchange::start(&config(
        &format!("{SITE}\n[plugins.exchange.tags]\nbeacon_ttl_secs = 1\n"),
        &[bidder("adv", &partner, "")],
    ))
    .await;
    let (_, answer) = ad(
        &ex,
        &page_body(json!([{"id": "a", "placement": "news-top"}])),
    )
    .await;
    let imp = path_of(answer["slots"][0]["imp"].as_str().unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(post(&ex, &imp).await, 410);
    assert_eq!(
        ex.metric("bourse_adserve_beacons_total{kind=\"imp\",outcome=\"expired\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn clicks_redirect_only_to_the_ads_own_landing_page() {
    let (_partner, ex) = site().await;
    let (_, answer) = ad(
        &ex,
        &page_body(json!([{"id": "a", "placement": "news-top"}])),
    )
    .await;
    let html = answer["slots"][0]["html"].as_str().unwrap();
    let start = html.find("http://bourse.test/click?t=").unwrap();
    let end = start + html[start..].find('"').unwrap();
    let click = path_of(&html[start..end].replace("&amp;", "&"));
    let req = http::Request::get(ex.url(&click))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = ex.send(req).await;
    assert_eq!(status, 302);
    assert_eq!(headers["location"], LANDING);
    // Not an open redirect: a destination of the caller's choosing is never followed.
    for path in [
        "/click?u=https://evil.example/".to_owned(),
        format!("{click}&u=https://evil.example/"),
        "/click?t=eyJ0YXJnZXQiOiJodHRwczovL2V2aWwuZXhhbXBsZS8ifQ.AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
    ] {
        let req = http::Request::get(ex.url(&path))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, headers, _) = ex.send(req).await;
        let location = headers
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        assert!(
            location.is_none() || location.as_deref() == Some(LANDING),
            "{path} → {status} {location:?}"
        );
    }
}

#[tokio::test]
async fn reports_are_for_loopback_or_the_reports_token() {
    let partner = advertiser(2.0).await;
    let ex = Exchange::start(&config(
        &format!("{SITE}\n[plugins.exchange.tags]\nreports_token = \"0123456789abcdef-reports\"\n"),
        &[bidder("adv", &partner, "")],
    ))
    .await;
    assert_eq!(ex.get("/ledger").await.0, 401);
    assert_eq!(ex.get("/reach").await.0, 401);
    let req = http::Request::get(ex.url("/ledger"))
        .header("authorization", "Bearer 0123456789abcdef-reports")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(ex.send(req).await.0, 200);
    assert_eq!(ex.get("/ledger?at=yesterday").await.0, 401);
}

#[tokio::test]
async fn learned_floors_rise_towards_the_revenue_maximising_reserve() {
    let high = advertiser(3.0).await;
    let low = advertiser(1.0).await;
    let ex = Exchange::start(&config(
        &format!(
            "{SITE}\n[plugins.exchange.floors]\nenabled = true\nmin_observations = 100\n\
             recompute_interval_ms = 20\nrecompute_every_observations = 20\nexploration_share = 0.05\n"
        ),
        &[bidder("high", &high, ""), bidder("low", &low, "")],
    ))
    .await;
    let body = page_body(json!([{"id": "a", "placement": "news-side"}]));
    // Second price with bids 3.0 and 1.0: a reserve just under 3.0 earns almost three times
    // what no reserve (1.01) does.
    for _ in 0..150 {
        let (status, _) = ad(&ex, &body).await;
        assert_eq!(status, 200);
    }
    let mut learned = 0.0;
    for _ in 0..100 {
        learned = ex
            .metric("bourse_floors_learned_cpm{placement=\"news-side\"}")
            .await;
        if learned > 1.5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(learned > 1.5, "learned floor {learned}");
    assert!(learned <= 3.0, "never above the best bid: {learned}");
    // Later auctions carry it (except the few drawn for exploration).
    let mut floors = Vec::new();
    for _ in 0..20 {
        ad(&ex, &body).await;
        floors.push(high.last_request()["imp"][0]["bidfloor"].as_f64().unwrap());
    }
    assert!(
        floors.iter().filter(|f| **f > 1.5).count() >= 15,
        "{floors:?}"
    );
}

#[tokio::test]
async fn tag_paths_never_reach_outside_the_embedded_tag() {
    let (_partner, ex) = site().await;
    for path in [
        "/tag.js/..%2f..%2fCargo.toml",
        "/tag.js/%2e%2e/%2e%2e/Cargo.toml",
        "/tag.js/.%252e/Cargo.toml",
        "/tag.js%2f..%2fCargo.toml",
        "/tag.js/%5c..%5cCargo.toml",
        "/tag.js/c:/windows/win.ini",
        "/tag.js//etc/passwd",
    ] {
        let (status, body) = ex.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            !String::from_utf8_lossy(&body).contains("[package]"),
            "{path}"
        );
    }
}
