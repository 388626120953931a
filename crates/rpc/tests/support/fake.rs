//! An in-memory `Control` implementation for tests: a handful of processes whose
//! states change when started/stopped, per-channel logs with rotation, and the
//! supervisord log-reading rules. It is shared (by `#[path]`) with vigilctl's
//! tests so both sides are tested against the same behaviour.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tarpc::context::Context;
use tokio::sync::Notify;
use vigil_rpc::*;

/// One channel's log: the current file plus the stream position of its first
/// byte, so positions stay monotonic across rotation.
#[derive(Default, Clone)]
pub struct FakeLog {
    pub file: Vec<u8>,
    pub base: u64,
}

pub struct FakeState {
    pub processes: Vec<ProcessInfo>,
    pub logs: HashMap<(String, LogChannel), FakeLog>,
    pub main_log: Vec<u8>,
    /// Every call's name, in order, so tests can count round trips.
    pub calls: Vec<String>,
    /// The largest log payload any reply carried.
    pub largest_reply: usize,
    pub reread: Result<Reread, ControlError>,
    pub update: Result<UpdateReport, ControlError>,
    pub stdin: Vec<u8>,
    pub shut_down: bool,
    /// What `daemon_info` lists as [`DaemonInfo::extensions`] (all of them
    /// unless a test plays an older daemon).
    pub extensions: Vec<String>,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    output: Arc<Notify>,
}

vigil_rpc::impl_send_control!(Fake);

pub const NOW: i64 = 1_700_000_000;

pub fn info(group: &str, name: &str, state: ProcessState, pid: u32) -> ProcessInfo {
    let mut info = ProcessInfo {
        name: name.into(),
        group: group.into(),
        start: 0,
        stop: 0,
        now: NOW,
        state,
        statename: state.name().into(),
        spawnerr: SmolStr::default(),
        exitstatus: 0,
        logfile: format!("/logs/{name}.out").into(),
        stdout_logfile: format!("/logs/{name}.out").into(),
        stderr_logfile: format!("/logs/{name}.err").into(),
        pid,
        description: String::new(),
        health: None,
        waiting_for: Vec::new(),
    };
    describe(&mut info);
    info
}

fn describe(info: &mut ProcessInfo) {
    info.statename = info.state.name().into();
    info.description = vigil_rpc::describe(info, |_| "Nov 14 10:13 PM".to_owned());
}

impl Fake {
    /// app1 RUNNING, app2 STOPPED, failer FATAL, grp:a RUNNING, grp:b STOPPED.
    pub fn new() -> Fake {
        let mut app1 = info("app1", "app1", ProcessState::Running, 4242);
        app1.start = NOW - 12;
        describe(&mut app1);
        let mut failer = info("failer", "failer", ProcessState::Fatal, 0);
        failer.spawnerr = "Exited too quickly (process log may have details)".into();
        describe(&mut failer);
        let mut grp_a = info("grp", "a", ProcessState::Running, 5000);
        grp_a.start = NOW - 90_061;
        describe(&mut grp_a);
        let processes = vec![
            app1,
            info("app2", "app2", ProcessState::Stopped, 0),
            failer,
            grp_a,
            info("grp", "b", ProcessState::Stopped, 0),
        ];
        let state = FakeState {
            processes,
            logs: HashMap::new(),
            main_log: b"2026-11-24 06:00:00,000 INFO supervisord started\n".to_vec(),
            calls: Vec::new(),
            largest_reply: 0,
            reread: Ok(Reread::default()),
            update: Ok(UpdateReport::default()),
            stdin: Vec::new(),
            shut_down: false,
            extensions: vec![EXTENSION_STATUS_ROWS.to_owned()],
        };
        Fake { state: Arc::new(Mutex::new(state)), output: Arc::new(Notify::new()) }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state lock")
    }

    /// Appends process output and wakes long-polls.
    pub fn append(&self, name: &str, channel: LogChannel, bytes: &[u8]) {
        self.lock()
            .logs
            .entry((name.to_owned(), channel))
            .or_default()
            .file
            .extend_from_slice(bytes);
        self.output.notify_waiters();
    }

