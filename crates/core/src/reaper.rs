//! The reaper: the only code in Vigil that waits for children.
//!
//! # Theory of operation
//!
//! Every child is watched through a pidfd (`pidfd_open` right after the clone),
//! added to an epoll instance of the reaper's own, with the child's pid as its
//! data. A pidfd turns readable when its process exits; the reaper thread's
//! small current-thread tokio runtime watches that epoll instance as a single
//! descriptor, and each wake-up collects every child whose pidfd fired with
//! `waitid(P_PIDFD)`: the kernel finds a given child without scanning the
//! others, so reaping 5,000 children costs 5,000 small steps instead of 5,000
//! scans of a 5,000-long list. A watched child costs its pidfd and the
//! kernel's epoll entry: no task and no reactor registration each. The status
//! goes where the spawn said: to a oneshot channel, or straight to a call
//! made on the reaper's thread ([`ExitCall`]; a process actor's is a send to
//! its mailbox, so no task of its own waits for each child). vigild also
//! watches the same epoll instance from its own runtime
//! ([`Reaper::watch_from_current_runtime`]): an exit then wakes a worker that
//! reaps the child, makes the call and runs the actor, one thread woken
//! instead of two; both watchers reap under the map's lock, so a child is
//! delivered once, by whichever looks first.
//!
//! Orphans (grandchildren re-parented to us with `subreaper`, or any child not
//! spawned here) raise no pidfd event, only SIGCHLD. On SIGCHLD the thread peeks
//! at the first waitable child with `waitid(P_ALL, WNOWAIT)`: an unknown pid is
//! reaped as an orphan, a registered one for its waiter (its pidfd, if it has
//! one, leaves the watches with it; a peek that stopped at it would leave the
//! zombies behind it for another peek, which made a mass exit quadratic).
//! SIGCHLD coalesces, so the peek loops until nothing is waitable. A child gets no pidfd
//! once the daemon uses half of its descriptor limit (the rest is kept for
//! pipes, logs and clients; with 20,000 descriptors and 5,000 programs it would
//! not fit otherwise): the peek reaps such a child itself.
//!
//! Three races are closed by the *spawn gate*, a read/write lock, and the map's
//! mutex:
//! - A child whose setup or `exec` failed has exited by the time the spawn returns
//!   (see [`crate::spawn`]); [`Reaper::spawn`] collects it with `waitpid(pid)`
//!   itself, so its 127 never reaches anyone as a program's exit. Spawns hold the
//!   gate shared (so they run in parallel, one per launcher, see
//!   `launch.rs`); reaping a pid that is not registered takes it exclusively
//!   and checks the map again, so an orphan peek cannot take a child mid-spawn.
//! - A child can exit before its pid is registered. Registration happens inside
//!   the same gate as the spawn, so nobody reaps that exit before the pid is
//!   known. Hence no "pending exits" map: an unknown pid is, by construction, an
//!   adopted orphan. (Such a map keyed by pid would also be wrong after pid reuse:
//!   a parked orphan exit would be handed to a new child that got the same pid.)
//! - Signalling a pid that was already reaped could hit an unrelated process that
//!   reused it. A child is reaped and removed from the map under the map's mutex,
//!   and [`Reaper::signal`] checks under it that the pid is still registered.
//!
//! Without pidfds (Linux before 5.3, or a seccomp filter refusing them) the
//! thread falls back to one `waitpid(-1)` loop on SIGCHLD, dispatching by pid,
//! each call inside the gate held exclusively.
//!
//! The reaper is a singleton because `waitpid(-1)` and the orphan peek are
//! process-wide: two reapers would steal each other's children. It runs on its
//! own thread (not on the caller's runtime) so it outlives any one runtime (tests
//! create many) and so that waiting for the gate never blocks a worker thread of
//! the application.
//!
//! The registered children are also what vigild records for the next vigild to
//! find after a crash: [`Reaper::children`] lists them with a spawn serial (so
//! a reader can cache what it learnt about a pid and notice when the pid now
//! names another child), and [`Reaper::watch_children`] says when the set
//! changed. Spawning and reaping only touch the in-memory map and bump a
//! counter; whoever records them does the file work, batched, elsewhere.
//! Children inherited across an `execve` of the daemon are registered again with
//! [`Reaper::start_adopting`] or [`Reaper::adopt`]; the image that executes the
//! next one first stops collecting ([`Reaper::pause_reaping`]), and can give
//! it the pidfds it watches ([`Reaper::pidfds`]) so that they need not be
//! opened again.
//!
//! With `subreaper`, the process also sets `PR_SET_CHILD_SUBREAPER`, so orphaned
//! grandchildren (daemons that double-fork) are re-parented to Vigil and reaped here
//! instead of lingering as zombies of init.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, oneshot, watch};

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
    /// Held shared by every spawn and adoption until its pid is registered, and
    /// exclusively to reap a pid that is not registered (see the module docs).
    gate: RwLock<()>,
    /// Registered, not yet reaped children. A child is reaped and removed under it.
    state: Mutex<State>,
    /// Children are watched through pidfds; otherwise one `waitpid(-1)` loop.
    pidfds: bool,
    /// The epoll instance the children's pidfds are added to (with pidfds).
    watches: Option<Epoll>,
    /// Asks for another peek (a child without a pidfd was registered, or
    /// reaping resumed).
    peek_again: Notify,
    /// Told when reaping resumes after a pause (see [`Reaper::pause_reaping`]).
    resumed: Notify,
    orphans: AtomicU64,
    reaped: AtomicU64,
    /// Children registered without a pidfd (see `pidfd_for`).
    unwatched: AtomicU64,
    /// Bumped whenever a child is registered or reaped.
    changes: watch::Sender<u64>,
    /// Set by the first [`Reaper::watch_from_current_runtime`].
    runtime_watch: AtomicBool,
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
    exit: ExitTo,
    /// Tells this child apart from a later one that reuses its pid.
    serial: u64,
    /// Its pidfd, in `watches` and open while the child is registered: what
    /// a live upgrade carries.
    pidfd: Option<OwnedFd>,
}

