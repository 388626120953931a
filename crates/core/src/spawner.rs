//! [`Spawner`]: the narrow trait through which the tree starts and signals
//! children.
//!
//! Process actors and probe tasks never call the [`Reaper`] directly: they go
//! through this trait, so tests can substitute a fake spawner and run lifecycle
//! timing on paused tokio time. Nothing here knows about actors.

use crate::reaper::{ExitCall, Reaper, Spawned};
use crate::spawn::{SpawnError, SpawnSpec};

/// Starts and signals children. The [`Reaper`] is the real one; tests substitute
/// fakes so lifecycle timing can run on paused tokio time.
pub trait Spawner: Send + Sync + 'static {
    /// Starts a child; see [`Reaper::spawn`].
    fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SpawnError>;
    /// Starts a child whose exit status goes to `on_exit`; see
    /// [`Reaper::spawn_calling`]. By default a task awaits [`Spawner::spawn`]'s
    /// channel and makes the call, so a fake's exits stay on its clock (tests
    /// on paused time); the reaper calls from its own thread, with no task.
    fn spawn_calling(
        &self,
        spec: &SpawnSpec,
        on_exit: ExitCall,
    ) -> Result<Spawned<()>, SpawnError> {
        let Spawned { pid, stdin, stdout, stderr, exit } = self.spawn(spec)?;
        tokio::spawn(async move {
            if let Ok(status) = exit.await {
                on_exit(pid, status);
            }
        });
        Ok(Spawned { pid, stdin, stdout, stderr, exit: () })
    }
    /// Signals a child we spawned and have not reaped; see [`Reaper::signal`].
    fn signal(&self, pid: u32, sig: i32, group: bool) -> Result<bool, nix::Error>;
    /// False once `pid` was reaped (its exit is on its way to whoever
    /// awaits it); see [`Reaper::is_running`]. Fakes that reap nothing keep
    /// the default.
    fn is_registered(&self, _pid: u32) -> bool {
        true
    }
}

impl Spawner for Reaper {
    fn spawn(&self, spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
        Reaper::spawn(self, spec)
    }

    fn spawn_calling(
        &self,
        spec: &SpawnSpec,
        on_exit: ExitCall,
    ) -> Result<Spawned<()>, SpawnError> {
        Reaper::spawn_calling(self, spec, on_exit)
    }

    fn signal(&self, pid: u32, sig: i32, group: bool) -> Result<bool, nix::Error> {
        Reaper::signal(self, pid, sig, group)
    }

    fn is_registered(&self, pid: u32) -> bool {
        Reaper::is_running(self, pid)
    }
}

/// SIGKILLs `pid`'s process group, or the pid alone when it left its group.
pub(crate) fn kill_orphan(spawner: &dyn Spawner, pid: u32) {
    if !matches!(spawner.signal(pid, libc::SIGKILL, true), Ok(true)) {
        let _ = spawner.signal(pid, libc::SIGKILL, false);
    }
}
