//! The one mapping from every way a request can fail to what the client sees.
//!
//! Clients get a status and a JSON-RPC error without internals; details go to the logs at
//! the point of failure. The match below is exhaustive on purpose: a new failure must get a
//! deliberate answer.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::mcp::{self, ParseError, ProtocolVersion};
use crate::session::PrincipalRefusal;

/// Every way the HTTP transport refuses a request.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// `Origin` present and not allowed (DNS rebinding protection).
    ForbiddenOrigin,
    /// `Host` names another server while we listen on loopback (DNS rebinding protection).
    ForbiddenHost,
    /// `Accept` does not admit what the transport must be able to send.
    NotAcceptable(&'static str),
    /// Body is not declared as `application/json`.
    UnsupportedMediaType,
    /// Body larger than `--max-message-bytes`.
    PayloadTooLarge(usize),
    /// The body did not arrive in time.
    BodyTimeout,
    /// The body is not a JSON-RPC message.
    Parse(ParseError),
    /// A JSON-RPC batch where the protocol version forbids one, or an empty batch.
    BatchNotAllowed,
    /// A message that needs a session came without `Mcp-Session-Id`.
    MissingSession,
    /// `Mcp-Session-Id` does not name a live session of this principal on this transport.
    UnknownSession,
    /// A header that must appear once appeared several times or is not visible ASCII.
    MalformedHeader(&'static str),
    /// `MCP-Protocol-Version` names no version we know.
    UnsupportedVersion,
    /// A request of the 2026-07-28 (sessionless) era: answered so that dual-era clients
    /// fall back to `initialize` (see README.md).
    ModernEra,
    /// `initialize` inside a batch, or a second message with it.
    InitializeNotAlone,
    /// A request id already in flight in this session.
    DuplicateId(mcp::Id),
    /// A `Last-Event-ID` that names no stream of this session, or is ahead of it.
    UnknownEventId,
    /// The session cap is reached.
    TooManySessions,
    /// The sidecar is draining: no new sessions.
    Draining,
    /// The audit log cannot take more records and must be complete (`on_full = "refuse"`).
    AuditFull,
    /// The principal holds as many sessions as it may, or starts them too fast.
    PrincipalSessions(crate::session::PrincipalRefusal),
    /// The policy refused the request with an HTTP status (step-up challenge, rate limit).
    Refused(Box<super::inspect::Refusal>),
    /// GET on the legacy message endpoint and the like.
    MethodNotAllowed(&'static str),
}

/// Seconds a client should wait before trying again after a 503.
const RETRY_AFTER_SECS: &str = "5";

impl Rejection {
    pub(crate) fn into_response(self) -> Response {
        let (status, code, message): (StatusCode, i64, String) = match &self {
            Rejection::ForbiddenHost => (StatusCode::FORBIDDEN, mcp::code::INVALID_REQUEST, "Forbidden: host not allowed".into()),
            Rejection::ForbiddenOrigin => (StatusCode::FORBIDDEN, mcp::code::INVALID_REQUEST, "Forbidden: origin not allowed".into()),
            Rejection::NotAcceptable(what) => (
                StatusCode::NOT_ACCEPTABLE,
                mcp::code::INVALID_REQUEST,
                format!("Not Acceptable: the Accept header must list {what}"),
            ),
            Rejection::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                mcp::code::INVALID_REQUEST,
                "Unsupported Media Type: Content-Type must be application/json".into(),
            ),
            Rejection::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                mcp::code::INVALID_REQUEST,
                format!("Payload Too Large: messages are limited to {limit} bytes"),
            ),
            Rejection::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, mcp::code::INVALID_REQUEST, "Request Timeout: the body did not arrive in time".into()),
            Rejection::Parse(e) => (StatusCode::BAD_REQUEST, e.code(), format!("Bad Request: {e}")),
            Rejection::BatchNotAllowed => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: JSON-RPC batches are only allowed in protocol version 2025-03-26 and must not be empty".into(),
            ),
            Rejection::MissingSession => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required".into(),
            ),
            Rejection::UnknownSession => (StatusCode::NOT_FOUND, mcp::code::INVALID_REQUEST, "Session not found".into()),
            Rejection::MalformedHeader(name) => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                format!("Bad Request: malformed {name} header"),
            ),
            Rejection::UnsupportedVersion => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                format!("Bad Request: Unsupported protocol version (supported versions: {})", supported_list()),
            ),
            Rejection::ModernEra => return modern_era_response(),
            Rejection::InitializeNotAlone => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: initialize must be sent alone, without a session".into(),
            ),
            Rejection::DuplicateId(id) => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                format!("Bad Request: request id {id} is already in flight in this session"),
            ),
            Rejection::UnknownEventId => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: Last-Event-ID does not name a resumable stream of this session".into(),
            ),
            Rejection::TooManySessions => (
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::code::SERVER_UNAVAILABLE,
                "Service Unavailable: session limit reached".into(),
            ),
            Rejection::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::code::SERVER_UNAVAILABLE,
                "Service Unavailable: shutting down".into(),
            ),
            Rejection::AuditFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::code::SERVER_UNAVAILABLE,
                "Service Unavailable: the audit log cannot keep up, and nothing is done here that it would not record; the request was not processed, retry later".into(),
            ),
            // 429, not the global cap's 503: the sidecar is fine and ready (a balancer must
            // not take it out, nor send this caller elsewhere to get around its limit); it
            // is this caller who must wait or end a session.
            Rejection::PrincipalSessions(why) => {
                let (message, retry) = match why {
                    PrincipalRefusal::Cap(n) => (
                        format!("Too Many Requests: this principal already holds {n} sessions; end one (DELETE) before starting another"),
                        RETRY_AFTER_SECS.parse().unwrap_or(5),
                    ),
                    PrincipalRefusal::Rate { retry_after } => {
                        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                        (format!("Too Many Requests: this principal starts sessions too fast; retry after {secs} s"), secs)
                    }
                };
                let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, super::inspect::RATE_LIMITED, &message);
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
                return r;
            }
            Rejection::Refused(refusal) => return refusal.response(),
            Rejection::MethodNotAllowed(allow) => {
                let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, mcp::code::INVALID_REQUEST, "Method Not Allowed");
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
                return r;
            }
        };
        let mut response = json_error(status, code, &message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        Rejection::into_response(self)
    }
}

fn supported_list() -> String {
    ProtocolVersion::ALL
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON-RPC error response without an id, as the transport spec allows for HTTP errors.
pub(crate) fn json_error(status: StatusCode, code: i64, message: &str) -> Response {
    let mut response = Response::new(Body::from(mcp::error_response(None, code, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The answer of a server that speaks only the session era to a request of the sessionless
/// era (2026-07-28+): 400 with a JSON-RPC error that is *not* one of the modern codes
/// (-32020…-32022), which the spec tells dual-era clients to read as "legacy server, fall
/// back to `initialize`". A modern-looking error here would make them retry instead.
fn modern_era_response() -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        mcp::code::SERVER_UNAVAILABLE,
        &format!(
            "Bad Request: Unsupported protocol version (supported versions: {}); send initialize",
            supported_list()
        ),
    )
}
