//! The translations of [`super`]: results in spec order, faults, config errors,
//! reread plans, config info, and log paging/following over real files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vigil_config::{Apply, FieldChange, LogLevel};
use vigil_core::{Available, ChannelLog, CoreError};
use vigil_rpc::{ControlError, NameSpec, ProcessResult};

use super::*;
use crate::logging::{LogSettings, MainLog};

fn spec(text: &str) -> NameSpec {
    NameSpec::parse(text)
}

#[test]
fn results_come_back_in_spec_order_with_groups_sorted_and_bad_names_in_place() {
    let specs = [spec("app1"), spec("web:*"), spec("nosuch"), spec("nog:*"), spec("web:w9")];
    let results = vec![
        (spec("web:w2"), Ok(())),
        (spec("app1"), Err(CoreError::AlreadyStarted("app1".to_owned()))),
        (spec("web:w1"), Ok(())),
        (spec("nosuch"), Err(CoreError::BadName("nosuch".to_owned()))),
        (spec("nog:*"), Err(CoreError::BadName("nog:*".to_owned()))),
        (spec("web:w9"), Err(CoreError::BadName("web:w9".to_owned()))),
    ];
    assert_eq!(
        order_results(&specs, results),
        [
            ProcessResult::failed(
                "app1",
                Some("app1".into()),
                ControlError::AlreadyStarted("app1".into())
            ),
            ProcessResult::ok("web", "w1"),
            ProcessResult::ok("web", "w2"),
            ProcessResult::failed(
                "nosuch",
                Some("nosuch".into()),
                ControlError::BadName("nosuch".into())
            ),
            ProcessResult::failed("nog", None, ControlError::BadName("nog".into())),
            ProcessResult::failed("web", Some("w9".into()), ControlError::BadName("web:w9".into())),
        ]
    );
}

#[test]
fn all_sorts_by_group_then_name_and_nothing_is_dropped() {
    let results = vec![
        (spec("zeta"), Ok(())),
        (spec("g:b"), Err(CoreError::NotRunning("g:b".to_owned()))),
        (spec("g:a"), Ok(())),
    ];
    let ordered = order_results(&[spec("app1"), spec("all")], results);
    let names: Vec<String> = ordered.iter().map(ProcessResult::namespec).collect();
    assert_eq!(names, ["g:a", "g:b", "zeta"], "`all` anywhere means every process, sorted");
    // A result no spec claims still comes back.
    let stray = order_results(&[spec("a")], vec![(spec("b"), Ok(()))]);
    assert_eq!(stray, [ProcessResult::ok("b", "b")]);
}

#[test]
fn signals_are_read_like_supervisord_and_bad_ones_keep_their_text() {
    assert_eq!(requested_signal("HUP"), Ok(Signal(libc::SIGHUP)));
    assert_eq!(requested_signal("sigterm"), Ok(Signal(libc::SIGTERM)));
    assert_eq!(requested_signal("SIGUSR2"), Ok(Signal(libc::SIGUSR2)));
    assert_eq!(requested_signal("9"), Ok(Signal(libc::SIGKILL)));
    assert_eq!(requested_signal("BOGUS"), Err(CoreError::BadSignal("BOGUS".to_owned())));
    assert_eq!(requested_signal("999"), Err(CoreError::BadSignal("999".to_owned())));
}

#[test]
fn a_fault_about_one_named_process_names_it_as_sent() {
    assert_eq!(
        named_error(CoreError::BadName("web".into()), "web:web"),
        ControlError::BadName("web:web".into())
    );
    assert_eq!(
        named_error(CoreError::NotRunning("web".into()), "web:web"),
        ControlError::NotRunning("web".into())
    );
}

#[test]
fn a_group_not_acted_on_is_one_result_about_the_group() {
    let results = vec![(spec("g:*"), Err(CoreError::ShuttingDown))];
    assert_eq!(
        order_results(&[spec("g:*")], results),
        [ProcessResult::failed("g", None, ControlError::ShutdownState)]
    );
}

#[test]
fn core_faults_keep_supervisord_codes() {
    let faults = [
        CoreError::BadName("x".into()),
        CoreError::BadSignal("x".into()),
        CoreError::NoFile("x".into()),
        CoreError::NotExecutable("x".into()),
        CoreError::Failed("x".into()),
        CoreError::AbnormalTermination("x".into()),
        CoreError::SpawnError("x".into()),
        CoreError::AlreadyStarted("x".into()),
        CoreError::NotRunning("x".into()),
        CoreError::AlreadyAdded("x".into()),
        CoreError::StillRunning("x".into()),
        CoreError::ShuttingDown,
    ];
    for fault in faults {
        let wire = core_error(fault.clone());
        assert_eq!(wire.code(), fault.fault_code(), "{fault:?}");
        assert_eq!(wire.name(), fault.fault_name(), "{fault:?}");
        assert_eq!(wire.to_string(), fault.to_string(), "{fault:?}");
    }
}

