//! Bidder adapters for bourse: the generic OpenRTB 2.6 adapter and partner-specific ones.
//!
//! Each adapter is one module with a `NAME`, a `build` factory that checks a partner's spec once,
//! and a small struct implementing [`Bidder`](bourse_engine::bidder::Bidder). [`ADAPTERS`] lists
//! them all; [`registry`] hands that list to the engine. Adapters never do I/O.

mod common;
pub mod openrtb;
pub mod openrtb25;
pub mod placement_json;

use bourse_engine::bidder::{AdapterFactory, AdapterRegistry};

/// Every adapter, by the name a bidder's `adapter` setting uses. Add new ones here.
pub const ADAPTERS: &[(&str, AdapterFactory)] = &[
    (openrtb::NAME, openrtb::build),
    (openrtb25::NAME, openrtb25::build),
    (placement_json::NAME, placement_json::build),
];

/// The registry of every adapter in [`ADAPTERS`].
pub fn registry() -> AdapterRegistry {
    ADAPTERS
        .iter()
        .fold(AdapterRegistry::default(), |registry, &(name, factory)| {
            registry.register(name, factory)
        })
}

#[cfg(test)]
mod tests;
