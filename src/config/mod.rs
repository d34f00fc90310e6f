//! Flags, environment and defaults → one validated, immutable configuration.
//!
//! The options types here are the command line (clap derives them; `cli` parses and
//! runs); [`WrapConfig::from_options`] validates them once and derives each component's own
//! sub-config. Files the options name are read here; the process environment only through
//! [`VarLookup`], so tests build configs from values.

pub mod auth;
pub mod file;
mod http;
pub mod login;
pub mod mcp_json;
pub mod replica;
mod sandbox;
#[cfg(test)]
pub(crate) mod tests;
pub mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

pub use self::auth::{AuthOptions, auth_config, dev_issuer_id};
pub use self::http::endpoint_url;
pub use self::sandbox::SandboxOptions;
use self::values::{RateSetting, parse_bytes, parse_duration, parse_rate_setting};
use crate::auth::AuthConfig;
use crate::auth::exchange::ExchangeSettings;
use crate::session::{PrincipalLimits, SessionConfig, StreamLimits};
use crate::transport::http::{HttpConfig, ServerLimits, TlsConfig};

/// The `wrap` command's options, as given (flags, environment, defaults): the one options
/// type, from the command line to [`WrapConfig::from_options`].
#[derive(Debug, Clone, clap::Args)]
pub struct WrapOptions {
    /// Address to listen on.
    #[arg(long, env = "MCP_WARDEN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics; no authentication). Must
    /// differ from --listen. Off by default.
    #[arg(long, env = "MCP_WARDEN_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Serve the activity page (`/ui`) on the admin listener: who is connected, what they
    /// call, what was refused or redacted; whoever reaches the listener may also end
    /// sessions there. Off by default.
    #[arg(long, env = "MCP_WARDEN_ADMIN_UI", requires = "admin_listen")]
    pub admin_ui: bool,

    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1). Reloaded when it changes.
    #[arg(long, env = "MCP_WARDEN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "MCP_WARDEN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "MCP_WARDEN_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// Path of the Streamable HTTP endpoint.
    #[arg(long, env = "MCP_WARDEN_PATH", default_value = "/mcp")]
    pub path: String,

    /// Public URL of the MCP endpoint as clients see it (e.g. https://tools.example.com/mcp),
    /// when behind a proxy. Default: http://<listen><path>.
    #[arg(long, env = "MCP_WARDEN_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Browser origin allowed to call the endpoint (scheme://host[:port], or *). Repeatable;
    /// comma-separated in the environment. Requests with any other Origin get 403. Loopback
    /// origins are allowed when listening on loopback.
    #[arg(
        long = "allowed-origin",
        env = "MCP_WARDEN_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Host name clients may use to reach a loopback listener, besides localhost, 127.0.0.1,
    /// [::1] and the public URL's host (repeatable). Other Host headers get 403. The admin
    /// listener's activity page answers to these names too (else only to IP addresses and
    /// localhost).
    #[arg(
        long = "allowed-host",
        env = "MCP_WARDEN_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Maximum number of concurrent sessions (each runs one server process); more get 503.
    #[arg(long, env = "MCP_WARDEN_MAX_SESSIONS", default_value_t = 64)]
    pub max_sessions: usize,

    /// Servers kept started ahead of demand, so a new session does not wait for one to
    /// start (0: none). Only when no server's environment depends on its caller (no
    /// --env-claim, --env-exchange or [[connection]]).
    #[arg(long, env = "MCP_WARDEN_SPARE", default_value_t = 0, value_name = "N")]
    pub spare: usize,

    /// Sessions one principal (issuer + subject) may hold at once, both transports
    /// together; more get 429. Default: 16, or half of --max-sessions when that is less.
    /// Not applied with --no-auth (every caller is the same anonymous principal).
    #[arg(long, env = "MCP_WARDEN_MAX_SESSIONS_PER_PRINCIPAL", value_name = "N")]
    pub max_sessions_per_principal: Option<usize>,

    /// How fast one principal may start sessions (N/s, N/min, N/h; N at once, then
    /// refilled), or "off"; faster starts get 429 with Retry-After. Not applied with
    /// --no-auth.
    #[arg(long, env = "MCP_WARDEN_SESSION_RATE_PER_PRINCIPAL", default_value = "30/min", value_name = "RATE", value_parser = parse_rate_setting)]
    pub session_rate_per_principal: RateSetting,

    /// End a session (and stop its server) after this long without requests or open streams.
    #[arg(long, env = "MCP_WARDEN_SESSION_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub session_idle_timeout: Duration,

    /// Largest JSON-RPC message accepted from a client (413 beyond) or from the server
    /// (dropped beyond). Accepts suffixes: KiB, MiB.
    #[arg(long, env = "MCP_WARDEN_MAX_MESSAGE_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    pub max_message_bytes: usize,

    /// Cancel a request at the server and answer with an error after this long.
    #[arg(long, env = "MCP_WARDEN_REQUEST_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Time a server's process tree gets to exit after SIGTERM before SIGKILL.
    #[arg(long, env = "MCP_WARDEN_KILL_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub kill_grace: Duration,

    /// On SIGTERM/SIGINT, time requests in flight get to finish before servers are stopped.
    #[arg(long, env = "MCP_WARDEN_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// A client must send each request's headers within this long after connecting (or after
    /// its previous request); the connection is closed otherwise (slow or idle clients).
    #[arg(long, env = "MCP_WARDEN_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A request body must arrive in full within this long after its headers; 408 otherwise.
    #[arg(long, env = "MCP_WARDEN_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_read_timeout: Duration,

    /// Interval of keep-alive comments on idle SSE streams.
    #[arg(long, env = "MCP_WARDEN_SSE_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    pub sse_keepalive: Duration,

    /// Do not serve the legacy HTTP+SSE transport (protocol 2024-11-05).
    #[arg(long, env = "MCP_WARDEN_NO_LEGACY_SSE")]
    pub no_legacy_sse: bool,

    /// Do not serve sessionless (2026-07-28) callers: their requests get the answer that
    /// makes dual-era clients fall back to `initialize`.
    #[arg(long, env = "MCP_WARDEN_NO_SESSIONLESS")]
    pub no_sessionless: bool,

    /// Path of the legacy SSE endpoint.
    #[arg(long, env = "MCP_WARDEN_SSE_PATH", default_value = "/sse")]
    pub sse_path: String,

    /// Path of the legacy message endpoint.
    #[arg(long, env = "MCP_WARDEN_MESSAGE_PATH", default_value = "/message")]
    pub message_path: String,

    /// Prefix of session ids (<replica-id>.<random>) so a load balancer can route follow-ups
    /// to this replica: 1-63 of a-z, 0-9 and '-'; empty for no prefix. Default: $POD_NAME or
    /// the host name, lower-cased, other characters turned into '-'.
    #[arg(long, env = "MCP_WARDEN_REPLICA_ID")]
    pub replica_id: Option<String>,

    /// Serve without authentication. Only allowed on a loopback address.
    #[arg(long, env = "MCP_WARDEN_NO_AUTH")]
    pub no_auth: bool,

    #[command(flatten)]
    pub auth: AuthOptions,

    #[command(flatten)]
    pub login: login::LoginOptions,

    /// Working directory of the server.
    #[arg(long, env = "MCP_WARDEN_CWD")]
    pub cwd: Option<PathBuf>,

    /// Policy and audit configuration (TOML; see examples/warden.toml). Validated at start:
    /// any error stops the sidecar.
    #[arg(long, env = "MCP_WARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Take the server (command, args, env, cwd) from this `mcpServers` JSON file, as MCP
    /// clients write it (Claude, Cursor, VS Code); select the entry with --server.
    #[arg(
        long,
        env = "MCP_WARDEN_FROM_MCP_JSON",
        value_name = "FILE",
        requires = "server",
        conflicts_with = "command"
    )]
    pub from_mcp_json: Option<PathBuf>,

    /// The entry of --from-mcp-json to run.
    #[arg(
        long,
        env = "MCP_WARDEN_SERVER",
        value_name = "NAME",
        requires = "from_mcp_json",
        conflicts_with = "command"
    )]
    pub server: Option<String>,

    #[command(flatten)]
    pub sandbox: SandboxOptions,

    /// The MCP server to run for each session, after `--`.
    #[arg(
        last = true,
        required_unless_present = "from_mcp_json",
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

