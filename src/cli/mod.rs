//! Command line: `mcp-warden wrap [OPTIONS] -- COMMAND [ARGS...]`. The only place clap and
//! anyhow are used.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::auth::signer::{LocalIssuer, TokenRequest};
use crate::config::{
    self, AuthOptions, ProcessEnv, SandboxOptions, WrapConfig, WrapOptions, mcp_json, replica,
};
use crate::credentials::EnvSource;
use crate::telemetry::{self, LogFormat};

mod login;

#[derive(Debug, Parser)]
#[command(
    name = "mcp-warden",
    version,
    about = "Publish a local STDIO MCP server as a protected MCP Streamable HTTP endpoint",
    long_about = None,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve an MCP server that speaks STDIO over MCP Streamable HTTP (and HTTP+SSE), one
    /// server process per session.
    #[command(
        after_help = "Example:\n  mcp-warden wrap --no-auth -- npx -y @modelcontextprotocol/server-everything"
    )]
    Wrap(Box<WrapArgs>),
    /// Mint an access token from the development issuer's key file (see `wrap --dev`).
    #[command(
        after_help = "Example:\n  mcp-warden token --dev-key-file dev-key.pem --sub alice --scope \"mcp:tools\""
    )]
    Token(Box<TokenArgs>),
    /// Copy this (static) binary to DIR/mcp-warden: lets an init container inject mcp-warden
    /// into an unmodified server image through a shared volume, with no shell or cp.
    Install {
        /// Directory to copy the binary into (created if missing).
        dir: PathBuf,
    },
    /// Validate a config file (policy and audit sections) and exit: 0 when valid, 2 with
    /// FILE:LINE:COLUMN errors otherwise.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create an ES256 signing key for the sign-in server (--signing-key-file), mode 0600.
    Keygen {
        /// The key file to create (never overwritten).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an audit log: exit 0 when its chain is intact and complete; 1 naming the
    /// first modified, inserted or deleted record, or every gap (records dropped, a run not
    /// closed, a cut tail); 2 when it cannot be read.
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
        /// The HMAC key file the log was written with, if any.
        #[arg(long)]
        hmac_key_file: Option<PathBuf>,
        /// The anchor file holding the log's head. Default: FILE.anchor, when it exists.
        #[arg(long, value_name = "PATH")]
        anchor: Option<PathBuf>,
        /// The log is still being written: its last run may be open.
        #[arg(long)]
        live: bool,
    },
}

#[derive(Debug, Args)]
struct WrapArgs {
    /// Address to listen on.
    #[arg(long, env = "MCP_WARDEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics; no authentication). Must
    /// differ from --listen. Off by default.
    #[arg(long, env = "MCP_WARDEN_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,

