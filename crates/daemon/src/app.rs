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
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vigil_config::{Config, Diagnostic, LogTarget};

pub use crate::config_source::{ConfigSource, LoadError, LoadedConfig};
use crate::daemonize::{self, Limit, Pidfile, Privileges, Readiness};
use crate::flags::{EarlyExit, Flags, usage_error};
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
}

/// A request queued by [`DaemonControl`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Signal(DaemonSignal),
    Fatal { reason: String, code: i32 },
}

impl DaemonControl {
    fn new() -> (DaemonControl, mpsc::UnboundedReceiver<Request>) {
        let (requests, receiver) = mpsc::unbounded_channel();
        (DaemonControl { requests }, receiver)
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
}

impl Default for DaemonCounters {
    fn default() -> DaemonCounters {
        DaemonCounters {
            started: std::time::SystemTime::now(),
            reloads: std::sync::atomic::AtomicU64::new(0),
            generation: std::sync::atomic::AtomicU64::new(1),
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
    /// Builds and starts the tree (autostart programs in priority order).
    fn start_tree(
        &self,
        config: &Config,
        context: &TreeContext,
    ) -> impl Future<Output = Result<Self::Tree, String>> + Send;
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

enum Prepared {
    Exit(i32),
    Run(Box<Daemon>),
}

/// Everything decided before the first file is created.
struct Daemon {
    source: ConfigSource,
    config: Config,
    warnings: Vec<String>,
}

fn prepare<B: Backend>(
    backend: &B,
    args: impl IntoIterator<Item = OsString>,
) -> Result<Prepared, i32> {
    let flags = match Flags::parse_from(args) {
        Ok(flags) => flags,
        Err(EarlyExit::Print(text)) => {
            print!("{text}");
            return Ok(Prepared::Exit(exit_code::OK));
        }
        Err(EarlyExit::Usage(message)) => return Err(usage(&message)),
    };
    let cwd = std::env::current_dir()
        .map_err(|err| usage(&format!("cannot determine the current directory: {err}")))?;
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
    let loaded = match source.load(|path, env| backend.load(path, env)) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(errors)) => {
            for error in &errors {
                eprintln!("Error: {error}");
            }
            if !source.flags.check {
                eprintln!("For help, use {} -h", crate::flags::PROGRAM);
            }
            return Err(exit_code::USAGE);
        }
        Err(LoadError::Flags(message)) => return Err(usage(&message)),
    };
    if source.flags.check {
        for warning in &loaded.warnings {
            eprintln!("warning: {warning}");
        }
        print!("{}", backend.summary(&loaded.config));
        return Ok(Prepared::Exit(exit_code::OK));
    }
    Ok(Prepared::Run(Box::new(Daemon { source, config: loaded.config, warnings: loaded.warnings })))
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

impl Daemon {
    fn run<B: Backend>(mut self, backend: &B) -> i32 {
        let settings = self.config.supervisord.clone();
        let privileges = match daemonize::drop_privileges(settings.user.as_ref()) {
            Ok(privileges) => privileges,
            Err(message) => return usage(&message),
        };
        let mut notes = Vec::new();
        for (limit, minimum) in
            [(Limit::Files, settings.minfds), (Limit::Processes, settings.minprocs)]
        {
            match daemonize::ensure_limit(limit, minimum) {
                Ok(Some(note)) => notes.push(note),
                Ok(None) => {}
                Err(message) => return usage(&message),
            }
        }
        let main_log = match MainLog::open(LogSettings::from_config(&settings)) {
            Ok(log) => log,
            Err(err) => {
                let target = match &settings.logfile {
                    LogTarget::Path(path) => path.display().to_string(),
                    other => format!("{other:?}"),
                };
                return usage(&format!("cannot open the activity log {target}: {err}"));
            }
        };
        if let Err(err) = logging::install(main_log.clone()) {
            eprintln!("Error: cannot install the activity log: {err}");
            return exit_code::FAILURE;
        }
        // SAFETY: still one thread: the runtime is built after daemonizing.
        let notifier = unsafe { Notifier::take_from_env() };
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
        match (&privileges, &settings.user) {
            (Privileges::RootWithoutUser, _) => {
                tracing::error!(critical = true, "{}", daemonize::ROOT_WITHOUT_USER);
            }
            (Privileges::Dropped, Some(user)) => {
                tracing::info!("Set uid to user {} succeeded", user.uid);
            }
            _ => {}
        }
        if !settings.nocleanup {
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
        let mut sockets = match bind_sockets(&self.config) {
            Ok(sockets) => sockets,
            Err(err) => {
                tracing::error!(critical = true, "{err}");
                return usage(&err.to_string());
            }
        };
        let readiness = if settings.nodaemon {
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
        tracing::info!("supervisord started with pid {}", std::process::id());

        let code = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(BLOCKING_THREADS)
            .build()
        {
            Ok(runtime) => {
                let listeners = Listeners {
                    unix: sockets.unix.as_mut().and_then(UnixSocket::take_listener),
                    inet: sockets.inet.take(),
                };
                let code =
                    runtime.block_on(self.serve(backend, main_log, listeners, readiness, notifier));
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
    inet: Option<std::net::TcpListener>,
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
}

impl Daemon {
    /// The settings the activity log should have for `config`. Echoing to stdout
    /// needs a terminal we still own, i.e. the first run's `nodaemon` too.
    fn log_settings(&self, config: &Config) -> LogSettings {
        let mut settings = LogSettings::from_config(&config.supervisord);
        settings.echo_stdout &= self.config.supervisord.nodaemon;
        settings
    }

    async fn serve<B: Backend>(
        &mut self,
        backend: &B,
        main_log: MainLog,
        listeners: Listeners,
        readiness: Readiness,
        notifier: Notifier,
    ) -> i32 {
        let pid1 = crate::signals::is_pid1();
        // Handlers first: a signal during startup is then queued, not fatal.
        let mut signals = match Signals::install(pid1) {
            Ok(signals) => signals,
            Err(err) => {
                let message = format!("cannot install signal handlers: {err}");
                tracing::error!(critical = true, "{message}");
                readiness.failed(exit_code::FAILURE as u8, &format!("Error: {message}"));
                return exit_code::FAILURE;
            }
        };
        let (control, mut requests) = DaemonControl::new();
        let context = TreeContext {
            main_log: main_log.clone(),
            control,
            pid1,
            source: self.source.clone(),
            notifier: notifier.clone(),
            counters: Arc::new(DaemonCounters::default()),
        };
        let ledger = crate::survivors::recover(&self.config.supervisord).await;
        let mut tree = match backend.start_tree(&self.config, &context).await {
            Ok(tree) => tree,
            Err(err) => {
                let message = format!("cannot start the supervision tree: {err}");
                tracing::error!(critical = true, "{message}");
                readiness.failed(exit_code::FAILURE as u8, &format!("Error: {message}"));
                return exit_code::FAILURE;
            }
        };
        // From here on only the daemon-wide sections are read (the socket
        // settings, for the reload warning); the tree and the config actor hold
        // the programs, and a third copy would cost about 1 KB per program.
        self.config.groups = Vec::new();
        let recorder = ledger.and_then(crate::survivors::Ledger::record);
        let switch = Arc::new(SwitchDispatch { current: RwLock::new(tree.dispatch()) });
        let stop_serving = CancellationToken::new();
        let mut servers = tokio::task::JoinSet::new();
        let converted = [
            listeners.unix.map(Listener::from_std_unix),
            listeners.inet.map(Listener::from_std_tcp),
        ];
        for listener in converted.into_iter().flatten() {
            match listener {
                Ok(listener) => {
                    let dispatch: Arc<dyn Dispatch> = Arc::clone(&switch) as Arc<dyn Dispatch>;
                    servers.spawn(listen::serve(listener, dispatch, stop_serving.clone()));
                }
                Err(err) => {
                    let message = format!("cannot serve the control socket: {err}");
                    tracing::error!(critical = true, "{message}");
                    tree.shutdown().await;
                    readiness.failed(exit_code::FAILURE as u8, &format!("Error: {message}"));
                    return exit_code::FAILURE;
                }
            }
        }
        readiness.ready();
        notifier.ready();
        let watchdog = notifier.spawn_watchdog();

        let code = loop {
            let next = tokio::select! {
                received = signals.recv() => received,
                Some(requested) = requests.recv() => match requested {
                    Request::Signal(signal) => signal,
                    Request::Fatal { reason, code } => {
                        tracing::error!(critical = true, "shutting down: {reason}");
                        break code;
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
                DaemonSignal::Ignored(_) => {
                    tracing::trace!(blather = true, "{}", next.log_message());
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
                            "control socket settings changed; they take effect when vigild is restarted"
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
        tree.shutdown().await;
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
