//! Resource identifiers and RFC 9728 Protected Resource Metadata.
//!
//! We are up to three protected resources, each with its own metadata document at the URL
//! RFC 9728 §3.1 derives from its identifier (the well-known suffix inserted before the
//! path):
//! - the Streamable HTTP endpoint, `https://h/mcp`: the canonical identifier, the audience
//!   of tokens for that endpoint;
//! - the legacy SSE endpoint, `https://h/sse`, the audience of tokens for the legacy
//!   endpoints, because SDK clients derive the resource from the URL they connect to and
//!   refuse metadata whose `resource` is not that URL or a prefix of it;
//! - the origin, `https://h`, whose metadata lives at the root well-known URL, and whose
//!   tokens every endpoint accepts. Only when the operator says the origin is this server's
//!   alone (`--accept-origin-audience`, never behind a path prefix): an origin is often
//!   shared, and a token for it must not open every service on it.

use std::borrow::Cow;

use serde_json::{Value, json};
use url::Url;

/// The well-known suffix of RFC 9728 §3.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// One protected resource we answer for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The canonical identifier (what a token's `aud` must contain).
    pub id: String,
    /// The absolute URL of its metadata document (for `resource_metadata=`).
    pub metadata_url: String,
    /// Paths under which our router serves that document: the public one, and the one a
    /// path-stripping proxy forwards it as.
    pub metadata_paths: Vec<String>,
}

impl Resource {
    /// `url`: the resource's public URL. `strip`: the public path prefix a proxy removes
    /// before forwarding to us ("" when none).
    pub fn new(url: &Url, strip: &str) -> Resource {
        let id = canonical_resource(url);
        let path = url.path().trim_end_matches('/');
        let metadata_url = format!("{}{WELL_KNOWN}{path}", origin(url));
        let mut metadata_paths = vec![format!("{WELL_KNOWN}{path}")];
        if !strip.is_empty()
            && let Some(rest) = path.strip_prefix(strip)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            metadata_paths.push(format!("{WELL_KNOWN}{rest}"));
        }
        Resource {
            id,
            metadata_url,
            metadata_paths,
        }
    }
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// The canonical form of a resource URI (MCP authorization, "Canonical Server URI"; RFC
/// 8707 §2): lowercase scheme and host, default port omitted, no fragment, and no
/// trailing slash (the origin alone has no `/`).
pub fn canonical_resource(url: &Url) -> String {
    let mut out = origin(url);
    let path = url.path().trim_end_matches('/');
    out.push_str(path);
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A token's `aud` value in the form it is compared in: http(s) URLs canonicalized
/// (servers "SHOULD accept uppercase scheme and host components"), anything else as is.
pub fn canonical_audience(aud: &str) -> Cow<'_, str> {
    let looks_like_url = aud
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        || aud
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if !looks_like_url {
        return Cow::Borrowed(aud);
    }
    match Url::parse(aud) {
        Ok(url) if url.fragment().is_none() && url.host().is_some() => {
            let canonical = canonical_resource(&url);
            if canonical == aud {
                Cow::Borrowed(aud)
            } else {
                Cow::Owned(canonical)
            }
        }
        _ => Cow::Borrowed(aud),
    }
}

/// The metadata document of one resource (RFC 9728 §2). Only the `header` bearer method
/// is advertised: tokens in the query or a form body are refused. `offline_access` never
/// appears in `scopes_supported` (MCP authorization, "Scope Selection Strategy").
pub fn document(
    resource: &Resource,
    authorization_servers: &[String],
    scopes_supported: &[String],
    resource_name: &str,
) -> Value {
    let mut doc = json!({
        "resource": resource.id,
        "authorization_servers": authorization_servers,
        "bearer_methods_supported": ["header"],
        "resource_name": resource_name,
    });
    let scopes: Vec<&String> = scopes_supported
        .iter()
        .filter(|s| s.as_str() != "offline_access")
        .collect();
    if !scopes.is_empty()
        && let Some(map) = doc.as_object_mut()
    {
        map.insert("scopes_supported".into(), json!(scopes));
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn canonical_form() {
        assert_eq!(
            canonical_resource(&url("HTTPS://Tools.Example.COM:443/mcp/")),
            "https://tools.example.com/mcp"
        );
        assert_eq!(
            canonical_resource(&url("http://127.0.0.1:8080/")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            canonical_resource(&url("https://h/Team/MCP")),
            "https://h/Team/MCP"
        );
    }

    #[test]
    fn audiences_compare_in_canonical_form() {
        assert_eq!(
            canonical_audience("HTTPS://H.example/mcp/"),
            "https://h.example/mcp"
        );
        assert_eq!(
            canonical_audience("https://h.example/mcp"),
            "https://h.example/mcp"
        );
        assert_eq!(canonical_audience("api://mcp"), "api://mcp");
        assert_eq!(canonical_audience("https://h/mcp#x"), "https://h/mcp#x");
        assert_eq!(canonical_audience("https://"), "https://");
    }

    #[test]
    fn metadata_url_inserts_the_well_known_suffix_before_the_path() {
        let r = Resource::new(&url("https://h.example/mcp"), "");
        assert_eq!(r.id, "https://h.example/mcp");
        assert_eq!(
            r.metadata_url,
            "https://h.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            r.metadata_paths,
            vec!["/.well-known/oauth-protected-resource/mcp"]
        );

        let root = Resource::new(&url("https://h.example"), "");
        assert_eq!(root.id, "https://h.example");
        assert_eq!(
            root.metadata_url,
            "https://h.example/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn a_stripped_prefix_is_served_both_ways() {
        let r = Resource::new(&url("https://h.example/team/mcp"), "/team");
        assert_eq!(
            r.metadata_url,
            "https://h.example/.well-known/oauth-protected-resource/team/mcp"
        );
        assert_eq!(
            r.metadata_paths,
            vec![
                "/.well-known/oauth-protected-resource/team/mcp",
                "/.well-known/oauth-protected-resource/mcp"
            ]
        );
    }

    #[test]
    fn document_advertises_header_only_and_never_offline_access() {
        let r = Resource::new(&url("https://h/mcp"), "");
        let doc = document(
            &r,
            &["https://as.example".into()],
            &["mcp:tools".into(), "offline_access".into()],
            "files",
        );
        assert_eq!(
            doc,
            json!({
                "resource": "https://h/mcp",
                "authorization_servers": ["https://as.example"],
                "bearer_methods_supported": ["header"],
                "resource_name": "files",
                "scopes_supported": ["mcp:tools"],
            })
        );
        let doc = document(&r, &["https://as".into()], &[], "x");
        assert!(doc.get("scopes_supported").is_none());
    }
}
