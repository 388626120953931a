//! The config actor: owns the configuration of the running tree and hands
//! changes to it (`reread`, `update`, `add`, `remove`, `avail`).
//!
//! It keeps two configs, as supervisord does:
//! - `active`: what the tree runs. Its groups are exactly the active groups
//!   (`add`/`remove`/`update` keep it in step), so `reread` compares the file
//!   with what runs (supervisord's `diff_to_active`).
//! - `last_read`: the file as last read (at start, by `reread` or `update`);
//!   `add` takes groups from it and `avail` lists it. Until the first change
//!   to either, it is `active` itself rather than a second copy of every
//!   program's settings.
//!
//! Reading the file is the daemon's business (it applies its command-line
//! overlay), so the actor gets a [`Loader`]. A file with errors changes nothing
//! and every error comes back. Requests are handled one at a time: an `update`
//! that waits for `stopwaitsecs` delays a concurrent `reread`, never interleaves
//! with it. The work runs inside the actor, so a caller that goes away (RPC
//! deadline, Ctrl-C) abandons the answer, not the update.

use std::sync::Arc;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use vigil_config::{Config, Diagnostic, GroupConfig, Plan, ProcessConfig, diff};

use crate::error::CoreError;
use crate::handle::Handle;
use crate::update::{GroupUpdate, UpdateAction};

/// Reads and validates the configuration file; every problem on failure.
pub type Loader = Arc<dyn Fn() -> Result<Config, Vec<Diagnostic>> + Send + Sync>;

/// Why a config request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file has errors; nothing was changed.
    #[error("the configuration has {} error(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
    /// The tree refused or failed a step.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// The answer to `update`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateOutcome {
    /// Nothing was applied: the steps say what would have been done.
    pub dry_run: bool,
    /// Requested names that are neither active nor in the file.
    pub unknown_groups: Vec<String>,
    /// What was done (or would be), group by group, in supervisorctl's order.
    pub steps: Vec<GroupUpdate>,
}

/// One process of the last-read config (`avail`, `getAllConfigInfo`).
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    /// The process's settings as read.
    pub process: ProcessConfig,
    /// Its group's `priority`.
    pub group_priority: i32,
    /// Its group is active.
    pub inuse: bool,
}

enum ConfigMsg {
    Reread(RpcReplyPort<Result<Plan, ConfigError>>),
    Update {
        groups: Vec<String>,
        dry_run: bool,
        reply: RpcReplyPort<Result<UpdateOutcome, ConfigError>>,
    },
    Add {
        name: String,
        reply: RpcReplyPort<Result<(), CoreError>>,
    },
    Remove {
        name: String,
        reply: RpcReplyPort<Result<(), CoreError>>,
    },
    Avail(RpcReplyPort<Vec<Available>>),
}

struct ConfigActor;

struct ConfigState {
    handle: Handle,
    loader: Loader,
    active: Config,
    /// `None` while the file as last read is `active` (see the module docs);
    /// read through [`ConfigState::last_read`], and set by
    /// [`ConfigState::active_mut`] before `active` changes.
    last_read: Option<Config>,
}

struct ConfigArgs {
    handle: Handle,
    loader: Loader,
    config: Config,
}

/// A cheap handle to the config actor.
#[derive(Clone)]
pub struct ConfigControl {
    actor: ActorRef<ConfigMsg>,
}

impl ConfigControl {
    /// Starts the actor for a tree started with `config`.
    pub async fn start(
        handle: Handle,
        config: Config,
        loader: Loader,
    ) -> Result<ConfigControl, CoreError> {
        let args = ConfigArgs { handle, loader, config };
        let (actor, _join) = Actor::spawn(None, ConfigActor, args).await.map_err(|error| {
            CoreError::Failed(format!("could not start the config actor: {error}"))
        })?;
        Ok(ConfigControl { actor })
    }

    /// Re-reads the file and compares it with the active groups.
    pub async fn reread(&self) -> Result<Plan, ConfigError> {
        self.call(ConfigMsg::Reread).await?
    }

    /// Re-reads the file and applies the difference for `groups` (every group
    /// when empty); with `dry_run` only says what it would do.
    pub async fn update(
        &self,
        groups: Vec<String>,
        dry_run: bool,
    ) -> Result<UpdateOutcome, ConfigError> {
        self.call(|reply| ConfigMsg::Update { groups, dry_run, reply }).await?
    }

