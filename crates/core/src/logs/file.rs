//! The one rotating log file under every log Vigil writes (each channel's
//! [`ChannelLog`](super::ChannelLog) and vigild's activity log), and the rule
//! by which such a file is reached.
//!
//! # Reaching a file safely
//!
//! vigild usually runs as root and writes logs into directories its programs,
//! running as other users, may be able to write. Opening such a path by name
//! would let a program plant a symbolic link (or a hard link) there and have
//! the daemon create, append to, rename or delete a file of its choice. So no
//! path is handed to the kernel whole. `locate` walks it one component at a
//! time from `/`, each step an `openat` relative to the directory reached so
//! far, and then every operation (open, rename of backups, unlink) works on
//! the name inside that held directory:
//!
//! - A directory is *trusted* when it belongs to root or to the daemon's own
//!   user and neither its group nor others may write it: nobody else can
//!   change what its names point to. An entry of a sticky directory owned by
//!   root or the daemon's user (`/tmp`) is protected too, if the entry also
//!   belongs to root or the daemon's user: the sticky bit keeps others from
//!   renaming or removing it.
//! - A symbolic link is followed only when it is protected that way; its
//!   target is walked by the same rule. Anywhere else it is refused (a clear
//!   [`LogError::Refused`]), and directories are opened with `O_NOFOLLOW`, so
//!   one swapped in between the check and the open is refused as well.
//! - The file itself is opened with `O_NOFOLLOW` relative to its directory. In
//!   a directory that is not trusted it must be a regular file with a single
//!   link, owned by the daemon's user or the directory's owner: a hard link to
//!   someone else's file, or a FIFO, is refused. (`O_NONBLOCK` keeps a planted
//!   FIFO from blocking the open.)
//! - Magic links of `/proc` (`/dev/stdout` ends in `/proc/self/fd/1`) name no
//!   walkable path; in a trusted procfs directory the kernel follows them.
//!
//! Nothing here is kept open between operations: each one reaches the
//! directory again, so a quiet log holds no descriptor and a directory that
//! comes back after being removed is used again. Reaching a trusted directory
//! walked lately takes one `open` instead of a walk: see `Recent`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::LogError;

/// Symbolic links followed while reaching one path, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// The path of backup `index` (1-based): `file.1`, `file.2`, ...
pub fn backup_path(path: &Path, index: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

fn backup_name(name: &OsStr, index: u32) -> OsString {
    let mut backup = name.to_owned();
    backup.push(format!(".{index}"));
    backup
}

fn is_type(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

/// The daemon's own user or root: nobody less privileged.
fn privileged(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// A directory reached by `locate`, held open (`O_PATH`).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    uid: u32,
    mode: u32,
    /// The device it is on: a directory on its parent's device is on its
    /// parent's file system, whose type is then known already.
    dev: u64,
    ino: u64,
    procfs: bool,
}

impl Dir {
    fn open_at(parent: Option<&Dir>, name: &OsStr) -> Result<Dir, Errno> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match parent {
            Some(parent) => nix::fcntl::openat(&parent.fd, name, flags, Mode::empty())?,
            None => nix::fcntl::open(name, flags, Mode::empty())?,
        };
        let stat = nix::sys::stat::fstat(&fd)?;
        if !is_type(&stat, SFlag::S_IFDIR) {
            return Err(Errno::ENOTDIR);
        }
        let procfs = match parent {
            Some(parent) if parent.dev == stat.st_dev => parent.procfs,
            _ => nix::sys::statfs::fstatfs(&fd)
                .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC),
        };
        Ok(Dir {
            fd,
            uid: stat.st_uid,
            mode: stat.st_mode,
            dev: stat.st_dev,
            ino: stat.st_ino,
            procfs,
        })
    }

    /// Only root or the daemon's user can change what its names point to.
    fn trusted(&self) -> bool {
        privileged(self.uid) && self.mode & 0o022 == 0
    }

    /// Nobody less privileged can replace `entry`, a name in this directory.
    fn protects(&self, entry: &FileStat) -> bool {
        self.trusted()
            || (self.mode & libc::S_ISVTX != 0 && privileged(self.uid) && privileged(entry.st_uid))
    }

    fn stat(&self, name: &OsStr) -> Result<FileStat, Errno> {
        nix::sys::stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    fn describe_writer(&self) -> String {
        if self.mode & 0o002 != 0 {
            "every user can write".to_owned()
        } else if self.mode & 0o020 != 0 {
            format!("group {} can write", group_of(&self.fd))
        } else {
            format!("user {} owns", self.uid)
        }
    }
}

fn group_of(fd: &OwnedFd) -> u32 {
    nix::sys::stat::fstat(fd).map_or(0, |stat| stat.st_gid)
}

/// Trusted directories in which walks found files lately, by the path that
/// reached them. vigild reaches every log again and again: the tree's build
/// looks at each, each spawn checks its program's two, and the log maker, the
/// first write and each rotation open them. A walk costs three or four system
/// calls per component of the path; with 5,000 programs logging into one
/// directory, that was most of the work before the first spawn.
///
/// Such a directory is reached again by opening its path in one call and
/// checking, on the descriptor opened, that it is the same directory (device
/// and inode) with the owner and mode the walk judged it by. Every operation
/// then works on that directory itself, so the path that led to it does not
/// matter: it is a directory only root or the daemon's user can change, which
/// a walk by the rule reached. Anything else (a directory removed, replaced,
/// or made writable by others) fails the check and is walked again, and
/// refused if the rule says so. Only directories that are trusted, reached by
/// walks that followed no link, are kept, and a file name that is itself a
/// link is always walked. Nothing is held open: an entry is an identity, not
/// a descriptor, so a log directory can still be unmounted.
struct Recent {
    entries: Mutex<Vec<(PathBuf, Identity)>>,
}

/// What [`Recent`] checks a directory opened again against.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    uid: u32,
    mode: u32,
}

