//! The admin in a real headless Chromium while auctions run: sign in, watch the live overview
//! and its charts move, create a publisher and a placement, copy the placement's tag snippet
//! into a page that then shows an ad, add a bidder and change a floor. The auction sent right
//! after each change reflects it, no auction of the background load fails, and every page fits
//! a phone's width. Under the simulator's load (the real `bourse sim run` against the real
//! binary, with the scenario's simulated partners): screenshots of the overview, the bidders
//! and a bidder's page at desktop and phone widths with every key column in view, and a
//! simulated partner stopped and restarted on its port, read "down" in red then "healthy".

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

/// The page scrolls no wider than the window: nothing is cut off sideways.
async fn assert_fits_the_window(browser: &Browser, what: &str) {
    let widths = browser
        .eval("return [document.documentElement.scrollWidth, window.innerWidth]")
        .await
        .unwrap();
    assert!(
        widths[0].as_u64().unwrap() <= widths[1].as_u64().unwrap(),
        "{what} is wider than the window: {widths}"
    );
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
                "const panel = document.querySelector('.chart-panel');\
                 return [Number(document.body.dataset.livePoints || 0), \
                 parseFloat(document.querySelector('[data-live=auctions_per_sec]').textContent), \
                 document.querySelectorAll('.chart-panel .uplot canvas').length, \
                 document.querySelectorAll('.chart-panel .u-legend').length, \
                 Number(panel.dataset.chartsDrawn || 0)]",
            )
            .await
            .unwrap();
        if live[0].as_f64().unwrap() >= 2.0
            && live[1].as_f64().unwrap_or(0.0) > 0.0
            && live[2].as_u64().unwrap() >= 4
            && live[3].as_u64().unwrap() >= 4
            && live[4].as_u64().unwrap() >= 2
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
        assert_fits_the_window(&browser, path).await;
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

/// The four-bidders scenario's simulated partners, the real binary serving them (a bidder's
/// health judged on `health_window_secs`), and the real `bourse sim run` sending the scenario's
/// traffic at a light open-loop rate until this is dropped.
struct Simulated {
    bidders: Vec<bourse_sim::bidder::SimBidderHandle>,
    node: Node,
    traffic: std::process::Child,
}

