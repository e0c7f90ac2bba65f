//! The courses site through the real binary over HTTP: webhooks signed by Stripe's own Node
//! library accepted and every forgery refused, one enrolment however often an event arrives;
//! 1,000 concurrent checkouts for 100 seats on SQLite, on PostgreSQL and on two nodes sharing
//! one PostgreSQL; and session cookies forged, stale, misdirected or revoked all refused.
//! The store, aiosmtpd and stripe-node helpers are the commerce tests' own
//! (`commerce/tests/it/support.rs`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bourse_commerce::session::{KeyRing, SessionConfig, Sessions, SigningKey};
use bourse_commerce::{Store, StoreConfig, clock, schema};
use bourse_courses::catalog::{self, NewCourse, NewLesson};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use serde_json::json;

use crate::commerce_support::{Engine, TestDb, stripe_node_signature};
use crate::support::{Node, cookie_from, csrf_in, free_port, node_request};

pub const WHSEC: &str = "whsec_courses_site_test_secret";
pub const SITE: &str = "courses";

/// The `[sites.store]` table for a test database.
pub fn store_table(config: &StoreConfig) -> String {
    match (&config.url, &config.schema) {
        (Some(url), Some(schema)) => {
            format!("[sites.store]\nurl = {url:?}\nschema = {schema:?}\nmax_connections = 16\n")
        }
        (Some(url), None) => format!("[sites.store]\nurl = {url:?}\n"),
        (None, _) => format!(
            "[sites.store]\npath = {:?}\n",
            config.path.display().to_string()
        ),
    }
}

/// A bourse config serving the courses site on `port` with the TEST MODE checkout.
pub fn site_config(port: u16, db: &StoreConfig, smtp: Option<u16>, extra: &str) -> String {
    let mail = smtp
        .map(|port| {
            format!(
                "[sites.mail]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
                 from = \"Courses <no-reply@courses.test>\"\ntimeout_ms = 2000\n"
            )
        })
        .unwrap_or_default();
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_grace_ms = 1000\n\n\
         [log]\nformat = \"text\"\nlevel = \"warn\"\n\n{}\n{mail}\n\
         [plugins.courses]\npublic_url = \"http://127.0.0.1:{port}/courses\"\n\
         secret = \"a test secret of the courses site, 32+\"\n{extra}\n\
         [plugins.courses.stripe]\nsecret_key = \"sk_test_courses\"\n\
         webhook_secret = \"{WHSEC}\"\ntest_mode = true\n",
        store_table(db)
    )
}

/// Opens the test database with every module the site uses.
pub async fn open_store(db: &TestDb) -> Store {
    let mut modules = schema::ALL.to_vec();
    modules.push(&catalog::MODULE);
    db.open(&modules).await
}

/// A course with three lessons (the first a free preview, the second with an attachment) and
/// one cohort of `seats`; returns the course's slug and the cohort's id.
pub async fn seed(store: &Store, slug: &str, seats: i64) -> (String, String) {
    let course = catalog::create_course(
        store,
        &NewCourse {
            slug: slug.into(),
            title: format!("Course {slug}"),
            summary: "A course for the tests.".into(),
            price_minor: 4_900,
            currency: "usd".into(),
        },
    )
    .await
    .unwrap();
    for (title, preview, attachment) in [
        ("Welcome", true, None),
        ("Ownership", false, Some("notes.txt")),
        ("Traits", false, None),
    ] {
        catalog::add_lesson(
            store,
            &course.id,
            &NewLesson {
                title: title.into(),
                body: format!("The text of {title}."),
                preview,
                attachment: attachment.map(str::to_owned),
            },
        )
        .await
        .unwrap();
    }
    let cohort = catalog::add_cohort(store, SITE, &course.id, "Spring", seats)
        .await
        .unwrap();
    (course.slug, cohort)
}

