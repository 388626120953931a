//! A thousand probed programs cost tasks, not threads: each gets a readiness
//! and a liveness TCP probe against one listener, and the daemon's thread count
//! must not grow with them. Its own test binary, so no other test's threads
//! blur the count. The programs are in-memory stand-ins (a [`Spawner`] that
//! starts nothing), so only the probes and actors are measured.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use vigil_core::exit::ExitStatus;
use vigil_core::reaper::Spawned;
use vigil_core::spawn::{SpawnError, SpawnSpec};
use vigil_core::{Health, ProcessState, Spawner, Supervisor, SupervisorOptions};

const PROGRAMS: usize = 1000;

/// Children that exist only as an exit channel, which a signal completes.
#[derive(Default)]
struct Phantoms {
    next: Mutex<u32>,
    alive: Mutex<HashMap<u32, oneshot::Sender<ExitStatus>>>,
}

impl Spawner for Phantoms {
    fn spawn(&self, _spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let mut next = self.next.lock().expect("lock");
        *next += 1;
        let pid = 20_000_000 + *next;
        let (tx, exit) = oneshot::channel();
        self.alive.lock().expect("lock").insert(pid, tx);
        Ok(Spawned { pid, stdin: None, stdout: None, stderr: None, exit })
    }

    fn signal(&self, pid: u32, sig: i32, _group: bool) -> Result<bool, nix::Error> {
        match self.alive.lock().expect("lock").remove(&pid) {
            Some(exit) => {
                let _ = exit.send(ExitStatus::Signal(sig));
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_probed_programs_need_no_thread_each() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conf = String::from("[supervisord]\nchildlogdir=%(here)s\n");
    for index in 0..PROGRAMS {
        conf.push_str(&format!(
            "[program:p{index}]\ncommand=/bin/true\nautostart=true\n\
             stdout_logfile=NONE\nstderr_logfile=NONE\n\
             ready_tcp=127.0.0.1:{port}\nready_period=100ms\n\
             live_tcp=127.0.0.1:{port}\nlive_period=200ms\n"
        ));
    }
    let path = dir.path().join("supervisord.conf");
    let loaded = vigil_config::load_str(&conf, &path, &BTreeMap::new()).expect("config loads");
    let before = threads();
    let options = SupervisorOptions::with_spawner(Arc::new(Phantoms::default()));
    let handle = Supervisor::start(loaded.config, options).await.expect("tree starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let infos = handle.process_info(None).await.expect("info");
        let healthy = infos
            .iter()
            .filter(|i| i.state == ProcessState::Running && i.health == Some(Health::Healthy))
            .count();
        if healthy == PROGRAMS {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {healthy} healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let several liveness rounds run.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let during = threads();
    eprintln!("threads: {before} before, {during} with {PROGRAMS} probed programs");
    assert!(
        during <= before + 8,
        "{PROGRAMS} probed programs took {} extra threads",
        during.saturating_sub(before)
    );
    handle.shutdown().await;
    server.abort();
}
