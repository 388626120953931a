//! `[program:x]`, `[fcgi-program:x]` and `[eventlistener:x]`: the settings read
//! once per program, the extras of each section type, and one [`ProcessConfig`]
//! per instance (`numprocs`), where `%(process_num)` and the program's own
//! `environment=` take part in expansion.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use super::groups::group_extensions;
use super::probes::probe;
use super::reader::{Reader, section_place};
use super::{Context, Program, here_str, with};
use crate::error::{Diagnostics, Locate, Place};
use crate::expand::{Expansion, Expansions};
use crate::keys;
use crate::model::*;
use crate::raw::{RawData, RawSection, RawValue, here_of};
use crate::values;

const EVENT_TYPES: &[&str] = &[
    "EVENT",
    "PROCESS_STATE",
    "PROCESS_STATE_STOPPED",
    "PROCESS_STATE_EXITED",
    "PROCESS_STATE_STARTING",
    "PROCESS_STATE_STOPPING",
    "PROCESS_STATE_BACKOFF",
    "PROCESS_STATE_FATAL",
    "PROCESS_STATE_RUNNING",
    "PROCESS_STATE_UNKNOWN",
    "PROCESS_LOG",
    "PROCESS_LOG_STDOUT",
    "PROCESS_LOG_STDERR",
    "PROCESS_COMMUNICATION",
    "PROCESS_COMMUNICATION_STDOUT",
    "PROCESS_COMMUNICATION_STDERR",
    "REMOTE_COMMUNICATION",
    "SUPERVISOR_STATE_CHANGE",
    "SUPERVISOR_STATE_CHANGE_RUNNING",
    "SUPERVISOR_STATE_CHANGE_STOPPING",
    "TICK",
    "TICK_5",
    "TICK_60",
    "TICK_3600",
    "PROCESS_GROUP",
    "PROCESS_GROUP_ADDED",
    "PROCESS_GROUP_REMOVED",
];

/// The per-channel log keys: (channel, [logfile, maxbytes, backups, syslog]).
const LOG_KEYS: [(&str, [&str; 4]); 2] = [
    (
        "stdout",
        ["stdout_logfile", "stdout_logfile_maxbytes", "stdout_logfile_backups", "stdout_syslog"],
    ),
    (
        "stderr",
        ["stderr_logfile", "stderr_logfile_maxbytes", "stderr_logfile_backups", "stderr_syslog"],
    ),
];

