//! vigil-config reads supervisord's INI dialect and Vigil's native TOML into one
//! validated [`Config`] model, and diffs two models for `update`.
//!
//! It is pure: no tokio, no spawning, and the environment is passed in by the
//! caller rather than read here. It does read the file system where supervisord
//! does: the config files, `[include]` globs, and the existence checks of log
//! directories and users.
//!
//! Pipeline: a reader per format (`ini`, `toml`) turns text into raw sections with
//! file and line; the loader follows `[include]`; duplicate sections are merged
//! (later keys win); `build` applies defaults, `%` expansion and the value rules.
//! Every problem is collected; any error means no `Config` at all. A bad line
//! hides nothing: bytes that are not UTF-8 are reported at their line and a
//! malformed INI line is reported and left out, and the rest is still checked.
//!
//! It is also where supervisord's vocabulary lives for every crate to share:
//! [`NameSpec`] and [`make_namespec`] (how processes are named), [`Signal`]'s
//! name table ([`Signal::parse`]), [`py_repr`] (values quoted in messages), the
//! config search order ([`search_paths`]) and a client's `[supervisorctl]`
//! section ([`read_supervisorctl`]).
//!
//! Deliberate differences from supervisord, each turning a silent surprise into an
//! error or a deterministic rule:
//! - relative paths (`logfile`, `pidfile`, `*_logfile`, `file`, ...) resolve
//!   against the directory of the file they are written in, not the daemon's cwd;
//! - a bare `%s` or `%d` (no `(name)`) is an error, not a dump of the expansion dict;
//! - `environment=` pairs must be separated by commas (supervisord silently drops
//!   what follows an unquoted `$` or space);
//! - a program listed in two `[group:x]` sections is an error;
//! - `[eventlistener:x]` names follow the same name rules as programs.

#![warn(missing_docs)]

mod build;
pub mod diff;
mod discover;
pub mod dotenv;
mod error;
mod expand;
mod ini;
pub mod keydocs;
mod keys;
pub mod model;
mod namespec;
mod raw;
mod signal;
mod supervisorctl;
mod toml;
mod values;

/// Pure entry points for the fuzz targets and their corpus replay test; not a
/// stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses an `environment=` value as the loader does.
    pub fn environment(text: &str) -> Result<Vec<(String, String)>, String> {
        crate::values::environment(text)
    }
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diff::{Apply, FieldChange, GroupChange, Plan, ProcessChange, diff};
pub use discover::{find_config_file, not_found_message, search_paths};
pub use error::{ConfigErrors, Diagnostic};
pub use expand::py_repr;
pub use model::*;
pub use namespec::{NameSpec, make_namespec};
pub use signal::BadSignal;
pub use supervisorctl::{
    DEFAULT_PROMPT, DEFAULT_SERVERURL, SupervisorctlError, read_supervisorctl,
};

use error::{Diagnostics, Place};
use raw::{RawData, RawSection, merge_sections};

/// A successfully loaded config and the warnings found on the way (unknown keys,
/// unmatched include globs, deprecated spellings).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The validated model.
    pub config: Config,
    /// Problems that did not stop the load, in file order then line order.
    pub warnings: Vec<Diagnostic>,
}

/// Facts from outside the files that expansion needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// `%(host_node_name)s`; [`load`] and [`load_str`] use the machine's host name.
    pub host_node_name: String,
}

impl LoadOptions {
    /// The options matching the running machine.
    pub fn from_system() -> Self {
        let host_node_name = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string());
        LoadOptions { host_node_name }
    }
}

