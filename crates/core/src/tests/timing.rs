//! supervisord's timing, measured in virtual time against fake children.

use std::time::Duration;

use tokio::time::Instant;

use super::fixtures::{group, program, solo};
use super::{assert_about, boot, spec, specs, until_state};
use crate::ProcessState;

#[tokio::test(start_paused = true)]
async fn crash_loop_waits_one_two_three_seconds_then_goes_fatal() {
    let (handle, fake, _dir) =
        boot(vec![solo(program("crasher", &["/bin/sh", "exit", "1", "0"]))]).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    let results = handle.start(&specs(&["crasher"]), false).await;
    assert_eq!(results, [(spec("crasher"), Ok(()))]);
    let fatal_at = until_state(&mut events, "crasher", ProcessState::Fatal).await;
    let spawns: Vec<Duration> = fake.spawns().iter().map(|s| s.at - t0).collect();
    assert_eq!(spawns.len(), 4, "startretries=3 means 4 attempts: {spawns:?}");
    for (actual, expected) in spawns.iter().zip([0, 1, 3, 6]) {
        assert_about(*actual, Duration::from_secs(expected));
    }
    assert_about(fatal_at - t0, Duration::from_secs(6));
    let info = handle.process_info(Some(&spec("crasher"))).await.expect("info");
    assert_eq!(info[0].statename, "FATAL");
    assert_eq!(info[0].description, "Exited too quickly (process log may have details)");
    assert_eq!(info[0].pid, 0);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn startsecs_gates_running_and_start_wait_returns_then() {
    let mut process = program("web", &["/bin/sh", "run"]);
    process.startsecs = 5;
    let (handle, fake, _dir) = boot(vec![solo(process)]).await;
    let t0 = Instant::now();
    let results = handle.start(&specs(&["web"]), true).await;
    assert_eq!(results, [(spec("web"), Ok(()))]);
    assert_about(t0.elapsed(), Duration::from_secs(5));
    let info = handle.process_info(Some(&spec("web"))).await.expect("info");
    assert_eq!(info[0].state, ProcessState::Running);
    assert_eq!(info[0].pid, fake.spawns()[0].pid);
    assert!(info[0].description.starts_with(&format!("pid {}, uptime 0:00:0", info[0].pid)));
    handle.shutdown().await;
    assert_eq!(fake.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn stop_escalates_to_sigkill_every_stopwaitsecs() {
    let mut process = program("stubborn", &["/bin/sh", "stubborn"]);
    process.stopwaitsecs = 3;
    process.killasgroup = true;
    let (handle, fake, _dir) = boot(vec![solo(process)]).await;
    assert_eq!(handle.start(&specs(&["stubborn"]), true).await[0].1, Ok(()));
    let pid = fake.spawns()[0].pid;
    let t0 = Instant::now();
    let results = handle.stop(&specs(&["stubborn"]), true).await;
    assert_eq!(results, [(spec("stubborn"), Ok(()))]);
    assert_about(t0.elapsed(), Duration::from_secs(3));
    let signals: Vec<(u32, i32, bool)> =
        fake.signals().iter().map(|s| (s.pid, s.sig, s.group)).collect();
    // stopasgroup is off for the TERM, killasgroup is on for the KILL.
    assert_eq!(signals, [(pid, libc::SIGTERM, false), (pid, libc::SIGKILL, true)]);
    let info = handle.process_info(Some(&spec("stubborn"))).await.expect("info");
    assert_eq!(info[0].state, ProcessState::Stopped);
    assert_eq!(info[0].exitstatus, -1);
    assert_ne!(info[0].description, "Not started");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unexpected_exit_after_running_restarts_without_delay() {
    let mut process = program("flaky", &["/bin/sh", "exit", "3", "2000"]);
    process.startsecs = 1;
    let (handle, fake, _dir) = boot(vec![solo(process)]).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["flaky"]), false).await;
    until_state(&mut events, "flaky", ProcessState::Exited).await;
    until_state(&mut events, "flaky", ProcessState::Starting).await;
    let spawns = fake.spawns();
    assert_eq!(spawns.len(), 2);
    // Event-driven: the respawn happens at the instant of the exit, no 1 s tick.
    assert_about(spawns[1].at - t0, Duration::from_secs(2));
    handle.stop(&specs(&["flaky"]), true).await;
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn autorestart_false_and_expected_exits_stay_exited() {
    let mut never = program("never", &["/bin/sh", "exit", "3", "2000"]);
    never.autorestart = vigil_config::AutoRestart::False;
    let expected = program("clean", &["/bin/sh", "exit", "0", "2000"]);
    let (handle, fake, _dir) = boot(vec![solo(never), solo(expected)]).await;
    let mut events = handle.subscribe();
    handle.start(&specs(&["never", "clean"]), false).await;
    until_state(&mut events, "never", ProcessState::Exited).await;
    let infos = handle.process_info(None).await.expect("info");
    let never = infos.iter().find(|i| i.name == "never").expect("never");
    let clean = infos.iter().find(|i| i.name == "clean").expect("clean");
    if clean.state != ProcessState::Exited {
        until_state(&mut events, "clean", ProcessState::Exited).await;
    }
    assert_eq!(never.spawnerr, "Bad exit code 3");
    assert_eq!(never.exitstatus, 3);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(fake.spawns().len(), 2, "neither was restarted");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn autostart_spawns_in_priority_order_without_waiting_for_running() {
    let mut first = program("first", &["/bin/sh", "run"]);
    first.autostart = true;
    first.startsecs = 10;
    let mut second = program("second", &["/bin/sh", "run"]);
    second.autostart = true;
    second.priority = 5;
    let mut third = program("third", &["/bin/sh", "run"]);
    third.autostart = true;
    let manual = program("manual", &["/bin/sh", "run"]);
    let t0 = Instant::now();
    let (handle, fake, _dir) =
        boot(vec![group("late", 50, vec![third]), group("early", 1, vec![first, second, manual])])
            .await;
    assert_eq!(fake.spawns().len(), 3, "manual stays stopped");
    let names: Vec<String> = handle
        .process_info(None)
        .await
        .expect("info")
        .into_iter()
        .filter(|i| i.pid != 0)
        .map(|i| (i.pid, i.namespec.to_string()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .collect();
    // Fake pids grow with spawn order: group priority first, then process priority.
    assert_eq!(names, ["early:second", "early:first", "late:third"]);
    assert!(fake.spawns().iter().all(|s| s.at == t0), "all in the same pass");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_groups_in_descending_priority_one_priority_at_a_time() {
    let low = program("low", &["/bin/sh", "run"]);
    let mut high = program("high", &["/bin/sh", "stubborn"]);
    high.stopwaitsecs = 4;
    let (handle, fake, _dir) =
        boot(vec![group("a", 1, vec![low]), group("b", 10, vec![high])]).await;
    let results = handle.start(&specs(&["all"]), true).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let t0 = Instant::now();
    handle.shutdown().await;
    let pid_of = |name: &str| {
        fake.spawns().iter().find(|s| s.argv[1] == name).map(|s| s.pid).expect("spawned")
    };
    let signals = fake.signals();
    let high_kill = signals
        .iter()
        .find(|s| s.pid == pid_of("stubborn") && s.sig == libc::SIGKILL)
        .expect("high was killed");
    let low_term = signals.iter().find(|s| s.pid == pid_of("run")).expect("low was stopped");
    assert_about(high_kill.at - t0, Duration::from_secs(4));
    assert!(low_term.at >= high_kill.at, "the lower group waited for the higher one");
    assert_eq!(fake.alive(), 0);
    assert!(handle.start(&specs(&["a:low"]), false).await[0].1.is_err(), "refused after shutdown");
}

#[tokio::test(start_paused = true)]
async fn thousands_of_processes_start_report_and_stop() {
    const COUNT: usize = 2000;
    let members: Vec<_> = (0..COUNT)
        .map(|n| {
            let mut process = program(&format!("p{n:05}"), &["/bin/sh", "run"]);
            process.autostart = true;
            process
        })
        .collect();
    let (handle, fake, _dir) = boot(vec![group("many", 1, members)]).await;
    assert_eq!(fake.spawns().len(), COUNT);
    let mut events = handle.subscribe();
    super::until(&mut events, || fake.alive() == COUNT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let real = std::time::Instant::now();
    let infos = handle.process_info(None).await.expect("info");
    let status_took = real.elapsed();
    assert_eq!(infos.len(), COUNT);
    assert!(infos.iter().all(|i| i.state == ProcessState::Running), "all passed startsecs");
    let real = std::time::Instant::now();
    handle.shutdown().await;
    let shutdown_took = real.elapsed();
    assert_eq!(fake.alive(), 0);
    if std::env::var_os("VIGIL_REPORT_TIMINGS").is_some() {
        eprintln!("{COUNT} processes: status {status_took:?}, shutdown {shutdown_took:?}");
    }
}

/// A shutdown stops groups of one priority together and waits for them all
/// before the next lower priority: two stubborn groups of priority 10 take one
/// `stopwaitsecs` after the one of priority 20, not two.
#[tokio::test(start_paused = true)]
async fn shutdown_stops_groups_of_one_priority_together() {
    let stubborn = |name: &str, priority: i32| {
        let mut process = program(name, &["/bin/sh", "stubborn"]);
        process.priority = priority;
        process.stopwaitsecs = 3;
        solo(process)
    };
    let (handle, fake, _dir) =
        boot(vec![stubborn("a", 10), stubborn("b", 10), stubborn("c", 20)]).await;
    assert!(handle.start(&specs(&["a", "b", "c"]), true).await.iter().all(|(_, r)| r.is_ok()));
    let c = handle.process_info(Some(&spec("c"))).await.expect("info")[0].pid;
    let t0 = Instant::now();
    handle.shutdown().await;
    assert_about(t0.elapsed(), Duration::from_secs(6));
    let kills: Vec<(u32, Duration)> = fake
        .signals()
        .iter()
        .filter(|s| s.sig == libc::SIGKILL)
        .map(|s| (s.pid, s.at - t0))
        .collect();
    assert_eq!(kills.len(), 3, "{kills:?}");
    assert_eq!(kills[0].0, c, "the higher priority stops first: {kills:?}");
    assert_about(kills[0].1, Duration::from_secs(3));
    for (_, at) in &kills[1..] {
        assert_about(*at, Duration::from_secs(6));
    }
    assert_eq!(fake.alive(), 0);
}
