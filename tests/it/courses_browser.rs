//! A student in a real headless Chromium, at a phone's width: signs up, opens the verification
//! link a real SMTP server (aiosmtpd) received, signs in, buys a seat through the TEST MODE
//! checkout, opens the paid lesson and its attachment, marks it done, and the receipt arrives
//! at the SMTP server. The operator's admin pages show the sale, and a refund from there takes
//! the lesson away again.

use std::time::Duration;

use http::StatusCode;

use crate::browser::{self, Browser};
use crate::commerce_support::{Engine, SmtpServer, TestDb};
use crate::courses::{eventually, open_store, seed, site_config};
use crate::support::{Node, admin_section, csrf_in, free_port, node_get, node_request, sign_in};

const EMAIL: &str = "student@example.com";
const PASSWORD: &str = "a long enough password";

async fn fill(browser: &Browser, css: &str, text: &str) {
    let field = browser.wait_for(css, browser::DEFAULT_WAIT).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn body_text(browser: &Browser) -> String {
    browser
        .eval("return document.body.innerText")
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Clicks `css` and waits for a page whose path is `then_path`.
async fn click_to(browser: &Browser, css: &str, then_path: &str) {
    browser.click(css).await.unwrap();
    browser
        .wait_for_url(Duration::from_secs(15), |url| url.path() == then_path)
        .await
        .unwrap();
    browser
        .wait_for("main h1, h1", browser::DEFAULT_WAIT)
        .await
        .unwrap();
}

/// The page is no wider than the window.
async fn fits_the_window(browser: &Browser, what: &str) {
    let widths = browser
        .eval("return [document.documentElement.scrollWidth, window.innerWidth]")
        .await
        .unwrap();
    assert!(
        widths[0].as_u64().unwrap() <= widths[1].as_u64().unwrap(),
        "{what} is wider than the window: {widths}"
    );
}

/// The text of the first mail to `to` whose subject holds `subject`, once it arrived.
async fn mail(smtp: &SmtpServer, to: &str, subject: &str) -> String {
    let found = || {
        smtp.messages().into_iter().find(|m| {
            m["rcpt_tos"][0].as_str() == Some(to)
                && m["subject"].as_str().unwrap_or_default().contains(subject)
        })
    };
    eventually(
        Duration::from_secs(15),
        &format!("a `{subject}` mail"),
        || {
            let seen = found().is_some();
            async move { seen }
        },
    )
    .await;
    found().unwrap()["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_student_signs_up_verifies_buys_and_opens_a_paid_lesson_in_chromium() {
    let db = TestDb::new(Engine::Sqlite).await;
    let store = open_store(&db).await;
    let (slug, _) = seed(&store, "rust", 5).await;
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("notes.txt"), "the notes of lesson 2").unwrap();
    let smtp = SmtpServer::start(0);
    let port = free_port();
    let extra = format!("files_dir = {:?}\n", files.path().display().to_string());
    let config = site_config(port, &db.config, Some(smtp.port), &extra) + &admin_section();
    let node = Node::start(&config);
    let site = format!("http://127.0.0.1:{port}/courses");

    let browser = browser::start().await.expect("headless chromium");
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.goto(&format!("{site}/")).await.unwrap();
    fits_the_window(&browser, "the catalog").await;
    assert!(body_text(&browser).await.contains("Course rust"));

    // Sign up; the verification link arrives at the SMTP server.
    click_to(&browser, "#sign-up", "/courses/account/signup").await;
    fill(&browser, "#email", EMAIL).await;
    fill(&browser, "#password", PASSWORD).await;
    click_to(&browser, "#submit", "/courses/account/signup").await;
    assert!(body_text(&browser).await.contains("Check your mail"));
    let text = mail(&smtp, EMAIL, "").await;
    let link = text
        .split_whitespace()
        .find(|word| word.starts_with(&format!("{site}/account/verify?token=")))
        .unwrap_or_else(|| panic!("no verification link in {text}"))
        .to_owned();
    browser.goto(&link).await.unwrap();
    assert!(body_text(&browser).await.contains("Address confirmed"));

    // Sign in; "my courses" is empty.
    click_to(&browser, "#next-step", "/courses/account/signin").await;
    fill(&browser, "#email", EMAIL).await;
    fill(&browser, "#password", PASSWORD).await;
    click_to(&browser, "#submit", "/courses/my").await;
    browser
        .wait_for("#no-courses", browser::DEFAULT_WAIT)
        .await
        .unwrap();

    // The paid lesson is closed; buy a seat through the TEST MODE checkout.
    browser
        .goto(&format!("{site}/c/{slug}/lessons/2"))
        .await
        .unwrap();
    assert!(body_text(&browser).await.contains("for the students"));
    browser.goto(&format!("{site}/c/{slug}")).await.unwrap();
    fits_the_window(&browser, "the course page").await;
    browser.click("#buy-1").await.unwrap();
    browser
        .wait_for_url(Duration::from_secs(15), |url| {
            url.path().starts_with("/courses/test-checkout/pay/")
        })
        .await
        .unwrap();
    assert!(body_text(&browser).await.contains("TEST MODE"));
    fits_the_window(&browser, "the pay page").await;
    click_to(&browser, "#pay", "/courses/checkout/done").await;

    // Enrolled: the paid lesson opens, with its attachment through a signed link.
    browser
        .goto(&format!("{site}/c/{slug}/lessons/2"))
        .await
        .unwrap();
    let lesson = browser
        .wait_for("#lesson-body", browser::DEFAULT_WAIT)
        .await
        .unwrap();
    assert_eq!(lesson.text().await.unwrap(), "The text of Ownership.");
    fits_the_window(&browser, "the lesson").await;
    let href = browser
        .eval("return document.querySelector('#attachment').href")
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let path = href
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap();
    let (status, _, body) = node_request(&node, http::Method::GET, path, "", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "the notes of lesson 2")
    );
    let edited = path.replace("exp=", "exp=1");
    let (status, _, _) = node_request(&node, http::Method::GET, &edited, "", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an edited expiry");

    // Progress.
    click_to(
        &browser,
        "#mark-done",
        &format!("/courses/c/{slug}/lessons/2"),
    )
    .await;
    browser
        .wait_for("#done", browser::DEFAULT_WAIT)
        .await
        .unwrap();
    browser.goto(&format!("{site}/my")).await.unwrap();
    assert!(body_text(&browser).await.contains("1 of 3 lessons done"));
    fits_the_window(&browser, "my courses").await;

    // The receipt, at the SMTP server.
    let receipt = mail(&smtp, EMAIL, "receipt").await;
    assert!(receipt.contains("49.00 USD"), "{receipt}");

    // The operator sees the order, the seat and the revenue in the admin.
    let admin = sign_in(&node).await;
    let (status, page) = node_get(&node, "/admin/courses/", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("49.00 USD"), "revenue: {page}");
    for (path, holds) in [
        ("/admin/courses/courses", "Course rust"),
        ("/admin/courses/cohorts", "Spring"),
        ("/admin/courses/orders", "paid"),
    ] {
        let (status, page) = node_get(&node, path, &admin).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(page.contains(holds), "{path}: {page}");
    }

    // A refund from the admin: the provider's charge.refunded event takes the lesson away.
    let (_, orders) = node_get(&node, "/admin/courses/orders", &admin).await;
    let at = orders.find("name=\"order\" value=\"").unwrap() + 20;
    let order = &orders[at..at + orders[at..].find('"').unwrap()];
    let (status, _, page) = node_request(
        &node,
        http::Method::POST,
        "/admin/courses/orders/refund",
        &admin,
        &[("csrf", &csrf_in(&orders)), ("order", order)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Refund of order"), "{page}");
    let (_, orders) = node_get(&node, "/admin/courses/orders", &admin).await;
    assert!(orders.contains("refunded"), "{orders}");
    browser
        .goto(&format!("{site}/c/{slug}/lessons/2"))
        .await
        .unwrap();
    assert!(
        body_text(&browser).await.contains("for the students"),
        "access revoked by the refund"
    );
    browser.close().await.unwrap();
    drop(node);
    store.close().await;
    db.cleanup().await;
}
