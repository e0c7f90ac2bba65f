//! The live route table: mounts (a host name and/or a path prefix) resolved to the current
//! generation of a plugin instance, each generation with a lock-free in-flight tracker that
//! draining waits on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prometheus::IntCounter;
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Handler;

/// Where a plugin instance answers: requests for any of `hosts` (every host when empty) whose
/// path starts with any of `paths` (every path when empty). Set by `mount = { … }` in the
/// instance's table; the manifest gives the default.
///
/// A path prefix ending in `/` also matches the path without it (`"/openrtb2/"` matches
/// `/openrtb2`); one without matches whole segments only (`"/api"` matches `/api` and `/api/x`,
/// not `/apix`). A host is a name (`courses.example.com`) or a wildcard for its subdomains
/// (`*.example.com`); the port a client adds is ignored. Resolution prefers an exact host, then
/// a wildcard host, then mounts for any host, and within each the longest path prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

impl Mount {
    /// A mount on these path prefixes for every host.
    pub fn paths<I: IntoIterator<Item = S>, S: Into<String>>(paths: I) -> Self {
        Mount {
            hosts: Vec::new(),
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// No route at all: an instance that serves nothing over HTTP (a background plugin).
    pub fn none() -> Self {
        Mount::default()
    }

    /// Whether this mount routes nothing.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.paths.is_empty()
    }

    /// Every (host, path prefix) pair this mount routes; a host-only mount routes all of `/`.
    pub(crate) fn points(&self) -> Vec<MountPoint> {
        let hosts: Vec<Option<&str>> = if self.hosts.is_empty() {
            vec![None]
        } else {
            self.hosts.iter().map(|h| Some(h.as_str())).collect()
        };
        let paths: Vec<&str> = if self.paths.is_empty() && !self.hosts.is_empty() {
            vec!["/"]
        } else {
            self.paths.iter().map(String::as_str).collect()
        };
        let mut points = Vec::new();
        for host in &hosts {
            for path in &paths {
                points.push(MountPoint {
                    host: host.map(|h| h.to_ascii_lowercase()),
                    prefix: (*path).to_owned(),
                });
            }
        }
        points
    }

    /// Problems with this mount, as (field, message) relative to `mount`.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, path) in self.paths.iter().enumerate() {
            if !path.starts_with('/') {
                problems.push((
                    format!("paths[{i}]"),
                    "a path prefix starts with `/`".into(),
                ));
            } else if path.contains(['?', '#', ' ']) {
                problems.push((
                    format!("paths[{i}]"),
                    "a path prefix has no query, fragment or space".into(),
                ));
            }
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if let Some(problem) = host_problem(host) {
                problems.push((format!("hosts[{i}]"), problem.into()));
            }
        }
        problems
    }
}

/// Why `host` cannot be a mount host, if it cannot.
fn host_problem(host: &str) -> Option<&'static str> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    (!valid).then_some("a host is a DNS name such as `courses.example.com` or `*.example.com`, without port or scheme")
}

/// One (host, path prefix) a generation is routed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct MountPoint {
    /// Lower-case; `*.` prefix for a wildcard. `None`: any host.
    pub host: Option<String>,
    pub prefix: String,
}

impl MountPoint {
    /// The label of this mount in `bourse_http_requests_total`.
    pub(crate) fn label(&self) -> String {
        match &self.host {
            Some(host) => format!("{host}{}", self.prefix),
            None => self.prefix.clone(),
        }
    }

    /// 0 for an exact host, 1 for a wildcard host, 2 for any host: lower is preferred.
    fn rank(&self) -> u8 {
        match &self.host {
            Some(host) if host.starts_with("*.") => 1,
            Some(_) => 0,
            None => 2,
        }
    }

    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mounted), Some(host)) => match mounted.strip_prefix('*') {
                // "*.example.com" matches "a.example.com", not "example.com".
                Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
                None => mounted == host,
            },
        };
        host_ok && matches_prefix(&self.prefix, path)
    }
}

/// The prefix that mounted a request, in its extensions: a plugin mounted on several prefixes
/// (or on a host at `/`) builds its own links from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedAt(pub Arc<str>);

