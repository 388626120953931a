//! The control service of a live upgrade's new image before its tree is
//! built: [`GapServer`].
//!
//! The new image serves the inherited listeners as soon as its runtime runs,
//! before it adopts the children and builds the process actors (which takes
//! most of the upgrade with thousands of programs). Until the tree exists no
//! actor acts, so the carried records are exactly the processes' state:
//! `daemon_info`, `all_process_info` and `process_info` are answered from
//! them ([`vigil_core::resuming::CarriedView`]). Every other call waits,
//! neither refused nor lost, until the daemon hands the tree's
//! [`ControlServer`] over ([`GapServer::new`]'s sender), then runs there; a
//! connection opened in the gap keeps this service, which forwards
//! everything once the tree is up.

use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use tokio::sync::watch;
use vigil_core::resuming::CarriedView;
use vigil_rpc::{
    ControlError, ControlRequest, ControlResponse, DaemonInfo, DaemonState, NameSpec, SendControl,
};

use crate::server::{ControlServer, VERSION, process_info};

/// Answers reads from the carried records until the tree's server is given.
#[derive(Clone)]
pub struct GapServer {
    shared: Arc<Shared>,
}

struct Shared {
    view: CarriedView,
    identification: String,
    tree: watch::Receiver<Option<ControlServer>>,
}

impl GapServer {
    /// The service over `view`, reporting `identification` (`[supervisord]
    /// identifier`); the returned sender gives it the tree's server.
    pub fn new(
        view: CarriedView,
        identification: String,
    ) -> (GapServer, watch::Sender<Option<ControlServer>>) {
        let (sender, tree) = watch::channel(None);
        (GapServer { shared: Arc::new(Shared { view, identification, tree }) }, sender)
    }

    fn tree(&self) -> Option<ControlServer> {
        self.shared.tree.borrow().clone()
    }

    /// The answer from the carried records, if the request is one the gap
    /// answers; the request back otherwise.
    fn answer(&self, request: ControlRequest) -> Result<ControlResponse, ControlRequest> {
        let now = SystemTime::now();
        match request {
            ControlRequest::DaemonInfo {} => Ok(ControlResponse::DaemonInfo(Ok(DaemonInfo {
                api_version: vigil_rpc::API_VERSION.to_owned(),
                version: VERSION.to_owned(),
                identification: self.shared.identification.clone(),
                state: DaemonState::Running,
                pid: std::process::id(),
            }))),
            ControlRequest::AllProcessInfo {} => Ok(ControlResponse::AllProcessInfo(Ok(self
                .shared
                .view
                .all(now)
                .into_iter()
                .map(process_info)
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
        tracing::debug!("a control call waits for the supervision tree (live upgrade)");
        Box::pin(async move {
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
