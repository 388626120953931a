//! [`GroupActor`]: supervises the process actors of one group.
//!
//! Members are kept in start order (the config's (priority, name) order): the
//! index in [`GroupState::members`] is a member's position, which is what an
//! Erlang-style strategy needs (rest_for_one = "this member and every later one").
//! Stops go in reverse order.
//!
//! Supervision here is about bugs in our own code, not about programs exiting:
//! a program's exit is data handled by its actor's lifecycle. When a process
//! actor fails (a panic or an `Err` from a handler), ractor would by default stop
//! this group too; instead [`GroupActor::handle_supervisor_evt`] kills the
//! orphaned OS child (its actor's drop guard normally did already), rebuilds the
//! actor from the member's config and shared state, and restarts the program if
//! it was meant to be running. Repeated failures of one member within
//! [`REBUILD_WINDOW`] stop the rebuilding and leave the member UNKNOWN, so a
//! deterministic bug cannot spin.
//!
//! The group's configured [`Strategy`] concerns program exits, not actor
//! failures. Every automatic restart of a member is admitted by the group's
//! restart [`Budget`] (see [`crate::budget`]). With one_for_one (supervisord's
//! behaviour) each member's actor asks the shared budget itself and restarts its
//! own program. With one_for_all / rest_for_one, a member that dies after
//! RUNNING (or fails its liveness probe) sends [`GroupMsg::MemberDied`]; the
//! group answers from the member's position: `0..len` or `index..len`. Of those,
//! the members that were running are stopped in reverse start order (each fully
//! stopped before the next), then restarted in start order, each once the
//! previous one was spawned. The stopping and starting run in a task, never in a
//! handler, and count as one restart against the budget (as in OTP). When the
//! budget is exhausted the group goes FATAL: every member is stopped into FATAL,
//! nothing restarts by itself, and the root is told ([`RootMsg::Escalate`]),
//! whose `on_fatal` setting decides whether the daemon shuts down.

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use vigil_config::{GroupConfig, Strategy};

use crate::budget::Budget;
use crate::context::Context;
use crate::info::Snapshot;
use crate::lifecycle::ProcessState;
use crate::messages::{GroupMsg, GroupRef, ProcessMsg, ProcessShared, RootMsg};
use crate::process::{ProcessActor, ProcessArgs};
use crate::spawner::kill_orphan;

/// Failures of one member's actor tolerated within [`REBUILD_WINDOW`].
pub(crate) const MAX_REBUILDS: usize = 5;
/// See [`MAX_REBUILDS`].
pub(crate) const REBUILD_WINDOW: Duration = Duration::from_secs(60);
/// How long a stopping group waits for its process actors to finish `post_stop`.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct GroupArgs {
    /// Shared with the registry's entry: the group's settings are read-only here.
    pub(crate) config: Arc<GroupConfig>,
    pub(crate) members: Vec<Arc<ProcessShared>>,
    pub(crate) ctx: Arc<Context>,
    /// This group replaces one that failed: restart members that were running.
    pub(crate) resume: bool,
}

pub(crate) struct GroupActor;

struct Member {
    shared: Arc<ProcessShared>,
    /// Recent actor failures, for the rebuild limit.
    failures: VecDeque<tokio::time::Instant>,
}

pub(crate) struct GroupState {
    config: Arc<GroupConfig>,
    /// In start order.
    members: Vec<Member>,
    /// Each member actor's id and the member's index; a list, as groups are
    /// small and it is searched only on supervision events.
    by_id: Vec<(ActorId, usize)>,
    /// How the members (and the strategy task) reach this group.
    link: GroupRef,
    ctx: Arc<Context>,
    /// The daemon is shutting down: a rebuilt member must not start anything.
    shutting_down: bool,
    budget: Arc<Budget>,
    /// The members a strategy restart is working on.
    restarting: Option<Vec<usize>>,
}

