//! [`ControlServer`]: vigil-rpc's [`Control`] service over the running tree.
//!
//! This is the one place where wire types ([`vigil_rpc`]) and tree types
//! ([`vigil_core`], [`vigil_config`]) meet: every method translates its
//! arguments, calls the [`Handle`] (processes, logs), the [`ConfigControl`]
//! (reread, update, add, remove, avail) or the daemon (main log, reload,
//! shutdown), and translates the answer back. No supervision logic lives here.
//!
//! Cancellation: tarpc drops a handler when its caller goes away. Work that
//! changes the tree (start, stop, restart, signal, update) runs in a spawned task
//! that the handler only awaits, so an abandoned call still finishes what it
//! began (vigil-rpc's contract). Long polls (`tail_follow`) end before the
//! caller's deadline so the answer is not lost to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tarpc::context::Context;
use vigil_config::{Apply, AutoRestart, Diagnostic, LogConfig, Plan, Signal};
use vigil_core::{
    Available, Channel, ChannelLog, ConfigControl, ConfigError, CoreError, GroupUpdate, Handle,
    UpdateAction as CoreAction, UpdateOutcome,
};
use vigil_rpc::{
    Blob, ChangeKind, ConfigErrorLine, ConfigInfo, Control, ControlError, DaemonInfo, DaemonState,
    Facts, GroupChange, Health, LogChannel, LogFollow, LogSettings, LogSlice, LogTail, LogTarget,
    MAX_LOG_CHUNK, NameSpec, ProcessChange, ProcessInfo, ProcessResult, ProcessState, Reread,
    RestartReport, StatusRow, UpdateAction, UpdateReport, UpdateStep,
};

use crate::app::TreeContext;
use crate::facts;
use crate::signals::DaemonSignal;
use vigil_core::logs::LogError;

/// vigild's version, reported by `daemon_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How much earlier than the caller's deadline a long poll answers, so the
/// reply still reaches it.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// The daemon's mood as the API reports it (supervisord's `SupervisorStates`).
const MOOD_RUNNING: u8 = 0;
const MOOD_RESTARTING: u8 = 1;
const MOOD_SHUTDOWN: u8 = 2;

/// The control service for one tree. Cheap to clone (one per call).
#[derive(Clone)]
pub struct ControlServer {
    shared: Arc<Shared>,
}

struct Shared {
    handle: Handle,
    config: ConfigControl,
    context: TreeContext,
    identification: String,
    mood: AtomicU8,
    /// Moves when a live upgrade begins to hand over: a long poll answers at
    /// once, so its connection can close (see `wiring.rs`).
    handover: tokio::sync::watch::Receiver<u64>,
}

vigil_rpc::impl_send_control!(ControlServer);

impl ControlServer {
    /// The service over `handle` and `config`, reporting `identification`
    /// (`[supervisord] identifier`).
    pub fn new(
        handle: Handle,
        config: ConfigControl,
        context: TreeContext,
        identification: String,
        handover: tokio::sync::watch::Receiver<u64>,
    ) -> ControlServer {
        let mood = AtomicU8::new(MOOD_RUNNING);
        let shared = Shared { handle, config, context, identification, mood, handover };
        ControlServer { shared: Arc::new(shared) }
    }

    /// `[supervisord] identifier`, as `daemon_info` reports it.
    pub fn identification(&self) -> &str {
        &self.shared.identification
    }

    /// Completes when a live upgrade begins to hand over.
    fn handover(&self) -> impl std::future::Future<Output = ()> + use<> {
        handover_begins(self.shared.handover.clone())
    }

    fn handle(&self) -> &Handle {
        &self.shared.handle
    }

    /// supervisord's `_update`: every method but `send_comm_event` refuses to
    /// work while the daemon shuts down or reloads.
    fn check(&self) -> Result<(), ControlError> {
        if self.state() == DaemonState::Running { Ok(()) } else { Err(ControlError::ShutdownState) }
    }

    fn state(&self) -> DaemonState {
        match self.shared.mood.load(Ordering::SeqCst) {
            MOOD_RESTARTING => DaemonState::Restarting,
            MOOD_SHUTDOWN => DaemonState::Shutdown,
            _ if self.handle().is_shutting_down() => DaemonState::Shutdown,
            _ => DaemonState::Running,
        }
    }

