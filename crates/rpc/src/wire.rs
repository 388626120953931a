//! The values that cross the wire between vigilctl (or an ops script) and vigild.
//!
//! Every struct mirrors a supervisord XML-RPC struct field for field where one
//! exists (supervisord's API documentation), so the XML-RPC adaptor converts without loss; Vigil's
//! additions are marked. Fields a newer peer may add or an older peer may lack
//! carry `#[serde(default)]` so a vigilctl and a vigild of neighbouring versions
//! still understand each other over JSON.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
pub use smol_str::SmolStr;
pub use vigil_config::{NameSpec, make_namespec};

use crate::error::{ControlError, SUCCESS_CODE};

/// Largest log payload one reply carries. tarpc's length-delimited frames are
/// capped at 8 MiB and an oversized frame kills the whole connection, so the
/// daemon never puts more than this many log bytes in a reply (base64 in JSON
/// makes 1 MiB about 1.4 MiB on the wire). Callers page with offsets.
pub const MAX_LOG_CHUNK: u64 = 1024 * 1024;

/// supervisord's API version, reported by `getAPIVersion`; vigilctl refuses to
/// talk to a daemon reporting another one (as supervisorctl's upcheck does).
pub const API_VERSION: &str = "3.0";

/// A process state, with supervisord's numeric codes (`supervisor.states`).
/// On the wire it is the number, so unknown future codes read as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessState {
    /// Code 0: not running, by request or never started.
    Stopped,
    /// Code 10: spawned, not yet up for `startsecs`.
    Starting,
    /// Code 20: up.
    Running,
    /// Code 30: exited too quickly; waiting to retry.
    Backoff,
    /// Code 40: asked to stop, not yet gone.
    Stopping,
    /// Code 100: exited from RUNNING.
    Exited,
    /// Code 200: could not be started (retries exhausted).
    Fatal,
    /// Code 1000, and any code this version does not know.
    Unknown,
}

impl ProcessState {
    /// Every state, in code order.
    pub const ALL: [ProcessState; 8] = [
        ProcessState::Stopped,
        ProcessState::Starting,
        ProcessState::Running,
        ProcessState::Backoff,
        ProcessState::Stopping,
        ProcessState::Exited,
        ProcessState::Fatal,
        ProcessState::Unknown,
    ];

    /// supervisord's state code.
    pub fn code(self) -> i32 {
        match self {
            ProcessState::Stopped => 0,
            ProcessState::Starting => 10,
            ProcessState::Running => 20,
            ProcessState::Backoff => 30,
            ProcessState::Stopping => 40,
            ProcessState::Exited => 100,
            ProcessState::Fatal => 200,
            ProcessState::Unknown => 1000,
        }
    }

    /// supervisord's state name (`RUNNING`).
    pub fn name(self) -> &'static str {
        match self {
            ProcessState::Stopped => "STOPPED",
            ProcessState::Starting => "STARTING",
            ProcessState::Running => "RUNNING",
            ProcessState::Backoff => "BACKOFF",
            ProcessState::Stopping => "STOPPING",
            ProcessState::Exited => "EXITED",
            ProcessState::Fatal => "FATAL",
            ProcessState::Unknown => "UNKNOWN",
        }
    }

    /// The state for a code; codes supervisord does not define read as `Unknown`.
    pub fn from_code(code: i32) -> ProcessState {
        ProcessState::ALL.into_iter().find(|s| s.code() == code).unwrap_or(ProcessState::Unknown)
    }

    /// supervisord's `STOPPED_STATES`: what `status` counts as "not running"
    /// (exit 3) and what `remove_group` requires.
    pub fn is_stopped(self) -> bool {
        matches!(
            self,
            ProcessState::Stopped
                | ProcessState::Exited
                | ProcessState::Fatal
                | ProcessState::Unknown
        )
    }
}

impl Serialize for ProcessState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.code())
    }
}

impl<'de> Deserialize<'de> for ProcessState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        i32::deserialize(deserializer).map(ProcessState::from_code)
    }
}

/// The daemon's own state (`getState`): supervisord's `SupervisorStates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DaemonState {
    /// Code 2.
    Fatal,
    /// Code 1.
    Running,
    /// Code 0: reloading.
    Restarting,
    /// Code -1.
    Shutdown,
}

