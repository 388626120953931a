//! [`RootActor`]: supervises the group actors and runs the ordered shutdown.
//!
//! The root owns the set of groups (adding and removing them) and keeps the
//! [`Registry`] in step, which is how the handle reaches processes without
//! going through the tree's mailboxes. Like every supervisor here it overrides
//! `handle_supervisor_evt` (ractor's default would stop the root when any group
//! fails): a failed group actor is rebuilt from its config and shared member
//! state, restarting what was running (its process actors were killed with it,
//! and their drop guards killed their children).
//!
//! Shutdown follows supervisord (`ordered_stop_groups_phase_1/2`): first every
//! process is told that no automatic start may happen any more, then groups are
//! stopped in descending priority order, the next priority only when every
//! process of the current one is in a stopped state. supervisord takes groups of
//! equal priority one at a time too, in name order; Vigil stops them together,
//! since priority is the only order a config asks for (5,000 one-program groups
//! would otherwise take 5,000 round trips). While waiting it logs
//! `waiting for a, b to die` every 3 s. The waiting runs in a task, never inside a
//! handler, so supervision keeps working meanwhile. When processes have
//! `depends_on`, the stop order is the reverse dependency order instead, at the
//! process level ([`crate::deps::stop_in_dependency_order`]).
//!
//! Escalation: a group whose restart budget is exhausted sends
//! [`RootMsg::Escalate`]. With `on_fatal = shutdown` the root publishes a
//! `FatalShutdown`; the handle runs the ordered shutdown on it and
//! the daemon exits with `FATAL_EXIT_CODE`. With `ignore` (the default)
//! the group just stays FATAL. A program that gives up after `startretries`,
//! or an `essential` one that ends, is escalated by its own actor through
//! [`Context::process_ended`] (the same ordered shutdown; an essential
//! program's status becomes the daemon's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use vigil_config::{GroupConfig, OnFatal};

use crate::context::{Context, FatalShutdown};
use crate::deps;
use crate::error::CoreError;
use crate::events::Event as BusEvent;
use crate::group::{GroupActor, GroupArgs, GroupState};
use crate::messages::{
    BuildQueue, GroupEntry, GroupMsg, GroupRef, ProcessMsg, ProcessShared, Queued, RootMsg,
};
use crate::registry::Registry;

/// How often the shutdown names the processes it still waits for.
pub(crate) const SHUTDOWN_REPORT_INTERVAL: Duration = Duration::from_secs(3);
/// How many groups [`RootMsg::AddGroups`] starts at once.
const BUILD_WINDOW: usize = 64;
/// How long the root waits for groups to finish `post_stop`.
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct RootArgs {
    pub(crate) ctx: Arc<Context>,
    pub(crate) registry: Arc<Registry>,
}

pub(crate) struct RootActor;

/// A group [`RootMsg::AddGroups`] started.
enum Started {
    /// Supervised by the root itself.
    Hosted(GroupState, GroupRef),
    /// With a group actor of its own.
    Actor(ActorRef<GroupMsg>),
}

