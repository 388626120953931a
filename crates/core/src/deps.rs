//! Dependencies between processes (`depends_on`), across groups.
//!
//! Conditions are read from the published snapshots of the processes a
//! dependency names (a program name means every instance of it, `group:process`
//! one process), so nothing here goes through a mailbox:
//!
//! | condition | met while the dependency is |
//! |---|---|
//! | `started` | STARTING with a child, or RUNNING |
//! | `running` (default) | RUNNING (with a readiness probe: ready) |
//! | `healthy` | RUNNING and its liveness probe not failing |
//! | `completed` | EXITED |
//! | `completed_successfully` | EXITED with a code in its `exitcodes` |
//!
//! The gate: every spawn of a process with dependencies passes through
//! [`crate::lifecycle::Effect::AwaitDependencies`]; its actor checks [`unmet`]
//! at once and, while something is unmet, stays STARTING with no child and
//! publishes what it waits for. A [`spawn_monitor`] task per dependent process
//! (a task, not a thread) wakes the actor whenever a dependency's snapshot
//! changes or groups come and go; the actor re-checks, spawns when everything is
//! met, and when a dependency it was running on stops meeting its condition
//! (a crash, a failed liveness probe, a stop, a restart) it is stopped and
//! requeued behind the gate (`restart_dependents`, the default).
//!
//! Order: [`start_order`] sorts processes topologically, with the config's
//! (group priority, group name, process priority, name) order breaking ties;
//! stops go the other way ([`stop_in_dependency_order`]): a process is stopped
//! only once every process depending on it is stopped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_config::{Dependency, DependencyCondition, NameSpec, ProcessConfig};

use crate::info::{Health, Snapshot};
use crate::lifecycle::ProcessState;
use crate::messages::{GroupEntry, ProcessMsg, ProcessShared};
use crate::registry::Registry;

/// The one process a `group:name` dependency names; `None` for a program name,
/// which names every instance of the program.
fn process_named(dependency: &Dependency) -> Option<NameSpec> {
    dependency.name.contains(':').then(|| NameSpec::split(&dependency.name))
}

/// Whether `dependency` names the process `config`.
pub(crate) fn names(dependency: &Dependency, config: &ProcessConfig) -> bool {
    match process_named(dependency) {
        Some(spec) => {
            spec.group() == Some(config.group.as_str()) && spec.name() == Some(config.name.as_str())
        }
        None => config.program == dependency.name,
    }
}

/// The processes `dependency` names, among every group of the tree.
pub(crate) fn resolve(registry: &Registry, dependency: &Dependency) -> Vec<Arc<ProcessShared>> {
    match process_named(dependency) {
        Some(spec) => spec
            .group()
            .and_then(|group| registry.group(group))
            .map(|entry| {
                entry.members.iter().filter(|m| names(dependency, &m.config)).cloned().collect()
            })
            .unwrap_or_default(),
        None => registry.program(&dependency.name),
    }
}

/// The pids of every process `config` depends on: a change while all are met
/// means one restarted between two looks (a restart faster than the monitor).
pub(crate) fn fingerprint(registry: &Registry, config: &ProcessConfig) -> Vec<Option<u32>> {
    config
        .depends_on
        .iter()
        .flat_map(|dependency| resolve(registry, dependency))
        .map(|target| target.snapshot.borrow().pid)
        .collect()
}

/// The first dependency of `config` that cannot be met any more without a
/// user's action: one of its processes is FATAL.
pub(crate) fn hopeless(registry: &Registry, config: &ProcessConfig) -> Option<String> {
    config.depends_on.iter().find_map(|dependency| {
        resolve(registry, dependency)
            .iter()
            .any(|target| target.state() == ProcessState::Fatal)
            .then(|| label(dependency))
    })
}

/// Whether a process in `snapshot` meets `condition`.
pub(crate) fn meets(
    condition: DependencyCondition,
    config: &ProcessConfig,
    snapshot: &Snapshot,
) -> bool {
    match condition {
        DependencyCondition::Started => {
            snapshot.pid.is_some()
                && matches!(snapshot.state, ProcessState::Starting | ProcessState::Running)
        }
        DependencyCondition::Running => snapshot.state == ProcessState::Running,
        DependencyCondition::Healthy => {
            snapshot.state == ProcessState::Running && snapshot.health != Some(Health::Unhealthy)
        }
        DependencyCondition::Completed => snapshot.state == ProcessState::Exited,
        DependencyCondition::CompletedSuccessfully => snapshot.completed_successfully(config),
    }
}

/// How a dependency is shown while waited for: `db`, `cache:healthy`.
pub(crate) fn label(dependency: &Dependency) -> String {
    let condition = match dependency.condition {
        DependencyCondition::Running => return dependency.name.clone(),
        DependencyCondition::Started => "started",
        DependencyCondition::Healthy => "healthy",
        DependencyCondition::Completed => "completed",
        DependencyCondition::CompletedSuccessfully => "completed_successfully",
    };
    format!("{}:{condition}", dependency.name)
}

