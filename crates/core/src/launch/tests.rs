use std::fs;

use super::*;
use crate::spawn::resolve_command;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn privilege_drop_rules() {
    assert!(privilege_drop(None).unwrap().is_none());
    let me = nix::unistd::getuid().as_raw();
    let same = SpawnUser { uid: me, gid: 0, groups: vec![] };
    assert!(privilege_drop(Some(&same)).unwrap().is_none());
    if me != 0 {
        let other = SpawnUser { uid: me + 1, gid: 0, groups: vec![] };
        let err = privilege_drop(Some(&other)).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!("couldn't setuid to {}: Can't drop privilege as nonroot user", me + 1)
        );
    }
}

#[test]
fn proc_scan_marks_descriptors_cloexec() {
    use std::os::fd::AsRawFd;
    // dup() gives a descriptor without FD_CLOEXEC, as an inheritable leak would be.
    let fd = nix::unistd::dup(std::io::stderr()).unwrap();
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFD only reads the flags of an fd we own.
    let flags = || unsafe { libc::fcntl(raw, libc::F_GETFD) };
    assert_eq!(flags() & libc::FD_CLOEXEC, 0);
    assert!(mark_cloexec_from_proc(raw));
    assert_ne!(flags() & libc::FD_CLOEXEC, 0);
}

/// Minor page faults of the calling thread so far.
fn thread_minor_faults() -> i64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) }, 0);
    usage.ru_minflt
}

/// A spawn must not copy (and write-protect) the daemon's address space, which is
/// what made its cost grow with the daemon's memory. A fork write-protects every
/// private page the parent touched, so the parent's next write to each page faults;
/// with the shared-memory spawn it does not. Counting those faults needs no timing.
#[tokio::test]
async fn spawning_does_not_copy_the_parents_memory() {
    const PAGES: usize = 8192;
    let reaper = crate::reaper::Reaper::start(false).unwrap();
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let len = PAGES * page;
    // SAFETY: a fresh private anonymous mapping, unmapped at the end of the test.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    // Small pages, so a fork would write-protect PAGES entries rather than a few
    // huge ones. The test still discriminates if the advice is refused.
    // SAFETY: advice on our own mapping.
    unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    let bytes = base.cast::<u8>();
    let touch = |value: u8| {
        for index in 0..PAGES {
            // SAFETY: within the mapping.
            unsafe { bytes.add(index * page).write_volatile(value) };
        }
    };
    touch(1);

    let argv = resolve_command(&argv(&["true"]), None).unwrap();
    let mut spawned = reaper.spawn(&SpawnSpec::new(argv)).unwrap();
    // No await between the two counts: nothing else runs on this thread.
    let before = thread_minor_faults();
    touch(2);
    let faults = thread_minor_faults() - before;
    assert!(faults < (PAGES / 8) as i64, "{faults} write faults on {PAGES} touched pages");

    let status = tokio::time::timeout(std::time::Duration::from_secs(60), &mut spawned.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, crate::exit::ExitStatus::Code(0));
    // SAFETY: unmaps the mapping made above; `bytes` is not used after this.
    unsafe { libc::munmap(base, len) };
}

/// A script without `#!` fails exec with ENOEXEC; like glibc's execvp (which std
/// used before), the spawn runs it with /bin/sh, arguments intact.
#[tokio::test]
async fn script_without_interpreter_line_runs_under_sh() {
    let reaper = crate::reaper::Reaper::start(false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bare");
    // Written by a shell of its own: a descriptor this process held open for
    // writing could be in the table of a child another test is starting at
    // that moment, and exec refuses a file open for writing (ETXTBSY).
    let write = "printf 'exit \"$1\"\\n' > \"$0\" && chmod 755 \"$0\"";
    let mut writer = reaper
        .spawn(&SpawnSpec::new(argv(&["/bin/sh", "-c", write, script.to_str().unwrap()])))
        .unwrap();
    let written = tokio::time::timeout(std::time::Duration::from_secs(60), &mut writer.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written, crate::exit::ExitStatus::Code(0));
    assert_eq!(fs::read_to_string(&script).unwrap(), "exit \"$1\"\n");
    let mut spawned =
        reaper.spawn(&SpawnSpec::new(argv(&[script.to_str().unwrap(), "9"]))).unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), &mut spawned.exit)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, crate::exit::ExitStatus::Code(9));
}

