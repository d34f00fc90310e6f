//! The authenticator: a bearer token in, a [`Principal`] or a typed [`Rejection`] out.
//!
//! JWTs are verified locally against the issuer's keys; other tokens go to introspection
//! when it is configured. A token is good only at the endpoint it was issued for: its `aud`
//! must name that endpoint's resource (RFC 8707), so the same token is checked anew at
//! another endpoint. Results are cached by token hash and endpoint, exactly until the token
//! would be refused anyway, and forgotten when the key that verified them leaves the key set.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use serde_json::{Map, Value};
use url::Url;

use super::Secret;
use super::challenge::Rejection;
use super::fetch::HttpClient;
use super::introspection;
use super::jwks::{CachePolicy, IssuerKeys, KeySource, VerifyKey};
use super::jwt::{self, ClaimRules, HeaderRules};
use super::principal::{Actor, Principal, PrincipalKind};
use super::resource_metadata::Resource;
use super::scopes::{self, ScopeRules};
use super::signer::{KeyFileError, LocalIssuer};

/// Authentication settings, validated, fixed at startup.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub resources: Resources,
    /// Audiences accepted at every endpoint besides its own resource identifier (canonical
    /// where they are URLs).
    pub extra_audiences: Vec<String>,
    /// Trusted issuers, each with its key source.
    pub issuers: Vec<IssuerConfig>,
    /// Our own issuer (`--dev`, the built-in authorization server).
    pub local: Option<LocalIssuerConfig>,
    /// Scopes every request needs.
    pub required_scopes: Vec<String>,
    /// Scopes advertised in resource metadata.
    pub scopes_supported: Vec<String>,
    pub scope_rules: ScopeRules,
    /// `resource_name` of the resource metadata.
    pub resource_name: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    pub max_token_bytes: usize,
    /// Accept JWTs typed `JWT` or untyped, not only `at+jwt`.
    pub accept_untyped_jwt: bool,
    /// Shared secret for HS256/384/512 tokens of the configured issuers.
    pub hmac_secret: Option<Secret>,
    pub introspection: Option<IntrospectionConfig>,
    pub jwks: CachePolicy,
    /// PEM certificates trusted besides the system roots for outbound TLS.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Timeout of each request to an authorization server.
    pub http_timeout: Duration,
    /// Validated tokens remembered (by hash); 0 disables the cache.
    pub token_cache_capacity: usize,
}

/// The protected resources we answer for (see `resource_metadata`).
#[derive(Debug, Clone)]
pub struct Resources {
    /// The Streamable HTTP endpoint: the canonical resource identifier.
    pub streamable: Resource,
    /// The legacy SSE endpoint, when served.
    pub legacy: Option<Resource>,
    /// The origin, only when the operator says it is ours alone
    /// (`--accept-origin-audience`): its tokens are then accepted at every endpoint.
    pub origin: Option<Resource>,
}

impl Resources {
    pub fn all(&self) -> impl Iterator<Item = &Resource> {
        std::iter::once(&self.streamable)
            .chain(self.legacy.as_ref())
            .chain(self.origin.as_ref())
    }

    /// The resource a request to `endpoint` is for.
    pub fn of(&self, endpoint: Endpoint) -> &Resource {
        match (endpoint, &self.legacy) {
            (Endpoint::Legacy, Some(legacy)) => legacy,
            _ => &self.streamable,
        }
    }
}

