//! The clone launcher: turns a [`SpawnSpec`] into a child, doing the exact work
//! the child does between its creation and `execve` in supervisord's order (own
//! process group, stdio, privilege drop, chdir, umask, exec).
//!
//! Every `unsafe` of the spawn path is here. A prepared spawn is launched only
//! by the reaper, inside its spawn gate, which registers the pid before anything
//! can reap it and itself collects a child whose setup or exec failed. Spawns run
//! in parallel, each on a launcher of its own (a child stack and a set of slots). What runs and
//! the error texts are decided before, by the spawn rules (`spawn.rs`).
//!
//! # How the child is created
//!
//! Not with `fork`: forking copies the daemon's page tables, and at exec the child
//! unmaps them again, so the cost of every spawn grows with the daemon's memory
//! (with 5,000 programs most of the daemon's CPU went there). Instead
//! `Prepared::launch` calls `clone(CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD)`:
//! the child shares the daemon's memory and descriptor table, runs on a stack of
//! its own, and the calling thread is suspended until the child has exec'd or
//! exited. glibc's `posix_spawn` does the same without `CLONE_FILES`.
//!
//! Sharing memory is sound because the child never writes any of it except:
//! - its own stack, a mapping with a guard page made once per launcher and reused
//!   by every spawn on it (a launcher serves one spawn at a time, and a child has
//!   left the stack by the time its `clone` returns);
//! - the calling thread's `errno`: the child runs with that thread's TLS, and the
//!   thread is suspended in `clone`, whose success path never reads `errno`.
//!
//! Everything it reads (paths, `argv`/`envp` pointer arrays, groups, fds) is built
//! by `Prepared::new` before the clone and owned by the suspended caller, so no
//! other thread frees or changes it. The child never allocates, locks, or panics
//! (no indexing that can fail, no `expect`), and it uses raw system calls where
//! glibc would consult its per-process thread state: `setgroups`/`setgid`/
//! `setuid` through glibc broadcast the change to every thread glibc knows, which
//! under `CLONE_VM` are the daemon's threads, not the child's. Signals: the caller
//! blocks every signal (glibc's internal ones too) before `clone` and restores its
//! mask afterwards; the child starts with all signals blocked, resets every
//! disposition to `SIG_DFL` (it has its own copy of the handler table, since
//! `CLONE_SIGHAND` is not set) and only then unblocks, so no handler of the daemon
//! (tokio's) can run on the child's stack against the daemon's memory.
//!
//! # Descriptors
//!
//! A child given a copy of the daemon's descriptor table (no `CLONE_FILES`) costs
//! time in proportion to the daemon's open files: the kernel copies the table
//! (taking a reference on every file), and exec closes every copy again. vigild
//! holds about three descriptors per program, so with thousands of programs that
//! dominated each spawn. Instead the child shares the daemon's table, and its
//! first descriptor operation is `close_range(end, ~0U, CLOSE_RANGE_UNSHARE)`,
//! which gives it a private table holding only the descriptors below `end` (the
//! kernel copies nothing above it): a spawn's cost no longer depends on the
//! daemon's descriptors.
//!
//! The child's stdin, stdout, stderr and status pipe must therefore be below
//! `end`. They get there through the launcher's four *slots*: low descriptors
//! reserved once when the reaper starts (before the daemon opens its programs'
//! pipes and logs), each pointing at `/dev/null`, close-on-exec. Holding the
//! launcher, the parent `dup3`s the child's ends onto its slots, clones, and as soon as `clone` returns
//! points the slots back at `/dev/null`, so the daemon holds no extra reference to
//! a pipe end (a program's stdout must reach EOF when it exits). The slots stay
//! open for the life of the process, so no other thread's `open` can take their
//! numbers. Descriptors below `end` that are not this launcher's slots (the
//! daemon's first few, another launcher's slots, which may hold a concurrent
//! spawn's pipe ends for a moment) reach the child's private table too, and are
//! closed at exec like any other (every one is close-on-exec).
//!
//! Sharing the table is safe because, until the unshare, the child changes
//! nothing in it: the signal setup touches no descriptor. The daemon's other
//! threads keep opening and closing descriptors meanwhile; the child needs none of
//! theirs, and after the unshare their changes no longer reach it.
//!
//! When the kernel refuses the unshare (`ENOSYS` before Linux 5.9, `EPERM` or
//! another errno from a seccomp filter), the child reports that on the status pipe
//! and exits before touching anything. The parent reaps it, switches the shared
//! table off for the rest of the process (logged once), and launches again with a
//! copied table: then the child marks every inherited descriptor from
//! `close_fds_from` up close-on-exec (step 5), as before.
//!
//! # Order of work in the child
//!
//! 1. resets every signal disposition to `SIG_DFL` (ignored signals survive exec),
//!    then empties the signal mask,
//! 2. with a shared table, `close_range(end, ~0U, CLOSE_RANGE_UNSHARE)`: the first
//!    change to any descriptor (see "Descriptors"),
//! 3. dup2 of the prepared descriptors (the slots, or the child's ends in a copied
//!    table) onto fds 0/1/2 (stdin: `/dev/null`, a pipe or an fcgi socket; stderr
//!    may be the stdout pipe); the status pipe stays close-on-exec,
//! 4. `setpgid(0, 0)`: the child leads its own process group, like supervisord's
//!    `setpgrp()`, so stopasgroup/killasgroup can signal `-pid`,
//! 5. marks every fd from `close_fds_from` up close-on-exec (`close_range` with
//!    `CLOSE_RANGE_CLOEXEC`, else a `/proc/self/fd` scan, else a loop to the fd
//!    limit). Marking instead of closing keeps the status pipe working until exec;
//!    after an unshare the table holds only a handful, so this is cheap,
//! 6. writes itself (`0`) into each of the program's control groups
//!    (`cgroup.procs` paths prepared before the clone), so everything the
//!    program runs is inside its limits from its first instruction; a group it
//!    cannot join fails the spawn,
//! 7. restores the RLIMIT_NOFILE the daemon started with, when the daemon raised
//!    its own ([`set_child_file_limit`](crate::spawn::set_child_file_limit)),
//!    then sets the program's own `rlimit_*` limits (prepared before the clone;
//!    before the privilege drop, so root can raise a hard limit for its user),
//! 8. `setgroups` -> `setgid` -> `setuid` with groups computed in the parent
//!    (no NSS in the child),
//! 9. `chdir` (after setuid, as supervisord does, so a directory only the target
//!    user can enter works and one it cannot enter fails),
//! 10. `umask`,
//! 11. `execve` of `argv[0]` as a path (supervisord's `os.execve`); a file the
//!     kernel refuses as `ENOEXEC` (a script without `#!`) is run by `/bin/sh`, as
//!     glibc's `execvp` (which std used) does.
//!
//! A failing step writes its number and errno to a private close-on-exec status pipe
//! and exits with 127. The parent reads that pipe after `clone` returns: nothing
//! means the exec succeeded (the pipe closed at exec), a report says which step
//! failed (`couldn't chdir to X: ENOENT`) rather than a bare errno.

