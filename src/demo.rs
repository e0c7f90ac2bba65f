//! `bourse demo`: the exchange on embedded defaults with simulated bidders on loopback.

use anyhow::Context;
use bourse_sim::bidder::{SimBidder, SimBidderHandle};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// A running demo: the simulated bidders and the config text the exchange was started with.
pub struct Demo {
    /// The simulated demand partners, kept alive for the demo's lifetime.
    pub bidders: Vec<SimBidderHandle>,
    /// The generated configuration (TOML).
    pub config: String,
}

/// Starts the demo bidders and writes a configuration that points the exchange at them.
pub async fn start_bidders(listen: SocketAddr) -> anyhow::Result<Demo> {
    let mut bidders = Vec::new();
    let mut config = format!(
        "[server]\nlisten = \"{listen}\"\n\n[log]\nformat = \"text\"\nlevel = \"info\"\n\n\
         [plugins.exchange]\ncurrency = \"USD\"\nfee = 0.1\npublic_url = \"http://{listen}\"\n\
         schain_asi = \"bourse.example\"\n\n[plugins.exchange.rates]\nEUR = 1.08\nGBP = 1.27\n"
    );
    for sim in bourse_sim::demo::demo_bidders() {
        let name = sim.name.clone();
        let media: Vec<String> = sim
            .media
            .iter()
            .map(|m| format!("\"{}\"", m.as_str()))
            .collect();
        let handle = SimBidder::spawn(sim, "127.0.0.1:0".parse()?)
            .await
            .with_context(|| format!("starting simulated bidder {name}"))?;
        write!(
            config,
            "\n[[plugins.exchange.bidders]]\nname = \"{name}\"\nendpoint = \"{}\"\ntimeout_ms = 150\nmedia = [{}]\n",
            handle.endpoint(),
            media.join(", ")
        )?;
        bidders.push(handle);
    }
    Ok(Demo { bidders, config })
}

/// What to try once the demo runs.
pub fn instructions(addr: SocketAddr) -> String {
    format!(
        "bourse demo is listening on http://{addr}\n\n\
         An auction (a 300x250 banner with a 0.50 USD floor):\n  \
         curl -s -X POST http://{addr}/openrtb2/auction -H 'content-type: application/json' \\\n    \
         -d '{{\"id\":\"demo-1\",\"tmax\":250,\"imp\":[{{\"id\":\"1\",\"banner\":{{\"format\":[{{\"w\":300,\"h\":250}}]}},\"bidfloor\":0.5}}],\"site\":{{\"page\":\"https://news.example/article\",\"publisher\":{{\"id\":\"pub-1\"}}}}}}'\n\n\
         A request nobody bids on (a floor of 1000 USD) answers 204:\n  \
         curl -si -X POST http://{addr}/openrtb2/auction -d '{{\"id\":\"demo-2\",\"imp\":[{{\"id\":\"1\",\"banner\":{{\"w\":300,\"h\":250}},\"bidfloor\":1000}}]}}'\n\n\
         Metrics: curl -s http://{addr}/metrics | grep bourse_\n\
         Press Ctrl-C to stop.\n"
    )
}
