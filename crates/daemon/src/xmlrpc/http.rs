//! HTTP/1.1 on one connection the listener handed over (hyper's server connection, no
//! hand-written parsing): routing, Basic auth, the XML-RPC endpoint and the streamed log tails.
//!
//! Routes, as supervisord's medusa handlers match them (reference sections 3.6 and 4.1):
//! - any path starting with `/RPC2`: `POST` carries an XML-RPC call; any other method is 400;
//! - `/logtail/<namespec>[/<stdout|stderr>]` and `/mainlogtail`: `GET` streams the log as
//!   chunked `text/plain;charset=utf-8` with `X-Accel-Buffering: no`, starting 1024 bytes
//!   before the end and then following it; an unknown process, a `group:*` namespec, an
//!   unknown channel or a log without a file is 404; any other method is 400;
//! - anything else is 404 (vigild has no web UI).
//!
//! With credentials configured, every request, whatever its path, needs them (401 with
//! `WWW-Authenticate: Basic realm="default"` otherwise).
//!
//! Limits: a request body over [`MAX_REQUEST_BODY`] is refused with 413 before it is read
//! (supervisord buffers any size). Malformed XML and a missing `<methodName>` are 400. Faults
//! are ordinary 200 responses, as in XML-RPC.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{CHALLENGE, Credentials};
use super::backend::{Backend, FollowFrom, LogChannel, LogFollow, LogSource};
use super::codec::{decode_call, encode_fault, encode_response};
use super::methods::{self, Target, split_namespec};

/// The largest XML-RPC request body accepted. supervisorctl's largest request is a
/// `sendProcessStdin` line; 4 MiB leaves room for scripted multicalls and stdin payloads.
pub(crate) const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// How far before the end of the log a `tail -f` stream starts (supervisord's `head`).
const TAIL_START: u64 = 1024;

/// What a follower prints when the log shrank under it (supervisord's `tail_f_producer`).
const TRUNCATED: &[u8] = b"==> File truncated <==\n";

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Why a connection ended abnormally: an I/O error or a protocol violation by the client.
/// Either way the connection is gone; the caller just logs it.
#[derive(Debug, thiserror::Error)]
#[error("HTTP connection failed: {0}")]
pub(crate) struct ServeError(#[from] hyper::Error);

/// Serves HTTP/1.x requests on `stream` until the client closes it (keep-alive is on).
///
/// `stream` is whatever the listener accepted, possibly wrapped to replay the bytes it
/// peeked at to tell HTTP from tarpc. With `credentials`, every request must carry them.
/// Dropping the returned future closes the connection and abandons any in-flight backend
/// call (see the cancellation note on [`Backend`]).
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
    http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await?;
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
        discard(body).await;
        let mut response = plain(StatusCode::UNAUTHORIZED);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        return response;
    }
    let path = parts.uri.path();
    if path.starts_with("/RPC2") {
        if parts.method != Method::POST {
            discard(body).await;
            return plain(StatusCode::BAD_REQUEST);
        }
        return xmlrpc(&parts.headers, body, backend.as_ref()).await;
    }
    let source = if path.starts_with("/mainlogtail") {
        Some(LogSource::Main)
    } else if path.starts_with("/logtail") {
        logtail_source(path)
    } else {
        discard(body).await;
        return plain(StatusCode::NOT_FOUND);
    };
    if parts.method != Method::GET {
        discard(body).await;
        return plain(StatusCode::BAD_REQUEST);
    }
    match source {
        Some(source) => logtail(backend, source).await,
        None => plain(StatusCode::NOT_FOUND),
    }
}

/// Reads and drops a request body we answer without using (401, 400, 404), up to
/// [`MAX_REQUEST_BODY`]. Answering before the client has sent its body would make hyper
/// close the connection under it, and a client still writing (Python's `http.client` sends
/// the body after the headers) would see a broken pipe instead of our status.
async fn discard(body: Incoming) {
    let _ = Limited::new(body, MAX_REQUEST_BODY).collect().await;
}

/// A body-less answer with the status line's reason as text, for errors.
fn plain(status: StatusCode) -> Response<Body> {
    let text = format!("{status}\n");
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=utf-8"));
    response
}

async fn xmlrpc<B: Backend>(
    headers: &hyper::HeaderMap,
    body: Incoming,
    backend: &B,
) -> Response<Body> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_REQUEST_BODY as u64) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(_) => return plain(StatusCode::BAD_REQUEST),
    };
    let Ok(call) = decode_call(&body) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    let xml = match methods::call(backend, &call.method, &call.params).await {
        Ok(value) => encode_response(&value),
        Err(fault) => encode_fault(&fault),
    };
    let mut response = Response::new(Full::new(Bytes::from(xml)).boxed_unsync());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    response
}

/// Parses `/logtail/<namespec>[/<channel>]` like supervisord's `logtail_handler`: the path is
/// percent-decoded, the first segment is the handler's, and a missing channel means stdout.
fn logtail_source(path: &str) -> Option<LogSource> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().ok()?;
    let (_handler, rest) = decoded.trim_start_matches('/').split_once('/')?;
    let (namespec, channel) = rest.split_once('/').unwrap_or((rest, "stdout"));
    let channel = match channel {
        "stdout" => LogChannel::Stdout,
        "stderr" => LogChannel::Stderr,
        _ => return None,
    };
    match split_namespec(namespec) {
        Target::Process(process) => Some(LogSource::Process(process, channel)),
        Target::Group(_) => None,
    }
}

async fn logtail<B: Backend>(backend: Arc<B>, source: LogSource) -> Response<Body> {
    // Unknown process and no file alike are 404: "a temporary condition" for supervisord.
    let Ok(first) = backend.follow_log(&source, FollowFrom::Tail(TAIL_START)).await else {
        return plain(StatusCode::NOT_FOUND);
    };
    let head = futures::stream::iter(chunk_frame(&first).map(Ok::<_, Infallible>));
    let rest = futures::stream::unfold(
        (backend, source, first.next),
        |(backend, source, position)| async move {
            // The log went away (process removed, daemon stopping): end the stream.
            let chunk = backend.follow_log(&source, FollowFrom::Position(position)).await.ok()?;
            let next = chunk.next;
            Some((chunk_frame(&chunk), (backend, source, next)))
        },
    )
    // A reply with nothing to send is skipped: an empty chunk would end the stream.
    .filter_map(|frame| std::future::ready(frame.map(Ok::<_, Infallible>)));
    let mut response = Response::new(StreamBody::new(head.chain(rest)).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=utf-8"));
    // Tells a reverse proxy (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The bytes a follow reply puts on the wire, the truncation marker first; `None` when
/// there are none.
fn chunk_frame(chunk: &LogFollow) -> Option<Frame<Bytes>> {
    let mut bytes = Vec::with_capacity(TRUNCATED.len() + chunk.bytes.len());
    if chunk.truncated {
        bytes.extend_from_slice(TRUNCATED);
    }
    bytes.extend_from_slice(&chunk.bytes);
    (!bytes.is_empty()).then(|| Frame::data(Bytes::from(bytes)))
}

#[cfg(test)]
mod tests;
