//! The tree's process facts and the daemon's counters in vigil-rpc's wire
//! types, for the `facts` call behind `status --json`, `/metrics` and `/readyz`.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use vigil_core::exit::ExitStatus;
use vigil_rpc::{DaemonFacts, LastExit, ProcessFacts, ProcessInfo, Usage};

use crate::app::DaemonCounters;

/// The daemon's facts as of now; `version` is vigild's.
pub fn daemon_facts(counters: &DaemonCounters, version: &str) -> DaemonFacts {
    DaemonFacts {
        version: version.to_owned(),
        pid: std::process::id(),
        started: epoch(counters.started),
        now: epoch(SystemTime::now()),
        config_generation: counters.generation.load(Ordering::Relaxed),
        reloads: counters.reloads.load(Ordering::Relaxed),
    }
}

/// One process's facts on the wire; `to_wire` translates what `getProcessInfo`
/// reports.
pub fn process_facts(
    info: vigil_core::ProcessInfo,
    to_wire: impl FnOnce(vigil_core::ProcessInfo) -> ProcessInfo,
) -> ProcessFacts {
    let last_exit = info.last_exit.map(|status| LastExit {
        at: info.stop,
        code: match status {
            ExitStatus::Code(code) => Some(code),
            ExitStatus::Signal(_) | ExitStatus::Dumped(_) => None,
        },
        signal: status.signal(),
        core_dumped: matches!(status, ExitStatus::Dumped(_)),
        oom_killed: info.oom_killed,
    });
    let usage = info.usage.map(|usage| Usage {
        cpu_user_us: micros(usage.cpu_user),
        cpu_system_us: micros(usage.cpu_system),
        rss_bytes: usage.rss_bytes,
    });
    ProcessFacts {
        autostart: info.autostart,
        completed: info.completed,
        restarts: info.restarts,
        last_exit,
        usage,
        stdout_bytes: info.stdout_bytes,
        stderr_bytes: info.stderr_bytes,
        info: to_wire(info),
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn epoch(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
}
