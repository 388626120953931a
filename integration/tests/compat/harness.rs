//! A small harness for the compatibility tests: the real `supervisord` and `vigild` side
//! by side, each in its own temporary directory with the same configuration text, driven
//! by the stock `supervisorctl` and Python from the `supervisor` PyPI package.
//!
//! Private to this test binary on purpose: it needs a second daemon kind (supervisord)
//! and the Python tools, which the `it` harness does not deal with.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Bound of every wait: generous for a loaded 2-core machine, but a wait never hangs.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(25);

#[expect(clippy::disallowed_methods, reason = "the poll interval of a bounded wait")]
pub(crate) fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// Polls `condition` until it holds; panics naming `what` after [`TIMEOUT`].
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {TIMEOUT:?} waiting for {what}");
        pause(POLL);
    }
}

/// The virtualenv holding the `supervisor` package: `$VIGIL_SUPERVISOR_VENV`, else
/// `<workspace>/target/supervisor-venv` (where `scripts/test` puts it). Missing is a failure,
/// never a skip: these tests are the proof of compatibility.
pub(crate) fn venv() -> PathBuf {
    let venv = match std::env::var_os("VIGIL_SUPERVISOR_VENV") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/supervisor-venv"),
    };
    assert!(
        venv.join("bin/supervisorctl").is_file() && venv.join("bin/supervisord").is_file(),
        "the stock supervisor tools are missing from {}: run the tests with `scripts/test`, \
         which installs them, or create the virtualenv yourself with \
         `python3 -m venv target/supervisor-venv && target/supervisor-venv/bin/pip install supervisor` \
         (or set VIGIL_SUPERVISOR_VENV to one that has them)",
        venv.display()
    );
    venv
}

/// The target directory's binaries (the test runs from `target/<profile>/deps`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe.parent().expect("the test executable is in a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub(crate) fn vigild_bin() -> PathBuf {
    let path = bin_dir().join("vigild");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

pub(crate) fn child_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vigil-test-child"))
}

/// Which daemon a [`Daemon`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Supervisord,
    Vigild,
}

/// What a finished command printed and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: i32,
}

/// Runs `command` to completion with a deadline, killing it (by pid) if it overruns.
pub(crate) fn run(mut command: Command, what: &str) -> Outcome {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit i32"));
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(TIMEOUT) {
        Ok(Ok(output)) => Outcome {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code().unwrap_or(-1),
        },
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("{what} did not finish within {TIMEOUT:?}");
        }
    }
}

/// A daemon started in the foreground in its own process group and temporary directory.
/// Dropping it stops it (SIGTERM, then SIGKILL of its group) and kills by pid any
/// process it started that is still alive, so a failing test leaves nothing behind.
pub(crate) struct Daemon {
    pub(crate) kind: Kind,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Every descendant pid seen while the daemon ran (for the cleanup on drop).
    seen: Vec<i32>,
}

