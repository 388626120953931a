//! The stock `supervisorctl` against `vigild` and against the real `supervisord`, on the
//! same configuration, command by command: what it prints and its exit status must be the
//! same once pids, times, versions and the temporary directory are masked.
//!
//! Both daemons run the same script at once, each in its own directory; the transcripts
//! are compared at the end, and every difference is reported together.

use crate::harness::{Daemon, Kind, wait_until};

/// The configuration both daemons run. `%(here)s` keeps the text identical while each
/// daemon lives in its own directory; `{child}` is the helper child.
const CONFIG: &str = concat!(
    crate::harness::common_sections!(),
    r#"
[program:manual]
command={child} --sleep 100000
autostart=false
startsecs=0
stdout_logfile=%(here)s/manual.out
stderr_logfile=%(here)s/manual.err

[program:failer]
command={child} --exit 3
autostart=false
startsecs=1
startretries=0
stdout_logfile=%(here)s/failer.out
stderr_logfile=%(here)s/failer.err

[program:web]
command={child} --sleep 100000
numprocs=2
process_name=%(program_name)s_%(process_num)d
startsecs=0
stdout_logfile=%(here)s/%(process_num)d.out
stderr_logfile=%(here)s/%(process_num)d.err

[group:grp]
programs=web
"#
);

/// The configuration after an edit: `sleeper`'s command changed, `manual` removed,
/// `newprog` added.
fn edited_config() -> String {
    let without_manual = {
        let start = CONFIG.find("[program:manual]").expect("manual section");
        let end = CONFIG.find("[program:failer]").expect("failer section");
        format!("{}{}", &CONFIG[..start], &CONFIG[end..])
    };
    without_manual.replace("--echo hello --write-stderr oops", "--echo changed --write-stderr oops")
        + r#"
[program:newprog]
command={child} --echo new --sleep 100000
startsecs=0
stdout_logfile=%(here)s/newprog.out
stderr_logfile=%(here)s/newprog.err
"#
}

