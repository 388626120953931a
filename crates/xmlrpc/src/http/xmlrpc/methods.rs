//! The method table: every `supervisor.*` (API 3.0) and `system.*` method, and Vigil's
//! `vigil.upgrade`, with supervisord's
//! names, aliases, signatures, argument rules, fault paths and result shapes, dispatched onto
//! a [`Backend`].
//!
//! Each method is declared once, in [`table`]: its name, its return type, its handler and
//! its help. The handler's argument type (a tuple of [`Param`](super::args::Param)s) is its
//! signature: it gives `system.methodSignature` its parameter types and checks every call's
//! argument count and types before the handler runs. `system.listMethods`,
//! `system.methodSignature` and `system.methodHelp` read the same table.
//!
//! Rules taken from supervisord:
//! - A method name must be exactly `namespace.method`, and the method part must not start
//!   with `_`; anything else is `UNKNOWN_METHOD`. This is the CVE-2017-11610 fix, and here it
//!   is also structural: only names in the table exist.
//! - A wrong argument count or type is `INCORRECT_PARAMETERS` (see `args.rs`).
//! - Every `supervisor.*` method except `sendRemoteCommEvent` first fails with
//!   `SHUTDOWN_STATE` while the daemon is restarting or shutting down (after argument
//!   checking, as Python binds arguments before the body runs). The signal group methods
//!   check again after signalling, as supervisord does.
//! - `system.multicall` runs its calls in order, returns their raw results (not wrapped in
//!   one-element arrays), reports faults as `{faultCode, faultString}` structs and refuses a
//!   nested `system.multicall`.
//!
//! Deliberate differences, each an improvement no client can trip over:
//! - Integers that do not fit the XML-RPC `int` (sizes, timestamps, byte limits) are capped
//!   to it, where supervisord fails the whole call with an `OverflowError`.
//! - Log bytes that are not UTF-8 are sent with U+FFFD in their place instead of failing.
//! - `clearAllProcessLogs` reports processes in group/name order rather than by priority.

use std::collections::BTreeMap;
use std::future::Future;

use dxr::Value;
use futures::future::BoxFuture;
use jiff::tz::TimeZone;
use vigil_config::Signal;

use super::args::{Array, Chars, Params, SignalArg, Wait, incorrect};
use super::codec::{encode_response, encoded_len};
use super::structs::{
    capped, config_struct, fault_struct, info_struct, member, now_epoch, results, string,
};
use crate::backend::{
    Backend, DaemonState, LogChannel, LogSource, ProcessInfo, ProcessRef, ProcessResult,
    ProcessState, Scope, Target,
};
use crate::fault::{Fault, FaultCode};
use crate::limits::{MAX_LOG_READ, MAX_MULTICALL_CALLS, MAX_RESPONSE};

/// The version `getSupervisorVersion` (and `supervisorctl version`) reports: vigild's own.
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A handler with its arguments still untyped: checks them, then runs.
type Handler<B> = for<'a> fn(&'a B, &'a [Value]) -> BoxFuture<'a, Result<Value, Fault>>;

/// One method: what `system.listMethods`, `system.methodSignature` and `system.methodHelp`
/// report, and what a call runs.
pub(crate) struct Method<B> {
    pub(crate) name: &'static str,
    returns: &'static str,
    /// The parameter types, from the handler's argument type.
    params: &'static [&'static str],
    pub(crate) help: &'static str,
    run: Handler<B>,
}

impl<B> Method<B> {
    /// `[return type, parameter types...]`, as supervisord's `methodSignature` answers.
    pub(crate) fn signature(&self) -> Vec<&'static str> {
        std::iter::once(self.returns).chain(self.params.iter().copied()).collect()
    }
}

