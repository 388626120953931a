//! Where vigilctl connects and how it prompts: the config file (`-c`, or the
//! first file of vigild's own search order, so both find the same
//! `supervisord.conf` or `vigil.toml`) and its `[supervisorctl]` section, read
//! by vigil-config as vigild reads the rest. Command-line flags override these
//! in `main.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_config::{Supervisorctl, SupervisorctlError};

/// Why vigilctl cannot use its config; shown as supervisorctl shows usage
/// errors (`Error: ...`, exit 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// `-c` names no file.
    #[error("could not find config file {0}")]
    NotFound(String),
    /// The file has no `[supervisorctl]` section, or errors in it.
    #[error(transparent)]
    Config(#[from] SupervisorctlError),
}

/// The config file to read: `-c` if given (it must exist), else the first
/// existing file of vigil-config's search order from `argv0` and `cwd`, else
/// none (vigilctl then runs on supervisorctl's defaults).
pub fn find_config(
    explicit: Option<&Path>,
    argv0: &Path,
    cwd: &Path,
) -> Result<Option<PathBuf>, SettingsError> {
    match explicit {
        Some(path) if path.is_file() => Ok(Some(path.to_owned())),
        Some(path) => Err(SettingsError::NotFound(path.display().to_string())),
        None => Ok(vigil_config::find_config_file(argv0.parent(), cwd)),
    }
}

/// The `[supervisorctl]` settings of `config`, or the defaults without one.
/// `env` is the process environment, for `%(ENV_X)s` and `~`.
pub fn read(
    config: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<Supervisorctl, SettingsError> {
    match config {
        Some(path) => Ok(vigil_config::read_supervisorctl(path, env)?),
        None => Ok(Supervisorctl::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_config_vigild_finds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cwd = dir.path().join("srv");
        std::fs::create_dir_all(&cwd).expect("mkdir");
        let argv0 = dir.path().join("prefix/bin/vigilctl");
        // Nothing in the directories of the search order that the test owns;
        // the system's /etc may hold a config, so only compare when it does not.
        let system = vigil_config::find_config_file(argv0.parent(), &cwd);
        assert_eq!(find_config(None, &argv0, &cwd), Ok(system.clone()));
        if system.is_none() {
            std::fs::write(cwd.join("vigil.toml"), "[supervisorctl]\n").expect("write");
            assert_eq!(find_config(None, &argv0, &cwd), Ok(Some(cwd.join("vigil.toml"))));
            std::fs::write(cwd.join("supervisord.conf"), "[supervisorctl]\n").expect("write");
            assert_eq!(find_config(None, &argv0, &cwd), Ok(Some(cwd.join("supervisord.conf"))));
        }
        let error =
            find_config(Some(Path::new("/nonexistent/x.conf")), &argv0, &cwd).expect_err("missing");
        assert_eq!(error.to_string(), "could not find config file /nonexistent/x.conf");
    }

    #[test]
    fn reads_through_vigil_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = BTreeMap::from([("PW".to_owned(), "s3".to_owned())]);
        assert_eq!(read(None, &env), Ok(Supervisorctl::default()));
        let ini = dir.path().join("supervisord.conf");
        std::fs::write(
            &ini,
            "[supervisorctl]\nserverurl=unix://%(here)s/v.sock\npassword=%(ENV_PW)s\n",
        )
        .expect("write");
        let settings = read(Some(&ini), &env).expect("ini");
        assert_eq!(settings.serverurl, format!("unix://{}/v.sock", dir.path().display()));
        assert_eq!(settings.password.as_deref(), Some("s3"));
        let toml = dir.path().join("vigil.toml");
        std::fs::write(&toml, "[supervisorctl]\nprompt = \"vigil\"\n").expect("write");
        assert_eq!(read(Some(&toml), &env).map(|s| s.prompt), Ok("vigil".to_owned()));
        let without = dir.path().join("other.conf");
        std::fs::write(&without, "[supervisord]\n").expect("write");
        assert_eq!(
            read(Some(&without), &env).map_err(|e| e.to_string()),
            Err(".ini file does not include supervisorctl section".to_owned())
        );
    }
}
