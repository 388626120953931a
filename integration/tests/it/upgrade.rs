//! Live upgrade (`vigilctl upgrade`, SIGUSR1): vigild executes a binary in its
//! own place, same pid, and every program carries on: pids, uptimes, restart
//! counts, every byte of output, an exit during the gap, the control socket.
//! The "new" binary is this build's vigild, reached directly or through a
//! shell wrapper that acts in the gap between the two images. The wrapper is
//! the same pid and runs builtins only (a child of the shell would make it
//! wait and collect vigild's children too); a child of vigild that dies in
//! the gap is killed by the test helper, which collects nothing, since a
//! shell collects its dead children even without waiting for any.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;
use vigil_integration::procfs as proc;
use vigil_integration::{Daemon, Program, Sandbox, TIMEOUT, vigild_bin, wait_for, wait_until};

/// The handover format this build reads (`vigild --handover-check`).
const FORMAT: u32 = 11;

/// `pid`'s pidfds, as (descriptor, the pid it names).
fn pidfds(pid: i32) -> BTreeSet<(u32, i32)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("its descriptors");
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|to| to.as_os_str() == "anon_inode:[pidfd]")
        })
        .filter_map(|fd| {
            let number: u32 = fd.file_name().to_str()?.parse().ok()?;
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{number}")).ok()?;
            let named = info.lines().find_map(|line| line.strip_prefix("Pid:"))?;
            Some((number, named.trim().parse().ok()?))
        })
        .collect()
}

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
        lines[0].starts_with("vigild ")
            && lines[0].ends_with(&format!("reads handover format {FORMAT}")),
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

    let pidfds_before = pidfds(daemon.pid());
    assert_eq!(pidfds_before.len(), 101, "a pidfd per running child: {pidfds_before:?}");

    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 1);
    assert!(log.contains("resuming 102 processes handed over by the previous image"), "{log}");
    // The children are watched through the very pidfds the old image had.
    assert_eq!(pidfds(daemon.pid()), pidfds_before);

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
    // The process that freed the old image is gone and reaped: vigild's
    // children are its programs, and none is a zombie.
    let programs: BTreeSet<i32> = after
        .values()
        .filter_map(|p| p["pid"].as_i64().and_then(|pid| i32::try_from(pid).ok()))
        .filter(|pid| *pid > 0)
        .collect();
    assert_eq!(programs.len(), 101);
    wait_until(TIMEOUT, "vigild's only children to be its programs", || {
        daemon.children().into_iter().collect::<BTreeSet<_>>() == programs
    });
    // The same after two upgrades in a row: a helper the first new image
    // has not reaped yet is named to the next.
    upgrade(&daemon, &[]);
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 3);
    wait_until(TIMEOUT, "vigild's only children to be its programs after three upgrades", || {
        daemon.children().into_iter().collect::<BTreeSet<_>>() == programs
    });
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
    let next = FORMAT + 1;
    let other_format = executable(
        &sandbox,
        "format.sh",
        &format!("#!/bin/sh\nexport VIGILD_HANDOVER_FORMAT={next}\nexec '{other}' \"$@\"\n"),
    );
    refused(&["--binary", &other_format], &format!("reads handover format {next}, not {FORMAT}"));
    // One that passes the pre-flight but then reads another format refuses the
    // state itself, and the running image resumes.
    let late =
        wrapper(&sandbox, "late.sh", "/bin/sh", &format!("export VIGILD_HANDOVER_FORMAT={next}"));
    let output = daemon.ctl(&["upgrade", "--binary", &late]);
    assert!(output.stdout.contains(&format!("reads handover format {FORMAT}")), "{output:#?}");
    let log = wait_for(TIMEOUT, "the running image to resume", || {
        let log = daemon.main_log();
        log.contains("live upgrade refused by the new vigild, resumed").then_some(log)
    });
    let why = format!("the handover state is format {FORMAT}; this vigild reads format {next}");
    assert!(log.contains(&why), "{log}");
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
    // The follower's connection closed once its call was answered; the old
    // image did not wait out the drain for it.
    let log = daemon.main_log();
    assert!(!log.contains("control connections still open after"), "{log}");
}

/// An event listener in Python: records each event's serials and payload as
/// a JSON line in `argv[1]` before it answers `OK`, and takes 50 ms per
/// event, so events queue while an upgrade happens.
const COUNTING_LISTENER: &str = r#"import json, sys, time
record = open(sys.argv[1], 'a')
while True:
    sys.stdout.write('READY\n')
    sys.stdout.flush()
    header = sys.stdin.readline()
    if not header:
        break
    tokens = dict(token.split(':', 1) for token in header.split())
    payload = sys.stdin.read(int(tokens['len']))
    time.sleep(0.05)
    event = {'serial': int(tokens['serial']), 'poolserial': int(tokens['poolserial']),
             'payload': payload}
    record.write(json.dumps(event) + '\n')
    record.flush()
    sys.stdout.write('RESULT 2\nOK')
    sys.stdout.flush()
"#;

/// The events the counting listener recorded: (serial, pool serial, the
/// logged data the payload carries).
fn counted(sandbox: &Sandbox) -> Vec<(u64, u64, String)> {
    let text = std::fs::read_to_string(sandbox.join("counted.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|event| {
            let payload = event["payload"].as_str().expect("payload");
            let data = payload.split_once('\n').map_or("", |(_, data)| data);
            (
                event["serial"].as_u64().expect("serial"),
                event["poolserial"].as_u64().expect("poolserial"),
                data.to_owned(),
            )
        })
        .collect()
}