/// Reads one program-like section (`kind_word` is `program`, `fcgi-program` or
/// `eventlistener`); `None` when its name is invalid (reported).
#[allow(clippy::too_many_arguments)]
pub(super) fn program(
    kind_word: &str,
    raw_name: &str,
    section: &RawSection,
    ctx: &Context<'_>,
    global_exp: &Expansions,
    host: &Expansion,
    membership: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Option<Program> {
    let place = section_place(section);
    let name = match values::name(raw_name) {
        Ok(n) => n,
        Err(message) => {
            diags.error(&place, message);
            return None;
        }
    };
    let is_listener = kind_word == "eventlistener";
    let group_name = membership.get(&name).cloned().unwrap_or_else(|| name.clone());
    let common = with(
        global_exp,
        &[
            ("here", here_str(section)),
            ("program_name", Expansion::Str(name.clone())),
            ("group_name", Expansion::Str(group_name.clone())),
            ("host_node_name", host.clone()),
        ],
    );
    let mut r = Reader::new(section);
    let d = &mut *diags;
    let settings = settings(&mut r, &common, is_listener, &place, d);
    // Vigil extensions.
    let (strategy, max_restarts, max_restarts_period) = group_extensions(&mut r, &common, d);
    let backoff = backoff(&mut r, &common, d);
    let depends_on = match r.list("depends_on", &common, d, false) {
        Some((items, _, place)) => items.into_iter().map(|i| (i, place.place())).collect(),
        None => Vec::new(),
    };
    let restart_dependents = r.get("restart_dependents", &common, d, true, values::boolean);
    let essential = r.get("essential", &common, d, false, values::boolean);
    let env_file = super::envfiles::key(&mut r, &common, ctx.env, d);
    let rlimits = super::rlimits::rlimits(&mut r, &common, d);
    let cgroup = super::cgroups::cgroup(&mut r, &common, d);
    let kind = match kind_word {
        "fcgi-program" => GroupKind::Fcgi(fcgi_socket(&mut r, &common, d)),
        "eventlistener" => GroupKind::EventListener(listener(&mut r, &common, &place, d)),
        _ => GroupKind::Program,
    };
    let instances = instance_count(&r, settings.numprocs, &place, d);
    let template = Template {
        section,
        place,
        ctx,
        name,
        group_name,
        common,
        settings,
        backoff,
        restart_dependents,
        essential,
        env_file,
        rlimits,
        cgroup,
    };
    let start = template.settings.numprocs_start;
    // Sized up front: these records are large, and a pushed-to Vec starts at
    // four of them, grown and copied for every program of a big config.
    let mut processes = Vec::with_capacity(instances.min(1024) as usize);
    for process_num in start..start.saturating_add(instances) {
        let Some(process) = template.instance(&mut r, process_num, d) else { continue };
        processes.push(process);
        if diags_too_many(d) {
            break;
        }
    }
    if template.settings.numprocs == 0 {
        // Still read the per-process keys so they are not reported as unknown.
        for key in keys::PER_PROCESS {
            let _ = r.raw(key);
        }
    }
    r.warn_unknown(d);
    Some(Program {
        name: template.name,
        kind,
        place: template.place,
        processes,
        priority: template.settings.priority,
        strategy,
        max_restarts,
        max_restarts_period,
        depends_on,
    })
}

/// Stops expanding thousands of instances of a broken program into thousands of
/// identical errors.
fn diags_too_many(d: &Diagnostics) -> bool {
    d.errors.len() > 1000
}

/// supervisord's settings that are read once per program (with the common
/// expansions only) and copied into every instance.
struct Settings {
    numprocs: u32,
    numprocs_start: u32,
    priority: i32,
    autostart: bool,
    startsecs: u64,
    startretries: u32,
    autorestart: AutoRestart,
    exitcodes: Vec<i32>,
    stopsignal: Signal,
    stopwaitsecs: u64,
    stopasgroup: bool,
    killasgroup: bool,
    user: Option<UserSpec>,
    redirect_stderr: bool,
    umask: Option<u32>,
    serverurl: Option<String>,
    /// `*_capture_maxbytes`, stdout then stderr.
    capture: [u64; 2],
    /// `*_events_enabled`, stdout then stderr.
    events_enabled: [bool; 2],
}

fn settings(
    r: &mut Reader<'_>,
    common: &Expansions,
    is_listener: bool,
    section_place: &Place,
    d: &mut Diagnostics,
) -> Settings {
    let numprocs: u32 = r.get("numprocs", common, d, 1, |s| values::integer_in(s, "numprocs"));
    let numprocs_start: u32 =
        r.get("numprocs_start", common, d, 0, |s| values::integer_in(s, "numprocs_start"));
    let priority: i32 = r.get("priority", common, d, if is_listener { -1 } else { 999 }, |s| {
        values::integer_in(s, "priority")
    });
    let autostart = r.get("autostart", common, d, true, values::boolean);
    let startsecs: u64 = r.get("startsecs", common, d, 1, |s| values::integer_in(s, "startsecs"));
    let startretries: u32 =
        r.get("startretries", common, d, 3, |s| values::integer_in(s, "startretries"));
    let autorestart =
        r.get("autorestart", common, d, AutoRestart::Unexpected, values::auto_restart);
    let exitcodes = match r.list("exitcodes", common, d, false) {
        Some((items, written, place)) => {
            values::exitcodes(&items, &written).unwrap_or_else(|message| {
                d.error(&place, message);
                vec![0]
            })
        }
        None => vec![0],
    };
    let stopsignal = r.get("stopsignal", common, d, Signal(15), values::signal);
    let stopwaitsecs: u64 =
        r.get("stopwaitsecs", common, d, 10, |s| values::integer_in(s, "stopwaitsecs"));
    let stopasgroup = r.get("stopasgroup", common, d, false, values::boolean);
    let killasgroup = r.get("killasgroup", common, d, stopasgroup, values::boolean);
    if stopasgroup && !killasgroup {
        d.error(section_place, "Cannot set stopasgroup=true and killasgroup=false");
    }
    let user = r.opt("user", common, d, values::user);
    let redirect_stderr = r.get("redirect_stderr", common, d, false, values::boolean);
    if is_listener && redirect_stderr {
        d.error(
            section_place,
            "section sets redirect_stderr=true but this is not allowed because it will interfere with the eventlistener protocol",
        );
    }
    let umask = r.octal("umask", common, d);
    let serverurl = r
        .text("serverurl", common, d)
        .map(|(t, _)| t)
        .filter(|t| !t.trim().eq_ignore_ascii_case("auto"));
    let capture = [
        r.get("stdout_capture_maxbytes", common, d, 0, values::byte_size),
        r.get("stderr_capture_maxbytes", common, d, 0, values::byte_size),
    ];
    let events_enabled = [
        r.get("stdout_events_enabled", common, d, false, values::boolean),
        r.get("stderr_events_enabled", common, d, false, values::boolean),
    ];
    Settings {
        numprocs,
        numprocs_start,
        priority,
        autostart,
        startsecs,
        startretries,
        autorestart,
        exitcodes,
        stopsignal,
        stopwaitsecs,
        stopasgroup,
        killasgroup,
        user,
        redirect_stderr,
        umask,
        serverurl,
        capture,
        events_enabled,
    }
}

/// How many instances to build: `numprocs`, or one when `process_name` lacks
/// `%(process_num)` (an error), so that the error is not followed by a
/// duplicate-name error per instance.
fn instance_count(
    r: &Reader<'_>,
    numprocs: u32,
    section_place: &Place,
    d: &mut Diagnostics,
) -> u32 {
    let has_process_num = r
        .raw
        .entries
        .iter()
        .find(|(k, _)| k == "process_name")
        .map(|(_, v)| match &v.data {
            RawData::Text(t) => t.contains("%(process_num)"),
            _ => false,
        })
        .unwrap_or(false);
    if numprocs > 1 && !has_process_num {
        d.error(
            section_place,
            "%(process_num) must be present within process_name when numprocs > 1",
        );
        1
    } else {
        numprocs
    }
}

/// What every instance of one program shares.
struct Template<'a> {
    section: &'a RawSection,
    /// The section header, for messages.
    place: Place,
    ctx: &'a Context<'a>,
    name: String,
    group_name: String,
    /// The expansions of the program: global ones plus `here`, `program_name`,
    /// `group_name` and `host_node_name`.
    common: Expansions,
    settings: Settings,
    backoff: BackoffConfig,
    restart_dependents: bool,
    essential: bool,
    /// The program's own `env_file`; `build` puts `[supervisord]`'s and the
    /// group's before it and loads them.
    env_file: Vec<PathBuf>,
    rlimits: Vec<ResourceLimit>,
    cgroup: Option<CgroupLimits>,
}

