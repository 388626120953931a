//! `/healthz` and `/readyz`, for orchestrators' probes (a kubelet's `httpGet`).
//!
//! Both answer without credentials, even on a socket that requires them: a probe
//! cannot easily send Basic auth, and the answers are only a status code unless
//! the request is authenticated. `/readyz` names what is not ready (process
//! names, states, reasons) only to a client that may see them anyway: one with
//! the credentials, or any client of a socket without them.
//!
//! - `/healthz`: 200 when the daemon answers and is not shutting down or
//!   reloading, else 503.
//! - `/readyz`: 200 when every `autostart` program is RUNNING and ready (its
//!   readiness probe passed, its liveness holds) or, a one-shot, EXITED with an
//!   expected code; else 503. The body is JSON,
//!   `{"ready": false, "not_ready": [{"name", "state", "reason"}]}`.

use hyper::{Response, StatusCode};
use serde_json::json;
use vigil_rpc::{Health, ProcessFacts, ProcessState};

use super::response::{Body, full};
use crate::backend::Backend;

const JSON: &str = "application/json";

pub(crate) async fn healthz<B: Backend>(backend: &B) -> Response<Body> {
    let (status, text) = match backend.state().await {
        Ok(crate::backend::DaemonState::Running) => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "shutting down or reloading\n"),
    };
    let mut response = full("text/plain;charset=utf-8", text);
    *response.status_mut() = status;
    response
}

/// `detailed`: the client may see process names.
pub(crate) async fn readyz<B: Backend>(backend: &B, detailed: bool) -> Response<Body> {
    let (status, body) = match backend.facts(false).await {
        Ok(facts) => {
            let waiting: Vec<_> = facts
                .processes
                .iter()
                .filter(|process| process.autostart && !process.is_ready())
                .map(|process| {
                    json!({
                        "name": process.info.namespec(),
                        "state": process.info.state.name(),
                        "reason": reason(process),
                    })
                })
                .collect();
            let ready = waiting.is_empty();
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            if detailed {
                (status, json!({ "ready": ready, "not_ready": waiting }))
            } else {
                (status, json!({ "ready": ready }))
            }
        }
        Err(fault) => {
            let body = if detailed {
                json!({ "ready": false, "error": fault.fault_string() })
            } else {
                json!({ "ready": false })
            };
            (StatusCode::SERVICE_UNAVAILABLE, body)
        }
    };
    let mut response = full(JSON, format!("{body}\n"));
    *response.status_mut() = status;
    response
}

/// Why an autostart process is not ready, in words.
fn reason(process: &ProcessFacts) -> String {
    let info = &process.info;
    if !info.waiting_for.is_empty() {
        return format!("waiting for {}", info.waiting_for.join(", "));
    }
    match (info.state, &info.health) {
        (ProcessState::Starting | ProcessState::Running, Some(Health::Unknown)) => {
            "its readiness probe has not passed yet".to_owned()
        }
        (ProcessState::Running, Some(Health::Unhealthy { reason })) if !reason.is_empty() => {
            format!("unhealthy: {reason}")
        }
        (ProcessState::Running, _) => "unhealthy".to_owned(),
        (state, _) if !info.spawnerr.is_empty() => format!("{}: {}", state.name(), info.spawnerr),
        (state, _) => format!("{} (not RUNNING)", state.name()),
    }
}
