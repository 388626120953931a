//! The reaper: the only code in Vigil that calls `waitpid`.
//!
//! # Theory of operation
//!
//! A process-wide reaper thread owns a small current-thread tokio runtime that listens
//! for SIGCHLD. SIGCHLD coalesces (many exits can raise one signal), so every wake-up
//! loops `waitpid(-1, WNOHANG)` until it reports "still alive" or `ECHILD`, and each
//! exit is dispatched by pid to the oneshot sender registered at spawn.
//!
//! Three races are closed by one mutex:
//! - A child whose setup or `exec` failed has exited by the time the spawn returns
//!   (see [`crate::spawn`]); [`Reaper::spawn`] collects it with `waitpid(pid)`
//!   itself, so its 127 never reaches anyone as a program's exit. It creates the
//!   child under the mutex and the reaper takes it for each `waitpid` call, so the
//!   reaper's `waitpid(-1)` cannot take that status first.
//! - A child can exit before its pid is registered. Because registration happens in
//!   the same critical section as the spawn, the reaper cannot see that exit before the
//!   pid is known. Hence no "pending exits" map: an unknown pid is, by construction,
//!   an adopted orphan. (Such a map keyed by pid would also be wrong after pid reuse:
//!   a parked orphan exit would be handed to a new child that got the same pid.)
//! - Signalling a pid that was already reaped could hit an unrelated process that
//!   reused it. [`Reaper::signal`] checks, under the mutex, that the pid is still
//!   registered (and therefore not reaped).
//!
//! The reaper is a singleton because `waitpid(-1)` is process-wide: two reapers would
//! steal each other's children. It runs on its own thread (not on the caller's
//! runtime) so it outlives any one runtime (tests create many) and so that waiting for
//! the mutex during a spawn never blocks a worker thread of the application.
//!
//! The registered children are also what vigild records for the next vigild to
//! find after a crash: [`Reaper::children`] lists them with a spawn serial (so
//! a reader can cache what it learnt about a pid and notice when the pid now
//! names another child), and [`Reaper::watch_children`] says when the set
//! changed. Spawning and reaping only touch the in-memory map and bump a
//! counter; whoever records them does the file work, batched, elsewhere.
//!
//! With `subreaper`, the process also sets `PR_SET_CHILD_SUBREAPER`, so orphaned
//! grandchildren (daemons that double-fork) are re-parented to Vigil and reaped here
//! instead of lingering as zombies of init.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::{oneshot, watch};

use crate::exit::ExitStatus;
use crate::launch::{FdTable, Launch, Prepared};
use crate::spawn::{SpawnError, SpawnSpec};

/// Handle to the process-wide reaper. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reaper {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Registered, not yet reaped children. Held while spawning and around each
    /// `waitpid`, see the module docs.
    state: Mutex<State>,
    orphans: AtomicU64,
    reaped: AtomicU64,
    /// Bumped whenever a child is registered or reaped.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// pid -> where its exit status goes.
    waiting: HashMap<u32, Waiter>,
    /// The serial the next spawn gets.
    next_serial: u64,
}

#[derive(Debug)]
struct Waiter {
    exit: oneshot::Sender<ExitStatus>,
    /// Tells this child apart from a later one that reuses its pid.
    serial: u64,
}