    /// The log channel a target names.
    fn channel(&self, name: &str, channel: LogChannel) -> Result<ChannelLog, ControlError> {
        let channel = match channel {
            LogChannel::Stdout => Channel::Stdout,
            LogChannel::Stderr => Channel::Stderr,
        };
        self.handle().log(&NameSpec::parse(name), channel).map_err(|e| named_error(e, name))
    }
}

/// Runs `work` in its own task and waits for it: dropping the caller's future
/// abandons the answer, not the work.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::spawn(work)
        .await
        .map_err(|error| ControlError::Failed(format!("internal error: {error}")))
}

/// How long a long poll may wait: what the caller asked, ending before its
/// deadline.
fn poll_budget(ctx: &Context, wait_ms: u64) -> Duration {
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    Duration::from_millis(wait_ms).min(left.saturating_sub(DEADLINE_MARGIN))
}

impl Control for ControlServer {
    async fn daemon_info(self, _: Context) -> Result<DaemonInfo, ControlError> {
        self.check()?;
        Ok(DaemonInfo {
            api_version: vigil_rpc::API_VERSION.to_owned(),
            version: VERSION.to_owned(),
            identification: self.shared.identification.clone(),
            state: self.state(),
            pid: std::process::id(),
            extensions: extensions(),
        })
    }

    async fn facts(self, _: Context, usage: bool) -> Result<Facts, ControlError> {
        self.check()?;
        let infos = if usage {
            self.handle().process_facts(None).await
        } else {
            self.handle().process_info(None).await
        };
        let processes = infos
            .map_err(core_error)?
            .into_iter()
            .map(|info| facts::process_facts(info, process_info))
            .collect();
        let daemon = facts::daemon_facts(&self.shared.context.counters, VERSION);
        Ok(Facts { daemon, processes })
    }

    async fn changes(self, ctx: Context, seen: u64, wait_ms: u64) -> Result<u64, ControlError> {
        self.check()?;
        let mut changes = self.handle().changes();
        let current = *changes.borrow_and_update();
        if current != seen {
            return Ok(current);
        }
        // Woken by the tree's next change, or not at all until the budget ends
        // (or a live upgrade begins).
        let handover = self.handover();
        tokio::select! {
            _ = tokio::time::timeout(poll_budget(&ctx, wait_ms), changes.changed()) => {}
            () = handover => {}
        }
        let current = *changes.borrow();
        Ok(current)
    }

    async fn all_process_info(self, _: Context) -> Result<Vec<ProcessInfo>, ControlError> {
        self.check()?;
        let infos = self.handle().process_info(None).await.map_err(core_error)?;
        Ok(infos.into_iter().map(process_info).collect())
    }

    async fn status_rows(self, _: Context) -> Result<Vec<StatusRow>, ControlError> {
        self.check()?;
        let rows = self.handle().status_rows(None).map_err(core_error)?;
        Ok(rows.into_iter().map(status_row).collect())
    }

    async fn process_info(self, _: Context, name: String) -> Result<ProcessInfo, ControlError> {
        self.check()?;
        // getProcessInfo names one process: `g:*` and `all` are BAD_NAME.
        let spec = NameSpec::parse(&name);
        if !matches!(spec, NameSpec::Process { .. }) {
            return Err(ControlError::BadName(name));
        }
        let infos =
            self.handle().process_info(Some(&spec)).await.map_err(|e| named_error(e, &name))?;
        match <[_; 1]>::try_from(infos) {
            Ok([info]) => Ok(process_info(info)),
            Err(_) => Err(ControlError::BadName(name)),
        }
    }

    async fn start(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        wait: bool,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.check()?;
        start(self.handle().clone(), specs, wait).await
    }

    async fn stop(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        wait: bool,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.check()?;
        stop(self.handle().clone(), specs, wait).await
    }

    async fn restart(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        wait: bool,
    ) -> Result<RestartReport, ControlError> {
        self.check()?;
        restart(self.handle().clone(), specs, wait).await
    }

    async fn signal(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        signal: String,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.check()?;
        signal_processes(self.handle().clone(), specs, signal).await
    }

