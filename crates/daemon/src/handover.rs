//! Live upgrade: vigild replaces its own image with `execve` (same pid, so
//! every program stays its child) and the new image carries on from the
//! state the old one wrote down.
//!
//! This module owns the handover format and the steps around `execve`; the
//! tree's part (freezing and adopting process actors) is
//! `vigil_core::handover`, the sequence is in `app.rs`.
//!
//! Format: a memfd holding [`MAGIC`], the format version (u32, little
//! endian), the body's length (u64, little endian) and the body, a [`State`]
//! in postcard (serde's compact binary encoding: the fields in declaration
//! order, no names; a fifth the time of JSON to write and read with
//! thousands of processes, and both are on the upgrade's pause). The version
//! changes with any change to a field (added, removed, reordered or changing
//! meaning); a reader accepts exactly its own version. The new
//! binary is asked first (`vigild --handover-check VERSION`, see
//! [`check_flag`]), and an image that still finds another version refuses it
//! before anything is applied and executes the old image again from the
//! descriptor the old image kept of its own executable, so a refusal is
//! never half-applied.
//!
//! The signals vigild acts on are blocked across `execve`
//! ([`crate::signals::hold`]), so one sent in the gap waits for the new
//! image's handlers instead of ending vigild by its default action.
//!
//! The descriptors the state names (the control listeners, each child's
//! pipes, the memfd itself and the old executable) are close-on-exec until
//! [`keep_across_exec`] clears the flag just before `execve`; every other
//! descriptor closes. Their numbers go in the state, and the memfd's and the
//! executable's in [`STATE_ENV`], which the new image removes from its
//! environment before anything can inherit it.

use std::ffi::{CString, OsString};
use std::io::{Seek as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_core::handover::{CarriedEvents, CarriedProcess, CarriedSocket};

/// The first bytes of the state.
pub const MAGIC: &[u8; 8] = b"VIGILHO\n";
/// The format this build writes and reads.
pub const FORMAT: u32 = 11;
/// `MEMFD,EXE`: where the new image finds the state and the old executable.
pub const STATE_ENV: &str = "VIGILD_HANDOVER";
/// Set by an image that refused the state, for the old image it executes
/// again to log why.
pub const REFUSED_ENV: &str = "VIGILD_HANDOVER_REFUSED";
/// Overrides [`FORMAT`]: how the tests build "a vigild with another format"
/// without a second build. Not for production use.
pub const FORMAT_ENV: &str = "VIGILD_HANDOVER_FORMAT";
/// Holds an image that read a state in the gap (its listeners served from
/// the carried records, before it loads its config) until this file (a
/// FIFO) has been written and closed: how the tests make a control call
/// during the gap. The old image, executed again after a refusal, is held
/// too, so a test can change what it will load. Not for production use.
pub const HOLD_ENV: &str = "VIGILD_HANDOVER_HOLD";
/// Holds an image's resume of the carried groups, once its config has
/// loaded, until this file (a FIFO) has been written and closed: only the
/// groups a control call names are resumed meanwhile (see `gap.rs`). How the
/// tests show such a call answered before the rest of the tree is back. Not
/// for production use.
pub const RESUME_HOLD_ENV: &str = "VIGILD_RESUME_HOLD";
/// Set in the pre-flight's environment: the descriptor (`0`) to write the
/// configuration it loaded into (see `carry.rs`).
pub const CONFIG_ENV: &str = "VIGILD_HANDOVER_CONFIG";
/// The name of the memfd given to the pre-flight for it.
pub const CONFIG_MEMFD: &std::ffi::CStr = c"vigild-config";
/// The variables the next image is executed without: each holds only the
/// image it was given to.
pub const DROPPED_AT_EXEC: [&str; 2] = [HOLD_ENV, RESUME_HOLD_ENV];
/// The largest state read (500 bytes or so per program).
const MAX_STATE: u64 = 512 * 1024 * 1024;
/// How long the pre-flight run of the new binary may take.
const PREFLIGHT: Duration = Duration::from_secs(10);
/// The most of the pre-flight's output kept for the error.
const PREFLIGHT_OUTPUT: usize = 4096;

/// [`RESUME_HOLD_ENV`]'s hold: `false` until its FIFO has been written and
/// closed; `None` without it.
pub fn resume_hold() -> Option<tokio::sync::watch::Receiver<bool>> {
    let fifo = std::env::var_os(RESUME_HOLD_ENV)?;
    let (release, held) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        use std::io::Read as _;
        // Opening waits for the writer; an error releases at once.
        if let Ok(mut reader) = std::fs::File::open(&fifo) {
            let _ = reader.read_to_end(&mut Vec::new());
        }
        release.send_replace(true);
    });
    Some(held)
}