impl Template<'_> {
    /// Builds instance `process_num`; `None` when it has no usable command
    /// (reported).
    fn instance(
        &self,
        r: &mut Reader<'_>,
        process_num: u32,
        d: &mut Diagnostics,
    ) -> Option<ProcessConfig> {
        let s = &self.settings;
        let mut exp = with(
            &self.common,
            &[
                ("process_num", Expansion::Int(i64::from(process_num))),
                ("numprocs", Expansion::Int(i64::from(s.numprocs))),
            ],
        );
        let environment: BTreeMap<String, String> = r.environment(&exp, d).into_iter().collect();
        for (k, v) in &environment {
            exp.insert(format!("ENV_{k}"), Expansion::Str(v.clone()));
        }
        let directory = r.text("directory", &exp, d).map(|(t, _)| PathBuf::from(t));
        // Per instance, like command: a numprocs program probes its own port
        // (ready_http=http://127.0.0.1:80%(process_num)02d/).
        let readiness = probe(r, "ready", &exp, d);
        let liveness = probe(r, "live", &exp, d);
        let (stdout, stderr) = self.logs(r, &exp, d);
        let process_name = match r.text("process_name", &exp, d) {
            Some((text, place)) => values::name(&text).unwrap_or_else(|message| {
                d.error(&place, message);
                self.name.clone()
            }),
            None => self.name.clone(),
        };
        let command = r.command("command", &exp, d);
        if command.is_none() && !r.has("command") {
            d.error(&self.place, "program section does not specify a command");
        }
        let (argv, command_line) = command?;
        Some(ProcessConfig {
            name: process_name,
            group: self.group_name.clone(),
            program: self.name.clone(),
            origin: Origin {
                file: self.section.file.to_path_buf(),
                line: self.section.line.unwrap_or(0),
            },
            command: argv,
            command_line,
            process_num,
            numprocs: s.numprocs,
            priority: s.priority,
            autostart: s.autostart,
            startsecs: s.startsecs,
            startretries: s.startretries,
            autorestart: s.autorestart,
            exitcodes: s.exitcodes.clone(),
            stopsignal: s.stopsignal,
            stopwaitsecs: s.stopwaitsecs,
            stopasgroup: s.stopasgroup,
            killasgroup: s.killasgroup,
            user: s.user.clone(),
            redirect_stderr: s.redirect_stderr,
            stdout,
            stderr,
            environment,
            env_files: self.env_file.clone(),
            env_file_vars: EnvFileVars::default(),
            directory,
            umask: s.umask,
            serverurl: s.serverurl.clone(),
            backoff: self.backoff.clone(),
            depends_on: Vec::new(),
            restart_dependents: self.restart_dependents,
            essential: self.essential,
            rlimits: self.rlimits.clone(),
            cgroup: self.cgroup,
            readiness: readiness.map(Box::new),
            liveness: liveness.map(Box::new),
        })
    }

    /// One instance's stdout and stderr logging; with `redirect_stderr` the
    /// stderr log is off.
    fn logs(
        &self,
        r: &mut Reader<'_>,
        exp: &Expansions,
        d: &mut Diagnostics,
    ) -> (LogConfig, LogConfig) {
        let s = &self.settings;
        let section = &self.section.name;
        let mut logs = Vec::new();
        for (i, (channel, [key, maxbytes_key, backups_key, syslog_key])) in
            LOG_KEYS.into_iter().enumerate()
        {
            let mut syslog = r.get(syslog_key, exp, d, false, values::boolean);
            let logfile = match r.text(key, exp, d) {
                Some((text, place)) => match text.trim().to_ascii_lowercase().as_str() {
                    "none" | "off" => LogTarget::None,
                    "auto" => LogTarget::Auto,
                    "syslog" => {
                        d.warn(&place, format!("For [{section}], {key}=syslog but this is deprecated and will be removed. Use {channel}_syslog=true to enable syslog instead."));
                        syslog = true;
                        LogTarget::None
                    }
                    _ => {
                        let base = r
                            .raw(key)
                            .map(RawValue::here)
                            .unwrap_or_else(|| here_of(&self.section.file));
                        let path = values::normalize_path(&text, &base, self.ctx.env);
                        if let Err(message) = self.ctx.dirs.existing_dirpath(&path) {
                            d.error(&place, message);
                        }
                        LogTarget::Path(path)
                    }
                },
                None => LogTarget::Auto,
            };
            let maxbytes = r.get(maxbytes_key, exp, d, 50 << 20, values::byte_size);
            let backups = r.get(backups_key, exp, d, 10, |s| values::integer_in(s, "backups"));
            if logfile == LogTarget::Auto && maxbytes == 0 && (i == 0 || !s.redirect_stderr) {
                d.warn(&self.place, format!("For [{section}], AUTO logging used for {key} without rollover, set maxbytes > 0 to avoid filling up filesystem unintentionally"));
            }
            let format = r.get(
                &format!("{channel}_logfile_format"),
                exp,
                d,
                ChildLogFormat::Raw,
                values::child_log_format,
            );
            let echo = r.get(&format!("{channel}_echo"), exp, d, false, values::boolean);
            logs.push(LogConfig {
                logfile,
                maxbytes,
                backups,
                capture_maxbytes: s.capture[i],
                events_enabled: s.events_enabled[i],
                syslog,
                format,
                echo,
            });
        }
        let mut stderr = logs.pop().expect("two channels were pushed");
        let stdout = logs.pop().expect("two channels were pushed");
        if s.redirect_stderr {
            if matches!(stderr.logfile, LogTarget::Path(_)) {
                d.warn(&self.place, format!("For [{section}], redirect_stderr=true but stderr_logfile has also been set to a filename, the filename has been ignored"));
            }
            stderr.logfile = LogTarget::None;
        }
        (stdout, stderr)
    }
}

