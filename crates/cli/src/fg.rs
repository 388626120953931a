//! `fg name`: show a running process's stdout and stderr live and forward each
//! typed line to its stdin, until Ctrl-C, end of input, or the process stops.

use std::io::Write;

use futures::future::BoxFuture;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use vigil_rpc::{
    Blob, CallError, ControlClient, ControlError, LogChannel, LogTarget, ProcessState,
    context_with_timeout, flatten,
};

use crate::limits::{FOLLOW_BACKLOG, FOLLOW_WAIT, QUERY_TIMEOUT};

/// Runs the foreground session; returns the closing lines to print.
pub(crate) async fn run(
    client: &ControlClient,
    name: &str,
    out: &mut Box<dyn Write + Send>,
    interrupted: BoxFuture<'static, ()>,
) -> Vec<String> {
    let (chunks, mut received) = mpsc::channel::<Vec<u8>>(16);
    let followers: Vec<_> = [LogChannel::Stdout, LogChannel::Stderr]
        .into_iter()
        .map(|channel| {
            let target = LogTarget::Process { name: name.to_owned(), channel };
            tokio::spawn(follow(client.clone(), target, chunks.clone()))
        })
        .collect();
    drop(chunks);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    tokio::pin!(interrupted);
    let closing = loop {
        tokio::select! {
            _ = &mut interrupted => break vec!["Exiting foreground".to_owned()],
            Some(chunk) = received.recv() => {
                let _ = out.write_all(&chunk);
                let _ = out.flush();
            }
            line = stdin.next_line() => {
                let Ok(Some(line)) = line else { break vec!["Exiting foreground".to_owned()] };
                let data = Blob(format!("{line}\n").into_bytes());
                match flatten(client.send_stdin(context_with_timeout(QUERY_TIMEOUT), name.to_owned(), data).await) {
                    Ok(()) => {}
                    Err(CallError::Fault(ControlError::NotRunning(_))) => {
                        break vec!["Process got killed".to_owned(), "Exiting foreground".to_owned()];
                    }
                    Err(error) => break vec![format!("ERROR: {error}"), "Exiting foreground".to_owned()],
                }
                let info = flatten(client.process_info(context_with_timeout(QUERY_TIMEOUT), name.to_owned()).await);
                if !matches!(info, Ok(ref info) if info.state == ProcessState::Running) {
                    break vec!["Process got killed".to_owned(), "Exiting foreground".to_owned()];
                }
            }
        }
    };
    for follower in followers {
        follower.abort();
    }
    closing
}

/// Long-polls one channel and forwards its bytes until the receiver is gone or
/// the daemon reports an error.
async fn follow(client: ControlClient, target: LogTarget, chunks: mpsc::Sender<Vec<u8>>) {
    let mut offset = -FOLLOW_BACKLOG;
    loop {
        let reply = client
            .tail_follow(
                context_with_timeout(FOLLOW_WAIT + QUERY_TIMEOUT),
                target.clone(),
                offset,
                vigil_rpc::MAX_LOG_CHUNK,
                u64::try_from(FOLLOW_WAIT.as_millis()).unwrap_or(u64::MAX),
            )
            .await;
        let Ok(chunk) = flatten(reply) else { return };
        offset = i64::try_from(chunk.next).unwrap_or(i64::MAX);
        if !chunk.bytes.0.is_empty() && chunks.send(chunk.bytes.0).await.is_err() {
            return;
        }
    }
}