    /// Once serving, write the bound addresses to this file, one a line: `listen=ADDR`, and
    /// `admin=ADDR` with --admin-listen. How a supervisor (or a test) learns the port of
    /// `--listen …:0`. Replaced whole, never seen half-written.
    #[arg(long, value_name = "FILE")]
    port_file: Option<PathBuf>,

    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1). Reloaded when it changes.
    #[arg(long, env = "MCP_WARDEN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "MCP_WARDEN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "MCP_WARDEN_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    tls_reload_interval: Duration,

    /// Path of the Streamable HTTP endpoint.
    #[arg(long, env = "MCP_WARDEN_PATH", default_value = "/mcp")]
    path: String,

    /// Public URL of the MCP endpoint as clients see it (e.g. https://tools.example.com/mcp),
    /// when behind a proxy. Default: http://<listen><path>.
    #[arg(long, env = "MCP_WARDEN_PUBLIC_URL")]
    public_url: Option<String>,

    /// Browser origin allowed to call the endpoint (scheme://host[:port], or *). Repeatable;
    /// comma-separated in the environment. Requests with any other Origin get 403. Loopback
    /// origins are allowed when listening on loopback.
    #[arg(
        long = "allowed-origin",
        env = "MCP_WARDEN_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// Host name clients may use to reach a loopback listener, besides localhost, 127.0.0.1,
    /// [::1] and the public URL's host (repeatable). Other Host headers get 403.
    #[arg(
        long = "allowed-host",
        env = "MCP_WARDEN_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,

    /// Maximum number of concurrent sessions (each runs one server process); more get 503.
    #[arg(long, env = "MCP_WARDEN_MAX_SESSIONS", default_value_t = 64)]
    max_sessions: usize,

    /// Sessions one principal (issuer + subject) may hold at once, both transports
    /// together; more get 429. Default: 16, or half of --max-sessions when that is less.
    /// Not applied with --no-auth (every caller is the same anonymous principal).
    #[arg(long, env = "MCP_WARDEN_MAX_SESSIONS_PER_PRINCIPAL", value_name = "N")]
    max_sessions_per_principal: Option<usize>,

    /// How fast one principal may start sessions (N/s, N/min, N/h; N at once, then
    /// refilled), or "off"; faster starts get 429 with Retry-After. Not applied with
    /// --no-auth.
    #[arg(long, env = "MCP_WARDEN_SESSION_RATE_PER_PRINCIPAL", default_value = "30/min", value_name = "RATE", value_parser = parse_session_rate)]
    session_rate_per_principal: SessionRateArg,

    /// End a session (and stop its server) after this long without requests or open streams.
    #[arg(long, env = "MCP_WARDEN_SESSION_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    session_idle_timeout: Duration,

    /// Largest JSON-RPC message accepted from a client (413 beyond) or from the server
    /// (dropped beyond). Accepts suffixes: KiB, MiB.
    #[arg(long, env = "MCP_WARDEN_MAX_MESSAGE_BYTES", default_value = "4MiB", value_parser = parse_bytes)]
    max_message_bytes: usize,

    /// Cancel a request at the server and answer with an error after this long.
    #[arg(long, env = "MCP_WARDEN_REQUEST_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    request_timeout: Duration,

    /// Time a server's process tree gets to exit after SIGTERM before SIGKILL.
    #[arg(long, env = "MCP_WARDEN_KILL_GRACE", default_value = "5s", value_parser = parse_duration)]
    kill_grace: Duration,

    /// On SIGTERM/SIGINT, time requests in flight get to finish before servers are stopped.
    #[arg(long, env = "MCP_WARDEN_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// A client must send each request's headers within this long after connecting (or after
    /// its previous request); the connection is closed otherwise (slow or idle clients).
    #[arg(long, env = "MCP_WARDEN_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,

    /// A request body must arrive in full within this long after its headers; 408 otherwise.
    #[arg(long, env = "MCP_WARDEN_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    body_read_timeout: Duration,

    /// Interval of keep-alive comments on idle SSE streams.
    #[arg(long, env = "MCP_WARDEN_SSE_KEEPALIVE", default_value = "15s", value_parser = parse_duration)]
    sse_keepalive: Duration,

    /// Do not serve the legacy HTTP+SSE transport (protocol 2024-11-05).
    #[arg(long, env = "MCP_WARDEN_NO_LEGACY_SSE")]
    no_legacy_sse: bool,

    /// Path of the legacy SSE endpoint.
    #[arg(long, env = "MCP_WARDEN_SSE_PATH", default_value = "/sse")]
    sse_path: String,

    /// Path of the legacy message endpoint.
    #[arg(long, env = "MCP_WARDEN_MESSAGE_PATH", default_value = "/message")]
    message_path: String,

    /// Prefix of session ids (<replica-id>.<random>) so a load balancer can route follow-ups
    /// to this replica: 1-63 of a-z, 0-9 and '-'; empty for no prefix. Default: $POD_NAME or
    /// the host name, lower-cased, other characters turned into '-'.
    #[arg(long, env = "MCP_WARDEN_REPLICA_ID")]
    replica_id: Option<String>,

    /// Serve without authentication. Only allowed on a loopback address.
    #[arg(long, env = "MCP_WARDEN_NO_AUTH")]
    no_auth: bool,

    #[command(flatten)]
    auth: AuthArgs,

    #[command(flatten)]
    login: login::LoginArgs,

    /// Working directory of the server.
    #[arg(long, env = "MCP_WARDEN_CWD")]
    cwd: Option<PathBuf>,

    /// Policy and audit configuration (TOML; see examples/warden.toml). Validated at start:
    /// any error stops the sidecar.
    #[arg(long, env = "MCP_WARDEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log format: plain or json.
    #[arg(long, env = "MCP_WARDEN_LOG_FORMAT", default_value = "plain")]
    log_format: LogFormat,

    /// Log filter (tracing directives, e.g. info or mcp_warden=debug).
    #[arg(long, env = "MCP_WARDEN_LOG", default_value = "info")]
    log_level: String,

    /// Runtime worker threads. Default: the CPUs this process may run on.
    #[arg(long, env = "MCP_WARDEN_WORKER_THREADS")]
    worker_threads: Option<usize>,

    /// Take the server (command, args, env, cwd) from this `mcpServers` JSON file, as MCP
    /// clients write it (Claude, Cursor, VS Code); select the entry with --server.
    #[arg(
        long,
        env = "MCP_WARDEN_FROM_MCP_JSON",
        value_name = "FILE",
        requires = "server",
        conflicts_with = "command"
    )]
    from_mcp_json: Option<PathBuf>,

    /// The entry of --from-mcp-json to run.
    #[arg(
        long,
        env = "MCP_WARDEN_SERVER",
        value_name = "NAME",
        requires = "from_mcp_json",
        conflicts_with = "command"
    )]
    server: Option<String>,

    #[command(flatten)]
    sandbox: SandboxArgs,

    /// The MCP server to run for each session, after `--`.
    #[arg(
        last = true,
        required_unless_present = "from_mcp_json",
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

