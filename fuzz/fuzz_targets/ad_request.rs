//! Fuzz target `ad_request`. A page's `POST /ad` body through the exchange's real handler: never
//! a 5xx.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bourse_fuzz::ad_request(data));