impl Identity {
    fn of_stat(stat: &FileStat) -> Identity {
        Identity { dev: stat.st_dev, ino: stat.st_ino, uid: stat.st_uid, mode: stat.st_mode }
    }

    fn of_dir(dir: &Dir) -> Identity {
        Identity { dev: dir.dev, ino: dir.ino, uid: dir.uid, mode: dir.mode }
    }
}

impl Recent {
    /// Logs usually share a few directories (`childlogdir`, `/var/log/...`).
    const CAPACITY: usize = 32;

    fn get() -> &'static Recent {
        static RECENT: Recent = Recent { entries: Mutex::new(Vec::new()) };
        &RECENT
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PathBuf, Identity)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The file `name` in the directory `parent`, if a walk reached `parent`
    /// lately and it is still that directory; `None` when the path must be
    /// walked.
    fn reach(&self, parent: &Path, name: &OsStr, absolute: &Path) -> Option<Location> {
        let known = self.lock().iter().find(|(path, _)| path == parent).map(|(_, known)| *known)?;
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let same = nix::fcntl::open(parent, flags, Mode::empty()).ok().and_then(|fd| {
            let stat = nix::sys::stat::fstat(&fd).ok()?;
            (Identity::of_stat(&stat) == known).then_some(fd)
        });
        let Some(fd) = same else {
            self.lock().retain(|(path, _)| path != parent);
            return None;
        };
        let dir = Dir {
            fd,
            uid: known.uid,
            mode: known.mode,
            dev: known.dev,
            ino: known.ino,
            procfs: false,
        };
        match dir.stat(name) {
            Ok(entry) if is_type(&entry, SFlag::S_IFLNK) => None,
            Ok(_) | Err(Errno::ENOENT) => Some(Location {
                dir,
                name: name.to_owned(),
                follow: false,
                path: absolute.to_owned(),
            }),
            Err(_) => None,
        }
    }

    fn remember(&self, parent: &Path, dir: &Dir) {
        if !dir.trusted() || dir.procfs {
            return;
        }
        let mut entries = self.lock();
        entries.retain(|(path, _)| path != parent);
        if entries.len() == Recent::CAPACITY {
            entries.remove(0);
        }
        entries.push((parent.to_owned(), Identity::of_dir(dir)));
    }
}

/// `absolute`'s directory and file name when it names them without `..`
/// (the only paths [`Recent`] keeps).
fn plain_split(absolute: &Path) -> Option<(&Path, &OsStr)> {
    if absolute.components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_))) {
        return None;
    }
    Some((absolute.parent()?, absolute.file_name()?))
}

