//! Every vigilctl command against a live vigild: the exact lines and exit codes
//! of supervisorctl 4.x, plus `--json`.

use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

use crate::wait_out_line;

fn sleeper(name: &str) -> Program {
    Program::child(name, &["--sleep", "3600"]).set("startsecs", 0)
}

fn json(output: &vigil_integration::Output) -> Value {
    serde_json::from_str(output.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {output:#?}"))
}

/// The status line supervisorctl prints, up to the description.
fn row(name: &str, state: &str, width: usize) -> String {
    format!("{name:<width$}{state:<10}")
}

#[test]
fn status_table_and_exit_codes() {
    let sandbox = Sandbox::new();
    let long = "a_program_with_a_name_longer_than_thirty";
    let body = sandbox.programs_text(&[
        sleeper("alpha"),
        sleeper(long),
        Program::child("beta", &["--sleep", "3600"]).set("autostart", "false"),
        sleeper("g1"),
        sleeper("g2"),
    ]);
    sandbox.write_config_text(&format!("{body}[group:grp]\nprograms=g1,g2\n"));
    let daemon = sandbox.start();
    let alpha = daemon.running_pid("alpha");
    daemon.running_pid(long);
    daemon.running_pid("grp:g1");
    daemon.running_pid("grp:g2");

    let output = daemon.ctl(&["status"]);
    output.expect_code(3);
    let width = long.len() + 3;
    let lines = output.lines();
    let names: Vec<&str> = lines.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, [long, "alpha", "beta", "grp:g1", "grp:g2"], "sorted by group, then name");
    assert!(
        lines[1].starts_with(&format!("{}pid {alpha}, uptime 0:", row("alpha", "RUNNING", width)))
    );
    assert_eq!(lines[2], format!("{}Not started", row("beta", "STOPPED", width)));

    // With short names only, the name column is 33 wide.
    let output = daemon.ctl(&["status", "alpha"]);
    output.expect_code(0);
    assert!(
        output.stdout.starts_with(&format!("{}pid {alpha}, uptime ", row("alpha", "RUNNING", 33)))
    );
    assert_eq!(output.lines().len(), 1);

    let group = daemon.ctl(&["status", "grp:*"]);
    group.expect_code(0);
    assert_eq!(group.lines().len(), 2);
    assert_eq!(daemon.ctl(&["status", "grp:"]).lines().len(), 2);

    daemon
        .ctl(&["status", "nosuch"])
        .expect_code(4)
        .expect_lines(&["nosuch: ERROR (no such process)"]);
    daemon
        .ctl(&["status", "nosuch:*"])
        .expect_code(4)
        .expect_lines(&["nosuch: ERROR (no such group)"]);
    daemon.ctl(&["status", "alpha", "beta"]).expect_code(3);
    // A later stopped match overwrites the unknown name's 4 with 3.
    let mixed = daemon.ctl(&["status", "nosuch", "beta"]);
    mixed.expect_code(3);
    assert_eq!(mixed.lines()[0], "nosuch: ERROR (no such process)");

    let document = json(&daemon.ctl(&["--json", "status", "alpha"]));
    assert_eq!(document["command"], "status");
    assert_eq!(document["exit_code"], 0);
    assert_eq!(document["result"][0]["name"], "alpha");
    assert_eq!(document["result"][0]["statename"], "RUNNING");
    assert_eq!(document["result"][0]["pid"], alpha);
}

#[test]
fn start_stop_restart() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        sleeper("a"),
        sleeper("b"),
        Program::child("manual", &["--sleep", "3600"])
            .set("startsecs", 0)
            .set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    let a = daemon.running_pid("a");
    daemon.running_pid("b");

    daemon.ctl(&["start", "manual"]).expect_code(0).expect_lines(&["manual: started"]);
    assert!(procfs::alive(daemon.process_pid("manual")));
    daemon
        .ctl(&["start", "manual"])
        .expect_code(0)
        .expect_lines(&["manual: ERROR (already started)"]);
    daemon.ctl(&["stop", "manual"]).expect_code(0).expect_lines(&["manual: stopped"]);
    daemon.ctl(&["stop", "manual"]).expect_code(0).expect_lines(&["manual: ERROR (not running)"]);
    daemon
        .ctl(&["stop", "nosuch"])
        .expect_code(1)
        .expect_lines(&["nosuch: ERROR (no such process)"]);
    daemon
        .ctl(&["start", "nosuch"])
        .expect_code(1)
        .expect_lines(&["nosuch: ERROR (no such process)"]);
    daemon
        .ctl(&["start", "nosuch:*"])
        .expect_code(2)
        .expect_lines(&["nosuch: ERROR (no such group)"]);
    let no_name = daemon.ctl(&["start"]);
    no_name.expect_code(2);
    assert_eq!(no_name.lines()[0], "Error: start requires a process name");
    assert_eq!(daemon.ctl(&["stop"]).code, 1);

    daemon.ctl(&["restart", "a"]).expect_code(0).expect_lines(&["a: stopped", "a: started"]);
    let new_a = daemon.process_pid("a");
    assert_ne!(new_a, a);
    assert!(!procfs::exists(a));

    let stop_all = daemon.ctl(&["stop", "all"]);
    stop_all.expect_code(0);
    let mut lines = stop_all.lines();
    lines.sort_unstable();
    assert_eq!(lines, ["a: stopped", "b: stopped"], "only running processes are stopped");
    daemon.ctl(&["status"]).expect_code(3);
    let start_all = daemon.ctl(&["start", "all"]);
    start_all.expect_code(0);
    let mut lines = start_all.lines();
    lines.sort_unstable();
    assert_eq!(lines, ["a: started", "b: started", "manual: started"]);
    daemon.ctl(&["status"]).expect_code(0);
}

