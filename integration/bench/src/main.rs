//! The `vigil-bench` binary.

fn main() {}
