//! Output capture: nothing lost, rotation as supervisord names the files, and
//! `tail -f` following a log across rotations.

use vigil_integration::{Program, Sandbox, TIMEOUT, check_pattern, wait_until};

use crate::wait_out_line;

const MIB: u64 = 1024 * 1024;

#[test]
fn twenty_megabytes_are_captured_byte_for_byte() {
    let total = 20 * MIB;
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("writer", &["--write-bytes", &total.to_string()])
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_logfile_maxbytes", 0)]);
    let daemon = sandbox.start();
    daemon.wait_state("writer", "EXITED");
    let path = sandbox.stdout_log("writer");
    wait_until(TIMEOUT, "the whole output in the log", || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() >= total)
    });
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, total);
    check_pattern(&bytes, 0).unwrap();
}

#[test]
fn rotation_keeps_a_gapless_tail() {
    let total = 3 * MIB;
    let max_bytes = 100_000;
    let backups = 5;
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("writer", &["--write-bytes", &total.to_string()])
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_logfile_maxbytes", max_bytes)
        .set("stdout_logfile_backups", backups)]);
    let daemon = sandbox.start();
    daemon.wait_state("writer", "EXITED");
    let path = sandbox.stdout_log("writer");
    let last_record = format!("{:015x}\n", total / 16 - 1);
    // The last write may end exactly on a rotation, leaving the current file empty.
    wait_until(TIMEOUT, "the last record in the newest log", || match std::fs::read(&path) {
        Ok(bytes) if bytes.is_empty() => std::fs::read(vigil_integration::backup_of(&path, 1))
            .is_ok_and(|bytes| bytes.ends_with(last_record.as_bytes())),
        Ok(bytes) => bytes.ends_with(last_record.as_bytes()),
        Err(_) => false,
    });
    // writer.out.5, ..., writer.out.1, writer.out: oldest first.
    let mut kept = Vec::new();
    for index in (1..=backups).rev() {
        let backup = vigil_integration::backup_of(&path, index);
        let bytes = std::fs::read(&backup)
            .unwrap_or_else(|e| panic!("{} should exist: {e}", backup.display()));
        assert!(
            bytes.len() as u64 <= max_bytes + 64 * 1024,
            "{} is {} bytes",
            backup.display(),
            bytes.len()
        );
        kept.extend_from_slice(&bytes);
    }
    assert!(
        !vigil_integration::backup_of(&path, backups + 1).exists(),
        "only {backups} backups are kept"
    );
    kept.extend_from_slice(&std::fs::read(&path).unwrap());
    let start = total - kept.len() as u64;
    check_pattern(&kept, start).unwrap();
    assert!(kept.len() as u64 >= max_bytes * u64::from(backups), "kept only {} bytes", kept.len());
}

#[test]
fn stderr_is_captured_separately_or_redirected() {
    let sandbox = Sandbox::new();
    let args = ["--echo", "to stdout", "--write-stderr", "to stderr", "--sleep", "3600"];
    sandbox.write_config(&[
        Program::child("split", &args).set("startsecs", 0),
        Program::child("merged", &args).set("startsecs", 0).set("redirect_stderr", "true"),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("split");
    daemon.running_pid("merged");
    wait_until(TIMEOUT, "both channels in the logs", || {
        sandbox.read_text("logs/split.err") == "to stderr\n"
            && sandbox.read_text("logs/merged.out").contains("to stderr\n")
    });
    assert_eq!(sandbox.read_text("logs/split.out"), "to stdout\n");
    assert_eq!(sandbox.read_text("logs/merged.out"), "to stdout\nto stderr\n");
    assert!(!sandbox.join("logs/merged.err").exists());
    let tail = daemon.ctl(&["tail", "split", "stderr"]);
    tail.expect_code(0);
    assert_eq!(tail.stdout, "to stderr\n\n");
}

/// `tail -f` follows across many rotations, neither losing nor repeating a line.
#[test]
fn tail_follow_survives_rotation() {
    let lines = 2500u32;
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "counter",
        &[
            "--echo",
            "begin",
            "--sleep",
            "5",
            "--count",
            &lines.to_string(),
            "0.002",
            "--sleep",
            "3600",
        ],
    )
    .set("startsecs", 0)
    .set("stdout_logfile_maxbytes", 1000)
    .set("stdout_logfile_backups", 2)]);
    let daemon = sandbox.start();
    daemon.running_pid("counter");
    wait_out_line(&sandbox, "counter", "begin");
    let follower = daemon.follow(&["tail", "-f", "counter"]);
    let last = format!("line {lines:06}\n");
    follower.wait_output("the header and the first line", |out| {
        out.starts_with("==> Press Ctrl-C to exit <==\n") && out.contains("begin\n")
    });
    // The program has not started counting when the follower is up, if the
    // machine allows; either way every line after `begin` must come in order.
    let output = follower.wait_output("the last line", |out| out.contains(&last));
    let output = output.clone();
    let follower_output = follower.stop();
    assert!(follower_output.starts_with(&output));
    assert!(!output.contains("File truncated"), "nothing skipped:\n{output}");
    let after_begin = output.split_once("begin\n").expect("begin line").1;
    let got: Vec<&str> = after_begin.lines().collect();
    let expected: Vec<String> = (1..=lines).map(|n| format!("line {n:06}")).collect();
    assert_eq!(got.len(), expected.len(), "line count differs");
    for (index, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, expected, "line {index} after begin");
    }
    assert!(sandbox.join("logs/counter.out.2").exists(), "the log did rotate");
}