/// One step of the script.
enum Step {
    /// Run supervisorctl; output and exit status are compared.
    Ctl(&'static [&'static str]),
    /// Run supervisorctl; the output is compared as a set of lines. supervisord reports a
    /// group's or `all`'s results in completion order, which for processes of equal
    /// priority varies from run to run; vigild reports them sorted by group and name.
    Unordered(&'static [&'static str]),
    /// Run supervisorctl; only the exit status is compared (the output is the daemon's own
    /// activity log, whose messages are not part of the contract), and it must not be empty.
    CodeOnly(&'static [&'static str]),
    /// Wait until `status` shows each namespec in the given state.
    Settle(&'static [(&'static str, &'static str)]),
    /// Rewrite the configuration file with the edited one.
    EditConfig,
    /// `tail -f name` in the background: the recent output first, then what a restart of
    /// the process writes; killed by pid like Ctrl-C.
    TailFollow(&'static str),
    /// `maintail -f` in the background: the header and the recent activity log, then the
    /// `spawned:` line of a restart. The rest of the messages are the daemon's own, so only
    /// that it streams is compared.
    MainTailFollow,
    /// Wait for the daemon process to exit (after `shutdown`).
    WaitExit,
}

use Step::{CodeOnly, Ctl, EditConfig, MainTailFollow, Settle, TailFollow, Unordered, WaitExit};

const SCRIPT: &[Step] = &[
    Settle(&[("sleeper", "RUNNING"), ("grp:web_0", "RUNNING"), ("grp:web_1", "RUNNING")]),
    Ctl(&["version"]),
    Ctl(&["status"]),
    Ctl(&["status", "sleeper"]),
    Ctl(&["status", "grp:*"]),
    Ctl(&["status", "nosuch"]),
    Ctl(&["status", "nosuch:*"]),
    Ctl(&["status", "sleeper", "manual"]),
    Ctl(&["avail"]),
    // start
    Ctl(&["start", "manual"]),
    Ctl(&["start", "manual"]),
    Ctl(&["start", "nosuch"]),
    Ctl(&["start", "nosuch:*"]),
    Ctl(&["start", "failer"]),
    Ctl(&["start"]),
    Ctl(&["status", "failer"]),
    // stop
    Ctl(&["stop", "manual"]),
    Ctl(&["stop", "manual"]),
    Ctl(&["stop", "nosuch"]),
    Unordered(&["stop", "grp:*"]),
    Ctl(&["status"]),
    Unordered(&["start", "grp:*"]),
    Unordered(&["stop", "grp:web_0", "sleeper"]),
    Unordered(&["start", "all"]),
    Settle(&[("manual", "RUNNING"), ("sleeper", "RUNNING"), ("grp:web_0", "RUNNING")]),
    // restart
    Ctl(&["restart", "sleeper"]),
    Unordered(&["restart", "grp:*"]),
    Ctl(&["restart", "nosuch"]),
    // signal
    Ctl(&["signal", "USR1", "manual"]),
    Unordered(&["signal", "HUP", "grp:*"]),
    Ctl(&["signal", "BOGUS", "manual"]),
    Ctl(&["signal", "HUP", "nosuch"]),
    Ctl(&["signal", "HUP", "failer"]),
    Ctl(&["signal"]),
    Ctl(&["stop", "manual"]),
    Ctl(&["status", "manual"]),
    Ctl(&["start", "manual"]),
    // pid
    Ctl(&["pid"]),
    Ctl(&["pid", "sleeper"]),
    Ctl(&["pid", "failer"]),
    Ctl(&["pid", "nosuch"]),
    Ctl(&["pid", "all"]),
    // tail, maintail, clear
    Ctl(&["tail", "sleeper"]),
    Ctl(&["tail", "sleeper", "stderr"]),
    Ctl(&["tail", "-3", "sleeper"]),
    Ctl(&["tail", "nosuch"]),
    Ctl(&["tail", "sleeper", "bogus"]),
    TailFollow("sleeper"),
    CodeOnly(&["maintail"]),
    MainTailFollow,
    CodeOnly(&["maintail", "-200"]),
    Ctl(&["clear", "sleeper"]),
    Ctl(&["tail", "sleeper"]),
    Ctl(&["clear", "nosuch"]),
    Unordered(&["clear", "all"]),
    // reread, update, add, remove
    Ctl(&["reread"]),
    Ctl(&["update"]),
    EditConfig,
    Ctl(&["reread"]),
    Ctl(&["avail"]),
    Ctl(&["remove", "newprog"]),
    Ctl(&["add", "newprog"]),
    Ctl(&["add", "newprog"]),
    Settle(&[("newprog", "RUNNING")]),
    Ctl(&["remove", "newprog"]),
    Ctl(&["stop", "newprog"]),
    Ctl(&["remove", "newprog"]),
    Ctl(&["remove", "nosuch"]),
    Ctl(&["add", "nosuch"]),
    Ctl(&["update", "nosuch"]),
    Ctl(&["update"]),
    Settle(&[("sleeper", "RUNNING"), ("newprog", "RUNNING")]),
    Ctl(&["status"]),
    Ctl(&["tail", "sleeper"]),
    Ctl(&["update"]),
    // reload, shutdown
    Ctl(&["reload"]),
    Settle(&[("sleeper", "RUNNING"), ("newprog", "RUNNING"), ("grp:web_1", "RUNNING")]),
    Ctl(&["status"]),
    Ctl(&["shutdown"]),
    WaitExit,
    Ctl(&["status"]),
    Ctl(&["shutdown"]),
];

/// One line of a transcript: the step, what supervisorctl printed (masked), its status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    step: String,
    output: String,
    code: i32,
}