/// An `[eventlistener:x]`'s extras: the events it subscribes to, its buffer and
/// result handler.
fn listener(
    r: &mut Reader<'_>,
    common: &Expansions,
    section_place: &Place,
    d: &mut Diagnostics,
) -> EventListenerConfig {
    let events = match r.list("events", common, d, false) {
        Some((items, _, place)) => {
            let mut events = Vec::new();
            for item in items.iter().filter(|i| !i.is_empty()) {
                let upper = item.to_ascii_uppercase();
                if EVENT_TYPES.contains(&upper.as_str()) {
                    events.push(upper);
                } else {
                    d.error(&place, format!("Unknown event type {item}"));
                }
            }
            events
        }
        None => Vec::new(),
    };
    if events.is_empty() && !r.has("events") {
        d.error(section_place, "section requires an \"events\" line");
    }
    let buffer_size: u32 =
        r.get("buffer_size", common, d, 10, |s| values::integer_in(s, "buffer_size"));
    if buffer_size < 1 {
        d.error(section_place, format!("section sets invalid buffer_size ({buffer_size})"));
    }
    let result_handler = r.get(
        "result_handler",
        common,
        d,
        "supervisor.dispatchers:default_handler".to_string(),
        |s| Ok(s.trim().to_string()),
    );
    EventListenerConfig { events, buffer_size, result_handler }
}

