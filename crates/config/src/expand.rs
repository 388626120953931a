//! supervisord's `%` expansion: Python's `value % dict` restricted to what configs use.
//!
//! Supported: `%%`, and `%(name)` followed by optional flags (`-`, `0`, ` `, `+`),
//! a width, a precision and one of the conversions `s`, `r`, `d`, `i`, `u`, `x`,
//! `X`, `o`. The error texts are supervisord's (`expand()` in `options.py`).
//!
//! Deliberate difference: a bare `%s` (no mapping key) is an error here. Python
//! formats the whole expansion dict into the value, which is never what a config
//! author meant (`command=date +%s`).

use std::collections::BTreeMap;
use std::rc::Rc;

/// A value available to expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expansion {
    Str(String),
    Int(i64),
}

/// The names available at one place of the config.
///
/// Cheap to clone: the large, shared part (one `ENV_X` per environment variable)
/// sits behind an `Rc`, and each place adds its few names (`here`,
/// `program_name`, `process_num`, ...) to a small local map. Loading 5,000
/// programs would otherwise copy the whole environment twice per program.
///
/// The local part is a map, not a list, because a program's own `environment=`
/// adds one `ENV_X` per pair: a list searched on every insert made a line of
/// 64k pairs take seconds and a line of a few megabytes take minutes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expansions {
    shared: Rc<BTreeMap<String, Expansion>>,
    local: BTreeMap<String, Expansion>,
}

