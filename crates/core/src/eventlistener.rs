//! supervisord's event listeners: `[eventlistener:x]` pools fed from the bus.
//!
//! # Theory of operation
//!
//! The `Hub` is one task that reads every [`Event`] on the bus, turns it
//! into supervisord's event name and payload ([`Notification::from_event`]),
//! and hands it to each pool that subscribes to it ([`subscribes`]), after
//! giving it the next global serial (serials are only used up by events some
//! pool takes, as in supervisord). It also makes the `TICK_*` events, but only
//! while some pool subscribes to one: with no listener the hub sleeps on the
//! bus and the daemon makes no timer wake-ups.
//!
//! Each pool is a task that owns its buffer (`buffer_size` events, the oldest
//! dropped on overflow with supervisord's log line) and the protocol state of
//! each member ([`Protocol`], a pure state machine over the bytes the listener
//! writes). A listener's stdout never reaches a log: `output.rs` hands each new
//! stdout pipe to `Hub::attach`, and a reader task forwards its bytes to the
//! pool. The pool writes an envelope ([`envelope`]) to the stdin of the first
//! member that is RUNNING and READY, and re-queues the event at the head when
//! the listener answers anything but `OK`, breaks the protocol, or dies while
//! busy.
//!
//! # Live upgrade
//!
//! The hub hands its pools over (`Hub::pause`, then `Hub::freeze` once
//! the process actors let go of their children): the pools stop sending
//! (an envelope being written is finished first, so a listener never holds
//! half of one), the feed takes what is still on the bus, the readers stop
//! and give their pipes back, and each pool answers its queue, serials and
//! each member's protocol state, event in flight included
//! ([`crate::handover::CarriedPool`]). The next image's hub builds each pool
//! from that record and reads the same pipes on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use vigil_config::GroupKind;

use crate::events::{Event, OutputEvent, ProcessStateEvent};
use crate::handover::{CarriedEvent, CarriedEvents, CarriedListener, CarriedPool};
use crate::lifecycle::ProcessState;
use crate::logs::Channel;
use crate::messages::{GroupEntry, ProcessShared};
use crate::registry::Registry;

/// The tick events and their periods in seconds.
pub const TICKS: [(&str, u64); 3] = [("TICK_5", 5), ("TICK_60", 60), ("TICK_3600", 3600)];

/// An event as listeners see it: supervisord's type name and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// supervisord's event type name (`PROCESS_STATE_RUNNING`).
    pub name: String,
    /// The body after the envelope's header line, as supervisord writes it.
    pub payload: String,
}

impl Notification {
    /// supervisord's type name of a bus event, cheaper than the whole notification.
    pub fn name_of(event: &Event) -> String {
        match event {
            Event::ProcessState(change) => format!("PROCESS_STATE_{}", change.to.name()),
            Event::GroupAdded { .. } => "PROCESS_GROUP_ADDED".to_owned(),
            Event::GroupRemoved { .. } => "PROCESS_GROUP_REMOVED".to_owned(),
            Event::RemoteCommunication { .. } => "REMOTE_COMMUNICATION".to_owned(),
            Event::SupervisorRunning => "SUPERVISOR_STATE_CHANGE_RUNNING".to_owned(),
            Event::SupervisorStopping => "SUPERVISOR_STATE_CHANGE_STOPPING".to_owned(),
            Event::ProcessLog(output) => format!("PROCESS_LOG_{}", channel_suffix(output.channel)),
            Event::ProcessCommunication(output) => {
                format!("PROCESS_COMMUNICATION_{}", channel_suffix(output.channel))
            }
            // Vigil's own (a restart budget exhausted): supervisord has no such
            // listener type, so no `events=` line can name it.
            Event::GroupFatal { .. } => String::new(),
        }
    }

    /// The listener form of a bus event; `None` for Vigil's own events, which
    /// have no supervisord type.
    pub fn from_event(event: &Event) -> Option<Notification> {
        let (name, payload) = match event {
            Event::GroupFatal { .. } => return None,
            Event::ProcessState(change) => {
                (format!("PROCESS_STATE_{}", change.to.name()), process_state_payload(change))
            }
            Event::GroupAdded { group } => {
                ("PROCESS_GROUP_ADDED".to_owned(), format!("groupname:{group}\n"))
            }
            Event::GroupRemoved { group } => {
                ("PROCESS_GROUP_REMOVED".to_owned(), format!("groupname:{group}\n"))
            }
            Event::RemoteCommunication { kind, data } => {
                ("REMOTE_COMMUNICATION".to_owned(), format!("type:{kind}\n{data}"))
            }
            Event::SupervisorRunning => {
                ("SUPERVISOR_STATE_CHANGE_RUNNING".to_owned(), String::new())
            }
            Event::SupervisorStopping => {
                ("SUPERVISOR_STATE_CHANGE_STOPPING".to_owned(), String::new())
            }
            Event::ProcessLog(output) => (
                format!("PROCESS_LOG_{}", channel_suffix(output.channel)),
                format!(
                    "processname:{} groupname:{} pid:{} channel:{}\n{}",
                    output.name,
                    output.group,
                    output.pid,
                    output.channel.as_str(),
                    String::from_utf8_lossy(&output.data)
                ),
            ),
            Event::ProcessCommunication(output) => (
                format!("PROCESS_COMMUNICATION_{}", channel_suffix(output.channel)),
                communication_payload(output),
            ),
        };
        Some(Notification { name, payload })
    }

