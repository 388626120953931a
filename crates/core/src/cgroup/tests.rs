//! Reading the host's hierarchies, and making groups in a directory that
//! stands in for a hierarchy.

use std::path::PathBuf;

use vigil_config::CgroupLimits;

use super::*;

/// A hybrid host: v1 controllers, an empty unified hierarchy, vigild in a
/// memory group of its own.
const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu\\040acct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const HYBRID_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/jobs/abc
2:cpuacct:/
1:cpu:/
0::/
";

#[test]
fn reads_a_hybrid_host() {
    let host = Host::parse(HYBRID_MOUNTS, HYBRID_OWN);
    let unified = host.unified.as_ref().expect("unified");
    assert_eq!(unified.mount, PathBuf::from("/sys/fs/cgroup/unified"));
    assert_eq!(unified.own, "/");
    let memory = host.v1.iter().find(|h| h.has("memory")).expect("memory");
    assert_eq!(memory.own, "/jobs/abc");
    assert_eq!(memory.dir(&memory.own), Some(PathBuf::from("/sys/fs/cgroup/memory/jobs/abc")));
    let cpuacct = host.v1.iter().find(|h| h.has("cpuacct")).expect("cpuacct");
    assert_eq!(cpuacct.mount, PathBuf::from("/sys/fs/cgroup/cpu acct"));
    assert!(host.v1.iter().any(|h| h.has("name=systemd")));
    assert!(host.v1.iter().any(|h| h.has("pids")));
}

#[test]
fn reads_a_v2_host_seen_from_a_container() {
    // A cgroup namespace: the mount shows the container's part of the tree.
    let mounts = "100 90 0:40 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    let host = Host::parse(mounts, "0::/docker/abc/app\n");
    let unified = host.unified.expect("unified");
    assert!(host.v1.is_empty());
    assert_eq!(unified.dir("/docker/abc/app"), Some(PathBuf::from("/sys/fs/cgroup/app")));
    assert_eq!(unified.dir("/elsewhere"), None);
    assert_eq!(unified.dir("/docker/abcdef"), None);
}

#[test]
fn limits_take_v1_controllers_when_v2_has_none() {
    let dir = tempfile::tempdir().expect("dir");
    let fake = |sub: &str| dir.path().join(sub);
    // A v2 mount offering nothing, v1 memory and pids.
    std::fs::create_dir_all(fake("unified")).expect("mkdir");
    std::fs::write(fake("unified/cgroup.controllers"), "hugetlb\n").expect("write");
    for sub in ["memory", "pids"] {
        std::fs::create_dir_all(fake(sub)).expect("mkdir");
    }
    let mounts = format!(
        "1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n2 0 0:2 / {} rw - cgroup cgroup rw,memory\n\
         3 0 0:3 / {} rw - cgroup cgroup rw,pids\n",
        fake("unified").display(),
        fake("memory").display(),
        fake("pids").display()
    );
    let host = Host::parse(&mounts, "3:pids:/\n2:memory:/\n0::/\n");
    let cgroups = Cgroups::new(host, Some("/t".to_owned()));
    let limits =
        CgroupLimits { memory_max: Some(1 << 20), pids_max: Some(8), ..Default::default() };
    let plan = cgroups.plan(&limits).expect("plan");
    let summary: Vec<(Version, Vec<&str>)> =
        plan.iter().map(|p| (p.hierarchy.version, p.controllers.clone())).collect();
    assert_eq!(
        summary,
        vec![(Version::V1, vec!["memory"]), (Version::V1, vec!["pids"]), (Version::V2, vec![])]
    );
    assert_eq!(cgroups.check(&limits, None), Ok(()));
    let cpu = CgroupLimits { cpu_quota: Some(50), ..Default::default() };
    let refusal = cgroups.check(&cpu, None).expect_err("no cpu controller");
    assert_eq!(refusal.key, "cpu_quota");
    assert!(refusal.message.contains("no cpu controller"), "{}", refusal.message);
    // A plain directory stands in for each hierarchy: the group is made in
    // each, and removed with its shared parent when dropped.
    let group = cgroups.create("web:web_0", &limits).expect("create");
    let made = [fake("memory/t/vigil/web:web_0"), fake("pids/t/vigil/web:web_0")];
    for path in &made {
        assert!(path.is_dir(), "{}", path.display());
    }
    assert_eq!(group.procs_files()[0], made[0].join("cgroup.procs"));
    drop(group);
    for path in &made {
        assert!(!path.exists(), "{}", path.display());
        assert!(!path.parent().expect("parent").exists());
    }
}

