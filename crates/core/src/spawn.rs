//! Turning a program's configuration into a running child: command resolution,
//! the child environment, privilege drop and the exact `pre_exec` sequence.
//!
//! Owns supervisord's spawn rules (`Subprocess.spawn` / `_spawn_as_child`): the PATH
//! search and its `spawnerr` texts, the environment merge order, and the order of
//! work in the child (own process group, stdio, privilege drop, chdir, umask, exec).
//! It does not own waiting: a prepared spawn is launched only by
//! [`crate::reaper::Reaper::spawn`], under the reaper's lock, because std waits
//! internally for a child whose exec failed and a concurrent `waitpid(-1)` would
//! steal that status.
//!
//! # Order of work in the child
//!
//! std's `do_exec` runs, in order: dup2 of the pipes onto fds 0/1/2,
//! `setpgid(0, 0)` (from [`std::os::unix::process::CommandExt::process_group`]), a
//! reset of the signal mask, then our `pre_exec` closure, then `execvp`. The closure:
//!
//! 1. resets every signal disposition to `SIG_DFL` (ignored signals survive exec),
//! 2. marks every fd from `close_fds_from` up close-on-exec (`close_range` with
//!    `CLOSE_RANGE_CLOEXEC`, else a `/proc/self/fd` scan, else a loop to the fd
//!    limit). Marking instead of closing keeps std's exec-error pipe working,
//! 3. `setgroups` -> `setgid` -> `setuid` with groups computed in the parent
//!    (no NSS after fork),
//! 4. `chdir` (after setuid, as supervisord does, so a directory only the target
//!    user can enter works and one it cannot enter fails),
//! 5. `umask`.
//!
//! Before step 3 it also restores the RLIMIT_NOFILE the daemon started with, when
//! the daemon raised its own ([`set_child_file_limit`]).
//!
//! `Command::uid/gid/current_dir` are deliberately not used: std applies them before
//! `pre_exec`, which breaks the `setgroups` ordering and supervisord's chdir order.
//! A failing step writes its number and errno to a private close-on-exec status pipe
//! before failing, so the parent can say which step failed (`couldn't chdir to X:
//! ENOENT`) rather than a bare errno.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::unistd::{AccessFlags, Gid, Uid, User};
use tokio::net::unix::pipe;

/// supervisord's PATH when neither the program nor the daemon has one.
pub const DEFAULT_PATH: &str = "/bin:/usr/bin:/usr/local/bin";

/// Everything needed to start one child. Built by the process actor per spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// The command; `argv[0]` already resolved to a path by [`resolve_command`].
    pub argv: Vec<String>,
    /// The complete environment of the child (see [`child_environment`]).
    pub env: Vec<(String, String)>,
    /// Directory to chdir into (after the privilege drop); `None` keeps the daemon's.
    pub cwd: Option<PathBuf>,
    /// umask for the child; `None` inherits the daemon's.
    pub umask: Option<u32>,
    /// Identity to switch to; `None` keeps the daemon's.
    pub user: Option<SpawnUser>,
    /// Send fd 2 into the stdout pipe (supervisord's `redirect_stderr`).
    pub redirect_stderr: bool,
    /// Give the child a stdin pipe (for `sendProcessStdin` and event listeners);
    /// otherwise stdin is `/dev/null`.
    pub pipe_stdin: bool,
    /// First fd marked close-on-exec; 3 closes everything above stderr.
    pub close_fds_from: i32,
    /// A listening socket to give the child as fd 0 instead of any stdin
    /// (`[fcgi-program:x]`); takes precedence over `pipe_stdin`.
    pub stdin_socket: Option<SharedFd>,
}

/// A descriptor shared by the daemon and its children (an fcgi socket): the
/// daemon's copy closes when the last clone is dropped. Two are equal when they
/// are the same shared descriptor.
#[derive(Debug, Clone)]
pub struct SharedFd(pub std::sync::Arc<OwnedFd>);

