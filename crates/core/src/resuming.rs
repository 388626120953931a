//! What the control API reads of the processes a live upgrade carried, in
//! the new image before the tree that resumes them is built.
//!
//! Until its process actor exists, nothing acts on a carried process: its
//! timers wait to be re-armed, its exit (if any) waits in the reaper. The
//! frozen record is then exactly its state, and [`CarriedView`] answers
//! `getProcessInfo` from it as the resumed actor's first snapshot will: the
//! same snapshot fields, the same description, the same counters. The daemon
//! serves these reads in that gap and holds every other call until the tree
//! is up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use vigil_config::{Config, ProcessConfig};

use crate::exit::ExitStatus;
use crate::handover::{CarriedProcess, from_unix_ms};
use crate::info::{Counts, Health, ProcessInfo, Snapshot};
use crate::lifecycle::ProcessState;

/// One process of the config and its record.
struct Entry {
    config: Arc<ProcessConfig>,
    record: CarriedProcess,
    snapshot: Snapshot,
}

/// The carried records of every process in the new image's config, as
/// `getProcessInfo` reports them.
pub struct CarriedView {
    /// Sorted by (group, name), `getAllProcessInfo`'s order.
    entries: Vec<Entry>,
    /// (group, name) to its index in `entries`.
    index: HashMap<(String, String), usize>,
}

impl CarriedView {
    /// The view of `records` for `config`; `None` when some process of the
    /// config has no record (its program was added to the file since the
    /// old image loaded it): what the tree will say of it is not known
    /// before the tree exists. Records the config no longer has are left
    /// out (the daemon stops their children once the tree is built).
    pub fn new(config: &Config, records: &[CarriedProcess]) -> Option<CarriedView> {
        let by_name: HashMap<&str, &CarriedProcess> =
            records.iter().map(|record| (record.namespec.as_str(), record)).collect();
        let mut entries = Vec::new();
        for group in &config.groups {
            for process in &group.processes {
                let record = *by_name.get(process.namespec().as_str())?;
                let snapshot = snapshot_of(process, record)?;
                entries.push(Entry {
                    config: Arc::clone(process),
                    record: record.clone(),
                    snapshot,
                });
            }
        }
        entries.sort_by(|a, b| {
            (&a.config.group, &a.config.name).cmp(&(&b.config.group, &b.config.name))
        });
        waiting_for(&mut entries);
        let index = entries
            .iter()
            .enumerate()
            .map(|(at, entry)| ((entry.config.group.clone(), entry.config.name.clone()), at))
            .collect();
        Some(CarriedView { entries, index })
    }

    /// `getAllProcessInfo` at wall-clock time `now`.
    pub fn all(&self, now: SystemTime) -> Vec<ProcessInfo> {
        self.entries.iter().map(|entry| info_of(entry, now)).collect()
    }

    /// `getProcessInfo` of `group:name`; `None` if the config has no such
    /// process.
    pub fn one(&self, group: &str, name: &str, now: SystemTime) -> Option<ProcessInfo> {
        let at = *self.index.get(&(group.to_owned(), name.to_owned()))?;
        Some(info_of(&self.entries[at], now))
    }

    /// How many processes the view holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the view holds no process.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The snapshot the resumed actor publishes first; `None` for a record the
/// new image cannot resume (the actor refuses it too).
fn snapshot_of(config: &ProcessConfig, record: &CarriedProcess) -> Option<Snapshot> {
    let carried = &record.lifecycle;
    let state = ProcessState::ALL.into_iter().find(|state| state.code() == carried.state)?;
    Some(Snapshot {
        state,
        pid: carried.pid,
        start: record.start_unix_ms.map(from_unix_ms),
        stop: record.stop_unix_ms.map(from_unix_ms),
        spawnerr: carried.spawnerr.clone(),
        exitstatus: carried.exitstatus.map(ExitStatus::from),
        tries: carried.backoff,
        waiting_for: Vec::new(),
        // The resumed actor keeps its probes' carried verdict.
        health: (config.readiness.is_some() || config.liveness.is_some())
            .then_some(Health::from_carried(record.health)),
    })
}

/// Fills in what each STARTING process without a child waits for, as the
/// resumed actor finds it from the others' snapshots.
fn waiting_for(entries: &mut [Entry]) {
    let waiting: Vec<usize> =
        (0..entries.len()).filter(|at| entries[*at].record.lifecycle.waiting).collect();
    for at in waiting {
        let unmet: Vec<String> = entries[at]
            .config
            .depends_on
            .iter()
            .filter(|dependency| {
                let mut targets = entries
                    .iter()
                    .filter(|other| crate::deps::names(dependency, &other.config))
                    .peekable();
                targets.peek().is_none()
                    || targets.any(|target| {
                        !crate::deps::meets(dependency.condition, &target.config, &target.snapshot)
                    })
            })
            .map(crate::deps::label)
            .collect();
        entries[at].snapshot.waiting_for = unmet;
    }
}

fn info_of(entry: &Entry, now: SystemTime) -> ProcessInfo {
    let Entry { config, record, snapshot } = entry;
    let mut info = ProcessInfo::new(
        &config.group,
        &config.name,
        record.stdout_log.as_deref(),
        record.stderr_log.as_deref(),
        snapshot,
        now,
    );
    info.complete(
        config,
        snapshot,
        Counts {
            spawns: record.spawns,
            last_exit: record.last_exit.map(ExitStatus::from),
            oom_killed: record.last_exit_oom,
            stdout_bytes: record.stdout_total,
            stderr_bytes: record.stderr_total,
        },
    );
    info
}
