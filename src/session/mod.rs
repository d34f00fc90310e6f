//! Sessions: one per MCP client conversation, each owning one server process.
//!
//! A [`Session`] routes what its server writes: a response to the stream of the request it
//! answers, a progress notification to the stream of the request that carries its token, and
//! everything else (server→client requests, unrelated notifications) to the session's
//! standalone stream (the GET stream), or, while no GET stream is connected, to the stream of
//! the oldest request still in flight, so a client that never opens a GET stream still sees
//! them. Every message lands on exactly one stream. Client requests reach the server under ids
//! of the session's own, never reused, so an answer can only reach the request it was written
//! for; answers go back under the client's ids. Each session holds its
//! [`SessionGovernance`](crate::governance::SessionGovernance): every client request is
//! admitted by it before it can reach the server, and every server message passes it before
//! any stream holds it. The [`SessionStore`] owns all sessions, enforces the cap, and reaps
//! idle sessions and expired requests. Sessionless (2026-07-28) callers get the sessions of
//! the [`Pool`]: one per principal, initialized by the sidecar, that no client names.

mod events;
mod pool;
mod principal_limits;
mod routing;
mod spares;
mod store;

#[cfg(test)]
mod routing_tests;

use std::sync::Arc;
use std::time::Duration;

pub use events::{AttachError, Cursor, Event, EventId, EventStream, Next, StreamLimits};
pub use pool::{Pool, PoolError, Pooled, StateError};
pub use principal_limits::{PrincipalLimits, PrincipalRefusal, SessionRate};
pub use routing::{ClientInfo, Followed, Session, SessionError, Transport};
pub use store::{CreateError, Refused, SessionStore};

use crate::child::ChildSpec;
use crate::credentials::EnvPlan;

/// Everything the session layer needs, fixed at startup.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Sessions alive at once; more are refused.
    pub max_sessions: usize,
    /// What each principal may hold and start; `None` without authentication (every caller
    /// is the one anonymous principal, bounded by `max_sessions`).
    pub per_principal: Option<PrincipalLimits>,
    /// A session with no request in flight, no connected stream and no traffic for this long
    /// is ended.
    pub idle_timeout: Duration,
    /// A request the server has not answered in this long is cancelled at the server and
    /// answered with an error.
    pub request_timeout: Duration,
    /// Bounds of each stream's replay log.
    pub stream_limits: StreamLimits,
    /// Finished request streams kept per session for late resumption.
    pub retained_streams: usize,
    /// Prefix of session ids (`<replica>.<random>`), so a load balancer can route on it.
    pub replica_id: Option<String>,
    /// How each session's server environment is built (credentials included).
    pub env: EnvPlan,
    /// The server to run for each session.
    pub child: Arc<ChildSpec>,
    /// Servers kept started ahead of demand (`--spare`); 0 for none. Only when `env` does
    /// not depend on the caller (checked when the configuration is built).
    pub spares: usize,
}
