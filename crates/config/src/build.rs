//! Turns merged raw sections into the validated [`Config`]: supervisord's defaults,
//! `%` expansion per place, value rules, `numprocs` expansion, `[group:x]`
//! membership, Vigil's extension keys and cross-section checks (`depends_on`).
//!
//! Every problem is pushed to the [`Diagnostics`] sink and building continues with
//! a default, so one load reports every error. The caller discards the result when
//! any error was reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::error::{Diagnostics, Locate, Place};
use crate::expand::{Expansion, Expansions, expand};
use crate::keys;
use crate::model::*;
use crate::raw::{RawData, RawSection, RawValue, here_of};
use crate::values;

/// Inputs that come from outside the files.
pub(crate) struct Context<'a> {
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) host_node_name: &'a str,
    pub(crate) root: &'a Path,
    pub(crate) files: &'a [PathBuf],
}

/// Where a value is, borrowed; becomes a [`Place`] only when reported.
#[derive(Clone, Copy)]
struct Loc<'a> {
    section: &'a str,
    key: &'a str,
    value: &'a RawValue,
}

impl Locate for Loc<'_> {
    fn place(&self) -> Place {
        Place {
            file: self.value.file.to_path_buf(),
            line: self.value.line,
            section: Some(self.section.to_string()),
            key: Some(self.key.to_string()),
        }
    }
}

/// Reads the keys of one section, remembering which were used so the rest can be
/// reported as unknown.
struct Reader<'a> {
    raw: &'a RawSection,
    used: Vec<bool>,
    /// Entry indices sorted by key: most lookups are for absent keys, and a
    /// binary search settles those in a few comparisons.
    sorted: Vec<usize>,
}

impl<'a> Reader<'a> {
    fn new(raw: &'a RawSection) -> Self {
        let mut sorted: Vec<usize> = (0..raw.entries.len()).collect();
        sorted.sort_unstable_by(|&a, &b| raw.entries[a].0.cmp(&raw.entries[b].0));
        Reader { raw, used: vec![false; raw.entries.len()], sorted }
    }

    fn index(&self, key: &str) -> Option<usize> {
        let raw = self.raw;
        let at = self.sorted.binary_search_by(|&i| raw.entries[i].0.as_str().cmp(key)).ok()?;
        Some(self.sorted[at])
    }

    fn section_place(&self) -> Place {
        Place {
            file: self.raw.file.to_path_buf(),
            line: self.raw.line,
            section: Some(self.raw.name.clone()),
            key: None,
        }
    }

    fn place(&self, key: &str, value: &'a RawValue) -> Loc<'a> {
        let key = self.index(key).map_or("", |i| self.raw.entries[i].0.as_str());
        Loc { section: &self.raw.name, key, value }
    }

    fn raw(&mut self, key: &str) -> Option<&'a RawValue> {
        let i = self.index(key)?;
        self.used[i] = true;
        Some(&self.raw.entries[i].1)
    }

    fn has(&self, key: &str) -> bool {
        self.index(key).is_some()
    }

    /// Expands one text with the value's own `%(here)s`.
    fn expand_one(
        &self,
        key: &str,
        text: &str,
        value: &RawValue,
        exp: &Expansions,
    ) -> Result<String, String> {
        if !text.contains('%') {
            return Ok(text.to_string());
        }
        let name = format!("{}.{}", self.raw.name, key);
        let here = value.here().display().to_string();
        if exp.get("here") == Some(&Expansion::Str(here.clone())) || !exp.contains_key("here") {
            expand(text, exp, &name)
        } else {
            let mut own = exp.clone();
            own.insert("here".into(), Expansion::Str(here));
            expand(text, &own, &name)
        }
    }

    /// A scalar value as expanded text, with its place; errors are reported.
    fn text(
        &mut self,
        key: &str,
        exp: &Expansions,
        diags: &mut Diagnostics,
    ) -> Option<(String, Loc<'a>)> {
        let value = self.raw(key)?;
        let place = self.place(key, value);
        let text = match &value.data {
            RawData::Text(t) => t.clone(),
            RawData::Int(n) => n.to_string(),
            RawData::Bool(b) => b.to_string(),
            RawData::Float(f) => f.to_string(),
            RawData::List(_) | RawData::Table(_) => {
                diags.error(&place, "expected a single value, not a list or table");
                return None;
            }
        };
        if !text.contains('%') {
            return Some((text, place));
        }
        match self.expand_one(key, &text, value, exp) {
            Ok(text) => Some((text, place)),
            Err(message) => {
                diags.error(&place, message);
                None
            }
        }
    }

    /// A typed value, or `default` when absent or invalid (invalid is reported).
    fn get<T>(
        &mut self,
        key: &str,
        exp: &Expansions,
        diags: &mut Diagnostics,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.text(key, exp, diags) {
            Some((text, place)) => match parse(&text) {
                Ok(v) => v,
                Err(message) => {
                    diags.error(&place, message);
                    default
                }
            },
            None => default,
        }
    }

    fn opt<T>(
        &mut self,
        key: &str,
        exp: &Expansions,
        diags: &mut Diagnostics,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (text, place) = self.text(key, exp, diags)?;
        parse(&text).map_err(|message| diags.error(&place, message)).ok()
    }

    /// An octal mode: TOML integers are taken as the number itself.
    fn octal(&mut self, key: &str, exp: &Expansions, diags: &mut Diagnostics) -> Option<u32> {
        if let Some(value) = self.raw.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            && let RawData::Int(n) = value.data
        {
            let _ = self.raw(key);
            return u32::try_from(n).ok().filter(|n| *n <= 0o7777).or_else(|| {
                diags.error(&self.place(key, value), format!("{n} is not a valid file mode"));
                None
            });
        }
        self.opt(key, exp, diags, values::octal)
    }

