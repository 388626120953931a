//! Connections: URL parsing and connecting for clients, serving for the daemon,
//! and the handshake that authenticates a connection before any call.
//!
//! # Wire protocol
//!
//! A connection is a sequence of length-delimited frames (4-byte big-endian
//! length, then the payload), each a JSON document.
//!
//! 1. The client sends a [`Hello`]: protocol version and, if it has them, the
//!    username and password of `[unix_http_server]`/`[inet_http_server]`.
//! 2. The server answers [`Welcome::Accepted`], [`Welcome::Denied`] (wrong or
//!    missing credentials) or [`Welcome::Unsupported`] (a protocol version it
//!    does not speak), and after a refusal closes. A server without credentials
//!    configured accepts any hello of its version.
//! 3. From then on the frames are tarpc requests and responses.
//!
//! # Limits
//!
//! What a peer that has not authenticated can make the server hold is bounded:
//!
//! - The hello frame may be at most [`MAX_HELLO`] bytes (4 KiB); a longer length
//!   prefix ends the connection before any of its payload is read.
//! - The whole handshake must be done within [`HANDSHAKE_TIMEOUT`] (10 s) of the
//!   deadline the daemon passes to [`serve_stream_until`] (its accept time), or
//!   the connection is closed.
//! - Only after the hello is accepted do frames up to [`MAX_FRAME`] (8 MiB) pass.
//!
//! Credentials travel once per connection, not per request, so the trait stays
//! free of them. They are as exposed as supervisord's HTTP Basic auth: fine on a
//! Unix socket (protected by its mode) or loopback, not on an untrusted network.
//!
//! Because frames are far below 16 MiB, the first byte of a Vigil connection is
//! always 0x00, which lets the daemon tell it from an HTTP request (`POST `/`GET `)
//! by peeking at the first bytes (see [`looks_like_http`]).

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use tarpc::client::{self, RpcError};
use tarpc::server::{BaseChannel, Channel, Serve};
use tarpc::tokio_util::bytes::{Bytes, BytesMut};
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixListener, UnixStream};

use crate::{ControlClient, ControlRequest, ControlResponse};

/// Version of the handshake and of the trait's wire shape. Bumped only for
/// changes `#[serde(default)]` cannot absorb.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts: tokio-util's default, written down so both
/// ends agree. Replies stay far below it (log payloads are capped at
/// [`crate::MAX_LOG_CHUNK`]).
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Largest hello frame a server reads. A hello is a version number and a
/// username and password, so this is generous; it keeps what a peer can make
/// the server buffer before authenticating to one small allocation.
pub const MAX_HELLO: usize = 4 * 1024;

/// How long a server waits for the hello, and a client for the welcome.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first frame a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The client's [`PROTOCOL_VERSION`].
    pub vigil: u32,
    #[serde(default)]
    /// Basic-auth username, when the client has credentials.
    pub username: Option<String>,
    #[serde(default)]
    /// The password that goes with `username`.
    pub password: Option<String>,
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Welcome {
    /// The client may make calls.
    Accepted {
        /// The server's [`PROTOCOL_VERSION`].
        vigil: u32,
    },
    /// The connection ends; `reason` says why.
    Denied {
        /// Why, for the client to show.
        reason: String,
    },
    /// The hello's protocol version is not the server's.
    Unsupported {
        /// The server's [`PROTOCOL_VERSION`].
        vigil: u32,
    },
}