fn run_script(kind: Kind) -> Vec<Entry> {
    let mut daemon = Daemon::start(kind, CONFIG);
    let dir = daemon.dir().display().to_string();
    let mut transcript = Vec::new();
    for step in SCRIPT {
        match step {
            Ctl(args) | Unordered(args) | CodeOnly(args) => {
                let outcome = daemon.ctl(args);
                let mut output = mask(&format!("{}{}", outcome.stdout, outcome.stderr), &dir);
                match step {
                    CodeOnly(_) => {
                        assert!(
                            !output.trim().is_empty(),
                            "{kind:?}: `{}` printed nothing",
                            args.join(" ")
                        );
                        output = "<not compared>\n".to_owned();
                    }
                    Unordered(_) => {
                        let mut lines: Vec<&str> = output.lines().collect();
                        lines.sort_unstable();
                        output = lines.iter().map(|line| format!("{line}\n")).collect();
                    }
                    _ => {}
                }
                transcript.push(Entry { step: args.join(" "), output, code: outcome.code });
            }
            Settle(expected) => settle(&mut daemon, expected),
            EditConfig => daemon.write_config(&edited_config()),
            TailFollow(name) => {
                let mut follower = daemon.ctl_background(&["tail", "-f", name]);
                let before =
                    follower.wait_for("the recent output", |text| text.contains("hello\n"));
                let outcome = daemon.ctl(&["restart", name]);
                assert_eq!(outcome.code, 0, "{kind:?}: restart during tail -f: {outcome:?}");
                let after = follower.wait_for("the restarted process's output", |text| {
                    text.matches("hello\n").count() >= 2
                });
                // Ctrl-C: killed by pid (and reaped) by the drop.
                drop(follower);
                transcript.push(Entry {
                    step: format!("tail -f {name}"),
                    output: format!("{before}<restart>\n{}", &after[before.len()..]),
                    code: 0,
                });
            }
            MainTailFollow => {
                const HEADER: &str = "==> Press Ctrl-C to exit <==\n";
                let mut follower = daemon.ctl_background(&["maintail", "-f"]);
                let before = follower.wait_for("the recent activity log", |text| {
                    text.len() > HEADER.len() && text.ends_with('\n')
                });
                assert!(before.starts_with(HEADER), "{kind:?}: maintail -f printed {before:?}");
                let outcome = daemon.ctl(&["restart", "sleeper"]);
                assert_eq!(outcome.code, 0, "{kind:?}: restart during maintail -f: {outcome:?}");
                // Both daemons log supervisord's `spawned: 'sleeper' with pid N`.
                let spawned = "spawned: 'sleeper'";
                let seen = before.matches(spawned).count();
                follower.wait_for("the restart in the activity log", |text| {
                    text.matches(spawned).count() > seen
                });
                transcript.push(Entry {
                    step: "maintail -f".to_owned(),
                    output: "<header, recent log, then the restart streamed>\n".to_owned(),
                    code: 0,
                });
            }
            WaitExit => wait_until(&format!("{kind:?} to exit after shutdown"), || daemon.exited()),
        }
    }
    transcript
}

/// Waits until `status` shows each namespec in its state.
fn settle(daemon: &mut Daemon, expected: &[(&str, &str)]) {
    wait_until(&format!("{:?} to reach {expected:?}", daemon.kind), || {
        let status = daemon.ctl(&["status"]).stdout;
        expected.iter().all(|(name, state)| {
            status.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(name) && words.next() == Some(state)
            })
        })
    });
}

/// Masks what legitimately differs between two runs: the directory, pids, uptimes, stop
/// times and the daemon's version.
fn mask(text: &str, dir: &str) -> String {
    let text = text.replace(dir, "<DIR>");
    text.lines().map(mask_line).map(|line| line + "\n").collect()
}

