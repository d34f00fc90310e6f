//! Flags, environment and defaults → one validated, immutable configuration.
//!
//! `cli` parses; this module validates and derives (paths, URLs, origins, the server's
//! environment) and hands each component its own sub-config. Tests build configs from values;
//! nothing here reads the process environment except through [`VarLookup`].

pub mod file;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::auth::{
    self, AuthConfig, CachePolicy, IntrospectionConfig, IssuerConfig, LocalIssuerConfig, Resource,
    Resources, ScopeRules, Secret,
};
use crate::child::{ChildSpec, StderrLimits};
use crate::credentials::{EnvPlan, EnvSource};
use crate::sandbox::profile::{SandboxConfig, SandboxOverrides, SessionUids};
use crate::session::{PrincipalLimits, SessionConfig, SessionRate, StreamLimits};
use crate::transport::http::{HttpConfig, LegacyPaths, ServerLimits, TlsConfig};

pub mod login;
pub mod mcp_json;
pub mod replica;

/// The `wrap` command's settings as given (after flag/env/default resolution).
#[derive(Debug, Clone)]
pub struct WrapOptions {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_reload_interval: Duration,
    pub path: String,
    pub public_url: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub max_sessions: usize,
    /// `None`: the default, 16 or half of `max_sessions` when that is less.
    pub max_sessions_per_principal: Option<usize>,
    /// `None`: unlimited.
    pub session_rate_per_principal: Option<SessionRate>,
    pub session_idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub request_timeout: Duration,
    pub kill_grace: Duration,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub sse_keepalive: Duration,
    pub legacy_sse: bool,
    pub sse_path: String,
    pub message_path: String,
    pub replica_id: Option<String>,
    pub no_auth: bool,
    pub auth: AuthOptions,
    /// The built-in authorization server (`--login-issuer`, `--dev`).
    pub login: login::LoginOptions,
    pub cwd: Option<PathBuf>,
    pub sandbox: SandboxOptions,
    pub command: Vec<OsString>,
    /// The loaded `--config` file (policy, audit), if one was given.
    pub file: Option<file::FileConfig>,
}

/// The server's sandbox and environment, as given (flags, or a `[sandbox]` table of a
/// configuration file: the same field names, `env` as [`crate::credentials::EnvEntry`]s).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxOptions {
    /// `--sandbox NAME|PATH`.
    pub profile: String,
    /// Extra Landlock paths the server may read, or read and write.
    pub read: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    /// Run the server as this uid/gid (the sidecar must be root).
    pub user: Option<(u32, u32)>,
    /// `--sandbox-uids`: a uid per session (root sidecar).
    pub session_uids: SessionUids,
    /// Parent of the per-session work dirs.
    pub work_root: Option<PathBuf>,
    /// Variables passed from the sidecar's environment besides PATH, LANG and TZ.
    pub env_pass: Vec<String>,
    /// Loader variables (`LD_*`, `GCONV_PATH`, …) the server's environment may hold.
    pub env_allow_loader: Vec<String>,
    /// Injected variables.
    #[serde(deserialize_with = "env_entries")]
    pub env: Vec<EnvSource>,
    /// The sidecar's client credentials at the issuer, for `--env-exchange`.
    pub exchange_client_id: Option<String>,
    #[serde(skip)]
    pub exchange_client_secret: Option<Secret>,
    /// Token endpoint for exchanges (one issuer only); discovered from the metadata of the
    /// caller's token's issuer when `None`.
    pub exchange_token_endpoint: Option<String>,
}

/// The token-exchange client `--env-exchange` needs, when it is used: the sidecar's own
/// credentials at the issuers (each token is exchanged at its own issuer).
fn token_exchanger(
    o: &WrapOptions,
) -> Result<Option<Arc<dyn crate::credentials::TokenExchanger>>, ConfigError> {
    let sb = &o.sandbox;
    if !sb
        .env
        .iter()
        .any(|s| matches!(s, EnvSource::Exchange { .. }))
    {
        return Ok(None);
    }
    let need = |what: &str| ConfigError::Env(format!("--env-exchange needs {what}"));
    if o.auth.issuers.is_empty() {
        return Err(need("an authorization server (--issuer)"));
    }
    let (Some(id), Some(secret)) = (&sb.exchange_client_id, &sb.exchange_client_secret) else {
        return Err(need(
            "the sidecar's client credentials (--exchange-client-id and --exchange-client-secret-file)",
        ));
    };
    let endpoint = match &sb.exchange_token_endpoint {
        // One endpoint cannot serve several issuers: each vouches only for its own tokens.
        Some(_) if o.auth.issuers.len() > 1 => {
            return Err(ConfigError::Env(
                "--exchange-token-endpoint names the token endpoint of one issuer: give exactly one --issuer with it (with several, each one's is discovered)".into(),
            ));
        }
        Some(u) => Some(Url::parse(u).map_err(|_| need("an absolute --exchange-token-endpoint"))?),
        None => None,
    };
    let http = auth::fetch::HttpClient::new(o.auth.ca_bundle.as_deref(), o.auth.http_timeout)
        .map_err(ConfigError::Env)?;
    Ok(Some(Arc::new(auth::exchange::TokenExchangeClient::new(
        http,
        o.auth.issuers.clone(),
        endpoint,
        id.clone(),
        secret.clone(),
    ))))
}

