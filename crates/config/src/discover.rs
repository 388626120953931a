//! Where to look for a config file when none is given (`-c` absent).
//!
//! supervisord's order (`Options.__init__`), each slot followed by its Vigil
//! sibling `vigil.toml` in the same directory, so a native config is found where a
//! supervisord one would be. The first existing file wins.

use std::path::{Path, PathBuf};

/// Every path tried, in order. `exe_dir` is the directory of the running binary
/// (`dirname(argv[0])`); supervisord looks one level above it (`../etc`, `..`).
pub fn search_paths(exe_dir: Option<&Path>, cwd: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(prefix) = exe_dir.and_then(Path::parent) {
        dirs.push(prefix.join("etc"));
        dirs.push(prefix.to_path_buf());
    }
    dirs.push(cwd.to_path_buf());
    dirs.push(cwd.join("etc"));
    dirs.push(PathBuf::from("/etc"));
    dirs.push(PathBuf::from("/etc/supervisor"));
    dirs.iter().flat_map(|d| [d.join("supervisord.conf"), d.join("vigil.toml")]).collect()
}

/// The first of [`search_paths`] that exists as a file.
pub fn find_config_file(exe_dir: Option<&Path>, cwd: &Path) -> Option<PathBuf> {
    search_paths(exe_dir, cwd).into_iter().find(|p| p.is_file())
}

/// supervisord's message when no config file was found, listing `searched`.
pub fn not_found_message(searched: &[PathBuf]) -> String {
    let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
    format!(
        "No config file found at default paths ({}); use the -c option to specify a config file at a different path",
        paths.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_matches_supervisord() {
        let paths = search_paths(Some(Path::new("/opt/sv/bin")), Path::new("/srv/app"));
        let conf: Vec<_> = paths.iter().step_by(2).map(|p| p.display().to_string()).collect();
        assert_eq!(
            conf,
            [
                "/opt/sv/etc/supervisord.conf",
                "/opt/sv/supervisord.conf",
                "/srv/app/supervisord.conf",
                "/srv/app/etc/supervisord.conf",
                "/etc/supervisord.conf",
                "/etc/supervisor/supervisord.conf",
            ]
        );
        assert_eq!(paths[1], PathBuf::from("/opt/sv/etc/vigil.toml"));
        let message = not_found_message(&paths[..2]);
        assert_eq!(
            message,
            "No config file found at default paths (/opt/sv/etc/supervisord.conf, /opt/sv/etc/vigil.toml); use the -c option to specify a config file at a different path"
        );
    }

    #[test]
    fn first_existing_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("cwd");
        std::fs::create_dir_all(cwd.join("etc")).unwrap();
        std::fs::write(cwd.join("etc/supervisord.conf"), "").unwrap();
        let exe = dir.path().join("prefix/bin");
        assert_eq!(find_config_file(Some(&exe), &cwd), Some(cwd.join("etc/supervisord.conf")));
        std::fs::write(cwd.join("vigil.toml"), "").unwrap();
        assert_eq!(find_config_file(Some(&exe), &cwd), Some(cwd.join("vigil.toml")));
        std::fs::create_dir_all(dir.path().join("prefix/etc")).unwrap();
        std::fs::write(dir.path().join("prefix/etc/supervisord.conf"), "").unwrap();
        assert_eq!(
            find_config_file(Some(&exe), &cwd),
            Some(dir.path().join("prefix/etc/supervisord.conf"))
        );
    }
}
