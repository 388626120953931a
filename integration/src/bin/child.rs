//! The helper child program the integration tests supervise.
fn main() {}
