//! [`RootActor`]: supervises the group actors and runs the ordered shutdown.
//!
//! The root owns the set of groups (adding and removing them) and keeps the
//! [`Registry`] in step, which is how [`crate::Handle`] reaches processes without
//! going through the tree's mailboxes. Like every supervisor here it overrides
//! `handle_supervisor_evt` (ractor's default would stop the root when any group
//! fails): a failed group actor is rebuilt from its config and shared member
//! state, restarting what was running (its process actors were killed with it,
//! and their drop guards killed their children).
//!
//! Shutdown follows supervisord (`ordered_stop_groups_phase_1/2`): first every
//! process is told that no automatic start may happen any more, then groups are
//! stopped one at a time in descending (priority, name) order, the next only when
//! every process of the current one is in a stopped state. While waiting it logs
//! `waiting for a, b to die` every 3 s. The waiting runs in a task, never inside a
//! handler, so supervision keeps working meanwhile. When processes have
//! `depends_on`, the stop order is the reverse dependency order instead, at the
//! process level ([`crate::deps::stop_in_dependency_order`]).
//!
//! Escalation: a group whose restart budget is exhausted sends
//! [`RootMsg::Escalate`]. With `on_fatal = shutdown` the root publishes a
//! [`crate::FatalShutdown`]; [`crate::Handle`] runs the ordered shutdown on it and
//! the daemon exits with [`crate::FATAL_EXIT_CODE`]. With `ignore` (the default)
//! the group just stays FATAL.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use vigil_config::{GroupConfig, OnFatal};

use crate::error::CoreError;
use crate::events::Event as BusEvent;
use crate::group::{GroupActor, GroupArgs, GroupMsg};
use crate::process::{Context, ProcessShared};

/// How often the shutdown names the processes it still waits for.
pub(crate) const SHUTDOWN_REPORT_INTERVAL: Duration = Duration::from_secs(3);
/// How long the root waits for groups to finish `post_stop`.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One group as seen from outside the tree.
pub(crate) struct GroupEntry {
    /// The group's own settings, shared with its actor. `processes` is empty:
    /// each process's settings live once, in its member's [`ProcessShared`]
    /// (`members`), not in a second copy here.
    pub(crate) config: Arc<GroupConfig>,
    /// In start order.
    pub(crate) members: Vec<Arc<ProcessShared>>,
    pub(crate) actor: RwLock<Option<ActorRef<GroupMsg>>>,
}

impl GroupEntry {
    pub(crate) fn actor(&self) -> Option<ActorRef<GroupMsg>> {
        self.actor.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_actor(&self, actor: Option<ActorRef<GroupMsg>>) {
        *self.actor.write().unwrap_or_else(PoisonError::into_inner) = actor;
    }
}

/// Every group by name; written by the root, read by handles.
pub(crate) struct Registry {
    groups: RwLock<BTreeMap<String, Arc<GroupEntry>>>,
    /// Processes by `[program:x]` name, for dependency lookups without a scan.
    by_program: RwLock<HashMap<String, Vec<Arc<ProcessShared>>>>,
    /// Bumped whenever a group is added or removed (dependency monitors resolve
    /// names again).
    generation: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            groups: RwLock::default(),
            by_program: RwLock::default(),
            generation: watch::Sender::new(0),
        }
    }
}

