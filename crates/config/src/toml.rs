//! The TOML reader: `vigil.toml`, the same model as the INI dialect.
//!
//! Shape: `[supervisord]`, `[unix_http_server]`, `[inet_http_server]`,
//! `[supervisorctl]`, `[rpcinterface.NAME]`, `[ctlplugin.NAME]`, `[program.NAME]`,
//! `[fcgi-program.NAME]`, `[eventlistener.NAME]`, `[group.NAME]` and `[include]`,
//! with the INI key names. Values may be TOML strings, integers, booleans and
//! floats; `command` may be an array (taken as argv, no shell splitting), list keys
//! (`programs`, `exitcodes`, `depends_on`, `events`, `files`) may be arrays, and
//! `environment` may be an inline table. Strings still go through `%` expansion,
//! so `%(here)s` works and a literal `%` is written `%%`. Unknown keys are errors
//! (serde `deny_unknown_fields`) located with toml's spans. The sections are then
//! handed to the same builder as the INI reader's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::error::{Diagnostics, Place};
use crate::raw::{RawData, RawSection, RawValue};

/// A TOML value in a config position: a scalar, an array of scalars or a table of scalars.
#[derive(Debug)]
struct Val(RawData);

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

/// A scalar inside an array or table, as text.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(ValVisitor)?.0 {
            RawData::Text(s) => Ok(Scalar(s)),
            RawData::Int(n) => Ok(Scalar(n.to_string())),
            RawData::Bool(b) => Ok(Scalar(b.to_string())),
            RawData::Float(f) => Ok(Scalar(f.to_string())),
            RawData::List(_) | RawData::Table(_) => {
                Err(de::Error::custom("nested arrays and tables are not allowed here"))
            }
        }
    }
}

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, integer, boolean, float, array of scalars or table of scalars")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Val, E> {
        Ok(Val(RawData::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Val, E> {
        Ok(Val(RawData::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
        i64::try_from(v)
            .map(|v| Val(RawData::Int(v)))
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Val, E> {
        Ok(Val(RawData::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Val, E> {
        Ok(Val(RawData::Text(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Val, E> {
        Ok(Val(RawData::Text(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        while let Some(Scalar(s)) = seq.next_element()? {
            items.push(s);
        }
        Ok(Val(RawData::List(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, Scalar(v))) = map.next_entry::<String, Scalar>()? {
            pairs.push((k, v));
        }
        Ok(Val(RawData::Table(pairs)))
    }
}

/// Declares one section's schema: every key optional, nothing else accepted.
macro_rules! section {
    ($name:ident { $($field:ident),* $(,)? }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $( #[serde(default)] $field: Option<Spanned<Val>>, )*
        }

        impl $name {
            #[cfg(test)]
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn into_entries(self) -> Vec<(&'static str, Spanned<Val>)> {
                let mut out = Vec::new();
                $( if let Some(v) = self.$field { out.push((stringify!($field), v)); } )*
                out
            }
        }
    };
}

/// The `[program.x]` keys, plus the extra ones of a derived section type.
macro_rules! program_section {
    ($name:ident { $($extra:ident),* $(,)? }) => {
        section!($name {
            command, process_name, numprocs, numprocs_start, priority, autostart, startsecs,
            startretries, autorestart, exitcodes, stopsignal, stopwaitsecs, stopasgroup,
            killasgroup, user, redirect_stderr,
            stdout_logfile, stdout_logfile_maxbytes, stdout_logfile_backups, stdout_capture_maxbytes,
            stdout_events_enabled, stdout_syslog,
            stderr_logfile, stderr_logfile_maxbytes, stderr_logfile_backups, stderr_capture_maxbytes,
            stderr_events_enabled, stderr_syslog,
            environment, env_file, directory, umask, serverurl,
            strategy, max_restarts, max_restarts_period,
            backoff, backoff_initial, backoff_max, backoff_multiplier, backoff_jitter, backoff_reset_after,
            depends_on, restart_dependents, essential,
            rlimits, rlimit_as, rlimit_core, rlimit_cpu, rlimit_data, rlimit_fsize, rlimit_locks,
            rlimit_memlock, rlimit_msgqueue, rlimit_nice, rlimit_nofile, rlimit_nproc, rlimit_rss,
            rlimit_rtprio, rlimit_rttime, rlimit_sigpending, rlimit_stack,
            cgroup, memory_max, memory_restart_threshold, cpu_quota, pids_max,
            ready_tcp, ready_http, ready_http_status, ready_exec, ready_log, ready_notify,
            ready_period, ready_timeout, ready_retries, ready_initial_delay,
            live_tcp, live_http, live_http_status, live_exec,
            live_period, live_timeout, live_failure_threshold, live_initial_delay,
            stdout_logfile_format, stdout_echo, stderr_logfile_format, stderr_echo,
            $($extra),*
        });
    };
}

section!(SupervisordT {
    logfile,
    logfile_maxbytes,
    logfile_backups,
    loglevel,
    pidfile,
    umask,
    nodaemon,
    silent,
    minfds,
    minprocs,
    nocleanup,
    childlogdir,
    user,
    directory,
    strip_ansi,
    environment,
    identifier,
    on_fatal,
    env_file,
    cgroup_root,
    logfile_format,
});
section!(UnixT { file, chmod, chown, username, password });
section!(InetT { port, username, password, allow_unauthenticated });
section!(CtlT { serverurl, username, password, prompt, history_file });
section!(GroupT { programs, priority, strategy, max_restarts, max_restarts_period, env_file });
section!(IncludeT { files });
program_section!(ProgramT {});
program_section!(FcgiT { socket, socket_backlog, socket_owner, socket_mode });
program_section!(ListenerT { events, buffer_size, result_handler });

type Plugins = BTreeMap<String, Spanned<BTreeMap<String, Spanned<Val>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    supervisord: Option<Spanned<SupervisordT>>,
    unix_http_server: Option<Spanned<UnixT>>,
    inet_http_server: Option<Spanned<InetT>>,
    supervisorctl: Option<Spanned<CtlT>>,
    #[serde(default)]
    rpcinterface: Plugins,
    #[serde(default)]
    ctlplugin: Plugins,
    #[serde(default)]
    program: BTreeMap<String, Spanned<ProgramT>>,
    #[serde(default, rename = "fcgi-program")]
    fcgi_program: BTreeMap<String, Spanned<FcgiT>>,
    #[serde(default)]
    eventlistener: BTreeMap<String, Spanned<ListenerT>>,
    #[serde(default)]
    group: BTreeMap<String, Spanned<GroupT>>,
    include: Option<Spanned<IncludeT>>,
}

/// Byte offset to 1-based line, by binary search over newline offsets.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(text.match_indices('\n').map(|(i, _)| i).collect())
    }

    fn line(&self, offset: usize) -> u32 {
        let n = self.0.partition_point(|&nl| nl < offset) + 1;
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// A TOML integer written in decimal is kept as its digits, so that mode keys read
/// it the way the INI form does (`chmod = 700` means 0700, as `chmod=700` does);
/// one written with a `0o`, `0x` or `0b` prefix is taken as the number itself.
fn integer_as_written(n: i64, literal: &str) -> RawData {
    let digits = literal.trim().trim_start_matches(['+', '-']);
    if ["0o", "0x", "0b"].iter().any(|p| digits.starts_with(p)) {
        RawData::Int(n)
    } else {
        RawData::Text(n.to_string())
    }
}

/// `text` with the `bad` lines blanked, and with a bad table header every line of
/// its table. Blanked lines become spaces, so that byte offsets and line numbers
/// stay those of `text`.
fn without_lines(text: &str, bad: &BTreeSet<u32>) -> String {
    let mut out = String::with_capacity(text.len());
    // Inside a table whose header is broken: its keys belong to no table.
    let mut skipping = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let header = line.trim_start().starts_with('[');
        if header {
            skipping = false;
        }
        if bad.contains(&number) {
            skipping |= header;
        } else if !skipping {
            out.push_str(line);
            continue;
        }
        // One space per byte: a multi-byte character becomes as many spaces.
        let content = line.strip_suffix('\n').unwrap_or(line);
        out.extend(std::iter::repeat_n(' ', content.len()));
        if content.len() < line.len() {
            out.push('\n');
        }
    }
    out
}

/// How often a file with syntax errors is read again without the lines found bad
/// so far; toml's parser may find the next error only once the one before is gone.
const RETRIES: usize = 8;

/// Parses one TOML file into raw sections.
///
/// A syntax error does not hide the rest of the file: every syntax error toml's
/// parser finds is reported, and the file is read again without the lines that
/// hold one (and without the table of a broken header) until no error is left;
/// what remains is checked and handed on like any file. A file still broken
/// after [`RETRIES`] readings yields no sections.
pub(crate) fn read(text: &str, file: &Path, diags: &mut Diagnostics) -> Vec<RawSection> {
    let lines = Lines::new(text);
    let mut report = |err: &toml::de::Error| {
        let place = Place {
            file: file.to_path_buf(),
            line: err.span().map(|s| lines.line(s.start)),
            ..Place::default()
        };
        // serde lists every allowed field after an unknown one; the key names
        // are documented in config/vigil.toml, so keep the line short.
        let message = err.message().trim_end();
        let message = message.split_once(", expected one of").map_or(message, |(head, _)| head);
        diags.error(&place, message.to_string());
    };
    let (mut document, mut errors) = toml::de::DeTable::parse_recoverable(text);
    let mut bad = BTreeSet::new();
    let mut cleaned = String::new();
    for _ in 0..RETRIES {
        if errors.is_empty() {
            break;
        }
        errors.iter().for_each(&mut report);
        bad.extend(errors.iter().filter_map(|e| e.span()).map(|s| lines.line(s.start)));
        cleaned = without_lines(text, &bad);
        (_, errors) = toml::de::DeTable::parse_recoverable(&cleaned);
    }
    if !bad.is_empty() {
        errors.iter().for_each(&mut report);
        (document, errors) = toml::de::DeTable::parse_recoverable(&cleaned);
    }
    if !errors.is_empty() {
        return Vec::new();
    }
    let parsed = match TomlFile::deserialize(toml::de::Deserializer::from(document)) {
        Ok(parsed) => parsed,
        Err(err) => {
            report(&err);
            return Vec::new();
        }
    };
    let shared_file: std::rc::Rc<Path> = std::rc::Rc::from(file);
    let mut sections = Vec::new();
    let mut push = |name: String, start: usize, entries: Vec<(String, Spanned<Val>)>| {
        let entries = entries
            .into_iter()
            .map(|(key, value)| {
                let span = value.span();
                let line = Some(lines.line(span.start));
                let data = match value.into_inner().0 {
                    RawData::Int(n) => integer_as_written(n, text.get(span).unwrap_or_default()),
                    other => other,
                };
                (key, RawValue { data, file: shared_file.clone(), line })
            })
            .collect();
        sections.push(RawSection {
            name,
            file: shared_file.clone(),
            line: Some(lines.line(start)),
            entries,
        });
    };
    let owned = |entries: Vec<(&'static str, Spanned<Val>)>| -> Vec<(String, Spanned<Val>)> {
        entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    if let Some(s) = parsed.supervisord {
        let start = s.span().start;
        push("supervisord".into(), start, owned(s.into_inner().into_entries()));
    }
    if let Some(s) = parsed.unix_http_server {
        let start = s.span().start;
        push("unix_http_server".into(), start, owned(s.into_inner().into_entries()));
    }
    if let Some(s) = parsed.inet_http_server {
        let start = s.span().start;
        push("inet_http_server".into(), start, owned(s.into_inner().into_entries()));
    }
    if let Some(s) = parsed.supervisorctl {
        let start = s.span().start;
        push("supervisorctl".into(), start, owned(s.into_inner().into_entries()));
    }
    for (prefix, plugins) in
        [("rpcinterface", parsed.rpcinterface), ("ctlplugin", parsed.ctlplugin)]
    {
        for (name, s) in plugins {
            let start = s.span().start;
            push(format!("{prefix}:{name}"), start, s.into_inner().into_iter().collect());
        }
    }
    for (name, s) in parsed.program {
        let start = s.span().start;
        push(format!("program:{name}"), start, owned(s.into_inner().into_entries()));
    }
    for (name, s) in parsed.fcgi_program {
        let start = s.span().start;
        push(format!("fcgi-program:{name}"), start, owned(s.into_inner().into_entries()));
    }
    for (name, s) in parsed.eventlistener {
        let start = s.span().start;
        push(format!("eventlistener:{name}"), start, owned(s.into_inner().into_entries()));
    }
    for (name, s) in parsed.group {
        let start = s.span().start;
        push(format!("group:{name}"), start, owned(s.into_inner().into_entries()));
    }
    if let Some(s) = parsed.include {
        let start = s.span().start;
        push("include".into(), start, owned(s.into_inner().into_entries()));
    }
    sections.sort_by_key(|s| s.line);
    sections
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    #[test]
    fn schema_matches_the_ini_keys() {
        let sorted = |k: &[&str]| {
            let mut v: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let with = |base: &[&str], extra: &[&str]| sorted(&[base, extra].concat());
        assert_eq!(sorted(SupervisordT::KEYS), sorted(keys::SUPERVISORD));
        assert_eq!(sorted(UnixT::KEYS), sorted(keys::UNIX_HTTP_SERVER));
        assert_eq!(sorted(InetT::KEYS), sorted(keys::INET_HTTP_SERVER));
        assert_eq!(sorted(CtlT::KEYS), sorted(keys::SUPERVISORCTL));
        assert_eq!(sorted(GroupT::KEYS), sorted(keys::GROUP));
        assert_eq!(sorted(IncludeT::KEYS), sorted(keys::INCLUDE));
        assert_eq!(sorted(ProgramT::KEYS), sorted(keys::PROGRAM));
        assert_eq!(sorted(FcgiT::KEYS), with(keys::PROGRAM, keys::FCGI_EXTRA));
        assert_eq!(sorted(ListenerT::KEYS), with(keys::PROGRAM, keys::EVENTLISTENER_EXTRA));
    }

    #[test]
    fn unknown_key_is_located() {
        let mut diags = Diagnostics::default();
        read(
            "[supervisord]\n\n[program.a]\ncommand = \"x\"\nbogus = 1\n",
            Path::new("v.toml"),
            &mut diags,
        );
        assert_eq!(diags.errors.len(), 1);
        let e = &diags.errors[0];
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn values_and_lines() {
        let mut diags = Diagnostics::default();
        let text = "[supervisord]\numask = 0o022\n[program.a]\ncommand = [\"a\", \"b c\"]\nenvironment = { A = \"1\", B = 2 }\nautostart = false\n";
        let sections = read(text, Path::new("v.toml"), &mut diags);
        assert!(diags.errors.is_empty(), "{:?}", diags.errors);
        assert_eq!(sections[0].entries[0].1.data, RawData::Int(0o22));
        let modes = read("[unix_http_server]\nchmod = 700\n", Path::new("v.toml"), &mut diags);
        assert_eq!(modes[0].entries[0].1.data, RawData::Text("700".into()));
        let a = &sections[1];
        assert_eq!(a.name, "program:a");
        assert_eq!(a.line, Some(3));
        let get =
            |k: &str| a.entries.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("command").data, RawData::List(vec!["a".into(), "b c".into()]));
        assert_eq!(get("command").line, Some(4));
        assert_eq!(
            get("environment").data,
            RawData::Table(vec![("A".into(), "1".into()), ("B".into(), "2".into())])
        );
        assert_eq!(get("autostart").data, RawData::Bool(false));
    }
}
