//! The upstream OpenID provider users sign in with: its discovered endpoints, its keys, and
//! the validation of its ID tokens (OpenID Connect Core §3.1.3.7). The tokens it issues are
//! read here once and never leave the authorization server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use super::fetch::{FetchError, HttpClient};
use super::jwks::{CachePolicy, IssuerKeys, KeySource};
use super::jwt::{self, HeaderRules};
use super::{Rejection, Secret};

/// Why an ID token was refused. The variants are the reason codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed or its algorithm is not allowed: {0:?}")]
    Header(Rejection),
    #[error("the ID token's signature does not verify")]
    BadSignature,
    #[error("the ID token's keys are unavailable")]
    KeysUnavailable,
    #[error("the ID token names another issuer")]
    WrongIssuer,
    #[error("the ID token is for another client")]
    WrongAudience,
    #[error("the ID token has expired or was issued at an unlikely time")]
    Time,
    #[error("the ID token's nonce does not match")]
    WrongNonce,
    #[error("the ID token has no subject")]
    NoSubject,
}

/// The endpoints a sign-in needs.
#[derive(Debug, Clone)]
pub struct ProviderEndpoints {
    pub authorization: Url,
    pub token: Url,
    pub userinfo: Option<Url>,
    /// RFC 9207 support: the callback must then carry `iss`.
    pub iss_parameter_supported: bool,
}

/// An upstream OpenID provider. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    issuer: String,
    client_id: String,
    client_secret: Secret,
    keys: Arc<IssuerKeys>,
    http: HttpClient,
}

/// Largest token or UserInfo response read.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

impl OidcProvider {
    pub fn new(
        issuer: String,
        client_id: String,
        client_secret: Secret,
        http: HttpClient,
    ) -> OidcProvider {
        let keys = Arc::new(IssuerKeys::new(
            issuer.clone(),
            KeySource::Discover,
            CachePolicy::default(),
            Some(http.clone()),
        ));
        OidcProvider {
            issuer,
            client_id,
            client_secret,
            keys,
            http,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The provider's endpoints, discovered once (and again after a failure).
    pub async fn endpoints(&self) -> Result<ProviderEndpoints, String> {
        let m = self.keys.metadata().await.map_err(|e| e.to_string())?;
        let need = |u: &Option<Url>, field: &str| {
            u.clone()
                .ok_or_else(|| format!("the metadata of {} has no {field}", self.issuer))
        };
        Ok(ProviderEndpoints {
            authorization: need(&m.authorization_endpoint, "authorization_endpoint")?,
            token: need(&m.token_endpoint, "token_endpoint")?,
            userinfo: m.userinfo_endpoint.clone(),
            iss_parameter_supported: m.iss_parameter_supported,
        })
    }

    /// Loads metadata and keys ahead of the first sign-in.
    pub async fn warm_up(&self) {
        match self.keys.refresh().await {
            Ok(()) => tracing::info!(issuer = %self.issuer, "sign-in provider ready"),
            Err(e) => {
                tracing::error!(issuer = %self.issuer, error = %e, "cannot reach the sign-in provider; sign-in fails until it answers")
            }
        }
    }

    /// Redeems the provider's authorization code (client_secret_basic, PKCE).
    pub async fn exchange_code(
        &self,
        token_endpoint: &Url,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Map<String, Value>, FetchError> {
        self.http
            .post_form(
                token_endpoint,
                &self.client_id,
                &self.client_secret,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier),
                ],
                MAX_RESPONSE_BYTES,
            )
            .await
    }

    /// The UserInfo claims for an upstream access token.
    pub async fn userinfo(
        &self,
        endpoint: &Url,
        access_token: &str,
    ) -> Result<Map<String, Value>, FetchError> {
        self.http
            .get_json_bearer(endpoint, access_token, MAX_RESPONSE_BYTES)
            .await
    }

    /// Validates an ID token for our client and `nonce` at `now` (seconds).
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
        now: f64,
        leeway: Duration,
    ) -> Result<Map<String, Value>, IdTokenError> {
        let parts = jwt::split(token).ok_or(IdTokenError::Header(Rejection::MalformedToken))?;
        // ID tokens are typed `JWT` or not at all; never HMAC (our secret is not a key).
        let header = jwt::parse_header(
            parts.header,
            HeaderRules {
                hmac: false,
                untyped: true,
            },
        )
        .map_err(IdTokenError::Header)?;
        let claims = jwt::decode_json(parts.payload).map_err(IdTokenError::Header)?;
        let candidates = self
            .keys
            .candidates(header.kid.as_deref(), header.alg)
            .await
            .map_err(|r| match r {
                Rejection::IssuerUnavailable => IdTokenError::KeysUnavailable,
                _ => IdTokenError::BadSignature,
            })?;
        let verified = candidates.iter().any(|k| {
            jsonwebtoken::crypto::verify(
                parts.signature,
                parts.signing_input.as_bytes(),
                &k.key,
                header.alg,
            )
            .unwrap_or(false)
        });
        if !verified {
            return Err(IdTokenError::BadSignature);
        }
        check_id_claims(&claims, &self.issuer, &self.client_id, nonce, now, leeway)?;
        Ok(claims)
    }
}

