//! Wiring of the bourse binary: which plugins the kernel hosts, and the demo setup.

use std::sync::Arc;

use bourse_engine::{AuctionHooks, ExchangePlugin};
use bourse_kernel::Kernel;

pub mod alloc;
pub mod demo;
pub mod hooks;
pub mod plugin_cli;
pub mod sim;

/// The kernel with every compiled-in plugin registered; the exchange's auctions call the hooks
/// of the wasm plugins the `wasm` instance, if any, has installed.
pub fn kernel() -> Kernel {
    let slot = hooks::slot();
    kernel_with_hooks(Arc::new(hooks::WasmAuctionHooks::new(slot.clone())), slot)
}

/// [`kernel`] with the exchange calling `hooks` instead (for instance compiled-in rules, which
/// the benchmarks compare with the same rules as plugins); `slot` is the `wasm` kind's.
pub fn kernel_with_hooks(hooks: Arc<dyn AuctionHooks>, slot: bourse_wasm::HooksSlot) -> Kernel {
    build(
        ExchangePlugin::new(bourse_bidders::registry()).with_hooks(hooks),
        slot,
    )
}

/// [`kernel`] whose exchange has no hooks wired at all: the benchmarks' baseline for what the
/// wiring costs when no plugin is installed.
pub fn kernel_without_hooks() -> Kernel {
    build(
        ExchangePlugin::new(bourse_bidders::registry()),
        hooks::slot(),
    )
}

fn build(exchange: ExchangePlugin, slot: bourse_wasm::HooksSlot) -> Kernel {
    Kernel::builder()
        .plugin(exchange)
        .plugin(bourse_admin::AdminPlugin::default())
        .plugin(bourse_wasm::WasmPlugin::new(slot))
        .extension::<bourse_courses::Sites>()
        .plugin(bourse_courses::CoursesPlugin::default())
        .build()
}
