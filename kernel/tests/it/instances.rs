//! Plugin instances as equals: added and removed by a config apply, mounted by host name or
//! path, several instances of one kind, state that outlives generations, config prepared once
//! per load, and typed refusals from the config center.

use std::sync::atomic::Ordering;

use bourse_kernel::ApplyReport;
use bytes::Bytes;
use http_body_util::Full;

use crate::support::{BASE, Probe, client, get, kernel, send, start, within};

const GAMMA: &str =
    "\n[plugins.gamma]\nkind = \"alpha\"\nmount = { paths = [\"/g/\"] }\nreply = \"G\"\n";

#[tokio::test]
async fn a_new_table_starts_an_instance_and_a_removed_one_drains_and_stops_it() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());
    assert_eq!(get(&client, addr, "/g/x").await.0, 404);

    let with_gamma = format!("{BASE}{GAMMA}");
    let report = running
        .apply(running.load_config_str(&with_gamma, "g.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(
        report,
        ApplyReport {
            added: vec!["gamma".into()],
            unchanged: vec!["alpha".into(), "beta".into()],
            ..ApplyReport::default()
        }
    );
    let (status, body) = get(&client, addr, "/g/x").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "gamma gen1 G /g/x"));
    // Another instance of the same kind leaves the first alone.
    assert_eq!(get(&client, addr, "/x/a").await.1, "alpha gen1 A /x/a");
    let names: Vec<String> = running
        .plugins()
        .list()
        .iter()
        .map(|p| format!("{}:{}", p.name, p.kind))
        .collect();
    assert_eq!(names, ["alpha:alpha", "beta:beta", "gamma:alpha"]);

    let report = running
        .apply(running.load_config_str(BASE, "b.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(report.removed, ["gamma"]);
    assert_eq!(get(&client, addr, "/g/x").await.0, 404);
    let events = probe.wait_for("ended gamma").await;
    let position = |event: &str| {
        events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("no {event:?} in {events:?}"))
    };
    // Drained, then its state stopped (having served the one request), then its lifetime ends.
    assert!(position("drain gamma gen1") < position("stop gamma after 1"));
    assert!(position("stop gamma after 1") < position("ended gamma"));
    let metrics = get(&client, addr, "/metrics").await.1;
    assert!(
        !metrics.contains("bourse_kernel_plugin_inflight{plugin=\"gamma\"}"),
        "{metrics}"
    );
    running.shutdown().await;
    // Every instance is stopped at shutdown.
    let events = probe.events();
    assert!(
        events.iter().any(|e| e.starts_with("stop alpha after")),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e == "ended beta"), "{events:?}");
}

#[tokio::test]
async fn a_host_mounted_instance_answers_only_for_its_host() {
    let probe = Probe::new();
    let text = format!(
        "{BASE}\n[plugins.shop]\nkind = \"alpha\"\nmount = {{ hosts = [\"shop.example.com\"] }}\nreply = \"S\"\n\
         \n[plugins.wild]\nkind = \"alpha\"\nmount = {{ hosts = [\"*.example.org\"], paths = [\"/w/\"] }}\nreply = \"W\"\n"
    );
    let running = start(&probe, &text).await;
    let (addr, client) = (running.local_addr(), client());
    let with_host = |host: &'static str, path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .header("host", host)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    // Any path of its host, the port ignored, whatever the case.
    let (status, body) = send(&client, with_host("Shop.Example.com:8080", "/x/a")).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "shop gen1 S /x/a"));
    let (_, body) = send(&client, with_host("shop.example.com", "/anything")).await;
    assert_eq!(body, "shop gen1 S /anything");
    // Another host gets the path-mounted instances, or nothing.
    let (_, body) = send(&client, with_host("other.example.com", "/x/a")).await;
    assert_eq!(body, "alpha gen1 A /x/a");
    assert_eq!(
        send(&client, with_host("other.example.com", "/anything"))
            .await
            .0,
        404
    );
    // A wildcard host matches subdomains, on its path only.
    let (_, body) = send(&client, with_host("a.example.org", "/w/1")).await;
    assert_eq!(body, "wild gen1 W /w/1");
    assert_eq!(send(&client, with_host("example.org", "/w/1")).await.0, 404);
    assert_eq!(
        send(&client, with_host("a.example.org", "/v/1")).await.0,
        404
    );
    // The plugin learns which prefix mounted the request.
    let (_, body) = send(&client, with_host("shop.example.com", "/x/state")).await;
    assert!(body.ends_with("mounted=Some(\"/\")"), "{body}");
    let (_, body) = get(&client, addr, "/x/y/state").await;
    assert!(body.ends_with("mounted=Some(\"/x/y/\")"), "{body}");
    running.shutdown().await;
}

