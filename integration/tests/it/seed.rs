//! The seed tutorial (examples/seed/README.md), word for word with vigilctl:
//! app1 and app2 (Python WSGI) behind lighttpd, added with `update`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use vigil_integration::{
    Daemon, TIMEOUT, ctl_at, current_user, procfs, try_wait_until, wait_until,
};

const LIGHTTPD: &str = "/usr/sbin/lighttpd";

/// Copies the example without anything a local walk-through left behind
/// (conf.d/*.conf, logs, run).
fn copy_seed(from: &Path, to: &Path) {
    for dir in ["apps", "programs"] {
        std::fs::create_dir_all(to.join(dir)).unwrap();
        for entry in std::fs::read_dir(from.join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(dir).join(entry.file_name())).unwrap();
            }
        }
    }
    for file in ["supervisord.conf", "lighttpd.conf"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    for dir in ["conf.d", "logs", "run"] {
        std::fs::create_dir_all(to.join(dir)).unwrap();
    }
}

/// A plain HTTP/1.0 GET; `None` until something answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_with(port, path, "")
}

/// A plain HTTP/1.0 GET with `headers` (each ending in CRLF).
fn http_get_with(port: u16, path: &str, headers: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn seed_tutorial_walkthrough() {
    assert!(
        Path::new(LIGHTTPD).is_file(),
        "the seed walk-through needs lighttpd at {LIGHTTPD}: run the tests with `scripts/test`, which installs it, or `sudo apt-get install lighttpd`"
    );
    let sandbox = vigil_integration::Sandbox::new();
    let seed = sandbox.join("seed");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    copy_seed(&example, &seed);
    let config = seed.join("supervisord.conf");
    let mut env = BTreeMap::new();
    env.insert("USER".to_owned(), std::env::var("USER").unwrap_or_else(|_| current_user()));
    let ctl = |args: &[&str]| ctl_at(&seed, &config, args);

    // 1. Start the supervisor (nothing configured yet).
    let mut daemon = Daemon::start(&seed, &config, &[], &env);
    ctl(&["status"]).expect_code(0).expect_lines(&[]);

    // 2. Drop the programs into conf.d/ and update.
    for name in ["app1", "app2", "http"] {
        let file = format!("{name}.conf");
        std::fs::copy(seed.join("programs").join(&file), seed.join("conf.d").join(&file)).unwrap();
    }
    ctl(&["update"]).expect_code(0).expect_lines(&[
        "app1: added process group",
        "app2: added process group",
        "http: added process group",
    ]);

    // 3. All three RUNNING.
    let mut last = None;
    let running = try_wait_until(TIMEOUT, || {
        let status = ctl(&["status"]);
        let ok = status.code == 0
            && status.lines().len() == 3
            && status.lines().iter().all(|line| line.split_whitespace().nth(1) == Some("RUNNING"));
        last = Some(status);
        ok
    });
    assert!(running, "status: {last:#?}\n{}", daemon.diagnostics());
    let status = last.unwrap();
    let names: Vec<&str> =
        status.lines().iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["app1", "app2", "http"]);
    let pid_of = |name: &str| -> i32 { ctl(&["pid", name]).stdout.trim().parse().unwrap() };
    let (app1, app2, http) = (pid_of("app1"), pid_of("app2"), pid_of("http"));

    // 4. A request through lighttpd reaches app1, whose request log is on stderr.
    let mut response = None;
    let answered = try_wait_until(TIMEOUT, || {
        response = http_get(18080, "/app1/hello");
        response
            .as_deref()
            .is_some_and(|r| r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200"))
    });
    assert!(answered, "no 200 from lighttpd: {response:?}\n{}", daemon.diagnostics());
    assert!(response.unwrap().ends_with("\r\n\r\nhello from app1 at /app1/hello\n"));
    wait_until(TIMEOUT, "the request in app1's stderr", || {
        ctl(&["tail", "app1", "stderr"]).stdout.contains("\"GET /app1/hello HTTP/1.")
    });
    let app2_reply = http_get(18080, "/app2/hi").expect("app2 answers");
    assert!(app2_reply.ends_with("hello from app2 at /app2/hi (request 1)\n"), "{app2_reply}");

    // 5. tail -f app1 follows its stdout.
    let follower = daemon.follow(&["tail", "-f", "app1"]);
    follower.wait_output("app1's banner", |out| {
        out.starts_with("==> Press Ctrl-C to exit <==\n")
            && out.contains("app1 listening on 127.0.0.1:18081\n")
    });
    follower.stop();
    // And it really follows: a new request shows up in the stderr follower.
    let follower = daemon.follow(&["tail", "-f", "app1", "stderr"]);
    follower.wait_output("the backlog", |out| out.contains("GET /app1/hello"));
    assert!(http_get(18080, "/app1/followed").is_some_and(|r| r.contains(" 200 ")));
    follower.wait_output("the new request", |out| out.contains("\"GET /app1/followed HTTP/1."));
    follower.stop();

    // 6. Restarting app2 leaves the others alone.
    ctl(&["restart", "app2"]).expect_code(0).expect_lines(&["app2: stopped", "app2: started"]);
    assert_ne!(pid_of("app2"), app2);
    assert_eq!(pid_of("app1"), app1);
    assert_eq!(pid_of("http"), http);
    let restarted = try_wait_until(TIMEOUT, || {
        http_get(18080, "/app2/hi").is_some_and(|r| r.ends_with("(request 1)\n"))
    });
    assert!(restarted, "app2 restarted with fresh state");

    // 7. Watch it: the dashboard and /metrics on the [inet_http_server] (port 19001),
    // behind its credentials. (`vigilctl top` is the terminal's view of the same.)
    let auth = format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode("operator:watchit")
    );
    let page = http_get_with(19001, "/", &auth).expect("the dashboard answers");
    assert!(
        page.split(' ').nth(1) == Some("200") && page.contains("<table class=\"processes\""),
        "{page}"
    );
    let refused = http_get(19001, "/").expect("the dashboard answers");
    assert_eq!(refused.split(' ').nth(1), Some("401"), "{refused}");
    let metrics = http_get_with(19001, "/metrics", &auth).expect("/metrics answers");
    for name in ["app1", "app2", "http"] {
        let up = format!("vigil_process_up{{group=\"{name}\",name=\"{name}\"}} 1\n");
        assert!(metrics.contains(&up), "{up} in {metrics}");
    }
    let restarts = "vigil_process_restarts_total{group=\"app2\",name=\"app2\"} 1\n";
    assert!(metrics.contains(restarts), "{metrics}");

    // 8. Shut down: nothing left.
    ctl(&["shutdown"]).expect_code(0).expect_lines(&["Shut down"]);
    assert_eq!(daemon.wait_exit(TIMEOUT), 0, "{}", daemon.diagnostics());
    let remaining = daemon.remaining_descendants();
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
    for pid in [app1, app2, http] {
        assert!(!procfs::exists(pid), "{pid} is gone");
    }
}
