//! What the supervision tree carries across a live upgrade (vigild
//! re-executing itself, same pid): the record of each process, and the table
//! the next image's process actors claim their record from.
//!
//! The old image freezes each process actor ([`crate::Handle::hand_over`]):
//! its timers, probes and dependency monitor end, its capture tasks write out
//! what they read and give their pipes back, and the actor lets go of its
//! child without signalling it. What remains is a [`CarriedProcess`] plus the
//! descriptors it names (the child's stdin, stdout and stderr pipes), which
//! the daemon keeps open across `execve`. The daemon owns the format around
//! these records (header, version, listeners); this module only knows a
//! process.
//!
//! The new image registers every carried child with the reaper
//! ([`crate::Reaper::adopt`]) and [`offer`]s the records; a process actor
//! built for a namespec with a record claims it (`claim`) instead of starting from
//! STOPPED: its lifecycle resumes where it was ([`crate::lifecycle::Lifecycle::resume`]), its
//! armed timers are re-armed with their remaining time, its pipes are
//! captured again from where the old image stopped reading.
//!
//! Beside the processes, the tree carries what is daemon-wide:
//! the event listener pools ([`CarriedEvents`]: each pool's queue, each
//! listener's protocol state and event in flight, the serials; the listeners'
//! stdout pipes are the pool's, not their process's) and the fcgi groups'
//! listening sockets ([`CarriedSocket`]). The new image takes them with
//! [`offer_events`] and [`offer_sockets`] before it builds the tree.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::exit::ExitStatus;
use crate::lifecycle::{CarriedExit, CarriedLifecycle};
use crate::logs::Channel;

/// One process instance as the handover format carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedProcess {
    /// `group:name`, which the new image's config must still have.
    pub namespec: String,
    /// The state machine.
    pub lifecycle: CarriedLifecycle,
    /// Each armed timer with the time it had left.
    pub timers: Vec<CarriedTimer>,
    /// Wall-clock start of the current or last child, in ms since the epoch.
    pub start_unix_ms: Option<u64>,
    /// Wall-clock end of the last child, in ms since the epoch.
    pub stop_unix_ms: Option<u64>,
    /// Children spawned so far (restart counts).
    pub spawns: u64,
    /// How the last child ended.
    pub last_exit: Option<CarriedExit>,
    /// The OOM killer acted during the last run.
    pub last_exit_oom: bool,
    /// The child's stdin pipe: a descriptor number kept open across `execve`.
    pub stdin_fd: Option<i32>,
    /// The stdout pipes still open: the current child's, and an earlier
    /// child's whose last bytes were not read yet. Kept open like `stdin_fd`.
    pub stdout_fds: Vec<i32>,
    /// The stderr pipes, as `stdout_fds`.
    pub stderr_fds: Vec<i32>,
    /// The stdout log file, so an AUTO log (whose name is random) stays the
    /// same file.
    pub stdout_log: Option<PathBuf>,
    /// The stderr log file, as `stdout_log`.
    pub stderr_log: Option<PathBuf>,
    /// The stdout log's total offset, so offsets stay monotonic.
    pub stdout_total: u64,
    /// The stdout log's file and offsets, so the next image need not look
    /// at the files; `None` when it must (not a regular file, or in trouble).
    pub stdout_layout: Option<crate::logs::LogLayout>,
    /// The stderr log's, as `stdout_layout`.
    pub stderr_layout: Option<crate::logs::LogLayout>,
    /// The stderr log's total offset.
    pub stderr_total: u64,
    /// The probes' verdict on the child: 0 unknown, 1 healthy, 2 unhealthy.
    pub health: u8,
    /// Where the child's polled probes were.
    pub probes: Vec<CarriedProbe>,
    /// The `ready_notify` socket, kept open across `execve` like the pipes,
    /// so a `READY=1` sent during the upgrade still arrives.
    #[serde(default)]
    pub notify: Option<CarriedNotify>,
    /// What the control API shows of it beside its state.
    pub shown: CarriedShown,
}

/// What `getProcessInfo` shows of a process beside its state, as the old
/// image showed it when it froze: the next image answers reads from the
/// records before it has loaded its config (`CarriedView`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedShown {
    /// Its group's name.
    pub group: String,
    /// Its name in the group.
    pub name: String,
    /// Its config's `autostart`.
    pub autostart: bool,
    /// EXITED with one of its `exitcodes`.
    pub completed: bool,
    /// It has a readiness or liveness probe.
    pub probed: bool,
    /// The dependencies a STARTING process without a child waited for.
    pub waiting_for: Vec<String>,
}

/// A process's notify socket: its descriptor and the path its child knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedNotify {
    /// A descriptor number kept open across `execve`.
    pub fd: i32,
    /// The child's `NOTIFY_SOCKET`.
    pub path: PathBuf,
}