/// A visitor's cookies and form token, from a course page.
pub async fn visitor(node: &Node, slug: &str) -> (String, String) {
    let (status, headers, page) = node_request(
        node,
        http::Method::GET,
        &format!("/courses/c/{slug}"),
        "",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let cookie = format!(
        "{}; {}",
        cookie_from(&headers, "courses_visitor"),
        cookie_from(&headers, "courses_csrf")
    );
    (cookie, csrf_in(&page))
}

/// Starts a checkout as a guest: the status and the `Location` (the pay page) or the page.
pub async fn start_checkout(
    node: &Node,
    cookie: &str,
    csrf: &str,
    cohort: &str,
    email: &str,
) -> (StatusCode, String) {
    let (status, headers, page) = node_request(
        node,
        http::Method::POST,
        "/courses/checkout",
        cookie,
        &[("csrf", csrf), ("cohort", cohort), ("email", email)],
    )
    .await;
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location.unwrap_or(page))
}

pub async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.reader())
        .await
        .unwrap()
}

/// The order a checkout session belongs to.
async fn order_of(store: &Store, session: &str) -> String {
    sqlx::query_scalar("SELECT id FROM orders WHERE checkout_id = $1")
        .bind(session)
        .fetch_one(store.reader())
        .await
        .unwrap()
}

fn completed_event(event: &str, session: &str, order: &str) -> String {
    json!({
        "id": event, "object": "event", "type": "checkout.session.completed",
        "created": clock::now(), "livemode": false,
        "data": {"object": {"id": session, "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "amount_total": 4_900, "currency": "usd",
            "client_reference_id": order, "payment_intent": format!("pi_{event}")}}
    })
    .to_string()
}

async fn deliver(node: &Node, payload: &str, signature: Option<&str>) -> (StatusCode, String) {
    let mut request = http::Request::post(node.url("/courses/webhooks/stripe"))
        .header("content-type", "application/json");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let (status, _, body) = node
        .client_request(
            request
                .body(Full::new(Bytes::from(payload.to_owned())))
                .unwrap(),
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn stripe_node_signed_webhooks_are_accepted_and_forgeries_refused() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    let (slug, cohort) = seed(&store, "webhooks", 10).await;
    let node = Node::start(&site_config(free_port(), &db.config, None, ""));
    let (cookie, csrf) = visitor(&node, &slug).await;
    let (status, pay_url) = start_checkout(&node, &cookie, &csrf, &cohort, "ann@example.com").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{pay_url}");
    let session = pay_url.rsplit('/').next().unwrap().to_owned();
    assert!(session.starts_with("cs_test_"), "{pay_url}");
    let order = order_of(&store, &session).await;
    let payload = completed_event("evt_site_1", &session, &order);
    let now = clock::now();

    // Refused with 400 before anything is recorded.
    let signed = stripe_node_signature(&payload, WHSEC, now);
    let tampered = payload.replace("4900", "1");
    assert_ne!(tampered, payload);
    let wrong_secret = stripe_node_signature(&payload, "whsec_not_the_site_secret", now);
    let stale = stripe_node_signature(&payload, WHSEC, now - 301);
    for (what, body, header) in [
        ("tampered body", tampered.as_str(), Some(signed.as_str())),
        (
            "wrong secret",
            payload.as_str(),
            Some(wrong_secret.as_str()),
        ),
        ("older than 300 s", payload.as_str(), Some(stale.as_str())),
        ("missing header", payload.as_str(), None),
    ] {
        let (status, body) = deliver(&node, body, header).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    }
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM payment_events"
        )
        .await,
        0
    );

    // Stripe-node's signature, delivered 20 times at once: one enrolment.
    let deliveries = (0..20).map(|_| deliver(&node, &payload, Some(&signed)));
    let replies = futures_util::future::join_all(deliveries).await;
    for (status, body) in &replies {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let applied = replies
        .iter()
        .filter(|(_, body)| body.contains("\"applied\""))
        .count();
    assert_eq!(applied, 1, "{replies:?}");
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM enrolments WHERE revoked_at IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE state = 'paid'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&store, "SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox").await,
        1,
        "one receipt queued"
    );
    let level = bourse_commerce::stock::level(&store, SITE, &catalog::seat_item(&cohort))
        .await
        .unwrap();
    assert_eq!((level.held, level.sold), (0, 1));
    assert_eq!(
        node.metric("bourse_site_webhooks_total{outcome=\"duplicate\",site=\"courses\"}")
            .await,
        19.0
    );
    assert_eq!(
        node.metric("bourse_site_webhooks_total{outcome=\"bad_signature\",site=\"courses\"}")
            .await,
        4.0
    );
    drop(node);
    store.close().await;
    db.cleanup().await;
}