impl DaemonState {
    /// supervisord's state code (`getState`).
    pub fn code(self) -> i32 {
        match self {
            DaemonState::Fatal => 2,
            DaemonState::Running => 1,
            DaemonState::Restarting => 0,
            DaemonState::Shutdown => -1,
        }
    }

    /// supervisord's state name (`RUNNING`).
    pub fn name(self) -> &'static str {
        match self {
            DaemonState::Fatal => "FATAL",
            DaemonState::Running => "RUNNING",
            DaemonState::Restarting => "RESTARTING",
            DaemonState::Shutdown => "SHUTDOWN",
        }
    }
}

/// Everything that identifies the daemon: `getAPIVersion`, `getSupervisorVersion`,
/// `getIdentification`, `getState` and `getPID` in one reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// vigild's package version (what `vigilctl version` prints).
    pub version: String,
    /// `[supervisord] identifier`.
    pub identification: String,
    /// The daemon's state (`getState`).
    pub state: DaemonState,
    /// The daemon's pid (`getPID`).
    pub pid: u32,
    /// Vigil extension: the optional calls this daemon answers, by name
    /// ([`EXTENSION_STATUS_ROWS`]). A client asks for one only when it is
    /// listed, so a newer vigilctl keeps working with an older vigild.
    #[serde(default)]
    pub extensions: Vec<String>,
}

/// [`DaemonInfo::extensions`] names this when the daemon answers
/// `status_rows`.
pub const EXTENSION_STATUS_ROWS: &str = "status_rows";

/// Vigil extension: one line of `status`, as `status_rows` answers it: the
/// name, state and description of a [`ProcessInfo`] without its log paths,
/// times and error text. A status of thousands of processes is then about
/// a fifth of the bytes for the daemon to encode and the client to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    /// The process's name inside its group.
    pub name: SmolStr,
    /// The group's name.
    pub group: SmolStr,
    /// `state` (code) on the wire; its name is [`ProcessState::name`].
    pub state: ProcessState,
    /// What `status` prints in its third column ([`ProcessInfo::description`]).
    pub description: String,
}

impl StatusRow {
    /// supervisord's `make_namespec`: `name` when it equals the group, else
    /// `group:name`.
    pub fn namespec(&self) -> String {
        make_namespec(&self.group, &self.name)
    }
}

impl From<ProcessInfo> for StatusRow {
    fn from(info: ProcessInfo) -> StatusRow {
        StatusRow {
            name: info.name,
            group: info.group,
            state: info.state,
            description: info.description,
        }
    }
}

/// Vigil extension: the result of a process's health probe.
///
/// In a status description it reads `healthy`, `unhealthy` or `health unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    /// No probe has concluded yet.
    Unknown,
    /// The last probe passed.
    Healthy,
    /// The last probe failed.
    Unhealthy {
        /// The last failure, e.g. `connect 127.0.0.1:80: refused`.
        reason: String,
    },
}

impl Health {
    /// The word a status description shows.
    pub fn word(&self) -> &'static str {
        match self {
            Health::Unknown => "health unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy { .. } => "unhealthy",
        }
    }
}

/// One process, as `getProcessInfo` reports it, plus Vigil's extras.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The process's name inside its group.
    pub name: SmolStr,
    /// The group's name.
    pub group: SmolStr,
    /// Epoch seconds of the last start; 0 if never started.
    pub start: i64,
    /// Epoch seconds of the last stop; 0 if never stopped.
    pub stop: i64,
    /// The daemon's clock (epoch seconds) when this was taken; uptimes are
    /// computed against it, not against the client's clock.
    pub now: i64,
    /// `state` (code) on the wire; `statename` is derived from it.
    pub state: ProcessState,
    /// Redundant with `state` but kept verbatim: supervisord has both.
    pub statename: SmolStr,
    /// The last spawn error, or empty.
    pub spawnerr: SmolStr,
    /// The last exit status; 0 if none; -1 when killed by a signal (supervisord's
    /// convention).
    pub exitstatus: i32,
    /// Alias of `stdout_logfile`.
    pub logfile: SmolStr,
    /// Path, or empty when the channel is not logged to a file.
    pub stdout_logfile: SmolStr,
    /// Path, or empty when the channel is not logged to a file.
    pub stderr_logfile: SmolStr,
    /// 0 when not running.
    pub pid: u32,
    /// What `status` prints in its third column, computed by the
    /// daemon in its own time zone with [`describe`].
    pub description: String,
    /// Vigil extension: `None` when the program has no probe.
    #[serde(default)]
    pub health: Option<Health>,
    /// Vigil extension: the dependencies (`depends_on`) this process is waiting
    /// for before it is spawned, as namespecs; empty when not waiting.
    #[serde(default)]
    pub waiting_for: Vec<String>,
}

