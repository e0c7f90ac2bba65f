//! Commerce services shared by bourse's paying sites (courses, shop, api, saas): a SQL store with
//! per-module migrations, accounts and JWT sessions, Stripe payments with verified webhooks and an
//! exactly-once inbox, a mail outbox, orders, stock that is never oversold, and their metrics.
//!
//! The crate is a plain library: it knows nothing of the kernel's plugin API, so a site plugin
//! wires these services into its own handlers. Every write that must happen exactly once takes a
//! connection inside the caller's transaction, so a site's effect, the inbox record and the
//! outbox mail commit or roll back together.

pub mod accounts;
pub mod apikeys;
pub mod clock;
pub mod inbox;
pub mod mail;
pub mod metrics;
pub mod migrate;
pub mod orders;
pub mod payments;
pub mod schema;
pub mod secret;
pub mod session;
pub mod stock;
pub mod store;
pub mod stripe;
pub mod tenants;
pub mod web;

pub use store::{Backend, Store, StoreConfig, StoreError};