/// One started instance of a plugin.
pub(crate) struct Generation {
    /// The instance's name.
    pub(crate) plugin: Arc<str>,
    pub(crate) number: u64,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) inflight: Inflight,
    /// Handed to the plugin as `PluginCtx::shutdown`; cancelled after its drain.
    pub(crate) shutdown: CancellationToken,
    /// Whether it is counted as `active` in the state gauge.
    pub(crate) activated: AtomicBool,
}

/// Counts requests in flight on a generation; draining waits for zero.
#[derive(Default)]
pub(crate) struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held for the duration of one request on one generation.
pub(crate) struct InflightToken<'a>(&'a Inflight);

impl Inflight {
    pub(crate) fn enter(&self) -> InflightToken<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InflightToken(self)
    }

    pub(crate) fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight, or `deadline` passes. Returns whether it went idle.
    pub(crate) async fn wait_idle_until(&self, deadline: tokio::time::Instant) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                tokio::pin!(notified);
                // Register before checking, so a token dropped in between still wakes us.
                notified.as_mut().enable();
                if self.current() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout_at(deadline, wait).await.is_ok()
    }

    /// [`Inflight::wait_idle_until`] `within` from now.
    #[cfg(test)]
    pub(crate) async fn wait_idle(&self, within: std::time::Duration) -> bool {
        self.wait_idle_until(tokio::time::Instant::now() + within)
            .await
    }
}

impl Drop for InflightToken<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Status-class counters of one mount, resolved when the table is built.
#[derive(Clone)]
pub(crate) struct StatusCounters([IntCounter; 5]);

impl StatusCounters {
    pub(crate) fn new(vec: &prometheus::IntCounterVec, mount: &str) -> Self {
        StatusCounters(
            ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| vec.with_label_values(&[mount, class])),
        )
    }

    pub(crate) fn record(&self, status: http::StatusCode) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.0[class].inc();
    }
}

pub(crate) struct Route {
    point: MountPoint,
    /// The prefix handed to the plugin as [`MountedAt`].
    pub(crate) mounted_at: MountedAt,
    pub(crate) generation: Arc<Generation>,
    pub(crate) counters: StatusCounters,
}

impl Route {
    pub(crate) fn new(
        point: MountPoint,
        generation: Arc<Generation>,
        counters: StatusCounters,
    ) -> Self {
        Route {
            mounted_at: MountedAt(Arc::from(point.prefix.as_str())),
            point,
            generation,
            counters,
        }
    }
}

/// Whether `prefix` mounts `path` (see [`Mount`]).
pub(crate) fn matches_prefix(prefix: &str, path: &str) -> bool {
    match prefix.strip_suffix('/') {
        Some(bare) => path.starts_with(prefix) || path == bare,
        None => {
            path.starts_with(prefix)
                && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/')
        }
    }
}

/// An immutable routing snapshot; replaced whole on every apply.
pub(crate) struct RouteTable {
    /// Exact hosts first, then wildcard hosts, then any host; longest prefix first within each.
    routes: Vec<Route>,
    /// Whether any route names a host: when none does, requests skip reading theirs.
    by_host: bool,
}

impl RouteTable {
    pub(crate) fn empty() -> Self {
        RouteTable {
            routes: Vec::new(),
            by_host: false,
        }
    }

    pub(crate) fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            (a.point.rank(), std::cmp::Reverse(a.point.prefix.len()))
                .cmp(&(b.point.rank(), std::cmp::Reverse(b.point.prefix.len())))
                .then_with(|| a.point.prefix.cmp(&b.point.prefix))
        });
        let by_host = routes.iter().any(|r| r.point.host.is_some());
        RouteTable { routes, by_host }
    }

    /// The route for a request with this `Host` (or `:authority`) and path.
    pub(crate) fn resolve<B>(&self, req: &http::Request<B>) -> Option<&Route> {
        let path = req.uri().path();
        if !self.by_host {
            return self
                .routes
                .iter()
                .find(|r| matches_prefix(&r.point.prefix, path));
        }
        let host = request_host(req);
        self.routes
            .iter()
            .find(|route| route.point.matches(host.as_deref(), path))
    }
}

