//! [`Usage`]: what a child costs right now (CPU time, resident memory), read from
//! `/proc/<pid>/stat` when someone asks. Nothing here polls: an idle daemon that
//! nobody queries reads nothing, and one request reads each file once.

use std::sync::OnceLock;
use std::time::Duration;

/// CPU time and memory of one process, as the kernel accounts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Time spent in user mode.
    pub cpu_user: Duration,
    /// Time spent in the kernel on the process's behalf.
    pub cpu_system: Duration,
    /// Resident set size.
    pub rss_bytes: u64,
}

impl Usage {
    /// Reads `/proc/<pid>/stat`; `None` when the process is gone or the file
    /// cannot be read or parsed (no `/proc`, another kernel's layout).
    pub fn of(pid: u32) -> Option<Usage> {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat, units())
    }
}

/// Clock ticks per second and the page size, asked of the kernel once.
#[derive(Debug, Clone, Copy)]
struct Units {
    ticks_per_second: u64,
    page_size: u64,
}

fn units() -> Units {
    static UNITS: OnceLock<Units> = OnceLock::new();
    *UNITS.get_or_init(|| {
        // SAFETY: sysconf only reads a system setting; -1 (unknown) fails the conversion.
        let ask = |name| u64::try_from(unsafe { libc::sysconf(name) }).ok();
        Units {
            // 100 is what every Linux port reports to user space.
            ticks_per_second: ask(libc::_SC_CLK_TCK).filter(|t| *t > 0).unwrap_or(100),
            page_size: ask(libc::_SC_PAGESIZE).unwrap_or(4096),
        }
    })
}

/// `proc_pid_stat(5)`: the command name (field 2) is in parentheses and may hold
/// spaces and `)`, so fields are counted after the last `)`. utime and stime
/// are fields 14 and 15, rss (pages) field 24.
fn parse_stat(stat: &[u8], units: Units) -> Option<Usage> {
    let close = stat.iter().rposition(|byte| *byte == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    // Field 3 (state) is the first after the name.
    let field =
        |n: usize| -> Option<u64> { rest.split_ascii_whitespace().nth(n - 3)?.parse().ok() };
    let ticks = |t: u64| {
        Duration::from_secs(t / units.ticks_per_second)
            + Duration::from_nanos(
                t % units.ticks_per_second * 1_000_000_000 / units.ticks_per_second,
            )
    };
    Some(Usage {
        cpu_user: ticks(field(14)?),
        cpu_system: ticks(field(15)?),
        rss_bytes: field(24)?.saturating_mul(units.page_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let units = Units { ticks_per_second: 100, page_size: 4096 };
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 1 0 \
                     12345 10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let usage = parse_stat(line, units).unwrap();
        assert_eq!(usage.cpu_user, Duration::from_millis(2500));
        assert_eq!(usage.cpu_system, Duration::from_millis(170));
        assert_eq!(usage.rss_bytes, 300 * 4096);
        assert_eq!(parse_stat(b"42 (truncated", units), None);
        assert_eq!(parse_stat(b"42 (x) S 1 2", units), None);
    }

    #[test]
    fn reads_this_process() {
        let usage = Usage::of(std::process::id()).expect("/proc/self/stat");
        assert!(usage.rss_bytes > 0);
        assert_eq!(Usage::of(u32::MAX), None);
    }
}
