//! Vigil's health probes: the `ready_*` (readiness) and `live_*` (liveness) key
//! families of a program, at most one probe kind per family, with its timing.

use std::time::Duration;

use super::reader::Reader;
use crate::error::Diagnostics;
use crate::expand::Expansions;
use crate::model::*;
use crate::values;

/// `ready_` / `live_` key names without building a string per lookup.
fn probe_key(prefix: &str, k: &str) -> &'static str {
    let ready = prefix == "ready";
    match k {
        "tcp" if ready => "ready_tcp",
        "tcp" => "live_tcp",
        "http" if ready => "ready_http",
        "http" => "live_http",
        "http_status" if ready => "ready_http_status",
        "http_status" => "live_http_status",
        "exec" if ready => "ready_exec",
        "exec" => "live_exec",
        "log" if ready => "ready_log",
        "log" => "live_log",
        "notify" if ready => "ready_notify",
        "notify" => "live_notify",
        "period" if ready => "ready_period",
        "period" => "live_period",
        "timeout" if ready => "ready_timeout",
        "timeout" => "live_timeout",
        "initial_delay" if ready => "ready_initial_delay",
        "initial_delay" => "live_initial_delay",
        "retries" => "ready_retries",
        _ => "live_failure_threshold",
    }
}

/// Reads one probe family: `ready_*` or `live_*`. See config/supervisord.conf.
pub(super) fn probe(
    r: &mut Reader<'_>,
    prefix: &str,
    exp: &Expansions,
    d: &mut Diagnostics,
) -> Option<Probe> {
    let key = |k: &str| probe_key(prefix, k);
    let ready = prefix == "ready";
    let kinds = kinds(r, prefix, exp, d);
    let period = r.opt(key("period"), exp, d, values::duration);
    let timeout = r.opt(key("timeout"), exp, d, values::duration);
    let threshold_key = if ready { key("retries") } else { key("failure_threshold") };
    let threshold = r.opt(threshold_key, exp, d, |s| values::integer_in::<u32>(s, "a count"));
    let initial_delay = r.opt(key("initial_delay"), exp, d, values::duration);
    if kinds.len() > 1 {
        let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
        d.error(
            &r.section_place(),
            format!("only one {prefix} probe may be set, found {}", names.join(", ")),
        );
    }
    let Some((_, kind)) = kinds.into_iter().next() else {
        if period.is_some() || timeout.is_some() || threshold.is_some() || initial_delay.is_some() {
            let kinds = if ready {
                "ready_tcp, ready_http, ready_exec, ready_log or ready_notify"
            } else {
                "live_tcp, live_http or live_exec"
            };
            d.error(
                &r.section_place(),
                format!("{prefix}_* timing is set but no probe is ({kinds})"),
            );
        }
        return None;
    };
    let (default_period, default_threshold) =
        if ready { (Duration::from_secs(1), 30) } else { (Duration::from_secs(10), 3) };
    let period = period.unwrap_or(default_period);
    if period.is_zero() {
        d.error(&r.section_place(), format!("{} must be greater than zero", key("period")));
    }
    let failure_threshold = threshold.unwrap_or(default_threshold);
    if failure_threshold == 0 {
        d.error(&r.section_place(), format!("{threshold_key} must be at least 1"));
    }
    Some(Probe {
        kind,
        period,
        timeout: timeout.unwrap_or(Duration::from_secs(1)),
        failure_threshold,
        initial_delay: initial_delay.unwrap_or(Duration::ZERO),
    })
}

/// The probe kinds set in one family, each with the key that set it (more than
/// one is an error the caller reports).
fn kinds(
    r: &mut Reader<'_>,
    prefix: &str,
    exp: &Expansions,
    d: &mut Diagnostics,
) -> Vec<(&'static str, ProbeKind)> {
    let key = |k: &str| probe_key(prefix, k);
    let mut kinds: Vec<(&'static str, ProbeKind)> = Vec::new();
    let ready = prefix == "ready";
    if let Some((text, place)) = r.text(key("tcp"), exp, d) {
        match text.trim().rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>().ok().filter(|p| *p > 0) {
                Some(port) => {
                    let host = if host.is_empty() || host == "*" {
                        "127.0.0.1".to_string()
                    } else {
                        host.to_string()
                    };
                    kinds.push((key("tcp"), ProbeKind::Tcp { host, port }));
                }
                None => d.error(
                    &place,
                    format!("'{text}' has no valid port (host:port, port 1..65535)"),
                ),
            },
            None => d.error(&place, format!("'{text}' is not host:port")),
        }
    }
    let status = r.opt(key("http_status"), exp, d, |s| {
        values::integer_in::<u16>(s, "an HTTP status").and_then(|n| {
            if (100..=599).contains(&n) {
                Ok(n)
            } else {
                Err(format!("'{s}' is not an HTTP status (100..599)"))
            }
        })
    });
    if let Some((text, place)) = r.text(key("http"), exp, d) {
        let url = text.trim().to_string();
        if url.starts_with("http://") || url.starts_with("https://") {
            kinds
                .push((key("http"), ProbeKind::Http { url, expect_status: status.unwrap_or(200) }));
        } else {
            d.error(&place, format!("'{url}' is not an http:// or https:// URL"));
        }
    } else if status.is_some() {
        d.error(
            &r.section_place(),
            format!("{} is set but {} is not", key("http_status"), key("http")),
        );
    }
    if let Some((argv, _)) = r.command(key("exec"), exp, d) {
        kinds.push((key("exec"), ProbeKind::Exec { command: argv }));
    }
    if let Some((text, place)) = r.text(key("log"), exp, d) {
        if !ready {
            d.error(&place, "log probes are only supported for readiness (ready_log)");
        } else if text.is_empty() {
            d.error(&place, "the pattern is empty");
        } else {
            kinds.push((key("log"), ProbeKind::Log { pattern: text }));
        }
    }
    if let Some((text, place)) = r.text(key("notify"), exp, d) {
        match values::boolean(&text) {
            Ok(true) if ready => kinds.push((key("notify"), ProbeKind::Notify)),
            Ok(true) => {
                d.error(&place, "notify probes are only supported for readiness (ready_notify)")
            }
            Ok(false) => {}
            Err(message) => d.error(&place, message),
        }
    }
    kinds
}
