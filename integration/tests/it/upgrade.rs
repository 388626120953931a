//! Live upgrade (`vigilctl upgrade`, SIGUSR1): vigild executes a binary in its
//! own place, same pid, and every program carries on: pids, uptimes, restart
//! counts, every byte of output, an exit during the gap, the control socket.
//! The "new" binary is this build's vigild, reached directly or through a
//! shell wrapper that acts in the gap between the two images. The wrapper is
//! the same pid and runs builtins only (a child of the shell would make it
//! wait and collect vigild's children too); a child of vigild that dies in
//! the gap is killed by the test helper, which collects nothing, since a
//! shell collects its dead children even without waiting for any.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;
use vigil_integration::procfs as proc;
use vigil_integration::{Daemon, Program, Sandbox, TIMEOUT, vigild_bin, wait_for, wait_until};

/// `status --json`: name -> its entry.
fn facts(daemon: &Daemon) -> BTreeMap<String, Value> {
    let output = daemon.ctl(&["status", "--json"]);
    let document: Value = serde_json::from_str(output.stdout.trim())
        .unwrap_or_else(|e| panic!("status --json: {e}: {output:#?}"));
    document["result"]
        .as_array()
        .expect("result list")
        .iter()
        .map(|entry| (entry["name"].as_str().expect("name").to_owned(), entry.clone()))
        .collect()
}

/// Writes an executable `shell` script `name` in the sandbox: `body` runs in
/// the gap (when not called for the pre-flight), then it executes vigild.
fn wrapper(sandbox: &Sandbox, name: &str, shell: &str, body: &str) -> String {
    let vigild = vigild_bin().display().to_string();
    let script = format!(
        "#!{shell}\nif [ \"$1\" = --handover-check ]; then exec '{vigild}' \"$@\"; fi\n\
         {body}\nexec '{vigild}' \"$@\"\n"
    );
    executable(sandbox, name, &script)
}

/// Writes `text` to the executable file `name` in the sandbox; its path.
fn executable(sandbox: &Sandbox, name: &str, text: &str) -> String {
    let path = sandbox.join(name);
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// A daemon running the one program `p`, and p's pid.
fn one_program() -> (Sandbox, Daemon, i32) {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("p", &["--sleep", "3600"]).set("startsecs", 0)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("p");
    (sandbox, daemon, pid)
}

/// Runs `vigilctl upgrade ARGS` and checks it answered with the new image.
fn upgrade(daemon: &Daemon, args: &[&str]) {
    let mut words = vec!["upgrade"];
    words.extend_from_slice(args);
    let output = daemon.ctl(&words);
    assert_eq!(output.code, 0, "{output:#?}\n{}", daemon.diagnostics());
    let lines = output.lines();
    assert!(
        lines[0].starts_with("vigild ") && lines[0].ends_with("reads handover format 1"),
        "{output:#?}"
    );
    assert_eq!(
        lines[1],
        format!("Upgraded: vigild {} (pid {})", env!("CARGO_PKG_VERSION"), daemon.pid()),
        "{output:#?}"
    );
}

/// The main log once it says the new image took over `count` times and
/// resumed the processes (it answers reads before: see `gap.rs`).
fn wait_takeovers(daemon: &Daemon, count: usize) -> String {
    wait_for(TIMEOUT, "the new image to take over", || {
        let log = daemon.main_log();
        (log.matches("(live upgrade)\n").count() >= 2 * count
            && log.matches("handed over by the previous image").count() >= count)
            .then_some(log)
    })
}

#[test]
fn upgrade_keeps_100_programs_with_their_pids_uptimes_and_restart_counts() {
    let sandbox = Sandbox::new();
    let mut programs: Vec<Program> = (0..100)
        .map(|i| Program::child(&format!("p{i:03}"), &["--sleep", "3600"]).set("startsecs", 0))
        .collect();
    programs.push(Program::child("again", &["--sleep", "3600"]).set("startsecs", 0));
    programs.push(Program::child("off", &["--sleep", "3600"]).set("autostart", "false"));
    sandbox.write_config(&programs);
    let daemon = sandbox.start();
    let before = wait_for(TIMEOUT, "every program RUNNING", || {
        let facts = facts(&daemon);
        let running = facts.values().filter(|p| p["statename"] == "RUNNING").count();
        (running == 101).then_some(facts)
    });
    daemon.ctl(&["restart", "again"]).expect_code(0);
    daemon.ctl(&["restart", "again"]).expect_code(0);
    let before = {
        let mut before = before;
        before.insert("again".to_owned(), facts(&daemon)["again"].clone());
        before
    };
    assert_eq!(before["again"]["restarts"], 2);

    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 1);
    assert!(log.contains("resuming 102 processes handed over by the previous image"), "{log}");

    let after = facts(&daemon);
    for (name, was) in &before {
        let now = &after[name];
        for key in ["statename", "pid", "start", "restarts", "stdout_logfile", "stderr_logfile"] {
            assert_eq!(now[key], was[key], "{name}'s {key} after the upgrade: {now}");
        }
        if let Some(pid) = was["pid"].as_i64().filter(|pid| *pid > 0) {
            let stat = proc::stat(pid as i32).expect("still there");
            assert_eq!(stat.ppid, daemon.pid(), "{name} is still vigild's child");
        }
    }
    assert_eq!(after["off"]["statename"], "STOPPED");
    // The resumed processes are fully managed: a restart spawns a new child.
    daemon.ctl(&["restart", "p000"]).expect_code(0);
    let facts = facts(&daemon);
    assert_ne!(facts["p000"]["pid"], before["p000"]["pid"]);
    assert_eq!(facts["p000"]["restarts"], 1);
    daemon.ctl(&["start", "off"]).expect_code(0);
}