impl Simulated {
    async fn start(health_window_secs: u64) -> Simulated {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sim/scenarios/four-bidders.toml");
        let scenario = bourse_sim::scenario::Scenario::load(&path).unwrap();
        let bidders = scenario.start_bidders().await.unwrap();
        let text = bourse::sim::exchange_config(&scenario, &bidders).unwrap();
        let mut root: toml::Table = toml::from_str(&text).unwrap();
        root["plugins"]["exchange"].as_table_mut().unwrap().insert(
            "admin".into(),
            toml::from_str(&format!("health_window_secs = {health_window_secs}")).unwrap(),
        );
        let node = Node::start(&format!(
            "{}{}",
            toml::to_string(&root).unwrap(),
            admin_section()
        ));
        // Light but steady for two busy cores: 40 auctions a second, each to four partners.
        let traffic = std::process::Command::new(env!("CARGO_BIN_EXE_bourse"))
            .args(["sim", "run"])
            .arg(&path)
            .args(["--target", &node.url("/openrtb2/auction")])
            .args(["--rate", "40", "--duration", "600"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("bourse sim run starts");
        Simulated {
            bidders,
            node,
            traffic,
        }
    }

    /// Signs in the browser as `ops`.
    async fn sign_in(&self, browser: &Browser) {
        browser.goto(&self.node.url("/admin/login")).await.unwrap();
        fill(browser, "input[name=user]", "ops").await;
        fill(browser, "input[name=password]", ADMIN_PASSWORD).await;
        submit(browser, "form", "/admin").await;
    }
}

impl Drop for Simulated {
    fn drop(&mut self) {
        let _ = self.traffic.kill();
        let _ = self.traffic.wait();
    }
}

/// Where the browser tests put their screenshots: `<target>/screenshots/`.
fn screenshots_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The key cells of the page's lists that are not wholly in view across the window: each
/// must sit inside the viewport and inside the box its table scrolls in, stacked or not. An
/// empty answer means every one is visible; `checked` says how many were looked at.
async fn key_cells_out_of_view(browser: &Browser, cells: &str) -> (u64, Vec<String>) {
    let answer = browser
        .eval_with(
            "const width = document.documentElement.clientWidth;\
             const out = []; let checked = 0;\
             for (const cell of document.querySelectorAll(arguments[0])) {\
               checked++;\
               const box = cell.getBoundingClientRect();\
               const scroll = cell.closest('.scroll');\
               const right = Math.min(width, scroll ? scroll.getBoundingClientRect().right : width);\
               const left = Math.max(0, scroll ? scroll.getBoundingClientRect().left : 0);\
               if (box.width === 0 || box.height === 0 || box.left < left - 1 || box.right > right + 1) {\
                 out.push((cell.dataset.label || cell.tagName) + ' ' + cell.innerText.slice(0, 30) + ' at ' + Math.round(box.left) + '..' + Math.round(box.right) + ' of ' + Math.round(right));\
               }\
             }\
             return [checked, out];",
            vec![json!(cells)],
        )
        .await
        .unwrap();
    let out = answer[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    (answer[0].as_u64().unwrap_or(0), out)
}

/// Waits until `charts` charts of the page are drawn with `points` points at least, a legend
/// and labelled axes.
async fn charts_drawn(browser: &Browser, charts: u64, points: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let drawn = browser
            .eval(
                "const panel = document.querySelector('.chart-panel');\
                 return [Number(panel && panel.dataset.chartsDrawn || 0), \
                   document.querySelectorAll('.chart-panel .uplot canvas').length, \
                   document.querySelectorAll('.chart-panel .u-legend').length, \
                   document.querySelectorAll('.chart-panel figure[data-axes]').length]",
            )
            .await
            .unwrap();
        let n = |i: usize| drawn[i].as_u64().unwrap_or(0);
        if n(0) >= points && n(1) >= charts && n(2) >= charts && n(3) >= charts {
            return;
        }
        assert!(Instant::now() < deadline, "charts not drawn: {drawn}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn under_simulator_load_key_columns_stay_in_view_at_desktop_and_phone_widths() {
    let sim = Simulated::start(60).await;
    let browser = browser::start().await.expect("headless chromium");
    sim.sign_in(&browser).await;
    // Screenshots of a busy exchange: wait for ten seconds of auctions on the overview.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let busy = browser
            .eval(
                "return [Number(document.body.dataset.livePoints || 0), \
                 parseFloat(document.querySelector('[data-live=auctions_per_sec]').textContent) || 0]",
            )
            .await
            .unwrap();
        if busy[0].as_u64().unwrap_or(0) >= 10 && busy[1].as_f64().unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no load reached the overview: {busy}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dir = screenshots_dir();
    let pages = [
        (
            "overview",
            "/admin",
            ".top-bidders td.key, .top-bidders td[data-label=Errors], .top-bidders td[data-label=Wins], .cards div",
            4,
        ),
        (
            "bidders",
            "/admin/exchange/bidders",
            "tr[data-bidder] td.key, tr[data-bidder] td.health, tr[data-bidder] td[data-label=Errors], tr[data-bidder] td.actions a",
            0,
        ),
        (
            "bidder",
            "/admin/exchange/bidders/view?name=instant-a",
            "dl.facts dd, table.errors-by-kind td, table.figures td",
            4,
        ),
    ];
    for (width, height) in [(1280, 900), (390, 844)] {
        browser.client.set_window_size(width, height).await.unwrap();
        for (name, path, key_cells, charts) in pages {
            browser.goto(&sim.node.url(path)).await.unwrap();
            browser
                .wait_for("main h1", browser::DEFAULT_WAIT)
                .await
                .unwrap();
            if charts > 0 {
                charts_drawn(&browser, charts, 2).await;
            }
            // The lists show every bidder with its numbers once the load has reached them all.
            let (checked, out) = key_cells_out_of_view(&browser, key_cells).await;
            assert!(
                checked >= 4,
                "{name} at {width} px: only {checked} key cells"
            );
            assert!(out.is_empty(), "{name} at {width} px, out of view: {out:?}");
            assert_fits_the_window(&browser, &format!("{name} at {width} px")).await;
            let file = dir.join(format!("{name}-{width}.png"));
            std::fs::write(&file, browser.screenshot().await.unwrap()).unwrap();
            println!("screenshot: {}", file.display());
        }
        // "Edit" of every bidder is a visible link, whatever the width.
        browser
            .goto(&sim.node.url("/admin/exchange/bidders"))
            .await
            .unwrap();
        let edits = browser
            .eval("return [...document.querySelectorAll('tr[data-bidder] td.actions a')].filter(a => a.textContent === 'Edit').length")
            .await
            .unwrap();
        assert_eq!(edits, 4, "at {width} px");
    }
    // A range and its comparison, drawn from the store: the previous period's series dashed.
    browser.client.set_window_size(1280, 900).await.unwrap();
    browser
        .goto(&sim.node.url("/admin/exchange?range=1h&compare=1"))
        .await
        .unwrap();
    // The node started a minute ago at most: one point so far.
    charts_drawn(&browser, 4, 1).await;
    let axes = browser
        .eval("return document.querySelector('figure[data-chart=revenue]').dataset.axes")
        .await
        .unwrap();
    assert_eq!(
        axes, "USD per minute | Clearing eCPM, USD",
        "clearing eCPM has its own axis"
    );
    let legend = body_text(&browser).await;
    assert!(
        legend.contains("Clearing eCPM, previous period") && legend.contains("UTC (node start)."),
        "{legend}"
    );
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_bidder_stopped_under_load_reads_down_in_red_then_healthy_once_back() {
    // A 15-second health window, so recovery shows within the test's time.
    let mut sim = Simulated::start(15).await;
    let browser = browser::start().await.expect("headless chromium");
    sim.sign_in(&browser).await;
    let bidders_page = sim.node.url("/admin/exchange/bidders");
    // The row and strip of instant-a as the bidders page shows them.
    let look = || {
        let (browser, bidders_page) = (&browser, &bidders_page);
        async move {
            browser.goto(bidders_page).await.unwrap();
            browser
                .eval(
                    "const cell = document.querySelector('tr[data-bidder=instant-a] td.health');\
                     const strip = [...document.querySelectorAll('.health-strip p')]\
                       .find(p => p.innerText.includes('Bidder instant-a '));\
                     return { state: cell ? cell.className.split(' ')[0] : '', row: cell ? cell.innerText : '',\
                       color: cell ? getComputedStyle(cell).color : '',\
                       strip: strip ? strip.innerText : '', strip_class: strip ? strip.className : '',\
                       strip_color: strip ? getComputedStyle(strip.querySelector('strong')).color : '' }",
                )
                .await
                .unwrap()
        }
    };
    let until = |state: &'static str, within: Duration| {
        let look = &look;
        async move {
            let deadline = Instant::now() + within;
            loop {
                let seen = look().await;
                if seen["state"] == format!("health-{state}") || Instant::now() > deadline {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let seen = until("healthy", Duration::from_secs(30)).await;
    assert_eq!(seen["state"], "health-healthy", "under load first: {seen}");

    // Stopped: its port refuses every connection.
    let (addr, config) = (sim.bidders[0].addr(), sim.bidders[0].config().clone());
    assert_eq!(sim.bidders[0].name(), "instant-a");
    sim.bidders[0].shutdown();
    let stopped = Instant::now();
    let seen = until("down", Duration::from_secs(60)).await;
    assert_eq!(seen["state"], "health-down", "{seen}");
    assert!(stopped.elapsed() < Duration::from_secs(60));
    let row = seen["row"].as_str().unwrap_or_default();
    assert!(
        row.starts_with("down")
            && row.contains("(connect ")
            && row.contains("since ")
            && row.contains(" UTC"),
        "the row says down, the kind and since when: {seen}"
    );
    assert_eq!(seen["color"], "rgb(170, 17, 17)", "down is red: {seen}");
    let strip = seen["strip"].as_str().unwrap_or_default();
    assert!(
        seen["strip_class"] == "alert-down"
            && strip.contains("Bidder instant-a is down:")
            && strip.contains("calls failed (connect ")
            && strip.contains(" UTC"),
        "the strip names it: {seen}"
    );
    assert_eq!(seen["strip_color"], "rgb(170, 17, 17)", "{seen}");

    // Back on the same port: healthy within the window (and a margin for two busy cores).
    sim.bidders[0] = bourse_sim::bidder::SimBidder::spawn(config, addr)
        .await
        .unwrap();
    let restarted = Instant::now();
    let seen = until("healthy", Duration::from_secs(15 + 20)).await;
    assert_eq!(seen["state"], "health-healthy", "{seen}");
    assert_eq!(seen["strip"], "", "the strip no longer names it: {seen}");
    println!(
        "down {:?} after the stop, healthy {:?} after the restart",
        restarted.duration_since(stopped),
        restarted.elapsed()
    );
    browser.close().await.unwrap();
}
