//! The validated configuration model shared by both readers (INI and TOML).
//!
//! Everything here is plain data: fully expanded (`%(...)s` resolved, `numprocs`
//! expanded into one [`ProcessConfig`] per instance), defaulted with supervisord's
//! defaults, and validated. The supervision tree consumes it read-only; `diff`
//! compares two of them. Nothing in this module touches the file system or the
//! environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One whole configuration: the daemon settings plus every process group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The root file that was read (absolute).
    pub source: PathBuf,
    /// Every file that contributed a section, root first, then includes in read order.
    pub files: Vec<PathBuf>,
    /// `[supervisord]`, defaulted when the section is absent.
    pub supervisord: Supervisord,
    /// `[unix_http_server]`, when configured.
    pub unix_http_server: Option<UnixHttpServer>,
    /// `[inet_http_server]`, when configured.
    pub inet_http_server: Option<InetHttpServer>,
    /// `[supervisorctl]`, when configured.
    pub supervisorctl: Option<Supervisorctl>,
    /// `[rpcinterface:x]` sections by `x`, their keys as written.
    pub rpcinterfaces: BTreeMap<String, BTreeMap<String, String>>,
    /// `[ctlplugin:x]` sections by `x`, their keys as written.
    pub ctlplugins: BTreeMap<String, BTreeMap<String, String>>,
    /// Process groups sorted by (priority, name), the order supervisord starts them.
    pub groups: Vec<GroupConfig>,
}

impl Config {
    /// Looks a group up by name.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// All process instances of all groups, in start order.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessConfig> {
        self.groups.iter().flat_map(|g| g.processes.iter().map(|p| &**p))
    }
}

/// `[supervisord]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Supervisord {
    /// The activity log; `None` for `NONE`/`OFF`.
    pub logfile: LogTarget,
    /// Size at which the activity log rotates; 0 never rotates.
    pub logfile_maxbytes: u64,
    /// Rotated activity logs kept.
    pub logfile_backups: u32,
    /// The least severe level the activity log records.
    pub loglevel: LogLevel,
    /// Where the daemon writes its pid.
    pub pidfile: Option<PathBuf>,
    /// The daemon's umask, inherited by programs without their own.
    pub umask: u32,
    /// Stay in the foreground.
    pub nodaemon: bool,
    /// In the foreground, do not copy the activity log to stdout.
    pub silent: bool,
    /// Descriptors the daemon needs; its soft limit is raised to at least this.
    pub minfds: u64,
    /// Processes the daemon needs; its soft limit is raised to at least this.
    pub minprocs: u64,
    /// Keep AUTO child logs from earlier runs at start-up.
    pub nocleanup: bool,
    /// Where AUTO child logs are created.
    pub childlogdir: PathBuf,
    /// The user the daemon switches to at start-up.
    pub user: Option<UserSpec>,
    /// The directory the daemon changes to when it daemonizes.
    pub directory: Option<PathBuf>,
    /// Remove ANSI escape sequences from child logs.
    pub strip_ansi: bool,
    /// `environment=`, added to every child before the program's own.
    pub environment: BTreeMap<String, String>,
    /// The daemon's identifier, reported over RPC.
    pub identifier: String,
    /// Vigil extension: what the root does when a program or group goes FATAL.
    pub on_fatal: OnFatal,
    /// Vigil extension: env files every program reads (before its group's and
    /// its own), resolved against the directory of the file naming them.
    pub env_file: Vec<PathBuf>,
    /// Vigil extension: the control group under which programs' groups are made
    /// (`<root>/vigil/<program>` in every hierarchy used), as a path inside the
    /// hierarchy (`/vigil.slice`); `None` is vigild's own control group.
    pub cgroup_root: Option<String>,
    /// Vigil extension: how the activity log's lines are written.
    pub logfile_format: MainLogFormat,
}

/// Vigil extension: the activity log's line format (`logfile_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MainLogFormat {
    /// supervisord's `2026-11-23 23:34:01,123 INFO message`.
    #[default]
    Text,
    /// One JSON object per line: `{"ts","level","message"}`.
    Json,
}