    /// A list: comma-separated text (or `split` for whitespace lists), or a TOML array.
    fn list(
        &mut self,
        key: &str,
        exp: &Expansions,
        diags: &mut Diagnostics,
        whitespace: bool,
    ) -> Option<(Vec<String>, String, Loc<'a>)> {
        let value = self.raw(key)?;
        let place = self.place(key, value);
        match &value.data {
            RawData::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match self.expand_one(key, item, value, exp) {
                        Ok(t) => out.push(t.trim().to_string()),
                        Err(message) => diags.error(&place, message),
                    }
                }
                let written = out.join(", ");
                Some((out, written, place))
            }
            RawData::Table(_) => {
                diags.error(&place, "expected a list, not a table");
                None
            }
            _ => {
                let (text, place) = self.text(key, exp, diags)?;
                let items = if whitespace {
                    text.split_whitespace().map(String::from).collect()
                } else {
                    values::list_of_strings(&text)
                };
                Some((items, text, place))
            }
        }
    }

    /// `environment=`: a `KEY=val,...` string or a TOML table.
    fn environment(&mut self, exp: &Expansions, diags: &mut Diagnostics) -> Vec<(String, String)> {
        let Some(value) = self.raw("environment") else { return Vec::new() };
        let place = self.place("environment", value);
        match &value.data {
            RawData::Table(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| match self.expand_one("environment", v, value, exp) {
                    Ok(v) => Some((k.clone(), v)),
                    Err(message) => {
                        diags.error(&place, message);
                        None
                    }
                })
                .collect(),
            _ => match self.text("environment", exp, diags) {
                Some((text, place)) => values::environment(&text).unwrap_or_else(|message| {
                    diags.error(&place, message);
                    Vec::new()
                }),
                None => Vec::new(),
            },
        }
    }

    /// `command=` (or a probe's command): shell-split text, or a TOML array taken as argv.
    fn command(
        &mut self,
        key: &str,
        exp: &Expansions,
        diags: &mut Diagnostics,
    ) -> Option<(Vec<String>, String)> {
        let value = self.raw(key)?;
        let place = self.place(key, value);
        if let RawData::List(items) = &value.data {
            let mut argv = Vec::new();
            for item in items {
                match self.expand_one(key, item, value, exp) {
                    Ok(t) => argv.push(t),
                    Err(message) => {
                        diags.error(&place, message);
                        return None;
                    }
                }
            }
            if argv.is_empty() || argv[0].is_empty() {
                diags.error(&place, "command is empty");
                return None;
            }
            let line =
                shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
            return Some((argv, line));
        }
        let (text, place) = self.text(key, exp, diags)?;
        match values::command(&text) {
            Ok(argv) => Some((argv, text)),
            Err(message) => {
                diags.error(&place, message);
                None
            }
        }
    }

    fn warn_unknown(&self, diags: &mut Diagnostics) {
        for (i, (key, value)) in self.raw.entries.iter().enumerate() {
            if !self.used[i] {
                let elsewhere = keys::known_in(key);
                let message = if elsewhere.is_empty() {
                    "unknown key (ignored)".to_string()
                } else {
                    format!("unknown key (ignored); it is valid in {}", elsewhere.join(", "))
                };
                diags.warn(&self.place(key, value), message);
            }
        }
    }
}

fn env_expansions(env: &BTreeMap<String, String>) -> Expansions {
    env.iter().map(|(k, v)| (format!("ENV_{k}"), Expansion::Str(v.clone()))).collect()
}

fn with(base: &Expansions, extra: &[(&str, Expansion)]) -> Expansions {
    let mut e = base.clone();
    for (k, v) in extra {
        e.insert((*k).to_string(), v.clone());
    }
    e
}

fn here_str(section: &RawSection) -> Expansion {
    Expansion::Str(here_of(&section.file).display().to_string())
}

/// What a `[program:x]`-like section produced before groups are assembled.
struct Program {
    name: String,
    kind: GroupKind,
    /// The section header, for messages.
    place: Place,
    processes: Vec<ProcessConfig>,
    priority: i32,
    strategy: Option<Strategy>,
    max_restarts: Option<Option<u32>>,
    max_restarts_period: Option<Duration>,
    /// Raw `depends_on` items with their place, resolved once all programs are known.
    depends_on: Vec<(String, Place)>,
}

