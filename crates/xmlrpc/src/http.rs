//! HTTP/1.1 on one connection the listener handed over (hyper's server connection, no
//! hand-written parsing): Basic auth, the request limits and the routing to the handlers.
//!
//! Routes, as supervisord's medusa handlers match them:
//! - any path starting with `/RPC2`: `POST` carries an XML-RPC call ([`xmlrpc`]);
//! - `/logtail/<namespec>[/<stdout|stderr>]` and `/mainlogtail`: `GET` streams the log
//!   ([`logtail`]);
//! - `/metrics`: `GET` answers the Prometheus text format ([`metrics`]);
//! - `/healthz` and `/readyz`: `GET` (or `HEAD`) answers an orchestrator's probe
//!   ([`health`]);
//! - `/`, `/index.html`, `/tail.html`, `/ui/...`: the web dashboard ([`dashboard`]): pages
//!   and its live feed by `GET`, its actions by a same-origin `POST`;
//! - anything else is 404.
//!
//! A method a route does not serve is 400 if supervisord knows it (`GET`, `HEAD`, `POST`:
//! its answer), and 405 with an `Allow` header otherwise. Every method of
//! [`REQUEST_METHODS`] reaches this module, so none is answered with a reset.
//!
//! With credentials configured, every request but `/healthz` and `/readyz` needs them
//! (those two tell an unauthenticated client only a status, see [`health`]): without,
//! it is answered 401 with `WWW-Authenticate: Basic realm="default"` as soon as its head is
//! read, before any of its body. The limits on what a client can make vigild read and wait
//! for are in [`crate::limits`]. Malformed XML and a missing `<methodName>` are 400. Faults
//! are ordinary 200 responses, as in XML-RPC.
//!
//! A live upgrade of the daemon ([`end_streams_for_handover`]) ends every connection
//! cleanly: the response being sent is finished (a `/logtail` stream or the dashboard's
//! event stream ends there, with HTTP/1.1's last chunk, so a client sees a complete
//! response and knows to connect again) and the connection closes instead of waiting for
//! another request; the listener's drain then has nothing left to cut.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::backend::{Backend, LogSource};
use crate::limits::{
    BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, MAX_DISCARDED_BODY, MAX_REQUEST_BODY, MAX_REQUEST_HEAD,
};

pub(crate) mod auth;
mod dashboard;
mod health;
pub(crate) mod logtail;
mod metrics;
mod response;
pub(crate) mod xmlrpc;

use auth::{CHALLENGE, Credentials};
use response::{Body, plain};

/// The first bytes of a request line for each HTTP/1.1 method (those of RFC 9110 and
/// `PATCH`), by which a listener recognises a connection for this crate among other
/// protocols. A tarpc frame starts with a zero byte, so it never matches. The longest
/// comes first, so a listener can size its reads by the first.
pub const REQUEST_METHODS: [&[u8]; 9] = [
    b"OPTIONS ",
    b"CONNECT ",
    b"DELETE ",
    b"PATCH ",
    b"TRACE ",
    b"POST ",
    b"HEAD ",
    b"GET ",
    b"PUT ",
];

/// Moves once at the start of each live upgrade of the daemon.
static HANDOVER: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// A live upgrade of the daemon begins: every connection open now finishes the response
/// it is sending and closes; a `/logtail` or dashboard event stream ends at once, between
/// two chunks, with its last chunk (see the module docs). The caller no longer accepts
/// connections, so a client that connects again reaches the next image.
pub fn end_streams_for_handover() {
    HANDOVER.send_modify(|count| *count = count.wrapping_add(1));
}

/// Completes at the next [`end_streams_for_handover`] after this call.
pub(crate) fn handover() -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut watch = HANDOVER.subscribe();
    async move {
        // The sender is a static: it never closes.
        let _ = watch.changed().await;
    }
}

/// Why a connection ended abnormally: an I/O error or a protocol violation by the client.
/// Either way the connection is gone; the caller just logs it.
#[derive(Debug, thiserror::Error)]
#[error("HTTP connection failed: {0}")]
pub struct ServeError(#[from] hyper::Error);

/// Serves HTTP/1.x requests on `stream` until the client closes it (keep-alive is on).
///
/// With `credentials`, every request must carry them. Dropping the returned future closes
/// the connection and abandons any in-flight backend call (see the cancellation note on
/// [`Backend`]).
pub(crate) async fn serve_http<S, B>(
    stream: S,
    backend: Arc<B>,
    credentials: Option<Arc<Credentials>>,
) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Backend,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let backend = Arc::clone(&backend);
        let credentials = credentials.clone();
        async move { Ok::<_, Infallible>(respond(request, backend, credentials.as_deref()).await) }
    });
    let handover = handover();
    let connection = http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => served?,
        () = handover => {
            // Finishes the response under way (a stream ends on its own, see
            // `end_streams_for_handover`), then closes instead of reading another request.
            connection.as_mut().graceful_shutdown();
            connection.await?;
        }
    }
    Ok(())
}