    async fn read_log(
        self,
        _: Context,
        target: LogTarget,
        offset: i64,
        length: i64,
    ) -> Result<LogSlice, ControlError> {
        self.check()?;
        match target {
            LogTarget::Main => {
                let log = self.shared.context.main_log.clone();
                let read = tokio::task::spawn_blocking(move || {
                    log.read_slice(offset, length, MAX_LOG_CHUNK)
                })
                .await
                .map_err(|e| ControlError::Failed(e.to_string()))?;
                let (bytes, start, end, size) = read.map_err(main_log_error)?;
                Ok(LogSlice { bytes: Blob(bytes), start, end, size })
            }
            LogTarget::Process { name, channel } => {
                let log = self.channel(&name, channel)?;
                require_file(&log, &name)?;
                tokio::task::spawn_blocking(move || read_channel(&log, offset, length))
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
            }
        }
    }

    async fn tail_log(
        self,
        _: Context,
        target: LogTarget,
        offset: u64,
        length: u64,
    ) -> Result<LogTail, ControlError> {
        self.check()?;
        let length = length.min(MAX_LOG_CHUNK);
        let (bytes, offset, overflow) = match target {
            LogTarget::Main => {
                let log = self.shared.context.main_log.clone();
                tokio::task::spawn_blocking(move || log.tail(offset, length))
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
            }
            LogTarget::Process { name, channel } => {
                let log = self.channel(&name, channel)?;
                if log.path().is_none() {
                    // supervisord's tailFile of a missing file.
                    return Ok(LogTail { bytes: Blob::default(), offset: 0, overflow: false });
                }
                tokio::task::spawn_blocking(move || log.tail(offset, length))
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
            }
        };
        Ok(LogTail { bytes: Blob(bytes), offset, overflow })
    }

    async fn tail_follow(
        self,
        ctx: Context,
        target: LogTarget,
        offset: i64,
        max_bytes: u64,
        wait_ms: u64,
    ) -> Result<LogFollow, ControlError> {
        self.check()?;
        let max = max_bytes.clamp(1, MAX_LOG_CHUNK);
        let budget = poll_budget(&ctx, wait_ms);
        let handover = self.handover();
        match target {
            LogTarget::Main => {
                let log = self.shared.context.main_log.clone();
                if offset >= 0 && offset.unsigned_abs() == log.end() {
                    wait_for(budget, handover, log.wait_beyond(log.end())).await;
                }
                let (bytes, start, next) =
                    tokio::task::spawn_blocking(move || log.follow(offset, max))
                        .await
                        .map_err(|e| ControlError::Failed(e.to_string()))?
                        .map_err(main_log_error)?;
                Ok(LogFollow { bytes: Blob(bytes), offset: start, next })
            }
            LogTarget::Process { name, channel } => {
                let log = self.channel(&name, channel)?;
                require_file(&log, &name)?;
                let total = log.total();
                let from = if offset < 0 {
                    total.saturating_sub(offset.unsigned_abs())
                } else {
                    offset.unsigned_abs()
                };
                if from > total {
                    return Err(ControlError::BadArguments(format!(
                        "offset {from} is beyond the end of the log ({total})"
                    )));
                }
                if from == total {
                    wait_for(budget, handover, log.wait_beyond(from)).await;
                }
                tokio::task::spawn_blocking(move || follow_channel(&log, &name, from, max))
                    .await
                    .map_err(|e| ControlError::Failed(e.to_string()))?
            }
        }
    }

    async fn clear_main_log(self, _: Context) -> Result<(), ControlError> {
        self.check()?;
        self.shared.context.main_log.clear().map_err(main_log_error)
    }

    async fn clear_logs(
        self,
        _: Context,
        specs: Vec<NameSpec>,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.check()?;
        let mut results = Vec::new();
        for spec in effective_specs(&specs) {
            let infos = match self.handle().process_info(Some(&spec)).await {
                Ok(infos) => infos,
                Err(error) => {
                    results.push((spec, Err(error)));
                    continue;
                }
            };
            for info in infos {
                let process = NameSpec::process(info.group, info.name);
                let cleared =
                    [Channel::Stdout, Channel::Stderr].into_iter().try_for_each(|channel| {
                        let log = self.handle().log(&process, channel)?;
                        log.clear()
                            .map_err(|e| CoreError::Failed(format!("{}: {e}", info.namespec)))
                    });
                results.push((process, cleared));
            }
        }
        Ok(order_results(&specs, results))
    }

