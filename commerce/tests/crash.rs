//! `kill -9` during a burst of webhooks: no paid order, enrolment or receipt is lost or doubled.
//!
//! Its own test binary without libtest's harness, because it runs itself as the worker process
//! it kills: with `BOURSE_CRASH_WORKER` set, `main` is the worker (applies every webhook of the
//! burst and sends the outbox), otherwise it is the test, which starts a worker, kills it with
//! SIGKILL mid-burst, starts another that redelivers all 500 events, and checks the database and
//! what a real SMTP server (aiosmtpd) received. Run on SQLite and on PostgreSQL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bourse_commerce::mail::{MailSender, MailTemplates, SenderConfig, SmtpConfig, SmtpSecurity};
use bourse_commerce::migrate::{Migration, Module};
use bourse_commerce::orders::{self, NewLine, NewOrder, Order};
use bourse_commerce::payments::{OrderEffects, Payments, PaymentsConfig};
use bourse_commerce::store::Conn;
use bourse_commerce::stripe::{StripeClient, StripeConfig, webhook};
use bourse_commerce::{Store, StoreConfig, clock, schema, stock};
use futures_util::StreamExt;
use serde_json::json;

#[path = "it/support.rs"]
#[allow(dead_code)]
mod support;

const ORDERS: usize = 500;
const KILL_AFTER: usize = 150;
const WHSEC: &str = "whsec_crash_test";

const SITE_MODULE: Module = Module {
    name: "crashsite",
    migrations: &[Migration {
        version: 1,
        name: "enrolments",
        sql: "CREATE TABLE crash_enrolments (order_id TEXT NOT NULL)",
    }],
};

fn modules() -> Vec<&'static Module> {
    let mut modules = schema::ALL.to_vec();
    modules.push(&SITE_MODULE);
    modules
}

struct Enrol;

impl OrderEffects for Enrol {
    async fn paid(&self, conn: &mut Conn, order: &Order) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO crash_enrolments (order_id) VALUES ($1)")
            .bind(&order.id)
            .execute(conn)
            .await?;
        Ok(())
    }
    async fn refunded(&self, _conn: &mut Conn, _order: &Order) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os("BOURSE_CRASH_WORKER").is_some() {
        runtime.block_on(worker());
        return;
    }
    let mut passed = 0;
    for engine in [support::Engine::Sqlite, support::Engine::Postgres] {
        runtime.block_on(burst_killed_and_redelivered(engine));
        println!("crash: kill -9 mid-burst on {engine:?}: ok");
        passed += 1;
    }
    println!("crash: {passed} passed, 0 failed");
}

