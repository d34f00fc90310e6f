//! Connecting an account, in the browser: the link a session's -32042 named leads to the
//! provider's authorization code flow (PKCE S256, a `state` of ours), and its answer to
//! sealed tokens in the store.
//!
//! Who completes it: the link is signed for one user and one connection
//! ([`Connections::connect_url`]); the browser must be signed in at our sign-in server as
//! that user; the flow is bound to that browser (its cookie) and its state opens once. A
//! link that leaked is useless to anyone else, and nobody can attach their provider account
//! to another user's server.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{ConnectionConfig, Connections, Provider, Tokens};
use crate::authz::rules::{self, Params};
use crate::authz::{
    AuthorizationServer, AuthzError, Browser, FLOW_TTL_SECS, Reason, Reply, new_secret, s256,
    unix_now,
};
use crate::store::{FlowRecord, FlowStep};

/// The flow kinds in the flows table: the provider leg, and the confirmation page before it.
const KIND: &str = "connect";
const CONFIRM_KIND: &str = "connect-confirm";
/// The path of the provider's redirect back to us, under the issuer.
pub const CALLBACK_PATH: &str = "/connections/callback";
/// Largest provider answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a connect flow remembers until the callback.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    connection: String,
    user: String,
    /// The sign-in to go on with afterwards (its flow id), when the user connects right
    /// after signing in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    then: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Secrets {
    verifier: String,
}

/// A provider's endpoints.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: Url,
    pub token: Url,
    pub revocation: Option<Url>,
}

fn refuse(status: u16, reason: Reason) -> AuthzError {
    AuthorizationServer::refuse(status, reason)
}