    /// Rotates a channel's log: the current file becomes a backup (gone for us),
    /// a new empty file starts; stream positions continue.
    pub fn rotate(&self, name: &str, channel: LogChannel) {
        let mut state = self.lock();
        let log = state.logs.entry((name.to_owned(), channel)).or_default();
        log.base += log.file.len() as u64;
        log.file.clear();
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    fn record(&self, call: &str) {
        self.lock().calls.push(call.to_owned());
    }

    /// Indexes of the processes a spec list names, or the failure for a spec
    /// that names nothing. The bool says whether the process came from a group
    /// or `all` spec (already-in-state processes are skipped silently then).
    fn resolve(&self, specs: &[NameSpec]) -> Vec<Result<(usize, bool), ProcessResult>> {
        let state = self.lock();
        let specs: Vec<NameSpec> =
            if specs.contains(&NameSpec::All) { vec![NameSpec::All] } else { specs.to_vec() };
        let mut out = Vec::new();
        for spec in &specs {
            match spec {
                NameSpec::All => out.extend((0..state.processes.len()).map(|i| Ok((i, true)))),
                NameSpec::Group(group) => {
                    let found: Vec<_> = (0..state.processes.len())
                        .filter(|&i| state.processes[i].group == group)
                        .map(|i| Ok((i, true)))
                        .collect();
                    if found.is_empty() {
                        out.push(Err(ProcessResult::failed(
                            group,
                            None,
                            ControlError::BadName(group.clone()),
                        )));
                    }
                    out.extend(found);
                }
                NameSpec::Process { group, name } => {
                    match state.processes.iter().position(|p| p.group == group && p.name == name) {
                        Some(i) => out.push(Ok((i, false))),
                        None => out.push(Err(ProcessResult::failed(
                            group,
                            Some(name.clone()),
                            ControlError::BadName(spec.to_string()),
                        ))),
                    }
                }
            }
        }
        out
    }

    fn do_start(&self, specs: &[NameSpec]) -> Vec<ProcessResult> {
        let mut results = Vec::new();
        for item in self.resolve(specs) {
            let (i, from_group) = match item {
                Ok(found) => found,
                Err(result) => {
                    results.push(result);
                    continue;
                }
            };
            let mut state = self.lock();
            let process = &mut state.processes[i];
            let (group, name) = (process.group.to_string(), process.name.to_string());
            if matches!(
                process.state,
                ProcessState::Running | ProcessState::Starting | ProcessState::Backoff
            ) {
                if !from_group {
                    results.push(ProcessResult::failed(
                        group,
                        Some(name.clone()),
                        ControlError::AlreadyStarted(name),
                    ));
                }
                continue;
            }
            if name == "failer" {
                process.state = ProcessState::Fatal;
                describe(process);
                results.push(ProcessResult::failed(
                    group,
                    Some(name.clone()),
                    ControlError::SpawnError(name),
                ));
                continue;
            }
            process.state = ProcessState::Running;
            process.pid = 6000 + i as u32;
            process.start = NOW;
            describe(process);
            results.push(ProcessResult::ok(group, name));
        }
        results
    }

    fn do_stop(&self, specs: &[NameSpec]) -> Vec<ProcessResult> {
        let mut results = Vec::new();
        for item in self.resolve(specs) {
            let (i, from_group) = match item {
                Ok(found) => found,
                Err(result) => {
                    results.push(result);
                    continue;
                }
            };
            let mut state = self.lock();
            let process = &mut state.processes[i];
            let (group, name) = (process.group.to_string(), process.name.to_string());
            if process.state.is_stopped() {
                if !from_group {
                    results.push(ProcessResult::failed(
                        group,
                        Some(name.clone()),
                        ControlError::NotRunning(name),
                    ));
                }
                continue;
            }
            process.state = ProcessState::Stopped;
            process.pid = 0;
            process.stop = NOW;
            describe(process);
            results.push(ProcessResult::ok(group, name));
        }
        results
    }

    fn log_of(&self, target: &LogTarget) -> Result<FakeLog, ControlError> {
        let state = self.lock();
        match target {
            LogTarget::Main => Ok(FakeLog { file: state.main_log.clone(), base: 0 }),
            LogTarget::Process { name, channel } => {
                let spec = NameSpec::parse(name);
                let NameSpec::Process { group, name: process } = &spec else {
                    return Err(ControlError::BadName(name.clone()));
                };
                if !state.processes.iter().any(|p| p.group == group && p.name == process) {
                    return Err(ControlError::BadName(name.clone()));
                }
                Ok(state.logs.get(&(process.clone(), *channel)).cloned().unwrap_or_default())
            }
        }
    }

    fn note_reply(&self, len: usize) {
        let mut state = self.lock();
        state.largest_reply = state.largest_reply.max(len);
    }
}

impl Control for Fake {
    async fn daemon_info(self, _: Context) -> Result<DaemonInfo, ControlError> {
        self.record("daemon_info");
        Ok(DaemonInfo {
            api_version: API_VERSION.into(),
            version: "0.1.0".into(),
            identification: "vigil".into(),
            state: DaemonState::Running,
            pid: 777,
            extensions: self.lock().extensions.clone(),
        })
    }