    async fn reread(self, _: Context) -> Result<Reread, ControlError> {
        self.check()?;
        // Reading the file applies nothing (`update --dry-run` reads it too), so
        // the service manager hears nothing; `update` and SIGHUP reload.
        let plan = self.shared.config.reread().await.map_err(config_error)?;
        Ok(reread(&plan))
    }

    async fn update(
        self,
        _: Context,
        groups: Vec<String>,
        dry_run: bool,
    ) -> Result<UpdateReport, ControlError> {
        self.check()?;
        let config = self.shared.config.clone();
        let notifier = self.shared.context.notifier.clone();
        let outcome = detached(async move {
            // A dry run changes nothing, so the service manager hears nothing.
            let _reloading = (!dry_run).then(|| notifier.reload_guard());
            config.update(groups, dry_run).await
        })
        .await?
        .map_err(config_error)?;
        if !dry_run {
            self.shared.context.counters.config_changed(false);
        }
        Ok(update_report(outcome))
    }

    async fn add_group(self, _: Context, name: String) -> Result<(), ControlError> {
        self.check()?;
        let config = self.shared.config.clone();
        detached(async move { config.add_group(name).await }).await?.map_err(core_error)
    }

    async fn remove_group(self, _: Context, name: String) -> Result<(), ControlError> {
        self.check()?;
        self.shared.config.remove_group(name).await.map_err(core_error)
    }

    async fn avail(self, _: Context) -> Result<Vec<ConfigInfo>, ControlError> {
        self.check()?;
        let available = self.shared.config.avail().await.map_err(core_error)?;
        Ok(available.into_iter().map(config_info).collect())
    }

    async fn upgrade(self, _: Context, binary: Option<String>) -> Result<String, ControlError> {
        self.check()?;
        let answer = self
            .shared
            .context
            .control
            .upgrade(binary.map(std::path::PathBuf::from))
            .ok_or(ControlError::ShutdownState)?;
        match answer.await {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(why)) => Err(ControlError::Failed(why)),
            Err(_) => Err(ControlError::ShutdownState),
        }
    }

    async fn reload(self, _: Context) -> Result<(), ControlError> {
        self.check()?;
        self.shared.mood.store(MOOD_RESTARTING, Ordering::SeqCst);
        if self.shared.context.control.request(DaemonSignal::Reload) {
            Ok(())
        } else {
            Err(ControlError::ShutdownState)
        }
    }

    async fn shutdown(self, _: Context) -> Result<(), ControlError> {
        self.check()?;
        self.shared.mood.store(MOOD_SHUTDOWN, Ordering::SeqCst);
        if self.shared.context.control.request(DaemonSignal::Shutdown(libc::SIGTERM)) {
            Ok(())
        } else {
            Err(ControlError::ShutdownState)
        }
    }

    async fn send_stdin(self, _: Context, name: String, data: Blob) -> Result<(), ControlError> {
        self.check()?;
        let spec = NameSpec::parse(&name);
        self.handle().send_stdin(&spec, data.0).await.map_err(|e| named_error(e, &name))
    }

    async fn send_comm_event(
        self,
        _: Context,
        kind: String,
        data: String,
    ) -> Result<(), ControlError> {
        // Allowed while shutting down, as in supervisord.
        tracing::info!("REMOTE_COMMUNICATION event of type '{kind}': {data}");
        self.handle().send_comm_event(kind, data);
        Ok(())
    }
}

/// `start` against `handle`; with `stop`, `restart` and `signal_processes`,
/// what the tree's server runs, and a live upgrade's gap too for processes
/// already back in the tree (`gap.rs`).
pub(crate) async fn start(
    handle: Handle,
    specs: Vec<NameSpec>,
    wait: bool,
) -> Result<Vec<ProcessResult>, ControlError> {
    let names = effective_specs(&specs);
    let results = detached(async move { handle.start(&names, wait).await }).await?;
    Ok(order_results(&specs, results))
}

pub(crate) async fn stop(
    handle: Handle,
    specs: Vec<NameSpec>,
    wait: bool,
) -> Result<Vec<ProcessResult>, ControlError> {
    let names = effective_specs(&specs);
    let results = detached(async move { handle.stop(&names, wait).await }).await?;
    Ok(order_results(&specs, results))
}

