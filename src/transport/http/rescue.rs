//! The one mapping from every way a request can fail to what the client sees: the HTTP
//! status, its headers (`WWW-Authenticate`, `Retry-After`, `Allow`) and the JSON-RPC error,
//! whichever transport the request came on.
//!
//! Clients get a status and a JSON-RPC error without internals; details go to the logs at
//! the point of failure. The match below is exhaustive on purpose: a new failure must get a
//! deliberate answer. Nothing here reads application state: a failure carries what its
//! answer needs.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::auth::challenge::{self, Outcome};
use crate::governance::Refusal;
use crate::mcp::{self, ParseError, ProtocolVersion};
use crate::policy::DenyReason;
use crate::session::PrincipalRefusal;

/// Every way the HTTP transport refuses a request.
#[derive(Debug)]
pub(crate) enum Failure {
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
    /// The policy refused the request with an HTTP status (rate limit; a step-up challenge
    /// comes as [`Failure::Unauthorized`], with the resource's metadata).
    Refused(Box<Refusal>),
    /// Authentication refused the request, or the token lacks a scope the call needs.
    Unauthorized {
        reason: crate::auth::Rejection,
        /// The protected resource's metadata URL for the challenge (RFC 9728 §5.1); `None`
        /// without authentication.
        resource_metadata: Option<String>,
        /// Every scope the operation needs (named in the challenge).
        scopes: Vec<String>,
    },
    /// The session's server could not be started (its command, its sandbox, or the
    /// credentials it must be given). The message says what failed, without secrets.
    ///
    /// Both transports answer it the same way: 502 with a JSON-RPC error that has no id.
    /// That is the Streamable HTTP transport's answer to input the server cannot take
    /// ("an HTTP error status … MAY comprise a JSON-RPC error response that has no id"), and
    /// the only answer the legacy `GET /sse` can have, which carries no request.
    ServerStart(String),
    /// The principal must first connect an upstream account the server needs: the MCP
    /// URL-elicitation-required error (-32042) naming the connect page, under the request's
    /// id (none on the legacy `GET /sse`, which carries no request: 403 there).
    ConnectionNeeded {
        id: Option<mcp::Id>,
        connection: String,
        url: String,
    },
    /// GET on the legacy message endpoint and the like.
    MethodNotAllowed(&'static str),
    /// A sessionless request refused by the era's ladder (envelope, routing headers,
    /// version): 400 with the era's JSON-RPC error for it, already written.
    SessionlessRefused { body: Bytes },
    /// A method the sessionless era does not have, or that is not served to it: 404 with
    /// "method not found" under the request's id.
    SessionlessMethodNotFound(Option<mcp::Id>),
}

/// Seconds a client should wait before trying again after a 503 or a session cap.
const RETRY_AFTER_SECS: u64 = 5;

impl Failure {
    pub(crate) fn into_response(self) -> Response {
        let (status, code, message): (StatusCode, i64, String) = match &self {
            Failure::ForbiddenHost => (StatusCode::FORBIDDEN, mcp::code::INVALID_REQUEST, "Forbidden: host not allowed".into()),
            Failure::ForbiddenOrigin => (StatusCode::FORBIDDEN, mcp::code::INVALID_REQUEST, "Forbidden: origin not allowed".into()),
            Failure::NotAcceptable(what) => (
                StatusCode::NOT_ACCEPTABLE,
                mcp::code::INVALID_REQUEST,
                format!("Not Acceptable: the Accept header must list {what}"),
            ),
            Failure::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                mcp::code::INVALID_REQUEST,
                "Unsupported Media Type: Content-Type must be application/json".into(),
            ),
            Failure::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                mcp::code::INVALID_REQUEST,
                format!("Payload Too Large: messages are limited to {limit} bytes"),
            ),
            Failure::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, mcp::code::INVALID_REQUEST, "Request Timeout: the body did not arrive in time".into()),
            Failure::Parse(e) => (StatusCode::BAD_REQUEST, e.code(), format!("Bad Request: {e}")),
            Failure::BatchNotAllowed => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: JSON-RPC batches are only allowed in protocol version 2025-03-26 and must not be empty".into(),
            ),
            Failure::MissingSession => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header is required".into(),
            ),
            Failure::UnknownSession => (StatusCode::NOT_FOUND, mcp::code::INVALID_REQUEST, "Session not found".into()),
            Failure::MalformedHeader(name) => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                format!("Bad Request: malformed {name} header"),
            ),
            Failure::UnsupportedVersion => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                format!("Bad Request: Unsupported protocol version (supported versions: {})", supported_list()),
            ),
            Failure::ModernEra => return modern_era_response(),
            Failure::InitializeNotAlone => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: initialize must be sent alone, without a session".into(),
            ),
            Failure::DuplicateId(id) => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                format!("Bad Request: request id {id} is already in flight in this session"),
            ),
            Failure::UnknownEventId => (
                StatusCode::BAD_REQUEST,
                mcp::code::INVALID_REQUEST,
                "Bad Request: Last-Event-ID does not name a resumable stream of this session".into(),
            ),
            Failure::TooManySessions => (
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::code::SERVER_UNAVAILABLE,
                "Service Unavailable: session limit reached".into(),
            ),
            Failure::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::code::SERVER_UNAVAILABLE,
                "Service Unavailable: shutting down".into(),
            ),
            Failure::AuditFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::code::SERVER_UNAVAILABLE,
                "Service Unavailable: the audit log cannot keep up, and nothing is done here that it would not record; the request was not processed, retry later".into(),
            ),
            // 429, not the global cap's 503: the sidecar is fine and ready (a balancer must
            // not take it out, nor send this caller elsewhere to get around its limit); it
            // is this caller who must wait or end a session.
            Failure::PrincipalSessions(why) => {
                let (message, retry) = match why {
                    PrincipalRefusal::Cap(n) => (
                        format!("Too Many Requests: this principal already holds {n} sessions; end one (DELETE) before starting another"),
                        RETRY_AFTER_SECS,
                    ),
                    PrincipalRefusal::Rate { retry_after } => {
                        let secs = whole_seconds(*retry_after);
                        (format!("Too Many Requests: this principal starts sessions too fast; retry after {secs} s"), secs)
                    }
                };
                let r = json_error(StatusCode::TOO_MANY_REQUESTS, mcp::code::RATE_LIMITED, &message);
                return with_retry_after(r, retry);
            }
            Failure::Refused(refusal) => return refusal_response(refusal),
            Failure::Unauthorized { reason, resource_metadata, scopes } => {
                return unauthorized(*reason, resource_metadata.as_deref(), scopes);
            }
            Failure::ServerStart(message) => (StatusCode::BAD_GATEWAY, mcp::code::SERVER_UNAVAILABLE, message.clone()),
            Failure::SessionlessRefused { body } => return json_body(StatusCode::BAD_REQUEST, body.clone()),
            Failure::SessionlessMethodNotFound(id) => {
                let body = mcp::error_response(id.as_ref(), mcp::code::METHOD_NOT_FOUND, "Method not found");
                return json_body(StatusCode::NOT_FOUND, Bytes::from(body));
            }
            Failure::ConnectionNeeded { id, connection, url } => {
                let message = format!(
                    "Connect your {connection} account before using this server: open {url}"
                );
                let elicitation_id = format!("connect-{connection}");
                let body = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": id.as_ref().map_or(serde_json::Value::Null, mcp::Id::to_value),
                    "error": {
                        "code": mcp::code::URL_ELICITATION_REQUIRED,
                        "message": message,
                        "data": { "elicitations": [{
                            "mode": "url",
                            "elicitationId": elicitation_id,
                            "url": url,
                            "message": message,
                        }]},
                    },
                });
                let status = if id.is_some() { StatusCode::OK } else { StatusCode::FORBIDDEN };
                return json_body(status, Bytes::from(body.to_string()));
            }
            Failure::MethodNotAllowed(allow) => {
                let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, mcp::code::INVALID_REQUEST, "Method Not Allowed");
                r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
                return r;
            }
        };
        let response = json_error(status, code, &message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return with_retry_after(response, RETRY_AFTER_SECS);
        }
        response
    }
}