impl ProcessInfo {
    /// supervisord's `make_namespec`: `name` when it equals the group, else
    /// `group:name`.
    pub fn namespec(&self) -> String {
        make_namespec(&self.group, &self.name)
    }
}

/// What `status` shows in its third column for a process (supervisord's
/// `_interpretProcessInfo`), from the other fields of `info`.
/// The daemon fills [`ProcessInfo::description`] with it.
///
/// `stop_local` formats an epoch in the daemon's local time as
/// `%b %d %I:%M %p` (`Nov 23 11:18 PM`); it is called only for a STOPPED or
/// EXITED process that was started at least once (vigil-rpc has no time-zone
/// database, the daemon has).
pub fn describe(info: &ProcessInfo, stop_local: impl FnOnce(i64) -> String) -> String {
    let base = supervisord_description(info, stop_local);
    // Vigil's extras, in the same column: health after a RUNNING description,
    // and what a STARTING process waits for.
    match (info.state, &info.health) {
        (ProcessState::Running, Some(health)) => format!("{base}, {}", health.word()),
        (ProcessState::Starting, _) if !info.waiting_for.is_empty() => {
            format!("waiting for {}", info.waiting_for.join(", "))
        }
        _ => base,
    }
}

/// The description exactly as supervisord computes it (`_interpretProcessInfo`).
fn supervisord_description(info: &ProcessInfo, stop_local: impl FnOnce(i64) -> String) -> String {
    match info.state {
        ProcessState::Running => {
            format!(
                "pid {}, uptime {}",
                info.pid,
                format_uptime(info.now.saturating_sub(info.start))
            )
        }
        ProcessState::Fatal | ProcessState::Backoff if info.spawnerr.is_empty() => {
            format!("unknown error (try \"tail {}\")", info.name)
        }
        ProcessState::Fatal | ProcessState::Backoff => info.spawnerr.to_string(),
        ProcessState::Stopped | ProcessState::Exited if info.start == 0 => "Not started".to_owned(),
        ProcessState::Stopped | ProcessState::Exited => stop_local(info.stop),
        ProcessState::Starting | ProcessState::Stopping | ProcessState::Unknown => String::new(),
    }
}

/// The `uptime H:MM:SS` part of a RUNNING description, as Python's
/// `str(timedelta)` prints it: `0:00:12`, `1 day, 2:03:04`, `3 days, 0:00:00`.
/// Negative values (clock skew) print as zero, as supervisord does.
pub fn format_uptime(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    let clock = format!("{}:{:02}:{:02}", rest / 3600, (rest % 3600) / 60, rest % 60);
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        n => format!("{n} days, {clock}"),
    }
}

/// The outcome for one process of a multi-name command: supervisord's result
/// struct `{name, group, status, description}`.
///
/// A name spec that matches nothing yields one result with the spec's group,
/// `name` = the spec's process name (`None` for a group spec) and
/// `error` = `BadName`, so vigilctl can print `x: ERROR (no such process)` or
/// `g: ERROR (no such group)` in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessResult {
    /// The process's group (or the group a group spec named).
    pub group: String,
    /// `None` only for a result about a whole group (a group spec that matched
    /// no group).
    pub name: Option<String>,
    /// `None` on success (supervisord status 80, description `OK`).
    #[serde(default)]
    pub error: Option<ControlError>,
}

impl ProcessResult {
    /// A success for `group:name`.
    pub fn ok(group: impl Into<String>, name: impl Into<String>) -> Self {
        ProcessResult { group: group.into(), name: Some(name.into()), error: None }
    }