/// `stop a b c` acts on all three at once on the daemon side: three stubborn
/// programs with stopwaitsecs=3 stop in about 3 s, not 9 s.
#[test]
fn multi_name_stop_is_concurrent() {
    let sandbox = Sandbox::new();
    let names = ["x", "y", "z"];
    let programs: Vec<Program> = names
        .iter()
        .map(|name| {
            Program::child(name, &["--ignore-term", "--sleep", "3600"])
                .set("startsecs", 0)
                .set("stopwaitsecs", 3)
        })
        .collect();
    sandbox.write_config(&programs);
    let daemon = sandbox.start();
    for name in names {
        daemon.running_pid(name);
        wait_out_line(&sandbox, name, "ignoring TERM");
    }
    let started = Instant::now();
    let output = daemon.ctl(&["stop", "x", "y", "z"]);
    let elapsed = started.elapsed();
    output.expect_code(0).expect_lines(&["x: stopped", "y: stopped", "z: stopped"]);
    assert!(elapsed >= Duration::from_millis(2900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "stops ran one after another: {elapsed:?}");
}

#[test]
fn signal_command() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("s", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", 1),
        Program::child("idle", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("s");
    wait_out_line(&sandbox, "s", "ignoring TERM");
    daemon.ctl(&["signal", "TERM", "s"]).expect_code(0).expect_lines(&["s: signalled"]);
    daemon.ctl(&["signal", "SIGTERM", "s"]).expect_code(0).expect_lines(&["s: signalled"]);
    assert!(procfs::alive(pid), "TERM is ignored");
    daemon
        .ctl(&["signal", "BOGUS", "s"])
        .expect_code(1)
        .expect_lines(&["s: ERROR (bad signal name)"]);
    daemon
        .ctl(&["signal", "USR1", "idle"])
        .expect_code(7)
        .expect_lines(&["idle: ERROR (not running)"]);
    daemon
        .ctl(&["signal", "USR1", "nosuch"])
        .expect_code(1)
        .expect_lines(&["nosuch: ERROR (no such process)"]);
    let usage = daemon.ctl(&["signal"]);
    usage.expect_code(1);
    assert_eq!(usage.lines()[0], "Error: signal requires a signal name and a process name");
    // KILL is an unexpected exit: autorestart=unexpected brings it back.
    daemon.ctl(&["signal", "KILL", "s"]).expect_code(0).expect_lines(&["s: signalled"]);
    wait_until(TIMEOUT, "s to be restarted after SIGKILL", || {
        let now = daemon.process_pid("s");
        now != 0 && now != pid
    });
    assert!(!procfs::exists(pid));
}

#[test]
fn pid_command() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        sleeper("a"),
        sleeper("b"),
        Program::child("idle", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    let a = daemon.running_pid("a");
    let b = daemon.running_pid("b");
    daemon.ctl(&["pid"]).expect_code(0).expect_lines(&[&daemon.pid().to_string()]);
    daemon.ctl(&["pid", "a"]).expect_code(0).expect_lines(&[&a.to_string()]);
    daemon.ctl(&["pid", "idle"]).expect_code(7).expect_lines(&["0"]);
    daemon.ctl(&["pid", "nosuch"]).expect_code(1).expect_lines(&["No such process nosuch"]);
    daemon.ctl(&["pid", "all"]).expect_code(0).expect_lines(&[&a.to_string(), &b.to_string(), "0"]);
    let document = json(&daemon.ctl(&["--json", "pid", "a"]));
    assert_eq!(document["result"][0]["pid"], a);
    assert_eq!(document["exit_code"], 0);
}

#[test]
fn tail_and_tail_follow() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child(
            "t",
            &["--echo", "line1", "--echo", "line2", "--write-stderr", "oops", "--sleep", "3600"],
        )
        .set("startsecs", 0),
        Program::child("big", &["--write-bytes", "4000", "--sleep", "3600"]).set("startsecs", 0),
        Program::child(
            "later",
            &["--echo", "first", "--sleep", "5", "--echo", "second", "--sleep", "3600"],
        )
        .set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("t");
    daemon.running_pid("big");
    wait_until(TIMEOUT, "t's output", || {
        sandbox.read_text("logs/t.out") == "line1\nline2\n"
            && sandbox.read_text("logs/t.err") == "oops\n"
    });
    let tail = daemon.ctl(&["tail", "t"]);
    tail.expect_code(0);
    assert_eq!(tail.stdout, "line1\nline2\n\n");
    assert_eq!(daemon.ctl(&["tail", "-6", "t"]).stdout, "line2\n\n");
    assert_eq!(daemon.ctl(&["tail", "t", "stderr"]).stdout, "oops\n\n");
    assert_eq!(daemon.ctl(&["tail", "-2", "t", "stderr"]).stdout, "s\n\n");
    daemon
        .ctl(&["tail", "t", "bogus"])
        .expect_code(1)
        .expect_lines(&["Error: bad channel 'bogus'"]);
    daemon
        .ctl(&["tail", "nosuch"])
        .expect_code(1)
        .expect_lines(&["nosuch: ERROR (no such process name)"]);

    // Default: the last 1600 bytes.
    wait_until(TIMEOUT, "big's 4000 bytes", || sandbox.read("logs/big.out").len() == 4000);
    let tail = daemon.ctl(&["tail", "big"]);
    let mut expected = sandbox.read("logs/big.out")[2400..].to_vec();
    expected.push(b'\n');
    assert_eq!(tail.stdout.as_bytes(), expected);

    // -f prints what exists, then follows.
    daemon.running_pid("later");
    wait_out_line(&sandbox, "later", "first");
    let follower = daemon.follow(&["tail", "-f", "later"]);
    follower.wait_output("the first line", |out| out == "==> Press Ctrl-C to exit <==\nfirst\n");
    let output = follower.wait_output("the second line", |out| out.ends_with("second\n"));
    assert_eq!(output, "==> Press Ctrl-C to exit <==\nfirst\nsecond\n");
    follower.stop();
}

/// supervisord's readProcessStdoutLog raises NO_FILE for a channel that is not
/// logged to a file (`stdout_logfile=NONE`); supervisorctl prints `no log file`.
#[test]
fn tail_of_a_channel_without_a_log_file() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("quiet", &["--echo", "unlogged", "--sleep", "3600"])
        .set("startsecs", 0)
        .set("stdout_logfile", "NONE")]);
    let daemon = sandbox.start();
    daemon.running_pid("quiet");
    daemon.ctl(&["tail", "quiet"]).expect_code(1).expect_lines(&["quiet: ERROR (no log file)"]);
}

