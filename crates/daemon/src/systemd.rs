//! vigild as a service of systemd (or any manager speaking sd_notify(3)): the
//! datagrams the daemon sends about itself on `NOTIFY_SOCKET`.
//!
//! - `READY=1` once the control sockets accept connections, and again after a
//!   reload, always with the current `STATUS=`.
//! - `STATUS=12 RUNNING, 1 FATAL` whenever the counts of process states change,
//!   driven by the tree's state events (no polling: an idle daemon sends
//!   nothing and wakes up for nothing).
//! - `RELOADING=1` with `MONOTONIC_USEC=` (which systemd 253 and later expect)
//!   when SIGHUP or an `update` that applies begins; `READY=1` when it is done
//!   (`reread` and `update --dry-run` only read, and say nothing).
//! - `STOPPING=1` when shutdown begins; nothing after it.
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, from the first `READY=1` on,
//!   only when the manager set it for this process (`WATCHDOG_PID` absent or
//!   ours).
//!
//! The variables are taken out of the environment at startup, so programs
//! never inherit them: a child's `READY=1` must not reach the daemon's manager.
//! Without `NOTIFY_SOCKET` every call here does nothing.
//!
//! Order: the status watcher is the only place that knows the counts, so
//! `READY=1` goes through it and it applies every state event that happened
//! before the request (its `select!` prefers the bus) before answering. That
//! makes the datagrams a deterministic function of what the daemon did.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use vigil_core::{Event, Handle, ProcessState};

/// The sending side; cheap to clone. Disabled (every call a no-op) when the
/// daemon was not started with `NOTIFY_SOCKET`.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    socket: UnixDatagram,
    address: SocketAddr,
    watchdog: Option<Duration>,
    state: Mutex<State>,
    /// Told at each `READY=1`: the keep-alives start after the first, as
    /// the manager arms its watchdog once the service is up.
    announced: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    phase: Phase,
    /// Reloads in progress (concurrent `update`s): `READY=1` when the last ends.
    reloads: usize,
    /// The current counts, and the last ones sent.
    status: String,
    sent: String,
    /// The current tree's status watcher, which answers `READY=1` requests.
    watcher: Option<mpsc::UnboundedSender<()>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Starting,
    Ready,
    Reloading,
    Stopping,
}