    /// `TICK_<period>` for the period slice starting at `when` (epoch seconds).
    pub fn tick(name: &str, when: u64) -> Notification {
        Notification { name: name.to_owned(), payload: format!("when:{when}") }
    }
}

fn channel_suffix(channel: Channel) -> &'static str {
    match channel {
        Channel::Stdout => "STDOUT",
        Channel::Stderr => "STDERR",
    }
}

fn communication_payload(output: &OutputEvent) -> String {
    format!(
        "processname:{} groupname:{} pid:{}\n{}",
        output.name,
        output.group,
        output.pid,
        String::from_utf8_lossy(&output.data)
    )
}

/// supervisord's `PROCESS_STATE_*` payload: the base tokens plus the ones the
/// new state carries.
pub fn process_state_payload(change: &ProcessStateEvent) -> String {
    let base = format!(
        "processname:{} groupname:{} from_state:{}",
        change.name, change.group, change.from
    );
    let pid = change.pid.unwrap_or(0);
    let payload = match change.to {
        ProcessState::Starting | ProcessState::Backoff => format!("{base} tries:{}", change.tries),
        ProcessState::Running | ProcessState::Stopping | ProcessState::Stopped => {
            format!("{base} pid:{pid}")
        }
        ProcessState::Exited => {
            format!("{base} expected:{} pid:{pid}", u8::from(change.expected.unwrap_or(false)))
        }
        ProcessState::Fatal | ProcessState::Unknown => base,
    };
    // Vigil extension, only on the change an OOM kill caused, so listeners
    // written for supervisord see its exact payloads otherwise.
    if change.oom_killed { format!("{payload} oom_killed:1") } else { payload }
}

/// Whether a pool subscribed to `subscription` (a type from `events=`, upper
/// case) gets events named `name`: abstract types take their subtypes.
pub fn subscribes(subscription: &str, name: &str) -> bool {
    const ABSTRACT: [&str; 6] = [
        "PROCESS_STATE",
        "PROCESS_LOG",
        "PROCESS_COMMUNICATION",
        "SUPERVISOR_STATE_CHANGE",
        "TICK",
        "PROCESS_GROUP",
    ];
    if subscription == "EVENT" || subscription == name {
        return true;
    }
    ABSTRACT.contains(&subscription)
        && name.strip_prefix(subscription).is_some_and(|rest| rest.starts_with('_'))
}

/// The envelope header line and payload written to a listener's stdin. `len`
/// counts characters, as supervisord's Python `len(str)` does.
pub fn envelope(
    identifier: &str,
    serial: u64,
    pool: &str,
    pool_serial: u64,
    event: &Notification,
) -> String {
    format!(
        "ver:3.0 server:{identifier} serial:{serial} pool:{pool} poolserial:{pool_serial} \
         eventname:{} len:{}\n{}",
        event.name,
        event.payload.chars().count(),
        event.payload
    )
}

/// The listener states of supervisord (`EventListenerStates`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerState {
    /// Just started, or just answered: waiting for `READY\n`.
    Acknowledged,
    /// Waiting for an event.
    Ready,
    /// Processing an event: waiting for `RESULT <len>\n<body>`.
    Busy,
    /// Broke the protocol: gets no more events until it is restarted.
    Unknown,
}

impl ListenerState {
    const ALL: [ListenerState; 4] = [
        ListenerState::Acknowledged,
        ListenerState::Ready,
        ListenerState::Busy,
        ListenerState::Unknown,
    ];

    /// The state [`ListenerState::name`] names.
    pub fn from_name(name: &str) -> Option<ListenerState> {
        ListenerState::ALL.into_iter().find(|state| state.name() == name)
    }

    /// supervisord's name of the state (`ACKNOWLEDGED`, `READY`, `BUSY`, `UNKNOWN`).
    pub fn name(self) -> &'static str {
        match self {
            ListenerState::Acknowledged => "ACKNOWLEDGED",
            ListenerState::Ready => "READY",
            ListenerState::Busy => "BUSY",
            ListenerState::Unknown => "UNKNOWN",
        }
    }
}

/// What a listener's output meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `READY\n`: it can take an event.
    Ready,
    /// `RESULT 2\nOK`: the event was processed.
    Accepted,
    /// Any other result body: the event goes back to the buffer.
    Rejected(Vec<u8>),
    /// A result line without a number: the event goes back, the listener is UNKNOWN.
    BadResult(String),
    /// Output where none was expected: the listener is UNKNOWN.
    Violation,
}

const READY_TOKEN: &[u8] = b"READY\n";
/// `RESULT `: supervisord takes the length from after these 7 bytes without
/// checking them.
const RESULT_PREFIX_LEN: usize = 7;
/// The most a listener's `RESULT` line and body may hold together. A result is
/// `OK` or `FAIL` in practice; without a bound, a listener that announces a huge
/// length (or never ends its line) would make the daemon buffer whatever it
/// writes. Past it, the listener is UNKNOWN, as for a malformed result.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// The protocol state of one listener process, fed with its stdout.
#[derive(Debug)]
pub struct Protocol {
    state: ListenerState,
    buffer: Vec<u8>,
}