/// A started child: its pid, the parent ends of its pipes and its exit status.
#[derive(Debug)]
pub struct Spawned {
    /// The child's pid, registered with the reaper.
    pub pid: u32,
    /// The child's stdin, when [`SpawnSpec::pipe_stdin`] was set.
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    /// The child's stdout (always piped; also carries stderr when redirected).
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    /// The child's stderr; `None` when [`SpawnSpec::redirect_stderr`] was set.
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
    /// Resolves exactly once, when the reaper collects the child.
    pub exit: oneshot::Receiver<ExitStatus>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();
/// See [`Reaper::pause_reaping`].
static REAPING_PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Reaper {
    /// Starts the process-wide reaper (or returns the running one).
    ///
    /// The SIGCHLD listener is installed before this returns, so no exit of a child
    /// spawned afterwards can be missed. `subreaper` additionally marks this process
    /// `PR_SET_CHILD_SUBREAPER` (process-wide, and it stays set).
    pub fn start(subreaper: bool) -> std::io::Result<Reaper> {
        if subreaper {
            nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
        }
        // Before the daemon opens its programs' pipes and logs, so the slots are
        // among its lowest descriptors (see `launch.rs`, "Descriptors").
        crate::launch::reserve_slots();
        if let Some(reaper) = REAPER.get() {
            return Ok(reaper.clone());
        }
        // Two racing first calls may both build a thread; only the winner's handle is
        // stored, and the loser's thread is told to exit before it reaps anything.
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            orphans: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            changes: watch::Sender::new(0),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
        let thread_inner = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("vigil-reaper".to_owned())
            .spawn(move || reaper_thread(thread_inner, ready_tx, go_rx))?;
        ready_rx.recv().map_err(|_| std::io::Error::other("reaper thread died during start"))??;
        let candidate = Reaper { inner };
        let winner = REAPER.get_or_init(|| candidate.clone());
        let we_won = Arc::ptr_eq(&winner.inner, &candidate.inner);
        // The thread only begins reaping once told it is the one; a send error means
        // it is already gone, which the ready handshake above rules out.
        let _ = go_tx.send(we_won);
        Ok(winner.clone())
    }

    /// Spawns `spec` under the reaper's lock and registers its pid.
    ///
    /// Must be called inside a tokio runtime (the pipes are registered with it). It
    /// blocks until the child has exec'd (well under a millisecond, independent of
    /// the daemon's size); call it from `spawn_blocking` if that matters to the caller.
    pub fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let (spawned, table) = self.spawn_prepared(Prepared::new(spec)?)?;
        tracing::debug!(pid = spawned.pid, argv = ?spec.argv, ?table, "spawned child");
        Ok(spawned)
    }

    /// [`Reaper::spawn`] of a prepared spawn, also saying how the child got its
    /// descriptor table (tests check which path ran).
    pub(crate) fn spawn_prepared(
        &self,
        prepared: Prepared,
    ) -> Result<(Spawned, FdTable), SpawnError> {
        let (exit_tx, exit_rx) = oneshot::channel();
        let mut state = self.inner.lock();
        let (pid, pipes, table) = match prepared.launch(reap_failed_child) {
            Launch::Running { pid, pipes, table } => (pid, pipes, table),
            Launch::Failed { child, error } => {
                if let Some(pid) = child {
                    reap_failed_child(pid);
                }
                drop(state);
                return Err(error);
            }
        };
        let serial = state.next_serial;
        state.next_serial += 1;
        state.waiting.insert(pid, Waiter { exit: exit_tx, serial });
        drop(state);
        self.inner.changed();
        let spawned = Spawned {
            pid,
            stdin: pipes.stdin,
            stdout: pipes.stdout,
            stderr: pipes.stderr,
            exit: exit_rx,
        };
        Ok((spawned, table))
    }

    /// Sends `sig` to `pid` (or to its process group when `group`), only while that pid
    /// is registered and not yet reaped, so a reused pid is never signalled.
    /// Returns `Ok(false)` if the pid is not ours (any more) or is already gone.
    pub fn signal(&self, pid: u32, sig: i32, group: bool) -> Result<bool, nix::Error> {
        let signal = Signal::try_from(sig)?;
        let target = Pid::from_raw(i32::try_from(pid).map_err(|_| Errno::EINVAL)?);
        let state = self.inner.lock();
        if !state.waiting.contains_key(&pid) {
            return Ok(false);
        }
        let result = if group { killpg(target, signal) } else { kill(target, signal) };
        drop(state);
        match result {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(errno) => Err(errno),
        }
    }

    /// True while `pid` was spawned by this reaper and has not been reaped.
    pub fn is_running(&self, pid: u32) -> bool {
        self.inner.lock().waiting.contains_key(&pid)
    }

    /// The process-wide reaper, if one was started.
    pub fn running() -> Option<Reaper> {
        REAPER.get().cloned()
    }

    /// Every child spawned and not yet reaped, as `(pid, serial)`: a pid's
    /// serial changes when a new child reuses it.
    pub fn children(&self) -> Vec<(u32, u64)> {
        self.inner.lock().waiting.iter().map(|(pid, waiter)| (*pid, waiter.serial)).collect()
    }

    /// Changes whenever [`Reaper::children`] may have changed.
    pub fn watch_children(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Orphans (pids not spawned through this reaper) reaped so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.inner.orphans.load(Ordering::Relaxed)
    }

