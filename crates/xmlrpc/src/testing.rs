//! An in-memory [`Backend`] for the tests of this crate: processes are records whose state
//! the fake flips at once, logs are byte vectors, and every side effect is recorded so tests
//! can assert what reached the daemon.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use std::time::Duration;

use tokio::sync::{Notify, watch};
use vigil_config::Signal;

use vigil_rpc::LogSettings;

use crate::backend::{
    Backend, ConfigInfo, DaemonState, FollowFrom, LogChannel, LogFollow, LogSource, ProcessInfo,
    ProcessRef, ProcessResult, ProcessState, Reread, Scope, UpdateReport,
};
use crate::fault::{Fault, FaultCode};

/// The largest chunk `follow_log` returns, small so tests see chunking.
const FOLLOW_CHUNK: usize = 4096;

#[derive(Debug)]
pub(crate) struct FakeState {
    pub(crate) daemon: DaemonState,
    pub(crate) processes: Vec<ProcessInfo>,
    /// Groups of the last-read config that `add_group` may activate.
    pub(crate) available_groups: Vec<String>,
    pub(crate) configs: Vec<ConfigInfo>,
    pub(crate) reload: Result<Reread, Fault>,
    /// Logs by source; a missing entry is a log without a file (`NO_FILE`).
    pub(crate) logs: HashMap<LogSource, Vec<u8>>,
    /// Processes whose start fails with `SPAWN_ERROR`.
    pub(crate) failing_spawns: Vec<ProcessRef>,
    pub(crate) signals: Vec<(ProcessRef, Signal)>,
    pub(crate) stdin: Vec<(ProcessRef, Vec<u8>)>,
    pub(crate) events: Vec<(String, String)>,
    pub(crate) cleared: Vec<Option<ProcessRef>>,
    /// What `update` answers.
    pub(crate) update: Result<UpdateReport, Fault>,
    /// The `dry_run` of every `update` called.
    pub(crate) updates: Vec<bool>,
}

#[derive(Debug)]
pub(crate) struct FakeBackend {
    state: Mutex<FakeState>,
    /// Woken whenever a log changes, so `follow_log` waits without polling.
    log_changed: Notify,
    /// The change counter `changes` reports; every start, stop and restart moves it.
    changes: watch::Sender<u64>,
}

pub(crate) fn process(group: &str, name: &str, state: ProcessState) -> ProcessInfo {
    let running = matches!(
        state,
        ProcessState::Starting
            | ProcessState::Running
            | ProcessState::Backoff
            | ProcessState::Stopping
    );
    ProcessInfo {
        name: name.into(),
        group: group.into(),
        start: if state == ProcessState::Stopped { 0 } else { 1_700_000_000 },
        stop: 0,
        now: 0,
        state,
        statename: state.name().into(),
        spawnerr: Default::default(),
        exitstatus: 0,
        logfile: format!("/logs/{name}.out").into(),
        stdout_logfile: format!("/logs/{name}.out").into(),
        stderr_logfile: Default::default(),
        pid: if running { 4242 } else { 0 },
        description: String::new(),
        health: None,
        waiting_for: Vec::new(),
    }
}

pub(crate) fn config(group: &str, name: &str) -> ConfigInfo {
    let channel = |logfile: &str| LogSettings {
        capture_maxbytes: 0,
        events_enabled: false,
        logfile: logfile.to_owned(),
        logfile_backups: 10,
        logfile_maxbytes: 50 * 1024 * 1024,
        syslog: false,
    };
    ConfigInfo {
        name: name.into(),
        group: group.into(),
        group_prio: 999,
        process_prio: 999,
        inuse: true,
        autostart: true,
        autorestart: "unexpected".to_owned(),
        directory: None,
        uid: None,
        command: format!("/bin/{name}"),
        exitcodes: vec![0],
        killasgroup: false,
        stopasgroup: false,
        redirect_stderr: false,
        startretries: 3,
        startsecs: 1,
        stopsignal: 15,
        stopwaitsecs: 10,
        stdout: channel("auto"),
        stderr: channel("none"),
        serverurl: "auto".to_owned(),
    }
}

