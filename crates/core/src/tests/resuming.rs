//! [`crate::resuming::CarriedView`]: what a live upgrade's new image reports
//! of the carried processes before its tree exists.

use std::time::{Duration, Instant, SystemTime};

use vigil_config::{Dependency, DependencyCondition, ProcessConfig};

use super::fixtures::{config, program, solo};
use crate::ProcessState;
use crate::handover::{CarriedProcess, unix_ms};
use crate::lifecycle::{Lifecycle, LifecycleConfig};
use crate::resuming::CarriedView;

/// A record of `process` in `state`, with a child `pid` when not `None`.
fn record(process: &ProcessConfig, state: ProcessState, pid: Option<u32>) -> CarriedProcess {
    let mut lifecycle =
        Lifecycle::new(LifecycleConfig::from_process(process), 1).carry(Instant::now());
    lifecycle.state = state.code();
    lifecycle.pid = pid;
    CarriedProcess {
        namespec: process.namespec(),
        lifecycle,
        timers: Vec::new(),
        start_unix_ms: Some(unix_ms(SystemTime::now() - Duration::from_secs(75))),
        stop_unix_ms: None,
        spawns: 3,
        last_exit: None,
        last_exit_oom: false,
        stdin_fd: None,
        stdout_fds: Vec::new(),
        stderr_fds: Vec::new(),
        stdout_log: Some("/var/log/db.out".into()),
        stderr_log: None,
        stdout_total: 1234,
        stderr_total: 0,
        health: 0,
        probes: Vec::new(),
        notify: None,
    }
}

#[test]
fn the_view_reports_each_record_as_the_resumed_actor_will() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = program("db", &["db"]);
    let mut app = program("app", &["app"]);
    app.depends_on
        .push(Dependency { name: "db".to_owned(), condition: DependencyCondition::Running });
    let mut waiting = record(&app, ProcessState::Starting, None);
    waiting.lifecycle.waiting = true;
    let records = vec![
        record(&db, ProcessState::Starting, Some(4242)),
        waiting,
        // A program the new config no longer has is left out.
        record(&program("gone", &["gone"]), ProcessState::Running, Some(7)),
    ];
    let config = config(dir.path(), vec![solo(db), solo(app)]);
    let view = CarriedView::new(&config, &records).expect("every program has a record");
    let now = SystemTime::now();
    let all = view.all(now);
    let names: Vec<&str> = all.iter().map(|info| info.name.as_str()).collect();
    assert_eq!(names, ["app", "db"], "getAllProcessInfo's order");
    let db = view.one("db", "db", now).expect("db");
    assert_eq!((db.state, db.pid, db.restarts), (ProcessState::Starting, 4242, 2));
    assert_eq!((db.stdout_logfile.as_str(), db.stdout_bytes), ("/var/log/db.out", 1234));
    assert_eq!(all[0].waiting_for, ["db"], "db is not RUNNING yet");
    assert_eq!(all[0].description, "waiting for db");
    assert!(view.one("gone", "gone", now).is_none());
}

#[test]
fn a_program_without_a_record_leaves_the_answer_to_the_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = program("db", &["db"]);
    let records = vec![record(&db, ProcessState::Running, Some(4242))];
    let config = config(dir.path(), vec![solo(db), solo(program("new", &["new"]))]);
    assert!(CarriedView::new(&config, &records).is_none());
}
