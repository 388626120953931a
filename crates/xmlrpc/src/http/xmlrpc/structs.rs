//! The structs and scalars supervisord's methods answer with, built from the backend's
//! records: process info (with its `description`), config info, per-process results and
//! `system.multicall`'s fault structs. Integers that do not fit the XML-RPC `int` are capped
//! to it, where supervisord fails the whole call with an `OverflowError`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use dxr::Value;
use jiff::tz::TimeZone;
use vigil_rpc::LogSettings;

use crate::backend::{ConfigInfo, ProcessInfo, ProcessResult};
use crate::fault::{Fault, FaultCode};

/// A fault as `system.multicall` reports it in place of a result.
pub(crate) fn fault_struct(fault: &Fault) -> Value {
    Value::Struct(BTreeMap::from([
        ("faultCode".to_owned(), Value::Integer(fault.code.code())),
        ("faultString".to_owned(), Value::String(fault.fault_string())),
    ]))
}

/// supervisord's `capped_int`: clamp to the XML-RPC `int` range.
pub(crate) fn capped(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(if value < 0 { i32::MIN } else { i32::MAX })
}

pub(crate) fn capped_u64(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub(crate) fn now_epoch() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The `description` field (supervisord's `_interpretProcessInfo`).
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

pub(crate) fn member(key: &str, value: Value) -> (String, Value) {
    (key.to_owned(), value)
}

pub(crate) fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub(crate) fn info_struct(info: &ProcessInfo, now: i64, zone: &TimeZone) -> Value {
    Value::Struct(BTreeMap::from([
        member("name", string(info.name.as_str())),
        member("group", string(info.group.as_str())),
        member("start", Value::Integer(capped(info.start))),
        member("stop", Value::Integer(capped(info.stop))),
        member("now", Value::Integer(capped(now))),
        member("state", Value::Integer(info.state.code())),
        member("statename", string(info.state.name())),
        member("spawnerr", string(info.spawnerr.as_str())),
        member("exitstatus", Value::Integer(info.exitstatus)),
        member("logfile", string(info.stdout_logfile.as_str())),
        member("stdout_logfile", string(info.stdout_logfile.as_str())),
        member("stderr_logfile", string(info.stderr_logfile.as_str())),
        member("pid", Value::Integer(capped(i64::from(info.pid)))),
        member("description", string(describe(info, now, zone))),
    ]))
}

pub(crate) fn result_struct(result: &ProcessResult) -> Value {
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

pub(crate) fn results(results: &[ProcessResult]) -> Value {
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

pub(crate) fn config_struct(config: &ConfigInfo) -> Value {
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
