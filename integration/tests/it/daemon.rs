//! The daemon's signals, supervisord's table: SIGHUP reloads, SIGTERM shuts down
//! leaving no child, grandchild or zombie behind.

use std::time::Duration;

use nix::sys::signal::Signal;
use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

use crate::wait_out_line;

#[test]
fn sighup_rereads_the_config_and_restarts_everything() {
    let sandbox = Sandbox::new();
    let first = Program::child("first", &["--sleep", "3600"]).set("startsecs", 0);
    sandbox.write_config(std::slice::from_ref(&first));
    let daemon = sandbox.start();
    let first_pid = daemon.running_pid("first");
    sandbox
        .write_config(&[first, Program::child("second", &["--sleep", "3600"]).set("startsecs", 0)]);
    daemon.signal(Signal::SIGHUP);
    let second_pid = daemon.running_pid("second");
    wait_until(TIMEOUT, "first to be restarted by the reload", || {
        daemon.state("first") == "RUNNING" && daemon.process_pid("first") != first_pid
    });
    assert!(!procfs::exists(first_pid), "the old first was stopped and reaped");
    assert!(procfs::alive(second_pid));
    // Same daemon, same pid.
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
}

#[test]
fn sigterm_shutdown_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    let body = sandbox.programs_text(&[
        Program::child("plain", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("stubborn", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", 1),
        Program::child("family", &["--fork-grandchild", "3600", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopasgroup", "true")
            .set("priority", 1),
        Program::child("many", &["--sleep", "3600"])
            .set("startsecs", 0)
            .set("numprocs", 3)
            .set("process_name", "%(program_name)s_%(process_num)02d")
            .set("stdout_logfile", sandbox.join("logs/many_%(process_num)02d.out").display())
            .set("stderr_logfile", "NONE"),
    ]);
    sandbox.write_config_text(&body);
    let mut daemon = sandbox.start();
    let mut pids = vec![daemon.running_pid("plain"), daemon.running_pid("stubborn")];
    pids.push(daemon.running_pid("family"));
    for index in 0..3 {
        pids.push(daemon.running_pid(&format!("many:many_{index:02}")));
    }
    wait_out_line(&sandbox, "stubborn", "ignoring TERM");
    let grandchild: i32 = wait_out_line(&sandbox, "family", "grandchild=").parse().unwrap();
    let seen = daemon.seen_descendants();
    assert!(seen.contains(&grandchild), "the watcher sees grandchildren: {seen:?}");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    let remaining = daemon.remaining_descendants();
    assert!(remaining.is_empty(), "left behind (pid, state, command): {remaining:?}");
    for pid in pids.iter().chain([&grandchild]) {
        assert!(!procfs::exists(*pid), "{pid} still exists");
    }
    assert!(!sandbox.socket().exists(), "the socket is removed");
    assert!(!sandbox.pidfile().exists(), "the pidfile is removed");
    let log = daemon.main_log();
    assert!(log.contains("stopped: stubborn (terminated by SIGKILL)"), "{log}");
    // Reverse priority: family (priority 1) stops last.
    let family = log.find("stopped: family").expect("family stopped");
    let plain = log.find("stopped: plain").expect("plain stopped");
    assert!(plain < family, "reverse priority order:\n{log}");
}

#[test]
fn pidfile_holds_the_daemon_pid() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[]);
    let daemon = sandbox.start();
    wait_until(Duration::from_secs(10), "the pidfile", || sandbox.pidfile().exists());
    assert_eq!(sandbox.read_text("vigild.pid").trim(), daemon.pid().to_string());
}

/// SIGINT and SIGQUIT shut down like SIGTERM, as in supervisord, with status 0.
#[test]
fn sigint_and_sigquit_shut_down_cleanly() {
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        let sandbox = Sandbox::new();
        sandbox.write_config(&[Program::child("p", &["--sleep", "3600"]).set("startsecs", 0)]);
        let mut daemon = sandbox.start();
        let pid = daemon.running_pid("p");
        daemon.signal(signal);
        assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{signal}: {}", daemon.diagnostics());
        assert!(!procfs::exists(pid), "{signal}: the program was stopped");
    }
}

