//! Chaos: 100 programs under everything at once, then the books must balance.
//!
//! For `VIGIL_CHAOS_SECS` (default 30) seconds, concurrently:
//! - `kill -9` of a random RUNNING program 20 times a second (only pids `vigilctl
//!   status` reports, and only while the pid is still vigild's child running as
//!   that program);
//! - `update` after a random config edit (a program removed, one added back, one
//!   changed so that it restarts) every 1-3 s;
//! - `restart all`, SIGHUP and SIGUSR2 at random moments;
//! - clients connecting and dropping (silent, half an HTTP head, half a tarpc
//!   frame, a full `status`);
//! - a log directory that fills and empties: five of the programs log into a small
//!   tmpfs (when the test runs as root and may mount one; otherwise into a plain
//!   directory, and only the rest happens) that a ballast file fills to ENOSPC and
//!   then frees, every few seconds.
//!
//! Afterwards, with the config back to its starting content:
//! - every program is RUNNING and no other is listed;
//! - vigild has no zombie child;
//! - its descriptors other than the programs' pipes and logs number at most its
//!   starting count + `FD_TOLERANCE`, those at most five per program, and its
//!   RSS at most the larger of 1.5x and +16 MiB of its starting RSS (the allocator
//!   keeps some freed memory);
//! - every log of the programs on the ordinary disk holds numbered lines with no gap
//!   within one run (a run starts again at line 1), so no byte written before a
//!   `kill -9`, restart or reload was lost; the programs on the full disk must have
//!   logged again after it was freed;
//! - after `shutdown`, no process is left (checked by the harness).
//!
//! The seed is printed first (`VIGIL_CHAOS_SEED` replays one) and the figures
//! (restarts done, missed, respawn latency) on the last line.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vigil_integration::{
    Program, Sandbox, TIMEOUT, ctl_at, is_root, procfs, try_wait_until, vigilctl_bin, wait_timeout,
    wait_until,
};

/// Programs logging on the ordinary disk.
const DISK_PROGRAMS: usize = 95;
/// Programs logging into the directory that fills up.
const FULL_PROGRAMS: usize = 5;
/// Kills per second.
const KILL_RATE: u32 = 20;
/// Descriptors vigild may hold beyond its starting count at the end (a control
/// connection still being closed).
const FD_TOLERANCE: usize = 4;
/// The tail ring vigild keeps in memory per logged channel, filled as output arrives:
/// memory it may still allocate after the warm-up without leaking.
const TAIL_RING_KIB: usize = 64;
/// How long a killed program may take to come back before it counts as missed.
const RESPAWN_DEADLINE: Duration = Duration::from_secs(30);

fn disk_name(i: usize) -> String {
    format!("p{i:03}")
}

fn full_name(i: usize) -> String {
    format!("f{i:02}")
}

/// The config's program sections: `present` disk programs (name -> generation; a
/// new generation changes the environment, so `update` restarts it) and the
/// programs logging into `full_dir`.
fn config_text(sandbox: &Sandbox, present: &BTreeMap<String, u32>, full_dir: &Path) -> String {
    let mut programs = Vec::new();
    for (name, generation) in present {
        programs.push(
            Program::child(name, &["--count", "100000000", "0.1"])
                .set("startsecs", 1)
                .set("stdout_logfile_maxbytes", 0)
                .set("environment", format!("CHAOS_GENERATION={generation}")),
        );
    }
    for i in 0..FULL_PROGRAMS {
        let name = full_name(i);
        programs.push(
            Program::child(&name, &["--count", "100000000", "0.01"])
                .set("startsecs", 1)
                .set("stdout_logfile", full_dir.join(format!("{name}.out")).display())
                .set("stdout_logfile_maxbytes", "64KB")
                .set("stdout_logfile_backups", 1)
                .set("redirect_stderr", "true"),
        );
    }
    sandbox.programs_text(&programs)
}

