//! The INI reader: supervisord's `RawConfigParser` dialect, tokenized by rust-ini.
//!
//! rust-ini is configured to match ConfigParser as far as its options reach
//! (inline comments only after whitespace, brackets in section names, no quote or
//! escape processing, indented continuation lines; `dialect_matches_configparser`
//! below holds the cases checked against Python) and wrapped with the steps it
//! lacks: the BOM is stripped, indented comment lines are dropped before parsing
//! (ConfigParser ignores them inside continuations), keys are lowercased, the last
//! duplicate key wins and keys before the first section are rejected. rust-ini reports no positions, so a
//! small scan of the same text records the line of every section header and key;
//! the two are zipped in order. Duplicate sections are merged later, across files.

use std::path::Path;

use ini::{Ini, ParseOption};

use crate::error::{Diagnostics, Place};
use crate::raw::{RawData, RawSection, RawValue};

/// Lines of one section occurrence, found by scanning the text.
struct ScannedSection<'t> {
    line: u32,
    /// (line, lowercased key) of each key line, in order.
    keys: Vec<(u32, &'t str)>,
}

/// Structure of the text as ConfigParser sees it: where headers and keys are.
struct Scan<'t> {
    /// Keys before the first header: (line, key).
    orphans: Vec<(u32, &'t str)>,
    /// Lines that are neither a header, a `key = value` nor a comment: (line, text).
    malformed: Vec<(u32, String)>,
    /// Lines left out of what rust-ini parses, ascending: the malformed lines, the
    /// lines of a section whose header is malformed, and the indented lines that
    /// continue any of these. What remains is still read, so one bad line does
    /// not hide the errors of the rest of the file.
    dropped: Vec<u32>,
    sections: Vec<ScannedSection<'t>>,
}

fn is_comment_start(c: char) -> bool {
    c == ';' || c == '#'
}

fn scan<'t>(text: &'t str, only: Option<&[&str]>) -> Scan<'t> {
    let mut scan = Scan {
        orphans: Vec::new(),
        malformed: Vec::new(),
        dropped: Vec::new(),
        sections: Vec::new(),
    };
    // Inside a section whose header is malformed: its keys belong to no section.
    let mut skipping = false;
    // After a dropped line: its continuation lines go with it.
    let mut dropping = false;
    // Inside a section the caller does not want: its lines are left out.
    let mut unwanted = false;
    for (i, line) in text.lines().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(is_comment_start) {
            continue;
        }
        // Indented lines continue the previous value.
        if line.starts_with([' ', '\t']) {
            if dropping || unwanted {
                scan.dropped.push(number);
            }
            continue;
        }
        dropping = false;
        if trimmed.starts_with('[') {
            if !strip_inline_comment(trimmed).ends_with(']') {
                scan.malformed.push((number, trimmed.to_string()));
                scan.dropped.push(number);
                (skipping, dropping) = (true, true);
                continue;
            }
            skipping = false;
            let name = strip_inline_comment(trimmed);
            let name = name[1..name.len() - 1].trim();
            unwanted = only.is_some_and(|only| !only.contains(&name));
            if unwanted {
                scan.dropped.push(number);
            } else {
                scan.sections.push(ScannedSection { line: number, keys: Vec::new() });
            }
            continue;
        }
        // Kept as written (no allocation); compared case-insensitively.
        let key = trimmed.split(['=', ':']).next().unwrap_or("").trim();
        if !trimmed.contains(['=', ':']) || key.is_empty() {
            // No separator, or nothing before it (`=value`, which rust-ini rejects).
            scan.malformed.push((number, trimmed.to_string()));
            scan.dropped.push(number);
            dropping = true;
            continue;
        }
        if skipping || unwanted {
            scan.dropped.push(number);
            dropping = true;
            continue;
        }
        match scan.sections.last_mut() {
            Some(section) => section.keys.push((number, key)),
            None => scan.orphans.push((number, key)),
        }
    }
    scan
}

/// Drops a `;`/`#` comment that follows whitespace.
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b';' || bytes[i] == b'#') && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t')
        {
            return line[..i].trim_end();
        }
    }
    line
}

