//! Integration tests of the kernel over real sockets, with a small test plugin.

mod body;
mod config;
mod hygiene;
mod instances;
mod lifecycle;
mod routing;
mod support;
