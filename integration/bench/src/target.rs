//! Targets: a daemon and its control CLI, described by command templates,
//! and the model of supervision each follows.
//!
//! Templates are split like a shell would (`shlex`) and then placeholders are
//! substituted per word, so paths with spaces stay one argument and nothing
//! is ever run through a shell. Placeholders: `{config}` (the run's config:
//! the INI file, s6's scan directory or Horust's services directory), `{dir}`
//! (the run's directory), `{sock}` (its control socket), `{name}` (a program
//! name, for `pid` and `start`), `{services_max}` (s6-svscan's service table
//! size for the run's program count).

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// How a target is configured and observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Reads the supervisord INI config and answers supervisorctl's
    /// commands (vigild, supervisord, custom targets).
    Supervisord,
    /// s6-svscan on a scan directory: one s6-supervise process per program.
    S6,
    /// Horust on a directory of TOML service files.
    Horust,
}

impl Model {
    /// Name in skip reasons.
    pub fn name(self) -> &'static str {
        match self {
            Model::Supervisord => "supervisord-compatible",
            Model::S6 => "s6",
            Model::Horust => "Horust",
        }
    }
}

/// One implementation under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Column label in the table.
    pub label: String,
    pub daemon: String,
    /// The supervisorctl-compatible CLI; `None` for s6 and Horust, which the
    /// harness observes through `/proc` only.
    pub ctl: Option<String>,
    /// Run once to record the daemon's version in the report.
    pub version: Option<String>,
    /// The version is the first line of that command's output that starts
    /// with this.
    pub version_prefix: &'static str,
    /// Whether S9 (5,000 programs) runs against this target by default.
    pub runs_s9: bool,
    pub model: Model,
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
            ctl: Some(format!("{} -c {{config}}", quote(&c))),
            version: Some(format!("{} --version", quote(&d))),
            version_prefix: "",
            runs_s9: true,
            model: Model::Supervisord,
        }
    }

    /// supervisord/supervisorctl from a virtualenv.
    pub fn supervisord(venv: &Path) -> Target {
        let bin = venv.join("bin");
        let d = bin.join("supervisord");
        Target {
            label: "supervisord".into(),
            daemon: format!("{} -n -c {{config}}", quote(&d)),
            ctl: Some(format!("{} -c {{config}}", quote(&bin.join("supervisorctl")))),
            version: Some(format!("{} --version", quote(&d))),
            version_prefix: "",
            // supervisord needs minutes and more than 1,024 descriptors for
            // 5,000 programs; the issue leaves it unmeasured.
            runs_s9: false,
            model: Model::Supervisord,
        }
    }

    /// `s6-svscan` from `bin_dir` on the run's scan directory. SIGTERM makes
    /// it stop every service and exit, which is the harness's shutdown.
    pub fn s6(bin_dir: &Path) -> Target {
        Target {
            label: "s6".into(),
            daemon: format!("{} -c {{services_max}} {{config}}", quote(&bin_dir.join("s6-svscan"))),
            ctl: None,
            // s6's programs print no version; the package manager knows it.
            version: Some("dpkg-query -W '-f=s6 ${Version}' s6".into()),
            version_prefix: "",
            runs_s9: true,
            model: Model::S6,
        }
    }

    /// The `horust` binary on the run's services directory, with its
    /// control socket and (absent) config file in the run directory.
    /// Horust prints no version; `cargo install --list` on the root it was
    /// installed in knows it (`ROOT/bin/horust`).
    pub fn horust(bin: &Path) -> Target {
        let root = bin.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        Target {
            label: "horust".into(),
            daemon: format!(
                "{} --services-path {{config}} --uds-folder-path {{dir}} --config-path {{dir}}/horust.toml",
                quote(bin)
            ),
            ctl: None,
            version: Some(format!("cargo install --list --root {}", quote(root))),
            version_prefix: "horust v",
            // Its supervisor loop reaps at most 20 children per 300 ms tick,
            // so stopping 5,000 takes over a minute: opt in with
            // --s9-all-targets.
            runs_s9: false,
            model: Model::Horust,
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
            ctl: Some(ctl.to_owned()),
            version: None,
            version_prefix: "",
            runs_s9: true,
            model: Model::Supervisord,
        })
    }

    /// The executables a preset needs, to check before running.
    pub fn executables(&self) -> Vec<PathBuf> {
        std::iter::once(&self.daemon)
            .chain(self.ctl.as_ref())
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
    /// Programs in the config last written (for `{services_max}`).
    pub programs: usize,
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
                .replace("{services_max}", &crate::s6::services_max(vars.programs).to_string())
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
            programs: 5000,
        }
    }

    #[test]
    fn expansion_keeps_spaces_in_one_word() {
        let t = Target::supervisord(Path::new("/v env"));
        let argv = expand(&t.daemon, &vars(), None).unwrap();
        assert_eq!(argv, vec!["/v env/bin/supervisord", "-n", "-c", "/r un/supervisord.conf"]);
        let ctl = t.ctl.unwrap();
        let argv = expand(&format!("{ctl} pid {{name}}"), &vars(), Some("p000")).unwrap();
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

    #[test]
    fn peer_targets() {
        let t = Target::s6(Path::new("/usr/bin"));
        assert_eq!(t.model, Model::S6);
        assert_eq!(t.executables(), vec![PathBuf::from("/usr/bin/s6-svscan")]);
        let mut v = vars();
        v.config = "/r un/scan".into();
        let argv = expand(&t.daemon, &v, None).unwrap();
        assert_eq!(argv, ["/usr/bin/s6-svscan", "-c", "5000", "/r un/scan"]);
        v.programs = 10;
        assert_eq!(expand(&t.daemon, &v, None).unwrap()[2], "500");
        let version = shlex::split(t.version.as_deref().unwrap()).unwrap();
        assert_eq!(version, ["dpkg-query", "-W", "-f=s6 ${Version}", "s6"]);

        let t = Target::horust(Path::new("/c/bin/horust"));
        assert_eq!(t.model, Model::Horust);
        assert!(!t.runs_s9 && t.ctl.is_none());
        v.config = "/r un/services".into();
        let argv = expand(&t.daemon, &v, None).unwrap();
        assert_eq!(
            argv,
            [
                "/c/bin/horust",
                "--services-path",
                "/r un/services",
                "--uds-folder-path",
                "/r un",
                "--config-path",
                "/r un/horust.toml"
            ]
        );
    }
}