#[test]
fn maintail_and_clear() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("m", &["--echo", "hello", "--sleep", "3600"]).set("startsecs", 0),
        Program::child("n", &["--echo", "world", "--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    let m = daemon.running_pid("m");
    daemon.running_pid("n");
    let maintail = daemon.ctl(&["maintail"]);
    maintail.expect_code(0);
    assert!(maintail.stdout.contains(&format!("spawned: 'm' with pid {m}")), "{maintail:#?}");
    assert!(maintail.stdout.len() <= 1601);
    let short = daemon.ctl(&["maintail", "-100"]);
    short.expect_code(0);
    assert!(short.stdout.len() <= 101 && !short.stdout.is_empty(), "{short:#?}");
    daemon.ctl(&["maintail", "-x"]).expect_code(1).expect_lines(&["Error: bad argument -x"]);

    wait_out_line(&sandbox, "m", "hello");
    daemon.ctl(&["clear", "m"]).expect_code(0).expect_lines(&["m: cleared"]);
    assert_eq!(sandbox.read("logs/m.out").len(), 0);
    assert_eq!(daemon.ctl(&["tail", "m"]).stdout, "\n");
    daemon
        .ctl(&["clear", "nosuch"])
        .expect_code(1)
        .expect_lines(&["nosuch: ERROR (no such process)"]);
    wait_out_line(&sandbox, "n", "world");
    let all = daemon.ctl(&["clear", "all"]);
    all.expect_code(0);
    let mut lines = all.lines();
    lines.sort_unstable();
    assert_eq!(lines, ["m: cleared", "n: cleared"]);
    assert_eq!(sandbox.read("logs/n.out").len(), 0);
    assert!(procfs::alive(m), "clearing does not touch the process");
}

#[test]
fn version_help_and_unknown_commands() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[]);
    // help needs no daemon.
    let help = sandbox.ctl(&["help"]);
    help.expect_code(0);
    assert!(help.stdout.contains("default commands (type help <topic>):"), "{help:#?}");
    for command in ["status", "start", "stop", "tail", "update", "shutdown"] {
        assert!(help.stdout.contains(command), "help lists {command}");
    }
    let help_stop = sandbox.ctl(&["help", "stop"]);
    help_stop.expect_code(0);
    assert!(help_stop.stdout.starts_with("stop "), "{help_stop:#?}");
    sandbox.ctl(&["help", "nosuch"]).expect_code(0).expect_lines(&["*** No help on nosuch"]);

    let daemon = sandbox.start();
    daemon.ctl(&["version"]).expect_code(0).expect_lines(&[env!("CARGO_PKG_VERSION")]);
    let document = json(&daemon.ctl(&["version", "--json"]));
    assert_eq!(document["command"], "version");
    assert_eq!(document["exit_code"], 0);
    daemon.ctl(&["version", "extra"]).expect_code(1);
    daemon
        .ctl(&["frobnicate", "x"])
        .expect_code(1)
        .expect_lines(&["*** Unknown syntax: frobnicate x"]);
}

