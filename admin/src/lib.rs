//! The embedded admin, mounted at `/admin` as a kernel plugin: sign-in with Argon2id-hashed
//! passwords, sessions in `HttpOnly`/`SameSite=Strict` cookies, CSRF tokens on every form,
//! rate-limited sign-in attempts, and server-rendered askama pages.

mod users;

pub use users::{MIN_PASSWORD_LEN, User, Users, UsersError, hash_password};

use askama::Template;
use bourse_kernel::{
    Asset, ConfigIssue, EmbeddedAssets, Handler, Manifest, PeerAddr, Plugin, PluginCtx,
    PluginError, Request, Response, read_body,
};
use futures_util::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq as _;

/// `[plugins.admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The users file written by `bourse admin create-user` (relative to the config file).
    pub users_file: PathBuf,
    /// How long a session lasts without signing in again, seconds.
    pub session_ttl_secs: u64,
    /// Sign-in attempts allowed per client IP per minute.
    pub login_attempts_per_minute: u32,
    /// Mark cookies `Secure`: set it when bourse is served over TLS (directly or by a proxy).
    pub secure_cookie: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            users_file: PathBuf::from("bourse-admin-users.json"),
            session_ttl_secs: 8 * 3600,
            login_attempts_per_minute: 5,
            secure_cookie: false,
        }
    }
}

const SESSION_COOKIE: &str = "bourse_admin_session";
const LOGIN_CSRF_COOKIE: &str = "bourse_admin_csrf";
/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

static ASSETS: LazyLock<EmbeddedAssets> = LazyLock::new(|| {
    EmbeddedAssets::new(
        &[Asset {
            name: "admin.css",
            bytes: include_bytes!("../assets/admin.css"),
            content_type: "text/css; charset=utf-8",
        }],
        "public, max-age=300",
    )
});

/// A signed-in operator.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

/// What outlives a configuration generation: sessions and the sign-in rate limiter.
struct Shared {
    sessions: moka::sync::Cache<String, Session>,
}

/// The admin plugin.
pub struct AdminPlugin {
    shared: OnceLock<Arc<Shared>>,
}

impl std::fmt::Debug for AdminPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminPlugin")
    }
}

impl Default for AdminPlugin {
    fn default() -> Self {
        AdminPlugin {
            shared: OnceLock::new(),
        }
    }
}

impl Plugin for AdminPlugin {
    type Config = AdminConfig;

    fn manifest(&self) -> Manifest {
        Manifest {
            name: "admin",
            version: env!("CARGO_PKG_VERSION"),
            mounts: vec!["/admin"],
        }
    }

    fn validate(&self, config: &AdminConfig) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if config.session_ttl_secs == 0 || config.session_ttl_secs > 30 * 86_400 {
            issues.push(ConfigIssue::new(
                "session_ttl_secs",
                "between 1 second and 30 days",
            ));
        }
        if config.login_attempts_per_minute == 0 {
            issues.push(ConfigIssue::new(
                "login_attempts_per_minute",
                "must be at least 1",
            ));
        }
        issues
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        config: AdminConfig,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        let shared = self
            .shared
            .get_or_init(|| {
                Arc::new(Shared {
                    sessions: moka::sync::Cache::builder()
                        .max_capacity(10_000)
                        .time_to_live(Duration::from_secs(30 * 86_400))
                        .build(),
                })
            })
            .clone();
        let users_file = ctx.config_dir.join(&config.users_file);
        let attempts = NonZeroU32::new(config.login_attempts_per_minute)
            .ok_or_else(|| PluginError("login_attempts_per_minute must be at least 1".into()))?;
        Ok(Arc::new(Admin {
            center: ctx.config_center.clone(),
            limiter: RateLimiter::keyed(Quota::per_minute(attempts)),
            registry: ctx.metrics.registry().clone(),
            users_file,
            shared,
            config,
        }))
    }
}