fn env_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EnvSource>, D::Error> {
    let entries: Vec<crate::credentials::EnvEntry> = serde::Deserialize::deserialize(d)?;
    entries
        .into_iter()
        .map(|e| EnvSource::try_from(e).map_err(serde::de::Error::custom))
        .collect()
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            profile: "default".into(),
            read: vec![],
            read_write: vec![],
            user: None,
            session_uids: SessionUids::Auto,
            work_root: None,
            env_pass: vec![],
            env_allow_loader: vec![],
            env: vec![],
            exchange_client_id: None,
            exchange_client_secret: None,
            exchange_token_endpoint: None,
        }
    }
}

/// Where the server's passed-through variables come from (the process environment in
/// production, a map in tests).
pub trait VarLookup {
    fn get(&self, name: &str) -> Option<OsString>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl VarLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl<S: std::hash::BuildHasher> VarLookup for std::collections::HashMap<String, OsString, S> {
    fn get(&self, name: &str) -> Option<OsString> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// A configuration the sidecar can run with.
#[derive(Debug, Clone)]
pub struct WrapConfig {
    pub listen: SocketAddr,
    /// Probes and metrics, never on the MCP port.
    pub admin_listen: Option<SocketAddr>,
    /// TLS on the MCP listener.
    pub tls: Option<TlsConfig>,
    pub http: HttpConfig,
    pub server: ServerLimits,
    pub sessions: SessionConfig,
    /// The public URL of the MCP endpoint (what clients connect to).
    pub public_url: Url,
    /// `None` with `--no-auth`.
    pub auth: Option<AuthConfig>,
    /// The built-in authorization server, when one signs users in.
    pub authz: Option<login::AuthzSetup>,
    /// Policy and audit from `--config`.
    pub file: Option<file::FileConfig>,
}

/// A configuration that cannot work, with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no server command: use `mcp-warden wrap [OPTIONS] -- COMMAND [ARGS...]`")]
    NoCommand,
    #[error(
        "no authentication configured: pass --issuer URL (your authorization server), --login-issuer URL (sign users in through your identity provider), --dev (a local development issuer), or --no-auth to serve without authentication on a loopback address"
    )]
    NoAuth,
    #[error("--no-auth cannot be combined with {0}")]
    NoAuthWithAuth(&'static str),
    #[error("{flag} {value:?} is not an absolute http(s) URL without query or fragment")]
    BadUrl { flag: &'static str, value: String },
    #[error("{flag} {value:?} must use https (plain http only for a loopback host)")]
    InsecureUrl { flag: &'static str, value: String },
    #[error("--jwks-uri names the keys of one issuer: give exactly one --issuer with it")]
    JwksUriNeedsOneIssuer,
    #[error("{flag} {value:?} is not a valid scope (RFC 6749 §3.3)")]
    BadScope { flag: &'static str, value: String },
    #[error("{0} must not name offline_access: a resource server never asks for refresh tokens")]
    OfflineAccess(&'static str),
    #[error("--scope-implies {0:?} must be BROAD=NARROWER[ NARROWER...]")]
    BadImplication(String),
    #[error("--audience must not be empty")]
    EmptyAudience,
    #[error(
        "--accept-origin-audience: behind a path prefix the origin is shared with other services, and its tokens must not open this one"
    )]
    OriginAudienceBehindPrefix,
    #[error(
        "token introspection needs both --introspection-client-id and a client secret (--introspection-client-secret-file or MCP_WARDEN_INTROSPECTION_CLIENT_SECRET)"
    )]
    IntrospectionCredentials,
    #[error("token introspection asks the first --issuer; give one")]
    IntrospectionWithoutIssuer,
    #[error("the HMAC secret must be at least 32 bytes")]
    HmacSecretTooShort,
    #[error("HMAC-signed tokens are checked against --issuer; give one")]
    HmacWithoutIssuer,
    #[error("--dev-key-file needs --dev")]
    DevKeyWithoutDev,
    #[error(
        "the development issuer would be {0}, which is neither https nor loopback: listen on a loopback address or give an https --public-url"
    )]
    LocalIssuerInsecure(String),
    #[error(
        "--no-auth serves without authentication and is only allowed on a loopback address, not {0}"
    )]
    NoAuthOnPublicAddress(SocketAddr),
    #[error("{flag} must be an absolute path without query or fragment, got {value:?}")]
    BadPath { flag: &'static str, value: String },
    #[error("--public-url {0:?} is not an absolute http(s) URL without query or fragment")]
    BadPublicUrl(String),
    #[error("--allowed-origin {0:?} is not an origin (scheme://host[:port]) or *")]
    BadOrigin(String),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--replica-id {0:?} must be 1-63 characters of a-z, 0-9 and '-'")]
    BadReplicaId(String),
    #[error("--tls-cert and --tls-key go together")]
    TlsPair,
    #[error(
        "--admin-listen must not be the MCP address {0}: the admin endpoints are unauthenticated"
    )]
    AdminOnMcpPort(SocketAddr),
    #[error("{0}")]
    Sandbox(String),
    #[error("{0}")]
    Env(String),
    #[error("paths collide: {0} and {1} are the same")]
    PathClash(&'static str, &'static str),
    #[error("{0}")]
    Login(String),
}

