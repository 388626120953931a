//! HTTP/1.1 on one connection the listener handed over (hyper's server connection, no
//! hand-written parsing): Basic auth, the request limits and the routing to the handlers.
//!
//! Routes, as supervisord's medusa handlers match them:
//! - any path starting with `/RPC2`: `POST` carries an XML-RPC call ([`xmlrpc`]); any other
//!   method is 400;
//! - `/logtail/<namespec>[/<stdout|stderr>]` and `/mainlogtail`: `GET` streams the log
//!   ([`logtail`]); any other method is 400;
//! - anything else is 404 (vigild has no web UI yet).
//!
//! With credentials configured, every request, whatever its path, needs them: without,
//! it is answered 401 with `WWW-Authenticate: Basic realm="default"` as soon as its head is
//! read, before any of its body. The limits on what a client can make vigild read and wait
//! for are in [`crate::limits`]. Malformed XML and a missing `<methodName>` are 400. Faults
//! are ordinary 200 responses, as in XML-RPC.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::{Backend, LogSource};
use crate::limits::{
    BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, MAX_DISCARDED_BODY, MAX_REQUEST_BODY, MAX_REQUEST_HEAD,
};

pub(crate) mod auth;
pub(crate) mod logtail;
mod response;
pub(crate) mod xmlrpc;

use auth::{CHALLENGE, Credentials};
use response::{Body, plain};

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
    http1::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(TokioIo::new(stream), service)
        .await?;
    Ok(())
}

async fn respond<B: Backend>(
    request: Request<Incoming>,
    backend: Arc<B>,
    credentials: Option<&Credentials>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    if let Some(credentials) = credentials
        && !credentials.authorizes(parts.headers.get(header::AUTHORIZATION))
    {
        discard(body);
        let mut response = plain(StatusCode::UNAUTHORIZED);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        return response;
    }
    let path = parts.uri.path();
    if path.starts_with("/RPC2") {
        if parts.method != Method::POST {
            discard(body);
            return plain(StatusCode::BAD_REQUEST);
        }
        return match read_body(&parts.headers, body).await {
            Ok(body) => xmlrpc::answer(&body, backend.as_ref()).await,
            Err(status) => plain(status),
        };
    }
    let source = if path.starts_with("/mainlogtail") {
        Some(LogSource::Main)
    } else if path.starts_with("/logtail") {
        logtail::source(path)
    } else {
        discard(body);
        return plain(StatusCode::NOT_FOUND);
    };
    if parts.method != Method::GET {
        discard(body);
        return plain(StatusCode::BAD_REQUEST);
    }
    match source {
        Some(source) => logtail::stream(backend, source).await,
        None => plain(StatusCode::NOT_FOUND),
    }
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