    /// Registers `pid`, a child of this process that no spawn of this image
    /// registered (a child the previous image of a live upgrade handed over),
    /// so its exit is delivered like a spawned child's. Fails with `ECHILD`
    /// when `pid` is not a child of this process, `EEXIST` when it is
    /// registered already.
    pub fn adopt(&self, pid: u32) -> std::io::Result<oneshot::Receiver<ExitStatus>> {
        let raw = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from(Errno::EINVAL))?;
        let mut state = self.inner.lock();
        if state.waiting.contains_key(&pid) {
            return Err(Errno::EEXIST.into());
        }
        // Asks without collecting: ECHILD unless it is our child (alive or a
        // zombie waiting for us).
        // SAFETY: waitid writes into `info` only.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let got = unsafe {
            libc::waitid(
                libc::P_PID,
                raw as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if got < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (exit, receiver) = oneshot::channel();
        let serial = state.next_serial;
        state.next_serial += 1;
        state.waiting.insert(pid, Waiter { exit, serial });
        drop(state);
        self.inner.changed();
        Ok(receiver)
    }

    /// Stops collecting exits (process-wide, before or after [`Reaper::start`])
    /// until [`Reaper::resume_reaping`]: a child that exits meanwhile stays a
    /// zombie. A live upgrade pauses before it hands its children over, so no
    /// exit is collected by an image that will not report it, and the next
    /// image starts paused until it has adopted them.
    pub fn pause_reaping() {
        REAPING_PAUSED.store(true, Ordering::SeqCst);
    }

    /// Collects again, at once, whatever exited while paused.
    pub fn resume_reaping() {
        REAPING_PAUSED.store(false, Ordering::SeqCst);
        // Wakes the reaper thread as an exit would.
        let _ = nix::sys::signal::raise(Signal::SIGCHLD);
    }

    /// Children of ours reaped so far (for tests and status).
    pub fn children_reaped(&self) -> u64 {
        self.inner.reaped.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn changed(&self) {
        self.changes.send_modify(|count| *count = count.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every critical section
        // is a single map operation plus a syscall.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Collects every waitable child. Takes the lock for each `waitpid` only, so a
    /// spawn never waits behind a long reaping burst (and vice versa).
    fn reap_all(&self) {
        loop {
            let mut state = self.lock();
            if REAPING_PAUSED.load(Ordering::SeqCst) {
                return;
            }
            let mut raw: libc::c_int = 0;
            // SAFETY: waitpid writes the status into `raw`. libc is used directly
            // because nix fails to decode real-time signal deaths after reaping them.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    Errno::ECHILD => return,
                    errno => {
                        tracing::error!(%errno, "waitpid failed");
                        return;
                    }
                }
            }
            let Some(status) = ExitStatus::from_raw(raw) else { continue };
            let pid = pid as u32;
            match state.waiting.remove(&pid) {
                Some(waiter) => {
                    drop(state);
                    self.reaped.fetch_add(1, Ordering::Relaxed);
                    self.changed();
                    // The receiver may be gone (actor stopped); the exit is still reaped.
                    let _ = waiter.exit.send(status);
                }
                None => {
                    drop(state);
                    self.orphans.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("reaped unknown pid {pid} ({})", status.describe());
                }
            }
        }
    }
}

/// Collects a child that exited during its setup or exec (or at once, refused a
/// private descriptor table). Called under the lock, so the reaper cannot have
/// taken it; the child has already called `_exit` (the spawn
/// returned), so this waits only for the kernel to finish its exit.
fn reap_failed_child(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    loop {
        let mut raw: libc::c_int = 0;
        // SAFETY: waitpid writes the status into `raw`.
        let got = unsafe { libc::waitpid(pid, &mut raw, 0) };
        if got >= 0 || Errno::last() != Errno::EINTR {
            return;
        }
    }
}

fn reaper_thread(
    inner: Arc<Inner>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
    go: std::sync::mpsc::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(stream) => stream,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        if !go.recv().unwrap_or(false) {
            return;
        }
        // Children that exited before the listener existed raised no signal we saw.
        inner.reap_all();
        while sigchld.recv().await.is_some() {
            inner.reap_all();
        }
        tracing::error!("SIGCHLD stream ended; children will no longer be reaped");
    });
}
