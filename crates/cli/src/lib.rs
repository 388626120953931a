//! vigilctl as a library: the command line ([`commands`], whose
//! [`commands::command`] is the `clap::Command` that man pages and shell
//! completions are generated from), the command interpreter ([`ctl::Ctl`]),
//! the pure rendering of supervisorctl's output ([`render`]), the
//! `[supervisorctl]` settings ([`settings`]), the interactive shell
//! ([`shell`]) and the live terminal view ([`top`]). The binary in `main.rs` only wires these together; tests drive
//! [`ctl::Ctl`] against a fake daemon.

#![warn(missing_docs)]

pub mod commands;
pub mod ctl;
mod fg;
pub mod limits;
pub mod render;
pub mod settings;
pub mod shell;
pub mod top;

pub use commands::command;
