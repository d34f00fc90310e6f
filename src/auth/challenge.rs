//! Why a request was refused, and the `WWW-Authenticate` challenge that says so
//! (RFC 6750 §3, RFC 9728 §5.1, MCP authorization "Error Handling").

use std::fmt::Write as _;

/// Every way authentication refuses a request. `code()` is the stable reason for logs,
/// audit records and metrics; clients only see the RFC 6750 error and a fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No bearer credentials at all: a plain challenge, no error code (RFC 6750 §3.1).
    #[error("no access token")]
    MissingToken,
    /// An access token in the URI query (`access_token=`); refused, never looked at.
    #[error("access token in the query string")]
    TokenInQuery,
    /// A form-encoded body, the one way to send a token in a body (RFC 6750 §2.2).
    #[error("access token in a form body")]
    TokenInBody,
    /// Repeated `Authorization` headers, or a Bearer credential that is not a token68.
    #[error("malformed Authorization header")]
    MalformedHeader,
    #[error("access token larger than the limit")]
    TokenTooLarge,
    /// Not a JWS compact serialization with a JSON header and payload (and no
    /// introspection to ask instead).
    #[error("malformed access token")]
    MalformedToken,
    /// `alg` is `none`, HMAC without a configured secret, or not supported.
    #[error("signature algorithm not allowed")]
    AlgorithmNotAllowed,
    /// `typ` is not `at+jwt` (RFC 9068 §4).
    #[error("wrong token type")]
    WrongTokenType,
    /// A `crit` header parameter: an extension we do not implement (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    UnsupportedHeader,
    #[error("issuer not trusted")]
    UnknownIssuer,
    /// An introspection answer names another issuer than the one whose endpoint gave it.
    #[error("introspection answer names another issuer")]
    IssuerMismatch,
    /// No key of the issuer has this `kid` (or none fits, without a `kid`).
    #[error("unknown signing key")]
    UnknownKey,
    /// The key named by `kid` cannot produce this `alg` (type, curve or declared `alg`).
    #[error("key does not fit the algorithm")]
    KeyMismatch,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` in the future beyond the allowed clock skew.
    #[error("token not yet valid")]
    NotYetValid,
    #[error("audience does not include this resource")]
    WrongAudience,
    #[error("required claim missing or malformed: {0}")]
    MissingClaim(&'static str),
    /// A sender-constrained token (`cnf`, DPoP or mTLS) presented as a bearer token.
    #[error("sender-constrained token used as a bearer token")]
    SenderConstrained,
    /// Introspection says the token is not active.
    #[error("token not active")]
    Inactive,
    /// Keys or introspection could not be obtained from the authorization server; the
    /// token is not accepted (fail closed).
    #[error("authorization server unavailable")]
    IssuerUnavailable,
    /// A valid token without every scope the operation needs.
    #[error("insufficient scope")]
    InsufficientScope,
}

/// What the HTTP layer must answer for a [`Rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 401 with a challenge that has no error code.
    Unauthenticated,
    /// 400 `invalid_request`.
    InvalidRequest,
    /// 401 `invalid_token`.
    InvalidToken,
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// 503: we could not check the token.
    Unavailable,
}

impl Rejection {
    /// Stable snake_case reason code.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::TokenInQuery => "token_in_query",
            Rejection::TokenInBody => "token_in_body",
            Rejection::MalformedHeader => "malformed_header",
            Rejection::TokenTooLarge => "token_too_large",
            Rejection::MalformedToken => "malformed_token",
            Rejection::AlgorithmNotAllowed => "algorithm_not_allowed",
            Rejection::WrongTokenType => "wrong_token_type",
            Rejection::UnsupportedHeader => "unsupported_header",
            Rejection::UnknownIssuer => "unknown_issuer",
            Rejection::IssuerMismatch => "issuer_mismatch",
            Rejection::UnknownKey => "unknown_key",
            Rejection::KeyMismatch => "key_mismatch",
            Rejection::BadSignature => "bad_signature",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::MissingClaim(_) => "missing_claim",
            Rejection::SenderConstrained => "sender_constrained",
            Rejection::Inactive => "inactive",
            Rejection::IssuerUnavailable => "issuer_unavailable",
            Rejection::InsufficientScope => "insufficient_scope",
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Rejection::MissingToken => Outcome::Unauthenticated,
            Rejection::TokenInQuery | Rejection::TokenInBody | Rejection::MalformedHeader => {
                Outcome::InvalidRequest
            }
            Rejection::TokenTooLarge
            | Rejection::MalformedToken
            | Rejection::AlgorithmNotAllowed
            | Rejection::WrongTokenType
            | Rejection::UnsupportedHeader
            | Rejection::UnknownIssuer
            | Rejection::IssuerMismatch
            | Rejection::UnknownKey
            | Rejection::KeyMismatch
            | Rejection::BadSignature
            | Rejection::Expired
            | Rejection::NotYetValid
            | Rejection::WrongAudience
            | Rejection::MissingClaim(_)
            | Rejection::SenderConstrained
            | Rejection::Inactive => Outcome::InvalidToken,
            Rejection::IssuerUnavailable => Outcome::Unavailable,
            Rejection::InsufficientScope => Outcome::InsufficientScope,
        }
    }

    /// The `error_description` clients see: fixed text that tells a client what to do
    /// (refresh, fix its request, ask for another audience) and nothing about our keys,
    /// issuers or configuration.
    pub fn description(self) -> &'static str {
        match self {
            Rejection::MissingToken => "Authorization required",
            Rejection::TokenInQuery | Rejection::TokenInBody => {
                "Access tokens are accepted only in the Authorization header"
            }
            Rejection::MalformedHeader => "Malformed Authorization header",
            Rejection::Expired => "The access token expired",
            Rejection::NotYetValid => "The access token is not yet valid",
            Rejection::WrongAudience => "The access token was not issued for this resource",
            Rejection::Inactive => "The access token is not active",
            Rejection::IssuerUnavailable => "The access token cannot be checked right now",
            Rejection::InsufficientScope => "The access token lacks a required scope",
            Rejection::TokenTooLarge
            | Rejection::MalformedToken
            | Rejection::AlgorithmNotAllowed
            | Rejection::WrongTokenType
            | Rejection::UnsupportedHeader
            | Rejection::UnknownIssuer
            | Rejection::IssuerMismatch
            | Rejection::UnknownKey
            | Rejection::KeyMismatch
            | Rejection::BadSignature
            | Rejection::MissingClaim(_)
            | Rejection::SenderConstrained => "The access token is invalid",
        }
    }
}