/// The host a request names, lower-case, without port: the URI's authority (HTTP/2, absolute
/// form) or the `Host` header.
fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    let raw = match req.uri().host() {
        Some(host) => host,
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    let without_port = match raw.rsplit_once(':') {
        // An IPv6 literal keeps its colons inside brackets.
        Some((host, port)) if !host.ends_with(']') || raw.starts_with('[') => {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                raw
            }
        }
        _ => raw,
    };
    Some(without_port.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn trailing_slash_prefix_matches_the_bare_path_too() {
        assert!(matches_prefix("/openrtb2/", "/openrtb2/auction"));
        assert!(matches_prefix("/openrtb2/", "/openrtb2"));
        assert!(!matches_prefix("/openrtb2/", "/openrtb22"));
        assert!(!matches_prefix("/openrtb2/", "/openrtb"));
    }

    #[test]
    fn bare_prefix_matches_whole_segments_only() {
        assert!(matches_prefix("/api", "/api"));
        assert!(matches_prefix("/api", "/api/x"));
        assert!(!matches_prefix("/api", "/apix"));
        assert!(matches_prefix("/", "/anything"));
    }

    fn point(host: Option<&str>, prefix: &str) -> MountPoint {
        MountPoint {
            host: host.map(str::to_owned),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard_subdomain() {
        let exact = point(Some("courses.example.com"), "/");
        assert!(exact.matches(Some("courses.example.com"), "/x"));
        assert!(!exact.matches(Some("shop.example.com"), "/x"));
        assert!(!exact.matches(None, "/x"));
        let wildcard = point(Some("*.example.com"), "/");
        assert!(wildcard.matches(Some("a.example.com"), "/"));
        assert!(!wildcard.matches(Some("example.com"), "/"));
        assert!(!wildcard.matches(Some("a.example.org"), "/"));
    }

    #[test]
    fn the_request_host_drops_its_port_and_case() {
        let req = |host: &str| {
            http::Request::builder()
                .uri("/x")
                .header("host", host)
                .body(())
                .unwrap()
        };
        assert_eq!(
            request_host(&req("Courses.Example.com:8080")).as_deref(),
            Some("courses.example.com")
        );
        assert_eq!(request_host(&req("[::1]:8080")).as_deref(), Some("[::1]"));
        let absolute = http::Request::builder()
            .uri("http://Shop.example.com:81/x")
            .body(())
            .unwrap();
        assert_eq!(request_host(&absolute).as_deref(), Some("shop.example.com"));
    }

    #[test]
    fn a_host_only_mount_routes_every_path_of_that_host() {
        let mount = Mount {
            hosts: vec!["Courses.example.com".into()],
            paths: vec![],
        };
        assert_eq!(
            mount.points(),
            vec![point(Some("courses.example.com"), "/")]
        );
    }

    #[test]
    fn mount_problems_name_the_field() {
        let mount = Mount {
            hosts: vec!["http://x.com".into(), "ok.example".into()],
            paths: vec!["api".into(), "/fine/".into()],
        };
        let fields: Vec<String> = mount.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["paths[0]", "hosts[0]"]);
    }

    #[tokio::test]
    async fn wait_idle_returns_when_the_last_token_drops() {
        let inflight = Arc::new(Inflight::default());
        let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let held = inflight.clone();
        let task = tokio::spawn(async move {
            let _token = held.enter();
            entered_tx.send(()).unwrap();
            release_rx.await.unwrap();
        });
        entered_rx.await.unwrap();
        assert_eq!(inflight.current(), 1);
        let waiter = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.wait_idle(Duration::from_secs(30)).await })
        };
        release_tx.send(()).unwrap();
        assert!(waiter.await.unwrap());
        task.await.unwrap();
        assert_eq!(inflight.current(), 0);
    }

    #[tokio::test]
    async fn wait_idle_gives_up_at_the_deadline() {
        let inflight = Inflight::default();
        let _token = inflight.enter();
        assert!(!inflight.wait_idle(Duration::from_millis(20)).await);
    }
}
