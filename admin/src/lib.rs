//! The embedded admin, a shell mounted at `/admin` as a kernel plugin: sign-in with
//! Argon2id-hashed passwords, sessions in `HttpOnly`/`SameSite=Strict` cookies, CSRF tokens on
//! every form, rate-limited sign-in attempts, the common layout and navigation, the overview,
//! the plugin list and the config history with rollback. Every other plugin's pages are its own
//! [`AdminSection`](bourse_kernel::admin::AdminSection), served under `/admin/<instance>/`: this
//! crate depends on the kernel alone.

mod auth;
mod guard;
mod pages;
mod profile;
mod shell;
mod users;
mod web;

pub use users::{MIN_PASSWORD_LEN, User, Users, UsersError, hash_password};

use bourse_kernel::{
    Asset, ConfigCenter, ConfigIssue, EmbeddedAssets, Handler, Manifest, Mount, Plugin, PluginCtx,
    PluginDirectory, PluginError, Request, Response,
};
use futures_util::future::BoxFuture;
use http::{Method, StatusCode, header};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use web::{plain, redirect};

/// `[plugins.admin]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The users file written by `bourse admin create-user` (relative to the config file).
    pub users_file: PathBuf,
    /// How long a session lasts without signing in again, seconds.
    pub session_ttl_secs: u64,
    /// Sign-in attempts allowed per client per minute (an IPv6 client counts by its /64).
    pub login_attempts_per_minute: u32,
    /// Sign-in attempts allowed per account name per minute, from anywhere.
    pub login_attempts_per_account_per_minute: u32,
    /// Sign-in attempts allowed per minute in all.
    pub login_attempts_overall_per_minute: u32,
    /// Password checks (Argon2id) run at once on the blocking pool; the rest wait their turn.
    pub password_checks_at_once: usize,
    /// Mark cookies `Secure`: set it when bourse is served over TLS (directly or by a proxy).
    pub secure_cookie: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            users_file: PathBuf::from("bourse-admin-users.json"),
            session_ttl_secs: 8 * 3600,
            login_attempts_per_minute: 5,
            login_attempts_per_account_per_minute: 10,
            login_attempts_overall_per_minute: 120,
            password_checks_at_once: 1,
            secure_cookie: false,
        }
    }
}

static ASSETS: LazyLock<EmbeddedAssets> = LazyLock::new(|| {
    EmbeddedAssets::new(
        &[
            Asset {
                name: "admin.css",
                bytes: include_bytes!("../assets/admin.css"),
                content_type: "text/css; charset=utf-8",
            },
            // The charting library every section's charts use (MIT, vendored unchanged).
            Asset {
                name: "uplot.js",
                bytes: include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
                content_type: "text/javascript; charset=utf-8",
            },
            Asset {
                name: "uplot.css",
                bytes: include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
                content_type: "text/css; charset=utf-8",
            },
        ],
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

/// What outlives a configuration generation: the sessions, so a config change signs no one out.
pub struct AdminState {
    sessions: moka::sync::Cache<String, Session>,
}

/// The admin plugin kind: `AdminPlugin::default()`.
#[derive(Debug, Default)]
pub struct AdminPlugin {
    _private: (),
}

impl Plugin for AdminPlugin {
    type Config = AdminConfig;
    type Prepared = AdminConfig;
    type State = AdminState;

    fn manifest(&self) -> Manifest {
        Manifest {
            kind: "admin".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            description: "The operators' admin: sign-in, every plugin's pages, config history"
                .to_owned(),
            mount: Mount::paths(["/admin", "/debug/pprof"]),
        }
    }

    fn prepare(&self, config: AdminConfig) -> Result<AdminConfig, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if config.session_ttl_secs == 0 || config.session_ttl_secs > 30 * 86_400 {
            issues.push(ConfigIssue::new(
                "session_ttl_secs",
                "between 1 second and 30 days",
            ));
        }
        for (field, value) in [
            (
                "login_attempts_per_minute",
                config.login_attempts_per_minute as usize,
            ),
            (
                "login_attempts_per_account_per_minute",
                config.login_attempts_per_account_per_minute as usize,
            ),
            (
                "login_attempts_overall_per_minute",
                config.login_attempts_overall_per_minute as usize,
            ),
            ("password_checks_at_once", config.password_checks_at_once),
        ] {
            if value == 0 {
                issues.push(ConfigIssue::new(field, "must be at least 1"));
            }
        }
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(issues)
        }
    }

    async fn init(
        &self,
        _ctx: &PluginCtx,
        _config: &AdminConfig,
    ) -> Result<AdminState, PluginError> {
        Ok(AdminState {
            sessions: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30 * 86_400))
                .build(),
        })
    }

    async fn start(
        &self,
        ctx: PluginCtx,
        state: Arc<AdminState>,
        config: AdminConfig,
    ) -> Result<Arc<dyn Handler>, PluginError> {
        let users_file = ctx.config_dir.join(&config.users_file);
        // The kernel's limiters: the same rates keep their buckets across generations, and their
        // refusals are counted in bourse_kernel_rate_limited_total{limiter="<name>.sign_in*"}.
        let guard = guard::SignInGuard::new(
            &ctx.services.limits,
            &ctx.name,
            &guard::Limits {
                per_network: config.login_attempts_per_minute,
                per_account: config.login_attempts_per_account_per_minute,
                overall: config.login_attempts_overall_per_minute,
                hashing_at_once: config.password_checks_at_once,
            },
        )
        .map_err(|error| PluginError(format!("the sign-in limits: {error}")))?;
        Ok(Arc::new(Admin {
            center: ctx.config_center.clone(),
            plugins: ctx.plugins.clone(),
            registry: ctx.metrics.registry().clone(),
            guard,
            users_file,
            state,
            config,
        }))
    }
}

