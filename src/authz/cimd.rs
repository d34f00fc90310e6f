//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a
//! `client_id` that is an https URL names a JSON document describing the client, which we
//! fetch, check and cache.
//!
//! The fetch is the one place where a stranger makes this server send a request, so it is
//! fenced (§6 of the draft): the host must resolve only to public addresses (every answer
//! checked, and the checked answer is the one connected to, so rebinding finds no gap), no
//! redirects, no proxy, no cookies, a small size and a short time, 200 only, JSON only.
//! Documents are cached per their `Cache-Control`, clamped; failures are never cached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use url::Url;

use super::rules::{self, RedirectProblem};
use crate::auth::fetch::{CacheDirective, cache_directive};

/// How documents are fetched and kept.
#[derive(Debug, Clone)]
pub struct CimdConfig {
    pub timeout: Duration,
    pub max_bytes: usize,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// Admit loopback addresses (the draft's exception for a server that is itself on
    /// loopback: development and tests).
    pub allow_loopback: bool,
    /// Host globs documents may come from; any host when empty.
    pub allow_hosts: Vec<String>,
    /// Private-use redirect schemes admitted for native clients.
    pub redirect_schemes: Vec<String>,
    /// CA certificates trusted besides the system's.
    pub ca_pem: Option<Vec<u8>>,
}

/// Why a document was refused. The codes are what logs, audit and metrics show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CimdError {
    #[error("the client_id is not a valid metadata document URL")]
    BadUrl,
    #[error("the client's host is not allowed here")]
    HostNotAllowed,
    #[error("the client's host resolves to an address that may not be fetched")]
    ForbiddenAddress,
    #[error("the client's host cannot be resolved")]
    Unresolvable,
    #[error("the client's metadata did not arrive in time")]
    Timeout,
    #[error("the client's metadata document is too large")]
    TooLarge,
    #[error("the client's metadata URL redirects")]
    Redirect,
    #[error("the client's metadata URL did not answer 200")]
    Status,
    #[error("the client's metadata is not JSON")]
    NotJson,
    #[error("the client's metadata names another client_id")]
    ClientIdMismatch,
    #[error("the client's metadata is invalid")]
    InvalidMetadata,
    #[error("the client's metadata could not be fetched")]
    Network,
}

impl CimdError {
    pub fn code(self) -> &'static str {
        match self {
            CimdError::BadUrl => "cimd_bad_url",
            CimdError::HostNotAllowed => "cimd_host_not_allowed",
            CimdError::ForbiddenAddress => "cimd_forbidden_address",
            CimdError::Unresolvable => "cimd_unresolvable",
            CimdError::Timeout => "cimd_timeout",
            CimdError::TooLarge => "cimd_too_large",
            CimdError::Redirect => "cimd_redirect",
            CimdError::Status => "cimd_status",
            CimdError::NotJson => "cimd_not_json",
            CimdError::ClientIdMismatch => "cimd_client_id_mismatch",
            CimdError::InvalidMetadata => "cimd_invalid_metadata",
            CimdError::Network => "cimd_network",
        }
    }
}

/// Whether an address is special-use (RFC 6890 and the IANA special-purpose registries),
/// looking through IPv4-mapped, NAT64 and 6to4 forms to the IPv4 address inside.
pub fn is_forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => forbidden_v6(v6, allow_loopback),
    }
}

fn forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let [a, b, c, _] = ip.octets();
    if a == 127 {
        return !allow_loopback;
    }
    a == 0
        || a == 10
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224
}

fn forbidden_v6(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    if ip == Ipv6Addr::LOCALHOST {
        return !allow_loopback;
    }
    let s = ip.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4, allow_loopback);
    }
    // NAT64 (64:ff9b::/96 and 64:ff9b:1::/48): the IPv4 address is the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return s[2] == 1 || forbidden_v4(embedded(s[6], s[7]), false);
    }
    // 6to4 (2002::/16): the IPv4 address follows the prefix.
    if s[0] == 0x2002 {
        return forbidden_v4(embedded(s[1], s[2]), false);
    }
    ip.is_unspecified()
        || s[0..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated) and ::/96
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] < 0x200) // 2001::/23 (Teredo, benchmarking, ORCHID…)
        || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast
}

/// Resolves names for the fetcher and refuses the whole answer when any address in it is
/// special-use, so a name cannot mix a public and a private answer.
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?
                .collect();
            vet(&addrs, allow_loopback)?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The marker error of a refused resolution, recognized in the fetch error's chain.
#[derive(Debug, thiserror::Error)]
#[error("forbidden address")]
struct Forbidden;

fn vet(
    addrs: &[SocketAddr],
    allow_loopback: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if addrs.is_empty() {
        return Err("no address".into());
    }
    if addrs.iter().any(|a| is_forbidden(a.ip(), allow_loopback)) {
        return Err(Box::new(Forbidden));
    }
    Ok(())
}

