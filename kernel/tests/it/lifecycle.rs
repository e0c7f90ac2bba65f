//! Live apply, draining, reload and graceful shutdown.

use std::time::{Duration, Instant};

use bourse_kernel::ApplyReport;

use crate::support::{BASE, Probe, client, free_port, get, start, within};

fn with_alpha_reply(reply: &str) -> String {
    BASE.replace("reply = \"A\"", &format!("reply = \"{reply}\""))
}

#[tokio::test]
async fn live_apply_keeps_old_requests_on_their_generation_and_drains_after_them() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());

    let slow: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, addr, "/x/slow").await })
        })
        .collect();
    probe.wait_entered(4).await;

    let report = running
        .apply(
            running
                .load_config_str(&with_alpha_reply("A2"), "b.toml")
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        report,
        ApplyReport {
            restarted: vec!["alpha".into()],
            unchanged: vec!["beta".into()],
            ..ApplyReport::default()
        }
    );

    // New requests are answered by generation 2 while generation 1 still holds four.
    for _ in 0..3 {
        let (status, body) = get(&client, addr, "/x/new").await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "alpha gen2 A2 /x/new")
        );
    }
    assert!(
        !probe.events().iter().any(|e| e == "drain alpha gen1"),
        "{:?}",
        probe.events()
    );
    let metrics = get(&client, addr, "/metrics").await.1;
    for line in [
        r#"bourse_kernel_plugin_generation{plugin="alpha"} 2"#,
        r#"bourse_kernel_plugin_state{plugin="alpha",state="draining"} 1"#,
        r#"bourse_kernel_plugin_state{plugin="alpha",state="active"} 1"#,
        r#"bourse_kernel_plugin_inflight{plugin="alpha"} 4"#,
        r#"bourse_kernel_config_applies_total{result="ok"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }

    probe.release_slow();
    for request in slow {
        let (status, body) = request.await.unwrap();
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, "alpha gen1 A /x/slow")
        );
    }
    let events = probe.wait_for("cancelled alpha gen1").await;
    let position = |event: &str| events.iter().position(|e| e == event).unwrap();
    let last_done = events.iter().rposition(|e| e == "done alpha gen1").unwrap();
    assert_eq!(events.iter().filter(|e| *e == "done alpha gen1").count(), 4);
    assert!(last_done < position("drain alpha gen1"), "{events:?}");
    assert!(
        position("drain alpha gen1") < position("cancelled alpha gen1"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.contains("beta gen2") || e == "drain beta gen1"),
        "{events:?}"
    );

    let metrics = get(&client, addr, "/metrics").await.1;
    assert!(
        metrics.contains(r#"bourse_kernel_plugin_state{plugin="alpha",state="draining"} 0"#),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn drain_deadline_is_honoured_when_a_request_never_finishes() {
    let probe = Probe::new();
    let config = BASE.replace("drain_deadline_ms = 30000", "drain_deadline_ms = 300");
    let running = start(&probe, &config).await;
    let (addr, client) = (running.local_addr(), client());
    let stuck = tokio::spawn({
        let client = client.clone();
        async move { get(&client, addr, "/x/hang").await }
    });
    probe.wait_entered(1).await;

    let applied = Instant::now();
    let next = config.replace("reply = \"A\"", "reply = \"A2\"");
    running
        .apply(running.load_config_str(&next, "b.toml").unwrap())
        .await
        .unwrap();
    probe.wait_for("drain alpha gen1").await;
    let waited = applied.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "drained after {waited:?}, before the deadline"
    );
    assert!(
        !stuck.is_finished(),
        "the stuck request cannot have completed"
    );
    assert_eq!(get(&client, addr, "/x/q").await.1, "alpha gen2 A2 /x/q");
    stuck.abort();
    running.shutdown().await;
}

