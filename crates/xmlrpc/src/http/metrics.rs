//! `/metrics`: the daemon's [`Facts`] in the Prometheus text exposition format
//! (version 0.0.4). Everything is taken in one `facts` call when scraped; nothing
//! is sampled between scrapes.
//!
//! Per process (labels `group`, `name`): state (one-hot over every state), up,
//! restarts, start time, the last exit (code, signal, time), CPU seconds by mode,
//! resident memory, bytes logged per channel, probe verdict (one-hot, probed
//! processes only) and dependencies waited for. Per group: processes and running
//! processes. Daemon: build info, start time, uptime, config generation, reloads.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use vigil_rpc::{Facts, Health, ProcessFacts, ProcessState};

/// The content type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `facts` as one scrape.
pub(crate) fn render(facts: &Facts) -> String {
    // About 1.5 KB per process; reserving avoids regrowing for large trees.
    let mut out = String::with_capacity(2048 + facts.processes.len() * 1536);
    let daemon = &facts.daemon;
    family(&mut out, "vigil_build_info", "gauge", "vigild's version; always 1.");
    let _ = writeln!(out, "vigil_build_info{{version=\"{}\"}} 1", Escaped(&daemon.version));
    let scalar = |out: &mut String, name: &str, kind: &str, help: &str, value: i64| {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    };
    scalar(
        &mut out,
        "vigil_start_time_seconds",
        "gauge",
        "When vigild started, in seconds since the epoch.",
        daemon.started,
    );
    scalar(
        &mut out,
        "vigil_uptime_seconds",
        "gauge",
        "Seconds since vigild started.",
        daemon.now.saturating_sub(daemon.started),
    );
    scalar(
        &mut out,
        "vigil_config_generation",
        "gauge",
        "1 for the first config, plus one per reload and applied update.",
        count(daemon.config_generation),
    );
    scalar(
        &mut out,
        "vigil_config_reloads_total",
        "counter",
        "Reloads since vigild started.",
        count(daemon.reloads),
    );

    let processes = &facts.processes;
    // Each process's labels are escaped once and copied into its ~20 samples.
    let labels: Vec<String> = processes.iter().map(labels).collect();
    family(
        &mut out,
        "vigil_process_state",
        "gauge",
        "1 for the state the process is in, 0 for the others.",
    );
    for (process, labels) in processes.iter().zip(&labels) {
        for state in ProcessState::ALL {
            let on = if process.info.state == state { "1" } else { "0" };
            sample(&mut out, "vigil_process_state", labels, &["state=\"", state.name(), "\""]);
            out.push_str(on);
            out.push('\n');
        }
    }
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_up",
        "gauge",
        "1 when the process is RUNNING.",
        |p| Some(i64::from(p.info.state == ProcessState::Running)),
    );
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_restarts_total",
        "counter",
        "Spawns after the first since vigild started (automatic or requested).",
        |p| Some(count(p.restarts)),
    );
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_start_time_seconds",
        "gauge",
        "When the current or last child was started, in seconds since the epoch.",
        |p| (p.info.start != 0).then_some(p.info.start),
    );
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_last_exit_code",
        "gauge",
        "Exit code of the last child; -1 when a signal killed it.",
        |p| p.last_exit.as_ref().map(|exit| exit.code.map_or(-1, i64::from)),
    );
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_last_exit_signal",
        "gauge",
        "Signal that killed the last child; 0 when it exited.",
        |p| p.last_exit.as_ref().map(|exit| exit.signal.map_or(0, i64::from)),
    );
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_last_exit_time_seconds",
        "gauge",
        "When the last child was reaped, in seconds since the epoch.",
        |p| p.last_exit.as_ref().map(|exit| exit.at),
    );
    family(
        &mut out,
        "vigil_process_cpu_seconds_total",
        "counter",
        "CPU time of the current child by mode.",
    );
    for (process, labels) in processes.iter().zip(&labels) {
        if let Some(usage) = &process.usage {
            for (mode, micros) in [("user", usage.cpu_user_us), ("system", usage.cpu_system_us)] {
                let name = "vigil_process_cpu_seconds_total";
                sample(&mut out, name, labels, &["mode=\"", mode, "\""]);
                let _ = writeln!(out, "{}", Seconds(micros));
            }
        }
    }
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_resident_memory_bytes",
        "gauge",
        "Resident set size of the current child.",
        |p| p.usage.map(|usage| count(usage.rss_bytes)),
    );
    family(
        &mut out,
        "vigil_process_log_bytes_total",
        "counter",
        "Bytes the process wrote to each output channel's log.",
    );
    for (process, labels) in processes.iter().zip(&labels) {
        for (channel, bytes) in [("stdout", process.stdout_bytes), ("stderr", process.stderr_bytes)]
        {
            let name = "vigil_process_log_bytes_total";
            sample(&mut out, name, labels, &["channel=\"", channel, "\""]);
            let _ = writeln!(out, "{bytes}");
        }
    }
    family(
        &mut out,
        "vigil_process_health_status",
        "gauge",
        "Probed processes: 1 for the probes' current verdict, 0 for the others.",
    );
    for (process, labels) in processes.iter().zip(&labels) {
        let Some(health) = &process.info.health else { continue };
        for (status, on) in [
            ("unknown", matches!(health, Health::Unknown)),
            ("healthy", matches!(health, Health::Healthy)),
            ("unhealthy", matches!(health, Health::Unhealthy { .. })),
        ] {
            sample(&mut out, "vigil_process_health_status", labels, &["status=\"", status, "\""]);
            out.push_str(if on { "1\n" } else { "0\n" });
        }
    }
    per_process(
        &mut out,
        processes,
        &labels,
        "vigil_process_waiting_dependencies",
        "gauge",
        "Dependencies (depends_on) the process waits for before it is spawned.",
        |p| Some(i64::try_from(p.info.waiting_for.len()).unwrap_or(i64::MAX)),
    );

    let mut groups: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for process in processes {
        let (total, up) = groups.entry(&process.info.group).or_default();
        *total += 1;
        *up += i64::from(process.info.state == ProcessState::Running);
    }
    family(&mut out, "vigil_group_processes", "gauge", "Processes in the group.");
    for (group, (total, _)) in &groups {
        let _ = writeln!(out, "vigil_group_processes{{group=\"{}\"}} {total}", Escaped(group));
    }
    family(
        &mut out,
        "vigil_group_processes_running",
        "gauge",
        "Processes of the group that are RUNNING.",
    );
    for (group, (_, up)) in &groups {
        let _ = writeln!(out, "vigil_group_processes_running{{group=\"{}\"}} {up}", Escaped(group));
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One family with one sample per process that has a value; `labels` are the
/// processes' own, in the same order.
fn per_process(
    out: &mut String,
    processes: &[ProcessFacts],
    labels: &[String],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&ProcessFacts) -> Option<i64>,
) {
    family(out, name, kind, help);
    for (process, labels) in processes.iter().zip(labels) {
        if let Some(value) = value(process) {
            sample(out, name, labels, &[]);
            let _ = writeln!(out, "{value}");
        }
    }
}

/// `name{labels,extra} `, up to the value.
fn sample(out: &mut String, name: &str, labels: &str, extra: &[&str]) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    if !extra.is_empty() {
        out.push(',');
        for part in extra {
            out.push_str(part);
        }
    }
    out.push_str("} ");
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `group="…",name="…"` for one process.
fn labels(process: &ProcessFacts) -> String {
    let (group, name) = (&process.info.group, &process.info.name);
    let mut out = String::with_capacity(group.len() + name.len() + 16);
    let _ = write!(out, "group=\"{}\",name=\"{}\"", Escaped(group), Escaped(name));
    out
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Microseconds as decimal seconds, exactly (`1.25`, `0.000001`).
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:06}", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}
