//! `diff(old, new)`: the plan `update` applies.
//!
//! Finer than supervisord, which restarts a whole group when anything in it
//! changes: here a changed group lists its processes added, removed and changed,
//! and each changed process says, field by field, whether the change needs a
//! restart of that process or can be applied to the running one in place.

use serde::Serialize;

use crate::model::{Config, GroupConfig, GroupKind, LogConfig, ProcessConfig};

/// How a changed field takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// The running process keeps running; the supervisor uses the new value.
    InPlace,
    /// The process must be stopped and started again for the value to matter.
    Restart,
}

/// One changed field, named by its config key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The config key (`command`, `stdout_logfile_maxbytes`, ...).
    pub key: &'static str,
    /// How the new value takes effect.
    pub apply: Apply,
}

/// A process that exists in both configs with different settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessChange {
    /// The instance name inside its group.
    pub name: String,
    /// Every field that changed.
    pub fields: Vec<FieldChange>,
}

impl ProcessChange {
    /// Whether any changed field needs the process restarted.
    pub fn needs_restart(&self) -> bool {
        self.fields.iter().any(|f| f.apply == Apply::Restart)
    }
}

/// A group that exists in both configs with different settings or members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    /// The group's name.
    pub name: String,
    /// Group-level settings that changed (`priority`, `strategy`, ...).
    pub fields: Vec<FieldChange>,
    /// The group kind or its fcgi socket / listener settings changed: every
    /// process of the group must be restarted (they share the socket or pool).
    pub restart_all: bool,
    /// Processes only the new config has.
    pub added: Vec<String>,
    /// Processes only the old config has.
    pub removed: Vec<String>,
    /// Processes in both whose settings differ.
    pub changed: Vec<ProcessChange>,
}

/// What `update` has to do to go from the old config to the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// New groups, in start order.
    pub added: Vec<String>,
    /// Groups that no longer exist.
    pub removed: Vec<String>,
    /// Groups in both whose settings or members differ.
    pub changed: Vec<GroupChange>,
    /// Daemon-level sections that changed (`supervisord`, `unix_http_server`,
    /// `inet_http_server`, `supervisorctl`, `rpcinterface`, `ctlplugin`); `update`
    /// does not apply these, they take effect on a daemon restart. A changed
    /// `supervisord` `environment` reaches each process at its next start.
    pub daemon: Vec<&'static str>,
}

impl Plan {
    /// Whether the two configs are the same as far as `update` is concerned.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.daemon.is_empty()
    }
}