/// A running probe task's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedProbe {
    /// The liveness probe (else the readiness probe).
    pub liveness: bool,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Milliseconds until its next attempt (0: one was under way).
    pub wait_ms: u64,
}

/// An armed lifecycle timer and what it had left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedTimer {
    /// [`crate::lifecycle::TimerKind::code`].
    pub kind: u8,
    /// The token the lifecycle expects back.
    pub token: u64,
    /// Milliseconds left when the old image froze.
    pub remaining_ms: u64,
}

/// A frozen process: its record and the descriptors the record names (their
/// raw numbers are the ones in the record). Dropping it closes them.
#[derive(Debug)]
pub struct Frozen {
    /// The record, boxed: it goes from the actor to the daemon through
    /// several moves, each a pointer's rather than the record's 784 bytes.
    pub record: Box<CarriedProcess>,
    /// Open descriptors, close-on-exec until the daemon clears the flag.
    pub fds: Vec<OwnedFd>,
}

/// Everything [`crate::Handle::hand_over`] hands over: the processes, the
/// event listener machinery and the fcgi sockets, and the descriptors those
/// name besides the processes' own.
#[derive(Debug, Default)]
pub struct Handover {
    /// Every process, in priority order.
    pub processes: Vec<Frozen>,
    /// The event listener pools.
    pub events: CarriedEvents,
    /// The fcgi groups' sockets.
    pub sockets: Vec<CarriedSocket>,
    /// The listeners' stdout pipes and the fcgi sockets, whose raw numbers
    /// `events` and `sockets` name. Close-on-exec until the daemon clears
    /// the flag.
    pub fds: Vec<OwnedFd>,
}

/// The event listener machinery (`eventlistener.rs`) as the handover format
/// carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedEvents {
    /// The next event serial (daemon-wide, as supervisord's).
    pub serial: u64,
    /// Each subscribed `TICK_*` period (seconds) and the start of the slice
    /// its last tick announced (epoch seconds), so a tick is neither
    /// repeated nor skipped.
    pub ticks: Vec<(u64, u64)>,
    /// Every pool.
    pub pools: Vec<CarriedPool>,
}

/// One `[eventlistener:x]` pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedPool {
    /// The group's name.
    pub group: String,
    /// The next pool serial.
    pub next_serial: u64,
    /// The events waiting for a READY listener, oldest first.
    pub queue: Vec<CarriedEvent>,
    /// Each member's protocol state.
    pub members: Vec<CarriedListener>,
}

/// One event, with the serials it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedEvent {
    /// The daemon-wide serial.
    pub serial: u64,
    /// The pool's serial.
    pub pool_serial: u64,
    /// supervisord's event name.
    pub name: String,
    /// The payload.
    pub payload: String,
}

/// One listener process of a pool, as the protocol sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedListener {
    /// The process's name in its group.
    pub name: String,
    /// supervisord's listener state (`ACKNOWLEDGED`, `READY`, `BUSY`,
    /// `UNKNOWN`).
    pub state: String,
    /// What the listener wrote that does not make a whole token yet.
    pub pending: Vec<u8>,
    /// The event it was sent and has not answered.
    pub busy: Option<CarriedEvent>,
    /// RUNNING, as the pool last heard.
    pub running: bool,
    /// Its stdout pipe, kept open across `execve` (`None` once it ended).
    pub stdout_fd: Option<i32>,
}

/// The listening socket of an `[fcgi-program:x]` group, which its children
/// hold as their fd 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedSocket {
    /// The group's name.
    pub group: String,
    /// The configured `socket`: the new image keeps the descriptor only for
    /// the same address.
    pub socket: String,
    /// The descriptor, kept open across `execve`.
    pub fd: i32,
}

/// The carried records, shared by the new image's gap and its tree. A
/// `Vec` behind the `Arc`, not a slice: the decoded state's is taken as it
/// is, where making an `Arc<[_]>` of it would copy every record (a few
/// milliseconds of the pause with thousands of programs).
pub type Records = Arc<Vec<CarriedProcess>>;

/// One of the carried records, read where they all are (the new image's
/// gap answers reads from the same records): no copy of each on the way to
/// its process actor.
#[derive(Debug, Clone)]
pub struct SharedRecord {
    records: Records,
    at: usize,
}

impl SharedRecord {
    /// The record at `at` of `records`; `None` past their end.
    pub fn new(records: Records, at: usize) -> Option<SharedRecord> {
        (at < records.len()).then_some(SharedRecord { records, at })
    }
}

impl std::ops::Deref for SharedRecord {
    type Target = CarriedProcess;

    fn deref(&self) -> &CarriedProcess {
        &self.records[self.at]
    }
}