/// 1,000 guest checkouts at once for a cohort of 100, spread over `nodes`.
async fn thousand_checkouts_for_a_hundred_seats(engine: Engine, nodes: usize) {
    let db = TestDb::new(engine).await;
    let store = open_store(&db).await;
    let (slug, cohort) = seed(&store, "rush", 100).await;
    let nodes: Vec<Node> = (0..nodes)
        .map(|_| Node::start(&site_config(free_port(), &db.config, None, "")))
        .collect();
    let mut visitors = Vec::new();
    for node in &nodes {
        visitors.push(visitor(node, &slug).await);
    }
    let attempts =
        (0..1_000).map(|i| {
            let node = &nodes[i % nodes.len()];
            let (cookie, csrf) = &visitors[i % nodes.len()];
            let cohort = &cohort;
            async move {
                start_checkout(node, cookie, csrf, cohort, &format!("buyer{i}@example.com")).await
            }
        });
    let results = futures_util::future::join_all(attempts).await;
    let reserved = results
        .iter()
        .filter(|(status, location)| {
            *status == StatusCode::SEE_OTHER && location.contains("/test-checkout/pay/cs_test_")
        })
        .count();
    let refused = results
        .iter()
        .filter(|(status, page)| {
            *status == StatusCode::CONFLICT && page.contains("This cohort is full")
        })
        .count();
    let others: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status != StatusCode::SEE_OTHER && *status != StatusCode::CONFLICT)
        .take(3)
        .collect();
    assert_eq!((reserved, refused), (100, 900), "{others:?}");
    let level = bourse_commerce::stock::level(&store, SITE, &catalog::seat_item(&cohort))
        .await
        .unwrap();
    assert_eq!(level.held + level.sold, 100, "{level:?}");
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM stock_holds WHERE state = 'held'"
        )
        .await,
        100
    );
    drop(nodes);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn thousand_checkouts_for_a_hundred_seats_on_sqlite() {
    thousand_checkouts_for_a_hundred_seats(Engine::Sqlite, 1).await;
}

#[tokio::test]
async fn thousand_checkouts_for_a_hundred_seats_on_postgres() {
    thousand_checkouts_for_a_hundred_seats(Engine::Postgres, 1).await;
}

#[tokio::test]
async fn thousand_checkouts_for_a_hundred_seats_on_two_nodes_sharing_postgres() {
    thousand_checkouts_for_a_hundred_seats(Engine::Postgres, 2).await;
}

