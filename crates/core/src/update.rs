//! Applying one group's part of an `update` plan to the running tree.
//!
//! supervisord restarts a whole group when anything in it changed. Here a
//! changed group is reconciled member by member, from vigil-config's
//! [`GroupChange`]: removed members are stopped and dropped, members whose
//! change needs a restart are stopped and replaced by a fresh member (a new
//! actor with the new config, started if `autostart`), members whose changes all
//! apply in place get their new lifecycle settings without a restart, and every
//! other member keeps its actor, child and pid. Only a change of the group's kind
//! (fcgi socket, event listener pool) restarts all of it.
//!
//! The member list is swapped in one step through the root (`ReplaceGroup`), so
//! handles never see a half-updated group.

use std::sync::Arc;

use ractor::RpcReplyPort;
use vigil_config::{Apply, GroupChange, GroupConfig, NameSpec, ProcessConfig};

use crate::error::CoreError;
use crate::handle::{Handle, call_root};
use crate::lifecycle::{LifecycleConfig, ProcessState};
use crate::logs::{Channel, ChannelLog};
use crate::members::{log_error, open_channel};
use crate::messages::{GroupEntry, ProcessMsg, ProcessShared, RootMsg};

/// How many times [`Handle::stop_for_removal`] stops members that something else
/// started again meanwhile.
const MAX_REMOVAL_ROUNDS: usize = 5;

/// What `update` did (or would do) to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateAction {
    /// Stopped and removed.
    Removed,
    /// Reconciled: changed members restarted or retuned, others untouched.
    Updated,
    /// Added; autostart processes started.
    Added,
}

/// One step of an update, in supervisorctl's order (removals, changes,
/// additions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUpdate {
    /// The group's name.
    pub group: String,
    /// What happened to the group as a whole.
    pub action: UpdateAction,
    /// Processes stopped by the step (process names).
    pub stopped: Vec<String>,
    /// Processes started by the step (process names; autostart ones only).
    pub started: Vec<String>,
    /// Processes whose changes were applied without a restart.
    pub changed_in_place: Vec<String>,
    /// Why the step did not complete; what happened before it stays done.
    pub error: Option<CoreError>,
}

impl GroupUpdate {
    pub(crate) fn new(group: &str, action: UpdateAction) -> GroupUpdate {
        GroupUpdate {
            group: group.to_owned(),
            action,
            stopped: Vec::new(),
            started: Vec::new(),
            changed_in_place: Vec::new(),
            error: None,
        }
    }
}

/// Whether a change of `fields` leaves the process's log channels usable as
/// they are (same files, same rotation), so a restarted member keeps its logs
/// and `tail -f` offsets.
fn keeps_logs(fields: &[vigil_config::FieldChange]) -> bool {
    !fields.iter().any(|f| {
        f.key.starts_with("stdout_") || f.key.starts_with("stderr_") || f.key == "redirect_stderr"
    })
}

impl Handle {
    /// `(process name, is running)` for each member of group `name`.
    pub fn infos_of_group(&self, name: &str) -> Result<Vec<(String, bool)>, CoreError> {
        let entry =
            self.inner.registry.group(name).ok_or_else(|| CoreError::BadName(name.to_owned()))?;
        Ok(entry.members.iter().map(|m| (m.config.name.clone(), m.state().is_running())).collect())
    }

    /// Replaces `[supervisord] environment`: every child started from now on
    /// gets the new one (running children keep theirs until restarted).
    pub fn set_global_environment(&self, environment: std::collections::BTreeMap<String, String>) {
        *self.inner.ctx.global_env.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            environment;
    }

    /// Stops and removes group `name` (update's "removed" step).
    pub async fn retire_group(&self, name: &str) -> GroupUpdate {
        let mut step = GroupUpdate::new(name, UpdateAction::Removed);
        let members = self
            .resolve(&NameSpec::Group(name.to_owned()))
            .map(|target| target.members)
            .unwrap_or_default();
        match self.stop_for_removal(&members).await {
            Ok(stopped) => step.stopped = stopped,
            Err(error) => step.error = Some(error),
        }
        if step.error.is_none()
            && let Err(error) = self.remove_group(name).await
        {
            step.error = Some(error);
        }
        step
    }

    /// Adds group `group` and starts its autostart processes (update's "added"
    /// step).
    pub async fn introduce_group(&self, group: GroupConfig) -> GroupUpdate {
        let mut step = GroupUpdate::new(&group.name, UpdateAction::Added);
        let autostart: Vec<String> =
            group.processes.iter().filter(|p| p.autostart).map(|p| p.name.clone()).collect();
        match self.add_group(group).await {
            Ok(()) => step.started = autostart,
            Err(error) => step.error = Some(error),
        }
        step
    }

    /// Reconciles a running group with its new config `group`, as `change`
    /// (vigil-config's diff of the two) describes.
    pub async fn update_group(&self, group: GroupConfig, change: &GroupChange) -> GroupUpdate {
        let name = group.name.clone();
        if change.restart_all {
            let removed = self.retire_group(&name).await;
            let mut step = GroupUpdate::new(&name, UpdateAction::Updated);
            step.stopped = removed.stopped;
            if let Some(error) = removed.error {
                step.error = Some(error);
                return step;
            }
            let added = self.introduce_group(group).await;
            step.started = added.started;
            step.error = added.error;
            return step;
        }
        let mut step = GroupUpdate::new(&name, UpdateAction::Updated);
        if let Err(error) = self.reconcile_group(group, change, &mut step).await {
            step.error = Some(error);
        }
        step
    }