pub(crate) async fn restart(
    handle: Handle,
    specs: Vec<NameSpec>,
    wait: bool,
) -> Result<RestartReport, ControlError> {
    let names = effective_specs(&specs);
    let (stopped, started) = detached(async move {
        // supervisorctl's restart: every stop (waited for), then every start.
        let stopped = handle.stop(&names, true).await;
        let started = handle.start(&names, wait).await;
        (stopped, started)
    })
    .await?;
    Ok(RestartReport {
        stopped: order_results(&specs, stopped),
        started: order_results(&specs, started),
    })
}

pub(crate) async fn signal_processes(
    handle: Handle,
    specs: Vec<NameSpec>,
    signal: String,
) -> Result<Vec<ProcessResult>, ControlError> {
    let names = effective_specs(&specs);
    let results = match requested_signal(&signal) {
        Ok(signal) => detached(async move { handle.signal(&names, signal).await }).await?,
        Err(error) => names.into_iter().map(|name| (name, Err(error.clone()))).collect(),
    };
    Ok(order_results(&specs, results))
}

// ---------------------------------------------------------------------------
// Translations, core/config -> wire.

/// `all` anywhere means every process, once.
fn effective_specs(specs: &[NameSpec]) -> Vec<NameSpec> {
    if specs.contains(&NameSpec::All) { vec![NameSpec::All] } else { specs.to_vec() }
}

/// The signal a `signal` request names, or `BAD_SIGNAL` with the text as it
/// was sent.
fn requested_signal(text: &str) -> Result<Signal, CoreError> {
    Signal::parse(text).map_err(|_| CoreError::BadSignal(text.to_owned()))
}

/// A fault of a request naming one process by `name`: an unknown name is
/// reported as the caller spelled it (`web:web`, not the tree's `web`).
fn named_error(error: CoreError, name: &str) -> ControlError {
    match error {
        CoreError::BadName(_) => ControlError::BadName(name.to_owned()),
        other => core_error(other),
    }
}

/// A result's process as (group, name). Results are keyed by process, but a
/// group or `all` that was not acted on at all (the daemon began shutting
/// down) is one result about the whole group, without a process name.
fn result_process(spec: &NameSpec) -> (String, Option<String>) {
    match spec {
        NameSpec::All => ("all".to_owned(), None),
        NameSpec::Group(group) => (group.clone(), None),
        NameSpec::Process { group, name } => (group.clone(), Some(name.clone())),
    }
}

/// The tree's results (keyed by process, or by the spec itself for a spec
/// that names nothing) as wire results, in the order of `specs`: a process
/// spec in place, a group or `all` as its processes sorted by group then
/// name; a spec naming nothing as one `BadName` result.
pub fn order_results(specs: &[NameSpec], results: vigil_core::Results) -> Vec<ProcessResult> {
    let mut pending: Vec<Option<(NameSpec, Result<(), CoreError>)>> =
        results.into_iter().map(Some).collect();
    let mut out = Vec::new();
    let wire = |spec: &NameSpec, result: Result<(), CoreError>| {
        let (group, name) = result_process(spec);
        ProcessResult { group, name, error: result.err().map(core_error) }
    };
    let specs = effective_specs(specs);
    // First the specs that named nothing, so that no group spec claims them.
    let mut bad = std::collections::HashMap::new();
    for spec in &specs {
        let at = pending.iter().position(|entry| {
            entry
                .as_ref()
                .is_some_and(|(k, r)| k == spec && matches!(r, Err(CoreError::BadName(_))))
        });
        if let Some(at) = at
            && let Some((_, Err(error))) = pending[at].take()
        {
            bad.insert(spec.clone(), error);
        }
    }
    for spec in specs {
        if let Some(error) = bad.remove(&spec) {
            out.push(match &spec {
                NameSpec::Process { group, name } => {
                    ProcessResult::failed(group.clone(), Some(name.clone()), core_error(error))
                }
                NameSpec::Group(group) => {
                    ProcessResult::failed(group.clone(), None, ControlError::BadName(group.clone()))
                }
                NameSpec::All => ProcessResult::failed("all", None, core_error(error)),
            });
            continue;
        }
        let belongs = |key: &NameSpec| -> bool {
            match &spec {
                NameSpec::All => true,
                NameSpec::Group(group) => key.group() == Some(group.as_str()),
                NameSpec::Process { .. } => *key == spec,
            }
        };
        let mut matched: Vec<(NameSpec, Result<(), CoreError>)> = pending
            .iter_mut()
            .filter(|entry| entry.as_ref().is_some_and(|(k, _)| belongs(k)))
            .filter_map(Option::take)
            .collect();
        matched.sort_by(|(a, _), (b, _)| (a.group(), a.name()).cmp(&(b.group(), b.name())));
        out.extend(matched.into_iter().map(|(key, result)| wire(&key, result)));
    }
    // Nothing is dropped, even a result no spec claims (a group renamed meanwhile).
    out.extend(pending.into_iter().flatten().map(|(key, result)| wire(&key, result)));
    out
}

