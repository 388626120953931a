//! supervisord's value rules (`supervisor/datatypes.py`), one function per type.
//!
//! Each parser takes the expanded text and returns the typed value or the message
//! for a diagnostic; the caller adds file, line, section and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User};

use crate::expand::py_repr;
use crate::model::{AutoRestart, ChildLogFormat, LogLevel, MainLogFormat, Signal, UserSpec};

/// A control group's path inside its hierarchy: absolute, normalised, no `..`
/// (`/vigil.slice/web`); `/` alone is the hierarchy's root.
pub(crate) fn cgroup_path(s: &str) -> Result<String, String> {
    let t = s.trim();
    let bad = |why: &str| format!("{} is not a control group path: {why}", py_repr(s));
    if !t.starts_with('/') {
        return Err(bad("it must start with /"));
    }
    let parts: Vec<&str> = t.split('/').filter(|part| !part.is_empty()).collect();
    if parts.iter().any(|part| *part == "." || *part == "..") {
        return Err(bad("no . or .. components"));
    }
    if t.chars().any(char::is_control) {
        return Err(bad("no control characters"));
    }
    Ok(format!("/{}", parts.join("/")))
}

pub(crate) fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{} is not a boolean (true/false, yes/no, on/off, 1/0)", py_repr(s))),
    }
}

/// Python `int()`: surrounding whitespace, an optional sign, digits and single underscores.
pub(crate) fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let n: i64 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -n } else { n })
}

pub(crate) fn integer(s: &str) -> Result<i64, String> {
    python_int(s).ok_or_else(|| format!("{} is not an integer", py_repr(s)))
}

/// An integer that must fit `T` (non-negative counts and the like).
pub(crate) fn integer_in<T: TryFrom<i64>>(s: &str, what: &str) -> Result<T, String> {
    let n = integer(s)?;
    T::try_from(n).map_err(|_| format!("{} is out of range for {what}", py_repr(s)))
}

/// `<int>[kb|mb|gb]`, any case, 1024-based.
pub(crate) fn byte_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (number, multiplier) = [("kb", 1u64 << 10), ("mb", 1 << 20), ("gb", 1 << 30)]
        .iter()
        .find_map(|(suffix, m)| lower.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((lower.as_str(), 1));
    python_int(number)
        .and_then(|n| u64::try_from(n).ok())
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| {
            format!(
                "{} is not a byte size (an integer with an optional KB, MB or GB suffix)",
                py_repr(s)
            )
        })
}

/// `int(x, 8)`: `022`, `0700`, `777`, also `0o22`.
pub(crate) fn octal(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")).unwrap_or(t);
    u32::from_str_radix(&digits.replace('_', ""), 8)
        .ok()
        .filter(|_| !digits.is_empty() && !digits.starts_with('+') && !digits.starts_with('-'))
        .ok_or_else(|| format!("{} can not be converted to an octal type", py_repr(s)))
}

/// `stopsignal=` and the like: [`Signal::parse`], with its message.
pub(crate) fn signal(s: &str) -> Result<Signal, String> {
    Signal::parse(s).map_err(|bad| bad.to_string())
}

pub(crate) fn list_of_strings(s: &str) -> Vec<String> {
    if s.trim().is_empty() {
        return Vec::new();
    }
    s.split(',').map(|x| x.trim().to_string()).collect()
}

pub(crate) fn exitcodes(items: &[String], written: &str) -> Result<Vec<i32>, String> {
    let bad = || format!("not a valid list of exit codes: {}", py_repr(written));
    items
        .iter()
        .map(|item| {
            python_int(item).filter(|n| (0..=255).contains(n)).map(|n| n as i32).ok_or_else(bad)
        })
        .collect()
}

/// `process_or_group_name`: stripped; no space, `:` or `/`.
pub(crate) fn name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("name is empty".into());
    }
    if let Some(c) = t.chars().find(|c| matches!(c, ' ' | ':' | '/')) {
        return Err(format!(
            "Invalid name: {} because of character: {}",
            py_repr(t),
            py_repr(&c.to_string())
        ));
    }
    Ok(t.to_string())
}

