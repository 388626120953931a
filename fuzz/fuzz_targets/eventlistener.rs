//! libFuzzer target: see `vigil_fuzz::eventlistener`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::eventlistener(data));