/// Where the server's passed-through variables come from (the process environment in
/// production, a map in tests).
pub trait VarLookup {
    fn get(&self, name: &str) -> Option<OsString>;
    /// The host's name, for the default replica id.
    fn hostname(&self) -> Option<String> {
        None
    }
}

/// The real process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl VarLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    fn hostname(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
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
    /// How `--env-exchange` tokens are obtained (the app builds the client).
    pub exchange: Option<ExchangeSettings>,
    /// Users' upstream connections, when `--config` has `[[connection]]` entries.
    pub connections: Option<ConnectionsSetup>,
    /// The sidecar's own secret files, each with the setting that names it: no server may
    /// read them (checked against the sandbox profile before serving).
    pub own_files: Vec<(String, PathBuf)>,
}

/// What users' upstream connections run with.
#[derive(Debug, Clone)]
pub struct ConnectionsSetup {
    pub configs: Vec<crate::connections::ConnectionConfig>,
    /// The state key's text (`None`: an in-memory store, sealed with a key of the process).
    pub key: Option<crate::secret::Secret>,
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
    #[error(
        "--spare cannot be used with {0}: each server's environment then depends on its caller, and a spare is started before anyone calls"
    )]
    SpareWithCallerEnv(&'static str),
    #[error("--spare {spare} is more than --max-sessions {max}")]
    TooManySpares { spare: usize, max: usize },
    #[error("{0}")]
    Sandbox(String),
    #[error("{0}")]
    Env(String),
    #[error("paths collide: {0} and {1} are the same")]
    PathClash(&'static str, &'static str),
    #[error("{0}")]
    Login(String),
    /// A file the options name cannot be read (its path and why; never its content).
    #[error("{0}")]
    Read(String),
}

