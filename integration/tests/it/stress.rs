//! Races a supervisor must survive: control calls crossing each other, a
//! shutdown arriving while programs are still being spawned, and thousands
//! of groups flooding the event bus at once.

use nix::sys::signal::Signal;
use vigil_integration::{Program, Sandbox, TIMEOUT, child_bin, procfs, wait_until};

use crate::wait_out_line;

/// Two clients stop the same slow-to-die process at once: both return, it is
/// stopped once, nothing is left.
#[test]
fn concurrent_stops_of_one_process() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("stubborn", &["--ignore-term", "--sleep", "3600"])
        .set("startsecs", 0)
        .set("stopwaitsecs", 2)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("stubborn");
    wait_out_line(&sandbox, "stubborn", "ignoring TERM");
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(|| daemon.ctl(&["stop", "stubborn"]));
        let second = scope.spawn(|| daemon.ctl(&["stop", "stubborn"]));
        (first.join().unwrap(), second.join().unwrap())
    });
    for output in [&first, &second] {
        output.expect_code(0);
        let line = output.lines().join("\n");
        assert!(
            line == "stubborn: stopped" || line == "stubborn: ERROR (not running)",
            "{output:#?}"
        );
    }
    assert!(!procfs::exists(pid));
    assert_eq!(daemon.state("stubborn"), "STOPPED");
    assert_eq!(daemon.main_log().matches("stopped: stubborn").count(), 1, "{}", daemon.main_log());
}

/// Stop and start in quick succession, many times: every answer is the
/// expected one and exactly one process runs at the end.
#[test]
fn stop_start_cycles() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("cycled", &["--sleep", "3600"]).set("startsecs", 0)]);
    let daemon = sandbox.start();
    let mut previous = daemon.running_pid("cycled");
    for _ in 0..15 {
        daemon.ctl(&["stop", "cycled"]).expect_code(0).expect_lines(&["cycled: stopped"]);
        assert!(!procfs::exists(previous));
        daemon.ctl(&["start", "cycled"]).expect_code(0).expect_lines(&["cycled: started"]);
        let pid = daemon.process_pid("cycled");
        assert!(procfs::alive(pid) && pid != previous);
        previous = pid;
    }
    let running: Vec<i32> =
        daemon.children().into_iter().filter(|pid| procfs::alive(*pid)).collect();
    assert_eq!(running, [previous], "one child only");
}

/// SIGTERM while a hundred programs are being spawned: vigild exits 0 and
/// leaves nothing (the harness checks every descendant it saw).
#[test]
fn sigterm_during_mass_start() {
    let sandbox = Sandbox::new();
    let programs: Vec<Program> = (0..100)
        .map(|n| {
            Program::child(&format!("p{n:03}"), &["--sleep", "3600"])
                .set("startsecs", 0)
                .set("stdout_logfile", "NONE")
                .set("stderr_logfile", "NONE")
        })
        .collect();
    sandbox.write_config(&programs);
    let mut daemon = sandbox.start();
    // Readiness comes before all the spawns are done; do not wait for them.
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    let remaining = daemon.remaining_descendants();
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

/// The same shutdown through `update`: a hundred programs added at once, and a
/// shutdown right behind them.
#[test]
fn shutdown_right_after_a_large_update() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[]);
    let mut daemon = sandbox.start();
    let programs: Vec<Program> = (0..60)
        .map(|n| {
            Program::child(&format!("u{n:03}"), &["--sleep", "3600"])
                .set("startsecs", 0)
                .set("stdout_logfile", "NONE")
                .set("stderr_logfile", "NONE")
        })
        .collect();
    sandbox.write_config(&programs);
    daemon.ctl(&["update"]).expect_code(0);
    daemon.ctl(&["shutdown"]).expect_code(0).expect_lines(&["Shut down"]);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    let remaining = daemon.remaining_descendants();
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

/// Reloads arriving back to back, then a SIGTERM in the middle of one: the
/// daemon ends with exactly one process per program, then exits cleanly.
#[test]
fn back_to_back_reloads_then_sigterm_mid_reload() {
    let sandbox = Sandbox::new();
    let programs: Vec<Program> = (0..5)
        .map(|n| {
            Program::child(&format!("r{n}"), &["--ignore-term", "--sleep", "3600"])
                .set("startsecs", 0)
                .set("stopwaitsecs", 1)
                .set("stdout_logfile", "NONE")
                .set("stderr_logfile", "NONE")
        })
        .collect();
    sandbox.write_config(&programs);
    let mut daemon = sandbox.start();
    for n in 0..5 {
        daemon.running_pid(&format!("r{n}"));
    }
    for _ in 0..3 {
        daemon.signal(Signal::SIGHUP);
    }
    vigil_integration::wait_until(TIMEOUT, "five RUNNING processes after the reloads", || {
        daemon.ctl(&["status"]).code == 0
            && daemon.ctl(&["status"]).lines().len() == 5
            && daemon.children().iter().filter(|pid| procfs::alive(**pid)).count() == 5
    });
    assert_eq!(daemon.poll_exit(), None, "{}", daemon.diagnostics());
    daemon.signal(Signal::SIGHUP);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    let remaining = daemon.remaining_descendants();
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

#[test]
fn an_event_listener_gets_its_events_after_thousands_of_groups_flood_the_bus() {
    let sandbox = Sandbox::new();
    let events = sandbox.join("events.txt");
    let listener = format!(
        "[eventlistener:ev]\ncommand={} --event-listener {}\nevents=PROCESS_STATE_RUNNING\n\
         startsecs=0\nstderr_logfile=NONE\n\n",
        child_bin().display(),
        events.display()
    );
    // 5,000 groups that do not start: one event each as they are added, more
    // than the bus holds (here the feed falls about 900 events behind), with
    // the listener's group added first, so its event is among those lost.
    let mut quiet = String::new();
    for index in 0..5000 {
        quiet.push_str(&format!(
            "[program:q{index:04}]\ncommand=/bin/true\nautostart=false\n\
             stdout_logfile=NONE\nstderr_logfile=NONE\n\n"
        ));
    }
    let p = Program::child("p", &["--sleep", "3600"]).set("autostart", "false").set("startsecs", 0);
    sandbox.write_config_text(&format!("{listener}{quiet}{}", sandbox.programs_text(&[p])));
    let daemon = sandbox.start();
    daemon.running_pid("ev");
    daemon.ctl(&["start", "p"]).expect_code(0);
    wait_until(TIMEOUT, "the listener to be told p is RUNNING", || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("processname:p groupname:p")
    });
}
