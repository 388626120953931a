//! Black-box tests, one binary (see STYLE.md 4.4): the real `vigild` and
//! `vigilctl` driving the `vigil-test-child` helper, one module per area.
//!
//! Each test has its own [`Sandbox`] (directory, config, socket) and its own
//! daemon, so tests run in parallel; dropping the [`vigil_integration::Daemon`]
//! shuts it down with SIGTERM and fails the test if any process it started is
//! left behind. vigil-core's reaper tests live in `tests/runtime.rs`: a
//! `waitpid(-1)` reaper in this process would steal the exit statuses the
//! harness waits for.

mod ctl;
mod daemon;
mod env;
mod lifecycle;
mod logs;
mod reaping;
mod seed;
mod stop;
mod update;
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
