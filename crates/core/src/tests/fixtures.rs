//! Config builders with supervisord's defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vigil_config::{
    AutoRestart, BackoffConfig, BackoffKind, Config, GroupConfig, GroupKind, LogConfig, LogLevel,
    LogTarget, OnFatal, Origin, ProcessConfig, Signal, Strategy, Supervisord,
};

pub(super) fn program(name: &str, command: &[&str]) -> ProcessConfig {
    let log = LogConfig {
        logfile: LogTarget::None,
        maxbytes: 50 * 1024 * 1024,
        backups: 10,
        capture_maxbytes: 0,
        events_enabled: false,
        syslog: false,
        format: Default::default(),
        echo: false,
    };
    ProcessConfig {
        name: name.to_owned(),
        group: name.to_owned(),
        program: name.to_owned(),
        origin: Origin { file: PathBuf::from("test.conf"), line: 1 },
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        command_line: command.join(" "),
        process_num: 0,
        numprocs: 1,
        priority: 999,
        autostart: false,
        startsecs: 1,
        startretries: 3,
        autorestart: AutoRestart::Unexpected,
        exitcodes: vec![0],
        stopsignal: Signal(libc::SIGTERM),
        stopwaitsecs: 10,
        stopasgroup: false,
        killasgroup: false,
        user: None,
        redirect_stderr: false,
        stdout: log.clone(),
        stderr: log,
        environment: BTreeMap::new(),
        env_files: Vec::new(),
        env_file_vars: Default::default(),
        directory: None,
        umask: None,
        serverurl: None,
        backoff: BackoffConfig {
            kind: BackoffKind::Linear,
            initial: Duration::from_secs(1),
            max: None,
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: None,
        },
        depends_on: Vec::new(),
        restart_dependents: true,
        essential: false,
        rlimits: Vec::new(),
        cgroup: None,
        readiness: None,
        liveness: None,
    }
}

/// A group named after its single program (supervisord's `[program:x]`).
pub(super) fn solo(process: ProcessConfig) -> GroupConfig {
    group(&process.name.clone(), process.priority, vec![process])
}

/// A heterogeneous group; members are renamed into it and sorted by
/// (priority, name) as the config reader does.
pub(super) fn group(name: &str, priority: i32, mut processes: Vec<ProcessConfig>) -> GroupConfig {
    for process in &mut processes {
        process.group = name.to_owned();
    }
    processes.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    GroupConfig {
        name: name.to_owned(),
        kind: if processes.len() == 1 && processes[0].name == name {
            GroupKind::Program
        } else {
            GroupKind::Heterogeneous
        },
        priority,
        strategy: Strategy::OneForOne,
        max_restarts: None,
        max_restarts_period: Duration::from_secs(60),
        processes: processes.into_iter().map(std::sync::Arc::new).collect(),
    }
}

pub(super) fn config(dir: &Path, mut groups: Vec<GroupConfig>) -> Config {
    groups.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    Config {
        source: dir.join("supervisord.conf"),
        files: vec![dir.join("supervisord.conf")],
        supervisord: Supervisord {
            logfile: LogTarget::None,
            logfile_maxbytes: 50 * 1024 * 1024,
            logfile_backups: 10,
            loglevel: LogLevel::Info,
            pidfile: None,
            umask: 0o022,
            nodaemon: true,
            silent: false,
            minfds: 1024,
            minprocs: 200,
            nocleanup: false,
            childlogdir: dir.to_path_buf(),
            user: None,
            directory: None,
            strip_ansi: false,
            environment: BTreeMap::new(),
            identifier: "supervisor".to_owned(),
            on_fatal: OnFatal::Ignore,
            env_file: Vec::new(),
            cgroup_root: None,
            logfile_format: Default::default(),
        },
        unix_http_server: None,
        inet_http_server: None,
        supervisorctl: None,
        rpcinterfaces: BTreeMap::new(),
        ctlplugins: BTreeMap::new(),
        groups,
    }
}