/// Extra descriptors for the test process to hold while a child starts, half of
/// them inheritable (no FD_CLOEXEC), as a daemon's leaked descriptor would be.
fn open_extra_fds(wanted: usize) -> Vec<std::os::fd::OwnedFd> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Room for these plus what concurrent tests hold; raising is harmless.
    let needed = wanted as u64 + 512;
    if soft < needed && soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, needed.min(hard), hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let count = wanted.min(usize::try_from(soft).unwrap().saturating_sub(512));
    assert!(count >= 500, "RLIMIT_NOFILE {soft} leaves too few descriptors for this test");
    let null = fs::File::open("/dev/null").unwrap();
    (0..count)
        .map(|index| {
            if index % 2 == 0 {
                nix::unistd::dup(&null).unwrap()
            } else {
                std::os::fd::OwnedFd::from(null.try_clone().unwrap())
            }
        })
        .collect()
}

/// Kills a test's child by pid if the test fails before it is reaped.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Spawns `spec` on the path `table` picks, through the reaper like production.
fn spawn_with(
    spec: &SpawnSpec,
    table: TestTable,
) -> Result<(crate::reaper::Spawned, FdTable), SpawnError> {
    let reaper = crate::reaper::Reaper::start(false).unwrap();
    let mut prepared = Prepared::new(spec)?;
    prepared.test_table = table;
    reaper.spawn_prepared(prepared)
}

/// Reads a pipe to EOF, which comes only once no process or slot holds its write end.
async fn read_to_eof(pipe: Option<tokio::net::unix::pipe::Receiver>) -> String {
    use tokio::io::AsyncReadExt;
    let mut pipe = pipe.expect("a piped stream");
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), pipe.read_to_end(&mut out))
        .await
        .expect("EOF within a minute")
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Runs `ls -l /proc/self/fd` as the child while the parent holds 2,000 extra
/// descriptors and returns the descriptors ls saw, each with its target.
async fn descriptors_seen_by_child(table: TestTable) -> (Vec<(u32, String)>, FdTable) {
    // The reaper reserves the slots when it starts, as the daemon's does before it
    // opens its programs' pipes: below every extra descriptor.
    crate::reaper::Reaper::start(false).unwrap();
    for launcher in launchers() {
        if let SharedTable::Ready(slots) =
            &launcher.lock().unwrap_or_else(PoisonError::into_inner).table
        {
            // A shared-table child copies only the descriptors below `end`.
            assert!(slots.end <= 256, "slots end at {}: not reserved early", slots.end);
        }
    }
    let extra = open_extra_fds(2000);
    let argv = resolve_command(&argv(&["ls", "-l", "/proc/self/fd"]), None).unwrap();
    let mut spec = SpawnSpec::new(argv);
    spec.env = [("LC_ALL".to_owned(), "C".to_owned())].into_iter().collect();
    let (mut spawned, used) = spawn_with(&spec, table).unwrap();
    let mut guard = KillOnDrop(Some(spawned.pid));
    let stdout = read_to_eof(spawned.stdout.take()).await;
    let stderr = read_to_eof(spawned.stderr.take()).await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), &mut spawned.exit)
        .await
        .unwrap()
        .unwrap();
    guard.0 = None;
    drop(extra);
    assert_eq!(status, crate::exit::ExitStatus::Code(0), "ls failed: {stderr}");
    let seen = stdout
        .lines()
        .filter_map(|line| {
            // `lr-x------ 1 user group 64 Nov 24 09:09 3 -> /proc/123/fd`
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.rsplit(' ').next()?.parse().ok()?;
            Some((fd, target.to_owned()))
        })
        .collect();
    (seen, used)
}

/// The child must hold exactly stdin, stdout and stderr at exec, whatever the
/// daemon holds: ls then sees those three plus its own directory handle, which
/// takes the lowest free number, 3.
fn assert_only_stdio(seen: &[(u32, String)]) {
    let fds: Vec<u32> = seen.iter().map(|(fd, _)| *fd).collect();
    assert_eq!(fds, [0, 1, 2, 3], "descriptors at exec: {seen:?}");
    assert_eq!(seen[0].1, "/dev/null");
    assert!(seen[1].1.starts_with("pipe:"), "{seen:?}");
    assert!(seen[2].1.starts_with("pipe:"), "{seen:?}");
    assert_ne!(seen[1].1, seen[2].1, "stdout and stderr are separate pipes");
    assert!(seen[3].1.ends_with("/fd"), "3 is ls's own directory: {seen:?}");
}

#[tokio::test]
async fn shared_table_child_holds_only_stdio_at_exec() {
    let (seen, used) = descriptors_seen_by_child(TestTable::Normal).await;
    assert_eq!(used, FdTable::Shared);
    assert_only_stdio(&seen);
}

#[tokio::test]
async fn copied_table_child_holds_only_stdio_at_exec() {
    let (seen, used) = descriptors_seen_by_child(TestTable::ForceCopied).await;
    assert_eq!(used, FdTable::Copied { refused: None });
    assert_only_stdio(&seen);
}

