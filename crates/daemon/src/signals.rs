//! Signals the daemon acts on, as a stream of [`DaemonSignal`] for main's loop.
//!
//! supervisord's table: SIGTERM, SIGINT and SIGQUIT request an ordered shutdown
//! (exit status 0), SIGHUP a reload (re-read the configuration and rebuild the
//! tree, same pid), SIGUSR2 a log reopen. SIGCHLD belongs to the
//! reaper in vigil-core and is not touched here.
//!
//! Vigil adds SIGUSR1: a live upgrade to the binary at vigild's own path (the
//! one a package upgrade just replaced), as `vigilctl upgrade` does; the
//! outcome is in the activity log. supervisord leaves SIGUSR1 at its default
//! (terminate), so no supervisord script sends it.
//! Repeated signals that arrive before the loop handles them collapse into one,
//! like supervisord's queue.
//!
//! Across a live upgrade's `execve` these signals are blocked ([`hold`]):
//! the new image starts with default dispositions, and a SIGTERM in the gap
//! would otherwise end vigild at once, leaving its programs running without
//! a supervisor. Blocked, it waits pending until [`Signals::install`] has put
//! the handlers back and unblocks it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a received signal asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonSignal {
    /// SIGTERM, SIGINT or SIGQUIT: stop every process in reverse priority order,
    /// then exit with status 0. Carries the signal number for the log line.
    Shutdown(i32),
    /// SIGHUP: stop everything, re-read the configuration, start again.
    Reload,
    /// SIGUSR2: reopen the activity log and every child log.
    ReopenLogs,
    /// SIGUSR1: a live upgrade to the binary at vigild's own path.
    Upgrade,
}

impl DaemonSignal {
    /// The signal's short name (`SIGTERM`).
    pub fn signal_name(&self) -> &'static str {
        let number = match self {
            DaemonSignal::Shutdown(n) => *n,
            DaemonSignal::Reload => libc::SIGHUP,
            DaemonSignal::ReopenLogs => libc::SIGUSR2,
            DaemonSignal::Upgrade => libc::SIGUSR1,
        };
        nix::sys::signal::Signal::try_from(number).map_or("unknown signal", |s| s.as_str())
    }

    /// supervisord's activity-log line for this signal.
    pub fn log_message(&self) -> String {
        let name = self.signal_name();
        match self {
            DaemonSignal::Shutdown(_) => format!("received {name} indicating exit request"),
            DaemonSignal::Reload => format!("received {name} indicating restart request"),
            DaemonSignal::ReopenLogs => format!("received {name} indicating log reopen request"),
            DaemonSignal::Upgrade => format!("received {name} indicating upgrade request"),
        }
    }
}

/// The daemon's action for signal number `number`, or `None` when it does not
/// handle it.
pub fn action_for(number: i32) -> Option<DaemonSignal> {
    match number {
        libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => Some(DaemonSignal::Shutdown(number)),
        libc::SIGHUP => Some(DaemonSignal::Reload),
        libc::SIGUSR2 => Some(DaemonSignal::ReopenLogs),
        libc::SIGUSR1 => Some(DaemonSignal::Upgrade),
        _ => None,
    }
}

/// Every signal the daemon installs a handler for.
pub fn handled_signals() -> Vec<i32> {
    let all =
        [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR2, libc::SIGUSR1];
    all.into_iter().filter(|n| action_for(*n).is_some()).collect()
}

fn handled_set() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::empty();
    for number in handled_signals() {
        if let Ok(signal) = nix::sys::signal::Signal::try_from(number) {
            set.add(signal);
        }
    }
    set
}

/// Blocks the handled signals in the calling thread, for a live upgrade's
/// `execve` (the mask and the pending signals cross it); returns the mask
/// to restore if `execve` fails.
pub fn hold() -> io::Result<nix::sys::signal::SigSet> {
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&handled_set()),
        Some(&mut old),
    )?;
    Ok(old)
}

