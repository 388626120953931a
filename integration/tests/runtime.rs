//! vigil-core's runtime layer against real processes: the reaper, spawning and log
//! capture, driving the `vigil-test-child` helper.
//!
//! A test binary of its own: the reaper's `waitpid(-1)` is process-wide and would
//! steal the exit statuses of the vigild and vigilctl processes the black-box tests
//! in `it` wait for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_core::exit::ExitStatus;
use vigil_core::logs::{ChannelLog, backup_path};
use vigil_core::reaper::{Reaper, Spawned};
use vigil_core::spawn::{SpawnError, SpawnSpec, SpawnUser, resolve_command};

const CHILD: &str = env!("CARGO_BIN_EXE_vigil-test-child");
const WAIT: Duration = Duration::from_secs(60);

fn spec(args: &[&str]) -> SpawnSpec {
    let mut argv = vec![CHILD.to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    SpawnSpec::new(argv)
}

/// Kills the child's process group if the test ends (or fails) before it exited.
struct KillOnDrop {
    reaper: Reaper,
    pid: u32,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.reaper.signal(self.pid, libc::SIGKILL, true);
    }
}

fn guard(reaper: &Reaper, spawned: &Spawned) -> KillOnDrop {
    KillOnDrop { reaper: reaper.clone(), pid: spawned.pid }
}

async fn exit_of(spawned: &mut Spawned) -> ExitStatus {
    tokio::time::timeout(WAIT, &mut spawned.exit)
        .await
        .expect("child did not exit in time")
        .unwrap()
}

async fn read_all(receiver: Option<tokio::net::unix::pipe::Receiver>) -> String {
    let mut receiver = receiver.expect("pipe");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, receiver.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8(out).unwrap()
}