/// One configuration generation of the admin.
struct Admin {
    config: AdminConfig,
    center: bourse_kernel::ConfigCenter,
    users_file: PathBuf,
    shared: Arc<Shared>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    registry: prometheus::Registry,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    user: &'a str,
    error: Option<&'a str>,
    no_users: bool,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    user: &'a str,
    csrf: &'a str,
    auctions_bid: u64,
    auctions_no_bid: u64,
    fill_rate: String,
    revenue: String,
    plugins: Vec<PluginRow>,
}

#[derive(Template)]
#[template(path = "config.html")]
struct ConfigPage<'a> {
    user: &'a str,
    csrf: &'a str,
    entries: Vec<HistoryRow>,
    error: Option<&'a str>,
    notice: Option<String>,
}

struct HistoryRow {
    seq: u64,
    at: String,
    who: String,
    diff: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "placements.html")]
struct PlacementsPage<'a> {
    user: &'a str,
    csrf: &'a str,
    placements: Vec<PlacementRow>,
    publishers: Vec<String>,
    form: PlacementForm,
    error: Option<String>,
    sizes_error: Option<&'a str>,
    publisher_error: Option<String>,
}

struct PlacementRow {
    id: String,
    publisher: String,
    sizes: String,
    floor: String,
    enabled: bool,
    snippet: String,
}

#[derive(Default)]
struct PlacementForm {
    id: String,
    publisher: String,
    sizes: String,
    floor: String,
}

/// A submitted form's fields.
struct Form(Vec<(String, String)>);

impl Form {
    /// The field's value, trimmed; `None` when it was not sent.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// The field's value, trimmed; empty when it was not sent.
    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }
}

/// `"300x250, 728x90"` as `[[300, 250], [728, 90]]`.
fn parse_sizes(text: &str) -> Option<Vec<[i64; 2]>> {
    let sizes: Option<Vec<[i64; 2]>> = text
        .split(',')
        .map(|part| {
            let (w, h) = part.trim().split_once('x')?;
            let (w, h) = (w.parse::<u16>().ok()?, h.parse::<u16>().ok()?);
            (w > 0 && h > 0).then_some([i64::from(w), i64::from(h)])
        })
        .collect();
    sizes.filter(|s| !s.is_empty())
}

#[derive(Template)]
#[template(path = "bidders.html")]
struct BiddersPage<'a> {
    user: &'a str,
    csrf: &'a str,
    bidders: Vec<BidderRow>,
    form: BidderForm,
    error: Option<String>,
}

struct BidderRow {
    name: String,
    endpoint: String,
    timeout_ms: i64,
    enabled: bool,
    requests: u64,
    bids: u64,
    timeouts: u64,
    errors: u64,
}

#[derive(Default)]
struct BidderForm {
    name: String,
    endpoint: String,
    timeout_ms: String,
    media: String,
}