#[test]
fn reload_restarts_programs_in_the_same_daemon() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("r")]);
    let daemon = sandbox.start();
    let before = daemon.running_pid("r");
    daemon.ctl(&["reload"]).expect_code(0).expect_lines(&["Restarted supervisord"]);
    wait_until(TIMEOUT, "r to run again under a new pid", || {
        let output = daemon.ctl(&["pid", "r"]);
        let pid: i32 = output.stdout.trim().parse().unwrap_or(0);
        output.code == 0 && pid != 0 && pid != before
    });
    assert!(!procfs::exists(before));
    daemon.ctl(&["pid"]).expect_lines(&[&daemon.pid().to_string()]);
}

#[test]
fn shutdown_then_every_command_reports_the_daemon_gone() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("a")]);
    let mut daemon = sandbox.start();
    let a = daemon.running_pid("a");
    daemon.ctl(&["shutdown"]).expect_code(0).expect_lines(&["Shut down"]);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    assert!(!procfs::exists(a));
    assert!(!sandbox.socket().exists());

    let url = sandbox.server_url();
    let status = sandbox.ctl(&["status"]);
    status.expect_code(4);
    assert_eq!(status.stdout.trim(), format!("{url} no such file"));
    sandbox.ctl(&["stop", "all"]).expect_code(7);
    sandbox.ctl(&["start", "a"]).expect_code(7);
    sandbox.ctl(&["pid"]).expect_code(7);
    sandbox.ctl(&["version"]).expect_code(7);
    sandbox
        .ctl(&["shutdown"])
        .expect_code(1)
        .expect_lines(&[&format!("ERROR: {url} no such file (already shut down?)")]);

    // A socket file nobody listens on: connection refused.
    let listener = std::os::unix::net::UnixListener::bind(sandbox.socket()).unwrap();
    drop(listener);
    let status = sandbox.ctl(&["status"]);
    status.expect_code(4);
    assert_eq!(status.stdout.trim(), format!("{url} refused connection"));
    sandbox.ctl(&["stop", "all"]).expect_code(4);
    sandbox
        .ctl(&["shutdown"])
        .expect_code(1)
        .expect_lines(&[&format!("ERROR: {url} refused connection (already shut down?)")]);
}

