//! `sendProcessStdin` against a child that does not read its stdin: each call
//! answers at once, the daemon queues up to its documented limit and refuses
//! the rest whole, and what it accepted reaches the child whole and in order.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use vigil_integration::{Program, Sandbox, TIMEOUT, holds_for, wait_until};

/// Far above what a queued call takes, far below a client's patience.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one whole XML-RPC request over the control socket; the connection
/// its answer will come on.
pub(crate) fn xmlrpc_send(sandbox: &Sandbox, body: &str) -> UnixStream {
    let mut stream = UnixStream::connect(sandbox.socket()).expect("connect");
    stream.set_read_timeout(Some(CALL_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(CALL_TIMEOUT)).expect("write timeout");
    write!(
        stream,
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    stream
}

/// One XML-RPC call over the control socket; the whole HTTP answer.
fn xmlrpc(sandbox: &Sandbox, body: &str) -> String {
    let mut stream = xmlrpc_send(sandbox, body);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("the daemon answers within the timeout");
    answer
}

/// `supervisor.sendProcessStdin(name, data)`; the whole HTTP answer.
pub(crate) fn send_stdin(sandbox: &Sandbox, name: &str, data: &str) -> String {
    xmlrpc(
        sandbox,
        &format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>supervisor.sendProcessStdin</methodName>\
             <params><param><value><string>{name}</string></value></param>\
             <param><value><string>{data}</string></value></param></params></methodCall>"
        ),
    )
}

/// `deaf`, a program that reads nothing until the file `go` exists in the sandbox,
/// then copies its stdin to its stdout log; and the path of `go`.
pub(crate) fn deaf(sandbox: &Sandbox) -> (Program, std::path::PathBuf) {
    let go = sandbox.join("go");
    let command =
        format!("/bin/sh -c 'while [ ! -e {} ]; do sleep 0.05; done; exec cat'", go.display());
    (Program::raw("deaf", &command).set("startsecs", 0), go)
}

#[test]
fn send_stdin_to_a_child_that_does_not_read_queues_up_to_the_limit_and_refuses_the_rest() {
    let sandbox = Sandbox::new();
    let (program, go) = deaf(&sandbox);
    sandbox.write_config(&[program]);
    let daemon = sandbox.start();
    daemon.running_pid("deaf");

    const CHUNK: usize = 64 * 1024;
    let calls = vigil_core::STDIN_QUEUE_LIMIT / CHUNK + 8;
    let mut accepted = 0;
    let mut refused = 0;
    for call in 0..calls {
        // Each call's bytes are one letter, so a torn or reordered write shows.
        let letter = char::from(b'a' + u8::try_from(call % 26).expect("small"));
        let data: String = std::iter::repeat_n(letter, CHUNK).collect();
        let started = Instant::now();
        let answer = send_stdin(&sandbox, "deaf", &data);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "call {call} took {took:?}: {answer}");
        if answer.contains("<boolean>1</boolean>") {
            assert_eq!(refused, 0, "call {call} accepted after a refusal: {answer}");
            accepted += 1;
        } else {
            assert!(
                answer.contains("<int>30</int>") && answer.contains("stdin queue full"),
                "call {call}: {answer}"
            );
            refused += 1;
        }
        // The daemon keeps answering everything else meanwhile.
        if call % 8 == 0 {
            daemon.ctl(&["status"]).expect_code(0);
        }
    }
    assert!(
        accepted >= vigil_core::STDIN_QUEUE_LIMIT / CHUNK,
        "{accepted} calls of {CHUNK} bytes accepted"
    );
    // The pipe itself holds at most a little beyond the queue.
    assert!(accepted <= vigil_core::STDIN_QUEUE_LIMIT / CHUNK + 4, "{accepted} accepted");
    assert!(refused >= 4, "{refused} refused");
    assert_eq!(daemon.state("deaf"), "RUNNING");

    // Once the child reads, exactly the accepted calls arrive, whole and in order.
    std::fs::write(&go, b"").expect("create go");
    let log = sandbox.stdout_log("deaf");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let want = u64::try_from(accepted * CHUNK).expect("fits");
    wait_until(TIMEOUT, "the accepted bytes to reach the log", || size() >= want);
    // Room for a refused call to show up if one had been half written.
    holds_for(Duration::from_millis(300), "no more than the accepted bytes arriving", || {
        size() == want
    });
    let bytes = std::fs::read(&log).expect("read log");
    for (call, block) in bytes.chunks(CHUNK).enumerate() {
        let letter = b'a' + u8::try_from(call % 26).expect("small");
        assert!(block.iter().all(|b| *b == letter), "call {call} arrived whole and in order");
    }
    // A reading child takes new calls again.
    let answer = send_stdin(&sandbox, "deaf", "more");
    assert!(answer.contains("<boolean>1</boolean>"), "{answer}");
}