/// The one place `Retry-After` is written.
fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A wait as the whole seconds a client is told: rounded up, at least one.
fn whole_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// An authentication refusal: the status RFC 6750 §3 prescribes for its outcome and, unless
/// the token could not be checked at all, the resource's challenge (RFC 9728 §5.1).
fn unauthorized(
    reason: crate::auth::Rejection,
    resource_metadata: Option<&str>,
    scopes: &[String],
) -> Response {
    let (status, challenged, code) = match reason.outcome() {
        Outcome::Unauthenticated => (StatusCode::UNAUTHORIZED, true, mcp::code::INVALID_REQUEST),
        Outcome::InvalidRequest => (StatusCode::BAD_REQUEST, true, mcp::code::INVALID_REQUEST),
        Outcome::InvalidToken => (StatusCode::UNAUTHORIZED, true, mcp::code::INVALID_REQUEST),
        Outcome::InsufficientScope => (StatusCode::FORBIDDEN, true, mcp::code::INVALID_REQUEST),
        Outcome::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            false,
            mcp::code::SERVER_UNAVAILABLE,
        ),
    };
    let label = status.canonical_reason().unwrap_or("Error");
    let mut response = json_error(status, code, &format!("{label}: {}", reason.description()));
    if challenged && let Some(metadata) = resource_metadata {
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let value = challenge::www_authenticate(Some(reason), metadata, &scopes);
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return with_retry_after(response, RETRY_AFTER_SECS);
    }
    response
}

