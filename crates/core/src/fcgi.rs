//! `[fcgi-program:x]` sockets: one listening socket per group, shared by every
//! process of the group as its fd 0.
//!
//! As in supervisord (`socket_manager.py`), the socket is created and bound
//! when the group is added, so a bad address or a port in use fails the add
//! (or startup) instead of every spawn. From then on each child holds a
//! reference (`FcgiSockets::acquire`, kept until the reaper reports its
//! exit); the daemon's descriptor closes when the last child holding it exited,
//! and the next spawn binds it again.
//!
//! A live upgrade carries each group's socket (the one its children listen
//! on) to the next image (`FcgiSockets::carry`), which keeps it for the
//! group if the address is the same instead of binding again.
//!
//! Sockets: `tcp://host:port` (`SO_REUSEADDR`, like supervisord) or
//! `unix:///abs/path` (an existing file at the path is replaced; then
//! `socket_mode` and `socket_owner` are applied before `listen`).

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use socket2::{Domain, SockAddr, Socket, Type};
use vigil_config::{FcgiSocket, GroupConfig, GroupKind};

use crate::spawn::SharedFd;

/// Why an fcgi socket could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FcgiError {
    /// The address is neither `tcp://host:port` nor `unix:///abs/path`, or
    /// names no host.
    #[error("Could not create FastCGI socket {socket}: bad socket address")]
    BadAddress {
        /// The configured `socket`.
        socket: String,
    },
    /// Creating, binding or listening failed.
    #[error("Could not create FastCGI socket {socket}: {source}")]
    Io {
        /// The configured `socket`.
        socket: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

struct Entry {
    config: FcgiSocket,
    /// The socket made when the group was added, until the first child takes it.
    initial: Option<Arc<OwnedFd>>,
    /// The socket the current children share, while any does.
    live: Weak<OwnedFd>,
}

/// The fcgi sockets of every fcgi group, by group name.
#[derive(Default)]
pub(crate) struct FcgiSockets {
    groups: Mutex<HashMap<String, Entry>>,
}

impl FcgiSockets {
    /// Binds the socket of `group` if it is an fcgi group (replacing the entry
    /// of a removed group of the same name).
    pub(crate) fn prepare(&self, group: &GroupConfig) -> Result<(), FcgiError> {
        let GroupKind::Fcgi(config) = &group.kind else {
            return Ok(());
        };
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        // Close the old one first, or a TCP port could not be bound again.
        groups.remove(&group.name);
        let socket = match crate::handover::claim_socket(&group.name, &config.socket) {
            // The children the previous image handed over listen on it.
            Some(carried) => {
                tracing::info!(
                    "kept socket {} for fcgi group '{}' across the upgrade",
                    config.socket,
                    group.name
                );
                Arc::new(carried)
            }
            None => {
                let socket = Arc::new(bind(config)?);
                tracing::info!("created socket {} for fcgi group '{}'", config.socket, group.name);
                socket
            }
        };
        groups.insert(
            group.name.clone(),
            Entry { config: config.clone(), live: Arc::downgrade(&socket), initial: Some(socket) },
        );
        Ok(())
    }

    /// The socket for a new child of `group`, or `None` for a group that is
    /// not fcgi. The daemon's descriptor stays open while a clone lives.
    pub(crate) fn acquire(&self, group: &str) -> Result<Option<SharedFd>, FcgiError> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = groups.get_mut(group) else {
            return Ok(None);
        };
        if let Some(socket) = entry.initial.take() {
            return Ok(Some(SharedFd(socket)));
        }
        if let Some(socket) = entry.live.upgrade() {
            return Ok(Some(SharedFd(socket)));
        }
        let socket = Arc::new(bind(&entry.config)?);
        entry.live = Arc::downgrade(&socket);
        Ok(Some(SharedFd(socket)))
    }

    /// A live upgrade: a copy of each group's socket (close-on-exec until the
    /// daemon clears the flag), for a group that has one now. A group whose
    /// children all exited has none; the next image binds it again.
    pub(crate) fn carry(&self) -> Vec<(crate::handover::CarriedSocket, OwnedFd)> {
        use std::os::fd::AsRawFd as _;
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let mut carried = Vec::new();
        for (group, entry) in groups.iter() {
            let Some(socket) = entry.initial.clone().or_else(|| entry.live.upgrade()) else {
                continue;
            };
            match socket.try_clone() {
                Ok(fd) => carried.push((
                    crate::handover::CarriedSocket {
                        group: group.clone(),
                        socket: entry.config.socket.clone(),
                        fd: fd.as_raw_fd(),
                    },
                    fd,
                )),
                Err(error) => tracing::error!(
                    critical = true,
                    "cannot keep the socket of fcgi group '{group}' for the upgrade: {error}; \
                     the next image binds it again"
                ),
            }
        }
        carried
    }

    /// The group is gone: the daemon lets go of its socket (children that
    /// still hold it keep it until they exit).
    pub(crate) fn remove(&self, group: &str) {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner).remove(group);
    }
}