pub(crate) fn build(sections: &[RawSection], ctx: &Context<'_>, diags: &mut Diagnostics) -> Config {
    let env_exp = env_expansions(ctx.env);
    let host = Expansion::Str(ctx.host_node_name.to_string());
    let root_place = Place { file: ctx.root.to_path_buf(), ..Place::default() };

    let find = |name: &str| sections.iter().find(|s| s.name == name);

    // [supervisord]
    let supervisord = match find("supervisord") {
        Some(section) => supervisord(section, ctx, &env_exp, &host, diags),
        None => {
            diags.error(&root_place, ".ini file does not include supervisord section");
            supervisord(
                &RawSection {
                    name: "supervisord".into(),
                    file: Rc::from(ctx.root),
                    line: None,
                    entries: Vec::new(),
                },
                ctx,
                &env_exp,
                &host,
                diags,
            )
        }
    };
    // [supervisord] environment= keys become ENV_<K> for every other section.
    let mut global_exp = env_exp.clone();
    for (k, v) in &supervisord.environment {
        global_exp.insert(format!("ENV_{k}"), Expansion::Str(v.clone()));
    }
    let global_exp = global_exp.share();

    let mut unix_http_server = None;
    let mut inet_http_server = None;
    let mut supervisorctl = None;
    let mut rpcinterfaces = BTreeMap::new();
    let mut ctlplugins = BTreeMap::new();
    let mut group_sections = Vec::new();
    let mut programs: Vec<Program> = Vec::new();

    for section in sections {
        let name = section.name.as_str();
        let place = Place {
            file: section.file.to_path_buf(),
            line: section.line,
            section: Some(section.name.clone()),
            key: None,
        };
        if name == "supervisord" {
            continue;
        } else if name == "include" {
            // Read by the loader; only mark its key as known here.
            let mut reader = Reader::new(section);
            if reader.raw("files").is_none() {
                diags.error(&place, ".ini file has [include] section, but no files setting");
            }
            reader.warn_unknown(diags);
        } else if name.starts_with("unix_http_server") {
            let server = unix_server(section, ctx, &global_exp, diags);
            if unix_http_server.replace(server).is_some() {
                diags.error(&place, "only one [unix_http_server] section is supported");
            }
        } else if name.starts_with("inet_http_server") {
            let server = inet_server(section, &global_exp, diags);
            if inet_http_server.replace(server).is_some() {
                diags.error(&place, "only one [inet_http_server] section is supported");
            }
        } else if name == "supervisorctl" {
            supervisorctl = Some(ctl(section, ctx, &global_exp, diags));
        } else if let Some(x) = name.strip_prefix("rpcinterface:") {
            let keys = verbatim(section, diags);
            if !keys.contains_key("supervisor.rpcinterface_factory") {
                diags.error(&place, "section does not specify a supervisor.rpcinterface_factory");
            }
            rpcinterfaces.insert(x.to_string(), keys);
        } else if let Some(x) = name.strip_prefix("ctlplugin:") {
            let keys = verbatim(section, diags);
            if !keys.contains_key("supervisor.ctl_factory") {
                diags.warn(&place, "section does not specify a supervisor.ctl_factory");
            }
            ctlplugins.insert(x.to_string(), keys);
        } else if name.starts_with("group:") {
            group_sections.push(section);
        } else if name.starts_with("program:")
            || name.starts_with("fcgi-program:")
            || name.starts_with("eventlistener:")
        {
            // Handled below, once group membership is known.
        } else {
            diags.warn(&place, "unknown section (ignored)");
        }
    }

    // [group:x] sections first: membership decides each program's group_name.
    let mut membership: HashMap<String, String> = HashMap::new();
    let mut groups_raw = Vec::new();
    for section in &group_sections {
        let raw_name = &section.name["group:".len()..];
        let place = Place {
            file: section.file.to_path_buf(),
            line: section.line,
            section: Some(section.name.clone()),
            key: None,
        };
        let name = match values::name(raw_name) {
            Ok(n) => n,
            Err(message) => {
                diags.error(&place, message);
                continue;
            }
        };
        let exp = with(
            &global_exp,
            &[
                ("here", here_str(section)),
                ("host_node_name", host.clone()),
                ("group_name", Expansion::Str(name.clone())),
            ],
        );
        let mut reader = Reader::new(section);
        let members = match reader.list("programs", &exp, diags, false) {
            Some((items, _, _)) => items.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            None => {
                diags.error(&place, "section has no programs value");
                Vec::new()
            }
        };
        let priority =
            reader.get("priority", &exp, diags, 999, |s| values::integer_in::<i32>(s, "priority"));
        let (strategy, max_restarts, max_restarts_period) =
            group_extensions(&mut reader, &exp, diags);
        reader.warn_unknown(diags);
        let members_place = reader
            .raw
            .entries
            .iter()
            .find(|(k, _)| k == "programs")
            .map(|(k, v)| reader.place(k, v).place())
            .unwrap_or(place.clone());
        for member in &members {
            if let Some(other) = membership.insert(member.clone(), name.clone())
                && other != name
            {
                diags.error(
                    &members_place,
                    format!("program '{member}' is already a member of [group:{other}]"),
                );
            }
        }
        groups_raw.push((
            name,
            section,
            members,
            members_place,
            priority,
            strategy,
            max_restarts,
            max_restarts_period,
        ));
    }

    for section in sections {
        let (kind_word, raw_name) = match section.name.split_once(':') {
            Some((k @ ("program" | "fcgi-program" | "eventlistener"), n)) => (k, n),
            _ => continue,
        };
        if let Some(program) =
            program(kind_word, raw_name, section, ctx, &global_exp, &host, &membership, diags)
        {
            programs.push(program);
        }
    }

    // Assemble groups.
    let mut groups: Vec<GroupConfig> = Vec::new();
    let mut group_origin: HashMap<String, String> = HashMap::new();
    // Dependencies first, while every program still holds its processes.
    let resolved = resolve_dependencies(&programs, diags);
    for program in &mut programs {
        if let Some(deps) = resolved.get(&program.name) {
            for process in &mut program.processes {
                process.depends_on = deps.clone();
            }
        }
    }
    let mut in_group: BTreeSet<usize> = BTreeSet::new();
    // Programs and fcgi-programs by name: what a [group:x] may list.
    let mut groupable: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, program) in programs.iter().enumerate() {
        if !matches!(program.kind, GroupKind::EventListener(_)) {
            groupable.entry(program.name.clone()).or_default().push(index);
        }
    }
    for (name, section, members, members_place, priority, strategy, max_restarts, period) in
        groups_raw
    {
        let mut processes = Vec::new();
        for member in &members {
            let candidates = groupable.get(member.as_str()).map_or(&[][..], Vec::as_slice);
            match candidates {
                [] => diags.error(
                    &members_place,
                    format!("names unknown program or fcgi-program {member}"),
                ),
                [index] => {
                    // A program listed twice in one group is taken once.
                    in_group.insert(*index);
                    let one = &mut programs[*index];
                    processes.append(&mut one.processes);
                    if one.strategy.is_some()
                        || one.max_restarts.is_some()
                        || one.max_restarts_period.is_some()
                    {
                        diags.warn(
                            &one.place,
                            format!("strategy/max_restarts settings are ignored for a member of [group:{name}]; set them on the group"),
                        );
                    }
                }
                _ => diags.error(
                    &members_place,
                    format!("names ambiguous program or fcgi-program {member}"),
                ),
            }
        }
        let place = Place {
            file: section.file.to_path_buf(),
            line: section.line,
            section: Some(section.name.clone()),
            key: None,
        };
        add_group(
            &mut groups,
            &mut group_origin,
            GroupConfig {
                name,
                kind: GroupKind::Heterogeneous,
                priority,
                strategy: strategy.unwrap_or_default(),
                max_restarts: max_restarts.flatten(),
                max_restarts_period: period.unwrap_or(DEFAULT_MAX_RESTARTS_PERIOD),
                processes,
            },
            &place,
            diags,
        );
    }
    for (index, program) in programs.iter_mut().enumerate() {
        if in_group.contains(&index) {
            continue;
        }
        let place = program.place.clone();
        add_group(
            &mut groups,
            &mut group_origin,
            GroupConfig {
                name: program.name.clone(),
                kind: program.kind.clone(),
                priority: program.priority,
                strategy: program.strategy.unwrap_or_default(),
                max_restarts: program.max_restarts.flatten(),
                max_restarts_period: program
                    .max_restarts_period
                    .unwrap_or(DEFAULT_MAX_RESTARTS_PERIOD),
                processes: std::mem::take(&mut program.processes),
            },
            &place,
            diags,
        );
    }

    for group in &mut groups {
        let mut seen = BTreeSet::new();
        for process in &group.processes {
            if !seen.insert(process.name.clone()) {
                let place = Place {
                    file: process.origin.file.clone(),
                    line: Some(process.origin.line),
                    section: None,
                    key: None,
                };
                diags.error(
                    &place,
                    format!("duplicate process name '{}' in group '{}'", process.name, group.name),
                );
            }
        }
        group.processes.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        // A pushed-to Vec of these ~700-byte records starts at capacity 4; the
        // daemon keeps this model for its lifetime, so a one-process group would
        // otherwise carry three empty slots (about 2 KiB per program).
        group.processes.shrink_to_fit();
    }
    groups.shrink_to_fit();

    groups.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));

    Config {
        source: ctx.root.to_path_buf(),
        files: ctx.files.to_vec(),
        supervisord,
        unix_http_server,
        inet_http_server,
        supervisorctl,
        rpcinterfaces,
        ctlplugins,
        groups,
    }
}

const DEFAULT_MAX_RESTARTS_PERIOD: Duration = Duration::from_secs(60);

fn add_group(
    groups: &mut Vec<GroupConfig>,
    origin: &mut HashMap<String, String>,
    group: GroupConfig,
    place: &Place,
    diags: &mut Diagnostics,
) {
    let section = place.section.clone().unwrap_or_default();
    if let Some(first) = origin.get(&group.name) {
        diags.error(place, format!("group name '{}' is already used by [{first}]", group.name));
        return;
    }
    origin.insert(group.name.clone(), section);
    groups.push(group);
}

fn verbatim(section: &RawSection, diags: &mut Diagnostics) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in &section.entries {
        let text = match &value.data {
            RawData::Text(t) => t.clone(),
            RawData::Int(n) => n.to_string(),
            RawData::Bool(b) => b.to_string(),
            RawData::Float(f) => f.to_string(),
            RawData::List(items) => items.join(", "),
            RawData::Table(_) => {
                let place = Place {
                    file: value.file.to_path_buf(),
                    line: value.line,
                    section: Some(section.name.clone()),
                    key: Some(key.clone()),
                };
                diags.error(&place, "expected a single value, not a table");
                continue;
            }
        };
        out.insert(key.clone(), text);
    }
    out
}

