//! vigild, the Vigil supervisor daemon, as a library so that its pieces can be
//! tested on their own and the binary stays a thin `main`.
//!
//! It owns the process-level concerns around the supervision tree: the command
//! line, daemonizing, the activity log, the control sockets, signals and the
//! startup/shutdown sequence. It does not supervise programs itself (that is
//! vigil-core), define the control protocol (that is vigil-rpc) or speak
//! HTTP (that is vigil-xmlrpc, which [`wiring`] hands the HTTP connections).
//!
//! [`app`] runs the startup sequence against the [`app::Backend`] trait, which
//! is everything vigild needs from the other crates (config loading, the tree,
//! the protocol servers). [`wiring`] is the production backend and [`server`]
//! the control service, the one translation point between vigil-rpc's wire
//! types and vigil-core. The end-to-end tests (`tests/daemon.rs`) run the real
//! daemon with a test backend.

#![warn(missing_docs)]

pub mod app;
pub mod carry;
pub mod config_source;
pub mod daemonize;
pub mod facts;
pub mod flags;
pub mod gap;
pub mod handover;
pub mod heap;
pub mod listen;
pub mod logging;
pub mod server;
pub mod signals;
pub mod survivors;
pub mod systemd;
pub mod teardown;
pub mod wiring;
