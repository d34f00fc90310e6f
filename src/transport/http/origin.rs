//! Browser protection of the MCP endpoints: a present, disallowed `Origin` gets 403, and so
//! does a `Host` that does not name this server when it listens on loopback (a rebinding page
//! reaches a loopback server under its own host name, and a same-origin GET carries no
//! `Origin`), and so does a request a browser marks as coming from another origin
//! (`Sec-Fetch-Site: cross-site` or `same-site`) without naming it: a no-cors request
//! (`<img>`, `fetch` with `mode: "no-cors"`) or a navigation from another page. Those carry
//! no `Origin` to check, and without authentication nothing else would stop them from
//! starting servers. `same-site` counts too: a page on `localhost:3000` is same-site with a
//! sidecar on `localhost:8080`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::rescue::Failure;

pub(crate) async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &state.config.allowed_hosts {
        let host = request.uri().host().map(str::to_owned).or_else(|| {
            let value = request.headers().get(header::HOST)?.to_str().ok()?;
            Some(host_of(value).to_owned())
        });
        if !host.is_some_and(|h| {
            hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h.trim_matches(['[', ']'])))
        }) {
            return Failure::ForbiddenHost.into_response();
        }
    }
    match request.headers().get(header::ORIGIN) {
        Some(origin) => {
            let allowed = origin.to_str().is_ok_and(|o| {
                allowed(
                    o,
                    &state.config.allowed_origins,
                    state.config.allow_loopback_origins,
                )
            });
            if !allowed {
                return Failure::ForbiddenOrigin.into_response();
            }
        }
        // A CORS request always names its origin; one from another origin that does not is a
        // no-cors request or a navigation, which no MCP client makes.
        None if is_from_another_origin(request.headers()) => {
            return Failure::ForbiddenOrigin.into_response();
        }
        None => {}
    }
    next.run(request).await
}

/// Whether a browser says the request comes from another origin (Fetch Metadata): anything
/// but `same-origin` or `none` (typed by the user). Several values, or an unreadable one,
/// count as foreign: only a browser sends the header.
fn is_from_another_origin(headers: &HeaderMap) -> bool {
    headers
        .get_all(&SEC_FETCH_SITE)
        .iter()
        .any(|v| match v.to_str() {
            Ok(v) => {
                let v = v.trim();
                !(v.eq_ignore_ascii_case("same-origin") || v.eq_ignore_ascii_case("none"))
            }
            Err(_) => true,
        })
}

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// The host part of a `Host` header value (`name[:port]`, `[v6][:port]`).
pub(crate) fn host_of(value: &str) -> &str {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']').map_or(value, |(h, _)| h);
    }
    value.split_once(':').map_or(value, |(h, _)| h)
}

/// Whether `origin` (`scheme://host[:port]`) may call us.
pub(crate) fn allowed(origin: &str, list: &[String], loopback: bool) -> bool {
    if list
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    loopback && is_loopback_origin(origin)
}

fn is_loopback_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    if rest.contains(['/', '@', '?', '#']) {
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || port.starts_with(':') => {
                return h == "::1" && valid_port(port.strip_prefix(':').unwrap_or(port));
            }
            _ => return false,
        }
    } else {
        let (host, port) = rest.split_once(':').map_or((rest, ""), |(h, p)| (h, p));
        if !valid_port(port) {
            return false;
        }
        host
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
}

/// The digits after `host:`, possibly none; a number a browser could have connected to.
fn valid_port(port: &str) -> bool {
    port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_metadata_marks_requests_from_another_origin() {
        let with = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(
                    SEC_FETCH_SITE.clone(),
                    axum::http::HeaderValue::from_bytes(v).unwrap(),
                );
            }
            is_from_another_origin(&h)
        };
        assert!(with(&[b"cross-site"]));
        assert!(with(&[b"Cross-Site "]));
        // Another port of the same host is the same site, not the same origin.
        assert!(with(&[b"same-site"]));
        assert!(with(&[b"same-origin", b"cross-site"]));
        assert!(with(&[b"\xff"]));
        for ok in [&b"same-origin"[..], b"Same-Origin", b"none"] {
            assert!(!with(&[ok]), "{ok:?}");
        }
        assert!(!with(&[]));
    }

    #[test]
    fn loopback_origins_only_when_enabled() {
        for o in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "https://LOCALHOST",
            "http://[::1]:8080",
        ] {
            assert!(allowed(o, &[], true), "{o}");
            assert!(!allowed(o, &[], false), "{o}");
        }
    }

    #[test]
    fn rebinding_lookalikes_are_refused() {
        for o in [
            "http://localhost.evil.com",
            "http://127.0.0.1.nip.io",
            "http://evil.com",
            "null",
            "file://",
            "http://localhost@evil.com",
            "http://[::1].evil.com",
            "ftp://localhost",
            "http://localhost:80x",
        ] {
            assert!(!allowed(o, &[], true), "{o}");
        }
    }

    #[test]
    fn host_header_parsing() {
        assert_eq!(host_of("localhost:8080"), "localhost");
        assert_eq!(host_of("[::1]:8080"), "::1");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_of("evil.example.com:80"), "evil.example.com");
    }

    #[test]
    fn loopback_origins_need_a_valid_port() {
        for o in [
            "http://localhost:99999",
            "http://[::1]:65536",
            "http://127.0.0.1:1x",
        ] {
            assert!(!allowed(o, &[], true), "{o}");
        }
        for o in [
            "http://localhost:65535",
            "http://[::1]:",
            "http://127.0.0.1:0080",
        ] {
            assert!(allowed(o, &[], true), "{o}");
        }
    }

    #[test]
    fn configured_origins_match_exactly() {
        let list = vec!["https://app.example.com".to_owned()];
        assert!(allowed("https://app.example.com", &list, false));
        assert!(!allowed("https://app.example.com.evil", &list, false));
        assert!(!allowed("http://app.example.com", &list, false));
    }
}
