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
        StatReader::default().read(pid)
    }

    /// [`Usage::of`] for every pid of `pids` (`None` for 0), in order. Each
    /// file is read once into a reused buffer; a long list is split over a few
    /// threads, since the kernel's formatting of each file is most of the
    /// cost and a scrape of thousands of processes waits for all of them.
    pub fn of_all(pids: &[u32]) -> Vec<Option<Usage>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(MAX_THREADS);
        if threads < 2 || pids.len() < PER_THREAD * 2 {
            return read_all(pids);
        }
        let chunk = pids.len().div_ceil(threads).max(PER_THREAD);
        std::thread::scope(|scope| {
            let parts: Vec<_> = pids
                .chunks(chunk)
                .map(|part| (part.len(), scope.spawn(move || read_all(part))))
                .collect();
            parts
                .into_iter()
                .flat_map(|(len, part)| {
                    // A panicking reader is a bug; its processes read as unknown.
                    part.join().unwrap_or_else(|_| vec![None; len])
                })
                .collect()
        })
    }
}

/// At most this many threads read /proc for one request.
const MAX_THREADS: usize = 4;
/// Fewer processes than this per thread are read on one thread.
const PER_THREAD: usize = 256;

fn read_all(pids: &[u32]) -> Vec<Option<Usage>> {
    let mut reader = StatReader::default();
    pids.iter().map(|&pid| if pid == 0 { None } else { reader.read(pid) }).collect()
}

/// Reads `/proc/<pid>/stat` files with one path and one buffer for all of them.
#[derive(Default)]
struct StatReader {
    path: String,
    buf: Vec<u8>,
}

impl StatReader {
    fn read(&mut self, pid: u32) -> Option<Usage> {
        use std::fmt::Write as _;
        use std::io::Read as _;
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/stat");
        let mut file = std::fs::File::open(&self.path).ok()?;
        if self.buf.len() < 1024 {
            self.buf.resize(1024, 0);
        }
        let mut len = 0;
        loop {
            let n = file.read(&mut self.buf[len..]).ok()?;
            len += n;
            // The kernel hands the whole line to the first read that has room for
            // it; its newline spares the read that would answer end of file.
            if n == 0 || self.buf[..len].ends_with(b"\n") {
                break;
            }
            if len == self.buf.len() {
                self.buf.resize(len * 2, 0);
            }
        }
        parse_stat(&self.buf[..len], units())
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
    // Field 3 (state) is the first after the name; one pass takes the three.
    let mut wanted = [0u64; 3];
    let mut found = 0;
    for (index, word) in rest.split_ascii_whitespace().enumerate() {
        let slot = match index + 3 {
            14 => 0,
            15 => 1,
            24 => 2,
            25.. => break,
            _ => continue,
        };
        wanted[slot] = word.parse().ok()?;
        found += 1;
    }
    if found < wanted.len() {
        return None;
    }
    let [utime, stime, rss] = wanted;
    let ticks = |t: u64| {
        Duration::from_secs(t / units.ticks_per_second)
            + Duration::from_nanos(
                t % units.ticks_per_second * 1_000_000_000 / units.ticks_per_second,
            )
    };
    Some(Usage {
        cpu_user: ticks(utime),
        cpu_system: ticks(stime),
        rss_bytes: rss.saturating_mul(units.page_size),
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

    #[test]
    fn reads_many_in_order_over_threads() {
        let me = std::process::id();
        // Enough to be split over threads on a machine with several cores.
        let pids: Vec<u32> = (0..PER_THREAD * 5)
            .map(|i| match i % 3 {
                0 => me,
                1 => 0,
                _ => u32::MAX,
            })
            .collect();
        let all = Usage::of_all(&pids);
        assert_eq!(all.len(), pids.len());
        for (pid, usage) in pids.iter().zip(&all) {
            assert_eq!(usage.is_some(), *pid == me, "pid {pid}");
        }
    }
}