impl WrapConfig {
    /// Validates options and derives everything the components need.
    pub fn from_options(
        o: WrapOptions,
        env: &dyn VarLookup,
        helper_exe: PathBuf,
    ) -> Result<WrapConfig, ConfigError> {
        let (command, args) = o.command.split_first().ok_or(ConfigError::NoCommand)?;
        check_auth_choice(&o)?;
        if o.admin_listen
            .is_some_and(|a| a == o.listen && a.port() != 0)
        {
            return Err(ConfigError::AdminOnMcpPort(o.listen));
        }
        check_path("--path", &o.path)?;
        if o.legacy_sse {
            check_path("--sse-path", &o.sse_path)?;
            check_path("--message-path", &o.message_path)?;
            if o.sse_path == o.path {
                return Err(ConfigError::PathClash("--sse-path", "--path"));
            }
            if o.message_path == o.path {
                return Err(ConfigError::PathClash("--message-path", "--path"));
            }
            if o.message_path == o.sse_path {
                return Err(ConfigError::PathClash("--message-path", "--sse-path"));
            }
        }
        for (name, v) in [
            ("--max-sessions", o.max_sessions as u128),
            (
                "--max-sessions-per-principal",
                o.max_sessions_per_principal.unwrap_or(1) as u128,
            ),
            ("--max-message-bytes", o.max_message_bytes as u128),
            ("--request-timeout", o.request_timeout.as_millis()),
            ("--session-idle-timeout", o.session_idle_timeout.as_millis()),
            ("--sse-keepalive", o.sse_keepalive.as_millis()),
            ("--header-read-timeout", o.header_read_timeout.as_millis()),
            ("--body-read-timeout", o.body_read_timeout.as_millis()),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        // An empty id turns the prefix off (a single replica that needs no routing).
        let replica_id = o.replica_id.clone().filter(|r| !r.is_empty());
        if let Some(r) = &replica_id
            && !replica::is_valid(r)
        {
            return Err(ConfigError::BadReplicaId(r.clone()));
        }
        let tls = match (&o.tls_cert, &o.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: o.tls_reload_interval,
            }),
            (None, None) => None,
            _ => return Err(ConfigError::TlsPair),
        };
        let (public_url, public_prefix) =
            endpoint_url(o.listen, &o.path, o.public_url.as_deref(), tls.is_some())?;
        let mut allowed_origins = Vec::new();
        for origin in &o.allowed_origins {
            allowed_origins.push(normalize_origin(origin)?);
        }
        if o.public_url.is_some() {
            allowed_origins.push(public_url.origin().ascii_serialization());
        }

