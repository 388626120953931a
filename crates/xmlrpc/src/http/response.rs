//! The response body type every handler answers with, and the plain-text error answer.
//! A leaf of the HTTP layer: the router and the handlers share it without importing
//! each other.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// A whole body or a stream (the log tails), boxed so every route has one response type.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A response whose body is `bytes`, with the given content type.
pub(crate) fn full(content_type: &'static str, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(bytes.into()).boxed_unsync());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A body-less answer with the status line's reason as text, for errors.
pub(crate) fn plain(status: StatusCode) -> Response<Body> {
    let mut response = full("text/plain;charset=utf-8", format!("{status}\n"));
    *response.status_mut() = status;
    response
}