/// One configuration generation of the admin.
struct Admin {
    config: AdminConfig,
    center: ConfigCenter,
    /// Every running instance: the sections and the plugin list.
    plugins: PluginDirectory,
    registry: prometheus::Registry,
    users_file: PathBuf,
    state: Arc<AdminState>,
    /// Sign-in attempts (and Basic credentials for profiling): limits and the hashing pool.
    guard: guard::SignInGuard,
}

impl Handler for Admin {
    fn handle<'a>(&'a self, req: Request) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            if let Some(asset) = path.strip_prefix("/admin/static/") {
                return ASSETS.serve(asset, req.headers().get(header::IF_NONE_MATCH));
            }
            if path.starts_with("/debug/pprof/") || path.starts_with("/admin/debug/pprof/") {
                return self.debug(req).await;
            }
            let method = req.method().clone();
            match (&method, path.as_str()) {
                (&Method::GET, "/admin/login") => {
                    return self.login_page(StatusCode::OK, "", None);
                }
                (&Method::POST, "/admin/login") => return self.login(req).await,
                (&Method::POST, "/admin/logout") => return self.logout(req).await,
                // Every change needs a signed-in operator and the session's CSRF token.
                (&Method::POST, "/admin/config/rollback") => {
                    return match self.signed_form(req).await {
                        Ok((_, session, form)) => self.rollback(session, form).await,
                        Err(refusal) => *refusal,
                    };
                }
                _ => {}
            }
            if let Some((entry, rest)) = self.section_of(&path) {
                return self.section(req, entry, rest).await;
            }
            if method == Method::POST {
                return plain(StatusCode::NOT_FOUND, "not found");
            }
            if method != Method::GET {
                return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            }
            // Every other page needs a signed-in operator.
            let Some((_, session)) = self.session(&req) else {
                return redirect("/admin/login");
            };
            let query = web::query(&req);
            match path.as_str() {
                "/admin" | "/admin/" => self.overview(&session),
                "/admin/plugins" => self.plugins_page(&session),
                "/admin/config" => self.history_get(&session, &query),
                "/admin/config/rollback" => {
                    self.rollback_preview(StatusCode::OK, &session, &query.text("seq"), None)
                }
                _ => plain(StatusCode::NOT_FOUND, "not found"),
            }
        })
    }
}