        let sb = &o.sandbox;
        let sandbox = SandboxConfig::load(
            &sb.profile,
            SandboxOverrides {
                extra_read: sb.read.clone(),
                extra_read_write: sb.read_write.clone(),
                user: sb.user,
                session_uids: sb.session_uids,
            },
        )
        .map_err(|e| ConfigError::Sandbox(e.to_string()))?;
        if o.no_auth
            && let Some(s) = sb
                .env
                .iter()
                .find(|s| matches!(s, EnvSource::Claim { .. } | EnvSource::Exchange { .. }))
        {
            return Err(ConfigError::Env(format!(
                "{} comes from the caller's token, which --no-auth does not have",
                s.name()
            )));
        }
        let exchanger = token_exchanger(&o)?;
        let child_env = EnvPlan::allowing_loader(
            &sb.env_pass,
            &sb.env_allow_loader,
            &|n| env.get(n),
            sb.env.clone(),
            exchanger,
        )
        .map_err(|e| ConfigError::Env(e.to_string()))?;
        // A fresh name: a leftover of a killed sidecar with the same pid must not be reused.
        let work_root = sb.work_root.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; 6];
            let _ = getrandom::fill(&mut bytes);
            let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::env::temp_dir().join(format!("mcp-warden-{}-{tag}", std::process::id()))
        });

        let child = ChildSpec {
            command: command.clone(),
            args: args.to_vec(),
            path: child_env.passed("PATH").map(std::ffi::OsString::from),
            secret_files: child_env.secret_files(),
            injects_secrets: child_env.injects_secrets(),
            sandbox: Arc::new(sandbox),
            work_root,
            sandbox_status: std::sync::OnceLock::new(),
            session_uids: std::sync::OnceLock::new(),
            cwd: o.cwd.clone(),
            stdin_close_grace: o.kill_grace.min(Duration::from_secs(2)),
            kill_grace: o.kill_grace,
            max_line_bytes: o.max_message_bytes,
            stderr: StderrLimits::default(),
            helper_exe,
        };
        let http = HttpConfig {
            path: o.path.clone(),
            legacy: o.legacy_sse.then(|| LegacyPaths {
                sse: o.sse_path.clone(),
                message: o.message_path.clone(),
            }),
            public_prefix: public_prefix.clone(),
            allowed_origins,
            allow_loopback_origins: o.listen.ip().is_loopback(),
            allowed_hosts: o.listen.ip().is_loopback().then(|| {
                let mut hosts: Vec<String> =
                    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
                if let Some(h) = public_url.host_str() {
                    hosts.push(h.trim_matches(['[', ']']).to_ascii_lowercase());
                }
                hosts.extend(o.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
                hosts
            }),
            max_message_bytes: o.max_message_bytes,
            body_read_timeout: o.body_read_timeout,
            sse_keepalive: o.sse_keepalive,
            sse_retry: Duration::from_secs(1),
        };
        // Without authentication every caller is one principal: only the global cap applies.
        let per_principal = (!o.no_auth).then(|| PrincipalLimits {
            max_sessions: o
                .max_sessions_per_principal
                .unwrap_or_else(|| default_sessions_per_principal(o.max_sessions)),
            rate: o.session_rate_per_principal,
        });
        let sessions = SessionConfig {
            max_sessions: o.max_sessions,
            per_principal,
            idle_timeout: o.session_idle_timeout,
            request_timeout: o.request_timeout,
            stream_limits: StreamLimits::default(),
            retained_streams: 32,
            replica_id,
            env: child_env,
            child: Arc::new(child),
        };
        let server = ServerLimits {
            drain_timeout: o.drain_timeout,
            header_read_timeout: o.header_read_timeout,
            ..ServerLimits::default()
        };
        let mut auth = if o.no_auth {
            None
        } else {
            let sse_path = o.legacy_sse.then_some(o.sse_path.as_str());
            let name = Path::new(command)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some(auth_config(
                &o.auth,
                &public_url,
                &public_prefix,
                sse_path,
                &name,
            )?)
        };
        let authz = match &mut auth {
            Some(a) => login::compile(
                &o.login,
                o.auth.dev,
                o.listen.ip().is_loopback(),
                &public_url,
                &public_prefix,
                a,
            )?,
            None => None,
        };
        Ok(WrapConfig {
            listen: o.listen,
            admin_listen: o.admin_listen,
            tls,
            http,
            server,
            sessions,
            public_url,
            auth,
            authz,
            file: o.file,
        })
    }
}

/// Sessions a principal holds at most by default: enough for many conversations at once,
/// never every session (except with a cap of one).
fn default_sessions_per_principal(max_sessions: usize) -> usize {
    max_sessions.div_ceil(2).clamp(1, 16)
}

/// How `wrap` authenticates, as given (flags, environment, files already read).
#[derive(Debug, Clone)]
pub struct AuthOptions {
    pub issuers: Vec<String>,
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    /// Accept tokens for the bare origin at every endpoint (`--accept-origin-audience`): only
    /// for an origin that serves nothing else.
    pub accept_origin_audience: bool,
    /// Space-delimited scope lists (each entry may hold several scopes).
    pub required_scopes: Vec<String>,
    pub scopes_supported: Vec<String>,
    /// `BROAD=NARROWER[ NARROWER...]`.
    pub scope_implies: Vec<String>,
    pub leeway: Duration,
    pub max_token_bytes: usize,
    pub accept_untyped_jwt: bool,
    pub hmac_secret: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub introspection_client_id: Option<String>,
    pub introspection_client_secret: Option<String>,
    pub introspection_cache_ttl: Duration,
    pub jwks_min_ttl: Duration,
    pub jwks_max_ttl: Duration,
    pub jwks_refetch_interval: Duration,
    /// PEM certificates trusted besides the system roots.
    pub ca_bundle: Option<Vec<u8>>,
    pub dev: bool,
    pub dev_key_file: Option<PathBuf>,
    pub resource_name: Option<String>,
    pub token_cache_size: usize,
    pub http_timeout: Duration,
}

