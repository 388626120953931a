//! vigild's startup sequence, main loop and ordered shutdown.
//!
//! Order, and why:
//! 1. Parse the command line (usage errors exit 2 before anything else).
//! 2. Find and load the configuration; `--check` stops here (0 valid, 2 not).
//! 3. Apply the CLI overlay, drop privileges, check `minfds`/`minprocs`: all
//!    before any file is created, so files belong to the final user.
//! 4. Open the activity log and replay the loader's warnings into it.
//! 5. Delete old AUTO child logs (unless `nocleanup`).
//! 6. Bind the control sockets: "already running" is detected here and reaches
//!    the terminal (exit 2) because we are still attached.
//! 7. Daemonize (unless `nodaemon`), still single-threaded; write the pidfile.
//! 8. Build the tokio runtime; install signal handlers; stop what an earlier
//!    vigild on this config left running (`survivors.rs`); start the supervision
//!    tree (and its reaper) and record its children; serve the sockets; tell the
//!    waiting parent, and a service manager (`NOTIFY_SOCKET`, see
//!    [`crate::systemd`]), we are up.
//! 9. Loop on signals and control requests: shutdown, reload, log reopen.
//! 10. Ordered shutdown of the tree, stop serving, remove socket and pidfile.
//!
//! Exit status: 0 after a shutdown requested by SIGTERM/SIGINT/SIGQUIT (or over
//! the control API), 2 for usage and configuration errors (including a control
//! socket in use), 1 for any other failure to start or keep running (including
//! [`DaemonControl::fatal`]).
//!
//! Everything that needs vigil-config's loader, vigil-core's tree or vigil-rpc
//! goes through the [`Backend`] trait, implemented for production in
//! `wiring.rs`; tests supply their own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use vigil_config::{Config, Diagnostic, LogTarget, Supervisord};
use vigil_core::handover::{CarriedProcess, Records};

use crate::carry;
pub use crate::config_source::{ConfigSource, LoadError, LoadedConfig};
use crate::daemonize::{self, Limit, Pidfile, Privileges, Readiness};
use crate::flags::{EarlyExit, Flags, usage_error};
use crate::handover;
use crate::listen::{self, Connection, Dispatch, Listener, Peer, UnixSocket};
use crate::logging::{self, LogSettings, MainLog};
use crate::signals::{DaemonSignal, Signals};
use crate::systemd::Notifier;

/// Threads for blocking work: appending programs' output to their log files, reading
/// logs for clients, loading the config. Every program writing at once must not make
/// vigild start a thread each (tokio's default allows 512); with a slow disk, writes
/// wait their turn and programs block on their full pipes instead.
const BLOCKING_THREADS: usize = 64;

/// Exit statuses, defined in one place.
pub mod exit_code {
    /// Clean shutdown requested by a signal or over the control API.
    pub const OK: i32 = 0;
    /// Failure to start or keep running for a reason other than bad input.
    pub const FAILURE: i32 = 1;
    /// Usage or configuration error (supervisord's status for them).
    pub const USAGE: i32 = 2;
}

/// Lets the control API and the tree ask the main loop for what a signal would
/// do (`supervisor.shutdown` -> [`DaemonSignal::Shutdown`], `supervisor.restart`
/// -> [`DaemonSignal::Reload`]), or to stop with a failure status (`on_fatal =
/// shutdown`).
#[derive(Debug, Clone)]
pub struct DaemonControl {
    requests: mpsc::UnboundedSender<Request>,
    /// An upgrade was asked for and has not ended: another is refused at
    /// once (queued, its caller would hold a connection open that the
    /// running upgrade then waits for).
    upgrading: Arc<std::sync::atomic::AtomicBool>,
}

/// A request queued by [`DaemonControl`].
#[derive(Debug)]
enum Request {
    Signal(DaemonSignal),
    Fatal { reason: String, code: i32 },
    Upgrade { binary: Option<PathBuf>, reply: Option<oneshot::Sender<Result<String, String>>> },
}

/// What an upgrade's answer is awaited with.
pub type UpgradeReply = oneshot::Receiver<Result<String, String>>;

/// The answer to an upgrade asked for while another is under way.
pub const UPGRADE_IN_PROGRESS: &str = "another upgrade is in progress";

impl DaemonControl {
    fn new() -> (DaemonControl, mpsc::UnboundedReceiver<Request>) {
        let (requests, receiver) = mpsc::unbounded_channel();
        (DaemonControl { requests, upgrading: Arc::default() }, receiver)
    }

    /// Queues what `signal` would do; false if the daemon is past its main loop.
    pub fn request(&self, signal: DaemonSignal) -> bool {
        self.requests.send(Request::Signal(signal)).is_ok()
    }

    /// Asks for an ordered shutdown that ends with exit status 1, logging
    /// `reason` (a group went FATAL under `on_fatal = shutdown`).
    pub fn fatal(&self, reason: impl Into<String>) -> bool {
        self.fatal_with(exit_code::FAILURE, reason)
    }

