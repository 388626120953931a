//! supervisord's process state machine as a pure function.
//!
//! [`Lifecycle::step`] takes one [`Event`] and the current monotonic time and
//! returns the [`Effect`]s the caller must carry out (spawn, signal, arm a timer,
//! log a line, publish a state change). It reads no clock, draws no randomness
//! (jitter comes from a seeded generator whose seed is an input), spawns nothing
//! and never blocks; the process actor is the thin shell that executes effects and
//! feeds results back as events. Every rule follows supervisord's
//! `supervisor/process.py` (`Subprocess.spawn`, `finish`, `kill`, `transition`,
//! `change_state`), with one deliberate difference: supervisord polls its state
//! machine once per main-loop pass (about once a second), whereas this machine is
//! driven by events and timers, so `EXITED -> STARTING` happens immediately and the
//! waits are exact.
//!
//! Timers are identified by a [`Timer`] token. Entering a new state disarms every
//! timer, so a timer that fires after its state was left is ignored here rather
//! than relying on the caller to cancel it.
//!
//! # The machine
//!
//! Each row is one edge; `A -> B` in the last column means the event passes
//! through `A` on its way to `B` within the same step. The table is checked
//! against [`Lifecycle::step`] by the `doc_table_matches_transition_function` test.
//!
//! <!-- lifecycle-table-begin -->
//! | from     | event              | condition                                     | to                 |
//! |----------|--------------------|-----------------------------------------------|--------------------|
//! | STOPPED  | Autostart          | autostart=true, never started                 | STARTING           |
//! | STOPPED  | Autostart          | started before                                | STOPPED            |
//! | STOPPED  | StartRequested     |                                               | STARTING           |
//! | EXITED   | StartRequested     |                                               | STARTING           |
//! | FATAL    | StartRequested     |                                               | STARTING           |
//! | STARTING | Spawned            |                                               | STARTING           |
//! | STARTING | SpawnFailed        | retries left                                  | BACKOFF            |
//! | STARTING | SpawnFailed        | startretries=0                                | BACKOFF -> FATAL   |
//! | STARTING | StartSecsElapsed   |                                               | RUNNING            |
//! | STARTING | StartSecsElapsed   | stale token                                   | STARTING           |
//! | STARTING | Exited             | too quickly                                   | BACKOFF            |
//! | STARTING | Exited             | too quickly, code in exitcodes                | BACKOFF            |
//! | STARTING | Exited             | too quickly, retries exhausted                | BACKOFF -> FATAL   |
//! | STARTING | Exited             | after startsecs, before the timer             | RUNNING -> EXITED  |
//! | STARTING | StopRequested      |                                               | STOPPING           |
//! | STARTING | ShutdownRequested  |                                               | STOPPING           |
//! | BACKOFF  | BackoffElapsed     |                                               | BACKOFF            |
//! | BACKOFF  | RestartApproved    | start retry                                   | STARTING           |
//! | BACKOFF  | BackoffElapsed     | delayed restart                               | STARTING           |
//! | BACKOFF  | StopRequested      |                                               | STOPPED            |
//! | BACKOFF  | ShutdownRequested  |                                               | FATAL              |
//! | RUNNING  | Exited             | code in exitcodes, autorestart=unexpected     | EXITED             |
//! | RUNNING  | Exited             | code not in exitcodes, autorestart=false      | EXITED             |
//! | RUNNING  | Exited             | code not in exitcodes, autorestart=unexpected | EXITED             |
//! | RUNNING  | Exited             | killed by signal, autorestart=unexpected      | EXITED             |
//! | RUNNING  | Exited             | code in exitcodes, autorestart=true           | EXITED             |
//! | RUNNING  | Exited             | autorestart=true, shutting down               | EXITED             |
//! | RUNNING  | Exited             | stale pid                                     | RUNNING            |
//! | RUNNING  | DaemonShuttingDown |                                               | RUNNING            |
//! | RUNNING  | StopRequested      |                                               | STOPPING           |
//! | RUNNING  | ShutdownRequested  |                                               | STOPPING           |
//! | RUNNING  | SignalRequested    |                                               | RUNNING            |
//! | RUNNING  | SignalFailed       | signal request                                | UNKNOWN            |
//! | STOPPING | StopTimeout        |                                               | STOPPING           |
//! | STOPPING | StopReport         |                                               | STOPPING           |
//! | STOPPING | Exited             | code in exitcodes                             | STOPPED            |
//! | STOPPING | Exited             | killed by signal                              | STOPPED            |
//! | STOPPING | SignalFailed       | stop signal                                   | UNKNOWN            |
//! | STOPPING | SignalRequested    |                                               | STOPPING           |
//! | UNKNOWN  | Exited             |                                               | EXITED             |
//! | RUNNING  | StartRequested     | refused: ALREADY_STARTED                      | RUNNING            |
//! | STARTING | StartRequested     | refused: ALREADY_STARTED                      | STARTING           |
//! | BACKOFF  | StartRequested     | refused: ALREADY_STARTED                      | BACKOFF            |
//! | STOPPING | StartRequested     | refused: stopping                             | STOPPING           |
//! | UNKNOWN  | StartRequested     | refused: UNKNOWN state                        | UNKNOWN            |
//! | EXITED   | StartRequested     | refused: shutting down                        | EXITED             |
//! | STOPPED  | StopRequested      | refused: NOT_RUNNING                          | STOPPED            |
//! | STOPPING | StopRequested      | refused: NOT_RUNNING                          | STOPPING           |
//! | EXITED   | SignalRequested    | refused: NOT_RUNNING                          | EXITED             |
//! | STOPPED  | StartRequested     | with dependencies                             | STARTING           |
//! | STARTING | DependenciesMet    | waiting for dependencies                      | STARTING           |
//! | STARTING | DependenciesMet    | waiting, daemon shutting down                 | STOPPED            |
//! | STARTING | StopRequested      | waiting for dependencies                      | STOPPED            |
//! | STARTING | ShutdownRequested  | waiting for dependencies                      | STOPPED            |
//! | RUNNING  | DependencyLost     |                                               | STOPPING           |
//! | STOPPING | Exited             | dependency lost                               | EXITED -> STARTING |
//! | STOPPING | StopRequested      | stop for a dependency                         | STOPPING           |
//! | BACKOFF  | DependencyLost     | with dependencies                             | STARTING           |
//! | STARTING | Spawned            | readiness probe                               | STARTING           |
//! | STARTING | ReadinessPassed    |                                               | RUNNING            |
//! | STARTING | Exited             | readiness probe, after startsecs              | BACKOFF            |
//! | STARTING | ReadinessFailed    |                                               | STOPPING           |
//! | STOPPING | Exited             | readiness failed                              | BACKOFF            |
//! | RUNNING  | LivenessFailed     |                                               | STOPPING           |
//! | STOPPING | Exited             | liveness failed                               | EXITED             |
//! | RUNNING  | MemoryThresholdPassed |                                 | STOPPING           |
//! | EXITED   | RestartApproved    | no restart backoff                            | STARTING           |
//! | EXITED   | RestartApproved    | backoff_reset_after, unstable run             | BACKOFF            |
//! | EXITED   | RestartDenied      |                                               | FATAL              |
//! | RUNNING  | GroupFatal         |                                               | STOPPING           |
//! | STOPPING | Exited             | group fatal                                   | FATAL              |
//! | BACKOFF  | GroupFatal         |                                               | FATAL              |
//! <!-- lifecycle-table-end -->
//!
//! Vigil's edges (after the supervisord rows): automatic restarts are asked
//! for with [`Effect::RestartWanted`] and happen on [`Event::RestartApproved`]
//! (the group's restart budget and strategy decide; a group without a budget
//! approves at once, so supervisord's timing is unchanged) or end FATAL on
//! [`Event::RestartDenied`]. With `depends_on`, STARTING begins without a child
//! ([`Effect::AwaitDependencies`]) until [`Event::DependenciesMet`]; a lost
//! dependency stops the process and puts it back there. With a readiness
//! probe, [`Event::ReadinessPassed`] rather than `startsecs` leads to RUNNING and
//! an exit before it is a failed start; a failed readiness probe stops the child
//! into BACKOFF, a failed liveness probe stops it and asks for a restart. A
//! restart after RUNNING waits [`backoff_delay`] of the restarts since the last
//! stable run when `backoff_reset_after` is set (without it, supervisord's
//! immediate restart).
//!
//! Counters follow supervisord exactly: entering BACKOFF adds one to `backoff` and
//! waits [`backoff_delay`] (1 s, 2 s, 3 s, ... by default); when `backoff` exceeds
//! `startretries` the process gives up (FATAL), so there are `startretries + 1`
//! spawns in all. `backoff` returns to 0 on STARTING -> RUNNING, on RUNNING ->
//! EXITED and on giving up, but not on BACKOFF -> STOPPED, so a later manual start
//! continues the count. A process whose exit arrives in UNKNOWN goes to EXITED
//! (supervisord would fail an assertion there) and is not restarted automatically.

