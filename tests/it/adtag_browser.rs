//! The ad tag in a real headless Chromium: a publisher page with two slots, ads rendered in
//! sandboxed iframes, each impression billed once although the page fires its beacon again,
//! viewability reported, and a click landing on the advertiser's page through our redirect.

use crate::browser;
use crate::support::*;
use serde_json::json;
use std::time::Duration;

/// Serves the publisher's page and the advertiser's landing page on one loopback port.
async fn web_server(bourse: String) -> std::net::SocketAddr {
    serve_html(move |path| match path {
        "/article.html" => format!(
            "<!doctype html><html><head><title>Publisher</title></head><body>\
             <h1>Story</h1>\
             <div id=\"top\" class=\"bourse-ad\" data-placement=\"news-top\" data-sizes=\"300x250\"></div>\
             <div id=\"side\" class=\"bourse-ad\" data-placement=\"news-side\" data-sizes=\"300x250\"></div>\
             <div id=\"empty\" class=\"bourse-ad\" data-placement=\"unknown\" data-sizes=\"300x250\"></div>\
             <script async src=\"{bourse}/tag.js\"></script></body></html>"
        ),
        "/landing" => "<!doctype html><html><head><title>Advertiser</title></head>\
                       <body><h1 id=\"landed\">Thanks for visiting</h1></body></html>"
            .to_owned(),
        _ => String::new(),
    })
    .await
}

#[tokio::test]
async fn a_page_renders_sandboxed_ads_billed_once_and_clicks_land() {
    let port = free_port();
    let bourse_url = format!("http://127.0.0.1:{port}");
    let web = web_server(bourse_url.clone()).await;
    let landing = format!("http://{web}/landing");
    let landing_for_partner = landing.clone();
    let partner = Partner::start(move |r| {
        Reply::Json(bids_on_every_imp(r, "adv", 1.5, |b| {
            b["adm"] = json!(format!(
                "<a id=\"cta\" href=\"{landing_for_partner}\" style=\"display:block;width:300px;height:250px\">Visit</a>"
            ));
            b["burl"] = json!("http://127.0.0.1:9/bill?p=${AUCTION_PRICE}");
            b["w"] = json!(300);
            b["h"] = json!(250);
        }))
    })
    .await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nformat = \"text\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"browser-secret\"\npublic_url = \"{bourse_url}\"\n\n\
         [[plugins.exchange.publishers]]\nid = \"news\"\ndomain = \"127.0.0.1\"\n\n\
         [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\n\
         [[plugins.exchange.placements]]\nid = \"news-side\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{}\"\nnotice_allowed_hosts = [\"127.0.0.1\"]\n",
        partner.endpoint()
    );
    let ex = Exchange::start(&text).await;
    let browser = browser::start().await.expect("headless chromium");

    browser
        .goto(&format!("http://{web}/article.html"))
        .await
        .unwrap();
    browser
        .wait_for("#side iframe[data-bourse-imp]", Duration::from_secs(15))
        .await
        .unwrap();
    let frames = browser
        .eval(
            "return Array.from(document.querySelectorAll('.bourse-ad')).map(d => ({id: d.id, \
             shown: d.style.display !== 'none', iframes: d.querySelectorAll('iframe').length, \
             sandbox: (d.querySelector('iframe') || {getAttribute: () => null}).getAttribute('sandbox')}))",
        )
        .await
        .unwrap();
    let frames = frames.as_array().unwrap();
    for slot in &frames[..2] {
        assert_eq!(slot["iframes"], 1, "{slot}");
        assert_eq!(slot["shown"], true, "{slot}");
        let sandbox = slot["sandbox"].as_str().unwrap();
        assert!(sandbox.contains("allow-scripts"), "{sandbox}");
        assert!(!sandbox.contains("allow-same-origin"), "{sandbox}");
    }
    assert_eq!(frames[2]["iframes"], 0, "the unknown slot stays empty");
    assert_eq!(frames[2]["shown"], false, "and collapsed");

    // Both impressions billed once each, also after the page fires every beacon twice more.
    let billed = "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"billed\"}";
    wait_metric(&ex, billed, 2.0).await;
    browser
        .eval(
            "document.querySelectorAll('iframe[data-bourse-imp]').forEach(f => { \
               navigator.sendBeacon(f.dataset.bourseImp); navigator.sendBeacon(f.dataset.bourseImp); }); \
             return true",
        )
        .await
        .unwrap();
    wait_metric(
        &ex,
        "bourse_adserve_beacons_total{kind=\"imp\",outcome=\"duplicate\"}",
        4.0,
    )
    .await;
    assert_eq!(ex.metric(billed).await, 2.0);
    // In view on a 1280x900 window: each is reported viewable once, after a second.
    wait_metric(&ex, "bourse_adserve_viewable_impressions_total", 2.0).await;

    // The creative cannot reach into the publisher's page.
    browser.enter_frame("#top iframe").await.unwrap();
    let reach_out = browser
        .eval("try { return parent.document.title; } catch (e) { return 'blocked'; }")
        .await
        .unwrap();
    assert_eq!(reach_out, "blocked");

    // A click goes through bourse's redirect to the advertiser.
    browser.click("#cta").await.unwrap();
    browser.leave_all_frames().await.unwrap();
    let landed = browser
        .wait_for_url(Duration::from_secs(10), |u| u.path() == "/landing")
        .await
        .unwrap();
    assert_eq!(landed.as_str(), landing);
    browser
        .wait_for("#landed", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        ex.metric("bourse_adserve_beacons_total{kind=\"click\",outcome=\"redirected\"}")
            .await,
        1.0
    );
    browser.close().await.unwrap();
}

async fn wait_metric(ex: &Exchange, series: &str, want: f64) {
    let mut value = 0.0;
    for _ in 0..100 {
        value = ex.metric(series).await;
        if value >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value, want, "{series}");
}