/// Twenty clients at once while programs restart: every answer is complete.
#[test]
fn concurrent_clients() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("churn", &["--sleep", "0.3", "--exit", "1"])
            .set("startsecs", 0)
            .set("autorestart", "true"),
        Program::child("steady", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("steady");
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20).map(|_| scope.spawn(|| daemon.ctl(&["status"]))).collect();
        for handle in handles {
            let output = handle.join().unwrap();
            assert!(output.code == 0 || output.code == 3, "{output:#?}");
            let names: Vec<&str> =
                output.lines().iter().map(|l| l.split_whitespace().next().unwrap_or("")).collect();
            assert_eq!(names, ["churn", "steady"], "{output:#?}");
        }
    });
}

/// AUTO logs of a previous run are deleted at start (those matching this
/// daemon's identifier), unless `-k`/nocleanup; `-i` sets the identifier used
/// in new AUTO names.
#[test]
fn auto_log_cleanup_nocleanup_and_identifier() {
    let sandbox = Sandbox::new();
    let stale = sandbox.join("logs/old-stdout---supervisor-abc123.log");
    let stale_backup = sandbox.join("logs/old-stdout---supervisor-abc123.log.1");
    let foreign = sandbox.join("logs/keep-me.log");
    for path in [&stale, &stale_backup, &foreign] {
        std::fs::write(path, "stale\n").unwrap();
    }
    sandbox.write_config(&[Program::child("auto", &["--echo", "hi", "--sleep", "3600"])
        .set("startsecs", 0)
        .set("stdout_logfile", "AUTO")]);
    {
        let _daemon = sandbox.start_with(&["-k"], &Default::default());
        assert!(stale.exists() && stale_backup.exists(), "-k keeps old AUTO logs");
    }
    {
        let daemon = sandbox.start_with(&["-i", "vigiltest"], &Default::default());
        daemon.running_pid("auto");
        assert!(stale.exists(), "another identifier's AUTO logs are not ours to delete");
        let output = daemon.ctl(&["--json", "status", "auto"]);
        let document: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
        let path = document["result"][0]["stdout_logfile"].as_str().unwrap().to_owned();
        assert!(path.contains("/auto-stdout---vigiltest-"), "{path}");
    }
    let _daemon = sandbox.start();
    assert!(!stale.exists() && !stale_backup.exists(), "old AUTO logs are deleted at start");
    assert!(foreign.exists(), "other files are left alone");
}

/// Kills what is left of a daemon started in the background, and reaps the
/// daemon and the intermediate session leader of its double fork,
/// re-parented to this test process (a subreaper).
struct Background(i32, i32);

impl Drop for Background {
    fn drop(&mut self) {
        // Frozen first, so it cannot fork behind the look at its descendants.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGSTOP);
        for pid in procfs::descendants(self.0).into_iter().chain([self.0]) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        let us = std::process::id() as i32;
        for pid in [self.0, self.1] {
            if pid != us && procfs::stat(pid).is_some_and(|stat| stat.ppid == us) {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            }
        }
    }
}

/// Runs `vigild ARGS` from the sandbox's directory with `nodaemon=false`
/// (and `extra` added to `[supervisord]`), so that it forks into the
/// background; the daemon's pid, its session, and the guard that cleans up.
fn start_in_background(sandbox: &Sandbox, args: &[&str], extra: &str) -> (i32, i32, Background) {
    vigil_integration::become_subreaper();
    let config = std::fs::read_to_string(sandbox.config_path())
        .unwrap()
        .replace("nodaemon=true", &format!("nodaemon=false\n{extra}"));
    std::fs::write(sandbox.config_path(), config).unwrap();
    let mut command = std::process::Command::new(vigil_integration::vigild_bin());
    command.current_dir(sandbox.path()).args(args);
    let output = vigil_integration::run(&mut command, TIMEOUT);
    assert_eq!(output.code, 0, "{output:#?}");
    let pid: i32 = sandbox.read_text("vigild.pid").trim().parse().expect("pidfile");
    let session = procfs::stat(pid).unwrap().session;
    (pid, session, Background(pid, session))
}