/// A context whose deadline is `timeout` from now. tarpc's `context::current()`
/// has a 10 s deadline, too short for `stop` with a long `stopwaitsecs`.
pub fn context_with_timeout(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

/// True when the first bytes of a connection are an HTTP request (the XML-RPC
/// and `/logtail` side), false for a Vigil control connection.
pub fn looks_like_http(prefix: &[u8]) -> bool {
    prefix.starts_with(b"POST ") || prefix.starts_with(b"GET ")
}

/// A stream that first yields bytes already read from it, then the stream
/// itself: the daemon reads the first bytes of a connection to tell HTTP from
/// Vigil frames, then hands `Prefixed::new(first_bytes, stream)` to
/// [`serve_stream`] (tokio's `UnixStream` has no `peek`).
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// A stream yielding `prefix`, then what `inner` yields.
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Prefixed<S> {
        Prefixed { prefix: prefix.into(), inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn codec(max_frame_length: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(max_frame_length).new_codec()
}

/// Why [`connect`] failed. The `Display` texts of `NoSuchFile` and `Refused` are
/// supervisorctl's (`unix:///x no such file`, `http://h:p refused connection`),
/// which scripts match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is neither `unix://` nor `http://`.
    #[error("{url}: url must be http:// or unix://")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// The Unix socket does not exist.
    #[error("{url} no such file")]
    NoSuchFile {
        /// The URL as given.
        url: String,
    },
    /// Nothing listens there.
    #[error("{url} refused connection")]
    Refused {
        /// The URL as given.
        url: String,
    },
    /// Any other failure to connect.
    #[error("{url}: {source}")]
    Io {
        /// The URL as given.
        url: String,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The server wants (other) credentials.
    #[error("Server requires authentication")]
    Unauthorized {
        /// The server's reason.
        reason: String,
    },
    /// Something answered that does not speak Vigil's protocol.
    #[error("{url}: not a vigild control socket ({reason})")]
    Protocol {
        /// The URL as given.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// vigild speaks another version of the protocol.
    #[error(
        "{url}: vigild speaks control protocol version {server}, this client speaks {client}; use the vigilctl of the same release"
    )]
    Version {
        /// The URL as given.
        url: String,
        /// The server's protocol version.
        server: u32,
        /// This client's protocol version.
        client: u32,
    },
}

/// Where a client connects, parsed from `serverurl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path (`unix:///path`).
    Unix(std::path::PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:///abs/path` or `http://host[:port][/path]` (port defaults to
    /// 80, the path is ignored, as supervisorctl does).
    pub fn parse(url: &str) -> Result<Endpoint, ConnectError> {
        let bad = || ConnectError::BadUrl { url: url.to_owned() };
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad());
        }
        // An IPv6 literal keeps its brackets; only a colon after them is a port.
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        Ok(Endpoint::Tcp(if has_port { authority.to_owned() } else { format!("{authority}:80") }))
    }
}

/// Connects to vigild at `url` (`unix:///path` or `http://host:port`),
/// authenticates with `auth` if given, and returns a client ready for calls.
pub async fn connect(url: &str, auth: Option<(&str, &str)>) -> Result<ControlClient, ConnectError> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => ConnectError::NoSuchFile { url: url.to_owned() },
        io::ErrorKind::ConnectionRefused => ConnectError::Refused { url: url.to_owned() },
        _ => ConnectError::Io { url: url.to_owned(), source },
    };
    let hello = Hello {
        vigil: PROTOCOL_VERSION,
        username: auth.map(|(user, _)| user.to_owned()),
        password: auth.map(|(_, pass)| pass.to_owned()),
    };
    match Endpoint::parse(url)? {
        Endpoint::Unix(path) => {
            let stream = UnixStream::connect(&path).await.map_err(io_error)?;
            client_over(stream, url, &hello).await
        }
        Endpoint::Tcp(addr) => {
            let stream = TcpStream::connect(&addr).await.map_err(io_error)?;
            // Small request/response frames: do not let Nagle hold them back.
            stream.set_nodelay(true).map_err(io_error)?;
            client_over(stream, url, &hello).await
        }
    }
}

