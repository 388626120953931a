//! `GET /ui/events`: the dashboard's live feed, as server-sent events
//! (`text/event-stream`, which a browser's `EventSource` reads and reopens by itself).
//!
//! - `facts`: the daemon's [`Facts`](crate::backend::Facts) as JSON, sent first and then
//!   each time the daemon's change counter moves (a state, pid, health or dependency wait
//!   changed, a group came or went). A burst of changes while the previous event is still
//!   being written is sent as one: the stream reads the facts only when the connection
//!   takes the next event.
//! - `usage`: CPU seconds and resident bytes per process, every [`USAGE_REFRESH`] without
//!   a change, which also tells the page the stream is alive.
//! - `gone`: the daemon is shutting down or reloading; the stream ends.
//!
//! A stream is one of the listener's connections, and it is bounded: at most
//! [`MAX_EVENT_STREAMS`] are open at once (more are answered 503), each ends after
//! [`EVENT_STREAM_LIFETIME`] (the browser reconnects), and only one event is ever held
//! for a slow reader. With no stream open nothing of this runs.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::super::response::{Body, plain};
use crate::backend::{Backend, Facts};
use crate::limits::{EVENT_STREAM_LIFETIME, MAX_EVENT_STREAMS};

/// How often an open stream refreshes CPU and memory when nothing changed.
pub(crate) const USAGE_REFRESH: Duration = Duration::from_secs(5);

/// How long the browser waits before it reopens a stream that ended.
const RETRY_MS: u32 = 2000;

/// Event streams open now, in this process.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many streams are open; a closed connection is noticed at the stream's next
/// write, within [`USAGE_REFRESH`].
#[cfg(test)]
pub(super) fn open_streams() -> usize {
    OPEN.load(Ordering::Acquire)
}

/// One of the [`MAX_EVENT_STREAMS`] places, given back when the stream is dropped.
struct Slot;

impl Slot {
    fn claim() -> Option<Slot> {
        OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < MAX_EVENT_STREAMS).then_some(open + 1)
        })
        .ok()
        .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a stream is.
struct Feed<B> {
    backend: Arc<B>,
    /// The change counter the last `facts` event showed.
    seen: u64,
    ends: Instant,
    over: bool,
    _slot: Slot,
}

/// Opens a stream: 503 when [`MAX_EVENT_STREAMS`] are open or the daemon does not answer.
pub(crate) async fn stream<B: Backend>(backend: Arc<B>) -> Response<Body> {
    // Before anything is read: a live upgrade from now on ends this stream (the page's
    // `EventSource` connects again, to the next image).
    let handover = crate::http::handover();
    let Some(slot) = Slot::claim() else {
        let mut response = plain(StatusCode::SERVICE_UNAVAILABLE);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    // The counter before the facts: a change in between shows again, none is lost.
    let Ok(seen) = backend.changes(u64::MAX, Duration::ZERO).await else {
        return plain(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Ok(facts) = backend.facts(true).await else {
        return plain(StatusCode::SERVICE_UNAVAILABLE);
    };
    let mut first = format!("retry: {RETRY_MS}\n\n").into_bytes();
    first.extend_from_slice(&event("facts", &facts_json(&facts)));
    let feed = Feed {
        backend,
        seen,
        ends: Instant::now() + EVENT_STREAM_LIFETIME,
        over: false,
        _slot: slot,
    };
    let head = futures::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from(first)))]);
    let rest = futures::stream::unfold(feed, |mut feed| async move {
        let bytes = next_event(&mut feed).await?;
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(bytes))), feed))
    });
    let body = futures::StreamExt::take_until(futures::StreamExt::chain(head, rest), handover);
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Tells a reverse proxy (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Waits for what to send next; `None` ends the stream.
async fn next_event<B: Backend>(feed: &mut Feed<B>) -> Option<Vec<u8>> {
    if feed.over {
        return None;
    }
    let left = feed.ends.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    let wait = USAGE_REFRESH.min(left);
    let counter = match feed.backend.changes(feed.seen, wait).await {
        Ok(counter) => counter,
        Err(fault) => return Some(gone(feed, &fault.fault_string())),
    };
    if counter == feed.seen && wait == left {
        return None;
    }
    let facts = match feed.backend.facts(true).await {
        Ok(facts) => facts,
        Err(fault) => return Some(gone(feed, &fault.fault_string())),
    };
    if counter == feed.seen {
        return Some(event("usage", &usage_json(&facts)));
    }
    feed.seen = counter;
    Some(event("facts", &facts_json(&facts)))
}

/// The last event of a stream whose daemon stopped answering.
fn gone<B>(feed: &mut Feed<B>, why: &str) -> Vec<u8> {
    feed.over = true;
    event("gone", &json!({ "message": why }))
}

/// One event: its name and its JSON data on one line (JSON text has no raw newline).
fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

fn facts_json(facts: &Facts) -> Value {
    serde_json::to_value(facts).unwrap_or(Value::Null)
}

/// `{"now": epoch seconds, "usage": {namespec: [cpu seconds, rss bytes] or null}}`.
fn usage_json(facts: &Facts) -> Value {
    let usage: Map<String, Value> = facts
        .processes
        .iter()
        .map(|process| {
            let value = process
                .usage
                .map_or(Value::Null, |usage| json!([usage.cpu_seconds(), usage.rss_bytes]));
            (process.info.namespec(), value)
        })
        .collect();
    json!({ "now": facts.daemon.now, "usage": usage })
}