/// Reads stdout until a whole line starting with `prefix` arrives; returns the rest
/// of that line.
async fn line_value(receiver: &mut tokio::net::unix::pipe::Receiver, prefix: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        if let Some(end) = seen.iter().rposition(|b| *b == b'\n') {
            let complete = String::from_utf8_lossy(&seen[..end]).into_owned();
            if let Some(value) = complete.lines().find_map(|line| line.strip_prefix(prefix)) {
                return value.to_owned();
            }
        }
        let n = tokio::time::timeout(WAIT, receiver.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "EOF before {prefix:?}; got {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_exits_all_delivered() {
    let reaper = Reaper::start(false).unwrap();
    let mut children = Vec::new();
    for index in 0..300u32 {
        // Distinct statuses: codes for most, a signal death for every tenth.
        let (args, expected) = if index % 10 == 9 {
            (vec!["--crash-after".to_owned(), "0".to_owned()], ExitStatus::Signal(libc::SIGABRT))
        } else {
            let code = (index % 250) as i32;
            (vec!["--exit".to_owned(), code.to_string()], ExitStatus::Code(code))
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let spawned = reaper.spawn(&spec(&args)).unwrap();
        let guard = guard(&reaper, &spawned);
        children.push((spawned, expected, guard));
    }
    let mut statuses = HashMap::new();
    for (mut spawned, expected, _guard) in children {
        let status = exit_of(&mut spawned).await;
        assert_eq!(status, expected, "pid {}", spawned.pid);
        statuses.insert(spawned.pid, status);
        assert!(!reaper.is_running(spawned.pid));
    }
    assert_eq!(statuses.len(), 300);
}

/// std waits internally for a child whose exec failed; the reaper must never steal
/// that wait (std would panic) while it reaps other exits at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_failures_race_with_reaping() {
    let reaper = Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let reaper = reaper.clone();
        let missing = missing.clone();
        tasks.push(tokio::spawn(async move {
            let mut exits = Vec::new();
            for index in 0..100 {
                if (index + worker) % 2 == 0 {
                    let err = reaper.spawn(&SpawnSpec::new(vec![missing.clone()])).unwrap_err();
                    assert!(matches!(err, SpawnError::Exec { .. }), "{err}");
                } else {
                    let spawned = reaper.spawn(&spec(&["--exit", "7"])).unwrap();
                    exits.push((guard(&reaper, &spawned), spawned));
                }
                tokio::task::yield_now().await;
            }
            for (_guard, mut spawned) in exits {
                assert_eq!(exit_of(&mut spawned).await, ExitStatus::Code(7));
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn exec_failures_have_supervisord_texts() {
    let reaper = Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing");
    let argv = vec![missing.to_str().unwrap().to_owned()];
    let err = resolve_command(&argv, None).unwrap_err();
    assert_eq!(err.to_string(), format!("can't find command '{}'", missing.display()));
    // Spawning it anyway (the file vanished after resolution) fails in exec.
    let err = reaper.spawn(&SpawnSpec::new(argv)).unwrap_err();
    assert_eq!(err.to_string(), format!("couldn't exec {}: ENOENT", missing.display()));

    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"not a program").unwrap();
    let argv = vec![plain.to_str().unwrap().to_owned()];
    let err = resolve_command(&argv, None).unwrap_err();
    assert_eq!(err.to_string(), format!("command at '{}' is not executable", plain.display()));
    let err = reaper.spawn(&SpawnSpec::new(argv)).unwrap_err();
    assert_eq!(err.to_string(), format!("couldn't exec {}: EACCES", plain.display()));

    let mut nowhere = spec(&["--exit", "0"]);
    let bad_dir = dir.path().join("no-such-dir");
    nowhere.cwd = Some(bad_dir.clone());
    let err = reaper.spawn(&nowhere).unwrap_err();
    assert!(matches!(err, SpawnError::Chdir { .. }));
    assert_eq!(err.to_string(), format!("couldn't chdir to {}: ENOENT", bad_dir.display()));
}

#[tokio::test]
async fn signals_only_reach_unreaped_children() {
    let reaper = Reaper::start(false).unwrap();
    let mut quick = reaper.spawn(&spec(&["--exit", "4"])).unwrap();
    assert_eq!(exit_of(&mut quick).await, ExitStatus::Code(4));
    // Reaped: the pid may already belong to someone else, so it is refused.
    assert!(!reaper.signal(quick.pid, libc::SIGKILL, false).unwrap());
    assert!(!reaper.signal(quick.pid, libc::SIGKILL, true).unwrap());
    assert!(!reaper.signal(1, libc::SIGTERM, false).unwrap(), "pid 1 is not ours");

    let mut sleeper = reaper.spawn(&spec(&["--ready", "--sleep", "60"])).unwrap();
    let _guard = guard(&reaper, &sleeper);
    line_value(sleeper.stdout.as_mut().unwrap(), "ready").await;
    assert!(reaper.signal(sleeper.pid, libc::SIGTERM, false).unwrap());
    assert_eq!(exit_of(&mut sleeper).await, ExitStatus::Signal(libc::SIGTERM));
    assert!(!reaper.is_running(sleeper.pid));
    assert!(!reaper.signal(sleeper.pid, libc::SIGTERM, false).unwrap());
}

#[tokio::test]
async fn group_signal_reaches_grandchildren() {
    let reaper = Reaper::start(false).unwrap();
    let mut child = reaper.spawn(&spec(&["--fork-grandchild", "60", "--sleep", "60"])).unwrap();
    let _guard = guard(&reaper, &child);
    let grandchild: i32 =
        line_value(child.stdout.as_mut().unwrap(), "grandchild=").await.parse().unwrap();
    // The child leads its own process group; the grandchild is in it.
    let pgid = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(grandchild))).unwrap();
    assert_eq!(pgid.as_raw() as u32, child.pid);
    assert!(reaper.signal(child.pid, libc::SIGKILL, true).unwrap());
    assert_eq!(exit_of(&mut child).await, ExitStatus::Signal(libc::SIGKILL));
    // The grandchild got the kill too: it is gone or a zombie of whoever adopted it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state =
            std::fs::read_to_string(format!("/proc/{grandchild}/stat")).ok().and_then(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            });
        match state.as_deref() {
            None | Some("Z") | Some("X") => break,
            Some(_) => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "grandchild {grandchild} survived the group kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn child_sees_env_cwd_umask_and_no_stray_fds() {
    let reaper = Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // An inheritable fd in the parent (no CLOEXEC) must not leak into the child.
    let leaked = nix::unistd::dup(std::io::stdin()).unwrap();
    let mut spec =
        spec(&["--print-env", "VIGIL_TEST", "--print-env", "HOME", "--print-ids", "--print-fds"]);
    spec.env = [("VIGIL_TEST".to_owned(), "value with spaces".to_owned())].into_iter().collect();
    spec.cwd = Some(dir.path().to_owned());
    spec.umask = Some(0o027);
    let mut spawned = reaper.spawn(&spec).unwrap();
    let _guard = guard(&reaper, &spawned);
    drop(leaked);
    let out = read_all(spawned.stdout.take()).await;
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Code(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "VIGIL_TEST=value with spaces");
    assert_eq!(lines[1], "HOME is unset", "the environment is exactly the spec's");
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    assert!(lines[2].ends_with(&format!(" umask=0027 cwd={}", cwd.display())), "{}", lines[2]);
    assert_eq!(lines[3], "fds=0,1,2");
}

#[tokio::test]
async fn ignored_signals_are_reset_for_the_child() {
    /// Puts the previous disposition back, even if the test fails.
    struct Restore(libc::sighandler_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: reinstalls the disposition saved below.
            unsafe { libc::signal(libc::SIGPWR, self.0) };
        }
    }
    let reaper = Reaper::start(false).unwrap();
    // exec keeps SIG_IGN, so an ignored signal in the daemon would stay ignored in
    // every program unless spawning resets it. SIGPWR: nothing in this binary uses it.
    // SAFETY: installing SIG_IGN runs no handler code.
    let _restore = Restore(unsafe { libc::signal(libc::SIGPWR, libc::SIG_IGN) });
    let mut spawned = reaper.spawn(&spec(&["--print-sigign"])).unwrap();
    let out = read_all(spawned.stdout.take()).await;
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Code(0));
    let mask = u64::from_str_radix(out.trim().strip_prefix("sigign=").unwrap(), 16).unwrap();
    assert_eq!(mask & (1 << (libc::SIGPWR - 1)), 0, "SIGPWR still ignored: {out}");
}

#[tokio::test]
async fn privilege_drop_sets_groups_then_gid_then_uid() {
    if !nix::unistd::getuid().is_root() {
        // Only root can switch users; the non-root refusal is a unit test in spawn.
        return;
    }
    let reaper = Reaper::start(false).unwrap();
    let mut spec = spec(&["--print-ids"]);
    spec.user = Some(SpawnUser { uid: 65534, gid: 65534, groups: vec![65534, 4242] });
    let mut spawned = reaper.spawn(&spec).unwrap();
    let out = read_all(spawned.stdout.take()).await;
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Code(0));
    assert!(out.starts_with("uid=65534 gid=65534 groups=4242,65534 "), "{out}");

    // chdir happens after setuid: a root-only directory is refused to the user.
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .unwrap();
    let mut spec = spec.clone();
    spec.cwd = Some(private.clone());
    let err = reaper.spawn(&spec).unwrap_err();
    assert_eq!(err.to_string(), format!("couldn't chdir to {}: EACCES", private.display()));
}

