//! One session's routing: the client's requests in flight, the streams their answers take,
//! and where each message of the session's server goes (the rules are in the `session`
//! module docs). A [`Session`] reaches its server only through a
//! [`ChildHandle`](crate::child::ChildHandle) and hears from it only through its
//! [`ChildSink`] implementation, so it runs in-process without one.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventStream, StreamLimits};
use crate::auth::Principal;
use crate::child::{ChildHandle, ChildSink, Closed, ExitStatus};
use crate::credentials::{SecretSet, SessionEnv};
use crate::governance::{Call, SessionGovernance, Verdict};
use crate::mcp::{self, Envelope, Id, Kind, ProtocolVersion};
use crate::telemetry::otel::OtelSpan;
use crate::telemetry::{Label, Metrics};

/// Which HTTP transport a session was opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP: a stream per request, plus the GET stream.
    Streamable,
    /// HTTP+SSE (2024-11-05): everything on the one SSE connection.
    LegacySse,
    /// Sessionless (2026-07-28) callers of one principal, sharing a server the sidecar
    /// initialized: a stream per request, and no stream for anything else.
    Sessionless,
}

impl Transport {
    /// Whether a client may read what the server sends outside any request (a GET stream,
    /// the HTTP+SSE connection). Sessionless callers cannot.
    fn has_listener(self) -> bool {
        !matches!(self, Transport::Sessionless)
    }
}

/// Where the answers of a session's requests go: all that routing needs to know of its
/// transport, fixed when the session opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// Each request gets a stream of its own, which its answer finishes and which is kept a
    /// while for resumption (Streamable HTTP).
    OwnStream,
    /// Every answer goes to the standalone stream, which carries everything (HTTP+SSE).
    Standalone,
}

impl From<Transport> for Answers {
    fn from(transport: Transport) -> Answers {
        match transport {
            Transport::Streamable | Transport::Sessionless => Answers::OwnStream,
            Transport::LegacySse => Answers::Standalone,
        }
    }
}

/// Notifications a slow sessionless listener may fall behind by before it misses some.
const NOTICES: usize = 256;

/// The id of the standalone stream; request streams are numbered from 1.
const STANDALONE: u32 = 0;

/// How long a `subscriptions/listen` request may stay pending: as long as its caller keeps
/// the stream (a year stands for that).
const LISTEN_DEADLINE: Duration = Duration::from_secs(365 * 86_400);

/// Whether `stream` is one request's own: finished by its answer, unlike the standalone
/// stream.
fn is_own(stream: &EventStream) -> bool {
    stream.id() != STANDALONE
}

/// Why a message could not be handed to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session has ended")]
    Gone,
    #[error("a request with this id is already in flight")]
    DuplicateId,
    #[error("the request has no id")]
    NoId,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndReason {
    Closed(Closed),
    Deleted,
    /// An operator ended it (the activity page).
    Ended,
    Idle,
    /// An exchanged credential of the server expired: a server never keeps using one.
    CredentialExpired,
    /// A credential of the server was revoked (a user's connection).
    CredentialRevoked,
    Shutdown,
    StreamClosed,
}

impl EndReason {
    /// The snake_case code of audit records.
    fn code(self) -> &'static str {
        match self {
            EndReason::Closed(Closed::Exited(_)) => "server_exited",
            EndReason::Closed(Closed::StdoutClosed) => "server_closed_output",
            EndReason::Deleted => "deleted",
            EndReason::Ended => "ended_by_operator",
            EndReason::Idle => "idle",
            EndReason::Shutdown => "shutdown",
            EndReason::StreamClosed => "stream_closed",
            EndReason::CredentialExpired => "credential_expired",
            EndReason::CredentialRevoked => "credential_revoked",
        }
    }

    fn client_message(self) -> Cow<'static, str> {
        match self {
            EndReason::Closed(Closed::Exited(status)) => {
                format!("the MCP server exited ({status}) before answering").into()
            }
            EndReason::Closed(Closed::StdoutClosed) => "the MCP server closed its output".into(),
            EndReason::Deleted | EndReason::StreamClosed | EndReason::Ended => {
                "the session was terminated".into()
            }
            EndReason::Idle => "the session expired".into(),
            EndReason::CredentialExpired => {
                "the session's credentials expired: start a new session".into()
            }
            EndReason::CredentialRevoked => {
                "a credential of the session was revoked: start a new session".into()
            }
            EndReason::Shutdown => "the server is shutting down".into(),
        }
    }
}

