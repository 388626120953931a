//! Edges around the main paths: bad input at runtime, stops in transient
//! states, output that outlives its process, a second daemon on the same socket.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, run, vigild_bin, wait_until};

use crate::wait_out_line;

fn sleeper(name: &str) -> Program {
    Program::child(name, &["--sleep", "3600"]).set("startsecs", 0)
}

/// Bad input changes nothing: a SIGHUP with a broken config keeps the daemon
/// and its programs as they were.
#[test]
fn sighup_with_a_broken_config_changes_nothing() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("steady")]);
    let mut daemon = sandbox.start();
    let pid = daemon.running_pid("steady");
    let good = std::fs::read_to_string(sandbox.config_path()).unwrap();
    std::fs::write(sandbox.config_path(), format!("{good}\n[program:bad]\nstartsecs=never\n"))
        .unwrap();
    daemon.signal(Signal::SIGHUP);
    wait_until(TIMEOUT, "the reload error in the activity log", || {
        daemon.main_log().contains("startsecs")
    });
    assert_eq!(daemon.poll_exit(), None, "vigild keeps running\n{}", daemon.diagnostics());
    assert_eq!(daemon.process_pid("steady"), pid, "the program was not touched");
    daemon.ctl(&["status"]).expect_code(0);
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("only")]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("only");
    let mut second = std::process::Command::new(vigild_bin());
    second.current_dir(sandbox.path()).arg("-n").arg("-c").arg(sandbox.config_path());
    let output = run(&mut second, TIMEOUT);
    assert_eq!(output.code, 2, "{output:#?}");
    assert!(!output.stderr.is_empty(), "says why: {output:#?}");
    assert_eq!(daemon.process_pid("only"), pid);
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
    assert!(sandbox.socket().exists(), "the running daemon's socket is left alone");
}

#[test]
fn a_broken_config_at_startup_exits_2_listing_every_error() {
    let sandbox = Sandbox::new();
    sandbox.write_config_text(
        "[program:one]\nstartsecs=soon\n\n[program:two]\ncommand=x\nautorestart=maybe\n",
    );
    let mut command = std::process::Command::new(vigild_bin());
    command.current_dir(sandbox.path()).arg("-n").arg("-c").arg(sandbox.config_path());
    let output = run(&mut command, TIMEOUT);
    assert_eq!(output.code, 2, "{output:#?}");
    let config = sandbox.config_path().display().to_string();
    let errors: Vec<&str> =
        output.stderr.lines().filter(|l| l.contains(&format!("{config}:"))).collect();
    assert!(errors.len() >= 2, "every error with file:line: {output:#?}");
    assert!(!sandbox.socket().exists(), "nothing was bound");
    let mut check = std::process::Command::new(vigild_bin());
    check.current_dir(sandbox.path()).arg("--check").arg("-c").arg(sandbox.config_path());
    assert_eq!(run(&mut check, TIMEOUT).code, 2);
}

#[test]
fn stop_while_starting_or_in_backoff() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("slow", &["--sleep", "3600"]).set("startsecs", 30),
        Program::child("failing", &["--exit", "1"]).set("startsecs", 1).set("startretries", 100),
    ]);
    let daemon = sandbox.start();
    daemon.wait_state("slow", "STARTING");
    let slow = daemon.process_pid("slow");
    daemon.ctl(&["stop", "slow"]).expect_code(0).expect_lines(&["slow: stopped"]);
    assert!(!procfs::exists(slow));
    assert_eq!(daemon.state("slow"), "STOPPED");
    daemon.wait_state("failing", "BACKOFF");
    daemon.ctl(&["stop", "failing"]).expect_code(0).expect_lines(&["failing: stopped"]);
    assert_eq!(daemon.state("failing"), "STOPPED");
}

#[test]
fn start_waits_for_startsecs() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("slow", &["--sleep", "3600"])
        .set("startsecs", 2)
        .set("autostart", "false")]);
    let daemon = sandbox.start();
    let started = Instant::now();
    daemon.ctl(&["start", "slow"]).expect_code(0).expect_lines(&["slow: started"]);
    assert!(started.elapsed() >= Duration::from_millis(1900), "{:?}", started.elapsed());
    assert_eq!(daemon.state("slow"), "RUNNING");
}

/// The exit is known when the child is reaped, even while a grandchild still
/// holds the output pipe; what the grandchild writes later is still captured.
#[test]
fn output_outliving_the_process_is_captured() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("parent", &["--fork-inherit", "3", "--exit", "0"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let daemon = sandbox.start();
    let started = Instant::now();
    daemon.wait_state("parent", "EXITED");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "EXITED only after {:?}",
        started.elapsed()
    );
    let grandchild: i32 = wait_out_line(&sandbox, "parent", "grandchild=").parse().unwrap();
    wait_out_line(&sandbox, "parent", "grandchild done");
    wait_until(TIMEOUT, "the grandchild to be reaped", || !procfs::exists(grandchild));
}

