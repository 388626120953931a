//! The Handle API: namespecs, supervisord's faults, wait semantics, groups.

use std::time::Duration;

use super::fixtures::{group, program, solo};
use vigil_config::Signal;

use super::{boot, spec, specs, until_state};
use crate::{Channel, CoreError, ProcessState};

#[tokio::test(start_paused = true)]
async fn faults_mirror_supervisord() {
    let (handle, _fake, _dir) = boot(vec![
        solo(program("web", &["/bin/sh", "run"])),
        solo(program("missing", &["/nonexistent/vigil-test"])),
        solo(program("quick", &["/bin/sh", "exit", "1", "0"])),
    ])
    .await;
    let bad = handle.start(&specs(&["nosuch", "web:nosuch", "nosuch:*"]), false).await;
    assert_eq!(
        bad,
        [
            (spec("nosuch"), Err(CoreError::BadName("nosuch".to_owned()))),
            (spec("web:nosuch"), Err(CoreError::BadName("web:nosuch".to_owned()))),
            (spec("nosuch:*"), Err(CoreError::BadName("nosuch:*".to_owned()))),
        ]
    );
    assert_eq!(
        handle.start(&specs(&["missing"]), true).await[0].1,
        Err(CoreError::NoFile("can't find command '/nonexistent/vigil-test'".to_owned()))
    );
    assert_eq!(
        handle.start(&specs(&["quick"]), true).await[0].1,
        Err(CoreError::SpawnError("quick".to_owned()))
    );
    assert_eq!(
        handle.stop(&specs(&["web"]), true).await[0].1,
        Err(CoreError::NotRunning("web".to_owned()))
    );
    assert_eq!(
        handle.signal(&specs(&["web"]), Signal(libc::SIGHUP)).await[0].1,
        Err(CoreError::NotRunning("web".to_owned()))
    );
    assert_eq!(handle.start(&specs(&["web"]), true).await[0].1, Ok(()));
    assert_eq!(
        handle.start(&specs(&["web"]), true).await[0].1,
        Err(CoreError::AlreadyStarted("web".to_owned()))
    );
    assert_eq!(
        handle.signal(&specs(&["web"]), Signal(9999)).await[0].1,
        Err(CoreError::BadSignal("9999".to_owned()))
    );
    assert_eq!(
        handle.send_stdin(&spec("quick"), b"x".to_vec()).await,
        Err(CoreError::NotRunning("quick".to_owned()))
    );
    assert!(handle.log(&spec("web"), Channel::Stdout).is_ok());
    assert_eq!(
        handle.log(&spec("web:*"), Channel::Stdout).err(),
        Some(CoreError::BadName("web:*".to_owned()))
    );
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_a_waiting_start_is_abnormal_termination() {
    let mut slow = program("slow", &["/bin/sh", "run"]);
    slow.startsecs = 10;
    let (handle, _fake, _dir) = boot(vec![solo(slow)]).await;
    let mut events = handle.subscribe();
    let starter = handle.clone();
    let start = tokio::spawn(async move { starter.start(&specs(&["slow"]), true).await });
    until_state(&mut events, "slow", ProcessState::Starting).await;
    assert_eq!(handle.stop(&specs(&["slow"]), true).await[0].1, Ok(()));
    let result = start.await.expect("start task");
    assert_eq!(result[0].1, Err(CoreError::AbnormalTermination("slow".to_owned())));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn group_specs_act_on_eligible_members_concurrently() {
    let mut a = program("a", &["/bin/sh", "run"]);
    a.startsecs = 3;
    let mut b = program("b", &["/bin/sh", "run"]);
    b.startsecs = 3;
    let (handle, _fake, _dir) = boot(vec![group("grp", 1, vec![a, b])]).await;
    let t0 = tokio::time::Instant::now();
    let started = handle.start(&specs(&["grp:*"]), true).await;
    assert_eq!(started, [(spec("grp:a"), Ok(())), (spec("grp:b"), Ok(()))]);
    // Both waited for RUNNING at the same time, not one after the other.
    super::assert_about(t0.elapsed(), Duration::from_secs(3));
    assert!(handle.start(&specs(&["grp:*"]), true).await.is_empty(), "running members are skipped");
    assert_eq!(handle.stop(&specs(&["grp:a"]), true).await[0].1, Ok(()));
    let stopped = handle.stop(&specs(&["all"]), true).await;
    assert_eq!(stopped, [(spec("grp:b"), Ok(()))]);
    let infos = handle.process_info(Some(&spec("grp:*"))).await.expect("info");
    assert!(infos.iter().all(|i| i.state == ProcessState::Stopped));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn process_info_has_supervisord_fields() {
    let mut web = program("web", &["/bin/sh", "run"]);
    web.stdout.logfile = vigil_config::LogTarget::Auto;
    let (handle, _fake, dir) =
        boot(vec![solo(web), group("g", 5, vec![program("z", &["/bin/sh", "run"])])]).await;
    let infos = handle.process_info(None).await.expect("info");
    let names: Vec<&str> = infos.iter().map(|i| i.namespec.as_str()).collect();
    assert_eq!(names, ["g:z", "web"], "sorted by group, then name");
    let rows = handle.status_rows(None).expect("rows");
    assert_eq!(rows.len(), infos.len());
    rows.iter().zip(&infos).for_each(|(row, info)| super::assert_row_shows(row, info));
    let web = &infos[1];
    assert_eq!(
        (web.state, web.statename, web.pid, web.start, web.stop),
        (ProcessState::Stopped, "STOPPED", 0, 0, 0)
    );
    assert_eq!(web.description, "Not started");
    assert_eq!(web.exitstatus, 0);
    assert!(
        web.stdout_logfile.starts_with(&dir.path().display().to_string()),
        "{}",
        web.stdout_logfile
    );
    assert!(web.stdout_logfile.contains("web-stdout---supervisor-"), "{}", web.stdout_logfile);
    assert_eq!(web.logfile, web.stdout_logfile);
    assert_eq!(web.stderr_logfile, "");
    assert!(web.now > 1_700_000_000);
    assert!(matches!(handle.process_info(Some(&spec("nosuch"))).await, Err(CoreError::BadName(_))));
    handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn groups_are_added_and_removed_only_when_stopped() {
    let (handle, fake, _dir) = boot(vec![solo(program("base", &["/bin/sh", "run"]))]).await;
    let mut extra = program("extra", &["/bin/sh", "run"]);
    extra.autostart = true;
    let mut events = handle.subscribe();
    handle.add_group(solo(extra.clone())).await.expect("added");
    until_state(&mut events, "extra", ProcessState::Starting).await;
    assert_eq!(
        handle.add_group(solo(extra)).await,
        Err(CoreError::AlreadyAdded("extra".to_owned()))
    );
    assert_eq!(
        handle.remove_group("extra").await,
        Err(CoreError::StillRunning("extra".to_owned()))
    );
    assert_eq!(handle.stop(&specs(&["extra"]), true).await[0].1, Ok(()));
    assert_eq!(handle.remove_group("extra").await, Ok(()));
    assert_eq!(handle.remove_group("extra").await, Err(CoreError::BadName("extra".to_owned())));
    assert!(matches!(handle.process_info(Some(&spec("extra"))).await, Err(CoreError::BadName(_))));
    assert_eq!(fake.alive(), 0);
    handle.shutdown().await;
}

#[test]
fn handle_can_be_shared_across_tasks_and_threads() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<crate::Handle>();
    shareable::<crate::ChannelLog>();
}

#[tokio::test(start_paused = true)]
async fn the_change_counter_moves_on_a_change_and_only_then() {
    let (handle, _fake, _dir) = boot(vec![solo(program("web", &["/bin/sh", "run"]))]).await;
    assert_eq!(handle.start(&specs(&["web"]), true).await[0].1, Ok(()));
    let mut changes = handle.changes();
    let seen = *changes.borrow_and_update();
    // Nothing changes: a watcher waits until its own deadline.
    let t0 = tokio::time::Instant::now();
    assert!(tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.is_err());
    super::assert_about(t0.elapsed(), Duration::from_secs(5));
    assert_eq!(*changes.borrow(), seen);
    // A stop changes the state: the watcher is woken then, not at its deadline.
    let stopper = handle.clone();
    let stop = tokio::spawn(async move { stopper.stop(&specs(&["web"]), true).await });
    let t1 = tokio::time::Instant::now();
    let woken = tokio::time::timeout(Duration::from_secs(600), changes.changed()).await;
    assert!(matches!(woken, Ok(Ok(()))));
    assert!(t1.elapsed() < Duration::from_secs(600));
    assert_ne!(*changes.borrow_and_update(), seen);
    assert_eq!(stop.await.expect("stop task")[0].1, Ok(()));
    // Adding a group is a change too.
    let now = *changes.borrow_and_update();
    let mut extra = program("extra", &["/bin/sh", "run"]);
    extra.autostart = false;
    handle.add_group(solo(extra)).await.expect("add group");
    assert_ne!(*handle.changes().borrow(), now);
    handle.shutdown().await;
}
