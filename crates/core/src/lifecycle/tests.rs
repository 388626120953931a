//! Table tests of every edge of the state machine, and a check that the table in
//! the module documentation is the one tested here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use vigil_config::{AutoRestart, BackoffConfig, BackoffKind};

use super::*;

const PID: u32 = 100;

fn config() -> LifecycleConfig {
    LifecycleConfig {
        name: "x".to_owned(),
        autostart: true,
        startsecs: Duration::from_secs(1),
        startretries: 3,
        autorestart: AutoRestart::Unexpected,
        exitcodes: vec![0],
        stopsignal: libc::SIGTERM,
        stopwaitsecs: Duration::from_secs(10),
        stopasgroup: false,
        killasgroup: false,
        backoff: linear(),
        readiness: false,
        dependencies: false,
        essential: false,
    }
}

fn linear() -> BackoffConfig {
    BackoffConfig {
        kind: BackoffKind::Linear,
        initial: Duration::from_secs(1),
        max: None,
        multiplier: 2.0,
        jitter: 0.0,
        reset_after: None,
    }
}

/// A lifecycle plus a virtual clock and the timers it armed.
struct Sim {
    lc: Lifecycle,
    now: Instant,
    start: Instant,
    due: HashMap<TimerKind, (Timer, Instant)>,
    spawns: u32,
    /// Answer RestartWanted with RestartApproved and AwaitDependencies with
    /// DependenciesMet at once, as a group without budget and met dependencies do.
    auto: bool,
}

impl Sim {
    fn new(config: LifecycleConfig) -> Sim {
        let now = Instant::now();
        Sim {
            lc: Lifecycle::new(config, 7),
            now,
            start: now,
            due: HashMap::new(),
            spawns: 0,
            auto: true,
        }
    }

    fn step(&mut self, event: Event) -> Vec<String> {
        let effects = self.lc.step(event, self.now);
        let mut answers = Vec::new();
        for effect in &effects {
            match effect {
                Effect::Schedule { timer, after } => {
                    self.due.insert(timer.kind, (*timer, self.now + *after));
                }
                Effect::Spawn => self.spawns += 1,
                Effect::RestartWanted { .. } if self.auto => answers.push(Event::RestartApproved),
                Effect::AwaitDependencies if self.auto => answers.push(Event::DependenciesMet),
                _ => {}
            }
        }
        let mut briefs: Vec<String> = effects.iter().map(brief).collect();
        for answer in answers {
            briefs.extend(self.step(answer));
        }
        briefs
    }

    /// Advances the clock to when the armed timer of `kind` is due and fires it.
    fn fire(&mut self, kind: TimerKind) -> Vec<String> {
        let (timer, due) = self.due.remove(&kind).expect("timer was armed");
        self.now = self.now.max(due);
        self.step(Event::Timer(timer))
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn state(&self) -> ProcessState {
        self.lc.state()
    }
}

fn brief(effect: &Effect) -> String {
    match effect {
        Effect::StateChanged { from, to } => format!("{from} -> {to}"),
        Effect::Spawn => "spawn".to_owned(),
        Effect::Schedule { timer, after } => format!("arm {:?} {:?}", timer.kind, after),
        Effect::Signal { pid, sig, group, .. } => {
            format!("signal {} to {}{}", signal_name(*sig), if *group { "group " } else { "" }, pid)
        }
        Effect::Log { level, message } => format!("{level:?} {message}"),
        Effect::Refused(refusal) => format!("refused {refusal:?}"),
        Effect::AwaitDependencies => "await dependencies".to_owned(),
        Effect::RestartWanted { cause } => format!("want restart {cause:?}"),
        Effect::Ended { fatal, status } => format!(
            "ended {} {}",
            if *fatal { "fatal" } else { "exited" },
            status.map_or("without an exit".to_owned(), |s| s.describe())
        ),
    }
}

fn exited(code: i32) -> Event {
    Event::Exited { pid: PID, status: ExitStatus::Code(code) }
}

fn killed(sig: i32) -> Event {
    Event::Exited { pid: PID, status: ExitStatus::Signal(sig) }
}

/// Drives a fresh machine into `state` the way it happens in real life.
fn reach(sim: &mut Sim, state: ProcessState) {
    match state {
        ProcessState::Stopped => {}
        ProcessState::Starting => {
            sim.step(Event::StartRequested);
            sim.step(Event::Spawned { pid: PID });
        }
        ProcessState::Running => {
            reach(sim, ProcessState::Starting);
            if sim.lc.config.readiness {
                sim.step(Event::ReadinessPassed);
            } else {
                sim.fire(TimerKind::StartSecs);
            }
        }
        ProcessState::Backoff => {
            reach(sim, ProcessState::Starting);
            sim.step(exited(1));
        }
        ProcessState::Stopping => {
            reach(sim, ProcessState::Running);
            sim.step(Event::StopRequested);
        }
        ProcessState::Exited => {
            reach(sim, ProcessState::Running);
            sim.step(exited(0));
        }
        ProcessState::Fatal => {
            sim.step(Event::StartRequested);
            loop {
                sim.step(Event::SpawnFailed { error: "can't find command 'x'".to_owned() });
                if sim.state() != ProcessState::Backoff {
                    break;
                }
                sim.fire(TimerKind::Backoff);
            }
        }
        ProcessState::Unknown => {
            reach(sim, ProcessState::Running);
            sim.step(Event::SignalRequested { sig: libc::SIGHUP });
            sim.step(Event::SignalFailed {
                purpose: SignalPurpose::User,
                error: "EPERM".to_owned(),
            });
        }
    }
    assert_eq!(sim.state(), state, "setup reached the wrong state");
}

/// One edge: the row of the module table plus the effects it must produce.
struct Row {
    from: &'static str,
    event: &'static str,
    condition: &'static str,
    to: &'static str,
    effects: &'static [&'static str],
}

