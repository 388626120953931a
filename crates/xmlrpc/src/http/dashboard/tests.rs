use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use hyper::header::HeaderValue;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::backend::{ProcessRef, ProcessState};
use crate::fault::{Fault, FaultCode};
use crate::http::auth::Credentials;
use crate::http::tests::{Follower, basic, connect, dechunk, get, read_reply, request};
use crate::limits::{EVENT_STREAM_LIFETIME, MAX_EVENT_STREAMS};
use crate::testing::FakeBackend;
use feed::USAGE_REFRESH;
use vigil_rpc::{UpdateAction, UpdateStep};

/// Tests that open event streams take turns, each starting when the streams of the one
/// before are gone: the streams' limit is process-wide.
async fn streams_turn() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    let turn = LOCK.lock().await;
    let closed = tokio::time::timeout(USAGE_REFRESH * 3, async {
        while feed::open_streams() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    assert!(closed.await.is_ok(), "the streams of earlier tests closed");
    turn
}

/// A `POST` of an action as the dashboard's page sends it, plus `extra_headers`.
fn action(path: &str, extra_headers: &str) -> String {
    format!(
        "POST /ui/action/{path} HTTP/1.1\r\nHost: localhost:9001\r\nContent-Length: 0\r\n{extra_headers}\r\n"
    )
}

const SAME_ORIGIN: &str = "Origin: http://localhost:9001\r\nSec-Fetch-Site: same-origin\r\n";

/// Runs the action `path` as the dashboard's page would.
async fn post(backend: &Arc<FakeBackend>, path: &str) -> crate::http::tests::Reply {
    request(backend, None, &action(path, SAME_ORIGIN)).await
}

fn state_of(backend: &FakeBackend, name: &str) -> ProcessState {
    backend.state().processes.iter().find(|p| p.name == name).expect("known process").state
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

#[tokio::test]
async fn pages_and_their_files_are_served_from_the_binary() {
    let backend = Arc::new(FakeBackend::new());
    for path in ["/", "/index.html", "/index.html?processname=web&action=stop"] {
        let reply = request(&backend, None, &get(path, "")).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some("text/html;charset=utf-8"));
        assert!(reply.body.contains("<table class=\"processes\""), "{}", reply.body);
        let policy = reply.header("content-security-policy").unwrap();
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    }
    // supervisord's links act on a GET; here a GET only shows the page.
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Running);

    let reply = request(&backend, None, &get("/tail.html?processname=web:web_0", "")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<pre class=\"log\""));
    for (path, content_type, marker) in [
        ("/ui/common.js", "text/javascript;charset=utf-8", "window.location.origin"),
        ("/ui/dashboard.js", "text/javascript;charset=utf-8", "new EventSource("),
        ("/ui/tail.js", "text/javascript;charset=utf-8", "/logtail/"),
        ("/ui/dashboard.css", "text/css;charset=utf-8", ".processes"),
    ] {
        let reply = request(&backend, None, &get(path, "")).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert!(reply.body.contains(marker), "{path}");
    }
    // Nothing in the pages comes from another site.
    for asset in [&assets::INDEX, &assets::TAIL].into_iter().chain(
        ["/ui/common.js", "/ui/dashboard.js", "/ui/tail.js", "/ui/dashboard.css"]
            .map(|p| assets::find(p).unwrap()),
    ) {
        assert!(
            !asset.body.contains("http://") && !asset.body.contains("https://"),
            "{}",
            asset.path
        );
    }
    assert_eq!(request(&backend, None, &get("/ui/nosuch.js", "")).await.status, 404);
    assert_eq!(request(&backend, None, &get("/ui/action/stop/web:web_0", "")).await.status, 400);
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Running, "a GET never acts");
}

#[tokio::test]
async fn every_dashboard_route_needs_the_credentials() {
    let backend = Arc::new(FakeBackend::new());
    let credentials = || Some(Credentials::new("user", "123"));
    for raw in [
        get("/", ""),
        get("/index.html", ""),
        get("/tail.html?processname=web:web_0", ""),
        get("/ui/dashboard.js", ""),
        get("/ui/events", ""),
        action("stop/web:web_0", SAME_ORIGIN),
        action("stop/web:web_0", &format!("{SAME_ORIGIN}{}", basic("user:wrong"))),
    ] {
        let reply = request(&backend, credentials(), &raw).await;
        assert_eq!(reply.status, 401, "{raw}");
        assert_eq!(reply.header("www-authenticate"), Some("Basic realm=\"default\""));
    }
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Running);
    let auth = basic("user:123");
    let reply = request(&backend, credentials(), &get("/", &auth)).await;
    assert_eq!(reply.status, 200);
    let reply = request(
        &backend,
        credentials(),
        &action("stop/web:web_0", &format!("{SAME_ORIGIN}{auth}")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Stopped);
}

