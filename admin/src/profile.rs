//! Profiling the running process for signed-in operators: `/debug/pprof/profile?seconds=N`
//! samples every thread's stack (`pprof`, SIGPROF at 199 Hz) and answers a CPU flame graph as
//! SVG; `/debug/pprof/heap` answers the process's memory figures. Both need an admin session
//! or HTTP Basic credentials of an admin user, so `curl -u` works from a shell.

use crate::Admin;
use crate::web::{client_ip, plain};
use base64::Engine as _;
use bourse_kernel::{Request, Response};
use http::{HeaderValue, StatusCode, header};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The profiler is process-wide: one profile at a time.
static PROFILING: AtomicBool = AtomicBool::new(false);
/// Sampling rate; a prime, so samples do not beat with periodic work.
const FREQUENCY_HZ: i32 = 199;
const DEFAULT_SECONDS: u64 = 10;
const MAX_SECONDS: u64 = 60;

/// Clears [`PROFILING`] however the profile ends.
struct ProfilingSlot;

impl ProfilingSlot {
    fn take() -> Option<ProfilingSlot> {
        PROFILING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(ProfilingSlot)
    }
}

impl Drop for ProfilingSlot {
    fn drop(&mut self) {
        PROFILING.store(false, Ordering::Release);
    }
}

fn unauthorized() -> Response {
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "sign in to the admin, or send an admin user's credentials (curl -u NAME)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"bourse admin\", charset=\"UTF-8\""),
    );
    response
}

/// Samples the process for `seconds` and draws the flame graph.
fn flame_graph(seconds: u64) -> Result<Vec<u8>, String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| format!("cannot start the profiler: {e}"))?;
    std::thread::sleep(Duration::from_secs(seconds));
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("cannot build the report: {e}"))?;
    let mut svg = Vec::new();
    report
        .flamegraph(&mut svg)
        .map_err(|e| format!("cannot draw the flame graph: {e}"))?;
    Ok(svg)
}

/// `VmRSS`, `VmHWM` and friends from `/proc/self/status`.
fn memory_figures() -> String {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| {
            status
                .lines()
                .filter(|l| l.starts_with("Vm") || l.starts_with("Rss") || l.starts_with("Threads"))
                .map(|l| format!("{l}\n"))
                .collect()
        })
        .unwrap_or_else(|e| format!("memory figures unavailable: {e}\n"))
}

impl Admin {
    /// Whether the request carries an admin user's name and password (Basic). Attempts count
    /// against the sign-in limiter, as Argon2id checks are costly by design.
    async fn basic_credentials_ok(&self, req: &Request) -> bool {
        let Some(encoded) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let ip = client_ip(req);
        if let Err(refusal) = self.guard.admit_client(ip) {
            tracing::warn!(%ip, ?refusal, "profiling credentials over the sign-in limit");
            return false;
        }
        let Some((user, password)) = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.split_once(':')
                    .map(|(u, p)| (u.to_owned(), p.to_owned()))
            })
        else {
            return false;
        };
        if self.guard.admit_account(&user).is_err() {
            tracing::warn!(user, %ip, "profiling credentials over the per-account limit");
            return false;
        }
        let ok = self
            .guard
            .verify(self.users_file.clone(), user.clone(), password)
            .await
            .unwrap_or(false);
        if !ok {
            tracing::info!(user, %ip, "profiling credentials refused");
        }
        ok
    }

    /// `/debug/pprof/*` and `/admin/debug/pprof/*`.
    pub(crate) async fn debug(&self, req: Request) -> Response {
        if self.session(&req).is_none() && !self.basic_credentials_ok(&req).await {
            return unauthorized();
        }
        let path = req.uri().path();
        let what = path.rsplit('/').next().unwrap_or_default();
        match what {
            "profile" => {
                let seconds = crate::web::query(&req)
                    .get("seconds")
                    .map_or(Some(DEFAULT_SECONDS), |s| s.parse().ok())
                    .filter(|s| (1..=MAX_SECONDS).contains(s));
                let Some(seconds) = seconds else {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "seconds is a whole number from 1 to 60",
                    );
                };
                self.cpu_profile(seconds).await
            }
            "heap" => {
                let text = format!(
                    "{}\nAllocation-site heap profiles need a sampling allocator; bourse runs on \
                     mimalloc, which keeps none. The figures above are the kernel's view of this \
                     process.\n",
                    memory_figures()
                );
                let mut response = Response::new(bourse_kernel::full(text));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                response
            }
            _ => plain(
                StatusCode::NOT_FOUND,
                "try /debug/pprof/profile?seconds=10 or /debug/pprof/heap",
            ),
        }
    }

    async fn cpu_profile(&self, seconds: u64) -> Response {
        let Some(slot) = ProfilingSlot::take() else {
            return plain(
                StatusCode::CONFLICT,
                "a profile is being taken; try again when it is done",
            );
        };
        // The profiler's guard is not `Send`: it lives on a blocking thread for the duration.
        let result = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            flame_graph(seconds)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the profiler stopped: {e}")));
        match result {
            Ok(svg) => {
                let mut response = Response::new(bourse_kernel::full(svg));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("image/svg+xml"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                // The graph's own script and styles make it searchable; nothing else may load.
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
                    ),
                );
                response
            }
            Err(error) => {
                tracing::error!(%error, "CPU profile failed");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the profile failed; see the server log",
                )
            }
        }
    }
}