    /// Stops `members`, whose actors are about to be dropped, and waits until none
    /// is running or stopping; returns the names it stopped. A member that another
    /// request (`restart all`, a SIGHUP, a dependency) is stopping or starting at the
    /// same moment is waited for too: dropping an actor whose child is still being
    /// stopped would kill the child early and leave that request waiting for a
    /// state the dropped actor never reports.
    async fn stop_for_removal(
        &self,
        members: &[Arc<ProcessShared>],
    ) -> Result<Vec<String>, CoreError> {
        let mut stopped = Vec::new();
        // Each round ends only when a concurrent start beat it; a few rounds are
        // plenty, and the actor's drop guard still covers a member left running.
        for _ in 0..MAX_REMOVAL_ROUNDS {
            let running: Vec<NameSpec> = members
                .iter()
                .filter(|m| m.state().is_running())
                .map(|m| NameSpec::process(m.config.group.clone(), m.config.name.clone()))
                .collect();
            for (spec, result) in self.stop(&running, true).await {
                match result {
                    Ok(()) => stopped.extend(spec.name().map(str::to_owned)),
                    // It stopped on its own meanwhile.
                    Err(CoreError::NotRunning(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            for member in members {
                let mut snapshot = member.snapshot.subscribe();
                // A stop always ends (stopwaitsecs, then SIGKILL); the sender lives in
                // `member`, so this cannot fail.
                let _ = snapshot.wait_for(|s| s.state != ProcessState::Stopping).await;
            }
            if members.iter().all(|m| m.state().is_stopped()) {
                break;
            }
        }
        Ok(stopped)
    }

    async fn reconcile_group(
        &self,
        group: GroupConfig,
        change: &GroupChange,
        step: &mut GroupUpdate,
    ) -> Result<(), CoreError> {
        if self.is_shutting_down() {
            return Err(CoreError::ShuttingDown);
        }
        let entry = self
            .inner
            .registry
            .group(&group.name)
            .ok_or_else(|| CoreError::BadName(group.name.clone()))?;
        let member = |name: &str| entry.members.iter().find(|m| m.config.name == name).cloned();
        let restarted: Vec<&str> =
            change.changed.iter().filter(|c| c.needs_restart()).map(|c| c.name.as_str()).collect();
        // 1. Stop what goes away or restarts, all together.
        let leaving: Vec<Arc<ProcessShared>> = change
            .removed
            .iter()
            .map(String::as_str)
            .chain(restarted.iter().copied())
            .filter_map(member)
            .collect();
        step.stopped.extend(self.stop_for_removal(&leaving).await?);
        // 2. The new member list, in the new start order.
        // The settings move into the members (see `GroupEntry::config`).
        let mut group = group;
        let processes = std::mem::take(&mut group.processes);
        let mut members = Vec::with_capacity(processes.len());
        let mut fresh = Vec::new();
        for process in processes {
            let old = member(&process.name);
            let process_change = change.changed.iter().find(|c| c.name == process.name);
            let replace = old.is_none() || process_change.is_some_and(|c| c.needs_restart());
            if !replace && let Some(old) = old {
                if let Some(process_change) = process_change {
                    // Every changed field applies in place.
                    debug_assert!(process_change.fields.iter().all(|f| f.apply == Apply::InPlace));
                    // Rotation sizes apply to the open logs at once (the same
                    // files: a changed path is a restart).
                    old.stdout.set_rotation(process.stdout.maxbytes, process.stdout.backups);
                    old.stderr.set_rotation(process.stderr.maxbytes, process.stderr.backups);
                    if let Some(actor) = old.actor() {
                        let _ = actor.cast(ProcessMsg::Retune(Box::new(
                            LifecycleConfig::from_process(&process),
                        )));
                    }
                    step.changed_in_place.push(process.name.clone());
                }
                members.push(old);
                continue;
            }
            let reuse = match (&old, process_change) {
                (Some(old), Some(c)) if keeps_logs(&c.fields) => {
                    Some((old.stdout.clone(), old.stderr.clone()))
                }
                _ => None,
            };
            let (stdout, stderr) = match reuse {
                Some(logs) => logs,
                None => self.open_logs(&process)?,
            };
            let shared = Arc::new(ProcessShared::new(process, stdout, stderr));
            fresh.push(Arc::clone(&shared));
            members.push(shared);
        }
        // 3. Swap the group in one step.
        let entry =
            Arc::new(GroupEntry { config: Arc::new(group), members, actor: Default::default() });
        call_root(&self.inner.root, |reply: RpcReplyPort<Result<(), CoreError>>| {
            RootMsg::ReplaceGroup { entry, reply }
        })
        .await??;
        // 4. Start the new members that start on their own.
        for member in fresh {
            if member.config.autostart {
                step.started.push(member.config.name.clone());
            }
            if let Some(actor) = member.actor() {
                let _ = actor.call(ProcessMsg::Autostart, None).await;
            }
        }
        Ok(())
    }

    fn open_logs(&self, process: &ProcessConfig) -> Result<(ChannelLog, ChannelLog), CoreError> {
        let settings = &self.inner.settings;
        let stdout = open_channel(process, Channel::Stdout, settings)?;
        let stderr = if process.redirect_stderr {
            ChannelLog::open(None, 0, 0, 0).map_err(|e| log_error(process, Channel::Stderr, e))?
        } else {
            open_channel(process, Channel::Stderr, settings)?
        };
        Ok((stdout, stderr))
    }
}
