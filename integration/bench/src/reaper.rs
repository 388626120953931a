//! The harness's only waiter on child processes.
//!
//! The harness is a child subreaper, so anything that escapes a daemon (a
//! program orphaned when its daemon died) is re-parented to it rather than to
//! init. Collecting those needs `waitpid(-1)`, which would steal the status of
//! any child someone else waits for; so, as vigil-core does, exactly one
//! reaper waits. It drains `waitpid(-1, WNOHANG)` on every SIGCHLD and hands
//! each status to whoever registered the pid. Spawning happens inside a
//! gate (a read/write lock) that draining takes exclusively, so a child that
//! exits at once is registered before its status is collected, std's internal
//! wait for a failed exec is never stolen, and spawns from several threads
//! still run in parallel (the two-spawner reference needs that).

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

#[derive(Default)]
struct Table {
    /// Spawned children not yet reaped, with the channel for their status.
    waiting: HashMap<i32, oneshot::Sender<Exit>>,
    /// Every spawned child not yet reaped (waiters may have been dropped).
    live: HashSet<i32>,
    /// Re-parented descendants collected, for the report.
    orphans_reaped: u64,
}

/// Handle to the reaper; cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
    /// Shared by spawns, exclusive while draining.
    gate: Arc<std::sync::RwLock<()>>,
}

/// A spawned child whose exit the reaper will deliver.
pub struct Spawned {
    pub child: Child,
    pub pid: i32,
    pub exit: oneshot::Receiver<Exit>,
}

impl Reaper {
    /// Makes this process a child subreaper and starts the reaper task. Must
    /// be called inside a tokio runtime, before anything is spawned, and
    /// only once per process: two reapers would steal each other's statuses.
    pub fn install() -> std::io::Result<Reaper> {
        nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let reaper = Reaper { table: Arc::default(), gate: Arc::default() };
        let task = reaper.clone();
        tokio::spawn(async move {
            loop {
                task.drain();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and registers it, inside the reaper's gate.
    pub fn spawn(&self, command: &mut Command) -> std::io::Result<Spawned> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let child = command.spawn()?;
        let pid = i32::try_from(child.id()).expect("pids fit in i32");
        let (tx, exit) = oneshot::channel();
        let mut table = self.lock();
        table.waiting.insert(pid, tx);
        table.live.insert(pid);
        Ok(Spawned { child, pid, exit })
    }

    /// True while `pid` is a spawned child that has not been reaped, so it is
    /// safe to signal: its pid cannot have been reused.
    pub fn is_live(&self, pid: i32) -> bool {
        self.lock().live.contains(&pid)
    }

    /// Sends `signal` to a spawned child, only if it has not been reaped yet.
    pub fn signal_live(&self, pid: i32, signal: nix::sys::signal::Signal) -> bool {
        let table = self.lock();
        table.live.contains(&pid)
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
    }

    /// The pids the harness spawned and has not reaped.
    pub fn live_pids(&self) -> HashSet<i32> {
        self.lock().live.clone()
    }

    /// SIGKILLs every live child of the harness that it did not spawn: as a
    /// subreaper, those can only be descendants of a daemon it launched that
    /// outlived their parent. Holding the lock keeps them from being reaped
    /// (and their pids reused) meanwhile. Pids in `already` were killed by
    /// the caller and are not counted again. Returns how many were killed.
    pub fn kill_adopted(&self, already: &HashSet<i32>) -> usize {
        let table = self.lock();
        let me = i32::try_from(std::process::id()).expect("pids fit in i32");
        crate::procfs::children(me)
            .into_iter()
            .filter(|pid| !table.live.contains(pid) && !already.contains(pid))
            .filter(|pid| crate::procfs::stat(*pid).is_some_and(|s| s.state != 'Z'))
            .filter(|pid| {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
            })
            .count()
    }

    /// How many re-parented descendants were collected so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.lock().orphans_reaped
    }

    /// Collects every exited child now (also called by the SIGCHLD task).
    pub fn drain(&self) {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut table = self.lock();
        loop {
            let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    (pid.as_raw(), Exit::Signal(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                // Stops and continues are not exits; keep draining.
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if table.live.remove(&pid) {
                if let Some(tx) = table.waiting.remove(&pid) {
                    // The waiter may have given up (timeout); the status is
                    // then of no use to anyone.
                    let _ = tx.send(exit);
                }
            } else {
                table.orphans_reaped += 1;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock leaves the table consistent (every
        // operation is a single insert or remove), so poisoning is ignored.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}
