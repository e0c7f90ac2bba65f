//! Stripe: the client against a local server speaking Stripe's API (the test-mode checkout, and
//! raw servers for transport failures), webhook signatures made by Stripe's own Node library,
//! and events applied exactly once however often and however concurrently they arrive.

use std::sync::Arc;
use std::time::Duration;

use bourse_commerce::mail::MailTemplates;
use bourse_commerce::metrics::{CommerceMetrics, WebhookOutcome};
use bourse_commerce::migrate::{Migration, Module};
use bourse_commerce::orders::{self, OrderState};
use bourse_commerce::payments::{
    CheckoutItem, OrderEffects, PaymentError, Payments, PaymentsConfig, StartCheckout,
};
use bourse_commerce::store::Conn;
use bourse_commerce::stripe::testmode::{TestCheckout, TestCheckoutConfig};
use bourse_commerce::stripe::webhook::{self, WebhookError};
use bourse_commerce::stripe::{
    CheckoutLine, CheckoutRequest, StripeClient, StripeConfig, StripeError,
};
use bourse_commerce::{Store, clock, schema, stock};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use serde_json::json;

use crate::support::{self, Engine, TestDb, stripe_node_signature};

const KEY: &str = "sk_test_bourse";
const WHSEC: &str = "whsec_bourse_test_secret";

/// A test-mode checkout on a free port, delivering webhooks to `webhook_url`.
async fn test_checkout(webhook_url: String) -> (TestCheckout, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let checkout = TestCheckout::new(TestCheckoutConfig {
        secret_key: KEY.into(),
        webhook_secret: WHSEC.into(),
        webhook_url,
        public_url: base.clone(),
        mount: String::new(),
    });
    tokio::spawn(checkout.clone().serve(listener, std::future::pending()));
    (checkout, base)
}

fn client(base: &str, key: &str) -> StripeClient {
    let mut config = StripeConfig::new(key, WHSEC);
    config.base_url = base.to_owned();
    config.timeout_ms = 2_000;
    StripeClient::new(&config).unwrap()
}

fn request(expires_at: i64) -> CheckoutRequest {
    CheckoutRequest {
        line_items: vec![
            CheckoutLine {
                name: "Rust in depth".into(),
                unit_amount: 4_900,
                currency: "usd".into(),
                quantity: 1,
            },
            CheckoutLine {
                name: "Office hours".into(),
                unit_amount: 1_000,
                currency: "usd".into(),
                quantity: 2,
            },
        ],
        success_url: "http://site.test/done?session={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "http://site.test/cancel".into(),
        client_reference_id: Some("ord_1".into()),
        metadata: [("order_id".to_owned(), "ord_1".to_owned())].into(),
        expires_at: Some(expires_at),
        customer_email: Some("ann@example.com".into()),
    }
}

