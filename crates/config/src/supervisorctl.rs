//! What a client (vigilctl) reads of a config file: its `[supervisorctl]`
//! section, found and expanded as vigild reads the rest.
//!
//! The file is read the way [`crate::load`] reads it (same INI dialect or TOML,
//! `[include]` files, duplicate sections merged with later keys winning), and
//! the section goes through the same builder, so a client and the daemon agree
//! on every value. Only `[supervisorctl]` is built, as supervisorctl reads only
//! its own section: a mistake elsewhere in the file is the daemon's business,
//! and `[supervisord] environment=` does not reach the section's `%(ENV_X)s`.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use crate::error::{ConfigErrors, Diagnostics};
use crate::model::Supervisorctl;
use crate::raw::{RawSection, merge_sections};
use crate::{LoadOptions, build, read_root, read_sections};

/// supervisorctl's `serverurl` when none is configured.
pub const DEFAULT_SERVERURL: &str = "http://localhost:9001";
/// supervisorctl's `prompt` when none is configured (the shell shows `supervisor> `).
pub const DEFAULT_PROMPT: &str = "supervisor";

/// Why [`read_supervisorctl`] found no settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorctlError {
    /// The file (with its includes) has no `[supervisorctl]` section, which
    /// supervisorctl requires of a config file it reads.
    #[error(".ini file does not include supervisorctl section")]
    NoSection,
    /// The file could not be read, or the section has errors.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
}

/// supervisorctl's settings without a config file.
impl Default for Supervisorctl {
    fn default() -> Self {
        Supervisorctl {
            serverurl: DEFAULT_SERVERURL.to_owned(),
            username: None,
            password: None,
            prompt: DEFAULT_PROMPT.to_owned(),
            history_file: None,
        }
    }
}

/// Reads `[supervisorctl]` from the config at `path` (made absolute against
/// the current directory; `.toml` is TOML, anything else the INI dialect).
/// `env` provides `%(ENV_X)s` and `HOME` for `~`. A `unix://` serverurl must
/// be absolute and comes back normalised; `history_file` is resolved against
/// the directory of the file it is written in.
pub fn read_supervisorctl(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Supervisorctl, SupervisorctlError> {
    let mut diags = Diagnostics::default();
    let (path, text) = read_root(path, &mut diags)?;
    let options = LoadOptions::from_system();
    let Some((sections, files)) =
        read_sections(&text, &path, env, &options, &mut diags, Some(&["supervisorctl"]))
    else {
        return Err(ConfigErrors { errors: diags.errors }.into());
    };
    let mut wanted: Vec<RawSection> =
        merge_sections(sections).into_iter().filter(|s| s.name == "supervisorctl").collect();
    if wanted.is_empty() {
        return Err(SupervisorctlError::NoSection);
    }
    // The builder requires a [supervisord]; an empty one stands in for it, so
    // nothing of the real one is read.
    wanted.push(RawSection {
        name: "supervisord".into(),
        file: Rc::from(path.as_path()),
        line: None,
        entries: Vec::new(),
    });
    let ctx = build::Context {
        env,
        host_node_name: &options.host_node_name,
        root: &path,
        files: &files,
        dirs: Default::default(),
    };
    let config = build::build(&wanted, &ctx, &mut diags);
    diags.sort(&files);
    if !diags.errors.is_empty() {
        return Err(ConfigErrors { errors: diags.errors }.into());
    }
    Ok(config.supervisorctl.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("HOME".to_owned(), "/home/op".to_owned()),
            ("PW".to_owned(), "s3".to_owned()),
        ])
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn reads_the_ini_section_like_supervisorctl() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Duplicate sections merge, later keys win, keys are case-insensitive,
        // inline comments are cut, and errors elsewhere in the file do not
        // matter to a client.
        let path = write(
            dir.path(),
            "supervisord.conf",
            "[supervisord]\nlogfile=/nonexistent/dir/x.log\nenvironment=PW=\"other\"\n\n\
             [supervisorctl]\nServerURL = unix://%(here)s//run/../vigil.sock ; inline\n\
             username=admin\npassword=%(ENV_PW)s\nprompt=vigil\n\n\
             [program:broken]\nstartsecs=never\n\n\
             [supervisorctl]\nhistory_file=%(here)s/.hist\nprompt=100%%\n",
        );
        let settings = read_supervisorctl(&path, &env()).expect("read");
        let here = dir.path().display();
        assert_eq!(settings.serverurl, format!("unix://{here}/vigil.sock"));
        assert_eq!(settings.username.as_deref(), Some("admin"));
        assert_eq!(settings.password.as_deref(), Some("s3"));
        assert_eq!(settings.prompt, "100%");
        assert_eq!(settings.history_file, Some(dir.path().join(".hist")));
    }

    #[test]
    fn reads_the_toml_section_and_includes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "vigil.toml",
            "[supervisorctl]\nserverurl = \"http://127.0.0.1:9001\"\nhistory_file = \"~/.vigil_history\"\n",
        );
        let settings = read_supervisorctl(&path, &env()).expect("toml");
        assert_eq!(settings.serverurl, "http://127.0.0.1:9001");
        assert_eq!(settings.prompt, DEFAULT_PROMPT);
        assert_eq!(settings.history_file, Some(PathBuf::from("/home/op/.vigil_history")));

        std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
        write(dir.path(), "conf.d/ctl.conf", "[supervisorctl]\nusername = %(ENV_HOME)s\n");
        let root =
            write(dir.path(), "root.conf", "[supervisord]\n[include]\nfiles = conf.d/*.conf\n");
        let settings = read_supervisorctl(&root, &env()).expect("include");
        assert_eq!(settings.username.as_deref(), Some("/home/op"));
        assert_eq!(settings.serverurl, DEFAULT_SERVERURL);
    }

    #[test]
    fn an_empty_section_gives_the_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "a.conf", "[supervisorctl]\n");
        assert_eq!(read_supervisorctl(&path, &env()), Ok(Supervisorctl::default()));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let none = write(dir.path(), "none.conf", "[supervisord]\n");
        assert_eq!(read_supervisorctl(&none, &env()), Err(SupervisorctlError::NoSection));
        assert_eq!(
            SupervisorctlError::NoSection.to_string(),
            ".ini file does not include supervisorctl section"
        );

        let bad = write(dir.path(), "bad.conf", "[supervisorctl]\nserverurl=%(ENV_NOPE)s\n");
        let error = read_supervisorctl(&bad, &env()).expect_err("unknown name").to_string();
        assert!(
            error.starts_with(&format!("{}:2: [supervisorctl] serverurl: ", bad.display()))
                && error.contains("ENV_NOPE"),
            "{error}"
        );
        let relative = write(dir.path(), "rel.conf", "[supervisorctl]\nserverurl=unix://x.sock\n");
        let error = read_supervisorctl(&relative, &env()).expect_err("relative").to_string();
        assert!(error.contains("must be absolute"), "{error}");
        let toml = write(dir.path(), "bad.toml", "[supervisorctl]\nbogus = 1\n");
        let error = read_supervisorctl(&toml, &env()).expect_err("unknown key").to_string();
        assert!(error.contains(":2:") && error.contains("bogus"), "{error}");
        let missing = dir.path().join("missing.conf");
        let error = read_supervisorctl(&missing, &env()).expect_err("missing").to_string();
        assert!(error.contains("could not read config file"), "{error}");
    }
}