const SUCCESS: &str =
    "Info success: x entered RUNNING state, process has stayed up for > than 1 seconds (startsecs)";

const ROWS: &[Row] = &[
    Row {
        from: "STOPPED",
        event: "Autostart",
        condition: "autostart=true, never started",
        to: "STARTING",
        effects: &["STOPPED -> STARTING", "spawn"],
    },
    Row {
        from: "STOPPED",
        event: "Autostart",
        condition: "started before",
        to: "STOPPED",
        effects: &[],
    },
    Row {
        from: "STOPPED",
        event: "StartRequested",
        condition: "",
        to: "STARTING",
        effects: &["STOPPED -> STARTING", "spawn"],
    },
    Row {
        from: "EXITED",
        event: "StartRequested",
        condition: "",
        to: "STARTING",
        effects: &["EXITED -> STARTING", "spawn"],
    },
    Row {
        from: "FATAL",
        event: "StartRequested",
        condition: "",
        to: "STARTING",
        effects: &["FATAL -> STARTING", "spawn"],
    },
    Row {
        from: "STARTING",
        event: "Spawned",
        condition: "",
        to: "STARTING",
        effects: &["Info spawned: 'x' with pid 200", "arm StartSecs 1s"],
    },
    Row {
        from: "STARTING",
        event: "SpawnFailed",
        condition: "retries left",
        to: "BACKOFF",
        effects: &[
            "Info spawnerr: can't find command 'x'",
            "STARTING -> BACKOFF",
            "arm Backoff 1s",
        ],
    },
    Row {
        from: "STARTING",
        event: "SpawnFailed",
        condition: "startretries=0",
        to: "BACKOFF -> FATAL",
        effects: &[
            "Info spawnerr: can't find command 'x'",
            "STARTING -> BACKOFF",
            "BACKOFF -> FATAL",
            "Info gave up: x entered FATAL state, too many start retries too quickly",
            "ended fatal without an exit",
        ],
    },
    Row {
        from: "STARTING",
        event: "StartSecsElapsed",
        condition: "",
        to: "RUNNING",
        effects: &["STARTING -> RUNNING", SUCCESS],
    },
    Row {
        from: "STARTING",
        event: "StartSecsElapsed",
        condition: "stale token",
        to: "STARTING",
        effects: &[],
    },
    Row {
        from: "STARTING",
        event: "Exited",
        condition: "too quickly",
        to: "BACKOFF",
        effects: &[
            "STARTING -> BACKOFF",
            "Warn exited: x (exit status 1; not expected)",
            "arm Backoff 1s",
        ],
    },
    Row {
        from: "STARTING",
        event: "Exited",
        condition: "too quickly, code in exitcodes",
        to: "BACKOFF",
        effects: &[
            "STARTING -> BACKOFF",
            "Warn exited: x (exit status 0; not expected)",
            "arm Backoff 1s",
        ],
    },
    Row {
        from: "STARTING",
        event: "Exited",
        condition: "too quickly, retries exhausted",
        to: "BACKOFF -> FATAL",
        effects: &[
            "STARTING -> BACKOFF",
            "Warn exited: x (exit status 1; not expected)",
            "BACKOFF -> FATAL",
            "Info gave up: x entered FATAL state, too many start retries too quickly",
            "ended fatal exit status 1",
        ],
    },
    Row {
        from: "STARTING",
        event: "Exited",
        condition: "after startsecs, before the timer",
        to: "RUNNING -> EXITED",
        effects: &[
            "STARTING -> RUNNING",
            "RUNNING -> EXITED",
            "Info exited: x (exit status 0; expected)",
        ],
    },
    Row {
        from: "STARTING",
        event: "StopRequested",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Debug killing x (pid 100) with signal SIGTERM",
            "STARTING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
            "Info waiting for x to stop",
            "arm StopReport 2s",
        ],
    },
    Row {
        from: "STARTING",
        event: "ShutdownRequested",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Debug killing x (pid 100) with signal SIGTERM",
            "STARTING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "BACKOFF",
        event: "BackoffElapsed",
        condition: "",
        to: "BACKOFF",
        effects: &["want restart Retry"],
    },
    Row {
        from: "BACKOFF",
        event: "RestartApproved",
        condition: "start retry",
        to: "STARTING",
        effects: &["BACKOFF -> STARTING", "spawn"],
    },
    Row {
        from: "BACKOFF",
        event: "BackoffElapsed",
        condition: "delayed restart",
        to: "STARTING",
        effects: &["BACKOFF -> STARTING", "spawn"],
    },
    Row {
        from: "BACKOFF",
        event: "StopRequested",
        condition: "",
        to: "STOPPED",
        effects: &["Debug Attempted to kill x, which is in BACKOFF state.", "BACKOFF -> STOPPED"],
    },
    Row {
        from: "BACKOFF",
        event: "ShutdownRequested",
        condition: "",
        to: "FATAL",
        effects: &["BACKOFF -> FATAL"],
    },
    Row {
        from: "RUNNING",
        event: "Exited",
        condition: "code in exitcodes, autorestart=unexpected",
        to: "EXITED",
        effects: &["RUNNING -> EXITED", "Info exited: x (exit status 0; expected)"],
    },
    Row {
        from: "RUNNING",
        event: "Exited",
        condition: "code not in exitcodes, autorestart=false",
        to: "EXITED",
        effects: &["RUNNING -> EXITED", "Warn exited: x (exit status 2; not expected)"],
    },
    Row {
        from: "RUNNING",
        event: "Exited",
        condition: "code not in exitcodes, autorestart=unexpected",
        to: "EXITED",
        effects: &[
            "RUNNING -> EXITED",
            "Warn exited: x (exit status 2; not expected)",
            "want restart Exited",
        ],
    },
    Row {
        from: "RUNNING",
        event: "Exited",
        condition: "killed by signal, autorestart=unexpected",
        to: "EXITED",
        effects: &[
            "RUNNING -> EXITED",
            "Warn exited: x (terminated by SIGKILL; not expected)",
            "want restart Exited",
        ],
    },
    Row {
        from: "RUNNING",
        event: "Exited",
        condition: "code in exitcodes, autorestart=true",
        to: "EXITED",
        effects: &[
            "RUNNING -> EXITED",
            "Info exited: x (exit status 0; expected)",
            "want restart Exited",
        ],
    },
    Row {
        from: "RUNNING",
        event: "Exited",
        condition: "autorestart=true, shutting down",
        to: "EXITED",
        effects: &["RUNNING -> EXITED", "Info exited: x (exit status 0; expected)"],
    },
    Row { from: "RUNNING", event: "Exited", condition: "stale pid", to: "RUNNING", effects: &[] },
    Row {
        from: "RUNNING",
        event: "DaemonShuttingDown",
        condition: "",
        to: "RUNNING",
        effects: &[],
    },
    Row {
        from: "RUNNING",
        event: "StopRequested",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Debug killing x (pid 100) with signal SIGTERM",
            "RUNNING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
            "Info waiting for x to stop",
            "arm StopReport 2s",
        ],
    },
    Row {
        from: "RUNNING",
        event: "ShutdownRequested",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Debug killing x (pid 100) with signal SIGTERM",
            "RUNNING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "RUNNING",
        event: "SignalRequested",
        condition: "",
        to: "RUNNING",
        effects: &["Debug sending x (pid 100) sig SIGHUP", "signal SIGHUP to 100"],
    },
    Row {
        from: "RUNNING",
        event: "SignalFailed",
        condition: "signal request",
        to: "UNKNOWN",
        effects: &["Critical unknown problem sending sig x (100):EPERM", "RUNNING -> UNKNOWN"],
    },
    Row {
        from: "STOPPING",
        event: "StopTimeout",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Warn killing 'x' (100) with SIGKILL",
            "Debug killing x (pid 100) process group with signal SIGKILL",
            "arm StopTimeout 10s",
            "signal SIGKILL to group 100",
        ],
    },
    Row {
        from: "STOPPING",
        event: "StopReport",
        condition: "",
        to: "STOPPING",
        effects: &["Info waiting for x to stop", "arm StopReport 2s"],
    },
    Row {
        from: "STOPPING",
        event: "Exited",
        condition: "code in exitcodes",
        to: "STOPPED",
        effects: &["STOPPING -> STOPPED", "Info stopped: x (exit status 0)"],
    },
    Row {
        from: "STOPPING",
        event: "Exited",
        condition: "killed by signal",
        to: "STOPPED",
        effects: &["STOPPING -> STOPPED", "Warn stopped: x (terminated by SIGTERM)"],
    },
    Row {
        from: "STOPPING",
        event: "SignalFailed",
        condition: "stop signal",
        to: "UNKNOWN",
        effects: &["Critical unknown problem killing x (100):EPERM", "STOPPING -> UNKNOWN"],
    },
    Row {
        from: "STOPPING",
        event: "SignalRequested",
        condition: "",
        to: "STOPPING",
        effects: &["Debug sending x (pid 100) sig SIGHUP", "signal SIGHUP to 100"],
    },
    Row {
        from: "UNKNOWN",
        event: "Exited",
        condition: "",
        to: "EXITED",
        effects: &["UNKNOWN -> EXITED", "Warn exited: x (exit status 2; not expected)"],
    },
    Row {
        from: "RUNNING",
        event: "StartRequested",
        condition: "refused: ALREADY_STARTED",
        to: "RUNNING",
        effects: &["refused AlreadyStarted"],
    },
    Row {
        from: "STARTING",
        event: "StartRequested",
        condition: "refused: ALREADY_STARTED",
        to: "STARTING",
        effects: &["refused AlreadyStarted"],
    },
    Row {
        from: "BACKOFF",
        event: "StartRequested",
        condition: "refused: ALREADY_STARTED",
        to: "BACKOFF",
        effects: &["refused AlreadyStarted"],
    },
    Row {
        from: "STOPPING",
        event: "StartRequested",
        condition: "refused: stopping",
        to: "STOPPING",
        effects: &["refused Stopping"],
    },
    Row {
        from: "UNKNOWN",
        event: "StartRequested",
        condition: "refused: UNKNOWN state",
        to: "UNKNOWN",
        effects: &["refused UnknownState"],
    },
    Row {
        from: "EXITED",
        event: "StartRequested",
        condition: "refused: shutting down",
        to: "EXITED",
        effects: &["refused ShuttingDown"],
    },
    Row {
        from: "STOPPED",
        event: "StopRequested",
        condition: "refused: NOT_RUNNING",
        to: "STOPPED",
        effects: &["refused NotRunning"],
    },
    Row {
        from: "STOPPING",
        event: "StopRequested",
        condition: "refused: NOT_RUNNING",
        to: "STOPPING",
        effects: &["refused NotRunning"],
    },
    Row {
        from: "EXITED",
        event: "SignalRequested",
        condition: "refused: NOT_RUNNING",
        to: "EXITED",
        effects: &["refused NotRunning"],
    },
    Row {
        from: "STOPPED",
        event: "StartRequested",
        condition: "with dependencies",
        to: "STARTING",
        effects: &["STOPPED -> STARTING", "await dependencies"],
    },
    Row {
        from: "STARTING",
        event: "DependenciesMet",
        condition: "waiting for dependencies",
        to: "STARTING",
        effects: &["spawn"],
    },
    Row {
        from: "STARTING",
        event: "DependenciesMet",
        condition: "waiting, daemon shutting down",
        to: "STOPPED",
        effects: &["STARTING -> STOPPED"],
    },
    Row {
        from: "STARTING",
        event: "StopRequested",
        condition: "waiting for dependencies",
        to: "STOPPED",
        effects: &["STARTING -> STOPPED"],
    },
    Row {
        from: "STARTING",
        event: "ShutdownRequested",
        condition: "waiting for dependencies",
        to: "STOPPED",
        effects: &["STARTING -> STOPPED"],
    },
    Row {
        from: "RUNNING",
        event: "DependencyLost",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Info stopping x: a dependency is not available",
            "Debug killing x (pid 100) with signal SIGTERM",
            "RUNNING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "STOPPING",
        event: "Exited",
        condition: "dependency lost",
        to: "EXITED -> STARTING",
        effects: &[
            "STOPPING -> EXITED",
            "Warn stopped: x (terminated by SIGTERM)",
            "EXITED -> STARTING",
            "await dependencies",
        ],
    },
    Row {
        from: "STOPPING",
        event: "StopRequested",
        condition: "stop for a dependency",
        to: "STOPPING",
        effects: &[],
    },
    Row {
        from: "BACKOFF",
        event: "DependencyLost",
        condition: "with dependencies",
        to: "STARTING",
        effects: &["BACKOFF -> STARTING", "await dependencies"],
    },
    Row {
        from: "STARTING",
        event: "Spawned",
        condition: "readiness probe",
        to: "STARTING",
        effects: &["Info spawned: 'x' with pid 200"],
    },
    Row {
        from: "STARTING",
        event: "ReadinessPassed",
        condition: "",
        to: "RUNNING",
        effects: &[
            "STARTING -> RUNNING",
            "Info success: x entered RUNNING state, readiness probe passed",
        ],
    },
    Row {
        from: "STARTING",
        event: "Exited",
        condition: "readiness probe, after startsecs",
        to: "BACKOFF",
        effects: &[
            "STARTING -> BACKOFF",
            "Warn exited: x (exit status 0; not expected)",
            "arm Backoff 1s",
        ],
    },
    Row {
        from: "STARTING",
        event: "ReadinessFailed",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Warn readiness probe of x failed",
            "Debug killing x (pid 100) with signal SIGTERM",
            "STARTING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "STOPPING",
        event: "Exited",
        condition: "readiness failed",
        to: "BACKOFF",
        effects: &[
            "STOPPING -> BACKOFF",
            "Warn stopped: x (terminated by SIGTERM)",
            "arm Backoff 1s",
        ],
    },
    Row {
        from: "RUNNING",
        event: "LivenessFailed",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Warn liveness probe of x failed; restarting it",
            "Debug killing x (pid 100) with signal SIGTERM",
            "RUNNING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "STOPPING",
        event: "Exited",
        condition: "liveness failed",
        to: "EXITED",
        effects: &[
            "STOPPING -> EXITED",
            "Warn stopped: x (terminated by SIGTERM)",
            "want restart Unhealthy",
        ],
    },
    Row {
        from: "RUNNING",
        event: "MemoryThresholdPassed",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Warn x passed its memory_restart_threshold; restarting it",
            "Debug killing x (pid 100) with signal SIGTERM",
            "RUNNING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "EXITED",
        event: "RestartApproved",
        condition: "no restart backoff",
        to: "STARTING",
        effects: &["EXITED -> STARTING", "spawn"],
    },
    Row {
        from: "EXITED",
        event: "RestartApproved",
        condition: "backoff_reset_after, unstable run",
        to: "BACKOFF",
        effects: &[
            "EXITED -> BACKOFF",
            "Info restarting x in 1.000s (restart 1 since its last stable run)",
            "arm Backoff 1s",
        ],
    },
    Row {
        from: "EXITED",
        event: "RestartDenied",
        condition: "",
        to: "FATAL",
        effects: &[
            "EXITED -> FATAL",
            "Info gave up: x entered FATAL state, restart budget of its group exhausted",
        ],
    },
    Row {
        from: "RUNNING",
        event: "GroupFatal",
        condition: "",
        to: "STOPPING",
        effects: &[
            "Debug killing x (pid 100) with signal SIGTERM",
            "RUNNING -> STOPPING",
            "arm StopTimeout 10s",
            "signal SIGTERM to 100",
        ],
    },
    Row {
        from: "STOPPING",
        event: "Exited",
        condition: "group fatal",
        to: "FATAL",
        effects: &["STOPPING -> FATAL", "Warn stopped: x (terminated by SIGTERM)"],
    },
    Row {
        from: "BACKOFF",
        event: "GroupFatal",
        condition: "",
        to: "FATAL",
        effects: &[
            "BACKOFF -> FATAL",
            "Info gave up: x entered FATAL state, restart budget of its group exhausted",
        ],
    },
];