#[tokio::test]
async fn state_outlives_generations_and_takes_config_only_when_the_apply_commits() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());
    for _ in 0..3 {
        get(&client, addr, "/x/a").await;
    }
    let (_, body) = get(&client, addr, "/x/state").await;
    assert_eq!(
        body,
        "alpha gen1 served=4 committed=A mounted=Some(\"/x/\")"
    );

    // An apply that fails (beta cannot start) changes nothing, not even alpha's state.
    let failing = BASE
        .replace("reply = \"A\"", "reply = \"A2\"")
        .replace("reply = \"B\"", "reply = \"B\"\nfail_start = true");
    let error = running
        .apply(running.load_config_str(&failing, "f.toml").unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("plugin beta failed to start"),
        "{error}"
    );
    let (_, body) = get(&client, addr, "/x/state").await;
    assert_eq!(
        body,
        "alpha gen1 served=5 committed=A mounted=Some(\"/x/\")"
    );

    // One that commits gives the new generation the same state, with the new config in it.
    running
        .apply(
            running
                .load_config_str(&BASE.replace("reply = \"A\"", "reply = \"A3\""), "c.toml")
                .unwrap(),
        )
        .await
        .unwrap();
    let (_, body) = get(&client, addr, "/x/state").await;
    assert_eq!(
        body,
        "alpha gen2 served=6 committed=A3 mounted=Some(\"/x/\")"
    );
    let events = probe.events();
    assert_eq!(
        events.iter().filter(|e| *e == "init alpha").count(),
        1,
        "{events:?}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn config_is_prepared_once_per_load_and_not_again_to_start() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    assert_eq!(
        probe.prepares.load(Ordering::SeqCst),
        2,
        "alpha and beta at start"
    );
    let config = running
        .load_config_str(&BASE.replace("reply = \"A\"", "reply = \"A2\""), "p.toml")
        .unwrap();
    assert_eq!(probe.prepares.load(Ordering::SeqCst), 4);
    running.apply(config).await.unwrap();
    assert_eq!(
        probe.prepares.load(Ordering::SeqCst),
        4,
        "apply prepared nothing again"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_config_center_edit_applies_or_comes_back_refused_with_its_place() {
    let probe = Probe::new();
    let running = std::sync::Arc::new(start(&probe, BASE).await);
    let serving = running.clone();
    let center = tokio::spawn(async move { serving.serve_config_center().await });
    let (addr, client) = (running.local_addr(), client());

    let (status, body) = get(&client, addr, "/x/set-reply/edited").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "applied"));
    assert_eq!(get(&client, addr, "/x/a").await.1, "alpha gen2 edited /x/a");
    let history = running.history().await;
    assert_eq!(history.last().unwrap().who, "test");
    assert!(history.last().unwrap().text.contains("reply = \"edited\""));

    let (status, body) = get(&client, addr, "/x/set-reply/bad").await;
    assert_eq!(status.as_u16(), 422);
    assert!(
        body.starts_with("plugins.alpha.bidders[0].endpoint @"),
        "{body}"
    );
    assert_eq!(get(&client, addr, "/x/a").await.1, "alpha gen2 edited /x/a");
    center.abort();
}

