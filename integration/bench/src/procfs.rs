//! Reading a process from the outside through `/proc`.
//!
//! Every figure the harness reports about a daemon comes from here: CPU time
//! from `/proc/PID/stat`, memory and context switches from `/proc/PID/status`,
//! and children from `/proc/PID/task/*/children`. The parsers are pure
//! functions over the file text so they can be tested without a process; the
//! readers return `None` when the process is gone, because a process vanishing
//! between two reads is normal here, not an error.

use std::collections::BTreeSet;
use std::fs;

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    pub ppid: i32,
    /// User CPU time in clock ticks.
    pub utime: u64,
    /// System CPU time in clock ticks.
    pub stime: u64,
    /// Start time in clock ticks after boot; with the pid it identifies a
    /// process for its whole life, so a reused pid is never mistaken for it.
    pub start_time: u64,
}

/// Parses the text of `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces
/// and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let close = text.rfind(')')?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // `rest[0]` is field 3 (state); field k is at rest[k - 3].
    let field = |k: usize| rest.get(k - 3).copied();
    Some(Stat {
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

/// Reads `/proc/PID/stat`; `None` once the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The fields of `/proc/PID/status` the harness uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub voluntary_ctxt_switches: u64,
    pub nonvoluntary_ctxt_switches: u64,
}

impl Status {
    /// Context switches of the main thread: each one is the process going to
    /// sleep or being preempted, so their rate over an idle window counts
    /// wake-ups.
    pub fn ctxt_switches(&self) -> u64 {
        self.voluntary_ctxt_switches + self.nonvoluntary_ctxt_switches
    }
}

/// Parses the text of `/proc/PID/status`. Missing fields stay 0 (a zombie has
/// no `VmRSS` line).
pub fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let number = || value.split_whitespace().next().and_then(|v| v.parse::<u64>().ok());
        let slot = match key {
            "VmRSS" => &mut status.vm_rss_kib,
            "VmHWM" => &mut status.vm_hwm_kib,
            "voluntary_ctxt_switches" => &mut status.voluntary_ctxt_switches,
            "nonvoluntary_ctxt_switches" => &mut status.nonvoluntary_ctxt_switches,
            _ => continue,
        };
        if let Some(n) = number() {
            *slot = n;
        }
    }
    status
}

/// Reads `/proc/PID/status`; `None` once the process is gone.
pub fn status(pid: i32) -> Option<Status> {
    Some(parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?))
}

/// Parses the `Pss:` line of `/proc/PID/smaps_rollup`, in KiB: the
/// process's resident memory with every page shared among k processes counted
/// 1/k. Summed over several processes (an s6 supervision tree, whose
/// `s6-supervise` processes share their text and libraries), it counts each
/// shared page once, where a sum of VmRSS would count it once per process.
pub fn parse_pss_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads the PSS of `pid` in KiB; `None` once the process is gone.
pub fn pss_kib(pid: i32) -> Option<u64> {
    parse_pss_kib(&fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// Context switches of all threads of `pid`, from `/proc/PID/task/*/status`.
///
/// A multi-threaded daemon (a tokio runtime) sleeps in its worker threads, so
/// the main thread's counters alone would miss its wake-ups.
pub fn all_threads_ctxt_switches(pid: i32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("status")) {
            total += parse_status(&text).ctxt_switches();
        }
    }
    Some(total)
}

/// Parses one `/proc/PID/task/TID/children` file: pids separated by spaces.
pub fn parse_children(text: &str) -> impl Iterator<Item = i32> + '_ {
    text.split_whitespace().filter_map(|p| p.parse().ok())
}

/// Direct children of `pid` over all its threads (a child belongs to the
/// thread that forked it). Empty once the process is gone.
pub fn children(pid: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(parse_children(&text));
        }
    }
    out
}

