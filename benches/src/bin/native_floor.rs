//! `bourse serve` with the floor-rule example compiled in as the exchange's hook, for the A/B/A
//! of `benches/aba/hooks.py` against the same rule as a signed wasm plugin.
//!
//! ```text
//! bourse-native-floor --config bourse.toml
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kernel = bourse::kernel_with_hooks(
        Arc::new(bourse_benches::native_floor::NativeFloorRule),
        bourse::hooks::slot(),
    );
    let loaded = kernel
        .load_config_file(&args.config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let telemetry = bourse_kernel::init_logging(&loaded.log)?;
    let running = kernel.start(loaded).await.context("starting the server")?;
    println!("bourse is serving on http://{}", running.local_addr());
    running.run_until_signal().await;
    telemetry.shutdown().await;
    Ok(())
}
