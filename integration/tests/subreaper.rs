//! Orphan reaping through `PR_SET_CHILD_SUBREAPER`.
//!
//! A separate test binary because the subreaper flag is process-wide: every orphan of
//! any test in this process would be adopted.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use vigil_core::exit::ExitStatus;
use vigil_core::reaper::Reaper;
use vigil_core::spawn::SpawnSpec;

const CHILD: &str = env!("CARGO_BIN_EXE_vigil-test-child");

#[tokio::test]
async fn orphans_are_adopted_and_reaped() {
    let reaper = Reaper::start(true).unwrap();
    let before = reaper.orphans_reaped();
    let argv = [CHILD, "--orphan", "0.3"].iter().map(|a| (*a).to_owned()).collect();
    let mut spawned = reaper.spawn(&SpawnSpec::new(argv)).unwrap();
    let mut out = String::new();
    let mut stdout = spawned.stdout.take().unwrap();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(60), &mut spawned.exit).await.unwrap().unwrap();
    assert_eq!(status, ExitStatus::Code(0));
    let orphan: i32 = out.trim().strip_prefix("orphan=").unwrap().parse().unwrap();
    // Adopted by us, the orphan exits after 0.3 s and must be reaped, not left a zombie.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{orphan}")).exists() {
        if tokio::time::Instant::now() > deadline {
            // Clean up before failing: the orphan is ours now.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(orphan),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("orphan {orphan} was not reaped");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(reaper.orphans_reaped() > before);
}
