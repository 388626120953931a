//! How many control connections the daemon holds, and who may still connect
//! when the sockets are full. See the "Limits" part of the [`listen`](super)
//! docs for the figures and their reasons.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Connections one listener holds at once for ordinary peers.
pub const MAX_CONNECTIONS: usize = 128;

/// Connections one listener accepts beyond [`MAX_CONNECTIONS`] from its owner:
/// a peer on the UNIX socket whose uid (`SO_PEERCRED`) is the daemon's or root's.
pub const OWNER_RESERVE: usize = 8;

/// How often a repeated refusal is logged at most.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The limits one listener applies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held at once for ordinary peers.
    pub max_connections: usize,
    /// Extra connections for the owner.
    pub owner_reserve: usize,
}

impl Limits {
    /// The documented figures.
    pub fn standard() -> Limits {
        Limits { max_connections: MAX_CONNECTIONS, owner_reserve: OWNER_RESERVE }
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its maximum (and, for the owner, its reserve too).
    ListenerFull { max: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ListenerFull { max } => write!(f, "the socket holds its {max} connections"),
        }
    }
}

/// A held place in the listener's count, given back on drop.
#[derive(Debug)]
pub(super) struct Slot {
    listener: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One listener's count of its connections, under its [`Limits`].
#[derive(Debug)]
pub(super) struct Gate {
    limits: Limits,
    live: Arc<AtomicUsize>,
}

impl Gate {
    pub(super) fn new(limits: Limits) -> Gate {
        Gate { limits, live: Arc::new(AtomicUsize::new(0)) }
    }

    /// Connections this listener holds now.
    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Admits a new connection, or says why not. `owner` is asked only when
    /// the ordinary places are taken.
    pub(super) fn admit(&self, owner: impl FnOnce() -> bool) -> Result<Slot, Refusal> {
        let mine = self.live();
        if mine >= self.limits.max_connections {
            let reserve_left = mine < self.limits.max_connections + self.limits.owner_reserve;
            if !reserve_left || !owner() {
                return Err(Refusal::ListenerFull { max: self.limits.max_connections });
            }
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { listener: Arc::clone(&self.live) })
    }
}

/// Whether a peer with `uid` is the owner of a daemon running as `daemon_uid`.
pub(super) fn is_owner(uid: u32, daemon_uid: u32) -> bool {
    uid == daemon_uid || uid == 0
}

/// Lets a repeated event through to the log at most once per `every`, counting
/// the ones it held back.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Throttle {
        Throttle { every, last: None, held_back: 0 }
    }

    /// Records one event. `Some(n)` means: log it now, mentioning the `n`
    /// held back since the last line.
    pub(super) fn note(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.every) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// " (and N more in the last 60s)" when `held_back` is not zero.
pub(super) fn held_back_note(held_back: u64) -> String {
    if held_back == 0 {
        String::new()
    } else {
        format!(" (and {held_back} more in the last {}s)", REPORT_EVERY.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_connections: usize, owner_reserve: usize) -> Gate {
        Gate::new(Limits { max_connections, owner_reserve })
    }

    #[test]
    fn a_full_listener_refuses_all_but_its_owner_up_to_the_reserve() {
        let gate = gate(2, 1);
        let held: Vec<Slot> = (0..2).map(|_| gate.admit(|| false).unwrap()).collect();
        assert_eq!(gate.admit(|| false).unwrap_err(), Refusal::ListenerFull { max: 2 });
        let owners = gate.admit(|| true).expect("the owner's reserve");
        assert_eq!(gate.admit(|| true).unwrap_err(), Refusal::ListenerFull { max: 2 });
        assert_eq!(gate.live(), 3);
        drop(owners);
        drop(held);
        assert_eq!(gate.live(), 0);
        assert!(gate.admit(|| false).is_ok(), "closed connections give their places back");
    }

    #[test]
    fn the_owner_is_asked_only_when_the_ordinary_places_are_taken() {
        let gate = gate(2, 1);
        let _slot = gate.admit(|| panic!("no need to look at the peer")).unwrap();
    }

    #[test]
    fn owners_are_the_daemons_uid_and_root() {
        assert!(is_owner(1000, 1000));
        assert!(is_owner(0, 1000));
        assert!(!is_owner(1001, 1000));
        assert!(is_owner(0, 0));
        assert!(!is_owner(65534, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let mut throttle = Throttle::new(REPORT_EVERY);
        assert_eq!(throttle.note(), Some(0));
        let mut logged = 0;
        // Ten events a second for two and a half periods.
        for _ in 0..1500 {
            tokio::time::advance(Duration::from_millis(100)).await;
            if let Some(held_back) = throttle.note() {
                logged += 1;
                assert_eq!(held_back, 599, "a period's worth, reported with the next line");
            }
        }
        assert_eq!(logged, 2);
        assert_eq!(held_back_note(0), "");
        assert_eq!(held_back_note(3), " (and 3 more in the last 60s)");
    }
}
