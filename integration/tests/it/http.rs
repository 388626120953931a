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
