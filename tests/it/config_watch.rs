//! Editing the config file of a running `bourse serve` applies the change live, including an
//! editor's write-to-temp-then-rename; an invalid edit is refused with its line and the running
//! config keeps serving.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use std::time::{Duration, Instant};

fn config_with_floor(partner: &Partner, floor: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"text\"\nlevel = \"info\"\n\n\
         [plugins.exchange]\nnotice_secret = \"watch-secret\"\npublic_url = \"http://bourse.test\"\n\n\
         [[plugins.exchange.publishers]]\nid = \"news\"\n\n\
         [[plugins.exchange.placements]]\nid = \"news-top\"\npublisher = \"news\"\nsizes = [[300, 250]]\n\
         floor = {floor}\n\n\
         [[plugins.exchange.bidders]]\nname = \"adv\"\nendpoint = \"{}\"\nnotice_allowed_hosts = [\"127.0.0.1\"]\n",
        partner.endpoint()
    )
}

async fn wait_for_floor(node: &Node, partner: &Partner, want: f64) -> Duration {
    let started = Instant::now();
    let mut seen = 0.0;
    while started.elapsed() < Duration::from_secs(10) {
        seen = floor_seen(node, partner).await;
        if seen == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("floor {seen} after 10 s, expected {want}");
}

#[tokio::test]
async fn saved_edits_apply_live_and_bad_ones_are_refused_with_their_line() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let node = Node::start(&config_with_floor(&partner, "0.5"));
    assert_eq!(floor_seen(&node, &partner).await, 0.5);

    // An in-place write.
    std::fs::write(&node.config_path, config_with_floor(&partner, "1.25")).unwrap();
    let took = wait_for_floor(&node, &partner, 1.25).await;
    eprintln!("in-place edit applied after {took:?}");

    // Write-to-temp-then-rename, as editors save.
    save_by_rename(&node.config_path, &config_with_floor(&partner, "2.5"));
    let took = wait_for_floor(&node, &partner, 2.5).await;
    eprintln!("renamed edit applied after {took:?}");

    // An invalid edit: refused, named by line, and the running config keeps serving.
    let bad = config_with_floor(&partner, "\"high\"");
    let bad_line = bad.lines().position(|l| l.starts_with("floor = ")).unwrap() + 1;
    save_by_rename(&node.config_path, &bad);
    let started = Instant::now();
    let mut refused = false;
    while started.elapsed() < Duration::from_secs(10) {
        if node
            .metric("bourse_kernel_config_applies_total{result=\"error\"}")
            .await
            >= 1.0
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the bad edit was not refused: {}", node.stderr());
    let logged = node.stderr();
    assert!(
        logged.contains(&format!("bourse.toml:{bad_line}:")),
        "the refusal names line {bad_line}: {logged}"
    );
    assert_eq!(
        floor_seen(&node, &partner).await,
        2.5,
        "old config still serves"
    );

    // Fixing the file applies again.
    save_by_rename(&node.config_path, &config_with_floor(&partner, "0.75"));
    wait_for_floor(&node, &partner, 0.75).await;
}

#[tokio::test]
async fn every_applied_change_is_audited_and_can_be_rolled_back() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let with_audit = |floor: &str| {
        config_with_floor(&partner, floor).replacen(
            "[server]\n",
            "[server]\naudit_log = \"audit.jsonl\"\n",
            1,
        )
    };
    let node = Node::start(&with_audit("0.5"));
    let audit = node.config_path.with_file_name("audit.jsonl");
    save_by_rename(&node.config_path, &with_audit("1.5"));
    wait_for_floor(&node, &partner, 1.5).await;

    let entries = bourse_kernel::read_audit_file(&audit).unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!((entries[0].seq, entries[0].who.as_str()), (1, "startup"));
    assert_eq!(
        (entries[1].seq, entries[1].who.as_str()),
        (2, "file change")
    );
    assert!(
        entries[1].diff.contains("-floor = 0.5"),
        "{}",
        entries[1].diff
    );
    assert!(
        entries[1].diff.contains("+floor = 1.5"),
        "{}",
        entries[1].diff
    );

    let bourse = env!("CARGO_BIN_EXE_bourse");
    let history = std::process::Command::new(bourse)
        .args(["config", "history", "--audit-log"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(history.status.success());
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(
        history.contains("#2 at") && history.contains("by file change"),
        "{history}"
    );

    // Rolling back to #1 rewrites the file; the running node applies it and audits it as #3.
    let rollback = std::process::Command::new(bourse)
        .args(["config", "rollback", "1", "--audit-log"])
        .arg(&audit)
        .arg("--config")
        .arg(&node.config_path)
        .output()
        .unwrap();
    assert!(
        rollback.status.success(),
        "{}",
        String::from_utf8_lossy(&rollback.stderr)
    );
    wait_for_floor(&node, &partner, 0.5).await;
    let entries = bourse_kernel::read_audit_file(&audit).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].text, entries[0].text);
    // An entry that does not exist is refused and leaves the file alone.
    let missing = std::process::Command::new(bourse)
        .args(["config", "rollback", "42", "--audit-log"])
        .arg(&audit)
        .arg("--config")
        .arg(&node.config_path)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no entry #42"));
}