/// The bounds of one session, from [`SessionConfig`](super::SessionConfig).
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionLimits {
    /// A request the server has not answered in this long is cancelled at the server and
    /// answered with an error.
    pub(super) request_timeout: Duration,
    /// A session with no request in flight, no connected stream and no traffic for this long
    /// is ended.
    pub(super) idle_timeout: Duration,
    /// Bounds of each stream's replay log.
    pub(super) stream_limits: StreamLimits,
    /// Finished request streams kept for late resumption.
    pub(super) retained_streams: usize,
}

/// The table that lists a session while it lives (the store's); the session leaves it when
/// it ends.
pub(super) trait SessionTable: Send + Sync + 'static {
    fn remove(&self, id: &str);
}

/// What a new session is made of.
pub(super) struct Opening<'a> {
    pub(super) id: Arc<str>,
    pub(super) transport: Transport,
    /// The principal the session belongs to (its session key).
    pub(super) owner: Arc<str>,
    /// Its server's environment: the secrets in it are redacted from what the server sends,
    /// and the session ends when its exchanged credentials expire.
    pub(super) env: &'a SessionEnv,
    pub(super) governance: SessionGovernance,
    pub(super) limits: SessionLimits,
    pub(super) metrics: Arc<Metrics>,
    pub(super) table: Weak<dyn SessionTable>,
}

/// One MCP session and its server.
#[derive(Debug)]
pub struct Session {
    id: Arc<str>,
    transport: Transport,
    owner: Arc<str>,
    /// Values injected into this session's server, to be redacted from its responses.
    secrets: SecretSet,
    /// When the first exchanged credential of the server expires.
    credentials_expire: Option<SystemTime>,
    /// The users' connections its server was given (checked while it lives).
    connections: Vec<crate::credentials::ConnectionRef>,
    /// Policy, redaction and audit of this session's traffic.
    governance: SessionGovernance,
    /// The server, once started (the session exists first: it is the server's sink).
    child: OnceLock<Box<dyn ChildHandle>>,
    routes: Mutex<Routes>,
    /// Negotiated protocol version: 0 until the initialize response, else index + 1.
    version: AtomicU8,
    /// The client's name and version, as its `initialize` said (for the activity page).
    client: OnceLock<ClientInfo>,
    /// Requests forwarded to the server.
    calls: AtomicU64,
    /// When the session opened, by the wall clock.
    opened_at: SystemTime,
    /// The id the next forwarded request gets at the server (see [`Routes::pending`]).
    next_request_id: AtomicI64,
    created: Instant,
    last_active_ms: AtomicU64,
    /// Messages evicted unread, and when that was last logged.
    dropped: AtomicU64,
    last_loss_log_ms: AtomicU64,
    ended: CancellationToken,
    /// What the server says outside any request, for sessionless listeners
    /// (`subscriptions/listen`); unused by other transports.
    notices: tokio::sync::broadcast::Sender<Bytes>,
    table: Weak<dyn SessionTable>,
    limits: SessionLimits,
    metrics: Arc<Metrics>,
    span: tracing::Span,
}

#[derive(Debug)]
struct Routes {
    /// Client requests the server has not answered yet, by the id the server knows them by.
    /// Every forwarded request gets an id of the session's own that is never used again, so
    /// an answer can only ever reach the request it was written for: a client that gave up
    /// on a request (cancelled, timed out) and reuses its id does not get the old request's
    /// late answer, which is dropped.
    pending: HashMap<i64, Pending>,
    /// The client's ids of pending requests → their ids at the server.
    by_client: HashMap<Id, i64>,
    /// Progress tokens of pending requests → their stream.
    progress: HashMap<Id, Arc<EventStream>>,
    /// Request streams that may still be read or resumed.
    streams: HashMap<u32, Arc<EventStream>>,
    /// Finished request streams, oldest first, kept for late resumption.
    retired: VecDeque<u32>,
    next_stream: u32,
    next_order: u64,
    /// Stream 0: the GET stream (or the legacy SSE connection).
    standalone: Arc<EventStream>,
    answers: Answers,
    ended: Option<EndReason>,
}

/// What follows a forwarded request until it is done: its governed call (handed back to the
/// governance) and its exported span (ended with the request's outcome).
#[derive(Debug, Default)]
pub struct Followed {
    pub call: Option<Call>,
    pub span: Option<OtelSpan>,
}

/// What a client says of itself in `initialize` (`clientInfo`), cut to a displayable length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub version: String,
}

impl ClientInfo {
    /// Longest name or version kept.
    const MAX: usize = 64;