/// The server's sandbox and environment.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sandbox and server environment")]
struct SandboxArgs {
    /// Sandbox profile: default, nonet, strict, none, or a path to a profile file
    /// (see sandbox/README.md).
    #[arg(
        long,
        env = "MCP_WARDEN_SANDBOX",
        default_value = "default",
        value_name = "NAME|PATH"
    )]
    sandbox: String,

    /// Also let the server read (and execute) under this path (repeatable).
    #[arg(long = "sandbox-read", value_name = "PATH")]
    sandbox_read: Vec<PathBuf>,

    /// Also let the server read and write under this path (repeatable).
    #[arg(long = "sandbox-write", value_name = "PATH")]
    sandbox_write: Vec<PathBuf>,

    /// Run the server as this user (UID[:GID]); the sidecar must run as root.
    #[arg(long = "sandbox-user", env = "MCP_WARDEN_SANDBOX_USER", value_name = "UID[:GID]", value_parser = parse_user)]
    sandbox_user: Option<(u32, u32)>,

    /// A uid (and gid) of its own for each session's server, when the sidecar runs as root:
    /// auto (from 60514-61183, unless the server's files are closed to other users: then
    /// the sidecar's uid, with a warning), off, or FIRST-LAST (always; no start otherwise).
    #[arg(
        long = "sandbox-uids",
        env = "MCP_WARDEN_SANDBOX_UIDS",
        default_value = "auto",
        value_name = "auto|off|FIRST-LAST"
    )]
    sandbox_uids: crate::sandbox::profile::SessionUids,

    /// Directory holding the per-session work dirs (HOME and TMPDIR of each server).
    /// Default: a new directory under the system temporary directory.
    #[arg(long = "work-root", env = "MCP_WARDEN_WORK_ROOT", value_name = "DIR")]
    work_root: Option<PathBuf>,

    /// Pass this variable of the sidecar's environment to the server (repeatable). The server
    /// otherwise gets only PATH, LANG, TZ, HOME and TMPDIR (its work dir) and what is injected.
    #[arg(
        long = "env-pass",
        env = "MCP_WARDEN_ENV_PASS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    env_pass: Vec<String>,

    /// Let the server's environment hold this loader variable (LD_*, GCONV_PATH,
    /// GLIBC_TUNABLES, …; repeatable). Refused otherwise: they decide what the C library
    /// loads before the server's own code runs.
    #[arg(
        long = "env-allow-loader",
        env = "MCP_WARDEN_ENV_ALLOW_LOADER",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    env_allow_loader: Vec<String>,

    /// Set a non-secret variable in the server's environment (repeatable). The value is
    /// visible in the process list: use --env-file for secrets.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,

    /// Inject a secret read from a file when each session starts (repeatable), e.g. a
    /// mounted Kubernetes Secret.
    #[arg(long = "env-file", value_name = "NAME=PATH", value_parser = parse_env)]
    env_file: Vec<(String, String)>,

    /// Inject a claim of the session principal's token (sub, iss, client_id, scope, …).
    #[arg(long = "env-claim", value_name = "NAME=CLAIM", value_parser = parse_env)]
    env_claim: Vec<(String, String)>,

    /// Inject a token obtained by RFC 8693 token exchange of the caller's token for this
    /// audience (needs an authorization server with client credentials).
    #[arg(long = "env-exchange", value_name = "NAME=AUDIENCE[,scope=S]", value_parser = parse_env)]
    env_exchange: Vec<(String, String)>,

    /// The sidecar's client id at the issuer for --env-exchange (HTTP Basic). The secret
    /// comes from --exchange-client-secret-file or MCP_WARDEN_EXCHANGE_CLIENT_SECRET.
    #[arg(long, env = "MCP_WARDEN_EXCHANGE_CLIENT_ID", value_name = "ID")]
    exchange_client_id: Option<String>,

    /// File holding the token-exchange client secret.
    #[arg(
        long,
        env = "MCP_WARDEN_EXCHANGE_CLIENT_SECRET_FILE",
        value_name = "PATH"
    )]
    exchange_client_secret_file: Option<PathBuf>,

    /// Token endpoint for --env-exchange (with one --issuer). Default: from the metadata of
    /// the issuer of the caller's token, where each token is exchanged.
    #[arg(long, env = "MCP_WARDEN_EXCHANGE_TOKEN_ENDPOINT", value_name = "URL")]
    exchange_token_endpoint: Option<String>,
}

impl SandboxArgs {
    fn into_options(self) -> anyhow::Result<SandboxOptions> {
        let mut env = Vec::new();
        env.extend(
            self.env
                .into_iter()
                .map(|(name, value)| EnvSource::Value { name, value }),
        );
        env.extend(
            self.env_file
                .into_iter()
                .map(|(name, path)| EnvSource::File {
                    name,
                    path: path.into(),
                }),
        );
        env.extend(
            self.env_claim
                .into_iter()
                .map(|(name, claim)| EnvSource::Claim { name, claim }),
        );
        for (name, spec) in self.env_exchange {
            env.push(EnvSource::parse_exchange(&name, &spec)?);
        }
        let exchange_client_secret = match &self.exchange_client_secret_file {
            Some(p) => Some(
                secret_file("token exchange client secret", p)?
                    .trim()
                    .to_owned(),
            ),
            // Kept out of the flags so it never shows in the process list.
            None => std::env::var("MCP_WARDEN_EXCHANGE_CLIENT_SECRET").ok(),
        }
        .map(crate::auth::Secret::new);
        Ok(SandboxOptions {
            exchange_client_id: self.exchange_client_id,
            exchange_client_secret,
            exchange_token_endpoint: self.exchange_token_endpoint,
            profile: self.sandbox,
            read: self.sandbox_read,
            read_write: self.sandbox_write,
            user: self.sandbox_user,
            session_uids: self.sandbox_uids,
            work_root: self.work_root,
            env_pass: self.env_pass,
            env_allow_loader: self.env_allow_loader,
            env,
        })
    }
}

