//! The bourse simulator: simulated OpenRTB 2.6 demand partners for the demo, the tests and
//! load testing.

pub mod bidder;
pub mod demo;
pub mod population;
pub mod report;
pub mod scenario;
pub mod traffic;
