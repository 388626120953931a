//! The control sockets: `[unix_http_server]` and `[inet_http_server]`.
//!
//! Binding is synchronous and happens before daemonizing, so that "socket in use"
//! reaches the operator's terminal with exit status 2, as in supervisord. The UNIX
//! socket is bound as `file.<pid>`, chmod/chowned there, then hard-linked to
//! `file`: the link either succeeds atomically or finds an existing file, which is
//! either a live server (refuse to start) or a stale socket from a crashed daemon
//! (unlink it and retry). That link is also the only "already running" check, as
//! in supervisord.
//!
//! Both sockets speak two protocols. [`serve`] reads the first bytes of each
//! connection, [`classify`]s them (an HTTP method, `vigil_xmlrpc::REQUEST_METHODS`, is
//! supervisord's HTTP/XML-RPC, anything else is a tarpc length-delimited frame), and hands the
//! connection, with those bytes replayed by [`Rewind`], to a [`Dispatch`].
//!
//! # Limits
//!
//! What clients can make the daemon hold is bounded here, before any bytes are
//! read (the constants live in `listen/limits.rs`):
//!
//! - Handshake deadline, [`HANDSHAKE_TIMEOUT`] (10 s) from the accept: the first
//!   bytes and, for tarpc, the whole hello (at most 4 KiB, see vigil-rpc's
//!   transport) must arrive by then, or the connection is closed.
//! - Connections per listener, [`MAX_CONNECTIONS`] (128). Beyond that, a new
//!   connection is closed at once, except on the UNIX socket for a peer whose
//!   uid (`SO_PEERCRED`) is the daemon's or root's, which gets up to
//!   [`OWNER_RESERVE`] (8) more places, so the owner can always reach a daemon
//!   that strangers have filled. TCP peers have no reserve.
//! - Descriptors: all listeners' connections together hold at most half of the
//!   soft `RLIMIT_NOFILE` (read when serving begins, after vigild raised it);
//!   the owner's reserve is part of that half. And a connection whose descriptor
//!   number comes within [`SPAWN_RESERVE`] (64, or a quarter of the limit if
//!   that is less) of the limit is closed at once, whoever it is from: the
//!   kernel hands out the lowest free descriptor, so such a number proves the
//!   table is nearly full, and what is left belongs to programs' pipes and logs.
//! - A failed accept (`EMFILE`, `ENFILE`) pauses accepting until a connection
//!   closes or [`ACCEPT_BACKOFF`] (100 ms) passes; it and the closing of
//!   connections over a limit are logged at most once per [`REPORT_EVERY`]
//!   (60 s) each, with the count of the ones not logged.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_config::{InetHttpServer, UnixHttpServer};

mod limits;

pub use limits::{
    ACCEPT_BACKOFF, Descriptors, Limits, MAX_CONNECTIONS, OWNER_RESERVE, REPORT_EVERY, Refusal,
    SPAWN_RESERVE,
};
use limits::{Gate, Throttle, held_back_note, is_owner};

/// supervisord's text (two spaces included) for a control socket that another
/// process already serves.
pub const IN_USE_MESSAGE: &str = "Another program is already listening on a port that one of our HTTP servers is configured to use.  Shut this program down first before starting supervisord.";

/// How long after the accept a connection has to send enough bytes to be
/// classified and, for tarpc, to complete its hello: one deadline for both, so
/// a slow sender cannot stretch it by dribbling the first bytes. The HTTP side
/// gets the same deadline through [`Rewind::deadline`].
pub const HANDSHAKE_TIMEOUT: Duration = vigil_rpc::transport::HANDSHAKE_TIMEOUT;

/// Why a control socket could not be opened. All of them are fatal at startup.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another program holds the socket's address (a live daemon on the
    /// UNIX socket, anything on the TCP port).
    #[error("{IN_USE_MESSAGE}")]
    InUse,
    /// The socket's path is taken by something that is not a socket.
    #[error("cannot create the control socket at {path}: the path exists and is not a socket")]
    NotASocket {
        /// The `[unix_http_server] file`.
        path: PathBuf,
    },
    /// A TCP socket without credentials that was not explicitly allowed.
    #[error(
        "[inet_http_server] on {address} has no username/password; refusing to accept unauthenticated control over TCP (set username and password, or allow_unauthenticated = true)"
    )]
    Unauthenticated {
        /// The `[inet_http_server] port` (`host:port`).
        address: String,
    },
    /// A system call on the socket failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`bind`, `chmod`, ...).
        action: &'static str,
        /// The socket's path or address.
        path: String,
        /// The system's error.
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: impl std::fmt::Display, source: io::Error) -> ListenError {
    if source.kind() == io::ErrorKind::AddrInUse {
        return ListenError::InUse;
    }
    ListenError::Io { action, path: path.to_string(), source }
}

