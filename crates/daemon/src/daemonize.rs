//! Process-level setup that must happen before the tokio runtime exists:
//! privilege drop (`user=`), resource limits (`minfds`/`minprocs`), cleanup of
//! old AUTO child logs, detaching from the terminal, and the pidfile.
//!
//! Detaching forks, and forking a multithreaded process leaves the child with
//! only the forking thread and whatever locks the others held, so
//! [`daemonize`] refuses to run unless the process has exactly one thread: it
//! must be called before the runtime (or anything else that starts threads).
//!
//! Unlike supervisord, whose parent exits as soon as it has forked, the
//! original process waits on a pipe until the daemon reports that it is serving
//! (or why it failed), so `vigild && vigilctl status` works and startup errors
//! reach the terminal with their exit status.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{ForkResult, Gid, Uid, User};
use vigil_config::UserSpec;

/// Why daemonizing failed; the process is still attached when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum DaemonizeError {
    /// `fork` would keep only the calling thread: the process must still be
    /// single-threaded (the count it has).
    #[error("cannot daemonize a process that already runs {0} threads")]
    Multithreaded(usize),
    /// A system call failed.
    #[error("cannot daemonize: {action} failed: {source}")]
    Os {
        /// What was being done (`fork`, `setsid`, ...).
        action: &'static str,
        /// The system's error.
        source: io::Error,
    },
}

fn os(action: &'static str) -> impl FnOnce(nix::Error) -> DaemonizeError {
    move |errno| DaemonizeError::Os { action, source: errno.into() }
}

/// Number of threads of this process (Linux `/proc/self/task`).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The daemon's end of the startup pipe: tells the waiting parent how startup ended.
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<File>,
}

/// The first byte the daemon sends when it is serving.
const READY: u8 = 0;

impl Readiness {
    /// A no-op readiness for the foreground (`nodaemon`) case.
    pub fn foreground() -> Readiness {
        Readiness { pipe: None }
    }

    /// Startup finished: the parent exits 0.
    pub fn ready(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            // The parent may have been killed meanwhile; nothing to do then.
            let _ = pipe.write_all(&[READY]);
        }
    }

    /// Startup failed: the parent prints `message` on stderr and exits `code`.
    pub fn failed(mut self, code: u8, message: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            let code = if code == READY { 1 } else { code };
            let _ = pipe.write_all(&[code]).and_then(|()| pipe.write_all(message.as_bytes()));
        }
    }
}

/// Detaches from the terminal: fork (the original process waits for the
/// daemon's readiness and exits with its status), `setsid`, fork again (so the
/// daemon is not a session leader and can never reacquire a terminal), chdir to
/// `directory`, set `umask`, and point fds 0-2 at /dev/null. Returns in the
/// daemon only.
pub fn daemonize(directory: Option<&Path>, umask: u32) -> Result<Readiness, DaemonizeError> {
    let threads = thread_count()
        .map_err(|source| DaemonizeError::Os { action: "counting threads", source })?;
    if threads != 1 {
        return Err(DaemonizeError::Multithreaded(threads));
    }
    // Check the directory before forking so the error reaches the terminal.
    if let Some(directory) = directory {
        std::fs::metadata(directory)
            .map_err(|source| DaemonizeError::Os { action: "chdir", source })?;
    }
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(os("pipe"))?;
    // Flush what the parent printed so the children don't print it again.
    let _ = io::stdout().flush();
    // SAFETY: the process is single-threaded (checked above), so the child's
    // copy of the address space has no lock held by a vanished thread.
    match unsafe { nix::unistd::fork() }.map_err(os("fork"))? {
        ForkResult::Parent { .. } => {
            drop(write_end);
            wait_for_daemon(read_end)
        }
        ForkResult::Child => {
            drop(read_end);
            nix::unistd::setsid().map_err(os("setsid"))?;
            // SAFETY: still single-threaded: fork copies only the calling thread.
            match unsafe { nix::unistd::fork() }.map_err(os("fork"))? {
                // SAFETY: _exit skips atexit handlers and stdio flushing, which
                // belong to the original process, not this intermediate one.
                ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
                ForkResult::Child => {}
            }
            if let Some(directory) = directory {
                std::env::set_current_dir(directory)
                    .map_err(|source| DaemonizeError::Os { action: "chdir", source })?;
            }
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
            redirect_stdio_to_null()?;
            Ok(Readiness { pipe: Some(File::from(write_end)) })
        }
    }
}