/// The `name=value` of a `Set-Cookie` header in `headers`.
#[tokio::test]
async fn the_admin_shows_the_history_and_rolls_back_live() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let admin = admin_section();
    let with_admin = |floor: &str| format!("{}{admin}", config_with_floor(&partner, floor));
    let node = Node::start(&with_admin("0.5"));
    save_by_rename(&node.config_path, &with_admin("1.5"));
    wait_for_floor(&node, &partner, 1.5).await;

    let session = sign_in(&node).await;

    // The history lists both configs, the change's diff, and a rollback form for #1.
    let (status, _, page) =
        node_request(&node, http::Method::GET, "/admin/config", &session, &[]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("file change") && page.contains("startup"),
        "{page}"
    );
    assert!(
        page.contains("-floor = 0.5") && page.contains("+floor = 1.5"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/admin/config/rollback?seq=1\">Roll back to #1…"),
        "{page}"
    );
    let csrf = csrf_in(&page);

    // The rollback is previewed first: what it changes, over which config, nothing applied.
    let (status, preview) = node_get(&node, "/admin/config/rollback?seq=1", &session).await;
    assert_eq!(status, 200);
    assert!(
        preview.contains("Roll back to #1?")
            && preview.contains("in place of #2")
            && preview.contains("-floor = 1.5")
            && preview.contains("+floor = 0.5")
            && preview.contains("name=\"based_on\" value=\"2\""),
        "{preview}"
    );
    assert_eq!(floor_seen(&node, &partner).await, 1.5);
    // Without the CSRF token nothing happens.
    let (status, _, _) = post_rollback(&node, &session, &[("seq", "1")]).await;
    assert_eq!(status, 403);
    // Without the confirmation, back to the preview; over a config no longer in force, refused
    // with the preview shown again.
    let unconfirmed = [("csrf", csrf.as_str()), ("seq", "1"), ("based_on", "2")];
    let (status, headers, _) = post_rollback(&node, &session, &unconfirmed).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/config/rollback?seq=1");
    let stale = [
        ("csrf", csrf.as_str()),
        ("seq", "1"),
        ("based_on", "1"),
        ("confirm", "yes"),
    ];
    let (status, _, page) = post_rollback(&node, &session, &stale).await;
    assert_eq!(status, 409);
    assert!(
        page.contains("The config changed since this preview"),
        "{page}"
    );
    assert_eq!(floor_seen(&node, &partner).await, 1.5);

    // Confirmed over the config previewed: #1 is in force at once, on disk too, the history
    // records it as a rollback by its operator, and the page says it worked.
    let confirmed = [
        ("csrf", csrf.as_str()),
        ("seq", "1"),
        ("based_on", "2"),
        ("confirm", "yes"),
    ];
    let (status, headers, _) = post_rollback(&node, &session, &confirmed).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/config?rolled_back=1");
    assert_eq!(
        floor_seen(&node, &partner).await,
        0.5,
        "applied before the answer"
    );
    assert!(
        std::fs::read_to_string(&node.config_path)
            .unwrap()
            .contains("floor = 0.5")
    );
    let (_, page) = node_get(&node, "/admin/config?rolled_back=1", &session).await;
    assert!(
        page.contains("rollback to #1 by admin:ops")
            && page.contains("Rolled back to #1: its config is in force, recorded as #3."),
        "{page}"
    );
    // A link naming a number the history does not hold says nothing.
    let (_, page) = node_get(&node, "/admin/config?rolled_back=99", &session).await;
    assert!(!page.contains("Rolled back"), "{page}");
}