    async fn changes(self, _: Context, seen: u64, wait_ms: u64) -> Result<u64, ControlError> {
        self.record("changes");
        // Nothing in the fake changes on its own: its counter stays 0.
        if seen == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        }
        Ok(0)
    }

    async fn facts(self, _: Context, usage: bool) -> Result<vigil_rpc::Facts, ControlError> {
        self.record("facts");
        let mut all = self.lock().processes.clone();
        all.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
        let processes = all
            .into_iter()
            .map(|info| vigil_rpc::ProcessFacts {
                autostart: true,
                completed: false,
                restarts: u64::from(info.pid % 3),
                last_exit: None,
                usage: (usage && info.pid != 0).then_some(vigil_rpc::Usage {
                    cpu_user_us: 2_000_000,
                    cpu_system_us: 500_000,
                    rss_bytes: 1 << 20,
                }),
                stdout_bytes: 0,
                stderr_bytes: 0,
                info,
            })
            .collect();
        let daemon = vigil_rpc::DaemonFacts {
            version: "0.1.0".into(),
            pid: 777,
            started: 1_700_000_000,
            now: 1_700_000_100,
            config_generation: 1,
            reloads: 0,
        };
        Ok(vigil_rpc::Facts { daemon, processes })
    }

    async fn all_process_info(self, _: Context) -> Result<Vec<ProcessInfo>, ControlError> {
        self.record("all_process_info");
        let mut all = self.lock().processes.clone();
        all.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
        Ok(all)
    }

    async fn status_rows(self, _: Context) -> Result<Vec<StatusRow>, ControlError> {
        self.record("status_rows");
        let mut all = self.lock().processes.clone();
        all.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
        Ok(all.into_iter().map(StatusRow::from).collect())
    }

    async fn process_info(self, _: Context, name: String) -> Result<ProcessInfo, ControlError> {
        self.record("process_info");
        let NameSpec::Process { group, name: process } = NameSpec::parse(&name) else {
            return Err(ControlError::BadName(name));
        };
        self.lock()
            .processes
            .iter()
            .find(|p| p.group == group && p.name == process)
            .cloned()
            .ok_or(ControlError::BadName(name))
    }

    async fn start(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        _wait: bool,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.record("start");
        Ok(self.do_start(&specs))
    }

    async fn stop(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        _wait: bool,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.record("stop");
        Ok(self.do_stop(&specs))
    }

    async fn restart(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        _wait: bool,
    ) -> Result<RestartReport, ControlError> {
        self.record("restart");
        let stopped = self.do_stop(&specs);
        let started = self.do_start(&specs);
        Ok(RestartReport { stopped, started })
    }

    async fn signal(
        self,
        _: Context,
        specs: Vec<NameSpec>,
        signal: String,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.record("signal");
        let known = ["HUP", "SIGHUP", "TERM", "SIGTERM", "USR1", "SIGUSR1", "1", "15"];
        let mut results = Vec::new();
        for item in self.resolve(&specs) {
            let (i, _) = match item {
                Ok(found) => found,
                Err(result) => {
                    results.push(result);
                    continue;
                }
            };
            let state = self.lock();
            let process = &state.processes[i];
            let (group, name) = (process.group.to_string(), process.name.to_string());
            results.push(if !known.contains(&signal.as_str()) {
                ProcessResult::failed(group, Some(name), ControlError::BadSignal(signal.clone()))
            } else if process.state != ProcessState::Running {
                ProcessResult::failed(group, Some(name.clone()), ControlError::NotRunning(name))
            } else {
                ProcessResult::ok(group, name)
            });
        }
        Ok(results)
    }