/// In the original process: waits for the daemon's report and exits.
fn wait_for_daemon(read_end: OwnedFd) -> ! {
    let mut report = Vec::new();
    let _ = File::from(read_end).read_to_end(&mut report);
    let code = match report.split_first() {
        Some((&READY, _)) => 0,
        Some((&code, message)) => {
            let _ = writeln!(io::stderr(), "{}", String::from_utf8_lossy(message));
            i32::from(code)
        }
        None => {
            let _ =
                writeln!(io::stderr(), "Error: vigild exited during startup; see its activity log");
            1
        }
    };
    // SAFETY: plain process exit; skipping atexit handlers is what we want here
    // (nothing of the daemon's state belongs to this process).
    unsafe { libc::_exit(code) }
}

fn redirect_stdio_to_null() -> Result<(), DaemonizeError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| DaemonizeError::Os { action: "open /dev/null", source })?;
    for target in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open throughout.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(DaemonizeError::Os { action: "dup2", source: io::Error::last_os_error() });
        }
    }
    Ok(())
}

/// The pidfile: `<pid>\n`, written after daemonizing.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    /// Writes this process's pid atomically (temp file + rename), so a reader
    /// never sees a partial file.
    pub fn write(path: &Path) -> io::Result<Pidfile> {
        let pid = std::process::id();
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        std::fs::write(&temp, format!("{pid}\n"))?;
        if let Err(err) = std::fs::rename(&temp, path) {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        Ok(Pidfile { path: path.to_owned(), pid })
    }

    /// The pidfile at `path` as this process would have written it, to
    /// [`Pidfile::remove`] one an earlier image of this daemon wrote.
    pub fn existing(path: &Path) -> Pidfile {
        Pidfile { path: path.to_owned(), pid: std::process::id() }
    }

    /// Where the pidfile is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the pidfile if it still holds our pid (a successor may have
    /// replaced it). Returns whether it did.
    pub fn remove(&self) -> io::Result<bool> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim() == self.pid.to_string() => {
                std::fs::remove_file(&self.path)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// What [`drop_privileges`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileges {
    /// Nothing to do (no `user=` as non-root, or already that user).
    Unchanged,
    /// Switched to the user.
    Dropped,
    /// Running as root with no `user=`: the caller logs supervisord's CRIT line.
    RootWithoutUser,
}

/// supervisord's CRIT line for [`Privileges::RootWithoutUser`].
pub const ROOT_WITHOUT_USER: &str = "Supervisor is running as root.  Privileges were not dropped because no user is specified in the config file.  If you intend to run as root, you can set user=root in the config file to avoid this message.";

/// `user=`: `initgroups`, `setgid`, `setuid`, with supervisord's error texts.
pub fn drop_privileges(user: Option<&UserSpec>) -> Result<Privileges, String> {
    let current = nix::unistd::getuid();
    let Some(user) = user else {
        return Ok(if current.is_root() {
            Privileges::RootWithoutUser
        } else {
            Privileges::Unchanged
        });
    };
    if current.as_raw() == user.uid {
        return Ok(Privileges::Unchanged);
    }
    if !current.is_root() {
        return Err("Can't drop privilege as nonroot user".to_owned());
    }
    let gid = Gid::from_raw(user.gid);
    // initgroups needs the account name; `user=` may have been a numeric uid.
    let name = User::from_uid(Uid::from_raw(user.uid))
        .ok()
        .flatten()
        .map_or_else(|| user.name.clone(), |entry| entry.name);
    let groups = match CString::new(name) {
        Ok(c_name) => nix::unistd::initgroups(&c_name, gid),
        Err(_) => nix::unistd::setgroups(&[gid]),
    };
    groups.map_err(|_| "Could not set groups of effective user".to_owned())?;
    nix::unistd::setgid(gid).map_err(|_| "Could not set group id of effective user".to_owned())?;
    nix::unistd::setuid(Uid::from_raw(user.uid))
        .map_err(|_| "Could not set user id of effective user".to_owned())?;
    Ok(Privileges::Dropped)
}

/// `user=` for the next image of a live upgrade, which keeps the daemon's
/// user: its children, logs and sockets belong to that user, and a switch in
/// the middle of running them (or a refused one, as non-root) would leave the
/// programs without a supervisor that may signal them. A `user=` the file
/// changed is reported, to apply at the next start; the second value says so.
pub fn keep_privileges(user: Option<&UserSpec>) -> (Privileges, Option<String>) {
    let current = nix::unistd::getuid();
    match user {
        Some(user) if user.uid != current.as_raw() => (
            Privileges::Unchanged,
            Some(format!(
                "user={} is not applied by a live upgrade: vigild goes on as uid {current} until it is restarted",
                user.name
            )),
        ),
        // Already that user, or none asked for: nothing changes.
        _ => (drop_privileges(user).unwrap_or(Privileges::Unchanged), None),
    }
}

/// The two limits supervisord checks at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `minfds`: RLIMIT_NOFILE.
    Files,
    /// `minprocs`: RLIMIT_NPROC.
    Processes,
}