/// The parameter types of `handler`, read from its argument type.
fn params_of<'a, B: 'a, P, F, Fut>(_handler: &F) -> &'static [&'static str]
where
    P: Params<'a>,
    F: Fn(&'a B, P) -> Fut,
{
    P::TYPES
}

/// Checks `values` against the handler's argument type, then runs it.
fn run<'a, B, P, F, Fut>(
    handler: F,
    backend: &'a B,
    values: &'a [Value],
) -> BoxFuture<'a, Result<Value, Fault>>
where
    P: Params<'a>,
    F: Fn(&'a B, P) -> Fut,
    Fut: Future<Output = Result<Value, Fault>> + Send + 'a,
{
    match P::parse(values) {
        Ok(params) => Box::pin(handler(backend, params)),
        Err(fault) => Box::pin(std::future::ready(Err(fault))),
    }
}

/// A table entry: `"name" -> "return type", handler, "help"`.
macro_rules! method {
    ($name:literal -> $returns:literal, $handler:ident, $help:literal) => {
        Method {
            name: $name,
            returns: $returns,
            params: params_of(&$handler::<B>),
            help: $help,
            run: |backend, values| run($handler::<B>, backend, values),
        }
    };
}

/// Every method vigild serves: the 37 `supervisor.*` names of supervisord 4.3 (aliases
/// included), Vigil's `vigil.upgrade` and the four `system.*` methods.
pub(crate) fn table<B: Backend>() -> Vec<Method<B>> {
    vec![
        method!(
            "supervisor.getAPIVersion" -> "string", api_version,
            "Return the XML-RPC API version, '3.0'.\n@return string version"
        ),
        method!(
            "supervisor.getVersion" -> "string", api_version,
            "Alias of getAPIVersion.\n@return string version"
        ),
        method!(
            "supervisor.getSupervisorVersion" -> "string", supervisor_version,
            "Return the version of the daemon (vigild).\n@return string version"
        ),
        method!(
            "supervisor.getIdentification" -> "string", identification,
            "Return the configured identifier of this daemon.\n@return string identifier"
        ),
        method!(
            "supervisor.getState" -> "struct", get_state,
            "Return the daemon state.\n@return struct {int statecode, string statename}"
        ),
        method!(
            "supervisor.getPID" -> "int", get_pid,
            "Return the daemon's process id.\n@return int pid"
        ),
        method!(
            "supervisor.readLog" -> "string", read_main_log,
            "Read length bytes of the main log from offset; a negative offset with length 0 reads the last -offset bytes.\n@param int offset\n@param int length\n@return string bytes"
        ),
        method!(
            "supervisor.readMainLog" -> "string", read_main_log,
            "Alias of readLog.\n@param int offset\n@param int length\n@return string bytes"
        ),
        method!(
            "supervisor.clearLog" -> "boolean", clear_main_log,
            "Delete and reopen the main log.\n@return boolean true"
        ),
        method!(
            "supervisor.shutdown" -> "boolean", shutdown,
            "Stop every process and exit.\n@return boolean true"
        ),
        method!(
            "supervisor.restart" -> "boolean", restart,
            "Stop every process, re-read the config and start again, keeping the pid.\n@return boolean true"
        ),
        method!(
            "supervisor.reloadConfig" -> "array", reload_config,
            "Re-read the config and report the groups added, changed and removed, applying nothing.\n@return array [[added, changed, removed]]"
        ),
        method!(
            "supervisor.addProcessGroup" -> "boolean", add_group,
            "Activate a group from the last-read config.\n@param string name\n@return boolean true"
        ),
        method!(
            "supervisor.removeProcessGroup" -> "boolean", remove_group,
            "Deactivate a group whose processes are all stopped.\n@param string name\n@return boolean true"
        ),
        method!(
            "supervisor.startProcess" -> "boolean", start_process,
            "Start a process ('group:*' starts the group); with wait, return once it is RUNNING.\n@param string name\n@param boolean wait\n@return boolean true"
        ),
        method!(
            "supervisor.startProcessGroup" -> "array", start_group,
            "Start every process of a group that is not running.\n@param string name\n@param boolean wait\n@return array result structs"
        ),
        method!(
            "supervisor.startAllProcesses" -> "array", start_all,
            "Start every process that is not running, in priority order.\n@param boolean wait\n@return array result structs"
        ),
        method!(
            "supervisor.stopProcess" -> "boolean", stop_process,
            "Stop a process ('group:*' stops the group); with wait, return once it has stopped.\n@param string name\n@param boolean wait\n@return boolean true"
        ),
        method!(
            "supervisor.stopProcessGroup" -> "array", stop_group,
            "Stop every running process of a group.\n@param string name\n@param boolean wait\n@return array result structs"
        ),
        method!(
            "supervisor.stopAllProcesses" -> "array", stop_all,
            "Stop every running process, in reverse priority order.\n@param boolean wait\n@return array result structs"
        ),
        method!(
            "supervisor.signalProcess" -> "boolean", signal_process,
            "Send a signal (name or number) to a process.\n@param string name\n@param string signal\n@return boolean true"
        ),
        method!(
            "supervisor.signalProcessGroup" -> "array", signal_group,
            "Send a signal to every running process of a group.\n@param string name\n@param string signal\n@return array result structs"
        ),
        method!(
            "supervisor.signalAllProcesses" -> "array", signal_all,
            "Send a signal to every running process.\n@param string signal\n@return array result structs"
        ),
        method!(
            "supervisor.getProcessInfo" -> "struct", process_info,
            "Return the state of one process.\n@param string name\n@return struct process info"
        ),
        method!(
            "supervisor.getAllProcessInfo" -> "array", all_process_info,
            "Return the state of every process, sorted by group and name.\n@return array process info structs"
        ),
        method!(
            "supervisor.getAllConfigInfo" -> "array", all_config_info,
            "Return the configuration of every process of the last-read config.\n@return array config structs"
        ),
        method!(
            "supervisor.readProcessStdoutLog" -> "string", read_stdout,
            "Read a process's stdout log, with readLog's offset rules.\n@param string name\n@param int offset\n@param int length\n@return string bytes"
        ),
        method!(
            "supervisor.readProcessLog" -> "string", read_stdout,
            "Alias of readProcessStdoutLog.\n@param string name\n@param int offset\n@param int length\n@return string bytes"
        ),
        method!(
            "supervisor.readProcessStderrLog" -> "string", read_stderr,
            "Read a process's stderr log, with readLog's offset rules.\n@param string name\n@param int offset\n@param int length\n@return string bytes"
        ),
        method!(
            "supervisor.tailProcessStdoutLog" -> "array", tail_stdout,
            "Return up to length bytes from the end of a process's stdout log, the log size and whether bytes were skipped.\n@param string name\n@param int offset\n@param int length\n@return array [string bytes, int offset, boolean overflow]"
        ),
        method!(
            "supervisor.tailProcessLog" -> "array", tail_stdout,
            "Alias of tailProcessStdoutLog.\n@param string name\n@param int offset\n@param int length\n@return array [string bytes, int offset, boolean overflow]"
        ),
        method!(
            "supervisor.tailProcessStderrLog" -> "array", tail_stderr,
            "Like tailProcessStdoutLog, for stderr.\n@param string name\n@param int offset\n@param int length\n@return array [string bytes, int offset, boolean overflow]"
        ),
        method!(
            "supervisor.clearProcessLogs" -> "boolean", clear_process_logs,
            "Delete and reopen a process's stdout and stderr logs.\n@param string name\n@return boolean true"
        ),
        method!(
            "supervisor.clearProcessLog" -> "boolean", clear_process_logs,
            "Alias of clearProcessLogs.\n@param string name\n@return boolean true"
        ),
        method!(
            "supervisor.clearAllProcessLogs" -> "array", clear_all_process_logs,
            "Clear the logs of every process.\n@return array result structs"
        ),
        method!(
            "supervisor.sendProcessStdin" -> "boolean", send_stdin,
            "Write characters (sent as UTF-8) to a process's stdin.\n@param string name\n@param string chars\n@return boolean true"
        ),
        method!(
            "supervisor.sendRemoteCommEvent" -> "boolean", send_remote_comm_event,
            "Emit a REMOTE_COMMUNICATION event to listeners; allowed during shutdown.\n@param string type\n@param string data\n@return boolean true"
        ),
        method!(
            "vigil.upgrade" -> "string", upgrade,
            "Replace vigild's binary while every process keeps running (same pid): check the vigild at path (vigild's own path when empty), answer its handover line, then hand over.\n@param string path\n@return string the new vigild's pre-flight line"
        ),
        method!(
            "system.listMethods" -> "array", list_methods,
            "Return the names of every method, sorted.\n@return array method names"
        ),
        method!(
            "system.methodHelp" -> "string", method_help,
            "Return the documentation of a method.\n@param string name\n@return string help"
        ),
        method!(
            "system.methodSignature" -> "array", method_signature,
            "Return a method's signature as [return type, parameter types...].\n@param string name\n@return array signature"
        ),
        method!(
            "system.multicall" -> "array", multicall,
            "Run calls [{methodName, params}] in order and return their results; a fault becomes {faultCode, faultString}.\n@param array calls\n@return array results"
        ),
    ]
}

/// Looks a method up by the name a client sent, applying supervisord's `traverse` rules.
fn lookup<B: Backend>(method: &str) -> Result<Method<B>, Fault> {
    let unknown = || Fault::new(FaultCode::UnknownMethod);
    let (namespace, name) = method.split_once('.').ok_or_else(unknown)?;
    if name.contains('.') || name.starts_with('_') || namespace.is_empty() {
        return Err(unknown());
    }
    table::<B>().into_iter().find(|spec| spec.name == method).ok_or_else(unknown)
}

/// Runs one XML-RPC call: what the HTTP layer sends back as a response or a fault.
pub(crate) async fn call<B: Backend>(
    backend: &B,
    method: &str,
    params: &[Value],
) -> Result<Value, Fault> {
    let method = lookup::<B>(method)?;
    (method.run)(backend, params).await
}

/// `system.multicall`: the calls run one after another; each result or fault is recorded and
/// the next call runs regardless, until the results would pass [`MAX_RESPONSE`]: the call
/// whose result would pass it gets a fault in its place, and the calls after it are not run
/// and get a fault each. Room for those faults is kept from the start, so the response
/// stays within the limit whatever the calls return.
async fn multicall<B: Backend>(backend: &B, (Array(calls),): (Array<'_>,)) -> Result<Value, Fault> {
    if calls.len() > MAX_MULTICALL_CALLS {
        let detail = format!("more than {MAX_MULTICALL_CALLS} calls in one system.multicall");
        return Err(Fault::with_detail(FaultCode::IncorrectParameters, detail));
    }
    let too_large = fault_struct(&Fault::with_detail(
        FaultCode::Failed,
        format!("response too large: this result would pass the limit of {MAX_RESPONSE} bytes"),
    ));
    let not_run = fault_struct(&Fault::with_detail(
        FaultCode::Failed,
        format!("not run: the response reached its limit of {MAX_RESPONSE} bytes"),
    ));
    // Every call has a slot its fault fits in; `room` is what is left beyond the slots.
    let slot = encoded_len(&too_large).max(encoded_len(&not_run));
    let envelope = encode_response(&Value::Array(Vec::new())).len();
    let Some(mut room) = MAX_RESPONSE.checked_sub(envelope + calls.len() * slot) else {
        return Err(Fault::with_detail(FaultCode::Failed, "too many calls for the response limit"));
    };
    let mut results = Vec::with_capacity(calls.len());
    let mut full = false;
    for entry in calls {
        if full {
            results.push(not_run.clone());
            continue;
        }
        let outcome = match multicall_entry(entry) {
            Ok(("system.multicall", _)) => Err(Fault::with_detail(
                FaultCode::IncorrectParameters,
                "Recursive system.multicall forbidden",
            )),
            Ok((name, params)) => call(backend, name, params).await,
            Err(fault) => Err(fault),
        };
        let value = match outcome {
            Ok(value) => value,
            Err(fault) => fault_struct(&fault),
        };
        let size = encoded_len(&value);
        if size <= slot + room {
            room = room + slot - size;
            results.push(value);
        } else {
            full = true;
            results.push(too_large.clone());
        }
    }
    Ok(Value::Array(results))
}

/// Unpacks `{methodName, params}`; `params` may be missing (no arguments).
fn multicall_entry(entry: &Value) -> Result<(&str, &[Value]), Fault> {
    let Value::Struct(members) = entry else { return Err(incorrect()) };
    let name = match members.get("methodName") {
        Some(Value::String(name)) => name.as_str(),
        Some(_) => return Err(incorrect()),
        None => return Err(Fault::with_detail(FaultCode::IncorrectParameters, "No methodName")),
    };
    let params = match members.get("params") {
        Some(Value::Array(params)) => params.as_slice(),
        Some(_) => return Err(incorrect()),
        None => &[],
    };
    Ok((name, params))
}

async fn list_methods<B: Backend>(_: &B, (): ()) -> Result<Value, Fault> {
    let mut names: Vec<&str> = table::<B>().iter().map(|spec| spec.name).collect();
    names.sort_unstable();
    Ok(Value::Array(names.into_iter().map(string).collect()))
}

/// The entry `system.methodHelp` and `system.methodSignature` describe.
fn described<B: Backend>(name: &str) -> Result<Method<B>, Fault> {
    table::<B>()
        .into_iter()
        .find(|candidate| candidate.name == name)
        .ok_or(Fault::new(FaultCode::SignatureUnsupported))
}

async fn method_help<B: Backend>(_: &B, (name,): (&str,)) -> Result<Value, Fault> {
    Ok(string(described::<B>(name)?.help))
}

async fn method_signature<B: Backend>(_: &B, (name,): (&str,)) -> Result<Value, Fault> {
    Ok(Value::Array(described::<B>(name)?.signature().into_iter().map(string).collect()))
}

/// A signal argument as `BAD_SIGNAL`'s detail shows it.
fn signal_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Integer(number) => number.to_string(),
        _ => String::new(),
    }
}

