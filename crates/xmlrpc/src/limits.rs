//! The limits that bound what one HTTP client can make vigild read, wait for, hold and
//! write, whether or not it has authenticated. They are fixed here, in one place, so the
//! documentation of the configuration can quote them and a later config key can replace
//! any of them. A leaf: it imports nothing of this crate.
//!
//! | limit | value | what happens |
//! | --- | --- | --- |
//! | [`MAX_REQUEST_BODY`] | 4 MiB | a larger body is answered 413 before it is read (supervisord buffers any size) |
//! | [`MAX_DISCARDED_BODY`] | 64 KiB | what is read and dropped of a body answered without it (401, 400, 404); more closes the connection |
//!
//! Credentials are checked as soon as the head is read: an unauthenticated client never
//! makes vigild read a body (beyond [`MAX_DISCARDED_BODY`], after the 401 is sent).

/// The largest XML-RPC request body accepted. supervisorctl's largest request is a
/// `sendProcessStdin` line; 4 MiB leaves room for scripted multicalls and stdin payloads.
pub(crate) const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// How much of a body that is answered without being used (a 401, a wrong method or
/// path) is read and dropped after the answer, so a client that writes its body after the
/// headers (Python's `http.client` does) reads the answer instead of a reset, and the
/// connection can serve another request.
pub(crate) const MAX_DISCARDED_BODY: usize = 64 * 1024;
