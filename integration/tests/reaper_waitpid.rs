//! The reaper without pidfds (an old kernel, a seccomp filter, or
//! `VIGIL_NO_PIDFD` set): one `waitpid(-1)` loop on SIGCHLD delivers every
//! exit, spawns still run in parallel, and adopted children are reaped too.
//!
//! A test binary of its own: the choice is made once per process.

use std::time::Duration;

use vigil_core::exit::ExitStatus;
use vigil_core::reaper::{NO_PIDFD_ENV, Reaper};
use vigil_core::spawn::SpawnSpec;

const CHILD: &str = env!("CARGO_BIN_EXE_vigil-test-child");
const WAIT: Duration = Duration::from_secs(60);

fn exit_with(code: i32) -> SpawnSpec {
    SpawnSpec::new(vec![CHILD.to_owned(), "--exit".to_owned(), code.to_string()])
}

#[test]
fn the_waitpid_loop_delivers_every_exit() {
    // SAFETY: set before any other thread of this test binary exists (one test).
    unsafe { std::env::set_var(NO_PIDFD_ENV, "1") };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let reaper = Reaper::start(false).unwrap();
        assert!(!reaper.uses_pidfds());
        let mut tasks = Vec::new();
        for worker in 0..4 {
            let reaper = reaper.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                (0..50)
                    .map(|index| {
                        let code = (worker * 50 + index) % 250;
                        let mut spawned = reaper.spawn(&exit_with(code)).unwrap();
                        drop((spawned.stdin.take(), spawned.stdout.take(), spawned.stderr.take()));
                        (spawned, ExitStatus::Code(code))
                    })
                    .collect::<Vec<_>>()
            }));
        }
        for task in tasks {
            for (spawned, expected) in tokio::time::timeout(WAIT, task).await.unwrap().unwrap() {
                let pid = spawned.pid;
                let status = tokio::time::timeout(WAIT, spawned.exit).await.unwrap().unwrap();
                assert_eq!(status, expected, "pid {pid}");
            }
        }
        // The loop also makes an exit's call (what process actors spawn with).
        let (called_tx, called) = tokio::sync::oneshot::channel();
        let on_exit = Box::new(move |pid, status| {
            let _ = called_tx.send((pid, status));
        });
        let spawned = reaper.spawn_calling(&exit_with(42), on_exit).unwrap();
        let (pid, status) = tokio::time::timeout(WAIT, called).await.unwrap().unwrap();
        assert_eq!((pid, status), (spawned.pid, ExitStatus::Code(42)));
        // A child this process already had is adopted and reaped by the loop.
        #[expect(clippy::zombie_processes, reason = "the reaper adopts and reaps it")]
        let mut child = std::process::Command::new(CHILD)
            .args(["--stdin-echo", "--exit", "9"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let exit = reaper.adopt(child.id()).unwrap();
        drop(child.stdin.take());
        let status = tokio::time::timeout(WAIT, exit).await.unwrap().unwrap();
        assert_eq!(status, ExitStatus::Code(9));
        assert_eq!(reaper.orphans_reaped(), 0);
        assert_eq!(reaper.children_without_pidfd(), 202);
    });
}
