//! The section reader: typed, `%`-expanded access to the keys of one raw section,
//! recording which keys were read so that the rest can be reported as unknown.
//!
//! Every value is reported at its own file and line; a value that does not parse
//! is reported and the caller's default is used, so that building goes on.

use crate::error::{Diagnostics, Locate, Place};
use crate::expand::{Expansion, Expansions, expand};
use crate::keys;
use crate::raw::{RawData, RawSection, RawValue};
use crate::values;

/// Where a section's header is: the place of errors about the section as a whole.
pub(super) fn section_place(section: &RawSection) -> Place {
    Place {
        file: section.file.to_path_buf(),
        line: section.line,
        section: Some(section.name.clone()),
        key: None,
    }
}

/// Where a value is, borrowed; becomes a [`Place`] only when reported.
#[derive(Clone, Copy)]
pub(super) struct Loc<'a> {
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
pub(super) struct Reader<'a> {
    pub(super) raw: &'a RawSection,
    used: Vec<bool>,
    /// Entry indices sorted by key, for a binary search.
    sorted: Vec<usize>,
    /// A bit per key present ([`key_bit`]): most lookups are for absent keys
    /// (a program section is asked for every key a program may have, about a
    /// hundred, and sets a few), and this settles most of them without a
    /// string comparison.
    present: u64,
}

/// One of 64 bits for `key`, from its length and its last two bytes, which
/// tell apart the keys that share a prefix (`stdout_logfile_maxbytes`,
/// `stdout_logfile_backups`).
fn key_bit(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let last = bytes.last().copied().unwrap_or(0) as usize;
    let before = bytes.len().checked_sub(2).map_or(0, |at| bytes[at] as usize);
    1 << ((bytes.len().wrapping_mul(31) ^ last.wrapping_mul(7) ^ before) % 64)
}

impl<'a> Reader<'a> {
    pub(super) fn new(raw: &'a RawSection) -> Self {
        let mut sorted: Vec<usize> = (0..raw.entries.len()).collect();
        sorted.sort_unstable_by(|&a, &b| raw.entries[a].0.cmp(&raw.entries[b].0));
        let present = raw.entries.iter().fold(0, |bits, (key, _)| bits | key_bit(key));
        Reader { raw, used: vec![false; raw.entries.len()], sorted, present }
    }

    fn index(&self, key: &str) -> Option<usize> {
        if self.present & key_bit(key) == 0 {
            return None;
        }
        let raw = self.raw;
        let at = self.sorted.binary_search_by(|&i| raw.entries[i].0.as_str().cmp(key)).ok()?;
        Some(self.sorted[at])
    }

    pub(super) fn section_place(&self) -> Place {
        section_place(self.raw)
    }

    pub(super) fn place(&self, key: &str, value: &'a RawValue) -> Loc<'a> {
        let key = self.index(key).map_or("", |i| self.raw.entries[i].0.as_str());
        Loc { section: &self.raw.name, key, value }
    }

    pub(super) fn raw(&mut self, key: &str) -> Option<&'a RawValue> {
        let i = self.index(key)?;
        self.used[i] = true;
        Some(&self.raw.entries[i].1)
    }

    pub(super) fn has(&self, key: &str) -> bool {
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
    pub(super) fn text(
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
    pub(super) fn get<T>(
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

    pub(super) fn opt<T>(
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
    pub(super) fn octal(
        &mut self,
        key: &str,
        exp: &Expansions,
        diags: &mut Diagnostics,
    ) -> Option<u32> {
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
    pub(super) fn list(
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
    pub(super) fn environment(
        &mut self,
        exp: &Expansions,
        diags: &mut Diagnostics,
    ) -> Vec<(String, String)> {
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
    pub(super) fn command(
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

    pub(super) fn warn_unknown(&self, diags: &mut Diagnostics) {
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