pub(crate) fn auto_restart(s: &str) -> Result<AutoRestart, String> {
    let lower = s.trim().to_ascii_lowercase();
    if lower == "unexpected" {
        return Ok(AutoRestart::Unexpected);
    }
    match boolean(&lower) {
        Ok(true) => Ok(AutoRestart::True),
        Ok(false) => Ok(AutoRestart::False),
        Err(_) => Err(format!("invalid 'autorestart' value {}", py_repr(s))),
    }
}

pub(crate) fn child_log_format(s: &str) -> Result<ChildLogFormat, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "raw" => ChildLogFormat::Raw,
        "timestamped" => ChildLogFormat::Timestamped,
        "json" => ChildLogFormat::Json,
        _ => {
            return Err(format!(
                "{} is not a valid log format (raw, timestamped, json)",
                py_repr(s)
            ));
        }
    })
}

pub(crate) fn main_log_format(s: &str) -> Result<MainLogFormat, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "text" => MainLogFormat::Text,
        "json" => MainLogFormat::Json,
        _ => return Err(format!("{} is not a valid log format (text, json)", py_repr(s))),
    })
}

pub(crate) fn log_level(s: &str) -> Result<LogLevel, String> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "critical" => LogLevel::Critical,
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        "blather" => LogLevel::Blather,
        _ => {
            return Err(format!(
                "{} is not a valid log level (critical, error, warn, info, debug, trace, blather)",
                py_repr(s)
            ));
        }
    })
}

/// `~` expansion with `HOME` from the env map passed in, then relative paths made
/// absolute against `base` (the directory of the file the value is written in).
pub(crate) fn normalize_path(s: &str, base: &Path, env: &BTreeMap<String, String>) -> PathBuf {
    let expanded = match (s.strip_prefix('~'), env.get("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => s.to_string(),
    };
    let path = Path::new(&expanded);
    let joined = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    lexical_normalize(&joined)
}

/// Removes `.` and `..` components without touching the file system (like `os.path.normpath`).
pub(crate) fn lexical_normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `existing_dirpath`: the path's directory must exist.
pub(crate) fn existing_dirpath(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
            "The directory named as part of the path {} does not exist",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// [`existing_dirpath`] for one load: a program's log files are usually in a
/// directory others' are in too, and 5,000 programs made 10,000 `stat`s of
/// the same few directories (a seventh of the load).
#[derive(Default)]
pub(crate) struct KnownDirs(std::cell::RefCell<std::collections::HashSet<PathBuf>>);

impl KnownDirs {
    /// [`existing_dirpath`], remembering a directory that exists.
    pub(crate) fn existing_dirpath(&self, path: &Path) -> Result<(), String> {
        let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) else {
            return Ok(());
        };
        if self.0.borrow().contains(dir) {
            return Ok(());
        }
        existing_dirpath(path)?;
        self.0.borrow_mut().insert(dir.to_path_buf());
        Ok(())
    }
}

pub(crate) fn existing_directory(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(format!("{} is not an existing directory", path.display()))
    }
}

/// `name_to_uid` plus the primary group: a user name or a numeric uid that must exist.
pub(crate) fn user(s: &str) -> Result<UserSpec, String> {
    let t = s.trim();
    let found = match python_int(t) {
        Some(n) => {
            let uid = u32::try_from(n).map_err(|_| format!("Invalid user id {t}"))?;
            User::from_uid(Uid::from_raw(uid))
                .ok()
                .flatten()
                .ok_or_else(|| format!("Invalid user id {t}"))?
        }
        None => {
            User::from_name(t).ok().flatten().ok_or_else(|| format!("Invalid user name {t}"))?
        }
    };
    Ok(UserSpec { name: t.to_string(), uid: found.uid.as_raw(), gid: found.gid.as_raw() })
}

fn group_id(s: &str) -> Result<u32, String> {
    match python_int(s) {
        Some(n) => {
            let gid = u32::try_from(n).map_err(|_| format!("Invalid group id {s}"))?;
            Group::from_gid(Gid::from_raw(gid))
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| format!("Invalid group id {s}"))
        }
        None => Group::from_name(s)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
            .ok_or_else(|| format!("Invalid group name {s}")),
    }
}

