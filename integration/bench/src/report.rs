//! The written results: the machine the run happened on, the side-by-side
//! table, and notes on failed or skipped repetitions, as markdown
//! (`BENCHMARKS.md`) and optionally as JSON with every raw value.

use crate::stats::Results;
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where and when the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub date_utc: String,
}

impl Machine {
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
            memory: mem_total(&read("/proc/meminfo")).unwrap_or_else(|| "unknown".into()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            date_utc: utc_now(),
        }
    }
}

/// The first `model name` in `/proc/cpuinfo`.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// `MemTotal` from `/proc/meminfo`, in GiB.
pub fn mem_total(meminfo: &str) -> Option<String> {
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(format!("{:.1} GiB", kib / 1024.0 / 1024.0))
}

/// Current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Formats seconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, rem % 3600 / 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01, counting in
/// 400-year eras of 146,097 days that start on March 1st (so the leap day
/// is the last day of an era-year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // Days from 0000-03-01 to 1970-01-01.
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month =
        if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Everything a report needs besides the results.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub machine: Machine,
    pub command_line: String,
    /// Label, daemon template, ctl template, version line.
    pub targets: Vec<TargetInfo>,
    pub repeats: usize,
    pub duration_s: f64,
    pub orphans_reaped: u64,
    /// How s6's and Horust's models differ from the others, for the
    /// targets that are in the table.
    pub model_notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub label: String,
    /// Empty for a target that is not installed (`version` says why).
    pub daemon: String,
    pub ctl: Option<String>,
    pub version: Option<String>,
}

/// The markdown report.
pub fn markdown(info: &RunInfo, results: &Results) -> String {
    let labels: Vec<String> = info.targets.iter().map(|t| t.label.clone()).collect();
    let m = &info.machine;
    let mut out = String::from("# Benchmarks\n\n");
    out.push_str("Produced by `vigil-bench` (integration/bench); every figure is measured from outside the daemon.\n\n");
    out.push_str("## Setup\n\n| | |\n| --- | --- |\n");
    out.push_str(&format!("| Date | {} |\n", m.date_utc));
    out.push_str(&format!(
        "| Machine | `nproc` = {}, CPU \"{}\", {} RAM, kernel {} |\n",
        m.nproc, m.cpu_model, m.memory, m.kernel
    ));
    for t in &info.targets {
        let version = t.version.as_deref().unwrap_or("version unknown");
        let how = match &t.ctl {
            _ if t.daemon.is_empty() => String::new(),
            Some(ctl) => format!(" (daemon `{}`, CLI `{ctl}`)", t.daemon),
            None => format!(" (daemon `{}`, observed through `/proc`)", t.daemon),
        };
        out.push_str(&format!("| {} | {version}{how} |\n", t.label));
    }
    out.push_str(&format!(
        "| Repeats | {} per scenario case, targets alternating, a new daemon in a new temp dir each time |\n",
        info.repeats
    ));
    out.push_str(&format!("| Duration | {:.0} s |\n", info.duration_s));
    out.push_str(&format!("| Command | `{}` |\n\n", info.command_line));
    out.push_str("## Results\n\nMedian and (min - max) over the repetitions; for S4 and S5 each repetition's value is itself a median. ");
    if labels.len() > 1 {
        out.push_str(&format!(
            "The last column(s) say how many times better `{}` is (lower is better for times, CPU, memory and wake-ups; higher for throughput).",
            labels[0]
        ));
    }
    out.push_str("\n\n");
    out.push_str(&results.table(&labels));
    out.push('\n');
    if !info.model_notes.is_empty() {
        out.push_str("## Where s6 and Horust differ\n\n");
        for n in &info.model_notes {
            out.push_str(&format!("- {n}\n"));
        }
        out.push('\n');
    }
    if results.notes.is_empty() {
        out.push_str("Every repetition completed and passed its checks.\n");
    } else {
        out.push_str("## Failed or skipped repetitions\n\n");
        for n in &results.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    if info.orphans_reaped > 0 {
        out.push_str(&format!(
            "\n{} process(es) outlived their parent and were collected by the harness (a subreaper):\n\n",
            info.orphans_reaped
        ));
        for e in &results.escaped {
            out.push_str(&format!("- {}: {}\n", e.run, e.count));
        }
    }
    out
}

/// The JSON report: run info plus every raw value.
pub fn json(info: &RunInfo, results: &Results) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Report<'a> {
        info: &'a RunInfo,
        results: &'a Results,
    }
    serde_json::to_string_pretty(&Report { info, results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_795_994_040), "2026-11-29 23:14 UTC");
    }

    #[test]
    fn peers_get_their_lines_and_model_notes() {
        let target = |label: &str, daemon: &str, ctl: Option<&str>, version: &str| TargetInfo {
            label: label.into(),
            daemon: daemon.into(),
            ctl: ctl.map(String::from),
            version: Some(version.into()),
        };
        let info = RunInfo {
            machine: Machine {
                nproc: 2,
                cpu_model: "cpu".into(),
                memory: "1 GiB".into(),
                kernel: "6".into(),
                date_utc: format_utc(0),
            },
            command_line: "vigil-bench".into(),
            targets: vec![
                target("vigil", "vigild", Some("vigilctl"), "0.1.0"),
                target("s6", "s6-svscan {config}", None, "s6 2.11.3.2-1"),
                target("horust", "", None, "not installed: horust not found"),
            ],
            repeats: 1,
            duration_s: 1.0,
            orphans_reaped: 0,
            model_notes: vec!["s6: one s6-supervise per program.".into()],
        };
        let md = markdown(&info, &Results::default());
        assert!(md.contains("| vigil | 0.1.0 (daemon `vigild`, CLI `vigilctl`) |"), "{md}");
        assert!(md.contains(
            "| s6 | s6 2.11.3.2-1 (daemon `s6-svscan {config}`, observed through `/proc`) |"
        ));
        assert!(md.contains("| horust | not installed: horust not found |\n"));
        assert!(
            md.contains("## Where s6 and Horust differ\n\n- s6: one s6-supervise per program.\n")
        );
        assert!(!md.contains("collected by the harness"), "{md}");

        // Collected processes are listed by the run they came from, the
        // repetitions summed.
        let mut results = Results::default();
        results.record_escaped("S1 [N=500] s6".into(), 161);
        results.record_escaped("S1 [N=500] vigil".into(), 0);
        results.record_escaped("S1 [N=500] s6".into(), 161);
        results.record_escaped("S2 [N=0 running] horust".into(), 1);
        let info = RunInfo { orphans_reaped: 323, ..info };
        let md = markdown(&info, &results);
        assert!(
            md.ends_with(
                "\n323 process(es) outlived their parent and were collected by the harness \
                 (a subreaper):\n\n- S1 [N=500] s6: 322\n- S2 [N=0 running] horust: 1\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn machine_parsers() {
        let cpu = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpu).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(mem_total("MemTotal:       24576000 kB\n").as_deref(), Some("23.4 GiB"));
        assert_eq!(cpu_model(""), None);
    }
}