#[test]
fn no_line_of_fast_writers_is_lost_or_repeated_across_upgrades_and_rotations() {
    const LINES: usize = 40_000;
    let sandbox = Sandbox::new();
    let writers = ["w1", "w2", "w3"];
    let programs: Vec<Program> = writers
        .iter()
        .map(|name| {
            // 100 µs between lines: a few seconds of writing, so the upgrades
            // land in the middle; 64 KB files rotate every ~5,000 lines.
            Program::child(name, &["--count", &LINES.to_string(), "0.0001"])
                .set("startsecs", 0)
                .set("autorestart", "false")
                .set("stdout_logfile_maxbytes", "64KB")
                .set("stdout_logfile_backups", 50)
        })
        .collect();
    sandbox.write_config(&programs);
    let daemon = sandbox.start();
    wait_until(TIMEOUT, "the writers to have written", || {
        std::fs::metadata(sandbox.stdout_log("w1")).is_ok_and(|m| m.len() > 1000)
    });
    upgrade(&daemon, &[]);
    upgrade(&daemon, &[]);
    let states = facts(&daemon);
    assert!(
        writers.iter().any(|name| states[*name]["statename"] == "RUNNING"),
        "the upgrades happened while the programs wrote: {states:?}"
    );
    for name in writers {
        daemon.wait_state(name, "EXITED");
        let base = sandbox.stdout_log(name);
        let mut text = String::new();
        for backup in (1..=50).rev() {
            let path = format!("{}.{backup}", base.display());
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text.push_str(&std::fs::read_to_string(&base).expect("log"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(std::path::Path::new(&format!("{}.3", base.display())).exists(), "rotated");
        assert_eq!(lines.len(), LINES, "{name}: every line once");
        for (index, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("line {:06}", index + 1), "{name}: in order");
        }
    }
}

#[test]
fn a_child_that_exits_during_the_gap_is_reaped_and_restarted_by_the_new_image() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("dies", &["--sleep", "3600"]).set("startsecs", 0).set("autorestart", "true"),
        Program::child("stays", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    let dies = daemon.running_pid("dies");
    let stays = daemon.running_pid("stays");
    // In the gap: the helper (which collects no child) kills `dies` and waits
    // until it is a zombie, then executes the new image.
    let child = vigil_integration::child_bin().display().to_string();
    let vigild = vigild_bin().display().to_string();
    let script = wrapper(
        &sandbox,
        "gap.sh",
        "/bin/sh",
        &format!("exec '{child}' --zombie {dies} --exec '{vigild}' \"$@\""),
    );
    upgrade(&daemon, &["--binary", &script]);
    let log = wait_takeovers(&daemon, 1);
    assert!(log.contains("resuming 2 processes"), "{log}");
    let restarted = wait_for(TIMEOUT, "dies to be restarted", || {
        let pid = daemon.running_pid("dies");
        (pid != dies).then_some(pid)
    });
    assert!(!proc::exists(dies), "the zombie was reaped");
    let facts = facts(&daemon);
    assert_eq!(facts["dies"]["restarts"], 1);
    assert_eq!(facts["dies"]["last_exit"]["signal"], 15, "{}", facts["dies"]);
    assert_eq!(daemon.process_pid("stays"), stays);
    let log = daemon.main_log();
    assert!(log.contains("exited: dies (terminated by SIGTERM; not expected)"), "{log}");
    assert!(log.contains(&format!("spawned: 'dies' with pid {restarted}")), "{log}");
}

#[test]
fn a_client_looping_status_sees_no_error_during_upgrades() {
    let (sandbox, daemon, _) = one_program();
    let daemon = Arc::new(daemon);
    // A gap of half a second, without a child of the shell.
    let fifo = sandbox.join("gap.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let script = wrapper(
        &sandbox,
        "slow.sh",
        "/bin/bash",
        &format!("read -r -t 0.5 <> '{}'", fifo.display()),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let looping = {
        let (daemon, stop, calls) = (Arc::clone(&daemon), Arc::clone(&stop), Arc::clone(&calls));
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let output = daemon.ctl(&["status"]);
                if output.code != 0 || !output.stdout.starts_with("p ") {
                    failures.push(output);
                }
                calls.fetch_add(1, Ordering::SeqCst);
            }
            failures
        })
    };
    wait_until(TIMEOUT, "the loop to run", || calls.load(Ordering::SeqCst) > 2);
    upgrade(&daemon, &["--binary", &script]);
    upgrade(&daemon, &[]);
    let seen = calls.load(Ordering::SeqCst);
    wait_until(TIMEOUT, "more status calls", || calls.load(Ordering::SeqCst) > seen + 2);
    stop.store(true, Ordering::SeqCst);
    let failures = looping.join().expect("status loop");
    assert!(failures.is_empty(), "status failed during the upgrade: {failures:#?}");
    wait_takeovers(&daemon, 2);
}

