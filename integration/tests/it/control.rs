//! The control sockets: permissions and credentials on the unix socket, the
//! TCP listener's refusal to run without credentials, and clients that stay
//! connected while the daemon stops.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use vigil_integration::{Program, Sandbox, TIMEOUT, procfs, run, vigild_bin};

fn sleeper(name: &str) -> Program {
    Program::child(name, &["--sleep", "3600"]).set("startsecs", 0)
}

/// The config with `[unix_http_server]` extras and `[supervisorctl]` without
/// credentials.
fn config_with_server(sandbox: &Sandbox, server_extra: &str, extra_sections: &str) {
    let dir = sandbox.path().display();
    let header = sandbox.header().replace(
        &format!("[unix_http_server]\nfile={dir}/vigil.sock\n"),
        &format!("[unix_http_server]\nfile={dir}/vigil.sock\n{server_extra}"),
    );
    let body = sandbox.programs_text(&[sleeper("p")]);
    std::fs::write(sandbox.config_path(), format!("{header}{extra_sections}{body}")).unwrap();
}

#[test]
fn unix_socket_mode_and_credentials() {
    let sandbox = Sandbox::new();
    config_with_server(&sandbox, "chmod=0660\nusername=ops\npassword=secret\n", "");
    let env = std::collections::BTreeMap::new();
    let daemon = {
        // Daemon::start polls `vigilctl pid` with the config's [supervisorctl]
        // section, so put the credentials there for the harness, then test a
        // client without them through -s.
        let dir = sandbox.path().display();
        let text = std::fs::read_to_string(sandbox.config_path()).unwrap().replace(
            &format!("[supervisorctl]\nserverurl=unix://{dir}/vigil.sock\n"),
            &format!("[supervisorctl]\nserverurl=unix://{dir}/vigil.sock\nusername=ops\npassword=secret\n"),
        );
        std::fs::write(sandbox.config_path(), text).unwrap();
        sandbox.start_with(&[], &env)
    };
    daemon.running_pid("p");
    let mode = std::fs::metadata(sandbox.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "chmod= is applied to the socket");

    // Without credentials (a config-less client pointing at the socket).
    let url = sandbox.server_url();
    let no_config = sandbox.join("empty.conf");
    std::fs::write(&no_config, "[supervisorctl]\n").unwrap();
    let ctl = |args: &[&str]| vigil_integration::ctl_at(sandbox.path(), &no_config, args);
    let refused = ctl(&["-s", &url, "stop", "p"]);
    refused.expect_code(1).expect_lines(&["Server requires authentication"]);
    let wrong = ctl(&["-s", &url, "-u", "ops", "-p", "wrong", "stop", "p"]);
    wrong.expect_code(1).expect_lines(&["Server requires authentication"]);
    assert!(procfs::alive(daemon.process_pid("p")), "nothing was done");
    let right = ctl(&["-s", &url, "-u", "ops", "-p", "secret", "status"]);
    right.expect_code(0);
    assert!(right.stdout.starts_with("p "), "{right:#?}");
}

/// A port on 127.0.0.1 nobody listened on a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

#[test]
fn tcp_listener_needs_credentials() {
    let sandbox = Sandbox::new();
    let port = free_port();
    config_with_server(&sandbox, "", &format!("[inet_http_server]\nport=127.0.0.1:{port}\n\n"));
    let mut command = std::process::Command::new(vigild_bin());
    command.current_dir(sandbox.path()).arg("-n").arg("-c").arg(sandbox.config_path());
    let output = run(&mut command, TIMEOUT);
    assert_eq!(output.code, 2, "refuses an unauthenticated TCP listener: {output:#?}");
    assert!(!output.stderr.is_empty(), "{output:#?}");
    assert!(!sandbox.socket().exists());

    // With credentials it serves both sockets.
    let port = free_port();
    config_with_server(
        &sandbox,
        "",
        &format!("[inet_http_server]\nport=127.0.0.1:{port}\nusername=ops\npassword=secret\n\n"),
    );
    let daemon = sandbox.start();
    daemon.running_pid("p");
    let url = format!("http://127.0.0.1:{port}");
    let over_tcp = daemon.ctl(&["-s", &url, "-u", "ops", "-p", "secret", "pid"]);
    over_tcp.expect_code(0).expect_lines(&[&daemon.pid().to_string()]);
    let anonymous = daemon.ctl(&["-s", &url, "pid"]);
    assert_eq!(anonymous.code, 1, "{anonymous:#?}");
}

/// A `tail -f` client long-polling does not hold up the shutdown.
#[test]
fn shutdown_with_a_follower_connected() {
    let sandbox = Sandbox::new();
    sandbox.write_config(&[
        Program::child("quiet", &["--echo", "once", "--sleep", "3600"]).set("startsecs", 0)
    ]);
    let mut daemon = sandbox.start();
    let pid = daemon.running_pid("quiet");
    let follower = daemon.follow(&["tail", "-f", "quiet"]);
    follower.wait_output("the follower to be up", |out| out.contains("once\n"));
    let started = Instant::now();
    daemon.ctl(&["shutdown"]).expect_code(0).expect_lines(&["Shut down"]);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0);
    assert!(started.elapsed() < Duration::from_secs(15), "shutdown took {:?}", started.elapsed());
    assert!(!procfs::exists(pid));
    let output = follower.stop();
    assert!(output.starts_with("==> Press Ctrl-C to exit <==\nonce\n"), "{output}");
}