/// Runs the client side of the handshake on any stream and spawns the tarpc
/// client on it. Public so tests and embedders can use in-memory streams.
pub async fn client_over<S>(
    stream: S,
    url: &str,
    hello: &Hello,
) -> Result<ControlClient, ConnectError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let protocol = |reason: String| ConnectError::Protocol { url: url.to_owned(), reason };
    let mut framed = Framed::new(stream, codec(MAX_FRAME));
    let encoded = serde_json::to_vec(hello).map_err(|e| protocol(e.to_string()))?;
    let exchange = async {
        framed.send(Bytes::from(encoded)).await?;
        framed.next().await.transpose()
    };
    let reply = match tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange).await {
        Err(_) => return Err(protocol("no handshake reply".to_owned())),
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(protocol(e.to_string()));
        }
        Ok(Err(source)) => return Err(ConnectError::Io { url: url.to_owned(), source }),
        Ok(Ok(None)) => return Err(protocol("connection closed during handshake".to_owned())),
        Ok(Ok(Some(frame))) => frame,
    };
    match serde_json::from_slice::<Welcome>(&reply).map_err(|e| protocol(e.to_string()))? {
        Welcome::Accepted { .. } => {}
        Welcome::Denied { reason } => return Err(ConnectError::Unauthorized { reason }),
        Welcome::Unsupported { vigil } => {
            return Err(ConnectError::Version {
                url: url.to_owned(),
                server: vigil,
                client: hello.vigil,
            });
        }
    }
    let transport = tarpc::serde_transport::new(framed, Json::new());
    Ok(ControlClient::new(client::Config::default(), transport).spawn())
}

/// The frames' JSON: the same documents as tokio-serde's `Json` format, read
/// from the frame as a slice (that format reads through `io::Read`, about
/// three times slower on a large reply) and written into a buffer sized from
/// the previous frame, so a large reply is not copied at every doubling.
struct Json<Item, SinkItem> {
    /// The last frame's size: the next one is usually about as large.
    last: usize,
    items: PhantomData<fn(SinkItem) -> Item>,
}

impl<Item, SinkItem> Json<Item, SinkItem> {
    fn new() -> Self {
        Json { last: 0, items: PhantomData }
    }
}

impl<Item, SinkItem> tarpc::tokio_serde::Deserializer<Item> for Json<Item, SinkItem>
where
    for<'a> Item: Deserialize<'a>,
{
    type Error = serde_json::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, Self::Error> {
        serde_json::from_slice(src)
    }
}

impl<Item, SinkItem: Serialize> tarpc::tokio_serde::Serializer<SinkItem> for Json<Item, SinkItem> {
    type Error = serde_json::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, Self::Error> {
        let this = self.get_mut();
        // Never more than a frame may hold, whatever the last one was.
        let mut buffer = Vec::with_capacity(this.last.clamp(128, MAX_FRAME));
        serde_json::to_writer(&mut buffer, item)?;
        this.last = buffer.len();
        Ok(buffer.into())
    }
}

/// Credentials a server checks, from `[unix_http_server]`/`[inet_http_server]`.
///
/// Only SHA-1 digests are kept and compared, in constant time, so neither the
/// length nor the content of the secret leaks through timing. The password may
/// be given as supervisord allows: plaintext, or `{SHA}` followed by the hex
/// SHA-1 of the plaintext. Serializable as those digests, for a live
/// upgrade's next image to check the same credentials before it has loaded
/// its config.
#[derive(Clone, Serialize, Deserialize)]
pub struct ServerAuth {
    username: [u8; 20],
    password: [u8; 20],
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerAuth { .. }")
    }
}

/// A `{SHA}` password that is not 40 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("password '{{SHA}}...' must be followed by 40 hex digits")]
pub struct BadShaPassword;

fn sha1(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

impl ServerAuth {
    /// Credentials to require; `password` may be `{SHA}` and 40 hex digits of its SHA-1, as supervisord accepts.
    pub fn new(username: &str, password: &str) -> Result<ServerAuth, BadShaPassword> {
        let password = match password.strip_prefix("{SHA}") {
            Some(hex) => parse_hex20(hex).ok_or(BadShaPassword)?,
            None => sha1(password.as_bytes()),
        };
        Ok(ServerAuth { username: sha1(username.as_bytes()), password })
    }

    /// Constant-time check of a username and password.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        let user_ok = self.username.ct_eq(&sha1(username.as_bytes()));
        let pass_ok = self.password.ct_eq(&sha1(password.as_bytes()));
        (user_ok & pass_ok).into()
    }
}