use std::fmt;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use vigil_config::{AutoRestart, BackoffConfig, BackoffKind, ProcessConfig};

use crate::exit::ExitStatus;
pub use crate::exit::signal_name;

/// supervisord's process states, with its numeric codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessState {
    /// Not running: never started, or stopped on request.
    Stopped = 0,
    /// Spawned, not yet past `startsecs` (or its readiness probe).
    Starting = 10,
    /// Started successfully.
    Running = 20,
    /// A start failed; waiting before the next attempt.
    Backoff = 30,
    /// Being stopped: the stop signal was sent.
    Stopping = 40,
    /// Exited from RUNNING, expectedly or not.
    Exited = 100,
    /// Could not be started after `startretries` attempts (or its budget ran out).
    Fatal = 200,
    /// Sending a signal failed unexpectedly: the child's fate is not known.
    Unknown = 1000,
}

impl ProcessState {
    /// Every state, in code order.
    pub const ALL: [ProcessState; 8] = [
        ProcessState::Stopped,
        ProcessState::Starting,
        ProcessState::Running,
        ProcessState::Backoff,
        ProcessState::Stopping,
        ProcessState::Exited,
        ProcessState::Fatal,
        ProcessState::Unknown,
    ];

    /// supervisord's state code (`getProcessInfo`'s `state`).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// supervisord's state name (`statename`).
    pub fn name(self) -> &'static str {
        match self {
            ProcessState::Stopped => "STOPPED",
            ProcessState::Starting => "STARTING",
            ProcessState::Running => "RUNNING",
            ProcessState::Backoff => "BACKOFF",
            ProcessState::Stopping => "STOPPING",
            ProcessState::Exited => "EXITED",
            ProcessState::Fatal => "FATAL",
            ProcessState::Unknown => "UNKNOWN",
        }
    }

    /// Parses a state name as printed by [`ProcessState::name`].
    pub fn from_name(name: &str) -> Option<ProcessState> {
        ProcessState::ALL.into_iter().find(|state| state.name() == name)
    }

    /// supervisord's `STOPPED_STATES`: nothing runs and nothing will by itself
    /// (except EXITED with autorestart, which leaves at once).
    pub fn is_stopped(self) -> bool {
        matches!(
            self,
            ProcessState::Stopped
                | ProcessState::Exited
                | ProcessState::Fatal
                | ProcessState::Unknown
        )
    }

    /// supervisord's `RUNNING_STATES`: running or trying to.
    pub fn is_running(self) -> bool {
        matches!(self, ProcessState::Starting | ProcessState::Running | ProcessState::Backoff)
    }

    /// States in which a child exists and may be signalled (`signalProcess`).
    pub fn is_signallable(self) -> bool {
        matches!(self, ProcessState::Starting | ProcessState::Running | ProcessState::Stopping)
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The subset of a [`ProcessConfig`] the state machine needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    /// The process name used in log lines (supervisord logs the bare name).
    pub name: String,
    /// `autostart`: start when the daemon (or the group) starts.
    pub autostart: bool,
    /// `startsecs`: how long a child must stay up to count as started.
    pub startsecs: Duration,
    /// `startretries`: failed starts before FATAL.
    pub startretries: u32,
    /// `autorestart`: whether an exit from RUNNING restarts.
    pub autorestart: AutoRestart,
    /// `exitcodes`: the expected exit codes.
    pub exitcodes: Vec<i32>,
    /// `stopsignal`, as a signal number.
    pub stopsignal: i32,
    /// `stopwaitsecs`: the wait before SIGKILL.
    pub stopwaitsecs: Duration,
    /// `stopasgroup`: the stop signal goes to the process group.
    pub stopasgroup: bool,
    /// `killasgroup`: SIGKILL goes to the process group.
    pub killasgroup: bool,
    /// The wait between start attempts.
    pub backoff: BackoffConfig,
    /// A readiness probe gates STARTING -> RUNNING instead of `startsecs`.
    pub readiness: bool,
    /// Every spawn first waits for [`Event::DependenciesMet`].
    pub dependencies: bool,
    /// `essential`: an exit the daemon did not ask for is never restarted and
    /// is reported with [`Effect::Ended`].
    pub essential: bool,
}

