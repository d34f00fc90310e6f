//! The authorization server on HTTP: its routes, and the one mapping of its answers and
//! errors to responses (pages with their security headers, redirects, JSON with
//! `no-store`). The protocol itself is in `crate::authz`.
//!
//! The routes sit outside bearer authentication. Pages keep the loopback Host check (DNS
//! rebinding: they set cookies); the JSON endpoints and metadata answer any origin (CORS
//! `*`), since browser-based MCP clients call them and nothing there depends on cookies.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;

use super::AppState;
use super::server::PeerAddr;
use crate::authz::{Answer, AuthorizationServer, AuthzError, Browser, Reply, web};

/// Largest form or registration body.
const BODY_LIMIT: usize = 64 * 1024;

/// The authorization server's routes (none when it is off).
pub(crate) fn routes(st: &AppState) -> Router<AppState> {
    if st.authz.is_none() {
        return Router::new();
    }
    let mut pages = Router::new()
        .route("/oauth/authorize", get(authorize).post(authorize))
        .route("/oauth/callback", get(callback))
        .route("/oauth/consent", get(consent_page).post(consent))
        .route("/oauth/dev-login", post(dev_login))
        .route(web::CSS_PATH, get(css));
    if st.connections.is_some() {
        pages = pages
            .route("/connections", get(connections_page))
            .route("/connections/revoke", post(revoke_connection))
            .route(
                "/connections/{name}/connect",
                get(connect_page).post(connect),
            )
            .route(
                crate::connections::flow::CALLBACK_PATH,
                get(connection_callback),
            );
    }
    // DNS-rebinding protection (Host) for pages that set cookies.
    let pages = pages.layer(middleware::from_fn_with_state(st.clone(), host_check));
    let api = Router::new()
        .route("/oauth/token", post(token).options(preflight))
        .route("/oauth/revoke", post(revoke).options(preflight))
        .route("/oauth/register", post(register).options(preflight));
    pages.merge(api).layer(DefaultBodyLimit::max(BODY_LIMIT))
}

async fn host_check(State(st): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &st.config.allowed_hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(super::origin::host_of);
        if !host.is_some_and(|h| {
            hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h.trim_matches(['[', ']'])))
        }) {
            return plain(StatusCode::FORBIDDEN, "forbidden host");
        }
    }
    next.run(request).await
}

fn server(st: &AppState) -> Option<&Arc<AuthorizationServer>> {
    st.authz.as_ref()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The browser-binding cookie (the first one of that name).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn browser<'a>(srv: &AuthorizationServer, headers: &'a HeaderMap) -> Browser<'a> {
    Browser {
        cookie: cookie(headers, srv.cookie_name()),
        session: cookie(headers, srv.session_cookie_name()),
        origin: header_str(headers, "origin"),
        fetch_site: header_str(headers, "sec-fetch-site"),
    }
}

async fn authorize(State(st): State<AppState>, request: Request) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let headers = request.headers().clone();
    let input: Vec<u8> = if request.method() == Method::POST {
        match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
            Ok(b) => b.to_vec(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "too large"),
        }
    } else {
        request.uri().query().unwrap_or("").as_bytes().to_vec()
    };
    let result = srv.authorize(&input, browser(srv, &headers)).await;
    reply(srv, &st, result)
}

async fn callback(State(st): State<AppState>, request: Request) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let query = request.uri().query().unwrap_or("").as_bytes().to_vec();
    let result = srv.callback(&query, browser(srv, request.headers())).await;
    reply(srv, &st, result)
}

async fn connect_page(
    State(st): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let (Some(srv), Some(connections)) = (server(&st), &st.connections) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let query = request.uri().query().unwrap_or("").as_bytes().to_vec();
    let result = connections
        .connect_page(srv, &name, &query, browser(srv, request.headers()))
        .await;
    reply(srv, &st, result)
}

async fn connect(
    State(st): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(srv), Some(connections)) = (server(&st), &st.connections) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let result = connections
        .connect(srv, &name, &body, browser(srv, &headers))
        .await;
    reply(srv, &st, result)
}

async fn connections_page(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let (Some(srv), Some(connections)) = (server(&st), &st.connections) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let result = connections.page(srv, browser(srv, &headers)).await;
    reply(srv, &st, result)
}

/// A revocation from the user's page: the user's sessions whose server was given the token
/// end at once.
async fn revoke_connection(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(srv), Some(connections)) = (server(&st), &st.connections) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let result = connections
        .revoke_posted(srv, &body, browser(srv, &headers))
        .await
        .map(|(reply, revoked)| {
            if let Some(r) = revoked {
                let owner =
                    crate::auth::Principal::new(&srv.config().issuer, &r.user).session_key();
                let ended = st.store.end_carrying(&owner, r.access_token.expose());
                tracing::info!(connection = %r.connection, sessions_ended = ended, "a user revoked a connection");
            }
            reply
        });
    reply(srv, &st, result)
}

async fn connection_callback(State(st): State<AppState>, request: Request) -> Response {
    let (Some(srv), Some(connections)) = (server(&st), &st.connections) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let query = request.uri().query().unwrap_or("").as_bytes().to_vec();
    let result = connections
        .callback(srv, &query, browser(srv, request.headers()))
        .await;
    reply(srv, &st, result)
}

async fn consent_page(State(st): State<AppState>, request: Request) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let query = request.uri().query().unwrap_or("").as_bytes().to_vec();
    let result = srv
        .consent_page(&query, browser(srv, request.headers()))
        .await;
    reply(srv, &st, result)
}

