//! vigil-rpc end to end: a fake `Control` served on a real Unix socket in a temp
//! dir, reached through `connect`.

#[path = "support/fake.rs"]
mod fake;

use std::time::Duration;

use fake::{Fake, serve};
use vigil_rpc::*;

const CALL: Duration = Duration::from_secs(10);

#[tokio::test]
async fn connect_and_call() {
    let served = serve(Fake::new(), None);
    let client = connect(&served.url, None).await.expect("connect");
    let info = flatten(client.daemon_info(context_with_timeout(CALL)).await).expect("daemon_info");
    assert_eq!(
        (info.api_version.as_str(), info.pid, info.state),
        ("3.0", 777, DaemonState::Running)
    );

    let all = flatten(client.all_process_info(context_with_timeout(CALL)).await).expect("all");
    let names: Vec<_> = all.iter().map(ProcessInfo::namespec).collect();
    assert_eq!(names, ["app1", "app2", "failer", "grp:a", "grp:b"]);

    // Several names, one round trip, one result per process in spec order.
    let specs = ["app2", "grp:*", "nosuch", "nogroup:*"].map(NameSpec::parse).to_vec();
    let before = served.fake.calls().len();
    let results =
        flatten(client.start(context_with_timeout(CALL), specs, true).await).expect("start");
    assert_eq!(served.fake.calls().len(), before + 1);
    let shown: Vec<_> = results.iter().map(|r| (r.namespec(), r.status())).collect();
    assert_eq!(
        shown,
        [
            ("app2".to_owned(), 80),
            ("grp:b".to_owned(), 80),
            ("nosuch".to_owned(), 10),
            ("nogroup".to_owned(), 10)
        ]
    );

    let fault = flatten(client.process_info(context_with_timeout(CALL), "nosuch".into()).await)
        .expect_err("unknown name");
    assert!(
        matches!(fault, CallError::Fault(ControlError::BadName(ref n)) if n == "nosuch"),
        "{fault:?}"
    );
}

#[tokio::test]
async fn large_log_reads_are_paged_below_the_frame_cap() {
    let served = serve(Fake::new(), None);
    // 3.5 MiB of varied bytes (not UTF-8 everywhere) in app1's stdout.
    let log: Vec<u8> = (0..(3 * 1024 * 1024 + 512 * 1024)).map(|i: u32| (i % 251) as u8).collect();
    served.fake.append("app1", LogChannel::Stdout, &log);
    let client = connect(&served.url, None).await.expect("connect");
    let target = LogTarget::Process { name: "app1".into(), channel: LogChannel::Stdout };

    // One raw call for the whole log comes back cut at MAX_LOG_CHUNK, and the
    // connection is still good afterwards.
    let slice = flatten(client.read_log(context_with_timeout(CALL), target.clone(), 0, 0).await)
        .expect("read");
    assert_eq!((slice.start, slice.end, slice.size), (0, MAX_LOG_CHUNK, log.len() as u64));

    let before = served.fake.calls().len();
    let all = read_log_all(&client, &target, -(log.len() as i64), 0, CALL).await.expect("read all");
    assert_eq!(all.len(), log.len());
    assert!(all == log, "paged read differs from the log");
    assert_eq!(served.fake.calls().len() - before, 4, "3.5 MiB in 1 MiB pages");
    assert_eq!(served.fake.lock().largest_reply as u64, MAX_LOG_CHUNK);

    // A bounded slice in the middle, across a page boundary.
    let mid = read_log_all(&client, &target, 1_000_000, 2_000_000, CALL).await.expect("slice");
    assert!(mid == log[1_000_000..3_000_000]);

    let info =
        flatten(client.daemon_info(context_with_timeout(CALL)).await).expect("still connected");
    assert_eq!(info.pid, 777);
}

#[tokio::test]
async fn auth_accepts_right_credentials_and_rejects_others() {
    // supervisord's `{SHA}` form: hex SHA-1 of "secret".
    let auth =
        ServerAuth::new("admin", "{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4").expect("auth");
    let served = serve(Fake::new(), Some(auth));

    let client = connect(&served.url, Some(("admin", "secret"))).await.expect("right credentials");
    flatten(client.daemon_info(context_with_timeout(CALL)).await).expect("call after auth");

    for creds in [None, Some(("admin", "wrong")), Some(("root", "secret"))] {
        let error = connect(&served.url, creds).await.expect_err("must be refused");
        assert!(matches!(error, ConnectError::Unauthorized { .. }), "{creds:?}: {error:?}");
        assert_eq!(error.to_string(), "Server requires authentication");
    }
    // Refused connections never reached the service.
    assert_eq!(served.fake.calls(), ["daemon_info"]);
}

#[tokio::test]
async fn unreachable_daemon_errors_use_supervisorctl_wording() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = format!("unix://{}/nope.sock", dir.path().display());
    let error = connect(&missing, None).await.expect_err("no socket");
    assert_eq!(error.to_string(), format!("{missing} no such file"));

    // A socket file nobody listens on: bind, then drop the listener.
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let stale = format!("unix://{}", path.display());
    let error = connect(&stale, None).await.expect_err("refused");
    assert_eq!(error.to_string(), format!("{stale} refused connection"));
}