/// A tree fault as the wire fault of the same supervisord code and text.
pub fn core_error(error: CoreError) -> ControlError {
    match error {
        CoreError::BadName(detail) => ControlError::BadName(detail),
        CoreError::BadSignal(detail) => ControlError::BadSignal(detail),
        CoreError::NoFile(detail) => ControlError::NoFile(detail),
        CoreError::NotExecutable(detail) => ControlError::NotExecutable(detail),
        CoreError::Failed(detail) => ControlError::Failed(detail),
        CoreError::AbnormalTermination(detail) => ControlError::AbnormalTermination(detail),
        CoreError::SpawnError(detail) => ControlError::SpawnError(detail),
        CoreError::AlreadyStarted(detail) => ControlError::AlreadyStarted(detail),
        CoreError::NotRunning(detail) => ControlError::NotRunning(detail),
        CoreError::AlreadyAdded(detail) => ControlError::AlreadyAdded(detail),
        CoreError::StillRunning(detail) => ControlError::StillRunning(detail),
        CoreError::ShuttingDown => ControlError::ShutdownState,
        // CoreError is non-exhaustive: a new fault reads as FAILED with its text.
        #[allow(unreachable_patterns)]
        other => ControlError::Failed(other.to_string()),
    }
}

fn config_error(error: ConfigError) -> ControlError {
    match error {
        ConfigError::Invalid(diagnostics) => {
            ControlError::ConfigErrors(diagnostics.iter().map(config_error_line).collect())
        }
        ConfigError::Core(error) => core_error(error),
    }
}

/// A diagnostic as a wire line: file and line apart, the rest
/// (`[section] key: message`) as the message.
pub fn config_error_line(diagnostic: &Diagnostic) -> ConfigErrorLine {
    let mut message = String::new();
    if let Some(section) = &diagnostic.section {
        message.push_str(&format!("[{section}] "));
    }
    if let Some(key) = &diagnostic.key {
        message.push_str(&format!("{key}: "));
    }
    message.push_str(&diagnostic.message);
    ConfigErrorLine {
        file: diagnostic.file.display().to_string(),
        line: diagnostic.line.unwrap_or(0),
        message,
    }
}