impl FakeBackend {
    /// A running daemon with `web:web_0` and `web:web_1` running, `worker` stopped and
    /// `cron` fatal.
    pub(crate) fn new() -> FakeBackend {
        let mut cron = process("cron", "cron", ProcessState::Fatal);
        cron.spawnerr = "Exited too quickly (process log may have details)".into();
        FakeBackend::with_processes(vec![
            process("web", "web_1", ProcessState::Running),
            process("worker", "worker", ProcessState::Stopped),
            process("web", "web_0", ProcessState::Running),
            cron,
        ])
    }

    pub(crate) fn with_processes(processes: Vec<ProcessInfo>) -> FakeBackend {
        let configs = processes.iter().map(|info| config(&info.group, &info.name)).collect();
        FakeBackend {
            state: Mutex::new(FakeState {
                daemon: DaemonState::Running,
                processes,
                available_groups: vec!["extra".to_owned()],
                configs,
                reload: Ok(Reread::default()),
                logs: HashMap::new(),
                failing_spawns: Vec::new(),
                signals: Vec::new(),
                stdin: Vec::new(),
                events: Vec::new(),
                cleared: Vec::new(),
                update: Ok(UpdateReport {
                    dry_run: true,
                    unknown_groups: Vec::new(),
                    steps: Vec::new(),
                }),
                updates: Vec::new(),
            }),
            log_changed: Notify::new(),
            changes: watch::Sender::new(0),
        }
    }