async fn consent(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let result = srv.consent(&body, browser(srv, &headers)).await;
    reply(srv, &st, result)
}

async fn dev_login(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let result = srv.dev_login(&body, browser(srv, &headers)).await;
    reply(srv, &st, result)
}

async fn css() -> Response {
    let mut r = Response::new(Body::from(web::CSS));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1: each part form-urlencoded).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, "authorization")?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

fn is_form(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type").is_some_and(|c| {
        c.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

async fn token(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if !is_form(&headers) {
        return json_error(400, "invalid_request", "the body must be a form", false);
    }
    match srv.token(&body, basic(&headers)).await {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(srv, &st, e),
    }
}

async fn revoke(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if !is_form(&headers) {
        return json_error(400, "invalid_request", "the body must be a form", false);
    }
    match srv.revoke(&body, basic(&headers)).await {
        Ok(()) => {
            let mut r = json(StatusCode::OK, &serde_json::json!({}));
            *r.body_mut() = Body::empty();
            r
        }
        Err(e) => error(srv, &st, e),
    }
}

async fn register(State(st): State<AppState>, request: Request) -> Response {
    let Some(srv) = server(&st) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let json_body = header_str(request.headers(), "content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json_body {
        return json_error(
            400,
            "invalid_client_metadata",
            "the body must be JSON",
            false,
        );
    }
    let body = match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return json_error(
                413,
                "invalid_client_metadata",
                "the body is too large",
                false,
            );
        }
    };
    match srv.register(&body, peer).await {
        Ok(v) => json(StatusCode::CREATED, &v),
        Err(e) => error(srv, &st, e),
    }
}

/// CORS preflight of the JSON endpoints.
async fn preflight() -> Response {
    super::well_known::cors_preflight("POST, OPTIONS")
}

fn reply(srv: &AuthorizationServer, st: &AppState, result: Result<Reply, AuthzError>) -> Response {
    match result {
        Ok(Reply {
            answer,
            set_cookie,
            set_session,
        }) => {
            let mut r = match answer {
                Answer::Page(p) => page(p),
                Answer::Redirect(location) => redirect(&location),
            };
            let secure = if srv.config().secure_cookies {
                "; Secure"
            } else {
                ""
            };
            let cookies = [
                (srv.cookie_name(), set_cookie, 86_400),
                (
                    srv.session_cookie_name(),
                    set_session,
                    crate::authz::WEB_SESSION_SECS,
                ),
            ];
            for (name, value, max_age) in cookies {
                let Some(value) = value else { continue };
                let c = format!(
                    "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
                );
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => error(srv, st, e),
    }
}

/// The one mapping of the authorization server's errors to responses.
fn error(srv: &AuthorizationServer, st: &AppState, e: AuthzError) -> Response {
    let cfg = srv.config();
    let css = format!("{}{}", cfg.issuer, web::CSS_PATH);
    let error_page =
        |status: u16, title: &str, message: &str, reason: &str, back: Option<&str>| web::Page {
            status,
            html: web::render(&web::ErrorPage {
                title,
                resource_name: &cfg.resource_name,
                css_url: &css,
                message,
                reason,
                return_url: back,
            }),
            form_target: None,
        };
    match e {
        AuthzError::Page { status, reason } => {
            tracing::info!(reason = reason.code(), status, "sign-in request refused");
            st.metrics.authz_refused(reason.code());
            page(error_page(
                status,
                "Cannot sign in",
                reason.message(),
                reason.code(),
                None,
            ))
        }
        AuthzError::Refused {
            reason,
            return_url,
            form_target,
        } => {
            st.metrics.authz_refused(reason.code());
            let mut p = error_page(
                403,
                "Access denied",
                reason.message(),
                reason.code(),
                Some(&return_url),
            );
            p.form_target = form_target;
            page(p)
        }
        AuthzError::Redirect { location } => redirect(&location),
        AuthzError::Token(t) => {
            st.metrics.authz_refused(t.code);
            json_error(t.status, t.code, t.description, t.basic_challenge)
        }
        AuthzError::RateLimited { retry_after } => {
            let mut r = json_error(429, "invalid_request", "too many registrations", false);
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        AuthzError::Store(err) => {
            tracing::error!(error = %err, "the sign-in state store failed");
            let mut r = json_error(503, "temporarily_unavailable", "try again later", false);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        AuthzError::Upstream(err) => {
            tracing::error!(error = %err, "the sign-in provider is unavailable");
            page(error_page(
                502,
                "Cannot sign in",
                "Your identity provider did not answer. Try again in a moment.",
                "upstream_unavailable",
                None,
            ))
        }
    }
}

/// A page with the headers every page gets.
fn page(p: web::Page) -> Response {
    let csp = p.csp();
    let mut r = Response::new(Body::from(p.html));
    *r.status_mut() = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    page_headers(h);
    r
}

/// The headers every server-rendered page is sent with (the activity page's too).
pub(super) fn page_headers(h: &mut HeaderMap) {
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Flow ids and codes must not leak through Referer to another origin. Not
    // `no-referrer`: under it browsers send `Origin: null` even on our own form posts,
    // which the cross-site check then refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn redirect(location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    page_headers(r.headers_mut());
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // RFC 6749 §5.1: token responses are never cached.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn json_error(status: u16, code: &str, description: &str, basic_challenge: bool) -> Response {
    let mut r = json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &serde_json::json!({"error": code, "error_description": description}),
    );
    if basic_challenge && status == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mcp-warden\""),
        );
    }
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}