    async fn read_log(
        self,
        _: Context,
        target: LogTarget,
        offset: i64,
        length: i64,
    ) -> Result<LogSlice, ControlError> {
        self.record("read_log");
        let log = self.log_of(&target)?;
        let size = log.file.len() as u64;
        let (start, end) = match (offset, length) {
            (o, 0) if o < 0 => (size.saturating_sub(o.unsigned_abs()), size),
            (o, 0) => ((o as u64).min(size), size),
            (o, l) if o >= 0 && l > 0 => ((o as u64).min(size), (o as u64 + l as u64).min(size)),
            _ => {
                return Err(ControlError::BadArguments(format!(
                    "offset {offset}, length {length}"
                )));
            }
        };
        let end = end.min(start + MAX_LOG_CHUNK);
        let bytes = log.file[start as usize..end as usize].to_vec();
        self.note_reply(bytes.len());
        Ok(LogSlice { bytes: Blob(bytes), start, end, size })
    }

    async fn tail_log(
        self,
        _: Context,
        target: LogTarget,
        offset: u64,
        length: u64,
    ) -> Result<LogTail, ControlError> {
        self.record("tail_log");
        let log = self.log_of(&target)?;
        let size = log.file.len() as u64;
        let length = length.min(MAX_LOG_CHUNK);
        if offset >= size {
            return Ok(LogTail { bytes: Blob::default(), offset: size, overflow: false });
        }
        let start = size - length.min(size);
        Ok(LogTail {
            bytes: Blob(log.file[start as usize..].to_vec()),
            offset: size,
            overflow: size > offset + length,
        })
    }

