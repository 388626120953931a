//! [`ProcessActor`]: the actor that owns one process instance.
//!
//! It holds one [`vigil_config::ProcessConfig`] and at most one OS child at a
//! time, feeds every input through the pure [`Lifecycle`] and carries out the
//! [`Effect`]s it returns: spawning through a [`Spawner`] (the reaper in
//! production, a fake in tests), timers through `tokio::time` messages back to
//! itself, signals through the reaper (which never signals a pid it has
//! already reaped).
//!
//! Nothing here awaits a child or sleeps inside a handler: ractor handles stop
//! and supervision requests only between messages, so a long await in a handler
//! would hold them up, and a parent stopping it would time out and kill it
//! without `post_stop`. Instead the exit of a child is awaited by a small task
//! that sends [`ProcessMsg::Exited`] back, tagged with the spawn generation so a
//! late message about an earlier child is ignored.
//!
//! Vigil's extensions meet here too: every automatic restart the lifecycle
//! wants is admitted by the group's [`Budget`] (synchronously for one_for_one,
//! through the group for one_for_all / rest_for_one deaths); a spawn of a
//! process with `depends_on` waits behind the dependency gate ([`crate::deps`]);
//! probe tasks ([`crate::probe`]), the notify socket ([`crate::notify`]) and the
//! `ready_log` line matcher turn into lifecycle events.
//!
//! State that must outlive the actor (its published status, its log channels, the
//! stdin writer) lives in [`ProcessShared`], kept by the group and handed to a
//! rebuilt actor after a panic. If the actor dies without running `post_stop`
//! (panic or kill), the [`ChildGuard`] in its state SIGKILLs the child's process
//! group when the state is dropped, so no OS process outlives its owner.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::os::fd::AsRawFd as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use vigil_config::{ProbeKind, Strategy};

use crate::budget::Budget;
use crate::cgroup::ProcessCgroup;
use crate::context::Context;
use crate::deps;
use crate::error::CoreError;
use crate::events::{Event as BusEvent, ProcessStateEvent};
use crate::handover::{self, Adoptable, CarriedProbe, CarriedProcess, CarriedTimer, Frozen};
use crate::info::{Health, Snapshot};
use crate::lifecycle::{
    CarriedExit, Effect, Event, Level, Lifecycle, ProcessState, Refusal, RestartCause,
    SignalPurpose, Timer, TimerKind,
};
use crate::logs::Channel;
use crate::messages::{GroupMsg, GroupRef, ProcessMsg, ProcessShared, Verdict};
use crate::notify::NotifySocket;
use crate::probe::{self, ProbeEnv};
use crate::spawn::{
    ChildEnv, SpawnError, SpawnFault, SpawnSpec, SpawnUser, child_environment, resolve_command,
    search_path,
};
use crate::spawner::{Spawner, kill_orphan};

/// Arguments of a [`ProcessActor`].
pub(crate) struct ProcessArgs {
    pub(crate) shared: Arc<ProcessShared>,
    pub(crate) ctx: Arc<Context>,
    /// Start at once: this actor replaces one that failed while its process was
    /// meant to be running.
    pub(crate) resume: bool,
    /// The group supervising this process, its strategy and restart budget.
    /// The process names itself to the group by its shared record, not by a
    /// position, because `update` may reorder the members.
    pub(crate) group: GroupRef,
    pub(crate) strategy: Strategy,
    pub(crate) budget: Arc<Budget>,
}

/// Kills the current child's process group when dropped with a child still
/// registered: runs when the actor's state is dropped after a panic or a kill,
/// where `post_stop` is skipped.
pub(crate) struct ChildGuard {
    spawner: Arc<dyn Spawner>,
    namespec: smol_str::SmolStr,
    pid: Option<u32>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            tracing::warn!(
                "killing orphaned child of '{}' (pid {}) with SIGKILL",
                self.namespec,
                pid
            );
            kill_orphan(self.spawner.as_ref(), pid);
        }
    }
}

/// The actor; stateless itself, all state is in [`ProcessActorState`].
pub(crate) struct ProcessActor;

pub(crate) struct ProcessActorState {
    shared: Arc<ProcessShared>,
    ctx: Arc<Context>,
    lifecycle: Lifecycle,
    guard: ChildGuard,
    /// Incremented per successful spawn; tags exit messages.
    generation: u64,
    /// The pid of the latest child, for state events after it is gone.
    last_pid: Option<u32>,
    start_wall: Option<SystemTime>,
    stop_wall: Option<SystemTime>,
    /// The pending timer task of each kind, aborted when re-armed or on stop.
    timers: HashMap<TimerKind, (u64, TimerTask, tokio::time::Instant)>,
    /// Start once running (see [`ProcessArgs::resume`]).
    resume: bool,
    group: GroupRef,
    strategy: Strategy,
    budget: Arc<Budget>,
    /// The dependency monitor task, for a process with `depends_on`.
    monitor: Option<JoinHandle<()>>,
    /// Whether the dependencies were all met at the last check.
    deps_met: bool,
    /// [`deps::fingerprint`] when they were last met.
    deps_print: Vec<Option<u32>>,
    /// What a waiting process waits for, as published.
    waiting_for: Vec<String>,
    /// The probes' state, for a process that has any.
    probes: Option<Box<Probes>>,
    /// The probes' verdict on the current child.
    health: Health,
    /// `memory_restart_threshold`: the watch on the current child's group.
    memory_watch: Option<JoinHandle<()>>,
    /// The exit being applied was the OOM killer's, for its state events.
    exit_oom: bool,
    /// The current child's capture tasks, which a live upgrade stops to take
    /// their pipes back.
    captures: Vec<(Channel, crate::output::Capture)>,
    /// Handed over to the next image of a live upgrade: the actor no longer
    /// owns its child and acts on nothing.
    frozen: bool,
    /// The process's control group, made at its first spawn; dropped (and so
    /// removed) with the actor's state, after the guard killed any child.
    cgroup: Option<Arc<ProcessCgroup>>,
}

type TimerTask = JoinHandle<Result<(), ractor::MessagingErr<ProcessMsg>>>;

