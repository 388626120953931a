//! libFuzzer target: see `vigil_fuzz::xmlrpc_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil_fuzz::xmlrpc_decode(data));
