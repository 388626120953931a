//! vigilctl's command logic against a fake daemon on a temp Unix socket: the
//! exact output lines and exit codes of status, start, stop, tail and friends.

#[path = "../../rpc/tests/support/fake.rs"]
mod fake;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake::{Fake, Served, serve};
use tokio::sync::Notify;
use vigil_cli::ctl::{Ctl, Options};
use vigil_rpc::{LogChannel, ServerAuth};

/// A `Write` whose bytes the test can read while the command runs.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("output lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("output lock")).into_owned()
    }
}

fn options(url: &str) -> Options {
    Options {
        serverurl: url.to_owned(),
        username: None,
        password: None,
        interactive: false,
        json: false,
    }
}

/// Runs one command as `vigilctl <line>` would: a fresh interpreter, its output
/// and exit status.
async fn run_with(options: Options, line: &str) -> (String, i32) {
    let output = Output::default();
    let mut ctl = Ctl::new(options, Box::new(output.clone()));
    ctl.onecmd(line).await;
    (output.text(), ctl.exitstatus)
}

async fn run(served: &Served, line: &str) -> (String, i32) {
    run_with(options(&served.url), line).await
}

fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

/// A `Ctl` whose `tail -f` stops when the returned `Notify` is notified.
fn interruptible(url: &str, output: &Output) -> (Ctl, Arc<Notify>) {
    let mut ctl = Ctl::new(options(url), Box::new(output.clone()));
    let stop = Arc::new(Notify::new());
    let signal = stop.clone();
    ctl.set_interrupt(move || {
        let signal = signal.clone();
        Box::pin(async move { signal.notified().await })
    });
    (ctl, stop)
}

#[tokio::test]
async fn status_table_and_exit_codes() {
    let served = serve(Fake::new(), None);
    let (out, code) = run(&served, "status").await;
    assert_eq!(
        out,
        lines(&[
            "app1                             RUNNING   pid 4242, uptime 0:00:12",
            "app2                             STOPPED   Not started",
            "failer                           FATAL     Exited too quickly (process log may have details)",
            "grp:a                            RUNNING   pid 5000, uptime 1 day, 1:01:01",
            "grp:b                            STOPPED   Not started",
        ])
    );
    assert_eq!(code, 3, "something is not running");

    assert_eq!(
        run(&served, "status app1").await,
        (lines(&["app1                             RUNNING   pid 4242, uptime 0:00:12"]), 0)
    );
    assert_eq!(
        run(&served, "status nosuch").await,
        (lines(&["nosuch: ERROR (no such process)"]), 4)
    );
    // An unknown name first, then a stopped match: 3 overwrites 4.
    let (out, code) = run(&served, "status nosuch nog:* grp:*").await;
    assert_eq!(
        out,
        lines(&[
            "nosuch: ERROR (no such process)",
            "nog: ERROR (no such group)",
            "grp:a                            RUNNING   pid 5000, uptime 1 day, 1:01:01",
            "grp:b                            STOPPED   Not started",
        ])
    );
    assert_eq!(code, 3);
}

#[tokio::test]
async fn status_reads_rows_and_falls_back_to_infos_from_an_older_daemon() {
    let served = serve(Fake::new(), None);
    let table = run(&served, "status nosuch grp:*").await;
    assert_eq!(served.fake.calls(), ["daemon_info", "status_rows"]);

    // A daemon from before the call lists no extension: the same table and
    // exit status from its infos.
    let older = Fake::new();
    older.lock().extensions.clear();
    let older = serve(older, None);
    assert_eq!(run(&older, "status nosuch grp:*").await, table);
    assert_eq!(older.fake.calls(), ["daemon_info", "all_process_info"]);
    assert_eq!(table.1, 3);
    assert_eq!(table.0.lines().count(), 3);
}

