//! The principal a request acts for, as established by authentication.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

/// What the subject of a client acting for itself starts with.
pub const CLIENT_PREFIX: &str = "client:";

/// An authenticated caller (or the anonymous caller when authentication is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's issuer (`iss`); empty for the anonymous principal.
    pub issuer: String,
    /// Whom the token names: a subject, or (without one) a client acting for itself.
    pub kind: PrincipalKind,
    /// The token's subject (`sub`); for a [`PrincipalKind::Client`], `client:` and its
    /// client id, so that everything that shows or compares subjects (policy, rate limits,
    /// logs, audit records) tells a client from a user of the same name.
    pub subject: String,
    /// The OAuth client the token was issued to (`client_id` or `azp`).
    pub client_id: Option<String>,
    /// Granted scopes, after scope implications.
    pub scopes: BTreeSet<String>,
    /// Every claim of the validated token (JWT payload or introspection response), for
    /// claim-based policy and claim-to-environment injection. Never the token itself.
    pub claims: Arc<Map<String, Value>>,
    /// The instant from which the token is refused (`exp` plus the allowed clock skew);
    /// `None` for the anonymous principal.
    pub expires_at: Option<SystemTime>,
    /// A short reference to the token for logs and audit records: `jti:<jti>` when the
    /// token has a usable `jti`, else `sha256:<first 12 hex digits>`. Never the token.
    pub token_ref: Option<String>,
    /// The delegation chain of an exchanged token (`act`, RFC 8693 §4.1): the current
    /// actor first, then the actors before it.
    pub actors: Vec<Actor>,
}

/// Whom a token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// Its subject (`sub`): a user, or whatever the issuer says the subject is.
    Subject,
    /// No subject: a client-credentials token, its client acting for itself.
    Client,
}

/// One link of a delegation chain: a party acting on behalf of the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
}

impl Principal {
    /// A principal with no scopes, claims or expiry; the authenticator fills in the rest.
    pub fn new(issuer: impl Into<String>, subject: impl Into<String>) -> Principal {
        Principal {
            issuer: issuer.into(),
            kind: PrincipalKind::Subject,
            subject: subject.into(),
            client_id: None,
            scopes: BTreeSet::new(),
            claims: Arc::new(Map::new()),
            expires_at: None,
            token_ref: None,
            actors: Vec::new(),
        }
    }

    /// A client acting for itself (a token without `sub`), named by its client id.
    pub fn client(issuer: impl Into<String>, client_id: &str) -> Principal {
        Principal {
            kind: PrincipalKind::Client,
            client_id: Some(client_id.to_owned()),
            ..Principal::new(issuer, format!("{CLIENT_PREFIX}{client_id}"))
        }
    }

    /// The caller when authentication is disabled (`--no-auth`).
    pub fn anonymous() -> Principal {
        Principal::new("", "anonymous")
    }

    /// What a session is bound to: kind, issuer and subject. A refreshed token of the same
    /// principal continues the session; another principal's token cannot use it, a client
    /// whose id reads like a user's subject included. Issuers hold no NUL, so the key
    /// splits one way only.
    pub fn session_key(&self) -> String {
        let kind = match self.kind {
            PrincipalKind::Subject => 's',
            PrincipalKind::Client => 'c',
        };
        format!("{kind}\u{0}{}\u{0}{}", self.issuer, self.subject)
    }

    /// Whether the (implication-expanded) scopes include `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The scopes of `required` this principal lacks, in the given order.
    pub fn missing_scopes<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|s| !self.scopes.contains(s.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// A claim of the validated token.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// How long the token stays acceptable from `now`; `None` when it never expires
    /// (anonymous), zero when it already has.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|at| at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_separates_issuer_and_subject() {
        // "a" + "b\0c" must not collide with "a\0b" + "c".
        let a = Principal::new("https://a", "alice");
        let b = Principal::new("https://b", "alice");
        assert_ne!(a.session_key(), b.session_key());
        assert_eq!(
            a.session_key(),
            Principal::new("https://a", "alice").session_key()
        );
        assert_eq!(Principal::anonymous().session_key(), "s\u{0}\u{0}anonymous");
    }

    #[test]
    fn a_client_is_never_the_user_of_the_same_name() {
        let client = Principal::client("https://a", "alice");
        assert_eq!(client.kind, PrincipalKind::Client);
        assert_eq!(client.subject, "client:alice");
        assert_eq!(client.client_id.as_deref(), Some("alice"));
        assert_ne!(
            client.session_key(),
            Principal::new("https://a", "alice").session_key()
        );
        // Not even a user whose subject is literally the client's.
        assert_ne!(
            client.session_key(),
            Principal::new("https://a", "client:alice").session_key()
        );
    }

    #[test]
    fn missing_scopes_keep_the_required_order() {
        let mut p = Principal::new("i", "s");
        p.scopes = ["b".to_owned()].into();
        let required = vec!["c".to_owned(), "b".to_owned(), "a".to_owned()];
        assert_eq!(p.missing_scopes(&required), vec!["c", "a"]);
        assert!(p.has_scope("b"));
    }

    #[test]
    fn remaining_time_saturates_at_zero() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut p = Principal::new("i", "s");
        assert_eq!(p.remaining(now), None);
        p.expires_at = Some(now + Duration::from_secs(5));
        assert_eq!(p.remaining(now), Some(Duration::from_secs(5)));
        p.expires_at = Some(now - Duration::from_secs(5));
        assert_eq!(p.remaining(now), Some(Duration::ZERO));
    }
}
