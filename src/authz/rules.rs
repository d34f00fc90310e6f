//! The pure rules of the protocol: request parameters (each at most once), PKCE S256,
//! redirect URI registration and matching (exact, with only the loopback port exception),
//! `client_id` metadata URLs, scopes. No I/O; table-tested and fuzzed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;

/// Request parameters by name, each given at most once (OAuth 2.1 §3.1: "MUST NOT be
/// included more than once").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
    duplicated: Option<String>,
}

impl Params {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            match p.map.entry(k) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    p.duplicated.get_or_insert(e.key().clone());
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        p
    }

    /// Parses `application/x-www-form-urlencoded` (a query string or a form body).
    pub fn parse(encoded: &[u8]) -> Params {
        Params::from_pairs(
            url::form_urlencoded::parse(encoded).map(|(k, v)| (k.into_owned(), v.into_owned())),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A parameter that appeared more than once, if any.
    pub fn duplicated(&self) -> Option<&str> {
        self.duplicated.as_deref()
    }

    pub fn is_duplicated(&self, name: &str) -> bool {
        self.duplicated.as_deref() == Some(name)
    }
}

/// The characters of a PKCE verifier (RFC 7636 §4.1 `unreserved`).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// An S256 `code_challenge`: BASE64URL(SHA-256(verifier)), exactly 43 characters.
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` is well formed (43-128 unreserved characters) and hashes to
/// `challenge` (S256). Compared in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(is_unreserved) {
        return false;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectProblem {
    /// Not a URL, a fragment, userinfo, a script or data scheme, plain http to a remote
    /// host: refused outright.
    Dangerous,
    /// A private-use scheme not enabled with `--allow-redirect-scheme` (or not for a native
    /// client): dropped from a registration, which may go on with the others.
    Unsupported,
}

/// Hosts whose `http` redirects are loopback (RFC 8252 §7.3; `localhost` too, which
/// Claude Code registers).
fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Checks a redirect URI for registration: https anywhere, http only to loopback, and a
/// private-use scheme only when `allowed_schemes` names it and the client is native.
pub fn check_redirect(
    uri: &str,
    allowed_schemes: &[String],
    native: bool,
) -> Result<(), RedirectProblem> {
    let url = Url::parse(uri).map_err(|_| RedirectProblem::Dangerous)?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectProblem::Dangerous);
    }
    if uri.len() > 2048 || uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(RedirectProblem::Dangerous);
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" | "https" => Err(RedirectProblem::Dangerous),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "filesystem" | "ws"
        | "wss" | "ftp" => Err(RedirectProblem::Dangerous),
        scheme => {
            // RFC 8252 §7.1: `scheme:/path`, a reverse domain name by convention.
            if native
                && uri[scheme.len()..].starts_with(":/")
                && allowed_schemes
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(scheme))
            {
                Ok(())
            } else {
                Err(RedirectProblem::Unsupported)
            }
        }
    }
}

/// Whether the redirect URI of a request matches one of the registered ones: byte for
/// byte, or, for an `http` loopback URI, equal but for the port (OAuth 2.1 §4.1.1, RFC 8252
/// §7.3). Nothing is normalized.
pub fn redirect_matches(requested: &str, registered: &[String]) -> bool {
    if registered.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = Url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || !is_loopback_host(&req) {
        return false;
    }
    // The parsed form must be what was sent (no normalization hides a difference), except
    // that a URL without a path serializes with `/`.
    if req.as_str() != requested && req.as_str() != format!("{requested}/") {
        return false;
    }
    registered.iter().any(|r| {
        let Ok(reg) = Url::parse(r) else {
            return false;
        };
        reg.scheme() == "http"
            && reg.host_str() == req.host_str()
            && reg.path() == req.path()
            && reg.query() == req.query()
            && reg.fragment().is_none()
            && req.fragment().is_none()
            && reg.username().is_empty()
            && req.username().is_empty()
            && reg.password().is_none()
            && req.password().is_none()
    })
}

/// Whether a `client_id` is a client metadata document URL (draft-ietf-oauth-client-id-
/// metadata-document §3): https, a path other than `/`, no dot segments, fragment or
/// userinfo, and already in its normalized form (so the document's `client_id` compares by
/// simple string equality).
pub fn is_metadata_url(client_id: &str) -> bool {
    let Ok(url) = Url::parse(client_id) else {
        return false;
    };
    url.scheme() == "https"
        && url.as_str() == client_id
        && client_id.len() <= 2048
        && url.host().is_some()
        && !matches!(url.path(), "" | "/")
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !client_id.contains("/./")
        && !client_id.contains("/../")
}

/// Splits and checks a `scope` value: each token must be supported; duplicates collapse.
/// `None` when a scope is unknown.
pub fn scopes(value: &str, supported: &[String]) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for s in value.split(' ').filter(|s| !s.is_empty()) {
        if !supported.iter().any(|x| x == s) {
            return None;
        }
        if !out.iter().any(|x| x == s) {
            out.push(s.to_owned());
        }
    }
    Some(out)
}

/// SHA-256, base64url: how every secret is stored.
pub fn hash(secret: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// A fresh secret: `prefix` and 256 random bits, base64url. The prefixes (`mwc_` codes,
/// `mwr_` refresh tokens) let scanners and our own redaction recognize them.
pub fn secret(prefix: &str) -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).ok()?;
    Some(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b)))
}

/// Constant-time equality of two hashes.
pub fn same_hash(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// A client-supplied display string made safe to show: control and bidirectional
/// formatting characters removed, trimmed, at most `max` characters.
pub fn display_text(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(*c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
        })
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_may_appear_once() {
        let p = Params::parse(b"a=1&b=2&a=3");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.duplicated(), Some("a"));
        assert!(Params::parse(b"a=1&b=2").duplicated().is_none());
        assert_eq!(Params::parse(b"x=a%20b+c").get("x"), Some("a b c"));
    }

    #[test]
    fn pkce_s256_only() {
        // BASE64URL(SHA-256(verifier)), computed independently.
        let verifier = "dBjftJeZ4CVP-mJ92K1cjgRW9d5LKwSL5b0mQHhBvdk".to_owned();
        let challenge = "hL9a5lczGbE5BzGJqn64Xr-Weh5gWbX_Qc-so6PNmJ0";
        assert!(valid_challenge(challenge));
        assert!(verifier_matches(&verifier, challenge));
        assert!(!verifier_matches(&format!("{verifier}x"), challenge));
        // `plain` would be the verifier itself: never accepted as a challenge match.
        assert!(!verifier_matches(challenge, challenge));
        assert!(!valid_challenge(&challenge[..42]));
        assert!(!valid_challenge(&format!("{challenge}A")));
        assert!(!valid_challenge(
            "hL9a5lczGbE5BzGJqn64Xr+Weh5gWbX_Qc-so6PNmJ0"
        ));
        assert!(!verifier_matches("short", challenge));
        assert!(!verifier_matches(
            &format!("{}!", "a".repeat(43)),
            challenge
        ));
    }

    #[test]
    fn redirect_registration() {
        let none: &[String] = &[];
        let cursor = vec!["cursor".to_owned()];
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1/cb",
            "http://127.0.0.1:8080/cb?x=1",
            "http://localhost:33418/",
            "http://[::1]:9/cb",
        ] {
            assert_eq!(check_redirect(ok, none, true), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "not a url",
            "https://app.example/c b",
        ] {
            assert_eq!(
                check_redirect(bad, none, true),
                Err(RedirectProblem::Dangerous),
                "{bad}"
            );
        }
        let cursor_uri = "cursor://anysphere.cursor-mcp/oauth/callback";
        assert_eq!(
            check_redirect(cursor_uri, none, true),
            Err(RedirectProblem::Unsupported)
        );
        assert_eq!(check_redirect(cursor_uri, &cursor, true), Ok(()));
        assert_eq!(
            check_redirect(cursor_uri, &cursor, false),
            Err(RedirectProblem::Unsupported)
        );
        assert_eq!(
            check_redirect("cursor:x", &cursor, true),
            Err(RedirectProblem::Unsupported)
        );
    }

    #[test]
    fn redirect_matching_is_exact_but_for_loopback_ports() {
        let reg = vec![
            "http://127.0.0.1:4000/cb".to_owned(),
            "https://app.example/cb".to_owned(),
            "http://localhost/callback".to_owned(),
        ];
        for ok in [
            "http://127.0.0.1:4000/cb",
            "http://127.0.0.1:5000/cb",
            "http://127.0.0.1/cb",
            "https://app.example/cb",
            "http://localhost:58135/callback",
        ] {
            assert!(redirect_matches(ok, &reg), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:4000/cb/x",
            "http://127.0.0.1:4000/c",
            "http://127.0.0.1:4000/cb?x=1",
            "http://127.0.0.1:4000/cb#f",
            "http://127.0.0.1:4000/CB",
            "http://127.0.0.1:4000/cb/",
            "http://localhost:4000/cb",
            "https://127.0.0.1:4000/cb",
            "https://app.example:444/cb",
            "https://app.example.evil/cb",
            "https://app.example/%63b",
            "https://APP.example/cb",
            "http://127.0.0.1:4000/%63b",
            "http://user@127.0.0.1:4000/cb",
            "http://127.0.0.1:4000/./cb",
            "http://127.0.0.2:4000/cb",
            "",
        ] {
            assert!(!redirect_matches(bad, &reg), "{bad}");
        }
    }

    #[test]
    fn metadata_urls() {
        assert!(is_metadata_url("https://app.example/client.json"));
        assert!(is_metadata_url("https://app.example:8443/oauth/client?v=2"));
        for bad in [
            "https://app.example",
            "https://app.example/",
            "http://app.example/client.json",
            "https://app.example/a/../client.json",
            "https://app.example/./client.json",
            "https://app.example/client.json#x",
            "https://u:p@app.example/client.json",
            "https://APP.example/client.json",
            "https://app.example:443/client.json",
            "mcpw_abc",
        ] {
            assert!(!is_metadata_url(bad), "{bad}");
        }
    }

    #[test]
    fn scopes_must_be_supported() {
        let supported = vec!["mcp:tools".to_owned(), "offline_access".to_owned()];
        assert_eq!(
            scopes("mcp:tools  offline_access mcp:tools", &supported),
            Some(vec!["mcp:tools".to_owned(), "offline_access".to_owned()])
        );
        assert_eq!(scopes("admin", &supported), None);
        assert_eq!(scopes("", &supported), Some(vec![]));
    }

    #[test]
    fn display_text_drops_controls_and_bidi() {
        assert_eq!(
            display_text("Good\u{202e}txt.exe\n App", 100),
            "Goodtxt.exe App"
        );
        assert_eq!(display_text("abcdef", 3), "abc");
    }
}
