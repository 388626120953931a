//! Smoke tests with real children through the real reaper (real time).

use std::path::Path;
use std::time::Duration;

use super::fixtures::{config, program, solo};
use super::{spec, specs};
use crate::{Channel, CoreError, ProcessState, Reaper, Supervisor, SupervisorOptions};

/// Kills `pid` if the test fails before the tree stopped it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0)
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
}

async fn eventually(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition within 10 s");
}

#[tokio::test]
async fn real_child_starts_logs_takes_stdin_and_stops_without_a_zombie() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cat = program("cat", &["/bin/cat"]);
    cat.startsecs = 0;
    cat.stdout.logfile = vigil_config::LogTarget::Path(dir.path().join("cat.log"));
    let mut missing = program("missing", &["no-such-command-vigil"]);
    missing.startretries = 0;
    missing.autostart = true;
    let reaper = Reaper::start(false).expect("reaper");
    let options = SupervisorOptions {
        daemon_env: vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())],
        ..SupervisorOptions::new(reaper.clone())
    };
    let handle = Supervisor::start(config(dir.path(), vec![solo(cat), solo(missing)]), options)
        .await
        .expect("start");
    assert_eq!(handle.start(&specs(&["cat"]), true).await[0].1, Ok(()));
    let info = handle.process_info(Some(&spec("cat"))).await.expect("info");
    let pid = info[0].pid;
    let _guard = KillOnDrop(pid);
    assert_eq!(info[0].state, ProcessState::Running);
    assert!(reaper.is_running(pid));

    handle.send_stdin(&spec("cat"), b"hello vigil\n".to_vec()).await.expect("stdin");
    let log = handle.log(&spec("cat"), Channel::Stdout).expect("log");
    tokio::time::timeout(Duration::from_secs(10), log.wait_beyond(0)).await.expect("output");
    let (bytes, _, _) = log.tail(0, 100);
    assert_eq!(bytes, b"hello vigil\n");
    assert_eq!(std::fs::read(dir.path().join("cat.log")).expect("log file"), b"hello vigil\n");

    let results = handle.stop(&specs(&["cat"]), true).await;
    assert_eq!(results, [(spec("cat"), Ok(()))]);
    let info = handle.process_info(Some(&spec("cat"))).await.expect("info");
    assert_eq!(info[0].state, ProcessState::Stopped);
    assert_eq!(info[0].exitstatus, -1, "terminated by SIGTERM");
    assert!(!reaper.is_running(pid));
    eventually(|| !Path::new(&format!("/proc/{pid}")).exists()).await;

    // Autostart of a command that is not on PATH: BACKOFF then FATAL, with
    // supervisord's spawnerr.
    let missing = handle.process_info(Some(&spec("missing"))).await.expect("info");
    assert_eq!(missing[0].state, ProcessState::Fatal);
    assert_eq!(missing[0].description, "can't find command 'no-such-command-vigil'");
    assert_eq!(
        handle.start(&specs(&["missing"]), true).await[0].1,
        Err(CoreError::NoFile("can't find command 'no-such-command-vigil'".to_owned()))
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_a_real_child_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sleeper = program("sleeper", &["/bin/sleep", "1000"]);
    sleeper.startsecs = 0;
    sleeper.autostart = true;
    let reaper = Reaper::start(false).expect("reaper");
    let handle = Supervisor::start(
        config(dir.path(), vec![solo(sleeper)]),
        SupervisorOptions::new(reaper.clone()),
    )
    .await
    .expect("start");
    // startsecs=0: RUNNING as soon as the start timer is handled.
    let pid = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let info = handle.process_info(Some(&spec("sleeper"))).await.expect("info");
            if info[0].state == ProcessState::Running {
                return info[0].pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("running within 10 s");
    let _guard = KillOnDrop(pid);
    handle.shutdown().await;
    assert!(!reaper.is_running(pid));
    eventually(|| !Path::new(&format!("/proc/{pid}")).exists()).await;
}

/// The daemon's start: the tree answers while its autostart pass still runs, the
/// pass brings every process up in the end, and a shutdown in the middle of it
/// leaves no process running and no child behind.
#[tokio::test]
async fn background_autostart_answers_at_once_and_shutdown_ends_it() {
    const N: usize = 40;
    let dir = tempfile::tempdir().expect("temp dir");
    let sleepers = |dir: &Path| {
        let programs = (0..N)
            .map(|i| {
                let mut p = program(&format!("s{i:02}"), &["/bin/sleep", "1000"]);
                p.startsecs = 0;
                p.autostart = true;
                solo(p)
            })
            .collect();
        config(dir, programs)
    };
    let reaper = Reaper::start(false).expect("reaper");
    let mut guards = Vec::new();

    // Left alone, the pass starts all of them.
    let handle = Supervisor::start_in_background(
        sleepers(dir.path()),
        SupervisorOptions::new(reaper.clone()),
    )
    .await
    .expect("start");
    assert_eq!(handle.process_info(None).await.expect("info").len(), N);
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let info = handle.process_info(None).await.expect("info");
            if info.iter().all(|p| p.state == ProcessState::Running) {
                guards.extend(info.iter().map(|p| KillOnDrop(p.pid)));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("all RUNNING within 20 s");
    handle.shutdown().await;

    // Shut down at once: whatever the pass had started is stopped, the rest
    // never starts.
    let handle = Supervisor::start_in_background(
        sleepers(dir.path()),
        SupervisorOptions::new(reaper.clone()),
    )
    .await
    .expect("start");
    handle.shutdown().await;
    let info = handle.process_info(None).await.expect("info");
    for process in &info {
        assert!(
            matches!(process.state, ProcessState::Stopped | ProcessState::Exited),
            "{} is {:?} after shutdown",
            process.name,
            process.state
        );
    }
    for guard in &guards {
        let pid = guard.0;
        assert!(!reaper.is_running(pid));
        eventually(|| !Path::new(&format!("/proc/{pid}")).exists()).await;
    }
}

/// Many children exiting together: every status reaches its own waiter
/// (more exits than one look at the pidfds takes), and each pidfd leaves the
/// reaper with its child.
#[tokio::test]
async fn a_burst_of_exits_reaches_every_waiter_and_leaves_no_pidfd() {
    let reaper = Reaper::start(false).expect("reaper");
    let dir = tempfile::tempdir().expect("temp dir");
    let gate = dir.path().join("go");
    // Each child waits for the file, then exits with its own code.
    let mut children = Vec::new();
    for index in 0..200u32 {
        let code = index + 1;
        let script =
            format!("while [ ! -e '{}' ]; do sleep 0.01; done; exit {code}", gate.display());
        let argv = vec!["/bin/sh".to_owned(), "-c".to_owned(), script];
        let spawned = reaper.spawn(&crate::spawn::SpawnSpec::new(argv)).expect("spawn");
        children.push((KillOnDrop(spawned.pid), spawned.pid, code, spawned.exit));
    }
    let pids: Vec<u32> = children.iter().map(|(_, pid, _, _)| *pid).collect();
    let pidfds: Vec<i32> = reaper
        .pidfds()
        .into_iter()
        .filter(|(pid, _)| pids.contains(pid))
        .map(|(_, fd)| fd)
        .collect();
    assert_eq!(pidfds.len(), pids.len(), "each child is watched through a pidfd");
    std::fs::write(&gate, b"").expect("gate");
    for (guard, pid, code, exit) in children {
        let status = tokio::time::timeout(Duration::from_secs(60), exit)
            .await
            .expect("every child exits")
            .expect("its status");
        // Reaped: the pid may name someone else's process now.
        std::mem::forget(guard);
        assert_eq!(status, crate::exit::ExitStatus::Code(code as i32), "pid {pid}");
    }
    // Closed with their children: none of those numbers names a pidfd of
    // a process gone (`Pid: -1`); another test may have reused a number.
    for fd in pidfds {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
        assert!(!info.lines().any(|line| line == "Pid:\t-1"), "fd {fd} left open: {info}");
    }
}
