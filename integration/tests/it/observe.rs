//! What vigild shows to watchers: process facts in `status --json`, Prometheus
//! `/metrics` (checked by `promtool`) and the `/healthz`/`/readyz` probes, on the
//! real sockets.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use vigil_integration::{Program, Sandbox, TIMEOUT, wait_for};

/// `user:123` in Basic auth.
const AUTH: &str = "dXNlcjoxMjM=";

/// One `GET` with `Connection: close`: the status code and the body.
fn get(mut stream: impl std::io::Read + std::io::Write, path: &str, auth: bool) -> (u16, String) {
    let authorization =
        if auth { format!("Authorization: Basic {AUTH}\r\n") } else { String::new() };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
    )
    .expect("send request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("status");
    // Small bodies come whole or in one chunk; join chunks for the larger ones.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

fn scrape(sandbox: &Sandbox) -> String {
    let stream = UnixStream::connect(sandbox.socket()).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let (status, body) = get(stream, "/metrics", false);
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels as written), if present.
fn sample(metrics: &str, series: &str) -> Option<String> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.to_owned())
    })
}

fn promtool_check(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus, installed by scripts/test)");
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("feed promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `vigilctl status --json`'s entry for `name`.
fn status_of(sandbox: &Sandbox, name: &str) -> Value {
    let output = sandbox.ctl(&["status", "--json"]);
    let document: Value = serde_json::from_str(output.stdout.trim()).expect("JSON");
    let result = document["result"].as_array().expect("a list of processes");
    result.iter().find(|process| process["name"] == name).cloned().expect("the process")
}

#[test]
fn metrics_and_status_json_follow_a_kill_and_restart() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("p", &["--echo", "hello", "--sleep", "3600"])
            .set("startsecs", 0)
            .set("autorestart", "true"),
        Program::child("idle", &["--sleep", "3600"]).set("autostart", "false"),
    ]);
    let _daemon = sandbox.start();
    let first = wait_for(TIMEOUT, "p RUNNING", || {
        let p = status_of(&sandbox, "p");
        (p["statename"] == "RUNNING").then(|| p["pid"].as_i64().expect("pid"))
    });
    let p = status_of(&sandbox, "p");
    assert_eq!(p["restarts"], 0);
    assert_eq!(p["last_exit"], Value::Null);
    assert_eq!(p["autostart"], true);
    assert!(p["usage"]["rss_bytes"].as_u64().expect("rss") > 0, "{p}");
    // The plain text is supervisorctl's, with none of the facts.
    let text = sandbox.ctl(&["status", "p"]).stdout;
    assert!(text.starts_with("p ") && text.contains(&format!("pid {first}, uptime")), "{text}");

    let metrics = wait_for(TIMEOUT, "p's echo logged", || {
        let metrics = scrape(&sandbox);
        let logged = sample(
            &metrics,
            r#"vigil_process_log_bytes_total{group="p",name="p",channel="stdout"}"#,
        )?;
        (logged != "0").then_some(metrics)
    });
    promtool_check(&metrics);
    let series = |name: &str| format!(r#"{name}{{group="p",name="p"}}"#);
    assert_eq!(sample(&metrics, &series("vigil_process_restarts_total")).as_deref(), Some("0"));
    assert_eq!(sample(&metrics, &series("vigil_process_up")).as_deref(), Some("1"));
    assert_eq!(
        sample(&metrics, r#"vigil_process_state{group="p",name="p",state="RUNNING"}"#).as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(&metrics, r#"vigil_process_state{group="idle",name="idle",state="STOPPED"}"#)
            .as_deref(),
        Some("1")
    );
    assert_eq!(sample(&metrics, &series("vigil_process_last_exit_code")), None);
    assert!(sample(&metrics, &series("vigil_process_resident_memory_bytes")).is_some());
    assert_eq!(sample(&metrics, "vigil_config_generation").as_deref(), Some("1"));

    kill(Pid::from_raw(i32::try_from(first).expect("pid")), Signal::SIGKILL).expect("kill p");
    let second = wait_for(TIMEOUT, "p restarted", || {
        let p = status_of(&sandbox, "p");
        let pid = p["pid"].as_i64().expect("pid");
        (p["statename"] == "RUNNING" && pid != first).then_some(pid)
    });
    assert_ne!(second, first);
    let p = status_of(&sandbox, "p");
    assert_eq!(p["restarts"], 1, "{p}");
    assert_eq!(p["last_exit"]["signal"], 9, "{p}");
    assert_eq!(p["last_exit"]["code"], Value::Null, "{p}");

    let metrics = scrape(&sandbox);
    promtool_check(&metrics);
    assert_eq!(sample(&metrics, &series("vigil_process_restarts_total")).as_deref(), Some("1"));
    assert_eq!(sample(&metrics, &series("vigil_process_up")).as_deref(), Some("1"));
    assert_eq!(sample(&metrics, &series("vigil_process_last_exit_code")).as_deref(), Some("-1"));
    assert_eq!(sample(&metrics, &series("vigil_process_last_exit_signal")).as_deref(), Some("9"));
    assert!(sample(&metrics, &series("vigil_process_last_exit_time_seconds")).is_some());
}

/// A free TCP port on the loopback interface.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[test]
fn healthz_and_readyz_answer_probes_without_credentials() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let inet =
        format!("[inet_http_server]\nport=127.0.0.1:{port}\nusername=user\npassword=123\n\n");
    let up = Program::child("up", &["--sleep", "3600"]).set("startsecs", 0);
    let broken =
        Program::raw("broken", "/nonexistent/broken").set("startsecs", 0).set("startretries", 0);
    sandbox.write_config_text(&format!("{inet}{}", sandbox.programs_text(&[up.clone(), broken])));
    let _daemon = sandbox.start();
    let http = |path: &str, auth: bool| {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        get(stream, path, auth)
    };
    assert_eq!(http("/healthz", false), (200, "ok\n".to_owned()));
    assert_eq!(http("/metrics", false).0, 401);
    assert_eq!(http("/RPC2", false).0, 401);

    let (status, body) = wait_for(TIMEOUT, "broken FATAL", || {
        let (status, body) = http("/readyz", true);
        body.contains("FATAL").then_some((status, body))
    });
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["ready"], false);
    let not_ready = body["not_ready"].as_array().expect("not_ready");
    assert_eq!(not_ready.len(), 1, "{body}");
    assert_eq!(not_ready[0]["name"], "broken");
    assert_eq!(not_ready[0]["state"], "FATAL");
    assert!(not_ready[0]["reason"].as_str().expect("reason").starts_with("FATAL"), "{body}");
    // Without credentials: the verdict only, no names.
    let (status, body) = http("/readyz", false);
    assert_eq!((status, body.as_str()), (503, "{\"ready\":false}\n"));

    // Dropping the broken program makes the daemon ready; a one-shot that exited
    // with an expected code counts as done.
    let once =
        Program::child("once", &["--exit", "0"]).set("startsecs", 0).set("autorestart", "false");
    sandbox.write_config_text(&format!("{inet}{}", sandbox.programs_text(&[up, once])));
    sandbox.ctl(&["update"]).expect_code(0);
    wait_for(TIMEOUT, "once EXITED", || {
        (status_of(&sandbox, "once")["statename"] == "EXITED").then_some(())
    });
    let (status, body) = wait_for(TIMEOUT, "ready", || {
        let answer = http("/readyz", true);
        (answer.0 == 200).then_some(answer)
    });
    assert_eq!((status, body.as_str()), (200, "{\"not_ready\":[],\"ready\":true}\n"));
    assert_eq!(http("/readyz", false), (200, "{\"ready\":true}\n".to_owned()));
    let (status, metrics) = http("/metrics", true);
    assert_eq!(status, 200);
    assert_eq!(sample(&metrics, "vigil_config_generation").as_deref(), Some("2"));
}
