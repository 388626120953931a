//! The production [`Backend`]: supervisord's XML-RPC and `/logtail` served by calling the
//! daemon's `vigil_rpc::Control` implementation in process, so both protocols run the
//! same code and differ only in this translation.
//!
//! What it owns:
//! - Translating between the method table's types and vigil-rpc's wire types, and
//!   [`ControlError`] into supervisord [`Fault`]s (same codes, same strings).
//! - Paging `read_log` (vigil-rpc caps one reply at `MAX_LOG_CHUNK`) and turning
//!   vigil-rpc's long-poll `tail_follow` into the waiting follow the HTTP layer streams.
//! - Sending the answer to `shutdown`/`restart` before asking for them: the request is
//!   held per connection ([`Connection`]) and handed to the daemon only once the
//!   response bytes were flushed to the socket, or the connection ended. supervisord
//!   answers from its main loop before it acts; without this the daemon could close the
//!   socket under the reply and `supervisorctl shutdown` would report an error.
//!
//! It calls the service through [`SendControl`], the `Send` entry point that vigil-rpc's
//! `impl_send_control!` gives every concrete service, so it stays generic over the
//! service and can be tested with a fake one.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vigil_config::Signal;
use vigil_rpc::{
    Blob, ControlError, ControlRequest, ControlResponse, LogChannel, LogTarget, MAX_LOG_CHUNK,
    NameSpec, SendControl, context_with_timeout,
};

use crate::backend::{
    Backend, ConfigInfo, DaemonState, Facts, FollowFrom, LogFollow, LogSource, ProcessInfo,
    ProcessRef, ProcessResult, Reread, Scope, UpdateReport,
};
use crate::fault::{Fault, FaultCode};

/// The deadline of an in-process call. There is no network to give up on: a
/// `startProcess(wait=True)` or a `stopAllProcesses` waits as long as the processes take,
/// as in supervisord, and ends early only when the client hangs up (the future is dropped).
const CALL_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long one `tail_follow` long-poll waits for output before the follow asks again.
/// Short enough that a follower of a removed process notices within seconds.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// The daemon-wide action a connection asked for and must answer before it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaemonAction {
    Shutdown,
    Restart,
}

/// Where a requested [`DaemonAction`] is in its wait for the response to go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Idle,
    /// Requested; the response is being produced.
    Requested(DaemonAction),
    /// Response bytes were written after the request; the next successful flush sends them.
    Written(DaemonAction),
}

/// The per-connection state shared by the backend and the socket wrapper.
struct Deferred<C> {
    control: C,
    pending: Mutex<Pending>,
}

impl<C: SendControl> Deferred<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // The state is a plain enum: a panic elsewhere cannot leave it half-written.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn request(&self, action: DaemonAction) {
        let mut pending = self.lock();
        // A second request on the same connection before the first went out is the same
        // request; the first one wins, as supervisord's mood only moves forward.
        if *pending == Pending::Idle {
            *pending = Pending::Requested(action);
        }
    }

    fn wrote(&self) {
        let mut pending = self.lock();
        if let Pending::Requested(action) = *pending {
            *pending = Pending::Written(action);
        }
    }

    /// Fires the action if its response is out (`flushed`) or the connection is over.
    fn release(&self, connection_over: bool) {
        let action = {
            let mut pending = self.lock();
            let action = match *pending {
                Pending::Written(action) => action,
                Pending::Requested(action) if connection_over => action,
                _ => return,
            };
            *pending = Pending::Idle;
            action
        };
        let request = match action {
            DaemonAction::Shutdown => ControlRequest::Shutdown {},
            DaemonAction::Restart => ControlRequest::Reload {},
        };
        let call = self.control.clone().call(context_with_timeout(CALL_DEADLINE), request);
        tokio::spawn(async move {
            match call.await {
                Ok(ControlResponse::Shutdown(Ok(())) | ControlResponse::Reload(Ok(()))) => {}
                Ok(ControlResponse::Shutdown(Err(error)) | ControlResponse::Reload(Err(error))) => {
                    tracing::warn!("{action:?} requested over XML-RPC was refused: {error}");
                }
                Ok(_) => tracing::error!("{action:?}: the control service answered another call"),
                Err(error) => tracing::error!("{action:?} requested over XML-RPC failed: {error}"),
            }
        });
    }
}

/// The [`Backend`] of one HTTP connection, over a `Control` service `C`.
pub(crate) struct ControlBackend<C> {
    deferred: Arc<Deferred<C>>,
}

