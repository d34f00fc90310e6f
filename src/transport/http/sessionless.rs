//! The 2026-07-28 (sessionless) era on the Streamable HTTP endpoint, beside the session era.
//!
//! A POST whose `MCP-Protocol-Version` names no session-era version, or whose `_meta`
//! carries the era's envelope, comes here ([`is_sessionless`]); everything else keeps the
//! session-era path unchanged. A request passes the era's ladder (envelope -32602, routing
//! headers -32020, version -32022: all 400), then goes to its principal's pooled server
//! ([`crate::session::Pool`]) under an id and progress token of the sidecar's own, through the
//! same governance as a session's requests. `server/discover` is answered from the server's
//! cached `initialize` result, except to a client that declares capabilities a server would
//! use by asking it (sampling, elicitation, roots): such a dual-era client gets the answer
//! that makes it fall back to a session, where its server may ask it anything at any time.
//! A modern-only client gets the server's questions during its request as round trips: an
//! `InputRequiredResult` whose `requestState` ([`crate::session::Pool::seal`]) its retry
//! brings back with the answer. Answers are translated to the era ([`mcp::modern`]); related
//! messages before the answer make the response an SSE stream without event ids (the era has
//! no resumption). A client that closes the response before the answer cancels the request
//! at the server (`notifications/cancelled`).
//!
//! A server that speaks the era itself (the pool found it native) gets every request as the
//! caller sent it, `server/discover`, `subscriptions/listen` and round-trip retries included,
//! under the sidecar's id and progress token; its messages reach the caller under the
//! caller's names ([`modern::from_native_server`]) and are not otherwise translated.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;

use super::AppState;
use super::headers::{self, MCP_PROTOCOL_VERSION};
use super::rescue::Failure;
use super::sse::{self, Framing};
use super::streamable::{deliver, json_message, parse_client_message, step_up};
use crate::auth::Principal;
use crate::mcp::{self, Id, Kind, modern};
use crate::session::{Event, EventStream, Next, PoolError, Session};

/// Resource subscriptions one listener may ask for.
const MAX_SUBSCRIPTIONS: usize = 64;

static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Whether a POST belongs to the sessionless era (see the module docs).
pub(crate) fn is_sessionless(headers: &HeaderMap, body: &[u8]) -> bool {
    match headers::single(headers, &MCP_PROTOCOL_VERSION) {
        Ok(Some(v)) => modern::is_modern(Some(v), None),
        // A repeated header: the era's ladder refuses it.
        Err(_) => true,
        Ok(None) => {
            memchr::memmem::find(body, modern::meta::PROTOCOL_VERSION.as_bytes()).is_some()
                && serde_json::from_slice::<Value>(body)
                    .is_ok_and(|v| modern::is_modern(None, v.get("params")))
        }
    }
}

