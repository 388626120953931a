//! libFuzzer target: see `vigil_fuzz::environment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::environment(data));