/// A file's directory, held open, and its name in it.
#[derive(Debug)]
pub(crate) struct Location {
    dir: Dir,
    name: OsString,
    /// The name is a magic link of a trusted procfs directory.
    follow: bool,
    path: PathBuf,
}

/// How a log file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Appending, creating it (mode 0666 less the umask) if missing.
    Append,
    /// Appending to a file that exists; `ENOENT` when it does not.
    AppendExisting,
    /// A fresh file that must not exist yet (mode 0600, as `mkstemp`).
    CreateNew,
    Read,
}

fn refused(path: &Path, reason: impl Into<String>) -> LogError {
    LogError::Refused { path: path.to_owned(), reason: reason.into() }
}

fn io_error(path: &Path, errno: Errno) -> LogError {
    LogError::Io { path: path.to_owned(), source: io::Error::from(errno) }
}

/// Walks `path` by the rule of the module docs. With `file`, the last
/// component is a file name that is not opened (and may not exist); else
/// every component is a directory and the last one is returned as the
/// location's directory with an empty name.
fn walk(path: &Path, file: bool) -> Result<Location, LogError> {
    let absolute = std::path::absolute(path)
        .map_err(|source| LogError::Io { path: path.to_owned(), source })?;
    let plain = if file { plain_split(&absolute) } else { None };
    if let Some((parent, name)) = plain
        && let Some(location) = Recent::get().reach(parent, name, &absolute)
    {
        return Ok(location);
    }
    // Components still to walk, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, &absolute);
    let root = Dir::open_at(None, OsStr::new("/")).map_err(|errno| io_error(path, errno))?;
    let mut stack = vec![root];
    let mut links = 0;
    loop {
        let Some(name) = pending.pop() else {
            if file {
                return Err(LogError::Io {
                    path: path.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
                });
            }
            let dir = stack.pop().expect("the root is never popped");
            return Ok(Location { dir, name: OsString::new(), follow: false, path: absolute });
        };
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = file && pending.is_empty();
        let parent = stack.last().expect("the root is never popped");
        let entry = match parent.stat(&name) {
            Ok(entry) => Some(entry),
            Err(Errno::ENOENT) if last => None,
            Err(errno) => return Err(io_error(path, errno)),
        };
        if let Some(entry) = entry.filter(|entry| is_type(entry, SFlag::S_IFLNK)) {
            if !parent.protects(&entry) {
                return Err(refused(
                    path,
                    format!(
                        "{:?} is a symbolic link in a directory {}",
                        name,
                        parent.describe_writer()
                    ),
                ));
            }
            if last && parent.procfs {
                let dir = stack.pop().expect("the root is never popped");
                return Ok(Location { dir, name, follow: true, path: absolute });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io_error(path, Errno::ELOOP));
            }
            let target = nix::fcntl::readlinkat(&parent.fd, name.as_os_str())
                .map_err(|errno| io_error(path, errno))?;
            let target = Path::new(&target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            push_components(&mut pending, target);
            continue;
        }
        if last {
            let dir = stack.pop().expect("the root is never popped");
            if links == 0
                && let Some((parent, _)) = plain
            {
                Recent::get().remember(parent, &dir);
            }
            return Ok(Location { dir, name, follow: false, path: absolute });
        }
        let dir = match Dir::open_at(Some(parent), &name) {
            Ok(dir) => dir,
            // Swapped for a symbolic link since the check above.
            Err(Errno::ELOOP) => {
                return Err(refused(path, format!("{name:?} changed while being opened")));
            }
            Err(errno) => return Err(io_error(path, errno)),
        };
        stack.push(dir);
    }
}