impl LifecycleConfig {
    /// Takes the lifecycle settings of one process instance.
    pub fn from_process(config: &ProcessConfig) -> LifecycleConfig {
        LifecycleConfig {
            name: config.name.clone(),
            autostart: config.autostart,
            startsecs: Duration::from_secs(config.startsecs),
            startretries: config.startretries,
            autorestart: config.autorestart,
            exitcodes: config.exitcodes.clone(),
            stopsignal: config.stopsignal.0,
            stopwaitsecs: Duration::from_secs(config.stopwaitsecs),
            stopasgroup: config.stopasgroup,
            killasgroup: config.killasgroup,
            backoff: config.backoff.clone(),
            readiness: config.readiness.is_some(),
            dependencies: !config.depends_on.is_empty(),
            essential: config.essential,
        }
    }
}

/// What a timer is for. Each kind belongs to one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// STARTING: `startsecs` have passed since the spawn.
    StartSecs,
    /// BACKOFF: the wait before the next spawn attempt is over.
    Backoff,
    /// STOPPING: `stopwaitsecs` passed without an exit; send SIGKILL.
    StopTimeout,
    /// STOPPING: time to log `waiting for x to stop` again.
    StopReport,
}

impl TimerKind {
    fn index(self) -> usize {
        match self {
            TimerKind::StartSecs => 0,
            TimerKind::Backoff => 1,
            TimerKind::StopTimeout => 2,
            TimerKind::StopReport => 3,
        }
    }

    /// The event name used in the module's table.
    fn event_name(self) -> &'static str {
        match self {
            TimerKind::StartSecs => "StartSecsElapsed",
            TimerKind::Backoff => "BackoffElapsed",
            TimerKind::StopTimeout => "StopTimeout",
            TimerKind::StopReport => "StopReport",
        }
    }
}

/// One armed timer: the caller hands it back in [`Event::Timer`] when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timer {
    /// What the timer is for.
    pub kind: TimerKind,
    /// Distinguishes this arming from earlier ones of the same kind.
    pub token: u64,
}

/// Why a signal was sent, so a failure is reported the way supervisord does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalPurpose {
    /// `stopsignal` or SIGKILL from a stop (`Subprocess.kill`).
    Stop,
    /// A user's `signal` request (`Subprocess.signal`).
    User,
}

/// An input to the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The daemon started (or a group was added): start if `autostart` and the
    /// process was never started.
    Autostart,
    /// `start` from a user.
    StartRequested,
    /// `stop` from a user.
    StopRequested,
    /// The daemon is shutting down (its mood left RUNNING): no more automatic
    /// starts or retries from now on, but nothing is stopped yet; groups are
    /// stopped one by one later with [`Event::ShutdownRequested`].
    DaemonShuttingDown,
    /// This process's turn in an ordered shutdown: no more automatic starts; stop
    /// what runs, give up what waits in BACKOFF (supervisord's `stop_all`).
    ShutdownRequested,
    /// `signal` from a user.
    SignalRequested {
        /// The signal number.
        sig: i32,
    },
    /// The [`Effect::Spawn`] succeeded.
    Spawned {
        /// The child's pid.
        pid: u32,
    },
    /// The [`Effect::Spawn`] failed; `error` is supervisord's spawnerr text.
    SpawnFailed {
        /// supervisord's spawnerr text.
        error: String,
    },
    /// The child `pid` was reaped.
    Exited {
        /// The child's pid.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// An armed timer fired.
    Timer(Timer),
    /// An [`Effect::Signal`] failed with something other than "no such process".
    SignalFailed {
        /// Why the signal was sent.
        purpose: SignalPurpose,
        /// The system's description of the failure.
        error: String,
    },
    /// Answer to [`Effect::AwaitDependencies`]: every dependency meets its
    /// condition, spawn now.
    DependenciesMet,
    /// A dependency stopped meeting its condition while this process was active
    /// (`restart_dependents`): stop, then wait for it again.
    DependencyLost,
    /// The readiness probe passed.
    ReadinessPassed,
    /// The readiness probe failed `ready_retries` times in a row.
    ReadinessFailed,
    /// The liveness probe failed `live_failure_threshold` times in a row.
    LivenessFailed,
    /// The child's control group passed `memory_restart_threshold`.
    MemoryThresholdPassed,
    /// The group admits the restart asked for by [`Effect::RestartWanted`].
    RestartApproved,
    /// The group's restart budget is exhausted: give up.
    RestartDenied,
    /// Another member exhausted the group's restart budget: stop and go FATAL.
    GroupFatal,
}

impl Event {
    /// The event's name in the module's table.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Autostart => "Autostart",
            Event::StartRequested => "StartRequested",
            Event::StopRequested => "StopRequested",
            Event::DaemonShuttingDown => "DaemonShuttingDown",
            Event::ShutdownRequested => "ShutdownRequested",
            Event::SignalRequested { .. } => "SignalRequested",
            Event::Spawned { .. } => "Spawned",
            Event::SpawnFailed { .. } => "SpawnFailed",
            Event::Exited { .. } => "Exited",
            Event::Timer(timer) => timer.kind.event_name(),
            Event::SignalFailed { .. } => "SignalFailed",
            Event::DependenciesMet => "DependenciesMet",
            Event::DependencyLost => "DependencyLost",
            Event::ReadinessPassed => "ReadinessPassed",
            Event::ReadinessFailed => "ReadinessFailed",
            Event::LivenessFailed => "LivenessFailed",
            Event::MemoryThresholdPassed => "MemoryThresholdPassed",
            Event::RestartApproved => "RestartApproved",
            Event::RestartDenied => "RestartDenied",
            Event::GroupFatal => "GroupFatal",
        }
    }
}

