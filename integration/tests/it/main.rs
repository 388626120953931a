//! Black-box tests in one binary (each test binary is linked on its own): the real `vigild` and
//! `vigilctl` driving the `vigil-test-child` helper, one module per area.
//!
//! Each test has its own [`Sandbox`] (directory, config, socket) and its own
//! daemon, so tests run in parallel; dropping the [`vigil_integration::Daemon`]
//! shuts it down with SIGTERM and fails the test if any process it started is
//! left behind. vigil-core's reaper tests live in `tests/runtime.rs`: a
//! `waitpid(-1)` reaper in this process would steal the exit statuses the
//! harness waits for.

mod control;
mod ctl;
mod daemon;
mod deploy;
mod edge;
mod env;
mod http;
mod lifecycle;
mod logformat;
mod logs;
mod logsafety;
mod modcycles;
mod observe;
mod reaping;
mod seed;
mod stdin;
mod stop;
mod stress;
mod survivors;
mod top;
mod update;
mod upgrade;
mod workspace;

use vigil_integration::{Sandbox, TIMEOUT, wait_for};

/// The lines of a program's stdout log (`logs/<name>.out`).
pub fn out_lines(sandbox: &Sandbox, name: &str) -> Vec<String> {
    String::from_utf8_lossy(&std::fs::read(sandbox.stdout_log(name)).unwrap_or_default())
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the program's stdout log has a line starting with `prefix` and
/// returns the rest of that line.
pub fn wait_out_line(sandbox: &Sandbox, name: &str, prefix: &str) -> String {
    wait_for(TIMEOUT, &format!("{name}'s stdout to show {prefix:?}"), || {
        out_lines(sandbox, name)
            .iter()
            .find_map(|line| line.strip_prefix(prefix).map(str::to_owned))
    })
}

/// How many lines of the program's stdout log equal `line`.
pub fn count_out_lines(sandbox: &Sandbox, name: &str, line: &str) -> usize {
    out_lines(sandbox, name).iter().filter(|l| *l == line).count()
}

/// Milliseconds since the epoch-ish (days of the month are enough for the gaps
/// tests measure) of an activity log line `2026-11-23 23:34:01,123 LEVEL ...`.
pub fn log_time_ms(line: &str) -> Option<u64> {
    let stamp = line.get(..23)?;
    let (date, time) = stamp.split_once(' ')?;
    let day: u64 = date.get(8..10)?.parse().ok()?;
    let (clock, millis) = time.split_once(',')?;
    let mut parts = clock.split(':').map(|p| p.parse::<u64>().ok());
    let (hours, minutes, seconds) = (parts.next()??, parts.next()??, parts.next()??);
    let millis: u64 = millis.parse().ok()?;
    Some((((day * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000 + millis)
}

/// The times of the activity log lines containing `needle`.
pub fn log_times(log: &str, needle: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains(needle))
        .map(|line| log_time_ms(line).unwrap_or_else(|| panic!("no timestamp in {line:?}")))
        .collect()
}
