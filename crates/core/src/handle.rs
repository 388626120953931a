//! [`Handle`]: the whole public surface of a running tree.
//!
//! It reads status from the snapshots each process publishes (no mailbox
//! round-trip, so the status of thousands of processes is cheap), sends
//! requests straight to the process actors concurrently, and waits for
//! supervisord's `wait` conditions by watching those snapshots, never inside an
//! actor. Namespecs ([`NameSpec`]: a process, a group, `all`) are resolved here,
//! through the registry. It knows nothing of RPC: errors are [`CoreError`]s that
//! mirror supervisord's faults.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::{broadcast, watch};
use vigil_config::{GroupConfig, NameSpec, Signal, Supervisord};

use crate::context::{Context, FatalShutdown};
use crate::deps;
use crate::error::CoreError;
use crate::events::Event;
use crate::info::{ProcessInfo, StatusRow};
use crate::lifecycle::ProcessState;
use crate::logs::{Channel, ChannelLog};
use crate::members::build_members;
use crate::messages::{
    BuildQueue, BuiltGroup, GroupEntry, ProcessMsg, ProcessShared, Queued, RootMsg,
};
use crate::registry::Registry;
use crate::stdin::{Refused, STDIN_QUEUE_LIMIT};
use crate::usage::Usage;

/// The exit code vigild should use after a [`FatalShutdown`]: non-zero, so a
/// container runtime or an outer supervisor sees the failure.
///
/// The daemon awaits [`Handle::fatal_shutdown`] beside its signal handling:
///
/// ```text
/// tokio::select! {
///     _ = terminate.recv() => handle.shutdown().await,          // exit 0
///     fatal = handle.fatal_shutdown() => {                       // already shut down
///         tracing::error!("group '{}' is FATAL: {}", fatal.group, fatal.reason);
///         std::process::exit(vigil_core::FATAL_EXIT_CODE);
///     }
/// }
/// ```
pub const FATAL_EXIT_CODE: i32 = 1;

/// Autostart spawns of one priority in flight at once: one per launcher (they
/// run in parallel), plus two whose command is resolved, environment built and
/// pipes made while the others are in `exec`.
fn autostart_window() -> usize {
    crate::launch::launchers().len() + 2
}

/// A cheap, cloneable handle to a running tree.
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: ActorRef<RootMsg>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) ctx: Arc<Context>,
    pub(crate) settings: Supervisord,
    pub(crate) shutting_down: AtomicBool,
    /// The root's join handle, taken by the first `shutdown`.
    pub(crate) join: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The autostart pass of [`Supervisor::start_in_background`], while it may run.
    pub(crate) autostart: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// [`Handle::begin_handover`] succeeded: a live upgrade is under way.
    pub(crate) handing_over: AtomicBool,
    /// The groups a live upgrade's tree is still resuming (see
    /// [`Handle::resumed`]).
    pub(crate) resuming: std::sync::Mutex<Option<Arc<BuildQueue>>>,
}

/// The processes a namespec names.
pub(crate) struct Targets {
    pub(crate) members: Vec<Arc<ProcessShared>>,
    /// `group:*` or `all`: members in an unsuitable state are skipped silently,
    /// as supervisord's group and "all" calls do.
    many: bool,
}

/// One result per process (keyed by its [`NameSpec::Process`]), or per spec
/// that could not be acted on (keyed by that spec).
pub type Results = Vec<(NameSpec, Result<(), CoreError>)>;

impl Handle {
    /// supervisord's `getProcessInfo` for `spec` (one process, a group or
    /// all), or `getAllProcessInfo` for `None`: sorted by group name, then
    /// process name.
    pub async fn process_info(
        &self,
        spec: Option<&NameSpec>,
    ) -> Result<Vec<ProcessInfo>, CoreError> {
        self.process_info_now(spec)
    }

    /// [`Handle::process_info`], answered on the caller's thread (it reads
    /// published snapshots only).
    pub fn process_info_now(&self, spec: Option<&NameSpec>) -> Result<Vec<ProcessInfo>, CoreError> {
        let members = self.listed(spec)?;
        let now = SystemTime::now();
        Ok(members.iter().map(|member| info_of(member, now)).collect())
    }

    /// What `status` prints for `spec` (all processes for `None`), in
    /// [`Handle::process_info`]'s order and with its descriptions, from the
    /// published snapshots alone.
    pub fn status_rows(&self, spec: Option<&NameSpec>) -> Result<Vec<StatusRow>, CoreError> {
        let members = self.listed(spec)?;
        let now = crate::info::epoch(SystemTime::now());
        Ok(members.iter().map(|member| row_of(member, now)).collect())
    }