    fn of_initialize(message: &[u8]) -> Option<ClientInfo> {
        #[derive(Deserialize)]
        struct Init {
            params: Params,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Params {
            client_info: Info,
        }
        #[derive(Deserialize)]
        struct Info {
            name: String,
            #[serde(default)]
            version: String,
        }
        let cut = |s: String| {
            s.chars()
                .filter(|c| !c.is_control())
                .take(Self::MAX)
                .collect()
        };
        let info = serde_json::from_slice::<Init>(message)
            .ok()?
            .params
            .client_info;
        Some(ClientInfo {
            name: cut(info.name),
            version: cut(info.version),
        })
    }
}

#[derive(Debug)]
struct Pending {
    /// The id the client gave the request; its answer goes back under it.
    client_id: Id,
    /// The id the server knows the request by.
    ours: i64,
    stream: Arc<EventStream>,
    progress: Option<Id>,
    started: Instant,
    deadline: Instant,
    /// Arrival order, to find the oldest request in flight.
    order: u64,
    initialize: bool,
    /// Metric labels (bounded values).
    method: Label,
    tool: Label,
    /// The governed call, handed back to the governance when the request is done.
    call: Option<Call>,
    /// Its exported span, ended with it.
    exported: Option<OtelSpan>,
}

impl Session {
    /// A session with no server yet: [`Session::attach`] gives it one.
    pub(super) fn open(o: Opening<'_>) -> Arc<Session> {
        let span = tracing::info_span!("session", session.id = %short(&o.id));
        Arc::new(Session {
            id: o.id,
            transport: o.transport,
            owner: o.owner,
            secrets: o.env.secrets(),
            credentials_expire: o.env.expires_at(),
            connections: o.env.connections().to_vec(),
            governance: o.governance,
            child: OnceLock::new(),
            routes: Mutex::new(Routes {
                pending: HashMap::new(),
                by_client: HashMap::new(),
                progress: HashMap::new(),
                streams: HashMap::new(),
                retired: VecDeque::new(),
                next_stream: 1,
                next_order: 0,
                standalone: EventStream::new(STANDALONE, o.limits.stream_limits),
                answers: o.transport.into(),
                ended: None,
            }),
            version: AtomicU8::new(0),
            client: OnceLock::new(),
            calls: AtomicU64::new(0),
            opened_at: SystemTime::now(),
            next_request_id: AtomicI64::new(1),
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_loss_log_ms: AtomicU64::new(0),
            ended: CancellationToken::new(),
            notices: tokio::sync::broadcast::channel(NOTICES).0,
            table: o.table,
            limits: o.limits,
            metrics: o.metrics,
            span,
        })
    }

    /// Gives the session its server (once).
    pub(super) fn attach(&self, child: Box<dyn ChildHandle>) {
        let _ = self.child.set(child);
    }

    /// Records the start of the session, once its server runs and the store lists it.
    pub(super) fn started(&self) {
        self.governance.started(&self.id);
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The principal the session belongs to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The users' connections its server was given.
    pub fn connections(&self) -> &[crate::credentials::ConnectionRef] {
        &self.connections
    }

    /// Ends the session because a credential its server was given was revoked.
    pub(super) fn revoked(&self) {
        self.end(EndReason::CredentialRevoked);
    }

    /// The secret values injected into this session's server.
    pub fn secrets(&self) -> &SecretSet {
        &self.secrets
    }

    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The protocol version the server agreed to in `initialize`, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        match self.version.load(Ordering::Acquire) {
            0 => None,
            n => ProtocolVersion::ALL.get(usize::from(n) - 1).copied(),
        }
    }

    /// The client's name and version from its `initialize`, once seen.
    pub fn client(&self) -> Option<&ClientInfo> {
        self.client.get()
    }

    /// Requests forwarded to the server so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// When the session opened.
    pub fn opened_at(&self) -> SystemTime {
        self.opened_at
    }

    /// When the client was last heard from.
    pub fn last_active(&self) -> SystemTime {
        self.opened_at + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
    }

    /// The subject and client id of the principal the session belongs to.
    pub fn who(&self) -> (&str, Option<&str>) {
        self.governance.who()
    }

    /// The server's pid (for tests and logs).
    pub fn child_pid(&self) -> Option<i32> {
        self.child.get().map(|c| c.pid())
    }

    /// Resolves when the session has ended.
    /// The server's notifications outside any request, from now on (sessionless sessions).
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<Bytes> {
        self.notices.subscribe()
    }