/// supervisord's `_update`: no process method runs while the daemon is going away.
async fn ensure_running<B: Backend>(backend: &B) -> Result<DaemonState, Fault> {
    match backend.state().await? {
        DaemonState::Restarting | DaemonState::Shutdown => {
            Err(Fault::new(FaultCode::ShutdownState))
        }
        state @ (DaemonState::Running | DaemonState::Fatal) => Ok(state),
    }
}

/// A single-process method needs a process; `group:*` there is `BAD_NAME`.
fn process_target(namespec: &str) -> Result<ProcessRef, Fault> {
    match Target::parse(namespec) {
        Target::Process(process) => Ok(process),
        Target::Group(_) => Err(Fault::with_detail(FaultCode::BadName, namespec)),
    }
}

/// supervisord names the process in a fault as the client spelled it (`web` rather than
/// `web:web`); the backend knows only the canonical namespec, so respell its detail.
fn respell(fault: Fault, process: &ProcessRef, as_sent: &str) -> Fault {
    match &fault.detail {
        Some(detail) if *detail == process.namespec() && detail != as_sent => {
            Fault::with_detail(fault.code, as_sent)
        }
        _ => fault,
    }
}

/// The signal an argument names (a name in any case, with or without `SIG`, or a
/// number), read as [`Signal::parse`] reads `stopsignal=`.
fn signal_of(value: &Value) -> Option<Signal> {
    Signal::parse(&signal_text(value)).ok()
}

