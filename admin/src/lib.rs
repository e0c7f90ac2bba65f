//! The embedded admin, mounted at `/admin` as a kernel plugin: sign-in with Argon2id-hashed
//! passwords, sessions in `HttpOnly`/`SameSite=Strict` cookies, CSRF tokens on every form,
//! rate-limited sign-in attempts, and server-rendered askama pages: a live overview,
//! publishers, placements, bidders, floors and the config history, every change applied live
//! through the kernel's config center.

mod auth;
mod edit;
mod live;
mod pages;
mod profile;
mod users;
mod web;

pub use users::{MIN_PASSWORD_LEN, User, Users, UsersError, hash_password};

use bourse_kernel::{
    Asset, ConfigIssue, EmbeddedAssets, Handler, Manifest, Plugin, PluginCtx, PluginError, Request,
    Response,
};
use futures_util::future::BoxFuture;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Method, StatusCode, header};
use serde::Deserialize;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, OnceLock};
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

static ASSETS: LazyLock<EmbeddedAssets> = LazyLock::new(|| {
    EmbeddedAssets::new(
        &[
            Asset {
                name: "admin.css",
                bytes: include_bytes!("../assets/admin.css"),
                content_type: "text/css; charset=utf-8",
            },
            Asset {
                name: "live.js",
                bytes: include_bytes!("../assets/live.js"),
                content_type: "text/javascript; charset=utf-8",
            },
        ],
        "public, max-age=300",
    )
});

/// How often the live overview samples the metrics registry.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A signed-in operator.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

/// What outlives a configuration generation: sessions and the live overview's points.
struct Shared {
    sessions: moka::sync::Cache<String, Session>,
    live: Arc<live::Live>,
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
            mounts: vec!["/admin", "/debug/pprof"],
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
                    live: Arc::default(),
                })
            })
            .clone();
        let users_file = ctx.config_dir.join(&config.users_file);
        let attempts = NonZeroU32::new(config.login_attempts_per_minute)
            .ok_or_else(|| PluginError("login_attempts_per_minute must be at least 1".into()))?;
        let registry = ctx.metrics.registry().clone();
        // Each generation samples until it is retired; the points live on in `Shared`.
        let (live, sampled, shutdown) =
            (shared.live.clone(), registry.clone(), ctx.shutdown.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = every.tick() => live.sample(&sampled),
                }
            }
        });
        Ok(Arc::new(Admin {
            center: ctx.config_center.clone(),
            limiter: RateLimiter::keyed(Quota::per_minute(attempts)),
            live: shared.live.clone(),
            registry,
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
    live: Arc<live::Live>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    registry: prometheus::Registry,
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
                (&Method::POST, route) => {
                    type Action =
                        for<'h> fn(&'h Admin, Session, web::Form) -> BoxFuture<'h, Response>;
                    let action: Action = match route {
                        "/admin/config/rollback" => |a, s, f| Box::pin(a.rollback(s, f)),
                        "/admin/publishers" => |a, s, f| Box::pin(a.create_publisher(s, f)),
                        "/admin/publishers/edit" => |a, s, f| Box::pin(a.edit_publisher(s, f)),
                        "/admin/placements" => |a, s, f| Box::pin(a.create_placement(s, f)),
                        "/admin/placements/edit" => |a, s, f| Box::pin(a.edit_placement(s, f)),
                        "/admin/bidders" => |a, s, f| Box::pin(a.add_bidder(s, f)),
                        "/admin/bidders/edit" => |a, s, f| Box::pin(a.edit_bidder(s, f)),
                        "/admin/floors" => |a, s, f| Box::pin(a.set_floor(s, f)),
                        "/admin/floors/rules" => |a, s, f| Box::pin(a.set_floor_rules(s, f)),
                        _ => return plain(StatusCode::NOT_FOUND, "not found"),
                    };
                    // Every change needs a signed-in operator and the session's CSRF token.
                    return match self.signed_form(req).await {
                        Ok((_, session, form)) => action(self, session, form).await,
                        Err(refusal) => *refusal,
                    };
                }
                (&Method::GET, _) => {}
                _ => return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            }
            // Every other page needs a signed-in operator.
            let Some((_, session)) = self.session(&req) else {
                return redirect("/admin/login");
            };
            match path.as_str() {
                "/admin" | "/admin/" => self.overview(&session),
                "/admin/live.json" => self.live_json(&req),
                "/admin/publishers" => self.publishers_get(&req, &session),
                "/admin/publishers/edit" => self.publisher_edit_get(&req, &session),
                "/admin/placements" => self.placements_get(&req, &session),
                "/admin/placements/edit" => self.placement_edit_get(&req, &session),
                "/admin/bidders" => self.bidders_get(&req, &session),
                "/admin/bidders/edit" => self.bidder_edit_get(&req, &session),
                "/admin/floors" => self.floors_get(&req, &session),
                "/admin/config" => self.history_get(&req, &session),
                _ => plain(StatusCode::NOT_FOUND, "not found"),
            }
        })
    }
}