/// Answers a sessionless POST (its `Accept` and `Content-Type` already checked).
pub(crate) async fn post(
    st: &AppState,
    principal: &Arc<Principal>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    if mcp::first_non_whitespace(&body) == Some(b'[') {
        return Err(Failure::BatchNotAllowed);
    }
    let env = parse_client_message(&body)?;
    let message: Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::Parse(mcp::ParseError::Json(e.to_string())))?;
    match env.kind {
        Kind::Request => {}
        // Nothing for the server: cancellation is a closed response, and the era defines no
        // other client notification a session-era server could take without a session.
        Kind::Notification => return Ok(StatusCode::ACCEPTED.into_response()),
        Kind::Response => {
            return Err(Failure::Parse(mcp::ParseError::Invalid(
                "a sessionless client answers no requests",
            )));
        }
    }
    let id = env.id.clone();
    let method = env.method.as_deref().unwrap_or_default().to_owned();
    if mcp::method::is_notification(&method) {
        // A notification sent as a request would reach a server shared by the principal's
        // callers as a request: a `notifications/cancelled` there could name another
        // caller's request.
        return Err(Failure::Parse(mcp::ParseError::Invalid(
            "notifications/* methods take no id",
        )));
    }
    let params = message.get("params");
    let routing = modern::Headers {
        protocol_version: headers::single(headers, &MCP_PROTOCOL_VERSION).map_err(|_| {
            refused(
                &id,
                modern::Refusal::HeaderMismatch("MCP-Protocol-Version appears more than once"),
            )
        })?,
        method: headers::single(headers, &MCP_METHOD).map_err(|_| {
            refused(
                &id,
                modern::Refusal::HeaderMismatch("Mcp-Method appears more than once"),
            )
        })?,
        name: headers::single(headers, &MCP_NAME).map_err(|_| {
            refused(
                &id,
                modern::Refusal::HeaderMismatch("Mcp-Name appears more than once"),
            )
        })?,
    };
    modern::check(&method, params, routing).map_err(|r| refused(&id, r))?;
    if modern::REMOVED_METHODS.contains(&&*method) {
        return Err(Failure::SessionlessMethodNotFound(id));
    }
    let asks = modern::asked_capabilities(params);
    // A dual-era client that can be asked things (sampling, elicitation, roots) is served by
    // a session-era server in the session era, where the server may also ask outside a
    // request: sent there by the answer that makes it fall back. Modern-only clients get
    // the questions as round trips. A native server asks only in round trips of its own.
    let falls_back = method == mcp::method::SERVER_DISCOVER && asks != 0;
    let state = params
        .and_then(|p| p.get("requestState"))
        .and_then(Value::as_str);
    // Until the era is known, a server is started (and probed) first; a session-era one is
    // needed for neither a fallback nor a round trip's retry.
    let caller_token = super::authn::bearer_token(headers);
    let pooled = match st.pool.native(principal) {
        Some(false) if falls_back || state.is_some() => None,
        _ => Some(
            st.pool
                .get(principal, caller_token, asks)
                .await
                .map_err(|e| pool_failure(st, principal, id.clone(), e))?,
        ),
    };
    if !pooled.as_ref().is_some_and(|p| p.native) {
        if falls_back {
            return Err(Failure::ModernEra);
        }
        if let Some(state) = state {
            return resume(st, principal, id, method, params, asks, state).await;
        }
    }
    let Some(pooled) = pooled else {
        unreachable!("a session-era request without a server returned above")
    };
    if !pooled.native {
        if method == mcp::method::SERVER_DISCOVER {
            let answer = modern::discover(id.as_ref(), &pooled.initialize);
            return Ok(json_message(Bytes::from(answer)));
        }
        if method == mcp::method::SUBSCRIPTIONS_LISTEN {
            return listen(st, principal, headers, id, params, pooled).await;
        }
    }
    // To the server under an id and progress token of the sidecar's own (callers' repeat):
    // translated for a session-era server, as it is for a native one.
    let progress = mcp::progress_token(env.params);
    let ours = st.pool.request_id();
    let our_token = progress.as_ref().map(|_| st.pool.request_id());
    let mut forwarded = if pooled.native {
        modern::to_native_server(&message, our_token.as_ref())
    } else {
        modern::to_server_request(&message, our_token.as_ref())
    };
    forwarded["id"] = ours.to_value();
    let forwarded = Bytes::from(
        serde_json::to_vec(&forwarded)
            .map_err(|e| Failure::Parse(mcp::ParseError::Json(e.to_string())))?,
    );
    let forwarded_env = parse_client_message(&forwarded)?;
    let session = pooled.session;
    let delivered = deliver(
        principal,
        &session,
        &forwarded_env,
        forwarded.clone(),
        headers::trace(headers),
        true,
    )
    .await;
    let stream = step_up(st, delivered)?.ok_or(Failure::UnknownSession)?;
    let client = ClientRequest {
        st: st.clone(),
        principal: principal.clone(),
        session: session.clone(),
        ours: ours.clone(),
        stream: stream.id(),
        id: id.unwrap_or(Id::Int(0)),
        progress,
        method,
        server_info: pooled.initialize.get("serverInfo").cloned(),
        asks,
        log_level: modern::log_level(params).map(str::to_owned),
        native: pooled.native,
    };
    let guard = CancelOnDrop {
        session: Some(session),
        ours,
    };
    Ok(respond(st, stream, None, client, guard).await)
}