impl WrapConfig {
    /// Validates options and derives everything the components need.
    pub fn from_options(
        o: WrapOptions,
        env: &dyn VarLookup,
        helper_exe: PathBuf,
    ) -> Result<WrapConfig, ConfigError> {
        let mut o = o;
        // The server, as given after `--` or by an `mcpServers` entry.
        let mut imported_env = Vec::new();
        if let (Some(file), Some(server)) = (o.from_mcp_json.clone(), o.server.clone()) {
            let text = read_text("--from-mcp-json file", &file)?;
            let imported = mcp_json::import(&text, &server)
                .map_err(|e| ConfigError::Read(format!("cannot use {}: {e}", file.display())))?;
            for w in &imported.warnings {
                tracing::warn!("{w}");
            }
            o.command = imported.command;
            o.sandbox.env_pass.extend(imported.env_pass);
            o.cwd = o.cwd.take().or(imported.cwd);
            imported_env = imported.env;
        }
        if o.command.is_empty() {
            return Err(ConfigError::NoCommand);
        }
        auth::check_auth_choice(&o)?;
        if o.admin_listen
            .is_some_and(|a| a == o.listen && a.port() != 0)
        {
            return Err(ConfigError::AdminOnMcpPort(o.listen));
        }
        http::check_paths(&o)?;
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
        let replica_id = replica_id(&o, env)?;
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
        let http = http::http_config(&o, &public_url, &public_prefix)?;
        let file = o
            .config
            .as_deref()
            .map(file::load)
            .transpose()
            .map_err(|e| ConfigError::Read(e.to_string()))?;
        let connection_configs = file.as_ref().map_or(&[][..], |f| &f.connections[..]);
        let server = sandbox::server_setup(&o, &imported_env, connection_configs, env, helper_exe)?;
        // Without authentication every caller is one principal: only the global cap applies.
        let per_principal = (!o.no_auth).then(|| PrincipalLimits {
            max_sessions: o
                .max_sessions_per_principal
                .unwrap_or_else(|| default_sessions_per_principal(o.max_sessions)),
            rate: o.session_rate_per_principal.0,
        });
        if o.spare > 0 {
            if let Some(what) = server.env.depends_on_caller() {
                return Err(ConfigError::SpareWithCallerEnv(what));
            }
            if o.spare > o.max_sessions {
                return Err(ConfigError::TooManySpares {
                    spare: o.spare,
                    max: o.max_sessions,
                });
            }
        }
        let sessions = SessionConfig {
            max_sessions: o.max_sessions,
            per_principal,
            idle_timeout: o.session_idle_timeout,
            request_timeout: o.request_timeout,
            stream_limits: StreamLimits::default(),
            retained_streams: 32,
            replica_id,
            env: server.env,
            child: Arc::new(server.child),
            spares: o.spare,
        };
        let limits = ServerLimits {
            drain_timeout: o.drain_timeout,
            header_read_timeout: o.header_read_timeout,
            ..ServerLimits::default()
        };
        let mut auth: Option<AuthConfig> = if o.no_auth {
            None
        } else {
            let sse_path = (!o.no_legacy_sse).then_some(o.sse_path.as_str());
            Some(auth_config(
                &o.auth,
                env,
                &public_url,
                &public_prefix,
                sse_path,
                &sandbox::command_name(&o.command),
            )?)
        };
        let authz = match &mut auth {
            Some(a) => login::compile(
                &o.login,
                env,
                o.auth.dev,
                o.listen.ip().is_loopback(),
                &public_url,
                &public_prefix,
                a,
            )?,
            None => None,
        };
        let connections = connections_setup(&o, file.as_ref(), authz.as_ref())?;
        let own_files = own_files(&o, file.as_ref());
        Ok(WrapConfig {
            listen: o.listen,
            admin_listen: o.admin_listen,
            tls,
            http,
            server: limits,
            sessions,
            public_url,
            auth,
            authz,
            file,
            exchange: server.exchange,
            connections,
            own_files,
        })
    }
}