/// `user` or `user:group` for `chown` and `socket_owner`.
pub(crate) fn user_group(s: &str) -> Result<(u32, Option<u32>), String> {
    let t = s.trim();
    match t.split_once(':') {
        Some((u, g)) => Ok((user(u)?.uid, Some(group_id(g.trim())?))),
        None => Ok((user(t)?.uid, None)),
    }
}

/// `inet_address`: `host:port`, `:port`, `*:port` or a bare port.
pub(crate) fn inet_address(s: &str) -> Result<(String, u16), String> {
    let t = s.trim();
    let (host, port) = match t.rsplit_once(':') {
        Some((host, port)) => (host.to_ascii_lowercase(), port),
        None => (String::new(), t),
    };
    let host = if host == "*" { String::new() } else { host };
    let port = python_int(port).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0).ok_or_else(
        || {
            format!(
                "{} is not a valid port number (host:port, :port or port, port 1..65535)",
                py_repr(port)
            )
        },
    )?;
    Ok((host, port))
}

/// A duration (Vigil extension keys): a number with an optional unit `ms`, `s`,
/// `m` or `h`; a bare number means seconds.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (number, scale) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .iter()
        .find_map(|(unit, scale)| t.strip_suffix(unit).map(|n| (n.trim(), *scale)))
        .unwrap_or((t.as_str(), 1.0));
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0 && !number.starts_with('+'))
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| {
            format!(
                "{} is not a duration (e.g. 500ms, 10s, 2m, 1h; a bare number means seconds)",
                py_repr(s)
            )
        })
}

pub(crate) fn float(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| format!("{} is not a number", py_repr(s)))
}

/// `dict_of_key_value_pairs`: `KEY=val,KEY2="val 2",KEY3='a,b'`.
///
/// Tokenized like Python's `shlex` in POSIX mode with `/.+-():` added to the word
/// characters (supervisord HEAD). Unlike supervisord, the separator between pairs
/// must be a comma: supervisord silently takes every fourth token as the separator,
/// so `A=$HOME` became `A='$'` and `A=x y` became `A='x'`; here both are errors.
pub(crate) fn environment(s: &str) -> Result<Vec<(String, String)>, String> {
    let tokens = shlex_tokens(s)?;
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(Token::Word(key)), Some(Token::Punct('=')), Some(_)) if key.is_empty() => {
                return Err(format!("empty variable name in {}", py_repr(s)));
            }
            (Some(Token::Word(key)), Some(Token::Punct('=')), Some(Token::Word(value))) => {
                pairs.push((key.clone(), value.trim_matches(['\'', '"']).to_string()));
            }
            (Some(Token::Word(key)), Some(Token::Punct('=')), Some(Token::Punct(c))) => {
                return Err(format!(
                    "unexpected {} in the value of {key} in {} (quote values containing it)",
                    py_repr(&c.to_string()),
                    py_repr(s)
                ));
            }
            _ => return Err(format!("Unexpected end of key/value pairs in value {}", py_repr(s))),
        }
        match tokens.get(i + 3) {
            None | Some(Token::Punct(',')) => {}
            Some(other) => {
                return Err(format!(
                    "expected ',' after {}={} in {}, found {} (quote values containing spaces or commas)",
                    pairs.last().map(|p| p.0.as_str()).unwrap_or(""),
                    pairs.last().map(|p| py_repr(&p.1)).unwrap_or_default(),
                    py_repr(s),
                    py_repr(&other.text())
                ));
            }
        }
        i += 4;
    }
    Ok(pairs)
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Punct(char),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Word(w) => w.clone(),
            Token::Punct(c) => c.to_string(),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || "_/.+-():".contains(c)
}

fn shlex_tokens(s: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if !(is_word_char(c) || c == '"' || c == '\'' || c == '\\') {
            tokens.push(Token::Punct(c));
            chars.next();
            continue;
        }
        // A word: word characters and quoted parts, concatenated (POSIX shlex).
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if is_word_char(c) {
                word.push(c);
                chars.next();
            } else if c == '\\' {
                chars.next();
                match chars.next() {
                    Some(escaped) => word.push(escaped),
                    None => return Err(format!("No escaped character in {}", py_repr(s))),
                }
            } else if c == '"' || c == '\'' {
                chars.next();
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if c == '"' && q == '\\' && matches!(chars.peek(), Some('"') | Some('\\')) {
                        word.push(chars.next().unwrap_or('\\'));
                        continue;
                    }
                    word.push(q);
                }
                if !closed {
                    return Err(format!("No closing quotation in {}", py_repr(s)));
                }
            } else {
                break;
            }
        }
        tokens.push(Token::Word(word));
    }
    Ok(tokens)
}