/// Authentication of `wrap`: who issues the tokens we accept, and what they must say.
#[derive(Debug, Args)]
#[command(next_help_heading = "Authentication")]
struct AuthArgs {
    /// Trusted authorization server (issuer identifier, exactly as tokens carry it in
    /// `iss`). Repeatable. Keys are found by RFC 8414 or OpenID discovery.
    #[arg(
        long = "issuer",
        env = "MCP_WARDEN_ISSUER",
        value_delimiter = ',',
        value_name = "URL"
    )]
    issuers: Vec<String>,

    /// Fetch the issuer's signing keys here instead of discovering them (needs exactly
    /// one --issuer).
    #[arg(long, env = "MCP_WARDEN_JWKS_URI", value_name = "URL")]
    jwks_uri: Option<String>,

    /// Also accept tokens whose `aud` holds this value, at every endpoint (besides each
    /// endpoint's own resource identifier). Repeatable.
    #[arg(
        long = "audience",
        env = "MCP_WARDEN_AUDIENCE",
        value_delimiter = ',',
        value_name = "AUD"
    )]
    audiences: Vec<String>,

    /// Also accept tokens issued for the bare origin of --public-url (e.g.
    /// https://tools.example.com) at every endpoint. Only for an origin that serves nothing
    /// else: several services on one origin would all accept them. Refused behind a path
    /// prefix.
    #[arg(long, env = "MCP_WARDEN_ACCEPT_ORIGIN_AUDIENCE")]
    accept_origin_audience: bool,

    /// Scopes every request needs (space-separated; repeatable). Missing ones get 403
    /// insufficient_scope.
    #[arg(
        long = "required-scope",
        env = "MCP_WARDEN_REQUIRED_SCOPES",
        value_name = "SCOPES"
    )]
    required_scopes: Vec<String>,

    /// Scopes advertised in the resource metadata (space-separated). Default: the scopes
    /// the configuration names.
    #[arg(
        long = "scopes-supported",
        env = "MCP_WARDEN_SCOPES_SUPPORTED",
        value_name = "SCOPES"
    )]
    scopes_supported: Vec<String>,

    /// A broader scope that grants narrower ones: BROAD=NARROWER[ NARROWER...]. Repeatable;
    /// `;`-separated in the environment.
    #[arg(
        long = "scope-implies",
        env = "MCP_WARDEN_SCOPE_IMPLIES",
        value_delimiter = ';',
        value_name = "RULE"
    )]
    scope_implies: Vec<String>,

    /// Clock skew allowed when checking exp, nbf and iat.
    #[arg(long, env = "MCP_WARDEN_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    clock_skew: Duration,

    /// Longest access token accepted.
    #[arg(long, env = "MCP_WARDEN_MAX_TOKEN_BYTES", default_value = "8KiB", value_parser = parse_bytes)]
    max_token_bytes: usize,

    /// Accept JWT access tokens typed `JWT` or untyped, for authorization servers that do
    /// not set `typ: at+jwt` (RFC 9068).
    #[arg(long, env = "MCP_WARDEN_ACCEPT_UNTYPED_JWT")]
    accept_untyped_jwt: bool,

    /// File holding a shared secret (at least 32 bytes): enables HS256/384/512 tokens of
    /// the configured issuers. Asymmetric keys are preferable.
    #[arg(long, env = "MCP_WARDEN_HMAC_SECRET_FILE", value_name = "PATH")]
    hmac_secret_file: Option<PathBuf>,

    /// RFC 7662 introspection endpoint for opaque tokens. Default: from the first
    /// issuer's metadata, when introspection credentials are given.
    #[arg(long, env = "MCP_WARDEN_INTROSPECTION_ENDPOINT", value_name = "URL")]
    introspection_endpoint: Option<String>,

    /// Client id for introspection (HTTP Basic). The secret comes from
    /// --introspection-client-secret-file or MCP_WARDEN_INTROSPECTION_CLIENT_SECRET.
    #[arg(long, env = "MCP_WARDEN_INTROSPECTION_CLIENT_ID", value_name = "ID")]
    introspection_client_id: Option<String>,

    /// File holding the introspection client secret.
    #[arg(
        long,
        env = "MCP_WARDEN_INTROSPECTION_CLIENT_SECRET_FILE",
        value_name = "PATH"
    )]
    introspection_client_secret_file: Option<PathBuf>,

    /// How long an introspection answer is reused (never past the token's expiry).
    #[arg(long, env = "MCP_WARDEN_INTROSPECTION_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    introspection_cache_ttl: Duration,

    /// Signing keys are reused for at least this long, whatever Cache-Control says.
    #[arg(long, env = "MCP_WARDEN_JWKS_MIN_TTL", default_value = "1m", value_parser = parse_duration)]
    jwks_min_ttl: Duration,

    /// Signing keys are fetched again after at most this long.
    #[arg(long, env = "MCP_WARDEN_JWKS_MAX_TTL", default_value = "24h", value_parser = parse_duration)]
    jwks_max_ttl: Duration,

    /// At most one key fetch per issuer in this interval (unknown key ids, failures).
    #[arg(long, env = "MCP_WARDEN_JWKS_REFETCH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    jwks_refetch_interval: Duration,

    /// PEM bundle of CA certificates trusted for authorization servers, in addition to
    /// the system's.
    #[arg(long, env = "MCP_WARDEN_CA_BUNDLE", value_name = "PATH")]
    ca_bundle: Option<PathBuf>,

    /// Validated tokens remembered (by hash) to skip signature checks; 0 disables.
    #[arg(long, env = "MCP_WARDEN_TOKEN_CACHE_SIZE", default_value_t = 10_000)]
    token_cache_size: usize,

    /// `resource_name` in the resource metadata.
    #[arg(long, env = "MCP_WARDEN_RESOURCE_NAME")]
    resource_name: Option<String>,

    /// Run an embedded development issuer: prints a ready bearer token and a client
    /// configuration at startup. For local use.
    #[arg(long, env = "MCP_WARDEN_DEV")]
    dev: bool,

    /// Keep the development issuer's signing key in this file (created if missing), so
    /// tokens survive restarts and `mcp-warden token` can mint more.
    #[arg(long, env = "MCP_WARDEN_DEV_KEY_FILE", value_name = "PATH")]
    dev_key_file: Option<PathBuf>,

    /// Lifetime of the token printed by --dev.
    #[arg(long, env = "MCP_WARDEN_DEV_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    dev_token_ttl: Duration,
}

