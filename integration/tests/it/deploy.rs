//! Running vigild the way services are deployed in containers: exit semantics
//! (`on_fatal`, `essential`), environment files and per-program resource
//! limits, each checked by what vigild's exit status, the child or the
//! activity log actually show.

use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

/// A program that gives up after `startretries` under `on_fatal = shutdown`
/// takes the daemon down in order with status 1 (before, only a group's
/// `max_restarts` budget did).
#[test]
fn exhausting_startretries_under_on_fatal_shutdown_exits_1() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("on_fatal", "shutdown");
    sandbox.write_config(&[
        Program::child("flaky", &["--sleep", "0.3", "--exit", "3"])
            .set("startsecs", 1)
            .set("startretries", 1),
        Program::child("bystander", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    let bystander = daemon.running_pid("bystander");
    assert_eq!(daemon.wait_exit(TIMEOUT), 1, "{}", daemon.diagnostics());
    assert!(!procfs::exists(bystander), "the bystander was stopped");
    let log = daemon.main_log();
    assert!(log.contains("gave up: flaky entered FATAL state"), "{log}");
    assert!(log.contains("'flaky' is FATAL"), "{log}");
    assert!(log.contains("stopped: bystander"), "{log}");
}

/// supervisord's default (`on_fatal = ignore`) is unchanged: the daemon keeps
/// running with the program FATAL.
#[test]
fn exhausting_startretries_under_on_fatal_ignore_keeps_running() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("flaky", &["--sleep", "0.2", "--exit", "3"])
        .set("startsecs", 1)
        .set("startretries", 0)]);
    let mut daemon = sandbox.start();
    daemon.wait_state("flaky", "FATAL");
    assert_eq!(daemon.poll_exit(), None, "{}", daemon.diagnostics());
}

/// An essential program's exit status becomes vigild's, after the others were
/// stopped in order.
#[test]
fn an_essential_program_exiting_ends_the_daemon_with_its_status() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("job", &["--sleep", "1", "--exit", "7"])
            .set("startsecs", 0)
            .set("autorestart", "true")
            .set("essential", "true"),
        Program::child("sidecar", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    let sidecar = daemon.running_pid("sidecar");
    assert_eq!(daemon.wait_exit(TIMEOUT), 7, "{}", daemon.diagnostics());
    assert!(!procfs::exists(sidecar), "the sidecar was stopped");
    let log = daemon.main_log();
    assert!(log.contains("'job' exited (exit status 7); it is essential"), "{log}");
    assert!(log.contains("stopped: sidecar"), "{log}");
    // autorestart does not apply to an essential program: one spawn only.
    assert_eq!(log.matches("spawned: 'job'").count(), 1, "{log}");
}

/// A successful essential program (a one-shot job) ends the daemon with 0.
#[test]
fn an_essential_program_exiting_0_ends_the_daemon_with_0() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("job", &["--sleep", "1", "--exit", "0"])
            .set("startsecs", 0)
            .set("essential", "true"),
        Program::child("sidecar", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    daemon.running_pid("sidecar");
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
}

/// A death by signal N is reported as a shell does, 128 + N.
#[test]
fn an_essential_program_killed_by_a_signal_ends_the_daemon_with_128_plus_n() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("job", &["--sleep", "3600"])
        .set("startsecs", 0)
        .set("essential", "true")]);
    let mut daemon = sandbox.start();
    let pid = daemon.running_pid("job");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the job");
    assert_eq!(daemon.wait_exit(TIMEOUT), 128 + 9, "{}", daemon.diagnostics());
}

/// An essential program that never gets going ends the daemon with its last
/// failure status once it is FATAL, even under `on_fatal = ignore`.
#[test]
fn an_essential_program_going_fatal_ends_the_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("job", &["--sleep", "0.3", "--exit", "5"])
            .set("startsecs", 1)
            .set("startretries", 1)
            .set("essential", "true"),
        Program::child("sidecar", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    assert_eq!(daemon.wait_exit(TIMEOUT), 5, "{}", daemon.diagnostics());
}

/// Stopping an essential program on purpose is not its end: `restart` works
/// and the daemon keeps running.
#[test]
fn stopping_an_essential_program_by_hand_keeps_the_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("job", &["--sleep", "3600"])
        .set("startsecs", 0)
        .set("essential", "true")]);
    let mut daemon = sandbox.start();
    let first = daemon.running_pid("job");
    daemon.ctl(&["restart", "job"]).expect_code(0);
    wait_until(TIMEOUT, "job to run again", || {
        daemon.state("job") == "RUNNING" && daemon.process_pid("job") != first
    });
    daemon.ctl(&["stop", "job"]).expect_code(0);
    assert_eq!(daemon.state("job"), "STOPPED");
    assert_eq!(daemon.poll_exit(), None, "{}", daemon.diagnostics());
}