impl Default for Protocol {
    fn default() -> Protocol {
        Protocol { state: ListenerState::Acknowledged, buffer: Vec::new() }
    }
}

impl Protocol {
    /// Where the listener is in the protocol.
    pub fn state(&self) -> ListenerState {
        self.state
    }

    /// An envelope was written: READY -> BUSY.
    pub fn sent(&mut self) {
        debug_assert_eq!(self.state, ListenerState::Ready);
        self.state = ListenerState::Busy;
    }

    /// The protocol where a live upgrade left it: the state and the bytes
    /// that did not make a whole token yet.
    pub fn resume(state: ListenerState, pending: Vec<u8>) -> Protocol {
        Protocol { state, buffer: pending }
    }

    /// What the listener wrote that does not make a whole token yet.
    pub fn pending(&self) -> &[u8] {
        &self.buffer
    }

    /// The envelope could not be written: the listener is gone for protocol purposes.
    pub fn broken(&mut self) {
        self.state = ListenerState::Unknown;
        self.buffer.clear();
    }

    /// Consumes `data` and returns what it meant, in order (several tokens may
    /// arrive in one read).
    pub fn feed(&mut self, data: &[u8]) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        if self.state == ListenerState::Unknown {
            return outcomes;
        }
        self.buffer.extend_from_slice(data);
        loop {
            match self.state {
                ListenerState::Unknown => {
                    self.buffer.clear();
                    break;
                }
                ListenerState::Acknowledged => {
                    if self.buffer.len() < READY_TOKEN.len() {
                        break;
                    }
                    if self.buffer.starts_with(READY_TOKEN) {
                        self.buffer.drain(..READY_TOKEN.len());
                        self.state = ListenerState::Ready;
                        outcomes.push(Outcome::Ready);
                    } else {
                        self.violate(&mut outcomes);
                    }
                }
                ListenerState::Ready => {
                    if self.buffer.is_empty() {
                        break;
                    }
                    self.violate(&mut outcomes);
                }
                ListenerState::Busy => {
                    let Some(newline) = self.buffer.iter().position(|byte| *byte == b'\n') else {
                        if self.buffer.len() > MAX_RESULT_BYTES {
                            let line = String::from_utf8_lossy(&self.buffer[..80]).into_owned();
                            self.state = ListenerState::Unknown;
                            outcomes.push(Outcome::BadResult(line));
                            continue;
                        }
                        break;
                    };
                    let line = &self.buffer[..newline];
                    // A length that overflows the buffer's end is as unusable as no
                    // number at all.
                    let end = line
                        .get(RESULT_PREFIX_LEN..)
                        .and_then(|digits| std::str::from_utf8(digits).ok())
                        .and_then(|digits| digits.trim().parse::<usize>().ok())
                        .and_then(|length| (newline + 1).checked_add(length))
                        .filter(|end| *end <= MAX_RESULT_BYTES);
                    let Some(end) = end else {
                        let line = String::from_utf8_lossy(line).into_owned();
                        self.state = ListenerState::Unknown;
                        outcomes.push(Outcome::BadResult(line));
                        continue;
                    };
                    if self.buffer.len() < end {
                        break;
                    }
                    let body: Vec<u8> = self.buffer.drain(..end).skip(newline + 1).collect();
                    self.state = ListenerState::Acknowledged;
                    outcomes.push(if body == b"OK" {
                        Outcome::Accepted
                    } else {
                        Outcome::Rejected(body)
                    });
                }
            }
        }
        outcomes
    }

    fn violate(&mut self, outcomes: &mut Vec<Outcome>) {
        self.state = ListenerState::Unknown;
        self.buffer.clear();
        outcomes.push(Outcome::Violation);
    }
}

/// One event waiting in (or taken from) a pool's buffer.
#[derive(Debug, Clone)]
struct Queued {
    serial: u64,
    pool_serial: u64,
    event: Arc<Notification>,
}

impl Queued {
    fn carry(&self) -> CarriedEvent {
        CarriedEvent {
            serial: self.serial,
            pool_serial: self.pool_serial,
            name: self.event.name.clone(),
            payload: self.event.payload.clone(),
        }
    }

    fn resume(carried: CarriedEvent) -> Queued {
        let CarriedEvent { serial, pool_serial, name, payload } = carried;
        Queued { serial, pool_serial, event: Arc::new(Notification { name, payload }) }
    }
}

/// A pool carried by a live upgrade and its members' stdout pipes, by name.
type CarriedWithPipes = (CarriedPool, HashMap<String, OwnedFd>);

/// A pool handed over: its record and the member pipes it names.
type FrozenPool = (CarriedPool, Vec<OwnedFd>);

/// What the feed hands over: the next serial and each tick period's slice.
type FrozenFeed = (u64, Vec<(u64, u64)>);

enum PoolMsg {
    Event {
        serial: u64,
        event: Arc<Notification>,
    },
    Attach {
        shared: Arc<ProcessShared>,
        pid: u32,
        pipe: pipe::Receiver,
    },
    Output {
        member: usize,
        generation: u64,
        data: Vec<u8>,
    },
    Eof {
        member: usize,
        generation: u64,
    },
    /// A member changed state (from the bus, in order: the published snapshot
    /// may lag behind the event).
    State {
        name: String,
        state: ProcessState,
    },
    /// A live upgrade: stop (or start again) sending events, answering once
    /// no envelope is being written.
    Pause {
        paused: bool,
        reply: oneshot::Sender<()>,
    },
    /// A live upgrade: hand the pool over and end.
    Freeze(oneshot::Sender<FrozenPool>),
}