#[test]
fn config_errors_keep_file_and_line_apart() {
    let diagnostic = Diagnostic {
        file: PathBuf::from("/etc/vigil/s.conf"),
        line: Some(12),
        section: Some("program:web".into()),
        key: Some("startsecs".into()),
        message: "'x' is not an integer".into(),
    };
    let line = config_error_line(&diagnostic);
    assert_eq!((line.file.as_str(), line.line), ("/etc/vigil/s.conf", 12));
    assert_eq!(line.to_string(), diagnostic.to_string());
    let unplaced = Diagnostic { line: None, section: None, key: None, ..diagnostic };
    assert_eq!(config_error_line(&unplaced).line, 0);
    let error = config_error(ConfigError::Invalid(vec![unplaced]));
    assert_eq!(error.code(), 92);
}

#[test]
fn reread_lists_sorted_names_and_what_applies_in_place() {
    let plan = Plan {
        added: vec!["zz".into(), "aa".into()],
        removed: vec!["old".into()],
        changed: vec![vigil_config::GroupChange {
            name: "web".into(),
            fields: Vec::new(),
            restart_all: false,
            added: vec!["w3".into()],
            removed: Vec::new(),
            changed: vec![
                vigil_config::ProcessChange {
                    name: "w1".into(),
                    fields: vec![FieldChange { key: "startretries", apply: Apply::InPlace }],
                },
                vigil_config::ProcessChange {
                    name: "w2".into(),
                    fields: vec![FieldChange { key: "command", apply: Apply::Restart }],
                },
            ],
        }],
        daemon: Vec::new(),
    };
    let reread = reread(&plan);
    assert_eq!(reread.added, ["aa", "zz"]);
    assert_eq!(
        (reread.changed.as_slice(), reread.removed.as_slice()),
        (&["web".to_owned()][..], &["old".to_owned()][..])
    );
    let web = reread.details.iter().find(|d| d.group == "web").expect("web detail");
    let summary: Vec<(&str, ChangeKind, bool)> =
        web.processes.iter().map(|p| (p.name.as_str(), p.kind, p.in_place)).collect();
    assert_eq!(
        summary,
        [
            ("w3", ChangeKind::Added, false),
            ("w1", ChangeKind::Changed, true),
            ("w2", ChangeKind::Changed, false)
        ]
    );
}

fn load(dir: &Path, text: &str) -> vigil_config::Config {
    let path = dir.join("supervisord.conf");
    let env = BTreeMap::from([("HOME".to_owned(), dir.display().to_string())]);
    vigil_config::load_str(text, &path, &env).expect("valid config").config
}

#[test]
fn config_info_maps_getallconfiginfo_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = load(
        dir.path(),
        &format!(
            "[supervisord]\nchildlogdir={}\n[program:web]\ncommand=/bin/cat -n\npriority=5\nstderr_logfile=NONE\n",
            dir.path().display()
        ),
    );
    let process = config.processes().next().expect("one process").clone();
    let info = config_info(Available { process, group_priority: 7, inuse: true });
    assert_eq!((info.name.as_str(), info.group.as_str(), info.inuse), ("web", "web", true));
    assert_eq!((info.group_prio, info.process_prio), (7, 5));
    assert_eq!((info.command.as_str(), info.autorestart.as_str()), ("/bin/cat -n", "unexpected"));
    assert_eq!((info.stdout.logfile.as_str(), info.stderr.logfile.as_str()), ("auto", "none"));
    assert_eq!(
        (info.stopsignal, info.exitcodes.as_slice(), info.serverurl.as_str()),
        (15, &[0][..], "AUTO")
    );
}

/// Bytes 0..n of a recognisable pattern.
fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn follow_sees_every_byte_once_across_rotations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = ChannelLog::open(Some(dir.path().join("out.log")), 100, 3, 64).expect("log");
    let mut written = 0;
    let mut seen = Vec::new();
    let mut next = 0;
    for piece in [30, 90, 7, 150, 1, 64, 99] {
        log.append(&pattern(written, piece));
        written += piece;
        // Small pages: many polls per write, each from the previous `next`.
        loop {
            let reply = follow_channel(&log, "out", next, 17).expect("follow");
            assert_eq!(reply.offset, next, "nothing lost while the backups hold it");
            seen.extend_from_slice(&reply.bytes.0);
            if reply.next == next {
                break;
            }
            next = reply.next;
        }
    }
    assert_eq!(seen, pattern(0, written));
    assert!(dir.path().join("out.log.1").exists(), "the log did rotate");
}

#[test]
fn follow_reports_bytes_rotated_away_as_a_gap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = ChannelLog::open(Some(dir.path().join("out.log")), 50, 1, 0).expect("log");
    log.append(&pattern(0, 400));
    let reply = follow_channel(&log, "out", 0, 1000).expect("follow");
    assert!(reply.offset > 0, "the start is gone");
    assert_eq!(reply.next, 400);
    assert_eq!(reply.bytes.0, pattern(reply.offset as usize, 400 - reply.offset as usize));
}

