use std::collections::BTreeSet;

use super::super::structs::describe;
use super::*;
use crate::backend::Reread;
use crate::limits::{MAX_LOG_READ, MAX_MULTICALL_CALLS, MAX_RESPONSE};
use crate::testing::{FakeBackend, process};

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn i(number: i32) -> Value {
    Value::Integer(number)
}

fn b(flag: bool) -> Value {
    Value::Boolean(flag)
}

fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

fn st(members: &[(&str, Value)]) -> Value {
    Value::Struct(members.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}

async fn check(backend: &FakeBackend, method: &str, params: Vec<Value>) -> Result<Value, Fault> {
    call(backend, method, &params).await
}

fn code(outcome: &Result<Value, Fault>) -> Option<FaultCode> {
    outcome.as_ref().err().map(|fault| fault.code)
}

fn fault_string(outcome: Result<Value, Fault>) -> String {
    outcome.expect_err("expected a fault").fault_string()
}

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    match value {
        Value::Struct(members) => &members[key],
        other => panic!("not a struct: {other:?}"),
    }
}

fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

fn utc() -> TimeZone {
    TimeZone::UTC
}

fn web0() -> ProcessRef {
    ProcessRef::new("web", "web_0")
}

/// Valid arguments for a signature: what a well-behaved client would send.
fn valid_args(signature: &[&str]) -> Vec<Value> {
    signature[1..]
        .iter()
        .map(|ty| match *ty {
            "string" => s("HUP"),
            "int" => i(0),
            "boolean" => b(true),
            "array" => arr(vec![]),
            other => panic!("unexpected parameter type {other}"),
        })
        .collect()
}

#[tokio::test]
async fn list_methods_is_sorted_and_complete() {
    let backend = FakeBackend::new();
    let listed = check(&backend, "system.listMethods", vec![]).await.unwrap();
    let names: Vec<&str> = items(&listed)
        .iter()
        .map(|value| match value {
            Value::String(name) => name.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names.len(), 42);
    assert_eq!(names.iter().filter(|name| name.starts_with("supervisor.")).count(), 37);
    assert_eq!(names.iter().filter(|name| name.starts_with("vigil.")).count(), 1);
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 42, "duplicates");
    for alias in [
        "supervisor.getVersion",
        "supervisor.readMainLog",
        "supervisor.readProcessLog",
        "supervisor.tailProcessLog",
        "supervisor.clearProcessLog",
    ] {
        assert!(names.contains(&alias), "{alias}");
    }
}

#[tokio::test]
async fn every_listed_method_dispatches_and_checks_its_argument_count() {
    let backend = FakeBackend::new();
    for spec in table::<FakeBackend>() {
        let too_many = vec![s("x"); spec.signature().len() + 1];
        let outcome = check(&backend, spec.name, too_many).await;
        assert_eq!(code(&outcome), Some(FaultCode::IncorrectParameters), "{}", spec.name);
        let too_few_possible = spec.signature().len() > 1;
        if too_few_possible
            && spec.name != "supervisor.startAllProcesses"
            && spec.name != "supervisor.stopAllProcesses"
        {
            let outcome = check(&backend, spec.name, vec![]).await;
            assert_eq!(code(&outcome), Some(FaultCode::IncorrectParameters), "{}", spec.name);
        }
    }
}

#[tokio::test]
async fn every_argument_is_type_checked() {
    let backend = FakeBackend::new();
    for spec in table::<FakeBackend>() {
        for position in 0..spec.signature().len() - 1 {
            let mut args = valid_args(&spec.signature());
            args[position] = st(&[("wrong", i(1))]);
            let outcome = check(&backend, spec.name, args).await;
            assert_eq!(
                code(&outcome),
                Some(FaultCode::IncorrectParameters),
                "{} argument {position}",
                spec.name
            );
        }
    }
    // Python's truthiness: an int is accepted where a boolean is expected.
    let outcome = check(&backend, "supervisor.stopProcess", vec![s("web:web_0"), i(0)]).await;
    assert_eq!(outcome, Ok(b(true)));
}

#[tokio::test]
async fn names_outside_the_table_are_unknown_methods() {
    let backend = FakeBackend::new();
    for name in [
        "",
        "getState",
        "supervisor",
        "supervisor.",
        "supervisor.getState.im_func",
        "supervisor._update",
        "supervisor.__init__",
        "supervisor.supervisord.options.execve",
        "system._listMethods",
        "nosuch.getState",
        ".getState",
        "supervisor.getstate",
        "system.multicall.x",
    ] {
        let outcome = check(&backend, name, vec![]).await;
        assert_eq!(fault_string(outcome), "UNKNOWN_METHOD", "{name:?}");
    }
}

