//! vigilctl's build script, and the part of vigild's (`daemon.rs`) they share:
//! it gives the crate the git commit it was built from as `VIGIL_COMMIT`, for
//! `--version`. Outside a git checkout (a source tarball, a container build
//! without `.git`) the commit is `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git(&manifest_dir, &["rev-parse", "--short", "HEAD"]);
    println!("cargo:rustc-env=VIGIL_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    // Without an explicit list cargo reruns the script whenever any file of
    // the package changes; with it, only when these do. Cargo reruns a script
    // whose own source changed by itself. (Not `file!()`: it is relative to
    // the workspace, a listed path to the package, and a path that does not
    // exist reruns the script, and rebuilds the crate, on every build.)
    println!("cargo:rerun-if-changed=Cargo.toml");
    if commit.is_none() {
        return;
    }
    // HEAD moves on checkout; the branch it names moves on commit. Both paths
    // come from git, so worktrees (where `.git` is a file) work too.
    let mut watched = vec!["HEAD".to_owned()];
    if let Some(branch) = git(&manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
        // A branch without a loose ref file lives in packed-refs.
        watched.push("packed-refs".to_owned());
    }
    for name in watched {
        // A missing path would make cargo rerun the script on every build.
        if let Some(path) = git(&manifest_dir, &["rev-parse", "--git-path", &name])
            .map(|path| manifest_dir.join(path))
            .filter(|path| path.exists())
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The trimmed stdout of a successful `git args...` run in `dir`.
#[expect(clippy::disallowed_methods, reason = "a build script has no reaper; it waits itself")]
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