/// Sets up the row's starting state and condition, then applies its event.
fn run_row(row: &Row) -> (Vec<String>, ProcessState) {
    let from = ProcessState::from_name(row.from).expect("state name");
    let mut config = config();
    match row.condition {
        "startretries=0" | "too quickly, retries exhausted" => config.startretries = 0,
        "code not in exitcodes, autorestart=false" => config.autorestart = AutoRestart::False,
        "code in exitcodes, autorestart=true" | "autorestart=true, shutting down" => {
            config.autorestart = AutoRestart::True
        }
        "with dependencies"
        | "waiting for dependencies"
        | "waiting, daemon shutting down"
        | "dependency lost"
        | "stop for a dependency" => config.dependencies = true,
        "readiness probe" | "readiness probe, after startsecs" | "readiness failed" => {
            config.readiness = true
        }
        _ => {}
    }
    if row.event == "ReadinessPassed" || row.event == "ReadinessFailed" {
        config.readiness = true;
    }
    if row.condition == "backoff_reset_after, unstable run" {
        config.backoff.reset_after = Some(Duration::from_secs(60));
    }
    if row.from == "STOPPING" && row.event == "StopTimeout" {
        config.killasgroup = true;
    }
    let mut sim = Sim::new(config);
    if row.from == "EXITED" && !row.event.starts_with("Restart") {
        sim.lc.config.autorestart = AutoRestart::False;
    }
    if row.condition == "waiting for dependencies"
        || row.condition == "waiting, daemon shutting down"
    {
        // Setup stops short of the spawn: the gate is closed.
        sim.auto = false;
        sim.step(Event::StartRequested);
        if row.condition == "waiting, daemon shutting down" {
            sim.step(Event::DaemonShuttingDown);
        }
    } else {
        reach(&mut sim, from);
    }
    // From here on, every answer is the row's own business.
    sim.auto = false;
    let event = match (row.event, row.condition) {
        ("StartRequested", "with dependencies") => Event::StartRequested,
        ("DependenciesMet", _) => Event::DependenciesMet,
        ("DependencyLost", _) => Event::DependencyLost,
        ("ReadinessPassed", _) => Event::ReadinessPassed,
        ("ReadinessFailed", _) => Event::ReadinessFailed,
        ("LivenessFailed", _) => Event::LivenessFailed,
        ("MemoryThresholdPassed", _) => Event::MemoryThresholdPassed,
        ("GroupFatal", _) => Event::GroupFatal,
        ("RestartDenied", _)
        | ("RestartApproved", "no restart backoff" | "backoff_reset_after, unstable run") => {
            // EXITED by a crash after RUNNING, its restart asked for.
            let mut fresh = Sim::new(sim.lc.config.clone());
            reach(&mut fresh, ProcessState::Running);
            fresh.auto = false;
            fresh.step(exited(2));
            sim = fresh;
            if row.event == "RestartDenied" { Event::RestartDenied } else { Event::RestartApproved }
        }
        ("RestartApproved", "start retry") => {
            sim.fire(TimerKind::Backoff);
            Event::RestartApproved
        }
        ("BackoffElapsed", "delayed restart") => {
            let mut config = sim.lc.config.clone();
            config.backoff.reset_after = Some(Duration::from_secs(60));
            let mut fresh = Sim::new(config);
            reach(&mut fresh, ProcessState::Running);
            fresh.step(exited(2));
            assert_eq!(fresh.state(), ProcessState::Backoff);
            fresh.auto = false;
            return fire(fresh, TimerKind::Backoff);
        }
        ("StopRequested", "stop for a dependency") => {
            let mut fresh = Sim::new(sim.lc.config.clone());
            reach(&mut fresh, ProcessState::Running);
            fresh.auto = false;
            fresh.step(Event::DependencyLost);
            sim = fresh;
            Event::StopRequested
        }
        ("Exited", "dependency lost" | "readiness failed" | "liveness failed" | "group fatal") => {
            let mut fresh = Sim::new(sim.lc.config.clone());
            let (state, cause) = match row.condition {
                "dependency lost" => (ProcessState::Running, Event::DependencyLost),
                "readiness failed" => (ProcessState::Starting, Event::ReadinessFailed),
                "liveness failed" => (ProcessState::Running, Event::LivenessFailed),
                _ => (ProcessState::Running, Event::GroupFatal),
            };
            reach(&mut fresh, state);
            fresh.auto = false;
            fresh.step(cause);
            sim = fresh;
            killed(libc::SIGTERM)
        }
        ("Exited", "readiness probe, after startsecs") => {
            sim.advance(Duration::from_secs(2));
            exited(0)
        }
        ("Autostart", "started before") => {
            // Started once and stopped by hand: autostart must not apply again.
            let mut fresh = Sim::new(sim.lc.config.clone());
            reach(&mut fresh, ProcessState::Running);
            fresh.step(Event::StopRequested);
            fresh.step(killed(libc::SIGTERM));
            sim = fresh;
            Event::Autostart
        }
        ("Autostart", _) => Event::Autostart,
        ("StartRequested", "refused: shutting down") => {
            sim.step(Event::ShutdownRequested);
            Event::StartRequested
        }
        ("StartRequested", _) => Event::StartRequested,
        ("StopRequested", _) => Event::StopRequested,
        ("ShutdownRequested", _) => Event::ShutdownRequested,
        ("DaemonShuttingDown", _) => Event::DaemonShuttingDown,
        ("SignalRequested", _) => Event::SignalRequested { sig: libc::SIGHUP },
        ("Spawned", _) => {
            // A fresh spawn whose pid differs from the setup's, to show it is recorded.
            let mut fresh = Sim::new(sim.lc.config.clone());
            fresh.auto = false;
            fresh.step(Event::StartRequested);
            sim = fresh;
            Event::Spawned { pid: 200 }
        }
        ("SpawnFailed", _) => {
            let mut fresh = Sim::new(sim.lc.config.clone());
            fresh.step(Event::StartRequested);
            sim = fresh;
            Event::SpawnFailed { error: "can't find command 'x'".to_owned() }
        }
        ("StartSecsElapsed", "stale token") => {
            let stale = sim.lc.armed(TimerKind::StartSecs).expect("armed");
            sim.step(Event::StopRequested);
            sim.step(killed(libc::SIGTERM));
            sim.step(Event::StartRequested);
            sim.step(Event::Spawned { pid: PID });
            Event::Timer(stale)
        }
        ("StartSecsElapsed", _) => return fire(sim, TimerKind::StartSecs),
        ("BackoffElapsed", _) => return fire(sim, TimerKind::Backoff),
        ("StopTimeout", _) => return fire(sim, TimerKind::StopTimeout),
        ("StopReport", _) => return fire(sim, TimerKind::StopReport),
        ("Exited", "too quickly, code in exitcodes") => exited(0),
        ("Exited", "too quickly" | "too quickly, retries exhausted") => exited(1),
        ("Exited", "after startsecs, before the timer") => {
            sim.advance(Duration::from_secs(2));
            exited(0)
        }
        (
            "Exited",
            "code in exitcodes, autorestart=unexpected" | "code in exitcodes, autorestart=true",
        ) => exited(0),
        ("Exited", "autorestart=true, shutting down") => {
            // The daemon is shutting down but has not reached this group yet.
            sim.step(Event::DaemonShuttingDown);
            exited(0)
        }
        ("Exited", "killed by signal, autorestart=unexpected") => killed(libc::SIGKILL),
        ("Exited", "code in exitcodes") => exited(0),
        ("Exited", "killed by signal") => killed(libc::SIGTERM),
        ("Exited", "stale pid") => Event::Exited { pid: PID + 1, status: ExitStatus::Code(1) },
        ("Exited", _) => exited(2),
        ("SignalFailed", "stop signal") => {
            Event::SignalFailed { purpose: SignalPurpose::Stop, error: "EPERM".to_owned() }
        }
        ("SignalFailed", _) => {
            Event::SignalFailed { purpose: SignalPurpose::User, error: "EPERM".to_owned() }
        }
        (other, _) => panic!("no driver for event {other}"),
    };
    let effects = sim.step(event);
    (effects, sim.state())
}

