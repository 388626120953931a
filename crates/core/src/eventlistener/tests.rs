use std::time::SystemTime;

use super::*;

fn change(from: ProcessState, to: ProcessState) -> ProcessStateEvent {
    ProcessStateEvent {
        group: "grp".to_owned(),
        name: "echoer".to_owned(),
        from,
        to,
        pid: Some(4242),
        tries: 2,
        expected: Some(true),
        oom_killed: false,
        at: SystemTime::UNIX_EPOCH,
    }
}

fn notify(event: Event) -> Notification {
    let notification =
        Notification::from_event(&event).expect("every bus event has a listener form");
    assert_eq!(Notification::name_of(&event), notification.name);
    notification
}

#[test]
fn process_state_payloads() {
    use ProcessState::*;
    let table = [
        (Stopped, Starting, "PROCESS_STATE_STARTING", "from_state:STOPPED tries:2"),
        (Starting, Backoff, "PROCESS_STATE_BACKOFF", "from_state:STARTING tries:2"),
        (Starting, Running, "PROCESS_STATE_RUNNING", "from_state:STARTING pid:4242"),
        (Running, Stopping, "PROCESS_STATE_STOPPING", "from_state:RUNNING pid:4242"),
        (Stopping, Stopped, "PROCESS_STATE_STOPPED", "from_state:STOPPING pid:4242"),
        (Running, Exited, "PROCESS_STATE_EXITED", "from_state:RUNNING expected:1 pid:4242"),
        (Backoff, Fatal, "PROCESS_STATE_FATAL", "from_state:BACKOFF"),
        (Running, Unknown, "PROCESS_STATE_UNKNOWN", "from_state:RUNNING"),
    ];
    for (from, to, name, tail) in table {
        let event = notify(Event::ProcessState(change(from, to)));
        assert_eq!(event.name, name);
        assert_eq!(event.payload, format!("processname:echoer groupname:grp {tail}"));
    }
    let mut unexpected = change(ProcessState::Running, ProcessState::Exited);
    unexpected.expected = Some(false);
    assert_eq!(
        notify(Event::ProcessState(unexpected)).payload,
        "processname:echoer groupname:grp from_state:RUNNING expected:0 pid:4242"
    );
    let mut killed = change(ProcessState::Running, ProcessState::Exited);
    killed.expected = Some(false);
    killed.oom_killed = true;
    assert_eq!(
        notify(Event::ProcessState(killed)).payload,
        "processname:echoer groupname:grp from_state:RUNNING expected:0 pid:4242 oom_killed:1"
    );
}

#[test]
fn other_payloads() {
    let added = notify(Event::GroupAdded { group: "web".to_owned() });
    assert_eq!(
        (added.name.as_str(), added.payload.as_str()),
        ("PROCESS_GROUP_ADDED", "groupname:web\n")
    );
    let removed = notify(Event::GroupRemoved { group: "web".to_owned() });
    assert_eq!(removed.name, "PROCESS_GROUP_REMOVED");
    assert_eq!(removed.payload, "groupname:web\n");
    let remote =
        notify(Event::RemoteCommunication { kind: "ping".to_owned(), data: "hi".to_owned() });
    assert_eq!(
        (remote.name.as_str(), remote.payload.as_str()),
        ("REMOTE_COMMUNICATION", "type:ping\nhi")
    );
    let running = notify(Event::SupervisorRunning);
    assert_eq!(
        (running.name.as_str(), running.payload.as_str()),
        ("SUPERVISOR_STATE_CHANGE_RUNNING", "")
    );
    assert_eq!(notify(Event::SupervisorStopping).name, "SUPERVISOR_STATE_CHANGE_STOPPING");
    let output = OutputEvent {
        group: "grp".to_owned(),
        name: "echoer".to_owned(),
        pid: 7,
        channel: Channel::Stderr,
        data: Arc::from(&b"oops\n"[..]),
    };
    let log = notify(Event::ProcessLog(output.clone()));
    assert_eq!(log.name, "PROCESS_LOG_STDERR");
    assert_eq!(log.payload, "processname:echoer groupname:grp pid:7 channel:stderr\noops\n");
    let comm =
        notify(Event::ProcessCommunication(OutputEvent { channel: Channel::Stdout, ..output }));
    assert_eq!(comm.name, "PROCESS_COMMUNICATION_STDOUT");
    assert_eq!(comm.payload, "processname:echoer groupname:grp pid:7\noops\n");
    let tick = Notification::tick("TICK_60", 1_700_000_040);
    assert_eq!((tick.name.as_str(), tick.payload.as_str()), ("TICK_60", "when:1700000040"));
}

