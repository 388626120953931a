//! S9's second shutdown reference: the floor of a shutdown that keeps a
//! supervisor's descriptors.
//!
//! The plain reference (`Bench::spawn_reference`) signals and reaps sleepers
//! whose output pipes it only holds. A supervisor that captures output, as
//! supervisord's model asks, also holds each child's stdin, reads stdout and
//! stderr to their end once the child dies, and logs a line for the stop.
//! This reference does that and nothing else: the sleepers spawned with the
//! three pipes, SIGTERM sent one after the other, the output pipes read to
//! end of file from one epoll instance on one thread while the exits are
//! collected, a line appended to a log file for each, every descriptor
//! closed. No state machine, no events, no RPC: what the kernel charges for
//! the processes and descriptors of such a shutdown on this machine, beside
//! which a daemon's own work per stop can be read.

use crate::reaper::{Exit, Reaper, Spawned};
use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::Signal;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Sleepers with a supervisor's three pipes each, not yet stopped. Dropping
/// it SIGKILLs whichever are still running, so an error on the way leaves
/// none behind; the harness's reaper collects them.
pub struct Captured {
    reaper: Reaper,
    children: Vec<Spawned>,
    /// Each child's stdin, dropped once its exit is collected.
    stdins: Vec<Option<ChildStdin>>,
    outputs: Vec<OwnedFd>,
}

impl Captured {
    /// Spawns `n` of `sleep 100000`, stdin, stdout and stderr piped, back
    /// to back from this thread. Not timed: the spawn floors are measured
    /// elsewhere.
    pub fn spawn(reaper: &Reaper, n: usize) -> anyhow::Result<Captured> {
        let mut captured = Captured {
            reaper: reaper.clone(),
            children: Vec::with_capacity(n),
            stdins: Vec::with_capacity(n),
            outputs: Vec::with_capacity(2 * n),
        };
        for _ in 0..n {
            let mut command = Command::new("sleep");
            command
                .arg("100000")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut spawned = reaper.spawn(&mut command).context("spawning a sleeper")?;
            let child = &mut spawned.child;
            let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
            captured.children.push(spawned);
            let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
                bail!("a sleeper was spawned without its three pipes");
            };
            captured.stdins.push(Some(stdin));
            captured.outputs.push(stdout.into());
            captured.outputs.push(stderr.into());
        }
        Ok(captured)
    }

    /// The sleepers' pids, in spawn order.
    pub fn pids(&self) -> Vec<i32> {
        self.children.iter().map(|child| child.pid).collect()
    }

    /// Stops them all as described in the module's text, appending a line
    /// per child to `log`. Returns the time from the first SIGTERM to the
    /// last descriptor closed and line written.
    pub async fn stop(mut self, log: &Path, timeout: Duration) -> anyhow::Result<Duration> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let outputs = std::mem::take(&mut self.outputs);
        // Registered before the clock starts, as a supervisor's pipes are.
        let epoll = watch(&outputs)?;
        let started = Instant::now();
        let deadline = started + timeout;
        let reader = tokio::task::spawn_blocking(move || read_to_eof(&epoll, outputs, deadline));
        for child in &self.children {
            self.reaper.signal_live(child.pid, Signal::SIGTERM);
        }
        // The children stay in `self` until the end, so that an error here
        // leaves them to `Drop`.
        let mut line = Vec::with_capacity(64);
        for (child, stdin) in self.children.iter_mut().zip(&mut self.stdins) {
            let pid = child.pid;
            let exit = tokio::time::timeout_at(deadline.into(), &mut child.exit)
                .await
                .with_context(|| format!("sleeper {pid} not reaped in {timeout:?}"))?
                .context("the reaper dropped a sleeper")?;
            line.clear();
            let _ = writeln!(line, "stopped: sleeper {pid} ({})", describe(exit));
            log.write_all(&line).context("writing the stop's log line")?;
            drop(stdin.take());
        }
        reader.await.context("the pipe reader panicked")??;
        Ok(started.elapsed())
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        for child in &self.children {
            self.reaper.signal_live(child.pid, Signal::SIGKILL);
        }
    }
}

/// How supervisord words an exit in its "stopped:" line.
fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exit status {code}"),
        Exit::Signal(signal) => match Signal::try_from(signal) {
            Ok(signal) => format!("terminated by {}", signal.as_str()),
            Err(_) => format!("terminated by signal {signal}"),
        },
    }
}

/// One epoll instance watching every pipe for input, each non-blocking.
fn watch(outputs: &[OwnedFd]) -> anyhow::Result<Epoll> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
    for (index, fd) in outputs.iter().enumerate() {
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))?;
    }
    Ok(epoll)
}

/// Reads every pipe until end of file, closing each as it ends.
fn read_to_eof(epoll: &Epoll, outputs: Vec<OwnedFd>, deadline: Instant) -> anyhow::Result<()> {
    let mut open: Vec<Option<OwnedFd>> = outputs.into_iter().map(Some).collect();
    let mut left = open.len();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = [0u8; 4096];
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            bail!("{left} output pipes still open at the deadline");
        }
        let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let ready = match epoll.wait(&mut events, millis) {
            Ok(ready) => ready,
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno).context("epoll_wait"),
        };
        for event in &events[..ready] {
            let index = usize::try_from(event.data()).expect("indexes fit in usize");
            let Some(fd) = open[index].as_ref() else { continue };
            if drain(fd.as_fd(), &mut buf)? {
                // Closing it also takes it out of the epoll instance.
                open[index] = None;
                left -= 1;
            }
        }
    }
    Ok(())
}

/// Reads what `fd` has; true at end of file.
fn drain(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> anyhow::Result<bool> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(0) => return Ok(true),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return Ok(false),
            Err(errno) => return Err(errno).context("reading a sleeper's pipe"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits_as_supervisord_does() {
        assert_eq!(describe(Exit::Signal(15)), "terminated by SIGTERM");
        assert_eq!(describe(Exit::Code(0)), "exit status 0");
        assert_eq!(describe(Exit::Signal(200)), "terminated by signal 200");
    }
}
