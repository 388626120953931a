//! [`BuildQueue`]: the order in which the root starts a batch of groups,
//! and what a caller that needs one of them first sees.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use vigil_config::Dependency;

use super::fixtures::{config, program, solo};
use crate::logs::ChannelLog;
use crate::messages::{BuildQueue, BuiltGroup, GroupEntry, ProcessShared, Queued};

fn built(names: &[&str]) -> Vec<BuiltGroup> {
    names
        .iter()
        .map(|name| {
            let mut group = solo(program(name, &["true"]));
            let process = group.processes.remove(0);
            let log = || ChannelLog::open(None, 0, 0, 0).expect("a log without a file");
            let member = Arc::new(ProcessShared::new(process, log(), log()));
            (group, vec![member])
        })
        .collect()
}

/// A queue of `names`, their members built.
fn queue(names: &[&str]) -> BuildQueue {
    BuildQueue::new(built(names).into_iter().map(Queued::from).collect())
}

/// The next group's name, or `None` for an empty queue; panics if pending.
fn next(queue: &BuildQueue) -> Option<String> {
    let mut cx = Context::from_waker(Waker::noop());
    match queue.poll_next(&mut cx) {
        Poll::Ready(queued) => queued.map(|queued| queued.config().name.clone()),
        Poll::Pending => panic!("the queue is held"),
    }
}

#[test]
fn a_hurried_group_comes_next_and_the_rest_keep_their_order() {
    let queue = queue(&["a", "b", "c", "d"]);
    assert_eq!(next(&queue).as_deref(), Some("a"));
    assert!(queue.hurry("d"));
    assert!(queue.hurry("c"));
    // Hurried first, in the order asked; a second hurry changes nothing.
    assert!(queue.hurry("d"));
    assert_eq!(queue.names(), ["d", "c", "b"]);
    // Being started (taken, not finished) is still to come.
    assert!(queue.hurry("a"));
    queue.finish("a");
    assert!(!queue.hurry("a"), "a finished");
    assert!(!queue.hurry("nope"), "not in this batch");
    assert_eq!(
        [next(&queue), next(&queue), next(&queue), next(&queue)],
        [Some("d".into()), Some("c".into()), Some("b".into()), None]
    );
}

#[test]
fn a_held_queue_yields_hurried_groups_alone_until_released() {
    let queue = queue(&["a", "b", "c"]);
    queue.hold();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(queue.poll_next(&mut cx).is_pending());
    assert!(queue.hurry("c"));
    assert_eq!(next(&queue).as_deref(), Some("c"));
    assert!(queue.poll_next(&mut cx).is_pending());
    queue.release();
    assert_eq!(
        [next(&queue), next(&queue), next(&queue)],
        [Some("a".into()), Some("b".into()), None]
    );
}

#[test]
fn finishing_wakes_the_waiters_and_giving_up_leaves_nothing_to_come() {
    let queue = queue(&["a", "b"]);
    let mut finished = queue.finished();
    assert!(!finished.has_changed().expect("open"));
    queue.finish("a");
    assert!(finished.has_changed().expect("open"));
    finished.mark_unchanged();
    queue.finish_all();
    assert!(finished.has_changed().expect("open"));
    assert!(!queue.hurry("b"));
    assert_eq!(next(&queue), None);
}

/// `name`'s group with its one process depending on `on`.
fn depending(name: &str, on: &str) -> BuiltGroup {
    let (group, members) = built(&[name]).remove(0);
    let mut process = (*members[0].config).clone();
    process.depends_on = vec![Dependency { name: on.to_owned(), condition: Default::default() }];
    let log = || ChannelLog::open(None, 0, 0, 0).expect("a log without a file");
    (group, vec![Arc::new(ProcessShared::new(Arc::new(process), log(), log()))])
}

/// `name`'s group, its members not built (a live upgrade's resume), its one
/// process depending on `on` if given.
fn unbuilt(name: &str, on: Option<&str>) -> Queued {
    let mut process = program(name, &["true"]);
    if let Some(on) = on {
        process.depends_on =
            vec![Dependency { name: on.to_owned(), condition: Default::default() }];
    }
    let dir = std::env::temp_dir();
    Queued::Unbuilt(solo(process), Arc::new(config(&dir, Vec::new()).supervisord))
}

#[test]
fn depends_on_ties_the_dependent_and_what_it_names() {
    let mut groups: Vec<Queued> =
        built(&["db", "cache", "c", "queue"]).into_iter().map(Queued::from).collect();
    groups.push(depending("web", "db").into());
    // Not built yet: read from the config, the same way.
    groups.push(unbuilt("worker", Some("queue")));
    groups.push(unbuilt("idle", None));
    let queue = BuildQueue::new(groups);
    assert!(queue.entangled().is_none(), "not computed yet");
    // One already in the tree, naming a process as `group:process`.
    let (config, members) = depending("api", "cache:cache");
    queue.entangle(&[GroupEntry::new(config, members)]);
    let tied = queue.entangled().expect("computed");
    let mut tied: Vec<&str> = tied.iter().map(String::as_str).collect();
    tied.sort_unstable();
    assert_eq!(
        tied,
        ["api", "cache", "db", "queue", "web", "worker"],
        "c and idle are tied to nothing"
    );
}

#[test]
fn an_unbuilt_group_gets_its_members_when_taken() {
    let queue = BuildQueue::new(vec![unbuilt("late", None)]);
    assert_eq!(queue.names(), ["late"]);
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Some(taken)) = queue.poll_next(&mut cx) else { panic!("one queued") };
    let entry = crate::members::build_queued(taken).expect("built");
    assert_eq!(entry.config.name, "late");
    assert!(entry.config.processes.is_empty(), "the settings live in the member");
    let names: Vec<&str> = entry.members.iter().map(|m| m.config.name.as_str()).collect();
    assert_eq!(names, ["late"]);
}
