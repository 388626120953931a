//! `avail`, `reread`, `add`, `remove` and `update`, as supervisorctl's: only what
//! changed is touched, a dry run and a broken config change nothing.

use std::collections::BTreeMap;

use serde_json::Value;
use vigil_integration::{Daemon, Program, Sandbox, TIMEOUT, procfs, wait_until};

fn sleeper(name: &str) -> Program {
    Program::child(name, &["--sleep", "3600"]).set("startsecs", 0)
}

/// name -> pid of every process, from `status --json`.
fn pids(daemon: &Daemon) -> BTreeMap<String, i64> {
    let output = daemon.ctl(&["--json", "status"]);
    let document: Value =
        serde_json::from_str(output.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {output:#?}"));
    document["result"]
        .as_array()
        .expect("a list of processes")
        .iter()
        .map(|info| (info["name"].as_str().unwrap().to_owned(), info["pid"].as_i64().unwrap()))
        .collect()
}

fn avail_row(name: &str, in_use: &str, auto: &str) -> String {
    format!("{name:<32} {in_use:<9} {auto:<9} 999:999")
}

#[test]
fn reread_add_remove_update_avail() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("keep"), sleeper("gone"), sleeper("chg")]);
    let daemon = sandbox.start();
    let keep = daemon.running_pid("keep");
    let chg = daemon.running_pid("chg");
    daemon.running_pid("gone");
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["No config updates to processes"]);
    daemon.ctl(&["avail"]).expect_code(0).expect_lines(&[
        &avail_row("chg", "in use", "auto"),
        &avail_row("gone", "in use", "auto"),
        &avail_row("keep", "in use", "auto"),
    ]);

    sandbox.write_config(&[
        sleeper("keep"),
        Program::child("chg", &["--echo", "changed", "--sleep", "3600"]).set("startsecs", 0),
        sleeper("new"),
    ]);
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&[
        "chg: changed",
        "gone: disappeared",
        "new: available",
    ]);
    daemon.ctl(&["avail"]).expect_code(0).expect_lines(&[
        &avail_row("chg", "in use", "auto"),
        &avail_row("keep", "in use", "auto"),
        &avail_row("new", "avail", "auto"),
    ]);

    daemon.ctl(&["add", "new"]).expect_code(0).expect_lines(&["new: added process group"]);
    daemon.running_pid("new");
    daemon
        .ctl(&["add", "new"])
        .expect_code(0)
        .expect_lines(&["ERROR: process group already active"]);
    daemon
        .ctl(&["add", "nosuch"])
        .expect_code(1)
        .expect_lines(&["ERROR: no such process/group: nosuch"]);

    daemon
        .ctl(&["remove", "gone"])
        .expect_code(1)
        .expect_lines(&["ERROR: process/group still running: gone"]);
    daemon.ctl(&["stop", "gone"]).expect_code(0);
    daemon.ctl(&["remove", "gone"]).expect_code(0).expect_lines(&["gone: removed process group"]);
    daemon
        .ctl(&["remove", "nosuch"])
        .expect_code(1)
        .expect_lines(&["ERROR: no such process/group: nosuch"]);
    daemon.ctl(&["status", "gone"]).expect_code(4);

    daemon
        .ctl(&["update"])
        .expect_code(0)
        .expect_lines(&["chg: stopped", "chg: updated process group"]);
    let new_chg = daemon.running_pid("chg");
    assert_ne!(new_chg, chg);
    assert!(!procfs::exists(chg));
    assert_eq!(daemon.process_pid("keep"), keep, "untouched programs keep their pid");
    // Nothing left to do: no output.
    daemon.ctl(&["update"]).expect_code(0).expect_lines(&[]);
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["No config updates to processes"]);
    daemon
        .ctl(&["update", "nosuch"])
        .expect_code(1)
        .expect_lines(&["ERROR: no such group: nosuch"]);
}