    /// The members `spec` names, sorted by group, then name, when it names
    /// them all.
    fn listed(&self, spec: Option<&NameSpec>) -> Result<Vec<Arc<ProcessShared>>, CoreError> {
        match spec {
            None | Some(NameSpec::All) => Ok(self.all_members_by_name()),
            Some(spec) => Ok(self.resolve(spec)?.members),
        }
    }

    /// Every member, sorted by group, then name: the registry keeps the
    /// groups in name order, so only each group's members are sorted.
    fn all_members_by_name(&self) -> Vec<Arc<ProcessShared>> {
        let groups = self.inner.registry.groups();
        let mut members = Vec::with_capacity(groups.iter().map(|group| group.members.len()).sum());
        for group in groups {
            let first = members.len();
            members.extend(group.members.iter().cloned());
            members[first..].sort_by(|a, b| a.config.name.cmp(&b.config.name));
        }
        members
    }

    /// [`Handle::process_info`] with [`ProcessInfo::usage`] filled in: one read of
    /// `/proc/<pid>/stat` per process that has a child, off the async workers
    /// ([`Usage::of_all`]).
    pub async fn process_facts(
        &self,
        spec: Option<&NameSpec>,
    ) -> Result<Vec<ProcessInfo>, CoreError> {
        let mut infos = self.process_info(spec).await?;
        tokio::task::spawn_blocking(move || {
            let pids: Vec<u32> = infos.iter().map(|info| info.pid).collect();
            for (info, usage) in infos.iter_mut().zip(Usage::of_all(&pids)) {
                info.usage = usage;
            }
            infos
        })
        .await
        .map_err(|error| CoreError::Failed(format!("reading /proc: {error}")))
    }

    /// Starts the processes named by `specs`, all concurrently. With `wait`, each
    /// result arrives when its process is RUNNING (`ABNORMAL_TERMINATION` if it
    /// left STARTING otherwise, `SPAWN_ERROR` if it failed to spawn or exited
    /// within `startsecs`). Group specs skip members already running.
    ///
    /// Dependencies (`depends_on`, transitively) that are not running are
    /// started first, in start order; the named processes wait behind the
    /// dependency gate until their conditions hold. Only the named processes
    /// have results.
    pub async fn start(&self, specs: &[NameSpec], wait: bool) -> Results {
        if !self.inner.shutting_down.load(Ordering::SeqCst) {
            self.start_dependencies(specs).await;
        }
        let registry = Arc::clone(&self.inner.registry);
        let bus = self.inner.ctx.bus.clone();
        self.for_each(
            specs,
            |state| !state.is_running(),
            move |member| {
                let registry = Arc::clone(&registry);
                let events = bus.subscribe();
                async move { start_one(member, wait, &registry, events).await }.boxed()
            },
        )
        .await
    }

    /// Stops the processes named by `specs`, all concurrently (supervisord issues
    /// stops in priority order; here they are issued in that order and then run
    /// together). With `wait`, each result arrives when its process is in a
    /// stopped state. Group specs skip members that are not running.
    ///
    /// Dependents of a stopped process (with `restart_dependents`, the default)
    /// are stopped first, deepest first, and wait STARTING until it meets their
    /// condition again (after a `restart` or a later `start`).
    pub async fn stop(&self, specs: &[NameSpec], wait: bool) -> Results {
        let registry = Arc::clone(&self.inner.registry);
        self.for_each(specs, ProcessState::is_running, move |member| {
            let registry = Arc::clone(&registry);
            async move {
                member.held.store(true, Ordering::SeqCst);
                requeue_dependents(&registry, &member, &mut HashSet::new()).await;
                let result = stop_one(Arc::clone(&member), wait).await;
                member.held.store(false, Ordering::SeqCst);
                result
            }
            .boxed()
        })
        .await
    }

