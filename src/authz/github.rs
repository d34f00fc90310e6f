//! Sign-in through GitHub (`--login-provider github`): OAuth 2.0 with PKCE at its web
//! origin, then its REST API for who the user is. GitHub has no OpenID Connect for users,
//! so the identity comes from `/user` (the stable numeric id is the subject), the address
//! from `/user/emails` (the primary one, counted only when GitHub says it is verified), and
//! groups from `/user/orgs` and `/user/teams` (`org` and `org/team`) when the granted scopes
//! include `read:org`. GitHub Enterprise Server: the same paths under its own web URL and
//! `https://HOST/api/v3`.
//!
//! GitHub's token never leaves this module: it is used for these calls and dropped.

use std::time::Duration;

use serde_json::{Map, Value, json};
use url::Url;

use crate::auth::Secret;

/// Largest answer read from GitHub.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Organizations and teams asked for (one page).
const PAGE: &str = "100";

/// Why a GitHub sign-in failed (never carrying a token).
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("cannot reach {0}")]
    Network(String),
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("GitHub refused the code: {0}")]
    Refused(String),
    #[error("unexpected answer from {0}")]
    Malformed(String),
}

/// GitHub (or a GitHub Enterprise Server) as the sign-in provider.
#[derive(Debug)]
pub struct GitHub {
    web: Url,
    api: Url,
    client_id: String,
    client_secret: Secret,
    scopes: String,
    http: reqwest::Client,
}

impl GitHub {
    /// `web`: where users sign in (`https://github.com`); `api`: the REST API
    /// (`https://api.github.com`).
    pub fn new(
        web: Url,
        api: Url,
        client_id: String,
        client_secret: Secret,
        scopes: &[String],
        ca_pem: Option<&[u8]>,
    ) -> Result<GitHub, String> {
        let tls = crate::auth::fetch::client_tls_config(ca_pem)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            // GitHub's API refuses requests without one.
            .user_agent(concat!("mcp-warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(GitHub {
            web,
            api,
            client_id,
            client_secret,
            scopes: scopes.join(" "),
            http,
        })
    }

    /// The identity-provider identifier principals carry (`iss` of the user): the web
    /// origin, without a trailing slash.
    pub fn issuer(&self) -> String {
        self.web.as_str().trim_end_matches('/').to_owned()
    }

    fn endpoint(base: &Url, path: &str) -> Result<Url, GitHubError> {
        let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
        Url::parse(&joined).map_err(|_| GitHubError::Malformed(joined))
    }

    /// Where the browser goes to sign in.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
    ) -> Result<Url, GitHubError> {
        let mut url = Self::endpoint(&self.web, "/login/oauth/authorize")?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.scopes)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false");
        Ok(url)
    }

    /// Redeems the code and reads who signed in: (subject, claims).
    pub async fn sign_in(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<(String, Map<String, Value>), GitHubError> {
        let token_url = Self::endpoint(&self.web, "/login/oauth/access_token")?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret.expose_str())
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let response = self
            .http
            .post(token_url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| GitHubError::Network(token_url.to_string()))?;
        let answer = read(&token_url, response).await?;
        // GitHub answers refusals with 200 and an `error` member.
        if let Some(e) = answer.get("error").and_then(Value::as_str) {
            return Err(GitHubError::Refused(e.chars().take(64).collect()));
        }
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| GitHubError::Malformed(token_url.to_string()))?
            .to_owned();
        let granted: Vec<String> = answer
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("")
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        drop(answer);
        let user = self.api_get(&token, "/user").await?;
        let id = match user.get("id") {
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            _ => return Err(GitHubError::Malformed("/user".into())),
        };
        let mut claims = Map::new();
        if let Some(login) = user.get("login").and_then(Value::as_str) {
            claims.insert("preferred_username".into(), json!(login));
        }
        if let Some(name) = user.get("name").and_then(Value::as_str) {
            claims.insert("name".into(), json!(name));
        }
        // The primary address; verified only if GitHub says so (a profile's public
        // `email` is self-asserted and is not used).
        if let Ok(Value::Array(emails)) = self.api_get(&token, "/user/emails").await
            && let Some(primary) = emails
                .iter()
                .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            && let Some(address) = primary.get("email").and_then(Value::as_str)
        {
            claims.insert("email".into(), json!(address));
            claims.insert(
                "email_verified".into(),
                json!(primary.get("verified") == Some(&Value::Bool(true))),
            );
        }
        let mut groups = Vec::new();
        if granted.iter().any(|s| s.ends_with(":org")) {
            // Without them the user just has no groups: an allow rule on groups fails closed.
            match self.api_get(&token, "/user/orgs").await {
                Ok(Value::Array(orgs)) => groups.extend(
                    orgs.iter()
                        .filter_map(|o| o.get("login").and_then(Value::as_str))
                        .map(str::to_owned),
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the user's organizations"),
            }
            match self.api_get(&token, "/user/teams").await {
                Ok(Value::Array(teams)) => groups.extend(teams.iter().filter_map(|t| {
                    let org = t.get("organization")?.get("login")?.as_str()?;
                    let slug = t.get("slug")?.as_str()?;
                    Some(format!("{org}/{slug}"))
                })),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the user's teams"),
            }
        }
        claims.insert("groups".into(), json!(groups));
        Ok((id, claims))
    }

    async fn api_get(&self, token: &str, path: &str) -> Result<Value, GitHubError> {
        let mut url = Self::endpoint(&self.api, path)?;
        if path != "/user" {
            url.query_pairs_mut().append_pair("per_page", PAGE);
        }
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|_| GitHubError::Network(url.to_string()))?;
        read(&url, response).await
    }
}

/// A JSON answer of at most [`MAX_RESPONSE_BYTES`].
async fn read(url: &Url, mut response: reqwest::Response) -> Result<Value, GitHubError> {
    let status = response.status().as_u16();
    if status != 200 {
        return Err(GitHubError::Status {
            url: url.to_string(),
            status,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| GitHubError::Network(url.to_string()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(GitHubError::Malformed(url.to_string()));
        }
    }
    serde_json::from_slice(&body).map_err(|_| GitHubError::Malformed(url.to_string()))
}
