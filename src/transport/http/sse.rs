//! Server-sent event framing and the body of an SSE response.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio_util::sync::CancellationToken;

use crate::session::{Cursor, Event, EventId, Next};

/// How events of one stream are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Streamable HTTP: `id:` lines (resumable), default event type.
    Streamable,
    /// HTTP+SSE: `event: message`, no ids (that transport cannot resume).
    Legacy,
}

/// Messages up to this size are copied into one frame; larger ones are sent as their own
/// chunk, without copying.
const COPY_LIMIT: usize = 4096;

/// Appends one event's frame(s) to `out`.
pub(crate) fn frame(out: &mut Vec<Bytes>, framing: Framing, stream: u32, event: &Event) {
    let mut head = BytesMut::with_capacity(48 + event.data.len().min(COPY_LIMIT));
    match framing {
        Framing::Streamable => {
            head.put_slice(b"id: ");
            head.put_slice(
                EventId {
                    stream,
                    seq: event.seq,
                }
                .to_string()
                .as_bytes(),
            );
            head.put_slice(b"\ndata: ");
        }
        Framing::Legacy => head.put_slice(b"event: message\ndata: "),
    }
    // A raw CR would end the SSE line; in valid JSON it can only be whitespace.
    let data = if memchr::memchr(b'\r', &event.data).is_some() {
        Bytes::from(
            event
                .data
                .iter()
                .map(|&b| if b == b'\r' { b' ' } else { b })
                .collect::<Vec<u8>>(),
        )
    } else {
        event.data.clone()
    };
    if data.len() <= COPY_LIMIT {
        head.put_slice(&data);
        head.put_slice(b"\n\n");
        out.push(head.freeze());
    } else {
        out.push(head.freeze());
        out.push(data);
        out.push(Bytes::from_static(b"\n\n"));
    }
}

/// The priming event: an id the client can resume from before any message, and a `retry`.
pub(crate) fn priming(stream: u32, retry: Duration) -> Bytes {
    Bytes::from(format!(
        "id: {}\nretry: {}\ndata: \n\n",
        EventId { stream, seq: 0 },
        retry.as_millis()
    ))
}

/// An SSE response that writes `first`, then follows `cursor` until the stream ends, another
/// connection takes it over, the sidecar shuts down, or the token that opened it expires
/// (`expires`: a stream must not outlive its authorization). Idle streams get comment lines.
pub(crate) fn response(
    first: Vec<Bytes>,
    cursor: Option<Cursor>,
    framing: Framing,
    keepalive: Duration,
    shutdown: CancellationToken,
    on_end: Option<Box<dyn FnOnce() + Send>>,
    expires: Option<SystemTime>,
) -> Response {
    stream_response(Body::from_stream(events(
        first, cursor, framing, keepalive, shutdown, on_end, expires,
    )))
}

/// A `text/event-stream` response of `body`, unbuffered by proxies.
pub(crate) fn stream_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Tells nginx-style proxies not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Runs a closure when dropped: the body stream is dropped when the client goes away.
struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn events(
    first: Vec<Bytes>,
    cursor: Option<Cursor>,
    framing: Framing,
    keepalive: Duration,
    shutdown: CancellationToken,
    on_end: Option<Box<dyn FnOnce() + Send>>,
    expires: Option<SystemTime>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    // A stream without an expiry never reaches this deadline (about a century away).
    let deadline = tokio::time::Instant::now()
        + expires.map_or(Duration::from_secs(100 * 365 * 86400), |at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        });
    async_stream::stream! {
        let _guard = OnDrop(on_end);
        for chunk in first {
            yield Ok(chunk);
        }
        let Some(mut cursor) = cursor else { return };
        let stream_id = cursor.stream().id();
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut out = Vec::new();
        loop {
            tokio::select! {
                next = cursor.next() => match next {
                    Next::Events { events, gap } => {
                        if gap > 0 {
                            tracing::warn!(stream = stream_id, events = gap, "resumed stream had evicted events");
                        }
                        for e in &events {
                            frame(&mut out, framing, stream_id, e);
                        }
                        for chunk in out.drain(..) {
                            yield Ok(chunk);
                        }
                        ticker.reset();
                    }
                    Next::End | Next::Replaced => break,
                },
                _ = ticker.tick() => yield Ok(Bytes::from_static(b": keep-alive\n\n")),
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(stream = stream_id, "closing a stream: its access token expired");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Kind;

    fn ev(seq: u64, data: &'static [u8]) -> Event {
        Event {
            seq,
            kind: Kind::Response,
            data: Bytes::from_static(data),
        }
    }

    fn joined(framing: Framing, e: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, framing, 4, e);
        out.concat()
    }

    #[test]
    fn streamable_frames_carry_resumable_ids() {
        assert_eq!(
            joined(Framing::Streamable, &ev(9, b"{}")),
            b"id: 4-9\ndata: {}\n\n"
        );
    }

    #[test]
    fn legacy_frames_are_message_events() {
        assert_eq!(
            joined(Framing::Legacy, &ev(1, b"{}")),
            b"event: message\ndata: {}\n\n"
        );
    }

    #[test]
    fn carriage_returns_cannot_break_the_frame() {
        assert_eq!(
            joined(Framing::Streamable, &ev(1, b"{\r}")),
            b"id: 4-1\ndata: { }\n\n"
        );
    }

    #[test]
    fn large_messages_are_not_copied() {
        let big = Bytes::from(vec![b'x'; COPY_LIMIT + 1]);
        let mut out = Vec::new();
        frame(
            &mut out,
            Framing::Streamable,
            1,
            &Event {
                seq: 1,
                kind: Kind::Response,
                data: big.clone(),
            },
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].as_ptr(), big.as_ptr());
    }

    #[test]
    fn priming_event_has_an_id_and_empty_data() {
        assert_eq!(
            priming(2, Duration::from_millis(1500)),
            Bytes::from_static(b"id: 2-0\nretry: 1500\ndata: \n\n")
        );
    }
}
