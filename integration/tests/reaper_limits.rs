//! The reaper when descriptors are scarce: children spawned once the daemon
//! uses half of its descriptor limit get no pidfd, and SIGCHLD's peek reaps
//! them instead, beside children that have one.
//!
//! A test binary of its own: it lowers the process's descriptor limit.

use std::time::Duration;

use vigil_core::exit::ExitStatus;
use vigil_core::reaper::Reaper;
use vigil_core::spawn::SpawnSpec;

const CHILD: &str = env!("CARGO_BIN_EXE_vigil-test-child");
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_without_a_pidfd_are_reaped_by_the_peek() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let reaper = Reaper::start(false).unwrap();
    // Hold descriptors up to about a third of a small limit, so the first
    // spawns get pidfds and the later ones, past half of it, do not.
    setrlimit(Resource::RLIMIT_NOFILE, 192, hard).unwrap();
    let mut held = Vec::new();
    while held.last().map_or(0, |f: &std::fs::File| std::os::fd::AsRawFd::as_raw_fd(f)) < 60 {
        held.push(std::fs::File::open("/dev/null").unwrap());
    }
    let unwatched = reaper.children_without_pidfd();
    let mut children = Vec::new();
    // Every other child's exit goes to a call on the reaper's thread rather
    // than to a channel: both kinds, with a pidfd and without.
    let (called_tx, mut called) = tokio::sync::mpsc::unbounded_channel();
    let mut calling = std::collections::HashMap::new();
    for index in 0..40 {
        let code = index % 7;
        let argv = vec![
            CHILD.to_owned(),
            "--sleep".to_owned(),
            "0.2".to_owned(),
            "--exit".to_owned(),
            code.to_string(),
        ];
        let spec = SpawnSpec::new(argv);
        // Only the exit matters: no pipe stays open.
        if index % 2 == 1 {
            let called_tx = called_tx.clone();
            let on_exit = Box::new(move |pid, status| {
                let _ = called_tx.send((pid, status));
            });
            let mut spawned = reaper.spawn_calling(&spec, on_exit).unwrap();
            drop((spawned.stdin.take(), spawned.stdout.take(), spawned.stderr.take()));
            calling.insert(spawned.pid, ExitStatus::Code(code));
        } else {
            let mut spawned = reaper.spawn(&spec).unwrap();
            drop((spawned.stdin.take(), spawned.stdout.take(), spawned.stderr.take()));
            children.push((spawned, ExitStatus::Code(code)));
        }
        // Each spawn's descriptors are gone again; these push the count up.
        held.push(std::fs::File::open("/dev/null").unwrap());
    }
    for (spawned, expected) in children {
        let pid = spawned.pid;
        let status = tokio::time::timeout(WAIT, spawned.exit).await.unwrap().unwrap();
        assert_eq!(status, expected, "pid {pid}");
        assert!(!reaper.is_running(pid));
    }
    while !calling.is_empty() {
        let (pid, status) = tokio::time::timeout(WAIT, called.recv()).await.unwrap().unwrap();
        assert_eq!(calling.remove(&pid), Some(status), "pid {pid}, called once");
        assert!(!reaper.is_running(pid));
    }
    let without = reaper.children_without_pidfd() - unwatched;
    assert!(without > 0 && without < 40, "{without} of 40 spawned without a pidfd");
    assert_eq!(reaper.orphans_reaped(), 0);
}