    async fn tail_follow(
        self,
        _: Context,
        target: LogTarget,
        offset: i64,
        max_bytes: u64,
        wait_ms: u64,
    ) -> Result<LogFollow, ControlError> {
        self.record("tail_follow");
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        loop {
            // Register interest before looking, so an append between the look and
            // the wait is not missed.
            let notified = self.output.notified();
            let log = self.log_of(&target)?;
            let end = log.base + log.file.len() as u64;
            let want = if offset < 0 {
                end.saturating_sub(offset.unsigned_abs()).max(log.base)
            } else {
                offset as u64
            };
            if want > end {
                return Err(ControlError::BadArguments(format!("offset {want} beyond end {end}")));
            }
            let from = want.max(log.base);
            if from < end || tokio::time::Instant::now() >= deadline {
                let take = (end - from).min(max_bytes.min(MAX_LOG_CHUNK));
                let first = (from - log.base) as usize;
                let bytes = log.file[first..first + take as usize].to_vec();
                return Ok(LogFollow { bytes: Blob(bytes), offset: from, next: from + take });
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    async fn clear_main_log(self, _: Context) -> Result<(), ControlError> {
        self.record("clear_main_log");
        self.lock().main_log.clear();
        Ok(())
    }

    async fn clear_logs(
        self,
        _: Context,
        specs: Vec<NameSpec>,
    ) -> Result<Vec<ProcessResult>, ControlError> {
        self.record("clear_logs");
        let mut results = Vec::new();
        for item in self.resolve(&specs) {
            match item {
                Err(result) => results.push(result),
                Ok((i, _)) => {
                    let mut state = self.lock();
                    let (group, name) =
                        (state.processes[i].group.to_string(), state.processes[i].name.to_string());
                    for channel in [LogChannel::Stdout, LogChannel::Stderr] {
                        let log = state.logs.entry((name.clone(), channel)).or_default();
                        log.base += log.file.len() as u64;
                        log.file.clear();
                    }
                    results.push(ProcessResult::ok(group, name));
                }
            }
        }
        Ok(results)
    }

    async fn reread(self, _: Context) -> Result<Reread, ControlError> {
        self.record("reread");
        self.lock().reread.clone()
    }

    async fn update(
        self,
        _: Context,
        _groups: Vec<String>,
        _dry_run: bool,
    ) -> Result<UpdateReport, ControlError> {
        self.record("update");
        self.lock().update.clone()
    }

    async fn add_group(self, _: Context, name: String) -> Result<(), ControlError> {
        self.record("add_group");
        if self.lock().processes.iter().any(|p| p.group == name) {
            Err(ControlError::AlreadyAdded(name))
        } else {
            Err(ControlError::BadName(name))
        }
    }

    async fn remove_group(self, _: Context, name: String) -> Result<(), ControlError> {
        self.record("remove_group");
        let mut state = self.lock();
        let members: Vec<_> = state.processes.iter().filter(|p| p.group == name).collect();
        if members.is_empty() {
            return Err(ControlError::BadName(name));
        }
        if members.iter().any(|p| !p.state.is_stopped()) {
            return Err(ControlError::StillRunning(name));
        }
        state.processes.retain(|p| p.group != name);
        Ok(())
    }

    async fn avail(self, _: Context) -> Result<Vec<ConfigInfo>, ControlError> {
        self.record("avail");
        let log = |path: &str| LogSettings {
            logfile: path.into(),
            logfile_maxbytes: 50 * 1024 * 1024,
            logfile_backups: 10,
            capture_maxbytes: 0,
            events_enabled: false,
            syslog: false,
        };
        Ok(self
            .lock()
            .processes
            .iter()
            .map(|p| ConfigInfo {
                name: p.name.to_string(),
                group: p.group.to_string(),
                inuse: true,
                autostart: p.name != "app2",
                autorestart: "unexpected".into(),
                group_prio: 999,
                process_prio: 999,
                command: format!("/bin/{}", p.name),
                directory: None,
                uid: None,
                exitcodes: vec![0],
                killasgroup: false,
                stopasgroup: false,
                redirect_stderr: false,
                startretries: 3,
                startsecs: 1,
                stopsignal: 15,
                stopwaitsecs: 10,
                serverurl: "AUTO".into(),
                stdout: log(&p.stdout_logfile),
                stderr: log(&p.stderr_logfile),
            })
            .collect())
    }

    async fn reload(self, _: Context) -> Result<(), ControlError> {
        self.record("reload");
        Ok(())
    }

    async fn upgrade(self, _: Context, _binary: Option<String>) -> Result<String, ControlError> {
        self.record("upgrade");
        Ok("vigild 0.1.0 reads handover format 1".into())
    }

    async fn shutdown(self, _: Context) -> Result<(), ControlError> {
        self.record("shutdown");
        let mut state = self.lock();
        if state.shut_down {
            return Err(ControlError::ShutdownState);
        }
        state.shut_down = true;
        Ok(())
    }

    async fn send_stdin(self, _: Context, name: String, data: Blob) -> Result<(), ControlError> {
        self.record("send_stdin");
        let NameSpec::Process { group, name: process } = NameSpec::parse(&name) else {
            return Err(ControlError::BadName(name));
        };
        let mut state = self.lock();
        let Some(found) = state.processes.iter().find(|p| p.group == group && p.name == process)
        else {
            return Err(ControlError::BadName(name));
        };
        if found.state != ProcessState::Running {
            return Err(ControlError::NotRunning(name));
        }
        state.stdin.extend_from_slice(&data.0);
        Ok(())
    }

    async fn send_comm_event(
        self,
        _: Context,
        _kind: String,
        _data: String,
    ) -> Result<(), ControlError> {
        self.record("send_comm_event");
        Ok(())
    }
}

/// A fake served on a fresh Unix socket in its own temp dir; the server task is
/// aborted on drop.
pub struct Served {
    pub fake: Fake,
    pub url: String,
    pub dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn serve(fake: Fake, auth: Option<ServerAuth>) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vigil.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let served = fake.clone();
    let task = tokio::spawn(async move {
        serve_unix(listener, auth.map(Arc::new), served, |_| {}).await.expect("accept loop");
    });
    Served { fake, url: format!("unix://{}", path.display()), dir, task }
}
