//! vigil-config reads supervisord's INI dialect and Vigil's native TOML into one
//! validated [`Config`] model, and diffs two models for `update`.
//!
//! It is pure: no tokio, no spawning, and the environment is passed in by the
//! caller rather than read here.

pub mod model;

pub use model::*;

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(sig) => f.write_str(sig.as_str().trim_start_matches("SIG")),
            Err(_) => write!(f, "{}", self.0),
        }
    }
}