async fn respond<B: Backend>(
    request: Request<Incoming>,
    backend: Arc<B>,
    credentials: Option<&Credentials>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let authorized = credentials
        .is_none_or(|credentials| credentials.authorizes(parts.headers.get(header::AUTHORIZATION)));
    let path = parts.uri.path();
    if path == "/healthz" || path == "/readyz" {
        discard(body);
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return wrong_method(&parts.method, Method::GET);
        }
        return if path == "/healthz" {
            health::healthz(backend.as_ref()).await
        } else {
            health::readyz(backend.as_ref(), authorized).await
        };
    }
    if !authorized {
        discard(body);
        let mut response = plain(StatusCode::UNAUTHORIZED);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        return response;
    }
    let (route, allowed) = if path.starts_with("/RPC2") {
        (Route::XmlRpc, Method::POST)
    } else if path.starts_with("/mainlogtail") {
        let query = parts.uri.query().map(str::to_owned);
        (Route::LogTail(Some((LogSource::Main, query))), Method::GET)
    } else if path.starts_with("/logtail") {
        let query = parts.uri.query().map(str::to_owned);
        (Route::LogTail(logtail::source(path).map(|source| (source, query))), Method::GET)
    } else if path == "/metrics" {
        (Route::Metrics, Method::GET)
    } else if let Some(page) = dashboard::Page::route(path) {
        let method = page.method();
        (Route::Dashboard(page), method)
    } else {
        discard(body);
        return plain(StatusCode::NOT_FOUND);
    };
    if parts.method != allowed {
        discard(body);
        return wrong_method(&parts.method, allowed);
    }
    match route {
        Route::XmlRpc => match read_body(&parts.headers, body).await {
            Ok(body) => xmlrpc::answer(&body, backend.as_ref()).await,
            Err(status) => plain(status),
        },
        Route::LogTail(Some((source, query))) => match logtail::start(query.as_deref()) {
            Ok(from) => logtail::stream(backend, source, from).await,
            Err(status) => plain(status),
        },
        Route::LogTail(None) => plain(StatusCode::NOT_FOUND),
        Route::Metrics => match backend.facts(true).await {
            Ok(facts) => response::full(metrics::CONTENT_TYPE, metrics::render(&facts)),
            Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE),
        },
        Route::Dashboard(page) => {
            // Actions carry everything in their path.
            discard(body);
            dashboard::answer(page, &parts.headers, backend).await
        }
    }
}

/// Where a request path leads.
enum Route {
    XmlRpc,
    /// `None`: a `/logtail` path that names no single process's log. With the query.
    LogTail(Option<(LogSource, Option<String>)>),
    Metrics,
    Dashboard(dashboard::Page),
}

/// The answer to a method the path does not serve: 400 for the methods supervisord knows
/// (what it answers), 405 with `Allow` for the others.
fn wrong_method(method: &Method, allowed: Method) -> Response<Body> {
    if [Method::GET, Method::HEAD, Method::POST].contains(method) {
        return plain(StatusCode::BAD_REQUEST);
    }
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED);
    if let Ok(allowed) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, allowed);
    }
    response
}

/// Reads and drops, on its own task, the body of a request we answer without it (401,
/// 400, 404), at most [`MAX_DISCARDED_BODY`] bytes of it: the answer goes out at once, and
/// a client still writing its body (Python's `http.client` sends it after the headers)
/// reads it instead of a reset, and may send its next request on the same connection.
/// A longer body ends the connection: dropping it unread makes hyper close it.
fn discard(mut body: Incoming) {
    if body.is_end_stream() {
        return;
    }
    let drain = async move {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, bytes::Bytes::len);
            if read > MAX_DISCARDED_BODY {
                break;
            }
        }
    };
    tokio::spawn(tokio::time::timeout(BODY_READ_TIMEOUT, drain));
}

/// Reads a request body of at most [`MAX_REQUEST_BODY`] bytes within [`BODY_READ_TIMEOUT`];
/// 413 when it is larger (a declared length is refused before a byte of it is read), 408
/// when it is late, 400 when the client breaks off. The body is dropped unread on an error,
/// which makes hyper close the connection after the answer.
async fn read_body(headers: &hyper::HeaderMap, body: Incoming) -> Result<bytes::Bytes, StatusCode> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_REQUEST_BODY as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let read =
        tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_REQUEST_BODY).collect());
    let Ok(read) = read.await else {
        return Err(StatusCode::REQUEST_TIMEOUT);
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests;