/// Posts the rollback form with `fields`.
async fn post_rollback(
    node: &Node,
    session: &str,
    fields: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    node_request(
        node,
        http::Method::POST,
        "/admin/config/rollback",
        session,
        fields,
    )
    .await
}

#[tokio::test]
async fn a_placement_created_in_the_admin_serves_the_next_auction() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let text = format!("{}{}", config_with_floor(&partner, "0.5"), admin_section());
    let node = Node::start(&text);
    let session = sign_in(&node).await;
    let (status, _, page) = node_request(
        &node,
        http::Method::GET,
        "/admin/exchange/placements",
        &session,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        page.contains("data-placement=&#34;news-top&#34;"),
        "snippet shown: {page}"
    );
    let csrf = csrf_in(&page);

    // Field errors come back inline, and nothing changes.
    for (sizes, floor, message) in [
        ("banner", "1", "Write sizes as 300x250,728x90."),
        ("300x250", "cheap", "The floor is a number"),
        ("300x250", "-1", "floor"),
    ] {
        let (status, _, page) = node_request(
            &node,
            http::Method::POST,
            "/admin/exchange/placements",
            &session,
            &[
                ("csrf", &csrf),
                ("id", "news-side"),
                ("publisher", "news"),
                ("sizes", sizes),
                ("floor", floor),
            ],
        )
        .await;
        assert_eq!(status, 422, "{sizes} {floor}");
        assert!(page.contains(message), "{message}: {page}");
        // Shown beside the field it concerns (before the next field's label), not only
        // somewhere on the page, whose labels say "floor" anyway.
        let field = if sizes == "banner" { "sizes" } else { "floor" };
        let after_input = &page[page.find(&format!("name=\"{field}\"")).unwrap()..];
        let next_label = after_input.find("<label").unwrap_or(after_input.len());
        let error_at = after_input
            .find("class=\"field-error\"")
            .unwrap_or_else(|| panic!("no field error after {field}: {page}"));
        assert!(error_at < next_label, "{message} beside {field}: {page}");
        assert!(
            page.contains("value=\"news-side\""),
            "the form keeps what was typed"
        );
    }

    let (status, _, _) = node_request(
        &node,
        http::Method::POST,
        "/admin/exchange/placements",
        &session,
        &[
            ("csrf", &csrf),
            ("id", "news-side"),
            ("publisher", "news"),
            ("sizes", "300x250"),
            ("floor", "0.9"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    // The very next auction for it runs at its floor.
    let body =
        json!({"page": "https://news.example/", "slots": [{"id": "s", "placement": "news-side"}]});
    let req = http::Request::post(node.url("/ad"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _) = node.send(req).await;
    assert_eq!(status, 200);
    assert_eq!(partner.last_request()["imp"][0]["tagid"], "news-side");
    assert_eq!(partner.last_request()["imp"][0]["bidfloor"], 0.9);
    assert!(
        std::fs::read_to_string(&node.config_path)
            .unwrap()
            .contains("news-side")
    );
}

#[tokio::test]
async fn a_bidder_added_in_the_admin_bids_in_the_next_auction() {
    let partner = Partner::start(|r| Reply::Json(bids(r, "adv", &[("1", 5.0)]))).await;
    let second = Partner::start(|r| Reply::Json(bids(r, "second", &[("1", 6.0)]))).await;
    let text = format!("{}{}", config_with_floor(&partner, "0.5"), admin_section());
    let node = Node::start(&text);
    floor_seen(&node, &partner).await;
    let session = sign_in(&node).await;
    let (status, _, page) = node_request(
        &node,
        http::Method::GET,
        "/admin/exchange/bidders",
        &session,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("<tr data-bidder=\"adv\">"), "{page}");
    let csrf = csrf_in(&page);

    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/exchange/bidders",
        &session,
        &[
            ("csrf", &csrf),
            ("name", "second"),
            ("endpoint", "not a url"),
            ("media", "banner"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        page.contains("endpoint"),
        "the refusal names the field: {page}"
    );

    let endpoint = second.endpoint();
    let (status, _, _) = node_request(
        &node,
        http::Method::POST,
        "/admin/exchange/bidders",
        &session,
        &[
            ("csrf", &csrf),
            ("name", "second"),
            ("endpoint", &endpoint),
            ("media", "banner"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(second.request_count(), 0);
    floor_seen(&node, &partner).await;
    assert_eq!(
        second.request_count(),
        1,
        "the new bidder is asked in the next auction"
    );
}
