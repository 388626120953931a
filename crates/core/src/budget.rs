//! [`Budget`]: a group's restart intensity window (Erlang's MaxR in MaxT).
//!
//! Every automatic restart of a member asks the budget first: a start retry
//! after BACKOFF, a restart after a death in RUNNING, a restart after a failed
//! liveness probe, and one per strategy restart of the group (OTP counts one
//! restart per event, however many children it restarts). When a restart would
//! make more than `max_restarts` within `max_restarts_period`, it is refused and
//! the group goes FATAL. The window is shared by the group actor and its process
//! actors behind a mutex, so one_for_one restarts are admitted synchronously in
//! the process actor with no mailbox round trip.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// One group's restart window.
#[derive(Debug)]
pub(crate) struct Budget {
    /// `None`: unlimited (supervisord's behaviour).
    max: Option<u32>,
    period: Duration,
    window: Mutex<VecDeque<Instant>>,
}

impl Budget {
    pub(crate) fn new(max: Option<u32>, period: Duration) -> Budget {
        Budget { max, period, window: Mutex::new(VecDeque::new()) }
    }

    /// Records a restart at `now` if the budget allows it. A refusal empties the
    /// window, so a user's later start of the FATAL group gets a fresh budget.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        let Some(max) = self.max else {
            return true;
        };
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        while window.front().is_some_and(|at| now.saturating_duration_since(*at) >= self.period) {
            window.pop_front();
        }
        if window.len() >= max as usize {
            window.clear();
            return false;
        }
        window.push_back(now);
        true
    }

    /// Human text for logs: `5 restarts in 60s`.
    pub(crate) fn describe(&self) -> String {
        match self.max {
            Some(max) => format!("more than {max} restarts in {:?}", self.period),
            None => "unlimited".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn admits_max_restarts_per_sliding_period() {
        let budget = Budget::new(Some(2), Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(budget.admit(t0));
        assert!(budget.admit(t0 + Duration::from_secs(4)));
        assert!(!budget.admit(t0 + Duration::from_secs(5)), "third within 10 s");
        // The refusal emptied the window.
        assert!(budget.admit(t0 + Duration::from_secs(6)));
        assert!(budget.admit(t0 + Duration::from_secs(7)));
        // 6 s has left the window at 16 s.
        assert!(budget.admit(t0 + Duration::from_secs(16)));
        assert!(!budget.admit(t0 + Duration::from_secs(16)));
    }

    #[test]
    fn unlimited_without_max() {
        let budget = Budget::new(None, Duration::from_secs(1));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("rt");
        rt.block_on(async {
            for _ in 0..1000 {
                assert!(budget.admit(Instant::now()));
            }
        });
        assert_eq!(budget.describe(), "unlimited");
    }
}