    /// A failure; `name` is `None` for a whole group.
    pub fn failed(group: impl Into<String>, name: Option<String>, error: ControlError) -> Self {
        ProcessResult { group: group.into(), name, error: Some(error) }
    }

    /// supervisord's `status` field: the fault code, 80 on success.
    pub fn status(&self) -> i32 {
        self.error.as_ref().map_or(SUCCESS_CODE, ControlError::code)
    }

    /// supervisord's `description` field: `OK` or the fault string.
    pub fn description(&self) -> String {
        self.error.as_ref().map_or_else(|| "OK".to_owned(), ToString::to_string)
    }

    /// What supervisorctl prints before the colon.
    pub fn namespec(&self) -> String {
        match &self.name {
            Some(name) => make_namespec(&self.group, name),
            None => self.group.clone(),
        }
    }
}

/// The two phases of `restart`: every stop first, then every start, as
/// supervisorctl's `do_stop` then `do_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartReport {
    /// The results of the stop phase.
    pub stopped: Vec<ProcessResult>,
    /// The results of the start phase.
    pub started: Vec<ProcessResult>,
}

/// A process's output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogChannel {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

impl LogChannel {
    /// The channel's name: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogChannel::Stdout => "stdout",
            LogChannel::Stderr => "stderr",
        }
    }
}

/// Which log a log method works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "log", rename_all = "snake_case")]
pub enum LogTarget {
    /// The daemon's own activity log (`readLog`, `/mainlogtail`).
    Main,
    /// One channel of one process; `name` is a namespec (`name` or `group:name`).
    Process {
        /// The process's namespec.
        name: String,
        /// Which of its channels.
        channel: LogChannel,
    },
}

/// Raw bytes (log output, stdin data). Logs are not necessarily UTF-8, so they
/// travel as base64 in JSON rather than as a lossy string or a number array.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Blob)
            .map_err(serde::de::Error::custom)
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob(bytes)
    }
}

/// A reply of `read_log`: a slice of the current log file.
///
/// `start..end` are the file offsets of `bytes`. The reply is complete when
/// `end` reaches the end of what was asked (the requested end, or `size` for
/// "to EOF"); otherwise it was cut at [`MAX_LOG_CHUNK`] and the caller asks again
/// from `end` (`read_log(target, end, remaining)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSlice {
    /// The bytes read.
    pub bytes: Blob,
    /// The file offset of the first byte.
    pub start: u64,
    /// The file offset just past the last byte.
    pub end: u64,
    /// The file's size when read.
    pub size: u64,
}

/// A reply of `tail_log`: supervisord's `[bytes, offset, overflow]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTail {
    /// The last bytes of the log.
    pub bytes: Blob,
    /// The file size: pass it back as the next `offset`.
    pub offset: u64,
    /// True when there was more new data than `length` (some was skipped).
    pub overflow: bool,
}

/// A reply of `tail_follow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFollow {
    /// The bytes from `offset` on.
    pub bytes: Blob,
    /// Stream position of the first byte of `bytes`. Greater than the requested
    /// offset when the bytes in between are gone (cleared, or rotated beyond the
    /// kept backups): the client reports the gap rather than hiding it.
    pub offset: u64,
    /// Stream position just past `bytes`: the `offset` of the next call.
    pub next: u64,
}

impl LogFollow {
    /// How many bytes between the requested offset and this reply are lost.
    pub fn skipped(&self, requested: u64) -> u64 {
        self.offset.saturating_sub(requested)
    }
}

/// How a configured group differs from the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// In the file, not running (`available`).
    Added,
    /// Running with a different configuration (`changed`).
    Changed,
    /// Running, gone from the file (`disappeared`).
    Removed,
}

/// Vigil extension: what exactly changed in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChange {
    /// The group's name.
    pub group: String,
    /// Added, changed or removed.
    pub kind: ChangeKind,
    /// Per changed process: its name and the changed settings (`command`,
    /// `environment`, ...). Empty for added/removed groups.
    #[serde(default)]
    pub processes: Vec<ProcessChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Vigil extension: how one process of a changed group differs.