impl Limit {
    fn resource(self) -> Resource {
        match self {
            Limit::Files => Resource::RLIMIT_NOFILE,
            Limit::Processes => Resource::RLIMIT_NPROC,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Limit::Files => "RLIMIT_NOFILE",
            Limit::Processes => "RLIMIT_NPROC",
        }
    }

    fn error(self, minimum: u64, hard: u64) -> String {
        match self {
            Limit::Files => format!(
                "The minimum number of file descriptors required to run this process is {minimum} as per the \"minfds\" command-line argument or config file setting. The current environment will only allow you to open {hard} file descriptors.  Either raise the number of usable file descriptors in your environment or lower the minfds setting in the config file to allow the process to start."
            ),
            Limit::Processes => format!(
                "The minimum number of available processes required to run this program is {minimum} as per the \"minprocs\" command-line argument or config file setting. The current environment will only allow you to open {hard} processes.  Either raise the number of usable processes in your environment or lower the minprocs setting in the config file to allow the program to start."
            ),
        }
    }
}

/// What to do about one limit: nothing, or set (soft, hard).
pub fn plan_limit(soft: u64, hard: u64, minimum: u64) -> Option<(u64, u64)> {
    let infinity = libc::RLIM_INFINITY;
    if soft == infinity || soft >= minimum {
        return None;
    }
    // Raising the hard limit only works as root; try it anyway, like supervisord.
    let new_hard = if hard == infinity || hard >= minimum { hard } else { minimum };
    Some((minimum, new_hard))
}

/// Ensures the soft limit is at least `minimum`, raising it when allowed.
/// Returns an info line to log when it raised the limit, or supervisord's error.
pub fn ensure_limit(limit: Limit, minimum: u64) -> Result<Option<String>, String> {
    let (soft, hard) =
        getrlimit(limit.resource()).map_err(|e| format!("getrlimit({}): {e}", limit.name()))?;
    let Some((new_soft, new_hard)) = plan_limit(soft, hard, minimum) else {
        return Ok(None);
    };
    setrlimit(limit.resource(), new_soft, new_hard).map_err(|_| limit.error(minimum, hard))?;
    Ok(Some(format!("Increased {} limit to {minimum}", limit.name())))
}

/// Raises the daemon's own RLIMIT_NOFILE as far as it may: the soft limit to
/// the hard one, and as root the hard limit to the kernel's `fs.nr_open`. Every
/// supervised program holds up to six descriptors (three pipes, two log files,
/// a pidfd while descriptors are plentiful), so
/// the 1,024 or 20,000 a shell hands out caps a supervisor at a few hundred or
/// a few thousand programs. Returns the limit before the change, for children
/// to start with, or `None` if nothing changed. The control sockets size their
/// share of descriptors from the raised limit (see [`crate::listen`]'s
/// "Limits"), so this must run before they serve.
pub fn raise_file_limit() -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let wanted_hard = match nr_open {
        Some(ceiling) if Uid::effective().is_root() => hard.max(ceiling),
        _ => hard,
    };
    for target in [wanted_hard, hard] {
        if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
            return Some((soft, hard));
        }
    }
    None
}