fn supervisord(
    section: &RawSection,
    ctx: &Context<'_>,
    env_exp: &Expansions,
    host: &Expansion,
    diags: &mut Diagnostics,
) -> Supervisord {
    let mut r = Reader::new(section);
    let here = here_of(&section.file);
    let exp = with(env_exp, &[("here", here_str(section))]);
    let env_only = with(&exp, &[("host_node_name", host.clone())]);
    let env = ctx.env;

    let path_of = |r: &Reader<'_>, key: &str, text: &str| -> PathBuf {
        let base = r
            .raw
            .entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.here())
            .unwrap_or_else(|| here.clone());
        values::normalize_path(text, &base, env)
    };

    let logfile = match r.text("logfile", &exp, diags) {
        Some((text, place)) => match text.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => LogTarget::None,
            "syslog" => LogTarget::Syslog,
            "auto" => {
                diags.error(&place, "AUTO is only valid for program logs");
                LogTarget::None
            }
            _ => {
                let path = path_of(&r, "logfile", &text);
                if let Err(message) = values::existing_dirpath(&path) {
                    diags.error(&place, message);
                }
                LogTarget::Path(path)
            }
        },
        None => LogTarget::Path(values::normalize_path("supervisord.log", &here, env)),
    };
    let logfile_maxbytes = r.get("logfile_maxbytes", &exp, diags, 50 << 20, values::byte_size);
    let logfile_backups =
        r.get("logfile_backups", &exp, diags, 10, |s| values::integer_in(s, "logfile_backups"));
    let loglevel = r.get("loglevel", &exp, diags, LogLevel::Info, values::log_level);
    let pidfile = match r.text("pidfile", &exp, diags) {
        Some((text, place)) => {
            let path = path_of(&r, "pidfile", &text);
            if let Err(message) = values::existing_dirpath(&path) {
                diags.error(&place, message);
            }
            path
        }
        None => values::normalize_path("supervisord.pid", &here, env),
    };
    let umask = r.octal("umask", &exp, diags).unwrap_or(0o022);
    let nodaemon = r.get("nodaemon", &exp, diags, false, values::boolean);
    let silent = r.get("silent", &exp, diags, false, values::boolean);
    let minfds = r.get("minfds", &exp, diags, 1024, |s| values::integer_in(s, "minfds"));
    let minprocs = r.get("minprocs", &exp, diags, 200, |s| values::integer_in(s, "minprocs"));
    let nocleanup = r.get("nocleanup", &exp, diags, false, values::boolean);
    let childlogdir = match r.text("childlogdir", &exp, diags) {
        Some((text, place)) => {
            let path = path_of(&r, "childlogdir", &text);
            if let Err(message) = values::existing_directory(&path) {
                diags.error(&place, message);
            }
            path
        }
        // tempfile.gettempdir(), from the env map passed in.
        None => ["TMPDIR", "TEMP", "TMP"]
            .iter()
            .find_map(|k| env.get(*k).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp")),
    };
    let user = r.opt("user", &exp, diags, values::user);
    let directory = match r.text("directory", &exp, diags) {
        Some((text, place)) => {
            let path = path_of(&r, "directory", &text);
            if let Err(message) = values::existing_directory(&path) {
                diags.error(&place, message);
            }
            Some(path)
        }
        None => None,
    };
    let strip_ansi = r.get("strip_ansi", &exp, diags, false, values::boolean);
    let environment = r.environment(&env_only, diags).into_iter().collect();
    let identifier =
        r.get("identifier", &exp, diags, "supervisor".to_string(), |s| Ok(s.to_string()));
    let on_fatal = r.get("on_fatal", &exp, diags, OnFatal::Ignore, |s| {
        match s.trim().to_ascii_lowercase().as_str() {
            "ignore" => Ok(OnFatal::Ignore),
            "shutdown" => Ok(OnFatal::Shutdown),
            _ => Err(format!("'{s}' is not a valid on_fatal (ignore, shutdown)")),
        }
    });
    r.warn_unknown(diags);
    Supervisord {
        logfile,
        logfile_maxbytes,
        logfile_backups,
        loglevel,
        pidfile: Some(pidfile),
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
    }
}

fn credentials(
    r: &mut Reader<'_>,
    exp: &Expansions,
    diags: &mut Diagnostics,
) -> Option<Credentials> {
    let username = r.text("username", exp, diags).map(|(t, _)| t);
    let password = r.text("password", exp, diags).map(|(t, _)| t);
    match (username, password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        _ => {
            diags.error(
                &r.section_place(),
                "section contains incomplete authentication: If a username or a password is specified, both the username and password must be specified",
            );
            None
        }
    }
}

fn unix_server(
    section: &RawSection,
    ctx: &Context<'_>,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> UnixHttpServer {
    let mut r = Reader::new(section);
    let exp = with(global_exp, &[("here", here_str(section))]);
    let file = match r.text("file", &exp, diags) {
        Some((text, _)) => {
            let base = r.raw("file").map(RawValue::here).unwrap_or_else(|| here_of(&section.file));
            values::normalize_path(&text, &base, ctx.env)
        }
        None => {
            if !r.has("file") {
                diags.error(&r.section_place(), "section has no file value");
            }
            PathBuf::new()
        }
    };
    let chmod = r.octal("chmod", &exp, diags).unwrap_or(0o700);
    let chown = r.opt("chown", &exp, diags, values::user_group);
    let auth = credentials(&mut r, &exp, diags);
    r.warn_unknown(diags);
    UnixHttpServer { file, chmod, chown, auth }
}

fn inet_server(
    section: &RawSection,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> InetHttpServer {
    let mut r = Reader::new(section);
    let exp = with(global_exp, &[("here", here_str(section))]);
    if !r.has("port") {
        diags.error(&r.section_place(), "section has no port value");
    }
    let (host, port) = r.get("port", &exp, diags, (String::new(), 0), values::inet_address);
    let auth = credentials(&mut r, &exp, diags);
    let allow_unauthenticated = r.get("allow_unauthenticated", &exp, diags, false, values::boolean);
    r.warn_unknown(diags);
    InetHttpServer { host, port, auth, allow_unauthenticated }
}

fn ctl(
    section: &RawSection,
    ctx: &Context<'_>,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> Supervisorctl {
    let mut r = Reader::new(section);
    let exp = with(global_exp, &[("here", here_str(section))]);
    let serverurl = r.get("serverurl", &exp, diags, "http://localhost:9001".to_string(), |s| {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "'{s}' is not a valid serverurl: a unix:// path must be absolute"
                ));
            }
            Ok(format!("unix://{}", values::lexical_normalize(Path::new(path)).display()))
        } else if s.starts_with("http://") {
            Ok(s.to_string())
        } else {
            Err(format!("'{s}' is not a valid serverurl (http://host:port or unix:///path)"))
        }
    });
    let username = r.text("username", &exp, diags).map(|(t, _)| t);
    let password = r.text("password", &exp, diags).map(|(t, _)| t);
    let prompt = r.get("prompt", &exp, diags, "supervisor".to_string(), |s| Ok(s.to_string()));
    let history_file = r.text("history_file", &exp, diags).map(|(t, _)| {
        let base =
            r.raw("history_file").map(RawValue::here).unwrap_or_else(|| here_of(&section.file));
        values::normalize_path(&t, &base, ctx.env)
    });
    r.warn_unknown(diags);
    Supervisorctl { serverurl, username, password, prompt, history_file }
}