use std::ffi::{CString, c_void};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};

use nix::errno::Errno;
use tokio::net::unix::pipe;

use crate::spawn::env::EncodedEnv;
use crate::spawn::{SpawnError, SpawnSpec, SpawnUser, child_file_limit};
/// Steps of the child's setup, as reported over the status pipe.
const STEP_SETGROUPS: u8 = 1;
const STEP_SETGID: u8 = 2;
const STEP_SETUID: u8 = 3;
const STEP_CHDIR: u8 = 4;
const STEP_EXEC: u8 = 5;
/// dup2 onto fds 0/1/2 or `setpgid` failed; reported as a failure to fork, as std did.
const STEP_STDIO: u8 = 6;
const STEP_SETPGID: u8 = 7;
/// `close_range(CLOSE_RANGE_UNSHARE)` failed: the child touched nothing and the
/// spawn is retried with a copied descriptor table.
const STEP_UNSHARE: u8 = 8;
/// Joining the control group of `cgroups[i]` reports `STEP_CGROUP + i`.
const STEP_CGROUP: u8 = 9;
/// At most this many control groups (one per mounted hierarchy a program uses).
const MAX_CGROUPS: usize = 7;
/// `setrlimit` of `rlimits[i]` reports `STEP_RLIMIT + i`.
const STEP_RLIMIT: u8 = 16;

/// The exit status of a child whose setup or exec failed (it is reaped by
/// the reaper's spawn, never seen by a program actor).
const CHILD_SETUP_FAILED: libc::c_int = 127;

/// `close_range` flag (linux/close_range.h); not exported by every libc version.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
/// `close_range` flag: give the caller a private descriptor table first.
const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;

/// The size of the kernel's signal set (`_NSIG / 8`), which `rt_sigprocmask` and
/// `rt_sigaction` take instead of libc's larger `sigset_t`.
const KERNEL_SIGSET_SIZE: usize = 8;

/// The child's stack. The setup uses a few KiB (the largest frame is the 4 KiB
/// `/proc/self/fd` buffer); untouched pages cost nothing.
const CHILD_STACK_SIZE: usize = 128 * 1024;

/// The shell glibc's `execvp` runs a file with when exec says `ENOEXEC`.
const SHELL: &std::ffi::CStr = c"/bin/sh";

/// The privilege drop the child performs, precomputed in the parent.
struct PrivilegeDrop {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// The parent ends of a child's pipes.
pub(crate) struct ParentPipes {
    /// Non-blocking, and in no reactor until someone writes to it.
    pub(crate) stdin: Option<OwnedFd>,
    pub(crate) stdout: Option<pipe::Receiver>,
    pub(crate) stderr: Option<pipe::Receiver>,
}

/// How a launch ended.
pub(crate) enum Launch {
    /// The child exec'd: its pid, the parent ends of its pipes and how it got its
    /// descriptor table.
    Running { pid: u32, pipes: ParentPipes, table: FdTable },
    /// No program runs. `child` is the pid of a child that exited during its setup
    /// or exec and must still be reaped (inside the same spawn gate).
    Failed { child: Option<u32>, error: SpawnError },
}

/// A spawn with every allocation, lookup and pipe done; only the clone and exec are
/// left, which `Prepared::launch` does inside the reaper's spawn gate.
pub(crate) struct Prepared {
    /// `argv[0]` as given, for error texts.
    program: String,
    cwd_path: Option<PathBuf>,
    uid: Option<u32>,
    /// The names of the child's `rlimits`, in the order it sets them.
    rlimit_names: Vec<&'static str>,
    /// The control groups the child joins, in order (for error texts).
    cgroup_paths: Vec<PathBuf>,
    status_read: std::io::PipeReader,
    status_write: std::io::PipeWriter,
    pipes: ParentPipes,
    /// The descriptors the child gets as 0/1/2 (`stderr: None` means the stdout
    /// pipe). Closed in the parent right after the launch.
    child_stdin: OwnedFd,
    child_stdout: OwnedFd,
    child_stderr: Option<OwnedFd>,
    /// The strings behind the pointer arrays below; never read directly, but they
    /// must live as long as the arrays.
    _strings: Vec<CString>,
    path: CString,
    /// NULL-terminated `argv` and the `/bin/sh` fallback `argv`.
    argv: Vec<*const libc::c_char>,
    /// The environment, with the NULL-terminated `envp` into it.
    env: EncodedEnv,
    shell_argv: Vec<*const libc::c_char>,
    setup: ChildSetup,
    /// Tests pick the path the launch takes (see [`TestTable`]).
    #[cfg(test)]
    pub(crate) test_table: TestTable,
}

/// How a child got its descriptor table (see "Descriptors" in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdTable {
    /// Shared with the daemon until the child's first descriptor operation, which
    /// unshared it keeping only the slots.
    Shared,
    /// Copied whole by `clone`. `refused` is the pid of a child that tried to
    /// unshare a shared table first and was refused (it has been reaped).
    Copied { refused: Option<u32> },
}

