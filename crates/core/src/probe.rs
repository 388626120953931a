//! Health probes as async tasks: one small tokio task per probed child, no
//! thread, so a thousand probed programs cost a thousand idle tasks.
//!
//! A readiness task starts with each child of a program that has a `ready_*`
//! probe and ends with its first verdict: passed (the child leaves STARTING for
//! RUNNING) or failed after `ready_retries` failed attempts in a row (the child
//! is stopped and the start counts as failed). A liveness task starts when the
//! child enters RUNNING and runs until the child goes; after
//! `live_failure_threshold` failures in a row the child is restarted through its
//! group (the restart counts against the group's budget). Each verdict goes to
//! the process actor tagged with the child's spawn generation, so a verdict about
//! an earlier child is ignored.
//!
//! Each task keeps its [`Progress`] (failures in a row, when the next attempt
//! is due) where the process actor can read it, so a live upgrade carries it
//! and the next image's task goes on from there ([`Resume`]) instead of
//! starting again.
//!
//! Kinds: `tcp` connects; `http` sends a minimal HTTP/1.1 GET over a
//! `TcpStream` and compares the status code (plain `http://` only); `exec` runs
//! a command through the [`Spawner`] (the reaper in production, never
//! `tokio::process`) and passes on exit code 0, killing its process group when
//! it overruns `timeout`. `log` (a regex on output lines) and `notify`
//! (`READY=1` on `NOTIFY_SOCKET`, see [`crate::notify`]) are pushed by the
//! program rather than polled, so they have no task here.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use ractor::ActorRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use vigil_config::{Probe, ProbeKind};

use crate::exit::ExitStatus;
use crate::messages::{ProcessMsg, Verdict};
use crate::spawn::SpawnSpec;
use crate::spawner::{Spawner, kill_orphan};

/// What a polled probe needs besides its config.
#[derive(Clone)]
pub(crate) struct ProbeEnv {
    pub(crate) spawner: Arc<dyn Spawner>,
    /// The program's environment, for `exec` probes.
    pub(crate) env: crate::spawn::ChildEnv,
    pub(crate) cwd: Option<std::path::PathBuf>,
    /// The program's `user`, so an `exec` probe runs with its identity.
    pub(crate) user: Option<crate::spawn::SpawnUser>,
    /// `exec` argv with argv[0] resolved on the program's PATH.
    pub(crate) argv: Option<Vec<String>>,
}

/// Where a probe task is: failures in a row, and when its next attempt is
/// due (`None` while an attempt runs).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    failures: u32,
    next: Option<tokio::time::Instant>,
}

/// A probe task's [`Progress`], shared with its process actor.
pub(crate) type SharedProgress = Arc<Mutex<Progress>>;

/// Where a probe task starts after a live upgrade: the failures in a row
/// the previous image counted, and the time its next attempt had left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    pub(crate) failures: u32,
    pub(crate) wait: Duration,
}

impl Resume {
    /// Where the task owning `progress` is now (an attempt under way is
    /// made again at once).
    pub(crate) fn of(progress: &SharedProgress) -> Resume {
        let progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        let wait = progress.next.map_or(Duration::ZERO, |next| next.saturating_duration_since(now));
        Resume { failures: progress.failures, wait }
    }
}

/// Records where the task is and sleeps until its next attempt.
async fn wait_for_attempt(progress: &SharedProgress, failures: u32, wait: Duration) {
    let next = tokio::time::Instant::now() + wait;
    *progress.lock().unwrap_or_else(PoisonError::into_inner) =
        Progress { failures, next: Some(next) };
    tokio::time::sleep_until(next).await;
    progress.lock().unwrap_or_else(PoisonError::into_inner).next = None;
}

/// Spawns `run(progress, failures, wait)`: a probe task starting with `failures` in a
/// row and its first attempt `wait` from now (`first`, unless `resume` says where a
/// previous image left it).
fn spawn_probe<F>(
    first: Duration,
    resume: Option<Resume>,
    run: impl FnOnce(SharedProgress, u32, Duration) -> F,
) -> (JoinHandle<()>, SharedProgress)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let progress = SharedProgress::default();
    let (failures, wait) = resume.map_or((0, first), |r| (r.failures, r.wait));
    (tokio::spawn(run(Arc::clone(&progress), failures, wait)), progress)
}

/// Whether `probe` is polled by a task (tcp, http, exec).
pub(crate) fn is_polled(probe: &Probe) -> bool {
    matches!(probe.kind, ProbeKind::Tcp { .. } | ProbeKind::Http { .. } | ProbeKind::Exec { .. })
}

/// Runs the readiness probe of child `generation` until its verdict: from
/// its start, or from where `resume` says.
pub(crate) fn spawn_readiness(
    probe: Probe,
    env: ProbeEnv,
    actor: ActorRef<ProcessMsg>,
    generation: u64,
    resume: Option<Resume>,
) -> (JoinHandle<()>, SharedProgress) {
    let first = probe.initial_delay;
    spawn_probe(first, resume, move |progress, mut failures, mut wait| async move {
        loop {
            wait_for_attempt(&progress, failures, wait).await;
            wait = probe.period;
            match attempt(&probe, &env).await {
                Ok(()) => {
                    let _ = actor
                        .cast(ProcessMsg::Probe { generation, verdict: Verdict::ReadinessPassed });
                    return;
                }
                Err(error) => {
                    failures += 1;
                    tracing::debug!("readiness probe attempt {failures}: {error}");
                    if failures >= probe.failure_threshold {
                        tracing::warn!("readiness probe failed {failures} times; last: {error}");
                        let _ = actor.cast(ProcessMsg::Probe {
                            generation,
                            verdict: Verdict::ReadinessFailed,
                        });
                        return;
                    }
                }
            }
        }
    })
}