/// `subscriptions/listen`: an SSE stream that acknowledges what it honors, then carries the
/// server's list changes and resource updates the listener asked for, under its
/// subscription's id, until the listener closes it (or the server's session ends: then a
/// final result). Resource subscriptions are made at the server through the session, so the
/// policy decides them like a session's `resources/subscribe`.
async fn listen(
    st: &AppState,
    principal: &Arc<Principal>,
    headers: &HeaderMap,
    id: Option<Id>,
    params: Option<&Value>,
    pooled: crate::session::Pooled,
) -> Result<Response, Failure> {
    let id = id.unwrap_or(Id::Int(0));
    let filter = params
        .and_then(|p| p.get("notifications"))
        .and_then(Value::as_object)
        .ok_or_else(|| Failure::SessionlessRefused {
            body: Bytes::from(mcp::error_response(
                Some(&id),
                mcp::code::INVALID_PARAMS,
                "Invalid params: notifications is required",
            )),
        })?;
    let mut honored = modern::honored(filter, &pooled.initialize);
    let session = pooled.session;
    // Listening first: no update after the subscription is missed.
    let mut notices = session.notices();
    if let Some(uris) = honored
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .cloned()
    {
        let mut granted: Vec<Value> = Vec::new();
        if uris.len() > MAX_SUBSCRIPTIONS {
            return Err(Failure::SessionlessRefused {
                body: Bytes::from(mcp::error_response(
                    Some(&id),
                    mcp::code::INVALID_PARAMS,
                    &format!(
                        "Invalid params: at most {MAX_SUBSCRIPTIONS} resource subscriptions per listener"
                    ),
                )),
            });
        }
        let mut seen: Vec<Value> = Vec::new();
        for uri in uris {
            if seen.contains(&uri) {
                continue;
            }
            seen.push(uri.clone());
            let ours = st.pool.request_id();
            let subscribe = Bytes::from(
                serde_json::json!({"jsonrpc": "2.0", "id": ours.to_value(),
                    "method": "resources/subscribe", "params": {"uri": uri}})
                .to_string(),
            );
            let env = parse_client_message(&subscribe)?;
            // Honored when the server took it; the policy's refusal, or the server's, is an
            // error answer like any other.
            let Ok(Some(stream)) = deliver(
                principal,
                &session,
                &env,
                subscribe.clone(),
                headers::trace(headers),
                false,
            )
            .await
            else {
                continue;
            };
            if subscribed(&stream).await {
                granted.push(uri);
            }
        }
        honored.insert("resourceSubscriptions".into(), Value::Array(granted));
    }
    let first = Bytes::from(modern::listen_acknowledged(&id, &honored));
    let keepalive = st.config.sse_keepalive;
    let shutdown = st.shutdown.clone();
    let expires = token_deadline(principal);
    let body = async_stream::stream! {
        let mut out = Vec::new();
        push_frame(&mut out, &Event { seq: 0, kind: Kind::Notification, data: Bytes::new() }, first);
        for chunk in out.drain(..) {
            yield Ok::<Bytes, Infallible>(chunk);
        }
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Ok(line) => {
                        if let Some(data) = modern::for_listener(&line, &id, &honored) {
                            let e = Event { seq: 0, kind: Kind::Notification, data: Bytes::from(data) };
                            push_frame(&mut out, &e, e.data.clone());
                            for chunk in out.drain(..) {
                                yield Ok(chunk);
                            }
                            ticker.reset();
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a sessionless listener fell behind; notifications were dropped");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = session.ended() => break,
                _ = ticker.tick() => {
                    // A listener keeps its server from being reaped as idle.
                    session.touch();
                    yield Ok(Bytes::from_static(b": keep-alive\n\n"));
                }
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(expires) => break,
            }
        }
        let e = Event { seq: 0, kind: Kind::Response, data: Bytes::from(modern::listen_ended(&id)) };
        push_frame(&mut out, &e, e.data.clone());
        for chunk in out.drain(..) {
            yield Ok(chunk);
        }
    };
    Ok(sse::stream_response(Body::from_stream(body)))
}