/// Test-only choice of the launch path.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TestTable {
    /// Whatever production would do.
    Normal,
    /// The copied table, as when the kernel refused the shared one before.
    ForceCopied,
    /// The shared table, but the child reports `close_range` as `ENOSYS` instead
    /// of calling it; the process-wide state is left alone.
    RefuseUnshare,
}

/// What the child reads, laid out for it before the clone. Every pointer points
/// into a [`Prepared`] that outlives the child's use of it.
struct ChildArgs<'a> {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    shell_argv: *const *const libc::c_char,
    stdio: [RawFd; 3],
    /// With a shared table: the first descriptor the child drops when it unshares.
    unshare_from: Option<libc::c_uint>,
    setup: &'a ChildSetup,
    #[cfg(test)]
    refuse_unshare: bool,
}

impl Prepared {
    /// Validates `spec`, creates the pipes (registered with the current tokio runtime)
    /// and builds every string and pointer array the child needs. Starts nothing.
    pub(crate) fn new(spec: &SpawnSpec) -> Result<Prepared, SpawnError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SpawnError::NoRuntime);
        }
        let program = spec.argv.first().ok_or(SpawnError::EmptyCommand)?.clone();
        let mut strings = Vec::with_capacity(spec.argv.len());
        for (index, arg) in spec.argv.iter().enumerate() {
            let arg = CString::new(arg.as_bytes())
                .map_err(|_| SpawnError::NulByte { what: format!("argument {index}") })?;
            strings.push(arg);
        }
        let env = spec
            .env
            .encode()
            .map_err(|key| SpawnError::NulByte { what: format!("environment entry {key:?}") })?;
        let path = strings[0].clone();
        let mut argv: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        // glibc's execvp fallback: `/bin/sh path args...` (argv[0] replaced by the path).
        let shell_argv: Vec<*const libc::c_char> =
            [SHELL.as_ptr(), path.as_ptr()].into_iter().chain(argv[1..].iter().copied()).collect();
        let cwd = match &spec.cwd {
            Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
                SpawnError::NulByte { what: format!("directory {}", dir.display()) }
            })?),
            None => None,
        };
        let drop = privilege_drop(spec.user.as_ref())?;
        if spec.cgroups.len() > MAX_CGROUPS {
            return Err(SpawnError::Cgroup {
                path: spec.cgroups[MAX_CGROUPS].clone(),
                errno: Errno::E2BIG,
            });
        }
        let cgroups = spec
            .cgroups
            .iter()
            .map(|path| {
                CString::new(path.as_os_str().as_bytes()).map_err(|_| SpawnError::NulByte {
                    what: format!("control group {}", path.display()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let (stdout_read, stdout_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
        let stdout = pipe_receiver(OwnedFd::from(stdout_read)).map_err(SpawnError::Pipes)?;
        let child_stdout = above_stdio(OwnedFd::from(stdout_write))?;
        let (stderr, child_stderr) = if spec.redirect_stderr {
            (None, None)
        } else {
            let (stderr_read, stderr_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
            let receiver = pipe_receiver(OwnedFd::from(stderr_read)).map_err(SpawnError::Pipes)?;
            (Some(receiver), Some(above_stdio(OwnedFd::from(stderr_write))?))
        };
        let (stdin, child_stdin) = if let Some(socket) = &spec.stdin_socket {
            // The child gets its own descriptor as fd 0; the daemon keeps `socket`.
            (None, above_stdio(socket.0.try_clone().map_err(SpawnError::Pipes)?)?)
        } else if spec.pipe_stdin {
            let (stdin_read, stdin_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
            let sender = nonblocking(OwnedFd::from(stdin_write)).map_err(SpawnError::Pipes)?;
            (Some(sender), above_stdio(OwnedFd::from(stdin_read))?)
        } else {
            let null = std::fs::File::open("/dev/null").map_err(SpawnError::Pipes)?;
            (None, above_stdio(OwnedFd::from(null))?)
        };

        let (status_read, status_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
        // Non-blocking so reading the failure report can never hang on a write end
        // inherited by some other thread's forked child that has not exec'd yet.
        set_nonblocking(&status_read).map_err(SpawnError::Pipes)?;
        let status_write = std::io::PipeWriter::from(above_stdio(OwnedFd::from(status_write))?);
        let uid = drop.as_ref().map(|d| d.uid);
        let setup = ChildSetup {
            status_fd: status_write.as_raw_fd(),
            close_from: spec.close_fds_from.max(3),
            fd_limit: open_file_limit(),
            cgroups,
            file_limit: child_file_limit()
                .map(|(soft, hard)| libc::rlimit { rlim_cur: soft, rlim_max: hard }),
            rlimits: spec
                .rlimits
                .iter()
                .filter_map(|limit| {
                    let infinite = |n: Option<u64>| n.unwrap_or(libc::RLIM_INFINITY);
                    let rlimit = libc::rlimit {
                        rlim_cur: infinite(limit.soft),
                        rlim_max: infinite(limit.hard),
                    };
                    Some((limit.resource()?, rlimit))
                })
                .take(usize::from(u8::MAX - STEP_RLIMIT))
                .collect(),
            drop,
            cwd,
            umask: spec.umask.map(|mask| mask as libc::mode_t),
        };
        Ok(Prepared {
            program,
            cwd_path: spec.cwd.clone(),
            uid,
            rlimit_names: spec.rlimits.iter().map(|limit| limit.name).collect(),
            cgroup_paths: spec.cgroups.clone(),
            status_read,
            status_write,
            pipes: ParentPipes { stdin, stdout: Some(stdout), stderr },
            child_stdin,
            child_stdout,
            child_stderr,
            _strings: strings,
            path,
            argv,
            env,
            shell_argv,
            setup,
            #[cfg(test)]
            test_table: TestTable::Normal,
        })
    }

    /// Creates the child and waits until it has exec'd or exited. Must be called
    /// inside the reaper's spawn gate (see module docs and [`Launch::Failed`]).
    ///
    /// `reap_failed` collects a child that exited because the kernel refused to
    /// unshare its descriptor table; the spawn is then retried with a copied table.
    pub(crate) fn launch(mut self, reap_failed: impl FnOnce(u32)) -> Launch {
        let mut guard = take_launcher();
        let launcher = &mut *guard;
        let stack = match &mut launcher.stack {
            Some(stack) => stack,
            empty @ None => match ChildStack::new() {
                Ok(stack) => empty.insert(stack),
                Err(error) => {
                    return Launch::Failed { child: None, error: SpawnError::Fork(error) };
                }
            },
        };
        launcher.table.reserve();
        let mut refused = None;
        if self.wants_shared_table()
            && let SharedTable::Ready(slots) = &launcher.table
        {
            let loaded = slots.load(self.child_fds());
            let attempt = loaded.is_ok().then(|| self.run_child(stack, Some(slots)));
            // Whatever happened, the slots go back to /dev/null at once: holding a
            // pipe end there would keep the program's stdout from ever reaching EOF.
            let reset = slots.reset();
            if let Err(error) = &reset {
                launcher.table.disable(&format!("a slot could not be reset: {error}"));
            }
            match attempt {
                Some(Attempt::Failed { child, step: STEP_UNSHARE, errno }) => {
                    reap_failed(child);
                    if self.records_refusal() {
                        launcher.table.refused(Errno::from_raw(errno));
                    }
                    refused = Some(child);
                }
                Some(attempt) => return self.finish(attempt, FdTable::Shared),
                // The slots could not take the child's ends (nothing was created):
                // this spawn copies the table instead.
                None => {
                    if let Err(error) = loaded {
                        tracing::warn!(%error, "could not load the spawn slots");
                    }
                }
            }
        }
        let attempt = self.run_child(stack, None);
        drop(guard);
        self.finish(attempt, FdTable::Copied { refused })
    }

    /// Whether this spawn tries the shared table (tests may force either path).
    fn wants_shared_table(&self) -> bool {
        #[cfg(test)]
        if self.test_table == TestTable::ForceCopied {
            return false;
        }
        true
    }

    /// Whether a refused unshare is the kernel's answer (not a test's simulation)
    /// and so switches the shared table off for the process.
    fn records_refusal(&self) -> bool {
        #[cfg(test)]
        if self.test_table == TestTable::RefuseUnshare {
            return false;
        }
        true
    }

    /// The descriptors the child gets: stdin, stdout, stderr and the status pipe.
    fn child_fds(&self) -> [RawFd; 4] {
        let stdout = self.child_stdout.as_raw_fd();
        [
            self.child_stdin.as_raw_fd(),
            stdout,
            self.child_stderr.as_ref().map_or(stdout, AsRawFd::as_raw_fd),
            self.status_write.as_raw_fd(),
        ]
    }

    /// One clone: with `slots`, the child shares the daemon's table (the slots
    /// already hold its ends) and unshares it first thing; without, it gets a copy.
    fn run_child(&mut self, stack: &ChildStack, slots: Option<&Slots>) -> Attempt {
        let [stdin, stdout, stderr, status] = match slots {
            Some(slots) => slots.raw(),
            None => self.child_fds(),
        };
        self.setup.status_fd = status;
        // Descriptors below `close_from` stay the child's by contract; those the
        // child keeps beyond its stdio are marked close-on-exec later. Both bounds
        // are above 2, so the conversion is exact.
        let unshare_from = slots.map(|slots| slots.end.max(self.setup.close_from).unsigned_abs());
        let args = ChildArgs {
            path: self.path.as_ptr(),
            argv: self.argv.as_ptr(),
            envp: self.env.as_ptr(),
            shell_argv: self.shell_argv.as_ptr(),
            stdio: [stdin, stdout, stderr],
            unshare_from,
            setup: &self.setup,
            #[cfg(test)]
            refuse_unshare: self.test_table == TestTable::RefuseUnshare,
        };
        let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        if slots.is_some() {
            flags |= libc::CLONE_FILES;
        }
        let pid = match clone_vfork(&args, stack, flags) {
            Ok(pid) => pid,
            Err(error) => return Attempt::NotCreated(error),
        };
        // CLONE_VFORK returned: the child has exec'd (its copy of the status pipe
        // closed, nothing to read) or written its report and exited. The read end
        // is non-blocking, so the parent's own write end does not make this wait.
        let mut report = [0u8; 5];
        let mut got = 0;
        while got < report.len() {
            match self.status_read.read(&mut report[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if got == 0 {
            return Attempt::Running(pid);
        }
        let errno = match report[1..] {
            [a, b, c, d] if got == report.len() => i32::from_le_bytes([a, b, c, d]),
            _ => 0,
        };
        Attempt::Failed { child: pid, step: report[0], errno }
    }

    /// Turns the last attempt into the launch's result, closing the parent's
    /// copies of the child's ends (or the stdout reader would never see EOF).
    fn finish(self, attempt: Attempt, table: FdTable) -> Launch {
        let Prepared {
            program,
            cwd_path,
            rlimit_names,
            cgroup_paths,
            uid,
            status_write,
            pipes,
            child_stdin,
            child_stdout,
            child_stderr,
            ..
        } = self;
        drop((child_stdin, child_stdout, child_stderr, status_write));
        match attempt {
            Attempt::Running(pid) => Launch::Running { pid, pipes, table },
            Attempt::NotCreated(error) => {
                Launch::Failed { child: None, error: SpawnError::Fork(error) }
            }
            Attempt::Failed { child, step, errno } => {
                let error = decode_failure(
                    step,
                    Errno::from_raw(errno),
                    &program,
                    cwd_path,
                    uid,
                    &rlimit_names,
                    &cgroup_paths,
                );
                Launch::Failed { child: Some(child), error }
            }
        }
    }
}

/// The result of one clone.
enum Attempt {
    /// `clone` failed (EAGAIN, ENOMEM): no child.
    NotCreated(io::Error),
    /// The child exec'd.
    Running(u32),
    /// The child reported a failed step and exited (not yet reaped).
    Failed { child: u32, step: u8, errno: i32 },
}

/// What one spawn in flight owns: a child stack and a set of slots. Spawns
/// run in parallel, each on a launcher of its own from [`launchers`]; the
/// lock is what hands a launcher to one spawn at a time.
pub(crate) struct Launcher {
    stack: Option<ChildStack>,
    table: SharedTable,
}

/// At most this many spawns run at once. Two spawns per core keeps every core
/// busy while one thread waits for its child's exec; more would only add slots.
const MAX_LAUNCHERS: usize = 8;

/// The process's launchers, one per spawn that may run at once (two per core,
/// at most [`MAX_LAUNCHERS`]).
pub(crate) fn launchers() -> &'static [Mutex<Launcher>] {
    static LAUNCHERS: OnceLock<Box<[Mutex<Launcher>]>> = OnceLock::new();
    LAUNCHERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        (0..(2 * cores).clamp(1, MAX_LAUNCHERS))
            .map(|_| Mutex::new(Launcher { stack: None, table: SharedTable::Untried }))
            .collect()
    })
}

/// Takes a free launcher, or waits for one (the next in turn, so waiting
/// spawns spread over all of them).
fn take_launcher() -> MutexGuard<'static, Launcher> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let all = launchers();
    for launcher in all {
        match launcher.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
    }
    let turn = NEXT.fetch_add(1, Ordering::Relaxed) % all.len();
    all[turn].lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reserves every launcher's spawn slots while the daemon holds few
/// descriptors, so they are low and a child unsharing its table copies only a
/// handful. Called by the reaper when it starts; the first spawn on a launcher
/// reserves its slots otherwise.
pub(crate) fn reserve_slots() {
    for launcher in launchers() {
        launcher.lock().unwrap_or_else(PoisonError::into_inner).table.reserve();
    }
}

/// Whether children can share the daemon's descriptor table.
enum SharedTable {
    /// No slots reserved yet.
    Untried,
    Ready(Slots),
    /// Off for the rest of the process: the kernel refused `CLOSE_RANGE_UNSHARE`
    /// or the slots could not be reserved or reset.
    Off,
}

impl SharedTable {
    fn reserve(&mut self) {
        if let SharedTable::Untried = self {
            *self = match Slots::reserve() {
                Ok(slots) => SharedTable::Ready(slots),
                Err(error) => {
                    tracing::info!(
                        %error,
                        "could not reserve spawn slots; children get a copy of the \
                         daemon's descriptor table"
                    );
                    SharedTable::Off
                }
            };
        }
    }

    /// Records that the kernel refused to unshare a child's table. Resource
    /// shortages are transient and only cost this one spawn its fast path;
    /// anything else (ENOSYS: before Linux 5.9; EINVAL; EPERM from a seccomp
    /// filter) will not change, so every later spawn copies the table.
    fn refused(&mut self, errno: Errno) {
        if matches!(errno, Errno::ENOMEM | Errno::EMFILE) {
            tracing::debug!(%errno, "close_range(CLOSE_RANGE_UNSHARE) failed; retried with a copied table");
            return;
        }
        self.disable(&format!("the kernel refused close_range(CLOSE_RANGE_UNSHARE): {errno}"));
    }

    /// Switches the shared table off for good, closing the slots; logs once.
    fn disable(&mut self, why: &str) {
        if !matches!(self, SharedTable::Off) {
            tracing::info!(
                "{why}; children get a copy of the daemon's descriptor table from now on, \
                 so each spawn costs time in proportion to the daemon's open files"
            );
        }
        *self = SharedTable::Off;
    }
}

/// Low descriptors reserved for the process's lifetime, through which a child
/// sharing the daemon's table gets its stdin, stdout, stderr and status pipe.
/// Between spawns each points at `/dev/null`, close-on-exec.
struct Slots {
    null: OwnedFd,
    /// stdin, stdout, stderr, status pipe.
    fds: [OwnedFd; 4],
    /// One above the highest slot: the child keeps only descriptors below it.
    end: RawFd,
}

impl Slots {
    fn reserve() -> io::Result<Slots> {
        let null =
            OwnedFd::from(std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?);
        let slot = || -> io::Result<OwnedFd> {
            // Above stdio, so the child's dup2 onto 0/1/2 clobbers no slot.
            // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing else owns.
            let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is fresh and owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let fds = [slot()?, slot()?, slot()?, slot()?];
        let end = fds.iter().map(AsRawFd::as_raw_fd).max().unwrap_or(2) + 1;
        Ok(Slots { null, fds, end })
    }

    fn raw(&self) -> [RawFd; 4] {
        self.fds.each_ref().map(AsRawFd::as_raw_fd)
    }

    /// Points the slots at the child's descriptors (close-on-exec, as every
    /// daemon descriptor is).
    fn load(&self, sources: [RawFd; 4]) -> io::Result<()> {
        for (slot, source) in self.raw().into_iter().zip(sources) {
            dup3_cloexec(source, slot)?;
        }
        Ok(())
    }

    /// Points every slot back at `/dev/null`. On failure the caller drops the
    /// slots (closing them, and with them any pipe end a slot still holds).
    fn reset(&self) -> io::Result<()> {
        let mut result = Ok(());
        for slot in self.raw() {
            if let Err(error) = dup3_cloexec(self.null.as_raw_fd(), slot) {
                result = Err(error);
            }
        }
        result
    }
}

fn dup3_cloexec(source: RawFd, target: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: dup3 onto a slot we own; `source` is a live descriptor.
        if unsafe { libc::dup3(source, target, libc::O_CLOEXEC) } >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// A descriptor the child can dup2 onto 0/1/2 without clobbering another source:
/// one below 3 (only possible if the daemon closed its own stdio) is moved up.
fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, SpawnError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing else owns.
    let moved = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if moved < 0 {
        return Err(SpawnError::Pipes(io::Error::last_os_error()));
    }
    // SAFETY: `moved` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Blocks every signal in the calling thread, clones the child onto `stack` with
/// `flags`, and restores the mask once the child has exec'd or exited (CLONE_VFORK).
fn clone_vfork(args: &ChildArgs<'_>, stack: &ChildStack, flags: libc::c_int) -> io::Result<u32> {
    // SAFETY: sigfillset fills a sigset_t we own.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: fills our own set.
    unsafe { libc::sigfillset(&mut all) };
    // The raw call, because glibc's pthread_sigmask leaves its own two internal
    // signals (SIGCANCEL, SIGSETXID) unblocked and the child must start with none.
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both live locals.
    let blocked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const libc::sigset_t,
            &mut old as *mut libc::sigset_t,
            KERNEL_SIGSET_SIZE,
        )
    };
    if blocked != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see the module docs. The child runs `child_main` on `stack` (used by
    // no one else: its launcher serves one spawn at a time and the previous child
    // left it before its clone returned), reads only `args` and what it points to (kept alive by the
    // suspended caller), and leaves by execve or _exit, both of which release this
    // thread. With CLONE_FILES it changes no descriptor before unsharing the table.
    // The stack top is 16-byte aligned (the mapping is page-aligned).
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            (args as *const ChildArgs<'_>).cast_mut().cast::<c_void>(),
        )
    };
    let result = if pid > 0 { Ok(pid as u32) } else { Err(io::Error::last_os_error()) };
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            KERNEL_SIGSET_SIZE,
        )
    };
    result
}

/// An anonymous mapping for the child's stack with a guard page below it, so an
/// overflow kills the child instead of writing over the daemon's memory. Made
/// once and reused by every spawn: mapping and unmapping it per spawn cost a TLB
/// shootdown across the daemon's threads each time.
struct ChildStack {
    base: *mut c_void,
    len: usize,
    guard: usize,
}

// SAFETY: the mapping is owned by the `ChildStack` alone (nothing else holds its
// address) and only used by the thread holding its launcher's lock.
unsafe impl Send for ChildStack {}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        // SAFETY: sysconf has no memory effects.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = CHILD_STACK_SIZE + page;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len, guard: page };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: stacks grow down on every Linux target we build.
    fn top(&self) -> *mut c_void {
        debug_assert!(self.guard < self.len);
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no child runs on it any more.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The child, from `clone` to `execve`. Runs on its own stack in the daemon's
/// memory: no allocation, no locks, no panics, no writes outside its stack.
extern "C" fn child_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent passed to clone.
    let args = unsafe { &*(arg.cast::<ChildArgs<'_>>()) };
    let setup = args.setup;
    // Nothing here touches a descriptor: with a shared table (CLONE_FILES) the
    // daemon's other threads use it concurrently until the unshare below.
    reset_signal_dispositions();
    // SAFETY: an empty mask: every handler is SIG_DFL now, so any signal that
    // arrives from here on acts on this process only.
    unsafe {
        let empty = [0u64; 1];
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            empty.as_ptr(),
            std::ptr::null_mut::<u64>(),
            KERNEL_SIGSET_SIZE,
        );
    }
    if let Some(from) = args.unshare_from {
        #[cfg(test)]
        if args.refuse_unshare {
            report_and_exit(setup.status_fd, STEP_UNSHARE, libc::ENOSYS);
        }
        // The first descriptor operation: a private table holding only the
        // descriptors below `from` (the daemon's few low ones and the slots); the
        // kernel copies nothing above it, however many the daemon holds.
        // SAFETY: close_range(2) on our own table; writes no memory.
        let unshared = unsafe {
            libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, CLOSE_RANGE_UNSHARE)
        };
        if unshared != 0 {
            // Nothing changed yet: the parent reaps us and retries with a copy.
            setup.fail_and_exit(STEP_UNSHARE);
        }
    }
    for (target, &source) in args.stdio.iter().enumerate() {
        // SAFETY: dup2 of descriptors the parent keeps open until we exec or exit;
        // every source is above 2 (a slot, or see `above_stdio`), so none is
        // clobbered.
        if unsafe { libc::dup2(source, target as libc::c_int) } < 0 {
            setup.fail_and_exit(STEP_STDIO);
        }
    }
    // SAFETY: setpgid(2) on ourselves.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        setup.fail_and_exit(STEP_SETPGID);
    }
    setup.run();
    // SAFETY: NULL-terminated arrays of strings owned by the suspended parent.
    unsafe { libc::execve(args.path, args.argv, args.envp) };
    if Errno::last_raw() == libc::ENOEXEC {
        // SAFETY: as above.
        unsafe { libc::execve(SHELL.as_ptr(), args.shell_argv, args.envp) };
    }
    setup.fail_and_exit(STEP_EXEC)
}

/// Turns the child's status-pipe report into the error supervisord would have shown.
fn decode_failure(
    step: u8,
    errno: Errno,
    program: &str,
    cwd: Option<PathBuf>,
    uid: Option<u32>,
    rlimits: &[&str],
    cgroups: &[PathBuf],
) -> SpawnError {
    let uid = uid.unwrap_or(0);
    match step {
        STEP_SETGROUPS => {
            SpawnError::SetUid { uid, reason: "Could not set groups of effective user".to_owned() }
        }
        STEP_SETGID => SpawnError::SetUid {
            uid,
            reason: "Could not set group id of effective user".to_owned(),
        },
        STEP_SETUID => SpawnError::SetUid { uid, reason: errno.desc().to_owned() },
        STEP_CHDIR => SpawnError::Chdir { path: cwd.unwrap_or_default(), errno },
        STEP_EXEC => SpawnError::Exec { path: program.to_owned(), errno },
        step if (STEP_CGROUP..STEP_CGROUP + MAX_CGROUPS as u8).contains(&step) => {
            SpawnError::Cgroup {
                path: cgroups.get(usize::from(step - STEP_CGROUP)).cloned().unwrap_or_default(),
                errno,
            }
        }
        step if step >= STEP_RLIMIT => SpawnError::Rlimit {
            name: rlimits
                .get(usize::from(step - STEP_RLIMIT))
                .map_or_else(String::new, |name| (*name).to_owned()),
            errno,
        },
        _ => SpawnError::Fork(io::Error::from_raw_os_error(errno as i32)),
    }
}

/// Computes the privilege drop for `user`, following supervisord's
/// `drop_privileges`: nothing to do when already that uid, refused unless root.
fn privilege_drop(user: Option<&SpawnUser>) -> Result<Option<PrivilegeDrop>, SpawnError> {
    let Some(user) = user else { return Ok(None) };
    let current = nix::unistd::getuid().as_raw();
    if current == user.uid {
        return Ok(None);
    }
    if current != 0 {
        return Err(SpawnError::SetUid {
            uid: user.uid,
            reason: "Can't drop privilege as nonroot user".to_owned(),
        });
    }
    let mut groups = vec![user.gid];
    groups.extend(user.groups.iter().copied().filter(|gid| *gid != user.gid));
    Ok(Some(PrivilegeDrop { uid: user.uid, gid: user.gid, groups }))
}

/// The daemon's end of a pipe it made (the reading end), for tokio: made
/// non-blocking with one `ioctl`, where tokio's checked conversion also
/// `fstat`s the descriptor and reads its flags. Three pipes a spawn, and
/// 10,000 pipes resumed in a live upgrade of 5,000 programs.
pub(crate) fn pipe_receiver(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    set_nonblocking(&fd)?;
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// The writing end of a pipe the daemon made, non-blocking (as
/// [`pipe_receiver`] sets it) but in no reactor: a child's stdin is registered
/// at its first write, if any (see `stdin.rs`).
pub(crate) fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    set_nonblocking(&fd)?;
    Ok(fd)
}

/// Sets O_NONBLOCK on `fd`'s open file description alone, with one system
/// call: the other end of the same pipe, a description of its own (the
/// child's), stays blocking.
fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int from a live local; the fd is open.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONBIO, &on) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The soft RLIMIT_NOFILE, bounding the last-resort fd loop in the child.
fn open_file_limit() -> libc::c_int {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => libc::c_int::try_from(soft).unwrap_or(libc::c_int::MAX).min(1 << 20),
        Err(_) => 1024,
    }
}

/// Everything the child's setup needs, prepared before the clone.
struct ChildSetup {
    status_fd: RawFd,
    close_from: libc::c_int,
    fd_limit: libc::c_int,
    /// The `cgroup.procs` files of the program's control groups.
    cgroups: Vec<CString>,
    /// The RLIMIT_NOFILE the child starts with (see
    /// [`set_child_file_limit`](crate::spawn::set_child_file_limit)).
    file_limit: Option<libc::rlimit>,
    /// The program's own limits, set after `file_limit` (so `rlimit_nofile`
    /// wins) and before the privilege drop (raising a hard limit needs root).
    rlimits: Vec<(nix::sys::resource::Resource, libc::rlimit)>,
    drop: Option<PrivilegeDrop>,
    cwd: Option<CString>,
    umask: Option<libc::mode_t>,
}

impl ChildSetup {
    /// Runs in the child after stdio and the process group: async-signal-safe calls
    /// only, raw syscalls for credentials (see the module docs). Exits on failure.
    fn run(&self) {
        mark_cloexec_from(self.close_from, self.fd_limit);
        for (index, procs) in self.cgroups.iter().enumerate() {
            self.join_cgroup(procs, STEP_CGROUP + index as u8);
        }
        if let Some(limit) = &self.file_limit {
            // Lowering a limit needs no privilege; should it fail, the child keeps
            // the daemon's higher limit, which is harmless.
            // SAFETY: setrlimit(2) with a prepared struct.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) };
        }
        for (index, (resource, limit)) in self.rlimits.iter().enumerate() {
            // SAFETY: setrlimit(2) with a prepared struct.
            if unsafe { libc::setrlimit(*resource as _, limit) } != 0 {
                self.fail_and_exit(STEP_RLIMIT + index as u8);
            }
        }
        if let Some(drop) = &self.drop {
            // SAFETY: plain syscalls on prepared data; `groups` outlives the call.
            if unsafe {
                libc::syscall(libc::SYS_setgroups, drop.groups.len(), drop.groups.as_ptr())
            } != 0
            {
                self.fail_and_exit(STEP_SETGROUPS);
            }
            // SAFETY: as above.
            if unsafe { libc::syscall(libc::SYS_setgid, drop.gid) } != 0 {
                self.fail_and_exit(STEP_SETGID);
            }
            // SAFETY: as above.
            if unsafe { libc::syscall(libc::SYS_setuid, drop.uid) } != 0 {
                self.fail_and_exit(STEP_SETUID);
            }
        }
        if let Some(cwd) = &self.cwd {
            // SAFETY: `cwd` is a valid NUL-terminated string prepared before the clone.
            if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
                self.fail_and_exit(STEP_CHDIR);
            }
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(mask) };
        }
    }

    /// Writes `0` (the writer itself) to a `cgroup.procs` file: before the
    /// privilege drop, which would take the right to, and before the program's
    /// `rlimit_nofile`, which could leave no descriptor to open it with.
    fn join_cgroup(&self, procs: &CString, step: u8) {
        // SAFETY: open(2) of a NUL-terminated path prepared before the clone.
        let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            self.fail_and_exit(step);
        }
        // SAFETY: write(2) of a static byte to the descriptor just opened.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        let errno = Errno::last_raw();
        // SAFETY: closes the descriptor opened above, which nothing else uses.
        unsafe { libc::close(fd) };
        if written != 1 {
            report_and_exit(self.status_fd, step, errno);
        }
    }

    /// Reports the failed step and errno on the status pipe and ends the child.
    fn fail_and_exit(&self, step: u8) -> ! {
        report_and_exit(self.status_fd, step, Errno::last_raw())
    }
}

