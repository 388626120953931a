//! A program running as another user cannot make root vigild write, create,
//! move or delete a file through its log directory: symbolic and hard links
//! it plants there are refused at the first open, at rotation, at reopen
//! (SIGUSR2) and at `clear`, and the refusal shows in the program's status
//! and in the activity log. Needs root (to run programs as `nobody`).

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use vigil_integration::{Daemon, Program, Sandbox, TIMEOUT, is_root, wait_until};

const VICTIM: &str = "root's own file\n";

/// A directory `nobody` owns (the program's log directory) and a root-owned
/// file outside it that must stay as it is.
struct Hostile {
    sandbox: Sandbox,
    nobdir: PathBuf,
    victim: PathBuf,
}

fn hostile() -> Option<Hostile> {
    if !is_root() {
        println!("skipped: switching programs to user nobody needs root");
        return None;
    }
    let sandbox = Sandbox::new();
    let nobdir = sandbox.join("nobdir");
    std::fs::create_dir(&nobdir).unwrap();
    chown_nobody(&nobdir);
    let victim = sandbox.join("victim");
    std::fs::write(&victim, VICTIM).unwrap();
    Some(Hostile { sandbox, nobdir, victim })
}

fn chown_nobody(path: &Path) {
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user");
    std::os::unix::fs::chown(path, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).unwrap();
}

fn evil(name: &str, args: &[&str], log: &Path) -> Program {
    Program::child(name, args)
        .set("user", "nobody")
        .set("startsecs", 0)
        .set("autorestart", "false")
        .set("stdout_logfile", log.display())
        .set("redirect_stderr", "true")
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// Waits until `name`'s status says its stdout log was refused.
#[track_caller]
fn wait_refused(daemon: &Daemon, name: &str) -> String {
    let mut last = String::new();
    wait_until(TIMEOUT, "the status to show the refused log", || {
        last = daemon.status_of(name).map(|(_, description)| description).unwrap_or_default();
        last.contains("stdout log: refused to use")
    });
    last
}

#[test]
fn a_symlink_planted_before_the_first_write_is_not_followed() {
    let Some(Hostile { sandbox, nobdir, victim }) = hostile() else { return };
    let created = sandbox.join("created_by_root");
    let payload = "* * * * * root id > /tmp/pwned";
    sandbox.write_config(&[
        evil(
            "creator",
            &[
                "--symlink",
                &arg(&created),
                &arg(&nobdir.join("c.log")),
                "--echo",
                payload,
                "--sleep",
                "1000",
            ],
            &nobdir.join("c.log"),
        ),
        evil(
            "appender",
            &[
                "--symlink",
                &arg(&victim),
                &arg(&nobdir.join("a.log")),
                "--echo",
                payload,
                "--sleep",
                "1000",
            ],
            &nobdir.join("a.log"),
        ),
    ]);
    let daemon = sandbox.start();
    let description = wait_refused(&daemon, "creator");
    assert!(description.contains("symbolic link"), "{description}");
    wait_refused(&daemon, "appender");
    assert_eq!(daemon.state("creator"), "RUNNING");
    assert!(!created.exists(), "root created the file the program pointed its log at");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM);
    let main_log = daemon.main_log();
    assert!(main_log.contains("refused to use"), "{main_log}");
    // What the program wrote is still served from memory.
    let tail = daemon.ctl(&["tail", "appender"]);
    assert!(tail.stdout.contains(payload), "{tail:#?}");
}