/// A record offered to the new image's tree, with what the daemon made of
/// it: the child's exit as the reaper will report it, and its pipes.
#[derive(Debug)]
pub struct Adoptable {
    /// The record.
    pub record: SharedRecord,
    /// The adopted child's exit (see [`crate::Reaper::adopt`]); `None`
    /// without a child.
    pub exit: Option<oneshot::Receiver<ExitStatus>>,
    /// The child's stdin pipe (write end).
    pub stdin: Option<OwnedFd>,
    /// The stdout pipes (read ends).
    pub stdout: Vec<OwnedFd>,
    /// The stderr pipes (read ends).
    pub stderr: Vec<OwnedFd>,
    /// The notify socket ([`CarriedProcess::notify`]).
    pub notify: Option<OwnedFd>,
}

static OFFERED: Mutex<Option<HashMap<String, Adoptable>>> = Mutex::new(None);

/// Records ready for [`offer`], by namespec (made off the upgrade's path).
#[derive(Debug, Default)]
pub struct Offers(HashMap<String, Adoptable>);

impl FromIterator<Adoptable> for Offers {
    fn from_iter<I: IntoIterator<Item = Adoptable>>(records: I) -> Offers {
        Offers(records.into_iter().map(|a| (a.record.namespec.clone(), a)).collect())
    }
}

impl Offers {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Offers `records` to the tree about to be built: each process actor whose
/// namespec has one resumes it instead of starting afresh.
pub fn offer(records: Offers) {
    *OFFERED.lock().unwrap_or_else(PoisonError::into_inner) = Some(records.0);
}

/// What an offered record carries of `namespec`'s `channel` log: its file
/// (an AUTO log keeps its random name) and its layout.
pub(crate) fn carried_log(
    namespec: &str,
    channel: Channel,
) -> (Option<PathBuf>, Option<crate::logs::LogLayout>) {
    let offered = OFFERED.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(adoptable) = offered.as_ref().and_then(|table| table.get(namespec)) else {
        return (None, None);
    };
    let record = &adoptable.record;
    match channel {
        Channel::Stdout => (record.stdout_log.clone(), record.stdout_layout.clone()),
        Channel::Stderr => (record.stderr_log.clone(), record.stderr_layout.clone()),
    }
}

/// Whether a live upgrade's records are on offer: the tree being built
/// resumes running programs.
pub(crate) fn resuming() -> bool {
    OFFERED.lock().unwrap_or_else(PoisonError::into_inner).is_some()
}

/// The record for `namespec`, once.
pub(crate) fn claim(namespec: &str) -> Option<Adoptable> {
    OFFERED.lock().unwrap_or_else(PoisonError::into_inner).as_mut()?.remove(namespec)
}

/// Takes what no process actor claimed (its program left the config), for
/// the daemon to stop those children.
pub fn unclaimed() -> Vec<Adoptable> {
    // An fcgi socket no group took closes here (its children are killed).
    OFFERED_SOCKETS.lock().unwrap_or_else(PoisonError::into_inner).take();
    OFFERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .map(|table| table.into_values().collect())
        .unwrap_or_default()
}

/// The event listener state of the previous image, and the pipes it names
/// (by their number in the state).
type OfferedEvents = (CarriedEvents, HashMap<i32, OwnedFd>);

static OFFERED_EVENTS: Mutex<Option<OfferedEvents>> = Mutex::new(None);
static OFFERED_SOCKETS: Mutex<Option<HashMap<String, (String, OwnedFd)>>> = Mutex::new(None);

/// Offers the event listener pools to the tree about to be built; `pipes`
/// are the listeners' stdout pipes, by the number the state gives them.
pub fn offer_events(events: CarriedEvents, pipes: HashMap<i32, OwnedFd>) {
    *OFFERED_EVENTS.lock().unwrap_or_else(PoisonError::into_inner) = Some((events, pipes));
}

/// The offered event listener state, once.
pub(crate) fn claim_events() -> Option<OfferedEvents> {
    OFFERED_EVENTS.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// Offers the fcgi sockets to the tree about to be built: a group with the
/// same `socket` keeps its descriptor (its children listen on it).
pub fn offer_sockets(sockets: Vec<(CarriedSocket, OwnedFd)>) {
    let table = sockets.into_iter().map(|(s, fd)| (s.group, (s.socket, fd))).collect();
    *OFFERED_SOCKETS.lock().unwrap_or_else(PoisonError::into_inner) = Some(table);
}

/// The offered socket of fcgi group `group` if it listens on `socket`,
/// once.
pub(crate) fn claim_socket(group: &str, socket: &str) -> Option<OwnedFd> {
    let mut offered = OFFERED_SOCKETS.lock().unwrap_or_else(PoisonError::into_inner);
    let (address, fd) = offered.as_mut()?.remove(group)?;
    if address == socket {
        Some(fd)
    } else {
        tracing::warn!(
            "fcgi group '{group}' now listens on {socket}, not {address}: its running \
             processes keep the old socket until they are restarted"
        );
        None
    }
}

/// `at` in ms since the epoch.
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    u64::try_from(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// The wall-clock time `ms` after the epoch.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
