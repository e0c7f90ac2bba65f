//! The admin in a real headless Chromium while auctions run: sign in, watch the live overview
//! move, create a publisher and a placement, copy the placement's tag snippet into a page that
//! then shows an ad, add a bidder and change a floor. The auction sent right after each change
//! reflects it, no auction of the background load fails, and every page fits a phone's width.

use crate::browser::{self, Browser};
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves `/page.html`: a publisher's page holding whatever snippet the test pasted in.
async fn publisher_site(snippet: Arc<Mutex<String>>) -> std::net::SocketAddr {
    serve_html(move |_| {
        format!(
            "<!doctype html><html><head><title>Blog</title></head><body>\
             <h1>A post</h1>{}</body></html>",
            snippet.lock().unwrap()
        )
    })
    .await
}

/// OpenRTB auctions sent back to back from two loops until stopped; anything but 200 or 204
/// (a refused connection included) is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let tasks = (0..2)
            .map(|worker| {
                let (stop, sent, failed, client, url) = (
                    stop.clone(),
                    sent.clone(),
                    failed.clone(),
                    client.clone(),
                    url.clone(),
                );
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = banner_request(&format!("load-{worker}-{n}"), &[("1", 0.1)]);
                        let req = http::Request::post(&url)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .unwrap();
                        match client.request(req).await {
                            Ok(response) => {
                                let status = response.status();
                                let _ = response.into_body().collect().await;
                                if status != 200 && status != 204 {
                                    failed.lock().unwrap().push(format!("status {status}"));
                                }
                            }
                            Err(error) => failed.lock().unwrap().push(error.to_string()),
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), failed)
    }
}

