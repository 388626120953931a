//! Readiness with real children: `ready_log` (a regex on the output) and
//! `ready_notify` (systemd's `READY=1` on `NOTIFY_SOCKET`, sent by the helper's
//! `--notify-ready`), gating a dependent across the dependency gate, from a
//! config in supervisord's dialect run through the real reaper.

use std::collections::BTreeMap;
use std::time::Duration;

use vigil_core::{Handle, Health, ProcessState, Reaper, Supervisor, SupervisorOptions};

const CHILD: &str = env!("CARGO_BIN_EXE_vigil-test-child");

/// Kills whatever the tree still runs if a test fails before its shutdown.
struct ShutdownGuard {
    reaper: Reaper,
    pids: Vec<u32>,
}

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = self.reaper.signal(*pid, libc::SIGKILL, true);
        }
    }
}

async fn info(handle: &Handle, name: &str) -> vigil_core::ProcessInfo {
    handle.process_info(Some(&vigil_config::NameSpec::parse(name))).await.expect("info").remove(0)
}

async fn until_running(handle: &Handle, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while info(handle, name).await.state != ProcessState::Running {
        assert!(std::time::Instant::now() < deadline, "{name} never reached RUNNING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_and_notify_readiness_gate_a_dependent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = format!(
        "[supervisord]\n\
         childlogdir=%(here)s\n\
         \n\
         [program:logready]\n\
         command={CHILD} --sleep 0.5 --echo \"listening on 4321\" --sleep 60\n\
         autostart=true\n\
         ready_log=^listening on [0-9]+$\n\
         \n\
         [program:notified]\n\
         command={CHILD} --sleep 0.5 --notify-ready --sleep 60\n\
         autostart=true\n\
         ready_notify=true\n\
         \n\
         [program:web]\n\
         command={CHILD} --echo up --sleep 60\n\
         autostart=true\n\
         startsecs=0\n\
         depends_on=logready:healthy, notified\n"
    );
    let path = dir.path().join("supervisord.conf");
    let loaded = vigil_config::load_str(&conf, &path, &BTreeMap::new()).expect("config loads");
    let reaper = Reaper::start(false).expect("reaper");
    let options = SupervisorOptions {
        daemon_env: vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())],
        ..SupervisorOptions::new(reaper.clone())
    };
    let handle = Supervisor::start(loaded.config, options).await.expect("tree starts");
    let mut guard = ShutdownGuard { reaper: reaper.clone(), pids: Vec::new() };
    let web = info(&handle, "web").await;
    assert_eq!(web.state, ProcessState::Starting);
    assert!(web.description.starts_with("waiting for "), "{}", web.description);
    let logready = info(&handle, "logready").await;
    guard.pids.push(logready.pid);
    assert_eq!(logready.state, ProcessState::Starting, "not ready before its line");
    until_running(&handle, "web").await;
    for name in ["logready", "notified", "web"] {
        guard.pids.push(info(&handle, name).await.pid);
    }
    let logready = info(&handle, "logready").await;
    assert_eq!(logready.health, Some(Health::Healthy));
    assert!(logready.description.ends_with(", healthy"), "{}", logready.description);
    assert_eq!(info(&handle, "notified").await.state, ProcessState::Running);
    handle.shutdown().await;
    for name in ["logready", "notified", "web"] {
        assert!(info(&handle, name).await.state.is_stopped());
    }
    for pid in &guard.pids {
        assert!(!reaper.is_running(*pid), "pid {pid} outlived the shutdown");
    }
}
