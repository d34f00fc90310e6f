//! The built-in authorization server: lets any MCP client sign in (OAuth 2.1 authorization
//! code + PKCE, RFC 8707 resources, RFC 9207 `iss`), identifying clients by their metadata
//! document URL or by dynamic registration, signing users in at the team's identity
//! provider (or a development login page) and issuing our own RFC 9068 access tokens,
//! which the resource side validates like any issuer's.
//!
//! This module holds the protocol; it knows no HTTP framework. `transport::http::authz`
//! maps requests and answers. Decisions that need more than a comment are in `README.md`.

pub mod allow;
pub mod cimd;
pub mod github;
mod register;
pub mod rules;
mod token;
pub mod web;

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use url::Url;

use crate::auth::fetch::HttpClient;
use crate::auth::id_token::OidcProvider;
use crate::auth::{LocalIssuer, Secret};
use crate::store::{
    ClientRecord, CodeRecord, ConsentRecord, FlowRecord, FlowStep, Grant, Store, StoreError,
};
use allow::AllowRules;
use cimd::{CimdConfig, CimdError, Fetcher};
use rules::Params;
use web::{ClientView, Page};

pub use register::DcrConfig;
pub use token::TokenError;

/// The authorization server's settings, compiled.
#[derive(Debug, Clone)]
pub struct AuthzConfig {
    /// Our issuer identifier: the public origin and path prefix, no trailing slash.
    pub issuer: String,
    /// The public origin (what a browser sends as `Origin` from our pages).
    pub origin: String,
    /// The resources tokens may be for; the first is the default.
    pub resources: Vec<String>,
    pub resource_name: String,
    /// The resource's scopes (without `offline_access`).
    pub scopes_supported: Vec<String>,
    /// Granted when a client asks for none.
    pub default_scopes: Vec<String>,
    pub upstream: UpstreamConfig,
    pub allow: AllowRules,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_idle_ttl: Duration,
    pub code_ttl: Duration,
    /// How long a consent is remembered; zero: never.
    pub consent_ttl: Duration,
    /// Client metadata documents, unless `--no-cimd`.
    pub cimd: Option<CimdConfig>,
    /// Dynamic registration, unless `--no-dcr`.
    pub dcr: Option<DcrConfig>,
    /// Private-use redirect schemes admitted for native clients.
    pub redirect_schemes: Vec<String>,
    /// `Secure`, `__Host-` cookies (https).
    pub secure_cookies: bool,
    /// Clock skew allowed on the upstream's ID tokens.
    pub leeway: Duration,
}

/// Where users sign in.
#[derive(Debug, Clone)]
pub enum UpstreamConfig {
    /// `--dev`: a page asks for a user name; no password.
    Dev,
    /// Any OpenID Connect provider.
    Oidc {
        issuer: String,
        client_id: String,
        client_secret: Secret,
        /// Asked for besides `openid email profile`.
        extra_scopes: Vec<String>,
        /// The claim holding the user's groups.
        groups_claim: String,
    },
    /// GitHub or a GitHub Enterprise Server (OAuth 2.0 and its REST API).
    GitHub {
        /// Where users sign in: `https://github.com`, or the server's URL.
        web_url: Url,
        /// `https://api.github.com`, or `https://HOST/api/v3`.
        api_url: Url,
        client_id: String,
        client_secret: Secret,
        /// Asked for: `read:user user:email`, plus `read:org` for groups.
        scopes: Vec<String>,
    },
}

/// How long a sign-in may take, from the client's request to the code.
pub(crate) const FLOW_TTL_SECS: i64 = 600;
/// How long an allowed sign-in waits while the user connects required accounts.
const CONNECTING_TTL_SECS: i64 = 1800;
/// How long a browser stays signed in after a sign-in (within its binding cookie's day).
pub(crate) const WEB_SESSION_SECS: i64 = 8 * 3600;
/// Upper bound on the groups carried in a token (keeps it under the resource's size limit).
const MAX_GROUPS: usize = 64;

/// Why a browser request failed: the page it gets, and the code logs and audit show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MissingClientId,
    UnknownClient,
    MissingRedirectUri,
    RedirectUriMismatch,
    DuplicateParameter,
    Cimd(CimdError),
    FlowExpired,
    ForeignBrowser,
    CsrfMismatch,
    CrossSite,
    StateMismatch,
    IssuerMismatch,
    UpstreamError,
    IdTokenInvalid,
    NotAllowed,
    BadUserName,
    AlreadyUsed,
    /// A connect link that is not ours, for another connection, or expired.
    ConnectLinkInvalid,
    /// A connect link opened in a browser not signed in here.
    NotSignedIn,
    /// A connect link opened in a browser signed in as someone else.
    OtherUser,
    /// The provider refused, or its answer could not be used.
    ConnectionFailed,
}

impl Reason {
    /// The snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingClientId => "missing_client_id",
            Reason::UnknownClient => "unknown_client",
            Reason::MissingRedirectUri => "missing_redirect_uri",
            Reason::RedirectUriMismatch => "redirect_uri_mismatch",
            Reason::DuplicateParameter => "duplicate_parameter",
            Reason::Cimd(e) => e.code(),
            Reason::FlowExpired => "flow_expired",
            Reason::ForeignBrowser => "foreign_browser",
            Reason::CsrfMismatch => "csrf_mismatch",
            Reason::CrossSite => "cross_site",
            Reason::StateMismatch => "state_mismatch",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::UpstreamError => "upstream_error",
            Reason::IdTokenInvalid => "id_token_invalid",
            Reason::NotAllowed => "not_allowed",
            Reason::BadUserName => "bad_user_name",
            Reason::AlreadyUsed => "already_used",
            Reason::ConnectLinkInvalid => "connect_link_invalid",
            Reason::NotSignedIn => "not_signed_in",
            Reason::OtherUser => "other_user",
            Reason::ConnectionFailed => "connection_failed",
        }
    }

    /// A fixed sentence for the user: never client, upstream or internal text.
    pub fn message(self) -> &'static str {
        match self {
            Reason::MissingClientId | Reason::UnknownClient => {
                "The application that sent you here is not known to this server."
            }
            Reason::MissingRedirectUri | Reason::RedirectUriMismatch => {
                "The application asked to send you somewhere it has not registered. You were not sent there."
            }
            Reason::DuplicateParameter => "The sign-in request is malformed.",
            Reason::Cimd(_) => {
                "The application's published description could not be used, so it cannot sign in here."
            }
            Reason::FlowExpired => {
                "This sign-in has expired or was already completed. Start again from the application."
            }
            Reason::ForeignBrowser | Reason::StateMismatch => {
                "This sign-in link was not started in this browser or has expired. Start again from the application."
            }
            Reason::CsrfMismatch | Reason::CrossSite => {
                "This form was not submitted from this server's page. Nothing was changed."
            }
            Reason::IssuerMismatch | Reason::UpstreamError | Reason::IdTokenInvalid => {
                "Your identity provider's answer could not be used. Try again, or ask the server's operator."
            }
            Reason::NotAllowed => "Your account is not allowed to use this server.",
            Reason::BadUserName => {
                "A user name is 1 to 64 letters, digits, dots, dashes, underscores or @."
            }
            Reason::AlreadyUsed => "This sign-in was already completed in another window.",
            Reason::ConnectLinkInvalid => {
                "This connect link is not valid or has expired. Ask your MCP client for a new one by starting a new conversation."
            }
            Reason::NotSignedIn => {
                "Open this link in the browser you signed in to this server with, or sign in again from your MCP client first."
            }
            Reason::OtherUser => {
                "This connect link was made for another user. Nothing was connected."
            }
            Reason::ConnectionFailed => {
                "The provider did not complete the connection. Try again from your MCP client."
            }
        }
    }
}

