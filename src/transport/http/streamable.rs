//! Streamable HTTP: POST (messages in), GET (the standalone stream, and resumption), DELETE.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::value::RawValue;

use super::AppState;
use super::headers::{self, LAST_EVENT_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use super::rescue::Failure;
use super::sse::{self, Framing};
use crate::auth::Principal;
use crate::governance::Verdict;
use crate::mcp::{self, Envelope, Kind, ProtocolVersion};
use crate::policy::DenyReason;
use crate::session::{CreateError, EventId, EventStream, Next, Session, SessionError, Transport};
use crate::telemetry::TraceContext;

pub(crate) async fn post(
    State(st): State<AppState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    post_inner(&st, &principal, &headers, body)
        .await
        .unwrap_or_else(Failure::into_response)
}

pub(crate) async fn get(
    State(st): State<AppState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
) -> Response {
    get_inner(&st, &principal, &headers).unwrap_or_else(Failure::into_response)
}

pub(crate) async fn delete(
    State(st): State<AppState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        refuse_sessionless(&st, &headers)?;
        check_version(&headers)?;
        let session = lookup(&st, &principal, &headers, Transport::Streamable)?;
        st.store.terminate(&session, false);
        Ok(StatusCode::OK.into_response())
    })();
    result.unwrap_or_else(Failure::into_response)
}

/// GET and DELETE of a sessionless caller: the era has neither (no session, no stream
/// outside a request).
fn refuse_sessionless(st: &AppState, headers: &HeaderMap) -> Result<(), Failure> {
    match headers::single(headers, &MCP_PROTOCOL_VERSION) {
        Ok(Some(v)) if st.config.sessionless && ProtocolVersion::is_modern_era(v) => {
            Err(Failure::MethodNotAllowed("POST"))
        }
        _ => Ok(()),
    }
}

/// `MCP-Protocol-Version`, when present, must name a version we serve.
fn check_version(headers: &HeaderMap) -> Result<(), Failure> {
    let value = headers::single(headers, &MCP_PROTOCOL_VERSION)
        .map_err(|_| Failure::MalformedHeader("MCP-Protocol-Version"))?;
    match value {
        None => Ok(()),
        Some(v) if ProtocolVersion::parse(v).is_some() => Ok(()),
        Some(v) if ProtocolVersion::is_modern_era(v) => Err(Failure::ModernEra),
        Some(_) => Err(Failure::UnsupportedVersion),
    }
}

/// The session named by `Mcp-Session-Id`, if it is live, of this transport, and owned by
/// this principal. Anything else is "not found": a session id alone proves nothing.
pub(crate) fn lookup_id(
    st: &AppState,
    principal: &Principal,
    id: &str,
    transport: Transport,
) -> Result<Arc<Session>, Failure> {
    let session = st.store.get(id).ok_or(Failure::UnknownSession)?;
    if session.transport() != transport || session.owner() != principal.session_key() {
        return Err(Failure::UnknownSession);
    }
    session.touch();
    Ok(session)
}

fn lookup(
    st: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    transport: Transport,
) -> Result<Arc<Session>, Failure> {
    let id = headers::single(headers, &MCP_SESSION_ID)
        .map_err(|_| Failure::MalformedHeader("Mcp-Session-Id"))?
        .ok_or(Failure::MissingSession)?;
    lookup_id(st, principal, id, transport)
}

/// Reads the whole body, refusing more than `limit` bytes (by `Content-Length` first).
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Failure> {
    // Already buffered and bounded by the body layer (limits.rs).
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| Failure::PayloadTooLarge(0))?;
    if mcp::too_deep(&body, mcp::MAX_DEPTH) {
        return Err(Failure::Parse(mcp::ParseError::Invalid(
            "nesting deeper than 128 levels",
        )));
    }
    Ok(body)
}