/// Runs the liveness probe of child `generation` while it lives: from its
/// start, or from where `resume` says.
pub(crate) fn spawn_liveness(
    probe: Probe,
    env: ProbeEnv,
    actor: ActorRef<ProcessMsg>,
    generation: u64,
    resume: Option<Resume>,
) -> (JoinHandle<()>, SharedProgress) {
    let first = probe.initial_delay + probe.period;
    spawn_probe(first, resume, move |progress, mut failures, mut wait| async move {
        loop {
            wait_for_attempt(&progress, failures, wait).await;
            wait = probe.period;
            let verdict = match attempt(&probe, &env).await {
                Ok(()) => {
                    failures = 0;
                    Verdict::Alive
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!("liveness probe failed ({failures} in a row): {error}");
                    if failures >= probe.failure_threshold {
                        Verdict::LivenessFailed
                    } else {
                        Verdict::Unwell
                    }
                }
            };
            if actor.cast(ProcessMsg::Probe { generation, verdict }).is_err()
                || verdict == Verdict::LivenessFailed
            {
                return;
            }
        }
    })
}

/// One attempt within the probe's timeout.
async fn attempt(probe: &Probe, env: &ProbeEnv) -> Result<(), String> {
    let check = match &probe.kind {
        ProbeKind::Tcp { host, port } => tcp(host, *port).boxed(),
        ProbeKind::Http { url, expect_status } => http(url, *expect_status).boxed(),
        ProbeKind::Exec { .. } => {
            // Enforces the timeout itself, to kill an overrunning command.
            let argv = env.argv.clone().ok_or_else(|| "command not found".to_owned())?;
            return exec(env, argv, probe.timeout).await;
        }
        ProbeKind::Log { .. } | ProbeKind::Notify => {
            return Err("pushed probes are not polled".to_owned());
        }
    };
    match tokio::time::timeout(probe.timeout, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", probe.timeout)),
    }
}

async fn tcp(host: &str, port: u16) -> Result<(), String> {
    TcpStream::connect((host, port))
        .await
        .map(drop)
        .map_err(|e| format!("connect {host}:{port}: {e}"))
}

/// The parts of a plain `http://host[:port]/path` URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HttpTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query, at least `/`.
    pub(crate) path: String,
}

pub(crate) fn parse_http_url(url: &str) -> Result<HttpTarget, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port.parse::<u16>().map_err(|_| format!("{url}: bad port"))?;
            (host, port)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(HttpTarget { host: host.to_owned(), port, path: path.to_owned() })
}

async fn http(url: &str, expect: u16) -> Result<(), String> {
    let target = parse_http_url(url)?;
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", target.host, target.port))?;
    let host_header = if target.port == 80 {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: vigil-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    // Only the status line matters: read until its end.
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 8192 {
        let n = stream.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = parse_status_line(line.lines().next().unwrap_or(""))
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    if status == expect {
        Ok(())
    } else {
        Err(format!("{url}: status {status}, expected {expect}"))
    }
}

/// `HTTP/1.1 200 OK` -> 200.
pub(crate) fn parse_status_line(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

async fn exec(env: &ProbeEnv, argv: Vec<String>, timeout: Duration) -> Result<(), String> {
    let mut spec = SpawnSpec::new(argv);
    spec.env = env.env.clone();
    spec.cwd = env.cwd.clone();
    spec.user = env.user.clone();
    spec.redirect_stderr = true;
    let spawned = env.spawner.spawn(&spec).map_err(|e| e.to_string())?;
    let pid = spawned.pid;
    // Drain the output so a chatty probe never blocks on a full pipe.
    if let Some(mut out) = spawned.stdout {
        tokio::spawn(async move {
            let mut sink = [0u8; 4096];
            while matches!(out.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
    let mut exit = spawned.exit;
    // The caller's timeout would drop this future; kill the probe first so it
    // cannot outlive its attempt.
    match tokio::time::timeout(timeout, &mut exit).await {
        Ok(Ok(ExitStatus::Code(0))) => Ok(()),
        Ok(Ok(status)) => Err(format!("probe command: {}", status.describe())),
        Ok(Err(_)) => Err("probe command: exit status lost".to_owned()),
        Err(_) => {
            kill_orphan(env.spawner.as_ref(), pid);
            Err(format!("probe command overran {timeout:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_and_status_lines() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8001/health?x=1"),
            Ok(HttpTarget { host: "127.0.0.1".into(), port: 8001, path: "/health?x=1".into() })
        );
        assert_eq!(
            parse_http_url("http://example"),
            Ok(HttpTarget { host: "example".into(), port: 80, path: "/".into() })
        );
        assert!(parse_http_url("https://example/").is_err());
        assert!(parse_http_url("http://:80/").is_err());
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status_line("SSH-2.0"), None);
    }
}
