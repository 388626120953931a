//! supervisord's process lifecycle through vigild: start, crash and backoff to
//! FATAL, the autorestart matrix, spawn errors. Exact timing is covered by
//! vigil-core's paused-time tests; here it is measured loosely.

use std::time::{Duration, Instant};

use vigil_integration::{Program, Sandbox, holds_for, procfs, wait_until};

use crate::{count_out_lines, wait_out_line};

#[test]
fn autostart_program_runs_in_its_own_process_group() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("sleeper", &["--echo", "up", "--sleep", "3600"]).set("startsecs", 0),
        Program::child("manual", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("sleeper");
    wait_out_line(&sandbox, "sleeper", "up");
    let stat = procfs::stat(pid).expect("sleeper is alive");
    assert_eq!(stat.ppid, daemon.pid(), "vigild is the parent");
    assert_eq!(stat.pgrp, pid, "the program leads its own process group");
    assert_eq!(daemon.status_of("manual"), Some(("STOPPED".into(), "Not started".into())));
    wait_until(vigil_integration::TIMEOUT, "the spawn to be logged", || {
        daemon.main_log().contains(&format!("spawned: 'sleeper' with pid {pid}"))
    });
    let log = daemon.main_log();
    assert!(log.contains("success: sleeper entered RUNNING state"), "{log}");
    // supervisord's activity log format: `2026-11-23 23:34:01,123 INFO message`.
    // At debug a child's output follows its `... stdout output:` line, up to
    // the blank line that ends the chunk (it ends in a newline here).
    let mut in_output = false;
    for line in log.lines() {
        if in_output {
            in_output = !line.is_empty();
            continue;
        }
        in_output = line.ends_with(" output:");
        let level = line.get(24..).and_then(|rest| rest.split(' ').next()).unwrap_or_default();
        assert!(crate::log_time_ms(line).is_some(), "bad timestamp: {line:?}");
        assert!(
            ["CRIT", "ERRO", "WARN", "INFO", "DEBG", "TRAC", "BLAT"].contains(&level),
            "bad level: {line:?}"
        );
    }
    assert_eq!(daemon.process_pid("manual"), 0);
}

#[test]
fn startsecs_must_pass_before_running() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("slow", &["--sleep", "3600"]).set("startsecs", 2)]);
    let started = Instant::now();
    let daemon = sandbox.start();
    daemon.wait_state("slow", "STARTING");
    daemon.wait_state("slow", "RUNNING");
    // Spawned after `started`, RUNNING only once startsecs have passed.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "RUNNING after {:?}",
        started.elapsed()
    );
}

#[test]
fn crash_backs_off_to_fatal_after_startretries_plus_one_spawns() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("crasher", &["--echo", "spawned", "--exit", "1"])
        .set("startsecs", 1)
        .set("startretries", 2)]);
    let started = Instant::now();
    let daemon = sandbox.start();
    let description = daemon.wait_state("crasher", "FATAL");
    let elapsed = started.elapsed();
    assert_eq!(description, "Exited too quickly (process log may have details)");
    // Spawns at t, t+1 s, t+3 s: backoff waits of 1 s then 2 s.
    assert!(elapsed >= Duration::from_millis(2900), "FATAL after only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(40), "FATAL after {elapsed:?}");
    assert_eq!(count_out_lines(&sandbox, "crasher", "spawned"), 3, "startretries + 1 spawns");
    let log = daemon.main_log();
    assert_eq!(log.matches("spawned: 'crasher' with pid").count(), 3, "{log}");
    // The waits between spawns are 1 s then 2 s (measured from the exits).
    let spawns = crate::log_times(&log, "spawned: 'crasher' with pid");
    let exits = crate::log_times(&log, "exited: crasher");
    assert_eq!(exits.len(), 3, "{log}");
    for (wait, expected) in [(spawns[1] - exits[0], 1000), (spawns[2] - exits[1], 2000)] {
        assert!(
            wait + 50 >= expected && wait < expected + 3000,
            "waited {wait} ms, expected {expected}:\n{log}"
        );
    }
    assert!(log.contains("exited: crasher (exit status 1; not expected)"), "{log}");
    assert!(
        log.contains("gave up: crasher entered FATAL state, too many start retries too quickly")
    );
    // FATAL is left only by hand: nothing more is spawned.
    holds_for(Duration::from_secs(2), "no respawn after FATAL", || {
        count_out_lines(&sandbox, "crasher", "spawned") == 3
    });
    daemon.ctl(&["status"]).expect_code(3);
    // A manual start runs the sequence again and reports the spawn error.
    let output = daemon.ctl(&["start", "crasher"]);
    output.expect_code(7).expect_lines(&["crasher: ERROR (spawn error)"]);
}