/// A checked document.
#[derive(Debug, Clone)]
pub struct Document {
    pub body: Map<String, Value>,
    pub fingerprint: String,
    /// How long it may be used without fetching again.
    pub ttl: Duration,
}

/// Fetches and checks documents.
#[derive(Debug, Clone)]
pub struct Fetcher {
    config: Arc<CimdConfig>,
    client: reqwest::Client,
    hosts: Option<globset::GlobSet>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Fetcher {
    pub fn new(config: CimdConfig) -> Result<Fetcher, String> {
        let tls = crate::auth::fetch::client_tls_config(config.ca_pem.as_deref())?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_loopback: config.allow_loopback,
            }))
            .connect_timeout(config.timeout.min(Duration::from_secs(2)))
            .timeout(config.timeout)
            .user_agent(concat!("mcp-warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the client metadata fetcher: {e}"))?;
        let hosts = if config.allow_hosts.is_empty() {
            None
        } else {
            let mut b = globset::GlobSetBuilder::new();
            for h in &config.allow_hosts {
                b.add(
                    globset::Glob::new(&h.to_ascii_lowercase())
                        .map_err(|e| format!("--cimd-allow-host {h}: {e}"))?,
                );
            }
            Some(b.build().map_err(|e| e.to_string())?)
        };
        Ok(Fetcher {
            config: Arc::new(config),
            client,
            hosts,
            in_flight: Arc::new(tokio::sync::Semaphore::new(8)),
        })
    }

    /// Fetches and checks the document at `client_id`.
    pub async fn fetch(&self, client_id: &str) -> Result<Document, CimdError> {
        if !rules::is_metadata_url(client_id) {
            return Err(CimdError::BadUrl);
        }
        let url = Url::parse(client_id).map_err(|_| CimdError::BadUrl)?;
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if let Some(globs) = &self.hosts
            && !globs.is_match(&host)
        {
            return Err(CimdError::HostNotAllowed);
        }
        // The resolver is not asked about address literals: check them here.
        if let Ok(ip) = host.parse::<IpAddr>()
            && is_forbidden(ip, self.config.allow_loopback)
        {
            return Err(CimdError::ForbiddenAddress);
        }
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| CimdError::Network)?;
        let fetched = tokio::time::timeout(self.config.timeout, self.get(&url)).await;
        let (body, directive) = fetched.map_err(|_| CimdError::Timeout)??;
        let body = validate(client_id, &body, &self.config.redirect_schemes)?;
        let ttl = match directive {
            CacheDirective::MaxAge(d) => d,
            CacheDirective::DoNotCache => Duration::ZERO,
            CacheDirective::Unspecified => Duration::from_secs(3600),
        }
        .clamp(
            self.config.min_ttl,
            self.config.max_ttl.max(self.config.min_ttl),
        );
        Ok(Document {
            fingerprint: fingerprint(&body),
            body,
            ttl,
        })
    }

    async fn get(&self, url: &Url) -> Result<(Vec<u8>, CacheDirective), CimdError> {
        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(CimdError::Redirect);
        }
        if status != reqwest::StatusCode::OK {
            return Err(CimdError::Status);
        }
        let ctype = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(ctype == "application/json"
            || (ctype.starts_with("application/") && ctype.ends_with("+json")))
        {
            return Err(CimdError::NotJson);
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > self.config.max_bytes)
        {
            return Err(CimdError::TooLarge);
        }
        let directive = response
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(cache_directive)
            .fold(CacheDirective::Unspecified, |acc, d| match (acc, d) {
                (CacheDirective::DoNotCache, _) | (_, CacheDirective::DoNotCache) => {
                    CacheDirective::DoNotCache
                }
                (_, CacheDirective::MaxAge(m)) => CacheDirective::MaxAge(m),
                (acc, CacheDirective::Unspecified) => acc,
            });
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
            if body.len() + chunk.len() > self.config.max_bytes {
                return Err(CimdError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, directive))
    }
}

fn classify(e: &reqwest::Error) -> CimdError {
    if e.is_timeout() {
        return CimdError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<Forbidden>() {
            return CimdError::ForbiddenAddress;
        }
        if s.to_string().contains("no address")
            || s.downcast_ref::<std::io::Error>().is_some_and(|io| {
                io.kind() == std::io::ErrorKind::Other && io.to_string().contains("lookup")
            })
        {
            return CimdError::Unresolvable;
        }
        source = s.source();
    }
    if e.is_connect() {
        return CimdError::Network;
    }
    CimdError::Network
}

