//! `bourse sim`: run a scenario's simulated partners and traffic, against this process or any
//! running bourse, and report.

use anyhow::Context;
use bourse_sim::bidder::SimBidderHandle;
use bourse_sim::report::Report;
use bourse_sim::scenario::Scenario;
use std::path::{Path, PathBuf};

/// Options of `bourse sim run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A running bourse's auction URL; `None` starts one in this process with the scenario's bidders.
    pub target: Option<String>,
    /// Overrides the open-loop rate of the scenario.
    pub rate: Option<f64>,
    /// Overrides the scenario's duration, seconds.
    pub duration_secs: Option<f64>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Where to write the latency-over-time SVG.
    pub plot: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// The configuration of a bourse that serves `scenario` with its running simulated bidders.
pub fn exchange_config(scenario: &Scenario, bidders: &[SimBidderHandle]) -> anyhow::Result<String> {
    let mut plugins = toml::Table::new();
    plugins.insert(
        "exchange".into(),
        toml::Value::Table(scenario.exchange_table(bidders)),
    );
    let mut root = toml::Table::new();
    root.insert(
        "server".into(),
        toml::Value::Table(toml::toml! { listen = "127.0.0.1:0" }),
    );
    root.insert(
        "log".into(),
        toml::Value::Table(toml::toml! { format = "text"
        level = "warn" }),
    );
    root.insert("plugins".into(), toml::Value::Table(plugins));
    toml::to_string(&root).context("writing the exchange configuration")
}

/// Runs a scenario and returns its report, writing the JSON and plot when asked.
pub async fn run(path: &Path, options: &RunOptions) -> anyhow::Result<Report> {
    let mut scenario = Scenario::load(path)?;
    if let Some(rate) = options.rate {
        scenario.traffic.mode = bourse_sim::traffic::Mode::Open { rate };
    }
    if let Some(secs) = options.duration_secs {
        scenario.traffic.duration_secs = Some(secs);
    }
    scenario.validate()?;
    let report = match &options.target {
        Some(target) => {
            bourse_sim::traffic::run(target, &scenario.traffic, scenario.seed, options.progress)
                .await?
        }
        None => {
            let bidders = scenario.start_bidders().await?;
            let kernel = crate::kernel();
            let text = exchange_config(&scenario, &bidders)?;
            let loaded = kernel
                .load_config_str(&text, "scenario")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let running = kernel
                .start(loaded)
                .await
                .context("starting bourse for the scenario")?;
            let target = format!("http://{}/openrtb2/auction", running.local_addr());
            let report = bourse_sim::traffic::run(
                &target,
                &scenario.traffic,
                scenario.seed,
                options.progress,
            )
            .await;
            running.shutdown().await;
            drop(bidders);
            report?
        }
    };
    if let Some(json) = &options.json {
        std::fs::write(json, report.to_json())
            .with_context(|| format!("writing {}", json.display()))?;
    }
    if let Some(plot) = &options.plot {
        report.plot_svg(plot)?;
    }
    Ok(report)
}