#[test]
fn a_refused_preflight_or_format_leaves_the_daemon_untouched() {
    let (sandbox, daemon, pid) = one_program();
    let refused = |args: &[&str], why: &str| {
        let mut words = vec!["upgrade"];
        words.extend_from_slice(args);
        let output = daemon.ctl(&words);
        assert_ne!(output.code, 0, "{output:#?}");
        assert!(
            output.stdout.starts_with("ERROR: upgrade refused: ") && output.stdout.contains(why),
            "{output:#?}"
        );
        assert_eq!(daemon.process_pid("p"), pid, "the program is untouched");
        assert!(daemon.main_log().contains("upgrade refused: "), "logged");
    };
    let fails = executable(&sandbox, "fails.sh", "#!/bin/sh\necho 'not a vigild'\nexit 1\n");
    refused(&["--binary", &fails], "(exit status 1): not a vigild");
    let plain = sandbox.join("plain");
    std::fs::write(&plain, "not executable").expect("write");
    refused(&["--binary", &plain.display().to_string()], "couldn't exec");
    refused(&["--binary", "/nonexistent/vigild"], "/nonexistent/vigild");
    // vigild runs nothing that others than its owner may have changed.
    let open = wrapper(&sandbox, "open.sh", "/bin/sh", "");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    refused(&["--binary", &open], "may be written by others than its owner");
    refused(&["--binary", "vigild"], "absolute path");
    // A vigild that reads another format says so in its pre-flight.
    let other = wrapper(&sandbox, "other.sh", "/bin/sh", "");
    let other_format = executable(
        &sandbox,
        "format2.sh",
        &format!("#!/bin/sh\nexport VIGILD_HANDOVER_FORMAT=2\nexec '{other}' \"$@\"\n"),
    );
    refused(&["--binary", &other_format], "reads handover format 2, not 1");
    // One that passes the pre-flight but then reads another format refuses the
    // state itself, and the running image resumes.
    let late = wrapper(&sandbox, "late.sh", "/bin/sh", "export VIGILD_HANDOVER_FORMAT=2");
    let output = daemon.ctl(&["upgrade", "--binary", &late]);
    assert!(output.stdout.contains("reads handover format 1"), "{output:#?}");
    let log = wait_for(TIMEOUT, "the running image to resume", || {
        let log = daemon.main_log();
        log.contains("live upgrade refused by the new vigild, resumed").then_some(log)
    });
    assert!(log.contains("the handover state is format 1; this vigild reads format 2"), "{log}");
    wait_until(TIMEOUT, "p to be resumed", || daemon.state("p") == "RUNNING");
    assert_eq!(daemon.process_pid("p"), pid);
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
}

