//! `env_file` (Vigil extension): the key in `[supervisord]`, `[group:x]` and
//! program sections, and the loading of the files for each process.
//!
//! A process reads `[supervisord]`'s files, then its group's, then its own; a
//! later file wins over an earlier one. In a child's environment they sit
//! between `[supervisord] environment` and the program's `environment=`:
//! daemon environment < `[supervisord] environment` < env files <
//! `environment=`. A `${NAME}` in a file sees the names set before it (in
//! that file and the files read before it), then `[supervisord] environment`,
//! then the daemon's environment. The values are never expanded into other
//! keys (`%(ENV_X)s` does not see them), so they reach the child only.
//!
//! A file that cannot be read is an error at the `env_file` line naming it; a
//! bad line is an error at that line of the env file. Each file is read once
//! per load and each chain of files parsed once, however many processes share
//! it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::reader::Reader;
use crate::dotenv;
use crate::error::{Diagnostics, Locate, Place};
use crate::expand::Expansions;
use crate::model::EnvFileVars;
use crate::values;

/// Reads a section's `env_file` (one path or a list) and checks each file can
/// be opened; relative paths resolve against the directory of the file the
/// key is written in.
pub(super) fn key(
    r: &mut Reader<'_>,
    exp: &Expansions,
    env: &BTreeMap<String, String>,
    diags: &mut Diagnostics,
) -> Vec<PathBuf> {
    let Some(value) = r.raw("env_file") else { return Vec::new() };
    let here = value.here();
    let Some((items, _, place)) = r.list("env_file", exp, diags, false) else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    for item in items.iter().filter(|item| !item.is_empty()) {
        let path = values::normalize_path(item, &here, env);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_dir() => {
                diags.error(&place, format!("env file {} is a directory", path.display()));
            }
            Ok(_) => paths.push(path),
            Err(error) => {
                diags.error(&place, format!("cannot read env file {}: {error}", path.display()));
            }
        }
    }
    paths
}

/// Reads and parses env files for one load.
pub(super) struct Loader<'a> {
    /// `[supervisord] environment`.
    global: &'a BTreeMap<String, String>,
    /// The daemon's environment.
    env: &'a BTreeMap<String, String>,
    /// Each file's text; `None` when it could not be read (reported).
    texts: HashMap<PathBuf, Option<String>>,
    /// Merged variables by chain of files.
    merged: HashMap<Vec<PathBuf>, EnvFileVars>,
    /// Files whose errors were reported already.
    reported: HashSet<PathBuf>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(
        global: &'a BTreeMap<String, String>,
        env: &'a BTreeMap<String, String>,
    ) -> Loader<'a> {
        Loader {
            global,
            env,
            texts: HashMap::new(),
            merged: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// The variables the files of `chain` set, in order.
    pub(super) fn load(&mut self, chain: &[PathBuf], diags: &mut Diagnostics) -> EnvFileVars {
        if let Some(vars) = self.merged.get(chain) {
            return vars.clone();
        }
        let mut vars = match chain.split_last() {
            None => return EnvFileVars::default(),
            Some((_, before)) => self.load(before, diags).vars().clone(),
        };
        let path = &chain[chain.len() - 1];
        let text = self
            .texts
            .entry(path.clone())
            .or_insert_with(|| match std::fs::read(path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => Some(text),
                    Err(error) => {
                        let line = error.as_bytes()[..error.utf8_error().valid_up_to()]
                            .iter()
                            .filter(|&&b| b == b'\n')
                            .count();
                        let place = file_place(path, Some(line as u32 + 1));
                        diags.error(&place, "env file: not UTF-8");
                        None
                    }
                },
                Err(error) => {
                    diags.error(&file_place(path, None), format!("cannot read env file: {error}"));
                    None
                }
            })
            .clone();
        if let Some(text) = text {
            let (global, env) = (self.global, self.env);
            let lookup = |name: &str| {
                vars.get(name).or_else(|| global.get(name)).or_else(|| env.get(name)).cloned()
            };
            match dotenv::parse(&text, lookup) {
                Ok(pairs) => vars.extend(pairs),
                Err(error) => {
                    if self.reported.insert(path.clone()) {
                        let place = file_place(path, Some(error.line));
                        diags.error(&place, format!("env file: {}", error.message));
                    }
                }
            }
        }
        let vars = EnvFileVars::new(vars);
        self.merged.insert(chain.to_vec(), vars.clone());
        vars
    }
}

fn file_place(path: &std::path::Path, line: Option<u32>) -> impl Locate {
    Place { file: path.to_path_buf(), line, section: None, key: None }
}
