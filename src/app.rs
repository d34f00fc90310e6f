//! The running sidecar: built from a [`WrapConfig`], served on a listener until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::child::ProcessTable;
use crate::config::WrapConfig;
use crate::session::SessionStore;
use crate::transport::http::{self, AppState};

/// How long children get to exit after the drain, before the sidecar gives up waiting.
const CHILD_EXIT_TIMEOUT_EXTRA: Duration = Duration::from_secs(3);

/// The assembled application.
#[derive(Debug)]
pub struct App {
    config: WrapConfig,
    state: AppState,
}

impl App {
    /// Builds the app. Must run inside the tokio runtime (it starts the reaper and janitor).
    pub fn build(config: WrapConfig) -> std::io::Result<App> {
        let table = ProcessTable::start()?;
        let store = SessionStore::new(config.sessions.clone(), table);
        let state = AppState {
            store,
            config: std::sync::Arc::new(config.http.clone()),
            shutdown: CancellationToken::new(),
        };
        Ok(App { config, state })
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    pub fn sessions(&self) -> &SessionStore {
        &self.state.store
    }

    /// Serves until `shutdown` resolves, then drains: no new sessions or connections,
    /// requests in flight get up to the drain timeout, then streams close, every server tree
    /// is terminated, and this returns.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let stop_accepting = CancellationToken::new();
        let server = tokio::spawn(http::serve(
            listener,
            self.router(),
            self.config.server,
            stop_accepting.clone(),
        ));
        shutdown.await;
        let store = &self.state.store;
        store.start_draining();
        stop_accepting.cancel();
        let drain = self.config.server.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        while store.pending_requests() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            sessions = store.len(),
            "closing streams and stopping MCP servers"
        );
        self.state.shutdown.cancel();
        store
            .shutdown(self.config.sessions.child.kill_grace + CHILD_EXIT_TIMEOUT_EXTRA)
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    }
}
