//! The shell hosting a plugin it knows nothing of: a small `notes` kind with an admin section
//! is signed into, navigated, summarised on the overview, listed with the plugins, and edited
//! through the config center with its refusal placed beside the field, over real sockets.

mod notes;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;

const PASSWORD: &str = "a long enough test passphrase";

struct Admin {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    _running: Arc<bourse_kernel::Running>,
}

struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Admin {
    /// The admin and `notes` instances on a free port, applying config-center changes.
    async fn start(extra: &str) -> Admin {
        let dir = std::env::temp_dir().join(format!("bourse-shell-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users.json");
        bourse_admin::Users::set_password(&users, "ops", PASSWORD).unwrap();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[log]\nformat = \"text\"\nlevel = \"warn\"\n\n\
             [plugins.admin]\nusers_file = {:?}\n\n[plugins.notes]\ntitle = \"Shopping\"\n{extra}",
            users.display().to_string()
        );
        let kernel = bourse_kernel::Kernel::builder()
            .plugin(bourse_admin::AdminPlugin::default())
            .plugin(notes::NotesPlugin)
            .build();
        let loaded = kernel.load_config_str(&text, "test.toml").unwrap();
        let running = Arc::new(kernel.start(loaded).await.unwrap());
        let serving = running.clone();
        tokio::spawn(async move { serving.serve_config_center().await });
        Admin {
            addr: running.local_addr(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            _running: running,
        }
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        cookie: &str,
        form: &[(&str, &str)],
    ) -> Answer {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self.client.request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Answer {
        self.send(http::Method::GET, path, cookie, &[]).await
    }

    /// Signs in as `ops`: the session cookie.
    async fn sign_in(&self) -> String {
        let form = self.get("/admin/login", "").await;
        let login_cookie = set_cookie(&form.headers, "bourse_admin_csrf");
        let csrf = csrf_in(&form.body);
        let answer = self
            .send(
                http::Method::POST,
                "/admin/login",
                &login_cookie,
                &[("csrf", &csrf), ("user", "ops"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        set_cookie(&answer.headers, "bourse_admin_session")
    }
}

fn set_cookie(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

/// Whether `needles` appear in `page` in this order.
fn in_order(page: &str, needles: &[&str]) -> bool {
    let mut from = 0;
    needles
        .iter()
        .all(|needle| match page[from..].find(needle) {
            Some(at) => {
                from += at + needle.len();
                true
            }
            None => false,
        })
}

#[tokio::test]
async fn a_plugin_brings_its_pages_into_the_shell() {
    let admin = Admin::start("").await;
    assert_eq!(
        admin.get("/admin/notes", "").await.status,
        303,
        "signed in only"
    );
    let session = admin.sign_in().await;

    // The overview: the section's summary, then every instance in the plugin list.
    let overview = admin.get("/admin", &session).await;
    assert_eq!(overview.status, 200);
    assert!(
        in_order(
            &overview.body,
            &[
                "href=\"/admin\" aria-current=\"page\"",
                "aria-label=\"Notes Shopping\"",
                "href=\"/admin/notes\"",
                "href=\"/admin/notes/items\"",
                "href=\"/admin/plugins\"",
                "href=\"/admin/config\"",
                "<main>",
                "<p class=\"notes-summary\">Shopping: 2 items</p>",
                "<td>admin</td>",
                "<td>notes</td>",
            ]
        ),
        "{}",
        overview.body
    );
    assert_eq!(overview.headers["x-frame-options"], "DENY");

    // A section page comes inside the layout, its link marked current; the section sees who
    // is signed in and where it is mounted.
    let page = admin.get("/admin/notes/items?page=2", &session).await;
    assert_eq!(page.status, 200);
    assert!(
        in_order(
            &page.body,
            &[
                "<title>Items · Notes Shopping · bourse admin</title>",
                "href=\"/admin/notes/items\" aria-current=\"page\"",
                "<span>ops</span>",
                "<h1>Items</h1>",
                "<p>user=ops base=/admin/notes path=/items page=2</p>",
            ]
        ),
        "{}",
        page.body
    );
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    // A raw answer passes untouched; a path the section lacks is its own 404.
    let raw = admin.get("/admin/notes/count.json", &session).await;
    assert_eq!(
        (raw.status, raw.body.as_str()),
        (http::StatusCode::OK, "{\"items\":2}")
    );
    assert_eq!(raw.headers["content-type"], "application/json");
    assert_eq!(
        admin.get("/admin/notes/nothing", &session).await.status,
        404
    );
    let put = admin
        .send(http::Method::PUT, "/admin/notes/items", &session, &[])
        .await;
    assert_eq!(put.status, 405);

    // A change: refused without the session's CSRF token; with it, the section applies it
    // through the config center and the next page comes from the new generation.
    let csrf = csrf_in(&page.body);
    let no_token = admin
        .send(
            http::Method::POST,
            "/admin/notes/title",
            &session,
            &[("title", "Groceries")],
        )
        .await;
    assert_eq!(no_token.status, 403);
    let renamed = admin
        .send(
            http::Method::POST,
            "/admin/notes/title",
            &session,
            &[("csrf", &csrf), ("title", "Groceries")],
        )
        .await;
    assert_eq!(renamed.status, 303, "{}", renamed.body);
    assert_eq!(renamed.headers["location"], "/admin/notes");
    let home = admin.get("/admin/notes", &session).await;
    assert!(home.body.contains("<h1>Groceries</h1>"), "{}", home.body);
    assert!(
        home.body.contains("aria-label=\"Notes Groceries\""),
        "{}",
        home.body
    );
    let history = admin.get("/admin/config", &session).await;
    assert!(
        history.body.contains("admin:ops") && history.body.contains("+title = &#34;Groceries&#34;"),
        "{}",
        history.body
    );

    // A title the plugin's config refuses: nothing changes, and the typed refusal is placed
    // beside the field it names.
    let refused = admin
        .send(
            http::Method::POST,
            "/admin/notes/title",
            &session,
            &[
                ("csrf", &csrf),
                ("title", "a title far too long for the notes plugin"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        in_order(
            &refused.body,
            &[
                "name=\"title\"",
                "<p class=\"field-error\">at most 20 characters</p>"
            ]
        ),
        "{}",
        refused.body
    );
    assert!(
        admin
            .get("/admin/notes", &session)
            .await
            .body
            .contains("<h1>Groceries</h1>")
    );
}

#[tokio::test]
async fn an_instance_named_like_a_shell_page_keeps_its_pages_out() {
    let admin = Admin::start("\n[plugins.config]\nkind = \"notes\"\ntitle = \"Hidden\"\n").await;
    let session = admin.sign_in().await;
    let overview = admin.get("/admin", &session).await;
    assert!(
        overview
            .body
            .contains("The pages of plugin `config` are not shown"),
        "{}",
        overview.body
    );
    assert!(!overview.body.contains("Notes Hidden"), "{}", overview.body);
    assert!(
        overview.body.contains("<td>config</td>"),
        "still listed: {}",
        overview.body
    );
    // /admin/config stays the config history.
    let history = admin.get("/admin/config", &session).await;
    assert!(
        history.body.contains("<h1>Config history</h1>"),
        "{}",
        history.body
    );
}
