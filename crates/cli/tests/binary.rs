//! The `vigilctl` binary itself: flags, the `[supervisorctl]` section of `-c`,
//! process exit codes, against a fake daemon on a temp Unix socket.

#[path = "../../rpc/tests/support/fake.rs"]
mod fake;

use std::path::Path;
use std::process::{Command, Stdio};

use fake::{Fake, serve};

/// Runs vigilctl with `args` off the async runtime (the fake daemon needs it)
/// and returns stdout, stderr and the exit code.
async fn vigilctl(args: &[&str]) -> (String, String, i32) {
    vigilctl_in(None, args).await
}

/// [`vigilctl`] in the working directory `cwd` (the test's own when `None`).
async fn vigilctl_in(cwd: Option<&Path>, args: &[&str]) -> (String, String, i32) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let cwd = cwd.map(Path::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigilctl"));
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vigilctl");
        let output = child.wait_with_output().expect("vigilctl output");
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            output.status.code().expect("exit code, not a signal"),
        )
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn reads_serverurl_from_the_config_and_exits_like_supervisorctl() {
    let served = serve(Fake::new(), None);
    let config = served.dir.path().join("supervisord.conf");
    // The socket is `vigil.sock` next to the config: found through %(here)s.
    std::fs::write(&config, "[supervisorctl]\nserverurl = unix://%(here)s/vigil.sock\n")
        .expect("write config");
    let config = config.display().to_string();

    let (out, _, code) = vigilctl(&["-c", &config, "status", "app1"]).await;
    assert_eq!(
        (out.as_str(), code),
        ("app1                             RUNNING   pid 4242, uptime 0:00:12\n", 0)
    );
    let (out, _, code) = vigilctl(&["-c", &config, "status"]).await;
    assert_eq!((out.lines().count(), code), (5, 3));
    let (out, _, code) = vigilctl(&["-c", &config, "stop", "app1", "grp:*"]).await;
    assert_eq!((out.as_str(), code), ("app1: stopped\ngrp:a: stopped\n", 0));
    let (out, _, code) = vigilctl(&["-c", &config, "start", "failer"]).await;
    assert_eq!((out.as_str(), code), ("failer: ERROR (spawn error)\n", 7));
    let (out, _, code) = vigilctl(&["-c", &config, "status", "--json", "app1"]).await;
    let document: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!((document["result"][0]["statename"].as_str(), code), (Some("STOPPED"), 3));
    // The JSON carries the process's facts beside supervisord's fields.
    assert_eq!(document["result"][0]["autostart"], true);
    assert!(document["result"][0]["restarts"].is_u64(), "{document}");
    assert!(document["result"][0]["usage"].is_null(), "{document}");

    // -s overrides the file.
    let missing = format!("unix://{}/other.sock", served.dir.path().display());
    let (out, _, code) = vigilctl(&["-c", &config, "-s", &missing, "status"]).await;
    assert_eq!((out, code), (format!("{missing} no such file\n"), 4));
}

#[tokio::test]
async fn config_problems_are_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.conf").display().to_string();
    let (_, err, code) = vigilctl(&["-c", &missing, "status"]).await;
    assert_eq!(
        (err, code),
        (format!("Error: could not find config file {missing}\nFor help, use vigilctl -h\n"), 2)
    );

    let no_section = dir.path().join("s.conf");
    std::fs::write(&no_section, "[supervisord]\n").expect("write");
    let (_, err, code) = vigilctl(&["-c", &no_section.display().to_string(), "status"]).await;
    assert_eq!(
        (err.as_str(), code),
        ("Error: .ini file does not include supervisorctl section\nFor help, use vigilctl -h\n", 2)
    );
}

#[tokio::test]
async fn finds_vigil_toml_in_the_working_directory_as_vigild_does() {
    let served = serve(Fake::new(), None);
    let socket = served.dir.path().join("vigil.sock");
    std::fs::write(
        served.dir.path().join("vigil.toml"),
        format!("[supervisorctl]\nserverurl = \"unix://{}\"\n", socket.display()),
    )
    .expect("write config");
    let (out, _, code) = vigilctl_in(Some(served.dir.path()), &["status", "app1"]).await;
    assert_eq!(
        (out.as_str(), code),
        ("app1                             RUNNING   pid 4242, uptime 0:00:12\n", 0)
    );
}

#[tokio::test]
async fn command_help_is_the_same_both_ways() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("supervisord.conf");
    // Nothing listens there: help must not need the daemon.
    std::fs::write(&config, "[supervisorctl]\nserverurl = unix://%(here)s/none.sock\n")
        .expect("write config");
    let config = config.display().to_string();
    for command in ["status", "start", "tail", "signal", "update", "help"] {
        let by_flag = vigilctl(&["-c", &config, command, "--help"]).await;
        let by_help = vigilctl(&["-c", &config, "help", command]).await;
        assert_eq!(by_flag, by_help, "{command}");
        let (out, _, code) = by_flag;
        assert!(out.starts_with(command) && code == 0, "{command}: {out:?} {code}");
    }
    let (out, _, code) = vigilctl(&["-c", &config, "frobnicate", "--help"]).await;
    assert_eq!((out.as_str(), code), ("*** Unknown syntax: frobnicate --help\n", 1));
}
