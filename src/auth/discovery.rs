//! Authorization server metadata: RFC 8414 (well-known suffix inserted before the issuer's
//! path), then OpenID Connect Discovery (suffix appended), as MCP requires servers to
//! offer at least one of the two.

use serde_json::{Map, Value};
use url::Url;

use super::fetch::{self, FetchError, HttpClient, MAX_DOCUMENT_BYTES};

/// What we use of an authorization server's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub issuer: String,
    pub jwks_uri: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    /// Where token exchange (RFC 8693) requests go.
    pub token_endpoint: Option<Url>,
    /// Where users sign in (when we federate to this server).
    pub authorization_endpoint: Option<Url>,
    /// OpenID UserInfo.
    pub userinfo_endpoint: Option<Url>,
    /// RFC 9207: the server names itself in authorization responses.
    pub iss_parameter_supported: bool,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("{0:?} is not an http(s) URL without query or fragment")]
    BadIssuer(String),
    #[error(
        "the metadata at {url} names issuer {found:?}, not {expected:?} (RFC 8414 §3.3); use --issuer {found}"
    )]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("{field} in the metadata of {issuer} must be an https URL (http only on loopback)")]
    InsecureEndpoint { issuer: String, field: &'static str },
    #[error("no authorization server metadata for {issuer}: {last}")]
    NotFound { issuer: String, last: FetchError },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The metadata URLs to try, in order: RFC 8414 §3.1 then OpenID Connect Discovery 1.0 §4.
pub(crate) fn discovery_urls(issuer: &str) -> Result<[Url; 2], DiscoveryError> {
    let bad = || DiscoveryError::BadIssuer(issuer.to_owned());
    let url = Url::parse(issuer).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad());
    }
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let oauth = format!("{origin}/.well-known/oauth-authorization-server{path}");
    let oidc = format!("{origin}{path}/.well-known/openid-configuration");
    Ok([
        Url::parse(&oauth).map_err(|_| bad())?,
        Url::parse(&oidc).map_err(|_| bad())?,
    ])
}

/// Checks a metadata document: its `issuer` must be exactly the one we asked about
/// (mix-up protection), and endpoints must be https (or loopback http).
pub(crate) fn parse(
    issuer: &str,
    url: &Url,
    doc: &Map<String, Value>,
) -> Result<Metadata, DiscoveryError> {
    let found = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if found != issuer {
        return Err(DiscoveryError::IssuerMismatch {
            url: url.to_string(),
            expected: issuer.to_owned(),
            found: found.to_owned(),
        });
    }
    let endpoint = |field: &'static str| -> Result<Option<Url>, DiscoveryError> {
        let Some(v) = doc.get(field).and_then(Value::as_str) else {
            return Ok(None);
        };
        let insecure = || DiscoveryError::InsecureEndpoint {
            issuer: issuer.to_owned(),
            field,
        };
        let u = Url::parse(v).map_err(|_| insecure())?;
        if !fetch::is_secure_endpoint(&u) {
            return Err(insecure());
        }
        Ok(Some(u))
    };
    Ok(Metadata {
        issuer: issuer.to_owned(),
        jwks_uri: endpoint("jwks_uri")?,
        introspection_endpoint: endpoint("introspection_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        authorization_endpoint: endpoint("authorization_endpoint")?,
        userinfo_endpoint: endpoint("userinfo_endpoint")?,
        iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Fetches the metadata of `issuer`, trying each well-known URL while the previous one
/// is absent (4xx).
pub(crate) async fn discover(http: &HttpClient, issuer: &str) -> Result<Metadata, DiscoveryError> {
    let urls = discovery_urls(issuer)?;
    let mut last = None;
    for url in &urls {
        match http.get_json(url, MAX_DOCUMENT_BYTES).await {
            Ok(fetched) => return parse(issuer, url, &fetched.body),
            Err(e) if e.is_absent() => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(DiscoveryError::NotFound {
        issuer: issuer.to_owned(),
        last: last.unwrap_or(FetchError::NotJson {
            url: issuer.to_owned(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8414_inserts_and_oidc_appends() {
        let [oauth, oidc] = discovery_urls("https://as.example.com/tenant/1").unwrap();
        assert_eq!(
            oauth.as_str(),
            "https://as.example.com/.well-known/oauth-authorization-server/tenant/1"
        );
        assert_eq!(
            oidc.as_str(),
            "https://as.example.com/tenant/1/.well-known/openid-configuration"
        );
        let [oauth, oidc] = discovery_urls("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            oauth.as_str(),
            "http://127.0.0.1:9000/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            oidc.as_str(),
            "http://127.0.0.1:9000/.well-known/openid-configuration"
        );
        assert!(discovery_urls("https://as.example.com/?x=1").is_err());
        assert!(discovery_urls("as.example.com").is_err());
    }

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn metadata_must_name_the_same_issuer() {
        let url = Url::parse("https://as.example/.well-known/oauth-authorization-server").unwrap();
        let m = parse(
            "https://as.example",
            &url,
            &doc(json!({"issuer": "https://as.example", "jwks_uri": "https://as.example/jwks"})),
        )
        .unwrap();
        assert_eq!(m.jwks_uri.unwrap().as_str(), "https://as.example/jwks");
        for other in ["https://as.example/", "https://evil.example", ""] {
            assert!(matches!(
                parse("https://as.example", &url, &doc(json!({"issuer": other}))),
                Err(DiscoveryError::IssuerMismatch { .. })
            ));
        }
    }

    #[test]
    fn endpoints_must_be_https() {
        let url = Url::parse("https://as.example/x").unwrap();
        let r = parse(
            "https://as.example",
            &url,
            &doc(json!({"issuer": "https://as.example", "jwks_uri": "http://as.example/jwks"})),
        );
        assert!(matches!(
            r,
            Err(DiscoveryError::InsecureEndpoint {
                field: "jwks_uri",
                ..
            })
        ));
        let r = parse(
            "http://127.0.0.1:9",
            &url,
            &doc(json!({"issuer": "http://127.0.0.1:9", "introspection_endpoint": "http://127.0.0.1:9/i"})),
        )
        .unwrap();
        assert_eq!(
            r.introspection_endpoint.unwrap().as_str(),
            "http://127.0.0.1:9/i"
        );
    }
}
