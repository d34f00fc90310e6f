//! The HTTP+SSE transport of protocol 2024-11-05: `GET /sse` opens a session and its event
//! stream (first event: `endpoint`), `POST /message?sessionId=…` sends messages (202), and
//! every message from the server arrives as an SSE `message` event. The session lives exactly
//! as long as its SSE connection.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::AppState;
use super::headers;
use super::rescue::Failure;
use super::sse::{self, Framing};
use super::streamable::{deliver, lookup_id, parse_client_message, read_body};
use crate::auth::Principal;
use crate::mcp;
use crate::session::{CreateError, Transport};

pub(crate) async fn connect(
    State(st): State<AppState>,
    Extension(principal): Extension<Arc<Principal>>,
    headers: HeaderMap,
) -> Response {
    // Every SSE client asks for exactly this (EventSource does, and so do the SDKs); what an
    // <img>, a script or a link asks for (`*/*`, `image/*`, `text/html`, nothing) does not
    // open a session and start a server.
    if !asks_for_event_stream(&headers) {
        return Failure::NotAcceptable("text/event-stream").into_response();
    }
    let Some(paths) = &st.config.legacy else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let caller_token = super::authn::bearer_token(&headers);
    let session = match st
        .store
        .create(Transport::LegacySse, &principal, caller_token)
        .await
    {
        Ok(s) => s,
        Err(CreateError::Credentials(message)) => {
            return Failure::ServerStart(message.to_owned()).into_response();
        }
        Err(CreateError::ConnectionNeeded(connection)) => {
            return super::admission::connection_needed(&st, &principal, None, connection)
                .into_response();
        }
        Err(CreateError::Refused(why)) => {
            return super::admission::refused(&st, &principal, why).into_response();
        }
        Err(CreateError::Spawn(e)) => {
            return Failure::ServerStart(format!("cannot start the MCP server: {e}"))
                .into_response();
        }
    };
    let stream = session.standalone();
    let Ok(cursor) = stream.attach(None) else {
        return Failure::UnknownSession.into_response();
    };
    // Relative to the origin the client used (or the public URL's path prefix), so it resolves
    // behind proxies; the session id goes in the query, never a credential.
    let endpoint = format!(
        "{}{}?sessionId={}",
        st.config.public_prefix,
        paths.message,
        session.id()
    );
    let first = vec![Bytes::from(format!(
        "event: endpoint\ndata: {endpoint}\n\n"
    ))];
    let store = st.store.clone();
    let owned = session.clone();
    let on_end: Box<dyn FnOnce() + Send> = Box::new(move || store.terminate(&owned, true));
    sse::response(
        first,
        Some(cursor),
        Framing::Legacy,
        st.config.sse_keepalive,
        st.shutdown.clone(),
        Some(on_end),
        principal.expires_at,
    )
}

/// Whether `Accept` names `text/event-stream` itself (not through `*/*` or `text/*`), and
/// does not refuse it.
fn asks_for_event_stream(headers: &HeaderMap) -> bool {
    let named = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            range
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        });
    named && headers::accepts(headers).sse
}

#[derive(Deserialize)]
pub(crate) struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

pub(crate) async fn message(
    State(st): State<AppState>,
    Extension(principal): Extension<Arc<Principal>>,
    Query(query): Query<MessageQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    message_inner(&st, &principal, query, &headers, body)
        .await
        .unwrap_or_else(Failure::into_response)
}

async fn message_inner(
    st: &AppState,
    principal: &Arc<Principal>,
    query: MessageQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Failure> {
    let id = query.session_id.ok_or(Failure::MissingSession)?;
    let session = lookup_id(st, principal, &id, Transport::LegacySse)?;
    if !headers::is_json(headers) {
        return Err(Failure::UnsupportedMediaType);
    }
    let body = read_body(body).await?;
    if mcp::first_non_whitespace(&body) == Some(b'[') {
        // 2024-11-05 allowed batches; the server gets them one by one.
        let items: Vec<&RawValue> = serde_json::from_slice(&body)
            .map_err(|e| Failure::Parse(mcp::ParseError::Json(e.to_string())))?;
        if items.is_empty() {
            return Err(Failure::BatchNotAllowed);
        }
        let parsed = items
            .iter()
            .map(|i| parse_client_message(i.get().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        for (item, env) in items.iter().zip(&parsed) {
            deliver(
                principal,
                &session,
                env,
                body.slice_ref(item.get().as_bytes()),
                headers::trace(headers),
                false,
            )
            .await?;
        }
    } else {
        let env = parse_client_message(&body)?;
        deliver(
            principal,
            &session,
            &env,
            body.clone(),
            headers::trace(headers),
            false,
        )
        .await?;
    }
    Ok((StatusCode::ACCEPTED, "Accepted").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        asks_for_event_stream(&h)
    }

    #[test]
    fn only_a_request_for_an_event_stream_opens_one() {
        assert!(accept(&["text/event-stream"]));
        assert!(accept(&["Text/Event-Stream; charset=utf-8"]));
        assert!(accept(&["application/json", "text/event-stream;q=0.5"]));
        assert!(!accept(&[]));
        assert!(!accept(&["*/*"]));
        assert!(!accept(&["text/*"]));
        assert!(!accept(&["image/avif,image/webp,*/*;q=0.8"]));
        assert!(!accept(&["text/event-stream;q=0, */*"]));
    }
}
