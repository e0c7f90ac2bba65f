//! The admin's sections over HTTP against the real binary: publishers, placements and bidders
//! created, edited and disabled live with refusals shown beside their fields; the floors page
//! with static and learned floors; paginated tables; and the live overview's numbers.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn exchange_config(partner: &Partner, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"text\"\nlevel = \"warn\"\n\n\
         [plugins.exchange]\nnotice_secret = \"pages-secret\"\npublic_url = \"http://bourse.test\"\n{extra}\n\
         [[plugins.exchange.publishers]]\nid = \"news\"\n\n\
         [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\nsizes = [[300, 250]]\nfloor = 0.5\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{}\"\n{}",
        partner.endpoint(),
        admin_section()
    )
}

async fn post(
    node: &Node,
    path: &str,
    session: &str,
    form: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    node_request(node, http::Method::POST, path, session, form).await
}

/// One `/ad` call for `placement` from a page on `host`; the partner's view of it, if asked.
async fn ad(node: &Node, partner: &Partner, host: &str, placement: &str) -> Option<Value> {
    let before = partner.request_count();
    let body = json!({"page": format!("https://{host}/story"), "slots": [{"id": "s", "placement": placement}]});
    let req = http::Request::post(node.url("/ad"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _) = node.send(req).await;
    assert!(status.is_success(), "{status}");
    (partner.request_count() > before).then(|| partner.last_request())
}

/// A node whose bidders are `partner` (as `adv`) and `gone`, at a port nothing listens on.
fn node_with_a_refused_bidder(partner: &Partner) -> Node {
    let gone = refused_endpoint();
    Node::start(&exchange_config(
        partner,
        &format!("[[plugins.exchange.bidders]]\nname = \"gone\"\nendpoint = \"{gone}\"\n"),
    ))
}

/// The text of the first `field-error` paragraph after `marker` in `page`.
fn field_error_after<'a>(page: &'a str, marker: &str) -> Option<&'a str> {
    let from = page.find(marker)?;
    let rest = &page[from..];
    let at = rest.find("class=\"field-error\"")?;
    let text = &rest[at..];
    let start = text.find('>')? + 1;
    Some(&text[start..start + text[start..].find('<')?])
}

