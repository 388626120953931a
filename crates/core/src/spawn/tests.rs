use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn make_file(path: &std::path::Path, mode: u32) {
    fs::write(path, b"#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn spawnerr_texts_match_supervisord() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_str().unwrap();
    let missing = format!("{dir_path}/nope");
    let err = resolve_command(&argv(&[&missing]), None).unwrap_err();
    assert_eq!(err.to_string(), format!("can't find command '{missing}'"));
    assert_eq!(err.fault(), SpawnFault::NoFile);

    let err = resolve_command(&argv(&["vigil-no-such-command"]), Some(dir_path)).unwrap_err();
    assert_eq!(err.to_string(), "can't find command 'vigil-no-such-command'");

    let err = resolve_command(&argv(&[dir_path]), None).unwrap_err();
    assert_eq!(err.to_string(), format!("command at '{dir_path}' is a directory"));
    assert_eq!(err.fault(), SpawnFault::NotExecutable);

    let plain = dir.path().join("plain");
    make_file(&plain, 0o644);
    let err = resolve_command(&argv(&[plain.to_str().unwrap()]), None).unwrap_err();
    assert_eq!(err.to_string(), format!("command at '{}' is not executable", plain.display()));
    assert_eq!(err.fault(), SpawnFault::NotExecutable);

    assert_eq!(resolve_command(&[], None).unwrap_err().to_string(), "command is empty");
}

#[test]
fn no_permission_when_x_bit_belongs_to_someone_else() {
    // Root passes access(X_OK) whenever any x bit is set, so this case only exists
    // for unprivileged users.
    if nix::unistd::getuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let others_only = dir.path().join("others-only");
    make_file(&others_only, 0o601);
    let err = resolve_command(&argv(&[others_only.to_str().unwrap()]), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no permission to run command '{}'", others_only.display())
    );
}

#[test]
fn path_search_takes_the_first_existing_entry() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    make_file(&second.path().join("tool"), 0o755);
    let path = format!("{}:{}", first.path().display(), second.path().display());
    let resolved = resolve_command(&argv(&["tool", "--flag"]), Some(&path)).unwrap();
    assert_eq!(resolved, argv(&[second.path().join("tool").to_str().unwrap(), "--flag"]));

    // A directory with the command's name earlier in PATH wins and fails, as in
    // supervisord (the first entry that stats is taken).
    fs::create_dir(first.path().join("tool")).unwrap();
    let err = resolve_command(&argv(&["tool"]), Some(&path)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("command at '{}/tool' is a directory", first.path().display())
    );

    // Trailing slashes are joined like os.path.join.
    let with_slash = format!("{}/", second.path().display());
    let resolved = resolve_command(&argv(&["tool"]), Some(&with_slash)).unwrap();
    assert_eq!(resolved[0], second.path().join("tool").to_str().unwrap());
}

#[test]
fn default_path_is_used_without_one() {
    // `sh` exists in /bin or /usr/bin on every Linux this runs on.
    let resolved = resolve_command(&argv(&["sh"]), None).unwrap();
    assert!(resolved[0] == "/bin/sh" || resolved[0] == "/usr/bin/sh", "{resolved:?}");
}

#[test]
fn spawnerr_texts_quote_the_command_like_python() {
    let not_found = |command: &str| SpawnError::NotFound(command.to_owned()).to_string();
    assert_eq!(not_found("abc"), "can't find command 'abc'");
    assert_eq!(not_found("it's"), "can't find command \"it's\"");
    assert_eq!(not_found("a'b\"c"), "can't find command 'a\\'b\"c'");
    assert_eq!(not_found("tab\there\n"), "can't find command 'tab\\there\\n'");
    assert_eq!(not_found("back\\slash"), "can't find command 'back\\\\slash'");
    assert_eq!(
        SpawnError::IsDirectory("/srv".to_owned()).to_string(),
        "command at '/srv' is a directory"
    );
}