/// Whether the answer on `stream` (of a `resources/subscribe`) is a success.
async fn subscribed(stream: &Arc<EventStream>) -> bool {
    let Ok(mut cursor) = stream.attach(Some(0)) else {
        return false;
    };
    loop {
        match cursor.next().await {
            Next::Events { events, .. } => {
                if let Some(e) = events.iter().find(|e| e.kind == Kind::Response) {
                    return mcp::Envelope::parse(&e.data).is_ok_and(|env| !env.is_error);
                }
            }
            Next::End | Next::Replaced => return false,
        }
    }
}

/// A retry that answers the server's question of an earlier round trip: the answer goes to
/// the server under the id it asked with, and the caller reads on from where the question
/// left its request's stream.
async fn resume(
    st: &AppState,
    principal: &Arc<Principal>,
    id: Option<Id>,
    method: String,
    params: Option<&Value>,
    asks: u8,
    state: &str,
) -> Result<Response, Failure> {
    let invalid = |why: &str| Failure::SessionlessRefused {
        body: Bytes::from(mcp::error_response(
            id.as_ref(),
            mcp::code::INVALID_PARAMS,
            &format!("Invalid params: {why}"),
        )),
    };
    let refuse = |e: crate::session::StateError| {
        tracing::info!(reason = %e, "refused a requestState");
        invalid(&e.to_string())
    };
    let input = st.pool.open(principal, state).map_err(refuse)?;
    if input.method != method {
        return Err(invalid("the requestState belongs to another request"));
    }
    let answer = params
        .and_then(|p| p.get("inputResponses"))
        .and_then(|r| r.get(&input.key))
        .ok_or_else(|| invalid("inputResponses lacks the answer the requestState asks for"))?;
    let gone = || invalid("the request this requestState continues has ended");
    let session = st
        .pool
        .session(principal, &input.session)
        .ok_or_else(gone)?;
    let stream = session.stream(input.stream).ok_or_else(gone)?;
    let ours = Id::from_json_text(&input.request.to_string()).ok_or_else(gone)?;
    // Used up only now that the retry carries what it must; from here the parked request is
    // this retry's: if the caller leaves, it is cancelled.
    st.pool.consume(&input).map_err(refuse)?;
    let guard = CancelOnDrop {
        session: Some(session.clone()),
        ours: ours.clone(),
    };
    let reply = serde_json::json!({"jsonrpc": "2.0", "id": input.server_request, "result": answer});
    session
        .send(Bytes::from(reply.to_string()))
        .await
        .map_err(|_| gone())?;
    let progress = modern::progress_token(params).or_else(|| {
        input
            .progress
            .as_ref()
            .and_then(|p| Id::from_json_text(&p.to_string()))
    });
    let client = ClientRequest {
        st: st.clone(),
        principal: principal.clone(),
        session: session.clone(),
        ours: ours.clone(),
        stream: input.stream,
        id: id.unwrap_or(Id::Int(0)),
        progress,
        method,
        server_info: None,
        asks,
        log_level: modern::log_level(params).map(str::to_owned),
        native: false,
    };
    Ok(respond(st, stream, Some(input.seq), client, guard).await)
}

fn refused(id: &Option<Id>, refusal: modern::Refusal) -> Failure {
    Failure::SessionlessRefused {
        body: Bytes::from(refusal.to_error(id.as_ref(), &[modern::VERSION])),
    }
}

fn pool_failure(st: &AppState, principal: &Principal, id: Option<Id>, e: PoolError) -> Failure {
    use crate::session::CreateError;
    match e {
        PoolError::Create(CreateError::Refused(why)) => {
            super::admission::refused(st, principal, why)
        }
        PoolError::Create(CreateError::ConnectionNeeded(connection)) => {
            super::admission::connection_needed(st, principal, id, connection)
        }
        PoolError::Create(CreateError::Credentials(message)) => {
            Failure::ServerStart(message.to_owned())
        }
        PoolError::Create(CreateError::Spawn(e)) => {
            Failure::ServerStart(format!("cannot start the MCP server: {e}"))
        }
        PoolError::Initialize(_) => Failure::ServerStart(e.to_string()),
    }
}

