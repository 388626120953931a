//! [`Context`]: the daemon-wide inputs every process actor and its helper tasks
//! share, and [`FatalShutdown`], the escalation the root publishes through it.
//!
//! The context is built once by the supervisor and handed down the tree by
//! `Arc`. It holds no actor: the spawner, the event bus, the registry, the
//! event listener hub and the fcgi sockets are each reached through it
//! directly.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use vigil_config::OnFatal;

use crate::eventlistener::Hub;
use crate::events::Bus;
use crate::fcgi::FcgiSockets;
use crate::registry::Registry;
use crate::spawner::Spawner;

/// Daemon-wide inputs every process actor needs.
pub(crate) struct Context {
    pub(crate) spawner: Arc<dyn Spawner>,
    pub(crate) bus: Bus,
    /// The daemon's own environment, the base of every child's.
    pub(crate) daemon_env: Vec<(String, String)>,
    /// `[supervisord] environment`.
    /// `update` replaces it when the file's changes; children get it from their
    /// next start on.
    pub(crate) global_env: RwLock<BTreeMap<String, String>>,
    /// `SUPERVISOR_SERVER_URL` unless the program sets `serverurl`.
    pub(crate) server_url: Option<String>,
    /// Every group, for dependencies across groups.
    pub(crate) registry: Arc<Registry>,
    /// Where `ready_notify` sockets are created.
    pub(crate) notify_dir: std::path::PathBuf,
    /// `[supervisord] on_fatal`.
    pub(crate) on_fatal: OnFatal,
    /// Set by the root when a FATAL group brings the daemon down.
    pub(crate) fatal: watch::Sender<Option<FatalShutdown>>,
    /// Event listener pools and output filters (`eventlistener.rs`, `output.rs`).
    pub(crate) events: Arc<Hub>,
    /// `[fcgi-program:x]` sockets, one per group, each handed to its children as
    /// fd 0.
    pub(crate) fcgi: FcgiSockets,
}

/// Why a FATAL group brought the daemon down (`on_fatal = shutdown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalShutdown {
    /// The group whose restart budget ran out.
    pub group: String,
    /// Why its budget ran out, as logged.
    pub reason: String,
}
