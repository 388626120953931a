//! Runs the binary's `gen` and `exit` modes for real and checks the output
//! with the log verifier, as S6 and S8 do under a daemon; and its `respawn`
//! mode, S5's reference, with real kills.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;
use vigil_bench::logs::{self, VerifyError};
use vigil_bench::reaper::{Exit, Reaper};

const EXE: &str = env!("CARGO_BIN_EXE_vigil-bench");

/// Runs the binary with `args`, stdout to `stdout`, stderr to `stderr`, and
/// returns how it ended (bounded: a hung child is killed and fails the test).
async fn run(reaper: &Reaper, args: &[&str], stdout: File, stderr: File) -> Exit {
    let mut cmd = Command::new(EXE);
    cmd.args(args).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    let spawned = reaper.spawn(&mut cmd).unwrap();
    drop(cmd);
    match tokio::time::timeout(Duration::from_secs(60), spawned.exit).await {
        Ok(exit) => exit.unwrap(),
        Err(_) => {
            reaper.signal_live(spawned.pid, nix::sys::signal::Signal::SIGKILL);
            panic!("vigil-bench {args:?} did not finish within 60 s");
        }
    }
}

// One test function: a process has one waitpid(-1) reaper, and test
// functions run in parallel threads of one process, each with its own
// runtime, so two reapers would steal each other's statuses.
#[tokio::test]
async fn generator_and_exit_modes() {
    let reaper = Reaper::install().unwrap();
    generator_output_verifies_whole_and_as_a_rotated_tail(&reaper).await;
    exit_mode_exits_with_the_code(&reaper).await;
    generator_refuses_a_partial_line(&reaper).await;
    respawn_mode_restarts_its_sleep_until_stdin_closes(&reaper).await;
}

/// The helper's `sleep 100000` child other than `not`, once it has exec'd.
async fn sleep_child(helper: i32, not: Option<i32>) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = vigil_bench::procfs::children(helper).into_iter().find(|&pid| {
            Some(pid) != not && vigil_bench::procfs::cmdline(pid) == ["sleep", "100000"]
        });
        if let Some(pid) = found {
            return pid;
        }
        assert!(tokio::time::Instant::now() < deadline, "no sleep child of {helper} within 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn respawn_mode_restarts_its_sleep_until_stdin_closes(reaper: &Reaper) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let orphans = reaper.orphans_reaped();
    let mut cmd = Command::new(EXE);
    cmd.arg("respawn").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut helper = reaper.spawn(&mut cmd).unwrap();
    let stdin = helper.child.stdin.take();
    let first = sleep_child(helper.pid, None).await;
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let second = sleep_child(helper.pid, Some(first)).await;
    assert_ne!(first, second);
    // Closing stdin stops it: it kills and reaps its sleep, then exits 0.
    drop(stdin);
    let exit = match tokio::time::timeout(Duration::from_secs(30), &mut helper.exit).await {
        Ok(exit) => exit.unwrap(),
        Err(_) => {
            reaper.signal_live(helper.pid, Signal::SIGKILL);
            panic!("vigil-bench respawn did not stop within 30 s of its stdin closing");
        }
    };
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(kill(Pid::from_raw(second), None), Err(nix::errno::Errno::ESRCH), "sleep left");
    assert_eq!(reaper.orphans_reaped(), orphans, "the helper left a child to the harness");
}

async fn generator_output_verifies_whole_and_as_a_rotated_tail(reaper: &Reaper) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen.out");
    let err = dir.path().join("gen.err");
    let total = 3_000_000;
    let exit = run(
        reaper,
        &["gen", &total.to_string()],
        File::create(&out).unwrap(),
        File::create(&err).unwrap(),
    )
    .await;
    assert_eq!(exit, Exit::Code(0));

    // The start stamp is one line on stderr, taken on the system-wide clock.
    let stamp = std::fs::read_to_string(&err).unwrap();
    let ns: u64 =
        stamp.trim().strip_prefix(vigil_bench::GEN_START_PREFIX).unwrap().parse().unwrap();
    assert!(ns <= vigil_bench::monotonic_ns());

    let whole = logs::verify(std::slice::from_ref(&out), total, true).unwrap();
    assert_eq!(whole.complete_lines, 30_000);
    assert!(logs::ends_with_last_line(&out, total));

    // Cut the same bytes the way a rotating daemon does (at arbitrary
    // offsets, oldest data dropped) and check the kept tail.
    let bytes = std::fs::read(&out).unwrap();
    let live = dir.path().join("p.out");
    let files = logs::rotated_files(&live, 2);
    std::fs::write(&files[0], &bytes[1_048_577..2_097_153]).unwrap();
    std::fs::write(&files[1], &bytes[2_097_153..2_900_001]).unwrap();
    std::fs::write(&files[2], &bytes[2_900_001..]).unwrap();
    let tail = logs::verify(&files, total, false).unwrap();
    assert_eq!(tail.first_offset, 1_048_577);
    assert_eq!(tail.complete_lines, 30_000 - 10_486);

    // A duplicated block (a retried write) is caught.
    let mut doubled = bytes[2_900_001..].to_vec();
    doubled.splice(0..0, bytes[2_899_901..2_900_001].iter().copied());
    std::fs::write(&files[2], &doubled).unwrap();
    assert!(matches!(logs::verify(&files, total, false), Err(VerifyError::Mismatch { .. })));
}

async fn exit_mode_exits_with_the_code(reaper: &Reaper) {
    let dir = tempfile::tempdir().unwrap();
    let sink = || File::create(dir.path().join("sink")).unwrap();
    assert_eq!(run(reaper, &["exit", "3"], sink(), sink()).await, Exit::Code(3));
}

async fn generator_refuses_a_partial_line(reaper: &Reaper) {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("err");
    let exit = run(
        reaper,
        &["gen", "150"],
        File::create(dir.path().join("out")).unwrap(),
        File::create(&err).unwrap(),
    )
    .await;
    assert_eq!(exit, Exit::Code(1));
    assert!(std::fs::read_to_string(&err).unwrap().contains("not a multiple"));
}
