//! The bourse plugin SDK: implement a plain trait, call one macro, build for `wasm32-wasip2`.
//!
//! A plugin is either exchange hooks ([`hooks::ExchangeHooks`], exported with
//! [`export_hooks!`]) or a small HTTP site ([`site::Site`], exported with [`export_site!`]). The
//! host services it may call are in [`host`]; each must be named in the plugin's manifest under
//! `host-services`, and only what the plugin calls ends up among its imports.

// The generated bindings name this crate by its path, also from inside it.
extern crate self as bourse_plugin_sdk;

pub mod hooks;
pub mod site;

pub mod host;

/// Used by the export macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}
