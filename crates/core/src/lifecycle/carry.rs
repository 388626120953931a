//! A [`Lifecycle`] written down for a live upgrade and read back by the new
//! image: every field of the machine but its settings (the new image reads
//! them from the same config), each instant turned into an age in
//! milliseconds so the format does not depend on how either image reads the
//! monotonic clock.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{AfterStop, Lifecycle, LifecycleConfig, ProcessState, RestartCause, TimerKind};
use crate::exit::ExitStatus;

/// The machine's state, as the handover format carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedLifecycle {
    /// supervisord's state code.
    pub state: i32,
    /// The current child.
    pub pid: Option<u32>,
    /// supervisord's backoff counter.
    pub backoff: u32,
    /// A stop signal was sent to the child.
    pub killing: bool,
    /// Milliseconds since the last spawn attempt.
    pub laststart_age_ms: Option<u64>,
    /// Why the last start failed.
    pub spawnerr: Option<String>,
    /// The last exit status.
    pub exitstatus: Option<CarriedExit>,
    /// The last child's exit, kept through BACKOFF.
    pub last_exit: Option<CarriedExit>,
    /// Automatic starts are allowed.
    pub accepting: bool,
    /// The last timer token handed out.
    pub next_token: u64,
    /// The armed token of each timer kind, in [`TimerKind`] index order.
    pub armed: [Option<u64>; 4],
    /// The jitter generator's state.
    pub rng: u64,
    /// STARTING without a child, waiting for the dependencies.
    pub waiting: bool,
    /// What the exit of a child being stopped leads to (0..=4).
    pub after_stop: u8,
    /// An unanswered restart request (0..=2).
    pub restart_pending: Option<u8>,
    /// BACKOFF is an approved restart's delay.
    pub delayed_restart: bool,
    /// Automatic restarts counted toward the backoff.
    pub restarts: u32,
    /// Milliseconds since the process last entered RUNNING.
    pub running_since_age_ms: Option<u64>,
}

/// An [`ExitStatus`] in the handover format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CarriedExit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
    /// Killed by a signal, with a core dump.
    Dumped(i32),
}

impl From<ExitStatus> for CarriedExit {
    fn from(status: ExitStatus) -> CarriedExit {
        match status {
            ExitStatus::Code(code) => CarriedExit::Code(code),
            ExitStatus::Signal(sig) => CarriedExit::Signal(sig),
            ExitStatus::Dumped(sig) => CarriedExit::Dumped(sig),
        }
    }
}

impl From<CarriedExit> for ExitStatus {
    fn from(status: CarriedExit) -> ExitStatus {
        match status {
            CarriedExit::Code(code) => ExitStatus::Code(code),
            CarriedExit::Signal(sig) => ExitStatus::Signal(sig),
            CarriedExit::Dumped(sig) => ExitStatus::Dumped(sig),
        }
    }
}

const AFTER_STOP: [AfterStop; 5] = [
    AfterStop::Stopped,
    AfterStop::Backoff,
    AfterStop::Restart,
    AfterStop::Requeue,
    AfterStop::Fatal,
];
const CAUSES: [RestartCause; 3] =
    [RestartCause::Retry, RestartCause::Exited, RestartCause::Unhealthy];

fn age(then: Option<Instant>, now: Instant) -> Option<u64> {
    then.map(|then| {
        u64::try_from(now.saturating_duration_since(then).as_millis()).unwrap_or(u64::MAX)
    })
}

fn back(age_ms: Option<u64>, now: Instant) -> Option<Instant> {
    // An age older than the clock's origin cannot be expressed; the oldest
    // instant there is reads the same to every rule that uses it.
    age_ms.map(|ms| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now))
}

impl Lifecycle {
    /// The state to carry, at monotonic time `now`.
    pub fn carry(&self, now: Instant) -> CarriedLifecycle {
        CarriedLifecycle {
            state: self.state.code(),
            pid: self.pid,
            backoff: self.backoff,
            killing: self.killing,
            laststart_age_ms: age(self.laststart, now),
            spawnerr: self.spawnerr.clone(),
            exitstatus: self.exitstatus.map(CarriedExit::from),
            last_exit: self.last_exit.map(CarriedExit::from),
            accepting: self.accepting,
            next_token: self.next_token,
            armed: self.armed.map(|token| token.map(NonZeroU64::get)),
            rng: self.rng,
            waiting: self.waiting,
            after_stop: AFTER_STOP.iter().position(|a| *a == self.after_stop).unwrap_or(0) as u8,
            restart_pending: self
                .restart_pending
                .and_then(|cause| CAUSES.iter().position(|c| *c == cause))
                .map(|index| index as u8),
            delayed_restart: self.delayed_restart,
            restarts: self.restarts,
            running_since_age_ms: age(self.running_since, now),
        }
    }

