//! Tests of the tree through its public [`Handle`]: lifecycle timing against a
//! fake spawner on paused tokio time, supervision of our own panics, ordered
//! shutdown, and a smoke test with a real child through the real reaper.

mod fake;
mod fixtures;
mod queue;
mod real;

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::{Event, ProcessState};

/// Generous bound for any wait; on paused time it costs nothing.
const PATIENCE: Duration = Duration::from_secs(600);

/// Waits for `namespec` to enter `state`; returns when it happened.
async fn until_state(
    events: &mut broadcast::Receiver<Arc<Event>>,
    namespec: &str,
    state: ProcessState,
) -> Instant {
    let wait = async {
        loop {
            match events.recv().await.as_deref() {
                Ok(Event::ProcessState(change))
                    if change.namespec() == namespec && change.to == state =>
                {
                    return Instant::now();
                }
                Ok(_) => {}
                Err(error) => panic!("event bus: {error}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("{namespec} never reached {state}"))
}

/// Waits until `condition` holds, checking after every event on the bus.
async fn until(events: &mut broadcast::Receiver<Arc<Event>>, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            let _ = events.recv().await;
        }
    };
    tokio::time::timeout(PATIENCE, wait).await.expect("condition never held");
}

mod api;
mod beyond;
mod resuming;
mod supervision;
mod timing;
mod update;

use std::sync::Arc;

use crate::{Handle, Supervisor, SupervisorOptions};
use fake::FakeSpawner;
use vigil_config::GroupConfig;

/// A tree over `groups` spawning fake children, in a fresh temporary directory.
async fn boot(groups: Vec<GroupConfig>) -> (Handle, FakeSpawner, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = FakeSpawner::default();
    let options = SupervisorOptions::with_spawner(Arc::new(fake.clone()));
    let handle = Supervisor::start(fixtures::config(dir.path(), groups), options)
        .await
        .expect("supervisor starts");
    (handle, fake, dir)
}

/// A namespec as vigilctl reads it (`all` is every process).
fn spec(text: &str) -> vigil_config::NameSpec {
    vigil_config::NameSpec::parse(text)
}

fn specs(names: &[&str]) -> Vec<vigil_config::NameSpec> {
    names.iter().map(|name| spec(name)).collect()
}

/// Asserts a `status` row shows what the process's info shows: names, state
/// and description, its uptime aside (the wall clock may have ticked
/// between the two reads).
#[track_caller]
fn assert_row_shows(row: &crate::StatusRow, info: &crate::ProcessInfo) {
    fn without_uptime(text: &str) -> String {
        match text.split_once("uptime ") {
            Some((before, after)) => {
                let rest = after.find(',').map_or("", |comma| &after[comma..]);
                format!("{before}uptime {rest}")
            }
            None => text.to_owned(),
        }
    }
    assert_eq!(
        (&row.group, &row.name, row.state, without_uptime(&row.description)),
        (&info.group, &info.name, info.state, without_uptime(&info.description))
    );
}

/// Asserts `actual` is `expected` within a millisecond of timer rounding.
#[track_caller]
fn assert_about(actual: Duration, expected: Duration) {
    let slack = Duration::from_millis(5);
    assert!(
        actual + slack >= expected && actual <= expected + slack,
        "expected about {expected:?}, got {actual:?}"
    );
}
