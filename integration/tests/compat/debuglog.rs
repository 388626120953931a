//! supervisord's debug-level activity log: at `loglevel = debug` every chunk a
//! program writes is copied into the activity log (`'name' stdout output:`
//! and the text, or `Undecodable: b'...'`), and an event listener's protocol
//! output likewise (always as the bytes' repr). Both daemons run the same
//! program, which writes one chunk at a time; their entries must match once
//! times are removed.

use crate::harness::{Daemon, Kind, wait_until};

const CONFIG: &str = concat!(
    crate::harness::server_sections!(),
    r#"loglevel=debug

[program:talker]
command={child} --echo "plain text" --write-stderr "to stderr" --wait-file %(here)s/go1 --write-hex 6869ff0a --wait-file %(here)s/go2 --write-hex 2722c3a95c090a --wait-file %(here)s/go3 --write-hex 27c3 --sleep 100000
startsecs=0
stopwaitsecs=5
stdout_logfile=%(here)s/talker.out
stderr_logfile=%(here)s/talker.err

[eventlistener:listener]
command={child} --event-listener %(here)s/events.txt
events=PROCESS_STATE_RUNNING
startsecs=0
stdout_logfile=NONE
stderr_logfile=%(here)s/listener.err
"#
);

/// The activity log's entries (a line starting with a time, and the lines
/// up to the next one), each without its time: `DEBG message...`.
fn entries(log: &str) -> Vec<String> {
    let starts_entry = |line: &str| {
        let bytes = line.as_bytes();
        bytes.len() > 24
            && bytes[4] == b'-'
            && bytes[10] == b' '
            && bytes[19] == b','
            && bytes[23] == b' '
            && bytes[..4].iter().all(u8::is_ascii_digit)
    };
    let mut entries: Vec<String> = Vec::new();
    for line in log.split_inclusive('\n') {
        match entries.last_mut() {
            Some(entry) if !starts_entry(line) => entry.push_str(line),
            _ => entries.push(line.get(24..).unwrap_or(line).to_owned()),
        }
    }
    entries
}

fn output_entries(log: &str, name: &str) -> Vec<String> {
    let prefix = format!("DEBG '{name}' ");
    entries(log)
        .into_iter()
        .filter(|e| e.starts_with(&prefix) && e.contains(" output:\n"))
        .collect()
}

/// Runs the script on one daemon and returns its activity log.
fn run(kind: Kind) -> String {
    let mut daemon = Daemon::start(kind, CONFIG);
    let log_path = daemon.dir().join("supervisord.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let expect = [
        "'talker' stdout output:\nplain text\n",
        "'talker' stderr output:\nto stderr\n",
        "'talker' stdout output:\nUndecodable: b'hi\\xff\\n'",
        "'talker' stdout output:\n'\"é\\\t\n",
        "'talker' stdout output:\nUndecodable: b\"'\\xc3\"",
    ];
    for (step, expected) in expect.iter().enumerate() {
        if step >= 2 {
            std::fs::write(daemon.dir().join(format!("go{}", step - 1)), "").expect("go file");
        }
        wait_until(&format!("{kind:?} to log {expected:?}"), || log().contains(expected));
    }
    wait_until(&format!("{kind:?} to log the listener's result"), || {
        log().contains("'listener' stdout output:\nb'RESULT 2\\nOK")
    });
    assert_eq!(daemon.ctl(&["stop", "all"]).code, 0);
    log()
}

#[test]
fn debug_log_shows_child_output_as_supervisord_does() {
    let reference = std::thread::spawn(|| run(Kind::Supervisord));
    let vigil = run(Kind::Vigild);
    let reference = reference.join().expect("the supervisord run");
    // stdout and stderr are read separately: their relative order may differ.
    let sorted = |mut entries: Vec<String>| {
        entries.sort();
        entries
    };
    let talker = sorted(output_entries(&vigil, "talker"));
    assert_eq!(
        talker,
        sorted(output_entries(&reference, "talker")),
        "vigild:\n{vigil}\nsupervisord:\n{reference}"
    );
    assert_eq!(talker.len(), 5, "{talker:?}");
    // The listener's first words, alone in their chunk, shown as a bytes repr.
    let listener = output_entries(&vigil, "listener");
    assert_eq!(listener.first(), output_entries(&reference, "listener").first());
    assert_eq!(listener[0], "DEBG 'listener' stdout output:\nb'READY\\n'\n");
    // Dispatching an event is logged in the same words (serials differ).
    for log in [&vigil, &reference] {
        assert!(
            entries(log).iter().any(
                |e| e.starts_with("DEBG event ") && e.ends_with(" sent to listener listener\n")
            ),
            "{log}"
        );
    }
}
