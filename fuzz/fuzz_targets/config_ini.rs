//! libFuzzer target: see `vigil_fuzz::config_ini`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::config_ini(data));
