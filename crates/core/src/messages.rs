//! The messages the actors exchange, and the shared records they carry.
//!
//! One message type per actor: [`ProcessMsg`] to a process actor, [`GroupMsg`]
//! to a group actor, [`RootMsg`] to the root. They live here, apart from the
//! actors, so that helper tasks (probes, the notify socket reader, dependency
//! monitors) and the handle can talk to an actor without importing it.
//!
//! The records here outlive the actors that use them: [`ProcessShared`] holds a
//! process's published status, log channels and stdin writer and is handed to a
//! rebuilt actor after a panic; [`GroupEntry`] is one group as the registry and
//! the handle see it. A record names its live actor by the actor's message type,
//! so the messages and the records are declared together.
//!
//! This module imports no actor.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ractor::{ActorRef, RpcReplyPort};
use smol_str::SmolStr;
use tokio::sync::watch;
use vigil_config::{GroupConfig, ProcessConfig, Strategy};

use crate::budget::Budget;
use crate::error::CoreError;
use crate::exit::ExitStatus;
use crate::info::{Labels, Snapshot};
use crate::lifecycle::{LifecycleConfig, ProcessState, Timer};
use crate::logs::ChannelLog;

/// The stdin queue of the current child, shared so `send_stdin` can queue
/// without going through the actor's mailbox; dropping the last reference
/// stops its writer and frees what was queued.
pub(crate) type StdinSlot = Arc<crate::stdin::StdinQueue>;

/// Per-process state that survives actor rebuilds.
pub(crate) struct ProcessShared {
    /// Shared with the configs the daemon keeps (the running one, the last
    /// one read): one copy of each program's settings, not one per holder.
    pub(crate) config: Arc<ProcessConfig>,
    /// Its names and log paths as status shows them (`namespec` too).
    pub(crate) labels: Labels,
    /// The latest [`Snapshot`], published by the actor after each message.
    pub(crate) snapshot: watch::Sender<Snapshot>,
    /// Created once and kept across restarts, so offsets and tails are continuous.
    pub(crate) stdout: ChannelLog,
    pub(crate) stderr: ChannelLog,
    pub(crate) stdin: Mutex<Option<StdinSlot>>,
    /// The live actor; replaced when the group rebuilds it.
    pub(crate) actor: RwLock<Option<ActorRef<ProcessMsg>>>,
    /// The current child's pid (0 = none), for the group to kill an orphan whose
    /// actor failed.
    pub(crate) child: AtomicU32,
    /// Lifecycle settings changed in place by `update` (see
    /// [`ProcessMsg::Retune`]); a rebuilt actor starts from these, not `config`.
    /// Boxed: few programs are ever retuned, and every one keeps this.
    pub(crate) retuned: Mutex<Option<Box<LifecycleConfig>>>,
    /// Being stopped on purpose together with its dependents: counts as not
    /// meeting any dependency condition, so a requeued dependent does not start
    /// again before this process went down and came back.
    pub(crate) held: std::sync::atomic::AtomicBool,
    /// Children spawned so far, kept across actor rebuilds (restart counts).
    pub(crate) spawns: std::sync::atomic::AtomicU64,
    /// How the last child ended; unlike the lifecycle's exit status, a new
    /// spawn does not clear it.
    pub(crate) last_exit: Mutex<Option<crate::exit::ExitStatus>>,
    /// Whether the kernel's OOM killer acted in the process's control group
    /// during the run that ended last.
    pub(crate) last_exit_oom: std::sync::atomic::AtomicBool,
}