fn parse_hex20(hex: &str) -> Option<[u8; 20]> {
    let hex = hex.as_bytes();
    // `from_str_radix` alone would take a sign ("+f").
    if hex.len() != 40 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// A [`Control`](crate::Control) implementation whose call futures are `Send`,
/// so each call can run in its own task.
///
/// `async fn` in traits gives futures whose `Send`-ness generic code cannot name,
/// so the concrete service type states it with [`impl_send_control!`](crate::impl_send_control)
/// (`vigil_rpc::impl_send_control!(MyDaemon);`), where the compiler can check it.
pub trait SendControl: Clone + Send + Sync + 'static {
    /// Runs one request through the service's `Control` methods.
    fn call(
        self,
        ctx: tarpc::context::Context,
        request: ControlRequest,
    ) -> futures::future::BoxFuture<'static, Result<ControlResponse, tarpc::ServerError>>;
}

/// Implements [`SendControl`] for a concrete type implementing
/// [`Control`](crate::Control) + `Clone + Send + Sync + 'static`.
#[macro_export]
macro_rules! impl_send_control {
    ($service:ty) => {
        impl $crate::transport::SendControl for $service {
            fn call(
                self,
                ctx: $crate::__private::tarpc::context::Context,
                request: $crate::ControlRequest,
            ) -> $crate::__private::futures::future::BoxFuture<
                'static,
                ::std::result::Result<
                    $crate::ControlResponse,
                    $crate::__private::tarpc::ServerError,
                >,
            > {
                ::std::boxed::Box::pin($crate::__private::tarpc::server::Serve::serve(
                    $crate::Control::serve(self),
                    ctx,
                    request,
                ))
            }
        }
    };
}

/// Adapts a [`SendControl`] to tarpc's `Serve` with a `Send` future.
#[derive(Clone)]
struct Spawnable<C>(C);

impl<C: SendControl> Serve for Spawnable<C> {
    type Req = ControlRequest;
    type Resp = ControlResponse;

    async fn serve(
        self,
        ctx: tarpc::context::Context,
        request: ControlRequest,
    ) -> Result<ControlResponse, tarpc::ServerError> {
        self.0.call(ctx, request).await
    }
}

/// Why a served connection ended before serving anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("control connection: {0}")]
    /// Reading or writing the connection failed.
    Io(#[from] io::Error),
    #[error("control connection: bad handshake: {0}")]
    /// The client's hello was not one (wrong frame, version or timeout).
    Handshake(String),
    /// The client's credentials were refused.
    #[error("control connection: authentication failed for user '{username}'")]
    Denied {
        /// The username the client gave.
        username: String,
    },
    /// The client's hello named another protocol version.
    #[error(
        "control connection: refused a client of protocol version {client} (this vigild speaks {PROTOCOL_VERSION})"
    )]
    Version {
        /// The client's protocol version.
        client: u32,
    },
}

