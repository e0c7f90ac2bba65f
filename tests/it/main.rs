//! End-to-end tests of the exchange over real sockets: bourse on loopback with partners that
//! answer as each test scripts them.

mod admin;
mod admin_browser;
mod admin_pages;
mod adtag;
mod adtag_browser;
mod auction;
mod bad_input;
mod browser;
mod cli;
mod cluster;
/// The commerce tests' helpers (stores per test, aiosmtpd, stripe-node), shared, not copied.
#[path = "../../commerce/tests/it/support.rs"]
#[allow(dead_code)]
mod commerce_support;
mod config_watch;
mod courses;
mod courses_browser;
mod demo;
#[cfg(feature = "etcd")]
mod etcd;
mod hardening;
mod lifecycle;
mod misbehaving;
mod native;
mod net_floors;
mod notices;
mod observability;
mod openrtb25;
mod otlp;
mod plugins;
mod prebid;
mod prebid_browser;
mod profiling;
mod support;
mod wasm_plugins;
mod wasm_support;