/// Checks a document's content (§4.1 of the draft, and the MCP client requirements).
pub fn validate(
    client_id: &str,
    body: &[u8],
    schemes: &[String],
) -> Result<Map<String, Value>, CimdError> {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Err(CimdError::NotJson);
    };
    if doc.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(CimdError::ClientIdMismatch);
    }
    let invalid = CimdError::InvalidMetadata;
    match doc.get("client_name").and_then(Value::as_str) {
        Some(n) if !rules::display_text(n, 100).is_empty() => {}
        _ => return Err(invalid),
    }
    // Shared secrets cannot be published (§4.1); private_key_jwt is not supported here.
    if doc.contains_key("client_secret") || doc.contains_key("client_secret_expires_at") {
        return Err(invalid);
    }
    match doc.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(m)) if m == "none" => {}
        Some(_) => return Err(invalid),
    }
    let native = doc.get("application_type").and_then(Value::as_str) == Some("native");
    match doc.get("redirect_uris") {
        Some(Value::Array(uris)) if !uris.is_empty() && uris.len() <= 10 => {
            for u in uris {
                let Some(u) = u.as_str() else {
                    return Err(invalid);
                };
                // Native clients may omit application_type; admit private schemes for them.
                if let Err(RedirectProblem::Dangerous | RedirectProblem::Unsupported) =
                    rules::check_redirect(u, schemes, native || !u.starts_with("http"))
                {
                    return Err(invalid);
                }
            }
        }
        _ => return Err(invalid),
    }
    if !subset(
        doc.get("grant_types"),
        &["authorization_code", "refresh_token"],
    ) || !subset(doc.get("response_types"), &["code"])
    {
        return Err(invalid);
    }
    Ok(doc)
}

/// Absent, or an array of strings each in `allowed`.
pub fn subset(v: Option<&Value>, allowed: &[&str]) -> bool {
    match v {
        None => true,
        Some(Value::Array(items)) => items
            .iter()
            .all(|i| i.as_str().is_some_and(|s| allowed.contains(&s))),
        Some(_) => false,
    }
}

/// What consent depends on: a change of any of these asks the user again.
pub fn fingerprint(doc: &Map<String, Value>) -> String {
    let canonical = json!([
        doc.get("client_name"),
        doc.get("redirect_uris"),
        doc.get("token_endpoint_auth_method"),
        doc.get("grant_types"),
        doc.get("scope"),
    ]);
    rules::hash(&canonical.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_addresses_are_refused() {
        for bad in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:a00:1::",
            "2002:7f00:1::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "::127.0.0.1",
        ] {
            assert!(is_forbidden(bad.parse().unwrap(), false), "{bad}");
        }
        for ok in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!is_forbidden(ok.parse().unwrap(), false), "{ok}");
        }
        // The loopback exception admits loopback only.
        assert!(!is_forbidden("127.0.0.1".parse().unwrap(), true));
        assert!(!is_forbidden("::1".parse().unwrap(), true));
        assert!(!is_forbidden("::ffff:127.0.0.1".parse().unwrap(), true));
        assert!(is_forbidden("10.0.0.1".parse().unwrap(), true));
        assert!(is_forbidden("169.254.169.254".parse().unwrap(), true));
    }

    #[test]
    fn a_mixed_answer_is_refused_whole() {
        let public: SocketAddr = "8.8.8.8:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert!(vet(&[public], false).is_ok());
        assert!(vet(&[public, private], false).is_err());
        assert!(vet(&[], false).is_err());
    }

    #[test]
    fn documents_are_checked() {
        let id = "https://app.example/client.json";
        let ok = json!({"client_id": id, "client_name": "App", "redirect_uris": ["http://127.0.0.1/cb"]});
        assert!(validate(id, ok.to_string().as_bytes(), &[]).is_ok());
        let with = |k: &str, v: Value| {
            let mut d = ok.as_object().unwrap().clone();
            d.insert(k.into(), v);
            validate(id, Value::Object(d).to_string().as_bytes(), &[])
        };
        assert_eq!(
            with("client_id", json!("https://app.example/client.json/")).unwrap_err(),
            CimdError::ClientIdMismatch
        );
        assert_eq!(
            with("client_id", json!("https://APP.example/client.json")).unwrap_err(),
            CimdError::ClientIdMismatch
        );
        assert_eq!(
            with("client_name", json!("")).unwrap_err(),
            CimdError::InvalidMetadata
        );
        assert_eq!(
            with("redirect_uris", json!([])).unwrap_err(),
            CimdError::InvalidMetadata
        );
        assert_eq!(
            with("redirect_uris", json!(["http://evil.example/cb"])).unwrap_err(),
            CimdError::InvalidMetadata
        );
        assert_eq!(
            with("token_endpoint_auth_method", json!("private_key_jwt")).unwrap_err(),
            CimdError::InvalidMetadata
        );
        assert_eq!(
            with("client_secret", json!("x")).unwrap_err(),
            CimdError::InvalidMetadata
        );
        assert_eq!(
            with("grant_types", json!(["implicit"])).unwrap_err(),
            CimdError::InvalidMetadata
        );
        assert_eq!(
            validate(id, b"<html>", &[]).unwrap_err(),
            CimdError::NotJson
        );
        assert_eq!(validate(id, b"[]", &[]).unwrap_err(), CimdError::NotJson);
    }
}