/// Where a registered child's exit status goes once it is reaped.
enum ExitTo {
    /// A channel whose receiver the spawner awaits.
    Channel(oneshot::Sender<ExitStatus>),
    /// A call with the child's pid and status, made where the child was
    /// reaped: it must be quick and must not block (it holds up every other
    /// exit).
    Call(ExitCall),
}

/// What [`Reaper::spawn_calling`] hands a child's exit to: called with the
/// child's pid and status on the reaper's thread (or on a worker of the
/// runtime given [`Reaper::watch_from_current_runtime`]), it must be quick and
/// must not block (it holds up every other exit).
pub type ExitCall = Box<dyn FnOnce(u32, ExitStatus) + Send>;

impl ExitTo {
    fn deliver(self, pid: u32, status: ExitStatus) {
        match self {
            // The receiver may be gone (actor stopped); the exit is still reaped.
            ExitTo::Channel(sender) => {
                let _ = sender.send(status);
            }
            ExitTo::Call(call) => call(pid, status),
        }
    }
}

impl std::fmt::Debug for ExitTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExitTo::Channel(_) => "ExitTo::Channel",
            ExitTo::Call(_) => "ExitTo::Call",
        })
    }
}

/// A started child: its pid, the parent ends of its pipes and its exit status
/// (`exit`: a receiver, or nothing when [`Reaper::spawn_calling`] hands the
/// status to a call).
#[derive(Debug)]
pub struct Spawned<Exit = oneshot::Receiver<ExitStatus>> {
    /// The child's pid, registered with the reaper.
    pub pid: u32,
    /// The child's stdin, when [`SpawnSpec::pipe_stdin`] was set: the pipe's
    /// write end, non-blocking, registered with no reactor (most children are
    /// never written to; `pipe::Sender::from_owned_fd` makes it a writer).
    pub stdin: Option<OwnedFd>,
    /// The child's stdout (always piped; also carries stderr when redirected).
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    /// The child's stderr; `None` when [`SpawnSpec::redirect_stderr`] was set.
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
    /// Resolves exactly once, when the reaper collects the child.
    pub exit: Exit,
}

/// What [`Reaper::adopt`] gives for one inherited child.
pub type Adopted = io::Result<oneshot::Receiver<ExitStatus>>;

