//! Panics in our own actors: the orphaned child is killed, the actor rebuilt and
//! the program restarted.

use super::fixtures::{group, program, solo};
use super::{boot, specs, until};
use crate::ProcessState;
use crate::messages::ProcessMsg;
use crate::messages::{GroupMsg, GroupRef};

/// A group of two, `grp:a` and `grp:b`: one with a group actor of its own.
fn pair() -> vigil_config::GroupConfig {
    group("grp", 1, vec![program("a", &["/bin/sh", "run"]), program("b", &["/bin/sh", "run"])])
}

#[tokio::test(start_paused = true)]
async fn a_panicking_process_actor_is_rebuilt_and_its_child_killed() {
    let (handle, fake, _dir) = boot(vec![solo(program("web", &["/bin/sh", "run"]))]).await;
    assert_eq!(handle.start(&specs(&["web"]), true).await[0].1, Ok(()));
    let first = fake.spawns()[0].pid;
    let mut events = handle.subscribe();
    let member = handle.inner.registry.group("web").expect("group").members[0].clone();
    member.actor().expect("actor").cast(ProcessMsg::Crash).expect("cast");
    until(&mut events, || fake.spawns().len() == 2 && member.state() == ProcessState::Running)
        .await;
    assert!(
        fake.signals().iter().any(|s| s.pid == first && s.sig == libc::SIGKILL),
        "the orphan was killed: {:?}",
        fake.signals()
    );
    assert_eq!(fake.alive(), 1, "only the new child runs");
    // The rebuilt actor serves requests.
    assert_eq!(handle.stop(&specs(&["web"]), true).await[0].1, Ok(()));
    handle.shutdown().await;
    assert_eq!(fake.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_member_of_a_group_with_its_own_actor_is_rebuilt() {
    let (handle, fake, _dir) = boot(vec![pair()]).await;
    assert_eq!(handle.start(&specs(&["grp:b"]), true).await[0].1, Ok(()));
    let first = fake.spawns()[0].pid;
    let mut events = handle.subscribe();
    let entry = handle.inner.registry.group("grp").expect("group");
    let member = entry.members[1].clone();
    member.actor().expect("actor").cast(ProcessMsg::Crash).expect("cast");
    until(&mut events, || fake.spawns().len() == 2 && member.state() == ProcessState::Running)
        .await;
    assert!(fake.signals().iter().any(|s| s.pid == first && s.sig == libc::SIGKILL));
    assert_eq!(entry.members[0].state(), ProcessState::Stopped, "its sibling was not touched");
    assert_eq!(fake.alive(), 1);
    handle.shutdown().await;
    assert_eq!(fake.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_single_program_group_is_supervised_by_the_root() {
    let (handle, _fake, _dir) = boot(vec![solo(program("web", &["/bin/sh", "run"])), pair()]).await;
    let solo_group = handle.inner.registry.group("web").expect("group");
    assert!(matches!(solo_group.actor(), Some(GroupRef::Hosted { .. })));
    let grp = handle.inner.registry.group("grp").expect("group");
    assert!(matches!(grp.actor(), Some(GroupRef::Actor(_))));
    // The process actor's supervisor is the root itself.
    let root = handle.inner.root.get_id();
    let process = solo_group.members[0].actor().expect("actor");
    assert_eq!(process.try_get_supervisor().map(|cell| cell.get_id()), Some(root));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stopped_process_stays_stopped_after_a_rebuild() {
    let (handle, fake, _dir) = boot(vec![solo(program("idle", &["/bin/sh", "run"]))]).await;
    let member = handle.inner.registry.group("idle").expect("group").members[0].clone();
    let old = member.actor().expect("actor");
    old.cast(ProcessMsg::Crash).expect("cast");
    let mut events = handle.subscribe();
    tokio::time::timeout(super::PATIENCE, async {
        while member.actor().map(|a| a.get_id()) == Some(old.get_id()) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("rebuilt");
    assert_eq!(member.state(), ProcessState::Stopped);
    assert_eq!(fake.spawns().len(), 0);
    assert_eq!(handle.start(&specs(&["idle"]), true).await[0].1, Ok(()));
    until(&mut events, || member.state() == ProcessState::Running).await;
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_group_actor_is_rebuilt_with_its_members() {
    let (handle, fake, _dir) = boot(vec![pair()]).await;
    handle.start(&specs(&["grp:a"]), true).await;
    let mut events = handle.subscribe();
    let entry = handle.inner.registry.group("grp").expect("group");
    let actor = entry.actor().expect("group actor");
    assert!(matches!(actor, GroupRef::Actor(_)), "a group of two has an actor of its own");
    assert!(actor.cast(GroupMsg::Crash), "cast");
    until(&mut events, || {
        fake.spawns().len() == 2 && entry.members[0].state() == ProcessState::Running
    })
    .await;
    let first = fake.spawns()[0].pid;
    assert!(fake.signals().iter().any(|s| s.pid == first && s.sig == libc::SIGKILL));
    assert_eq!(entry.members[1].state(), ProcessState::Stopped, "b was not running and stays so");
    assert_eq!(fake.alive(), 1);
    handle.shutdown().await;
    assert_eq!(fake.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_panic_during_shutdown_restarts_nothing_and_shutdown_completes() {
    let mut stubborn = program("stubborn", &["/bin/sh", "stubborn"]);
    stubborn.stopwaitsecs = 5;
    let (handle, fake, _dir) = boot(vec![solo(stubborn)]).await;
    assert_eq!(handle.start(&specs(&["stubborn"]), true).await[0].1, Ok(()));
    let member = handle.inner.registry.group("stubborn").expect("group").members[0].clone();
    let mut events = handle.subscribe();
    let stopper = handle.clone();
    let shutdown = tokio::spawn(async move { stopper.shutdown().await });
    until(&mut events, || member.state() == ProcessState::Stopping).await;
    member.actor().expect("actor").cast(ProcessMsg::Crash).expect("cast");
    tokio::time::timeout(super::PATIENCE, shutdown).await.expect("shutdown ends").expect("task");
    assert_eq!(fake.spawns().len(), 1, "nothing was restarted");
    assert_eq!(fake.alive(), 0, "the child was killed with its actor");
}
