//! Black-box test harness for vigild and vigilctl.
//!
//! It owns everything a test needs to run the real binaries and leave nothing
//! behind:
//! - [`Sandbox`]: a temporary directory per test with a supervisord INI config
//!   ([`Sandbox::write_config`], [`Program`]), the control socket, the activity
//!   log and the child logs all inside it, so tests run in parallel.
//! - [`Daemon`]: `vigild -n -c <config>` started from the target directory,
//!   ready once `vigilctl pid` answers with its pid. A watcher thread records
//!   every descendant (pid and start time, from `/proc/<pid>/task/*/children`)
//!   while it runs. On drop the daemon gets SIGTERM (so every test also checks
//!   the ordered shutdown), then SIGKILL to its process group if it hangs;
//!   every recorded descendant still alive is killed by pid and reported: a test
//!   fails if vigild leaves a process behind, and never leaks one itself.
//! - [`Sandbox::ctl`] / [`Daemon::ctl`] run `vigilctl -c <config>` with a bounded
//!   wait; [`Follower`] runs one in the background (`tail -f`).
//! - [`wait_until`] and friends poll conditions with a deadline (no bare sleeps).
//! - [`procfs`]: the few `/proc` reads the tests make.
//!
//! It does not link vigil-core: this process runs no `waitpid(-1)` reaper, so
//! the harness is the only waiter on the processes it starts (by pid), which is
//! why the reaper tests live in their own test binaries. Once a daemon has been
//! started, the test process is a child subreaper: what a dead daemon leaves
//! behind is re-parented here, so the harness can reap what it kills instead of
//! leaving zombies to an init that may not reap them.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Deadline for conditions that depend on the machine's speed (a noisy 2-core
/// machine running other builds): generous, but every wait is bounded.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon gets to stop everything after SIGTERM before it is killed.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one vigilctl command may take.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(180);
/// Poll interval of [`wait_until`] and the descendant watcher.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Binaries

/// The directory holding the workspace's binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries one level up (ripgrep's approach).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe.parent().expect("the test executable is in a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// `vigild`.
pub fn vigild_bin() -> PathBuf {
    binary("vigild")
}

/// `vigilctl`.
pub fn vigilctl_bin() -> PathBuf {
    binary("vigilctl")
}

/// The helper child program (`src/bin/child.rs`).
pub fn child_bin() -> PathBuf {
    binary("vigil-test-child")
}

// ---------------------------------------------------------------------------
// Waiting

#[expect(
    clippy::disallowed_methods,
    reason = "the poll interval of a bounded wait, not a synchronisation"
)]
fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// Polls `condition` until it holds; false once `timeout` has passed.
pub fn try_wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        pause(POLL);
    }
}

/// Polls `condition` until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    assert!(try_wait_until(timeout, condition), "timed out after {timeout:?} waiting for {what}");
}

/// Polls `probe` until it returns a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until(timeout, what, || {
        found = probe();
        found.is_some()
    });
    found.expect("wait_until returned, so the probe found a value")
}

/// Checks that `condition` keeps holding for the whole of `duration` (to show
/// that something does *not* happen, e.g. no restart). Panics at the first
/// failure.
pub fn holds_for(duration: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + duration;
    while Instant::now() < end {
        assert!(condition(), "{what} stopped holding");
        pause(POLL);
    }
}

// ---------------------------------------------------------------------------
// /proc

/// The few `/proc` reads the tests need.
pub mod procfs {
    use std::path::Path;

