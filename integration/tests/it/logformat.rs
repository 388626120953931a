//! The opt-in child log formats, read back from what vigild actually wrote:
//! JSON lines and timestamps in the log file, the merged `name | line` stream
//! on vigild's stdout, JSON activity-log lines, and supervisord's debug copy
//! of child output in the activity log.

use vigil_integration::{Program, Sandbox, TIMEOUT, wait_until};

/// A command writing `hello`, two bytes that are not UTF-8 on a line, then
/// one MiB of `x` without a newline, and exiting.
fn writer_command() -> String {
    format!(
        "/bin/sh -c \"{} --write-hex 68656c6c6f0afffe0a && head -c 1048576 /dev/zero | tr '\\\\000' x\"",
        vigil_integration::child_bin().display()
    )
}

const MIB: usize = 1024 * 1024;
/// The longest line a JSON record or an echoed line holds.
const MAX_LINE: usize = 64 * 1024;

fn vigild_stdout(sandbox: &Sandbox) -> Vec<u8> {
    sandbox.read("vigild.stdout")
}

#[test]
fn json_lines_are_valid_for_invalid_utf8_and_a_megabyte_line() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::raw("writer", &writer_command())
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_logfile_maxbytes", 0)
        .set("stdout_logfile_format", "json")]);
    let daemon = sandbox.start();
    daemon.wait_state("writer", "EXITED");
    let path = sandbox.stdout_log("writer");
    // 16 pieces of 64 KiB hold the MiB line; wait for the last one.
    let records = vigil_integration::wait_for(TIMEOUT, "every record in the log", || {
        let text = String::from_utf8(std::fs::read(&path).ok()?).expect("JSON lines are UTF-8");
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:.200}")))
            .collect();
        (records.len() == 2 + MIB / MAX_LINE).then_some(records)
    });
    let pid = records[0]["pid"].as_u64().expect("a pid");
    for record in &records {
        assert_eq!(record["program"], "writer");
        assert_eq!(record["group"], "writer");
        assert_eq!(record["channel"], "stdout");
        assert_eq!(record["pid"].as_u64(), Some(pid));
        let ts = record["ts"].as_str().expect("a timestamp");
        assert!(ts.len() == 24 && ts.ends_with('Z') && &ts[10..11] == "T", "{ts}");
    }
    assert_eq!(records[0]["line"], "hello");
    // Invalid UTF-8 is decoded lossily: one U+FFFD per invalid byte here.
    assert_eq!(records[1]["line"], "\u{fffd}\u{fffd}");
    let pieces = &records[2..];
    let mut joined = String::new();
    for (index, piece) in pieces.iter().enumerate() {
        let line = piece["line"].as_str().unwrap();
        assert_eq!(line.len(), MAX_LINE);
        // Every piece but the last says the line goes on in the next record.
        assert_eq!(piece.get("partial").is_some(), index + 1 < pieces.len(), "piece {index}");
        joined.push_str(line);
    }
    assert_eq!(joined, "x".repeat(MIB));
    // `tail` reads the file as it is.
    let tail = daemon.ctl(&["tail", "writer"]);
    assert!(tail.stdout.trim_end().ends_with("xxx\"}"), "{:.300}", tail.stdout);
}

#[test]
fn timestamped_lines_keep_the_bytes_and_stay_readable_by_tail() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "stamped",
        &["--echo", "first", "--write-hex", "ff0a", "--echo", "third", "--sleep", "3600"],
    )
    .set("startsecs", 0)
    .set("stdout_logfile_format", "timestamped")]);
    let daemon = sandbox.start();
    let path = sandbox.stdout_log("stamped");
    let bytes = vigil_integration::wait_for(TIMEOUT, "three stamped lines", || {
        let bytes = std::fs::read(&path).ok()?;
        (bytes.split(|b| *b == b'\n').count() == 4).then_some(bytes)
    });
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').take(3).collect();
    for (line, body) in lines.iter().zip([&b"first"[..], b"\xff", b"third"]) {
        let (stamp, rest) = line.split_at(24);
        let stamp = std::str::from_utf8(stamp).expect("an ASCII time");
        // 2026-12-04T17:32:44.123Z
        assert!(
            stamp.ends_with('Z')
                && stamp.as_bytes()[10] == b'T'
                && stamp.as_bytes()[19] == b'.'
                && stamp[..4].parse::<u32>().is_ok(),
            "{stamp}"
        );
        assert_eq!(rest[0], b' ');
        assert_eq!(&rest[1..], body, "the child's bytes, unchanged");
    }
    let tail = daemon.ctl(&["tail", "stamped"]);
    assert!(tail.stdout.trim_end().ends_with("Z third"), "{}", tail.stdout);
}