/// The caller's request and where it stands in its server's session, to give the caller
/// back its own names and turn the server's questions into round trips.
struct ClientRequest {
    st: AppState,
    principal: Arc<Principal>,
    session: Arc<Session>,
    /// The request's id in the session, and its stream.
    ours: Id,
    stream: u32,
    /// The caller's id for this round trip, and its progress token.
    id: Id,
    progress: Option<Id>,
    method: String,
    server_info: Option<Value>,
    /// What the caller may be asked (see [`modern::ASKS`]).
    asks: u8,
    /// The lowest level of log lines the caller asked for, if any.
    log_level: Option<String>,
    /// Whether the server speaks the era itself: its messages need only the caller's names.
    native: bool,
}

/// What one event of the request's stream becomes for the caller.
enum Step {
    /// Nothing (not for this caller).
    Skip,
    /// A message before the answer (progress).
    Related(Bytes),
    /// The last message: the answer, or a question for the caller (`InputRequiredResult`).
    Last(Bytes),
}

impl ClientRequest {
    fn step(&self, event: &Event) -> Step {
        if self.native {
            return self.native_step(event);
        }
        if event.kind == Kind::Request {
            return self.question(event);
        }
        let Some(mut out) = modern::to_client(
            &event.data,
            &self.method,
            self.progress.as_ref(),
            self.server_info.as_ref(),
            self.log_level.as_deref(),
        ) else {
            return Step::Skip;
        };
        if event.kind != Kind::Response {
            return Step::Related(Bytes::from(out));
        }
        // Under the caller's own id (the server knew it by one of the sidecar's).
        if let Ok(mut v) = serde_json::from_slice::<Value>(&out) {
            v["id"] = self.id.to_value();
            out = serde_json::to_vec(&v).unwrap_or(out);
        }
        Step::Last(Bytes::from(out))
    }

    /// A native server's message: the caller's id and progress token put back, nothing else
    /// changed. It asks its questions in its own results; a request of its own (which the era
    /// does not have) is refused at the server.
    fn native_step(&self, event: &Event) -> Step {
        if event.kind == Kind::Request {
            self.session
                .refuse_server_request(&event.data, "a sessionless client answers no requests");
            return Step::Skip;
        }
        match modern::from_native_server(
            &event.data,
            &self.id,
            self.progress.as_ref(),
            self.log_level.as_deref(),
        ) {
            None => Step::Skip,
            Some(out) if event.kind == Kind::Response => Step::Last(Bytes::from(out)),
            Some(out) => Step::Related(Bytes::from(out)),
        }
    }

    /// A request of the server while the caller's request runs: a question for the caller
    /// when it may be asked it here, else refused at the server.
    fn question(&self, event: &Event) -> Step {
        let request: Option<Value> = serde_json::from_slice(&event.data).ok();
        let asked = request.as_ref().and_then(|r| {
            let method = r.get("method")?.as_str()?;
            (modern::may_ask(&self.method) && modern::asks_within(method, self.asks)).then_some(r)
        });
        let Some(request) = asked else {
            self.session
                .refuse_server_request(&event.data, "the client cannot be asked this here");
            return Step::Skip;
        };
        let key = format!("ask-{}", event.seq);
        let state = self.st.pool.seal(
            &self.principal,
            &self.session,
            request.get("id").cloned().unwrap_or(Value::Null),
            &key,
            &self.ours,
            self.stream,
            event.seq,
            &self.method,
            self.progress.as_ref(),
        );
        Step::Last(Bytes::from(modern::input_required(
            &self.id, &key, request, &state,
        )))
    }
}

/// Cancels the request at its server unless the answer reached the client first.
struct CancelOnDrop {
    session: Option<Arc<Session>>,
    ours: Id,
}

impl CancelOnDrop {
    fn answered(&mut self) {
        self.session = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let id = self.ours.clone();
        let message = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":"the client closed its response stream"}}}}"#,
            id.to_json()
        );
        tokio::spawn(async move {
            let _ = session.cancelled_by_client(&id, message.as_bytes()).await;
        });
    }
}