#[tokio::test]
async fn stdin_and_redirected_stderr() {
    let reaper = Reaper::start(false).unwrap();
    let mut spec = spec(&["--write-stderr", "to stderr", "--stdin-echo", "--echo", "done"]);
    spec.pipe_stdin = true;
    spec.redirect_stderr = true;
    let mut spawned = reaper.spawn(&spec).unwrap();
    let _guard = guard(&reaper, &spawned);
    assert!(spawned.stderr.is_none());
    let mut stdin =
        tokio::net::unix::pipe::Sender::from_owned_fd(spawned.stdin.take().unwrap()).unwrap();
    stdin.write_all(b"first line\nsecond line\n").await.unwrap();
    drop(stdin);
    let out = read_all(spawned.stdout.take()).await;
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Code(0));
    assert_eq!(out, "to stderr\nfirst line\nsecond line\ndone\n");
}

/// The child's `--write-bytes` pattern: 16-byte records of 15 hex digits and `\n`.
fn child_pattern(offset: u64, out: &mut [u8]) {
    const HEX: &[u8] = b"0123456789abcdef";
    for (index, byte) in out.iter_mut().enumerate() {
        let position = offset + index as u64;
        let (record, column) = (position / 16, position % 16);
        *byte = if column == 15 {
            b'\n'
        } else {
            HEX[((record >> ((14 - column) * 4)) & 0xf) as usize]
        };
    }
}