#[tokio::test]
async fn start_and_stop_lines_exit_codes_and_one_round_trip() {
    let served = serve(Fake::new(), None);
    let before = served.fake.calls().len();
    assert_eq!(
        run(&served, "start app2 grp:*").await,
        (lines(&["app2: started", "grp:b: started"]), 0)
    );
    // One upcheck and one start call for all names.
    assert_eq!(served.fake.calls()[before..], ["daemon_info", "start"]);

    assert_eq!(run(&served, "start app1").await, (lines(&["app1: ERROR (already started)"]), 0));
    assert_eq!(run(&served, "start failer").await, (lines(&["failer: ERROR (spawn error)"]), 7));
    assert_eq!(
        run(&served, "start nosuch").await,
        (lines(&["nosuch: ERROR (no such process)"]), 1)
    );
    assert_eq!(run(&served, "start nog:*").await, (lines(&["nog: ERROR (no such group)"]), 2));
    let (out, code) = run(&served, "start").await;
    assert!(
        out.starts_with("Error: start requires a process name\nstart <name>\t\tStart a process\n"),
        "{out}"
    );
    assert_eq!(code, 2);

    assert_eq!(
        run(&served, "stop app1 grp:a").await,
        (lines(&["app1: stopped", "grp:a: stopped"]), 0)
    );
    assert_eq!(run(&served, "stop app1").await, (lines(&["app1: ERROR (not running)"]), 0));
    assert_eq!(run(&served, "stop nosuch").await, (lines(&["nosuch: ERROR (no such process)"]), 1));
    assert_eq!(run(&served, "stop nog:*").await, (lines(&["nog: ERROR (no such group)"]), 1));
    assert_eq!(run(&served, "stop").await.1, 1);

    assert_eq!(run(&served, "restart app2").await, (lines(&["app2: stopped", "app2: started"]), 0));
    assert_eq!(run(&served, "signal HUP app2").await, (lines(&["app2: signalled"]), 0));
    assert_eq!(
        run(&served, "signal BOGUS app2").await,
        (lines(&["app2: ERROR (bad signal name)"]), 1)
    );
    assert_eq!(run(&served, "signal HUP app1").await, (lines(&["app1: ERROR (not running)"]), 7));
    assert_eq!(run(&served, "pid").await, (lines(&["777"]), 0));
    assert_eq!(run(&served, "pid app1").await, (lines(&["0"]), 7));
    assert_eq!(run(&served, "pid nosuch").await, (lines(&["No such process nosuch"]), 1));
    assert_eq!(
        run(&served, "frobnicate x").await,
        (lines(&["*** Unknown syntax: frobnicate x"]), 1)
    );
    // A command's `--help` is its help, in the shell as on the command line;
    // `-h` stays a name, as supervisorctl reads it.
    let stop_help = run(&served, "help stop").await;
    assert!(stop_help.0.starts_with("stop <name>\t\tStop a process\n"), "{stop_help:?}");
    assert_eq!(run(&served, "stop --help").await, stop_help);
    assert_eq!(run(&served, "? stop").await, stop_help);
    assert_eq!(run(&served, "status -h").await, (lines(&["-h: ERROR (no such process)"]), 4));
    assert_eq!(run(&served, "-c x").await, (lines(&["*** Unknown syntax: -c x"]), 1));
}

#[tokio::test]
async fn tail_reads_the_last_bytes_and_reports_bad_names() {
    let served = serve(Fake::new(), None);
    let log: String = (0..200).map(|i| format!("line {i:03}\n")).collect();
    served.fake.append("app1", LogChannel::Stdout, log.as_bytes());
    served.fake.append("app1", LogChannel::Stderr, b"oops\n");

    let (out, code) = run(&served, "tail app1").await;
    assert_eq!(out, format!("{}\n", &log[log.len() - 1600..]));
    assert_eq!(code, 0);
    assert_eq!(run(&served, "tail -9 app1").await, ("line 199\n\n".to_owned(), 0));
    assert_eq!(run(&served, "tail app1 stderr").await, ("oops\n\n".to_owned(), 0));
    assert_eq!(
        run(&served, "tail nosuch").await,
        (lines(&["nosuch: ERROR (no such process name)"]), 1)
    );
    assert_eq!(run(&served, "tail app1 foo").await, (lines(&["Error: bad channel 'foo'"]), 1));
    assert_eq!(run(&served, "tail -x app1").await, (lines(&["Error: bad argument -x"]), 1));
    assert_eq!(
        run(&served, "maintail").await.0,
        "2026-11-24 06:00:00,000 INFO supervisord started\n\n"
    );
}

