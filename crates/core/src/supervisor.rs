//! [`Supervisor`]: builds the supervision tree for a config and starts it.
//!
//! It opens every process's logs, makes the daemon-wide [`Context`] (spawner,
//! event bus, registry, event listener hub, fcgi sockets), starts the root
//! actor, adds the groups through it, and runs the autostart pass, either
//! before returning or on a task of its own. What it returns is a [`Handle`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError};

use ractor::Actor;
use tokio::sync::broadcast;
use vigil_config::{Config, GroupConfig, GroupKind, Supervisord};

use crate::context::Context;
use crate::error::CoreError;
use crate::eventlistener;
use crate::events::{self, Event};
use crate::fcgi;
use crate::handle::{Handle, Inner};
use crate::logs;
use crate::members::build_members;
use crate::messages::{BuiltGroup, Queued};
use crate::notify;
use crate::reaper::Reaper;
use crate::registry::Registry;
use crate::root::{RootActor, RootArgs};
use crate::spawner::Spawner;

/// What the daemon supplies besides the config.
#[derive(Clone)]
pub struct SupervisorOptions {
    /// The daemon's environment: the base of every child's environment.
    pub daemon_env: Vec<(String, String)>,
    /// `SUPERVISOR_SERVER_URL` given to children (unless a program sets
    /// `serverurl`); `None` leaves it unset.
    pub server_url: Option<String>,
    /// Starts and signals children: the process-wide [`Reaper`] in production.
    pub spawner: Arc<dyn Spawner>,
    /// Called once when the autostart pass of
    /// [`Supervisor::start_in_background`] has ended (vigild hands the
    /// allocator's free pages back to the kernel there).
    pub after_autostart: Option<fn()>,
    /// Given the handle as soon as a live upgrade's tree has its event
    /// listener pools and begins resuming the other groups: from then on
    /// [`Handle::resumed`] lets a call naming a few processes act on them
    /// before the rest is back.
    pub on_resuming: Option<Arc<dyn Fn(Handle) + Send + Sync>>,
    /// Tests only: while this reads `false`, a live upgrade's tree resumes
    /// only the groups a call asks for ([`Handle::resumed`]).
    pub hold_resume: Option<tokio::sync::watch::Receiver<bool>>,
}

impl SupervisorOptions {
    /// Options spawning through `reaper`, with an empty daemon environment.
    pub fn new(reaper: Reaper) -> SupervisorOptions {
        SupervisorOptions::with_spawner(Arc::new(reaper))
    }

    /// Options spawning through any [`Spawner`] (tests use fakes).
    pub fn with_spawner(spawner: Arc<dyn Spawner>) -> SupervisorOptions {
        SupervisorOptions {
            daemon_env: Vec::new(),
            server_url: None,
            spawner,
            after_autostart: None,
            on_resuming: None,
            hold_resume: None,
        }
    }
}

/// Builds and starts the supervision tree.
pub struct Supervisor;

impl Supervisor {
    /// Builds the tree for `config`, then starts every `autostart` process in
    /// (group priority, group name, process priority, name) order, all in the same
    /// pass without waiting for any to reach RUNNING (supervisord's behaviour).
    ///
    /// Unless `nocleanup`, AUTO logs of this `identifier` left in `childlogdir`
    /// by an earlier run are deleted first. Fails, leaving nothing running, if a
    /// log file cannot be opened or an actor cannot be started.
    pub async fn start(config: Config, options: SupervisorOptions) -> Result<Handle, CoreError> {
        let handle = Supervisor::build(config, options).await?;
        handle.autostart(&handle.inner.registry.groups_by_priority()).await;
        Ok(handle)
    }

    /// Like [`Supervisor::start`], but returns as soon as the tree is built and
    /// runs the autostart pass on a task of its own, so the caller can serve
    /// requests (status, stop) while thousands of processes are being spawned;
    /// a process not reached yet reads STOPPED, as it does under supervisord
    /// before its first tick. `shutdown` ends the pass where it is.
    pub async fn start_in_background(
        config: Config,
        options: SupervisorOptions,
    ) -> Result<Handle, CoreError> {
        let after_autostart = options.after_autostart;
        let handle = Supervisor::build(config, options).await?;
        let starter = handle.clone();
        let pass = tokio::spawn(async move {
            starter.autostart(&starter.inner.registry.groups_by_priority()).await;
            if let Some(hook) = after_autostart {
                hook();
            }
        });
        *handle.inner.autostart.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(pass.abort_handle());
        Ok(handle)
    }

