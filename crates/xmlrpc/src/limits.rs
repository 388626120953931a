//! The limits that bound what one HTTP client can make vigild read, wait for, hold and
//! write, whether or not it has authenticated. They are fixed here, in one place, so the
//! documentation of the configuration can quote them and a later config key can replace
//! any of them. A leaf: it imports nothing of this crate.
//!
//! | limit | value | what happens |
//! | --- | --- | --- |
//! | [`HEADER_READ_TIMEOUT`] | 10 s | a request head (request line and headers) not complete in time closes the connection; so does an idle keep-alive connection |
//! | [`MAX_REQUEST_HEAD`] | 64 KiB | a larger head is answered 431 and the connection closed |
//! | [`BODY_READ_TIMEOUT`] | 30 s | a body not complete in time is answered 408 and the connection closed |
//! | [`MAX_REQUEST_BODY`] | 4 MiB | a larger body is answered 413 before it is read (supervisord buffers any size) |
//! | [`MAX_DISCARDED_BODY`] | 64 KiB | what is read and dropped of a body answered without it (401, 400, 404, 405); more closes the connection |
//! | [`MAX_LOG_READ`] | 1 MiB | the most log bytes one `readLog`, `readProcess*Log` or `tailProcess*Log` returns; a longer range is shortened, keeping its start (or, for a read of the last bytes and a tail, its end) |
//! | [`MAX_MULTICALL_CALLS`] | 10 000 | a larger `system.multicall` is the fault `INCORRECT_PARAMETERS`, and runs nothing |
//! | [`MAX_EVENT_STREAMS`] | 32 | the dashboard's live feeds (`/ui/events`) open at once in the daemon, over all listeners; one more is answered 503 with `Retry-After` |
//! | [`EVENT_STREAM_LIFETIME`] | 30 min | a live feed then ends; the browser opens a new one (and is asked for credentials again if they changed) |
//! | [`MAX_RESPONSE`] | 16 MiB | the most an XML-RPC response may encode to; a larger result is a `FAILED` fault; in a `system.multicall`, the call whose result would pass it gets that fault in its place and the calls after it are not run, each getting a `FAILED` fault too |
//!
//! Credentials are checked as soon as the head is read: an unauthenticated client never
//! makes vigild read a body (beyond [`MAX_DISCARDED_BODY`], after the 401 is sent).

use std::time::Duration;

/// How long a client may take to send a request head, and how long a keep-alive
/// connection may stay idle between requests.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head (request line and headers) accepted.
pub(crate) const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// How long a client may take to send a request body once its head arrived.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest XML-RPC request body accepted. supervisorctl's largest request is a
/// `sendProcessStdin` line; 4 MiB leaves room for scripted multicalls and stdin payloads.
pub(crate) const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// How much of a body that is answered without being used (a 401, a wrong method or
/// path) is read and dropped after the answer, so a client that writes its body after the
/// headers (Python's `http.client` does) reads the answer instead of a reset, and the
/// connection can serve another request.
pub(crate) const MAX_DISCARDED_BODY: usize = 64 * 1024;

/// The most log bytes one XML-RPC log read returns. supervisorctl reads 1600 at a time.
pub(crate) const MAX_LOG_READ: u64 = 1024 * 1024;

/// The largest XML-RPC response, encoded. 16 MiB holds `getAllProcessInfo` for some
/// twenty thousand processes. A `system.multicall` keeps room in it for a fault per call.
pub(crate) const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// The most calls one `system.multicall` may carry, so that a fault for each fits in
/// [`MAX_RESPONSE`] with room to spare.
pub(crate) const MAX_MULTICALL_CALLS: usize = 10_000;

/// The most dashboard event streams open at once: each is a long-lived connection, and
/// together they must leave the listener's connections to other clients.
pub(crate) const MAX_EVENT_STREAMS: usize = 32;

/// How long one dashboard event stream lasts before the server ends it (the browser
/// reopens it), so no stream holds a connection for ever.
pub(crate) const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);