struct PoolRecord {
    entry: Arc<GroupEntry>,
    events: Vec<String>,
    tx: mpsc::UnboundedSender<PoolMsg>,
}

/// The daemon-wide listener machinery, shared by every process actor through
/// its context.
pub(crate) struct Hub {
    identifier: String,
    strip_ansi: bool,
    registry: Arc<Registry>,
    pools: Mutex<BTreeMap<String, PoolRecord>>,
    /// The pools a live upgrade carried, until their group is added, with
    /// their members' stdout pipes by member name.
    carried: Mutex<HashMap<String, CarriedWithPipes>>,
    /// Where the feed starts after a live upgrade: the serial and tick slices.
    resume_feed: Mutex<Option<FrozenFeed>>,
    /// Asks the feed task to hand over (a live upgrade).
    freeze_feed: Mutex<Option<mpsc::UnboundedSender<oneshot::Sender<FrozenFeed>>>>,
    /// A live upgrade paused the pools: a pool made now starts paused.
    paused: AtomicBool,
}

/// How long a pool may take to pause or hand over.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

impl Hub {
    pub(crate) fn new(settings: &vigil_config::Supervisord, registry: Arc<Registry>) -> Arc<Hub> {
        let (resume_feed, carried) = match crate::handover::claim_events() {
            Some((events, mut pipes)) => {
                let CarriedEvents { serial, ticks, pools } = events;
                let carried = pools
                    .into_iter()
                    .map(|pool| {
                        let fds = pool
                            .members
                            .iter()
                            .filter_map(|m| Some((m.name.clone(), pipes.remove(&m.stdout_fd?)?)))
                            .collect();
                        (pool.group.clone(), (pool, fds))
                    })
                    .collect();
                (Some((serial, ticks)), carried)
            }
            None => (None, HashMap::new()),
        };
        Arc::new(Hub {
            identifier: settings.identifier.clone(),
            strip_ansi: settings.strip_ansi,
            registry,
            pools: Mutex::new(BTreeMap::new()),
            carried: Mutex::new(carried),
            resume_feed: Mutex::new(resume_feed),
            freeze_feed: Mutex::new(None),
            paused: AtomicBool::new(false),
        })
    }

