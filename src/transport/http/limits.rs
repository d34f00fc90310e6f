//! Request bodies are read in full, bounded in size and time, before anything answers.
//!
//! Answering while a body is still arriving makes hyper close the connection after the
//! response; a client that reuses it for its next request (the usual OAuth retry after a 401,
//! or `initialize` after a refused 2026-07-28 probe) then sees a reset instead of an answer. So
//! the body is taken off the wire first, and an oversized one is still drained (up to a cap)
//! so its client can read the 413.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::AppState;
use super::rescue::Failure;

pub(crate) async fn buffer_body(
    State(st): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = st.config.max_message_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Slow bodies: a client cannot hold a request open by trickling its body.
    match tokio::time::timeout(st.config.body_read_timeout, read(body, declared, limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(rejection)) => rejection.into_response(),
        Err(_) => Failure::BodyTimeout.into_response(),
    }
}

async fn read(body: Body, declared: Option<u64>, limit: usize) -> Result<Bytes, Failure> {
    let drain_cap = limit.saturating_mul(4).max(1 << 20);
    if declared.is_some_and(|n| n > drain_cap as u64) {
        return Err(Failure::PayloadTooLarge(limit));
    }
    let mut stream = body.into_data_stream();
    // The usual body is one chunk: kept as is, without copying.
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Failure::PayloadTooLarge(limit))?;
        seen += chunk.len();
        if seen > drain_cap {
            return Err(Failure::PayloadTooLarge(limit));
        }
        if seen > limit {
            continue;
        }
        match (&first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(
                    declared.map_or(2 * f.len() + chunk.len(), |n| n as usize),
                );
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    if seen > limit {
        return Err(Failure::PayloadTooLarge(limit));
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}
