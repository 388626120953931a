//! When a program's new child starts, from the kernel: the process events
//! connector (netlink) reports every `execve` with the kernel's own
//! CLOCK_MONOTONIC time stamp, so S5 measures kill -9 to the new child's
//! `exec` without a polling loop of its own (polling `/proc` costs the
//! measuring process time that grows with the supervisor's children and takes
//! a core from the supervisor on a small machine). Needs CAP_NET_ADMIN; the
//! caller falls back to polling `/proc` without it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use proc_connector::{Error, ProcConnector, ProcEvent};

/// A subscription to the kernel's exec events.
pub struct ExecWatch {
    conn: ProcConnector,
    buf: Vec<u8>,
}

impl ExecWatch {
    /// Subscribes; fails without the privilege or the kernel option.
    pub fn open() -> anyhow::Result<ExecWatch> {
        let conn = ProcConnector::new().context("the process events connector")?;
        conn.subscribe().context("subscribing to process events")?;
        // Every exec on the machine arrives here (a compile beside the
        // benchmark execs thousands of processes): room for bursts.
        let _ = conn.set_recv_buf_size(8 << 20);
        Ok(ExecWatch { conn, buf: vec![0; 64 * 1024] })
    }

    /// Waits until a process that `wanted` accepts (given its pid) calls
    /// `execve`; returns the kernel's time stamp of that process's last exec
    /// in ns of CLOCK_MONOTONIC, or `None` after `timeout`.
    ///
    /// A child may exec more than once (s6's `run` script is a shell that
    /// execs the program), and by the time an exec is read here the process
    /// may have exec'd again, so `wanted` (which looks at its command line
    /// now) can accept the earlier one: the exec events of the same process
    /// that follow within 20 ms replace its time stamp.
    pub fn next_exec(
        &mut self,
        timeout: Duration,
        mut wanted: impl FnMut(i32) -> bool,
    ) -> anyhow::Result<Option<u64>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut found: Option<(u32, u64)> = None;
        let mut settled = deadline;
        loop {
            let left = settled.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(found.map(|(_, stamp)| stamp));
            }
            let event = match self.conn.recv_timeout(&mut self.buf, left) {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(found.map(|(_, stamp)| stamp)),
                // A burst overflowed the socket: the events since are still
                // coming. A signal, or a message that is not a process event,
                // changes nothing either.
                Err(Error::Overrun | Error::Interrupted | Error::UnexpectedConnector) => continue,
                Err(Error::Os(error)) if error.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(error) => return Err(error).context("reading process events"),
            };
            let ProcEvent::Exec { pid, tgid, timestamp_ns, .. } = event else { continue };
            match found {
                Some((seen, _)) if seen == pid => found = Some((pid, timestamp_ns)),
                Some(_) => {}
                None if pid == tgid && wanted(pid as i32) => {
                    found = Some((pid, timestamp_ns));
                    settled = std::time::Instant::now() + SETTLE;
                }
                None => {}
            }
        }
    }
}

/// Every `execve` on the machine from [`ExecLog::start`] until
/// [`ExecLog::finish`], recorded by a thread of its own as (pid, the
/// kernel's CLOCK_MONOTONIC time stamp in ns). Reading an event costs
/// microseconds and nothing else is done with it meanwhile, so a spawn storm
/// is timed without a polling loop that would take CPU from the supervisor.
pub struct ExecLog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Execs>>,
}

/// What an [`ExecLog`] recorded.
#[derive(Debug, Default)]
pub struct Execs {
    /// (pid, time stamp) of each exec of a process's main thread, in order.
    pub events: Vec<(i32, u64)>,
    /// The socket overflowed at least once: some events are missing.
    pub lost: bool,
}