/// Every way the authorization server refuses.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// An error page (the client or its redirect cannot be trusted, or the browser request
    /// is not acceptable).
    #[error("{}", .reason.code())]
    Page { status: u16, reason: Reason },
    /// A sign-in that is refused, with a way back to the client (`access_denied`).
    #[error("{}", .reason.code())]
    Refused {
        reason: Reason,
        return_url: String,
        form_target: Option<String>,
    },
    /// An error sent back to the client's redirect URI (`error`, `state`, `iss`).
    #[error("redirected with an error")]
    Redirect { location: String },
    /// A token, revocation or registration endpoint error (JSON).
    #[error("{}", .0.code)]
    Token(TokenError),
    #[error("too many registrations")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the sign-in provider failed: {0}")]
    Upstream(String),
}

fn page(status: u16, reason: Reason) -> AuthzError {
    AuthzError::Page { status, reason }
}

/// What a browser request carries that matters here.
#[derive(Debug, Clone, Copy, Default)]
pub struct Browser<'a> {
    /// The browser-binding cookie, if the browser has one.
    pub cookie: Option<&'a str>,
    /// The sign-in cookie (set when a user signs in here), if the browser has one.
    pub session: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub fetch_site: Option<&'a str>,
}

impl Reply {
    /// A page, setting no cookie.
    pub fn page(page: Page) -> Reply {
        Reply {
            answer: Answer::Page(page),
            set_cookie: None,
            set_session: None,
        }
    }

    /// A redirect (303), setting no cookie.
    pub fn redirect(location: String) -> Reply {
        Reply {
            answer: Answer::Redirect(location),
            set_cookie: None,
            set_session: None,
        }
    }
}

/// What to send the browser.
#[derive(Debug)]
pub struct Reply {
    pub answer: Answer,
    /// A new browser-binding cookie value to set.
    pub set_cookie: Option<String>,
    /// A new sign-in cookie value to set: the browser is signed in as a user (fresh at each
    /// sign-in, so a cookie planted before cannot be signed in by the victim).
    pub set_session: Option<String>,
}

#[derive(Debug)]
pub enum Answer {
    Page(Page),
    /// 303 See Other.
    Redirect(String),
}

/// The client's authorization request, kept with its flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<String>,
    resource: String,
    code_challenge: String,
    force_consent: bool,
    client: ClientInfo,
}

/// What we know of a client, as a flow needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClientInfo {
    name: String,
    /// Identified by its metadata document (the URL's host vouches for it).
    verified: bool,
    /// The client_id URL's host (metadata documents).
    host: String,
    /// Registration time (dynamic registration) or first sighting (documents).
    since: i64,
    fingerprint: String,
    may_refresh: bool,
    /// Every registered redirect goes to this computer.
    loopback_only: bool,
    #[serde(skip)]
    redirect_uris: Vec<String>,
}

/// Secrets of the upstream leg, kept with the flow until the callback.
#[derive(Debug, Serialize, Deserialize)]
struct UpstreamSecrets {
    flow_id: String,
    verifier: String,
    nonce: String,
}

/// The running authorization server.
#[derive(Debug)]
pub struct AuthorizationServer {
    config: AuthzConfig,
    store: Store,
    signer: LocalIssuer,
    upstream: Upstream,
    cimd: Option<Fetcher>,
    registrations: register::Limiter,
    /// What a sign-in goes through before the client gets its code, when set.
    chain: std::sync::OnceLock<std::sync::Arc<dyn Chain>>,
}

/// Future returned by [`Chain::missing`].
pub type ChainFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send + 'a>>;

/// Steps between a user's sign-in and the client's code: the user's required connections
/// not made yet (implemented by `connections`), so that a new user connects them right away.
pub trait Chain: Send + Sync + std::fmt::Debug {
    /// The required connections `user` (a subject) has not made.
    fn missing<'a>(&'a self, user: &'a str) -> ChainFuture<'a>;
    /// Where `user` connects `name`, coming back afterwards to the sign-in `then` (its
    /// flow id).
    fn link(&self, user: &str, name: &str, then: &str) -> String;
}

#[derive(Debug)]
enum Upstream {
    Dev,
    Oidc {
        provider: OidcProvider,
        scopes: String,
        groups_claim: String,
    },
    GitHub(github::GitHub),
}

impl AuthorizationServer {
    /// Sets the server up; `signer` must be the issuer the resource side trusts.
    pub fn new(
        config: AuthzConfig,
        store: Store,
        signer: LocalIssuer,
        ca_pem: Option<&[u8]>,
    ) -> Result<AuthorizationServer, String> {
        let upstream = match &config.upstream {
            UpstreamConfig::Dev => Upstream::Dev,
            UpstreamConfig::Oidc {
                issuer,
                client_id,
                client_secret,
                extra_scopes,
                groups_claim,
            } => {
                let http = HttpClient::new(ca_pem, Duration::from_secs(10))?;
                let mut scopes = vec!["openid", "email", "profile"];
                scopes.extend(extra_scopes.iter().map(String::as_str));
                scopes.dedup();
                Upstream::Oidc {
                    provider: OidcProvider::new(
                        issuer.clone(),
                        client_id.clone(),
                        client_secret.clone(),
                        http,
                    ),
                    scopes: scopes.join(" "),
                    groups_claim: groups_claim.clone(),
                }
            }
            UpstreamConfig::GitHub {
                web_url,
                api_url,
                client_id,
                client_secret,
                scopes,
            } => Upstream::GitHub(github::GitHub::new(
                web_url.clone(),
                api_url.clone(),
                client_id.clone(),
                client_secret.clone(),
                scopes,
                ca_pem,
            )?),
        };
        let cimd = config.cimd.clone().map(Fetcher::new).transpose()?;
        let registrations = register::Limiter::new(config.dcr.clone().unwrap_or_default());
        Ok(AuthorizationServer {
            config,
            store,
            signer,
            upstream,
            cimd,
            registrations,
            chain: std::sync::OnceLock::new(),
        })
    }

