//! The `bourse` command line: serve, demo and check-config.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

// glibc malloc was a fifth of the exchange's CPU under load (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: bourse::alloc::Mimalloc = bourse::alloc::Mimalloc;

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
    /// The simulator: simulated demand partners and load with a latency and revenue report.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// The embedded admin's users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The config audit log (`[server] audit_log`): what was applied, and putting an earlier
    /// config back.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Signed WebAssembly plugins: keys, signing, verification, inspection and install.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Write a new ed25519 signing key (PEM) and print its public key for `trusted_keys`.
    Keygen {
        /// Where to write the secret key; an existing file is never overwritten.
        key: PathBuf,
    },
    /// Sign a module with its manifest template into an artifact (`NAME.plugin`).
    Sign {
        /// The secret key (PEM) from `keygen`.
        key: PathBuf,
        /// The WebAssembly component.
        module: PathBuf,
        /// The manifest template (`plugin.toml`).
        manifest: PathBuf,
        /// The artifact to write.
        out: PathBuf,
    },
    /// Verify an artifact against a public key exactly as bourse does before installing it.
    Verify {
        artifact: PathBuf,
        /// The public key (base64 or PEM).
        public_key: String,
    },
    /// Show an artifact's manifest, module hash, signer and whether its signature holds.
    Inspect { artifact: PathBuf },
    /// Put an artifact into the watched folder (atomically); a running bourse installs it.
    Install {
        artifact: PathBuf,
        /// The `dir` of the `wasm` instance.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// List every applied config: number, time, who, and the diff from the one before.
    History {
        /// The audit log file.
        #[arg(long)]
        audit_log: PathBuf,
    },
    /// Write config number SEQ back to the config file; a running bourse watching it applies
    /// it at once (or on SIGHUP), and the audit log records that as a new change.
    Rollback {
        /// The entry to restore (see `history`).
        seq: u64,
        /// The audit log file.
        #[arg(long)]
        audit_log: PathBuf,
        /// The config file the running bourse serves.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an admin user (or set a new password): reads the password from the first line of
    /// standard input and stores its Argon2id hash in the users file.
    CreateUser {
        /// Login name.
        name: String,
        /// The users file (`[plugins.admin] users_file`, relative to the config file).
        #[arg(long, default_value = "bourse-admin-users.json")]
        users_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Play a scenario's traffic and report offered vs achieved rate, corrected latency
    /// percentiles, errors, fill rate and net cleared. Without --target, bourse and the scenario's
    /// simulated partners run in this process.
    Run {
        /// The scenario file (see sim/scenarios/).
        scenario: PathBuf,
        /// The auction URL of a running bourse, e.g. http://127.0.0.1:8080/openrtb2/auction.
        #[arg(long)]
        target: Option<String>,
        /// Open-loop rate in requests per second, replacing the scenario's traffic mode.
        #[arg(long)]
        rate: Option<f64>,
        /// Duration in seconds, replacing the scenario's.
        #[arg(long)]
        duration: Option<f64>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also draw latency over time (p50, p99 per second) to this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print the JSON report instead of the text one.
        #[arg(long)]
        print_json: bool,
    },
    /// Run a scenario's simulated partners until Ctrl-C and print the bourse configuration
    /// that points at them.
    Bidders {
        /// The scenario file.
        scenario: PathBuf,
        /// Write the configuration to this file instead of printing it.
        #[arg(long)]
        write_config: Option<PathBuf>,
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
            let telemetry = bourse_kernel::init_logging(&loaded.log)?;
            let running = kernel.start(loaded).await.context("starting the server")?;
            let addr = running.local_addr();
            tracing::info!(%addr, "bourse is serving");
            println!("bourse is serving on http://{addr}");
            running.run_until_signal().await;
            telemetry.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim { command } => sim(command).await,
        Command::Plugin { command } => {
            let said = match command {
                PluginCommand::Keygen { key } => {
                    format!("public key: {}", bourse::plugin_cli::keygen(&key)?)
                }
                PluginCommand::Sign {
                    key,
                    module,
                    manifest,
                    out,
                } => bourse::plugin_cli::sign_artifact(&key, &module, &manifest, &out)?,
                PluginCommand::Verify {
                    artifact,
                    public_key,
                } => bourse::plugin_cli::verify_artifact(&artifact, &public_key)?,
                PluginCommand::Inspect { artifact } => {
                    bourse::plugin_cli::inspect_artifact(&artifact)?
                }
                PluginCommand::Install { artifact, dir } => format!(
                    "installed as {}; the running bourse picks it up",
                    bourse::plugin_cli::install(&artifact, &dir)?.display()
                ),
            };
            println!("{said}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::History { audit_log },
        } => {
            for entry in bourse_kernel::read_audit_file(&audit_log)? {
                println!(
                    "#{} at {} by {}\n{}",
                    entry.seq, entry.at, entry.who, entry.diff
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command:
                ConfigCommand::Rollback {
                    seq,
                    audit_log,
                    config,
                },
        } => {
            let entries = bourse_kernel::read_audit_file(&audit_log)?;
            let entry = entries
                .iter()
                .find(|e| e.seq == seq)
                .with_context(|| format!("{} has no entry #{seq}", audit_log.display()))?;
            // Check it still loads with this binary before touching the running config.
            kernel
                .load_config_str(&entry.text, &format!("audit entry #{seq}"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let temp = config.with_extension("rollback.tmp");
            std::fs::write(&temp, &entry.text)
                .with_context(|| format!("writing {}", temp.display()))?;
            std::fs::rename(&temp, &config)
                .with_context(|| format!("replacing {}", config.display()))?;
            println!("{} now holds config #{seq}", config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin {
            command: AdminCommand::CreateUser { name, users_file },
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            bourse_admin::Users::set_password(&users_file, &name, password)?;
            println!("admin user {name} saved in {}", users_file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { listen } => {
            let demo = bourse::demo::start_bidders(listen).await?;
            let loaded = kernel
                .load_config_str(&demo.config, "demo")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let telemetry = bourse_kernel::init_logging(&loaded.log)?;
            let running = kernel.start(loaded).await.context("starting the demo")?;
            let page = bourse::demo::serve_publisher_page(running.local_addr()).await?;
            println!(
                "{}",
                bourse::demo::instructions(running.local_addr(), page, &demo)
            );
            running.run_until_signal().await;
            telemetry.shutdown().await;
            drop(demo);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn sim(command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::Run {
            scenario,
            target,
            rate,
            duration,
            json,
            plot,
            print_json,
        } => {
            let options = bourse::sim::RunOptions {
                target,
                rate,
                duration_secs: duration,
                json,
                plot,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let report = bourse::sim::run(&scenario, &options).await?;
            if print_json {
                println!("{}", report.to_json());
            } else {
                println!("{}", report.to_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Bidders {
            scenario,
            write_config,
        } => {
            let scenario = bourse_sim::scenario::Scenario::load(&scenario)?;
            let bidders = scenario.start_bidders().await?;
            let config = bourse::sim::exchange_config(&scenario, &bidders)?;
            match write_config {
                Some(path) => std::fs::write(&path, config)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{config}"),
            }
            eprintln!(
                "{} simulated partners running; Ctrl-C stops them",
                bidders.len()
            );
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