impl ExecLog {
    /// Subscribes and starts recording; fails as [`ExecWatch::open`] does.
    pub fn start() -> anyhow::Result<ExecLog> {
        let mut watch = ExecWatch::open()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("exec-log".into())
            .spawn(move || {
                let mut execs = Execs::default();
                let mut told: Option<std::time::Instant> = None;
                loop {
                    // Woken every 50 ms at most to see whether to stop. Once
                    // told to, it reads what the socket already holds (every
                    // exec before `finish`: the kernel queues an event as the
                    // exec happens) and ends when that is read, or after
                    // 100 ms on a machine that never stops exec'ing.
                    if told.is_none() && stopping.load(Ordering::Relaxed) {
                        told = Some(std::time::Instant::now());
                    }
                    let stopping = told.is_some();
                    if told.is_some_and(|told| told.elapsed() > Duration::from_millis(100)) {
                        break;
                    }
                    let wait = Duration::from_millis(if stopping { 1 } else { 50 });
                    match watch.conn.recv_timeout(&mut watch.buf, wait) {
                        Ok(Some(ProcEvent::Exec { pid, tgid, timestamp_ns, .. }))
                            if pid == tgid =>
                        {
                            execs.events.push((pid as i32, timestamp_ns));
                        }
                        Ok(None) if stopping => break,
                        Ok(_) | Err(Error::Interrupted | Error::UnexpectedConnector) => {}
                        Err(Error::Overrun) => execs.lost = true,
                        Err(Error::Os(error)) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                            execs.lost = true;
                        }
                        Err(_) => {
                            execs.lost = true;
                            break;
                        }
                    }
                }
                execs
            })
            .context("starting the exec log's thread")?;
        Ok(ExecLog { stop, thread: Some(thread) })
    }

    /// Stops recording and returns what was recorded.
    pub fn finish(mut self) -> Execs {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take();
        thread.and_then(|thread| thread.join().ok()).unwrap_or_default()
    }
}

impl Drop for ExecLog {
    /// A scenario that failed before [`ExecLog::finish`] stops the thread
    /// too (within its 50 ms wait), rather than leave it recording.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Execs {
    /// The last exec of the latest of `pids` to exec (a process may exec more
    /// than once: s6's `run` shell execs the program), and how many of
    /// `pids` had one.
    pub fn last_of(&self, pids: &HashSet<i32>) -> (Option<u64>, usize) {
        let mut last: HashMap<i32, u64> = HashMap::new();
        for &(pid, stamp) in &self.events {
            if pids.contains(&pid) {
                last.insert(pid, stamp);
            }
        }
        (last.values().copied().max(), last.len())
    }
}

/// How long after an accepted exec a later exec of the same process is
/// still looked for.
const SETTLE: Duration = Duration::from_millis(20);

/// CLOCK_MONOTONIC now, in ns: the clock of the events' time stamps.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into `now`, a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_exec_is_the_latest_program_s_last_one() {
        let execs = Execs {
            // 7 execs twice (a shell, then the program); 9 is not a program.
            events: vec![(7, 100), (8, 150), (7, 120), (9, 400), (8, 160)],
            lost: false,
        };
        assert_eq!(execs.last_of(&HashSet::from([7, 8])), (Some(160), 2));
        assert_eq!(execs.last_of(&HashSet::from([7])), (Some(120), 1));
        // A program without an event is not counted: the caller compares.
        assert_eq!(execs.last_of(&HashSet::from([7, 10])), (Some(120), 1));
        assert_eq!(execs.last_of(&HashSet::new()), (None, 0));
    }

    #[test]
    fn the_log_records_a_child_s_exec_after_the_start() {
        let log = match ExecLog::start() {
            Ok(log) => log,
            Err(error) => {
                // The connector needs CAP_NET_ADMIN; the bench says so too.
                eprintln!("SKIPPED, no process events: {error:#}");
                return;
            }
        };
        let before = monotonic_ns();
        let pid = {
            let mut child = std::process::Command::new("true").spawn().expect("spawn true");
            let pid = i32::try_from(child.id()).expect("pid");
            #[expect(
                clippy::disallowed_methods,
                reason = "the test's own child: no reaper runs in this test binary"
            )]
            child.wait().expect("wait for true");
            pid
        };
        let execs = log.finish();
        let (last, seen) = execs.last_of(&HashSet::from([pid]));
        assert_eq!(seen, 1, "the child's exec was recorded: {execs:?}");
        assert!(last.is_some_and(|stamp| stamp > before && stamp <= monotonic_ns()));
    }
}
