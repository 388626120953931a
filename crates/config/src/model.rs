//! The validated configuration model shared by both readers (INI and TOML).
//!
//! Everything here is plain data: fully expanded (`%(...)s` resolved, `numprocs`
//! expanded into one [`ProcessConfig`] per instance), defaulted with supervisord's
//! defaults, and validated. The supervision tree consumes it read-only; `diff`
//! compares two of them. Nothing in this module touches the file system or the
//! environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// One whole configuration: the daemon settings plus every process group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The root file that was read (absolute).
    pub source: PathBuf,
    /// Every file that contributed a section, root first, then includes in read order.
    pub files: Vec<PathBuf>,
    pub supervisord: Supervisord,
    pub unix_http_server: Option<UnixHttpServer>,
    pub inet_http_server: Option<InetHttpServer>,
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
        self.groups.iter().flat_map(|g| g.processes.iter())
    }
}

/// `[supervisord]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Supervisord {
    /// The activity log; `None` for `NONE`/`OFF`.
    pub logfile: LogTarget,
    pub logfile_maxbytes: u64,
    pub logfile_backups: u32,
    pub loglevel: LogLevel,
    pub pidfile: Option<PathBuf>,
    pub umask: u32,
    pub nodaemon: bool,
    pub silent: bool,
    pub minfds: u64,
    pub minprocs: u64,
    pub nocleanup: bool,
    pub childlogdir: PathBuf,
    pub user: Option<UserSpec>,
    pub directory: Option<PathBuf>,
    pub strip_ansi: bool,
    /// `environment=`, added to every child before the program's own.
    pub environment: BTreeMap<String, String>,
    pub identifier: String,
    /// Vigil extension: what the root does when a group exhausts its restart budget.
    pub on_fatal: OnFatal,
}

/// Vigil extension: the root supervisor's reaction to a group going FATAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFatal {
    /// Leave the group FATAL and keep running (supervisord's behaviour).
    #[default]
    Ignore,
    /// Shut the whole daemon down with a non-zero exit code.
    Shutdown,
}

/// supervisord's log levels, most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Critical,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
    Blather,
}

/// Where a log goes: `NONE`, `AUTO` or a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    None,
    Auto,
    /// `syslog` given as a file name (deprecated in supervisord, kept working).
    Syslog,
    Path(PathBuf),
}

/// A user given by name or uid, resolved when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSpec {
    /// As written in the file.
    pub name: String,
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
}

/// `[unix_http_server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnixHttpServer {
    pub file: PathBuf,
    pub chmod: u32,
    /// `user` or `user:group`, resolved.
    pub chown: Option<(u32, Option<u32>)>,
    pub auth: Option<Credentials>,
}

/// `[inet_http_server]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InetHttpServer {
    /// Host part; empty means all interfaces.
    pub host: String,
    pub port: u16,
    pub auth: Option<Credentials>,
    /// Vigil extension (`allow_unauthenticated = true`): the TCP listener refuses to
    /// start without credentials unless the config says so explicitly.
    pub allow_unauthenticated: bool,
}

/// HTTP basic-auth credentials; `password` may be `{SHA}<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `[supervisorctl]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Supervisorctl {
    pub serverurl: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prompt: String,
    pub history_file: Option<PathBuf>,
}

/// What kind of section a group came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FcgiSocket {
    /// `tcp://host:port` or `unix:///path`, as written.
    pub socket: String,
    pub backlog: u32,
    pub owner: Option<(u32, Option<u32>)>,
    pub mode: u32,
}

/// `[eventlistener:x]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventListenerConfig {
    /// Event type names, upper case (`PROCESS_STATE`, `TICK_60`, ...).
    pub events: Vec<String>,
    pub buffer_size: u32,
    pub result_handler: String,
}

/// Erlang-style restart strategy of a group (Vigil extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupConfig {
    pub name: String,
    pub kind: GroupKind,
    pub priority: i32,
    /// Vigil extension.
    pub strategy: Strategy,
    /// Vigil extension: restarts allowed within `max_restarts_period` before the
    /// group goes FATAL; `None` means unlimited (supervisord's behaviour).
    pub max_restarts: Option<u32>,
    pub max_restarts_period: Duration,
    /// Instances sorted by (priority, name): start order.
    pub processes: Vec<ProcessConfig>,
}

/// `autorestart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoRestart {
    False,
    Unexpected,
    True,
}

/// A signal, kept as its number; `Display` prints supervisord's name (`TERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Signal(pub i32);

/// One output channel's logging settings (`stdout_*` or `stderr_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    pub logfile: LogTarget,
    pub maxbytes: u64,
    pub backups: u32,
    pub capture_maxbytes: u64,
    pub events_enabled: bool,
    pub syslog: bool,
}

/// Backoff shape between restarts (Vigil extension; linear 1 s steps is supervisord's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackoffConfig {
    pub kind: BackoffKind,
    pub initial: Duration,
    pub max: Option<Duration>,
    pub multiplier: f64,
    /// Fraction in 0..=1 of random spread added to each wait.
    pub jitter: f64,
    /// Stable running time after which the backoff counter resets; `None` keeps
    /// supervisord's rule (reset on entering RUNNING).
    pub reset_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackoffKind {
    Linear,
    Exponential,
}

/// A `depends_on` entry (Vigil extension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// A program name (all its instances) or a `group:process` name.
    pub name: String,
    pub condition: DependencyCondition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    Started,
    #[default]
    Running,
    Healthy,
    Completed,
    CompletedSuccessfully,
}

/// A health probe (Vigil extension).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProbeKind {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: String,
        expect_status: u16,
    },
    Exec {
        command: Vec<String>,
    },
    /// A regular expression matched against the program's output lines.
    Log {
        pattern: String,
    },
    /// systemd's `READY=1` on `NOTIFY_SOCKET`.
    Notify,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probe {
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub process_num: u32,
    pub numprocs: u32,
    pub priority: i32,
    pub autostart: bool,
    pub startsecs: u64,
    pub startretries: u32,
    pub autorestart: AutoRestart,
    pub exitcodes: Vec<i32>,
    pub stopsignal: Signal,
    pub stopwaitsecs: u64,
    pub stopasgroup: bool,
    pub killasgroup: bool,
    pub user: Option<UserSpec>,
    pub redirect_stderr: bool,
    pub stdout: LogConfig,
    pub stderr: LogConfig,
    /// The program's own `environment=` (the daemon-level one is kept in
    /// [`Supervisord::environment`] and merged at spawn time).
    pub environment: BTreeMap<String, String>,
    pub directory: Option<PathBuf>,
    pub umask: Option<u32>,
    /// `serverurl=`; `None` for AUTO.
    pub serverurl: Option<String>,
    /// Vigil extensions.
    pub backoff: BackoffConfig,
    pub depends_on: Vec<Dependency>,
    /// Stop this process and wait for its dependencies again when one of them
    /// stops meeting its condition (default true; `false` keeps it running).
    pub restart_dependents: bool,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
}

impl ProcessConfig {
    /// supervisord's namespec: `name` when group and process share a name, else `group:name`.
    pub fn namespec(&self) -> String {
        if self.group == self.name {
            self.name.clone()
        } else {
            format!("{}:{}", self.group, self.name)
        }
    }
}

/// Where something was defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    pub line: u32,
}
