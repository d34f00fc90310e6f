//! Where `wrap` serves: the endpoint's public URL and path prefix, its paths, and which
//! origins and hosts may call it.

use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::{ConfigError, WrapOptions};
use crate::transport::http::{HttpConfig, LegacyPaths};

/// The endpoint's paths: absolute, and distinct.
pub(super) fn check_paths(o: &WrapOptions) -> Result<(), ConfigError> {
    check_path("--path", &o.path)?;
    if !o.no_legacy_sse {
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
    Ok(())
}

/// The endpoint's paths, and the origin and host allow-lists.
pub(super) fn http_config(
    o: &WrapOptions,
    public_url: &Url,
    public_prefix: &str,
) -> Result<HttpConfig, ConfigError> {
    let legacy = !o.no_legacy_sse;
    let mut allowed_origins = Vec::new();
    for origin in &o.allowed_origins {
        allowed_origins.push(normalize_origin(origin)?);
    }
    if o.public_url.is_some() {
        allowed_origins.push(public_url.origin().ascii_serialization());
    }
    let loopback = o.listen.ip().is_loopback();
    Ok(HttpConfig {
        path: o.path.clone(),
        legacy: legacy.then(|| LegacyPaths {
            sse: o.sse_path.clone(),
            message: o.message_path.clone(),
        }),
        public_prefix: public_prefix.to_owned(),
        sessionless: !o.no_sessionless,
        allowed_origins,
        allow_loopback_origins: loopback,
        allowed_hosts: loopback.then(|| {
            let mut hosts: Vec<String> =
                ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
            if let Some(h) = public_url.host_str() {
                hosts.push(h.trim_matches(['[', ']']).to_ascii_lowercase());
            }
            hosts.extend(o.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
            hosts
        }),
        admin_ui: o.admin_ui,
        admin_hosts: o
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_message_bytes: o.max_message_bytes,
        body_read_timeout: o.body_read_timeout,
        sse_keepalive: o.sse_keepalive,
        sse_retry: Duration::from_secs(1),
    })
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