#[test]
fn fg_and_open() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        sleeper("a"),
        Program::child("idle", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("a");
    daemon.ctl(&["fg", "idle"]).expect_code(1).expect_lines(&["ERROR: process not running"]);
    daemon
        .ctl(&["fg", "nosuch"])
        .expect_code(1)
        .expect_lines(&["ERROR: bad process name supplied"]);
    let fg = daemon.ctl(&["fg"]);
    fg.expect_code(1);
    assert_eq!(fg.lines()[0], "ERROR: no process name supplied");

    // `open` switches the server, then shows its status.
    let open = sandbox.ctl(&["open", &sandbox.server_url()]);
    open.expect_code(0);
    assert_eq!(open.lines().len(), 2, "{open:#?}");
    assert!(open.lines()[0].starts_with("a "), "{open:#?}");
    sandbox
        .ctl(&["open", "ftp://x"])
        .expect_code(1)
        .expect_lines(&["ERROR: url must be http:// or unix://"]);
}

#[test]
fn json_reports_errors_with_their_exit_code() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("a")]);
    let daemon = sandbox.start();
    daemon.running_pid("a");
    let output = daemon.ctl(&["--json", "stop", "nosuch"]);
    output.expect_code(1);
    let document = json(&output);
    assert_eq!(document["command"], "stop");
    assert_eq!(document["exit_code"], 1);
    assert_eq!(document["messages"][0], "nosuch: ERROR (no such process)");
    let output = daemon.ctl(&["--json", "stop", "a"]);
    output.expect_code(0);
    assert_eq!(json(&output)["messages"][0], "a: stopped");
}