/// The format version in force: [`FORMAT`] unless [`FORMAT_ENV`] says another.
pub fn format() -> u32 {
    std::env::var(FORMAT_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(FORMAT)
}

/// What the new image resumes from.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// The old image's package version.
    pub from_version: String,
    /// The unix control listener's descriptor.
    pub unix_listener: Option<RawFd>,
    /// The path it serves (`[unix_http_server] file`), for the next image
    /// to see whether its config moved it; `None` from an image that did not
    /// say, which the next image takes as unmoved.
    #[serde(default)]
    pub unix_path: Option<std::path::PathBuf>,
    /// The inet control listener's descriptor.
    pub inet_listener: Option<RawFd>,
    /// When the first image of this daemon started, ms since the epoch.
    pub started_unix_ms: u64,
    /// Reloads so far.
    pub reloads: u64,
    /// Config generation.
    pub generation: u64,
    /// Live upgrades before this one.
    pub upgrades: u64,
    /// The service manager's variables the first image took from its
    /// environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`), given
    /// back to the next image's environment so it keeps notifying.
    #[serde(default)]
    pub service_env: Vec<(String, String)>,
    /// What the control servers check and say, for the next image to serve
    /// reads before it has loaded its config (`gap.rs`).
    pub control: CarriedControl,
    /// The pidfile the old image wrote, for the next image to remove if its
    /// config moved it.
    pub pidfile: Option<std::path::PathBuf>,
    /// The directory the first image's command line was given in: its
    /// relative paths (`-c vigild.conf`) mean the same to the next image,
    /// which starts in the daemon's directory (`/`, or `directory=`).
    pub launch_dir: std::path::PathBuf,
    /// The event listener pools: queues, serials, each listener's protocol
    /// state and stdout pipe.
    pub events: CarriedEvents,
    /// The fcgi groups' listening sockets.
    pub sockets: Vec<CarriedSocket>,
    /// The memfd holding the configuration the pre-flight run of the new
    /// binary loaded, when it wrote one (see `carry.rs`).
    pub config: Option<RawFd>,
    /// Each carried child's pidfd, as `(pid, descriptor)`: the next image's
    /// reaper registers the child with it instead of opening another.
    pub pidfds: Vec<(u32, RawFd)>,
    /// The processes freeing earlier images (`teardown.rs`), for this image
    /// to reap: the old image's, and any the old image had not reaped yet.
    pub teardown: Vec<u32>,
    /// Every process, in priority order. Last, and encoded by [`write()`]
    /// itself: in parts, on a thread each.
    #[serde(skip_serializing)]
    pub processes: Vec<CarriedProcess>,
}

/// The control servers' settings in force, as the next image serves them
/// until its tree is up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarriedControl {
    /// `[supervisord] identifier`.
    pub identification: String,
    /// The unix socket's credentials (their digests), if it checks any.
    pub unix_auth: Option<vigil_rpc::ServerAuth>,
    /// The inet listener's credentials, as `unix_auth`.
    pub inet_auth: Option<vigil_rpc::ServerAuth>,
}

/// `vigild --handover-check VERSION`: exit status and the line to print.
pub fn check_flag(requested: u32) -> (i32, String) {
    let version = env!("CARGO_PKG_VERSION");
    let ours = format();
    if requested == ours {
        (0, format!("vigild {version} reads handover format {ours}"))
    } else {
        (1, format!("vigild {version} reads handover format {ours}, not {requested}"))
    }
}