/// `mcp-warden token`.
#[derive(Debug, Args)]
struct TokenArgs {
    /// The development issuer's key file (as given to `wrap --dev --dev-key-file`).
    #[arg(long, env = "MCP_WARDEN_DEV_KEY_FILE", value_name = "PATH")]
    dev_key_file: PathBuf,

    /// Subject of the token.
    #[arg(long, default_value = "dev")]
    sub: String,

    /// Scopes granted (space-separated; repeatable).
    #[arg(long = "scope", value_name = "SCOPES")]
    scopes: Vec<String>,

    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,

    /// `client_id` claim of the token.
    #[arg(long, default_value = "mcp-warden-token")]
    client_id: String,

    /// `aud` of the token: the resource it is for. Default: the Streamable HTTP endpoint's
    /// URL; a legacy HTTP+SSE client needs the /sse URL.
    #[arg(long, value_name = "URL")]
    audience: Option<String>,

    /// The `wrap` instance's --listen (the token's issuer and audience derive from it).
    #[arg(long, env = "MCP_WARDEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The `wrap` instance's --path.
    #[arg(long, env = "MCP_WARDEN_PATH", default_value = "/mcp")]
    path: String,

    /// The `wrap` instance's --public-url.
    #[arg(long, env = "MCP_WARDEN_PUBLIC_URL")]
    public_url: Option<String>,

    /// The `wrap` instance's --tls-cert (only whether it is set matters: https URLs).
    #[arg(long, env = "MCP_WARDEN_TLS_CERT", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
}

fn read_file(what: &str, path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn secret_file(what: &str, path: &std::path::Path) -> anyhow::Result<String> {
    String::from_utf8(read_file(what, path)?)
        .with_context(|| format!("the {what} {} is not UTF-8", path.display()))
}

impl AuthArgs {
    fn options(&self) -> anyhow::Result<AuthOptions> {
        let introspection_client_secret = match &self.introspection_client_secret_file {
            Some(p) => Some(
                secret_file("introspection client secret", p)?
                    .trim()
                    .to_owned(),
            ),
            // Kept out of the flags so it never shows in the process list.
            None => std::env::var("MCP_WARDEN_INTROSPECTION_CLIENT_SECRET").ok(),
        };
        Ok(AuthOptions {
            issuers: self.issuers.clone(),
            jwks_uri: self.jwks_uri.clone(),
            audiences: self.audiences.clone(),
            accept_origin_audience: self.accept_origin_audience,
            required_scopes: self.required_scopes.clone(),
            scopes_supported: self.scopes_supported.clone(),
            scope_implies: self.scope_implies.clone(),
            leeway: self.clock_skew,
            max_token_bytes: self.max_token_bytes,
            accept_untyped_jwt: self.accept_untyped_jwt,
            hmac_secret: self
                .hmac_secret_file
                .as_deref()
                .map(|p| secret_file("HMAC secret", p))
                .transpose()?,
            introspection_endpoint: self.introspection_endpoint.clone(),
            introspection_client_id: self.introspection_client_id.clone(),
            introspection_client_secret,
            introspection_cache_ttl: self.introspection_cache_ttl,
            jwks_min_ttl: self.jwks_min_ttl,
            jwks_max_ttl: self.jwks_max_ttl,
            jwks_refetch_interval: self.jwks_refetch_interval,
            ca_bundle: self
                .ca_bundle
                .as_deref()
                .map(|p| read_file("CA bundle", p))
                .transpose()?,
            dev: self.dev,
            dev_key_file: self.dev_key_file.clone(),
            resource_name: self.resource_name.clone(),
            token_cache_size: self.token_cache_size,
            http_timeout: AuthOptions::default().http_timeout,
        })
    }
}

fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not UID[:GID]");
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    Ok((u.parse().map_err(|_| bad())?, g.parse().map_err(|_| bad())?))
}

/// `--session-rate-per-principal`: a rate, or `off`.
#[derive(Debug, Clone, Copy)]
struct SessionRateArg(Option<crate::session::SessionRate>);