#[test]
fn a_hard_link_to_a_root_file_is_not_written() {
    let Some(Hostile { sandbox, nobdir, victim }) = hostile() else { return };
    let log = nobdir.join("h.log");
    let go = sandbox.join("go");
    sandbox.write_config(&[evil(
        "linker",
        &["--wait-file", &arg(&go), "--echo", "payload", "--sleep", "1000"],
        &log,
    )]);
    let daemon = sandbox.start();
    daemon.wait_state("linker", "RUNNING");
    // vigild makes the missing file after the spawn, on a thread of low
    // priority, which on a busy machine can be after RUNNING: the test
    // replaces that file, so it waits for it.
    wait_until(TIMEOUT, "vigild to make the log file", || log.exists());
    // What a program can do where hard links to others' files are allowed
    // (fs.protected_hardlinks=0); the test does it for it.
    std::fs::remove_file(&log).unwrap();
    std::fs::hard_link(&victim, &log).unwrap();
    std::fs::write(&go, "").unwrap();
    let description = wait_refused(&daemon, "linker");
    assert!(description.contains("hard links"), "{description}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), VICTIM);
}

/// A program whose log lives in `nobdir/sub`: once `go` exists it moves
/// `sub` away and puts a link to a root directory in its place, then runs
/// `then`. Returns the sandbox, the daemon and the root directory, whose
/// `out.log` holds [`VICTIM`].
fn swapped_directory(then: &[&str]) -> Option<(Sandbox, Daemon, PathBuf, PathBuf)> {
    let Hostile { sandbox, nobdir, .. } = hostile()?;
    let sub = nobdir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    chown_nobody(&sub);
    let rootdir = sandbox.join("rootdir");
    std::fs::create_dir(&rootdir).unwrap();
    std::fs::write(rootdir.join("out.log"), VICTIM).unwrap();
    let go = sandbox.join("go");
    let mut args = vec![
        "--echo".to_owned(),
        "first".to_owned(),
        "--wait-file".to_owned(),
        arg(&go),
        "--rename".to_owned(),
        arg(&sub),
        arg(&nobdir.join("old")),
        "--symlink".to_owned(),
        arg(&rootdir),
        arg(&sub),
    ];
    args.extend(then.iter().map(|word| (*word).to_owned()));
    args.extend(["--sleep".to_owned(), "1000".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.write_config(&[evil("swapper", &args, &sub.join("out.log"))
        .set("directory", sandbox.path().display())
        .set("stdout_logfile_maxbytes", 1000)
        .set("stdout_logfile_backups", 2)]);
    let daemon = sandbox.start();
    let moved = nobdir.join("old/out.log");
    wait_until(TIMEOUT, "the first line in the log", || {
        std::fs::read_to_string(sub.join("out.log")).is_ok_and(|text| text == "first\n")
    });
    std::fs::write(&go, "").unwrap();
    Some((sandbox, daemon, rootdir, moved))
}

fn assert_untouched(rootdir: &Path) {
    assert_eq!(std::fs::read_to_string(rootdir.join("out.log")).unwrap(), VICTIM);
    let names: Vec<_> =
        std::fs::read_dir(rootdir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["out.log"], "root's directory changed");
}

#[test]
fn rotation_does_not_follow_a_swapped_directory() {
    let Some((_sandbox, daemon, rootdir, moved)) = swapped_directory(&["--write-bytes", "5000"])
    else {
        return;
    };
    wait_refused(&daemon, "swapper");
    // The open file keeps the bytes; the rotation that came due was refused.
    wait_until(TIMEOUT, "the output in the file still open", || {
        std::fs::metadata(&moved).is_ok_and(|m| m.len() >= 5006)
    });
    assert_untouched(&rootdir);
}

#[test]
fn reopen_and_clear_do_not_follow_a_swapped_directory() {
    let Some((sandbox, daemon, rootdir, moved)) =
        swapped_directory(&["--echo", "second", "--wait-file", "go2", "--echo", "third"])
    else {
        return;
    };
    wait_until(TIMEOUT, "the second line in the file still open", || {
        std::fs::read_to_string(&moved).is_ok_and(|text| text.contains("second"))
    });
    daemon.signal(Signal::SIGUSR2);
    wait_until(TIMEOUT, "the refused reopen in the activity log", || {
        daemon.main_log().contains("cannot reopen the stdout log of 'swapper'")
    });
    // Relative to the child's directory, the sandbox.
    std::fs::write(sandbox.join("go2"), "").unwrap();
    wait_until(TIMEOUT, "the third line in memory", || {
        daemon.ctl(&["tail", "swapper"]).stdout.contains("third")
    });
    assert_untouched(&rootdir);
    let cleared = daemon.ctl(&["clear", "swapper"]);
    assert!(cleared.stdout.contains("ERROR"), "{cleared:#?}");
    assert_untouched(&rootdir);
    wait_refused(&daemon, "swapper");
}
