//! Bearer authentication of every MCP request (POST, GET, DELETE, legacy SSE and message):
//! the token from the `Authorization` header only, checked by `auth`; a refusal becomes the
//! status and `WWW-Authenticate` challenge RFC 6750 §3 and RFC 9728 §5.1 prescribe.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::auth::challenge::Outcome;
use crate::auth::{self, Endpoint, Principal, Rejection, Resource};

pub(crate) async fn authenticate(
    State(st): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(config) = st.auth.config() else {
        request
            .extensions_mut()
            .insert(Arc::new(Principal::anonymous()));
        return next.run(request).await;
    };
    let token = match credentials(request.headers(), request.uri()) {
        Ok(token) => token,
        Err(r) => return refuse(&st, request.uri().path(), r, None).into_response(),
    };
    let principal = match st
        .auth
        .authenticate(token, endpoint_of(&st, request.uri().path()))
        .await
    {
        Ok(p) => p,
        Err(r) => {
            let fingerprint = auth::token_fingerprint(token);
            return refuse(&st, request.uri().path(), r, Some(&fingerprint)).into_response();
        }
    };
    if !principal.missing_scopes(&config.required_scopes).is_empty() {
        let needed: Vec<&str> = config.required_scopes.iter().map(String::as_str).collect();
        st.metrics.auth_failed(Rejection::InsufficientScope.code());
        st.governance
            .auth_failure(Rejection::InsufficientScope.code(), Some(&principal));
        tracing::info!(
            auth.reason = Rejection::InsufficientScope.code(),
            auth.sub = %principal.subject,
            auth.token_ref = %principal.token_ref.as_deref().unwrap_or(""),
            "request refused"
        );
        return insufficient_scope(&st, request.uri().path(), &needed).into_response();
    }
    tracing::debug!(
        auth.iss = %principal.issuer,
        auth.sub = %principal.subject,
        auth.token_ref = %principal.token_ref.as_deref().unwrap_or(""),
        "authenticated"
    );
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The bearer token of a request, from the one place it may be: the `Authorization`
/// header (MCP authorization: "MUST NOT be included in the URI query string").
fn credentials<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<&'a str, Rejection> {
    if uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
    }) {
        return Err(Rejection::TokenInQuery);
    }
    // RFC 6750 §2.2: a token in the body comes form-encoded. MCP bodies are JSON, so a
    // form is refused before anything reads it.
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    {
        return Err(Rejection::TokenInBody);
    }
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Rejection::MissingToken);
    };
    if values.next().is_some() {
        return Err(Rejection::MalformedHeader);
    }
    bearer(value.as_bytes())
}

/// The bearer token of a request that passed authentication, for token exchange on the
/// caller's behalf (`--env-exchange`); `None` without authentication.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers.get(header::AUTHORIZATION)?.as_bytes()).ok()
}

/// `Bearer <token68>` (RFC 6750 §2.1; the scheme is case-insensitive). Another scheme is
/// not a bearer credential at all: the client gets the plain challenge.
pub(super) fn bearer(value: &[u8]) -> Result<&str, Rejection> {
    let value = std::str::from_utf8(value).map_err(|_| Rejection::MalformedHeader)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::MissingToken);
    }
    let token = rest.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let token68 = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if token68 {
        Ok(token)
    } else {
        Err(Rejection::MalformedHeader)
    }
}

/// Which endpoint a request path is: the legacy endpoints are a resource of their own.
fn endpoint_of(st: &AppState, path: &str) -> Endpoint {
    let legacy = st
        .config
        .legacy
        .as_ref()
        .is_some_and(|l| path == l.sse || path == l.message);
    if legacy {
        Endpoint::Legacy
    } else {
        Endpoint::Streamable
    }
}

/// The protected resource a request path belongs to (its metadata URL goes in the
/// challenge; its identifier is the audience a token needs there).
fn resource_for<'a>(st: &'a AppState, path: &str) -> Option<&'a Resource> {
    Some(st.auth.config()?.resources.of(endpoint_of(st, path)))
}

