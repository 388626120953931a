//! End-to-end tests of vigild's process-level behaviour: foreground and
//! daemonized runs, the control socket, signals, reload, `--check`, and the
//! exit statuses, with a test [`Backend`] standing in for vigil-core.
//!
//! This is a `harness = false` binary: forking inside libtest's multithreaded
//! harness is unsafe, so `main` either plays the daemon (when `VIGIL_E2E_ROLE`
//! is set: it runs `app::run` with [`TestBackend`]) or drives the scenarios,
//! re-executing itself for each daemon it needs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_config::{
    Config, Credentials, Diagnostic, LogLevel, LogTarget, OnFatal, Supervisord, UnixHttpServer,
};
use vigil_daemon::app::{self, Backend, LoadedConfig, Tree, TreeContext};
use vigil_daemon::listen::{Connection, Dispatch, Peer};
use vigil_daemon::signals::DaemonSignal;

const ROLE_ENV: &str = "VIGIL_E2E_ROLE";
const WAIT: Duration = Duration::from_secs(20);

type Scenario = fn() -> BoxFuture<'static, ()>;

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("pid1") => std::process::exit(run_as_pid1()),
        Ok("probe-pid-namespace") => std::process::exit(probe_pid_namespace()),
        Ok(_) => std::process::exit(app::run(TestBackend, std::env::args_os())),
        Err(_) => {}
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let scenarios: [(&str, Scenario); 6] = [
        ("user_switch", || Box::pin(user_switch())),
        ("panics_are_logged_and_fatal_exits_one", || Box::pin(panic_and_fatal())),
        ("usage_and_check", || Box::pin(usage_and_check())),
        ("foreground_lifecycle", || Box::pin(foreground_lifecycle())),
        ("daemonized_lifecycle", || Box::pin(daemonized_lifecycle())),
        ("daemonized_startup_failure_reaches_the_terminal", || {
            Box::pin(daemonized_startup_failure())
        }),
    ];
    let mut passed = 0;
    let mut skipped = 0;
    for (name, scenario) in scenarios {
        println!("test {name} ...");
        runtime.block_on(scenario());
        println!("test {name} ... ok");
        passed += 1;
    }
    println!("test runs_as_pid1 ...");
    if runtime.block_on(pid_namespaces_available()) {
        runtime.block_on(runs_as_pid1());
        println!("test runs_as_pid1 ... ok");
        passed += 1;
    } else {
        println!("test runs_as_pid1 ... skipped: no permission to create a PID namespace");
        skipped += 1;
    }
    // A failed scenario panics (exit 101) before this line.
    println!("{passed} passed, 0 failed, {skipped} skipped");
}

// ---------------------------------------------------------------------------
// The daemon side: a backend whose "tree" only logs and answers on the socket.

struct TestBackend;

/// The test config format: `identifier=<word>` (or the word `invalid`).
fn identifier_of(path: &Path) -> Result<String, Vec<Diagnostic>> {
    let problem = |line, section: Option<&str>, key: Option<&str>, message: String| Diagnostic {
        file: path.to_owned(),
        line,
        section: section.map(str::to_owned),
        key: key.map(str::to_owned),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![problem(None, None, None, e.to_string())])?;
    if text.contains("invalid") {
        // Shown as `<file>:1: [supervisord] bogus: invalid value`.
        return Err(vec![problem(
            Some(1),
            Some("supervisord"),
            Some("bogus"),
            "invalid value".to_owned(),
        )]);
    }
    Ok(text.trim().strip_prefix("identifier=").unwrap_or("none").to_owned())
}

impl Backend for TestBackend {
    type Tree = TestTree;

    fn find_config(&self, _exe_dir: Option<&Path>, _cwd: &Path) -> Result<PathBuf, String> {
        Err("No config file found at default paths".to_owned())
    }