    /// A live upgrade to `binary` (vigild's own path when `None`): the
    /// answer is the new binary's pre-flight line once it accepted the
    /// handover, just before the daemon hands over, or why not. `None` if the
    /// daemon is past its main loop.
    pub fn upgrade(&self, binary: Option<PathBuf>) -> Option<UpgradeReply> {
        let (reply, answer) = oneshot::channel();
        if self.upgrading.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = reply.send(Err(UPGRADE_IN_PROGRESS.to_owned()));
            return Some(answer);
        }
        if self.requests.send(Request::Upgrade { binary, reply: Some(reply) }).is_err() {
            self.upgrade_ended();
            return None;
        }
        Some(answer)
    }

    /// The upgrade asked for with [`DaemonControl::upgrade`] did not happen
    /// (this image goes on): the next one may be asked for.
    fn upgrade_ended(&self) {
        self.upgrading.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Like [`DaemonControl::fatal`], ending with exit status `code` (an
    /// essential program's own).
    pub fn fatal_with(&self, code: i32, reason: impl Into<String>) -> bool {
        self.requests.send(Request::Fatal { reason: reason.into(), code }).is_ok()
    }
}

/// What the tree and the control API get from the daemon.
#[derive(Debug, Clone)]
pub struct TreeContext {
    /// The activity log, for `readLog`/`maintail`/`clearLog`.
    pub main_log: MainLog,
    /// Asks the main loop for a shutdown or a reload.
    pub control: DaemonControl,
    /// PID 1: the reaper must adopt and reap orphans, and kill what is left at exit.
    pub pid1: bool,
    /// Where the configuration comes from, for `reread` to load it as startup
    /// and SIGHUP do.
    pub source: ConfigSource,
    /// vigild's own messages to a service manager (no-ops without one).
    pub notifier: Notifier,
    /// Start time, reloads and config generation, kept across reloads.
    pub counters: Arc<DaemonCounters>,
}

/// What the daemon counts for `facts` and `/metrics`.
#[derive(Debug)]
pub struct DaemonCounters {
    /// When this vigild started.
    pub started: std::time::SystemTime,
    /// Reloads since then.
    pub reloads: std::sync::atomic::AtomicU64,
    /// 1 for the first config, plus one per reload and per applied `update`.
    pub generation: std::sync::atomic::AtomicU64,
    /// Live upgrades this daemon went through.
    pub upgrades: std::sync::atomic::AtomicU64,
}

impl Default for DaemonCounters {
    fn default() -> DaemonCounters {
        DaemonCounters {
            started: std::time::SystemTime::now(),
            reloads: std::sync::atomic::AtomicU64::new(0),
            generation: std::sync::atomic::AtomicU64::new(1),
            upgrades: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl DaemonCounters {
    /// A new config is in force (a reload when `reload`).
    pub fn config_changed(&self, reload: bool) {
        if reload {
            self.reloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The supervision tree as the daemon sees it.
pub trait Tree: Send + Sync + 'static {
    /// Serves control connections against this tree.
    fn dispatch(&self) -> Arc<dyn Dispatch>;
    /// Reopens every child log (SIGUSR2).
    fn reopen_logs(&self) -> impl Future<Output = ()> + Send;
    /// Ordered stop of every process (reverse priority), then the tree itself.
    fn shutdown(self) -> impl Future<Output = ()> + Send;
    /// [`Tree::shutdown`] as the daemon exits: what the tree holds may be
    /// left to the kernel instead of freed piece by piece.
    fn shutdown_to_exit(self) -> impl Future<Output = ()> + Send;
    /// Live upgrade: why the tree cannot be handed over now, if it cannot.
    fn handover_refusal(&self) -> Option<String>;
    /// Live upgrade: what its control servers check and say, for the next
    /// image to serve reads with before it has loaded its config.
    fn control(&self) -> handover::CarriedControl;
    /// Live upgrade: what may run while the control servers still serve
    /// (refusals, then the output captures stop); after `Ok` the caller goes
    /// on to [`Tree::hand_over`].
    fn begin_handover(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Live upgrade: lets every process go of its child and returns the
    /// records (see `vigil_core::handover`); after `Ok` this image must
    /// `execve`.
    fn hand_over(
        &self,
    ) -> impl Future<Output = Result<vigil_core::handover::Handover, String>> + Send;
}

/// The daemon's dependencies on the other crates.
pub trait Backend: Send + Sync + 'static {
    /// The tree this backend builds.
    type Tree: Tree;
    /// supervisord's configuration search (without `-c`); the error is the
    /// message printed after `Error: `.
    fn find_config(&self, exe_dir: Option<&Path>, cwd: &Path) -> Result<PathBuf, String>;
    /// Loads and validates; the error lists every problem. Callers go through
    /// [`ConfigSource::load`], which adds the command line.
    fn load(
        &self,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<LoadedConfig, Vec<Diagnostic>>;
    /// The `--check` summary.
    fn summary(&self, config: &Config) -> String;
    /// Live upgrade: what serves control connections from the carried
    /// `records`, with the old image's `control` settings, from the moment
    /// the new image has read its state until the tree that resumes them is
    /// built, if this backend can (see `gap.rs`); `None` keeps the listeners
    /// unserved until then.
    fn carried(
        &self,
        _control: &handover::CarriedControl,
        _records: Records,
    ) -> Option<Carried<Self::Tree>> {
        None
    }
    /// A fresh start's last step before the runtime's threads exist, after
    /// daemonizing: what is cheaper done while the process has one thread.
    fn before_runtime(&self, _config: &Config) {}
    /// Builds and starts the tree (autostart programs in priority order).
    fn start_tree(
        &self,
        config: &Config,
        context: &TreeContext,
    ) -> impl Future<Output = Result<Self::Tree, String>> + Send;
}

/// A live upgrade's control dispatch until the tree is built
/// ([`Backend::carried`]).
pub struct Carried<T> {
    /// Serves connections, answering reads from the carried records.
    pub dispatch: Arc<dyn Dispatch>,
    /// Hands it the built tree: the calls it holds run there, and so does
    /// every later call of the connections it served.
    pub open: Box<dyn FnOnce(&T) + Send>,
}

/// Runs vigild with `args` (`argv[0]` included) and returns the exit status.
pub fn run<B: Backend>(backend: B, args: impl IntoIterator<Item = OsString>) -> i32 {
    crate::heap::configure();
    match prepare(&backend, args) {
        Ok(Prepared::Exit(code)) => code,
        Ok(Prepared::Run(daemon)) => daemon.run(&backend),
        Err(code) => code,
    }
}

/// Prints supervisord's usage error and returns its status.
fn usage(message: &str) -> i32 {
    eprintln!("{}", usage_error(message));
    exit_code::USAGE
}

enum Prepared<T> {
    Exit(i32),
    Run(Box<Daemon<T>>),
}

/// Everything decided before the first file is created.
struct Daemon<T> {
    source: ConfigSource,
    config: Config,
    warnings: Vec<String>,
    /// This image was started by a live upgrade (see [`crate::handover`]).
    inherited: Option<Inherited>,
    /// The command line, for the next image of a live upgrade.
    args: Vec<OsString>,
    /// The service manager's variables, for the next image of a live upgrade.
    service_env: Vec<(String, String)>,
    /// The pidfile this image wrote, for the next image of a live upgrade
    /// to retire if its config moved it.
    pidfile: Option<PathBuf>,
    /// The service manager's variables and the notifier made of them, when
    /// taken before [`Daemon::run`] (a live upgrade takes them before its
    /// runtime starts, see [`Early`]).
    service: Option<(Vec<(String, String)>, Notifier)>,
    /// A live upgrade's runtime and control servers, serving since the state
    /// was read.
    early: Option<Early<T>>,
    /// A live upgrade's carried children being registered, on a thread of
    /// their own since the state was read (see [`Adopting`]).
    adopting: Option<Adopting>,
}

/// A live upgrade's control service before the new image has loaded its
/// config: as soon as the state is read, the runtime starts and serves the
/// inherited listeners, answering reads from the carried records with the
/// old image's credentials (`gap.rs`); the config loads meanwhile. The
/// daemon then runs on this runtime and serves the listeners as its config
/// settles them ([`EarlyGap::release`]).
struct Early<T> {
    runtime: tokio::runtime::Runtime,
    gap: EarlyGap<T>,
}

/// The carried children registered with a paused reaper, and the records
/// made into what the tree adopts ([`register`]), once its thread ends.
/// Nothing is reaped before the config has loaded and the records are
/// offered, so a refused upgrade hands every exit back to the old image.
type Adopting = std::thread::JoinHandle<std::io::Result<Registered>>;

struct EarlyGap<T> {
    switch: Arc<SwitchDispatch>,
    /// Hands the gap's service the built tree.
    open: Box<dyn FnOnce(&T) + Send>,
    /// The daemon's `stop_serving` and `handover` tokens from the start, so
    /// a connection accepted early is ended (or drained) with the others.
    stop: CancellationToken,
    handover: CancellationToken,
    /// Stops the early servers' accepting; what they accepted runs on.
    release: CancellationToken,
    servers: tokio::task::JoinSet<()>,
    /// When they started serving.
    since: std::time::Instant,
}

impl<T: Tree> Early<T> {
    /// Starts the runtime and serves copies of the inherited listeners;
    /// `None` if this backend has no gap service or the runtime cannot start
    /// (the daemon then tries again the usual way, and says why).
    fn start<B: Backend<Tree = T>>(
        backend: &B,
        state: &handover::State,
        records: &Records,
    ) -> Option<Early<T>> {
        let carried = backend.carried(&state.control, Arc::clone(records))?;
        let runtime = runtime().ok()?;
        let copy = |fd: Option<std::os::fd::RawFd>| {
            // SAFETY: the state names these descriptors for this image; a copy
            // leaves the original to `inherit_sockets`.
            fd.and_then(|fd| unsafe { handover::copy_fd(fd) })
        };
        let listeners = Listeners {
            unix: copy(state.unix_listener).map(std::os::unix::net::UnixListener::from),
            unix_path: None,
            inet: copy(state.inet_listener).map(std::net::TcpListener::from),
        };
        let switch = Arc::new(SwitchDispatch { current: RwLock::new(carried.dispatch) });
        let (stop, handover, release) =
            (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());
        let mut servers = tokio::task::JoinSet::new();
        let served = {
            let _entered = runtime.enter();
            serve_listeners(&listeners, &switch, &stop, &handover, Some(&release), &mut servers)
        };
        if served.is_err() {
            stop.cancel();
            return None;
        }
        let since = std::time::Instant::now();
        let open = carried.open;
        let gap = EarlyGap { switch, open, stop, handover, release, servers, since };
        Some(Early { runtime, gap })
    }

    /// The upgrade is refused after all: the servers end (each connection's
    /// call under way is answered; a call held for the tree is told the
    /// daemon stopped) before this image executes the old one again.
    fn abandon(self) {
        let Early { runtime, gap } = self;
        let EarlyGap { open, handover, mut servers, .. } = gap;
        drop(open);
        handover.cancel();
        runtime.block_on(async {
            let ended = async { while servers.join_next().await.is_some() {} };
            let _ = tokio::time::timeout(ABANDON_DRAIN, ended).await;
        });
        runtime.shutdown_timeout(Duration::ZERO);
    }
}

/// How often an old image holding its programs after a refused upgrade tries
/// its configuration again (see `prepare`).
const HOLD_RETRY: Duration = Duration::from_secs(1);

/// How long a refused upgrade's early servers may take to end.
const ABANDON_DRAIN: Duration = Duration::from_millis(500);

/// The daemon's runtime.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
}

/// Takes the service manager's variables from the environment, first
/// setting those a live upgrade carried.
///
/// # Safety
///
/// Changes the environment: the process must have one thread.
unsafe fn take_service_env(carried: &[(String, String)]) -> (Vec<(String, String)>, Notifier) {
    for (name, value) in carried {
        // SAFETY: one thread, as the caller promises.
        unsafe { std::env::set_var(name, value) };
    }
    // Kept for the next image of a live upgrade (same pid, so the same
    // service).
    let service_env = SERVICE_ENV
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect();
    // SAFETY: one thread, as the caller promises.
    (service_env, unsafe { Notifier::take_from_env() })
}

/// The service manager's variables vigild takes from its environment.
const SERVICE_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// A live upgrade's state, as the new image received it (the memfd and the
/// old executable are closed once it was read: they only served a refusal).
struct Inherited {
    state: handover::State,
    /// The state's processes, shared with the gap's service (`gap.rs`).
    records: Records,
    /// Whether the configuration the pre-flight loaded was taken (`carry.rs`),
    /// or why not; `None` if none came.
    config: Option<Result<(), String>>,
}

/// The new image cannot take the state it was handed: execute the old image
/// again (it kept its executable open for this), which resumes. Returns only
/// if that fails too.
fn hand_back(inherited: &handover::Inherited, args: &[OsString], why: &str) -> i32 {
    eprintln!("Error: live upgrade refused: {why}");
    if let Some(exe) = &inherited.exe {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        for fd in [inherited.memfd.as_fd(), exe.as_fd()] {
            if let Err(err) = handover::keep_across_exec(fd) {
                eprintln!("Error: cannot keep the handover state: {err}");
            }
        }
        let hold = inherited.hold.as_deref();
        let err = handover::exec_back(exe.as_fd(), args, inherited.memfd.as_raw_fd(), why, hold);
        eprintln!("Error: cannot execute the previous vigild again: {err}");
    }
    exit_code::FAILURE
}

fn prepare<B: Backend>(
    backend: &B,
    args: impl IntoIterator<Item = OsString>,
) -> Result<Prepared<B::Tree>, i32> {
    let args: Vec<OsString> = args.into_iter().collect();
    // SAFETY: vigild has one thread until the runtime is built, after this.
    let mut inherited = unsafe { handover::inherited() };
    if let Some(inherited) = &inherited
        && let Err(why) = &inherited.state
    {
        if let Some(first) = &inherited.refused {
            // This is the old image, executed again, and it cannot read its
            // own state: nowhere left to go.
            eprintln!("Error: live upgrade refused ({first}), then the state is unreadable: {why}");
            return Err(exit_code::FAILURE);
        }
        return Err(hand_back(inherited, &args, why));
    }
    let flags = match Flags::parse_from(args.clone()) {
        Ok(flags) => flags,
        Err(EarlyExit::Print(text)) => {
            print!("{text}");
            return Ok(Prepared::Exit(exit_code::OK));
        }
        Err(EarlyExit::Usage(message)) => return Err(usage(&message)),
    };
    // A live upgrade's image starts in the daemon's directory (`/`, or
    // `directory=`), not where the command line was given.
    let launch_dir = inherited
        .as_ref()
        .and_then(|inherited| inherited.state.as_ref().ok())
        .map(|state| state.launch_dir.clone())
        .filter(|dir| dir.is_absolute());
    let cwd = match launch_dir {
        Some(dir) => dir,
        None => std::env::current_dir()
            .map_err(|err| usage(&format!("cannot determine the current directory: {err}")))?,
    };
    let config_path = match &flags.configuration {
        Some(path) => {
            let absolute = cwd.join(path);
            if !absolute.is_file() {
                return Err(usage(&format!("could not find config file {}", path.display())));
            }
            absolute
        }
        None => {
            let exe = std::env::current_exe().ok();
            let exe_dir = exe.as_deref().and_then(Path::parent);
            backend.find_config(exe_dir, &cwd).map_err(|message| usage(&message))?
        }
    };
    let source = ConfigSource { path: config_path, flags, cwd };
    // SAFETY: still one thread.
    let carry_to = unsafe { carry::requested() }.filter(|_| source.flags.handover_check.is_some());
    let (mut service, mut early, mut adopting) = (None, None, None);
    let mut records = Records::default();
    if let Some(handover::Inherited { state: Ok(state), .. }) = &mut inherited
        && !source.flags.check
        && source.flags.handover_check.is_none()
    {
        // SAFETY: still one thread: the registering thread and the runtime
        // start below.
        service = Some(unsafe { take_service_env(&state.service_env) });
        crate::teardown::reap(std::mem::take(&mut state.teardown));
        // Off the path to the tree, from the start (6 - 11 ms with 5,000
        // programs): the children first, the records once they are shared.
        let pids = carried_pids(&state.processes);
        let pidfds = state.pidfds.clone();
        let (give, shared) = std::sync::mpsc::sync_channel::<Records>(1);
        adopting = std::thread::Builder::new()
            .name("vigil-adopt".to_owned())
            .spawn(move || register(&pids, pidfds, || shared.recv().ok()))
            .ok();
        records = std::mem::take(&mut state.processes).into();
        let _ = give.send(Arc::clone(&records));
        early = Early::start(backend, state, &records);
        if let Some(hold) = inherited.as_ref().and_then(|inherited| inherited.hold.as_ref()) {
            // Reads until every writer has closed the FIFO, while the early
            // servers answer.
            let _ = std::fs::read(hold);
        }
    }
    // A pre-flight writes what it loads for the new image (`carry.rs`); the
    // new image takes that instead of loading the file again, and the old
    // image executed again after a refusal closes it.
    let mut carried = None;
    // `None` if no configuration came with the state; whether it was taken.
    let mut carry_note: Option<Result<(), String>> = None;
    if let Some(handover::Inherited { state: Ok(state), refused, .. }) = &mut inherited
        && let Some(fd) = state.config.take()
    {
        if refused.is_some() {
            // SAFETY: the state names it for this image alone.
            unsafe { carry::close(fd) };
        } else {
            // SAFETY: as above.
            match unsafe { carry::Carried::take(fd) } {
                Ok(taken) => carried = Some(taken),
                Err(why) => carry_note = Some(Err(why)),
            }
        }
    }
    let mut wrote = false;
    let mut load = || {
        source.load(|path, env| {
            if let Some(taken) = carried.take() {
                match taken.matching(path, env) {
                    Ok(loaded) => {
                        carry_note = Some(Ok(()));
                        return Ok(loaded);
                    }
                    Err(why) => carry_note = Some(Err(why)),
                }
            }
            let loaded = backend.load(path, env);
            if let (Some(out), Ok(loaded)) = (carry_to, &loaded)
                && !wrote
            {
                // Without it the new image loads the file itself: no error.
                wrote = carry::write(out, path, env, loaded).is_ok();
            }
            loaded
        })
    };
    let mut loaded = load();
    // The old image, executed again because the new one refused (its file
    // stopped loading after the pre-flight, say), must not leave its programs
    // without a supervisor over the same file: it holds them as in the gap,
    // answering status from the carried records while every other call, a
    // signal and each exit wait, and loads the file again until it does.
    let refused_back = inherited.as_ref().is_some_and(|i| i.refused.is_some());
    if let Some(Early { runtime, .. }) = early.as_ref().filter(|_| refused_back) {
        let mut shown = String::new();
        while let Err(LoadError::Invalid(errors)) = &loaded {
            let text: String = errors.iter().map(|error| format!("Error: {error}\n")).collect();
            if text != shown {
                eprint!("{text}");
                let held = match records.len() {
                    1 => "1 program".to_owned(),
                    n => format!("{n} programs"),
                };
                eprintln!(
                    "Error: the live upgrade was refused and the configuration does not load: \
                     holding {held} until it does (tried every {} s)",
                    HOLD_RETRY.as_secs()
                );
                shown = text;
            }
            // Made inside the runtime, which its timer needs.
            runtime.block_on(async { tokio::time::sleep(HOLD_RETRY).await });
            loaded = load();
        }
    }
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(errors)) => {
            for error in &errors {
                eprintln!("Error: {error}");
            }
            forget_registered(adopting.take());
            if let Some(early) = early.take() {
                early.abandon();
            }
            if let Some(inherited) = inherited.as_ref().filter(|i| i.refused.is_none()) {
                return Err(hand_back(inherited, &args, "the configuration does not load"));
            }
            if !source.flags.check {
                eprintln!("For help, use {} -h", crate::flags::PROGRAM);
            }
            return Err(exit_code::USAGE);
        }
        Err(LoadError::Flags(message)) => {
            forget_registered(adopting.take());
            if let Some(early) = early.take() {
                early.abandon();
            }
            if let Some(inherited) = inherited.as_ref().filter(|i| i.refused.is_none()) {
                eprintln!("Error: {message}");
                return Err(hand_back(inherited, &args, "the command line does not apply"));
            }
            return Err(usage(&message));
        }
    };
    if let Some(requested) = source.flags.handover_check {
        let (code, line) = handover::check_flag(requested);
        if code != 0 {
            eprintln!("{line}");
            return Ok(Prepared::Exit(code));
        }
        if let Err(message) = preflight_settings(&loaded.config) {
            eprintln!("Error: {message}");
            return Ok(Prepared::Exit(exit_code::USAGE));
        }
        println!("{line}");
        return Ok(Prepared::Exit(code));
    }
    if source.flags.check {
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        print!("{}", backend.summary(&loaded.config));
        return Ok(Prepared::Exit(exit_code::OK));
    }
    let inherited = inherited.map(|inherited| {
        if let Some(why) = &inherited.refused {
            eprintln!("Error: the new vigild refused the live upgrade: {why}");
        }
        let handover::Inherited { state, refused, .. } = inherited;
        let state = state.expect("refused states were handed back above");
        (Inherited { state, records: Arc::clone(&records), config: carry_note.take() }, refused)
    });
    let (inherited, refused) = match inherited {
        Some((inherited, refused)) => (Some(inherited), refused),
        None => (None, None),
    };
    let mut warnings = loaded.warnings;
    if let Some(why) = refused {
        warnings.push(format!("live upgrade refused by the new vigild, resumed: {why}"));
    }
    Ok(Prepared::Run(Box::new(Daemon {
        source,
        config: loaded.config,
        warnings,
        inherited,
        args,
        service_env: Vec::new(),
        pidfile: None,
        service,
        early,
        adopting,
    })))
}

/// The activity log as `settings` ask for it.
fn open_main_log(settings: &Supervisord) -> Result<MainLog, String> {
    MainLog::open(LogSettings::from_config(settings)).map_err(|err| {
        let target = match &settings.logfile {
            LogTarget::Path(path) => path.display().to_string(),
            other => format!("{other:?}"),
        };
        format!("cannot open the activity log {target}: {err}")
    })
}

/// The limits supervisord checks at startup, with the minimum asked for each.
fn limits(settings: &Supervisord) -> [(Limit, u64); 2] {
    [(Limit::Files, settings.minfds), (Limit::Processes, settings.minprocs)]
}

/// What a live upgrade's next image needs of the daemon-wide settings before
/// it can supervise, tried by the pre-flight run (as the daemon's user, in a
/// process of its own): the file limits and the activity log. Refused here,
/// the upgrade changes nothing; the next image itself goes around them.
fn preflight_settings(config: &Config) -> Result<(), String> {
    let settings = &config.supervisord;
    for (limit, minimum) in limits(settings) {
        daemonize::ensure_limit(limit, minimum)?;
    }
    open_main_log(settings).map(drop)
}

/// Sockets bound before daemonizing.
#[derive(Default)]
struct Sockets {
    unix: Option<UnixSocket>,
    inet: Option<std::net::TcpListener>,
}

impl Sockets {
    fn remove(&self) {
        if let Some(socket) = &self.unix
            && let Err(err) = socket.remove()
        {
            tracing::warn!("could not remove {}: {err}", socket.path().display());
        }
    }
}

impl<T: Tree> Daemon<T> {
    fn run<B: Backend<Tree = T>>(mut self, backend: &B) -> i32 {
        let settings = self.config.supervisord.clone();
        // The next image of a live upgrade supervises running programs: what
        // would stop a fresh start is reported and gone around instead (the
        // pre-flight refuses the upgrade for the same causes, see
        // `preflight_settings`; these are what changed since).
        let upgraded = self.inherited.is_some();
        let mut notes = Vec::new();
        let mut errors = Vec::new();
        let privileges = if upgraded {
            let (privileges, changed) = daemonize::keep_privileges(settings.user.as_ref());
            errors.extend(changed);
            privileges
        } else {
            match daemonize::drop_privileges(settings.user.as_ref()) {
                Ok(privileges) => privileges,
                Err(message) => return usage(&message),
            }
        };
        for (limit, minimum) in limits(&settings) {
            match daemonize::ensure_limit(limit, minimum) {
                Ok(Some(note)) => notes.push(note),
                Ok(None) => {}
                Err(message) if upgraded => errors.push(message),
                Err(message) => return usage(&message),
            }
        }
        let main_log = match open_main_log(&settings) {
            Ok(log) => log,
            Err(message) if upgraded => {
                eprintln!("Error: {message}");
                errors.push(format!("{message}; going on without an activity log"));
                let mut off = LogSettings::from_config(&settings);
                off.target = LogTarget::None;
                match MainLog::open(off) {
                    Ok(log) => log,
                    Err(err) => {
                        return usage(&format!("cannot start without an activity log: {err}"));
                    }
                }
            }
            Err(message) => return usage(&message),
        };
        if let Err(err) = logging::install(main_log.clone()) {
            eprintln!("Error: cannot install the activity log: {err}");
            return exit_code::FAILURE;
        }
        let (service_env, notifier) = match self.service.take() {
            Some(service) => service,
            // SAFETY: still one thread: the runtime is built after daemonizing.
            None => unsafe { take_service_env(&[]) },
        };
        self.service_env = service_env;
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
        if self.source.flags.profile_options.is_some() {
            tracing::warn!(
                "--profile_options is accepted for compatibility but ignored: profiling is not supported"
            );
        }
        for note in notes {
            tracing::info!("{note}");
        }
        for error in errors {
            tracing::error!(critical = true, "{error}");
        }
        match (&privileges, &settings.user) {
            (Privileges::RootWithoutUser, _) => {
                tracing::error!(critical = true, "{}", daemonize::ROOT_WITHOUT_USER);
            }
            (Privileges::Dropped, Some(user)) => {
                tracing::info!("Set uid to user {} succeeded", user.uid);
            }
            _ => {}
        }
        // After a live upgrade the AUTO logs are the running programs' own.
        if !settings.nocleanup && self.inherited.is_none() {
            match daemonize::cleanup_auto_logs(&settings.childlogdir, &settings.identifier) {
                Ok(cleanup) => {
                    for (path, err) in cleanup.failed {
                        tracing::warn!("Failed to clean up {}: {err}", path.display());
                    }
                }
                Err(err) => tracing::warn!(
                    "Failed to clean up AUTO logs in {}: {err}",
                    settings.childlogdir.display()
                ),
            }
        }
        let bound = match &self.inherited {
            Some(inherited) => Ok(inherit_sockets(&self.config, &inherited.state)),
            None => bind_sockets(&self.config),
        };
        let mut sockets = match bound {
            Ok(sockets) => sockets,
            Err(err) => {
                tracing::error!(critical = true, "{err}");
                return usage(&err.to_string());
            }
        };
        // An upgraded image is the daemon already: same pid, same session.
        let readiness = if settings.nodaemon || self.inherited.is_some() {
            Readiness::foreground()
        } else {
            match daemonize::daemonize(settings.directory.as_deref(), settings.umask) {
                Ok(readiness) => readiness,
                Err(err) => {
                    tracing::error!(critical = true, "{err}");
                    eprintln!("Error: {err}");
                    sockets.remove();
                    return exit_code::FAILURE;
                }
            }
        };
        let pidfile = settings.pidfile.as_deref().and_then(|path| match Pidfile::write(path) {
            Ok(pidfile) => Some(pidfile),
            Err(err) => {
                // supervisord carries on without a pidfile.
                tracing::error!(
                    critical = true,
                    "could not write pidfile {}: {err}",
                    path.display()
                );
                None
            }
        });
        if let Some(inherited) = &self.inherited
            && (pidfile.is_some() || settings.pidfile.is_none())
        {
            retire_moved_pidfile(inherited.state.pidfile.as_deref(), settings.pidfile.as_deref());
        }
        self.pidfile = pidfile.as_ref().map(|pidfile| pidfile.path().to_owned());
        match &self.inherited {
            Some(inherited) => {
                tracing::info!(
                    "vigild {} took over from vigild {} with pid {} (live upgrade)",
                    env!("CARGO_PKG_VERSION"),
                    inherited.state.from_version,
                    std::process::id()
                );
                match &inherited.config {
                    Some(Ok(())) => tracing::info!(
                        "the configuration is the one the pre-flight run of this binary loaded"
                    ),
                    Some(Err(why)) => tracing::info!(
                        "loaded the configuration again rather than take the pre-flight's: {why}"
                    ),
                    None => {}
                }
            }
            None => tracing::info!("supervisord started with pid {}", std::process::id()),
        }

        let (runtime, gap) = match self.early.take() {
            Some(Early { runtime, gap }) => (Ok(runtime), Some(gap)),
            None => {
                backend.before_runtime(&self.config);
                (runtime(), None)
            }
        };
        let code = match runtime {
            Ok(runtime) => {
                let listeners = Listeners {
                    unix_path: sockets.unix.as_ref().map(|socket| socket.path().to_owned()),
                    unix: sockets.unix.as_mut().and_then(UnixSocket::take_listener),
                    inet: sockets.inet.take(),
                };
                let code = runtime
                    .block_on(self.serve(backend, main_log, listeners, readiness, notifier, gap));
                // Blocking tasks (log writes) get a moment to finish; nothing may
                // keep the daemon from exiting after its tree is down.
                runtime.shutdown_timeout(Duration::from_secs(5));
                code
            }
            Err(err) => {
                tracing::error!(critical = true, "cannot start the async runtime: {err}");
                readiness.failed(
                    exit_code::FAILURE as u8,
                    &format!("Error: cannot start the async runtime: {err}"),
                );
                exit_code::FAILURE
            }
        };
        sockets.remove();
        if let Some(pidfile) = &pidfile
            && let Err(err) = pidfile.remove()
        {
            tracing::warn!("could not remove pidfile {}: {err}", pidfile.path().display());
        }
        tracing::info!("exiting with status {code}");
        code
    }
}

/// The std listeners handed to the runtime.
struct Listeners {
    unix: Option<std::os::unix::net::UnixListener>,
    /// The file the unix listener serves.
    unix_path: Option<PathBuf>,
    inet: Option<std::net::TcpListener>,
}

/// The listeners a live upgrade handed over, for the sockets `config` has.
///
/// The upgrade doubles as a reload of the socket settings, which a `reload`
/// leaves alone: a listener whose address the file changed is replaced by one
/// bound at the new address (the old unix socket's file removed), one the
/// file dropped is closed, a unix socket's `chmod`/`chown` are applied again.
/// A new address that cannot be bound keeps the inherited listener, with an
/// error in the log: the programs are this image's now, and it must serve.
/// A socket new to the file that cannot be bound is left out, logged.
fn inherit_sockets(config: &Config, state: &handover::State) -> Sockets {
    let mut sockets = Sockets::default();
    let take = |fd: Option<std::os::fd::RawFd>| {
        // SAFETY: the state names these descriptors for this image alone.
        fd.and_then(|fd| unsafe { handover::take_fd(fd) })
    };
    if let Some(fd) = take(state.unix_listener) {
        let listener = std::os::unix::net::UnixListener::from(fd);
        // The socket is bound at a temporary name and linked into place, so
        // its own address is not the path it serves: the state says that.
        let served = state
            .unix_path
            .clone()
            .or_else(|| config.unix_http_server.as_ref().map(|settings| settings.file.clone()));
        match (&config.unix_http_server, served) {
            (Some(settings), Some(path)) if path == settings.file => {
                match UnixSocket::inherited(&settings.file, listener) {
                    Ok(socket) => {
                        if let Err(err) = listen::apply_unix_mode(settings) {
                            tracing::error!("{err}");
                        }
                        sockets.unix = Some(socket);
                    }
                    // Its file is gone: bound again below.
                    Err(err) => tracing::error!("{err}; binding the control socket again"),
                }
            }
            (settings, Some(path)) => {
                let inherited = match UnixSocket::inherited(&path, listener) {
                    Ok(inherited) => Some(inherited),
                    Err(err) => {
                        tracing::warn!("{err}");
                        None
                    }
                };
                match settings.as_ref().map(listen::bind_unix).transpose() {
                    Ok(bound) => {
                        if let Some(bound) = &bound {
                            tracing::info!(
                                "the control socket moved from {} to {}",
                                path.display(),
                                bound.path().display()
                            );
                        } else {
                            tracing::info!("the control socket {} is closed", path.display());
                        }
                        if let Some(Err(err)) = inherited.as_ref().map(UnixSocket::remove) {
                            tracing::warn!("cannot remove {}: {err}", path.display());
                        }
                        sockets.unix = bound;
                    }
                    Err(err) => {
                        tracing::error!(
                            critical = true,
                            "{err}; still serving the control socket {}",
                            path.display()
                        );
                        sockets.unix = inherited;
                    }
                }
            }
            // Not a socket with a path: nothing to keep.
            (_, None) => {}
        }
    }
    if let Some(fd) = take(state.inet_listener) {
        let listener = std::net::TcpListener::from(fd);
        let bound_at = listener.local_addr().ok();
        let wanted = config.inet_http_server.as_ref();
        let same = |settings: &vigil_config::InetHttpServer| {
            bound_at.is_some_and(|at| {
                at.port() == settings.port && listen::same_host(&settings.host, at.ip())
            })
        };
        match wanted {
            Some(settings) if same(settings) => sockets.inet = Some(listener),
            Some(settings) => match listen::bind_inet(settings) {
                Ok(bound) => {
                    tracing::info!(
                        "the inet control listener moved from {} to {}:{}",
                        bound_at.map_or_else(String::new, |at| at.to_string()),
                        settings.host,
                        settings.port
                    );
                    sockets.inet = Some(bound);
                }
                Err(err) => {
                    tracing::error!(critical = true, "{err}; still listening where it was");
                    sockets.inet = Some(listener);
                }
            },
            None => tracing::info!("the inet control listener is closed"),
        }
    }
    // A socket the config has but the old image had not (it was added to the
    // file meanwhile) is bound as at startup, or left out: a fresh start
    // would refuse it, but these programs must not lose their supervisor.
    let not_bound = |err: listen::ListenError| {
        tracing::error!(critical = true, "{err}; not served until vigild binds it again");
    };
    if let (Some(settings), None) = (&config.unix_http_server, &sockets.unix) {
        sockets.unix = listen::bind_unix(settings).map_err(not_bound).ok();
    }
    if let (Some(settings), None) = (&config.inet_http_server, &sockets.inet) {
        sockets.inet = listen::bind_inet(settings).map_err(not_bound).ok();
    }
    sockets
}

fn bind_sockets(config: &Config) -> Result<Sockets, listen::ListenError> {
    let mut sockets = Sockets::default();
    if let Some(unix) = &config.unix_http_server {
        sockets.unix = Some(listen::bind_unix(unix)?);
        if unix.auth.is_none() {
            tracing::error!(
                critical = true,
                "Server 'unix_http_server' running without any HTTP authentication checking"
            );
        }
    }
    if let Some(inet) = &config.inet_http_server {
        match listen::bind_inet(inet) {
            Ok(listener) => sockets.inet = Some(listener),
            Err(err) => {
                sockets.remove();
                return Err(err);
            }
        }
        if inet.auth.is_none() {
            tracing::error!(
                critical = true,
                "Server 'inet_http_server' running without any HTTP authentication checking"
            );
        }
    }
    Ok(sockets)
}

/// Forwards connections to the current tree's dispatcher, which changes when a
/// reload rebuilds the tree while the sockets stay open.
struct SwitchDispatch {
    current: RwLock<Arc<dyn Dispatch>>,
}

impl SwitchDispatch {
    fn current(&self) -> Arc<dyn Dispatch> {
        Arc::clone(&self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn set(&self, dispatch: Arc<dyn Dispatch>) {
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = dispatch;
    }
}

impl Dispatch for SwitchDispatch {
    fn serve_http(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()> {
        self.current().serve_http(connection, peer)
    }

    fn serve_tarpc(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()> {
        self.current().serve_tarpc(connection, peer)
    }

    fn handing_over(&self) {
        self.current().handing_over();
    }
}

impl<T: Tree> Daemon<T> {
    /// The settings the activity log should have for `config`. Echoing to stdout
    /// needs a terminal we still own, i.e. the first run's `nodaemon` too.
    fn log_settings(&self, config: &Config) -> LogSettings {
        let mut settings = LogSettings::from_config(&config.supervisord);
        settings.echo_stdout &= self.config.supervisord.nodaemon;
        settings
    }

    async fn serve<B: Backend<Tree = T>>(
        &mut self,
        backend: &B,
        main_log: MainLog,
        listeners: Listeners,
        readiness: Readiness,
        notifier: Notifier,
        gap: Option<EarlyGap<T>>,
    ) -> i32 {
        let pid1 = crate::signals::is_pid1();
        // Handlers first: a signal during startup is then queued, not fatal.
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(err) => {
                let message = format!("cannot install signal handlers: {err}");
                tracing::error!(critical = true, "{message}");
                readiness.failed(exit_code::FAILURE as u8, &format!("Error: {message}"));
                return exit_code::FAILURE;
            }
        };
        let (control, mut requests) = DaemonControl::new();
        let counters = match &self.inherited {
            Some(inherited) => counters_from(&inherited.state),
            None => DaemonCounters::default(),
        };
        let context = TreeContext {
            main_log: main_log.clone(),
            control,
            pid1,
            source: self.source.clone(),
            notifier: notifier.clone(),
            counters: Arc::new(counters),
        };
        let adopting = self.inherited.is_some();
        let (stop_serving, mut handover) = match &gap {
            Some(gap) => (gap.stop.clone(), gap.handover.clone()),
            None => (CancellationToken::new(), CancellationToken::new()),
        };
        let mut servers = tokio::task::JoinSet::new();
        // A live upgrade has served the inherited listeners since it read its
        // state (`Early`), answering from the carried records while the config
        // loads, the children are adopted and the tree is built (`gap.rs`);
        // other calls wait for the tree. The listeners as the config settled
        // them take over from here.
        let mut early = None;
        let mut registering = self.adopting.take();
        if let Some(gap) = gap {
            let EarlyGap { switch, open, release, servers: mut early_servers, since, .. } = gap;
            release.cancel();
            servers.spawn(async move { while early_servers.join_next().await.is_some() {} });
            let served =
                serve_listeners(&listeners, &switch, &stop_serving, &handover, None, &mut servers);
            early = Some((switch, open, served));
            tracing::debug!(
                "serving the control sockets from the carried state (since {} ms)",
                since.elapsed().as_millis()
            );
        }
        // The recorded children are this daemon's own after a live upgrade.
        let ledger = crate::survivors::recover(&self.config.supervisord, !adopting).await;
        let mut first_config = std::borrow::Cow::Borrowed(&self.config);
        if let Some(inherited) = &self.inherited {
            adopt(&inherited.state, &inherited.records, registering.take());
            // The AUTO logs in the child log directory are in use.
            first_config.to_mut().supervisord.nocleanup = true;
        }
        let started = backend.start_tree(&first_config, &context).await;
        drop(first_config);
        if adopting {
            stop_unclaimed();
        }
        let mut tree = match started {
            Ok(tree) => tree,
            Err(err) => {
                let message = format!("cannot start the supervision tree: {err}");
                tracing::error!(critical = true, "{message}");
                readiness.failed(exit_code::FAILURE as u8, &format!("Error: {message}"));
                // The calls held for the tree end with an error.
                drop(early);
                stop_serving.cancel();
                while servers.join_next().await.is_some() {}
                return exit_code::FAILURE;
            }
        };
        // From here on only the daemon-wide sections are read (the socket
        // settings, for the reload warning); the tree and the config actor hold
        // the programs, and a third copy would cost about 1 KB per program.
        self.config.groups = Vec::new();
        let recorder = ledger.and_then(crate::survivors::Ledger::record);
        let (switch, served) = match early {
            Some((switch, open, served)) => {
                switch.set(tree.dispatch());
                open(&tree);
                tracing::debug!("the supervision tree serves the control sockets");
                (switch, served)
            }
            None => {
                let switch = Arc::new(SwitchDispatch { current: RwLock::new(tree.dispatch()) });
                let served = serve_listeners(
                    &listeners,
                    &switch,
                    &stop_serving,
                    &handover,
                    None,
                    &mut servers,
                );
                (switch, served)
            }
        };
        if let Err(err) = served {
            let message = format!("cannot serve the control socket: {err}");
            tracing::error!(critical = true, "{message}");
            tree.shutdown().await;
            readiness.failed(exit_code::FAILURE as u8, &format!("Error: {message}"));
            stop_serving.cancel();
            while servers.join_next().await.is_some() {}
            return exit_code::FAILURE;
        }
        readiness.ready();
        notifier.ready();
        let watchdog = notifier.spawn_watchdog();

        // What an upgrade request asks for, until the loop acts on it below.
        let mut upgrade_request = None;
        let code = loop {
            let next = tokio::select! {
                received = signals.recv() => received,
                Some(requested) = requests.recv() => match requested {
                    Request::Signal(signal) => signal,
                    Request::Fatal { reason, code } => {
                        tracing::error!(critical = true, "shutting down: {reason}");
                        break code;
                    }
                    Request::Upgrade { binary, reply } => {
                        upgrade_request = Some((binary, reply));
                        DaemonSignal::Upgrade
                    }
                },
            };
            match next {
                DaemonSignal::Shutdown(_) => {
                    tracing::warn!("{}", next.log_message());
                    break exit_code::OK;
                }
                DaemonSignal::ReopenLogs => {
                    tracing::info!("{}", next.log_message());
                    if let Err(err) = main_log.reopen() {
                        tracing::error!("cannot reopen the activity log: {err}");
                    }
                    tree.reopen_logs().await;
                }
                DaemonSignal::Upgrade => {
                    let (binary, reply) = upgrade_request.take().unwrap_or_else(|| {
                        tracing::warn!("{}", next.log_message());
                        // Asked for by a signal: a call asking meanwhile is refused.
                        context.control.upgrading.store(true, std::sync::atomic::Ordering::SeqCst);
                        (None, None)
                    });
                    let upgrade = Upgrade {
                        binary,
                        reply,
                        listeners: &listeners,
                        args: &self.args,
                        service_env: &self.service_env,
                        pidfile: self.pidfile.as_deref(),
                    };
                    let serving = Serving {
                        switch: &switch,
                        stop: &stop_serving,
                        handover: &mut handover,
                        servers: &mut servers,
                    };
                    upgrade.run(&tree, serving, &context.counters, &self.source).await;
                    // Still here: the upgrade was refused or failed.
                    context.control.upgrade_ended();
                }
                DaemonSignal::Reload => {
                    tracing::warn!("{}", next.log_message());
                    // READY=1 when dropped: after the new tree, or at once when
                    // the configuration is refused and the old tree stays.
                    let reloading = notifier.reload_guard();
                    let loaded = match self.source.load(|path, env| backend.load(path, env)) {
                        Ok(loaded) => loaded,
                        Err(error) => {
                            // Bad input changes nothing: keep the running tree.
                            for message in error.messages() {
                                tracing::error!("{message}");
                            }
                            tracing::error!(
                                "configuration not reloaded; still running the previous one"
                            );
                            continue;
                        }
                    };
                    for warning in &loaded.warnings {
                        tracing::warn!("{warning}");
                    }
                    if loaded.config.unix_http_server != self.config.unix_http_server
                        || loaded.config.inet_http_server != self.config.inet_http_server
                    {
                        tracing::warn!(
                            "control socket settings changed; they take effect when vigild is restarted or upgraded (vigilctl upgrade)"
                        );
                    }
                    tree.shutdown().await;
                    if let Err(err) = main_log.reconfigure(self.log_settings(&loaded.config)) {
                        tracing::error!(
                            "cannot reopen the activity log with the new settings: {err}"
                        );
                    }
                    match backend.start_tree(&loaded.config, &context).await {
                        Ok(new_tree) => {
                            switch.set(new_tree.dispatch());
                            tree = new_tree;
                            context.counters.config_changed(true);
                            drop(reloading);
                        }
                        Err(err) => {
                            tracing::error!(
                                critical = true,
                                "cannot restart the supervision tree: {err}"
                            );
                            notifier.stopping();
                            stop_serving.cancel();
                            while servers.join_next().await.is_some() {}
                            return exit_code::FAILURE;
                        }
                    }
                }
            }
        };
        notifier.stopping();
        // Keep serving while the tree stops, so clients can watch it happen
        // (and keep the watchdog fed: a long stop is not a hang).
        tree.shutdown_to_exit().await;
        if let Some(recorder) = recorder {
            recorder.finish().await;
        }
        stop_serving.cancel();
        while servers.join_next().await.is_some() {}
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        code
    }
}

/// The counters a live upgrade carried.
fn counters_from(state: &handover::State) -> DaemonCounters {
    use std::sync::atomic::AtomicU64;
    DaemonCounters {
        started: std::time::UNIX_EPOCH + Duration::from_millis(state.started_unix_ms),
        reloads: AtomicU64::new(state.reloads),
        generation: AtomicU64::new(state.generation),
        upgrades: AtomicU64::new(state.upgrades),
    }
}

/// A refused upgrade: waits for the registering thread and leaves what it
/// registered to the old image, and the descriptors it took too (forgotten,
/// not closed: the old image, executed again, reads them).
fn forget_registered(adopting: Option<Adopting>) {
    if let Some(adopting) = adopting
        && let Ok(Ok(registered)) = adopting.join()
    {
        std::mem::forget(registered.offers);
    }
}

/// What [`register`] made of the carried records.
struct Registered {
    reaper: vigil_core::Reaper,
    /// Each record with its child's exit and its descriptors.
    offers: vigil_core::handover::Offers,
    /// Why a record's child was not registered, for the activity log.
    lost: Vec<String>,
}

/// Starts the reaper, paused, with every carried child registered before it
/// looks at any (so an exit during the gap, a zombie now, is reported to its
/// process actor), and makes each record what its process actor adopts:
/// the work of offering the records, done before the config has loaded.
/// The descriptors are taken as they are ([`handover::own_fd`]): a refused
/// upgrade executes the old image again, which needs them. `records` gives
/// the records once the caller has them shared; `pids` are registered
/// meanwhile.
fn register(
    pids: &[u32],
    pidfds: Vec<(u32, std::os::fd::RawFd)>,
    records: impl FnOnce() -> Option<Records>,
) -> std::io::Result<Registered> {
    let mut pidfds: std::collections::HashMap<u32, std::os::fd::RawFd> =
        pidfds.into_iter().collect();
    let children = pids
        .iter()
        .map(|&pid| vigil_core::InheritedChild {
            pid,
            // SAFETY: the state names these descriptors for this image alone.
            pidfd: pidfds.remove(&pid).and_then(|fd| unsafe { handover::own_fd(fd) }),
        })
        .collect();
    let (reaper, adopted) = vigil_core::Reaper::start_adopting_paused(true, children)?;
    let records = records().ok_or_else(|| std::io::Error::other("the records never came"))?;
    let records = &records;
    let mut adopted = adopted.into_iter();
    let own = |fd: &i32| {
        // SAFETY: the state names these descriptors for this image alone.
        unsafe { handover::own_fd(*fd) }
    };
    let mut offers = Vec::with_capacity(records.len());
    let mut lost = Vec::new();
    for (at, record) in records.iter().enumerate() {
        let exit = record.lifecycle.pid.and_then(|pid| match adopted.next()? {
            Ok(exit) => Some(exit),
            Err(err) => {
                let namespec = &record.namespec;
                lost.push(format!(
                    "{namespec}: pid {pid} is not a child of vigild any more ({err})"
                ));
                None
            }
        });
        let Some(shared) = vigil_core::handover::SharedRecord::new(Arc::clone(records), at) else {
            continue;
        };
        offers.push(vigil_core::handover::Adoptable {
            record: shared,
            exit,
            stdin: record.stdin_fd.as_ref().and_then(own),
            stdout: record.stdout_fds.iter().filter_map(own).collect(),
            stderr: record.stderr_fds.iter().filter_map(own).collect(),
            notify: record.notify.as_ref().and_then(|notify| own(&notify.fd)),
        });
    }
    Ok(Registered { reaper, offers: offers.into_iter().collect(), lost })
}

/// Offers the records [`register`] made (on its thread, or here if that did
/// not start) to the tree about to be built, and lets the reaper collect.
fn adopt(state: &handover::State, records: &Records, registering: Option<Adopting>) {
    let registered = match registering {
        Some(registering) => registering
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the registering thread panicked"))),
        None => {
            register(&carried_pids(records), state.pidfds.clone(), || Some(Arc::clone(records)))
        }
    };
    let Registered { reaper, offers, lost } = match registered {
        Ok(registered) => registered,
        Err(err) => {
            tracing::error!(critical = true, "cannot start the child reaper: {err}");
            return;
        }
    };
    // This image keeps them now: nothing it inherited may reach a child.
    vigil_core::close_on_exec_from(3);
    for why in lost {
        tracing::error!(critical = true, "{why}");
    }
    let take = |fd: &i32| {
        // SAFETY: the state names these descriptors for this image alone.
        unsafe { handover::take_fd(*fd) }
    };
    tracing::info!("resuming {} processes handed over by the previous image", offers.len());
    vigil_core::handover::offer(offers);
    let pipes = state.events.pools.iter().flat_map(|pool| &pool.members);
    let pipes = pipes.filter_map(|m| m.stdout_fd).filter_map(|fd| Some((fd, take(&fd)?)));
    vigil_core::handover::offer_events(state.events.clone(), pipes.collect());
    let sockets = state.sockets.iter().filter_map(|s| Some((s.clone(), take(&s.fd)?)));
    vigil_core::handover::offer_sockets(sockets.collect());
    // Registered paused (see `Adopting`): what exited in the gap is
    // delivered now, to the offered records.
    reaper.resume_reaping();
}

/// The pids of the carried processes that have a child.
fn carried_pids(records: &[CarriedProcess]) -> Vec<u32> {
    records.iter().filter_map(|p| p.lifecycle.pid).collect()
}

/// Kills the children of carried processes the new config no longer has.
fn stop_unclaimed() {
    for left in vigil_core::handover::unclaimed() {
        let Some(pid) = left.record.lifecycle.pid else { continue };
        tracing::error!(
            critical = true,
            "{} is not in the configuration any more: killing its process (pid {pid})",
            left.record.namespec
        );
        if let Some(reaper) = vigil_core::Reaper::running()
            && !matches!(reaper.signal(pid, libc::SIGKILL, true), Ok(true))
        {
            let _ = reaper.signal(pid, libc::SIGKILL, false);
        }
    }
}

/// Serves a copy of each listener; the originals stay open, so the
/// listening sockets outlive the servers (and their backlog keeps new
/// connections) when a live upgrade ends them with `handover`.
/// `release`, when given, stops their accepting early (see
/// [`listen::serve_until_released`]).
fn serve_listeners(
    listeners: &Listeners,
    switch: &Arc<SwitchDispatch>,
    stop: &CancellationToken,
    handover: &CancellationToken,
    release: Option<&CancellationToken>,
    servers: &mut tokio::task::JoinSet<()>,
) -> std::io::Result<()> {
    let unix = listeners.unix.as_ref().map(|l| l.try_clone().and_then(Listener::from_std_unix));
    let inet = listeners.inet.as_ref().map(|l| l.try_clone().and_then(Listener::from_std_tcp));
    for listener in [unix, inet].into_iter().flatten() {
        let dispatch: Arc<dyn Dispatch> = Arc::clone(switch) as Arc<dyn Dispatch>;
        servers.spawn(listen::serve_until_released(
            listener?,
            dispatch,
            stop.clone(),
            handover.clone(),
            release.cloned().unwrap_or_default(),
        ));
    }
    Ok(())
}

/// The control servers, as a live upgrade stops and (if it is refused late)
/// restarts them.
struct Serving<'a> {
    switch: &'a Arc<SwitchDispatch>,
    stop: &'a CancellationToken,
    handover: &'a mut CancellationToken,
    servers: &'a mut tokio::task::JoinSet<()>,
}

/// One live upgrade request.
struct Upgrade<'a> {
    binary: Option<PathBuf>,
    reply: Option<oneshot::Sender<Result<String, String>>>,
    listeners: &'a Listeners,
    args: &'a [OsString],
    service_env: &'a [(String, String)],
    pidfile: Option<&'a Path>,
}

impl Upgrade<'_> {
    /// Checks the new binary, answers, stops accepting connections, freezes
    /// the tree and executes the new binary. Returns only if the upgrade was
    /// refused before anything changed; exits if it fails after.
    async fn run<T: Tree>(
        self,
        tree: &T,
        serving: Serving<'_>,
        counters: &DaemonCounters,
        source: &ConfigSource,
    ) {
        let Upgrade { binary, mut reply, listeners, args, service_env, pidfile } = self;
        let (config, launch_dir) = (source.path.as_path(), source.cwd.as_path());
        let mut answer = |result: Result<String, String>| {
            if let Err(why) = &result {
                tracing::error!("upgrade refused: {why}");
            }
            if let Some(reply) = reply.take() {
                let _ = reply.send(result);
            }
        };
        let Some(binary) = binary.or_else(own_binary) else {
            return answer(Err("cannot tell the path of the running vigild".to_owned()));
        };
        let handover::Checked { line: checked, config: carried } =
            match handover::preflight(&binary, config).await {
                Ok(checked) => checked,
                Err(why) => return answer(Err(why)),
            };
        if let Some(why) = tree.handover_refusal() {
            return answer(Err(why));
        }
        // The descriptors the handover needs, before anything changes.
        let memfd = match handover::create() {
            Ok(memfd) => memfd,
            Err(err) => return answer(Err(format!("cannot make the handover state: {err}"))),
        };
        // The way back if the new binary refuses the state after all.
        let exe = match std::fs::File::open("/proc/self/exe") {
            Ok(exe) => exe,
            Err(err) => return answer(Err(format!("cannot open the running vigild: {err}"))),
        };
        // While the servers still answer: the last refusals, then the output
        // captures stop (what they give back is most of a freeze's work).
        if let Err(why) = tree.begin_handover().await {
            return answer(Err(why));
        }
        tracing::warn!("upgrading to {}: {checked}", binary.display());
        // New connections wait in the listening sockets' backlog from here;
        // first, so that the caller's next connection reaches the new image
        // (the answer goes out over the connection already open).
        serving.handover.cancel();
        answer(Ok(checked));
        while serving.servers.join_next().await.is_some() {}
        tracing::debug!("the control servers ended; freezing the processes");
        // An exit from here on waits, a zombie, for the image that reports it.
        let reaper = vigil_core::Reaper::running();
        if let Some(reaper) = &reaper {
            reaper.pause_reaping();
        }
        let frozen = match tree.hand_over().await {
            Ok(frozen) => frozen,
            Err(why) => {
                tracing::error!("upgrade refused: {why}");
                if let Some(reaper) = &reaper {
                    reaper.resume_reaping();
                }
                *serving.handover = CancellationToken::new();
                let restarted = serve_listeners(
                    listeners,
                    serving.switch,
                    serving.stop,
                    serving.handover,
                    None,
                    serving.servers,
                );
                if let Err(err) = restarted {
                    tracing::error!(critical = true, "cannot serve the control socket: {err}");
                }
                return;
            }
        };
        tracing::debug!("{} processes frozen", frozen.processes.len());
        let control = tree.control();
        let image = NextImage {
            binary: &binary,
            args,
            memfd,
            exe,
            carried,
            service_env,
            control,
            pidfile,
            launch_dir,
        };
        let why = image.exec(listeners, frozen, counters);
        tracing::error!(critical = true, "live upgrade failed: {why}");
        std::process::exit(exit_code::FAILURE);
    }
}

/// The path vigild was executed from; after a package replaced the file, the
/// new file at the same path.
fn own_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let text = exe.to_str()?;
    Some(PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(text)))
}

/// After a live upgrade whose file moved the pidfile (or dropped it): the
/// previous image's file, if it still names this daemon, and its record of
/// children (see `survivors`) are removed, so neither outlives the daemon
/// naming a pid that may be another process's by then.
fn retire_moved_pidfile(previous: Option<&Path>, current: Option<&Path>) {
    let Some(previous) = previous.filter(|previous| Some(*previous) != current) else { return };
    match Pidfile::existing(previous).remove() {
        Ok(true) => tracing::info!("removed the previous pidfile {}", previous.display()),
        Ok(false) => {}
        Err(err) => {
            tracing::warn!("could not remove the previous pidfile {}: {err}", previous.display())
        }
    }
    crate::survivors::forget(&previous.with_extension("state"));
}

/// What the next image of a live upgrade is started with.
struct NextImage<'a> {
    binary: &'a Path,
    args: &'a [OsString],
    memfd: std::fs::File,
    /// The running executable, for the way back.
    exe: std::fs::File,
    /// The configuration the pre-flight loaded (`carry.rs`).
    carried: Option<std::fs::File>,
    service_env: &'a [(String, String)],
    control: handover::CarriedControl,
    pidfile: Option<&'a Path>,
    launch_dir: &'a Path,
}

impl NextImage<'_> {
    /// Writes the state, keeps what it names open and executes the binary
    /// (or, if that fails, the running image again). Returns only when both
    /// fail, saying why.
    fn exec(
        self,
        listeners: &Listeners,
        frozen: vigil_core::handover::Handover,
        counters: &DaemonCounters,
    ) -> String {
        use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd};
        use std::sync::atomic::Ordering;
        // The records move into the state; their descriptors stay open here
        // until `execve`.
        let vigil_core::handover::Handover { processes, events, sockets, fds } = frozen;
        let mut records = Vec::with_capacity(processes.len());
        let mut process_fds = Vec::with_capacity(processes.len() * 3);
        for vigil_core::handover::Frozen { record, fds } in processes {
            records.push(*record);
            process_fds.extend(fds);
        }
        // Freeing this image is left to a helper, so `execve` does not wait
        // for it; without one (clone refused) `execve` does it.
        let teardown = crate::teardown::Teardown::start()
            .inspect_err(|err| tracing::warn!("no helper to free this image after execve: {err}"))
            .ok();
        // Open while the reaper is paused, as it is from before the freeze.
        let pidfds =
            vigil_core::Reaper::running().map(|reaper| reaper.pidfds()).unwrap_or_default();
        let started = counters.started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let state = handover::State {
            from_version: env!("CARGO_PKG_VERSION").to_owned(),
            unix_listener: listeners.unix.as_ref().map(|l| l.as_raw_fd()),
            unix_path: listeners.unix_path.clone(),
            inet_listener: listeners.inet.as_ref().map(|l| l.as_raw_fd()),
            started_unix_ms: u64::try_from(started.as_millis()).unwrap_or(u64::MAX),
            reloads: counters.reloads.load(Ordering::Relaxed),
            generation: counters.generation.load(Ordering::Relaxed),
            upgrades: counters.upgrades.load(Ordering::Relaxed) + 1,
            service_env: self.service_env.to_vec(),
            control: self.control.clone(),
            pidfile: self.pidfile.map(Path::to_owned),
            launch_dir: self.launch_dir.to_owned(),
            processes: records,
            events,
            sockets,
            config: self.carried.as_ref().map(|carried| carried.as_raw_fd()),
            pidfds,
            teardown: crate::teardown::pending()
                .into_iter()
                .chain(teardown.as_ref().map(crate::teardown::Teardown::pid))
                .collect(),
        };
        let (binary, args, memfd, exe) = (self.binary, self.args, &self.memfd, &self.exe);
        let mut keep = vec![memfd.as_fd(), exe.as_fd()];
        keep.extend(self.carried.as_ref().map(|carried| carried.as_fd()));
        keep.extend(listeners.unix.as_ref().map(|l| l.as_fd()));
        keep.extend(listeners.inet.as_ref().map(|l| l.as_fd()));
        keep.extend(process_fds.iter().map(|fd| fd.as_fd()));
        keep.extend(fds.iter().map(|fd| fd.as_fd()));
        // SAFETY: the reaper's watches hold these open until `execve`: no
        // child is reaped while reaping is paused.
        keep.extend(state.pidfds.iter().map(|&(_, fd)| unsafe { BorrowedFd::borrow_raw(fd) }));
        let keep_all = || {
            keep.iter().try_for_each(|&fd| {
                handover::keep_across_exec(fd)
                    .map_err(|err| format!("cannot keep descriptor {}: {err}", fd.as_raw_fd()))
            })
        };
        // A system call per descriptor, three per program: on a thread of
        // its own while the state is encoded.
        let (written, kept) = handover::alongside(|| handover::write(memfd, &state), keep_all);
        if let Err(err) = written {
            return format!("cannot write the handover state: {err}");
        }
        if let Err(why) = kept {
            return why;
        }
        tracing::info!(
            "executing {} with {} processes handed over (live upgrade)",
            binary.display(),
            state.processes.len()
        );
        let err = handover::exec(binary, args, memfd.as_raw_fd(), Some(exe.as_raw_fd()));
        let why = format!("cannot execute {}: {err}", binary.display());
        tracing::error!(critical = true, "{why}; executing the running vigild again");
        let err = handover::exec_back(exe.as_fd(), args, memfd.as_raw_fd(), &why, None);
        format!("{why}; cannot execute the running vigild again either: {err}")
    }
}