/// The bound UNIX control socket. [`UnixSocket::remove`] unlinks it at exit, but
/// only while the path still names the socket this process created.
#[derive(Debug)]
pub struct UnixSocket {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
    /// Identity of the inode we linked, so that we never unlink a successor's socket.
    dev: u64,
    ino: u64,
}

impl UnixSocket {
    /// The socket path (`file`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A listener bound to `path` by the previous image of a live upgrade.
    pub fn inherited(
        path: &Path,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<UnixSocket, ListenError> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| io_error("stat", path.display().to_string(), e))?;
        Ok(UnixSocket {
            path: path.to_owned(),
            listener: Some(listener),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Takes the listener out to serve it (once).
    pub fn take_listener(&mut self) -> Option<std::os::unix::net::UnixListener> {
        self.listener.take()
    }

    /// Unlinks the socket file if it is still ours. Returns whether it did.
    pub fn remove(&self) -> io::Result<bool> {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                std::fs::remove_file(&self.path)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// Binds `[unix_http_server]` with supervisord's bind-then-link dance.
pub fn bind_unix(config: &UnixHttpServer) -> Result<UnixSocket, ListenError> {
    let file = config.file.clone();
    let mut temp = file.as_os_str().to_owned();
    temp.push(format!(".{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let shown = |p: &Path| p.display().to_string();

    // A leftover from an earlier daemon that had our pid: it can only be stale.
    remove_socket_if_exists(&temp).map_err(|e| io_error("remove", shown(&temp), e))?;
    let listener = std::os::unix::net::UnixListener::bind(&temp)
        .map_err(|e| io_error("bind", shown(&temp), e))?;
    let result = link_into_place(config, &temp, &file);
    // The listener stays bound through `file`; the temporary name is not needed.
    let _ = std::fs::remove_file(&temp);
    let meta = result?;
    Ok(UnixSocket { path: file, listener: Some(listener), dev: meta.dev(), ino: meta.ino() })
}

/// Gives the socket file at `path` the mode and owner `config` asks for.
fn set_mode(config: &UnixHttpServer, path: &Path) -> Result<(), ListenError> {
    let shown = |p: &Path| p.display().to_string();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.chmod))
        .map_err(|e| io_error("chmod", shown(path), e))?;
    if let Some((uid, gid)) = config.chown {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|errno| io_error("chown", shown(path), errno.into()))?;
    }
    Ok(())
}

/// A live upgrade's new image applies `chmod`/`chown` again to the socket it
/// inherited: the file may have changed them.
pub fn apply_unix_mode(config: &UnixHttpServer) -> Result<(), ListenError> {
    set_mode(config, &config.file)
}

/// Whether a listener bound at `ip` is where `host` (as `[inet_http_server]`
/// writes it) asks for.
pub fn same_host(host: &str, ip: std::net::IpAddr) -> bool {
    match host {
        "" | "*" => ip.is_unspecified(),
        host => host.parse::<std::net::IpAddr>().map_or_else(
            // A name: what it resolves to now.
            |_| {
                std::net::ToSocketAddrs::to_socket_addrs(&(host, 0))
                    .is_ok_and(|mut addrs| addrs.any(|addr| addr.ip() == ip))
            },
            |parsed| parsed == ip,
        ),
    }
}

fn link_into_place(
    config: &UnixHttpServer,
    temp: &Path,
    file: &Path,
) -> Result<std::fs::Metadata, ListenError> {
    let shown = |p: &Path| p.display().to_string();
    set_mode(config, temp)?;
    // Two rounds suffice: a stale socket is removed in the first; if another
    // daemon races us into the freed name, the second round reports it in use.
    for _ in 0..2 {
        match std::fs::hard_link(temp, file) {
            Ok(()) => {
                return std::fs::symlink_metadata(file)
                    .map_err(|e| io_error("stat", shown(file), e));
            }
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                let meta = std::fs::symlink_metadata(file)
                    .map_err(|e| io_error("stat", shown(file), e))?;
                if !meta.file_type().is_socket() {
                    return Err(ListenError::NotASocket { path: file.to_owned() });
                }
                if std::os::unix::net::UnixStream::connect(file).is_ok() {
                    return Err(ListenError::InUse);
                }
                remove_socket_if_exists(file).map_err(|e| io_error("remove", shown(file), e))?;
            }
            Err(err) => return Err(io_error("link", shown(file), err)),
        }
    }
    Err(ListenError::InUse)
}

fn remove_socket_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Binds `[inet_http_server]`. Without credentials this refuses unless
/// `allow_unauthenticated` is set (a TCP control port without a password lets
/// anyone on the network run commands as the daemon's user).
pub fn bind_inet(config: &InetHttpServer) -> Result<std::net::TcpListener, ListenError> {
    let host = match config.host.as_str() {
        "" | "*" => "0.0.0.0",
        host => host,
    };
    let address = format!("{host}:{}", config.port);
    if config.auth.is_none() && !config.allow_unauthenticated {
        return Err(ListenError::Unauthenticated { address });
    }
    // std sets SO_REUSEADDR, so a restart does not wait for TIME_WAIT sockets.
    std::net::TcpListener::bind((host, config.port)).map_err(|e| io_error("listen on", &address, e))
}

/// The two protocols a control connection can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// supervisord's HTTP (XML-RPC, log tails) for the stock supervisorctl.
    Http,
    /// vigil-rpc's tarpc frames (a 4-byte big-endian length first).
    Tarpc,
}

use vigil_xmlrpc::REQUEST_METHODS as HTTP_METHODS;

/// Classifies a connection from its first bytes. `None` means "need more bytes":
/// what arrived so far is a proper prefix of an HTTP method. A tarpc frame starts
/// with its length's high byte, 0 for any frame under 16 MiB, so it never looks
/// like a method.
pub fn classify(prefix: &[u8]) -> Option<Protocol> {
    if prefix.is_empty() {
        return None;
    }
    if HTTP_METHODS.iter().any(|m| prefix.starts_with(m)) {
        return Some(Protocol::Http);
    }
    if HTTP_METHODS.iter().any(|m| m.starts_with(prefix)) {
        return None;
    }
    Some(Protocol::Tarpc)
}

/// A stream that first yields `prefix` (bytes already read for classification)
/// and then reads from `inner`. Writes go straight to `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Vec<u8>,
    position: usize,
    inner: S,
    deadline: Instant,
}

