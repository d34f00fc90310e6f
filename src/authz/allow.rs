//! Who may sign in: `--allow-email`, `--allow-email-domain`, `--allow-group`, or
//! `--allow-any-user`. A user passes when any rule matches. Checked at sign-in, when a code
//! is redeemed and at every refresh, against the claims of the user's last sign-in.

use serde_json::{Map, Value};

/// The allow rules, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowRules {
    pub any_user: bool,
    /// Lower-cased addresses.
    pub emails: Vec<String>,
    /// Lower-cased domains (exact; subdomains do not match).
    pub email_domains: Vec<String>,
    pub groups: Vec<String>,
}

/// Why a user was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAllowed {
    /// No rule matched.
    NoRuleMatched,
}

impl AllowRules {
    pub fn any() -> AllowRules {
        AllowRules {
            any_user: true,
            ..AllowRules::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.any_user
            && self.emails.is_empty()
            && self.email_domains.is_empty()
            && self.groups.is_empty()
    }

    /// Checks the claims we keep for a user (`email`, `email_verified`, `groups`).
    pub fn check(&self, claims: &Map<String, Value>) -> Result<(), NotAllowed> {
        if self.any_user {
            return Ok(());
        }
        // An address counts only when the provider vouches for it.
        let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
            || matches!(claims.get("email_verified"), Some(Value::String(s)) if s == "true");
        if verified && let Some(email) = claims.get("email").and_then(Value::as_str) {
            let email = email.to_ascii_lowercase();
            if self.emails.contains(&email) {
                return Ok(());
            }
            if let Some((_, domain)) = email.rsplit_once('@')
                && self.email_domains.iter().any(|d| d == domain)
            {
                return Ok(());
            }
        }
        if let Some(Value::Array(groups)) = claims.get("groups")
            && groups
                .iter()
                .filter_map(Value::as_str)
                .any(|g| self.groups.iter().any(|a| a == g))
        {
            return Ok(());
        }
        Err(NotAllowed::NoRuleMatched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rules() {
        let rules = AllowRules {
            any_user: false,
            emails: vec!["boss@partner.example".into()],
            email_domains: vec!["corp.example".into()],
            groups: vec!["acme/platform".into()],
        };
        let ok = |v| rules.check(&claims(v)).is_ok();
        assert!(ok(
            json!({"email": "Alice@Corp.Example", "email_verified": true})
        ));
        assert!(ok(
            json!({"email": "boss@partner.example", "email_verified": "true"})
        ));
        assert!(!ok(
            json!({"email": "alice@corp.example", "email_verified": false})
        ));
        assert!(!ok(json!({"email": "alice@corp.example"})));
        assert!(!ok(
            json!({"email": "alice@sub.corp.example", "email_verified": true})
        ));
        assert!(!ok(
            json!({"email": "alice@corp.example.evil", "email_verified": true})
        ));
        assert!(!ok(
            json!({"email": "corp.example@evil.example", "email_verified": true})
        ));
        assert!(ok(json!({"groups": ["eng", "acme/platform"]})));
        assert!(!ok(json!({"groups": ["acme"]})));
        assert!(!ok(json!({"groups": "acme/platform"})));
        assert!(AllowRules::any().check(&Map::new()).is_ok());
        assert!(
            AllowRules::default()
                .check(&claims(json!({"email": "a@b", "email_verified": true})))
                .is_err()
        );
    }
}