#[test]
fn envelope_matches_supervisord() {
    // The envelope seen from supervisord 4.3.0 (serials differ only by value).
    let event = notify(Event::ProcessState(ProcessStateEvent {
        group: "echoer".to_owned(),
        name: "echoer".to_owned(),
        from: ProcessState::Stopped,
        to: ProcessState::Starting,
        pid: None,
        tries: 0,
        expected: None,
        oom_killed: false,
        at: SystemTime::UNIX_EPOCH,
    }));
    assert_eq!(
        envelope("supervisor", 1, "lis", 1, &event),
        "ver:3.0 server:supervisor serial:1 pool:lis poolserial:1 \
         eventname:PROCESS_STATE_STARTING len:62\n\
         processname:echoer groupname:echoer from_state:STOPPED tries:0"
    );
    // len counts characters, not bytes.
    let text =
        Notification { name: "REMOTE_COMMUNICATION".to_owned(), payload: "type:t\né".to_owned() };
    assert!(envelope("s", 0, "p", 0, &text).contains(" len:8\n"));
}

#[test]
fn subscriptions_follow_the_type_tree() {
    let yes = [
        ("EVENT", "TICK_5"),
        ("PROCESS_STATE", "PROCESS_STATE_RUNNING"),
        ("PROCESS_STATE_RUNNING", "PROCESS_STATE_RUNNING"),
        ("PROCESS_LOG", "PROCESS_LOG_STDERR"),
        ("PROCESS_COMMUNICATION", "PROCESS_COMMUNICATION_STDOUT"),
        ("SUPERVISOR_STATE_CHANGE", "SUPERVISOR_STATE_CHANGE_STOPPING"),
        ("TICK", "TICK_3600"),
        ("PROCESS_GROUP", "PROCESS_GROUP_REMOVED"),
        ("REMOTE_COMMUNICATION", "REMOTE_COMMUNICATION"),
    ];
    for (sub, name) in yes {
        assert!(subscribes(sub, name), "{sub} should get {name}");
    }
    let no = [
        ("PROCESS_STATE", "PROCESS_GROUP_ADDED"),
        ("PROCESS_STATE_RUNNING", "PROCESS_STATE_STOPPED"),
        ("TICK_5", "TICK_60"),
        ("PROCESS_LOG", "PROCESS_COMMUNICATION_STDOUT"),
        ("REMOTE_COMMUNICATION", "PROCESS_STATE_RUNNING"),
    ];
    for (sub, name) in no {
        assert!(!subscribes(sub, name), "{sub} should not get {name}");
    }
}

#[test]
fn protocol_happy_path_in_pieces_and_batches() {
    let mut protocol = Protocol::default();
    assert_eq!(protocol.feed(b"REA"), vec![]);
    assert_eq!(protocol.feed(b"DY\n"), vec![Outcome::Ready]);
    assert_eq!(protocol.state(), ListenerState::Ready);
    protocol.sent();
    assert_eq!(protocol.state(), ListenerState::Busy);
    assert_eq!(protocol.feed(b"RESULT 2"), vec![]);
    assert_eq!(protocol.feed(b"\nO"), vec![]);
    // The result and the next READY in one read.
    assert_eq!(protocol.feed(b"KREADY\n"), vec![Outcome::Accepted, Outcome::Ready]);
    protocol.sent();
    assert_eq!(protocol.feed(b"RESULT 4\nFAIL"), vec![Outcome::Rejected(b"FAIL".to_vec())]);
    assert_eq!(protocol.state(), ListenerState::Acknowledged);
}

