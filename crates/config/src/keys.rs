//! The known keys of each section type, shared by the TOML schema (which rejects
//! anything else) and by tests that keep the two readers in step.

/// `[supervisord]`.
pub(crate) const SUPERVISORD: &[&str] = &[
    "logfile",
    "logfile_maxbytes",
    "logfile_backups",
    "loglevel",
    "pidfile",
    "umask",
    "nodaemon",
    "silent",
    "minfds",
    "minprocs",
    "nocleanup",
    "childlogdir",
    "user",
    "directory",
    "strip_ansi",
    "environment",
    "identifier",
    "on_fatal",
    "env_file",
    // Control groups (Vigil extension).
    "cgroup_root",
    // Vigil extension: child log formats.
    "logfile_format",
];

pub(crate) const UNIX_HTTP_SERVER: &[&str] = &["file", "chmod", "chown", "username", "password"];

pub(crate) const INET_HTTP_SERVER: &[&str] =
    &["port", "username", "password", "allow_unauthenticated"];

pub(crate) const SUPERVISORCTL: &[&str] =
    &["serverurl", "username", "password", "prompt", "history_file"];

pub(crate) const GROUP: &[&str] =
    &["programs", "priority", "strategy", "max_restarts", "max_restarts_period", "env_file"];

pub(crate) const INCLUDE: &[&str] = &["files"];

/// Keys read once per instance, with `process_num` and `numprocs` available.
pub(crate) const PER_PROCESS: &[&str] = &[
    "environment",
    "directory",
    "process_name",
    "command",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stdout_syslog",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "stderr_syslog",
];

/// `[program:x]` (and the base of `[fcgi-program:x]` / `[eventlistener:x]`).
pub(crate) const PROGRAM: &[&str] = &[
    "command",
    "process_name",
    "numprocs",
    "numprocs_start",
    "priority",
    "autostart",
    "startsecs",
    "startretries",
    "autorestart",
    "exitcodes",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
    "user",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stdout_capture_maxbytes",
    "stdout_events_enabled",
    "stdout_syslog",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
    "stderr_capture_maxbytes",
    "stderr_events_enabled",
    "stderr_syslog",
    "environment",
    "directory",
    "umask",
    "serverurl",
    // Vigil extensions.
    "strategy",
    "max_restarts",
    "max_restarts_period",
    "backoff",
    "backoff_initial",
    "backoff_max",
    "backoff_multiplier",
    "backoff_jitter",
    "backoff_reset_after",
    "depends_on",
    "restart_dependents",
    "essential",
    "env_file",
    "rlimits",
    "rlimit_as",
    "rlimit_core",
    "rlimit_cpu",
    "rlimit_data",
    "rlimit_fsize",
    "rlimit_locks",
    "rlimit_memlock",
    "rlimit_msgqueue",
    "rlimit_nice",
    "rlimit_nofile",
    "rlimit_nproc",
    "rlimit_rss",
    "rlimit_rtprio",
    "rlimit_rttime",
    "rlimit_sigpending",
    "rlimit_stack",
    // Control groups.
    "cgroup",
    "memory_max",
    "memory_restart_threshold",
    "cpu_quota",
    "pids_max",
    "ready_tcp",
    "ready_http",
    "ready_http_status",
    "ready_exec",
    "ready_log",
    "ready_notify",
    "ready_period",
    "ready_timeout",
    "ready_retries",
    "ready_initial_delay",
    "live_tcp",
    "live_http",
    "live_http_status",
    "live_exec",
    "live_period",
    "live_timeout",
    "live_failure_threshold",
    "live_initial_delay",
    // Vigil extension: child log formats.
    "stdout_logfile_format",
    "stdout_echo",
    "stderr_logfile_format",
    "stderr_echo",
];

pub(crate) const FCGI_EXTRA: &[&str] = &["socket", "socket_backlog", "socket_owner", "socket_mode"];

pub(crate) const EVENTLISTENER_EXTRA: &[&str] = &["events", "buffer_size", "result_handler"];

/// For an unknown-key warning: the section types where `key` would be valid.
pub(crate) fn known_in(key: &str) -> Vec<&'static str> {
    let tables: [(&'static str, &[&str]); 9] = [
        ("[supervisord]", SUPERVISORD),
        ("[unix_http_server]", UNIX_HTTP_SERVER),
        ("[inet_http_server]", INET_HTTP_SERVER),
        ("[supervisorctl]", SUPERVISORCTL),
        ("[group:x]", GROUP),
        ("[include]", INCLUDE),
        ("[program:x]", PROGRAM),
        ("[fcgi-program:x]", FCGI_EXTRA),
        ("[eventlistener:x]", EVENTLISTENER_EXTRA),
    ];
    tables.iter().filter(|(_, keys)| keys.contains(&key)).map(|(name, _)| *name).collect()
}
