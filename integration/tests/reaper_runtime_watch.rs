//! The reaper watched from a second place, the caller's runtime, as vigild
//! does: every exit is still delivered exactly once, with its status, to its
//! call, and the reaper keeps collecting once that runtime is gone.
//!
//! A test binary of its own: the reaper is one per process.

use std::collections::HashMap;
use std::time::Duration;

use vigil_core::exit::ExitStatus;
use vigil_core::reaper::Reaper;
use vigil_core::spawn::SpawnSpec;

const CHILD: &str = env!("CARGO_BIN_EXE_vigil-test-child");
const WAIT: Duration = Duration::from_secs(60);

fn exit_with(code: i32) -> SpawnSpec {
    SpawnSpec::new(vec![CHILD.to_owned(), "--exit".to_owned(), code.to_string()])
}

/// Spawns `n` children that exit with their index, each with a call that
/// reports its pid and status, and waits until every call was made.
async fn every_exit_called_once(reaper: &Reaper, n: i32) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut expected = HashMap::new();
    for code in 0..n {
        let tx = tx.clone();
        let on_exit = Box::new(move |pid, status| {
            let _ = tx.send((pid, status));
        });
        let spawned = reaper.spawn_calling(&exit_with(code), on_exit).unwrap();
        expected.insert(spawned.pid, ExitStatus::Code(code));
    }
    drop(tx);
    let mut seen = HashMap::new();
    while seen.len() < expected.len() {
        let (pid, status) = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
        assert!(seen.insert(pid, status).is_none(), "pid {pid} delivered twice");
    }
    assert_eq!(seen, expected);
    // Every sender was moved into a call, and each call runs once: once all
    // were made, the channel is closed, with nothing more in it.
    assert_eq!(tokio::time::timeout(WAIT, rx.recv()).await.unwrap(), None);
}

#[test]
fn exits_are_delivered_once_when_the_runtime_watches_too() {
    let reaper = Reaper::start(false).unwrap();
    assert!(reaper.uses_pidfds(), "this test needs pidfds");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        assert!(reaper.watch_from_current_runtime());
        // A second call is ignored, not a third watcher.
        assert!(!reaper.watch_from_current_runtime());
        every_exit_called_once(&reaper, 200).await;
    });
    drop(runtime);
    // That runtime is gone; the reaper's own thread still collects.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(every_exit_called_once(&reaper, 20));
    assert_eq!(reaper.orphans_reaped(), 0);
}
