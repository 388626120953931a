//! The workspace's own configs stay loadable: every `*.conf`, `*.ini` and `*.toml`
//! under `config/` and `examples/` must load, except files named `*.bad.conf` /
//! `*.bad.toml` or under a `bad/` directory, which must fail. Files that another
//! config includes are fragments and are checked through their includer; a
//! fragment nothing includes yet (a program file an operator copies into
//! `conf.d/`) is checked by including it from a minimal root config. Files with
//! no `[section]` header at all belong to other programs (lighttpd.conf) and are
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use vigil_config::{Config, load};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("conf" | "ini" | "toml"))
        {
            out.push(path);
        }
    }
}

fn expected_bad(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.contains(".bad.") || path.components().any(|c| c.as_os_str() == "bad")
}

/// The real environment: these are the configs users run. The seed tutorial
/// names the invoking user with `%(ENV_USER)s`, which a bare CI shell may not set.
fn env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    if !env.contains_key("USER") {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid).ok().flatten().expect("current user");
        env.insert("USER".to_owned(), user.name);
    }
    env
}

fn is_supervisor_ini(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    path.extension().is_some_and(|e| e == "toml")
        || text.lines().any(|line| line.trim_start().starts_with('['))
}

fn has_daemon_section(path: &Path) -> bool {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    path.extension().is_some_and(|e| e == "toml")
        || text.lines().any(|line| line.trim() == "[supervisord]")
}

/// Loads a fragment the way it is used: included from a root config.
fn load_fragment(fragment: &Path) -> Result<vigil_config::Loaded, vigil_config::ConfigErrors> {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("supervisord.conf");
    let fragment = fragment.canonicalize().expect("fragment path");
    std::fs::write(&root, format!("[supervisord]\n[include]\nfiles = {}\n", fragment.display()))
        .expect("write root");
    load(&root, &env())
}

#[test]
fn every_shipped_config_loads() {
    let mut files = Vec::new();
    walk(&workspace().join("config"), &mut files);
    walk(&workspace().join("examples"), &mut files);
    files.retain(|file| is_supervisor_ini(file));
    files.sort();
    assert!(!files.is_empty(), "config/ holds the reference configs");

    let mut results = Vec::new();
    let mut included = BTreeSet::new();
    for file in &files {
        let result =
            if has_daemon_section(file) { load(file, &env()) } else { load_fragment(file) };
        if let Ok(loaded) = &result {
            if !has_daemon_section(file) {
                results.push((file, result));
                continue;
            }
            included
                .extend(loaded.config.files.iter().skip(1).filter_map(|f| f.canonicalize().ok()));
        }
        results.push((file, result));
    }
    let mut failures = Vec::new();
    for (file, result) in results {
        let fragment = file.canonicalize().map(|f| included.contains(&f)).unwrap_or(false);
        match (result, expected_bad(file)) {
            (Ok(_), true) => failures.push(format!("{} loaded but is marked bad", file.display())),
            (Err(errors), false) if !fragment => {
                failures.push(format!("{}:\n{errors}", file.display()))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Blanks what legitimately differs between the two forms: where things were read
/// from, and the display form of a command given as a TOML array.
fn normalized(mut config: Config) -> Config {
    config.source = PathBuf::new();
    config.files.clear();
    for group in &mut config.groups {
        for process in &mut group.processes {
            let process = std::sync::Arc::make_mut(process);
            process.origin.file = PathBuf::new();
            process.origin.line = 0;
            process.command_line.clear();
        }
    }
    config
}

#[test]
fn reference_ini_and_toml_are_the_same_config() {
    let ini =
        load(&workspace().join("config/supervisord.conf"), &env()).expect("supervisord.conf loads");
    let toml = load(&workspace().join("config/vigil.toml"), &env()).expect("vigil.toml loads");
    assert!(ini.warnings.is_empty(), "{:?}", ini.warnings);
    assert!(toml.warnings.is_empty(), "{:?}", toml.warnings);
    let (ini, toml) = (normalized(ini.config), normalized(toml.config));
    if ini != toml {
        let a = serde_json::to_string_pretty(&ini).expect("json");
        let b = serde_json::to_string_pretty(&toml).expect("json");
        let diff: Vec<String> = a
            .lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .map(|(x, y)| format!("ini:  {x}\ntoml: {y}"))
            .collect();
        panic!("the two reference configs differ:\n{}", diff.join("\n"));
    }
    // The tutorial's sections are all there.
    assert!(ini.unix_http_server.is_some() && ini.supervisorctl.is_some());
    assert!(ini.rpcinterfaces.contains_key("supervisor"));
    let app2 = ini.processes().find(|p| p.name == "app2").expect("app2");
    assert!(app2.user.is_some());
    assert_eq!(app2.environment.get("GREETING").map(String::as_str), Some("hello from app2"));
    assert_eq!(vigil_config::summary(&ini), "config OK: 3 programs, 3 groups, 4 processes");
}

#[test]
fn reference_config_paths_exist() {
    // Log and socket paths live in config/run/, which must exist in the repository.
    let loaded = load(&workspace().join("config/supervisord.conf"), &env()).expect("loads");
    let socket = loaded.config.unix_http_server.expect("socket").file;
    assert!(socket.parent().expect("dir").is_dir());
}

#[test]
fn bad_file_naming_rule() {
    assert!(expected_bad(Path::new("examples/x/broken.bad.conf")));
    assert!(expected_bad(Path::new("examples/bad/anything.toml")));
    assert!(!expected_bad(Path::new("examples/web/supervisord.conf")));
    assert!(!expected_bad(Path::new("examples/badge/vigil.toml")));
}