fn fire(mut sim: Sim, kind: TimerKind) -> (Vec<String>, ProcessState) {
    let effects = sim.fire(kind);
    (effects, sim.state())
}

#[test]
fn every_edge_produces_its_state_and_effects() {
    for row in ROWS {
        let (effects, state) = run_row(row);
        let label = format!("{} --{} [{}]-->", row.from, row.event, row.condition);
        let final_name = row.to.rsplit(" -> ").next().expect("to");
        assert_eq!(state.name(), final_name, "{label} final state");
        assert_eq!(effects, row.effects, "{label} effects");
        // The intermediate states of `A -> B` rows appear as state changes in order.
        let path: Vec<&str> = row.to.split(" -> ").collect();
        let changes: Vec<&String> = effects.iter().filter(|e| e.contains(" -> ")).collect();
        if path.len() > 1 {
            assert_eq!(changes.len(), path.len(), "{label} path");
        }
    }
}

#[test]
fn doc_table_matches_transition_function() {
    let source = include_str!("../lifecycle.rs");
    let table = source
        .split("<!-- lifecycle-table-begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- lifecycle-table-end -->").next())
        .expect("table markers in the module doc");
    let doc_rows: Vec<Vec<String>> = table
        .lines()
        .map(|line| line.trim_start_matches("//!").trim())
        .filter(|line| {
            line.starts_with('|') && !line.starts_with("|--") && !line.starts_with("| from")
        })
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().to_owned()).collect())
        .collect();
    let tested: Vec<Vec<String>> = ROWS
        .iter()
        .map(|row| vec![row.from.into(), row.event.into(), row.condition.into(), row.to.into()])
        .collect();
    assert_eq!(doc_rows, tested);
    // Every state of the machine appears as a source of some edge.
    for state in ProcessState::ALL {
        assert!(ROWS.iter().any(|row| row.from == state.name()), "no edge from {state}");
    }
}