/// Vigil extension: how a child's output is written to its log file
/// (`stdout_logfile_format`, `stderr_logfile_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChildLogFormat {
    /// The bytes as the child wrote them (supervisord's capture).
    #[default]
    Raw,
    /// Each line prefixed with the UTC time its first byte was read (RFC 3339,
    /// milliseconds).
    Timestamped,
    /// One JSON object per line: `{"ts","program","group","channel","pid","line"}`.
    Json,
}

/// Vigil extension: the root supervisor's reaction to a group going FATAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFatal {
    /// Leave the group FATAL and keep running (supervisord's behaviour).
    #[default]
    Ignore,
    /// Shut the whole daemon down with a non-zero exit code.
    Shutdown,
}

/// supervisord's log levels, most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only critical messages.
    Critical,
    /// Errors and above.
    Error,
    /// Warnings and above.
    Warn,
    /// The default: state changes and above.
    Info,
    /// Debugging detail and above.
    Debug,
    /// Tracing detail and above.
    Trace,
    /// Everything, the most verbose level.
    Blather,
}

/// Where a log goes: `NONE`, `AUTO` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// No log (`NONE` or `OFF`).
    None,
    /// A file in `childlogdir` named after the process (`AUTO`).
    Auto,
    /// `syslog` given as a file name (deprecated in supervisord, kept working).
    Syslog,
    /// This file, resolved against the directory of the config file.
    Path(PathBuf),
}

/// A user given by name or uid, resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    /// As written in the file.
    pub name: String,
    /// The user's id.
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
}

/// `[unix_http_server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixHttpServer {
    /// The socket's path.
    pub file: PathBuf,
    /// The socket's mode.
    pub chmod: u32,
    /// `user` or `user:group`, resolved.
    pub chown: Option<(u32, Option<u32>)>,
    /// Credentials clients must present; `None` for none.
    pub auth: Option<Credentials>,
}

/// `[inet_http_server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InetHttpServer {
    /// Host part; empty means all interfaces.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// Credentials clients must present; `None` for none.
    pub auth: Option<Credentials>,
    /// Vigil extension (`allow_unauthenticated = true`): the TCP listener refuses to
    /// start without credentials unless the config says so explicitly.
    pub allow_unauthenticated: bool,
}

/// HTTP basic-auth credentials; `password` may be `{SHA}<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The user name clients send.
    pub username: String,
    /// The password, in clear or as `{SHA}<hex>`.
    pub password: String,
}

/// `[supervisorctl]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervisorctl {
    /// The daemon's URL: `http://host:port` or `unix:///path`.
    pub serverurl: String,
    /// The user name sent to the daemon.
    pub username: Option<String>,
    /// The password sent to the daemon.
    pub password: Option<String>,
    /// The interactive shell's prompt.
    pub prompt: String,
    /// Where the interactive shell keeps its history.
    pub history_file: Option<PathBuf>,
}

/// What kind of section a group came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// `[program:x]`: a homogeneous group named after the program.
    Program,
    /// `[group:x]`: a heterogeneous group of programs.
    Heterogeneous,
    /// `[fcgi-program:x]`: processes sharing one listening socket.
    Fcgi(FcgiSocket),
    /// `[eventlistener:x]`: a pool of event listeners.
    EventListener(EventListenerConfig),
}

/// `[fcgi-program:x]` socket settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcgiSocket {
    /// `tcp://host:port` or `unix:///path`, as written.
    pub socket: String,
    /// The listen backlog (`socket_backlog`).
    pub backlog: u32,
    /// `socket_owner`: user and group ids, unix sockets only.
    pub owner: Option<(u32, Option<u32>)>,
    /// `socket_mode`, unix sockets only.
    pub mode: u32,
}

/// `[eventlistener:x]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventListenerConfig {
    /// Event type names, upper case (`PROCESS_STATE`, `TICK_60`, ...).
    pub events: Vec<String>,
    /// Events queued for the pool before the oldest is dropped.
    pub buffer_size: u32,
    /// supervisord's result handler, as written.
    pub result_handler: String,
}

/// Erlang-style restart strategy of a group (Vigil extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the process that died (supervisord's behaviour).
    #[default]
    OneForOne,
    /// Stop all members and restart them all in order.
    OneForAll,
    /// Restart the dead member and every member started after it.
    RestForOne,
}