impl<S> Rewind<S> {
    /// A stream whose handshake deadline is [`HANDSHAKE_TIMEOUT`] from now.
    pub fn new(prefix: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind { prefix, position: 0, inner, deadline: Instant::now() + HANDSHAKE_TIMEOUT }
    }

    /// Sets the moment by which the handshake must be done.
    pub fn until(mut self, deadline: Instant) -> Rewind<S> {
        self.deadline = deadline;
        self
    }

    /// When the handshake (tarpc hello, HTTP request head) must be done:
    /// [`HANDSHAKE_TIMEOUT`] after the accept.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The bytes that are replayed first.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.position < this.prefix.len() {
            let rest = &this.prefix[this.position..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.position += n;
            if this.position == this.prefix.len() {
                this.prefix = Vec::new();
                this.position = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Any byte stream a control connection can arrive on.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A classified control connection, its first bytes replayed.
pub type Connection = Rewind<Box<dyn AsyncStream>>;

/// Who is on the other end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A client on the UNIX socket.
    Unix,
    /// A client on the TCP socket, from this address.
    Tcp(SocketAddr),
}

/// Serves classified connections. Each call returns the connection's whole
/// lifetime as a future, which [`serve`] runs as its own task.
pub trait Dispatch: Send + Sync + 'static {
    /// supervisord's HTTP/XML-RPC interface.
    fn serve_http(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()>;
    /// vigil-rpc's tarpc interface.
    fn serve_tarpc(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()>;
    /// A live upgrade begins (once per listener): the connections served so far should
    /// end cleanly at their next message boundary, before [`HANDOVER_DRAIN`] cuts them.
    fn handing_over(&self) {}
}

/// A listening control socket, ready for [`serve`].
#[derive(Debug)]
pub enum Listener {
    /// `[unix_http_server]`.
    Unix(tokio::net::UnixListener),
    /// `[inet_http_server]`.
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Converts a listener bound before the runtime started. Must be called inside
    /// the runtime.
    pub fn from_std_unix(listener: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener::Unix(tokio::net::UnixListener::from_std(listener)?))
    }

    /// See [`Listener::from_std_unix`].
    pub fn from_std_tcp(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener::Tcp(tokio::net::TcpListener::from_std(listener)?))
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                let fd = stream.as_raw_fd();
                let uid = stream.peer_cred().ok().map(|cred| cred.uid());
                Ok(Accepted { stream: Box::new(stream), peer: Peer::Unix, fd, uid })
            }
            Listener::Tcp(listener) => {
                let (stream, address) = listener.accept().await?;
                // Control traffic is small request/response; don't batch it.
                let _ = stream.set_nodelay(true);
                let fd = stream.as_raw_fd();
                Ok(Accepted { stream: Box::new(stream), peer: Peer::Tcp(address), fd, uid: None })
            }
        }
    }
}

