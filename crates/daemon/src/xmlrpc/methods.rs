//! The method table: every `supervisor.*` (API 3.0) and `system.*` method, with supervisord's
//! names, aliases, signatures, argument rules, fault paths and result shapes, dispatched onto
//! a [`Backend`].
//!
//! Rules taken from supervisord (reference section 4):
//! - A method name must be exactly `namespace.method`, and the method part must not start
//!   with `_`; anything else is `UNKNOWN_METHOD`. This is the CVE-2017-11610 fix, and here it
//!   is also structural: only names in [`METHODS`] exist.
//! - A wrong argument count is `INCORRECT_PARAMETERS`. supervisord finds type errors only
//!   where Python happens to raise `TypeError`; here every argument is checked against the
//!   signature up front and a wrong type is also `INCORRECT_PARAMETERS`. The one leniency is
//!   that an `int` is accepted where a boolean is expected, as Python's truthiness would.
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
use std::time::{SystemTime, UNIX_EPOCH};

use dxr::Value;
use jiff::tz::TimeZone;
use nix::sys::signal::Signal;
use vigil_rpc::LogSettings;

use super::backend::{
    Backend, ConfigInfo, DaemonState, LogChannel, LogSource, ProcessInfo, ProcessRef,
    ProcessResult, ProcessState, Scope,
};
use super::fault::{Fault, FaultCode};

/// The version `getSupervisorVersion` (and `supervisorctl version`) reports: vigild's own.
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One entry of the method table: what `system.listMethods`, `system.methodSignature` and
/// `system.methodHelp` report. Dispatch itself is the `match` in [`call`]; a unit test keeps
/// the two in step.
#[derive(Debug)]
pub(crate) struct MethodSpec {
    pub(crate) name: &'static str,
    /// `[return type, parameter types...]`, as supervisord's `methodSignature` answers.
    pub(crate) signature: &'static [&'static str],
    pub(crate) help: &'static str,
}

macro_rules! method {
    ($name:literal, [$($ty:literal),+], $help:literal) => {
        MethodSpec { name: $name, signature: &[$($ty),+], help: $help }
    };
}