#[test]
fn read_log_follows_readlog_rules_in_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = ChannelLog::open(Some(dir.path().join("out.log")), 0, 0, 16).expect("log");
    log.append(&pattern(0, 300));
    let tail = read_channel(&log, -20, 0).expect("tail");
    assert_eq!((tail.start, tail.end, tail.size), (280, 300, 300));
    assert_eq!(tail.bytes.0, pattern(280, 20));
    let slice = read_channel(&log, 10, 5).expect("slice");
    assert_eq!((slice.bytes.0, slice.start, slice.end), (pattern(10, 5), 10, 15));
    let to_end = read_channel(&log, 250, 0).expect("to end");
    assert_eq!(to_end.bytes.0, pattern(250, 50));
    assert!(matches!(read_channel(&log, -5, 3), Err(ControlError::BadArguments(_))));
    let past = read_channel(&log, 900, 0).expect("past the end");
    assert!(past.bytes.0.is_empty());
    let none = ChannelLog::open(None, 0, 0, 0).expect("no storage");
    assert!(matches!(read_channel(&none, -10, 0), Err(ControlError::NoFile(_))));
}

#[test]
fn main_log_follow_is_monotonic_across_rotation_and_clear() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vigild.log");
    let settings = LogSettings {
        target: vigil_config::LogTarget::Path(path.clone()),
        maxbytes: 120,
        backups: 2,
        level: LogLevel::Info,
        echo_stdout: false,
        format: vigil_config::MainLogFormat::Text,
    };
    let log = MainLog::open(settings).expect("main log");
    let mut expected = Vec::new();
    let mut seen = Vec::new();
    let mut next = 0i64;
    for i in 0..40 {
        let line = format!("line {i:03}\n");
        log.write_line(LogLevel::Info, &line);
        expected.extend_from_slice(line.as_bytes());
        let (bytes, start, after) = log.follow(next, 1 << 20).expect("follow");
        assert_eq!(start, next as u64, "polled after every line: nothing missed");
        seen.extend_from_slice(&bytes);
        next = after as i64;
    }
    assert_eq!(seen, expected);
    assert!(path.with_extension("log.1").exists(), "the log did rotate");
    log.clear().expect("clear");
    let (bytes, start, after) = log.follow(next, 1 << 20).expect("after clear");
    assert!(bytes.is_empty());
    assert_eq!((start, after), (next as u64, next as u64));
    log.write_line(LogLevel::Info, "after\n");
    assert_eq!(log.follow(next, 1 << 20).expect("new line").0, b"after\n");
    assert!(matches!(log.follow(next + 100, 10), Err(LogError::BadArguments { .. })));
    let (slice, from, to, size) = log.read_slice(-3, 0, 2).expect("read slice");
    assert_eq!((slice.as_slice(), from, to, size), (&b"er"[..], 3, 5, 6));
}

#[test]
fn process_info_keeps_supervisord_fields() {
    let core = vigil_core::ProcessInfo {
        name: "w1".into(),
        group: "web".into(),
        namespec: "web:w1".into(),
        start: 10,
        stop: 0,
        now: 20,
        state: vigil_core::ProcessState::Running,
        statename: "RUNNING",
        spawnerr: Default::default(),
        exitstatus: 0,
        logfile: "/l".into(),
        stdout_logfile: "/l".into(),
        stderr_logfile: Default::default(),
        pid: 42,
        description: "pid 42, uptime 0:00:10, healthy".into(),
        health: Some(vigil_core::Health::Healthy),
        waiting_for: vec!["db".into()],
        autostart: true,
        completed: false,
        restarts: 2,
        last_exit: Some(vigil_core::exit::ExitStatus::Signal(9)),
        oom_killed: false,
        stdout_bytes: 7,
        stderr_bytes: 3,
        usage: Some(vigil_core::Usage {
            cpu_user: Duration::from_millis(1500),
            cpu_system: Duration::from_micros(20),
            rss_bytes: 8192,
        }),
    };
    let facts = crate::facts::process_facts(core.clone(), process_info);
    assert_eq!((facts.autostart, facts.restarts), (true, 2));
    assert_eq!(
        facts.last_exit,
        Some(vigil_rpc::LastExit {
            at: 0,
            code: None,
            signal: Some(9),
            core_dumped: false,
            oom_killed: false
        })
    );
    assert_eq!(
        facts.usage,
        Some(vigil_rpc::Usage { cpu_user_us: 1_500_000, cpu_system_us: 20, rss_bytes: 8192 })
    );
    assert_eq!((facts.stdout_bytes, facts.stderr_bytes), (7, 3));
    assert_eq!(facts.info.pid, 42);
    let wire = process_info(core);
    assert_eq!(
        (wire.state, wire.statename.as_str(), wire.pid),
        (ProcessState::Running, "RUNNING", 42)
    );
    assert_eq!(wire.namespec(), "web:w1");
    assert_eq!(wire.description, "pid 42, uptime 0:00:10, healthy");
    assert_eq!(wire.health, Some(vigil_rpc::Health::Healthy));
    assert_eq!(wire.waiting_for, ["db"]);
}