/// Pushes `path`'s components so that the first is popped first.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let start = pending.len();
    for component in path.components() {
        match component {
            Component::Normal(name) => pending.push(name.to_owned()),
            Component::ParentDir => pending.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

/// Reaches the directory of the file `path` and its name there (see the module docs).
pub(crate) fn locate(path: &Path) -> Result<Location, LogError> {
    walk(path, true)
}

/// Reaches the directory `path` (see the module docs).
pub(crate) fn locate_dir(path: &Path) -> Result<Location, LogError> {
    walk(path, false)
}

impl Location {
    /// The file this location names, resolved (for messages).
    fn display_path(&self) -> &Path {
        &self.path
    }

    /// Opens the file (see the module docs for the checks).
    pub(crate) fn open(&self, access: Access) -> Result<File, LogError> {
        let path = self.display_path();
        let (mut flags, mode) = match access {
            Access::Append => (
                OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
                Mode::from_bits_truncate(0o666),
            ),
            Access::AppendExisting => (OFlag::O_WRONLY | OFlag::O_APPEND, Mode::empty()),
            Access::CreateNew => {
                (OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, Mode::from_bits_truncate(0o600))
            }
            Access::Read => (OFlag::O_RDONLY, Mode::empty()),
        };
        flags |= OFlag::O_CLOEXEC;
        if !self.follow {
            flags |= OFlag::O_NOFOLLOW;
        }
        let trusted = self.dir.trusted();
        if !trusted {
            flags |= OFlag::O_NONBLOCK;
        }
        let fd = match nix::fcntl::openat(&self.dir.fd, self.name.as_os_str(), flags, mode) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) if !self.follow => {
                return Err(refused(
                    path,
                    format!("it is a symbolic link in a directory {}", self.dir.describe_writer()),
                ));
            }
            Err(errno) => return Err(io_error(path, errno)),
        };
        if !trusted {
            let stat = nix::sys::stat::fstat(&fd).map_err(|errno| io_error(path, errno))?;
            if !is_type(&stat, SFlag::S_IFREG) {
                return Err(refused(
                    path,
                    format!("not a regular file, in a directory {}", self.dir.describe_writer()),
                ));
            }
            if stat.st_nlink != 1 {
                return Err(refused(
                    path,
                    format!(
                        "it has {} hard links, in a directory {}",
                        stat.st_nlink,
                        self.dir.describe_writer()
                    ),
                ));
            }
            if !privileged(stat.st_uid) && stat.st_uid != self.dir.uid {
                return Err(refused(
                    path,
                    format!(
                        "it belongs to user {}, in a directory {}",
                        stat.st_uid,
                        self.dir.describe_writer()
                    ),
                ));
            }
            // Back to blocking writes for a regular file (O_NONBLOCK only
            // guarded the open against a FIFO).
            let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags & OFlag::O_APPEND));
        }
        Ok(File::from(fd))
    }

    /// The file's metadata without following a link; `None` if it does not exist.
    pub(crate) fn stat(&self) -> Result<Option<FileStat>, LogError> {
        self.stat_name(&self.name)
    }

    /// Checks that a missing file could be created now: the directory takes
    /// new names from this process (the file itself is made later).
    pub(crate) fn check_creatable(&self) -> Result<(), LogError> {
        nix::unistd::faccessat(
            &self.dir.fd,
            ".",
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            AtFlags::AT_EACCESS,
        )
        .map_err(|errno| io_error(&self.path, errno))
    }

    /// Removes the name (never what a link points to). Missing is fine.
    pub(crate) fn unlink(&self, name: &OsStr) -> Result<(), LogError> {
        match nix::unistd::unlinkat(&self.dir.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(io_error(&self.path.with_file_name(name), errno)),
        }
    }

    /// Renames `from` to `to` inside the directory; `Ok(false)` if `from` is missing.
    fn rename(&self, from: &OsStr, to: &OsStr) -> Result<bool, LogError> {
        match nix::fcntl::renameat(&self.dir.fd, from, &self.dir.fd, to) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(io_error(&self.path.with_file_name(from), errno)),
        }
    }

    /// Metadata of `name` in the directory, without following a link;
    /// `None` if missing.
    pub(crate) fn stat_name(&self, name: &OsStr) -> Result<Option<FileStat>, LogError> {
        match self.dir.stat(name) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(io_error(&self.path.with_file_name(name), errno)),
        }
    }
}

/// What a rotation left behind when it moved the base file.
#[derive(Debug)]
pub struct Rotation {
    /// Why older backups could not be removed or moved up one place (some
    /// were lost or left); empty when every one moved. (Reported by the
    /// caller: the activity log cannot log from inside its own write.)
    pub backup_errors: Vec<LogError>,
    /// The fresh base file could not be opened (the next write tries again).
    pub reopen: Result<(), LogError>,
}

