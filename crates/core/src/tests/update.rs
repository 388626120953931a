//! The config actor: reread, update (per member), add/remove, avail, and bad
//! configs changing nothing, against the fake spawner on paused time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vigil_config::{Config, Diagnostic, GroupConfig};

use super::fake::FakeSpawner;
use super::fixtures::{config, group, program, solo};
use super::{spec, specs};
use crate::{
    ConfigControl, ConfigError, CoreError, Handle, Loader, ProcessState, Supervisor,
    SupervisorOptions, UpdateAction,
};

/// A tree plus a config actor whose "file" is a shared, editable config.
struct Rig {
    handle: Handle,
    control: ConfigControl,
    file: Arc<Mutex<Result<Config, Vec<Diagnostic>>>>,
    fake: FakeSpawner,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(groups: Vec<GroupConfig>) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let fake = FakeSpawner::default();
        let initial = config(dir.path(), groups);
        let options = SupervisorOptions::with_spawner(Arc::new(fake.clone()));
        let handle = Supervisor::start(initial.clone(), options).await.expect("tree starts");
        let file = Arc::new(Mutex::new(Ok(initial.clone())));
        let source = Arc::clone(&file);
        let loader: Loader = Arc::new(move || source.lock().expect("file lock").clone());
        let control =
            ConfigControl::start(handle.clone(), initial, loader).await.expect("config actor");
        Rig { handle, control, file, fake, _dir: dir }
    }

    /// Writes a new "file" with `groups`.
    fn write(&self, groups: Vec<GroupConfig>) {
        *self.file.lock().expect("file lock") = Ok(config(self._dir.path(), groups));
    }

    async fn pid(&self, namespec: &str) -> Option<u32> {
        let infos = self.handle.process_info(Some(&spec(namespec))).await.expect("known process");
        (infos[0].pid != 0).then_some(infos[0].pid)
    }

    async fn state(&self, namespec: &str) -> ProcessState {
        self.handle.process_info(Some(&spec(namespec))).await.expect("known process")[0].state
    }

    async fn shutdown(self) {
        self.control.stop();
        self.handle.shutdown().await;
        assert_eq!(self.fake.alive(), 0, "no child outlives the tree");
    }
}

fn running(name: &str, command: &str) -> vigil_config::ProcessConfig {
    let mut process = program(name, &["/bin/sh", command]);
    process.autostart = true;
    process.startsecs = 0;
    process
}

fn web(w2_command: &str, w1_retries: u32) -> GroupConfig {
    let mut w1 = running("w1", "run");
    w1.startretries = w1_retries;
    group("web", 100, vec![w1, running("w2", w2_command)])
}

