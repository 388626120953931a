//! The event bus: state changes of every process, broadcast to any subscriber.
//!
//! Process actors publish one [`Event::ProcessState`] per state change, in the
//! order they happen (supervisord's `PROCESS_STATE_<NEW>` events carry the same
//! fields). Subscribers get a `tokio::sync::broadcast` receiver; a subscriber that
//! falls more than [`BUS_CAPACITY`] events behind sees `RecvError::Lagged` rather
//! than slowing the tree down. Events travel as `Arc<Event>`: the ring's slots
//! are allocated and written when the bus is made, so a slot's size is paid
//! [`BUS_CAPACITY`] times by every daemon, idle or not (an `Event` inline made
//! the ring 0.45 MiB), and each subscriber's receive is a reference count, not
//! a copy of the names.
//!
//! Besides state changes the bus carries everything supervisord's event
//! listeners can subscribe to except the timer ticks, which
//! `eventlistener.rs` makes only while a listener wants them.

use std::sync::Arc;
use std::time::SystemTime;

use crate::lifecycle::ProcessState;

/// Events buffered per subscriber before the slowest one starts to lag.
pub const BUS_CAPACITY: usize = 4096;

/// Something that happened in the tree.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A process changed state.
    ProcessState(ProcessStateEvent),
    /// A group was added (startup or `add_group`).
    GroupAdded {
        /// The group's name.
        group: String,
    },
    /// A group was removed (`remove_group`).
    GroupRemoved {
        /// The group's name.
        group: String,
    },
    /// `sendRemoteCommEvent`: a message from a control client to listeners.
    RemoteCommunication {
        /// The type the client gave.
        kind: String,
        /// The message body.
        data: String,
    },
    /// A group exhausted its restart budget: its members are FATAL (Vigil
    /// extension; the root then applies `on_fatal`).
    GroupFatal {
        /// The group's name.
        group: String,
        /// Why its budget ran out, as logged.
        reason: String,
    },
    /// The tree is up and starting its processes (`SUPERVISOR_STATE_CHANGE_RUNNING`).
    SupervisorRunning,
    /// Shutdown began (`SUPERVISOR_STATE_CHANGE_STOPPING`).
    SupervisorStopping,
    /// Output a process logged, for programs with `*_events_enabled`
    /// (`PROCESS_LOG_STDOUT` / `_STDERR`).
    ProcessLog(OutputEvent),
    /// A block a process wrote between supervisord's capture tokens, with
    /// `*_capture_maxbytes` set (`PROCESS_COMMUNICATION_STDOUT` / `_STDERR`).
    ProcessCommunication(OutputEvent),
}

/// Output of one process on one channel, carried by [`Event::ProcessLog`] and
/// [`Event::ProcessCommunication`].
#[derive(Debug, Clone, PartialEq)]
pub struct OutputEvent {
    /// The process's group.
    pub group: String,
    /// The process's name.
    pub name: String,
    /// The child that wrote the output.
    pub pid: u32,
    /// Which of its outputs.
    pub channel: crate::logs::Channel,
    /// Shared, because every subscriber gets a clone of the event.
    pub data: Arc<[u8]>,
}

/// One state change of one process (`PROCESS_STATE_<to>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStateEvent {
    /// The process's group.
    pub group: String,
    /// The process's name.
    pub name: String,
    /// The state it left.
    pub from: ProcessState,
    /// The state it entered.
    pub to: ProcessState,
    /// The child's pid, when one exists in the new state.
    pub pid: Option<u32>,
    /// supervisord's `tries`: the backoff counter.
    pub tries: u32,
    /// For EXITED: whether the exit status was in `exitcodes`.
    pub expected: Option<bool>,
    /// The change follows an exit during which the kernel's OOM killer acted
    /// in the process's control group (Vigil extension).
    pub oom_killed: bool,
    /// When the change happened.
    pub at: SystemTime,
}

impl ProcessStateEvent {
    /// supervisord's namespec of the process.
    pub fn namespec(&self) -> String {
        vigil_config::make_namespec(&self.group, &self.name)
    }
}

/// Sending side of the bus, shared by all process actors.
pub(crate) type Bus = tokio::sync::broadcast::Sender<Arc<Event>>;

/// Puts `event` on the bus. No subscriber is not an error: events exist
/// whether or not anyone listens.
pub(crate) fn publish(bus: &Bus, event: Event) {
    let _ = bus.send(Arc::new(event));
}
