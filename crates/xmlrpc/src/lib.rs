//! Vigil over HTTP: what vigild serves on connections its listener identified as HTTP.
//! That is supervisord's compatibility surface, the XML-RPC API (`/RPC2`) and the
//! log-following handlers (`/logtail/...`, `/mainlogtail`) that the stock `supervisorctl`
//! and Python `xmlrpc.client` scripts use, the web dashboard in place of supervisord's
//! web page (`/`, `/index.html`, `/tail.html`), and what monitoring asks for (`/metrics`,
//! `/healthz`, `/readyz`), behind supervisord's HTTP Basic auth.
//!
//! Layers, each in its own module, each importing only the ones listed after it:
//! - [`adaptor`]: the production [`backend::Backend`], calling the daemon's
//!   `vigil_rpc::Control` service in process (the one tarpc serves), so both protocols
//!   share one implementation. Entry point for the daemon: [`serve`].
//! - [`http`]: hyper HTTP/1.1 on one connection: routing, Basic auth ([`http::auth`]), the
//!   request limits, the XML-RPC endpoint ([`http::xmlrpc`], with its method table and
//!   wire codec), the streamed log tails ([`http::logtail`]), the web dashboard (its
//!   pages, live feed and actions), the metrics and the health probes.
//! - [`limits`]: the documented limits on what one client can make vigild read, wait
//!   for and write.
//! - [`backend`]: the [`backend::Backend`] trait, everything the handlers need from the
//!   daemon, with supervisord's semantics, and the names it is addressed by.
//! - [`fault`]: supervisord's fault codes, the error of every layer above.
//!
//! The crate depends on vigil-rpc and on vigil-config's vocabulary (namespecs, signal
//! names), never on the supervision tree: vigild wires it to its control service. It owns no sockets and no protocol sniffing, and holds no daemon
//! state of its own (only, per connection, a `shutdown`/`restart` waiting for its answer to
//! be sent, the count of the dashboard's open event streams, which it limits, and the
//! signal of a live upgrade that ends every connection cleanly).
#![warn(missing_docs)]
#![allow(
    rustdoc::private_intra_doc_links,
    reason = "this overview is for readers of the crate's source; its layers stay private"
)]

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use vigil_rpc::{SendControl, ServerAuth};

mod adaptor;
mod backend;
mod fault;
mod http;
mod limits;
#[cfg(test)]
mod testing;

pub use http::{REQUEST_METHODS, ServeError, end_streams_for_handover};

/// Pure entry points for the fuzz targets and their corpus replay test; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::http::xmlrpc::codec;

    /// Decodes a request body as the `/RPC2` handler does and, when it is a call,
    /// encodes its method name and parameters as a response; `None` when it is refused.
    pub fn decode_and_encode(body: &[u8]) -> Option<String> {
        let call = codec::decode_call(body).ok()?;
        let mut params = call.params;
        params.insert(0, dxr::Value::String(call.method));
        Some(codec::encode_response(&dxr::Value::Array(params)))
    }
}

/// Serves one HTTP connection (XML-RPC and `/logtail`) until the client closes it,
/// answering from `control`, the daemon's `Control` service.
///
/// `stream` is whatever the listener accepted, possibly wrapped to replay the bytes it
/// peeked at to tell HTTP from tarpc. With `auth` (the `[unix_http_server]` or
/// `[inet_http_server]` credentials of the socket the connection arrived on), every
/// request must carry them.
pub async fn serve<S, C>(
    stream: S,
    control: C,
    auth: Option<Arc<ServerAuth>>,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: SendControl,
{
    let credentials = auth.map(|auth| Arc::new(http::auth::Credentials::shared(auth)));
    let (backend, stream) = adaptor::connection(stream, control);
    http::serve_http(stream, backend, credentials).await
}