/// Writes `state` to `file`, a memfd from [`create`].
///
/// The processes, the state's last field, are encoded in parts on a thread
/// each (`sequence_in_parts`): the old image is otherwise idle on all but
/// one core by then. Postcard writes a sequence as its length, then its
/// items, each encoded independently of its place, so the parts written
/// after that length read back as one sequence.
pub fn write(file: &std::fs::File, state: &State) -> std::io::Result<()> {
    let mut body = vec![postcard::to_stdvec(state).map_err(std::io::Error::other)?];
    body.extend(sequence_in_parts(&state.processes).map_err(std::io::Error::other)?);
    let body: Vec<&[u8]> = body.iter().map(Vec::as_slice).collect();
    write_framed(file, MAGIC, &body)
}

/// `items` as postcard encodes a sequence, in pieces to write one after
/// the other: the length, then the items in up to [`MAX_PARTS`] parts, as
/// many as the cores, encoded on a thread each.
fn sequence_in_parts<T: Serialize + Sync>(items: &[T]) -> postcard::Result<Vec<Vec<u8>>> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let size = items.len().div_ceil(cores.clamp(1, MAX_PARTS)).max(1);
    let chunks: Vec<&[T]> = items.chunks(size).collect();
    let encode = |chunk: &[T]| {
        chunk.iter().try_fold(Vec::new(), |part, item| postcard::to_extend(item, part))
    };
    let mut pieces = vec![postcard::to_stdvec(&items.len())?];
    for part in on_threads(&chunks, &encode) {
        pieces.push(part?);
    }
    Ok(pieces)
}

/// The most threads [`write()`] encodes the processes on.
const MAX_PARTS: usize = 4;

/// `work` on each of `parts`: the first on this thread, the rest on others
/// ([`alongside`]). The results are in the parts' order.
fn on_threads<P: Copy + Sync, R: Send>(parts: &[P], work: &(impl Fn(P) -> R + Sync)) -> Vec<R> {
    match parts {
        [] => Vec::new(),
        [only] => vec![work(*only)],
        [first, rest @ ..] => {
            let (first, mut results) = alongside(|| work(*first), || on_threads(rest, work));
            results.insert(0, first);
            results
        }
    }
}

/// `here` on this thread while `there` runs on another (or after it here,
/// if no thread can be started): what the upgrade does once the old image
/// is idle on all but one core.
pub fn alongside<A, B: Send>(here: impl FnOnce() -> A, there: impl Fn() -> B + Sync) -> (A, B) {
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("vigil-handover".to_owned())
            .spawn_scoped(scope, &there);
        let here = here();
        let there = match spawned {
            Ok(thread) => thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => there(),
        };
        (here, there)
    })
}

/// Writes `magic`, the format version, the body's length and the body (the
/// concatenation of `body`) to `file` (the state's frame, which the carried
/// configuration shares).
pub fn write_framed(file: &std::fs::File, magic: &[u8; 8], body: &[&[u8]]) -> std::io::Result<()> {
    let mut file = file;
    let len: usize = body.iter().map(|piece| piece.len()).sum();
    file.write_all(magic)?;
    file.write_all(&format().to_le_bytes())?;
    file.write_all(&(len as u64).to_le_bytes())?;
    for piece in body {
        file.write_all(piece)?;
    }
    file.rewind()?;
    Ok(())
}

/// An empty memfd for [`write()`] (close-on-exec until [`keep_across_exec`]),
/// made before anything changes, so that a daemon out of descriptors refuses
/// the upgrade instead of failing halfway.
pub fn create() -> std::io::Result<std::fs::File> {
    memfd(c"vigild-handover")
}

/// An empty close-on-exec memfd named `name` (as `/proc/PID/fd` shows it).
pub fn memfd(name: &std::ffi::CStr) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