    /// Sends users through their required connections after signing in (once, at startup).
    pub fn set_chain(&self, chain: std::sync::Arc<dyn Chain>) {
        let _ = self.chain.set(chain);
    }

    pub fn config(&self) -> &AuthzConfig {
        &self.config
    }

    /// Starts the background work: the upstream's discovery and the store's janitor.
    pub fn start(self: &std::sync::Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        if let Upstream::Oidc { provider, .. } = &self.upstream {
            let p = provider.clone();
            tokio::spawn(async move { p.warm_up().await });
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = me.store.purge_expired(unix_now()).await {
                            tracing::warn!(error = %e, "cannot purge expired sign-in state");
                        }
                    }
                }
            }
        });
    }

    /// The cookie that binds a sign-in to its browser.
    /// The cookie a signed-in browser carries (see [`Reply::set_session`]).
    pub fn session_cookie_name(&self) -> &'static str {
        if self.config.secure_cookies {
            "__Host-mcp-warden-session"
        } else {
            "mcp-warden-session"
        }
    }

    pub fn cookie_name(&self) -> &'static str {
        if self.config.secure_cookies {
            "__Host-mcp-warden-browser"
        } else {
            // `__Host-` requires `Secure`, which plain http (loopback only) cannot set.
            "mcp-warden-browser"
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer)
    }

    /// The user (subject) a browser is signed in as here, if it is.
    pub async fn browser_user(&self, browser: Browser<'_>) -> Result<Option<String>, StoreError> {
        match browser.session {
            Some(c) => self.store.web_session(&rules::hash(c), unix_now()).await,
            None => Ok(None),
        }
    }

    /// The error page for `reason`.
    pub(crate) fn refuse(status: u16, reason: Reason) -> AuthzError {
        page(status, reason)
    }

    /// The page asking the signed-in user to connect `connection` (a form: `flow`, `csrf`),
    /// whose answer leads to one of `form_targets` (space-separated origins: the provider,
    /// and with `later` the waiting client).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect_page(
        &self,
        user: &str,
        connection: &str,
        provider: &str,
        scopes: &[String],
        flow: &str,
        csrf: &str,
        form_targets: String,
        later: bool,
    ) -> Page {
        Page {
            status: 200,
            html: web::render(&web::ConnectPage {
                title: "Connect an account?",
                resource_name: &self.config.resource_name,
                css_url: &self.url(web::CSS_PATH),
                user,
                connection,
                provider,
                scopes,
                connections_url: &self.url("/connections"),
                action: &self.url(&format!("/connections/{connection}/connect")),
                flow,
                csrf,
                later,
            }),
            form_target: Some(form_targets),
        }
    }

    /// The signed-in user's connections, with a form (`flow`, `csrf`) to revoke each.
    pub(crate) fn connections_page(
        &self,
        user: &str,
        flow: &str,
        csrf: &str,
        rows: Vec<web::ConnectionRow>,
    ) -> Page {
        Page {
            status: 200,
            html: web::render(&web::ConnectionsPage {
                title: "Your connected accounts",
                resource_name: &self.config.resource_name,
                css_url: &self.url(web::CSS_PATH),
                user,
                action: &self.url("/connections/revoke"),
                flow,
                csrf,
                rows,
            }),
            form_target: None,
        }
    }

    /// A page of this server (its stylesheet, its resource's name).
    pub(crate) fn connected_page(&self, connection: &str, scopes: &[String]) -> Page {
        Page {
            status: 200,
            html: web::render(&web::ConnectedPage {
                title: "Connected",
                resource_name: &self.config.resource_name,
                css_url: &self.url(web::CSS_PATH),
                connection,
                scopes,
            }),
            form_target: None,
        }
    }

    /// RFC 8414 metadata (also served as the OpenID discovery document).
    pub fn metadata(&self) -> Value {
        let c = &self.config;
        let mut scopes = c.scopes_supported.clone();
        scopes.push("offline_access".into());
        let auth_methods = ["none", "client_secret_basic", "client_secret_post"];
        let mut doc = json!({
            "issuer": c.issuer,
            "authorization_endpoint": self.url("/oauth/authorize"),
            "token_endpoint": self.url("/oauth/token"),
            "revocation_endpoint": self.url("/oauth/revoke"),
            "jwks_uri": self.url(crate::auth::signer::JWKS_PATH),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "scopes_supported": scopes,
            "client_id_metadata_document_supported": c.cimd.is_some(),
            "authorization_response_iss_parameter_supported": true,
            "protected_resources": c.resources,
        });
        if c.dcr.is_some() {
            doc["registration_endpoint"] = json!(self.url("/oauth/register"));
        }
        doc
    }

    // ------------------------------------------------------------------ /oauth/authorize

    /// The authorization endpoint (`query`: the request's query string or form body).
    pub async fn authorize(&self, query: &[u8], browser: Browser<'_>) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let p = Params::parse(query);
        // Until the client and its redirect URI are established, errors are pages: nothing
        // may be sent to an unverified redirect (OAuth 2.1 §4.1.2.1).
        if p.is_duplicated("client_id") || p.is_duplicated("redirect_uri") {
            return Err(page(400, Reason::DuplicateParameter));
        }
        let client_id = p
            .get("client_id")
            .ok_or(page(400, Reason::MissingClientId))?;
        let client = self.resolve_client(client_id, now).await?;
        let redirect_uri = p
            .get("redirect_uri")
            .ok_or(page(400, Reason::MissingRedirectUri))?;
        if !rules::redirect_matches(redirect_uri, &client.redirect_uris) {
            return Err(page(400, Reason::RedirectUriMismatch));
        }
        let state = p.get("state").filter(|s| s.len() <= 1024);
        let fail = |code: &str, description: &str| AuthzError::Redirect {
            location: self.error_location(redirect_uri, code, description, state),
        };
        if p.get("state").is_some_and(|s| s.len() > 1024) {
            return Err(fail("invalid_request", "state is longer than 1024 bytes"));
        }
        if p.duplicated().is_some() {
            return Err(fail(
                "invalid_request",
                "a parameter was given more than once",
            ));
        }
        if p.get("response_type") != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "response_type must be code",
            ));
        }
        if p.get("request").is_some() || p.get("request_uri").is_some() {
            return Err(fail(
                "request_not_supported",
                "request objects are not supported",
            ));
        }
        if p.get("response_mode").is_some_and(|m| m != "query") {
            return Err(fail("invalid_request", "response_mode must be query"));
        }
        if p.get("code_challenge_method") != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        let challenge = p.get("code_challenge").unwrap_or("");
        if !rules::valid_challenge(challenge) {
            return Err(fail(
                "invalid_request",
                "code_challenge must be a base64url SHA-256 (43 characters)",
            ));
        }
        let mut supported = self.config.scopes_supported.clone();
        supported.push("offline_access".into());
        let scopes = match p.get("scope") {
            Some(s) => rules::scopes(s, &supported)
                .ok_or_else(|| fail("invalid_scope", "a requested scope is not supported"))?,
            None => self.config.default_scopes.clone(),
        };
        let scopes: Vec<String> = scopes
            .into_iter()
            .filter(|s| s != "offline_access")
            .collect();
        let resource = match p.get("resource") {
            Some(r) => {
                let canonical = crate::auth::resource_metadata::canonical_audience(r).into_owned();
                if !self.config.resources.contains(&canonical) {
                    return Err(fail("invalid_target", "resource is not served here"));
                }
                canonical
            }
            None => self.config.resources.first().cloned().unwrap_or_default(),
        };
        let prompts: Vec<&str> = p.get("prompt").unwrap_or("").split(' ').collect();
        if prompts.contains(&"none") {
            // Signing in always takes a page here.
            return Err(fail("login_required", "the user must sign in"));
        }
        let request = Request {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.map(str::to_owned),
            scopes,
            resource,
            code_challenge: challenge.to_owned(),
            force_consent: prompts.contains(&"consent"),
            client,
        };
        self.start_flow(request, browser, now).await
    }

    /// Identifies the client: a metadata document URL, or a registered id.
    async fn resolve_client(&self, client_id: &str, now: i64) -> Result<ClientInfo, AuthzError> {
        if client_id.starts_with("https://") {
            let Some(fetcher) = &self.cimd else {
                return Err(page(400, Reason::UnknownClient));
            };
            return self.metadata_document(fetcher, client_id, now).await;
        }
        let record = self
            .store
            .client(client_id)
            .await?
            .ok_or(page(400, Reason::UnknownClient))?;
        let m = &record.metadata;
        let redirect_uris: Vec<String> = m["redirect_uris"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClientInfo {
            name: m["client_name"]
                .as_str()
                .unwrap_or("Unnamed client")
                .to_owned(),
            verified: false,
            host: String::new(),
            since: record.registered_at,
            fingerprint: rules::hash(&m.to_string()),
            may_refresh: may_refresh(m.get("grant_types")),
            loopback_only: loopback_only(&redirect_uris),
            redirect_uris,
        })
    }

    async fn metadata_document(
        &self,
        fetcher: &Fetcher,
        url: &str,
        now: i64,
    ) -> Result<ClientInfo, AuthzError> {
        let cached = self.store.cimd_get(url).await?;
        let (doc, fingerprint, first_seen) = match &cached {
            Some(c) if c.fresh_until > now => (
                c.document.as_object().cloned().unwrap_or_default(),
                c.fingerprint.clone(),
                c.first_seen_at,
            ),
            _ => {
                let fetched = fetcher.fetch(url).await.map_err(|e| {
                    tracing::info!(
                        client_id = url,
                        reason = e.code(),
                        "client metadata document refused"
                    );
                    page(400, Reason::Cimd(e))
                })?;
                let first_seen = cached.as_ref().map_or(now, |c| c.first_seen_at);
                self.store
                    .cimd_put(&crate::store::CimdRecord {
                        url: url.to_owned(),
                        document: Value::Object(fetched.body.clone()),
                        fingerprint: fetched.fingerprint.clone(),
                        fetched_at: now,
                        fresh_until: now + fetched.ttl.as_secs() as i64,
                        first_seen_at: first_seen,
                    })
                    .await?;
                (fetched.body, fetched.fingerprint, first_seen)
            }
        };
        let redirect_uris: Vec<String> = doc
            .get("redirect_uris")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClientInfo {
            name: rules::display_text(
                doc.get("client_name").and_then(Value::as_str).unwrap_or(""),
                100,
            ),
            verified: true,
            host: Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default(),
            since: first_seen,
            fingerprint,
            may_refresh: may_refresh(doc.get("grant_types")),
            loopback_only: loopback_only(&redirect_uris),
            redirect_uris,
        })
    }

    /// Starts a sign-in: the development login page, or the upstream provider.
    async fn start_flow(
        &self,
        request: Request,
        browser: Browser<'_>,
        now: i64,
    ) -> Result<Reply, AuthzError> {
        let (cookie, set_cookie) = match browser.cookie.filter(|c| c.len() >= 32) {
            Some(c) => (c.to_owned(), None),
            None => {
                let fresh = new_secret("")?;
                (fresh.clone(), Some(fresh))
            }
        };
        let flow_id = new_secret("")?;
        let mut flow = FlowRecord {
            flow_hash: rules::hash(&flow_id),
            kind: "authorize".into(),
            step: FlowStep::Login,
            browser_hash: rules::hash(&cookie),
            csrf_hash: None,
            upstream_state_hash: None,
            upstream_secrets: None,
            request: serde_json::to_value(&request).unwrap_or(Value::Null),
            user_id: None,
            created_at: now,
            expires_at: now + FLOW_TTL_SECS,
        };
        let answer = match &self.upstream {
            Upstream::Dev => {
                let csrf = new_secret("")?;
                flow.csrf_hash = Some(rules::hash(&csrf));
                self.store.put_flow(&flow).await?;
                let view = self.client_view(&request.client, &request.redirect_uri, now);
                let css = self.url(web::CSS_PATH);
                let action = self.url("/oauth/dev-login");
                let scopes = self
                    .config
                    .scopes_supported
                    .iter()
                    .map(|s| web::ScopeChoice {
                        name: s.clone(),
                        checked: request.scopes.contains(s),
                    })
                    .collect();
                Answer::Page(Page {
                    status: 200,
                    html: web::render(&web::DevLoginPage {
                        title: "Sign in",
                        resource_name: &self.config.resource_name,
                        css_url: &css,
                        action: &action,
                        flow: &flow_id,
                        csrf: &csrf,
                        client: &view,
                        scopes,
                    }),
                    form_target: Some(origin_of(&request.redirect_uri)),
                })
            }
            Upstream::Oidc {
                provider, scopes, ..
            } => {
                let endpoints = provider.endpoints().await.map_err(AuthzError::Upstream)?;
                let state = new_secret("")?;
                let secrets = UpstreamSecrets {
                    flow_id: flow_id.clone(),
                    verifier: new_secret("")?,
                    nonce: new_secret("")?,
                };
                flow.step = FlowStep::Upstream;
                flow.upstream_state_hash = Some(rules::hash(&state));
                flow.upstream_secrets = serde_json::to_string(&secrets).ok();
                self.store.put_flow(&flow).await?;
                let challenge = s256(&secrets.verifier);
                let mut url = endpoints.authorization;
                url.query_pairs_mut()
                    .append_pair("response_type", "code")
                    .append_pair("client_id", provider.client_id())
                    .append_pair("redirect_uri", &self.url("/oauth/callback"))
                    .append_pair("scope", scopes)
                    .append_pair("state", &state)
                    .append_pair("nonce", &secrets.nonce)
                    .append_pair("code_challenge", &challenge)
                    .append_pair("code_challenge_method", "S256");
                Answer::Redirect(url.to_string())
            }
            Upstream::GitHub(gh) => {
                let state = new_secret("")?;
                let secrets = UpstreamSecrets {
                    flow_id: flow_id.clone(),
                    verifier: new_secret("")?,
                    // GitHub issues no ID token to bind one to.
                    nonce: String::new(),
                };
                flow.step = FlowStep::Upstream;
                flow.upstream_state_hash = Some(rules::hash(&state));
                flow.upstream_secrets = serde_json::to_string(&secrets).ok();
                self.store.put_flow(&flow).await?;
                let url = gh
                    .authorize_url(
                        &self.url("/oauth/callback"),
                        &state,
                        &s256(&secrets.verifier),
                    )
                    .map_err(|e| AuthzError::Upstream(e.to_string()))?;
                Answer::Redirect(url.to_string())
            }
        };
        Ok(Reply {
            answer,
            set_cookie,
            set_session: None,
        })
    }

    fn client_view(&self, client: &ClientInfo, redirect_uri: &str, now: i64) -> ClientView {
        // The host is what to trust; on this computer the port tells programs apart.
        let redirect_host = Url::parse(redirect_uri)
            .ok()
            .map(|u| match (u.host_str(), u.port()) {
                (Some(h), Some(p)) if crate::auth::fetch::is_loopback_host(&u) => {
                    format!("{h}:{p}")
                }
                (Some(h), _) => h.to_owned(),
                (None, _) => format!("{}:", u.scheme()),
            })
            .unwrap_or_default();
        ClientView {
            name: if client.name.is_empty() {
                "Unnamed client".into()
            } else {
                client.name.clone()
            },
            verified: client.verified,
            host: client.host.clone(),
            age: web::age(now - client.since),
            redirect_host,
        }
    }

    fn error_location(
        &self,
        redirect_uri: &str,
        code: &str,
        description: &str,
        state: Option<&str>,
    ) -> String {
        let mut pairs = vec![("error", code), ("error_description", description)];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &self.config.issuer));
        append_query(redirect_uri, &pairs)
    }

    // ------------------------------------------------------------------ browser forms

    /// The flow a form was posted for, after the checks every POST gets: from our own
    /// pages (Fetch Metadata, Origin), by the browser that started it (cookie), with the
    /// token of the page it was shown (CSRF).
    pub(crate) async fn posted_flow(
        &self,
        form: &[(String, String)],
        browser: Browser<'_>,
        kind: &str,
        step: FlowStep,
        now: i64,
    ) -> Result<(String, FlowRecord), AuthzError> {
        if let Some(site) = browser.fetch_site
            && !matches!(
                site.trim().to_ascii_lowercase().as_str(),
                "same-origin" | "none"
            )
        {
            return Err(page(403, Reason::CrossSite));
        }
        if let Some(origin) = browser.origin
            && origin != self.config.origin
        {
            return Err(page(403, Reason::CrossSite));
        }
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let flow_id = field("flow").ok_or(page(400, Reason::FlowExpired))?;
        let flow = self.bound_flow(flow_id, browser, step, now).await?;
        if flow.kind != kind {
            return Err(page(400, Reason::FlowExpired));
        }
        let csrf_ok = match (field("csrf"), &flow.csrf_hash) {
            (Some(token), Some(expected)) => rules::same_hash(&rules::hash(token), expected),
            _ => false,
        };
        if !csrf_ok {
            return Err(page(403, Reason::CsrfMismatch));
        }
        Ok((flow_id.to_owned(), flow))
    }

    /// The flow of kind `kind` a provider's answer (`p`, its callback's query) continues,
    /// claimed by its `state`: once, whoever presents it (a replayed or foreign state burns
    /// the flow), and only in the browser that started it.
    pub(crate) async fn claim_upstream(
        &self,
        p: &Params,
        browser: Browser<'_>,
        kind: &str,
        now: i64,
    ) -> Result<FlowRecord, AuthzError> {
        if p.duplicated().is_some() {
            return Err(page(400, Reason::DuplicateParameter));
        }
        let state = p.get("state").ok_or(page(400, Reason::StateMismatch))?;
        let flow = self
            .store
            .claim_flow_by_upstream_state(&rules::hash(state), now)
            .await?
            .ok_or(page(400, Reason::StateMismatch))?;
        if flow.kind != kind {
            // Another flow's state, brought here: used up, not followed.
            let _ = self
                .store
                .finish_flow(&flow.flow_hash, FlowStep::Callback)
                .await;
            return Err(page(400, Reason::StateMismatch));
        }
        let bound = browser
            .cookie
            .is_some_and(|c| rules::same_hash(&rules::hash(c), &flow.browser_hash));
        if !bound {
            tracing::warn!(
                flow = kind,
                "a provider's answer arrived in a browser that did not start its flow"
            );
            return Err(page(400, Reason::ForeignBrowser));
        }
        Ok(flow)
    }

    /// A live flow at `step`, started by this browser.
    async fn bound_flow(
        &self,
        flow_id: &str,
        browser: Browser<'_>,
        step: FlowStep,
        now: i64,
    ) -> Result<FlowRecord, AuthzError> {
        let flow = self
            .store
            .flow(&rules::hash(flow_id), now)
            .await?
            .filter(|f| f.step == step)
            .ok_or(page(400, Reason::FlowExpired))?;
        let bound = browser
            .cookie
            .is_some_and(|c| rules::same_hash(&rules::hash(c), &flow.browser_hash));
        if !bound {
            return Err(page(403, Reason::ForeignBrowser));
        }
        Ok(flow)
    }

    /// `POST /oauth/dev-login`: the development sign-in (`--dev` only).
    pub async fn dev_login(&self, body: &[u8], browser: Browser<'_>) -> Result<Reply, AuthzError> {
        let now = unix_now();
        if !matches!(self.upstream, Upstream::Dev) {
            return Err(page(404, Reason::FlowExpired));
        }
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let (flow_id, flow) = self
            .posted_flow(&form, browser, "authorize", FlowStep::Login, now)
            .await?;
        let name = form
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.trim())
            .unwrap_or("");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
        {
            return Err(page(400, Reason::BadUserName));
        }
        let mut request: Request = serde_json::from_value(flow.request.clone())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The boxes the user left checked, among the configured scopes.
        request.scopes = self
            .config
            .scopes_supported
            .iter()
            .filter(|s| form.iter().any(|(k, v)| k == "scope" && v == *s))
            .cloned()
            .collect();
        let claims = match json!({
            "email": format!("{name}@dev.invalid"),
            "email_verified": false,
            "name": name,
            "preferred_username": name,
            "groups": [],
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let idp = format!("{}#dev", self.config.issuer);
        let user_id = self.store.upsert_user(&idp, name, &claims, now).await?;
        self.signed_in(
            &flow_id,
            &flow,
            FlowStep::Login,
            request,
            &user_id,
            &claims,
            now,
        )
        .await
    }

    /// `GET /oauth/callback`: the upstream provider's answer.
    pub async fn callback(&self, query: &[u8], browser: Browser<'_>) -> Result<Reply, AuthzError> {
        let now = unix_now();
        if matches!(self.upstream, Upstream::Dev) {
            return Err(page(404, Reason::StateMismatch));
        }
        let p = Params::parse(query);
        let flow = self.claim_upstream(&p, browser, "authorize", now).await?;
        let request: Request = serde_json::from_value(flow.request.clone())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let secrets: UpstreamSecrets = flow
            .upstream_secrets
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| StoreError::Corrupt("flow without upstream secrets".into()))?;
        if let Upstream::Oidc { provider, .. } = &self.upstream {
            let endpoints = provider.endpoints().await.map_err(AuthzError::Upstream)?;
            match p.get("iss") {
                Some(iss) if iss != provider.issuer() => {
                    return Err(page(400, Reason::IssuerMismatch));
                }
                None if endpoints.iss_parameter_supported => {
                    return Err(page(400, Reason::IssuerMismatch));
                }
                _ => {}
            }
        }
        let deny = |reason| AuthzError::Refused {
            reason,
            return_url: self.error_location(
                &request.redirect_uri,
                "access_denied",
                "the user was not signed in",
                request.state.as_deref(),
            ),
            form_target: None,
        };
        if p.get("error").is_some() {
            // The provider's own text stays out of what the client sees.
            let _ = self
                .store
                .finish_flow(&flow.flow_hash, FlowStep::Callback)
                .await;
            return Ok(Reply {
                answer: Answer::Redirect(self.error_location(
                    &request.redirect_uri,
                    "access_denied",
                    "the identity provider did not sign the user in",
                    request.state.as_deref(),
                )),
                set_cookie: None,
                set_session: None,
            });
        }
        let code = p.get("code").ok_or(page(400, Reason::UpstreamError))?;
        let (idp, sub, kept) = match &self.upstream {
            Upstream::Oidc {
                provider,
                groups_claim,
                ..
            } => {
                let (sub, claims) = self.oidc_identity(provider, code, &secrets, now).await?;
                (
                    provider.issuer().to_owned(),
                    sub,
                    kept_claims(&claims, groups_claim),
                )
            }
            Upstream::GitHub(gh) => {
                let (sub, claims) = gh
                    .sign_in(code, &self.url("/oauth/callback"), &secrets.verifier)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "the sign-in at GitHub failed");
                        page(502, Reason::UpstreamError)
                    })?;
                (gh.issuer(), sub, kept_claims(&claims, "groups"))
            }
            Upstream::Dev => return Err(page(404, Reason::StateMismatch)),
        };
        if self.config.allow.check(&kept).is_err() {
            tracing::info!(
                reason = "not_allowed",
                "a user outside the allow rules was refused"
            );
            let _ = self
                .store
                .finish_flow(&flow.flow_hash, FlowStep::Callback)
                .await;
            return Err(deny(Reason::NotAllowed));
        }
        let user_id = self.store.upsert_user(&idp, &sub, &kept, now).await?;
        self.signed_in(
            &secrets.flow_id,
            &flow,
            FlowStep::Callback,
            request,
            &user_id,
            &kept,
            now,
        )
        .await
    }

    /// The OpenID provider's leg: redeem its code, check its ID token (and nonce), merge
    /// UserInfo. Returns the subject and all claims; the provider's tokens end here.
    async fn oidc_identity(
        &self,
        provider: &OidcProvider,
        code: &str,
        secrets: &UpstreamSecrets,
        now: i64,
    ) -> Result<(String, Map<String, Value>), AuthzError> {
        let endpoints = provider.endpoints().await.map_err(AuthzError::Upstream)?;
        let tokens = provider
            .exchange_code(
                &endpoints.token,
                code,
                &self.url("/oauth/callback"),
                &secrets.verifier,
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the sign-in provider refused its code");
                page(502, Reason::UpstreamError)
            })?;
        let id_token = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or(page(502, Reason::IdTokenInvalid))?;
        let mut claims = provider
            .verify_id_token(id_token, &secrets.nonce, now as f64, self.config.leeway)
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e, "the sign-in provider's ID token was refused");
                page(400, Reason::IdTokenInvalid)
            })?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let (Some(endpoint), Some(access)) = (
            &endpoints.userinfo,
            tokens.get("access_token").and_then(Value::as_str),
        ) {
            let info = provider.userinfo(endpoint, access).await.map_err(|e| {
                tracing::warn!(error = %e, "the sign-in provider's UserInfo failed");
                page(502, Reason::UpstreamError)
            })?;
            // OpenID Connect Core §5.3.2: it must be about the same user.
            if info.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                return Err(page(400, Reason::IdTokenInvalid));
            }
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        drop(tokens);
        Ok((sub, claims))
    }

    /// After sign-in: a remembered consent that still covers the request issues the code at
    /// once; otherwise the consent page.
    #[allow(clippy::too_many_arguments)]
    async fn signed_in(
        &self,
        flow_id: &str,
        flow: &FlowRecord,
        from: FlowStep,
        request: Request,
        user_id: &str,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<Reply, AuthzError> {
        if self.config.allow.check(claims).is_err() {
            let _ = self.store.finish_flow(&flow.flow_hash, from).await;
            return Err(AuthzError::Refused {
                reason: Reason::NotAllowed,
                return_url: self.error_location(
                    &request.redirect_uri,
                    "access_denied",
                    "the user may not use this server",
                    request.state.as_deref(),
                ),
                form_target: None,
            });
        }
        let request_json = serde_json::to_value(&request).unwrap_or(Value::Null);
        if !self
            .store
            .advance_flow(
                &flow.flow_hash,
                from,
                FlowStep::Consent,
                Some(user_id),
                None,
                Some(&request_json),
                now,
            )
            .await?
        {
            return Err(page(400, Reason::AlreadyUsed));
        }
        // This browser is now signed in as the user, under a cookie minted here: it may
        // complete the user's connections (and only theirs).
        let session = new_secret("")?;
        let user = self
            .store
            .user(user_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a signed-in user is not stored".into()))?;
        self.store
            .put_web_session(
                &rules::hash(&session),
                &user.sub,
                now,
                now + WEB_SESSION_SECS,
            )
            .await?;
        let remembered = self
            .store
            .consent(user_id, &request.client_id, &request.resource, now)
            .await?;
        let covered = remembered.is_some_and(|c| {
            c.client_fingerprint == request.client.fingerprint
                && request.scopes.iter().all(|s| c.scopes.contains(s))
        });
        if covered && !request.force_consent {
            let location = self
                .code_or_connections(
                    flow_id,
                    &flow.flow_hash,
                    FlowStep::Consent,
                    &request,
                    user_id,
                    now,
                )
                .await?;
            return Ok(Reply {
                answer: Answer::Redirect(location),
                set_cookie: None,
                set_session: Some(session),
            });
        }
        Ok(Reply {
            answer: Answer::Redirect(append_query(
                &self.url("/oauth/consent"),
                &[("flow", flow_id)],
            )),
            set_cookie: None,
            set_session: Some(session),
        })
    }

    /// `GET /oauth/consent?flow=…`: the consent page.
    pub async fn consent_page(
        &self,
        query: &[u8],
        browser: Browser<'_>,
    ) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let p = Params::parse(query);
        let flow_id = p.get("flow").ok_or(page(400, Reason::FlowExpired))?;
        let flow = self
            .bound_flow(flow_id, browser, FlowStep::Consent, now)
            .await?;
        if flow.kind != "authorize" {
            return Err(page(400, Reason::FlowExpired));
        }
        let request: Request = serde_json::from_value(flow.request.clone())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let user_id = flow.user_id.clone().unwrap_or_default();
        let user = self
            .store
            .user(&user_id)
            .await?
            .ok_or(page(400, Reason::FlowExpired))?;
        let csrf = new_secret("")?;
        if !self
            .store
            .set_flow_csrf(&flow.flow_hash, FlowStep::Consent, &rules::hash(&csrf))
            .await?
        {
            return Err(page(400, Reason::FlowExpired));
        }
        let mut warnings = Vec::new();
        let new_here = !self.store.anyone_consented(&request.client_id).await?
            || (request.client.verified && now - request.client.since < 86_400);
        if new_here {
            warnings.push("You have not used this application here before.");
        }
        if request.client.loopback_only {
            warnings.push(
                "This application receives access on this computer (localhost). Only continue if you started this sign-in.",
            );
        }
        let previous = self
            .store
            .consent(&user_id, &request.client_id, &request.resource, now)
            .await?;
        if previous.is_some_and(|c| c.client_fingerprint != request.client.fingerprint) {
            warnings.push("This application's details changed since you last allowed it.");
        }
        let shown_user = user
            .claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.ends_with("@dev.invalid"))
            .unwrap_or(&user.sub)
            .to_owned();
        let view = self.client_view(&request.client, &request.redirect_uri, now);
        let css = self.url(web::CSS_PATH);
        let action = self.url("/oauth/consent");
        Ok(Reply {
            answer: Answer::Page(Page {
                status: 200,
                html: web::render(&web::ConsentPage {
                    title: "Allow access?",
                    resource_name: &self.config.resource_name,
                    css_url: &css,
                    action: &action,
                    flow: flow_id,
                    csrf: &csrf,
                    client: &view,
                    user: &shown_user,
                    scopes: &request.scopes,
                    warnings,
                }),
                form_target: Some(origin_of(&request.redirect_uri)),
            }),
            set_cookie: None,
            set_session: None,
        })
    }

    /// `POST /oauth/consent`: the user's decision.
    pub async fn consent(&self, body: &[u8], browser: Browser<'_>) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let (flow_id, flow) = self
            .posted_flow(&form, browser, "authorize", FlowStep::Consent, now)
            .await?;
        let request: Request = serde_json::from_value(flow.request.clone())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let user_id = flow.user_id.clone().unwrap_or_default();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if field("decision") != Some("allow") {
            if !self
                .store
                .finish_flow(&flow.flow_hash, FlowStep::Consent)
                .await?
            {
                return Err(page(400, Reason::AlreadyUsed));
            }
            return Ok(Reply {
                answer: Answer::Redirect(self.error_location(
                    &request.redirect_uri,
                    "access_denied",
                    "the user denied access",
                    request.state.as_deref(),
                )),
                set_cookie: None,
                set_session: None,
            });
        }
        let location = self
            .code_or_connections(
                &flow_id,
                &flow.flow_hash,
                FlowStep::Consent,
                &request,
                &user_id,
                now,
            )
            .await?;
        if field("remember") == Some("on") && !self.config.consent_ttl.is_zero() {
            self.store
                .put_consent(&ConsentRecord {
                    user_id,
                    client_id: request.client_id.clone(),
                    resource: request.resource.clone(),
                    scopes: request.scopes.clone(),
                    client_fingerprint: request.client.fingerprint.clone(),
                    granted_at: now,
                    expires_at: now + self.config.consent_ttl.as_secs() as i64,
                })
                .await?;
        }
        Ok(Reply {
            answer: Answer::Redirect(location),
            set_cookie: None,
            set_session: None,
        })
    }

    /// Where the browser goes once the user allowed (the flow at `from`): the connect page
    /// of a required connection the user has not made (the sign-in then waits at
    /// `Connecting`, long enough for a provider's sign-in), else the client's redirect URI
    /// with the code.
    async fn code_or_connections(
        &self,
        flow_id: &str,
        flow_hash: &str,
        from: FlowStep,
        request: &Request,
        user_id: &str,
        now: i64,
    ) -> Result<String, AuthzError> {
        if let Some(chain) = self.chain.get()
            && let Some(user) = self.store.user(user_id).await?
            && let Some(first) = chain.missing(&user.sub).await.first()
        {
            if from != FlowStep::Connecting
                && !self
                    .store
                    .advance_flow_until(
                        flow_hash,
                        from,
                        FlowStep::Connecting,
                        now + CONNECTING_TTL_SECS,
                        now,
                    )
                    .await?
            {
                return Err(page(400, Reason::AlreadyUsed));
            }
            tracing::info!(connection = %first, "signed in; the user connects a required account first");
            return Ok(chain.link(&user.sub, first, flow_id));
        }
        self.issue_code(flow_hash, from, request, user_id, now)
            .await
    }

    /// The sign-in `then` (its flow id) waiting in this browser for `user` (a subject) to
    /// connect required accounts, and its request.
    async fn waiting_sign_in(
        &self,
        then: &str,
        browser: Browser<'_>,
        user: &str,
    ) -> Result<(FlowRecord, Request, String), AuthzError> {
        let now = unix_now();
        let flow = self
            .bound_flow(then, browser, FlowStep::Connecting, now)
            .await?;
        if flow.kind != "authorize" {
            return Err(page(400, Reason::FlowExpired));
        }
        let user_id = flow.user_id.clone().unwrap_or_default();
        let signed_in = self.store.user(&user_id).await?.map(|u| u.sub);
        if signed_in.as_deref() != Some(user) {
            return Err(page(403, Reason::OtherUser));
        }
        let request: Request = serde_json::from_value(flow.request.clone())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((flow, request, user_id))
    }

    /// The origin of the client a waiting sign-in goes back to (a page's form may lead
    /// there), when `then` is such a sign-in of `user` in this browser.
    pub async fn waiting_client_origin(
        &self,
        then: &str,
        browser: Browser<'_>,
        user: &str,
    ) -> Result<String, AuthzError> {
        let (_, request, _) = self.waiting_sign_in(then, browser, user).await?;
        Ok(Url::parse(&request.redirect_uri)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default())
    }

    /// Back from a connection made right after signing in (`then`: the sign-in's flow id,
    /// waiting for `user`): the next required connection, or the client's code (at once
    /// when the user chose not to connect now, or the provider failed: `connect_more`
    /// false).
    pub async fn resume_sign_in(
        &self,
        then: &str,
        browser: Browser<'_>,
        user: &str,
        connect_more: bool,
    ) -> Result<Reply, AuthzError> {
        let now = unix_now();
        let (flow, request, user_id) = self.waiting_sign_in(then, browser, user).await?;
        let location = if connect_more {
            self.code_or_connections(
                then,
                &flow.flow_hash,
                FlowStep::Connecting,
                &request,
                &user_id,
                now,
            )
            .await?
        } else {
            self.issue_code(
                &flow.flow_hash,
                FlowStep::Connecting,
                &request,
                &user_id,
                now,
            )
            .await?
        };
        Ok(Reply::redirect(location))
    }

    /// Ends the flow (once) and issues its code; returns where the browser goes.
    async fn issue_code(
        &self,
        flow_hash: &str,
        from: FlowStep,
        request: &Request,
        user_id: &str,
        now: i64,
    ) -> Result<String, AuthzError> {
        if !self.store.finish_flow(flow_hash, from).await? {
            return Err(page(400, Reason::AlreadyUsed));
        }
        let code = new_secret("mwc_")?;
        self.store
            .put_code(&CodeRecord {
                code_hash: rules::hash(&code),
                grant: Grant {
                    client_id: request.client_id.clone(),
                    user_id: user_id.to_owned(),
                    redirect_uri: request.redirect_uri.clone(),
                    resource: request.resource.clone(),
                    scopes: request.scopes.clone(),
                    code_challenge: request.code_challenge.clone(),
                    may_refresh: request.client.may_refresh,
                    auth_time: now,
                },
                created_at: now,
                expires_at: now + self.config.code_ttl.as_secs() as i64,
            })
            .await?;
        tracing::info!(client_id = %request.client_id, resource = %request.resource, "signed in; authorization code issued");
        let mut pairs = vec![("code", code.as_str())];
        if let Some(s) = &request.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &self.config.issuer));
        Ok(append_query(&request.redirect_uri, &pairs))
    }

    // ------------------------------------------------------------------ JSON endpoints

    /// `POST /oauth/register` (RFC 7591).
    pub async fn register(&self, body: &[u8], peer: Option<IpAddr>) -> Result<Value, AuthzError> {
        let Some(dcr) = &self.config.dcr else {
            return Err(AuthzError::Token(TokenError::invalid_request(
                "registration is off",
            )));
        };
        let now = unix_now();
        if let Err(retry_after) = self.registrations.admit(peer, std::time::Instant::now()) {
            return Err(AuthzError::RateLimited { retry_after });
        }
        let (record, answer) = register::validate(body, &self.config.redirect_schemes, now)?;
        if self.store.count_clients().await? >= dcr.max_clients {
            tracing::warn!(max = dcr.max_clients, "dynamic registration is full");
            return Err(AuthzError::Token(TokenError::unavailable()));
        }
        self.store.put_client(&record).await?;
        tracing::info!(client_id = %record.client_id, "client registered");
        Ok(answer)
    }

    /// `POST /oauth/token`.
    pub async fn token(
        &self,
        body: &[u8],
        basic: Option<(String, String)>,
    ) -> Result<Value, AuthzError> {
        token::token(self, body, basic, unix_now())
            .await
            .map_err(|e| match e {
                token::Failure::Token(t) => AuthzError::Token(t),
                token::Failure::Store(s) => AuthzError::Store(s),
            })
    }

    /// `POST /oauth/revoke` (RFC 7009).
    pub async fn revoke(
        &self,
        body: &[u8],
        basic: Option<(String, String)>,
    ) -> Result<(), AuthzError> {
        token::revoke(self, body, basic, unix_now())
            .await
            .map_err(|e| match e {
                token::Failure::Token(t) => AuthzError::Token(t),
                token::Failure::Store(s) => AuthzError::Store(s),
            })
    }
}

