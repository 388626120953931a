//! [`ProcessInfo`]: supervisord's `getProcessInfo` struct, computed from a
//! process's published snapshot without a round-trip through its actor.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use smol_str::SmolStr;
use vigil_config::ProcessConfig;

use crate::exit::ExitStatus;
use crate::lifecycle::ProcessState;
use crate::usage::Usage;

/// What a process actor publishes after every message it handles. Readers clone
/// it out of a `tokio::sync::watch` channel, so status of thousands of processes
/// never waits on their mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) state: ProcessState,
    pub(crate) pid: Option<u32>,
    /// supervisord's `laststart`: the last spawn attempt.
    pub(crate) start: Option<SystemTime>,
    /// supervisord's `laststop`: the last time a child was reaped.
    pub(crate) stop: Option<SystemTime>,
    pub(crate) spawnerr: Option<String>,
    pub(crate) exitstatus: Option<ExitStatus>,
    /// The backoff counter.
    pub(crate) tries: u32,
    /// STARTING without a child: the dependencies not met yet (labels).
    pub(crate) waiting_for: Vec<String>,
    /// `None` without probes.
    pub(crate) health: Option<Health>,
}

/// What the health probes of a process last said (Vigil extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No verdict for the current child yet.
    Unknown,
    /// Ready, and the last liveness check (if any) passed.
    Healthy,
    /// The last liveness check failed (fewer times than its threshold so far).
    Unhealthy,
}

impl Health {
    /// Its code in a live upgrade's record (`CarriedProcess::health`).
    pub(crate) fn carried(self) -> u8 {
        match self {
            Health::Unknown => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        }
    }

