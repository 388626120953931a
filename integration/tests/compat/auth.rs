//! HTTP Basic auth and the TCP socket: the stock `supervisorctl` with and without the
//! right credentials, over `[unix_http_server]` and `[inet_http_server]`, against vigild
//! and supervisord (the password is configured as `{SHA}` of the plain one).

use crate::harness::{Daemon, Kind};

const CONFIG: &str = r#"
[unix_http_server]
file=%(here)s/supervisor.sock
username=user
password={SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4

[inet_http_server]
port=127.0.0.1:{port}
username=user
password={SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4

[supervisord]
logfile=%(here)s/supervisord.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock
username=user
password=secret

[program:sleeper]
command={child} --sleep 100000
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE
"#;

/// A TCP port nobody listens on right now (the daemon binds it a moment later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("a bound address").port()
}

fn transcript(kind: Kind) -> Vec<(String, String, i32)> {
    let port = free_port();
    let mut daemon = Daemon::start(kind, &CONFIG.replace("{port}", &port.to_string()));
    let inet = format!("http://127.0.0.1:{port}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["-p", "wrong", "status"],
        vec!["-u", "nobody", "status"],
        vec!["-s", &inet, "status"],
        vec!["-s", &inet, "-p", "wrong", "status"],
        vec!["-s", &inet, "-u", "", "-p", "", "status"],
        vec!["-s", &inet, "stop", "sleeper"],
    ];
    runs.into_iter()
        .map(|args| {
            let outcome = daemon.ctl(&args);
            let output = format!("{}{}", outcome.stdout, outcome.stderr)
                .replace(&port.to_string(), "<PORT>")
                .lines()
                // Keep the state column; pids and uptimes differ.
                .map(|line| line.split("pid ").next().unwrap_or(line).trim_end().to_owned())
                .collect::<Vec<_>>()
                .join("\n");
            (args.join(" ").replace(&port.to_string(), "<PORT>"), output, outcome.code)
        })
        .collect()
}

#[test]
fn credentials_on_both_sockets_like_supervisord() {
    let reference = std::thread::spawn(|| transcript(Kind::Supervisord));
    let vigil = transcript(Kind::Vigild);
    let reference = reference.join().expect("the supervisord run panicked");
    assert_eq!(vigil, reference);
    // The checks above are only meaningful if authentication was really required.
    assert!(reference[1].1.contains("Server requires authentication"), "{reference:?}");
    assert_eq!(reference[3].2, 0, "{reference:?}");
}