/// Serves one accepted connection: handshake (checking `auth` if given), then
/// tarpc calls until the client hangs up. Each call runs in its own task, so a
/// long `stop` does not block a `status` on the same connection.
///
/// The handshake must be done within [`HANDSHAKE_TIMEOUT`] from now; see
/// [`serve_stream_until`] to count it from an earlier moment.
pub async fn serve_stream<S, C>(
    stream: S,
    auth: Option<Arc<ServerAuth>>,
    service: C,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C: SendControl,
{
    serve_stream_until(stream, auth, service, tokio::time::Instant::now() + HANDSHAKE_TIMEOUT).await
}

/// [`serve_stream`] whose handshake must be done by `deadline`. The daemon
/// calls this after deciding, from the first bytes, that the connection is not
/// HTTP, with a deadline counted from the accept, so that sniffing and hello
/// together take at most one timeout. It must hand over a stream that still
/// yields the bytes it read.
pub async fn serve_stream_until<S, C>(
    stream: S,
    auth: Option<Arc<ServerAuth>>,
    service: C,
    deadline: tokio::time::Instant,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C: SendControl,
{
    serve_stream_ending(stream, auth, service, deadline, std::future::pending()).await
}

/// [`serve_stream_until`], ending the connection soon after `ending`
/// completes: the calls under way are answered, then the connection closes
/// (a client between calls sees it close at once, not after a timeout). What
/// a live upgrade does with the connections the old image accepted.
pub async fn serve_stream_ending<S, C>(
    stream: S,
    auth: Option<Arc<ServerAuth>>,
    service: C,
    deadline: tokio::time::Instant,
    ending: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    C: SendControl,
{
    // Until the hello is accepted a frame may be only MAX_HELLO long, so an
    // unauthenticated peer cannot make the codec reserve a large buffer.
    let mut framed = Framed::new(stream, codec(MAX_HELLO));
    match tokio::time::timeout_at(deadline, handshake(&mut framed, auth.as_deref())).await {
        Err(_) => return Err(ServeError::Handshake("no hello within the timeout".to_owned())),
        Ok(result) => result?,
    }
    framed.codec_mut().set_max_frame_length(MAX_FRAME);
    let transport = tarpc::serde_transport::new(framed, Json::new());
    let in_flight = Arc::new(tokio::sync::watch::Sender::new(0usize));
    let serving =
        BaseChannel::with_defaults(transport).execute(Spawnable(service)).for_each(|call| {
            let in_flight = Arc::clone(&in_flight);
            in_flight.send_modify(|calls| *calls += 1);
            async move {
                tokio::spawn(async move {
                    call.await;
                    in_flight.send_modify(|calls| *calls -= 1);
                });
            }
        });
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => return Ok(()),
        () = ending => {}
    }
    // The calls under way finish (a long poll is told to answer by the same
    // event), and their answers are written while the channel is polled.
    let mut calls = in_flight.subscribe();
    tokio::select! {
        () = &mut serving => return Ok(()),
        _ = calls.wait_for(|calls| *calls == 0) => {}
    }
    let _ = tokio::time::timeout(FLUSH, &mut serving).await;
    Ok(())
}

/// How long a connection that [`serve_stream_ending`] ends is still polled
/// after its last call returned, for the answer to be written.
const FLUSH: Duration = Duration::from_millis(20);

/// Reads the hello, checks its version and credentials, and answers it.
async fn handshake<S>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    auth: Option<&ServerAuth>,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = match framed.next().await {
        None => return Err(ServeError::Handshake("connection closed before hello".to_owned())),
        Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            // The codec's "frame size too big": say which frame and what limit.
            return Err(ServeError::Handshake(format!(
                "hello longer than {MAX_HELLO} bytes ({e})"
            )));
        }
        Some(frame) => frame?,
    };
    let hello: Hello =
        serde_json::from_slice(&first).map_err(|e| ServeError::Handshake(e.to_string()))?;
    let refusal = if hello.vigil != PROTOCOL_VERSION {
        Some((
            Welcome::Unsupported { vigil: PROTOCOL_VERSION },
            ServeError::Version { client: hello.vigil },
        ))
    } else {
        auth.and_then(|auth| {
            let username = hello.username.clone().unwrap_or_default();
            let password = hello.password.as_deref().unwrap_or_default();
            if auth.verify(&username, password) {
                return None;
            }
            let reason = if hello.username.is_none() {
                "credentials required"
            } else {
                "bad username or password"
            };
            Some((Welcome::Denied { reason: reason.to_owned() }, ServeError::Denied { username }))
        })
    };
    if let Some((answer, error)) = refusal {
        let reply =
            serde_json::to_vec(&answer).map_err(|e| ServeError::Handshake(e.to_string()))?;
        // The client may already be gone; the refusal is what matters.
        let _ = framed.send(Bytes::from(reply)).await;
        return Err(error);
    }
    let accepted = serde_json::to_vec(&Welcome::Accepted { vigil: PROTOCOL_VERSION })
        .map_err(|e| ServeError::Handshake(e.to_string()))?;
    framed.send(Bytes::from(accepted)).await?;
    Ok(())
}

