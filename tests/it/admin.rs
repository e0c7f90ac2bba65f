//! The embedded admin over HTTP: sign-in with the users file, wrong passwords, CSRF, expired
//! sessions, rate-limited attempts, sign-out, and its static files.

use crate::support::*;
use bytes::Bytes;
use http_body_util::Full;

const PASSWORD: &str = "correct horse battery staple";

fn users_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bourse-admin-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("users.json");
    bourse_admin::Users::set_password(&path, "ops", PASSWORD).unwrap();
    path
}

async fn admin(extra: &str) -> Exchange {
    let path = users_file();
    Exchange::start(&config(
        &format!(
            "\n[plugins.admin]\nusers_file = {:?}\n{extra}",
            path.display().to_string()
        ),
        &[],
    ))
    .await
}

/// The value of `name` in the response's `Set-Cookie` headers.
fn set_cookie(headers: &http::HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let value = v[name.len() + 1..].split(';').next().unwrap().to_owned();
            (value, v.to_owned())
        })
}

async fn get(
    ex: &Exchange,
    path: &str,
    cookie: &str,
) -> (http::StatusCode, http::HeaderMap, String) {
    let req = http::Request::get(ex.url(path))
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, body) = ex.send(req).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn post(
    ex: &Exchange,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let req = http::Request::post(ex.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, headers, body) = ex.send(req).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Loads the sign-in page: the CSRF cookie and the form's token.
async fn login_form(ex: &Exchange) -> (String, String) {
    let (status, headers, page) = get(ex, "/admin/login", "").await;
    assert_eq!(status, 200);
    let (cookie, attributes) = set_cookie(&headers, "bourse_admin_csrf").unwrap();
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"));
    (format!("bourse_admin_csrf={cookie}"), csrf_in(&page))
}

/// Signs in and returns the session cookie.
async fn sign_in(ex: &Exchange) -> String {
    let (cookie, csrf) = login_form(ex).await;
    let (status, headers, body) = post(
        ex,
        "/admin/login",
        &cookie,
        &[("csrf", &csrf), ("user", "ops"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(headers["location"], "/admin");
    let (session, attributes) = set_cookie(&headers, "bourse_admin_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    assert!(
        !attributes.contains("Secure"),
        "plain HTTP here: {attributes}"
    );
    format!("bourse_admin_session={session}")
}

#[tokio::test]
async fn signing_in_opens_the_overview_and_signing_out_closes_it() {
    let ex = admin("").await;
    let (status, headers, _) = get(&ex, "/admin", "").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/login");

    let session = sign_in(&ex).await;
    let (status, headers, page) = get(&ex, "/admin", &session).await;
    assert_eq!(status, 200);
    assert!(page.contains("Overview") && page.contains("ops"), "{page}");
    assert!(page.contains("<td>exchange</td>"), "plugins listed: {page}");
    assert_eq!(headers["x-frame-options"], "DENY");

    // Signing out needs the session's CSRF token, then ends the session.
    let (status, _, _) = post(&ex, "/admin/logout", &session, &[]).await;
    assert_eq!(status, 403, "sign-out without a CSRF token is refused");
    assert_eq!(get(&ex, "/admin", &session).await.0, 200, "still signed in");
    let csrf = csrf_in(&page);
    let (status, headers, _) = post(&ex, "/admin/logout", &session, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/login");
    let (status, headers, _) = get(&ex, "/admin", &session).await;
    assert_eq!(status, 303, "the old session cookie no longer works");
    assert_eq!(headers["location"], "/admin/login");
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_gets_no_session() {
    let ex = admin("").await;
    for (user, password) in [("ops", "not the password at all"), ("nobody", PASSWORD)] {
        let (cookie, csrf) = login_form(&ex).await;
        let (status, headers, page) = post(
            &ex,
            "/admin/login",
            &cookie,
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await;
        assert_eq!(status, 401);
        assert!(page.contains("Wrong user or password."), "{page}");
        assert!(set_cookie(&headers, "bourse_admin_session").is_none());
    }
}

#[tokio::test]
async fn sign_in_without_the_csrf_token_is_refused() {
    let ex = admin("").await;
    let (cookie, csrf) = login_form(&ex).await;
    let form = [("user", "ops"), ("password", PASSWORD)];
    // No token, a token without its cookie, and a token that does not match the cookie.
    assert_eq!(post(&ex, "/admin/login", &cookie, &form).await.0, 403);
    let with_token = [
        ("csrf", csrf.as_str()),
        ("user", "ops"),
        ("password", PASSWORD),
    ];
    assert_eq!(post(&ex, "/admin/login", "", &with_token).await.0, 403);
    let other =
        "bourse_admin_csrf=0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(post(&ex, "/admin/login", other, &with_token).await.0, 403);
}

#[tokio::test]
async fn an_expired_session_must_sign_in_again() {
    let ex = admin("session_ttl_secs = 1\n").await;
    let session = sign_in(&ex).await;
    assert_eq!(get(&ex, "/admin", &session).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (status, headers, _) = get(&ex, "/admin", &session).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/login");
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited_per_client() {
    let ex = admin("login_attempts_per_minute = 3\n").await;
    let (cookie, csrf) = login_form(&ex).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("user", "ops"),
        ("password", "guess guess guess"),
    ];
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(post(&ex, "/admin/login", &cookie, &form).await.0.as_u16());
    }
    assert_eq!(statuses, vec![401, 401, 401, 429, 429]);
    // Even the right password waits out the limit.
    let right = [
        ("csrf", csrf.as_str()),
        ("user", "ops"),
        ("password", PASSWORD),
    ];
    assert_eq!(post(&ex, "/admin/login", &cookie, &right).await.0, 429);
}

#[tokio::test]
async fn static_files_are_served_and_traversal_is_not() {
    let ex = admin("").await;
    let (status, headers, css) = get(&ex, "/admin/static/admin.css", "").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.contains("body"));
    for path in [
        "/admin/static/..%2f..%2fCargo.toml",
        "/admin/static/%2e%2e/%2e%2e/Cargo.toml",
        "/admin/static/.%252e/.%252e/Cargo.toml",
        "/admin/static/%5c..%5c..%5cCargo.toml",
        "/admin/static/c:/windows/win.ini",
        "/admin/static//etc/passwd",
        "/admin/static/%2fetc%2fpasswd",
    ] {
        let (status, _, body) = get(&ex, path, "").await;
        assert_eq!(status, 404, "{path}");
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{path}"
        );
    }
}