/// Writes `step` and `errno` to the status pipe and ends the child.
fn report_and_exit(status_fd: RawFd, step: u8, errno: i32) -> ! {
    let bytes = errno.to_le_bytes();
    let buf = [step, bytes[0], bytes[1], bytes[2], bytes[3]];
    // SAFETY: write(2) of a stack buffer to our own pipe (5 bytes, so atomic); a
    // failed write only loses detail in the error message. _exit(2) never returns,
    // runs no atexit handlers (they belong to the daemon) and, with a table still
    // shared, only drops the child's reference to it.
    unsafe {
        libc::write(status_fd, buf.as_ptr().cast(), buf.len());
        libc::_exit(CHILD_SETUP_FAILED)
    }
}

/// Restores every catchable signal to its default action: the daemon's handlers
/// must not run in the child (it shares the daemon's memory), and ignored signals
/// (SIG_IGN) would otherwise be inherited by the program.
fn reset_signal_dispositions() {
    // The kernel's `struct sigaction` (handler, flags, restorer, mask); all zero is
    // SIG_DFL with no flags and an empty mask. The raw call also resets glibc's two
    // internal signals, which its sigaction wrapper refuses to touch.
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads our stack buffer; no old action is written.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                KERNEL_SIGSET_SIZE,
            )
        };
    }
}