/// Without -n and with nodaemon=false, vigild forks into the background: the
/// command returns 0 once it is up, the pidfile names the daemon.
#[test]
fn daemonizes_without_nodaemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("bg", &["--sleep", "3600"]).set("startsecs", 0)]);
    let config = sandbox.config_path().display().to_string();
    let (pid, session, guard) = start_in_background(&sandbox, &["-c", &config], "");
    assert!(procfs::alive(pid));
    let ours = procfs::stat(std::process::id() as i32).unwrap().session;
    assert_ne!(session, ours, "the daemon left our session");
    sandbox.ctl(&["pid"]).expect_code(0).expect_lines(&[&pid.to_string()]);
    let bg = wait_for_pid(&sandbox, "bg");
    sandbox.ctl(&["shutdown"]).expect_code(0);
    wait_until(TIMEOUT, "the daemon to exit", || !procfs::alive(pid));
    assert!(!procfs::exists(bg));
    drop(guard);
}

/// A daemon started with a relative `-c` works in another directory once it
/// forked (`directory=`); a live upgrade's next image, which starts there,
/// still finds the file the command line named.
#[test]
fn a_background_daemon_started_with_a_relative_config_path_upgrades() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("bg", &["--sleep", "3600"]).set("startsecs", 0)]);
    let elsewhere = tempfile::tempdir().expect("a directory");
    let name = sandbox.config_path().file_name().expect("a file name").to_owned();
    let name = name.to_str().expect("UTF-8");
    let directory = format!("directory={}", elsewhere.path().display());
    let (pid, _, guard) = start_in_background(&sandbox, &["-c", name], &directory);
    let bg = wait_for_pid(&sandbox, "bg");
    // Should the daemon die, its program is no longer its descendant.
    let _bg_guard = Background(bg, bg);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("the daemon's directory");
    assert_eq!(cwd, elsewhere.path());
    let upgraded = sandbox.ctl(&["upgrade"]);
    assert_eq!(upgraded.code, 0, "{upgraded:#?}");
    assert!(upgraded.stdout.contains(&format!("(pid {pid})")), "{upgraded:#?}");
    wait_until(TIMEOUT, "the new image to take over", || {
        sandbox.read_text("vigild.log").contains("handed over by the previous image")
    });
    assert_eq!(wait_for_pid(&sandbox, "bg"), bg);
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd"), elsewhere.path());
    sandbox.ctl(&["shutdown"]).expect_code(0);
    wait_until(TIMEOUT, "the daemon to exit", || !procfs::alive(pid));
    assert!(!procfs::exists(bg));
    drop(guard);
}

fn wait_for_pid(sandbox: &Sandbox, name: &str) -> i32 {
    vigil_integration::wait_for(TIMEOUT, "a running pid", || {
        let output = sandbox.ctl(&["pid", name]);
        output.stdout.trim().parse::<i32>().ok().filter(|pid| output.code == 0 && *pid > 0)
    })
}

/// The activity log on /dev/stdout with rotation off (supervisord's issue-1224).
#[test]
fn activity_log_on_dev_stdout() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("p", &["--sleep", "3600"]).set("startsecs", 0)]);
    let dir = sandbox.path().display().to_string();
    let config = std::fs::read_to_string(sandbox.config_path()).unwrap().replace(
        &format!("logfile={dir}/vigild.log\n"),
        "logfile=/dev/stdout\nlogfile_maxbytes=0\n",
    );
    std::fs::write(sandbox.config_path(), config).unwrap();
    let daemon = sandbox.start();
    let pid = daemon.running_pid("p");
    wait_until(TIMEOUT, "the spawn line on stdout", || {
        sandbox.read_text("vigild.stdout").contains(&format!("spawned: 'p' with pid {pid}"))
    });
}