/// Reads and checks a state written by [`write()`], from its start whatever
/// the descriptor's offset (it is shared with every copy); the error says why
/// it is refused.
pub fn read(file: &std::fs::File) -> Result<State, String> {
    let body = read_framed(file, MAGIC, "the handover state")?;
    match postcard::take_from_bytes(&body) {
        Ok((state, [])) => Ok(state),
        Ok((_, rest)) => Err(format!("the handover state has {} bytes too many", rest.len())),
        Err(e) => Err(format!("the handover state is malformed: {e}")),
    }
}

/// The body of a frame [`write_framed`] wrote with `magic` and this format,
/// read from the start whatever the descriptor's offset; `what` names it in
/// the error.
pub fn read_framed(file: &std::fs::File, magic: &[u8; 8], what: &str) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt as _;
    let mut header = [0u8; 20];
    file.read_exact_at(&mut header, 0).map_err(|e| format!("cannot read {what}: {e}"))?;
    if &header[..8] != magic {
        return Err(format!("{what} does not start with vigild's magic"));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != format() {
        return Err(format!("{what} is format {version}; this vigild reads format {}", format()));
    }
    let len = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if len > MAX_STATE {
        return Err(format!("{what} claims {len} bytes, more than {MAX_STATE}"));
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact_at(&mut body, 20).map_err(|e| format!("cannot read {what}: {e}"))?;
    Ok(body)
}

/// Clears close-on-exec on `fd`, so the next image inherits it.
pub fn keep_across_exec(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::fcntl::{F_SETFD, FdFlag, fcntl};
    // FD_CLOEXEC is the only descriptor flag, so no F_GETFD first: one
    // system call per descriptor, and an upgrade keeps three per program.
    fcntl(fd, F_SETFD(FdFlag::empty()))?;
    Ok(())
}

/// The environment for the next image: ours, with [`STATE_ENV`] set and
/// `extra` added, without `drop`.
fn environment(
    state: RawFd,
    exe: Option<RawFd>,
    extra: &[(&str, &str)],
    drop: &[&str],
) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(key, _)| key != STATE_ENV && key != REFUSED_ENV)
        .filter(|(key, _)| !drop.iter().any(|dropped| key == *dropped))
        .filter_map(|(key, value)| {
            let mut pair = key.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            CString::new(pair).ok()
        })
        .collect();
    let exe = exe.map(|fd| fd.to_string()).unwrap_or_default();
    env.extend(CString::new(format!("{STATE_ENV}={state},{exe}")));
    for (key, value) in extra {
        env.extend(CString::new(format!("{key}={value}")));
    }
    env
}

fn arguments(args: &[OsString]) -> Vec<CString> {
    args.iter().filter_map(|arg| CString::new(arg.as_bytes()).ok()).collect()
}

/// Executes `binary` with `args` and the state in `state`; returns only on
/// failure.
pub fn exec(binary: &Path, args: &[OsString], state: RawFd, exe: Option<RawFd>) -> std::io::Error {
    let Ok(path) = CString::new(binary.as_os_str().as_bytes()) else {
        return std::io::Error::from(std::io::ErrorKind::InvalidInput);
    };
    let env = environment(state, exe, &[], &DROPPED_AT_EXEC);
    let held = crate::signals::hold();
    match nix::unistd::execve(&path, &arguments(args), &env) {
        Ok(never) => match never {},
        Err(errno) => {
            if let Ok(old) = &held {
                crate::signals::release(old);
            }
            errno.into()
        }
    }
}

/// Executes the image in `exe` (the old image's executable) again with the
/// same state, saying why the new image refused it (and held by `hold`, the
/// refusing image's [`HOLD_ENV`]); returns only on failure.
pub fn exec_back(
    exe: BorrowedFd<'_>,
    args: &[OsString],
    state: RawFd,
    why: &str,
    hold: Option<&std::path::Path>,
) -> std::io::Error {
    let mut extra = vec![(REFUSED_ENV, why)];
    extra.extend(hold.and_then(std::path::Path::to_str).map(|hold| (HOLD_ENV, hold)));
    // The old image reads its own format, whatever the refusing one was told.
    let env = environment(state, Some(exe.as_raw_fd()), &extra, &[FORMAT_ENV]);
    let held = crate::signals::hold();
    match nix::unistd::fexecve(exe, &arguments(args), &env) {
        Ok(never) => match never {},
        Err(errno) => {
            if let Ok(old) = &held {
                crate::signals::release(old);
            }
            errno.into()
        }
    }
}

