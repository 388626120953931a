//! Resource limits through both readers: `rlimit_<name>` keys, the TOML
//! `rlimits` table, and their errors.

use std::collections::BTreeMap;

use vigil_config::{ResourceLimit, load};

fn limits(file: &str, text: &str) -> Result<Vec<ResourceLimit>, String> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(file);
    std::fs::write(&path, text).expect("write");
    match load(&path, &BTreeMap::new()) {
        Ok(loaded) => Ok(loaded.config.processes().next().expect("a process").rlimits.clone()),
        Err(errors) => Err(errors.to_string()),
    }
}

fn expected() -> Vec<ResourceLimit> {
    vec![
        ResourceLimit { name: "as", soft: Some(1 << 30), hard: None },
        ResourceLimit { name: "core", soft: Some(0), hard: Some(0) },
        ResourceLimit { name: "nofile", soft: Some(256), hard: Some(512) },
    ]
}

#[test]
fn ini_keys_and_the_toml_table_give_the_same_limits() {
    let ini = "[supervisord]\n[program:a]\ncommand=/bin/true\n\
               rlimit_nofile=256:512\nrlimit_core=0\nrlimit_as=1GB:unlimited\n";
    assert_eq!(limits("s.conf", ini), Ok(expected()));
    let toml = "[supervisord]\n[program.a]\ncommand = \"/bin/true\"\n\
                rlimits = { nofile = \"256:512\", core = \"0\", as = \"1GB:unlimited\" }\n";
    assert_eq!(limits("v.toml", toml), Ok(expected()));
    let keys = "[supervisord]\n[program.a]\ncommand = \"/bin/true\"\n\
                rlimit_nofile = \"256:512\"\nrlimit_core = 0\nrlimit_as = \"1GB:unlimited\"\n";
    assert_eq!(limits("k.toml", keys), Ok(expected()));
}

#[test]
fn bad_limits_are_errors_at_their_line() {
    let ini = "[supervisord]\n[program:a]\ncommand=/bin/true\nrlimit_nofile=many\nrlimit_cpu=9:3\n";
    let errors = limits("s.conf", ini).expect_err("fails");
    assert!(
        errors.contains(":4: [program:a] rlimit_nofile: nofile: 'many' is not a number"),
        "{errors}"
    );
    assert!(
        errors.contains(":5: [program:a] rlimit_cpu: cpu: the soft limit is above"),
        "{errors}"
    );
    let toml = "[supervisord]\n[program.a]\ncommand = \"/bin/true\"\nrlimits = { files = \"1\" }\n";
    let errors = limits("v.toml", toml).expect_err("fails");
    assert!(errors.contains("unknown limit 'files'"), "{errors}");
}
