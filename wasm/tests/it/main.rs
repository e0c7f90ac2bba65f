//! Integration tests of bourse-wasm against the real plugin modules built from `plugins/`.

mod hooks;
mod lifecycle;
mod limits;
mod signing;
mod site;
mod support;
mod watch;