#[tokio::test]
async fn every_supervisor_method_but_remote_comm_refuses_during_shutdown() {
    for daemon in [DaemonState::Shutdown, DaemonState::Restarting] {
        let backend = FakeBackend::new();
        backend.state().daemon = daemon;
        for spec in
            table::<FakeBackend>().iter().filter(|spec| spec.name.starts_with("supervisor."))
        {
            let outcome = check(&backend, spec.name, valid_args(&spec.signature())).await;
            if spec.name == "supervisor.sendRemoteCommEvent" {
                assert_eq!(outcome, Ok(b(true)));
            } else {
                assert_eq!(code(&outcome), Some(FaultCode::ShutdownState), "{}", spec.name);
            }
        }
        let outcome = check(&backend, "system.listMethods", vec![]).await;
        assert!(outcome.is_ok(), "system methods do not check the state");
    }
}

#[tokio::test]
async fn identification_methods() {
    let backend = FakeBackend::new();
    assert_eq!(check(&backend, "supervisor.getAPIVersion", vec![]).await, Ok(s("3.0")));
    assert_eq!(check(&backend, "supervisor.getVersion", vec![]).await, Ok(s("3.0")));
    assert_eq!(
        check(&backend, "supervisor.getSupervisorVersion", vec![]).await,
        Ok(s(env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(check(&backend, "supervisor.getIdentification", vec![]).await, Ok(s("vigil-test")));
    assert_eq!(
        check(&backend, "supervisor.getPID", vec![]).await,
        Ok(i(i32::try_from(std::process::id()).unwrap()))
    );
    assert_eq!(
        check(&backend, "supervisor.getState", vec![]).await,
        Ok(st(&[("statecode", i(1)), ("statename", s("RUNNING"))]))
    );
    backend.state().daemon = DaemonState::Fatal;
    assert_eq!(
        check(&backend, "supervisor.getState", vec![]).await,
        Ok(st(&[("statecode", i(2)), ("statename", s("FATAL"))]))
    );
}

#[tokio::test]
async fn process_info_has_supervisords_fields_and_types() {
    let backend = FakeBackend::new();
    let info = check(&backend, "supervisor.getProcessInfo", vec![s("web:web_0")]).await.unwrap();
    let Value::Struct(members) = &info else { panic!("{info:?}") };
    let keys: Vec<&str> = members.keys().map(String::as_str).collect();
    let mut expected = vec![
        "name",
        "group",
        "start",
        "stop",
        "now",
        "state",
        "statename",
        "spawnerr",
        "exitstatus",
        "logfile",
        "stdout_logfile",
        "stderr_logfile",
        "pid",
        "description",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(field(&info, "name"), &s("web_0"));
    assert_eq!(field(&info, "group"), &s("web"));
    assert_eq!(field(&info, "state"), &i(20));
    assert_eq!(field(&info, "statename"), &s("RUNNING"));
    assert_eq!(field(&info, "pid"), &i(4242));
    assert_eq!(field(&info, "logfile"), &s("/logs/web_0.out"));
    assert_eq!(field(&info, "stdout_logfile"), &s("/logs/web_0.out"));
    assert_eq!(field(&info, "stderr_logfile"), &s(""));
    assert_eq!(field(&info, "start"), &i(1_700_000_000));
    for key in ["start", "stop", "now", "state", "exitstatus", "pid"] {
        assert!(matches!(field(&info, key), Value::Integer(_)), "{key}");
    }
    let Value::String(description) = field(&info, "description") else { panic!() };
    assert!(description.starts_with("pid 4242, uptime "), "{description}");
}

#[tokio::test]
async fn process_info_faults_and_capping() {
    let backend = FakeBackend::new();
    let outcome = check(&backend, "supervisor.getProcessInfo", vec![s("nosuch")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");
    let outcome = check(&backend, "supervisor.getProcessInfo", vec![s("web:*")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: web:*");
    // The client's spelling is kept in the fault, not the canonical namespec.
    let outcome = check(&backend, "supervisor.getProcessInfo", vec![s("ghost:ghost")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: ghost:ghost");
    // A homogeneous group's process answers to its bare name.
    let outcome = check(&backend, "supervisor.getProcessInfo", vec![s("worker")]).await;
    assert_eq!(field(&outcome.unwrap(), "statename"), &s("STOPPED"));

    backend.state().processes[0].start = i64::from(i32::MAX) + 10;
    backend.state().processes[0].stop = i64::from(i32::MIN) - 10;
    let info = check(&backend, "supervisor.getProcessInfo", vec![s("web:web_1")]).await.unwrap();
    assert_eq!(field(&info, "start"), &i(i32::MAX));
    assert_eq!(field(&info, "stop"), &i(i32::MIN));
}

#[tokio::test]
async fn all_process_info_is_sorted_by_group_then_name() {
    let backend = FakeBackend::new();
    let all = check(&backend, "supervisor.getAllProcessInfo", vec![]).await.unwrap();
    let order: Vec<(Value, Value)> = items(&all)
        .iter()
        .map(|info| (field(info, "group").clone(), field(info, "name").clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            (s("cron"), s("cron")),
            (s("web"), s("web_0")),
            (s("web"), s("web_1")),
            (s("worker"), s("worker")),
        ]
    );
    assert_eq!(
        field(&items(&all)[0], "description"),
        &s("Exited too quickly (process log may have details)")
    );
    assert_eq!(field(&items(&all)[3], "description"), &s("Not started"));
}

#[test]
fn descriptions_follow_interpret_process_info() {
    let now = 1_700_000_000;
    let mut info = process("web", "web_0", ProcessState::Running);
    info.start = now - 12;
    assert_eq!(describe(&info, now, &utc()), "pid 4242, uptime 0:00:12");
    info.start = now - (86_400 + 2 * 3600 + 3 * 60 + 4);
    assert_eq!(describe(&info, now, &utc()), "pid 4242, uptime 1 day, 2:03:04");
    info.start = now - 3 * 86_400;
    assert_eq!(describe(&info, now, &utc()), "pid 4242, uptime 3 days, 0:00:00");
    info.start = now + 100;
    assert_eq!(describe(&info, now, &utc()), "pid 4242, uptime 0:00:00", "clock set back");

    let mut info = process("web", "web_0", ProcessState::Backoff);
    assert_eq!(describe(&info, now, &utc()), "unknown error (try \"tail web_0\")");
    info.spawnerr = "can't find command '/x'".into();
    assert_eq!(describe(&info, now, &utc()), "can't find command '/x'");

    let mut info = process("web", "web_0", ProcessState::Stopped);
    assert_eq!(describe(&info, now, &utc()), "Not started");
    assert_ne!(
        describe(&process("web", "web_0", ProcessState::Exited), now, &utc()),
        "Not started"
    );
    info.start = now - 100;
    info.stop = now;
    // 2023-11-14 22:13:20 UTC, as `%b %d %I:%M %p`.
    assert_eq!(describe(&info, now, &utc()), "Nov 14 10:13 PM");
    let plus_one = TimeZone::fixed(jiff::tz::offset(1));
    assert_eq!(describe(&info, now, &plus_one), "Nov 14 11:13 PM", "local time, not UTC");

    for state in [ProcessState::Starting, ProcessState::Stopping, ProcessState::Unknown] {
        assert_eq!(describe(&process("a", "a", state), now, &utc()), "");
    }
}

#[tokio::test]
async fn start_and_stop_one_process() {
    let backend = FakeBackend::new();
    assert_eq!(check(&backend, "supervisor.startProcess", vec![s("worker")]).await, Ok(b(true)));
    let outcome = check(&backend, "supervisor.startProcess", vec![s("worker"), b(false)]).await;
    assert_eq!(fault_string(outcome), "ALREADY_STARTED: worker");
    let outcome = check(&backend, "supervisor.startProcess", vec![s("worker:worker")]).await;
    assert_eq!(fault_string(outcome), "ALREADY_STARTED: worker:worker");
    let outcome = check(&backend, "supervisor.startProcess", vec![s("nosuch")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");

    assert_eq!(check(&backend, "supervisor.stopProcess", vec![s("worker")]).await, Ok(b(true)));
    let outcome = check(&backend, "supervisor.stopProcess", vec![s("worker")]).await;
    assert_eq!(fault_string(outcome), "NOT_RUNNING: worker");

    backend.state().failing_spawns.push(ProcessRef::new("worker", "worker"));
    let outcome = check(&backend, "supervisor.startProcess", vec![s("worker")]).await;
    assert_eq!(fault_string(outcome), "SPAWN_ERROR: worker");
}

#[tokio::test]
async fn group_operations_return_result_structs() {
    let backend = FakeBackend::new();
    // `g:*` on the single-process method delegates to the group method.
    let stopped = check(&backend, "supervisor.stopProcess", vec![s("web:*")]).await.unwrap();
    assert_eq!(
        stopped,
        arr(vec![
            st(&[
                ("name", s("web_0")),
                ("group", s("web")),
                ("status", i(80)),
                ("description", s("OK"))
            ]),
            st(&[
                ("name", s("web_1")),
                ("group", s("web")),
                ("status", i(80)),
                ("description", s("OK"))
            ]),
        ])
    );
    backend.state().failing_spawns.push(ProcessRef::new("web", "web_1"));
    let started =
        check(&backend, "supervisor.startProcessGroup", vec![s("web"), b(true)]).await.unwrap();
    assert_eq!(
        started,
        arr(vec![
            st(&[
                ("name", s("web_0")),
                ("group", s("web")),
                ("status", i(80)),
                ("description", s("OK"))
            ]),
            st(&[
                ("name", s("web_1")),
                ("group", s("web")),
                ("status", i(50)),
                ("description", s("SPAWN_ERROR: web:web_1")),
            ]),
        ])
    );
    let outcome = check(&backend, "supervisor.startProcessGroup", vec![s("nosuch")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");

    let all = check(&backend, "supervisor.stopAllProcesses", vec![]).await.unwrap();
    assert_eq!(items(&all).len(), 2, "web_0 and web_1 (backoff) were running: {all:?}");
    let all = check(&backend, "supervisor.startAllProcesses", vec![b(false)]).await.unwrap();
    assert_eq!(items(&all).len(), 4, "{all:?}");
}

#[tokio::test]
async fn signals_by_name_or_number() {
    let backend = FakeBackend::new();
    for (signal, expected) in [
        // Linux's numbers for HUP, USR1, TERM, KILL and INT.
        (s("HUP"), Signal(1)),
        (s("sigusr1"), Signal(10)),
        (s(" SIGTERM "), Signal(15)),
        (s("9"), Signal(9)),
        (i(2), Signal(2)),
    ] {
        let outcome =
            check(&backend, "supervisor.signalProcess", vec![s("web:web_0"), signal]).await;
        assert_eq!(outcome, Ok(b(true)));
        assert_eq!(backend.state().signals.pop(), Some((web0(), expected)));
    }
    let outcome =
        check(&backend, "supervisor.signalProcess", vec![s("web:web_0"), s("NOPE")]).await;
    assert_eq!(fault_string(outcome), "BAD_SIGNAL: NOPE");
    let outcome = check(&backend, "supervisor.signalProcess", vec![s("web:web_0"), s("999")]).await;
    assert_eq!(fault_string(outcome), "BAD_SIGNAL: 999");
    // BAD_NAME wins over BAD_SIGNAL.
    let outcome = check(&backend, "supervisor.signalProcess", vec![s("nosuch"), s("NOPE")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");
    let outcome = check(&backend, "supervisor.signalProcess", vec![s("worker"), s("HUP")]).await;
    assert_eq!(fault_string(outcome), "NOT_RUNNING: worker");
    assert!(backend.state().signals.is_empty());
}

#[tokio::test]
async fn group_signals() {
    let backend = FakeBackend::new();
    let sent = check(&backend, "supervisor.signalProcessGroup", vec![s("web"), s("USR2")]).await;
    assert_eq!(items(&sent.unwrap()).len(), 2);
    assert_eq!(backend.state().signals.len(), 2);
    let sent = check(&backend, "supervisor.signalProcess", vec![s("web:*"), s("USR2")]).await;
    assert_eq!(items(&sent.unwrap()).len(), 2);
    let sent = check(&backend, "supervisor.signalAllProcesses", vec![s("USR2")]).await;
    assert_eq!(items(&sent.unwrap()).len(), 2, "only running processes are signalled");
    let outcome =
        check(&backend, "supervisor.signalProcessGroup", vec![s("nosuch"), s("HUP")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");

    // A bad signal fails per running process, as supervisord's loop over signalProcess does.
    let sent = check(&backend, "supervisor.signalProcessGroup", vec![s("web"), s("NOPE")]).await;
    assert_eq!(
        sent.unwrap(),
        arr(vec![
            st(&[
                ("name", s("web_0")),
                ("group", s("web")),
                ("status", i(11)),
                ("description", s("BAD_SIGNAL: NOPE"))
            ]),
            st(&[
                ("name", s("web_1")),
                ("group", s("web")),
                ("status", i(11)),
                ("description", s("BAD_SIGNAL: NOPE"))
            ]),
        ])
    );
    let outcome =
        check(&backend, "supervisor.signalProcessGroup", vec![s("nosuch"), s("NOPE")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");
}

#[test]
fn read_ranges_follow_read_file() {
    assert_eq!(read_range(-100, 0), Ok(ReadRange::Last(100)));
    assert_eq!(read_range(i32::MIN, 0), Ok(ReadRange::Last(1 << 31)));
    assert_eq!(read_range(10, 0), Ok(ReadRange::From(10)));
    assert_eq!(read_range(10, 5), Ok(ReadRange::Slice { offset: 10, length: 5 }));
    assert_eq!(read_range(-1, 5), Err(Fault::new(FaultCode::BadArguments)));
    assert_eq!(read_range(0, -5), Err(Fault::new(FaultCode::BadArguments)));
}

#[tokio::test]
async fn read_logs() {
    let backend = FakeBackend::new();
    let stdout = LogSource::Process(web0(), LogChannel::Stdout);
    backend.append_log(&stdout, b"0123456789");
    backend.append_log(&LogSource::Main, b"main log\n");
    for (offset, length, expected) in
        [(-3, 0, "789"), (-100, 0, "0123456789"), (4, 0, "456789"), (2, 3, "234"), (20, 0, "")]
    {
        let outcome = check(
            &backend,
            "supervisor.readProcessStdoutLog",
            vec![s("web:web_0"), i(offset), i(length)],
        )
        .await;
        assert_eq!(outcome, Ok(s(expected)), "({offset}, {length})");
    }
    let outcome =
        check(&backend, "supervisor.readProcessLog", vec![s("web:web_0"), i(-1), i(1)]).await;
    assert_eq!(fault_string(outcome), "BAD_ARGUMENTS");
    let outcome =
        check(&backend, "supervisor.readProcessStderrLog", vec![s("web:web_0"), i(0), i(0)]).await;
    assert_eq!(fault_string(outcome), "NO_FILE: /logs/web_0.err");
    // NO_FILE comes before BAD_ARGUMENTS, as in supervisord.
    let outcome =
        check(&backend, "supervisor.readProcessStderrLog", vec![s("web:web_0"), i(-1), i(1)]).await;
    assert_eq!(code(&outcome), Some(FaultCode::NoFile));
    let outcome = check(&backend, "supervisor.readProcessLog", vec![s("nosuch"), i(0), i(0)]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");
    assert_eq!(check(&backend, "supervisor.readLog", vec![i(0), i(4)]).await, Ok(s("main")));
    assert_eq!(check(&backend, "supervisor.readMainLog", vec![i(-4), i(0)]).await, Ok(s("log\n")));

    // Log bytes that are not UTF-8 are replaced, not refused.
    backend.append_log(&stdout, b"\xff\xfeok");
    let outcome =
        check(&backend, "supervisor.readProcessLog", vec![s("web:web_0"), i(-4), i(0)]).await;
    assert_eq!(outcome, Ok(s("\u{FFFD}\u{FFFD}ok")));
}

#[test]
fn tail_window_matches_tail_file() {
    // Expectations computed by running supervisord's `tailFile` arithmetic in Python.
    let cases = [
        ((100, 0, 10), (90, 10, true)),
        ((100, 95, 10), (90, 10, false)),
        ((100, 100, 10), (100, 0, false)),
        ((100, 150, 10), (100, 0, false)),
        ((5, 0, 10), (0, 10, false)),
        ((0, 0, 10), (0, 0, false)),
        ((100, 90, 10), (90, 10, false)),
        ((100, 0, 0), (99, 0, true)),
        ((100, -5, 10), (90, 10, true)),
        ((100, 10, -5), (99, 0, true)),
        ((100, 0, 1), (99, 1, true)),
        ((0, 0, 0), (0, 0, false)),
        ((10, 9, 1), (9, 1, false)),
    ];
    for ((size, offset, length), expected) in cases {
        assert_eq!(tail_window(size, offset, length), expected, "({size}, {offset}, {length})");
    }
}

#[tokio::test]
async fn tail_logs() {
    let backend = FakeBackend::new();
    let outcome =
        check(&backend, "supervisor.tailProcessStdoutLog", vec![s("web:web_0"), i(0), i(10)]).await;
    assert_eq!(outcome, Ok(arr(vec![s(""), i(0), b(false)])), "no file yet");
    let outcome =
        check(&backend, "supervisor.tailProcessLog", vec![s("nosuch"), i(0), i(10)]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");

    let stdout = LogSource::Process(web0(), LogChannel::Stdout);
    backend.append_log(&stdout, "x".repeat(100).as_bytes());
    backend.append_log(&stdout, b"0123456789");
    let outcome =
        check(&backend, "supervisor.tailProcessLog", vec![s("web:web_0"), i(0), i(4)]).await;
    assert_eq!(outcome, Ok(arr(vec![s("6789"), i(110), b(true)])));
    let outcome =
        check(&backend, "supervisor.tailProcessLog", vec![s("web:web_0"), i(105), i(10)]).await;
    assert_eq!(outcome, Ok(arr(vec![s("0123456789"), i(110), b(false)])));
    let outcome =
        check(&backend, "supervisor.tailProcessLog", vec![s("web:web_0"), i(110), i(10)]).await;
    assert_eq!(outcome, Ok(arr(vec![s(""), i(110), b(false)])));
    let outcome =
        check(&backend, "supervisor.tailProcessStderrLog", vec![s("web:web_0"), i(0), i(10)]).await;
    assert_eq!(outcome, Ok(arr(vec![s(""), i(0), b(false)])));
}

#[tokio::test]
async fn clearing_logs() {
    let backend = FakeBackend::new();
    assert_eq!(check(&backend, "supervisor.clearLog", vec![]).await, Ok(b(true)));
    assert_eq!(
        check(&backend, "supervisor.clearProcessLogs", vec![s("worker")]).await,
        Ok(b(true))
    );
    assert_eq!(
        check(&backend, "supervisor.clearProcessLog", vec![s("web:web_1")]).await,
        Ok(b(true))
    );
    let outcome = check(&backend, "supervisor.clearProcessLogs", vec![s("web:*")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: web:*");
    assert_eq!(
        backend.state().cleared,
        vec![
            None,
            Some(ProcessRef::new("worker", "worker")),
            Some(ProcessRef::new("web", "web_1"))
        ]
    );
    let all = check(&backend, "supervisor.clearAllProcessLogs", vec![]).await.unwrap();
    let names: Vec<&Value> = items(&all).iter().map(|result| field(result, "name")).collect();
    assert_eq!(names, vec![&s("cron"), &s("web_0"), &s("web_1"), &s("worker")]);
    assert!(items(&all).iter().all(|result| field(result, "status") == &i(80)));
}

#[tokio::test]
async fn vigil_upgrade_answers_the_preflight_or_why_not() {
    let backend = FakeBackend::new();
    let answer = check(&backend, "vigil.upgrade", vec![s("")]).await.unwrap();
    assert_eq!(answer, s("vigild 0.0.0 reads handover format 1"));
    let refused = check(&backend, "vigil.upgrade", vec![s("/bin/refuses")]).await;
    assert_eq!(code(&refused), Some(FaultCode::Failed));
    assert_eq!(
        code(&check(&backend, "vigil.upgrade", vec![]).await),
        Some(FaultCode::IncorrectParameters)
    );
}

#[tokio::test]
async fn reload_and_groups() {
    let backend = FakeBackend::new();
    backend.state().reload = Ok(Reread {
        added: vec!["newprog".to_owned()],
        changed: vec!["web".to_owned()],
        removed: vec![],
        details: vec![],
    });
    assert_eq!(
        check(&backend, "supervisor.reloadConfig", vec![]).await,
        Ok(arr(vec![arr(vec![arr(vec![s("newprog")]), arr(vec![s("web")]), arr(vec![])])]))
    );
    backend.state().reload =
        Err(Fault::with_detail(FaultCode::CantReread, "supervisord.conf:3: bad"));
    let outcome = check(&backend, "supervisor.reloadConfig", vec![]).await;
    assert_eq!(fault_string(outcome), "CANT_REREAD: supervisord.conf:3: bad");

    assert_eq!(check(&backend, "supervisor.addProcessGroup", vec![s("extra")]).await, Ok(b(true)));
    let outcome = check(&backend, "supervisor.addProcessGroup", vec![s("extra")]).await;
    assert_eq!(fault_string(outcome), "ALREADY_ADDED: extra");
    let outcome = check(&backend, "supervisor.addProcessGroup", vec![s("nosuch")]).await;
    assert_eq!(fault_string(outcome), "BAD_NAME: nosuch");
    let outcome = check(&backend, "supervisor.removeProcessGroup", vec![s("web")]).await;
    assert_eq!(fault_string(outcome), "STILL_RUNNING: web");
    assert_eq!(
        check(&backend, "supervisor.removeProcessGroup", vec![s("extra")]).await,
        Ok(b(true))
    );
}

#[tokio::test]
async fn stdin_and_remote_events() {
    let backend = FakeBackend::new();
    let sent =
        check(&backend, "supervisor.sendProcessStdin", vec![s("web:web_0"), s("héllo\n")]).await;
    assert_eq!(sent, Ok(b(true)));
    let sent = check(
        &backend,
        "supervisor.sendProcessStdin",
        vec![s("web:web_0"), Value::Base64(vec![0, 255])],
    )
    .await;
    assert_eq!(sent, Ok(b(true)));
    assert_eq!(
        backend.state().stdin,
        vec![(web0(), "héllo\n".as_bytes().to_vec()), (web0(), vec![0, 255])]
    );
    let outcome = check(&backend, "supervisor.sendProcessStdin", vec![s("worker"), s("x")]).await;
    assert_eq!(fault_string(outcome), "NOT_RUNNING: worker");
    let outcome = check(&backend, "supervisor.sendProcessStdin", vec![s("web:web_0"), i(5)]).await;
    assert_eq!(fault_string(outcome), "INCORRECT_PARAMETERS");

    let sent = check(&backend, "supervisor.sendRemoteCommEvent", vec![s("type"), s("data")]).await;
    assert_eq!(sent, Ok(b(true)));
    assert_eq!(backend.state().events, vec![("type".to_owned(), "data".to_owned())]);
}

#[tokio::test]
async fn shutdown_and_restart_change_the_state() {
    let backend = FakeBackend::new();
    assert_eq!(check(&backend, "supervisor.restart", vec![]).await, Ok(b(true)));
    assert_eq!(backend.state().daemon, DaemonState::Restarting);
    let outcome = check(&backend, "supervisor.getState", vec![]).await;
    assert_eq!(fault_string(outcome), "SHUTDOWN_STATE");
    backend.state().daemon = DaemonState::Running;
    assert_eq!(check(&backend, "supervisor.shutdown", vec![]).await, Ok(b(true)));
    assert_eq!(backend.state().daemon, DaemonState::Shutdown);
}

#[tokio::test]
async fn config_info_fields() {
    let backend = FakeBackend::new();
    let all = check(&backend, "supervisor.getAllConfigInfo", vec![]).await.unwrap();
    let names: Vec<&Value> = items(&all).iter().map(|config| field(config, "name")).collect();
    assert_eq!(names, vec![&s("cron"), &s("web_0"), &s("web_1"), &s("worker")]);
    let first = &items(&all)[0];
    let Value::Struct(members) = first else { panic!() };
    let keys: BTreeSet<&str> = members.keys().map(String::as_str).collect();
    let mut expected: BTreeSet<&str> = [
        "autostart",
        "autorestart",
        "directory",
        "uid",
        "command",
        "exitcodes",
        "group",
        "group_prio",
        "inuse",
        "killasgroup",
        "name",
        "process_prio",
        "redirect_stderr",
        "startretries",
        "startsecs",
        "stopsignal",
        "stopwaitsecs",
        "serverurl",
    ]
    .into();
    let channel_keys = [
        "capture_maxbytes",
        "events_enabled",
        "logfile",
        "logfile_backups",
        "logfile_maxbytes",
        "syslog",
    ];
    let owned: Vec<String> = ["stdout", "stderr"]
        .iter()
        .flat_map(|prefix| channel_keys.iter().map(move |key| format!("{prefix}_{key}")))
        .collect();
    expected.extend(owned.iter().map(String::as_str));
    assert_eq!(keys, expected);
    assert_eq!(field(first, "directory"), &s("none"));
    assert_eq!(field(first, "uid"), &s("none"));
    assert_eq!(field(first, "stdout_logfile"), &s("auto"));
    assert_eq!(field(first, "stderr_logfile"), &s("none"));
    assert_eq!(field(first, "serverurl"), &s("auto"));
    assert_eq!(field(first, "autorestart"), &s("unexpected"));
    assert_eq!(field(first, "exitcodes"), &arr(vec![i(0)]));
    assert_eq!(field(first, "stopsignal"), &i(15));
    assert_eq!(field(first, "stdout_logfile_maxbytes"), &i(50 * 1024 * 1024));
    assert_eq!(field(first, "inuse"), &b(true));

    {
        let mut state = backend.state();
        let configs = &mut state.configs;
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        let config = &mut configs[0];
        config.directory = Some("/srv".to_owned());
        config.uid = Some(u32::MAX);
        config.autorestart = "true".to_owned();
        config.stdout.logfile = "/var/log/cron.log".to_owned();
        config.stdout.logfile_maxbytes = u64::MAX;
        configs[1].autorestart = "false".to_owned();
    }
    let all = check(&backend, "supervisor.getAllConfigInfo", vec![]).await.unwrap();
    let first = &items(&all)[0];
    assert_eq!(field(first, "directory"), &s("/srv"));
    assert_eq!(field(first, "uid"), &i(i32::MAX), "capped");
    assert_eq!(field(first, "autorestart"), &b(true));
    assert_eq!(field(&items(&all)[1], "autorestart"), &b(false));
    assert_eq!(field(first, "stdout_logfile"), &s("/var/log/cron.log"));
    assert_eq!(field(first, "stdout_logfile_maxbytes"), &i(i32::MAX), "capped");
}

#[tokio::test]
async fn method_help_and_signature() {
    let backend = FakeBackend::new();
    for (name, signature) in [
        ("supervisor.startProcess", vec!["boolean", "string", "boolean"]),
        ("supervisor.tailProcessStdoutLog", vec!["array", "string", "int", "int"]),
        ("supervisor.getState", vec!["struct"]),
        ("supervisor.signalAllProcesses", vec!["array", "string"]),
        ("system.multicall", vec!["array", "array"]),
    ] {
        let outcome = check(&backend, "system.methodSignature", vec![s(name)]).await;
        assert_eq!(outcome, Ok(arr(signature.into_iter().map(s).collect())), "{name}");
    }
    let help = check(&backend, "system.methodHelp", vec![s("supervisor.getState")]).await;
    assert!(matches!(help, Ok(Value::String(text)) if text.contains("@return struct")));
    for method in ["system.methodHelp", "system.methodSignature"] {
        let outcome = check(&backend, method, vec![s("supervisor.nosuch")]).await;
        assert_eq!(fault_string(outcome), "SIGNATURE_UNSUPPORTED");
    }
    // Every documented parameter count agrees with the signature.
    for spec in table::<FakeBackend>() {
        let params = spec.help.matches("@param").count();
        assert_eq!(params, spec.signature().len() - 1, "{}", spec.name);
        assert_eq!(spec.help.matches("@return").count(), 1, "{}", spec.name);
    }
}

#[tokio::test]
async fn multicall_returns_raw_results_and_fault_structs() {
    let backend = FakeBackend::new();
    let calls = arr(vec![
        st(&[("methodName", s("supervisor.getAPIVersion")), ("params", arr(vec![]))]),
        st(&[("methodName", s("supervisor.getPID"))]),
        st(&[("methodName", s("supervisor.nosuch")), ("params", arr(vec![]))]),
        st(&[("methodName", s("supervisor.getProcessInfo")), ("params", arr(vec![s("nosuch")]))]),
        st(&[("methodName", s("system.multicall")), ("params", arr(vec![arr(vec![])]))]),
        st(&[("params", arr(vec![]))]),
        s("not a struct"),
        st(&[("methodName", s("supervisor.stopProcess")), ("params", arr(vec![s("web:web_0")]))]),
    ]);
    let outcome = check(&backend, "system.multicall", vec![calls]).await.unwrap();
    let fault = |number: i32, text: &str| st(&[("faultCode", i(number)), ("faultString", s(text))]);
    assert_eq!(
        outcome,
        arr(vec![
            s("3.0"),
            i(i32::try_from(std::process::id()).unwrap()),
            fault(1, "UNKNOWN_METHOD"),
            fault(10, "BAD_NAME: nosuch"),
            fault(2, "INCORRECT_PARAMETERS: Recursive system.multicall forbidden"),
            fault(2, "INCORRECT_PARAMETERS: No methodName"),
            fault(2, "INCORRECT_PARAMETERS"),
            b(true),
        ])
    );
    // The calls ran in order and had their effects.
    assert_eq!(backend.state().processes[2].state, ProcessState::Stopped);

    let outcome = check(&backend, "system.multicall", vec![s("x")]).await;
    assert_eq!(fault_string(outcome), "INCORRECT_PARAMETERS");
    let outcome = check(&backend, "system.multicall", vec![arr(vec![])]).await;
    assert_eq!(outcome, Ok(arr(vec![])));
}

fn text(outcome: Result<Value, Fault>) -> String {
    match outcome {
        Ok(Value::String(text)) => text,
        other => panic!("not a string: {other:?}"),
    }
}

#[tokio::test]
async fn log_reads_return_at_most_max_log_read_bytes() {
    let backend = FakeBackend::new();
    let stdout = LogSource::Process(web0(), LogChannel::Stdout);
    let max = usize::try_from(MAX_LOG_READ).unwrap();
    let mut log = vec![b'a'; max];
    log.extend_from_slice(b"zzzzzzzzzz");
    backend.append_log(&stdout, &log);
    backend.append_log(&LogSource::Main, &log);

    // To the end: the start is kept.
    let read = text(
        check(&backend, "supervisor.readProcessStdoutLog", vec![s("web:web_0"), i(0), i(0)]).await,
    );
    assert_eq!((read.len(), read.contains('z')), (max, false));
    let read = text(
        check(&backend, "supervisor.readProcessLog", vec![s("web:web_0"), i(5), i(i32::MAX)]).await,
    );
    assert_eq!(read.len(), max);
    // The last bytes: the end is kept.
    let read = text(check(&backend, "supervisor.readLog", vec![i(i32::MIN), i(0)]).await);
    assert_eq!((read.len(), read.ends_with("azzzzzzzzzz")), (max, true));
    // A tail: the end, with the skipped bytes reported as an overflow.
    let tail =
        check(&backend, "supervisor.tailProcessStdoutLog", vec![s("web:web_0"), i(0), i(i32::MAX)])
            .await
            .unwrap();
    let Value::String(bytes) = &items(&tail)[0] else { panic!("{tail:?}") };
    assert_eq!((bytes.len(), bytes.ends_with("azzzzzzzzzz")), (max, true));
    assert_eq!(items(&tail)[1..], [i(i32::try_from(max + 10).unwrap()), b(true)]);
}

#[tokio::test]
async fn multicall_results_stay_within_the_response_limit() {
    // 40 reads of a 1 MiB log made one 40 MiB response; 183 MB with a larger log.
    let backend = FakeBackend::new();
    let stdout = LogSource::Process(web0(), LogChannel::Stdout);
    backend.append_log(&stdout, &vec![b'x'; usize::try_from(MAX_LOG_READ).unwrap()]);
    let read = st(&[
        ("methodName", s("supervisor.readProcessStdoutLog")),
        ("params", arr(vec![s("web:web_0"), i(0), i(0)])),
    ]);
    let mut calls = vec![read; 40];
    calls.push(st(&[
        ("methodName", s("supervisor.startProcess")),
        ("params", arr(vec![s("worker")])),
    ]));
    let outcome = check(&backend, "system.multicall", vec![arr(calls)]).await.unwrap();
    assert!(super::super::codec::encoded_len(&outcome) <= MAX_RESPONSE);
    let results = items(&outcome);
    assert_eq!(results.len(), 41);
    let read = results.iter().take_while(|result| matches!(result, Value::String(_))).count();
    assert!((10..40).contains(&read), "{read} reads fitted");
    let fault = |result: &Value| match (field(result, "faultCode"), field(result, "faultString")) {
        (Value::Integer(30), Value::String(text)) => text.clone(),
        other => panic!("not a FAILED fault: {other:?}"),
    };
    assert!(fault(&results[read]).starts_with("FAILED: response too large"), "{:?}", results[read]);
    for result in &results[read + 1..] {
        assert!(fault(result).starts_with("FAILED: not run"), "{result:?}");
    }
    // The calls after the limit did not run.
    assert_eq!(backend.state().processes[1].name, "worker");
    assert_eq!(backend.state().processes[1].state, ProcessState::Stopped, "worker not started");

    let too_many = vec![st(&[("methodName", s("supervisor.getPID"))]); MAX_MULTICALL_CALLS + 1];
    let outcome = check(&backend, "system.multicall", vec![arr(too_many)]).await;
    assert_eq!(code(&outcome), Some(FaultCode::IncorrectParameters));
}