fn mask_line(line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        let previous = out.last().map(String::as_str);
        if matches!(previous, Some("pid" | "uptime")) && !word.is_empty() {
            // `pid 123,` and `uptime 0:00:01`.
            let tail = if word.ends_with(',') { "," } else { "" };
            out.push(format!("<N>{tail}"));
        } else if is_month(word)
            && words
                .get(index + 1)
                .is_some_and(|day| day.len() == 2 && day.bytes().all(|b| b.is_ascii_digit()))
            && words
                .get(index + 2)
                .is_some_and(|clock| clock.len() == 5 && clock.as_bytes()[2] == b':')
            && words.get(index + 3).is_some_and(|half| matches!(*half, "AM" | "PM"))
        {
            out.push("<TIME>".to_owned());
            index += 3;
        } else if !word.is_empty()
            && word != "0"
            && word.bytes().all(|b| b.is_ascii_digit())
            && words.len() == 1
        {
            // A line that is just a pid (`supervisorctl pid`).
            out.push("<N>".to_owned());
        } else if words.len() == 1 && is_version(word) {
            out.push("<VERSION>".to_owned());
        } else {
            out.push(word.to_owned());
        }
        index += 1;
    }
    out.join(" ")
}

fn is_month(word: &str) -> bool {
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .contains(&word)
}

fn is_version(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn masking_keeps_what_matters() {
    assert_eq!(
        mask_line("sleeper                          RUNNING   pid 6061, uptime 0:00:12"),
        "sleeper                          RUNNING   pid <N>, uptime <N>"
    );
    assert_eq!(
        mask_line("manual                           EXITED    Nov 24 06:40 AM"),
        "manual                           EXITED    <TIME>"
    );
    assert_eq!(mask_line("Nov 24 06:40 AM"), "<TIME>");
    assert_eq!(mask_line("4242"), "<N>");
    assert_eq!(mask_line("0"), "0");
    assert_eq!(mask_line("4.3.0"), "<VERSION>");
    assert_eq!(mask_line("pid: ERROR (no such process)"), "pid: ERROR (no such process)");
}

#[test]
fn supervisorctl_sees_vigild_as_supervisord() {
    let reference = std::thread::spawn(|| run_script(Kind::Supervisord));
    let vigil = run_script(Kind::Vigild);
    let reference = reference.join().expect("the supervisord run panicked");
    assert_eq!(reference.len(), vigil.len());
    let mut differences = String::new();
    for (expected, got) in reference.iter().zip(&vigil) {
        if expected != got {
            differences.push_str(&format!(
                "\n$ supervisorctl {}\n--- supervisord (exit {}):\n{}--- vigild (exit {}):\n{}",
                expected.step, expected.code, expected.output, got.code, got.output
            ));
        }
    }
    assert!(differences.is_empty(), "supervisorctl output differs:{differences}");
}

/// The stock `supervisorctl tail -f` at a live upgrade of vigild (SIGUSR1): the
/// `/logtail` stream ends cleanly, which its HTTP client takes as the end of
/// the tail: it exits 0 without an error, having printed what it got. Its
/// protocol has no offset, so a `tail -f` started again begins with the last
/// 1 KiB as always (and follows the new image).
#[test]
fn supervisorctl_tail_f_ends_cleanly_at_a_live_upgrade() {
    let config = concat!(
        crate::harness::server_sections!(),
        r#"
[program:w]
command={child} --count 200 0.05
startsecs=0
autorestart=false
stdout_logfile=%(here)s/w.out
"#
    );
    let mut daemon = Daemon::start(Kind::Vigild, config);
    let mut follower = daemon.ctl_background(&["tail", "-f", "w"]);
    follower.wait_for("the first lines", |text| text.contains("line 000005\n"));
    let pid = nix::unistd::Pid::from_raw(daemon.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).expect("SIGUSR1");
    let (code, output) = follower.wait_exit("tail -f to end at the upgrade");
    assert_eq!(code, 0, "{output}");
    assert!(output.starts_with("==> Press Ctrl-C to exit <==\n"), "{output}");
    assert!(!output.contains("line 000200"), "it ended before the program did: {output}");
    let mut again = daemon.ctl_background(&["tail", "-f", "w"]);
    again.wait_for("the new image's stream", |text| text.contains("line 000200\n"));
}