/// Users' upstream connections (`[[connection]]`), when the file has any: they belong to
/// the users of the built-in authorization server, and their tokens are sealed with the
/// state key.
fn connections_setup(
    o: &WrapOptions,
    file: Option<&file::FileConfig>,
    authz: Option<&login::AuthzSetup>,
) -> Result<Option<ConnectionsSetup>, ConfigError> {
    let configs = file.map(|f| f.connections.clone()).unwrap_or_default();
    if configs.is_empty() {
        if o.login.state_key_file.is_some() {
            return Err(ConfigError::Login(
                "--state-key-file seals connection tokens: it needs [[connection]] entries in --config".into(),
            ));
        }
        return Ok(None);
    }
    let Some(authz) = authz else {
        return Err(ConfigError::Login(
            "[[connection]] entries belong to users of the built-in sign-in server: give --login-issuer (or --dev)".into(),
        ));
    };
    let key = match &o.login.state_key_file {
        Some(path) => Some(crate::secret::Secret::new(
            read_text("--state-key-file", path)?.into_bytes(),
        )),
        None if matches!(authz.store, crate::store::StoreConfig::Memory) => None,
        None => {
            return Err(ConfigError::Login(
                "[[connection]] tokens are sealed with --state-key-file (32 random bytes, e.g. `openssl rand -base64 32 > key`), the same on every replica".into(),
            ));
        }
    };
    if let Some(k) = &key {
        crate::connections::Vault::from_key_text(k)
            .map_err(|e| ConfigError::Login(format!("--state-key-file: {e}")))?;
    }
    Ok(Some(ConnectionsSetup { configs, key }))
}

/// `--replica-id`, or by default `$POD_NAME` or the host name; an empty id turns the prefix
/// off (a single replica that needs no routing).
fn replica_id(o: &WrapOptions, env: &dyn VarLookup) -> Result<Option<String>, ConfigError> {
    let id = match &o.replica_id {
        Some(r) => Some(r.clone()),
        None => {
            let pod = env.get("POD_NAME").and_then(|p| p.into_string().ok());
            replica::default_id(pod.as_deref(), env.hostname().as_deref())
        }
    };
    let id = id.filter(|r| !r.is_empty());
    if let Some(r) = &id
        && !replica::is_valid(r)
    {
        return Err(ConfigError::BadReplicaId(r.clone()));
    }
    Ok(id)
}

/// The files holding the sidecar's own secrets (and its policy and audit log), each with the
/// setting that names it.
fn own_files(o: &WrapOptions, file: Option<&file::FileConfig>) -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = [
        ("--config", &o.config),
        ("--tls-cert", &o.tls_cert),
        ("--tls-key", &o.tls_key),
        ("--hmac-secret-file", &o.auth.hmac_secret_file),
        (
            "--introspection-client-secret-file",
            &o.auth.introspection_client_secret_file,
        ),
        ("--dev-key-file", &o.auth.dev_key_file),
        (
            "--login-client-secret-file",
            &o.login.login_client_secret_file,
        ),
        ("--signing-key-file", &o.login.signing_key_file),
        ("--state-key-file", &o.login.state_key_file),
        ("--state-url-file", &o.login.state_url_file),
        ("--from-mcp-json", &o.from_mcp_json),
        (
            "--exchange-client-secret-file",
            &o.sandbox.exchange_client_secret_file,
        ),
    ]
    .into_iter()
    .filter_map(|(flag, p)| p.as_ref().map(|p| (flag.to_owned(), p.clone())))
    .collect();
    // The audit log and its key, named by --config.
    if let Some(file) = file {
        files.extend(file.files.iter().cloned());
    }
    files
}

/// Sessions a principal holds at most by default: enough for many conversations at once,
/// never every session (except with a cap of one).
fn default_sessions_per_principal(max_sessions: usize) -> usize {
    max_sessions.div_ceil(2).clamp(1, 16)
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::Read(format!("cannot read the {what} {}: {e}", path.display())))
}

fn read_text(what: &str, path: &Path) -> Result<String, ConfigError> {
    String::from_utf8(read_file(what, path)?)
        .map_err(|_| ConfigError::Read(format!("the {what} {} is not UTF-8", path.display())))
}

/// A secret from its file (trimmed), else from the environment variable `var` (kept out of
/// the flags so it never shows in the process list).
fn read_secret(
    what: &str,
    file: Option<&Path>,
    var: &str,
    env: &dyn VarLookup,
) -> Result<Option<String>, ConfigError> {
    match file {
        Some(p) => Ok(Some(read_text(what, p)?.trim().to_owned())),
        None => Ok(env.get(var).and_then(|v| v.into_string().ok())),
    }
}