#[test]
fn auto_logs_live_in_childlogdir() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("auto", &["--echo", "automatic", "--sleep", "3600"])
        .set("startsecs", 0)
        .set("stdout_logfile", "AUTO")
        .set("stderr_logfile", "AUTO")]);
    let daemon = sandbox.start();
    daemon.running_pid("auto");
    let output = daemon.ctl(&["--json", "status", "auto"]);
    let document: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
    let path = std::path::PathBuf::from(document["result"][0]["stdout_logfile"].as_str().unwrap());
    assert_eq!(path.parent().unwrap(), sandbox.join("logs"), "{path:?}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("auto-stdout---") && name.ends_with(".log"), "{name}");
    wait_until(TIMEOUT, "the AUTO log content", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t == "automatic\n")
    });
    assert_eq!(daemon.ctl(&["tail", "auto"]).stdout, "automatic\n\n");
}

/// SIGUSR2 reopens the logs, so an external logrotate can move them away.
#[test]
fn sigusr2_reopens_child_logs() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "chatty",
        &["--echo", "before", "--sleep", "4", "--echo", "after", "--sleep", "3600"],
    )
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("chatty");
    wait_out_line(&sandbox, "chatty", "before");
    let path = sandbox.stdout_log("chatty");
    let moved = sandbox.join("logs/chatty.out.moved");
    std::fs::rename(&path, &moved).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGUSR2);
    wait_until(TIMEOUT, "the reopened log to get the next line", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t == "after\n")
    });
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), "before\n");
}

/// The figure: 200 MB written as fast as possible, with rotation big
/// enough to keep it all, concatenates back to exactly what was written.
#[test]
fn two_hundred_megabytes_with_rotation_lose_nothing() {
    let total = 200 * MIB;
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("flood", &["--write-bytes", &total.to_string()])
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_logfile_maxbytes", "50MB")
        .set("stdout_logfile_backups", 10)]);
    let daemon = sandbox.start();
    daemon.wait_state("flood", "EXITED");
    let path = sandbox.stdout_log("flood");
    // The last write may end exactly on a rotation, leaving the current file
    // empty: wait for the byte count across all files instead.
    let kept =
        || -> u64 {
            (0..=11)
                .map(|index| {
                    if index == 0 {
                        path.clone()
                    } else {
                        vigil_integration::backup_of(&path, index)
                    }
                })
                .filter_map(|file| std::fs::metadata(file).ok())
                .map(|meta| meta.len())
                .sum()
        };
    wait_until(TIMEOUT, "all 200 MB in the log files", || kept() >= total);
    // When the last write fills the current file exactly, the rotation that
    // follows may still be renaming the files while they are read, and one
    // reading can see a backup before its rename and the next after it. So
    // they are read again until one reading is whole; bytes lost or repeated
    // never read whole, and fail with the last reading's error.
    let mut last_error = String::new();
    let whole = vigil_integration::try_wait_until(TIMEOUT, || match read_rotated(&path, total) {
        Ok(()) => true,
        Err(error) => {
            last_error = error;
            false
        }
    });
    assert!(whole, "{last_error}");
}