/// Renders a `WWW-Authenticate: Bearer …` value.
///
/// Parameter order matters to real clients: the official SDKs split on spaces, need
/// `Bearer` first and a parameter after it, and take the first `resource_metadata=` /
/// `scope=` / `error=` match, so every parameter appears once and values are quoted.
/// `resource_metadata` is absolute (RFC 9728 §5.1). `scope` lists every scope the
/// operation needs, not just the missing ones, so one re-authorization suffices.
pub fn www_authenticate(
    rejection: Option<Rejection>,
    resource_metadata: &str,
    scopes: &[&str],
) -> String {
    let mut out = String::from("Bearer ");
    let mut sep = "";
    if let Some(r) = rejection {
        let error = match r.outcome() {
            Outcome::InvalidRequest => Some("invalid_request"),
            Outcome::InvalidToken => Some("invalid_token"),
            Outcome::InsufficientScope => Some("insufficient_scope"),
            Outcome::Unauthenticated | Outcome::Unavailable => None,
        };
        if let Some(error) = error {
            let _ = write!(
                out,
                "error=\"{error}\", error_description=\"{}\"",
                r.description()
            );
            sep = ", ";
        }
    }
    let _ = write!(
        out,
        "{sep}resource_metadata=\"{}\"",
        quoted_safe(resource_metadata)
    );
    let scopes: Vec<&str> = scopes
        .iter()
        .copied()
        .filter(|s| crate::auth::scopes::is_scope_token(s))
        .collect();
    if !scopes.is_empty() {
        let _ = write!(out, ", scope=\"{}\"", scopes.join(" "));
    }
    out
}

/// A URL is already free of `"` and `\` once serialized by `url`; this keeps that true for
/// anything else that ends up here.
fn quoted_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://h.example/.well-known/oauth-protected-resource/mcp";

    #[test]
    fn no_token_gets_a_challenge_without_error_code() {
        assert_eq!(
            www_authenticate(Some(Rejection::MissingToken), PRM, &["mcp:tools"]),
            format!("Bearer resource_metadata=\"{PRM}\", scope=\"mcp:tools\"")
        );
        assert_eq!(
            www_authenticate(None, PRM, &[]),
            format!("Bearer resource_metadata=\"{PRM}\"")
        );
    }

    #[test]
    fn bad_tokens_get_invalid_token() {
        let h = www_authenticate(Some(Rejection::BadSignature), PRM, &["a", "b"]);
        assert_eq!(
            h,
            format!(
                "Bearer error=\"invalid_token\", error_description=\"The access token is invalid\", resource_metadata=\"{PRM}\", scope=\"a b\""
            )
        );
    }

    #[test]
    fn insufficient_scope_lists_every_needed_scope() {
        let h = www_authenticate(
            Some(Rejection::InsufficientScope),
            PRM,
            &["mcp:read", "mcp:write"],
        );
        assert!(h.starts_with("Bearer error=\"insufficient_scope\""));
        assert!(h.ends_with("scope=\"mcp:read mcp:write\""));
    }

    #[test]
    fn descriptions_are_valid_rfc6750_text() {
        // error_description: %x20-21 / %x23-5B / %x5D-7E
        let all = [
            Rejection::MissingToken,
            Rejection::TokenInQuery,
            Rejection::MalformedHeader,
            Rejection::Expired,
            Rejection::NotYetValid,
            Rejection::WrongAudience,
            Rejection::Inactive,
            Rejection::IssuerUnavailable,
            Rejection::InsufficientScope,
            Rejection::BadSignature,
        ];
        for r in all {
            assert!(
                r.description().bytes().all(|b| b == 0x20
                    || b == 0x21
                    || (0x23..=0x5B).contains(&b)
                    || (0x5D..=0x7E).contains(&b)),
                "{r:?}"
            );
        }
    }

    #[test]
    fn hostile_values_cannot_break_the_header() {
        let h = www_authenticate(None, "https://h/\"x\\y\r\n", &["ok", "a\"b"]);
        assert_eq!(h, "Bearer resource_metadata=\"https://h/xy\", scope=\"ok\"");
    }
}