/// Which of our endpoints a token is presented at: each is a resource of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The Streamable HTTP endpoint (`/mcp`).
    Streamable,
    /// The legacy HTTP+SSE endpoints (`/sse` and `/message`).
    Legacy,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The issuer identifier, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// Fetch keys here instead of discovering `jwks_uri`.
    pub jwks_uri: Option<Url>,
}

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// The endpoint; discovered from the first issuer's metadata when `None`.
    pub endpoint: Option<Url>,
    pub client_id: String,
    pub client_secret: Secret,
    /// How long an answer is reused (never past the token's `exp`).
    pub cache_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct LocalIssuerConfig {
    /// The issuer identifier (our own base URL).
    pub issuer: String,
    /// Where the signing key is kept; in memory only when `None`.
    pub key_file: Option<PathBuf>,
    /// Create the key file when it does not exist. Off for a key shared by replicas: each
    /// would make its own.
    pub create_key: bool,
    /// Keys published and accepted, never used to sign (rotation).
    pub verification_key_files: Vec<PathBuf>,
    /// `--dev`: the startup banner prints a token.
    pub dev: bool,
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthInitError {
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    DevKey(#[from] KeyFileError),
}

/// Checks bearer tokens. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Authenticator {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    config: AuthConfig,
    /// The audiences accepted at the Streamable HTTP endpoint and at the legacy one,
    /// canonical.
    audiences: [Vec<String>; 2],
    /// What resource metadata lists as `authorization_servers`.
    authorization_servers: Vec<String>,
    issuers: Vec<Arc<IssuerKeys>>,
    issuer_ids: Vec<String>,
    hmac: Option<Arc<VerifyKey>>,
    http: Option<HttpClient>,
    local: Option<LocalIssuer>,
    header_rules: HeaderRules,
    cache: TokenCache,
}

impl Authenticator {
    /// No authentication (`--no-auth`): callers act as [`Principal::anonymous`].
    pub fn disabled() -> Authenticator {
        Authenticator { inner: None }
    }

    /// Sets up key sources and the development issuer. Fetches nothing yet (see
    /// [`Authenticator::warm_up`]).
    pub fn new(config: AuthConfig) -> Result<Authenticator, AuthInitError> {
        // Exactly one JWT crypto backend is compiled in; installing it explicitly keeps a
        // dependency that enables another one from turning verification into a panic.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let needs_http = !config.issuers.is_empty() || config.introspection.is_some();
        let http = if needs_http {
            Some(
                HttpClient::new(config.extra_ca_pem.as_deref(), config.http_timeout)
                    .map_err(AuthInitError::Tls)?,
            )
        } else {
            None
        };
        let mut issuers = Vec::new();
        let mut authorization_servers = Vec::new();
        for i in &config.issuers {
            let source = match &i.jwks_uri {
                Some(u) => KeySource::Jwks(u.clone()),
                None => KeySource::Discover,
            };
            issuers.push(Arc::new(IssuerKeys::new(
                i.issuer.clone(),
                source,
                config.jwks,
                http.clone(),
            )));
            authorization_servers.push(i.issuer.clone());
        }
        let local = match &config.local {
            None => None,
            Some(d) => {
                let local = match &d.key_file {
                    Some(path) if d.create_key => {
                        let (local, created) = LocalIssuer::load_or_create(&d.issuer, path)?;
                        if created {
                            tracing::info!(path = %path.display(), "created the signing key");
                        }
                        local
                    }
                    Some(path) => LocalIssuer::load(&d.issuer, path)?,
                    None => LocalIssuer::generate(&d.issuer)?,
                };
                let local = local.with_verification_keys(&d.verification_key_files)?;
                let keys = local.verify_keys()?.into_iter().map(Arc::new).collect();
                issuers.push(Arc::new(IssuerKeys::fixed(d.issuer.clone(), keys)));
                // Listed first: clients take the first authorization server (both SDKs do).
                authorization_servers.insert(0, d.issuer.clone());
                Some(local)
            }
        };
        let accepted = |own: Option<&Resource>| -> Vec<String> {
            let mut out: Vec<String> = own
                .into_iter()
                .chain(config.resources.origin.as_ref())
                .map(|r| r.id.clone())
                .collect();
            out.extend(config.extra_audiences.iter().cloned());
            out.dedup();
            out
        };
        // Without a legacy endpoint nothing is accepted there (nothing is served there).
        let audiences = [
            accepted(Some(&config.resources.streamable)),
            match &config.resources.legacy {
                Some(legacy) => accepted(Some(legacy)),
                None => Vec::new(),
            },
        ];
        let issuer_ids = issuers.iter().map(|i| i.issuer.clone()).collect();
        let inner = Inner {
            audiences,
            authorization_servers,
            issuer_ids,
            issuers,
            hmac: config
                .hmac_secret
                .as_ref()
                .map(|s| Arc::new(VerifyKey::hmac(s.expose()))),
            http,
            local,
            header_rules: HeaderRules {
                hmac: config.hmac_secret.is_some(),
                untyped: config.accept_untyped_jwt,
            },
            cache: TokenCache::new(config.token_cache_capacity),
            config,
        };
        Ok(Authenticator {
            inner: Some(Arc::new(inner)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn config(&self) -> Option<&AuthConfig> {
        self.inner.as_ref().map(|i| &i.config)
    }

    /// The issuers listed in resource metadata.
    pub fn authorization_servers(&self) -> &[String] {
        self.inner
            .as_ref()
            .map_or(&[], |i| i.authorization_servers.as_slice())
    }

    /// Our own issuer, with `--dev` or the built-in authorization server.
    pub fn local_issuer(&self) -> Option<&LocalIssuer> {
        self.inner.as_ref().and_then(|i| i.local.as_ref())
    }

    /// Our own issuer when it is the development one (`--dev`).
    pub fn dev_issuer(&self) -> Option<&LocalIssuer> {
        let inner = self.inner.as_ref()?;
        inner.config.local.as_ref().filter(|l| l.dev)?;
        inner.local.as_ref()
    }

    /// Discovers metadata and fetches keys of every issuer, so the first requests do not
    /// wait for it. Failures are logged; requests retry later.
    pub async fn warm_up(&self) {
        let Some(inner) = &self.inner else { return };
        for issuer in &inner.issuers {
            if issuer.is_static() {
                continue;
            }
            match issuer.refresh().await {
                Ok(()) => tracing::info!(issuer = %issuer.issuer, "signing keys loaded"),
                Err(e) => {
                    tracing::error!(issuer = %issuer.issuer, error = %e, "cannot load signing keys; tokens of this issuer are refused until it is reachable")
                }
            }
        }
    }

    /// Checks a bearer token presented at `endpoint` now.
    pub async fn authenticate(
        &self,
        token: &str,
        endpoint: Endpoint,
    ) -> Result<Arc<Principal>, Rejection> {
        self.authenticate_at(token, endpoint, SystemTime::now())
            .await
    }

    /// Checks a bearer token presented at `endpoint` at `now`.
    pub async fn authenticate_at(
        &self,
        token: &str,
        endpoint: Endpoint,
        now: SystemTime,
    ) -> Result<Arc<Principal>, Rejection> {
        let Some(inner) = &self.inner else {
            return Ok(Arc::new(Principal::anonymous()));
        };
        inner.authenticate(token, endpoint, unix(now)).await
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Inner {
    fn audiences(&self, endpoint: Endpoint) -> &[String] {
        match endpoint {
            Endpoint::Streamable => &self.audiences[0],
            Endpoint::Legacy => &self.audiences[1],
        }
    }

    async fn authenticate(
        &self,
        token: &str,
        endpoint: Endpoint,
        now: f64,
    ) -> Result<Arc<Principal>, Rejection> {
        if token.len() > self.config.max_token_bytes {
            return Err(Rejection::TokenTooLarge);
        }
        let hash = sha256(token);
        let key = (hash, endpoint);
        if let Some(hit) = self.cache.get(&key, now, &self.issuers) {
            return hit;
        }
        let audiences = self.audiences(endpoint);
        let looks_like_jwt = jwt::split(token).filter(|c| jwt::decode_json(c.header).is_ok());
        match (looks_like_jwt, &self.config.introspection) {
            (Some(parts), _) => {
                let (principal, not_after, keys) =
                    self.verify_jwt(parts, &hash, audiences, now).await?;
                let principal = Arc::new(principal);
                self.cache
                    .put(key, Ok(principal.clone()), not_after, Some(keys), now);
                Ok(principal)
            }
            (None, Some(intro)) => {
                let outcome = self.introspect(token, &hash, audiences, now).await;
                let until = match &outcome {
                    Ok((_, not_after)) => {
                        let ttl = now + intro.cache_ttl.as_secs_f64();
                        not_after.map_or(ttl, |t| t.min(ttl))
                    }
                    // Remember refusals briefly: a replayed bad token costs one call.
                    Err(Rejection::IssuerUnavailable) => now,
                    Err(_) => now + intro.cache_ttl.as_secs_f64().min(30.0),
                };
                let outcome = outcome.map(|(p, _)| Arc::new(p));
                self.cache.put(key, outcome.clone(), until, None, now);
                outcome
            }
            (None, None) => Err(Rejection::MalformedToken),
        }
    }

    async fn verify_jwt(
        &self,
        parts: jwt::Compact<'_>,
        hash: &[u8; 32],
        audiences: &[String],
        now: f64,
    ) -> Result<(Principal, f64, (usize, u64)), Rejection> {
        let header = jwt::parse_header(parts.header, self.header_rules)?;
        let claims = jwt::decode_json(parts.payload)?;
        let claimed = jwt::claimed_issuer(&claims)?;
        let index = self
            .issuer_ids
            .iter()
            .position(|i| i == claimed)
            .ok_or(Rejection::UnknownIssuer)?;
        let issuer = &self.issuers[index];
        // Read the epoch before looking keys up: a key dropped meanwhile makes the cached
        // result stale rather than letting it outlive the key.
        let epoch = issuer.epoch();
        let candidates = if jwt::is_hmac(header.alg) {
            vec![self.hmac.clone().ok_or(Rejection::AlgorithmNotAllowed)?]
        } else {
            issuer.candidates(header.kid.as_deref(), header.alg).await?
        };
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
            return Err(Rejection::BadSignature);
        }
        let not_after = jwt::check_claims(
            &claims,
            ClaimRules {
                issuer: &issuer.issuer,
                audiences,
                leeway: self.config.leeway.as_secs_f64(),
            },
            now,
        )?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let principal = self.principal(
            issuer.issuer.clone(),
            subject,
            claims,
            Some(not_after),
            hash,
        );
        Ok((principal, not_after, (index, epoch)))
    }

    async fn introspect(
        &self,
        token: &str,
        hash: &[u8; 32],
        audiences: &[String],
        now: f64,
    ) -> Result<(Principal, Option<f64>), Rejection> {
        let (Some(intro), Some(http)) = (&self.config.introspection, &self.http) else {
            return Err(Rejection::MalformedToken);
        };
        let first = self.issuers.first().ok_or(Rejection::IssuerUnavailable)?;
        let endpoint = match &intro.endpoint {
            Some(e) => e.clone(),
            None => first
                .metadata()
                .await
                .map_err(|e| {
                    tracing::warn!(issuer = %first.issuer, error = %e, "cannot discover the introspection endpoint");
                    Rejection::IssuerUnavailable
                })?
                .introspection_endpoint
                .clone()
                .ok_or_else(|| {
                    tracing::error!(issuer = %first.issuer, "the issuer's metadata has no introspection_endpoint; set --introspection-endpoint");
                    Rejection::IssuerUnavailable
                })?,
        };
        let resp = introspection::introspect(
            http,
            &endpoint,
            &intro.client_id,
            &intro.client_secret,
            token,
        )
        .await?;
        let checked = introspection::check(
            &resp,
            introspection::ResponseRules {
                issuer: &first.issuer,
                audiences,
                leeway: self.config.leeway.as_secs_f64(),
            },
            now,
        )?;
        let mut claims = resp;
        claims.remove("active");
        let mut principal = self.principal(
            checked.issuer,
            checked.subject,
            claims,
            checked.not_after,
            hash,
        );
        if checked.kind == PrincipalKind::Client {
            let named = Principal::client(principal.issuer.clone(), &principal.subject);
            principal.kind = named.kind;
            principal.subject = named.subject;
        }
        Ok((principal, checked.not_after))
    }

    fn principal(
        &self,
        issuer: String,
        subject: String,
        claims: Map<String, Value>,
        not_after: Option<f64>,
        hash: &[u8; 32],
    ) -> Principal {
        let granted = scopes::from_claims(&claims);
        let client_id = ["client_id", "azp"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
        let token_ref = match claims.get("jti").and_then(Value::as_str) {
            Some(jti)
                if (1..=64).contains(&jti.len()) && jti.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                format!("jti:{jti}")
            }
            _ => format!("sha256:{}", hex(&hash[..6])),
        };
        Principal {
            issuer,
            kind: PrincipalKind::Subject,
            subject,
            client_id,
            scopes: self.config.scope_rules.expand(granted),
            actors: actors(claims.get("act")),
            expires_at: not_after
                .and_then(|t| Duration::try_from_secs_f64(t).ok())
                .map(|d| UNIX_EPOCH + d),
            token_ref: Some(token_ref),
            claims: Arc::new(claims),
        }
    }
}

/// The `act` chain (RFC 8693 §4.1): each `act` may hold the previous actor's `act`.
fn actors(mut act: Option<&Value>) -> Vec<Actor> {
    let mut out = Vec::new();
    while let Some(Value::Object(a)) = act {
        if out.len() == 8 {
            break;
        }
        let text = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
        out.push(Actor {
            subject: text("sub").unwrap_or_default(),
            issuer: text("iss"),
            client_id: text("client_id"),
        });
        act = a.get("act");
    }
    out
}

/// A short, non-reversible reference to a token for logs: `sha256:` and the first 12 hex
/// digits of its hash.
pub fn token_fingerprint(token: &str) -> String {
    format!("sha256:{}", hex(&sha256(token)[..6]))
}

fn sha256(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a cached outcome is for: a token (by hash) at an endpoint.
type CacheKey = ([u8; 32], Endpoint);

/// Outcomes by token hash and endpoint (the token itself is never stored).
#[derive(Debug)]
struct TokenCache {
    map: RwLock<HashMap<CacheKey, Cached>>,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct Cached {
    outcome: Result<Arc<Principal>, Rejection>,
    /// Seconds since the epoch from which the entry is not used.
    until: f64,
    /// Issuer index and key epoch of a verified JWT.
    keys: Option<(usize, u64)>,
}

impl TokenCache {
    fn new(capacity: usize) -> TokenCache {
        TokenCache {
            map: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    fn get(
        &self,
        key: &CacheKey,
        now: f64,
        issuers: &[Arc<IssuerKeys>],
    ) -> Option<Result<Arc<Principal>, Rejection>> {
        if self.capacity == 0 {
            return None;
        }
        let map = self.map.read();
        let hit = map.get(key)?;
        if now >= hit.until {
            return None;
        }
        if let Some((index, epoch)) = hit.keys
            && issuers.get(index).is_none_or(|i| i.epoch() != epoch)
        {
            return None;
        }
        Some(hit.outcome.clone())
    }

    fn put(
        &self,
        key: CacheKey,
        outcome: Result<Arc<Principal>, Rejection>,
        until: f64,
        keys: Option<(usize, u64)>,
        now: f64,
    ) {
        if self.capacity == 0 || until <= now {
            return;
        }
        let mut map = self.map.write();
        if map.len() >= self.capacity {
            map.retain(|_, c| c.until > now);
            if map.len() >= self.capacity {
                // Full of live entries: start over rather than track recency on every hit.
                map.clear();
            }
        }
        map.insert(
            key,
            Cached {
                outcome,
                until,
                keys,
            },
        );
    }
}
