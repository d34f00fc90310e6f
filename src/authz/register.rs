//! Dynamic client registration (RFC 7591), the fallback for clients without a metadata
//! document: validated, rate-limited per peer address and overall, capped in number.
//! Redirect URIs that are merely unsupported (a private-use scheme) are dropped and the
//! registration goes on with the others (§3.2.1 lets a server replace requested values);
//! dangerous ones refuse the whole registration.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::cimd::subset;
use super::rules::{self, RedirectProblem};
use super::{AuthzError, TokenError};
use crate::store::ClientRecord;

/// Registration limits.
#[derive(Debug, Clone)]
pub struct DcrConfig {
    /// Registrations per peer address per hour, and how many at once.
    pub per_hour: u32,
    pub burst: u32,
    /// Registrations per hour from everyone together.
    pub global_per_hour: u32,
    /// Registered clients at most.
    pub max_clients: i64,
}

impl Default for DcrConfig {
    fn default() -> Self {
        DcrConfig {
            per_hour: 20,
            burst: 5,
            global_per_hour: 1000,
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token if there is one; else the seconds until there is.
    fn take(&mut self, capacity: f64, per_sec: f64, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

/// Token buckets per peer address and for everyone.
#[derive(Debug)]
pub(super) struct Limiter {
    config: DcrConfig,
    peers: Mutex<HashMap<IpAddr, Bucket>>,
    global: Mutex<Option<Bucket>>,
}

impl Limiter {
    pub(super) fn new(config: DcrConfig) -> Limiter {
        Limiter {
            config,
            peers: Mutex::new(HashMap::new()),
            global: Mutex::new(None),
        }
    }

    /// Admits one registration, or says how long to wait.
    pub(super) fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let c = &self.config;
        let per_sec = f64::from(c.per_hour.max(1)) / 3600.0;
        if let Some(ip) = peer {
            let mut peers = self.peers.lock();
            if peers.len() > 10_000 {
                // Forget buckets that have refilled: they say nothing any more.
                let full = f64::from(c.burst.max(1));
                peers.retain(|_, b| {
                    b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_sec < full
                });
            }
            let bucket = peers.entry(ip).or_insert(Bucket {
                tokens: f64::from(c.burst.max(1)),
                at: now,
            });
            bucket.take(f64::from(c.burst.max(1)), per_sec, now)?;
        }
        let global_rate = f64::from(c.global_per_hour.max(1));
        let mut global = self.global.lock();
        let bucket = global.get_or_insert(Bucket {
            tokens: global_rate,
            at: now,
        });
        bucket.take(global_rate, global_rate / 3600.0, now)
    }
}

fn bad(code: &'static str, description: &'static str) -> AuthzError {
    AuthzError::Token(TokenError::invalid_metadata(code, description))
}

/// Checks a registration request; returns what to store and what to answer.
pub(super) fn validate(
    body: &[u8],
    schemes: &[String],
    now: i64,
) -> Result<(ClientRecord, Value), AuthzError> {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad(
            "invalid_client_metadata",
            "the body is not a JSON object",
        ));
    };
    let uris = match req.get("redirect_uris") {
        Some(Value::Array(u)) if !u.is_empty() && u.len() <= 10 => u,
        _ => {
            return Err(bad(
                "invalid_redirect_uri",
                "redirect_uris must list 1 to 10 URIs",
            ));
        }
    };
    let app_type = match req.get("application_type") {
        None => None,
        Some(Value::String(t)) if t == "web" || t == "native" => Some(t.clone()),
        Some(_) => {
            return Err(bad(
                "invalid_client_metadata",
                "application_type must be web or native",
            ));
        }
    };
    let mut kept = Vec::new();
    for u in uris {
        let Some(u) = u.as_str() else {
            return Err(bad("invalid_redirect_uri", "redirect_uris must be strings"));
        };
        // A client that did not say may be native (it uses loopback or its own scheme).
        let native = app_type.as_deref() != Some("web");
        match rules::check_redirect(u, schemes, native) {
            Ok(()) => kept.push(u.to_owned()),
            Err(RedirectProblem::Unsupported) => {
                tracing::info!(
                    scheme = u.split(':').next().unwrap_or(""),
                    "dropped a redirect URI with an unsupported scheme from a registration"
                );
            }
            Err(RedirectProblem::Dangerous) => {
                return Err(bad("invalid_redirect_uri", "a redirect URI is not allowed"));
            }
        }
    }
    if kept.is_empty() {
        return Err(bad("invalid_redirect_uri", "no redirect URI can be used"));
    }
    let app_type = app_type.unwrap_or_else(|| {
        let all_local = kept.iter().all(|u| !u.starts_with("https:"));
        if all_local { "native" } else { "web" }.to_owned()
    });
    // RFC 7591 §2: client_secret_basic unless the client says otherwise.
    let method = match req.get("token_endpoint_auth_method") {
        None => "client_secret_basic",
        Some(Value::String(m))
            if matches!(
                m.as_str(),
                "none" | "client_secret_basic" | "client_secret_post"
            ) =>
        {
            m.as_str()
        }
        Some(_) => {
            return Err(bad(
                "invalid_client_metadata",
                "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
            ));
        }
    };
    if !subset(
        req.get("grant_types"),
        &["authorization_code", "refresh_token"],
    ) {
        return Err(bad(
            "invalid_client_metadata",
            "grant_types may be authorization_code and refresh_token",
        ));
    }
    if !subset(req.get("response_types"), &["code"]) {
        return Err(bad("invalid_client_metadata", "response_types may be code"));
    }
    let client_id = format!(
        "mcpw_{}",
        crate::store::random_id().map_err(AuthzError::Store)?
    );
    let name = req
        .get("client_name")
        .and_then(Value::as_str)
        .map(|n| rules::display_text(n, 100))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Unnamed client".to_owned());
    let mut metadata = Map::new();
    metadata.insert("client_id".into(), json!(client_id));
    metadata.insert("client_id_issued_at".into(), json!(now));
    metadata.insert("client_name".into(), json!(name));
    metadata.insert("redirect_uris".into(), json!(kept));
    metadata.insert("token_endpoint_auth_method".into(), json!(method));
    metadata.insert(
        "grant_types".into(),
        req.get("grant_types")
            .cloned()
            .unwrap_or(json!(["authorization_code", "refresh_token"])),
    );
    metadata.insert("response_types".into(), json!(["code"]));
    metadata.insert("application_type".into(), json!(app_type));
    for field in [
        "client_uri",
        "logo_uri",
        "tos_uri",
        "policy_uri",
        "software_id",
        "software_version",
        "scope",
    ] {
        if let Some(Value::String(v)) = req.get(field)
            && v.len() <= 2048
        {
            metadata.insert(field.into(), json!(v));
        }
    }
    let secret = if method == "none" {
        None
    } else {
        Some(rules::secret("mws_").ok_or_else(|| {
            AuthzError::Store(crate::store::StoreError::Unavailable(
                "no randomness".into(),
            ))
        })?)
    };
    let record = ClientRecord {
        client_id,
        metadata: Value::Object(metadata.clone()),
        secret_hash: secret.as_deref().map(rules::hash),
        registered_at: now,
    };
    let mut answer = metadata;
    if let Some(s) = secret {
        answer.insert("client_secret".into(), json!(s));
        answer.insert("client_secret_expires_at".into(), json!(0));
    }
    Ok((record, Value::Object(answer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(body: Value, schemes: &[String]) -> Result<Value, String> {
        validate(body.to_string().as_bytes(), schemes, 1000)
            .map(|(_, a)| a)
            .map_err(|e| match e {
                AuthzError::Token(t) => t.code.to_owned(),
                other => other.to_string(),
            })
    }

    #[test]
    fn registrations_are_checked() {
        let ok = register(json!({"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none", "client_name": "A"}), &[]).unwrap();
        assert!(ok["client_id"].as_str().unwrap().starts_with("mcpw_"));
        assert!(ok.get("client_secret").is_none());
        assert_eq!(ok["application_type"], "native");
        let confidential =
            register(json!({"redirect_uris": ["https://app.example/cb"]}), &[]).unwrap();
        assert!(
            confidential["client_secret"]
                .as_str()
                .unwrap()
                .starts_with("mws_")
        );
        assert_eq!(confidential["application_type"], "web");
        for (body, code) in [
            (
                json!({"redirect_uris": ["javascript:alert(1)"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb#x"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["http://a.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (json!({"redirect_uris": []}), "invalid_redirect_uri"),
            (json!({}), "invalid_redirect_uri"),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "application_type": "desktop"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"]}),
                "invalid_redirect_uri",
            ),
        ] {
            assert_eq!(register(body.clone(), &[]).unwrap_err(), code, "{body}");
        }
        // Cursor's three redirects: the private scheme is dropped unless admitted.
        let cursor = json!({"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback",
            "https://www.cursor.com/agents/mcp/oauth/callback", "http://localhost:8787/callback"],
            "token_endpoint_auth_method": "none"});
        let a = register(cursor.clone(), &[]).unwrap();
        assert_eq!(a["redirect_uris"].as_array().unwrap().len(), 2);
        let a = register(cursor, &["cursor".to_owned()]).unwrap();
        assert_eq!(a["redirect_uris"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn registrations_are_rate_limited() {
        let l = Limiter::new(DcrConfig {
            per_hour: 3600,
            burst: 2,
            global_per_hour: 1000,
            max_clients: 10,
        });
        let t = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(l.admit(Some(a), t).is_ok());
        assert!(l.admit(Some(a), t).is_ok());
        assert_eq!(l.admit(Some(a), t), Err(1));
        assert!(l.admit(Some(b), t).is_ok(), "per address");
        assert!(
            l.admit(Some(a), t + std::time::Duration::from_secs(1))
                .is_ok(),
            "refilled"
        );
    }
}
