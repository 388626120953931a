//! Vigil's extensions beyond supervisord, through the public [`Handle`]: group
//! strategies, the restart budget and its escalation, restart backoff shapes,
//! dependencies, and health probes.
//! Lifecycle timing runs on paused time against fake children; probes that
//! need real sockets (tcp, http, notify) run on real time with short periods.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use vigil_config::{
    BackoffKind, Config, Dependency, DependencyCondition, GroupConfig, OnFatal, Probe, ProbeKind,
    ProcessConfig, Signal, Strategy,
};

use super::fake::FakeSpawner;
use super::fixtures::{config, group, program, solo};
use super::{PATIENCE, assert_about, spec, specs, until, until_state};
use crate::{Event, Handle, Health, ProcessState, Supervisor, SupervisorOptions};

async fn boot_config(config: Config) -> (Handle, FakeSpawner) {
    let fake = FakeSpawner::default();
    let options = SupervisorOptions::with_spawner(Arc::new(fake.clone()));
    let handle = Supervisor::start(config, options).await.expect("supervisor starts");
    (handle, fake)
}

async fn boot(groups: Vec<GroupConfig>) -> (Handle, FakeSpawner, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (handle, fake) = boot_config(config(dir.path(), groups)).await;
    (handle, fake, dir)
}

/// A fake child that runs until signalled, told apart by `name` in its argv.
fn runner(name: &str) -> ProcessConfig {
    program(name, &["/bin/sh", "run", name])
}

fn depends(process: &mut ProcessConfig, name: &str, condition: DependencyCondition) {
    process.depends_on.push(Dependency { name: name.to_owned(), condition });
}

/// The `name` marker of a fake spawn (`run <name>`), or `exit` for scripted exits.
fn marker(argv: &[String]) -> String {
    match argv.get(1).map(String::as_str) {
        Some("run") => argv.get(2).cloned().unwrap_or_default(),
        Some(other) => other.to_owned(),
        None => String::new(),
    }
}

fn probe(kind: ProbeKind, period_ms: u64, threshold: u32) -> Box<Probe> {
    Box::new(Probe {
        kind,
        period: Duration::from_millis(period_ms),
        timeout: Duration::from_secs(1),
        failure_threshold: threshold,
        initial_delay: Duration::ZERO,
    })
}

async fn state_of(handle: &Handle, name: &str) -> crate::ProcessInfo {
    let info = handle.process_info(Some(&spec(name))).await.expect("info").remove(0);
    let row = handle.status_rows(Some(&spec(name))).expect("row").remove(0);
    super::assert_row_shows(&row, &info);
    info
}

/// Waits on real time (with a sleep between checks) until `check` holds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- strategies ----------------------------------------------------------------

/// Members a, b, c (start order); b dies 2 s after each start.
fn trio(strategy: Strategy) -> GroupConfig {
    let mut a = runner("a");
    a.priority = 1;
    let mut b = program("b", &["/bin/sh", "exit", "3", "2000"]);
    b.priority = 2;
    let mut c = runner("c");
    c.priority = 3;
    let mut trio = group("g", 1, vec![a, b, c]);
    trio.strategy = strategy;
    trio
}

