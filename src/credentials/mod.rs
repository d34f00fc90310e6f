//! Credentials of each session's server: its environment, built from nothing for each
//! session from an allow-list of the sidecar's variables and the credentials injected for
//! that session's principal (static values and files, token claims, RFC 8693 exchanges of
//! the caller's token). This module stands between `auth` and `child`: the caller's token
//! comes in here ([`SessionContext`]) and only the finished [`SessionEnv`] goes on to the
//! server's spawn; the token itself is never injected.
//!
//! Values marked secret ([`Secret`]) never reach a log, an error message or a `Debug`
//! output; their bytes are wiped when dropped, and the session keeps the set of them
//! ([`SecretSet`]) so responses can be redacted. `HOME` and `TMPDIR` are set at spawn to the
//! session's work dir and cannot be injected.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::auth::Principal;

/// Variables passed from the sidecar's environment by default.
pub const BASE_ENV_PASS: &[&str] = &["PATH", "LANG", "TZ"];

/// Names the sandbox sets itself.
const RESERVED: &[&str] = &["HOME", "TMPDIR"];

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
const MAX_FILE_BYTES: u64 = 64 * 1024;

pub use crate::secret::Secret;

/// The secret values injected into one session's server, for redaction of its responses.
#[derive(Clone, Default)]
pub struct SecretSet(Arc<[Secret]>);

impl FromIterator<Secret> for SecretSet {
    fn from_iter<I: IntoIterator<Item = Secret>>(values: I) -> SecretSet {
        SecretSet(values.into_iter().collect())
    }
}

impl SecretSet {
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Secret::expose)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `text` contains any of the secrets.
    pub fn found_in(&self, text: &[u8]) -> bool {
        self.values()
            .any(|s| !s.is_empty() && text.windows(s.len()).any(|w| w == s))
    }
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretSet({} values)", self.0.len())
    }
}

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
}