impl PartialEq for SharedFd {
    fn eq(&self, other: &SharedFd) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedFd {}

impl SpawnSpec {
    /// A spec for `argv` with an empty environment, no user switch, separate stdout and
    /// stderr pipes, no stdin pipe, and every fd above stderr closed.
    pub fn new(argv: Vec<String>) -> SpawnSpec {
        SpawnSpec {
            argv,
            env: Vec::new(),
            cwd: None,
            umask: None,
            user: None,
            redirect_stderr: false,
            pipe_stdin: false,
            close_fds_from: 3,
            stdin_socket: None,
        }
    }
}

/// A resolved identity: uid, primary gid and the supplementary groups, all computed
/// before forking because group lookup (NSS) is not allowed after fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, primary gid first (supervisord puts it first too).
    pub groups: Vec<u32>,
}

impl SpawnUser {
    /// Resolves the supplementary groups of a configured user with `getgrouplist`.
    ///
    /// A uid without a passwd entry (common in containers with `user=1000`) gets only
    /// its primary group rather than an error: there is no name to look groups up by.
    pub fn resolve(user: &vigil_config::UserSpec) -> Result<SpawnUser, SpawnError> {
        let record = User::from_uid(Uid::from_raw(user.uid)).map_err(|errno| {
            SpawnError::UserLookup { user: user.name.clone(), reason: errno.desc().to_owned() }
        })?;
        let mut groups = vec![user.gid];
        if let Some(record) = record {
            let name =
                CString::new(record.name.as_bytes()).map_err(|_| SpawnError::UserLookup {
                    user: user.name.clone(),
                    reason: "user name contains a NUL byte".to_owned(),
                })?;
            let found =
                nix::unistd::getgrouplist(&name, Gid::from_raw(user.gid)).map_err(|errno| {
                    SpawnError::UserLookup {
                        user: user.name.clone(),
                        reason: format!("getgrouplist: {errno}"),
                    }
                })?;
            for gid in found {
                if !groups.contains(&gid.as_raw()) {
                    groups.push(gid.as_raw());
                }
            }
        }
        Ok(SpawnUser { uid: user.uid, gid: user.gid, groups })
    }
}

/// Which supervisord fault a spawn error maps to in `startProcess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFault {
    /// `NO_FILE`: the command was not found.
    NoFile,
    /// `NOT_EXECUTABLE`: found but not runnable (directory, mode, permission, empty).
    NotExecutable,
    /// `SPAWN_ERROR`: anything that failed while creating the child.
    SpawnError,
}

