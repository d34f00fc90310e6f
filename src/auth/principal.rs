//! The principal a request acts for, as established by authentication.

use std::collections::BTreeSet;

/// An authenticated caller (or the anonymous caller when authentication is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's issuer (`iss`); empty for the anonymous principal.
    pub issuer: String,
    /// The token's subject (`sub`).
    pub subject: String,
    /// The OAuth client the token was issued to (`client_id` or `azp`).
    pub client_id: Option<String>,
    /// Granted scopes, after scope implications.
    pub scopes: BTreeSet<String>,
}

impl Principal {
    /// The caller when authentication is disabled (`--no-auth`).
    pub fn anonymous() -> Principal {
        Principal {
            issuer: String::new(),
            subject: "anonymous".into(),
            client_id: None,
            scopes: BTreeSet::new(),
        }
    }

    /// What a session is bound to: issuer and subject. A refreshed token of the same
    /// principal continues the session; another principal's token cannot use it.
    pub fn session_key(&self) -> String {
        format!("{}\u{0}{}", self.issuer, self.subject)
    }
}