/// A connection just accepted, before admission.
struct Accepted {
    stream: Box<dyn AsyncStream>,
    peer: Peer,
    fd: RawFd,
    /// The peer's uid (`SO_PEERCRED`), on the UNIX socket only.
    uid: Option<u32>,
}

/// Accepts connections until `shutdown` is cancelled, then stops accepting and
/// ends every connection still open (the caller cancels only after the ordered
/// shutdown, so clients can watch it over the socket). Applies the standard
/// [`Limits`].
pub async fn serve(listener: Listener, dispatch: Arc<dyn Dispatch>, shutdown: CancellationToken) {
    serve_with(listener, dispatch, shutdown, Limits::standard()).await;
}

/// [`serve`], also ending when `handover` is cancelled (a live upgrade):
/// then it stops accepting at once, so new connections wait in the socket's
/// backlog for the next image (the caller keeps another descriptor of the
/// listening socket open), and gives the connections already accepted up to
/// [`HANDOVER_DRAIN`] to finish before it ends them.
pub async fn serve_until_handover(
    listener: Listener,
    dispatch: Arc<dyn Dispatch>,
    shutdown: CancellationToken,
    handover: CancellationToken,
) {
    serve_inner(listener, dispatch, shutdown, Some(handover), None, Limits::standard()).await;
}

/// [`serve_until_handover`], except that `release` stops the accepting
/// alone: the listener is closed (another copy of it is served from then
/// on) and the connections accepted so far run to their end, still ended by
/// `shutdown` and drained by `handover`. How a live upgrade's new image
/// serves its inherited listeners before its config has said which to keep.
pub async fn serve_until_released(
    listener: Listener,
    dispatch: Arc<dyn Dispatch>,
    shutdown: CancellationToken,
    handover: CancellationToken,
    release: CancellationToken,
) {
    let limits = Limits::standard();
    serve_inner(listener, dispatch, shutdown, Some(handover), Some(release), limits).await;
}

/// How long a live upgrade lets open connections finish.
pub const HANDOVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// [`serve`] under the given limits.
pub async fn serve_with(
    listener: Listener,
    dispatch: Arc<dyn Dispatch>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    serve_inner(listener, dispatch, shutdown, None, None, limits).await;
}

/// Why a server stopped accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The daemon stops serving: open connections end now.
    Shutdown,
    /// A live upgrade hands over: open connections finish, within
    /// [`HANDOVER_DRAIN`].
    Handover,
    /// Another server took the listener over (see [`serve_until_released`]).
    Released,
}