#[tokio::test(start_paused = true)]
async fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    let (handle, fake, _dir) = boot(vec![trio(Strategy::OneForAll)]).await;
    let mut events = handle.subscribe();
    let started = handle.start(&specs(&["g:*"]), true).await;
    assert!(started.iter().all(|(_, r)| r.is_ok()), "{started:?}");
    let first: Vec<u32> = fake.spawns().iter().map(|s| s.pid).collect();
    until(&mut events, || fake.spawns().len() >= 6).await;
    let signals: Vec<(u32, i32)> = fake.signals().iter().map(|s| (s.pid, s.sig)).collect();
    // c then a (reverse start order); b was already dead.
    assert_eq!(signals, [(first[2], libc::SIGTERM), (first[0], libc::SIGTERM)]);
    let again: Vec<String> = fake.spawns()[3..6].iter().map(|s| marker(&s.argv)).collect();
    assert_eq!(again, ["a", "exit", "c"]);
    handle.shutdown().await;
    assert_eq!(fake.alive(), 0);
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_dead_member_and_those_after_it() {
    let (handle, fake, _dir) = boot(vec![trio(Strategy::RestForOne)]).await;
    let mut events = handle.subscribe();
    handle.start(&specs(&["g:*"]), true).await;
    let first: Vec<u32> = fake.spawns().iter().map(|s| s.pid).collect();
    until(&mut events, || fake.spawns().len() >= 5).await;
    let signals: Vec<(u32, i32)> = fake.signals().iter().map(|s| (s.pid, s.sig)).collect();
    assert_eq!(signals, [(first[2], libc::SIGTERM)], "only c is stopped");
    let again: Vec<String> = fake.spawns()[3..5].iter().map(|s| marker(&s.argv)).collect();
    assert_eq!(again, ["exit", "c"]);
    let a = state_of(&handle, "g:a").await;
    assert_eq!((a.state, a.pid), (ProcessState::Running, first[0]), "a untouched");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_dead_member() {
    let (handle, fake, _dir) = boot(vec![trio(Strategy::OneForOne)]).await;
    let mut events = handle.subscribe();
    handle.start(&specs(&["g:*"]), true).await;
    until(&mut events, || fake.spawns().len() >= 4).await;
    assert!(fake.signals().is_empty());
    assert_eq!(marker(&fake.spawns()[3].argv), "exit");
    handle.shutdown().await;
}

// ---- restart budget --------------------------------------------------------------

/// A group whose `crasher` dies 2 s after each start (1 s after RUNNING), next
/// to a `steady` member, with a budget of 2 restarts a minute.
fn budgeted() -> GroupConfig {
    let mut crasher = program("crasher", &["/bin/sh", "exit", "1", "2000"]);
    crasher.priority = 1;
    let steady = runner("steady");
    let mut budgeted = group("g", 1, vec![crasher, steady]);
    budgeted.max_restarts = Some(2);
    budgeted.max_restarts_period = Duration::from_secs(60);
    budgeted
}

#[tokio::test(start_paused = true)]
async fn budget_counts_crashes_after_running_and_makes_the_group_fatal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let other = runner("other");
    let (handle, fake) = boot_config(config(dir.path(), vec![budgeted(), solo(other)])).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["g:*", "other"]), true).await;
    let fatal_at = until_state(&mut events, "g:crasher", ProcessState::Fatal).await;
    // Dies at 2, 4 and 6 s; the third restart would exceed 2 per minute.
    assert_about(fatal_at - t0, Duration::from_secs(6));
    let crashes = fake.spawns().iter().filter(|s| marker(&s.argv) == "exit").count();
    assert_eq!(crashes, 3);
    until_state(&mut events, "g:steady", ProcessState::Fatal).await;
    let crasher = state_of(&handle, "g:crasher").await;
    assert_eq!(crasher.spawnerr, crate::lifecycle::BUDGET_EXHAUSTED);
    // on_fatal = ignore: the rest of the daemon runs on.
    assert_eq!(state_of(&handle, "other").await.state, ProcessState::Running);
    assert!(handle.fatal().is_none());
    assert!(!handle.is_shutting_down());
    // A user's start gets a fresh budget.
    assert_eq!(handle.start(&specs(&["g:steady"]), true).await[0].1, Ok(()));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn budget_exhausted_with_on_fatal_shutdown_brings_the_daemon_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path(), vec![budgeted(), solo(runner("other"))]);
    config.supervisord.on_fatal = OnFatal::Shutdown;
    let (handle, fake) = boot_config(config).await;
    let mut bus = handle.subscribe();
    handle.start(&specs(&["g:*", "other"]), true).await;
    let fatal = tokio::time::timeout(PATIENCE, handle.fatal_shutdown()).await.expect("escalated");
    assert_eq!(fatal.group, "g");
    assert!(fatal.reason.contains("restart budget exhausted"), "{}", fatal.reason);
    assert_eq!(handle.fatal(), Some(fatal));
    assert!(handle.is_shutting_down());
    assert_eq!(fake.alive(), 0, "the whole tree was stopped");
    let infos = handle.process_info(None).await.expect("info");
    assert!(infos.iter().all(|i| i.state.is_stopped()), "{infos:?}");
    let mut saw_group_fatal = false;
    while let Ok(event) = bus.try_recv() {
        saw_group_fatal |= matches!(*event, Event::GroupFatal { ref group, .. } if group == "g");
    }
    assert!(saw_group_fatal);
    assert_eq!(crate::FATAL_EXIT_CODE, 1);
}