/// How a `readLog`-style `(offset, length)` pair selects bytes (supervisord's `readFile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadRange {
    /// The last `n` bytes.
    Last(u64),
    /// From `offset` to the end.
    From(u64),
    /// `length` bytes from `offset`.
    Slice { offset: u64, length: u64 },
}

fn read_range(offset: i32, length: i32) -> Result<ReadRange, Fault> {
    let bad = || Fault::new(FaultCode::BadArguments);
    let length = u64::try_from(length).map_err(|_| bad())?;
    match u64::try_from(offset) {
        Err(_) if length == 0 => Ok(ReadRange::Last(u64::from(offset.unsigned_abs()))),
        Err(_) => Err(bad()),
        Ok(offset) if length == 0 => Ok(ReadRange::From(offset)),
        Ok(offset) => Ok(ReadRange::Slice { offset, length }),
    }
}

/// `readLog` / `readProcessStdoutLog`: the log must exist (`BAD_NAME` and `NO_FILE` come
/// before `BAD_ARGUMENTS`, as in supervisord), then the range is read, at most
/// [`MAX_LOG_READ`] bytes of it.
async fn read_log<B: Backend>(
    backend: &B,
    source: &LogSource,
    offset: i32,
    length: i32,
) -> Result<Value, Fault> {
    let size = backend.log_size(source).await?;
    // At most MAX_LOG_READ bytes: a range keeps its start, a read of the last bytes its end.
    let (start, length) = match read_range(offset, length)? {
        ReadRange::Last(count) => {
            let count = count.min(MAX_LOG_READ);
            (size.saturating_sub(count), count)
        }
        ReadRange::From(start) => (start, MAX_LOG_READ),
        ReadRange::Slice { offset, length } => (offset, length.min(MAX_LOG_READ)),
    };
    let bytes = backend.read_log(source, start, Some(length)).await?;
    Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Which bytes `tailProcessStdoutLog(offset, length)` returns for a log of `size` bytes:
/// `(start, length, overflow)`, with supervisord's `tailFile` arithmetic step for step
/// (including its treatment of negative arguments, which it does not reject).
fn tail_window(size: i64, offset: i64, length: i64) -> (i64, i64, bool) {
    let (mut offset, mut length, mut overflow) = (offset, length, false);
    if size > offset + length {
        overflow = true;
        offset = size - 1;
    }
    if offset + length > size {
        if offset > size - 1 {
            length = 0;
        }
        offset = size - length;
    }
    (offset.max(0), length.max(0), overflow)
}

async fn tail_log<B: Backend>(
    backend: &B,
    source: &LogSource,
    offset: i32,
    length: i32,
) -> Result<Value, Fault> {
    let tail = |bytes: &[u8], offset: i64, overflow: bool| {
        Value::Array(vec![
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
            Value::Integer(capped(offset)),
            Value::Boolean(overflow),
        ])
    };
    let size = match backend.log_size(source).await {
        Ok(size) => i64::try_from(size).unwrap_or(i64::MAX),
        // No log file is not an error for tail: supervisorctl polls before the first write.
        Err(fault) if fault.code == FaultCode::NoFile => return Ok(tail(b"", 0, false)),
        Err(fault) => return Err(fault),
    };
    // At most MAX_LOG_READ bytes: a longer tail is a shorter one, with `overflow` set.
    let length = i64::from(length).min(i64::try_from(MAX_LOG_READ).unwrap_or(i64::MAX));
    let (start, count, overflow) = tail_window(size, i64::from(offset), length);
    if count == 0 {
        return Ok(tail(b"", size, overflow));
    }
    // The window is non-negative by construction.
    let (start, count) = (start.unsigned_abs(), count.unsigned_abs());
    match backend.read_log(source, start, Some(count)).await {
        Ok(bytes) => Ok(tail(&bytes, size, overflow)),
        // supervisord answers a failed read with an empty tail rather than a fault.
        Err(fault) if fault.code == FaultCode::Failed => Ok(tail(b"", i64::from(offset), false)),
        Err(fault) => Err(fault),
    }
}

/// The processes of `scope` a signal would be sent to, each failing with `BAD_SIGNAL`:
/// what supervisord answers for a group signal with an unknown signal, since it signals
/// each running process in turn and each one raises.
async fn bad_signal_results<B: Backend>(
    backend: &B,
    scope: &Scope,
    signal: &Value,
) -> Result<Vec<ProcessResult>, Fault> {
    let mut infos = backend.all_process_info().await?;
    if let Scope::Group(group) = scope {
        infos.retain(|info| info.group == *group);
        if infos.is_empty() {
            return Err(Fault::with_detail(FaultCode::BadName, group.as_str()));
        }
    }
    sort_by_name(&mut infos);
    let detail = signal_text(signal);
    Ok(infos
        .into_iter()
        .filter(|info| {
            matches!(
                info.state,
                ProcessState::Starting | ProcessState::Running | ProcessState::Backoff
            )
        })
        .map(|info| ProcessResult {
            process: ProcessRef::new(info.group, info.name),
            outcome: Err(Fault::with_detail(FaultCode::BadSignal, detail.clone())),
        })
        .collect())
}

/// Processes in supervisord's listing order: by group, then by name.
fn sort_by_name(infos: &mut [ProcessInfo]) {
    infos.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
}

/// `start*`/`stop*` for a group or every process: one result per process acted on.
async fn start_or_stop_many<B: Backend>(
    backend: &B,
    start: bool,
    scope: &Scope,
    wait: bool,
) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let outcome = if start {
        backend.start_many(scope, wait).await?
    } else {
        backend.stop_many(scope, wait).await?
    };
    Ok(results(&outcome))
}