/// An append-only log file with supervisord's size rotation: `file` ->
/// `file.1` ... `file.N`. It decides nothing about when to rotate; its owner
/// does ([`ChannelLog`](super::ChannelLog) exactly at `maxbytes`, the activity
/// log after the write that reaches it). Every open, rename and unlink goes
/// through `locate`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    /// Length of the open file as written by us.
    size: u64,
    /// Rotation, truncation and reading back only make sense for regular
    /// files (not `/dev/stdout`).
    regular: bool,
    /// (dev, inode) of the file last opened, to notice a move or a replacement.
    identity: Option<(u64, u64)>,
}

impl LogFile {
    /// A log file at `path`, not opened yet.
    pub fn new(path: PathBuf) -> LogFile {
        LogFile { path, file: None, size: 0, regular: true, identity: None }
    }

    /// A regular log file at `path`, not open, that a live upgrade carried
    /// with its size and identity (see `ChannelLog::resume`).
    pub fn resumed(path: PathBuf, size: u64, identity: Option<(u64, u64)>) -> LogFile {
        LogFile { path, file: None, size, regular: true, identity }
    }

    /// A log file at `path`, opened for appending (created if missing).
    pub fn open(path: PathBuf) -> Result<LogFile, LogError> {
        let mut file = LogFile::new(path);
        file.reopen()?;
        Ok(file)
    }

    /// The path the log was configured with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a descriptor is held now (a quiet log holds none).
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// The size of the file as last opened plus what was written since.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the file is a regular file (not a device such as `/dev/stdout`).
    pub fn is_regular(&self) -> bool {
        self.regular
    }

    /// (dev, inode) of the file last opened.
    pub fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// Forgets which file was open, so the next open counts as a new file.
    pub fn forget_identity(&mut self) {
        self.identity = None;
    }

    /// Closes the descriptor; the next [`LogFile::reopen`] opens the path again.
    pub fn close(&mut self) {
        self.file = None;
    }

    /// (Re)opens the path for appending, creating the file if missing.
    pub fn reopen(&mut self) -> Result<(), LogError> {
        self.file = None;
        let location = locate(&self.path)?;
        self.adopt(location.open(Access::Append)?)
    }

