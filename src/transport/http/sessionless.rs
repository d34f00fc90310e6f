//! The 2026-07-28 (sessionless) era on the Streamable HTTP endpoint, beside the session era.
//!
//! A POST whose `MCP-Protocol-Version` names no session-era version, or whose `_meta`
//! carries the era's envelope, comes here ([`is_sessionless`]); everything else keeps the
//! session-era path unchanged. A request passes the era's ladder (envelope -32602, routing
//! headers -32020, version -32022: all 400), then goes to its principal's pooled server
//! ([`crate::session::Pool`]) under an id and progress token of the sidecar's own, through the
//! same governance as a session's requests. `server/discover` is answered from the server's
//! cached `initialize` result, except to a client that declares capabilities a server would
//! use by asking it (sampling, elicitation, roots): the bridge does not carry those requests
//! yet, so such a dual-era client gets the answer that makes it fall back to a session. Answers are translated to the era ([`mcp::modern`]); related
//! messages before the answer make the response an SSE stream without event ids (the era has
//! no resumption). A client that closes the response before the answer cancels the request
//! at the server (`notifications/cancelled`).

use std::convert::Infallible;
use std::sync::Arc;

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
use super::streamable::{deliver, json_message, parse_client_message};
use crate::auth::Principal;
use crate::mcp::{self, Id, Kind, modern};
use crate::session::{Event, EventStream, Next, PoolError, Session};

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
    if modern::REMOVED_METHODS.contains(&&*method) || method == "subscriptions/listen" {
        return Err(Failure::SessionlessMethodNotFound(id));
    }
    if method == mcp::method::SERVER_DISCOVER && wants_server_requests(params) {
        // A dual-era client that can be asked things (sampling, elicitation, roots) gets
        // them in the session era: sent there by the answer that makes it fall back.
        return Err(Failure::ModernEra);
    }
    let caller_token = super::authn::bearer_token(headers);
    let pooled = st
        .pool
        .get(principal, caller_token)
        .await
        .map_err(|e| pool_failure(st, principal, e))?;
    if method == mcp::method::SERVER_DISCOVER {
        let answer = modern::discover(id.as_ref(), &pooled.initialize);
        return Ok(json_message(Bytes::from(answer)));
    }
    let client = ClientRequest {
        id: id.clone().unwrap_or(Id::Int(0)),
        progress: mcp::progress_token(env.params),
        method,
        server_info: pooled.initialize.get("serverInfo").cloned(),
    };
    let ours = st.pool.request_id();
    let our_token = client.progress.as_ref().map(|_| st.pool.request_id());
    let mut forwarded = modern::to_server_request(&message, our_token.as_ref());
    forwarded["id"] = ours.to_value();
    let forwarded = Bytes::from(
        serde_json::to_vec(&forwarded)
            .map_err(|e| Failure::Parse(mcp::ParseError::Json(e.to_string())))?,
    );
    let forwarded_env = parse_client_message(&forwarded)?;
    let session = pooled.session;
    let stream = deliver(
        principal,
        &session,
        &forwarded_env,
        forwarded.clone(),
        headers::trace(headers),
        true,
    )
    .await?
    .ok_or(Failure::UnknownSession)?;
    let guard = CancelOnDrop {
        session: Some(session.clone()),
        ours,
    };
    Ok(respond(st, stream, client, guard).await)
}

/// Whether the client declares capabilities a server uses by asking it (sampling,
/// elicitation, roots), which the sessionless bridge does not carry: a pooled server is
/// initialized without them.
fn wants_server_requests(params: Option<&Value>) -> bool {
    modern::client_capabilities(params).is_some_and(|caps| {
        ["sampling", "elicitation", "roots"]
            .iter()
            .any(|c| caps.contains_key(*c))
    })
}

fn refused(id: &Option<Id>, refusal: modern::Refusal) -> Failure {
    Failure::SessionlessRefused {
        body: Bytes::from(refusal.to_error(id.as_ref(), &[modern::VERSION])),
    }
}

fn pool_failure(st: &AppState, principal: &Principal, e: PoolError) -> Failure {
    use crate::session::CreateError;
    match e {
        PoolError::Create(CreateError::Refused(why)) => {
            super::admission::refused(st, principal, why)
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

/// What the client's request was, to give it back its own names.
struct ClientRequest {
    id: Id,
    progress: Option<Id>,
    method: String,
    server_info: Option<Value>,
}

impl ClientRequest {
    /// An event of the request's stream as the client gets it (`None`: not for it).
    fn translate(&self, event: &Event) -> Option<Bytes> {
        let mut out = modern::to_client(
            &event.data,
            &self.method,
            self.progress.as_ref(),
            self.server_info.as_ref(),
        )?;
        if event.kind == Kind::Response {
            // Under the client's own id (the server knew it by one of the sidecar's).
            let mut v: Value = serde_json::from_slice(&out).ok()?;
            v["id"] = self.id.to_value();
            out = serde_json::to_vec(&v).ok()?;
        }
        Some(Bytes::from(out))
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

/// The answer as JSON when it is the first thing for the client; otherwise an SSE stream of
/// the related messages and then the answer.
async fn respond(
    st: &AppState,
    stream: Arc<EventStream>,
    client: ClientRequest,
    mut guard: CancelOnDrop,
) -> Response {
    let Ok(mut cursor) = stream.attach(Some(0)) else {
        guard.answered();
        return Failure::UnknownSession.into_response();
    };
    let events = tokio::select! {
        next = cursor.next() => match next {
            Next::Events { events, .. } => events,
            Next::End | Next::Replaced => Vec::new(),
        },
        _ = st.shutdown.cancelled() => Vec::new(),
    };
    let mut first = Vec::new();
    let mut done = events.is_empty();
    for e in &events {
        if let Some(data) = client.translate(e) {
            if e.kind == Kind::Response && first.is_empty() {
                guard.answered();
                return json_message(data);
            }
            push_frame(&mut first, e, data);
        }
        done |= e.kind == Kind::Response;
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
                            if let Some(data) = client.translate(e) {
                                push_frame(&mut out, e, data);
                            }
                            done |= e.kind == Kind::Response;
                        }
                        for chunk in out.drain(..) {
                            yield Ok(chunk);
                        }
                        if done {
                            guard.answered();
                            break;
                        }
                        ticker.reset();
                    }
                    Next::End | Next::Replaced => break,
                },
                _ = ticker.tick() => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