    /// The machine `carried` describes, under `config`, at monotonic time
    /// `now`; an error names the field the format does not allow.
    pub fn resume(
        config: LifecycleConfig,
        carried: &CarriedLifecycle,
        now: Instant,
    ) -> Result<Lifecycle, String> {
        let state = ProcessState::ALL
            .into_iter()
            .find(|state| state.code() == carried.state)
            .ok_or_else(|| format!("unknown state code {}", carried.state))?;
        let after_stop = *AFTER_STOP
            .get(usize::from(carried.after_stop))
            .ok_or_else(|| format!("unknown after-stop code {}", carried.after_stop))?;
        let restart_pending = match carried.restart_pending {
            None => None,
            Some(code) => Some(
                *CAUSES
                    .get(usize::from(code))
                    .ok_or_else(|| format!("unknown restart cause {code}"))?,
            ),
        };
        Ok(Lifecycle {
            config,
            state,
            pid: carried.pid,
            backoff: carried.backoff,
            killing: carried.killing,
            laststart: back(carried.laststart_age_ms, now),
            spawnerr: carried.spawnerr.clone(),
            exitstatus: carried.exitstatus.map(ExitStatus::from),
            last_exit: carried.last_exit.map(ExitStatus::from),
            accepting: carried.accepting,
            next_token: carried.next_token,
            armed: carried.armed.map(|token| token.and_then(NonZeroU64::new)),
            rng: carried.rng,
            waiting: carried.waiting,
            after_stop,
            restart_pending,
            delayed_restart: carried.delayed_restart,
            restarts: carried.restarts,
            running_since: back(carried.running_since_age_ms, now),
        })
    }

    /// Every armed timer kind, for the caller to carry its remaining time.
    pub fn armed_kinds(&self) -> Vec<TimerKind> {
        [TimerKind::StartSecs, TimerKind::Backoff, TimerKind::StopTimeout, TimerKind::StopReport]
            .into_iter()
            .filter(|kind| self.armed[kind.index()].is_some())
            .collect()
    }
}

impl TimerKind {
    /// The kind's number in the handover format.
    pub fn code(self) -> u8 {
        self.index() as u8
    }

    /// The kind numbered `code` by [`TimerKind::code`].
    pub fn from_code(code: u8) -> Option<TimerKind> {
        [TimerKind::StartSecs, TimerKind::Backoff, TimerKind::StopTimeout, TimerKind::StopReport]
            .into_iter()
            .find(|kind| kind.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Effect, Event};

    fn config() -> LifecycleConfig {
        LifecycleConfig {
            name: "p".to_owned(),
            autostart: true,
            startsecs: Duration::from_secs(1),
            startretries: 3,
            autorestart: vigil_config::AutoRestart::Unexpected,
            exitcodes: vec![0],
            stopsignal: libc::SIGTERM,
            stopwaitsecs: Duration::from_secs(10),
            stopasgroup: false,
            killasgroup: false,
            backoff: vigil_config::BackoffConfig {
                kind: vigil_config::BackoffKind::Linear,
                initial: Duration::from_secs(1),
                max: None,
                multiplier: 2.0,
                jitter: 0.0,
                reset_after: None,
            },
            readiness: false,
            dependencies: false,
            essential: false,
        }
    }

    #[test]
    fn a_carried_machine_resumes_where_it_was() {
        let start = Instant::now();
        let mut machine = Lifecycle::new(config(), 7);
        machine.step(Event::StartRequested, start);
        machine.step(Event::Spawned { pid: 42 }, start);
        let later = start + Duration::from_secs(3);
        let carried = machine.carry(later);
        let json = serde_json::to_string(&carried).unwrap();
        let read: CarriedLifecycle = serde_json::from_str(&json).unwrap();
        assert_eq!(read, carried);
        let resumed_at = Instant::now() + Duration::from_secs(5);
        let mut resumed = Lifecycle::resume(config(), &read, resumed_at).unwrap();
        assert_eq!(resumed.state(), ProcessState::Starting);
        assert_eq!(resumed.pid(), Some(42));
        assert_eq!(resumed.carry(resumed_at), carried);
        // The carried StartSecs timer is the one the resumed machine accepts.
        let timer = resumed.armed(TimerKind::StartSecs).expect("armed");
        let effects = resumed.step(Event::Timer(timer), resumed_at);
        assert!(effects.iter().any(|effect| matches!(
            effect,
            Effect::StateChanged { to: ProcessState::Running, .. }
        )));
    }

    #[test]
    fn a_bad_state_code_is_refused() {
        let mut carried = Lifecycle::new(config(), 1).carry(Instant::now());
        carried.state = 7;
        assert!(Lifecycle::resume(config(), &carried, Instant::now()).is_err());
    }
}
