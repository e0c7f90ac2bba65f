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
        ca_file: None,
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

/// A private CA and a server certificate for 127.0.0.1 it signed, made with the openssl
/// command: (CA certificate, server certificate, server key).
fn private_ca(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let path = |name: &str| dir.join(name);
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl {args:?} failed");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=bourse test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        path("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

async fn authenticated_over_tls(security: SmtpSecurity) {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = db.open(&schema::ALL).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--auth",
        "mailer:s3cret",
    ];
    if security == SmtpSecurity::Tls {
        args.push("--implicit-tls");
    }
    let server = SmtpServer::start_with(&args);
    queue(&store, "ann@example.com", "ord_tls").await;

    // Without the private CA the certificate is refused, and the mail waits for a retry.
    let mut config = smtp(server.port);
    config.security = security;
    config.username = Some("mailer".into());
    config.password = Some("s3cret".into());
    let untrusting = MailSender::new(store.clone(), &config, fast(), None).unwrap();
    let sweep = untrusting.sweep().await.unwrap();
    assert_eq!((sweep.sent, sweep.retried), (0, 1));

    // A wrong password is refused by the server.
    config.ca_file = Some(ca.clone());
    let mut wrong = config.clone();
    wrong.password = Some("guess".into());
    sqlx::query("UPDATE mail_outbox SET next_attempt_at = 0")
        .execute(store.writer())
        .await
        .unwrap();
    let sweep = MailSender::new(store.clone(), &wrong, fast(), None)
        .unwrap()
        .sweep()
        .await
        .unwrap();
    assert_eq!(sweep.sent, 0);
    assert!(server.messages().is_empty());

    sqlx::query("UPDATE mail_outbox SET next_attempt_at = 0, failed_at = NULL")
        .execute(store.writer())
        .await
        .unwrap();
    let sender = MailSender::new(store.clone(), &config, fast(), None).unwrap();
    let sweep = sender.sweep().await.unwrap();
    let error: Option<String> = sqlx::query_scalar("SELECT last_error FROM mail_outbox")
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(sweep.sent, 1, "{error:?}");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (messages[0]["tls"].as_bool(), messages[0]["auth"].as_bool()),
        (Some(true), Some(true))
    );
    store.close().await;
}

#[tokio::test]
async fn starttls_with_authentication_delivers() {
    authenticated_over_tls(SmtpSecurity::Starttls).await;
}

#[tokio::test]
async fn implicit_tls_with_authentication_delivers() {
    authenticated_over_tls(SmtpSecurity::Tls).await;
}
