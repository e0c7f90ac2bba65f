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
async fn the_sign_in_limit_holds_across_a_change_of_the_admins_settings() {
    let users = users_file();
    let with_ttl = |ttl: u32| {
        config(
            &format!(
                "\n[plugins.admin]\nusers_file = {:?}\nlogin_attempts_per_minute = 2\n\
                 session_ttl_secs = {ttl}\n",
                users.display().to_string()
            ),
            &[],
        )
    };
    let ex = Exchange::start(&with_ttl(3600)).await;
    let (cookie, csrf) = login_form(&ex).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("user", "ops"),
        ("password", "guess guess guess"),
    ];
    for _ in 0..2 {
        assert_eq!(post(&ex, "/admin/login", &cookie, &form).await.0, 401);
    }
    // A new generation of the admin: the attempts made under the old one still count.
    let running = ex.running.as_ref().unwrap();
    let loaded = running
        .load_config_str(&with_ttl(7200), "test.toml")
        .unwrap();
    let report = running.apply(loaded).await.unwrap();
    assert!(report.restarted.contains(&"admin".to_owned()), "{report:?}");
    assert_eq!(post(&ex, "/admin/login", &cookie, &form).await.0, 429);
    assert_eq!(
        ex.metric("bourse_kernel_rate_limited_total{limiter=\"admin.sign_in\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_sign_in_limit() {
    let users = users_file();
    let text = format!(
        "{}\n[server.access]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        config(
            &format!(
                "\n[plugins.admin]\nusers_file = {:?}\nlogin_attempts_per_minute = 2\n",
                users.display().to_string()
            ),
            &[]
        )
    );
    let ex = Exchange::start(&text).await;
    let (cookie, csrf) = login_form(&ex).await;
    let attempt = |client: &'static str| {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("csrf", csrf.as_str()),
                ("user", "ops"),
                ("password", "guess guess guess"),
            ])
            .finish();
        let req = http::Request::post(ex.url("/admin/login"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", client)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        async { ex.send(req).await.0.as_u16() }
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(attempt("198.51.100.7").await);
    }
    assert_eq!(statuses, vec![401, 401, 429]);
    // Another client behind the same proxy is not locked out by the first.
    assert_eq!(attempt("203.0.113.20").await, 401);
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
    // The charting library comes from the binary, never from another origin.
    let (status, headers, script) = get(&ex, "/admin/static/uplot.js", "").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
            && script.starts_with("/*! https://github.com/leeoniya/uPlot (v1.6.32) */"),
        "{headers:?}"
    );
    let (status, _, style) = get(&ex, "/admin/static/uplot.css", "").await;
    assert!(status == 200 && style.contains(".uplot"), "{status}");
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

    // A section's own files are for signed-in operators, and refuse traversal the same way.
    let (status, headers, _) = get(&ex, "/admin/exchange/static/live.js", "").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/login");
    let session = sign_in(&ex).await;
    let (status, headers, script) = get(&ex, "/admin/exchange/static/live.js", &session).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.contains("live.json") || script.contains("data-live-source"));
    for path in [
        "/admin/exchange/static/..%2f..%2f..%2fCargo.toml",
        "/admin/exchange/static/%2e%2e/%2e%2e/%2e%2e/Cargo.toml",
        "/admin/exchange/static/.%252e/.%252e/Cargo.toml",
        "/admin/exchange/static//etc/passwd",
    ] {
        let (status, _, body) = get(&ex, path, &session).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            !body.contains("[package]") && !body.contains("root:"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_navigation_lists_each_running_section_and_marks_the_current_page() {
    let ex = admin("").await;
    let session = sign_in(&ex).await;
    let (status, _, page) = get(&ex, "/admin/exchange/bidders", &session).await;
    assert_eq!(status, 200);
    // Overview first, then the exchange's group, then the shell's own pages.
    let order: Vec<usize> = [
        "href=\"/admin\"",
        "aria-label=\"Exchange\"",
        "href=\"/admin/exchange/publishers\"",
        "href=\"/admin/exchange/bidders\" aria-current=\"page\"",
        "href=\"/admin/plugins\"",
        "href=\"/admin/config\"",
    ]
    .iter()
    .map(|needle| {
        page.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {page}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}: {page}");
    assert!(
        page.contains("<title>Bidders · Exchange · bourse admin</title>"),
        "{page}"
    );
    assert!(page.contains("<h1>Bidders</h1>") && page.contains("class=\"signout\""));
    // An unknown instance, or a path the section does not have, is not found.
    assert_eq!(get(&ex, "/admin/nothing", &session).await.0, 404);
    assert_eq!(get(&ex, "/admin/exchange/nothing", &session).await.0, 404);
    // The plugin list: every instance with its kind, version, mounts and state.
    let (status, _, page) = get(&ex, "/admin/plugins", &session).await;
    assert_eq!(status, 200);
    let exchange = bourse_kernel::Plugin::manifest(&bourse_engine::ExchangePlugin::new(
        bourse_bidders::registry(),
    ));
    let version = format!("<td>{}</td>", exchange.version);
    for needle in [
        "<td>exchange</td>",
        "<td>admin</td>",
        "/openrtb2/",
        "/debug/pprof",
        "<td>active</td>",
        &version,
        &exchange.description,
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
}

#[tokio::test]
async fn a_section_post_needs_the_session_and_its_csrf_token() {
    // The real binary: it serves the config center, through which the section applies.
    let node = Node::start(&config(&admin_section(), &[]));
    let form = [("id", "blog"), ("name", "Blog")];
    let publishers = "/admin/exchange/publishers";
    // Without a session: sent to sign in, nothing applied.
    let (status, headers, _) = node_request(&node, http::Method::POST, publishers, "", &form).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/admin/login");
    // With a session but no token, or another token: refused.
    let session = crate::support::sign_in(&node).await;
    let post = |form: Vec<(&'static str, String)>| {
        let (node, session) = (&node, session.clone());
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            node_request(node, http::Method::POST, publishers, &session, &form).await
        }
    };
    let typed = || vec![("id", "blog".to_owned()), ("name", "Blog".to_owned())];
    assert_eq!(post(typed()).await.0, 403);
    let mut forged = typed();
    forged.push(("csrf", "0000".to_owned()));
    assert_eq!(post(forged).await.0, 403);
    let (_, _, page) = node_request(&node, http::Method::GET, publishers, &session, &[]).await;
    assert!(
        !page.contains(">blog</a></td>"),
        "nothing was applied: {page}"
    );
    // With the session's token the section gets the form and applies it.
    let mut signed = typed();
    signed.push(("csrf", csrf_in(&page)));
    let (status, headers, body) = post(signed).await;
    assert_eq!(status, 303, "{body}");
    let saved = format!("{publishers}?saved=publisher&name=blog");
    assert_eq!(headers["location"], saved.as_str());
    // The page it lands on says the save worked.
    let (_, _, page) = node_request(&node, http::Method::GET, &saved, &session, &[]).await;
    assert!(
        page.contains(">blog</a></td>")
            && page.contains("Saved publisher blog. It applies from the next request."),
        "{page}"
    );
    // Rolling back to the config before it is previewed as removing that publisher.
    let (_, preview) = node_get(&node, "/admin/config/rollback?seq=1", &session).await;
    assert!(
        preview.contains("This rollback removes or turns off:")
            && preview.contains("<li>1 [[plugins.exchange.publishers]] table</li>")
            && preview.contains("-id = &#34;blog&#34;"),
        "{preview}"
    );
}
