//! The `bourse` command line: serve, demo and check-config.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// bourse: a real-time OpenRTB 2.6 ad exchange on a small plugin kernel.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exchange from a configuration file (SIGHUP reloads it, SIGTERM drains and stops).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short, env = "BOURSE_CONFIG")]
        config: PathBuf,
    },
    /// Run the exchange with built-in simulated bidders, so auctions really clear.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Check a configuration file and report every error with its line.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bourse: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bourse: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    let kernel = bourse::kernel();
    match command {
        Command::CheckConfig { file } => match kernel.load_config_file(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{errors}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Serve { config } => {
            let loaded = kernel
                .load_config_file(&config)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            bourse_kernel::init_logging(&loaded.log);
            let running = kernel.start(loaded).await.context("starting the server")?;
            let addr = running.local_addr();
            tracing::info!(%addr, "bourse is serving");
            println!("bourse is serving on http://{addr}");
            running.run_until_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { listen } => {
            let demo = bourse::demo::start_bidders(listen).await?;
            let loaded = kernel
                .load_config_str(&demo.config, "demo")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            bourse_kernel::init_logging(&loaded.log);
            let running = kernel.start(loaded).await.context("starting the demo")?;
            println!("{}", bourse::demo::instructions(running.local_addr()));
            running.run_until_signal().await;
            drop(demo);
            Ok(ExitCode::SUCCESS)
        }
    }
}