    /// Everything [`Supervisor::start`] does but the autostart pass.
    async fn build(config: Config, options: SupervisorOptions) -> Result<Handle, CoreError> {
        let (on_resuming, hold_resume) = (options.on_resuming.clone(), options.hold_resume.clone());
        let Config { supervisord: settings, groups: configured, .. } = config;
        if !settings.nocleanup {
            match logs::remove_auto_logs(&settings.childlogdir, &settings.identifier) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(
                    "could not clean AUTO logs in {}: {error}",
                    settings.childlogdir.display()
                ),
            }
        }
        // Every group's members are built here, but a live upgrade's resume
        // builds only the event listener pools' (added first): the others'
        // are built as each group starts, so a call naming one waits for its
        // own alone.
        let resuming = crate::handover::resuming();
        let (now, later): (Vec<_>, Vec<_>) = configured
            .into_iter()
            .partition(|config| !resuming || matches!(config.kind, GroupKind::EventListener(_)));
        let groups = build_all(now, &settings)?;
        tracing::debug!("built the members of {} groups", groups.len());
        let unbuilt: Vec<Queued> = {
            let settings = Arc::new(settings.clone());
            later.into_iter().map(|config| Queued::Unbuilt(config, Arc::clone(&settings))).collect()
        };
        let registry = Arc::new(Registry::default());
        let ctx = Arc::new(Context {
            spawner: options.spawner,
            bus: broadcast::channel(events::BUS_CAPACITY).0,
            daemon_env: std::sync::Arc::new(crate::spawn::InheritedEnv::new(options.daemon_env)),
            global_env: std::sync::RwLock::new(settings.environment.clone()),
            server_url: options.server_url,
            registry: Arc::clone(&registry),
            notify_dir: notify::socket_dir(),
            on_fatal: settings.on_fatal,
            fatal: tokio::sync::watch::Sender::new(None),
            // Hook (events): event listener pools, strip_ansi.
            events: eventlistener::Hub::new(&settings, Arc::clone(&registry)),
            fcgi: fcgi::FcgiSockets::default(),
            cgroups: crate::cgroup::Cgroups::new(
                crate::cgroup::Host::detect(),
                settings.cgroup_root.clone(),
            ),
            changes: tokio::sync::watch::Sender::new(0),
        });
        ctx.cgroups.prepare(
            groups.iter().flat_map(|(_, members)| members).filter_map(|m| m.config.cgroup.as_ref()),
        );
        ctx.events.run(ctx.bus.subscribe());
        let args = RootArgs { ctx: Arc::clone(&ctx), registry: Arc::clone(&registry) };
        let (root, join) = Actor::spawn(None, RootActor, args).await.map_err(|error| {
            CoreError::Failed(format!("could not start the root actor: {error}"))
        })?;
        let handle = Handle {
            inner: Arc::new(Inner {
                root,
                registry,
                ctx,
                settings,
                shutting_down: AtomicBool::new(false),
                join: tokio::sync::Mutex::new(Some(join)),
                autostart: std::sync::Mutex::new(None),
                handing_over: AtomicBool::new(false),
                resuming: std::sync::Mutex::new(None),
            }),
        };
        // Event listener pools first: a pool is made when its group's
        // `GroupAdded` is on the bus, so every event the other groups publish
        // (a resumed program's output the moment its actor exists, after a
        // live upgrade) comes after it and finds the pool.
        let (pools, others): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|(config, _)| matches!(config.kind, GroupKind::EventListener(_)));
        if let Err(error) = handle.add_all(pools, resuming).await {
            handle.shutdown().await;
            return Err(error);
        }
        let added = if resuming {
            handle.resume_groups(unbuilt, on_resuming, hold_resume).await
        } else {
            handle.add_all(others, false).await
        };
        if let Err(error) = added {
            handle.shutdown().await;
            return Err(error);
        }
        tracing::debug!("started the actors of every group");
        // on_fatal = shutdown: the root publishes the escalation, this task brings
        // the tree down. It holds no strong reference, so it never keeps a
        // dropped tree alive.
        let weak = Arc::downgrade(&handle.inner);
        let mut fatal = handle.inner.ctx.fatal.subscribe();
        tokio::spawn(async move {
            if fatal.wait_for(Option::is_some).await.is_ok()
                && let Some(inner) = weak.upgrade()
            {
                Handle { inner }.shutdown().await;
            }
        });
        // Hook (events): supervisord announces RUNNING before it starts
        // processes; after a live upgrade the listeners heard it already.
        if !handle.inner.ctx.events.resumed() {
            events::publish(&handle.inner.ctx.bus, Event::SupervisorRunning);
        }
        Ok(handle)
    }
}

/// Groups below this many are built on the calling thread.
const PARALLEL_BUILD: usize = 256;

/// The members of every group ([`build_members`]): opening their logs is a
/// dozen system calls per channel, so thousands of groups are built on
/// several threads, in chunks that keep the config's order.
fn build_all(
    configured: Vec<GroupConfig>,
    settings: &Supervisord,
) -> Result<Vec<BuiltGroup>, CoreError> {
    // The groups move into the tree: a copy here would briefly double every
    // program's settings at start-up.
    let build = |groups: Vec<GroupConfig>| {
        groups
            .into_iter()
            .map(|mut group| build_members(&mut group, settings).map(|members| (group, members)))
            .collect::<Result<Vec<_>, CoreError>>()
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    if configured.len() < PARALLEL_BUILD || threads < 2 {
        return build(configured);
    }
    let per_thread = configured.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut rest = configured.into_iter();
    loop {
        let chunk: Vec<GroupConfig> = rest.by_ref().take(per_thread).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            chunks.into_iter().map(|chunk| scope.spawn(|| build(chunk))).collect();
        let mut groups = Vec::new();
        for worker in workers {
            match worker.join() {
                Ok(built) => groups.extend(built?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(groups)
    })
}