#[test]
fn update_dry_run_and_a_broken_config_change_nothing() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("a"), sleeper("b")]);
    let daemon = sandbox.start();
    daemon.running_pid("a");
    daemon.running_pid("b");
    let before = pids(&daemon);

    sandbox.write_config(&[
        Program::child("a", &["--echo", "changed", "--sleep", "3600"]).set("startsecs", 0),
        sleeper("c"),
    ]);
    daemon.ctl(&["update", "--dry-run"]).expect_code(0).expect_lines(&[
        "b: stopped (dry run)",
        "b: removed process group (dry run)",
        "a: stopped (dry run)",
        "a: would restart a (command)",
        "a: updated process group (dry run)",
        "c: added process group (dry run)",
    ]);
    assert_eq!(pids(&daemon), before, "a dry run changes nothing");

    // Two errors, in two places: every one is reported with file:line.
    let config = sandbox.config_path();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{good}\n[program:broken]\nstartsecs=soon\n\n[program:worse]\ncommand=x\nnumprocs=zero\n"),
    )
    .unwrap();
    let update = daemon.ctl(&["update"]);
    update.expect_code(1);
    let lines = update.lines();
    assert!(lines.len() >= 2, "{update:#?}");
    let config_name = config.display().to_string();
    for line in &lines {
        assert!(line.starts_with("ERROR: CANT_REREAD: "), "{update:#?}");
        assert!(line.contains(&format!("{config_name}:")), "file:line in {line:?}");
    }
    assert!(update.stdout.contains("broken") && update.stdout.contains("worse"), "{update:#?}");
    daemon.ctl(&["reread"]).expect_code(1);
    assert_eq!(pids(&daemon), before, "a broken config changes nothing");

    // Fixed, it applies.
    std::fs::write(&config, good).unwrap();
    daemon.ctl(&["update"]).expect_code(0);
    daemon.running_pid("c");
    wait_until(TIMEOUT, "b to be gone", || daemon.ctl(&["status", "b"]).code == 4);
}

/// The acceptance check: 100 running programs, 1 changed, 10 added,
/// 10 removed: the 89 untouched keep their pids.
#[test]
fn update_at_scale_leaves_untouched_pids_alone() {
    let sandbox = Sandbox::new();
    let initial: Vec<Program> = (0..100).map(|n| sleeper(&format!("p{n:03}"))).collect();
    sandbox.write_config(&initial);
    let daemon = sandbox.start();
    wait_until(TIMEOUT, "100 programs RUNNING", || {
        let pids = pids(&daemon);
        pids.len() == 100 && pids.values().all(|pid| *pid > 0) && daemon.ctl(&["status"]).code == 0
    });
    let before = pids(&daemon);

    let mut next: Vec<Program> = (1..90).map(|n| sleeper(&format!("p{n:03}"))).collect();
    next.push(
        Program::child("p000", &["--echo", "changed", "--sleep", "3600"]).set("startsecs", 0),
    );
    next.extend((0..10).map(|n| sleeper(&format!("n{n:03}"))));
    sandbox.write_config(&next);
    let update = daemon.ctl(&["update"]);
    update.expect_code(0);
    let lines = update.lines();
    for n in 90..100 {
        assert!(lines.contains(&format!("p{n:03}: removed process group").as_str()), "{update:#?}");
    }
    for n in 0..10 {
        assert!(lines.contains(&format!("n{n:03}: added process group").as_str()), "{update:#?}");
    }
    assert!(lines.contains(&"p000: updated process group"), "{update:#?}");
    assert_eq!(lines.len(), 10 * 2 + 2 + 10, "{update:#?}");

    wait_until(TIMEOUT, "the new set RUNNING", || {
        let pids = pids(&daemon);
        pids.len() == 100 && pids.values().all(|pid| *pid > 0)
    });
    let after = pids(&daemon);
    let untouched: Vec<String> = (1..90).map(|n| format!("p{n:03}")).collect();
    for name in &untouched {
        assert_eq!(after[name], before[name], "{name} kept its pid");
    }
    assert_ne!(after["p000"], before["p000"]);
    for n in 90..100 {
        let name = format!("p{n:03}");
        assert!(!after.contains_key(&name));
        assert!(!procfs::exists(before[&name] as i32), "{name} was stopped");
    }
}

/// Finer than supervisord: editing one member of a `[group:x]` restarts that
/// member only.
#[test]
fn update_restarts_only_the_changed_member_of_a_group() {
    let sandbox = Sandbox::new();
    let group = "[group:g]\nprograms=m1,m2\n";
    sandbox.write_config_text(&format!(
        "{}{group}",
        sandbox.programs_text(&[sleeper("m1"), sleeper("m2")])
    ));
    let daemon = sandbox.start();
    let m1 = daemon.running_pid("g:m1");
    let m2 = daemon.running_pid("g:m2");
    let edited = Program::child("m1", &["--echo", "edited", "--sleep", "3600"]).set("startsecs", 0);
    sandbox
        .write_config_text(&format!("{}{group}", sandbox.programs_text(&[edited, sleeper("m2")])));
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["g: changed"]);
    daemon
        .ctl(&["update"])
        .expect_code(0)
        .expect_lines(&["g: stopped", "g: updated process group"]);
    let new_m1 = daemon.running_pid("g:m1");
    assert_ne!(new_m1, m1);
    assert_eq!(daemon.process_pid("g:m2"), m2, "the untouched member keeps its pid");
}