    /// Records a change of what the dashboard shows, as the daemon's tree does.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|count| *count += 1);
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake backend lock poisoned by a failed test")
    }

    /// Appends to a log (creating its file) and wakes followers.
    pub(crate) fn append_log(&self, source: &LogSource, bytes: &[u8]) {
        self.state().logs.entry(source.clone()).or_default().extend_from_slice(bytes);
        self.log_changed.notify_waiters();
    }

    /// Empties a log, as a clear or a rotation would, and wakes followers.
    pub(crate) fn truncate_log(&self, source: &LogSource) {
        self.state().logs.insert(source.clone(), Vec::new());
        self.log_changed.notify_waiters();
    }

    /// Removes a log file and wakes followers, which then end.
    pub(crate) fn remove_log(&self, source: &LogSource) {
        self.state().logs.remove(source);
        self.log_changed.notify_waiters();
    }

    fn find(state: &FakeState, process: &ProcessRef) -> Result<usize, Fault> {
        state
            .processes
            .iter()
            .position(|info| info.group == process.group && info.name == process.name)
            .ok_or_else(|| Fault::with_detail(FaultCode::BadName, process.namespec()))
    }

    fn in_scope(state: &FakeState, scope: &Scope) -> Result<Vec<ProcessRef>, Fault> {
        let mut selected: Vec<ProcessRef> = state
            .processes
            .iter()
            .filter(|info| match scope {
                Scope::Group(group) => info.group == *group,
                Scope::All => true,
            })
            .map(|info| ProcessRef::new(info.group.as_str(), info.name.as_str()))
            .collect();
        if let Scope::Group(group) = scope
            && selected.is_empty()
        {
            return Err(Fault::with_detail(FaultCode::BadName, group.as_str()));
        }
        selected.sort();
        Ok(selected)
    }

    fn is_running(state: ProcessState) -> bool {
        matches!(state, ProcessState::Starting | ProcessState::Running | ProcessState::Backoff)
    }

    /// `*_many`: `act` on each process of `scope` that is running (`running`) or not,
    /// in name order; one result each.
    fn many_locked(
        state: &mut FakeState,
        scope: &Scope,
        running: bool,
        mut act: impl FnMut(&mut FakeState, &ProcessRef) -> Result<(), Fault>,
    ) -> Result<Vec<ProcessResult>, Fault> {
        let mut results = Vec::new();
        for process in Self::in_scope(state, scope)? {
            let index = Self::find(state, &process)?;
            if Self::is_running(state.processes[index].state) != running {
                continue;
            }
            let outcome = act(state, &process);
            results.push(ProcessResult { process, outcome });
        }
        Ok(results)
    }

    fn start_locked(state: &mut FakeState, process: &ProcessRef) -> Result<(), Fault> {
        let index = Self::find(state, process)?;
        if Self::is_running(state.processes[index].state) {
            return Err(Fault::with_detail(FaultCode::AlreadyStarted, process.namespec()));
        }
        if state.failing_spawns.contains(process) {
            let info = &mut state.processes[index];
            info.state = ProcessState::Backoff;
            info.statename = ProcessState::Backoff.name().into();
            info.spawnerr = "can't find command".into();
            return Err(Fault::with_detail(FaultCode::SpawnError, process.namespec()));
        }
        let info = &mut state.processes[index];
        info.state = ProcessState::Running;
        info.statename = ProcessState::Running.name().into();
        info.pid = 5000 + u32::try_from(index).expect("few processes");
        info.start = 1_700_000_100;
        Ok(())
    }

    fn stop_locked(state: &mut FakeState, process: &ProcessRef) -> Result<(), Fault> {
        let index = Self::find(state, process)?;
        let info = &mut state.processes[index];
        if !Self::is_running(info.state) {
            return Err(Fault::with_detail(FaultCode::NotRunning, process.namespec()));
        }
        info.state = ProcessState::Stopped;
        info.statename = ProcessState::Stopped.name().into();
        info.pid = 0;
        info.stop = 1_700_000_200;
        Ok(())
    }

    fn signal_locked(
        state: &mut FakeState,
        process: &ProcessRef,
        signal: Signal,
    ) -> Result<(), Fault> {
        let index = Self::find(state, process)?;
        if !matches!(
            state.processes[index].state,
            ProcessState::Starting | ProcessState::Running | ProcessState::Stopping
        ) {
            return Err(Fault::with_detail(FaultCode::NotRunning, process.namespec()));
        }
        state.signals.push((process.clone(), signal));
        Ok(())
    }

    fn log_locked<'a>(state: &'a FakeState, source: &LogSource) -> Result<&'a [u8], Fault> {
        if let LogSource::Process(process, _) = source {
            Self::find(state, process)?;
        }
        state.logs.get(source).map(Vec::as_slice).ok_or_else(|| {
            let path = match source {
                LogSource::Main => "/logs/vigild.log".to_owned(),
                LogSource::Process(process, LogChannel::Stdout) => {
                    format!("/logs/{}.out", process.name)
                }
                LogSource::Process(process, LogChannel::Stderr) => {
                    format!("/logs/{}.err", process.name)
                }
            };
            Fault::with_detail(FaultCode::NoFile, path)
        })
    }
}

impl Backend for FakeBackend {
    async fn state(&self) -> Result<DaemonState, Fault> {
        Ok(self.state().daemon)
    }

    async fn identification(&self) -> Result<String, Fault> {
        Ok("vigil-test".to_owned())
    }

    async fn process_info(&self, process: &ProcessRef) -> Result<ProcessInfo, Fault> {
        let state = self.state();
        let index = Self::find(&state, process)?;
        Ok(state.processes[index].clone())
    }

    async fn all_process_info(&self) -> Result<Vec<ProcessInfo>, Fault> {
        Ok(self.state().processes.clone())
    }

    async fn facts(&self, usage: bool) -> Result<vigil_rpc::Facts, Fault> {
        let state = self.state();
        let processes = state
            .processes
            .iter()
            .map(|info| vigil_rpc::ProcessFacts {
                info: info.clone(),
                autostart: true,
                completed: false,
                restarts: 0,
                last_exit: None,
                usage: (usage && info.pid != 0).then_some(vigil_rpc::Usage {
                    cpu_user_us: 1_250_000,
                    cpu_system_us: 5,
                    rss_bytes: 4096,
                }),
                stdout_bytes: 0,
                stderr_bytes: 0,
            })
            .collect();
        let daemon = vigil_rpc::DaemonFacts {
            version: "0.0.0".to_owned(),
            pid: 1,
            started: 1_700_000_000,
            now: 1_700_000_060,
            config_generation: 1,
            reloads: 0,
        };
        Ok(vigil_rpc::Facts { daemon, processes })
    }

