//! What the control API reads of the processes a live upgrade carried, in
//! the new image before the tree that resumes them is built.
//!
//! Until its process actor exists, nothing acts on a carried process: its
//! timers wait to be re-armed, its exit (if any) waits in the reaper. The
//! frozen record is then exactly its state, and [`CarriedView`] answers
//! `getProcessInfo` from it as the old image did when it froze: the same
//! snapshot fields, the same description, the same counters. The record says
//! everything the answer needs beside the state (its
//! [`CarriedShown`](crate::handover::CarriedShown)), so the daemon serves
//! these reads from the moment it has read the state, before it loads its
//! config, and holds every other call until the tree is up.

use std::time::SystemTime;

use crate::exit::ExitStatus;
use crate::handover::{CarriedProcess, Records, from_unix_ms};
use crate::info::{Counts, Health, Labels, ProcessInfo, Snapshot};
use crate::lifecycle::ProcessState;

/// One carried process (its index in the records) and its snapshot.
struct Entry {
    record: usize,
    snapshot: Snapshot,
    labels: Labels,
}

/// The carried records, as `getProcessInfo` reports them.
pub struct CarriedView {
    /// Shared with the daemon, which hands them to the tree.
    records: Records,
    /// Sorted by (group, name), `getAllProcessInfo`'s order, which
    /// [`CarriedView::one`] searches.
    entries: Vec<Entry>,
}

impl CarriedView {
    /// The view of `records`. A record whose state this image does not know
    /// is left out (its actor refuses it too): the tree answers for it.
    pub fn new(records: Records) -> CarriedView {
        let mut entries: Vec<Entry> = records
            .iter()
            .enumerate()
            .filter_map(|(at, record)| {
                let labels = Labels::new(
                    &record.shown.group,
                    &record.shown.name,
                    record.stdout_log.as_deref(),
                    record.stderr_log.as_deref(),
                );
                Some(Entry { record: at, snapshot: snapshot_of(record)?, labels })
            })
            .collect();
        entries.sort_by(|a, b| key(&records, a).cmp(&key(&records, b)));
        CarriedView { records, entries }
    }

    /// `getAllProcessInfo` at wall-clock time `now`.
    pub fn all(&self, now: SystemTime) -> Vec<ProcessInfo> {
        self.entries.iter().map(|entry| self.info_of(entry, now)).collect()
    }

    /// `getProcessInfo` of `group:name`; `None` if no record has that name.
    pub fn one(&self, group: &str, name: &str, now: SystemTime) -> Option<ProcessInfo> {
        let at = self
            .entries
            .binary_search_by(|entry| key(&self.records, entry).cmp(&(group, name)))
            .ok()?;
        Some(self.info_of(&self.entries[at], now))
    }

    fn info_of(&self, entry: &Entry, now: SystemTime) -> ProcessInfo {
        let record = &self.records[entry.record];
        let shown = &record.shown;
        let mut info = ProcessInfo::new(&entry.labels, &entry.snapshot, now);
        info.complete(
            shown.autostart,
            shown.completed,
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

    /// How many processes the view holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the view holds no process.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the entries are sorted and searched by: (group, name).
fn key<'a>(records: &'a [CarriedProcess], entry: &Entry) -> (&'a str, &'a str) {
    let shown = &records[entry.record].shown;
    (&shown.group, &shown.name)
}

/// The snapshot the old image published last; `None` for a state this image
/// does not know.
fn snapshot_of(record: &CarriedProcess) -> Option<Snapshot> {
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
        waiting_for: record.shown.waiting_for.clone(),
        // The resumed actor keeps its probes' carried verdict.
        health: record.shown.probed.then_some(Health::from_carried(record.health)),
    })
}