#[test]
fn echo_keeps_each_programs_lines_whole_on_vigild_stdout() {
    let sandbox = Sandbox::new();
    let (go_a, go_b) = (sandbox.join("go-a"), sandbox.join("go-b"));
    // Each writes half a line, waits, then the rest: the halves interleave in time.
    let halves = |name: &str, first: &str, second: &str, go: &std::path::Path| {
        Program::child(
            name,
            &[
                "--write-hex",
                first,
                "--wait-file",
                go.to_str().unwrap(),
                "--write-hex",
                second,
                "--sleep",
                "3600",
            ],
        )
        .set("startsecs", 0)
        .set("stdout_echo", "true")
    };
    // "a-first " / "a-second\n", "b-first " / "b-second\xff\n".
    let a = halves("alpha", "612d666972737420", "612d7365636f6e640a", &go_a);
    let b = halves("beta", "622d666972737420", "622d7365636f6e64ff0a", &go_b);
    let big = Program::raw("big", &writer_command())
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_echo", "true");
    sandbox.write_config(&[a, b, big]);
    let daemon = sandbox.start();
    for (name, first) in [("alpha", "a-first "), ("beta", "b-first ")] {
        wait_until(TIMEOUT, &format!("{name}'s first half in its log"), || {
            sandbox.read(sandbox.stdout_log(name)) == first.as_bytes()
        });
    }
    std::fs::write(&go_b, "").unwrap();
    let b_line: &[u8] = b"beta | b-first b-second\xff\n";
    wait_until(TIMEOUT, "beta's line on vigild's stdout", || {
        contains(&vigild_stdout(&sandbox), b_line)
    });
    std::fs::write(&go_a, "").unwrap();
    wait_until(TIMEOUT, "alpha's line on vigild's stdout", || {
        contains(&vigild_stdout(&sandbox), b"alpha | a-first a-second\n")
    });
    daemon.wait_state("big", "EXITED");
    let pieces = MIB / MAX_LINE;
    let out = vigil_integration::wait_for(TIMEOUT, "big's last piece on vigild's stdout", || {
        let out = vigild_stdout(&sandbox);
        (count_prefixed(&out, b"big ") == 2 + pieces).then_some(out)
    });
    // No line holds two programs' bytes; each program's lines are whole.
    let echoed: Vec<&[u8]> = out
        .split(|b| *b == b'\n')
        .filter(|line| [&b"alpha "[..], b"beta ", b"big "].iter().any(|p| line.starts_with(p)))
        .collect();
    let alpha: Vec<&[u8]> = echoed.iter().copied().filter(|l| l.starts_with(b"alpha ")).collect();
    assert_eq!(alpha, [&b"alpha | a-first a-second"[..]]);
    let beta: Vec<&[u8]> = echoed.iter().copied().filter(|l| l.starts_with(b"beta ")).collect();
    assert_eq!(beta, [&b"beta | b-first b-second\xff"[..]]);
    let big: Vec<&[u8]> = echoed.iter().copied().filter(|l| l.starts_with(b"big ")).collect();
    assert_eq!(big[0], b"big | hello");
    assert_eq!(big[1], b"big | \xff\xfe", "the child's bytes, unchanged");
    let x_line = vec![b'x'; MAX_LINE];
    for (index, piece) in big[2..].iter().enumerate() {
        // A piece that does not end its line says so with `+`.
        let marker: &[u8] = if index + 1 < pieces { b"big + " } else { b"big | " };
        assert_eq!(&piece[..marker.len()], marker, "piece {index}");
        assert_eq!(&piece[marker.len()..], &x_line[..], "piece {index}");
    }
    // The log files keep the raw bytes.
    assert_eq!(sandbox.read(sandbox.stdout_log("beta")), b"b-first b-second\xff\n");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn count_prefixed(out: &[u8], prefix: &[u8]) -> usize {
    out.split(|b| *b == b'\n').filter(|line| line.starts_with(prefix)).count()
}

#[test]
fn debug_level_copies_child_output_into_the_activity_log() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "talker",
        &[
            "--echo",
            "plain text",
            "--wait-file",
            "go",
            "--write-hex",
            "6869ff0a",
            "--sleep",
            "3600",
        ],
    )
    .set("startsecs", 0)
    .set("directory", sandbox.path().display())]);
    let daemon = sandbox.start();
    wait_until(TIMEOUT, "the text chunk in the activity log", || {
        daemon.main_log().contains(" DEBG 'talker' stdout output:\nplain text\n\n")
    });
    std::fs::write(sandbox.join("go"), "").unwrap();
    wait_until(TIMEOUT, "the undecodable chunk in the activity log", || {
        daemon.main_log().contains(" DEBG 'talker' stdout output:\nUndecodable: b'hi\\xff\\n'\n")
    });
}

#[test]
fn the_activity_log_can_be_json_lines() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("logfile_format", "json");
    sandbox.write_config(&[Program::child(
        "talker",
        &["--echo", "said \"hi\"", "--sleep", "3600"],
    )
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    let pid = daemon.running_pid("talker");
    let spawned = format!("spawned: 'talker' with pid {pid}");
    let records = vigil_integration::wait_for(TIMEOUT, "the spawn and the output", || {
        let records: Vec<serde_json::Value> = std::fs::read_to_string(sandbox.main_log())
            .ok()?
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        let seen = |message: &str| records.iter().any(|r| r["message"] == message);
        (seen(&spawned) && seen("'talker' stdout output:\nsaid \"hi\"\n")).then_some(records)
    });
    for record in &records {
        let ts = record["ts"].as_str().expect("a time");
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
        let level = record["level"].as_str().expect("a level");
        assert!(
            ["critical", "error", "warn", "info", "debug", "trace", "blather"].contains(&level)
        );
    }
    // The foreground copy on stdout is the same lines.
    let stdout = String::from_utf8(vigild_stdout(&sandbox)).unwrap();
    assert!(
        stdout.lines().any(|line| line.contains(&spawned) && line.starts_with("{\"ts\":")),
        "{stdout}"
    );
}
