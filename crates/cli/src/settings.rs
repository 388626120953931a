//! Where vigilctl connects and how it prompts: the config file search, the
//! `[supervisorctl]` section, and command-line overrides (reference s1.1, s1.6).
//!
//! Note: this reads only the `[supervisorctl]` section, with rust-ini configured
//! like supervisord's parser (no quote or escape processing, indented
//! continuation lines, inline `;`/`#` comments, case-folded keys, later keys
//! win). vigil-config's full loader is being rewritten; once it exposes a
//! section reader with the same dialect, this module should call it instead.
//! The result is vigil-config's own [`Supervisorctl`] model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_config::Supervisorctl;

/// supervisorctl's defaults.
pub const DEFAULT_SERVERURL: &str = "http://localhost:9001";
pub const DEFAULT_PROMPT: &str = "supervisor";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("could not find config file {0}")]
    NotFound(String),
    #[error("could not read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error(".ini file does not include supervisorctl section")]
    NoSection,
    #[error("{path}: [supervisorctl] {key}: {reason}")]
    Expand { path: String, key: String, reason: String },
}

/// The paths supervisorctl tries when `-c` is not given, in order.
pub fn search_paths(argv0: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    // "../etc relative to the executable": dirname(dirname(argv[0])).
    if let Some(prefix) = argv0.parent().and_then(Path::parent) {
        paths.push(prefix.join("etc/supervisord.conf"));
        paths.push(prefix.join("supervisord.conf"));
    }
    paths.push(PathBuf::from("supervisord.conf"));
    paths.push(PathBuf::from("etc/supervisord.conf"));
    paths.push(PathBuf::from("/etc/supervisord.conf"));
    paths.push(PathBuf::from("/etc/supervisor/supervisord.conf"));
    paths
}

/// The config file to read: `-c` if given (it must exist), else the first
/// existing search path, else none (vigilctl then runs on its defaults).
pub fn find_config(
    explicit: Option<&Path>,
    argv0: &Path,
) -> Result<Option<PathBuf>, SettingsError> {
    match explicit {
        Some(path) if path.is_file() => Ok(Some(path.to_owned())),
        Some(path) => Err(SettingsError::NotFound(path.display().to_string())),
        None => Ok(search_paths(argv0).into_iter().find(|p| p.is_file())),
    }
}

/// The defaults when there is no config file.
pub fn defaults() -> Supervisorctl {
    Supervisorctl {
        serverurl: DEFAULT_SERVERURL.to_owned(),
        username: None,
        password: None,
        prompt: DEFAULT_PROMPT.to_owned(),
        history_file: None,
    }
}

/// Reads `[supervisorctl]` from a supervisord INI file or a Vigil TOML file
/// (`.toml`). `env` is the process environment, for `%(ENV_X)s`.
pub fn read_supervisorctl(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Supervisorctl, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let here = absolute.parent().map(|p| p.display().to_string()).unwrap_or_default();
    let raw = if path.extension().is_some_and(|e| e == "toml") {
        toml_section(&text, path)?
    } else {
        ini_section(&text, path)?
    };
    let raw = raw.ok_or(SettingsError::NoSection)?;
    let expand = |key: &str, with_here: bool| -> Result<Option<String>, SettingsError> {
        let Some(value) = raw.get(key) else { return Ok(None) };
        expand(value, env, with_here.then_some(here.as_str())).map(Some).map_err(|reason| {
            SettingsError::Expand { path: path.display().to_string(), key: key.to_owned(), reason }
        })
    };
    let mut settings = defaults();
    if let Some(url) = expand("serverurl", true)? {
        settings.serverurl = normalize_url(&url);
    }
    if let Some(prompt) = expand("prompt", false)? {
        settings.prompt = prompt;
    }
    settings.username = expand("username", false)?;
    settings.password = expand("password", false)?;
    settings.history_file =
        expand("history_file", true)?.filter(|h| !h.is_empty()).map(PathBuf::from);
    Ok(settings)
}

/// supervisorctl normalises the path of a `unix://` URL (`//` and `.` segments).
fn normalize_url(url: &str) -> String {
    match url.strip_prefix("unix://") {
        Some(path) => {
            let mut parts: Vec<&str> = Vec::new();
            for part in path.split('/') {
                match part {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    other => parts.push(other),
                }
            }
            let prefix = if path.starts_with('/') { "/" } else { "" };
            format!("unix://{prefix}{}", parts.join("/"))
        }
        None => url.to_owned(),
    }
}

fn ini_section(text: &str, path: &Path) -> Result<Option<BTreeMap<String, String>>, SettingsError> {
    // supervisord's parser ignores indented full-line comments inside a
    // continued value; rust-ini would append them, so drop them first.
    let cleaned: String = text
        .trim_start_matches('\u{feff}')
        .lines()
        .filter(|line| {
            let trimmed = line.trim_start();
            !(trimmed.len() < line.len() && (trimmed.starts_with(';') || trimmed.starts_with('#')))
        })
        .map(strip_inline_comment)
        // rust-ini rejects a section header at EOF without a newline.
        .map(|line| format!("{line}\n"))
        .collect();
    let options = ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        enabled_indented_mutiline_value: true,
        enabled_preserve_key_leading_whitespace: false,
    };
    let parsed = ini::Ini::load_from_str_opt(&cleaned, options).map_err(|e| {
        SettingsError::Parse { path: path.display().to_string(), reason: e.to_string() }
    })?;
    if !parsed.sections().any(|s| s == Some("supervisorctl")) {
        return Ok(None);
    }
    // Duplicate sections merge and the last value of a key wins, as with
    // `RawConfigParser(strict=False)`; keys are case-insensitive.
    let mut out = BTreeMap::new();
    for section in parsed.section_all(Some("supervisorctl")) {
        for (key, value) in section.iter() {
            out.insert(key.to_lowercase(), value.trim().to_owned());
        }
    }
    Ok(Some(out))
}

