//! Prebid.js as a client, in a real headless Chromium: the `prebid.js` package from npm, built
//! with its Prebid Server adapter only, on a publisher's page that points `s2sConfig` at
//! bourse. The page's auction goes cross-origin to `/openrtb2/auction` with credentials, a
//! partner behind bourse bids with markup, and Prebid.js renders the bourse-won creative into
//! the slot's iframe (`pbjs.renderAd`, no ad server).

use crate::browser;
use crate::support::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The npm project that builds the bundle.
const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/prebid");

/// Builds the Prebid.js bundle into a fresh temporary file (installing the npm project with
/// `npm ci` first when `scripts/test.sh` has not) and returns its path.
fn build_prebid() -> PathBuf {
    let project = Path::new(PROJECT);
    if !project.join("node_modules/prebid.js").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(project)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "npm ci in {PROJECT} failed (it needs node, npm and the npm registry)"
        );
    }
    let out = std::env::temp_dir().join(format!(
        "bourse-prebid-{}-{}.js",
        std::process::id(),
        rand::random::<u32>()
    ));
    let status = Command::new("node")
        .arg("build.mjs")
        .arg(&out)
        .current_dir(project)
        .status()
        .expect("node runs");
    assert!(status.success(), "building the Prebid.js bundle failed");
    out
}

/// The publisher's page: one 300x250 slot, Prebid.js asking bourse through `s2sConfig`, and
/// the winning bid rendered with `pbjs.renderAd` into an iframe in the slot.
fn page(bourse: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>Publisher</title>
<script src="/prebid.js"></script>
<script>
window.seen = {{requests: [], responses: [], errors: []}};
pbjs.que.push(function () {{
  pbjs.onEvent('adRenderSucceeded', function () {{ window.rendered = 'succeeded'; }});
  pbjs.onEvent('adRenderFailed', function (e) {{ window.rendered = 'failed: ' + e.reason + ' ' + e.message; }});
  pbjs.onEvent('adRenderSucceeded', function () {{ window.rendered = 'succeeded'; }});
  pbjs.onEvent('adRenderFailed', function (e) {{ window.rendered = 'failed: ' + e.reason + ' ' + e.message; }});
  pbjs.onEvent('beforePBSHttp', function (data) {{ seen.requests.push(data.requestJson); }});
  pbjs.onEvent('bidResponse', function (bid) {{
    seen.responses.push({{bidder: bid.bidderCode, cpm: bid.cpm, currency: bid.currency,
      size: bid.size, creativeId: bid.creativeId, mediaType: bid.mediaType,
      targeting: bid.adserverTargeting}});
  }});
  pbjs.setConfig({{
    s2sConfig: [{{
      accountId: 'news-1',
      enabled: true,
      adapter: 'prebidServer',
      bidders: ['alpha', 'beta'],
      endpoint: '{bourse}/openrtb2/auction',
      timeout: 1500
    }}]
  }});
  pbjs.addAdUnits([{{
    code: 'slot-top',
    mediaTypes: {{banner: {{sizes: [[300, 250]]}}}},
    bids: [
      {{bidder: 'alpha', params: {{placementId: 'top-1'}}}},
      {{bidder: 'beta', params: {{zone: 'z-9'}}}}
    ]
  }}]);
  pbjs.requestBids({{
    timeout: 3000,
    bidsBackHandler: function () {{
      var winners = pbjs.getHighestCpmBids('slot-top');
      if (winners.length) {{
        var frame = document.createElement('iframe');
        frame.id = 'ad-frame';
        frame.width = 300; frame.height = 250;
        document.getElementById('slot-top').appendChild(frame);
        pbjs.renderAd(frame.contentWindow.document, winners[0].adId);
      }}
      window.auctionDone = true;
    }}
  }});
}});
</script></head>
<body><h1>Story</h1><div id="slot-top"></div></body></html>"#
    )
}