    /// [`LogFile::reopen`] of a file that exists; `Ok(false)`, creating
    /// nothing, when it is missing. With `creatable`, a missing file's
    /// directory must also take new names from this process now (see
    /// [`ChannelLog::prepare`](super::ChannelLog::prepare)). One walk of the
    /// path either way.
    pub fn reopen_existing(&mut self, creatable: bool) -> Result<bool, LogError> {
        self.file = None;
        let location = locate(&self.path)?;
        match location.open(Access::AppendExisting) {
            Ok(file) => self.adopt(file).map(|()| true),
            Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                if creatable {
                    location.check_creatable()?;
                }
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// [`LogFile::reopen_existing`] without the check, plus the metadata of
    /// the backups when the file is regular: `.1`, `.2` ... up to `backups`,
    /// without following links, ending before the first that is missing or
    /// not a regular file. A history is read back by index (`.1` is the
    /// newest backup), so one with a gap ends at the gap, as the next
    /// rotation leaves it. One walk of the path for all of it.
    pub fn reopen_with_backups(&mut self, backups: u32) -> Result<Vec<FileStat>, LogError> {
        self.file = None;
        let location = locate(&self.path)?;
        match location.open(Access::AppendExisting) {
            Ok(file) => self.adopt(file)?,
            Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if !self.regular {
            return Ok(Vec::new());
        }
        Ok((1..=backups)
            .map_while(|index| {
                location
                    .stat_name(&backup_name(&location.name, index))
                    .ok()
                    .flatten()
                    .filter(is_regular_file)
            })
            .collect())
    }

    fn adopt(&mut self, file: File) -> Result<(), LogError> {
        let stat = nix::sys::stat::fstat(&file).map_err(|errno| io_error(&self.path, errno))?;
        self.regular = is_type(&stat, SFlag::S_IFREG);
        self.identity = Some((stat.st_dev, stat.st_ino));
        self.size = if self.regular { u64::try_from(stat.st_size).unwrap_or(0) } else { 0 };
        self.file = Some(file);
        Ok(())
    }

    /// Appends as much of `data` as the file takes. Returns the bytes written
    /// and the error that stopped it, if any.
    pub fn write(&mut self, data: &[u8]) -> (usize, Option<io::Error>) {
        let Some(file) = self.file.as_mut() else {
            return (0, Some(io::Error::new(io::ErrorKind::NotConnected, "log file not open")));
        };
        let mut written = 0;
        let mut failure = None;
        while written < data.len() {
            match file.write(&data[written..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => written += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if self.regular {
            self.size += written as u64;
        }
        (written, failure)
    }

    /// Empties the open file in place (rotation without backups).
    pub fn truncate(&mut self) -> Result<(), LogError> {
        if let Some(file) = &self.file {
            file.set_len(0).map_err(|source| LogError::Io { path: self.path.clone(), source })?;
            self.size = 0;
        }
        Ok(())
    }

    /// supervisord's `doRollover` with `backups` copies: `.N-1` -> `.N` ...
    /// base -> `.1`, then a fresh base; with no backups, [`LogFile::truncate`].
    /// An error means the base file was not moved and stays open as it was.
    pub fn rotate(&mut self, backups: u32) -> Result<Rotation, LogError> {
        if backups == 0 {
            self.truncate()?;
            return Ok(Rotation { backup_errors: Vec::new(), reopen: Ok(()) });
        }
        let location = locate(&self.path)?;
        let name = location.name.clone();
        let mut backup_errors = Vec::new();
        // The oldest backup goes first, so no rename below replaces a file: on
        // ext4 a rename over an existing file forces the source's delayed
        // allocation and writeback to start inside the rename (auto_da_alloc),
        // milliseconds for a freshly written backup, on the capture path.
        // supervisord also removes before renaming.
        if let Err(error) = location.unlink(&backup_name(&name, backups)) {
            backup_errors.push(error);
        }
        for index in (1..backups).rev() {
            let from = backup_name(&name, index);
            if let Err(error) = location.rename(&from, &backup_name(&name, index + 1)) {
                backup_errors.push(error);
            }
        }
        // A base file removed behind our back has nothing to move: the fresh
        // base starts all the same.
        location.rename(&name, &backup_name(&name, 1))?;
        self.file = None;
        self.size = 0;
        let reopen = location.open(Access::Append).and_then(|file| self.adopt(file));
        Ok(Rotation { backup_errors, reopen })
    }

    /// supervisord's `clearLog` / `clearProcessLogs`: deletes the file and
    /// opens a fresh one (backups are left alone).
    pub fn clear(&mut self) -> Result<(), LogError> {
        self.file = None;
        self.size = 0;
        let location = locate(&self.path)?;
        if self.regular {
            location.unlink(&location.name)?;
        }
        self.adopt(location.open(Access::Append)?)
    }

    /// Metadata of the base file (`index` 0) or backup `index`, without
    /// following a link; `None` if missing.
    pub fn stat(&self, index: u32) -> Result<Option<FileStat>, LogError> {
        let location = locate(&self.path)?;
        if index == 0 {
            location.stat()
        } else {
            location.stat_name(&backup_name(&location.name, index))
        }
    }

    /// Opens the base file (`index` 0) or backup `index` for reading.
    pub fn open_read(&self, index: u32) -> Result<File, LogError> {
        open_read(&if index == 0 { self.path.clone() } else { backup_path(&self.path, index) })
    }
}

/// Opens `path` for reading by the rule of the module docs.
pub fn open_read(path: &Path) -> Result<File, LogError> {
    locate(path)?.open(Access::Read)
}

/// Creates `path`, which must not exist yet, with mode 0600.
pub(crate) fn create_new(path: &Path) -> Result<(), LogError> {
    locate(path)?.open(Access::CreateNew).map(drop)
}

/// Whether a metadata record is a regular file.
pub(crate) fn is_regular_file(stat: &FileStat) -> bool {
    is_type(stat, SFlag::S_IFREG)
}