#[test]
fn an_event_listener_pool_goes_on_across_upgrades_without_a_gap_or_a_duplicate() {
    const LINES: usize = 150;
    let sandbox = Sandbox::new();
    let script = sandbox.join("counter.py");
    std::fs::write(&script, COUNTING_LISTENER).expect("write the listener");
    // One PROCESS_LOG_STDOUT event per line (20 ms apart), more than the
    // listener takes (50 ms each): the queue grows while it writes.
    let writer = Program::child("w", &["--count", &LINES.to_string(), "0.02"])
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_events_enabled", "true");
    let listener = format!(
        "[eventlistener:counter]\ncommand=python3 {} {}\nevents=PROCESS_LOG_STDOUT\n\
         buffer_size=1000\nstartsecs=0\nstderr_logfile={}\n",
        script.display(),
        sandbox.join("counted.jsonl").display(),
        sandbox.stderr_log("counter").display(),
    );
    sandbox.write_config_text(&format!("{}{listener}", sandbox.programs_text(&[writer])));
    let daemon = sandbox.start();
    let listener_pid = daemon.running_pid("counter");
    wait_until(TIMEOUT, "the listener to count some events", || counted(&sandbox).len() >= 5);
    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 1);
    let handed: Vec<&str> =
        log.lines().filter(|line| line.contains("handing over event listener pool")).collect();
    assert_eq!(handed.len(), 1, "{log}");
    assert!(!handed[0].contains(": 0 events queued, 0 in flight"), "events were pending: {log}");
    wait_until(TIMEOUT, "a few more events", || counted(&sandbox).len() >= 20);
    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 2);
    // The listener is BUSY all but a moment (the queue is never empty): an
    // event was in flight at some handover, and its answer reached the new
    // image (below: counted once, and never sent again).
    assert!(
        log.lines().any(|line| line.contains("handing over event listener pool")
            && line.ends_with(", 1 in flight")),
        "{log}"
    );
    let events = wait_for(TIMEOUT, "every line counted", || {
        let events = counted(&sandbox);
        events
            .iter()
            .any(|(_, _, data)| data.contains(&format!("line {LINES:06}")))
            .then_some(events)
    });
    assert_eq!(daemon.running_pid("counter"), listener_pid, "the same listener throughout");
    for pair in events.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "serials without a gap or a repeat: {events:?}");
        assert_eq!(pair[1].1, pair[0].1 + 1, "pool serials likewise: {events:?}");
    }
    let data: String = events.iter().map(|(_, _, data)| data.as_str()).collect();
    let expected: String = (1..=LINES).map(|n| format!("line {n:06}\n")).collect();
    assert_eq!(data, expected, "every line once, in order");
    let log = daemon.main_log();
    assert!(!log.contains("re-buffering"), "no event was sent again: {log}");
}

#[test]
fn fcgi_children_keep_their_shared_socket_across_an_upgrade() {
    use std::io::Read as _;
    let sandbox = Sandbox::new();
    let port = super::control::free_port();
    let body = format!(
        "[fcgi-program:web]\ncommand={} --accept-stdin\nsocket=tcp://127.0.0.1:{port}\n\
         process_name=%(program_name)s_%(process_num)s\nnumprocs=2\nstartsecs=0\n\
         stdout_logfile={dir}/logs/%(process_num)s.out\nstderr_logfile={dir}/logs/%(process_num)s.err\n",
        vigil_integration::child_bin().display(),
        dir = sandbox.path().display(),
    );
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();
    // Connections until every pid in `pids` answered.
    let answered_by = |pids: &[i32]| {
        let mut seen = std::collections::BTreeSet::new();
        wait_until(TIMEOUT, "every child to answer on the shared socket", || {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            seen.extend(answer.trim().strip_prefix("pid=").and_then(|pid| pid.parse::<i32>().ok()));
            pids.iter().all(|pid| seen.contains(pid))
        });
    };
    let before = [daemon.running_pid("web:web_0"), daemon.running_pid("web:web_1")];
    answered_by(&before);

    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    // Logged while the new image builds its tree, which it may still be doing.
    let kept = format!("kept socket tcp://127.0.0.1:{port} for fcgi group 'web'");
    wait_until(TIMEOUT, "the fcgi socket to be kept", || daemon.main_log().contains(&kept));
    assert_eq!([daemon.process_pid("web:web_0"), daemon.process_pid("web:web_1")], before);
    answered_by(&before);
    // A new child gets the same socket (binding another would fail: the
    // carried children listen on the port).
    daemon.ctl(&["restart", "web:web_0"]).expect_code(0);
    let restarted = daemon.running_pid("web:web_0");
    assert_ne!(restarted, before[0]);
    answered_by(&[restarted, before[1]]);
    // The daemon's copy goes with the last child, adopted ones included.
    daemon.ctl(&["stop", "all"]).expect_code(0);
    wait_until(TIMEOUT, "the socket to close after the last child", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

#[test]
fn bytes_queued_for_a_stdin_nobody_reads_refuse_the_upgrade() {
    let sandbox = Sandbox::new();
    let (program, go) = super::stdin::deaf(&sandbox);
    sandbox.write_config(&[program]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("deaf");
    // Twice the pipe's 64 KiB: the rest waits in the daemon's queue.
    const CHUNK: usize = 64 * 1024;
    for letter in ["a", "b"] {
        let answer = super::stdin::send_stdin(&sandbox, "deaf", &letter.repeat(CHUNK));
        assert!(answer.contains("<boolean>1</boolean>"), "{answer}");
    }
    let output = daemon.ctl(&["upgrade"]);
    assert_ne!(output.code, 0, "{output:#?}");
    assert!(
        output.stdout.starts_with("ERROR: upgrade refused: deaf has ")
            && output.stdout.contains("bytes queued for its stdin that it has not read yet"),
        "{output:#?}"
    );
    assert_eq!(daemon.process_pid("deaf"), pid, "nothing changed");
    // Once it has read them, the upgrade goes through and every byte arrived.
    std::fs::write(&go, "").expect("create go");
    wait_until(TIMEOUT, "deaf to read its stdin", || {
        std::fs::metadata(sandbox.stdout_log("deaf")).is_ok_and(|m| m.len() == 2 * CHUNK as u64)
    });
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    assert_eq!(daemon.running_pid("deaf"), pid);
}

#[test]
fn probes_keep_their_verdict_and_their_count_across_an_upgrade() {
    // Two ports nobody listens on, distinct: both bound at once, then let go.
    let bound: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port"))
        .collect();
    let port = |i: usize| bound[i].local_addr().expect("local addr").port();
    let (open, closed) = (port(0), port(1));
    drop(bound);
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        // Healthy once ready; its next liveness check is a minute away, so a
        // verdict shown right after the upgrade is the carried one.
        Program::child("ok", &["--listen-tcp", &open.to_string(), "--sleep", "3600"])
            .set("ready_tcp", format!("127.0.0.1:{open}"))
            .set("ready_period", "100ms")
            .set("live_tcp", format!("127.0.0.1:{open}"))
            .set("live_period", "60s"),
        // Fails every liveness check: restarted at the third in a row.
        Program::child("failing", &["--sleep", "3600"])
            .set("startsecs", 0)
            .set("live_tcp", format!("127.0.0.1:{closed}"))
            .set("live_period", "3s")
            .set("live_initial_delay", "0s")
            .set("live_failure_threshold", 3),
    ]);
    let daemon = sandbox.start();
    let healthy = vigil_integration::try_wait_until(TIMEOUT, || {
        daemon
            .status_of("ok")
            .is_some_and(|(state, what)| state == "RUNNING" && what.ends_with(", healthy"))
    });
    assert!(healthy, "ok is not healthy: {:?}\n{}", daemon.status_of("ok"), daemon.diagnostics());
    let failing = daemon.running_pid("failing");
    wait_until(TIMEOUT, "two failed liveness checks", || {
        daemon.main_log().contains("liveness probe failed (2 in a row)")
    });
    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 1);
    let (_, ok) = daemon.status_of("ok").expect("ok");
    assert!(ok.ends_with(", healthy"), "the verdict carried over: {ok}");
    let (_, unwell) = daemon.status_of("failing").expect("failing");
    assert!(unwell.ends_with(", unhealthy"), "the verdict carried over: {unwell}");
    assert!(!log.contains("liveness probe failed (3 in a row)"), "the upgrade came first: {log}");
    let restarted = wait_for(TIMEOUT, "failing to be restarted", || {
        let pid = daemon.running_pid("failing");
        (pid != failing).then_some(pid)
    });
    assert_ne!(restarted, failing);
    let log = daemon.main_log();
    let took_over = super::log_times(&log, "took over from")[0];
    let after: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("liveness probe failed ("))
        .filter(|line| super::log_time_ms(line).is_some_and(|at| at > took_over))
        .collect();
    assert!(after[0].contains("(3 in a row)"), "the count went on: {after:#?}");
}