/// A connection's socket, wrapped so that a `shutdown`/`restart` asked on it is sent to
/// the daemon once its response has been flushed.
pub(crate) struct Connection<S, C: SendControl> {
    inner: S,
    deferred: Arc<Deferred<C>>,
}

impl<S, C: SendControl> Drop for Connection<S, C> {
    /// The client is gone or the server ended the connection: an action whose response
    /// could not be confirmed as flushed still happens (the client asked for it).
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            self.deferred.release(true);
        }
    }
}

/// Builds the backend and the wrapped socket for one HTTP connection.
pub(crate) fn connection<S, C: SendControl>(
    stream: S,
    control: C,
) -> (Arc<ControlBackend<C>>, Connection<S, C>) {
    let deferred = Arc::new(Deferred { control, pending: Mutex::new(Pending::Idle) });
    let backend = Arc::new(ControlBackend { deferred: Arc::clone(&deferred) });
    (backend, Connection { inner: stream, deferred })
}

impl<S: AsyncRead + Unpin, C: SendControl> AsyncRead for Connection<S, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, C: SendControl> AsyncWrite for Connection<S, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.deferred.wrote();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.deferred.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            // hyper flushes once the whole response (head and body) is in its buffer.
            this.deferred.release(false);
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A `ControlError` as the fault supervisord would send: same code, same string.
fn fault(error: ControlError) -> Fault {
    let code = match error.code() {
        1 => FaultCode::UnknownMethod,
        2 => FaultCode::IncorrectParameters,
        3 => FaultCode::BadArguments,
        4 => FaultCode::SignatureUnsupported,
        6 => FaultCode::ShutdownState,
        10 => FaultCode::BadName,
        11 => FaultCode::BadSignal,
        20 => FaultCode::NoFile,
        21 => FaultCode::NotExecutable,
        40 => FaultCode::AbnormalTermination,
        50 => FaultCode::SpawnError,
        60 => FaultCode::AlreadyStarted,
        70 => FaultCode::NotRunning,
        80 => FaultCode::Success,
        90 => FaultCode::AlreadyAdded,
        91 => FaultCode::StillRunning,
        92 => FaultCode::CantReread,
        // 30, and any code a newer vigil-rpc might add.
        _ => FaultCode::Failed,
    };
    let text = error.to_string();
    match text.strip_prefix(error.name()).and_then(|rest| rest.strip_prefix(": ")) {
        Some(detail) => Fault::with_detail(code, detail),
        None if code.name() == error.name() => Fault::new(code),
        // A variant this adaptor does not know by code: keep its whole text.
        None => Fault::with_detail(code, text),
    }
}

/// A failure of the in-process call itself (the handler panicked, or was cancelled).
fn service_failed(error: tarpc::ServerError) -> Fault {
    Fault::with_detail(FaultCode::Failed, error.detail)
}

fn mismatched() -> Fault {
    Fault::with_detail(FaultCode::Failed, "the control service answered another call")
}

/// Calls one `Control` method, unpacking its response variant.
macro_rules! call {
    ($self:expr, $variant:ident { $($field:ident : $value:expr),* $(,)? }) => {{
        let request = ControlRequest::$variant { $($field: $value),* };
        let response = $self
            .deferred
            .control
            .clone()
            .call(context_with_timeout(CALL_DEADLINE), request)
            .await
            .map_err(service_failed)?;
        match response {
            ControlResponse::$variant(result) => result.map_err(fault),
            _ => Err(mismatched()),
        }
    }};
}

fn spec(process: &ProcessRef) -> NameSpec {
    NameSpec::Process { group: process.group.clone(), name: process.name.clone() }
}

fn scope_spec(scope: &Scope) -> NameSpec {
    match scope {
        Scope::Group(group) => NameSpec::Group(group.clone()),
        Scope::All => NameSpec::All,
    }
}

fn log_target(source: &LogSource) -> LogTarget {
    match source {
        LogSource::Main => LogTarget::Main,
        LogSource::Process(process, channel) => {
            LogTarget::Process { name: process.namespec(), channel: *channel }
        }
    }
}

/// One result of a single-process call, as the call's outcome.
fn single(results: Vec<vigil_rpc::ProcessResult>) -> Result<(), Fault> {
    match results.into_iter().next() {
        Some(result) => result.error.map_or(Ok(()), |error| Err(fault(error))),
        None => Err(Fault::with_detail(FaultCode::Failed, "no result for the process")),
    }
}

