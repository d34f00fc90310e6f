//! Flags, environment and defaults → one validated, immutable configuration.
//!
//! `cli` parses; this module validates and derives (paths, URLs, origins, the server's
//! environment) and hands each component its own sub-config. Tests build configs from values;
//! nothing here reads the process environment except through [`EnvSource`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::child::{ChildSpec, StderrLimits};
use crate::session::{SessionConfig, StreamLimits};
use crate::transport::http::{HttpConfig, LegacyPaths, ServerLimits, TlsConfig};

/// Variables the server inherits by default (values from the sidecar's environment).
pub const DEFAULT_ENV_PASS: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

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
    pub session_idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub request_timeout: Duration,
    pub kill_grace: Duration,
    pub drain_timeout: Duration,
    pub sse_keepalive: Duration,
    pub legacy_sse: bool,
    pub sse_path: String,
    pub message_path: String,
    pub replica_id: Option<String>,
    pub no_auth: bool,
    pub env_pass: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub command: Vec<OsString>,
}

/// Where the server's passed-through variables come from (the process environment in
/// production, a map in tests).
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<OsString>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }
}

impl<S: std::hash::BuildHasher> EnvSource for std::collections::HashMap<String, OsString, S> {
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
}

/// A configuration that cannot work, with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no server command: use `mcp-warden wrap [OPTIONS] -- COMMAND [ARGS...]`")]
    NoCommand,
    #[error(
        "no authentication configured: pass --no-auth to serve without authentication on a loopback address"
    )]
    NoAuth,
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
    #[error("--env {0:?} must be NAME=VALUE with a valid variable name")]
    BadEnv(String),
    #[error("--tls-cert and --tls-key go together")]
    TlsPair,
    #[error(
        "--admin-listen must not be the MCP address {0}: the admin endpoints are unauthenticated"
    )]
    AdminOnMcpPort(SocketAddr),
    #[error("paths collide: {0} and {1} are the same")]
    PathClash(&'static str, &'static str),
}

impl WrapConfig {
    /// Validates options and derives everything the components need.
    pub fn from_options(
        o: WrapOptions,
        env: &dyn EnvSource,
        helper_exe: PathBuf,
    ) -> Result<WrapConfig, ConfigError> {
        let (command, args) = o.command.split_first().ok_or(ConfigError::NoCommand)?;
        if !o.no_auth {
            return Err(ConfigError::NoAuth);
        }
        if !o.listen.ip().is_loopback() {
            return Err(ConfigError::NoAuthOnPublicAddress(o.listen));
        }
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
            ("--max-message-bytes", o.max_message_bytes as u128),
            ("--request-timeout", o.request_timeout.as_millis()),
            ("--session-idle-timeout", o.session_idle_timeout.as_millis()),
            ("--sse-keepalive", o.sse_keepalive.as_millis()),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(r) = &o.replica_id
            && !(1..=63).contains(&r.len())
                | !r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url = match &o.public_url {
            Some(u) => parse_public_url(u)?,
            None => Url::parse(&format!("{scheme}://{}{}", o.listen, o.path))
                .map_err(|_| ConfigError::BadPublicUrl(o.path.clone()))?,
        };
        let public_path = public_url.path().trim_end_matches('/');
        let public_prefix = public_path
            .strip_suffix(o.path.trim_end_matches('/'))
            .unwrap_or("")
            .to_owned();
        let mut allowed_origins = Vec::new();
        for origin in &o.allowed_origins {
            allowed_origins.push(normalize_origin(origin)?);
        }
        if o.public_url.is_some() {
            allowed_origins.push(public_url.origin().ascii_serialization());
        }

        let mut child_env: Vec<(OsString, OsString)> = Vec::new();
        for name in DEFAULT_ENV_PASS
            .iter()
            .copied()
            .chain(o.env_pass.iter().map(String::as_str))
        {
            if let Some(v) = env.get(name)
                && !child_env.iter().any(|(k, _)| k == name)
            {
                child_env.push((name.into(), v));
            }
        }
        for (k, v) in &o.env {
            if !valid_env_name(k) {
                return Err(ConfigError::BadEnv(k.clone()));
            }
            child_env.retain(|(name, _)| name != k.as_str());
            child_env.push((k.into(), v.into()));
        }

        let child = ChildSpec {
            command: command.clone(),
            args: args.to_vec(),
            env: child_env,
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
            public_prefix,
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
            sse_keepalive: o.sse_keepalive,
            sse_retry: Duration::from_secs(1),
        };
        let sessions = SessionConfig {
            max_sessions: o.max_sessions,
            idle_timeout: o.session_idle_timeout,
            request_timeout: o.request_timeout,
            stream_limits: StreamLimits::default(),
            retained_streams: 32,
            replica_id: o.replica_id.clone(),
            child: Arc::new(child),
        };
        let server = ServerLimits {
            drain_timeout: o.drain_timeout,
            ..ServerLimits::default()
        };
        Ok(WrapConfig {
            listen: o.listen,
            admin_listen: o.admin_listen,
            tls,
            http,
            server,
            sessions,
            public_url,
        })
    }
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

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
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
            session_idle_timeout: Duration::from_secs(60),
            max_message_bytes: 1 << 20,
            request_timeout: Duration::from_secs(30),
            kill_grace: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            sse_keepalive: Duration::from_secs(15),
            legacy_sse: true,
            sse_path: "/sse".into(),
            message_path: "/message".into(),
            replica_id: None,
            no_auth: true,
            env_pass: vec![],
            env: vec![],
            cwd: None,
            command: vec!["node".into(), "server.js".into()],
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

    #[test]
    fn the_server_inherits_only_the_allow_list() {
        let c = build(options()).unwrap();
        let names: Vec<_> = c
            .sessions
            .child
            .env
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(names, vec![OsString::from("PATH")]);
        let mut o = options();
        o.env_pass = vec!["SECRET".into()];
        o.env = vec![("MODE".into(), "x".into())];
        let c = build(o).unwrap();
        assert!(
            c.sessions
                .child
                .env
                .contains(&("SECRET".into(), "s3cr3t".into()))
        );
        assert!(c.sessions.child.env.contains(&("MODE".into(), "x".into())));
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