#[tokio::test(start_paused = true)]
async fn budget_counts_start_retries_too() {
    let mut quick = program("quick", &["/bin/sh", "exit", "1", "0"]);
    quick.startretries = 10;
    let mut g = group("g", 1, vec![quick, runner("steady")]);
    g.max_restarts = Some(3);
    let (handle, fake, _dir) = boot(vec![g]).await;
    let mut events = handle.subscribe();
    handle.start(&specs(&["g:steady"]), true).await;
    handle.start(&specs(&["g:quick"]), false).await;
    until_state(&mut events, "g:quick", ProcessState::Fatal).await;
    until_state(&mut events, "g:steady", ProcessState::Fatal).await;
    // The first spawn and three admitted retries; the fourth retry is refused.
    assert_eq!(fake.spawns().iter().filter(|s| marker(&s.argv) == "exit").count(), 4);
    handle.shutdown().await;
}

// ---- backoff -----------------------------------------------------------------------

fn spawn_offsets(fake: &FakeSpawner, t0: Instant) -> Vec<Duration> {
    fake.spawns().iter().map(|s| s.at - t0).collect()
}

#[tokio::test(start_paused = true)]
async fn exponential_start_backoff_doubles_up_to_its_cap() {
    let mut p = program("exp", &["/bin/sh", "exit", "1", "0"]);
    p.startretries = 4;
    p.backoff.kind = BackoffKind::Exponential;
    p.backoff.max = Some(Duration::from_secs(5));
    let (handle, fake, _dir) = boot(vec![solo(p)]).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["exp"]), false).await;
    until_state(&mut events, "exp", ProcessState::Fatal).await;
    let offsets = spawn_offsets(&fake, t0);
    assert_eq!(offsets.len(), 5);
    // Waits 1, 2, 4, then 5 (capped).
    for (actual, expected) in offsets.iter().zip([0, 1, 3, 7, 12]) {
        assert_about(*actual, Duration::from_secs(expected));
    }
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn restarts_after_running_back_off_until_a_stable_run_resets_them() {
    // Dies 2 s after each start, i.e. 1 s after RUNNING: never stable for 10 s.
    let mut flappy = program("flappy", &["/bin/sh", "exit", "1", "2000"]);
    flappy.backoff.kind = BackoffKind::Exponential;
    flappy.backoff.reset_after = Some(Duration::from_secs(10));
    // Dies 12 s after each start: 11 s of RUNNING, a stable run every time.
    let mut stable = program("stable", &["/bin/sh", "exit", "1", "12000"]);
    stable.backoff = flappy.backoff.clone();
    let (handle, fake, _dir) = boot(vec![solo(flappy), solo(stable)]).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["flappy", "stable"]), false).await;
    until(&mut events, || fake.spawns().len() >= 7).await;
    let times = |argv_millis: &str| -> Vec<Duration> {
        fake.spawns().iter().filter(|s| s.argv[3] == argv_millis).map(|s| s.at - t0).collect()
    };
    // flappy: dies at 2, waits 1; dies at 5, waits 2; dies at 9, waits 4.
    for (actual, expected) in times("2000").iter().zip([0, 3, 7, 13]) {
        assert_about(*actual, Duration::from_secs(expected));
    }
    // stable: each crash follows a stable run, so every wait is the first step.
    let stable_times = times("12000");
    for (actual, expected) in stable_times.iter().zip([0, 13, 26]) {
        assert_about(*actual, Duration::from_secs(expected));
    }
    let info = state_of(&handle, "flappy").await;
    assert!(matches!(
        info.state,
        ProcessState::Backoff | ProcessState::Starting | ProcessState::Running
    ));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn linear_default_restarts_after_running_at_once_like_supervisord() {
    let p = program("flaky", &["/bin/sh", "exit", "1", "2000"]);
    let (handle, fake, _dir) = boot(vec![solo(p)]).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["flaky"]), false).await;
    until(&mut events, || fake.spawns().len() >= 3).await;
    for (actual, expected) in spawn_offsets(&fake, t0).iter().zip([0, 2, 4]) {
        assert_about(*actual, Duration::from_secs(expected));
    }
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_retries_within_its_fraction() {
    let mut groups = Vec::new();
    for index in 0..6 {
        let mut p = program(&format!("j{index}"), &["/bin/sh", "exit", "1", "0"]);
        p.startretries = 1;
        p.backoff.jitter = 0.5;
        groups.push(solo(p));
    }
    let (handle, fake, _dir) = boot(groups).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    let names: Vec<_> = (0..6).map(|i| spec(&format!("j{i}"))).collect();
    handle.start(&names, false).await;
    until(&mut events, || fake.spawns().len() >= 12).await;
    let mut retries: Vec<Duration> =
        fake.spawns().iter().map(|s| s.at - t0).filter(|d| !d.is_zero()).collect();
    assert_eq!(retries.len(), 6);
    for wait in &retries {
        assert!(
            *wait >= Duration::from_secs(1) && *wait <= Duration::from_millis(1500),
            "{wait:?} outside 1 s + 50 %"
        );
    }
    retries.dedup();
    assert!(retries.len() > 1, "six programs retried in lock-step: {retries:?}");
    handle.shutdown().await;
}