#[test]
fn protocol_violations() {
    let mut protocol = Protocol::default();
    assert_eq!(protocol.feed(b"HELLO!\n"), vec![Outcome::Violation]);
    assert_eq!(protocol.state(), ListenerState::Unknown);
    // UNKNOWN is terminal for this child.
    assert_eq!(protocol.feed(b"READY\n"), vec![]);

    let mut protocol = Protocol::default();
    assert_eq!(protocol.feed(b"READY\nextra"), vec![Outcome::Ready, Outcome::Violation]);

    let mut protocol = Protocol::default();
    protocol.feed(b"READY\n");
    protocol.sent();
    assert_eq!(protocol.feed(b"RESULT x\n"), vec![Outcome::BadResult("RESULT x".to_owned())]);
    assert_eq!(protocol.state(), ListenerState::Unknown);

    // A length whose end overflows the buffer's (found by fuzzing) is no number.
    let mut protocol = Protocol::default();
    protocol.feed(b"READY\n");
    protocol.sent();
    let line = format!("RESULT {}", usize::MAX);
    assert_eq!(protocol.feed(format!("{line}\n").as_bytes()), vec![Outcome::BadResult(line)]);
    assert_eq!(protocol.state(), ListenerState::Unknown);

    // A listener cannot make the daemon buffer without bound: neither by
    // announcing a huge body nor by never ending its result line.
    let mut protocol = Protocol::default();
    protocol.feed(b"READY\n");
    protocol.sent();
    let line = format!("RESULT {}", MAX_RESULT_BYTES);
    assert_eq!(protocol.feed(format!("{line}\n").as_bytes()), vec![Outcome::BadResult(line)]);
    assert_eq!(protocol.state(), ListenerState::Unknown);
    let mut protocol = Protocol::default();
    protocol.feed(b"READY\n");
    protocol.sent();
    let outcomes = protocol.feed(&vec![b'R'; MAX_RESULT_BYTES + 1]);
    assert!(matches!(&outcomes[..], [Outcome::BadResult(_)]));
    assert_eq!(protocol.state(), ListenerState::Unknown);

    // supervisord's issue-733: a newline after the body breaks the protocol.
    let mut protocol = Protocol::default();
    protocol.feed(b"READY\n");
    protocol.sent();
    assert_eq!(protocol.feed(b"RESULT 2\nOK\n"), vec![Outcome::Accepted]);
    assert_eq!(protocol.feed(b""), vec![]);
    assert_eq!(protocol.state(), ListenerState::Acknowledged);
    assert_eq!(protocol.feed(b"READY\n"), vec![Outcome::Violation]);
}

fn queued(serial: u64) -> Queued {
    Queued { serial, pool_serial: serial, event: Arc::new(Notification::tick("TICK_5", serial)) }
}

#[test]
fn full_buffer_drops_the_oldest() {
    let mut pool = Pool {
        name: "lis".to_owned(),
        identifier: "supervisor".to_owned(),
        buffer_size: 2,
        buffer: VecDeque::new(),
        next_serial: 0,
        members: Vec::new(),
        paused: false,
        stop_readers: watch::Sender::new(false),
    };
    for serial in 0..3 {
        pool.accept(queued(serial), false);
    }
    let serials: Vec<u64> = pool.buffer.iter().map(|q| q.serial).collect();
    assert_eq!(serials, [1, 2]);
    // A re-buffered event goes to the head, still within the bound.
    pool.accept(queued(9), true);
    let serials: Vec<u64> = pool.buffer.iter().map(|q| q.serial).collect();
    assert_eq!(serials, [9, 2]);
}

#[test]
fn a_protocol_resumes_where_a_live_upgrade_left_it() {
    for state in ListenerState::ALL {
        assert_eq!(ListenerState::from_name(state.name()), Some(state));
    }
    assert_eq!(ListenerState::from_name("ready"), None);
    // BUSY with half a result line: the rest completes it.
    let mut protocol = Protocol::resume(ListenerState::Busy, b"RESULT 2\nO".to_vec());
    assert_eq!(protocol.pending(), b"RESULT 2\nO");
    assert_eq!(protocol.feed(b"K"), vec![Outcome::Accepted]);
    assert_eq!(protocol.state(), ListenerState::Acknowledged);
    assert_eq!(protocol.feed(b"READY\n"), vec![Outcome::Ready]);
}

#[test]
fn a_carried_pool_keeps_its_queue_and_sends_again_what_a_gone_listener_held() {
    let event = |serial: u64| CarriedEvent {
        serial,
        pool_serial: serial,
        name: "TICK_5".to_owned(),
        payload: format!("when:{serial}"),
    };
    let carried = CarriedPool {
        group: "lis".to_owned(),
        next_serial: 7,
        queue: vec![event(5), event(6)],
        members: vec![CarriedListener {
            name: "gone".to_owned(),
            state: "BUSY".to_owned(),
            pending: Vec::new(),
            busy: Some(event(4)),
            running: true,
            stdout_fd: None,
        }],
    };
    let mut pool = Pool {
        name: "lis".to_owned(),
        identifier: "supervisor".to_owned(),
        buffer_size: 10,
        buffer: VecDeque::new(),
        next_serial: 0,
        members: Vec::new(),
        paused: false,
        stop_readers: watch::Sender::new(false),
    };
    let (tx, _rx) = mpsc::unbounded_channel();
    pool.resume(carried, HashMap::new(), &tx);
    assert_eq!(pool.next_serial, 7);
    let queue: Vec<CarriedEvent> = pool.buffer.iter().map(Queued::carry).collect();
    assert_eq!(queue, vec![event(4), event(5), event(6)]);
}