/// `startProcess`/`stopProcess`: one process, or a group for `group:*`.
async fn start_or_stop_one<B: Backend>(
    backend: &B,
    start: bool,
    name: &str,
    wait: bool,
) -> Result<Value, Fault> {
    let process = match Target::parse(name) {
        Target::Group(group) => {
            return start_or_stop_many(backend, start, &Scope::Group(group), wait).await;
        }
        Target::Process(process) => process,
    };
    ensure_running(backend).await?;
    let outcome = if start {
        backend.start_process(&process, wait).await
    } else {
        backend.stop_process(&process, wait).await
    };
    outcome.map_err(|fault| respell(fault, &process, name))?;
    Ok(Value::Boolean(true))
}

async fn signal_many<B: Backend>(
    backend: &B,
    scope: Scope,
    signal: &Value,
) -> Result<Value, Fault> {
    if let Scope::Group(_) = scope {
        ensure_running(backend).await?;
    }
    let outcome = match signal_of(signal) {
        Some(parsed) => backend.signal_many(&scope, parsed).await?,
        None => bad_signal_results(backend, &scope, signal).await?,
    };
    // supervisord checks its state again once the signals are out.
    ensure_running(backend).await?;
    Ok(results(&outcome))
}

// The handlers, one per method (aliases share theirs). Each takes its checked arguments.