#[tokio::test]
async fn tail_follow_reports_a_gap_instead_of_hiding_or_repeating() {
    let served = serve(Fake::new(), None);
    served.fake.append("app1", LogChannel::Stdout, b"before\n");
    let output = Output::default();
    let (mut ctl, stop) = interruptible(&served.url, &output);
    let task = tokio::spawn(async move {
        ctl.onecmd("tail -f app1").await;
        ctl.exitstatus
    });

    wait_until(|| output.text().ends_with("before\n")).await;
    served.fake.append("app1", LogChannel::Stdout, b"one\n");
    wait_until(|| output.text().ends_with("one\n")).await;
    // Output the client has not read yet is rotated away (the fake keeps no
    // backups), then new output arrives.
    let polls = served.fake.calls().len();
    served.fake.append("app1", LogChannel::Stdout, b"two\n");
    served.fake.rotate("app1", LogChannel::Stdout);
    served.fake.append("app1", LogChannel::Stdout, b"three\n");
    wait_until(|| output.text().ends_with("three\n")).await;
    stop.notify_one();
    let code = task.await.expect("join");

    let text = output.text();
    assert_eq!(code, 0);
    assert!(text.starts_with("==> Press Ctrl-C to exit <==\nbefore\none\n"), "{text}");
    assert!(text.ends_with("three\n\n"), "{text}");
    assert_eq!(text.matches("one\n").count(), 1, "{text}");
    assert_eq!(text.matches("three\n").count(), 1, "{text}");
    // Either the poll saw "two" before the rotation, or the gap is announced.
    assert!(
        text.contains("two\n") || text.contains("==> File truncated <=="),
        "{text} ({polls} calls)"
    );
}

#[tokio::test]
async fn tail_follow_reads_across_rotation_without_loss_or_repeat() {
    let served = serve(Fake::new(), None);
    let output = Output::default();
    let (mut ctl, stop) = interruptible(&served.url, &output);
    let task = tokio::spawn(async move { ctl.onecmd("tail -f app1 stderr").await });
    wait_until(|| output.text().contains("<==\n")).await;
    for (i, chunk) in ["a\n", "b\n", "c\n", "d\n"].iter().enumerate() {
        served.fake.append("app1", LogChannel::Stderr, chunk.as_bytes());
        wait_until(|| output.text().ends_with(chunk)).await;
        if i % 2 == 0 {
            served.fake.rotate("app1", LogChannel::Stderr);
        }
    }
    stop.notify_one();
    task.await.expect("join");
    assert_eq!(output.text(), "==> Press Ctrl-C to exit <==\na\nb\nc\nd\n\n");
}

#[tokio::test]
async fn unreachable_daemon_uses_supervisorctl_messages_and_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = format!("unix://{}/nope.sock", dir.path().display());
    assert_eq!(
        run_with(options(&missing), "status").await,
        (lines(&[&format!("{missing} no such file")]), 4)
    );
    assert_eq!(
        run_with(options(&missing), "stop all").await,
        (lines(&[&format!("{missing} no such file")]), 7)
    );
    assert_eq!(
        run_with(options(&missing), "shutdown").await,
        (lines(&[&format!("ERROR: {missing} no such file (already shut down?)")]), 1)
    );

    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let stale = format!("unix://{}", path.display());
    assert_eq!(
        run_with(options(&stale), "start app1").await,
        (lines(&[&format!("{stale} refused connection")]), 4)
    );
    assert_eq!(run_with(options(&stale), "status").await.1, 4);
}