/// Every method vigild serves: the 37 `supervisor.*` names of supervisord 4.3 (aliases
/// included) and the four `system.*` methods.
pub(crate) const METHODS: &[MethodSpec] = &[
    method!(
        "supervisor.getAPIVersion",
        ["string"],
        "Return the XML-RPC API version, '3.0'.\n@return string version"
    ),
    method!("supervisor.getVersion", ["string"], "Alias of getAPIVersion.\n@return string version"),
    method!(
        "supervisor.getSupervisorVersion",
        ["string"],
        "Return the version of the daemon (vigild).\n@return string version"
    ),
    method!(
        "supervisor.getIdentification",
        ["string"],
        "Return the configured identifier of this daemon.\n@return string identifier"
    ),
    method!(
        "supervisor.getState",
        ["struct"],
        "Return the daemon state.\n@return struct {int statecode, string statename}"
    ),
    method!("supervisor.getPID", ["int"], "Return the daemon's process id.\n@return int pid"),
    method!(
        "supervisor.readLog",
        ["string", "int", "int"],
        "Read length bytes of the main log from offset; a negative offset with length 0 reads the last -offset bytes.\n@param int offset\n@param int length\n@return string bytes"
    ),
    method!(
        "supervisor.readMainLog",
        ["string", "int", "int"],
        "Alias of readLog.\n@param int offset\n@param int length\n@return string bytes"
    ),
    method!(
        "supervisor.clearLog",
        ["boolean"],
        "Delete and reopen the main log.\n@return boolean true"
    ),
    method!(
        "supervisor.shutdown",
        ["boolean"],
        "Stop every process and exit.\n@return boolean true"
    ),
    method!(
        "supervisor.restart",
        ["boolean"],
        "Stop every process, re-read the config and start again, keeping the pid.\n@return boolean true"
    ),
    method!(
        "supervisor.reloadConfig",
        ["array"],
        "Re-read the config and report the groups added, changed and removed, applying nothing.\n@return array [[added, changed, removed]]"
    ),
    method!(
        "supervisor.addProcessGroup",
        ["boolean", "string"],
        "Activate a group from the last-read config.\n@param string name\n@return boolean true"
    ),
    method!(
        "supervisor.removeProcessGroup",
        ["boolean", "string"],
        "Deactivate a group whose processes are all stopped.\n@param string name\n@return boolean true"
    ),
    method!(
        "supervisor.startProcess",
        ["boolean", "string", "boolean"],
        "Start a process ('group:*' starts the group); with wait, return once it is RUNNING.\n@param string name\n@param boolean wait\n@return boolean true"
    ),
    method!(
        "supervisor.startProcessGroup",
        ["array", "string", "boolean"],
        "Start every process of a group that is not running.\n@param string name\n@param boolean wait\n@return array result structs"
    ),
    method!(
        "supervisor.startAllProcesses",
        ["array", "boolean"],
        "Start every process that is not running, in priority order.\n@param boolean wait\n@return array result structs"
    ),
    method!(
        "supervisor.stopProcess",
        ["boolean", "string", "boolean"],
        "Stop a process ('group:*' stops the group); with wait, return once it has stopped.\n@param string name\n@param boolean wait\n@return boolean true"
    ),
    method!(
        "supervisor.stopProcessGroup",
        ["array", "string", "boolean"],
        "Stop every running process of a group.\n@param string name\n@param boolean wait\n@return array result structs"
    ),
    method!(
        "supervisor.stopAllProcesses",
        ["array", "boolean"],
        "Stop every running process, in reverse priority order.\n@param boolean wait\n@return array result structs"
    ),
    method!(
        "supervisor.signalProcess",
        ["boolean", "string", "string"],
        "Send a signal (name or number) to a process.\n@param string name\n@param string signal\n@return boolean true"
    ),
    method!(
        "supervisor.signalProcessGroup",
        ["array", "string", "string"],
        "Send a signal to every running process of a group.\n@param string name\n@param string signal\n@return array result structs"
    ),
    method!(
        "supervisor.signalAllProcesses",
        ["array", "string"],
        "Send a signal to every running process.\n@param string signal\n@return array result structs"
    ),
    method!(
        "supervisor.getProcessInfo",
        ["struct", "string"],
        "Return the state of one process.\n@param string name\n@return struct process info"
    ),
    method!(
        "supervisor.getAllProcessInfo",
        ["array"],
        "Return the state of every process, sorted by group and name.\n@return array process info structs"
    ),
    method!(
        "supervisor.getAllConfigInfo",
        ["array"],
        "Return the configuration of every process of the last-read config.\n@return array config structs"
    ),
    method!(
        "supervisor.readProcessStdoutLog",
        ["string", "string", "int", "int"],
        "Read a process's stdout log, with readLog's offset rules.\n@param string name\n@param int offset\n@param int length\n@return string bytes"
    ),
    method!(
        "supervisor.readProcessLog",
        ["string", "string", "int", "int"],
        "Alias of readProcessStdoutLog.\n@param string name\n@param int offset\n@param int length\n@return string bytes"
    ),
    method!(
        "supervisor.readProcessStderrLog",
        ["string", "string", "int", "int"],
        "Read a process's stderr log, with readLog's offset rules.\n@param string name\n@param int offset\n@param int length\n@return string bytes"
    ),
    method!(
        "supervisor.tailProcessStdoutLog",
        ["array", "string", "int", "int"],
        "Return up to length bytes from the end of a process's stdout log, the log size and whether bytes were skipped.\n@param string name\n@param int offset\n@param int length\n@return array [string bytes, int offset, boolean overflow]"
    ),
    method!(
        "supervisor.tailProcessLog",
        ["array", "string", "int", "int"],
        "Alias of tailProcessStdoutLog.\n@param string name\n@param int offset\n@param int length\n@return array [string bytes, int offset, boolean overflow]"
    ),
    method!(
        "supervisor.tailProcessStderrLog",
        ["array", "string", "int", "int"],
        "Like tailProcessStdoutLog, for stderr.\n@param string name\n@param int offset\n@param int length\n@return array [string bytes, int offset, boolean overflow]"
    ),
    method!(
        "supervisor.clearProcessLogs",
        ["boolean", "string"],
        "Delete and reopen a process's stdout and stderr logs.\n@param string name\n@return boolean true"
    ),
    method!(
        "supervisor.clearProcessLog",
        ["boolean", "string"],
        "Alias of clearProcessLogs.\n@param string name\n@return boolean true"
    ),
    method!(
        "supervisor.clearAllProcessLogs",
        ["array"],
        "Clear the logs of every process.\n@return array result structs"
    ),
    method!(
        "supervisor.sendProcessStdin",
        ["boolean", "string", "string"],
        "Write characters (sent as UTF-8) to a process's stdin.\n@param string name\n@param string chars\n@return boolean true"
    ),
    method!(
        "supervisor.sendRemoteCommEvent",
        ["boolean", "string", "string"],
        "Emit a REMOTE_COMMUNICATION event to listeners; allowed during shutdown.\n@param string type\n@param string data\n@return boolean true"
    ),
    method!(
        "system.listMethods",
        ["array"],
        "Return the names of every method, sorted.\n@return array method names"
    ),
    method!(
        "system.methodHelp",
        ["string", "string"],
        "Return the documentation of a method.\n@param string name\n@return string help"
    ),
    method!(
        "system.methodSignature",
        ["array", "string"],
        "Return a method's signature as [return type, parameter types...].\n@param string name\n@return array signature"
    ),
    method!(
        "system.multicall",
        ["array", "array"],
        "Run calls [{methodName, params}] in order and return their results; a fault becomes {faultCode, faultString}.\n@param array calls\n@return array results"
    ),
];

