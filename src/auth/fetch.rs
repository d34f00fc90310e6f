//! Outbound HTTP to authorization servers: rustls with the system's roots plus an optional
//! extra CA bundle, no redirects, bounded response sizes, and https required except for
//! loopback hosts.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde_json::Value;
use url::Url;

/// Largest key set or metadata document read.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why an authorization server could not be reached or understood. Messages carry URLs and
/// statuses, never a token or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: response is not a JSON object")]
    NotJson { url: String },
}

impl FetchError {
    /// A 4xx other than 429: the document is not there (try the next well-known URL).
    pub fn is_absent(&self) -> bool {
        matches!(self, FetchError::Status { status, .. } if (400..500).contains(status) && *status != 429)
    }
}

/// The outbound client, shared by discovery, key fetches and introspection.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

/// A JSON object and how long the server lets us cache it.
#[derive(Debug)]
pub struct Fetched {
    pub body: serde_json::Map<String, Value>,
    pub cache: CacheDirective,
}

/// Freshness from `Cache-Control` (RFC 9111 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDirective {
    /// No usable directive: the caller's default applies.
    Unspecified,
    /// `no-store` / `no-cache` / `max-age=0`: as short as the caller allows.
    DoNotCache,
    MaxAge(Duration),
}

impl HttpClient {
    /// `extra_roots`: PEM certificates trusted in addition to the system's roots.
    pub fn new(extra_roots: Option<&[u8]>, timeout: Duration) -> Result<HttpClient, String> {
        let tls = client_tls(extra_roots)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            // A redirect could lead the key fetch anywhere; metadata URLs are configured or
            // come from checked metadata, and must answer directly.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .user_agent(concat!("mcp-warden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(HttpClient { client })
    }

    /// GETs a JSON object of at most `limit` bytes.
    pub async fn get_json(&self, url: &Url, limit: usize) -> Result<Fetched, FetchError> {
        let request = self
            .client
            .get(url.clone())
            .header(ACCEPT, "application/json");
        let response = request.send().await.map_err(|e| network(url, &e))?;
        let cache = response
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .fold(CacheDirective::Unspecified, |acc, v| {
                match (acc, cache_directive(v)) {
                    (CacheDirective::DoNotCache, _) | (_, CacheDirective::DoNotCache) => {
                        CacheDirective::DoNotCache
                    }
                    (_, CacheDirective::MaxAge(d)) => CacheDirective::MaxAge(d),
                    (acc, CacheDirective::Unspecified) => acc,
                }
            });
        let body = read_json(url, response, limit).await?;
        Ok(Fetched { body, cache })
    }

    /// POSTs a form with HTTP Basic client authentication (RFC 6749 §2.3.1: id and secret
    /// form-urlencoded first) and reads a JSON object of at most `limit` bytes.
    pub async fn post_form(
        &self,
        url: &Url,
        client_id: &str,
        client_secret: &super::Secret,
        form: &[(&str, &str)],
        limit: usize,
    ) -> Result<serde_json::Map<String, Value>, FetchError> {
        let response = self.send_form(url, client_id, client_secret, form).await?;
        read_json(url, response, limit).await
    }

    /// POSTs a form as [`HttpClient::post_form`] does, to an endpoint that answers success
    /// with no content (RFC 7009 revocation).
    pub async fn post_form_empty(
        &self,
        url: &Url,
        client_id: &str,
        client_secret: &super::Secret,
        form: &[(&str, &str)],
    ) -> Result<(), FetchError> {
        let response = self.send_form(url, client_id, client_secret, form).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        Ok(())
    }

    async fn send_form(
        &self,
        url: &Url,
        client_id: &str,
        client_secret: &super::Secret,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, FetchError> {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.client
            .post(url.clone())
            .basic_auth(enc(client_id), Some(enc(&client_secret.expose_str())))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| network(url, &e))
    }
}

impl HttpClient {
    /// POSTs a form without HTTP authentication (the form authenticates, where it must) and
    /// reads a JSON object of at most `limit` bytes.
    pub async fn post_form_public(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        limit: usize,
    ) -> Result<serde_json::Map<String, Value>, FetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| network(url, &e))?;
        read_json(url, response, limit).await
    }
}

/// The TLS setup of [`HttpClient`], for other outbound clients with their own rules
/// (client metadata documents).
pub fn client_tls_config(extra_roots: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    client_tls(extra_roots)
}

impl HttpClient {
    /// GETs a JSON object with a bearer token (OpenID UserInfo).
    pub async fn get_json_bearer(
        &self,
        url: &Url,
        token: &str,
        limit: usize,
    ) -> Result<serde_json::Map<String, Value>, FetchError> {
        let response = self
            .client
            .get(url.clone())
            .bearer_auth(token)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| network(url, &e))?;
        read_json(url, response, limit).await
    }
}

