//! Notice delivery against real HTTP servers on loopback: one partner's hanging endpoint never
//! delays or drops another's notices, billing notices owed at a stop are spooled and sent after
//! the next start, and URLs pointing into our own network are never fetched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bourse_engine::delivery::{Delivery, DeliveryMetrics, PartnerPolicy};
use bourse_engine::notice::NoticeKind;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{IntCounterVec, Opts};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A partner endpoint: answers 200 at once, or never (`hang`), counting requests.
async fn endpoint(hang: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let counted = counted.clone();
                    async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

fn metrics() -> DeliveryMetrics {
    DeliveryMetrics {
        notices: IntCounterVec::new(Opts::new("n", "n"), &["kind", "outcome"]).unwrap(),
        refused: IntCounterVec::new(Opts::new("r", "r"), &["bidder", "reason"]).unwrap(),
    }
}

fn policy(queue: usize, concurrency: usize) -> PartnerPolicy {
    PartnerPolicy {
        attempts: 3,
        backoff: Duration::from_millis(50),
        timeout: Duration::from_millis(300),
        queue,
        concurrency,
        allowed_hosts: vec!["127.0.0.1".into()],
        roots: Default::default(),
    }
}

async fn until(mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_hanging_partner_delays_and_drops_nothing_of_another() {
    let (hanging, _) = endpoint(true).await;
    let (honest, delivered) = endpoint(false).await;
    let metrics = metrics();
    let delivery = Delivery::new(None, metrics.clone());
    delivery.configure(&[
        ("slow".into(), policy(20, 2)),
        ("honest".into(), policy(200, 4)),
    ]);
    let (slow, fast) = (
        delivery.queue("slow").unwrap(),
        delivery.queue("honest").unwrap(),
    );
    for i in 0..200 {
        slow.fire(NoticeKind::Win, format!("http://{hanging}/win?i={i}"));
        fast.fire(NoticeKind::Win, format!("http://{honest}/win?i={i}"));
    }
    let started = Instant::now();
    until(|| delivered.load(Ordering::SeqCst) == 200).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let outcome = |o: &str| metrics.notices.with_label_values(&["win", o]).get();
    assert_eq!(outcome("sent"), 200);
    // The hanging partner's own queue overflowed: its notices, and only its, were dropped.
    assert!(outcome("dropped") >= 150, "{}", outcome("dropped"));
    delivery
        .shutdown(Instant::now() + Duration::from_millis(500))
        .await;
}

#[tokio::test]
async fn billing_notices_owed_at_a_stop_are_spooled_and_sent_after_the_next_start() {
    let dir = std::env::temp_dir().join(format!("bourse-spool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spool = dir.join("notices.spool");
    let (hanging, _) = endpoint(true).await;
    let first = Delivery::new(Some(spool.clone()), metrics());
    first.configure(&[("p".into(), policy(100, 2))]);
    let queue = first.queue("p").unwrap();
    for i in 0..10 {
        queue.fire(NoticeKind::Bill, format!("http://{hanging}/bill?i={i}"));
    }
    queue.fire(NoticeKind::Win, format!("http://{hanging}/win"));
    let started = Instant::now();
    first
        .shutdown(Instant::now() + Duration::from_millis(600))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let text = std::fs::read_to_string(&spool).unwrap();
    assert_eq!(
        text.lines().count(),
        10,
        "every billing notice, and only those:\n{text}"
    );

    // The next start sends them to the partner, now answering, at its new address.
    let (working, delivered) = endpoint(false).await;
    let rewritten = text.replace(&hanging.to_string(), &working.to_string());
    std::fs::write(&spool, rewritten).unwrap();
    let metrics = metrics();
    let second = Delivery::new(Some(spool.clone()), metrics.clone());
    assert_eq!(
        metrics
            .notices
            .with_label_values(&["bill", "recovered"])
            .get(),
        10
    );
    second.configure(&[("p".into(), policy(100, 2))]);
    until(|| delivered.load(Ordering::SeqCst) == 10).await;
    second
        .shutdown(Instant::now() + Duration::from_millis(500))
        .await;
    assert!(!spool.exists(), "nothing owed any more: the spool is gone");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn urls_into_our_network_are_refused_and_counted() {
    let (local, hits) = endpoint(false).await;
    let metrics = metrics();
    let delivery = Delivery::new(None, metrics.clone());
    let mut strict = policy(10, 1);
    strict.allowed_hosts.clear();
    delivery.configure(&[("p".into(), strict)]);
    let queue = delivery.queue("p").unwrap();
    queue.fire(NoticeKind::Loss, format!("http://{local}/loss"));
    queue.fire(
        NoticeKind::Loss,
        format!("http://localhost:{}/loss", local.port()),
    );
    queue.fire(NoticeKind::Loss, "gopher://example.com/".into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the local server"
    );
    let refused = |reason: &str| metrics.refused.with_label_values(&["p", reason]).get();
    assert_eq!((refused("not_public"), refused("scheme")), (1, 1));
    // The name resolving to loopback is refused by the resolver: a failed delivery, no request.
    assert!(metrics.notices.with_label_values(&["loss", "failed"]).get() >= 1);
    delivery
        .shutdown(Instant::now() + Duration::from_millis(200))
        .await;
}
