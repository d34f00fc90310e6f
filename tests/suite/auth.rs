//! Authentication on the wire, with the embedded development issuer: challenges, metadata,
//! scopes, tokens only in the header, sessions bound to their principal, streams closed at
//! token expiry, tokens kept from the server and the logs, secure-by-default startup.

use std::process::Command;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::http::{Mcp, SseParser, final_response, text, with_timeout};
use crate::support::issuer::{JwksServer, Key, now};
use crate::support::{TempDir, Warden, fixture, warden_bin};

/// A sidecar with the development issuer, its key in a file, and `extra` flags.
pub(super) struct DevWarden {
    pub(super) warden: Warden,
    pub(super) dir: TempDir,
}

impl DevWarden {
    pub(super) fn start(extra: &[&str]) -> DevWarden {
        DevWarden::start_with(fixture(), extra)
    }

    /// [`DevWarden::start`] wrapping `server`.
    pub(super) fn start_with(server: Vec<String>, extra: &[&str]) -> DevWarden {
        let dir = TempDir::new("dev");
        let key = dir.path("dev-key.pem");
        let warden = Warden::builder(server)
            .with_auth()
            .args(["--dev", "--dev-key-file", key.to_str().unwrap()])
            .args(extra.iter().copied())
            .start();
        DevWarden { warden, dir }
    }

    /// `mcp-warden token` for this sidecar (its Streamable HTTP endpoint).
    pub(super) fn token(&self, sub: &str, scope: &str, ttl: &str) -> String {
        self.token_with(sub, scope, ttl, &[])
    }

    /// `mcp-warden token` for this sidecar's legacy endpoint.
    pub(super) fn legacy_token(&self, sub: &str, scope: &str, ttl: &str) -> String {
        self.token_with(sub, scope, ttl, &["--audience", &self.warden.url("/sse")])
    }

    fn token_with(&self, sub: &str, scope: &str, ttl: &str, extra: &[&str]) -> String {
        let out = Command::new(warden_bin())
            .args(["token", "--dev-key-file"])
            .arg(self.dir.path("dev-key.pem"))
            .args(["--listen", &self.warden.addr.to_string()])
            .args(["--sub", sub, "--scope", scope, "--ttl", ttl])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// A raw MCP client that sends `token` on every request.
pub(super) fn mcp_with(url: String, token: &str) -> Mcp {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    Mcp {
        client: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
        ..Mcp::new(url)
    }
}

fn initialize_body() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})
}

/// POSTs an initialize with the given extra headers; returns the response.
pub(super) async fn post_init(url: &str, headers: &[(&str, String)]) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(initialize_body().to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap()
}