/// What an image started by a live upgrade inherited.
pub struct Inherited {
    /// The state, or why it is refused.
    pub state: Result<State, String>,
    /// The memfd, for [`exec_back`].
    pub memfd: OwnedFd,
    /// The old image's executable, for [`exec_back`].
    pub exe: Option<OwnedFd>,
    /// Set when an image this one's state was handed to refused it (this is
    /// the old image executed again).
    pub refused: Option<String>,
    /// [`HOLD_ENV`]'s file.
    pub hold: Option<std::path::PathBuf>,
}

/// The handover this image was started with, if any; removes the variables
/// from the environment so no child inherits them.
///
/// # Safety
///
/// Call while the process has one thread (it changes the environment).
pub unsafe fn inherited() -> Option<Inherited> {
    let value = std::env::var(STATE_ENV).ok()?;
    let refused = std::env::var(REFUSED_ENV).ok();
    let hold = std::env::var_os(HOLD_ENV).map(std::path::PathBuf::from);
    // SAFETY: single-threaded, as the caller promises.
    unsafe {
        std::env::remove_var(STATE_ENV);
        std::env::remove_var(REFUSED_ENV);
        std::env::remove_var(HOLD_ENV);
    }
    let (memfd, exe) = value.split_once(',').unwrap_or((&value, ""));
    let owned = |text: &str| -> Option<OwnedFd> {
        // The descriptor is only trusted if it is open; it then belongs to
        // this image alone (the old one is gone).
        // SAFETY: inherited, and named for us alone.
        unsafe { own_fd(text.parse().ok()?) }
    };
    let memfd = owned(memfd)?;
    let exe = owned(exe);
    let file = std::fs::File::from(memfd.try_clone().ok()?);
    let state = read(&file);
    // Ours from now on: nothing else inherits them.
    for fd in std::iter::once(&memfd).chain(exe.as_ref()) {
        let _ = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
    Some(Inherited { state, memfd, exe, refused, hold })
}

/// Takes an inherited descriptor named in the state.
///
/// # Safety
///
/// `fd` must be one the state names and nothing else in this image owns.
pub unsafe fn take_fd(fd: RawFd) -> Option<OwnedFd> {
    // Setting close-on-exec fails if it is not open: one system call a
    // descriptor, 15,000 with 5,000 programs.
    // SAFETY: as the caller promises.
    unsafe { owned_after(fd, nix::fcntl::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)) }
}

/// Takes an inherited descriptor named in the state as it is: open, but
/// still inherited across an `execve` (which a refused upgrade's way back
/// needs) until [`vigil_core::close_on_exec_from`] marks them all.
///
/// # Safety
///
/// As [`take_fd`]; and an owner that gives the descriptor back to the old
/// image must forget it, not drop it.
pub unsafe fn own_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: as the caller promises.
    unsafe { owned_after(fd, nix::fcntl::F_GETFD) }
}

/// `fd` owned, if `flags` (reading or setting its descriptor flags, which
/// fails when it is not open) succeeds on it.
///
/// # Safety
///
/// As [`take_fd`].
unsafe fn owned_after(fd: RawFd, flags: nix::fcntl::FcntlArg<'_>) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: only its descriptor flags are read or set.
    nix::fcntl::fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, flags).ok()?;
    // SAFETY: open, and as the caller promises.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec copy of an inherited descriptor named in the state,
/// which stays open for [`take_fd`].
///
/// # Safety
///
/// `fd` must be one the state names.
pub unsafe fn copy_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: borrowed only while copied; fails if it is not open.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned().ok()
}