#[tokio::test]
async fn unchanged_plugin_tables_are_not_restarted() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    assert_eq!(probe.starts.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Same tables, reformatted and with a server change only.
    let same = BASE
        .replace("reply = \"B\"", "reply   =   \"B\"   # same")
        .replace("30000", "20000");
    let report = running
        .apply(running.load_config_str(&same, "same.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(report.restarted, Vec::<String>::new());
    assert_eq!(
        report.unchanged,
        vec!["alpha".to_owned(), "beta".to_owned()]
    );
    assert_eq!(probe.starts.load(std::sync::atomic::Ordering::SeqCst), 2);

    let beta_changed = BASE.replace("reply = \"B\"", "reply = \"B2\"");
    let report = running
        .apply(running.load_config_str(&beta_changed, "b.toml").unwrap())
        .await
        .unwrap();
    assert_eq!(report.restarted, vec!["beta".to_owned()]);
    assert_eq!(report.unchanged, vec!["alpha".to_owned()]);
    assert_eq!(probe.starts.load(std::sync::atomic::Ordering::SeqCst), 3);
    let client = client();
    assert_eq!(
        get(&client, running.local_addr(), "/x/a").await.1,
        "alpha gen1 A /x/a"
    );
    assert_eq!(
        get(&client, running.local_addr(), "/x/y/b").await.1,
        "beta gen2 B2 /x/y/b"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn failed_start_keeps_every_old_generation_serving() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    // beta would restart fine, alpha fails: neither may be swapped in.
    let next = BASE
        .replace("reply = \"A\"", "reply = \"A2\"\nfail_start = true")
        .replace("reply = \"B\"", "reply = \"B2\"");
    let error = running
        .apply(running.load_config_str(&next, "b.toml").unwrap())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("alpha failed to start: told to fail"),
        "{error}"
    );

    let client = client();
    assert_eq!(
        get(&client, running.local_addr(), "/x/a").await.1,
        "alpha gen1 A /x/a"
    );
    assert_eq!(
        get(&client, running.local_addr(), "/x/y/b").await.1,
        "beta gen1 B /x/y/b"
    );
    // The beta generation that started but never served is retired.
    probe.wait_for("drain beta gen2").await;
    assert!(!probe.events().iter().any(|e| e == "drain beta gen1"));
    let metrics = get(&client, running.local_addr(), "/metrics").await.1;
    assert!(
        metrics.contains(r#"bourse_kernel_config_applies_total{result="error"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bourse_kernel_plugin_generation{plugin="beta"} 1"#),
        "{metrics}"
    );

    // A good config afterwards applies normally.
    let report = running
        .apply(
            running
                .load_config_str(&with_alpha_reply("A3"), "c.toml")
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(report.restarted, vec!["alpha".to_owned()]);
    assert_eq!(
        get(&client, running.local_addr(), "/x/a").await.1,
        "alpha gen2 A3 /x/a"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn failed_first_start_is_an_error_and_frees_the_port() {
    let probe = Probe::new();
    let kernel = crate::support::kernel(&probe);
    let port = free_port();
    let text = BASE
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("reply = \"B\"", "fail_start = true");
    let config = kernel.load_config_str(&text, "t").unwrap();
    let error = kernel.start(config).await.err().expect("start should fail");
    assert!(
        error.to_string().contains("beta failed to start"),
        "{error}"
    );
    // alpha started, so it is retired again; and the listener is closed.
    assert!(
        probe.events().iter().any(|e| e == "drain alpha gen1"),
        "{:?}",
        probe.events()
    );
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port should be free again");
}

#[tokio::test]
async fn readyz_is_503_until_every_plugin_started() {
    let probe = Probe::new();
    let port = free_port();
    let text = BASE
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("reply = \"B\"", "hold_start = true");
    let kernel = crate::support::kernel(&probe);
    let config = kernel.load_config_str(&text, "t").unwrap();
    let starting = tokio::spawn(kernel.start(config));
    probe.wait_entered(1).await;

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let client = client();
    assert_eq!(get(&client, addr, "/healthz").await.0, 200);
    assert_eq!(get(&client, addr, "/readyz").await.0, 503);
    assert_eq!(get(&client, addr, "/x/y/early").await.0, 404);

    probe.release_slow();
    let running = within(starting).await.unwrap().unwrap();
    assert_eq!(get(&client, addr, "/readyz").await.0, 200);
    assert_eq!(get(&client, addr, "/x/y/late").await.0, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn reload_rereads_the_config_file() {
    let dir = std::env::temp_dir().join(format!("bourse-kernel-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bourse.toml");
    std::fs::write(&path, BASE).unwrap();

    let probe = Probe::new();
    let kernel = crate::support::kernel(&probe);
    let config = kernel.load_config_file(&path).unwrap();
    let running = kernel.start(config).await.unwrap();

    std::fs::write(&path, with_alpha_reply("reloaded")).unwrap();
    let report = running.reload().await.unwrap();
    assert_eq!(report.restarted, vec!["alpha".to_owned()]);
    assert_eq!(
        get(&client(), running.local_addr(), "/x/r").await.1,
        "alpha gen2 reloaded /x/r"
    );

    std::fs::write(&path, "[plugins.alpha]\ntimeout = \"soon\"\n").unwrap();
    let error = running.reload().await.unwrap_err();
    assert!(
        format!("{error:#}").contains("bourse.toml:2:11: plugins.alpha.timeout"),
        "{error:#}"
    );
    assert_eq!(
        get(&client(), running.local_addr(), "/x/r").await.1,
        "alpha gen2 reloaded /x/r"
    );
    running.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn graceful_shutdown_lets_an_inflight_request_finish() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let addr = running.local_addr();
    let client = client();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { get(&client, addr, "/x/slow").await }
    });
    probe.wait_entered(1).await;

    let shutdown = tokio::spawn({
        let probe = probe.clone();
        async move {
            running.shutdown().await;
            probe.record("shutdown returned".into());
        }
    });
    // The listener closes while the request is still held...
    within(async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(!shutdown.is_finished());
    // ...and the request still completes with 200 before shutdown returns.
    probe.release_slow();
    let (status, body) = slow.await.unwrap();
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "alpha gen1 A /x/slow")
    );
    within(shutdown).await.unwrap();
    let events = probe.events();
    let position = |event: &str| events.iter().position(|e| e == event).unwrap();
    assert!(
        position("done alpha gen1") < position("drain alpha gen1"),
        "{events:?}"
    );
    assert!(
        position("drain alpha gen1") < position("shutdown returned"),
        "{events:?}"
    );
    assert!(
        position("cancelled beta gen1") < position("shutdown returned"),
        "{events:?}"
    );
}

#[tokio::test]
async fn shutdown_grace_cuts_requests_that_never_finish() {
    let probe = Probe::new();
    let config = BASE.replace("shutdown_grace_ms = 30000", "shutdown_grace_ms = 200");
    let running = start(&probe, &config).await;
    let addr = running.local_addr();
    let client = client();
    let stuck = tokio::spawn(async move {
        client
            .get(format!("http://{addr}/x/hang").parse().unwrap())
            .await
    });
    probe.wait_entered(1).await;
    let begun = Instant::now();
    within(running.shutdown()).await;
    assert!(begun.elapsed() >= Duration::from_millis(200));
    assert!(
        within(stuck).await.unwrap().is_err(),
        "the cut request must fail, not succeed"
    );
    probe.wait_for("drain alpha gen1").await;
}

#[tokio::test]
async fn shutdown_keeps_to_its_grace_whatever_a_plugin_still_has_to_do() {
    let probe = Probe::new();
    let text = BASE
        .replace("shutdown_grace_ms = 30000", "shutdown_grace_ms = 600")
        .replace("reply = \"A\"", "reply = \"A\"\nhang_on_stop = true");
    let running = start(&probe, &text).await;
    let (addr, client) = (running.local_addr(), client());
    // A request that never ends, and a drain that never ends.
    let hung = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, addr, "/x/hang").await })
    };
    probe.wait_entered(1).await;
    let started = Instant::now();
    within(running.shutdown()).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(600 + 1_000), "took {took:?}");
    assert!(probe.events().iter().any(|e| e == "drain alpha gen1"));
    hung.abort();
}