/// The answer (or a question for the caller) as JSON when it is the first thing for the
/// caller; otherwise an SSE stream of the related messages and then the answer. `after`:
/// where an earlier round trip left the stream.
async fn respond(
    st: &AppState,
    stream: Arc<EventStream>,
    after: Option<u64>,
    client: ClientRequest,
    mut guard: CancelOnDrop,
) -> Response {
    let Ok(mut cursor) = stream.attach(Some(after.unwrap_or(0))) else {
        guard.answered();
        return Failure::UnknownSession.into_response();
    };
    // Read until there is something for the caller: messages it does not get (a question
    // refused at the server, a log line) do not turn the answer into a stream.
    let mut first = Vec::new();
    let mut done = false;
    while first.is_empty() && !done {
        let events = tokio::select! {
            next = cursor.next() => match next {
                Next::Events { events, .. } => events,
                Next::End | Next::Replaced => Vec::new(),
            },
            _ = st.shutdown.cancelled() => Vec::new(),
        };
        done = events.is_empty();
        for e in &events {
            match client.step(e) {
                Step::Skip => {}
                Step::Related(data) => push_frame(&mut first, e, data),
                Step::Last(data) => {
                    guard.answered();
                    if first.is_empty() {
                        return answer(data);
                    }
                    push_frame(&mut first, e, data);
                    done = true;
                    break;
                }
            }
        }
    }
    if done {
        guard.answered();
    }
    let cursor = (!done).then_some(cursor);
    sse::stream_response(Body::from_stream(follow(
        first,
        cursor,
        client,
        guard,
        st.config.sse_keepalive,
        st.shutdown.clone(),
    )))
}

/// A JSON answer; "method not found" (from the server too) is 404, as the era requires.
fn answer(data: Bytes) -> Response {
    let not_found = mcp::Envelope::parse(&data).is_ok_and(|e| e.is_error)
        && serde_json::from_slice::<Value>(&data)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(Value::as_i64))
            == Some(mcp::code::METHOD_NOT_FOUND);
    let mut response = json_message(data);
    if not_found {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    response
}

fn push_frame(out: &mut Vec<Bytes>, e: &Event, data: Bytes) {
    let translated = Event {
        seq: e.seq,
        kind: e.kind,
        data,
    };
    sse::frame(out, Framing::Legacy, 0, &translated);
}

fn follow(
    first: Vec<Bytes>,
    cursor: Option<crate::session::Cursor>,
    client: ClientRequest,
    mut guard: CancelOnDrop,
    keepalive: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let expires = token_deadline(&client.principal);
    async_stream::stream! {
        for chunk in first {
            yield Ok(chunk);
        }
        let Some(mut cursor) = cursor else { return };
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut out = Vec::new();
        loop {
            tokio::select! {
                next = cursor.next() => match next {
                    Next::Events { events, .. } => {
                        let mut done = false;
                        for e in &events {
                            match client.step(e) {
                                Step::Skip => {}
                                Step::Related(data) => push_frame(&mut out, e, data),
                                Step::Last(data) => {
                                    push_frame(&mut out, e, data);
                                    done = true;
                                    break;
                                }
                            }
                        }
                        if done {
                            guard.answered();
                        }
                        for chunk in out.drain(..) {
                            yield Ok(chunk);
                        }
                        if done {
                            break;
                        }
                        ticker.reset();
                    }
                    Next::End | Next::Replaced => break,
                },
                _ = ticker.tick() => {
                    // A caller still reading (a native server's listen stream, a long call)
                    // keeps its server from being reaped as idle.
                    client.session.touch();
                    yield Ok(Bytes::from_static(b": keep-alive\n\n"));
                }
                _ = shutdown.cancelled() => break,
                // A stream must not outlive the token that opened it.
                _ = tokio::time::sleep_until(expires) => break,
            }
        }
    }
}

/// When the caller's token expires (a century away for one that does not).
fn token_deadline(principal: &Principal) -> tokio::time::Instant {
    let left = principal
        .expires_at
        .map_or(Duration::from_secs(100 * 365 * 86400), |at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
    tokio::time::Instant::now() + left
}
