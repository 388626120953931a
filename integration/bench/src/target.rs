//! Targets: a daemon and its control CLI, described by command templates.
//!
//! Templates are split like a shell would (`shlex`) and then placeholders are
//! substituted per word, so paths with spaces stay one argument and nothing
//! is ever run through a shell. Placeholders: `{config}` (the run's config
//! file), `{dir}` (the run's directory), `{sock}` (its control socket),
//! `{name}` (a program name, for `pid` and `start`).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// One implementation under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Column label in the table.
    pub label: String,
    pub daemon: String,
    pub ctl: String,
    /// Run once to record the daemon's version in the report.
    pub version: Option<String>,
    /// Whether S9 (5,000 programs) runs against this target by default.
    pub runs_s9: bool,
}

impl Target {
    /// Whether the daemon is vigild (which also speaks Vigil's own protocol).
    pub fn is_vigil(&self) -> bool {
        self.daemon
            .split_whitespace()
            .next()
            .and_then(|program| Path::new(program).file_name())
            .is_some_and(|name| name == "vigild")
    }

    /// `vigild`/`vigilctl` from `bin_dir`.
    pub fn vigil(bin_dir: &Path) -> Target {
        let d = bin_dir.join("vigild");
        let c = bin_dir.join("vigilctl");
        Target {
            label: "vigil".into(),
            daemon: format!("{} -n -c {{config}}", quote(&d)),
            ctl: format!("{} -c {{config}}", quote(&c)),
            version: Some(format!("{} --version", quote(&d))),
            runs_s9: true,
        }
    }

    /// supervisord/supervisorctl from a virtualenv.
    pub fn supervisord(venv: &Path) -> Target {
        let bin = venv.join("bin");
        let d = bin.join("supervisord");
        Target {
            label: "supervisord".into(),
            daemon: format!("{} -n -c {{config}}", quote(&d)),
            ctl: format!("{} -c {{config}}", quote(&bin.join("supervisorctl"))),
            version: Some(format!("{} --version", quote(&d))),
            // supervisord needs minutes and more than 1,024 descriptors for
            // 5,000 programs; the issue leaves it unmeasured.
            runs_s9: false,
        }
    }

    /// Parses `LABEL::DAEMON TEMPLATE::CTL TEMPLATE` (`--custom`).
    pub fn parse_custom(text: &str) -> anyhow::Result<Target> {
        let parts: Vec<&str> = text.split("::").collect();
        let [label, daemon, ctl] = parts[..] else {
            bail!("custom target '{text}': expected LABEL::DAEMON TEMPLATE::CTL TEMPLATE");
        };
        for (what, tmpl) in [("daemon", daemon), ("ctl", ctl)] {
            if shlex::split(tmpl).is_none_or(|w| w.is_empty()) {
                bail!("custom target '{label}': {what} template '{tmpl}' is empty or badly quoted");
            }
        }
        Ok(Target {
            label: label.trim().to_owned(),
            daemon: daemon.to_owned(),
            ctl: ctl.to_owned(),
            version: None,
            runs_s9: true,
        })
    }

    /// The executables a preset needs, to check before running.
    pub fn executables(&self) -> Vec<PathBuf> {
        [&self.daemon, &self.ctl]
            .iter()
            .filter_map(|t| shlex::split(t).and_then(|w| w.into_iter().next()))
            .map(PathBuf::from)
            .collect()
    }
}

fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    shlex::try_quote(&s).map_or(s.clone(), |q| q.into_owned())
}

/// Values for the placeholders of one run.
#[derive(Debug, Clone)]
pub struct Vars {
    pub config: PathBuf,
    pub dir: PathBuf,
    pub sock: PathBuf,
}

/// Expands a template into argv. `name` fills `{name}`.
pub fn expand(template: &str, vars: &Vars, name: Option<&str>) -> anyhow::Result<Vec<String>> {
    let words = shlex::split(template).with_context(|| format!("bad quoting in '{template}'"))?;
    if words.is_empty() {
        bail!("empty command template");
    }
    Ok(words
        .into_iter()
        .map(|w| {
            w.replace("{config}", &vars.config.display().to_string())
                .replace("{dir}", &vars.dir.display().to_string())
                .replace("{sock}", &vars.sock.display().to_string())
                .replace("{name}", name.unwrap_or(""))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            config: "/r un/supervisord.conf".into(),
            dir: "/r un".into(),
            sock: "/r un/ctl.sock".into(),
        }
    }

    #[test]
    fn expansion_keeps_spaces_in_one_word() {
        let t = Target::supervisord(Path::new("/v env"));
        let argv = expand(&t.daemon, &vars(), None).unwrap();
        assert_eq!(argv, vec!["/v env/bin/supervisord", "-n", "-c", "/r un/supervisord.conf"]);
        let argv = expand(&format!("{} pid {{name}}", t.ctl), &vars(), Some("p000")).unwrap();
        assert_eq!(argv[2..], ["/r un/supervisord.conf", "pid", "p000"]);
    }

    #[test]
    fn custom_targets() {
        let t = Target::parse_custom("mine::/b/d -n -c {config}::/b/c -c {config}").unwrap();
        assert_eq!(t.label, "mine");
        assert_eq!(t.executables(), vec![PathBuf::from("/b/d"), PathBuf::from("/b/c")]);
        assert!(Target::parse_custom("mine::/b/d").is_err());
        assert!(Target::parse_custom("mine::::/b/c").is_err());
        assert!(Target::parse_custom("mine::'unterminated::/b/c").is_err());
    }
}
