//! vigilctl as a library: the command interpreter ([`ctl::Ctl`]), the pure
//! rendering of supervisorctl's output ([`render`]), the `[supervisorctl]`
//! settings ([`settings`]) and the interactive shell ([`shell`]). The binary in
//! `main.rs` only parses flags and wires these together; tests drive [`ctl::Ctl`]
//! against a fake daemon.

pub mod ctl;
mod fg;
pub mod help;
pub mod render;
pub mod settings;
pub mod shell;