async fn post_inner(
    st: &AppState,
    principal: &Arc<Principal>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let accepts = headers::accepts(headers);
    if !(accepts.json && accepts.sse) {
        return Err(Failure::NotAcceptable(
            "both application/json and text/event-stream",
        ));
    }
    if !headers::is_json(headers) {
        return Err(Failure::UnsupportedMediaType);
    }
    let modern_header = st.config.sessionless
        && headers::single(headers, &MCP_PROTOCOL_VERSION)
            .ok()
            .flatten()
            .is_some_and(ProtocolVersion::is_modern_era);
    if !modern_header {
        check_version(headers)?;
    }
    let session_id = headers::single(headers, &MCP_SESSION_ID)
        .map_err(|_| Failure::MalformedHeader("Mcp-Session-Id"))?;
    let body = read_body(body).await?;
    if st.config.sessionless && super::sessionless::is_sessionless(headers, &body) {
        return super::sessionless::post(st, principal, headers, body).await;
    }
    let batch = mcp::first_non_whitespace(&body) == Some(b'[');
    let Some(session_id) = session_id else {
        let caller_token = super::authn::bearer_token(headers);
        return initialize(
            st,
            principal,
            caller_token,
            body,
            batch,
            headers::trace(headers),
        )
        .await;
    };
    let session = lookup_id(st, principal, session_id, Transport::Streamable)?;
    if batch {
        if !session
            .version()
            .unwrap_or(ProtocolVersion::ASSUMED)
            .allows_batches()
        {
            return Err(Failure::BatchNotAllowed);
        }
        return post_batch(st, principal, &session, &body, headers::trace(headers)).await;
    }
    let env = parse_client_message(&body)?;
    let delivered = deliver(
        principal,
        &session,
        &env,
        body.clone(),
        headers::trace(headers),
        true,
    )
    .await;
    match step_up(st, delivered)? {
        Some(stream) => Ok(respond(st, &session, stream, false, principal.expires_at).await),
        None => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

/// A step-up refusal carries this resource's challenge, in the same form as
/// authentication's own (RFC 6750 §3.1, RFC 9728 §5.1), so MCP clients step up.
pub(crate) fn step_up<T>(st: &AppState, delivered: Result<T, Failure>) -> Result<T, Failure> {
    if let Err(Failure::Refused(refusal)) = &delivered
        && let DenyReason::InsufficientScope { scopes } = &refusal.deny.reason
        && st.auth.is_enabled()
    {
        let needed: Vec<&str> = scopes.iter().map(String::as_str).collect();
        return Err(super::authn::insufficient_scope(
            st,
            &st.config.path,
            &needed,
        ));
    }
    delivered
}

/// Parses one message of a client, refusing what a server could read differently from the
/// sidecar: a request id beyond 64 bits (most servers cannot represent it and would never
/// answer), an object with two keys equal under case folding, or a member spelled in another
/// case (which one counts depends on the parser: see [`mcp::ambiguous_key`]), a method other than a
/// notification's sent without an id (JSON-RPC makes it a notification, which gets no
/// answer, so nothing could tell the client it was refused: a governed call must not pass
/// undecided that way), and a string holding a lone UTF-16 surrogate escape (it denotes no
/// text: the sidecar could not read what a server might, so nothing of the message could
/// be inspected). Every transport reads client messages through here.
pub(crate) fn parse_client_message(bytes: &[u8]) -> Result<Envelope<'_>, Failure> {
    let env = Envelope::parse(bytes).map_err(Failure::Parse)?;
    if mcp::has_lone_surrogate(bytes) {
        return Err(Failure::Parse(mcp::ParseError::Json(
            "a string holds a lone UTF-16 surrogate escape".into(),
        )));
    }
    if env.kind == Kind::Notification
        && !env
            .method
            .as_deref()
            .is_some_and(mcp::method::is_notification)
    {
        return Err(Failure::Parse(mcp::ParseError::Invalid(
            "only notifications/* methods may be sent without an id",
        )));
    }
    if env.kind == Kind::Request && matches!(env.id, Some(mcp::Id::BigInt(_))) {
        return Err(Failure::Parse(mcp::ParseError::Invalid(
            "integer ids must fit in 64 bits",
        )));
    }
    if let Some(why) = mcp::ambiguous_key(bytes) {
        return Err(Failure::Parse(mcp::ParseError::Invalid(why)));
    }
    Ok(env)
}

/// Hands one client message to the session. Returns the stream of a request's answer.
///
/// Requests pass the session's governance first ([`Session::admit`]); a refused one never
/// reaches the server. It is answered with an HTTP status when it came `alone` on Streamable HTTP and
/// the refusal has one (403 step-up, 429), else with a JSON-RPC error on its stream.
pub(crate) async fn deliver(
    principal: &Arc<Principal>,
    session: &Session,
    env: &Envelope<'_>,
    message: Bytes,
    trace: Option<TraceContext>,
    alone: bool,
) -> Result<Option<Arc<EventStream>>, Failure> {
    let original = message.clone();
    let method = env.method.as_deref().unwrap_or_default();
    // The tool of a call, the prompt of a prompts/get: the span's target.
    let target = match method {
        mcp::method::TOOLS_CALL | "prompts/get" => {
            env.params.and_then(|p| mcp::top_level_str(p, "name"))
        }
        _ => None,
    };
    let exported = match env.kind {
        Kind::Request => request_span(session, env, target.as_deref(), trace),
        Kind::Notification | Kind::Response => None,
    };
    let message = match &exported {
        // The server's spans nest under ours.
        Some(span) => match mcp::with_meta(&message, "traceparent", &span.context().to_string()) {
            Some(m) => Bytes::from(m),
            None => message,
        },
        None => continue_trace(message, env, trace),
    };
    match env.kind {
        Kind::Request => {
            let id = env
                .id
                .clone()
                .ok_or(Failure::Parse(mcp::ParseError::Invalid(
                    "request without id",
                )))?;
            if method == mcp::method::SERVER_DISCOVER
                && session.transport() != Transport::Sessionless
            {
                // A sessionless-era probe in a session. Never forwarded: servers of the
                // session era may execute or crash on it. "Method not found" tells the client
                // to fall back. (A pooled server gets it only once it answered the pool's
                // probe: it speaks the era.)
                let reply =
                    mcp::error_response(Some(&id), mcp::code::METHOD_NOT_FOUND, "Method not found");
                return Ok(Some(session.answer_locally(Bytes::from(reply))));
            }
            let call = match session.admit(principal, env, &original) {
                Verdict::Forward(call) => call,
                Verdict::Refuse(refusal) => {
                    if let Some(mut span) = exported {
                        span.fail(refusal.deny.reason.code());
                        span.end();
                    }
                    if alone
                        && matches!(
                            session.transport(),
                            Transport::Streamable | Transport::Sessionless
                        )
                        && refusal.wants_status()
                    {
                        return Err(Failure::Refused(refusal));
                    }
                    return Ok(Some(
                        session.answer_locally(super::rescue::refusal_jsonrpc(&refusal)),
                    ));
                }
            };
            let progress = mcp::progress_token(env.params);
            let tool = target.filter(|_| method == mcp::method::TOOLS_CALL);
            match session
                .request(
                    id.clone(),
                    method,
                    tool.as_deref(),
                    progress,
                    message,
                    crate::session::Followed {
                        call,
                        span: exported,
                    },
                )
                .await
            {
                Ok(stream) => Ok(Some(stream)),
                Err(SessionError::DuplicateId) => Err(Failure::DuplicateId(id)),
                Err(SessionError::Gone) => Err(Failure::UnknownSession),
                Err(SessionError::NoId) => Err(Failure::Parse(mcp::ParseError::Invalid(
                    "request without id",
                ))),
            }
        }
        Kind::Notification | Kind::Response => {
            let sent = if env.method.as_deref() == Some(mcp::method::CANCELLED) {
                // Translated to the id the server knows the request by, or not forwarded.
                match mcp::request_id_of_cancel(env.params) {
                    Some(id) => session.cancelled_by_client(&id, &message).await,
                    None => Ok(()),
                }
            } else {
                session.send(message).await
            };
            sent.map_err(|_| Failure::UnknownSession)?;
            Ok(None)
        }
    }
}

/// The exported span of a client request (when OpenTelemetry export is on): its parent is
/// the trace the request names in `_meta.traceparent`, else the HTTP request's span, else
/// the `traceparent` header.
fn request_span(
    session: &Session,
    env: &Envelope<'_>,
    target: Option<&str>,
    header: Option<TraceContext>,
) -> Option<crate::telemetry::otel::OtelSpan> {
    use crate::telemetry::otel;
    if !otel::enabled() {
        return None;
    }
    let meta = env.params.and_then(|params| {
        memchr::memmem::find(params.get().as_bytes(), b"traceparent")?;
        TraceContext::parse(&mcp::meta_str(Some(params), "traceparent")?)
    });
    let id = session.id();
    otel::mcp_span(
        otel::McpRequest {
            method: env.method.as_deref().unwrap_or_default(),
            target,
            request_id: match &env.id {
                Some(mcp::Id::Str(s)) => s.to_string(),
                Some(mcp::Id::BigInt(n)) => n.to_string(),
                Some(mcp::Id::Int(n)) => n.to_string(),
                None => String::new(),
            },
            session: id.get(id.len().saturating_sub(8)..).unwrap_or(""),
            protocol_version: session.version().map(|v| v.as_str()),
        },
        meta.or_else(otel::current).or(header),
    )
}

/// When the message belongs to a trace (the `traceparent` header, else
/// `_meta.traceparent`), the server gets the sidecar's span of it in `_meta.traceparent`.
/// Messages without a trace are passed on untouched.
fn continue_trace(message: Bytes, env: &Envelope<'_>, header: Option<TraceContext>) -> Bytes {
    if env.kind == Kind::Response {
        return message;
    }
    let incoming = header.or_else(|| {
        let params = env.params?;
        memchr::memmem::find(params.get().as_bytes(), b"traceparent")?;
        TraceContext::parse(&mcp::meta_str(Some(params), "traceparent")?)
    });
    let Some(incoming) = incoming else {
        return message;
    };
    let ours = incoming.child();
    tracing::debug!(trace_id = %incoming.trace_id_hex(), span_id = %ours.span_id_hex(), "continuing trace");
    match mcp::with_meta(&message, "traceparent", &ours.to_string()) {
        Some(m) => Bytes::from(m),
        None => message,
    }
}

/// 2025-03-26 batches: every element is delivered; requests share one SSE stream.
async fn post_batch(
    st: &AppState,
    principal: &Arc<Principal>,
    session: &Arc<Session>,
    body: &Bytes,
    trace: Option<TraceContext>,
) -> Result<Response, Failure> {
    let items: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|e| Failure::Parse(mcp::ParseError::Json(e.to_string())))?;
    if items.is_empty() {
        return Err(Failure::BatchNotAllowed);
    }
    // Validate everything before delivering anything.
    let mut parsed = Vec::with_capacity(items.len());
    for item in &items {
        let env = parse_client_message(item.get().as_bytes())?;
        if env.method.as_deref() == Some(mcp::method::INITIALIZE) {
            return Err(Failure::InitializeNotAlone);
        }
        parsed.push(env);
    }
    let mut streams = Vec::new();
    for (item, env) in items.iter().zip(&parsed) {
        if let Some(stream) = deliver(
            principal,
            session,
            env,
            body.slice_ref(item.get().as_bytes()),
            trace,
            false,
        )
        .await?
        {
            streams.push(stream);
        }
    }
    if streams.is_empty() {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    // One SSE response carrying every request's stream in turn.
    let keepalive = st.config.sse_keepalive;
    let shutdown = st.shutdown.clone();
    let body = async_stream::stream! {
        for stream in streams {
            let Ok(mut cursor) = stream.attach(Some(0)) else { continue };
            let mut out = Vec::new();
            loop {
                tokio::select! {
                    next = cursor.next() => match next {
                        Next::Events { events, .. } => {
                            for e in &events { sse::frame(&mut out, Framing::Streamable, stream.id(), e); }
                            for chunk in out.drain(..) { yield Ok::<_, std::convert::Infallible>(chunk); }
                        }
                        Next::End | Next::Replaced => break,
                    },
                    _ = tokio::time::sleep(keepalive) => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// `initialize` without a session: start one (and its server), forward, answer with the
/// session id.
async fn initialize(
    st: &AppState,
    principal: &Arc<Principal>,
    caller_token: Option<&str>,
    body: Bytes,
    batch: bool,
    trace: Option<TraceContext>,
) -> Result<Response, Failure> {
    if batch {
        let items: Vec<&RawValue> = serde_json::from_slice(&body)
            .map_err(|e| Failure::Parse(mcp::ParseError::Json(e.to_string())))?;
        let has_init = items.iter().any(|i| {
            Envelope::parse(i.get().as_bytes())
                .is_ok_and(|e| e.method.as_deref() == Some(mcp::method::INITIALIZE))
        });
        return Err(if has_init {
            Failure::InitializeNotAlone
        } else {
            Failure::MissingSession
        });
    }
    let env = parse_client_message(&body)?;
    if env.kind != Kind::Request || env.method.as_deref() != Some(mcp::method::INITIALIZE) {
        if env.method.as_deref() == Some(mcp::method::SERVER_DISCOVER) {
            return Err(Failure::ModernEra);
        }
        return Err(Failure::MissingSession);
    }
    let id = env.id.clone();
    let session = match st
        .store
        .create(Transport::Streamable, principal, caller_token)
        .await
    {
        Ok(s) => s,
        Err(CreateError::Credentials(message)) => {
            return Err(Failure::ServerStart(message.to_owned()));
        }
        Err(CreateError::ConnectionNeeded(connection)) => {
            return Err(super::admission::connection_needed(
                st, principal, id, connection,
            ));
        }
        Err(CreateError::Refused(why)) => {
            return Err(super::admission::refused(st, principal, why));
        }
        Err(CreateError::Spawn(e)) => {
            return Err(Failure::ServerStart(format!(
                "cannot start the MCP server: {e}"
            )));
        }
    };
    // Until the answer carrying its id is handed back, only this request knows the session.
    // If the request is dropped first (its client left, an HTTP/2 stream was reset), nobody
    // could ever use or delete it, and its server would run until the idle timeout.
    let unclaimed = Unclaimed(Some((st, session.clone())));
    let mut response = match deliver(principal, &session, &env, body.clone(), trace, true).await {
        Ok(Some(stream)) => respond(st, &session, stream, true, principal.expires_at).await,
        Ok(None) | Err(_) => {
            let msg = "the MCP server ended before it could be initialized";
            return Ok(json_message(Bytes::from(mcp::error_response(
                id.as_ref(),
                mcp::code::SERVER_UNAVAILABLE,
                msg,
            ))));
        }
    };
    if !session.is_ended()
        && let Ok(v) = HeaderValue::from_str(session.id())
    {
        response.headers_mut().insert(MCP_SESSION_ID.clone(), v);
    }
    unclaimed.claimed();
    Ok(response)
}

/// A new session whose id has not reached its client yet: ended when dropped unclaimed.
struct Unclaimed<'a>(Option<(&'a AppState, Arc<Session>)>);

impl Unclaimed<'_> {
    fn claimed(mut self) {
        self.0 = None;
    }
}

impl Drop for Unclaimed<'_> {
    fn drop(&mut self) {
        if let Some((st, session)) = self.0.take() {
            tracing::debug!("initialize abandoned before its answer: ending the new session");
            st.store.terminate(&session, false);
        }
    }
}

pub(crate) fn json_message(data: Bytes) -> Response {
    let mut response = Response::new(Body::from(data));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Answers a request: `application/json` when the first thing on its stream is the
/// response; an SSE stream when the server sends related messages first.
async fn respond(
    st: &AppState,
    session: &Arc<Session>,
    stream: Arc<EventStream>,
    initializing: bool,
    expires: Option<SystemTime>,
) -> Response {
    let Ok(mut cursor) = stream.attach(Some(0)) else {
        return sse::response(
            Vec::new(),
            None,
            Framing::Streamable,
            st.config.sse_keepalive,
            st.shutdown.clone(),
            None,
            expires,
        );
    };
    let events = tokio::select! {
        next = cursor.next() => match next {
            Next::Events { events, .. } => events,
            // Cancelled by the client before any answer: an SSE stream that ends at once.
            Next::End | Next::Replaced => Vec::new(),
        },
        _ = st.shutdown.cancelled() => Vec::new(),
    };
    if let [only] = events.as_slice()
        && only.kind == Kind::Response
    {
        if initializing && Envelope::parse(&only.data).is_ok_and(|e| e.is_error) {
            // The server refused to initialize: there is no usable session.
            st.store.terminate(session, false);
        }
        return json_message(only.data.clone());
    }
    let mut first = Vec::new();
    if session
        .version()
        .is_some_and(ProtocolVersion::wants_priming_event)
    {
        first.push(sse::priming(stream.id(), st.config.sse_retry));
    }
    for e in &events {
        sse::frame(&mut first, Framing::Streamable, stream.id(), e);
    }
    let finished = events.last().is_some_and(|e| e.kind == Kind::Response) || events.is_empty();
    let cursor = (!finished).then_some(cursor);
    sse::response(
        first,
        cursor,
        Framing::Streamable,
        st.config.sse_keepalive,
        st.shutdown.clone(),
        None,
        expires,
    )
}

fn get_inner(
    st: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    refuse_sessionless(st, headers)?;
    if !headers::accepts(headers).sse {
        return Err(Failure::NotAcceptable("text/event-stream"));
    }
    check_version(headers)?;
    let session = lookup(st, principal, headers, Transport::Streamable)?;
    let last = headers::single(headers, &LAST_EVENT_ID)
        .map_err(|_| Failure::MalformedHeader("Last-Event-ID"))?;
    let mut first = Vec::new();
    let cursor = match last {
        Some(last) => {
            let event = EventId::parse(last).ok_or(Failure::UnknownEventId)?;
            match session.stream(event.stream) {
                Some(stream)
                    if !(stream.id() != 0
                        && stream.is_finished()
                        && !stream.has_after(event.seq)) =>
                {
                    stream
                        .attach(Some(event.seq))
                        .map_err(|_| Failure::UnknownEventId)?
                }
                // Nothing left to replay (the client has it all, or it is no longer retained).
                // Clients resume after an error response too; closing at once would make them
                // reconnect in a loop. Serve the standalone stream if nobody reads it, else 405,
                // which clients take as "no stream here".
                found => {
                    if found.is_none() {
                        tracing::debug!(
                            last_event_id = last,
                            "resumption of a stream that is no longer retained"
                        );
                    }
                    let standalone = session.standalone();
                    if standalone.is_attached() {
                        return Err(Failure::MethodNotAllowed("GET, POST, DELETE"));
                    }
                    standalone
                        .attach(None)
                        .map_err(|_| Failure::UnknownEventId)?
                }
            }
        }
        None => {
            let stream = session.standalone();
            let cursor = stream.attach(None).map_err(|_| Failure::UnknownEventId)?;
            if session
                .version()
                .is_some_and(ProtocolVersion::wants_priming_event)
            {
                first.push(sse::priming(0, st.config.sse_retry));
            }
            cursor
        }
    };
    Ok(sse::response(
        first,
        Some(cursor),
        Framing::Streamable,
        st.config.sse_keepalive,
        st.shutdown.clone(),
        None,
        principal.expires_at,
    ))
}