    fn load(
        &self,
        path: &Path,
        _env: &BTreeMap<String, String>,
    ) -> Result<LoadedConfig, Vec<Diagnostic>> {
        let identifier = identifier_of(path)?;
        let dir = path.parent().unwrap().to_owned();
        let config = Config {
            source: path.to_owned(),
            files: vec![path.to_owned()],
            supervisord: Supervisord {
                logfile: LogTarget::Path(dir.join("main.log")),
                logfile_maxbytes: 1024 * 1024,
                logfile_backups: 2,
                loglevel: LogLevel::Info,
                pidfile: Some(dir.join("vigild.pid")),
                umask: 0o022,
                nodaemon: false,
                silent: false,
                minfds: 64,
                minprocs: 10,
                nocleanup: false,
                childlogdir: dir.clone(),
                user: None,
                directory: Some(dir.clone()),
                strip_ansi: false,
                environment: BTreeMap::new(),
                identifier,
                on_fatal: OnFatal::Ignore,
                env_file: Vec::new(),
                cgroup_root: None,
                logfile_format: Default::default(),
            },
            unix_http_server: Some(UnixHttpServer {
                file: dir.join("vigil.sock"),
                chmod: 0o700,
                chown: None,
                auth: Some(Credentials { username: "u".into(), password: "p".into() }),
            }),
            inet_http_server: None,
            supervisorctl: None,
            rpcinterfaces: BTreeMap::new(),
            ctlplugins: BTreeMap::new(),
            groups: Vec::new(),
        };
        Ok(LoadedConfig { config, warnings: vec![format!("{}:1: test warning", path.display())] })
    }

    fn summary(&self, config: &Config) -> String {
        format!("e2e summary: {} groups\n", config.groups.len())
    }

    async fn start_tree(&self, config: &Config, context: &TreeContext) -> Result<TestTree, String> {
        let identifier = config.supervisord.identifier.clone();
        if identifier == "failstart" {
            return Err("test tree refuses to start".to_owned());
        }
        if identifier == "panicky" {
            // A panic on another thread must reach the activity log.
            let _ = std::thread::spawn(|| panic!("test panic on purpose")).join();
        }
        tracing::info!(target: "vigil_e2e", "test tree started: {identifier}");
        Ok(TestTree { identifier, context: context.clone() })
    }
}

struct TestTree {
    identifier: String,
    context: TreeContext,
}

impl Tree for TestTree {
    fn dispatch(&self) -> Arc<dyn Dispatch> {
        Arc::new(Echo { identifier: self.identifier.clone(), context: self.context.clone() })
    }

    async fn reopen_logs(&self) {
        tracing::info!(target: "vigil_e2e", "test tree reopened logs");
    }

    async fn shutdown_to_exit(self) {
        self.shutdown().await;
    }

    async fn shutdown(self) {
        tracing::info!(target: "vigil_e2e", "test tree stopped: {}", self.identifier);
    }

    fn handover_refusal(&self) -> Option<String> {
        Some("the test tree is not handed over".to_owned())
    }

    fn control(&self) -> vigil_daemon::handover::CarriedControl {
        vigil_daemon::handover::CarriedControl {
            identification: self.identifier.clone(),
            unix_auth: None,
            inet_auth: None,
        }
    }

    async fn begin_handover(&self) -> Result<(), String> {
        Err("the test tree is not handed over".to_owned())
    }

    async fn hand_over(&self) -> Result<vigil_core::handover::Handover, String> {
        Err("the test tree is not handed over".to_owned())
    }
}

/// Answers `<protocol> <identifier>\n` after reading the whole request; a tarpc
/// request `SHUTDOWN` asks the daemon to shut down over `DaemonControl`.
struct Echo {
    identifier: String,
    context: TreeContext,
}

impl Echo {
    fn answer(&self, protocol: &'static str, mut connection: Connection) -> BoxFuture<'static, ()> {
        let identifier = self.identifier.clone();
        let control = self.context.control.clone();
        Box::pin(async move {
            let mut request = Vec::new();
            let _ = connection.read_to_end(&mut request).await;
            if request.ends_with(b"SHUTDOWN") {
                control.request(DaemonSignal::Shutdown(libc::SIGTERM));
            }
            if request.ends_with(b"FATAL") {
                control.fatal("test group went FATAL");
            }
            let _ = connection.write_all(format!("{protocol} {identifier}\n").as_bytes()).await;
        })
    }
}

impl Dispatch for Echo {
    fn serve_http(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
        self.answer("http", connection)
    }
    fn serve_tarpc(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
        self.answer("tarpc", connection)
    }
}

/// Exit status of the probe role when PID namespaces are not available.
const NO_PID_NAMESPACE: i32 = 77;

/// The `probe-pid-namespace` role: can this process create a PID namespace?
fn probe_pid_namespace() -> i32 {
    // SAFETY: plain syscall; this process exits right after.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } == 0 { 0 } else { NO_PID_NAMESPACE }
}

async fn pid_namespaces_available() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, _) = Spawned::start_role(dir.path(), "probe-pid-namespace", &[]).exit().await;
    code == 0
}