/// Settings the supervisor only consults (stopwaitsecs, autorestart, ...) are
/// applied to the running process without restarting it.
#[test]
fn update_applies_supervisor_settings_in_place() {
    let sandbox = Sandbox::new();
    let stubborn = |stopwaitsecs: u32| {
        Program::child("stubborn", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", stopwaitsecs)
    };
    sandbox.write_config(&[stubborn(60)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("stubborn");
    crate::wait_out_line(&sandbox, "stubborn", "ignoring TERM");
    sandbox.write_config(&[stubborn(1)]);
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["stubborn: changed"]);
    let update = daemon.ctl(&["update"]);
    update.expect_code(0);
    assert!(!update.stdout.contains("stopped"), "{update:#?}");
    assert_eq!(daemon.process_pid("stubborn"), pid, "not restarted");
    // The new stopwaitsecs is the one in force.
    let started = std::time::Instant::now();
    daemon.ctl(&["stop", "stubborn"]).expect_code(0).expect_lines(&["stubborn: stopped"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

/// numprocs is applied per process: growing adds instances, shrinking removes
/// the extra ones, the others keep their pids.
#[test]
fn update_numprocs_adds_and_removes_instances_only() {
    let sandbox = Sandbox::new();
    let many = |count: u32| {
        Program::child("many", &["--sleep", "3600"])
            .set("startsecs", 0)
            .set("numprocs", count)
            .set("process_name", "%(program_name)s_%(process_num)d")
            .set("stdout_logfile", "NONE")
            .set("stderr_logfile", "NONE")
    };
    sandbox.write_config(&[many(2)]);
    let daemon = sandbox.start();
    let first = daemon.running_pid("many:many_0");
    let second = daemon.running_pid("many:many_1");
    sandbox.write_config(&[many(3)]);
    daemon.ctl(&["update"]).expect_code(0);
    daemon.running_pid("many:many_2");
    assert_eq!(daemon.process_pid("many:many_0"), first);
    assert_eq!(daemon.process_pid("many:many_1"), second);
    sandbox.write_config(&[many(1)]);
    daemon.ctl(&["update"]).expect_code(0);
    wait_until(TIMEOUT, "many_1 and many_2 to be removed", || {
        daemon.ctl(&["status", "many:many_1"]).code == 4
            && daemon.ctl(&["status", "many:many_2"]).code == 4
    });
    assert!(!procfs::exists(second));
    assert_eq!(daemon.process_pid("many:many_0"), first);
}

/// `reload` (like SIGHUP) applies a changed config from scratch.
#[test]
fn reload_applies_the_new_config() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("old")]);
    let daemon = sandbox.start();
    let old = daemon.running_pid("old");
    sandbox.write_config(&[sleeper("fresh")]);
    daemon.ctl(&["reload"]).expect_code(0).expect_lines(&["Restarted supervisord"]);
    daemon.running_pid("fresh");
    wait_until(TIMEOUT, "old to be gone", || daemon.ctl(&["status", "old"]).code == 4);
    assert!(!procfs::exists(old));
}

/// `update NAME...` touches only the named groups; the rest waits for the next
/// update.
#[test]
fn update_with_names_touches_only_those_groups() {
    let sandbox = Sandbox::new();
    let edited =
        |name: &str| Program::child(name, &["--echo", "v2", "--sleep", "3600"]).set("startsecs", 0);
    sandbox.write_config(&[sleeper("a"), sleeper("b"), sleeper("c")]);
    let daemon = sandbox.start();
    let (a, b, c) = (daemon.running_pid("a"), daemon.running_pid("b"), daemon.running_pid("c"));
    sandbox.write_config(&[edited("a"), edited("b"), edited("c")]);
    daemon.ctl(&["update", "a", "c"]).expect_code(0).expect_lines(&[
        "a: stopped",
        "a: updated process group",
        "c: stopped",
        "c: updated process group",
    ]);
    assert_ne!(daemon.running_pid("a"), a);
    assert_ne!(daemon.running_pid("c"), c);
    assert_eq!(daemon.process_pid("b"), b, "b was not named");
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["b: changed"]);
    daemon
        .ctl(&["update", "all"])
        .expect_code(0)
        .expect_lines(&["b: stopped", "b: updated process group"]);
    assert_ne!(daemon.running_pid("b"), b);
}

/// `remove` then `add` brings a group back; `avail` shows priorities and
/// autostart as supervisorctl does.
#[test]
fn remove_then_add_and_avail_columns() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        sleeper("svc").set("priority", 50),
        Program::child("manual", &["--sleep", "3600"]).set("autostart", "false").set("priority", 7),
    ]);
    let daemon = sandbox.start();
    let before = daemon.running_pid("svc");
    daemon.ctl(&["avail"]).expect_code(0).expect_lines(&[
        &format!("{:<32} {:<9} {:<9} 7:7", "manual", "in use", "manual"),
        &format!("{:<32} {:<9} {:<9} 50:50", "svc", "in use", "auto"),
    ]);
    daemon.ctl(&["stop", "svc"]).expect_code(0);
    daemon.ctl(&["remove", "svc"]).expect_code(0).expect_lines(&["svc: removed process group"]);
    daemon.ctl(&["avail"]).expect_code(0).expect_lines(&[
        &format!("{:<32} {:<9} {:<9} 7:7", "manual", "in use", "manual"),
        &format!("{:<32} {:<9} {:<9} 50:50", "svc", "avail", "auto"),
    ]);
    daemon.ctl(&["add", "svc"]).expect_code(0).expect_lines(&["svc: added process group"]);
    let after = daemon.running_pid("svc");
    assert_ne!(after, before);
    assert!(!procfs::exists(before));
}