/// Results of a group/all call. A group spec that matched nothing comes back as one
/// nameless `BAD_NAME` result, which supervisord raises as the call's fault.
fn many(results: Vec<vigil_rpc::ProcessResult>) -> Result<Vec<ProcessResult>, Fault> {
    if let [vigil_rpc::ProcessResult { name: None, error: Some(error), .. }] = results.as_slice() {
        return Err(fault(error.clone()));
    }
    Ok(results
        .into_iter()
        .map(|result| ProcessResult {
            process: ProcessRef::new(
                result.group.clone(),
                result.name.unwrap_or_else(|| result.group.clone()),
            ),
            outcome: result.error.map_or(Ok(()), |error| Err(fault(error))),
        })
        .collect())
}

fn offset(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl<C: SendControl> ControlBackend<C> {
    /// supervisord reads process logs from their files only: a channel configured without
    /// one (`stdout_logfile=NONE`) is `NO_FILE: None` for reads and `/logtail`, even though
    /// vigild keeps its recent output for its own clients.
    async fn require_log_file(&self, source: &LogSource) -> Result<(), Fault> {
        let LogSource::Process(process, channel) = source else { return Ok(()) };
        let info = call!(self, ProcessInfo { name: process.namespec() })?;
        let path = match channel {
            LogChannel::Stdout => info.stdout_logfile,
            LogChannel::Stderr => info.stderr_logfile,
        };
        if path.is_empty() { Err(Fault::with_detail(FaultCode::NoFile, "None")) } else { Ok(()) }
    }

    async fn read_slice(
        &self,
        target: &LogTarget,
        start: u64,
        length: u64,
    ) -> Result<vigil_rpc::LogSlice, Fault> {
        call!(
            self,
            ReadLog { target: target.clone(), offset: offset(start), length: offset(length) }
        )
    }
}

impl<C: SendControl> Backend for ControlBackend<C> {
    async fn state(&self) -> Result<DaemonState, Fault> {
        Ok(call!(self, DaemonInfo {})?.state)
    }

    async fn identification(&self) -> Result<String, Fault> {
        Ok(call!(self, DaemonInfo {})?.identification)
    }

    async fn process_info(&self, process: &ProcessRef) -> Result<ProcessInfo, Fault> {
        call!(self, ProcessInfo { name: process.namespec() })
    }

    async fn all_process_info(&self) -> Result<Vec<ProcessInfo>, Fault> {
        call!(self, AllProcessInfo {})
    }

    async fn facts(&self, usage: bool) -> Result<Facts, Fault> {
        call!(self, Facts { usage: usage })
    }

    async fn changes(&self, seen: u64, wait: Duration) -> Result<u64, Fault> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        call!(self, Changes { seen: seen, wait_ms: wait_ms })
    }

    async fn all_config_info(&self) -> Result<Vec<ConfigInfo>, Fault> {
        call!(self, Avail {})
    }

    async fn start_process(&self, process: &ProcessRef, wait: bool) -> Result<(), Fault> {
        single(call!(self, Start { specs: vec![spec(process)], wait: wait })?)
    }

    async fn start_many(&self, scope: &Scope, wait: bool) -> Result<Vec<ProcessResult>, Fault> {
        many(call!(self, Start { specs: vec![scope_spec(scope)], wait: wait })?)
    }

    async fn stop_process(&self, process: &ProcessRef, wait: bool) -> Result<(), Fault> {
        single(call!(self, Stop { specs: vec![spec(process)], wait: wait })?)
    }

    async fn stop_many(&self, scope: &Scope, wait: bool) -> Result<Vec<ProcessResult>, Fault> {
        many(call!(self, Stop { specs: vec![scope_spec(scope)], wait: wait })?)
    }

    async fn restart_processes(
        &self,
        process: Option<&ProcessRef>,
    ) -> Result<Vec<ProcessResult>, Fault> {
        let specs = vec![process.map_or(NameSpec::All, spec)];
        let report = call!(self, Restart { specs: specs, wait: true })?;
        let mut results = many(report.stopped)?;
        results.extend(many(report.started)?);
        Ok(results)
    }

    async fn signal_process(&self, process: &ProcessRef, signal: Signal) -> Result<(), Fault> {
        let signal = signal.number().to_string();
        single(call!(self, Signal { specs: vec![spec(process)], signal: signal })?)
    }

    async fn signal_many(
        &self,
        scope: &Scope,
        signal: Signal,
    ) -> Result<Vec<ProcessResult>, Fault> {
        let signal = signal.number().to_string();
        many(call!(self, Signal { specs: vec![scope_spec(scope)], signal: signal })?)
    }

    async fn reload_config(&self) -> Result<Reread, Fault> {
        call!(self, Reread {})
    }

    async fn update(&self, dry_run: bool) -> Result<UpdateReport, Fault> {
        call!(self, Update { groups: Vec::new(), dry_run: dry_run })
    }

    async fn add_group(&self, group: &str) -> Result<(), Fault> {
        call!(self, AddGroup { name: group.to_owned() })
    }

    async fn remove_group(&self, group: &str) -> Result<(), Fault> {
        call!(self, RemoveGroup { name: group.to_owned() })
    }

    async fn shutdown(&self) -> Result<(), Fault> {
        self.deferred.request(DaemonAction::Shutdown);
        Ok(())
    }

    async fn upgrade(&self, binary: &str) -> Result<String, Fault> {
        let binary = (!binary.is_empty()).then(|| binary.to_owned());
        call!(self, Upgrade { binary: binary })
    }

    async fn restart(&self) -> Result<(), Fault> {
        self.deferred.request(DaemonAction::Restart);
        Ok(())
    }

    async fn send_stdin(&self, process: &ProcessRef, bytes: &[u8]) -> Result<(), Fault> {
        call!(self, SendStdin { name: process.namespec(), data: Blob(bytes.to_vec()) })
    }

    async fn send_remote_comm_event(&self, event_type: &str, data: &str) -> Result<(), Fault> {
        call!(self, SendCommEvent { kind: event_type.to_owned(), data: data.to_owned() })
    }

    async fn log_size(&self, source: &LogSource) -> Result<u64, Fault> {
        self.require_log_file(source).await?;
        // A one-byte read reports the size and every fault a read would.
        Ok(self.read_slice(&log_target(source), 0, 1).await?.size)
    }

    async fn read_log(
        &self,
        source: &LogSource,
        start: u64,
        max_len: Option<u64>,
    ) -> Result<Vec<u8>, Fault> {
        let target = log_target(source);
        // Each reply carries at most MAX_LOG_CHUNK bytes: page until the range is read.
        let first = match max_len {
            Some(0) => return Ok(Vec::new()),
            Some(length) => self.read_slice(&target, start, length.min(MAX_LOG_CHUNK)).await?,
            None => {
                call!(self, ReadLog { target: target.clone(), offset: offset(start), length: 0 })?
            }
        };
        // "To the end" means the end seen by the first read: a growing log cannot keep
        // this call paging forever.
        let wanted_end = max_len.map_or(first.size, |length| start.saturating_add(length));
        let mut bytes = first.bytes.0;
        let mut next = first.end;
        while next < wanted_end {
            let page =
                self.read_slice(&target, next, (wanted_end - next).min(MAX_LOG_CHUNK)).await?;
            if page.end <= next {
                // The log shrank under us (cleared or rotated): what we have is all there is.
                break;
            }
            bytes.extend_from_slice(&page.bytes.0);
            next = page.end;
        }
        Ok(bytes)
    }

    async fn follow_log(&self, source: &LogSource, from: FollowFrom) -> Result<LogFollow, Fault> {
        let target = log_target(source);
        let wait_ms = u64::try_from(FOLLOW_WAIT.as_millis()).unwrap_or(u64::MAX);
        let requested = match from {
            FollowFrom::Tail(count) => {
                self.require_log_file(source).await?;
                let reply = call!(
                    self,
                    TailFollow {
                        target: target,
                        offset: -offset(count),
                        max_bytes: MAX_LOG_CHUNK,
                        wait_ms: 0,
                    }
                )?;
                return Ok(LogFollow { bytes: reply.bytes.0, truncated: false, next: reply.next });
            }
            FollowFrom::Position(position) => position,
        };
        loop {
            let reply = call!(
                self,
                TailFollow {
                    target: target.clone(),
                    offset: offset(requested),
                    max_bytes: MAX_LOG_CHUNK,
                    wait_ms: wait_ms,
                }
            )?;
            let truncated = reply.skipped(requested) > 0;
            if truncated || !reply.bytes.0.is_empty() {
                return Ok(LogFollow { bytes: reply.bytes.0, truncated, next: reply.next });
            }
        }
    }

    async fn clear_process_logs(&self, process: &ProcessRef) -> Result<(), Fault> {
        single(call!(self, ClearLogs { specs: vec![spec(process)] })?)
    }

    async fn clear_main_log(&self) -> Result<(), Fault> {
        call!(self, ClearMainLog {})
    }
}

#[cfg(test)]
mod tests;