/// Puts back the mask [`hold`] returned.
pub fn release(old: &nix::sys::signal::SigSet) {
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(old),
        None,
    );
}

/// Whether this process is PID 1 of its namespace.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// The installed handlers. Install early (before starting children) so that a
/// signal sent during startup is queued rather than killing the daemon.
#[derive(Debug)]
pub struct Signals {
    streams: Vec<(i32, Signal)>,
}

impl Signals {
    /// Installs handlers on the current tokio runtime.
    /// Unblocks them in the calling thread (a live upgrade's new image
    /// inherits them blocked, see [`hold`]), so one sent meanwhile is acted
    /// on now.
    pub fn install() -> io::Result<Signals> {
        let streams = handled_signals()
            .into_iter()
            .map(|n| Ok((n, signal(SignalKind::from_raw(n))?)))
            .collect::<io::Result<Vec<_>>>()?;
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
            Some(&handled_set()),
            None,
        )?;
        Ok(Signals { streams })
    }

    /// Waits for the next handled signal. Polls in a fixed order, so a pending
    /// shutdown wins over a reload that arrived at the same time.
    pub async fn recv(&mut self) -> DaemonSignal {
        std::future::poll_fn(|cx| self.poll_next_signal(cx)).await
    }

    fn poll_next_signal(&mut self, cx: &mut Context<'_>) -> Poll<DaemonSignal> {
        for (number, stream) in &mut self.streams {
            if let Poll::Ready(Some(())) = stream.poll_recv(cx)
                && let Some(action) = action_for(*number)
            {
                return Poll::Ready(action);
            }
        }
        Poll::Pending
    }
}

impl Stream for Signals {
    type Item = DaemonSignal;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DaemonSignal>> {
        self.get_mut().poll_next_signal(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    #[test]
    fn supervisord_signal_table() {
        assert_eq!(action_for(libc::SIGTERM), Some(DaemonSignal::Shutdown(libc::SIGTERM)));
        assert_eq!(action_for(libc::SIGINT), Some(DaemonSignal::Shutdown(libc::SIGINT)));
        assert_eq!(action_for(libc::SIGQUIT), Some(DaemonSignal::Shutdown(libc::SIGQUIT)));
        assert_eq!(action_for(libc::SIGHUP), Some(DaemonSignal::Reload));
        assert_eq!(action_for(libc::SIGUSR2), Some(DaemonSignal::ReopenLogs));
        assert_eq!(action_for(libc::SIGCHLD), None, "SIGCHLD is the reaper's");
        assert_eq!(action_for(libc::SIGUSR1), Some(DaemonSignal::Upgrade));
        assert_eq!(handled_signals().len(), 6);
    }

    #[test]
    fn log_lines_match_supervisord() {
        assert_eq!(
            DaemonSignal::Shutdown(libc::SIGTERM).log_message(),
            "received SIGTERM indicating exit request"
        );
        assert_eq!(
            DaemonSignal::Reload.log_message(),
            "received SIGHUP indicating restart request"
        );
        assert_eq!(
            DaemonSignal::ReopenLogs.log_message(),
            "received SIGUSR2 indicating log reopen request"
        );
    }

    // The only test that raises signals at the test process: handlers are
    // installed first, so the default actions (terminate) never run.
    #[tokio::test]
    async fn raised_signals_arrive_in_order() {
        let mut signals = Signals::install().unwrap();
        let next = async |signals: &mut Signals| {
            tokio::time::timeout(Duration::from_secs(10), signals.next()).await.unwrap().unwrap()
        };
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        assert_eq!(next(&mut signals).await, DaemonSignal::Reload);
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR2).unwrap();
        assert_eq!(next(&mut signals).await, DaemonSignal::ReopenLogs);
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        assert_eq!(signals.recv().await, DaemonSignal::Shutdown(libc::SIGTERM));
    }
}
