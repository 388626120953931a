//! vigild: the Vigil supervisor daemon.
mod xmlrpc;

fn main() {}