impl GroupState {
    async fn spawn_member(
        &mut self,
        supervisor: &ActorCell,
        index: usize,
        resume: bool,
    ) -> Result<(), ActorProcessingErr> {
        let shared = Arc::clone(&self.members[index].shared);
        let args = ProcessArgs {
            shared,
            ctx: Arc::clone(&self.ctx),
            resume,
            group: self.link.clone(),
            strategy: self.config.strategy,
            budget: Arc::clone(&self.budget),
        };
        // Boxed: ractor runs the child's `pre_start` inside this future, and
        // inline it would size every group actor's resident future for it (a
        // few KiB per group) though it runs only while a member is being built.
        let (actor, _join) =
            Box::pin(Actor::spawn_linked(None, ProcessActor, args, supervisor.clone())).await?;
        self.by_id.push((actor.get_id(), index));
        Ok(())
    }

    /// Forgets the actor `id`; its member's index if it was one of ours.
    fn forget(&mut self, id: ActorId) -> Option<usize> {
        let at = self.by_id.iter().position(|(known, _)| *known == id)?;
        Some(self.by_id.swap_remove(at).1)
    }

    /// Whether `id` is the actor of one of this group's members.
    pub(crate) fn supervises(&self, id: ActorId) -> bool {
        self.by_id.iter().any(|(known, _)| *known == id)
    }

    /// Stops every member's actor (the group is removed; its processes are
    /// stopped already).
    pub(crate) fn stop_members(&self, reason: &str) {
        for member in &self.members {
            if let Some(actor) = member.shared.actor() {
                actor.stop(Some(reason.to_owned()));
            }
        }
    }

    /// Applies [`GroupMsg::Reconcile`].
    pub(crate) async fn reconcile(
        &mut self,
        supervisor: &ActorCell,
        config: Arc<GroupConfig>,
        members: Vec<Arc<ProcessShared>>,
    ) -> Result<(), ActorProcessingErr> {
        let mut previous = std::mem::take(&mut self.members);
        for gone in previous.iter().filter(|m| !members.iter().any(|n| Arc::ptr_eq(n, &m.shared))) {
            if let Some(actor) = gone.shared.actor() {
                actor.stop(Some("removed by update".to_owned()));
            }
        }
        // A new strategy or budget reaches the members kept below; a budget whose
        // limits did not change keeps counting.
        let policy_changed = self.config.strategy != config.strategy
            || self.config.max_restarts != config.max_restarts
            || self.config.max_restarts_period != config.max_restarts_period;
        if policy_changed {
            self.budget = Arc::new(Budget::new(config.max_restarts, config.max_restarts_period));
        }
        self.config = config;
        self.by_id.clear();
        for (index, shared) in members.into_iter().enumerate() {
            match previous.iter().position(|m| Arc::ptr_eq(&m.shared, &shared)) {
                Some(at) => {
                    let kept = previous.swap_remove(at);
                    if let Some(actor) = kept.shared.actor() {
                        self.by_id.push((actor.get_id(), index));
                        if policy_changed {
                            let _ = actor.cast(ProcessMsg::Policy {
                                strategy: self.config.strategy,
                                budget: Arc::clone(&self.budget),
                            });
                        }
                    }
                    self.members.push(kept);
                }
                None => {
                    self.members.push(Member { shared, failures: VecDeque::new() });
                    self.spawn_member(supervisor, index, false).await?;
                    if self.shutting_down
                        && let Some(actor) = self.members[index].shared.actor()
                    {
                        let _ = actor.cast(ProcessMsg::DaemonShuttingDown);
                    }
                }
            }
        }
        Ok(())
    }
}

impl GroupState {
    /// Where `member` stands in the group now.
    fn position(&self, member: &Arc<ProcessShared>) -> Option<usize> {
        self.members.iter().position(|m| Arc::ptr_eq(&m.shared, member))
    }