/// Severity of a log line, supervisord's levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `CRIT`: a signal could not be sent, leaving the process UNKNOWN.
    Critical,
    /// `WARN`: an unexpected exit, a failed start or a failed probe.
    Warn,
    /// `INFO`: ordinary state changes.
    Info,
    /// `DEBG`: detail.
    Debug,
}

/// Why a request was refused; maps onto supervisord's faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// ALREADY_STARTED: STARTING, RUNNING or BACKOFF.
    AlreadyStarted,
    /// NOT_RUNNING: nothing to stop or signal.
    NotRunning,
    /// FAILED: the process is in UNKNOWN state.
    UnknownState,
    /// FAILED: a start while the previous child is still being stopped.
    Stopping,
    /// SHUTDOWN_STATE: the daemon is shutting down.
    ShuttingDown,
}

/// An output of the machine, to be carried out by the caller in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish a state change (supervisord's `PROCESS_STATE_*` events).
    StateChanged {
        /// The state left.
        from: ProcessState,
        /// The state entered.
        to: ProcessState,
    },
    /// Spawn the child now and feed back [`Event::Spawned`] or
    /// [`Event::SpawnFailed`] before anything else.
    Spawn,
    /// Arm `timer` to fire after `after`.
    Schedule {
        /// The timer to hand back in [`Event::Timer`].
        timer: Timer,
        /// How long from now.
        after: Duration,
    },
    /// Send `sig` to `pid`, or to its process group when `group`.
    Signal {
        /// The child.
        pid: u32,
        /// The signal number.
        sig: i32,
        /// To the child's process group rather than the pid alone.
        group: bool,
        /// Why, for reporting a failure.
        purpose: SignalPurpose,
    },
    /// Write a line to the activity log.
    Log {
        /// supervisord's level.
        level: Level,
        /// The line, without the level.
        message: String,
    },
    /// The request in the event was refused; nothing else changed.
    Refused(Refusal),
    /// The process is STARTING but must not spawn before its dependencies meet
    /// their conditions: answer with [`Event::DependenciesMet`] when they do.
    AwaitDependencies,
    /// The program ended for good without being asked to: it gave up after
    /// `startretries` (always reported: `on_fatal` decides), or, being
    /// `essential`, it exited by itself or its group's budget gave up on it.
    /// The daemon may shut down on it.
    Ended {
        /// FATAL rather than EXITED.
        fatal: bool,
        /// The last child's exit, if it had one.
        status: Option<ExitStatus>,
    },
    /// An automatic restart is due: ask the group (restart budget, strategy) and
    /// answer with [`Event::RestartApproved`] or [`Event::RestartDenied`].
    RestartWanted {
        /// Whether a start failed or a running child died.
        cause: RestartCause,
    },
}

/// Why an automatic restart is wanted; the group's strategy acts on deaths only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartCause {
    /// The next start attempt after a failed start (BACKOFF).
    Retry,
    /// The program died after reaching RUNNING (autorestart).
    Exited,
    /// The liveness probe failed and the program was stopped for it.
    Unhealthy,
}

/// What the exit of a child that is being stopped leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// A user's stop or the shutdown: STOPPED.
    Stopped,
    /// Its readiness probe failed: a failed start, BACKOFF.
    Backoff,
    /// Its liveness probe failed: EXITED and an automatic restart.
    Restart,
    /// A dependency was lost: wait for the dependencies, then start again.
    Requeue,
    /// The group's restart budget is exhausted: FATAL.
    Fatal,
}

/// supervisord's spawnerr after an exit within `startsecs`.
pub const EXITED_TOO_QUICKLY: &str = "Exited too quickly (process log may have details)";

/// spawnerr of a member given up on because its group's restart budget ran out.
pub const BUDGET_EXHAUSTED: &str = "restart budget of the group exhausted";

/// spawnerr after a readiness probe failed.
pub const READINESS_FAILED: &str = "readiness probe failed";

/// spawnerr after a liveness probe failed.
pub const LIVENESS_FAILED: &str = "liveness probe failed";

/// spawnerr after the memory passed `memory_restart_threshold`.
pub const MEMORY_THRESHOLD_PASSED: &str = "memory above memory_restart_threshold";

/// How often `waiting for x to stop` is repeated while a stop is pending.
pub const STOP_REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// The wait before spawn attempt `attempt + 1`, after `attempt` failures
/// (`attempt` >= 1). `sample` is a uniform random number in `[0, 1)` supplied by
/// the caller, used only when `config.jitter` is non-zero.
///
/// Linear: `initial * attempt` (supervisord: 1 s, 2 s, 3 s, ...). Exponential:
/// `initial * multiplier^(attempt - 1)`. Either is capped at `max`; jitter then
/// adds up to `jitter` times the wait, and the cap holds after jitter too.
pub fn backoff_delay(config: &BackoffConfig, attempt: u32, sample: f64) -> Duration {
    let attempt = attempt.max(1);
    let initial = config.initial.as_secs_f64();
    let secs = match config.kind {
        BackoffKind::Linear => initial * f64::from(attempt),
        BackoffKind::Exponential => {
            let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
            initial * config.multiplier.powi(exponent)
        }
    };
    let jitter = config.jitter.clamp(0.0, 1.0) * sample.clamp(0.0, 1.0);
    let with_jitter = secs * (1.0 + jitter);
    let wait = Duration::try_from_secs_f64(with_jitter).unwrap_or(Duration::MAX);
    match config.max {
        Some(max) => wait.min(max),
        None => wait,
    }
}

