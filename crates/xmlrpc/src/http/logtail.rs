//! `/logtail/<namespec>[/<stdout|stderr>]` and `/mainlogtail`: a log streamed as chunked
//! `text/plain;charset=utf-8` with `X-Accel-Buffering: no`, starting [`TAIL_START`] bytes
//! before the end and then following it, as supervisord's `logtail_handler` and
//! `mainlogtail_handler` do. An unknown process, a `group:*` namespec, an unknown channel
//! or a log without a file is 404.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::response::{Body, plain};
use crate::backend::{Backend, FollowFrom, LogChannel, LogFollow, LogSource, Target};

/// How far before the end of the log a `tail -f` stream starts (supervisord's `head`).
const TAIL_START: u64 = 1024;

/// What a follower prints when the log shrank under it (supervisord's `tail_f_producer`).
pub(crate) const TRUNCATED: &[u8] = b"==> File truncated <==\n";

/// The log a `/logtail/...` path names. The path is percent-decoded, its first segment is
/// the handler's, and a missing channel means stdout. `None` for anything that names no
/// single process's log.
pub(crate) fn source(path: &str) -> Option<LogSource> {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().ok()?;
    let (_handler, rest) = decoded.trim_start_matches('/').split_once('/')?;
    let (namespec, channel) = rest.split_once('/').unwrap_or((rest, "stdout"));
    let channel = match channel {
        "stdout" => LogChannel::Stdout,
        "stderr" => LogChannel::Stderr,
        _ => return None,
    };
    match Target::parse(namespec) {
        Target::Process(process) => Some(LogSource::Process(process, channel)),
        Target::Group(_) => None,
    }
}

/// Streams `source` until it goes away or the client hangs up.
pub(crate) async fn stream<B: Backend>(backend: Arc<B>, source: LogSource) -> Response<Body> {
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