fn refused(text: &str) -> Vec<(String, String)> {
    let probe = Probe::new();
    match kernel(&probe).load_config_str(text, "t.toml") {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(errors) => errors.0.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn instance_tables_are_checked_where_they_are_written() {
    let clash = refused(&format!(
        "{BASE}\n[plugins.twin]\nkind = \"alpha\"\nmount = {{ paths = [\"/x/\"] }}\n"
    ));
    assert_eq!(clash.len(), 1, "{clash:?}");
    assert_eq!(clash[0].0, "plugins.twin.mount");
    assert!(
        clash[0].1.contains("already mounted by plugin `alpha`"),
        "{clash:?}"
    );

    let unknown = refused("[plugins.delta]\nreply = \"D\"\n");
    assert_eq!(unknown[0].0, "plugins.delta");
    assert!(
        unknown[0].1.contains("registered kinds: `alpha`, `beta`"),
        "{unknown:?}"
    );

    let bad_kind = refused("[plugins.delta]\nkind = \"omega\"\n");
    assert_eq!(bad_kind[0].0, "plugins.delta.kind");

    let bad_name = refused("[plugins.Big]\nkind = \"alpha\"\n");
    assert_eq!(bad_name[0].0, "plugins.Big");
    assert!(bad_name[0].1.contains("a-z"), "{bad_name:?}");

    let bad_mount =
        refused("[plugins.alpha]\nmount = { paths = [\"x\"], hosts = [\"https://a.b\"] }\n");
    let paths: Vec<&str> = bad_mount.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "plugins.alpha.mount.paths[0]",
            "plugins.alpha.mount.hosts[0]"
        ]
    );

    let typo = refused("[plugins.alpha]\nmount = { path = [\"/a/\"] }\n");
    assert_eq!(typo[0].0, "plugins.alpha.mount.path");
    assert!(typo[0].1.contains("unknown field `path`"), "{typo:?}");
}

#[tokio::test]
async fn changing_an_instance_kind_replaces_it() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());
    let as_beta = BASE.replace(
        "[plugins.alpha]\nreply = \"A\"",
        "[plugins.alpha]\nkind = \"beta\"\nmount = { paths = [\"/x/\"] }\nreply = \"A\"",
    );
    let report = running
        .apply(running.load_config_str(&as_beta, "k.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (report.added.as_slice(), report.removed.as_slice()),
        (
            ["alpha".to_owned()].as_slice(),
            ["alpha".to_owned()].as_slice()
        )
    );
    within(probe.wait_for("ended alpha")).await;
    // The new instance starts from fresh state.
    let (_, body) = get(&client, addr, "/x/state").await;
    assert_eq!(
        body,
        "alpha gen1 served=1 committed=A mounted=Some(\"/x/\")"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn an_extension_takes_its_table_live_and_can_refuse_an_apply() {
    let probe = Probe::new();
    let running = start(&probe, &format!("{BASE}\n[greeting]\ntext = \"hi\"\n")).await;
    let (addr, client) = (running.local_addr(), client());
    assert_eq!(get(&client, addr, "/x/greeting").await.1, "Some(\"hi\")");

    let report = running
        .apply(
            running
                .load_config_str(&format!("{BASE}\n[greeting]\ntext = \"hello\"\n"), "g.toml")
                .unwrap(),
        )
        .await
        .unwrap();
    // The shared component changed in place: no plugin restarted for it.
    assert_eq!(report.unchanged, ["alpha", "beta"]);
    assert_eq!(get(&client, addr, "/x/greeting").await.1, "Some(\"hello\")");

    // Refused by the extension: nothing changes, plugins included.
    let refused = format!(
        "{}\n[greeting]\ntext = \"refuse\"\n",
        BASE.replace("reply = \"A\"", "reply = \"A2\"")
    );
    let error = running
        .apply(running.load_config_str(&refused, "r.toml").unwrap())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("[greeting]: told to refuse"),
        "{error}"
    );
    assert_eq!(get(&client, addr, "/x/greeting").await.1, "Some(\"hello\")");
    assert_eq!(get(&client, addr, "/x/a").await.1, "alpha gen1 A /x/a");

    // Checked where it is written; an absent table is the default.
    let errors = running
        .load_config_str(
            "[greeting]\ntext = \"far too long for a greeting\"\n",
            "c.toml",
        )
        .unwrap_err();
    assert_eq!(errors.0[0].path, "greeting.text");
    let unknown = running
        .load_config_str("[greetings]\n", "u.toml")
        .unwrap_err();
    assert!(unknown.0[0].message.contains("`greeting`"), "{unknown}");
    running.shutdown().await;
}
