//! `env_file` through both readers: precedence of the files, paths relative to
//! the file naming them, errors at file:line, and values kept out of every dump.

use std::collections::BTreeMap;
use std::path::Path;

use vigil_config::{Apply, ProcessConfig, diff, load};

fn env() -> BTreeMap<String, String> {
    [("HOME", "/home/t"), ("FROM_DAEMON", "daemon")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn process<'a>(config: &'a vigil_config::Config, name: &str) -> &'a ProcessConfig {
    config.processes().find(|p| p.name == name).expect("process")
}

fn vars(process: &ProcessConfig) -> Vec<(&str, &str)> {
    process.env_file_vars.vars().iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

const ENV_FILES: &[(&str, &str)] = &[
    ("global.env", "A=global\nB=global\nG=\"${FROM_DAEMON}+${FROM_GLOBAL_ENV}\"\n"),
    ("group.env", "B=group\nC=group\n"),
    ("sub/own.env", "# own\nexport C='own ${A}'\nD=${B}\n"),
];

fn setup(dir: &Path) {
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    for (name, text) in ENV_FILES {
        write(dir, name, text);
    }
}

fn check(config: &vigil_config::Config) {
    let a = process(config, "a");
    assert_eq!(
        vars(a),
        [
            ("A", "global"),
            ("B", "group"),
            ("C", "own ${A}"),
            ("D", "group"),
            ("G", "daemon+from-environment"),
        ]
    );
    assert_eq!(a.env_files.len(), 3);
    // Outside the group: [supervisord]'s file only.
    let b = process(config, "b");
    assert_eq!(vars(b), [("A", "global"), ("B", "global"), ("G", "daemon+from-environment")]);
    // Dumps show the names, never the values.
    let json = serde_json::to_string(a).expect("json");
    assert!(json.contains("\"env_file_vars\":[\"A\",\"B\",\"C\",\"D\",\"G\"]"), "{json}");
    assert!(!json.contains("own ${A}") && !format!("{a:?}").contains("own ${A}"));
    // A binary form (a live upgrade's carried config) keeps them, and only it
    // reads them back.
    let bytes = postcard::to_stdvec(config).expect("postcard");
    let back: vigil_config::Config = postcard::from_bytes(&bytes).expect("reads back");
    assert_eq!(vars(process(&back, "a")), vars(a));
    assert!(serde_json::from_str::<vigil_config::EnvFileVars>(r#"["A"]"#).is_err());
}

#[test]
fn ini_reads_supervisord_group_and_program_env_files_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    setup(dir.path());
    let root = dir.path().join("supervisord.conf");
    write(
        dir.path(),
        "supervisord.conf",
        "[supervisord]\nenvironment=FROM_GLOBAL_ENV=from-environment\nenv_file=global.env\n\
         [group:g]\nprograms=a\nenv_file=group.env\n\
         [program:a]\ncommand=/bin/true\nenv_file=sub/own.env\n\
         [program:b]\ncommand=/bin/true\n",
    );
    let loaded = load(&root, &env()).expect("loads");
    check(&loaded.config);
}

#[test]
fn toml_takes_one_path_or_a_list() {
    let dir = tempfile::tempdir().expect("dir");
    setup(dir.path());
    let root = dir.path().join("vigil.toml");
    write(
        dir.path(),
        "vigil.toml",
        "[supervisord]\nenvironment = { FROM_GLOBAL_ENV = \"from-environment\" }\n\
         env_file = \"global.env\"\n\
         [group.g]\nprograms = [\"a\"]\nenv_file = [\"group.env\"]\n\
         [program.a]\ncommand = \"/bin/true\"\nenv_file = [\"sub/own.env\"]\n\
         [program.b]\ncommand = \"/bin/true\"\n",
    );
    let loaded = load(&root, &env()).expect("loads");
    check(&loaded.config);
}

#[test]
fn a_missing_file_and_a_bad_line_are_errors_at_their_lines() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "bad.env", "A=1\n\nB='secret-value\n");
    let root = dir.path().join("supervisord.conf");
    write(
        dir.path(),
        "supervisord.conf",
        "[supervisord]\n\n[program:a]\ncommand=/bin/true\nenv_file=missing.env\n\
         [program:b]\ncommand=/bin/true\nenv_file=bad.env\n",
    );
    let errors = load(&root, &env()).expect_err("fails").to_string();
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        errors
            .contains(&format!("{}:5: [program:a] env_file: cannot read env file", root.display())),
        "{errors}"
    );
    let bad = dir.path().join("bad.env");
    assert!(errors.contains(&format!("{}:3: env file: B: the ' quote", bad.display())), "{errors}");
    assert!(!errors.contains("secret-value"), "{errors}");
}

#[test]
fn changed_contents_restart_exactly_the_programs_that_read_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "shared.env", "TOKEN=one\n");
    let root = dir.path().join("supervisord.conf");
    write(
        dir.path(),
        "supervisord.conf",
        "[supervisord]\n\
         [program:user1]\ncommand=/bin/true\nenv_file=shared.env\n\
         [program:user2]\ncommand=/bin/true\nenv_file=shared.env\n\
         [program:other]\ncommand=/bin/true\n",
    );
    let old = load(&root, &env()).expect("loads").config;
    write(dir.path(), "shared.env", "TOKEN=two\n");
    let new = load(&root, &env()).expect("loads").config;
    let plan = diff(&old, &new);
    let mut changed: Vec<(String, Vec<&str>)> = plan
        .changed
        .iter()
        .flat_map(|g| &g.changed)
        .map(|p| {
            assert!(p.fields.iter().all(|f| f.apply == Apply::Restart));
            (p.name.clone(), p.fields.iter().map(|f| f.key).collect())
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("user1".to_owned(), vec!["env_file contents"]),
            ("user2".to_owned(), vec!["env_file contents"])
        ]
    );
}