/// Why an upgrade cannot carry the processes over to what the file now
/// says, if it cannot: a program with a child (`has_child(group, name)`;
/// `None` for any member of the group) that the file removed, or changed in
/// a way only a restart applies (`plan` is `reread`'s, the file against the
/// running config). The new image builds its tree from the file, so it
/// would end the removed program's process and resume the changed one under
/// settings it was not started with, which `update` would then not see as
/// changed. Added programs, changes applied in place, and changes to
/// programs without a child (the new settings apply at their next start, as
/// `update` would have it) are the new image's to apply.
pub fn unapplied(
    plan: &vigil_config::Plan,
    has_child: impl Fn(&str, Option<&str>) -> bool,
) -> Option<String> {
    use vigil_config::{Apply, make_namespec};
    let restart_keys = |fields: &[vigil_config::FieldChange]| {
        fields.iter().filter(|f| f.apply == Apply::Restart).map(|f| f.key).collect::<Vec<_>>()
    };
    let mut pending: Vec<String> = plan
        .removed
        .iter()
        .filter(|group| has_child(group, None))
        .map(|group| format!("{group} (removed)"))
        .collect();
    for group in &plan.changed {
        let keys = restart_keys(&group.fields);
        if group.restart_all || !keys.is_empty() {
            if has_child(&group.name, None) {
                let what =
                    if keys.is_empty() { "its socket or pool".to_owned() } else { keys.join(", ") };
                pending.push(format!("{} (changed: {what})", group.name));
            }
            continue;
        }
        for name in group.removed.iter().filter(|name| has_child(&group.name, Some(name))) {
            pending.push(format!("{} (removed)", make_namespec(&group.name, name)));
        }
        for process in &group.changed {
            let keys = restart_keys(&process.fields);
            if !keys.is_empty() && has_child(&group.name, Some(&process.name)) {
                let namespec = make_namespec(&group.name, &process.name);
                pending.push(format!("{namespec} (changed: {})", keys.join(", ")));
            }
        }
    }
    (!pending.is_empty()).then(|| {
        format!(
            "the configuration file has changes `update` has not applied: {}; \
             apply them with `vigilctl update` first (or undo them)",
            pending.join(", ")
        )
    })
}

/// What a pre-flight run answered.
pub struct Checked {
    /// Its line (`vigild 1.2.3 reads handover format 8`).
    pub line: String,
    /// The configuration it loaded, for the new image (see `carry.rs`);
    /// `None` if it wrote none.
    pub config: Option<std::fs::File>,
}

