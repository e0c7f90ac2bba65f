//! `bourse-e2e`: the end-to-end benchmark, bourse against the bare baseline forwarder (A/B/A)
//! on loopback, bounded in time; prints a Markdown table and writes JSON results.

use bourse_benches::e2e::{self, bidders::BiddersArgs};
use clap::{Parser, Subcommand};

// The simulated partners run in this binary (`bidders`); keep them cheap.
#[global_allocator]
static ALLOCATOR: bourse::alloc::Mimalloc = bourse::alloc::Mimalloc;

/// End-to-end benchmark of bourse against a bare hyper forwarder.
#[derive(Debug, Parser)]
#[command(name = "bourse-e2e")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs the scenarios: partners, bourse and the baseline as child processes, load from wrk.
    Run(e2e::RunArgs),
    /// Serves simulated partners until stdin closes (started by `run`).
    Bidders(BiddersArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Run(args) => {
            let results = e2e::run(&args)?;
            println!("{}", e2e::markdown(&results));
            std::fs::write(&args.json, serde_json::to_string_pretty(&results)?)?;
            eprintln!("results written to {}", args.json.display());
            Ok(())
        }
        Cmd::Bidders(args) => e2e::bidders::serve(&args),
    }
}
