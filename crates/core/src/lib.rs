//! vigil-core: the supervision tree that runs programs.
//!
//! # Theory of operation
//!
//! ```text
//!   Handle ──(calls)──────────────────────────────┐
//!     │                                           ▼
//!   RootActor ──links── GroupActor ──links── ProcessActor ── Lifecycle (pure)
//!     (root.rs)          (group.rs)          (process.rs)     (lifecycle.rs)
//!                                                │
//!                        Reaper (reaper.rs) ◄────┤ spawn / signal / exit
//!                        ChannelLog (logs.rs) ◄──┘ output capture
//! ```
//!
//! [`Supervisor::start`] builds the tree for a [`vigil_config::Config`]: one
//! process actor per process instance, one group actor per group, one root. Each
//! process actor runs supervisord's state machine ([`lifecycle::Lifecycle`]) and
//! owns at most one OS child. Supervisors exist for bugs in our own code: a
//! panicking actor is rebuilt and its orphaned child killed; a program exiting is
//! ordinary data handled by the lifecycle.
//!
//! The [`Handle`] is the whole public surface the daemon uses. It reads status
//! from snapshots each process publishes (no mailbox round-trip, so status of
//! thousands of processes is cheap), sends requests straight to the process
//! actors concurrently, and waits for supervisord's `wait` conditions by watching
//! those snapshots, never inside an actor. It knows nothing of RPC: errors are
//! [`CoreError`]s that mirror supervisord's faults.
//!
//! `update` (supervisorctl's reread + apply) goes through the config actor
//! (config_actor.rs), which keeps the running config and the last one read and
//! applies a `vigil_config::Plan` member by member (update.rs): a kept member
//! keeps its actor and child, in-place fields are retuned, and only changed
//! processes restart. That works because all per-process state that must
//! survive (status, logs, stdin) lives in one shared record per process,
//! independent of the actors.
//!
//! supervisord's events (eventlistener.rs) are read off the same bus that
//! [`Handle::subscribe`] exposes; output.rs stands between each pipe and its log
//! (`strip_ansi`, capture mode, `*_syslog`, log events); fcgi.rs owns
//! `[fcgi-program:x]` sockets.
//!
//! Beyond supervisord, each in its own module: group strategies and restart
//! budgets with escalation to the root (group.rs, budget.rs, root.rs),
//! configurable restart backoff (lifecycle.rs), dependencies across groups with
//! dependency-ordered start and stop and restart propagation (deps.rs), and
//! health probes as async tasks (probe.rs, notify.rs).
//!
//! What this crate deliberately does not do: parse config (vigil-config), speak
//! any wire protocol (vigil-rpc, vigild), install signal handlers or a panic hook
//! (vigild).
//!
//! # Layers
//!
//! Modules import only from layers below their own, never from one above, and
//! never in a circle (a test in the integration crate checks the circles). From
//! the top:
//!
//! 1. `config_actor` (the running and the last-read config) over `update`
//!    (applying one group's part of a plan);
//! 2. `supervisor` (building and starting the tree) over `handle` (the public
//!    [`Handle`]) over `members` (a process's shared record and its logs);
//! 3. the actors: `root` over `group` over `process`;
//! 4. the process actor's helpers: `deps` (dependency gate and monitors),
//!    `probe` (health probes), `notify` (systemd's readiness socket), `output`
//!    (between a pipe and its log);
//! 5. `context` (what every actor shares) over `eventlistener` (listener pools)
//!    and `fcgi` (fcgi sockets);
//! 6. `registry` (every group by name) over `messages` (each actor's messages
//!    and the records they carry, importing no actor);
//! 7. `spawner` (the trait actors spawn and signal through) over `reaper` (the
//!    one `waitpid` loop) over `launch` (the clone launcher and its `unsafe`)
//!    over `spawn` (supervisord's spawn rules: command, environment,
//!    `spawnerr` texts);
//! 8. the leaves: `info` (status as supervisord reports it) and `events` (the
//!    bus) over `lifecycle` (the pure state machine) over `exit`; `budget`,
//!    `error`, `logs`, `stdin`, `syslog` and `usage` (CPU and memory from
//!    /proc) import nothing of the crate.

#![warn(missing_docs)]

mod budget;
pub mod cgroup;
mod config_actor;
mod context;
mod deps;
pub mod error;
pub mod eventlistener;
pub mod events;
pub mod exit;
pub mod fcgi;
mod group;
mod handle;
pub mod handover;
mod info;
mod launch;
pub mod lifecycle;
mod logformat;
pub mod logs;
mod members;
mod messages;
mod notify;
mod output;
mod probe;
mod process;
pub mod reaper;
mod registry;
pub mod resuming;
mod root;
pub mod spawn;
mod spawner;
mod stdin;
mod supervisor;
pub mod syslog;
mod update;
mod usage;

pub use config_actor::{Available, ConfigControl, ConfigError, Loader, UpdateOutcome};
pub use context::FatalShutdown;
pub use error::CoreError;
pub use events::{Event, ProcessStateEvent};
pub use handle::{FATAL_EXIT_CODE, Handle, Results};
pub use info::{Health, ProcessInfo, StatusRow};
pub use launch::close_on_exec_from;
pub use lifecycle::ProcessState;
pub use logs::{Channel, ChannelLog};
pub use members::TAIL_RING_BYTES;
pub use reaper::{InheritedChild, Reaper};
pub use spawner::Spawner;
pub use stdin::STDIN_QUEUE_LIMIT;
pub use supervisor::{Supervisor, SupervisorOptions};
pub use update::{GroupUpdate, UpdateAction};
pub use usage::Usage;

#[cfg(test)]
mod tests;