impl Registry {
    /// Notified when groups are added or removed.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn group(&self, name: &str) -> Option<Arc<GroupEntry>> {
        self.groups.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Groups sorted by name (supervisord's status order).
    pub(crate) fn groups(&self) -> Vec<Arc<GroupEntry>> {
        self.groups.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Groups in start order: (priority, name).
    pub(crate) fn groups_by_priority(&self) -> Vec<Arc<GroupEntry>> {
        let mut groups = self.groups();
        groups.sort_by(|a, b| {
            (a.config.priority, &a.config.name).cmp(&(b.config.priority, &b.config.name))
        });
        groups
    }

    /// The processes of `[program:name]`, wherever their group.
    pub(crate) fn program(&self, name: &str) -> Vec<Arc<ProcessShared>> {
        self.by_program
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn insert(&self, entry: Arc<GroupEntry>) {
        {
            let mut by_program = self.by_program.write().unwrap_or_else(PoisonError::into_inner);
            for member in &entry.members {
                by_program
                    .entry(member.config.program.clone())
                    .or_default()
                    .push(Arc::clone(member));
            }
        }
        self.groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry.config.name.clone(), entry);
        self.generation.send_modify(|n| *n += 1);
    }

    fn remove(&self, name: &str) -> Option<Arc<GroupEntry>> {
        let removed = self.groups.write().unwrap_or_else(PoisonError::into_inner).remove(name);
        if removed.is_some() {
            let mut by_program = self.by_program.write().unwrap_or_else(PoisonError::into_inner);
            for members in by_program.values_mut() {
                members.retain(|member| member.config.group != name);
            }
            by_program.retain(|_, members| !members.is_empty());
        }
        self.generation.send_modify(|n| *n += 1);
        removed
    }
}

/// Messages to the [`RootActor`].
pub(crate) enum RootMsg {
    /// Adds a group whose members (and their logs) were already built.
    AddGroup {
        config: GroupConfig,
        members: Vec<Arc<ProcessShared>>,
        reply: RpcReplyPort<Result<(), CoreError>>,
    },
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
}

pub(crate) struct RootArgs {
    pub(crate) ctx: Arc<Context>,
    pub(crate) registry: Arc<Registry>,
}

pub(crate) struct RootActor;

pub(crate) struct RootState {
    ctx: Arc<Context>,
    registry: Arc<Registry>,
    by_id: HashMap<ActorId, String>,
    shutting_down: bool,
}

impl RootState {
    async fn spawn_group(
        &mut self,
        myself: &ActorRef<RootMsg>,
        entry: &Arc<GroupEntry>,
        resume: bool,
    ) -> Result<(), ActorProcessingErr> {
        let args = GroupArgs {
            config: Arc::clone(&entry.config),
            members: entry.members.clone(),
            ctx: Arc::clone(&self.ctx),
            resume,
        };
        // Boxed, so the group's `pre_start` (which builds its members) does not
        // size the root's resident future (see `GroupState::spawn_member`).
        let (actor, _join) =
            Box::pin(Actor::spawn_linked(None, GroupActor, args, myself.get_cell())).await?;
        self.by_id.insert(actor.get_id(), entry.config.name.clone());
        entry.set_actor(Some(actor));
        Ok(())
    }
}

impl Actor for RootActor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        Ok(RootState {
            ctx: args.ctx,
            registry: args.registry,
            by_id: HashMap::new(),
            shutting_down: false,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RootMsg>,
        _state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(None, Some(CHILD_STOP_TIMEOUT)).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        message: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::AddGroup { config, members, reply } => {
                let name = config.name.clone();
                if state.shutting_down {
                    let _ = reply.send(Err(CoreError::ShuttingDown));
                } else if state.registry.group(&name).is_some() {
                    let _ = reply.send(Err(CoreError::AlreadyAdded(name)));
                } else {
                    let entry = Arc::new(GroupEntry {
                        config: Arc::new(config),
                        members,
                        actor: RwLock::new(None),
                    });
                    match state.spawn_group(&myself, &entry, false).await {
                        Ok(()) => {
                            state.registry.insert(entry);
                            let _ = state.ctx.bus.send(BusEvent::GroupAdded { group: name });
                            let _ = reply.send(Ok(()));
                        }
                        Err(error) => {
                            let _ = reply.send(Err(CoreError::Failed(format!(
                                "could not start group '{name}': {error}"
                            ))));
                        }
                    }
                }
            }
            RootMsg::RemoveGroup { name, reply } => {
                let result = match state.registry.group(&name) {
                    None => Err(CoreError::BadName(name.clone())),
                    Some(entry) if entry.members.iter().any(|m| !m.state().is_stopped()) => {
                        Err(CoreError::StillRunning(name.clone()))
                    }
                    Some(entry) => {
                        state.registry.remove(&name);
                        if let Some(actor) = entry.actor() {
                            state.by_id.remove(&actor.get_id());
                            actor.stop(Some("group removed".to_owned()));
                        }
                        entry.set_actor(None);
                        let _ = state.ctx.bus.send(BusEvent::GroupRemoved { group: name.clone() });
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            RootMsg::ReplaceGroup { entry, reply } => {
                let name = entry.config.name.clone();
                let actor = state.registry.group(&name).and_then(|old| old.actor());
                let result = match actor {
                    _ if state.shutting_down => Err(CoreError::ShuttingDown),
                    None => Err(CoreError::BadName(name)),
                    Some(actor) => {
                        let config = Arc::clone(&entry.config);
                        let members = entry.members.clone();
                        match actor
                            .call(|reply| GroupMsg::Reconcile { config, members, reply }, None)
                            .await
                        {
                            Ok(ractor::rpc::CallResult::Success(())) => {
                                entry.set_actor(Some(actor));
                                state.registry.insert(entry);
                                Ok(())
                            }
                            _ => Err(CoreError::Failed(format!(
                                "group '{name}' did not take its new members"
                            ))),
                        }
                    }
                };
                let _ = reply.send(result);
            }
            RootMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let groups = state.registry.groups_by_priority();
                for group in &groups {
                    if let Some(actor) = group.actor() {
                        let _ = actor.cast(GroupMsg::DaemonShuttingDown);
                    }
                }
                tokio::spawn(async move {
                    if crate::deps::any(&groups) {
                        crate::deps::stop_in_dependency_order(&groups).await;
                    } else {
                        ordered_stop(groups).await;
                    }
                    let _ = reply.send(());
                });
            }
            RootMsg::Escalate { group, reason } => {
                let _ = state
                    .ctx
                    .bus
                    .send(BusEvent::GroupFatal { group: group.clone(), reason: reason.clone() });
                match state.ctx.on_fatal {
                    OnFatal::Ignore => {
                        tracing::error!("group '{group}' is FATAL ({reason}); on_fatal=ignore")
                    }
                    OnFatal::Shutdown if !state.shutting_down => {
                        tracing::error!(
                            "group '{group}' is FATAL ({reason}); on_fatal=shutdown: shutting down"
                        );
                        state.ctx.fatal.send_if_modified(|current| {
                            if current.is_some() {
                                return false;
                            }
                            *current = Some(crate::FatalShutdown { group, reason });
                            true
                        });
                    }
                    OnFatal::Shutdown => {}
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some(name) = state.by_id.remove(&cell.get_id()) else {
                    return Ok(());
                };
                tracing::error!("group actor of '{name}' failed: {error}");
                let Some(entry) = state.registry.group(&name) else {
                    return Ok(());
                };
                entry.set_actor(None);
                tracing::warn!("rebuilding the group actor of '{name}'");
                // During a shutdown nothing is restarted: the rebuilt process actors
                // come up STOPPED (their children were killed with the old ones), so
                // the ordered stop can move on.
                let resume = !state.shutting_down;
                state.spawn_group(&myself, &entry, resume).await?;
                if state.shutting_down
                    && let Some(actor) = entry.actor()
                {
                    let _ = actor.cast(GroupMsg::DaemonShuttingDown);
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

/// Stops `groups` (given in start order) one at a time, highest first.
async fn ordered_stop(groups: Vec<Arc<GroupEntry>>) {
    let mut report = tokio::time::interval(SHUTDOWN_REPORT_INTERVAL);
    for group in groups.iter().rev() {
        match group.actor() {
            Some(actor) => {
                let _ = actor.cast(GroupMsg::Shutdown);
            }
            None => tracing::error!("group '{}' has no actor to stop it", group.config.name),
        }
        let all_stopped = futures::future::join_all(group.members.iter().map(|member| {
            let mut snapshot = member.snapshot.subscribe();
            async move {
                let _ = snapshot.wait_for(|s| s.state.is_stopped()).await;
            }
        }));
        tokio::pin!(all_stopped);
        loop {
            tokio::select! {
                _ = &mut all_stopped => break,
                _ = report.tick() => {
                    let waiting: Vec<&str> = groups
                        .iter()
                        .flat_map(|g| g.members.iter())
                        .filter(|m| !m.state().is_stopped())
                        .map(|m| m.config.name.as_str())
                        .collect();
                    if !waiting.is_empty() {
                        tracing::info!("waiting for {} to die", waiting.join(", "));
                    }
                }
            }
        }
    }
}
