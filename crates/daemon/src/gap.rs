//! The control service of a live upgrade's new image before its tree is
//! built: [`GapServer`].
//!
//! The new image serves the inherited listeners as soon as its runtime runs,
//! before it adopts the children and builds the process actors (which takes
//! most of the upgrade with thousands of programs). Until the tree exists no
//! actor acts, so the carried records are exactly the processes' state:
//! `daemon_info`, `all_process_info`, `status_rows` and `process_info` are
//! answered from them ([`vigil_core::resuming::CarriedView`]). Every other
//! call waits, neither refused nor lost, until the daemon hands the tree's
//! [`ControlServer`] over ([`GapServer::new`]'s sender), then runs there; a
//! connection opened in the gap keeps this service, which forwards
//! everything once the tree is up.
//!
//! With thousands of programs the tree resumes its groups for a while after
//! the config has loaded. Meanwhile `start`, `stop`, `restart` and `signal`
//! naming groups or processes (not `all`, and none that `depends_on` ties
//! to another) have their groups resumed first and run as soon as those
//! are back ([`vigil_core::Handle::resumed`]), on the handle the tree gives
//! as it begins resuming ([`GapServer::new`]'s second sender).

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use tokio::sync::watch;
use vigil_core::Handle;
use vigil_core::resuming::CarriedView;
use vigil_rpc::{
    ControlError, ControlRequest, ControlResponse, DaemonInfo, DaemonState, NameSpec, SendControl,
    StatusRow,
};

use crate::server::{ControlServer, VERSION, extensions, process_info};

/// Answers reads from the carried records until the tree's server is given.
#[derive(Clone)]
pub struct GapServer {
    shared: Arc<Shared>,
}

struct Shared {
    view: CarriedView,
    identification: String,
    tree: watch::Receiver<Option<ControlServer>>,
    resuming: watch::Receiver<Option<Handle>>,
}

/// Gives a [`GapServer`] the tree's server, once it is up.
pub type TreeSender = watch::Sender<Option<ControlServer>>;
/// Gives a [`GapServer`] the tree's handle, as it begins resuming groups.
pub type ResumingSender = watch::Sender<Option<Handle>>;

impl GapServer {
    /// The service over `view`, reporting `identification` (`[supervisord]
    /// identifier`); the returned senders give it the tree's server, and
    /// before that its handle.
    pub fn new(
        view: CarriedView,
        identification: String,
    ) -> (GapServer, TreeSender, ResumingSender) {
        let (sender, tree) = watch::channel(None);
        let (resuming_sender, resuming) = watch::channel(None);
        let shared = Shared { view, identification, tree, resuming };
        (GapServer { shared: Arc::new(shared) }, sender, resuming_sender)
    }

    fn tree(&self) -> Option<ControlServer> {
        self.shared.tree.borrow().clone()
    }

    /// The answer from the carried records, if the request is one the gap
    /// answers; the request back otherwise. A process whose group is back in
    /// the resuming tree is answered from the tree: a call may have acted on
    /// it already (see `early`).
    fn answer(&self, request: ControlRequest) -> Result<ControlResponse, ControlRequest> {
        let resuming = self.shared.resuming.borrow().clone();
        match (resuming, request) {
            (Some(handle), ControlRequest::AllProcessInfo {}) => {
                Ok(ControlResponse::AllProcessInfo(Ok(self
                    .all(&handle)
                    .map(process_info)
                    .collect())))
            }
            (Some(handle), ControlRequest::StatusRows {}) => {
                Ok(ControlResponse::StatusRows(Ok(self
                    .all(&handle)
                    .map(|info| StatusRow::from(process_info(info)))
                    .collect())))
            }
            (Some(handle), ControlRequest::ProcessInfo { name }) => match NameSpec::parse(&name) {
                spec @ NameSpec::Process { .. }
                    if spec.group().is_some_and(|group| handle.has_group(group)) =>
                {
                    // One process, as the tree's `process_info` answers.
                    let one = handle.process_info_now(Some(&spec)).ok();
                    let info = match one.map(<[_; 1]>::try_from) {
                        Some(Ok([info])) => Ok(process_info(info)),
                        _ => Err(ControlError::BadName(name.clone())),
                    };
                    Ok(ControlResponse::ProcessInfo(info))
                }
                _ => self.carried(ControlRequest::ProcessInfo { name }),
            },
            (_, request) => self.carried(request),
        }
    }

    /// Every process, sorted as `all_process_info` answers: those of the
    /// groups back in the resuming tree from it, the others from the carried
    /// records.
    fn all(&self, handle: &Handle) -> impl Iterator<Item = vigil_core::ProcessInfo> {
        let now = SystemTime::now();
        let back = handle.process_info_now(None).unwrap_or_default();
        // The groups in that answer, not those back by now: one that came back
        // since would be in neither list.
        let in_tree: std::collections::HashSet<_> =
            back.iter().map(|info| info.group.clone()).collect();
        let mut all: Vec<vigil_core::ProcessInfo> = self
            .shared
            .view
            .all(now)
            .into_iter()
            .filter(|info| !in_tree.contains(&info.group))
            .chain(back)
            .collect();
        all.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
        all.into_iter()
    }