/// Writes the config so a concurrent reader (SIGHUP, `update`) sees the old or the
/// new file, never half of one.
fn write_config_atomically(sandbox: &Sandbox, body: &str) {
    let text = format!("{}{body}", sandbox.header());
    let tmp = sandbox.join("supervisord.conf.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, sandbox.config_path()).expect("rename config");
}

/// Runs a short system command; whether it succeeded (a hang counts as failure and
/// the command is killed).
fn quietly(command: &mut Command) -> bool {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let Ok(mut child) = command.spawn() else { return false };
    let status = wait_timeout(&mut child, TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = wait_timeout(&mut child, TIMEOUT);
    }
    status.is_some_and(|status| status.success())
}

/// A tmpfs mounted for the test's lifetime (unmounted on drop, even on failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            return None;
        }
        let mut mount = Command::new("mount");
        mount.args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"]).arg(dir);
        quietly(&mut mount).then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        quietly(Command::new("umount").arg("-l").arg(&self.0));
    }
}

/// vigild's descriptors that are not a program's own: its capture pipes and
/// open log files come and go with the programs that `update` adds and removes
/// and with what each is writing at the moment, so they are bounded per
/// program instead (see [`program_fds`]).
fn fd_count(pid: i32) -> usize {
    fd_targets(pid).iter().filter(|target| !is_program_fd(target)).count()
}

/// vigild's capture pipes and program log files.
fn program_fds(pid: i32) -> usize {
    fd_targets(pid).iter().filter(|target| is_program_fd(target)).count()
}

fn fd_targets(pid: i32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).collect())
        .unwrap_or_default()
}

fn is_program_fd(target: &Path) -> bool {
    let text = target.to_string_lossy();
    text.starts_with("pipe:") || text.ends_with(".out") || text.ends_with(".err")
}

/// vigild's resident memory in KiB: (anonymous, file-backed). Only the anonymous part is
/// what vigild allocates; the file-backed part is its executable's pages, which grow as
/// code runs for the first time (a debug build is over 100 MB of text).
fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// vigild's thread count.
fn threads(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0)
}

/// The program a process runs as, from the `SUPERVISOR_PROCESS_NAME` vigild puts in
/// its environment (`None` before its exec, or once it is gone).
fn program_of(pid: i32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let value = entry.strip_prefix(b"SUPERVISOR_PROCESS_NAME=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// How long one vigilctl command may take during the chaos before it counts as a hang.
const CTL_DEADLINE: Duration = Duration::from_secs(60);

/// `vigilctl -c config ARGS...`: its exit code and stdout, or a description of the hang
/// when it did not finish within [`CTL_DEADLINE`] (it is killed then).
fn ctl(dir: &Path, config: &Path, args: &[&str]) -> Result<(i32, String), String> {
    let mut child = Command::new(vigilctl_bin())
        .current_dir(dir)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run vigilctl: {e}"));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = wait_timeout(&mut child, CTL_DEADLINE);
    if status.is_none() {
        let _ = child.kill();
        let _ = wait_timeout(&mut child, TIMEOUT);
    }
    let text = reader.join().unwrap_or_default();
    match status {
        Some(status) => Ok((status.code().unwrap_or(-1), text)),
        None => Err(format!("vigilctl {} did not answer within {CTL_DEADLINE:?}", args.join(" "))),
    }
}

/// `name -> pid` of the RUNNING programs `vigilctl status` lists (none if it hung;
/// the hang is recorded in `hangs`).
fn running_pids(dir: &Path, config: &Path, hangs: &Mutex<Vec<String>>) -> BTreeMap<String, i32> {
    let mut found = BTreeMap::new();
    let stdout = match ctl(dir, config, &["status"]) {
        Ok((_, stdout)) => stdout,
        Err(hang) => {
            hangs.lock().expect("hangs").push(hang);
            return found;
        }
    };
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [name, "RUNNING", "pid", pid, ..] = words.as_slice()
            && let Ok(pid) = pid.trim_end_matches(',').parse()
        {
            found.insert((*name).to_owned(), pid);
        }
    }
    found
}

/// vigild's children that are zombies.
fn zombies(vigild: i32) -> Vec<i32> {
    procfs::children(vigild).into_iter().filter(|pid| procfs::zombie(*pid)).collect()
}

/// Checks a log of `line NNNNNN` lines: each line continues a run (the line before
/// it in that run has the number before it) or is line 1 of a new run. Returns the
/// number of lines and how many of them continued a run other than the latest: the
/// last lines of a run that reached the log after the next run's first ones.
fn check_numbered(path: &Path) -> Result<(usize, usize), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(format!("{}: ends in a partial line", path.display()));
    }
    // The last number of each run, oldest first.
    let mut runs: Vec<u64> = Vec::new();
    let (mut count, mut interleaved) = (0, 0);
    for (index, line) in text.lines().enumerate() {
        let number: u64 = line
            .strip_prefix("line ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{}:{}: unexpected {line:?}", path.display(), index + 1))?;
        count += 1;
        if number == 1 {
            runs.push(1);
            continue;
        }
        let Some(run) = runs.iter().rposition(|last| *last + 1 == number) else {
            let context: Vec<&str> = text.lines().skip(index.saturating_sub(4)).take(9).collect();
            return Err(format!(
                "{}:{}: line {number} continues no run: bytes were lost; lines around it: \
                 {context:?}",
                path.display(),
                index + 1
            ));
        };
        if run + 1 != runs.len() {
            interleaved += 1;
        }
        runs[run] = number;
    }
    Ok((count, interleaved))
}

