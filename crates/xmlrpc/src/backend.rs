//! The operations the XML-RPC method table and the log-tail handlers need from the daemon,
//! as one trait with supervisord's semantics, so the HTTP layer does not depend on how the
//! daemon is built (the implementation is an adaptor over the typed `Control` API), and the
//! names it addresses processes by (`namespec`s).
//!
//! What lives here and what does not:
//! - The backend resolves names against the live process set, runs operations, waits where
//!   asked and reports faults with supervisord's codes and details.
//! - The method table (`http/xmlrpc/methods.rs`) does everything that is pure protocol: name and
//!   argument checking, `namespec` splitting and `g:*` delegation, signal-name parsing, the
//!   `SHUTDOWN_STATE` guard, `readLog`/`tailProcessLog` offset arithmetic, sorting, the
//!   `description` text, capping integers to the XML-RPC range and the struct layouts.
//!
//! Cancellation: every future may be dropped before it completes, for example when the client
//! hangs up during `startProcess(name, wait=True)`. An operation that was already requested
//! (a spawn, a stop signal) must go on; only the wait is abandoned. `follow_log` in particular
//! is dropped whenever a `tail -f` client goes away and must hold nothing that outlives it.

use std::future::Future;
use std::time::Duration;

use vigil_config::{NameSpec, Signal};

use crate::fault::Fault;

/// The daemon's and a process's states, a process's output channels and what
/// `getProcessInfo` reports are the same things on both control surfaces: the XML-RPC layer
/// uses vigil-rpc's types, which carry supervisord's codes and names. The method table
/// recomputes `now` and `description` when it answers, in the daemon's time zone, and
/// `ConfigInfo` (one configured process, as `getAllConfigInfo` reports it) keeps
/// supervisord's `auto`/`none`/`unexpected` spellings, which the method table encodes.
/// `reloadConfig` sends only the group names of a `Reread`, not its details.
pub(crate) use vigil_rpc::{
    ConfigInfo, DaemonState, Facts, LogChannel, ProcessInfo, ProcessState, Reread, UpdateReport,
};

/// A process addressed by group and process name (`group:name` in a namespec; a process
/// of a homogeneous group has `group == name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ProcessRef {
    pub(crate) group: String,
    pub(crate) name: String,
}

impl ProcessRef {
    pub(crate) fn new(group: impl Into<String>, name: impl Into<String>) -> ProcessRef {
        ProcessRef { group: group.into(), name: name.into() }
    }

    /// supervisord's `make_namespec`: `name` alone for a homogeneous group.
    pub(crate) fn namespec(&self) -> String {
        vigil_rpc::make_namespec(&self.group, &self.name)
    }
}

/// What a namespec names (supervisord's `split_namespec`). Unlike vigilctl's arguments,
/// `all` here is a process called `all`: supervisord's XML-RPC has no such keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Process(ProcessRef),
    /// `group:*` or `group:`.
    Group(String),
}

impl Target {
    /// Reads `namespec` with [`NameSpec::split`].
    pub(crate) fn parse(namespec: &str) -> Target {
        match NameSpec::split(namespec) {
            NameSpec::Process { group, name } => Target::Process(ProcessRef { group, name }),
            NameSpec::Group(group) => Target::Group(group),
            // `split` reads `all` as a name, never as every process.
            NameSpec::All => Target::Process(ProcessRef::new("all", "all")),
        }
    }
}

/// The processes a group operation (`*ProcessGroup`, `*AllProcesses`) applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every process of the named group; `BAD_NAME` if there is no such group.
    Group(String),
    /// Every process of every active group.
    All,
}

/// The outcome for one process of a group operation. supervisord sends it as
/// `{name, group, status, description}` with status 80 (`SUCCESS`) and `OK`, or the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessResult {
    pub(crate) process: ProcessRef,
    pub(crate) outcome: Result<(), Fault>,
}

/// Which log a read, tail or follow applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum LogSource {
    /// The daemon's own log (`[supervisord] logfile`).
    Main,
    Process(ProcessRef, LogChannel),
}