/// Looks a method up by the name a client sent, applying supervisord's `traverse` rules.
fn lookup(method: &str) -> Result<&'static MethodSpec, Fault> {
    let unknown = || Fault::new(FaultCode::UnknownMethod);
    let (namespace, name) = method.split_once('.').ok_or_else(unknown)?;
    if name.contains('.') || name.starts_with('_') || namespace.is_empty() {
        return Err(unknown());
    }
    METHODS.iter().find(|spec| spec.name == method).ok_or_else(unknown)
}

/// Runs one XML-RPC call: what the HTTP layer sends back as a response or a fault.
pub(crate) async fn call<B: Backend>(
    backend: &B,
    method: &str,
    params: &[Value],
) -> Result<Value, Fault> {
    if method == "system.multicall" {
        let [calls] = params else { return Err(incorrect()) };
        let Value::Array(calls) = calls else { return Err(incorrect()) };
        return Ok(multicall(backend, calls).await);
    }
    call_one(backend, method, params).await
}

/// `system.multicall`: the calls run one after another; each result or fault is recorded and
/// the next call runs regardless.
async fn multicall<B: Backend>(backend: &B, calls: &[Value]) -> Value {
    let mut results = Vec::with_capacity(calls.len());
    for entry in calls {
        let outcome = match multicall_entry(entry) {
            Ok(("system.multicall", _)) => Err(Fault::with_detail(
                FaultCode::IncorrectParameters,
                "Recursive system.multicall forbidden",
            )),
            Ok((name, params)) => call_one(backend, name, params).await,
            Err(fault) => Err(fault),
        };
        results.push(match outcome {
            Ok(value) => value,
            Err(fault) => fault_struct(&fault),
        });
    }
    Value::Array(results)
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

/// A fault as `system.multicall` reports it in place of a result.
fn fault_struct(fault: &Fault) -> Value {
    Value::Struct(BTreeMap::from([
        ("faultCode".to_owned(), Value::Integer(fault.code.code())),
        ("faultString".to_owned(), Value::String(fault.fault_string())),
    ]))
}

fn incorrect() -> Fault {
    Fault::new(FaultCode::IncorrectParameters)
}

/// Checks the argument count: `required` arguments, then up to `optional` more.
fn arity(params: &[Value], required: usize, optional: usize) -> Result<(), Fault> {
    if params.len() < required || params.len() > required + optional {
        return Err(incorrect());
    }
    Ok(())
}

fn string_arg(value: &Value) -> Result<&str, Fault> {
    match value {
        Value::String(text) => Ok(text),
        _ => Err(incorrect()),
    }
}

/// A signal argument: a name or a number (checked later, by [`parse_signal`]).
fn signal_arg(value: &Value) -> Result<&Value, Fault> {
    match value {
        Value::String(_) | Value::Integer(_) => Ok(value),
        _ => Err(incorrect()),
    }
}

/// A signal argument as `BAD_SIGNAL`'s detail shows it.
fn signal_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Integer(number) => number.to_string(),
        _ => String::new(),
    }
}