impl Expansions {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a name for this place (and clones made from it later).
    pub(crate) fn insert(&mut self, name: String, value: Expansion) {
        self.local.insert(name, value);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Expansion> {
        self.local.get(name).or_else(|| self.shared.get(name))
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every name, sorted, for the "Available names" error text.
    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .shared
            .keys()
            .map(String::as_str)
            .chain(self.local.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Moves the local names into a new shared map, for a scope many places inherit.
    pub(crate) fn share(self) -> Self {
        let mut map = (*self.shared).clone();
        map.extend(self.local);
        Expansions { shared: Rc::new(map), local: BTreeMap::new() }
    }
}

impl FromIterator<(String, Expansion)> for Expansions {
    fn from_iter<I: IntoIterator<Item = (String, Expansion)>>(iter: I) -> Self {
        Expansions { shared: Rc::new(iter.into_iter().collect()), local: BTreeMap::new() }
    }
}

/// Expands `value`; `name` is `section.option`, used in the error text.
pub(crate) fn expand(value: &str, expansions: &Expansions, name: &str) -> Result<String, String> {
    if !value.contains('%') {
        return Ok(value.to_string());
    }
    format(value, expansions).map_err(|err| match err {
        FormatError::Missing(key) => {
            let available = expansions.names();
            format!(
                "Format string {} for {} contains names ({}) which cannot be expanded. Available names: {}",
                py_repr(value),
                py_repr(name),
                py_repr(&key),
                available.join(", ")
            )
        }
        FormatError::Bad(reason) => {
            format!("Format string {} for {} is badly formatted: {reason}", py_repr(value), py_repr(name))
        }
    })
}

enum FormatError {
    Missing(String),
    Bad(String),
}

/// Python's `repr()` of a str, as supervisord's messages quote values: single
/// quotes unless the text holds a `'` and no `"`, backslash escapes for the
/// quote, `\\`, `\n`, `\r`, `\t`, and `\xNN` for the other control characters
/// (C0, DEL and C1, which Python does not print as they are).
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn format(value: &str, expansions: &Expansions) -> Result<String, FormatError> {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let Some(&next) = chars.get(i) else {
            return Err(FormatError::Bad("incomplete format".into()));
        };
        if next == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        if next != '(' {
            return Err(FormatError::Bad(format!(
                "a '%' must be followed by '(name)' or '%' (write '%%' for a literal '%') at index {start}"
            )));
        }
        // Python matches nested parentheses inside the key.
        let mut depth = 1;
        let key_start = i + 1;
        i += 1;
        while i < chars.len() && depth > 0 {
            match chars[i] {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        if depth > 0 {
            return Err(FormatError::Bad("incomplete format key".into()));
        }
        let key: String = chars[key_start..i - 1].iter().collect();
        let mut left = false;
        let mut zero = false;
        let mut sign: Option<char> = None;
        while let Some(&flag) = chars.get(i) {
            match flag {
                '-' => left = true,
                '0' => zero = true,
                '+' => sign = Some('+'),
                ' ' => {
                    if sign.is_none() {
                        sign = Some(' ');
                    }
                }
                '#' => {}
                _ => break,
            }
            i += 1;
        }
        let mut width = 0usize;
        while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
            width = width.saturating_mul(10).saturating_add(d as usize);
            i += 1;
        }
        let mut precision: Option<usize> = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut p = 0usize;
            while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                p = p.saturating_mul(10).saturating_add(d as usize);
                i += 1;
            }
            precision = Some(p);
        }
        let Some(&conversion) = chars.get(i) else {
            return Err(FormatError::Bad("incomplete format".into()));
        };
        i += 1;
        let Some(found) = expansions.get(&key) else {
            return Err(FormatError::Missing(key));
        };
        let body = match conversion {
            's' | 'r' => {
                let mut text = match found {
                    Expansion::Str(s) if conversion == 'r' => py_repr(s),
                    Expansion::Str(s) => s.clone(),
                    Expansion::Int(n) => n.to_string(),
                };
                if let Some(p) = precision {
                    text = text.chars().take(p).collect();
                }
                pad(text, width, left)
            }
            'd' | 'i' | 'u' | 'x' | 'X' | 'o' => {
                let Expansion::Int(n) = found else {
                    return Err(FormatError::Bad(format!(
                        "%{conversion} format: a real number is required, not str"
                    )));
                };
                let digits = match conversion {
                    'x' => format!("{:x}", n.unsigned_abs()),
                    'X' => format!("{:X}", n.unsigned_abs()),
                    'o' => format!("{:o}", n.unsigned_abs()),
                    _ => n.unsigned_abs().to_string(),
                };
                let digits = match precision {
                    Some(p) if digits.len() < p => {
                        format!("{}{digits}", "0".repeat(p - digits.len()))
                    }
                    _ => digits,
                };
                let prefix = if *n < 0 {
                    "-".to_string()
                } else {
                    sign.map(String::from).unwrap_or_default()
                };
                if zero && !left && prefix.len() + digits.len() < width {
                    let zeros = "0".repeat(width - prefix.len() - digits.len());
                    format!("{prefix}{zeros}{digits}")
                } else {
                    pad(format!("{prefix}{digits}"), width, left)
                }
            }
            other => {
                return Err(FormatError::Bad(format!(
                    "unsupported format character {} (0x{:x}) at index {}",
                    py_repr(&other.to_string()),
                    other as u32,
                    i - 1
                )));
            }
        };
        out.push_str(&body);
    }
    Ok(out)
}

fn pad(text: String, width: usize, left: bool) -> String {
    let len = text.chars().count();
    if len >= width {
        return text;
    }
    let fill = " ".repeat(width - len);
    if left { format!("{text}{fill}") } else { format!("{fill}{text}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Expansions {
        let mut e = Expansions::new();
        e.insert("here".into(), Expansion::Str("/etc".into()));
        e.insert("program_name".into(), Expansion::Str("web".into()));
        e.insert("process_num".into(), Expansion::Int(7));
        e.insert("ENV_HOME".into(), Expansion::Str("/root".into()));
        e
    }

    #[test]
    fn repr_quotes_like_python() {
        let cases = [
            ("plain", "'plain'"),
            ("it's", "\"it's\""),
            ("both ' and \"", "'both \\' and \"'"),
            ("a\\b\nc\td\re", "'a\\\\b\\nc\\td\\re'"),
            ("bell\u{7}del\u{7f}c1\u{85}", "'bell\\x07del\\x7fc1\\x85'"),
            ("caf\u{e9}", "'caf\u{e9}'"),
        ];
        for (text, repr) in cases {
            assert_eq!(py_repr(text), repr, "{text:?}");
        }
    }

    #[test]
    fn accepts() {
        let cases = [
            ("plain", "plain"),
            ("%(here)s/log", "/etc/log"),
            ("%(program_name)s_%(process_num)02d", "web_07"),
            ("%(process_num)d", "7"),
            ("%(process_num)s", "7"),
            ("%(process_num)3d|", "  7|"),
            ("%(process_num)-3d|", "7  |"),
            ("%(process_num)03d", "007"),
            ("%(process_num)x", "7"),
            ("%(program_name)5s", "  web"),
            ("%(program_name)-5s|", "web  |"),
            ("%(program_name).2s", "we"),
            ("%(program_name)r", "'web'"),
            ("100%%", "100%"),
            ("%%(here)s", "%(here)s"),
            ("%(ENV_HOME)s/.x", "/root/.x"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &names(), "s.k").as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            (
                "%(nope)s",
                "contains names ('nope') which cannot be expanded. Available names: ENV_HOME, here, process_num, program_name",
            ),
            ("50%", "is badly formatted: incomplete format"),
            ("+%Y", "is badly formatted: a '%' must be followed by '(name)'"),
            ("%d", "is badly formatted"),
            ("%s", "is badly formatted"),
            ("%(here)", "is badly formatted: incomplete format"),
            ("%(here", "is badly formatted: incomplete format key"),
            ("%(here)d", "is badly formatted: %d format: a real number is required, not str"),
            ("%(here)q", "is badly formatted: unsupported format character 'q' (0x71) at index 7"),
        ];
        for (input, expected) in cases {
            let err = expand(input, &names(), "program:x.command").unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "Format string {} for 'program:x.command' ",
                    py_repr(input)
                )),
                "{err}"
            );
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
