//! Vigil over HTTP on the real control socket: every HTTP method reaches the HTTP layer
//! and gets an HTTP answer.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;

use vigil_integration::{Program, Sandbox, TIMEOUT};

#[test]
fn methods_no_route_serves_get_405_with_allow_not_a_reset() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[Program::child("p", &["--sleep", "3600"]).set("startsecs", 0)]);
    let _daemon = sandbox.start();
    for (request_line, allowed) in [
        ("OPTIONS /RPC2", "POST"),
        ("PUT /RPC2", "POST"),
        ("DELETE /logtail/p", "GET"),
        ("PATCH /mainlogtail", "GET"),
    ] {
        let mut stream = UnixStream::connect(sandbox.socket()).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(
            stream,
            "{request_line} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .unwrap_or_else(|error| panic!("{request_line}: {error}"));
        assert!(answer.starts_with("HTTP/1.1 405"), "{request_line}: {answer:?}");
        let allow = answer.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("allow").then(|| value.trim().to_owned())
        });
        assert_eq!(allow.as_deref(), Some(allowed), "{request_line}: {answer:?}");
    }
}

/// The context switches of each of a process's threads so far, by thread id.
fn context_switches(pid: i32) -> std::collections::BTreeMap<String, u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let switches = status
                .lines()
                .filter(|line| line.contains("ctxt_switches"))
                .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            Some((task.file_name().to_string_lossy().into_owned(), switches))
        })
        .collect()
}

/// How often the threads of `after` were switched since `before`: a thread that ended
/// in between (an idle blocking-pool thread) counts for nothing, a new one in full.
fn woken_since(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> u64 {
    after.iter().map(|(tid, count)| count - before.get(tid).copied().unwrap_or(0)).sum()
}

/// The dashboard's live feed on the real daemon: a stop done elsewhere (vigilctl) is
/// pushed to an open stream as a `facts` event at once, and a daemon whose last stream
/// closed is idle again.
#[test]
fn the_dashboard_feed_pushes_a_change_and_leaves_an_idle_daemon_idle() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("p", &["--sleep", "3600"]).set("startsecs", 0),
        Program::child("q", &["--sleep", "3600"]).set("startsecs", 0),
    ]);
    let daemon = sandbox.start();
    daemon.running_pid("p");
    daemon.running_pid("q");
    let mut stream = UnixStream::connect(sandbox.socket()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "GET /ui/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut seen = Vec::new();
    // Reads until `done` holds for what came so far.
    let mut read_until = |done: &dyn Fn(&str) -> bool| -> String {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if done(&text) {
                return text;
            }
            let read = stream.read(&mut buffer).expect("the stream goes on");
            assert_ne!(read, 0, "the stream ended: {text}");
            seen.extend_from_slice(&buffer[..read]);
        }
    };
    let first = read_until(&|text| text.contains("event: facts\ndata: "));
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.to_ascii_lowercase().contains("content-type: text/event-stream"), "{first}");
    daemon.ctl(&["stop", "q"]).expect_code(0);
    let pushed = read_until(&|text| text.contains("\"name\":\"q\"") && text.contains("STOPPED"));
    let last_facts = pushed.rsplit("event: facts\ndata: ").next().unwrap();
    let facts: serde_json::Value =
        serde_json::from_str(last_facts.lines().next().unwrap()).expect("JSON facts");
    let state_of = |name: &str| {
        facts["processes"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
            ["statename"]
            .clone()
    };
    assert_eq!(state_of("q"), "STOPPED");
    assert_eq!(state_of("p"), "RUNNING");
    drop(stream);

    // The closed stream's task notices at its next write (the 5 s usage refresh at the
    // latest); after that nothing runs for the dashboard.
    vigil_integration::holds_for(std::time::Duration::from_secs(6), "settling", || true);
    let before = context_switches(daemon.pid());
    vigil_integration::holds_for(std::time::Duration::from_secs(4), "an idle period", || true);
    let woken = woken_since(&before, &context_switches(daemon.pid()));
    assert!(woken <= 8, "vigild woke up {woken} times in 4 idle seconds after the feed closed");
}