/// A child this process already has, for [`Reaper::start_adopting`].
#[derive(Debug)]
pub struct InheritedChild {
    /// Its pid.
    pub pid: u32,
    /// Its pidfd, from the image before this one ([`Reaper::pidfds`]): the
    /// child is registered with it, without opening another or checking
    /// that the pid is a child (the pidfd was opened for a child of this
    /// process, and nothing reaps between two images).
    pub pidfd: Option<OwnedFd>,
}

impl InheritedChild {
    /// A child known by its pid alone.
    pub fn pid(pid: u32) -> InheritedChild {
        InheritedChild { pid, pidfd: None }
    }
}

static REAPER: OnceLock<Reaper> = OnceLock::new();
/// See [`Reaper::pause_reaping`].
static PAUSED: AtomicBool = AtomicBool::new(false);

impl Reaper {
    /// Starts the process-wide reaper (or returns the running one).
    ///
    /// The SIGCHLD listener is installed before this returns, so no exit of a child
    /// spawned afterwards can be missed. `subreaper` additionally marks this process
    /// `PR_SET_CHILD_SUBREAPER` (process-wide, and it stays set).
    pub fn start(subreaper: bool) -> io::Result<Reaper> {
        Ok(Reaper::start_adopting(subreaper, Vec::new())?.0)
    }