pub(super) fn www_authenticate(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn missing_token_gets_a_plain_challenge_pointing_at_resource_metadata() {
    let d = DevWarden::start(&["--required-scope", "mcp:tools"]);
    let w = &d.warden;
    let resp = post_init(&w.mcp_url(), &[]).await;
    assert_eq!(resp.status(), 401);
    let prm = w.url("/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        www_authenticate(&resp),
        format!("Bearer resource_metadata=\"{prm}\", scope=\"mcp:tools\"")
    );
    // Every method and both transports need a token.
    let client = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/mcp"),
        ("DELETE", "/mcp"),
        ("GET", "/sse"),
        ("POST", "/message?sessionId=x"),
    ] {
        let r = client
            .request(method.parse().unwrap(), w.url(path))
            .header("accept", "application/json, text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        let challenge = www_authenticate(&r);
        let expected = if path.starts_with("/mcp") {
            "/mcp"
        } else {
            "/sse"
        };
        assert!(
            challenge.contains(&format!(
                "resource_metadata=\"{}\"",
                w.url(&format!("/.well-known/oauth-protected-resource{expected}"))
            )),
            "{method} {path}: {challenge}"
        );
        assert!(!challenge.contains("error="), "{challenge}");
    }
}

#[tokio::test]
async fn resource_metadata_describes_each_resource() {
    let d = DevWarden::start(&["--required-scope", "mcp:tools"]);
    let w = &d.warden;
    let get = |path: &str| {
        let url = w.url(path);
        async move {
            let r = reqwest::get(&url).await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            assert_eq!(r.headers()["access-control-allow-origin"], "*");
            r.json::<Value>().await.unwrap()
        }
    };
    let base = w.url("");
    let mcp = get("/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(mcp["resource"], format!("{base}/mcp"));
    assert_eq!(mcp["authorization_servers"], json!([base]));
    assert_eq!(mcp["bearer_methods_supported"], json!(["header"]));
    assert_eq!(mcp["scopes_supported"], json!(["mcp:tools"]));
    assert!(mcp["resource_name"].is_string());
    // The legacy endpoint is its own resource (SDKs derive the resource from /sse).
    let sse = get("/.well-known/oauth-protected-resource/sse").await;
    assert_eq!(sse["resource"], format!("{base}/sse"));
    // Nothing at the root (RFC 9728 §3.3 allows only the origin there, which is not an
    // audience of ours unless --accept-origin-audience says so).
    let root = reqwest::get(w.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    // The development issuer's own metadata and keys.
    let meta = get("/.well-known/oauth-authorization-server").await;
    assert_eq!(meta["issuer"], base);
    let jwks = get("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0].get("d").is_none());
    for doc in [&mcp, &sse] {
        let s = doc.to_string();
        assert!(!s.contains("offline_access") && !s.contains("query") && !s.contains("\"body\""));
    }
}

#[tokio::test]
async fn a_valid_token_opens_the_endpoint_and_scopes_are_enforced() {
    let d = DevWarden::start(&[
        "--required-scope",
        "mcp:tools",
        "--scope-implies",
        "mcp:admin=mcp:tools",
    ]);
    let w = &d.warden;
    let token = d.token("alice", "mcp:tools", "5m");
    let mut mcp = mcp_with(w.mcp_url(), &token);
    mcp.initialize().await;
    let r = mcp.call_tool(json!(1), "echo", json!({"text": "hi"})).await;
    assert_eq!(text(&r), "hi");

    // A broader scope implies the required one.
    let admin = d.token("alice", "mcp:admin", "5m");
    assert_eq!(
        post_init(
            &w.mcp_url(),
            &[("authorization", format!("Bearer {admin}"))]
        )
        .await
        .status(),
        200
    );

    // A valid token without the scope: 403 naming every scope needed.
    let other = d.token("alice", "mcp:read", "5m");
    let resp = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {other}"))],
    )
    .await;
    assert_eq!(resp.status(), 403);
    let c = www_authenticate(&resp);
    assert!(c.starts_with("Bearer error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("scope=\"mcp:tools\""), "{c}");
    assert!(c.contains("resource_metadata=\""), "{c}");
}

#[tokio::test]
async fn tokens_are_accepted_only_in_the_authorization_header() {
    let d = DevWarden::start(&[]);
    let w = &d.warden;
    let token = d.token("alice", "", "5m");
    // In the query string: refused even alongside a valid header.
    for headers in [vec![], vec![("authorization", format!("Bearer {token}"))]] {
        let resp = post_init(&format!("{}?access_token={token}", w.mcp_url()), &headers).await;
        assert_eq!(resp.status(), 400);
        assert!(www_authenticate(&resp).contains("error=\"invalid_request\""));
    }
    // In a form body.
    let resp = reqwest::Client::new()
        .post(w.mcp_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Under another scheme, or twice.
    let resp = post_init(&w.mcp_url(), &[("authorization", format!("Token {token}"))]).await;
    assert_eq!(resp.status(), 401);
    assert!(!www_authenticate(&resp).contains("error="));
    let resp = post_init(
        &w.mcp_url(),
        &[
            ("authorization", format!("Bearer {token}")),
            ("authorization", format!("Bearer {token}")),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    // The header itself works.
    let resp = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn forged_tokens_get_invalid_token_without_details() {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let d = DevWarden::start(&[]);
    let w = &d.warden;
    let good = d.token("alice", "", "5m");
    let parts: Vec<&str> = good.split('.').collect();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let mut elevated = payload.clone();
    elevated["sub"] = json!("admin");
    let jwks: Value = reqwest::get(w.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let hs256 = {
        // "Signed" with the public key as an HMAC secret.
        let secret = jwks["keys"][0].to_string();
        let input = format!(
            "{}.{}",
            b64(&json!({"alg":"HS256","typ":"at+jwt","kid":kid})),
            parts[1]
        );
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    };
    let forged = [
        // alg none
        format!(
            "{}.{}.",
            b64(&json!({"alg":"none","typ":"at+jwt"})),
            parts[1]
        ),
        format!(
            "{}.{}.c2ln",
            b64(&json!({"alg":"none","typ":"at+jwt"})),
            parts[1]
        ),
        hs256,
        // tampered payload
        format!("{}.{}.{}", parts[0], b64(&elevated), parts[2]),
        // tampered signature (a middle character: the last one may only carry padding bits)
        format!("{}.{}.{}", parts[0], parts[1], flip_char(parts[2], 10)),
        // unknown kid
        format!(
            "{}.{}.{}",
            b64(&json!({"alg":"ES256","typ":"at+jwt","kid":"other"})),
            parts[1],
            parts[2]
        ),
        // key of the wrong type for the alg
        format!(
            "{}.{}.{}",
            b64(&json!({"alg":"RS256","typ":"at+jwt","kid":kid})),
            parts[1],
            parts[2]
        ),
        // oversized
        format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
        "not-a-jwt".to_owned(),
    ];
    for token in &forged {
        let resp = post_init(
            &w.mcp_url(),
            &[("authorization", format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(resp.status(), 401, "{token}");
        let c = www_authenticate(&resp);
        assert!(c.starts_with("Bearer error=\"invalid_token\""), "{c}");
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains(&kid) && !c.contains(&kid),
            "no key details: {body}"
        );
    }
    // Expired (and within no skew) and not-yet-valid come from the issuer itself.
    let d2 = DevWarden::start(&["--clock-skew", "0s"]);
    let short = d2.token("alice", "", "1s");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = post_init(
        &d2.warden.mcp_url(),
        &[("authorization", format!("Bearer {short}"))],
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(www_authenticate(&resp).contains("error_description=\"The access token expired\""));
    // A token of another sidecar's development issuer (other key, other audience).
    let foreign = d2.token("alice", "", "5m");
    let resp = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {foreign}"))],
    )
    .await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn sessions_belong_to_their_principal() {
    let d = DevWarden::start(&[]);
    let w = &d.warden;
    let alice = d.token("alice", "", "5m");
    let mut a = mcp_with(w.mcp_url(), &alice);
    a.initialize().await;
    let sid = a.session.clone().unwrap();

    // Bob with Alice's session id: exactly what an unknown session gets.
    let mut bob = mcp_with(w.mcp_url(), &d.token("bob", "", "5m"));
    bob.session = Some(sid.clone());
    let stolen = bob
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(stolen.status(), 404);
    let mut unknown = bob.clone();
    unknown.session = Some("no-such-session".into());
    let missing = unknown
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(stolen.text().await.unwrap(), missing.text().await.unwrap());
    assert_eq!(bob.get_stream(None).await.status(), 404);
    assert_eq!(bob.delete().await.status(), 404);

    // Alice's refreshed token (a new token of the same principal) continues the session.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refreshed = d.token("alice", "", "10m");
    assert_ne!(refreshed, alice);
    let mut again = mcp_with(w.mcp_url(), &refreshed);
    again.session = Some(sid);
    let r = again
        .call_tool(json!(2), "echo", json!({"text": "still me"}))
        .await;
    assert_eq!(text(&r), "still me");
}

#[tokio::test]
async fn the_token_never_reaches_the_server_or_the_logs() {
    let d = DevWarden::start(&[]);
    let w = &d.warden;
    let token = d.token("alice", "", "5m");
    let mut mcp = mcp_with(w.mcp_url(), &token);
    mcp.initialize().await;
    let env = text(&mcp.call_tool(json!(1), "env", json!({})).await);
    assert!(env.contains("PATH="), "the tool answered: {env}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!env.contains(signature) && !env.to_ascii_lowercase().contains("bearer"));
    // Refused tokens are not logged either, only a short fingerprint.
    let bad = format!("{token}x");
    post_init(&w.mcp_url(), &[("authorization", format!("Bearer {bad}"))]).await;
    let logs = w.wait_log("request refused", Duration::from_secs(5));
    assert!(logs.contains("auth.token_ref=sha256:"), "{logs}");
    assert!(!logs.contains(signature), "token in logs:\n{logs}");
    assert!(!logs.contains(&token[..40]), "token in logs:\n{logs}");
}

async fn read_until_end(mut resp: reqwest::Response) -> Vec<crate::support::http::SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap_or(None) {
        events.extend(parser.push(&chunk));
    }
    events
}

#[tokio::test]
async fn streams_close_when_their_token_expires() {
    let d = DevWarden::start(&["--clock-skew", "0s"]);
    let w = &d.warden;
    let long = d.token("alice", "", "5m");
    let mut mcp = mcp_with(w.mcp_url(), &long);
    mcp.initialize().await;
    // The GET stream opened with a token that lives 2 seconds ends by itself.
    let short = d.token("alice", "", "2s");
    let mut on_short = mcp_with(w.mcp_url(), &short);
    on_short.session = mcp.session.clone();
    let stream = on_short.get_stream(None).await;
    assert_eq!(stream.status(), 200);
    with_timeout(Duration::from_secs(10), read_until_end(stream)).await;
    // The session itself lives on for its owner's other tokens.
    let r = mcp
        .call_tool(json!(1), "echo", json!({"text": "alive"}))
        .await;
    assert_eq!(text(&r), "alive");

    // A legacy SSE connection (whose stream is its session) ends too.
    let short = d.legacy_token("alice", "", "2s");
    let resp = reqwest::Client::new()
        .get(w.url("/sse"))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {short}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = with_timeout(Duration::from_secs(10), read_until_end(resp)).await;
    assert_eq!(events[0].event.as_deref(), Some("endpoint"));
}

#[tokio::test]
async fn the_legacy_transport_is_protected_too() {
    let d = DevWarden::start(&[]);
    let w = &d.warden;
    let token = d.legacy_token("alice", "", "5m");
    let client = reqwest::Client::new();
    let mut resp = client
        .get(w.url("/sse"))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut parser = SseParser::default();
    let endpoint = with_timeout(Duration::from_secs(10), async {
        loop {
            let chunk = resp.chunk().await.unwrap().unwrap();
            if let Some(e) = parser.push(&chunk).into_iter().next() {
                return e.data;
            }
        }
    })
    .await;
    let post = |auth: Option<String>| {
        let mut req = client
            .post(w.url(&endpoint))
            .header("content-type", "application/json")
            .body(initialize_body().to_string());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    // A token for the Streamable HTTP endpoint is not one for this one.
    let other_endpoint = d.token("alice", "", "5m");
    assert_eq!(
        post(Some(format!("Bearer {other_endpoint}")))
            .await
            .unwrap()
            .status(),
        401
    );
    let bob = d.legacy_token("bob", "", "5m");
    assert_eq!(
        post(Some(format!("Bearer {bob}"))).await.unwrap().status(),
        404
    );
    assert_eq!(
        post(Some(format!("Bearer {token}")))
            .await
            .unwrap()
            .status(),
        202
    );
}

fn wrap_fails(args: &[&str]) -> String {
    let out = Command::new(warden_bin())
        .arg("wrap")
        .args(args)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn startup_is_secure_by_default() {
    let e = wrap_fails(&["--listen", "127.0.0.1:0"]);
    assert!(e.contains("no authentication configured"), "{e}");
    let e = wrap_fails(&["--no-auth", "--listen", "0.0.0.0:0"]);
    assert!(e.contains("only allowed on a loopback address"), "{e}");
    let e = wrap_fails(&[
        "--issuer",
        "http://as.example.com",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(e.contains("must use https"), "{e}");
    let e = wrap_fails(&["--no-auth", "--dev", "--listen", "127.0.0.1:0"]);
    assert!(e.contains("cannot be combined"), "{e}");
}

#[tokio::test]
async fn dev_mode_prints_a_working_token_and_client_configuration() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(warden_bin())
        .args(["wrap", "--dev", "--listen", "127.0.0.1:0", "--"])
        .args(fixture())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("More tokens:") {
                break;
            }
        }
        text
    });
    let banner = with_timeout(Duration::from_secs(20), banner).await.unwrap();
    let start = banner.find("{\n").expect("client configuration");
    let end = banner.rfind("\n}").unwrap() + 2;
    let config: Value = serde_json::from_str(&banner[start..end]).unwrap();
    let server = &config["mcpServers"]["mcp-warden"];
    let url = server["url"].as_str().unwrap().to_owned();
    let auth = server["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(auth.starts_with("Bearer ey"));
    let resp = post_init(&url, &[("authorization", auth)]).await;
    let status = resp.status();
    let body = final_response(resp).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let d = DevWarden::start(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--required-scope",
        "mcp:tools",
    ]);
    let w = &d.warden;
    post_init(&w.mcp_url(), &[]).await;
    post_init(
        &w.mcp_url(),
        &[("authorization", "Bearer nonsense".to_owned())],
    )
    .await;
    let unscoped = d.token("alice", "other", "5m");
    post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {unscoped}"))],
    )
    .await;
    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["missing_token", "malformed_token", "insufficient_scope"] {
        let needle = format!(r#"mcp_warden_auth_failures_total{{reason="{reason}"}} 1"#);
        assert!(metrics.contains(&needle), "{needle} missing:\n{metrics}");
    }
    assert!(!metrics.contains("alice"), "no per-user label");
}

/// `s` with the character at `at` replaced by a different base64url character.
fn flip_char(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// A sidecar trusting `issuer` (keys at its JWKS URL), published at `https://tools.example.com`
/// under `path`, its legacy endpoint at `<path>/sse`.
fn on_shared_origin(issuer: &JwksServer, path: &str, extra: &[&str]) -> Warden {
    Warden::builder(fixture())
        .with_auth()
        .args(["--issuer", &issuer.issuer, "--jwks-uri", &issuer.jwks_uri()])
        .args(["--path", path])
        .args(["--public-url", &format!("{ORIGIN}{path}")])
        .args(["--sse-path", &format!("{path}/sse")])
        .args(["--message-path", &format!("{path}/message")])
        .args(extra.iter().copied())
        .start()
}

const ORIGIN: &str = "https://tools.example.com";

/// Status of an initialize POST to the Streamable HTTP endpoint with `token`.
async fn streamable_status(w: &Warden, path: &str, token: &str) -> u16 {
    post_init(
        &w.url(path),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await
    .status()
    .as_u16()
}

/// Status of a legacy `GET <sse>` with `token`, and its challenge.
async fn legacy_status(w: &Warden, sse: &str, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(w.url(sse))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), www_authenticate(&r))
}

/// Several instances published on one origin under their own paths: a token is good for the
/// endpoint it was issued for (its `aud`, RFC 8707), not for its neighbours, and not for the
/// other transport of the same instance. The bare origin, which every instance shares, is
/// an audience only where the operator says so.
#[tokio::test]
async fn each_endpoint_accepts_only_tokens_issued_for_it() {
    let key = Key::new("k1");
    let issuer = JwksServer::start(&[&key]).await;
    let alpha = on_shared_origin(&issuer, "/alpha", &[]);
    let beta = on_shared_origin(&issuer, "/beta", &[]);
    let mint = |aud: &str| {
        let t = now();
        key.sign(&json!({"iss": issuer.issuer, "sub": "mallory", "aud": aud,
            "exp": t + 300.0, "iat": t}))
    };
    let alpha_mcp = mint(&format!("{ORIGIN}/alpha"));
    let alpha_sse = mint(&format!("{ORIGIN}/alpha/sse"));
    let origin = mint(ORIGIN);
    // Its own endpoint: yes; the neighbour: no.
    assert_eq!(streamable_status(&alpha, "/alpha", &alpha_mcp).await, 200);
    assert_eq!(streamable_status(&beta, "/beta", &alpha_mcp).await, 401);
    // A token for the origin opens no instance that did not opt in.
    assert_eq!(streamable_status(&alpha, "/alpha", &origin).await, 401);
    assert_eq!(streamable_status(&beta, "/beta", &origin).await, 401);
    assert_eq!(legacy_status(&alpha, "/alpha/sse", &origin).await.0, 401);
    // Each transport is a resource of its own.
    assert_eq!(legacy_status(&alpha, "/alpha/sse", &alpha_sse).await.0, 200);
    assert_eq!(streamable_status(&alpha, "/alpha", &alpha_sse).await, 401);
    let (status, challenge) = legacy_status(&alpha, "/alpha/sse", &alpha_mcp).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{ORIGIN}/.well-known/oauth-protected-resource/alpha/sse\""
        )),
        "{challenge}"
    );
    // Nor is the root metadata document (which may only describe the origin) served.
    let root = reqwest::get(alpha.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    // An instance that owns its origin may opt in.
    let owner = Warden::builder(fixture())
        .with_auth()
        .args(["--issuer", &issuer.issuer, "--jwks-uri", &issuer.jwks_uri()])
        .args(["--public-url", &format!("{ORIGIN}/mcp")])
        .arg("--accept-origin-audience")
        .start();
    assert_eq!(streamable_status(&owner, "/mcp", &origin).await, 200);
    assert_eq!(legacy_status(&owner, "/sse", &origin).await.0, 200);
    let root: Value = reqwest::get(owner.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["resource"], ORIGIN);
}

/// A client-credentials token has no subject: the client acts for itself. A client whose id
/// is a user's name must not become that user: not to their sessions, not to a policy that
/// names them, not in the audit log.
#[tokio::test]
async fn a_client_named_like_a_user_is_not_that_user() {
    let key = Key::new("k1");
    let issuer = JwksServer::start(&[&key]).await;
    let dir = TempDir::new("client-principal");
    let config = dir.path("warden.toml");
    std::fs::write(
        &config,
        "[policy]\ndefault = \"deny\"\n\n[[rule]]\nname = \"alice-only\"\ntools = [\"echo\"]\nwhen = 'subject == \"alice\"'\n\n[audit]\noutput = \"audit.jsonl\"\n",
    )
    .unwrap();
    let w = Warden::builder(fixture())
        .with_auth()
        .args(["--issuer", &issuer.issuer, "--jwks-uri", &issuer.jwks_uri()])
        .args(["--introspection-endpoint", &issuer.introspection_uri()])
        .args(["--introspection-client-id", "warden"])
        .env(
            "MCP_WARDEN_INTROSPECTION_CLIENT_SECRET",
            "introspection-secret",
        )
        .args(["--config", config.to_str().unwrap()])
        .start();
    let t = now();
    let alice = key.sign(
        &json!({"iss": issuer.issuer, "sub": "alice", "aud": w.mcp_url(),
        "client_id": "alice-app", "exp": t + 300.0, "iat": t}),
    );
    // A client registered as "alice", with a client-credentials (opaque) token.
    issuer.introspects(
        "opaque-client-token",
        json!({"active": true, "client_id": "alice", "aud": w.mcp_url(),
            "token_type": "Bearer", "exp": t + 300.0}),
    );
    let mut a = mcp_with(w.mcp_url(), &alice);
    a.initialize().await;
    assert_eq!(
        text(&a.call_tool(json!(1), "echo", json!({"text": "hi"})).await),
        "hi"
    );
    // Alice's session is not the client's.
    let mut client = mcp_with(w.mcp_url(), "opaque-client-token");
    client.session = a.session.clone();
    let stolen = client
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}))
        .await;
    assert_eq!(stolen.status(), 404);
    // Nor is a rule written for Alice.
    client.session = None;
    client.initialize().await;
    let r = client
        .call_tool(json!(3), "echo", json!({"text": "as alice?"}))
        .await;
    assert_eq!(r["error"]["code"], -32003, "{r}");
    // The audit log tells them apart.
    let log = crate::support::eventually(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(dir.path("audit.jsonl")).ok()?;
        (log.matches("\"event\":\"session_start\"").count() == 2).then_some(log)
    })
    .expect("two session_start records");
    let starts: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "session_start")
        .collect();
    assert_eq!(
        (&starts[0]["sub"], &starts[0]["client_id"]),
        (&json!("alice"), &json!("alice-app"))
    );
    assert_eq!(
        (&starts[1]["sub"], &starts[1]["client_id"]),
        (&json!("client:alice"), &json!("alice"))
    );
}

/// Opens a legacy SSE session with `token`; the response is the open stream (or the refusal).
async fn open_legacy(w: &Warden, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(w.url("/sse"))
        .header("accept", "text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
}

/// One caller with a valid token must not be able to hold every session (each is a server
/// process): with the defaults, a principal holds at most half of `--max-sessions` (16 at
/// most), counting both transports, while others still get theirs.
#[tokio::test]
async fn one_principal_cannot_hold_every_session() {
    let audit = TempDir::new("principal-cap");
    let config = audit.path("warden.toml");
    std::fs::write(
        &config,
        "[policy]\ndefault = \"allow\"\n\n[audit]\noutput = \"audit.jsonl\"\n",
    )
    .unwrap();
    let d = DevWarden::start(&[
        "--max-sessions",
        "4",
        "--admin-listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let w = &d.warden;
    let alice = d.token("alice", "", "5m");
    let mut first = mcp_with(w.mcp_url(), &alice);
    first.initialize().await;
    // A legacy SSE connection is a session too, for as long as it stays open.
    let held = open_legacy(w, &d.legacy_token("alice", "", "5m")).await;
    assert_eq!(held.status(), 200);
    // Her third: refused, for her only, with when to retry.
    let third = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {alice}"))],
    )
    .await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().get("retry-after").is_some());
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sessions"),
        "{body}"
    );
    assert_eq!(
        open_legacy(w, &d.legacy_token("alice", "", "5m"))
            .await
            .status(),
        429
    );
    // Bob still gets his, up to the global cap.
    let bob = d.token("bob", "", "5m");
    let mut b = mcp_with(w.mcp_url(), &bob);
    b.initialize().await;
    // Alice ending one frees her a place.
    first.delete().await;
    let mut again = mcp_with(w.mcp_url(), &alice);
    again.initialize().await;
    drop(held);
    // Counted (no per-user label) and audited (who, and why).
    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = r#"mcp_warden_sessions_refused_total{reason="principal_session_cap"} 2"#;
    assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    assert!(!metrics.contains("alice"));
    let log = crate::support::eventually(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(audit.path("audit.jsonl")).ok()?;
        (log.matches("\"event\":\"session_refused\"").count() == 2).then_some(log)
    })
    .expect("two session_refused records");
    for record in log.lines().filter(|l| l.contains("session_refused")) {
        let r: Value = serde_json::from_str(record).unwrap();
        assert_eq!(r["sub"], "alice", "{r}");
        assert_eq!(r["decision"], "principal_session_cap", "{r}");
    }
}

/// Opening and closing sessions in a loop (each start is a process) is bounded per
/// principal too.
#[tokio::test]
async fn a_principal_opens_sessions_at_a_bounded_rate() {
    let d = DevWarden::start(&[
        "--session-rate-per-principal",
        "3/min",
        "--max-sessions-per-principal",
        "5",
    ]);
    let w = &d.warden;
    let alice = d.token("alice", "", "5m");
    for _ in 0..3 {
        let mut m = mcp_with(w.mcp_url(), &alice);
        m.initialize().await;
        m.delete().await;
    }
    let r = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {alice}"))],
    )
    .await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(
        open_legacy(w, &d.legacy_token("alice", "", "5m"))
            .await
            .status(),
        429
    );
    // Someone else is not slowed down by it.
    let mut bob = mcp_with(w.mcp_url(), &d.token("bob", "", "5m"));
    bob.initialize().await;
}
