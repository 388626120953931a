//! Control groups end to end: `memory_max` (an OOM kill, reported as one),
//! `pids_max`, `cgroup` with `killasgroup` reaching a process that left the
//! process group, `memory_restart_threshold`, the groups' removal, and
//! `vigild --check` refusing limits an unprivileged daemon cannot give. Each
//! test reads what the kernel's files, the child's log, the activity log and
//! the status show.
//!
//! Every test gets its own `cgroup_root`, removed when the test ends (pass or
//! fail) after whatever is still inside was killed by pid. A test that needs
//! what this host does not have (root, a controller) prints `SKIPPED` and why
//! (past the harness's output capture) and returns.
//!
//! A test binary of its own so these daemons do not share a subreaper with the
//! black-box suite in `it`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use vigil_integration::{
    Program, Sandbox, TIMEOUT, child_bin, holds_for, is_root, procfs, run, try_wait_until,
    vigild_bin, wait_for, wait_until,
};

/// A test's own control-group root in every mounted hierarchy; removed on drop.
struct Groups {
    /// The root as a path inside each hierarchy (`/vigil-it-<pid>-<n>`).
    root: String,
    /// Every mounted hierarchy: where, and its v1 controllers (empty for v2).
    mounts: Vec<(PathBuf, Vec<String>)>,
}

impl Groups {
    /// Sets a fresh `cgroup_root` in `sandbox`; `None` (after printing why)
    /// when this host cannot run the test.
    fn new(sandbox: &Sandbox, test: &str, controllers: &[&str]) -> Option<Groups> {
        if !is_root() {
            skip(test, "control groups need root, the tests run as a user");
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts = Vec::new();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.get(3) != Some(&"/") {
                continue; // a bind mount of part of a hierarchy: not ours to use
            }
            let mount = PathBuf::from(left[4]);
            match right.first() {
                Some(&"cgroup2") => mounts.push((mount, Vec::new())),
                Some(&"cgroup") => {
                    let options = right.get(2).map_or("", |o| o);
                    mounts.push((mount, options.split(',').map(str::to_owned).collect()));
                }
                _ => {}
            }
        }
        for controller in controllers {
            let offered = mounts.iter().any(|(mount, options)| {
                if options.is_empty() {
                    std::fs::read_to_string(mount.join("cgroup.controllers"))
                        .unwrap_or_default()
                        .split_whitespace()
                        .any(|c| c == *controller)
                } else {
                    options.iter().any(|o| o == controller)
                }
            });
            if !offered {
                skip(test, &format!("this host has no {controller} controller"));
                return None;
            }
        }
        if mounts.is_empty() {
            skip(test, "no control group hierarchy is mounted");
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root =
            format!("/vigil-it-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        sandbox.supervisord_key("cgroup_root", &root);
        Some(Groups { root, mounts })
    }

    /// `<root>` in each hierarchy.
    fn roots(&self) -> Vec<PathBuf> {
        self.mounts.iter().map(|(mount, _)| mount.join(&self.root[1..])).collect()
    }

    /// The program's group directories that exist now.
    fn dirs(&self, program: &str) -> Vec<PathBuf> {
        self.roots()
            .into_iter()
            .map(|root| root.join("vigil").join(program))
            .filter(|dir| dir.is_dir())
            .collect()
    }

    /// The `vigil` directories under the root that exist now.
    fn vigil_dirs(&self) -> Vec<PathBuf> {
        self.roots().into_iter().map(|root| root.join("vigil")).filter(|d| d.is_dir()).collect()
    }

    /// The program's group in the hierarchy with `controller` (v1), or in
    /// the unified one when that has it.
    fn dir_with(&self, program: &str, controller: &str, file: &str) -> PathBuf {
        self.dirs(program)
            .into_iter()
            .find(|dir| dir.join(file).exists())
            .unwrap_or_else(|| panic!("no {controller} group of {program} with {file}"))
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for root in self.roots() {
            remove_tree(&root);
        }
    }
}

/// Says why a test did not run, past the test harness's capture (a write to
/// the stderr handle, not `eprintln!`), so a skip never reads as a pass.
fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr().lock(), "cgroups {test}: SKIPPED, {why}");
}

/// Removes a group and everything below it, killing by pid whatever is still
/// inside (a failed test's leftovers).
fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    let members = || -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    for pid in members() {
        eprintln!("killing pid {pid} left in {}", dir.display());
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    try_wait_until(TIMEOUT, || members().is_empty());
    if let Err(error) = std::fs::remove_dir(dir) {
        eprintln!("cannot remove {}: {error}", dir.display());
    }
}

