//! systemd's readiness protocol: a datagram socket per process whose path the
//! child finds in `NOTIFY_SOCKET`; a datagram with a `READY=1` line makes the
//! child ready (`ready_notify = true`), so existing `Type=notify` daemons work
//! unchanged.
//!
//! The socket lives as long as the process actor, across restarts of the
//! program, in a per-daemon directory under the temporary directory; dropping the
//! [`NotifySocket`] stops its reader task and removes the file. Reading is one
//! tokio task per socket, never a thread. Datagrams carry no child identity the
//! actor could check cheaply, so a `READY=1` counts only while the process is
//! STARTING with a child.

use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ractor::ActorRef;
use tokio::net::UnixDatagram;
use tokio::task::JoinHandle;

use crate::messages::ProcessMsg;

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(0);

/// This image's part of a socket's name. A live upgrade keeps the pid, so
/// the directory; a carried socket keeps its name, and a socket the next
/// image binds must not take (and unlink) that name.
fn image_tag() -> u128 {
    static TAG: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *TAG.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos())
    })
}

/// The directory of this daemon's notify sockets.
pub(crate) fn socket_dir() -> PathBuf {
    std::env::temp_dir().join(format!("vigil-notify-{}", std::process::id()))
}

/// A bound notify socket and its reader.
pub(crate) struct NotifySocket {
    path: PathBuf,
    socket: Arc<UnixDatagram>,
    reader: JoinHandle<()>,
    /// Handed to the next image: its file stays.
    carried: bool,
}

impl NotifySocket {
    /// Binds a fresh socket in `dir` and forwards each `READY=1` to `actor`.
    /// `shared` makes it writable by any user (the program runs as another user).
    pub(crate) fn bind(
        dir: &Path,
        shared: bool,
        actor: ActorRef<ProcessMsg>,
    ) -> std::io::Result<NotifySocket> {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        let index = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{index}.sock", image_tag()));
        // A stale file from an earlier daemon with the same pid.
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        if shared {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        }
        Ok(NotifySocket::serve(path, socket, actor))
    }

    /// Reads again the socket a previous image of a live upgrade handed over
    /// ([`NotifySocket::hand_over`]): what the child sent meanwhile waited in it.
    pub(crate) fn adopt(
        path: PathBuf,
        fd: OwnedFd,
        actor: ActorRef<ProcessMsg>,
    ) -> std::io::Result<NotifySocket> {
        let socket = std::os::unix::net::UnixDatagram::from(fd);
        socket.set_nonblocking(true)?;
        Ok(NotifySocket::serve(path, UnixDatagram::from_std(socket)?, actor))
    }

    fn serve(path: PathBuf, socket: UnixDatagram, actor: ActorRef<ProcessMsg>) -> NotifySocket {
        let socket = Arc::new(socket);
        let reading = Arc::clone(&socket);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok(n) = reading.recv(&mut buf).await else {
                    return;
                };
                if is_ready(&buf[..n]) && actor.cast(ProcessMsg::Notified).is_err() {
                    return;
                }
            }
        });
        NotifySocket { path, socket, reader, carried: false }
    }

    /// The value of `NOTIFY_SOCKET` for the child.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// For a live upgrade: stops reading and returns the socket (a copy of
    /// its descriptor) and its path, whose file is left in place. A datagram
    /// the child sends from now on waits in the socket for the next image.
    pub(crate) fn hand_over(mut self) -> std::io::Result<(OwnedFd, PathBuf)> {
        self.reader.abort();
        let fd = self.socket.as_fd().try_clone_to_owned()?;
        self.carried = true;
        Ok((fd, self.path.clone()))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.reader.abort();
        if !self.carried {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether a notification datagram holds a `READY=1` line (sd_notify(3): newline
/// separated assignments).
pub(crate) fn is_ready(datagram: &[u8]) -> bool {
    datagram.split(|b| *b == b'\n').any(|line| line == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_anywhere_in_the_datagram() {
        assert!(is_ready(b"READY=1"));
        assert!(is_ready(b"STATUS=warming up\nREADY=1\n"));
        assert!(!is_ready(b"READY=0"));
        assert!(!is_ready(b"STATUS=READY=1"));
    }
}
