//! When a program's new child starts, from the kernel: the process events
//! connector (netlink) reports every `execve` with the kernel's own
//! CLOCK_MONOTONIC time stamp, so S5 measures kill -9 to the new child's
//! `exec` without a polling loop of its own (polling `/proc` costs the
//! measuring process time that grows with the supervisor's children and takes
//! a core from the supervisor on a small machine). Needs CAP_NET_ADMIN; the
//! caller falls back to polling `/proc` without it.

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