/// Where [`Backend::follow_log`] reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FollowFrom {
    /// The first read of a follow: this many bytes before the current end of the log.
    /// Answers at once, with nothing if the log is empty.
    Tail(u64),
    /// A [`LogFollow::next`] of an earlier reply: waits until there is news past it.
    ///
    /// Positions are the backend's own: file offsets, or stream positions that stay
    /// monotonic across rotation. The follower only passes back what it was given.
    Position(u64),
}

/// What [`Backend::follow_log`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogFollow {
    /// The bytes after the requested position (at most a bounded chunk). Empty only for
    /// a [`FollowFrom::Tail`] of an empty log, or alongside `truncated`.
    pub(crate) bytes: Vec<u8>,
    /// The bytes between the requested position and `bytes` are gone (the log was
    /// truncated, cleared or rotated away): the follower prints supervisord's truncation
    /// marker before `bytes`.
    pub(crate) truncated: bool,
    /// The position to continue from.
    pub(crate) next: u64,
}

/// The daemon as the XML-RPC layer sees it. Every operation fails with a supervisord
/// [`Fault`]; an adaptor that cannot reach the daemon reports `FAILED` with the reason.
///
/// Methods return `impl Future + Send` (not `async fn`) so a generic server can hold the
/// futures across `.await` in a `Send` task; implementations may still write `async fn`.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The daemon's state; the method table refuses every method but `sendRemoteCommEvent`
    /// with `SHUTDOWN_STATE` while it is `Restarting` or `Shutdown`.
    fn state(&self) -> impl Future<Output = Result<DaemonState, Fault>> + Send;

    /// `[supervisord] identifier`.
    fn identification(&self) -> impl Future<Output = Result<String, Fault>> + Send;

    /// One process; `BAD_NAME` if unknown.
    fn process_info(
        &self,
        process: &ProcessRef,
    ) -> impl Future<Output = Result<ProcessInfo, Fault>> + Send;

    /// Every process of every active group, in any order.
    fn all_process_info(&self) -> impl Future<Output = Result<Vec<ProcessInfo>, Fault>> + Send;

    /// The daemon's and every process's facts, for `/metrics` and `/readyz`; reads each
    /// child's CPU and memory from /proc when `usage`.
    fn facts(&self, usage: bool) -> impl Future<Output = Result<Facts, Fault>> + Send;

    /// Waits for a change in what the dashboard shows (a process's state, pid, health or
    /// dependency wait; a group added or removed): answers the daemon's change counter at
    /// once when it differs from `seen`, otherwise when it moves or after `wait`. Only a
    /// difference from `seen` means anything.
    fn changes(&self, seen: u64, wait: Duration)
    -> impl Future<Output = Result<u64, Fault>> + Send;

    /// Every process of every group in the last-read config, in any order.
    fn all_config_info(&self) -> impl Future<Output = Result<Vec<ConfigInfo>, Fault>> + Send;

    /// Starts one process; with `wait`, resolves once it is `RUNNING` (after `startsecs`).
    /// Faults: `BAD_NAME`, `NO_FILE`, `NOT_EXECUTABLE`, `ALREADY_STARTED`, `FAILED`,
    /// `SPAWN_ERROR`, `ABNORMAL_TERMINATION`.
    fn start_process(
        &self,
        process: &ProcessRef,
        wait: bool,
    ) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Starts every process of `scope` that is not running (in supervisord's priority
    /// order), then waits for all of them when `wait`; one result per process started,
    /// in completion order. `BAD_NAME` for an unknown group.
    fn start_many(
        &self,
        scope: &Scope,
        wait: bool,
    ) -> impl Future<Output = Result<Vec<ProcessResult>, Fault>> + Send;

    /// Stops one process; with `wait`, resolves once it is in a stopped state.
    /// Faults: `BAD_NAME`, `NOT_RUNNING`, `FAILED`.
    fn stop_process(
        &self,
        process: &ProcessRef,
        wait: bool,
    ) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Stops every running process of `scope` (reverse priority order); one result per
    /// process that was running. `BAD_NAME` for an unknown group.
    fn stop_many(
        &self,
        scope: &Scope,
        wait: bool,
    ) -> impl Future<Output = Result<Vec<ProcessResult>, Fault>> + Send;

    /// Stops, then starts, one process (`Some`) or every process (`None`); the start
    /// phase begins when every stop has finished, and the call answers once the starts
    /// reached `RUNNING` (or failed). One result per process and phase.
    fn restart_processes(
        &self,
        process: Option<&ProcessRef>,
    ) -> impl Future<Output = Result<Vec<ProcessResult>, Fault>> + Send;

    /// Sends `signal` to one process. Faults: `BAD_NAME`, `NOT_RUNNING` (not `STARTING`,
    /// `RUNNING` or `STOPPING`), `FAILED`.
    fn signal_process(
        &self,
        process: &ProcessRef,
        signal: Signal,
    ) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Sends `signal` to every process of `scope`; one result per process.
    fn signal_many(
        &self,
        scope: &Scope,
        signal: Signal,
    ) -> impl Future<Output = Result<Vec<ProcessResult>, Fault>> + Send;

    /// Re-reads the config and diffs it against the active groups, applying nothing.
    /// `CANT_REREAD` with the parse errors as detail.
    fn reload_config(&self) -> impl Future<Output = Result<Reread, Fault>> + Send;

    /// Re-reads the config and applies the difference to every group (`vigilctl update`);
    /// with `dry_run`, the same plan, applying nothing. `CANT_REREAD` with the parse
    /// errors as detail.
    fn update(&self, dry_run: bool) -> impl Future<Output = Result<UpdateReport, Fault>> + Send;

    /// Activates a group of the last-read config. `BAD_NAME`, `ALREADY_ADDED`.
    fn add_group(&self, group: &str) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Deactivates a group whose processes are all stopped. `BAD_NAME`, `STILL_RUNNING`.
    fn remove_group(&self, group: &str) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Begins shutting down; resolves once the request is recorded, before anything stops,
    /// so the response still reaches the client.
    fn shutdown(&self) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Begins an in-process restart (stop everything, re-read config, start); same timing
    /// as [`Backend::shutdown`].
    fn restart(&self) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Vigil's live upgrade to the vigild at `binary` (its own path when empty): the new
    /// binary's pre-flight line once it accepted the handover, just before the daemon
    /// hands over. `FAILED` with why it was refused (nothing changed).
    fn upgrade(&self, binary: &str) -> impl Future<Output = Result<String, Fault>> + Send;

    /// Writes `bytes` to a process's stdin. Faults: `BAD_NAME`, `NOT_RUNNING` (no pid, or
    /// being stopped), `NO_FILE` (stdin closed).
    fn send_stdin(
        &self,
        process: &ProcessRef,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Emits a `REMOTE_COMMUNICATION` event. Allowed during shutdown.
    fn send_remote_comm_event(
        &self,
        event_type: &str,
        data: &str,
    ) -> impl Future<Output = Result<(), Fault>> + Send;

    /// The current size of a log. `BAD_NAME` for an unknown process, `NO_FILE` (detail: the
    /// configured path, or `None`) when the log has no file or the file does not exist yet.
    fn log_size(&self, source: &LogSource) -> impl Future<Output = Result<u64, Fault>> + Send;

    /// Up to `max_len` bytes (to the end when `None`) starting at byte `start`; fewer, or
    /// none, at the end of the log. Faults as [`Backend::log_size`], `FAILED` on I/O errors.
    fn read_log(
        &self,
        source: &LogSource,
        start: u64,
        max_len: Option<u64>,
    ) -> impl Future<Output = Result<Vec<u8>, Fault>> + Send;

    /// Reads a log for `tail -f`: the first call with [`FollowFrom::Tail`] answers at once
    /// (faults as [`Backend::log_size`], which the HTTP layer turns into 404); later calls
    /// with [`FollowFrom::Position`] wait until the log has news past that position, then
    /// report it. An error ends the follow (the process was removed, ...).
    fn follow_log(
        &self,
        source: &LogSource,
        from: FollowFrom,
    ) -> impl Future<Output = Result<LogFollow, Fault>> + Send;

    /// Deletes and reopens a process's stdout and stderr logs. `BAD_NAME`, `FAILED`.
    fn clear_process_logs(
        &self,
        process: &ProcessRef,
    ) -> impl Future<Output = Result<(), Fault>> + Send;

    /// Deletes and reopens the daemon's own log. `NO_FILE`, `FAILED`.
    fn clear_main_log(&self) -> impl Future<Output = Result<(), Fault>> + Send;
}