/// A verified account straight in the store (the sign-up path has its own browser test).
async fn account(store: &Store) -> String {
    let id = bourse_commerce::secret::new_id("acct");
    sqlx::query(
        "INSERT INTO accounts (id, email, password_hash, created_at, password_changed_at, \
         verified_at) VALUES ($1, $2, 'x', 0, 0, 0)",
    )
    .bind(&id)
    .bind(format!("{id}@example.com"))
    .execute(store.writer())
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn site_refuses_forged_stale_misdirected_and_revoked_session_cookies() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    let port = free_port();
    let key = SigningKey::generate("k1");
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), key.to_config().seed).unwrap();
    let extra = format!(
        "[plugins.courses.session]\nsigning_key_file = {:?}\nkey_id = \"k1\"\n",
        key_file.path().display().to_string()
    );
    let node = Node::start(&site_config(port, &db.config, None, &extra));
    let public = format!("http://127.0.0.1:{port}/courses");
    let minted = |audience: &str| {
        Sessions::new(
            store.clone(),
            SessionConfig::new(format!("http://127.0.0.1:{port}"), audience),
            KeyRing::new(&key).unwrap(),
        )
    };
    let site = minted(&public);
    let acct = account(&store).await;
    let mut tx = store.begin().await.unwrap();
    let issued = site.start(&mut tx, &acct).await.unwrap();
    tx.commit().await.unwrap();
    let my = |token: String| {
        let node = &node;
        async move {
            let cookie = format!("courses_session={token}");
            node_request(node, http::Method::GET, "/courses/my", &cookie, &[]).await
        }
    };
    let (status, _, page) = my(issued.access_token.clone()).await;
    assert_eq!(status, StatusCode::OK, "the genuine cookie opens the page");
    assert!(page.contains("My courses"), "{page}");

    let now = clock::now();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    let claims = json!({"sub": acct, "aud": public, "iss": format!("http://127.0.0.1:{port}"),
        "exp": now + 900, "nbf": now, "iat": now, "sid": issued.family_id, "jti": "jwt_x"});
    let unsigned = format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some("k1".into());
    let swapped = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key.public_key()),
    )
    .unwrap();
    let expired = site
        .access_token(&acct, &issued.family_id, now - 3_600)
        .unwrap()
        .0;
    let not_yet = site
        .access_token(&acct, &issued.family_id, now + 3_600)
        .unwrap()
        .0;
    let elsewhere = minted("http://127.0.0.1:1/shop")
        .access_token(&acct, &issued.family_id, now)
        .unwrap()
        .0;
    for (what, token) in [
        ("alg=none", unsigned),
        ("HS256 keyed with the public key", swapped),
        ("expired", expired),
        ("not yet valid", not_yet),
        ("another audience", elsewhere),
    ] {
        let (status, headers, _) = my(token).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{what}");
        let location = headers["location"].to_str().unwrap();
        assert!(
            location.starts_with("/courses/account/signin"),
            "{what}: {location}"
        );
    }

    // Signed out (the refresh family revoked): the access token still in its 15 minutes is
    // refused too.
    site.end(&issued.refresh_token).await.unwrap();
    let (status, _, _) = my(issued.access_token.clone()).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "revoked");
    drop(node);
    store.close().await;
    db.cleanup().await;
}