/// One program per cell of the autorestart by exit code matrix, plus a signal death.
#[test]
fn autorestart_matrix() {
    let cases: &[(&str, &str, &[&str], bool)] = &[
        ("false_expected", "false", &["--exit", "0"], false),
        ("false_unexpected", "false", &["--exit", "3"], false),
        ("unexpected_expected", "unexpected", &["--exit", "0"], false),
        ("unexpected_unexpected", "unexpected", &["--exit", "3"], true),
        ("unexpected_signal", "unexpected", &["--crash-after", "0"], true),
        ("true_expected", "true", &["--exit", "0"], true),
        ("true_unexpected", "true", &["--exit", "3"], true),
    ];
    let sandbox = Sandbox::new();
    let programs: Vec<Program> = cases
        .iter()
        .map(|(name, autorestart, end, _)| {
            let mut args = vec!["--echo", "spawned", "--sleep", "1.5"];
            args.extend_from_slice(end);
            Program::child(name, &args)
                .set("startsecs", 1)
                .set("autorestart", autorestart)
                .set("exitcodes", 0)
        })
        .collect();
    sandbox.write_config(&programs);
    let daemon = sandbox.start();
    for (name, _, _, restarts) in cases {
        if *restarts {
            wait_until(vigil_integration::TIMEOUT, &format!("{name} to be restarted"), || {
                count_out_lines(&sandbox, name, "spawned") >= 2
            });
        } else {
            daemon.wait_state(name, "EXITED");
        }
    }
    // The ones that stay EXITED really stay.
    holds_for(Duration::from_secs(2), "EXITED programs stay exited", || {
        cases.iter().filter(|case| !case.3).all(|(name, _, _, _)| {
            count_out_lines(&sandbox, name, "spawned") == 1 && daemon.state(name) == "EXITED"
        })
    });
    let log = daemon.main_log();
    assert!(log.contains("exited: false_expected (exit status 0; expected)"), "{log}");
    assert!(log.contains("exited: false_unexpected (exit status 3; not expected)"), "{log}");
    assert!(
        log.contains("exited: unexpected_signal (terminated by SIGABRT; not expected)"),
        "{log}"
    );
}

#[test]
fn missing_command_is_a_spawn_error() {
    let sandbox = Sandbox::new();
    let missing = sandbox.join("no-such-program");
    let not_executable = sandbox.join("not-executable");
    sandbox.write(&not_executable, "#!/bin/sh\n");
    sandbox.write_config(&[
        Program::raw("missing", &missing.display().to_string()).set("startretries", 1),
        Program::raw("noexec", &not_executable.display().to_string()).set("startretries", 0),
        Program::raw("bare", "vigil-no-such-command-anywhere").set("startretries", 0),
    ]);
    let daemon = sandbox.start();
    assert_eq!(
        daemon.wait_state("missing", "FATAL"),
        format!("can't find command '{}'", missing.display())
    );
    assert_eq!(
        daemon.wait_state("noexec", "FATAL"),
        format!("command at '{}' is not executable", not_executable.display())
    );
    assert_eq!(
        daemon.wait_state("bare", "FATAL"),
        "can't find command 'vigil-no-such-command-anywhere'"
    );
    daemon
        .ctl(&["start", "missing"])
        .expect_code(1)
        .expect_lines(&["missing: ERROR (no such file)"]);
    daemon
        .ctl(&["start", "noexec"])
        .expect_code(1)
        .expect_lines(&["noexec: ERROR (file is not executable)"]);
    let log = daemon.main_log();
    assert!(log.contains("gave up: missing entered FATAL state"), "{log}");
    assert!(
        log.contains(&format!("spawnerr: can't find command '{}'", missing.display())),
        "{log}"
    );
    // Nothing was ever forked.
    assert!(daemon.seen_descendants().is_empty(), "{:?}", daemon.seen_descendants());
}

