//! `read_body` over real connections: limits enforced before and while reading, gzip decoded
//! and capped.

use std::io::Write;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{BASE, Probe, client, send, start, within};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Writes `head` (and nothing more), then reads until the response names `until`.
async fn raw_exchange(addr: std::net::SocketAddr, head: &[u8], until: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    let mut response = Vec::new();
    within(async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&response).contains(until) {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_without_reading() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    // 100 MB announced, not one byte sent: a reply proves the server did not wait for the body.
    let head = b"POST /x/echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100000000\r\n\r\n";
    let response = raw_exchange(running.local_addr(), head, "body_too_large").await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains(r#"{"error":"body_too_large"}"#),
        "{response}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn chunked_body_is_cut_off_once_past_the_limit() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    // One 2000-byte chunk against a 1024-byte limit, and the body never ends.
    let mut head =
        b"POST /x/echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n7d0\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'a', 2000));
    head.extend_from_slice(b"\r\n");
    let response = raw_exchange(running.local_addr(), &head, "body_too_large").await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    running.shutdown().await;
}

#[tokio::test]
async fn body_within_the_limit_is_echoed() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let req = http::Request::post(format!("http://{}/x/echo", running.local_addr()))
        .body(Full::new(Bytes::from(vec![b'z'; 1024])))
        .unwrap();
    let (status, body) = send(&client(), req).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 1024);
    running.shutdown().await;
}

#[tokio::test]
async fn gzip_body_is_decoded() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let req = http::Request::post(format!("http://{}/x/echo", running.local_addr()))
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gzip(br#"{"id":"auction-1"}"#))))
        .unwrap();
    let (status, body) = send(&client(), req).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, r#"{"id":"auction-1"}"#)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn gzip_bomb_over_the_limit_is_refused() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let bomb = gzip(&vec![0u8; 10 << 20]);
    // 10 MiB of zeros compresses to ~10 KiB; allow 16 KiB so only the decoded size can fail.
    let config = BASE.replace("reply = \"A\"", "reply = \"A\"\nbody_limit = 16384");
    running
        .apply(running.load_config_str(&config, "t").unwrap())
        .await
        .unwrap();
    assert!(bomb.len() < 16384, "{}", bomb.len());
    let req = http::Request::post(format!("http://{}/x/echo", running.local_addr()))
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(bomb)))
        .unwrap();
    let (status, body) = send(&client(), req).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (413, r#"{"error":"body_too_large"}"#)
    );
    running.shutdown().await;
}

#[tokio::test]
async fn unsupported_encoding_is_415() {
    let probe = Probe::new();
    let running = start(&probe, BASE).await;
    let req = http::Request::post(format!("http://{}/x/echo", running.local_addr()))
        .header("content-encoding", "br")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let (status, body) = send(&client(), req).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (415, r#"{"error":"unsupported_encoding"}"#)
    );
    running.shutdown().await;
}
