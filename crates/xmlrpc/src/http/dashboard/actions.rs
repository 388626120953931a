//! The dashboard's buttons: `POST /ui/action/<verb>[/<namespec>]`, answered with JSON
//! `{"ok": bool, "message": text, ...}`. A fault of the daemon is `ok: false` in a 200,
//! as in XML-RPC; a path that names no action or no single process is 404.
//!
//! | verb | does |
//! | --- | --- |
//! | `start/<p>`, `stop/<p>`, `restart/<p>` | as `vigilctl start/stop/restart p`, answering once the process is `RUNNING` (after `startsecs`) or stopped, so the message says what happened |
//! | `clearlog/<p>` | empties the process's stdout and stderr logs |
//! | `startall`, `stopall`, `restartall` | the same for every process |
//! | `plan` | `update --dry-run`: the steps, and `id`, naming this plan |
//! | `update/<id>` | `update`, only while the dry run still gives the plan `id` names (else 409 with the new plan) |

use std::hash::{Hash as _, Hasher as _};

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::super::response::{Body, full, plain};
use crate::backend::{Backend, ProcessRef, ProcessResult, Scope, Target, UpdateReport};
use crate::fault::{Fault, FaultCode};

const JSON: &str = "application/json";

/// Runs the action `path` (what follows `/ui/action/`) names.
pub(crate) async fn run<B: Backend>(path: &str, backend: &B) -> Response<Body> {
    let Ok(path) = percent_encoding::percent_decode_str(path).decode_utf8() else {
        return plain(StatusCode::NOT_FOUND);
    };
    let (verb, argument) = path.split_once('/').unwrap_or((&path, ""));
    match (verb, argument) {
        ("startall", "") => many("started", backend.start_many(&Scope::All, true).await),
        ("stopall", "") => many("stopped", backend.stop_many(&Scope::All, true).await),
        ("restartall", "") => restarted(backend.restart_processes(None).await),
        ("plan", "") => match backend.update(true).await {
            Ok(report) => reply(StatusCode::OK, plan(&report, "update plan")),
            Err(fault) => failed(&fault),
        },
        ("update", id) if !id.is_empty() => update(id, backend).await,
        (_, "") => plain(StatusCode::NOT_FOUND),
        (verb, namespec) => {
            let Target::Process(process) = Target::parse(namespec) else {
                return plain(StatusCode::NOT_FOUND);
            };
            one(verb, &process, backend).await
        }
    }
}

/// An action on one process.
async fn one<B: Backend>(verb: &str, process: &ProcessRef, backend: &B) -> Response<Body> {
    let name = process.namespec();
    let (outcome, done) = match verb {
        "start" => (backend.start_process(process, true).await, "started"),
        "stop" => (backend.stop_process(process, true).await, "stopped"),
        "clearlog" => (backend.clear_process_logs(process).await, "log cleared"),
        "restart" => return restarted(backend.restart_processes(Some(process)).await),
        _ => return plain(StatusCode::NOT_FOUND),
    };
    match outcome {
        Ok(()) => {
            reply(StatusCode::OK, json!({ "ok": true, "message": format!("{name}: {done}") }))
        }
        Err(fault) => reply(
            StatusCode::OK,
            json!({ "ok": false, "message": format!("{name}: ERROR ({})", fault.fault_string()) }),
        ),
    }
}

/// The outcome of a group action: one line per process, `ok` when none failed.
fn many(done: &str, results: Result<Vec<ProcessResult>, Fault>) -> Response<Body> {
    let results = match results {
        Ok(results) => results,
        Err(fault) => return failed(&fault),
    };
    let ok = results.iter().all(|result| result.outcome.is_ok());
    let lines: Vec<String> = results.iter().map(|result| line(result, done)).collect();
    let message = if lines.is_empty() { "nothing to do".to_owned() } else { lines.join("\n") };
    reply(StatusCode::OK, json!({ "ok": ok, "message": message }))
}

/// The outcome of a restart (stop results, then start results): a stop that found the
/// process not running is no failure.
fn restarted(results: Result<Vec<ProcessResult>, Fault>) -> Response<Body> {
    let results = match results {
        Ok(results) => results,
        Err(fault) => return failed(&fault),
    };
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for result in &results {
        names.insert(result.process.namespec());
        match &result.outcome {
            Err(fault) if fault.code != FaultCode::NotRunning => {
                failures.push(line(result, "restarted"));
            }
            _ => {}
        }
    }
    let message = if !failures.is_empty() {
        failures.join("\n")
    } else if names.is_empty() {
        "nothing to do".to_owned()
    } else {
        let names: Vec<String> = names.into_iter().collect();
        format!("{}: restarted", names.join(", "))
    };
    reply(StatusCode::OK, json!({ "ok": failures.is_empty(), "message": message }))
}

fn line(result: &ProcessResult, done: &str) -> String {
    let name = result.process.namespec();
    match &result.outcome {
        Ok(()) => format!("{name}: {done}"),
        Err(fault) => format!("{name}: ERROR ({})", fault.fault_string()),
    }
}

/// Applies the update whose dry run gave the plan `id`.
async fn update<B: Backend>(id: &str, backend: &B) -> Response<Body> {
    let current = match backend.update(true).await {
        Ok(report) => report,
        Err(fault) => return failed(&fault),
    };
    if plan_id(&current) != id {
        let mut body = plan(&current, "the configuration changed since the plan was shown");
        body["ok"] = Value::Bool(false);
        return reply(StatusCode::CONFLICT, body);
    }
    match backend.update(false).await {
        Ok(report) => reply(StatusCode::OK, plan(&report, "update applied")),
        Err(fault) => failed(&fault),
    }
}

/// A dry run's or an update's report for the page, with the id that names its plan:
/// `{ok, message, id, dry_run, unknown_groups, steps: [{group, action, stopped, started,
/// changed_in_place, error}]}`.
fn plan(report: &UpdateReport, message: &str) -> Value {
    let ok =
        report.unknown_groups.is_empty() && report.steps.iter().all(|step| step.error.is_none());
    let steps: Vec<Value> = report
        .steps
        .iter()
        .map(|step| {
            json!({
                "group": step.group,
                "action": step.action,
                "stopped": step.stopped,
                "started": step.started,
                "changed_in_place": step.changed_in_place,
                "error": step.error.as_ref().map(ToString::to_string),
            })
        })
        .collect();
    json!({
        "ok": ok,
        "message": message,
        "id": plan_id(report),
        "dry_run": report.dry_run,
        "unknown_groups": report.unknown_groups,
        "steps": steps,
    })
}

/// Names a plan by its steps, so `update/<id>` applies only what was shown.
fn plan_id(report: &UpdateReport) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_string(&(&report.unknown_groups, &report.steps))
        .unwrap_or_default()
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn failed(fault: &Fault) -> Response<Body> {
    reply(StatusCode::OK, json!({ "ok": false, "message": fault.fault_string() }))
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = full(JSON, format!("{body}\n"));
    *response.status_mut() = status;
    response
}