type GroupExtensions = (Option<Strategy>, Option<Option<u32>>, Option<Duration>);

fn group_extensions(
    r: &mut Reader<'_>,
    exp: &Expansions,
    diags: &mut Diagnostics,
) -> GroupExtensions {
    let strategy =
        r.opt("strategy", exp, diags, |s| match s.trim().to_ascii_lowercase().as_str() {
            "one_for_one" => Ok(Strategy::OneForOne),
            "one_for_all" => Ok(Strategy::OneForAll),
            "rest_for_one" => Ok(Strategy::RestForOne),
            _ => Err(format!("'{s}' is not a strategy (one_for_one, one_for_all, rest_for_one)")),
        });
    let max_restarts =
        r.opt("max_restarts", exp, diags, |s| match s.trim().to_ascii_lowercase().as_str() {
            "unlimited" | "none" => Ok(None),
            _ => values::integer_in::<u32>(s, "max_restarts").map(Some),
        });
    let period = r.opt("max_restarts_period", exp, diags, values::duration);
    if let Some(Duration::ZERO) = period {
        diags.error(&r.section_place(), "max_restarts_period must be greater than zero");
    }
    (strategy, max_restarts, period)
}

const EVENT_TYPES: &[&str] = &[
    "EVENT",
    "PROCESS_STATE",
    "PROCESS_STATE_STOPPED",
    "PROCESS_STATE_EXITED",
    "PROCESS_STATE_STARTING",
    "PROCESS_STATE_STOPPING",
    "PROCESS_STATE_BACKOFF",
    "PROCESS_STATE_FATAL",
    "PROCESS_STATE_RUNNING",
    "PROCESS_STATE_UNKNOWN",
    "PROCESS_LOG",
    "PROCESS_LOG_STDOUT",
    "PROCESS_LOG_STDERR",
    "PROCESS_COMMUNICATION",
    "PROCESS_COMMUNICATION_STDOUT",
    "PROCESS_COMMUNICATION_STDERR",
    "REMOTE_COMMUNICATION",
    "SUPERVISOR_STATE_CHANGE",
    "SUPERVISOR_STATE_CHANGE_RUNNING",
    "SUPERVISOR_STATE_CHANGE_STOPPING",
    "TICK",
    "TICK_5",
    "TICK_60",
    "TICK_3600",
    "PROCESS_GROUP",
    "PROCESS_GROUP_ADDED",
    "PROCESS_GROUP_REMOVED",
];