// ---- dependencies --------------------------------------------------------------------

/// db <- app <- web, each a solo group, autostart, with priorities that would
/// start them in the opposite order.
fn chain(autostart: bool) -> Vec<GroupConfig> {
    let mut db = runner("db");
    db.priority = 900;
    let mut app = runner("app");
    app.priority = 500;
    depends(&mut app, "db", DependencyCondition::Running);
    let mut web = runner("web");
    web.priority = 1;
    depends(&mut web, "app", DependencyCondition::Running);
    [db, app, web]
        .into_iter()
        .map(|mut p| {
            p.autostart = autostart;
            solo(p)
        })
        .collect()
}

fn markers(fake: &FakeSpawner, from: usize) -> Vec<String> {
    fake.spawns()[from..].iter().map(|s| marker(&s.argv)).collect()
}

fn pid_of(fake: &FakeSpawner, name: &str) -> u32 {
    fake.spawns().iter().rev().find(|s| marker(&s.argv) == name).expect("spawned").pid
}

#[tokio::test(start_paused = true)]
async fn start_follows_dependencies_and_shutdown_goes_in_reverse() {
    let t0 = Instant::now();
    let (handle, fake, _dir) = boot(chain(true)).await;
    let mut events = handle.subscribe();
    assert_eq!(markers(&fake, 0), ["db"]);
    let app = state_of(&handle, "app").await;
    assert_eq!(app.state, ProcessState::Starting);
    assert_eq!(app.waiting_for, ["db"]);
    assert_eq!(app.description, "waiting for db");
    assert_eq!(state_of(&handle, "web").await.waiting_for, ["app"]);
    until_state(&mut events, "web", ProcessState::Running).await;
    assert_eq!(markers(&fake, 0), ["db", "app", "web"]);
    // Each waits for the one before it to be RUNNING (startsecs = 1).
    for (spawn, expected) in fake.spawns().iter().zip([0, 1, 2]) {
        assert_about(spawn.at - t0, Duration::from_secs(expected));
    }
    assert!(state_of(&handle, "app").await.waiting_for.is_empty());
    let pids = [pid_of(&fake, "web"), pid_of(&fake, "app"), pid_of(&fake, "db")];
    handle.shutdown().await;
    let stopped: Vec<u32> = fake.signals().iter().map(|s| s.pid).collect();
    assert_eq!(stopped, pids, "web, then app, then db");
}

