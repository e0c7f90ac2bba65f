//! The bourse microkernel: hosts plugin instances behind a live route table (by host and path),
//! loads and prepares their config, serves HTTP/1.1 and h2c, exposes metrics and health, adds
//! and removes instances and swaps their generations without dropping a request, and hands
//! every plugin the shared services and the admin shell's contract. It knows nothing of ads.

mod access;
pub mod admin;
mod assets;
mod audit;
mod body;
mod center;
mod config;
mod etcd;
mod extension;
mod host;
mod kernel_metrics;
mod limits;
mod logging;
mod metrics;
mod otlp;
mod plugin;
mod request;
mod routes;
mod running;
mod serve;
mod time;
mod watch;

pub use access::{AccessConfig, ClientAddr};
pub use assets::{Asset, AssetRefusal, EmbeddedAssets};
pub use audit::{AuditEntry, config_diff, read_audit_file};
pub use body::{BodyError, read_body};
/// The shared services every plugin gets in `PluginCtx::services`, re-exported so a plugin
/// names their types through the kernel alone.
pub use bourse_services as services;
pub use center::{ConfigCenter, Refusal, plugin_table};
pub use config::{ConfigError, ConfigErrors, LoadedConfig, LogConfig, LogFormat, ServerConfig};
pub use etcd::EtcdConfig;
pub use extension::{Extension, Extensions};
pub use host::{ApplyReport, PluginDirectory, PluginEntry};
pub use limits::ConnectionsConfig;
pub use logging::{Telemetry, init_logging};
pub use metrics::Metrics;
pub use otlp::{OtlpConfig, TRACE_TARGET};
pub use plugin::{
    ConfigIssue, Handler, Manifest, Plugin, PluginCtx, PluginError, overloaded_response,
};
pub use request::{BodyTimeout, Request, RequestBody};
pub use routes::{Mount, MountedAt};
pub use running::{Kernel, KernelBuilder, Running};
pub use time::{civil_from_days, unix_now_ms, utc_datetime};

use http_body_util::{BodyExt, Empty, Full};

/// Any error that can cross a task boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type every handler returns.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
/// A response as a plugin hands it back.
pub type Response = http::Response<Body>;

/// A body made of one buffer.
pub fn full(bytes: impl Into<bytes::Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A JSON response with `content-type: application/json`. A value that fails to serialize
/// (a bug, never input) becomes a 500 with `{"error":"internal"}`.
pub fn json_response(status: http::StatusCode, body: &impl serde::Serialize) -> Response {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes),
        Err(error) => {
            tracing::error!(%error, "response body failed to serialize");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"internal"}"#.to_vec(),
            )
        }
    };
    let mut response = http::Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The `{"error": code}` body the kernel uses for its own error responses.
pub fn error_response(status: http::StatusCode, code: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": code }))
}
