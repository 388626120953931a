//! The production [`Backend`]: vigild's calls into vigil-config's loader,
//! vigil-core's supervision tree and vigil-rpc's server.
//!
//! - Config: vigil-config's search, loader and `--check` summary.
//! - Tree: one [`Reaper`] per daemon (a child subreaper, started on the first
//!   tree and kept across reloads, since it owns every `waitpid` of the
//!   process), a [`Supervisor`] per tree with the daemon's environment and
//!   `SUPERVISOR_SERVER_URL`, and the config actor ([`ConfigControl`]) that
//!   `reread`/`update` go through; its loader reads the config through the
//!   daemon's [`ConfigSource`], as startup and SIGHUP do.
//! - Control: Vigil connections are served by [`ControlServer`] through
//!   vigil-rpc's [`serve_stream_ending`], and HTTP connections by vigil-xmlrpc
//!   over the same [`ControlServer`], each with the credentials of the socket
//!   they came in on.
//!
//! The rest of the daemon depends only on the [`Backend`] and [`Tree`] traits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use vigil_config::{Config, Credentials, Diagnostic, NameSpec};
use vigil_core::{Channel, ConfigControl, Handle, Loader, Reaper, Supervisor, SupervisorOptions};
use vigil_rpc::{SendControl, ServeError, ServerAuth, serve_stream_ending};

use crate::app::{Backend, Carried, ConfigSource, LoadedConfig, Tree, TreeContext};
use crate::config_source::environment;
use crate::gap::{GapServer, ResumingSender};
use crate::handover::CarriedControl;
use crate::listen::{Connection, Dispatch, Peer};
use crate::server::ControlServer;

/// How long vigild as PID 1 waits for leftover processes after SIGTERM before
/// it SIGKILLs them.
const PID1_GRACE: Duration = Duration::from_secs(5);
/// How often it checks whether they are gone.
const PID1_POLL: Duration = Duration::from_millis(50);

/// The real backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wired;

/// What [`Dispatch::handing_over`] moves, one for every dispatch of the
/// daemon's life: a connection the gap's service or an earlier tree accepted
/// is told of the handover too.
static HANDOVER: OnceLock<tokio::sync::watch::Sender<u64>> = OnceLock::new();

/// The gap service's [`ResumingSender`], from [`Wired::carried`] to the
/// [`Wired::start_tree`] that follows it in the same image.
static RESUMING: std::sync::Mutex<Option<ResumingSender>> = std::sync::Mutex::new(None);

fn handover_signal() -> tokio::sync::watch::Sender<u64> {
    HANDOVER.get_or_init(|| tokio::sync::watch::Sender::new(0)).clone()
}

/// The process-wide reaper: started with the first tree, kept across reloads.
static REAPER: OnceLock<Reaper> = OnceLock::new();

fn reaper() -> Result<Reaper, String> {
    if let Some(reaper) = REAPER.get() {
        return Ok(reaper.clone());
    }
    // Before the first spawn (a fresh start raised it before its runtime).
    raise_file_limit();
    // A subreaper adopts the orphans of our children, so a daemonizing
    // grandchild is still reaped (and killed at shutdown as PID 1).
    let reaper =
        Reaper::start(true).map_err(|err| format!("cannot start the child reaper: {err}"))?;
    // Exits then wake the runtime that runs the process actors directly, not
    // the reaper's thread first (a restart's second thread hop).
    if tokio::runtime::Handle::try_current().is_ok() {
        reaper.watch_from_current_runtime();
    }
    Ok(REAPER.get_or_init(|| reaper).clone())
}

/// Room for thousands of programs' pipes and logs, while children keep the
/// limit vigild was started with. Once: a second call changes nothing.
fn raise_file_limit() {
    if let Some((soft, hard)) = crate::daemonize::raise_file_limit() {
        vigil_core::spawn::set_child_file_limit(soft, hard);
    }
}

/// `SUPERVISOR_SERVER_URL` for children: the Unix socket if there is one,
/// else the TCP listener (supervisord's order).
pub fn server_url(config: &Config) -> Option<String> {
    if let Some(unix) = &config.unix_http_server {
        return Some(format!("unix://{}", unix.file.display()));
    }
    config.inet_http_server.as_ref().map(|inet| {
        let host = if inet.host.is_empty() { "localhost" } else { inet.host.as_str() };
        format!("http://{host}:{}", inet.port)
    })
}

fn server_auth(
    section: &str,
    auth: Option<&Credentials>,
) -> Result<Option<Arc<ServerAuth>>, String> {
    auth.map(|credentials| {
        ServerAuth::new(&credentials.username, &credentials.password)
            .map(Arc::new)
            .map_err(|err| format!("[{section}] password: {err}"))
    })
    .transpose()
}

impl Backend for Wired {
    type Tree = CoreTree;