/// `curl` reading `url` over the daemon's UNIX socket into `<name>.body`, with
/// the response head in `<name>.head`; killed by pid when dropped.
struct Curl {
    child: std::process::Child,
    body: std::path::PathBuf,
    head: std::path::PathBuf,
}

impl Curl {
    fn get(sandbox: &Sandbox, name: &str, url: &str) -> Curl {
        let (body, head) =
            (sandbox.join(format!("{name}.body")), sandbox.join(format!("{name}.head")));
        let child = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--no-buffer", "--unix-socket"])
            .arg(sandbox.socket())
            .arg("--dump-header")
            .arg(&head)
            .arg("--output")
            .arg(&body)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run curl (scripts/test installs it)");
        Curl { child, body, head }
    }

    fn body(&self) -> String {
        std::fs::read_to_string(&self.body).unwrap_or_default()
    }

    /// The response's `X-Log-Offset`.
    fn log_offset(&self) -> u64 {
        let head = std::fs::read_to_string(&self.head).expect("the response head");
        head.lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("x-log-offset").then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no X-Log-Offset in {head:?}"))
    }
}

impl Drop for Curl {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = vigil_integration::wait_timeout(&mut self.child, TIMEOUT);
    }
}

#[test]
fn a_logtail_stream_ends_cleanly_at_an_upgrade_and_goes_on_from_its_offset() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("w", &["--count", "100", "0.05"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let daemon = sandbox.start();
    let mut first = Curl::get(&sandbox, "first", "http://localhost/logtail/w");
    // The dashboard's event stream, a long poll, ends the same way.
    let mut feed = Curl::get(&sandbox, "feed", "http://localhost/ui/events");
    wait_until(TIMEOUT, "the first lines", || first.body().contains("line 000010\n"));
    wait_until(TIMEOUT, "the first event", || feed.body().contains("event: facts\n"));
    upgrade(&daemon, &[]);
    // curl exits 0 only for a complete response: with a chunked body, its last
    // chunk (a cut connection is exit 18, "transfer closed with outstanding
    // read data remaining").
    for curl in [&mut first, &mut feed] {
        let status = vigil_integration::wait_timeout(&mut curl.child, TIMEOUT)
            .expect("the stream ends at the upgrade");
        assert!(status.success(), "curl saw an incomplete response: {status}");
    }
    wait_takeovers(&daemon, 1);
    let got = first.body();
    let resume_at = first.log_offset() + got.len() as u64;
    let second =
        Curl::get(&sandbox, "second", &format!("http://localhost/logtail/w?offset={resume_at}"));
    wait_until(TIMEOUT, "the last line", || second.body().contains("line 000100\n"));
    assert_eq!(second.log_offset(), resume_at);
    let both = format!("{got}{}", second.body());
    // The first response starts 1 KiB before the end of the log, maybe mid-line.
    let (_, whole) = both.split_once('\n').expect("a line");
    let lines: Vec<&str> = whole.lines().collect();
    let from: usize = lines[0]["line ".len()..].parse().expect("numbered");
    let expected: Vec<String> = (from..=100).map(|n| format!("line {n:06}")).collect();
    assert_eq!(lines, expected, "every line once, in order, across the two responses");
    // The new image serves the same offsets: the log read back from the start
    // of the first response is what the two responses carried.
    let log = std::fs::read(sandbox.stdout_log("w")).expect("log");
    let start = usize::try_from(first.log_offset()).expect("small");
    assert_eq!(&log[start..start + both.len()], both.as_bytes());
}

/// `unshare --pid --fork --mount-proc vigild -n -c CONFIG`: vigild as PID 1
/// of a new pid namespace, as in a container. Dropping it SIGKILLs vigild by
/// its pid outside the namespace (the kernel then kills everything in the
/// namespace) and collects `unshare`.
struct PidNamespace {
    unshare: std::process::Child,
    /// vigild's pid as this test sees it.
    vigild: i32,
}

impl PidNamespace {
    /// `None`, with the reason printed, where pid namespaces are not permitted.
    fn start(sandbox: &Sandbox) -> Option<PidNamespace> {
        use std::os::unix::process::CommandExt as _;
        let namespace = ["--pid", "--fork", "--mount-proc"];
        let mut probe = std::process::Command::new("unshare");
        probe.args(namespace).arg("true");
        let probe = vigil_integration::run(&mut probe, TIMEOUT);
        if probe.code != 0 {
            let why = probe.stderr.trim();
            println!("skipped: `unshare --pid --fork --mount-proc` is not permitted here: {why}");
            return None;
        }
        let output = |name: &str| std::fs::File::create(sandbox.join(name)).expect("output file");
        let unshare = std::process::Command::new("unshare")
            .args(namespace)
            .arg(vigild_bin())
            .arg("-n")
            .arg("-c")
            .arg(sandbox.config_path())
            .current_dir(sandbox.path())
            .stdin(std::process::Stdio::null())
            .stdout(output("vigild.stdout"))
            .stderr(output("vigild.stderr"))
            .process_group(0)
            .spawn()
            .expect("run unshare");
        let unshare_pid = i32::try_from(unshare.id()).expect("pid fits i32");
        let mut started = PidNamespace { unshare, vigild: 0 };
        started.vigild = wait_for(TIMEOUT, "unshare to start vigild", || {
            proc::children(unshare_pid).first().copied()
        });
        wait_until(TIMEOUT, "vigild to answer as PID 1", || {
            sandbox.ctl(&["pid"]).stdout.trim() == "1"
        });
        Some(started)
    }
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        if self.vigild > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.vigild),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = vigil_integration::wait_timeout(&mut self.unshare, TIMEOUT);
    }
}