    /// Resolves when a group exhausted its restart budget with `on_fatal =
    /// shutdown` and the tree finished its ordered shutdown; pending forever
    /// otherwise. vigild awaits it beside its signals and then exits with
    /// [`FATAL_EXIT_CODE`].
    pub async fn fatal_shutdown(&self) -> FatalShutdown {
        let mut fatal = self.inner.ctx.fatal.subscribe();
        let reason = match fatal.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            // The sender lives as long as this handle: unreachable.
            Err(_) => None,
        };
        let Some(reason) = reason else {
            return futures::future::pending().await;
        };
        self.shutdown().await;
        reason
    }

    /// The escalation that is bringing (or brought) the tree down, if any.
    pub fn fatal(&self) -> Option<FatalShutdown> {
        self.inner.ctx.fatal.borrow().clone()
    }

    /// Starts, in start order, every dependency of the processes named by
    /// `specs` that is not running (the gate then orders the actual spawns).
    async fn start_dependencies(&self, specs: &[NameSpec]) {
        let mut needed: HashSet<String> = HashSet::new();
        let mut queue: Vec<Arc<ProcessShared>> = specs
            .iter()
            .filter_map(|spec| self.resolve(spec).ok())
            .flat_map(|t| t.members)
            .collect();
        while let Some(member) = queue.pop() {
            for dependency in &member.config.depends_on {
                for target in deps::resolve(&self.inner.registry, dependency) {
                    if needed.insert(target.namespec().to_string()) {
                        queue.push(target);
                    }
                }
            }
        }
        if needed.is_empty() {
            return;
        }
        for member in deps::start_order(&self.inner.registry.groups_by_priority()) {
            if needed.contains(member.namespec().as_str()) && member.state().is_stopped() {
                tracing::info!("starting '{}', a dependency", member.namespec());
                let _ = request(&member, ProcessMsg::Start).await;
            }
        }
    }

    /// Sends `signal` to the processes named by `specs` (the pid only, like
    /// supervisord's `signalProcess`). `BAD_SIGNAL` if it is not a signal of
    /// this platform. Group specs skip members that cannot be signalled.
    pub async fn signal(&self, specs: &[NameSpec], signal: Signal) -> Results {
        let sig = signal.number();
        if nix::sys::signal::Signal::try_from(sig).is_err() {
            return specs
                .iter()
                .map(|spec| (spec.clone(), Err(CoreError::BadSignal(sig.to_string()))))
                .collect();
        }
        self.for_each(specs, ProcessState::is_signallable, move |member| {
            async move { request(&member, |reply| ProcessMsg::Signal(sig, reply)).await }.boxed()
        })
        .await
    }

    /// Queues `data` for the stdin of the process `name` names (supervisord's
    /// `sendProcessStdin`) and returns without waiting for the child to read
    /// it: `NOT_RUNNING` without a child or while it is being stopped,
    /// `NO_FILE` if the child closed its stdin, `FAILED` (nothing queued) if
    /// the bytes would take the process's queue beyond [`STDIN_QUEUE_LIMIT`].
    ///
    /// [`STDIN_QUEUE_LIMIT`]: crate::STDIN_QUEUE_LIMIT
    pub async fn send_stdin(&self, name: &NameSpec, data: Vec<u8>) -> Result<(), CoreError> {
        let member = self.single(name)?;
        let snapshot = member.snapshot.borrow().clone();
        if snapshot.pid.is_none() || snapshot.state == ProcessState::Stopping {
            return Err(CoreError::NotRunning(member.namespec().to_string()));
        }
        let slot =
            member.stdin().ok_or_else(|| CoreError::NotRunning(member.namespec().to_string()))?;
        let len = data.len();
        slot.push(data).map_err(|refused| match refused {
            Refused::Closed => CoreError::NoFile(member.namespec().to_string()),
            Refused::Full { queued } => CoreError::Failed(format!(
                "{}: stdin queue full ({queued} bytes not yet read by the process, \
                 {len} more would exceed the limit of {STDIN_QUEUE_LIMIT})",
                member.namespec()
            )),
        })
    }

    /// The log channel of the process `name` names, for reading, tailing and
    /// clearing.
    pub fn log(&self, name: &NameSpec, channel: Channel) -> Result<ChannelLog, CoreError> {
        let member = self.single(name)?;
        Ok(match channel {
            Channel::Stdout => member.stdout.clone(),
            Channel::Stderr => member.stderr.clone(),
        })
    }

    /// Adds a group and starts its `autostart` processes (supervisord's
    /// `addProcessGroup`). `ALREADY_ADDED` if a group of that name exists.
    pub async fn add_group(&self, group: GroupConfig) -> Result<(), CoreError> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(CoreError::ShuttingDown);
        }
        if self.inner.registry.group(&group.name).is_some() {
            return Err(CoreError::AlreadyAdded(group.name));
        }
        let mut group = group;
        let members = build_members(&mut group, &self.inner.settings)?;
        let name = group.name.clone();
        self.add_members(group, members).await?;
        if let Some(entry) = self.inner.registry.group(&name) {
            self.autostart(&[entry]).await;
        }
        Ok(())
    }

    /// Removes a group whose processes are all stopped (supervisord's
    /// `removeProcessGroup`): `BAD_NAME` if unknown, `STILL_RUNNING` otherwise.
    pub async fn remove_group(&self, name: &str) -> Result<(), CoreError> {
        let name = name.to_owned();
        call_root(&self.inner.root, |reply| RootMsg::RemoveGroup { name, reply }).await?
    }

    /// Ordered shutdown (supervisord's SIGTERM handling): no more automatic
    /// starts anywhere, then groups stop one by one in descending priority, each
    /// only after the previous one is fully stopped; then the actors stop. Returns
    /// when everything is down. Calling it again waits for nothing.
    pub async fn shutdown(&self) {
        // No log file is made while the programs stop.
        let _maker = crate::logs::MakerHold::new();
        // Hook (events): SUPERVISOR_STATE_CHANGE_STOPPING, once.
        if !self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            crate::events::publish(&self.inner.ctx.bus, Event::SupervisorStopping);
        }
        // No automatic start after this point: a pass still running stops here.
        if let Some(pass) =
            self.inner.autostart.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            pass.abort();
        }
        let mut join = self.inner.join.lock().await;
        let Some(handle) = join.take() else {
            return;
        };
        let _ = call_root(&self.inner.root, RootMsg::Shutdown).await;
        self.inner.root.stop(Some("shutdown".to_owned()));
        if let Err(error) = handle.await {
            tracing::error!("the root actor ended abnormally: {error}");
        }
        // Every notify socket went with its actor; the directory goes if empty
        // (it only exists if some program uses ready_notify).
        let _ = std::fs::remove_dir(&self.inner.ctx.notify_dir);
    }

    /// Why the tree cannot be handed over to a new image now, if it cannot:
    /// a program has bytes queued for its stdin that it has not read, which
    /// the handover does not carry (the rest of the tree is carried).
    pub fn handover_refusal(&self) -> Option<String> {
        // A listener's stdin carries the pool's envelopes, which the pause
        // of its pool lets finish.
        let groups = self.inner.registry.groups_by_priority();
        let groups = groups.iter().filter(|g| !self.inner.ctx.events.is_listener(&g.config.name));
        groups.flat_map(|group| &group.members).find_map(|member| {
            let queued = member.stdin()?.queued();
            (queued > 0).then(|| {
                format!(
                    "{} has {queued} bytes queued for its stdin that it has not read yet, which \
                     a live upgrade does not carry; try again once it has read them",
                    member.namespec()
                )
            })
        })
    }

    /// The first part of [`Handle::hand_over`], which a daemon may run while
    /// it still serves control calls (they only read and act on process
    /// state, which this leaves alone): refuses, changing nothing, what the
    /// handover cannot carry (see [`Handle::handover_refusal`]) or an event
    /// listener pool that cannot stop sending; then ends the autostart pass
    /// and stops the capture tasks, which write out what they read and give
    /// their pipes back (output meanwhile waits in the pipes), and waits for
    /// them to have ended. After `Ok`
    /// there is no way back: the caller must go on to [`Handle::hand_over`]
    /// and `execve`. Exits are still reaped and handled meanwhile (a
    /// restarted child's pipes are carried like the others).
    pub async fn begin_handover(&self) -> Result<(), CoreError> {
        if let Some(refusal) = self.handover_refusal() {
            return Err(CoreError::Failed(refusal));
        }
        // First, so no envelope is half written when a listener's stdin is
        // handed over with its process.
        self.inner.ctx.events.pause().await.map_err(CoreError::Failed)?;
        self.inner.handing_over.store(true, Ordering::SeqCst);
        if let Some(pass) =
            self.inner.autostart.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            pass.abort();
        }
        crate::logs::stop_captures_for_handover();
        // Their wind-down (the last writes, each pipe out of the poller) is
        // then done before the control servers stop, not in the pause; a
        // capture stuck on a slow disk is waited for by its actor's freeze.
        let _ = tokio::time::timeout(CAPTURES_END, crate::logs::captures_ended()).await;
        Ok(())
    }

    /// A live upgrade: lets every process actor go of its child and returns
    /// their records and pipes (see [`crate::handover`]), in priority order.
    ///
    /// Runs [`Handle::begin_handover`] first unless the caller did (which
    /// may refuse, changing nothing). Then there is no way back for this
    /// image: the caller must `execve` an image that adopts the records (the
    /// same binary if the new one fails). The caller pauses the reaper
    /// ([`crate::Reaper::pause_reaping`]) before this, so no exit is collected
    /// by an image that will not report it.
    pub async fn hand_over(&self) -> Result<crate::handover::Handover, CoreError> {
        if !self.inner.handing_over.load(Ordering::SeqCst) {
            self.begin_handover().await?;
        }
        let events = &self.inner.ctx.events;
        let members = self.all_members();
        // Many actors freeze at once. On a runtime worker: from the daemon's
        // main thread each call woke a worker, and the answer woke it back.
        let freezing = tokio::spawn(async move {
            futures::stream::iter(members)
                .map(|member| async move { freeze(&member).await })
                .buffered(HANDOVER_WINDOW)
                .filter_map(|frozen| async move { frozen })
                .collect::<Vec<_>>()
                .await
        });
        let processes = freezing.await.map_err(|error| {
            CoreError::Failed(format!("freezing the processes failed: {error}"))
        })?;
        // Once no process publishes events any more.
        let (events, mut fds) = events.freeze().await;
        let mut sockets = Vec::new();
        for (socket, fd) in self.inner.ctx.fcgi.carry() {
            sockets.push(socket);
            fds.push(fd);
        }
        Ok(crate::handover::Handover { processes, events, sockets, fds })
    }

    /// State changes of every process, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.ctx.bus.subscribe()
    }

    /// A counter that moves whenever a process's state, pid, health or
    /// dependency wait changes, or a group is added, replaced or removed: what
    /// a live view waits on before it asks for the processes again. Only its
    /// changes mean anything, not its value.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.ctx.changes.subscribe()
    }

    /// Publishes supervisord's `REMOTE_COMMUNICATION` event on the bus
    /// (`sendRemoteCommEvent`); allowed while shutting down.
    pub fn send_comm_event(&self, kind: String, data: String) {
        crate::events::publish(&self.inner.ctx.bus, Event::RemoteCommunication { kind, data });
    }

    /// Whether `shutdown` was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) async fn add_members(
        &self,
        config: GroupConfig,
        members: Vec<Arc<ProcessShared>>,
    ) -> Result<(), CoreError> {
        // Hook (fcgi): bind the group's socket first, so a bad one fails the add.
        let fcgi = &self.inner.ctx.fcgi;
        fcgi.prepare(&config).map_err(|e| CoreError::Failed(e.to_string()))?;
        let name = config.name.clone();
        let added =
            call_root(&self.inner.root, |reply| RootMsg::AddGroup { config, members, reply })
                .await
                .and_then(|added| added);
        if added.is_err() {
            fcgi.remove(&name);
        }
        added
    }

    /// Adds every group of a new tree at once ([`RootMsg::AddGroups`]),
    /// binding the fcgi groups' sockets first. A fresh tree fails with its
    /// first group that cannot start. A tree resuming a live upgrade's
    /// programs (`resuming`) may not: a group that cannot start (a new fcgi
    /// socket's address in use) is logged and left out, and the others go on,
    /// as `update` would add them.
    pub(crate) async fn add_all(
        &self,
        groups: Vec<BuiltGroup>,
        resuming: bool,
    ) -> Result<(), CoreError> {
        self.add_all_then(groups.into_iter().map(Queued::from).collect(), resuming, |_| {}).await
    }

    /// [`Handle::add_all`], calling `queued` with the queue before the root
    /// starts any of it.
    pub(crate) async fn add_all_then(
        &self,
        mut groups: Vec<Queued>,
        resuming: bool,
        queued: impl FnOnce(&Arc<BuildQueue>),
    ) -> Result<(), CoreError> {
        let fcgi = &self.inner.ctx.fcgi;
        let mut prepared: Vec<String> = Vec::new();
        let mut bound = Ok(());
        let mut refused = Vec::new();
        for (at, config) in groups.iter().map(Queued::config).enumerate() {
            match fcgi.prepare(config) {
                Ok(()) => prepared.push(config.name.clone()),
                Err(error) if resuming => {
                    tracing::error!(
                        critical = true,
                        "group '{}' is not started: {error}",
                        config.name
                    );
                    refused.push(at);
                }
                Err(error) => {
                    bound = Err(CoreError::Failed(error.to_string()));
                    break;
                }
            }
        }
        for at in refused.into_iter().rev() {
            groups.remove(at);
        }
        let added = match bound {
            Ok(()) => {
                let queue = Arc::new(BuildQueue::new(groups));
                queued(&queue);
                let added = call_root(&self.inner.root, |reply| RootMsg::AddGroups {
                    groups: Arc::clone(&queue),
                    reply,
                })
                .await
                .and_then(|added| added);
                // A call that never reached the root leaves no waiter behind.
                queue.finish_all();
                added
            }
            Err(error) => Err(error),
        };
        if added.is_err() {
            for name in prepared.iter().filter(|name| self.inner.registry.group(name).is_none()) {
                fcgi.remove(name);
            }
        }
        match added {
            // The root added every group it could.
            Err(error) if resuming => {
                tracing::error!(critical = true, "{error}");
                Ok(())
            }
            added => added,
        }
    }

    /// A live upgrade's groups, added with [`Handle::resumed`] answering
    /// for them meanwhile; `on_resuming` gets the handle once it does. Their
    /// members are built as each group starts ([`Queued::Unbuilt`]).
    pub(crate) async fn resume_groups(
        &self,
        groups: Vec<Queued>,
        on_resuming: Option<Arc<dyn Fn(Handle) + Send + Sync>>,
        hold: Option<watch::Receiver<bool>>,
    ) -> Result<(), CoreError> {
        let added = self
            .add_all_then(groups, true, |queue| {
                if let Some(mut hold) = hold {
                    queue.hold();
                    let queue = Arc::clone(queue);
                    tokio::spawn(async move {
                        let _ = hold.wait_for(|released| *released).await;
                        queue.release();
                    });
                }
                queue.entangle(&self.inner.registry.groups());
                *self.inner.resuming.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(queue));
                if let Some(hook) = on_resuming {
                    hook(self.clone());
                }
            })
            .await;
        *self.inner.resuming.lock().unwrap_or_else(PoisonError::into_inner) = None;
        added
    }

    /// While a live upgrade's tree is being resumed: waits until every group
    /// `specs` name is back in the tree, asking for them before the others
    /// (the request can then act on them while thousands of others are still
    /// resuming). False, at once, when the request must wait for the whole
    /// tree instead: no resume under way, `all`, a name that is not a group
    /// of the resume, or a group that `depends_on` ties to others (starting
    /// or stopping one of its processes reaches them).
    pub async fn resumed(&self, specs: &[NameSpec]) -> bool {
        let queue = self.inner.resuming.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(queue) = queue else { return false };
        let Some(entangled) = queue.entangled() else { return false };
        let mut groups = Vec::with_capacity(specs.len());
        for spec in specs {
            match spec.group() {
                Some(group) if spec != &NameSpec::All && !entangled.contains(group) => {
                    groups.push(group);
                }
                _ => return false,
            }
        }
        let mut finished = queue.finished();
        for group in &groups {
            if self.inner.registry.group(group).is_none() && !queue.hurry(group) {
                return false;
            }
        }
        loop {
            if groups.iter().all(|group| self.inner.registry.group(group).is_some()) {
                return true;
            }
            // A group that will not come (it failed to start): the whole
            // tree's server says how.
            if !groups
                .iter()
                .all(|group| self.inner.registry.group(group).is_some() || queue.hurry(group))
            {
                return false;
            }
            if finished.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Whether the tree has the group `name` (a live upgrade's tree may have
    /// left out one that could not start, see `add_all`).
    pub fn has_group(&self, name: &str) -> bool {
        self.inner.registry.group(name).is_some()
    }

    /// Autostart in priority order, without waiting for RUNNING: each call returns
    /// once that process's spawn was attempted. Processes of one priority (group
    /// priority and process priority both equal) are started up to
    /// [`autostart_window`] at a time, so spawns run on every launcher and the
    /// next ones are prepared meanwhile; a higher priority number starts only after every spawn of
    /// the lower one was attempted.
    pub(crate) async fn autostart(&self, groups: &[Arc<GroupEntry>]) {
        // The missing log files are made once every spawn was attempted.
        let _maker = crate::logs::MakerHold::new();
        let group_priority: HashMap<&str, i32> = groups
            .iter()
            .map(|group| (group.config.name.as_str(), group.config.priority))
            .collect();
        let rank = |member: &Arc<ProcessShared>| {
            (group_priority.get(member.config.group.as_str()).copied(), member.config.priority)
        };
        let order = deps::start_order(groups);
        for level in order.chunk_by(|a, b| rank(a) == rank(b)) {
            futures::stream::iter(level)
                .for_each_concurrent(autostart_window(), |member| async move {
                    if let Some(actor) = member.actor() {
                        let _ = actor.call(ProcessMsg::Autostart, None).await;
                    }
                })
                .await;
        }
    }

    fn all_members(&self) -> Vec<Arc<ProcessShared>> {
        self.inner
            .registry
            .groups_by_priority()
            .iter()
            .flat_map(|group| group.members.iter().cloned())
            .collect()
    }

    /// supervisord's `_getGroupAndProcess`, plus `all`. `BAD_NAME` carries the
    /// spec as [`NameSpec`] spells it.
    pub(crate) fn resolve(&self, spec: &NameSpec) -> Result<Targets, CoreError> {
        let (group_name, process_name) = match spec {
            NameSpec::All => return Ok(Targets { members: self.all_members(), many: true }),
            NameSpec::Group(group) => (group, None),
            NameSpec::Process { group, name } => (group, Some(name)),
        };
        let bad_name = || CoreError::BadName(spec.to_string());
        let group = self.inner.registry.group(group_name).ok_or_else(bad_name)?;
        match process_name {
            None => Ok(Targets { members: group.members.clone(), many: true }),
            Some(name) => {
                let member = group
                    .members
                    .iter()
                    .find(|member| member.config.name == *name)
                    .ok_or_else(bad_name)?;
                Ok(Targets { members: vec![Arc::clone(member)], many: false })
            }
        }
    }

    /// Resolves a spec that must name exactly one process.
    fn single(&self, name: &NameSpec) -> Result<Arc<ProcessShared>, CoreError> {
        let targets = self.resolve(name)?;
        match (targets.many, targets.members.as_slice()) {
            (false, [member]) => Ok(Arc::clone(member)),
            _ => Err(CoreError::BadName(name.to_string())),
        }
    }

    /// Runs `operation` on every process named by `specs` concurrently. Group
    /// specs keep only members whose state passes `eligible`. A process named
    /// twice is acted on once.
    async fn for_each(
        &self,
        specs: &[NameSpec],
        eligible: fn(ProcessState) -> bool,
        operation: impl Fn(Arc<ProcessShared>) -> BoxFuture<'static, Result<(), CoreError>>,
    ) -> Results {
        let shutting_down = self.inner.shutting_down.load(Ordering::SeqCst);
        let mut seen = HashSet::new();
        let mut jobs: Vec<BoxFuture<'static, (NameSpec, Result<(), CoreError>)>> = Vec::new();
        for spec in specs {
            if shutting_down {
                jobs.push(
                    futures::future::ready((spec.clone(), Err(CoreError::ShuttingDown))).boxed(),
                );
                continue;
            }
            match self.resolve(spec) {
                Err(error) => jobs.push(futures::future::ready((spec.clone(), Err(error))).boxed()),
                Ok(targets) => {
                    for member in targets.members {
                        if targets.many && !eligible(member.state()) {
                            continue;
                        }
                        if !seen.insert(member.namespec().clone()) {
                            continue;
                        }
                        let namespec = NameSpec::process(
                            member.config.group.clone(),
                            member.config.name.clone(),
                        );
                        let job = operation(member);
                        jobs.push(async move { (namespec, job.await) }.boxed());
                    }
                }
            }
        }
        futures::future::join_all(jobs).await
    }
}

fn info_of(member: &ProcessShared, now: SystemTime) -> ProcessInfo {
    let snapshot = member.snapshot.borrow();
    let mut info = ProcessInfo::new(&member.labels, &snapshot, now);
    crate::output::describe_log_problems(member, &mut info.description);
    info.complete(
        member.config.autostart,
        snapshot.completed_successfully(&member.config),
        crate::info::Counts {
            spawns: member.spawns.load(Ordering::Relaxed),
            last_exit: member.last_exit(),
            oom_killed: member.last_exit_oom.load(Ordering::Relaxed),
            stdout_bytes: member.stdout.total(),
            stderr_bytes: member.stderr.total(),
        },
    );
    info
}

/// [`info_of`]'s names, state and description alone.
fn row_of(member: &ProcessShared, now: i64) -> StatusRow {
    let snapshot = member.snapshot.borrow();
    let mut description = snapshot.description(&member.labels.name, now);
    crate::output::describe_log_problems(member, &mut description);
    let oom_killed = member.last_exit_oom.load(Ordering::Relaxed);
    if let Some(note) = crate::info::oom_note(snapshot.state, member.last_exit(), oom_killed) {
        description.push_str(note);
    }
    StatusRow {
        name: member.labels.name.clone(),
        group: member.labels.group.clone(),
        state: snapshot.state,
        description,
    }
}

/// Sends a request to a process actor and returns its answer.
async fn request(
    member: &ProcessShared,
    message: impl FnOnce(RpcReplyPort<Result<(), CoreError>>) -> ProcessMsg,
) -> Result<(), CoreError> {
    let unavailable =
        || CoreError::Failed(format!("{}: process actor unavailable", member.namespec()));
    let actor = member.actor().ok_or_else(unavailable)?;
    match actor.call(message, None).await {
        Ok(CallResult::Success(result)) => result,
        _ => Err(unavailable()),
    }
}

/// Freezes one member for a live upgrade (see [`Handle::hand_over`]); `None`,
/// logged, when it cannot be.
async fn freeze(member: &ProcessShared) -> Option<crate::handover::Frozen> {
    let actor = member.actor()?;
    // An exit collected just before the reaper paused is applied first; a
    // restart it causes is then the child carried.
    let mut tries = 0;
    loop {
        let why = match actor.call(ProcessMsg::Handover, Some(HANDOVER_CALL)).await {
            Ok(CallResult::Success(Ok(record))) => return Some(record),
            Ok(CallResult::Success(Err(message)))
                if message == crate::process::RETRY_FREEZE && tries < HANDOVER_RETRIES =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
            Ok(CallResult::Success(Err(message))) => message,
            Ok(CallResult::Timeout) => "no answer".to_owned(),
            Ok(CallResult::SenderError) | Err(_) => "its actor is gone".to_owned(),
        };
        tracing::error!(
            critical = true,
            "{} is not carried by the upgrade: {why}",
            member.namespec()
        );
        return None;
    }
}

/// How long [`Handle::begin_handover`] waits for the capture tasks to end.
const CAPTURES_END: std::time::Duration = std::time::Duration::from_secs(2);

/// How many process actors freeze at once in a live upgrade.
const HANDOVER_WINDOW: usize = 64;
/// How long one process actor may take to freeze for a live upgrade.
const HANDOVER_CALL: std::time::Duration = std::time::Duration::from_secs(5);
/// How many times a freeze is asked again while an exit is being applied.
const HANDOVER_RETRIES: u32 = 400;

pub(crate) async fn call_root<T: Send + 'static>(
    root: &ActorRef<RootMsg>,
    message: impl FnOnce(RpcReplyPort<T>) -> RootMsg,
) -> Result<T, CoreError> {
    match root.call(message, None).await {
        Ok(CallResult::Success(value)) => Ok(value),
        _ => Err(CoreError::ShuttingDown),
    }
}

/// `startProcess` for one process, with supervisord's `wait` semantics. A
/// process waiting for its dependencies fails the wait (`FAILED`) once one of
/// them is FATAL, rather than waiting for a user's action.
async fn start_one(
    member: Arc<ProcessShared>,
    wait: bool,
    registry: &Registry,
    mut events: broadcast::Receiver<Arc<Event>>,
) -> Result<(), CoreError> {
    let mut snapshot = member.snapshot.subscribe();
    request(&member, ProcessMsg::Start).await?;
    if !wait {
        return Ok(());
    }
    let mut bus_open = true;
    loop {
        let waiting = {
            let current = snapshot.borrow_and_update();
            if current.spawnerr.is_some() {
                return Err(CoreError::SpawnError(member.namespec().to_string()));
            }
            match current.state {
                ProcessState::Running => return Ok(()),
                ProcessState::Starting => {}
                _ => return Err(CoreError::AbnormalTermination(member.namespec().to_string())),
            }
            !current.waiting_for.is_empty()
        };
        if waiting && let Some(dependency) = deps::hopeless(registry, &member.config) {
            return Err(CoreError::Failed(format!(
                "{}: dependency {dependency} is FATAL",
                member.namespec()
            )));
        }
        tokio::select! {
            changed = snapshot.changed() => {
                if changed.is_err() {
                    return Err(CoreError::Failed(format!("{}: process removed", member.namespec())));
                }
            }
            // Any state change elsewhere may make a dependency hopeless.
            received = events.recv(), if waiting && bus_open => {
                bus_open = !matches!(received, Err(broadcast::error::RecvError::Closed));
            }
        }
    }
}

/// Stops the active dependents of `member` that follow it
/// (`restart_dependents`), deepest first, and waits until none has a child;
/// each then waits behind its dependency gate.
fn requeue_dependents<'a>(
    registry: &'a Arc<Registry>,
    member: &'a ProcessShared,
    seen: &'a mut HashSet<String>,
) -> BoxFuture<'a, ()> {
    async move {
        for dependent in deps::dependents(registry, member) {
            if !dependent.config.restart_dependents
                || !seen.insert(dependent.namespec().to_string())
                || !matches!(
                    dependent.state(),
                    ProcessState::Starting | ProcessState::Running | ProcessState::Backoff
                )
            {
                continue;
            }
            dependent.held.store(true, Ordering::SeqCst);
            requeue_dependents(registry, &dependent, seen).await;
            let mut snapshot = dependent.snapshot.subscribe();
            if let Some(actor) = dependent.actor() {
                let _ = actor.cast(ProcessMsg::DependencyLost);
                let _ = snapshot
                    .wait_for(|s| s.pid.is_none() && s.state != ProcessState::Stopping)
                    .await;
            }
            dependent.held.store(false, Ordering::SeqCst);
        }
    }
    .boxed()
}

/// `stopProcess` for one process, with supervisord's `wait` semantics.
async fn stop_one(member: Arc<ProcessShared>, wait: bool) -> Result<(), CoreError> {
    let mut snapshot = member.snapshot.subscribe();
    request(&member, ProcessMsg::Stop).await?;
    if wait && snapshot.wait_for(|s| s.state.is_stopped()).await.is_err() {
        return Err(CoreError::Failed(format!("{}: process removed", member.namespec())));
    }
    Ok(())
}
