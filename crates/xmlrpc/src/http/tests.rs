use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::*;
use crate::backend::{FollowFrom, LogChannel, ProcessRef, ProcessState};
use crate::limits::{BODY_READ_TIMEOUT, HEADER_READ_TIMEOUT, MAX_REQUEST_BODY, MAX_REQUEST_HEAD};
use crate::testing::{FakeBackend, process};
use logtail::TRUNCATED;

/// Generous: only reached when something is broken, never on the happy path.
pub(super) const TIMEOUT: Duration = Duration::from_secs(20);

pub(super) fn connect(
    backend: &Arc<FakeBackend>,
    credentials: Option<Credentials>,
) -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(serve_http(server, Arc::clone(backend), credentials.map(Arc::new)));
    client
}

/// A parsed response with a `Content-Length` body.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) head: String,
    pub(super) body: String,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads one complete `Content-Length` response from `io`, leaving the connection open.
pub(super) async fn read_reply(io: &mut DuplexStream) -> Reply {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                let head = String::from_utf8(raw[..end].to_vec()).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (key, value) = line.split_once(':')?;
                        key.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .expect("a content-length");
                if raw.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    let body = String::from_utf8(raw[end + 4..end + 4 + length].to_vec()).unwrap();
                    return Reply { status, head, body };
                }
            }
            let read = io.read(&mut chunk).await.unwrap();
            assert_ne!(
                read,
                0,
                "connection closed mid-response: {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("a response in time")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

pub(super) async fn request(
    backend: &Arc<FakeBackend>,
    credentials: Option<Credentials>,
    raw: &str,
) -> Reply {
    let mut io = connect(backend, credentials);
    io.write_all(raw.as_bytes()).await.unwrap();
    read_reply(&mut io).await
}

fn post(body: &str, extra_headers: &str) -> String {
    format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

fn method_call(name: &str, params: &str) -> String {
    format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>{name}</methodName>\n<params>\n{params}</params>\n</methodCall>\n"
    )
}

pub(super) fn get(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}\r\n")
}

pub(super) fn basic(user_and_password: &str) -> String {
    format!("Authorization: Basic {}\r\n", STANDARD.encode(user_and_password))
}