/// `shlex.split` for `command=`.
pub(crate) fn command(s: &str) -> Result<Vec<String>, String> {
    let argv = shlex::split(s)
        .ok_or_else(|| format!("can't parse command {}: No closing quotation", py_repr(s)))?;
    if argv.is_empty() {
        return Err("command is empty".into());
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats() {
        assert_eq!(child_log_format(" JSON "), Ok(ChildLogFormat::Json));
        assert_eq!(child_log_format("timestamped"), Ok(ChildLogFormat::Timestamped));
        assert_eq!(child_log_format("raw"), Ok(ChildLogFormat::Raw));
        assert!(child_log_format("text").is_err());
        assert_eq!(main_log_format("Text"), Ok(MainLogFormat::Text));
        assert_eq!(main_log_format("json"), Ok(MainLogFormat::Json));
        assert_eq!(
            main_log_format("yaml"),
            Err("'yaml' is not a valid log format (text, json)".to_owned())
        );
    }

    #[test]
    fn booleans() {
        for s in ["true", "YES", "On", "1", " true "] {
            assert_eq!(boolean(s), Ok(true), "{s}");
        }
        for s in ["false", "No", "OFF", "0"] {
            assert_eq!(boolean(s), Ok(false), "{s}");
        }
        for s in ["", "2", "yep", "t"] {
            assert!(boolean(s).is_err(), "{s}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(integer(" 12 "), Ok(12));
        assert_eq!(integer("-3"), Ok(-3));
        assert_eq!(integer("1_000"), Ok(1000));
        for s in ["abc", "1.5", "", "1__0", "_1", "0x10"] {
            assert!(integer(s).is_err(), "{s}");
        }
        assert_eq!(integer("abc").unwrap_err(), "'abc' is not an integer");
        assert!(integer_in::<u32>("-1", "startretries").is_err());
    }

    #[test]
    fn byte_sizes() {
        let ok = [
            ("50MB", 52428800),
            ("1 MB", 1048576),
            ("1kb", 1024),
            ("2GB", 2147483648),
            ("10", 10),
            ("0", 0),
            ("5Kb", 5120),
        ];
        for (s, n) in ok {
            assert_eq!(byte_size(s), Ok(n), "{s}");
        }
        for s in ["1.5MB", "MB", "x", "-1", "10TB", ""] {
            assert!(byte_size(s).is_err(), "{s}");
        }
    }

    #[test]
    fn octals() {
        assert_eq!(octal("022"), Ok(0o22));
        assert_eq!(octal("0700"), Ok(0o700));
        assert_eq!(octal("777"), Ok(0o777));
        assert_eq!(octal("0o22"), Ok(0o22));
        for s in ["8", "abc", "", "-1", "0x1"] {
            assert!(octal(s).is_err(), "{s}");
        }
    }

    #[test]
    fn signals() {
        for (s, n) in
            [("TERM", 15), ("sigterm", 15), ("SIGKILL", 9), ("hup", 1), ("9", 9), ("USR2", 12)]
        {
            assert_eq!(signal(s), Ok(Signal(n)), "{s}");
        }
        for s in ["BOGUS", "0", "999", "", "-1"] {
            assert!(signal(s).is_err(), "{s}");
        }
        assert_eq!(Signal(15).to_string(), "TERM");
    }

    #[test]
    fn exit_codes() {
        let list = |s: &str| exitcodes(&list_of_strings(s), s);
        assert_eq!(list("0"), Ok(vec![0]));
        assert_eq!(list("0, 2,255"), Ok(vec![0, 2, 255]));
        for s in ["256", "-1", "a", "0,,1"] {
            assert!(list(s).is_err(), "{s}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name(" web "), Ok("web".into()));
        assert_eq!(name("a b").unwrap_err(), "Invalid name: 'a b' because of character: ' '");
        assert!(name("a:b").is_err());
        assert!(name("a/b").is_err());
        assert!(name("").is_err());
    }

    #[test]
    fn autorestarts() {
        assert_eq!(auto_restart("unexpected"), Ok(AutoRestart::Unexpected));
        assert_eq!(auto_restart("TRUE"), Ok(AutoRestart::True));
        assert_eq!(auto_restart("off"), Ok(AutoRestart::False));
        assert!(auto_restart("sometimes").is_err());
    }

    #[test]
    fn inet_addresses() {
        assert_eq!(inet_address("127.0.0.1:9001"), Ok(("127.0.0.1".into(), 9001)));
        assert_eq!(inet_address(":9001"), Ok((String::new(), 9001)));
        assert_eq!(inet_address("*:9001"), Ok((String::new(), 9001)));
        assert_eq!(inet_address("9001"), Ok((String::new(), 9001)));
        assert_eq!(inet_address("LocalHost:1"), Ok(("localhost".into(), 1)));
        for s in ["host:", "host:0", "host:65536", "x"] {
            assert!(inet_address(s).is_err(), "{s}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for s in ["", "-1", "x", "1d", "nan"] {
            assert!(duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn users() {
        let root = user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user("0").unwrap().uid, 0);
        assert_eq!(user("no-such-user-vigil").unwrap_err(), "Invalid user name no-such-user-vigil");
        assert_eq!(user("4000000000").unwrap_err(), "Invalid user id 4000000000");
        assert_eq!(user_group("root:root"), Ok((0, Some(0))));
        assert_eq!(user_group("root"), Ok((0, None)));
        assert!(user_group("root:no-such-group-vigil").is_err());
    }

    #[test]
    fn environments() {
        let ok: &[(&str, &[(&str, &str)])] = &[
            ("A=1", &[("A", "1")]),
            ("A=1,B=2", &[("A", "1"), ("B", "2")]),
            ("A=1, B=2,", &[("A", "1"), ("B", "2")]),
            (
                "KEY=val,KEY2=\"val 2\",KEY3='a,b'",
                &[("KEY", "val"), ("KEY2", "val 2"), ("KEY3", "a,b")],
            ),
            ("A=\"\"", &[("A", "")]),
            ("lower=Case", &[("lower", "Case")]),
            ("P=/usr/bin:/bin", &[("P", "/usr/bin:/bin")]),
            ("U=http://h:1/x(y)+z-w.v", &[("U", "http://h:1/x(y)+z-w.v")]),
            ("A=\"x\\\"y\"", &[("A", "x\"y")]),
            ("A='x\\y'", &[("A", "x\\y")]),
            ("A=\"%s\"", &[("A", "%s")]),
            ("", &[]),
        ];
        for (input, expected) in ok {
            let expected: Vec<(String, String)> =
                expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(environment(input), Ok(expected), "{input}");
        }
        let bad = [
            ("A=", "Unexpected end of key/value pairs in value 'A='"),
            ("A", "Unexpected end of key/value pairs"),
            ("A=$HOME", "unexpected '$' in the value of A"),
            ("A=x y", "expected ',' after A='x'"),
            ("A=1;B=2", "expected ','"),
            ("A=\"open", "No closing quotation"),
            ("=1", "Unexpected end of key/value pairs"),
            ("\"\"=\"\"", "empty variable name in '\"\"=\"\"'"),
            ("A=1,''=2", "empty variable name"),
        ];
        for (input, expected) in bad {
            let err = environment(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn commands() {
        assert_eq!(command("/bin/cat"), Ok(vec!["/bin/cat".to_string()]));
        assert_eq!(command("sh -c 'a b'"), Ok(vec!["sh".into(), "-c".into(), "a b".into()]));
        assert!(command("sh -c 'a").is_err());
        assert_eq!(command("  ").unwrap_err(), "command is empty");
    }

    #[test]
    fn paths() {
        let env = BTreeMap::from([("HOME".to_string(), "/home/u".to_string())]);
        assert_eq!(
            normalize_path("~/x.log", Path::new("/etc"), &env),
            PathBuf::from("/home/u/x.log")
        );
        assert_eq!(
            normalize_path("log/../x.log", Path::new("/etc"), &env),
            PathBuf::from("/etc/x.log")
        );
        assert_eq!(
            normalize_path("/var/log/x", Path::new("/etc"), &env),
            PathBuf::from("/var/log/x")
        );
    }
}
