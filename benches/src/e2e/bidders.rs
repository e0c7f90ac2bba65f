//! `bourse-e2e bidders`: simulated partners in their own process and runtime, so that the
//! server under test's CPU is measured alone. Prints `bidder NAME URL` per partner, then
//! `ready`, and serves until its stdin closes.

use bourse_sim::bidder::{PriceDistribution, SimBidder, SimBidderConfig};
use std::io::BufRead;

/// What to start.
#[derive(Debug, Clone, clap::Args)]
pub struct BiddersArgs {
    /// Partners that bid on every impression at once, at a fixed price each.
    #[arg(long, default_value_t = 4)]
    pub count: usize,
    /// Partners that never answer in time (held 30 s, then 204).
    #[arg(long, default_value_t = 0)]
    pub hanging: usize,
    /// The first partner's price (CPM); partner i bids this plus 0.1·i.
    #[arg(long, default_value_t = 1.0)]
    pub price: f64,
    /// Tokio worker threads of the partners' runtime.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Starts the partners and serves until stdin closes.
pub fn serve(args: &BiddersArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let any_port = "127.0.0.1:0".parse()?;
        let mut handles = Vec::new();
        for i in 0..args.count {
            let mut config = SimBidderConfig::new(format!("sim-{i}"));
            config.seed = i as u64;
            config.price = PriceDistribution::Fixed {
                value: args.price + 0.1 * i as f64,
            };
            handles.push(SimBidder::spawn(config, any_port).await?);
        }
        for i in 0..args.hanging {
            let mut config = SimBidderConfig::new(format!("hang-{i}"));
            config.timeout_share = 1.0;
            handles.push(SimBidder::spawn(config, any_port).await?);
        }
        for handle in &handles {
            println!("bidder {} {}", handle.name(), handle.endpoint());
        }
        println!("ready");
        // Serve until the harness closes our stdin (or goes away).
        tokio::task::spawn_blocking(|| {
            let mut stdin = std::io::stdin().lock();
            let mut line = String::new();
            while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        })
        .await?;
        drop(handles);
        anyhow::Ok(())
    })?;
    // Held requests of hanging partners must not keep the process alive.
    runtime.shutdown_background();
    Ok(())
}