    /// [`Reaper::start`] for a process that already has children (an `execve`d
    /// daemon's): each pid in `children` is registered as by [`Reaper::adopt`]
    /// before the reaper looks for orphans, so none of them (not even one that
    /// exited before this call) is reaped as an orphan. The results are in the
    /// order of `children`.
    pub fn start_adopting(
        subreaper: bool,
        children: Vec<InheritedChild>,
    ) -> io::Result<(Reaper, Vec<Adopted>)> {
        if subreaper {
            // Kept across `execve`: a live upgrade's new image finds it set,
            // and setting it walks every descendant (5,000 and more).
            if !nix::sys::prctl::get_child_subreaper().unwrap_or(false) {
                nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
            }
        }
        // Before the daemon opens its programs' pipes and logs, so the slots are
        // among its lowest descriptors (see `launch.rs`, "Descriptors").
        crate::launch::reserve_slots();
        if let Some(reaper) = REAPER.get() {
            return Ok((reaper.clone(), reaper.adopt_all(children)));
        }
        // Two racing first calls may both build a thread; only the winner's handle is
        // stored, and the loser's thread is told to exit before it reaps anything.
        let watches = pidfds_work().then(watch_set).flatten();
        let inner = Arc::new(Inner {
            gate: RwLock::new(()),
            state: Mutex::new(State::default()),
            pidfds: watches.is_some(),
            watches,
            peek_again: Notify::new(),
            resumed: Notify::new(),
            orphans: AtomicU64::new(0),
            reaped: AtomicU64::new(0),
            unwatched: AtomicU64::new(0),
            changes: watch::Sender::new(0),
            runtime_watch: AtomicBool::new(false),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
        let thread_inner = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("vigil-reaper".to_owned())
            .spawn(move || reaper_thread(thread_inner, ready_tx, go_rx))?;
        ready_rx.recv().map_err(|_| io::Error::other("reaper thread died during start"))??;
        let candidate = Reaper { inner };
        let winner = REAPER.get_or_init(|| candidate.clone());
        let we_won = Arc::ptr_eq(&winner.inner, &candidate.inner);
        // Registered before the thread may reap: it has not looked at any child yet.
        let adopted = winner.adopt_all(children);
        // The thread only begins reaping once told it is the one; a send error means
        // it is already gone, which the ready handshake above rules out.
        let _ = go_tx.send(we_won);
        Ok((winner.clone(), adopted))
    }

    /// [`Reaper::start_adopting`], collecting nothing until
    /// [`Reaper::resume_reaping`]: for an image that may yet execute the one
    /// it took over from again (a live upgrade whose config has not loaded),
    /// which must then find every exit of the gap still waiting.
    pub fn start_adopting_paused(
        subreaper: bool,
        children: Vec<InheritedChild>,
    ) -> io::Result<(Reaper, Vec<Adopted>)> {
        PAUSED.store(true, Ordering::SeqCst);
        let started = Reaper::start_adopting(subreaper, children);
        if started.is_err() {
            PAUSED.store(false, Ordering::SeqCst);
        }
        started
    }

    /// Also watches the children's pidfds from the current tokio runtime,
    /// the one that runs what the exits are handed to (vigild's process
    /// actors). An exit then wakes one of that runtime's workers, which reaps
    /// the child and makes its call there, and the actor the call casts to
    /// runs next on the same worker; through the reaper's thread alone, the
    /// exit woke that thread and then a worker. The reaper's thread keeps
    /// watching as well (whichever reaps first delivers, once), so exits are
    /// collected still when that runtime is gone. The first call counts; later
    /// ones do nothing. Without pidfds there is nothing to watch. True when
    /// this call started the watch.
    pub fn watch_from_current_runtime(&self) -> bool {
        let start =
            self.inner.watches.is_some() && !self.inner.runtime_watch.swap(true, Ordering::SeqCst);
        if start {
            tokio::spawn(Inner::watch(Arc::clone(&self.inner)));
        }
        start
    }

    /// Spawns `spec` inside the reaper's spawn gate and registers its pid.
    ///
    /// Must be called inside a tokio runtime (the pipes are registered with it). It
    /// blocks until the child has exec'd (well under a millisecond, independent of
    /// the daemon's size); call it from `spawn_blocking` if that matters to the caller.
    /// Spawns from several threads run in parallel.
    pub fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let (spawned, table) = self.spawn_prepared(Prepared::new(spec)?)?;
        tracing::debug!(pid = spawned.pid, argv = ?spec.argv, ?table, "spawned child");
        Ok(spawned)
    }

    /// [`Reaper::spawn`], handing the child's exit status to `on_exit` on the
    /// reaper's thread rather than to a channel (see [`ExitCall`]); the call
    /// is made once the reaper's locks are released.
    pub fn spawn_calling(
        &self,
        spec: &SpawnSpec,
        on_exit: ExitCall,
    ) -> Result<Spawned<()>, SpawnError> {
        let (spawned, table) = self.spawn_to(Prepared::new(spec)?, ExitTo::Call(on_exit))?;
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
        let (spawned, table) = self.spawn_to(prepared, ExitTo::Channel(exit_tx))?;
        let Spawned { pid, stdin, stdout, stderr, exit: () } = spawned;
        Ok((Spawned { pid, stdin, stdout, stderr, exit: exit_rx }, table))
    }

    fn spawn_to(
        &self,
        prepared: Prepared,
        exit: ExitTo,
    ) -> Result<(Spawned<()>, FdTable), SpawnError> {
        let gate = self.inner.gate.read().unwrap_or_else(PoisonError::into_inner);
        let (pid, pipes, table) = match prepared.launch(reap_failed_child) {
            Launch::Running { pid, pipes, table } => (pid, pipes, table),
            Launch::Failed { child, error } => {
                if let Some(pid) = child {
                    reap_failed_child(pid);
                }
                return Err(error);
            }
        };
        let pidfd = self.inner.pidfd_for(pid, &mut Room::new());
        self.inner.register(pid, exit, pidfd);
        drop(gate);
        let spawned = Spawned {
            pid,
            stdin: pipes.stdin,
            stdout: pipes.stdout,
            stderr: pipes.stderr,
            exit: (),
        };
        Ok((spawned, table))
    }

    /// Registers `pid`, a child this process already has (it survived an
    /// `execve` of the daemon), so its exit is delivered like a spawned child's.
    /// A child that already exited (a zombie) is reaped at once. Refused when the
    /// pid is not a child of this process or is registered already.
    pub fn adopt(&self, pid: u32) -> Adopted {
        self.adopt_all(vec![InheritedChild::pid(pid)]).pop().expect("one pid, one result")
    }

    /// [`Reaper::adopt`] of each of `pids`, the results in their order, as
    /// one batch: the descriptor limit is read once, and no more pidfds are
    /// opened once one lands in the table's upper half (descriptors are
    /// allocated lowest first, so the next ones would too).
    fn adopt_all(&self, children: Vec<InheritedChild>) -> Vec<Adopted> {
        let mut room = Room::new();
        let mut peek = false;
        let adopted =
            children.into_iter().map(|child| self.adopt_one(child, &mut room, &mut peek)).collect();
        if peek {
            // SIGCHLD's collection reaps the unwatched; an exit that came
            // before the registration raised its signal already, so look now.
            self.inner.peek_again.notify_one();
        }
        adopted
    }

    fn adopt_one(&self, child: InheritedChild, room: &mut Room, peek: &mut bool) -> Adopted {
        let InheritedChild { pid, pidfd } = child;
        let raw = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(Errno::EINVAL))?;
        let gate = self.inner.gate.read().unwrap_or_else(PoisonError::into_inner);
        if self.is_running(pid) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("pid {pid} is registered already"),
            ));
        }
        // A carried pidfd names a child of this process already.
        let pidfd = match pidfd {
            Some(pidfd) => Some(pidfd),
            None => {
                ensure_child(pid, raw)?;
                self.inner.pidfd_for(pid, room)
            }
        };
        let (exit_tx, exit_rx) = oneshot::channel();
        *peek |= !self.inner.register(pid, ExitTo::Channel(exit_tx), pidfd);
        drop(gate);
        Ok(exit_rx)
    }

    /// Stops collecting exits until [`Reaper::resume_reaping`]: a child that
    /// exits meanwhile stays a zombie. A daemon about to `execve` itself pauses
    /// before it hands its children over, so no exit is collected by an image
    /// that will not report it (the next one adopts them with
    /// [`Reaper::start_adopting`]).
    pub fn pause_reaping(&self) {
        PAUSED.store(true, Ordering::SeqCst);
    }

    /// Collects again, at once, whatever exited while paused: the reaper's
    /// thread peeks at every exited child (one walk of the children per
    /// exit, registered or not), and the watch looks again at the pidfds
    /// that fired while paused. Not a `waitpid` per registered child here,
    /// which with 5,000 was 5,000 system calls on a live upgrade's path.
    pub fn resume_reaping(&self) {
        PAUSED.store(false, Ordering::SeqCst);
        self.inner.resumed.notify_waiters();
        self.inner.peek_again.notify_one();
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

    /// The pidfd of each registered child that has one, as `(pid, fd)`, for
    /// a live upgrade to carry across `execve` (the next image registers
    /// them with [`InheritedChild::pidfd`]). Each stays open while its child is
    /// registered, so for as long as reaping is paused
    /// ([`Reaper::pause_reaping`]).
    pub fn pidfds(&self) -> Vec<(u32, RawFd)> {
        let state = self.inner.lock();
        state
            .waiting
            .iter()
            .filter_map(|(pid, waiter)| Some((*pid, waiter.pidfd.as_ref()?.as_raw_fd())))
            .collect()
    }

    /// Changes whenever [`Reaper::children`] may have changed.
    pub fn watch_children(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Orphans (pids not spawned through this reaper) reaped so far.
    pub fn orphans_reaped(&self) -> u64 {
        self.inner.orphans.load(Ordering::Relaxed)
    }

    /// Children of ours reaped so far (for tests and status).
    pub fn children_reaped(&self) -> u64 {
        self.inner.reaped.load(Ordering::Relaxed)
    }

    /// Children registered so far without a pidfd: all of them without pidfd
    /// support, else those spawned while descriptors were scarce.
    pub fn children_without_pidfd(&self) -> u64 {
        self.inner.unwatched.load(Ordering::Relaxed)
    }

    /// Whether children are watched through pidfds (else one `waitpid(-1)` loop).
    pub fn uses_pidfds(&self) -> bool {
        self.inner.pidfds
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

    /// Registers `pid` and adds its pidfd to the watches. False when nothing
    /// watches it (no pidfd, or epoll refused it): SIGCHLD's peek reaps it.
    fn register(&self, pid: u32, exit: ExitTo, mut pidfd: Option<OwnedFd>) -> bool {
        let mut state = self.lock();
        let serial = state.next_serial;
        state.next_serial += 1;
        // Added under the lock: a peek that reaps the child removes the pidfd
        // from the watches under it too, so none is added after its removal.
        if let (Some(watches), Some(fd)) = (&self.watches, &pidfd)
            && let Err(errno) =
                watches.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, u64::from(pid)))
        {
            // A watch limit (`max_user_watches`): the peek finds the exit.
            tracing::warn!(%errno, "cannot watch pid {pid}'s pidfd; SIGCHLD's peek reaps it");
            pidfd = None;
        }
        let watched = pidfd.is_some();
        state.waiting.insert(pid, Waiter { exit, serial, pidfd });
        drop(state);
        if !watched {
            self.unwatched.fetch_add(1, Ordering::Relaxed);
        }
        self.changed();
        watched
    }

    /// Reaps each child whose pidfd turns readable, on the reaper's thread
    /// and, once asked, on the daemon's runtime too: every wake-up collects
    /// all that fired since the last one.
    async fn watch(inner: Arc<Inner>) {
        let Some(watches) = &inner.watches else { return };
        // The descriptor stays `inner`'s; the runtime only watches its number.
        // SAFETY: `inner`, which owns it, outlives the registration.
        let registered = unsafe {
            AsyncFd::register_with_interest(
                Number(watches.0.as_raw_fd()),
                tokio::io::Interest::READABLE,
            )
        };
        let watched = match registered {
            Ok(watched) => watched,
            Err(error) => {
                tracing::error!(%error, "cannot watch the pidfds; SIGCHLD's peek reaps every child");
                return;
            }
        };
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let Ok(mut ready) = watched.readable().await else { return };
            if !PAUSED.load(Ordering::SeqCst) {
                let fired = match watches.wait(&mut events, EpollTimeout::ZERO) {
                    Ok(fired) => fired,
                    Err(errno) => {
                        tracing::error!(%errno, "epoll_wait on the pidfds failed");
                        0
                    }
                };
                for event in &events[..fired] {
                    // The data is the pid (set by `register`).
                    inner.reap_watched(event.data() as u32);
                }
                // A full batch may have left more to take: look again first.
                if fired < events.len() && !PAUSED.load(Ordering::SeqCst) {
                    ready.clear_ready();
                }
                continue;
            }
            // Paused: the pidfds stay readable, and the readiness is kept for
            // the first look once reaping resumes.
            drop(ready);
            let resumed = inner.resumed.notified();
            if PAUSED.load(Ordering::SeqCst) {
                resumed.await;
            }
        }
    }

    /// Reaps registered `pid` through its pidfd if it has exited, and
    /// delivers its status. Through the pidfd, not the pid: should the child
    /// have been collected elsewhere (by the SIGCHLD peek, which delivered
    /// it) and the pid reused by a new child, this looks at the new child's
    /// own pidfd, which has not fired.
    fn reap_watched(&self, pid: u32) {
        let state = self.lock();
        if PAUSED.load(Ordering::SeqCst) {
            return;
        }
        let Some(pidfd) = state.waiting.get(&pid).and_then(|w| w.pidfd.as_ref()) else {
            return;
        };
        // SAFETY: waitid writes into `info`, a local.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let got = loop {
            // SAFETY: as above; the pidfd is open (its waiter owns it).
            let got = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    pidfd.as_raw_fd() as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG,
                )
            };
            if got >= 0 || Errno::last() != Errno::EINTR {
                break got;
            }
        };
        if got < 0 {
            // Nobody else reaps a registered child; should it happen, the
            // waiter learns the child is gone rather than waiting forever.
            tracing::error!(errno = %Errno::last(), "waitid({pid}) failed for a registered child");
            self.deliver(state, pid, None);
            return;
        }
        // SAFETY: filled by waitid for a CLD_* event, zero while it runs.
        let (child, code, value) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if child == 0 {
            return;
        }
        let status = match code {
            libc::CLD_EXITED => ExitStatus::Code(value),
            libc::CLD_KILLED => ExitStatus::Signal(value),
            libc::CLD_DUMPED => ExitStatus::Dumped(value),
            _ => return,
        };
        self.deliver(state, pid, Some(status));
    }

    /// Reaps registered `pid` if it has exited and delivers its status. False
    /// while it still runs.
    fn reap_registered(&self, pid: u32) -> bool {
        let state = self.lock();
        if PAUSED.load(Ordering::SeqCst) {
            // Not now: `resume_reaping` looks again.
            return false;
        }
        let mut raw: libc::c_int = 0;
        let got = loop {
            // SAFETY: waitpid writes the status into `raw`. libc directly: nix fails
            // to decode real-time signal deaths after reaping them.
            let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut raw, libc::WNOHANG) };
            if got >= 0 || Errno::last() != Errno::EINTR {
                break got;
            }
        };
        if got == 0 {
            return false;
        }
        let status = if got < 0 {
            // Nobody else reaps a registered pid; should it happen, the waiter
            // learns the child is gone (its channel closes) rather than waiting forever.
            tracing::error!(errno = %Errno::last(), "waitpid({pid}) failed for a registered child");
            None
        } else {
            match ExitStatus::from_raw(raw) {
                Some(status) => Some(status),
                None => return false,
            }
        };
        self.deliver(state, pid, status);
        true
    }

    /// Hands the status of `pid`, just reaped under `state`'s lock, to its
    /// waiter (`None`: it only learns the child is gone).
    fn deliver(&self, mut state: MutexGuard<'_, State>, pid: u32, status: Option<ExitStatus>) {
        let mut waiter = state.waiting.remove(&pid);
        drop(state);
        // Removed before it is closed: a copy of the descriptor elsewhere (a
        // live upgrade's teardown helper holds one) would keep it in the set,
        // reporting its dead child at every look.
        if let (Some(watches), Some(pidfd)) =
            (&self.watches, waiter.as_mut().and_then(|w| w.pidfd.take()))
        {
            let _ = watches.delete(&pidfd);
        }
        self.reaped.fetch_add(1, Ordering::Relaxed);
        self.changed();
        if let (Some(waiter), Some(status)) = (waiter, status) {
            waiter.exit.deliver(pid, status);
        }
    }

    /// Reaps every waitable child: an unregistered one as an orphan, a
    /// registered one (watched or not) for its waiter.
    fn reap_orphans(&self) {
        loop {
            // SAFETY: waitid writes into `info`, a local.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: as above; WNOWAIT leaves the child waitable.
            let got = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if got < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    Errno::ECHILD => return,
                    errno => {
                        tracing::error!(%errno, "waitid failed");
                        return;
                    }
                }
            }
            // SAFETY: filled by waitid for a CLD_* event, zero when none was waitable.
            let pid = unsafe { info.si_pid() };
            if pid <= 0 {
                return;
            }
            let pid = pid as u32;
            let registered = |inner: &Inner| inner.lock().waiting.contains_key(&pid);
            // A registered child is reaped here even when a pidfd watches it:
            // leaving it to its watch would stop the peek at it, and the
            // unwatched zombies behind it would wait for another peek (when
            // thousands exit at once, a peek per exit, each walking the list
            // of children). Its pidfd leaves the watches as it is delivered.
            if registered(self) {
                if !self.reap_registered(pid) {
                    return;
                }
                continue;
            }
            // Unknown, or a child being spawned: no spawn in flight while the gate
            // is held exclusively, and then the map says which.
            let gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            if registered(self) {
                drop(gate);
                if !self.reap_registered(pid) {
                    return;
                }
                continue;
            }
            let mut raw: libc::c_int = 0;
            // SAFETY: waitpid writes the status into `raw`.
            let got = unsafe { libc::waitpid(pid as libc::pid_t, &mut raw, libc::WNOHANG) };
            drop(gate);
            if got > 0
                && let Some(status) = ExitStatus::from_raw(raw)
            {
                self.orphans.fetch_add(1, Ordering::Relaxed);
                tracing::info!("reaped unknown pid {pid} ({})", status.describe());
            }
        }
    }

    /// Without pidfds: collects every waitable child with `waitpid(-1)`. Takes
    /// the gate for each call only, so a spawn never waits behind a long reaping
    /// burst (and vice versa).
    fn reap_all(&self) {
        loop {
            let gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            let mut state = self.lock();
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
            let waiter = state.waiting.remove(&pid);
            drop(state);
            drop(gate);
            match waiter {
                Some(waiter) => {
                    self.reaped.fetch_add(1, Ordering::Relaxed);
                    self.changed();
                    waiter.exit.deliver(pid, status);
                }
                None => {
                    self.orphans.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("reaped unknown pid {pid} ({})", status.describe());
                }
            }
        }
    }

    /// Whatever SIGCHLD (or a blocked peek) asks for.
    fn collect(&self) {
        if PAUSED.load(Ordering::SeqCst) {
            return;
        }
        if self.pidfds { self.reap_orphans() } else { self.reap_all() }
    }
}

