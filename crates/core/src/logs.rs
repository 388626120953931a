//! Output capture for one channel (stdout or stderr) of one process.
//!
//! A [`ChannelLog`] lives as long as the process's configuration, across restarts. It
//! owns the log file with supervisord's size rotation (`file` -> `file.1` ...
//! `file.N`), an in-memory ring of the most recent bytes, and the byte offsets that
//! `readProcessStdoutLog` / `tailProcessStdoutLog` and `tail -f` work with.
//!
//! # Theory of operation
//!
//! [`ChannelLog::capture`] spawns a task that reads the pipe in 64 KiB chunks into a
//! pending batch. Whenever no write is in flight, the batch is handed to
//! `spawn_blocking`, which appends it to the file, rotating exactly at `maxbytes`,
//! then records it in the ring. Reading continues while a batch is being written, up
//! to [`MAX_PENDING`] bytes; past that the task stops reading, the pipe fills, and
//! only that one child blocks in `write(2)` — backpressure, never data loss, and
//! never a stalled runtime worker. Without a file the ring is filled directly.
//!
//! A busy channel (one that delivered [`BUSY_BYTES`] within [`BUSY_WINDOW`])
//! gets a bigger pipe ([`BUSY_PIPE_SIZE`]): the child then writes on while a
//! batch is on its way to disk instead of blocking on a full 64 KiB pipe, and
//! we wake up, read and hand off far less often. Quiet channels keep the
//! default pipe, as the kernel charges a pipe's capacity to the user's quota.
//! (Moving the bytes pipe -> file with splice(2) on a blocking thread was
//! measured too: one copy fewer, but one splice per wake-up and no overlap
//! between draining the pipe and writing the file left it behind this path
//! with a big pipe on the 2-core benchmark machine, and splice(2) refuses
//! `O_APPEND` files, so it needed positional writes that an external
//! copytruncate or a second writer can race with.)
//!
//! Offsets are monotonic across rotation and clearing: offset N is the N-th byte this
//! log ever held (counting, at open, whatever the file and its backups already
//! contain). The retained bytes are those in the ring plus those in the base file and
//! the backups that continue it without a gap; reads of older offsets start at the
//! oldest retained byte. A byte is counted (and visible to readers and
//! [`ChannelLog::wait_beyond`]) only after it was handed to the file, so reads never
//! see a byte that is not yet on disk.
//!
//! Write errors (disk full, directory removed) are logged once per failure episode
//! and never stop capture: the bytes still reach the ring and the offsets advance.
//! The file mapping restarts after the gap.
//!
//! # Which files are written
//!
//! The file, its backups and the AUTO logs are reached only by the rule of
//! [`file`](mod@file): the path is walked component by component from held directory
//! descriptors; a symbolic link is followed only where nobody less privileged
//! than the daemon can have put it (a directory only root or the daemon's user
//! can write, or a root-owned entry of a sticky one); in any other directory
//! the file must be a regular file with one link, owned by the daemon's user
//! or the directory's owner. So a program running as another user that plants
//! a link in its own log directory cannot make the daemon create, append to,
//! rotate, reopen or clear a file elsewhere: the operation is refused, logged
//! in the activity log and shown in the program's status
//! ([`ChannelLog::problem`]), and the output is kept in memory.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use vigil_config::LogTarget;

pub mod file;

pub use file::{LogFile, Rotation, backup_path};
pub(crate) use maker::MakerHold;

/// Bytes asked of the pipe per read on a busy channel, or after a read that filled
/// its buffer.
pub const READ_CHUNK: usize = 64 * 1024;
/// Bytes asked of the pipe per read on a quiet channel. A quiet program's capture
/// then holds a few KiB, not two 64 KiB buffers: with thousands of programs that is
/// most of the daemon's memory, and buffers of that size churned by every restart
/// fragment the heap.
pub const QUIET_CHUNK: usize = 4 * 1024;
/// Bytes read ahead while a batch is being written before the pipe is left to fill.
pub const MAX_PENDING: usize = 1024 * 1024;
/// Longest line handed to a line callback; longer lines arrive in pieces.
pub const MAX_LINE: usize = 64 * 1024;

/// Which output of a process a log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The child's standard output (fd 1).
    Stdout,
    /// The child's standard error (fd 2).
    Stderr,
}

impl Channel {
    /// supervisord's name for the channel (`stdout` / `stderr`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
        }
    }
}

/// Why a log operation failed, for the channel logs and the activity log
/// alike; the read errors map onto supervisord's faults.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// `NO_FILE`: the log keeps neither a file nor a memory buffer.
    #[error("no log file")]
    NoFile,
    /// `BAD_ARGUMENTS`: a negative offset with a length, or a negative length.
    #[error("bad arguments: offset {offset}, length {length}")]
    BadArguments {
        /// The offset asked for.
        offset: i64,
        /// The length asked for.
        length: i64,
    },
    /// `FAILED`: the file could not be read.
    #[error("failed to read log: {0}")]
    Failed(#[from] io::Error),
    /// The path leads through something a less privileged user controls
    /// (see [`file`](mod@file)'s rule); nothing was opened, created or moved.
    #[error("refused to use {path}: {reason}")]
    Refused {
        /// The log file's path.
        path: PathBuf,
        /// What made it unsafe to use.
        reason: String,
    },
    /// Opening, creating, rotating or removing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The log file's path.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

impl From<LogError> for io::Error {
    fn from(error: LogError) -> io::Error {
        match error {
            LogError::Failed(source) | LogError::Io { source, .. } => source,
            LogError::Refused { .. } => io::Error::new(io::ErrorKind::PermissionDenied, error),
            other => io::Error::other(other),
        }
    }
}

/// Called with each complete line (without its `\n`) as output is captured.
pub type LineCallback = Box<dyn FnMut(&[u8]) + Send + 'static>;

/// Rewrites a child's output on its way into the log (ANSI stripping, capture
/// mode, syslog and log events; see `output.rs`). It sees the pipe's bytes in
/// order, as they were read, and appends what the log keeps to `out`; a
/// sequence split across reads is its business to hold back.
pub trait OutputFilter: Send + 'static {
    /// Filters one read's worth of bytes.
    fn filter(&mut self, data: &[u8], out: &mut Vec<u8>);
    /// The pipe reached EOF: release anything held back.
    fn finish(&mut self, out: &mut Vec<u8>);
}

/// Set once, for a live upgrade: every capture task stops reading, writes
/// out what it read and returns its pipe (see [`stop_captures_for_handover`]).
static HANDOVER: std::sync::LazyLock<tokio::sync::watch::Sender<bool>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(false));

/// Makes every capture task of this process stop reading its pipe, write
/// what it already read to its log file, and end with the pipe as its
/// result, for a live upgrade to hand to the next image. Bytes written
/// afterwards wait in the pipe. There is no way back: the upgrade either
/// `execve`s or re-executes the running binary.
pub fn stop_captures_for_handover() {
    HANDOVER.send_replace(true);
}

/// Logs of this process whose file cannot be written now (their `problem`
/// is set), so that a status of thousands of processes looks at none of
/// them while every log works.
static WITH_PROBLEM: AtomicUsize = AtomicUsize::new(0);

