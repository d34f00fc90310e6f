//! Scopes: reading them from a token, checking their syntax, and expanding implications
//! (a broader scope grants the narrower ones it implies).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// `broad → narrower` rules, applied transitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRules {
    implies: BTreeMap<String, BTreeSet<String>>,
}

impl ScopeRules {
    /// Rules from `(broad, [narrower…])` pairs. Cycles are harmless (each scope is
    /// expanded once).
    pub fn new(rules: impl IntoIterator<Item = (String, Vec<String>)>) -> ScopeRules {
        let mut implies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (broad, narrower) in rules {
            implies.entry(broad).or_default().extend(narrower);
        }
        ScopeRules { implies }
    }

    /// Every scope named by a rule, on either side.
    pub fn mentioned(&self) -> impl Iterator<Item = &str> {
        self.implies
            .iter()
            .flat_map(|(k, v)| std::iter::once(k).chain(v))
            .map(String::as_str)
    }

    /// `granted` plus everything it implies.
    pub fn expand(&self, granted: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = granted.into_iter().collect();
        while let Some(scope) = todo.pop() {
            if let Some(narrower) = self.implies.get(&scope) {
                todo.extend(narrower.iter().filter(|s| !out.contains(*s)).cloned());
            }
            out.insert(scope);
        }
        out
    }
}

/// The granted scopes of a token: `scope` (space-delimited string, RFC 9068 §2.2.3) or, as
/// some servers send, `scp` (array of strings, or a string). Malformed values grant nothing.
pub fn from_claims(claims: &Map<String, Value>) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split(' ')
            .filter(|t| is_scope_token(t))
            .map(str::to_owned)
            .collect()
    };
    match claims.get("scope").or_else(|| claims.get("scp")) {
        Some(Value::String(s)) => split(s),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| is_scope_token(t))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, which also keeps it safe
/// inside a quoted `WWW-Authenticate` parameter.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn implications_are_transitive_and_cycle_safe() {
        let rules = ScopeRules::new([
            ("admin".to_owned(), vec!["write".to_owned()]),
            ("write".to_owned(), vec!["read".to_owned()]),
            (
                "read".to_owned(),
                vec!["admin".to_owned(), "list".to_owned()],
            ),
        ]);
        assert_eq!(
            rules.expand(["write".to_owned()]),
            set(&["admin", "list", "read", "write"])
        );
        let rules = ScopeRules::new([("admin".to_owned(), vec!["read".to_owned()])]);
        assert_eq!(rules.expand(["read".to_owned()]), set(&["read"]));
        assert_eq!(rules.expand(["admin".to_owned()]), set(&["admin", "read"]));
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let c = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(
            from_claims(&c(json!({"scope": "a  b"}))),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(
            from_claims(&c(json!({"scp": ["a", "b", 3]}))),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(from_claims(&c(json!({"scp": "a"}))), vec!["a".to_owned()]);
        assert!(from_claims(&c(json!({"scope": 5}))).is_empty());
        // A quote would break out of the challenge's quoted string: never a scope.
        assert!(from_claims(&c(json!({"scope": "a\"b"}))).is_empty());
    }

    #[test]
    fn scope_token_syntax() {
        assert!(is_scope_token("mcp:tools"));
        assert!(is_scope_token("https://api.example.com/read"));
        for bad in ["", "a b", "a\"b", "a\\b", "é"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
    }
}