async fn api_version<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    Ok(string(vigil_rpc::API_VERSION))
}

async fn supervisor_version<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    Ok(string(SERVER_VERSION))
}

async fn identification<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    Ok(string(backend.identification().await?))
}

async fn get_state<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    let state = ensure_running(backend).await?;
    Ok(Value::Struct(BTreeMap::from([
        member("statecode", Value::Integer(state.code())),
        member("statename", string(state.name())),
    ])))
}

async fn get_pid<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    Ok(Value::Integer(capped(i64::from(std::process::id()))))
}

async fn read_main_log<B: Backend>(
    backend: &B,
    (offset, length): (i32, i32),
) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    read_log(backend, &LogSource::Main, offset, length).await
}

async fn clear_main_log<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    backend.clear_main_log().await?;
    Ok(Value::Boolean(true))
}

async fn shutdown<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    backend.shutdown().await?;
    Ok(Value::Boolean(true))
}

async fn restart<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    backend.restart().await?;
    Ok(Value::Boolean(true))
}

async fn upgrade<B: Backend>(backend: &B, (binary,): (&str,)) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    Ok(string(backend.upgrade(binary).await?))
}

async fn reload_config<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let diff = backend.reload_config().await?;
    let names = |names: Vec<String>| Value::Array(names.into_iter().map(string).collect());
    Ok(Value::Array(vec![Value::Array(vec![
        names(diff.added),
        names(diff.changed),
        names(diff.removed),
    ])]))
}

