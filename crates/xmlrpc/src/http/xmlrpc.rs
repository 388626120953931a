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
use crate::fault::{Fault, FaultCode};
use crate::limits::MAX_RESPONSE;

mod args;
pub(crate) mod codec;
mod methods;
mod structs;

/// Answers one request body: 400 when it is not a `<methodCall>`, otherwise a 200 carrying
/// the result or the fault; a result that encodes to more than [`MAX_RESPONSE`] is the
/// fault `FAILED` instead.
pub(crate) async fn answer<B: Backend>(body: &[u8], backend: &B) -> Response<Body> {
    let Ok(call) = codec::decode_call(body) else {
        return plain(StatusCode::BAD_REQUEST);
    };
    let xml = match methods::call(backend, &call.method, &call.params).await {
        Ok(value) => codec::encode_response(&value),
        Err(fault) => codec::encode_fault(&fault),
    };
    let xml = if xml.len() > MAX_RESPONSE {
        let detail =
            format!("response too large: the result passes the limit of {MAX_RESPONSE} bytes");
        codec::encode_fault(&Fault::with_detail(FaultCode::Failed, detail))
    } else {
        xml
    };
    full("text/xml", xml)
}