/// Reads `path`'s backups, oldest first, then `path`: Ok when together they
/// are the generator's pattern from its first byte to its `total`th, each
/// byte once.
fn read_rotated(path: &std::path::Path, total: u64) -> Result<(), String> {
    let mut offset = 0u64;
    for index in (1..=10).rev() {
        let backup = vigil_integration::backup_of(path, index);
        let Ok(bytes) = std::fs::read(&backup) else { continue };
        check_pattern(&bytes, offset).map_err(|e| format!("{}: {e}", backup.display()))?;
        offset += bytes.len() as u64;
    }
    let current = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_pattern(&current, offset).map_err(|e| format!("{}: {e}", path.display()))?;
    let kept = offset + current.len() as u64;
    if kept == total {
        Ok(())
    } else {
        Err(format!("{kept} bytes kept of {total}: every byte must be kept once"))
    }
}

/// `maintail -f` follows the activity log across its own rotations: what it
/// prints is one contiguous piece of the log, nothing lost or repeated.
#[test]
fn maintail_follow_survives_rotation() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("logfile_maxbytes", "2000");
    sandbox.supervisord_key("logfile_backups", "200");
    sandbox.write_config(&[Program::child("churn", &["--sleep", "0.05", "--exit", "1"])
        .set("startsecs", 0)
        .set("autorestart", "true")
        .set("stdout_logfile", "NONE")
        .set("stderr_logfile", "NONE")]);
    let daemon = sandbox.start();
    let follower = daemon.follow(&["maintail", "-f"]);
    follower.wait_output("the header", |out| out.starts_with("==> Press Ctrl-C to exit <==\n"));
    let main_log = sandbox.main_log();
    // Twelve rotations, so that what was followed holds more than ten files'
    // worth: the lines logged before the follower attached (start-up, the
    // first restarts) are in the oldest files but not in what it prints.
    wait_until(TIMEOUT, "twelve rotations of the activity log", || {
        vigil_integration::backup_of(&main_log, 12).exists()
    });
    daemon.ctl(&["stop", "churn"]).expect_code(0);
    let marker = "stopped: churn";
    let output = follower.wait_output("the stop", |out| out.contains(marker));
    drop(follower);
    let body = output.strip_prefix("==> Press Ctrl-C to exit <==\n").unwrap();
    assert!(!body.contains("File truncated"), "nothing skipped");
    let mut full = Vec::new();
    for index in (1..=200).rev() {
        if let Ok(bytes) = std::fs::read(vigil_integration::backup_of(&main_log, index)) {
            full.extend_from_slice(&bytes);
        }
    }
    full.extend_from_slice(&std::fs::read(&main_log).unwrap());
    let full = String::from_utf8_lossy(&full);
    let end = body.find(marker).unwrap();
    let piece = &body[..end];
    assert!(piece.len() > 10 * 2000, "followed only {} bytes", piece.len());
    assert!(full.contains(piece), "the followed text is not one contiguous piece of the log");
}

/// After `clear`, a follower goes on with the new output and repeats nothing.
/// (supervisord's logtail would also print `==> File truncated <==`; Vigil's
/// offsets only grow, and a clear skips no byte the follower had not read.)
#[test]
fn tail_follow_continues_after_clear() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "talker",
        &["--echo", "before", "--sleep", "5", "--echo", "after", "--sleep", "3600"],
    )
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("talker");
    wait_out_line(&sandbox, "talker", "before");
    let follower = daemon.follow(&["tail", "-f", "talker"]);
    follower.wait_output("the first line", |out| out.ends_with("before\n"));
    daemon.ctl(&["clear", "talker"]).expect_code(0).expect_lines(&["talker: cleared"]);
    let output = follower.wait_output("the line after the clear", |out| out.ends_with("after\n"));
    assert_eq!(output.matches("before").count(), 1, "{output}");
    assert_eq!(sandbox.read_text("logs/talker.out"), "after\n");
}

