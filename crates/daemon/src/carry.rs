//! A live upgrade's configuration, loaded once: the pre-flight run of the new
//! binary (`--handover-check`, see `handover.rs`) writes what it loaded into a
//! memfd the old image gives it as stdin, the old image keeps that memfd
//! across `execve`, and the new image, the same binary, takes the
//! configuration from it instead of loading the file again. With thousands of
//! programs a load is the longest step of the upgrade's pause; reading it back
//! is about a tenth of that.
//!
//! The new image takes it only if nothing it came from has changed since the
//! pre-flight: the same executable (device, inode, size and times), the same
//! file and environment, and every file the loader read (the root, its
//! includes, the env files) unchanged. Otherwise, or if the memfd cannot be
//! read, it loads the file as it would without one. The check comes first in
//! the frame, so the configuration itself is only decoded by the binary that
//! encoded it: its layout needs no version of its own. The check's own layout
//! changes only with [`MAGIC`].

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config_source::LoadedConfig;
use crate::handover::{CONFIG_ENV as ENV, CONFIG_MEMFD as MEMFD_NAME};

/// The first bytes of the frame.
pub const MAGIC: &[u8; 8] = b"VIGILCF\n";

/// What must be unchanged for the configuration to be taken; written before
/// it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Check {
    /// The executable that loaded it.
    binary: FileId,
    /// The file it was loaded from.
    path: PathBuf,
    /// The environment it was loaded with.
    env: BTreeMap<String, String>,
    /// Every file the loader read.
    files: Vec<(PathBuf, FileId)>,
}

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path)?;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// The descriptor the old image asked the configuration to be written to:
/// [`ENV`], removed from the environment so the load does not see it.
///
/// # Safety
///
/// Call while the process has one thread (it changes the environment).
pub unsafe fn requested() -> Option<BorrowedFd<'static>> {
    let fd = std::env::var(ENV).ok()?;
    // SAFETY: one thread, as the caller promises.
    unsafe { std::env::remove_var(ENV) };
    (fd == "0" && is_the_memfd(0)).then(|| {
        // SAFETY: fd 0 stays open for the life of the process.
        unsafe { BorrowedFd::borrow_raw(0) }
    })
}

/// Whether `fd` (stdin) is the memfd the old image gives the pre-flight:
/// only it is written to, never a terminal or a file a person redirected.
fn is_the_memfd(fd: std::os::fd::RawFd) -> bool {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    let name = MEMFD_NAME.to_str().unwrap_or_default();
    target.to_str().is_some_and(|target| target.starts_with(&format!("/memfd:{name}")))
}

/// Writes `loaded`, as read from `path` with `env` (before the command line
/// applies), to `out`.
pub fn write(
    out: BorrowedFd<'_>,
    path: &Path,
    env: &BTreeMap<String, String>,
    loaded: &LoadedConfig,
) -> std::io::Result<()> {
    let mut read: Vec<&Path> = loaded.config.files.iter().map(PathBuf::as_path).collect();
    read.extend(loaded.config.supervisord.env_file.iter().map(PathBuf::as_path));
    read.extend(loaded.config.processes().flat_map(|p| p.env_files.iter().map(PathBuf::as_path)));
    read.sort_unstable();
    read.dedup();
    let files = read
        .into_iter()
        .map(|file| Ok((file.to_owned(), FileId::of(file)?)))
        .collect::<std::io::Result<_>>()?;
    let check = Check {
        binary: FileId::of(Path::new("/proc/self/exe"))?,
        path: path.to_owned(),
        env: env.clone(),
        files,
    };
    let mut body = postcard::to_stdvec(&check).map_err(std::io::Error::other)?;
    postcard::to_io(loaded, &mut body).map_err(std::io::Error::other)?;
    let file = std::fs::File::from(out.try_clone_to_owned()?);
    crate::handover::write_framed(&file, MAGIC, &[&body])
}

/// A configuration a pre-flight wrote, not yet checked.
pub struct Carried {
    check: Check,
    /// The configuration's encoding, decoded once the check holds.
    config: Vec<u8>,
}

impl Carried {
    /// Reads the memfd `fd` the state names, taking it (it closes here).
    ///
    /// # Safety
    ///
    /// `fd` must be the one the state names and nothing else in this image
    /// owns.
    pub unsafe fn take(fd: std::os::fd::RawFd) -> Result<Carried, String> {
        // SAFETY: as the caller promises.
        let fd = unsafe { crate::handover::take_fd(fd) }
            .ok_or_else(|| "its descriptor is not open".to_owned())?;
        let body = crate::handover::read_framed(&fd.into(), MAGIC, "the carried configuration")?;
        match postcard::take_from_bytes::<Check>(&body) {
            Ok((check, rest)) => Ok(Carried { check, config: rest.to_vec() }),
            Err(e) => Err(format!("the carried configuration is malformed: {e}")),
        }
    }