/// Creates, binds and listens on the socket `config` describes.
pub fn bind(config: &FcgiSocket) -> Result<OwnedFd, FcgiError> {
    let spec = &config.socket;
    let io = |source| FcgiError::Io { socket: spec.clone(), source };
    let backlog = i32::try_from(config.backlog).unwrap_or(i32::MAX);
    let socket = if let Some(address) = spec.strip_prefix("tcp://") {
        let address = address
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| FcgiError::BadAddress { socket: spec.clone() })?;
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, None).map_err(io)?;
        socket.set_reuse_address(true).map_err(io)?;
        socket.bind(&address.into()).map_err(io)?;
        socket
    } else if let Some(path) = spec.strip_prefix("unix://").filter(|path| path.starts_with('/')) {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(error)),
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io)?;
        socket.bind(&SockAddr::unix(path).map_err(io)?).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.mode)).map_err(io)?;
        if let Some((uid, gid)) = config.owner {
            std::os::unix::fs::chown(path, Some(uid), gid).map_err(io)?;
        }
        socket
    } else {
        return Err(FcgiError::BadAddress { socket: spec.clone() });
    };
    socket.listen(backlog).map_err(io)?;
    // Children get their own copy as fd 0; the daemon's stays out of other children.
    socket.set_cloexec(true).map_err(io)?;
    Ok(OwnedFd::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn tcp(port: u16) -> FcgiSocket {
        FcgiSocket {
            socket: format!("tcp://127.0.0.1:{port}"),
            backlog: 16,
            owner: None,
            mode: 0o700,
        }
    }

    fn local_port(fd: &OwnedFd) -> u16 {
        let socket = socket2::SockRef::from(fd);
        socket.local_addr().expect("bound").as_socket().expect("inet").port()
    }

    #[test]
    fn tcp_socket_listens_and_rebinds_after_close() {
        let fd = bind(&tcp(0)).expect("bind");
        let port = local_port(&fd);
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("it listens");
        drop(fd);
        // SO_REUSEADDR lets the same port be bound again at once.
        let again = bind(&tcp(port)).expect("rebind");
        assert_eq!(local_port(&again), port);
    }

    #[test]
    fn unix_socket_gets_its_mode_and_replaces_a_stale_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fcgi.sock");
        std::fs::write(&path, b"stale").expect("stale file");
        let config = FcgiSocket {
            socket: format!("unix://{}", path.display()),
            backlog: 4,
            owner: None,
            mode: 0o640,
        };
        let fd = bind(&config).expect("bind");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("socket file").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        std::os::unix::net::UnixStream::connect(&path).expect("it listens");
        assert!(fd.as_raw_fd() > 2);
    }

    #[test]
    fn bad_addresses_are_errors() {
        for socket in ["unix://relative.sock", "udp://127.0.0.1:1", "tcp://127.0.0.1"] {
            let config =
                FcgiSocket { socket: socket.to_owned(), backlog: 1, owner: None, mode: 0o700 };
            assert!(bind(&config).is_err(), "{socket}");
        }
    }

    #[test]
    fn children_share_one_socket_that_closes_after_the_last() {
        let sockets = FcgiSockets::default();
        let group = GroupConfig {
            name: "web".to_owned(),
            kind: GroupKind::Fcgi(tcp(0)),
            priority: 999,
            strategy: Default::default(),
            max_restarts: None,
            max_restarts_period: std::time::Duration::from_secs(0),
            processes: Vec::new(),
        };
        sockets.prepare(&group).expect("prepare");
        let first = sockets.acquire("web").expect("acquire").expect("fcgi group");
        let second = sockets.acquire("web").expect("acquire").expect("fcgi group");
        assert_eq!(first, second);
        let port = local_port(&first.0);
        drop((first, second));
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "closed after the last"
        );
        // The next child binds it again.
        let third = sockets.acquire("web").expect("acquire").expect("fcgi group");
        assert_ne!(third.0.as_raw_fd(), -1);
        assert!(sockets.acquire("other").expect("acquire").is_none());
    }
}
