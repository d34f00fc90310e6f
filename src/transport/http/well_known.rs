//! Public metadata documents: RFC 9728 protected resource metadata for each resource we
//! are (at the URL RFC 9728 §3.1 derives from its identifier), and, when we issue tokens
//! ourselves (`--dev`, the sign-in server), our key set and RFC 8414 / OpenID metadata.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use serde_json::Value;

use super::AppState;
use crate::auth::{resource_metadata, signer};

/// The well-known routes (none with `--no-auth`: nothing is protected then).
pub(crate) fn routes(st: &AppState) -> Router<AppState> {
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(config) = st.auth.config() {
        let servers = st.auth.authorization_servers();
        for resource in config.resources.all() {
            let doc = resource_metadata::document(
                resource,
                servers,
                &config.scopes_supported,
                &config.resource_name,
            );
            for path in &resource.metadata_paths {
                // The first resource claiming a path keeps it (e.g. `--path /` makes the
                // endpoint and the origin one resource).
                docs.entry(path.clone()).or_insert_with(|| doc.clone());
            }
        }
        if let Some(local) = st.auth.local_issuer() {
            let prefix = st.config.public_prefix.as_str();
            let metadata = match &st.authz {
                Some(authz) => authz.metadata(),
                // The development issuer without sign-in (a public listener): keys only.
                None => local.metadata(&config.scopes_supported),
            };
            let mut paths = vec![
                "/.well-known/oauth-authorization-server".to_owned(),
                "/.well-known/openid-configuration".to_owned(),
            ];
            if !prefix.is_empty() {
                paths.push(format!("/.well-known/oauth-authorization-server{prefix}"));
                paths.push(format!("/.well-known/openid-configuration{prefix}"));
            }
            for path in paths {
                docs.entry(path).or_insert_with(|| metadata.clone());
            }
            docs.entry(signer::JWKS_PATH.to_owned())
                .or_insert_with(|| local.jwks());
        }
    }
    let mut router = Router::new();
    for (path, doc) in docs {
        let body = Bytes::from(doc.to_string());
        router = router.route(
            &path,
            get(move || {
                let body = body.clone();
                async move { document(body) }
            })
            .options(preflight),
        );
    }
    router
}

/// Metadata is public and fetched by browser-based clients too: any origin may read it.
fn document(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// CORS preflight: SDK clients send `MCP-Protocol-Version` with their metadata requests.
async fn preflight() -> Response {
    cors_preflight("GET, OPTIONS")
}

/// The answer to a CORS preflight of a public JSON endpoint allowing `methods`: any origin,
/// any header, cached for a day. These endpoints take no cookies, so `*` exposes nothing.
pub(super) fn cors_preflight(methods: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}
