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
//! failures. supervisord's behaviour, one_for_one, needs nothing from the group
//! because each lifecycle restarts its own program. one_for_all / rest_for_one
//! and restart budgets (a later issue) slot in as a group message sent by a
//! member's actor on an unexpected exit, answered from the member's position:
//! `0..len` or `index..len`, stopped in reverse and restarted in order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use vigil_config::{GroupConfig, Strategy};

use crate::lifecycle::ProcessState;
use crate::process::info::Snapshot;
use crate::process::{Context, ProcessActor, ProcessArgs, ProcessMsg, ProcessShared, kill_orphan};

/// Failures of one member's actor tolerated within [`REBUILD_WINDOW`].
pub(crate) const MAX_REBUILDS: usize = 5;
/// See [`MAX_REBUILDS`].
pub(crate) const REBUILD_WINDOW: Duration = Duration::from_secs(60);
/// How long a stopping group waits for its process actors to finish `post_stop`.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages to a [`GroupActor`].
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
        config: GroupConfig,
        members: Vec<Arc<ProcessShared>>,
        reply: ractor::RpcReplyPort<()>,
    },
    /// Panics, to exercise the root's supervision.
    #[cfg(test)]
    Crash,
}

pub(crate) struct GroupArgs {
    pub(crate) config: GroupConfig,
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
    config: GroupConfig,
    /// In start order.
    members: Vec<Member>,
    by_id: HashMap<ActorId, usize>,
    ctx: Arc<Context>,
    /// The daemon is shutting down: a rebuilt member must not start anything.
    shutting_down: bool,
}

impl GroupState {
    async fn spawn_member(
        &mut self,
        myself: &ActorRef<GroupMsg>,
        index: usize,
        resume: bool,
    ) -> Result<(), ActorProcessingErr> {
        let shared = Arc::clone(&self.members[index].shared);
        let args = ProcessArgs { shared, ctx: Arc::clone(&self.ctx), resume };
        let (actor, _join) =
            Actor::spawn_linked(None, ProcessActor, args, myself.get_cell()).await?;
        self.by_id.insert(actor.get_id(), index);
        Ok(())
    }

    /// Applies [`GroupMsg::Reconcile`].
    async fn reconcile(
        &mut self,
        myself: &ActorRef<GroupMsg>,
        config: GroupConfig,
        members: Vec<Arc<ProcessShared>>,
    ) -> Result<(), ActorProcessingErr> {
        let mut previous = std::mem::take(&mut self.members);
        for gone in previous.iter().filter(|m| !members.iter().any(|n| Arc::ptr_eq(n, &m.shared))) {
            if let Some(actor) = gone.shared.actor() {
                actor.stop(Some("removed by update".to_owned()));
            }
        }
        self.config = config;
        self.by_id.clear();
        for (index, shared) in members.into_iter().enumerate() {
            match previous.iter().position(|m| Arc::ptr_eq(&m.shared, &shared)) {
                Some(at) => {
                    let kept = previous.swap_remove(at);
                    if let Some(actor) = kept.shared.actor() {
                        self.by_id.insert(actor.get_id(), index);
                    }
                    self.members.push(kept);
                }
                None => {
                    self.members.push(Member { shared, failures: VecDeque::new() });
                    self.spawn_member(myself, index, false).await?;
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

impl Actor for GroupActor {
    type Msg = GroupMsg;
    type State = GroupState;
    type Arguments = GroupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GroupMsg>,
        args: GroupArgs,
    ) -> Result<GroupState, ActorProcessingErr> {
        let GroupArgs { config, members, ctx, resume } = args;
        if config.strategy != Strategy::OneForOne {
            tracing::warn!(
                "group '{}': strategy {:?} is not implemented yet; members restart one for one",
                config.name,
                config.strategy
            );
        }
        let mut state = GroupState {
            config,
            members: members
                .into_iter()
                .map(|shared| Member { shared, failures: VecDeque::new() })
                .collect(),
            by_id: HashMap::new(),
            ctx,
            shutting_down: false,
        };
        for index in 0..state.members.len() {
            let was_running = state.members[index].shared.state().is_running();
            state.spawn_member(&myself, index, resume && was_running).await?;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<GroupMsg>,
        _state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        // Let the process actors run their own post_stop (crates.md s1.5 #4);
        // their drop guards kill any child still alive.
        myself.stop_children_and_wait(None, Some(CHILD_STOP_TIMEOUT)).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<GroupMsg>,
        message: GroupMsg,
        state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GroupMsg::DaemonShuttingDown => {
                state.shutting_down = true;
                for member in &state.members {
                    if let Some(actor) = member.shared.actor() {
                        let _ = actor.cast(ProcessMsg::DaemonShuttingDown);
                    }
                }
            }
            GroupMsg::Shutdown => {
                for member in state.members.iter().rev() {
                    if let Some(actor) = member.shared.actor() {
                        let _ = actor.cast(ProcessMsg::Shutdown);
                    }
                }
            }
            GroupMsg::Reconcile { config, members, reply } => {
                state.reconcile(&myself, config, members).await?;
                let _ = reply.send(());
            }
            #[cfg(test)]
            GroupMsg::Crash => panic!("crash requested by a test"),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<GroupMsg>,
        event: SupervisionEvent,
        state: &mut GroupState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                // Unknown ids are actors this group already let go of.
                let Some(index) = state.by_id.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let member = &mut state.members[index];
                let namespec = member.shared.namespec.clone();
                tracing::error!(
                    "process actor of '{namespec}' in group '{}' failed: {error}",
                    state.config.name
                );
                // The failed actor's drop guard has normally killed its child
                // already; this covers a guard that never ran.
                let pid = member.shared.child.swap(0, std::sync::atomic::Ordering::SeqCst);
                if pid != 0 {
                    kill_orphan(state.ctx.spawner.as_ref(), pid);
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
                    return Ok(());
                }
                let resume = !state.shutting_down && member.shared.state().is_running();
                tracing::warn!("rebuilding the process actor of '{namespec}'");
                state.spawn_member(&myself, index, resume).await?;
                if state.shutting_down
                    && let Some(actor) = state.members[index].shared.actor()
                {
                    let _ = actor.cast(ProcessMsg::DaemonShuttingDown);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.by_id.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
