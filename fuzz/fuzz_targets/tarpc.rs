//! libFuzzer target: see `vigil_fuzz::tarpc`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::tarpc(data));
