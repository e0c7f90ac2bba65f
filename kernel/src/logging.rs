//! Process logging setup: JSON or text `tracing` output, level from config unless `RUST_LOG`
//! says otherwise, and optionally OTLP export of spans (`[log.otlp]`).

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::otlp::{TRACE_TARGET, start_export};
use crate::{LogConfig, LogFormat};

/// How long a graceful stop waits for the last spans to reach the collector.
const EXPORT_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// What [`init_logging`] started that a graceful stop must end: the OTLP exporter, if any.
#[must_use = "call `shutdown` on a graceful stop so buffered spans are exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered (waiting at most a few seconds) and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // This blocks until the batch is sent, which itself needs the runtime's workers.
        let stopped = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(EXPORT_FLUSH_DEADLINE)
        })
        .await;
        match stopped {
            Ok(Ok(())) => tracing::debug!("OTLP exporter flushed and stopped"),
            Ok(Err(error)) => tracing::warn!(%error, "OTLP exporter did not stop cleanly"),
            Err(error) => tracing::warn!(%error, "OTLP exporter shutdown task failed"),
        }
    }
}

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set and valid, overrides
/// `config.level`. Does nothing if a subscriber is already installed (tests, embedding).
///
/// With `config.otlp` set it also starts the OTLP exporter (on the current Tokio runtime) and
/// adds a layer that turns the spans of target [`TRACE_TARGET`] into OpenTelemetry spans.
/// Without it no such layer exists, so those spans are never even created.
pub fn init_logging(config: &LogConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // Spans for export are not log lines, whatever the level.
        .add_directive(format!("{TRACE_TARGET}=off").parse()?);
    let ansi = std::io::stderr().is_terminal();
    let output: Box<dyn Layer<Registry> + Send + Sync> = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![output];
    let provider = match &config.otlp {
        Some(otlp) => {
            let provider = start_export(otlp)?;
            let spans = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bourse"))
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false)
                .with_target(false)
                .with_filter(Targets::new().with_target(TRACE_TARGET, tracing::Level::TRACE))
                .boxed();
            layers.push(spans);
            Some(provider)
        }
        None => None,
    };
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        tracing::debug!("a tracing subscriber was already installed; keeping it");
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Ok(Telemetry { provider: None });
    }
    if let Some(otlp) = &config.otlp {
        tracing::info!(
            endpoint = %otlp.endpoint,
            sample_ratio = otlp.sample_ratio,
            "OTLP span export on"
        );
    }
    Ok(Telemetry { provider })
}