#[tokio::test]
async fn actions_from_another_origin_are_refused() {
    let backend = Arc::new(FakeBackend::new());
    for headers in [
        "",
        "Origin: http://evil.example\r\n",
        "Origin: null\r\n",
        "Origin: http://localhost:9002\r\n",
        "Origin: http://localhost:9001\r\nSec-Fetch-Site: cross-site\r\n",
        "Origin: http://localhost:9001\r\nSec-Fetch-Site: same-site\r\n",
        "Sec-Fetch-Site: same-origin\r\n",
        "Origin: ftp://localhost:9001\r\n",
    ] {
        let reply = request(&backend, None, &action("stop/web:web_0", headers)).await;
        assert_eq!(reply.status, 403, "{headers:?}");
    }
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Running);
    let reply =
        request(&backend, None, &action("stop/web:web_0", "Origin: http://LOCALHOST:9001\r\n"))
            .await;
    assert_eq!(reply.status, 200, "an Origin matching Host, without Sec-Fetch-Site");
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Stopped);
}

#[test]
fn same_origin_compares_origin_with_host() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    };
    assert!(same_origin(&headers(&[("host", "h:1"), ("origin", "http://h:1")])));
    assert!(same_origin(&headers(&[("host", "h:1"), ("origin", "https://h:1")])));
    assert!(!same_origin(&headers(&[("host", "h:1"), ("origin", "http://h:1.evil")])));
    assert!(!same_origin(&headers(&[("host", "h:1"), ("origin", "http://h")])));
    assert!(!same_origin(&headers(&[("origin", "http://h:1")])));
    assert!(!same_origin(&headers(&[("host", ""), ("origin", "http://")])));
}

#[tokio::test]
async fn actions_on_one_process() {
    let backend = Arc::new(FakeBackend::new());
    let reply = post(&backend, "stop/web%3Aweb_0").await;
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(json(&reply.body), serde_json::json!({"ok": true, "message": "web:web_0: stopped"}));
    let reply = post(&backend, "stop/web:web_0").await;
    assert_eq!(
        json(&reply.body),
        serde_json::json!({"ok": false, "message": "web:web_0: ERROR (NOT_RUNNING: web:web_0)"})
    );
    let reply = post(&backend, "start/worker").await;
    assert_eq!(json(&reply.body)["ok"], true);
    assert_eq!(state_of(&backend, "worker"), ProcessState::Running);
    let reply = post(&backend, "restart/web:web_0").await;
    assert_eq!(
        json(&reply.body),
        serde_json::json!({"ok": true, "message": "web:web_0: restarted"}),
        "a restart of a stopped process starts it"
    );
    assert_eq!(state_of(&backend, "web_0"), ProcessState::Running);
    let reply = post(&backend, "clearlog/worker").await;
    assert_eq!(json(&reply.body)["message"], "worker: log cleared");
    assert_eq!(backend.state().cleared, vec![Some(ProcessRef::new("worker", "worker"))]);
    let reply = post(&backend, "start/nosuch").await;
    assert_eq!(json(&reply.body)["message"], "nosuch: ERROR (BAD_NAME: nosuch)");
    for path in ["frobnicate/worker", "stop/web:*", "stop", "stopall/worker", "update/"] {
        assert_eq!(post(&backend, path).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn actions_on_every_process() {
    let backend = Arc::new(FakeBackend::new());
    let post = async |path: &str| json(&post(&backend, path).await.body);
    let reply = post("stopall").await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["message"], "web:web_0: stopped\nweb:web_1: stopped");
    assert!(backend.state().processes.iter().all(|p| !matches!(p.state, ProcessState::Running)));
    assert_eq!(post("stopall").await["message"], "nothing to do");
    let reply = post("restartall").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["message"], "cron, web:web_0, web:web_1, worker: restarted");
    assert!(backend.state().processes.iter().all(|p| p.state == ProcessState::Running));
    backend.state().failing_spawns.push(ProcessRef::new("worker", "worker"));
    let reply = post("restartall").await;
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["message"], "worker: ERROR (SPAWN_ERROR: worker)");
}

#[tokio::test]
async fn an_update_applies_only_the_plan_that_was_shown() {
    let backend = Arc::new(FakeBackend::new());
    let step = |group: &str| UpdateStep {
        group: group.to_owned(),
        action: UpdateAction::Added,
        stopped: Vec::new(),
        started: vec![group.to_owned()],
        changed_in_place: Vec::new(),
        error: None,
    };
    let report =
        |steps| crate::backend::UpdateReport { dry_run: true, unknown_groups: Vec::new(), steps };
    backend.state().update = Ok(report(vec![step("extra")]));
    let post = async |path: String| post(&backend, &path).await;
    let plan = json(&post("plan".to_owned()).await.body);
    assert_eq!(plan["ok"], true);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["steps"][0]["group"], "extra");
    assert_eq!(plan["steps"][0]["action"], "added");
    assert_eq!(plan["steps"][0]["started"], serde_json::json!(["extra"]));
    let id = plan["id"].as_str().unwrap().to_owned();
    assert_eq!(backend.state().updates, vec![true], "a plan applies nothing");

    // The file changed after the plan was shown: the new plan comes back, nothing applied.
    backend.state().update = Ok(report(vec![step("extra"), step("more")]));
    let reply = post(format!("update/{id}")).await;
    assert_eq!(reply.status, 409);
    let replan = json(&reply.body);
    assert_eq!(replan["ok"], false);
    assert_eq!(replan["steps"].as_array().unwrap().len(), 2);
    assert_eq!(backend.state().updates, vec![true, true]);

    let id = replan["id"].as_str().unwrap().to_owned();
    let reply = post(format!("update/{id}")).await;
    assert_eq!(reply.status, 200);
    let applied = json(&reply.body);
    assert_eq!((applied["ok"].clone(), applied["dry_run"].clone()), (true.into(), false.into()));
    assert_eq!(backend.state().updates, vec![true, true, true, false]);

    backend.state().update =
        Err(Fault::with_detail(FaultCode::CantReread, "line 3: [program:x] command: missing"));
    let reply = json(&post("plan".to_owned()).await.body);
    assert_eq!(reply["ok"], false);
    assert_eq!(reply["message"], "CANT_REREAD: line 3: [program:x] command: missing");
}

