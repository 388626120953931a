//! Control-group keys through both readers, and their errors.

use std::collections::BTreeMap;

use vigil_config::{CgroupLimits, load};

fn cgroup(file: &str, text: &str) -> Result<Option<CgroupLimits>, String> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(file);
    std::fs::write(&path, text).expect("write");
    match load(&path, &BTreeMap::new()) {
        Ok(loaded) => Ok(loaded.config.processes().next().expect("a process").cgroup),
        Err(errors) => Err(errors.to_string()),
    }
}

fn root(file: &str, text: &str) -> Result<Option<String>, String> {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(file);
    std::fs::write(&path, text).expect("write");
    match load(&path, &BTreeMap::new()) {
        Ok(loaded) => Ok(loaded.config.supervisord.cgroup_root),
        Err(errors) => Err(errors.to_string()),
    }
}

#[test]
fn ini_and_toml_give_the_same_limits() {
    let expected = CgroupLimits {
        memory_max: Some(64 << 20),
        memory_restart_threshold: Some(48 << 20),
        cpu_quota: Some(150),
        pids_max: Some(32),
    };
    let ini = "[supervisord]\ncgroup_root=/vigil.slice//x/\n[program:a]\ncommand=/bin/true\n\
               memory_max=64MB\nmemory_restart_threshold=48MB\ncpu_quota=150%%\npids_max=32\n";
    assert_eq!(cgroup("s.conf", ini), Ok(Some(expected)));
    assert_eq!(root("s.conf", ini), Ok(Some("/vigil.slice/x".to_owned())));
    let toml = "[supervisord]\ncgroup_root = \"/vigil.slice/x\"\n[program.a]\n\
                command = \"/bin/true\"\nmemory_max = \"64MB\"\n\
                memory_restart_threshold = \"48MB\"\ncpu_quota = 150\npids_max = 32\n";
    assert_eq!(cgroup("v.toml", toml), Ok(Some(expected)));
    assert_eq!(root("v.toml", toml), Ok(Some("/vigil.slice/x".to_owned())));
}

#[test]
fn a_cgroup_without_limits_is_asked_for_by_name() {
    let base = "[supervisord]\n[program:a]\ncommand=/bin/true\n";
    assert_eq!(cgroup("s.conf", base), Ok(None));
    assert_eq!(
        cgroup("s.conf", &format!("{base}cgroup=true\n")),
        Ok(Some(CgroupLimits::default()))
    );
    assert_eq!(cgroup("s.conf", &format!("{base}cgroup=false\n")), Ok(None));
    assert_eq!(root("s.conf", base), Ok(None));
    let toml = "[supervisord]\n[program.a]\ncommand = \"/bin/true\"\ncgroup = true\n";
    assert_eq!(cgroup("v.toml", toml), Ok(Some(CgroupLimits::default())));
}

#[test]
fn bad_values_are_errors_at_their_line() {
    let ini = "[supervisord]\n[program:a]\ncommand=/bin/true\nmemory_max=lots\n\
               cpu_quota=2.5\npids_max=0\ncgroup=false\n";
    let errors = cgroup("s.conf", ini).expect_err("fails");
    for wanted in [
        ":4: [program:a] memory_max: 'lots' is not a byte size",
        ":5: [program:a] cpu_quota: '2.5' is not a CPU share in percent",
        ":6: [program:a] pids_max: '0' is not a positive number",
    ] {
        assert!(errors.contains(wanted), "{wanted} in {errors}");
    }
    let ini = "[supervisord]\n[program:a]\ncommand=/bin/true\nmemory_max=10MB\n\
               memory_restart_threshold=10MB\n";
    let errors = cgroup("s.conf", ini).expect_err("fails");
    assert!(
        errors.contains(":5: [program:a] memory_restart_threshold: 10485760 is not below"),
        "{errors}"
    );
    let ini = "[supervisord]\n[program:a]\ncommand=/bin/true\npids_max=5\ncgroup=off\n";
    let errors = cgroup("s.conf", ini).expect_err("fails");
    assert!(errors.contains(":5: [program:a] cgroup: cgroup=false, but"), "{errors}");
    let ini = "[supervisord]\ncgroup_root=relative/x\n[program:a]\ncommand=/bin/true\n";
    let errors = root("s.conf", ini).expect_err("fails");
    assert!(
        errors.contains(":2: [supervisord] cgroup_root: 'relative/x' is not a control group path"),
        "{errors}"
    );
    let ini = "[supervisord]\ncgroup_root=/a/../b\n[program:a]\ncommand=/bin/true\n";
    assert!(root("s.conf", ini).is_err());
}
