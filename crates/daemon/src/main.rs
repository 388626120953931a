//! vigild: the Vigil supervisor daemon. Everything lives in the library; see
//! `vigil_daemon::app::main`.

fn main() {}
