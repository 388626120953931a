//! `memory_restart_threshold`: a task per running child that wakes only when
//! the kernel reports its group's memory, and fires once when the threshold is
//! passed. Nothing runs for programs without the key.
//!
//! - v1: a threshold on `memory.usage_in_bytes` registered through
//!   `cgroup.event_control` with an eventfd; the kernel signals the eventfd
//!   when usage crosses the threshold (either way, so usage is read to see
//!   which).
//! - v2: `memory.high` is set to the threshold ([`super::ProcessCgroup::apply`]);
//!   the kernel counts each time the group goes above it in `memory.events`
//!   (`high`) and reports the file modified, which inotify delivers.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use super::{ProcessCgroup, Version, counter, write_file};

/// Starts watching `cgroup`'s memory against `threshold`; `passed` is called
/// once, with the usage seen, when the group goes above it. `None` (logged by
/// the caller) when the group has no memory controller or the kernel refuses
/// the watch.
pub(crate) fn spawn_memory_watch(
    cgroup: &ProcessCgroup,
    threshold: u64,
    passed: impl FnOnce(u64) + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let (dir, version) = cgroup
        .memory_dir()
        .ok_or_else(|| io::Error::other("the control group has no memory controller"))?;
    let dir = dir.to_path_buf();
    let watch = match version {
        Version::V1 => Watch::V1(V1Watch::register(&dir, threshold)?),
        Version::V2 => Watch::V2(V2Watch::register(&dir)?),
    };
    Ok(tokio::spawn(async move {
        match watch.passed(&dir, threshold).await {
            Ok(usage) => passed(usage),
            Err(error) => tracing::warn!(
                "stopped watching the memory of control group {}: {error}",
                dir.display()
            ),
        }
    }))
}

enum Watch {
    V1(V1Watch),
    V2(V2Watch),
}

impl Watch {
    /// Resolves with the usage once the group is above `threshold`.
    async fn passed(self, dir: &Path, threshold: u64) -> io::Result<u64> {
        match self {
            Watch::V1(watch) => {
                let usage_file = dir.join("memory.usage_in_bytes");
                // SAFETY: the EventFd owns its descriptor until it is dropped
                // with the AsyncFd, and always returns that one.
                let events =
                    unsafe { AsyncFd::register_with_interest(watch.eventfd, Interest::READABLE) }?;
                loop {
                    if let Some(usage) = read_number(&usage_file).filter(|u| *u >= threshold) {
                        return Ok(usage);
                    }
                    let mut ready = events.readable().await?;
                    match ready.get_inner().read() {
                        Ok(_) => {}
                        Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                        Err(errno) => return Err(errno.into()),
                    }
                }
            }
            Watch::V2(watch) => {
                let events_file = dir.join("memory.events");
                let baseline = counter(&events_file, "high").unwrap_or(0);
                let current = dir.join("memory.current");
                // SAFETY: as above: the Inotify inside owns its descriptor.
                let events = unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE) }?;
                loop {
                    let high = counter(&events_file, "high").unwrap_or(0);
                    let usage = read_number(&current).unwrap_or(0);
                    if high > baseline || usage >= threshold {
                        return Ok(usage);
                    }
                    let mut ready = events.readable().await?;
                    match ready.get_inner().inotify.read_events() {
                        Ok(_) => {}
                        Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                        Err(errno) => return Err(errno.into()),
                    }
                }
            }
        }
    }
}

/// A registered v1 threshold. The registration lasts as long as the eventfd
/// and the usage file's descriptor stay open.
struct V1Watch {
    eventfd: EventFd,
    _usage: std::fs::File,
}

impl V1Watch {
    fn register(dir: &Path, threshold: u64) -> io::Result<V1Watch> {
        let eventfd =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let usage = std::fs::File::open(dir.join("memory.usage_in_bytes"))?;
        let line = format!("{} {} {threshold}", eventfd.as_fd().as_raw_fd(), usage.as_raw_fd());
        write_file(&dir.join("cgroup.event_control"), &line)?;
        Ok(V1Watch { eventfd, _usage: usage })
    }
}

/// An inotify watch on a v2 group's `memory.events`.
struct V2Watch {
    inotify: Inotify,
    _dir: PathBuf,
}

impl V2Watch {
    fn register(dir: &Path) -> io::Result<V2Watch> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        inotify.add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)?;
        Ok(V2Watch { inotify, _dir: dir.to_path_buf() })
    }
}

impl AsRawFd for V2Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

/// A control file holding one number (`memory.usage_in_bytes`, `memory.current`).
fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
