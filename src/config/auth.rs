//! How `wrap` authenticates callers: its flags, and their validation into the
//! [`AuthConfig`] of the resource side (issuers, resources, scopes, introspection, keys).

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::values::{parse_bytes, parse_duration};
use super::{ConfigError, VarLookup, WrapOptions, read_file, read_secret, read_text};
use crate::auth::{
    self, AuthConfig, CachePolicy, IntrospectionConfig, IssuerConfig, LocalIssuerConfig, Resource,
    Resources, ScopeRules, Secret,
};

/// Authentication of `wrap`: who issues the tokens we accept, and what they must say.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthOptions {
    /// Trusted authorization server (issuer identifier, exactly as tokens carry it in
    /// `iss`). Repeatable. Keys are found by RFC 8414 or OpenID discovery.
    #[arg(
        long = "issuer",
        env = "MCP_WARDEN_ISSUER",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub issuers: Vec<String>,

    /// Fetch the issuer's signing keys here instead of discovering them (needs exactly
    /// one --issuer).
    #[arg(long, env = "MCP_WARDEN_JWKS_URI", value_name = "URL")]
    pub jwks_uri: Option<String>,

    /// Also accept tokens whose `aud` holds this value, at every endpoint (besides each
    /// endpoint's own resource identifier). Repeatable.
    #[arg(
        long = "audience",
        env = "MCP_WARDEN_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    pub audiences: Vec<String>,

    /// Also accept tokens issued for the bare origin of --public-url (e.g.
    /// https://tools.example.com) at every endpoint. Only for an origin that serves nothing
    /// else: several services on one origin would all accept them. Refused behind a path
    /// prefix.
    #[arg(long, env = "MCP_WARDEN_ACCEPT_ORIGIN_AUDIENCE")]
    pub accept_origin_audience: bool,

    /// Scopes every request needs (space-separated; repeatable). Missing ones get 403
    /// insufficient_scope.
    #[arg(
        long = "required-scope",
        env = "MCP_WARDEN_REQUIRED_SCOPES",
        value_name = "SCOPES"
    )]
    pub required_scopes: Vec<String>,

    /// Scopes advertised in the resource metadata (space-separated). Default: the scopes
    /// the configuration names.
    #[arg(
        long = "scopes-supported",
        env = "MCP_WARDEN_SCOPES_SUPPORTED",
        value_name = "SCOPES"
    )]
    pub scopes_supported: Vec<String>,

    /// A broader scope that grants narrower ones: BROAD=NARROWER[ NARROWER...]. Repeatable;
    /// `;`-separated in the environment.
    #[arg(
        long = "scope-implies",
        env = "MCP_WARDEN_SCOPE_IMPLIES",
        value_delimiter = ';',
        value_name = "RULE"
    )]
    pub scope_implies: Vec<String>,

    /// Clock skew allowed when checking exp, nbf and iat.
    #[arg(long, env = "MCP_WARDEN_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    pub clock_skew: Duration,

    /// Longest access token accepted.
    #[arg(long, env = "MCP_WARDEN_MAX_TOKEN_BYTES", default_value = "8KiB", value_parser = parse_bytes)]
    pub max_token_bytes: usize,

    /// Accept JWT access tokens typed `JWT` or untyped, for authorization servers that do
    /// not set `typ: at+jwt` (RFC 9068).
    #[arg(long, env = "MCP_WARDEN_ACCEPT_UNTYPED_JWT")]
    pub accept_untyped_jwt: bool,

    /// File holding a shared secret (at least 32 bytes): enables HS256/384/512 tokens of
    /// the configured issuers. Asymmetric keys are preferable.
    #[arg(long, env = "MCP_WARDEN_HMAC_SECRET_FILE", value_name = "PATH")]
    pub hmac_secret_file: Option<PathBuf>,

    /// RFC 7662 introspection endpoint for opaque tokens. Default: from the first
    /// issuer's metadata, when introspection credentials are given.
    #[arg(long, env = "MCP_WARDEN_INTROSPECTION_ENDPOINT", value_name = "URL")]
    pub introspection_endpoint: Option<String>,

    /// Client id for introspection (HTTP Basic). The secret comes from
    /// --introspection-client-secret-file or MCP_WARDEN_INTROSPECTION_CLIENT_SECRET.
    #[arg(long, env = "MCP_WARDEN_INTROSPECTION_CLIENT_ID", value_name = "ID")]
    pub introspection_client_id: Option<String>,

    /// File holding the introspection client secret.
    #[arg(
        long,
        env = "MCP_WARDEN_INTROSPECTION_CLIENT_SECRET_FILE",
        value_name = "PATH"
    )]
    pub introspection_client_secret_file: Option<PathBuf>,

    /// How long an introspection answer is reused (never past the token's expiry).
    #[arg(long, env = "MCP_WARDEN_INTROSPECTION_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub introspection_cache_ttl: Duration,

    /// Signing keys are reused for at least this long, whatever Cache-Control says.
    #[arg(long, env = "MCP_WARDEN_JWKS_MIN_TTL", default_value = "1m", value_parser = parse_duration)]
    pub jwks_min_ttl: Duration,

    /// Signing keys are fetched again after at most this long.
    #[arg(long, env = "MCP_WARDEN_JWKS_MAX_TTL", default_value = "24h", value_parser = parse_duration)]
    pub jwks_max_ttl: Duration,

    /// At most one key fetch per issuer in this interval (unknown key ids, failures).
    #[arg(long, env = "MCP_WARDEN_JWKS_REFETCH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub jwks_refetch_interval: Duration,

    /// PEM bundle of CA certificates trusted for authorization servers, in addition to
    /// the system's.
    #[arg(long, env = "MCP_WARDEN_CA_BUNDLE", value_name = "PATH")]
    pub ca_bundle: Option<PathBuf>,

    /// Validated tokens remembered (by hash) to skip signature checks; 0 disables.
    #[arg(long, env = "MCP_WARDEN_TOKEN_CACHE_SIZE", default_value_t = 10_000)]
    pub token_cache_size: usize,

    /// `resource_name` in the resource metadata.
    #[arg(long, env = "MCP_WARDEN_RESOURCE_NAME")]
    pub resource_name: Option<String>,

    /// Run an embedded development issuer: prints a ready bearer token and a client
    /// configuration at startup. For local use.
    #[arg(long, env = "MCP_WARDEN_DEV")]
    pub dev: bool,

    /// Keep the development issuer's signing key in this file (created if missing), so
    /// tokens survive restarts and `mcp-warden token` can mint more.
    #[arg(long, env = "MCP_WARDEN_DEV_KEY_FILE", value_name = "PATH")]
    pub dev_key_file: Option<PathBuf>,

    /// Lifetime of the token printed by --dev.
    #[arg(long, env = "MCP_WARDEN_DEV_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub dev_token_ttl: Duration,

    /// Time an authorization server gets to answer (metadata, keys, introspection,
    /// exchange).
    #[arg(skip = Duration::from_secs(10))]
    pub http_timeout: Duration,
}