/// Completes at the next move of `handover` (a live upgrade begins to hand
/// over); never, if its sender is gone.
pub(crate) fn handover_begins(
    mut handover: tokio::sync::watch::Receiver<u64>,
) -> impl std::future::Future<Output = ()> {
    handover.borrow_and_update();
    async move {
        if handover.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A follow's wait for new bytes: until `waiting` completes, `budget` ends or
/// a live upgrade begins.
async fn wait_for(
    budget: Duration,
    handover: impl std::future::Future<Output = ()>,
    waiting: impl std::future::Future,
) {
    tokio::select! {
        _ = tokio::time::timeout(budget, waiting) => {}
        () = handover => {}
    }
}

/// The optional calls vigild answers ([`DaemonInfo::extensions`]).
pub fn extensions() -> Vec<String> {
    vec![vigil_rpc::EXTENSION_STATUS_ROWS.to_owned()]
}

/// A process's line of `status`.
fn status_row(row: vigil_core::StatusRow) -> StatusRow {
    StatusRow {
        name: row.name,
        group: row.group,
        state: ProcessState::from_code(row.state.code()),
        description: row.description,
    }
}

/// A process's status as `getProcessInfo` reports it.
pub fn process_info(info: vigil_core::ProcessInfo) -> ProcessInfo {
    ProcessInfo {
        name: info.name,
        group: info.group,
        start: info.start,
        stop: info.stop,
        now: info.now,
        state: ProcessState::from_code(info.state.code()),
        statename: vigil_rpc::SmolStr::new_static(info.statename),
        spawnerr: info.spawnerr,
        exitstatus: info.exitstatus,
        logfile: info.logfile,
        stdout_logfile: info.stdout_logfile,
        stderr_logfile: info.stderr_logfile,
        pid: info.pid,
        health: info.health.map(|health| match health {
            vigil_core::Health::Unknown => Health::Unknown,
            vigil_core::Health::Healthy => Health::Healthy,
            // Core keeps the verdict, not the failure text: the activity log has it.
            vigil_core::Health::Unhealthy => Health::Unhealthy { reason: String::new() },
        }),
        waiting_for: info.waiting_for,
        description: info.description,
    }
}

fn channel_error(name: &str, error: vigil_core::logs::LogError) -> ControlError {
    match error {
        vigil_core::logs::LogError::NoFile => ControlError::NoFile(name.to_owned()),
        vigil_core::logs::LogError::BadArguments { .. } => {
            ControlError::BadArguments(error.to_string())
        }
        other => ControlError::Failed(other.to_string()),
    }
}

/// supervisord serves process logs from their files only: a channel logged to
/// no file (`NONE`, `syslog`, or stderr under `redirect_stderr`) is `NO_FILE`,
/// whatever Vigil keeps in memory, so scripts see supervisorctl's answers.
fn require_file(log: &ChannelLog, name: &str) -> Result<(), ControlError> {
    match log.path() {
        Some(_) => Ok(()),
        None => Err(ControlError::NoFile(name.to_owned())),
    }
}

fn main_log_error(error: LogError) -> ControlError {
    match error {
        LogError::NoFile => ControlError::NoFile("supervisord".to_owned()),
        LogError::BadArguments { .. } => ControlError::BadArguments(String::new()),
        LogError::Failed(source) => ControlError::Failed(source.to_string()),
        other => ControlError::Failed(other.to_string()),
    }
}

/// `read_log` over a channel's stream positions (which equal file offsets
/// until the file first rotates or is cleared).
fn read_channel(log: &ChannelLog, offset: i64, length: i64) -> Result<LogSlice, ControlError> {
    let name = log.path().map(|p| p.display().to_string()).unwrap_or_default();
    let total = log.total();
    let (from, to) = match (offset, length) {
        (o, 0) if o < 0 => (total.saturating_sub(o.unsigned_abs()), total),
        (o, 0) => (o.unsigned_abs(), total),
        (o, l) if o >= 0 && l > 0 => {
            (o.unsigned_abs(), o.unsigned_abs().saturating_add(l.unsigned_abs()).min(total))
        }
        _ => {
            return Err(ControlError::BadArguments(format!("offset {offset}, length {length}")));
        }
    };
    let to = to.min(from.saturating_add(MAX_LOG_CHUNK));
    if from >= to {
        // Still tells a channel without storage apart (NO_FILE).
        log.read(i64::try_from(total).unwrap_or(i64::MAX), 0)
            .map_err(|e| channel_error(&name, e))?;
        return Ok(LogSlice { bytes: Blob::default(), start: from, end: from, size: total });
    }
    let bytes = log
        .read(i64::try_from(from).unwrap_or(i64::MAX), i64::try_from(to - from).unwrap_or(i64::MAX))
        .map_err(|e| channel_error(&name, e))?;
    // The bytes end at `to` (<= the total when read); older ones may be gone.
    let start = to - bytes.len() as u64;
    Ok(LogSlice { bytes: Blob(bytes), start, end: to, size: total })
}

/// One long-poll answer from stream position `from` (at most the end).
fn follow_channel(
    log: &ChannelLog,
    name: &str,
    from: u64,
    max: u64,
) -> Result<LogFollow, ControlError> {
    let to = log.total().min(from.saturating_add(max));
    if to <= from {
        return Ok(LogFollow { bytes: Blob::default(), offset: from, next: from });
    }
    let bytes = log
        .read(i64::try_from(from).unwrap_or(i64::MAX), i64::try_from(to - from).unwrap_or(i64::MAX))
        .map_err(|e| channel_error(name, e))?;
    // Bytes no longer kept (rotated beyond the backups, cleared) are skipped:
    // the answer starts later than asked and the client reports the gap.
    Ok(LogFollow { offset: to - bytes.len() as u64, bytes: Blob(bytes), next: to })
}

fn reread(plan: &Plan) -> Reread {
    let mut details = Vec::new();
    for group in &plan.added {
        details.push(GroupChange {
            group: group.clone(),
            kind: ChangeKind::Added,
            processes: Vec::new(),
        });
    }
    for change in &plan.changed {
        let mut processes = Vec::new();
        processes.extend(change.added.iter().map(|name| ProcessChange {
            name: name.clone(),
            kind: ChangeKind::Added,
            fields: Vec::new(),
            in_place: false,
        }));
        processes.extend(change.changed.iter().map(|c| ProcessChange {
            name: c.name.clone(),
            kind: ChangeKind::Changed,
            fields: c.fields.iter().map(|f| f.key.to_owned()).collect(),
            in_place: !change.restart_all && c.fields.iter().all(|f| f.apply == Apply::InPlace),
        }));
        processes.extend(change.removed.iter().map(|name| ProcessChange {
            name: name.clone(),
            kind: ChangeKind::Removed,
            fields: Vec::new(),
            in_place: false,
        }));
        details.push(GroupChange {
            group: change.name.clone(),
            kind: ChangeKind::Changed,
            processes,
        });
    }
    for group in &plan.removed {
        details.push(GroupChange {
            group: group.clone(),
            kind: ChangeKind::Removed,
            processes: Vec::new(),
        });
    }
    let sorted = |names: Vec<String>| {
        let mut names = names;
        names.sort();
        names
    };
    Reread {
        added: sorted(plan.added.clone()),
        changed: sorted(plan.changed.iter().map(|c| c.name.clone()).collect()),
        removed: sorted(plan.removed.clone()),
        details,
    }
}

fn update_report(outcome: UpdateOutcome) -> UpdateReport {
    UpdateReport {
        dry_run: outcome.dry_run,
        unknown_groups: outcome.unknown_groups,
        steps: outcome.steps.into_iter().map(update_step).collect(),
    }
}

fn update_step(step: GroupUpdate) -> UpdateStep {
    UpdateStep {
        group: step.group,
        action: match step.action {
            CoreAction::Removed => UpdateAction::Removed,
            CoreAction::Updated => UpdateAction::Updated,
            CoreAction::Added => UpdateAction::Added,
        },
        stopped: step.stopped,
        started: step.started,
        changed_in_place: step.changed_in_place,
        error: step.error.map(core_error),
    }
}

fn log_settings(log: &LogConfig) -> LogSettings {
    LogSettings {
        logfile: match &log.logfile {
            vigil_config::LogTarget::Auto => "auto".to_owned(),
            vigil_config::LogTarget::None => "none".to_owned(),
            vigil_config::LogTarget::Syslog => "syslog".to_owned(),
            vigil_config::LogTarget::Path(path) => path.display().to_string(),
        },
        logfile_maxbytes: log.maxbytes,
        logfile_backups: log.backups,
        capture_maxbytes: log.capture_maxbytes,
        events_enabled: log.events_enabled,
        syslog: log.syslog,
    }
}

/// One configured process as `getAllConfigInfo` reports it.
pub fn config_info(available: Available) -> ConfigInfo {
    let process = available.process;
    ConfigInfo {
        name: process.name,
        group: process.group,
        inuse: available.inuse,
        autostart: process.autostart,
        autorestart: match process.autorestart {
            AutoRestart::False => "false",
            AutoRestart::Unexpected => "unexpected",
            AutoRestart::True => "true",
        }
        .to_owned(),
        group_prio: available.group_priority,
        process_prio: process.priority,
        command: process.command_line,
        directory: process.directory.map(|d| d.display().to_string()),
        uid: process.user.map(|u| u.uid),
        exitcodes: process.exitcodes,
        killasgroup: process.killasgroup,
        stopasgroup: process.stopasgroup,
        redirect_stderr: process.redirect_stderr,
        startretries: process.startretries,
        startsecs: process.startsecs,
        stopsignal: process.stopsignal.0,
        stopwaitsecs: process.stopwaitsecs,
        serverurl: process.serverurl.unwrap_or_else(|| "AUTO".to_owned()),
        stdout: log_settings(&process.stdout),
        stderr: log_settings(&process.stderr),
    }
}

#[cfg(test)]
mod tests;