/// The worker: applies every event in the file (16 at a time), printing a line per applied one,
/// while a mail sender drains the outbox; exits when both are done.
async fn worker() {
    let config: StoreConfig =
        serde_json::from_str(&std::env::var("BOURSE_CRASH_STORE").unwrap()).unwrap();
    let events: Vec<(String, String)> = serde_json::from_str(
        &std::fs::read_to_string(std::env::var("BOURSE_CRASH_EVENTS").unwrap()).unwrap(),
    )
    .unwrap();
    let smtp_port: u16 = std::env::var("BOURSE_CRASH_SMTP").unwrap().parse().unwrap();
    let store = Store::open(&config, &modules()).await.unwrap().0;
    let payments = Arc::new(
        Payments::new(
            store.clone(),
            PaymentsConfig {
                site: "courses".into(),
                site_title: "Courses".into(),
                webhook_secret: WHSEC.into(),
                checkout_ttl_secs: 3600,
            },
            StripeClient::new(&StripeConfig::new("sk_test_unused", WHSEC)).unwrap(),
            Arc::new(MailTemplates::new()),
            None,
        )
        .unwrap(),
    );
    let sender = MailSender::new(
        store.clone(),
        &SmtpConfig {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "Courses <no-reply@courses.example>".into(),
            timeout_ms: 1_000,
            ca_file: None,
        },
        SenderConfig {
            poll_interval: Duration::from_millis(20),
            lease: Duration::from_secs(2),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_attempts: 20,
        },
        None,
    )
    .unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let sending = tokio::spawn(sender.run(async {
        let _ = done_rx.await;
    }));
    let applied = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures_util::stream::iter(events)
        .map(|(payload, _)| {
            let payments = payments.clone();
            let applied = applied.clone();
            async move {
                // Signed at delivery, as Stripe signs each attempt.
                let header = webhook::sign_header(payload.as_bytes(), WHSEC, clock::now());
                let reply = payments
                    .handle_webhook(payload.as_bytes(), Some(&header), &Enrol)
                    .await;
                assert_eq!(reply.status, 200, "{reply:?}");
                let n = applied.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                println!("applied {n}");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    while bourse_commerce::mail::outbox::depth(&store, "courses")
        .await
        .unwrap()
        > 0
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = done_tx.send(());
    sending.await.unwrap();
    println!("done");
}

async fn burst_killed_and_redelivered(engine: support::Engine) {
    let db = support::TestDb::new(engine).await;
    let store = db.open(&modules()).await;
    let mut events = Vec::with_capacity(ORDERS);
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, "courses", "cohort", ORDERS as i64)
        .await
        .unwrap();
    for i in 0..ORDERS {
        let order = orders::create(
            &mut tx,
            &NewOrder {
                site: "courses".into(),
                account_id: None,
                email: Some(format!("buyer{i}@example.com")),
                currency: "usd".into(),
                lines: vec![NewLine {
                    sku: "rust".into(),
                    description: "Rust in depth".into(),
                    quantity: 1,
                    unit_minor: 4_900,
                }],
            },
        )
        .await
        .unwrap();
        let session = format!("cs_crash_{i}");
        orders::set_checkout(&mut tx, &order.id, &session)
            .await
            .unwrap();
        stock::reserve(
            &mut tx,
            "courses",
            "cohort",
            1,
            clock::now() + 3600,
            Some(&order.id),
        )
        .await
        .unwrap();
        let payload = json!({
            "id": format!("evt_crash_{i}"), "object": "event", "type": "checkout.session.completed",
            "created": clock::now(), "livemode": false,
            "data": {"object": {"id": session, "object": "checkout.session", "status": "complete",
                "payment_status": "paid", "amount_total": 4_900, "currency": "usd",
                "client_reference_id": order.id, "payment_intent": format!("pi_crash_{i}")}}
        })
        .to_string();
        events.push((payload, String::new()));
    }
    tx.commit().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.json");
    std::fs::write(&events_path, serde_json::to_string(&events).unwrap()).unwrap();
    let smtp = support::SmtpServer::start(0);

    let start_worker = || {
        Command::new(std::env::current_exe().unwrap())
            .env("BOURSE_CRASH_WORKER", "1")
            .env(
                "BOURSE_CRASH_STORE",
                serde_json::to_string(&db.config).unwrap(),
            )
            .env("BOURSE_CRASH_EVENTS", &events_path)
            .env("BOURSE_CRASH_SMTP", smtp.port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // First worker: killed with SIGKILL once KILL_AFTER events are applied.
    let mut first = start_worker();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut seen = 0;
    while seen < KILL_AFTER {
        let line = lines.next().expect("the worker died early").unwrap();
        if line.starts_with("applied") {
            seen += 1;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let paid_at_kill = count(
        &store,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE state = 'paid'",
    )
    .await;
    assert!(
        (KILL_AFTER as i64..ORDERS as i64).contains(&paid_at_kill),
        "killed mid-burst: {paid_at_kill} of {ORDERS} paid"
    );

    // Second worker: Stripe redelivers every event; it finishes and drains the outbox.
    let second = start_worker();
    let output = second.wait_with_output().unwrap();
    assert!(output.status.success(), "the second worker failed");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.trim_end().ends_with("done"), "{stdout}");

    let n = ORDERS as i64;
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE state = 'paid'"
        )
        .await,
        n
    );
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM crash_enrolments"
        )
        .await,
        n
    );
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(DISTINCT order_id) AS BIGINT) FROM crash_enrolments"
        )
        .await,
        n,
        "every paid order enrolled exactly once"
    );
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM payment_events"
        )
        .await,
        n
    );
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox WHERE sent_at IS NOT NULL"
        )
        .await,
        n,
        "one receipt queued per order, all sent"
    );
    let level = stock::level(&store, "courses", "cohort").await.unwrap();
    assert_eq!((level.held, level.sold), (0, n));

    // At the SMTP server: every receipt once. A kill between the server's acceptance and the
    // mark can repeat the one mail in flight, with the same Message-ID (the documented window).
    let messages = smtp.messages();
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ORDERS, "every receipt received");
    assert!(
        messages.len() <= ORDERS + 1,
        "{} messages for {ORDERS} receipts: more than the one in flight at the kill",
        messages.len()
    );
    let mut recipients: Vec<String> = messages
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), ORDERS);
    store.close().await;
    db.cleanup().await;
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.reader())
        .await
        .unwrap()
}
