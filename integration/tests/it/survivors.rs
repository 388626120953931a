//! A vigild killed with SIGKILL leaves its programs running; the next vigild
//! on the same config stops them (and says so) before it starts its own, so
//! each program runs exactly once.

use nix::sys::signal::Signal;
use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, wait_until};

/// Sleep lengths no other test uses, so each program's processes can be told
/// apart by their command line.
const PROGRAMS: [(&str, &str); 3] = [("one", "3617"), ("two", "3619"), ("three", "3623")];

/// Live processes running `program`'s command line whose parent is one of
/// `parents`.
fn copies(seconds: &str, parents: &[i32]) -> Vec<i32> {
    let want = format!("{} --sleep {seconds}", vigil_integration::child_bin().display());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            procfs::alive(*pid)
                && procfs::stat(*pid).is_some_and(|stat| parents.contains(&stat.ppid))
                && procfs::cmdline(*pid) == want
        })
        .collect()
}

#[test]
fn after_vigild_is_killed_the_next_one_stops_the_survivors_instead_of_duplicating_them() {
    let sandbox = Sandbox::new();
    let programs: Vec<Program> = PROGRAMS
        .iter()
        .map(|(name, seconds)| Program::child(name, &["--sleep", seconds]).set("startsecs", 0))
        .collect();
    sandbox.write_config(&programs);
    let mut first = sandbox.start();
    let old: Vec<i32> = PROGRAMS.iter().map(|(name, _)| first.running_pid(name)).collect();
    for pid in &old {
        // Killed (and reaped) when `first` is dropped, even if the test fails.
        first.tolerate(*pid);
    }
    let record = sandbox.join("vigild.state/children");
    wait_until(TIMEOUT, "vigild to record its children", || {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        old.iter().all(|pid| text.lines().any(|line| line.starts_with(&format!("{pid} "))))
    });
    first.signal(Signal::SIGKILL);
    first.wait_exit(TIMEOUT);
    assert!(old.iter().all(|pid| procfs::alive(*pid)), "the programs outlive a killed vigild");

    let second = sandbox.start();
    for (pid, (name, _)) in old.iter().zip(PROGRAMS) {
        wait_until(TIMEOUT, &format!("{name}'s old copy {pid} to be stopped"), || {
            !procfs::alive(*pid)
        });
    }
    let me = i32::try_from(std::process::id()).expect("pid fits");
    for (name, seconds) in PROGRAMS {
        let pid = second.running_pid(name);
        assert!(!old.contains(&pid), "{name} was started anew");
        assert_eq!(copies(seconds, &[second.pid(), first.pid(), me, 1]), [pid], "one {name}");
    }
    let log = second.main_log();
    for pid in &old {
        assert!(
            log.lines()
                .any(|line| line.contains(&format!("pid {pid} ("))
                    && line.contains("earlier vigild")),
            "stopping {pid} is logged\n{log}"
        );
    }
    drop(second);
    assert!(!record.exists(), "a clean shutdown leaves no record of children behind");
}