struct PluginRow {
    name: String,
    state: String,
    generation: i64,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(bourse_kernel::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    response
}

fn redirect(to: &'static str) -> Response {
    let mut response = Response::new(bourse_kernel::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(bourse_kernel::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl Admin {
    fn set_cookie(&self, response: &mut Response, name: &str, value: &str, max_age: u64) {
        let secure = if self.config.secure_cookie {
            "; Secure"
        } else {
            ""
        };
        let text = format!(
            "{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }

    fn session(&self, req: &Request) -> Option<(String, Session)> {
        let token = cookie(req, SESSION_COOKIE)?;
        let session = self.shared.sessions.get(token)?;
        if session.expires <= Instant::now() {
            self.shared.sessions.invalidate(token);
            return None;
        }
        Some((token.to_owned(), session))
    }

    fn login_page(&self, status: StatusCode, user: &str, error: Option<&str>) -> Response {
        let csrf = random_token();
        let no_users = Users::load(&self.users_file).map_or(true, |u| u.users.is_empty());
        let page = LoginPage {
            csrf: &csrf,
            user,
            error,
            no_users,
        };
        let mut response = html(
            status,
            page.render()
                .unwrap_or_else(|e| format!("template error: {e}")),
        );
        // Double-submit: the form's token must match this cookie, which another site can
        // neither read nor set.
        self.set_cookie(&mut response, LOGIN_CSRF_COOKIE, &csrf, 3600);
        response
    }

    /// A signed-in operator's POST: the session (else a redirect to sign in), and the form,
    /// once its CSRF token matched the session's.
    async fn signed_form(&self, req: Request) -> Result<(Session, Form), Box<Response>> {
        let Some((_, session)) = self.session(&req) else {
            return Err(Box::new(redirect("/admin/login")));
        };
        let form = Form(Self::form(req).await?);
        if !same(&session.csrf, &form.text("csrf")) {
            return Err(Box::new(plain(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token; reload the page",
            )));
        }
        Ok((session, form))
    }

    /// Appends `table` to `plugins.exchange.<list>` of the running config and applies it as
    /// the operator; the error says why the config center refused it.
    async fn append_and_apply(
        &self,
        session: &Session,
        list: &str,
        table: toml_edit::Table,
    ) -> Result<(), String> {
        let mut doc: toml_edit::DocumentMut = self
            .current_text()
            .parse()
            .map_err(|e| format!("the running config: {e}"))?;
        let item = doc["plugins"]["exchange"]
            .or_insert(toml_edit::table())
            .as_table_mut()
            .map(|exchange| {
                exchange
                    .entry(list)
                    .or_insert(toml_edit::Item::ArrayOfTables(
                        toml_edit::ArrayOfTables::new(),
                    ))
            });
        match item.and_then(|i| i.as_array_of_tables_mut()) {
            Some(tables) => tables.push(table),
            None => return Err(format!("plugins.exchange.{list} is not a list of tables")),
        }
        self.center
            .apply(doc.to_string(), format!("admin:{}", session.user))
            .await
    }

    async fn form(req: Request) -> Result<Vec<(String, String)>, Box<Response>> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, MAX_FORM)
            .await
            .map_err(|_| Box::new(plain(StatusCode::PAYLOAD_TOO_LARGE, "form too large")))?;
        Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
    }

    async fn login(&self, req: Request) -> Response {
        let ip = req
            .extensions()
            .get::<PeerAddr>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip());
        // The limiter keeps one entry per client; forget the idle ones before they pile up.
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        if self.limiter.check_key(&ip).is_err() {
            tracing::warn!(%ip, "admin sign-in attempts over the limit");
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "too many sign-in attempts; wait a minute",
            );
        }
        let expected = cookie(&req, LOGIN_CSRF_COOKIE).map(str::to_owned);
        let fields = match Self::form(req).await {
            Ok(fields) => fields,
            Err(refusal) => return *refusal,
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let csrf_ok =
            expected.is_some_and(|expected| !expected.is_empty() && same(&expected, field("csrf")));
        if !csrf_ok {
            return plain(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token; reload the page",
            );
        }
        let user = field("user");
        let users = match Users::load(&self.users_file) {
            Ok(users) => users,
            Err(error) => {
                tracing::error!(%error, "cannot read the admin users file");
                return self.login_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    user,
                    Some("the users file cannot be read; see the server log"),
                );
            }
        };
        if !users.verify(user, field("password")) {
            tracing::info!(user, %ip, "admin sign-in refused");
            return self.login_page(
                StatusCode::UNAUTHORIZED,
                user,
                Some("Wrong user or password."),
            );
        }
        let token = random_token();
        let ttl = self.config.session_ttl_secs;
        self.shared.sessions.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                csrf: random_token(),
                expires: Instant::now() + Duration::from_secs(ttl),
            },
        );
        tracing::info!(user, %ip, "admin signed in");
        let mut response = redirect("/admin");
        self.set_cookie(&mut response, SESSION_COOKIE, &token, ttl);
        self.set_cookie(&mut response, LOGIN_CSRF_COOKIE, "", 0);
        response
    }

    async fn logout(&self, req: Request) -> Response {
        let Some((token, session)) = self.session(&req) else {
            return redirect("/admin/login");
        };
        let fields = match Self::form(req).await {
            Ok(fields) => fields,
            Err(refusal) => return *refusal,
        };
        let presented = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        if !same(&session.csrf, presented) {
            return plain(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token; reload the page",
            );
        }
        self.shared.sessions.invalidate(&token);
        let mut response = redirect("/admin/login");
        self.set_cookie(&mut response, SESSION_COOKIE, "", 0);
        response
    }

