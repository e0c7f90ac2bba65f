//! Load scenarios: committed, seeded TOML files (`sim/scenarios/*.toml`) naming the simulated
//! bidders to start, the traffic to send and extra exchange configuration.

use crate::bidder::{SimBidder, SimBidderConfig, SimBidderHandle};
use crate::traffic::TrafficConfig;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// One load scenario.
///
/// ```toml
/// name = "smoke"
/// seed = 1
///
/// [[bidders]]            # each a `SimBidderConfig`
/// name = "dsp-a"
/// seed = 11
///
/// [traffic]              # a `TrafficConfig`
/// mode = { kind = "open", rate = 100 }
/// duration_secs = 2
///
/// [exchange]             # merged into bourse's [plugins.exchange]
/// fee = 0.1
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario shows, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of the generated requests (bidders carry their own seeds).
    pub seed: u64,
    /// Simulated bidders to start, each configured in bourse as a generic OpenRTB partner.
    #[serde(default)]
    pub bidders: Vec<SimBidderConfig>,
    /// The load to apply.
    pub traffic: TrafficConfig,
    /// The `timeout_ms` bourse gives each simulated bidder.
    #[serde(default = "default_bidder_timeout_ms")]
    pub bidder_timeout_ms: u64,
    /// Extra keys for bourse's `[plugins.exchange]` table.
    #[serde(default)]
    pub exchange: Option<toml::Table>,
}

fn default_bidder_timeout_ms() -> u64 {
    150
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Scenario> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        Scenario::parse(&text).with_context(|| format!("scenario {}", path.display()))
    }

    /// Parses and checks scenario TOML.
    pub fn parse(text: &str) -> anyhow::Result<Scenario> {
        let scenario: Scenario = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Starts the scenario's simulated bidders on loopback (any free port), in order.
    pub async fn start_bidders(&self) -> anyhow::Result<Vec<SimBidderHandle>> {
        let mut handles = Vec::with_capacity(self.bidders.len());
        for config in &self.bidders {
            let handle = SimBidder::spawn(config.clone(), ([127, 0, 0, 1], 0).into())
                .await
                .with_context(|| format!("starting simulated bidder {}", config.name))?;
            handles.push(handle);
        }
        Ok(handles)
    }

    /// bourse's `[plugins.exchange]` table for this scenario: the `[exchange]` extras plus one
    /// `[[bidders]]` entry per running simulated bidder (generic OpenRTB adapter, its endpoint,
    /// `bidder_timeout_ms` and the media it buys), after any bidders the extras list.
    pub fn exchange_table(&self, bidders: &[SimBidderHandle]) -> toml::Table {
        let mut table = self.exchange.clone().unwrap_or_default();
        let mut list = match table.remove("bidders") {
            Some(toml::Value::Array(list)) => list,
            _ => Vec::new(),
        };
        for handle in bidders {
            let media = self
                .bidders
                .iter()
                .find(|b| b.name == handle.name())
                .map(|b| b.media.iter().map(|m| m.as_str().into()).collect())
                .unwrap_or_default();
            let mut entry = toml::Table::new();
            entry.insert("name".into(), handle.name().into());
            entry.insert("adapter".into(), "openrtb".into());
            entry.insert("endpoint".into(), handle.endpoint().into());
            entry.insert(
                "timeout_ms".into(),
                i64::try_from(self.bidder_timeout_ms)
                    .unwrap_or(i64::MAX)
                    .into(),
            );
            entry.insert("media".into(), toml::Value::Array(media));
            // Simulated partners run on loopback, so their notice URLs name it.
            entry.insert(
                "notice_allowed_hosts".into(),
                toml::Value::Array(vec![handle.endpoint_host().into()]),
            );
            list.push(toml::Value::Table(entry));
        }
        table.insert("bidders".into(), toml::Value::Array(list));
        table
    }

    /// Checks what TOML types cannot: names, shares, rates and durations.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.name.trim().is_empty() {
            bail!("name must not be empty");
        }
        if self.bidder_timeout_ms == 0 {
            bail!("bidder_timeout_ms must be at least 1");
        }
        let mut names = HashSet::new();
        for (n, bidder) in self.bidders.iter().enumerate() {
            if bidder.name.is_empty() {
                bail!("bidders[{n}].name must not be empty");
            }
            if !names.insert(bidder.name.as_str()) {
                bail!("bidders[{n}].name `{}` repeats", bidder.name);
            }
            if let Err(error) = bidder.validate() {
                bail!("bidders[{n}].{error}");
            }
        }
        self.traffic.validate().map_err(anyhow::Error::msg)
    }
}