/// rustls with the same crypto provider as our HTTPS server (aws-lc-rs), the system's
/// roots and `extra_roots`.
fn client_tls(extra_roots: Option<&[u8]>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "while loading the system's CA certificates");
    }
    // Stores often hold a few certificates rustls cannot parse; the others still count.
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(pem) = extra_roots {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot read the CA bundle: {e}"))?;
        if certs.is_empty() {
            return Err("the CA bundle contains no certificate".into());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("the CA bundle holds an unusable certificate: {e}"))?;
        }
    } else if added == 0 {
        tracing::warn!(
            "no CA certificates found on this system; https authorization servers cannot be verified (see --ca-bundle)"
        );
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn network(url: &Url, e: &reqwest::Error) -> FetchError {
    // The source chain says what went wrong (DNS, refused, TLS…); it never holds a body.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    FetchError::Network {
        url: url.to_string(),
        message,
    }
}

async fn read_json(
    url: &Url,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<serde_json::Map<String, Value>, FetchError> {
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(url, &e))? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(FetchError::NotJson {
            url: url.to_string(),
        }),
    }
}

/// The freshness one `Cache-Control` value grants.
pub fn cache_directive(value: &str) -> CacheDirective {
    let mut out = CacheDirective::Unspecified;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = directive
            .split_once('=')
            .map_or((directive, None), |(n, a)| {
                (n.trim(), Some(a.trim().trim_matches('"')))
            });
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return CacheDirective::DoNotCache;
        }
        if name.eq_ignore_ascii_case("max-age") {
            match arg.and_then(|a| a.parse::<u64>().ok()) {
                Some(0) => return CacheDirective::DoNotCache,
                Some(secs) => out = CacheDirective::MaxAge(Duration::from_secs(secs)),
                None => {}
            }
        }
    }
    out
}

/// Whether `url` may be used to reach an authorization server: https, or http to a
/// loopback host (a local development or test server).
pub fn is_secure_endpoint(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback_host(url),
        _ => false,
    }
}

/// `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        assert_eq!(
            cache_directive("public, max-age=3600"),
            CacheDirective::MaxAge(Duration::from_secs(3600))
        );
        assert_eq!(
            cache_directive("max-age=\"60\""),
            CacheDirective::MaxAge(Duration::from_secs(60))
        );
        assert_eq!(cache_directive("max-age=0"), CacheDirective::DoNotCache);
        assert_eq!(
            cache_directive("max-age=60, no-cache"),
            CacheDirective::DoNotCache
        );
        assert_eq!(cache_directive("No-Store"), CacheDirective::DoNotCache);
        assert_eq!(cache_directive("private"), CacheDirective::Unspecified);
        assert_eq!(cache_directive("max-age=soon"), CacheDirective::Unspecified);
    }

    #[test]
    fn https_is_required_except_for_loopback() {
        let ok = |s: &str| is_secure_endpoint(&Url::parse(s).unwrap());
        assert!(ok("https://as.example.com/jwks"));
        assert!(ok("http://127.0.0.1:9000/jwks"));
        assert!(ok("http://127.8.0.1/jwks"));
        assert!(ok("http://localhost:9000"));
        assert!(ok("http://[::1]:9000"));
        assert!(!ok("http://as.example.com/jwks"));
        assert!(!ok("http://localhost.evil.example/jwks"));
        assert!(!ok("http://10.0.0.1/jwks"));
        assert!(!ok("ftp://127.0.0.1/jwks"));
    }

    /// An https server on loopback with a certificate from a private CA; answers one JSON
    /// document to every request.
    async fn https_server(ca_pem: &mut String) -> String {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        *ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/doc",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let body = r#"{"ok":true}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=120\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn https_with_an_extra_ca_bundle() {
        let mut ca = String::new();
        let url = Url::parse(&https_server(&mut ca).await).unwrap();
        let trusted = HttpClient::new(Some(ca.as_bytes()), Duration::from_secs(5)).unwrap();
        let fetched = trusted.get_json(&url, 1024).await.unwrap();
        assert_eq!(fetched.body.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(
            fetched.cache,
            CacheDirective::MaxAge(Duration::from_secs(120))
        );
        assert!(matches!(
            trusted.get_json(&url, 4).await,
            Err(FetchError::TooLarge { .. })
        ));
        // Without the private CA the server's certificate is not trusted.
        let system_only = HttpClient::new(None, Duration::from_secs(5)).unwrap();
        assert!(matches!(
            system_only.get_json(&url, 1024).await,
            Err(FetchError::Network { .. })
        ));
    }

    #[test]
    fn client_refuses_an_empty_ca_bundle() {
        assert!(HttpClient::new(Some(b"not a certificate"), Duration::from_secs(1)).is_err());
        assert!(HttpClient::new(None, Duration::from_secs(1)).is_ok());
    }
}