/// Paid lessons and attachments: 403 with a buy link for visitors, attachments only through
/// the signed link, a forged or edited link refused, a traversing name never read.
#[tokio::test]
async fn paid_lessons_and_attachments_are_for_students_only() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    let (slug, _) = seed(&store, "locked", 5).await;
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("notes.txt"), "the notes").unwrap();
    std::fs::write(files.path().join("secret.txt"), "not for anyone").unwrap();
    let extra = format!("files_dir = {:?}\n", files.path().display().to_string());
    let node = Node::start(&site_config(free_port(), &db.config, None, &extra));
    let get = |path: String| {
        let node = &node;
        async move { node_request(node, http::Method::GET, &path, "", &[]).await }
    };
    let (status, _, page) = get(format!("/courses/c/{slug}/lessons/1")).await;
    assert_eq!(status, StatusCode::OK, "the free preview");
    assert!(page.contains("The text of Welcome."));
    let (status, _, page) = get(format!("/courses/c/{slug}/lessons/2")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains(&format!("/courses/c/{slug}#buy")), "{page}");
    assert!(!page.contains("The text of Ownership."));

    // Only a student's page carries the signed link; forge one from the site's own signer.
    let lesson = catalog::lessons(
        &store,
        &catalog::course_by_slug(&store, &slug)
            .await
            .unwrap()
            .unwrap()
            .id,
    )
    .await
    .unwrap()
    .remove(1);
    let (status, _, _) = get(format!(
        "/courses/files/{}/notes.txt?exp={}&sig=AAAA",
        lesson.id,
        clock::now() + 60
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a forged signature");
    for name in ["..%2Fsecret.txt", "%2E%2E%2Fsecret.txt", ".hidden", "a%5Cb"] {
        let (status, _, page) = get(format!(
            "/courses/files/{}/{name}?exp={}&sig=AAAA",
            lesson.id,
            clock::now() + 60
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
        assert!(!page.contains("not for anyone"));
    }
    drop(node);
    store.close().await;
    db.cleanup().await;
}

/// Waits until `check` holds, polling for up to `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `kill -9` of the bourse process during a burst of 500 webhooks, then a restart and the
/// redelivery of all 500: every paid order enrolled once, every receipt received once at the
/// SMTP server (a mail in flight at the kill may repeat, with its same Message-ID).
async fn killed_mid_burst_then_redelivered(engine: Engine) {
    use bourse_commerce::orders::{self, NewLine, NewOrder};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const ORDERS: usize = 500;
    const KILL_AFTER: usize = 150;

    let db = TestDb::new(engine).await;
    let store = open_store(&db).await;
    let (_, cohort) = seed(&store, "crash", ORDERS as i64).await;
    let item = catalog::seat_item(&cohort);
    let mut payloads = Vec::with_capacity(ORDERS);
    let mut tx = store.begin().await.unwrap();
    for i in 0..ORDERS {
        let order = orders::create(
            &mut tx,
            &NewOrder {
                site: SITE.into(),
                account_id: None,
                email: Some(format!("buyer{i}@example.com")),
                currency: "usd".into(),
                lines: vec![NewLine {
                    sku: item.clone(),
                    description: "Course crash: Spring".into(),
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
        bourse_commerce::stock::reserve(
            &mut tx,
            SITE,
            &item,
            1,
            clock::now() + 3_600,
            Some(&order.id),
        )
        .await
        .unwrap();
        payloads.push(completed_event(
            &format!("evt_crash_{i}"),
            &session,
            &order.id,
        ));
    }
    tx.commit().await.unwrap();
    let smtp = crate::commerce_support::SmtpServer::start(0);
    let node = Node::start(&site_config(free_port(), &db.config, Some(smtp.port), ""));
    let config_path = node.config_path.clone();

    // Stripe signs every attempt at the time it sends it.
    let burst = |node: Arc<Node>, acknowledged: Arc<AtomicUsize>| {
        let payloads = payloads.clone();
        async move {
            use futures_util::StreamExt;
            futures_util::stream::iter(payloads)
                .map(|payload| {
                    let node = node.clone();
                    let acknowledged = acknowledged.clone();
                    async move {
                        let signature = bourse_commerce::stripe::webhook::sign_header(
                            payload.as_bytes(),
                            WHSEC,
                            clock::now(),
                        );
                        let request = http::Request::post(node.url("/courses/webhooks/stripe"))
                            .header("stripe-signature", signature)
                            .body(Full::new(Bytes::from(payload)))
                            .unwrap();
                        // A refused connection or a cut answer, once killed, is no answer.
                        let answered = tokio::time::timeout(Duration::from_secs(10), async {
                            let response = node.raw_request(request).await.ok()?;
                            Some(response)
                        })
                        .await
                        .ok()
                        .flatten();
                        if answered == Some(StatusCode::OK) {
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        answered
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        }
    };
    let node = Arc::new(node);
    let first_acks = Arc::new(AtomicUsize::new(0));
    let first = tokio::spawn(burst(node.clone(), first_acks.clone()));
    while first_acks.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-9", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    first.await.unwrap();
    let paid_at_kill = count(
        &store,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE state = 'paid'",
    )
    .await;
    assert!(
        (KILL_AFTER as i64..ORDERS as i64).contains(&paid_at_kill),
        "killed mid-burst: {paid_at_kill} of {ORDERS} paid"
    );
    drop(node);

    // Restarted on the same config; the provider redelivers every event.
    let node = Arc::new(Node::start_at(&config_path, &[]));
    let second_acks = Arc::new(AtomicUsize::new(0));
    let replies = burst(node.clone(), second_acks.clone()).await;
    assert!(
        replies.iter().all(|r| *r == Some(StatusCode::OK)),
        "every redelivery acknowledged"
    );
    let n = ORDERS as i64;
    eventually(Duration::from_secs(60), "every receipt sent", || {
        let store = &store;
        async move {
            count(
                store,
                "SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox WHERE sent_at IS NOT NULL",
            )
            .await
                == n
        }
    })
    .await;
    for (what, sql) in [
        (
            "paid",
            "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE state = 'paid'",
        ),
        (
            "enrolments",
            "SELECT CAST(COUNT(*) AS BIGINT) FROM enrolments",
        ),
        (
            "enrolled orders",
            "SELECT CAST(COUNT(DISTINCT order_id) AS BIGINT) FROM enrolments",
        ),
        (
            "events recorded",
            "SELECT CAST(COUNT(*) AS BIGINT) FROM payment_events",
        ),
        (
            "receipts queued",
            "SELECT CAST(COUNT(*) AS BIGINT) FROM mail_outbox",
        ),
    ] {
        assert_eq!(count(&store, sql).await, n, "{what}");
    }
    let level = bourse_commerce::stock::level(&store, SITE, &item)
        .await
        .unwrap();
    assert_eq!((level.held, level.sold), (0, n));
    let messages = smtp.messages();
    let mut ids: Vec<&str> = messages
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ORDERS, "every receipt received");
    assert!(
        messages.len() <= ORDERS + 1,
        "{} messages for {ORDERS} receipts: more than the one in flight at the kill",
        messages.len()
    );
    drop(node);
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn kill_9_mid_burst_then_redelivery_enrols_and_mails_once_on_sqlite() {
    killed_mid_burst_then_redelivered(Engine::Sqlite).await;
}

#[tokio::test]
async fn kill_9_mid_burst_then_redelivery_enrols_and_mails_once_on_postgres() {
    killed_mid_burst_then_redelivered(Engine::Postgres).await;
}

#[tokio::test]
async fn the_demo_sells_its_sample_courses_through_the_test_checkout() {
    let port = free_port();
    let demo = bourse::demo::start_bidders(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .expect("demo bidders start");
    let node = Node::start(&demo.config);
    let (status, _, catalog) = node_request(&node, http::Method::GET, "/courses/", "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(catalog.contains("Rust in depth") && catalog.contains("SQL for builders"));
    assert!(
        catalog.contains("TEST MODE"),
        "the demo's checkout says it is a test"
    );
    let (cookie, csrf) = visitor(&node, "rust-in-depth").await;
    let (_, _, page) = node_request(
        &node,
        http::Method::GET,
        "/courses/c/rust-in-depth",
        &cookie,
        &[],
    )
    .await;
    let at = page.find("name=\"cohort\" value=\"").unwrap() + 21;
    let cohort = &page[at..at + page[at..].find('"').unwrap()];
    let (status, pay_url) = start_checkout(&node, &cookie, &csrf, cohort, "ann@example.com").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{pay_url}");
    let pay_path = pay_url
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap();
    let (status, headers, _) = node_request(&node, http::Method::POST, pay_path, "", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .contains("/courses/checkout/done"),
        "{headers:?}"
    );
    drop(node);
    drop(demo);
}

/// Bad input in the site's tables: every problem named by its path and rule, nothing started.
#[test]
fn check_config_names_every_problem_of_the_courses_and_sites_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[sites.store]\nurl = \"mysql://db/x\"\n\n[sites.mail]\nhost = \"\"\nport = 25\n\
         security = \"none\"\nfrom = \"nobody\"\n\n[plugins.courses]\npublic_url = \"courses\"\n\
         secret = \"short\"\ncheckout_ttl_secs = 60\n\n[plugins.courses.stripe]\n\
         secret_key = \"sk_live_x\"\nwebhook_secret = \"whsec_0123456789abcdef\"\n\
         test_mode = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bourse"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "sites.store.url: must start with postgres://",
        "sites.mail.host: must not be empty",
        "sites.mail.from: must be a mail address",
        "plugins.courses.public_url: must be an absolute http(s) URL",
        "plugins.courses.secret: must be at least 32 characters",
        "plugins.courses.checkout_ttl_secs: must be between 1800",
        "plugins.courses.stripe.test_mode: needs an sk_test_ key",
    ] {
        assert!(stderr.contains(expected), "{expected}:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}