    /// Whether this hub took over from a live upgrade's previous image.
    pub(crate) fn resumed(&self) -> bool {
        self.resume_feed.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// A live upgrade, first step: every pool stops sending events (each
    /// answers once no envelope is being written), so the listeners' stdin
    /// pipes can be handed over whole. Events still queue. The error names
    /// a pool that did not answer; the pools are then sending again.
    pub(crate) async fn pause(&self) -> Result<(), String> {
        self.paused.store(true, Ordering::SeqCst);
        if let Err(error) = self.set_paused(true).await {
            self.paused.store(false, Ordering::SeqCst);
            let _ = self.set_paused(false).await;
            return Err(error);
        }
        Ok(())
    }

    async fn set_paused(&self, paused: bool) -> Result<(), String> {
        for (group, tx) in self.senders() {
            let (reply, answered) = oneshot::channel();
            if tx.send(PoolMsg::Pause { paused, reply }).is_err() {
                continue;
            }
            if tokio::time::timeout(HANDOVER_WAIT, answered).await.is_err() {
                return Err(format!(
                    "event listener pool '{group}' is still writing an event to a listener \
                     that does not read it"
                ));
            }
        }
        Ok(())
    }

    fn senders(&self) -> Vec<(String, mpsc::UnboundedSender<PoolMsg>)> {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.iter().map(|(group, record)| (group.clone(), record.tx.clone())).collect()
    }

    /// A live upgrade, once the process actors let go of their children (so
    /// nothing publishes events any more): the feed takes what is left on
    /// the bus and ends, then every pool hands itself over. Returns the
    /// record and the listeners' stdout pipes it names.
    pub(crate) async fn freeze(&self) -> (CarriedEvents, Vec<OwnedFd>) {
        let mut carried = CarriedEvents::default();
        let feed = self.freeze_feed.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(feed) = feed {
            let (reply, answered) = oneshot::channel();
            if feed.send(reply).is_ok()
                && let Ok(Ok((serial, ticks))) = tokio::time::timeout(HANDOVER_WAIT, answered).await
            {
                carried.serial = serial;
                carried.ticks = ticks;
            }
        }
        let mut fds = Vec::new();
        for (group, tx) in self.senders() {
            let (reply, answered) = oneshot::channel();
            if tx.send(PoolMsg::Freeze(reply)).is_err() {
                continue;
            }
            match tokio::time::timeout(HANDOVER_WAIT, answered).await {
                Ok(Ok((pool, pipes))) => {
                    let busy = pool.members.iter().filter(|m| m.busy.is_some()).count();
                    tracing::info!(
                        "handing over event listener pool '{group}': {} events queued, \
                         {busy} in flight",
                        pool.queue.len()
                    );
                    carried.pools.push(pool);
                    fds.extend(pipes);
                }
                _ => tracing::error!(
                    critical = true,
                    "event listener pool '{group}' did not hand over: its queued events are lost"
                ),
            }
        }
        (carried, fds)
    }

    /// `[supervisord] strip_ansi`.
    pub(crate) fn strip_ansi(&self) -> bool {
        self.strip_ansi
    }

    /// Whether `group` is an `[eventlistener:x]` pool.
    pub(crate) fn is_listener(&self, group: &str) -> bool {
        self.pool(group).is_some()
    }

    /// Hands the stdout of a new listener child to its pool.
    pub(crate) fn attach(&self, shared: &Arc<ProcessShared>, pid: u32, pipe: pipe::Receiver) {
        match self.pool(&shared.config.group) {
            Some(tx) => {
                // The pool lives as long as its group; a closed one means the
                // group is being removed and the listener is going away anyway.
                let _ = tx.send(PoolMsg::Attach { shared: Arc::clone(shared), pid, pipe });
            }
            None => tracing::error!("{}: no event listener pool to attach to", shared.namespec()),
        }
    }

    /// The pool of `group`, created when first needed, if the group (as now
    /// registered) is a listener pool.
    fn pool(&self, group: &str) -> Option<mpsc::UnboundedSender<PoolMsg>> {
        let entry = self.registry.group(group)?;
        let GroupKind::EventListener(listener) = &entry.config.kind else {
            return None;
        };
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(record) = pools.get(group)
            && Arc::ptr_eq(&record.entry, &entry)
        {
            return Some(record.tx.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pool = Pool {
            name: group.to_owned(),
            identifier: self.identifier.clone(),
            buffer_size: usize::try_from(listener.buffer_size.max(1)).unwrap_or(usize::MAX),
            buffer: VecDeque::new(),
            next_serial: 0,
            members: entry.members.iter().map(|shared| Member::new(Arc::clone(shared))).collect(),
            paused: self.paused.load(Ordering::SeqCst),
            stop_readers: watch::Sender::new(false),
        };
        let carried = self.carried.lock().unwrap_or_else(PoisonError::into_inner).remove(group);
        if let Some((carried, pipes)) = carried {
            pool.resume(carried, pipes, &tx);
        }
        tokio::spawn(pool.run(rx, tx.downgrade()));
        let events = listener.events.clone();
        pools.insert(group.to_owned(), PoolRecord { entry, events, tx: tx.clone() });
        Some(tx)
    }

    /// Starts the task that feeds pools from `bus`; it ends when the bus closes.
    pub(crate) fn run(self: &Arc<Hub>, bus: broadcast::Receiver<Arc<Event>>) {
        let hub = Arc::clone(self);
        tokio::spawn(async move { hub.feed(bus).await });
    }

    async fn feed(self: Arc<Hub>, mut bus: broadcast::Receiver<Arc<Event>>) {
        let (freeze_tx, mut freeze) = mpsc::unbounded_channel::<oneshot::Sender<FrozenFeed>>();
        *self.freeze_feed.lock().unwrap_or_else(PoisonError::into_inner) = Some(freeze_tx);
        let resumed = self.resume_feed.lock().unwrap_or_else(PoisonError::into_inner).clone();
        // After a live upgrade, a tick whose slice began during the gap is
        // announced at once, not at the next slice.
        let mut catch_up = resumed.is_some();
        let (mut next_serial, carried_ticks) = resumed.unwrap_or_default();
        // The current slice of each subscribed tick period.
        let mut ticks: HashMap<u64, u64> = carried_ticks.into_iter().collect();
        loop {
            let periods = self.tick_periods();
            let now = epoch_seconds();
            ticks.retain(|period, _| periods.iter().any(|(_, p)| p == period));
            for (_, period) in &periods {
                ticks.entry(*period).or_insert(now - now % period);
            }
            let now_ms = epoch_millis();
            let wait = periods
                .iter()
                .map(|(_, period)| period * 1000 - now_ms % (period * 1000))
                .min()
                .map(Duration::from_millis)
                .map(|wait| if std::mem::take(&mut catch_up) { Duration::ZERO } else { wait });
            tokio::select! {
                Some(reply) = freeze.recv() => {
                    // Nothing publishes any more: what is on the bus is the
                    // last the pools get from this image.
                    loop {
                        match bus.try_recv() {
                            Ok(event) => self.handle(&event, &mut next_serial),
                            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                                self.lagged(missed);
                            }
                            Err(_) => break,
                        }
                    }
                    let _ = reply.send((next_serial, ticks.into_iter().collect()));
                    return;
                }
                received = bus.recv() => match received {
                    Ok(event) => self.handle(&event, &mut next_serial),
                    Err(broadcast::error::RecvError::Lagged(missed)) => self.lagged(missed),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = sleep_for(wait), if wait.is_some() => {
                    let now = epoch_seconds();
                    for (name, period) in periods {
                        let slice = now - now % period;
                        if ticks.insert(period, slice) != Some(slice) {
                            let tick = Notification::tick(name, slice);
                            self.deliver(Arc::new(tick), &mut next_serial);
                        }
                    }
                }
            }
        }
    }

    fn tick_periods(&self) -> Vec<(&'static str, u64)> {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        TICKS
            .into_iter()
            .filter(|(name, _)| {
                pools.values().any(|pool| pool.events.iter().any(|sub| subscribes(sub, name)))
            })
            .collect()
    }

    /// The feed fell more than the bus holds behind (thousands of groups
    /// added at once, on a busy machine). A missed `GroupAdded` costs
    /// nothing (a pool is made when first needed), a missed `GroupRemoved`
    /// would keep a removed group's pool: the pools are checked against the
    /// registry. The loss is reported as an error only if a listener could
    /// have wanted those events.
    fn lagged(&self, missed: u64) {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.retain(|group, _| self.registry.group(group).is_some());
        if pools.is_empty() {
            tracing::debug!("{missed} events passed with no event listener to miss them");
        } else {
            tracing::error!("event listeners missed {missed} events: the event bus overflowed");
        }
    }

    fn handle(&self, event: &Event, next_serial: &mut u64) {
        match event {
            Event::GroupAdded { group } => {
                self.pool(group);
            }
            Event::GroupRemoved { group } => {
                let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
                if self.registry.group(group).is_none() {
                    pools.remove(group);
                }
            }
            _ => {}
        }
        // Most events interest nobody: skip building their payloads.
        if self.subscribed(&Notification::name_of(event))
            && let Some(notification) = Notification::from_event(event)
        {
            self.deliver(Arc::new(notification), next_serial);
        }
        if let Event::ProcessState(change) = event
            && let Some(record) =
                self.pools.lock().unwrap_or_else(PoisonError::into_inner).get(&change.group)
        {
            let _ = record.tx.send(PoolMsg::State { name: change.name.clone(), state: change.to });
        }
    }

    fn subscribed(&self, name: &str) -> bool {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools.values().any(|record| record.events.iter().any(|sub| subscribes(sub, name)))
    }

    fn deliver(&self, event: Arc<Notification>, next_serial: &mut u64) {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let mut serial = None;
        for record in pools.values() {
            if !record.events.iter().any(|sub| subscribes(sub, &event.name)) {
                continue;
            }
            let serial = *serial.get_or_insert_with(|| {
                let serial = *next_serial;
                *next_serial = next_serial.wrapping_add(1);
                serial
            });
            let _ = record.tx.send(PoolMsg::Event { serial, event: Arc::clone(&event) });
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    if let Some(wait) = wait {
        tokio::time::sleep(wait).await;
    }
}

fn epoch_seconds() -> u64 {
    epoch_millis() / 1000
}

fn epoch_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

struct Member {
    shared: Arc<ProcessShared>,
    /// Counts spawns, so output of an earlier child is ignored.
    generation: u64,
    protocol: Protocol,
    busy: Option<Queued>,
    /// RUNNING, as of the last state event: only RUNNING listeners get events.
    running: bool,
    /// The current child's stdout reader, which ends with the pipe when a
    /// live upgrade stops it.
    reader: Option<tokio::task::JoinHandle<Option<OwnedFd>>>,
}

impl Member {
    fn new(shared: Arc<ProcessShared>) -> Member {
        let mut protocol = Protocol::default();
        // No child yet: nothing to talk to until the first attach.
        protocol.broken();
        let running = shared.state() == ProcessState::Running;
        Member { shared, generation: 0, protocol, busy: None, running, reader: None }
    }

    fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The child is gone: no more protocol until the next one attaches.
    fn detach(&mut self) {
        let from = self.protocol.state();
        if from != ListenerState::Unknown {
            tracing::debug!("{}: {} -> UNKNOWN", self.name(), from.name());
        }
        self.protocol.broken();
    }
}

struct Pool {
    name: String,
    identifier: String,
    buffer_size: usize,
    buffer: VecDeque<Queued>,
    next_serial: u64,
    members: Vec<Member>,
    /// A live upgrade is under way: events queue, none is sent.
    paused: bool,
    /// Set by a live upgrade: every reader stops and ends with its pipe.
    stop_readers: watch::Sender<bool>,
}

impl Pool {
    /// Runs until the hub dropped the pool (group removed) and no reader task
    /// is left, or a live upgrade took it over; `tx` is weak so the pool
    /// does not keep itself alive.
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<PoolMsg>,
        tx: mpsc::WeakUnboundedSender<PoolMsg>,
    ) {
        // A pool carried by a live upgrade may have events for a READY member.
        self.dispatch().await;
        while let Some(message) = rx.recv().await {
            match message {
                PoolMsg::Pause { paused, reply } => {
                    self.paused = paused;
                    let _ = reply.send(());
                }
                PoolMsg::Freeze(reply) => {
                    let frozen = self.freeze(&mut rx).await;
                    let _ = reply.send(frozen);
                    return;
                }
                message => self.receive(message, &tx),
            }
            self.dispatch().await;
        }
    }

    /// A message other than the live upgrade's.
    fn receive(&mut self, message: PoolMsg, tx: &mpsc::WeakUnboundedSender<PoolMsg>) {
        match message {
            PoolMsg::Pause { .. } | PoolMsg::Freeze(_) => {}
            PoolMsg::Event { serial, event } => {
                let pool_serial = self.next_serial;
                self.next_serial = self.next_serial.wrapping_add(1);
                self.accept(Queued { serial, pool_serial, event }, false);
            }
            PoolMsg::Attach { shared, pid, pipe } => {
                let Some(index) = self.members.iter().position(|m| Arc::ptr_eq(&m.shared, &shared))
                else {
                    return;
                };
                let Some(tx) = tx.upgrade() else { return };
                let member = &mut self.members[index];
                if let Some(queued) = member.busy.take() {
                    self.buffer.push_front(queued);
                }
                let member = &mut self.members[index];
                member.generation += 1;
                member.protocol = Protocol::default();
                tracing::debug!("{}: listener pid {pid} attached", member.name());
                let stop = self.stop_readers.subscribe();
                let generation = member.generation;
                member.reader =
                    Some(tokio::spawn(read_listener(pipe, index, generation, tx, stop)));
            }
            PoolMsg::Output { member, generation, data } => {
                if self.members[member].generation == generation {
                    self.output(member, &data);
                }
            }
            PoolMsg::Eof { member, generation } => {
                let member = &mut self.members[member];
                if member.generation == generation {
                    member.detach();
                    if let Some(queued) = member.busy.take() {
                        // Died while busy: supervisord's EventRejectedEvent.
                        tracing::warn!(
                            "{}: listener exited while processing event {}; re-buffering it",
                            member.shared.config.name,
                            queued.serial
                        );
                        self.accept(queued, true);
                    }
                }
            }
            PoolMsg::State { name, state } => {
                if let Some(member) = self.members.iter_mut().find(|m| *m.name() == name) {
                    member.running = state == ProcessState::Running;
                }
            }
        }
    }

    /// Hands the pool over for a live upgrade: the readers stop (each ends
    /// with its pipe), what they forwarded before is applied, and the pool
    /// answers its record.
    ///
    /// An event a listener was sent and has not answered stays its event in
    /// flight (BUSY), in the record: the pool was paused, so the envelope is
    /// whole in the listener's stdin, and the answer waits in its stdout pipe
    /// for the next image, which applies it as this one would have. So the
    /// upgrade itself neither sends it again nor drops it: `OK` ends it, any
    /// other answer, a broken protocol or the listener's death puts it back
    /// at the head of the queue, supervisord's rule for an event a listener
    /// did not accept.
    async fn freeze(&mut self, rx: &mut mpsc::UnboundedReceiver<PoolMsg>) -> FrozenPool {
        self.stop_readers.send_replace(true);
        let mut pipes: Vec<Option<OwnedFd>> = Vec::with_capacity(self.members.len());
        for member in &mut self.members {
            let pipe = match member.reader.take() {
                Some(reader) => reader.await.ok().flatten(),
                None => None,
            };
            pipes.push(pipe);
        }
        // The readers send what they read before they end. Nothing attaches
        // any more: a sender that upgrades to nothing.
        let none = mpsc::unbounded_channel().0.downgrade();
        while let Ok(message) = rx.try_recv() {
            self.receive(message, &none);
        }
        let mut fds = Vec::new();
        let members = self
            .members
            .iter()
            .zip(pipes)
            .map(|(member, pipe)| {
                // A member without a pipe is not listening: nothing it sent
                // can be answered.
                let stdout_fd = pipe.map(|fd| {
                    let raw = fd.as_raw_fd();
                    fds.push(fd);
                    raw
                });
                let state = if stdout_fd.is_some() {
                    member.protocol.state()
                } else {
                    ListenerState::Unknown
                };
                CarriedListener {
                    name: member.name().to_owned(),
                    state: state.name().to_owned(),
                    pending: member.protocol.pending().to_vec(),
                    busy: member.busy.as_ref().map(Queued::carry),
                    running: member.running,
                    stdout_fd,
                }
            })
            .collect();
        let pool = CarriedPool {
            group: self.name.clone(),
            next_serial: self.next_serial,
            queue: self.buffer.iter().map(Queued::carry).collect(),
            members,
        };
        (pool, fds)
    }

    /// Takes over what the previous image of a live upgrade handed over:
    /// the queue, the serials, and each member's protocol state, event in
    /// flight and stdout pipe (read on here).
    fn resume(
        &mut self,
        carried: CarriedPool,
        mut pipes: HashMap<String, OwnedFd>,
        tx: &mpsc::UnboundedSender<PoolMsg>,
    ) {
        self.next_serial = carried.next_serial;
        self.buffer = carried.queue.into_iter().map(Queued::resume).collect();
        for listener in carried.members {
            let busy = listener.busy.map(Queued::resume);
            let index = self.members.iter().position(|m| m.name() == listener.name);
            let pipe =
                pipes.remove(&listener.name).and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok());
            let state = ListenerState::from_name(&listener.state);
            let (Some(index), Some(pipe), Some(state)) = (index, pipe, state) else {
                // Gone from the pool, or not listening: its event in flight
                // can only be sent again.
                if let Some(queued) = busy {
                    tracing::warn!(
                        "{}: listener not resumed while processing event {}; re-buffering it",
                        listener.name,
                        queued.serial
                    );
                    self.buffer.push_front(queued);
                }
                continue;
            };
            let member = &mut self.members[index];
            member.generation += 1;
            member.protocol = Protocol::resume(state, listener.pending);
            member.busy = busy;
            member.running = listener.running;
            let stop = self.stop_readers.subscribe();
            let generation = member.generation;
            let reader = read_listener(pipe, index, generation, tx.clone(), stop);
            member.reader = Some(tokio::spawn(reader));
        }
        self.trim();
    }

    /// Drops the oldest events beyond the buffer's size, with supervisord's log line.
    fn trim(&mut self) {
        while self.buffer.len() > self.buffer_size {
            if let Some(discarded) = self.buffer.pop_front() {
                tracing::error!(
                    "pool {} event buffer overflowed, discarding event {}",
                    self.name,
                    discarded.serial
                );
            }
        }
    }

    fn accept(&mut self, queued: Queued, head: bool) {
        if self.buffer.len() >= self.buffer_size
            && let Some(discarded) = self.buffer.pop_front()
        {
            tracing::error!(
                "pool {} event buffer overflowed, discarding event {}",
                self.name,
                discarded.serial
            );
        }
        if head {
            self.buffer.push_front(queued);
        } else {
            self.buffer.push_back(queued);
        }
    }

    fn output(&mut self, index: usize, data: &[u8]) {
        let member = &mut self.members[index];
        // supervisord shows a listener's protocol output as the bytes' repr.
        tracing::debug!(
            "{} stdout output:\n{}",
            vigil_config::py_repr(member.name()),
            crate::logformat::py_bytes_repr(data)
        );
        let before = member.protocol.state();
        for outcome in member.protocol.feed(data) {
            match outcome {
                Outcome::Ready => {}
                Outcome::Accepted => {
                    member.busy = None;
                    tracing::debug!("{}: event was processed", member.name());
                }
                Outcome::Rejected(_) => {
                    tracing::warn!("{}: event was rejected", member.name());
                    if let Some(queued) = member.busy.take() {
                        self.buffer.push_front(queued);
                    }
                }
                Outcome::BadResult(line) => {
                    tracing::warn!("{}: bad result line: '{line}'", member.name());
                    if let Some(queued) = member.busy.take() {
                        self.buffer.push_front(queued);
                    }
                }
                Outcome::Violation => {
                    tracing::warn!(
                        "{}: has entered the UNKNOWN state and will no longer receive events, \
                         this usually indicates the process violated the eventlistener protocol",
                        member.name()
                    );
                    if let Some(queued) = member.busy.take() {
                        self.buffer.push_front(queued);
                    }
                }
            }
        }
        let after = member.protocol.state();
        if before != after {
            tracing::debug!("{}: {} -> {}", member.name(), before.name(), after.name());
        }
        // Re-buffering at the head may have overflowed the buffer.
        self.trim();
    }

    /// Sends buffered events, oldest first, while some member can take one.
    async fn dispatch(&mut self) {
        while !self.buffer.is_empty() && !self.paused {
            let Some(index) = self.members.iter().position(|member| {
                member.protocol.state() == ListenerState::Ready && member.running
            }) else {
                return;
            };
            let Some(queued) = self.buffer.pop_front() else { return };
            let member = &mut self.members[index];
            let envelope = envelope(
                &self.identifier,
                queued.serial,
                &self.name,
                queued.pool_serial,
                &queued.event,
            );
            let written = match member.shared.stdin() {
                Some(slot) => slot.write(envelope.into_bytes()).await,
                None => Err(std::io::ErrorKind::BrokenPipe.into()),
            };
            match written {
                Ok(()) => {
                    member.protocol.sent();
                    tracing::debug!("event {} sent to listener {}", queued.serial, member.name());
                    member.busy = Some(queued);
                }
                Err(error) => {
                    // EPIPE and friends: skip this listener, keep the event.
                    tracing::warn!(
                        "{}: could not send event {}: {error}",
                        member.name(),
                        queued.serial
                    );
                    member.protocol.broken();
                    self.buffer.push_front(queued);
                }
            }
        }
    }
}

/// Forwards a listener's stdout to its pool until EOF, or until a live
/// upgrade stops it: it then ends with the pipe, what it read forwarded.
async fn read_listener(
    mut pipe: pipe::Receiver,
    member: usize,
    generation: u64,
    tx: mpsc::UnboundedSender<PoolMsg>,
    mut stop: watch::Receiver<bool>,
) -> Option<OwnedFd> {
    let mut buffer = vec![0u8; 4096];
    loop {
        tokio::select! {
            // Stopped first: bytes not read yet stay in the pipe, which the
            // next image reads on.
            biased;
            stopped = stop.wait_for(|stop| *stop) => {
                // The pool is gone otherwise (only a live upgrade ends it
                // while a reader runs).
                stopped.ok()?;
                return match pipe.into_nonblocking_fd() {
                    Ok(fd) => Some(fd),
                    Err(error) => {
                        tracing::error!("cannot keep a listener's stdout for the upgrade: {error}");
                        None
                    }
                };
            }
            read = pipe.read(&mut buffer) => match read {
                Ok(0) => break,
                Ok(n) => {
                    let data = buffer[..n].to_vec();
                    if tx.send(PoolMsg::Output { member, generation, data }).is_err() {
                        return None;
                    }
                }
                Err(error) => {
                    tracing::warn!("reading an event listener's stdout failed: {error}");
                    break;
                }
            },
        }
    }
    let _ = tx.send(PoolMsg::Eof { member, generation });
    None
}

#[cfg(test)]
mod tests;
