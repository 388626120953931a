//! [`crate::resuming::CarriedView`]: what a live upgrade's new image reports
//! of the carried processes before its tree exists.

use std::time::{Duration, Instant, SystemTime};

use vigil_config::ProcessConfig;

use super::fixtures::program;
use crate::ProcessState;
use crate::handover::{CarriedProcess, CarriedShown, unix_ms};
use crate::info::Health;
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
        stdout_layout: None,
        stderr_layout: None,
        health: 0,
        probes: Vec::new(),
        notify: None,
        shown: CarriedShown {
            group: process.group.clone(),
            name: process.name.clone(),
            autostart: process.autostart,
            completed: false,
            probed: false,
            waiting_for: Vec::new(),
        },
    }
}

#[test]
fn the_view_reports_each_record_as_the_old_image_showed_it() {
    let db = program("db", &["db"]);
    let app = program("app", &["app"]);
    let mut waiting = record(&app, ProcessState::Starting, None);
    waiting.lifecycle.waiting = true;
    waiting.shown.waiting_for = vec!["db".to_owned()];
    let mut probed = record(&db, ProcessState::Running, Some(4242));
    probed.shown.probed = true;
    probed.shown.autostart = false;
    probed.health = Health::Healthy.carried();
    let view = CarriedView::new(vec![probed, waiting].into());
    let now = SystemTime::now();
    let all = view.all(now);
    let names: Vec<&str> = all.iter().map(|info| info.name.as_str()).collect();
    assert_eq!(names, ["app", "db"], "getAllProcessInfo's order");
    let db = view.one("db", "db", now).expect("db");
    assert_eq!((db.state, db.pid, db.restarts), (ProcessState::Running, 4242, 2));
    assert_eq!((db.stdout_logfile.as_str(), db.stdout_bytes), ("/var/log/db.out", 1234));
    assert_eq!(db.health, Some(Health::Healthy));
    assert!(!db.autostart);
    assert!(db.description.starts_with("pid 4242, uptime 0:01:1"), "{}", db.description);
    assert!(db.description.ends_with(", healthy"), "{}", db.description);
    assert_eq!(all[0].waiting_for, ["db"]);
    assert_eq!(all[0].description, "waiting for db");
    assert_eq!(all[0].health, None, "app has no probe");
    assert!(view.one("gone", "gone", now).is_none(), "a name no record has");
}

#[test]
fn a_record_in_a_state_this_image_does_not_know_is_left_to_the_tree() {
    let db = program("db", &["db"]);
    let mut unknown = record(&program("new", &["new"]), ProcessState::Running, Some(7));
    unknown.lifecycle.state = 250;
    let view =
        CarriedView::new(vec![record(&db, ProcessState::Running, Some(4242)), unknown].into());
    assert_eq!(view.len(), 1);
    assert!(view.one("new", "new", SystemTime::now()).is_none());
}

#[test]
fn every_carried_process_is_found_by_its_group_and_name() {
    // Carried in priority order, which is not the order of their names.
    let records: Vec<CarriedProcess> = (0..40u32)
        .rev()
        .map(|i| {
            let mut process = program(&format!("p{i}"), &["sleep"]);
            process.group = format!("g{}", i % 3);
            record(&process, ProcessState::Running, Some(1000 + i))
        })
        .collect();
    let view = CarriedView::new(records.into());
    let now = SystemTime::now();
    let all = view.all(now);
    let names: Vec<(String, String)> =
        all.iter().map(|info| (info.group.to_string(), info.name.to_string())).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "getAllProcessInfo's order");
    for i in 0..40u32 {
        let info = view.one(&format!("g{}", i % 3), &format!("p{i}"), now).expect("found");
        assert_eq!(info.pid, 1000 + i);
    }
    assert!(view.one("g0", "p1", now).is_none(), "p1 is in g1");
    assert!(view.one("g9", "p0", now).is_none());
}
