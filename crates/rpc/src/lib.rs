//! vigil-rpc: the control service shared by vigild, vigilctl and ops scripts.
//!
//! It owns the [`Control`] tarpc trait (the contract vigild implements), the wire
//! types ([`wire`]), the fault enum ([`ControlError`], supervisord's `Faults`), and
//! the transport: [`connect`] for clients, [`serve_stream`]/[`serve_unix`] for the
//! daemon, and the authentication handshake between them ([`transport`]).
//! It knows nothing of vigil-core: the daemon translates. supervisord's vocabulary
//! (namespecs, signal names) comes from vigil-config, which the daemon and
//! vigilctl share with it.
//!
//! # Mapping supervisord's XML-RPC API
//!
//! vigild serves supervisord's XML-RPC (its `xmlrpc` module) by calling the same
//! `Control` implementation in process. Every `supervisor.*` method maps onto one
//! trait method without loss:
//!
//! | XML-RPC | `Control` |
//! |---|---|
//! | `getAPIVersion`, `getSupervisorVersion`, `getIdentification`, `getState`, `getPID` | [`Control::daemon_info`] |
//! | `getProcessInfo` / `getAllProcessInfo` | [`Control::process_info`] / [`Control::all_process_info`] |
//! | `startProcess(n)` / `startProcessGroup(g)` / `startAllProcesses` | [`Control::start`] with `[n]` / `[g:*]` / `[all]` |
//! | `stopProcess*`, `signalProcess*` | [`Control::stop`], [`Control::signal`] likewise |
//! | `readLog`, `readProcessStdoutLog`, `readProcessStderrLog` | [`Control::read_log`], paged until complete |
//! | `tailProcessStdoutLog`, `tailProcessStderrLog` | [`Control::tail_log`] |
//! | `/logtail/...`, `/mainlogtail` | [`Control::tail_follow`] in a loop |
//! | `clearLog` / `clearProcessLogs` / `clearAllProcessLogs` | [`Control::clear_main_log`] / [`Control::clear_logs`] |
//! | `reloadConfig` | [`Control::reread`] |
//! | `addProcessGroup` / `removeProcessGroup` | [`Control::add_group`] / [`Control::remove_group`] |
//! | `getAllConfigInfo` | [`Control::avail`] |
//! | `restart` / `shutdown` | [`Control::reload`] / [`Control::shutdown`] |
//! | `sendProcessStdin` / `sendRemoteCommEvent` | [`Control::send_stdin`] / [`Control::send_comm_event`] |
//!
//! A single-process XML-RPC call that gets back one failed [`ProcessResult`]
//! raises that result's error as the fault, which is what supervisord does.

#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod transport;
pub mod wire;

pub use client::{CallError, flatten, read_log_all};
pub use error::{ConfigErrorLine, ControlError, SUCCESS_CODE};
pub use transport::{
    ConnectError, PROTOCOL_VERSION, Prefixed, SendControl, ServeError, ServerAuth, connect,
    context_with_timeout, serve_stream, serve_stream_ending, serve_stream_until, serve_unix,
};
pub use wire::*;

/// Paths used by [`impl_send_control!`](crate::impl_send_control), so callers need not depend on tarpc
/// and futures themselves.
#[doc(hidden)]
pub mod __private {
    pub use futures;
    pub use tarpc;
}

/// The control service. Every method returns `Result<_, ControlError>`; transport
/// failures (deadline, lost connection) surface separately as
/// `tarpc::client::RpcError`.
///
/// Methods taking `specs: Vec<NameSpec>` act on every matched process
/// concurrently in the daemon and answer once, with one [`ProcessResult`] per
/// process in the order of the specs (processes of a group or of `all` sorted by
/// group, then name). A spec matching nothing gives one `BadName` result in its
/// place. `all` anywhere in the list means every process. The method itself
/// fails only for daemon-wide reasons (`ShutdownState`).
///
/// Callers must set a deadline (see [`context_with_timeout`]) longer than the work:
/// tarpc's default of 10 s is shorter than a `stopwaitsecs` or a `startsecs`
/// wait, and an expired deadline cancels the handler in the daemon.
///
/// Cancellation contract for implementers: tarpc drops the handler future when
/// the caller goes away (Ctrl-C, deadline, lost connection). An action the
/// handler has begun (a stop, a start, an update step) must still run to its
/// end in the supervision tree; only the *answer* is abandoned. So handlers
/// send the work to the actors and merely await the outcome.
#[tarpc::service]
pub trait Control {
    /// Identification, version, state and pid of the daemon. vigilctl calls it
    /// before other commands to check the API version (supervisorctl's upcheck).
    async fn daemon_info() -> Result<DaemonInfo, ControlError>;

