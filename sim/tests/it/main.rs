//! Integration tests of the simulator over real loopback sockets.

mod bidder;
mod traffic;
