//! Stopping as supervisord does: stopsignal, escalation to SIGKILL after
//! stopwaitsecs, and stopasgroup/killasgroup reaching grandchildren.

use std::time::{Duration, Instant};

use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

use crate::wait_out_line;

#[test]
fn stop_sends_sigterm() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("plain", &["--sleep", "3600"]).set("startsecs", 0)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("plain");
    let started = Instant::now();
    daemon.ctl(&["stop", "plain"]).expect_code(0).expect_lines(&["plain: stopped"]);
    assert!(started.elapsed() < Duration::from_secs(10), "stop took {:?}", started.elapsed());
    assert!(!procfs::exists(pid), "stopped process is reaped");
    assert_eq!(daemon.state("plain"), "STOPPED");
    assert!(
        daemon.main_log().contains("stopped: plain (terminated by SIGTERM)"),
        "{}",
        daemon.main_log()
    );
}

#[test]
fn stop_escalates_to_sigkill_after_stopwaitsecs() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("stubborn", &["--ignore-term", "--sleep", "3600"])
        .set("startsecs", 0)
        .set("stopwaitsecs", 1)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("stubborn");
    // The handler is installed before anyone sends TERM.
    wait_out_line(&sandbox, "stubborn", "ignoring TERM");
    let started = Instant::now();
    daemon.ctl(&["stop", "stubborn"]).expect_code(0).expect_lines(&["stubborn: stopped"]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "SIGKILL came after only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "stop took {elapsed:?}");
    assert!(!procfs::exists(pid), "killed process is reaped");
    let log = daemon.main_log();
    assert!(log.contains(&format!("killing 'stubborn' ({pid}) with SIGKILL")), "{log}");
    assert!(log.contains("stopped: stubborn (terminated by SIGKILL)"), "{log}");
}

/// The grandchild is forked before the parent ignores TERM, so a TERM reaching
/// the group would kill it; only the SIGKILL to the group does here.
#[test]
fn killasgroup_reaches_grandchildren() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "family",
        &["--fork-grandchild", "3600", "--ignore-term", "--sleep", "3600"],
    )
    .set("startsecs", 0)
    .set("stopwaitsecs", 1)
    .set("killasgroup", "true")]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("family");
    let grandchild: i32 = wait_out_line(&sandbox, "family", "grandchild=").parse().unwrap();
    wait_out_line(&sandbox, "family", "ignoring TERM");
    assert_eq!(procfs::stat(grandchild).unwrap().pgrp, pid);
    daemon.ctl(&["stop", "family"]).expect_code(0).expect_lines(&["family: stopped"]);
    assert!(!procfs::exists(pid));
    // Killed, re-parented to vigild (a subreaper) and reaped there: no zombie.
    wait_until(TIMEOUT, "the grandchild to be killed and reaped", || !procfs::exists(grandchild));
}

#[test]
fn stopasgroup_reaches_grandchildren() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "family",
        &["--fork-grandchild", "3600", "--sleep", "3600"],
    )
    .set("startsecs", 0)
    .set("stopasgroup", "true")]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("family");
    let grandchild: i32 = wait_out_line(&sandbox, "family", "grandchild=").parse().unwrap();
    daemon.ctl(&["stop", "family"]).expect_code(0).expect_lines(&["family: stopped"]);
    assert!(!procfs::exists(pid));
    wait_until(TIMEOUT, "the grandchild to be stopped and reaped", || !procfs::exists(grandchild));
    assert!(!daemon.main_log().contains("with SIGKILL"), "TERM to the group was enough");
}

/// supervisord's semantics: without stopasgroup only the child is signalled, and
/// its grandchild lives on (adopted by vigild, the subreaper).
#[test]
fn without_stopasgroup_grandchildren_survive_a_stop() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "family",
        &["--fork-grandchild", "3600", "--sleep", "3600"],
    )
    .set("startsecs", 0)]);
    let mut daemon = sandbox.start();
    daemon.running_pid("family");
    let grandchild: i32 = wait_out_line(&sandbox, "family", "grandchild=").parse().unwrap();
    daemon.tolerate(grandchild);
    daemon.ctl(&["stop", "family"]).expect_code(0);
    assert!(procfs::alive(grandchild), "only the child got SIGTERM");
    wait_until(TIMEOUT, "the grandchild to be adopted by vigild", || {
        procfs::stat(grandchild).is_some_and(|stat| stat.ppid == daemon.pid())
    });
}

/// A stop completes when the child is reaped, even though a grandchild (not in
/// the stop, no stopasgroup) still holds the output pipe open; the grandchild's
/// later output is still captured.
#[test]
fn stop_does_not_wait_for_the_pipe_to_close() {
    let sandbox = Sandbox::new();
    sandbox
        .write_config(&[Program::child("holder", &["--fork-inherit", "4", "--sleep", "3600"])
            .set("startsecs", 0)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("holder");
    let grandchild: i32 = wait_out_line(&sandbox, "holder", "grandchild=").parse().unwrap();
    let started = std::time::Instant::now();
    daemon.ctl(&["stop", "holder"]).expect_code(0).expect_lines(&["holder: stopped"]);
    assert!(started.elapsed() < Duration::from_secs(3), "stop took {:?}", started.elapsed());
    assert!(!procfs::exists(pid));
    wait_out_line(&sandbox, "holder", "grandchild done");
    wait_until(TIMEOUT, "the grandchild to be reaped", || !procfs::exists(grandchild));
}