/// All descendants of `pid` with their start times, walked breadth first.
pub fn descendants(pid: i32) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for child in children(parent) {
            if let Some(stat) = stat(child) {
                out.push((child, stat.start_time));
                frontier.push(child);
            }
        }
    }
    out
}

/// True while the process `pid` that started at `start_time` still exists and
/// is not a zombie; false for a different process that reused the pid.
pub fn alive_same(pid: i32, start_time: u64) -> bool {
    stat(pid).is_some_and(|s| s.start_time == start_time && s.state != 'Z')
}

/// Parses `/proc/PID/cmdline` (NUL-separated arguments).
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Reads `/proc/PID/cmdline`; empty once the process is gone.
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| parse_cmdline(&b)).unwrap_or_default()
}

/// Clock ticks per second, the unit of `utime`, `stime` and `start_time`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// CPU time (user + system) of `pid` in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let s = stat(pid)?;
    Some((s.utime + s.stime) as f64 / clock_ticks_per_second() as f64)
}

/// Nanoseconds `pid`'s task has run on a CPU (the first field of
/// `/proc/PID/schedstat`), at nanosecond resolution where `stat`'s ticks are
/// 10 ms.
pub fn run_time_ns(pid: i32) -> Option<u64> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?)
}

/// CPU seconds `pids` have used since each was cloned, summed: for
/// programs, the exec and start-up of each, none of it their supervisor's.
pub fn run_time_seconds(pids: &[i32]) -> f64 {
    let ns: u64 = pids.iter().map(|&pid| run_time_ns(pid).unwrap_or(0)).sum();
    ns as f64 / 1e9
}

pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_run_time_is_the_first_field() {
        assert_eq!(parse_schedstat("770091300 1234 5\n"), Some(770_091_300));
        assert_eq!(parse_schedstat(""), None);
        // This process has run.
        assert!(run_time_ns(std::process::id() as i32).is_some_and(|ns| ns > 0));
    }

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        let text = "4242 (we ird) (name)) S 17 4242 4242 0 -1 4194560 120 0 0 0 \
                    31 7 0 0 20 0 1 0 98765 10000 200 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s, Stat { state: 'S', ppid: 17, utime: 31, stime: 7, start_time: 98765 });
    }

    #[test]
    fn stat_truncated_is_none() {
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tsupervisord\nVmHWM:\t   36700 kB\nVmRSS:\t   35600 kB\n\
                    Threads:\t1\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        let s = parse_status(text);
        assert_eq!(s.vm_rss_kib, 35600);
        assert_eq!(s.vm_hwm_kib, 36700);
        assert_eq!(s.ctxt_switches(), 127);
    }

    #[test]
    fn zombie_status_has_no_memory() {
        let s = parse_status("Name:\tx\nState:\tZ (zombie)\nvoluntary_ctxt_switches:\t3\n");
        assert_eq!(s.vm_rss_kib, 0);
        assert_eq!(s.ctxt_switches(), 3);
    }

    #[test]
    fn pss_from_smaps_rollup() {
        let text = "55d0-7ffd ---p 00000000 00:00 0    [rollup]\nRss:    1748 kB\n\
                    Pss:     209 kB\nPss_Dirty:   108 kB\n";
        assert_eq!(parse_pss_kib(text), Some(209));
        assert_eq!(parse_pss_kib("Rss: 1 kB\n"), None);
        assert!(pss_kib(std::process::id() as i32).is_some_and(|k| k > 0));
    }

    #[test]
    fn children_list() {
        assert_eq!(parse_children("12 345 6789 ").collect::<Vec<_>>(), vec![12, 345, 6789]);
        assert_eq!(parse_children("").count(), 0);
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(parse_cmdline(b"sleep\x00100000\x00"), vec!["sleep", "100000"]);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_ne!(s.state, 'Z');
        assert!(alive_same(me, s.start_time));
        assert!(!alive_same(me, s.start_time + 1));
        assert!(status(me).unwrap().vm_rss_kib > 0);
    }
}