    pub fn ended(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.ended.cancelled()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Records client activity (for idle reaping).
    pub fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_active_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The session's standalone stream (GET / legacy SSE).
    pub fn standalone(&self) -> Arc<EventStream> {
        self.routes.lock().standalone.clone()
    }

    /// A request stream by id, or the standalone stream for 0.
    pub fn stream(&self, id: u32) -> Option<Arc<EventStream>> {
        let routes = self.routes.lock();
        if id == STANDALONE {
            return Some(routes.standalone.clone());
        }
        routes.streams.get(&id).cloned()
    }

    /// Forwards a client request under an id of the session's own (see [`Routes::pending`])
    /// and returns the stream its answer will arrive on, under the client's `id`.
    pub async fn request(
        &self,
        id: Id,
        method: &str,
        tool: Option<&str>,
        progress: Option<Id>,
        message: Bytes,
        followed: Followed,
    ) -> Result<Arc<EventStream>, SessionError> {
        let Followed {
            call,
            span: exported,
        } = followed;
        let timeout = self.limits.request_timeout;
        let (method_label, tool_label) = (
            self.metrics.method_label(method),
            self.metrics.tool_label(tool),
        );
        let ours = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        if method == mcp::method::INITIALIZE
            && let Some(info) = ClientInfo::of_initialize(&message)
        {
            let _ = self.client.set(info);
        }
        let message =
            Bytes::from(mcp::replace_id(&message, &Id::Int(ours)).ok_or(SessionError::NoId)?);
        let stream = {
            let mut r = self.routes.lock();
            if r.ended.is_some() {
                return Err(SessionError::Gone);
            }
            if r.by_client.contains_key(&id) {
                return Err(SessionError::DuplicateId);
            }
            let stream = r.answer_stream(self.limits.stream_limits, true);
            if let Some(token) = &progress {
                r.progress.insert(token.clone(), stream.clone());
            }
            let order = r.next_order;
            r.next_order += 1;
            let now = Instant::now();
            r.by_client.insert(id.clone(), ours);
            r.pending.insert(
                ours,
                Pending {
                    client_id: id,
                    ours,
                    stream: stream.clone(),
                    progress,
                    started: now,
                    // A listen stream lasts as long as its caller keeps it (only a native
                    // server is sent one).
                    deadline: if method == mcp::method::SUBSCRIPTIONS_LISTEN {
                        now + LISTEN_DEADLINE
                    } else {
                        now + timeout
                    },
                    order,
                    initialize: method == mcp::method::INITIALIZE,
                    method: method_label,
                    tool: tool_label,
                    call,
                    exported,
                },
            );
            stream
        };
        if self.send(message).await.is_err() {
            let never_sent = self.routes.lock().take(ours);
            if let Some(call) = never_sent.and_then(|p| p.call) {
                self.governance.finished(call);
            }
            return Err(SessionError::Gone);
        }
        Ok(stream)
    }

    /// Answers a request without the server (the bridge's own replies), on the stream such
    /// an answer would take.
    pub fn answer_locally(&self, response: Bytes) -> Arc<EventStream> {
        let stream = self
            .routes
            .lock()
            .answer_stream(self.limits.stream_limits, false);
        stream.push(Kind::Response, response);
        if is_own(&stream) {
            stream.finish();
        }
        stream
    }

    /// Forwards a client notification or response.
    pub async fn send(&self, message: Bytes) -> Result<(), SessionError> {
        let child = self.child.get().ok_or(SessionError::Gone)?;
        child.send(message).await.map_err(|_| SessionError::Gone)
    }

    /// The client cancelled one of its requests (`notifications/cancelled`, `message`): its
    /// stream ends without a response (the client no longer expects one), a late answer
    /// from the server is dropped, and the server gets the cancellation under the id it
    /// knows the request by. A cancellation of no pending request is not forwarded: its id
    /// could name another request at the server.
    pub async fn cancelled_by_client(&self, id: &Id, message: &[u8]) -> Result<(), SessionError> {
        let pending = self.routes.lock().take_client(id);
        let Some(p) = pending else {
            let _g = self.span.enter();
            tracing::debug!("dropped a cancellation of no pending request");
            return Ok(());
        };
        let ours = p.ours;
        self.complete(p, None, Some("cancelled"));
        match mcp::with_request_id(message, &Id::Int(ours)) {
            Some(cancel) => self.send(Bytes::from(cancel)).await,
            None => Ok(()),
        }
    }

    /// The janitor's visit: requests past their deadline are expired, and the session ends
    /// when it has been idle too long or its server's credentials expired.
    pub(super) fn sweep(&self, now: Instant) {
        self.expire_requests(now);
        if self.is_idle(now, self.limits.idle_timeout) {
            self.end(EndReason::Idle);
        } else if self
            .credentials_expire
            .is_some_and(|at| SystemTime::now() >= at)
        {
            self.end(EndReason::CredentialExpired);
        }
    }

    /// Whether the session is still in use: a request in flight, or client traffic within
    /// `quiet`.
    pub(super) fn is_busy(&self, now: Instant, quiet: Duration) -> bool {
        let last =
            self.created + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        !self.routes.lock().pending.is_empty() || now.saturating_duration_since(last) < quiet
    }

    /// Resolves once the server (its whole tree) has exited, or at once without one.
    pub(super) async fn child_exited(&self) {
        if let Some(child) = self.child.get() {
            child.wait().await;
        }
    }

    /// Requests past their deadline: cancelled at the server, answered with an error.
    fn expire_requests(&self, now: Instant) {
        let expired: Vec<Pending> = {
            let mut r = self.routes.lock();
            if r.pending.is_empty() {
                return;
            }
            let ids: Vec<i64> = r
                .pending
                .iter()
                .filter(|(_, p)| p.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| r.take(id)).collect()
        };
        for p in expired {
            let _g = self.span.enter();
            tracing::warn!(request.id = %p.client_id, "request timed out; cancelling it at the server");
            let ours = Id::Int(p.ours);
            let cancel = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"request timed out at the gateway"}}}}"#,
                ours.to_json()
            );
            if let Some(child) = self.child.get() {
                let _ = child.try_send(Bytes::from(cancel));
            }
            let reply =
                mcp::error_response(Some(&ours), mcp::code::REQUEST_TIMEOUT, "request timed out");
            self.complete(p, Some(Bytes::from(reply)), Some("timeout"));
        }
    }

    /// Ends a request: its response (if any, addressed to the id the server knows the
    /// request by) is inspected and goes to its stream under the client's id, a request
    /// stream finishes and is kept for late resumption, and the operation is measured.
    /// `error`: a bounded code for the metrics, `None` on success.
    fn complete(&self, mut p: Pending, response: Option<Bytes>, error: Option<&'static str>) {
        if let Some(response) = response {
            let response = self.inspected(p.call.as_mut(), Kind::Response, response);
            let response = match response.and_then(|r| mcp::replace_id(&r, &p.client_id)) {
                Some(r) => Bytes::from(r),
                // Governance answers with a message of the request's id: not reached.
                None => Bytes::from(mcp::error_response(
                    Some(&p.client_id),
                    mcp::code::INTERNAL_ERROR,
                    "the server's answer could not be delivered",
                )),
            };
            p.stream.push(Kind::Response, response);
        }
        if is_own(&p.stream) {
            p.stream.finish();
            self.routes
                .lock()
                .retire(p.stream.id(), self.limits.retained_streams);
        }
        self.metrics
            .operation(&p.method, &p.tool, error, p.started.elapsed());
        if let Some(mut span) = p.exported.take() {
            if let Some(e) = error {
                span.fail(e);
            }
            span.end();
        }
        if let Some(call) = p.call {
            self.governance.finished(call);
        }
    }

    fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        let last =
            self.created + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        if now.saturating_duration_since(last) < idle {
            return false;
        }
        let r = self.routes.lock();
        r.pending.is_empty()
            && !r.standalone.is_attached()
            && r.streams.values().all(|s| !s.is_attached())
    }

    /// Ends the session: every pending request gets an error, streams close, the id is
    /// forgotten (404 from now on) and the server's tree is terminated. Idempotent.
    pub(super) fn end(&self, reason: EndReason) {
        let pending = {
            let mut r = self.routes.lock();
            if r.ended.is_some() {
                return;
            }
            r.ended = Some(reason);
            r.progress.clear();
            r.by_client.clear();
            std::mem::take(&mut r.pending)
        };
        let _g = self.span.enter();
        let message = reason.client_message();
        let failed = pending.len();
        let error = match reason {
            EndReason::Closed(_) => "server_exited",
            _ => "session_ended",
        };
        for (ours, p) in pending {
            let reply = mcp::error_response(
                Some(&Id::Int(ours)),
                mcp::code::SERVER_UNAVAILABLE,
                &message,
            );
            self.complete(p, Some(Bytes::from(reply)), Some(error));
        }
        let standalone = self.routes.lock().standalone.clone();
        standalone.finish();
        self.ended.cancel();
        if let Some(table) = self.table.upgrade() {
            table.remove(&self.id);
        }
        self.metrics.session_ended(self.created.elapsed());
        match reason {
            EndReason::Closed(_) => {
                tracing::warn!(failed_requests = failed, "session ended: {message}")
            }
            _ => tracing::info!(failed_requests = failed, ?reason, "session ended"),
        }
        if let Some(child) = self.child.get() {
            child.terminate();
        }
        let exit = match reason {
            EndReason::Closed(Closed::Exited(status)) => Some(status.to_string()),
            _ => None,
        };
        self.governance.ended(reason.code(), exit);
    }

    /// What clients get of a server message, as governance lets it pass; `None` when it
    /// must not reach them. A server request dropped that way is answered with an error, so
    /// the server does not wait for it.
    fn inspected(&self, call: Option<&mut Call>, kind: Kind, line: Bytes) -> Option<Bytes> {
        let out = self.governance.server_message(call, kind, line.clone());
        if out.is_none()
            && kind == Kind::Request
            && let Ok(env) = Envelope::parse(&line)
        {
            let reply = mcp::error_response(
                env.id.as_ref(),
                mcp::code::INTERNAL_ERROR,
                "the request could not be inspected",
            );
            if let Some(child) = self.child.get() {
                let _ = child.try_send(Bytes::from(reply));
            }
        }
        out
    }

    /// Asks the session's governance about one client request (`body` holds `env`).
    pub fn admit(&self, principal: &Arc<Principal>, env: &Envelope<'_>, body: &Bytes) -> Verdict {
        self.governance.admit(principal, &self.id, env, body)
    }

    /// Where a message that answers no request goes (see the module docs).
    fn route_unsolicited(&self, kind: Kind, line: Bytes) {
        let Some(line) = self.inspected(None, kind, line) else {
            return;
        };
        if !self.transport.has_listener() {
            // No client reads a stream of the session: a notification goes to whoever
            // listens (`subscriptions/listen`; dropped when nobody does); a request goes to
            // the oldest request in flight (its caller may answer it in its next round
            // trip), or is refused at once (the server must not wait for an answer nobody
            // can give).
            if kind == Kind::Notification {
                if mcp::modern::is_listenable(&line) {
                    // Only while someone listens: otherwise it would just hold memory.
                    if self.notices.receiver_count() > 0 {
                        let _ = self.notices.send(line);
                    }
                } else if let Some(only) = self.only_request_in_flight() {
                    // A log line is the request's when it is the only one in flight (its
                    // caller gets it if it asked for a log level); else nobody's.
                    let lost = only.push(kind, line);
                    self.report_lost(lost);
                }
            } else if kind == Kind::Request {
                // The question belongs to a request only when exactly one is in flight: with
                // several, stdio does not say whose it is, and one caller must never see or
                // answer another's question. It is refused then.
                let target = self.only_request_in_flight();
                match target {
                    Some(stream) => {
                        let lost = stream.push(kind, line);
                        self.report_lost(lost);
                    }
                    None => self.refuse_server_request(
                        &line,
                        "no single request of a client is in flight to ask this in",
                    ),
                }
            }
            return;
        }
        // The GET stream while a client reads it, else the stream of the oldest request in
        // flight (on HTTP+SSE, the standalone stream again), else the standalone stream,
        // where it waits for a GET stream.
        let target = {
            let r = self.routes.lock();
            if r.standalone.is_attached() {
                r.standalone.clone()
            } else {
                r.pending
                    .values()
                    .filter(|p| !p.stream.is_finished())
                    .min_by_key(|p| p.order)
                    .map_or_else(|| r.standalone.clone(), |p| p.stream.clone())
            }
        };
        let lost = target.push(kind, line);
        self.report_lost(lost);
    }

    /// Events evicted unread from a full stream: server→client requests among them are
    /// answered with an error so the server does not wait forever.
    fn report_lost(&self, lost: Vec<Event>) {
        if lost.is_empty() {
            return;
        }
        let _g = self.span.enter();
        // Once per second at most: a flood must not turn into a log flood.
        let now = self.created.elapsed().as_millis() as u64;
        let last = self.last_loss_log_ms.load(Ordering::Relaxed);
        let dropped =
            self.dropped.fetch_add(lost.len() as u64, Ordering::Relaxed) + lost.len() as u64;
        if last == 0 || now.saturating_sub(last) >= 1000 {
            self.last_loss_log_ms.store(now.max(1), Ordering::Relaxed);
            tracing::warn!(
                dropped_total = dropped,
                "client is not reading its stream; dropped the oldest undelivered messages"
            );
        }
        for event in lost {
            if event.kind == Kind::Request {
                self.refuse_server_request(
                    &event.data,
                    "the client did not read this request in time",
                );
            }
        }
    }

    /// The stream of the one request in flight, when exactly one is.
    fn only_request_in_flight(&self) -> Option<Arc<EventStream>> {
        let r = self.routes.lock();
        let mut live = r.pending.values().filter(|p| !p.stream.is_finished());
        match (live.next(), live.next()) {
            (Some(only), None) => Some(only.stream.clone()),
            _ => None,
        }
    }

    /// Answers a request of the server with an error, for a client that cannot.
    pub fn refuse_server_request(&self, request: &[u8], why: &str) {
        if let Ok(env) = Envelope::parse(request) {
            let reply = mcp::error_response(env.id.as_ref(), mcp::code::INTERNAL_ERROR, why);
            if let Some(child) = self.child.get() {
                let _ = child.try_send(Bytes::from(reply));
            }
        }
    }

    fn record_version(&self, line: &[u8]) {
        #[derive(Deserialize)]
        struct Reply<'a> {
            #[serde(borrow)]
            result: Option<InitResult<'a>>,
        }
        #[derive(Deserialize)]
        struct InitResult<'a> {
            #[serde(borrow, rename = "protocolVersion")]
            protocol_version: Cow<'a, str>,
        }
        let version = serde_json::from_slice::<Reply<'_>>(line)
            .ok()
            .and_then(|r| r.result)
            .and_then(|r| ProtocolVersion::parse(&r.protocol_version));
        if let Some(v) = version {
            let index = ProtocolVersion::ALL
                .iter()
                .position(|x| *x == v)
                .unwrap_or(0);
            self.version.store(index as u8 + 1, Ordering::Release);
            let _g = self.span.enter();
            tracing::debug!(protocol.version = v.as_str(), "session initialized");
        }
    }
}