impl Connections {
    /// `GET /connections/{name}/connect?link=…`: checks the link and the browser, then asks
    /// the user to confirm (a page whose form leads to the provider): a page of another site
    /// that has the link cannot connect the user's account without them.
    pub async fn connect_page(
        &self,
        srv: &AuthorizationServer,
        name: &str,
        query: &[u8],
        browser: Browser<'_>,
    ) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let config = self
            .config(name)
            .ok_or(refuse(404, Reason::ConnectLinkInvalid))?;
        let p = Params::parse(query);
        let user = p
            .get("link")
            .and_then(|l| self.link_user(l, name, now))
            .ok_or(refuse(400, Reason::ConnectLinkInvalid))?;
        let cookie = self.signed_in_as(srv, browser, &user, name).await?;
        // Right after signing in: the sign-in must be this user's, waiting in this browser;
        // "Not now" leads back to its client.
        let then = p.get("then");
        let client_origin = match then {
            Some(then) => Some(srv.waiting_client_origin(then, browser, &user).await?),
            None => None,
        };
        let endpoints = match (self.endpoints(config).await, then) {
            (Ok(e), _) => e,
            (Err(e), then) => {
                tracing::warn!(connection = name, error = %e, "the provider's endpoints are unavailable");
                if let Some(then) = then {
                    // The sign-in goes on without the connection (the session asks later).
                    return srv.resume_sign_in(then, browser, &user, false).await;
                }
                return Err(refuse(502, Reason::ConnectionFailed));
            }
        };
        let flow = new_secret("")?;
        let csrf = new_secret("")?;
        self.store
            .put_flow(&FlowRecord {
                flow_hash: rules::hash(&flow),
                kind: CONFIRM_KIND.into(),
                step: FlowStep::Consent,
                browser_hash: rules::hash(cookie),
                csrf_hash: Some(rules::hash(&csrf)),
                upstream_state_hash: None,
                upstream_secrets: None,
                request: serde_json::to_value(Pending {
                    connection: name.to_owned(),
                    user: user.clone(),
                    then: then.map(str::to_owned),
                })
                .unwrap_or(Value::Null),
                user_id: Some(user.clone()),
                created_at: now,
                expires_at: now + FLOW_TTL_SECS,
            })
            .await?;
        let provider = endpoints
            .authorization
            .host_str()
            .unwrap_or_default()
            .to_owned();
        // The page's form leads to the provider, or ("Not now") to the client.
        let mut targets = endpoints.authorization.origin().ascii_serialization();
        if let Some(client) = &client_origin {
            targets.push(' ');
            targets.push_str(client);
        }
        Ok(Reply::page(srv.connect_page(
            &user,
            name,
            &provider,
            &config.scopes,
            &flow,
            &csrf,
            targets,
            client_origin.is_some(),
        )))
    }

    /// `POST /connections/{name}/connect`: the user confirmed on the page (same origin, its
    /// CSRF token, the browser it was shown in, still signed in as that user); the browser
    /// goes to the provider.
    pub async fn connect(
        &self,
        srv: &AuthorizationServer,
        name: &str,
        body: &[u8],
        browser: Browser<'_>,
    ) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let (_, flow) = srv
            .posted_flow(&form, browser, CONFIRM_KIND, FlowStep::Consent, now)
            .await?;
        // Once: a second post of the page starts nothing.
        if !self
            .store
            .finish_flow(&flow.flow_hash, FlowStep::Consent)
            .await?
        {
            return Err(refuse(400, Reason::AlreadyUsed));
        }
        let pending: Pending = serde_json::from_value(flow.request.clone())
            .map_err(|_| refuse(400, Reason::FlowExpired))?;
        if pending.connection != name {
            return Err(refuse(400, Reason::FlowExpired));
        }
        let cookie = self.signed_in_as(srv, browser, &pending.user, name).await?;
        let later = form.iter().any(|(k, v)| k == "decision" && v == "later");
        if let (true, Some(then)) = (later, &pending.then) {
            // Not now: on with the sign-in, without this connection.
            return srv
                .resume_sign_in(then, browser, &pending.user, false)
                .await;
        }
        let config = self
            .config(name)
            .ok_or(refuse(404, Reason::ConnectLinkInvalid))?;
        let endpoints = self.endpoints(config).await.map_err(|e| {
            tracing::warn!(connection = name, error = %e, "the provider's endpoints are unavailable");
            refuse(502, Reason::ConnectionFailed)
        })?;
        let state = new_secret("")?;
        let verifier = new_secret("")?;
        let challenge = s256(&verifier);
        self.store
            .put_flow(&FlowRecord {
                flow_hash: rules::hash(&new_secret("")?),
                kind: KIND.into(),
                step: FlowStep::Upstream,
                browser_hash: rules::hash(cookie),
                csrf_hash: None,
                upstream_state_hash: Some(rules::hash(&state)),
                upstream_secrets: serde_json::to_string(&Secrets { verifier }).ok(),
                request: serde_json::to_value(&pending).unwrap_or(Value::Null),
                user_id: Some(pending.user.clone()),
                created_at: now,
                expires_at: now + FLOW_TTL_SECS,
            })
            .await?;
        let mut url = endpoints.authorization;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", &srv.url(CALLBACK_PATH))
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        if !config.scopes.is_empty() {
            url.query_pairs_mut()
                .append_pair("scope", &config.scopes.join(" "));
        }
        url.query_pairs_mut()
            .extend_pairs(config.authorization_params.iter());
        if config.scopes.iter().any(|s| s == "offline_access")
            && !config
                .authorization_params
                .iter()
                .any(|(k, _)| k == "prompt")
        {
            // OpenID Connect Core §11: a refresh token is granted only with consent asked.
            url.query_pairs_mut().append_pair("prompt", "consent");
        }
        Ok(Reply::redirect(url.to_string()))
    }

    /// The browser's binding cookie, when it is signed in here as `user`; else the refusal.
    async fn signed_in_as<'b>(
        &self,
        srv: &AuthorizationServer,
        browser: Browser<'b>,
        user: &str,
        name: &str,
    ) -> Result<&'b str, AuthzError> {
        let (Some(cookie), Some(signed_in)) = (browser.cookie, srv.browser_user(browser).await?)
        else {
            return Err(refuse(403, Reason::NotSignedIn));
        };
        if signed_in != user {
            tracing::warn!(
                connection = name,
                reason = "other_user",
                "a connect link was used in a browser signed in as another user"
            );
            return Err(refuse(403, Reason::OtherUser));
        }
        Ok(cookie)
    }

    /// `GET /connections/callback`: the provider's answer, in the browser that started the
    /// flow and is still signed in as its user.
    pub async fn callback(
        &self,
        srv: &AuthorizationServer,
        query: &[u8],
        browser: Browser<'_>,
    ) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let p = Params::parse(query);
        let flow = srv.claim_upstream(&p, browser, KIND, now).await?;
        let _ = self
            .store
            .finish_flow(&flow.flow_hash, FlowStep::Callback)
            .await;
        let pending: Pending = serde_json::from_value(flow.request.clone())
            .map_err(|_| refuse(400, Reason::StateMismatch))?;
        if srv.browser_user(browser).await?.as_deref() != Some(pending.user.as_str()) {
            return Err(refuse(403, Reason::OtherUser));
        }
        let connected = self.provider_leg(srv, &p, &flow, &pending, now).await;
        match (connected, &pending.then) {
            // Connected right after signing in: on with the sign-in.
            (Ok(_), Some(then)) => srv.resume_sign_in(then, browser, &pending.user, true).await,
            (Ok(scopes), None) => Ok(Reply::page(
                srv.connected_page(&pending.connection, &scopes),
            )),
            // Right after signing in, a provider that fails does not keep the user from the
            // client: the sign-in goes on, and the session asks for the connection later.
            (Err(_), Some(then)) => {
                srv.resume_sign_in(then, browser, &pending.user, false)
                    .await
            }
            (Err(e), None) => Err(e),
        }
    }

    /// The provider's answer for a claimed connect flow: its code redeemed and the tokens
    /// stored; the scopes granted.
    async fn provider_leg(
        &self,
        srv: &AuthorizationServer,
        p: &Params,
        flow: &FlowRecord,
        pending: &Pending,
        now: i64,
    ) -> Result<Vec<String>, AuthzError> {
        let config = self
            .config(&pending.connection)
            .ok_or(refuse(400, Reason::ConnectLinkInvalid))?;
        // RFC 9207: an answer naming another issuer is another provider's (a mix-up).
        if let (Provider::Issuer(issuer), Some(iss)) = (&config.provider, p.get("iss"))
            && iss != issuer
        {
            tracing::warn!(connection = %pending.connection, reason = "issuer_mismatch", "a provider answer named another issuer");
            return Err(refuse(400, Reason::IssuerMismatch));
        }
        if p.get("error").is_some() {
            // The provider's own text stays out of the page.
            tracing::info!(connection = %pending.connection, "the provider did not grant the connection");
            return Err(refuse(400, Reason::ConnectionFailed));
        }
        let code = p.get("code").ok_or(refuse(400, Reason::ConnectionFailed))?;
        let secrets: Secrets = flow
            .upstream_secrets
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or(refuse(400, Reason::StateMismatch))?;
        let endpoints = self.endpoints(config).await.map_err(|e| {
            tracing::warn!(connection = %pending.connection, error = %e, "the provider's endpoints are unavailable");
            refuse(502, Reason::ConnectionFailed)
        })?;
        let answer = self
            .redeem(config, &endpoints.token, code, &srv.url(CALLBACK_PATH), &secrets.verifier)
            .await
            .map_err(|e| {
                tracing::warn!(connection = %pending.connection, error = %e, "the provider refused its code");
                refuse(502, Reason::ConnectionFailed)
            })?;
        let Some(tokens) = super::tokens_of(&answer, None) else {
            tracing::warn!(connection = %pending.connection, "the provider's answer has no usable access token");
            return Err(refuse(502, Reason::ConnectionFailed));
        };
        // The scopes granted, when the provider says (RFC 6749 §5.1), else those asked for;
        // only what a scope may hold (they are shown and listed).
        let scopes: Vec<String> = match answer.get("scope").and_then(Value::as_str) {
            Some(s) => s
                .split([' ', ','])
                .filter(|s| !s.is_empty() && s.len() <= 256)
                .filter(|s| s.bytes().all(|b| (0x21..=0x7e).contains(&b)))
                .map(str::to_owned)
                .collect(),
            None => config.scopes.clone(),
        };
        let expires_at = super::expires_at(&answer, now);
        self.store_tokens(
            &pending.user,
            &pending.connection,
            &tokens,
            scopes.clone(),
            expires_at,
            now,
        )
        .await
        .map_err(|e| {
            tracing::error!(connection = %pending.connection, error = %e, "cannot store a connection");
            refuse(500, Reason::ConnectionFailed)
        })?;
        tracing::info!(connection = %pending.connection, "a user connected an account");
        self.record(&pending.user, &pending.connection, "connected");
        Ok(scopes)
    }

    /// Where the provider of `config` authorizes and issues tokens. Discovered endpoints
    /// must be https (http only to this machine), as configured ones are.
    pub async fn endpoints(&self, config: &ConnectionConfig) -> Result<Endpoints, String> {
        let configured =
            |u: &str| Url::parse(u).map_err(|_| "a configured URL is invalid".to_owned());
        match &config.provider {
            Provider::GitHub => Ok(Endpoints {
                authorization: configured("https://github.com/login/oauth/authorize")?,
                token: configured("https://github.com/login/oauth/access_token")?,
                revocation: None,
            }),
            Provider::Endpoints {
                authorization,
                token,
                revocation,
            } => Ok(Endpoints {
                authorization: configured(authorization)?,
                token: configured(token)?,
                revocation: revocation.as_deref().map(configured).transpose()?,
            }),
            Provider::Issuer(issuer) => {
                // RFC 8414 first, then OpenID discovery; the document must name the issuer
                // exactly as configured.
                let base = issuer.trim_end_matches('/');
                let mut last = String::new();
                for well_known in [
                    "/.well-known/oauth-authorization-server",
                    "/.well-known/openid-configuration",
                ] {
                    let url = configured(&format!("{base}{well_known}"))?;
                    match self.http.get_json(&url, MAX_ANSWER_BYTES).await {
                        Ok(doc) => {
                            let body = doc.body;
                            if body.get("issuer").and_then(Value::as_str) != Some(issuer) {
                                return Err(format!("{url} names another issuer"));
                            }
                            // The provider's own text stays out of errors (and logs).
                            let field = |k: &str| -> Result<Url, String> {
                                body.get(k)
                                    .and_then(Value::as_str)
                                    .and_then(|u| Url::parse(u).ok())
                                    .filter(crate::auth::fetch::is_secure_endpoint)
                                    .ok_or_else(|| {
                                        format!("{url}: {k} is missing, invalid or not https")
                                    })
                            };
                            return Ok(Endpoints {
                                authorization: field("authorization_endpoint")?,
                                token: field("token_endpoint")?,
                                revocation: field("revocation_endpoint").ok(),
                            });
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(last)
            }
        }
    }

    /// Redeems the provider's code.
    async fn redeem(
        &self,
        config: &ConnectionConfig,
        token: &Url,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<serde_json::Map<String, Value>, String> {
        self.token_request(
            config,
            token,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// A request to the provider's token endpoint: client authentication by HTTP Basic
    /// (RFC 6749 §2.3.1), or, at GitHub, in the form as it documents.
    pub(super) async fn token_request(
        &self,
        config: &ConnectionConfig,
        token: &Url,
        form: &[(&str, &str)],
    ) -> Result<serde_json::Map<String, Value>, crate::auth::fetch::FetchError> {
        let secret = &config.client_secret;
        if config.provider == Provider::GitHub {
            let in_form = secret.expose_str();
            let mut form = form.to_vec();
            form.push(("client_id", &config.client_id));
            form.push(("client_secret", &in_form));
            return self
                .http
                .post_form_public(token, &form, MAX_ANSWER_BYTES)
                .await;
        }
        self.http
            .post_form(token, &config.client_id, secret, form, MAX_ANSWER_BYTES)
            .await
    }
}

/// A connection revoked: whose, which, and the token its user's sessions were given (to end
/// them).
pub struct Revoked {
    pub user: String,
    pub connection: String,
    pub access_token: crate::secret::Secret,
}

impl std::fmt::Debug for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revoked")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// The flow kind of a connections page (its revoke forms).
const PAGE_KIND: &str = "connections";

impl Connections {
    /// `GET /connections`: the signed-in user's connections, each with a revoke form.
    pub async fn page(
        &self,
        srv: &AuthorizationServer,
        browser: Browser<'_>,
    ) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let (Some(cookie), Some(user)) = (browser.cookie, srv.browser_user(browser).await?) else {
            return Err(refuse(403, Reason::NotSignedIn));
        };
        let flow = new_secret("")?;
        let csrf = new_secret("")?;
        self.store
            .put_flow(&FlowRecord {
                flow_hash: rules::hash(&flow),
                kind: PAGE_KIND.into(),
                step: FlowStep::Consent,
                browser_hash: rules::hash(cookie),
                csrf_hash: Some(rules::hash(&csrf)),
                upstream_state_hash: None,
                upstream_secrets: None,
                request: Value::Null,
                user_id: Some(user.clone()),
                created_at: now,
                expires_at: now + FLOW_TTL_SECS,
            })
            .await?;
        let stored = self.store.connections(Some(&user)).await?;
        let rows = self
            .configs
            .iter()
            .map(|c| {
                let record = stored.iter().find(|r| r.name == c.name);
                let provider = match &c.provider {
                    Provider::GitHub => "GitHub".to_owned(),
                    Provider::Issuer(i) => host_of(i),
                    Provider::Endpoints { authorization, .. } => host_of(authorization),
                };
                let ago = |t: Option<i64>| t.map_or("never".to_owned(), |t| web_age(now - t));
                crate::authz::web::ConnectionRow {
                    name: c.name.clone(),
                    provider,
                    scopes: record.map_or_else(Vec::new, |r| r.scopes.clone()),
                    granted: record.map_or("—".to_owned(), |r| web_age(now - r.granted_at)),
                    last_used: record.map_or("—".to_owned(), |r| ago(r.last_used_at)),
                    state: match record.map(|r| r.state) {
                        Some(crate::store::ConnectionState::Active) => "connected",
                        Some(crate::store::ConnectionState::NeedsConsent) => {
                            "needs connecting again"
                        }
                        None => "not connected",
                    },
                    revocable: record.is_some(),
                }
            })
            .collect();
        Ok(Reply::page(srv.connections_page(&user, &flow, &csrf, rows)))
    }

    /// `POST /connections/revoke`: from the user's own connections page (same origin, its
    /// CSRF token, the browser that was shown it, still signed in as that user).
    pub async fn revoke_posted(
        &self,
        srv: &AuthorizationServer,
        body: &[u8],
        browser: Browser<'_>,
    ) -> Result<(Reply, Option<Revoked>), AuthzError> {
        let now = unix_now();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let (_, flow) = srv
            .posted_flow(&form, browser, PAGE_KIND, FlowStep::Consent, now)
            .await?;
        let user = flow.user_id.clone().unwrap_or_default();
        if srv.browser_user(browser).await?.as_deref() != Some(user.as_str()) {
            return Err(refuse(403, Reason::NotSignedIn));
        }
        let name = form
            .iter()
            .find(|(k, _)| k == "connection")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let revoked = self.revoke(&user, name).await.map_err(|e| {
            tracing::error!(connection = name, error = %e, "cannot revoke a connection");
            refuse(500, Reason::ConnectionFailed)
        })?;
        Ok((Reply::redirect(srv.url("/connections")), revoked))
    }

    /// Forgets `user`'s connection `name` here and, where the provider has a revocation
    /// endpoint (RFC 7009), there. `None` when there was none.
    pub async fn revoke(
        &self,
        user: &str,
        name: &str,
    ) -> Result<Option<Revoked>, super::ConnectionError> {
        let Some(record) = self.store.delete_connection(user, name).await? else {
            return Ok(None);
        };
        let tokens = match self.vault.open(user, name, &record.sealed) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(connection = name, error = %e, "a revoked connection could not be opened: the provider was not told");
                return Ok(None);
            }
        };
        if let Some(config) = self.config(name) {
            self.revoke_at_provider(config, &tokens).await;
        }
        tracing::info!(connection = name, "a connection was revoked");
        self.record(user, name, "revoked");
        Ok(Some(Revoked {
            user: user.to_owned(),
            connection: name.to_owned(),
            access_token: crate::secret::Secret::new(tokens.access_token.as_bytes()),
        }))
    }

    /// Best effort: the provider forgets the grant (its refresh token, else the access
    /// token). A provider without a revocation endpoint keeps it until it expires.
    async fn revoke_at_provider(&self, config: &ConnectionConfig, tokens: &Tokens) {
        let Ok(endpoints) = self.endpoints(config).await else {
            return;
        };
        let Some(url) = endpoints.revocation else {
            return;
        };
        let secret = &config.client_secret;
        let (token, hint) = match &tokens.refresh_token {
            Some(r) => (r.as_str(), "refresh_token"),
            None => (tokens.access_token.as_str(), "access_token"),
        };
        let form = [("token", token), ("token_type_hint", hint)];
        if let Err(e) = self
            .http
            .post_form_empty(&url, &config.client_id, secret, &form)
            .await
        {
            tracing::warn!(connection = %config.name, error = %e, "the provider's revocation failed");
        }
    }
}

fn host_of(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

fn web_age(seconds: i64) -> String {
    crate::authz::web::age(seconds)
}