#[tokio::test]
async fn prebid_js_renders_an_ad_won_through_bourse() {
    let bundle = build_prebid();
    let script = std::fs::read(&bundle).expect("bundle written");
    let _ = std::fs::remove_file(&bundle);

    let partner = Partner::start(|r| {
        Reply::Json(bids_on_every_imp(r, "adv", 1.5, |b| {
            b["adm"] = json!(
                "<div id=\"bourse-creative\" style=\"width:300px;height:250px\">Won through bourse</div>"
            );
            b["w"] = json!(300);
            b["h"] = json!(250);
        }))
    })
    .await;
    // The runner-up: alpha's second price is beta's bid plus the increment.
    let runner_up =
        Partner::start(|r| Reply::Json(bids_on_every_imp(r, "other", 1.0, |_| {}))).await;
    let ex = Exchange::start(&config(
        "",
        &[
            bidder("alpha", &partner, ""),
            bidder("beta", &runner_up, ""),
        ],
    ))
    .await;
    let bourse = ex.url("");
    let page_html = page(bourse.trim_end_matches('/'));
    let web = serve_files(move |path| match path {
        "/article.html" => Some(("text/html; charset=utf-8", page_html.clone().into_bytes())),
        "/prebid.js" => Some(("text/javascript", script.clone())),
        _ => None,
    })
    .await;

    let browser = browser::start().await.expect("headless chromium");
    browser
        .goto(&format!("http://{web}/article.html"))
        .await
        .unwrap();
    let done = poll(&browser, "return window.auctionDone === true || null").await;
    let seen = browser.eval("return window.seen").await.unwrap();
    assert_eq!(done, true, "the Prebid.js auction did not finish: {seen}");

    // What Prebid.js sent passed bourse's checks, and each partner saw only its own params.
    let sent: Value = serde_json::from_str(seen["requests"][0].as_str().unwrap()).unwrap();
    assert_eq!(sent["ext"]["prebid"]["channel"]["name"], "pbjs", "{sent}");
    assert_eq!(partner.request_count(), 1, "{seen}");
    assert_eq!(runner_up.request_count(), 1, "{seen}");
    for (seen_by, own, other) in [
        (
            partner.last_request(),
            json!({"placementId": "top-1"}),
            "z-9",
        ),
        (runner_up.last_request(), json!({"zone": "z-9"}), "top-1"),
    ] {
        let ext = &seen_by["imp"][0]["ext"];
        assert_eq!(ext["bidder"], own, "{seen_by}");
        assert!(ext["prebid"].get("bidder").is_none(), "{seen_by}");
        assert!(!seen_by.to_string().contains(other), "{seen_by}");
    }

    // The bid Prebid.js took from bourse's answer: only the winner's.
    assert_eq!(seen["responses"].as_array().unwrap().len(), 1, "{seen}");
    let bid = &seen["responses"][0];
    assert_eq!(bid["bidder"], "alpha", "{seen}");
    assert_eq!(bid["mediaType"], "banner");
    assert_eq!(bid["size"], "300x250");
    assert_eq!(bid["creativeId"], "adv-creative");
    assert_eq!(bid["currency"], "USD");
    // Second price: beta's 1.00 plus the 0.01 increment, less the test config's 10 % fee;
    // 0.909 is in the medium granularity's 0.90 bucket.
    let cpm = bid["cpm"].as_f64().unwrap();
    assert!((cpm - 1.01 * 0.9).abs() < 1e-9, "{bid}");
    assert_eq!(bid["targeting"]["hb_pb"], "0.90");
    assert_eq!(bid["targeting"]["hb_bidder"], "alpha");
    assert_eq!(bid["targeting"]["hb_size"], "300x250");

    // And rendered the creative into the slot: Prebid.js (since 10.12) writes the markup into a
    // frame of its own inside the one it is given.
    let rendered = poll(&browser, "return window.rendered || null").await;
    assert_eq!(rendered, "succeeded", "{seen}");
    browser
        .enter_frame("#slot-top iframe#ad-frame")
        .await
        .unwrap();
    browser.enter_frame("iframe").await.unwrap();
    let creative = browser
        .wait_for("#bourse-creative", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(creative.text().await.unwrap(), "Won through bourse");
    browser.leave_all_frames().await.unwrap();
    browser.close().await.unwrap();
}

/// Evaluates `js` every 50 ms until it returns something other than null, for up to 10 s.
async fn poll(browser: &browser::Browser, js: &str) -> Value {
    for _ in 0..200 {
        let value = browser.eval(js).await.unwrap();
        if !value.is_null() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Value::Null
}