#[test]
fn crash_loop_spawns_startretries_plus_one_times_with_linear_waits() {
    // supervisord 4.3.0 with /bin/false and startretries=3: spawns at +0, +1, +3,
    // +6 s, then FATAL.
    let mut sim = Sim::new(config());
    let mut spawn_times = Vec::new();
    sim.step(Event::StartRequested);
    loop {
        spawn_times.push(sim.elapsed());
        sim.step(Event::Spawned { pid: PID });
        sim.step(exited(1));
        if sim.state() == ProcessState::Fatal {
            break;
        }
        assert_eq!(sim.state(), ProcessState::Backoff);
        sim.fire(TimerKind::Backoff);
    }
    let secs: Vec<u64> = spawn_times.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [0, 1, 3, 6]);
    assert_eq!(sim.spawns, 4);
    assert_eq!(sim.lc.backoff(), 0, "give_up resets the counter");
    assert_eq!(sim.lc.spawnerr(), Some(EXITED_TOO_QUICKLY));
}

#[test]
fn startretries_zero_means_a_single_attempt() {
    let mut config = config();
    config.startretries = 0;
    let mut sim = Sim::new(config);
    sim.step(Event::StartRequested);
    sim.step(Event::Spawned { pid: PID });
    sim.step(exited(1));
    assert_eq!(sim.state(), ProcessState::Fatal);
    assert_eq!(sim.spawns, 1);
}