#[tokio::test]
async fn authentication_and_json_output() {
    let auth = ServerAuth::new("admin", "secret").expect("auth");
    let served = serve(Fake::new(), Some(auth));
    // A 401 escapes supervisorctl's upcheck as an exception: exit 1, even for status.
    assert_eq!(run(&served, "status").await, (lines(&["Server requires authentication"]), 1));
    assert_eq!(run(&served, "version").await, (lines(&["Server requires authentication"]), 1));

    let mut with_auth = options(&served.url);
    with_auth.username = Some("admin".into());
    with_auth.password = Some("secret".into());
    assert_eq!(run_with(with_auth.clone(), "version").await, (lines(&["0.1.0"]), 0));

    with_auth.json = true;
    let (out, code) = run_with(with_auth, "start app2 nosuch").await;
    assert_eq!(code, 1);
    let document: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON document");
    assert_eq!(document["command"], "start");
    assert_eq!(document["exit_code"], 1);
    assert_eq!(
        document["messages"],
        serde_json::json!(["app2: started", "nosuch: ERROR (no such process)"])
    );
    assert_eq!(document["result"][0]["name"], "app2");
    assert_eq!(document["result"][1]["error"]["fault"], "BAD_NAME");
}

#[tokio::test]
async fn config_commands_print_supervisorctl_lines() {
    let served = serve(Fake::new(), None);
    served.fake.lock().reread = Ok(vigil_rpc::Reread {
        added: vec!["newprog".into()],
        changed: vec!["app1".into()],
        removed: vec!["old".into()],
        details: vec![],
    });
    assert_eq!(
        run(&served, "reread").await,
        (lines(&["app1: changed", "newprog: available", "old: disappeared"]), 0)
    );
    served.fake.lock().update =
        Err(vigil_rpc::ControlError::ConfigErrors(vec![vigil_rpc::ConfigErrorLine {
            file: "/etc/supervisord.conf".into(),
            line: 14,
            message: "unknown option 'comand'".into(),
        }]));
    assert_eq!(
        run(&served, "update").await,
        (lines(&["ERROR: CANT_REREAD: /etc/supervisord.conf:14: unknown option 'comand'"]), 1)
    );
    assert_eq!(
        run(&served, "add app1").await,
        (lines(&["ERROR: process group already active"]), 0)
    );
    assert_eq!(
        run(&served, "add nosuch").await,
        (lines(&["ERROR: no such process/group: nosuch"]), 1)
    );
    assert_eq!(
        run(&served, "remove grp").await,
        (lines(&["ERROR: process/group still running: grp"]), 1)
    );
    assert_eq!(run(&served, "remove app2").await, (lines(&["app2: removed process group"]), 0));
    assert_eq!(
        run(&served, "clear app1 nosuch").await,
        (lines(&["app1: cleared", "nosuch: ERROR (no such process)"]), 1)
    );
    let (out, code) = run(&served, "avail").await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("app1                             in use    auto      999:999\n"),
        "{out}"
    );
    assert_eq!(run(&served, "shutdown").await, (lines(&["Shut down"]), 0));
    assert_eq!(run(&served, "shutdown").await, (lines(&["ERROR: already shutting down"]), 0));
    assert_eq!(run(&served, "reload x").await.1, 1);
}

#[tokio::test]
async fn top_refuses_arguments_json_and_a_missing_terminal_and_calls_nothing() {
    let served = serve(Fake::new(), None);
    let (out, code) = run(&served, "top now").await;
    assert!(out.starts_with("Error: top accepts no arguments\ntop"), "{out}");
    assert_eq!(code, 1);
    let json = Options { json: true, ..options(&served.url) };
    let (out, code) = run_with(json, "top").await;
    let document: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(document["messages"][0], "Error: top needs a terminal (and has no --json form)");
    assert_eq!(code, 1);
    assert!(served.fake.lock().calls.is_empty(), "{:?}", served.fake.lock().calls);
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn interactive_mode_asks_for_credentials_and_retries() {
    let auth = ServerAuth::new("admin", "secret").expect("auth");
    let served = serve(Fake::new(), Some(auth));
    let output = Output::default();
    let mut interactive = options(&served.url);
    interactive.interactive = true;
    let mut ctl = Ctl::new(interactive, Box::new(output.clone()));
    let mut answers =
        vec![("admin".to_owned(), "secret".to_owned()), ("admin".to_owned(), "wrong".to_owned())];
    ctl.set_credentials_prompt(move || answers.pop());
    ctl.onecmd("version").await;
    assert_eq!(
        output.text(),
        lines(&["Server requires authentication", "Server requires authentication", "0.1.0"])
    );
    assert_eq!(ctl.exitstatus, 0);
}
