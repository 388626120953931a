//! The production [`Backend`]: vigild's calls into vigil-config's loader,
//! vigil-core's supervision tree and vigil-rpc's server.
//!
//! Every `// SEAM:` below marks a call written against the agreed contract
//! whose crate side is being written concurrently. Until it is merged, the body
//! reports "not wired yet" and vigild refuses to start (exit 2 from the loader),
//! so nothing half-works. The rest of the daemon does not depend on this file's
//! internals, only on the [`Backend`] and [`Tree`] traits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use vigil_config::Config;

use crate::app::{Backend, LoadedConfig, Tree, TreeContext};
use crate::listen::{Connection, Dispatch, Peer};

/// The real backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wired;

impl Backend for Wired {
    type Tree = CoreTree;

    fn find_config(&self, exe_dir: Option<&Path>, cwd: &Path) -> Result<PathBuf, String> {
        // SEAM: `vigil_config::find_config_file(exe_dir, cwd)`. Expected: the first
        // existing path of reference s1.1 (exe_dir is the directory holding the
        // vigild binary; the loader takes its parent for `../etc`), and when none
        // exists the message "No config file found at default paths (<list>); use
        // the -c option to specify a config file at a different path". Map its
        // `Option`/`Result` to this `Result<PathBuf, message>`.
        let _ = (exe_dir, cwd);
        Err("config file search is not wired yet; use the -c option".to_owned())
    }

    fn load(
        &self,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<LoadedConfig, Vec<String>> {
        // SEAM: `vigil_config::load(path, env)` (env as the map type the loader
        // takes), mapped as:
        //   Ok(loaded) => LoadedConfig { config: loaded.config,
        //       warnings: loaded.warnings.iter().map(ToString::to_string).collect() }
        //   Err(errors) => every `Diagnostic` rendered with Display
        //       (`file:line: [section] key: message`), in file order.
        let _ = env;
        Err(vec![format!("{}: the configuration loader is not wired yet", path.display())])
    }

    fn summary(&self, config: &Config) -> String {
        // SEAM: `vigil_config::summary(config)`; this fallback only runs if the
        // loader above is wired before `summary` is.
        format!(
            "{}: {} groups, {} processes\n",
            config.source.display(),
            config.groups.len(),
            config.processes().count()
        )
    }

    async fn start_tree(&self, config: &Config, context: &TreeContext) -> Result<CoreTree, String> {
        // SEAM: vigil-core. Expected at merge:
        //   1. Once per daemon (keep it in `Wired` behind a OnceLock, not per
        //      reload): `vigil_core::Reaper::start(context.pid1 || <subreaper wanted>)`.
        //   2. `vigil_core::Supervisor::start(config.clone(), SupervisorOptions {
        //          reaper, daemon env, server_url (from [unix_http_server] file or
        //          [inet_http_server] port), .. })` -> `Handle`.
        //   3. `CoreTree { handle, context: context.clone() }`.
        let _ = (config, context);
        Err("the supervision tree (vigil-core) is not wired yet".to_owned())
    }
}

/// The running vigil-core tree.
pub struct CoreTree {
    // SEAM: holds `vigil_core::Handle` and the `TreeContext` (for the RPC server:
    // main log, daemon control, config path).
    context: TreeContext,
}

impl Tree for CoreTree {
    fn dispatch(&self) -> Arc<dyn Dispatch> {
        Arc::new(ControlDispatch { context: self.context.clone() })
    }

    async fn reopen_logs(&self) {
        // SEAM: for every process of `handle.process_info(None)`, reopen its
        // stdout/stderr `ChannelLog` (`handle.log(name, channel)?.reopen()`),
        // logging failures with `tracing::error!`.
    }

    async fn shutdown(self) {
        // SEAM: `self.handle.shutdown().await` (ordered: reverse priority, group by
        // group); with `context.pid1`, then kill every process group still alive.
    }
}

/// Routes classified control connections to the protocol servers.
struct ControlDispatch {
    context: TreeContext,
}

impl Dispatch for ControlDispatch {
    fn serve_http(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()> {
        // SEAM: supervisord's HTTP/XML-RPC server (a later issue). Until then the
        // connection is answered with a plain 501 so the stock supervisorctl
        // gets a clear error instead of a hang.
        let _ = (&self.context, peer);
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            let mut connection = connection;
            let body = "vigild: the XML-RPC interface is not available yet\n";
            let reply = format!(
                "HTTP/1.0 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = connection.write_all(reply.as_bytes()).await;
            let _ = connection.shutdown().await;
        })
    }

    fn serve_tarpc(&self, connection: Connection, peer: Peer) -> BoxFuture<'static, ()> {
        // SEAM: vigil-rpc's server helper, e.g.
        //   `vigil_rpc::serve_connection(connection, ControlServer { handle,
        //        context })` where `ControlServer` (crates/daemon/src/server.rs)
        //   implements `vigil_rpc::Control` by translating to `Handle` calls,
        //   `context.main_log.read/tail` for readLog/maintail and
        //   `context.control.request(..)` for shutdown/restart.
        let _ = (&self.context, peer);
        Box::pin(async move { drop(connection) })
    }
}