/// Accepts connections on `listener` forever, serving each with
/// [`serve_stream`] in its own task. Per-connection failures (bad handshake,
/// denied credentials) end that connection only; they are passed to `on_error`
/// so the daemon can log them.
pub async fn serve_unix<C>(
    listener: UnixListener,
    auth: Option<Arc<ServerAuth>>,
    service: C,
    on_error: impl Fn(ServeError) + Clone + Send + 'static,
) -> io::Result<()>
where
    C: SendControl,
{
    loop {
        let (stream, _addr) = listener.accept().await?;
        let (auth, service, on_error) = (auth.clone(), service.clone(), on_error.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_stream(stream, auth, service).await {
                on_error(error);
            }
        });
    }
}

/// True when an RPC failed because the connection is gone (as opposed to a
/// deadline), so a long-lived client (the shell) should reconnect.
pub fn is_disconnect(error: &RpcError) -> bool {
    matches!(error, RpcError::Shutdown | RpcError::Send(_) | RpcError::Channel(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_like_supervisorctl() {
        let ok = [
            ("unix:///run/vigil.sock", Endpoint::Unix("/run/vigil.sock".into())),
            ("http://localhost:9001", Endpoint::Tcp("localhost:9001".into())),
            ("http://127.0.0.1:9001/RPC2", Endpoint::Tcp("127.0.0.1:9001".into())),
            ("http://example.org", Endpoint::Tcp("example.org:80".into())),
            ("http://[::1]:9001", Endpoint::Tcp("[::1]:9001".into())),
            ("http://[::1]", Endpoint::Tcp("[::1]:80".into())),
        ];
        for (url, endpoint) in ok {
            assert_eq!(Endpoint::parse(url).expect(url), endpoint, "{url}");
        }
        for url in ["https://x:1", "unix://", "http://", "/tmp/sock"] {
            let error = Endpoint::parse(url).expect_err(url);
            assert_eq!(error.to_string(), format!("{url}: url must be http:// or unix://"));
        }
    }

    #[test]
    fn auth_accepts_plain_and_sha_passwords_only_when_both_match() {
        let plain = ServerAuth::new("user", "s3cret").expect("plain");
        // The digest of some other password.
        let hex = "b2a9d5b5c2e1d2e6e5c1a6d6f3b7e5c6a0e3f1a2";
        let hashed_ok =
            ServerAuth::new("user", &format!("{{SHA}}{}", hex_of(&sha1(b"s3cret")))).expect("sha");
        for auth in [&plain, &hashed_ok] {
            assert!(auth.verify("user", "s3cret"));
            assert!(!auth.verify("user", "s3cre"));
            assert!(!auth.verify("usr", "s3cret"));
            assert!(!auth.verify("", ""));
        }
        let other = ServerAuth::new("user", &format!("{{SHA}}{hex}")).expect("sha");
        assert!(!other.verify("user", "s3cret"));
        assert!(ServerAuth::new("user", "{SHA}abc").is_err());
        assert!(ServerAuth::new("user", &format!("{{SHA}}{}", "g".repeat(40))).is_err());
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn http_is_told_from_vigil_frames_by_the_first_bytes() {
        assert!(looks_like_http(b"POST /RPC2 HTTP/1.1"));
        assert!(looks_like_http(b"GET /logtail/x HTTP/1.1"));
        assert!(!looks_like_http(&[0, 0, 0, 42, b'{']));
    }
}