/// One process group: the unit `update`, `add` and `remove` work on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// The group's name.
    pub name: String,
    /// The kind of section the group came from.
    pub kind: GroupKind,
    /// Start order: lower first, stopped last.
    pub priority: i32,
    /// Vigil extension.
    pub strategy: Strategy,
    /// Vigil extension: restarts allowed within `max_restarts_period` before the
    /// group goes FATAL; `None` means unlimited (supervisord's behaviour).
    pub max_restarts: Option<u32>,
    /// Vigil extension: the window `max_restarts` counts in.
    pub max_restarts_period: Duration,
    /// Instances sorted by (priority, name): start order. Shared, so that a
    /// cloned config (the daemon keeps the running one and the last one read,
    /// the supervision tree each process's) holds one copy of each
    /// program's settings; change one with `Arc::make_mut`.
    pub processes: Vec<std::sync::Arc<ProcessConfig>>,
}

/// `autorestart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoRestart {
    /// Never restart.
    False,
    /// Restart when the exit code is not in `exitcodes` (the default).
    Unexpected,
    /// Always restart.
    True,
}

/// A signal, kept as its number; `Display` prints supervisord's name (`TERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal(pub i32);

/// One output channel's logging settings (`stdout_*` or `stderr_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Where the channel's output goes.
    pub logfile: LogTarget,
    /// Size at which the log rotates; 0 never rotates.
    pub maxbytes: u64,
    /// Rotated logs kept.
    pub backups: u32,
    /// Capture-mode buffer size; 0 disables capture mode.
    pub capture_maxbytes: u64,
    /// Emit a `PROCESS_LOG` event per chunk of output.
    pub events_enabled: bool,
    /// Also send the output to syslog.
    pub syslog: bool,
    /// Vigil extension: how the output is written to the log file.
    pub format: ChildLogFormat,
    /// Vigil extension: also copy each line to the daemon's stdout, prefixed
    /// with the process name.
    pub echo: bool,
}

/// Backoff shape between restarts (Vigil extension; linear 1 s steps is supervisord's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackoffConfig {
    /// How the wait grows between attempts.
    pub kind: BackoffKind,
    /// The first wait.
    pub initial: Duration,
    /// The longest wait; `None` for no cap.
    pub max: Option<Duration>,
    /// Growth factor per attempt of an exponential backoff.
    pub multiplier: f64,
    /// Fraction in 0..=1 of random spread added to each wait.
    pub jitter: f64,
    /// Stable running time after which the backoff counter resets; `None` keeps
    /// supervisord's rule (reset on entering RUNNING).
    pub reset_after: Option<Duration>,
}

/// How the wait between restart attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffKind {
    /// One `initial` step more per attempt (supervisord's rule).
    Linear,
    /// `multiplier` times the previous wait.
    Exponential,
}

/// A `depends_on` entry (Vigil extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// A program name (all its instances) or a `group:process` name.
    pub name: String,
    /// What the dependency must reach before this process starts.
    pub condition: DependencyCondition,
}

/// What a dependency must reach (`depends_on = "db:healthy"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    /// The dependency has a process (STARTING or RUNNING).
    Started,
    /// The dependency is RUNNING (the default).
    #[default]
    Running,
    /// The dependency is RUNNING and its readiness probe passed.
    Healthy,
    /// The dependency ran and exited (EXITED).
    Completed,
    /// The dependency exited with an expected exit code.
    CompletedSuccessfully,
}

/// A health probe (Vigil extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// A TCP connect to `host:port` succeeds.
    Tcp {
        /// The host to connect to (`127.0.0.1` when written as `*` or empty).
        host: String,
        /// The port to connect to.
        port: u16,
    },
    /// An HTTP GET of `url` answers `expect_status`.
    Http {
        /// The URL to fetch.
        url: String,
        /// The status that counts as healthy.
        expect_status: u16,
    },
    /// A command exits with status 0.
    Exec {
        /// The command's argv.
        command: Vec<String>,
    },
    /// A regular expression matched against the program's output lines.
    Log {
        /// The regular expression.
        pattern: String,
    },
    /// systemd's `READY=1` on `NOTIFY_SOCKET`.
    Notify,
}

/// A probe with its timing (Vigil extension: `ready_*` or `live_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// What is checked.
    pub kind: ProbeKind,
    /// Time between attempts.
    pub period: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Consecutive failures before the probe counts as failed.
    pub failure_threshold: u32,
    /// Delay before the first attempt.
    pub initial_delay: Duration,
}

