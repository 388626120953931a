//! The documentation table of the config format: every section and key with its
//! default and a one-line meaning, and whether it is a Vigil extension. It is
//! data for the vigil.conf(5) man page (rendered by vigil-daemon's gen-docs
//! example); a test keeps it in step with the keys the readers accept.

/// One section type of the config format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionDoc {
    /// The section header as written, `x` standing for a name (`program:x`).
    pub section: &'static str,
    /// What the section configures, one line.
    pub meaning: &'static str,
}

/// One key of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// [`SectionDoc::section`] of the section the key belongs to.
    pub section: &'static str,
    /// The key as written (keys are case-insensitive).
    pub key: &'static str,
    /// The value when the key is absent; `""` when absence means "not set".
    pub default: &'static str,
    /// What the key does, one line.
    pub meaning: &'static str,
    /// True for keys supervisord does not have.
    pub extension: bool,
}

/// The sections, in the order the page documents them.
pub const SECTIONS: &[SectionDoc] = &[
    SectionDoc {
        section: "supervisord",
        meaning: "The daemon itself: its log, pid file, limits and the environment of every child.",
    },
    SectionDoc {
        section: "unix_http_server",
        meaning: "The control socket on the file system that vigilctl and supervisorctl connect to.",
    },
    SectionDoc {
        section: "inet_http_server",
        meaning: "A TCP listener for the same control protocols.",
    },
    SectionDoc {
        section: "supervisorctl",
        meaning: "Where the control clients connect, and how they prompt.",
    },
    SectionDoc {
        section: "program:x",
        meaning: "A program to supervise, run as numprocs processes.",
    },
    SectionDoc {
        section: "fcgi-program:x",
        meaning: "A program whose processes share a listening socket opened by the daemon; all program:x keys apply too.",
    },
    SectionDoc {
        section: "eventlistener:x",
        meaning: "A program that receives event notifications on its stdin; all program:x keys apply too.",
    },
    SectionDoc {
        section: "group:x",
        meaning: "A group of programs started, stopped and restarted together.",
    },
    SectionDoc { section: "include", meaning: "More config files to read." },
];

/// The meaning of `env_file` wherever it may stand.
const ENV_FILE: &str = "Dotenv files (one path or a list) whose variables are added to the environment: daemon < [supervisord] environment < env files ([supervisord], group, program) < environment=.";
/// The meaning of each `rlimit_*` key.
const RLIMIT: &str = "Resource limit set in the child before exec: N, SOFT:HARD or unlimited (sizes such as 512MB for byte limits).";

/// The meaning of `stdout_logfile_format` and `stderr_logfile_format`.
const LOG_FORMAT: &str = "How output is written to the log file: raw (the bytes as written), timestamped (each line prefixed with its UTC RFC 3339 time, milliseconds) or json ({\"ts\",\"program\",\"group\",\"channel\",\"pid\",\"line\"} per line; invalid UTF-8 becomes U+FFFD).";
/// The meaning of `stdout_echo` and `stderr_echo`.
const ECHO: &str = "Also copy each line to the daemon's stdout as `name | line` (the container log; coloured on a terminal unless NO_COLOR is set).";

const fn key(
    section: &'static str,
    key: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc { section, key, default, meaning, extension: false }
}

