//! A fake [`Spawner`] whose children are scripted by their argv, so lifecycle
//! timing runs on paused tokio time with no OS process involved.
//!
//! `argv[0]` must exist (it goes through the real `resolve_command`); the
//! behaviour comes from `argv[1..]`:
//! - `exit <code> <millis>`: exits with `code` after `millis`.
//! - `run`: runs until any signal, which kills it.
//! - `stubborn`: ignores every signal but SIGKILL.
//! - `exists <path>`: exits at once, 0 if `path` exists, else 1 (a probe command).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::Spawner;
use crate::exit::ExitStatus;
use crate::reaper::Spawned;
use crate::spawn::{SpawnError, SpawnSpec};

/// Fake pids start here, far above any real pid_max default.
const FIRST_PID: u32 = 10_000_000;

#[derive(Debug, Clone)]
pub(super) struct SpawnRecord {
    pub(super) pid: u32,
    pub(super) argv: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) at: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct SignalRecord {
    pub(super) pid: u32,
    pub(super) sig: i32,
    pub(super) group: bool,
    pub(super) at: Instant,
}

struct Child {
    exit: Option<oneshot::Sender<ExitStatus>>,
    stubborn: bool,
}

#[derive(Default)]
struct State {
    next_pid: u32,
    children: HashMap<u32, Child>,
    spawns: Vec<SpawnRecord>,
    signals: Vec<SignalRecord>,
}

#[derive(Default, Clone)]
pub(super) struct FakeSpawner {
    state: Arc<Mutex<State>>,
}

impl FakeSpawner {
    pub(super) fn spawns(&self) -> Vec<SpawnRecord> {
        self.state.lock().unwrap().spawns.clone()
    }

    pub(super) fn signals(&self) -> Vec<SignalRecord> {
        self.state.lock().unwrap().signals.clone()
    }

    /// Children spawned and not yet exited.
    pub(super) fn alive(&self) -> usize {
        self.state.lock().unwrap().children.len()
    }

    fn finish(state: &Arc<Mutex<State>>, pid: u32, status: ExitStatus) {
        let child = state.lock().unwrap().children.remove(&pid);
        if let Some(mut child) = child
            && let Some(exit) = child.exit.take()
        {
            let _ = exit.send(status);
        }
    }
}

impl Spawner for FakeSpawner {
    fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        let (exit_tx, exit_rx) = oneshot::channel();
        let mut state = self.state.lock().unwrap();
        let pid = FIRST_PID + state.next_pid;
        state.next_pid += 1;
        let script: Vec<&str> = spec.argv.iter().skip(1).map(String::as_str).collect();
        let stubborn = script.first() == Some(&"stubborn");
        state.children.insert(pid, Child { exit: Some(exit_tx), stubborn });
        state.spawns.push(SpawnRecord {
            pid,
            argv: spec.argv.clone(),
            env: spec.env.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            at: Instant::now(),
        });
        if let ["exists", path] = script.as_slice() {
            let code = if std::path::Path::new(path).exists() { 0 } else { 1 };
            let shared = Arc::clone(&self.state);
            tokio::spawn(async move {
                FakeSpawner::finish(&shared, pid, ExitStatus::Code(code));
            });
        } else if let ["exit", code, millis] = script.as_slice() {
            let code: i32 = code.parse().expect("exit code");
            let after = Duration::from_millis(millis.parse().expect("millis"));
            let shared = Arc::clone(&self.state);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                FakeSpawner::finish(&shared, pid, ExitStatus::Code(code));
            });
        }
        Ok(Spawned { pid, stdin: None, stdout: None, stderr: None, exit: exit_rx })
    }

    fn signal(&self, pid: u32, sig: i32, group: bool) -> Result<bool, nix::Error> {
        let dies = {
            let mut state = self.state.lock().unwrap();
            state.signals.push(SignalRecord { pid, sig, group, at: Instant::now() });
            match state.children.get(&pid) {
                None => return Ok(false),
                Some(child) => !child.stubborn || sig == libc::SIGKILL,
            }
        };
        if dies {
            FakeSpawner::finish(&self.state, pid, ExitStatus::Signal(sig));
        }
        Ok(true)
    }
}