/// The `pid1` role: enter a new PID namespace and run vigild as its PID 1,
/// exiting with vigild's status.
fn run_as_pid1() -> i32 {
    // SAFETY: plain syscall; it affects only children created afterwards.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWPID) }, 0, "unshare(CLONE_NEWPID)");
    let child = Command::new(std::env::current_exe().unwrap())
        .arg0_compat()
        .args(std::env::args_os().skip(1))
        .env(ROLE_ENV, "daemon")
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    std::mem::forget(child);
    match waitpid(pid, None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("vigild as PID 1 ended with {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The driver side.

/// A vigild started by a scenario; killed and reaped on drop if still running.
struct Spawned {
    child: Option<Child>,
}

impl Spawned {
    fn start(dir: &Path, args: &[&str]) -> Spawned {
        Spawned::start_role(dir, "daemon", args)
    }

    fn start_role(dir: &Path, role: &str, args: &[&str]) -> Spawned {
        let child = Command::new(std::env::current_exe().unwrap())
            .arg0_compat()
            .args(args)
            .current_dir(dir)
            .env(ROLE_ENV, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Spawned { child: Some(child) }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Waits for exit; returns (status, stdout, stderr).
    #[allow(clippy::zombie_processes, reason = "reaped with waitpid above; Child::wait is banned")]
    async fn exit(mut self) -> (i32, String, String) {
        let pid = self.pid();
        let status = wait_until(|| match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::Exited(_, code) => Some(code),
            WaitStatus::Signaled(_, signal, _) => panic!("vigild killed by {signal}"),
            _ => None,
        })
        .await;
        let mut child = self.child.take().unwrap();
        let mut stdout = String::new();
        let mut stderr = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        (status, stdout, stderr)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Kills a daemonized vigild (not our child) on drop if a scenario fails.
struct DaemonGuard(Option<Pid>);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0
            && alive(pid)
        {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

trait Arg0Compat {
    fn arg0_compat(&mut self) -> &mut Self;
}

impl Arg0Compat for Command {
    /// argv[0] "vigild", so messages read as in production.
    fn arg0_compat(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.arg0("vigild")
    }
}

async fn wait_until<T>(mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_log(dir: &Path, needle: &str) {
    let path = dir.join("main.log");
    wait_until(|| std::fs::read_to_string(&path).ok().filter(|t| t.contains(needle))).await;
}

/// Alive and not a zombie.
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

async fn request(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut reply)).await.unwrap().unwrap();
    reply
}

const HTTP: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const TARPC: &[u8] = &[0, 0, 0, 1, b'x'];

fn write_config(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join("vigil.conf");
    std::fs::write(&path, content).unwrap();
    path
}

async fn usage_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=gen1");

    let (code, out, err) = Spawned::start(d, &["--check", "-c", "vigil.conf"]).exit().await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "e2e summary: 0 groups\n");
    assert!(err.contains("warning: ") && err.contains("test warning"), "{err}");

    write_config(d, "invalid");
    let (code, out, err) = Spawned::start(d, &["--check", "-c", "vigil.conf"]).exit().await;
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("vigil.conf:1: [supervisord] bogus: invalid value"), "{err}");

    let (code, _, err) = Spawned::start(d, &["-c", "missing.conf"]).exit().await;
    assert_eq!(code, 2);
    assert_eq!(err, "Error: could not find config file missing.conf\nFor help, use vigild -h\n");

    let (code, _, err) = Spawned::start(d, &["-n", "stray"]).exit().await;
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "Error: positional arguments are not supported: ['stray']\nFor help, use vigild -h\n"
    );

    let (code, _, err) = Spawned::start(d, &["-n"]).exit().await;
    assert_eq!(code, 2);
    assert!(err.starts_with("Error: No config file found at default paths\n"), "{err}");

    // More file descriptors than the kernel allows anyone (above fs.nr_open).
    write_config(d, "identifier=gen1");
    let (code, _, err) =
        Spawned::start(d, &["-n", "-c", "vigil.conf", "-a", "1099511627776"]).exit().await;
    assert_eq!(code, 2);
    assert!(err.contains("as per the \"minfds\" command-line argument"), "{err}");

    assert!(!d.join("main.log").exists(), "usage errors create no files");
}

/// `-u`: as root the daemon switches user before creating any file; as anyone
/// else switching to another user is refused with supervisord's message.
async fn user_switch() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a 'nobody' user");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=gen1");
    if !nix::unistd::getuid().is_root() {
        let (code, _, err) =
            Spawned::start(d, &["-n", "-c", "vigil.conf", "-u", "nobody"]).exit().await;
        assert_eq!(code, 2);
        assert!(err.contains("Can't drop privilege as nonroot user"), "{err}");
        return;
    }
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let daemon = Spawned::start(d, &["-n", "-c", "vigil.conf", "-u", "nobody"]);
    wait_for_log(d, "test tree started: gen1").await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
    let uids: Vec<u32> = uid_line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
    assert_eq!(uids, [nobody.uid.as_raw(); 4], "{uid_line}");
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains(&format!("INFO Set uid to user {} succeeded", nobody.uid)), "{log}");
    let log_owner = std::fs::metadata(d.join("main.log")).unwrap().uid();
    assert_eq!(log_owner, nobody.uid.as_raw(), "files are created after the switch");
    kill(daemon.pid(), Signal::SIGTERM).unwrap();
    let (code, _, err) = daemon.exit().await;
    assert_eq!(code, 0, "{err}");
    assert!(!d.join("vigil.sock").exists());
}