    /// Activates a group of the last-read config (`ALREADY_ADDED`, `BAD_NAME`).
    pub async fn add_group(&self, name: String) -> Result<(), CoreError> {
        self.call(|reply| ConfigMsg::Add { name, reply }).await?
    }

    /// Removes a stopped group (`STILL_RUNNING`, `BAD_NAME`).
    pub async fn remove_group(&self, name: String) -> Result<(), CoreError> {
        self.call(|reply| ConfigMsg::Remove { name, reply }).await?
    }

    /// Every process of the last-read config, sorted by group then name.
    pub async fn avail(&self) -> Result<Vec<Available>, CoreError> {
        self.call(ConfigMsg::Avail).await
    }

    /// Stops the actor (the tree is going away).
    pub fn stop(&self) {
        self.actor.stop(None);
    }

    async fn call<T: Send + 'static>(
        &self,
        message: impl FnOnce(RpcReplyPort<T>) -> ConfigMsg,
    ) -> Result<T, CoreError> {
        match self.actor.call(message, None).await {
            Ok(CallResult::Success(value)) => Ok(value),
            _ => Err(CoreError::ShuttingDown),
        }
    }
}

impl Actor for ConfigActor {
    type Msg = ConfigMsg;
    type State = ConfigState;
    type Arguments = ConfigArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ConfigMsg>,
        args: ConfigArgs,
    ) -> Result<ConfigState, ActorProcessingErr> {
        Ok(ConfigState {
            handle: args.handle,
            loader: args.loader,
            last_read: None,
            active: args.config,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ConfigMsg>,
        message: ConfigMsg,
        state: &mut ConfigState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ConfigMsg::Reread(reply) => {
                let result = state.read().await.map(|new| diff(&state.active, &new));
                let _ = reply.send(result);
            }
            ConfigMsg::Update { groups, dry_run, reply } => {
                let result = match state.read().await {
                    Err(error) => Err(error),
                    Ok(new) => Ok(state.update(&new, &groups, dry_run).await),
                };
                let _ = reply.send(result);
            }
            ConfigMsg::Add { name, reply } => {
                let _ = reply.send(state.add(&name).await);
            }
            ConfigMsg::Remove { name, reply } => {
                let result = state.handle.remove_group(&name).await;
                if result.is_ok() {
                    state.active_mut().groups.retain(|g| g.name != name);
                }
                let _ = reply.send(result);
            }
            ConfigMsg::Avail(reply) => {
                let _ = reply.send(state.avail());
            }
        }
        Ok(())
    }
}

impl ConfigState {
    /// Loads the file off the runtime's worker threads; on success it becomes
    /// `last_read`.
    async fn read(&mut self) -> Result<Config, ConfigError> {
        let loader = Arc::clone(&self.loader);
        let loaded = tokio::task::spawn_blocking(move || loader()).await.map_err(|error| {
            CoreError::Failed(format!("reading the configuration failed: {error}"))
        })?;
        let config = loaded.map_err(ConfigError::Invalid)?;
        self.last_read = Some(config.clone());
        Ok(config)
    }

    /// The file as last read.
    fn last_read(&self) -> &Config {
        self.last_read.as_ref().unwrap_or(&self.active)
    }

    /// `active`, for a change: the file as last read keeps its own copy first.
    fn active_mut(&mut self) -> &mut Config {
        if self.last_read.is_none() {
            self.last_read = Some(self.active.clone());
        }
        &mut self.active
    }

    async fn add(&mut self, name: &str) -> Result<(), CoreError> {
        if self.handle.is_shutting_down() {
            return Err(CoreError::ShuttingDown);
        }
        if self.active.group(name).is_some() {
            return Err(CoreError::AlreadyAdded(name.to_owned()));
        }
        let group = self
            .last_read()
            .group(name)
            .cloned()
            .ok_or_else(|| CoreError::BadName(name.to_owned()))?;
        self.handle.add_group(group.clone()).await?;
        self.set_active(group);
        Ok(())
    }

    fn set_active(&mut self, group: GroupConfig) {
        let active = self.active_mut();
        active.groups.retain(|g| g.name != group.name);
        active.groups.push(group);
        active.groups.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    }