/// Secure by default: some authentication, or an explicit `--no-auth` on loopback only.
pub(super) fn check_auth_choice(o: &WrapOptions) -> Result<(), ConfigError> {
    let a = &o.auth;
    let configured = if !a.issuers.is_empty() {
        Some("--issuer")
    } else if a.jwks_uri.is_some() {
        Some("--jwks-uri")
    } else if a.dev {
        Some("--dev")
    } else if o.login.login_issuer.is_some() {
        Some("--login-issuer")
    } else if o.login.login_provider == super::login::LoginProvider::GitHub {
        Some("--login-provider github")
    } else {
        None
    };
    match (o.no_auth, configured) {
        (true, Some(flag)) => Err(ConfigError::NoAuthWithAuth(flag)),
        (true, None) if !o.listen.ip().is_loopback() => {
            Err(ConfigError::NoAuthOnPublicAddress(o.listen))
        }
        (false, None) => Err(ConfigError::NoAuth),
        _ => Ok(()),
    }
}

/// The PEM bundle of `--ca-bundle`, read.
pub(super) fn ca_bundle(a: &AuthOptions) -> Result<Option<Vec<u8>>, ConfigError> {
    a.ca_bundle
        .as_deref()
        .map(|p| read_file("CA bundle", p))
        .transpose()
}