    /// [`GapServer::answer`] from the carried records alone.
    fn carried(&self, request: ControlRequest) -> Result<ControlResponse, ControlRequest> {
        let now = SystemTime::now();
        match request {
            ControlRequest::DaemonInfo {} => Ok(ControlResponse::DaemonInfo(Ok(DaemonInfo {
                api_version: vigil_rpc::API_VERSION.to_owned(),
                version: VERSION.to_owned(),
                identification: self.shared.identification.clone(),
                state: DaemonState::Running,
                pid: std::process::id(),
                extensions: extensions(),
            }))),
            ControlRequest::AllProcessInfo {} => Ok(ControlResponse::AllProcessInfo(Ok(self
                .shared
                .view
                .all(now)
                .into_iter()
                .map(process_info)
                .collect()))),
            ControlRequest::StatusRows {} => Ok(ControlResponse::StatusRows(Ok(self
                .shared
                .view
                .all(now)
                .into_iter()
                .map(|info| StatusRow::from(process_info(info)))
                .collect()))),
            ControlRequest::ProcessInfo { name } => {
                let answer = match NameSpec::parse(&name) {
                    NameSpec::Process { group, name: process } => self
                        .shared
                        .view
                        .one(&group, &process, now)
                        .map(|info| Ok(process_info(info))),
                    // `g:*` and `all` name no one process, as in the tree.
                    _ => Some(Err(ControlError::BadName(name.clone()))),
                };
                // A name the config does not have: the tree says how.
                answer.map(ControlResponse::ProcessInfo).ok_or(ControlRequest::ProcessInfo { name })
            }
            other => Err(other),
        }
    }
}

impl SendControl for GapServer {
    fn call(
        self,
        ctx: tarpc::context::Context,
        request: ControlRequest,
    ) -> BoxFuture<'static, Result<ControlResponse, tarpc::ServerError>> {
        if let Some(server) = self.tree() {
            return server.call(ctx, request);
        }
        let request = match self.answer(request) {
            Ok(response) => return Box::pin(std::future::ready(Ok(response))),
            Err(request) => request,
        };
        let mut tree = self.shared.tree.clone();
        let resuming = self.shared.resuming.clone();
        Box::pin(async move {
            let request = match early(resuming, tree.clone(), request).await {
                Ok(response) => return Ok(response),
                Err(request) => request,
            };
            tracing::debug!("a control call waits for the supervision tree (live upgrade)");
            // Nothing has begun: a caller that goes away meanwhile loses
            // only its answer.
            let server = match tree.wait_for(Option::is_some).await {
                Ok(server) => server.clone(),
                Err(_) => None,
            };
            match server {
                Some(server) => server.call(ctx, request).await,
                // The tree was never built: the daemon is exiting.
                None => Err(tarpc::ServerError::new(
                    std::io::ErrorKind::NotConnected,
                    "vigild stopped before its supervision tree was up".to_owned(),
                )),
            }
        })
    }
}

/// Runs `request` on the resuming tree's handle once the groups it names are
/// back, if it is a `start`, `stop`, `restart` or `signal` that
/// [`Handle::resumed`] allows; gives it back otherwise, or when the whole
/// tree came first.
async fn early(
    mut resuming: watch::Receiver<Option<Handle>>,
    mut tree: watch::Receiver<Option<ControlServer>>,
    request: ControlRequest,
) -> Result<ControlResponse, ControlRequest> {
    let specs = match &request {
        ControlRequest::Start { specs, .. }
        | ControlRequest::Stop { specs, .. }
        | ControlRequest::Restart { specs, .. }
        | ControlRequest::Signal { specs, .. } => specs.clone(),
        _ => return Err(request),
    };
    let handle = tokio::select! {
        biased;
        _ = tree.wait_for(Option::is_some) => None,
        handle = resuming.wait_for(Option::is_some) => handle.ok().and_then(|h| h.clone()),
    };
    let Some(handle) = handle else { return Err(request) };
    if !handle.resumed(&specs).await || handle.is_shutting_down() {
        return Err(request);
    }
    Ok(match request {
        ControlRequest::Start { specs, wait } => {
            ControlResponse::Start(crate::server::start(handle, specs, wait).await)
        }
        ControlRequest::Stop { specs, wait } => {
            ControlResponse::Stop(crate::server::stop(handle, specs, wait).await)
        }
        ControlRequest::Restart { specs, wait } => {
            ControlResponse::Restart(crate::server::restart(handle, specs, wait).await)
        }
        ControlRequest::Signal { specs, signal } => {
            ControlResponse::Signal(crate::server::signal_processes(handle, specs, signal).await)
        }
        other => return Err(other),
    })
}