async fn foreground_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=gen1");
    // An old AUTO log of this identifier is cleaned up at start; others stay.
    std::fs::write(d.join("app-stdout---gen1-abc.log"), "old").unwrap();
    std::fs::write(d.join("app-stdout---other-abc.log"), "keep").unwrap();
    let socket = d.join("vigil.sock");

    let daemon = Spawned::start(d, &["-n", "-c", "vigil.conf"]);
    wait_for_log(d, "test tree started: gen1").await;
    wait_until(|| socket.exists().then_some(())).await;
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains(&format!("INFO supervisord started with pid {}", daemon.pid())), "{log}");
    assert!(
        log.contains("WARN ") && log.contains("test warning"),
        "loader warnings replayed: {log}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("vigild.pid")).unwrap(),
        format!("{}\n", daemon.pid())
    );
    assert!(!d.join("app-stdout---gen1-abc.log").exists());
    assert!(d.join("app-stdout---other-abc.log").exists());

    assert_eq!(request(&socket, HTTP).await, "http gen1\n");
    assert_eq!(request(&socket, TARPC).await, "tarpc gen1\n");

    // A second daemon on the same socket refuses to start and leaves it alone.
    let second = tempfile::tempdir().unwrap();
    let (code, _, err) =
        Spawned::start(second.path(), &["-n", "-c", d.join("vigil.conf").to_str().unwrap()])
            .exit()
            .await;
    assert_eq!(code, 2);
    assert!(err.contains("Another program is already listening"), "{err}");
    assert_eq!(request(&socket, HTTP).await, "http gen1\n");

    // SIGHUP re-reads the file and rebuilds the tree behind the same socket.
    write_config(d, "identifier=gen2");
    kill(daemon.pid(), Signal::SIGHUP).unwrap();
    wait_for_log(d, "test tree started: gen2").await;
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains("received SIGHUP indicating restart request"));
    assert!(log.contains("test tree stopped: gen1"));
    assert_eq!(request(&socket, HTTP).await, "http gen2\n");

    // A bad file on reload changes nothing.
    write_config(d, "invalid");
    kill(daemon.pid(), Signal::SIGHUP).unwrap();
    wait_for_log(d, "configuration not reloaded").await;
    assert_eq!(request(&socket, HTTP).await, "http gen2\n");

    // SIGUSR2 reopens the activity log (logrotate moved it away).
    std::fs::rename(d.join("main.log"), d.join("main.log.old")).unwrap();
    kill(daemon.pid(), Signal::SIGUSR2).unwrap();
    // The request is logged to the old file, what follows to the new one.
    wait_for_log(d, "test tree reopened logs").await;
    let old = std::fs::read_to_string(d.join("main.log.old")).unwrap();
    assert!(old.contains("received SIGUSR2 indicating log reopen request"), "{old}");

    kill(daemon.pid(), Signal::SIGTERM).unwrap();
    let (code, stdout, _) = daemon.exit().await;
    assert_eq!(code, 0, "a signal-requested shutdown exits 0");
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains("received SIGTERM indicating exit request"), "{log}");
    assert!(log.contains("test tree stopped: gen2"), "{log}");
    assert!(!socket.exists(), "socket removed at exit");
    assert!(!d.join("vigild.pid").exists(), "pidfile removed at exit");
    assert!(stdout.contains("supervisord started with pid"), "nodaemon echoes the log: {stdout}");
}

