//! `/logtail/<namespec>[/<stdout|stderr>]` and `/mainlogtail`: a log streamed as chunked
//! `text/plain;charset=utf-8` with `X-Accel-Buffering: no`, starting [`TAIL_START`] bytes
//! before the end and then following it, as supervisord's `logtail_handler` and
//! `mainlogtail_handler` do. An unknown process, a `group:*` namespec, an unknown channel
//! or a log without a file is 404.
//!
//! Vigil's additions, so a client can follow a log across a live upgrade without a byte
//! twice: the response's `X-Log-Offset` header is the log offset of the first byte it
//! streams (log offsets count every byte the program ever wrote to the channel, across
//! rotations and upgrades), and `?offset=N` starts the stream at offset `N` instead of
//! near the end. At a live upgrade the stream ends cleanly after a whole chunk (see
//! [`crate::http::end_streams_for_handover`]); a client that counted the bytes it got
//! connects again with `?offset=` its offset plus that count. (A truncation marker is
//! not log bytes and does not count.)

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

/// Where a stream starts: near the end, or at the offset the query's `offset=N` names.
/// A query with an `offset` that is not a number is 400; other parameters are ignored,
/// as supervisord ignores the query.
pub(crate) fn start(query: Option<&str>) -> Result<FollowFrom, StatusCode> {
    let offset = query.into_iter().flat_map(|query| query.split('&')).find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == "offset").then_some(value)
    });
    match offset {
        None => Ok(FollowFrom::Tail(TAIL_START)),
        Some(value) => value.parse().map(FollowFrom::Position).map_err(|_| StatusCode::BAD_REQUEST),
    }
}

/// Streams `source` from `from` until it goes away, the client hangs up or the daemon
/// hands over to a new image.
pub(crate) async fn stream<B: Backend>(
    backend: Arc<B>,
    source: LogSource,
    from: FollowFrom,
) -> Response<Body> {
    // Before anything is read: a handover from now on ends this stream.
    let handover = super::handover();
    // A tail answers at once (a position would wait for news): the end of the log, and
    // the tail's bytes. Unknown process and no file alike are 404: "a temporary
    // condition" for supervisord.
    let tail = match from {
        FollowFrom::Tail(count) => count,
        // Only for the end (a tail of nothing would be a read from the start).
        FollowFrom::Position(_) => 1,
    };
    let Ok(mut first) = backend.follow_log(&source, FollowFrom::Tail(tail)).await else {
        return plain(StatusCode::NOT_FOUND);
    };
    let (first_offset, next) = match from {
        FollowFrom::Tail(_) => (first.next.saturating_sub(first.bytes.len() as u64), first.next),
        FollowFrom::Position(offset) if offset <= first.next => {
            first = LogFollow { bytes: Vec::new(), truncated: false, next: offset };
            (offset, offset)
        }
        // Past the end: nothing was ever there.
        FollowFrom::Position(_) => return plain(StatusCode::RANGE_NOT_SATISFIABLE),
    };
    let head = futures::stream::iter(chunk_frame(&first).map(Ok::<_, Infallible>));
    let rest = futures::stream::unfold(
        (backend, source, next),
        |(backend, source, position)| async move {
            // The log went away (process removed, daemon stopping): end the stream.
            let chunk = backend.follow_log(&source, FollowFrom::Position(position)).await.ok()?;
            let next = chunk.next;
            Some((chunk_frame(&chunk), (backend, source, next)))
        },
    )
    // A reply with nothing to send is skipped: an empty chunk would end the stream.
    .filter_map(|frame| std::future::ready(frame.map(Ok::<_, Infallible>)));
    // Ends between two chunks: what was sent is whole.
    let body = head.chain(rest).take_until(handover);
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain;charset=utf-8"));
    headers.insert("x-log-offset", HeaderValue::from(first_offset));
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
