//! The reader-neutral form both readers produce: sections of keyed values, each
//! remembering the file and line it came from.
//!
//! The INI and TOML readers only tokenize; every default, expansion and value rule
//! lives in `build`, so both forms get identical semantics.

use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A value as written, before `%` expansion and typing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawData {
    /// Any INI value, or a TOML string.
    Text(String),
    /// TOML integer: taken as the number itself (so `umask = 0o022` works).
    Int(i64),
    /// TOML boolean.
    Bool(bool),
    /// TOML float.
    Float(f64),
    /// TOML array of scalars (`command`, `programs`, `exitcodes`, ...).
    List(Vec<String>),
    /// TOML table of scalars (`environment`).
    Table(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawValue {
    pub(crate) data: RawData,
    /// Shared by every value of a file: one allocation per file, not per value.
    pub(crate) file: Rc<Path>,
    pub(crate) line: Option<u32>,
}

impl RawValue {
    /// The directory `%(here)s` means for this value: the one of the file it is written in.
    pub(crate) fn here(&self) -> PathBuf {
        here_of(&self.file)
    }
}

/// `%(here)s` for a file: its directory, made absolute when the path allows it.
pub(crate) fn here_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// One section, keys lowercased, in the order written (duplicates merged away).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawSection {
    pub(crate) name: String,
    pub(crate) file: Rc<Path>,
    pub(crate) line: Option<u32>,
    pub(crate) entries: Vec<(String, RawValue)>,
}

impl RawSection {
    /// Sets a key; a later value replaces an earlier one in place.
    pub(crate) fn set(&mut self, key: String, value: RawValue) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }
}

/// Merges sections with the same name, later keys winning, like ConfigParser's
/// `strict=False`. The merged section keeps the position and origin of its first
/// occurrence.
pub(crate) fn merge_sections(sections: Vec<RawSection>) -> Vec<RawSection> {
    let mut merged: Vec<RawSection> = Vec::with_capacity(sections.len());
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for section in sections {
        match index.get(&section.name) {
            Some(&i) => {
                for (key, value) in section.entries {
                    merged[i].set(key, value);
                }
            }
            None => {
                index.insert(section.name.clone(), merged.len());
                merged.push(section);
            }
        }
    }
    merged
}