/// A kernel that refuses `CLOSE_RANGE_UNSHARE` costs one short-lived child, which
/// is reaped, and the spawn succeeds on the copied path.
#[tokio::test]
async fn refused_unshare_retries_with_a_copied_table() {
    let (seen, used) = descriptors_seen_by_child(TestTable::RefuseUnshare).await;
    let FdTable::Copied { refused: Some(refused) } = used else {
        panic!("expected a refused first attempt, got {used:?}");
    };
    assert_only_stdio(&seen);
    // Reaped under the reaper's lock before the spawn returned.
    let mut raw = 0;
    // SAFETY: waitpid writes into a local; WNOHANG never blocks.
    let got = unsafe { libc::waitpid(refused as i32, &mut raw, libc::WNOHANG) };
    assert_eq!((got, Errno::last()), (-1, Errno::ECHILD), "refused child {refused} not reaped");
}

#[test]
fn only_lasting_refusals_switch_the_shared_table_off() {
    let mut table = SharedTable::Untried;
    table.reserve();
    let SharedTable::Ready(slots) = &table else { panic!("slots not reserved") };
    assert!(slots.raw().iter().all(|&fd| fd > 2 && fd < slots.end));
    table.refused(Errno::ENOMEM);
    assert!(matches!(table, SharedTable::Ready(_)), "a resource shortage is transient");
    table.refused(Errno::ENOSYS);
    assert!(matches!(table, SharedTable::Off));
    // Off stays off: no new reservation.
    table.reserve();
    assert!(matches!(table, SharedTable::Off));
}

/// Separate stdout and stderr pipes, and a merged one, each reach EOF when the
/// child exits: no slot keeps a write end alive in the daemon.
#[tokio::test]
async fn pipes_reach_eof_when_the_child_exits() {
    for table in [TestTable::Normal, TestTable::ForceCopied] {
        for redirect_stderr in [false, true] {
            let mut spec = SpawnSpec::new(argv(&["/bin/sh", "-c", "echo out; echo err >&2"]));
            spec.redirect_stderr = redirect_stderr;
            let (mut spawned, _) = spawn_with(&spec, table).unwrap();
            let mut guard = KillOnDrop(Some(spawned.pid));
            let stdout = read_to_eof(spawned.stdout.take()).await;
            if redirect_stderr {
                assert_eq!(stdout, "out\nerr\n", "{table:?}");
                assert!(spawned.stderr.is_none());
            } else {
                assert_eq!(stdout, "out\n", "{table:?}");
                assert_eq!(read_to_eof(spawned.stderr.take()).await, "err\n", "{table:?}");
            }
            let status =
                tokio::time::timeout(std::time::Duration::from_secs(60), &mut spawned.exit)
                    .await
                    .unwrap()
                    .unwrap();
            guard.0 = None;
            assert_eq!(status, crate::exit::ExitStatus::Code(0));
        }
    }
}

#[tokio::test]
async fn exec_and_chdir_failures_keep_their_texts_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for table in [TestTable::Normal, TestTable::ForceCopied, TestTable::RefuseUnshare] {
        let spec = SpawnSpec::new(argv(&[missing.to_str().unwrap()]));
        let err = spawn_with(&spec, table).expect_err("exec fails");
        assert_eq!(err.to_string(), format!("couldn't exec {}: ENOENT", missing.display()));

        let mut spec = SpawnSpec::new(argv(&["/bin/sh", "-c", "exit 0"]));
        spec.cwd = Some(missing.clone());
        let err = spawn_with(&spec, table).expect_err("chdir fails");
        assert_eq!(err.to_string(), format!("couldn't chdir to {}: ENOENT", missing.display()));
    }
}

/// Every spawn runs its child on its launcher's cached stack instead of a
/// fresh mapping: once a launcher has a stack, it keeps that one.
#[tokio::test]
async fn child_stack_is_reused() {
    let stack_bases = || -> Vec<Option<usize>> {
        launchers()
            .iter()
            .map(|launcher| {
                let launcher = launcher.lock().unwrap_or_else(PoisonError::into_inner);
                launcher.stack.as_ref().map(|stack| stack.base as usize)
            })
            .collect()
    };
    let mut before = stack_bases();
    for _ in 0..4 {
        let (mut spawned, _) =
            spawn_with(&SpawnSpec::new(argv(&["/bin/sh", "-c", ":"])), TestTable::Normal).unwrap();
        let _guard = KillOnDrop(Some(spawned.pid));
        let status = tokio::time::timeout(std::time::Duration::from_secs(60), &mut spawned.exit)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, crate::exit::ExitStatus::Code(0));
        let after = stack_bases();
        assert!(after.iter().any(Option::is_some), "a cached stack after a spawn");
        for (old, new) in before.iter().zip(&after) {
            if old.is_some() {
                assert_eq!(old, new, "a launcher's stack was replaced");
            }
        }
        before = after;
    }
}