#[test]
fn an_essential_program_is_not_restarted_and_reports_its_end() {
    let mut config = config();
    config.essential = true;
    config.autorestart = AutoRestart::True;
    let mut sim = Sim::new(config);
    sim.step(Event::StartRequested);
    sim.step(Event::Spawned { pid: PID });
    sim.fire(TimerKind::StartSecs);
    let effects = sim.step(killed(libc::SIGKILL));
    assert_eq!(sim.state(), ProcessState::Exited);
    assert!(effects.contains(&"ended exited terminated by SIGKILL".to_owned()), "{effects:?}");
    assert!(!effects.iter().any(|e| e.starts_with("want restart")), "{effects:?}");
    assert_eq!(sim.spawns, 1);
}

#[test]
fn an_essential_exit_during_the_shutdown_is_not_reported() {
    let mut config = config();
    config.essential = true;
    let mut sim = Sim::new(config);
    sim.step(Event::StartRequested);
    sim.step(Event::Spawned { pid: PID });
    sim.fire(TimerKind::StartSecs);
    sim.step(Event::DaemonShuttingDown);
    let effects = sim.step(exited(3));
    assert!(!effects.iter().any(|e| e.starts_with("ended")), "{effects:?}");
}

#[test]
fn giving_up_reports_the_last_exit() {
    let mut config = config();
    config.startretries = 1;
    let mut sim = Sim::new(config);
    sim.step(Event::StartRequested);
    sim.step(Event::Spawned { pid: PID });
    sim.step(exited(4));
    sim.fire(TimerKind::Backoff);
    sim.step(Event::Spawned { pid: PID });
    let effects = sim.step(exited(5));
    assert_eq!(sim.state(), ProcessState::Fatal);
    assert_eq!(effects.last().map(String::as_str), Some("ended fatal exit status 5"));
}