/// The complete events in a stream's raw bytes so far, as `(name, data)`.
fn parse_events(raw: &[u8]) -> Vec<(String, serde_json::Value)> {
    let text = String::from_utf8(dechunk(raw).0).unwrap();
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
    complete
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|line| line.strip_prefix("event: "))?;
            let data = block.lines().find_map(|line| line.strip_prefix("data: "))?;
            Some((name.to_owned(), json(data)))
        })
        .collect()
}

fn state_in(facts: &serde_json::Value, name: &str) -> String {
    facts["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["statename"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test]
async fn the_event_stream_pushes_each_change() {
    let _turn = streams_turn().await;
    let backend = Arc::new(FakeBackend::new());
    let (mut stream, head) = Follower::open(&backend, "/ui/events").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    stream.read_until(|raw| !parse_events(raw).is_empty()).await;
    let first = parse_events(&stream.raw);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "facts");
    assert_eq!(state_in(&first[0].1, "web_0"), "RUNNING");
    assert!(String::from_utf8(dechunk(&stream.raw).0).unwrap().starts_with("retry: 2000\n\n"));

    let reply = request(&backend, None, &action("stop/web:web_0", SAME_ORIGIN)).await;
    assert_eq!(reply.status, 200);
    stream.read_until(|raw| parse_events(raw).len() >= 2).await;
    let pushed = parse_events(&stream.raw);
    assert_eq!(pushed[1].0, "facts");
    assert_eq!(state_in(&pushed[1].1, "web_0"), "STOPPED", "{pushed:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_refreshes_usage_and_ends_after_its_lifetime() {
    let _turn = streams_turn().await;
    let backend = Arc::new(FakeBackend::new());
    let (mut stream, _) = Follower::open(&backend, "/ui/events").await;
    stream.read_until(|raw| parse_events(raw).iter().any(|(name, _)| name == "usage")).await;
    let usage = parse_events(&stream.raw).into_iter().find(|(name, _)| name == "usage").unwrap().1;
    assert_eq!(usage["usage"]["web:web_0"], serde_json::json!([1.250005, 4096]));
    assert_eq!(usage["usage"]["worker"], serde_json::Value::Null);
    // The server ends the stream (the chunked body's last chunk arrives) after its
    // lifetime, one usage event per refresh until then.
    let mut buffer = [0u8; 8192];
    let ended = tokio::time::timeout(EVENT_STREAM_LIFETIME + USAGE_REFRESH, async {
        while !dechunk(&stream.raw).1 {
            let read = stream.io.read(&mut buffer).await.unwrap();
            assert_ne!(read, 0, "the stream ends with its last chunk");
            stream.raw.extend_from_slice(&buffer[..read]);
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended");
    let usages = parse_events(&stream.raw).iter().filter(|(name, _)| name == "usage").count();
    let refreshes = EVENT_STREAM_LIFETIME.as_secs() / USAGE_REFRESH.as_secs();
    assert!(usages as u64 >= refreshes - 1 && usages as u64 <= refreshes, "{usages}");
}

#[tokio::test]
async fn event_streams_are_limited() {
    let _turn = streams_turn().await;
    let backend = Arc::new(FakeBackend::new());
    let mut open = Vec::new();
    for _ in 0..MAX_EVENT_STREAMS {
        let (stream, head) = Follower::open(&backend, "/ui/events").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(stream);
    }
    let mut io = connect(&backend, None);
    io.write_all(get("/ui/events", "").as_bytes()).await.unwrap();
    let reply = read_reply(&mut io).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    // A closed stream gives its place back.
    drop(open.pop());
    let opened = tokio::time::timeout(crate::http::tests::TIMEOUT, async {
        loop {
            let mut io = connect(&backend, None);
            io.write_all(get("/ui/events", "").as_bytes()).await.unwrap();
            let mut follower = Follower { io, raw: Vec::new() };
            follower.read_until(|raw| raw.windows(4).any(|w| w == b"\r\n\r\n")).await;
            if follower.raw.starts_with(b"HTTP/1.1 200") {
                return follower;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(opened.is_ok(), "the place of a dropped stream is free again");
}
