//! [`Context`]: the daemon-wide inputs every process actor and its helper tasks
//! share, and [`FatalShutdown`], the escalation published through it: by the
//! root when a group's restart budget runs out, by a process actor when its
//! program gives up (`on_fatal = shutdown`) or, being `essential`, ends.
//!
//! The context is built once by the supervisor and handed down the tree by
//! `Arc`. It holds no actor: the spawner, the event bus, the registry, the
//! event listener hub and the fcgi sockets are each reached through it
//! directly.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use vigil_config::{OnFatal, ProcessConfig};

use crate::cgroup::Cgroups;
use crate::eventlistener::Hub;
use crate::events::Bus;
use crate::exit::ExitStatus;
use crate::fcgi::FcgiSockets;
use crate::registry::Registry;
use crate::spawner::Spawner;

/// Daemon-wide inputs every process actor needs.
pub(crate) struct Context {
    pub(crate) spawner: Arc<dyn Spawner>,
    pub(crate) bus: Bus,
    /// The daemon's own environment, the base of every child's.
    pub(crate) daemon_env: std::sync::Arc<crate::spawn::InheritedEnv>,
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
    /// Where processes' control groups go (`[supervisord] cgroup_root`).
    pub(crate) cgroups: Cgroups,
    /// Counts what watchers of the tree show: a process's state, pid, health or
    /// dependency wait changed, or a group came or went. A watch rather than the
    /// bus, so a watcher that looks away misses no change and a burst of them
    /// wakes it once; nobody is woken while nobody waits.
    pub(crate) changes: watch::Sender<u64>,
}

/// Why the tree is bringing the daemon down by itself: a FATAL group or
/// program under `on_fatal = shutdown`, or the end of an `essential` program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatalShutdown {
    /// The group concerned.
    pub group: String,
    /// What happened, as logged (names the program when one program ended).
    pub reason: String,
    /// The status vigild exits with: [`crate::FATAL_EXIT_CODE`], or an
    /// essential program's own (`128 + N` for a death by signal N).
    pub exit_code: i32,
}

impl Context {
    /// Records one change of what [`Context::changes`] counts.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Publishes `fatal` unless an earlier escalation already decided the
    /// daemon's end; true when this one was taken.
    pub(crate) fn escalate(&self, fatal: FatalShutdown) -> bool {
        self.fatal.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(fatal);
            true
        })
    }

    /// A program ended without being asked to ([`crate::lifecycle::Effect::Ended`]):
    /// shuts the daemon down when it is `essential`, or when it gave up and
    /// `on_fatal = shutdown`.
    pub(crate) fn process_ended(
        &self,
        config: &ProcessConfig,
        fatal: bool,
        status: Option<ExitStatus>,
    ) {
        let namespec = config.namespec();
        let what = match (fatal, status) {
            (true, Some(status)) => {
                format!("'{namespec}' is FATAL (last exit: {})", status.describe())
            }
            (true, None) => format!("'{namespec}' is FATAL"),
            (false, Some(status)) => format!("'{namespec}' exited ({})", status.describe()),
            (false, None) => format!("'{namespec}' exited"),
        };
        let exit_code = if config.essential {
            essential_exit_code(fatal, status)
        } else if fatal && self.on_fatal == OnFatal::Shutdown {
            crate::FATAL_EXIT_CODE
        } else {
            return;
        };
        let why = if config.essential { "it is essential" } else { "on_fatal=shutdown" };
        tracing::error!("{what}; {why}: shutting down with exit status {exit_code}");
        self.escalate(FatalShutdown { group: config.group.clone(), reason: what, exit_code });
    }
}

/// vigild's exit status after an essential program ended: the program's own
/// (a shell's `128 + N` for a death by signal N). A program that went FATAL
/// never stays a success: its last exit status if that was a failure, else
/// [`crate::FATAL_EXIT_CODE`].
pub(crate) fn essential_exit_code(fatal: bool, status: Option<ExitStatus>) -> i32 {
    let code = match status {
        Some(ExitStatus::Code(code)) => code,
        Some(ExitStatus::Signal(sig) | ExitStatus::Dumped(sig)) => 128 + sig,
        None => crate::FATAL_EXIT_CODE,
    };
    if fatal && code == 0 { crate::FATAL_EXIT_CODE } else { code }
}
