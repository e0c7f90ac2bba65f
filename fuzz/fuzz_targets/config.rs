//! Fuzz target `config`. A config file through the kernel's loader with every plugin kind.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bourse_fuzz::config(data));