/// Whether any log has a problem to show in its process's status.
pub(crate) fn any_problem() -> bool {
    WITH_PROBLEM.load(Ordering::Relaxed) > 0
}

/// Capture tasks not yet ended, spawned ones included (see [`LiveCapture`]).
static LIVE_CAPTURES: std::sync::LazyLock<tokio::sync::watch::Sender<usize>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// Counts one capture task among [`LIVE_CAPTURES`] from its spawn until its
/// future is dropped (ended, or aborted before it ran).
struct LiveCapture;

impl LiveCapture {
    fn new() -> LiveCapture {
        // Only reaching zero wakes a waiter: this is on every spawn's path.
        LIVE_CAPTURES.send_if_modified(|live| {
            *live += 1;
            false
        });
        LiveCapture
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        // Wakes a waiter only when the last one ends.
        LIVE_CAPTURES.send_if_modified(|live| {
            *live = live.saturating_sub(1);
            *live == 0
        });
    }
}

/// Completes once no capture task is left: after
/// [`stop_captures_for_handover`], once each has handed its pipe back.
pub async fn captures_ended() {
    let mut live = LIVE_CAPTURES.subscribe();
    // The sender is a static: never closed.
    let _ = live.wait_for(|live| *live == 0).await;
}

/// Handle to one channel's log. Cheap to clone; all clones share the file and ring.
#[derive(Clone)]
pub struct ChannelLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChannelLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelLog")
            .field("path", &self.inner.path)
            .field("maxbytes", &self.inner.maxbytes())
            .field("backups", &self.inner.backups())
            .field("total", &self.total())
            .finish()
    }
}

struct Inner {
    path: Option<PathBuf>,
    /// Capture tasks running (one per live pipe); the file is closed when
    /// the last one ends, so a stopped program holds no descriptor.
    captures: AtomicUsize,
    /// Why the file cannot be written now, for the program's status (`None`
    /// while it works).
    problem: Mutex<Option<String>>,
    /// Rotation settings; `update` may change them in place (under the file lock).
    maxbytes: AtomicU64,
    backups: AtomicU32,
    ring_capacity: usize,
    /// The open file. Lock order: `file` before `shared`. Held while writing a batch,
    /// rotating, and reading old bytes from disk, so rotation never moves a file under
    /// a reader.
    file: Mutex<FileState>,
    shared: Mutex<Shared>,
    /// Woken when the total offset grows, for `wait_beyond` (a `Notify`
    /// rather than a watch channel: it lives inline, where a watch channel is
    /// a separate allocation of about 350 bytes per log).
    grown: Notify,
}

struct FileState {
    /// The base file (`None` without a path). A regular file is opened at the
    /// first write, not at start (a missing one is created then, or by the log
    /// maker soon after the program's spawn: see `ChannelLog::prepare`), and closed
    /// when the program's pipes close: a program that is quiet or stopped
    /// holds no descriptor, which lets thousands of them fit under the
    /// daemon's descriptor limit, and deleting a stopped program's log frees
    /// its space. Rotation, clearing and reading back are only done for
    /// regular files (not for `/dev/stdout` and friends).
    disk: Option<LogFile>,
    /// In a write-error episode (logged once at its start).
    failing: bool,
    /// The last rotation failed (the file grows past `maxbytes` meanwhile).
    rotation_failing: bool,
    /// The file was missing at the last spawn and waits for the log maker
    /// (see [`ChannelLog::prepare`]).
    unmade: bool,
}

impl FileState {
    fn disk(&mut self) -> &mut LogFile {
        self.disk.as_mut().expect("only called for a log with a file")
    }

    fn regular(&self) -> bool {
        self.disk.as_ref().is_some_and(LogFile::is_regular)
    }

    fn size(&self) -> u64 {
        self.disk.as_ref().map_or(0, LogFile::size)
    }
}

/// Bytes `[start, start + len)` live at `file_pos..` of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    start: u64,
    len: u64,
    file_pos: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A channel log's file and offsets as a live upgrade carries them
/// ([`ChannelLog::layout`]): nothing writes to the files between the freeze
/// and the resume (the capture tasks stopped), so the next image takes this
/// instead of opening the file and looking for its backups, a dozen system
/// calls per log on the upgrade's path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLayout {
    /// The file.
    pub path: PathBuf,
    /// The `backups` setting the layout follows.
    pub backups_kept: u32,
    /// The file's size as written by vigild.
    pub size: u64,
    /// (dev, inode) of the file last opened.
    pub identity: Option<(u64, u64)>,
    /// The log's total offset.
    pub total: u64,
    /// The base file's offsets.
    pub base: Segment,
    /// The backups' offsets, newest first.
    pub backups: Vec<Segment>,
}

struct Shared {
    total: u64,
    ring: Ring,
    /// The base file's mapping.
    base: Segment,
    /// `.1`, `.2`, ... mappings, newest first.
    backups: VecDeque<Segment>,
}

impl Shared {
    fn empty(ring_bytes: usize) -> Shared {
        Shared {
            total: 0,
            ring: Ring::new(ring_bytes),
            base: Segment { start: 0, len: 0, file_pos: 0 },
            backups: VecDeque::new(),
        }
    }

    fn ring_start(&self) -> u64 {
        self.total - self.ring.len() as u64
    }

    /// The offsets the files hold without gaps, ending at the base file's end.
    fn file_window(&self) -> (u64, u64) {
        let mut start = self.base.start;
        for backup in &self.backups {
            if backup.end() != start || backup.len == 0 {
                break;
            }
            start = backup.start;
        }
        (start, self.base.end())
    }

    /// Oldest offset that can still be read.
    fn retained_start(&self, with_files: bool) -> u64 {
        let ring_start = self.ring_start();
        if !with_files {
            return ring_start;
        }
        let (file_start, file_end) = self.file_window();
        if file_end >= ring_start { file_start.min(ring_start) } else { ring_start }
    }