/// Cuts an inline comment: `;` or `#` preceded by whitespace (Python's
/// `inline_comment_prefixes`). Done here rather than by rust-ini because its
/// `inline-comment` handling drops the first character of the next line
/// (`username=` after a commented line read back as `sername`).
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for i in 1..bytes.len() {
        if (bytes[i] == b';' || bytes[i] == b'#') && bytes[i - 1].is_ascii_whitespace() {
            return line[..i].trim_end();
        }
    }
    line
}

fn toml_section(
    text: &str,
    path: &Path,
) -> Result<Option<BTreeMap<String, String>>, SettingsError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::Parse {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let Some(section) = table.get("supervisorctl") else { return Ok(None) };
    let section = section.as_table().ok_or_else(|| SettingsError::Parse {
        path: path.display().to_string(),
        reason: "supervisorctl must be a table".to_owned(),
    })?;
    let mut out = BTreeMap::new();
    for (key, value) in section {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(key.clone(), text);
    }
    Ok(Some(out))
}

/// supervisord's `%(name)s` expansion: `%(ENV_X)s` from `env`, `%(here)s` where
/// allowed, `%%` for a literal `%`. Anything else is an error naming what is
/// available, as supervisord reports it.
pub fn expand(
    value: &str,
    env: &BTreeMap<String, String>,
    here: Option<&str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
            continue;
        }
        let Some(inner) = after.strip_prefix('(') else {
            return Err(format!(
                "bad format in '{value}': '%' must be followed by '(name)s' or '%'"
            ));
        };
        let Some(close) = inner.find(")s") else {
            return Err(format!("bad format in '{value}': unterminated '%(name)s'"));
        };
        let name = &inner[..close];
        let replacement = match (name, here) {
            ("here", Some(here)) => here.to_owned(),
            _ => match name.strip_prefix("ENV_").and_then(|var| env.get(var)) {
                Some(found) => found.clone(),
                None => {
                    let mut available: Vec<String> =
                        env.keys().map(|k| format!("ENV_{k}")).collect();
                    if here.is_some() {
                        available.push("here".to_owned());
                    }
                    available.sort();
                    return Err(format!(
                        "'{value}' contains names ('{name}') which cannot be expanded; available names: {}",
                        available.join(", ")
                    ));
                }
            },
        };
        out.push_str(&replacement);
        rest = &inner[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("HOME".to_owned(), "/home/op".to_owned()),
            ("PW".to_owned(), "s3".to_owned()),
        ])
    }

    #[test]
    fn expansion_follows_supervisord_rules() {
        let cases = [
            ("unix://%(here)s/vigil.sock", Some("/etc/v"), "unix:///etc/v/vigil.sock"),
            ("%(ENV_HOME)s/.hist", None, "/home/op/.hist"),
            ("100%%", None, "100%"),
            ("plain", None, "plain"),
        ];
        for (input, here, expected) in cases {
            assert_eq!(expand(input, &env(), here).as_deref(), Ok(expected), "{input}");
        }
        let error = expand("%(here)s/x", &env(), None).expect_err("here not allowed");
        assert!(error.contains("('here')") && error.contains("ENV_HOME, ENV_PW"), "{error}");
        assert!(expand("%(ENV_HOME", &env(), None).is_err());
        assert!(expand("50%", &env(), None).is_err());
    }

    #[test]
    fn reads_the_supervisorctl_section_like_supervisord() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("supervisord.conf");
        std::fs::write(
            &path,
            "[supervisord]\nlogfile=/x\n\n[supervisorctl]\nServerURL = unix://%(here)s//run/../vigil.sock ; inline\n\
             username=admin\npassword=%(ENV_PW)s\nprompt=vigil\n\n[supervisorctl]\nhistory_file=%(here)s/.hist\n",
        )
        .expect("write");
        let settings = read_supervisorctl(&path, &env()).expect("read");
        let here = dir.path().display();
        assert_eq!(settings.serverurl, format!("unix://{here}/vigil.sock"));
        assert_eq!(settings.username.as_deref(), Some("admin"));
        assert_eq!(settings.password.as_deref(), Some("s3"));
        assert_eq!(settings.prompt, "vigil");
        assert_eq!(settings.history_file, Some(dir.path().join(".hist")));

        let without = dir.path().join("other.conf");
        std::fs::write(&without, "[supervisord]\n").expect("write");
        assert_eq!(read_supervisorctl(&without, &env()), Err(SettingsError::NoSection));

        let toml_path = dir.path().join("vigil.toml");
        std::fs::write(&toml_path, "[supervisorctl]\nserverurl = \"http://127.0.0.1:9001\"\n")
            .expect("write");
        let settings = read_supervisorctl(&toml_path, &env()).expect("toml");
        assert_eq!(
            (settings.serverurl.as_str(), settings.prompt.as_str()),
            ("http://127.0.0.1:9001", "supervisor")
        );
    }

    #[test]
    fn search_order_and_explicit_paths() {
        let paths = search_paths(Path::new("/opt/vigil/bin/vigilctl"));
        let shown: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            shown,
            [
                "/opt/vigil/etc/supervisord.conf",
                "/opt/vigil/supervisord.conf",
                "supervisord.conf",
                "etc/supervisord.conf",
                "/etc/supervisord.conf",
                "/etc/supervisor/supervisord.conf",
            ]
        );
        let error = find_config(Some(Path::new("/nonexistent/x.conf")), Path::new("vigilctl"))
            .expect_err("missing");
        assert_eq!(error.to_string(), "could not find config file /nonexistent/x.conf");
    }
}