#[tokio::test(start_paused = true)]
async fn a_crash_propagates_down_a_three_level_chain_and_back_up_in_order() {
    let (handle, fake, _dir) = boot(chain(true)).await;
    let mut events = handle.subscribe();
    until_state(&mut events, "web", ProcessState::Running).await;
    let (app1, web1) = (pid_of(&fake, "app"), pid_of(&fake, "web"));
    // db dies unexpectedly and restarts at once (autorestart=unexpected).
    handle.signal(&specs(&["db"]), Signal(libc::SIGKILL)).await;
    let db_running = until_state(&mut events, "db", ProcessState::Running).await;
    until_state(&mut events, "web", ProcessState::Running).await;
    assert_eq!(markers(&fake, 3), ["db", "app", "web"]);
    let terms: Vec<u32> =
        fake.signals().iter().filter(|s| s.sig == libc::SIGTERM).map(|s| s.pid).collect();
    assert!(terms.contains(&app1) && terms.contains(&web1), "{terms:?}");
    let app2 = fake.spawns().iter().rev().find(|s| marker(&s.argv) == "app").expect("app").at;
    assert!(app2 >= db_running, "app restarted only once db was RUNNING again");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stopping_a_dependency_stops_dependents_first_and_start_brings_them_back() {
    let (handle, fake, _dir) = boot(chain(true)).await;
    let mut events = handle.subscribe();
    until_state(&mut events, "web", ProcessState::Running).await;
    let pids = [pid_of(&fake, "web"), pid_of(&fake, "app"), pid_of(&fake, "db")];
    assert_eq!(handle.stop(&specs(&["db"]), true).await[0].1, Ok(()));
    let stopped: Vec<u32> = fake.signals().iter().map(|s| s.pid).collect();
    assert_eq!(stopped, pids, "web, app, then db");
    let web = state_of(&handle, "web").await;
    assert_eq!((web.state, web.description.as_str()), (ProcessState::Starting, "waiting for app"));
    assert_eq!(state_of(&handle, "app").await.waiting_for, ["db"]);
    assert_eq!(handle.start(&specs(&["db"]), true).await[0].1, Ok(()));
    until_state(&mut events, "web", ProcessState::Running).await;
    assert_eq!(markers(&fake, 3), ["db", "app", "web"]);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn starting_a_program_starts_its_dependencies_first() {
    let (handle, fake, _dir) = boot(chain(false)).await;
    assert!(fake.spawns().is_empty());
    let results = handle.start(&specs(&["web"]), true).await;
    assert_eq!(results, [(spec("web"), Ok(()))]);
    assert_eq!(markers(&fake, 0), ["db", "app", "web"]);
    assert_eq!(state_of(&handle, "db").await.state, ProcessState::Running);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn restart_dependents_false_keeps_a_dependent_running() {
    let mut groups = chain(true);
    std::sync::Arc::make_mut(&mut groups[1].processes[0]).restart_dependents = false;
    let (handle, fake, _dir) = boot(groups).await;
    let mut events = handle.subscribe();
    until_state(&mut events, "web", ProcessState::Running).await;
    let app = pid_of(&fake, "app");
    handle.signal(&specs(&["db"]), Signal(libc::SIGKILL)).await;
    until_state(&mut events, "db", ProcessState::Running).await;
    assert!(fake.signals().iter().all(|s| s.pid != app));
    assert_eq!(state_of(&handle, "app").await.pid, app);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn completed_successfully_waits_for_a_one_shot_to_exit_zero() {
    let mut migrate = program("migrate", &["/bin/sh", "exit", "0", "3000"]);
    migrate.autostart = true;
    migrate.autorestart = vigil_config::AutoRestart::False;
    let mut app = runner("app");
    app.autostart = true;
    depends(&mut app, "migrate", DependencyCondition::CompletedSuccessfully);
    let t0 = Instant::now();
    let (handle, fake, _dir) = boot(vec![solo(migrate), solo(app)]).await;
    let mut events = handle.subscribe();
    let app_state = state_of(&handle, "app").await;
    assert_eq!(app_state.description, "waiting for migrate:completed_successfully");
    until_state(&mut events, "app", ProcessState::Running).await;
    let app_spawn = fake.spawns().iter().find(|s| marker(&s.argv) == "app").expect("app").at;
    assert_about(app_spawn - t0, Duration::from_secs(3));
    handle.shutdown().await;
}

// ---- probes ----------------------------------------------------------------------------

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test]
async fn tcp_readiness_gates_running_and_failing_liveness_restarts() {
    let port = free_port();
    let mut p = runner("svc");
    let tcp = ProbeKind::Tcp { host: "127.0.0.1".to_owned(), port };
    p.readiness = Some(probe(tcp.clone(), 20, 10_000));
    p.liveness = Some(probe(tcp, 20, 2));
    let (handle, fake, _dir) = boot(vec![solo(p)]).await;
    handle.start(&specs(&["svc"]), false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let info = state_of(&handle, "svc").await;
    assert_eq!((info.state, info.health), (ProcessState::Starting, Some(Health::Unknown)));
    // The server comes up late.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    eventually("RUNNING and healthy", async || {
        let info = state_of(&handle, "svc").await;
        info.state == ProcessState::Running && info.health == Some(Health::Healthy)
    })
    .await;
    let info = state_of(&handle, "svc").await;
    assert!(info.description.ends_with(", healthy"), "{}", info.description);
    // The server stops answering: liveness fails twice, the program is restarted.
    server.abort();
    let _ = server.await;
    eventually("a restart", async || fake.spawns().len() == 2).await;
    assert_eq!(fake.signals()[0].sig, libc::SIGTERM);
    let info = state_of(&handle, "svc").await;
    assert_eq!(info.state, ProcessState::Starting, "not ready again while the port is closed");
    handle.shutdown().await;
}

#[tokio::test]
async fn http_readiness_waits_for_the_expected_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            let status = if n < 3 { "503 Service Unavailable" } else { "200 OK" };
            let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let mut p = runner("api");
    let url = format!("http://127.0.0.1:{port}/health");
    p.readiness = Some(probe(ProbeKind::Http { url, expect_status: 200 }, 20, 100));
    let (handle, _fake, _dir) = boot(vec![solo(p)]).await;
    handle.start(&specs(&["api"]), false).await;
    eventually("RUNNING", async || state_of(&handle, "api").await.state == ProcessState::Running)
        .await;
    assert!(requests.load(Ordering::SeqCst) >= 4, "three 503s came first");
    server.abort();
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn exec_readiness_passes_once_the_command_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flag = dir.path().join("ready");
    let flag_text = flag.display().to_string();
    let mut p = runner("worker");
    p.readiness = Some(probe(
        ProbeKind::Exec { command: vec!["/bin/sh".into(), "exists".into(), flag_text] },
        500,
        100,
    ));
    let (handle, fake) = boot_config(config(dir.path(), vec![solo(p)])).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["worker"]), false).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state_of(&handle, "worker").await.state, ProcessState::Starting);
    std::fs::write(&flag, b"").expect("flag");
    let running = until_state(&mut events, "worker", ProcessState::Running).await;
    assert!(running - t0 <= Duration::from_millis(3600), "{:?}", running - t0);
    let probes = fake.spawns().iter().filter(|s| marker(&s.argv) == "exists").count();
    assert!(probes >= 7, "polled every 500 ms: {probes}");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failed_readiness_is_a_failed_start() {
    let mut p = runner("never");
    p.startretries = 1;
    p.readiness = Some(probe(
        ProbeKind::Exec {
            command: vec!["/bin/sh".into(), "exists".into(), "/nonexistent/vigil-flag".into()],
        },
        100,
        3,
    ));
    let (handle, fake, _dir) = boot(vec![solo(p)]).await;
    let mut events = handle.subscribe();
    handle.start(&specs(&["never"]), false).await;
    until_state(&mut events, "never", ProcessState::Fatal).await;
    let runs = fake.spawns().iter().filter(|s| marker(&s.argv) == "never").count();
    assert_eq!(runs, 2, "startretries=1: two attempts");
    assert_eq!(fake.alive(), 0);
    assert_eq!(state_of(&handle, "never").await.spawnerr, crate::lifecycle::READINESS_FAILED);
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn healthy_condition_waits_for_readiness() {
    let dir = tempfile::tempdir().expect("temp dir");
    let flag = dir.path().join("ready");
    let mut db = runner("db");
    db.autostart = true;
    db.readiness = Some(probe(
        ProbeKind::Exec {
            command: vec!["/bin/sh".into(), "exists".into(), flag.display().to_string()],
        },
        100,
        1000,
    ));
    let mut app = runner("app");
    app.autostart = true;
    depends(&mut app, "db", DependencyCondition::Healthy);
    let (handle, fake) = boot_config(config(dir.path(), vec![solo(db), solo(app)])).await;
    let mut events = handle.subscribe();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(state_of(&handle, "app").await.description, "waiting for db:healthy");
    std::fs::write(&flag, b"").expect("flag");
    until_state(&mut events, "app", ProcessState::Running).await;
    assert_eq!(state_of(&handle, "db").await.health, Some(Health::Healthy));
    assert!(fake.spawns().iter().any(|s| marker(&s.argv) == "app"));
    handle.shutdown().await;
}

#[tokio::test]
async fn notify_socket_ready_gates_running() {
    let mut p = runner("daemon");
    p.readiness = Some(probe(ProbeKind::Notify, 1000, 1));
    let (handle, fake, _dir) = boot(vec![solo(p)]).await;
    handle.start(&specs(&["daemon"]), false).await;
    let env = fake.spawns()[0].env.clone();
    let socket = env
        .iter()
        .find(|(key, _)| key == "NOTIFY_SOCKET")
        .map(|(_, value)| value.clone())
        .expect("NOTIFY_SOCKET in the child's environment");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state_of(&handle, "daemon").await.state, ProcessState::Starting);
    let client = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    client.send_to(b"STATUS=almost\n", &socket).expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state_of(&handle, "daemon").await.state, ProcessState::Starting);
    client.send_to(b"READY=1\nSTATUS=serving\n", &socket).expect("send");
    eventually("RUNNING", async || {
        state_of(&handle, "daemon").await.state == ProcessState::Running
    })
    .await;
    handle.shutdown().await;
    drop(handle);
}

