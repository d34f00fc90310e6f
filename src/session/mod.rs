//! Sessions: one per MCP client conversation, each owning one server process.
//!
//! A [`Session`] routes what its server writes: a response to the stream of the request it
//! answers, a progress notification to the stream of the request that carries its token, and
//! everything else (server→client requests, unrelated notifications) to the session's
//! standalone stream (the GET stream), or, while no GET stream is connected, to the stream of
//! the oldest request still in flight, so a client that never opens a GET stream still sees
//! them. Every message lands on exactly one stream. Client requests reach the server under ids
//! of the session's own, never reused, so an answer can only reach the request it was written
//! for; answers go back under the client's ids. The [`SessionStore`] owns all sessions,
//! enforces the cap, and reaps idle sessions and expired requests.

mod admission;
mod events;
mod store;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use admission::{PrincipalLimits, PrincipalRefusal, SessionRate};
pub use events::{AttachError, Cursor, Event, EventId, EventStream, Next, StreamLimits};
pub use store::{CreateError, Refused, Session, SessionError, SessionStore, Transport};

use crate::child::ChildSpec;
use crate::mcp::Kind;

/// What the transport attaches to a client request for [`Inspect`] to find again when the
/// server answers it (kept with the pending request; dropped when the request is done, however
/// it ends).
pub type RequestTag = Box<dyn Any + Send + Sync>;

/// An observer of one session's traffic, installed by the transport when it creates the
/// session (policy, redaction, audit). The session layer stays ignorant of what it does.
pub trait Inspect: Send + Sync + std::fmt::Debug {
    /// Every message of the server passes here before any client stream holds it; the return
    /// value is what clients get (and what replay buffers keep), `None` to drop it (a
    /// response is always answered). `request` is the tag of the client request the message
    /// answers, for responses.
    fn server_message(
        &self,
        request: Option<&RequestTag>,
        kind: Kind,
        line: Bytes,
    ) -> Option<Bytes>;
    /// The session ended; `reason` is a snake_case code, `exit` the server's exit status when
    /// it exited on its own.
    fn ended(&self, reason: &'static str, exit: Option<String>);
    /// For the transport to reach its own type again.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

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
    /// The server to run for each session.
    pub child: Arc<ChildSpec>,
}