impl Default for AuthOptions {
    /// The command line's defaults, with no issuer.
    fn default() -> Self {
        let jwks = CachePolicy::default();
        AuthOptions {
            issuers: vec![],
            jwks_uri: None,
            audiences: vec![],
            accept_origin_audience: false,
            required_scopes: vec![],
            scopes_supported: vec![],
            scope_implies: vec![],
            leeway: Duration::from_secs(60),
            max_token_bytes: 8192,
            accept_untyped_jwt: false,
            hmac_secret: None,
            introspection_endpoint: None,
            introspection_client_id: None,
            introspection_client_secret: None,
            introspection_cache_ttl: Duration::from_secs(60),
            jwks_min_ttl: jwks.min_ttl,
            jwks_max_ttl: jwks.max_ttl,
            jwks_refetch_interval: jwks.refetch_interval,
            ca_bundle: None,
            dev: false,
            dev_key_file: None,
            resource_name: None,
            token_cache_size: 10_000,
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// Secure by default: some authentication, or an explicit `--no-auth` on loopback only.
fn check_auth_choice(o: &WrapOptions) -> Result<(), ConfigError> {
    let a = &o.auth;
    let configured = if !a.issuers.is_empty() {
        Some("--issuer")
    } else if a.jwks_uri.is_some() {
        Some("--jwks-uri")
    } else if a.dev {
        Some("--dev")
    } else if o.login.login_issuer.is_some() {
        Some("--login-issuer")
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

/// The public URL of the MCP endpoint and the path prefix a proxy puts before our paths:
/// `--public-url` when given, else `http(s)://<listen><path>`.
pub fn endpoint_url(
    listen: SocketAddr,
    path: &str,
    public_url: Option<&str>,
    https: bool,
) -> Result<(Url, String), ConfigError> {
    let scheme = if https { "https" } else { "http" };
    let url = match public_url {
        Some(u) => parse_public_url(u)?,
        None => Url::parse(&format!("{scheme}://{listen}{path}"))
            .map_err(|_| ConfigError::BadPublicUrl(path.to_owned()))?,
    };
    let public_path = url.path().trim_end_matches('/');
    let prefix = public_path
        .strip_suffix(path.trim_end_matches('/'))
        .unwrap_or("")
        .to_owned();
    Ok((url, prefix))
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
    let introspection = match (&a.introspection_client_id, &a.introspection_client_secret) {
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
    let hmac_secret = match &a.hmac_secret {
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
        leeway: a.leeway,
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
        extra_ca_pem: a.ca_bundle.clone(),
        http_timeout: a.http_timeout,
        token_cache_capacity: a.token_cache_size,
    })
}

fn check_path(flag: &'static str, value: &str) -> Result<(), ConfigError> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ']) || value.contains("//") {
        return Err(ConfigError::BadPath {
            flag,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn parse_public_url(s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s).map_err(|_| ConfigError::BadPublicUrl(s.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigError::BadPublicUrl(s.to_owned()));
    }
    Ok(url)
}

fn normalize_origin(s: &str) -> Result<String, ConfigError> {
    if s == "*" {
        return Ok(s.to_owned());
    }
    let url = Url::parse(s).map_err(|_| ConfigError::BadOrigin(s.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !matches!(url.path(), "" | "/")
    {
        return Err(ConfigError::BadOrigin(s.to_owned()));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn options() -> WrapOptions {
        WrapOptions {
            listen: "127.0.0.1:8080".parse().unwrap(),
            admin_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(10),
            path: "/mcp".into(),
            public_url: None,
            allowed_origins: vec![],
            allowed_hosts: vec![],
            max_sessions: 10,
            max_sessions_per_principal: None,
            session_rate_per_principal: None,
            session_idle_timeout: Duration::from_secs(60),
            max_message_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            kill_grace: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            sse_keepalive: Duration::from_secs(15),
            legacy_sse: true,
            sse_path: "/sse".into(),
            message_path: "/message".into(),
            replica_id: None,
            no_auth: true,
            auth: AuthOptions::default(),
            login: login::LoginOptions::default(),
            cwd: None,
            sandbox: SandboxOptions::default(),
            command: vec!["node".into(), "server.js".into()],
            file: None,
        }
    }

    fn build(o: WrapOptions) -> Result<WrapConfig, ConfigError> {
        let env: HashMap<String, OsString> = [
            ("PATH".to_owned(), OsString::from("/usr/bin")),
            ("SECRET".to_owned(), OsString::from("s3cr3t")),
        ]
        .into();
        WrapConfig::from_options(o, &env, "/proc/self/exe".into())
    }

    #[test]
    fn defaults_make_a_working_config() {
        let c = build(options()).unwrap();
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/mcp");
        assert!(c.http.allow_loopback_origins);
        assert_eq!(c.http.public_prefix, "");
    }

    #[tokio::test]
    async fn the_server_inherits_only_the_allow_list() {
        async fn resolve(c: WrapConfig) -> crate::credentials::SessionEnv {
            let principal = crate::auth::Principal::anonymous();
            let ctx = crate::credentials::SessionContext {
                principal: &principal,
                subject_token: None,
            };
            c.sessions.env.resolve(ctx).await.unwrap()
        }
        let env = resolve(build(options()).unwrap()).await;
        let names: Vec<_> = env.vars().map(|(k, _)| k.to_owned()).collect();
        assert_eq!(names, vec!["PATH".to_owned()]);
        let mut o = options();
        o.sandbox.env_pass = vec!["SECRET".into()];
        o.sandbox.env = vec![EnvSource::Value {
            name: "MODE".into(),
            value: "x".into(),
        }];
        let env = resolve(build(o).unwrap()).await;
        assert_eq!(env.get("SECRET").unwrap(), "s3cr3t");
        assert_eq!(env.get("MODE").unwrap(), "x");
    }

    #[test]
    fn sandbox_options_read_from_a_config_table() {
        let o: SandboxOptions = toml::from_str(
            r#"
            profile = "nonet"
            read = ["/data"]
            user = [1000, 1000]
            env_pass = ["LC_ALL"]
            env = [{ name = "API_KEY", file = "/run/secrets/key" }]
            "#,
        )
        .unwrap();
        assert_eq!(o.profile, "nonet");
        assert_eq!(o.user, Some((1000, 1000)));
        assert!(matches!(&o.env[0], EnvSource::File { name, .. } if name == "API_KEY"));
        assert_eq!(
            toml::from_str::<SandboxOptions>("").unwrap().profile,
            "default"
        );
        assert!(toml::from_str::<SandboxOptions>("profil = \"x\"").is_err());
        assert!(toml::from_str::<SandboxOptions>("env = [{ name = \"A\" }]").is_err());
    }

    #[test]
    fn sandbox_and_env_errors_are_reported() {
        let mut o = options();
        o.sandbox.profile = "paranoid".into();
        assert!(matches!(build(o), Err(ConfigError::Sandbox(_))));
        let mut o = options();
        o.sandbox.env = vec![EnvSource::Value {
            name: "HOME".into(),
            value: "/".into(),
        }];
        assert!(matches!(build(o), Err(ConfigError::Env(_))));
        let mut o = options();
        o.sandbox.env = vec![EnvSource::Claim {
            name: "USER".into(),
            claim: "sub".into(),
        }];
        assert!(matches!(build(o), Err(ConfigError::Env(_))));
        let c = build(options()).unwrap();
        assert_eq!(c.sessions.child.sandbox.name, "default");
    }

    #[test]
    fn no_auth_is_loopback_only_and_explicit() {
        let mut o = options();
        o.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(matches!(
            build(o),
            Err(ConfigError::NoAuthOnPublicAddress(_))
        ));
        let mut o = options();
        o.no_auth = false;
        assert_eq!(build(o).unwrap_err(), ConfigError::NoAuth);
    }

    fn with_issuer(issuer: &str) -> WrapOptions {
        let mut o = options();
        o.no_auth = false;
        o.auth.issuers = vec![issuer.into()];
        o
    }

    #[test]
    fn an_issuer_protects_the_endpoint_and_its_legacy_twin() {
        let c = build(with_issuer("https://as.example.com")).unwrap();
        let a = c.auth.unwrap();
        assert_eq!(a.resources.streamable.id, "http://127.0.0.1:8080/mcp");
        assert_eq!(a.resources.legacy.unwrap().id, "http://127.0.0.1:8080/sse");
        // The origin is an audience only on request.
        assert!(a.resources.origin.is_none());
        assert_eq!(a.issuers[0].issuer, "https://as.example.com");
        assert!(a.issuers[0].jwks_uri.is_none());
        assert_eq!(a.resource_name, "MCP server (node)");
    }

    #[test]
    fn behind_a_path_prefix_the_origin_is_not_claimed() {
        let mut o = with_issuer("https://as.example.com");
        o.public_url = Some("https://tools.example.com/team/mcp".into());
        let a = build(o).unwrap().auth.unwrap();
        assert_eq!(
            a.resources.streamable.id,
            "https://tools.example.com/team/mcp"
        );
        assert_eq!(
            a.resources.legacy.unwrap().id,
            "https://tools.example.com/team/sse"
        );
        assert!(a.resources.origin.is_none());
    }

    #[test]
    fn principals_hold_part_of_the_sessions_when_there_are_principals() {
        let mut o = with_issuer("https://as.example.com");
        o.max_sessions = 64;
        o.session_rate_per_principal = Some(SessionRate::parse("30/min").unwrap());
        let limits = build(o.clone()).unwrap().sessions.per_principal.unwrap();
        assert_eq!(limits.max_sessions, 16);
        assert_eq!(limits.rate, Some(SessionRate::parse("30/min").unwrap()));
        for (max, per) in [(4, 2), (5, 3), (2, 1), (1, 1), (1000, 16)] {
            o.max_sessions = max;
            let got = build(o.clone()).unwrap().sessions.per_principal.unwrap();
            assert_eq!(got.max_sessions, per, "--max-sessions {max}");
        }
        o.max_sessions_per_principal = Some(40);
        o.session_rate_per_principal = None;
        let limits = build(o).unwrap().sessions.per_principal.unwrap();
        assert_eq!((limits.max_sessions, limits.rate), (40, None));
        // Without authentication every caller is the one anonymous principal.
        let mut anonymous = options();
        anonymous.max_sessions_per_principal = Some(2);
        assert_eq!(build(anonymous).unwrap().sessions.per_principal, None);
    }

    #[test]
    fn the_origin_audience_is_opt_in_and_refused_behind_a_prefix() {
        let mut o = with_issuer("https://as.example.com");
        o.auth.accept_origin_audience = true;
        let a = build(o.clone()).unwrap().auth.unwrap();
        assert_eq!(a.resources.origin.unwrap().id, "http://127.0.0.1:8080");
        o.public_url = Some("https://tools.example.com/team/mcp".into());
        assert_eq!(
            build(o).unwrap_err(),
            ConfigError::OriginAudienceBehindPrefix
        );
    }

    #[test]
    fn token_exchange_needs_an_issuer_and_client_credentials() {
        let exchange = EnvSource::parse_exchange("API_TOKEN", "https://api.example/mcp").unwrap();
        let mut o = with_issuer("http://127.0.0.1:9000");
        o.sandbox.env = vec![exchange.clone()];
        let Err(ConfigError::Env(e)) = build(o.clone()) else {
            panic!("accepted without credentials")
        };
        assert!(e.contains("--exchange-client-id"), "{e}");
        o.sandbox.exchange_client_id = Some("sidecar".into());
        o.sandbox.exchange_client_secret = Some(Secret::new("s3cret-client"));
        let c = build(o.clone()).unwrap();
        assert!(c.sessions.env.injects_secrets());
        // The client secret never shows in a Debug rendering of the options.
        assert!(!format!("{o:?}").contains("s3cret-client"));
        // One explicit token endpoint cannot stand for several issuers.
        let mut several = o.clone();
        several.auth.issuers.push("http://127.0.0.1:9001".into());
        assert!(build(several.clone()).is_ok());
        several.sandbox.exchange_token_endpoint = Some("http://127.0.0.1:9000/token".into());
        let r = build(several);
        assert!(
            matches!(&r, Err(ConfigError::Env(e)) if e.contains("exactly one --issuer")),
            "{r:?}"
        );
        // The development issuer has no token endpoint to exchange at.
        let mut o = options();
        o.no_auth = false;
        o.auth.dev = true;
        o.sandbox.env = vec![exchange];
        o.sandbox.exchange_client_id = Some("sidecar".into());
        o.sandbox.exchange_client_secret = Some(Secret::new("x"));
        let r = build(o);
        assert!(
            matches!(&r, Err(ConfigError::Env(e)) if e.contains("--issuer")),
            "{r:?}"
        );
    }

    #[test]
    fn issuers_need_https_except_on_loopback() {
        assert!(build(with_issuer("http://127.0.0.1:9000")).is_ok());
        assert!(build(with_issuer("http://localhost:9000/realms/x")).is_ok());
        assert!(matches!(
            build(with_issuer("http://as.example.com")),
            Err(ConfigError::InsecureUrl {
                flag: "--issuer",
                ..
            })
        ));
        assert!(matches!(
            build(with_issuer("as.example.com")),
            Err(ConfigError::BadUrl { .. })
        ));
        let mut o = with_issuer("https://as.example.com");
        o.auth.jwks_uri = Some("http://keys.example.com/jwks".into());
        assert!(matches!(
            build(o),
            Err(ConfigError::InsecureUrl {
                flag: "--jwks-uri",
                ..
            })
        ));
    }

    #[test]
    fn jwks_uri_belongs_to_exactly_one_issuer() {
        let mut o = with_issuer("https://as.example.com");
        o.auth.jwks_uri = Some("https://as.example.com/keys".into());
        let a = build(o).unwrap().auth.unwrap();
        assert_eq!(
            a.issuers[0].jwks_uri.as_ref().unwrap().as_str(),
            "https://as.example.com/keys"
        );
        let mut o = options();
        o.no_auth = false;
        o.auth.jwks_uri = Some("https://as.example.com/keys".into());
        assert_eq!(build(o).unwrap_err(), ConfigError::JwksUriNeedsOneIssuer);
        let mut o = with_issuer("https://a.example");
        o.auth.issuers.push("https://b.example".into());
        o.auth.jwks_uri = Some("https://a.example/keys".into());
        assert_eq!(build(o).unwrap_err(), ConfigError::JwksUriNeedsOneIssuer);
    }

    #[test]
    fn no_auth_excludes_authentication_flags() {
        let mut o = with_issuer("https://as.example.com");
        o.no_auth = true;
        assert_eq!(
            build(o).unwrap_err(),
            ConfigError::NoAuthWithAuth("--issuer")
        );
        let mut o = options();
        o.auth.dev = true;
        assert_eq!(build(o).unwrap_err(), ConfigError::NoAuthWithAuth("--dev"));
        // Real authentication may listen anywhere.
        let mut o = with_issuer("https://as.example.com");
        o.listen = "0.0.0.0:8080".parse().unwrap();
        o.public_url = Some("https://tools.example.com/mcp".into());
        assert!(build(o).is_ok());
    }

    #[test]
    fn dev_issuer_is_our_base_url_and_loopback_or_https_only() {
        let mut o = options();
        o.no_auth = false;
        o.auth.dev = true;
        let a = build(o.clone()).unwrap().auth.unwrap();
        assert_eq!(a.local.unwrap().issuer, "http://127.0.0.1:8080");
        o.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(matches!(
            build(o.clone()),
            Err(ConfigError::LocalIssuerInsecure(_))
        ));
        o.public_url = Some("https://tools.example.com/team/mcp".into());
        let a = build(o).unwrap().auth.unwrap();
        assert_eq!(a.local.unwrap().issuer, "https://tools.example.com/team");
        let mut o = with_issuer("https://as.example.com");
        o.auth.dev_key_file = Some("/tmp/k".into());
        assert_eq!(build(o).unwrap_err(), ConfigError::DevKeyWithoutDev);
    }

    #[test]
    fn scopes_are_validated_and_advertised() {
        let mut o = with_issuer("https://as.example.com");
        o.auth.required_scopes = vec!["mcp:tools".into()];
        o.auth.scope_implies = vec!["mcp:admin=mcp:tools mcp:read".into()];
        let a = build(o.clone()).unwrap().auth.unwrap();
        assert_eq!(a.required_scopes, vec!["mcp:tools"]);
        assert_eq!(
            a.scopes_supported,
            vec!["mcp:tools", "mcp:admin", "mcp:read"]
        );
        assert!(
            a.scope_rules
                .expand(["mcp:admin".to_owned()])
                .contains("mcp:read")
        );
        o.auth.scopes_supported = vec!["a b".into()];
        assert_eq!(
            build(o.clone()).unwrap().auth.unwrap().scopes_supported,
            vec!["a", "b"]
        );
        o.auth.required_scopes = vec!["offline_access".into()];
        assert_eq!(
            build(o.clone()).unwrap_err(),
            ConfigError::OfflineAccess("--required-scope")
        );
        o.auth.required_scopes = vec!["bad\"scope".into()];
        assert!(matches!(
            build(o.clone()),
            Err(ConfigError::BadScope { .. })
        ));
        o.auth.required_scopes = vec![];
        o.auth.scope_implies = vec!["nothing".into()];
        assert!(matches!(build(o), Err(ConfigError::BadImplication(_))));
    }

    #[test]
    fn introspection_needs_credentials_and_an_issuer() {
        let mut o = with_issuer("https://as.example.com");
        o.auth.introspection_client_id = Some("rs".into());
        assert_eq!(
            build(o.clone()).unwrap_err(),
            ConfigError::IntrospectionCredentials
        );
        o.auth.introspection_client_secret = Some("s".into());
        let a = build(o.clone()).unwrap().auth.unwrap();
        let i = a.introspection.unwrap();
        assert_eq!(i.client_secret.expose(), "s");
        assert!(
            !format!("{i:?}").contains("\"s\""),
            "secrets are not printed"
        );
        o.auth.introspection_endpoint = Some("http://as.example.com/introspect".into());
        assert!(matches!(build(o), Err(ConfigError::InsecureUrl { .. })));
    }

    #[test]
    fn hmac_secrets_must_be_long() {
        let mut o = with_issuer("https://as.example.com");
        o.auth.hmac_secret = Some("short\n".into());
        assert_eq!(
            build(o.clone()).unwrap_err(),
            ConfigError::HmacSecretTooShort
        );
        o.auth.hmac_secret = Some(format!("{}\n", "k".repeat(32)));
        let a = build(o).unwrap().auth.unwrap();
        assert_eq!(a.hmac_secret.unwrap().expose(), "k".repeat(32));
    }

    #[test]
    fn invalid_values_are_refused_precisely() {
        let mut o = options();
        o.path = "mcp".into();
        assert!(matches!(
            build(o),
            Err(ConfigError::BadPath { flag: "--path", .. })
        ));
        let mut o = options();
        o.public_url = Some("ftp://x/mcp".into());
        assert!(matches!(build(o), Err(ConfigError::BadPublicUrl(_))));
        let mut o = options();
        o.allowed_origins = vec!["https://ok.example/path".into()];
        assert!(matches!(build(o), Err(ConfigError::BadOrigin(_))));
        let mut o = options();
        o.replica_id = Some("Bad_ID".into());
        assert!(matches!(build(o), Err(ConfigError::BadReplicaId(_))));
        let mut o = options();
        o.max_sessions = 0;
        assert_eq!(build(o).unwrap_err(), ConfigError::Zero("--max-sessions"));
        let mut o = options();
        o.max_sessions_per_principal = Some(0);
        assert_eq!(
            build(o).unwrap_err(),
            ConfigError::Zero("--max-sessions-per-principal")
        );
        let mut o = options();
        o.sse_path = "/mcp".into();
        assert!(matches!(build(o), Err(ConfigError::PathClash(..))));
        let mut o = options();
        o.admin_listen = Some(o.listen);
        assert!(matches!(build(o), Err(ConfigError::AdminOnMcpPort(_))));
        let mut o = options();
        o.command = vec![];
        assert_eq!(build(o).unwrap_err(), ConfigError::NoCommand);
    }

    #[test]
    fn an_empty_replica_id_means_no_prefix() {
        let mut o = options();
        o.replica_id = Some(String::new());
        assert_eq!(build(o).unwrap().sessions.replica_id, None);
        let mut o = options();
        o.replica_id = Some("mcp-warden-1".into());
        assert_eq!(
            build(o).unwrap().sessions.replica_id.as_deref(),
            Some("mcp-warden-1")
        );
    }

    #[test]
    fn public_url_sets_the_legacy_prefix_and_an_allowed_origin() {
        let mut o = options();
        o.public_url = Some("https://tools.example.com/team/mcp".into());
        let c = build(o).unwrap();
        assert_eq!(c.http.public_prefix, "/team");
        assert!(
            c.http
                .allowed_origins
                .contains(&"https://tools.example.com".to_owned())
        );
    }
}