    /// Vigil extension: the daemon's and every process's [`Facts`] (restarts,
    /// last exit, CPU, memory, bytes logged), reading each child's CPU and
    /// memory from /proc once for this call when `usage`.
    async fn facts(usage: bool) -> Result<Facts, ControlError>;

    /// Vigil extension: long-poll for a change in what a live view shows: a
    /// process's state, pid, health or dependency wait, or a group added,
    /// replaced or removed. Answers the change counter at once when it differs
    /// from `seen`, otherwise when it moves or after `wait_ms`. Only a
    /// difference from `seen` means anything, so a first call passes any value
    /// with `wait_ms = 0`, then the view reads [`Control::facts`] and waits with
    /// the counter it got. The daemon does nothing while nobody waits, and the
    /// caller's deadline must exceed `wait_ms`.
    async fn changes(seen: u64, wait_ms: u64) -> Result<u64, ControlError>;

    /// Every process, sorted by group, then name (`getAllProcessInfo`).
    async fn all_process_info() -> Result<Vec<ProcessInfo>, ControlError>;

    /// Vigil extension: every process's [`StatusRow`], in
    /// [`Control::all_process_info`]'s order: what `status` prints, in a
    /// fifth of the bytes. Listed in [`DaemonInfo::extensions`] as
    /// [`EXTENSION_STATUS_ROWS`].
    async fn status_rows() -> Result<Vec<StatusRow>, ControlError>;

    /// One process by namespec (`name` or `group:name`); `BadName` for an
    /// unknown name and for `group:*`.
    async fn process_info(name: String) -> Result<ProcessInfo, ControlError>;

    /// Starts processes. Per process: `AlreadyStarted` (STARTING, RUNNING or
    /// BACKOFF), `NoFile`, `NotExecutable`, `SpawnError`, `Failed`. With `wait`,
    /// answers when each process reached RUNNING (at least `startsecs`), giving
    /// `AbnormalTermination` for one that left STARTING meanwhile. Processes of a
    /// group/`all` spec that are already running are skipped silently, as
    /// supervisord's `startProcessGroup` does; a single named one is reported.
    async fn start(specs: Vec<NameSpec>, wait: bool) -> Result<Vec<ProcessResult>, ControlError>;

    /// Stops processes. Per process: `NotRunning`, `Failed` (whose text is what
    /// vigilctl prints). With `wait`, answers when each is in a stopped state.
    /// Group/`all` specs include only processes that were running.
    async fn stop(specs: Vec<NameSpec>, wait: bool) -> Result<Vec<ProcessResult>, ControlError>;

    /// Stops, then starts, the matched processes; the start phase begins when
    /// every stop has finished. Each phase has the semantics of `stop`/`start`.
    async fn restart(specs: Vec<NameSpec>, wait: bool) -> Result<RestartReport, ControlError>;

    /// Sends a signal, given by name (`HUP`, `SIGHUP`) or number (`1`) as
    /// [`vigil_config::Signal::parse`] reads it; the text travels as typed so
    /// that the daemon checks the name after the process, in supervisord's
    /// order. Per process: `BadSignal`, `NotRunning` (not
    /// RUNNING/STARTING/STOPPING), `Failed`.
    async fn signal(
        specs: Vec<NameSpec>,
        signal: String,
    ) -> Result<Vec<ProcessResult>, ControlError>;

    /// Reads a log with `readLog`'s rules: `offset < 0, length == 0`: the last
    /// `-offset` bytes; `offset >= 0, length == 0`: from `offset` to EOF;
    /// `offset >= 0, length > 0`: `length` bytes from `offset`; anything else is
    /// `BadArguments`. Offsets are file offsets in the current log file. At most
    /// [`MAX_LOG_CHUNK`] bytes come back: the *first* part of the range, with
    /// `end` saying where to continue. Faults: `BadName`, `NoFile` (no log file),
    /// `Failed`.
    async fn read_log(
        target: LogTarget,
        offset: i64,
        length: i64,
    ) -> Result<LogSlice, ControlError>;