impl EnvSource {
    pub fn name(&self) -> &str {
        match self {
            EnvSource::Value { name, .. }
            | EnvSource::Imported { name, .. }
            | EnvSource::File { name, .. }
            | EnvSource::Claim { name, .. }
            | EnvSource::Exchange { name, .. } => name,
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

/// One injected variable as a configuration file writes it: `name` and exactly one of
/// `value`, `file`, `claim` or `exchange` (with optional `scope` for an exchange).
///
/// ```toml
/// env = [
///   { name = "MODE", value = "prod" },
///   { name = "API_KEY", file = "/var/run/secrets/api/key" },
///   { name = "USER_EMAIL", claim = "email" },
///   { name = "API_TOKEN", exchange = "https://api.example.com", scope = "read" },
/// ]
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvEntry {
    pub name: String,
    pub value: Option<String>,
    pub file: Option<PathBuf>,
    pub claim: Option<String>,
    pub exchange: Option<String>,
    pub scope: Option<String>,
}

impl TryFrom<EnvEntry> for EnvSource {
    type Error = EnvError;

    fn try_from(e: EnvEntry) -> Result<EnvSource, EnvError> {
        let name = e.name;
        if e.scope.is_some() && e.exchange.is_none() {
            return Err(EnvError::BadEntry(name));
        }
        match (e.value, e.file, e.claim, e.exchange) {
            (Some(value), None, None, None) => Ok(EnvSource::Value { name, value }),
            (None, Some(path), None, None) => Ok(EnvSource::File { name, path }),
            (None, None, Some(claim), None) => Ok(EnvSource::Claim { name, claim }),
            (None, None, None, Some(audience)) => Ok(EnvSource::Exchange {
                name,
                audience,
                scopes: e
                    .scope
                    .iter()
                    .flat_map(|s| s.split_whitespace())
                    .map(str::to_owned)
                    .collect(),
            }),
            _ => Err(EnvError::BadEntry(name)),
        }
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
    #[error("token exchange for {name} failed: {reason}")]
    Exchange { name: String, reason: String },
}

/// A token issued by a token exchange.
#[derive(Debug, Clone)]
pub struct ExchangedToken {
    pub access_token: Secret,
    /// `expires_in` of the token response, when given.
    pub expires_in: Option<Duration>,
}

/// One RFC 8693 exchange to perform.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The issuer of the caller's token: the one to exchange it at.
    pub issuer: &'a str,
    /// The caller's access token (`subject_token`).
    pub subject_token: &'a Secret,
    pub audience: &'a str,
    pub scopes: &'a [String],
}

/// Future returned by [`TokenExchanger::exchange`].
pub type ExchangeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ExchangedToken, String>> + Send + 'a>>;

/// Performs token exchanges at the issuer's token endpoint with the sidecar's own client
/// credentials. Implemented by the authentication layer; errors are short reasons without
/// any token.
pub trait TokenExchanger: Send + Sync + fmt::Debug {
    fn exchange<'a>(&'a self, request: ExchangeRequest<'a>) -> ExchangeFuture<'a>;
}

/// Token exchange as the authentication layer performs it.
impl TokenExchanger for crate::auth::exchange::TokenExchangeClient {
    fn exchange<'a>(&'a self, r: ExchangeRequest<'a>) -> ExchangeFuture<'a> {
        Box::pin(async move {
            let subject = std::str::from_utf8(r.subject_token.expose())
                .map_err(|_| "the caller's token is not text".to_owned())?;
            let issued = crate::auth::exchange::TokenExchangeClient::exchange(
                self, r.issuer, subject, r.audience, r.scopes,
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(ExchangedToken {
                access_token: issued.access_token,
                expires_in: issued.expires_in,
            })
        })
    }
}

/// The session a server environment is built for.
#[derive(Debug, Clone, Copy)]
pub struct SessionContext<'a> {
    pub principal: &'a Principal,
    /// The caller's bearer token, needed only by `--env-exchange` (and never injected).
    pub subject_token: Option<&'a Secret>,
}

/// How every session's environment is built, fixed at startup.
#[derive(Debug, Clone)]
pub struct EnvPlan {
    /// Variables copied from the sidecar's environment at startup.
    pass: Vec<(String, OsString)>,
    sources: Vec<EnvSource>,
    exchanger: Option<Arc<dyn TokenExchanger>>,
}

impl EnvPlan {
    /// Validates the sources and captures the passed-through variables (`BASE_ENV_PASS`
    /// plus `pass`) from `lookup`. Loader variables are refused.
    pub fn new(
        pass: &[String],
        lookup: &dyn Fn(&str) -> Option<OsString>,
        sources: Vec<EnvSource>,
        exchanger: Option<Arc<dyn TokenExchanger>>,
    ) -> Result<EnvPlan, EnvError> {
        let mut plan = EnvPlan::allowing_loader(pass, &[], lookup, sources, exchanger.is_some())?;
        plan.exchanger = exchanger;
        Ok(plan)
    }

    /// [`EnvPlan::new`], with the loader variables named in `allow_loader` accepted
    /// (`--env-allow-loader`). `can_exchange`: an exchanger will be attached
    /// ([`EnvPlan::attach_exchanger`]) before the first session.
    pub fn allowing_loader(
        pass: &[String],
        allow_loader: &[String],
        lookup: &dyn Fn(&str) -> Option<OsString>,
        sources: Vec<EnvSource>,
        can_exchange: bool,
    ) -> Result<EnvPlan, EnvError> {
        if let Some(n) = allow_loader.iter().find(|n| !is_loader_variable(n)) {
            return Err(EnvError::NotLoaderVariable(n.clone()));
        }
        let check = |name: &str| {
            check_name(name)?;
            if is_loader_variable(name) && !allow_loader.iter().any(|a| a == name) {
                return Err(EnvError::LoaderVariable(name.to_owned()));
            }
            Ok(())
        };
        let mut names: Vec<&str> = Vec::new();
        for name in pass.iter().map(String::as_str) {
            check(name)?;
        }
        for s in &sources {
            let name = s.name();
            check(name)?;
            if names.contains(&name) {
                return Err(EnvError::Duplicate(name.to_owned()));
            }
            names.push(name);
            if matches!(s, EnvSource::Exchange { .. }) && !can_exchange {
                return Err(EnvError::ExchangeUnavailable(name.to_owned()));
            }
        }
        let mut captured: Vec<(String, OsString)> = Vec::new();
        for name in BASE_ENV_PASS
            .iter()
            .copied()
            .chain(pass.iter().map(String::as_str))
        {
            // An injected variable wins over a passed one of the same name.
            if names.contains(&name) || captured.iter().any(|(k, _)| k == name) {
                continue;
            }
            if let Some(v) = lookup(name) {
                captured.push((name.to_owned(), v));
            }
        }
        Ok(EnvPlan {
            pass: captured,
            sources,
            exchanger: None,
        })
    }

    /// The client `--env-exchange` variables are obtained with (built by the app).
    pub fn attach_exchanger(&mut self, exchanger: Arc<dyn TokenExchanger>) {
        self.exchanger = Some(exchanger);
    }

    pub fn sources(&self) -> &[EnvSource] {
        &self.sources
    }

    /// Whether sessions get secret values (files or exchanged tokens).
    pub fn injects_secrets(&self) -> bool {
        self.sources.iter().any(|s| {
            matches!(
                s,
                EnvSource::File { .. } | EnvSource::Exchange { .. } | EnvSource::Imported { .. }
            )
        })
    }

    /// The sidecar files holding secrets, for the startup exposure check.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                EnvSource::File { name, path } => {
                    Some((format!("--env-file {name}"), path.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The value of a passed-through variable (`PATH` resolves the command).
    pub fn passed(&self, name: &str) -> Option<&OsStr> {
        self.pass
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Builds one session's environment. Each call reads files and performs exchanges anew:
    /// nothing of one session is reused for another.
    pub async fn resolve(&self, ctx: SessionContext<'_>) -> Result<SessionEnv, EnvError> {
        let mut vars: Vec<(String, EnvValue)> = self
            .pass
            .iter()
            .map(|(k, v)| (k.clone(), EnvValue::Plain(v.clone())))
            .collect();
        let mut expires_at = None;
        for source in &self.sources {
            let value = match source {
                EnvSource::Value { value, .. } => EnvValue::Plain(value.into()),
                EnvSource::Imported { value, .. } => EnvValue::Secret(value.clone()),
                EnvSource::File { name, path } => EnvValue::Secret(read_secret(name, path).await?),
                EnvSource::Claim { name, claim } => match principal_claim(ctx.principal, claim) {
                    Some(v) => EnvValue::Plain(v.into()),
                    None => {
                        return Err(EnvError::MissingClaim {
                            name: name.clone(),
                            claim: claim.clone(),
                        });
                    }
                },
                EnvSource::Exchange {
                    name,
                    audience,
                    scopes,
                } => {
                    let (Some(exchanger), Some(subject_token)) =
                        (&self.exchanger, ctx.subject_token)
                    else {
                        return Err(EnvError::ExchangeUnavailable(name.clone()));
                    };
                    let token = exchanger
                        .exchange(ExchangeRequest {
                            issuer: &ctx.principal.issuer,
                            subject_token,
                            audience,
                            scopes,
                        })
                        .await
                        .map_err(|reason| EnvError::Exchange {
                            name: name.clone(),
                            reason,
                        })?;
                    if let Some(ttl) = token.expires_in {
                        let at = SystemTime::now() + ttl;
                        expires_at = Some(expires_at.map_or(at, |e: SystemTime| e.min(at)));
                    }
                    // The caller's own token must never reach the server, even if an
                    // issuer echoed it back.
                    if token.access_token == *subject_token {
                        return Err(EnvError::Exchange {
                            name: name.clone(),
                            reason: "the issuer returned the subject token itself".into(),
                        });
                    }
                    EnvValue::Secret(token.access_token)
                }
            };
            vars.push((source.name().to_owned(), value));
        }
        Ok(SessionEnv { vars, expires_at })
    }
}

fn check_name(name: &str) -> Result<(), EnvError> {
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

async fn read_secret(name: &str, path: &PathBuf) -> Result<Secret, EnvError> {
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
fn principal_claim(p: &Principal, claim: &str) -> Option<String> {
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

/// One value of a session's environment (`Debug` hides secrets).
#[derive(Debug, Clone)]
pub enum EnvValue {
    Plain(OsString),
    Secret(Secret),
}

impl EnvValue {
    pub fn as_os_str(&self) -> &OsStr {
        match self {
            EnvValue::Plain(v) => v,
            EnvValue::Secret(s) => OsStr::from_bytes(s.expose()),
        }
    }
}

/// One session's server environment (without `HOME`/`TMPDIR`, which the spawn adds).
/// `Debug` lists names only.
#[derive(Clone, Default)]
pub struct SessionEnv {
    vars: Vec<(String, EnvValue)>,
    expires_at: Option<SystemTime>,
}

impl SessionEnv {
    /// Name/value pairs in injection order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &OsStr)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str()))
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// The secret values, for redaction of this session's responses.
    pub fn secrets(&self) -> SecretSet {
        SecretSet(
            self.vars
                .iter()
                .filter_map(|(_, v)| match v {
                    EnvValue::Secret(s) if !s.expose().is_empty() => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        )
    }

    /// When the first exchanged credential expires: the session must end then (a server
    /// must never keep using an expired credential silently).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

impl fmt::Debug for SessionEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionEnv")
            .field(
                "names",
                &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn principal(sub: &str) -> Principal {
        let mut p = Principal::new("https://as.example", sub);
        p.client_id = Some("app".into());
        p.scopes = BTreeSet::from(["mcp".to_owned(), "read".to_owned()]);
        p.claims = std::sync::Arc::new(
            serde_json::json!({
                "iss": "https://as.example",
                "sub": sub,
                "email": format!("{sub}@example.com"),
                "groups": ["dev", "ops"],
                "scope": "mcp read",
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        p
    }

    fn sidecar_env(name: &str) -> Option<OsString> {
        match name {
            "PATH" => Some("/usr/bin".into()),
            "LANG" => Some("C.UTF-8".into()),
            "SIDECAR_SECRET" => Some("hunter2".into()),
            "EXTRA" => Some("x".into()),
            _ => None,
        }
    }

    async fn resolve(plan: &EnvPlan, p: &Principal) -> Result<SessionEnv, EnvError> {
        plan.resolve(SessionContext {
            principal: p,
            subject_token: None,
        })
        .await
    }

    #[tokio::test]
    async fn only_the_allow_list_passes() {
        let plan = EnvPlan::new(&["EXTRA".into()], &sidecar_env, vec![], None).unwrap();
        let env = resolve(&plan, &principal("a")).await.unwrap();
        let names: Vec<_> = env.vars().map(|(k, _)| k.to_owned()).collect();
        assert_eq!(names, ["PATH", "LANG", "EXTRA"]);
        assert!(env.get("SIDECAR_SECRET").is_none());
        assert!(env.secrets().is_empty());
    }

    #[tokio::test]
    async fn files_are_secret_and_read_at_each_resolve() {
        let dir = std::env::temp_dir().join(format!("mcpw-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "first\n").unwrap();
        let plan = EnvPlan::new(
            &[],
            &sidecar_env,
            vec![
                EnvSource::File {
                    name: "API_KEY".into(),
                    path: path.clone(),
                },
                EnvSource::Value {
                    name: "MODE".into(),
                    value: "prod".into(),
                },
            ],
            None,
        )
        .unwrap();
        let env = resolve(&plan, &principal("a")).await.unwrap();
        assert_eq!(env.get("API_KEY").unwrap(), "first");
        assert_eq!(env.get("MODE").unwrap(), "prod");
        assert!(env.secrets().found_in(b"xx first yy"));
        assert!(!env.secrets().found_in(b"prod"));
        assert!(!format!("{env:?}").contains("first"));
        std::fs::write(&path, "second").unwrap();
        let env = resolve(&plan, &principal("a")).await.unwrap();
        assert_eq!(env.get("API_KEY").unwrap(), "second");
        std::fs::remove_file(&path).unwrap();
        let e = resolve(&plan, &principal("a")).await.unwrap_err();
        assert!(matches!(e, EnvError::ReadFile { .. }));
        assert!(!e.to_string().contains("second"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn claims_follow_the_principal() {
        let plan = EnvPlan::new(
            &[],
            &sidecar_env,
            vec![
                EnvSource::Claim {
                    name: "USER_ID".into(),
                    claim: "sub".into(),
                },
                EnvSource::Claim {
                    name: "SCOPES".into(),
                    claim: "scope".into(),
                },
                EnvSource::Claim {
                    name: "EMAIL".into(),
                    claim: "email".into(),
                },
                EnvSource::Claim {
                    name: "GROUPS".into(),
                    claim: "groups".into(),
                },
            ],
            None,
        )
        .unwrap();
        let a = resolve(&plan, &principal("alice")).await.unwrap();
        let b = resolve(&plan, &principal("bob")).await.unwrap();
        assert_eq!(a.get("USER_ID").unwrap(), "alice");
        assert_eq!(b.get("USER_ID").unwrap(), "bob");
        assert_eq!(a.get("SCOPES").unwrap(), "mcp read");
        assert_eq!(a.get("EMAIL").unwrap(), "alice@example.com");
        assert_eq!(b.get("EMAIL").unwrap(), "bob@example.com");
        assert_eq!(a.get("GROUPS").unwrap(), "dev,ops");
        // Claims are not secrets (they describe the caller), so nothing is registered.
        assert!(a.secrets().is_empty());
        let plan = EnvPlan::new(
            &[],
            &sidecar_env,
            vec![EnvSource::Claim {
                name: "X".into(),
                claim: "no_such_claim".into(),
            }],
            None,
        )
        .unwrap();
        assert!(matches!(
            resolve(&plan, &principal("a")).await,
            Err(EnvError::MissingClaim { .. })
        ));
    }

    #[test]
    fn invalid_plans_are_refused() {
        let one = |s: EnvSource| EnvPlan::new(&[], &sidecar_env, vec![s], None).map(|_| ());
        let value = |n: &str| EnvSource::Value {
            name: n.into(),
            value: "v".into(),
        };
        assert!(matches!(one(value("1X")), Err(EnvError::BadName(_))));
        assert!(matches!(one(value("HOME")), Err(EnvError::Reserved(_))));
        assert!(matches!(one(value("TMPDIR")), Err(EnvError::Reserved(_))));
        assert!(matches!(
            EnvPlan::new(&[], &sidecar_env, vec![value("A"), value("A")], None),
            Err(EnvError::Duplicate(_))
        ));
        let exchange = EnvSource::parse_exchange("TOKEN", "https://api.example,scope=a b").unwrap();
        assert_eq!(
            exchange,
            EnvSource::Exchange {
                name: "TOKEN".into(),
                audience: "https://api.example".into(),
                scopes: vec!["a".into(), "b".into()]
            }
        );
        assert!(matches!(
            one(exchange),
            Err(EnvError::ExchangeUnavailable(_))
        ));
        assert!(EnvSource::parse_exchange("T", "").is_err());
        assert!(EnvSource::parse_exchange("T", "aud,scpe=x").is_err());
        assert!(matches!(
            EnvPlan::new(&["HOME".into()], &sidecar_env, vec![], None),
            Err(EnvError::Reserved(_))
        ));
    }

    #[test]
    fn loader_variables_need_an_explicit_allowance() {
        let value = |n: &str| EnvSource::Value {
            name: n.into(),
            value: "/tmp/x.so".into(),
        };
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
        ] {
            let e = EnvPlan::new(&[], &sidecar_env, vec![value(name)], None).unwrap_err();
            assert!(
                matches!(&e, EnvError::LoaderVariable(n) if n == name),
                "{e}"
            );
            assert!(e.to_string().contains("--env-allow-loader"), "{e}");
            assert!(
                !e.to_string().contains("/tmp/x.so"),
                "no value in errors: {e}"
            );
            assert!(matches!(
                EnvPlan::new(&[name.into()], &sidecar_env, vec![], None),
                Err(EnvError::LoaderVariable(_))
            ));
        }
        let allowed = ["LD_LIBRARY_PATH".to_owned()];
        assert!(
            EnvPlan::allowing_loader(
                &[],
                &allowed,
                &sidecar_env,
                vec![value("LD_LIBRARY_PATH")],
                false
            )
            .is_ok()
        );
        // Allowing one does not allow the others.
        assert!(
            EnvPlan::allowing_loader(
                &[],
                &allowed,
                &sidecar_env,
                vec![value("LD_PRELOAD")],
                false
            )
            .is_err()
        );
        assert!(matches!(
            EnvPlan::allowing_loader(&[], &["PATH".into()], &sidecar_env, vec![], false),
            Err(EnvError::NotLoaderVariable(_))
        ));
        // Look-alikes are ordinary variables.
        assert!(!is_loader_variable("OLD_PRELOAD") && !is_loader_variable("LANG"));
    }

    #[test]
    fn claim_values_become_text() {
        use serde_json::json;
        assert_eq!(claim_text(&json!("a@b.example")).unwrap(), "a@b.example");
        assert_eq!(claim_text(&json!(["admins", "dev"])).unwrap(), "admins,dev");
        assert_eq!(claim_text(&json!(42)).unwrap(), "42");
        assert_eq!(claim_text(&json!({"k": 1})).unwrap(), "{\"k\":1}");
        assert_eq!(claim_text(&json!(null)), None);
    }

    #[test]
    fn config_file_entries_become_sources() {
        #[derive(serde::Deserialize)]
        struct File {
            env: Vec<EnvEntry>,
        }
        let text = r#"env = [
            { name = "MODE", value = "prod" },
            { name = "API_KEY", file = "/run/secrets/key" },
            { name = "USER_EMAIL", claim = "email" },
            { name = "API_TOKEN", exchange = "https://api.example", scope = "read write" },
        ]"#;
        let file: File = toml::from_str(text).unwrap();
        let sources: Vec<EnvSource> = file
            .env
            .into_iter()
            .map(EnvSource::try_from)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            sources[1],
            EnvSource::File {
                name: "API_KEY".into(),
                path: "/run/secrets/key".into()
            }
        );
        assert_eq!(
            sources[3],
            EnvSource::Exchange {
                name: "API_TOKEN".into(),
                audience: "https://api.example".into(),
                scopes: vec!["read".into(), "write".into()]
            }
        );
        let two: File =
            toml::from_str(r#"env = [{ name = "X", value = "a", file = "/b" }]"#).unwrap();
        assert!(EnvSource::try_from(two.env[0].clone()).is_err());
        let none: File = toml::from_str(r#"env = [{ name = "X" }]"#).unwrap();
        assert!(EnvSource::try_from(none.env[0].clone()).is_err());
        assert!(toml::from_str::<File>(r#"env = [{ name = "X", valu = "a" }]"#).is_err());
    }

    #[derive(Debug)]
    struct FakeExchanger;

    impl TokenExchanger for FakeExchanger {
        fn exchange<'a>(&'a self, r: ExchangeRequest<'a>) -> ExchangeFuture<'a> {
            Box::pin(async move {
                if r.audience == "echo" {
                    return Ok(ExchangedToken {
                        access_token: r.subject_token.clone(),
                        expires_in: None,
                    });
                }
                Ok(ExchangedToken {
                    access_token: Secret::new(format!("for-{}", r.audience)),
                    expires_in: Some(Duration::from_secs(60)),
                })
            })
        }
    }

    #[tokio::test]
    async fn exchanged_tokens_are_secret_and_expire() {
        let plan = EnvPlan::new(
            &[],
            &sidecar_env,
            vec![EnvSource::parse_exchange("API_TOKEN", "api").unwrap()],
            Some(Arc::new(FakeExchanger)),
        )
        .unwrap();
        let caller = Secret::new("caller-token");
        let p = principal("a");
        let ctx = SessionContext {
            principal: &p,
            subject_token: Some(&caller),
        };
        let env = plan.resolve(ctx).await.unwrap();
        assert_eq!(env.get("API_TOKEN").unwrap(), "for-api");
        assert!(env.secrets().found_in(b"for-api"));
        assert!(env.expires_at().is_some());
        assert!(env.vars().all(|(_, v)| v.as_bytes() != b"caller-token"));
        // Without the caller's token there is nothing to exchange.
        assert!(resolve(&plan, &p).await.is_err());
        // An issuer echoing the caller's token back is refused.
        let echo = EnvPlan::new(
            &[],
            &sidecar_env,
            vec![EnvSource::parse_exchange("T", "echo").unwrap()],
            Some(Arc::new(FakeExchanger)),
        )
        .unwrap();
        assert!(echo.resolve(ctx).await.is_err());
    }
}