#[allow(clippy::too_many_arguments)]
fn program(
    kind_word: &str,
    raw_name: &str,
    section: &RawSection,
    ctx: &Context<'_>,
    global_exp: &Expansions,
    host: &Expansion,
    membership: &HashMap<String, String>,
    diags: &mut Diagnostics,
) -> Option<Program> {
    let section_place = Place {
        file: section.file.to_path_buf(),
        line: section.line,
        section: Some(section.name.clone()),
        key: None,
    };
    let name = match values::name(raw_name) {
        Ok(n) => n,
        Err(message) => {
            diags.error(&section_place, message);
            return None;
        }
    };
    let is_listener = kind_word == "eventlistener";
    let group_name = membership.get(&name).cloned().unwrap_or_else(|| name.clone());
    let common = with(
        global_exp,
        &[
            ("here", here_str(section)),
            ("program_name", Expansion::Str(name.clone())),
            ("group_name", Expansion::Str(group_name.clone())),
            ("host_node_name", host.clone()),
        ],
    );
    let mut r = Reader::new(section);
    let d = &mut *diags;

    // Options read once per program (common expansions only).
    let numprocs: u32 = r.get("numprocs", &common, d, 1, |s| values::integer_in(s, "numprocs"));
    let numprocs_start: u32 =
        r.get("numprocs_start", &common, d, 0, |s| values::integer_in(s, "numprocs_start"));
    let priority: i32 = r.get("priority", &common, d, if is_listener { -1 } else { 999 }, |s| {
        values::integer_in(s, "priority")
    });
    let autostart = r.get("autostart", &common, d, true, values::boolean);
    let startsecs: u64 = r.get("startsecs", &common, d, 1, |s| values::integer_in(s, "startsecs"));
    let startretries: u32 =
        r.get("startretries", &common, d, 3, |s| values::integer_in(s, "startretries"));
    let autorestart =
        r.get("autorestart", &common, d, AutoRestart::Unexpected, values::auto_restart);
    let exitcodes = match r.list("exitcodes", &common, d, false) {
        Some((items, written, place)) => {
            values::exitcodes(&items, &written).unwrap_or_else(|message| {
                d.error(&place, message);
                vec![0]
            })
        }
        None => vec![0],
    };
    let stopsignal = r.get("stopsignal", &common, d, Signal(15), values::signal);
    let stopwaitsecs: u64 =
        r.get("stopwaitsecs", &common, d, 10, |s| values::integer_in(s, "stopwaitsecs"));
    let stopasgroup = r.get("stopasgroup", &common, d, false, values::boolean);
    let killasgroup = r.get("killasgroup", &common, d, stopasgroup, values::boolean);
    if stopasgroup && !killasgroup {
        d.error(&section_place, "Cannot set stopasgroup=true and killasgroup=false");
    }
    let user = r.opt("user", &common, d, values::user);
    let redirect_stderr = r.get("redirect_stderr", &common, d, false, values::boolean);
    if is_listener && redirect_stderr {
        d.error(
            &section_place,
            "section sets redirect_stderr=true but this is not allowed because it will interfere with the eventlistener protocol",
        );
    }
    let umask = r.octal("umask", &common, d);
    let serverurl = r
        .text("serverurl", &common, d)
        .map(|(t, _)| t)
        .filter(|t| !t.trim().eq_ignore_ascii_case("auto"));
    let capture = [
        r.get("stdout_capture_maxbytes", &common, d, 0, values::byte_size),
        r.get("stderr_capture_maxbytes", &common, d, 0, values::byte_size),
    ];
    let events_enabled = [
        r.get("stdout_events_enabled", &common, d, false, values::boolean),
        r.get("stderr_events_enabled", &common, d, false, values::boolean),
    ];

    // Vigil extensions.
    let (strategy, max_restarts, max_restarts_period) = group_extensions(&mut r, &common, d);
    let backoff = backoff(&mut r, &common, d);
    let depends_on = match r.list("depends_on", &common, d, false) {
        Some((items, _, place)) => items.into_iter().map(|i| (i, place.place())).collect(),
        None => Vec::new(),
    };
    let restart_dependents = r.get("restart_dependents", &common, d, true, values::boolean);

    // fcgi-program / eventlistener extras.
    let kind = match kind_word {
        "fcgi-program" => GroupKind::Fcgi(fcgi_socket(&mut r, &common, d)),
        "eventlistener" => {
            let events = match r.list("events", &common, d, false) {
                Some((items, _, place)) => {
                    let mut events = Vec::new();
                    for item in items.iter().filter(|i| !i.is_empty()) {
                        let upper = item.to_ascii_uppercase();
                        if EVENT_TYPES.contains(&upper.as_str()) {
                            events.push(upper);
                        } else {
                            d.error(&place, format!("Unknown event type {item}"));
                        }
                    }
                    events
                }
                None => Vec::new(),
            };
            if events.is_empty() && !r.has("events") {
                d.error(&section_place, "section requires an \"events\" line");
            }
            let buffer_size: u32 =
                r.get("buffer_size", &common, d, 10, |s| values::integer_in(s, "buffer_size"));
            if buffer_size < 1 {
                d.error(
                    &section_place,
                    format!("section sets invalid buffer_size ({buffer_size})"),
                );
            }
            let result_handler = r.get(
                "result_handler",
                &common,
                d,
                "supervisor.dispatchers:default_handler".to_string(),
                |s| Ok(s.trim().to_string()),
            );
            GroupKind::EventListener(EventListenerConfig { events, buffer_size, result_handler })
        }
        _ => GroupKind::Program,
    };

    let has_process_num = r
        .raw
        .entries
        .iter()
        .find(|(k, _)| k == "process_name")
        .map(|(_, v)| match &v.data {
            RawData::Text(t) => t.contains("%(process_num)"),
            _ => false,
        })
        .unwrap_or(false);
    // Without %(process_num) every instance would get the same name; build one
    // so the error is not followed by a duplicate-name error per instance.
    let instances = if numprocs > 1 && !has_process_num {
        d.error(
            &section_place,
            "%(process_num) must be present within process_name when numprocs > 1",
        );
        1
    } else {
        numprocs
    };

    let mut processes = Vec::new();
    for process_num in numprocs_start..numprocs_start.saturating_add(instances) {
        let mut exp = with(
            &common,
            &[
                ("process_num", Expansion::Int(i64::from(process_num))),
                ("numprocs", Expansion::Int(i64::from(numprocs))),
            ],
        );
        let environment: BTreeMap<String, String> = r.environment(&exp, d).into_iter().collect();
        for (k, v) in &environment {
            exp.insert(format!("ENV_{k}"), Expansion::Str(v.clone()));
        }
        let directory = r.text("directory", &exp, d).map(|(t, _)| PathBuf::from(t));
        // Per instance, like command: a numprocs program probes its own port
        // (ready_http=http://127.0.0.1:80%(process_num)02d/).
        let readiness = probe(&mut r, "ready", &exp, d);
        let liveness = probe(&mut r, "live", &exp, d);
        let mut logs = Vec::new();
        for (i, (channel, [key, maxbytes_key, backups_key, syslog_key])) in
            LOG_KEYS.into_iter().enumerate()
        {
            let mut syslog = r.get(syslog_key, &exp, d, false, values::boolean);
            let logfile = match r.text(key, &exp, d) {
                Some((text, place)) => match text.trim().to_ascii_lowercase().as_str() {
                    "none" | "off" => LogTarget::None,
                    "auto" => LogTarget::Auto,
                    "syslog" => {
                        d.warn(&place, format!("For [{}], {key}=syslog but this is deprecated and will be removed. Use {channel}_syslog=true to enable syslog instead.", section.name));
                        syslog = true;
                        LogTarget::None
                    }
                    _ => {
                        let base = r
                            .raw(key)
                            .map(RawValue::here)
                            .unwrap_or_else(|| here_of(&section.file));
                        let path = values::normalize_path(&text, &base, ctx.env);
                        if let Err(message) = values::existing_dirpath(&path) {
                            d.error(&place, message);
                        }
                        LogTarget::Path(path)
                    }
                },
                None => LogTarget::Auto,
            };
            let maxbytes = r.get(maxbytes_key, &exp, d, 50 << 20, values::byte_size);
            let backups = r.get(backups_key, &exp, d, 10, |s| values::integer_in(s, "backups"));
            if logfile == LogTarget::Auto && maxbytes == 0 && (i == 0 || !redirect_stderr) {
                d.warn(&section_place, format!("For [{}], AUTO logging used for {key} without rollover, set maxbytes > 0 to avoid filling up filesystem unintentionally", section.name));
            }
            logs.push(LogConfig {
                logfile,
                maxbytes,
                backups,
                capture_maxbytes: capture[i],
                events_enabled: events_enabled[i],
                syslog,
            });
        }
        let mut stderr = logs.pop().expect("two channels were pushed");
        let stdout = logs.pop().expect("two channels were pushed");
        if redirect_stderr {
            if matches!(stderr.logfile, LogTarget::Path(_)) {
                d.warn(&section_place, format!("For [{}], redirect_stderr=true but stderr_logfile has also been set to a filename, the filename has been ignored", section.name));
            }
            stderr.logfile = LogTarget::None;
        }
        let process_name = match r.text("process_name", &exp, d) {
            Some((text, place)) => values::name(&text).unwrap_or_else(|message| {
                d.error(&place, message);
                name.clone()
            }),
            None => name.clone(),
        };
        let command = r.command("command", &exp, d);
        if command.is_none() && !r.has("command") {
            d.error(&section_place, "program section does not specify a command");
        }
        let Some((argv, command_line)) = command else { continue };
        processes.push(ProcessConfig {
            name: process_name,
            group: group_name.clone(),
            program: name.clone(),
            origin: Origin { file: section.file.to_path_buf(), line: section.line.unwrap_or(0) },
            command: argv,
            command_line,
            process_num,
            numprocs,
            priority,
            autostart,
            startsecs,
            startretries,
            autorestart,
            exitcodes: exitcodes.clone(),
            stopsignal,
            stopwaitsecs,
            stopasgroup,
            killasgroup,
            user: user.clone(),
            redirect_stderr,
            stdout,
            stderr,
            environment,
            directory,
            umask,
            serverurl: serverurl.clone(),
            backoff: backoff.clone(),
            depends_on: Vec::new(),
            restart_dependents,
            readiness,
            liveness,
        });
        if diags_too_many(d) {
            break;
        }
    }
    if numprocs == 0 {
        // Still read the per-process keys so they are not reported as unknown.
        for key in keys::PER_PROCESS {
            let _ = r.raw(key);
        }
    }
    r.warn_unknown(d);
    Some(Program {
        name,
        kind,
        place: section_place.clone(),
        processes,
        priority,
        strategy,
        max_restarts,
        max_restarts_period,
        depends_on,
    })
}