/// Output is bytes, not text: invalid UTF-8 is logged as it came (supervisord's
/// issue-565/638/1231 fixtures) and `tail` still works.
#[test]
fn invalid_utf8_output_is_kept_as_is() {
    let raw = "ff00fe41c3286162e282a80a";
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child(
        "binary",
        &["--write-hex", raw, "--echo", "done", "--sleep", "3600"],
    )
    .set("startsecs", 0)]);
    let daemon = sandbox.start();
    daemon.running_pid("binary");
    wait_out_line(&sandbox, "binary", "done");
    let mut expected: Vec<u8> = (0..raw.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&raw[at..at + 2], 16).unwrap())
        .collect();
    expected.extend_from_slice(b"done\n");
    assert_eq!(sandbox.read("logs/binary.out"), expected);
    let tail = daemon.ctl(&["tail", "binary"]);
    tail.expect_code(0);
    assert!(tail.stdout.ends_with("done\n\n"), "{tail:#?}");
}

/// A log that cannot be written (/dev/full: every write fails with ENOSPC)
/// neither blocks its program nor anything else; the failure is logged.
#[test]
fn unwritable_log_blocks_nothing() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child(
            "doomed",
            &["--write-bytes", "10000000", "--write-stderr", "finished", "--sleep", "3600"],
        )
        .set("startsecs", 0)
        .set("stdout_logfile", "/dev/full")
        .set("stdout_logfile_maxbytes", 0),
        Program::child("healthy", &["--echo", "fine", "--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("doomed");
    daemon.running_pid("healthy");
    wait_out_line(&sandbox, "healthy", "fine");
    // The pipe is drained even though nothing can be stored.
    wait_until(TIMEOUT, "doomed to get past its 10 MB", || {
        sandbox.read_text("logs/doomed.err").contains("finished")
    });
    assert_eq!(daemon.state("doomed"), "RUNNING");
    daemon.ctl(&["status"]).expect_code(0);
    let log = daemon.main_log();
    assert!(
        log.contains("/dev/full") || log.to_lowercase().contains("no space"),
        "the write error is logged:\n{log}"
    );
}

/// A restart appends to the log; an updated log path sends new output to the
/// new file and leaves the old one as it was.
#[test]
fn restart_appends_and_a_new_log_path_takes_over() {
    let sandbox = Sandbox::new();
    let program =
        Program::child("writer", &["--echo", "run", "--sleep", "3600"]).set("startsecs", 0);
    sandbox.write_config(std::slice::from_ref(&program));
    let daemon = sandbox.start();
    daemon.running_pid("writer");
    wait_out_line(&sandbox, "writer", "run");
    daemon.ctl(&["restart", "writer"]).expect_code(0);
    wait_until(TIMEOUT, "two runs in the log", || {
        sandbox.read_text("logs/writer.out") == "run\nrun\n"
    });
    let moved = sandbox.join("logs/writer-moved.out");
    sandbox.write_config(&[program.set("stdout_logfile", moved.display())]);
    daemon
        .ctl(&["update"])
        .expect_code(0)
        .expect_lines(&["writer: stopped", "writer: updated process group"]);
    daemon.running_pid("writer");
    wait_until(TIMEOUT, "the new log", || {
        std::fs::read_to_string(&moved).is_ok_and(|t| t == "run\n")
    });
    assert_eq!(sandbox.read_text("logs/writer.out"), "run\nrun\n");
}

/// Eight programs writing 4 MB each at once: every log is exact, nothing
/// crosses over; a last line without a newline is kept too.
#[test]
fn parallel_writers_each_get_their_exact_output() {
    let total = 4 * MIB;
    let sandbox = Sandbox::new();
    let mut programs: Vec<Program> = (0..8)
        .map(|n| {
            Program::child(&format!("w{n}"), &["--write-bytes", &total.to_string()])
                .set("startsecs", 0)
                .set("autorestart", "false")
                .set("stdout_logfile_maxbytes", 0)
        })
        .collect();
    programs.push(
        Program::child("partial", &["--write-hex", "616263"])
            .set("startsecs", 0)
            .set("autorestart", "false"),
    );
    sandbox.write_config(&programs);
    let daemon = sandbox.start();
    for n in 0..8 {
        let path = sandbox.stdout_log(&format!("w{n}"));
        wait_until(TIMEOUT, &format!("w{n}'s output"), || {
            std::fs::metadata(&path).is_ok_and(|m| m.len() >= total)
        });
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, total, "w{n}");
        check_pattern(&bytes, 0).unwrap_or_else(|e| panic!("w{n}: {e}"));
    }
    daemon.wait_state("partial", "EXITED");
    wait_until(TIMEOUT, "the partial line", || sandbox.read_text("logs/partial.out") == "abc");
}

