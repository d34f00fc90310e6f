//! RFC 8693 token exchange at the issuer's token endpoint, authenticated with the sidecar's
//! own client credentials: the caller's access token is the subject token, and the issued
//! token is what the session's server gets (`--env-exchange`). With several issuers, each
//! token goes to the issuer that issued it (the principal's): only that one can vouch for
//! it, and the caller's token never leaves the sidecar except to its own issuer.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::Secret;
use super::fetch::{FetchError, HttpClient};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Largest token response accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why an exchange failed. Messages name the endpoint and the issuer's error code, never a
/// token or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the token response of {0} has no access_token")]
    NoToken(String),
    #[error("the token response of {0} issued a {1:?}, not an access token")]
    WrongType(String, String),
    #[error("cannot discover the token endpoint: {0}")]
    Discovery(String),
    #[error("the metadata of {0} has no token_endpoint; set --exchange-token-endpoint")]
    NoEndpoint(String),
    #[error("tokens of {0} cannot be exchanged: it is not a configured --issuer")]
    UnknownIssuer(String),
}

/// A token obtained by exchange.
#[derive(Debug, Clone)]
pub struct Exchanged {
    pub access_token: Secret,
    pub expires_in: Option<Duration>,
}

/// How the sidecar exchanges tokens: validated configuration, no connection yet.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// The issuers whose tokens may be exchanged (each at its own token endpoint).
    pub issuers: Vec<String>,
    /// The token endpoint, when there is exactly one issuer and its metadata is not asked.
    pub endpoint: Option<Url>,
    pub client_id: String,
    pub client_secret: Secret,
    /// PEM certificates trusted besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// Exchanges tokens at the token endpoint of the issuer that issued them (configured, or
/// discovered from that issuer's metadata at its first exchange).
#[derive(Debug)]
pub struct TokenExchangeClient {
    http: HttpClient,
    /// Each issuer we exchange at, and its token endpoint once known.
    issuers: Vec<(String, tokio::sync::OnceCell<Url>)>,
    client_id: String,
    client_secret: Secret,
}

impl TokenExchangeClient {
    /// `endpoint`: the token endpoint, when there is exactly one issuer and its metadata is
    /// not to be asked.
    pub fn new(
        http: HttpClient,
        issuers: Vec<String>,
        endpoint: Option<Url>,
        client_id: String,
        client_secret: Secret,
    ) -> Self {
        let endpoint = endpoint.filter(|_| issuers.len() == 1);
        TokenExchangeClient {
            http,
            issuers: issuers
                .into_iter()
                .map(|i| (i, tokio::sync::OnceCell::new_with(endpoint.clone())))
                .collect(),
            client_id,
            client_secret,
        }
    }

    /// The client of `settings`, with its own HTTP client.
    pub fn from_settings(settings: &ExchangeSettings) -> Result<Self, String> {
        let http = HttpClient::new(settings.ca_pem.as_deref(), settings.timeout)?;
        Ok(TokenExchangeClient::new(
            http,
            settings.issuers.clone(),
            settings.endpoint.clone(),
            settings.client_id.clone(),
            settings.client_secret.clone(),
        ))
    }

    async fn endpoint(&self, issuer: &str) -> Result<&Url, ExchangeError> {
        let (issuer, endpoint) = self
            .issuers
            .iter()
            .find(|(i, _)| i == issuer)
            .ok_or_else(|| ExchangeError::UnknownIssuer(issuer.to_owned()))?;
        endpoint
            .get_or_try_init(|| async {
                super::discovery::discover(&self.http, issuer)
                    .await
                    .map_err(|e| ExchangeError::Discovery(e.to_string()))?
                    .token_endpoint
                    .ok_or_else(|| ExchangeError::NoEndpoint(issuer.clone()))
            })
            .await
    }

    /// Exchanges `subject_token`, issued by `issuer`, at that issuer. `target` names the
    /// service the token is for: sent as `resource` when it is an absolute URI (RFC 8693
    /// §2.1, RFC 8707), else as `audience`.
    pub async fn exchange(
        &self,
        issuer: &str,
        subject_token: &str,
        target: &str,
        scopes: &[String],
    ) -> Result<Exchanged, ExchangeError> {
        let endpoint = self.endpoint(issuer).await?;
        let form = request_form(subject_token, target, scopes);
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = self
            .http
            .post_form(
                endpoint,
                &self.client_id,
                &self.client_secret,
                &pairs,
                MAX_RESPONSE_BYTES,
            )
            .await?;
        parse_response(endpoint.as_str(), &body)
    }
}

/// The form of an exchange request (RFC 8693 §2.1).
pub fn request_form(
    subject_token: &str,
    target: &str,
    scopes: &[String],
) -> Vec<(&'static str, String)> {
    let mut form = vec![
        ("grant_type", GRANT_TYPE.to_owned()),
        ("subject_token", subject_token.to_owned()),
        ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
    ];
    let is_uri = Url::parse(target).is_ok_and(|u| u.has_host());
    form.push((
        if is_uri { "resource" } else { "audience" },
        target.to_owned(),
    ));
    if !scopes.is_empty() {
        form.push(("scope", scopes.join(" ")));
    }
    form
}

/// Reads a successful exchange response (RFC 8693 §2.2.1).
pub fn parse_response(
    endpoint: &str,
    body: &serde_json::Map<String, Value>,
) -> Result<Exchanged, ExchangeError> {
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ExchangeError::NoToken(endpoint.to_owned()))?;
    if let Some(t) = body.get("issued_token_type").and_then(Value::as_str)
        && t != ACCESS_TOKEN_TYPE
    {
        return Err(ExchangeError::WrongType(endpoint.to_owned(), t.to_owned()));
    }
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    Ok(Exchanged {
        access_token: Secret::new(token),
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_request_is_an_rfc8693_token_exchange() {
        let form = request_form(
            "caller-token",
            "https://api.example/mcp",
            &["read".into(), "write".into()],
        );
        let get = |k: &str| form.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some(GRANT_TYPE));
        assert_eq!(get("subject_token"), Some("caller-token"));
        assert_eq!(get("subject_token_type"), Some(ACCESS_TOKEN_TYPE));
        assert_eq!(get("requested_token_type"), Some(ACCESS_TOKEN_TYPE));
        assert_eq!(get("resource"), Some("https://api.example/mcp"));
        assert_eq!(get("audience"), None);
        assert_eq!(get("scope"), Some("read write"));
        // A logical name is an audience, not a resource; no scope means none sent.
        let form = request_form("t", "billing-api", &[]);
        assert!(form.contains(&("audience", "billing-api".to_owned())));
        assert!(!form.iter().any(|(k, _)| *k == "scope" || *k == "resource"));
    }

    #[test]
    fn responses_are_checked() {
        let ok = json!({"access_token": "issued", "issued_token_type": ACCESS_TOKEN_TYPE,
                        "token_type": "Bearer", "expires_in": 3600});
        let t = parse_response("e", ok.as_object().unwrap()).unwrap();
        assert_eq!(t.access_token.expose(), b"issued");
        assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
        let refresh = json!({"access_token": "x", "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"});
        assert!(matches!(
            parse_response("e", refresh.as_object().unwrap()),
            Err(ExchangeError::WrongType(..))
        ));
        assert!(matches!(
            parse_response("e", json!({}).as_object().unwrap()),
            Err(ExchangeError::NoToken(_))
        ));
        // Errors never carry the token.
        let e = parse_response(
            "https://as/token",
            json!({"access_token": ""}).as_object().unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("https://as/token"));
    }
}