/// Removes the BOM, indented comment lines and the `dropped` lines (ascending);
/// returns the text for rust-ini and, for each line of it, the line number in the
/// original text.
fn preprocess(text: &str, dropped: &[u32]) -> (String, Vec<u32>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut kept = String::with_capacity(text.len());
    let mut numbers = Vec::new();
    let mut dropped = dropped.iter().peekable();
    for (i, line) in text.lines().enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if dropped.next_if_eq(&&number).is_some() {
            continue;
        }
        let indented_comment =
            line.starts_with([' ', '\t']) && line.trim_start().starts_with(is_comment_start);
        if indented_comment {
            continue;
        }
        // ConfigParser strips inline comments from every line, headers and
        // continuations included. rust-ini's own inline-comment handling eats the
        // first character of the line after a comment (`a=x #c` then `Key=1`
        // gives the key `ey`), so comments are removed here and rust-ini never
        // sees one.
        let line = if line.trim_start().starts_with(is_comment_start) {
            line
        } else {
            strip_inline_comment(line)
        };
        kept.push_str(line);
        kept.push('\n');
        numbers.push(number);
    }
    (kept, numbers)
}

/// Parses one INI file into raw sections (not yet merged across duplicates),
/// or with `only` just the sections so named. The others are
/// left out before rust-ini parses the text (a client reading its one section
/// of a 5,000-program file does not build the other 5,000); their malformed
/// lines are still reported.
pub(crate) fn read(
    text: &str,
    file: &Path,
    diags: &mut Diagnostics,
    only: Option<&[&str]>,
) -> Vec<RawSection> {
    let text_no_bom = text.strip_prefix('\u{feff}').unwrap_or(text);
    let scanned = scan(text_no_bom, only);
    let (prepared, numbers) = preprocess(text, &scanned.dropped);
    let option = ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        ..ParseOption::default()
    };
    let file_place = Place { file: file.to_path_buf(), ..Place::default() };
    for (line, key) in &scanned.orphans {
        let place =
            Place { line: Some(*line), key: Some(key.to_lowercase()), ..file_place.clone() };
        diags.error(&place, "key appears before the first [section] header");
    }
    // Report every malformed line; rust-ini would stop at the first, and it never
    // sees them, so that the rest of the file is still read and checked.
    for (line, content) in &scanned.malformed {
        let place = Place { line: Some(*line), ..file_place.clone() };
        diags.error(
            &place,
            format!(
                "expected 'key = value' or a [section] header, found {}",
                crate::expand::py_repr(content)
            ),
        );
    }
    let parsed = match Ini::load_from_str_opt(&prepared, option) {
        Ok(parsed) => parsed,
        Err(err) => {
            let line = numbers.get(err.line.saturating_sub(1)).or(numbers.last()).copied();
            let place = Place { line, ..file_place };
            diags.error(&place, format!("cannot parse: {}", err.msg));
            return Vec::new();
        }
    };

    let shared_file: std::rc::Rc<Path> = std::rc::Rc::from(file);
    let mut sections = Vec::new();
    let mut headers = scanned.sections.iter();
    for (name, properties) in parsed.iter() {
        let Some(name) = name else { continue };
        let scanned_section = headers.next();
        let line = scanned_section.map(|s| s.line);
        let scanned_keys = scanned_section.map(|s| s.keys.as_slice()).unwrap_or(&[]);
        let mut taken = vec![false; scanned_keys.len()];
        let mut section = RawSection {
            name: name.to_string(),
            file: shared_file.clone(),
            line,
            entries: Vec::new(),
        };
        for (key, value) in properties.iter() {
            let key = key.trim().to_lowercase();
            // Pair each key with the next unclaimed scanned line of the same key;
            // should the scan and rust-ini ever disagree, the header line is used.
            let key_line = scanned_keys
                .iter()
                .zip(taken.iter_mut())
                .find(|((_, k), taken)| k.eq_ignore_ascii_case(&key) && !**taken)
                .map(|((number, _), taken)| {
                    *taken = true;
                    *number
                });
            let value = RawValue {
                data: RawData::Text(value.trim().to_string()),
                file: shared_file.clone(),
                line: key_line.or(line),
            };
            section.set(key, value);
        }
        sections.push(section);
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<RawSection>, Diagnostics) {
        let mut diags = Diagnostics::default();
        let sections = read(text, Path::new("t.conf"), &mut diags, None);
        (sections, diags)
    }

    /// Reading only some sections leaves the others out, keeps the line
    /// numbers of those read, and still reports malformed lines anywhere.
    #[test]
    fn only_the_named_sections_are_read() {
        let text = "[program:a]\ncommand = a\n  continued\n[supervisorctl]\nserverurl = unix:///s\n\
                    [program:b]\nbroken line\ncommand = b\n";
        let mut diags = Diagnostics::default();
        let sections = read(text, Path::new("t.conf"), &mut diags, Some(&["supervisorctl"]));
        let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["supervisorctl"]);
        assert_eq!(sections[0].line, Some(4));
        assert_eq!(sections[0].entries.len(), 1);
        assert_eq!(sections[0].entries[0].1.line, Some(5));
        assert_eq!(diags.errors.len(), 1, "{:?}", diags.errors);
        assert_eq!(diags.errors[0].line, Some(7));
    }

    fn value(text: &str, key: &str) -> Option<String> {
        let (sections, diags) = parse(text);
        assert!(diags.errors.is_empty(), "{:?}", diags.errors);
        let section = sections.into_iter().rev().find(|s| s.name == "s")?;
        section.entries.into_iter().find(|(k, _)| k == key).map(|(_, v)| match v.data {
            RawData::Text(t) => t,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn dialect_matches_configparser() {
        // (input, key, expected value), each cross-checked against CPython's
        // RawConfigParser(inline_comment_prefixes=(';','#'), strict=False).
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("[s]\na=b ;c\n", "a", Some("b")),
            ("[s]\na=b;c\n", "a", Some("b;c")),
            ("[s]\na=foo #x\n", "a", Some("foo")),
            ("[s]\na=foo#x\n", "a", Some("foo#x")),
            ("[s]\na=http://x/#frag\n", "a", Some("http://x/#frag")),
            ("[s]\ncommand=bash -c 'foo ; bar'\n", "command", Some("bash -c 'foo")),
            ("[s]\na: b\n", "a", Some("b")),
            ("[s]\nA=b\n", "a", Some("b")),
            ("[s]\nCommand = x\n", "command", Some("x")),
            ("[s]\na=1\na=2\n", "a", Some("2")),
            ("[s]\na=1\n  2\n  3\n", "a", Some("1\n2\n3")),
            ("[s]\na=1\n  ; indented comment\n  2\n", "a", Some("1\n2")),
            ("[s]\na=\"/opt/my app\" --flag\n", "a", Some("\"/opt/my app\" --flag")),
            ("[s]\na=x\\ty\n", "a", Some("x\\ty")),
            ("\u{feff}[s]\na=1\n", "a", Some("1")),
            ("[s] ; comment\na=1\n", "a", Some("1")),
            ("[s]\r\na=1\r\n", "a", Some("1")),
            ("[s]\na=\n", "a", Some("")),
            ("[s]\na=b ;c\nIdent=1\n", "ident", Some("1")),
            ("[s]\na=x #c\n; full\nb=2\n", "a", Some("x")),
            ("[s]\na=x #c\n; full\nb=2\n", "b", Some("2")),
            ("[s]\na=b ;c\n  more ;d\nz=1\n", "a", Some("b\nmore")),
            ("[s]\na=b\t;c\n", "a", Some("b")),
            ("[s]\na=1\n[s]\nb=2\n", "a", None),
        ];
        for (text, key, expected) in cases {
            assert_eq!(value(text, key).as_deref(), *expected, "input {text:?}");
        }
    }

    #[test]
    fn duplicate_keys_keep_the_last_line() {
        let (sections, _) = parse("[c]\nk=1\nother=0\nk=2\n");
        let k = sections[0].entries.iter().find(|(key, _)| key == "k").expect("k");
        assert_eq!((k.1.line, &k.1.data), (Some(4), &RawData::Text("2".into())));
    }

    #[test]
    fn brackets_in_section_names() {
        let (sections, _) = parse("[program:a[1]]\ncommand=x\n");
        assert_eq!(sections[0].name, "program:a[1]");
    }

    #[test]
    fn lines_are_recorded() {
        let (sections, _) =
            parse("; top\n[a]\nx=1\n  ; c\n  more\n\n[b]\ny = 2\nY = 3\n[a]\nz=4\n");
        let lines: Vec<_> = sections
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.line,
                    s.entries.iter().map(|(k, v)| (k.clone(), v.line)).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                ("a", Some(2), vec![("x".to_string(), Some(3))]),
                ("b", Some(7), vec![("y".to_string(), Some(9))]),
                ("a", Some(10), vec![("z".to_string(), Some(11))]),
            ]
        );
    }

    #[test]
    fn rejects_keys_before_sections_and_bad_lines() {
        let (_, diags) = parse("a=1\n[s]\nb=2\n");
        assert_eq!(
            diags.errors[0].to_string(),
            "t.conf:1: a: key appears before the first [section] header"
        );
        let (_, diags) = parse("[s]\n; x\njunk\n");
        assert_eq!(diags.errors.len(), 1);
        assert_eq!(diags.errors[0].line, Some(3), "{:?}", diags.errors);
    }
}