#[test]
fn reaching_running_resets_the_backoff_counter() {
    let mut sim = Sim::new(config());
    sim.step(Event::StartRequested);
    sim.step(Event::Spawned { pid: PID });
    sim.step(exited(1));
    sim.fire(TimerKind::Backoff);
    sim.step(Event::Spawned { pid: PID });
    sim.step(exited(1));
    assert_eq!(sim.lc.backoff(), 2);
    sim.fire(TimerKind::Backoff);
    sim.step(Event::Spawned { pid: PID });
    sim.fire(TimerKind::StartSecs);
    assert_eq!(sim.state(), ProcessState::Running);
    assert_eq!(sim.lc.backoff(), 0);
    // A crash after RUNNING never counts toward startretries (issue #1285).
    sim.step(exited(1));
    assert_eq!(sim.state(), ProcessState::Starting);
    assert_eq!(sim.lc.backoff(), 0);
}

#[test]
fn stop_in_backoff_keeps_the_counter_for_a_later_start() {
    let mut sim = Sim::new(config());
    reach(&mut sim, ProcessState::Backoff);
    sim.step(Event::StopRequested);
    assert_eq!(sim.state(), ProcessState::Stopped);
    assert_eq!(sim.lc.backoff(), 1);
    sim.step(Event::StartRequested);
    sim.step(Event::Spawned { pid: PID });
    let effects = sim.step(exited(1));
    assert_eq!(sim.lc.backoff(), 2);
    assert!(effects.contains(&"arm Backoff 2s".to_owned()), "{effects:?}");
}