/// 403 `insufficient_scope` naming every scope the operation needs.
pub(crate) fn insufficient_scope(
    st: &AppState,
    path: &str,
    needed: &[&str],
) -> super::rescue::Failure {
    challenge(st, path, Rejection::InsufficientScope, needed)
}

fn refuse(
    st: &AppState,
    path: &str,
    r: Rejection,
    fingerprint: Option<&str>,
) -> super::rescue::Failure {
    let fingerprint = fingerprint.unwrap_or("");
    st.metrics.auth_failed(r.code());
    st.governance.auth_failure(r.code(), None);
    match r.outcome() {
        Outcome::Unauthenticated | Outcome::InvalidRequest => {
            tracing::debug!(auth.reason = r.code(), "request refused");
        }
        Outcome::InvalidToken | Outcome::InsufficientScope => {
            tracing::info!(auth.reason = r.code(), auth.token_ref = %fingerprint, "request refused");
        }
        Outcome::Unavailable => {
            tracing::warn!(auth.reason = r.code(), auth.token_ref = %fingerprint, "request refused");
        }
    }
    let required: Vec<&str> = st
        .auth
        .config()
        .map(|c| c.required_scopes.iter().map(String::as_str).collect())
        .unwrap_or_default();
    challenge(st, path, r, &required)
}

/// A refusal with what its answer needs: the resource's metadata URL for the challenge.
fn challenge(st: &AppState, path: &str, r: Rejection, scopes: &[&str]) -> super::rescue::Failure {
    super::rescue::Failure::Unauthorized {
        reason: r,
        resource_metadata: resource_for(st, path).map(|r| r.metadata_url.clone()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn bearer_syntax() {
        assert_eq!(
            bearer(b"Bearer abc.def-ghi_jkl~+/=="),
            Ok("abc.def-ghi_jkl~+/==")
        );
        assert_eq!(bearer(b"bearer  abc"), Ok("abc"));
        assert_eq!(bearer(b"BEARER abc"), Ok("abc"));
        assert_eq!(bearer(b"Basic dXNlcjpwYXNz"), Err(Rejection::MissingToken));
        assert_eq!(bearer(b"Bearer"), Err(Rejection::MalformedHeader));
        assert_eq!(bearer(b"Bearer "), Err(Rejection::MalformedHeader));
        assert_eq!(bearer(b"Bearer a b"), Err(Rejection::MalformedHeader));
        assert_eq!(bearer(b"Bearer a,b"), Err(Rejection::MalformedHeader));
        assert_eq!(bearer(b"Bearer ==="), Err(Rejection::MalformedHeader));
        assert_eq!(bearer(b"Bearer a=b"), Err(Rejection::MalformedHeader));
        assert_eq!(bearer(b"Bearer \xff"), Err(Rejection::MalformedHeader));
    }

    #[test]
    fn tokens_only_from_the_header() {
        let h = headers(&[("authorization", "Bearer t")]);
        assert_eq!(credentials(&h, &uri("/mcp")), Ok("t"));
        assert_eq!(
            credentials(&h, &uri("/mcp?access_token=t")),
            Err(Rejection::TokenInQuery)
        );
        assert_eq!(
            credentials(
                &HeaderMap::new(),
                &uri("/message?sessionId=x&access_token=t")
            ),
            Err(Rejection::TokenInQuery)
        );
        assert_eq!(credentials(&h, &uri("/message?sessionId=x")), Ok("t"));
        let form = headers(&[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("authorization", "Bearer t"),
        ]);
        assert_eq!(
            credentials(&form, &uri("/mcp")),
            Err(Rejection::TokenInBody)
        );
        let twice = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(
            credentials(&twice, &uri("/mcp")),
            Err(Rejection::MalformedHeader)
        );
        assert_eq!(
            credentials(&HeaderMap::new(), &uri("/mcp")),
            Err(Rejection::MissingToken)
        );
    }
}
