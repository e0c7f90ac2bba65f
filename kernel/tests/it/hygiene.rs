//! Connection hygiene over real sockets: slow bodies and headers are cut off, idle connections
//! closed, connections and in-flight requests capped with a fast answer, `/metrics` guarded,
//! and the client address read from `X-Forwarded-For` only behind a trusted proxy.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{BASE, Probe, client, get, send, start, within};

fn with_server(extra: &str) -> String {
    BASE.replace(
        "drain_deadline_ms = 30000\n",
        &format!("drain_deadline_ms = 30000\n{extra}\n"),
    )
}

/// Reads until the server closes the connection or `limit` passes; the text read and whether
/// it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&all).into_owned(), true),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&all).into_owned(), false),
        }
    }
}

/// Sends `GET /x/a` on `stream`, kept alive, and checks it is answered 200.
async fn get_ok(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /x/a HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = within(stream.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// A server with `extra` in its `[server]` table, and one connection to it.
async fn connected(
    probe: &std::sync::Arc<Probe>,
    extra: &str,
) -> (bourse_kernel::Running, TcpStream) {
    let running = start(probe, &with_server(extra)).await;
    let stream = TcpStream::connect(running.local_addr()).await.unwrap();
    (running, stream)
}

/// The counter of connections closed for a slow request head.
const SLOW_HEADS: &str = "bourse_kernel_connections_slow_head_closed_total";

/// The value of the counter `name` on the server's `/metrics` (a missing one fails the test).
async fn counter(addr: std::net::SocketAddr, name: &str) -> u64 {
    let metrics = get(&client(), addr, "/metrics").await.1;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

const LIMITS: &str =
    "[server.connections]\nheader_timeout_ms = 300\nbody_timeout_ms = 300\nidle_timeout_ms = 400\n";

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_frees_its_slot() {
    let probe = Probe::new();
    let running = start(&probe, &with_server(LIMITS)).await;
    let mut stream = TcpStream::connect(running.local_addr()).await.unwrap();
    stream
        .write_all(b"POST /x/echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let metrics = get(&client(), running.local_addr(), "/metrics").await.1;
    assert!(
        metrics.contains("bourse_kernel_plugin_inflight{plugin=\"alpha\"} 0"),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_head_that_never_ends_is_cut_off() {
    let probe = Probe::new();
    let running = start(&probe, &with_server(LIMITS)).await;
    let mut slow = TcpStream::connect(running.local_addr()).await.unwrap();
    slow.write_all(b"GET /x/a HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(closed);
    assert!(started.elapsed() < Duration::from_secs(2));
    running.shutdown().await;
}

#[tokio::test]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_and_counted() {
    let probe = Probe::new();
    let (running, mut slow) = connected(&probe, LIMITS).await;
    let addr = running.local_addr();
    let started = Instant::now();
    let head =
        b"GET /x/a HTTP/1.1\r\nhost: t\r\nx-slow: 0123456789012345678901234567890123456789\r\n\r\n";
    let mut cut_off = false;
    for byte in head {
        // Each byte well within the head timeout of the last: only the whole head is late.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "nothing is answered to a late head"
            );
            cut_off = true;
            break;
        }
    }
    assert!(
        cut_off,
        "the head was still read after {:?}",
        started.elapsed()
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(counter(addr, SLOW_HEADS).await, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_waits_past_the_head_timeout_for_its_next_request() {
    let probe = Probe::new();
    // The head timeout runs from a head's first byte: between requests only the idle timeout
    // applies.
    let limits = "[server.connections]\nheader_timeout_ms = 200\nidle_timeout_ms = 5000\n";
    let (running, mut stream) = connected(&probe, limits).await;
    for _ in 0..2 {
        get_ok(&mut stream).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    running.shutdown().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_head_timeout() {
    let probe = Probe::new();
    let (running, mut silent) = connected(&probe, LIMITS).await;
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(closed && answer.is_empty(), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Closed by the head timeout (300 ms), before the idle timeout (400 ms) could.
    assert_eq!(counter(running.local_addr(), SLOW_HEADS).await, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_by_the_watchdog() {
    let probe = Probe::new();
    // The head timeout is longer here, so it is certainly the idle watchdog, which covers
    // HTTP/2 too, that closes the connection.
    let limits = "[server.connections]\nheader_timeout_ms = 5000\nidle_timeout_ms = 400\n";
    let running = start(&probe, &with_server(limits)).await;
    let addr = running.local_addr();

    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /x/a HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "a kept-alive connection left idle is closed");
    assert!(started.elapsed() >= Duration::from_millis(300));

    assert!(counter(addr, "bourse_kernel_connections_idle_closed_total").await > 0);
    running.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_get_a_fast_503() {
    let probe = Probe::new();
    let running = start(&probe, &with_server("[server.connections]\nmax = 2\n")).await;
    let addr = running.local_addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // A request answered keeps the connection open (and counted).
        get_ok(&mut stream).await;
        held.push(stream);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let (answer, closed) = read_until_closed(&mut third, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(closed);
    drop(held);
    // Once they close, new connections are served again.
    let mut answered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /x/a HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        if answer.starts_with("HTTP/1.1 200") {
            answered = true;
            break;
        }
    }
    assert!(answered);
    running.shutdown().await;
}

#[tokio::test]
async fn requests_beyond_max_inflight_get_the_overload_answer_while_health_answers() {
    let probe = Probe::new();
    let running = start(
        &probe,
        &with_server("[server.connections]\nmax_inflight = 2\n"),
    )
    .await;
    let (addr, client) = (running.local_addr(), client());
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, addr, "/x/slow").await })
        })
        .collect();
    probe.wait_entered(2).await;
    let started = Instant::now();
    let (status, body) = get(&client, addr, "/x/a").await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (503, "{\"error\":\"overloaded\"}")
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    assert_eq!(get(&client, addr, "/healthz").await.0, 200);
    probe.release_slow();
    for request in held {
        assert_eq!(request.await.unwrap().0, 200);
    }
    assert_eq!(get(&client, addr, "/x/a").await.0, 200);
    let metrics = get(&client, addr, "/metrics").await.1;
    assert!(
        metrics.contains("bourse_kernel_overloaded_total 1"),
        "{metrics}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn metrics_are_guarded_by_a_token_or_a_network() {
    let probe = Probe::new();
    let text = with_server("[server.access]\nmetrics_token = \"a-long-metrics-token\"\n");
    let running = start(&probe, &text).await;
    let (addr, client) = (running.local_addr(), client());
    let (status, _) = get(&client, addr, "/metrics").await;
    assert_eq!(status, 401);
    let with_token = http::Request::get(format!("http://{addr}/metrics"))
        .header("authorization", "Bearer a-long-metrics-token")
        .body(Default::default())
        .unwrap();
    let (status, body) = send(&client, with_token).await;
    assert_eq!(status, 200);
    assert!(body.contains("bourse_http_requests_total"));
    running.shutdown().await;

    let open_to_loopback = with_server(
        "[server.access]\nmetrics_token = \"a-long-metrics-token\"\nmetrics_allow = [\"127.0.0.0/8\"]\n",
    );
    let running = start(&probe, &open_to_loopback).await;
    assert_eq!(get(&client, running.local_addr(), "/metrics").await.0, 200);
    running.shutdown().await;
}

#[tokio::test]
async fn the_client_address_comes_from_forwarded_for_only_behind_a_trusted_proxy() {
    let probe = Probe::new();
    let client = client();
    let forwarded = |addr| {
        http::Request::get(format!("http://{addr}/x/client"))
            .header("x-forwarded-for", "198.51.100.7")
            .body(Default::default())
            .unwrap()
    };
    let running = start(&probe, BASE).await;
    let (_, body) = send(&client, forwarded(running.local_addr())).await;
    assert_eq!(
        body, "Some(127.0.0.1) loopback=true",
        "the header is ignored"
    );
    running.shutdown().await;

    let behind = with_server("[server.access]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let running = start(&probe, &behind).await;
    let (_, body) = send(&client, forwarded(running.local_addr())).await;
    assert_eq!(body, "Some(198.51.100.7) loopback=false");
    running.shutdown().await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_too() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let probe = Probe::new();
    let limits = "[server.connections]\nidle_timeout_ms = 400\n";
    let running = start(&probe, &with_server(limits)).await;
    let stream = TcpStream::connect(running.local_addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let req = http::Request::get("http://t/x/a")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let response = within(sender.send_request(req)).await.unwrap();
    assert_eq!(
        (response.version(), response.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    let started = Instant::now();
    // The connection future ends when the server closes the connection.
    within(connection).await.unwrap().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed for idleness, not at once"
    );
    let metrics = get(&client(), running.local_addr(), "/metrics").await.1;
    assert!(
        metrics.contains("bourse_kernel_connections_idle_closed_total 1"),
        "{metrics}"
    );
    running.shutdown().await;
}
