//! supervisord's spawn rules: what a program's configuration turns into before
//! any child exists.
//!
//! Owns the rules of supervisord's `Subprocess.spawn` that decide what runs and
//! how it fails: the PATH search for `argv[0]` ([`search_path`],
//! [`resolve_command`]) and its `spawnerr` texts ([`SpawnError`], with Python's
//! `repr` of the path), which of supervisord's faults each error becomes
//! ([`SpawnFault`]), the child environment's merge order
//! ([`child_environment`]; `env.rs` keeps the daemon's part shared), the user's
//! supplementary groups ([`SpawnUser`], looked up here because the child may
//! not use NSS), and the file limit children start with
//! ([`set_child_file_limit`]). The result is a [`SpawnSpec`].
//!
//! It creates no process: `launch.rs` turns a spec into a child (the clone and
//! everything done in the child before `execve`), and only the reaper calls it,
//! inside its spawn gate, so the pid is registered before its exit can be reaped.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;
use nix::unistd::{AccessFlags, Gid, Uid, User};
use vigil_config::py_repr;

pub(crate) mod env;

pub use env::{ChildEnv, InheritedEnv};

/// supervisord's PATH when neither the program nor the daemon has one.
pub const DEFAULT_PATH: &str = "/bin:/usr/bin:/usr/local/bin";

/// Everything needed to start one child. Built by the process actor per spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSpec {
    /// The command; `argv[0]` already resolved to a path by [`resolve_command`].
    pub argv: Vec<String>,
    /// The complete environment of the child (see [`child_environment`]).
    pub env: ChildEnv,
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
    /// A descriptor to give the child as fd 0 instead of any stdin (an
    /// `[fcgi-program:x]`'s listening socket); takes precedence over
    /// `pipe_stdin`.
    pub stdin_socket: Option<SharedFd>,
    /// Resource limits set in the child before the privilege drop (`rlimit_*`).
    pub rlimits: Vec<vigil_config::ResourceLimit>,
    /// `cgroup.procs` files of the control groups the child joins before exec.
    pub cgroups: Vec<std::path::PathBuf>,
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
            env: ChildEnv::default(),
            cwd: None,
            umask: None,
            user: None,
            redirect_stderr: false,
            pipe_stdin: false,
            close_fds_from: 3,
            stdin_socket: None,
            rlimits: Vec::new(),
            cgroups: Vec::new(),
        }
    }
}

/// A resolved identity: uid, primary gid and the supplementary groups, all computed
/// before spawning because group lookup (NSS) is not allowed in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnUser {
    /// The user id to switch to.
    pub uid: u32,
    /// The primary group id.
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
    /// The command has no words.
    #[error("command is empty")]
    EmptyCommand,
    /// `argv[0]` (as searched for) does not exist.
    #[error("can't find command {}", py_repr(.0))]
    NotFound(String),
    /// `argv[0]` resolved to a directory.
    #[error("command at {} is a directory", py_repr(.0))]
    IsDirectory(String),
    /// `argv[0]` resolved to a file without any execute bit.
    #[error("command at {} is not executable", py_repr(.0))]
    NotExecutable(String),
    /// `argv[0]` has an execute bit, but not one the daemon may use.
    #[error("no permission to run command {}", py_repr(.0))]
    NoPermission(String),
    /// An argument, environment entry or directory contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    NulByte {
        /// Which of them, in words.
        what: String,
    },
    /// The configured user's groups could not be looked up.
    #[error("couldn't look up user {user}: {reason}")]
    UserLookup {
        /// The user as configured.
        user: String,
        /// What the lookup said.
        reason: String,
    },
    /// The privilege drop was refused or failed (`reason` is supervisord's wording).
    #[error("couldn't setuid to {uid}: {reason}")]
    SetUid {
        /// The uid the child was to switch to.
        uid: u32,
        /// supervisord's wording of the failure.
        reason: String,
    },
    /// The child could not enter its `directory`.
    #[error("couldn't chdir to {}: {}", .path.display(), errno_name(*.errno))]
    Chdir {
        /// The configured directory.
        path: PathBuf,
        /// Why `chdir` failed.
        errno: Errno,
    },
    /// A resource limit (`rlimit_*`) could not be set in the child.
    #[error("couldn't set resource limit {name}: {}", errno_name(*.errno))]
    Rlimit {
        /// The limit's name (`nofile`).
        name: String,
        /// Why `setrlimit` failed.
        errno: Errno,
    },
    /// The child could not join its control group.
    #[error("couldn't join control group {}: {}", .path.display(), errno_name(*.errno))]
    Cgroup {
        /// The `cgroup.procs` file.
        path: std::path::PathBuf,
        /// Why opening or writing it failed.
        errno: Errno,
    },
    /// `execve` failed.
    #[error("couldn't exec {path}: {}", errno_name(*.errno))]
    Exec {
        /// The resolved command.
        path: String,
        /// Why `execve` failed.
        errno: Errno,
    },
    /// The child could not be created (`clone`: EAGAIN, ENOMEM) or could not set up
    /// its stdio or process group.
    #[error("couldn't fork: {0}")]
    Fork(#[source] io::Error),
    /// Pipes could not be created or registered with tokio.
    #[error("couldn't create pipes: {0}")]
    Pipes(#[source] io::Error),
    /// Called outside a tokio runtime.
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

/// The PATH supervisord searches for a bare command name: the program's own
/// `environment` PATH if it sets one (even empty), else its env files' PATH,
/// else the `[supervisord] environment` PATH, else the daemon's PATH if non-empty, else `None` (which
/// [`resolve_command`] turns into [`DEFAULT_PATH`]).
pub fn search_path(
    daemon_env: &InheritedEnv,
    global: &BTreeMap<String, String>,
    env_files: &BTreeMap<String, String>,
    program: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(path) =
        program.get("PATH").or_else(|| env_files.get("PATH")).or_else(|| global.get("PATH"))
    {
        return Some(path.clone());
    }
    daemon_env.get("PATH").filter(|value| !value.is_empty()).map(str::to_owned)
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
/// environment`, then what the program's env files set (`env_files`), then the
/// program's `environment` (later entries win, so the global block can override
/// `SUPERVISOR_*`, as supervisord's code does). Sorted by name.
pub fn child_environment(
    daemon_env: &Arc<InheritedEnv>,
    global: &BTreeMap<String, String>,
    env_files: &BTreeMap<String, String>,
    program: &BTreeMap<String, String>,
    process_name: &str,
    group_name: &str,
    server_url: Option<&str>,
) -> ChildEnv {
    let mut set = BTreeMap::new();
    set.insert("SUPERVISOR_ENABLED".to_owned(), "1".to_owned());
    if let Some(url) = server_url {
        set.insert("SUPERVISOR_SERVER_URL".to_owned(), url.to_owned());
    }
    set.insert("SUPERVISOR_PROCESS_NAME".to_owned(), process_name.to_owned());
    set.insert("SUPERVISOR_GROUP_NAME".to_owned(), group_name.to_owned());
    set.extend(global.iter().map(|(k, v)| (k.clone(), v.clone())));
    set.extend(env_files.iter().map(|(k, v)| (k.clone(), v.clone())));
    set.extend(program.iter().map(|(k, v)| (k.clone(), v.clone())));
    ChildEnv::new(Arc::clone(daemon_env), set)
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

/// The RLIMIT_NOFILE children start with, if [`set_child_file_limit`] was called.
pub(crate) fn child_file_limit() -> Option<(u64, u64)> {
    CHILD_FILE_LIMIT.get().copied()
}

#[cfg(test)]
mod tests;
