//! The server's sandbox and environment: its flags, and their validation into the child's
//! spec (command, profile, work root, limits) and the plan of each session's environment
//! (passed, injected and exchanged variables).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::values::{parse_env, parse_user};
use super::{ConfigError, VarLookup, WrapOptions, read_secret};
use crate::auth::exchange::ExchangeSettings;
use crate::child::{ChildSpec, StderrLimits};
use crate::credentials::{EnvPlan, EnvSource, Secret};
use crate::sandbox::profile::{SandboxConfig, SandboxOverrides};

/// The server's sandbox and environment.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Sandbox and server environment")]
pub struct SandboxOptions {
    /// Sandbox profile: default, nonet, strict, none, or a path to a profile file
    /// (see sandbox/README.md).
    #[arg(
        long,
        env = "MCP_WARDEN_SANDBOX",
        default_value = "default",
        value_name = "NAME|PATH"
    )]
    pub sandbox: String,

    /// Also let the server read (and execute) under this path (repeatable).
    #[arg(long = "sandbox-read", value_name = "PATH")]
    pub sandbox_read: Vec<PathBuf>,

    /// Also let the server read and write under this path (repeatable).
    #[arg(long = "sandbox-write", value_name = "PATH")]
    pub sandbox_write: Vec<PathBuf>,

    /// Run the server as this user (UID[:GID]); the sidecar must run as root.
    #[arg(long = "sandbox-user", env = "MCP_WARDEN_SANDBOX_USER", value_name = "UID[:GID]", value_parser = parse_user)]
    pub sandbox_user: Option<(u32, u32)>,

    /// A uid (and gid) of its own for each session's server, when the sidecar runs as root:
    /// auto (from 60514-61183, unless the server's files are closed to other users: then
    /// the sidecar's uid, with a warning), off, or FIRST-LAST (always; no start otherwise).
    #[arg(
        long = "sandbox-uids",
        env = "MCP_WARDEN_SANDBOX_UIDS",
        default_value = "auto",
        value_name = "auto|off|FIRST-LAST"
    )]
    pub sandbox_uids: crate::sandbox::profile::SessionUids,

    /// Directory holding the per-session work dirs (HOME and TMPDIR of each server).
    /// Default: a new directory under the system temporary directory.
    #[arg(long = "work-root", env = "MCP_WARDEN_WORK_ROOT", value_name = "DIR")]
    pub work_root: Option<PathBuf>,

    /// Pass this variable of the sidecar's environment to the server (repeatable). The server
    /// otherwise gets only PATH, LANG, TZ, HOME and TMPDIR (its work dir) and what is injected.
    #[arg(
        long = "env-pass",
        env = "MCP_WARDEN_ENV_PASS",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub env_pass: Vec<String>,

    /// Let the server's environment hold this loader variable (LD_*, GCONV_PATH,
    /// GLIBC_TUNABLES, …; repeatable). Refused otherwise: they decide what the C library
    /// loads before the server's own code runs.
    #[arg(
        long = "env-allow-loader",
        env = "MCP_WARDEN_ENV_ALLOW_LOADER",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub env_allow_loader: Vec<String>,

    /// Set a non-secret variable in the server's environment (repeatable). The value is
    /// visible in the process list: use --env-file for secrets.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Inject a secret read from a file when each session starts (repeatable), e.g. a
    /// mounted Kubernetes Secret.
    #[arg(long = "env-file", value_name = "NAME=PATH", value_parser = parse_env)]
    pub env_file: Vec<(String, String)>,

    /// Inject a claim of the session principal's token (sub, iss, client_id, scope, …).
    #[arg(long = "env-claim", value_name = "NAME=CLAIM", value_parser = parse_env)]
    pub env_claim: Vec<(String, String)>,

    /// Inject a token obtained by RFC 8693 token exchange of the caller's token for this
    /// audience (needs an authorization server with client credentials).
    #[arg(long = "env-exchange", value_name = "NAME=AUDIENCE[,scope=S]", value_parser = parse_env)]
    pub env_exchange: Vec<(String, String)>,

    /// The sidecar's client id at the issuer for --env-exchange (HTTP Basic). The secret
    /// comes from --exchange-client-secret-file or MCP_WARDEN_EXCHANGE_CLIENT_SECRET.
    #[arg(long, env = "MCP_WARDEN_EXCHANGE_CLIENT_ID", value_name = "ID")]
    pub exchange_client_id: Option<String>,

    /// File holding the token-exchange client secret.
    #[arg(
        long,
        env = "MCP_WARDEN_EXCHANGE_CLIENT_SECRET_FILE",
        value_name = "PATH"
    )]
    pub exchange_client_secret_file: Option<PathBuf>,

    /// Token endpoint for --env-exchange (with one --issuer). Default: from the metadata of
    /// the issuer of the caller's token, where each token is exchanged.
    #[arg(long, env = "MCP_WARDEN_EXCHANGE_TOKEN_ENDPOINT", value_name = "URL")]
    pub exchange_token_endpoint: Option<String>,
}