#[tokio::test]
async fn publishers_are_created_edited_and_disabled_live() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0)]))).await;
    let node = Node::start(&exchange_config(&partner, ""));
    let session = sign_in(&node).await;
    let (status, page) = node_get(&node, "/admin/exchange/publishers", &session).await;
    assert_eq!(status, 200);
    assert!(page.contains(">news</a></td>"), "{page}");
    let csrf = csrf_in(&page);

    // A bad id is refused beside the id field, and what was typed stays in the form.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/publishers",
        &session,
        &[
            ("csrf", &csrf),
            ("id", "Bad Id"),
            ("name", "Blog"),
            ("enabled", "true"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        field_error_after(&page, "name=\"id\""),
        Some("use 1-64 characters of a-z, 0-9, - and _"),
        "{page}"
    );
    assert!(page.contains("value=\"Bad Id\""), "{page}");

    for (path, form) in [
        (
            "/admin/exchange/publishers",
            vec![
                ("id", "blog"),
                ("name", "Blog"),
                ("domain", "blog.example"),
                ("enabled", "true"),
            ],
        ),
        (
            "/admin/exchange/placements",
            vec![
                ("id", "blog-top"),
                ("publisher", "blog"),
                ("sizes", "300x250"),
                ("floor", "0.3"),
                ("enabled", "true"),
            ],
        ),
    ] {
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend(form);
        let (status, headers, page) = post(&node, path, &session, &fields).await;
        assert_eq!(status, 303, "{path}: {page}");
        let (kind, id) = (
            if path.ends_with("publishers") {
                "publisher"
            } else {
                "placement"
            },
            fields[1].1,
        );
        let saved = format!("{path}?saved={kind}&name={id}");
        assert_eq!(headers["location"], saved.as_str());
        let (_, page) = node_get(&node, &saved, &session).await;
        assert!(page.contains(&format!("Saved {kind} {id}.")), "{page}");
    }
    let sent = ad(&node, &partner, "www.blog.example", "blog-top")
        .await
        .expect("asked");
    assert_eq!(sent["site"]["publisher"]["id"], "blog");
    assert_eq!(sent["imp"][0]["bidfloor"], 0.3);

    // Edit: the form comes filled in, the id cannot change; unchecking "enabled" disables it.
    let (status, page) = node_get(&node, "/admin/exchange/publishers/edit?id=blog", &session).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("value=\"Blog\"") && page.contains("readonly"),
        "{page}"
    );
    let (status, _, page) = post(
        &node,
        "/admin/exchange/publishers/edit",
        &session,
        &[
            ("csrf", &csrf),
            ("id", "blog"),
            ("name", "Blog Two"),
            ("domain", "blog.example"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    assert!(
        ad(&node, &partner, "www.blog.example", "blog-top")
            .await
            .is_none(),
        "a disabled publisher's placements are not auctioned"
    );
    let (_, page) = node_get(&node, "/admin/exchange/publishers", &session).await;
    assert!(
        page.contains("Blog Two") && page.contains("<em>disabled</em>"),
        "{page}"
    );
    // An edit the config refuses keeps the old config and says why beside the field.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/publishers/edit",
        &session,
        &[
            ("csrf", &csrf),
            ("id", "blog"),
            ("domain", "https://blog.example/x"),
            ("enabled", "true"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        field_error_after(&page, "name=\"domain\"").is_some_and(|e| e.contains("bare domain")),
        "{page}"
    );
    assert!(
        ad(&node, &partner, "www.blog.example", "blog-top")
            .await
            .is_none()
    );
    // Enabled again, it serves at once.
    let (status, _, _) = post(
        &node,
        "/admin/exchange/publishers/edit",
        &session,
        &[
            ("csrf", &csrf),
            ("id", "blog"),
            ("name", "Blog"),
            ("domain", "blog.example"),
            ("enabled", "true"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        ad(&node, &partner, "www.blog.example", "blog-top")
            .await
            .is_some()
    );
}

#[tokio::test]
async fn bidders_are_edited_and_disabled_live_with_errors_beside_fields() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0)]))).await;
    let node = Node::start(&exchange_config(&partner, ""));
    let session = sign_in(&node).await;
    assert!(
        ad(&node, &partner, "news.example", "news-top")
            .await
            .is_some()
    );
    let (status, page) = node_get(&node, "/admin/exchange/bidders/edit?name=adv", &session).await;
    assert_eq!(status, 200);
    let csrf = csrf_in(&page);
    let endpoint = partner.endpoint();
    assert!(
        page.contains(&format!("value=\"{endpoint}\"")),
        "filled in: {page}"
    );

    // Fields that are not numbers say what they want, and on the same submit a field the
    // config refuses says why (the unreadable ones checked at their defaults); nothing applies.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/bidders/edit",
        &session,
        &[
            ("csrf", &csrf),
            ("name", "adv"),
            ("adapter", "openrtb"),
            ("endpoint", &endpoint),
            ("timeout_ms", "soon"),
            ("qps", "lots"),
            ("adjustment", "-2"),
            ("media", "banner"),
            ("enabled", "true"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        field_error_after(&page, "name=\"timeout_ms\""),
        Some("The timeout is a whole number of milliseconds.")
    );
    assert_eq!(
        field_error_after(&page, "name=\"qps\""),
        Some("The QPS cap is a whole number of requests per second.")
    );
    assert!(
        field_error_after(&page, "name=\"adjustment\"").is_some(),
        "the config's error on the first submit: {page}"
    );
    let (_, history) = node_get(&node, "/admin/config", &session).await;
    assert!(!history.contains("admin:ops"), "nothing applied: {history}");
    // A value the config refuses is named beside its field.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/bidders/edit",
        &session,
        &[
            ("csrf", &csrf),
            ("name", "adv"),
            ("adapter", "openrtb"),
            ("endpoint", &endpoint),
            ("timeout_ms", "150"),
            ("adjustment", "-2"),
            ("media", "banner"),
            ("enabled", "true"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        field_error_after(&page, "name=\"adjustment\"").is_some(),
        "{page}"
    );

    // A new adjustment prices the next auction; disabling keeps the bidder out of it.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/bidders/edit",
        &session,
        &[
            ("csrf", &csrf),
            ("name", "adv"),
            ("adapter", "openrtb"),
            ("endpoint", &endpoint),
            ("timeout_ms", "200"),
            ("adjustment", "1"),
            ("media", "banner"),
        ],
    )
    .await;
    assert_eq!(status, 303, "{page}");
    assert!(
        ad(&node, &partner, "news.example", "news-top")
            .await
            .is_none(),
        "a disabled bidder is not asked"
    );
    let (_, page) = node_get(&node, "/admin/exchange/bidders", &session).await;
    assert!(
        page.contains("200 ms") && page.contains("<em>disabled</em>"),
        "{page}"
    );
    assert!(
        page.contains(">off<"),
        "health of a disabled bidder: {page}"
    );
    let text = std::fs::read_to_string(&node.config_path).unwrap();
    assert!(
        text.contains("timeout_ms = 200") && text.contains("enabled = false"),
        "{text}"
    );
}