/// The embedded development issuer's identifier: our own base URL (origin and prefix).
pub fn dev_issuer_id(public_url: &Url, prefix: &str) -> String {
    format!("{}{prefix}", public_url.origin().ascii_serialization())
}

fn secure_url(flag: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| ConfigError::BadUrl {
        flag,
        value: value.to_owned(),
    })?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigError::BadUrl {
            flag,
            value: value.to_owned(),
        });
    }
    if !auth::fetch::is_secure_endpoint(&url) {
        return Err(ConfigError::InsecureUrl {
            flag,
            value: value.to_owned(),
        });
    }
    Ok(url)
}

fn scope_list(flag: &'static str, lists: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for scope in lists.iter().flat_map(|l| l.split_whitespace()) {
        if !auth::scopes::is_scope_token(scope) {
            return Err(ConfigError::BadScope {
                flag,
                value: scope.to_owned(),
            });
        }
        if scope == "offline_access" {
            return Err(ConfigError::OfflineAccess(flag));
        }
        if !out.iter().any(|s| s == scope) {
            out.push(scope.to_owned());
        }
    }
    Ok(out)
}

/// Validates the authentication options and derives the resources we protect.
pub fn auth_config(
    a: &AuthOptions,
    env: &dyn VarLookup,
    public_url: &Url,
    prefix: &str,
    sse_path: Option<&str>,
    command_name: &str,
) -> Result<AuthConfig, ConfigError> {
    let mut issuers = Vec::new();
    for issuer in &a.issuers {
        secure_url("--issuer", issuer)?;
        issuers.push(IssuerConfig {
            issuer: issuer.clone(),
            jwks_uri: None,
        });
    }
    if let Some(jwks) = &a.jwks_uri {
        let url = secure_url("--jwks-uri", jwks)?;
        match issuers.as_mut_slice() {
            [only] => only.jwks_uri = Some(url),
            _ => return Err(ConfigError::JwksUriNeedsOneIssuer),
        }
    }
    let origin = public_url.origin().ascii_serialization();
    let resources = Resources {
        streamable: Resource::new(public_url, prefix),
        legacy: match sse_path {
            Some(p) => {
                let url = Url::parse(&format!("{origin}{prefix}{p}"))
                    .map_err(|_| ConfigError::BadPublicUrl(public_url.to_string()))?;
                Some(Resource::new(&url, prefix))
            }
            None => None,
        },
        // The origin is every instance's on it: its tokens open this one only when the
        // operator says the origin is this server's alone.
        origin: match (a.accept_origin_audience, prefix.is_empty()) {
            (false, _) => None,
            (true, false) => return Err(ConfigError::OriginAudienceBehindPrefix),
            (true, true) => {
                let url = Url::parse(&origin)
                    .map_err(|_| ConfigError::BadPublicUrl(public_url.to_string()))?;
                Some(Resource::new(&url, ""))
            }
        },
    };
    let mut extra_audiences = Vec::new();
    for aud in &a.audiences {
        if aud.trim().is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        extra_audiences.push(auth::resource_metadata::canonical_audience(aud).into_owned());
    }
    let required_scopes = scope_list("--required-scope", &a.required_scopes)?;
    let mut rules = Vec::new();
    for rule in &a.scope_implies {
        let bad = || ConfigError::BadImplication(rule.clone());
        let (broad, narrower) = rule.split_once('=').ok_or_else(bad)?;
        let broad = scope_list("--scope-implies", &[broad.to_owned()])?;
        let narrower = scope_list("--scope-implies", &[narrower.to_owned()])?;
        let [broad] = broad.as_slice() else {
            return Err(bad());
        };
        if narrower.is_empty() {
            return Err(bad());
        }
        rules.push((broad.clone(), narrower));
    }
    let scope_rules = ScopeRules::new(rules);
    let mut scopes_supported = scope_list("--scopes-supported", &a.scopes_supported)?;
    if scopes_supported.is_empty() {
        // Advertise what the configuration names.
        for s in required_scopes
            .iter()
            .map(String::as_str)
            .chain(scope_rules.mentioned())
        {
            if !scopes_supported.iter().any(|x| x == s) {
                scopes_supported.push(s.to_owned());
            }
        }
    }
    let introspection_client_secret = read_secret(
        "introspection client secret",
        a.introspection_client_secret_file.as_deref(),
        "MCP_WARDEN_INTROSPECTION_CLIENT_SECRET",
        env,
    )?;
    let introspection = match (&a.introspection_client_id, &introspection_client_secret) {
        (None, None) if a.introspection_endpoint.is_none() => None,
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            if issuers.is_empty() {
                return Err(ConfigError::IntrospectionWithoutIssuer);
            }
            Some(IntrospectionConfig {
                endpoint: a
                    .introspection_endpoint
                    .as_deref()
                    .map(|e| secure_url("--introspection-endpoint", e))
                    .transpose()?,
                client_id: id.clone(),
                client_secret: Secret::new(secret.clone()),
                cache_ttl: a.introspection_cache_ttl,
            })
        }
        _ => return Err(ConfigError::IntrospectionCredentials),
    };
    let hmac_secret = a
        .hmac_secret_file
        .as_deref()
        .map(|p| read_text("HMAC secret", p))
        .transpose()?;
    let hmac_secret = match &hmac_secret {
        None => None,
        Some(s) if s.trim_end().len() < 32 => return Err(ConfigError::HmacSecretTooShort),
        Some(_) if issuers.is_empty() => return Err(ConfigError::HmacWithoutIssuer),
        // A trailing newline from `echo > file` is not part of the secret.
        Some(s) => Some(Secret::new(s.trim_end_matches(['\r', '\n']))),
    };
    let dev = if a.dev {
        let issuer = dev_issuer_id(public_url, prefix);
        if !auth::fetch::is_secure_endpoint(public_url) {
            return Err(ConfigError::LocalIssuerInsecure(issuer));
        }
        Some(LocalIssuerConfig {
            issuer,
            key_file: a.dev_key_file.clone(),
            create_key: true,
            verification_key_files: vec![],
            dev: true,
        })
    } else {
        if a.dev_key_file.is_some() {
            return Err(ConfigError::DevKeyWithoutDev);
        }
        None
    };
    for (name, v) in [
        ("--max-token-bytes", a.max_token_bytes as u128),
        (
            "--jwks-refetch-interval",
            a.jwks_refetch_interval.as_millis(),
        ),
    ] {
        if v == 0 {
            return Err(ConfigError::Zero(name));
        }
    }
    Ok(AuthConfig {
        resources,
        extra_audiences,
        issuers,
        local: dev,
        required_scopes,
        scopes_supported,
        scope_rules,
        resource_name: a.resource_name.clone().unwrap_or_else(|| {
            if command_name.is_empty() {
                "MCP server".to_owned()
            } else {
                format!("MCP server ({command_name})")
            }
        }),
        leeway: a.clock_skew,
        max_token_bytes: a.max_token_bytes,
        accept_untyped_jwt: a.accept_untyped_jwt,
        hmac_secret,
        introspection,
        jwks: CachePolicy {
            min_ttl: a.jwks_min_ttl,
            max_ttl: a.jwks_max_ttl.max(a.jwks_min_ttl),
            refetch_interval: a.jwks_refetch_interval,
            ..CachePolicy::default()
        },
        extra_ca_pem: ca_bundle(a)?,
        http_timeout: a.http_timeout,
        token_cache_capacity: a.token_cache_size,
    })
}