impl Daemon {
    /// Writes `config` (with `{child}` replaced by the helper child's path) as
    /// `supervisord.conf` in a fresh directory and starts the daemon on it.
    pub(crate) fn start(kind: Kind, config: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                Kind::Supervisord => "compat-supervisord-",
                Kind::Vigild => "compat-vigild-",
            })
            .tempdir()
            .expect("temporary directory");
        let mut daemon = Daemon { kind, dir, child: None, seen: Vec::new() };
        daemon.write_config(config);
        let mut command = match kind {
            Kind::Supervisord => Command::new(venv().join("bin/supervisord")),
            Kind::Vigild => Command::new(vigild_bin()),
        };
        command
            .arg("-n")
            .arg("-c")
            .arg(daemon.config_path())
            .current_dir(daemon.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        daemon.child = Some(command.spawn().expect("start the daemon"));
        wait_until(&format!("{kind:?} to answer"), || {
            daemon.assert_alive();
            daemon.ctl(&["pid"]).code == 0
        });
        daemon
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir().join("supervisord.conf")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir().join("supervisor.sock")
    }

    pub(crate) fn write_config(&self, config: &str) {
        let text = config.replace("{child}", &child_bin().display().to_string());
        std::fs::write(self.config_path(), text).expect("write the config");
    }

    pub(crate) fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("the daemon was started");
        i32::try_from(child.id()).expect("pids fit i32")
    }

    fn assert_alive(&mut self) {
        let kind = self.kind;
        let child = self.child.as_mut().expect("the daemon was started");
        if let Ok(Some(status)) = try_wait(child) {
            let log = std::fs::read_to_string(self.dir.path().join("supervisord.log"));
            panic!("{kind:?} exited ({status}) during startup; its log: {log:?}");
        }
    }

    /// True once the daemon process has exited (it is reaped here).
    pub(crate) fn exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("the daemon was started");
        matches!(try_wait(child), Ok(Some(_)))
    }

    /// Runs `supervisorctl -c <config> args...`.
    pub(crate) fn ctl(&mut self, args: &[&str]) -> Outcome {
        self.record_descendants();
        let mut command = Command::new(venv().join("bin/supervisorctl"));
        command.arg("-c").arg(self.config_path()).args(args).current_dir(self.dir());
        run(command, &format!("supervisorctl {}", args.join(" ")))
    }

    /// Starts `supervisorctl args...` in the background (for `tail -f`).
    pub(crate) fn ctl_background(&mut self, args: &[&str]) -> Background {
        self.record_descendants();
        let mut command = Command::new(venv().join("bin/supervisorctl"));
        command
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .current_dir(self.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Background::spawn(command)
    }

    /// Runs `python3 script args...` from the venv.
    pub(crate) fn python(&mut self, script: &Path, args: &[&str]) -> Outcome {
        self.record_descendants();
        let mut command = Command::new(venv().join("bin/python3"));
        command.arg(script).args(args).current_dir(self.dir());
        run(command, &format!("python3 {} {}", script.display(), args.join(" ")))
    }

    fn record_descendants(&mut self) {
        if self.child.is_none() {
            return;
        }
        let mut queue = vec![self.pid()];
        while let Some(pid) = queue.pop() {
            for child in children(pid) {
                if !self.seen.contains(&child) {
                    self.seen.push(child);
                }
                queue.push(child);
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.record_descendants();
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit i32"));
            if matches!(try_wait(&mut child), Ok(None)) {
                let _ = kill(pid, Signal::SIGTERM);
                let deadline = Instant::now() + TIMEOUT;
                while matches!(try_wait(&mut child), Ok(None)) && Instant::now() < deadline {
                    pause(POLL);
                }
                if matches!(try_wait(&mut child), Ok(None)) {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = wait(&mut child);
                }
            }
        }
        for &pid in &self.seen {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "this test process runs no reaper: it waits for its own children"
)]
fn try_wait(child: &mut Child) -> std::io::Result<Option<std::process::ExitStatus>> {
    child.try_wait()
}

#[expect(
    clippy::disallowed_methods,
    reason = "this test process runs no reaper: it waits for its own children"
)]
fn wait(child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    child.wait()
}

fn children(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return found };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(text.split_whitespace().filter_map(|word| word.parse::<i32>().ok()));
        }
    }
    found
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rfind(')').and_then(|end| stat[end + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// A command running in the background whose stdout is collected as it comes.
pub(crate) struct Background {
    child: Child,
    output: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Background {
    fn spawn(mut command: Command) -> Background {
        let mut child = command.spawn().expect("start a background command");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let (sender, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Background { child, output, seen: Vec::new() }
    }

    /// Waits until the output so far satisfies `condition`, and returns it.
    pub(crate) fn wait_for(&mut self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if condition(&text) {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(_) => panic!("timed out waiting for {what}; output so far: {text:?}"),
            }
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit i32")
    }

    /// Waits (at most [`TIMEOUT`]) until the command exits by itself; its exit status
    /// and everything it printed.
    pub(crate) fn wait_exit(&mut self, what: &str) -> (i32, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = try_wait(&mut self.child).expect("wait for a background command")
            {
                break status;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            pause(POLL);
        };
        // The reader thread ends at the pipe's end, after the last bytes.
        while let Ok(bytes) = self.output.recv_timeout(TIMEOUT) {
            self.seen.extend_from_slice(&bytes);
        }
        (status.code().unwrap_or(-1), String::from_utf8_lossy(&self.seen).into_owned())
    }
}

impl Drop for Background {
    /// Like Ctrl-C would, by pid; then reaps it.
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = wait(&mut self.child);
    }
}

/// The servers and `[supervisord]` in the daemon's own directory
/// (`%(here)s`), `[supervisord]` last so that a config can add keys to it.
macro_rules! server_sections {
    () => {
        r#"
[unix_http_server]
file=%(here)s/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock

[supervisord]
logfile=%(here)s/supervisord.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
identifier=compat
"#
    };
}
pub(crate) use server_sections;

/// The sections every compatibility config starts with: [`server_sections`]
/// and `sleeper`, a program that prints one line on each channel and stays
/// up. `{child}` is the helper child, substituted by [`Daemon::start`].
macro_rules! common_sections {
    () => {
        concat!(
            crate::harness::server_sections!(),
            r#"
[program:sleeper]
command={child} --echo hello --write-stderr oops --sleep 100000
startsecs=0
stopwaitsecs=5
stdout_logfile=%(here)s/sleeper.out
stderr_logfile=%(here)s/sleeper.err
"#
        )
    };
}
pub(crate) use common_sections;
