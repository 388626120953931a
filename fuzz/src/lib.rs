//! The fuzz targets' bodies: one function per input format that vigild reads from
//! someone it does not fully trust (config files, a listener's stdout, a client's
//! connection). Each takes arbitrary bytes, must never panic or hang, and checks what
//! it can about the result.
//!
//! The libFuzzer binaries in `fuzz_targets/` (nightly, `cargo fuzz run <name>`) call
//! these, and so does the stable test `integration/tests/fuzz_corpus.rs`, which
//! includes this file and replays every committed corpus and crash input, so CI keeps
//! them without nightly.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// The target names, which are also the directories under `fuzz/corpus/`.
pub const TARGETS: [&str; 7] =
    ["config_ini", "config_toml", "environment", "xmlrpc_decode", "http", "tarpc", "eventlistener"];

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "config_ini" => config_ini(data),
        "config_toml" => config_toml(data),
        "environment" => environment(data),
        "xmlrpc_decode" => xmlrpc_decode(data),
        "http" => http(data),
        "tarpc" => tarpc(data),
        "eventlistener" => eventlistener(data),
        _ => return false,
    }
    true
}

/// The username and password both network targets require.
pub const USER: &str = "user";
/// See [`USER`].
pub const PASSWORD: &str = "123";

/// A config loaded from text alone. `[include]` is left out: it reads files named by
/// the input, which would make the target read the fuzzing machine's file system.
fn load(data: &[u8], file: &str) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.to_ascii_lowercase().contains("include") {
        return;
    }
    let env = BTreeMap::from([
        ("HOME".to_owned(), "/nonexistent/home".to_owned()),
        ("TMPDIR".to_owned(), "/nonexistent/tmp".to_owned()),
        ("ENV_X".to_owned(), "x".to_owned()),
    ]);
    let options = vigil_config::LoadOptions { host_node_name: "fuzzhost".to_owned() };
    let path = Path::new("/nonexistent/vigil-fuzz").join(file);
    match vigil_config::load_str_with(text, &path, &env, &options) {
        Ok(loaded) => {
            // A loaded config is complete: summarising it works and it differs from
            // itself in nothing.
            let _ = vigil_config::summary(&loaded.config);
            assert!(vigil_config::diff(&loaded.config, &loaded.config).is_empty());
        }
        Err(errors) => assert!(!errors.errors.is_empty(), "a failed load names an error"),
    }
}

/// supervisord's INI dialect with `%(...)s` expansion.
pub fn config_ini(data: &[u8]) {
    load(data, "supervisord.conf");
}

/// Vigil's TOML format.
pub fn config_toml(data: &[u8]) {
    load(data, "vigil.toml");
}

/// An `environment=` value.
pub fn environment(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(pairs) = vigil_config::fuzzing::environment(text) {
        for (key, _) in &pairs {
            assert!(!key.is_empty(), "an empty key was accepted from {text:?}");
        }
    }
}

/// An XML-RPC request body, decoded and (when it is a call) its parameters encoded back.
pub fn xmlrpc_decode(data: &[u8]) {
    let _ = vigil_xmlrpc::fuzzing::decode_and_encode(data);
}

/// A `Control` service that fails every call, so a connection can go through the
/// protocol layers without a daemon behind them.
#[derive(Clone)]
struct Failing;

impl vigil_rpc::SendControl for Failing {
    fn call(
        self,
        _: tarpc::context::Context,
        _: vigil_rpc::ControlRequest,
    ) -> BoxFuture<'static, Result<vigil_rpc::ControlResponse, tarpc::ServerError>> {
        Box::pin(async {
            Err(tarpc::ServerError::new(
                std::io::ErrorKind::Other,
                "no daemon behind the fuzz target".to_owned(),
            ))
        })
    }
}

thread_local! {
    /// One runtime per thread: building one per input would dominate the run time.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
}