impl Routes {
    /// The stream a new request's answer will take. A stream of the request's own gets the
    /// next id and, when `resumable`, can be found by it until it is forgotten.
    fn answer_stream(&mut self, limits: StreamLimits, resumable: bool) -> Arc<EventStream> {
        if self.answers == Answers::Standalone {
            return self.standalone.clone();
        }
        let stream = EventStream::new(self.next_stream, limits);
        self.next_stream = self.next_stream.wrapping_add(1).max(1);
        if resumable {
            self.streams.insert(stream.id(), stream.clone());
        }
        stream
    }

    /// Removes a pending request (by the id the server knows it by) and its progress token.
    fn take(&mut self, ours: i64) -> Option<Pending> {
        let p = self.pending.remove(&ours)?;
        self.by_client.remove(&p.client_id);
        if let Some(token) = &p.progress {
            self.progress.remove(token);
        }
        Some(p)
    }

    /// Removes a pending request by the client's id.
    fn take_client(&mut self, id: &Id) -> Option<Pending> {
        let ours = *self.by_client.get(id)?;
        self.take(ours)
    }

    /// Keeps a finished stream for late resumption, forgetting the oldest beyond `keep`.
    fn retire(&mut self, id: u32, keep: usize) {
        self.retired.push_back(id);
        while self.retired.len() > keep {
            if let Some(old) = self.retired.pop_front() {
                self.streams.remove(&old);
            }
        }
    }
}