    /// supervisord's `tailProcess*Log`: if `offset >= size` no bytes, else the last
    /// `min(length, size)` bytes (which may start before `offset`);
    /// `overflow = size > offset + length`; the returned offset is the size. No
    /// log file gives empty bytes at offset 0. `length` above [`MAX_LOG_CHUNK`] is
    /// treated as `MAX_LOG_CHUNK` (and `overflow` reports the loss).
    async fn tail_log(target: LogTarget, offset: u64, length: u64)
    -> Result<LogTail, ControlError>;

    /// Long-poll for `tail -f`.
    ///
    /// Positions here are *stream positions*, not file offsets: the count of
    /// bytes ever written to this channel since the daemon started it. The daemon
    /// keeps them monotonic across rotation and `clear`, so a client that passes
    /// each reply's `next` as the next `offset` sees every byte exactly once, in
    /// order, however often the file rotates.
    ///
    /// - `offset < 0`: start `-offset` bytes before the current end (the first
    ///   call; `tail -f` uses -1024 like supervisord's `/logtail`).
    /// - `offset >= 0`: continue from that position. If data is there, answer at
    ///   once with up to `min(max_bytes, MAX_LOG_CHUNK)` bytes; otherwise wait up to
    ///   `wait_ms` for output and answer with what came (possibly nothing, with
    ///   `next == offset`).
    /// - If the bytes at `offset` are no longer kept (cleared, or rotated beyond
    ///   the backups), the reply starts at the oldest kept position and
    ///   `reply.offset > offset` tells the client how much was lost.
    /// - An offset beyond the current end is `BadArguments`.
    ///
    /// The caller's deadline must exceed `wait_ms`. Faults: `BadName`, `NoFile`.
    async fn tail_follow(
        target: LogTarget,
        offset: i64,
        max_bytes: u64,
        wait_ms: u64,
    ) -> Result<LogFollow, ControlError>;

    /// Deletes and reopens the main log (`clearLog`).
    async fn clear_main_log() -> Result<(), ControlError>;

    /// Clears the stdout and stderr logs of the matched processes; per process
    /// `Failed` on error.
    async fn clear_logs(specs: Vec<NameSpec>) -> Result<Vec<ProcessResult>, ControlError>;

    /// Re-reads the configuration and compares its groups with the running ones,
    /// applying nothing. `ConfigErrors` when the file has errors.
    async fn reread() -> Result<Reread, ControlError>;

    /// Re-reads the configuration and applies the difference for `groups` (all
    /// groups when empty or containing `all`): removed groups stop and go,
    /// changed processes restart (or are changed in place), added groups start
    /// their autostart processes; untouched processes keep running. With
    /// `dry_run`, computes the same plan and applies nothing. A config with
    /// errors changes nothing and fails with `ConfigErrors`.
    async fn update(groups: Vec<String>, dry_run: bool) -> Result<UpdateReport, ControlError>;

    /// Activates a group from the last-read config. Faults: `AlreadyAdded`,
    /// `BadName`.
    async fn add_group(name: String) -> Result<(), ControlError>;

    /// Removes a group whose processes are all stopped. Faults: `StillRunning`,
    /// `BadName`.
    async fn remove_group(name: String) -> Result<(), ControlError>;

    /// Every process of the last-read config, sorted by name (`getAllConfigInfo`).
    async fn avail() -> Result<Vec<ConfigInfo>, ControlError>;

    /// Restarts the daemon in place: stops everything, re-reads the config from
    /// scratch, starts the autostart programs. Answers before doing it.
    async fn reload() -> Result<(), ControlError>;

    /// Shuts the daemon down. Answers before doing it.
    async fn shutdown() -> Result<(), ControlError>;

    /// Vigil extension: live upgrade. The daemon runs `binary` (its own path
    /// when `None`) with `--handover-check`; when that accepts the running
    /// handover format and the configuration, the answer is its line
    /// (`vigild VERSION reads handover format N`) and the daemon then
    /// replaces its image with `binary`: same pid, every process kept running.
    /// Connections made meanwhile wait for the new image. Faults: `Failed`
    /// with why the upgrade was refused (nothing changed), `ShutdownState`.
    async fn upgrade(binary: Option<String>) -> Result<String, ControlError>;

    /// Queues bytes for a process's stdin and answers without waiting for the
    /// process to read them. Faults: `BadName`, `NotRunning`, `NoFile` (stdin
    /// closed), `Failed` (the process's queue is full; nothing was queued).
    async fn send_stdin(name: String, data: Blob) -> Result<(), ControlError>;

    /// Emits a `REMOTE_COMMUNICATION` event; allowed while shutting down.
    async fn send_comm_event(kind: String, data: String) -> Result<(), ControlError>;
}