#[test]
fn as_pid_1_of_a_pid_namespace_vigild_upgrades_keeping_pids_and_reaping_orphans() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: a new pid namespace needs root here");
        return;
    }
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("p", &["--sleep", "3600"]).set("startsecs", 0),
        // Leaves a grandchild in a session of its own, which outlives it by
        // a few seconds: an orphan, which the kernel gives to PID 1.
        Program::child("parent", &["--setsid-grandchild", "6"])
            .set("startsecs", 0)
            .set("autorestart", "false"),
    ]);
    let Some(mut namespace) = PidNamespace::start(&sandbox) else { return };
    let vigild = namespace.vigild;
    let status = |name: &str| {
        let output = sandbox.ctl(&["status", "--json"]);
        let document: Value = serde_json::from_str(output.stdout.trim()).expect("status --json");
        let entry =
            document["result"].as_array().expect("result").iter().find(|e| e["name"] == name);
        entry.cloned().unwrap_or_else(|| panic!("no {name} in {document}"))
    };
    let p = wait_for(TIMEOUT, "p RUNNING", || {
        let entry = status("p");
        (entry["statename"] == "RUNNING").then(|| entry["pid"].as_i64().expect("pid"))
    });
    // Seen from here, each program is a child of vigild (namespace pids differ).
    let p_here = wait_for(TIMEOUT, "p as vigild's child", || {
        proc::children(vigild).into_iter().find(|pid| proc::cmdline(*pid).contains("--sleep"))
    });
    wait_until(TIMEOUT, "parent to exit", || status("parent")["statename"] == "EXITED");
    let orphan = wait_for(TIMEOUT, "the orphan to be vigild's child", || {
        let children = proc::children(vigild);
        children.into_iter().find(|pid| proc::cmdline(*pid).contains("--setsid-grandchild"))
    });

    let output = sandbox.ctl(&["upgrade"]);
    assert_eq!(output.code, 0, "{output:#?}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(output.lines()[1], format!("Upgraded: vigild {version} (pid 1)"), "{output:#?}");
    wait_until(TIMEOUT, "the new image to take over", || {
        std::fs::read_to_string(sandbox.main_log())
            .is_ok_and(|log| log.matches("(live upgrade)\n").count() >= 2)
    });
    assert!(proc::alive(orphan), "the orphan outlived the old image");
    assert_eq!(sandbox.ctl(&["pid"]).stdout.trim(), "1");
    assert_eq!(status("p")["pid"].as_i64(), Some(p), "p kept its pid");
    assert_eq!(proc::stat(p_here).expect("p").ppid, vigild, "p is still vigild's child");
    // The new image, PID 1, collects the orphan when it exits: no zombie.
    wait_until(TIMEOUT, "the orphan to be reaped", || !proc::exists(orphan));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(vigild), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM vigild");
    let exit = vigil_integration::wait_timeout(&mut namespace.unshare, TIMEOUT)
        .expect("vigild shuts down");
    assert!(exit.success(), "vigild as PID 1 exited with {exit}");
    namespace.vigild = 0;
}

#[test]
fn a_ready_notify_program_starting_at_the_upgrade_becomes_running_without_a_restart() {
    let sandbox = Sandbox::new();
    let (late, early) = (sandbox.join("go-late"), sandbox.join("go-early"));
    let notifier = |name: &str, go: &std::path::Path| {
        let go = go.to_str().expect("utf-8 path");
        Program::child(name, &["--wait-file", go, "--notify-ready", "--sleep", "3600"])
            .set("ready_notify", "true")
    };
    // `late` sends READY=1 to the new image; `early` around the handover.
    sandbox.write_config(&[notifier("late", &late), notifier("early", &early)]);
    let daemon = sandbox.start();
    daemon.wait_state("late", "STARTING");
    daemon.wait_state("early", "STARTING");
    let pids = [daemon.process_pid("late"), daemon.process_pid("early")];
    std::fs::write(&early, "").expect("go file");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    std::fs::write(&late, "").expect("go file");
    daemon.wait_state("late", "RUNNING");
    daemon.wait_state("early", "RUNNING");
    assert_eq!([daemon.process_pid("late"), daemon.process_pid("early")], pids);
    let log = daemon.main_log();
    for name in ["late", "early"] {
        assert_eq!(log.matches(&format!("spawned: '{name}'")).count(), 1, "{log}");
    }
}

#[test]
fn an_upgrade_applies_changed_control_socket_settings() {
    let (sandbox, daemon, pid) = one_program();
    let old = sandbox.join("vigil.sock");
    let moved = sandbox.join("moved.sock");
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let config = config
        .replace("[unix_http_server]\n", "[unix_http_server]\nchmod=0700\n")
        .replace(&old.display().to_string(), &moved.display().to_string());
    std::fs::write(sandbox.config_path(), config).expect("write config");
    // `reload` leaves the sockets alone; the upgrade is asked on the old one.
    let url = format!("unix://{}", old.display());
    let output = daemon.ctl(&["-s", &url, "upgrade"]);
    // The new image serves the inherited socket from the moment it has read
    // its state until its config has moved it: the confirmation comes from
    // there, or finds the socket already gone.
    assert!(output.stdout.contains("reads handover format"), "{output:#?}");
    assert!(
        output.stdout.contains("Upgraded: vigild")
            || output.stdout.contains("no vigild answers at"),
        "{output:#?}"
    );
    let log = wait_takeovers(&daemon, 1);
    assert!(log.contains("the control socket moved from"), "{log}");
    assert!(!old.exists(), "the old socket file is removed");
    let mode = std::fs::symlink_metadata(&moved).expect("the new socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(daemon.process_pid("p"), pid, "the program was not touched");
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
    // A program added to the file meanwhile: the new image starts it once
    // its tree is up.
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let late = Program::child("late", &["--sleep", "3600"]).set("startsecs", 0);
    std::fs::write(sandbox.config_path(), config + &sandbox.programs_text(&[late]))
        .expect("add a program");
    // The new image serves its listeners as soon as it has read the state,
    // then waits in the gap (before it loads its config) until the test
    // writes to the FIFO.
    let (fifo, script) = holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // Reads are answered from the carried records: what was true before.
    let during = daemon.ctl(&["status"]);
    assert!(!daemon.main_log().contains("took over from"), "the config is not loaded yet");
    assert_eq!(during.code, before.code, "{during:#?}");
    assert_eq!(during.lines().len(), 3, "{during:#?}");
    for (name, pid) in [("p", p), ("q", q)] {
        let (state, what) = daemon.status_of(name).expect("listed");
        assert_eq!(state, "RUNNING", "{name} in the gap");
        assert!(what.starts_with(&format!("pid {pid}, uptime ")), "{name} in the gap: {what}");
    }
    assert_eq!(daemon.state("off"), "STOPPED");
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
    // A stop sent in the gap is held until the tree is up, not refused: the
    // whole request is in the connection before the gap ends, and no answer
    // comes while it lasts.
    let mut stopper = send_stop(&sandbox, "p");
    assert_unanswered(&mut stopper);
    assert_eq!(daemon.status_of("p").map(|(state, _)| state).as_deref(), Some("RUNNING"));
    assert!(proc::exists(p), "nothing acted on p in the gap");
    assert!(!daemon.main_log().contains("took over from"), "still in the gap");
    std::fs::write(&fifo, "go\n").expect("release the gap");
    drop(guard);
    let answer = answer_once_up(stopper);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<boolean>1</boolean>"), "{answer}");
    wait_takeovers(&daemon, 1);
    assert_eq!(daemon.state("p"), "STOPPED");
    wait_until(TIMEOUT, "p's child to be gone", || !proc::exists(p));
    assert_eq!(daemon.running_pid("q"), q, "q carried on");
    daemon.wait_state("late", "RUNNING");
    daemon.ctl(&["start", "off"]).expect_code(0);
}

#[test]
fn the_new_image_takes_the_config_its_pre_flight_loaded_unless_the_file_changed_since() {
    let (sandbox, daemon, pid) = one_program();
    upgrade(&daemon, &[]);
    let log = wait_takeovers(&daemon, 1);
    assert!(log.contains("the configuration is the one the pre-flight run of this binary loaded"));
    // Edited after the pre-flight (here, while the new image waits in the
    // gap): the new image loads the file, and runs what it says now.
    let (fifo, script) = holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let late = Program::child("late", &["--sleep", "3600"]).set("startsecs", 0);
    std::fs::write(sandbox.config_path(), config + &sandbox.programs_text(&[late]))
        .expect("add a program");
    std::fs::write(&fifo, "go\n").expect("release the gap");
    drop(guard);
    let log = wait_takeovers(&daemon, 2);
    let reloaded = "loaded the configuration again rather than take the pre-flight's: ";
    let why = log.split(reloaded).nth(1).and_then(|rest| rest.lines().next());
    let config_path = sandbox.config_path().display().to_string();
    assert_eq!(why, Some(format!("{config_path} changed since").as_str()), "{log}");
    daemon.wait_state("late", "RUNNING");
    assert_eq!(daemon.running_pid("p"), pid, "p carried on");
}

/// A FIFO and a wrapper of this build's vigild whose new image, once its
/// config has loaded, resumes only the groups a call names until the test
/// writes to the FIFO (see `VIGILD_RESUME_HOLD`).
fn resume_holding_wrapper(sandbox: &Sandbox) -> (std::path::PathBuf, String) {
    fifo_wrapper(sandbox, "resume", "VIGILD_RESUME_HOLD")
}

/// `vigilctl stop NAME` answered while the resume is held, and NAME's child
/// (`pid`) gone.
fn stop_at_once(daemon: &Daemon, name: &str, pid: i32) {
    let stopped = daemon.ctl(&["stop", name]);
    let expected = format!("{name}: stopped");
    assert_eq!((stopped.code, stopped.stdout.trim()), (0, expected.as_str()), "{stopped:#?}");
    wait_until(TIMEOUT, "the stopped child to be gone", || !proc::exists(pid));
}

/// Sends XML-RPC `stopProcess(NAME)` and leaves its answer to be read.
fn send_stop(sandbox: &Sandbox, name: &str) -> std::os::unix::net::UnixStream {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.stopProcess</methodName>\
         <params><param><value><string>{name}</string></value></param></params></methodCall>"
    );
    super::stdin::xmlrpc_send(sandbox, &body)
}

/// Nothing has been answered on `stream` yet.
fn assert_unanswered(stream: &mut std::os::unix::net::UnixStream) {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut answer = Vec::new();
    let early = stream.read_to_end(&mut answer);
    assert_eq!(early.map_err(|e| e.kind()), Err(std::io::ErrorKind::WouldBlock), "{answer:?}");
    stream.set_nonblocking(false).expect("blocking");
}

/// The whole answer on `stream`, which comes once the tree is up.
fn answer_once_up(mut stream: std::os::unix::net::UnixStream) -> String {
    stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the stop is answered once the tree is up");
    String::from_utf8_lossy(&answer).into_owned()
}

/// What the tree logs once every group of a start or a resume is in.
const TREE_BUILT: &str = "started the actors of every group";

#[test]
fn a_call_naming_a_program_is_answered_before_the_rest_of_the_tree_is_back() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("a", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("b", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("c", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    let (a, b, c) = (daemon.running_pid("a"), daemon.running_pid("b"), daemon.running_pid("c"));
    assert_eq!(daemon.main_log().matches(TREE_BUILT).count(), 1);
    let (fifo, script) = resume_holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // The new image resumes c alone, first, for the stop; a and b wait.
    stop_at_once(&daemon, "c", c);
    // Reads show the stop at once: c is answered from the tree, the others
    // from the carried records.
    assert_eq!(daemon.state("c"), "STOPPED");
    let (state, what) = daemon.status_of("a").expect("a listed");
    assert_eq!(state, "RUNNING");
    assert!(what.starts_with(&format!("pid {a}, uptime ")), "{what}");
    let signalled = daemon.ctl(&["signal", "CONT", "b"]);
    assert_eq!(signalled.code, 0, "{signalled:#?}");
    assert_eq!(daemon.main_log().matches(TREE_BUILT).count(), 1, "the rest is still held");
    assert!(release_now(&fifo), "the resume was held");
    drop(guard);
    wait_takeovers(&daemon, 1);
    wait_until(TIMEOUT, "the whole tree back", || {
        daemon.main_log().matches(TREE_BUILT).count() == 2
    });
    assert_eq!(daemon.state("c"), "STOPPED");
    assert_eq!((daemon.running_pid("a"), daemon.running_pid("b")), (a, b), "a and b carried on");
    daemon.ctl(&["start", "c"]).expect_code(0);
    daemon.wait_state("c", "RUNNING");
}

#[test]
fn with_depends_on_only_a_call_naming_what_it_ties_waits_for_the_whole_tree() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("db", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("web", &["--sleep", "3600"]).set("startsecs", 0).set("depends_on", "db"),
        Program::child("c", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    daemon.wait_state("web", "RUNNING");
    let (db, c) = (daemon.running_pid("db"), daemon.running_pid("c"));
    let (fifo, script) = resume_holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // c has no dependency either way: its stop runs at once.
    stop_at_once(&daemon, "c", c);
    // Stopping db reaches web, which depends on it, and only the whole tree
    // knows web: the stop waits for it.
    let mut stopper = send_stop(&sandbox, "db");
    // A read answered after the stop was sent: the stop is still held.
    assert_eq!(daemon.state("db"), "RUNNING");
    assert_unanswered(&mut stopper);
    assert!(proc::exists(db), "nothing acted on db yet");
    assert_eq!(daemon.main_log().matches(TREE_BUILT).count(), 1, "the rest is still held");
    assert!(release_now(&fifo), "the resume was held");
    drop(guard);
    let answer = answer_once_up(stopper);
    assert!(answer.contains("<boolean>1</boolean>"), "{answer}");
    assert_eq!(daemon.state("db"), "STOPPED");
    // web was stopped first and waits for db again.
    daemon.wait_state("web", "STARTING");
}

/// A FIFO and a wrapper of this build's vigild that holds the new image in
/// the gap (its listeners served from the carried state, before it loads
/// its config; see `VIGILD_HANDOVER_HOLD`) until the test writes to the FIFO.
fn holding_wrapper(sandbox: &Sandbox) -> (std::path::PathBuf, String) {
    fifo_wrapper(sandbox, "hold", "VIGILD_HANDOVER_HOLD")
}

/// The FIFO `STEM.fifo` and a wrapper `STEM.sh` of this build's vigild that
/// exports `variable` naming it.
fn fifo_wrapper(sandbox: &Sandbox, stem: &str, variable: &str) -> (std::path::PathBuf, String) {
    let fifo = sandbox.join(format!("{stem}.fifo"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let body = format!("export {variable}='{}'", fifo.display());
    let script = wrapper(sandbox, &format!("{stem}.sh"), "/bin/sh", &body);
    (fifo, script)
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

/// Releases the image the FIFO holds if one has it open for reading (a
/// write would wait for a reader that may never come).
fn release_now(fifo: &std::path::Path) -> bool {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let opened = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo);
    opened.and_then(|mut writer| writer.write_all(b"go\n")).is_ok()
}

/// Whether `signal` is pending for the whole process `pid` (`ShdPnd`).
fn pending(pid: i32, signal: nix::sys::signal::Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("ShdPnd:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal as i32 - 1)) != 0)
}

#[test]
fn a_sigterm_sent_in_the_gap_waits_for_the_new_image_and_stops_every_program() {
    let (sandbox, mut daemon, pid) = one_program();
    // The new image waits in the gap, before its signal handlers exist,
    // until the test writes to the FIFO.
    let (fifo, script) = holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    // Blocked across `execve`: pending, not acted on by its default action.
    wait_until(TIMEOUT, "SIGTERM pending for vigild", || {
        pending(daemon.pid(), nix::sys::signal::Signal::SIGTERM)
    });
    assert!(proc::alive(daemon.pid()), "vigild survived the SIGTERM in the gap");
    assert!(proc::alive(pid), "p runs on");
    std::fs::write(&fifo, "go\n").expect("release the gap");
    drop(guard);
    // The new image acts on it: an ordered shutdown, p stopped first.
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    assert!(!proc::exists(pid), "p was stopped, not left behind");
    let log = daemon.main_log();
    assert!(log.contains("took over from"), "{log}");
    assert!(log.contains("received SIGTERM indicating exit request"), "{log}");
    assert!(log.contains("stopped: p (terminated by SIGTERM)"), "{log}");
}

/// With the new image held in the gap: breaks the file it is about to load
/// and kills p's child (`pid`), which waits as a zombie; then releases the new
/// image and waits for its refusal. The file's text before.
fn break_the_gap(sandbox: &Sandbox, daemon: &Daemon, pid: i32, fifo: &std::path::Path) -> String {
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let broken = format!("{config}[program:bad]\ncommand=/bin/true\nstartsecs=x\n");
    std::fs::write(sandbox.config_path(), broken).expect("break the config");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("kill p's child");
    wait_until(TIMEOUT, "p's child to wait, a zombie", || proc::zombie(pid));
    std::fs::write(fifo, "go\n").expect("release the new image");
    // It refuses and executes the old image again, which the FIFO holds too
    // (it has a state to read).
    wait_until(TIMEOUT, "the new image to refuse", || {
        daemon.diagnostics().contains("live upgrade refused: the configuration does not load")
    });
    config
}

/// The old image resumed: it reaped the exit of the gap as its own and
/// restarted p (whose child was `pid`), and it is still the daemon.
fn assert_resumed_with_the_exit(daemon: &Daemon, pid: i32) {
    wait_until(TIMEOUT, "the old image to resume", || {
        daemon.main_log().contains("live upgrade refused by the new vigild, resumed")
    });
    wait_until(TIMEOUT, "p to be restarted", || {
        daemon.state("p") == "RUNNING" && daemon.running_pid("p") != pid
    });
    assert!(!proc::exists(pid), "the exit was reaped");
    let log = daemon.main_log();
    assert!(log.contains("exited: p (terminated by SIGKILL; not expected)"), "{log}");
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
}

#[test]
fn an_upgrade_refused_after_the_state_was_read_hands_back_every_exit_of_the_gap() {
    // p restarts after an unexpected exit (supervisord's default); cat
    // copies its stdin to its stdout log.
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("p", &["--sleep", "3600"]).set("startsecs", 0),
        Program::raw("cat", "cat").set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("p");
    let cat = daemon.running_pid("cat");
    let (fifo, script) = holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // The new image answers from the carried records and registers the
    // carried children meanwhile. The file it is about to load stops
    // loading, and p's child dies before it is loaded.
    assert_eq!(daemon.state("p"), "RUNNING");
    let config = break_the_gap(&sandbox, &daemon, pid, &fifo);
    // The file is mended while the old image is held.
    std::fs::write(sandbox.config_path(), config).expect("mend the config");
    wait_until(TIMEOUT, "the old image to be held, then released", || release_now(&fifo));
    drop(guard);
    assert_resumed_with_the_exit(&daemon, pid);
    // The new image had taken cat's pipes for its tree; the old one has
    // them back, open.
    assert_eq!(daemon.running_pid("cat"), cat);
    let answer = super::stdin::send_stdin(&sandbox, "cat", "after the hand back\n");
    assert!(answer.contains("<boolean>1</boolean>"), "{answer}");
    wait_until(TIMEOUT, "cat's echo in its log", || {
        daemon.ctl(&["tail", "cat"]).stdout.contains("after the hand back")
    });
}

/// The config with `[supervisord]`'s `key` set to `value`.
fn with_supervisord_key(sandbox: &Sandbox, key: &str, value: &str) -> String {
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let mut lines: Vec<String> = config.lines().map(str::to_owned).collect();
    let setting = format!("{key}={value}");
    match lines.iter().position(|line| line.starts_with(&format!("{key}="))) {
        Some(at) => lines[at] = setting,
        None => {
            let at = lines.iter().position(|line| line == "[supervisord]").expect("[supervisord]");
            lines.insert(at + 1, setting);
        }
    }
    lines.join("\n") + "\n"
}

#[test]
fn a_preflight_refuses_an_activity_log_or_a_file_limit_the_new_image_could_not_set_up() {
    let (sandbox, daemon, pid) = one_program();
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let refused = |key: &str, value: &str, why: &str| {
        std::fs::write(sandbox.config_path(), with_supervisord_key(&sandbox, key, value))
            .expect("change the config");
        let output = daemon.ctl(&["upgrade"]);
        std::fs::write(sandbox.config_path(), &config).expect("restore the config");
        assert_ne!(output.code, 0, "{output:#?}");
        assert!(
            output.stdout.starts_with("ERROR: upgrade refused: ") && output.stdout.contains(why),
            "{output:#?}"
        );
        assert_eq!(daemon.process_pid("p"), pid, "the program is untouched");
    };
    // A directory is no file to append to, even for root.
    let directory = sandbox.join("a-directory");
    std::fs::create_dir(&directory).expect("mkdir");
    let shown = directory.display().to_string();
    refused("logfile", &shown, &format!("cannot open the activity log {shown}"));
    // More descriptors than the kernel lets any process have.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .expect("fs.nr_open")
        .trim()
        .parse()
        .expect("a number");
    refused("minfds", &(nr_open + 1).to_string(), "minfds");
    assert!(!daemon.main_log().contains("(live upgrade)"), "no handover happened");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    assert_eq!(daemon.process_pid("p"), pid);
}

#[test]
fn an_activity_log_that_stops_opening_in_the_gap_leaves_the_new_image_supervising() {
    let (sandbox, daemon, pid) = one_program();
    let (fifo, script) = holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // Past the pre-flight: the log the new image is about to open turns into
    // a directory.
    let directory = sandbox.join("a-directory");
    std::fs::create_dir(&directory).expect("mkdir");
    let shown = directory.display().to_string();
    std::fs::write(sandbox.config_path(), with_supervisord_key(&sandbox, "logfile", &shown))
        .expect("change the config");
    std::fs::write(&fifo, "go\n").expect("release the new image");
    drop(guard);
    let why = format!("cannot open the activity log {shown}");
    wait_until(TIMEOUT, "the new image to say why its log is off", || {
        daemon.diagnostics().contains(&why)
    });
    // It went on without the log: same daemon, same child, still in control.
    wait_until(TIMEOUT, "the new tree to answer", || {
        daemon.ctl(&["status", "p"]).stdout.contains("RUNNING")
    });
    assert_eq!(daemon.process_pid("p"), pid);
    assert_eq!(daemon.ctl(&["pid"]).stdout.trim(), daemon.pid().to_string());
    let stopped = daemon.ctl(&["stop", "p"]);
    assert_eq!(stopped.stdout.trim(), "p: stopped", "{stopped:#?}\n{}", daemon.diagnostics());
    assert!(!proc::exists(pid), "p's child was stopped and reaped");
}

#[test]
fn a_user_the_file_changes_is_not_applied_by_an_upgrade() {
    // As root the new image switched to nobody; as anyone else it could not
    // and exited. Either way it must stay the daemon's own user.
    let own = nix::unistd::getuid().as_raw().to_string();
    let (sandbox, daemon, pid) = one_program();
    std::fs::write(sandbox.config_path(), with_supervisord_key(&sandbox, "user", "nobody"))
        .expect("change the config");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    let log = wait_for(TIMEOUT, "the user change to be reported", || {
        let log = daemon.main_log();
        log.contains("user=nobody is not applied by a live upgrade").then_some(log)
    });
    assert!(!log.contains("Set uid to user"), "{log}");
    // Still its own user, so it may still signal its child.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).expect("status");
    let uid = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    assert_eq!(uid.split_whitespace().nth(1), Some(own.as_str()), "{uid}");
    assert_eq!(daemon.process_pid("p"), pid);
    let stopped = daemon.ctl(&["stop", "p"]);
    assert_eq!(stopped.stdout.trim(), "p: stopped", "{stopped:#?}\n{}", daemon.diagnostics());
    assert!(!proc::exists(pid), "p's child was stopped and reaped");
}

#[test]
fn a_new_group_that_cannot_start_is_left_out_of_the_upgrade_and_added_by_the_next_update() {
    let (sandbox, daemon, pid) = one_program();
    // A new fcgi group whose address another process listens on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let web = format!(
        "[fcgi-program:web]\ncommand={} --accept-stdin\nsocket=tcp://127.0.0.1:{port}\n\
         startsecs=0\nstdout_logfile={dir}/logs/web.out\nstderr_logfile={dir}/logs/web.err\n",
        vigil_integration::child_bin().display(),
        dir = sandbox.path().display(),
    );
    std::fs::write(sandbox.config_path(), format!("{config}\n{web}")).expect("add web");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    let why = format!(
        "group 'web' is not started: Could not create FastCGI socket tcp://127.0.0.1:{port}"
    );
    let log = wait_for(TIMEOUT, "the new image to say why web is left out", || {
        let log = daemon.main_log();
        log.contains(&why).then_some(log)
    });
    // Everything else went on: p kept, the daemon in control.
    assert!(!log.contains("cannot start the supervision tree"), "{log}");
    assert!(!log.contains("is not in the configuration any more"), "{log}");
    assert_eq!(daemon.running_pid("p"), pid);
    let status = daemon.ctl(&["status"]);
    assert!(!status.stdout.contains("web"), "{status:#?}");
    // Once the address is free, `update` adds the group the tree left out.
    drop(taken);
    let updated = daemon.ctl(&["update"]);
    assert!(updated.stdout.contains("web: added process group"), "{updated:#?}");
    let web_pid = daemon.running_pid("web");
    assert_ne!(web_pid, pid);
    assert_eq!(daemon.process_pid("p"), pid);
}

#[test]
fn a_control_listener_new_to_the_file_that_cannot_be_bound_is_left_out_of_the_upgrade() {
    let (sandbox, daemon, pid) = one_program();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let config = std::fs::read_to_string(sandbox.config_path()).expect("config");
    let inet = format!("[inet_http_server]\nport=127.0.0.1:{port}\n");
    std::fs::write(sandbox.config_path(), format!("{config}\n{inet}")).expect("add a listener");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    let log = wait_for(TIMEOUT, "the new image to say the listener is left out", || {
        let log = daemon.main_log();
        log.contains("not served until vigild binds it again").then_some(log)
    });
    assert!(log.contains(&port.to_string()), "{log}");
    // The unix socket serves, p is kept and still under control.
    wait_until(TIMEOUT, "the new tree to answer", || {
        daemon.ctl(&["status", "p"]).stdout.contains("RUNNING")
    });
    assert_eq!(daemon.process_pid("p"), pid);
    let stopped = daemon.ctl(&["stop", "p"]);
    assert_eq!(stopped.stdout.trim(), "p: stopped", "{stopped:#?}\n{}", daemon.diagnostics());
    drop(taken);
}

#[test]
fn an_old_image_whose_config_stopped_loading_holds_its_programs_until_it_loads() {
    let (sandbox, daemon, pid) = one_program();
    let (fifo, script) = holding_wrapper(&sandbox);
    let guard = release_on_panic(&fifo);
    upgrade(&daemon, &["--binary", &script]);
    // The file stays broken for the old image too.
    let config = break_the_gap(&sandbox, &daemon, pid, &fifo);
    wait_until(TIMEOUT, "the old image to be held, then released", || release_now(&fifo));
    drop(guard);
    wait_until(TIMEOUT, "the old image to hold the programs", || {
        daemon.diagnostics().contains("holding 1 program until it does")
    });
    // Still the daemon: it answers status from the carried record, and the
    // exit waits for it, neither reaped by anyone else nor lost.
    let status = daemon.ctl(&["status", "p"]);
    assert!(
        status.stdout.contains("RUNNING") && status.stdout.contains(&pid.to_string()),
        "{status:#?}"
    );
    assert!(proc::alive(daemon.pid()));
    assert!(proc::zombie(pid), "the exit waits");
    // Mended, the file loads: the old image resumes and handles the exit.
    std::fs::write(sandbox.config_path(), config).expect("mend the config");
    assert_resumed_with_the_exit(&daemon, pid);
}

#[test]
fn an_upgrade_asked_for_during_another_is_refused_at_once() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("p", &["--sleep", "3600"]).set("startsecs", 0)]);
    let daemon = Arc::new(sandbox.start());
    let pid = daemon.running_pid("p");
    // A vigild whose pre-flight waits for the test to write to a FIFO.
    let fifo = sandbox.join("preflight.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let vigild = vigild_bin().display().to_string();
    let slow = executable(
        &sandbox,
        "slow.sh",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --handover-check ]; then read line < '{}'; fi\n\
             exec '{vigild}' \"$@\"\n",
            fifo.display()
        ),
    );
    let guard = release_on_panic(&fifo);
    let first = {
        let daemon = Arc::clone(&daemon);
        std::thread::spawn(move || daemon.ctl(&["upgrade", "--binary", &slow]))
    };
    wait_until(TIMEOUT, "the first upgrade's pre-flight to run", || {
        proc::descendants(daemon.pid())
            .into_iter()
            .any(|child| proc::cmdline(child).contains("--handover-check"))
    });
    // Queued behind the first, the second's connection would stay open, and
    // the first would wait for it before handing over.
    let second = daemon.ctl(&["upgrade"]);
    assert_ne!(second.code, 0, "{second:#?}");
    assert_eq!(
        second.stdout.trim(),
        "ERROR: upgrade refused: another upgrade is in progress",
        "{second:#?}"
    );
    std::fs::write(&fifo, "go\n").expect("release the pre-flight");
    drop(guard);
    let first = first.join().expect("the first upgrade");
    assert_eq!(first.code, 0, "{first:#?}\n{}", daemon.diagnostics());
    assert!(first.stdout.contains("Upgraded: vigild"), "{first:#?}");
    let log = wait_takeovers(&daemon, 1);
    assert!(!log.contains("control connections still open"), "{log}");
    assert_eq!(daemon.running_pid("p"), pid);
    // The new image takes the next upgrade.
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 2);
    assert_eq!(daemon.running_pid("p"), pid);
}

#[test]
fn an_upgrade_is_refused_while_the_file_removes_or_changes_a_running_program() {
    let sandbox = Sandbox::new();
    let program =
        |name: &str, seconds: &str| Program::child(name, &["--sleep", seconds]).set("startsecs", 0);
    let idle = |seconds: &str| program("idle", seconds).set("autostart", "false");
    sandbox.write_config(&[program("keep", "3600"), program("gone", "3600"), idle("3600")]);
    let daemon = sandbox.start();
    let (keep, gone) = (daemon.running_pid("keep"), daemon.running_pid("gone"));
    // The new image builds its tree from the file: it would end gone's
    // process, and resume keep's under a command it was not started with.
    // idle has no child: its new command applies at its next start, as
    // `update` would have it.
    sandbox.write_config(&[program("keep", "3601"), program("added", "3600"), idle("3601")]);
    let refused = daemon.ctl(&["upgrade"]);
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert_eq!(
        refused.stdout.trim(),
        "ERROR: upgrade refused: the configuration file has changes `update` has not applied: \
         gone (removed), keep (changed: command); apply them with `vigilctl update` first (or \
         undo them)",
        "{refused:#?}"
    );
    assert_eq!(daemon.running_pid("keep"), keep);
    assert_eq!(daemon.running_pid("gone"), gone);
    assert!(!daemon.main_log().contains("(live upgrade)"), "nothing was handed over");
    // Once `update` applied them (and started the added program), it goes.
    daemon.ctl(&["update"]).expect_code(0);
    wait_until(TIMEOUT, "keep to run its new command", || {
        daemon.status_of("keep").is_some_and(|(state, _)| state == "RUNNING")
            && daemon.process_pid("keep") != keep
    });
    let (keep, added) = (daemon.running_pid("keep"), daemon.running_pid("added"));
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    assert_eq!(daemon.running_pid("keep"), keep);
    assert_eq!(daemon.running_pid("added"), added);
    assert!(daemon.status_of("gone").is_none());
}

#[test]
fn an_upgrade_that_moves_the_pidfile_retires_the_old_one_and_its_record() {
    let (sandbox, daemon, pid) = one_program();
    let (old, old_record) = (sandbox.pidfile(), sandbox.join("vigild.state"));
    wait_until(TIMEOUT, "the children to be recorded", || old_record.join("children").exists());
    let moved = sandbox.join("moved.pid");
    let moved_text = moved.display().to_string();
    std::fs::write(sandbox.config_path(), with_supervisord_key(&sandbox, "pidfile", &moved_text))
        .expect("move the pidfile");
    upgrade(&daemon, &[]);
    wait_takeovers(&daemon, 1);
    assert_eq!(
        std::fs::read_to_string(&moved).expect("the new pidfile").trim(),
        daemon.pid().to_string()
    );
    assert!(!old.exists(), "the old pidfile names a pid that will not stay this daemon's");
    assert!(!old_record.exists(), "nor does its record follow the children any more");
    wait_until(TIMEOUT, "the children to be recorded anew", || {
        sandbox.join("moved.state/children").exists()
    });
    assert_eq!(daemon.running_pid("p"), pid);
}
