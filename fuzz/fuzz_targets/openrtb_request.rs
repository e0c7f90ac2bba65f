//! Fuzz target `openrtb_request`. A bid request body: parse and validate, or explain the
//! parse error; what parses survives a round trip.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bourse_fuzz::openrtb_request(data));