impl ChildSink for Session {
    fn on_message(&self, line: Bytes) {
        let env = match Envelope::parse(&line) {
            Ok(env) => env,
            Err(e) => {
                let _g = self.span.enter();
                // The content is not logged: it may carry user data.
                tracing::warn!(bytes = line.len(), error = %e, "dropped a line from the server that is not a JSON-RPC message");
                return;
            }
        };
        match env.kind {
            Kind::Response => {
                let Some(id) = env.id else {
                    let _g = self.span.enter();
                    tracing::warn!("the server reported an error about an unidentifiable message");
                    return;
                };
                // Only ids the session gave out name requests; the server chose anything else.
                let pending = match id {
                    Id::Int(ours) => self.routes.lock().take(ours),
                    _ => None,
                };
                match pending {
                    Some(p) => {
                        if p.initialize {
                            self.record_version(&line);
                        }
                        let error = env
                            .is_error
                            .then(|| error_type(&line))
                            .or_else(|| tool_error(&p, &line));
                        self.complete(p, Some(line), error);
                    }
                    None => {
                        let _g = self.span.enter();
                        // Not the id: the server chose it, and it may hold anything.
                        tracing::debug!(
                            "dropped a response to a request that is no longer pending"
                        );
                    }
                }
            }
            Kind::Notification if env.method.as_deref() == Some(mcp::method::PROGRESS) => {
                let stream = mcp::progress_token(env.params)
                    .and_then(|t| self.routes.lock().progress.get(&t).cloned());
                match stream {
                    Some(s) => {
                        if let Some(line) = self.inspected(None, Kind::Notification, line) {
                            let lost = s.push(Kind::Notification, line);
                            self.report_lost(lost);
                        }
                    }
                    None => {
                        let _g = self.span.enter();
                        tracing::debug!("dropped a progress notification for no pending request");
                    }
                }
            }
            Kind::Notification
                if self.transport == Transport::Sessionless
                    && memchr::memmem::find(
                        &line,
                        mcp::modern::meta::SUBSCRIPTION_ID.as_bytes(),
                    )
                    .is_some() =>
            {
                // A native (2026-07-28) server's notification on a listen stream names the
                // stream by the id its `subscriptions/listen` had: one of the session's.
                let params: Option<serde_json::Value> =
                    env.params.and_then(|p| serde_json::from_str(p.get()).ok());
                let stream = match mcp::modern::subscription_of(params.as_ref()) {
                    Some(Id::Int(ours)) => self
                        .routes
                        .lock()
                        .pending
                        .get(&ours)
                        .map(|p| p.stream.clone()),
                    _ => None,
                };
                match stream {
                    Some(s) => {
                        if let Some(line) = self.inspected(None, Kind::Notification, line) {
                            let lost = s.push(Kind::Notification, line);
                            self.report_lost(lost);
                        }
                    }
                    None => self.route_unsolicited(Kind::Notification, line),
                }
            }
            kind => self.route_unsolicited(kind, line),
        }
    }