#[tokio::test(start_paused = true)]
async fn start_wait_fails_when_a_dependency_goes_fatal() {
    let mut db = program("db", &["/bin/sh", "exit", "1", "0"]);
    db.startretries = 1;
    let mut app = runner("app");
    depends(&mut app, "db", DependencyCondition::Running);
    let (handle, _fake, _dir) = boot(vec![solo(db), solo(app)]).await;
    let results = tokio::time::timeout(PATIENCE, handle.start(&specs(&["app"]), true))
        .await
        .expect("the wait ends");
    assert_eq!(
        results,
        [(spec("app"), Err(crate::CoreError::Failed("app: dependency db is FATAL".into())))]
    );
    assert_eq!(state_of(&handle, "app").await.description, "waiting for db");
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_dependency_restarting_faster_than_a_look_still_restarts_its_dependent() {
    // startsecs=0: db is RUNNING again in the same step it died in.
    let mut db = runner("db");
    db.startsecs = 0;
    db.autostart = true;
    let mut app = runner("app");
    app.autostart = true;
    depends(&mut app, "db", DependencyCondition::Running);
    let (handle, fake, _dir) = boot(vec![solo(db), solo(app)]).await;
    let mut events = handle.subscribe();
    until_state(&mut events, "app", ProcessState::Running).await;
    let app1 = pid_of(&fake, "app");
    handle.signal(&specs(&["db"]), Signal(libc::SIGKILL)).await;
    until(&mut events, || fake.spawns().len() >= 4).await;
    assert_eq!(markers(&fake, 2), ["db", "app"]);
    assert!(fake.signals().iter().any(|s| s.pid == app1 && s.sig == libc::SIGTERM));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn liveness_restarts_count_against_the_group_budget() {
    let mut sick = runner("sick");
    sick.liveness = Some(probe(
        ProbeKind::Exec {
            command: vec!["/bin/sh".into(), "exists".into(), "/nonexistent/vigil-alive".into()],
        },
        1000,
        2,
    ));
    let mut g = group("g", 1, vec![sick]);
    g.max_restarts = Some(1);
    let (handle, fake, _dir) = boot(vec![g]).await;
    let mut events = handle.subscribe();
    let t0 = Instant::now();
    handle.start(&specs(&["g:sick"]), true).await;
    let fatal_at = until_state(&mut events, "g:sick", ProcessState::Fatal).await;
    let runs: Vec<Duration> =
        fake.spawns().iter().filter(|s| marker(&s.argv) == "sick").map(|s| s.at - t0).collect();
    // RUNNING at 1 s, two failed checks (2 s, 3 s), stopped and restarted once;
    // the second liveness failure would be a second restart in the window.
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_about(runs[1], Duration::from_secs(3));
    assert_about(fatal_at - t0, Duration::from_secs(6));
    let info = state_of(&handle, "g:sick").await;
    assert_eq!(info.spawnerr, crate::lifecycle::BUDGET_EXHAUSTED);
    assert_eq!(fake.alive(), 0);
    handle.shutdown().await;
}
