//! Orphans: vigild is a child subreaper, adopts what its programs leave behind
//! and reaps it, so no zombie piles up under it.

use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

use crate::wait_out_line;

#[test]
fn orphans_are_adopted_and_reaped() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("parent", &["--orphan", "2"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let daemon = sandbox.start();
    let orphan: i32 = wait_out_line(&sandbox, "parent", "orphan=").parse().unwrap();
    daemon.wait_state("parent", "EXITED");
    // Its parent exited at once: the orphan now belongs to vigild.
    if let Some(stat) = procfs::stat(orphan) {
        assert_eq!(stat.ppid, daemon.pid(), "orphan {orphan} is adopted by vigild");
    }
    // It exits after 2 s and must then be reaped, not left a zombie.
    wait_until(TIMEOUT, "the orphan to exit and be reaped", || !procfs::exists(orphan));
    let zombies: Vec<i32> =
        daemon.children().into_iter().filter(|pid| procfs::zombie(*pid)).collect();
    assert!(zombies.is_empty(), "zombies under vigild: {zombies:?}");
}

#[test]
fn many_short_lived_orphans_leave_no_zombie() {
    let sandbox = Sandbox::new();
    // Restarted forever: each run leaves an orphan that lives 0.2 s.
    sandbox.write_config(&[Program::child("parent", &["--orphan", "0.2"])
        .set("startsecs", 0)
        .set("autorestart", "true")]);
    let daemon = sandbox.start();
    wait_until(TIMEOUT, "ten orphans to have been created", || {
        crate::out_lines(&sandbox, "parent").len() >= 10
    });
    daemon.ctl(&["stop", "parent"]).expect_code(0);
    let orphans: Vec<i32> = crate::out_lines(&sandbox, "parent")
        .iter()
        .filter_map(|line| line.strip_prefix("orphan=")?.parse().ok())
        .collect();
    assert!(orphans.len() >= 10);
    // A pid may be reused meanwhile, but not by a child of vigild (nothing runs).
    wait_until(TIMEOUT, "every orphan to be reaped", || {
        orphans.iter().all(|pid| procfs::stat(*pid).is_none_or(|stat| stat.ppid != daemon.pid()))
    });
    let zombies: Vec<i32> =
        daemon.children().into_iter().filter(|pid| procfs::zombie(*pid)).collect();
    assert!(zombies.is_empty(), "zombies under vigild: {zombies:?}");
}

/// An orphan still running when vigild is told to stop. supervisord would leave
/// it (it only signals its direct children), but Vigil promises that "a
/// daemon killed with SIGTERM leaves no child, grandchild or zombie behind":
/// vigild, the orphan's parent by adoption, has to end it before exiting.
#[test]
fn sigterm_with_a_live_orphan() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("parent", &["--orphan", "3600"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let mut daemon = sandbox.start();
    let orphan: i32 = wait_out_line(&sandbox, "parent", "orphan=").parse().unwrap();
    daemon.wait_state("parent", "EXITED");
    wait_until(TIMEOUT, "the orphan to be adopted by vigild", || {
        procfs::stat(orphan).is_some_and(|stat| stat.ppid == daemon.pid())
    });
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    let remaining = daemon.remaining_descendants();
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}