async fn serve_inner(
    listener: Listener,
    dispatch: Arc<dyn Dispatch>,
    shutdown: CancellationToken,
    handover: Option<CancellationToken>,
    release: Option<CancellationToken>,
    limits: Limits,
) {
    let handing_over = async {
        match &handover {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(handing_over);
    let released = async {
        match &release {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(released);
    let gate = Gate::new(limits);
    let daemon_uid = nix::unistd::geteuid().as_raw();
    let mut refusals = Throttle::new(REPORT_EVERY);
    let mut failures = Throttle::new(REPORT_EVERY);
    let mut connections = JoinSet::new();
    let mut ending = loop {
        tokio::select! {
            // In this order: once an upgrade answered, no new connection may
            // reach this image.
            biased;
            () = shutdown.cancelled() => break Ending::Shutdown,
            () = &mut handing_over => break Ending::Handover,
            () = &mut released => break Ending::Released,
            // Reap finished connection tasks so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok(Accepted { stream, peer, fd, uid }) => {
                    let owner = || uid.is_some_and(|uid| is_owner(uid, daemon_uid));
                    match gate.admit(fd, owner) {
                        Ok(slot) => {
                            let dispatch = Arc::clone(&dispatch);
                            connections.spawn(async move {
                                handle_connection(stream, peer, dispatch).await;
                                drop(slot);
                            });
                        }
                        Err(refusal) => {
                            // Closed at once: it held its descriptor only this long.
                            drop(stream);
                            if let Some(held_back) = refusals.note() {
                                tracing::warn!(
                                    "control socket: closed a connection from {peer:?} at once: {refusal}{}",
                                    held_back_note(held_back)
                                );
                            }
                        }
                    }
                }
                Err(err) => {
                    // EMFILE and friends: accepting again at once would spin. A
                    // closing connection frees a descriptor, so it ends the pause.
                    if let Some(held_back) = failures.note() {
                        tracing::error!(
                            "control socket accept failed: {err}{}",
                            held_back_note(held_back)
                        );
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break Ending::Shutdown,
                        () = gate.descriptors().closed() => {}
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    };
    drop(listener);
    if ending == Ending::Released {
        // Another copy of the listener is served from here on; what this one
        // accepted runs to its end.
        ending = tokio::select! {
            biased;
            () = shutdown.cancelled() => Ending::Shutdown,
            () = &mut handing_over => Ending::Handover,
            () = async { while connections.join_next().await.is_some() {} } => Ending::Shutdown,
        };
    }
    if ending == Ending::Handover {
        dispatch.handing_over();
        let finished = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(HANDOVER_DRAIN, finished).await.is_err() {
            tracing::warn!(
                "{} control connections still open after {HANDOVER_DRAIN:?}: ending them for the upgrade",
                connections.len()
            );
        }
    }
    connections.shutdown().await;
}

async fn handle_connection(
    mut stream: Box<dyn AsyncStream>,
    peer: Peer,
    dispatch: Arc<dyn Dispatch>,
) {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut prefix = Vec::with_capacity(8);
    let classified = tokio::time::timeout_at(deadline, async {
        loop {
            if let Some(protocol) = classify(&prefix) {
                return Ok(Some(protocol));
            }
            let mut chunk = [0u8; 8];
            // Read no more than the longest method could still need, so nothing
            // of a following request is held back from the handler's own buffer.
            let want = (HTTP_METHODS[0].len() - prefix.len()).max(1);
            let n = stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Ok::<_, io::Error>(None);
            }
            prefix.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let protocol = match classified {
        Ok(Ok(Some(protocol))) => protocol,
        // EOF before a request: a connectivity probe; nothing to do.
        Ok(Ok(None)) => return,
        Ok(Err(err)) => {
            tracing::debug!("control connection from {peer:?} failed before a request: {err}");
            return;
        }
        Err(_) => {
            tracing::debug!("control connection from {peer:?} sent no request in time");
            return;
        }
    };
    let connection = Rewind::new(prefix, stream).until(deadline);
    match protocol {
        Protocol::Http => dispatch.serve_http(connection, peer).await,
        Protocol::Tarpc => dispatch.serve_tarpc(connection, peer).await,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::sync::mpsc;
    use vigil_config::Credentials;

    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"POS"), None);
        assert_eq!(classify(b"POST "), Some(Protocol::Http));
        assert_eq!(classify(b"POST /RPC2 HTTP/1.1"), Some(Protocol::Http));
        assert_eq!(classify(b"GET "), Some(Protocol::Http));
        assert_eq!(classify(b"HEAD /"), Some(Protocol::Http));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GETX"), Some(Protocol::Tarpc));
        assert_eq!(classify(b"post "), Some(Protocol::Tarpc));
        assert_eq!(classify(&[0, 0, 0, 42]), Some(Protocol::Tarpc));
        assert_eq!(classify(&[0]), Some(Protocol::Tarpc));
    }

    #[tokio::test]
    async fn rewind_replays_prefix_then_inner_and_writes_through() {
        let (client, server) = tokio::io::duplex(64);
        let mut rewind = Rewind::new(b"GET ".to_vec(), server);
        let mut client = client;
        client.write_all(b"/ HTTP/1.0\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut small = [0u8; 2];
        rewind.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"GE");
        let mut rest = Vec::new();
        rewind.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"T / HTTP/1.0\r\n");
        rewind.write_all(b"reply").await.unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"reply");
    }

    fn unix_config(file: PathBuf) -> UnixHttpServer {
        UnixHttpServer { file, chmod: 0o700, chown: None, auth: None }
    }

    #[test]
    fn unix_socket_is_linked_into_place_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.sock");
        let mut config = unix_config(file.clone());
        config.chmod = 0o760;
        let mut socket = bind_unix(&config).unwrap();
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o760);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "the file.<pid> name is removed");
        // The linked name reaches the bound listener.
        let listener = socket.take_listener().unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&file).unwrap();
        let (_conn, _) = listener.accept().unwrap();
        assert!(socket.remove().unwrap());
        assert!(!file.exists());
    }

    #[test]
    fn chown_applies_owner_and_group() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.sock");
        let mut config = unix_config(file.clone());
        // Chowning to ourselves works for any user and still exercises the call.
        let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        config.chown = Some((uid, Some(gid)));
        let socket = bind_unix(&config).unwrap();
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        assert!(socket.remove().unwrap());
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.sock");
        drop(std::os::unix::net::UnixListener::bind(&file).unwrap());
        assert!(file.exists());
        let socket = bind_unix(&unix_config(file.clone())).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&file).is_ok());
        assert!(socket.remove().unwrap());
    }

    #[test]
    fn live_socket_is_in_use_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.sock");
        let _live = std::os::unix::net::UnixListener::bind(&file).unwrap();
        let err = bind_unix(&unix_config(file.clone())).unwrap_err();
        assert!(matches!(err, ListenError::InUse), "{err:?}");
        assert_eq!(err.to_string(), IN_USE_MESSAGE);
        assert!(std::os::unix::net::UnixStream::connect(&file).is_ok());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary socket is left behind");
    }

    #[test]
    fn regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.sock");
        std::fs::write(&file, "precious").unwrap();
        let err = bind_unix(&unix_config(file.clone())).unwrap_err();
        assert!(matches!(err, ListenError::NotASocket { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    }

    #[test]
    fn remove_spares_a_successors_socket() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vigil.sock");
        let socket = bind_unix(&unix_config(file.clone())).unwrap();
        std::fs::remove_file(&file).unwrap();
        let _successor = std::os::unix::net::UnixListener::bind(&file).unwrap();
        assert!(!socket.remove().unwrap());
        assert!(file.exists());
    }

    fn inet_config(port: u16) -> InetHttpServer {
        InetHttpServer { host: "127.0.0.1".into(), port, auth: None, allow_unauthenticated: false }
    }

    #[test]
    fn inet_requires_credentials_or_explicit_opt_in() {
        let err = bind_inet(&inet_config(0)).unwrap_err();
        assert!(matches!(err, ListenError::Unauthenticated { .. }));
        assert!(err.to_string().contains("allow_unauthenticated"), "{err}");
        let mut config = inet_config(0);
        config.auth = Some(Credentials { username: "u".into(), password: "p".into() });
        let listener = bind_inet(&config).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut open = inet_config(port);
        open.allow_unauthenticated = true;
        assert!(matches!(bind_inet(&open).unwrap_err(), ListenError::InUse));
    }

    struct Recorder(mpsc::UnboundedSender<(Protocol, Vec<u8>)>);

    impl Recorder {
        fn record(&self, protocol: Protocol, mut connection: Connection) -> BoxFuture<'static, ()> {
            let sender = self.0.clone();
            Box::pin(async move {
                let mut all = Vec::new();
                connection.read_to_end(&mut all).await.unwrap();
                connection.write_all(b"ok").await.unwrap();
                sender.send((protocol, all)).unwrap();
            })
        }
    }

    impl Dispatch for Recorder {
        fn serve_http(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
            self.record(Protocol::Http, connection)
        }
        fn serve_tarpc(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
            self.record(Protocol::Tarpc, connection)
        }
    }

    /// A service that is never reached: these tests end in the handshake.
    #[derive(Clone)]
    struct Unreached;

    impl vigil_rpc::SendControl for Unreached {
        fn call(
            self,
            _ctx: tarpc::context::Context,
            _request: vigil_rpc::ControlRequest,
        ) -> BoxFuture<'static, Result<vigil_rpc::ControlResponse, tarpc::ServerError>> {
            unreachable!("no call gets past the handshake in these tests")
        }
    }

    /// Serves tarpc as the daemon does (vigil-rpc's handshake against the
    /// connection's deadline); HTTP connections are held open until the deadline.
    struct Handshaking;

    impl Dispatch for Handshaking {
        fn serve_http(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                tokio::time::sleep_until(connection.deadline()).await;
                drop(connection);
            })
        }
        fn serve_tarpc(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
            Box::pin(async move {
                let deadline = connection.deadline();
                let result =
                    vigil_rpc::serve_stream_until(connection, None, Unreached, deadline).await;
                assert!(result.is_err(), "the handshake never completes here");
            })
        }
    }

    /// Runs one connection through [`handle_connection`] with `send` as the
    /// client's behaviour, and returns how long after the accept the server
    /// closed it.
    async fn closed_after(
        send: impl AsyncFnOnce(&mut tokio::io::WriteHalf<tokio::io::DuplexStream>),
    ) -> Duration {
        let (client, server) = tokio::io::duplex(1024);
        let (mut reader, mut writer) = tokio::io::split(client);
        let accepted = Instant::now();
        let served =
            tokio::spawn(handle_connection(Box::new(server), Peer::Unix, Arc::new(Handshaking)));
        let sending = async {
            send(&mut writer).await;
            std::future::pending::<()>().await;
        };
        let mut rest = Vec::new();
        // EOF is the server closing; nothing is ever answered.
        tokio::select! {
            () = sending => unreachable!(),
            read = reader.read_to_end(&mut rest) => read.unwrap(),
        };
        let closed = accepted.elapsed();
        assert!(rest.is_empty(), "{rest:?}");
        served.await.unwrap();
        closed
    }

    #[tokio::test(start_paused = true)]
    async fn sniffing_and_hello_share_one_deadline_from_the_accept() {
        // Silent: closed when the deadline passes.
        assert_eq!(closed_after(async |_| {}).await, HANDSHAKE_TIMEOUT);
        // The first byte just before the deadline does not restart the clock.
        let late_start = closed_after(async |client| {
            tokio::time::sleep(HANDSHAKE_TIMEOUT - Duration::from_secs(1)).await;
            client.write_all(&[0]).await.unwrap();
        });
        assert_eq!(late_start.await, HANDSHAKE_TIMEOUT);
        // A hello dribbled a byte a second never completes in time.
        let dribbled = closed_after(async |client| {
            for byte in [0, 0, 0, 40].into_iter().chain(*b"{\"vigil\":1,\"username\":\"x\"") {
                if client.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert_eq!(dribbled.await, HANDSHAKE_TIMEOUT);
        // An HTTP request line that stops short: its handler sees the same deadline.
        let http = closed_after(async |client| {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client.write_all(b"POST /RPC2 HT").await.unwrap();
        });
        assert_eq!(http.await, HANDSHAKE_TIMEOUT);
    }

    /// Holds every connection until its client hangs up, announcing each.
    struct Holder(mpsc::UnboundedSender<()>);

    impl Holder {
        fn hold(&self, mut connection: Connection) -> BoxFuture<'static, ()> {
            let arrived = self.0.clone();
            Box::pin(async move {
                arrived.send(()).unwrap();
                let mut all = Vec::new();
                let _ = connection.read_to_end(&mut all).await;
            })
        }
    }

    impl Dispatch for Holder {
        fn serve_http(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
            self.hold(connection)
        }
        fn serve_tarpc(&self, connection: Connection, _peer: Peer) -> BoxFuture<'static, ()> {
            self.hold(connection)
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    /// Serves `listener` under `max` connections and an owner reserve of one,
    /// with a budget of descriptors far from binding.
    fn serve_limited(
        listener: Listener,
        max: usize,
    ) -> (mpsc::UnboundedReceiver<()>, CancellationToken, tokio::task::JoinHandle<()>) {
        let (sender, arrivals) = mpsc::unbounded_channel();
        let limits = Limits {
            max_connections: max,
            owner_reserve: 1,
            descriptors: Arc::new(Descriptors::new(1_000_000)),
        };
        let shutdown = CancellationToken::new();
        let server =
            tokio::spawn(serve_with(listener, Arc::new(Holder(sender)), shutdown.clone(), limits));
        (arrivals, shutdown, server)
    }

    /// Sends a first byte and waits until the connection reaches the dispatch.
    async fn held<S: AsyncWrite + Unpin>(
        mut client: S,
        arrivals: &mut mpsc::UnboundedReceiver<()>,
    ) -> S {
        client.write_all(&[0]).await.unwrap();
        tokio::time::timeout(WAIT, arrivals.recv()).await.expect("served").unwrap();
        client
    }

    /// Sends a first byte and expects the connection closed without a dispatch.
    async fn refused<S: AsyncRead + AsyncWrite + Unpin>(
        mut client: S,
        arrivals: &mut mpsc::UnboundedReceiver<()>,
    ) {
        // The write may already find the connection closed.
        let _ = client.write_all(&[0]).await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, client.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "closed at once");
        assert!(rest.is_empty());
        assert!(arrivals.try_recv().is_err(), "never dispatched");
    }

    #[tokio::test]
    async fn a_full_tcp_listener_closes_new_connections_at_once() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = std_listener.local_addr().unwrap();
        let (mut arrivals, shutdown, server) =
            serve_limited(Listener::from_std_tcp(std_listener).unwrap(), 2);
        let connect = || tokio::net::TcpStream::connect(address);
        let first = held(connect().await.unwrap(), &mut arrivals).await;
        let _second = held(connect().await.unwrap(), &mut arrivals).await;
        // TCP peers have no uid to check, so there is no reserve for them.
        refused(connect().await.unwrap(), &mut arrivals).await;
        drop(first);
        // The closed connection's place is given back.
        let third = tokio::time::timeout(WAIT, async {
            loop {
                let mut client = connect().await.unwrap();
                let _ = client.write_all(&[0]).await;
                if tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await.is_ok() {
                    return client;
                }
            }
        });
        let _third = third.await.expect("admitted once a place is free");
        shutdown.cancel();
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_owner_gets_a_reserve_on_a_full_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let mut socket = bind_unix(&unix_config(dir.path().join("s"))).unwrap();
        let listener = Listener::from_std_unix(socket.take_listener().unwrap()).unwrap();
        let (mut arrivals, shutdown, server) = serve_limited(listener, 2);
        let connect = || tokio::net::UnixStream::connect(socket.path());
        let _ordinary: Vec<_> = [
            held(connect().await.unwrap(), &mut arrivals).await,
            held(connect().await.unwrap(), &mut arrivals).await,
        ]
        .into();
        // This test runs as the daemon's user: the owner, so one more gets in...
        let _owner = held(connect().await.unwrap(), &mut arrivals).await;
        // ...and then the reserve is used up too.
        refused(connect().await.unwrap(), &mut arrivals).await;
        shutdown.cancel();
        tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
        assert!(socket.remove().unwrap());
    }

    #[tokio::test]
    async fn serve_routes_each_protocol_with_all_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut socket = bind_unix(&unix_config(dir.path().join("s"))).unwrap();
        let listener = Listener::from_std_unix(socket.take_listener().unwrap()).unwrap();
        let (sender, mut received) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, Arc::new(Recorder(sender)), shutdown.clone()));

        let cases: [(&[u8], Protocol); 2] = [
            (b"POST /RPC2 HTTP/1.1\r\n\r\n", Protocol::Http),
            (&[0, 0, 0, 3, b'a', b'b', b'c'], Protocol::Tarpc),
        ];
        for (bytes, expected) in cases {
            let mut client = tokio::net::UnixStream::connect(socket.path()).await.unwrap();
            // Send in two pieces so classification must wait for more bytes.
            client.write_all(&bytes[..1]).await.unwrap();
            client.flush().await.unwrap();
            client.write_all(&bytes[1..]).await.unwrap();
            client.shutdown().await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, (expected, bytes.to_vec()));
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply, b"ok");
        }
        // An unclassifiable prefix followed by EOF is dropped without dispatch.
        let mut client = tokio::net::UnixStream::connect(socket.path()).await.unwrap();
        client.write_all(b"HE").await.unwrap();
        client.shutdown().await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert!(reply.is_empty());
        assert!(received.try_recv().is_err());

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
        assert!(socket.remove().unwrap());
    }
}