#[test]
fn sigusr1_upgrades_to_the_binary_at_vigilds_own_path() {
    let (_sandbox, daemon, pid) = one_program();
    daemon.signal(nix::sys::signal::Signal::SIGUSR1);
    let log = wait_takeovers(&daemon, 1);
    assert!(log.contains("received SIGUSR1 indicating upgrade request"), "{log}");
    assert_eq!(daemon.running_pid("p"), pid);
}

#[test]
fn starting_backoff_and_stopping_finish_their_transitions_on_time_after_an_upgrade() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("starting", &["--sleep", "3600"]).set("startsecs", 3),
        // Fails every start: BACKOFF (1 s, 2 s, 3 s) between four attempts, then FATAL.
        Program::child("backoff", &["--exit", "1"]).set("startsecs", 1).set("startretries", 3),
        Program::child("stopping", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", 3),
    ]);
    let daemon = Arc::new(sandbox.start());
    daemon.running_pid("stopping");
    wait_until(TIMEOUT, "stopping to ignore SIGTERM", || {
        sandbox.read_text("logs/stopping.out").contains("ignoring TERM")
    });
    // The stop waits for the exit; its connection ends with the old image.
    let stopper = {
        let daemon = Arc::clone(&daemon);
        std::thread::spawn(move || daemon.ctl(&["stop", "stopping"]))
    };
    wait_until(TIMEOUT, "STOPPING and BACKOFF", || {
        daemon.state("stopping") == "STOPPING" && daemon.state("backoff") == "BACKOFF"
    });
    let starting_pid = daemon.process_pid("starting");
    assert_eq!(daemon.state("starting"), "STARTING");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);

    daemon.wait_state("starting", "RUNNING");
    daemon.wait_state("backoff", "FATAL");
    daemon.wait_state("stopping", "STOPPED");
    let _ = stopper.join();
    assert_eq!(daemon.process_pid("starting"), starting_pid);
    let log = daemon.main_log();
    let took_over = super::log_times(&log, "took over from")[0];
    // startsecs counted from the spawn, not from the new image.
    let spawned = super::log_times(&log, "spawned: 'starting'")[0];
    let running = super::log_times(&log, "success: starting entered RUNNING")[0];
    assert!((3000..4500).contains(&(running - spawned)), "RUNNING after {} ms", running - spawned);
    // The backoff counter went on: four attempts in all, then FATAL.
    assert_eq!(super::log_times(&log, "spawned: 'backoff'").len(), 4, "{log}");
    assert!(log.contains("gave up: backoff entered FATAL state"), "{log}");
    // stopwaitsecs counted from the stop signal: SIGKILL 3 s after SIGTERM.
    let term = super::log_times(&log, "killing stopping (pid")[0];
    let kill = super::log_times(&log, "killing 'stopping'")[0];
    assert!((3000..4500).contains(&(kill - term)), "SIGKILL after {} ms", kill - term);
    assert!(term < took_over && took_over < kill, "the upgrade came between them");
}