/// Descriptors a supervised program may hold in the daemon: three pipes, a
/// pidfd and two log files (see [`raise_file_limit`]).
pub const DESCRIPTORS_PER_PROGRAM: usize = 6;

/// Grows the descriptor table to hold `wanted` descriptors (within the soft
/// RLIMIT_NOFILE) at once, by taking a descriptor that high and closing it.
///
/// The kernel grows a process's table by doubling, and while the table is
/// shared (by any second thread) each growth waits for an RCU grace period,
/// 8 - 16 ms here, during which every thread that opens a descriptor waits
/// too. A spawn storm of 500 programs crossed five such growths, leaving both
/// cores idle for about 60 ms of its 300. Done while the process has one
/// thread, the growth does not wait at all; the table never shrinks, and is no
/// larger than the programs' descriptors would have made it. Returns the
/// table's size afterwards (at least `wanted`), or `None` if the descriptor
/// could not be taken (the table then grows as before).
pub fn size_descriptor_table(wanted: usize) -> Option<usize> {
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let highest = wanted.min(usize::try_from(soft).unwrap_or(usize::MAX)).checked_sub(1)?;
    let highest = libc::c_int::try_from(highest).ok()?;
    // Any open descriptor serves to duplicate; the copy is the lowest free
    // one at or above `highest`, so the table must reach it.
    let null = File::open("/dev/null").ok()?;
    let taken = nix::fcntl::fcntl(&null, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(highest)).ok()?;
    let size = usize::try_from(taken).ok()? + 1;
    // SAFETY: `taken` was just returned by F_DUPFD and nothing else knows it.
    drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(taken) });
    Some(size)
}

/// Whether `name` is an AUTO child log of the daemon `identifier`: supervisord's
/// `.+?---<identifier>-\S+\.log\.{0,1}\d{0,4}` matched at the start of the name.
pub fn is_auto_log_name(name: &str, identifier: &str) -> bool {
    let needle = format!("---{identifier}-");
    name.match_indices(&needle).any(|(at, _)| {
        if at == 0 {
            return false;
        }
        let tail = &name[at + needle.len()..];
        tail.match_indices(".log")
            .any(|(dot, _)| dot > 0 && !tail[..dot].chars().any(char::is_whitespace))
    })
}

