//! Opaque access tokens: RFC 7662 token introspection, and the checks its answer must pass
//! before it stands for a principal.

use serde_json::{Map, Value};
use url::Url;

use super::Secret;
use super::challenge::Rejection;
use super::fetch::HttpClient;
use super::jwt::check_audience;
use super::principal::PrincipalKind;

/// Largest introspection response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Asks the authorization server about a token.
pub(crate) async fn introspect(
    http: &HttpClient,
    endpoint: &Url,
    client_id: &str,
    client_secret: &Secret,
    token: &str,
) -> Result<Map<String, Value>, Rejection> {
    let form = [("token", token), ("token_type_hint", "access_token")];
    http.post_form(
        endpoint,
        client_id,
        client_secret,
        &form,
        MAX_RESPONSE_BYTES,
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %e, "token introspection failed");
        Rejection::IssuerUnavailable
    })
}

/// What an active introspection response establishes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    pub issuer: String,
    /// Its `sub`, or, for a client-credentials token without one, its `client_id`: see
    /// `kind`.
    pub subject: String,
    pub kind: PrincipalKind,
    /// `exp` plus the leeway, when the response has an `exp`.
    pub not_after: Option<f64>,
}

/// The rules an introspection response is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResponseRules<'a> {
    /// The issuer whose endpoint answered: the principal's issuer. An `iss` in the
    /// response must be this one; when it is absent (RFC 7662 makes it optional) the answer
    /// is this issuer's, since it came from its endpoint, to our credentials, over a checked
    /// connection.
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub leeway: f64,
}

/// Checks an introspection response like a JWT's claims: active, an access token, not
/// expired or early, for this resource, with a subject, and not sender-constrained.
/// `aud` is required even though RFC 7662 makes it optional: MCP servers must only accept
/// tokens issued for them.
pub(crate) fn check(
    resp: &Map<String, Value>,
    rules: ResponseRules<'_>,
    now: f64,
) -> Result<Checked, Rejection> {
    if resp.get("active") != Some(&Value::Bool(true)) {
        return Err(Rejection::Inactive);
    }
    if let Some(t) = resp.get("token_type") {
        let t = t.as_str().unwrap_or("").to_ascii_lowercase();
        if !matches!(
            t.as_str(),
            "bearer" | "access_token" | "urn:ietf:params:oauth:token-type:access_token"
        ) {
            // A refresh token or a DPoP token is not a bearer access token.
            return Err(Rejection::WrongTokenType);
        }
    }
    // An issuer vouches for its own tokens only: even another trusted issuer's name here
    // would let this one speak for that one's users.
    match resp.get("iss") {
        None => {}
        Some(Value::String(iss)) if iss == rules.issuer => {}
        Some(_) => return Err(Rejection::IssuerMismatch),
    }
    let issuer = rules.issuer.to_owned();
    let date = |name: &'static str| -> Result<Option<f64>, Rejection> {
        match resp.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or(Rejection::MissingClaim(name)),
        }
    };
    let not_after = date("exp")?.map(|exp| exp + rules.leeway);
    if not_after.is_some_and(|t| now >= t) {
        return Err(Rejection::Expired);
    }
    if date("nbf")?.is_some_and(|nbf| now + rules.leeway < nbf) {
        return Err(Rejection::NotYetValid);
    }
    check_audience(resp.get("aud"), rules.audiences)?;
    // Client-credentials tokens have no `sub`: the client is the principal then, as a
    // client, never as the user its id may read like.
    let text = |k: &str| {
        resp.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (subject, kind) = match (text("sub"), text("client_id")) {
        (Some(sub), _) => (sub.to_owned(), PrincipalKind::Subject),
        (None, Some(client)) => (client.to_owned(), PrincipalKind::Client),
        (None, None) => return Err(Rejection::MissingClaim("sub")),
    };
    if resp.contains_key("cnf") {
        return Err(Rejection::SenderConstrained);
    }
    Ok(Checked {
        issuer,
        subject,
        kind,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUD: &str = "http://127.0.0.1:8081/mcp";

    fn run(v: Value, now: f64) -> Result<Checked, Rejection> {
        let aud = vec![AUD.to_owned()];
        check(
            v.as_object().unwrap(),
            ResponseRules {
                issuer: "https://as",
                audiences: &aud,
                leeway: 0.0,
            },
            now,
        )
    }

    #[test]
    fn active_tokens_for_this_resource_pass() {
        let r = run(
            json!({"active": true, "sub": "alice", "aud": AUD, "exp": 200, "scope": "a"}),
            100.0,
        )
        .unwrap();
        assert_eq!(
            r,
            Checked {
                issuer: "https://as".into(),
                subject: "alice".into(),
                kind: PrincipalKind::Subject,
                not_after: Some(200.0)
            }
        );
        let r = run(
            json!({"active": true, "client_id": "svc", "aud": [AUD], "iss": "https://as"}),
            100.0,
        )
        .unwrap();
        assert_eq!(
            (r.subject.as_str(), r.kind, r.issuer.as_str(), r.not_after),
            ("svc", PrincipalKind::Client, "https://as", None)
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let cases = [
            (json!({"active": false}), Rejection::Inactive),
            (
                json!({"active": "true", "sub": "a", "aud": AUD}),
                Rejection::Inactive,
            ),
            (json!({}), Rejection::Inactive),
            (
                json!({"active": true, "sub": "a", "aud": AUD, "exp": 100}),
                Rejection::Expired,
            ),
            (
                json!({"active": true, "sub": "a", "aud": AUD, "nbf": 150}),
                Rejection::NotYetValid,
            ),
            (
                json!({"active": true, "sub": "a", "aud": "http://127.0.0.1:8080/mcp"}),
                Rejection::WrongAudience,
            ),
            (
                json!({"active": true, "sub": "a"}),
                Rejection::MissingClaim("aud"),
            ),
            (
                json!({"active": true, "aud": AUD}),
                Rejection::MissingClaim("sub"),
            ),
            (
                json!({"active": true, "sub": "a", "aud": AUD, "iss": "https://evil"}),
                Rejection::IssuerMismatch,
            ),
            // Another issuer we trust is still not the one that answered.
            (
                json!({"active": true, "sub": "a", "aud": AUD, "iss": "https://other"}),
                Rejection::IssuerMismatch,
            ),
            (
                json!({"active": true, "sub": "a", "aud": AUD, "iss": 7}),
                Rejection::IssuerMismatch,
            ),
            (
                json!({"active": true, "sub": "a", "aud": AUD, "token_type": "refresh_token"}),
                Rejection::WrongTokenType,
            ),
            (
                json!({"active": true, "sub": "a", "aud": AUD, "cnf": {"jkt": "x"}}),
                Rejection::SenderConstrained,
            ),
        ];
        for (resp, want) in cases {
            assert_eq!(run(resp.clone(), 100.0), Err(want), "{resp}");
        }
    }
}