impl Notifier {
    /// Takes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` out of the
    /// environment and returns a notifier for them.
    ///
    /// # Safety
    ///
    /// Changes the process environment: call it while the process has one
    /// thread (before the runtime starts), like `std::env::remove_var`.
    pub unsafe fn take_from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let watchdog = sd_notify::watchdog_enabled();
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: single-threaded, as this function's contract requires.
            unsafe { std::env::remove_var(name) };
        }
        let Some(socket) = socket else { return Notifier::default() };
        match Notifier::connect(&socket, watchdog) {
            Ok(notifier) => notifier,
            Err(err) => {
                tracing::warn!(
                    "NOTIFY_SOCKET={}: {err}; not notifying the service manager",
                    socket.to_string_lossy()
                );
                Notifier::default()
            }
        }
    }

    /// A notifier sending to `socket` (a path, or `@name` for an abstract
    /// socket), keeping the daemon alive for a watchdog of `watchdog`.
    pub fn connect(socket: &OsString, watchdog: Option<Duration>) -> std::io::Result<Notifier> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = socket.as_bytes();
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(socket)?,
        };
        let inner = Inner {
            socket: UnixDatagram::unbound()?,
            address,
            watchdog,
            state: Mutex::default(),
            announced: tokio::sync::Notify::new(),
        };
        Ok(Notifier { inner: Some(Arc::new(inner)) })
    }

    /// Whether there is a manager to notify.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The control sockets serve: `READY=1` with the current status.
    pub fn ready(&self) {
        let Some(inner) = &self.inner else { return };
        let watcher = inner.lock().watcher.clone();
        // The watcher answers once it has applied every earlier state event;
        // without one (between two trees, or a tree without a handle) the
        // counts known now are all there is.
        if watcher.is_none_or(|watcher| watcher.send(()).is_err()) {
            inner.announce_ready();
        }
    }

    /// A reload begins (SIGHUP, `update`): `RELOADING=1`, and status
    /// changes are held back until [`Notifier::ready`].
    pub fn reloading(&self) {
        let Some(inner) = &self.inner else { return };
        let mut state = inner.lock();
        if state.phase == Phase::Stopping {
            return;
        }
        state.phase = Phase::Reloading;
        match NotifyState::monotonic_usec_now() {
            Ok(now) => inner.send(&[NotifyState::Reloading, now]),
            Err(err) => {
                tracing::warn!("cannot read the monotonic clock: {err}");
                inner.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// `RELOADING=1` now and `READY=1` when the guard is dropped; nested
    /// guards (concurrent updates) announce readiness once, when the last ends.
    pub fn reload_guard(&self) -> ReloadGuard {
        if let Some(inner) = &self.inner {
            let first = {
                let mut state = inner.lock();
                state.reloads += 1;
                state.reloads == 1
            };
            if first {
                self.reloading();
            }
        }
        ReloadGuard { notifier: self.clone() }
    }

    /// Shutdown begins: `STOPPING=1`; nothing is sent after it.
    pub fn stopping(&self) {
        let Some(inner) = &self.inner else { return };
        let mut state = inner.lock();
        if state.phase != Phase::Stopping {
            state.phase = Phase::Stopping;
            inner.send(&[NotifyState::Stopping]);
        }
    }

    /// Keeps systemd's watchdog fed at half its period, when one is set; the
    /// task runs on the daemon's runtime, so a stuck runtime starves it.
    pub fn spawn_watchdog(&self) -> Option<JoinHandle<()>> {
        let inner = Arc::clone(self.inner.as_ref()?);
        let period = inner.watchdog? / 2;
        Some(tokio::spawn(async move {
            // `READY=1` goes out from the status watcher's task, which may
            // run after this one: the first keep-alive waits for it (a permit
            // is kept if it was sent already).
            inner.announced.notified().await;
            let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
            loop {
                ticks.tick().await;
                inner.send(&[NotifyState::Watchdog]);
            }
        }))
    }

    /// Follows `handle`'s state events and sends `STATUS=` when the counts
    /// change; `None` (and no subscription at all) without a manager. Abort the
    /// task when the tree goes away.
    pub fn watch_tree(&self, handle: &Handle) -> Option<JoinHandle<()>> {
        let inner = Arc::clone(self.inner.as_ref()?);
        let (requests, answers) = mpsc::unbounded_channel();
        // Subscribed before the first snapshot: no change falls between them.
        let events = handle.subscribe();
        inner.lock().watcher = Some(requests);
        Some(tokio::spawn(watch(inner, handle.clone(), events, answers)))
    }
}

/// See [`Notifier::reload_guard`].
#[derive(Debug)]
pub struct ReloadGuard {
    notifier: Notifier,
}

impl Drop for ReloadGuard {
    fn drop(&mut self) {
        let Some(inner) = &self.notifier.inner else { return };
        let last = {
            let mut state = inner.lock();
            state.reloads = state.reloads.saturating_sub(1);
            state.reloads == 0
        };
        if last {
            self.notifier.ready();
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One datagram of newline-terminated assignments (sd_notify(3)).
    fn send(&self, states: &[NotifyState]) {
        let message: String = states.iter().map(|state| format!("{state}\n")).collect();
        if let Err(err) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            tracing::debug!("cannot notify the service manager: {err}");
        }
    }

    fn announce_ready(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Stopping || state.reloads > 0 {
            return;
        }
        state.phase = Phase::Ready;
        state.sent = state.status.clone();
        self.send(&[NotifyState::Ready, NotifyState::Status(&state.status)]);
        self.announced.notify_one();
    }

    /// Records the counts; sends them only while ready and when they changed.
    fn set_status(&self, status: String) {
        let mut state = self.lock();
        if state.phase == Phase::Ready && status != state.sent {
            self.send(&[NotifyState::Status(&status)]);
            state.sent = status.clone();
        }
        state.status = status;
    }
}

/// The state of every process, by (group, name).
type Counts = BTreeMap<(vigil_rpc::SmolStr, vigil_rpc::SmolStr), ProcessState>;

async fn snapshot(handle: &Handle) -> Counts {
    match handle.process_info(None).await {
        Ok(infos) => infos.into_iter().map(|info| ((info.group, info.name), info.state)).collect(),
        // Shutting down: the watcher is about to be aborted anyway.
        Err(_) => Counts::new(),
    }
}

/// `12 RUNNING, 1 FATAL`: the states that have processes, running ones first.
pub fn render(counts: impl IntoIterator<Item = ProcessState>) -> String {
    const ORDER: [ProcessState; 8] = [
        ProcessState::Running,
        ProcessState::Starting,
        ProcessState::Backoff,
        ProcessState::Stopping,
        ProcessState::Stopped,
        ProcessState::Exited,
        ProcessState::Fatal,
        ProcessState::Unknown,
    ];
    let mut tally = [0usize; ORDER.len()];
    for state in counts {
        if let Some(slot) = ORDER.iter().position(|known| *known == state) {
            tally[slot] += 1;
        }
    }
    let parts: Vec<String> = ORDER
        .iter()
        .zip(tally)
        .filter(|(_, count)| *count > 0)
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    if parts.is_empty() { "no processes".to_owned() } else { parts.join(", ") }
}

/// What one bus message does to the counts.
enum Applied {
    Changed,
    Unchanged,
    /// Groups changed or events were lost: take a new snapshot.
    Resync,
    Closed,
}

fn apply(
    counts: &mut Counts,
    received: Result<Arc<Event>, broadcast::error::RecvError>,
) -> Applied {
    match received.as_deref() {
        Ok(Event::ProcessState(event)) => {
            let key = (event.group.as_str().into(), event.name.as_str().into());
            let previous = counts.insert(key, event.to);
            if previous == Some(event.to) { Applied::Unchanged } else { Applied::Changed }
        }
        Ok(Event::GroupAdded { .. } | Event::GroupRemoved { .. })
        | Err(broadcast::error::RecvError::Lagged(_)) => Applied::Resync,
        Ok(_) => Applied::Unchanged,
        Err(broadcast::error::RecvError::Closed) => Applied::Closed,
    }
}

async fn watch(
    inner: Arc<Inner>,
    handle: Handle,
    mut events: broadcast::Receiver<Arc<Event>>,
    mut ready_requests: mpsc::UnboundedReceiver<()>,
) {
    let mut counts = snapshot(&handle).await;
    inner.set_status(render(counts.values().copied()));
    loop {
        let first = tokio::select! {
            // Events first: a READY=1 request must see every change before it.
            biased;
            received = events.recv() => received,
            Some(()) = ready_requests.recv() => {
                inner.announce_ready();
                continue;
            }
        };
        // A burst (a group starting) becomes one datagram: apply what is
        // already queued before rendering, without waiting for more.
        let mut next = Some(first);
        let mut changed = false;
        let mut resync = false;
        while let Some(received) = next.take() {
            match apply(&mut counts, received) {
                Applied::Changed => changed = true,
                Applied::Unchanged => {}
                Applied::Resync => resync = true,
                Applied::Closed => return,
            }
            next = match events.try_recv() {
                Ok(event) => Some(Ok(event)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Some(Err(broadcast::error::RecvError::Lagged(n)))
                }
                Err(_) => None,
            };
        }
        if resync {
            counts = snapshot(&handle).await;
            changed = true;
        }
        if changed {
            inner.set_status(render(counts.values().copied()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_states_with_processes_running_first() {
        use ProcessState::*;
        assert_eq!(render([]), "no processes");
        assert_eq!(render([Fatal, Running, Running]), "2 RUNNING, 1 FATAL");
        assert_eq!(
            render([Stopped, Backoff, Starting, Exited, Stopping, Unknown, Running]),
            "1 RUNNING, 1 STARTING, 1 BACKOFF, 1 STOPPING, 1 STOPPED, 1 EXITED, 1 UNKNOWN"
        );
    }

    fn receiver() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        receiver_with_watchdog(None)
    }

    fn receiver_with_watchdog(
        watchdog: Option<Duration>,
    ) -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let notifier = Notifier::connect(&path.into_os_string(), watchdog).unwrap();
        (dir, receiver, notifier)
    }

    fn next(receiver: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = receiver.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn reload_guards_nest_and_stopping_is_final() {
        let (_dir, receiver, notifier) = receiver();
        notifier.ready();
        assert_eq!(next(&receiver), "READY=1\nSTATUS=\n");
        let outer = notifier.reload_guard();
        let reloading = next(&receiver);
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{reloading:?}"));
        assert!(usec.parse::<u64>().unwrap() > 0);
        let inner = notifier.reload_guard();
        drop(outer);
        drop(inner);
        // One READY=1 for both, and nothing in between.
        assert_eq!(next(&receiver), "READY=1\nSTATUS=\n");
        notifier.stopping();
        notifier.stopping();
        notifier.ready();
        drop(notifier.reload_guard());
        assert_eq!(next(&receiver), "STOPPING=1\n");
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(receiver.recv(&mut buf).is_err(), "nothing after STOPPING=1");
    }

    /// The keep-alives wait for the first `READY=1`: a watchdog task that
    /// runs before the status watcher answers sends nothing.
    #[tokio::test(start_paused = true)]
    async fn keep_alives_start_after_ready() {
        let (_dir, receiver, notifier) = receiver_with_watchdog(Some(Duration::from_secs(20)));
        let watchdog = notifier.spawn_watchdog().expect("a watchdog period");
        // The task has run as far as it can: its first tick would be due now.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert!(receiver.recv(&mut buf).is_err(), "a keep-alive before READY=1");
        receiver.set_nonblocking(false).unwrap();
        notifier.ready();
        assert_eq!(next(&receiver), "READY=1\nSTATUS=\n");
        // At once, then every half period (paused time moves on when idle).
        let started = tokio::time::Instant::now();
        assert_eq!(next_async(&receiver).await, "WATCHDOG=1\n");
        assert_eq!(next_async(&receiver).await, "WATCHDOG=1\n");
        assert!(started.elapsed() >= Duration::from_secs(10), "{:?}", started.elapsed());
        watchdog.abort();
    }

    /// [`next`] for a test on paused time: the runtime must idle (and so
    /// advance its clock) while the datagram is awaited.
    async fn next_async(receiver: &UnixDatagram) -> String {
        let receiver = receiver.try_clone().unwrap();
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match receiver.recv(&mut buf) {
                Ok(n) => return String::from_utf8(buf[..n].to_vec()).unwrap(),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let notifier = Notifier::default();
        assert!(!notifier.enabled());
        notifier.ready();
        drop(notifier.reload_guard());
        notifier.stopping();
    }
}
