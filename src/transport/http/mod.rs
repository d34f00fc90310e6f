//! MCP over HTTP: Streamable HTTP (2025-03-26 … 2025-11-25), the legacy HTTP+SSE transport
//! (2024-11-05), health endpoints. The only module that knows axum and hyper.
//!
//! Protocol decisions that need more than a comment are in `README.md` beside this file.

mod activity;
mod admission;
mod authn;
mod authz;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod health;
mod legacy_sse;
mod limits;
mod origin;
mod rescue;
mod router;
mod server;
mod sessionless;
mod sse;
mod streamable;
mod tls;
mod well_known;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use router::{admin_router, router};
pub use server::{ServerLimits, serve};
pub use tls::{
    ReloadingCert, TlsConfig, TlsError, TlsServer, acceptor as tls_acceptor, watch as watch_tls,
};

use crate::auth::Authenticator;
use crate::session::SessionStore;
use crate::telemetry::Metrics;

/// HTTP-facing settings, fixed at startup.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Path of the Streamable HTTP endpoint (`/mcp`).
    pub path: String,
    /// Paths of the legacy HTTP+SSE endpoints, when enabled.
    pub legacy: Option<LegacyPaths>,
    /// Whether sessionless (2026-07-28) callers are served on the endpoint.
    pub sessionless: bool,
    /// Path prefix under which clients reach us (from `--public-url`), for the legacy
    /// `endpoint` event, which must be resolvable by the client.
    pub public_prefix: String,
    /// Origins allowed besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// Allow `http(s)://localhost|127.0.0.1|[::1]` origins (default when bound to loopback).
    pub allow_loopback_origins: bool,
    /// When listening on loopback: the only `Host` names accepted (loopback names, the public
    /// URL's host, `--allowed-host`). `None`: any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// Whether the admin listener serves the activity page (`--admin-ui`).
    pub admin_ui: bool,
    /// Host names (`--allowed-host`) the admin listener's page answers to besides IP
    /// addresses and localhost.
    pub admin_hosts: Vec<String>,
    /// Largest request body accepted.
    pub max_message_bytes: usize,
    /// A request body must arrive within this long once its headers have (slow bodies).
    pub body_read_timeout: Duration,
    /// Comment lines on idle SSE streams at this interval.
    pub sse_keepalive: Duration,
    /// `retry` advertised in priming events.
    pub sse_retry: Duration,
}

/// Paths of the legacy HTTP+SSE transport.
#[derive(Debug, Clone)]
pub struct LegacyPaths {
    pub sse: String,
    pub message: String,
}

/// Shared state of every handler. Cloned for every request and layer, so it is one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] points to.
#[derive(Debug)]
pub struct Shared {
    pub store: SessionStore,
    /// The servers of sessionless (2026-07-28) callers.
    pub pool: Arc<crate::session::Pool>,
    pub config: Arc<HttpConfig>,
    /// Cancelled when the sidecar shuts down: open SSE streams end.
    pub shutdown: CancellationToken,
    pub metrics: Arc<Metrics>,
    /// Checks bearer tokens (or lets everyone in as anonymous with `--no-auth`).
    pub auth: Authenticator,
    /// Policy, redaction and audit: each session holds its own part; authentication
    /// failures and refused sessions are recorded here.
    pub governance: Arc<crate::governance::Governance>,
    /// The built-in authorization server, when one signs users in.
    pub authz: Option<Arc<crate::authz::AuthorizationServer>>,
    /// Users' upstream connections, when `[[connection]]` entries configure them.
    pub connections: Option<Arc<crate::connections::Connections>>,
}

impl AppState {
    /// The name the pages give this server: the protected resource's, else "mcp-warden".
    pub(crate) fn resource_name(&self) -> &str {
        self.auth
            .config()
            .map_or("mcp-warden", |c| c.resource_name.as_str())
    }

    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
