//! `bourse serve` with the floor-rule example compiled in as the exchange's hook, for the A/B/A
//! of `benches/aba/variants.py` against the same rule as a signed wasm plugin. With
//! `BOURSE_BENCH_HOOKS=none` the exchange has no hooks wired at all, as before they existed:
//! the baseline that shows what the wiring alone costs an exchange with no plugin installed.
//!
//! ```text
//! bourse-native-floor serve --config bourse.toml
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: bourse::alloc::Mimalloc = bourse::alloc::Mimalloc;

/// The command line of `bourse serve`, which the benchmark harness starts this as.
#[derive(Parser)]
enum Args {
    /// Run the exchange from a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args::Serve { config } = Args::parse();
    let kernel = match std::env::var("BOURSE_BENCH_HOOKS").as_deref() {
        Ok("none") => bourse::kernel_without_hooks(),
        _ => bourse::kernel_with_hooks(
            Arc::new(bourse_benches::native_floor::NativeFloorRule),
            bourse::hooks::slot(),
        ),
    };
    let loaded = kernel
        .load_config_file(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let telemetry = bourse_kernel::init_logging(&loaded.log)?;
    let running = kernel.start(loaded).await.context("starting the server")?;
    println!("bourse is serving on http://{}", running.local_addr());
    running.run_until_signal().await;
    telemetry.shutdown().await;
    Ok(())
}
