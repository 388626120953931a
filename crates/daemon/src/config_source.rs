//! Where vigild's configuration comes from: one file, the command line and the
//! directory the command line was given in. Startup, SIGHUP and `reread` all
//! load through [`ConfigSource::load`], so each reads the same file with the
//! environment of the moment and applies the same command-line overlay
//! ([`Flags::overlay`]) on top.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_config::{Config, Diagnostic};

use crate::flags::Flags;

/// A loaded configuration with its non-fatal diagnostics, already rendered as
/// `file:line: [section] key: message`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadedConfig {
    /// The configuration, command-line overlay applied once it comes from
    /// [`ConfigSource::load`].
    pub config: Config,
    /// What the loader warned about.
    pub warnings: Vec<String>,
}

/// The file and the command line the daemon was started with.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The configuration file, absolute.
    pub path: PathBuf,
    /// The command line, whose settings override the file's `[supervisord]`.
    pub flags: Flags,
    /// The directory the command line was given in: relative paths in it are
    /// relative to this, whatever directory the daemon has moved to since.
    pub cwd: PathBuf,
}

/// Why [`ConfigSource::load`] gave no configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file has errors (every one is listed).
    Invalid(Vec<Diagnostic>),
    /// The file is valid, but a command-line setting cannot be applied to it.
    Flags(String),
}

impl LoadError {
    /// Every problem, one line each.
    pub fn messages(&self) -> Vec<String> {
        match self {
            LoadError::Invalid(diagnostics) => {
                diagnostics.iter().map(ToString::to_string).collect()
            }
            LoadError::Flags(message) => vec![message.clone()],
        }
    }
}

impl ConfigSource {
    /// Reads the file with `read` (the loader, given the file and the daemon's
    /// environment of now), then applies the command line.
    pub fn load(
        &self,
        read: impl FnOnce(&Path, &BTreeMap<String, String>) -> Result<LoadedConfig, Vec<Diagnostic>>,
    ) -> Result<LoadedConfig, LoadError> {
        let mut loaded = read(&self.path, &environment()).map_err(LoadError::Invalid)?;
        self.flags.overlay(&mut loaded.config.supervisord, &self.cwd).map_err(LoadError::Flags)?;
        Ok(loaded)
    }

    /// The problems of a failed load as the config's diagnostics: a command-line
    /// setting that cannot be applied is reported against the file.
    pub fn diagnostics(&self, error: LoadError) -> Vec<Diagnostic> {
        match error {
            LoadError::Invalid(diagnostics) => diagnostics,
            LoadError::Flags(message) => vec![Diagnostic {
                file: self.path.clone(),
                line: None,
                section: None,
                key: None,
                message,
            }],
        }
    }
}

/// The daemon's environment as text; variables that are not UTF-8 cannot be
/// passed through the config's `%(ENV_X)s` anyway.
pub fn environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vigil-config's loader, as the production backend calls it.
    fn read(path: &Path, env: &BTreeMap<String, String>) -> Result<LoadedConfig, Vec<Diagnostic>> {
        vigil_config::load(path, env)
            .map(|loaded| LoadedConfig {
                config: loaded.config,
                warnings: loaded.warnings.iter().map(ToString::to_string).collect(),
            })
            .map_err(|errors| errors.errors)
    }

    fn source(dir: &Path, text: &str, args: &[&str]) -> ConfigSource {
        let path = dir.join("vigil.conf");
        std::fs::write(&path, text).unwrap();
        let flags = Flags::parse_from(std::iter::once("vigild").chain(args.iter().copied()))
            .expect("valid command line");
        ConfigSource { path, flags, cwd: dir.to_owned() }
    }

    #[test]
    fn the_command_line_applies_over_the_file_from_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        let text = "[supervisord]\nidentifier = from-file\nminfds = 64\n";
        let source = source(dir.path(), text, &["-i", "from-flags", "-d", "work"]);
        let loaded = source.load(read).expect("loads");
        let settings = &loaded.config.supervisord;
        assert_eq!(settings.identifier, "from-flags");
        assert_eq!(settings.minfds, 64, "what the command line leaves alone is the file's");
        // Relative to where the command line was given, not to where vigild is now.
        assert_eq!(settings.directory.as_deref(), Some(dir.path().join("work").as_path()));
    }

    #[test]
    fn a_bad_file_and_a_bad_command_line_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let bad_file = source(dir.path(), "[supervisord]\nminfds = lots\n", &[]);
        let Err(LoadError::Invalid(diagnostics)) = bad_file.load(read) else {
            panic!("an invalid file is LoadError::Invalid")
        };
        assert!(!diagnostics.is_empty());
        assert_eq!(bad_file.diagnostics(LoadError::Invalid(diagnostics.clone())), diagnostics);

        let bad_flags = source(dir.path(), "[supervisord]\n", &["-d", "missing"]);
        let error = bad_flags.load(read).expect_err("no such directory");
        assert_eq!(error, LoadError::Flags("missing is not an existing directory".to_owned()));
        assert_eq!(error.messages(), ["missing is not an existing directory"]);
        let reported = bad_flags.diagnostics(error);
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].file, bad_flags.path);
        assert_eq!(reported[0].message, "missing is not an existing directory");
    }
}