    fn member_died(&mut self, index: usize) {
        if index >= self.members.len() || self.shutting_down {
            return;
        }
        if self.restarting.as_ref().is_some_and(|set| set.contains(&index)) {
            // The strategy restart under way starts this member again anyway.
            return;
        }
        let dead = Arc::clone(&self.members[index].shared);
        if !self.budget.admit(tokio::time::Instant::now()) {
            if let Some(actor) = dead.actor() {
                let _ = actor.cast(ProcessMsg::RestartDenied);
            }
            self.fatal(index);
            return;
        }
        let range = match self.config.strategy {
            Strategy::OneForAll => 0..self.members.len(),
            Strategy::RestForOne => index..self.members.len(),
            Strategy::OneForOne => index..index + 1,
        };
        let targets: Vec<(usize, Arc<ProcessShared>)> = range
            .filter(|j| *j == index || self.members[*j].shared.state().is_running())
            .map(|j| (j, Arc::clone(&self.members[j].shared)))
            .collect();
        let names: Vec<&str> = targets.iter().map(|(_, m)| m.config.name.as_str()).collect();
        tracing::warn!(
            "group '{}' ({:?}): '{}' died; restarting {}",
            self.config.name,
            self.config.strategy,
            dead.config.name,
            names.join(", ")
        );
        self.restarting = Some(targets.iter().map(|(j, _)| *j).collect());
        let link = self.link.clone();
        tokio::spawn(async move {
            strategy_restart(index, targets).await;
            link.cast(GroupMsg::StrategyDone);
        });
    }

    /// The budget is exhausted: every member goes FATAL and the root decides.
    fn fatal(&mut self, index: usize) {
        let reason = format!("restart budget exhausted ({})", self.budget.describe());
        tracing::error!("group '{}' is FATAL: {reason}", self.config.name);
        for (j, member) in self.members.iter().enumerate() {
            if j != index
                && let Some(actor) = member.shared.actor()
            {
                let _ = actor.cast(ProcessMsg::GroupFatal);
            }
        }
        if let Some(root) = self.link.root() {
            let _ = root.cast(RootMsg::Escalate { group: self.config.name.clone(), reason });
        }
    }
}

/// one_for_all / rest_for_one: stop `targets` other than the dead member in
/// reverse start order, then start them all in start order.
async fn strategy_restart(dead: usize, targets: Vec<(usize, Arc<ProcessShared>)>) {
    for (index, member) in targets.iter().rev() {
        if *index == dead {
            continue;
        }
        let mut snapshot = member.snapshot.subscribe();
        if let Some(actor) = member.actor() {
            let _ = actor.call(ProcessMsg::Stop, None).await;
        }
        let _ = snapshot.wait_for(|s| s.state.is_stopped()).await;
    }
    for (index, member) in &targets {
        let mut snapshot = member.snapshot.subscribe();
        let Some(actor) = member.actor() else {
            continue;
        };
        if *index == dead {
            let _ = actor.cast(ProcessMsg::RestartApproved);
            // Spawned (or given up on) before the next member starts; a backoff
            // delay of the dead member delays the later ones too.
            let _ = snapshot
                .wait_for(|s| !matches!(s.state, ProcessState::Exited | ProcessState::Backoff))
                .await;
        } else {
            let _ = actor.call(ProcessMsg::Start, None).await;
        }
    }
}

impl GroupState {
    /// Builds the group's state and spawns its members' actors under
    /// `supervisor` (the group's own actor, or the root when it hosts the group).
    pub(crate) async fn start(
        args: GroupArgs,
        supervisor: &ActorCell,
        link: GroupRef,
    ) -> Result<GroupState, ActorProcessingErr> {
        let GroupArgs { config, members, ctx, resume } = args;
        let members_len = members.len();
        let budget = Arc::new(Budget::new(config.max_restarts, config.max_restarts_period));
        let mut state = GroupState {
            budget,
            restarting: None,
            config,
            members: members
                .into_iter()
                .map(|shared| Member { shared, failures: VecDeque::new() })
                .collect(),
            by_id: Vec::with_capacity(members_len),
            link,
            ctx,
            shutting_down: false,
        };
        for index in 0..state.members.len() {
            let was_running = state.members[index].shared.state().is_running();
            state.spawn_member(supervisor, index, resume && was_running).await?;
        }
        Ok(state)
    }

