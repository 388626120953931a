//! How many control connections the daemon holds, and who may still connect
//! when the sockets are full. See the "Limits" part of the [`listen`](super)
//! docs for the figures and their reasons.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Connections one listener holds at once for ordinary peers.
pub const MAX_CONNECTIONS: usize = 128;

/// Connections one listener accepts beyond [`MAX_CONNECTIONS`] from its owner:
/// a peer on the UNIX socket whose uid (`SO_PEERCRED`) is the daemon's or root's.
pub const OWNER_RESERVE: usize = 8;

/// Descriptors kept free for spawning and logging (a spawn opens four pipes and
/// up to two log files), or a quarter of the descriptor limit if that is less.
pub const SPAWN_RESERVE: usize = 64;

/// How long the accept loop pauses after a failed accept (`EMFILE` and the
/// like) when no connection closes in the meantime.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a repeated refusal or accept failure is logged at most.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The limits one listener applies.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections held at once for ordinary peers.
    pub max_connections: usize,
    /// Extra connections for the owner.
    pub owner_reserve: usize,
    /// The daemon-wide descriptor budget, shared by every listener.
    pub descriptors: Arc<Descriptors>,
}

impl Limits {
    /// The documented figures, with the process's descriptor budget.
    pub fn standard() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            owner_reserve: OWNER_RESERVE,
            descriptors: Descriptors::process(),
        }
    }
}

/// The share of the daemon's descriptors control connections may use, and a
/// count of the connections that hold one. Counting connections, rather than
/// listing `/proc/self/fd` at every accept, keeps the check free.
#[derive(Debug)]
pub struct Descriptors {
    soft_limit: usize,
    live: AtomicUsize,
    closed: Notify,
}

impl Descriptors {
    /// A budget for a process whose soft `RLIMIT_NOFILE` is `soft_limit`.
    pub fn new(soft_limit: usize) -> Descriptors {
        Descriptors { soft_limit, live: AtomicUsize::new(0), closed: Notify::new() }
    }

    /// The budget of this process, made at its first use from the soft
    /// `RLIMIT_NOFILE` then (vigild raises its limit before it serves).
    pub fn process() -> Arc<Descriptors> {
        static PROCESS: OnceLock<Arc<Descriptors>> = OnceLock::new();
        Arc::clone(PROCESS.get_or_init(|| {
            let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
            Arc::new(Descriptors::new(usize::try_from(soft).unwrap_or(usize::MAX)))
        }))
    }

    /// Connections all listeners together may hold: half the descriptors.
    pub fn max_connections(&self) -> usize {
        self.soft_limit / 2
    }

    /// Descriptors that must stay free above any accepted connection's.
    pub fn spawn_reserve(&self) -> usize {
        SPAWN_RESERVE.min(self.soft_limit / 4)
    }

    /// Connections open now, over all listeners.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Waits until some connection closes.
    pub async fn closed(&self) {
        self.closed.notified().await;
    }
}

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its maximum (and, for the owner, its reserve too).
    ListenerFull {
        /// The listener's maximum.
        max: usize,
    },
    /// Connections hold the half of the descriptors they may use.
    DescriptorShare {
        /// The descriptors all connections together may hold.
        max: usize,
    },
    /// The new descriptor is too near the limit for a spawn to be sure to find
    /// its pipes.
    DescriptorHeadroom {
        /// The new connection's descriptor.
        fd: RawFd,
        /// The process's descriptor limit.
        limit: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ListenerFull { max } => write!(f, "the socket holds its {max} connections"),
            Refusal::DescriptorShare { max } => {
                write!(f, "control connections hold their share of descriptors ({max})")
            }
            Refusal::DescriptorHeadroom { fd, limit } => write!(
                f,
                "descriptor {fd} is too near the limit of {limit}; the rest is kept for spawning"
            ),
        }
    }
}

/// A held place in both counts; giving it back (on drop) wakes an accept loop
/// that paused for lack of descriptors.
#[derive(Debug)]
pub(super) struct Slot {
    listener: Arc<AtomicUsize>,
    descriptors: Arc<Descriptors>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.fetch_sub(1, Ordering::Relaxed);
        self.descriptors.live.fetch_sub(1, Ordering::Relaxed);
        self.descriptors.closed.notify_waiters();
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

    pub(super) fn descriptors(&self) -> &Arc<Descriptors> {
        &self.limits.descriptors
    }