/// Reads, expands and validates the config at `path` (made absolute against the
/// current directory). `env` provides `%(ENV_X)s`, `HOME` for `~` and `TMPDIR`
/// for the default `childlogdir`. The extension picks the reader: `.toml` is
/// TOML, anything else the supervisord INI dialect.
pub fn load(path: &Path, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigErrors> {
    load_with(path, env, &LoadOptions::from_system())
}

/// [`load`] with explicit [`LoadOptions`].
pub fn load_with(
    path: &Path,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    let mut diags = Diagnostics::default();
    let (path, text) = read_root(path, &mut diags)?;
    load_text(&text, &path, env, options, diags)
}

/// The root file made absolute against the current directory, and its text;
/// `diags` receives its encoding errors.
fn read_root(path: &Path, diags: &mut Diagnostics) -> Result<(PathBuf, String), ConfigErrors> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match read_file(&path, diags) {
        Ok(text) => Ok((path, text)),
        Err(err) => Err(ConfigErrors {
            errors: vec![
                Place { file: path.clone(), ..Place::default() }
                    .diag(format!("could not read config file: {err}")),
            ],
        }),
    }
}

/// Like [`load`], with the root file's text given; `path` names it in messages,
/// picks the reader by extension and anchors `%(here)s` and `[include]` globs.
pub fn load_str(
    text: &str,
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Loaded, ConfigErrors> {
    load_str_with(text, path, env, &LoadOptions::from_system())
}

/// [`load_str`] with explicit [`LoadOptions`].
pub fn load_str_with(
    text: &str,
    path: &Path,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
) -> Result<Loaded, ConfigErrors> {
    load_text(text, path, env, options, Diagnostics::default())
}

/// The loader behind every entry point; `diags` may already hold the root file's
/// encoding errors.
fn load_text(
    text: &str,
    path: &Path,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
    mut diags: Diagnostics,
) -> Result<Loaded, ConfigErrors> {
    let Some((sections, files)) = read_sections(text, path, env, options, &mut diags, None) else {
        return Err(ConfigErrors { errors: diags.errors });
    };
    let sections = merge_sections(sections);
    let ctx = build::Context {
        env,
        host_node_name: &options.host_node_name,
        root: path,
        files: &files,
        dirs: Default::default(),
    };
    let config = build::build(&sections, &ctx, &mut diags);
    diags.sort(&files);
    if diags.errors.is_empty() {
        Ok(Loaded { config, warnings: diags.warnings })
    } else {
        Err(ConfigErrors { errors: diags.errors })
    }
}

/// The front half of loading: the root file's sections, then those of its
/// `[include]` files, each with file and line, and the list of files read.
/// `None` (with the errors in `diags`, sorted) when a file could not be
/// tokenized at all. With `only`, just the sections so named (and `[include]`).
fn read_sections(
    text: &str,
    path: &Path,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
    diags: &mut Diagnostics,
    only: Option<&[&str]>,
) -> Option<(Vec<RawSection>, Vec<PathBuf>)> {
    let mut files = vec![path.to_path_buf()];
    let before = diags.errors.len();
    let with_include: Option<Vec<&str>> =
        only.map(|only| only.iter().copied().chain(["include"]).collect());
    let mut sections = read_any(text, path, diags, with_include.as_deref());
    // A file that could not be tokenized at all yields no sections; building
    // would only add noise ("does not include supervisord section").
    let mut unreadable = sections.is_empty() && diags.errors.len() > before;
    let includes = include_files(&sections, path, env, options, diags);
    for file in includes {
        match read_file(&file, diags) {
            Ok(text) => {
                let before = diags.errors.len();
                let mut included = read_any(&text, &file, diags, with_include.as_deref());
                unreadable |= included.is_empty() && diags.errors.len() > before;
                included.retain(|s| {
                    if s.name == "include" {
                        let place = Place {
                            file: s.file.to_path_buf(),
                            line: s.line,
                            section: Some(s.name.clone()),
                            key: None,
                        };
                        diags.warn(
                            &place,
                            "[include] in an included file is ignored (includes are not recursive)",
                        );
                        false
                    } else {
                        true
                    }
                });
                sections.extend(included);
                files.push(file);
            }
            Err(err) => {
                diags.error(
                    &Place { file: file.clone(), ..Place::default() },
                    format!("could not read included file: {err}"),
                );
            }
        }
    }
    if unreadable {
        diags.sort(&files);
        return None;
    }
    Some((sections, files))
}

/// Reads a config file as text. Bytes that are not UTF-8 are reported at their
/// line and replaced by U+FFFD, so that the rest of the file is still read and
/// checked; the load fails either way.
fn read_file(path: &Path, diags: &mut Diagnostics) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let bytes = err.into_bytes();
            for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
                if let Err(err) = std::str::from_utf8(line) {
                    let at = err.valid_up_to();
                    let place = Place {
                        file: path.to_path_buf(),
                        line: Some(u32::try_from(i + 1).unwrap_or(u32::MAX)),
                        ..Place::default()
                    };
                    diags.error(
                        &place,
                        format!(
                            "not valid UTF-8: byte 0x{:02x} at column {} (config files must be UTF-8)",
                            line[at],
                            at + 1
                        ),
                    );
                }
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}