#[tokio::test]
async fn client_speaks_the_checkout_sessions_api() {
    let (_checkout, base) = test_checkout("http://127.0.0.1:9/unused".into()).await;
    let stripe = client(&base, KEY);
    let expires_at = clock::now() + 3600;
    let session = stripe
        .create_checkout_session(&request(expires_at), "idem-1")
        .await
        .unwrap();
    assert!(session.id.starts_with("cs_test_"));
    assert_eq!(
        session.url.as_deref(),
        Some(format!("{base}/pay/{}", session.id).as_str())
    );
    assert_eq!(session.amount_total, Some(6_900));
    assert_eq!(session.currency.as_deref(), Some("usd"));
    assert_eq!(session.expires_at, Some(expires_at));
    assert_eq!(session.client_reference_id.as_deref(), Some("ord_1"));
    assert_eq!(session.metadata["order_id"], "ord_1");
    assert_eq!(session.customer_email.as_deref(), Some("ann@example.com"));
    assert_eq!(session.status.as_deref(), Some("open"));

    // The same idempotency key returns the same session; with other parameters it is refused.
    let again = stripe
        .create_checkout_session(&request(expires_at), "idem-1")
        .await
        .unwrap();
    assert_eq!(again.id, session.id);
    match stripe
        .create_checkout_session(&request(expires_at + 60), "idem-1")
        .await
    {
        Err(StripeError::Api {
            status: 400, kind, ..
        }) => assert_eq!(kind, "idempotency_error"),
        other => panic!("{other:?}"),
    }
    // Stripe's errors come back typed, with the parameter at fault.
    let mut bad = request(expires_at);
    bad.success_url.clear();
    bad.line_items.clear();
    match stripe.create_checkout_session(&bad, "idem-2").await {
        Err(e @ StripeError::Api { status: 400, .. }) => {
            assert!(!e.retryable());
            assert!(e.to_string().contains("line_items"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    match stripe
        .create_checkout_session(&request(clock::now() + 60), "idem-3")
        .await
    {
        Err(StripeError::Api { param, .. }) => assert_eq!(param.as_deref(), Some("expires_at")),
        other => panic!("{other:?}"),
    }
    match client(&base, "sk_test_wrong")
        .create_checkout_session(&request(expires_at), "idem-4")
        .await
    {
        Err(StripeError::Api {
            status: 401,
            message,
            ..
        }) => assert!(message.contains("API Key")),
        other => panic!("{other:?}"),
    }
    let read = stripe.retrieve_checkout_session(&session.id).await.unwrap();
    assert_eq!(read, session);
    match stripe.retrieve_checkout_session("cs_test_missing").await {
        Err(StripeError::Api {
            status: 404, code, ..
        }) => assert_eq!(code.as_deref(), Some("resource_missing")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        stripe.retrieve_checkout_session("../v1/secret").await,
        Err(StripeError::Config(_))
    ));
}

#[tokio::test]
async fn client_sends_stripe_form_encoding_and_headers() {
    let seen: Arc<Mutex<Vec<(http::HeaderMap, String)>>> = Arc::default();
    let record = seen.clone();
    let addr = support::serve(move |req: http::Request<hyper::body::Incoming>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            record
                .lock()
                .push((parts.headers, String::from_utf8(body.to_vec()).unwrap()));
            http::Response::new(Full::new(Bytes::from_static(
                br#"{"id":"cs_1","url":"https://pay/cs_1"}"#,
            )))
        }
    })
    .await;
    let stripe = client(&format!("http://{addr}"), KEY);
    let session = stripe
        .create_checkout_session(&request(1_900_000_000), "ord_1")
        .await
        .unwrap();
    assert_eq!(session.id, "cs_1");
    let (headers, body) = seen.lock().pop().unwrap();
    assert_eq!(headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(headers["idempotency-key"], "ord_1");
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let has = |k: &str, v: &str| form.iter().any(|(fk, fv)| fk == k && fv == v);
    for (k, v) in [
        ("mode", "payment"),
        ("line_items[0][price_data][currency]", "usd"),
        (
            "line_items[0][price_data][product_data][name]",
            "Rust in depth",
        ),
        ("line_items[0][price_data][unit_amount]", "4900"),
        ("line_items[1][quantity]", "2"),
        ("client_reference_id", "ord_1"),
        ("metadata[order_id]", "ord_1"),
        ("payment_intent_data[metadata][order_id]", "ord_1"),
        ("expires_at", "1900000000"),
        ("customer_email", "ann@example.com"),
        (
            "success_url",
            "http://site.test/done?session={CHECKOUT_SESSION_ID}",
        ),
    ] {
        assert!(has(k, v), "{k}={v} missing from {body}");
    }
}

#[tokio::test]
async fn transport_failures_are_retryable_errors() {
    let addr = support::serve(|_req| async {
        http::Response::builder()
            .status(502)
            .body(Full::new(Bytes::from_static(b"<html>bad gateway</html>")))
            .unwrap()
    })
    .await;
    match client(&format!("http://{addr}"), KEY)
        .retrieve_checkout_session("cs_1")
        .await
    {
        Err(e @ StripeError::Decode { status: 502, .. }) => assert!(e.retryable()),
        other => panic!("{other:?}"),
    }
    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut config = StripeConfig::new(KEY, WHSEC);
    config.base_url = format!("http://{addr}");
    config.timeout_ms = 300;
    match StripeClient::new(&config)
        .unwrap()
        .retrieve_checkout_session("cs_1")
        .await
    {
        Err(e @ StripeError::Timeout(_)) => assert!(e.retryable()),
        other => panic!("{other:?}"),
    }
}

fn completed_event(event_id: &str, session_id: &str, order_id: &str, amount: i64) -> String {
    json!({
        "id": event_id, "object": "event", "type": "checkout.session.completed",
        "created": clock::now(), "livemode": false,
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "amount_total": amount, "currency": "usd",
            "client_reference_id": order_id, "payment_intent": "pi_1",
            "metadata": {"order_id": order_id}
        }}
    })
    .to_string()
}

#[tokio::test]
async fn stripe_library_signatures_are_accepted_and_forgeries_refused() {
    let now = clock::now();
    let payload = completed_event("evt_1", "cs_1", "ord_1", 4_900);
    let header = stripe_node_signature(&payload, WHSEC, now);
    assert!(header.starts_with(&format!("t={now},v1=")), "{header}");
    let event = webhook::construct_event(payload.as_bytes(), Some(&header), WHSEC, now).unwrap();
    assert_eq!(event.id, "evt_1");
    assert!(
        matches!(event.data, webhook::EventData::CheckoutSessionCompleted(ref s) if s.amount_total == Some(4_900))
    );
    // Our own signer agrees with Stripe's.
    assert_eq!(webhook::sign_header(payload.as_bytes(), WHSEC, now), header);

    let tampered = payload.replace("4900", "1");
    assert_eq!(
        webhook::construct_event(tampered.as_bytes(), Some(&header), WHSEC, now).unwrap_err(),
        WebhookError::Mismatch
    );
    let wrong_secret = stripe_node_signature(&payload, "whsec_someone_else", now);
    assert_eq!(
        webhook::construct_event(payload.as_bytes(), Some(&wrong_secret), WHSEC, now).unwrap_err(),
        WebhookError::Mismatch
    );
    let old = stripe_node_signature(&payload, WHSEC, now - 301);
    assert!(matches!(
        webhook::construct_event(payload.as_bytes(), Some(&old), WHSEC, now),
        Err(WebhookError::Stale {
            age: 301,
            tolerance: 300
        })
    ));
    let just_in_time = stripe_node_signature(&payload, WHSEC, now - 299);
    assert!(webhook::construct_event(payload.as_bytes(), Some(&just_in_time), WHSEC, now).is_ok());
    assert_eq!(
        webhook::construct_event(payload.as_bytes(), None, WHSEC, now).unwrap_err(),
        WebhookError::MissingHeader
    );
}

/// The courses-like site of these tests: an enrolment per paid order, removed on refund, in a
/// table of its own module.
const TEST_SITE: Module = Module {
    name: "testsite",
    migrations: &[Migration {
        version: 1,
        name: "enrolments",
        sql: "CREATE TABLE test_enrolments (order_id TEXT NOT NULL, account_id TEXT)",
    }],
};

struct Enrol;

impl OrderEffects for Enrol {
    async fn paid(&self, conn: &mut Conn, order: &orders::Order) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO test_enrolments (order_id, account_id) VALUES ($1, $2)")
            .bind(&order.id)
            .bind(order.account_id.as_deref())
            .execute(conn)
            .await?;
        Ok(())
    }
    async fn refunded(&self, conn: &mut Conn, order: &orders::Order) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM test_enrolments WHERE order_id = $1")
            .bind(&order.id)
            .execute(conn)
            .await?;
        Ok(())
    }
}