pub struct ProcessChange {
    /// The process's name.
    pub name: String,
    /// Added, changed or removed.
    pub kind: ChangeKind,
    #[serde(default)]
    /// The changed settings (`command`, `environment`, ...).
    pub fields: Vec<String>,
    /// True when every changed field can be applied without a restart.
    #[serde(default)]
    pub in_place: bool,
}

/// A reply of `reread`: supervisord's `[[added, changed, removed]]` (group
/// names, each sorted) plus per-group detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reread {
    /// Groups in the file and not running (`available`).
    pub added: Vec<String>,
    /// Groups running with another configuration (`changed`).
    pub changed: Vec<String>,
    /// Groups running and gone from the file (`disappeared`).
    pub removed: Vec<String>,
    #[serde(default)]
    /// Vigil extension: what changed in each group.
    pub details: Vec<GroupChange>,
}

/// What `update` did (or, with `dry_run`, would do) to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateAction {
    /// Stopped and removed (printed `g: stopped`, `g: removed process group`).
    Removed,
    /// Changed processes restarted, in-place fields applied, untouched processes
    /// kept (printed `g: stopped` when something was stopped, then
    /// `g: updated process group`).
    Updated,
    /// Added, autostart processes started (`g: added process group`).
    Added,
}

/// One step of `update`, in the order supervisorctl prints them: removals, then
/// changes, then additions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStep {
    /// The group's name.
    pub group: String,
    /// What was (or would be) done to it.
    pub action: UpdateAction,
    /// Processes stopped by this step (removed or restarted), by name.
    #[serde(default)]
    pub stopped: Vec<String>,
    /// Processes started (or restarted) by this step, by name.
    #[serde(default)]
    pub started: Vec<String>,
    /// Processes whose changes were applied in place, by name.
    #[serde(default)]
    pub changed_in_place: Vec<String>,
    /// Set when the step failed; a failed removal prints
    /// `g: has problems; not removing`.
    #[serde(default)]
    pub error: Option<ControlError>,
}

/// A reply of `update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UpdateReport {
    /// True when nothing was applied (`update --dry-run`).
    pub dry_run: bool,
    /// Requested group names that are neither running nor in the new config
    /// (`ERROR: no such group: x`).
    #[serde(default)]
    pub unknown_groups: Vec<String>,
    /// The steps, in the order they ran.
    pub steps: Vec<UpdateStep>,
}

/// One configured process, as `getAllConfigInfo` reports it. Log settings that
/// supervisord prints as `auto`/`none` are strings here too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// The process's name inside its group.
    pub name: String,
    /// The group's name.
    pub group: String,
    /// True when the group is active (running config), false when only in the
    /// last-read file.
    pub inuse: bool,
    /// `autostart=`.
    pub autostart: bool,
    /// `false`, `unexpected` or `true`.
    pub autorestart: String,
    /// The group's `priority=`.
    pub group_prio: i32,
    /// The program's `priority=`.
    pub process_prio: i32,
    /// `command=` as written, after expansion.
    pub command: String,
    #[serde(default)]
    /// `directory=`, when set.
    pub directory: Option<String>,
    #[serde(default)]
    /// The uid of `user=`, when set.
    pub uid: Option<u32>,
    /// `exitcodes=`.
    pub exitcodes: Vec<i32>,
    /// `killasgroup=`.
    pub killasgroup: bool,
    /// `stopasgroup=`.
    pub stopasgroup: bool,
    /// `redirect_stderr=`.
    pub redirect_stderr: bool,
    /// `startretries=`.
    pub startretries: u32,
    /// `startsecs=`.
    pub startsecs: u64,
    /// `stopsignal=`, as its number (`vigil_config::Signal` names it).
    pub stopsignal: i32,
    /// `stopwaitsecs=`.
    pub stopwaitsecs: u64,
    /// `serverurl=` (`AUTO` when not set).
    pub serverurl: String,
    /// The `stdout_*` settings.
    pub stdout: LogSettings,
    /// The `stderr_*` settings.
    pub stderr: LogSettings,
}