async fn daemonized_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=gen1");
    let socket = d.join("vigil.sock");
    let launcher = Spawned::start(d, &["-c", "vigil.conf", "-m", "027"]);
    let launcher_pid = launcher.pid();
    let (code, stdout, stderr) = launcher.exit().await;
    assert_eq!(code, 0, "the launcher exits 0 once the daemon serves: {stderr}");
    assert!(stdout.is_empty(), "a daemon echoes nothing: {stdout}");
    // Ready means serving: no waiting needed for the socket or the pidfile.
    assert_eq!(request(&socket, HTTP).await, "http gen1\n");
    let pid: i32 = std::fs::read_to_string(d.join("vigild.pid")).unwrap().trim().parse().unwrap();
    let pid = Pid::from_raw(pid);
    let guard = DaemonGuard(Some(pid));
    assert_ne!(pid, launcher_pid);
    assert!(alive(pid));
    assert_ne!(nix::unistd::getsid(Some(pid)).unwrap(), pid, "not a session leader");
    assert_ne!(nix::unistd::getsid(Some(pid)).unwrap(), nix::unistd::getsid(None).unwrap());
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), d.canonicalize().unwrap());
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap(), Path::new("/dev/null"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "Umask:\t0027"), "umask applied: {status}");

    // Shutdown requested over the control socket.
    assert_eq!(request(&socket, b"\0\0\0\x08SHUTDOWN").await, "tarpc gen1\n");
    wait_until(|| (!alive(pid)).then_some(())).await;
    assert!(!socket.exists());
    assert!(!d.join("vigild.pid").exists());
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains("received SIGTERM indicating exit request"), "{log}");
    assert!(log.contains("exiting with status 0"), "{log}");
    drop(guard);
}

async fn daemonized_startup_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=failstart");
    let (code, _, stderr) = Spawned::start(d, &["-c", "vigil.conf"]).exit().await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot start the supervision tree: test tree refuses to start"),
        "{stderr}"
    );
    wait_until(|| (!d.join("vigil.sock").exists()).then_some(())).await;
    wait_until(|| (!d.join("vigild.pid").exists()).then_some(())).await;
}

async fn panic_and_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=panicky");
    let daemon = Spawned::start(d, &["-n", "-s", "-c", "vigil.conf"]);
    wait_for_log(d, "test tree started: panicky").await;
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains("CRIT panic in thread '<unnamed>'"), "{log}");
    assert!(log.contains("test panic on purpose"), "{log}");
    assert_eq!(request(&d.join("vigil.sock"), b"\0\0\0\x05FATAL").await, "tarpc panicky\n");
    let (code, stdout, _) = daemon.exit().await;
    assert_eq!(code, 1, "a fatal request exits 1");
    assert!(stdout.is_empty(), "silent: nothing echoed: {stdout}");
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains("CRIT shutting down: test group went FATAL"), "{log}");
    assert!(log.contains("test tree stopped: panicky"), "ordered shutdown still runs: {log}");
    assert!(!d.join("vigil.sock").exists());
}

/// As PID 1 the kernel drops signals without a handler; vigild installs them,
/// so SIGTERM from the parent namespace still shuts it down with status 0.
async fn runs_as_pid1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, "identifier=gen1");
    let launcher =
        Spawned::start_role(d, "pid1", &["-n", "-s", "-e", "blather", "-c", "vigil.conf"]);
    wait_for_log(d, "test tree started: gen1").await;
    let log = std::fs::read_to_string(d.join("main.log")).unwrap();
    assert!(log.contains("supervisord started with pid 1\n"), "{log}");
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", launcher.pid())).unwrap();
    let vigild = Pid::from_raw(children.trim().parse().unwrap());
    let guard = DaemonGuard(Some(vigild));
    // SIGUSR1 asks for a live upgrade, which this test backend cannot do:
    // logged, not fatal.
    kill(vigild, Signal::SIGUSR1).unwrap();
    wait_for_log(d, "received SIGUSR1 indicating upgrade request").await;
    wait_for_log(d, "upgrade refused").await;
    kill(vigild, Signal::SIGTERM).unwrap();
    let (code, _, err) = launcher.exit().await;
    assert_eq!(code, 0, "{err}");
    wait_for_log(d, "received SIGTERM indicating exit request").await;
    drop(guard);
}
