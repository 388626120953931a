//! S9's shutdown reference with a supervisor's descriptors: it stops every
//! sleeper it spawned, closes every pipe, logs a line for each, and leaves
//! none running when it is dropped before the stop.

use std::time::{Duration, Instant};
use vigil_bench::reaper::Reaper;
use vigil_bench::stopfloor::Captured;

// One test function: one waitpid(-1) reaper per process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_logs_and_cleans_up() {
    let reaper = Reaper::install().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let captured = Captured::spawn(&reaper, 8).unwrap();
    let pids = captured.pids();
    assert_eq!(pids.len(), 8);
    let log = dir.path().join("stops.log");
    captured.stop(&log, Duration::from_secs(30)).await.unwrap();
    assert!(pids.iter().all(|pid| !reaper.is_live(*pid)), "every sleeper reaped");
    let text = std::fs::read_to_string(&log).unwrap();
    let expected: Vec<String> =
        pids.iter().map(|pid| format!("stopped: sleeper {pid} (terminated by SIGTERM)")).collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);

    // Dropped without a stop (an error on the way): SIGKILLed and reaped.
    let captured = Captured::spawn(&reaper, 3).unwrap();
    let pids = captured.pids();
    assert!(pids.iter().all(|pid| reaper.is_live(*pid)));
    drop(captured);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|pid| reaper.is_live(*pid)) {
        assert!(Instant::now() < deadline, "sleepers left running after the drop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