#[tokio::test]
async fn xmlrpc_over_post() {
    let backend = Arc::new(FakeBackend::new());
    let reply = request(&backend, None, &post(&method_call("supervisor.getState", ""), "")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/xml"));
    assert!(
        reply.body.starts_with("<?xml version='1.0'?>\n<methodResponse><params>"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("<name>statename</name><value><string>RUNNING</string>"));

    // Any path starting with /RPC2 is the XML-RPC endpoint.
    let raw = post(&method_call("supervisor.getAPIVersion", ""), "").replace("/RPC2", "/RPC2/x");
    let reply = request(&backend, None, &raw).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<string>3.0</string>"));

    // A fault is a 200 carrying <fault>.
    let reply = request(&backend, None, &post(&method_call("supervisor.nosuch", ""), "")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<fault>") && reply.body.contains("UNKNOWN_METHOD"));
}

#[tokio::test]
async fn bad_requests() {
    let backend = Arc::new(FakeBackend::new());
    let reply = request(&backend, None, &get("/RPC2", "")).await;
    assert_eq!(reply.status, 400);
    let reply = request(&backend, None, &post("<methodCall><params/></methodCall>", "")).await;
    assert_eq!(reply.status, 400, "no methodName");
    let reply = request(&backend, None, &post("<methodCall><methodName>a.b</methodName", "")).await;
    assert_eq!(reply.status, 400, "malformed XML");
    let reply = request(&backend, None, &post("", "")).await;
    assert_eq!(reply.status, 400, "empty body");
    let reply = request(&backend, None, &get("/nosuch.html", "")).await;
    assert_eq!(reply.status, 404);
    let raw = post("", "").replace("POST /RPC2", "POST /logtail/web:web_0");
    let reply = request(&backend, None, &raw).await;
    assert_eq!(reply.status, 400, "logtail is GET only");
}

#[tokio::test]
async fn methods_a_route_does_not_serve_get_405_with_allow() {
    let backend = Arc::new(FakeBackend::new());
    for (request_line, allowed) in [
        ("OPTIONS /RPC2", "POST"),
        ("PUT /RPC2/x", "POST"),
        ("DELETE /logtail/web:web_0", "GET"),
        ("PATCH /mainlogtail", "GET"),
    ] {
        let raw =
            format!("{request_line} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
        let reply = request(&backend, None, &raw).await;
        assert_eq!(reply.status, 405, "{request_line}");
        assert_eq!(reply.header("allow"), Some(allowed), "{request_line}");
    }
    let reply = request(&backend, None, &get("/nosuch.html", "").replace("GET", "OPTIONS")).await;
    assert_eq!(reply.status, 404, "an unknown path stays unknown");
}

#[test]
fn request_methods_start_with_the_longest() {
    let longest = REQUEST_METHODS.iter().map(|method| method.len()).max();
    assert_eq!(Some(REQUEST_METHODS[0].len()), longest);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let backend = Arc::new(FakeBackend::new());
    // Declared too large: refused before a byte of body is sent.
    let raw = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        MAX_REQUEST_BODY + 1
    );
    let reply = request(&backend, None, &raw).await;
    assert_eq!(reply.status, 413);

    // Chunked, so the size is only known while reading.
    let mut io = connect(&backend, None);
    let (mut reader, mut writer) = tokio::io::split(&mut io);
    let send = async move {
        writer
            .write_all(
                b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await?;
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..(MAX_REQUEST_BODY / chunk.len() + 2) {
            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        std::io::Result::Ok(())
    };
    let receive = async {
        let mut raw = Vec::new();
        let mut buffer = [0u8; 1024];
        while find(&raw, b"\r\n\r\n").is_none() {
            let read = reader.read(&mut buffer).await.unwrap();
            assert_ne!(read, 0);
            raw.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8(raw).unwrap()
    };
    // The server stops reading once over the limit, so the sender may fail: that is fine.
    let (_, head) = tokio::time::timeout(TIMEOUT, async { tokio::join!(send, receive) })
        .await
        .expect("a response in time");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn a_result_larger_than_the_response_limit_is_a_fault() {
    // Twenty processes whose spawn error is 1 MiB: getAllProcessInfo would be some 40 MiB.
    let processes = (0..20)
        .map(|index| {
            let mut info = process(&format!("p{index}"), "p", ProcessState::Fatal);
            info.spawnerr = "e".repeat(1024 * 1024).into();
            info
        })
        .collect();
    let backend = Arc::new(FakeBackend::with_processes(processes));
    let reply =
        request(&backend, None, &post(&method_call("supervisor.getAllProcessInfo", ""), "")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.len() < 1024, "{} bytes", reply.body.len());
    assert!(reply.body.contains("<int>30</int>"), "{}", reply.body);
    assert!(reply.body.contains("FAILED: response too large"), "{}", reply.body);
}

#[tokio::test]
async fn keep_alive_serves_several_requests() {
    let backend = Arc::new(FakeBackend::new());
    let mut io = connect(&backend, None);
    for name in ["supervisor.getAPIVersion", "supervisor.getIdentification", "supervisor.getPID"] {
        io.write_all(post(&method_call(name, ""), "").as_bytes()).await.unwrap();
        let reply = read_reply(&mut io).await;
        assert_eq!(reply.status, 200, "{name}");
        assert!(!reply.body.contains("<fault>"), "{name}: {}", reply.body);
    }
}

#[tokio::test]
async fn basic_auth_guards_every_handler() {
    let backend = Arc::new(FakeBackend::new());
    let backend_log = LogSource::Process(ProcessRef::new("web", "web_0"), LogChannel::Stdout);
    backend.append_log(&backend_log, b"hello\n");
    let plain_credentials = || Some(Credentials::new("user", "123"));
    let call = method_call("supervisor.getState", "");
    for raw in
        [post(&call, ""), get("/logtail/web:web_0", ""), get("/mainlogtail", ""), get("/x", "")]
    {
        let reply = request(&backend, plain_credentials(), &raw).await;
        assert_eq!(reply.status, 401, "{raw}");
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"default\""));
    }
    let reply = request(&backend, plain_credentials(), &post(&call, &basic("user:wrong"))).await;
    assert_eq!(reply.status, 401);
    let reply = request(&backend, plain_credentials(), &post(&call, &basic("other:123"))).await;
    assert_eq!(reply.status, 401);
    let reply = request(&backend, plain_credentials(), &post(&call, &basic("user:123"))).await;
    assert_eq!(reply.status, 200);

    let hashed = || Some(Credentials::new("user", "{SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d"));
    let reply = request(&backend, hashed(), &post(&call, &basic("user:thepassword"))).await;
    assert_eq!(reply.status, 200);
    let reply = request(&backend, hashed(), &post(&call, &basic("user:123"))).await;
    assert_eq!(reply.status, 401);
}

// Paused time: a timeout fires only once every task is idle, that is once the server is
// provably waiting, so these tests do not depend on timing.
#[tokio::test(start_paused = true)]
async fn a_refused_request_is_answered_before_its_body_and_keeps_the_connection() {
    // supervisord answers a request without credentials at once. Waiting for the body let
    // an unauthenticated client make vigild read up to the whole body limit first.
    let backend = Arc::new(FakeBackend::new());
    let mut io = connect(&backend, Some(Credentials::new("user", "123")));
    let call = method_call("supervisor.getAPIVersion", "");
    let raw = post(&call, "");
    let (head, body) = raw.split_at(raw.find("\r\n\r\n").unwrap() + 4);
    io.write_all(head.as_bytes()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(1), read_reply(&mut io))
        .await
        .expect("answered before the body arrived");
    assert_eq!(reply.status, 401);
    // A client that goes on to send its body (Python's http.client does) can then send
    // its next request on the same connection.
    io.write_all(body.as_bytes()).await.unwrap();
    io.write_all(post(&call, &basic("user:123")).as_bytes()).await.unwrap();
    let reply = read_reply(&mut io).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<string>3.0</string>"));
}

#[tokio::test(start_paused = true)]
async fn an_unauthenticated_body_is_not_read_beyond_the_discard_limit() {
    let backend = Arc::new(FakeBackend::new());
    let io = connect(&backend, Some(Credentials::new("user", "123")));
    let (mut reader, mut writer) = tokio::io::split(io);
    let head = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {MAX_REQUEST_BODY}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        let chunk = vec![b'a'; 8 * 1024];
        let mut sent = 0;
        while sent < MAX_REQUEST_BODY {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    // The 401 comes, then the server closes the connection once the discard limit is
    // passed, long before the declared body is through.
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, reader.read_to_end(&mut raw))
        .await
        .expect("the connection was closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 401"), "{raw:?}");
    let sent = sender.await.unwrap();
    assert!(sent < MAX_REQUEST_BODY, "the whole body was read: {sent}");
}

/// Reads until the server closes the connection, waiting at most `limit` (of paused time).
async fn read_until_closed(io: &mut DuplexStream, limit: Duration) -> String {
    let mut raw = Vec::new();
    tokio::time::timeout(limit, io.read_to_end(&mut raw))
        .await
        .expect("the server closed the connection in time")
        .unwrap();
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_client_slow_to_send_its_head_is_disconnected() {
    let backend = Arc::new(FakeBackend::new());
    let mut io = connect(&backend, None);
    io.write_all(b"POST /RPC2 HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    read_until_closed(&mut io, HEADER_READ_TIMEOUT + Duration::from_secs(1)).await;

    // An idle keep-alive connection is closed the same way.
    let mut io = connect(&backend, None);
    io.write_all(post(&method_call("supervisor.getPID", ""), "").as_bytes()).await.unwrap();
    assert_eq!(read_reply(&mut io).await.status, 200);
    read_until_closed(&mut io, HEADER_READ_TIMEOUT + Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_slow_to_send_its_body_gets_408_and_is_disconnected() {
    let backend = Arc::new(FakeBackend::new());
    let mut io = connect(&backend, None);
    let raw = post(&method_call("supervisor.getPID", ""), "");
    io.write_all(&raw.as_bytes()[..raw.len() - 10]).await.unwrap();
    let answer = read_until_closed(&mut io, BODY_READ_TIMEOUT + Duration::from_secs(1)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let backend = Arc::new(FakeBackend::new());
    let filler = format!("X-Filler: {}\r\n", "a".repeat(MAX_REQUEST_HEAD));
    let (mut reader, mut writer) = tokio::io::split(connect(&backend, None));
    // The server stops reading part way, so the rest of the write may fail: that is fine.
    let sender =
        tokio::spawn(
            async move { writer.write_all(get("/mainlogtail", &filler).as_bytes()).await },
        );
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, reader.read_to_end(&mut raw))
        .await
        .expect("the server closed the connection in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let _ = sender.await.unwrap();
}

/// Decodes a chunked body received so far: the data of every complete chunk, and whether
/// the terminating zero-length chunk arrived.
pub(super) fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    loop {
        let Some(line_end) = find(body, b"\r\n") else { return (data, false) };
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return (data, true);
        }
        let start = line_end + 2;
        if body.len() < start + size + 2 {
            return (data, false);
        }
        data.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
}

/// A `tail -f` client: the response head, then the decoded stream as it arrives.
pub(super) struct Follower {
    pub(super) io: DuplexStream,
    pub(super) raw: Vec<u8>,
}

impl Follower {
    pub(super) async fn open(backend: &Arc<FakeBackend>, path: &str) -> (Follower, String) {
        let mut io = connect(backend, None);
        io.write_all(get(path, "").as_bytes()).await.unwrap();
        let mut follower = Follower { io, raw: Vec::new() };
        follower.read_until(|raw| find(raw, b"\r\n\r\n").is_some()).await;
        let end = find(&follower.raw, b"\r\n\r\n").unwrap();
        let head = String::from_utf8(follower.raw[..end].to_vec()).unwrap();
        follower.raw.drain(..end + 4);
        (follower, head)
    }

    pub(super) async fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) {
        let mut buffer = [0u8; 8192];
        tokio::time::timeout(TIMEOUT, async {
            while !done(&self.raw) {
                let read = self.io.read(&mut buffer).await.unwrap();
                assert_ne!(
                    read,
                    0,
                    "stream closed early: {:?}",
                    String::from_utf8_lossy(&self.raw)
                );
                self.raw.extend_from_slice(&buffer[..read]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out; got {:?}", String::from_utf8_lossy(&self.raw)));
    }

    /// Waits until the decoded stream ends with `suffix`, and returns all of it.
    pub(super) async fn wait_for(&mut self, suffix: &[u8]) -> Vec<u8> {
        self.read_until(|raw| dechunk(raw).0.ends_with(suffix)).await;
        dechunk(&self.raw).0
    }
}

#[tokio::test]
async fn logtail_starts_1024_bytes_before_the_end_and_follows() {
    let backend = Arc::new(FakeBackend::new());
    let source = LogSource::Process(ProcessRef::new("web", "web_0"), LogChannel::Stdout);
    let mut log = vec![b'A'; 976];
    log.extend(vec![b'B'; 1024]);
    backend.append_log(&source, &log);

    let (mut follower, head) = Follower::open(&backend, "/logtail/web:web_0/stdout").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head_lower = head.to_ascii_lowercase();
    assert!(head_lower.contains("content-type: text/plain;charset=utf-8"), "{head}");
    assert!(head_lower.contains("x-accel-buffering: no"), "{head}");
    assert!(head_lower.contains("transfer-encoding: chunked"), "{head}");

    assert_eq!(follower.wait_for(&[b'B'; 1024]).await, vec![b'B'; 1024]);
    backend.append_log(&source, b"hello\n");
    follower.wait_for(b"hello\n").await;
    backend.truncate_log(&source);
    follower.wait_for(TRUNCATED).await;
    backend.append_log(&source, b"after\n");
    let seen = follower.wait_for(b"after\n").await;
    let mut expected = vec![b'B'; 1024];
    expected.extend_from_slice(b"hello\n==> File truncated <==\nafter\n");
    assert_eq!(seen, expected, "nothing lost, nothing repeated");

    // The log going away ends the stream cleanly.
    backend.remove_log(&source);
    follower.read_until(|raw| dechunk(raw).1).await;
}

#[tokio::test]
async fn logtail_says_its_offset_and_starts_at_the_one_asked_for() {
    let backend = Arc::new(FakeBackend::new());
    let source = LogSource::Process(ProcessRef::new("web", "web_0"), LogChannel::Stdout);
    backend.append_log(&source, &[b'A'; 2000]);
    let (mut follower, head) = Follower::open(&backend, "/logtail/web:web_0").await;
    assert!(head.to_ascii_lowercase().contains("x-log-offset: 976"), "{head}");
    follower.wait_for(&[b'A'; 1024]).await;
    backend.append_log(&source, b"hello\n");
    // Where a client that read 3 bytes connects again: the rest, once.
    let (mut again, head) = Follower::open(&backend, "/logtail/web:web_0?offset=1997").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-log-offset: 1997"), "{head}");
    assert_eq!(again.wait_for(b"hello\n").await, b"AAAhello\n");
    for (query, status) in [("offset=nine", "400"), ("offset=9999", "416")] {
        let (_, head) = Follower::open(&backend, &format!("/logtail/web:web_0?{query}")).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{query}: {head}");
    }
}

#[test]
fn a_logtail_query_names_where_it_starts() {
    assert_eq!(logtail::start(None), Ok(FollowFrom::Tail(1024)));
    assert_eq!(logtail::start(Some("x=1")), Ok(FollowFrom::Tail(1024)));
    assert_eq!(logtail::start(Some("x=1&offset=42")), Ok(FollowFrom::Position(42)));
    assert_eq!(logtail::start(Some("offset=-1")), Err(StatusCode::BAD_REQUEST));
}

// Paused time: the clock jumps whenever every task waits, so the stream provably
// outlives the read timeouts.
#[tokio::test(start_paused = true)]
async fn a_log_stream_outlives_the_read_timeouts() {
    let backend = Arc::new(FakeBackend::new());
    let source = LogSource::Process(ProcessRef::new("web", "web_0"), LogChannel::Stdout);
    backend.append_log(&source, b"first\n");
    let (mut follower, head) = Follower::open(&backend, "/logtail/web:web_0").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    follower.wait_for(b"first\n").await;
    tokio::time::sleep(HEADER_READ_TIMEOUT + BODY_READ_TIMEOUT).await;
    backend.append_log(&source, b"later\n");
    assert_eq!(follower.wait_for(b"later\n").await, b"first\nlater\n");
}

#[tokio::test]
async fn logtail_of_a_short_log_starts_at_the_beginning() {
    let backend = Arc::new(FakeBackend::new());
    let source = LogSource::Process(ProcessRef::new("worker", "worker"), LogChannel::Stderr);
    backend.append_log(&source, b"short\n");
    // Percent-encoded namespec, as a client may send it.
    let (mut follower, head) = Follower::open(&backend, "/logtail/worker%3Aworker/stderr").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(follower.wait_for(b"short\n").await, b"short\n");
}

#[tokio::test]
async fn logtail_defaults_to_stdout_and_serves_the_main_log() {
    let backend = Arc::new(FakeBackend::new());
    let stdout = LogSource::Process(ProcessRef::new("worker", "worker"), LogChannel::Stdout);
    backend.append_log(&stdout, b"out\n");
    let (mut follower, _) = Follower::open(&backend, "/logtail/worker").await;
    follower.wait_for(b"out\n").await;

    backend.append_log(&LogSource::Main, b"daemon started\n");
    let (mut follower, head) = Follower::open(&backend, "/mainlogtail").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    follower.wait_for(b"daemon started\n").await;
}

#[tokio::test]
async fn logtail_not_found() {
    let backend = Arc::new(FakeBackend::new());
    let stdout = LogSource::Process(ProcessRef::new("web", "web_0"), LogChannel::Stdout);
    backend.append_log(&stdout, b"x\n");
    for path in [
        "/logtail/nosuch/stdout",
        "/logtail/web:*/stdout",
        "/logtail/web:/stdout",
        "/logtail/web:web_0/stdmiddle",
        "/logtail/web:web_0/stderr",
        "/logtail/worker/stdout",
        "/logtail",
        "/logtail/%ff/stdout",
        "/mainlogtail",
    ] {
        let reply = request(&backend, None, &get(path, "")).await;
        assert_eq!(reply.status, 404, "{path}");
    }
}

/// Runs a Python script; a helper so the one `Command::output` of these tests is explicit.
#[expect(
    clippy::disallowed_methods,
    reason = "a unit test of the HTTP layer: no reaper runs in this process, so waiting for \
              the python3 child here cannot race one"
)]
fn run_python(script: &str, socket: &std::path::Path) -> std::process::Output {
    std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .output()
        .expect("python3 is required to run the xmlrpc.client interop test (CI installs it)")
}

/// The real client: CPython's `xmlrpc.client` over a UNIX socket, with a transport built the
/// way supervisorctl's is (`Host: localhost`, HTTP/1.1, keep-alive), and Basic auth from the
/// URL.
const PYTHON_CLIENT: &str = r#"
import http.client, json, socket, sys, xmlrpc.client

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__('localhost', timeout=20)
        self.unix_path = path
    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(self.unix_path)
        self.sock = sock

class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.unix_path = path
    def make_connection(self, host):
        # Reuse the connection (keep-alive), as the base class does.
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        # get_host_info turns user:password@ in the URL into an Authorization header.
        _, self._extra_headers, _ = self.get_host_info(host)
        self._connection = host, UnixConnection(self.unix_path)
        return self._connection[1]

path = sys.argv[1]
out = {}
anonymous = xmlrpc.client.ServerProxy('http://localhost', transport=UnixTransport(path))
try:
    anonymous.supervisor.getState()
    out['anonymous'] = None
except xmlrpc.client.ProtocolError as error:
    out['anonymous'] = error.errcode

proxy = xmlrpc.client.ServerProxy('http://user:thepassword@localhost', transport=UnixTransport(path))
out['version'] = proxy.supervisor.getAPIVersion()
out['state'] = proxy.supervisor.getState()
out['info'] = proxy.supervisor.getAllProcessInfo()
try:
    proxy.supervisor.startProcess('nosuch')
    out['fault'] = None
except xmlrpc.client.Fault as fault:
    out['fault'] = [fault.faultCode, fault.faultString]
out['multicall'] = proxy.system.multicall([
    {'methodName': 'supervisor.getAPIVersion', 'params': []},
    {'methodName': 'supervisor.nosuch', 'params': []},
])
out['tail'] = proxy.supervisor.tailProcessStdoutLog('web:web_0', 0, 100)
out['stopped'] = proxy.supervisor.stopProcessGroup('web', True)
out['methods'] = len(proxy.system.listMethods())
print(json.dumps(out))
"#;

#[tokio::test]
async fn python_xmlrpc_client_understands_us() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vigil.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let backend = Arc::new(FakeBackend::new());
    let source = LogSource::Process(ProcessRef::new("web", "web_0"), LogChannel::Stdout);
    // CR, an ANSI escape, a NUL and a byte that is not UTF-8: all must reach Python parseable.
    backend.append_log(&source, b"line one\r\n\x1b[31mred\x1b[0m\x00 \xff\n");
    let credentials =
        Arc::new(Credentials::new("user", "{SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d"));
    let server_backend = Arc::clone(&backend);
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_http(
                stream,
                Arc::clone(&server_backend),
                Some(Arc::clone(&credentials)),
            ));
        }
    });

    let script_socket = socket.clone();
    let output = tokio::time::timeout(
        TIMEOUT * 3,
        tokio::task::spawn_blocking(move || run_python(PYTHON_CLIENT, &script_socket)),
    )
    .await
    .expect("python finished in time")
    .unwrap();
    server.abort();
    assert!(output.status.success(), "python failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(out["anonymous"], 401);
    assert_eq!(out["version"], "3.0");
    assert_eq!(out["state"], serde_json::json!({"statecode": 1, "statename": "RUNNING"}));
    let info = out["info"].as_array().unwrap();
    assert_eq!(info.len(), 4);
    assert_eq!(info[1]["name"], "web_0");
    assert_eq!(info[1]["group"], "web");
    assert_eq!(info[1]["state"], 20);
    assert_eq!(info[1]["pid"], 4242);
    assert!(info[1]["now"].is_i64());
    assert_eq!(info[0]["description"], "Exited too quickly (process log may have details)");
    assert_eq!(out["fault"], serde_json::json!([10, "BAD_NAME: nosuch"]));
    assert_eq!(
        out["multicall"],
        serde_json::json!(["3.0", {"faultCode": 1, "faultString": "UNKNOWN_METHOD"}])
    );
    assert_eq!(
        out["tail"],
        serde_json::json!(["line one\r\n\u{FFFD}[31mred\u{FFFD}[0m\u{FFFD} \u{FFFD}\n", 26, false])
    );
    assert_eq!(
        out["stopped"],
        serde_json::json!([
            {"name": "web_0", "group": "web", "status": 80, "description": "OK"},
            {"name": "web_1", "group": "web", "status": 80, "description": "OK"},
        ])
    );
    assert_eq!(out["methods"], 42);
}

#[tokio::test]
async fn metrics_need_credentials_and_render_every_process() {
    let backend = Arc::new(FakeBackend::with_processes(vec![
        process("web", "web_0", ProcessState::Running),
        process("we\"b\\", "line\nbreak", ProcessState::Stopped),
    ]));
    let credentials = || Some(Credentials::new("user", "123"));
    let reply = request(&backend, credentials(), &get("/metrics", "")).await;
    assert_eq!(reply.status, 401);
    let reply = request(&backend, credentials(), &get("/metrics", &basic("user:123"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(metrics::CONTENT_TYPE));
    let body = &reply.body;
    for line in [
        "vigil_build_info{version=\"0.0.0\"} 1",
        "vigil_uptime_seconds 60",
        "vigil_process_state{group=\"web\",name=\"web_0\",state=\"RUNNING\"} 1",
        "vigil_process_state{group=\"web\",name=\"web_0\",state=\"STARTING\"} 0",
        "vigil_process_up{group=\"web\",name=\"web_0\"} 1",
        "vigil_process_cpu_seconds_total{group=\"web\",name=\"web_0\",mode=\"user\"} 1.250000",
        "vigil_process_cpu_seconds_total{group=\"web\",name=\"web_0\",mode=\"system\"} 0.000005",
        "vigil_process_resident_memory_bytes{group=\"web\",name=\"web_0\"} 4096",
        // Label values are escaped.
        "vigil_process_up{group=\"we\\\"b\\\\\",name=\"line\\nbreak\"} 0",
        "vigil_group_processes{group=\"web\"} 1",
        "vigil_group_processes_running{group=\"web\"} 1",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in\n{body}");
    }
    // A process without a child has no CPU or memory sample.
    assert!(!body.contains("resident_memory_bytes{group=\"we\\\""), "{body}");
    assert_eq!(request(&backend, None, &get("/metrics/x", "")).await.status, 404);
}

#[tokio::test]
async fn health_routes_answer_without_credentials_and_name_processes_only_with_them() {
    let backend = Arc::new(FakeBackend::new());
    let credentials = || Some(Credentials::new("user", "123"));
    let reply = request(&backend, credentials(), &get("/healthz", "")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));

    // `worker` is stopped and `cron` fatal; both are autostart in the fake.
    let reply = request(&backend, credentials(), &get("/readyz", "")).await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "{\"ready\":false}\n"));
    let reply = request(&backend, credentials(), &get("/readyz", &basic("user:123"))).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        body["not_ready"],
        serde_json::json!([
            { "name": "worker", "state": "STOPPED", "reason": "STOPPED (not RUNNING)" },
            {
                "name": "cron",
                "state": "FATAL",
                "reason": "FATAL: Exited too quickly (process log may have details)"
            },
        ])
    );

    backend.state().processes.retain(|info| info.state == ProcessState::Running);
    let reply = request(&backend, None, &get("/readyz", "")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "{\"not_ready\":[],\"ready\":true}\n"));

    backend.state().daemon = crate::backend::DaemonState::Shutdown;
    assert_eq!(request(&backend, None, &get("/healthz", "")).await.status, 503);
    let post = "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(request(&backend, None, post).await.status, 400);
}
