//! Mail through a real SMTP server: delivered once from the outbox, retried with backoff while
//! the server refuses, given up on a permanent refusal, and never sent twice by two senders.

use std::time::Duration;

use bourse_commerce::mail::{
    self, MailSender, MailTemplates, SenderConfig, SmtpConfig, SmtpSecurity,
};
use bourse_commerce::metrics::CommerceMetrics;
use bourse_commerce::{Store, schema};
use serde_json::json;

use crate::support::{Engine, SmtpServer, TestDb};

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "Courses <no-reply@courses.example>".into(),
        timeout_ms: 5_000,
    }
}

fn fast() -> SenderConfig {
    SenderConfig {
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        base_backoff: Duration::from_millis(300),
        max_backoff: Duration::from_secs(5),
        max_attempts: 8,
    }
}

async fn queue(store: &Store, to: &str, order: &str) -> String {
    let templates = MailTemplates::new();
    let mail = templates
        .render(
            "receipt",
            &json!({"site_title": "Courses", "order_id": order, "total": "$49.00",
                    "lines": [{"quantity": 1, "description": "Rust in depth", "amount": "$49.00"}]}),
        )
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let id = mail::enqueue(&mut tx, "courses", to, &mail).await.unwrap();
    tx.commit().await.unwrap();
    id
}

async fn delivered_once(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    let server = SmtpServer::start(0);
    let id = queue(&store, "ann@example.com", "ord_1").await;

    // A mail queued in a transaction that rolls back never exists.
    let mut tx = store.begin().await.unwrap();
    let rendered = MailTemplates::new()
        .render(
            "reset_password",
            &json!({"site_title": "C", "valid_minutes": 30, "link": "x"}),
        )
        .unwrap();
    mail::enqueue(&mut tx, "courses", "bob@example.com", &rendered)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let sender = MailSender::new(store.clone(), &smtp(server.port), fast(), None).unwrap();
    assert_eq!(sender.sweep().await.unwrap().sent, 1);
    assert_eq!(
        sender.sweep().await.unwrap().sent,
        0,
        "nothing left to send"
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["rcpt_tos"], json!(["ann@example.com"]));
    assert_eq!(m["mail_from"], "no-reply@courses.example");
    assert_eq!(
        m["message_id"],
        json!(format!("<{id}@courses.example>")),
        "Message-ID derived from the outbox id"
    );
    assert_eq!(m["subject"], "Your receipt from Courses: order ord_1");
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .contains("1 x Rust in depth: $49.00")
    );
    assert_eq!(mail::outbox::depth(&store, "courses").await.unwrap(), 0);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_outbox_row_is_delivered_once() {
    delivered_once(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_outbox_row_is_delivered_once() {
    delivered_once(Engine::Postgres).await;
}

#[tokio::test]
async fn failing_server_is_retried_with_growing_backoff() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let server = SmtpServer::start(3);
    let registry = prometheus::Registry::new();
    let metrics = CommerceMetrics::register(&registry, &["courses"], &["usd"]).unwrap();
    queue(&store, "ann@example.com", "ord_2").await;
    let sender = MailSender::new(
        store.clone(),
        &smtp(server.port),
        fast(),
        Some(metrics.clone()),
    )
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut retried = 0;
    loop {
        let sweep = sender.sweep().await.unwrap();
        retried += sweep.retried;
        if sweep.sent == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(retried, 3);
    let records = server.records();
    assert_eq!(
        records.len(),
        4,
        "three refusals then the delivery: {records:?}"
    );
    let at: Vec<f64> = records.iter().map(|r| r["at"].as_f64().unwrap()).collect();
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // 300 ms, 600 ms, 1.2 s, each ±20%: every gap longer than the one before.
    assert!(gaps[0] >= 0.2, "{gaps:?}");
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "{gaps:?}");
    assert_eq!(server.messages().len(), 1);
    assert_eq!(metrics.site("courses").mail_sent.get(), 1);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("bourse_site_mail_failures_total{kind=\"retry\",site=\"courses\"} 3"),
        "{text}"
    );
    store.close().await;
}

#[tokio::test]
async fn permanent_refusal_is_given_up_at_once() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let server = SmtpServer::start(0);
    let id = queue(&store, "reject-me@example.com", "ord_3").await;
    let sender = MailSender::new(store.clone(), &smtp(server.port), fast(), None).unwrap();
    let sweep = sender.sweep().await.unwrap();
    assert_eq!((sweep.sent, sweep.gave_up), (0, 1));
    let (failed_at, error): (Option<i64>, Option<String>) =
        sqlx::query_as("SELECT failed_at, last_error FROM mail_outbox WHERE id = $1")
            .bind(&id)
            .fetch_one(store.reader())
            .await
            .unwrap();
    assert!(failed_at.is_some());
    assert!(error.unwrap().contains("550"));
    assert_eq!(mail::outbox::depth(&store, "courses").await.unwrap(), 0);
    store.close().await;
}

async fn two_senders_never_send_one_row_twice(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = db.open(&schema::ALL).await;
    // Each sender has its own pool, as two processes would.
    let other_store = db.open(&schema::ALL).await;
    let server = SmtpServer::start(0);
    for i in 0..60 {
        queue(
            &store,
            &format!("buyer{i}@example.com"),
            &format!("ord_{i}"),
        )
        .await;
    }
    let a = MailSender::new(store.clone(), &smtp(server.port), fast(), None).unwrap();
    let b = MailSender::new(other_store.clone(), &smtp(server.port), fast(), None).unwrap();
    let (sa, sb) = tokio::join!(a.sweep(), b.sweep());
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert_eq!(sa.sent + sb.sent, 60);
    let messages = server.messages();
    assert_eq!(messages.len(), 60);
    let mut ids: Vec<&str> = messages
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no Message-ID twice");
    store.close().await;
    other_store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_senders_never_send_one_row_twice() {
    two_senders_never_send_one_row_twice(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_senders_never_send_one_row_twice() {
    two_senders_never_send_one_row_twice(Engine::Postgres).await;
}