    /// Fields of `/proc/<pid>/stat`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Stat {
        /// `R`, `S`, `Z`, ...
        pub state: char,
        pub ppid: i32,
        pub pgrp: i32,
        pub session: i32,
        /// Clock ticks since boot: with the pid, identifies a process across pid reuse.
        pub starttime: u64,
    }

    /// `None` once the process is gone (reaped).
    pub fn stat(pid: i32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain anything; the
        // fields after the last ')' are plain.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(Stat {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            session: fields.get(3)?.parse().ok()?,
            starttime: fields.get(19)?.parse().ok()?,
        })
    }

    /// The process exists (zombie or not).
    pub fn exists(pid: i32) -> bool {
        stat(pid).is_some()
    }

    /// The process exists and is not a zombie.
    pub fn alive(pid: i32) -> bool {
        stat(pid).is_some_and(|stat| stat.state != 'Z' && stat.state != 'X')
    }

    /// The process exited but nobody reaped it.
    pub fn zombie(pid: i32) -> bool {
        stat(pid).is_some_and(|stat| stat.state == 'Z')
    }

    /// Direct children, from every thread's `children` file.
    pub fn children(pid: i32) -> Vec<i32> {
        let mut found = Vec::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return found };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            found.extend(text.split_whitespace().filter_map(|word| word.parse::<i32>().ok()));
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Children, grandchildren, ... (a snapshot; processes come and go meanwhile).
    pub fn descendants(pid: i32) -> Vec<i32> {
        let mut found = Vec::new();
        let mut queue = children(pid);
        while let Some(next) = queue.pop() {
            if !found.contains(&next) {
                found.push(next);
                queue.extend(children(next));
            }
        }
        found.sort_unstable();
        found
    }

    /// The command line, NULs as spaces (empty for zombies and gone processes).
    pub fn cmdline(pid: i32) -> String {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " ").trim_end().to_owned())
            .unwrap_or_default()
    }

    /// The process's working directory.
    pub fn cwd(pid: i32) -> Option<std::path::PathBuf> {
        std::fs::read_link(Path::new(&format!("/proc/{pid}/cwd"))).ok()
    }
}

// ---------------------------------------------------------------------------
// Command output

/// What a finished command printed and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// The exit code; `128 + N` when killed by signal N.
    pub code: i32,
}

impl Output {
    /// stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Panics, showing everything, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Output {
        assert_eq!(self.code, code, "unexpected exit code; output: {self:#?}");
        self
    }

    /// Panics unless stdout is exactly `lines` (each followed by a newline).
    #[track_caller]
    pub fn expect_lines(&self, lines: &[&str]) -> &Output {
        assert_eq!(self.lines(), lines, "unexpected output; output: {self:#?}");
        self
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Reads a pipe to its end on a thread.
fn drain(mut source: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        bytes
    })
}

/// Polls a child for its exit until `timeout` has passed; `None` if still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    wait_child(child, timeout)
}

/// Polls a child for its exit until `timeout` has passed; `None` if still running.
#[expect(
    clippy::disallowed_methods,
    reason = "this process runs no reaper: the harness is the only waiter on the pids it started"
)]
fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => pause(Duration::from_millis(5)),
            Ok(None) => return None,
            Err(error) => panic!("waiting for pid {}: {error}", child.id()),
        }
    }
}

/// Runs `command` to completion within `timeout`, killing it (and failing the
/// test) if it takes longer.
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    run_with_input(command, None, timeout)
}

/// [`run`] with `input` on stdin (then EOF); `None`: stdin is /dev/null.
pub fn run_with_input(command: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let stdin = if input.is_some() { Stdio::piped() } else { Stdio::null() };
    command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // Dropping the pipe at the end of the thread is the EOF.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
        });
    }
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = wait_child(&mut child, TIMEOUT);
    }
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) => Output { stdout, stderr, code: exit_code(status) },
        None => panic!(
            "{command:?} did not finish within {timeout:?}\nstdout: {stdout}\nstderr: {stderr}"
        ),
    }
}

// ---------------------------------------------------------------------------
// Config

/// One `[program:x]` section running the helper child.
#[derive(Debug, Clone)]
pub struct Program {
    name: String,
    command: String,
    keys: Vec<(String, String)>,
}