/// One process instance's lifecycle: the state plus supervisord's bookkeeping.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    config: LifecycleConfig,
    state: ProcessState,
    /// The current child, if any.
    pid: Option<u32>,
    /// supervisord's `backoff` counter.
    backoff: u32,
    /// A stop signal was sent; the next exit means STOPPED.
    killing: bool,
    /// When the last spawn was attempted; `None` until the first (autostart only
    /// starts a process that was never started).
    laststart: Option<Instant>,
    spawnerr: Option<String>,
    /// The last exit status; `None` reads as 0 (supervisord's `exitstatus or 0`).
    exitstatus: Option<ExitStatus>,
    /// The last child's exit, kept through BACKOFF (where `exitstatus` is
    /// cleared) for [`Effect::Ended`].
    last_exit: Option<ExitStatus>,
    /// The daemon's mood is RUNNING: automatic starts and retries are allowed.
    accepting: bool,
    next_token: u64,
    /// The token of the armed timer of each kind. Tokens start at 1, and
    /// `NonZeroU64` makes each slot 8 bytes, not 16: this state is kept for
    /// each program's life.
    armed: [Option<NonZeroU64>; 4],
    /// splitmix64 state for backoff jitter.
    rng: u64,
    /// STARTING without a child: waiting for the dependencies.
    waiting: bool,
    /// What the exit of the child being stopped leads to.
    after_stop: AfterStop,
    /// An [`Effect::RestartWanted`] is unanswered.
    restart_pending: Option<RestartCause>,
    /// BACKOFF is an approved restart's delay, not a failed start's.
    delayed_restart: bool,
    /// Automatic restarts after RUNNING since the last stable run, for the
    /// backoff of such restarts (only counted with `backoff_reset_after`).
    restarts: u32,
    /// When the process last entered RUNNING.
    running_since: Option<Instant>,
}

