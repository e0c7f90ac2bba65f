//! Process logging setup: JSON or text `tracing` output, level from config unless `RUST_LOG`
//! says otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::{LogConfig, LogFormat};

/// Installs the global `tracing` subscriber. `RUST_LOG`, when set and valid, overrides
/// `config.level`. Does nothing if a subscriber is already installed (tests, embedding).
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed; keeping it");
    }
}