    /// Records `n` bytes at `offset` that were written at `file_pos` of the base file.
    fn record_file(&mut self, offset: u64, n: u64, file_pos: u64) {
        if self.base.end() == offset && self.base.file_pos + self.base.len == file_pos {
            self.base.len += n;
        } else {
            // A gap (failed write, external truncation): restart the mapping here.
            self.base = Segment { start: offset, len: n, file_pos };
            self.backups.clear();
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.ring.push(data);
        self.total += data.len() as u64;
    }
}

/// A byte ring that allocates as it fills, up to its capacity.
struct Ring {
    capacity: usize,
    buf: Vec<u8>,
    /// Index of the oldest byte once `buf` is full (0 before).
    start: usize,
}

impl Ring {
    fn new(capacity: usize) -> Ring {
        Ring { capacity, buf: Vec::new(), start: 0 }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn clear(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }

    fn push(&mut self, mut data: &[u8]) {
        if self.capacity == 0 || data.is_empty() {
            return;
        }
        if data.len() >= self.capacity {
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - self.capacity..]);
            self.start = 0;
            return;
        }
        if self.buf.len() < self.capacity {
            let take = (self.capacity - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if data.is_empty() {
                return;
            }
        }
        let first = (self.capacity - self.start).min(data.len());
        self.buf[self.start..self.start + first].copy_from_slice(&data[..first]);
        let rest = &data[first..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.start = (self.start + data.len()) % self.capacity;
    }

    /// Appends logical bytes `[from, to)` (0 = oldest) to `out`.
    fn copy_into(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        if from >= to {
            return;
        }
        let n = self.buf.len();
        let pos = (self.start + from) % n;
        let count = to - from;
        let first = count.min(n - pos);
        out.extend_from_slice(&self.buf[pos..pos + first]);
        out.extend_from_slice(&self.buf[..count - first]);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent between statements that can
    // panic, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ChannelLog {
    /// Opens a channel log.
    ///
    /// `path`: the resolved file (AUTO already turned into a name by
    /// [`auto_log_path`]) or `None` for no file. The file is created or appended to
    /// (reached by [`file`](mod@file)'s rule); its existing content and that of its
    /// backups become the oldest offsets. `maxbytes`: rotate when the file
    /// reaches this size (0 = never). `backups`: rotated copies kept (0 =
    /// truncate in place). `ring_bytes`: size of the in-memory tail buffer.
    pub fn open(
        path: Option<PathBuf>,
        maxbytes: u64,
        backups: u32,
        ring_bytes: usize,
    ) -> Result<ChannelLog, LogError> {
        let mut shared = Shared::empty(ring_bytes);
        let mut disk = None;
        if let Some(path) = &path {
            // A missing file is not created here: see `prepare`.
            let mut file = LogFile::new(path.clone());
            let stats = file.reopen_with_backups(backups)?;
            if file.is_regular() {
                // Existing backups, oldest first, then the base file: one continuous
                // history as our own rotation would have left it.
                let mut offset = 0;
                for stat in stats.iter().rev() {
                    let len = u64::try_from(stat.st_size).unwrap_or(0);
                    shared.backups.push_front(Segment { start: offset, len, file_pos: 0 });
                    offset += len;
                }
                shared.base = Segment { start: offset, len: file.size(), file_pos: 0 };
                shared.total = offset + file.size();
                // A device (`/dev/stdout`) stays open; a regular file waits for the
                // first write (see `FileState::disk`).
                file.close();
            }
            disk = Some(file);
        }
        Ok(ChannelLog::assemble(path, disk, shared, maxbytes, backups, ring_bytes))
    }

    fn assemble(
        path: Option<PathBuf>,
        disk: Option<LogFile>,
        shared: Shared,
        maxbytes: u64,
        backups: u32,
        ring_bytes: usize,
    ) -> ChannelLog {
        ChannelLog {
            inner: Arc::new(Inner {
                path,
                captures: AtomicUsize::new(0),
                problem: Mutex::new(None),
                maxbytes: AtomicU64::new(maxbytes),
                backups: AtomicU32::new(backups),
                ring_capacity: ring_bytes,
                file: Mutex::new(FileState {
                    disk,
                    failing: false,
                    rotation_failing: false,
                    unmade: false,
                }),
                shared: Mutex::new(shared),
                grown: Notify::new(),
            }),
        }
    }

    /// The log of one channel of a program, as configured. It never fails:
    /// a file that cannot be opened now is reported in the activity log and
    /// kept as the log's problem, and [`ChannelLog::prepare`], before each
    /// spawn, tries again, so one unopenable log fails that program's starts
    /// (as supervisord's do) instead of the whole tree.
    pub fn for_program(
        target: &LogTarget,
        auto: &AutoLog<'_>,
        maxbytes: u64,
        backups: u32,
        ring_bytes: usize,
    ) -> ChannelLog {
        let path = match target {
            LogTarget::Path(path) => path.clone(),
            LogTarget::Auto => {
                match auto_log_path(auto.childlogdir, auto.program, auto.channel, auto.identifier) {
                    Ok(path) => path,
                    // Not created: the name waits for the directory to work.
                    Err(_) => auto.childlogdir.join(auto_log_name(auto)),
                }
            }
            // `syslog` as a file name goes to the daemon's syslog handler, not a file.
            LogTarget::None | LogTarget::Syslog => {
                return ChannelLog::assemble(
                    None,
                    None,
                    Shared::empty(ring_bytes),
                    maxbytes,
                    backups,
                    ring_bytes,
                );
            }
        };
        match ChannelLog::open(Some(path.clone()), maxbytes, backups, ring_bytes) {
            Ok(log) => log,
            Err(error) => {
                tracing::error!(
                    "{}: cannot open the {} log: {error}",
                    auto.program,
                    auto.channel.as_str()
                );
                let log = ChannelLog::assemble(
                    Some(path.clone()),
                    Some(LogFile::new(path)),
                    Shared::empty(ring_bytes),
                    maxbytes,
                    backups,
                    ring_bytes,
                );
                log.inner.set_problem(Some(error.to_string()));
                log
            }
        }
    }

    /// Makes sure the file can be opened before a child is spawned (supervisord
    /// opens its logs then too): reaches and opens it by [`file`](mod@file)'s rule,
    /// then closes it again unless output is being captured. The error is the
    /// reason the spawn fails.
    ///
    /// A missing file is not created on the spawn's path: creating thousands of
    /// files costs the file system far more than the spawns themselves (0.3 to
    /// 0.6 ms each on an ext4 that recently freed many inodes). Its directory
    /// is checked to take new names, and the file is made by the first write or
    /// by the log maker, a thread of low priority, soon after the spawn.
    pub fn prepare(&self) -> Result<(), LogError> {
        let mut state = lock(&self.inner.file);
        let Some(disk) = state.disk.as_ref() else { return Ok(()) };
        if disk.is_open() || state.unmade {
            return Ok(());
        }
        match self.inner.open_disk(&mut state, false) {
            Ok(true) => {
                self.inner.set_problem(None);
                self.inner.close_if_idle(&mut state);
                Ok(())
            }
            Ok(false) => {
                state.unmade = true;
                drop(state);
                self.inner.set_problem(None);
                maker::make_later(self.clone());
                Ok(())
            }
            Err(error) => {
                self.inner.set_problem(Some(error.to_string()));
                Err(error)
            }
        }
    }

    /// Creates the file [`ChannelLog::prepare`] found missing, unless a write
    /// made it meanwhile. A failure is the log's problem (and logged), as a
    /// failed write's is.
    fn make_unmade(&self) {
        let mut state = lock(&self.inner.file);
        if !std::mem::replace(&mut state.unmade, false)
            || state.disk.as_ref().is_none_or(LogFile::is_open)
        {
            return;
        }
        // Closed again even while the program runs: a silent program holds no
        // descriptor (the next write opens the file).
        match self.inner.ensure_open(&mut state) {
            Ok(()) => state.disk().close(),
            Err(error) => {
                tracing::error!("cannot create the log: {error}");
                self.inner.set_problem(Some(error.to_string()));
            }
        }
    }

    /// Why the file cannot be written now (refused, failed to open or to
    /// write); `None` while it works.
    pub fn problem(&self) -> Option<String> {
        lock(&self.inner.problem).clone()
    }

    /// The log file, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner.path.clone()
    }

    /// The log file, borrowed (what a status answer copies once).
    pub fn path_ref(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// After a live upgrade: the previous image's log had held `total`
    /// bytes, more than the files now on disk (backups it rotated away), so
    /// every offset moves up to end there and a reader's offsets stay
    /// monotonic. Nothing moves if `total` is not more.
    pub fn continue_from(&self, total: u64) {
        let mut shared = lock(&self.inner.shared);
        let Some(shift) = total.checked_sub(shared.total).filter(|shift| *shift > 0) else {
            return;
        };
        shared.total = total;
        shared.base.start += shift;
        for backup in &mut shared.backups {
            backup.start += shift;
        }
        drop(shared);
        self.inner.grown.notify_waiters();
    }

    /// The layout a live upgrade carries, for a regular file in good
    /// standing; `None` otherwise (the next image opens it as at startup).
    pub fn layout(&self) -> Option<LogLayout> {
        let path = self.inner.path.clone()?;
        let (size, identity) = {
            let state = lock(&self.inner.file);
            let disk = state.disk.as_ref()?;
            if !disk.is_regular() || state.failing || state.rotation_failing || state.unmade {
                return None;
            }
            (disk.size(), disk.identity())
        };
        let shared = lock(&self.inner.shared);
        Some(LogLayout {
            path,
            backups_kept: self.inner.backups(),
            size,
            identity,
            total: shared.total,
            base: shared.base,
            backups: shared.backups.iter().copied().collect(),
        })
    }

    /// The log a live upgrade carried as `layout`, without a look at the
    /// files; `maxbytes`, `backups` and `ring_bytes` as for
    /// [`ChannelLog::open`] (`backups` the layout's own).
    pub fn resume(layout: LogLayout, maxbytes: u64, ring_bytes: usize) -> ChannelLog {
        let mut shared = Shared::empty(ring_bytes);
        shared.total = layout.total;
        shared.base = layout.base;
        shared.backups = layout.backups.into_iter().collect();
        let disk = LogFile::resumed(layout.path.clone(), layout.size, layout.identity);
        let backups = layout.backups_kept;
        ChannelLog::assemble(Some(layout.path), Some(disk), shared, maxbytes, backups, ring_bytes)
    }

    /// Total bytes this log has held: the offset just past the newest byte.
    pub fn total(&self) -> u64 {
        lock(&self.inner.shared).total
    }

    /// Spawns a task that copies `pipe` into the log until EOF (see module docs).
    pub fn capture(&self, pipe: pipe::Receiver) -> JoinHandle<Option<OwnedFd>> {
        self.capture_with(pipe, None)
    }

    /// Like [`ChannelLog::capture`], also handing every complete line to `on_line`
    /// (for log-pattern readiness probes and events). The callback runs on the
    /// capture task and must be quick.
    pub fn capture_with(
        &self,
        pipe: pipe::Receiver,
        on_line: Option<LineCallback>,
    ) -> JoinHandle<Option<OwnedFd>> {
        self.inner.captures.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(self.clone().run_capture(pipe, on_line, None, LiveCapture::new()))
    }

    /// Like [`ChannelLog::capture_with`], passing every read through `filter`
    /// first: the log, and `on_line`, get what the filter lets through.
    pub fn capture_filtered(
        &self,
        pipe: pipe::Receiver,
        on_line: Option<LineCallback>,
        filter: Box<dyn OutputFilter>,
    ) -> JoinHandle<Option<OwnedFd>> {
        self.inner.captures.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(self.clone().run_capture(pipe, on_line, Some(filter), LiveCapture::new()))
    }

    // A plain function returning the future, not an `async fn`: an async
    // fn's future keeps its arguments twice (as passed, and moved into its
    // body), and this future is a task per captured pipe, so its size is
    // memory per program. `live` is held until the future is dropped.
    fn run_capture(
        self,
        pipe: pipe::Receiver,
        on_line: Option<LineCallback>,
        filter: Option<Box<dyn OutputFilter>>,
        live: LiveCapture,
    ) -> impl Future<Output = Option<OwnedFd>> + Send + 'static {
        let mut lines = on_line.map(LineSplitter::new);
        // The filter and its scratch buffer in one box: most captures have
        // neither, and pay one pointer.
        let mut filter = filter.map(|filter| Box::new(Filtering { filter, raw: Vec::new() }));
        async move {
            let _live = &live;
            let to_disk = self.inner.path.is_some();
            let mut handover = HANDOVER.subscribe();
            let mut handing_over = *handover.borrow();
            let mut pending: Vec<u8> = Vec::new();
            let mut spare: Vec<u8> = Vec::new();
            let mut inflight: Option<JoinHandle<Vec<u8>>> = None;
            let mut eof = false;
            let mut load = Load::default();
            let mut chunk = QUIET_CHUNK;
            loop {
                if !pending.is_empty() && inflight.is_none() {
                    if to_disk {
                        let batch = std::mem::replace(&mut pending, std::mem::take(&mut spare));
                        let inner = Arc::clone(&self.inner);
                        inflight = Some(tokio::task::spawn_blocking(move || {
                            inner.write_batch(&batch);
                            batch
                        }));
                    } else {
                        self.inner.append_memory(&pending);
                        pending.clear();
                        if !load.busy() && pending.capacity() > 2 * QUIET_CHUNK {
                            pending = Vec::new();
                        }
                    }
                }
                if (eof || handing_over) && pending.is_empty() && inflight.is_none() {
                    break;
                }
                let can_read = !eof && !handing_over && pending.len() < MAX_PENDING;
                tokio::select! {
                    // A live upgrade: stop reading, write out what was read, and
                    // give the pipe back for the next image of the daemon.
                    changed = handover.changed(), if !handing_over => {
                        handing_over = changed.is_err() || *handover.borrow();
                        // What a filter holds back (a partial line) is written
                        // now: the next image starts its filter afresh.
                        if handing_over && let Some(filtering) = filter.as_mut() {
                            filtering.filter.finish(&mut pending);
                        }
                    }
                    read = read_chunk(&pipe, &mut pending, chunk), if can_read => match read {
                        Ok(0) => {
                            eof = true;
                            if let Some(filtering) = filter.as_mut() {
                                let before = pending.len();
                                filtering.filter.finish(&mut pending);
                                if let Some(lines) = lines.as_mut() {
                                    lines.feed(&pending[before..]);
                                }
                            }
                        }
                        Ok(n) => {
                            load.record(n as u64);
                            // A read that filled what it asked for: more is waiting.
                            chunk = if n >= chunk || load.busy() { READ_CHUNK } else { QUIET_CHUNK };
                            load.grow_if_busy(pipe.as_fd());
                            let mut start = pending.len() - n;
                            if let Some(filtering) = filter.as_mut() {
                                // Filter in place: the raw bytes move aside, what the
                                // filter keeps takes their place.
                                let Filtering { filter, raw } = &mut **filtering;
                                raw.clear();
                                raw.extend_from_slice(&pending[start..]);
                                pending.truncate(start);
                                filter.filter(raw, &mut pending);
                                start = start.min(pending.len());
                            }
                            if let Some(lines) = lines.as_mut() {
                                lines.feed(&pending[start..]);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(path = ?self.inner.path, %error, "reading child output failed; treating as EOF");
                            eof = true;
                        }
                    },
                    joined = async { inflight.as_mut().expect("branch enabled only when in flight").await },
                        if inflight.is_some() =>
                    {
                        inflight = None;
                        match joined {
                            Ok(mut buffer) => {
                                buffer.clear();
                                // A quiet channel gives a burst's big buffer back.
                                spare = if load.busy() || buffer.capacity() <= 2 * QUIET_CHUNK {
                                    buffer
                                } else {
                                    Vec::new()
                                };
                            }
                            Err(error) => tracing::error!(%error, "log writer task failed"),
                        }
                    }
                }
            }
            if handing_over && !eof {
                self.inner.captures.fetch_sub(1, Ordering::SeqCst);
                return match pipe.into_nonblocking_fd() {
                    Ok(fd) => Some(fd),
                    Err(error) => {
                        tracing::error!(path = ?self.inner.path, %error, "cannot keep a capture pipe for the upgrade");
                        None
                    }
                };
            }
            if let Some(lines) = lines.as_mut() {
                lines.finish();
            }
            // The pipe is closed (the program and whatever inherited it are gone):
            // let go of the file unless another capture still writes to it.
            if self.inner.captures.fetch_sub(1, Ordering::SeqCst) == 1
                && to_disk
                && self.inner.may_hold_file()
            {
                let inner = Arc::clone(&self.inner);
                let closed = tokio::task::spawn_blocking(move || {
                    let mut state = lock(&inner.file);
                    inner.close_if_idle(&mut state);
                })
                .await;
                if let Err(error) = closed {
                    tracing::error!(%error, "closing a log file failed");
                }
            }
            None
        }
    }

    /// Appends `data` as if the process had written it, synchronously (for short
    /// messages Vigil itself puts in a process's log, such as supervisord's
    /// `supervisor: couldn't exec ...` lines after an in-child spawn failure). May
    /// block on the disk; bulk output goes through [`ChannelLog::capture`].
    pub fn append(&self, data: &[u8]) {
        if self.inner.path.is_some() {
            self.inner.write_batch(data);
            let mut state = lock(&self.inner.file);
            self.inner.close_if_idle(&mut state);
        } else {
            self.inner.append_memory(data);
        }
    }

    /// supervisord's `readProcessStdoutLog(offset, length)` over monotonic offsets:
    /// `offset < 0, length == 0`: the last `-offset` bytes; `offset >= 0, length == 0`:
    /// from `offset` to the end; `offset >= 0, length > 0`: that slice. Anything else is
    /// [`LogError::BadArguments`]. Bytes no longer retained (rotated away, cleared,
    /// out of the ring) are left out: the result starts at the oldest retained byte.
    ///
    /// Bytes older than the memory ring are read from the files synchronously; call
    /// large reads from `spawn_blocking`.
    pub fn read(&self, offset: i64, length: i64) -> Result<Vec<u8>, LogError> {
        if !self.has_storage() {
            return Err(LogError::NoFile);
        }
        let total = self.total();
        if offset < 0 {
            if length != 0 {
                return Err(LogError::BadArguments { offset, length });
            }
            let from = total.saturating_sub(offset.unsigned_abs());
            return Ok(self.inner.read_range(from, total)?);
        }
        if length < 0 {
            return Err(LogError::BadArguments { offset, length });
        }
        let from = offset as u64;
        let to = if length == 0 { total } else { from.saturating_add(length as u64).min(total) };
        Ok(self.inner.read_range(from, to)?)
    }

    /// supervisord's `tailProcessStdoutLog(offset, length)` -> `(bytes, offset,
    /// overflow)` over monotonic offsets: empty bytes when `offset` is at or past the
    /// end, else the last `min(length, total)` bytes (which may start before
    /// `offset`); `overflow` when more than `length` bytes lie past `offset`; the
    /// returned offset is the end. Without any storage: `([], 0, false)`.
    pub fn tail(&self, offset: u64, length: u64) -> (Vec<u8>, u64, bool) {
        if !self.has_storage() {
            return (Vec::new(), 0, false);
        }
        let total = self.total();
        let overflow = total > offset.saturating_add(length);
        if offset >= total || length == 0 {
            return (Vec::new(), total, overflow);
        }
        let from = total - length.min(total);
        match self.inner.read_range(from, total) {
            Ok(bytes) => (bytes, total, overflow),
            Err(error) => {
                tracing::warn!(path = ?self.inner.path, %error, "reading log for tail failed");
                (Vec::new(), offset, false)
            }
        }
    }

    /// Resolves once the log holds bytes beyond `offset` (for `tail -f` long polls).
    pub async fn wait_beyond(&self, offset: u64) {
        loop {
            let grown = self.inner.grown.notified();
            tokio::pin!(grown);
            // Registered before the check, so growth between the two wakes it.
            grown.as_mut().enable();
            if self.total() > offset {
                return;
            }
            grown.await;
        }
    }

    /// supervisord's `clearProcessLogs`: deletes the file and reopens it empty, and
    /// empties the ring. Offsets stay monotonic; nothing before now is readable.
    /// Backups are left on disk, as supervisord leaves them.
    pub fn clear(&self) -> Result<(), LogError> {
        let mut state = lock(&self.inner.file);
        let mut result = Ok(());
        if let Some(disk) = state.disk.as_mut() {
            result = disk.clear();
            self.inner.close_if_idle(&mut state);
        }
        let mut shared = lock(&self.inner.shared);
        shared.ring.clear();
        let total = shared.total;
        shared.base = Segment { start: total, len: 0, file_pos: state.size() };
        shared.backups.clear();
        result
    }

    /// Reopens the file (SIGUSR2, after an external logrotate). If the file was moved
    /// or truncated, offsets before now are served from the ring only.
    pub fn reopen(&self) -> Result<(), LogError> {
        let mut state = lock(&self.inner.file);
        let Some(disk) = state.disk.as_mut() else {
            return Ok(());
        };
        if !disk.is_open() {
            // Not opened yet: look at the path without taking a descriptor; the
            // next write opens whatever is there.
            let moved = match disk.stat(0) {
                Ok(Some(stat)) => {
                    disk.identity() != Some((stat.st_dev, stat.st_ino))
                        || disk.size() != u64::try_from(stat.st_size).unwrap_or(0)
                }
                _ => true,
            };
            if moved {
                disk.forget_identity();
                self.inner.restart_base(0);
            }
            return Ok(());
        }
        let old_identity = disk.identity();
        let old_size = disk.size();
        disk.reopen()?;
        if !(old_identity == disk.identity() && old_size == disk.size()) {
            self.inner.restart_base(disk.size());
        }
        Ok(())
    }

    /// Changes `maxbytes` and `backups` of an open log (`update` applies them
    /// in place); the next write rotates by the new values.
    pub fn set_rotation(&self, maxbytes: u64, backups: u32) {
        let _file_state = lock(&self.inner.file);
        self.inner.maxbytes.store(maxbytes, Ordering::Relaxed);
        self.inner.backups.store(backups, Ordering::Relaxed);
    }

    fn has_storage(&self) -> bool {
        self.inner.path.is_some() || self.inner.ring_capacity > 0
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let problem = self.problem.get_mut().unwrap_or_else(PoisonError::into_inner);
        if problem.is_some() {
            WITH_PROBLEM.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Inner {
    fn maxbytes(&self) -> u64 {
        self.maxbytes.load(Ordering::Relaxed)
    }

    fn backups(&self) -> u32 {
        self.backups.load(Ordering::Relaxed)
    }

    /// Opens the base file for a write if it is not open yet. A file moved or
    /// truncated since we last saw it starts a new base segment, as `reopen` does.
    fn ensure_open(&self, state: &mut FileState) -> Result<(), LogError> {
        self.open_disk(state, true).map(drop)
    }

    /// Opens the file unless it is open already; with `create`, a missing one
    /// is created, else it is left missing (`Ok(false)`) once its directory
    /// is found to take new names.
    fn open_disk(&self, state: &mut FileState, create: bool) -> Result<bool, LogError> {
        let Some(disk) = state.disk.as_mut() else { return Ok(true) };
        if disk.is_open() {
            return Ok(true);
        }
        let (old_identity, old_size) = (disk.identity(), disk.size());
        if create {
            disk.reopen()?;
        } else if !disk.reopen_existing(true)? {
            return Ok(false);
        }
        // A file never opened before (missing until now) that is still empty
        // matches what the offsets already say: its backups stay readable.
        let fresh = old_identity.is_none() && old_size == 0 && disk.size() == 0;
        if !fresh && (old_identity != disk.identity() || old_size != disk.size()) {
            self.restart_base(disk.size());
        }
        Ok(true)
    }

    /// Whether [`Inner::close_if_idle`] may have a file to close. Does not
    /// wait: a lock held elsewhere says maybe. A program that never wrote has
    /// no file open, and its capture's end then needs no blocking task (in a
    /// shutdown of 5,000 quiet programs, 10,000 of them woke the blocking pool).
    fn may_hold_file(&self) -> bool {
        match self.file.try_lock() {
            Ok(state) => {
                state.disk.as_ref().is_some_and(|disk| disk.is_regular() && disk.is_open())
            }
            Err(_) => true,
        }
    }

    /// Closes a regular file no capture writes to any more (a device such as
    /// `/dev/stdout` stays open).
    fn close_if_idle(&self, state: &mut FileState) {
        if self.captures.load(Ordering::SeqCst) == 0
            && let Some(disk) = state.disk.as_mut()
            && disk.is_regular()
        {
            disk.close();
        }
    }

    fn set_problem(&self, problem: Option<String>) {
        let mut slot = lock(&self.problem);
        match (slot.is_some(), problem.is_some()) {
            (false, true) => WITH_PROBLEM.fetch_add(1, Ordering::Relaxed),
            (true, false) => WITH_PROBLEM.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        *slot = problem;
    }

    /// Bytes before now are no longer in the base file (moved, truncated or
    /// replaced): they are served from the ring only.
    fn restart_base(&self, file_pos: u64) {
        let mut shared = lock(&self.shared);
        let total = shared.total;
        shared.base = Segment { start: total, len: 0, file_pos };
        shared.backups.clear();
    }

    fn append_memory(&self, data: &[u8]) {
        let mut shared = lock(&self.shared);
        shared.push(data);
        drop(shared);
        self.grown.notify_waiters();
    }

    fn rotates(&self, state: &FileState) -> bool {
        self.maxbytes() > 0 && state.disk.as_ref().is_some_and(|d| d.is_regular() && d.is_open())
    }

    /// Appends a batch to the file (rotating exactly at `maxbytes`) and the ring.
    /// Runs on a blocking thread.
    fn write_batch(&self, data: &[u8]) {
        let mut state = lock(&self.file);
        if let Err(error) = self.ensure_open(&mut state) {
            self.note_failure(&mut state, "opening", &error);
        }
        let mut rest = data;
        // After a failed rotation the rest of the batch is appended as is; the next
        // batch tries again.
        let mut rotation_failed = false;
        while !rest.is_empty() {
            if self.rotates(&state) && state.size() >= self.maxbytes() && !rotation_failed {
                self.rotate(&mut state);
                rotation_failed = state.size() >= self.maxbytes();
            }
            let room = if self.rotates(&state) && !rotation_failed {
                usize::try_from(self.maxbytes() - state.size()).unwrap_or(usize::MAX)
            } else {
                usize::MAX
            };
            let (piece, tail) = rest.split_at(rest.len().min(room.max(1)));
            let file_pos = state.size();
            let written = self.write_piece(&mut state, piece);
            {
                let mut shared = lock(&self.shared);
                let offset = shared.total;
                if state.regular() && written > 0 {
                    shared.record_file(offset, written as u64, file_pos);
                }
                shared.push(piece);
            }
            self.grown.notify_waiters();
            rest = tail;
        }
        if self.rotates(&state) && state.size() >= self.maxbytes() && !rotation_failed {
            self.rotate(&mut state);
        }
    }

    /// Writes as much of `piece` as the file takes; returns the bytes written.
    fn write_piece(&self, state: &mut FileState, piece: &[u8]) -> usize {
        let disk = state.disk();
        if !disk.is_open()
            && let Err(error) = disk.reopen()
        {
            self.note_failure(state, "opening", &error);
            return 0;
        }
        let (written, failure) = state.disk().write(piece);
        match failure {
            Some(error) => self.note_failure(state, "writing", &error),
            None if state.failing => {
                state.failing = false;
                if !state.rotation_failing {
                    self.set_problem(None);
                }
                tracing::info!(path = ?self.path, "log writes work again");
            }
            None => {}
        }
        written
    }

    fn note_failure(&self, state: &mut FileState, action: &str, error: &dyn std::fmt::Display) {
        self.set_problem(Some(error.to_string()));
        if !state.failing {
            state.failing = true;
            tracing::error!(path = ?self.path, %error, "{action} log file failed; output kept in memory only until it works again");
        }
    }

    /// supervisord's `doRollover` ([`LogFile::rotate`]), keeping the offset
    /// map in step: the base becomes backup 1 and a new base starts here.
    fn rotate(&self, state: &mut FileState) {
        let backups = self.backups();
        if backups == 0 {
            match state.disk().truncate() {
                Ok(()) => {
                    let mut shared = lock(&self.shared);
                    let total = shared.total;
                    shared.base = Segment { start: total, len: 0, file_pos: 0 };
                }
                Err(error) => self.note_failure(state, "truncating", &error),
            }
            return;
        }
        let rotation = match state.disk().rotate(backups) {
            Ok(rotation) => rotation,
            // Keep appending to the current file; the next write retries.
            Err(error) => {
                if !state.rotation_failing {
                    state.rotation_failing = true;
                    tracing::error!(path = ?self.path, %error, "rotating log file failed; appending to the current file until it works");
                }
                self.set_problem(Some(error.to_string()));
                return;
            }
        };
        if state.rotation_failing {
            state.rotation_failing = false;
            if !state.failing {
                self.set_problem(None);
            }
        }
        for error in &rotation.backup_errors {
            tracing::error!(%error, "moving an older log backup failed");
        }
        let mut shared = lock(&self.shared);
        let old_base = shared.base;
        shared.backups.push_front(old_base);
        shared.backups.truncate(backups as usize);
        if !rotation.backup_errors.is_empty() {
            shared.backups.truncate(1);
        }
        let total = shared.total;
        shared.base = Segment { start: total, len: 0, file_pos: 0 };
        drop(shared);
        if let Err(error) = rotation.reopen {
            self.note_failure(state, "reopening", &error);
        }
    }

    /// Copies retained bytes `[from, to)`, starting later if `from` is no longer kept.
    fn read_range(&self, from: u64, to: u64) -> io::Result<Vec<u8>> {
        let with_files = self.path.is_some();
        {
            // Fast path: everything asked for is in the ring.
            let shared = lock(&self.shared);
            let from = from.max(shared.retained_start(with_files));
            let to = to.min(shared.total);
            let ring_start = shared.ring_start();
            if from >= to {
                return Ok(Vec::new());
            }
            if from >= ring_start {
                let mut out = Vec::with_capacity((to - from) as usize);
                shared.ring.copy_into(
                    (from - ring_start) as usize,
                    (to - ring_start) as usize,
                    &mut out,
                );
                return Ok(out);
            }
        }
        // Slow path: part of it is only on disk. Holding the file lock keeps rotation
        // from renaming files under us.
        let _file_state = lock(&self.file);
        let shared = lock(&self.shared);
        let from = from.max(shared.retained_start(with_files));
        let to = to.min(shared.total);
        if from >= to {
            return Ok(Vec::new());
        }
        let ring_start = shared.ring_start();
        let mut ring_part = Vec::new();
        if to > ring_start {
            let ring_from = from.max(ring_start);
            shared.ring.copy_into(
                (ring_from - ring_start) as usize,
                (to - ring_start) as usize,
                &mut ring_part,
            );
        }
        let disk_to = to.min(ring_start);
        let mut segments: Vec<(PathBuf, Segment)> = Vec::new();
        let path = self.path.as_ref().expect("slow path only with files");
        if from < disk_to {
            segments.push((path.clone(), shared.base));
            for (index, backup) in shared.backups.iter().enumerate() {
                segments.push((backup_path(path, index as u32 + 1), *backup));
            }
        }
        drop(shared);
        let read_disk = || -> io::Result<Vec<u8>> {
            let mut out = Vec::with_capacity((to - from) as usize);
            // Oldest first.
            for (file_path, segment) in segments.iter().rev() {
                let lo = from.max(segment.start);
                let hi = disk_to.min(segment.end());
                if lo >= hi {
                    continue;
                }
                let file = file::open_read(file_path).map_err(io::Error::from)?;
                let mut chunk = vec![0u8; (hi - lo) as usize];
                file.read_exact_at(&mut chunk, segment.file_pos + (lo - segment.start))?;
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        };
        match read_disk() {
            Ok(mut out) => {
                out.extend_from_slice(&ring_part);
                Ok(out)
            }
            // The files changed behind our back (deleted, or truncated by a
            // copytruncate logrotate without SIGUSR2): what the ring holds is still a
            // gapless tail, so serve that rather than fail.
            Err(error) if !ring_part.is_empty() => {
                tracing::debug!(path = ?self.path, %error, "log file unreadable; serving the memory tail");
                Ok(ring_part)
            }
            Err(error) => Err(error),
        }
    }
}

/// Bytes a channel delivers within [`BUSY_WINDOW`] to count as busy: its pipe
/// is grown to [`BUSY_PIPE_SIZE`].
pub const BUSY_BYTES: u64 = 256 * 1024;
/// The time over which [`BUSY_BYTES`] are counted.
pub const BUSY_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
/// The pipe buffer asked for a busy channel (kernel memory, used only while the
/// child is ahead of us). Refused above `/proc/sys/fs/pipe-max-size` or the
/// user's pipe quota, which just leaves the pipe as it was. The quota counts
/// capacity: a daemon not running as root with dozens of busy channels at once
/// can pass `pipe-user-pages-soft`, after which the kernel gives its new pipes
/// a small buffer; hence growing only busy channels.
pub const BUSY_PIPE_SIZE: usize = 1024 * 1024;

/// How busy one capture's channel is, and whether its pipe was grown for it.
#[derive(Debug, Default)]
struct Load {
    /// The pipe was grown (or growing it was tried).
    grown: bool,
    /// Start of the current [`BUSY_WINDOW`] and the bytes read since.
    window_start: Option<std::time::Instant>,
    window_bytes: u64,
}

impl Load {
    /// Counts `read` bytes. Busyness is measured over time, not per read: a
    /// daemon that keeps up empties the pipe after every write of the child, so
    /// its reads stay small however fast the child writes.
    fn record(&mut self, read: u64) {
        let now = std::time::Instant::now();
        match self.window_start {
            Some(start) if now.duration_since(start) < BUSY_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.window_bytes = 0;
            }
        }
        self.window_bytes += read;
    }

    fn busy(&self) -> bool {
        self.window_bytes >= BUSY_BYTES
    }

    /// Grows the pipe of a channel that turned busy, once.
    fn grow_if_busy(&mut self, pipe: BorrowedFd<'_>) {
        if !self.grown && self.busy() {
            self.grown = true;
            grow_pipe(pipe);
        }
    }
}

/// Asks for a [`BUSY_PIPE_SIZE`] buffer on a busy channel's pipe.
fn grow_pipe(pipe: BorrowedFd<'_>) {
    use nix::fcntl::{FcntlArg, fcntl};
    let size = i32::try_from(BUSY_PIPE_SIZE).expect("a small constant");
    if let Err(errno) = fcntl(pipe, FcntlArg::F_SETPIPE_SZ(size)) {
        tracing::debug!(%errno, "growing a busy output pipe was refused; keeping its size");
    }
}

/// A capture's output filter, with the buffer its input is moved to.
struct Filtering {
    filter: Box<dyn OutputFilter>,
    raw: Vec<u8>,
}

/// Reads up to `chunk` bytes of what the pipe has into `pending`. The buffer is
/// grown only once the pipe is readable, so the thousands of capture tasks of quiet
/// programs hold no read buffer while they wait. Cancel-safe (it sits in a
/// `select!`): bytes are read only in the poll that returns them.
fn read_chunk<'a>(
    pipe: &'a pipe::Receiver,
    pending: &'a mut Vec<u8>,
    chunk: usize,
) -> impl Future<Output = io::Result<usize>> + 'a {
    // Polled readiness, not `readable().await`: that future carries a waiter
    // node of its own (about 200 bytes), in every capture task's future. Only
    // this task waits on the pipe, so the registration's one read slot serves.
    std::future::poll_fn(move |cx| {
        loop {
            std::task::ready!(pipe.poll_read_ready(cx))?;
            pending.reserve(chunk);
            match pipe.try_read_buf(pending) {
                // `try_read_buf` cleared the readiness: poll again to wait.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return std::task::Poll::Ready(result),
            }
        }
    })
}

/// Splits captured bytes into lines for a [`LineCallback`].
pub(crate) struct LineSplitter {
    callback: LineCallback,
    partial: Vec<u8>,
}

impl LineSplitter {
    pub(crate) fn new(callback: LineCallback) -> LineSplitter {
        LineSplitter { callback, partial: Vec::new() }
    }

    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while let Some(newline) = data.iter().position(|byte| *byte == b'\n') {
            if self.partial.is_empty() {
                (self.callback)(&data[..newline]);
            } else {
                self.partial.extend_from_slice(&data[..newline]);
                (self.callback)(&self.partial);
                self.partial.clear();
            }
            data = &data[newline + 1..];
        }
        self.partial.extend_from_slice(data);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            (self.callback)(&self.partial);
            self.partial = rest;
        }
    }

    pub(crate) fn finish(&mut self) {
        if !self.partial.is_empty() {
            (self.callback)(&self.partial);
            self.partial.clear();
        }
    }
}

/// Names an AUTO log of one channel of a program (see [`auto_log_path`]).
#[derive(Debug, Clone, Copy)]
pub struct AutoLog<'a> {
    /// `[supervisord] childlogdir`.
    pub childlogdir: &'a Path,
    /// The process name.
    pub program: &'a str,
    /// Which of its outputs.
    pub channel: Channel,
    /// `[supervisord] identifier`.
    pub identifier: &'a str,
}

/// One random AUTO log file name (`<name>-<channel>---<identifier>-<random>.log`).
fn auto_log_name(auto: &AutoLog<'_>) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    let mut seed = random_seed();
    let mut suffix = String::with_capacity(8);
    for _ in 0..8 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        suffix.push(ALPHABET[((seed >> 33) % ALPHABET.len() as u64) as usize] as char);
    }
    format!("{}-{}---{}-{suffix}.log", auto.program, auto.channel.as_str(), auto.identifier)
}

/// Creates a fresh AUTO log file named like supervisord's
/// (`<name>-<channel>---<identifier>-<random>.log` in `childlogdir`, created
/// exclusively with mode 0600 as `mkstemp` does, reached by [`file`](mod@file)'s rule)
/// and returns its path.
pub fn auto_log_path(
    childlogdir: &Path,
    name: &str,
    channel: Channel,
    identifier: &str,
) -> Result<PathBuf, LogError> {
    let auto = AutoLog { childlogdir, program: name, channel, identifier };
    for _ in 0..100 {
        let path = childlogdir.join(auto_log_name(&auto));
        match file::create_new(&path) {
            Ok(()) => return Ok(path),
            Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Err(LogError::Io {
        path: childlogdir.to_owned(),
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free AUTO log name after 100 tries",
        ),
    })
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS per process; mixing in time, pid and a counter
    // makes every call different. Uniqueness is enforced by create_new anyway.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    hasher.finish()
}

/// Whether `file_name` is an AUTO log of `identifier` (or a rotated backup of one),
/// by supervisord's start-up cleanup rule `.+?---<identifier>-\S+\.log\.{0,1}\d{0,4}`
/// (matched from the start of the name, not anchored at its end).
pub fn is_auto_log_name(file_name: &str, identifier: &str) -> bool {
    let marker = format!("---{identifier}-");
    let mut search_from = 1;
    while let Some(found) = file_name.get(search_from..).and_then(|rest| rest.find(&marker)) {
        let prefix_end = search_from + found;
        let rest = &file_name[prefix_end + marker.len()..];
        let matched = rest
            .char_indices()
            .skip(1)
            .take_while(|(index, _)| !rest[..*index].contains(char::is_whitespace))
            .any(|(index, _)| rest[index..].starts_with(".log"));
        if matched && !file_name[..prefix_end].contains('\n') {
            return true;
        }
        search_from = prefix_end + 1;
    }
    false
}

/// Deletes the AUTO logs of `identifier` left in `childlogdir` by an earlier run
/// (supervisord does this at start unless `nocleanup`). Returns how many were removed.
pub fn remove_auto_logs(childlogdir: &Path, identifier: &str) -> io::Result<usize> {
    // Names are listed by path, but each is checked and removed relative to
    // the directory reached by [`file`](mod@file)'s rule, never through a link.
    let dir = file::locate_dir(childlogdir)?;
    let mut removed = 0;
    for entry in std::fs::read_dir(childlogdir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if is_auto_log_name(&name, identifier)
            && dir.stat_name(name.as_ref())?.is_some_and(|stat| file::is_regular_file(&stat))
        {
            dir.unlink(name.as_ref())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;

/// The log maker: one thread, at a low priority, that creates the files
/// [`ChannelLog::prepare`] found missing, so a spawn storm's children do not
/// wait for the file system. It starts with the first file to make and then
/// waits on its queue (an idle daemon's maker never wakes). While a
/// [`MakerHold`] lives (the autostart pass, a shutdown) it makes nothing: on
/// two cores its file creations would take the other core from the spawns and
/// stops, and on a file system after many deletions one creation took up to a
/// millisecond of CPU.
mod maker {
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

    use super::ChannelLog;

    /// The lowest niceness: on a busy machine the maker takes about 1.5% of
    /// a core from the spawns and captures (nice 10 took about 10%). Not
    /// SCHED_IDLE: the maker holds its directory's lock while it creates, and
    /// a thread that almost never runs could keep a spawn's lookup in that
    /// directory waiting.
    const NICE: libc::c_int = 19;

    /// How many holds live; the maker waits while it is not zero.
    static HOLDS: Mutex<usize> = Mutex::new(0);
    static RELEASED: Condvar = Condvar::new();

    /// Keeps the maker from making files until dropped.
    pub(crate) struct MakerHold(());

    impl MakerHold {
        pub(crate) fn new() -> MakerHold {
            *HOLDS.lock().unwrap_or_else(PoisonError::into_inner) += 1;
            MakerHold(())
        }
    }

    impl Drop for MakerHold {
        fn drop(&mut self) {
            let mut holds = HOLDS.lock().unwrap_or_else(PoisonError::into_inner);
            *holds -= 1;
            if *holds == 0 {
                RELEASED.notify_all();
            }
        }
    }

    fn wait_unheld() {
        let holds = HOLDS.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            RELEASED.wait_while(holds, |holds| *holds > 0).unwrap_or_else(PoisonError::into_inner),
        );
    }

    pub(super) fn make_later(log: ChannelLog) {
        static QUEUE: OnceLock<Option<Sender<ChannelLog>>> = OnceLock::new();
        let queue = QUEUE.get_or_init(|| {
            let (tx, rx) = channel::<ChannelLog>();
            let started =
                std::thread::Builder::new().name("vigil-logmaker".to_owned()).spawn(move || {
                    // SAFETY: setpriority on this thread's own id (Linux: per thread).
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE)
                    };
                    while let Ok(log) = rx.recv() {
                        wait_unheld();
                        log.make_unmade();
                    }
                });
            started.ok().map(|_| tx)
        });
        match queue {
            Some(tx) => {
                if let Err(failed) = tx.send(log) {
                    failed.0.make_unmade();
                }
            }
            // No thread: made here, on the caller's path, as before.
            None => log.make_unmade(),
        }
    }
}