fn assert_pattern_files(files: &[PathBuf], start: u64) -> u64 {
    let mut offset = start;
    let mut expected = Vec::new();
    for path in files {
        let bytes = std::fs::read(path).unwrap();
        expected.resize(bytes.len(), 0);
        child_pattern(offset, &mut expected);
        assert!(bytes == expected, "{} differs from the pattern", path.display());
        offset += bytes.len() as u64;
    }
    offset - start
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_end_to_end_with_rotation() {
    const TOTAL: u64 = 50 * 1024 * 1024;
    let reaper = Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("child.log");
    let maxbytes = 3 * 1024 * 1024 + 11;
    let backups = 20;
    let log = ChannelLog::open(Some(base.clone()), maxbytes, backups, 64 * 1024).unwrap();
    let stderr_log = ChannelLog::open(None, 0, 0, 4096).unwrap();
    let mut spawned = reaper
        .spawn(&spec(&["--write-bytes", &TOTAL.to_string(), "--write-stderr", "finished"]))
        .unwrap();
    let _guard = guard(&reaper, &spawned);
    let stdout_capture = log.capture(spawned.stdout.take().unwrap());
    let stderr_capture = stderr_log.capture(spawned.stderr.take().unwrap());
    tokio::time::timeout(WAIT, stdout_capture).await.unwrap().unwrap();
    tokio::time::timeout(WAIT, stderr_capture).await.unwrap().unwrap();
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Code(0));
    assert_eq!(log.total(), TOTAL);
    assert_eq!(stderr_log.read(0, 0).unwrap(), b"finished\n");
    let mut files: Vec<PathBuf> =
        (1..=backups).rev().map(|i| backup_path(&base, i)).filter(|p| p.exists()).collect();
    files.push(base.clone());
    assert_eq!(files.len() as u64, TOTAL / maxbytes + 1);
    assert_eq!(assert_pattern_files(&files, 0), TOTAL);
    // supervisorctl's `tail`: the last 1600 bytes.
    let mut expected = vec![0u8; 1600];
    child_pattern(TOTAL - 1600, &mut expected);
    assert_eq!(log.read(-1600, 0).unwrap(), expected);
    let (bytes, offset, overflow) = log.tail(0, 1600);
    assert_eq!((bytes, offset, overflow), (expected, TOTAL, true));
}

#[tokio::test]
async fn child_helper_probe_flags() {
    let reaper = Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    let mut spec = spec(&[
        "--listen-tcp",
        port_file.to_str().unwrap(),
        "--notify-ready",
        "--ready",
        "--sleep",
        "60",
    ]);
    spec.env = [("NOTIFY_SOCKET".to_owned(), notify_path.to_str().unwrap().to_owned())]
        .into_iter()
        .collect();
    let mut spawned = reaper.spawn(&spec).unwrap();
    let _guard = guard(&reaper, &spawned);
    line_value(spawned.stdout.as_mut().unwrap(), "ready").await;
    let port: u16 = std::fs::read_to_string(&port_file).unwrap().parse().unwrap();
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut message = [0u8; 64];
    let n = notify.recv(&mut message).unwrap();
    assert_eq!(&message[..n], b"READY=1");
    assert!(reaper.signal(spawned.pid, libc::SIGKILL, true).unwrap());
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Signal(libc::SIGKILL));
}