/// The six `stdout_*`/`stderr_*` fields of `getAllConfigInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSettings {
    /// Path, `auto` or `none`.
    pub logfile: String,
    /// `*_logfile_maxbytes=`.
    pub logfile_maxbytes: u64,
    /// `*_logfile_backups=`.
    pub logfile_backups: u32,
    /// `*_capture_maxbytes=`.
    pub capture_maxbytes: u64,
    /// `*_events_enabled=`.
    pub events_enabled: bool,
    /// `*_syslog=`.
    pub syslog: bool,
}

/// Vigil extension: what every surface that watches the daemon shows (`status
/// --json`, `/metrics`, `/readyz`), taken in one request. CPU and memory are read
/// from /proc for this request; nothing is polled in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// The daemon itself.
    pub daemon: DaemonFacts,
    /// Every process, sorted by group, then name.
    pub processes: Vec<ProcessFacts>,
}

/// The daemon's own facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonFacts {
    /// vigild's package version.
    pub version: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Epoch seconds when this vigild started (a reload keeps it).
    pub started: i64,
    /// The daemon's clock (epoch seconds) when the facts were taken.
    pub now: i64,
    /// Starts at 1 with the first config; every reload and every applied
    /// `update` adds one.
    pub config_generation: u64,
    /// Reloads (SIGHUP, `reload`) since vigild started.
    pub reloads: u64,
}

/// One process's facts: its [`ProcessInfo`] (flattened into the same JSON object)
/// and what it did and costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFacts {
    /// What `getProcessInfo` reports.
    #[serde(flatten)]
    pub info: ProcessInfo,
    /// `autostart` of its config.
    pub autostart: bool,
    /// EXITED with a code in its `exitcodes`: a one-shot that did its job.
    #[serde(default)]
    pub completed: bool,
    /// Spawns after the first since the daemon started (or since `update`
    /// replaced the process), automatic or requested.
    pub restarts: u64,
    /// How the last child ended; `None` if none did yet.
    pub last_exit: Option<LastExit>,
    /// CPU time and memory of the current child; `None` without a child or
    /// when /proc could not be read.
    pub usage: Option<Usage>,
    /// Bytes written to the stdout log since it was created (monotonic across
    /// rotation and `clear`).
    pub stdout_bytes: u64,
    /// The same for stderr.
    pub stderr_bytes: u64,
}

impl ProcessFacts {
    /// RUNNING, and its readiness probe (if any) passed and liveness holds; or a
    /// one-shot that [`completed`](ProcessFacts::completed).
    pub fn is_ready(&self) -> bool {
        self.completed
            || (self.info.state == ProcessState::Running
                && matches!(self.info.health, None | Some(Health::Healthy)))
    }
}

/// How a child ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Epoch seconds when it was reaped.
    pub at: i64,
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal number that killed it, when one did.
    pub signal: Option<i32>,
    /// The kernel wrote a core dump.
    pub core_dumped: bool,
    /// The kernel's OOM killer acted in the process's control group during
    /// that run (`memory_max`).
    #[serde(default)]
    pub oom_killed: bool,
}

/// CPU time and memory of a child, as the kernel accounts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// User-mode CPU time, in microseconds.
    pub cpu_user_us: u64,
    /// Kernel CPU time on its behalf, in microseconds.
    pub cpu_system_us: u64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