/// Why a child could not be started. `Display` is supervisord's `spawnerr` text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    #[error("command is empty")]
    EmptyCommand,
    #[error("can't find command {}", py_repr(.0))]
    NotFound(String),
    #[error("command at {} is a directory", py_repr(.0))]
    IsDirectory(String),
    #[error("command at {} is not executable", py_repr(.0))]
    NotExecutable(String),
    #[error("no permission to run command {}", py_repr(.0))]
    NoPermission(String),
    /// An argument, environment entry or directory contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    NulByte { what: String },
    #[error("couldn't look up user {user}: {reason}")]
    UserLookup { user: String, reason: String },
    /// The privilege drop was refused or failed (`reason` is supervisord's wording).
    #[error("couldn't setuid to {uid}: {reason}")]
    SetUid { uid: u32, reason: String },
    #[error("couldn't chdir to {}: {}", .path.display(), errno_name(*.errno))]
    Chdir { path: PathBuf, errno: Errno },
    #[error("couldn't exec {path}: {}", errno_name(*.errno))]
    Exec { path: String, errno: Errno },
    /// fork itself failed (EAGAIN, ENOMEM) or std could not set up the child.
    #[error("couldn't fork: {0}")]
    Fork(#[source] io::Error),
    /// Pipes could not be created or registered with tokio.
    #[error("couldn't create pipes: {0}")]
    Pipes(#[source] io::Error),
    #[error("spawning needs a tokio runtime (the child's pipes are registered with it)")]
    NoRuntime,
}

impl SpawnError {
    /// The supervisord fault this error becomes in `startProcess`.
    pub fn fault(&self) -> SpawnFault {
        match self {
            SpawnError::NotFound(_) => SpawnFault::NoFile,
            SpawnError::EmptyCommand
            | SpawnError::IsDirectory(_)
            | SpawnError::NotExecutable(_)
            | SpawnError::NoPermission(_) => SpawnFault::NotExecutable,
            _ => SpawnFault::SpawnError,
        }
    }
}

/// The symbolic errno name supervisord prints (`ENOENT`).
fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

/// Python's `repr()` of a string, which supervisord uses in its spawnerr texts:
/// single quotes unless the text contains a single quote and no double quote.
pub(crate) fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The PATH supervisord searches for a bare command name: the program's own
/// `environment` PATH if it sets one (even empty), else the `[supervisord]
/// environment` PATH, else the daemon's PATH if non-empty, else `None` (which
/// [`resolve_command`] turns into [`DEFAULT_PATH`]).
pub fn search_path(
    daemon_env: &[(String, String)],
    global: &BTreeMap<String, String>,
    program: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(path) = program.get("PATH").or_else(|| global.get("PATH")) {
        return Some(path.clone());
    }
    daemon_env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .filter(|value| !value.is_empty())
}

/// Resolves `argv[0]` the way supervisord's `get_execv_args` does and checks it.
///
/// A name containing `/` is used as given (relative names against the daemon's cwd,
/// before the child's chdir). A bare name is looked up in each `path_env` directory
/// in order and the first entry that exists wins, even if it then fails the checks
/// (so a directory named like the command earlier in PATH gives "is a directory").
/// Errors, in supervisord's words: `can't find command 'x'`, `command at 'x' is a
/// directory`, `command at 'x' is not executable`, `no permission to run command 'x'`.
pub fn resolve_command(argv: &[String], path_env: Option<&str>) -> Result<Vec<String>, SpawnError> {
    let program = argv.first().ok_or(SpawnError::EmptyCommand)?;
    let (filename, metadata) = if program.contains('/') {
        (program.clone(), std::fs::metadata(program).ok())
    } else {
        let dirs = path_env.unwrap_or(DEFAULT_PATH);
        dirs.split(':')
            .map(|dir| python_path_join(dir, program))
            .find_map(|candidate| {
                std::fs::metadata(&candidate).ok().map(|metadata| (candidate, Some(metadata)))
            })
            .unwrap_or_else(|| (program.clone(), None))
    };
    let Some(metadata) = metadata else {
        return Err(SpawnError::NotFound(filename));
    };
    if metadata.is_dir() {
        return Err(SpawnError::IsDirectory(filename));
    }
    if metadata.permissions().mode() & 0o111 == 0 {
        return Err(SpawnError::NotExecutable(filename));
    }
    if nix::unistd::access(filename.as_str(), AccessFlags::X_OK).is_err() {
        return Err(SpawnError::NoPermission(filename));
    }
    let mut resolved = argv.to_vec();
    resolved[0] = filename;
    Ok(resolved)
}

/// `os.path.join(dir, name)` for a name without `/`: an empty directory means the
/// current directory, as in Python.
fn python_path_join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Builds a child's environment in supervisord's order: the daemon's environment,
/// then `SUPERVISOR_ENABLED=1`, `SUPERVISOR_SERVER_URL` (when known),
/// `SUPERVISOR_PROCESS_NAME`, `SUPERVISOR_GROUP_NAME`, then `[supervisord]
/// environment`, then the program's `environment` (later entries win, so the global
/// block can override `SUPERVISOR_*`, as supervisord's code does). Sorted by name.
pub fn child_environment(
    daemon_env: &[(String, String)],
    global: &BTreeMap<String, String>,
    program: &BTreeMap<String, String>,
    process_name: &str,
    group_name: &str,
    server_url: Option<&str>,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = daemon_env.iter().cloned().collect();
    env.insert("SUPERVISOR_ENABLED".to_owned(), "1".to_owned());
    if let Some(url) = server_url {
        env.insert("SUPERVISOR_SERVER_URL".to_owned(), url.to_owned());
    }
    env.insert("SUPERVISOR_PROCESS_NAME".to_owned(), process_name.to_owned());
    env.insert("SUPERVISOR_GROUP_NAME".to_owned(), group_name.to_owned());
    env.extend(global.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(program.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

/// Steps of the `pre_exec` closure, as reported over the status pipe.
const STEP_SETGROUPS: u8 = 1;
const STEP_SETGID: u8 = 2;
const STEP_SETUID: u8 = 3;
const STEP_CHDIR: u8 = 4;
/// Written just before returning to std for exec: a later failure is exec's.
const STEP_EXEC: u8 = 5;

/// `close_range` flag (linux/close_range.h); not exported by every libc version.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// The privilege drop the child performs, precomputed in the parent.
struct PrivilegeDrop {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

/// The parent ends of a child's pipes.
pub(crate) struct ParentPipes {
    pub(crate) stdin: Option<pipe::Sender>,
    pub(crate) stdout: Option<pipe::Receiver>,
    pub(crate) stderr: Option<pipe::Receiver>,
}

/// A spawn with every allocation, lookup and pipe done; only fork/exec is left, which
/// [`Prepared::launch`] does under the reaper's lock.
pub(crate) struct Prepared {
    command: Command,
    program: String,
    cwd: Option<PathBuf>,
    uid: Option<u32>,
    status_read: std::io::PipeReader,
    status_write: std::io::PipeWriter,
    pipes: ParentPipes,
}

impl Prepared {
    /// Validates `spec`, creates the pipes (registered with the current tokio runtime)
    /// and builds the command with its `pre_exec` closure. Forks nothing.
    pub(crate) fn new(spec: &SpawnSpec) -> Result<Prepared, SpawnError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SpawnError::NoRuntime);
        }
        let program = spec.argv.first().ok_or(SpawnError::EmptyCommand)?.clone();
        for (index, arg) in spec.argv.iter().enumerate() {
            if arg.contains('\0') {
                return Err(SpawnError::NulByte { what: format!("argument {index}") });
            }
        }
        for (key, value) in &spec.env {
            if key.contains('\0') || value.contains('\0') || key.contains('=') || key.is_empty() {
                return Err(SpawnError::NulByte { what: format!("environment entry {key:?}") });
            }
        }
        let cwd = match &spec.cwd {
            Some(dir) => Some(CString::new(dir.as_os_str().as_bytes()).map_err(|_| {
                SpawnError::NulByte { what: format!("directory {}", dir.display()) }
            })?),
            None => None,
        };
        let drop = privilege_drop(spec.user.as_ref())?;

        let mut command = Command::new(OsStr::new(&program));
        command.args(&spec.argv[1..]).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v)));
        // setpgrp() first, like supervisord: the child leads its own process group so
        // stopasgroup/killasgroup can signal -pid.
        command.process_group(0);

        let (stdout_read, stdout_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
        let stdout =
            pipe::Receiver::from_owned_fd(OwnedFd::from(stdout_read)).map_err(SpawnError::Pipes)?;
        let stderr = if spec.redirect_stderr {
            command.stderr(Stdio::from(stdout_write.try_clone().map_err(SpawnError::Pipes)?));
            None
        } else {
            let (stderr_read, stderr_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
            command.stderr(Stdio::from(stderr_write));
            Some(
                pipe::Receiver::from_owned_fd(OwnedFd::from(stderr_read))
                    .map_err(SpawnError::Pipes)?,
            )
        };
        command.stdout(Stdio::from(stdout_write));
        let stdin = if let Some(socket) = &spec.stdin_socket {
            // The child gets its own descriptor as fd 0; the daemon keeps `socket`.
            command.stdin(Stdio::from(socket.0.try_clone().map_err(SpawnError::Pipes)?));
            None
        } else if spec.pipe_stdin {
            let (stdin_read, stdin_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
            command.stdin(Stdio::from(stdin_read));
            Some(
                pipe::Sender::from_owned_fd(OwnedFd::from(stdin_write))
                    .map_err(SpawnError::Pipes)?,
            )
        } else {
            command.stdin(Stdio::null());
            None
        };

        let (status_read, status_write) = std::io::pipe().map_err(SpawnError::Pipes)?;
        // Non-blocking so reading the failure report can never hang on a write end
        // inherited by some other thread's child that has not exec'd yet.
        set_nonblocking(status_read.as_raw_fd()).map_err(SpawnError::Pipes)?;
        let status_fd = status_write.as_raw_fd();
        let close_from = spec.close_fds_from.max(3);
        let fd_limit = open_file_limit();
        let umask = spec.umask.map(|mask| mask as libc::mode_t);
        let uid = drop.as_ref().map(|d| d.uid);
        let file_limit = CHILD_FILE_LIMIT
            .get()
            .map(|&(soft, hard)| libc::rlimit { rlim_cur: soft, rlim_max: hard });
        let child_setup =
            ChildSetup { status_fd, close_from, fd_limit, file_limit, drop, cwd, umask };
        // SAFETY: the closure runs between fork and exec in a copy of a possibly
        // multi-threaded process. It only calls async-signal-safe functions
        // (sigaction, syscall, open, fcntl, close, setrlimit, setgroups, setgid,
        // setuid, chdir, umask, write) on data prepared before the fork; it never
        // allocates or locks.
        unsafe {
            command.pre_exec(move || child_setup.run());
        }
        Ok(Prepared {
            command,
            program,
            cwd: spec.cwd.clone(),
            uid,
            status_read,
            status_write,
            pipes: ParentPipes { stdin, stdout: Some(stdout), stderr },
        })
    }

    /// Forks and execs. Must be called with the reaper's lock held (see module docs).
    /// Returns the pid and the parent pipe ends; the std `Child` is dropped without
    /// waiting, since the reaper owns every wait.
    pub(crate) fn launch(self) -> Result<(u32, ParentPipes), SpawnError> {
        let Prepared { mut command, program, cwd, uid, mut status_read, status_write, pipes } =
            self;
        let result = command.spawn();
        // Close the parent's copies of the child's pipe ends now, or the stdout
        // reader would never see EOF.
        drop(command);
        drop(status_write);
        match result {
            Ok(child) => {
                let pid = child.id();
                drop(child);
                Ok((pid, pipes))
            }
            Err(error) => {
                let mut report = [0u8; 5];
                let mut got = 0;
                while got < report.len() {
                    match status_read.read(&mut report[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let errno = Errno::from_raw(error.raw_os_error().unwrap_or(0));
                Err(decode_failure(&report[..got], errno, error, &program, cwd, uid))
            }
        }
    }
}

/// Turns the child's status-pipe report into the error supervisord would have shown.
fn decode_failure(
    report: &[u8],
    errno: Errno,
    error: io::Error,
    program: &str,
    cwd: Option<PathBuf>,
    uid: Option<u32>,
) -> SpawnError {
    // The child writes at most one report: the step that failed, or "about to exec".
    let step = report.first().copied();
    let uid = uid.unwrap_or(0);
    match step {
        Some(STEP_SETGROUPS) => {
            SpawnError::SetUid { uid, reason: "Could not set groups of effective user".to_owned() }
        }
        Some(STEP_SETGID) => SpawnError::SetUid {
            uid,
            reason: "Could not set group id of effective user".to_owned(),
        },
        Some(STEP_SETUID) => SpawnError::SetUid { uid, reason: errno.desc().to_owned() },
        Some(STEP_CHDIR) => SpawnError::Chdir { path: cwd.unwrap_or_default(), errno },
        Some(STEP_EXEC) => SpawnError::Exec { path: program.to_owned(), errno },
        _ => SpawnError::Fork(error),
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

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; F_GETFL/F_SETFL have no memory effects.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The RLIMIT_NOFILE (soft, hard) children start with, once the daemon raised its
/// own; unset, children inherit the daemon's limit.
static CHILD_FILE_LIMIT: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Makes every child start with this RLIMIT_NOFILE. A supervisor holds five
/// descriptors per program (three pipes, two log files), so vigild raises its
/// own limit to supervise thousands of programs; its children still get the
/// limit the daemon was started with (after `minfds`), as under supervisord,
/// because programs size tables by it or use `select(2)`. Set once, before the
/// first spawn; later calls are ignored.
pub fn set_child_file_limit(soft: u64, hard: u64) {
    let _ = CHILD_FILE_LIMIT.set((soft, hard));
}

/// The soft RLIMIT_NOFILE, bounding the last-resort fd loop in the child.
fn open_file_limit() -> libc::c_int {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => libc::c_int::try_from(soft).unwrap_or(libc::c_int::MAX).min(1 << 20),
        Err(_) => 1024,
    }
}

/// Everything the `pre_exec` closure needs, prepared before the fork.
struct ChildSetup {
    status_fd: RawFd,
    close_from: libc::c_int,
    fd_limit: libc::c_int,
    /// The RLIMIT_NOFILE the child starts with (see [`set_child_file_limit`]).
    file_limit: Option<libc::rlimit>,
    drop: Option<PrivilegeDrop>,
    cwd: Option<CString>,
    umask: Option<libc::mode_t>,
}

impl ChildSetup {
    /// Runs in the child between fork and exec: async-signal-safe calls only.
    fn run(&self) -> io::Result<()> {
        reset_signal_dispositions();
        mark_cloexec_from(self.close_from, self.fd_limit);
        if let Some(limit) = &self.file_limit {
            // Lowering a limit needs no privilege; should it fail, the child keeps
            // the daemon's higher limit, which is harmless.
            // SAFETY: setrlimit(2) with a prepared struct.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) };
        }
        if let Some(drop) = &self.drop {
            // SAFETY: plain syscalls on prepared data; `groups` outlives the call.
            if unsafe { libc::setgroups(drop.groups.len(), drop.groups.as_ptr()) } != 0 {
                return Err(self.fail(STEP_SETGROUPS));
            }
            // SAFETY: as above.
            if unsafe { libc::setgid(drop.gid) } != 0 {
                return Err(self.fail(STEP_SETGID));
            }
            // SAFETY: as above.
            if unsafe { libc::setuid(drop.uid) } != 0 {
                return Err(self.fail(STEP_SETUID));
            }
        }
        if let Some(cwd) = &self.cwd {
            // SAFETY: `cwd` is a valid NUL-terminated string prepared before fork.
            if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
                return Err(self.fail(STEP_CHDIR));
            }
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(mask) };
        }
        self.report(STEP_EXEC, 0);
        Ok(())
    }

    /// Reports a failed step on the status pipe and returns the errno for std.
    fn fail(&self, step: u8) -> io::Error {
        let errno = Errno::last_raw();
        self.report(step, errno);
        io::Error::from_raw_os_error(errno)
    }

    fn report(&self, step: u8, errno: i32) {
        let bytes = errno.to_le_bytes();
        let buf = [step, bytes[0], bytes[1], bytes[2], bytes[3]];
        // SAFETY: write(2) of a stack buffer to our own pipe; a short or failed write
        // only loses detail in the error message.
        unsafe { libc::write(self.status_fd, buf.as_ptr().cast(), buf.len()) };
    }
}

/// Restores every catchable signal to its default action. Handlers are reset by exec
/// anyway, but ignored signals (SIG_IGN) would otherwise be inherited by the program.
fn reset_signal_dispositions() {
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction is async-signal-safe; a zeroed sigaction is SIG_DFL with
        // an empty mask. Invalid numbers (glibc-reserved 32/33) just return EINVAL.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
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
        if n <= 0 {
            break;
        }
        let mut pos = 0usize;
        while pos < n as usize {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
            let reclen = u16::from_ne_bytes([buffer.0[pos + 16], buffer.0[pos + 17]]) as usize;
            let mut fd: libc::c_int = 0;
            let mut digits = 0;
            for &byte in &buffer.0[pos + 19..pos + reclen] {
                if !byte.is_ascii_digit() {
                    break;
                }
                fd = fd.saturating_mul(10).saturating_add((byte - b'0') as libc::c_int);
                digits += 1;
            }
            if digits > 0 && fd >= from && fd != dir {
                // SAFETY: as in mark_cloexec_from.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            pos += reclen.max(1);
        }
    }
    // SAFETY: closing the directory fd we opened.
    unsafe { libc::close(dir) };
    true
}

#[cfg(test)]
mod tests;