async fn fill(browser: &Browser, css: &str, text: &str) {
    let field = browser.wait_for(css, browser::DEFAULT_WAIT).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn body_text(browser: &Browser) -> String {
    browser
        .eval("return document.body.innerText")
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Submits the form holding `css` and waits for the page it leads to: a new document (the
/// form posts back to the page it is on, so the URL alone does not say the answer arrived).
async fn submit(browser: &Browser, form: &str, then_path: &str) {
    browser
        .eval("document.body.dataset.submitted = 'waiting'; return true")
        .await
        .unwrap();
    browser
        .click(&format!("{form} button[type=submit]"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let fresh = browser
            .eval("return document.readyState === 'complete' && !document.body.dataset.submitted")
            .await
            .unwrap_or(Value::Bool(false));
        if fresh == Value::Bool(true) {
            break;
        }
        assert!(Instant::now() < deadline, "no answer to the form {form}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = browser.current_url().await.unwrap();
    assert_eq!(at.path(), then_path, "{at}");
    browser
        .wait_for("main h1", browser::DEFAULT_WAIT)
        .await
        .unwrap();
}

/// One `/ad` for blog-top as its page would ask; the partner's view of it.
async fn blog_ad(node: &Node, tag_requests: &Mutex<Vec<Value>>) -> Value {
    tag_requests.lock().unwrap().clear();
    let body =
        json!({"page": "http://127.0.0.1/post", "slots": [{"id": "s", "placement": "blog-top"}]});
    let req = http::Request::post(node.url("/ad"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _) = node.send(req).await;
    assert_eq!(status, 200);
    let asked = tag_requests.lock().unwrap();
    assert_eq!(asked.len(), 1, "one auction for the tag");
    asked[0].clone()
}

#[tokio::test]
async fn an_operator_changes_the_exchange_from_the_admin_while_auctions_run() {
    let port = free_port();
    // The load also reaches this partner, so the ad-tag auctions are picked out by placement.
    let tag_requests: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = tag_requests.clone();
    let partner = Partner::start(move |r| {
        if r["imp"][0]["tagid"] == "blog-top" {
            seen.lock().unwrap().push(r.clone());
        }
        Reply::Json(bids_on_every_imp(r, "adv", 2.0, |b| {
            b["adm"] = json!("<div id=\"creative\" style=\"width:300px;height:250px\">Ad</div>");
            b["w"] = json!(300);
            b["h"] = json!(250);
        }))
    })
    .await;
    let second = Partner::start(|r| Reply::Json(bids(r, "second", &[("1", 1.0)]))).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nformat = \"text\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"admin-browser\"\npublic_url = \"http://127.0.0.1:{port}\"\n\n\
         [[plugins.exchange.publishers]]\nid = \"news\"\n\n\
         [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{}\"\n{}",
        partner.endpoint(),
        admin_section()
    );
    let node = Node::start(&text);
    let snippet = Arc::new(Mutex::new(String::new()));
    let site = publisher_site(snippet.clone()).await;
    let load = Load::start(node.url("/openrtb2/auction"));
    let browser = browser::start().await.expect("headless chromium");
    let admin = |path: &str| node.url(path);

    // Sign in; the overview's numbers move with the load.
    browser.goto(&admin("/admin/login")).await.unwrap();
    fill(&browser, "input[name=user]", "ops").await;
    fill(&browser, "input[name=password]", ADMIN_PASSWORD).await;
    submit(&browser, "form", "/admin").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let live = browser
            .eval(
                "return [Number(document.body.dataset.livePoints || 0), \
                 parseFloat(document.querySelector('[data-live=auctions_per_sec]').textContent), \
                 document.querySelectorAll('svg.chart path').length, \
                 document.querySelectorAll('svg.chart text').length]",
            )
            .await
            .unwrap();
        if live[0].as_f64().unwrap() >= 2.0
            && live[1].as_f64().unwrap_or(0.0) > 0.0
            && live[2].as_u64().unwrap() >= 4
            && live[3].as_u64().unwrap() >= 12
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the overview never went live: {live}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        body_text(&browser).await.contains("adv"),
        "top bidders list adv"
    );

    // A publisher, then a placement of it; a bad size is refused beside the field first.
    browser
        .goto(&admin("/admin/exchange/publishers"))
        .await
        .unwrap();
    fill(&browser, "input[name=id]", "blog").await;
    fill(&browser, "input[name=name]", "Blog").await;
    fill(&browser, "input[name=domain]", "127.0.0.1").await;
    submit(
        &browser,
        "form[action='/admin/exchange/publishers']",
        "/admin/exchange/publishers",
    )
    .await;
    assert!(body_text(&browser).await.contains("Blog"));

    browser
        .goto(&admin("/admin/exchange/placements"))
        .await
        .unwrap();
    fill(&browser, "input[name=id]", "blog-top").await;
    browser
        .wait_for("select[name=publisher]", browser::DEFAULT_WAIT)
        .await
        .unwrap()
        .select_by_value("blog")
        .await
        .unwrap();
    fill(&browser, "input[name=sizes]", "banner").await;
    fill(&browser, "input[name=floor]", "0.4").await;
    submit(
        &browser,
        "form[action='/admin/exchange/placements']",
        "/admin/exchange/placements",
    )
    .await;
    let error = browser
        .wait_for(
            "input[name=sizes] ~ .field-error, label + .field-error",
            browser::DEFAULT_WAIT,
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(error, "Write sizes as 300x250,728x90.");
    fill(&browser, "input[name=sizes]", "300x250").await;
    submit(
        &browser,
        "form[action='/admin/exchange/placements']",
        "/admin/exchange/placements",
    )
    .await;
    let sent = blog_ad(&node, &tag_requests).await;
    assert_eq!(sent["imp"][0]["tagid"], "blog-top");
    assert_eq!(sent["imp"][0]["bidfloor"], 0.4);
    assert_eq!(sent["site"]["publisher"]["id"], "blog");

    // The snippet, copied from the admin into the publisher's page, shows an ad there.
    let copied = browser
        .eval(
            "return document.querySelector('textarea[data-placement-snippet=\"blog-top\"]').value",
        )
        .await
        .unwrap();
    let copied = copied.as_str().unwrap().to_owned();
    assert!(copied.contains("data-placement=\"blog-top\""), "{copied}");
    *snippet.lock().unwrap() = copied;
    browser
        .goto(&format!("http://{site}/page.html"))
        .await
        .unwrap();
    browser
        .wait_for(".bourse-ad iframe", Duration::from_secs(15))
        .await
        .unwrap();

    // A bidder added in the admin is asked in the next auction.
    browser
        .goto(&admin("/admin/exchange/bidders"))
        .await
        .unwrap();
    // The new-bidder form's fields: each row also has a Test form holding the bidder's name.
    let new_bidder = "form[action='/admin/exchange/bidders']";
    fill(
        &browser,
        &format!("{new_bidder} input[name=name]"),
        "second",
    )
    .await;
    fill(
        &browser,
        &format!("{new_bidder} input[name=endpoint]"),
        &second.endpoint(),
    )
    .await;
    assert_eq!(second.request_count(), 0);
    submit(&browser, new_bidder, "/admin/exchange/bidders").await;
    blog_ad(&node, &tag_requests).await;
    assert!(second.request_count() >= 1, "the new bidder is asked");
    assert!(body_text(&browser).await.contains("second"));

    // A floor changed on the floors page holds in the next auction.
    browser
        .goto(&admin("/admin/exchange/floors"))
        .await
        .unwrap();
    let row = "tr:has(input[name=id][value=blog-top]) form.row-form";
    fill(&browser, &format!("{row} input[name=floor]"), "1.25").await;
    submit(&browser, row, "/admin/exchange/floors").await;
    assert_eq!(
        blog_ad(&node, &tag_requests).await["imp"][0]["bidfloor"],
        1.25
    );

    // A bidder whose endpoint refuses every connection is down, in red, at the top of every
    // page within seconds, saying what failed and since when.
    let gone = refused_endpoint();
    browser
        .goto(&admin("/admin/exchange/bidders"))
        .await
        .unwrap();
    fill(&browser, &format!("{new_bidder} input[name=name]"), "gone").await;
    fill(
        &browser,
        &format!("{new_bidder} input[name=endpoint]"),
        &gone,
    )
    .await;
    submit(&browser, new_bidder, "/admin/exchange/bidders").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let strip = loop {
        browser.goto(&admin("/admin")).await.unwrap();
        let strip = browser
            .eval(
                "const down = document.querySelector('.health-strip .alert-down');\
                 return down ? [down.innerText, getComputedStyle(down.querySelector('strong')).color] : null",
            )
            .await
            .unwrap();
        if !strip.is_null() || std::time::Instant::now() > deadline {
            break strip;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let text = strip[0].as_str().unwrap_or_default();
    assert!(
        text.contains("Bidder gone is down:")
            && text.contains("calls failed (connect ")
            && text.contains(" UTC"),
        "{strip}"
    );
    assert_eq!(strip[1], "rgb(170, 17, 17)", "down is red: {strip}");

    // Every section fits a phone's width: nothing wider than the screen but the tables,
    // which scroll inside their own box.
    browser.client.set_window_size(390, 844).await.unwrap();
    for path in [
        "/admin",
        "/admin/exchange",
        "/admin/exchange/publishers",
        "/admin/exchange/placements",
        "/admin/exchange/placements/edit?id=blog-top",
        "/admin/exchange/bidders",
        "/admin/exchange/floors",
        "/admin/plugins",
        "/admin/config",
    ] {
        browser.goto(&admin(path)).await.unwrap();
        browser
            .wait_for("main h1", browser::DEFAULT_WAIT)
            .await
            .unwrap();
        let widths = browser
            .eval("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await
            .unwrap();
        assert!(
            widths[0].as_u64().unwrap() <= widths[1].as_u64().unwrap(),
            "{path} is wider than the phone: {widths}"
        );
    }
    let history = body_text(&browser).await;
    assert!(history.contains("admin:ops"), "{history}");
    browser.close().await.unwrap();

    let (sent, failed) = load.finish().await;
    assert!(sent > 100, "the load ran: {sent} auctions");
    assert!(
        failed.is_empty(),
        "{} of {sent} auctions failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
