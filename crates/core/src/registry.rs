//! [`Registry`]: every group by name, and every process by program name.
//!
//! Written only by the root actor (adding, replacing and removing groups), read
//! by everyone else: the handle reaches processes through it without a mailbox
//! round-trip, dependency monitors resolve `depends_on` names through it, and
//! the event listener hub finds its pools' members in it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

use crate::messages::{GroupEntry, ProcessShared};

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

    /// How often groups were added or removed.
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.borrow()
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

    pub(crate) fn insert(&self, entry: Arc<GroupEntry>) {
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

    pub(crate) fn remove(&self, name: &str) -> Option<Arc<GroupEntry>> {
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