#[test]
fn fg_forwards_typed_lines_to_stdin() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("echoer", &["--stdin-echo"]).set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("echoer");
    let output = daemon.ctl_input(&["fg", "echoer"], b"typed line\n");
    output.expect_code(0);
    assert!(output.stdout.starts_with("==> Press Ctrl-C to exit <==\n"), "{output:#?}");
    wait_out_line(&sandbox, "echoer", "typed line");
}

#[test]
fn shutdown_does_not_wait_for_backoff_retries() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("failing", &["--exit", "1"]).set("startsecs", 1).set("startretries", 100),
        sleeper("fine"),
    ]);
    let mut daemon = sandbox.start();
    daemon.running_pid("fine");
    daemon.wait_state("failing", "BACKOFF");
    let started = Instant::now();
    daemon.ctl(&["shutdown"]).expect_code(0).expect_lines(&["Shut down"]);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

#[test]
fn maintail_follow_shows_new_activity() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        sleeper("a"),
        Program::child("later", &["--sleep", "3600"]).set("startsecs", 0).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("a");
    let follower = daemon.follow(&["maintail", "-f"]);
    follower.wait_output("the header", |out| out.starts_with("==> Press Ctrl-C to exit <==\n"));
    daemon.ctl(&["start", "later"]).expect_code(0);
    let pid = daemon.process_pid("later");
    follower.wait_output("the new spawn", |out| {
        out.contains(&format!("spawned: 'later' with pid {pid}"))
    });
    follower.stop();
}

#[test]
fn signal_and_restart_a_whole_group() {
    let sandbox = Sandbox::new();
    let body = sandbox.programs_text(&[
        Program::child("w1", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", 1),
        Program::child("w2", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", 1),
    ]);
    sandbox.write_config_text(&format!("{body}[group:workers]\nprograms=w1,w2\n"));
    let daemon = sandbox.start();
    let w1 = daemon.running_pid("workers:w1");
    let w2 = daemon.running_pid("workers:w2");
    wait_out_line(&sandbox, "w1", "ignoring TERM");
    wait_out_line(&sandbox, "w2", "ignoring TERM");
    let signalled = daemon.ctl(&["signal", "TERM", "workers:*"]);
    signalled.expect_code(0).expect_lines(&["workers:w1: signalled", "workers:w2: signalled"]);
    assert!(procfs::alive(w1) && procfs::alive(w2));
    let restart = daemon.ctl(&["restart", "workers:*"]);
    restart.expect_code(0).expect_lines(&[
        "workers:w1: stopped",
        "workers:w2: stopped",
        "workers:w1: started",
        "workers:w2: started",
    ]);
    assert!(!procfs::exists(w1) && !procfs::exists(w2));
}

/// supervisord refuses a log path whose directory does not exist when it reads
/// the config; Vigil must at least not start the program half-configured.
#[test]
fn log_in_a_missing_directory_is_reported() {
    let sandbox = Sandbox::new();
    let path = sandbox.join("no-such-dir/out.log");
    sandbox.write_config(&[
        Program::child("p", &["--sleep", "3600"]).set("stdout_logfile", path.display())
    ]);
    let mut check = std::process::Command::new(vigild_bin());
    check.current_dir(sandbox.path()).arg("--check").arg("-c").arg(sandbox.config_path());
    let output = run(&mut check, TIMEOUT);
    assert_eq!(output.code, 2, "{output:#?}");
    assert!(format!("{}{}", output.stdout, output.stderr).contains("no-such-dir"), "{output:#?}");
}

/// Usage errors: a config file that does not exist, for both binaries; JSON
/// stays JSON when the daemon is down.
#[test]
fn missing_config_files_and_json_without_a_daemon() {
    let sandbox = Sandbox::new();
    let missing = sandbox.join("nope.conf");
    let mut command = std::process::Command::new(vigild_bin());
    command.current_dir(sandbox.path()).arg("-n").arg("-c").arg(&missing);
    let output = run(&mut command, TIMEOUT);
    assert_eq!(output.code, 2, "{output:#?}");
    assert!(output.stderr.contains("nope.conf"), "{output:#?}");
    let output = vigil_integration::ctl_at(sandbox.path(), &missing, &["status"]);
    assert_eq!(output.code, 2, "{output:#?}");
    assert!(output.stderr.contains("nope.conf"), "{output:#?}");

    sandbox.write_config(&[]);
    let output = sandbox.ctl(&["--json", "status"]);
    output.expect_code(4);
    let document: serde_json::Value = serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {output:#?}"));
    assert_eq!(document["exit_code"], 4);
    assert_eq!(document["command"], "status");
}