/// Sends `data` as a client would (then closes its half) to `serve` on an in-memory
/// stream and returns what the server wrote before it closed. Time is paused, so the
/// server's read timeouts fire as soon as nothing else can happen; a server that is
/// still open an hour of virtual time later has hung.
fn exchange<F>(data: &[u8], serve: impl FnOnce(tokio::io::DuplexStream) -> F) -> Vec<u8>
where
    F: Future<Output = ()> + Send + 'static,
{
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn(serve(server));
            let talk = async {
                // The server may close before reading everything; that is its right.
                let _ = client.write_all(data).await;
                let _ = client.shutdown().await;
                let mut out = Vec::new();
                let _ = client.read_to_end(&mut out).await;
                out
            };
            let out = tokio::time::timeout(Duration::from_secs(3600), talk)
                .await
                .expect("the server neither answered nor closed the connection");
            tokio::time::timeout(Duration::from_secs(3600), server)
                .await
                .expect("the server task did not end after the connection closed")
                .expect("the server task panicked");
            out
        })
    })
}

/// Bytes a client sends on an HTTP connection (XML-RPC, `/logtail`), to a server that
/// requires [`USER`] and [`PASSWORD`].
pub fn http(data: &[u8]) {
    let auth = Arc::new(vigil_rpc::ServerAuth::new(USER, PASSWORD).expect("valid credentials"));
    let out = exchange(data, move |server| async move {
        let _ = vigil_xmlrpc::serve(server, Failing, Some(auth)).await;
    });
    if !out.is_empty() {
        assert!(
            out.starts_with(b"HTTP/1."),
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// Bytes a client sends on a tarpc connection (hello, then frames), to a server that
/// requires [`USER`] and [`PASSWORD`].
pub fn tarpc(data: &[u8]) {
    let auth = Arc::new(vigil_rpc::ServerAuth::new(USER, PASSWORD).expect("valid credentials"));
    exchange(data, move |server| async move {
        let _ = vigil_rpc::serve_stream(server, Some(auth), Failing).await;
    });
}

/// A listener's stdout, cut into reads of the size the first byte gives; whenever the
/// listener is READY it is sent an event, as the pool would.
pub fn eventlistener(data: &[u8]) {
    use vigil_core::eventlistener::{ListenerState, Outcome, Protocol};
    let Some((&step, rest)) = data.split_first() else { return };
    let mut protocol = Protocol::default();
    for chunk in rest.chunks(usize::from(step.max(1))) {
        if protocol.state() == ListenerState::Ready {
            protocol.sent();
        }
        let before = protocol.state();
        let outcomes = protocol.feed(chunk);
        if before == ListenerState::Unknown {
            assert!(outcomes.is_empty(), "a listener in UNKNOWN is ignored");
        }
        if outcomes.iter().any(|o| matches!(o, Outcome::Violation | Outcome::BadResult(_))) {
            assert_eq!(protocol.state(), ListenerState::Unknown);
        }
    }
}

/// Records what is read from a stream.
struct Recording<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let new = buf.filled()[before..].to_vec();
        self.seen.lock().expect("recording lock").extend_from_slice(&new);
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the real client (`vigil_rpc::client_over`) sends for a hello with the right
/// credentials and a few calls: the seed of the `tarpc` target.
pub fn recorded_tarpc_session() -> Vec<u8> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = Recording { inner: server, seen: Arc::clone(&seen) };
        let auth = Arc::new(vigil_rpc::ServerAuth::new(USER, PASSWORD).expect("credentials"));
        let served = tokio::spawn(vigil_rpc::serve_stream(server, Some(auth), Failing));
        let hello = vigil_rpc::transport::Hello {
            vigil: vigil_rpc::PROTOCOL_VERSION,
            username: Some(USER.to_owned()),
            password: Some(PASSWORD.to_owned()),
        };
        let control = vigil_rpc::transport::client_over(client, "unix:///fuzz", &hello)
            .await
            .expect("the handshake succeeds");
        let ctx = tarpc::context::current;
        let _ = control.daemon_info(ctx()).await;
        let _ = control.process_info(ctx(), "web:web_0".to_owned()).await;
        let _ = control.reread(ctx()).await;
        drop(control);
        let _ = served.await;
    });
    seen.lock().expect("recording lock").clone()
}
