//! The running sidecar: built from a [`WrapConfig`], served on its listeners until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditSink;
use crate::auth::Authenticator;
use crate::child::ProcessTable;
use crate::config::WrapConfig;
use crate::governance::Governance;
use crate::session::SessionStore;
use crate::telemetry::Metrics;
use crate::transport::http::{self, AppState};

/// During a drain, a session counts as finished once it has had no traffic for this long and
/// no request in flight.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// How long children get to exit after the drain, beyond their kill grace.
const CHILD_EXIT_TIMEOUT_EXTRA: Duration = Duration::from_secs(3);

/// Why the app could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot start the process table: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] http::TlsError),
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::AuthInitError),
    #[error("cannot open the audit log: {0}")]
    Audit(std::io::Error),
    #[error("sign-in server: {0}")]
    Authz(String),
    #[error("token exchange: {0}")]
    Exchange(String),
    #[error("sign-in state: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("connections: {0}")]
    Connections(String),
}

/// The assembled application.
#[derive(Debug)]
pub struct App {
    config: WrapConfig,
    state: AppState,
    tls: Option<http::TlsServer>,
}

impl App {
    /// Builds the app. Must run inside the tokio runtime (it starts the reaper and janitor,
    /// and opens the sign-in state).
    pub async fn build(mut config: WrapConfig) -> Result<App, BuildError> {
        // The state first: it creates the state directory, where the signing key may live.
        let sign_in_state = match &config.authz {
            Some(setup) => Some(crate::store::Store::open(&setup.store).await?),
            None => None,
        };
        let auth = match &config.auth {
            Some(a) => Authenticator::new(a.clone())?,
            None => Authenticator::disabled(),
        };
        // Keys are fetched in the background: an unreachable issuer delays nothing but
        // its own tokens.
        let warm = auth.clone();
        tokio::spawn(async move { warm.warm_up().await });
        // The network clients the configuration describes.
        if let Some(settings) = &config.exchange {
            let client = crate::auth::exchange::TokenExchangeClient::from_settings(settings)
                .map_err(BuildError::Exchange)?;
            config.sessions.env.attach_exchanger(Arc::new(client));
        }
        let metrics = Metrics::new();
        let audit = match config.file.as_ref().and_then(|f| f.audit.as_ref()) {
            Some(a) => AuditSink::start(a).map_err(BuildError::Audit)?,
            None => AuditSink::disabled(),
        };
        let mut governance = Governance::new(
            config.file.as_ref().map(|f| f.policy.clone()),
            audit,
            metrics.clone(),
        );
        // The admin listener serves the activity page, which shows the latest records.
        if config.http.admin_ui {
            governance = governance.watched(Arc::new(crate::audit::Activity::new()));
        }
        let governance = Arc::new(governance);
        let shutdown = CancellationToken::new();
        let connections = match (&config.connections, &sign_in_state, &config.authz) {
            (Some(setup), Some(state), Some(authz)) => {
                let vault = match &setup.key {
                    Some(key) => crate::connections::Vault::from_key_text(key),
                    None => crate::connections::Vault::ephemeral(),
                }
                .map_err(|e| BuildError::Connections(e.to_string()))?;
                let http = crate::auth::fetch::HttpClient::new(
                    authz.ca_pem.as_deref(),
                    std::time::Duration::from_secs(10),
                )
                .map_err(BuildError::Connections)?;
                let connections = Arc::new(
                    crate::connections::Connections::new(
                        setup.configs.clone(),
                        state.clone(),
                        vault,
                        authz.config.issuer.clone(),
                        http,
                    )
                    .observed(
                        governance.clone(),
                        metrics.clone(),
                        shutdown.clone(),
                    ),
                );
                config.sessions.env.attach_connections(connections.clone());
                Some(connections)
            }
            _ => None,
        };
        let table = ProcessTable::start()?;
        let tls = match &config.tls {
            Some(cfg) => {
                let (acceptor, cert) = http::tls_acceptor(cfg)?;
                tokio::spawn(http::watch_tls(cert, cfg.clone(), CancellationToken::new()));
                Some(acceptor)
            }
            None => None,
        };
        let store = SessionStore::new(
            config.sessions.clone(),
            table,
            metrics.clone(),
            governance.clone(),
        );
        let authz = match (&config.authz, sign_in_state, auth.local_issuer()) {
            (Some(setup), Some(state), Some(signer)) => {
                tracing::info!(store = state.backend_name(), issuer = %setup.config.issuer, "sign-in server ready");
                let server = crate::authz::AuthorizationServer::new(
                    setup.config.clone(),
                    state,
                    signer.clone(),
                    setup.ca_pem.as_deref(),
                )
                .map_err(BuildError::Authz)?;
                let server = Arc::new(server);
                server.start(shutdown.clone());
                Some(server)
            }
            _ => None,
        };
        if let (Some(server), Some(connections)) = (&authz, &connections) {
            server.set_chain(connections.clone());
        }
        let state = AppState::new(http::Shared {
            pool: Arc::new(crate::session::Pool::new(store.clone())),
            store,
            config: Arc::new(config.http.clone()),
            shutdown,
            metrics,
            auth,
            governance,
            authz,
            connections,
        });
        Ok(App { config, state, tls })
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Whether the admin listener serves the activity page.
    pub fn activity_page(&self) -> bool {
        self.state.config.admin_ui
    }

    pub fn auth(&self) -> &Authenticator {
        &self.state.auth
    }

    pub fn sessions(&self) -> &SessionStore {
        &self.state.store
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails at once and no new
    /// session is accepted, while existing sessions keep being served until each is idle (no
    /// request in flight, no traffic for two seconds) or the drain timeout passes; then streams close, every server tree is
    /// terminated, and this returns. The admin listener (probes, metrics) stays up until the
    /// end so the drain is observable.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let stop_accepting = CancellationToken::new();
        let server = tokio::spawn(http::serve(
            listener,
            self.router(),
            self.config.server,
            self.tls.clone(),
            stop_accepting.clone(),
        ));
        let stop_admin = CancellationToken::new();
        let admin = admin.map(|l| {
            tokio::spawn(http::serve(
                l,
                http::admin_router(self.state.clone()),
                self.config.server,
                None,
                stop_admin.clone(),
            ))
        });
        shutdown.await;
        let store = &self.state.store;
        store.start_draining();
        self.state.metrics.set_draining(true);
        let deadline = tokio::time::Instant::now() + self.config.server.drain_timeout;
        while store.busy_sessions(DRAIN_QUIET) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            sessions = store.len(),
            "closing streams and stopping MCP servers"
        );
        stop_accepting.cancel();
        self.state.shutdown.cancel();
        store
            .shutdown(self.config.sessions.child.kill_grace + CHILD_EXIT_TIMEOUT_EXTRA)
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        stop_admin.cancel();
        if let Some(admin) = admin {
            let _ = tokio::time::timeout(Duration::from_secs(2), admin).await;
        }
        // Last: every session's end is recorded before the log says it was closed.
        let audit = self.state.governance.audit().clone();
        let _ = tokio::task::spawn_blocking(move || audit.close(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod router_tests;
