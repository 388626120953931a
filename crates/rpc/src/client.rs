//! Client-side helpers over [`ControlClient`]: one error type for "the call
//! failed" whatever the layer, and paging for log reads larger than one reply.

use std::time::Duration;

use tarpc::client::RpcError;

use crate::transport::context_with_timeout;
use crate::{ControlClient, ControlError, LogTarget, MAX_LOG_CHUNK};

/// A failed call: either the transport (deadline, lost connection) or a fault
/// from the daemon.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    /// The transport failed: deadline, lost connection.
    Rpc(#[from] RpcError),
    #[error("{0}")]
    /// The daemon answered with a fault.
    Fault(#[from] ControlError),
}

/// Flattens tarpc's nested result.
pub fn flatten<T>(result: Result<Result<T, ControlError>, RpcError>) -> Result<T, CallError> {
    Ok(result??)
}

/// Reads a log with `readLog`'s `(offset, length)` rules, however large the
/// range, by following [`LogSlice`](crate::LogSlice) `end`s until the range is
/// complete. Each reply carries at most [`MAX_LOG_CHUNK`] bytes, so no frame
/// comes near tarpc's 8 MiB cap. `per_call` is the deadline of each page.
pub async fn read_log_all(
    client: &ControlClient,
    target: &LogTarget,
    offset: i64,
    length: i64,
    per_call: Duration,
) -> Result<Vec<u8>, CallError> {
    let first = flatten(
        client.read_log(context_with_timeout(per_call), target.clone(), offset, length).await,
    )?;
    // Where the caller's range ends, in file offsets: a fixed length ends at
    // start + length; "to EOF" (length 0) ends at the size seen by the first read,
    // so a log that keeps growing cannot keep us paging forever.
    let wanted_end =
        if length > 0 { first.start.saturating_add(length.unsigned_abs()) } else { first.size };
    let mut out = first.bytes.0;
    let mut next = first.end;
    while next < wanted_end {
        let remaining = (wanted_end - next).min(MAX_LOG_CHUNK);
        let page = flatten(
            client
                .read_log(
                    context_with_timeout(per_call),
                    target.clone(),
                    i64::try_from(next).unwrap_or(i64::MAX),
                    i64::try_from(remaining).unwrap_or(i64::MAX),
                )
                .await,
        )?;
        if page.end <= next {
            // The file shrank (cleared or rotated) under us: stop with what we have.
            break;
        }
        out.extend_from_slice(&page.bytes.0);
        next = page.end;
    }
    Ok(out)
}