pub(crate) struct RootState {
    ctx: Arc<Context>,
    registry: Arc<Registry>,
    /// The group actors, by actor id.
    by_id: HashMap<ActorId, String>,
    /// The groups whose supervision the root hosts (see [`GroupRef`]): those
    /// created with a single member, whose process actor the root supervises.
    /// Boxed: a table of thousands keeps up to twice as many slots as
    /// entries, and an empty slot then costs a pointer, not a group's state.
    hosted: HashMap<Arc<str>, Box<GroupState>>,
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
        entry.set_actor(Some(GroupRef::Actor(actor)));
        Ok(())
    }

    /// Handles `message` for the hosted group `group`. An error (an actor that
    /// could not be spawned) is logged: it must not bring the root down.
    async fn hosted_message(&mut self, myself: &ActorRef<RootMsg>, group: &str, message: GroupMsg) {
        let Some(state) = self.hosted.get_mut(group) else {
            return;
        };
        if let Err(error) = Box::pin(state.handle(&myself.get_cell(), message)).await {
            tracing::error!("group '{group}': {error}");
        }
    }

    /// [`RootMsg::AddGroup`].
    async fn add_group(
        &mut self,
        myself: &ActorRef<RootMsg>,
        config: GroupConfig,
        members: Vec<Arc<ProcessShared>>,
    ) -> Result<(), CoreError> {
        // One group is a batch of one: the same checks, start and event.
        self.add_groups(myself, Arc::new(BuildQueue::new(vec![(config, members).into()]))).await
    }

    /// [`RootMsg::AddGroups`]: the groups' actors (or, for a hosted group,
    /// its member's) are spawned [`BUILD_WINDOW`] at a time, each group's on a
    /// task of its own, so every runtime worker builds. Built inside the
    /// root's task, each actor's spawn woke the idle worker to run its loop,
    /// and the two took turns: with 5,000 programs that was 16,000 context
    /// switches and 200 ms, against 95 ms this way. Each group is in the
    /// registry as soon as it and the groups queued before it have started,
    /// and the queue's order is the start order (a hurried group comes next).
    async fn add_groups(
        &mut self,
        myself: &ActorRef<RootMsg>,
        queue: Arc<BuildQueue>,
    ) -> Result<(), CoreError> {
        use futures::StreamExt as _;
        if self.shutting_down {
            queue.finish_all();
            return Err(CoreError::ShuttingDown);
        }
        let mut names = std::collections::HashSet::new();
        for name in queue.names() {
            if self.registry.group(&name).is_some() || !names.insert(name.clone()) {
                queue.finish_all();
                return Err(CoreError::AlreadyAdded(name));
            }
        }
        let (cell, root, ctx) = (myself.get_cell(), myself.clone(), Arc::clone(&self.ctx));
        let source = Arc::clone(&queue);
        let mut started = futures::stream::poll_fn(move |cx| source.poll_next(cx))
            .map(move |queued: Queued| {
                let (cell, root, ctx) = (cell.clone(), root.clone(), Arc::clone(&ctx));
                let name = queued.config().name.clone();
                let task = tokio::spawn(async move {
                    // Members not built yet are built here, on this task.
                    let entry =
                        crate::members::build_queued(queued).map_err(|error| error.to_string())?;
                    let args = GroupArgs {
                        config: Arc::clone(&entry.config),
                        members: entry.members.clone(),
                        ctx,
                        resume: false,
                    };
                    // A group created with a single member is supervised by
                    // the root itself: no group actor (a second idle actor for
                    // every plain `[program:x]`); its process actor is the
                    // root's child.
                    let started = if entry.members.len() == 1 {
                        let name: Arc<str> = Arc::from(entry.config.name.as_str());
                        let link = GroupRef::Hosted { root, group: name };
                        Box::pin(GroupState::start(args, &cell, link.clone()))
                            .await
                            .map(|group| Started::Hosted(group, link))
                    } else {
                        // Boxed, as in `spawn_group`.
                        Box::pin(Actor::spawn_linked(None, GroupActor, args, cell))
                            .await
                            .map(|(actor, _join)| Started::Actor(actor))
                            .map_err(ActorProcessingErr::from)
                    };
                    Ok((entry, started))
                });
                async move {
                    match task.await {
                        Ok(Ok(done)) => Ok(done),
                        Ok(Err(error)) => Err((name, error)),
                        Err(error) => Err((name, error.to_string())),
                    }
                }
            })
            .buffered(BUILD_WINDOW);
        let mut first_error = None;
        while let Some(joined) = started.next().await {
            let (entry, started) = match joined {
                Ok(joined) => joined,
                Err((name, error)) => {
                    first_error.get_or_insert_with(|| {
                        CoreError::Failed(format!("could not start group '{name}': {error}"))
                    });
                    queue.finish(&name);
                    continue;
                }
            };
            let name = entry.config.name.clone();
            match started {
                Ok(Started::Hosted(group, link)) => {
                    // Keyed by the name its link carries: one allocation.
                    let key = match &link {
                        GroupRef::Hosted { group, .. } => Arc::clone(group),
                        GroupRef::Actor(_) => Arc::from(name.as_str()),
                    };
                    self.hosted.insert(key, Box::new(group));
                    entry.set_actor(Some(link));
                }
                Ok(Started::Actor(actor)) => {
                    self.by_id.insert(actor.get_id(), name.clone());
                    entry.set_actor(Some(GroupRef::Actor(actor)));
                }
                Err(error) => {
                    first_error.get_or_insert_with(|| {
                        CoreError::Failed(format!("could not start group '{name}': {error}"))
                    });
                    queue.finish(&name);
                    continue;
                }
            }
            self.registry.insert(entry);
            queue.finish(&name);
            crate::events::publish(&self.ctx.bus, BusEvent::GroupAdded { group: name });
        }
        self.ctx.changed();
        first_error.map_or(Ok(()), Err)
    }

    /// [`RootMsg::RemoveGroup`].
    fn remove_group(&mut self, name: &str) -> Result<(), CoreError> {
        let entry = match self.registry.group(name) {
            None => return Err(CoreError::BadName(name.to_owned())),
            Some(entry) if entry.members.iter().any(|m| !m.state().is_stopped()) => {
                return Err(CoreError::StillRunning(name.to_owned()));
            }
            Some(entry) => entry,
        };
        self.registry.remove(name);
        self.ctx.changed();
        // The daemon lets go of an fcgi group's socket with the group.
        self.ctx.fcgi.remove(name);
        match entry.actor() {
            Some(GroupRef::Actor(actor)) => {
                self.by_id.remove(&actor.get_id());
                actor.stop(Some("group removed".to_owned()));
            }
            Some(GroupRef::Hosted { group, .. }) => {
                if let Some(state) = self.hosted.remove(&group) {
                    state.stop_members("group removed");
                }
            }
            None => {}
        }
        entry.set_actor(None);
        crate::events::publish(&self.ctx.bus, BusEvent::GroupRemoved { group: name.to_owned() });
        Ok(())
    }

    /// [`RootMsg::ReplaceGroup`].
    async fn replace_group(
        &mut self,
        myself: &ActorRef<RootMsg>,
        entry: Arc<GroupEntry>,
    ) -> Result<(), CoreError> {
        let name = entry.config.name.clone();
        let actor = self.registry.group(&name).and_then(|old| old.actor());
        let actor = match actor {
            _ if self.shutting_down => return Err(CoreError::ShuttingDown),
            None => return Err(CoreError::BadName(name)),
            Some(actor) => actor,
        };
        let config = Arc::clone(&entry.config);
        let members = entry.members.clone();
        let reconciled = match &actor {
            GroupRef::Actor(group) => matches!(
                group.call(|reply| GroupMsg::Reconcile { config, members, reply }, None).await,
                Ok(ractor::rpc::CallResult::Success(()))
            ),
            GroupRef::Hosted { group, .. } => match self.hosted.get_mut(group) {
                Some(state) => {
                    let cell = myself.get_cell();
                    match Box::pin(state.reconcile(&cell, config, members)).await {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::error!("group '{name}': {error}");
                            false
                        }
                    }
                }
                None => false,
            },
        };
        match reconciled {
            true => {
                entry.set_actor(Some(actor));
                self.registry.insert(entry);
                self.ctx.changed();
                Ok(())
            }
            false => Err(CoreError::Failed(format!("group '{name}' did not take its new members"))),
        }
    }

    /// [`RootMsg::Escalate`]: publishes the FATAL group and applies `on_fatal`.
    fn escalate(&mut self, group: String, reason: String) {
        let fatal = BusEvent::GroupFatal { group: group.clone(), reason: reason.clone() };
        crate::events::publish(&self.ctx.bus, fatal);
        match self.ctx.on_fatal {
            OnFatal::Ignore => {
                tracing::error!("group '{group}' is FATAL ({reason}); on_fatal=ignore")
            }
            OnFatal::Shutdown if !self.shutting_down => {
                tracing::error!(
                    "group '{group}' is FATAL ({reason}); on_fatal=shutdown: shutting down"
                );
                let reason = format!("group '{group}' is FATAL: {reason}");
                self.ctx.escalate(FatalShutdown {
                    group,
                    reason,
                    exit_code: crate::FATAL_EXIT_CODE,
                });
            }
            OnFatal::Shutdown => {}
        }
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
            hosted: HashMap::new(),
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
                let _ = reply.send(state.add_group(&myself, config, members).await);
            }
            RootMsg::AddGroups { groups, reply } => {
                let _ = reply.send(state.add_groups(&myself, groups).await);
            }
            RootMsg::RemoveGroup { name, reply } => {
                let _ = reply.send(state.remove_group(&name));
            }
            RootMsg::ReplaceGroup { entry, reply } => {
                let _ = reply.send(state.replace_group(&myself, entry).await);
            }
            RootMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let groups = state.registry.groups_by_priority();
                for group in &groups {
                    match group.actor() {
                        Some(GroupRef::Actor(actor)) => {
                            let _ = actor.cast(GroupMsg::DaemonShuttingDown);
                        }
                        Some(GroupRef::Hosted { group, .. }) => {
                            state
                                .hosted_message(&myself, &group, GroupMsg::DaemonShuttingDown)
                                .await;
                        }
                        None => {}
                    }
                }
                tokio::spawn(async move {
                    if deps::any(&groups) {
                        deps::stop_in_dependency_order(&groups).await;
                    } else {
                        ordered_stop(groups).await;
                    }
                    let _ = reply.send(());
                });
            }
            RootMsg::Escalate { group, reason } => state.escalate(group, reason),
            RootMsg::Group { group, message } => {
                state.hosted_message(&myself, &group, message).await;
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
        // A process actor of a hosted group: the group's own supervision.
        let id = match &event {
            SupervisionEvent::ActorFailed(cell, _)
            | SupervisionEvent::ActorTerminated(cell, ..) => Some(cell.get_id()),
            _ => None,
        };
        if let Some(id) = id
            && let Some(group) = state.hosted.values_mut().find(|group| group.supervises(id))
        {
            if let Err(error) = Box::pin(group.supervise(&myself.get_cell(), event)).await {
                tracing::error!("rebuilding a process actor failed: {error}");
            }
            return Ok(());
        }
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
    // `groups` is in ascending (priority, name) order: stop it backwards, all
    // groups of one priority at once.
    for level in groups.chunk_by(|a, b| a.config.priority == b.config.priority).rev() {
        for group in level.iter().rev() {
            match group.actor() {
                // What `GroupMsg::Shutdown` does for a group, sent to the
                // members straight: through the root's mailbox, 5,000 hosted
                // groups were stopped one message at a time.
                Some(GroupRef::Hosted { .. }) => {
                    for member in group.members.iter().rev() {
                        if let Some(actor) = member.actor() {
                            let _ = actor.cast(ProcessMsg::Shutdown);
                        }
                    }
                }
                Some(actor) => {
                    let _ = actor.cast(GroupMsg::Shutdown);
                }
                None => tracing::error!("group '{}' has no actor to stop it", group.config.name),
            }
        }
        let all_stopped = futures::future::join_all(
            level.iter().flat_map(|group| &group.members).map(|member| {
                let mut snapshot = member.snapshot.subscribe();
                async move {
                    let _ = snapshot.wait_for(|s| s.state.is_stopped()).await;
                }
            }),
        );
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