    async fn all_config_info(&self) -> Result<Vec<ConfigInfo>, Fault> {
        Ok(self.state().configs.clone())
    }

    async fn changes(&self, seen: u64, wait: Duration) -> Result<u64, Fault> {
        let mut changes = self.changes.subscribe();
        let current = *changes.borrow_and_update();
        if current == seen {
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
        let current = *changes.borrow();
        Ok(current)
    }

    async fn start_process(&self, process: &ProcessRef, _wait: bool) -> Result<(), Fault> {
        let result = Self::start_locked(&mut self.state(), process);
        self.changed();
        result
    }

    async fn start_many(&self, scope: &Scope, _wait: bool) -> Result<Vec<ProcessResult>, Fault> {
        let result = Self::many_locked(&mut self.state(), scope, false, Self::start_locked);
        self.changed();
        result
    }

    async fn stop_process(&self, process: &ProcessRef, _wait: bool) -> Result<(), Fault> {
        let result = Self::stop_locked(&mut self.state(), process);
        self.changed();
        result
    }

    async fn stop_many(&self, scope: &Scope, _wait: bool) -> Result<Vec<ProcessResult>, Fault> {
        let result = Self::many_locked(&mut self.state(), scope, true, Self::stop_locked);
        self.changed();
        result
    }

    async fn restart_processes(
        &self,
        process: Option<&ProcessRef>,
    ) -> Result<Vec<ProcessResult>, Fault> {
        let scope = match process {
            Some(process) => {
                Self::find(&self.state(), process)?;
                vec![process.clone()]
            }
            None => Self::in_scope(&self.state(), &Scope::All)?,
        };
        let mut results = Vec::new();
        let mut state = self.state();
        for process in &scope {
            let outcome = Self::stop_locked(&mut state, process);
            results.push(ProcessResult { process: process.clone(), outcome });
        }
        for process in &scope {
            let outcome = Self::start_locked(&mut state, process);
            results.push(ProcessResult { process: process.clone(), outcome });
        }
        drop(state);
        self.changed();
        Ok(results)
    }

    async fn signal_process(&self, process: &ProcessRef, signal: Signal) -> Result<(), Fault> {
        Self::signal_locked(&mut self.state(), process, signal)
    }

    async fn signal_many(
        &self,
        scope: &Scope,
        signal: Signal,
    ) -> Result<Vec<ProcessResult>, Fault> {
        Self::many_locked(&mut self.state(), scope, true, |state, process| {
            Self::signal_locked(state, process, signal)
        })
    }

    async fn update(&self, dry_run: bool) -> Result<UpdateReport, Fault> {
        let mut state = self.state();
        state.updates.push(dry_run);
        state.update.clone().map(|report| UpdateReport { dry_run, ..report })
    }

    async fn reload_config(&self) -> Result<Reread, Fault> {
        self.state().reload.clone()
    }

    async fn add_group(&self, group: &str) -> Result<(), Fault> {
        let mut state = self.state();
        if state.processes.iter().any(|info| info.group == group) {
            return Err(Fault::with_detail(FaultCode::AlreadyAdded, group));
        }
        if !state.available_groups.iter().any(|name| name == group) {
            return Err(Fault::with_detail(FaultCode::BadName, group));
        }
        state.processes.push(process(group, group, ProcessState::Stopped));
        Ok(())
    }

    async fn remove_group(&self, group: &str) -> Result<(), Fault> {
        let mut state = self.state();
        let members: Vec<&ProcessInfo> =
            state.processes.iter().filter(|info| info.group == group).collect();
        if members.is_empty() {
            return Err(Fault::with_detail(FaultCode::BadName, group));
        }
        if members.iter().any(|info| Self::is_running(info.state)) {
            return Err(Fault::with_detail(FaultCode::StillRunning, group));
        }
        state.processes.retain(|info| info.group != group);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), Fault> {
        self.state().daemon = DaemonState::Shutdown;
        Ok(())
    }

    async fn restart(&self) -> Result<(), Fault> {
        self.state().daemon = DaemonState::Restarting;
        Ok(())
    }

    async fn upgrade(&self, binary: &str) -> Result<String, Fault> {
        if binary.ends_with("refuses") {
            return Err(Fault::with_detail(FaultCode::Failed, format!("{binary} refused")));
        }
        Ok("vigild 0.0.0 reads handover format 1".to_owned())
    }

    async fn send_stdin(&self, process: &ProcessRef, bytes: &[u8]) -> Result<(), Fault> {
        let mut state = self.state();
        let index = Self::find(&state, process)?;
        if state.processes[index].pid == 0 {
            return Err(Fault::with_detail(FaultCode::NotRunning, process.namespec()));
        }
        state.stdin.push((process.clone(), bytes.to_vec()));
        Ok(())
    }

    async fn send_remote_comm_event(&self, event_type: &str, data: &str) -> Result<(), Fault> {
        self.state().events.push((event_type.to_owned(), data.to_owned()));
        Ok(())
    }

    async fn log_size(&self, source: &LogSource) -> Result<u64, Fault> {
        let state = self.state();
        let log = Self::log_locked(&state, source)?;
        Ok(u64::try_from(log.len()).expect("test logs are small"))
    }

    async fn read_log(
        &self,
        source: &LogSource,
        start: u64,
        max_len: Option<u64>,
    ) -> Result<Vec<u8>, Fault> {
        let state = self.state();
        let log = Self::log_locked(&state, source)?;
        let start = usize::try_from(start).unwrap_or(usize::MAX).min(log.len());
        let end = match max_len {
            Some(length) => start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX)),
            None => log.len(),
        }
        .min(log.len());
        Ok(log[start..end].to_vec())
    }

    async fn follow_log(&self, source: &LogSource, from: FollowFrom) -> Result<LogFollow, Fault> {
        let length = |n: usize| u64::try_from(n).expect("test logs are small");
        let offset = match from {
            FollowFrom::Tail(count) => {
                let state = self.state();
                let log = Self::log_locked(&state, source)?;
                let count = usize::try_from(count).unwrap_or(usize::MAX).min(log.len());
                let start = log.len() - count;
                return Ok(LogFollow {
                    bytes: log[start..].to_vec(),
                    truncated: false,
                    next: length(log.len()),
                });
            }
            FollowFrom::Position(offset) => usize::try_from(offset).expect("test logs are small"),
        };
        loop {
            // Register for the wake-up before looking, so a change in between is not lost.
            let changed = self.log_changed.notified();
            {
                let state = self.state();
                let log = Self::log_locked(&state, source)?;
                // Shorter than the reader's offset: truncated, the reader restarts at 0.
                let (start, truncated) =
                    if log.len() < offset { (0, true) } else { (offset, false) };
                if truncated || log.len() > start {
                    let end = log.len().min(start + FOLLOW_CHUNK);
                    return Ok(LogFollow {
                        bytes: log[start..end].to_vec(),
                        truncated,
                        next: length(end),
                    });
                }
            }
            changed.await;
        }
    }

    async fn clear_process_logs(&self, process: &ProcessRef) -> Result<(), Fault> {
        let mut state = self.state();
        Self::find(&state, process)?;
        for channel in [LogChannel::Stdout, LogChannel::Stderr] {
            state.logs.remove(&LogSource::Process(process.clone(), channel));
        }
        state.cleared.push(Some(process.clone()));
        Ok(())
    }

    async fn clear_main_log(&self) -> Result<(), Fault> {
        let mut state = self.state();
        state.logs.insert(LogSource::Main, Vec::new());
        state.cleared.push(None);
        Ok(())
    }
}