#[tokio::test(start_paused = true)]
async fn update_touches_only_what_changed() {
    let rig =
        Rig::new(vec![solo(running("app1", "run")), solo(running("app2", "run")), web("run", 3)])
            .await;
    let (app1, w1, w2) = (rig.pid("app1").await, rig.pid("web:w1").await, rig.pid("web:w2").await);
    assert!(app1.is_some() && w1.is_some() && w2.is_some());

    // app2 removed, app3 added, w2's command changed, w1 retuned in place.
    rig.write(vec![solo(running("app1", "run")), solo(running("app3", "run")), web("stubborn", 7)]);
    let plan = rig.control.reread().await.expect("reread");
    assert_eq!(
        (plan.added.clone(), plan.removed.clone()),
        (vec!["app3".to_owned()], vec!["app2".to_owned()])
    );
    assert_eq!(plan.changed.len(), 1);

    let dry = rig.control.update(Vec::new(), true).await.expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(rig.pid("web:w2").await, w2, "a dry run changes nothing");
    assert!(rig.handle.process_info(Some(&spec("app2"))).await.is_ok());

    let outcome = rig.control.update(Vec::new(), false).await.expect("update");
    let steps: Vec<(&str, UpdateAction)> =
        outcome.steps.iter().map(|s| (s.group.as_str(), s.action)).collect();
    assert_eq!(
        steps,
        [
            ("app2", UpdateAction::Removed),
            ("web", UpdateAction::Updated),
            ("app3", UpdateAction::Added)
        ]
    );
    assert!(outcome.steps.iter().all(|s| s.error.is_none()), "{outcome:?}");
    let web_step = &outcome.steps[1];
    assert_eq!(web_step.stopped, ["w2"]);
    assert_eq!(web_step.started, ["w2"]);
    assert_eq!(web_step.changed_in_place, ["w1"]);
    assert_eq!(outcome.steps[2].started, ["app3"]);

    assert_eq!(rig.pid("app1").await, app1, "untouched program keeps its pid");
    assert_eq!(rig.pid("web:w1").await, w1, "the other member of the group keeps its pid");
    let new_w2 = rig.pid("web:w2").await;
    assert!(new_w2.is_some() && new_w2 != w2, "the changed member restarted");
    let spawned = rig.fake.spawns();
    assert_eq!(spawned.last().map(|s| s.argv[1].clone()).as_deref(), Some("run"), "app3 last");
    assert!(spawned.iter().any(|s| Some(s.pid) == new_w2 && s.argv[1] == "stubborn"));
    assert_eq!(
        rig.handle.process_info(Some(&spec("app2"))).await.err(),
        Some(CoreError::BadName("app2".to_owned()))
    );
    assert_eq!(rig.state("app3").await, ProcessState::Running);

    // Nothing left to do: no steps, nothing restarted.
    let again = rig.control.update(Vec::new(), false).await.expect("second update");
    assert!(again.steps.is_empty(), "{again:?}");
    assert_eq!(rig.pid("web:w2").await, new_w2);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_bad_config_changes_nothing_and_names_every_error() {
    let rig = Rig::new(vec![solo(running("app1", "run"))]).await;
    let pid = rig.pid("app1").await;
    let errors = vec![
        Diagnostic {
            file: PathBuf::from("/etc/s.conf"),
            line: Some(3),
            section: Some("program:app1".to_owned()),
            key: Some("startsecs".to_owned()),
            message: "'x' is not an integer".to_owned(),
        },
        Diagnostic {
            file: PathBuf::from("/etc/s.conf"),
            line: Some(9),
            section: None,
            key: None,
            message: "bad section".to_owned(),
        },
    ];
    *rig.file.lock().expect("file lock") = Err(errors.clone());
    assert_eq!(rig.control.reread().await, Err(ConfigError::Invalid(errors.clone())));
    assert_eq!(rig.control.update(Vec::new(), false).await, Err(ConfigError::Invalid(errors)));
    assert_eq!(rig.pid("app1").await, pid);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn update_by_name_and_unknown_names() {
    let rig = Rig::new(vec![solo(running("app1", "run")), solo(running("app2", "run"))]).await;
    let (app1, app2) = (rig.pid("app1").await, rig.pid("app2").await);
    rig.write(vec![solo(running("app1", "stubborn")), solo(running("app2", "stubborn"))]);
    let outcome = rig
        .control
        .update(vec!["app2".to_owned(), "nosuch".to_owned()], false)
        .await
        .expect("update");
    assert_eq!(outcome.unknown_groups, ["nosuch"]);
    assert_eq!(outcome.steps.len(), 1);
    assert_eq!(rig.pid("app1").await, app1, "not named, not touched");
    assert_ne!(rig.pid("app2").await, app2);
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn add_and_remove_follow_supervisord() {
    let rig = Rig::new(vec![solo(running("app1", "run"))]).await;
    assert_eq!(
        rig.control.remove_group("app1".to_owned()).await,
        Err(CoreError::StillRunning("app1".to_owned()))
    );
    assert_eq!(rig.handle.stop(&specs(&["app1"]), true).await[0].1, Ok(()));
    assert_eq!(rig.control.remove_group("app1".to_owned()).await, Ok(()));
    // Removed groups are available again from the file.
    let plan = rig.control.reread().await.expect("reread");
    assert_eq!(plan.added, ["app1"]);
    let avail = rig.control.avail().await.expect("avail");
    assert_eq!(avail.len(), 1);
    assert!(!avail[0].inuse);
    assert_eq!(rig.control.add_group("app1".to_owned()).await, Ok(()));
    assert_eq!(
        rig.control.add_group("app1".to_owned()).await,
        Err(CoreError::AlreadyAdded("app1".to_owned()))
    );
    assert_eq!(
        rig.control.add_group("nosuch".to_owned()).await,
        Err(CoreError::BadName("nosuch".to_owned()))
    );
    assert!(rig.control.avail().await.expect("avail")[0].inuse);
    assert_eq!(rig.state("app1").await, ProcessState::Running, "autostart on add");
    rig.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn log_rotation_sizes_apply_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logged = |maxbytes: u64| {
        let mut process = running("app1", "run");
        process.stdout.logfile = vigil_config::LogTarget::Path(dir.path().join("app1.log"));
        process.stdout.maxbytes = maxbytes;
        process.stdout.backups = 2;
        solo(process)
    };
    let rig = Rig::new(vec![logged(0)]).await;
    let pid = rig.pid("app1").await;
    rig.write(vec![logged(10)]);
    let outcome = rig.control.update(Vec::new(), false).await.expect("update");
    assert_eq!(outcome.steps[0].changed_in_place, ["app1"]);
    assert_eq!(rig.pid("app1").await, pid, "no restart");
    let log = rig.handle.log(&spec("app1"), crate::Channel::Stdout).expect("log");
    log.append(b"0123456789abcdefghij-");
    assert!(dir.path().join("app1.log.1").exists(), "rotated at the new size");
    assert_eq!(log.read(0, 0).expect("read"), b"0123456789abcdefghij-");
    rig.shutdown().await;
}

/// An update that replaces or removes a program another request is stopping waits
/// for that stop (no early SIGKILL from dropping the actor), and the stop's caller
/// is answered: `restart all` racing an `update` once hung here forever.
#[tokio::test(start_paused = true)]
async fn update_waits_for_a_stop_already_under_way() {
    let mut slow = running("slow", "stubborn");
    slow.stopwaitsecs = 10;
    let mut gone = running("gone", "stubborn");
    gone.stopwaitsecs = 10;
    let rig =
        Rig::new(vec![group("web", 100, vec![slow.clone(), gone]), solo(running("x", "run"))])
            .await;
    let (slow_pid, gone_pid) = (rig.pid("web:slow").await, rig.pid("web:gone").await);

    // A stop of the whole group, under way when the update comes.
    let stopping = tokio::spawn({
        let handle = rig.handle.clone();
        async move { handle.stop(&specs(&["web:*"]), true).await }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while rig.state("web:slow").await != ProcessState::Stopping
        || rig.state("web:gone").await != ProcessState::Stopping
    {
        assert!(tokio::time::Instant::now() < deadline, "never STOPPING");
        tokio::task::yield_now().await;
    }
    let term_at = tokio::time::Instant::now();

    // `slow` changes (restart), `gone` goes away.
    slow.environment.insert("GENERATION".to_owned(), "2".to_owned());
    rig.write(vec![group("web", 100, vec![slow]), solo(running("x", "run"))]);
    rig.control.reread().await.expect("reread");
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        rig.control.update(Vec::new(), false),
    )
    .await
    .expect("update finishes")
    .expect("update");
    assert!(outcome.steps.iter().all(|s| s.error.is_none()), "{outcome:?}");
    let results = tokio::time::timeout(std::time::Duration::from_secs(60), stopping)
        .await
        .expect("the stop under way is answered")
        .expect("stop task");
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");

    // Both children got their full stopwaitsecs before SIGKILL.
    for pid in [slow_pid, gone_pid].into_iter().flatten() {
        let kill = rig
            .fake
            .signals()
            .into_iter()
            .find(|s| s.pid == pid && s.sig == libc::SIGKILL)
            .expect("SIGKILL after stopwaitsecs");
        assert!(kill.at - term_at >= std::time::Duration::from_secs(9), "{kill:?}");
    }
    let new_slow = rig.pid("web:slow").await;
    assert!(new_slow.is_some() && new_slow != slow_pid, "the changed member runs again");
    rig.shutdown().await;
}
