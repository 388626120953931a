//! The adaptor against a scripted `SendControl`: fault translation, result shapes, log
//! paging and following, and the order of a shutdown's answer and its request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vigil_rpc::{ControlError, ControlRequest, ControlResponse, DaemonInfo, LogSlice};

use super::*;

/// A `Control` service that answers from a function and records every request.
#[derive(Clone)]
struct Scripted {
    answer: Arc<dyn Fn(&ControlRequest) -> ControlResponse + Send + Sync>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn new(answer: impl Fn(&ControlRequest) -> ControlResponse + Send + Sync + 'static) -> Self {
        Scripted { answer: Arc::new(answer), seen: Arc::default() }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl SendControl for Scripted {
    fn call(
        self,
        _: tarpc::context::Context,
        request: ControlRequest,
    ) -> BoxFuture<'static, Result<ControlResponse, tarpc::ServerError>> {
        let name = format!("{request:?}");
        self.seen.lock().unwrap().push(name.split([' ', '{']).next().unwrap().to_owned());
        let response = (self.answer)(&request);
        Box::pin(async move { Ok(response) })
    }
}

fn running() -> ControlResponse {
    ControlResponse::DaemonInfo(Ok(DaemonInfo {
        api_version: "3.0".into(),
        version: "0.1.0".into(),
        identification: "vigil".into(),
        state: vigil_rpc::DaemonState::Running,
        pid: 1,
        extensions: Vec::new(),
    }))
}

fn backend(control: &Scripted) -> Arc<ControlBackend<Scripted>> {
    let (stream, _) = tokio::io::duplex(64);
    connection(stream, control.clone()).0
}

#[test]
fn control_errors_become_supervisord_faults_with_the_same_text() {
    let errors = [
        ControlError::UnknownMethod(String::new()),
        ControlError::IncorrectParameters("x".into()),
        ControlError::BadArguments(String::new()),
        ControlError::SignatureUnsupported(String::new()),
        ControlError::ShutdownState,
        ControlError::BadName("web:web_0".into()),
        ControlError::BadSignal("FOO".into()),
        ControlError::NoFile("/x".into()),
        ControlError::NotExecutable("/x".into()),
        ControlError::Failed("boom".into()),
        ControlError::AbnormalTermination("a".into()),
        ControlError::SpawnError("a".into()),
        ControlError::AlreadyStarted("a".into()),
        ControlError::NotRunning("a".into()),
        ControlError::AlreadyAdded("g".into()),
        ControlError::StillRunning("g".into()),
        ControlError::CantReread("bad".into()),
        ControlError::ConfigErrors(vec![vigil_rpc::ConfigErrorLine {
            file: "/etc/s.conf".into(),
            line: 3,
            message: "bad key".into(),
        }]),
    ];
    for error in errors {
        let translated = fault(error.clone());
        assert_eq!(translated.code.code(), error.code(), "{error:?}");
        assert_eq!(translated.fault_string(), error.to_string(), "{error:?}");
    }
}

#[tokio::test]
async fn group_results_and_a_missing_group() {
    let control = Scripted::new(|request| match request {
        ControlRequest::Stop { specs, .. } if specs[0] == NameSpec::Group("nosuch".into()) => {
            ControlResponse::Stop(Ok(vec![vigil_rpc::ProcessResult::failed(
                "nosuch",
                None,
                ControlError::BadName("nosuch".into()),
            )]))
        }
        ControlRequest::Stop { specs, .. } if matches!(specs[0], NameSpec::Process { .. }) => {
            ControlResponse::Stop(Ok(vec![vigil_rpc::ProcessResult::failed(
                "web",
                Some("web_1".into()),
                ControlError::Failed("stuck".into()),
            )]))
        }
        ControlRequest::Stop { .. } => ControlResponse::Stop(Ok(vec![
            vigil_rpc::ProcessResult::ok("web", "web_0"),
            vigil_rpc::ProcessResult::failed(
                "web",
                Some("web_1".into()),
                ControlError::Failed("stuck".into()),
            ),
        ])),
        other => panic!("unexpected {other:?}"),
    });
    let backend = backend(&control);
    let results = backend.stop_many(&Scope::Group("web".into()), true).await.unwrap();
    assert_eq!(
        results,
        vec![
            ProcessResult { process: ProcessRef::new("web", "web_0"), outcome: Ok(()) },
            ProcessResult {
                process: ProcessRef::new("web", "web_1"),
                outcome: Err(Fault::with_detail(FaultCode::Failed, "stuck")),
            },
        ]
    );
    let missing = backend.stop_many(&Scope::Group("nosuch".into()), true).await.unwrap_err();
    assert_eq!(missing.fault_string(), "BAD_NAME: nosuch");
    // A single process failing is the call's fault.
    let single = backend.stop_process(&ProcessRef::new("web", "web_1"), true).await.unwrap_err();
    assert_eq!(single, Fault::with_detail(FaultCode::Failed, "stuck"));
}

/// A log of `LOG` that hands out at most 4 bytes per `read_log` reply.
const LOG: &[u8] = b"hello, world\n";

fn paging_log(request: &ControlRequest) -> ControlResponse {
    match request {
        ControlRequest::ReadLog { offset, length, .. } => {
            let size = LOG.len() as u64;
            let start = u64::try_from(*offset).unwrap().min(size);
            let end = if *length == 0 { size } else { (start + *length as u64).min(size) };
            let end = end.min(start + 4);
            ControlResponse::ReadLog(Ok(LogSlice {
                bytes: Blob(LOG[start as usize..end as usize].to_vec()),
                start,
                end,
                size,
            }))
        }
        ControlRequest::ProcessInfo { name } => {
            ControlResponse::ProcessInfo(Ok(vigil_rpc::ProcessInfo {
                name: name.as_str().into(),
                group: name.as_str().into(),
                start: 0,
                stop: 0,
                now: 0,
                state: vigil_rpc::ProcessState::Stopped,
                statename: "STOPPED".into(),
                spawnerr: Default::default(),
                exitstatus: 0,
                logfile: "/log".into(),
                stdout_logfile: "/log".into(),
                stderr_logfile: Default::default(),
                pid: 0,
                description: String::new(),
                health: None,
                waiting_for: Vec::new(),
            }))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn reads_page_through_short_replies() {
    let control = Scripted::new(paging_log);
    let backend = backend(&control);
    let source = LogSource::Process(ProcessRef::new("app", "app"), LogChannel::Stdout);
    assert_eq!(backend.log_size(&source).await.unwrap(), LOG.len() as u64);
    assert_eq!(backend.read_log(&source, 0, None).await.unwrap(), LOG);
    assert_eq!(backend.read_log(&source, 2, Some(7)).await.unwrap(), b"llo, wo");
    assert_eq!(backend.read_log(&source, 20, None).await.unwrap(), b"");
    assert_eq!(backend.read_log(&source, 0, Some(0)).await.unwrap(), b"");
    // A channel without a log file is NO_FILE, as in supervisord, whatever vigild keeps.
    let stderr = LogSource::Process(ProcessRef::new("app", "app"), LogChannel::Stderr);
    assert_eq!(backend.log_size(&stderr).await.unwrap_err().fault_string(), "NO_FILE: None");
}

#[tokio::test]
async fn follows_skip_empty_polls_and_report_lost_bytes() {
    // Stream positions: 100 bytes written so far; a poll at 100 first times out empty,
    // then 3 bytes come; a poll at 103 finds the log cleared and rewritten from 110.
    let polls = Arc::new(Mutex::new(0));
    let control = Scripted::new(move |request| match request {
        ControlRequest::TailFollow { offset: -1024, wait_ms: 0, .. } => {
            ControlResponse::TailFollow(Ok(vigil_rpc::LogFollow {
                bytes: Blob(b"tail".to_vec()),
                offset: 96,
                next: 100,
            }))
        }
        ControlRequest::TailFollow { offset: 100, .. } => {
            let mut polls = polls.lock().unwrap();
            *polls += 1;
            let bytes = if *polls == 1 { Vec::new() } else { b"new".to_vec() };
            let next = 100 + bytes.len() as u64;
            ControlResponse::TailFollow(Ok(vigil_rpc::LogFollow {
                bytes: Blob(bytes),
                offset: 100,
                next,
            }))
        }
        ControlRequest::TailFollow { offset: 103, .. } => {
            ControlResponse::TailFollow(Ok(vigil_rpc::LogFollow {
                bytes: Blob(b"x".to_vec()),
                offset: 110,
                next: 111,
            }))
        }
        other => panic!("unexpected {other:?}"),
    });
    let backend = backend(&control);
    let source = LogSource::Main;
    let first = backend.follow_log(&source, FollowFrom::Tail(1024)).await.unwrap();
    assert_eq!(first, LogFollow { bytes: b"tail".to_vec(), truncated: false, next: 100 });
    let second = backend.follow_log(&source, FollowFrom::Position(100)).await.unwrap();
    assert_eq!(second, LogFollow { bytes: b"new".to_vec(), truncated: false, next: 103 });
    let third = backend.follow_log(&source, FollowFrom::Position(103)).await.unwrap();
    assert_eq!(third, LogFollow { bytes: b"x".to_vec(), truncated: true, next: 111 });
}

fn shutdown_call() -> String {
    let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>supervisor.shutdown</methodName>\n<params>\n</params>\n</methodCall>\n";
    format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn wait_for_request(control: &Scripted, name: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !control.seen().iter().any(|seen| seen == name) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} never reached the service: {:?}", control.seen()));
}

#[tokio::test]
async fn shutdown_is_requested_only_after_its_answer_was_written() {
    let control = Scripted::new(|request| match request {
        ControlRequest::DaemonInfo {} => running(),
        ControlRequest::Shutdown {} => ControlResponse::Shutdown(Ok(())),
        other => panic!("unexpected {other:?}"),
    });
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let serving = tokio::spawn(crate::serve(server, control.clone(), None));
    client.write_all(shutdown_call().as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("</methodResponse>") {
        let read = client.read(&mut chunk).await.unwrap();
        assert_ne!(read, 0, "connection closed before the answer");
        raw.extend_from_slice(&chunk[..read]);
    }
    assert!(String::from_utf8_lossy(&raw).contains("<boolean>1</boolean>"));
    // The connection is still open: the flush, not the hang-up, released the request.
    wait_for_request(&control, "Shutdown").await;
    assert_eq!(control.seen(), ["DaemonInfo", "Shutdown"]);
    drop(client);
    serving.await.unwrap().unwrap();
    assert_eq!(control.seen(), ["DaemonInfo", "Shutdown"], "requested once");
}

#[tokio::test]
async fn a_restart_is_still_requested_when_the_client_leaves_early() {
    let control = Scripted::new(|request| match request {
        ControlRequest::DaemonInfo {} => running(),
        ControlRequest::Reload {} => ControlResponse::Reload(Ok(())),
        other => panic!("unexpected {other:?}"),
    });
    let (backend, stream) = connection(tokio::io::duplex(64).0, control.clone());
    backend.restart().await.unwrap();
    assert_eq!(control.seen(), Vec::<String>::new(), "not before the answer is out");
    drop(stream);
    wait_for_request(&control, "Reload").await;
}