/// One process instance, fully expanded (`numprocs` already applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// The instance name (`process_name` expanded).
    pub name: String,
    /// The group it belongs to.
    pub group: String,
    /// The `[program:x]` section it came from.
    pub program: String,
    /// The file and line of the section header, for messages.
    pub origin: Origin,
    /// The command split into argv (shell-like quoting), not yet PATH-resolved.
    pub command: Vec<String>,
    /// The command string as written after expansion, for display.
    pub command_line: String,
    /// This instance's `%(process_num)`.
    pub process_num: u32,
    /// How many instances the program has.
    pub numprocs: u32,
    /// Start order within the group: lower first, stopped last.
    pub priority: i32,
    /// Start when the daemon starts.
    pub autostart: bool,
    /// Seconds the process must stay up to count as started.
    pub startsecs: u64,
    /// Failed starts allowed before the process goes FATAL.
    pub startretries: u32,
    /// When an exited process is restarted.
    pub autorestart: AutoRestart,
    /// Exit codes that count as expected.
    pub exitcodes: Vec<i32>,
    /// The signal that asks the process to stop.
    pub stopsignal: Signal,
    /// Seconds to wait after `stopsignal` before SIGKILL.
    pub stopwaitsecs: u64,
    /// Send `stopsignal` to the whole process group.
    pub stopasgroup: bool,
    /// Send SIGKILL to the whole process group.
    pub killasgroup: bool,
    /// The user the process runs as.
    pub user: Option<UserSpec>,
    /// Send stderr to the stdout log.
    pub redirect_stderr: bool,
    /// The stdout channel.
    pub stdout: LogConfig,
    /// The stderr channel.
    pub stderr: LogConfig,
    /// The program's own `environment=` (the daemon-level one is kept in
    /// [`Supervisord::environment`] and merged at spawn time).
    pub environment: BTreeMap<String, String>,
    /// Vigil extension: the env files this process reads, in order:
    /// `[supervisord]`'s, its group's, its own.
    pub env_files: Vec<PathBuf>,
    /// What those files set, merged in that order (a later file wins). Between
    /// `[supervisord] environment` and `environment=` in precedence.
    pub env_file_vars: EnvFileVars,
    /// The working directory; `None` keeps the daemon's.
    pub directory: Option<PathBuf>,
    /// The process's umask; `None` keeps the daemon's.
    pub umask: Option<u32>,
    /// `serverurl=`; `None` for AUTO.
    pub serverurl: Option<String>,
    /// Vigil extensions.
    pub backoff: BackoffConfig,
    /// Vigil extension: what must be up before this process starts.
    pub depends_on: Vec<Dependency>,
    /// Stop this process and wait for its dependencies again when one of them
    /// stops meeting its condition (default true; `false` keeps it running).
    pub restart_dependents: bool,
    /// Vigil extension: the `ready_*` probe that gates RUNNING. Boxed, as
    /// `liveness`: most programs have none, and every program keeps its
    /// config for as long as it is configured.
    pub readiness: Option<Box<Probe>>,
    /// Vigil extension: the `live_*` probe that restarts a hung process.
    pub liveness: Option<Box<Probe>>,
    /// Vigil extension: when this process ends by itself (exits, or goes
    /// FATAL), the daemon shuts down in order and exits with its status.
    pub essential: bool,
    /// Vigil extension: resource limits set in the child before exec
    /// (`rlimit_<name>` keys, or a TOML `rlimits` table), in [`RLIMITS`] order.
    pub rlimits: Vec<ResourceLimit>,
    /// Vigil extension: the process's own control group and the limits set on
    /// it; `None` runs it in vigild's.
    pub cgroup: Option<CgroupLimits>,
}

/// A process's control group (Vigil extension): the limits the kernel enforces
/// on the process and everything it starts. With every field `None` (`cgroup =
/// true` alone) the group only tracks the processes, for `stopasgroup` and
/// `killasgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CgroupLimits {
    /// `memory_max`: bytes beyond which the kernel's OOM killer acts.
    pub memory_max: Option<u64>,
    /// `memory_restart_threshold`: bytes beyond which vigild restarts it.
    pub memory_restart_threshold: Option<u64>,
    /// `cpu_quota`: percent of one CPU (`150` is one and a half CPUs).
    pub cpu_quota: Option<u32>,
    /// `pids_max`: the most processes and threads at once.
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    /// True when a limit needs the memory controller.
    pub fn needs_memory(&self) -> bool {
        self.memory_max.is_some() || self.memory_restart_threshold.is_some()
    }
}