#[tokio::test]
async fn tail_follow_long_polls_and_keeps_positions_across_rotation() {
    let served = serve(Fake::new(), None);
    let client = connect(&served.url, None).await.expect("connect");
    let target = LogTarget::Process { name: "app1".into(), channel: LogChannel::Stdout };
    served.fake.append("app1", LogChannel::Stdout, b"one\ntwo\n");

    let first = flatten(
        client.tail_follow(context_with_timeout(CALL), target.clone(), -1024, 4096, 0).await,
    )
    .expect("first");
    assert_eq!((first.bytes.0.as_slice(), first.offset, first.next), (&b"one\ntwo\n"[..], 0, 8));

    // Nothing new: the poll waits, and output arriving meanwhile answers it.
    let poll = {
        let client = client.clone();
        let target = target.clone();
        tokio::spawn(async move {
            flatten(client.tail_follow(context_with_timeout(CALL), target, 8, 4096, 5_000).await)
        })
    };
    // The poll must be parked in the server before we write; wait for the call.
    wait_until(|| served.fake.calls().iter().filter(|c| *c == "tail_follow").count() == 2).await;
    served.fake.rotate("app1", LogChannel::Stdout);
    served.fake.append("app1", LogChannel::Stdout, b"three\n");
    let second = poll.await.expect("join").expect("second");
    assert_eq!((second.bytes.0.as_slice(), second.offset, second.next), (&b"three\n"[..], 8, 14));
    assert_eq!(second.skipped(8), 0);
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_connection_whose_first_bytes_were_read_is_served_through_prefixed() {
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sniff.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let fake = Fake::new();
    // What the daemon does: read a few bytes, decide, rewind, serve.
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut first = [0u8; 5];
        stream.read_exact(&mut first).await.expect("first bytes");
        assert!(!vigil_rpc::transport::looks_like_http(&first));
        serve_stream(Prefixed::new(first.to_vec(), stream), None, fake).await
    });
    let client = connect(&format!("unix://{}", path.display()), None).await.expect("connect");
    let info = flatten(client.daemon_info(context_with_timeout(CALL)).await).expect("call");
    assert_eq!(info.pid, 777);
    drop(client);
    server.await.expect("join").expect("served until the client left");
}

#[tokio::test]
async fn tcp_endpoints_use_the_same_protocol() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = Fake::new();
    let auth = std::sync::Arc::new(ServerAuth::new("ops", "pw").expect("auth"));
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        serve_stream(stream, Some(auth), fake).await
    });
    let client =
        connect(&format!("http://127.0.0.1:{port}"), Some(("ops", "pw"))).await.expect("connect");
    let all = flatten(client.all_process_info(context_with_timeout(CALL)).await).expect("call");
    assert_eq!(all.len(), 5);
    drop(client);
    server.await.expect("join").expect("served");
}

/// Runs `serve_stream` on one end of an in-memory pipe; the test holds the other.
fn serve_in_memory(
    auth: Option<ServerAuth>,
) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Result<(), ServeError>>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve_stream(server, auth.map(std::sync::Arc::new), Fake::new()));
    (client, task)
}

#[tokio::test(start_paused = true)]
async fn an_oversized_hello_is_refused_before_its_payload_is_read() {
    use tokio::io::AsyncWriteExt;

    let (mut client, server) = serve_in_memory(None);
    // A length prefix of 1 MiB (legal for a frame after the hello) and a start
    // of the payload: the server refuses at the prefix instead of waiting for,
    // and buffering, the rest. The connection stays open, so a server that
    // waited would only give up at the handshake timeout.
    client.write_all(&(1024u32 * 1024).to_be_bytes()).await.expect("prefix");
    client.write_all(b"{\"vigil\":1,").await.expect("payload start");
    let error = server.await.expect("join").expect_err("refused");
    let text = error.to_string();
    assert!(text.contains(&format!("hello longer than {} bytes", transport::MAX_HELLO)), "{text}");
}

#[tokio::test]
async fn a_long_hello_within_the_limit_is_still_answered() {
    let auth = ServerAuth::new("ops", "pw").expect("auth");
    let (client, server) = serve_in_memory(Some(auth));
    let hello = transport::Hello {
        vigil: PROTOCOL_VERSION,
        username: Some("u".repeat(transport::MAX_HELLO - 200)),
        password: Some("pw".into()),
    };
    let error = transport::client_over(client, "memory://", &hello).await.expect_err("denied");
    assert!(matches!(error, ConnectError::Unauthorized { .. }), "{error:?}");
    let served = server.await.expect("join");
    assert!(matches!(served, Err(ServeError::Denied { .. })), "{served:?}");
}

#[tokio::test]
async fn frames_after_the_hello_may_be_large() {
    let served = serve(Fake::new(), None);
    let client = connect(&served.url, None).await.expect("connect");
    // About 20 KiB of request, far above the hello's limit.
    let specs: Vec<NameSpec> = (0..400).map(|i| NameSpec::parse(&format!("{i:0>48}"))).collect();
    let results =
        flatten(client.start(context_with_timeout(CALL), specs, true).await).expect("start");
    assert_eq!(results.len(), 400);
    assert!(results.iter().all(|r| r.status() == 10), "every name is unknown");
}

#[tokio::test]
async fn a_hello_of_another_protocol_version_is_refused_with_both_versions() {
    let (client, server) = serve_in_memory(None);
    let hello = transport::Hello { vigil: PROTOCOL_VERSION + 1, username: None, password: None };
    let error = transport::client_over(client, "memory://", &hello).await.expect_err("refused");
    assert!(
        matches!(
            error,
            ConnectError::Version { server, client, .. }
                if server == PROTOCOL_VERSION && client == PROTOCOL_VERSION + 1
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("vigild speaks control protocol version 1"), "{error}");
    let served = server.await.expect("join");
    assert!(
        matches!(served, Err(ServeError::Version { client }) if client == PROTOCOL_VERSION + 1),
        "{served:?}"
    );
}