#[tokio::test]
async fn a_bidder_refusing_connections_is_down_within_seconds_with_what_failed() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 1.0)]))).await;
    let node = node_with_a_refused_bidder(&partner);
    let session = sign_in(&node).await;
    for _ in 0..20 {
        ad(&node, &partner, "news.example", "news-top").await;
    }
    // The health is the sampler's, which reads the metrics once a second.
    let row = |page: &str, name: &str| {
        page.split("<tr")
            .find(|row| row.contains(&format!("data-bidder=\"{name}\"")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let (status, page) = node_get(&node, "/admin/exchange/bidders", &session).await;
        assert_eq!(status, 200);
        if row(&page, "gone").contains("class=\"health-down ") || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let gone_row = row(&page, "gone");
    assert!(
        gone_row.contains("class=\"health-down ") && gone_row.contains(" UTC"),
        "{gone_row}"
    );
    // "last minute: N of N calls failed (connect N)": every call, all refused.
    let said = gone_row
        .split("last minute: ")
        .nth(1)
        .and_then(|s| s.split(" calls failed").next())
        .unwrap_or_default();
    let (failed, asked) = said.split_once(" of ").unwrap_or_default();
    assert!(
        failed == asked
            && asked.parse::<u32>().is_ok_and(|n| n > 0)
            && gone_row.contains(&format!("calls failed (connect {failed})")),
        "{gone_row}"
    );
    let adv_row = row(&page, "adv");
    assert!(adv_row.contains("class=\"health-healthy "), "{adv_row}");
    // Every admin page names it at the top, in red, linking to the bidders; not the healthy one.
    for path in ["/admin", "/admin/config", "/admin/exchange/floors"] {
        let (status, page) = node_get(&node, path, &session).await;
        assert_eq!(status, 200, "{path}");
        let strip = page
            .split("<div class=\"health-strip\"")
            .nth(1)
            .and_then(|rest| rest.split("</div>").next())
            .unwrap_or_default();
        assert!(
            strip.contains("class=\"alert-down\"")
                && strip.contains("href=\"/admin/exchange/bidders\"")
                && strip.contains("Bidder gone is down: ")
                && strip.contains("calls failed (connect ")
                && !strip.contains("Bidder adv"),
            "{path}: {strip}"
        );
    }
}

#[tokio::test]
async fn a_failing_bidder_is_down_then_healthy_once_a_minute_passes_without_failures() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let failing = Arc::new(AtomicBool::new(true));
    let switch = failing.clone();
    let partner = Partner::start(move |r| {
        if switch.load(Ordering::Relaxed) {
            Reply::Status(503)
        } else {
            Reply::Json(bids(r, "adv", &[("1", 1.0)]))
        }
    })
    .await;
    let node = Node::start(&exchange_config(&partner, ""));
    let session = sign_in(&node).await;
    let health = |page: &str| {
        page.split("<tr")
            .find(|row| row.contains("data-bidder=\"adv\""))
            .and_then(|row| row.split("class=\"health-").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default()
            .to_owned()
    };
    // Auctions run until the bidders page shows `state` (or `within` passes); its last look.
    let auctions_until = |state: &'static str, within: Duration| {
        let (node, partner, session) = (&node, &partner, &session);
        async move {
            let until = Instant::now() + within;
            loop {
                ad(node, partner, "news.example", "news-top").await;
                let (_, page) = node_get(node, "/admin/exchange/bidders", session).await;
                if health(&page) == state || Instant::now() > until {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // Refusing with 503: down within seconds, the kind named.
    let page = auctions_until("down", Duration::from_secs(10)).await;
    assert_eq!(health(&page), "down", "{page}");
    assert!(page.contains("calls failed (http_status "), "{page}");
    // It answers again: healthy within the minute the state covers (sooner once the good
    // calls outnumber the failures twenty to one), and the strip no longer names it.
    failing.store(false, Ordering::Relaxed);
    let recovered_at = Instant::now();
    let page = auctions_until("healthy", Duration::from_secs(90)).await;
    assert_eq!(health(&page), "healthy", "{page}");
    let took = recovered_at.elapsed();
    assert!(
        took < Duration::from_secs(65),
        "healthy only after {took:?}"
    );
    assert!(!page.contains("health-strip"), "{page}");
}

#[tokio::test]
async fn testing_a_bidder_shows_its_answer_and_what_the_adapter_read_without_counting_it() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 1.5)]))).await;
    let node = node_with_a_refused_bidder(&partner);
    let session = sign_in(&node).await;
    let (_, page) = node_get(&node, "/admin/exchange/bidders", &session).await;
    assert!(
        page.contains("action=\"/admin/exchange/bidders/test\""),
        "{page}"
    );
    let csrf = csrf_in(&page);
    let (status, _, page) = post(
        &node,
        "/admin/exchange/bidders/test",
        &session,
        &[("csrf", &csrf), ("name", "adv")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("class=\"test-bid\"")
            && page.contains("1 bid(s).")
            && page.contains("banner on impression 1 at 1.5 USD")
            && page.contains("200 OK"),
        "{page}"
    );
    // The partner got a request marked as a test, and the page shows both sides.
    assert_eq!(partner.request_count(), 1);
    assert_eq!(partner.last_request()["test"], 1);
    assert!(
        page.contains("&#34;seatbid&#34;") && page.contains("bourse-admin-test-"),
        "{page}"
    );
    // A refused connection is named; a test call is not counted in the bidder's figures.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/bidders/test",
        &session,
        &[("csrf", &csrf), ("name", "gone")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("class=\"test-failed\"") && page.contains("The call failed (connect)"),
        "{page}"
    );
    let (_, metrics) = node_get(&node, "/metrics", "").await;
    assert!(
        metrics.contains("bourse_bidder_requests_total{bidder=\"adv\"}")
            && !metrics
                .lines()
                .any(|l| l.starts_with("bourse_bidder_requests_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Without the form's token nothing is sent.
    let (status, _, _) = post(
        &node,
        "/admin/exchange/bidders/test",
        &session,
        &[("name", "adv")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(partner.request_count(), 1);
}

#[tokio::test]
async fn the_floors_page_shows_static_and_learned_floors_and_edits_them_live() {
    let partner = Partner::start(|r| {
        // Bids spread between 1 and 3 so the learner finds a floor above the static one.
        let price = 1.0 + (rand::random::<u32>() % 200) as f64 / 100.0;
        Reply::Json(bids(r, "adv", &[("1", price)]))
    })
    .await;
    let learned = "[plugins.exchange.floors]\nenabled = true\nmin_observations = 100\nwindow = 400\n\
                   recompute_interval_ms = 50\nrecompute_every_observations = 100\n";
    let node = Node::start(&exchange_config(&partner, learned));
    let session = sign_in(&node).await;
    let (status, page) = node_get(&node, "/admin/exchange/floors", &session).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<td>learning</td>"),
        "no learned floor yet: {page}"
    );
    let csrf = csrf_in(&page);

    // Enough auctions for the learner to publish a floor for news-top.
    let deadline = Instant::now() + Duration::from_secs(30);
    let learned_floor = loop {
        for _ in 0..50 {
            ad(&node, &partner, "news.example", "news-top").await;
        }
        let value = node
            .metric("bourse_floors_learned_cpm{placement=\"news-top\"}")
            .await;
        if value > 0.0 {
            break value;
        }
        assert!(Instant::now() < deadline, "the learner published no floor");
    };
    let (_, page) = node_get(&node, "/admin/exchange/floors", &session).await;
    assert!(!page.contains("<td>learning</td>"), "{page}");
    let shown = format!("{learned_floor:.4}");
    assert!(
        page.contains(shown.trim_end_matches('0').trim_end_matches('.')),
        "the learned floor {learned_floor} is shown: {page}"
    );

    // A static floor edit applies to the next auction (unless a learned floor is higher, so
    // set it above anything learned); a negative one is refused beside its row.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/floors",
        &session,
        &[("csrf", &csrf), ("id", "news-top"), ("floor", "-1")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        field_error_after(&page, "value=\"news-top\"").is_some(),
        "{page}"
    );
    let (status, _, _) = post(
        &node,
        "/admin/exchange/floors",
        &session,
        &[("csrf", &csrf), ("id", "news-top"), ("floor", "9.5")],
    )
    .await;
    assert_eq!(status, 303);
    let sent = ad(&node, &partner, "news.example", "news-top")
        .await
        .unwrap();
    assert_eq!(sent["imp"][0]["bidfloor"], 9.5);

    // The rules: learning off shows "off", the exchange minimum applies to OpenRTB auctions.
    let (status, _, page) = post(
        &node,
        "/admin/exchange/floors/rules",
        &session,
        &[
            ("csrf", &csrf),
            ("min_floor", "cheap"),
            ("exploration_share", "0.05"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        field_error_after(&page, "name=\"min_floor\"").is_some(),
        "{page}"
    );
    let (status, _, _) = post(
        &node,
        "/admin/exchange/floors/rules",
        &session,
        &[
            ("csrf", &csrf),
            ("min_floor", "0.7"),
            ("exploration_share", "0.05"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let (_, page) = node_get(&node, "/admin/exchange/floors", &session).await;
    assert!(
        page.contains("<td>off</td>") && page.contains("value=\"0.7\""),
        "{page}"
    );
    let request = banner_request("min-floor", &[("1", 0.1)]);
    let req = http::Request::post(node.url("/openrtb2/auction"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(request.to_string())))
        .unwrap();
    let (status, _) = node.send(req).await;
    assert_eq!(status, 200);
    assert_eq!(partner.last_request()["imp"][0]["bidfloor"], 0.7);
}

#[tokio::test]
async fn turning_learned_floors_off_in_the_admin_stops_applying_them_at_the_next_auction() {
    let partner = Partner::start(|r| {
        let price = 1.0 + (rand::random::<u32>() % 200) as f64 / 100.0;
        Reply::Json(bids(r, "adv", &[("1", price)]))
    })
    .await;
    let learned = "[plugins.exchange.floors]\nenabled = true\nmin_observations = 100\nwindow = 400\n\
                   recompute_interval_ms = 50\nrecompute_every_observations = 100\n";
    let node = Node::start(&exchange_config(&partner, learned));
    let session = sign_in(&node).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node
        .metric("bourse_floors_learned_cpm{placement=\"news-top\"}")
        .await
        <= 0.5
    {
        for _ in 0..50 {
            ad(&node, &partner, "news.example", "news-top").await;
        }
        assert!(
            Instant::now() < deadline,
            "the learner published no floor above 0.5"
        );
    }
    // Learned floors apply (all but the few auctions drawn for exploration).
    let mut floors = Vec::new();
    for _ in 0..20 {
        let sent = ad(&node, &partner, "news.example", "news-top")
            .await
            .unwrap();
        floors.push(sent["imp"][0]["bidfloor"].as_f64().unwrap());
    }
    assert!(floors.iter().any(|&f| f > 0.5), "{floors:?}");

    // Off in the admin: the learn box left unticked.
    let (_, page) = node_get(&node, "/admin/exchange/floors", &session).await;
    let (status, _, _) = post(
        &node,
        "/admin/exchange/floors/rules",
        &session,
        &[
            ("csrf", &csrf_in(&page)),
            ("min_floor", "0"),
            ("exploration_share", "0.05"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    for _ in 0..20 {
        let sent = ad(&node, &partner, "news.example", "news-top")
            .await
            .unwrap();
        assert_eq!(
            sent["imp"][0]["bidfloor"], 0.5,
            "the static floor, from the very next auction"
        );
    }
}

#[tokio::test]
async fn tables_paginate_twenty_rows_a_page() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0)]))).await;
    let placements: String = (0..44)
        .map(|i| {
            format!(
                "[[plugins.exchange.placements]]\nid = \"extra-{i:02}\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\n"
            )
        })
        .collect();
    let node = Node::start(&format!("{}\n{placements}", exchange_config(&partner, "")));
    let session = sign_in(&node).await;
    let rows = |page: &str| {
        page.matches("href=\"/admin/exchange/placements/edit?id=")
            .count()
    };
    let (_, first) = node_get(&node, "/admin/exchange/placements", &session).await;
    assert_eq!(rows(&first), 20);
    assert!(
        first.contains("Page 1 of 3 (45 in all)")
            && first.contains("href=\"/admin/exchange/placements?sort=id&#38;page=2\""),
        "{first}"
    );
    let (_, last) = node_get(&node, "/admin/exchange/placements?page=3", &session).await;
    assert_eq!(rows(&last), 5);
    assert!(
        last.contains("extra-43") && !last.contains("extra-00"),
        "{last}"
    );
    let (_, beyond) = node_get(&node, "/admin/exchange/placements?page=99", &session).await;
    assert_eq!(rows(&beyond), 5, "a page past the end shows the last");
    let (_, floors) = node_get(&node, "/admin/exchange/floors?page=2", &session).await;
    assert!(floors.contains("Page 2 of 3"), "{floors}");
}

#[tokio::test]
async fn the_live_overview_reports_auction_rates_latency_and_top_bidders() {
    // Two bids in every answer: the bid rate counts answers, not bids.
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0), ("1", 1.0)]))).await;
    // First price, so every auction clears at the bid and the eCPM is known.
    let node = Node::start(&exchange_config(
        &partner,
        "[plugins.exchange.tags]\nauction_type = 1\n",
    ));
    let session = sign_in(&node).await;
    let (status, _, body) = node_request(
        &node,
        http::Method::GET,
        "/admin/exchange/live.json",
        "",
        &[],
    )
    .await;
    assert_eq!(status, 303, "anonymous callers are sent to sign in: {body}");
    // Three seconds of auctions, every one filled.
    let until = Instant::now() + Duration::from_secs(3);
    let mut sent = 0;
    while Instant::now() < until {
        ad(&node, &partner, "news.example", "news-top").await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, body) = node_request(
        &node,
        http::Method::GET,
        "/admin/exchange/live.json",
        &session,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let view: Value = serde_json::from_str(&body).unwrap();
    let points = view["points"].as_array().unwrap();
    assert!(points.len() >= 2, "{view}");
    let busy: Vec<&Value> = points
        .iter()
        .filter(|p| p["auctions_per_sec"].as_f64().unwrap() > 5.0)
        .collect();
    assert!(!busy.is_empty(), "{view}");
    for point in &busy {
        assert!(point["fill_pct"].as_f64().unwrap() > 99.0, "{point}");
        let (p50, p99) = (
            point["p50_ms"].as_f64().unwrap(),
            point["p99_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 < 1000.0, "{point}");
        assert!(
            (point["ecpm"].as_f64().unwrap() - 2.0).abs() < 0.01,
            "{point}"
        );
    }
    assert_eq!(view["auctions_total"].as_u64().unwrap(), sent);
    let top = &view["top_bidders"][0];
    assert_eq!(top["name"], "adv");
    assert!(top["wins"].as_u64().unwrap() > 0, "{top}");
    assert_eq!(top["bid_rate_pct"].as_f64(), Some(100.0), "{top}");
    // Only points newer than `after` come back.
    let newest = points.last().unwrap()["t"].as_u64().unwrap();
    let (_, _, body) = node_request(
        &node,
        http::Method::GET,
        &format!("/admin/exchange/live.json?after={newest}"),
        &session,
        &[],
    )
    .await;
    let later: Value = serde_json::from_str(&body).unwrap();
    assert!(
        later["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["t"].as_u64().unwrap() > newest)
    );
    // The overview carries the cards, the charts and the plugins; the exchange's first page
    // the same cards and charts, fed from its own live.json, whose script it serves.
    let (_, page) = node_get(&node, "/admin", &session).await;
    assert!(
        page.contains("data-chart=\"latency\"") && page.contains("<td>exchange</td>"),
        "{page}"
    );
    let (status, page) = node_get(&node, "/admin/exchange", &session).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-chart=\"latency\"")
            && page.contains("data-series-source=\"/admin/exchange/series.json?\"")
            && page.contains("src=\"/admin/static/uplot.js\"")
            && page.contains("data-live-source=\"/admin/exchange/live.json\"")
            && page.contains("src=\"/admin/exchange/static/live.js\""),
        "{page}"
    );
    let (status, script) = node_get(&node, "/admin/exchange/static/live.js", &session).await;
    assert_eq!(status, 200);
    assert!(script.contains("data-live-source"), "{script}");
}

#[tokio::test]
async fn lists_sort_search_and_filter_on_the_server_and_their_pages_keep_it() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0)]))).await;
    let placements: String = (0..44)
        .map(|i| {
            format!(
                "[[plugins.exchange.placements]]\nid = \"extra-{i:02}\"\npublisher = \"news\"\nsizes = [[300, 250]]\nfloor = {}\n\n",
                f64::from(i) / 100.0
            )
        })
        .collect();
    let node = Node::start(&format!("{}\n{placements}", exchange_config(&partner, "")));
    let session = sign_in(&node).await;
    let ids = |page: &str| -> Vec<String> {
        page.split("href=\"/admin/exchange/placements/edit?id=")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect()
    };
    // Descending by id: news-top sorts after every extra-NN.
    let (status, page) = node_get(
        &node,
        "/admin/exchange/placements?sort=id&dir=desc",
        &session,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&ids(&page)[..2], ["news-top", "extra-43"], "{page}");
    assert!(page.contains("aria-sort=\"descending\""), "{page}");
    // By floor, a number: 0.5 (news-top) sorts after 0.43, not between 0.4 and 0.41.
    let (_, page) = node_get(
        &node,
        "/admin/exchange/placements?sort=floor&dir=desc",
        &session,
    )
    .await;
    assert_eq!(&ids(&page)[..2], ["news-top", "extra-43"], "{page}");
    // A search narrows the list and every page link keeps the sort, order and search.
    let (_, page) = node_get(
        &node,
        "/admin/exchange/placements?sort=id&dir=desc&q=EXTRA",
        &session,
    )
    .await;
    assert_eq!(ids(&page)[0], "extra-43");
    assert!(
        page.contains("44 of 45 placements match")
            && page.contains(
                "href=\"/admin/exchange/placements?sort=id&#38;dir=desc&#38;q=EXTRA&#38;page=2\""
            ),
        "{page}"
    );
    let (_, second) = node_get(
        &node,
        "/admin/exchange/placements?sort=id&dir=desc&q=EXTRA&page=2",
        &session,
    )
    .await;
    assert_eq!(ids(&second)[0], "extra-23", "{second}");
    // The headers sort by their column, keeping the search.
    assert!(
        second.contains("href=\"/admin/exchange/placements?sort=floor&#38;q=EXTRA\""),
        "{second}"
    );
    // The state filter: nothing is disabled.
    let (_, page) = node_get(&node, "/admin/exchange/placements?state=disabled", &session).await;
    assert!(
        ids(&page).is_empty() && page.contains("No placement matches."),
        "{page}"
    );
    // Bad query values fall back to the defaults; none fails the page.
    for query in [
        "sort=&dir=&page=&q=",
        "sort=%00%3Cscript%3E&dir=up&page=-3",
        "page=99999999999999999999999&state=%FF",
        "q=%E2%28%A1",
    ] {
        for list in ["placements", "publishers", "bidders"] {
            let (status, page) =
                node_get(&node, &format!("/admin/exchange/{list}?{query}"), &session).await;
            assert_eq!(status, 200, "{list}?{query}: {page}");
            assert!(!page.contains("<script>"), "{list}?{query}");
        }
    }
}