impl Lifecycle {
    /// A process that was never started. `seed` feeds the jitter generator.
    pub fn new(config: LifecycleConfig, seed: u64) -> Lifecycle {
        Lifecycle {
            config,
            state: ProcessState::Stopped,
            pid: None,
            backoff: 0,
            killing: false,
            laststart: None,
            spawnerr: None,
            exitstatus: None,
            last_exit: None,
            accepting: true,
            next_token: 0,
            armed: [None; 4],
            rng: seed,
            waiting: false,
            after_stop: AfterStop::Stopped,
            restart_pending: None,
            delayed_restart: false,
            restarts: 0,
            running_since: None,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &LifecycleConfig {
        &self.config
    }

    /// Replaces the settings (`update` of fields that apply in place). The state
    /// and any armed timer are kept; new durations apply from the next arming.
    pub fn retune(&mut self, config: LifecycleConfig) {
        self.config = config;
    }

    /// The current state.
    pub fn state(&self) -> ProcessState {
        self.state
    }

    /// The child's pid while one exists (STARTING, RUNNING, STOPPING, UNKNOWN).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// supervisord's backoff counter (the `tries` of state events).
    pub fn backoff(&self) -> u32 {
        self.backoff
    }

    /// Why the last start failed, until the next spawn attempt.
    pub fn spawnerr(&self) -> Option<&str> {
        self.spawnerr.as_deref()
    }

    /// How the last child ended, if one did.
    pub fn exitstatus(&self) -> Option<ExitStatus> {
        self.exitstatus
    }

    /// Whether the process was ever started (spawn attempted).
    pub fn ever_started(&self) -> bool {
        self.laststart.is_some()
    }

    /// Whether a stop signal has been sent to the current child.
    pub fn is_killing(&self) -> bool {
        self.killing
    }

    /// STARTING and waiting for dependencies (no child yet).
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Automatic restarts after RUNNING counted toward the backoff.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// The timer of `kind` that is currently armed, if any.
    pub fn armed(&self, kind: TimerKind) -> Option<Timer> {
        self.armed[kind.index()].map(|token| Timer { kind, token: token.get() })
    }

    /// Applies one event at monotonic time `now`.
    ///
    /// Long on purpose: it is the whole transition table, one arm per event,
    /// so how every state answers an event reads in one place; the work shared
    /// between arms lives in the helper methods after it.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        match event {
            Event::Autostart => {
                if self.state == ProcessState::Stopped
                    && self.laststart.is_none()
                    && self.config.autostart
                    && self.accepting
                {
                    self.spawn(now, &mut fx);
                }
            }
            Event::StartRequested => self.start_requested(now, &mut fx),
            Event::StopRequested => match self.state {
                ProcessState::Starting if self.waiting => {
                    self.waiting = false;
                    self.change(ProcessState::Stopped, &mut fx);
                }
                ProcessState::Running | ProcessState::Starting => {
                    self.kill(self.config.stopsignal, &mut fx);
                    self.stop_report(&mut fx);
                }
                ProcessState::Backoff => {
                    // supervisord: a stop in BACKOFF goes straight to STOPPED
                    // without a signal, and leaves the backoff counter alone.
                    let message = format!(
                        "Attempted to kill {}, which is in BACKOFF state.",
                        self.config.name
                    );
                    fx.push(Effect::Log { level: Level::Debug, message });
                    self.restart_pending = None;
                    self.delayed_restart = false;
                    self.change(ProcessState::Stopped, &mut fx);
                }
                // A stop for a dependency or a probe is already under way: the
                // user's stop only changes where it ends.
                ProcessState::Stopping if self.after_stop != AfterStop::Stopped => {
                    self.after_stop = AfterStop::Stopped;
                }
                ProcessState::Exited if self.restart_pending.is_some() => {
                    self.restart_pending = None;
                    self.change(ProcessState::Stopped, &mut fx);
                }
                _ => fx.push(Effect::Refused(Refusal::NotRunning)),
            },
            Event::DaemonShuttingDown => self.accepting = false,
            Event::ShutdownRequested => {
                self.accepting = false;
                match self.state {
                    ProcessState::Starting if self.waiting => {
                        self.waiting = false;
                        self.change(ProcessState::Stopped, &mut fx);
                    }
                    ProcessState::Running | ProcessState::Starting => {
                        self.kill(self.config.stopsignal, &mut fx)
                    }
                    ProcessState::Backoff => self.give_up(&mut fx),
                    ProcessState::Stopping => self.after_stop = AfterStop::Stopped,
                    ProcessState::Exited => self.restart_pending = None,
                    _ => {}
                }
            }
            Event::SignalRequested { sig } => match self.pid {
                Some(pid) if self.state.is_signallable() => {
                    let message = format!(
                        "sending {} (pid {}) sig {}",
                        self.config.name,
                        pid,
                        signal_name(sig)
                    );
                    fx.push(Effect::Log { level: Level::Debug, message });
                    fx.push(Effect::Signal {
                        pid,
                        sig,
                        group: false,
                        purpose: SignalPurpose::User,
                    });
                }
                _ => fx.push(Effect::Refused(Refusal::NotRunning)),
            },
            Event::Spawned { pid } => {
                if self.state == ProcessState::Starting && self.pid.is_none() {
                    self.pid = Some(pid);
                    let message = format!("spawned: '{}' with pid {}", self.config.name, pid);
                    fx.push(Effect::Log { level: Level::Info, message });
                    // With a readiness probe, ReadinessPassed ends STARTING instead.
                    if !self.config.readiness {
                        self.arm(TimerKind::StartSecs, self.config.startsecs, &mut fx);
                    }
                }
            }
            Event::SpawnFailed { error } => {
                if self.state == ProcessState::Starting && self.pid.is_none() {
                    let message = format!("spawnerr: {error}");
                    self.spawnerr = Some(error);
                    fx.push(Effect::Log { level: Level::Info, message });
                    self.backoff += 1;
                    self.change(ProcessState::Backoff, &mut fx);
                    self.after_backoff_entered(&mut fx);
                }
            }
            Event::Exited { pid, status } => {
                if self.pid == Some(pid) {
                    self.finish(status, now, &mut fx);
                }
            }
            Event::Timer(timer) => {
                if self.armed[timer.kind.index()].map(NonZeroU64::get) == Some(timer.token) {
                    self.armed[timer.kind.index()] = None;
                    self.timer_fired(timer.kind, now, &mut fx);
                }
            }
            Event::SignalFailed { purpose, error } => {
                if let Some(pid) = self.pid {
                    let message = match purpose {
                        SignalPurpose::Stop => {
                            format!(
                                "unknown problem killing {} ({}):{}",
                                self.config.name, pid, error
                            )
                        }
                        SignalPurpose::User => format!(
                            "unknown problem sending sig {} ({}):{}",
                            self.config.name, pid, error
                        ),
                    };
                    fx.push(Effect::Log { level: Level::Critical, message });
                    self.killing = false;
                    self.after_stop = AfterStop::Stopped;
                    self.change(ProcessState::Unknown, &mut fx);
                }
            }
            Event::DependenciesMet => {
                if self.state == ProcessState::Starting && self.waiting {
                    self.waiting = false;
                    if self.accepting {
                        self.laststart = Some(now);
                        fx.push(Effect::Spawn);
                    } else {
                        // The daemon started shutting down while this waited.
                        self.change(ProcessState::Stopped, &mut fx);
                    }
                }
            }
            Event::DependencyLost => match self.state {
                ProcessState::Running | ProcessState::Starting
                    if self.pid.is_some() && !self.killing =>
                {
                    let message =
                        format!("stopping {}: a dependency is not available", self.config.name);
                    fx.push(Effect::Log { level: Level::Info, message });
                    self.after_stop = AfterStop::Requeue;
                    self.kill(self.config.stopsignal, &mut fx);
                }
                ProcessState::Backoff if self.accepting => self.spawn(now, &mut fx),
                ProcessState::Exited if self.restart_pending.is_some() && self.accepting => {
                    self.spawn(now, &mut fx)
                }
                _ => {}
            },
            Event::ReadinessPassed => {
                if self.state == ProcessState::Starting
                    && self.pid.is_some()
                    && self.config.readiness
                    && !self.killing
                {
                    self.enter_running(now, "readiness probe passed".to_owned(), &mut fx);
                }
            }
            Event::ReadinessFailed => {
                if self.state == ProcessState::Starting && self.pid.is_some() && !self.killing {
                    let message = format!("readiness probe of {} failed", self.config.name);
                    fx.push(Effect::Log { level: Level::Warn, message });
                    self.spawnerr = Some(READINESS_FAILED.to_owned());
                    self.after_stop = AfterStop::Backoff;
                    self.kill(self.config.stopsignal, &mut fx);
                }
            }
            Event::LivenessFailed | Event::MemoryThresholdPassed => {
                if self.state == ProcessState::Running && self.pid.is_some() && !self.killing {
                    let (message, spawnerr) = if matches!(event, Event::LivenessFailed) {
                        ("liveness probe of {} failed; restarting it", LIVENESS_FAILED)
                    } else {
                        (
                            "{} passed its memory_restart_threshold; restarting it",
                            MEMORY_THRESHOLD_PASSED,
                        )
                    };
                    let message = message.replace("{}", &self.config.name);
                    fx.push(Effect::Log { level: Level::Warn, message });
                    self.spawnerr = Some(spawnerr.to_owned());
                    self.after_stop = AfterStop::Restart;
                    self.kill(self.config.stopsignal, &mut fx);
                }
            }
            Event::RestartApproved => self.restart_approved(now, &mut fx),
            Event::RestartDenied => {
                if self.restart_pending.take().is_some()
                    && matches!(self.state, ProcessState::Exited | ProcessState::Backoff)
                {
                    self.budget_exhausted(&mut fx);
                }
            }
            Event::GroupFatal => match self.state {
                ProcessState::Starting if self.waiting => {
                    self.waiting = false;
                    self.budget_exhausted(&mut fx);
                }
                ProcessState::Running | ProcessState::Starting if self.pid.is_some() => {
                    self.spawnerr = Some(BUDGET_EXHAUSTED.to_owned());
                    self.after_stop = AfterStop::Fatal;
                    if !self.killing {
                        self.kill(self.config.stopsignal, &mut fx);
                    }
                }
                ProcessState::Stopping => self.after_stop = AfterStop::Fatal,
                ProcessState::Backoff => self.budget_exhausted(&mut fx),
                ProcessState::Exited if self.restart_pending.is_some() => {
                    self.budget_exhausted(&mut fx)
                }
                _ => {}
            },
        }
        fx
    }