fn read_any(
    text: &str,
    path: &Path,
    diags: &mut Diagnostics,
    only: Option<&[&str]>,
) -> Vec<RawSection> {
    if is_toml(path) {
        let mut sections = toml::read(text, path, diags);
        if let Some(only) = only {
            sections.retain(|section| only.contains(&section.name.as_str()));
        }
        sections
    } else {
        ini::read(text, path, diags, only)
    }
}

/// The root file's `[include] files=`: whitespace-separated globs (or a TOML
/// array) relative to the root's directory, each glob's matches sorted.
fn include_files(
    sections: &[RawSection],
    root: &Path,
    env: &BTreeMap<String, String>,
    options: &LoadOptions,
    diags: &mut Diagnostics,
) -> Vec<PathBuf> {
    // The last [include] of the root file wins, as with any duplicate section.
    let Some(section) = sections.iter().rev().find(|s| s.name == "include") else {
        return Vec::new();
    };
    let Some((_, value)) = section.entries.iter().rev().find(|(k, _)| k == "files") else {
        return Vec::new();
    };
    let place = Place {
        file: value.file.to_path_buf(),
        line: value.line,
        section: Some("include".into()),
        key: Some("files".into()),
    };
    let base = raw::here_of(root);
    let mut exp: expand::Expansions =
        env.iter().map(|(k, v)| (format!("ENV_{k}"), expand::Expansion::Str(v.clone()))).collect();
    exp.insert("here".into(), expand::Expansion::Str(base.display().to_string()));
    exp.insert("host_node_name".into(), expand::Expansion::Str(options.host_node_name.clone()));
    let patterns: Vec<String> = match &value.data {
        RawData::List(items) => items.clone(),
        RawData::Text(t) => t.split_whitespace().map(String::from).collect(),
        _ => {
            diags.error(&place, "expected a list of globs");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for pattern in patterns {
        let pattern = match expand::expand(&pattern, &exp, "include.files") {
            Ok(p) => p,
            Err(message) => {
                diags.error(&place, message);
                continue;
            }
        };
        let full = base.join(&pattern);
        let full = full.to_string_lossy();
        match glob::glob(&full) {
            Ok(paths) => {
                let mut matches: Vec<PathBuf> =
                    paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
                matches.sort();
                if matches.is_empty() {
                    diags.warn(&place, format!("No file matches via include \"{full}\""));
                }
                out.extend(matches);
            }
            Err(err) => diags.error(&place, format!("bad glob \"{full}\": {err}")),
        }
    }
    out
}

/// One line for `vigild --check`: `config OK: 3 programs, 2 groups, 5 processes`.
pub fn summary(config: &Config) -> String {
    let programs: std::collections::BTreeSet<(&str, &str)> =
        config.processes().map(|p| (p.group.as_str(), p.program.as_str())).collect();
    let plural =
        |n: usize, word: &str| if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") };
    format!(
        "config OK: {}, {}, {}",
        plural(programs.len(), "program"),
        plural(config.groups.len(), "group"),
        plural(config.processes().count(), "process").replace("processs", "processes")
    )
}