/// What a process with a readiness or liveness probe keeps for them. Boxed
/// in its state, which lives as long as its actor: most programs have no
/// probe and pay one pointer.
#[derive(Default)]
struct Probes {
    /// `ready_notify`: the socket whose path the child gets in NOTIFY_SOCKET.
    notify: Option<NotifySocket>,
    /// `ready_log`: the pattern, or why it is unusable.
    log_pattern: Option<Result<regex::Regex, String>>,
    /// Probe tasks of the current child, tagged with its generation.
    readiness_task: Option<(u64, JoinHandle<()>, probe::SharedProgress)>,
    liveness_task: Option<(u64, JoinHandle<()>, probe::SharedProgress)>,
    /// Where the probes of an adopted child were (a live upgrade), for the
    /// tasks started for it: readiness, then liveness.
    carried: [Option<probe::Resume>; 2],
}

/// [`ProcessActorState::freeze`]'s refusal while an exit is on its way.
pub(crate) const RETRY_FREEZE: &str = "an exit is being applied; ask again";

/// What a request's step produced, for the reply.
#[derive(Default)]
struct Outcome {
    refusal: Option<Refusal>,
    signal_error: Option<String>,
}

impl Actor for ProcessActor {
    type Msg = ProcessMsg;
    type State = ProcessActorState;
    type Arguments = ProcessArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProcessMsg>,
        args: ProcessArgs,
    ) -> Result<ProcessActorState, ActorProcessingErr> {
        let ProcessArgs { shared, ctx, resume, group, strategy, budget } = args;
        // Jitter only needs to differ between processes and runs.
        let seed = std::collections::hash_map::RandomState::new().hash_one(shared.namespec());
        let lifecycle = Lifecycle::new(shared.lifecycle_config(), seed);
        let previous = shared.snapshot.borrow().clone();
        let readiness = shared.config.readiness.as_ref().map(|probe| &probe.kind);
        let notify = match readiness {
            Some(ProbeKind::Notify) => {
                match NotifySocket::bind(
                    &ctx.notify_dir,
                    shared.config.user.is_some(),
                    myself.clone(),
                ) {
                    Ok(socket) => Some(socket),
                    Err(error) => {
                        tracing::error!(
                            "{}: cannot create its notify socket in {}: {error}",
                            shared.namespec(),
                            ctx.notify_dir.display()
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let log_pattern = match readiness {
            Some(ProbeKind::Log { pattern }) => {
                Some(regex::Regex::new(pattern).map_err(|e| format!("bad ready_log pattern: {e}")))
            }
            _ => None,
        };
        let probes = (shared.config.readiness.is_some() || shared.config.liveness.is_some())
            .then(|| Box::new(Probes { notify, log_pattern, ..Probes::default() }));
        *shared.actor.write().unwrap_or_else(PoisonError::into_inner) = Some(myself.clone());
        let mut state = ProcessActorState {
            guard: ChildGuard {
                spawner: Arc::clone(&ctx.spawner),
                namespec: shared.namespec().clone(),
                pid: None,
            },
            shared,
            ctx,
            lifecycle,
            generation: 0,
            last_pid: previous.pid,
            start_wall: previous.start,
            stop_wall: previous.stop,
            timers: HashMap::new(),
            resume,
            group,
            strategy,
            budget,
            monitor: None,
            deps_met: false,
            deps_print: Vec::new(),
            waiting_for: Vec::new(),
            probes,
            health: Health::Unknown,
            memory_watch: None,
            exit_oom: false,
            cgroup: None,
            captures: Vec::new(),
            frozen: false,
        };
        // In `pre_start`, so every record is claimed once the tree is built
        // (the daemon then stops the children of programs no longer there).
        if let Some(adoptable) = crate::handover::claim(state.shared.namespec()) {
            state.resume = false;
            state.adopt(&myself, adoptable);
        }
        state.publish();
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<ProcessMsg>,
        state: &mut ProcessActorState,
    ) -> Result<(), ActorProcessingErr> {
        if !state.shared.config.depends_on.is_empty() {
            state.monitor = Some(deps::spawn_monitor(
                Arc::clone(&state.ctx.registry),
                Arc::clone(&state.shared.config),
                myself.clone(),
            ));
        }
        if std::mem::take(&mut state.resume) {
            tracing::warn!("restarting '{}' after its actor was rebuilt", state.shared.namespec());
            state.apply(&myself, Event::StartRequested);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProcessMsg>,
        message: ProcessMsg,
        state: &mut ProcessActorState,
    ) -> Result<(), ActorProcessingErr> {
        if state.frozen {
            // The next image owns the process now; requests get an answer.
            let refused = || CoreError::Failed("vigild is being upgraded".to_owned());
            match message {
                ProcessMsg::Start(reply) | ProcessMsg::Stop(reply) => {
                    let _ = reply.send(Err(refused()));
                }
                ProcessMsg::Signal(_, reply) => {
                    let _ = reply.send(Err(refused()));
                }
                ProcessMsg::Autostart(reply) => {
                    let _ = reply.send(());
                }
                ProcessMsg::Handover(reply) => {
                    let _ = reply.send(Err("handed over already".to_owned()));
                }
                _ => {}
            }
            return Ok(());
        }
        match message {
            ProcessMsg::Handover(reply) => {
                // Boxed: `handle`'s future lives in the actor's boxed loop for
                // the actor's whole life, and this is its only await.
                let frozen = Box::pin(state.freeze()).await;
                let _ = reply.send(frozen);
            }
            ProcessMsg::Start(reply) => {
                let result = state.start(&myself);
                let _ = reply.send(result);
            }
            ProcessMsg::Stop(reply) => {
                let outcome = state.apply(&myself, Event::StopRequested);
                let _ = reply.send(state.reply(outcome));
            }
            ProcessMsg::Signal(sig, reply) => {
                let outcome = state.apply(&myself, Event::SignalRequested { sig });
                let _ = reply.send(state.reply(outcome));
            }
            ProcessMsg::Autostart(reply) => {
                state.apply(&myself, Event::Autostart);
                let _ = reply.send(());
            }
            ProcessMsg::DaemonShuttingDown => {
                state.apply(&myself, Event::DaemonShuttingDown);
            }
            ProcessMsg::Shutdown => {
                state.apply(&myself, Event::ShutdownRequested);
            }
            ProcessMsg::Policy { strategy, budget } => {
                state.strategy = strategy;
                state.budget = budget;
            }
            ProcessMsg::Retune(config) => {
                *state.shared.retuned.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(config.clone());
                state.lifecycle.retune(*config);
            }
            ProcessMsg::Exited { generation, pid, status, oom_killed } => {
                if generation == state.generation && state.guard.pid == Some(pid) {
                    state.guard.pid = None;
                    state.shared.child.store(0, Ordering::SeqCst);
                    state.shared.set_stdin(None);
                    state.stop_wall = Some(SystemTime::now());
                    state.shared.record_exit(status, oom_killed);
                    if let Some(watch) = state.memory_watch.take() {
                        watch.abort();
                    }
                    if oom_killed {
                        let what = if status.signal() == Some(libc::SIGKILL) {
                            "killed by the kernel OOM killer"
                        } else {
                            "the kernel OOM killer acted in its control group"
                        };
                        tracing::warn!(
                            "{} (pid {pid}, {}): {what} at its memory_max",
                            state.shared.namespec(),
                            status.describe()
                        );
                    }
                    // Before the exit is applied, which may start the next child
                    // in the same group.
                    if state.lifecycle.state() == ProcessState::Stopping {
                        state.kill_leftovers();
                    }
                    state.exit_oom = oom_killed;
                    state.apply(&myself, Event::Exited { pid, status });
                    state.exit_oom = false;
                }
            }
            ProcessMsg::MemoryThreshold { generation, usage } => {
                if generation == state.generation && state.guard.pid.is_some() {
                    tracing::warn!(
                        "{} uses {usage} bytes, above its memory_restart_threshold ({})",
                        state.shared.namespec(),
                        state
                            .shared
                            .config
                            .cgroup
                            .and_then(|c| c.memory_restart_threshold)
                            .unwrap_or_default()
                    );
                    state.apply(&myself, Event::MemoryThresholdPassed);
                }
            }
            ProcessMsg::Timer(timer) => {
                if state.timers.get(&timer.kind).is_some_and(|(token, ..)| *token == timer.token) {
                    state.timers.remove(&timer.kind);
                    // A settled program arms no timer: give the table back
                    // rather than keep it for the program's life.
                    if state.timers.is_empty() {
                        state.timers = HashMap::new();
                    }
                }
                state.apply(&myself, Event::Timer(timer));
            }
            ProcessMsg::DepsChanged => state.deps_changed(&myself),
            ProcessMsg::DependencyLost => {
                state.apply(&myself, Event::DependencyLost);
            }
            ProcessMsg::Probe { generation, verdict } => {
                if generation == state.generation {
                    state.verdict(&myself, verdict);
                }
            }
            ProcessMsg::Notified => {
                if state.lifecycle.state() == ProcessState::Starting
                    && state.lifecycle.pid().is_some()
                {
                    state.verdict(&myself, Verdict::ReadinessPassed);
                }
            }
            ProcessMsg::RestartApproved => {
                state.apply(&myself, Event::RestartApproved);
            }
            ProcessMsg::RestartDenied => {
                state.apply(&myself, Event::RestartDenied);
            }
            ProcessMsg::GroupFatal => {
                state.apply(&myself, Event::GroupFatal);
            }
            #[cfg(test)]
            ProcessMsg::Crash => panic!("crash requested by a test"),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ProcessMsg>,
        state: &mut ProcessActorState,
    ) -> Result<(), ActorProcessingErr> {
        for (_, (_, task, _)) in state.timers.drain() {
            task.abort();
        }
        state.stop_probes();
        if let Some(watch) = state.memory_watch.take() {
            watch.abort();
        }
        if let Some(monitor) = state.monitor.take() {
            monitor.abort();
        }
        // A child still present here is killed by the guard when the state drops.
        // Whoever waits on this member's state (a stop, a restart) must not wait
        // for an actor that is gone: its last word is that nothing runs.
        state.shared.snapshot.send_if_modified(|snapshot| {
            if snapshot.state.is_stopped() {
                return false;
            }
            snapshot.state = ProcessState::Stopped;
            snapshot.pid = None;
            true
        });
        Ok(())
    }
}

impl ProcessActorState {
    /// `startProcess`: check the command first (NO_FILE / NOT_EXECUTABLE), then
    /// the state, then spawn.
    fn start(&mut self, myself: &ActorRef<ProcessMsg>) -> Result<(), CoreError> {
        if let Err(error) = self.resolve_argv() {
            match error.fault() {
                SpawnFault::NoFile => return Err(CoreError::NoFile(error.to_string())),
                SpawnFault::NotExecutable => {
                    return Err(CoreError::NotExecutable(error.to_string()));
                }
                SpawnFault::SpawnError => {}
            }
        }
        let outcome = self.apply(myself, Event::StartRequested);
        if outcome.refusal.is_some() {
            return self.reply(outcome);
        }
        if self.lifecycle.pid().is_none() && self.lifecycle.spawnerr().is_some() {
            return Err(CoreError::SpawnError(self.shared.namespec().to_string()));
        }
        Ok(())
    }

    fn reply(&self, outcome: Outcome) -> Result<(), CoreError> {
        let namespec = self.shared.namespec().to_string();
        if let Some(error) = outcome.signal_error {
            return Err(CoreError::Failed(error));
        }
        match outcome.refusal {
            None => Ok(()),
            Some(Refusal::AlreadyStarted) => Err(CoreError::AlreadyStarted(namespec)),
            Some(Refusal::NotRunning) => Err(CoreError::NotRunning(namespec)),
            Some(Refusal::UnknownState) => {
                Err(CoreError::Failed(format!("{namespec} is in an unknown state")))
            }
            Some(Refusal::Stopping) => Err(CoreError::Failed(format!("{namespec} is stopping"))),
            Some(Refusal::ShuttingDown) => Err(CoreError::ShuttingDown),
        }
    }

    fn env(&self) -> ChildEnv {
        let config = &self.shared.config;
        let server_url = config.serverurl.as_deref().or(self.ctx.server_url.as_deref());
        let mut env = child_environment(
            &self.ctx.daemon_env,
            &self.ctx.global_env.read().unwrap_or_else(PoisonError::into_inner),
            config.env_file_vars.vars(),
            &config.environment,
            &config.name,
            &config.group,
            server_url,
        );
        if let Some(notify) = self.probes.as_ref().and_then(|probes| probes.notify.as_ref()) {
            env.set("NOTIFY_SOCKET".to_owned(), notify.path().display().to_string());
        }
        env
    }

    /// Re-checks the dependencies after the monitor saw a change.
    fn deps_changed(&mut self, myself: &ActorRef<ProcessMsg>) {
        let unmet = deps::unmet(&self.ctx.registry, &self.shared.config);
        let was_met = std::mem::replace(&mut self.deps_met, unmet.is_empty());
        let mut restarted = false;
        if unmet.is_empty() {
            let print = deps::fingerprint(&self.ctx.registry, &self.shared.config);
            restarted = was_met && print != self.deps_print;
            self.deps_print = print;
        }
        if self.lifecycle.is_waiting() {
            if unmet.is_empty() {
                self.apply(myself, Event::DependenciesMet);
            } else {
                self.waiting_for = unmet;
                self.publish();
            }
        } else if was_met
            && (restarted || !unmet.is_empty())
            && self.shared.config.restart_dependents
        {
            self.apply(myself, Event::DependencyLost);
        }
    }

    fn verdict(&mut self, myself: &ActorRef<ProcessMsg>, verdict: Verdict) {
        match verdict {
            Verdict::ReadinessPassed => {
                self.health = Health::Healthy;
                self.apply(myself, Event::ReadinessPassed);
            }
            Verdict::ReadinessFailed => {
                self.apply(myself, Event::ReadinessFailed);
            }
            Verdict::Alive => {
                self.health = Health::Healthy;
                self.publish();
            }
            Verdict::Unwell => {
                self.health = Health::Unhealthy;
                self.publish();
            }
            Verdict::LivenessFailed => {
                self.health = Health::Unhealthy;
                self.apply(myself, Event::LivenessFailed);
            }
        }
    }

    /// Asks for an automatic restart: the budget decides at once for
    /// one_for_one and for start retries; a death in a one_for_all or
    /// rest_for_one group goes to the group, which restarts the members concerned.
    fn restart_wanted(&mut self, cause: RestartCause) -> Option<Event> {
        if cause == RestartCause::Retry || self.strategy == Strategy::OneForOne {
            if self.budget.admit(tokio::time::Instant::now()) {
                Some(Event::RestartApproved)
            } else {
                let member = Arc::clone(&self.shared);
                self.group.cast(GroupMsg::BudgetExhausted { member });
                Some(Event::RestartDenied)
            }
        } else {
            self.group.cast(GroupMsg::MemberDied { member: Arc::clone(&self.shared) });
            None
        }
    }

    fn probe_env(&self, probe: &vigil_config::Probe) -> ProbeEnv {
        let argv = match &probe.kind {
            ProbeKind::Exec { command } => {
                resolve_command(command, self.search_path().as_deref()).ok()
            }
            _ => None,
        };
        ProbeEnv {
            spawner: Arc::clone(&self.ctx.spawner),
            env: self.env(),
            cwd: self.shared.config.directory.clone(),
            user: self.shared.config.user.as_ref().and_then(|user| SpawnUser::resolve(user).ok()),
            argv,
        }
    }

    /// Starts the probe tasks the current state calls for and ends the others.
    fn reconcile_probes(&mut self, myself: &ActorRef<ProcessMsg>) {
        // Out of `self` while the tasks are started, which read `self`.
        let Some(mut probes) = self.probes.take() else { return };
        self.reconcile_probe_tasks(&mut probes, myself);
        self.probes = Some(probes);
    }

    fn reconcile_probe_tasks(&self, probes: &mut Probes, myself: &ActorRef<ProcessMsg>) {
        let state = self.lifecycle.state();
        let has_child = self.lifecycle.pid().is_some() && !self.lifecycle.is_killing();
        let generation = self.generation;
        let config = &self.shared.config;
        let want_readiness = has_child && state == ProcessState::Starting;
        match (&probes.readiness_task, want_readiness) {
            (Some((tagged, ..)), true) if *tagged == generation => {}
            (_, true) => {
                if let Some((_, task, _)) = probes.readiness_task.take() {
                    task.abort();
                }
                if let Some(probe) = config.readiness.as_ref().filter(|p| probe::is_polled(p)) {
                    let (task, progress) = probe::spawn_readiness(
                        vigil_config::Probe::clone(probe),
                        self.probe_env(probe),
                        myself.clone(),
                        generation,
                        probes.carried[0].take(),
                    );
                    probes.readiness_task = Some((generation, task, progress));
                }
            }
            (_, false) => {
                if let Some((_, task, _)) = probes.readiness_task.take() {
                    task.abort();
                }
            }
        }
        let config = &self.shared.config;
        let want_liveness = has_child && state == ProcessState::Running;
        match (&probes.liveness_task, want_liveness) {
            (Some((tagged, ..)), true) if *tagged == generation => {}
            (_, true) => {
                if let Some(probe) = config.liveness.as_ref() {
                    let (task, progress) = probe::spawn_liveness(
                        vigil_config::Probe::clone(probe),
                        self.probe_env(probe),
                        myself.clone(),
                        generation,
                        probes.carried[1].take(),
                    );
                    probes.liveness_task = Some((generation, task, progress));
                }
            }
            (_, false) => {
                if let Some((_, task, _)) = probes.liveness_task.take() {
                    task.abort();
                }
            }
        }
        // Carried progress a task did not take belongs to no child now.
        probes.carried = [None, None];
    }

    fn stop_probes(&mut self) {
        let Some(probes) = self.probes.as_deref_mut() else { return };
        for (_, task, _) in
            [probes.readiness_task.take(), probes.liveness_task.take()].into_iter().flatten()
        {
            task.abort();
        }
    }

    /// Where the current child's probe tasks are, for a live upgrade.
    fn carry_probes(&self) -> Vec<CarriedProbe> {
        let Some(probes) = self.probes.as_deref() else { return Vec::new() };
        [(&probes.readiness_task, false), (&probes.liveness_task, true)]
            .into_iter()
            .filter_map(|(task, liveness)| {
                let (tagged, task, progress) = task.as_ref()?;
                // A task that ended gave its verdict; nothing to go on with.
                if *tagged != self.generation || task.is_finished() {
                    return None;
                }
                let resume = probe::Resume::of(progress);
                Some(CarriedProbe {
                    liveness,
                    failures: resume.failures,
                    wait_ms: u64::try_from(resume.wait.as_millis()).unwrap_or(u64::MAX),
                })
            })
            .collect()
    }

    fn resolve_argv(&self) -> Result<Vec<String>, SpawnError> {
        resolve_command(&self.shared.config.command, self.search_path().as_deref())
    }

    /// The PATH this program's commands are looked up in (see [`search_path`]).
    fn search_path(&self) -> Option<String> {
        let config = &self.shared.config;
        let global = self.ctx.global_env.read().unwrap_or_else(PoisonError::into_inner);
        search_path(&self.ctx.daemon_env, &global, config.env_file_vars.vars(), &config.environment)
    }

    /// Runs `event` and every follow-up event through the lifecycle, executing
    /// the effects in order, then publishes the new snapshot.
    fn apply(&mut self, myself: &ActorRef<ProcessMsg>, event: Event) -> Outcome {
        let mut outcome = Outcome::default();
        let mut queue = std::collections::VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let now = tokio::time::Instant::now().into_std();
            for effect in self.lifecycle.step(event, now) {
                match effect {
                    Effect::StateChanged { from, to } => self.announce(from, to),
                    Effect::Spawn => {
                        self.start_wall = Some(SystemTime::now());
                        queue.push_back(match self.spawn_child(myself) {
                            Ok(pid) => Event::Spawned { pid },
                            Err(error) => Event::SpawnFailed { error },
                        });
                    }
                    Effect::Schedule { timer, after } => {
                        self.schedule(myself, timer, after);
                    }
                    Effect::Signal { pid, sig, group, purpose } => {
                        if let Err(errno) = self.signal(pid, sig, group) {
                            let error = errno.desc().to_owned();
                            if purpose == SignalPurpose::User {
                                outcome.signal_error = Some(format!(
                                    "unknown problem sending sig {} ({}):{}",
                                    self.shared.config.name, pid, error
                                ));
                            }
                            queue.push_back(Event::SignalFailed { purpose, error });
                        }
                    }
                    Effect::Log { level, message } => log(level, &message),
                    Effect::Refused(refusal) => outcome.refusal = Some(refusal),
                    Effect::AwaitDependencies => {
                        let unmet = deps::unmet(&self.ctx.registry, &self.shared.config);
                        self.deps_met = unmet.is_empty();
                        if unmet.is_empty() {
                            self.deps_print =
                                deps::fingerprint(&self.ctx.registry, &self.shared.config);
                            queue.push_back(Event::DependenciesMet);
                        } else {
                            tracing::info!(
                                "{} waits for {}",
                                self.shared.namespec(),
                                unmet.join(", ")
                            );
                            self.waiting_for = unmet;
                        }
                    }
                    Effect::RestartWanted { cause } => {
                        if let Some(answer) = self.restart_wanted(cause) {
                            queue.push_back(answer);
                        }
                    }
                    Effect::Ended { fatal, status } => {
                        self.ctx.process_ended(&self.shared.config, fatal, status);
                    }
                }
            }
        }
        if !self.lifecycle.is_waiting() {
            self.waiting_for.clear();
        }
        self.reconcile_probes(myself);
        self.publish();
        outcome
    }

    /// Signals the child, or with `group` its process group; with a control
    /// group, `group` reaches every process in it, including those that left
    /// the process group (`setsid`). The child itself goes through the
    /// reaper, so a pid it already reaped is never signalled.
    fn signal(&self, pid: u32, sig: i32, group: bool) -> Result<bool, nix::Error> {
        let Some(cgroup) = self.cgroup.as_ref().filter(|_| group) else {
            return self.ctx.spawner.signal(pid, sig, group);
        };
        let delivered = self.ctx.spawner.signal(pid, sig, false)?;
        if delivered {
            cgroup.signal(sig, Some(pid));
        }
        Ok(delivered)
    }

    /// After a stop with `killasgroup` or `stopasgroup`: whatever the child
    /// left in its control group is killed too.
    fn kill_leftovers(&self) {
        let config = &self.shared.config;
        let Some(cgroup) = self.cgroup.as_ref() else { return };
        if !(config.killasgroup || config.stopasgroup) || self.guard.pid.is_some() {
            return;
        }
        let killed = cgroup.signal(libc::SIGKILL, None);
        if killed > 0 {
            tracing::info!(
                "killed {killed} process(es) {} left in its control group",
                self.shared.namespec()
            );
        }
    }

    /// The process's control group with `limits` written, made at first use.
    fn prepare_cgroup(
        &mut self,
        limits: &vigil_config::CgroupLimits,
    ) -> Result<Arc<ProcessCgroup>, String> {
        let cgroup = match &self.cgroup {
            Some(cgroup) => Arc::clone(cgroup),
            None => {
                let made = Arc::new(self.ctx.cgroups.create(self.shared.namespec(), limits)?);
                self.cgroup = Some(Arc::clone(&made));
                made
            }
        };
        cgroup.apply(limits)?;
        Ok(cgroup)
    }

    /// Builds the spec and spawns; returns the pid or supervisord's spawnerr.
    fn spawn_child(&mut self, myself: &ActorRef<ProcessMsg>) -> Result<u32, String> {
        let cgroup = match self.shared.config.cgroup {
            Some(limits) => Some((self.prepare_cgroup(&limits)?, limits)),
            None => None,
        };
        let config = &self.shared.config;
        let argv = self.resolve_argv().map_err(|e| e.to_string())?;
        crate::output::prepare_logs(&self.shared)?;
        let user =
            config.user.as_ref().map(SpawnUser::resolve).transpose().map_err(|e| e.to_string())?;
        // Hook (fcgi): the group's socket as fd 0, held until this child's exit.
        let socket = self.ctx.fcgi.acquire(&config.group).map_err(|e| e.to_string())?;
        let spec = SpawnSpec {
            argv,
            env: self.env(),
            cwd: config.directory.clone(),
            umask: config.umask,
            user,
            redirect_stderr: config.redirect_stderr,
            pipe_stdin: true,
            close_fds_from: 3,
            stdin_socket: socket.clone(),
            rlimits: config.rlimits.clone(),
            cgroups: cgroup.as_ref().map(|(cgroup, _)| cgroup.procs_files()).unwrap_or_default(),
        };
        let readiness = config.readiness.as_ref().map(|probe| &probe.kind);
        let probes = self.probes.as_deref();
        if matches!(readiness, Some(ProbeKind::Notify))
            && probes.and_then(|probes| probes.notify.as_ref()).is_none()
        {
            return Err("no notify socket for ready_notify (see the daemon log)".to_owned());
        }
        if let Some(Err(error)) = probes.and_then(|probes| probes.log_pattern.as_ref()) {
            return Err(error.clone());
        }
        let oom_before = cgroup.as_ref().and_then(|(cgroup, _)| cgroup.oom_kills());
        let on_exit = self.exit_call(
            myself,
            self.generation + 1,
            socket,
            cgroup.as_ref().map(|(cgroup, _)| Arc::clone(cgroup)),
            oom_before,
        );
        let spawned = self.ctx.spawner.spawn_calling(&spec, on_exit).map_err(|e| e.to_string())?;
        self.generation += 1;
        if let Some((cgroup, threshold)) =
            cgroup.as_ref().and_then(|(c, l)| Some((c, l.memory_restart_threshold?)))
        {
            self.watch_memory(myself, cgroup, threshold);
        }
        self.health = Health::Unknown;
        let pid = spawned.pid;
        self.guard.pid = Some(pid);
        self.last_pid = Some(pid);
        self.shared.child.store(pid, Ordering::SeqCst);
        self.shared.spawns.fetch_add(1, Ordering::Relaxed);
        // Hook (events): filters, syslog, log events, listener protocol.
        // An earlier child's capture may still be reading its last bytes.
        self.captures.retain(|(_, capture)| !capture.is_finished());
        for (channel, pipe) in
            [(Channel::Stdout, spawned.stdout), (Channel::Stderr, spawned.stderr)]
        {
            if let Some(pipe) = pipe {
                let capture = crate::output::capture(
                    &self.ctx,
                    &self.shared,
                    channel,
                    pipe,
                    pid,
                    self.line_watch(myself),
                );
                self.captures.extend(capture.map(|capture| (channel, capture)));
            }
        }
        self.shared
            .set_stdin(spawned.stdin.map(|sender| Arc::new(crate::stdin::StdinQueue::new(sender))));
        Ok(pid)
    }

    /// Watches the current generation's memory for `memory_restart_threshold`.
    fn watch_memory(
        &mut self,
        myself: &ActorRef<ProcessMsg>,
        cgroup: &ProcessCgroup,
        threshold: u64,
    ) {
        let generation = self.generation;
        let actor = myself.clone();
        let passed = move |usage| {
            let _ = actor.cast(ProcessMsg::MemoryThreshold { generation, usage });
        };
        match crate::cgroup::spawn_memory_watch(cgroup, threshold, passed) {
            Ok(task) => self.memory_watch = Some(task),
            Err(error) => tracing::error!(
                "{}: cannot watch its memory for memory_restart_threshold: {error}",
                self.shared.namespec()
            ),
        }
    }

    /// What turns the exit of a child of `generation` into
    /// [`ProcessMsg::Exited`]: the reaper calls it on its thread as it reaps
    /// the child, so no task waits for each child. It holds the fcgi
    /// `socket` until then.
    fn exit_call(
        &self,
        myself: &ActorRef<ProcessMsg>,
        generation: u64,
        socket: Option<crate::spawn::SharedFd>,
        cgroup: Option<Arc<ProcessCgroup>>,
        oom_before: Option<u64>,
    ) -> crate::reaper::ExitCall {
        let me = myself.clone();
        // The group is removed when its last holder lets go, which can wait
        // for what is left in it: never where exits are reaped.
        let cgroup = cgroup.map(|cgroup| (cgroup, tokio::runtime::Handle::current()));
        Box::new(move |pid, status| {
            drop(socket);
            let mut oom_killed = false;
            if let Some((cgroup, runtime)) = cgroup {
                // The kernel counts its kills in the group; read once, now
                // (a small read of the cgroup file system).
                oom_killed =
                    cgroup.oom_kills().is_some_and(|after| after > oom_before.unwrap_or(0));
                if let Some(last) = Arc::into_inner(cgroup) {
                    runtime.spawn_blocking(move || drop(last));
                }
            }
            // Fails only if this actor is gone, whose guard already killed it.
            let _ = me.cast(ProcessMsg::Exited { generation, pid, status, oom_killed });
        })
    }

    /// Makes [`ProcessActorState::exit_call`]'s call when an adopted child's
    /// `exit` resolves (a live upgrade's children come with a channel).
    fn watch_exit(
        &self,
        pid: u32,
        exit: tokio::sync::oneshot::Receiver<crate::exit::ExitStatus>,
        on_exit: crate::reaper::ExitCall,
    ) {
        let namespec = self.shared.namespec().clone();
        tokio::spawn(async move {
            match exit.await {
                Ok(status) => on_exit(pid, status),
                Err(_) => tracing::error!(
                    "the reaper dropped the exit status of '{namespec}' (pid {pid})"
                ),
            }
        });
    }

    /// Lets go of the child for the next image of a live upgrade (see
    /// [`crate::handover`]): ends the timers, probes and watches, takes the
    /// pipes back from the capture tasks (which were told to stop) and
    /// forgets the child without signalling it. Refuses, changing nothing,
    /// while the child's exit was collected but not yet applied here: the
    /// caller asks again once that `Exited` message was handled.
    async fn freeze(&mut self) -> Result<Frozen, String> {
        if let Some(pid) = self.guard.pid
            && !self.ctx.spawner.is_registered(pid)
        {
            return Err(RETRY_FREEZE.to_owned());
        }
        let now = tokio::time::Instant::now();
        let mut timers = Vec::new();
        for (kind, (token, task, deadline)) in self.timers.drain() {
            task.abort();
            let left = deadline.saturating_duration_since(now).as_millis();
            let remaining_ms = u64::try_from(left).unwrap_or(u64::MAX);
            timers.push(CarriedTimer { kind: kind.code(), token, remaining_ms });
        }
        let probes = self.carry_probes();
        self.stop_probes();
        for task in [self.memory_watch.take(), self.monitor.take()].into_iter().flatten() {
            task.abort();
        }
        let mut fds = Vec::new();
        let (mut stdout_fds, mut stderr_fds) = (Vec::new(), Vec::new());
        for (channel, capture) in std::mem::take(&mut self.captures) {
            match capture.await {
                Ok(Some(fd)) => {
                    let list = match channel {
                        Channel::Stdout => &mut stdout_fds,
                        Channel::Stderr => &mut stderr_fds,
                    };
                    list.push(fd.as_raw_fd());
                    fds.push(fd);
                }
                // The pipe reached its end: nothing more will come.
                Ok(None) => {}
                Err(error) => {
                    tracing::error!("{}: a capture task failed: {error}", self.shared.namespec());
                }
            }
        }
        let mut stdin_fd = None;
        let queued = self.shared.stdin().map_or(0, |queue| queue.queued());
        if queued > 0 {
            // Queued after the upgrade was accepted (it refuses a queue).
            tracing::error!(
                critical = true,
                "{}: {queued} bytes queued for its stdin are not carried by the upgrade",
                self.shared.namespec()
            );
        }
        match self.shared.stdin().and_then(|queue| queue.take_for_handover()) {
            Some(Ok(fd)) => {
                stdin_fd = Some(fd.as_raw_fd());
                fds.push(fd);
            }
            Some(Err(error)) => {
                tracing::error!("{}: cannot keep its stdin: {error}", self.shared.namespec());
            }
            None => {}
        }
        let mut notify = None;
        if let Some(socket) = self.probes.as_deref_mut().and_then(|probes| probes.notify.take()) {
            match socket.hand_over() {
                Ok((fd, path)) => {
                    notify = Some(handover::CarriedNotify { fd: fd.as_raw_fd(), path });
                    fds.push(fd);
                }
                Err(error) => {
                    tracing::error!(
                        "{}: cannot keep its notify socket: {error}",
                        self.shared.namespec()
                    );
                }
            }
        }
        // The next image owns the child: nothing here may kill it.
        self.guard.pid = None;
        self.frozen = true;
        let config = &self.shared.config;
        let snapshot = self.snapshot();
        let shown = handover::CarriedShown {
            group: config.group.clone(),
            name: config.name.clone(),
            autostart: config.autostart,
            completed: snapshot.completed_successfully(config),
            probed: snapshot.health.is_some(),
            waiting_for: snapshot.waiting_for,
        };
        let record = CarriedProcess {
            namespec: self.shared.namespec().to_string(),
            lifecycle: self.lifecycle.carry(now.into_std()),
            timers,
            start_unix_ms: self.start_wall.map(handover::unix_ms),
            stop_unix_ms: self.stop_wall.map(handover::unix_ms),
            spawns: self.shared.spawns.load(Ordering::Relaxed),
            last_exit: self.shared.last_exit().map(CarriedExit::from),
            last_exit_oom: self.shared.last_exit_oom.load(Ordering::Relaxed),
            stdin_fd,
            stdout_fds,
            stderr_fds,
            stdout_log: self.shared.stdout.path(),
            stderr_log: self.shared.stderr.path(),
            stdout_total: self.shared.stdout.total(),
            stderr_total: self.shared.stderr.total(),
            stdout_layout: self.shared.stdout.layout(),
            stderr_layout: self.shared.stderr.layout(),
            health: self.health.carried(),
            probes,
            notify,
            shown,
        };
        Ok(Frozen { record: Box::new(record), fds })
    }

    /// The control group the previous image put child `pid` in, taken over
    /// (so a stop kills the whole group, OOM kills are counted from now on)
    /// with its memory watch started again.
    fn adopt_cgroup(
        &mut self,
        myself: &ActorRef<ProcessMsg>,
        pid: u32,
    ) -> Option<Arc<ProcessCgroup>> {
        let limits = self.shared.config.cgroup?;
        match self.ctx.cgroups.adopt(self.shared.namespec(), &limits, pid) {
            Ok(cgroup) => {
                let cgroup = Arc::new(cgroup);
                self.cgroup = Some(Arc::clone(&cgroup));
                if let Some(threshold) = limits.memory_restart_threshold {
                    self.watch_memory(myself, &cgroup, threshold);
                }
                Some(cgroup)
            }
            Err(error) => {
                tracing::error!(
                    "{}: cannot take over its control group after the upgrade: {error}",
                    self.shared.namespec()
                );
                None
            }
        }
    }

    /// Resumes the process the previous image of a live upgrade froze: the
    /// lifecycle where it was, its timers with their remaining time, its
    /// pipes captured again and its child's exit awaited.
    fn adopt(&mut self, myself: &ActorRef<ProcessMsg>, adoptable: Adoptable) {
        let Adoptable { record, exit, stdin, stdout, stderr, notify } = adoptable;
        let now = tokio::time::Instant::now();
        let config = self.shared.lifecycle_config();
        self.lifecycle = match Lifecycle::resume(config, &record.lifecycle, now.into_std()) {
            Ok(lifecycle) => lifecycle,
            Err(error) => {
                // The format was checked before the upgrade; a record that
                // still does not fit leaves the process to its config.
                tracing::error!(
                    critical = true,
                    "{}: cannot resume its state after the upgrade: {error}",
                    self.shared.namespec()
                );
                return;
            }
        };
        self.start_wall = record.start_unix_ms.map(handover::from_unix_ms);
        self.stop_wall = record.stop_unix_ms.map(handover::from_unix_ms);
        self.shared.spawns.store(record.spawns, Ordering::Relaxed);
        if let Some(status) = record.last_exit {
            self.shared.record_exit(status.into(), record.last_exit_oom);
        }
        self.generation += 1;
        self.health = Health::from_carried(record.health);
        for carried in &record.probes {
            let resume = probe::Resume {
                failures: carried.failures,
                wait: Duration::from_millis(carried.wait_ms),
            };
            self.probes.get_or_insert_default().carried[usize::from(carried.liveness)] =
                Some(resume);
        }
        // The child knows the carried socket's path: it replaces the one
        // bound for this actor.
        if let (Some(fd), Some(carried)) = (notify, &record.notify) {
            match NotifySocket::adopt(carried.path.clone(), fd, myself.clone()) {
                Ok(socket) => self.probes.get_or_insert_default().notify = Some(socket),
                Err(error) => tracing::error!(
                    "{}: cannot read its notify socket again: {error}",
                    self.shared.namespec()
                ),
            }
        }
        self.shared.stdout.continue_from(record.stdout_total);
        self.shared.stderr.continue_from(record.stderr_total);
        let pid = self.lifecycle.pid();
        for (channel, fds) in [(Channel::Stdout, stdout), (Channel::Stderr, stderr)] {
            for fd in fds {
                match crate::launch::pipe_receiver(fd) {
                    Ok(pipe) => {
                        let on_line = self.line_watch(myself);
                        let capture = crate::output::capture(
                            &self.ctx,
                            &self.shared,
                            channel,
                            pipe,
                            pid.unwrap_or(0),
                            on_line,
                        );
                        self.captures.extend(capture.map(|capture| (channel, capture)));
                    }
                    Err(error) => tracing::error!(
                        "{}: cannot capture its {} again: {error}",
                        self.shared.namespec(),
                        channel.as_str()
                    ),
                }
            }
        }
        if let Some(fd) = stdin {
            match crate::launch::nonblocking(fd) {
                Ok(pipe) => {
                    self.shared.set_stdin(Some(Arc::new(crate::stdin::StdinQueue::new(pipe))));
                }
                Err(error) => {
                    tracing::error!("{}: cannot keep its stdin: {error}", self.shared.namespec());
                }
            }
        }
        if let Some(pid) = pid {
            self.guard.pid = Some(pid);
            self.last_pid = Some(pid);
            self.shared.child.store(pid, Ordering::SeqCst);
            match exit {
                Some(exit) => {
                    // An fcgi child listens on its group's socket (carried
                    // too): the daemon keeps it open while the child lives.
                    let socket = self.ctx.fcgi.acquire(&self.shared.config.group).ok().flatten();
                    let cgroup = self.adopt_cgroup(myself, pid);
                    let oom_before = cgroup.as_ref().and_then(|cgroup| cgroup.oom_kills());
                    let on_exit =
                        self.exit_call(myself, self.generation, socket, cgroup, oom_before);
                    self.watch_exit(pid, exit, on_exit);
                }
                None => {
                    // Not a child any more (the daemon logged why): its end is
                    // applied as a kill, so the lifecycle moves on.
                    let generation = self.generation;
                    let status = crate::exit::ExitStatus::Signal(libc::SIGKILL);
                    let exited = ProcessMsg::Exited { generation, pid, status, oom_killed: false };
                    let _ = myself.cast(exited);
                }
            }
        }
        for carried in &record.timers {
            let Some(kind) = TimerKind::from_code(carried.kind) else { continue };
            if let Some(timer) = self.lifecycle.armed(kind).filter(|t| t.token == carried.token) {
                self.schedule(myself, timer, Duration::from_millis(carried.remaining_ms));
            }
        }
        if self.lifecycle.is_waiting() {
            self.deps_changed(myself);
        }
        self.reconcile_probes(myself);
        self.publish();
    }

    /// The `ready_log` line matcher for the current child, while STARTING
    /// (a spawn happens in STARTING).
    fn line_watch(&self, myself: &ActorRef<ProcessMsg>) -> Option<crate::logs::LineCallback> {
        if self.lifecycle.state() != ProcessState::Starting {
            return None;
        }
        let Some(Ok(pattern)) = self.probes.as_ref().and_then(|probes| probes.log_pattern.clone())
        else {
            return None;
        };
        let actor = myself.clone();
        let generation = self.generation;
        let mut fired = false;
        Some(Box::new(move |line: &[u8]| {
            if !fired && pattern.is_match(&String::from_utf8_lossy(line)) {
                fired = true;
                let verdict = Verdict::ReadinessPassed;
                let _ = actor.cast(ProcessMsg::Probe { generation, verdict });
            }
        }))
    }

    /// Arms `timer` to fire `after` from now, replacing any of its kind.
    fn schedule(&mut self, myself: &ActorRef<ProcessMsg>, timer: Timer, after: Duration) {
        let task = myself.send_after(after, move || ProcessMsg::Timer(timer));
        let deadline = tokio::time::Instant::now() + after;
        if let Some((_, old, _)) = self.timers.insert(timer.kind, (timer.token, task, deadline)) {
            old.abort();
        }
    }

    fn announce(&self, from: ProcessState, to: ProcessState) {
        let config = &self.shared.config;
        let expected = (to == ProcessState::Exited).then(|| {
            self.lifecycle.exitstatus().is_some_and(|status| {
                self.lifecycle.config().exitcodes.contains(&status.supervisord_code())
            })
        });
        let event = ProcessStateEvent {
            group: config.group.clone(),
            name: config.name.clone(),
            from,
            to,
            pid: if to == ProcessState::Starting { self.lifecycle.pid() } else { self.last_pid },
            tries: self.lifecycle.backoff(),
            expected,
            oom_killed: self.exit_oom,
            at: SystemTime::now(),
        };
        crate::events::publish(&self.ctx.bus, BusEvent::ProcessState(event));
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.lifecycle.state(),
            pid: self.lifecycle.pid(),
            start: self.start_wall,
            stop: self.stop_wall,
            spawnerr: self.lifecycle.spawnerr().map(str::to_owned),
            exitstatus: self.lifecycle.exitstatus(),
            tries: self.lifecycle.backoff(),
            waiting_for: self.waiting_for.clone(),
            health: (self.shared.config.readiness.is_some()
                || self.shared.config.liveness.is_some())
            .then_some(self.health),
        }
    }

    fn publish(&self) {
        let snapshot = self.snapshot();
        let modified = self.shared.snapshot.send_if_modified(|current| {
            if *current == snapshot {
                false
            } else {
                *current = snapshot;
                true
            }
        });
        if modified {
            self.ctx.changed();
        }
    }
}

fn log(level: Level, message: &str) {
    match level {
        Level::Critical => tracing::error!("{message}"),
        Level::Warn => tracing::warn!("{message}"),
        Level::Info => tracing::info!("{message}"),
        Level::Debug => tracing::debug!("{message}"),
    }
}