/// The plan that takes a daemon running `old` to `new`.
pub fn diff(old: &Config, new: &Config) -> Plan {
    let mut plan = Plan::default();
    for group in &new.groups {
        match old.group(&group.name) {
            None => plan.added.push(group.name.clone()),
            Some(before) => {
                if let Some(change) = diff_group(before, group) {
                    plan.changed.push(change);
                }
            }
        }
    }
    for group in &old.groups {
        if new.group(&group.name).is_none() {
            plan.removed.push(group.name.clone());
        }
    }
    let daemon: [(&'static str, bool); 6] = [
        ("supervisord", old.supervisord != new.supervisord),
        ("unix_http_server", old.unix_http_server != new.unix_http_server),
        ("inet_http_server", old.inet_http_server != new.inet_http_server),
        ("supervisorctl", old.supervisorctl != new.supervisorctl),
        ("rpcinterface", old.rpcinterfaces != new.rpcinterfaces),
        ("ctlplugin", old.ctlplugins != new.ctlplugins),
    ];
    plan.daemon = daemon.iter().filter(|(_, changed)| *changed).map(|(k, _)| *k).collect();
    plan
}

fn diff_group(old: &GroupConfig, new: &GroupConfig) -> Option<GroupChange> {
    let mut fields = Vec::new();
    let mut push = |key, changed: bool| {
        if changed {
            fields.push(FieldChange { key, apply: Apply::InPlace });
        }
    };
    push("priority", old.priority != new.priority);
    push("strategy", old.strategy != new.strategy);
    push("max_restarts", old.max_restarts != new.max_restarts);
    push("max_restarts_period", old.max_restarts_period != new.max_restarts_period);
    let restart_all = old.kind != new.kind;
    if restart_all {
        let key = match new.kind {
            GroupKind::Fcgi(_) => "socket",
            GroupKind::EventListener(_) => "events",
            _ => "kind",
        };
        fields.push(FieldChange { key, apply: Apply::Restart });
    }
    let mut change = GroupChange {
        name: new.name.clone(),
        fields,
        restart_all,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for process in &new.processes {
        match old.processes.iter().find(|p| p.name == process.name) {
            None => change.added.push(process.name.clone()),
            Some(before) => {
                let fields = diff_process(before, process);
                if !fields.is_empty() {
                    change.changed.push(ProcessChange { name: process.name.clone(), fields });
                }
            }
        }
    }
    for process in &old.processes {
        if !new.processes.iter().any(|p| p.name == process.name) {
            change.removed.push(process.name.clone());
        }
    }
    let empty = change.fields.is_empty()
        && change.added.is_empty()
        && change.removed.is_empty()
        && change.changed.is_empty();
    (!empty).then_some(change)
}

/// Field by field; `origin` (file and line) is not a change.
fn diff_process(old: &ProcessConfig, new: &ProcessConfig) -> Vec<FieldChange> {
    use Apply::{InPlace, Restart};
    let mut out = Vec::new();
    let mut check = |key: &'static str, changed: bool, apply: Apply| {
        if changed {
            out.push(FieldChange { key, apply });
        }
    };
    check("program", old.program != new.program, Restart);
    check("command", old.command != new.command || old.command_line != new.command_line, Restart);
    check("process_num", old.process_num != new.process_num, Restart);
    check("numprocs", old.numprocs != new.numprocs, InPlace);
    check("priority", old.priority != new.priority, InPlace);
    check("autostart", old.autostart != new.autostart, InPlace);
    check("startsecs", old.startsecs != new.startsecs, InPlace);
    check("startretries", old.startretries != new.startretries, InPlace);
    check("autorestart", old.autorestart != new.autorestart, InPlace);
    check("exitcodes", old.exitcodes != new.exitcodes, InPlace);
    check("stopsignal", old.stopsignal != new.stopsignal, InPlace);
    check("stopwaitsecs", old.stopwaitsecs != new.stopwaitsecs, InPlace);
    check("stopasgroup", old.stopasgroup != new.stopasgroup, InPlace);
    check("killasgroup", old.killasgroup != new.killasgroup, InPlace);
    check("user", old.user != new.user, Restart);
    check("redirect_stderr", old.redirect_stderr != new.redirect_stderr, Restart);
    log_fields(&mut check, "stdout", &old.stdout, &new.stdout);
    log_fields(&mut check, "stderr", &old.stderr, &new.stderr);
    check("environment", old.environment != new.environment, Restart);
    check("env_file", old.env_files != new.env_files, Restart);
    // Same files, new contents: the reason `update --dry-run` names; never
    // which values changed (env files hold secrets).
    check(
        "env_file contents",
        old.env_files == new.env_files && old.env_file_vars != new.env_file_vars,
        Restart,
    );
    check("directory", old.directory != new.directory, Restart);
    check("umask", old.umask != new.umask, Restart);
    check("serverurl", old.serverurl != new.serverurl, Restart);
    let (ob, nb) = (&old.backoff, &new.backoff);
    check("backoff", ob.kind != nb.kind, InPlace);
    check("backoff_initial", ob.initial != nb.initial, InPlace);
    check("backoff_max", ob.max != nb.max, InPlace);
    check("backoff_multiplier", ob.multiplier != nb.multiplier, InPlace);
    check("backoff_jitter", ob.jitter != nb.jitter, InPlace);
    check("backoff_reset_after", ob.reset_after != nb.reset_after, InPlace);
    check("depends_on", old.depends_on != new.depends_on, InPlace);
    check("restart_dependents", old.restart_dependents != new.restart_dependents, InPlace);
    check("essential", old.essential != new.essential, InPlace);
    check("rlimits", old.rlimits != new.rlimits, Restart);
    check("cgroup", old.cgroup != new.cgroup, Restart);
    for (key, key_timing, o, n) in [
        ("ready", "ready_timing", &old.readiness, &new.readiness),
        ("live", "live_timing", &old.liveness, &new.liveness),
    ] {
        let same_kind = match (o, n) {
            (Some(o), Some(n)) => o.kind == n.kind,
            (None, None) => true,
            _ => false,
        };
        // A different probe changes what RUNNING means for this process, so it is
        // applied from a fresh start; new timing for the same probe is not.
        check(key, !same_kind, Restart);
        check(key_timing, same_kind && o != n, InPlace);
    }
    out
}

fn log_fields(
    check: &mut impl FnMut(&'static str, bool, Apply),
    channel: &str,
    o: &LogConfig,
    n: &LogConfig,
) {
    use Apply::{InPlace, Restart};
    let keys: [&'static str; 8] = if channel == "stdout" {
        [
            "stdout_logfile",
            "stdout_logfile_maxbytes",
            "stdout_logfile_backups",
            "stdout_capture_maxbytes",
            "stdout_events_enabled",
            "stdout_syslog",
            "stdout_logfile_format",
            "stdout_echo",
        ]
    } else {
        [
            "stderr_logfile",
            "stderr_logfile_maxbytes",
            "stderr_logfile_backups",
            "stderr_capture_maxbytes",
            "stderr_events_enabled",
            "stderr_syslog",
            "stderr_logfile_format",
            "stderr_echo",
        ]
    };
    check(keys[0], o.logfile != n.logfile, Restart);
    check(keys[1], o.maxbytes != n.maxbytes, InPlace);
    check(keys[2], o.backups != n.backups, InPlace);
    check(keys[3], o.capture_maxbytes != n.capture_maxbytes, InPlace);
    check(keys[4], o.events_enabled != n.events_enabled, InPlace);
    check(keys[5], o.syslog != n.syslog, InPlace);
    // The running capture keeps the format and echo it started with.
    check(keys[6], o.format != n.format, Restart);
    check(keys[7], o.echo != n.echo, Restart);
}