/// Quotes a word for supervisord's shell-like command splitting and escapes `%`
/// for its `%(name)s` expansion.
fn command_word(word: &str) -> String {
    let word = word.replace('%', "%%");
    if !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c)) {
        return word;
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Program {
    /// `[program:name]` running `vigil-test-child ARGS...`.
    pub fn child(name: &str, args: &[&str]) -> Program {
        let mut words = vec![command_word(&child_bin().display().to_string())];
        words.extend(args.iter().map(|a| command_word(a)));
        Program { name: name.to_owned(), command: words.join(" "), keys: Vec::new() }
    }

    /// `[program:name]` with a raw `command=` value (already INI-escaped).
    pub fn raw(name: &str, command: &str) -> Program {
        Program { name: name.to_owned(), command: command.to_owned(), keys: Vec::new() }
    }

    /// Adds `key=value` (a later one for the same key replaces the earlier one).
    pub fn set(mut self, key: &str, value: impl ToString) -> Program {
        self.keys.retain(|(k, _)| k != key);
        self.keys.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The section text.
    pub fn render(&self) -> String {
        let mut text = format!("[program:{}]\ncommand={}\n", self.name, self.command);
        for (key, value) in &self.keys {
            text.push_str(&format!("{key}={value}\n"));
        }
        text
    }
}

/// A test's private directory: config, socket, logs.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Lines added to `[supervisord]`.
    supervisord_extra: Mutex<Vec<String>>,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new().prefix("vigil-it-").tempdir().expect("temp dir");
        // World-readable so programs run with `user=nobody` can enter it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        std::fs::create_dir(dir.path().join("logs")).expect("logs dir");
        Sandbox { dir, supervisord_extra: Mutex::new(Vec::new()) }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.join("supervisord.conf")
    }

    pub fn socket(&self) -> PathBuf {
        self.join("vigil.sock")
    }

    /// `unix://<socket>`, the URL children see in `SUPERVISOR_SERVER_URL`.
    pub fn server_url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The activity log.
    pub fn main_log(&self) -> PathBuf {
        self.join("vigild.log")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.join("vigild.pid")
    }

    /// `<dir>/logs/<name>.out` (the path [`Program`]s log stdout to by default).
    pub fn stdout_log(&self, name: &str) -> PathBuf {
        self.join(format!("logs/{name}.out"))
    }

    /// `<dir>/logs/<name>.err`.
    pub fn stderr_log(&self, name: &str) -> PathBuf {
        self.join(format!("logs/{name}.err"))
    }

    /// Adds `line` to the `[supervisord]` section of configs written from now on.
    pub fn supervisord_key(&self, key: &str, value: &str) {
        self.supervisord_extra.lock().expect("not poisoned").push(format!("{key}={value}"));
    }

    /// The sections every test config starts with: everything inside the sandbox.
    pub fn header(&self) -> String {
        let dir = self.path().display();
        let extra = self.supervisord_extra.lock().expect("not poisoned").join("\n");
        format!(
            "[supervisord]\nlogfile={dir}/vigild.log\npidfile={dir}/vigild.pid\n\
             childlogdir={dir}/logs\nnodaemon=true\nloglevel=debug\n{extra}\n\n\
             [unix_http_server]\nfile={dir}/vigil.sock\n\n\
             [supervisorctl]\nserverurl=unix://{dir}/vigil.sock\n\n\
             [rpcinterface:supervisor]\n\
             supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        )
    }

    /// Writes the config: the header, then each program with its stdout and
    /// stderr logged to `logs/<name>.out|.err` unless it sets them itself.
    pub fn write_config(&self, programs: &[Program]) {
        self.write_config_text(&self.programs_text(programs));
    }

    /// The program sections as [`Sandbox::write_config`] writes them.
    pub fn programs_text(&self, programs: &[Program]) -> String {
        let mut text = String::new();
        for program in programs {
            let mut program = program.clone();
            let has = |program: &Program, key: &str| program.keys.iter().any(|(k, _)| k == key);
            if !has(&program, "stdout_logfile") {
                let path = self.stdout_log(&program.name).display().to_string();
                program = program.set("stdout_logfile", path);
            }
            if !has(&program, "stderr_logfile") && !has(&program, "redirect_stderr") {
                let path = self.stderr_log(&program.name).display().to_string();
                program = program.set("stderr_logfile", path);
            }
            text.push_str(&program.render());
            text.push('\n');
        }
        text
    }

    /// Writes the header followed by `body` as the config.
    pub fn write_config_text(&self, body: &str) {
        let text = format!("{}{body}", self.header());
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Writes a file in the sandbox.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// A file's bytes (empty if it does not exist).
    pub fn read(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        std::fs::read(self.join(rel)).unwrap_or_default()
    }

    /// A file's text, lossily (empty if it does not exist).
    pub fn read_text(&self, rel: impl AsRef<Path>) -> String {
        String::from_utf8_lossy(&self.read(rel)).into_owned()
    }

    /// Starts `vigild -n -c <config>` and waits until it answers.
    pub fn start(&self) -> Daemon {
        self.start_with(&[], &BTreeMap::new())
    }

    /// [`Sandbox::start`] with extra vigild arguments and environment.
    pub fn start_with(&self, args: &[&str], env: &BTreeMap<String, String>) -> Daemon {
        Daemon::start(self.path(), &self.config_path(), args, env)
    }

    /// [`Sandbox::start`] with vigild's soft RLIMIT_NOFILE lowered to `soft`
    /// (the hard limit is kept), as a shell with a small `ulimit -n` would.
    pub fn start_with_file_limit(&self, soft: u64) -> Daemon {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let limits = Some((soft.min(hard), hard));
        Daemon::start_limited(self.path(), &self.config_path(), &[], &BTreeMap::new(), limits)
    }

    /// [`Sandbox::start`] with vigild's soft and hard RLIMIT_NOFILE both set to
    /// `limit`, so that vigild cannot raise it.
    pub fn start_with_fixed_file_limit(&self, limit: u64) -> Daemon {
        let limits = Some((limit, limit));
        Daemon::start_limited(self.path(), &self.config_path(), &[], &BTreeMap::new(), limits)
    }

    /// `vigilctl -c <config> ARGS...` (works without a daemon too).
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(self.path(), &self.config_path(), args)
    }
}

/// `vigilctl -c config ARGS...` run in `dir`.
pub fn ctl_at(dir: &Path, config: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(vigilctl_bin());
    command.current_dir(dir).arg("-c").arg(config).args(args);
    run(&mut command, CTL_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Daemon

/// Identifies a process across pid reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    starttime: u64,
    cmdline: String,
}

/// Every descendant of the daemon seen so far.
type SeenMap = Arc<Mutex<BTreeMap<i32, Seen>>>;

fn record_descendants(root: i32, seen: &Mutex<BTreeMap<i32, Seen>>) {
    for pid in procfs::descendants(root) {
        let Some(stat) = procfs::stat(pid) else { continue };
        let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let cmdline = procfs::cmdline(pid);
        let entry = seen.entry(pid).or_insert_with(|| Seen { starttime: stat.starttime, cmdline });
        if entry.starttime != stat.starttime {
            // The pid was reused by a new descendant.
            *entry = Seen { starttime: stat.starttime, cmdline: procfs::cmdline(pid) };
        }
    }
}

/// Makes this test process the reaper of orphans left by a daemon that died,
/// so the harness can reap what it kills instead of leaving zombies to init.
pub fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// A running `vigild -n`. See the module docs for what dropping it checks.
pub struct Daemon {
    child: Child,
    pid: i32,
    dir: PathBuf,
    config: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    seen: SeenMap,
    stop_watching: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
    exit: Option<i32>,
    /// Pids the test expects to outlive the daemon (killed without failing).
    tolerated: Vec<i32>,
}

impl Daemon {
    /// Starts `vigild -n -c config ARGS...` in `dir` (its stdout and stderr go to
    /// `dir/vigild.stdout|stderr`, and [`Daemon::main_log`] looks for the
    /// activity log there) and waits until it answers.
    pub fn start(
        dir: &Path,
        config: &Path,
        args: &[&str],
        env: &BTreeMap<String, String>,
    ) -> Daemon {
        Daemon::start_limited(dir, config, args, env, None)
    }

    fn start_limited(
        dir: &Path,
        config: &Path,
        args: &[&str],
        env: &BTreeMap<String, String>,
        file_limits: Option<(u64, u64)>,
    ) -> Daemon {
        become_subreaper();
        let dir = dir.to_path_buf();
        let stdout_path = dir.join("vigild.stdout");
        let stderr_path = dir.join("vigild.stderr");
        let stdout = std::fs::File::create(&stdout_path).expect("vigild stdout file");
        let stderr = std::fs::File::create(&stderr_path).expect("vigild stderr file");
        let mut command = Command::new(vigild_bin());
        command
            .current_dir(&dir)
            .arg("-n")
            .arg("-c")
            .arg(config)
            .args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        if let Some((soft, hard)) = file_limits {
            // SAFETY: setrlimit(2) only, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        soft,
                        hard,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start vigild: {e}"));
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        let seen: SeenMap = Arc::default();
        let stop_watching = Arc::new(AtomicBool::new(false));
        let watcher = {
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop_watching);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    record_descendants(pid, &seen);
                    pause(POLL);
                }
            })
        };
        let mut daemon = Daemon {
            child,
            pid,
            dir,
            config: config.to_path_buf(),
            stdout_path,
            stderr_path,
            seen,
            stop_watching,
            watcher: Some(watcher),
            exit: None,
            tolerated: Vec::new(),
        };
        daemon.wait_ready();
        daemon
    }

    /// Waits until `vigilctl pid` prints this daemon's pid.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = None;
        loop {
            if let Some(code) = self.poll_exit() {
                panic!(
                    "vigild exited with {code} before answering on its socket\n{}\nlast vigilctl: {last:#?}",
                    self.diagnostics()
                );
            }
            let output = self.ctl(&["pid"]);
            if output.code == 0 && output.stdout.trim() == self.pid.to_string() {
                return;
            }
            last = Some(output);
            assert!(
                Instant::now() < deadline,
                "vigild did not answer within {TIMEOUT:?}\n{}\nlast vigilctl: {last:#?}",
                self.diagnostics()
            );
            pause(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `vigilctl -c <config> ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.dir, &self.config, args)
    }

    /// `vigilctl -c <config> ARGS...` with `input` on its stdin.
    pub fn ctl_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut command = Command::new(vigilctl_bin());
        command.current_dir(&self.dir).arg("-c").arg(&self.config).args(args);
        run_with_input(&mut command, Some(input), CTL_TIMEOUT)
    }

    /// Starts `vigilctl -c <config> ARGS...` in the background (e.g. `tail -f`).
    pub fn follow(&self, args: &[&str]) -> Follower {
        let mut command = Command::new(vigilctl_bin());
        command.current_dir(&self.dir).arg("-c").arg(&self.config).args(args);
        Follower::start(command)
    }

    /// `(state, description)` of one process from `vigilctl status NAME`, or
    /// `None` if status does not list it.
    pub fn status_of(&self, name: &str) -> Option<(String, String)> {
        let output = self.ctl(&["status", name]);
        let line =
            output.stdout.lines().find(|line| line.split_whitespace().next() == Some(name))?;
        let mut words = line.split_whitespace();
        let _name = words.next()?;
        let state = words.next()?.to_owned();
        let description = words.collect::<Vec<_>>().join(" ");
        Some((state, description))
    }

    /// The state name `status` shows for `name` (empty if not listed).
    pub fn state(&self, name: &str) -> String {
        self.status_of(name).map(|(state, _)| state).unwrap_or_default()
    }

    /// Waits until `status` shows `name` in `state`; returns the description.
    #[track_caller]
    pub fn wait_state(&self, name: &str, state: &str) -> String {
        let mut last = None;
        let found = try_wait_until(TIMEOUT, || {
            last = self.status_of(name);
            last.as_ref().is_some_and(|(current, _)| current == state)
        });
        assert!(
            found,
            "{name} did not reach {state} within {TIMEOUT:?}; last status: {last:?}\n{}",
            self.diagnostics()
        );
        last.map(|(_, description)| description).unwrap_or_default()
    }

    /// The pid `vigilctl pid NAME` prints (0 when not running).
    pub fn process_pid(&self, name: &str) -> i32 {
        let output = self.ctl(&["pid", name]);
        output.stdout.trim().parse().unwrap_or_else(|_| panic!("pid {name}: {output:#?}"))
    }

    /// Waits until `name` is RUNNING and returns its pid.
    #[track_caller]
    pub fn running_pid(&self, name: &str) -> i32 {
        self.wait_state(name, "RUNNING");
        self.process_pid(name)
    }

    /// Sends `signal` to vigild.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid), signal).expect("signal vigild");
    }

    /// The exit code if vigild has exited (reaping it).
    pub fn poll_exit(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            self.exit = wait_child(&mut self.child, Duration::ZERO).map(exit_code);
        }
        self.exit
    }

    /// Waits for vigild to exit (after a shutdown was asked for) and returns its
    /// exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        if self.exit.is_none() {
            self.exit = wait_child(&mut self.child, timeout).map(exit_code);
        }
        self.exit.unwrap_or_else(|| panic!("vigild did not exit within {timeout:?}"))
    }

    /// vigild's direct children now.
    pub fn children(&self) -> Vec<i32> {
        procfs::children(self.pid)
    }

    /// Every descendant the watcher has seen so far (alive or not).
    pub fn seen_descendants(&self) -> Vec<i32> {
        record_descendants(self.pid, &self.seen);
        self.seen.lock().expect("not poisoned").keys().copied().collect()
    }

    /// Descendants seen at some point that still exist (same process, zombie or not).
    pub fn remaining_descendants(&self) -> Vec<(i32, char, String)> {
        let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter()
            .filter_map(|(pid, seen)| {
                let stat = procfs::stat(*pid)?;
                (stat.starttime == seen.starttime).then(|| (*pid, stat.state, seen.cmdline.clone()))
            })
            .collect()
    }

    /// Lets `pid` outlive the daemon: dropping kills it without failing the test
    /// (for processes supervisord semantics do not stop, like a grandchild in a
    /// program without `stopasgroup`).
    pub fn tolerate(&mut self, pid: i32) {
        self.tolerated.push(pid);
    }

    /// The activity log text: `<dir>/vigild.log` (the [`Sandbox`] layout), else
    /// `<dir>/logs/vigild.log` (the seed example's).
    pub fn main_log(&self) -> String {
        ["vigild.log", "logs/vigild.log"]
            .iter()
            .find_map(|rel| std::fs::read_to_string(self.dir.join(rel)).ok())
            .unwrap_or_default()
    }

    /// vigild's own stdout and stderr, and the end of its activity log.
    pub fn diagnostics(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        let log = self.main_log();
        let tail: String = log
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "--- vigild stdout ---\n{}\n--- vigild stderr ---\n{}\n--- vigild.log (end) ---\n{tail}",
            read(&self.stdout_path),
            read(&self.stderr_path)
        )
    }

    /// Kills and reaps every leftover descendant; returns those not tolerated.
    fn sweep(&self) -> Vec<(i32, char, String)> {
        let remaining = self.remaining_descendants();
        for (pid, _, _) in &remaining {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for (pid, _, _) in &remaining {
            // Orphans come to us (a subreaper) once vigild is gone: reap them.
            if procfs::stat(*pid).is_some_and(|s| s.ppid == std::process::id() as i32) {
                let _ = nix::sys::wait::waitpid(Pid::from_raw(*pid), None);
            }
        }
        remaining.into_iter().filter(|(pid, _, _)| !self.tolerated.contains(pid)).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        record_descendants(self.pid, &self.seen);
        let mut failure = None;
        if self.poll_exit().is_none() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            if let Some(status) = wait_child(&mut self.child, SHUTDOWN_TIMEOUT) {
                self.exit = Some(exit_code(status));
            } else {
                // Frozen, it cannot fork behind the last look at its descendants.
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGSTOP);
                record_descendants(self.pid, &self.seen);
                let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
                self.exit = wait_child(&mut self.child, TIMEOUT).map(exit_code);
                failure =
                    Some(format!("vigild did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM"));
            }
        }
        self.stop_watching.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let leftovers = self.sweep();
        if failure.is_none() && !leftovers.is_empty() {
            failure = Some(format!(
                "vigild exited ({:?}) leaving processes behind (pid, state, command): {leftovers:?}",
                self.exit
            ));
        }
        if let Some(failure) = failure
            && !std::thread::panicking()
        {
            panic!("{failure}\n{}", self.diagnostics());
        }
    }
}

// ---------------------------------------------------------------------------
// Background vigilctl

/// A command running in the background whose stdout is collected as it comes.
pub struct Follower {
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Follower {
    fn start(mut command: Command) -> Follower {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let output: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("not poisoned").extend_from_slice(&buf[..n]);
            }
        });
        Follower { child, output, reader: Some(reader) }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("not poisoned")).into_owned()
    }

    /// Waits until the output satisfies `condition`.
    pub fn wait_output(&self, what: &str, mut condition: impl FnMut(&str) -> bool) -> String {
        let mut last = String::new();
        let found = try_wait_until(TIMEOUT, || {
            last = self.output();
            condition(&last)
        });
        assert!(found, "timed out waiting for {what}; output so far:\n{last}");
        last
    }

    /// Kills it (by pid) and returns everything it printed.
    pub fn stop(mut self) -> String {
        self.kill();
        self.output()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = wait_child(&mut self.child, TIMEOUT);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Misc

/// The name of the user running the tests.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .expect("the current uid has a passwd entry")
}

/// True when the tests run as root (then `user=` can switch users).
pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// Record `k` of the `--write-bytes` pattern (see `src/bin/child.rs`).
fn pattern_record(k: u64) -> [u8; 16] {
    const HEX: &[u8] = b"0123456789abcdef";
    let mut record = [b'\n'; 16];
    for (position, byte) in record[..15].iter_mut().enumerate() {
        *byte = HEX[((k >> ((14 - position) * 4)) & 0xf) as usize];
    }
    record
}

/// Checks that `bytes` are exactly the `--write-bytes` pattern from offset
/// `start`; the error names the first differing offset.
pub fn check_pattern(bytes: &[u8], start: u64) -> Result<(), String> {
    let mut offset = start;
    let mut rest = bytes;
    while !rest.is_empty() {
        let record = pattern_record(offset / 16);
        let within = (offset % 16) as usize;
        let take = (16 - within).min(rest.len());
        if rest[..take] != record[within..within + take] {
            let context = &rest[..rest.len().min(32)];
            return Err(format!(
                "pattern differs at offset {offset} (byte {} of the data): got {:?}",
                offset - start,
                String::from_utf8_lossy(context)
            ));
        }
        offset += take as u64;
        rest = &rest[take..];
    }
    Ok(())
}

/// The name of backup `index` of a rotated log: `path.index` (supervisord's `.1` ... `.N`).
pub fn backup_of(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}