/// Stops expanding thousands of instances of a broken program into thousands of
/// identical errors.
fn diags_too_many(d: &Diagnostics) -> bool {
    d.errors.len() > 1000
}

fn fcgi_socket(r: &mut Reader<'_>, exp: &Expansions, d: &mut Diagnostics) -> FcgiSocket {
    let place = r.section_place();
    let socket = match r.text("socket", exp, d) {
        Some((text, place)) => {
            let text = text.trim().to_string();
            if let Some(path) = text.strip_prefix("unix://") {
                if !path.starts_with('/') {
                    d.error(&place, format!("Unix socket path {path} is not an absolute path"));
                }
            } else if let Some(addr) = text.strip_prefix("tcp://") {
                if let Err(message) = values::inet_address(addr).and_then(|(h, p)| {
                    if h.is_empty() { Err(format!("{addr} is not host:port")) } else { Ok((h, p)) }
                }) {
                    d.error(&place, message);
                }
            } else {
                d.error(&place, format!("Unknown socket format: {text}"));
            }
            text
        }
        None => {
            d.error(&place, "section requires a \"socket\" line");
            String::new()
        }
    };
    let backlog: u32 = r.get("socket_backlog", exp, d, 4096, |s| {
        values::integer_in::<u32>(s, "socket_backlog").and_then(|n| {
            if (1..=65535).contains(&n) {
                Ok(n)
            } else {
                Err(format!("Invalid socket_backlog value {n}"))
            }
        })
    });
    let is_unix = socket.starts_with("unix://");
    let owner = r.opt("socket_owner", exp, d, values::user_group);
    let mode = r.octal("socket_mode", exp, d);
    if !is_unix && owner.is_some() {
        d.error(&place, "socket_owner parameter is only supported for unix sockets");
    }
    if !is_unix && mode.is_some() {
        d.error(&place, "socket_mode parameter is only supported for unix sockets");
    }
    FcgiSocket { socket, backlog, owner, mode: mode.unwrap_or(0o700) }
}

fn backoff(r: &mut Reader<'_>, exp: &Expansions, d: &mut Diagnostics) -> BackoffConfig {
    let kind = r.get("backoff", exp, d, BackoffKind::Linear, |s| {
        match s.trim().to_ascii_lowercase().as_str() {
            "linear" => Ok(BackoffKind::Linear),
            "exponential" => Ok(BackoffKind::Exponential),
            _ => Err(format!("'{s}' is not a backoff (linear, exponential)")),
        }
    });
    let initial = r.get("backoff_initial", exp, d, Duration::from_secs(1), values::duration);
    let max = r.opt("backoff_max", exp, d, values::duration);
    let multiplier = r.get("backoff_multiplier", exp, d, 2.0, |s| {
        values::float(s)
            .and_then(|f| if f >= 1.0 { Ok(f) } else { Err(format!("'{s}' must be at least 1.0")) })
    });
    let jitter = r.get("backoff_jitter", exp, d, 0.0, |s| {
        values::float(s).and_then(|f| {
            if (0.0..=1.0).contains(&f) {
                Ok(f)
            } else {
                Err(format!("'{s}' must be between 0 and 1"))
            }
        })
    });
    let reset_after = r.opt("backoff_reset_after", exp, d, values::duration);
    if let Some(max) = max
        && max < initial
    {
        d.error(&r.section_place(), "backoff_max must not be smaller than backoff_initial");
    }
    BackoffConfig { kind, initial, max, multiplier, jitter, reset_after }
}

/// The per-channel log keys: (channel, [logfile, maxbytes, backups, syslog]).
const LOG_KEYS: [(&str, [&str; 4]); 2] = [
    (
        "stdout",
        ["stdout_logfile", "stdout_logfile_maxbytes", "stdout_logfile_backups", "stdout_syslog"],
    ),
    (
        "stderr",
        ["stderr_logfile", "stderr_logfile_maxbytes", "stderr_logfile_backups", "stderr_syslog"],
    ),
];

/// `ready_` / `live_` key names without building a string per lookup.
fn probe_key(prefix: &str, k: &str) -> &'static str {
    let ready = prefix == "ready";
    match k {
        "tcp" if ready => "ready_tcp",
        "tcp" => "live_tcp",
        "http" if ready => "ready_http",
        "http" => "live_http",
        "http_status" if ready => "ready_http_status",
        "http_status" => "live_http_status",
        "exec" if ready => "ready_exec",
        "exec" => "live_exec",
        "log" if ready => "ready_log",
        "log" => "live_log",
        "notify" if ready => "ready_notify",
        "notify" => "live_notify",
        "period" if ready => "ready_period",
        "period" => "live_period",
        "timeout" if ready => "ready_timeout",
        "timeout" => "live_timeout",
        "initial_delay" if ready => "ready_initial_delay",
        "initial_delay" => "live_initial_delay",
        "retries" => "ready_retries",
        _ => "live_failure_threshold",
    }
}

