//! libFuzzer target: see `vigil_fuzz::http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::http(data));