    fn on_oversized(&self, id: Option<Id>, len: usize) {
        let Some(Id::Int(ours)) = id else { return };
        let pending = self.routes.lock().take(ours);
        if let Some(p) = pending {
            let msg = format!(
                "the MCP server's response ({len} bytes) exceeds the gateway's message size limit"
            );
            let reply = mcp::error_response(Some(&Id::Int(ours)), mcp::code::INTERNAL_ERROR, &msg);
            self.complete(p, Some(Bytes::from(reply)), Some("too_large"));
        }
    }

    fn on_closed(&self, why: Closed) {
        if let Closed::Exited(status) = why {
            let _g = self.span.enter();
            tracing::info!(%status, "MCP server exited");
            // Exits the session asked for (DELETE, idle, shutdown) are terminations.
            let requested =
                matches!(self.routes.lock().ended, Some(r) if !matches!(r, EndReason::Closed(_)));
            self.metrics.child_exited(match status {
                _ if requested => "terminated",
                ExitStatus::Code(0) => "exited",
                ExitStatus::Code(_) => "failed",
                ExitStatus::Signal(_) => "killed",
            });
        }
        self.end(EndReason::Closed(why));
    }
}

/// The metric code of a JSON-RPC error response: the standard codes by name, others bounded.
fn error_type(line: &[u8]) -> &'static str {
    #[derive(Deserialize)]
    struct Reply {
        error: Option<ErrorCode>,
    }
    #[derive(Deserialize)]
    struct ErrorCode {
        code: i64,
    }
    let code = serde_json::from_slice::<Reply>(line)
        .ok()
        .and_then(|r| r.error)
        .map(|e| e.code);
    match code {
        Some(mcp::code::PARSE_ERROR) => "-32700",
        Some(mcp::code::INVALID_REQUEST) => "-32600",
        Some(mcp::code::METHOD_NOT_FOUND) => "-32601",
        Some(mcp::code::INVALID_PARAMS) => "-32602",
        Some(mcp::code::INTERNAL_ERROR) => "-32603",
        _ => "jsonrpc_error",
    }
}

/// `tool_error` for a `tools/call` result that reports `isError: true`.
fn tool_error(p: &Pending, line: &[u8]) -> Option<&'static str> {
    (p.method.as_str() == mcp::method::TOOLS_CALL
        && memchr::memmem::find(line, b"\"isError\":true").is_some())
    .then_some("tool_error")
}

/// Enough of a session id to correlate log lines, not enough to use it.
fn short(id: &str) -> &str {
    let cut = id.len().saturating_sub(8);
    id.get(cut..).unwrap_or(id)
}