    fn overview(&self, session: &Session) -> Response {
        let families = self.registry.gather();
        let sample = |name: &str, labels: &[(&str, &str)]| -> f64 {
            families
                .iter()
                .filter(|f| f.name() == name)
                .flat_map(|f| f.get_metric())
                .filter(|m| {
                    labels.iter().all(|(k, v)| {
                        m.get_label()
                            .iter()
                            .any(|l| l.name() == *k && l.value() == *v)
                    })
                })
                .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
                .sum()
        };
        let bid = sample(
            "bourse_exchange_requests_total",
            &[("endpoint", "auction"), ("outcome", "bid")],
        ) as u64;
        let no_bid = sample(
            "bourse_exchange_requests_total",
            &[("endpoint", "auction"), ("outcome", "no_bid")],
        ) as u64;
        let fill_rate = if bid + no_bid == 0 {
            "–".to_owned()
        } else {
            format!("{:.1}%", 100.0 * bid as f64 / (bid + no_bid) as f64)
        };
        let revenue = format!("{:.2}", sample("bourse_exchange_billed_revenue_total", &[]));
        let mut plugins: Vec<PluginRow> = families
            .iter()
            .filter(|f| f.name() == "bourse_kernel_plugin_generation")
            .flat_map(|f| f.get_metric())
            .map(|m| {
                let name = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "plugin")
                    .map_or(String::new(), |l| l.value().to_owned());
                let state = families
                    .iter()
                    .filter(|f| f.name() == "bourse_kernel_plugin_state")
                    .flat_map(|f| f.get_metric())
                    .filter(|s| {
                        s.get_gauge().get_value() > 0.0
                            && s.get_label()
                                .iter()
                                .any(|l| l.name() == "plugin" && l.value() == name)
                    })
                    .filter_map(|s| s.get_label().iter().find(|l| l.name() == "state"))
                    .map(|l| l.value().to_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                PluginRow {
                    generation: m.get_gauge().get_value() as i64,
                    name,
                    state,
                }
            })
            .collect();
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        let page = OverviewPage {
            user: &session.user,
            csrf: &session.csrf,
            auctions_bid: bid,
            auctions_no_bid: no_bid,
            fill_rate,
            revenue,
            plugins,
        };
        html(
            StatusCode::OK,
            page.render()
                .unwrap_or_else(|e| format!("template error: {e}")),
        )
    }
}

impl Admin {
    fn config_page(
        &self,
        status: StatusCode,
        session: &Session,
        error: Option<&str>,
        notice: Option<String>,
    ) -> Response {
        let history = self.center.history();
        let last = history.last().map(|e| e.seq);
        let entries = history
            .into_iter()
            .rev()
            .map(|e| HistoryRow {
                current: Some(e.seq) == last,
                seq: e.seq,
                at: bourse_kernel::utc_datetime(e.at),
                who: e.who,
                diff: e.diff,
            })
            .collect();
        let page = ConfigPage {
            user: &session.user,
            csrf: &session.csrf,
            entries,
            error,
            notice,
        };
        html(
            status,
            page.render()
                .unwrap_or_else(|e| format!("template error: {e}")),
        )
    }

    async fn rollback(&self, req: Request) -> Response {
        let (session, form) = match self.signed_form(req).await {
            Ok(signed) => signed,
            Err(refusal) => return *refusal,
        };
        let field = |name: &str| form.text(name);
        let Some(entry) = field("seq")
            .parse::<u64>()
            .ok()
            .and_then(|seq| self.center.history().into_iter().find(|e| e.seq == seq))
        else {
            return self.config_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                Some("That config is no longer in the history."),
                None,
            );
        };
        let who = format!("admin:{}", session.user);
        match self.center.apply(entry.text, who).await {
            Ok(()) => redirect("/admin/config"),
            Err(error) => self.config_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                Some(&format!("Rollback to #{} refused: {error}", entry.seq)),
                None,
            ),
        }
    }
}

impl Admin {
    /// The config text in force, as the config center last applied it.
    fn current_text(&self) -> String {
        self.center
            .history()
            .last()
            .map(|e| e.text.clone())
            .unwrap_or_default()
    }