impl Inner {
    /// A pidfd to watch `pid` with, unless pidfds are off or the daemon already
    /// uses half of its descriptor limit: the rest is kept for pipes, logs and
    /// clients, and a child without one is reaped by the SIGCHLD peek instead.
    fn pidfd_for(&self, pid: u32, room: &mut Room) -> Option<OwnedFd> {
        if !self.pidfds || room.full {
            return None;
        }
        let pidfd = match pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                tracing::debug!(%error, "no pidfd for pid {pid}; SIGCHLD's peek reaps it");
                return None;
            }
        };
        // Descriptors are allocated lowest first, so the new one's number is
        // about how many are open.
        let used = u64::try_from(pidfd.as_raw_fd()).unwrap_or(u64::MAX);
        room.full = used >= room.limit / 2;
        (!room.full).then_some(pidfd)
    }
}

/// Whether `pid` (`raw`) is a child of this process, by a peek that keeps
/// it waitable: ECHILD says it is not ours.
fn ensure_child(pid: u32, raw: libc::pid_t) -> io::Result<()> {
    // SAFETY: waitid writes into `info`, a local.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let peeked = unsafe {
        libc::waitid(
            libc::P_PID,
            raw as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if peeked < 0 {
        let error = io::Error::last_os_error();
        return Err(if error.raw_os_error() == Some(libc::ECHILD) {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("pid {pid} is not a child of this process"),
            )
        } else {
            error
        });
    }
    Ok(())
}

