//! Turns merged raw sections into the validated [`Config`]: supervisord's defaults,
//! `%` expansion per place, value rules, `numprocs` expansion, `[group:x]`
//! membership, Vigil's extension keys and cross-section checks (`depends_on`).
//!
//! Every problem is pushed to the [`Diagnostics`] sink and building continues with
//! a default, so one load reports every error. The caller discards the result when
//! any error was reported.
//!
//! One module per responsibility: `reader` gives typed access to one section's
//! keys; `supervisord`, `servers` and `program` read their sections; `probes`
//! the `ready_*`/`live_*` keys; `groups` reads `[group:x]` and assembles the
//! groups; `deps` resolves `depends_on`. This module runs them in order.

mod cgroups;
mod deps;
mod envfiles;
mod groups;
mod probes;
mod program;
mod reader;
mod rlimits;
mod servers;
mod supervisord;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Diagnostics, Place};
use crate::expand::{Expansion, Expansions};
use crate::model::*;
use crate::raw::{RawSection, here_of};
use crate::values;
use reader::{Reader, section_place};

/// Inputs that come from outside the files.
pub(crate) struct Context<'a> {
    pub(crate) env: &'a BTreeMap<String, String>,
    pub(crate) host_node_name: &'a str,
    pub(crate) root: &'a Path,
    pub(crate) files: &'a [PathBuf],
    /// Directories found to exist during this load.
    pub(crate) dirs: values::KnownDirs,
}

fn env_expansions(env: &BTreeMap<String, String>) -> Expansions {
    env.iter().map(|(k, v)| (format!("ENV_{k}"), Expansion::Str(v.clone()))).collect()
}

/// `base` plus the names of one place.
fn with(base: &Expansions, extra: &[(&str, Expansion)]) -> Expansions {
    let mut e = base.clone();
    for (k, v) in extra {
        e.insert((*k).to_string(), v.clone());
    }
    e
}

/// `%(here)s` for a section: the directory of the file it is written in.
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

/// Builds the model from the merged sections of every file, reporting into `diags`.
pub(crate) fn build(sections: &[RawSection], ctx: &Context<'_>, diags: &mut Diagnostics) -> Config {
    let env_exp = env_expansions(ctx.env);
    let host = Expansion::Str(ctx.host_node_name.to_string());

    let supervisord_section = sections.iter().find(|s| s.name == "supervisord");
    let supervisord = supervisord::supervisord(supervisord_section, ctx, &env_exp, &host, diags);
    // [supervisord] environment= keys become ENV_<K> for every other section.
    let mut global_exp = env_exp.clone();
    for (k, v) in &supervisord.environment {
        global_exp.insert(format!("ENV_{k}"), Expansion::Str(v.clone()));
    }
    let global_exp = global_exp.share();

    let others = other_sections(sections, ctx, &global_exp, diags);
    // [group:x] sections first: membership decides each program's group_name.
    let (membership, group_sections) =
        groups::read_groups(&others.groups, &global_exp, &host, ctx.env, diags);
    let mut programs: Vec<Program> = Vec::new();
    for section in sections {
        let (kind_word, raw_name) = match section.name.split_once(':') {
            Some((k @ ("program" | "fcgi-program" | "eventlistener"), n)) => (k, n),
            _ => continue,
        };
        programs.extend(program::program(
            kind_word,
            raw_name,
            section,
            ctx,
            &global_exp,
            &host,
            &membership,
            diags,
        ));
    }
    // Dependencies first, while every program still holds its processes.
    let resolved = deps::resolve_dependencies(&programs, diags);
    for program in &mut programs {
        if let Some(deps) = resolved.get(&program.name) {
            for process in &mut program.processes {
                process.depends_on = deps.clone();
            }
        }
    }
    // Env files: [supervisord]'s, then the group's, then the program's own.
    let group_files: std::collections::HashMap<&str, &[PathBuf]> =
        group_sections.iter().map(|g| (g.name(), g.env_file())).collect();
    let mut env_files = envfiles::Loader::new(&supervisord.environment, ctx.env);
    for process in programs.iter_mut().flat_map(|p| p.processes.iter_mut()) {
        let own = std::mem::take(&mut process.env_files);
        let group = group_files.get(process.group.as_str()).copied().unwrap_or_default();
        let chain: Vec<PathBuf> =
            supervisord.env_file.iter().chain(group).chain(&own).cloned().collect();
        process.env_file_vars = env_files.load(&chain, diags);
        process.env_files = chain;
    }
    drop(group_files);
    let groups = groups::assemble(&mut programs, group_sections, diags);

    Config {
        source: ctx.root.to_path_buf(),
        files: ctx.files.to_vec(),
        supervisord,
        unix_http_server: others.unix_http_server,
        inet_http_server: others.inet_http_server,
        supervisorctl: others.supervisorctl,
        rpcinterfaces: others.rpcinterfaces,
        ctlplugins: others.ctlplugins,
        groups,
    }
}

/// The sections other than `[supervisord]` and the program-like ones.
struct OtherSections<'a> {
    unix_http_server: Option<UnixHttpServer>,
    inet_http_server: Option<InetHttpServer>,
    supervisorctl: Option<Supervisorctl>,
    rpcinterfaces: BTreeMap<String, BTreeMap<String, String>>,
    ctlplugins: BTreeMap<String, BTreeMap<String, String>>,
    /// `[group:x]` sections, read once every section has been seen.
    groups: Vec<&'a RawSection>,
}

/// Reads every section except `[supervisord]` and the program-like ones, in file
/// order; unknown sections are warned about.
fn other_sections<'a>(
    sections: &'a [RawSection],
    ctx: &Context<'_>,
    global_exp: &Expansions,
    diags: &mut Diagnostics,
) -> OtherSections<'a> {
    let mut out = OtherSections {
        unix_http_server: None,
        inet_http_server: None,
        supervisorctl: None,
        rpcinterfaces: BTreeMap::new(),
        ctlplugins: BTreeMap::new(),
        groups: Vec::new(),
    };
    for section in sections {
        let name = section.name.as_str();
        let place = section_place(section);
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
            let server = servers::unix_server(section, ctx, global_exp, diags);
            if out.unix_http_server.replace(server).is_some() {
                diags.error(&place, "only one [unix_http_server] section is supported");
            }
        } else if name.starts_with("inet_http_server") {
            let server = servers::inet_server(section, global_exp, diags);
            if out.inet_http_server.replace(server).is_some() {
                diags.error(&place, "only one [inet_http_server] section is supported");
            }
        } else if name == "supervisorctl" {
            out.supervisorctl = Some(servers::ctl(section, ctx, global_exp, diags));
        } else if let Some(x) = name.strip_prefix("rpcinterface:") {
            let keys = servers::verbatim(section, diags);
            if !keys.contains_key("supervisor.rpcinterface_factory") {
                diags.error(&place, "section does not specify a supervisor.rpcinterface_factory");
            }
            out.rpcinterfaces.insert(x.to_string(), keys);
        } else if let Some(x) = name.strip_prefix("ctlplugin:") {
            let keys = servers::verbatim(section, diags);
            if !keys.contains_key("supervisor.ctl_factory") {
                diags.warn(&place, "section does not specify a supervisor.ctl_factory");
            }
            out.ctlplugins.insert(x.to_string(), keys);
        } else if name.starts_with("group:") {
            out.groups.push(section);
        } else if name.starts_with("program:")
            || name.starts_with("fcgi-program:")
            || name.starts_with("eventlistener:")
        {
            // Handled by `build`, once group membership is known.
        } else {
            diags.warn(&place, "unknown section (ignored)");
        }
    }
    out
}