/// The resource limits a program may set, by their key name (`rlimit_nofile`),
/// and whether a value is a byte size (`rlimit_as = 2GB`).
pub const RLIMITS: &[(&str, bool)] = &[
    ("as", true),
    ("core", true),
    ("cpu", false),
    ("data", true),
    ("fsize", true),
    ("locks", false),
    ("memlock", true),
    ("msgqueue", true),
    ("nice", false),
    ("nofile", false),
    ("nproc", false),
    ("rss", true),
    ("rtprio", false),
    ("rttime", false),
    ("sigpending", false),
    ("stack", true),
];

impl ResourceLimit {
    /// The kernel's resource this limit sets.
    pub fn resource(&self) -> Option<nix::sys::resource::Resource> {
        use nix::sys::resource::Resource;
        Some(match self.name {
            "as" => Resource::RLIMIT_AS,
            "core" => Resource::RLIMIT_CORE,
            "cpu" => Resource::RLIMIT_CPU,
            "data" => Resource::RLIMIT_DATA,
            "fsize" => Resource::RLIMIT_FSIZE,
            "locks" => Resource::RLIMIT_LOCKS,
            "memlock" => Resource::RLIMIT_MEMLOCK,
            "msgqueue" => Resource::RLIMIT_MSGQUEUE,
            "nice" => Resource::RLIMIT_NICE,
            "nofile" => Resource::RLIMIT_NOFILE,
            "nproc" => Resource::RLIMIT_NPROC,
            "rss" => Resource::RLIMIT_RSS,
            "rtprio" => Resource::RLIMIT_RTPRIO,
            "rttime" => Resource::RLIMIT_RTTIME,
            "sigpending" => Resource::RLIMIT_SIGPENDING,
            "stack" => Resource::RLIMIT_STACK,
            _ => return None,
        })
    }
}

/// One resource limit: `1024`, `1024:4096` (soft:hard) or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ResourceLimit {
    /// The name without `rlimit_` (`nofile`), one of [`RLIMITS`].
    pub name: &'static str,
    /// The soft limit; `None` is unlimited.
    pub soft: Option<u64>,
    /// The hard limit; `None` is unlimited.
    pub hard: Option<u64>,
}

/// Read back by hand: the name is one of [`RLIMITS`], never borrowed input.
impl<'de> Deserialize<'de> for ResourceLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Read {
            name: String,
            soft: Option<u64>,
            hard: Option<u64>,
        }
        let Read { name, soft, hard } = Read::deserialize(deserializer)?;
        let Some(&(name, _)) = RLIMITS.iter().find(|(known, _)| *known == name) else {
            let unexpected = serde::de::Unexpected::Str(&name);
            return Err(serde::de::Error::invalid_value(unexpected, &"a resource limit's name"));
        };
        Ok(ResourceLimit { name, soft, hard })
    }
}

impl ProcessConfig {
    /// supervisord's namespec: `name` when group and process share a name, else `group:name`.
    pub fn namespec(&self) -> String {
        crate::namespec::make_namespec(&self.group, &self.name)
    }
}

/// Variables read from env files. They are secrets: `Debug` and a
/// human-readable `Serialize` (JSON, TOML) show the names only, so no dump of
/// a config carries a value; only a binary form (a live upgrade's carried
/// config, which never leaves the daemon) holds the values, and only a binary
/// form reads back. Shared, so the instances of a program hold one copy.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvFileVars(Arc<BTreeMap<String, String>>);

impl EnvFileVars {
    /// Wraps merged variables.
    pub fn new(vars: BTreeMap<String, String>) -> EnvFileVars {
        EnvFileVars(Arc::new(vars))
    }

    /// The variables, for the child's environment only.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// True when no file set anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for EnvFileVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Serialize for EnvFileVars {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_seq(self.0.keys())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for EnvFileVars {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            return Err(serde::de::Error::custom(
                "env file values are not kept in a readable form",
            ));
        }
        BTreeMap::deserialize(deserializer).map(EnvFileVars::new)
    }
}

/// Where something was defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line; 0 when unknown.
    pub line: u32,
}
