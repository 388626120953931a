//! supervisord's events end to end: a real listener (`vigil-test-child
//! --event-listener`) in an `[eventlistener:x]` pool of a real vigild, plus
//! the output filters (`strip_ansi`, capture mode, log events) seen through
//! the log files and the listener.
//!
//! A test binary of its own so these daemons do not share a subreaper with the
//! black-box suite in `it`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use vigil_integration::{Program, Sandbox, child_bin, wait_for, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// `[eventlistener:lis]` recording to `<sandbox>/events.txt`.
fn listener_section(sandbox: &Sandbox, events: &str, extra: &str) -> String {
    format!(
        "[eventlistener:lis]\ncommand={} --event-listener {}\nevents={events}\n\
         startsecs=0\nstdout_logfile={}\nstderr_logfile={}\n{extra}\n",
        child_bin().display(),
        sandbox.join("events.txt").display(),
        sandbox.stdout_log("lis").display(),
        sandbox.stderr_log("lis").display(),
    )
}

/// Each recorded event: (header line, payload).
fn recorded(sandbox: &Sandbox) -> Vec<(String, String)> {
    let text = sandbox.read_text("events.txt");
    let mut events = Vec::new();
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(header) = lines.next() {
        let header = header.trim_end_matches('\n').to_owned();
        let length: usize = header
            .split_whitespace()
            .find_map(|t| t.strip_prefix("len:"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad header {header:?} in\n{text}"));
        // The payload is `length` characters followed by the recorder's `\n`,
        // and may itself span lines.
        let mut payload = String::new();
        while payload.chars().count() < length + 1 {
            match lines.next() {
                Some(line) => payload.push_str(line),
                None => return events, // still being written
            }
        }
        payload.pop();
        events.push((header, payload));
    }
    events
}

fn token<'a>(header: &'a str, key: &str) -> &'a str {
    header
        .split_whitespace()
        .find_map(|t| t.strip_prefix(key).and_then(|rest| rest.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {key} in {header:?}"))
}

fn find_event(sandbox: &Sandbox, name: &str, payload_has: &str) -> (String, String) {
    wait_for(WAIT, &format!("{name} with {payload_has:?}"), || {
        recorded(sandbox).into_iter().find(|(header, payload)| {
            token(header, "eventname") == name && payload.contains(payload_has)
        })
    })
}

/// `supervisor.sendRemoteCommEvent(kind, data)` over the unix socket; returns the response body.
fn send_remote_comm(sandbox: &Sandbox, kind: &str, data: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.sendRemoteCommEvent\
         </methodName><params><param><value><string>{kind}</string></value></param>\
         <param><value><string>{data}</string></value></param></params></methodCall>"
    );
    let mut stream = UnixStream::connect(sandbox.socket()).expect("connect to vigild");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let request = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
}

#[test]
fn listener_gets_state_changes_and_remote_comm_with_resend_on_fail() {
    let sandbox = Sandbox::new();
    let worker = Program::child("worker", &["--echo", "working", "--sleep", "0.5"])
        .set("startsecs", 0)
        .set("autorestart", "false");
    let body = format!(
        "{}{}",
        sandbox.programs_text(&[worker]),
        listener_section(&sandbox, "PROCESS_STATE,REMOTE_COMMUNICATION", "")
    );
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();

    let (header, payload) = find_event(&sandbox, "PROCESS_STATE_RUNNING", "processname:worker");
    assert!(header.starts_with("ver:3.0 server:supervisor serial:"), "{header}");
    assert_eq!(token(&header, "pool"), "lis");
    assert_eq!(token(&header, "len"), payload.chars().count().to_string());
    assert!(payload.starts_with("processname:worker groupname:worker from_state:STARTING pid:"));

    let (_, exited) = find_event(&sandbox, "PROCESS_STATE_EXITED", "processname:worker");
    assert!(
        exited
            .starts_with("processname:worker groupname:worker from_state:RUNNING expected:1 pid:"),
        "{exited}"
    );

    let response = send_remote_comm(&sandbox, "greeting", "hello reject-once");
    assert!(response.contains("<boolean>1</boolean>"), "{response}");
    wait_until(WAIT, "the rejected event to be sent again", || {
        recorded(&sandbox)
            .iter()
            .filter(|(header, _)| token(header, "eventname") == "REMOTE_COMMUNICATION")
            .count()
            == 2
    });
    let remote: Vec<_> = recorded(&sandbox)
        .into_iter()
        .filter(|(header, _)| token(header, "eventname") == "REMOTE_COMMUNICATION")
        .collect();
    assert_eq!(remote[0], remote[1], "a re-sent event keeps its serials");
    assert_eq!(remote[0].1, "type:greeting\nhello reject-once");

    // Serials grow in delivery order; the pool's own serials count from 0.
    let events = recorded(&sandbox);
    let pool_serials: Vec<u64> = events
        .iter()
        .map(|(header, _)| token(header, "poolserial").parse().expect("number"))
        .collect();
    assert_eq!(pool_serials.first(), Some(&0), "{events:#?}");
    // The listener's stdout is the protocol channel, never logged.
    assert!(!sandbox.read_text("logs/lis.out").contains("READY"));
    drop(daemon);
}

#[test]
fn output_filters_strip_ansi_capture_and_log_events() {
    let sandbox = Sandbox::new();
    sandbox.supervisord_key("strip_ansi", "true");
    // "\e[31mred\e[0m plain\n" then a capture block between supervisord's tokens.
    let colored =
        Program::child("colored", &["--write-hex", "1b5b33316d7265641b5b306d20706c61696e0a"])
            .set("startsecs", 0)
            .set("autorestart", "false")
            .set("stdout_events_enabled", "true");
    let talker = Program::child(
        "talker",
        &[
            "--echo",
            "before<!--XSUPERVISOR:BEGIN-->secret message<!--XSUPERVISOR:END-->after",
            "--sleep",
            "0.2",
        ],
    )
    .set("startsecs", 0)
    .set("autorestart", "false")
    .set("stdout_capture_maxbytes", "1KB");
    let body = format!(
        "{}{}",
        sandbox.programs_text(&[colored, talker]),
        listener_section(&sandbox, "PROCESS_LOG,PROCESS_COMMUNICATION", "")
    );
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();

    wait_until(WAIT, "the stripped line in the log", || {
        sandbox.read_text("logs/colored.out") == "red plain\n"
    });
    let (_, log) = find_event(&sandbox, "PROCESS_LOG_STDOUT", "processname:colored");
    assert!(log.starts_with("processname:colored groupname:colored pid:"), "{log}");
    assert!(log.ends_with(" channel:stdout\nred plain\n"), "{log}");

    let (_, comm) = find_event(&sandbox, "PROCESS_COMMUNICATION_STDOUT", "processname:talker");
    assert!(comm.starts_with("processname:talker groupname:talker pid:"), "{comm}");
    assert!(comm.ends_with("\nsecret message"), "{comm}");
    wait_until(WAIT, "the text around the block in the log", || {
        sandbox.read_text("logs/talker.out") == "beforeafter\n"
    });
    drop(daemon);
}

#[test]
fn fcgi_children_share_one_listening_socket() {
    let sandbox = Sandbox::new();
    // supervisord's config wants a real port: borrow a free one from the kernel.
    let free = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port");
    let chosen = free.local_addr().expect("local addr").port();
    drop(free);
    let body = format!(
        "[fcgi-program:web]\ncommand={} --accept-stdin\nsocket=tcp://127.0.0.1:{chosen}\n\
         process_name=%(program_name)s_%(process_num)s\nnumprocs=2\nstartsecs=0\n\
         stdout_logfile={}/logs/%(process_num)s.out\nstderr_logfile={}/logs/%(process_num)s.err\n",
        child_bin().display(),
        sandbox.path().display(),
        sandbox.path().display(),
    );
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();

    let port_of = |n: u32| {
        wait_for(WAIT, &format!("child {n} to report its socket"), || {
            let log = sandbox.read_text(format!("logs/{n}.out"));
            log.lines().find_map(|line| line.strip_prefix("accepting port=")?.parse::<u16>().ok())
        })
    };
    let port = port_of(0);
    assert_eq!(port, chosen);
    assert_eq!(port_of(1), port, "both children hold the same socket");

    // Connections reach both children through the one socket.
    let mut pids = std::collections::BTreeSet::new();
    wait_until(WAIT, "both children to answer", || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        pids.insert(answer);
        pids.len() == 2
    });

    // Stopped, the children are gone and so is the daemon's copy of the socket.
    daemon.ctl(&["stop", "all"]).expect_code(0);
    wait_until(WAIT, "the socket to close after the last child", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    drop(daemon);
}

#[test]
fn listener_gets_supervisor_group_and_tick_events() {
    let sandbox = Sandbox::new();
    let body = listener_section(&sandbox, "SUPERVISOR_STATE_CHANGE,PROCESS_GROUP,TICK_5", "");
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();

    let (_, added) = find_event(&sandbox, "PROCESS_GROUP_ADDED", "groupname:lis");
    assert_eq!(added, "groupname:lis\n");
    let (header, running) = find_event(&sandbox, "SUPERVISOR_STATE_CHANGE_RUNNING", "");
    assert_eq!((running.as_str(), token(&header, "len")), ("", "0"));
    // Groups are added before the daemon announces RUNNING, as in supervisord.
    let names: Vec<String> =
        recorded(&sandbox).iter().map(|(h, _)| token(h, "eventname").to_owned()).collect();
    assert_eq!(names[..2], ["PROCESS_GROUP_ADDED", "SUPERVISOR_STATE_CHANGE_RUNNING"]);

    let (_, tick) = find_event(&sandbox, "TICK_5", "when:");
    let when: u64 = tick.strip_prefix("when:").and_then(|n| n.parse().ok()).expect("epoch");
    assert_eq!(when % 5, 0, "{tick}");
    drop(daemon);
}

#[test]
fn event_is_sent_again_after_the_listener_died_while_busy() {
    let sandbox = Sandbox::new();
    // The listener restarts at once, and events wait in the pool meanwhile.
    let body = listener_section(&sandbox, "REMOTE_COMMUNICATION", "autorestart=true");
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();
    wait_until(WAIT, "the listener to run", || {
        daemon.status_of("lis").is_some_and(|(state, _)| state == "RUNNING")
    });

    let response = send_remote_comm(&sandbox, "job", "first exit-once");
    assert!(response.contains("<boolean>1</boolean>"), "{response}");
    send_remote_comm(&sandbox, "job", "second");
    let resent = vigil_integration::try_wait_until(WAIT, || {
        let payloads: Vec<String> = recorded(&sandbox).into_iter().map(|(_, p)| p).collect();
        payloads == ["type:job\nfirst exit-once", "type:job\nfirst exit-once", "type:job\nsecond"]
    });
    assert!(
        resent,
        "both events after the restart; recorded:\n{}\nlog:\n{}",
        sandbox.read_text("events.txt"),
        sandbox.read_text("vigild.log")
    );
    let headers: Vec<String> = recorded(&sandbox).into_iter().map(|(h, _)| h).collect();
    assert_eq!(headers[0], headers[1], "the same event, serials and all");
    assert!(sandbox.join("events.txt.exited").exists());
    drop(daemon);
}

#[test]
fn fcgi_socket_in_use_fails_startup() {
    let sandbox = Sandbox::new();
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a port");
    let port = taken.local_addr().expect("local addr").port();
    let body = format!(
        "[fcgi-program:web]\ncommand={} --accept-stdin\nsocket=tcp://127.0.0.1:{port}\n",
        child_bin().display()
    );
    sandbox.write_config_text(&body);
    let mut command = std::process::Command::new(vigil_integration::vigild_bin());
    command.current_dir(sandbox.path()).arg("-n").arg("-c").arg(sandbox.config_path());
    let output = vigil_integration::run(&mut command, WAIT);
    assert_ne!(output.code, 0, "{output:?}");
    let expected = format!("Could not create FastCGI socket tcp://127.0.0.1:{port}: ");
    let log = sandbox.read_text("vigild.log");
    assert!(output.stderr.contains(&expected) || log.contains(&expected), "{output:?}\n{log}");
    drop(taken);
}

#[test]
fn full_pool_buffer_discards_the_oldest_event() {
    let sandbox = Sandbox::new();
    // A listener that never says READY: events pile up in the pool.
    let body = format!(
        "[eventlistener:lis]\ncommand={} --sleep 60\nevents=REMOTE_COMMUNICATION\n\
         buffer_size=2\nstdout_logfile=NONE\nstderr_logfile=NONE\n",
        child_bin().display()
    );
    sandbox.write_config_text(&body);
    let daemon = sandbox.start();
    for n in 0..3 {
        let response = send_remote_comm(&sandbox, "n", &n.to_string());
        assert!(response.contains("<boolean>1</boolean>"), "{response}");
    }
    wait_until(WAIT, "the overflow to be logged", || {
        sandbox
            .read_text("vigild.log")
            .contains("ERRO pool lis event buffer overflowed, discarding event 0")
    });
    assert!(!sandbox.read_text("vigild.log").contains("discarding event 1"));
    drop(daemon);
}