/// Descriptors of `pid` open on `path` (from /proc/<pid>/fd).
fn open_on(pid: i32, path: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    entries
        .flatten()
        .filter(|entry| std::fs::read_link(entry.path()).is_ok_and(|target| target == path))
        .count()
}

#[test]
fn a_stopped_programs_log_is_closed_and_reopened_at_its_next_write() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("once", &["--echo", "hello"])
        .set("startsecs", 0)
        .set("autorestart", "false")]);
    let daemon = sandbox.start();
    daemon.wait_state("once", "EXITED");
    let path = sandbox.stdout_log("once");
    wait_until(TIMEOUT, "the output in the log", || {
        std::fs::read_to_string(&path).is_ok_and(|text| text == "hello\n")
    });
    // Deleting the log of a stopped program frees its space: vigild holds
    // no descriptor on it.
    wait_until(TIMEOUT, "vigild to close the log", || open_on(daemon.pid(), &path) == 0);
    std::fs::remove_file(&path).unwrap();
    daemon.ctl(&["start", "once"]);
    wait_until(TIMEOUT, "the next run's output in a new file", || {
        std::fs::read_to_string(&path).is_ok_and(|text| text == "hello\n")
    });
    wait_until(TIMEOUT, "vigild to close it again", || open_on(daemon.pid(), &path) == 0);
}

/// Makes `dir` unwritable for vigild: a read-only tmpfs over it as root
/// (root ignores permission bits), mode 0555 otherwise. Undone on drop.
struct ReadOnly {
    dir: std::path::PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn new(dir: std::path::PathBuf) -> ReadOnly {
        if !vigil_integration::is_root() {
            set_mode(&dir, 0o555);
            return ReadOnly { dir, mounted: false };
        }
        let mut mount = std::process::Command::new("mount");
        mount.args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"]).arg(&dir);
        vigil_integration::run(&mut mount, TIMEOUT).expect_code(0);
        ReadOnly { dir, mounted: true }
    }

    /// Makes the directory writable again.
    fn undo(&mut self) {
        if self.mounted {
            umount(&self.dir).expect_code(0);
            self.mounted = false;
        } else {
            set_mode(&self.dir, 0o755);
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            umount(&self.dir);
        } else {
            set_mode(&self.dir, 0o755);
        }
    }
}

fn umount(dir: &std::path::Path) -> vigil_integration::Output {
    vigil_integration::run(std::process::Command::new("umount").arg(dir), TIMEOUT)
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A log that cannot be opened fails only its own program, as supervisord
/// does: the rest runs, that program goes FATAL with the error as its spawn
/// error (a plain log and an AUTO one in `childlogdir`), and a later start
/// works once the directory does.
#[test]
fn an_unwritable_log_directory_fails_only_its_programs() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("auto", &["--sleep", "3600"])
            .set("startretries", 0)
            .set("stdout_logfile", "AUTO")
            .set("redirect_stderr", "true"),
        Program::child("fixed", &["--echo", "started", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("startretries", 0),
        Program::child("good", &["--echo", "fine", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("stdout_logfile", sandbox.join("good.out").display())
            .set("redirect_stderr", "true"),
    ]);
    // `logs` is both the programs' log directory and `childlogdir`.
    let mut read_only = ReadOnly::new(sandbox.join("logs"));
    let daemon = sandbox.start();
    let why =
        if vigil_integration::is_root() { "Read-only file system" } else { "Permission denied" };
    for name in ["auto", "fixed"] {
        let description = daemon.wait_state(name, "FATAL");
        assert!(
            description.contains("cannot open the stdout log") && description.contains(why),
            "{name}: {description}"
        );
    }
    daemon.running_pid("good");
    wait_until(TIMEOUT, "good's output", || sandbox.read_text("good.out") == "fine\n");
    assert!(daemon.main_log().contains("cannot open the stdout log"), "{}", daemon.main_log());
    // The directory becomes writable: the next start opens the log.
    read_only.undo();
    daemon.ctl(&["start", "fixed"]).expect_code(0);
    wait_out_line(&sandbox, "fixed", "started");
    daemon.ctl(&["start", "auto"]).expect_code(0);
    daemon.wait_state("auto", "RUNNING");
}