/// The dependencies of `config` not met right now, as labels. A dependency
/// naming no process (its group was removed) is unmet.
pub(crate) fn unmet(registry: &Registry, config: &ProcessConfig) -> Vec<String> {
    config
        .depends_on
        .iter()
        .filter(|dependency| {
            let targets = resolve(registry, dependency);
            targets.is_empty()
                || targets.iter().any(|target| {
                    target.held.load(std::sync::atomic::Ordering::SeqCst)
                        || !meets(dependency.condition, &target.config, &target.snapshot.borrow())
                })
        })
        .map(label)
        .collect()
}

/// Every process whose `depends_on` names `member` directly.
pub(crate) fn dependents(registry: &Registry, member: &ProcessShared) -> Vec<Arc<ProcessShared>> {
    registry
        .groups()
        .iter()
        .flat_map(|group| group.members.iter())
        .filter(|other| other.config.depends_on.iter().any(|d| names(d, &member.config)))
        .cloned()
        .collect()
}

/// Wakes the actor of a dependent process (with [`ProcessMsg::DepsChanged`])
/// whenever one of its dependencies publishes a new snapshot or the set of
/// groups changes. Ends when the actor is gone.
pub(crate) fn spawn_monitor(
    registry: Arc<Registry>,
    config: Arc<ProcessConfig>,
    actor: ractor::ActorRef<ProcessMsg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut groups = registry.subscribe();
        loop {
            groups.borrow_and_update();
            let mut receivers: Vec<watch::Receiver<Snapshot>> = config
                .depends_on
                .iter()
                .flat_map(|dependency| resolve(&registry, dependency))
                .map(|target| target.snapshot.subscribe())
                .collect();
            if actor.cast(ProcessMsg::DepsChanged).is_err() {
                return;
            }
            loop {
                let any_changed = if receivers.is_empty() {
                    futures::future::pending().boxed()
                } else {
                    futures::future::select_all(
                        receivers.iter_mut().map(|receiver| receiver.changed().boxed()),
                    )
                    .map(|(result, _, _)| result)
                    .boxed()
                };
                tokio::select! {
                    result = any_changed => {
                        if result.is_err() {
                            // A dependency was dropped with its group: resolve again.
                            break;
                        }
                        if actor.cast(ProcessMsg::DepsChanged).is_err() {
                            return;
                        }
                    }
                    result = groups.changed() => {
                        if result.is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
        }
    })
}

/// Members of `groups` (given in (priority, name) order) in start order:
/// dependencies first, the config's order breaking ties.
pub(crate) fn start_order(groups: &[Arc<GroupEntry>]) -> Vec<Arc<ProcessShared>> {
    let members: Vec<Arc<ProcessShared>> =
        groups.iter().flat_map(|group| group.members.iter().cloned()).collect();
    let edges = edges(&members);
    let mut blockers = vec![0usize; members.len()];
    for targets in edges.values() {
        for target in targets {
            blockers[*target] += 1;
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..members.len()).filter(|i| blockers[*i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(members.len());
    let mut placed = vec![false; members.len()];
    while let Some(Reverse(index)) = ready.pop() {
        order.push(Arc::clone(&members[index]));
        placed[index] = true;
        for target in edges.get(&index).map(Vec::as_slice).unwrap_or(&[]) {
            blockers[*target] -= 1;
            if blockers[*target] == 0 {
                ready.push(Reverse(*target));
            }
        }
    }
    // The config rejects cycles; should one get here anyway, keep every process.
    for (index, member) in members.iter().enumerate() {
        if !placed[index] {
            order.push(Arc::clone(member));
        }
    }
    order
}

/// dependency index -> indexes of its direct dependents, within `members`.
fn edges(members: &[Arc<ProcessShared>]) -> HashMap<usize, Vec<usize>> {
    let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
    for (index, member) in members.iter().enumerate() {
        for dependency in &member.config.depends_on {
            for (target, other) in members.iter().enumerate() {
                if target != index && names(dependency, &other.config) {
                    edges.entry(target).or_default().push(index);
                }
            }
        }
    }
    edges
}

/// Whether any member of `groups` has dependencies.
pub(crate) fn any(groups: &[Arc<GroupEntry>]) -> bool {
    groups.iter().flat_map(|group| group.members.iter()).any(|m| !m.config.depends_on.is_empty())
}

/// The shutdown order with dependencies: every process is told to shut down as
/// soon as every process depending on it is stopped, all concurrently.
/// Returns when all are stopped.
pub(crate) async fn stop_in_dependency_order(groups: &[Arc<GroupEntry>]) {
    let members = start_order(groups);
    let edges = edges(&members);
    let jobs = members.iter().enumerate().map(|(index, member)| {
        let dependents: Vec<Arc<ProcessShared>> = edges
            .get(&index)
            .map(|targets| targets.iter().map(|t| Arc::clone(&members[*t])).collect())
            .unwrap_or_default();
        let member = Arc::clone(member);
        async move {
            for dependent in &dependents {
                let _ = dependent.snapshot.subscribe().wait_for(|s| s.state.is_stopped()).await;
            }
            if let Some(actor) = member.actor() {
                let _ = actor.cast(ProcessMsg::Shutdown);
            }
            let _ = member.snapshot.subscribe().wait_for(|s| s.state.is_stopped()).await;
        }
    });
    futures::future::join_all(jobs).await;
}
