//! Where each injected variable's value comes from ([`EnvSource`]), which names may be
//! injected at all, and reading a value: a secret file, a claim of the caller's token.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::auth::Principal;

use super::Secret;

/// Variables passed from the sidecar's environment by default.
pub const BASE_ENV_PASS: &[&str] = &["PATH", "LANG", "TZ"];

/// Names the sandbox sets itself.
pub(super) const RESERVED: &[&str] = &["HOME", "TMPDIR"];

/// Variables, besides every `LD_*`, through which the environment makes the C library load
/// code or read files of its choosing before a program's own code runs (glibc's list of
/// variables it ignores in setuid programs, less those that only name a directory of plain
/// data). In the server they are its own business, but they are refused unless allowed by
/// name: a value imported from an `mcpServers` file or passed from the sidecar's
/// environment should not silently decide what the server executes.
const LOADER_VARIABLES: &[&str] = &[
    "GCONV_PATH",
    "GETCONF_DIR",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "LOCPATH",
    "MALLOC_TRACE",
    "NIS_PATH",
    "NLSPATH",
    "RESOLV_HOST_CONF",
    "RES_OPTIONS",
];

/// Whether `name` is a dynamic loader or C library loading variable ([`LOADER_VARIABLES`]).
pub fn is_loader_variable(name: &str) -> bool {
    name.starts_with("LD_") || LOADER_VARIABLES.contains(&name)
}

/// Largest `--env-file` accepted (credentials, not data).
pub(super) const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Where one injected variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// `--env NAME=VALUE`: a fixed value. Not secret: it was given on the command line.
    Value { name: String, value: String },
    /// A value taken from a configuration file (an imported `mcpServers` entry): kept off
    /// the command line and treated as secret.
    Imported { name: String, value: Secret },
    /// `--env-file NAME=PATH`: a secret read at each spawn, so a rotated file (e.g. a mounted
    /// Kubernetes Secret) is picked up by the next session. One trailing newline is removed.
    File { name: String, path: PathBuf },
    /// `--env-claim NAME=CLAIM`: a claim of the session principal's validated token.
    Claim { name: String, claim: String },
    /// `--env-exchange NAME=AUDIENCE[,scope=S]`: an RFC 8693 token exchange with the caller's
    /// token as subject token; the issued token is injected (secret).
    Exchange {
        name: String,
        audience: String,
        scopes: Vec<String>,
    },
    /// A `[[connection]]`: the access token of the principal's own connection to an
    /// upstream provider (secret). Without one, a required connection refuses the session
    /// ([`EnvError::ConnectionNeeded`]); an optional one leaves the variable out.
    Connection {
        name: String,
        connection: String,
        required: bool,
        /// Also written to this file of the session's work dir.
        file: Option<String>,
    },
}

impl EnvSource {
    pub fn name(&self) -> &str {
        match self {
            EnvSource::Value { name, .. }
            | EnvSource::Imported { name, .. }
            | EnvSource::File { name, .. }
            | EnvSource::Claim { name, .. }
            | EnvSource::Exchange { name, .. }
            | EnvSource::Connection { name, .. } => name,
        }
    }

    /// Parses `--env-exchange`'s value: `AUDIENCE[,scope=S]...` (several `scope=` add up;
    /// a scope value may itself hold several space-separated scopes).
    pub fn parse_exchange(name: &str, spec: &str) -> Result<EnvSource, EnvError> {
        let mut parts = spec.split(',');
        let audience = parts.next().unwrap_or("").trim();
        if audience.is_empty() {
            return Err(EnvError::BadExchange(name.to_owned()));
        }
        let mut scopes = Vec::new();
        for p in parts {
            match p.trim().split_once('=') {
                Some(("scope", v)) => scopes.extend(v.split_whitespace().map(str::to_owned)),
                _ => return Err(EnvError::BadExchange(name.to_owned())),
            }
        }
        Ok(EnvSource::Exchange {
            name: name.to_owned(),
            audience: audience.to_owned(),
            scopes,
        })
    }
}

/// Why an environment cannot be built. Messages name variables and files, never values.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0:?} is not a valid environment variable name")]
    BadName(String),
    #[error("{0} is set by the sandbox (the session work dir) and cannot be injected")]
    Reserved(String),
    #[error(
        "{0} changes what the C library loads before the server's own code runs; it is refused unless allowed with --env-allow-loader {0}"
    )]
    LoaderVariable(String),
    #[error(
        "--env-allow-loader {0}: not a loader variable (LD_*, GCONV_PATH, GLIBC_TUNABLES, LOCPATH, …)"
    )]
    NotLoaderVariable(String),
    #[error("{0} is injected twice")]
    Duplicate(String),
    #[error("--env-exchange {0}: expected AUDIENCE[,scope=SCOPE]")]
    BadExchange(String),
    #[error(
        "env entry {0}: give exactly one of value, file, claim or exchange (scope only with exchange)"
    )]
    BadEntry(String),
    #[error(
        "--env-exchange {0} needs an authorization server with token exchange (--issuer and client credentials)"
    )]
    ExchangeUnavailable(String),
    #[error("cannot read the file of {name} ({path}): {kind}")]
    ReadFile {
        name: String,
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error(
        "the file of {name} ({path}) is larger than {MAX_FILE_BYTES} bytes or holds a NUL byte"
    )]
    BadFile { name: String, path: PathBuf },
    #[error("the caller's token has no claim {claim:?} for {name}")]
    MissingClaim { name: String, claim: String },
    #[error("the user has not connected {connection} yet")]
    ConnectionNeeded { connection: String },
    #[error("the connection {connection} cannot be used: {reason}")]
    Connection { connection: String, reason: String },
    #[error("token exchange for {name} failed: {reason}")]
    Exchange { name: String, reason: String },
}

pub(super) fn check_name(name: &str) -> Result<(), EnvError> {
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(EnvError::BadName(name.to_owned()));
    }
    if RESERVED.contains(&name) {
        return Err(EnvError::Reserved(name.to_owned()));
    }
    Ok(())
}

pub(super) async fn read_secret(name: &str, path: &PathBuf) -> Result<Secret, EnvError> {
    use tokio::io::AsyncReadExt;
    let read_err = |e: std::io::Error| EnvError::ReadFile {
        name: name.to_owned(),
        path: path.clone(),
        kind: e.kind(),
    };
    let file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES || bytes.contains(&0) {
        return Err(EnvError::BadFile {
            name: name.to_owned(),
            path: path.clone(),
        });
    }
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(Secret::from(bytes))
}

/// A claim of the principal's validated token, as text: any claim of the token (JWT
/// payload or introspection answer), with `scope` and `client_id` as authentication
/// normalized them when the token carries them differently (`scp`, `azp`).
pub(super) fn principal_claim(p: &Principal, claim: &str) -> Option<String> {
    match claim {
        "scope" if !p.scopes.is_empty() => {
            Some(p.scopes.iter().cloned().collect::<Vec<_>>().join(" "))
        }
        "client_id" => p.client_id.clone(),
        _ => p.claims.get(claim).and_then(claim_text),
    }
}

/// A claim value as an environment value: strings as they are, numbers and booleans as
/// JSON, arrays of strings (groups, roles) comma-separated, anything else as compact JSON.
/// `null` is no value.
pub fn claim_text(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}