#[test]
fn environment_merge_order() {
    let daemon = std::sync::Arc::new(InheritedEnv::new([
        ("PATH".to_owned(), "/daemon/bin".to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
        ("SUPERVISOR_ENABLED".to_owned(), "0".to_owned()),
    ]));
    let global: BTreeMap<String, String> =
        [("A", "global"), ("B", "global"), ("SUPERVISOR_GROUP_NAME", "from-global")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let program: BTreeMap<String, String> =
        [("B", "program")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let files: BTreeMap<String, String> = [("B", "file"), ("C", "file"), ("HOME", "/file")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let env = child_environment(
        &daemon,
        &global,
        &files,
        &program,
        "web_0",
        "web",
        Some("unix:///x.sock"),
    );
    let get = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    assert_eq!(get("PATH"), Some("/daemon/bin"));
    // daemon < [supervisord] environment < env files < environment=.
    assert_eq!(get("HOME"), Some("/file"));
    assert_eq!(get("C"), Some("file"));
    assert_eq!(get("SUPERVISOR_ENABLED"), Some("1"));
    assert_eq!(get("SUPERVISOR_SERVER_URL"), Some("unix:///x.sock"));
    assert_eq!(get("SUPERVISOR_PROCESS_NAME"), Some("web_0"));
    // supervisord's code lets the global block override SUPERVISOR_*.
    assert_eq!(get("SUPERVISOR_GROUP_NAME"), Some("from-global"));
    assert_eq!(get("A"), Some("global"));
    assert_eq!(get("B"), Some("program"));

    let env = child_environment(
        &std::sync::Arc::default(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        "a",
        "a",
        None,
    );
    assert!(env.iter().all(|(k, _)| k != "SUPERVISOR_SERVER_URL"));
    assert_eq!(env.get("SUPERVISOR_PROCESS_NAME"), Some("a"));
}

#[test]
fn search_path_precedence() {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let daemon = InheritedEnv::new([("PATH".to_owned(), "/d".to_owned())]);
    assert_eq!(search_path(&daemon, &map(&[]), &map(&[]), &map(&[])), Some("/d".to_owned()));
    let none = map(&[]);
    assert_eq!(search_path(&daemon, &map(&[("PATH", "/g")]), &none, &none), Some("/g".to_owned()));
    assert_eq!(
        search_path(&daemon, &map(&[("PATH", "/g")]), &none, &map(&[("PATH", "")])),
        Some(String::new())
    );
    // An env file's PATH is between the global one and the program's.
    let files = map(&[("PATH", "/f")]);
    assert_eq!(search_path(&daemon, &map(&[("PATH", "/g")]), &files, &none), Some("/f".to_owned()));
    assert_eq!(search_path(&daemon, &none, &files, &map(&[("PATH", "/p")])), Some("/p".to_owned()));
    let empty_path = InheritedEnv::new([("PATH".to_owned(), String::new())]);
    assert_eq!(search_path(&empty_path, &none, &none, &none), None);
    assert_eq!(search_path(&InheritedEnv::default(), &map(&[]), &map(&[]), &map(&[])), None);
}

#[test]
fn resolves_groups_of_the_current_user() {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let spec = vigil_config::UserSpec { name: uid.to_string(), uid, gid };
    let user = SpawnUser::resolve(&spec).unwrap();
    assert_eq!(user.uid, uid);
    assert_eq!(user.groups.first(), Some(&gid));
}

/// What a child's `envp` holds, read back through its pointers.
fn envp_strings(env: &ChildEnv) -> Result<Vec<String>, String> {
    let encoded = env.encode()?;
    let mut out = Vec::new();
    let mut p = encoded.as_ptr();
    // SAFETY: `encoded` is alive; its array is NULL-terminated and every entry
    // points to a C string it keeps alive.
    unsafe {
        while !(*p).is_null() {
            out.push(std::ffi::CStr::from_ptr(*p).to_str().unwrap().to_owned());
            p = p.add(1);
        }
    }
    Ok(out)
}

#[test]
fn child_env_sets_over_what_it_inherits_sorted_by_name() {
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    // A later duplicate in the daemon's environment wins.
    let inherited = std::sync::Arc::new(InheritedEnv::new(pairs(&[
        ("PATH", "/bin"),
        ("B", "daemon"),
        ("Z", "daemon"),
        ("B", "daemon-later"),
    ])));
    assert_eq!(inherited.get("B"), Some("daemon-later"));
    assert_eq!(inherited.vars().len(), 3);
    let mut env = ChildEnv::new(
        std::sync::Arc::clone(&inherited),
        pairs(&[("A", "set"), ("Z", "set")]).into_iter().collect(),
    );
    env.set("NOTIFY_SOCKET".to_owned(), "/run/n".to_owned());
    env.set("PATH".to_owned(), "/usr/bin".to_owned());
    let expected = pairs(&[
        ("A", "set"),
        ("B", "daemon-later"),
        ("NOTIFY_SOCKET", "/run/n"),
        ("PATH", "/usr/bin"),
        ("Z", "set"),
    ]);
    let listed: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    assert_eq!(listed, expected);
    assert_eq!(env.get("PATH"), Some("/usr/bin"));
    assert_eq!(env.get("B"), Some("daemon-later"));
    assert_eq!(env.get("missing"), None);
    assert_eq!(
        envp_strings(&env).unwrap(),
        ["A=set", "B=daemon-later", "NOTIFY_SOCKET=/run/n", "PATH=/usr/bin", "Z=set"]
    );
    // The daemon's strings are shared, not copied: the inherited part is one
    // allocation whoever spawns.
    assert_eq!(std::sync::Arc::strong_count(&inherited), 2);
    // Equal when the child would get the same variables, however they were split.
    let flat: ChildEnv = expected.into_iter().collect();
    assert_eq!(flat, env);
    assert_eq!(format!("{flat:?}"), format!("{env:?}"));
}

#[test]
fn child_env_refuses_what_execve_cannot_pass_only_when_passed() {
    let inherited = std::sync::Arc::new(InheritedEnv::new([
        ("BAD".to_owned(), "nul\0byte".to_owned()),
        ("OK".to_owned(), "1".to_owned()),
    ]));
    let env = ChildEnv::new(std::sync::Arc::clone(&inherited), BTreeMap::new());
    assert_eq!(envp_strings(&env), Err("BAD".to_owned()));
    // Set over, the daemon's bad value never reaches the child.
    let mut env = env;
    env.set("BAD".to_owned(), "fine".to_owned());
    assert_eq!(envp_strings(&env).unwrap(), ["BAD=fine", "OK=1"]);
    for name in ["", "A=B", "NUL\0"] {
        let env: ChildEnv = [(name.to_owned(), "v".to_owned())].into_iter().collect();
        assert_eq!(envp_strings(&env), Err(name.to_owned()), "{name:?}");
    }
}