    /// `errors`: for the placement form, for its sizes field, and for the publisher form.
    fn placements_page(
        &self,
        status: StatusCode,
        session: &Session,
        form: PlacementForm,
        errors: (Option<String>, Option<&str>, Option<String>),
    ) -> Response {
        let (error, sizes_error, publisher_error) = errors;
        let config: toml::Table = toml::from_str(&self.current_text()).unwrap_or_default();
        let exchange = config
            .get("plugins")
            .and_then(|p| p.get("exchange"))
            .cloned()
            .unwrap_or(toml::Value::Table(toml::Table::new()));
        let public_url = exchange
            .get("public_url")
            .and_then(|v| v.as_str())
            .unwrap_or("http://127.0.0.1:8080")
            .trim_end_matches('/')
            .to_owned();
        let list = |key: &str| {
            exchange
                .get(key)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let text = |v: &toml::Value, key: &str| {
            v.get(key)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let publishers: Vec<String> = list("publishers").iter().map(|p| text(p, "id")).collect();
        let placements = list("placements")
            .iter()
            .map(|p| {
                let sizes = p
                    .get("sizes")
                    .and_then(|s| s.as_array())
                    .map(|sizes| {
                        sizes
                            .iter()
                            .filter_map(|s| {
                                let s = s.as_array()?;
                                Some(format!("{}x{}", s.first()?.as_integer()?, s.get(1)?.as_integer()?))
                            })
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let id = text(p, "id");
                PlacementRow {
                    snippet: format!(
                        "<div class=\"bourse-ad\" data-placement=\"{id}\" data-sizes=\"{sizes}\"></div>\n\
                         <script async src=\"{public_url}/tag.js\"></script>"
                    ),
                    publisher: text(p, "publisher"),
                    floor: p
                        .get("floor")
                        .and_then(|f| f.as_float().or(f.as_integer().map(|i| i as f64)))
                        .map_or("0".to_owned(), |f| f.to_string()),
                    enabled: p.get("enabled").and_then(|e| e.as_bool()).unwrap_or(true),
                    id,
                    sizes,
                }
            })
            .collect();
        let page = PlacementsPage {
            user: &session.user,
            csrf: &session.csrf,
            placements,
            publishers,
            form,
            error,
            sizes_error,
            publisher_error,
        };
        html(
            status,
            page.render()
                .unwrap_or_else(|e| format!("template error: {e}")),
        )
    }

    async fn create_placement(&self, req: Request) -> Response {
        let (session, form) = match self.signed_form(req).await {
            Ok(signed) => signed,
            Err(refusal) => return *refusal,
        };
        let field = |name: &str| form.text(name);
        let form = PlacementForm {
            id: field("id"),
            publisher: field("publisher"),
            sizes: field("sizes"),
            floor: field("floor"),
        };
        let unprocessable = |form, error: Option<String>, sizes_error: Option<&str>| {
            self.placements_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                form,
                (error, sizes_error, None),
            )
        };
        let Some(sizes) = parse_sizes(&form.sizes) else {
            return unprocessable(form, None, Some("Write sizes as 300x250,728x90."));
        };
        let floor = if form.floor.is_empty() {
            0.0
        } else {
            match form.floor.parse::<f64>() {
                Ok(floor) => floor,
                Err(_) => {
                    return unprocessable(
                        form,
                        Some("The floor is a number, e.g. 0.50.".into()),
                        None,
                    );
                }
            }
        };
        let mut table = toml_edit::Table::new();
        table["id"] = toml_edit::value(form.id.as_str());
        table["publisher"] = toml_edit::value(form.publisher.as_str());
        let mut size_list = toml_edit::Array::new();
        for [w, h] in sizes {
            let mut pair = toml_edit::Array::new();
            pair.push(w);
            pair.push(h);
            size_list.push(pair);
        }
        table["sizes"] = toml_edit::value(size_list);
        table["floor"] = toml_edit::value(floor);
        match self.append_and_apply(&session, "placements", table).await {
            Ok(()) => redirect("/admin/placements"),
            // The config center names the field and rule it broke.
            Err(error) => unprocessable(form, Some(error), None),
        }
    }
}

impl Admin {
    /// Changes one placement's floor and enabled state in the running config, live.
    async fn edit_placement(&self, req: Request) -> Response {
        let (session, form) = match self.signed_form(req).await {
            Ok(signed) => signed,
            Err(refusal) => return *refusal,
        };
        let field = |name: &str| form.get(name).map(str::to_owned);
        let id = field("id").unwrap_or_default();
        let enabled = field("enabled").is_some_and(|v| v == "true");
        let refuse = |error: String| {
            self.placements_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                PlacementForm::default(),
                (Some(error), None, None),
            )
        };
        let Some(floor) = field("floor").and_then(|f| f.parse::<f64>().ok()) else {
            return refuse(format!("The floor of {id} is a number, e.g. 0.50."));
        };
        let mut doc: toml_edit::DocumentMut = match self.current_text().parse() {
            Ok(doc) => doc,
            Err(e) => return refuse(format!("the running config: {e}")),
        };
        let placement = doc
            .get_mut("plugins")
            .and_then(|p| p.get_mut("exchange"))
            .and_then(|e| e.get_mut("placements"))
            .and_then(|p| p.as_array_of_tables_mut())
            .and_then(|list| {
                list.iter_mut()
                    .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(id.as_str()))
            });
        let Some(placement) = placement else {
            return refuse(format!("No placement {id} in the running config."));
        };
        placement["floor"] = toml_edit::value(floor);
        placement["enabled"] = toml_edit::value(enabled);
        match self
            .center
            .apply(doc.to_string(), format!("admin:{}", session.user))
            .await
        {
            Ok(()) => redirect("/admin/placements"),
            Err(error) => refuse(error),
        }
    }
}

impl Admin {
    /// The sum of a metric family's samples whose `bidder` label is `bidder`.
    fn bidder_metric(
        families: &[prometheus::proto::MetricFamily],
        name: &str,
        bidder: &str,
    ) -> u64 {
        families
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "bidder" && l.value() == bidder)
            })
            .map(|m| m.get_counter().get_value())
            .sum::<f64>() as u64
    }

    fn bidders_page(
        &self,
        status: StatusCode,
        session: &Session,
        form: BidderForm,
        error: Option<String>,
    ) -> Response {
        let config: toml::Table = toml::from_str(&self.current_text()).unwrap_or_default();
        let families = self.registry.gather();
        let bidders = config
            .get("plugins")
            .and_then(|p| p.get("exchange"))
            .and_then(|e| e.get("bidders"))
            .and_then(|b| b.as_array())
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|b| {
                let name = b
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned();
                BidderRow {
                    endpoint: b
                        .get("endpoint")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    timeout_ms: b
                        .get("timeout_ms")
                        .and_then(|v| v.as_integer())
                        .unwrap_or(150),
                    enabled: b.get("enabled").and_then(|v| v.as_bool()).unwrap_or(true),
                    requests: Self::bidder_metric(&families, "bourse_bidder_requests_total", &name),
                    bids: Self::bidder_metric(&families, "bourse_bidder_bids_total", &name),
                    timeouts: Self::bidder_metric(&families, "bourse_bidder_timeouts_total", &name),
                    errors: Self::bidder_metric(&families, "bourse_bidder_errors_total", &name),
                    name,
                }
            })
            .collect();
        let page = BiddersPage {
            user: &session.user,
            csrf: &session.csrf,
            bidders,
            form,
            error,
        };
        html(
            status,
            page.render()
                .unwrap_or_else(|e| format!("template error: {e}")),
        )
    }

    async fn add_bidder(&self, req: Request) -> Response {
        let (session, form) = match self.signed_form(req).await {
            Ok(signed) => signed,
            Err(refusal) => return *refusal,
        };
        let field = |name: &str| form.text(name);
        let form = BidderForm {
            name: field("name"),
            endpoint: field("endpoint"),
            timeout_ms: field("timeout_ms"),
            media: field("media"),
        };
        let refuse = |form, error: String| {
            self.bidders_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &session,
                form,
                Some(error),
            )
        };
        let timeout_ms = if form.timeout_ms.is_empty() {
            150
        } else {
            match form.timeout_ms.parse::<i64>() {
                Ok(t) => t,
                Err(_) => {
                    return refuse(
                        form,
                        "The timeout is a whole number of milliseconds.".into(),
                    );
                }
            }
        };
        let media: Vec<String> = if form.media.is_empty() {
            vec!["banner".to_owned()]
        } else {
            form.media.split(',').map(|m| m.trim().to_owned()).collect()
        };
        let mut table = toml_edit::Table::new();
        table["name"] = toml_edit::value(form.name.as_str());
        table["endpoint"] = toml_edit::value(form.endpoint.as_str());
        table["timeout_ms"] = toml_edit::value(timeout_ms);
        let mut media_list = toml_edit::Array::new();
        for m in &media {
            media_list.push(m.as_str());
        }
        table["media"] = toml_edit::value(media_list);
        match self.append_and_apply(&session, "bidders", table).await {
            Ok(()) => redirect("/admin/bidders"),
            // The config center names the field and rule it broke (a bad endpoint, a
            // duplicate name, an unknown media type).
            Err(error) => refuse(form, error),
        }
    }
}