/// supervisorctl's 401 handling escapes `do_status` before it sets the LSB
/// "unknown" status, so `status` without credentials exits 1, like every other
/// command of supervisorctl, not 4.
#[test]
fn status_without_credentials_exits_1() {
    let sandbox = Sandbox::new();
    config_with_server(&sandbox, "username=ops\npassword=secret\n", "");
    let dir = sandbox.path().display();
    let text = std::fs::read_to_string(sandbox.config_path()).unwrap().replace(
        &format!("[supervisorctl]\nserverurl=unix://{dir}/vigil.sock\n"),
        &format!(
            "[supervisorctl]\nserverurl=unix://{dir}/vigil.sock\nusername=ops\npassword=secret\n"
        ),
    );
    std::fs::write(sandbox.config_path(), text).unwrap();
    let daemon = sandbox.start();
    daemon.running_pid("p");
    let no_config = sandbox.join("empty.conf");
    std::fs::write(&no_config, "[supervisorctl]\n").unwrap();
    let status = vigil_integration::ctl_at(
        sandbox.path(),
        &no_config,
        &["-s", &sandbox.server_url(), "status"],
    );
    status.expect_code(1).expect_lines(&["Server requires authentication"]);
}

/// A `{SHA}` password in the server section checks the client's plain one.
#[test]
fn sha_password() {
    let sandbox = Sandbox::new();
    // SHA-1 of "secret".
    config_with_server(
        &sandbox,
        "username=ops\npassword={SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4\n",
        "",
    );
    let dir = sandbox.path().display();
    let text = std::fs::read_to_string(sandbox.config_path()).unwrap().replace(
        &format!("[supervisorctl]\nserverurl=unix://{dir}/vigil.sock\n"),
        &format!(
            "[supervisorctl]\nserverurl=unix://{dir}/vigil.sock\nusername=ops\npassword=secret\n"
        ),
    );
    std::fs::write(sandbox.config_path(), text).unwrap();
    let daemon = sandbox.start();
    daemon.running_pid("p");
    let no_config = sandbox.join("empty.conf");
    std::fs::write(&no_config, "[supervisorctl]\n").unwrap();
    let url = sandbox.server_url();
    let ctl = |args: &[&str]| vigil_integration::ctl_at(sandbox.path(), &no_config, args);
    ctl(&["-s", &url, "-u", "ops", "-p", "secret", "pid"]).expect_code(0);
    let hashed = ctl(&[
        "-s",
        &url,
        "-u",
        "ops",
        "-p",
        "{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4",
        "pid",
    ]);
    hashed.expect_code(1).expect_lines(&["Server requires authentication"]);
}

fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// A flood of half-open connections against a daemon with few descriptors:
/// the sockets close what they cannot hold instead of running the daemon out
/// of descriptors, so a killed program is respawned and the owner's `status`
/// still answers; once the flood is gone, the daemon is back where it was.
#[test]
fn a_connection_flood_never_takes_the_descriptors_programs_need() {
    const LIMIT: u64 = 400;
    let sandbox = Sandbox::new();
    // vigild cannot raise a hard limit of 400, so minfds must allow it.
    sandbox.supervisord_key("minfds", "64");
    let port = free_port();
    config_with_server(
        &sandbox,
        "",
        &format!("[inet_http_server]\nport=127.0.0.1:{port}\nusername=ops\npassword=secret\n\n"),
    );
    let daemon = sandbox.start_with_fixed_file_limit(LIMIT);
    let first = daemon.running_pid("p");
    let baseline = open_descriptors(daemon.pid());

    // More connections than the daemon has descriptors, each stopping in the
    // middle of its request head, as a slow or hostile client would.
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let flood: Vec<std::net::TcpStream> = (0..LIMIT + 20)
        .filter_map(|_| {
            use std::io::Write;
            let mut stream =
                std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
            let _ = stream.write_all(b"POST /RPC2 HTTP/1.1\r\n");
            Some(stream)
        })
        .collect();
    assert!(flood.len() > 300, "the flood connected: {}", flood.len());
    let during = open_descriptors(daemon.pid());
    assert!(during < LIMIT as usize - 32, "vigild holds {during} descriptors of {LIMIT}");

    // The owner still gets in, and a killed program comes back.
    let status = daemon.ctl(&["status"]);
    status.expect_code(0);
    assert!(status.stdout.starts_with("p "), "{status:#?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let second = vigil_integration::wait_for(TIMEOUT, "p to be respawned", || {
        let pid = daemon.process_pid("p");
        (pid != 0 && pid != first).then_some(pid)
    });
    assert_eq!(daemon.state("p"), "RUNNING");
    assert!(procfs::alive(second));
    let log = std::fs::read_to_string(sandbox.main_log()).unwrap();
    assert!(!log.contains("Too many open files"), "{log}");

    // Once the flood is gone the descriptors come back.
    drop(flood);
    vigil_integration::wait_until(TIMEOUT, "vigild's descriptors to return", || {
        open_descriptors(daemon.pid()) <= baseline + 2
    });
    daemon.ctl(&["status"]).expect_code(0);
    let url = format!("http://127.0.0.1:{port}");
    let over_tcp = daemon.ctl(&["-s", &url, "-u", "ops", "-p", "secret", "pid"]);
    over_tcp.expect_code(0).expect_lines(&[&daemon.pid().to_string()]);
}
