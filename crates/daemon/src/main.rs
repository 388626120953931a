//! vigild: the Vigil supervisor daemon. The startup sequence lives in
//! `vigil_daemon::app`; this binary only picks the production backend.

fn main() {
    let code = vigil_daemon::app::run(vigil_daemon::wiring::Wired, std::env::args_os());
    std::process::exit(code);
}