    /// [`Health::carried`] read back; an unknown code is no verdict.
    pub(crate) fn from_carried(code: u8) -> Health {
        match code {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    /// The word shown in status descriptions and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "health unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

impl Snapshot {
    /// The status column ([`ProcessInfo::description`]) at epoch second `now`,
    /// before a log's problems and the OOM killer's note are added.
    pub(crate) fn description(&self, name: &str, now: i64) -> String {
        let start = self.start.map_or(0, epoch);
        let stop = self.stop.map_or(0, epoch);
        let pid = self.pid.unwrap_or(0);
        let spawnerr = self.spawnerr.as_deref().unwrap_or("");
        let mut description =
            describe(self.state, name, pid, start, stop, now, spawnerr, local_time);
        match (self.state, self.health) {
            (ProcessState::Running, Some(health)) => {
                description.push_str(", ");
                description.push_str(health.as_str());
            }
            (ProcessState::Starting, _) if !self.waiting_for.is_empty() => {
                description = format!("waiting for {}", self.waiting_for.join(", "));
            }
            _ => {}
        }
        description
    }

    /// EXITED with a code in `config`'s `exitcodes`.
    pub(crate) fn completed_successfully(&self, config: &ProcessConfig) -> bool {
        self.state == ProcessState::Exited
            && self
                .exitstatus
                .is_some_and(|status| config.exitcodes.contains(&status.supervisord_code()))
    }

    pub(crate) fn never_started() -> Snapshot {
        Snapshot {
            state: ProcessState::Stopped,
            pid: None,
            start: None,
            stop: None,
            spawnerr: None,
            exitstatus: None,
            tries: 0,
            waiting_for: Vec::new(),
            health: None,
        }
    }
}

/// One process's status, field for field supervisord's `getProcessInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process's name.
    pub name: SmolStr,
    /// Its group's name.
    pub group: SmolStr,
    /// `group:name`, or `name` when both are the same.
    pub namespec: SmolStr,
    /// Epoch seconds of the last start attempt; 0 if never started.
    pub start: i64,
    /// Epoch seconds of the last exit; 0 if never.
    pub stop: i64,
    /// Epoch seconds when this info was taken.
    pub now: i64,
    /// The current state.
    pub state: ProcessState,
    /// supervisord's name of `state` (`RUNNING`).
    pub statename: &'static str,
    /// The last spawn error, or empty.
    pub spawnerr: SmolStr,
    /// The last exit code; -1 for a death by signal; 0 if none.
    pub exitstatus: i32,
    /// Same as `stdout_logfile` (supervisord's alias).
    pub logfile: SmolStr,
    /// The stdout log path, empty if none.
    pub stdout_logfile: SmolStr,
    /// The stderr log path, empty if none.
    pub stderr_logfile: SmolStr,
    /// 0 when no child exists.
    pub pid: u32,
    /// supervisorctl's status column text (`pid 42, uptime 0:03:10`), with
    /// Vigil's additions: `, healthy` / `, unhealthy` after the uptime of a
    /// probed process, `waiting for db, cache:healthy` for a STARTING process
    /// held back by its dependencies.
    pub description: String,
    /// Vigil extension: the dependencies a STARTING process waits for.
    pub waiting_for: Vec<String>,
    /// Vigil extension: probe verdict; `None` for a process without probes.
    pub health: Option<Health>,
    /// Vigil extension: `autostart` of its config.
    pub autostart: bool,
    /// Vigil extension: EXITED with a code in its `exitcodes` (a one-shot that
    /// did its job; what `depends_on = x:completed_successfully` waits for).
    pub completed: bool,
    /// Vigil extension: spawns after the first since the daemon started (or
    /// since `update` replaced the process), automatic or requested.
    pub restarts: u64,
    /// Vigil extension: how the last child ended (at `stop`); `None` if none did.
    pub last_exit: Option<ExitStatus>,
    /// Vigil extension: the kernel's OOM killer acted in the process's control
    /// group during the run that ended last.
    pub oom_killed: bool,
    /// Vigil extension: bytes written to the stdout log since it was created.
    pub stdout_bytes: u64,
    /// Vigil extension: bytes written to the stderr log since it was created.
    pub stderr_bytes: u64,
    /// Vigil extension: CPU time and memory of the child, read from /proc only
    /// by [`crate::Handle::process_facts`]; `None` otherwise and without a child.
    pub usage: Option<Usage>,
}

/// A process's names and log paths as status shows them, made once when its
/// record is: a status of thousands of processes then copies short inline
/// texts and reference counts instead of allocating each name and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Labels {
    pub(crate) name: SmolStr,
    pub(crate) group: SmolStr,
    /// `group:name`, or `name` when both are the same.
    pub(crate) namespec: SmolStr,
    /// Empty when the channel is not logged to a file.
    pub(crate) stdout_logfile: SmolStr,
    pub(crate) stderr_logfile: SmolStr,
}

impl Labels {
    pub(crate) fn new(
        group: &str,
        name: &str,
        stdout_logfile: Option<&Path>,
        stderr_logfile: Option<&Path>,
    ) -> Labels {
        let path = |path: Option<&Path>| {
            path.map(|path| SmolStr::new(path.to_string_lossy())).unwrap_or_default()
        };
        Labels {
            name: SmolStr::new(name),
            group: SmolStr::new(group),
            namespec: SmolStr::new(vigil_config::make_namespec(group, name)),
            stdout_logfile: path(stdout_logfile),
            stderr_logfile: path(stderr_logfile),
        }
    }
}

impl ProcessInfo {
    pub(crate) fn new(labels: &Labels, snapshot: &Snapshot, now: SystemTime) -> ProcessInfo {
        let start = snapshot.start.map_or(0, epoch);
        let stop = snapshot.stop.map_or(0, epoch);
        let now = epoch(now);
        let pid = snapshot.pid.unwrap_or(0);
        let spawnerr = snapshot.spawnerr.as_deref().map(SmolStr::new).unwrap_or_default();
        let description = snapshot.description(&labels.name, now);
        ProcessInfo {
            name: labels.name.clone(),
            group: labels.group.clone(),
            namespec: labels.namespec.clone(),
            start,
            stop,
            now,
            state: snapshot.state,
            statename: snapshot.state.name(),
            spawnerr,
            exitstatus: snapshot.exitstatus.map_or(0, |status| status.supervisord_code()),
            logfile: labels.stdout_logfile.clone(),
            stdout_logfile: labels.stdout_logfile.clone(),
            stderr_logfile: labels.stderr_logfile.clone(),
            pid,
            description,
            waiting_for: snapshot.waiting_for.clone(),
            health: snapshot.health,
            autostart: false,
            completed: false,
            restarts: 0,
            last_exit: None,
            oom_killed: false,
            stdout_bytes: 0,
            stderr_bytes: 0,
            usage: None,
        }
    }
}

/// What a process has counted, for [`ProcessInfo::complete`].
pub(crate) struct Counts {
    pub(crate) spawns: u64,
    pub(crate) last_exit: Option<ExitStatus>,
    pub(crate) oom_killed: bool,
    pub(crate) stdout_bytes: u64,
    pub(crate) stderr_bytes: u64,
}

impl ProcessInfo {
    /// Fills in the Vigil extensions [`ProcessInfo::new`] leaves out: the
    /// config's `autostart`, whether the process completed successfully
    /// ([`Snapshot::completed_successfully`]), and its counters.
    pub(crate) fn complete(&mut self, autostart: bool, completed: bool, counts: Counts) {
        self.autostart = autostart;
        self.completed = completed;
        self.restarts = counts.spawns.saturating_sub(1);
        self.last_exit = counts.last_exit;
        self.oom_killed = self.last_exit.is_some() && counts.oom_killed;
        if let Some(note) = oom_note(self.state, self.last_exit, counts.oom_killed) {
            self.description.push_str(note);
        }
        self.stdout_bytes = counts.stdout_bytes;
        self.stderr_bytes = counts.stderr_bytes;
    }
}

/// What a stopped process's description adds when the kernel's OOM killer
/// acted in its control group during the run that ended last.
pub(crate) fn oom_note(
    state: ProcessState,
    last_exit: Option<ExitStatus>,
    oom_killed: bool,
) -> Option<&'static str> {
    let stopped = matches!(
        state,
        ProcessState::Exited | ProcessState::Stopped | ProcessState::Backoff | ProcessState::Fatal
    );
    if !(stopped && oom_killed) {
        return None;
    }
    // The counter covers the whole group: the program itself, or one of its
    // children, may have been the one killed.
    let killed = last_exit?.signal() == Some(libc::SIGKILL);
    Some(if killed {
        ", killed by the kernel OOM killer"
    } else {
        ", the kernel OOM killer acted in its control group"
    })
}

