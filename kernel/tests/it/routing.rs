//! Routing by longest prefix, built-in endpoints, and the kernel's metrics.

use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::{BASE, Probe, client, get, send, start};

#[tokio::test]
async fn longest_prefix_wins() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());
    for (path, owner) in [
        ("/x/a", Some("alpha")),
        ("/x", Some("alpha")),
        ("/x/y/z", Some("beta")),
        ("/x/y", Some("beta")),
        ("/x/yz", Some("alpha")),
        ("/xy", None),
        ("/", None),
    ] {
        let (status, body) = get(&client, addr, path).await;
        match owner {
            Some(owner) => {
                assert_eq!(status, 200, "{path}");
                assert!(
                    body.starts_with(&format!("{owner} gen1 ")),
                    "{path}: {body}"
                );
                assert!(body.ends_with(path), "{path}: {body}");
            }
            None => {
                assert_eq!(status, 404, "{path}");
                assert_eq!(body, r#"{"error":"not_found"}"#);
            }
        }
    }
    running.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());
    assert_eq!(
        get(&client, addr, "/healthz").await,
        (http::StatusCode::OK, "ok\n".into())
    );
    assert_eq!(get(&client, addr, "/readyz").await.0, 200);
    assert_eq!(get(&client, addr, "/x/y/q").await.0, 200);
    assert_eq!(get(&client, addr, "/nowhere").await.0, 404);

    let (status, metrics) = get(&client, addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        r#"bourse_http_requests_total{mount="/x/y/",status="2xx"} 1"#,
        r#"bourse_http_requests_total{mount="/x/",status="2xx"} 0"#,
        r#"bourse_http_requests_total{mount="none",status="4xx"} 1"#,
        r#"bourse_http_requests_total{mount="builtin",status="2xx"} 2"#,
        r#"bourse_kernel_plugin_generation{plugin="alpha"} 1"#,
        r#"bourse_kernel_plugin_state{plugin="alpha",state="active"} 1"#,
        r#"bourse_kernel_plugin_state{plugin="beta",state="starting"} 0"#,
        r#"bourse_kernel_plugin_inflight{plugin="beta"} 0"#,
        r#"bourse_kernel_config_applies_total{result="ok"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line:?} in\n{metrics}"
        );
    }
    #[cfg(target_os = "linux")]
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );

    let post = http::Request::post(format!("http://{addr}/healthz"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, post).await.0, 405);
    running.shutdown().await;
}

#[tokio::test]
async fn inflight_gauge_counts_held_requests() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (addr, client) = (running.local_addr(), client());
    let held = tokio::spawn({
        let client = client.clone();
        async move { get(&client, addr, "/x/slow").await }
    });
    probe.wait_entered(1).await;
    let metrics = get(&client, addr, "/metrics").await.1;
    assert!(
        metrics.contains(r#"bourse_kernel_plugin_inflight{plugin="alpha"} 1"#),
        "{metrics}"
    );
    probe.release_slow();
    assert_eq!(held.await.unwrap().0, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::get(format!("http://{}/x/y/h2", running.local_addr()))
        .body(Full::<bytes::Bytes>::default())
        .unwrap();
    let response = crate::support::within(h2.request(req)).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    running.shutdown().await;
}

// A panicking handler must answer 500, not reset the connection.
#[tokio::test]
async fn handler_panic_is_a_500() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let (status, body) = get(&client(), running.local_addr(), "/x/panic").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (500, r#"{"error":"internal"}"#)
    );
    // A handler may also panic while it builds its future, before anything is polled.
    let (status, body) = get(&client(), running.local_addr(), "/x/panic-before-future").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (500, r#"{"error":"internal"}"#)
    );
    running.shutdown().await;
}