async fn add_group<B: Backend>(backend: &B, (group,): (&str,)) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    backend.add_group(group).await?;
    Ok(Value::Boolean(true))
}

async fn remove_group<B: Backend>(backend: &B, (group,): (&str,)) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    backend.remove_group(group).await?;
    Ok(Value::Boolean(true))
}

async fn start_process<B: Backend>(
    backend: &B,
    (name, Wait(wait)): (&str, Wait),
) -> Result<Value, Fault> {
    start_or_stop_one(backend, true, name, wait).await
}

async fn stop_process<B: Backend>(
    backend: &B,
    (name, Wait(wait)): (&str, Wait),
) -> Result<Value, Fault> {
    start_or_stop_one(backend, false, name, wait).await
}

async fn start_group<B: Backend>(
    backend: &B,
    (group, Wait(wait)): (&str, Wait),
) -> Result<Value, Fault> {
    start_or_stop_many(backend, true, &Scope::Group(group.to_owned()), wait).await
}

async fn stop_group<B: Backend>(
    backend: &B,
    (group, Wait(wait)): (&str, Wait),
) -> Result<Value, Fault> {
    start_or_stop_many(backend, false, &Scope::Group(group.to_owned()), wait).await
}

async fn start_all<B: Backend>(backend: &B, (Wait(wait),): (Wait,)) -> Result<Value, Fault> {
    start_or_stop_many(backend, true, &Scope::All, wait).await
}

async fn stop_all<B: Backend>(backend: &B, (Wait(wait),): (Wait,)) -> Result<Value, Fault> {
    start_or_stop_many(backend, false, &Scope::All, wait).await
}

async fn signal_process<B: Backend>(
    backend: &B,
    (name, SignalArg(signal)): (&str, SignalArg<'_>),
) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let process = match Target::parse(name) {
        Target::Group(group) => return signal_many(backend, Scope::Group(group), signal).await,
        Target::Process(process) => process,
    };
    let Some(parsed) = signal_of(signal) else {
        // An unknown name still wins over a bad signal, as in supervisord.
        backend.process_info(&process).await.map_err(|fault| respell(fault, &process, name))?;
        return Err(Fault::with_detail(FaultCode::BadSignal, signal_text(signal)));
    };
    backend
        .signal_process(&process, parsed)
        .await
        .map_err(|fault| respell(fault, &process, name))?;
    Ok(Value::Boolean(true))
}