fn parse_session_rate(s: &str) -> Result<SessionRateArg, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(SessionRateArg(None));
    }
    crate::session::SessionRate::parse(s).map(|r| SessionRateArg(Some(r)))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 5m, 1h)"))
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 65536, 512KiB, 4MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    n.checked_mul(factor).ok_or_else(|| "size too large".into())
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

/// Runs the command line. Errors are printed here; the return value is the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Wrap(args) => report(wrap(*args)),
        Command::Token(args) => report(token(&args)),
        Command::Install { dir } => report(install(&dir)),
        Command::Keygen { file } => report(login::keygen(&file)),
        Command::CheckConfig { file } => check_config(&file),
        Command::Audit(AuditCommand::Verify {
            file,
            hmac_key_file,
            anchor,
            live,
        }) => audit_verify(&file, hmac_key_file.as_deref(), anchor.as_deref(), live),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain, for operators; never a secret (none is in any error message).
            eprintln!("mcp-warden: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match crate::config::file::load(file) {
        Ok(cfg) => {
            let audit = match &cfg.audit {
                Some(a) => match &a.output {
                    crate::audit::Output::Stdout => "audit to stdout".into(),
                    crate::audit::Output::File(p) => format!("audit to {}", p.display()),
                },
                None => "no audit".into(),
            };
            say(&format!(
                "{}: ok ({}; {audit})",
                file.display(),
                cfg.policy.summary()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn audit_verify(
    file: &std::path::Path,
    key_file: Option<&std::path::Path>,
    anchor_file: Option<&std::path::Path>,
    live: bool,
) -> ExitCode {
    let key = match key_file.map(std::fs::read) {
        None => None,
        Some(Ok(k)) => Some(k.trim_ascii().to_vec()),
        Some(Err(e)) => {
            eprintln!("mcp-warden: cannot read the HMAC key file: {e}");
            return ExitCode::from(2);
        }
    };
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("mcp-warden: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let default_anchor = crate::config::file::default_anchor(file);
    let (anchor_path, required) = match anchor_file {
        Some(p) => (p.to_path_buf(), true),
        None => (default_anchor, false),
    };
    let anchor = match std::fs::read_to_string(&anchor_path) {
        Ok(text) => match crate::audit::Anchor::parse(&text) {
            Some(a) => Some(a),
            None => {
                eprintln!(
                    "{}: TAMPERED: the anchor {} is not an anchor",
                    file.display(),
                    anchor_path.display()
                );
                return ExitCode::from(1);
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => {
            eprintln!("mcp-warden: {}: {e}", anchor_path.display());
            return ExitCode::from(2);
        }
    };
    let expect = crate::audit::Expect { anchor, live };
    match crate::audit::verify(reader, &crate::audit::Hasher::new(key), &expect) {
        Ok(report) => {
            let head = &report.head;
            if report.gaps.is_empty() {
                say(&format!(
                    "{}: ok: {} records, head seq {} hash {}",
                    file.display(),
                    head.records,
                    head.seq,
                    head.hash
                ));
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "{}: INCOMPLETE: {} records intact, head seq {} hash {}, and {} gap(s):",
                file.display(),
                head.records,
                head.seq,
                head.hash,
                report.gaps.len()
            );
            for gap in &report.gaps {
                eprintln!("  {gap}");
            }
            ExitCode::from(1)
        }
        Err(broken) => {
            eprintln!("{}: TAMPERED: {broken}", file.display());
            ExitCode::from(1)
        }
    }
}

fn install(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join("mcp-warden");
    // Copy, then rename: a container starting on the volume never sees half a binary.
    let partial = dir.join(".mcp-warden.partial");
    std::fs::copy("/proc/self/exe", &partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    eprintln!("mcp-warden: installed {}", target.display());
    Ok(())
}

fn wrap(mut args: WrapArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level).map_err(anyhow::Error::msg)?;
    let scrub = args.sandbox.env.clone();
    // The sidecar's own secret files: no server may read them (checked against the profile).
    let mut secret_files: Vec<(String, PathBuf)> = [
        ("--config", &args.config),
        ("--tls-cert", &args.tls_cert),
        ("--tls-key", &args.tls_key),
        ("--hmac-secret-file", &args.auth.hmac_secret_file),
        (
            "--introspection-client-secret-file",
            &args.auth.introspection_client_secret_file,
        ),
        ("--dev-key-file", &args.auth.dev_key_file),
        (
            "--login-client-secret-file",
            &args.login.login_client_secret_file,
        ),
        ("--signing-key-file", &args.login.signing_key_file),
        ("--state-url-file", &args.login.state_url_file),
        ("--from-mcp-json", &args.from_mcp_json),
        (
            "--exchange-client-secret-file",
            &args.sandbox.exchange_client_secret_file,
        ),
    ]
    .into_iter()
    .filter_map(|(flag, p)| p.as_ref().map(|p| (flag.to_owned(), p.clone())))
    .collect();
    let default_work_root = args.sandbox.work_root.is_none();
    if default_work_root {
        let removed = crate::child::sweep_stale_work_roots(&std::env::temp_dir());
        if removed > 0 {
            tracing::info!(
                removed,
                "removed work dirs of sidecars that did not exit cleanly"
            );
        }
    }
    let mut imported_env = Vec::new();
    if let (Some(file), Some(server)) = (&args.from_mcp_json, &args.server) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let imported = mcp_json::import(&text, server)
            .with_context(|| format!("cannot use {}", file.display()))?;
        for w in &imported.warnings {
            tracing::warn!("{w}");
        }
        args.command = imported.command;
        // The file's values are kept out of the process list and treated as secrets; a
        // flag for the same variable wins.
        for (name, value) in imported.env {
            if !args.sandbox.env.iter().any(|(n, _)| *n == name) {
                imported_env.push(EnvSource::Imported {
                    name,
                    value: crate::credentials::Secret::new(value),
                });
            }
        }
        args.sandbox.env_pass.extend(imported.env_pass);
        args.cwd = args.cwd.take().or(imported.cwd);
    }
    let replica_id = args.replica_id.take().or_else(|| {
        let pod = std::env::var("POD_NAME").ok();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        replica::default_id(pod.as_deref(), host.as_deref())
    });
    let options = WrapOptions {
        listen: args.listen,
        admin_listen: args.admin_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_reload_interval: args.tls_reload_interval,
        path: args.path,
        public_url: args.public_url,
        allowed_origins: args.allowed_origins,
        allowed_hosts: args.allowed_hosts,
        max_sessions: args.max_sessions,
        max_sessions_per_principal: args.max_sessions_per_principal,
        session_rate_per_principal: args.session_rate_per_principal.0,
        session_idle_timeout: args.session_idle_timeout,
        max_message_bytes: args.max_message_bytes,
        request_timeout: args.request_timeout,
        kill_grace: args.kill_grace,
        drain_timeout: args.drain_timeout,
        header_read_timeout: args.header_read_timeout,
        body_read_timeout: args.body_read_timeout,
        sse_keepalive: args.sse_keepalive,
        legacy_sse: !args.no_legacy_sse,
        sse_path: args.sse_path,
        message_path: args.message_path,
        replica_id,
        no_auth: args.no_auth,
        auth: args.auth.options()?,
        login: args.login.options()?,
        cwd: args.cwd,
        sandbox: {
            let mut sandbox = args.sandbox.into_options()?;
            sandbox.env.extend(imported_env);
            sandbox
        },
        command: args.command,
        file: args
            .config
            .as_deref()
            .map(crate::config::file::load)
            .transpose()?,
    };
    // The audit log and its key, named by --config.
    if let Some(file) = &options.file {
        secret_files.extend(file.files.iter().cloned());
    }
    let helper = PathBuf::from("/proc/self/exe");
    let config = WrapConfig::from_options(options.clone(), &ProcessEnv, helper.clone())?;
    let dev_token_ttl = args.auth.dev_token_ttl;
    let port_file = args.port_file.take();
    // `--env` values are not secret, but nothing forces them to stay in the process list.
    let argv_values: Vec<String> = scrub.iter().map(|(_, v)| v.clone()).collect();
    let sidecar = crate::sandbox::harden_sidecar(&argv_values)
        .context("cannot harden the sidecar process")?;
    let _sandbox_status =
        crate::child::check_sandbox(&config.sessions.child, sidecar, secret_files)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let work_root = config.sessions.child.work_root.clone();
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        // With port 0, URLs (and with them resource identifiers) name the port we got.
        let config = if config.listen.port() == 0 && options.public_url.is_none() {
            let mut c = WrapConfig::from_options(
                WrapOptions {
                    listen: local,
                    ..options
                },
                &ProcessEnv,
                helper,
            )?;
            // The server side does not depend on the port: keep the checked sandbox (its
            // measured status and work root).
            c.sessions.child = config.sessions.child.clone();
            c
        } else {
            config
        };
        let admin = match config.admin_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (admin)"))?,
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        let shutdown = crate::signal::shutdown().context("cannot install signal handlers")?;
        let public_url = config.public_url.clone();
        let required_scopes = config
            .auth
            .as_ref()
            .map(|a| a.required_scopes.clone())
            .unwrap_or_default();
        // "(none)" cannot be a replica id, so it is unambiguous in the logs.
        let replica = config.sessions.replica_id.clone().unwrap_or("(none)".into());
        // BuildError's message already spells out its causes: no chain to print after it.
        let app = App::build(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot start: {e}"))?;
        if let Some(a) = admin_addr {
            tracing::info!(admin = %a, "admin endpoints (/healthz, /readyz, /metrics) are serving");
        }
        if let Some(dev) = app.auth().dev_issuer() {
            dev_banner(dev, &public_url, &required_scopes, dev_token_ttl)?;
        }
        if let Some(path) = &port_file {
            write_port_file(path, local, admin_addr)
                .with_context(|| format!("cannot write --port-file {}", path.display()))?;
        }
        tracing::info!(listen = %local, url = %public_url, replica = %replica, version = env!("CARGO_PKG_VERSION"), "mcp-warden is serving");
        app.serve(listener, admin, async move {
            let signal = shutdown.await;
            tracing::info!(signal, "shutting down");
        })
        .await;
        tracing::info!("stopped");
        Ok(())
    });
    // Every session's dir is gone with its server; the root is ours only when defaulted.
    if default_work_root {
        let _ = std::fs::remove_dir_all(&work_root);
    }
    served
}

/// Writes the bound addresses for `--port-file`: to a temporary file beside it, then renamed
/// over it, so a reader sees the whole file or none.
fn write_port_file(
    path: &std::path::Path,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
) -> std::io::Result<()> {
    let mut text = format!("listen={listen}\n");
    if let Some(admin) = admin {
        text.push_str(&format!("admin={admin}\n"));
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)
}

/// Prints (stdout, not the logs) a token of the development issuer and a client
/// configuration carrying it.
fn dev_banner(
    dev: &LocalIssuer,
    url: &url::Url,
    scopes: &[String],
    ttl: Duration,
) -> anyhow::Result<()> {
    use std::io::Write;
    let audience = crate::auth::resource_metadata::canonical_resource(url);
    let token = dev.mint(
        &TokenRequest {
            subject: "dev",
            audience: &audience,
            scopes,
            client_id: "mcp-warden-dev",
            lifetime: ttl,
        },
        std::time::SystemTime::now(),
    )?;
    let client = serde_json::json!({
        "mcpServers": {
            "mcp-warden": {
                "type": "http",
                "url": url.as_str(),
                "headers": { "Authorization": format!("Bearer {token}") },
            }
        }
    });
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Development issuer {} (not for production). Bearer token for {audience}, subject \"dev\", valid {}:\n\n{token}\n\nClient configuration:\n\n{}\n\nMore tokens: mcp-warden token --dev-key-file FILE --sub NAME --scope \"SCOPES\" (with --dev-key-file here too)\n",
        dev.issuer(),
        humantime::format_duration(ttl),
        serde_json::to_string_pretty(&client)?,
    )?;
    out.flush()?;
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let (url, prefix) = config::endpoint_url(
        args.listen,
        &args.path,
        args.public_url.as_deref(),
        args.tls_cert.is_some(),
    )?;
    let issuer = config::dev_issuer_id(&url, &prefix);
    let dev = LocalIssuer::load(&issuer, &args.dev_key_file)?;
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = scopes
        .iter()
        .find(|s| !crate::auth::scopes::is_scope_token(s))
    {
        anyhow::bail!("{bad:?} is not a valid scope");
    }
    let audience = match &args.audience {
        Some(a) => crate::auth::resource_metadata::canonical_audience(a).into_owned(),
        None => crate::auth::resource_metadata::canonical_resource(&url),
    };
    let token = dev.mint(
        &TokenRequest {
            subject: &args.sub,
            audience: &audience,
            scopes: &scopes,
            client_id: &args.client_id,
            lifetime: args.ttl,
        },
        std::time::SystemTime::now(),
    )?;
    writeln!(std::io::stdout().lock(), "{token}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("4 parsecs").is_err());
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn command_goes_after_the_double_dash() {
        let cli = Cli::try_parse_from([
            "mcp-warden",
            "wrap",
            "--no-auth",
            "--",
            "node",
            "--inspect",
            "s.js",
        ])
        .unwrap();
        let Command::Wrap(args) = cli.command else {
            panic!("wrap expected")
        };
        assert_eq!(
            args.command,
            vec![OsString::from("node"), "--inspect".into(), "s.js".into()]
        );
        assert!(Cli::try_parse_from(["mcp-warden", "wrap", "--no-auth"]).is_err());
    }

    #[test]
    fn per_principal_session_limits_parse() {
        let parse = |extra: &[&str]| {
            let argv = ["mcp-warden", "wrap", "--dev"]
                .into_iter()
                .chain(extra.iter().copied())
                .chain(["--", "node"]);
            let Command::Wrap(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("wrap expected")
            };
            (
                args.max_sessions_per_principal,
                args.session_rate_per_principal.0,
            )
        };
        assert_eq!(
            parse(&[]),
            (
                None,
                Some(crate::session::SessionRate::parse("30/min").unwrap())
            )
        );
        assert_eq!(
            parse(&[
                "--max-sessions-per-principal",
                "3",
                "--session-rate-per-principal",
                "off"
            ]),
            (Some(3), None)
        );
        assert_eq!(
            parse(&["--session-rate-per-principal", "2/s"]).1,
            Some(crate::session::SessionRate::parse("2/s").unwrap())
        );
        assert!(
            Cli::try_parse_from([
                "mcp-warden",
                "wrap",
                "--dev",
                "--session-rate-per-principal",
                "lots",
                "--",
                "node"
            ])
            .is_err()
        );
    }

    #[test]
    fn an_mcp_json_entry_replaces_the_command() {
        let cli = Cli::try_parse_from([
            "mcp-warden",
            "wrap",
            "--from-mcp-json",
            "mcp.json",
            "--server",
            "files",
        ])
        .unwrap();
        let Command::Wrap(args) = cli.command else {
            panic!("wrap expected")
        };
        assert_eq!(args.server.as_deref(), Some("files"));
        assert!(args.command.is_empty());
        // One source of the command only, and the two flags go together.
        for argv in [
            &[
                "wrap",
                "--from-mcp-json",
                "m.json",
                "--server",
                "s",
                "--",
                "node",
            ][..],
            &["wrap", "--from-mcp-json", "m.json"],
            &["wrap", "--server", "s", "--", "node"],
        ] {
            let full = std::iter::once("mcp-warden").chain(argv.iter().copied());
            assert!(Cli::try_parse_from(full).is_err(), "{argv:?}");
        }
    }
}