impl ProcessShared {
    pub(crate) fn new(
        config: Arc<ProcessConfig>,
        stdout: ChannelLog,
        stderr: ChannelLog,
    ) -> ProcessShared {
        let labels = Labels::new(&config.group, &config.name, stdout.path_ref(), stderr.path_ref());
        ProcessShared {
            config,
            labels,
            snapshot: watch::Sender::new(Snapshot::never_started()),
            stdout,
            stderr,
            stdin: Mutex::new(None),
            actor: RwLock::new(None),
            child: AtomicU32::new(0),
            retuned: Mutex::new(None),
            held: std::sync::atomic::AtomicBool::new(false),
            spawns: std::sync::atomic::AtomicU64::new(0),
            last_exit: Mutex::new(None),
            last_exit_oom: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn record_exit(&self, status: crate::exit::ExitStatus, oom_killed: bool) {
        let mut last = self.last_exit.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Some(status);
        self.last_exit_oom.store(oom_killed, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn last_exit(&self) -> Option<crate::exit::ExitStatus> {
        *self.last_exit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lifecycle settings in force: `config`'s, unless `update` retuned them.
    pub(crate) fn lifecycle_config(&self) -> LifecycleConfig {
        self.retuned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_deref()
            .cloned()
            .unwrap_or_else(|| LifecycleConfig::from_process(&self.config))
    }

    /// `group:name`, or `name` when both are the same.
    pub(crate) fn namespec(&self) -> &SmolStr {
        &self.labels.namespec
    }

    pub(crate) fn actor(&self) -> Option<ActorRef<ProcessMsg>> {
        self.actor.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn state(&self) -> ProcessState {
        self.snapshot.borrow().state
    }

    pub(crate) fn stdin(&self) -> Option<StdinSlot> {
        self.stdin.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_stdin(&self, slot: Option<StdinSlot>) {
        *self.stdin.lock().unwrap_or_else(PoisonError::into_inner) = slot;
    }
}

/// Messages to a process actor (`process.rs`).
pub(crate) enum ProcessMsg {
    /// A user's start; replies once the spawn was attempted.
    Start(RpcReplyPort<Result<(), CoreError>>),
    /// A user's stop; replies once the stop signal was sent.
    Stop(RpcReplyPort<Result<(), CoreError>>),
    /// A user's signal.
    Signal(i32, RpcReplyPort<Result<(), CoreError>>),
    /// Start if `autostart` and never started; replies after the attempt.
    Autostart(RpcReplyPort<()>),
    /// The daemon's mood left RUNNING: no more automatic starts.
    DaemonShuttingDown,
    /// This process's turn in an ordered shutdown.
    Shutdown,
    /// `update` changed settings that apply without a restart.
    Retune(Box<LifecycleConfig>),
    /// `update` gave the group a new strategy or restart budget.
    Policy { strategy: Strategy, budget: Arc<Budget> },
    /// The child of spawn `generation` was reaped.
    /// `oom_killed`: the kernel's OOM killer acted in its control group
    /// during the run.
    Exited { generation: u64, pid: u32, status: ExitStatus, oom_killed: bool },
    /// The control group of child `generation` passed
    /// `memory_restart_threshold`, using `usage` bytes.
    MemoryThreshold { generation: u64, usage: u64 },
    /// A timer armed by the lifecycle fired.
    Timer(Timer),
    /// A dependency's snapshot changed (from the dependency monitor).
    DepsChanged,
    /// A dependency is about to be stopped or restarted on purpose: stop and
    /// wait for it (`restart_dependents`).
    DependencyLost,
    /// A probe's verdict about child `generation`.
    Probe { generation: u64, verdict: Verdict },
    /// `READY=1` arrived on the notify socket.
    Notified,
    /// The group admits the restart this process asked for.
    RestartApproved,
    /// The group's restart budget is exhausted.
    RestartDenied,
    /// Another member exhausted the group's budget.
    GroupFatal,
    /// A live upgrade: let go of the child and give its record (see
    /// [`crate::handover`]).
    Handover(RpcReplyPort<Result<crate::handover::Frozen, String>>),
    /// Panics inside the handler, to exercise supervision.
    #[cfg(test)]
    Crash,
}

/// A probe's message to its process actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    ReadinessPassed,
    ReadinessFailed,
    /// One liveness check passed.
    Alive,
    /// One liveness check failed, below the threshold.
    Unwell,
    LivenessFailed,
}

/// Messages to a group actor (`group.rs`).
pub(crate) enum GroupMsg {
    /// The daemon is shutting down: tell every member to start nothing new.
    DaemonShuttingDown,
    /// This group's turn in the ordered shutdown: stop every member, in reverse
    /// start order (supervisord's `stop_all`).
    Shutdown,
    /// `update`: the group's new config and members, in start order. Members
    /// present before (the same `Arc`) keep their actor and child; new ones get an
    /// actor (not started); the actors of members left out are stopped (the
    /// caller stopped their processes first). See `update.rs`.
    Reconcile {
        config: Arc<GroupConfig>,
        members: Vec<Arc<ProcessShared>>,
        reply: ractor::RpcReplyPort<()>,
    },
    /// `member` died after RUNNING (one_for_all / rest_for_one): restart
    /// the members the strategy names, if the budget allows.
    MemberDied { member: Arc<ProcessShared> },
    /// `member` was refused a restart by the budget: the group is FATAL.
    BudgetExhausted { member: Arc<ProcessShared> },
    /// The strategy restart task finished.
    StrategyDone,
    /// Panics, to exercise the root's supervision.
    #[cfg(test)]
    Crash,
}

/// Where a group's supervision runs: in an actor of its own, or, for a group
/// created with a single member, in the root actor, which then supervises that
/// member's process actor directly (so a plain `[program:x]` costs one actor,
/// not two). Both run the same code (`group.rs`); only the mailbox differs.
#[derive(Clone)]
pub(crate) enum GroupRef {
    Actor(ActorRef<GroupMsg>),
    Hosted { root: ActorRef<RootMsg>, group: Arc<str> },
}

impl GroupRef {
    /// Sends `message` to the group; false if its supervisor is gone.
    pub(crate) fn cast(&self, message: GroupMsg) -> bool {
        match self {
            GroupRef::Actor(actor) => actor.cast(message).is_ok(),
            GroupRef::Hosted { root, group } => {
                root.cast(RootMsg::Group { group: Arc::clone(group), message }).is_ok()
            }
        }
    }

    /// The root, which a group escalates to.
    pub(crate) fn root(&self) -> Option<ActorRef<RootMsg>> {
        match self {
            GroupRef::Actor(actor) => actor.try_get_supervisor().map(Into::into),
            GroupRef::Hosted { root, .. } => Some(root.clone()),
        }
    }
}

/// One group as seen from outside the tree.
pub(crate) struct GroupEntry {
    /// The group's own settings, shared with its actor. `processes` is empty:
    /// each process's settings live once, in its member's [`ProcessShared`]
    /// (`members`), not in a second copy here.
    pub(crate) config: Arc<GroupConfig>,
    /// In start order.
    pub(crate) members: Vec<Arc<ProcessShared>>,
    pub(crate) actor: RwLock<Option<GroupRef>>,
}

impl GroupEntry {
    pub(crate) fn new(config: GroupConfig, members: Vec<Arc<ProcessShared>>) -> Arc<GroupEntry> {
        Arc::new(GroupEntry { config: Arc::new(config), members, actor: RwLock::new(None) })
    }

    pub(crate) fn actor(&self) -> Option<GroupRef> {
        self.actor.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set_actor(&self, actor: Option<GroupRef>) {
        *self.actor.write().unwrap_or_else(PoisonError::into_inner) = actor;
    }
}

/// A group's config and its members, built (`members.rs`) and not
/// added to the tree yet.
pub(crate) type BuiltGroup = (GroupConfig, Vec<Arc<ProcessShared>>);

/// A group in a [`BuildQueue`]: its members built, or (a live upgrade's
/// resume) its config with its processes, built as the root starts it, so
/// that a group a call needs first waits for its own members alone.
pub(crate) enum Queued {
    Built(Arc<GroupEntry>),
    /// With the daemon's settings, which say where AUTO logs go.
    Unbuilt(GroupConfig, Arc<vigil_config::Supervisord>),
}

impl Queued {
    pub(crate) fn config(&self) -> &GroupConfig {
        match self {
            Queued::Built(entry) => &entry.config,
            Queued::Unbuilt(config, _) => config,
        }
    }

    /// Its processes' settings, built or not.
    fn processes(&self) -> Vec<&vigil_config::ProcessConfig> {
        match self {
            Queued::Built(entry) => entry.members.iter().map(|m| &*m.config).collect(),
            Queued::Unbuilt(config, _) => config.processes.iter().map(|p| &**p).collect(),
        }
    }
}

impl From<BuiltGroup> for Queued {
    fn from((config, members): BuiltGroup) -> Queued {
        Queued::Built(GroupEntry::new(config, members))
    }
}

/// The groups of one [`RootMsg::AddGroups`] that the root has not started
/// yet, in the order it starts them.
///
/// A caller that needs a group before the others (a live upgrade's control
/// call naming it while thousands are being resumed) moves it to the front
/// with [`BuildQueue::hurry`] and waits on [`BuildQueue::finished`], which
/// counts the groups added to the tree or given up. While the queue is
/// [held](BuildQueue::hold) (tests only) it yields hurried groups alone.
pub(crate) struct BuildQueue {
    state: Mutex<QueueState>,
    finished: watch::Sender<u64>,
}

struct QueueState {
    queued: VecDeque<Queued>,
    /// Queued or being started: not in the tree yet, not given up.
    unfinished: HashSet<String>,
    /// How many at the front were hurried (yielded even while held).
    hurried: usize,
    held: bool,
    /// The root's stream, waiting for a hurried group or the release.
    waiting: Option<std::task::Waker>,
    /// See [`BuildQueue::entangled`].
    entangled: Option<Arc<HashSet<String>>>,
}

impl BuildQueue {
    pub(crate) fn new(groups: Vec<Queued>) -> BuildQueue {
        let queued: VecDeque<_> = groups.into_iter().collect();
        let unfinished = queued.iter().map(|queued| queued.config().name.clone()).collect();
        BuildQueue {
            state: Mutex::new(QueueState {
                queued,
                unfinished,
                hurried: 0,
                held: false,
                waiting: None,
                entangled: None,
            }),
            finished: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queued groups' names, in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().queued.iter().map(|queued| queued.config().name.clone()).collect()
    }

    /// Notes the groups of this queue and of `registered` that `depends_on`
    /// ties to others: a process's own group when it has `depends_on`, and
    /// the groups of what it names ([`BuildQueue::entangled`]). Called
    /// before the root takes any group, so every group is in one of the two.
    pub(crate) fn entangle(&self, registered: &[Arc<GroupEntry>]) {
        let mut state = self.lock();
        // Each group's name and its processes' settings.
        let groups: Vec<(&str, Vec<&vigil_config::ProcessConfig>)> = state
            .queued
            .iter()
            .map(|queued| (queued.config().name.as_str(), queued.processes()))
            .chain(registered.iter().map(|entry| {
                (entry.config.name.as_str(), entry.members.iter().map(|m| &*m.config).collect())
            }))
            .collect();
        let mut tied = HashSet::new();
        for process in groups.iter().flat_map(|(_, processes)| processes) {
            if process.depends_on.is_empty() {
                continue;
            }
            tied.insert(process.group.clone());
            for dependency in &process.depends_on {
                match dependency.name.split_once(':') {
                    Some((group, _)) => {
                        tied.insert(group.to_owned());
                    }
                    None => tied.extend(
                        groups
                            .iter()
                            .filter(|(_, processes)| {
                                processes.iter().any(|p| p.program == dependency.name)
                            })
                            .map(|(name, _)| (*name).to_owned()),
                    ),
                }
            }
        }
        state.entangled = Some(Arc::new(tied));
    }

    /// What [`BuildQueue::entangle`] found; `None` before it ran.
    pub(crate) fn entangled(&self) -> Option<Arc<HashSet<String>>> {
        self.lock().entangled.clone()
    }

    /// The next group to start: `Pending` while held with nothing hurried,
    /// `None` once the queue is empty.
    pub(crate) fn poll_next(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Queued>> {
        let mut state = self.lock();
        if state.held && state.hurried == 0 && !state.queued.is_empty() {
            state.waiting = Some(cx.waker().clone());
            return std::task::Poll::Pending;
        }
        state.hurried = state.hurried.saturating_sub(1);
        std::task::Poll::Ready(state.queued.pop_front())
    }

    /// Moves `group` to the front if it is still queued; whether it is
    /// still to come (queued, or being started).
    pub(crate) fn hurry(&self, group: &str) -> bool {
        let mut state = self.lock();
        if !state.unfinished.contains(group) {
            return false;
        }
        let skip = state.hurried;
        if let Some(at) = state.queued.iter().skip(skip).position(|q| q.config().name == group) {
            if let Some(entry) = state.queued.remove(skip + at) {
                state.queued.insert(skip, entry);
                state.hurried += 1;
            }
            if let Some(waker) = state.waiting.take() {
                waker.wake();
            }
        }
        true
    }

    /// `group` is in the tree, or will not be.
    pub(crate) fn finish(&self, group: &str) {
        self.lock().unfinished.remove(group);
        self.finished.send_modify(|count| *count += 1);
    }

    /// Every group still to come is given up (the batch was refused).
    pub(crate) fn finish_all(&self) {
        let mut state = self.lock();
        state.queued.clear();
        state.unfinished.clear();
        drop(state);
        self.finished.send_modify(|count| *count += 1);
    }

    /// Bumped as groups finish.
    pub(crate) fn finished(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// Yields hurried groups alone until [`BuildQueue::release`].
    pub(crate) fn hold(&self) {
        self.lock().held = true;
    }

    pub(crate) fn release(&self) {
        let mut state = self.lock();
        state.held = false;
        if let Some(waker) = state.waiting.take() {
            waker.wake();
        }
    }
}

/// Messages to the root actor (`root.rs`).
pub(crate) enum RootMsg {
    /// Adds a group whose members (and their logs) were already built.
    AddGroup {
        config: GroupConfig,
        members: Vec<Arc<ProcessShared>>,
        reply: RpcReplyPort<Result<(), CoreError>>,
    },
    /// Adds many groups at once, as the tree is built: their members' actors
    /// start concurrently. Replies with the first error, once every group
    /// that could start is in the registry.
    AddGroups { groups: Arc<BuildQueue>, reply: RpcReplyPort<Result<(), CoreError>> },
    /// Removes a group whose processes are all stopped.
    RemoveGroup { name: String, reply: RpcReplyPort<Result<(), CoreError>> },
    /// Ordered shutdown; replies when every process is stopped.
    Shutdown(RpcReplyPort<()>),
    /// `update` of a group in place: `entry` (new config and members, no actor
    /// yet) replaces the group of the same name, whose actor reconciles its
    /// members (see [`GroupMsg::Reconcile`]).
    ReplaceGroup { entry: Arc<GroupEntry>, reply: RpcReplyPort<Result<(), CoreError>> },
    /// A group exhausted its restart budget and is FATAL.
    Escalate { group: String, reason: String },
    /// A message to a group whose supervision the root hosts (see [`GroupRef`]).
    Group { group: Arc<str>, message: GroupMsg },
}