#[test]
fn sigkill_repeats_every_stopwaitsecs_until_reaped() {
    let mut sim = Sim::new(config());
    reach(&mut sim, ProcessState::Stopping);
    let before = sim.elapsed();
    for round in 1..=3u32 {
        let effects = sim.fire(TimerKind::StopTimeout);
        assert!(effects.contains(&"signal SIGKILL to 100".to_owned()), "{effects:?}");
        assert_eq!(sim.elapsed() - before, Duration::from_secs(10) * round);
        assert_eq!(sim.state(), ProcessState::Stopping);
    }
    sim.step(killed(libc::SIGKILL));
    assert_eq!(sim.state(), ProcessState::Stopped);
    assert_eq!(sim.lc.exitstatus(), Some(ExitStatus::Signal(libc::SIGKILL)));
}

#[test]
fn stopasgroup_signals_the_group_first() {
    let mut config = config();
    config.stopasgroup = true;
    let mut sim = Sim::new(config);
    reach(&mut sim, ProcessState::Running);
    let effects = sim.step(Event::StopRequested);
    assert!(effects.contains(&"signal SIGTERM to group 100".to_owned()), "{effects:?}");
    // killasgroup is off, so the SIGKILL goes to the pid alone.
    let effects = sim.fire(TimerKind::StopTimeout);
    assert!(effects.contains(&"signal SIGKILL to 100".to_owned()), "{effects:?}");
}

#[test]
fn unexpected_exit_sets_bad_exit_code() {
    let mut config = config();
    config.autorestart = AutoRestart::False;
    let mut sim = Sim::new(config);
    reach(&mut sim, ProcessState::Running);
    sim.step(exited(3));
    assert_eq!(sim.lc.spawnerr(), Some("Bad exit code 3"));
    assert_eq!(sim.lc.exitstatus(), Some(ExitStatus::Code(3)));
    // A new start clears both.
    sim.step(Event::StartRequested);
    assert_eq!(sim.lc.spawnerr(), None);
    assert_eq!(sim.lc.exitstatus(), None);
}

#[test]
fn startsecs_zero_arms_an_immediate_timer() {
    let mut config = config();
    config.startsecs = Duration::ZERO;
    let mut sim = Sim::new(config);
    sim.step(Event::StartRequested);
    let effects = sim.step(Event::Spawned { pid: PID });
    assert!(effects.contains(&"arm StartSecs 0ns".to_owned()), "{effects:?}");
    // An instant exit is not "too quickly" with startsecs=0: it is RUNNING -> EXITED.
    sim.step(exited(1));
    assert_eq!(sim.state(), ProcessState::Starting, "autorestart=unexpected restarted it");
    assert_eq!(sim.lc.backoff(), 0);
}

#[test]
fn linear_backoff_is_one_two_three_seconds() {
    let config = linear();
    let waits: Vec<Duration> = (1..=4).map(|n| backoff_delay(&config, n, 0.9)).collect();
    assert_eq!(waits, [1, 2, 3, 4].map(Duration::from_secs));
}

#[test]
fn exponential_backoff_is_capped_and_jittered_by_the_sample() {
    let config = BackoffConfig {
        kind: BackoffKind::Exponential,
        initial: Duration::from_millis(500),
        max: Some(Duration::from_secs(5)),
        multiplier: 2.0,
        jitter: 0.5,
        reset_after: None,
    };
    assert_eq!(backoff_delay(&config, 1, 0.0), Duration::from_millis(500));
    assert_eq!(backoff_delay(&config, 3, 0.0), Duration::from_secs(2));
    assert_eq!(backoff_delay(&config, 3, 0.5), Duration::from_millis(2500));
    assert_eq!(backoff_delay(&config, 10, 0.0), Duration::from_secs(5));
    assert_eq!(
        backoff_delay(&config, 3, 0.99).max(Duration::ZERO),
        backoff_delay(&config, 3, 0.99)
    );
    assert_eq!(backoff_delay(&config, 400, 1.0), Duration::from_secs(5), "no overflow");
}

#[test]
fn jittered_lifecycle_waits_stay_within_bounds() {
    let mut config = config();
    config.backoff.jitter = 0.5;
    config.startretries = 10;
    let mut sim = Sim::new(config);
    sim.step(Event::StartRequested);
    for attempt in 1..=5u64 {
        sim.step(Event::Spawned { pid: PID });
        let before = sim.now;
        sim.step(exited(1));
        sim.fire(TimerKind::Backoff);
        let waited = sim.now - before;
        assert!(waited >= Duration::from_secs(attempt), "{waited:?}");
        assert!(waited <= Duration::from_secs(attempt).mul_f64(1.5), "{waited:?}");
    }
}

#[test]
fn states_carry_supervisord_codes_and_classes() {
    let codes: Vec<(i32, &str)> = ProcessState::ALL.iter().map(|s| (s.code(), s.name())).collect();
    assert_eq!(
        codes,
        [
            (0, "STOPPED"),
            (10, "STARTING"),
            (20, "RUNNING"),
            (30, "BACKOFF"),
            (40, "STOPPING"),
            (100, "EXITED"),
            (200, "FATAL"),
            (1000, "UNKNOWN")
        ]
    );
    let stopped: Vec<_> = ProcessState::ALL.into_iter().filter(|s| s.is_stopped()).collect();
    assert_eq!(
        stopped,
        [ProcessState::Stopped, ProcessState::Exited, ProcessState::Fatal, ProcessState::Unknown]
    );
    let running: Vec<_> = ProcessState::ALL.into_iter().filter(|s| s.is_running()).collect();
    assert_eq!(running, [ProcessState::Starting, ProcessState::Running, ProcessState::Backoff]);
}