    fn avail(&self) -> Vec<Available> {
        let mut out: Vec<Available> = self
            .last_read()
            .groups
            .iter()
            .flat_map(|group| {
                let inuse = self.active.group(&group.name).is_some();
                group.processes.iter().map(move |process| Available {
                    process: ProcessConfig::clone(process),
                    group_priority: group.priority,
                    inuse,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.process.group, &a.process.name).cmp(&(&b.process.group, &b.process.name))
        });
        out
    }

    async fn update(&mut self, new: &Config, groups: &[String], dry_run: bool) -> UpdateOutcome {
        let plan = diff(&self.active, new);
        let all = groups.is_empty() || groups.iter().any(|g| g == "all");
        // The only daemon-wide setting `update` applies: the global environment,
        // for every child started from now on (supervisord restarts every group).
        if !dry_run && all && self.active.supervisord.environment != new.supervisord.environment {
            self.handle.set_global_environment(new.supervisord.environment.clone());
            self.active_mut().supervisord.environment = new.supervisord.environment.clone();
        }
        let mut outcome = UpdateOutcome { dry_run, ..UpdateOutcome::default() };
        for name in groups.iter().filter(|_| !all) {
            if self.active.group(name).is_none() && new.group(name).is_none() {
                outcome.unknown_groups.push(name.clone());
            }
        }
        let wanted = |name: &str| all || groups.iter().any(|g| g == name);
        for name in plan.removed.iter().filter(|n| wanted(n)) {
            let step = if dry_run {
                let mut step = GroupUpdate::new(name, UpdateAction::Removed);
                step.stopped = self.running(name, None);
                step
            } else {
                let step = self.handle.retire_group(name).await;
                if step.error.is_none() {
                    self.active_mut().groups.retain(|g| &g.name != name);
                }
                step
            };
            outcome.steps.push(step);
        }
        for change in plan.changed.iter().filter(|c| wanted(&c.name)) {
            let Some(group) = new.group(&change.name).cloned() else { continue };
            let step = if dry_run {
                let mut step = GroupUpdate::new(&change.name, UpdateAction::Updated);
                let restart: Vec<&str> = if change.restart_all {
                    group.processes.iter().map(|p| p.name.as_str()).collect()
                } else {
                    change
                        .removed
                        .iter()
                        .map(String::as_str)
                        .chain(
                            change
                                .changed
                                .iter()
                                .filter(|c| c.needs_restart())
                                .map(|c| c.name.as_str()),
                        )
                        .collect()
                };
                step.stopped = self.running(&change.name, Some(&restart));
                let starts = |p: &&Arc<ProcessConfig>| {
                    p.autostart
                        && (change.restart_all
                            || change.added.contains(&p.name)
                            || change.changed.iter().any(|c| c.name == p.name && c.needs_restart()))
                };
                step.started =
                    group.processes.iter().filter(starts).map(|p| p.name.clone()).collect();
                step.changed_in_place = change
                    .changed
                    .iter()
                    .filter(|c| !change.restart_all && !c.needs_restart())
                    .map(|c| c.name.clone())
                    .collect();
                step
            } else {
                let step = self.handle.update_group(group.clone(), change).await;
                if step.error.is_none() {
                    self.set_active(group);
                }
                step
            };
            outcome.steps.push(step);
        }
        for name in plan.added.iter().filter(|n| wanted(n)) {
            let Some(group) = new.group(name).cloned() else { continue };
            let step = if dry_run {
                let mut step = GroupUpdate::new(name, UpdateAction::Added);
                step.started = group
                    .processes
                    .iter()
                    .filter(|p| p.autostart)
                    .map(|p| p.name.clone())
                    .collect();
                step
            } else {
                let step = self.handle.introduce_group(group.clone()).await;
                if step.error.is_none() {
                    self.set_active(group);
                }
                step
            };
            outcome.steps.push(step);
        }
        outcome
    }

    /// Running processes of group `name` (restricted to `only` if given).
    fn running(&self, name: &str, only: Option<&[&str]>) -> Vec<String> {
        let Ok(infos) = self.handle.infos_of_group(name) else { return Vec::new() };
        infos
            .into_iter()
            .filter(|(process, running)| {
                *running && only.is_none_or(|only| only.contains(&process.as_str()))
            })
            .map(|(process, _)| process)
            .collect()
    }
}