/// A group made of plain directories holding the control files.
fn fake_group(dirs: &[(&Path, Version, &[&'static str])]) -> ProcessCgroup {
    ProcessCgroup {
        dirs: dirs
            .iter()
            .map(|(path, version, controllers)| Dir {
                path: path.to_path_buf(),
                version: *version,
                controllers: controllers.to_vec(),
            })
            .collect(),
        namespec: "web".to_owned(),
        owners: Arc::default(),
    }
}

#[test]
fn limits_are_written_in_each_version_s_words() {
    let tmp = tempfile::tempdir().expect("dir");
    let v2 = tmp.path().join("v2");
    let v1 = tmp.path().join("v1");
    let v2_files = ["memory.max", "memory.high", "cpu.max", "pids.max", "memory.events"];
    let v1_files =
        ["memory.limit_in_bytes", "memory.oom_control", "cpu.cfs_period_us", "cpu.cfs_quota_us"];
    for (dir, files) in [(&v2, &v2_files[..]), (&v1, &v1_files[..])] {
        std::fs::create_dir(dir).expect("mkdir");
        for file in files {
            std::fs::write(dir.join(file), "").expect("write");
        }
    }
    let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).expect("read");
    let limits = CgroupLimits {
        memory_max: Some(64 << 20),
        memory_restart_threshold: Some(48 << 20),
        cpu_quota: Some(150),
        pids_max: Some(32),
    };
    let group = fake_group(&[(&v2, Version::V2, &["memory", "cpu", "pids"])]);
    group.apply(&limits).expect("apply");
    assert_eq!(read(&v2, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(read(&v2, "memory.high"), (48u64 << 20).to_string());
    assert_eq!(read(&v2, "cpu.max"), "150000 100000");
    assert_eq!(read(&v2, "pids.max"), "32");
    group.apply(&CgroupLimits::default()).expect("lift");
    assert_eq!(read(&v2, "memory.max"), "max");
    assert_eq!(read(&v2, "memory.high"), "max");
    assert_eq!(read(&v2, "cpu.max"), "max 100000");
    assert_eq!(read(&v2, "pids.max"), "max");
    std::fs::write(v2.join("memory.events"), "low 0\nhigh 3\nmax 7\noom 2\noom_kill 2\n")
        .expect("write");
    assert_eq!(group.oom_kills(), Some(2));
    std::mem::forget(group); // nothing to remove: not a control group

    let group = fake_group(&[(&v1, Version::V1, &["memory", "cpu"])]);
    group.apply(&limits).expect("apply");
    assert_eq!(read(&v1, "memory.limit_in_bytes"), (64u64 << 20).to_string());
    assert_eq!(read(&v1, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&v1, "cpu.cfs_quota_us"), "150000");
    group.apply(&CgroupLimits::default()).expect("lift");
    assert_eq!(read(&v1, "memory.limit_in_bytes"), "-1");
    assert_eq!(read(&v1, "cpu.cfs_quota_us"), "-1");
    std::fs::write(v1.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
        .expect("write");
    assert_eq!(group.oom_kills(), Some(1));
    std::mem::forget(group);
}

#[test]
fn a_directory_goes_with_its_last_owner() {
    let dir = tempfile::tempdir().expect("dir");
    let memory = dir.path().join("memory");
    std::fs::create_dir(&memory).expect("mkdir");
    let mounts = format!("2 0 0:2 / {} rw - cgroup cgroup rw,memory\n", memory.display());
    let cgroups = Cgroups::new(Host::parse(&mounts, "2:memory:/\n"), None);
    let limits = CgroupLimits { memory_max: Some(1 << 20), ..Default::default() };
    let old = cgroups.create("web", &limits).expect("create");
    // `update` builds the replacement before the old actor is gone.
    let new = cgroups.create("web", &limits).expect("create again");
    let path = memory.join("vigil/web");
    drop(old);
    assert!(path.is_dir(), "the new owner keeps it");
    drop(new);
    assert!(!path.exists());
}