/// A descriptor's number, owned elsewhere: what the runtime's epoll watches
/// of the reaper's own epoll instance.
struct Number(RawFd);

impl AsRawFd for Number {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Whether pidfds may still be opened: only in the lower half of the
/// descriptor table, the upper half being left to the programs' pipes and
/// logs.
struct Room {
    /// The soft descriptor limit.
    limit: u64,
    /// A pidfd landed in the upper half.
    full: bool,
}

impl Room {
    fn new() -> Room {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(u64::MAX, |(soft, _)| soft);
        Room { limit, full: false }
    }
}

/// `pidfd_open(pid, 0)`: a descriptor that turns readable when `pid` exits and
/// always names that process, even after its pid is reused.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor (close-on-exec) owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Set in the environment, turns pidfds off: for a kernel or seccomp filter
/// whose pidfds misbehave, and for the tests of the `waitpid(-1)` loop.
pub const NO_PIDFD_ENV: &str = "VIGIL_NO_PIDFD";

/// The epoll instance for the children's pidfds; `None` (reaping falls back
/// to one `waitpid(-1)` loop) if the kernel refuses one.
fn watch_set() -> Option<Epoll> {
    match Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) {
        Ok(epoll) => Some(epoll),
        Err(errno) => {
            tracing::info!(%errno, "no epoll instance; children are reaped with one waitpid(-1) loop");
            None
        }
    }
}