    /// Gives up on a member of a group whose restart budget ran out.
    fn budget_exhausted(&mut self, fx: &mut Vec<Effect>) {
        self.restart_pending = None;
        self.delayed_restart = false;
        self.spawnerr = Some(BUDGET_EXHAUSTED.to_owned());
        self.give_up(fx);
        let message = format!(
            "gave up: {} entered FATAL state, restart budget of its group exhausted",
            self.config.name
        );
        fx.push(Effect::Log { level: Level::Info, message });
        // The group already escalates a budget that ran out (`on_fatal`); only
        // an essential program adds its own end.
        if self.config.essential && self.accepting {
            fx.push(Effect::Ended { fatal: true, status: self.last_exit });
        }
    }

    /// STARTING -> RUNNING, by `startsecs` or by the readiness probe.
    fn enter_running(&mut self, now: Instant, why: String, fx: &mut Vec<Effect>) {
        self.backoff = 0;
        self.running_since = Some(now);
        self.change(ProcessState::Running, fx);
        let message = format!("success: {} entered RUNNING state, {why}", self.config.name);
        fx.push(Effect::Log { level: Level::Info, message });
    }

    /// Asks the group for an automatic restart. Deaths after RUNNING count toward
    /// the restart backoff when `backoff_reset_after` is set; without it the
    /// counter stays 0 (supervisord restarts such a process at once).
    fn request_restart(&mut self, cause: RestartCause, now: Instant, fx: &mut Vec<Effect>) {
        if cause != RestartCause::Retry {
            match self.config.backoff.reset_after {
                Some(reset) => {
                    let stable = self
                        .running_since
                        .is_some_and(|since| now.saturating_duration_since(since) >= reset);
                    if stable {
                        self.restarts = 0;
                    }
                    self.restarts += 1;
                }
                None => self.restarts = 0,
            }
        }
        self.restart_pending = Some(cause);
        fx.push(Effect::RestartWanted { cause });
    }

    fn restart_approved(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Some(cause) = self.restart_pending.take() else {
            return;
        };
        if !self.accepting {
            return;
        }
        match (cause, self.state) {
            (RestartCause::Retry, ProcessState::Backoff) => self.spawn(now, fx),
            (RestartCause::Exited | RestartCause::Unhealthy, ProcessState::Exited) => {
                if self.restarts == 0 {
                    self.spawn(now, fx);
                } else {
                    let sample = self.next_sample();
                    let wait = backoff_delay(&self.config.backoff, self.restarts, sample);
                    self.delayed_restart = true;
                    self.change(ProcessState::Backoff, fx);
                    let message = format!(
                        "restarting {} in {:.3}s (restart {} since its last stable run)",
                        self.config.name,
                        wait.as_secs_f64(),
                        self.restarts
                    );
                    fx.push(Effect::Log { level: Level::Info, message });
                    self.arm(TimerKind::Backoff, wait, fx);
                }
            }
            _ => {}
        }
    }

    fn start_requested(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let refusal = match self.state {
            ProcessState::Starting | ProcessState::Running | ProcessState::Backoff => {
                Some(Refusal::AlreadyStarted)
            }
            ProcessState::Unknown => Some(Refusal::UnknownState),
            ProcessState::Stopping => Some(Refusal::Stopping),
            ProcessState::Stopped | ProcessState::Exited | ProcessState::Fatal => {
                if self.accepting { None } else { Some(Refusal::ShuttingDown) }
            }
        };
        match refusal {
            Some(refusal) => fx.push(Effect::Refused(refusal)),
            None => self.spawn(now, fx),
        }
    }

    /// supervisord's `Subprocess.spawn` up to the fork: reset the per-attempt
    /// fields, enter STARTING and ask the caller to spawn.
    fn spawn(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.killing = false;
        self.spawnerr = None;
        self.exitstatus = None;
        self.laststart = Some(now);
        self.restart_pending = None;
        self.delayed_restart = false;
        self.after_stop = AfterStop::Stopped;
        self.change(ProcessState::Starting, fx);
        if self.config.dependencies {
            self.waiting = true;
            fx.push(Effect::AwaitDependencies);
        } else {
            fx.push(Effect::Spawn);
        }
    }

    /// supervisord's `Subprocess.finish`: the child was reaped.
    fn finish(&mut self, status: ExitStatus, now: Instant, fx: &mut Vec<Effect>) {
        self.pid = None;
        self.last_exit = Some(status);
        let name = self.config.name.clone();
        let code = status.supervisord_code();
        let expected = self.config.exitcodes.contains(&code);
        let too_quickly = self
            .laststart
            .is_some_and(|start| now.saturating_duration_since(start) < self.config.startsecs);
        let level = if expected { Level::Info } else { Level::Warn };
        let not_ready = self.config.readiness && self.state == ProcessState::Starting;
        if self.killing {
            self.killing = false;
            self.exitstatus = Some(status);
            let message = format!("stopped: {} ({})", name, status.describe());
            match std::mem::replace(&mut self.after_stop, AfterStop::Stopped) {
                AfterStop::Stopped => {
                    self.change(ProcessState::Stopped, fx);
                    fx.push(Effect::Log { level, message });
                }
                AfterStop::Fatal => {
                    self.change(ProcessState::Fatal, fx);
                    fx.push(Effect::Log { level, message });
                }
                AfterStop::Backoff => {
                    self.exitstatus = None;
                    self.backoff += 1;
                    self.change(ProcessState::Backoff, fx);
                    fx.push(Effect::Log { level, message });
                    self.after_backoff_entered(fx);
                }
                AfterStop::Restart => {
                    self.change(ProcessState::Exited, fx);
                    fx.push(Effect::Log { level, message });
                    if self.accepting {
                        self.request_restart(RestartCause::Unhealthy, now, fx);
                    }
                }
                AfterStop::Requeue => {
                    self.change(ProcessState::Exited, fx);
                    fx.push(Effect::Log { level, message });
                    if self.accepting {
                        self.spawn(now, fx);
                    }
                }
            }
        } else if self.state == ProcessState::Starting && (too_quickly || not_ready) {
            self.exitstatus = None;
            self.spawnerr = Some(EXITED_TOO_QUICKLY.to_owned());
            self.backoff += 1;
            self.change(ProcessState::Backoff, fx);
            let message = format!("exited: {} ({}; not expected)", name, status.describe());
            fx.push(Effect::Log { level: Level::Warn, message });
            self.after_backoff_entered(fx);
        } else if self.state == ProcessState::Unknown {
            self.exitstatus = Some(status);
            self.change(ProcessState::Exited, fx);
            let message =
                format!("exited: {} ({}; {})", name, status.describe(), expectation(expected));
            fx.push(Effect::Log { level, message });
        } else {
            self.backoff = 0;
            self.exitstatus = Some(status);
            if self.state == ProcessState::Starting {
                // The exit came after startsecs but before the timer was handled:
                // supervisord forces STARTING -> RUNNING here, without the
                // `success:` line.
                self.running_since = Some(now);
                self.change(ProcessState::Running, fx);
            }
            if !expected {
                self.spawnerr = Some(format!("Bad exit code {code}"));
            }
            self.change(ProcessState::Exited, fx);
            let message =
                format!("exited: {} ({}; {})", name, status.describe(), expectation(expected));
            fx.push(Effect::Log { level, message });
            let restart = match self.config.autorestart {
                AutoRestart::False => false,
                AutoRestart::Unexpected => !expected,
                AutoRestart::True => true,
            };
            if self.config.essential {
                // Only while running normally: during a shutdown the daemon's
                // exit status is already decided.
                if self.accepting {
                    fx.push(Effect::Ended { fatal: false, status: Some(status) });
                }
            } else if restart && self.accepting {
                self.request_restart(RestartCause::Exited, now, fx);
            }
        }
    }

