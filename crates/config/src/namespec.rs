//! supervisord's names for processes: a *namespec* is `group:name` (one
//! process), `group:*` or `group:` (every process of a group), or a bare `name`
//! (the process `name` of the group `name`, which is how a plain `[program:x]`
//! is addressed); supervisorctl adds `all`. [`NameSpec`] is the typed form that
//! the control service, the XML-RPC interface and vigilctl share, and
//! [`make_namespec`] is the canonical spelling of one process.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed name argument.
///
/// Parsing never fails: any text is a well-formed name, and whether it names
/// something is for whoever holds the processes to say (supervisord's
/// `BAD_NAME`). Display gives text that parses back to the same value, and on
/// the wire (serde) a `NameSpec` is that text, so scripts may send plain
/// strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NameSpec {
    /// `all`: every process (supervisorctl's word, not supervisord's).
    All,
    /// `group:*` or `group:`: every process of a group.
    Group(String),
    /// `group:name`, or a bare `name` meaning `name:name`.
    Process {
        /// The group's name.
        group: String,
        /// The process's name inside the group.
        name: String,
    },
}

impl NameSpec {
    /// Parses a supervisorctl name argument: `all` is every process, anything
    /// else is read as [`NameSpec::split`] reads it.
    pub fn parse(text: &str) -> NameSpec {
        if text == "all" { NameSpec::All } else { NameSpec::split(text) }
    }

    /// supervisord's `split_namespec`, as its XML-RPC methods read a name: the
    /// text up to the first `:` is the group, `*` or nothing after it means the
    /// whole group, and a name without `:` is its own group. Never
    /// [`NameSpec::All`]: to supervisord `all` is an ordinary name.
    pub fn split(text: &str) -> NameSpec {
        match text.split_once(':') {
            Some((group, "" | "*")) => NameSpec::Group(group.to_owned()),
            Some((group, name)) => NameSpec::process(group, name),
            None => NameSpec::process(text, text),
        }
    }

    /// The spec of one process.
    pub fn process(group: impl Into<String>, name: impl Into<String>) -> NameSpec {
        NameSpec::Process { group: group.into(), name: name.into() }
    }

    /// The group part (`None` for `all`).
    pub fn group(&self) -> Option<&str> {
        match self {
            NameSpec::All => None,
            NameSpec::Group(group) | NameSpec::Process { group, .. } => Some(group),
        }
    }

    /// The process part (`None` for `all` and a whole group).
    pub fn name(&self) -> Option<&str> {
        match self {
            NameSpec::Process { name, .. } => Some(name),
            NameSpec::All | NameSpec::Group(_) => None,
        }
    }
}

/// supervisord's `make_namespec`: `name` alone when the process is named like
/// its group, else `group:name`. This is how status lines and results name a
/// process.
pub fn make_namespec(group: &str, name: &str) -> String {
    if group == name { name.to_owned() } else { format!("{group}:{name}") }
}

impl fmt::Display for NameSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameSpec::All => f.write_str("all"),
            NameSpec::Group(group) => write!(f, "{group}:*"),
            // `all` alone would read back as every process.
            NameSpec::Process { group, name } if group == "all" && name == "all" => {
                f.write_str("all:all")
            }
            NameSpec::Process { group, name } => f.write_str(&make_namespec(group, name)),
        }
    }
}

impl FromStr for NameSpec {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(NameSpec::parse(text))
    }
}

impl Serialize for NameSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NameSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| NameSpec::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_split_namespec() {
        let cases = [
            ("all", NameSpec::All, "all"),
            ("app", NameSpec::process("app", "app"), "app"),
            ("g:p", NameSpec::process("g", "p"), "g:p"),
            ("g:*", NameSpec::Group("g".into()), "g:*"),
            ("g:", NameSpec::Group("g".into()), "g:*"),
            // Only the first colon splits, as Python's `str.split(':', 1)`.
            ("g:p:q", NameSpec::process("g", "p:q"), "g:p:q"),
            (":p", NameSpec::process("", "p"), ":p"),
            ("", NameSpec::process("", ""), ""),
            ("all:all", NameSpec::process("all", "all"), "all:all"),
            ("all:*", NameSpec::Group("all".into()), "all:*"),
        ];
        for (text, spec, shown) in cases {
            assert_eq!(NameSpec::parse(text), spec, "{text}");
            assert_eq!(spec.to_string(), shown, "{text}");
            assert_eq!(NameSpec::parse(shown), spec, "{text} round trip");
            assert_eq!(text.parse::<NameSpec>(), Ok(spec.clone()));
            let json = serde_json::to_string(&spec).expect("serialize");
            assert_eq!(json, format!("\"{shown}\""));
            assert_eq!(serde_json::from_str::<NameSpec>(&json).expect("deserialize"), spec);
        }
    }

    #[test]
    fn supervisord_reads_all_as_a_name() {
        assert_eq!(NameSpec::split("all"), NameSpec::process("all", "all"));
        assert_eq!(NameSpec::split("g:*"), NameSpec::Group("g".into()));
        assert_eq!(NameSpec::split("web"), NameSpec::process("web", "web"));
    }

    #[test]
    fn parts_and_canonical_names() {
        let spec = NameSpec::parse("g:p");
        assert_eq!((spec.group(), spec.name()), (Some("g"), Some("p")));
        assert_eq!((NameSpec::All.group(), NameSpec::All.name()), (None, None));
        let group = NameSpec::parse("g:*");
        assert_eq!((group.group(), group.name()), (Some("g"), None));
        assert_eq!(make_namespec("web", "web"), "web");
        assert_eq!(make_namespec("pool", "pool_01"), "pool:pool_01");
    }
}