    fn find_config(&self, exe_dir: Option<&Path>, cwd: &Path) -> Result<PathBuf, String> {
        vigil_config::find_config_file(exe_dir, cwd).ok_or_else(|| {
            vigil_config::not_found_message(&vigil_config::search_paths(exe_dir, cwd))
        })
    }

    fn load(
        &self,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<LoadedConfig, Vec<Diagnostic>> {
        let loaded = vigil_config::load(path, env).map_err(|errors| errors.errors)?;
        // A limit this daemon cannot give is refused up front (`--check`,
        // start-up, reread), never run without.
        let refused = cgroup_refusals(&loaded.config);
        if !refused.is_empty() {
            return Err(refused);
        }
        Ok(LoadedConfig {
            config: loaded.config,
            warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
        })
    }

    fn summary(&self, config: &Config) -> String {
        format!("{}\n", vigil_config::summary(config))
    }

    fn carried(
        &self,
        control: &CarriedControl,
        records: vigil_core::handover::Records,
    ) -> Option<Carried<CoreTree>> {
        let view = vigil_core::resuming::CarriedView::new(records);
        // The old image's credentials until the tree's server checks the
        // config's.
        let unix_auth = control.unix_auth.clone().map(Arc::new);
        let inet_auth = control.inet_auth.clone().map(Arc::new);
        let (server, tree, resuming) = GapServer::new(view, control.identification.clone());
        *RESUMING.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(resuming);
        let handover = handover_signal();
        let dispatch = Arc::new(ControlDispatch { server, unix_auth, inet_auth, handover });
        let open = move |built: &CoreTree| {
            tree.send_replace(Some(built.dispatch.server.clone()));
        };
        Some(Carried { dispatch, open: Box::new(open) })
    }

    fn before_runtime(&self, config: &Config) {
        raise_file_limit();
        // The table every program's descriptors will need, grown while it
        // costs nothing (see `size_descriptor_table`); a 64-descriptor start
        // for the daemon's own files and sockets.
        let programs = config.processes().count();
        let wanted = 64 + programs.saturating_mul(crate::daemonize::DESCRIPTORS_PER_PROGRAM);
        let size = crate::daemonize::size_descriptor_table(wanted);
        tracing::debug!("descriptor table sized for {wanted}: {size:?}");
    }

    async fn start_tree(&self, config: &Config, context: &TreeContext) -> Result<CoreTree, String> {
        let unix_auth = server_auth(
            "unix_http_server",
            config.unix_http_server.as_ref().and_then(|s| s.auth.as_ref()),
        )?;
        let inet_auth = server_auth(
            "inet_http_server",
            config.inet_http_server.as_ref().and_then(|s| s.auth.as_ref()),
        )?;
        let reaper = reaper()?;
        let mut options = SupervisorOptions::new(reaper);
        options.daemon_env = environment().into_iter().collect();
        options.server_url = server_url(config);
        options.after_autostart = Some(crate::heap::release);
        // A live upgrade's gap service acts on the groups a call names as
        // soon as they are back (see `gap.rs`).
        let resuming = RESUMING.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(resuming) = resuming {
            options.on_resuming = Some(Arc::new(move |handle| {
                resuming.send_replace(Some(handle));
            }));
            options.hold_resume = crate::handover::resume_hold();
        }
        // The autostart pass runs behind the control server: with thousands of
        // programs, status and stop work while they are still being spawned.
        let handle = Supervisor::start_in_background(config.clone(), options)
            .await
            .map_err(|e| e.to_string())?;
        // What runs: a live upgrade's tree may have left out a group that
        // could not start, which the next `update` then adds.
        let mut running = config.clone();
        running.groups.retain(|group| handle.has_group(&group.name));
        let config_control =
            match ConfigControl::start(handle.clone(), running, loader(context)).await {
                Ok(control) => control,
                Err(error) => {
                    handle.shutdown().await;
                    return Err(error.to_string());
                }
            };
        let handover = handover_signal();
        let server = ControlServer::new(
            handle.clone(),
            config_control.clone(),
            context.clone(),
            config.supervisord.identifier.clone(),
            handover.subscribe(),
        );
        let dispatch = Arc::new(ControlDispatch { server, unix_auth, inet_auth, handover });
        // `on_fatal = shutdown`: a group that exhausted its restart budget brings
        // the daemon down with exit status 1 once the tree has stopped.
        let watched = handle.clone();
        let control = context.control.clone();
        let fatal_watch = tokio::spawn(async move {
            let fatal = watched.fatal_shutdown().await;
            control.fatal_with(fatal.exit_code, fatal.reason);
        });
        // STATUS= lines for systemd, from this tree's state events.
        let status_watch = context.notifier.watch_tree(&handle);
        Ok(CoreTree {
            handle,
            config: config_control,
            dispatch,
            pid1: context.pid1,
            fatal_watch,
            status_watch,
        })
    }
}

/// Re-reads the configuration for `reread`/`update` exactly as startup and
/// SIGHUP do, through the daemon's [`ConfigSource`].
/// The programs whose control groups this host or this daemon cannot give,
/// as config errors at their section.
fn cgroup_refusals(config: &Config) -> Vec<Diagnostic> {
    let origins: std::collections::HashMap<String, &vigil_config::Origin> =
        config.processes().map(|process| (process.program.clone(), &process.origin)).collect();
    vigil_core::cgroup::check(config)
        .into_iter()
        .map(|(section, refusal)| {
            let program = section.split_once(':').map_or("", |(_, name)| name);
            let origin = origins.get(program);
            Diagnostic {
                file: origin.map(|o| o.file.clone()).unwrap_or_default(),
                line: origin.map(|o| o.line).filter(|line| *line > 0),
                section: Some(section),
                key: Some(refusal.key.to_owned()),
                message: refusal.message,
            }
        })
        .collect()
}

fn loader(context: &TreeContext) -> Loader {
    let source: ConfigSource = context.source.clone();
    Arc::new(move || {
        let loaded =
            source.load(|path, env| Wired.load(path, env)).map_err(|e| source.diagnostics(e))?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        Ok(loaded.config)
    })
}

/// The running vigil-core tree.
pub struct CoreTree {
    handle: Handle,
    config: ConfigControl,
    dispatch: Arc<ControlDispatch<ControlServer>>,
    pid1: bool,
    /// Awaits [`Handle::fatal_shutdown`]; aborted when this tree is shut down
    /// (SIGHUP builds a new tree with a watch of its own).
    fatal_watch: tokio::task::JoinHandle<()>,
    /// The systemd status watcher, when vigild runs under a service manager.
    status_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Tree for CoreTree {
    fn dispatch(&self) -> Arc<dyn Dispatch> {
        Arc::clone(&self.dispatch) as Arc<dyn Dispatch>
    }

    fn handover_refusal(&self) -> Option<String> {
        self.handle.handover_refusal()
    }

    fn control(&self) -> CarriedControl {
        CarriedControl {
            identification: self.dispatch.server.identification().to_owned(),
            unix_auth: self.dispatch.unix_auth.as_deref().cloned(),
            inet_auth: self.dispatch.inet_auth.as_deref().cloned(),
        }
    }

    async fn begin_handover(&self) -> Result<(), String> {
        let plan = self.config.reread().await.map_err(|error| {
            format!(
                "cannot read the configuration to check it for changes to its programs: {error}"
            )
        })?;
        let infos = self.handle.process_info(None).await.map_err(|error| error.to_string())?;
        let with_child: std::collections::HashSet<(&str, &str)> = infos
            .iter()
            .filter(|info| info.pid != 0)
            .map(|info| (info.group.as_str(), info.name.as_str()))
            .collect();
        let has_child = |group: &str, name: Option<&str>| match name {
            Some(name) => with_child.contains(&(group, name)),
            None => with_child.iter().any(|(running, _)| *running == group),
        };
        if let Some(why) = crate::handover::unapplied(&plan, has_child) {
            return Err(why);
        }
        self.handle.begin_handover().await.map_err(|error| error.to_string())
    }

    async fn hand_over(&self) -> Result<vigil_core::handover::Handover, String> {
        self.handle.hand_over().await.map_err(|error| error.to_string())
    }

    async fn reopen_logs(&self) {
        let infos = match self.handle.process_info(None).await {
            Ok(infos) => infos,
            Err(error) => return tracing::error!("cannot list processes to reopen logs: {error}"),
        };
        for info in infos {
            let process = NameSpec::process(info.group, info.name);
            for channel in [Channel::Stdout, Channel::Stderr] {
                let reopened = self
                    .handle
                    .log(&process, channel)
                    .map_err(|e| e.to_string())
                    .and_then(|log| log.reopen().map_err(|e| e.to_string()));
                if let Err(error) = reopened {
                    tracing::error!(
                        "cannot reopen the {} log of '{}': {error}",
                        channel.as_str(),
                        info.namespec
                    );
                }
            }
        }
    }

    async fn shutdown_to_exit(self) {
        // Freeing the records of 5,000 programs one by one took 50 ms of
        // the shutdown, after the last program had stopped: the process is
        // about to end, and its memory goes with it.
        let records = self.handle.clone();
        self.shutdown().await;
        std::mem::forget(records);
    }

    async fn shutdown(self) {
        self.fatal_watch.abort();
        if let Some(watch) = &self.status_watch {
            watch.abort();
        }
        self.config.stop();
        self.handle.shutdown().await;
        if self.pid1 {
            kill_leftovers().await;
        } else {
            kill_adopted_orphans().await;
        }
    }
}

/// As a child subreaper, vigild adopts the orphans of its programs (a
/// daemonizing grandchild, a leftover helper). Once the tree has stopped, every
/// child still left is such an orphan: nothing may outlive the daemon, so each
/// gets SIGTERM, then SIGKILL after [`PID1_GRACE`]. Only our own children are
/// signalled, by pid, re-read from /proc on every pass; they cannot be reused
/// pids while they are still our children (the reaper only reaps them after
/// they exit, and a reaped pid no longer shows up in the list).
async fn kill_adopted_orphans() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let term_deadline = tokio::time::Instant::now() + PID1_GRACE;
    // A process stuck in uninterruptible sleep ignores even SIGKILL: give up
    // after a second grace period rather than hang the shutdown.
    let give_up = term_deadline + PID1_GRACE;
    let mut terminated = std::collections::HashSet::new();
    loop {
        let orphans = own_children();
        if orphans.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= give_up {
            tracing::error!("adopted orphans survived SIGKILL: {orphans:?}");
            return;
        }
        for pid in orphans {
            // Zombies are still listed until the reaper collects them;
            // signalling one is harmless.
            if now >= term_deadline {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            } else if terminated.insert(pid) {
                tracing::warn!("sending SIGTERM to adopted orphan {pid}");
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        tokio::time::sleep(PID1_POLL).await;
    }
}

/// The daemon's direct children, from /proc (every thread's list: a child
/// belongs to the thread that forked it, and adopted orphans to the main one).
fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut pids: Vec<i32> = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// As PID 1, nothing may outlive us: every process still in the namespace
/// (daemonized grandchildren the tree never knew) gets SIGTERM, then SIGKILL
/// after [`PID1_GRACE`]. The reaper collects them.
async fn kill_leftovers() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let everyone = Pid::from_raw(-1);
    // kill(-1, ..) skips PID 1 itself; ESRCH means nobody is left.
    if kill(everyone, Signal::SIGTERM).is_err() {
        return;
    }
    tracing::warn!("sent SIGTERM to the processes left in the namespace");
    let deadline = tokio::time::Instant::now() + PID1_GRACE;
    while tokio::time::Instant::now() < deadline {
        if kill(everyone, None).is_err() {
            return;
        }
        tokio::time::sleep(PID1_POLL).await;
    }
    tracing::warn!("killing the processes still left in the namespace with SIGKILL");
    let _ = kill(everyone, Signal::SIGKILL);
}

/// Routes classified control connections to the protocol servers: the
/// tree's [`ControlServer`], or a live upgrade's [`GapServer`] until the tree
/// is built.
struct ControlDispatch<S> {
    server: S,
    unix_auth: Option<Arc<ServerAuth>>,
    inet_auth: Option<Arc<ServerAuth>>,
    /// Moved by [`Dispatch::handing_over`]: each tarpc connection then ends
    /// once its calls are answered, and a long poll answers at once.
    handover: tokio::sync::watch::Sender<u64>,
}

impl<S: SendControl> Dispatch for ControlDispatch<S> {
    fn serve_http(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()> {
        // supervisord's XML-RPC and /logtail, answered by the same ControlServer as
        // tarpc (vigil-xmlrpc translates), with the same credentials per socket.
        let auth = match peer {
            Peer::Unix => self.unix_auth.clone(),
            Peer::Tcp(_) => self.inet_auth.clone(),
        };
        let server = self.server.clone();
        Box::pin(async move {
            if let Err(error) = vigil_xmlrpc::serve(connection, server, auth).await {
                tracing::debug!("{error} ({peer:?})");
            }
        })
    }

    fn serve_tarpc(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()> {
        let auth = match peer {
            Peer::Unix => self.unix_auth.clone(),
            Peer::Tcp(_) => self.inet_auth.clone(),
        };
        let server = self.server.clone();
        let ending = crate::server::handover_begins(self.handover.subscribe());
        Box::pin(async move {
            let deadline = connection.deadline();
            match serve_stream_ending(connection, auth, server, deadline, ending).await {
                Ok(()) => {}
                Err(error @ ServeError::Denied { .. }) => tracing::warn!("{error} ({peer:?})"),
                Err(error) => tracing::debug!("{error} ({peer:?})"),
            }
        })
    }

    fn handing_over(&self) {
        // A tarpc connection closes once its calls are answered (a long poll
        // answers at once), so a client between calls reconnects to the next
        // image instead of holding the handover until the drain's timeout.
        self.handover.send_modify(|moves| *moves = moves.wrapping_add(1));
        // `/logtail` and the dashboard's event streams end after a whole chunk, and each
        // HTTP connection closes once its response is sent.
        vigil_xmlrpc::end_streams_for_handover();
    }
}