impl Admin {
    /// Adds a publisher to the running config, live.
    async fn add_publisher(&self, req: Request) -> Response {
        let (session, form) = match self.signed_form(req).await {
            Ok(signed) => signed,
            Err(refusal) => return *refusal,
        };
        let field = |name: &str| form.text(name);
        let mut table = toml_edit::Table::new();
        table["id"] = toml_edit::value(field("id"));
        table["name"] = toml_edit::value(field("name"));
        let domain = field("domain");
        if !domain.is_empty() {
            table["domain"] = toml_edit::value(domain);
        }
        match self.append_and_apply(&session, "publishers", table).await {
            Ok(()) => redirect("/admin/placements"),
            Err(error) => self.publisher_refused(&session, error),
        }
    }

    /// The placements page with `error` beside the publisher form.
    fn publisher_refused(&self, session: &Session, error: String) -> Response {
        self.placements_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            session,
            PlacementForm::default(),
            (None, None, Some(error)),
        )
    }
}

impl Handler for Admin {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            if let Some(asset) = path.strip_prefix("/admin/static/") {
                return ASSETS.serve(asset, req.headers().get(header::IF_NONE_MATCH));
            }
            match (req.method().clone(), path.as_str()) {
                (http::Method::GET, "/admin/login") => self.login_page(StatusCode::OK, "", None),
                (http::Method::POST, "/admin/login") => self.login(req).await,
                (http::Method::POST, "/admin/logout") => self.logout(req).await,
                (http::Method::GET, "/admin/config") => match self.session(&req) {
                    Some((_, session)) => self.config_page(StatusCode::OK, &session, None, None),
                    None => redirect("/admin/login"),
                },
                (http::Method::POST, "/admin/config/rollback") => self.rollback(req).await,
                (http::Method::GET, "/admin/placements") => match self.session(&req) {
                    Some((_, session)) => self.placements_page(
                        StatusCode::OK,
                        &session,
                        PlacementForm::default(),
                        (None, None, None),
                    ),
                    None => redirect("/admin/login"),
                },
                (http::Method::POST, "/admin/placements") => self.create_placement(req).await,
                (http::Method::POST, "/admin/placements/edit") => self.edit_placement(req).await,
                (http::Method::GET, "/admin/bidders") => match self.session(&req) {
                    Some((_, session)) => {
                        self.bidders_page(StatusCode::OK, &session, BidderForm::default(), None)
                    }
                    None => redirect("/admin/login"),
                },
                (http::Method::POST, "/admin/bidders") => self.add_bidder(req).await,
                (http::Method::POST, "/admin/publishers") => self.add_publisher(req).await,
                (http::Method::GET, "/admin" | "/admin/") => match self.session(&req) {
                    Some((_, session)) => self.overview(&session),
                    None => redirect("/admin/login"),
                },
                _ => plain(StatusCode::NOT_FOUND, "not found"),
            }
        })
    }
}
