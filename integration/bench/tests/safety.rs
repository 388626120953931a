//! Process safety of a run: whatever a daemon leaves behind (children it
//! does not stop, itself when it ignores SIGTERM) is killed by the harness,
//! on the normal path and when a run is dropped.

use std::time::{Duration, Instant};
use vigil_bench::procfs;
use vigil_bench::reaper::Reaper;
use vigil_bench::run::{Pacing, Run};
use vigil_bench::target::Target;

const EXE: &str = env!("CARGO_BIN_EXE_vigil-bench");

fn target(daemon_args: &str) -> Target {
    Target::parse_custom(&format!("fake::{EXE} fake-daemon {daemon_args}::{EXE} exit 0")).unwrap()
}

/// Polls `cond` every 5 ms for up to 10 s.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Launches the fake daemon and returns its children once all are up.
async fn launch(run: &mut Run, children: usize) -> (i32, Vec<(i32, u64)>) {
    run.write_config().unwrap();
    run.launch().unwrap();
    let pid = run.daemon().unwrap().pid;
    wait_until("the fake daemon's children", || procfs::children(pid).len() == children).await;
    (pid, procfs::descendants(pid))
}

async fn all_gone(procs: &[(i32, u64)]) {
    wait_until("left-over processes to die", || {
        procs.iter().all(|(pid, start)| !procfs::alive_same(*pid, *start))
    })
    .await;
}

// One test function: one waitpid(-1) reaper per process.
#[tokio::test]
async fn leftovers_are_killed_on_every_path() {
    let reaper = Reaper::install().unwrap();
    let root = tempfile::tempdir().unwrap();
    let pacing = Pacing {
        poll_interval: Duration::from_millis(10),
        ctl_timeout: Duration::from_secs(10),
        shutdown_timeout: Duration::from_millis(500),
        keep: false,
        tmp_root: root.path().to_path_buf(),
    };

    // SIGTERM ends the daemon but not its children: they are re-parented to
    // the harness and killed, and the shutdown reports them.
    let mut run = Run::new(&target("--children 3"), &reaper, &pacing).unwrap();
    let (daemon, kids) = launch(&mut run, 3).await;
    let err = run.shutdown().await.unwrap_err().to_string();
    assert!(err.contains("3 program process(es) outlived the daemon"), "{err}");
    assert!(!reaper.is_live(daemon) || procfs::stat(daemon).is_some_and(|s| s.state == 'Z'));
    all_gone(&kids).await;
    drop(run);

    // A daemon that ignores SIGTERM is SIGKILLed after the timeout.
    let mut run = Run::new(&target("--children 2 --ignore-term"), &reaper, &pacing).unwrap();
    let (daemon, kids) = launch(&mut run, 2).await;
    let daemon_start = procfs::stat(daemon).unwrap().start_time;
    let err = run.shutdown().await.unwrap_err().to_string();
    assert!(err.contains("did not exit within"), "{err}");
    all_gone(&kids).await;
    all_gone(&[(daemon, daemon_start)]).await;
    drop(run);

    // Dropping a run (an error or panic in a scenario) kills it all, and
    // removes its directory.
    let mut run = Run::new(&target("--children 2"), &reaper, &pacing).unwrap();
    let dir = run.dir().to_path_buf();
    let (daemon, mut procs) = launch(&mut run, 2).await;
    procs.push((daemon, procfs::stat(daemon).unwrap().start_time));
    drop(run);
    all_gone(&procs).await;
    assert!(!dir.exists());
    wait_until("every child to be reaped", || reaper.live_pids().is_empty()).await;
}
