//! The Horust target: a run's programs written as Horust service files (one
//! TOML file per program in a services directory), and what the harness
//! needs to know about Horust's model.
//!
//! Each service restarts with strategy `always`, no backoff and no start
//! delay: Horust's settings for an immediate restart. Horust is one process;
//! programs are its direct children. It has no `startsecs`, `startretries`,
//! `autostart=false` or log rotation by count, so a spec asking for them is
//! refused rather than silently run differently.

use crate::config::{Program, Spec};
use anyhow::{Context, bail, ensure};
use serde::Serialize;
use std::path::Path;

/// How this target's model differs from vigild's and supervisord's, for the
/// report.
pub const MODEL_NOTES: &[&str] = &[
    "Horust: one process. Each program is a service file with `[restart] strategy = \"always\"`, \
     `backoff = \"0s\"`, `start-delay = \"0s\"`; stdout and stderr go to per-program files \
     that the child opens (no pipe through the supervisor); termination at its defaults \
     (SIGTERM, 5 s before SIGKILL).",
    "Horust: its supervisor loop runs every 300 ms (it polls, and each spawn runs on a \
     thread of its own), so start-up, restarts and shutdown move in steps of that tick, and \
     it wakes while idle. A restart takes several turns: the exit is reaped, \
     the service goes Failed, then Initial, then is run. It reaps at most 20 children per \
     turn, so stopping 5,000 takes over a minute: S9 runs it only with --s9-all-targets; and \
     it exits before it has reaped every program it stopped, leaving them to the harness \
     (counted under the table). It exits when it has no service, so S2 has no N=0 figure \
     for it.",
];

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Service {
    command: String,
    start_delay: &'static str,
    stdout: String,
    stderr: String,
    restart: Restart,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Restart {
    strategy: &'static str,
    backoff: &'static str,
    attempts: u32,
}

/// Refuses the options a Horust service file cannot express (Horust has no
/// startsecs: a service is started once spawned; it rotates by size only and
/// keeps every file).
fn check(p: &Program) -> anyhow::Result<()> {
    let name = &p.name;
    if let Some(option) = p.supervisord_only_option() {
        bail!("program {name}: Horust has no {option}");
    }
    ensure!(p.autostart != Some(false), "program {name}: Horust starts every service it loads");
    ensure!(
        shlex::split(&p.command).is_some_and(|w| !w.is_empty()),
        "program {name}: command '{}' is empty or badly quoted",
        p.command
    );
    Ok(())
}

/// The service file of one program.
pub fn service_toml(p: &Program) -> anyhow::Result<String> {
    check(p)?;
    let service = Service {
        command: p.command.clone(),
        start_delay: "0s",
        stdout: p.stdout_logfile.display().to_string(),
        stderr: p.stderr_logfile.display().to_string(),
        restart: Restart {
            strategy: if p.autorestart == Some(false) { "never" } else { "always" },
            backoff: "0s",
            attempts: 0,
        },
    };
    toml::to_string(&service).with_context(|| format!("program {}: writing TOML", p.name))
}

/// Writes `spec`'s programs as `NAME.toml` files in `dir` (created), and the
/// log directory the files name.
pub fn write_services(spec: &Spec, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(&spec.childlogdir)?;
    for p in &spec.programs {
        std::fs::write(dir.join(format!("{}.toml", p.name)), service_toml(p)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_file_restarts_always_at_once() {
        let spec = Spec::in_dir(Path::new("/r"));
        let mut p = spec.program("p000", "sleep 100000");
        p.startsecs = Some(0);
        p.autorestart = Some(true);
        let text = service_toml(&p).unwrap();
        let expected = "\
command = \"sleep 100000\"
start-delay = \"0s\"
stdout = \"/r/logs/p000.out\"
stderr = \"/r/logs/p000.err\"

[restart]
strategy = \"always\"
backoff = \"0s\"
attempts = 0
";
        assert_eq!(text, expected);
        // A command with quotes stays one TOML string Horust splits itself.
        let q = spec.program("q", "sh -c 'echo \"hi\"'");
        let parsed: toml::Table = toml::from_str(&service_toml(&q).unwrap()).unwrap();
        assert_eq!(parsed["command"].as_str(), Some("sh -c 'echo \"hi\"'"));
    }

    #[test]
    fn writes_one_file_per_program_and_refuses_what_horust_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = Spec::in_dir(dir.path());
        spec.programs.push(spec.program("p000", "sleep 100000"));
        spec.programs.push(spec.program("p001", "sleep 100000"));
        let services = dir.path().join("services");
        write_services(&spec, &services).unwrap();
        assert!(services.join("p000.toml").is_file() && services.join("p001.toml").is_file());
        assert!(dir.path().join("logs").is_dir());

        let refused = |edit: fn(&mut Program)| {
            let mut p = spec.program("p000", "sleep 100000");
            edit(&mut p);
            service_toml(&p).unwrap_err().to_string()
        };
        assert!(refused(|p| p.startsecs = Some(1)).contains("startsecs"));
        assert!(refused(|p| p.startretries = Some(3)).contains("startretries"));
        assert!(refused(|p| p.autostart = Some(false)).contains("every service"));
        assert!(refused(|p| p.stdout_logfile_maxbytes = Some("10MB".into())).contains("rotation"));
        assert!(refused(|p| p.command = String::new()).contains("empty"));
    }
}