#[test]
fn a_dependency_wait_resumes_after_an_upgrade() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("db", &["--sleep", "3600"]).set("startsecs", 3),
        Program::child("app", &["--sleep", "3600"]).set("startsecs", 0).set("depends_on", "db"),
    ]);
    let daemon = sandbox.start();
    wait_until(TIMEOUT, "app to wait for db", || {
        daemon.state("db") == "STARTING"
            && daemon
                .status_of("app")
                .is_some_and(|(state, what)| state == "STARTING" && what.contains("db"))
    });
    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 1);
    assert!(!log.contains("spawned: 'app'"), "app waited: {log}");
    daemon.wait_state("db", "RUNNING");
    daemon.wait_state("app", "RUNNING");
    let log = daemon.main_log();
    let took_over = super::log_times(&log, "took over from")[0];
    let app = super::log_times(&log, "spawned: 'app'")[0];
    assert!(took_over < app, "app started by the new image once db was up");
}

#[test]
fn tail_f_goes_on_across_an_upgrade_without_repeating_a_line() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("w", &["--count", "60", "0.05"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let daemon = sandbox.start();
    let follower = daemon.follow(&["tail", "-f", "w"]);
    follower.wait_output("the first lines", |out| out.contains("line 000005"));
    upgrade(&daemon, &[]);
    let out = follower.wait_output("the last line", |out| out.contains("line 000060"));
    let lines: Vec<&str> = out.lines().filter(|line| line.starts_with("line ")).collect();
    let first: usize = lines[0]["line ".len()..].parse().expect("numbered");
    let expected: Vec<String> = (first..=60).map(|n| format!("line {n:06}")).collect();
    assert_eq!(lines, expected, "every line once, in order: {out}");
    follower.stop();
}

#[test]
fn calls_made_while_the_new_image_builds_its_tree_get_true_answers() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("p", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("q", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("off", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = Arc::new(sandbox.start());
    let (p, q) = (daemon.running_pid("p"), daemon.running_pid("q"));
    let before = daemon.ctl(&["status"]);
    // The new image serves its listeners, then waits in the gap (its tree not
    // built) until the test writes to the FIFO.
    let fifo = sandbox.join("hold.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let script = wrapper(
        &sandbox,
        "hold.sh",
        "/bin/sh",
        &format!("export VIGILD_HANDOVER_HOLD='{}'", fifo.display()),
    );
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // Reads are answered from the carried records: what was true before.
    let during = daemon.ctl(&["status"]);
    assert_eq!(during.code, before.code, "{during:#?}");
    assert_eq!(during.lines().len(), 3, "{during:#?}");
    for (name, pid) in [("p", p), ("q", q)] {
        let (state, what) = daemon.status_of(name).expect("listed");
        assert_eq!(state, "RUNNING", "{name} in the gap");
        assert!(what.starts_with(&format!("pid {pid}, uptime ")), "{name} in the gap: {what}");
    }
    assert_eq!(daemon.state("off"), "STOPPED");
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
    // A stop is held until the tree is up, not refused.
    let stopper = {
        let daemon = Arc::clone(&daemon);
        std::thread::spawn(move || daemon.ctl(&["stop", "p"]))
    };
    wait_until(TIMEOUT, "the stop to wait for the tree", || {
        daemon.main_log().contains("a control call waits for the supervision tree")
    });
    assert!(!stopper.is_finished(), "the stop was answered before the tree existed");
    assert_eq!(daemon.status_of("p").map(|(state, _)| state).as_deref(), Some("RUNNING"));
    assert!(proc::exists(p), "nothing acted on p in the gap");
    std::fs::write(&fifo, "go\n").expect("release the gap");
    drop(guard);
    let stopped = stopper.join().expect("stop");
    assert_eq!(stopped.code, 0, "{stopped:#?}");
    assert_eq!(stopped.stdout.trim(), "p: stopped", "{stopped:#?}");
    wait_takeovers(&daemon, 1);
    assert_eq!(daemon.state("p"), "STOPPED");
    wait_until(TIMEOUT, "p's child to be gone", || !proc::exists(p));
    assert_eq!(daemon.running_pid("q"), q, "q carried on");
    daemon.ctl(&["start", "off"]).expect_code(0);
}

/// Writes to the FIFO when dropped, so a failing test never leaves the new
/// image held in the gap.
fn release_on_panic(fifo: &std::path::Path) -> impl Drop + '_ {
    struct Release<'a>(&'a std::path::Path);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                // Non-blocking: nobody may be reading any more.
                use std::os::unix::fs::OpenOptionsExt as _;
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(self.0);
            }
        }
    }
    Release(fifo)
}