/// Event-driven, unlike supervisord's one-second loop: an exit from RUNNING
/// with autorestart is respawned within milliseconds.
#[test]
fn autorestart_respawns_at_once() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "bouncer",
        &["--echo", "spawned", "--sleep", "1", "--exit", "3"],
    )
    .set("startsecs", 0)
    .set("autorestart", "true")]);
    let daemon = sandbox.start();
    wait_until(vigil_integration::TIMEOUT, "three spawns", || {
        count_out_lines(&sandbox, "bouncer", "spawned") >= 3
    });
    let log = daemon.main_log();
    let exits = crate::log_times(&log, "exited: bouncer");
    let spawns = crate::log_times(&log, "spawned: 'bouncer'");
    assert!(exits.len() >= 2 && spawns.len() >= 3, "{log}");
    for (exit, respawn) in exits.iter().zip(&spawns[1..]) {
        assert!(respawn - exit < 500, "respawned {} ms after the exit:\n{log}", respawn - exit);
    }
}

/// `priority` orders the start (ascending); `stopsignal` and `exitcodes` are
/// honoured; EXITED shows the stop time as supervisord formats it.
#[test]
fn priority_stopsignal_exitcodes_and_exited_description() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("last", &["--sleep", "3600"]).set("startsecs", 0).set("priority", 900),
        Program::child("first", &["--sleep", "3600"]).set("startsecs", 0).set("priority", 5),
        Program::child("interrupted", &["--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopsignal", "INT"),
        Program::child("three_ok", &["--sleep", "1.2", "--exit", "3"])
            .set("startsecs", 1)
            .set("exitcodes", "0,3")
            .set("autorestart", "unexpected"),
        Program::child("once", &["--exit", "1"]).set("startsecs", 1).set("startretries", 0),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("first");
    daemon.running_pid("last");
    daemon.running_pid("interrupted");
    let log = daemon.main_log();
    let first = log.find("spawned: 'first'").expect("first spawned");
    let last = log.find("spawned: 'last'").expect("last spawned");
    assert!(first < last, "ascending priority:\n{log}");

    daemon.ctl(&["stop", "interrupted"]).expect_code(0);
    assert!(daemon.main_log().contains("stopped: interrupted (terminated by SIGINT)"));

    let description = daemon.wait_state("three_ok", "EXITED");
    assert!(daemon.main_log().contains("exited: three_ok (exit status 3; expected)"));
    // `%b %d %I:%M %p`, e.g. `Nov 23 11:18 PM`.
    let words: Vec<&str> = description.split(' ').collect();
    assert_eq!(words.len(), 4, "{description:?}");
    assert!(words[0].len() == 3 && words[1].len() == 2 && words[2].len() == 5, "{description:?}");
    assert!(words[3] == "AM" || words[3] == "PM", "{description:?}");

    // startretries=0: one spawn, then FATAL.
    daemon.wait_state("once", "FATAL");
    assert_eq!(daemon.main_log().matches("spawned: 'once'").count(), 1);
    daemon.ctl(&["pid", "once"]).expect_code(7).expect_lines(&["0"]);
}

#[test]
fn unknown_user_is_a_config_error() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("who", &["--sleep", "3600"]).set("user", "vigil-no-such-user")
    ]);
    let mut check = std::process::Command::new(vigil_integration::vigild_bin());
    check.current_dir(sandbox.path()).arg("--check").arg("-c").arg(sandbox.config_path());
    let output = vigil_integration::run(&mut check, vigil_integration::TIMEOUT);
    assert_eq!(output.code, 2, "{output:#?}");
    assert!(
        format!("{}{}", output.stdout, output.stderr).contains("vigil-no-such-user"),
        "{output:#?}"
    );
}

/// A `directory=` that does not exist fails the spawn: BACKOFF, then FATAL,
/// with the reason in the status.
#[test]
fn missing_directory_fails_the_spawn() {
    let sandbox = Sandbox::new();
    let missing = sandbox.join("no-such-directory");
    sandbox.write_config(&[Program::child("lost", &["--sleep", "3600"])
        .set("directory", missing.display())
        .set("startretries", 1)]);
    let daemon = sandbox.start();
    let description = daemon.wait_state("lost", "FATAL");
    assert!(
        description.contains("chdir") || description.contains("Exited too quickly"),
        "{description}"
    );
    assert!(daemon.seen_descendants().iter().all(|pid| !procfs::alive(*pid)));
}
