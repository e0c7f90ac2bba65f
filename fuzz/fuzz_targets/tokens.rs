//! Fuzz target `tokens`. Signed win and beacon tokens: forged or altered ones never open.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bourse_fuzz::tokens(data));