const fn ext(
    section: &'static str,
    key: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> KeyDoc {
    KeyDoc { section, key, default, meaning, extension: true }
}

const D: &str = "supervisord";
const U: &str = "unix_http_server";
const I: &str = "inet_http_server";
const C: &str = "supervisorctl";
const P: &str = "program:x";
const F: &str = "fcgi-program:x";
const E: &str = "eventlistener:x";
const G: &str = "group:x";

// Meanings shared by sections that take the same key.
const STRATEGY: &str = "Restart strategy: one_for_one, one_for_all or rest_for_one.";
const MAX_RESTARTS: &str = "Restarts allowed within max_restarts_period before the group is FATAL.";
const USERNAME: &str = "User name clients must authenticate with.";
const PASSWORD: &str =
    "Password clients must authenticate with, plain or {SHA} followed by its SHA-1 hex digest.";

/// Every key, grouped by section in [`SECTIONS`] order.
pub const KEYS: &[KeyDoc] = &[
    key(
        D,
        "logfile",
        "supervisord.log",
        "The daemon's own log file; NONE or OFF for none, SYSLOG for syslog.",
    ),
    key(D, "logfile_maxbytes", "50MB", "Size at which the daemon's log rotates; 0 never rotates."),
    key(D, "logfile_backups", "10", "Rotated copies of the daemon's log kept."),
    key(
        D,
        "loglevel",
        "info",
        "Least severe message logged: critical, error, warn, info, debug, trace or blather.",
    ),
    key(D, "pidfile", "supervisord.pid", "File the daemon writes its pid to."),
    key(D, "umask", "022", "Octal umask of the daemon and of the programs that set none."),
    key(D, "nodaemon", "false", "Stay in the foreground instead of daemonizing."),
    key(D, "silent", "false", "In the foreground, do not copy the log to stdout."),
    key(
        D,
        "minfds",
        "1024",
        "File descriptors the daemon needs; it raises its limit or refuses to start.",
    ),
    key(
        D,
        "minprocs",
        "200",
        "Processes the daemon's user needs; it raises its limit or refuses to start.",
    ),
    key(
        D,
        "nocleanup",
        "false",
        "Keep leftover AUTO child logs at startup instead of removing them.",
    ),
    key(D, "childlogdir", "$TMPDIR, $TEMP or $TMP, else /tmp", "Directory of the AUTO child logs."),
    key(D, "user", "", "User the daemon switches to after startup (needs root)."),
    key(D, "directory", "", "Directory the daemon changes to when it daemonizes."),
    key(D, "strip_ansi", "false", "Remove ANSI escape sequences from child logs."),
    key(
        D,
        "environment",
        "",
        "KEY=\"value\" pairs, comma-separated, added to every child's environment.",
    ),
    key(D, "identifier", "supervisor", "The daemon's identifier reported to RPC clients."),
    ext(
        D,
        "on_fatal",
        "ignore",
        "When a group exhausts max_restarts or a program its startretries: ignore (leave it FATAL) or shutdown (stop everything, exit non-zero).",
    ),
    ext(D, "env_file", "", ENV_FILE),
    // Control groups.
    ext(
        D,
        "cgroup_root",
        "vigild's own control group",
        "The control group (a path inside each hierarchy, e.g. /vigil.slice) under which vigild makes vigil/<program>; read at start-up.",
    ),
    // Child log formats.
    ext(
        D,
        "logfile_format",
        "text",
        "The daemon's log lines: text (supervisord's) or json ({\"ts\",\"level\",\"message\"} per line, also on stdout).",
    ),
    key(U, "file", "", "Path of the socket (required)."),
    key(U, "chmod", "0700", "Octal mode of the socket."),
    key(U, "chown", "", "user or user:group owning the socket."),
    key(U, "username", "", USERNAME),
    key(U, "password", "", PASSWORD),
    key(I, "port", "", "host:port to listen on (required)."),
    key(I, "username", "", USERNAME),
    key(I, "password", "", PASSWORD),
    ext(
        I,
        "allow_unauthenticated",
        "false",
        "Must be true to listen on TCP without username and password.",
    ),
    key(
        C,
        "serverurl",
        "http://localhost:9001",
        "Where clients connect: unix:///path or http://host:port.",
    ),
    key(C, "username", "", "User name clients send."),
    key(C, "password", "", "Password clients send."),
    key(C, "prompt", "supervisor", "The interactive prompt's name."),
    key(C, "history_file", "", "File keeping the interactive command history."),
    key(
        P,
        "command",
        "",
        "The command line to run (required); %(ENV_X)s and the other expansions apply.",
    ),
    key(
        P,
        "process_name",
        "%(program_name)s",
        "Name of each process; must use %(process_num) when numprocs > 1.",
    ),
    key(P, "numprocs", "1", "Number of processes run from this section."),
    key(P, "numprocs_start", "0", "First value of %(process_num)."),
    key(P, "priority", "999", "Start order: lower first, stopped last (eventlistener: -1)."),
    key(P, "autostart", "true", "Start when the daemon starts."),
    key(P, "startsecs", "1", "Seconds a process must stay up to count as started."),
    key(P, "startretries", "3", "Failed starts allowed before the process is FATAL."),
    key(
        P,
        "autorestart",
        "unexpected",
        "Restart after an exit: false, true, or unexpected (an exit code not in exitcodes).",
    ),
    key(P, "exitcodes", "0", "Comma-separated exit codes that are expected."),
    key(P, "stopsignal", "TERM", "Signal that asks a process to stop, by name or number."),
    key(P, "stopwaitsecs", "10", "Seconds to wait after stopsignal before SIGKILL."),
    key(P, "stopasgroup", "false", "Send stopsignal to the whole process group."),
    key(P, "killasgroup", "the value of stopasgroup", "Send SIGKILL to the whole process group."),
    key(P, "user", "", "User the process runs as (needs the daemon to run as root)."),
    key(P, "redirect_stderr", "false", "Send stderr to the stdout log."),
    key(P, "stdout_logfile", "AUTO", "File of the stdout log; AUTO (in childlogdir) or NONE."),
    key(
        P,
        "stdout_logfile_maxbytes",
        "50MB",
        "Size at which the stdout log rotates; 0 never rotates.",
    ),
    key(P, "stdout_logfile_backups", "10", "Rotated copies of the stdout log kept."),
    key(
        P,
        "stdout_capture_maxbytes",
        "0",
        "Size of the stdout capture buffer for PROCESS_COMMUNICATION events; 0 is off.",
    ),
    key(
        P,
        "stdout_events_enabled",
        "false",
        "Emit PROCESS_LOG_STDOUT events for each stdout write.",
    ),
    key(P, "stdout_syslog", "false", "Also send stdout to syslog."),
    key(P, "stderr_logfile", "AUTO", "File of the stderr log; AUTO (in childlogdir) or NONE."),
    key(
        P,
        "stderr_logfile_maxbytes",
        "50MB",
        "Size at which the stderr log rotates; 0 never rotates.",
    ),
    key(P, "stderr_logfile_backups", "10", "Rotated copies of the stderr log kept."),
    key(
        P,
        "stderr_capture_maxbytes",
        "0",
        "Size of the stderr capture buffer for PROCESS_COMMUNICATION events; 0 is off.",
    ),
    key(
        P,
        "stderr_events_enabled",
        "false",
        "Emit PROCESS_LOG_STDERR events for each stderr write.",
    ),
    key(P, "stderr_syslog", "false", "Also send stderr to syslog."),
    key(
        P,
        "environment",
        "",
        "KEY=\"value\" pairs, comma-separated, added to the process's environment.",
    ),
    key(P, "directory", "", "Directory the process starts in."),
    key(P, "umask", "the daemon's", "Octal umask of the process."),
    key(P, "serverurl", "the daemon's own", "SUPERVISOR_SERVER_URL passed to the process."),
    ext(P, "strategy", "one_for_one", STRATEGY),
    ext(
        P,
        "essential",
        "false",
        "When the program ends, stop everything and exit with its status (128+N for signal N).",
    ),
    ext(P, "env_file", "", ENV_FILE),
    ext(
        P,
        "rlimits",
        "",
        "TOML only: a table of resource limits, e.g. { nofile = \"1024:4096\" }.",
    ),
    ext(P, "rlimit_as", "the daemon's", RLIMIT),
    ext(P, "rlimit_core", "the daemon's", RLIMIT),
    ext(P, "rlimit_cpu", "the daemon's", RLIMIT),
    ext(P, "rlimit_data", "the daemon's", RLIMIT),
    ext(P, "rlimit_fsize", "the daemon's", RLIMIT),
    ext(P, "rlimit_locks", "the daemon's", RLIMIT),
    ext(P, "rlimit_memlock", "the daemon's", RLIMIT),
    ext(P, "rlimit_msgqueue", "the daemon's", RLIMIT),
    ext(P, "rlimit_nice", "the daemon's", RLIMIT),
    ext(P, "rlimit_nofile", "the daemon's", RLIMIT),
    ext(P, "rlimit_nproc", "the daemon's", RLIMIT),
    ext(P, "rlimit_rss", "the daemon's", RLIMIT),
    ext(P, "rlimit_rtprio", "the daemon's", RLIMIT),
    ext(P, "rlimit_rttime", "the daemon's", RLIMIT),
    ext(P, "rlimit_sigpending", "the daemon's", RLIMIT),
    ext(P, "rlimit_stack", "the daemon's", RLIMIT),
    // Control groups.
    ext(
        P,
        "cgroup",
        "true when a limit below is set",
        "Run each process in a control group of its own, so stopasgroup and killasgroup reach every process it started.",
    ),
    ext(
        P,
        "memory_max",
        "",
        "Memory limit of the process's control group (512MB); beyond it the kernel's OOM killer acts, and the exit says so.",
    ),
    ext(
        P,
        "memory_restart_threshold",
        "",
        "Restart the process when its control group's memory passes this size (below memory_max); watched by kernel events, not polled.",
    ),
    ext(
        P,
        "cpu_quota",
        "",
        "CPU time of the control group in percent of one CPU: 50% is half a CPU, 200% two.",
    ),
    ext(P, "pids_max", "", "The most processes and threads the control group may hold at once."),
    ext(P, "max_restarts", "unlimited", MAX_RESTARTS),
    ext(P, "max_restarts_period", "60s", "The window max_restarts counts in."),
    ext(
        P,
        "backoff",
        "linear",
        "How the wait between restart attempts grows: linear or exponential.",
    ),
    ext(P, "backoff_initial", "1s", "The first wait between restart attempts."),
    ext(P, "backoff_max", "", "The longest wait between restart attempts; unset means no cap."),
    ext(P, "backoff_multiplier", "2.0", "Growth factor per attempt of an exponential backoff."),
    ext(P, "backoff_jitter", "0.0", "Fraction (0 to 1) of random spread added to each wait."),
    ext(
        P,
        "backoff_reset_after",
        "",
        "Running time after which the backoff counter resets; unset resets on RUNNING.",
    ),
    ext(
        P,
        "depends_on",
        "",
        "NAME[:CONDITION], ... to wait for: started, running (default), healthy, completed or completed_successfully.",
    ),
    ext(
        P,
        "restart_dependents",
        "true",
        "Stop and restart this program when a dependency stops or restarts.",
    ),
    ext(P, "ready_tcp", "", "Readiness probe: host:port accepts a TCP connection."),
    ext(P, "ready_http", "", "Readiness probe: a GET of this URL answers ready_http_status."),
    ext(P, "ready_http_status", "200", "HTTP status ready_http expects."),
    ext(P, "ready_exec", "", "Readiness probe: this command exits 0."),
    ext(P, "ready_log", "", "Readiness probe: an output line matches this regular expression."),
    ext(P, "ready_notify", "false", "Readiness probe: the process sends READY=1 on NOTIFY_SOCKET."),
    ext(P, "ready_period", "1s", "Time between readiness probes."),
    ext(P, "ready_timeout", "1s", "Time one readiness probe may take."),
    ext(P, "ready_retries", "30", "Failed readiness probes before the start fails."),
    ext(P, "ready_initial_delay", "0", "Wait before the first readiness probe."),
    ext(P, "live_tcp", "", "Liveness probe: host:port accepts a TCP connection."),
    ext(P, "live_http", "", "Liveness probe: a GET of this URL answers live_http_status."),
    ext(P, "live_http_status", "200", "HTTP status live_http expects."),
    ext(P, "live_exec", "", "Liveness probe: this command exits 0."),
    ext(P, "live_period", "10s", "Time between liveness probes."),
    ext(P, "live_timeout", "1s", "Time one liveness probe may take."),
    ext(
        P,
        "live_failure_threshold",
        "3",
        "Failed liveness probes in a row before the process is restarted.",
    ),
    ext(P, "live_initial_delay", "0", "Wait before the first liveness probe."),
    // Child log formats.
    ext(P, "stdout_logfile_format", "raw", LOG_FORMAT),
    ext(P, "stdout_echo", "false", ECHO),
    ext(P, "stderr_logfile_format", "raw", LOG_FORMAT),
    ext(P, "stderr_echo", "false", ECHO),
    key(F, "socket", "", "The shared socket (required): unix:///path or tcp://host:port."),
    key(F, "socket_backlog", "4096", "Listen backlog of the socket (1 to 65535)."),
    key(F, "socket_owner", "", "user or user:group owning a unix socket."),
    key(F, "socket_mode", "", "Octal mode of a unix socket."),
    key(E, "events", "", "Comma-separated event types to receive (required)."),
    key(E, "buffer_size", "10", "Events queued for the listener before the oldest is dropped."),
    key(
        E,
        "result_handler",
        "supervisor.dispatchers:default_handler",
        "How the listener's results are handled.",
    ),
    key(G, "programs", "", "Comma-separated programs in the group (required)."),
    key(G, "priority", "999", "Start order of the group: lower first, stopped last."),
    ext(G, "strategy", "one_for_one", STRATEGY),
    ext(G, "max_restarts", "unlimited", MAX_RESTARTS),
    ext(G, "max_restarts_period", "60s", "The window max_restarts counts in."),
    ext(G, "env_file", "", ENV_FILE),
    key(
        "include",
        "files",
        "",
        "Space-separated globs of files to read, relative to this file (required).",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    /// The documented keys of each section are exactly the keys its reader
    /// accepts: no key undocumented, no entry for an unknown key.
    #[test]
    fn every_key_is_documented_and_no_entry_is_unknown() {
        let tables: [(&str, &[&str]); 9] = [
            (D, keys::SUPERVISORD),
            (U, keys::UNIX_HTTP_SERVER),
            (I, keys::INET_HTTP_SERVER),
            (C, keys::SUPERVISORCTL),
            (P, keys::PROGRAM),
            (F, keys::FCGI_EXTRA),
            (E, keys::EVENTLISTENER_EXTRA),
            (G, keys::GROUP),
            ("include", keys::INCLUDE),
        ];
        let documented: Vec<&str> = SECTIONS.iter().map(|s| s.section).collect();
        let checked: Vec<&str> = tables.iter().map(|(s, _)| *s).collect();
        assert_eq!(documented, checked, "SECTIONS and the key tables name different sections");
        for (section, accepted) in tables {
            let mut listed: Vec<&str> =
                KEYS.iter().filter(|k| k.section == section).map(|k| k.key).collect();
            let mut accepted = accepted.to_vec();
            listed.sort_unstable();
            accepted.sort_unstable();
            let undocumented: Vec<_> = accepted.iter().filter(|k| !listed.contains(k)).collect();
            let unknown: Vec<_> = listed.iter().filter(|k| !accepted.contains(k)).collect();
            assert!(undocumented.is_empty(), "[{section}] keys without an entry: {undocumented:?}");
            assert!(unknown.is_empty(), "[{section}] entries for unknown keys: {unknown:?}");
            let mut deduped = listed.clone();
            deduped.dedup();
            assert_eq!(listed, deduped, "[{section}] has a key documented twice");
        }
        for entry in KEYS {
            assert!(!entry.meaning.is_empty(), "[{}] {} has no meaning", entry.section, entry.key);
        }
    }

    /// Vigil's extensions are marked, and only they: they are the keys
    /// supervisord's own program and group sections would not accept.
    #[test]
    fn extensions_are_marked() {
        for name in ["on_fatal", "allow_unauthenticated", "depends_on", "backoff", "ready_tcp"] {
            assert!(KEYS.iter().filter(|k| k.key == name).all(|k| k.extension), "{name}");
        }
        for name in ["command", "autorestart", "logfile", "port", "programs"] {
            assert!(KEYS.iter().filter(|k| k.key == name).all(|k| !k.extension), "{name}");
        }
    }
}