/// While the shutdown waits for a slow process, the activity log says so every
/// few seconds, as supervisord's `waiting for NAME to die`.
#[test]
fn shutdown_reports_what_it_waits_for() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("slowpoke", &["--ignore-term", "--sleep", "3600"])
        .set("startsecs", 0)
        .set("stopwaitsecs", 5)]);
    let mut daemon = sandbox.start();
    let pid = daemon.running_pid("slowpoke");
    wait_out_line(&sandbox, "slowpoke", "ignoring TERM");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    assert!(!procfs::exists(pid));
    let log = daemon.main_log();
    assert!(log.contains("waiting for slowpoke to die"), "{log}");
    assert!(log.contains(&format!("killing 'slowpoke' ({pid}) with SIGKILL")), "{log}");
}

/// `-c` relative to the working directory, and `%(here)s` expanding to the
/// config file's directory, for both vigild and vigilctl.
#[test]
fn relative_config_path_and_here() {
    let sandbox = Sandbox::new();
    let child = vigil_integration::child_bin().display().to_string();
    let text = sandbox.header().replace(&sandbox.path().display().to_string(), "%(here)s")
        + &format!(
            "[program:here]\ncommand={child} --echo %(here)s --sleep 3600\nstartsecs=0\n\
             stdout_logfile=%(here)s/logs/here.out\n"
        );
    std::fs::write(sandbox.config_path(), text).unwrap();
    let daemon = vigil_integration::Daemon::start(
        sandbox.path(),
        std::path::Path::new("supervisord.conf"),
        &[],
        &Default::default(),
    );
    daemon.running_pid("here");
    let here = crate::wait_out_line(&sandbox, "here", "/");
    assert_eq!(format!("/{here}"), sandbox.path().display().to_string());
    assert!(sandbox.socket().exists());
}

/// Event-driven: an idle daemon (programs running, nobody asking) makes no
/// periodic wake-ups, unlike supervisord's one-second loop.
#[test]
fn idle_daemon_does_not_wake_up() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("idle", &["--sleep", "3600"]).set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("idle");
    let switches = || -> u64 {
        std::fs::read_dir(format!("/proc/{}/task", daemon.pid()))
            .unwrap()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter(|line| line.contains("ctxt_switches"))
                    .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    };
    // Let the start-up settle, then watch a quiet period.
    vigil_integration::holds_for(Duration::from_secs(1), "settling", || true);
    let before = switches();
    vigil_integration::holds_for(Duration::from_secs(4), "an idle period", || true);
    let woken = switches() - before;
    assert!(woken <= 8, "vigild woke up {woken} times in 4 idle seconds");
}

/// A group that exhausts its restart budget under `on_fatal =
/// shutdown` takes the daemon down after an ordered shutdown, with exit status
/// 1, so a container restarts instead of limping on. The bystander shows the
/// shutdown is the whole tree's, not just the failing group's.
#[test]
fn on_fatal_shutdown_exits_non_zero() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("on_fatal", "shutdown");
    sandbox.write_config(&[
        Program::child("crashy", &["--sleep", "0.2", "--exit", "3"])
            .set("startsecs", 0)
            .set("autorestart", "true")
            .set("max_restarts", 3)
            .set("max_restarts_period", 60),
        Program::child("bystander", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let mut daemon = sandbox.start();
    let bystander = daemon.running_pid("bystander");
    assert_eq!(daemon.wait_exit(TIMEOUT), 1, "{}", daemon.diagnostics());
    assert!(!procfs::exists(bystander), "the bystander was stopped");
    let log = daemon.main_log();
    assert!(log.contains("group 'crashy' is FATAL"), "{log}");
    assert!(log.contains("stopped: bystander"), "{log}");
}