/// One line of `status`: a process's names, state and
/// [`ProcessInfo::description`], made without copying its log paths,
/// counters or error text (what a status of thousands of processes needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The process's name.
    pub name: SmolStr,
    /// Its group's name.
    pub group: SmolStr,
    /// The current state.
    pub state: ProcessState,
    /// The same text as [`ProcessInfo::description`].
    pub description: String,
}

pub(crate) fn epoch(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// supervisorctl's `_interpretProcessInfo`. `format_local` renders an epoch as
/// `%b %d %I:%M %p` in local time (a parameter so tests need no time zone).
#[allow(clippy::too_many_arguments)]
pub(crate) fn describe(
    state: ProcessState,
    name: &str,
    pid: u32,
    start: i64,
    stop: i64,
    now: i64,
    spawnerr: &str,
    format_local: fn(i64) -> String,
) -> String {
    match state {
        ProcessState::Running => {
            // Never negative, as supervisorctl clamps it.
            let uptime = u64::try_from(now.saturating_sub(start)).unwrap_or(0);
            format!("pid {pid}, uptime {}", timedelta(uptime))
        }
        ProcessState::Fatal | ProcessState::Backoff => {
            if spawnerr.is_empty() {
                format!("unknown error (try \"tail {name}\")")
            } else {
                spawnerr.to_owned()
            }
        }
        ProcessState::Stopped | ProcessState::Exited => {
            if start == 0 {
                "Not started".to_owned()
            } else {
                format_local(stop)
            }
        }
        ProcessState::Starting | ProcessState::Stopping | ProcessState::Unknown => String::new(),
    }
}

/// Python's `str(timedelta(seconds=n))`: `0:03:10`, `1 day, 2:03:04`.
/// A `Display` value, so a status line is formatted in one allocation.
pub(crate) fn timedelta(seconds: u64) -> Timedelta {
    Timedelta(seconds)
}

/// What [`timedelta`] returns.
pub(crate) struct Timedelta(u64);

impl std::fmt::Display for Timedelta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.0 / 86_400;
        let rest = self.0 % 86_400;
        match days {
            0 => {}
            1 => f.write_str("1 day, ")?,
            n => write!(f, "{n} days, ")?,
        }
        write!(f, "{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
    }
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// `time.strftime('%b %d %I:%M %p', time.localtime(epoch))` in the C locale.
pub(crate) fn local_time(epoch: i64) -> String {
    let time: libc::time_t = epoch;
    // SAFETY: `tm` is plain old data; zeroed is a valid value for it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the reentrant
    // variant and writes only into `tm`.
    let converted = unsafe { !libc::localtime_r(&time, &mut tm).is_null() };
    if !converted {
        return epoch.to_string();
    }
    format_tm(tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min)
}

fn format_tm(month: i32, day: i32, hour: i32, minute: i32) -> String {
    let month = usize::try_from(month).ok().and_then(|m| MONTHS.get(m)).copied().unwrap_or("???");
    let hour12 = match hour % 12 {
        0 => 12,
        h => h,
    };
    let meridiem = if hour < 12 { "AM" } else { "PM" };
    format!("{month} {day:02} {hour12:02}:{minute:02} {meridiem}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(epoch: i64) -> String {
        format!("at {epoch}")
    }

    #[test]
    fn uptime_is_python_timedelta() {
        assert_eq!(timedelta(0).to_string(), "0:00:00");
        assert_eq!(timedelta(190).to_string(), "0:03:10");
        assert_eq!(timedelta(86_400 + 7384).to_string(), "1 day, 2:03:04");
        assert_eq!(timedelta(3 * 86_400).to_string(), "3 days, 0:00:00");
    }

    #[test]
    fn descriptions_follow_supervisorctl() {
        let d = |state, start, stop, err: &str| {
            describe(state, "web", 42, start, stop, 1190, err, fixed)
        };
        assert_eq!(d(ProcessState::Running, 1000, 0, ""), "pid 42, uptime 0:03:10");
        assert_eq!(d(ProcessState::Running, 2000, 0, ""), "pid 42, uptime 0:00:00");
        assert_eq!(d(ProcessState::Stopped, 0, 0, ""), "Not started");
        assert_eq!(d(ProcessState::Stopped, 1000, 1100, ""), "at 1100");
        assert_eq!(d(ProcessState::Exited, 1000, 1100, "Bad exit code 1"), "at 1100");
        assert_eq!(
            d(ProcessState::Fatal, 1000, 1100, "Exited too quickly (process log may have details)"),
            "Exited too quickly (process log may have details)"
        );
        assert_eq!(d(ProcessState::Backoff, 1000, 0, ""), "unknown error (try \"tail web\")");
        assert_eq!(d(ProcessState::Starting, 1000, 0, ""), "");
        assert_eq!(d(ProcessState::Stopping, 1000, 0, ""), "");
        assert_eq!(d(ProcessState::Unknown, 1000, 0, ""), "");
    }

    #[test]
    fn stop_time_uses_strftime_b_d_i_m_p() {
        assert_eq!(format_tm(10, 23, 23, 18), "Nov 23 11:18 PM");
        assert_eq!(format_tm(10, 24, 6, 12), "Nov 24 06:12 AM");
        assert_eq!(format_tm(0, 1, 0, 5), "Jan 01 12:05 AM");
        assert_eq!(format_tm(5, 9, 12, 0), "Jun 09 12:00 PM");
        // The real conversion produces the same shape.
        let text = local_time(1_700_000_000);
        assert_eq!(text.len(), "Nov 14 10:13 PM".len(), "{text}");
    }
}
