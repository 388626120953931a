//! vigilctl: control a running vigild.
fn main() {}