    /// The configuration, if it is what this binary would load from `path`
    /// with `env` now; otherwise why not.
    pub fn matching(
        self,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<LoadedConfig, String> {
        let Carried { check, config } = self;
        if FileId::of(Path::new("/proc/self/exe")).ok() != Some(check.binary) {
            return Err("another executable loaded it".to_owned());
        }
        if check.path != path {
            return Err(format!("it was loaded from {}", check.path.display()));
        }
        if check.env != *env {
            return Err("the environment changed since".to_owned());
        }
        if let Some((file, _)) =
            check.files.iter().find(|(file, id)| FileId::of(file).ok() != Some(*id))
        {
            return Err(format!("{} changed since", file.display()));
        }
        postcard::from_bytes(&config)
            .map_err(|e| format!("the carried configuration is malformed: {e}"))
    }
}

/// Closes a descriptor the state names without reading it (an image that
/// will not use the configuration).
///
/// # Safety
///
/// As [`Carried::take`].
pub unsafe fn close(fd: std::os::fd::RawFd) {
    // SAFETY: as the caller promises.
    drop(unsafe { crate::handover::take_fd(fd) });
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, IntoRawFd as _};

    use super::*;

    /// A config file in `dir` and what the loader makes of it.
    fn loaded(dir: &Path) -> (PathBuf, BTreeMap<String, String>, LoadedConfig) {
        let path = dir.join("vigild.conf");
        let env_file = dir.join("app.env");
        std::fs::write(&env_file, "TOKEN=secret\n").unwrap();
        std::fs::write(
            &path,
            "[supervisord]\n[program:app]\ncommand=/bin/true\nenv_file=app.env\n",
        )
        .unwrap();
        let env = BTreeMap::from([("HOME".to_owned(), "/root".to_owned())]);
        let config = vigil_config::load(&path, &env).expect("loads").config;
        (path, env, LoadedConfig { config, warnings: vec!["a warning".to_owned()] })
    }

    /// What [`write`] put in a fresh memfd, as the next image takes it.
    fn carried(path: &Path, env: &BTreeMap<String, String>, loaded: &LoadedConfig) -> Carried {
        let memfd = crate::handover::memfd(MEMFD_NAME).unwrap();
        write(memfd.as_fd(), path, env, loaded).unwrap();
        // SAFETY: the memfd is this test's alone; `take` owns it from here.
        unsafe { Carried::take(memfd.into_raw_fd()) }.unwrap()
    }

    #[test]
    fn the_configuration_reads_back_whole_while_nothing_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, env, loaded) = loaded(dir.path());
        let back = carried(&path, &env, &loaded).matching(&path, &env).expect("taken");
        assert_eq!(back.config, loaded.config);
        assert_eq!(back.warnings, loaded.warnings);
        let app = back.config.processes().next().unwrap();
        assert_eq!(app.env_file_vars.vars()["TOKEN"], "secret");
    }

    #[test]
    fn another_file_environment_or_edit_is_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, env, loaded) = loaded(dir.path());
        let other = dir.path().join("other.conf");
        let why = carried(&path, &env, &loaded).matching(&other, &env).unwrap_err();
        assert!(why.contains("it was loaded from"), "{why}");
        let mut changed = env.clone();
        changed.insert("PORT".to_owned(), "80".to_owned());
        let why = carried(&path, &env, &loaded).matching(&path, &changed).unwrap_err();
        assert_eq!(why, "the environment changed since");
        // An env file rewritten after the pre-flight.
        let before = carried(&path, &env, &loaded);
        std::fs::remove_file(dir.path().join("app.env")).unwrap();
        std::fs::write(dir.path().join("app.env"), "TOKEN=rotated\n").unwrap();
        let why = before.matching(&path, &env).unwrap_err();
        assert!(why.ends_with("app.env changed since"), "{why}");
    }

    #[test]
    fn only_a_memfd_given_as_stdin_is_written_to() {
        use std::os::fd::AsRawFd as _;
        let given = crate::handover::memfd(MEMFD_NAME).unwrap();
        assert!(is_the_memfd(given.as_raw_fd()));
        let other = crate::handover::memfd(c"something-else").unwrap();
        assert!(!is_the_memfd(other.as_raw_fd()));
        // The test runner's stdin is not the pre-flight's memfd.
        assert!(!is_the_memfd(0));
    }
}