    /// Connections this listener holds now.
    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Admits the connection that got descriptor `fd`, or says why not.
    /// `owner` is asked only when the ordinary places are taken.
    pub(super) fn admit(&self, fd: RawFd, owner: impl FnOnce() -> bool) -> Result<Slot, Refusal> {
        let descriptors = &self.limits.descriptors;
        // The kernel hands out the lowest free descriptor, so every one below
        // `fd` is open: a high `fd` proves the table is nearly full, whatever
        // holds it (programs' pipes and logs count too).
        let ceiling = descriptors.soft_limit.saturating_sub(descriptors.spawn_reserve());
        if usize::try_from(fd).map_or(true, |fd| fd >= ceiling) {
            return Err(Refusal::DescriptorHeadroom { fd, limit: descriptors.soft_limit });
        }
        let share = descriptors.max_connections();
        let (mine, all) = (self.live(), descriptors.live());
        let ordinary = share.saturating_sub(self.limits.owner_reserve);
        if mine >= self.limits.max_connections || all >= ordinary {
            let reserve_left =
                mine < self.limits.max_connections + self.limits.owner_reserve && all < share;
            if !reserve_left || !owner() {
                return Err(if mine >= self.limits.max_connections {
                    Refusal::ListenerFull { max: self.limits.max_connections }
                } else {
                    Refusal::DescriptorShare { max: ordinary }
                });
            }
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        descriptors.live.fetch_add(1, Ordering::Relaxed);
        Ok(Slot { listener: Arc::clone(&self.live), descriptors: Arc::clone(descriptors) })
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

/// " (and N more since the last report)" when `held_back` is not zero.
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

    fn gate(max_connections: usize, owner_reserve: usize, soft_limit: usize) -> Gate {
        let descriptors = Arc::new(Descriptors::new(soft_limit));
        Gate::new(Limits { max_connections, owner_reserve, descriptors })
    }

    #[test]
    fn a_full_listener_refuses_all_but_its_owner_up_to_the_reserve() {
        let gate = gate(2, 1, 10_000);
        let held: Vec<Slot> = (0..2).map(|_| gate.admit(10, || false).unwrap()).collect();
        assert_eq!(gate.admit(10, || false).unwrap_err(), Refusal::ListenerFull { max: 2 });
        let owners = gate.admit(10, || true).expect("the owner's reserve");
        assert_eq!(gate.admit(10, || true).unwrap_err(), Refusal::ListenerFull { max: 2 });
        assert_eq!(gate.live(), 3);
        drop(owners);
        drop(held);
        assert_eq!((gate.live(), gate.descriptors().live()), (0, 0));
        assert!(gate.admit(10, || false).is_ok(), "closed connections give their places back");
    }

    #[test]
    fn the_owner_is_asked_only_when_the_ordinary_places_are_taken() {
        let gate = gate(2, 1, 10_000);
        let _slot = gate.admit(10, || panic!("no need to look at the peer")).unwrap();
    }

    #[test]
    fn all_listeners_together_hold_at_most_half_the_descriptors() {
        // 40 descriptors: 20 for connections, 2 of them the owner's reserve.
        let descriptors = Arc::new(Descriptors::new(40));
        let listener = |max| {
            Gate::new(Limits {
                max_connections: max,
                owner_reserve: 2,
                descriptors: Arc::clone(&descriptors),
            })
        };
        let (unix, tcp) = (listener(100), listener(100));
        let mut held: Vec<Slot> = (0..10).map(|_| unix.admit(5, || false).unwrap()).collect();
        held.extend((0..8).map(|_| tcp.admit(5, || false).unwrap()));
        assert_eq!(tcp.admit(5, || false).unwrap_err(), Refusal::DescriptorShare { max: 18 });
        held.extend((0..2).map(|_| unix.admit(5, || true).expect("the reserve")));
        assert_eq!(unix.admit(5, || true).unwrap_err(), Refusal::DescriptorShare { max: 18 });
        assert_eq!(descriptors.live(), 20);
        held.pop();
        assert!(unix.admit(5, || true).is_ok());
    }

    #[test]
    fn a_descriptor_near_the_limit_is_refused_even_to_the_owner() {
        // 400 descriptors keep 64 free: descriptor 335 is the last one admitted.
        let gate = gate(128, 8, 400);
        let _held = gate.admit(335, || true).expect("below the reserve");
        let refused = gate.admit(336, || true).unwrap_err();
        assert_eq!(refused, Refusal::DescriptorHeadroom { fd: 336, limit: 400 });
        assert_eq!(gate.live(), 1);
        // A small limit keeps a quarter.
        assert_eq!(Descriptors::new(64).spawn_reserve(), 16);
        assert!(gate.admit(-1, || true).is_err(), "not a descriptor");
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
        // Ten failures a second for two and a half periods.
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