/// An `[fcgi-program:x]`'s socket: `unix://` path or `tcp://` address, backlog,
/// and for unix sockets the owner and mode.
fn fcgi_socket(r: &mut Reader<'_>, exp: &Expansions, d: &mut Diagnostics) -> FcgiSocket {
    let place = r.section_place();
    let socket = match r.text("socket", exp, d) {
        Some((text, place)) => {
            let text = text.trim().to_string();
            if let Some(path) = text.strip_prefix("unix://") {
                if !path.starts_with('/') {
                    d.error(&place, format!("Unix socket path {path} is not an absolute path"));
                }
            } else if let Some(addr) = text.strip_prefix("tcp://") {
                if let Err(message) = values::inet_address(addr).and_then(|(h, p)| {
                    if h.is_empty() { Err(format!("{addr} is not host:port")) } else { Ok((h, p)) }
                }) {
                    d.error(&place, message);
                }
            } else {
                d.error(&place, format!("Unknown socket format: {text}"));
            }
            text
        }
        None => {
            d.error(&place, "section requires a \"socket\" line");
            String::new()
        }
    };
    let backlog: u32 = r.get("socket_backlog", exp, d, 4096, |s| {
        values::integer_in::<u32>(s, "socket_backlog").and_then(|n| {
            if (1..=65535).contains(&n) {
                Ok(n)
            } else {
                Err(format!("Invalid socket_backlog value {n}"))
            }
        })
    });
    let is_unix = socket.starts_with("unix://");
    let owner = r.opt("socket_owner", exp, d, values::user_group);
    let mode = r.octal("socket_mode", exp, d);
    if !is_unix && owner.is_some() {
        d.error(&place, "socket_owner parameter is only supported for unix sockets");
    }
    if !is_unix && mode.is_some() {
        d.error(&place, "socket_mode parameter is only supported for unix sockets");
    }
    FcgiSocket { socket, backlog, owner, mode: mode.unwrap_or(0o700) }
}

/// Vigil's restart backoff: linear (supervisord's) or exponential, with its bounds.
fn backoff(r: &mut Reader<'_>, exp: &Expansions, d: &mut Diagnostics) -> BackoffConfig {
    let kind = r.get("backoff", exp, d, BackoffKind::Linear, |s| {
        match s.trim().to_ascii_lowercase().as_str() {
            "linear" => Ok(BackoffKind::Linear),
            "exponential" => Ok(BackoffKind::Exponential),
            _ => Err(format!("'{s}' is not a backoff (linear, exponential)")),
        }
    });
    let initial = r.get("backoff_initial", exp, d, Duration::from_secs(1), values::duration);
    let max = r.opt("backoff_max", exp, d, values::duration);
    let multiplier = r.get("backoff_multiplier", exp, d, 2.0, |s| {
        values::float(s)
            .and_then(|f| if f >= 1.0 { Ok(f) } else { Err(format!("'{s}' must be at least 1.0")) })
    });
    let jitter = r.get("backoff_jitter", exp, d, 0.0, |s| {
        values::float(s).and_then(|f| {
            if (0.0..=1.0).contains(&f) {
                Ok(f)
            } else {
                Err(format!("'{s}' must be between 0 and 1"))
            }
        })
    });
    let reset_after = r.opt("backoff_reset_after", exp, d, values::duration);
    if let Some(max) = max
        && max < initial
    {
        d.error(&r.section_place(), "backoff_max must not be smaller than backoff_initial");
    }
    BackoffConfig { kind, initial, max, multiplier, jitter, reset_after }
}