/// What the server runs and how: validated, with the environment's plan.
pub(super) struct ServerSetup {
    pub child: ChildSpec,
    pub env: EnvPlan,
    pub exchange: Option<ExchangeSettings>,
}

/// The injected variables, in flag order: values, files, claims, exchanges, then what an
/// `mcpServers` entry carries (a flag for the same variable wins).
fn env_sources(
    sb: &SandboxOptions,
    imported: &[(String, String)],
) -> Result<Vec<EnvSource>, ConfigError> {
    let mut env = Vec::new();
    env.extend(sb.env.iter().map(|(name, value)| EnvSource::Value {
        name: name.clone(),
        value: value.clone(),
    }));
    env.extend(sb.env_file.iter().map(|(name, path)| EnvSource::File {
        name: name.clone(),
        path: path.into(),
    }));
    env.extend(sb.env_claim.iter().map(|(name, claim)| EnvSource::Claim {
        name: name.clone(),
        claim: claim.clone(),
    }));
    for (name, spec) in &sb.env_exchange {
        env.push(
            EnvSource::parse_exchange(name, spec).map_err(|e| ConfigError::Env(e.to_string()))?,
        );
    }
    // The file's values are kept out of the process list and treated as secrets.
    for (name, value) in imported {
        if !sb.env.iter().any(|(n, _)| n == name) {
            env.push(EnvSource::Imported {
                name: name.clone(),
                value: Secret::new(value.clone()),
            });
        }
    }
    Ok(env)
}

/// The token exchange `--env-exchange` needs, when it is used: the sidecar's own credentials
/// at the issuers (each token is exchanged at its own issuer).
fn exchange_settings(
    o: &WrapOptions,
    sources: &[EnvSource],
    env: &dyn VarLookup,
) -> Result<Option<ExchangeSettings>, ConfigError> {
    let sb = &o.sandbox;
    if !sources
        .iter()
        .any(|s| matches!(s, EnvSource::Exchange { .. }))
    {
        return Ok(None);
    }
    let need = |what: &str| ConfigError::Env(format!("--env-exchange needs {what}"));
    if o.auth.issuers.is_empty() {
        return Err(need("an authorization server (--issuer)"));
    }
    let secret = read_secret(
        "token exchange client secret",
        sb.exchange_client_secret_file.as_deref(),
        "MCP_WARDEN_EXCHANGE_CLIENT_SECRET",
        env,
    )?;
    let (Some(id), Some(secret)) = (&sb.exchange_client_id, secret) else {
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
    Ok(Some(ExchangeSettings {
        issuers: o.auth.issuers.clone(),
        endpoint,
        client_id: id.clone(),
        client_secret: crate::auth::Secret::new(secret),
        ca_pem: super::auth::ca_bundle(&o.auth)?,
        timeout: o.auth.http_timeout,
    }))
}

/// Validates the server's command, sandbox and environment.
pub(super) fn server_setup(
    o: &WrapOptions,
    imported: &[(String, String)],
    connections: &[crate::connections::ConnectionConfig],
    env: &dyn VarLookup,
    helper_exe: PathBuf,
) -> Result<ServerSetup, ConfigError> {
    let (command, args) = o.command.split_first().ok_or(ConfigError::NoCommand)?;
    let sb = &o.sandbox;
    let sandbox = SandboxConfig::load(
        &sb.sandbox,
        SandboxOverrides {
            extra_read: sb.sandbox_read.clone(),
            extra_read_write: sb.sandbox_write.clone(),
            user: sb.sandbox_user,
            session_uids: sb.sandbox_uids,
        },
    )
    .map_err(|e| ConfigError::Sandbox(e.to_string()))?;
    let mut sources = env_sources(sb, imported)?;
    sources.extend(connections.iter().map(|c| EnvSource::Connection {
        name: c.env.clone(),
        connection: c.name.clone(),
        required: c.required,
        file: c.file.clone(),
    }));
    if o.no_auth
        && let Some(s) = sources.iter().find(|s| {
            matches!(
                s,
                EnvSource::Claim { .. } | EnvSource::Exchange { .. } | EnvSource::Connection { .. }
            )
        })
    {
        return Err(ConfigError::Env(format!(
            "{} comes from the caller's token, which --no-auth does not have",
            s.name()
        )));
    }
    let exchange = exchange_settings(o, &sources, env)?;
    let child_env = EnvPlan::allowing_loader(
        &sb.env_pass,
        &sb.env_allow_loader,
        &|n| env.get(n),
        sources,
        exchange.is_some(),
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
        path: child_env.passed("PATH").map(OsString::from),
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
    Ok(ServerSetup {
        child,
        env: child_env,
        exchange,
    })
}

/// The name the resource metadata gives the server by default: its command's file name.
pub(super) fn command_name(command: &[OsString]) -> String {
    command
        .first()
        .and_then(|c| Path::new(c).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