/// Whether this kernel gives pidfds (Linux 5.3) that epoll can watch.
fn pidfds_work() -> bool {
    if std::env::var_os(NO_PIDFD_ENV).is_some() {
        tracing::info!("{NO_PIDFD_ENV} is set; children are reaped with one waitpid(-1) loop");
        return false;
    }
    match pidfd_open(std::process::id()) {
        Ok(_) => true,
        Err(error) => {
            tracing::info!(%error, "no pidfds; children are reaped with one waitpid(-1) loop");
            false
        }
    }
}

/// Collects a child that exited during its setup or exec (or at once, refused a
/// private descriptor table). Called inside the spawn gate, so nobody else can
/// have taken it; the child has already called `_exit` (the spawn returned), so
/// this waits only for the kernel to finish its exit.
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
    ready: std::sync::mpsc::Sender<io::Result<()>>,
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
        tokio::spawn(Inner::watch(Arc::clone(&inner)));
        // Children that exited before the listener existed raised no signal we saw.
        inner.collect();
        loop {
            tokio::select! {
                got = sigchld.recv() => if got.is_none() { break },
                () = inner.peek_again.notified() => {}
            }
            // Let the watch reap the children whose pidfds fired in this same
            // wake-up first, so the peek finds their exits already collected.
            tokio::task::yield_now().await;
            inner.collect();
        }
        tracing::error!("SIGCHLD stream ended; orphans will no longer be reaped");
    });
}