fn int_arg(value: &Value) -> Result<i32, Fault> {
    match value {
        Value::Integer(number) => Ok(*number),
        _ => Err(incorrect()),
    }
}

/// An optional boolean argument (supervisord's `wait=True`); an int counts by truthiness.
fn bool_arg(params: &[Value], index: usize, default: bool) -> Result<bool, Fault> {
    match params.get(index) {
        None => Ok(default),
        Some(Value::Boolean(flag)) => Ok(*flag),
        Some(Value::Integer(number)) => Ok(*number != 0),
        Some(_) => Err(incorrect()),
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

/// What a namespec names (supervisord's `split_namespec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Process(ProcessRef),
    /// `group:*` or `group:`.
    Group(String),
}

pub(crate) fn split_namespec(namespec: &str) -> Target {
    match namespec.split_once(':') {
        Some((group, "" | "*")) => Target::Group(group.to_owned()),
        Some((group, name)) => Target::Process(ProcessRef::new(group, name)),
        None => Target::Process(ProcessRef::new(namespec, namespec)),
    }
}

/// supervisord's `make_namespec`: `name` alone for a homogeneous group.
pub(crate) fn namespec(process: &ProcessRef) -> String {
    if process.group == process.name {
        process.name.clone()
    } else {
        format!("{}:{}", process.group, process.name)
    }
}

/// A single-process method needs a process; `group:*` there is `BAD_NAME`.
fn process_target(namespec: &str) -> Result<ProcessRef, Fault> {
    match split_namespec(namespec) {
        Target::Process(process) => Ok(process),
        Target::Group(_) => Err(Fault::with_detail(FaultCode::BadName, namespec)),
    }
}

/// supervisord names the process in a fault as the client spelled it (`web` rather than
/// `web:web`); the backend knows only the canonical namespec, so respell its detail.
fn respell(fault: Fault, process: &ProcessRef, as_sent: &str) -> Fault {
    match &fault.detail {
        Some(detail) if *detail == namespec(process) && detail != as_sent => {
            Fault::with_detail(fault.code, as_sent)
        }
        _ => fault,
    }
}

/// Parses a signal given by name (`HUP`, `SIGHUP`, any case) or number, as supervisord's
/// `signal_number` does. Only signals the platform defines are accepted.
fn parse_signal(value: &Value) -> Option<Signal> {
    match value {
        Value::Integer(number) => Signal::try_from(*number).ok(),
        Value::String(text) => {
            let text = text.trim();
            if let Ok(number) = text.parse::<i32>() {
                return Signal::try_from(number).ok();
            }
            let upper = text.to_ascii_uppercase();
            let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
            name.parse::<Signal>().ok()
        }
        _ => None,
    }
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
/// before `BAD_ARGUMENTS`, as in supervisord), then the range is read.
async fn read_log<B: Backend>(
    backend: &B,
    source: &LogSource,
    offset: i32,
    length: i32,
) -> Result<Value, Fault> {
    let size = backend.log_size(source).await?;
    let (start, max_len) = match read_range(offset, length)? {
        ReadRange::Last(count) => (size.saturating_sub(count), Some(count)),
        ReadRange::From(start) => (start, None),
        ReadRange::Slice { offset, length } => (offset, Some(length)),
    };
    let bytes = backend.read_log(source, start, max_len).await?;
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
    let (start, count, overflow) = tail_window(size, i64::from(offset), i64::from(length));
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

/// supervisord's `capped_int`: clamp to the XML-RPC `int` range.
fn capped(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

fn capped_u64(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn now_epoch() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The `description` field (supervisord's `_interpretProcessInfo`, reference section 3.3).
/// Stop times are shown in `zone`, the daemon's local time zone, looked up once per call
/// by the caller because reading it is far dearer than formatting.
pub(crate) fn describe(info: &ProcessInfo, now: i64, zone: &TimeZone) -> String {
    vigil_rpc::describe(&ProcessInfo { now, ..info.clone() }, |stop| local_time(stop, zone))
}

/// An epoch time as `%b %d %I:%M %p` in `zone`.
fn local_time(epoch: i64, zone: &TimeZone) -> String {
    match jiff::Timestamp::from_second(epoch) {
        Ok(time) => time.to_zoned_datetime(zone.clone()).strftime("%b %d %I:%M %p").to_string(),
        // Out of the representable range: nothing sensible to show.
        Err(_) => String::new(),
    }
}

fn member(key: &str, value: Value) -> (String, Value) {
    (key.to_owned(), value)
}

fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn info_struct(info: &ProcessInfo, now: i64, zone: &TimeZone) -> Value {
    Value::Struct(BTreeMap::from([
        member("name", string(&info.name)),
        member("group", string(&info.group)),
        member("start", Value::Integer(capped(info.start))),
        member("stop", Value::Integer(capped(info.stop))),
        member("now", Value::Integer(capped(now))),
        member("state", Value::Integer(info.state.code())),
        member("statename", string(info.state.name())),
        member("spawnerr", string(&info.spawnerr)),
        member("exitstatus", Value::Integer(info.exitstatus)),
        member("logfile", string(&info.stdout_logfile)),
        member("stdout_logfile", string(&info.stdout_logfile)),
        member("stderr_logfile", string(&info.stderr_logfile)),
        member("pid", Value::Integer(capped(i64::from(info.pid)))),
        member("description", string(describe(info, now, zone))),
    ]))
}

fn result_struct(result: &ProcessResult) -> Value {
    let (status, description) = match &result.outcome {
        Ok(()) => (FaultCode::Success.code(), "OK".to_owned()),
        Err(fault) => (fault.code.code(), fault.fault_string()),
    };
    Value::Struct(BTreeMap::from([
        member("name", string(&result.process.name)),
        member("group", string(&result.process.group)),
        member("status", Value::Integer(status)),
        member("description", string(description)),
    ]))
}

fn results(results: &[ProcessResult]) -> Value {
    Value::Array(results.iter().map(result_struct).collect())
}

/// A setting supervisord may hold as `AUTO` or `None`: vigil-rpc already spells them `auto`
/// and `none`, as `getAllConfigInfo` sends them; an empty one is `none` too.
fn setting(value: &str) -> Value {
    match value {
        "" => string("none"),
        text => string(text),
    }
}

fn config_struct(config: &ConfigInfo) -> Value {
    let mut members = BTreeMap::from([
        member("name", string(&config.name)),
        member("group", string(&config.group)),
        member("group_prio", Value::Integer(config.group_prio)),
        member("process_prio", Value::Integer(config.process_prio)),
        member("inuse", Value::Boolean(config.inuse)),
        member("autostart", Value::Boolean(config.autostart)),
        member(
            "autorestart",
            match config.autorestart.as_str() {
                "true" => Value::Boolean(true),
                "unexpected" => string("unexpected"),
                _ => Value::Boolean(false),
            },
        ),
        member("directory", config.directory.as_ref().map_or_else(|| string("none"), string)),
        member(
            "uid",
            config.uid.map_or_else(|| string("none"), |uid| Value::Integer(capped_u64(uid.into()))),
        ),
        member("command", string(&config.command)),
        member(
            "exitcodes",
            Value::Array(config.exitcodes.iter().copied().map(Value::Integer).collect()),
        ),
        member("killasgroup", Value::Boolean(config.killasgroup)),
        member("redirect_stderr", Value::Boolean(config.redirect_stderr)),
        member("startretries", Value::Integer(capped_u64(config.startretries.into()))),
        member("startsecs", Value::Integer(capped_u64(config.startsecs))),
        member("stopsignal", Value::Integer(config.stopsignal)),
        member("stopwaitsecs", Value::Integer(capped_u64(config.stopwaitsecs))),
        member("serverurl", setting(&config.serverurl)),
    ]);
    for (prefix, channel) in [("stdout", &config.stdout), ("stderr", &config.stderr)] {
        channel_members(&mut members, prefix, channel);
    }
    Value::Struct(members)
}

fn channel_members(members: &mut BTreeMap<String, Value>, prefix: &str, channel: &LogSettings) {
    let fields = [
        ("capture_maxbytes", Value::Integer(capped_u64(channel.capture_maxbytes))),
        ("events_enabled", Value::Boolean(channel.events_enabled)),
        ("logfile", setting(&channel.logfile)),
        ("logfile_backups", Value::Integer(capped_u64(channel.logfile_backups.into()))),
        ("logfile_maxbytes", Value::Integer(capped_u64(channel.logfile_maxbytes))),
        ("syslog", Value::Boolean(channel.syslog)),
    ];
    for (field, value) in fields {
        members.insert(format!("{prefix}_{field}"), value);
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
    let outcome = if start {
        backend.start_many(scope, wait).await?
    } else {
        backend.stop_many(scope, wait).await?
    };
    Ok(results(&outcome))
}

async fn signal_many<B: Backend>(
    backend: &B,
    scope: Scope,
    signal: &Value,
) -> Result<Value, Fault> {
    if let Scope::Group(_) = scope {
        ensure_running(backend).await?;
    }
    let outcome = match parse_signal(signal) {
        Some(parsed) => backend.signal_many(&scope, parsed).await?,
        None => bad_signal_results(backend, &scope, signal).await?,
    };
    // supervisord checks its state again once the signals are out.
    ensure_running(backend).await?;
    Ok(results(&outcome))
}

/// Dispatches one call that is not `system.multicall`.
async fn call_one<B: Backend>(backend: &B, method: &str, params: &[Value]) -> Result<Value, Fault> {
    let spec = lookup(method)?;
    match spec.name {
        "supervisor.getAPIVersion" | "supervisor.getVersion" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            Ok(string(vigil_rpc::API_VERSION))
        }
        "supervisor.getSupervisorVersion" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            Ok(string(SERVER_VERSION))
        }
        "supervisor.getIdentification" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            Ok(string(backend.identification().await?))
        }
        "supervisor.getState" => {
            arity(params, 0, 0)?;
            let state = ensure_running(backend).await?;
            Ok(Value::Struct(BTreeMap::from([
                member("statecode", Value::Integer(state.code())),
                member("statename", string(state.name())),
            ])))
        }
        "supervisor.getPID" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            Ok(Value::Integer(capped(i64::from(std::process::id()))))
        }
        "supervisor.readLog" | "supervisor.readMainLog" => {
            arity(params, 2, 0)?;
            let (offset, length) = (int_arg(&params[0])?, int_arg(&params[1])?);
            ensure_running(backend).await?;
            read_log(backend, &LogSource::Main, offset, length).await
        }
        "supervisor.clearLog" | "supervisor.shutdown" | "supervisor.restart" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            match spec.name {
                "supervisor.clearLog" => backend.clear_main_log().await?,
                "supervisor.shutdown" => backend.shutdown().await?,
                _ => backend.restart().await?,
            }
            Ok(Value::Boolean(true))
        }
        "supervisor.reloadConfig" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            let diff = backend.reload_config().await?;
            let names = |names: Vec<String>| Value::Array(names.into_iter().map(string).collect());
            Ok(Value::Array(vec![Value::Array(vec![
                names(diff.added),
                names(diff.changed),
                names(diff.removed),
            ])]))
        }
        "supervisor.addProcessGroup" | "supervisor.removeProcessGroup" => {
            arity(params, 1, 0)?;
            let group = string_arg(&params[0])?;
            ensure_running(backend).await?;
            if spec.name == "supervisor.addProcessGroup" {
                backend.add_group(group).await?;
            } else {
                backend.remove_group(group).await?;
            }
            Ok(Value::Boolean(true))
        }
        "supervisor.startProcess" | "supervisor.stopProcess" => {
            arity(params, 1, 1)?;
            let name = string_arg(&params[0])?;
            let wait = bool_arg(params, 1, true)?;
            ensure_running(backend).await?;
            let start = spec.name == "supervisor.startProcess";
            match split_namespec(name) {
                Target::Group(group) => {
                    start_or_stop_many(backend, start, &Scope::Group(group), wait).await
                }
                Target::Process(process) => {
                    let outcome = if start {
                        backend.start_process(&process, wait).await
                    } else {
                        backend.stop_process(&process, wait).await
                    };
                    outcome.map_err(|fault| respell(fault, &process, name))?;
                    Ok(Value::Boolean(true))
                }
            }
        }
        "supervisor.startProcessGroup" | "supervisor.stopProcessGroup" => {
            arity(params, 1, 1)?;
            let group = string_arg(&params[0])?;
            let wait = bool_arg(params, 1, true)?;
            ensure_running(backend).await?;
            let start = spec.name == "supervisor.startProcessGroup";
            start_or_stop_many(backend, start, &Scope::Group(group.to_owned()), wait).await
        }
        "supervisor.startAllProcesses" | "supervisor.stopAllProcesses" => {
            arity(params, 0, 1)?;
            let wait = bool_arg(params, 0, true)?;
            ensure_running(backend).await?;
            let start = spec.name == "supervisor.startAllProcesses";
            start_or_stop_many(backend, start, &Scope::All, wait).await
        }
        "supervisor.signalProcess" => {
            arity(params, 2, 0)?;
            let name = string_arg(&params[0])?;
            let signal = signal_arg(&params[1])?;
            ensure_running(backend).await?;
            match split_namespec(name) {
                Target::Group(group) => signal_many(backend, Scope::Group(group), signal).await,
                Target::Process(process) => {
                    let Some(parsed) = parse_signal(signal) else {
                        // An unknown name still wins over a bad signal, as in supervisord.
                        backend
                            .process_info(&process)
                            .await
                            .map_err(|fault| respell(fault, &process, name))?;
                        return Err(Fault::with_detail(FaultCode::BadSignal, signal_text(signal)));
                    };
                    backend
                        .signal_process(&process, parsed)
                        .await
                        .map_err(|fault| respell(fault, &process, name))?;
                    Ok(Value::Boolean(true))
                }
            }
        }
        "supervisor.signalProcessGroup" => {
            arity(params, 2, 0)?;
            let group = string_arg(&params[0])?;
            let signal = signal_arg(&params[1])?;
            signal_many(backend, Scope::Group(group.to_owned()), signal).await
        }
        "supervisor.signalAllProcesses" => {
            arity(params, 1, 0)?;
            let signal = signal_arg(&params[0])?;
            signal_many(backend, Scope::All, signal).await
        }
        "supervisor.getProcessInfo" => {
            arity(params, 1, 0)?;
            let name = string_arg(&params[0])?;
            ensure_running(backend).await?;
            let process = process_target(name)?;
            let info = backend
                .process_info(&process)
                .await
                .map_err(|fault| respell(fault, &process, name))?;
            Ok(info_struct(&info, now_epoch(), &TimeZone::system()))
        }
        "supervisor.getAllProcessInfo" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            let mut infos = backend.all_process_info().await?;
            sort_by_name(&mut infos);
            let (now, zone) = (now_epoch(), TimeZone::system());
            Ok(Value::Array(infos.iter().map(|info| info_struct(info, now, &zone)).collect()))
        }
        "supervisor.getAllConfigInfo" => {
            arity(params, 0, 0)?;
            ensure_running(backend).await?;
            let mut configs = backend.all_config_info().await?;
            configs.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Value::Array(configs.iter().map(config_struct).collect()))
        }
        "supervisor.readProcessStdoutLog"
        | "supervisor.readProcessLog"
        | "supervisor.readProcessStderrLog"
        | "supervisor.tailProcessStdoutLog"
        | "supervisor.tailProcessLog"
        | "supervisor.tailProcessStderrLog" => {
            arity(params, 3, 0)?;
            let name = string_arg(&params[0])?;
            let (offset, length) = (int_arg(&params[1])?, int_arg(&params[2])?);
            ensure_running(backend).await?;
            let process = process_target(name)?;
            let channel = if spec.name.ends_with("StderrLog") {
                LogChannel::Stderr
            } else {
                LogChannel::Stdout
            };
            let source = LogSource::Process(process.clone(), channel);
            let outcome = if spec.name.starts_with("supervisor.tail") {
                tail_log(backend, &source, offset, length).await
            } else {
                read_log(backend, &source, offset, length).await
            };
            outcome.map_err(|fault| respell(fault, &process, name))
        }
        "supervisor.clearProcessLogs" | "supervisor.clearProcessLog" => {
            arity(params, 1, 0)?;
            let name = string_arg(&params[0])?;
            ensure_running(backend).await?;
            let process = process_target(name)?;
            backend
                .clear_process_logs(&process)
                .await
                .map_err(|fault| respell(fault, &process, name))?;
            Ok(Value::Boolean(true))
        }
        "supervisor.clearAllProcessLogs" => {
            arity(params, 0, 0)?;
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
        "supervisor.sendProcessStdin" => {
            arity(params, 2, 0)?;
            let name = string_arg(&params[0])?;
            let bytes = match &params[1] {
                Value::String(text) => text.as_bytes(),
                Value::Base64(bytes) => bytes.as_slice(),
                _ => return Err(incorrect()),
            };
            ensure_running(backend).await?;
            let process = process_target(name)?;
            backend
                .send_stdin(&process, bytes)
                .await
                .map_err(|fault| respell(fault, &process, name))?;
            Ok(Value::Boolean(true))
        }
        "supervisor.sendRemoteCommEvent" => {
            arity(params, 2, 0)?;
            let (event_type, data) = (string_arg(&params[0])?, string_arg(&params[1])?);
            backend.send_remote_comm_event(event_type, data).await?;
            Ok(Value::Boolean(true))
        }
        "system.listMethods" => {
            arity(params, 0, 0)?;
            let mut names: Vec<&str> = METHODS.iter().map(|spec| spec.name).collect();
            names.sort_unstable();
            Ok(Value::Array(names.into_iter().map(string).collect()))
        }
        "system.methodHelp" | "system.methodSignature" => {
            arity(params, 1, 0)?;
            let name = string_arg(&params[0])?;
            let target = METHODS
                .iter()
                .find(|candidate| candidate.name == name)
                .ok_or(Fault::new(FaultCode::SignatureUnsupported))?;
            if spec.name == "system.methodHelp" {
                Ok(string(target.help))
            } else {
                Ok(Value::Array(target.signature.iter().copied().map(string).collect()))
            }
        }
        // `call` handles it; reaching here means a nested call slipped past `multicall`.
        "system.multicall" => Err(Fault::with_detail(
            FaultCode::IncorrectParameters,
            "Recursive system.multicall forbidden",
        )),
        _ => Err(Fault::new(FaultCode::UnknownMethod)),
    }
}

#[cfg(test)]
mod tests;