/// Adding a member to a `[group:x]` starts it and leaves the others running.
#[test]
fn update_adds_a_member_to_a_group() {
    let sandbox = Sandbox::new();
    let programs = sandbox.programs_text(&[sleeper("m1"), sleeper("m2"), sleeper("m3")]);
    sandbox.write_config_text(&format!("{programs}[group:g]\nprograms=m1,m2\n"));
    let daemon = sandbox.start();
    let m1 = daemon.running_pid("g:m1");
    let m2 = daemon.running_pid("g:m2");
    let m3 = daemon.running_pid("m3");
    sandbox.write_config_text(&format!("{programs}[group:g]\nprograms=m1,m2,m3\n"));
    let reread = daemon.ctl(&["reread"]);
    reread.expect_code(0);
    assert!(reread.lines().contains(&"g: changed"), "{reread:#?}");
    daemon.ctl(&["update"]).expect_code(0);
    daemon.running_pid("g:m3");
    assert_eq!(daemon.process_pid("g:m1"), m1);
    assert_eq!(daemon.process_pid("g:m2"), m2);
    // m3 moved from its own group into g: the old instance is gone.
    daemon.ctl(&["status", "m3"]).expect_code(4);
    assert!(!procfs::exists(m3));
}

/// `reread`/`update` look at process groups only: a changed `[supervisord]`
/// section waits for a reload, as in supervisord.
#[test]
fn supervisord_section_changes_are_not_updates() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("a")]);
    let daemon = sandbox.start();
    let a = daemon.running_pid("a");
    sandbox.supervisord_key("identifier", "changed-identifier");
    sandbox.write_config(&[sleeper("a")]);
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["No config updates to processes"]);
    daemon.ctl(&["update"]).expect_code(0).expect_lines(&[]);
    assert_eq!(daemon.process_pid("a"), a);
}

/// `[supervisord] environment=`: supervisord merges it into every program's
/// environment before comparing, so editing it changes every group (reference
/// s3.5). Vigil's plan (vigil-config `diff`) deliberately lists it as a daemon
/// change instead: nothing restarts, and each process gets it at its next start.
#[test]
fn global_environment_change_reaches_processes_at_their_next_start() {
    let sandbox = Sandbox::new();
    let printer = Program::child("printer", &["--print-env", "GLOBAL", "--sleep", "3600"])
        .set("startsecs", 0);
    sandbox.write_config(std::slice::from_ref(&printer));
    let daemon = sandbox.start();
    let before = daemon.running_pid("printer");
    crate::wait_out_line(&sandbox, "printer", "GLOBAL is unset");
    sandbox.supervisord_key("environment", "GLOBAL=1");
    sandbox.write_config(&[printer]);
    daemon.ctl(&["reread"]).expect_code(0).expect_lines(&["No config updates to processes"]);
    daemon.ctl(&["update"]).expect_code(0).expect_lines(&[]);
    assert_eq!(daemon.process_pid("printer"), before, "not restarted");
    daemon.ctl(&["restart", "printer"]).expect_code(0);
    crate::wait_out_line(&sandbox, "printer", "GLOBAL=1");
}

/// A priority changed in place is the one the shutdown order follows.
#[test]
fn priority_updated_in_place_orders_the_shutdown() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("a").set("priority", 1), sleeper("b").set("priority", 2)]);
    let mut daemon = sandbox.start();
    let a = daemon.running_pid("a");
    let b = daemon.running_pid("b");
    sandbox.write_config(&[sleeper("a").set("priority", 3), sleeper("b").set("priority", 2)]);
    daemon.ctl(&["update"]).expect_code(0);
    assert_eq!((daemon.process_pid("a"), daemon.process_pid("b")), (a, b), "nothing restarted");
    daemon.ctl(&["avail"]).expect_code(0).expect_lines(&[
        &format!("{:<32} {:<9} {:<9} 3:3", "a", "in use", "auto"),
        &format!("{:<32} {:<9} {:<9} 2:2", "b", "in use", "auto"),
    ]);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    let log = daemon.main_log();
    let stopped_a = log.find("stopped: a ").expect("a stopped");
    let stopped_b = log.find("stopped: b ").expect("b stopped");
    assert!(stopped_a < stopped_b, "highest priority number stops first:\n{log}");
}