#[tokio::test]
async fn a_failing_bidder_has_its_own_page_and_the_lists_filter_and_sort_by_health() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 1.0)]))).await;
    let node = node_with_a_refused_bidder(&partner);
    let session = sign_in(&node).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let down = loop {
        ad(&node, &partner, "news.example", "news-top").await;
        let (_, page) = node_get(&node, "/admin/exchange/bidders?state=down", &session).await;
        if page.contains("data-bidder=\"gone\"") || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        down.contains("data-bidder=\"gone\"") && !down.contains("data-bidder=\"adv\""),
        "only the down bidder: {down}"
    );
    // Worst health first, and most errors first.
    for query in ["sort=health", "sort=errors&dir=desc"] {
        let (_, page) =
            node_get(&node, &format!("/admin/exchange/bidders?{query}"), &session).await;
        let first = page.split("data-bidder=\"").nth(1).unwrap_or_default();
        assert!(first.starts_with("gone\""), "{query}: {page}");
    }
    // Its page: down in red's class, since when, the connect failures counted by kind.
    let (status, page) = node_get(&node, "/admin/exchange/bidders/view?name=gone", &session).await;
    assert_eq!(status, 200);
    let health = page.split("data-bidder-health>").nth(1).unwrap_or_default();
    assert!(
        page.contains("class=\"health-down\" data-bidder-health")
            && health.starts_with("down since ")
            && health.contains(" UTC"),
        "{page}"
    );
    let connect = page
        .split("<th scope=\"row\">connect</th><td>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_default();
    assert!(connect > 0, "{page}");
    assert!(
        page.contains("data-series-source=\"/admin/exchange/series.json?bidder=gone\"")
            && page.contains("<th scope=\"row\">Errors: connect</th>"),
        "{page}"
    );
    let (status, _) = node_get(&node, "/admin/exchange/bidders/view?name=nobody", &session).await;
    assert_eq!(status, 404);

    // Its series: every call failed, by connect.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = node_get(
        &node,
        "/admin/exchange/series.json?bidder=gone&range=15m",
        &session,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    let figure = |totals: &Value, name: &str| {
        totals
            .as_array()
            .and_then(|all| all.iter().find(|f| f[0] == name))
            .and_then(|f| f[1].as_f64())
    };
    let (requests, connect) = (
        figure(&view["totals"], "requests"),
        figure(&view["totals"], "errors_connect"),
    );
    assert!(
        requests.is_some_and(|n| n > 0.0) && requests == connect,
        "{view}"
    );
    assert_eq!(figure(&view["totals"], "failed_pct"), Some(100.0), "{view}");
    assert_eq!(view["step_secs"], 1);
    assert_eq!(
        view["current"]["t"].as_array().unwrap().len(),
        view["current"]["failed_pct"].as_array().unwrap().len()
    );
    // A week, compared with the one before: by 15 minutes, saying the data starts at the node's
    // start; the previous period on the same time axis.
    let (_, body) = node_get(
        &node,
        "/admin/exchange/series.json?range=7d&compare=1",
        &session,
    )
    .await;
    let week: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(week["step_secs"], 900, "{week}");
    let note = week["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("Data since ") && note.ends_with(" UTC (node start)."),
        "{week}"
    );
    assert!(
        week["previous"]["t"].is_array() && week["previous_totals"].is_array(),
        "{week}"
    );
    // Unknown ranges are 15 minutes; unknown names are not found.
    let (_, body) = node_get(
        &node,
        "/admin/exchange/series.json?range=1y&compare=yes",
        &session,
    )
    .await;
    let fallback: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (fallback["range"].as_str(), fallback["previous"].is_null()),
        (Some("15m"), true)
    );
    for query in ["bidder=nobody", "publisher=nobody", "placement=nobody"] {
        let (status, _) = node_get(
            &node,
            &format!("/admin/exchange/series.json?{query}"),
            &session,
        )
        .await;
        assert_eq!(status, 404, "{query}");
    }
    // The live page without script: the range's figures as a table, the note, the picker.
    let (_, page) = node_get(&node, "/admin/exchange?range=24h&compare=1", &session).await;
    assert!(
        page.contains("<th scope=\"row\">Fill rate</th>")
            && page.contains("<th>Previous period</th>")
            && page.contains("UTC (node start).")
            && page.contains("href=\"/admin/exchange?range=7d&#38;compare=1\"")
            && page.contains("aria-current=\"true\">24 hours</a>"),
        "{page}"
    );
}