/// A line `key=value` of a program's stdout log, waited for.
fn logged(sandbox: &Sandbox, program: &str, key: &str) -> String {
    wait_for(TIMEOUT, &format!("{key}= in {program}'s log"), || {
        let text = std::fs::read_to_string(sandbox.stdout_log(program)).unwrap_or_default();
        text.lines().find_map(|line| line.strip_prefix(&format!("{key}=")).map(str::to_owned))
    })
}

/// `status --json`'s record of `name`.
fn status_json(daemon: &vigil_integration::Daemon, name: &str) -> serde_json::Value {
    let output = daemon.ctl(&["status", "--json"]);
    let document: serde_json::Value =
        serde_json::from_str(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:#?}"));
    document["result"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("{name} not in {document}"))
}

/// An `[eventlistener:ears]` recording every PROCESS_STATE event to `events.txt`.
fn listener(sandbox: &Sandbox) -> String {
    format!(
        "[eventlistener:ears]\ncommand={} --event-listener {}\nevents=PROCESS_STATE\n\
         startsecs=0\nstdout_logfile={}\nstderr_logfile={}\n",
        child_bin().display(),
        sandbox.join("events.txt").display(),
        sandbox.stdout_log("ears").display(),
        sandbox.stderr_log("ears").display(),
    )
}

/// A program allocating past `memory_max` is killed by the kernel's OOM
/// killer, and vigild says so: in the status line, `status --json`, the
/// activity log and the PROCESS_STATE_EXITED payload.
#[test]
fn a_memory_hog_is_oom_killed_and_reported_as_such() {
    let sandbox = Sandbox::new();
    let Some(groups) = Groups::new(&sandbox, "oom", &["memory"]) else { return };
    let hog = Program::child("hog", &["--echo", "started", "--wait-file", "go", "--hog", "256"])
        .set("memory_max", "32MB")
        .set("startsecs", 0)
        .set("autorestart", "false");
    let programs = sandbox.programs_text(&[hog]);
    sandbox.write_config_text(&format!("{programs}\n{}", listener(&sandbox)));
    let daemon = sandbox.start();
    daemon.running_pid("hog");
    // The limit is on the group before the program allocates anything.
    let limit = match groups.dirs("hog").into_iter().find_map(|dir| {
        ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .find_map(|file| std::fs::read_to_string(dir.join(file)).ok())
    }) {
        Some(limit) => limit,
        None => panic!("no memory limit file in {:?}", groups.dirs("hog")),
    };
    assert_eq!(limit.trim(), (32u64 << 20).to_string());
    sandbox.write("go", "");
    let description = daemon.wait_state("hog", "EXITED");
    assert!(description.ends_with(", killed by the kernel OOM killer"), "{description}");
    let facts = status_json(&daemon, "hog");
    assert_eq!(facts["last_exit"]["oom_killed"], true, "{facts}");
    assert_eq!(facts["last_exit"]["signal"], 9, "{facts}");
    let log = daemon.main_log();
    assert!(log.contains("killed by the kernel OOM killer at its memory_max"), "{log}");
    assert!(log.contains("exited: hog (terminated by SIGKILL; not expected)"), "{log}");
    wait_until(TIMEOUT, "the EXITED event with oom_killed:1", || {
        let events = std::fs::read_to_string(sandbox.join("events.txt")).unwrap_or_default();
        events.lines().any(|line| {
            line.starts_with("processname:hog groupname:hog from_state:RUNNING expected:0 pid:")
                && line.ends_with(" oom_killed:1")
        })
    });
    assert!(
        !std::fs::read_to_string(sandbox.stdout_log("hog")).unwrap_or_default().contains("hogged")
    );
}

/// `pids_max` bounds the processes a program can have: its forks beyond the
/// limit are refused by the kernel. `cpu_quota` lands in the CPU controller.
#[test]
fn pids_max_limits_forks() {
    let sandbox = Sandbox::new();
    let Some(groups) = Groups::new(&sandbox, "pids", &["pids", "cpu"]) else { return };
    sandbox.write_config(&[Program::child(
        "forker",
        &["--forks", "20", "3600", "--sleep", "3600"],
    )
    .set("pids_max", 5)
    .set("cpu_quota", "50%%")
    .set("stopasgroup", "true")
    .set("killasgroup", "true")
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("forker");
    // The program itself and four forks make five.
    assert_eq!(logged(&sandbox, "forker", "forked"), "4");
    let refused = logged(&sandbox, "forker", "refused");
    assert!(refused.contains("EAGAIN"), "{refused}");
    let pids = groups.dir_with("forker", "pids", "pids.max");
    assert_eq!(std::fs::read_to_string(pids.join("pids.max")).unwrap_or_default().trim(), "5");
    let quota = groups.dirs("forker").into_iter().find_map(|dir| {
        std::fs::read_to_string(dir.join("cpu.max"))
            .or_else(|_| std::fs::read_to_string(dir.join("cpu.cfs_quota_us")))
            .ok()
    });
    let quota = quota.expect("a CPU group of forker");
    assert!(["50000 100000", "50000"].contains(&quota.trim()), "{quota}");
    daemon.ctl(&["stop", "forker"]).expect_code(0);
    wait_until(TIMEOUT, "the forks are gone", || {
        groups.dirs("forker").iter().all(|dir| {
            std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().trim().is_empty()
        })
    });
}

/// Starts `runaway`, in its own control group, which ignores SIGTERM and
/// forks a grandchild into a session of its own; returns the daemon, the
/// program's pid and the grandchild's, once it has left.
fn start_runaway(sandbox: &Sandbox) -> (vigil_integration::Daemon, i32, i32) {
    sandbox.write_config(&[Program::child(
        "runaway",
        &["--ignore-term", "--setsid-grandchild", "3600", "--sleep", "3600"],
    )
    .set("cgroup", "true")
    .set("stopasgroup", "true")
    .set("killasgroup", "true")
    .set("stopwaitsecs", 1)
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("runaway");
    let escaped: i32 = logged(sandbox, "runaway", "escaped").parse().expect("a pid");
    wait_until(TIMEOUT, "the grandchild has its own session", || {
        procfs::stat(escaped).is_some_and(|stat| stat.session == escaped)
    });
    (daemon, pid, escaped)
}

/// With a control group, `killasgroup` reaches a process that left the
/// program's process group and session (`setsid`), which signalling the
/// process group alone would miss. Both ignore SIGTERM, so it is the SIGKILL
/// after `stopwaitsecs` that ends them.
#[test]
fn killasgroup_kills_a_child_that_escaped_the_process_group() {
    let sandbox = Sandbox::new();
    let Some(groups) = Groups::new(&sandbox, "escape", &[]) else { return };
    let (daemon, pid, escaped) = start_runaway(&sandbox);
    let program = procfs::stat(pid).expect("the program runs");
    let grandchild = procfs::stat(escaped).expect("the grandchild runs");
    assert_ne!(program.pgrp, grandchild.pgrp, "the grandchild left the process group");
    assert!(!groups.dirs("runaway").is_empty(), "the program has a group");
    daemon.ctl(&["stop", "runaway"]).expect_code(0);
    wait_until(TIMEOUT, "the escaped grandchild is gone", || !procfs::alive(escaped));
    assert!(!procfs::alive(pid));
    // The group outlives a stop (a start reuses it) and is empty.
    for dir in groups.dirs("runaway") {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        assert_eq!(procs.trim(), "", "{}", dir.display());
    }
}

/// After a live upgrade the new image takes over the program's group: a stop
/// still kills a grandchild that left the process group.
#[test]
fn a_live_upgrade_keeps_the_program_in_its_group() {
    let sandbox = Sandbox::new();
    let Some(groups) = Groups::new(&sandbox, "upgrade", &[]) else { return };
    let (daemon, pid, escaped) = start_runaway(&sandbox);
    daemon.ctl(&["upgrade"]).expect_code(0);
    wait_until(TIMEOUT, "the new image to take over", || {
        daemon.main_log().contains("(live upgrade)")
    });
    assert_eq!(daemon.process_pid("runaway"), pid, "the program kept its pid");
    let log = daemon.main_log();
    assert!(!log.contains("cannot take over its control group"), "{log}");
    assert!(!groups.dirs("runaway").is_empty(), "the program still has a group");
    daemon.ctl(&["stop", "runaway"]).expect_code(0);
    wait_until(TIMEOUT, "the escaped grandchild is gone", || !procfs::alive(escaped));
    assert!(!procfs::alive(pid));
}

/// A program's groups go when `update` removes the program, stay (with the
/// new limit) when `update` restarts it with another, and the shared `vigil`
/// directory goes when the daemon exits.
#[test]
fn groups_are_removed_with_their_program_and_at_shutdown() {
    let sandbox = Sandbox::new();
    let Some(groups) = Groups::new(&sandbox, "removal", &["memory"]) else { return };
    let keep =
        Program::child("keep", &["--sleep", "3600"]).set("memory_max", "64MB").set("startsecs", 0);
    let gone = Program::child("gone", &["--fork-grandchild", "3600", "--sleep", "3600"])
        .set("cgroup", "true")
        .set("startsecs", 0);
    sandbox.write_config(&[keep.clone(), gone]);
    let mut daemon = sandbox.start();
    let kept = daemon.running_pid("keep");
    daemon.running_pid("gone");
    let grandchild: i32 = logged(&sandbox, "gone", "grandchild").parse().expect("a pid");
    assert!(!groups.dirs("gone").is_empty());
    sandbox.write_config(&[keep.set("memory_max", "48MB")]);
    daemon.ctl(&["update"]).expect_code(0);
    wait_until(TIMEOUT, "gone's groups are removed", || groups.dirs("gone").is_empty());
    assert!(!procfs::alive(grandchild), "what it left in its group was killed");
    // keep was replaced: its new child runs in the same group, under the new limit.
    let restarted = wait_for(TIMEOUT, "keep's new child", || {
        let pid = daemon.process_pid("keep");
        (pid != 0 && pid != kept).then_some(pid)
    });
    let memory = groups
        .dirs("keep")
        .into_iter()
        .find(|dir| dir.join("memory.limit_in_bytes").exists() || dir.join("memory.max").exists())
        .expect("keep's memory group stays");
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(memory.join("memory.max")))
        .expect("the limit");
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    holds_for(Duration::from_millis(300), "keep's child stays in its group", || {
        let procs = std::fs::read_to_string(memory.join("cgroup.procs")).unwrap_or_default();
        procs.lines().any(|line| line.trim() == restarted.to_string())
    });
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    assert_eq!(groups.vigil_dirs(), Vec::<PathBuf>::new());
}

/// `memory_restart_threshold` restarts a program whose memory passed it,
/// told by the kernel (no polling), and says why.
#[test]
fn the_memory_threshold_restarts_the_program() {
    let sandbox = Sandbox::new();
    let Some(_groups) = Groups::new(&sandbox, "threshold", &["memory"]) else { return };
    sandbox.write_config(&[Program::child(
        "grower",
        &["--wait-file", "grow", "--hog", "48", "--sleep", "3600"],
    )
    .set("memory_restart_threshold", "24MB")
    .set("memory_max", "256MB")
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    let first = daemon.running_pid("grower");
    holds_for(Duration::from_millis(500), "no restart below the threshold", || {
        daemon.process_pid("grower") == first
    });
    sandbox.write("grow", "");
    wait_until(TIMEOUT, "the restart", || {
        let log = daemon.main_log();
        log.contains("grower passed its memory_restart_threshold; restarting it")
            && log.contains("above its memory_restart_threshold (25165824)")
    });
    // Later children wait again (rather than pass the threshold in a loop).
    std::fs::remove_file(sandbox.join("grow")).expect("remove grow");
    wait_until(TIMEOUT, "a new child", || {
        let pid = daemon.process_pid("grower");
        pid != 0 && pid != first
    });
    wait_until(TIMEOUT, "the first child is gone", || !procfs::alive(first));
    assert!(status_json(&daemon, "grower")["restarts"].as_u64() >= Some(1));
}

/// A daemon that cannot make control groups says so up front, naming the
/// program and the key: `--check` and start-up both refuse, rather than run
/// the program without its limit.
#[test]
fn an_unprivileged_daemon_refuses_limits_it_cannot_give() {
    let sandbox = Sandbox::new();
    let Some(_groups) = Groups::new(&sandbox, "unprivileged", &["memory"]) else { return };
    sandbox
        .write_config(&[Program::child("capped", &["--sleep", "3600"]).set("memory_max", "64MB")]);
    let nobody = 65534;
    for args in [&["--check"][..], &[][..]] {
        let mut command = Command::new(vigild_bin());
        command.arg("-n").arg("-c").arg(sandbox.config_path()).args(args);
        command.current_dir(sandbox.path()).uid(nobody).gid(nobody);
        // std drops root's supplementary groups along with the uid.
        let output = run(&mut command, TIMEOUT);
        assert_eq!(output.code, 2, "{args:?}: {output:#?}");
        assert!(
            output
                .stderr
                .contains("[program:capped] memory_max: vigild cannot make control groups in"),
            "{args:?}: {output:#?}"
        );
        assert!(output.stderr.contains("run it as root"), "{output:#?}");
    }
    // Root checking a config whose daemon switches to nobody judges as nobody.
    let sandbox = Sandbox::new();
    let Some(_groups) = Groups::new(&sandbox, "unprivileged", &["memory"]) else { return };
    sandbox.supervisord_key("user", "nobody");
    sandbox
        .write_config(&[Program::child("capped", &["--sleep", "3600"]).set("memory_max", "64MB")]);
    let mut command = Command::new(vigild_bin());
    command.arg("--check").arg("-c").arg(sandbox.config_path()).current_dir(sandbox.path());
    let output = run(&mut command, TIMEOUT);
    assert_eq!(output.code, 2, "{output:#?}");
    assert!(
        output.stderr.contains(
            "[program:capped] memory_max: vigild (as user nobody) cannot make control groups in"
        ),
        "{output:#?}"
    );
}