    fn timer_fired(&mut self, kind: TimerKind, now: Instant, fx: &mut Vec<Effect>) {
        match (kind, self.state) {
            (TimerKind::StartSecs, ProcessState::Starting) => {
                let why = format!(
                    "process has stayed up for > than {} seconds (startsecs)",
                    self.config.startsecs.as_secs()
                );
                self.enter_running(now, why, fx);
            }
            (TimerKind::Backoff, ProcessState::Backoff) if self.accepting => {
                if std::mem::take(&mut self.delayed_restart) {
                    self.spawn(now, fx);
                } else if self.backoff <= self.config.startretries {
                    self.request_restart(RestartCause::Retry, now, fx);
                }
            }
            (TimerKind::StopTimeout, ProcessState::Stopping) => {
                if let Some(pid) = self.pid {
                    let message = format!("killing '{}' ({}) with SIGKILL", self.config.name, pid);
                    fx.push(Effect::Log { level: Level::Warn, message });
                    self.kill(libc::SIGKILL, fx);
                }
            }
            (TimerKind::StopReport, ProcessState::Stopping) => self.stop_report(fx),
            // A timer always belongs to the state that armed it and entering a new
            // state disarms it, so this is unreachable; ignoring is the safe answer.
            _ => {}
        }
    }

    /// supervisord's `Subprocess.kill`, for a state with a child.
    fn kill(&mut self, sig: i32, fx: &mut Vec<Effect>) {
        let Some(pid) = self.pid else {
            let message = format!(
                "attempted to kill {} with sig {} but it wasn't running",
                self.config.name,
                signal_name(sig)
            );
            fx.push(Effect::Log { level: Level::Debug, message });
            return;
        };
        // The first signal honours stopasgroup; the SIGKILL after stopwaitsecs
        // honours killasgroup.
        let group = if self.state == ProcessState::Stopping {
            self.config.killasgroup
        } else {
            self.config.stopasgroup
        };
        let message = format!(
            "killing {} (pid {}) {}with signal {}",
            self.config.name,
            pid,
            if group { "process group " } else { "" },
            signal_name(sig)
        );
        fx.push(Effect::Log { level: Level::Debug, message });
        self.killing = true;
        self.change(ProcessState::Stopping, fx);
        self.arm(TimerKind::StopTimeout, self.config.stopwaitsecs, fx);
        fx.push(Effect::Signal { pid, sig, group, purpose: SignalPurpose::Stop });
    }

    fn stop_report(&mut self, fx: &mut Vec<Effect>) {
        if self.state == ProcessState::Stopping {
            let message = format!("waiting for {} to stop", self.config.name);
            fx.push(Effect::Log { level: Level::Info, message });
            self.arm(TimerKind::StopReport, STOP_REPORT_INTERVAL, fx);
        }
    }

    /// The checks supervisord's `transition()` makes in BACKOFF, done at once.
    fn after_backoff_entered(&mut self, fx: &mut Vec<Effect>) {
        if self.state != ProcessState::Backoff {
            return;
        }
        if self.backoff > self.config.startretries {
            self.give_up(fx);
            let message = format!(
                "gave up: {} entered FATAL state, too many start retries too quickly",
                self.config.name
            );
            fx.push(Effect::Log { level: Level::Info, message });
            if self.accepting {
                fx.push(Effect::Ended { fatal: true, status: self.last_exit });
            }
        } else {
            let sample = self.next_sample();
            let wait = backoff_delay(&self.config.backoff, self.backoff, sample);
            self.arm(TimerKind::Backoff, wait, fx);
        }
    }

    fn give_up(&mut self, fx: &mut Vec<Effect>) {
        self.backoff = 0;
        self.restart_pending = None;
        self.delayed_restart = false;
        self.change(ProcessState::Fatal, fx);
    }

    /// supervisord's `change_state`: publishes the change, counts BACKOFF entries
    /// and disarms the timers of the state being left.
    fn change(&mut self, to: ProcessState, fx: &mut Vec<Effect>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.armed = [None; 4];
        fx.push(Effect::StateChanged { from, to });
    }

    fn arm(&mut self, kind: TimerKind, after: Duration, fx: &mut Vec<Effect>) {
        self.next_token += 1;
        let timer = Timer { kind, token: self.next_token };
        self.armed[kind.index()] = NonZeroU64::new(timer.token);
        fx.push(Effect::Schedule { timer, after });
    }

    /// splitmix64, mapped to `[0, 1)`.
    fn next_sample(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn expectation(expected: bool) -> &'static str {
    if expected { "expected" } else { "not expected" }
}

mod carry;
#[cfg(test)]
mod tests;

pub use carry::{CarriedExit, CarriedLifecycle};