/// The claims we keep of an upstream sign-in (and put in our tokens).
fn kept_claims(claims: &Map<String, Value>, groups_claim: &str) -> Map<String, Value> {
    let mut kept = Map::new();
    for k in ["email", "email_verified", "name", "preferred_username"] {
        if let Some(v) = claims.get(k) {
            kept.insert(k.into(), v.clone());
        }
    }
    if let Some(Value::String(s)) = claims.get("email_verified") {
        kept.insert("email_verified".into(), Value::Bool(s == "true"));
    }
    let groups: Vec<Value> = match claims.get(groups_claim) {
        Some(Value::Array(a)) => a.iter().filter(|v| v.is_string()).cloned().collect(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        _ => vec![],
    };
    if groups.len() > MAX_GROUPS {
        tracing::warn!(
            groups = groups.len(),
            kept = MAX_GROUPS,
            "a user has more groups than a token carries; the rest are dropped"
        );
    }
    kept.insert(
        "groups".into(),
        Value::Array(groups.into_iter().take(MAX_GROUPS).collect()),
    );
    kept
}

/// Clients may refresh unless they said otherwise: absent `grant_types` counts as yes,
/// since documents often omit it and SDK clients never ask for `offline_access`.
fn may_refresh(grant_types: Option<&Value>) -> bool {
    match grant_types {
        Some(Value::Array(g)) => g.iter().any(|v| v == "refresh_token"),
        _ => true,
    }
}

fn loopback_only(uris: &[String]) -> bool {
    !uris.is_empty()
        && uris.iter().all(|u| {
            Url::parse(u)
                .is_ok_and(|u| u.scheme() == "http" && crate::auth::fetch::is_loopback_host(&u))
        })
}

/// `scheme://host[:port]` of a redirect, or `scheme:` for a private-use scheme (the CSP
/// form-action source that admits it).
fn origin_of(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    }
}

/// Appends parameters to a URI that may have a query of its own.
/// The PKCE S256 challenge of our verifier for the upstream leg.
pub(crate) fn s256(verifier: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

fn append_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut u) => {
            u.query_pairs_mut().extend_pairs(pairs);
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

pub(crate) fn new_secret(prefix: &str) -> Result<String, AuthzError> {
    rules::secret(prefix)
        .ok_or_else(|| AuthzError::Store(StoreError::Unavailable("no randomness".into())))
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A client as registered, for the token endpoint.
pub(crate) async fn registered_client(
    store: &Store,
    client_id: &str,
) -> Result<Option<ClientRecord>, StoreError> {
    store.client(client_id).await
}