#[tokio::test]
async fn publishers_and_placements_show_what_they_billed_and_say_what_is_not_broken_down() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 2.0)]))).await;
    let node = Node::start(&exchange_config(&partner, ""));
    let session = sign_in(&node).await;
    let (status, list) = node_get(&node, "/admin/exchange/publishers", &session).await;
    assert_eq!(status, 200);
    assert!(
        list.contains("href=\"/admin/exchange/publishers/view?id=news\""),
        "{list}"
    );
    for (path, heading) in [
        ("/admin/exchange/publishers/view?id=news", "Publisher news"),
        (
            "/admin/exchange/placements/view?id=news-top",
            "Placement news-top",
        ),
    ] {
        let (status, page) = node_get(&node, path, &session).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            page.contains(&format!("<h1>{heading}</h1>"))
                && page.contains("not per publisher or placement")
                && page.contains("<th>Net to seller</th>")
                && page.contains("<td data-label=\"Static floor\">0.5</td>")
                && page.contains("data-chart=\"billed\""),
            "{path}: {page}"
        );
    }
    for path in [
        "/admin/exchange/publishers/view?id=nobody",
        "/admin/exchange/placements/view?id=nobody",
        "/admin/exchange/placements/view",
    ] {
        let (status, _) = node_get(&node, path, &session).await;
        assert_eq!(status, 404, "{path}");
    }
}