/// The claim checks of OpenID Connect Core §3.1.3.7 (after the signature).
pub fn check_id_claims(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: f64,
    leeway: Duration,
) -> Result<(), IdTokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(IdTokenError::WrongIssuer);
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&client_id) {
        return Err(IdTokenError::WrongAudience);
    }
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => return Err(IdTokenError::WrongAudience),
        None if audiences.len() > 1 => return Err(IdTokenError::WrongAudience),
        _ => {}
    }
    let leeway = leeway.as_secs_f64();
    let exp = claims.get("exp").and_then(Value::as_f64);
    let iat = claims.get("iat").and_then(Value::as_f64);
    match (exp, iat) {
        (Some(exp), Some(iat))
            if exp > now - leeway && iat <= now + leeway && iat >= now - 600.0 => {}
        _ => return Err(IdTokenError::Time),
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(IdTokenError::WrongNonce);
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(()),
        _ => Err(IdTokenError::NoSubject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_token_claims_are_checked() {
        let now = 1_000_000.0;
        let good = json!({"iss": "https://idp", "aud": "warden", "exp": now + 60.0,
            "iat": now, "nonce": "n1", "sub": "alice"});
        let check = |v: &Value| {
            check_id_claims(
                v.as_object().unwrap(),
                "https://idp",
                "warden",
                "n1",
                now,
                Duration::from_secs(30),
            )
        };
        assert_eq!(check(&good), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = good.as_object().unwrap().clone();
            c.insert(k.into(), v);
            check(&Value::Object(c))
        };
        assert_eq!(
            with("iss", json!("https://other")),
            Err(IdTokenError::WrongIssuer)
        );
        assert_eq!(
            with("aud", json!("someone")),
            Err(IdTokenError::WrongAudience)
        );
        assert_eq!(
            with("aud", json!(["warden", "other"])),
            Err(IdTokenError::WrongAudience)
        );
        assert_eq!(
            with("azp", json!("other")),
            Err(IdTokenError::WrongAudience)
        );
        assert_eq!(with("exp", json!(now - 60.0)), Err(IdTokenError::Time));
        assert_eq!(with("iat", json!(now + 120.0)), Err(IdTokenError::Time));
        assert_eq!(with("iat", json!(now - 3600.0)), Err(IdTokenError::Time));
        assert_eq!(with("nonce", json!("n2")), Err(IdTokenError::WrongNonce));
        assert_eq!(with("sub", json!("")), Err(IdTokenError::NoSubject));
        let mut multi = good.as_object().unwrap().clone();
        multi.insert("aud".into(), json!(["warden", "other"]));
        multi.insert("azp".into(), json!("warden"));
        assert_eq!(check(&Value::Object(multi)), Ok(()));
    }

    #[test]
    fn unsigned_and_hmac_id_tokens_are_refused_before_any_key_lookup() {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        for alg in ["none", "HS256"] {
            let token = format!(
                "{}.{}.c2ln",
                b64(json!({"alg": alg})),
                b64(json!({"sub": "x"}))
            );
            let parts = jwt::split(&token).unwrap();
            assert!(
                jwt::parse_header(
                    parts.header,
                    HeaderRules {
                        hmac: false,
                        untyped: true
                    }
                )
                .is_err(),
                "{alg}"
            );
        }
    }
}