    /// Handles one of the group's messages.
    pub(crate) async fn handle(
        &mut self,
        supervisor: &ActorCell,
        message: GroupMsg,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GroupMsg::DaemonShuttingDown => {
                self.shutting_down = true;
                for member in &self.members {
                    if let Some(actor) = member.shared.actor() {
                        let _ = actor.cast(ProcessMsg::DaemonShuttingDown);
                    }
                }
            }
            GroupMsg::Shutdown => {
                for member in self.members.iter().rev() {
                    if let Some(actor) = member.shared.actor() {
                        let _ = actor.cast(ProcessMsg::Shutdown);
                    }
                }
            }
            GroupMsg::Reconcile { config, members, reply } => {
                self.reconcile(supervisor, config, members).await?;
                let _ = reply.send(());
            }
            GroupMsg::MemberDied { member } => {
                if let Some(index) = self.position(&member) {
                    self.member_died(index);
                }
            }
            GroupMsg::BudgetExhausted { member } => {
                if let Some(index) = self.position(&member) {
                    self.fatal(index);
                }
            }
            GroupMsg::StrategyDone => self.restarting = None,
            // Only a group's own actor can be made to panic; a hosted group has none.
            #[cfg(test)]
            GroupMsg::Crash => {}
        }
        Ok(())
    }

    /// Handles a supervision event about one of the members' actors.
    pub(crate) async fn supervise(
        &mut self,
        supervisor: &ActorCell,
        event: SupervisionEvent,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                // Unknown ids are actors this group already let go of.
                let Some(index) = self.forget(cell.get_id()) else {
                    return Ok(());
                };
                let member = &mut self.members[index];
                let namespec = member.shared.namespec().clone();
                tracing::error!(
                    "process actor of '{namespec}' in group '{}' failed: {error}",
                    self.config.name
                );
                // The failed actor's drop guard has normally killed its child
                // already; this covers a guard that never ran.
                let pid = member.shared.child.swap(0, std::sync::atomic::Ordering::SeqCst);
                if pid != 0 {
                    kill_orphan(self.ctx.spawner.as_ref(), pid);
                }
                let now = tokio::time::Instant::now();
                member.failures.push_back(now);
                while member
                    .failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > REBUILD_WINDOW)
                {
                    member.failures.pop_front();
                }
                if member.failures.len() > MAX_REBUILDS {
                    tracing::error!(
                        "process actor of '{namespec}' failed {} times within {:?}; not rebuilding it",
                        member.failures.len(),
                        REBUILD_WINDOW
                    );
                    *member.shared.actor.write().unwrap_or_else(PoisonError::into_inner) = None;
                    let previous = member.shared.snapshot.borrow().clone();
                    member.shared.snapshot.send_replace(Snapshot {
                        state: ProcessState::Unknown,
                        pid: None,
                        spawnerr: Some(
                            "internal error: process actor failed repeatedly".to_owned(),
                        ),
                        ..previous
                    });
                    self.ctx.changed();
                    return Ok(());
                }
                let resume = !self.shutting_down && member.shared.state().is_running();
                tracing::warn!("rebuilding the process actor of '{namespec}'");
                self.spawn_member(supervisor, index, resume).await?;
                if self.shutting_down
                    && let Some(actor) = self.members[index].shared.actor()
                {
                    let _ = actor.cast(ProcessMsg::DaemonShuttingDown);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                self.forget(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl Actor for GroupActor {
    type Msg = GroupMsg;
    type State = GroupState;
    type Arguments = GroupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GroupMsg>,
        args: GroupArgs,
    ) -> Result<GroupState, ActorProcessingErr> {
        let link = GroupRef::Actor(myself.clone());
        GroupState::start(args, &myself.get_cell(), link).await
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GroupMsg>,
        _state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        // Let the process actors run their own post_stop: ractor kills the
        // children of a stopping parent without running it. Their drop guards
        // kill any child still alive either way.
        myself.stop_children_and_wait(None, Some(CHILD_STOP_TIMEOUT)).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GroupMsg>,
        message: GroupMsg,
        state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        #[cfg(test)]
        if matches!(message, GroupMsg::Crash) {
            panic!("crash requested by a test");
        }
        state.handle(&myself.get_cell(), message).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<GroupMsg>,
        event: SupervisionEvent,
        state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        state.supervise(&myself.get_cell(), event).await
    }
}