fn text_of(registry: &prometheus::Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap()
}

async fn enrolments(store: &Store, order_id: &str) -> i64 {
    sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM test_enrolments WHERE order_id = $1")
        .bind(order_id)
        .fetch_one(store.reader())
        .await
        .unwrap()
}

async fn receipts(store: &Store, to: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox WHERE recipient = $1 AND subject LIKE 'Your receipt%'",
    )
    .bind(to)
    .fetch_one(store.reader())
    .await
    .unwrap()
}

async fn open_store(db: &TestDb) -> Store {
    let mut modules: Vec<&Module> = schema::ALL.to_vec();
    modules.push(&TEST_SITE);
    db.open(&modules).await
}

fn payments(store: &Store, base: &str, metrics: Option<CommerceMetrics>) -> Payments {
    Payments::new(
        store.clone(),
        PaymentsConfig {
            site: "courses".into(),
            site_title: "Courses".into(),
            webhook_secret: WHSEC.into(),
            checkout_ttl_secs: 3600,
        },
        client(base, KEY),
        Arc::new(MailTemplates::new()),
        metrics,
    )
    .unwrap()
}

fn buy(email: &str, cohort: &str) -> StartCheckout {
    StartCheckout {
        account_id: None,
        email: Some(email.into()),
        currency: "usd".into(),
        items: vec![CheckoutItem {
            sku: "course-rust".into(),
            description: "Rust in depth".into(),
            quantity: 1,
            unit_minor: 4_900,
            stock_item: Some(cohort.into()),
        }],
        success_url: "http://site.test/done".into(),
        cancel_url: "http://site.test/cancel".into(),
    }
}