/// The child joins its control groups itself, before exec: a group it cannot
/// join fails the spawn with the group's name (never a child running
/// outside its limits), and one it can join lists it from its first moment.
#[tokio::test]
async fn the_child_joins_its_control_group_before_exec() {
    let reaper = Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("gone").join("cgroup.procs");
    let mut joining = spec(&["--exit", "0"]);
    joining.cgroups = vec![missing.clone()];
    let err = reaper.spawn(&joining).unwrap_err();
    assert!(matches!(err, SpawnError::Cgroup { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("couldn't join control group {}: ENOENT", missing.display())
    );

    // A real group, where this host lets us make one.
    let unified = PathBuf::from("/sys/fs/cgroup/unified");
    let base = if unified.join("cgroup.procs").exists() {
        unified
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    if !base.join("cgroup.procs").exists() || !nix::unistd::getuid().is_root() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "the_child_joins_its_control_group_before_exec: real group SKIPPED, no writable cgroup v2 mount"
        );
        return;
    }
    let group = base.join(format!("vigil-runtime-{}", std::process::id()));
    std::fs::create_dir(&group).unwrap();
    struct RemoveGroup(PathBuf);
    impl Drop for RemoveGroup {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
            vigil_integration::try_wait_until(WAIT, || std::fs::remove_dir(&self.0).is_ok());
        }
    }
    let _remove = RemoveGroup(group.clone());
    let mut joining = spec(&["--sleep", "30"]);
    joining.cgroups = vec![group.join("cgroup.procs")];
    let mut spawned = reaper.spawn(&joining).unwrap();
    let _kill = guard(&reaper, &spawned);
    let procs = std::fs::read_to_string(group.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), spawned.pid.to_string());
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", spawned.pid)).unwrap();
    let name = group.file_name().unwrap().to_str().unwrap();
    assert!(own.lines().any(|line| line.starts_with("0::") && line.ends_with(name)), "{own}");
    reaper.signal(spawned.pid, libc::SIGKILL, false).unwrap();
    assert_eq!(exit_of(&mut spawned).await, ExitStatus::Signal(libc::SIGKILL));
}

/// Spawns from several threads at once (each on a launcher of its own) lose no
/// exit and mix none up, even when every child exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_spawns_deliver_every_exit() {
    let reaper = Reaper::start(false).unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8u32 {
        let reaper = reaper.clone();
        // Blocking threads, as spawns block until exec: all eight run at once.
        tasks.push(tokio::task::spawn_blocking(move || {
            (0..60u32)
                .map(|index| {
                    let code = ((worker * 60 + index) % 250) as i32;
                    let spawned = reaper.spawn(&spec(&["--exit", &code.to_string()])).unwrap();
                    (guard(&reaper, &spawned), spawned, ExitStatus::Code(code))
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut pids = std::collections::HashSet::new();
    for task in tasks {
        for (_guard, mut spawned, expected) in
            tokio::time::timeout(WAIT, task).await.unwrap().unwrap()
        {
            assert_eq!(exit_of(&mut spawned).await, expected, "pid {}", spawned.pid);
            assert!(!reaper.is_running(spawned.pid));
            pids.insert(spawned.pid);
        }
    }
    assert_eq!(pids.len(), 480);
}

/// A child this process already had (as after an `execve` of vigild) is
/// adopted: its exit reaches the receiver, not the orphan count; a second
/// adoption and a pid that is not our child are refused.
#[tokio::test]
async fn an_adopted_child_is_reaped_like_a_spawned_one() {
    let reaper = Reaper::start(false).unwrap();
    // std spawns it, outside the reaper: it waits on its stdin, so it cannot
    // exit before it is adopted.
    #[expect(clippy::zombie_processes, reason = "the reaper adopts and reaps it")]
    let mut child = std::process::Command::new(CHILD)
        .args(["--stdin-echo", "--exit", "7"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let orphans = reaper.orphans_reaped();
    let exit = reaper.adopt(pid).unwrap();
    let _guard = KillOnDrop { reaper: reaper.clone(), pid };
    assert!(reaper.is_running(pid));
    let again = reaper.adopt(pid).unwrap_err();
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists, "{again}");
    let stranger = reaper.adopt(1).unwrap_err();
    assert_eq!(stranger.kind(), std::io::ErrorKind::NotFound, "{stranger}");
    drop(child.stdin.take());
    let status = tokio::time::timeout(WAIT, exit).await.unwrap().unwrap();
    assert_eq!(status, ExitStatus::Code(7));
    assert!(!reaper.is_running(pid));
    assert_eq!(reaper.orphans_reaped(), orphans);
}