/// The outcome of [`cleanup_auto_logs`].
#[derive(Debug, Default)]
pub struct Cleanup {
    /// The old AUTO logs deleted.
    pub removed: Vec<PathBuf>,
    /// The ones that could not be, with why.
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Deletes old AUTO child logs of `identifier` in `childlogdir` (skipped when
/// `nocleanup`). A file that cannot be removed is reported, not fatal.
pub fn cleanup_auto_logs(childlogdir: &Path, identifier: &str) -> io::Result<Cleanup> {
    let mut cleanup = Cleanup::default();
    for entry in std::fs::read_dir(childlogdir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !is_auto_log_name(&name, identifier) || !entry.file_type()?.is_file() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => cleanup.removed.push(path),
            Err(err) => cleanup.failed.push((path, err)),
        }
    }
    cleanup.removed.sort();
    Ok(cleanup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_log_names() {
        let id = "supervisor";
        assert!(is_auto_log_name("app-stdout---supervisor-x1y2z3.log", id));
        assert!(is_auto_log_name("app-stderr---supervisor-abc.log.1", id));
        assert!(is_auto_log_name("app-stdout---supervisor-abc.log.12", id));
        assert!(!is_auto_log_name("---supervisor-abc.log", id), "needs a name before");
        assert!(!is_auto_log_name("app-stdout---other-abc.log", id));
        assert!(!is_auto_log_name("app-stdout---supervisor-.log", id), "needs a suffix");
        assert!(!is_auto_log_name("app-stdout---supervisor-a b.log", id));
        assert!(!is_auto_log_name("app.log", id));
    }

    #[test]
    fn cleanup_removes_only_matching_files() {
        let dir = tempfile::tempdir().unwrap();
        let keep = ["app.log", "app-stdout---other-1.log", "notes.txt"];
        let gone = ["a-stdout---box-1.log", "a-stderr---box-2.log.3"];
        for name in keep.iter().chain(&gone) {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d-stdout---box-9.log")).unwrap();
        let cleanup = cleanup_auto_logs(dir.path(), "box").unwrap();
        let mut expected: Vec<_> = gone.iter().map(|n| dir.path().join(n)).collect();
        expected.sort();
        assert_eq!(cleanup.removed, expected);
        assert!(cleanup.failed.is_empty());
        for name in keep {
            assert!(dir.path().join(name).exists(), "{name} kept");
        }
        assert!(dir.path().join("d-stdout---box-9.log").is_dir(), "directories kept");
    }

    #[test]
    fn limit_plans() {
        let inf = libc::RLIM_INFINITY;
        assert_eq!(plan_limit(1024, 4096, 1024), None);
        assert_eq!(plan_limit(inf, inf, 1 << 20), None);
        assert_eq!(plan_limit(256, 4096, 1024), Some((1024, 4096)));
        assert_eq!(plan_limit(256, 512, 1024), Some((1024, 1024)));
        assert_eq!(plan_limit(256, inf, 1024), Some((1024, inf)));
    }

    #[test]
    fn satisfied_limit_changes_nothing() {
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(ensure_limit(Limit::Files, soft.min(64)), Ok(None));
        let message = Limit::Files.error(100_000, 4096);
        assert!(message.contains("100000") && message.contains("minfds"), "{message}");
    }

    /// The kernel's `FDSize` of this process: the descriptor table's size.
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|line| line.strip_prefix("FDSize:")).unwrap();
        line.trim().parse().unwrap()
    }

    #[test]
    fn descriptor_table_is_grown_and_left_empty() {
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        // Within the limit and above what the test process holds.
        let wanted = soft.min(3_000);
        assert!(wanted > 256, "RLIMIT_NOFILE {soft} is too low for this test");
        let size = size_descriptor_table(wanted).expect("a descriptor at the top");
        assert_eq!(size, wanted, "the descriptor taken was the highest wanted");
        assert!(table_size() >= wanted, "FDSize {} < {wanted}", table_size());
        let top = libc::c_int::try_from(size - 1).unwrap();
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        assert_eq!(unsafe { libc::fcntl(top, libc::F_GETFD) }, -1, "the descriptor was closed");
        // More than the limit allows is capped at the limit (checked where
        // the limit is small enough for this process to take its whole table).
        if soft <= 1 << 16 {
            let capped = size_descriptor_table(usize::MAX).expect("a descriptor under the limit");
            assert!(capped <= soft, "{capped} > {soft}");
        }
        assert_eq!(size_descriptor_table(0), None, "nothing to grow to");
    }

    #[test]
    fn same_user_is_a_no_op() {
        let uid = nix::unistd::getuid().as_raw();
        let user = UserSpec { name: uid.to_string(), uid, gid: nix::unistd::getgid().as_raw() };
        assert_eq!(drop_privileges(Some(&user)), Ok(Privileges::Unchanged));
        let expected = if nix::unistd::getuid().is_root() {
            Privileges::RootWithoutUser
        } else {
            Privileges::Unchanged
        };
        assert_eq!(drop_privileges(None), Ok(expected));
    }

    #[test]
    fn pidfile_written_and_removed_only_if_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigild.pid");
        let pidfile = Pidfile::write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        assert!(pidfile.remove().unwrap());
        assert!(!path.exists());
        let pidfile = Pidfile::write(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        assert!(!pidfile.remove().unwrap(), "a successor's pidfile is left alone");
        assert!(path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn daemonize_refuses_a_multithreaded_process_without_forking() {
        // Keep a second thread alive for sure (the harness may run this test on
        // the main thread); daemonize must refuse before any fork.
        let (release, parked) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || parked.recv());
        let err = daemonize(None, 0o022).unwrap_err();
        assert!(matches!(err, DaemonizeError::Multithreaded(n) if n >= 2), "{err:?}");
        release.send(()).unwrap();
        helper.join().unwrap().unwrap();
    }
}
