//! libFuzzer target: see `vigil_fuzz::config_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::config_toml(data));
