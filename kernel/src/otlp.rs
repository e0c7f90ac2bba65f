//! Optional OTLP/HTTP export of spans (`[log.otlp]`): its config and checks, the exporter on
//! our own hyper client, and the batch processor that sends spans in the background.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;

/// The `tracing` target of every span meant for OTLP export. Log output never shows it, and
/// with export off no layer is interested in it, so such a span is never built: creating one
/// costs a cached callsite check.
pub const TRACE_TARGET: &str = "bourse::trace";

/// Largest collector answer we read; an OTLP answer is a few bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// `[log.otlp]`: where to send spans. The table's presence turns export on.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP traces URL, path included (`http` or `https`).
    pub endpoint: String,
    /// `service.name` of every exported span.
    pub service_name: String,
    /// Share of auctions traced, 0 to 1, decided per trace id.
    pub sample_ratio: f64,
    /// Extra request headers, e.g. an `authorization` token for a hosted collector.
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export request.
    pub timeout_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4318/v1/traces".to_owned(),
            service_name: "bourse".to_owned(),
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
            timeout_ms: 10_000,
        }
    }
}

/// Header values are often credentials: Debug shows only their names.
impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl OtlpConfig {
    /// Every problem as (field path below `log.otlp`, message).
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.endpoint) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push((
                "endpoint".to_owned(),
                format!(
                    "OTLP endpoint `{}` must be an http or https URL",
                    self.endpoint
                ),
            )),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => problems.push((
                "endpoint".to_owned(),
                format!("OTLP endpoint `{}` has no host", self.endpoint),
            )),
            Ok(_) => {}
            Err(error) => problems.push((
                "endpoint".to_owned(),
                format!("invalid OTLP endpoint `{}`: {error}", self.endpoint),
            )),
        }
        if self.service_name.trim().is_empty() {
            problems.push(("service_name".to_owned(), "must not be empty".to_owned()));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            problems.push((
                "sample_ratio".to_owned(),
                format!("must be between 0 and 1, got {}", self.sample_ratio),
            ));
        }
        if self.timeout_ms == 0 {
            problems.push(("timeout_ms".to_owned(), "must be above 0".to_owned()));
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push((
                    format!("headers.{name}"),
                    format!("`{name}` is not a valid header name"),
                ));
            } else if http::HeaderValue::from_str(value).is_err() {
                problems.push((
                    format!("headers.{name}"),
                    "not a valid header value".to_owned(),
                ));
            }
        }
        problems
    }

    fn sampler(&self) -> Sampler {
        match self.sample_ratio {
            r if r >= 1.0 => Sampler::AlwaysOn,
            r if r <= 0.0 => Sampler::AlwaysOff,
            r => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r))),
        }
    }
}

/// Builds the exporter and its batch processor, which owns a thread of its own: spans are
/// queued without waiting (and dropped when the queue is full), never sent on the request path.
/// Must be called on a Tokio runtime, which carries the export requests.
pub(crate) fn start_export(config: &OtlpConfig) -> anyhow::Result<SdkTracerProvider> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("OTLP export must be started on a Tokio runtime")?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = ExportClient {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector),
        runtime,
        timeout,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.clone())
        .with_timeout(timeout)
        .with_headers(config.headers.clone().into_iter().collect())
        .build()
        .context("building the OTLP span exporter")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(config.sampler())
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

/// The exporter's HTTP client: our hyper stack rather than the crate's default (a blocking
/// reqwest), so nothing new is built.
#[derive(Debug)]
struct ExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (client, timeout) = (self.client.clone(), self.timeout);
        let request = request.map(Full::new);
        // The batch processor calls this from its own thread, outside any runtime: the I/O
        // runs on the server's runtime and this thread only waits for it.
        let exchange = self.runtime.spawn(async move {
            let answer = async {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_ANSWER_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            tokio::time::timeout(timeout, answer)
                .await
                .map_err(|_| HttpError::from(format!("no answer within {timeout:?}")))?
        });
        let result = match exchange.await {
            Ok(result) => result,
            Err(join) => Err(Box::new(join) as HttpError),
        };
        match &result {
            Ok(response) if !response.status().is_success() => {
                warn_export_failed(&format!("collector answered {}", response.status()));
            }
            Ok(_) => {}
            Err(error) => warn_export_failed(&error.to_string()),
        }
        result
    }
}

/// Unix second of the last export warning, so a collector that is down logs once a minute
/// rather than once per batch.
static LAST_EXPORT_WARNING: AtomicU64 = AtomicU64::new(0);

fn warn_export_failed(error: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_EXPORT_WARNING.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60
        && LAST_EXPORT_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(%error, "OTLP span export failed; spans are dropped until it recovers");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_trace_every_auction() {
        let config = OtlpConfig::default();
        assert!(config.problems().is_empty());
        assert!(matches!(config.sampler(), Sampler::AlwaysOn));
    }

    #[test]
    fn debug_output_hides_header_values() {
        let config = OtlpConfig {
            headers: BTreeMap::from([("authorization".into(), "Bearer s3cret".into())]),
            ..OtlpConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            shown.contains("authorization") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let config = OtlpConfig {
            endpoint: "ftp://collector/v1/traces".into(),
            service_name: " ".into(),
            sample_ratio: 1.5,
            headers: BTreeMap::from([("bad name".into(), "x".into())]),
            timeout_ms: 0,
        };
        let fields: Vec<String> = config.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "endpoint",
                "service_name",
                "sample_ratio",
                "timeout_ms",
                "headers.bad name"
            ]
        );
        let unparsable = OtlpConfig {
            endpoint: "not a url".into(),
            ..OtlpConfig::default()
        };
        assert!(unparsable.problems()[0].1.contains("invalid OTLP endpoint"));
        let nan = OtlpConfig {
            sample_ratio: f64::NAN,
            ..OtlpConfig::default()
        };
        assert_eq!(nan.problems().len(), 1);
    }
}