/// Marks every descriptor from `from` up close-on-exec, in the daemon
/// itself: one `close_range` where the kernel has it (5.11), else one call
/// per descriptor. How a live upgrade's new image makes what it inherited
/// its own in one step, so that no child inherits any of it.
pub fn close_on_exec_from(from: libc::c_int) {
    mark_cloexec_from(from, open_file_limit());
}

/// Marks every fd >= `from` close-on-exec without allocating.
fn mark_cloexec_from(from: libc::c_int, fd_limit: libc::c_int) {
    // SAFETY: close_range with CLOEXEC only changes fd flags (Linux >= 5.11).
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if done || mark_cloexec_from_proc(from) {
        return;
    }
    for fd in from..fd_limit {
        // SAFETY: fcntl on an fd that may not exist just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Fallback for kernels without `close_range`: walks `/proc/self/fd` with raw
/// `getdents64` into a stack buffer. Returns false if /proc is unavailable.
/// Panic-free (it runs in the child): every slice access is checked.
fn mark_cloexec_from_proc(from: libc::c_int) -> bool {
    // SAFETY: open(2) with a static NUL-terminated path.
    let dir = unsafe {
        libc::open(c"/proc/self/fd".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
    };
    if dir < 0 {
        return false;
    }
    #[repr(C, align(8))]
    struct Buffer([u8; 4096]);
    let mut buffer = Buffer([0; 4096]);
    loop {
        // SAFETY: getdents64 writes at most the buffer's length into it.
        let n = unsafe {
            libc::syscall(libc::SYS_getdents64, dir, buffer.0.as_mut_ptr(), buffer.0.len())
        };
        let Ok(n) = usize::try_from(n) else { break };
        let Some(entries) = buffer.0.get(..n).filter(|entries| !entries.is_empty()) else {
            break;
        };
        let mut pos = 0usize;
        // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
        while let Some(record) = entries.get(pos..) {
            let reclen = match record.get(16..18) {
                Some(&[low, high]) => usize::from(u16::from_ne_bytes([low, high])),
                _ => break,
            };
            if reclen == 0 {
                break;
            }
            let name = record.get(19..reclen.min(record.len())).unwrap_or(&[]);
            let mut fd: libc::c_int = 0;
            let mut digits = 0;
            for &byte in name {
                if !byte.is_ascii_digit() {
                    break;
                }
                fd = fd.saturating_mul(10).saturating_add(libc::c_int::from(byte - b'0'));
                digits += 1;
            }
            if digits > 0 && fd >= from && fd != dir {
                // SAFETY: as in mark_cloexec_from.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            pos = pos.saturating_add(reclen);
        }
    }
    // SAFETY: closing the directory fd we opened.
    unsafe { libc::close(dir) };
    true
}

#[cfg(test)]
mod tests;
