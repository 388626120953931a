//! vigil-bench: runs the performance scenarios (S1-S9) against vigild and
//! supervisord side by side, and the scenarios that fit their model against
//! s6 and Horust, measuring each supervisor from the outside.
//!
//! The harness launches every daemon itself, in the foreground, in a fresh
//! directory with its own config, and observes it only through its control
//! CLI, one direct XML-RPC call, `/proc` and the program log files. vigild
//! and supervisord are black boxes with the same contract (supervisord's);
//! s6 and Horust get the same programs in their own config formats (`s6`,
//! `horust`) and are observed through `/proc` alone.
//!
//! The pure parts (parsers, config writers, statistics, log verification)
//! are separate modules with unit tests; `run` and `scenarios` hold the parts
//! that spawn processes.

pub mod config;
pub mod execwatch;
pub mod horust;
pub mod logs;
pub mod procfs;
pub mod reaper;
pub mod report;
pub mod run;
pub mod s6;
pub mod scenarios;
pub mod stats;
pub mod status;
pub mod stopfloor;
pub mod target;
pub mod xmlrpc;

/// CLOCK_MONOTONIC in nanoseconds. It is system-wide on Linux, so a time
/// stamp taken in the generator process compares with one taken here.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_MONOTONIC is always available");
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Prefix of the line the generator writes to stderr before its output:
/// followed by its CLOCK_MONOTONIC start time in nanoseconds.
pub const GEN_START_PREFIX: &str = "vigil-bench gen start monotonic ns ";
