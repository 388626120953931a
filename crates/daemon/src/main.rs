//! vigild: the Vigil supervisor daemon.
fn main() {}