impl Usage {
    /// User plus system CPU time in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        // Precision loss starts beyond 2^53 µs (285 years of CPU).
        #[allow(clippy::cast_precision_loss)]
        let micros = self.cpu_user_us.saturating_add(self.cpu_system_us) as f64;
        micros / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_follow_interpret_process_info() {
        let base = ProcessInfo {
            name: "web".into(),
            group: "web".into(),
            start: 1000,
            stop: 2000,
            now: 1012,
            state: ProcessState::Running,
            statename: "RUNNING".into(),
            spawnerr: SmolStr::default(),
            exitstatus: 0,
            logfile: SmolStr::default(),
            stdout_logfile: SmolStr::default(),
            stderr_logfile: SmolStr::default(),
            pid: 61,
            description: String::new(),
            health: None,
            waiting_for: Vec::new(),
        };
        let with = |state, start, spawnerr: &str| ProcessInfo {
            state,
            start,
            spawnerr: spawnerr.into(),
            ..base.clone()
        };
        let stop = |epoch: i64| format!("local({epoch})");
        let cases = [
            (with(ProcessState::Running, 1000, ""), "pid 61, uptime 0:00:12"),
            (with(ProcessState::Running, 5000, ""), "pid 61, uptime 0:00:00"),
            (with(ProcessState::Fatal, 1000, "can't find command '/x'"), "can't find command '/x'"),
            (with(ProcessState::Backoff, 1000, ""), "unknown error (try \"tail web\")"),
            (with(ProcessState::Stopped, 0, ""), "Not started"),
            (with(ProcessState::Exited, 1000, ""), "local(2000)"),
            (with(ProcessState::Starting, 1000, ""), ""),
            (with(ProcessState::Stopping, 1000, ""), ""),
            (with(ProcessState::Unknown, 1000, ""), ""),
            // Vigil's extras: health and dependencies.
            (
                ProcessInfo { health: Some(Health::Healthy), ..base.clone() },
                "pid 61, uptime 0:00:12, healthy",
            ),
            (
                ProcessInfo {
                    health: Some(Health::Unhealthy { reason: String::new() }),
                    ..base.clone()
                },
                "pid 61, uptime 0:00:12, unhealthy",
            ),
            (
                ProcessInfo {
                    waiting_for: vec!["db".into(), "cache:healthy".into()],
                    ..with(ProcessState::Starting, 1000, "")
                },
                "waiting for db, cache:healthy",
            ),
        ];
        for (info, text) in cases {
            assert_eq!(describe(&info, stop), text, "{:?}", info.state);
        }
    }

    #[test]
    fn uptime_prints_like_python_timedelta() {
        let cases = [
            (-5, "0:00:00"),
            (12, "0:00:12"),
            (3661, "1:01:01"),
            (86_400 + 7384, "1 day, 2:03:04"),
            (3 * 86_400, "3 days, 0:00:00"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_uptime(secs), text, "{secs}");
        }
    }

    #[test]
    fn states_round_trip_as_codes_and_unknown_codes_read_as_unknown() {
        for state in ProcessState::ALL {
            let json = serde_json::to_string(&state).expect("serialize");
            assert_eq!(json, state.code().to_string());
            assert_eq!(serde_json::from_str::<ProcessState>(&json).expect("deserialize"), state);
        }
        assert_eq!(
            serde_json::from_str::<ProcessState>("77").expect("deserialize"),
            ProcessState::Unknown
        );
        let stopped: Vec<_> =
            ProcessState::ALL.into_iter().filter(|s| s.is_stopped()).map(|s| s.name()).collect();
        assert_eq!(stopped, ["STOPPED", "EXITED", "FATAL", "UNKNOWN"]);
    }

    #[test]
    fn blobs_are_base64_and_results_report_supervisord_status() {
        let blob = Blob(vec![0, 159, 146, 150, b'\n']);
        let json = serde_json::to_string(&blob).expect("serialize");
        assert_eq!(json, "\"AJ+Slgo=\"");
        assert_eq!(serde_json::from_str::<Blob>(&json).expect("deserialize"), blob);

        let ok = ProcessResult::ok("g", "p");
        assert_eq!(
            (ok.status(), ok.description(), ok.namespec()),
            (80, "OK".to_owned(), "g:p".to_owned())
        );
        let bad = ProcessResult::failed("g", None, ControlError::BadName("g".into()));
        assert_eq!(
            (bad.status(), bad.description(), bad.namespec()),
            (10, "BAD_NAME: g".to_owned(), "g".to_owned())
        );
    }

    #[test]
    fn process_info_from_an_older_daemon_without_vigil_extras_still_reads() {
        let json = r#"{"name":"a","group":"a","start":1,"stop":0,"now":5,"state":20,
            "statename":"RUNNING","spawnerr":"","exitstatus":0,"logfile":"","stdout_logfile":"",
            "stderr_logfile":"","pid":42,"description":"pid 42, uptime 0:00:04"}"#;
        let info: ProcessInfo = serde_json::from_str(json).expect("deserialize");
        assert_eq!(
            (info.state, info.health, info.waiting_for.len()),
            (ProcessState::Running, None, 0)
        );
    }
}