/// Reads one probe family: `ready_*` or `live_*`. See config/supervisord.conf.
fn probe(r: &mut Reader<'_>, prefix: &str, exp: &Expansions, d: &mut Diagnostics) -> Option<Probe> {
    let key = |k: &str| probe_key(prefix, k);
    let mut kinds: Vec<(&'static str, ProbeKind)> = Vec::new();
    let ready = prefix == "ready";
    if let Some((text, place)) = r.text(key("tcp"), exp, d) {
        match text.trim().rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>().ok().filter(|p| *p > 0) {
                Some(port) => {
                    let host = if host.is_empty() || host == "*" {
                        "127.0.0.1".to_string()
                    } else {
                        host.to_string()
                    };
                    kinds.push((key("tcp"), ProbeKind::Tcp { host, port }));
                }
                None => d.error(
                    &place,
                    format!("'{text}' has no valid port (host:port, port 1..65535)"),
                ),
            },
            None => d.error(&place, format!("'{text}' is not host:port")),
        }
    }
    let status = r.opt(key("http_status"), exp, d, |s| {
        values::integer_in::<u16>(s, "an HTTP status").and_then(|n| {
            if (100..=599).contains(&n) {
                Ok(n)
            } else {
                Err(format!("'{s}' is not an HTTP status (100..599)"))
            }
        })
    });
    if let Some((text, place)) = r.text(key("http"), exp, d) {
        let url = text.trim().to_string();
        if url.starts_with("http://") || url.starts_with("https://") {
            kinds
                .push((key("http"), ProbeKind::Http { url, expect_status: status.unwrap_or(200) }));
        } else {
            d.error(&place, format!("'{url}' is not an http:// or https:// URL"));
        }
    } else if status.is_some() {
        d.error(
            &r.section_place(),
            format!("{} is set but {} is not", key("http_status"), key("http")),
        );
    }
    if let Some((argv, _)) = r.command(key("exec"), exp, d) {
        kinds.push((key("exec"), ProbeKind::Exec { command: argv }));
    }
    if let Some((text, place)) = r.text(key("log"), exp, d) {
        if !ready {
            d.error(&place, "log probes are only supported for readiness (ready_log)");
        } else if text.is_empty() {
            d.error(&place, "the pattern is empty");
        } else {
            kinds.push((key("log"), ProbeKind::Log { pattern: text }));
        }
    }
    if let Some((text, place)) = r.text(key("notify"), exp, d) {
        match values::boolean(&text) {
            Ok(true) if ready => kinds.push((key("notify"), ProbeKind::Notify)),
            Ok(true) => {
                d.error(&place, "notify probes are only supported for readiness (ready_notify)")
            }
            Ok(false) => {}
            Err(message) => d.error(&place, message),
        }
    }
    let period = r.opt(key("period"), exp, d, values::duration);
    let timeout = r.opt(key("timeout"), exp, d, values::duration);
    let threshold_key = if ready { key("retries") } else { key("failure_threshold") };
    let threshold = r.opt(threshold_key, exp, d, |s| values::integer_in::<u32>(s, "a count"));
    let initial_delay = r.opt(key("initial_delay"), exp, d, values::duration);
    if kinds.len() > 1 {
        let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
        d.error(
            &r.section_place(),
            format!("only one {prefix} probe may be set, found {}", names.join(", ")),
        );
    }
    let Some((_, kind)) = kinds.into_iter().next() else {
        if period.is_some() || timeout.is_some() || threshold.is_some() || initial_delay.is_some() {
            let kinds = if ready {
                "ready_tcp, ready_http, ready_exec, ready_log or ready_notify"
            } else {
                "live_tcp, live_http or live_exec"
            };
            d.error(
                &r.section_place(),
                format!("{prefix}_* timing is set but no probe is ({kinds})"),
            );
        }
        return None;
    };
    let (default_period, default_threshold) =
        if ready { (Duration::from_secs(1), 30) } else { (Duration::from_secs(10), 3) };
    let period = period.unwrap_or(default_period);
    if period.is_zero() {
        d.error(&r.section_place(), format!("{} must be greater than zero", key("period")));
    }
    let failure_threshold = threshold.unwrap_or(default_threshold);
    if failure_threshold == 0 {
        d.error(&r.section_place(), format!("{threshold_key} must be at least 1"));
    }
    Some(Probe {
        kind,
        period,
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
        failure_threshold,
        initial_delay: initial_delay.unwrap_or(Duration::ZERO),
    })
}

const CONDITIONS: &[(&str, DependencyCondition)] = &[
    ("started", DependencyCondition::Started),
    ("running", DependencyCondition::Running),
    ("healthy", DependencyCondition::Healthy),
    ("completed", DependencyCondition::Completed),
    ("completed_successfully", DependencyCondition::CompletedSuccessfully),
];

/// Resolves `depends_on` against the programs and instances that exist and
/// rejects cycles (printing the cycle); returns each program's dependencies.
fn resolve_dependencies(
    programs: &[Program],
    d: &mut Diagnostics,
) -> HashMap<String, Vec<Dependency>> {
    let by_name: HashMap<&str, &Program> = programs.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut namespecs: HashMap<String, &Program> = HashMap::new();
    for p in programs {
        for process in &p.processes {
            namespecs.insert(format!("{}:{}", process.group, process.name), p);
        }
    }
    let mut resolved: HashMap<&str, Vec<Dependency>> = HashMap::new();
    let mut edges: BTreeMap<&str, Vec<(&str, Place)>> = BTreeMap::new();
    for p in programs {
        let mut deps = Vec::new();
        for (item, place) in &p.depends_on {
            if item.is_empty() {
                d.error(place, "empty entry in depends_on");
                continue;
            }
            let (name, condition) = match item.rsplit_once(':') {
                Some((name, cond)) => {
                    match CONDITIONS.iter().find(|(w, _)| *w == cond.trim().to_ascii_lowercase()) {
                        Some((_, c)) => (name.trim(), *c),
                        None => (item.as_str(), DependencyCondition::Running),
                    }
                }
                None => (item.as_str(), DependencyCondition::Running),
            };
            let target = if name.contains(':') {
                namespecs.get(name).copied()
            } else {
                by_name.get(name).copied()
            };
            let Some(target) = target else {
                let known = if name.contains(':') { "process" } else { "program" };
                d.error(place, format!("depends on unknown {known} '{name}'"));
                continue;
            };
            if condition == DependencyCondition::Healthy
                && target.processes.first().is_some_and(|t| t.readiness.is_none())
            {
                d.error(
                    place,
                    format!(
                        "'{item}' needs a readiness probe (ready_*) on program '{}'",
                        target.name
                    ),
                );
            }
            if matches!(
                condition,
                DependencyCondition::Completed | DependencyCondition::CompletedSuccessfully
            ) && target.processes.first().is_some_and(|t| t.autorestart == AutoRestart::True)
            {
                d.warn(
                    place,
                    format!(
                        "'{item}': program '{}' has autorestart=true and may never complete",
                        target.name
                    ),
                );
            }
            edges.entry(p.name.as_str()).or_default().push((target.name.as_str(), place.clone()));
            deps.push(Dependency { name: name.to_string(), condition });
        }
        resolved.insert(p.name.as_str(), deps);
    }

    // Cycle detection: depth-first search with colours; a grey node reached again
    // closes a cycle, printed from that node back to itself.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour: HashMap<&str, Colour> =
        programs.iter().map(|p| (p.name.as_str(), Colour::White)).collect();
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<(&'a str, Place)>>,
        colour: &mut HashMap<&'a str, Colour>,
        stack: &mut Vec<&'a str>,
        d: &mut Diagnostics,
    ) {
        colour.insert(node, Colour::Grey);
        stack.push(node);
        for (next, place) in edges.get(node).map(Vec::as_slice).unwrap_or(&[]) {
            match colour.get(next).copied().unwrap_or(Colour::Black) {
                Colour::White => visit(next, edges, colour, stack, d),
                Colour::Grey => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[start..].to_vec();
                    cycle.push(next);
                    d.error(place, format!("dependency cycle: {}", cycle.join(" -> ")));
                }
                Colour::Black => {}
            }
        }
        stack.pop();
        colour.insert(node, Colour::Black);
    }
    for p in programs {
        if colour.get(p.name.as_str()) == Some(&Colour::White) {
            visit(p.name.as_str(), &edges, &mut colour, &mut Vec::new(), d);
        }
    }

    resolved.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