async fn signal_group<B: Backend>(
    backend: &B,
    (group, SignalArg(signal)): (&str, SignalArg<'_>),
) -> Result<Value, Fault> {
    signal_many(backend, Scope::Group(group.to_owned()), signal).await
}

async fn signal_all<B: Backend>(
    backend: &B,
    (SignalArg(signal),): (SignalArg<'_>,),
) -> Result<Value, Fault> {
    signal_many(backend, Scope::All, signal).await
}

async fn process_info<B: Backend>(backend: &B, (name,): (&str,)) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let process = process_target(name)?;
    let info =
        backend.process_info(&process).await.map_err(|fault| respell(fault, &process, name))?;
    Ok(info_struct(&info, now_epoch(), &TimeZone::system()))
}

async fn all_process_info<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let mut infos = backend.all_process_info().await?;
    sort_by_name(&mut infos);
    let (now, zone) = (now_epoch(), TimeZone::system());
    Ok(Value::Array(infos.iter().map(|info| info_struct(info, now, &zone)).collect()))
}

async fn all_config_info<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let mut configs = backend.all_config_info().await?;
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Value::Array(configs.iter().map(config_struct).collect()))
}

/// How the log methods of a process read: `readProcess*Log` or `tailProcess*Log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogRead {
    Read,
    Tail,
}

async fn process_log<B: Backend>(
    backend: &B,
    read: LogRead,
    channel: LogChannel,
    (name, offset, length): (&str, i32, i32),
) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let process = process_target(name)?;
    let source = LogSource::Process(process.clone(), channel);
    let outcome = match read {
        LogRead::Tail => tail_log(backend, &source, offset, length).await,
        LogRead::Read => read_log(backend, &source, offset, length).await,
    };
    outcome.map_err(|fault| respell(fault, &process, name))
}

async fn read_stdout<B: Backend>(backend: &B, args: (&str, i32, i32)) -> Result<Value, Fault> {
    process_log(backend, LogRead::Read, LogChannel::Stdout, args).await
}

async fn read_stderr<B: Backend>(backend: &B, args: (&str, i32, i32)) -> Result<Value, Fault> {
    process_log(backend, LogRead::Read, LogChannel::Stderr, args).await
}

async fn tail_stdout<B: Backend>(backend: &B, args: (&str, i32, i32)) -> Result<Value, Fault> {
    process_log(backend, LogRead::Tail, LogChannel::Stdout, args).await
}

async fn tail_stderr<B: Backend>(backend: &B, args: (&str, i32, i32)) -> Result<Value, Fault> {
    process_log(backend, LogRead::Tail, LogChannel::Stderr, args).await
}

async fn clear_process_logs<B: Backend>(backend: &B, (name,): (&str,)) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let process = process_target(name)?;
    backend.clear_process_logs(&process).await.map_err(|fault| respell(fault, &process, name))?;
    Ok(Value::Boolean(true))
}

async fn clear_all_process_logs<B: Backend>(backend: &B, (): ()) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let mut infos = backend.all_process_info().await?;
    sort_by_name(&mut infos);
    let mut outcome = Vec::with_capacity(infos.len());
    for info in infos {
        let process = ProcessRef::new(info.group, info.name);
        let cleared = backend.clear_process_logs(&process).await;
        outcome.push(ProcessResult { process, outcome: cleared });
    }
    Ok(results(&outcome))
}

async fn send_stdin<B: Backend>(
    backend: &B,
    (name, Chars(bytes)): (&str, Chars<'_>),
) -> Result<Value, Fault> {
    ensure_running(backend).await?;
    let process = process_target(name)?;
    backend.send_stdin(&process, bytes).await.map_err(|fault| respell(fault, &process, name))?;
    Ok(Value::Boolean(true))
}

async fn send_remote_comm_event<B: Backend>(
    backend: &B,
    (event_type, data): (&str, &str),
) -> Result<Value, Fault> {
    backend.send_remote_comm_event(event_type, data).await?;
    Ok(Value::Boolean(true))
}

#[cfg(test)]
mod tests;