/// Smaller command details: `restart` of a stopped process, numeric signals,
/// uptime growing in the status column.
#[test]
fn restart_stopped_numeric_signal_and_uptime() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("s", &["--ignore-term", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stopwaitsecs", 1),
        Program::child("idle", &["--sleep", "3600"]).set("startsecs", 0).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("s");
    wait_out_line(&sandbox, "s", "ignoring TERM");
    daemon
        .ctl(&["restart", "idle"])
        .expect_code(0)
        .expect_lines(&["idle: ERROR (not running)", "idle: started"]);
    daemon.ctl(&["signal", "15", "s"]).expect_code(0).expect_lines(&["s: signalled"]);
    assert!(procfs::alive(pid));
    wait_until(TIMEOUT, "an uptime of at least 2 s", || {
        daemon.status_of("s").is_some_and(|(_, description)| {
            description
                .strip_prefix(&format!("pid {pid}, uptime 0:00:"))
                .and_then(|s| s.parse::<u32>().ok())
                .is_some_and(|s| s >= 2)
        })
    });
}

/// `vigilctl tail -f x | head -1`: once the reader goes away, the follower
/// must exit instead of following forever (supervisord's issue-1298 fixture).
#[test]
fn tail_follow_exits_when_its_reader_goes_away() {
    use std::io::BufRead;
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("ticker", &["--count", "100000", "0.1"])
        .set("startsecs", 0)
        .set("stdout_logfile_maxbytes", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("ticker");
    wait_out_line(&sandbox, "ticker", "line 000001");
    let mut child = std::process::Command::new(vigil_integration::vigilctl_bin())
        .current_dir(sandbox.path())
        .args(["-c", &sandbox.config_path().display().to_string(), "tail", "-f", "ticker"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert_eq!(first, "==> Press Ctrl-C to exit <==\n");
    drop(reader);
    let status = vigil_integration::wait_timeout(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = vigil_integration::wait_timeout(&mut child, TIMEOUT);
    }
    assert!(status.is_some(), "vigilctl kept following with nobody reading");
}

/// Without a command, vigilctl is supervisorctl's shell: it shows the status,
/// runs each line read, and exits 0 at EOF whatever the commands returned.
#[test]
fn shell_reads_commands_from_stdin() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        sleeper("a"),
        Program::child("idle", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let daemon = sandbox.start();
    let a = daemon.running_pid("a");
    let output = daemon.ctl_input(&[], b"pid a\nstop nosuch\nstart idle\n");
    output.expect_code(0);
    let text = &output.stdout;
    let status_line = text.find("a                                RUNNING").expect("status first");
    let pid_line = text.find(&format!("{a}\n")).expect("pid a");
    assert!(status_line < pid_line, "{text}");
    assert!(text.contains("nosuch: ERROR (no such process)"), "{text}");
    assert!(text.contains("idle: started"), "{text}");
    assert!(procfs::alive(daemon.process_pid("idle")));
}

/// A follower of a process that goes away (stopped and removed) ends instead
/// of long-polling forever.
#[test]
fn tail_follow_ends_when_the_process_is_removed() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("doomed", &["--echo", "hello", "--sleep", "3600"]).set("startsecs", 0)
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("doomed");
    wait_out_line(&sandbox, "doomed", "hello");
    let mut child = std::process::Command::new(vigil_integration::vigilctl_bin())
        .current_dir(sandbox.path())
        .args(["-c", &sandbox.config_path().display().to_string(), "tail", "-f", "doomed"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Removed only once the follower follows: a tail started after the
    // removal fails at once, as for any unknown name, with another code.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        // Read to the end, so the follower never blocks on a full pipe.
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let followed = loop {
        match lines.recv_timeout(TIMEOUT) {
            Ok(line) if line.contains("hello") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    if !followed {
        let _ = child.kill();
        let _ = vigil_integration::wait_timeout(&mut child, TIMEOUT);
        panic!("the follower never printed the log's line");
    }
    sandbox.write_config(&[]);
    daemon
        .ctl(&["update"])
        .expect_code(0)
        .expect_lines(&["doomed: stopped", "doomed: removed process group"]);
    let status = vigil_integration::wait_timeout(&mut child, Duration::from_secs(40));
    if status.is_none() {
        let _ = child.kill();
        let _ = vigil_integration::wait_timeout(&mut child, TIMEOUT);
    }
    let status = status.expect("the follower ended after its process was removed");
    assert_eq!(status.code(), Some(1), "an error, like supervisorctl's 404");
}

/// `start a b c` waits for the three startsecs windows at once, not one after
/// another.
#[test]
fn multi_name_start_is_concurrent() {
    let sandbox = Sandbox::new();
    let programs: Vec<Program> = ["x", "y", "z"]
        .iter()
        .map(|name| {
            Program::child(name, &["--sleep", "3600"]).set("startsecs", 2).set("autostart", "false")
        })
        .collect();
    sandbox.write_config(&programs);
    let daemon = sandbox.start();
    let started = Instant::now();
    daemon.ctl(&["start", "x", "y", "z"]).expect_code(0).expect_lines(&[
        "x: started",
        "y: started",
        "z: started",
    ]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "starts ran one after another: {elapsed:?}");
}

/// `signal SIG all` reaches every running process and skips stopped ones; the
/// status JSON carries supervisord's `exitstatus` (-1 after a signal death).
#[test]
fn signal_all_and_exitstatus() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("one", &["--sleep", "3600"]).set("startsecs", 0).set("autorestart", "false"),
        Program::child("two", &["--sleep", "3600"]).set("startsecs", 0).set("autorestart", "false"),
        Program::child("idle", &["--sleep", "3600"]).set("autostart", "false"),
        Program::child("coded", &["--exit", "5"]).set("startsecs", 0).set("autorestart", "false"),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("one");
    daemon.running_pid("two");
    daemon.wait_state("coded", "EXITED");
    let output = daemon.ctl(&["signal", "KILL", "all"]);
    output.expect_code(0);
    let mut lines = output.lines();
    lines.sort_unstable();
    assert_eq!(lines, ["one: signalled", "two: signalled"]);
    daemon.wait_state("one", "EXITED");
    daemon.wait_state("two", "EXITED");
    let document = json(&daemon.ctl(&["--json", "status", "coded", "one"]));
    assert_eq!(document["result"][0]["name"], "coded");
    assert_eq!(document["result"][0]["exitstatus"], 5);
    assert_eq!(document["result"][1]["name"], "one");
    assert_eq!(document["result"][1]["exitstatus"], -1);
}

/// In the shell, `shutdown` asks first (supervisorctl's `Really shut the
/// remote supervisord process down y/N?`): `n` keeps the daemon, `y` stops it.
#[test]
fn shell_shutdown_asks_for_confirmation() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[sleeper("a")]);
    let mut daemon = sandbox.start();
    daemon.running_pid("a");
    let declined = daemon.ctl_input(&[], b"shutdown\nn\npid\n");
    declined.expect_code(0);
    assert!(
        declined.stdout.contains("Really shut the remote supervisord process down y/N?"),
        "{declined:#?}"
    );
    assert!(
        declined.stdout.contains(&format!("{}\n", daemon.pid())),
        "pid ran after the answer: {declined:#?}"
    );
    assert_eq!(daemon.poll_exit(), None, "declined: still running");
    let accepted = daemon.ctl_input(&[], b"shutdown\ny\n");
    accepted.expect_code(0);
    assert!(accepted.stdout.contains("Shut down"), "{accepted:#?}");
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
}