async fn same_event_twenty_times(engine: Engine) {
    let db = TestDb::new(engine).await;
    let store = open_store(&db).await;
    let (_checkout, base) = test_checkout("http://127.0.0.1:9/unused".into()).await;
    let registry = prometheus::Registry::new();
    let metrics = CommerceMetrics::register(&registry, &["courses"], &["usd"]).unwrap();
    let payments = Arc::new(payments(&store, &base, Some(metrics.clone())));
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, "courses", "cohort-1", 10)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let started = payments
        .start_checkout(&buy("ann@example.com", "cohort-1"))
        .await
        .unwrap();

    let payload = completed_event("evt_twenty", &started.session.id, &started.order.id, 4_900);
    let header = stripe_node_signature(&payload, WHSEC, clock::now());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let payments = payments.clone();
        let (payload, header) = (payload.clone(), header.clone());
        tasks.push(tokio::spawn(async move {
            payments
                .handle_webhook(payload.as_bytes(), Some(&header), &Enrol)
                .await
        }));
    }
    let mut applied = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        match reply.outcome {
            WebhookOutcome::Applied => applied += 1,
            WebhookOutcome::Duplicate => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(applied, 1);
    assert_eq!(enrolments(&store, &started.order.id).await, 1);
    assert_eq!(receipts(&store, "ann@example.com").await, 1);
    let order = orders::get(&store, &started.order.id).await.unwrap();
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(order.payment_ref.as_deref(), Some("pi_1"));
    let level = stock::level(&store, "courses", "cohort-1").await.unwrap();
    assert_eq!((level.held, level.sold), (0, 1));
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    for line in [
        "bourse_site_webhooks_total{outcome=\"applied\",site=\"courses\"} 1",
        "bourse_site_webhooks_total{outcome=\"duplicate\",site=\"courses\"} 19",
        "bourse_site_orders_total{outcome=\"paid\",site=\"courses\"} 1",
        "bourse_site_revenue_micros_total{currency=\"usd\",site=\"courses\"} 49000000",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    // Forged deliveries are refused with 400 and counted, and change nothing.
    let now = clock::now();
    let other = completed_event("evt_forged", &started.session.id, &started.order.id, 4_900);
    let tampered = other.replace("\"pi_1\"", "\"pi_evil\"");
    let refusals = [
        (
            tampered.clone(),
            Some(stripe_node_signature(&other, WHSEC, now)),
        ),
        (
            other.clone(),
            Some(stripe_node_signature(&other, "whsec_wrong", now)),
        ),
        (
            other.clone(),
            Some(stripe_node_signature(&other, WHSEC, now - 301)),
        ),
        (other.clone(), None),
    ];
    for (body, header) in &refusals {
        let reply = payments
            .handle_webhook(body.as_bytes(), header.as_deref(), &Enrol)
            .await;
        assert_eq!(
            (reply.status, reply.outcome),
            (400, WebhookOutcome::BadSignature),
            "{reply:?}"
        );
    }
    let signed_garbage = "{\"not\":\"an event\"}";
    let header = stripe_node_signature(signed_garbage, WHSEC, now);
    let reply = payments
        .handle_webhook(signed_garbage.as_bytes(), Some(&header), &Enrol)
        .await;
    assert_eq!(
        (reply.status, reply.outcome),
        (400, WebhookOutcome::BadPayload)
    );
    assert!(
        text_of(&registry)
            .contains("bourse_site_webhooks_total{outcome=\"bad_signature\",site=\"courses\"} 4")
    );
    assert_eq!(enrolments(&store, &started.order.id).await, 1);

    // The gauges read the database: one seat sold, one receipt waiting in the outbox.
    payments.refresh_gauges().await.unwrap();
    let text = text_of(&registry);
    for line in [
        "bourse_site_seats{site=\"courses\",state=\"sold\"} 1",
        "bourse_site_seats{site=\"courses\",state=\"held\"} 0",
        "bourse_site_mail_outbox_depth{site=\"courses\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    store.close().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_same_event_twenty_times_concurrently_takes_effect_once() {
    same_event_twenty_times(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_same_event_twenty_times_concurrently_takes_effect_once() {
    same_event_twenty_times(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_runs_end_to_end_through_the_test_mode_checkout() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    // The site's webhook endpoint, answering what handle_webhook says.
    let site: Arc<Mutex<Option<Arc<Payments>>>> = Arc::default();
    let endpoint = site.clone();
    let addr = support::serve(move |req: http::Request<hyper::body::Incoming>| {
        let endpoint = endpoint.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let signature = parts
                .headers
                .get("stripe-signature")
                .and_then(|v| v.to_str().ok());
            let payments = endpoint.lock().clone().unwrap();
            let reply = payments.handle_webhook(&body, signature, &Enrol).await;
            http::Response::builder()
                .status(reply.status)
                .body(Full::new(Bytes::from(reply.message)))
                .unwrap()
        }
    })
    .await;
    let (checkout, base) = test_checkout(format!("http://{addr}/courses/webhooks/stripe")).await;
    let payments = Arc::new(payments(&store, &base, None));
    *site.lock() = Some(payments.clone());
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, "courses", "cohort-small", 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let started = payments
        .start_checkout(&buy("ann@example.com", "cohort-small"))
        .await
        .unwrap();
    assert_eq!(
        started.order.checkout_id.as_deref(),
        Some(started.session.id.as_str())
    );
    // The only seat is held: a second buyer is refused before Stripe is asked.
    assert!(matches!(
        payments
            .start_checkout(&buy("bob@example.com", "cohort-small"))
            .await,
        Err(PaymentError::SoldOut(_))
    ));

    // The buyer's browser: the pay page, then "Pay".
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let page = http.get(started.url.parse().unwrap()).await.unwrap();
    assert_eq!(page.status(), 200);
    let page = String::from_utf8(
        page.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        page.contains("TEST MODE") && page.contains("49.00 USD"),
        "{page}"
    );
    let pay = http::Request::post(&started.url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let paid = http.request(pay).await.unwrap();
    assert_eq!(paid.status(), 303);
    assert_eq!(paid.headers()["location"], "http://site.test/done");

    let order = orders::get(&store, &started.order.id).await.unwrap();
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(enrolments(&store, &order.id).await, 1);
    assert_eq!(receipts(&store, "ann@example.com").await, 1);
    let level = stock::level(&store, "courses", "cohort-small")
        .await
        .unwrap();
    assert_eq!((level.held, level.sold), (0, 1));
    // Paying twice is refused by the checkout.
    assert!(checkout.pay(&started.session.id).await.is_err());

    // A refund revokes the enrolment and returns the seat.
    let delivery = checkout.refund(&started.session.id).await.unwrap();
    assert_eq!(delivery.status, 200);
    assert_eq!(
        orders::get(&store, &order.id).await.unwrap().state,
        OrderState::Refunded
    );
    assert_eq!(enrolments(&store, &order.id).await, 0);
    let level = stock::level(&store, "courses", "cohort-small")
        .await
        .unwrap();
    assert_eq!((level.held, level.sold), (0, 0));

    // An abandoned checkout expires and its seat comes back.
    let abandoned = payments
        .start_checkout(&buy("bob@example.com", "cohort-small"))
        .await
        .unwrap();
    let delivery = checkout.expire(&abandoned.session.id).await.unwrap();
    assert_eq!(delivery.status, 200);
    assert_eq!(
        orders::get(&store, &abandoned.order.id)
            .await
            .unwrap()
            .state,
        OrderState::Expired
    );
    assert_eq!(
        stock::level(&store, "courses", "cohort-small")
            .await
            .unwrap()
            .available(),
        1
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    store.close().await;
}

#[tokio::test]
async fn sweep_releases_lapsed_holds_and_expires_abandoned_orders() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    let payments = payments(&store, "http://127.0.0.1:9", None);
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, "courses", "cohort-s", 5)
        .await
        .unwrap();
    // An order whose process died before its checkout session was created: its hold lapsed
    // and it was created long ago.
    let order = orders::create(
        &mut tx,
        &orders::NewOrder {
            site: "courses".into(),
            account_id: None,
            email: Some("ann@example.com".into()),
            currency: "usd".into(),
            lines: vec![orders::NewLine {
                sku: "rust".into(),
                description: "Rust in depth".into(),
                quantity: 2,
                unit_minor: 4_900,
            }],
        },
    )
    .await
    .unwrap();
    stock::reserve(
        &mut tx,
        "courses",
        "cohort-s",
        2,
        clock::now() - 10,
        Some(&order.id),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE orders SET created_at = created_at - 10000 WHERE id = $1")
        .bind(&order.id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        stock::level(&store, "courses", "cohort-s")
            .await
            .unwrap()
            .available(),
        3
    );

    assert_eq!(
        payments.sweep().await.unwrap(),
        1,
        "one lapsed hold released"
    );
    assert_eq!(
        stock::level(&store, "courses", "cohort-s")
            .await
            .unwrap()
            .available(),
        5
    );
    assert_eq!(
        orders::get(&store, &order.id).await.unwrap().state,
        OrderState::Expired
    );
    assert_eq!(payments.sweep().await.unwrap(), 0, "nothing left to do");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_after_the_seat_was_resold_is_refunded_not_granted() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    let site: Arc<Mutex<Option<Arc<Payments>>>> = Arc::default();
    let endpoint = site.clone();
    let addr = support::serve(move |req: http::Request<hyper::body::Incoming>| {
        let endpoint = endpoint.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let signature = parts
                .headers
                .get("stripe-signature")
                .and_then(|v| v.to_str().ok());
            let payments = endpoint.lock().clone().unwrap();
            let reply = payments.handle_webhook(&body, signature, &Enrol).await;
            http::Response::builder()
                .status(reply.status)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await;
    let (checkout, base) = test_checkout(format!("http://{addr}/webhooks/stripe")).await;
    let payments = Arc::new(payments(&store, &base, None));
    *site.lock() = Some(payments.clone());
    let mut tx = store.begin().await.unwrap();
    stock::set_capacity(&mut tx, "courses", "last-seat", 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Ann's hold lapses (her checkout outlived it), the sweep frees the seat, Bob takes it.
    let ann = payments
        .start_checkout(&buy("ann@example.com", "last-seat"))
        .await
        .unwrap();
    sqlx::query("UPDATE stock_holds SET hold_until = 1 WHERE order_id = $1")
        .bind(&ann.order.id)
        .execute(store.writer())
        .await
        .unwrap();
    assert_eq!(payments.sweep().await.unwrap(), 1);
    let bob = payments
        .start_checkout(&buy("bob@example.com", "last-seat"))
        .await
        .unwrap();

    // Ann pays anyway: she is not enrolled, is told so, and is refunded in full.
    assert_eq!(checkout.pay(&ann.session.id).await.unwrap().status, 200);
    assert_eq!(enrolments(&store, &ann.order.id).await, 0);
    let level = stock::level(&store, "courses", "last-seat").await.unwrap();
    assert_eq!(
        (level.held, level.sold),
        (1, 0),
        "Bob's hold stands, nothing oversold"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while orders::get(&store, &ann.order.id).await.unwrap().state != OrderState::Refunded {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refund never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (subject,): (String,) =
        sqlx::query_as("SELECT subject FROM mail_outbox WHERE recipient = 'ann@example.com'")
            .fetch_one(store.reader())
            .await
            .unwrap();
    assert!(subject.contains("refunded"), "{subject}");

    // Bob pays and gets the seat.
    checkout.pay(&bob.session.id).await.unwrap();
    assert_eq!(enrolments(&store, &bob.order.id).await, 1);
    let level = stock::level(&store, "courses", "last-seat").await.unwrap();
    assert_eq!((level.held, level.sold), (0, 1));
    // A refund of a payment Stripe does not know is refused, as Stripe refuses it.
    let again = client(&base, KEY).create_refund("pi_unknown", "k").await;
    assert!(matches!(again, Err(StripeError::Api { status: 404, .. })));
    store.close().await;
}