/// What the chaos threads share.
#[derive(Default)]
struct Books {
    /// Program -> when its kill was sent, until a new pid of it appears.
    pending: Mutex<HashMap<String, (i32, Instant)>>,
    /// Respawn latencies, in milliseconds.
    latencies: Mutex<Vec<u64>>,
    /// vigilctl commands that did not answer.
    hangs: Mutex<Vec<String>>,
    /// Programs seen running twice at once (a few examples).
    duplicates: Mutex<Vec<String>>,
    /// Kills whose program was removed from the config before it came back.
    dropped: AtomicU64,
    kills: AtomicU64,
    updates: AtomicU64,
    updates_failed: AtomicU64,
    restart_alls: AtomicU64,
    sighups: AtomicU64,
    sigusr2s: AtomicU64,
    clients: AtomicU64,
    fills: AtomicU64,
}

#[expect(
    clippy::disallowed_methods,
    reason = "the pace of the chaos and of its observers, not a synchronisation"
)]
fn pace(duration: Duration) {
    std::thread::sleep(duration);
}

/// Sleeps `duration` unless `stop` is raised first.
fn nap(stop: &AtomicBool, duration: Duration) {
    let end = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        pace(Duration::from_millis(10).min(end - Instant::now()));
    }
}

/// Raises the stop flag when dropped, so a panicking thread ends the others.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn chaos() {
    let seed: u64 = std::env::var("VIGIL_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let secs: u64 =
        std::env::var("VIGIL_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    println!("chaos: seed={seed} secs={secs} (replay with VIGIL_CHAOS_SEED={seed})");

    let sandbox = Sandbox::new();
    let full_dir = sandbox.join("full");
    std::fs::create_dir(&full_dir).expect("full dir");
    let tmpfs = Tmpfs::mount(&full_dir, "1m");
    println!(
        "chaos: filling log directory is {}",
        if tmpfs.is_some() { "a 1 MiB tmpfs" } else { "a plain directory (not root): no ENOSPC" }
    );
    let initial: BTreeMap<String, u32> = (0..DISK_PROGRAMS).map(|i| (disk_name(i), 0)).collect();
    write_config_atomically(&sandbox, &config_text(&sandbox, &initial, &full_dir));
    let daemon = sandbox.start();
    let vigild = daemon.pid();
    let dir = sandbox.path().to_path_buf();
    let config = sandbox.config_path();

    let all_names: Vec<String> =
        initial.keys().cloned().chain((0..FULL_PROGRAMS).map(full_name)).collect();
    let books = Books::default();
    let everyone_running = || {
        let running = running_pids(&dir, &config, &books.hangs);
        all_names.iter().all(|name| running.contains_key(name))
    };
    wait_until(TIMEOUT * 2, "all 100 programs RUNNING", everyone_running);
    // Every log has been opened (a log opens at the program's first write).
    wait_until(TIMEOUT, "every program logged a line", || {
        all_names.iter().all(|name| {
            let path = if name.starts_with('f') {
                full_dir.join(format!("{name}.out"))
            } else {
                sandbox.stdout_log(name)
            };
            std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
        })
    });
    let fds_cold = fd_count(vigild);
    let rss_cold = rss_kib(vigild);

    let present = Mutex::new(initial.clone());
    let stop = AtomicBool::new(false);
    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    let fork_rng = || fastrand::Rng::with_seed(rng.lock().expect("rng").u64(..));

    // One chaos phase of `secs` seconds: every actor in its own thread until the clock
    // runs out or one of them fails.
    let phase = |secs: u64| {
        stop.store(false, Ordering::Relaxed);
        std::thread::scope(|scope| {
            let _stop_all = StopOnDrop(&stop);
            // Killer: one kill every 1/KILL_RATE s from a status snapshot refreshed twice a second.
            scope.spawn(|| {
                let _stop_all = StopOnDrop(&stop);
                let mut rng = fork_rng();
                let mut snapshot = BTreeMap::new();
                let mut taken = Instant::now() - Duration::from_secs(1);
                while !stop.load(Ordering::Relaxed) {
                    if taken.elapsed() >= Duration::from_millis(500) {
                        snapshot = running_pids(&dir, &config, &books.hangs);
                        taken = Instant::now();
                    }
                    let candidates: Vec<(&String, &i32)> = snapshot.iter().collect();
                    if let Some(&(name, &pid)) =
                        candidates.get(rng.usize(..candidates.len().max(1)))
                    {
                        let ours = procfs::stat(pid)
                            .is_some_and(|s| s.ppid == vigild && s.state != 'Z')
                            && program_of(pid).as_deref() == Some(name.as_str());
                        let mut pending = books.pending.lock().expect("books");
                        if ours && !pending.contains_key(name) {
                            let sent = Instant::now();
                            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                                pending.insert(name.clone(), (pid, sent));
                                books.kills.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    nap(&stop, Duration::from_secs(1) / KILL_RATE);
                }
            });
            // Respawn watcher: a new pid of a killed program ends its wait.
            scope.spawn(|| {
                let _stop_all = StopOnDrop(&stop);
                let mut known: HashMap<i32, String> = HashMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let children = procfs::children(vigild);
                    known.retain(|pid, _| children.contains(pid));
                    let mut live: HashMap<&str, i32> = HashMap::new();
                    for (pid, name) in &known {
                        if !procfs::alive(*pid) {
                            continue;
                        }
                        if let Some(other) = live.insert(name, *pid) {
                            let mut duplicates = books.duplicates.lock().expect("books");
                            if duplicates.len() < 10 {
                                duplicates.push(format!(
                                    "{name} running twice: pids {other} and {pid} ({})",
                                    procfs::cmdline(*pid)
                                ));
                            }
                        }
                    }
                    for pid in children {
                        if known.contains_key(&pid) {
                            continue;
                        }
                        let Some(name) = program_of(pid) else { continue };
                        let mut pending = books.pending.lock().expect("books");
                        if let Some(&(killed, sent)) = pending.get(&name)
                            && killed != pid
                        {
                            pending.remove(&name);
                            let ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
                            books.latencies.lock().expect("books").push(ms);
                        }
                        known.insert(pid, name);
                    }
                    pace(Duration::from_millis(5));
                }
            });
            // Operator: config edits and `update`.
            scope.spawn(|| {
                let _stop_all = StopOnDrop(&stop);
                let mut rng = fork_rng();
                while !stop.load(Ordering::Relaxed) {
                    nap(&stop, Duration::from_millis(rng.u64(1000..3000)));
                    let body = {
                        let mut present = present.lock().expect("present");
                        let absent: Vec<String> = (0..DISK_PROGRAMS)
                            .map(disk_name)
                            .filter(|name| !present.contains_key(name))
                            .collect();
                        for _ in 0..rng.usize(1..4) {
                            let names: Vec<String> = present.keys().cloned().collect();
                            match rng.u8(0..3) {
                                0 if present.len() > DISK_PROGRAMS - 15 => {
                                    let name = &names[rng.usize(..names.len())];
                                    present.remove(name);
                                    let mut pending = books.pending.lock().expect("books");
                                    if pending.remove(name).is_some() {
                                        books.dropped.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                1 if !absent.is_empty() => {
                                    present.insert(absent[rng.usize(..absent.len())].clone(), 0);
                                }
                                _ => {
                                    let name = &names[rng.usize(..names.len())];
                                    *present.get_mut(name).expect("present") += 1;
                                }
                            }
                        }
                        config_text(&sandbox, &present, &full_dir)
                    };
                    write_config_atomically(&sandbox, &body);
                    books.updates.fetch_add(1, Ordering::Relaxed);
                    match ctl(&dir, &config, &["update"]) {
                        Ok((0, _)) => {}
                        Ok(_) => {
                            books.updates_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(hang) => books.hangs.lock().expect("hangs").push(hang),
                    }
                }
            });
            // Operator: `restart all`, SIGHUP, SIGUSR2.
            scope.spawn(|| {
                let _stop_all = StopOnDrop(&stop);
                let mut rng = fork_rng();
                while !stop.load(Ordering::Relaxed) {
                    nap(&stop, Duration::from_millis(rng.u64(1000..4000)));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match rng.u8(0..6) {
                        0 => {
                            if let Err(hang) = ctl(&dir, &config, &["restart", "all"]) {
                                books.hangs.lock().expect("hangs").push(hang);
                            }
                            books.restart_alls.fetch_add(1, Ordering::Relaxed);
                        }
                        1 => {
                            kill(Pid::from_raw(vigild), Signal::SIGHUP).expect("SIGHUP vigild");
                            books.sighups.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            kill(Pid::from_raw(vigild), Signal::SIGUSR2).expect("SIGUSR2 vigild");
                            books.sigusr2s.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
            // Clients connecting and dropping.
            scope.spawn(|| {
                let _stop_all = StopOnDrop(&stop);
                let mut rng = fork_rng();
                let socket = sandbox.socket();
                while !stop.load(Ordering::Relaxed) {
                    let half: &[u8] = match rng.u8(0..4) {
                        0 => b"",
                        1 => b"POST /RPC2 HTTP/1.1\r\nContent-Length: 100\r\n",
                        2 => b"\x00\x00\x10\x00{\"vigil\":1",
                        _ => {
                            if let Err(hang) = ctl(&dir, &config, &["status"]) {
                                books.hangs.lock().expect("hangs").push(hang);
                            }
                            books.clients.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    if let Ok(mut stream) = UnixStream::connect(&socket) {
                        let _ = stream.write_all(half);
                        books.clients.fetch_add(1, Ordering::Relaxed);
                        nap(&stop, Duration::from_millis(rng.u64(0..200)));
                    }
                }
            });
            // The log directory that fills and empties.
            if tmpfs.is_some() {
                scope.spawn(|| {
                    let _stop_all = StopOnDrop(&stop);
                    let mut rng = fork_rng();
                    let ballast = full_dir.join("ballast");
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(mut file) = std::fs::File::create(&ballast) {
                            let block = vec![0u8; 64 * 1024];
                            while file.write_all(&block).is_ok() {}
                            books.fills.fetch_add(1, Ordering::Relaxed);
                        }
                        nap(&stop, Duration::from_millis(rng.u64(1000..3000)));
                        let _ = std::fs::remove_file(&ballast);
                        nap(&stop, Duration::from_millis(rng.u64(1000..3000)));
                    }
                });
            }
            // The clock, and vigild must stay up throughout.
            let end = Instant::now() + Duration::from_secs(secs);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                assert!(
                    procfs::alive(vigild),
                    "vigild died during the chaos\n{}",
                    daemon.diagnostics()
                );
                pace(Duration::from_millis(100));
            }
        });
        let _ = std::fs::remove_file(full_dir.join("ballast"));
    };
    let settle = || -> BTreeMap<String, i32> {
        *present.lock().expect("present") = initial.clone();
        // Back to the starting config; every program must come back and settle.
        write_config_atomically(&sandbox, &config_text(&sandbox, &initial, &full_dir));
        let output = ctl_at(&dir, &config, &["update"]);
        assert_eq!(output.code, 0, "final update: {output:#?}\n{}", daemon.diagnostics());
        let mut last = BTreeMap::new();
        let settled = try_wait_until(TIMEOUT * 2, || {
            last = running_pids(&dir, &config, &books.hangs);
            last.len() == all_names.len() && all_names.iter().all(|name| last.contains_key(name))
        });
        assert!(
            settled,
            "not every program RUNNING after the chaos: missing {:?}\n{}",
            all_names.iter().filter(|n| !last.contains_key(*n)).collect::<Vec<_>>(),
            daemon.diagnostics()
        );
        last
    };
    // Kills still waiting for a respawn: the respawn watcher has stopped, so look now.
    let resolve_pending = |last: &BTreeMap<String, i32>| -> u64 {
        let pending = std::mem::take(&mut *books.pending.lock().expect("books"));
        let mut missed = 0u64;
        for (name, (killed, sent)) in pending {
            match last.get(&name) {
                Some(&pid) if pid != killed && sent.elapsed() < RESPAWN_DEADLINE => {
                    let ms = u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX);
                    books.latencies.lock().expect("books").push(ms);
                }
                Some(&pid) if pid != killed => {
                    books
                        .latencies
                        .lock()
                        .expect("books")
                        .push(u64::try_from(RESPAWN_DEADLINE.as_millis()).expect("fits"));
                    missed += 1;
                }
                _ => missed += 1,
            }
        }
        missed
    };

    // A warm-up phase first: the starting level of descriptors and memory is taken once
    // vigild has been through every kind of event (allocator arenas, buffers at size).
    let warmup = (secs / 4).clamp(5, 15);
    phase(warmup);
    let mut missed = resolve_pending(&settle());
    let fds_start = fd_count(vigild);
    let rss_start = rss_kib(vigild);
    println!(
        "chaos: start: vigild fds={fds_cold} rss anon/file={}/{} KiB cold, after a {warmup} s warm-up fds={fds_start} rss anon/file={}/{} KiB threads={}",
        rss_cold.0,
        rss_cold.1,
        rss_start.0,
        rss_start.1,
        threads(vigild)
    );
    phase(secs);
    missed += resolve_pending(&settle());
    let mut zombie_list = Vec::new();
    let reaped = try_wait_until(Duration::from_secs(10), || {
        zombie_list = zombies(vigild);
        zombie_list.is_empty()
    });
    assert!(reaped, "vigild left zombies: {zombie_list:?}\n{}", daemon.diagnostics());
    let mut problems_early = Vec::new();
    let mut fds_end = 0;
    let fds_back = try_wait_until(Duration::from_secs(20), || {
        fds_end = fd_count(vigild);
        fds_end <= fds_start + FD_TOLERANCE
    });
    let rss_end = rss_kib(vigild);
    // Per program at most: stdin, stdout and stderr pipes, and two log files.
    let programs = present.lock().expect("present").len() + FULL_PROGRAMS;
    let program_end = program_fds(vigild);
    if program_end > 5 * programs {
        problems_early.push(format!(
            "vigild holds {program_end} pipes and log files for {programs} programs"
        ));
    }
    println!(
        "chaos: end: vigild fds={fds_end} rss anon/file={}/{} KiB threads={}",
        rss_end.0,
        rss_end.1,
        threads(vigild)
    );
    // Checked after the figures are printed, so a failing run still reports them.
    let mut problems = problems_early;
    if !fds_back {
        let open: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{vigild}/fd"))
            .map(|d| d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).collect())
            .unwrap_or_default();
        problems.push(format!(
            "vigild holds {fds_end} descriptors, started with {fds_start}: {open:?}"
        ));
    }
    // What vigild may still allocate by design after the warm-up: every program's tail
    // ring filling up to its capacity (one logged channel each), and allocator slack.
    let rings = (programs * TAIL_RING_KIB) as u64;
    let rss_limit = rss_start.0 + rings + (rss_start.0 / 4).max(8 * 1024);
    if rss_end.0 > rss_limit {
        problems.push(format!(
            "vigild's anonymous RSS {} KiB, started at {} (limit {rss_limit}: + {rings} KiB of \
             tail rings + slack)",
            rss_end.0, rss_start.0
        ));
    }

    // The programs on the full disk logged again once it had room.
    if tmpfs.is_some() {
        let sizes = |dir: &Path| -> Vec<u64> {
            (0..FULL_PROGRAMS)
                .map(|i| {
                    let name = full_name(i);
                    let size =
                        |file: String| std::fs::metadata(dir.join(file)).map_or(0, |m| m.len());
                    size(format!("{name}.out")) + size(format!("{name}.out.1"))
                })
                .collect()
        };
        let before = sizes(&full_dir);
        wait_until(TIMEOUT, "the programs on the freed disk log again", || {
            sizes(&full_dir).iter().zip(&before).all(|(now, then)| now != then)
        });
    }

    let mut daemon = daemon;
    let output = daemon.ctl(&["shutdown"]);
    assert_eq!(output.code, 0, "shutdown: {output:#?}");
    daemon.wait_exit(TIMEOUT * 2);
    let leftover: Vec<_> = daemon.remaining_descendants();
    assert!(leftover.is_empty(), "processes left after shutdown: {leftover:?}");

    let (mut lines, mut interleaved) = (0, 0);
    for i in 0..DISK_PROGRAMS {
        match check_numbered(&sandbox.stdout_log(&disk_name(i))) {
            Ok((count, late)) => {
                lines += count;
                interleaved += late;
            }
            Err(problem) => problems.push(problem),
        }
    }
    drop(tmpfs);
    problems.extend(books.hangs.lock().expect("hangs").iter().cloned());
    problems.extend(books.duplicates.lock().expect("books").iter().cloned());
    if missed > 0 {
        problems.push(format!(
            "{missed} killed programs did not come back within {RESPAWN_DEADLINE:?}"
        ));
    }
    let latencies = {
        let mut l = books.latencies.lock().expect("books").clone();
        l.sort_unstable();
        l
    };
    let percentile = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().max(1) - 1))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "chaos: seed={seed} secs={secs} kills={} restarts_done={} missed={missed} dropped_by_update={} \
         respawn_ms p50={} p99={} max={} updates={} (failed {}) restart_all={} sighup={} sigusr2={} \
         clients={} disk_fills={} log_lines_checked={lines} late_lines={interleaved} fds {fds_cold}/{fds_start}->{fds_end} \
         rss_anon_kib {}/{}->{} zombies=0 leftovers=0 problems={}",
        books.kills.load(Ordering::Relaxed),
        latencies.len(),
        books.dropped.load(Ordering::Relaxed),
        percentile(50),
        percentile(99),
        latencies.last().copied().unwrap_or(0),
        books.updates.load(Ordering::Relaxed),
        books.updates_failed.load(Ordering::Relaxed),
        books.restart_alls.load(Ordering::Relaxed),
        books.sighups.load(Ordering::Relaxed),
        books.sigusr2s.load(Ordering::Relaxed),
        books.clients.load(Ordering::Relaxed),
        books.fills.load(Ordering::Relaxed),
        rss_cold.0,
        rss_start.0,
        rss_end.0,
        problems.len(),
    );
    assert!(problems.is_empty(), "{problems:#?}");
}
