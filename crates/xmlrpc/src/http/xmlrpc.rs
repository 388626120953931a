//! The XML-RPC endpoint (`POST /RPC2`): a `<methodCall>` body in, a `<methodResponse>` out.
//!
//! - [`codec`]: the wire format (on the `dxr` crate), made safe for any bytes a log may
//!   contain.
//! - [`methods`]: the method table with supervisord's names, faults and behaviour, each
//!   method declared once with its signature and handler; [`args`] turns a handler's
//!   argument type into its signature and argument checks, [`structs`] builds the structs
//!   supervisord answers with.

use hyper::{Response, StatusCode};

use super::response::{Body, full, plain};
use crate::backend::Backend;

mod args;
mod codec;
mod methods;
mod structs;

/// Answers one request body: 400 when it is not a `<methodCall>`, otherwise a 200 carrying
/// the result or the fault.
pub(crate) async fn answer<B: Backend>(body: &[u8], backend: &B) -> Response<Body> {
    let Ok(call) = codec::decode_call(body) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    let xml = match methods::call(backend, &call.method, &call.params).await {
        Ok(value) => codec::encode_response(&value),
        Err(fault) => codec::encode_fault(&fault),
    };
    full("text/xml", xml)
}