/// A policy refusal answered with a status: 429 with `Retry-After` for a rate limit, 403
/// with an `insufficient_scope` challenge naming every scope the call needs (RFC 6750 §3.1;
/// without the resource's metadata, which only [`Failure::Unauthorized`] carries). The
/// body is the refused request's JSON-RPC error, as on a stream.
fn refusal_response(refusal: &Refusal) -> Response {
    let mut response = Response::new(Body::from(refusal_jsonrpc(refusal)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    match &refusal.deny.reason {
        DenyReason::InsufficientScope { scopes } => {
            *response.status_mut() = StatusCode::FORBIDDEN;
            // Scope tokens cannot hold quotes or backslashes (RFC 6749 §3.3); any that
            // would are left out rather than break the header.
            let scope: Vec<&str> = scopes
                .iter()
                .map(String::as_str)
                .filter(|s| {
                    s.bytes()
                        .all(|b| b > 0x20 && b < 0x7f && b != b'"' && b != b'\\')
                })
                .collect();
            let challenge = format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", error_description=\"the token lacks a scope this call needs\"",
                scope.join(" ")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        DenyReason::RateLimited { retry_after } => {
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return with_retry_after(response, whole_seconds(*retry_after));
        }
        // Never answered with a status (see `Refusal::wants_status`): a 200 carrying the
        // JSON-RPC error, as on a stream.
        DenyReason::NotPermitted
        | DenyReason::DeniedByRule
        | DenyReason::ConditionNotMet
        | DenyReason::ArgumentBlocked { .. }
        | DenyReason::ConditionError
        | DenyReason::InvalidParams
        | DenyReason::UndecodableArguments => {}
    }
    response
}

/// The JSON-RPC error response for a request the policy refused, with the request's id: the
/// body of a refusal answered with a status, and what a stream carries for any other.
pub(crate) fn refusal_jsonrpc(refusal: &Refusal) -> Bytes {
    let reason = refusal.deny.reason.code();
    let mut data = serde_json::json!({ "reason": reason });
    let (code, message) = match &refusal.deny.reason {
        DenyReason::InsufficientScope { scopes } => {
            data["scopes"] = scopes.clone().into();
            (
                mcp::code::POLICY_DENIED,
                format!(
                    "Insufficient scope: this call needs the scopes {}",
                    scopes.join(" ")
                ),
            )
        }
        DenyReason::RateLimited { retry_after } => {
            let secs = whole_seconds(*retry_after);
            data["retryAfter"] = secs.into();
            (
                mcp::code::RATE_LIMITED,
                format!("Too many requests: retry after {secs} s"),
            )
        }
        DenyReason::InvalidParams => (
            mcp::code::INVALID_PARAMS,
            "Invalid params: the request names no tool, prompt or resource".to_owned(),
        ),
        DenyReason::UndecodableArguments => (
            mcp::code::INVALID_PARAMS,
            "Invalid params: a string in the arguments holds a lone UTF-16 surrogate escape"
                .to_owned(),
        ),
        DenyReason::NotPermitted
        | DenyReason::DeniedByRule
        | DenyReason::ConditionNotMet
        | DenyReason::ArgumentBlocked { .. }
        | DenyReason::ConditionError => (
            mcp::code::POLICY_DENIED,
            match &refusal.deny.message {
                Some(m) => format!("Forbidden by policy: {m}"),
                None => format!("Forbidden by policy ({reason})"),
            },
        ),
    };
    let reply = serde_json::json!({
        "jsonrpc": "2.0",
        "id": serde_json::from_str::<serde_json::Value>(&refusal.id.to_json()).unwrap_or_default(),
        "error": { "code": code, "message": message, "data": data },
    });
    Bytes::from(reply.to_string())
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        Failure::into_response(self)
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
    json_body(
        status,
        Bytes::from(mcp::error_response(None, code, message)),
    )
}

fn json_body(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mcp::Id;
    use crate::policy::Deny;

    fn refusal(reason: DenyReason, anonymous: bool) -> Refusal {
        Refusal {
            deny: Deny {
                target: None,
                reason,
                rule: Some("r".into()),
                message: None,
            },
            id: Id::Str("req-1".into()),
            anonymous,
        }
    }

    fn body(r: &Refusal) -> serde_json::Value {
        serde_json::from_slice(&refusal_jsonrpc(r)).unwrap()
    }

    fn response(r: Refusal) -> Response {
        Failure::Refused(Box::new(r)).into_response()
    }

    #[test]
    fn missing_scopes_get_one_step_up_challenge_naming_them_all() {
        let scopes = vec!["mcp:admin".to_owned(), "mcp:tools".to_owned()];
        let r = refusal(DenyReason::InsufficientScope { scopes }, false);
        assert!(r.wants_status());
        let b = body(&r);
        let resp = response(r);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge
                .starts_with("Bearer error=\"insufficient_scope\", scope=\"mcp:admin mcp:tools\""),
            "{challenge}"
        );
        assert_eq!(b["id"], "req-1");
        assert_eq!(
            b["error"]["data"]["scopes"],
            serde_json::json!(["mcp:admin", "mcp:tools"])
        );
        // Without authentication no token can gain scopes: a JSON-RPC error instead.
        let anon = refusal(
            DenyReason::InsufficientScope {
                scopes: vec!["x".into()],
            },
            true,
        );
        assert!(!anon.wants_status());
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let r = refusal(
            DenyReason::RateLimited {
                retry_after: Duration::from_millis(2200),
            },
            true,
        );
        assert!(r.wants_status());
        let b = body(&r);
        let resp = response(r);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "3");
        assert_eq!(
            (
                b["error"]["code"].as_i64(),
                b["error"]["data"]["retryAfter"].as_u64()
            ),
            (Some(mcp::code::RATE_LIMITED), Some(3))
        );
    }

    #[test]
    fn other_refusals_are_json_rpc_errors_with_their_reason() {
        let mut r = refusal(DenyReason::DeniedByRule, false);
        r.deny.message = Some("not here".into());
        assert!(!r.wants_status());
        let b = body(&r);
        assert_eq!(b["error"]["code"], mcp::code::POLICY_DENIED);
        assert_eq!(b["error"]["message"], "Forbidden by policy: not here");
        assert_eq!(b["error"]["data"]["reason"], "denied_by_rule");
        let b = body(&refusal(DenyReason::InvalidParams, false));
        assert_eq!(b["error"]["code"], mcp::code::INVALID_PARAMS);
    }

    #[test]
    fn a_server_that_cannot_start_is_a_bad_gateway_without_an_id() {
        let resp = Failure::ServerStart("cannot start the MCP server: x".into()).into_response();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn an_unavailable_issuer_says_when_to_retry_and_challenges_nobody() {
        let resp = Failure::Unauthorized {
            reason: crate::auth::Rejection::IssuerUnavailable,
            resource_metadata: Some("https://r/.well-known/oauth-protected-resource".into()),
            scopes: Vec::new(),
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
        let resp = Failure::Unauthorized {
            reason: crate::auth::Rejection::Expired,
            resource_metadata: Some("https://r/.well-known/oauth-protected-resource".into()),
            scopes: vec!["a".into()],
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            challenge.contains("resource_metadata=\"https://r/"),
            "{challenge}"
        );
    }
}