/// Runs `binary --handover-check FORMAT -c CONFIG` (through the reaper,
/// which collects every child of vigild): the new binary loads the
/// configuration and answers whether it reads this format, and writes what
/// it loaded into the memfd given as its stdin. Returns its answer when it
/// does, otherwise why not.
pub async fn preflight(binary: &Path, config: &Path) -> Result<Checked, String> {
    let shown = binary.display();
    trusted(binary)?;
    let reaper = vigil_core::Reaper::running()
        .ok_or_else(|| "the child reaper is not running".to_owned())?;
    let carried = memfd(CONFIG_MEMFD)
        .and_then(|memfd| Ok((memfd.try_clone()?, memfd)))
        .map_err(|e| format!("cannot make the memfd for the configuration: {e}"))?;
    let argv = vec![
        binary.to_string_lossy().into_owned(),
        "--handover-check".to_owned(),
        format().to_string(),
        "-c".to_owned(),
        config.to_string_lossy().into_owned(),
    ];
    let mut spec = vigil_core::spawn::SpawnSpec::new(argv);
    spec.redirect_stderr = true;
    // The environment the new image will load its configuration with.
    spec.env = crate::config_source::environment()
        .into_iter()
        .filter(|(key, _)| !DROPPED_AT_EXEC.contains(&key.as_str()))
        .chain([(CONFIG_ENV.to_owned(), "0".to_owned())])
        .collect();
    let (carried, written) = carried;
    spec.stdin_socket = Some(vigil_core::spawn::SharedFd(std::sync::Arc::new(carried.into())));
    let spawned = tokio::task::spawn_blocking(move || reaper.spawn(&spec))
        .await
        .map_err(|e| format!("cannot run {shown}: {e}"))?
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let pid = spawned.pid;
    let mut output = Vec::new();
    let read = async {
        if let Some(mut stdout) = spawned.stdout {
            use tokio::io::AsyncReadExt as _;
            let mut chunk = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                let room = PREFLIGHT_OUTPUT.saturating_sub(output.len());
                output.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
        spawned.exit.await
    };
    let status = match tokio::time::timeout(PREFLIGHT, read).await {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => return Err(format!("{shown}: its exit status was lost")),
        Err(_) => {
            if let Some(reaper) = vigil_core::Reaper::running() {
                let _ = reaper.signal(pid, libc::SIGKILL, false);
            }
            return Err(format!(
                "{shown} --handover-check did not answer within {} s",
                PREFLIGHT.as_secs()
            ));
        }
    };
    let text = String::from_utf8_lossy(&output).trim().to_owned();
    if status.success() {
        let wrote = written.metadata().is_ok_and(|meta| meta.len() > 0);
        Ok(Checked { line: text, config: wrote.then_some(written) })
    } else if text.is_empty() {
        Err(format!("{shown} --handover-check {}: {}", format(), status.describe()))
    } else {
        Err(format!("{shown} refused the handover ({}): {text}", status.describe()))
    }
}

/// What vigild agrees to execute in its own place (it often runs as root,
/// and a control client names the binary): an absolute path to a regular
/// file of root or of vigild's own user that nobody else may write.
pub fn trusted(binary: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let shown = binary.display();
    if !binary.is_absolute() {
        return Err(format!("{shown}: the new vigild must be given by its absolute path"));
    }
    let meta = std::fs::metadata(binary).map_err(|e| format!("cannot run {shown}: {e}"))?;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() {
        return Err(format!("cannot run {shown}: not a regular file"));
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(format!(
            "{shown} belongs to uid {}, neither root nor vigild's user",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("{shown} may be written by others than its owner"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn state() -> State {
        State {
            from_version: "1.2.3".to_owned(),
            unix_listener: Some(5),
            unix_path: None,
            inet_listener: None,
            started_unix_ms: 7,
            reloads: 1,
            generation: 2,
            upgrades: 0,
            service_env: Vec::new(),
            control: CarriedControl {
                identification: "supervisor".to_owned(),
                unix_auth: None,
                inet_auth: None,
            },
            pidfile: Some("/run/vigild.pid".into()),
            launch_dir: "/srv".into(),
            processes: Vec::new(),
            events: CarriedEvents::default(),
            sockets: Vec::new(),
            config: None,
            pidfds: vec![(77, 9)],
            teardown: vec![4321, 4322],
        }
    }

    #[test]
    fn a_state_reads_back() {
        let file = create().unwrap();
        write(&file, &state()).unwrap();
        let read = read(&file).unwrap();
        assert_eq!(read.unix_listener, Some(5));
        assert_eq!(read.generation, 2);
        assert_eq!(read.teardown, vec![4321, 4322]);
        assert_eq!(read.pidfds, vec![(77, 9)]);
    }

    #[test]
    fn a_sequence_in_parts_is_the_sequence() {
        for n in [0, 1, 2, 5, 1001] {
            let items: Vec<String> = (0..n).map(|i| format!("process {i}")).collect();
            let pieces = sequence_in_parts(&items).unwrap();
            assert_eq!(pieces.concat(), postcard::to_stdvec(&items).unwrap(), "{n} items");
        }
    }

    #[test]
    fn work_on_threads_comes_back_in_order() {
        let parts: Vec<u32> = (0..7).collect();
        assert_eq!(on_threads(&parts, &|part| part * 10), vec![0, 10, 20, 30, 40, 50, 60]);
        assert!(on_threads(&[] as &[u32], &|part| part).is_empty());
    }

    #[test]
    fn another_format_or_garbage_is_refused() {
        let mut file = create().unwrap();
        write(&file, &state()).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes[8] = bytes[8].wrapping_add(1);
        let mut other = tempfile::tempfile().unwrap();
        other.write_all(&bytes).unwrap();
        other.rewind().unwrap();
        let error = read(&other).unwrap_err();
        assert!(error.contains(&format!("this vigild reads format {FORMAT}")), "{error}");
        let mut garbage = tempfile::tempfile().unwrap();
        garbage.write_all(b"not a state at all, but long enough").unwrap();
        garbage.rewind().unwrap();
        assert!(read(&garbage).unwrap_err().contains("magic"));
    }

    #[test]
    fn only_a_binary_nobody_else_writes_is_trusted() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("vigild");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(trusted(&binary), Ok(()));
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(trusted(&binary).unwrap_err().contains("written by others"));
        assert!(trusted(Path::new("vigild")).unwrap_err().contains("absolute path"));
        assert!(trusted(dir.path()).unwrap_err().contains("not a regular file"));
    }

    #[test]
    fn the_check_flag_accepts_only_its_format() {
        assert_eq!(check_flag(FORMAT).0, 0);
        let (code, line) = check_flag(FORMAT + 1);
        assert_eq!(code, 1);
        assert!(line.contains(&format!("not {}", FORMAT + 1)), "{line}");
    }

    #[test]
    fn only_removed_programs_and_changes_needing_a_restart_stop_an_upgrade() {
        use vigil_config::{Apply, FieldChange, GroupChange, Plan, ProcessChange};
        let field = |key, apply| FieldChange { key, apply };
        let group = |name: &str| GroupChange {
            name: name.to_owned(),
            fields: Vec::new(),
            restart_all: false,
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        };
        let process = |name: &str, fields| ProcessChange { name: name.to_owned(), fields };
        // What the new image applies by itself: new groups and members,
        // in-place settings, daemon-level sections.
        let mut plan = Plan { added: vec!["new".to_owned()], ..Plan::default() };
        plan.daemon.push("supervisord");
        let mut grown = group("web");
        grown.added.push("web_2".to_owned());
        grown.fields.push(field("priority", Apply::InPlace));
        grown.changed.push(process("web_0", vec![field("autorestart", Apply::InPlace)]));
        plan.changed.push(grown);
        let every = |_: &str, _: Option<&str>| true;
        assert_eq!(unapplied(&plan, every), None);
        // What only `update` can apply.
        plan.removed.push("old".to_owned());
        let mut shrunk = group("workers");
        shrunk.removed.push("worker_1".to_owned());
        shrunk.changed.push(process(
            "worker_0",
            vec![field("command", Apply::Restart), field("startsecs", Apply::InPlace)],
        ));
        plan.changed.push(shrunk);
        let mut fcgi = group("fcgi");
        fcgi.restart_all = true;
        plan.changed.push(fcgi);
        let mut same = group("same");
        same.changed.push(process("same", vec![field("environment", Apply::Restart)]));
        plan.changed.push(same);
        assert_eq!(
            unapplied(&plan, every).as_deref(),
            Some(
                "the configuration file has changes `update` has not applied: old (removed), \
                 workers:worker_1 (removed), workers:worker_0 (changed: command), \
                 fcgi (changed: its socket or pool), same (changed: environment); apply them \
                 with `vigilctl update` first (or undo them)"
            )
        );
        // Without a child, the new settings apply at the next start, as
        // `update` would have them: only `workers:worker_0` runs here.
        let running = |group: &str, name: Option<&str>| {
            group == "workers" && name.is_none_or(|name| name == "worker_0")
        };
        assert_eq!(
            unapplied(&plan, running).as_deref(),
            Some(
                "the configuration file has changes `update` has not applied: \
                 workers:worker_0 (changed: command); apply them with `vigilctl update` first \
                 (or undo them)"
            )
        );
        assert_eq!(unapplied(&plan, |_, _| false), None);
    }
}
