//! Wiring of the bourse binary: which plugins the kernel hosts, and the demo setup.

use bourse_engine::ExchangePlugin;
use bourse_kernel::Kernel;

pub mod demo;
pub mod sim;

/// The kernel with every compiled-in plugin registered.
pub fn kernel() -> Kernel {
    Kernel::builder()
        .plugin(ExchangePlugin::new(bourse_bidders::registry()))
        .plugin(bourse_admin::AdminPlugin::default())
        .extension::<bourse_courses::Sites>()
        .plugin(bourse_courses::CoursesPlugin::default())
        .build()
}
