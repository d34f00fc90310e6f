//! Authentication against a real third-party authorization server (oidc-provider from npm,
//! started by each test): JWT access tokens found through discovery, key rotation, an
//! issuer that goes down, opaque tokens by introspection, and the official TypeScript SDK
//! completing the whole discovery and authorization flow from our 401 on its own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::auth::{mcp_with, post_init, www_authenticate};
use crate::support::http::text;
use crate::support::{TempDir, Warden, fixture, node, node_modules, py, repo};

/// oidc-provider running `tests/js/authorization-server.mjs`. Killed on drop.
pub(super) struct AuthServer {
    child: Option<Child>,
    pub(super) issuer: String,
    http: reqwest::Client,
}

impl AuthServer {
    pub(super) fn start(args: &[&str]) -> AuthServer {
        node_modules();
        // A start that prints nothing is abandoned and tried again: a hung start must fail
        // (or recover), never hang the suite.
        for attempt in 1..=3 {
            if let Some((child, issuer)) = Self::spawn(args, Duration::from_secs(20)) {
                return AuthServer {
                    child: Some(child),
                    issuer,
                    http: reqwest::Client::new(),
                };
            }
            eprintln!("authorization server did not start (attempt {attempt}); trying again");
        }
        panic!("authorization server did not start in three attempts");
    }

    /// Starts the server: its issuer once it says it is ready within `wait`, else `None`
    /// (and the process is killed).
    fn spawn(args: &[&str], wait: Duration) -> Option<(std::process::Child, String)> {
        let dir = repo().join("tests/js");
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg(dir.join("authorization-server.mjs"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = String::new();
            // Read to the end: a closed pipe would kill the server at its next line (EPIPE).
            while out.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(issuer) = line.strip_prefix("AS_READY ") {
                    let _ = tx.send(issuer.trim().to_owned());
                }
                line.clear();
            }
        });
        match rx.recv_timeout(wait) {
            Ok(issuer) => Some((child, issuer)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// A client-credentials access token for `resource`.
    pub(super) async fn token(&self, resource: &str, scope: &str) -> String {
        let resp: Value = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth("test-client", Some("test-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {resp}"))
            .to_owned()
    }

    /// The user the next headless sign-in at this server is (`POST /__test/next-user`).
    pub(super) async fn next_user(&self, user: &str) {
        let r = self
            .http
            .post(format!("{}/__test/next-user?user={user}", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn rotate(&self, keep_old: bool) {
        let q = if keep_old { "?keep_old=1" } else { "" };
        let r = self
            .http
            .post(format!("{}/__test/rotate-keys{q}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    async fn revoke(&self, token: &str) {
        let r = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .basic_auth("test-client", Some("test-secret"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn protected(issuer: &str, extra: &[&str]) -> Warden {
    Warden::builder(fixture())
        .with_auth()
        .args(["--issuer", issuer])
        .args(extra.iter().copied())
        .start()
}

async fn status_with(w: &Warden, token: &str) -> (u16, String) {
    let resp = post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await;
    (resp.status().as_u16(), www_authenticate(&resp))
}

#[tokio::test]
async fn jwt_access_tokens_from_a_real_issuer() {
    let a = AuthServer::start(&["--any-loopback-resource"]);
    let w = protected(&a.issuer, &["--required-scope", "mcp:tools"]);
    let resource = w.mcp_url();

    let token = a.token(&resource, "mcp:tools").await;
    let mut mcp = mcp_with(w.mcp_url(), &token);
    mcp.initialize().await;
    let r = mcp
        .call_tool(json!(1), "echo", json!({"text": "real issuer"}))
        .await;
    assert_eq!(text(&r), "real issuer");

    // A token of the same issuer for another resource: wrong audience.
    let elsewhere = a.token("http://127.0.0.1:1/mcp", "mcp:tools").await;
    let (status, challenge) = status_with(&w, &elsewhere).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains("not issued for this resource"),
        "{challenge}"
    );

    // The right resource without the required scope: 403.
    let admin_only = a.token(&resource, "mcp:admin").await;
    let (status, challenge) = status_with(&w, &admin_only).await;
    assert_eq!(status, 403);
    assert!(challenge.contains("scope=\"mcp:tools\""), "{challenge}");

    // A token for the legacy endpoint is for that endpoint only.
    let legacy = a.token(&w.url("/sse"), "mcp:tools").await;
    assert_eq!(status_with(&w, &legacy).await.0, 401);
}

#[tokio::test]
async fn other_issuers_tokens_are_refused() {
    let a = AuthServer::start(&["--any-loopback-resource"]);
    let b = AuthServer::start(&["--any-loopback-resource"]);
    let w = protected(&a.issuer, &[]);
    let foreign = b.token(&w.mcp_url(), "mcp:tools").await;
    assert_eq!(status_with(&w, &foreign).await.0, 401);
}

#[tokio::test]
async fn key_rotation_without_restart() {
    let a = AuthServer::start(&["--any-loopback-resource"]);
    let w = protected(&a.issuer, &["--jwks-refetch-interval", "1s"]);
    let resource = w.mcp_url();
    let before = a.token(&resource, "mcp:tools").await;
    assert_eq!(status_with(&w, &before).await.0, 200);

    // The issuer replaces its key: a token signed with the new key is accepted (one
    // refetch, as soon as the refetch interval allows)...
    a.rotate(false).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = a.token(&resource, "mcp:tools").await;
    assert_eq!(status_with(&w, &after).await.0, 200);
    // ...and the removed key's token is refused, although it was accepted before.
    let (status, challenge) = status_with(&w, &before).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn issuer_down_keeps_known_keys_and_fails_closed_on_new_ones() {
    let mut a = AuthServer::start(&["--any-loopback-resource"]);
    let w = protected(&a.issuer, &["--jwks-refetch-interval", "1s"]);
    let resource = w.mcp_url();
    let first = a.token(&resource, "mcp:tools").await;
    let second = a.token(&resource, "mcp:tools").await;
    assert_eq!(status_with(&w, &first).await.0, 200);
    a.rotate(true).await;
    let new_key = a.token(&resource, "mcp:tools").await;
    a.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Known key: still verifiable without the issuer.
    assert_eq!(status_with(&w, &second).await.0, 200);
    // Unknown key: cannot be fetched, refused.
    assert_eq!(status_with(&w, &new_key).await.0, 503);
}

#[tokio::test]
async fn opaque_tokens_by_introspection() {
    let a = AuthServer::start(&["--any-loopback-resource", "--opaque"]);
    let dir = TempDir::new("introspection");
    let secret = dir.path("secret");
    std::fs::write(&secret, "test-secret\n").unwrap();
    let w = protected(
        &a.issuer,
        &[
            "--introspection-client-id",
            "test-client",
            "--introspection-client-secret-file",
            secret.to_str().unwrap(),
            "--introspection-cache-ttl",
            "1s",
            "--required-scope",
            "mcp:tools",
        ],
    );
    let token = a.token(&w.mcp_url(), "mcp:tools").await;
    assert_eq!(token.split('.').count(), 1, "opaque: {token}");
    let mut mcp = mcp_with(w.mcp_url(), &token);
    mcp.initialize().await;
    let r = mcp
        .call_tool(json!(1), "echo", json!({"text": "introspected"}))
        .await;
    assert_eq!(text(&r), "introspected");

    // Revoked: inactive once the cached answer is older than its TTL.
    a.revoke(&token).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, challenge) = status_with(&w, &token).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("not active"), "{challenge}");
    assert_eq!(status_with(&w, "made-up-opaque-token").await.0, 401);
    // The introspection credentials never show up in the logs.
    assert!(!w.logs().contains("test-secret"));
}

fn oauth_client(url: &str, kind: &str) -> Value {
    let out = node("oauth-client.mjs", &[url, kind], Duration::from_secs(60));
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{out}"))
}

fn python_oauth_client(url: &str, kind: &str) -> Value {
    let out = py("oauth_client.py", &[url, kind], Duration::from_secs(60));
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{out}"))
}

fn requests(v: &Value) -> Vec<(String, String, u64)> {
    v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["url"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_typescript_sdk_finds_its_way_from_the_401() {
    let a = AuthServer::start(&["--any-loopback-resource"]);
    let w = protected(&a.issuer, &["--required-scope", "mcp:tools"]);
    let out = tokio::task::spawn_blocking({
        let url = w.mcp_url();
        move || oauth_client(&url, "streamable")
    })
    .await
    .unwrap();
    let seen = requests(&out);
    let prm = w.url("/.well-known/oauth-protected-resource/mcp");
    let want = [
        ("POST".to_owned(), w.mcp_url(), 401),
        ("GET".to_owned(), prm.clone(), 200),
        (
            "GET".to_owned(),
            format!("{}/.well-known/oauth-authorization-server", a.issuer),
            200,
        ),
        ("POST".to_owned(), format!("{}/reg", a.issuer), 201),
    ];
    assert_eq!(&seen[..4], &want, "{out}");
    assert!(
        seen.contains(&("POST".to_owned(), format!("{}/token", a.issuer), 200)),
        "{out}"
    );
    assert!(seen.last().unwrap().2 < 300, "{out}");
    assert_eq!(
        out["requests"][0]["wwwAuthenticate"],
        format!("Bearer resource_metadata=\"{prm}\", scope=\"mcp:tools\"")
    );
    assert_eq!(out["firstAttempt"], "unauthorized");
    assert_eq!(out["registeredClient"], true);
    assert_eq!(out["authorize"]["resource"], w.mcp_url());
    assert_eq!(out["authorize"]["scope"], "mcp:tools");
    assert_eq!(out["authorize"]["code_challenge_method"], "S256");
    assert_eq!(out["claims"]["aud"], w.mcp_url());
    assert_eq!(out["claims"]["sub"], "test-user");
    assert_eq!(out["echo"], "through oauth");
}

#[tokio::test]
async fn the_typescript_sdk_authorizes_over_legacy_sse_too() {
    let a = AuthServer::start(&["--any-loopback-resource"]);
    // No required scope: the SDK asks for what the metadata advertises.
    let w = protected(&a.issuer, &["--scopes-supported", "mcp:tools"]);
    let sse = w.url("/sse");
    let out = tokio::task::spawn_blocking({
        let url = sse.clone();
        move || oauth_client(&url, "sse")
    })
    .await
    .unwrap();
    let seen = requests(&out);
    assert_eq!(seen[0], ("GET".to_owned(), sse.clone(), 401), "{out}");
    assert_eq!(
        seen[1],
        (
            "GET".to_owned(),
            w.url("/.well-known/oauth-protected-resource/sse"),
            200
        ),
        "{out}"
    );
    // The SDK asks for a token for the /sse resource, which we accept.
    assert_eq!(out["authorize"]["resource"], sse);
    assert_eq!(out["claims"]["aud"], sse);
    assert_eq!(out["echo"], "through oauth");
}

#[tokio::test]
async fn the_python_sdk_finds_its_way_from_the_401() {
    let a = AuthServer::start(&["--any-loopback-resource"]);
    let w = protected(&a.issuer, &["--scopes-supported", "mcp:tools"]);
    for (kind, path) in [("streamable", "/mcp"), ("sse", "/sse")] {
        let url = w.url(path);
        let out = tokio::task::spawn_blocking({
            let url = url.clone();
            move || python_oauth_client(&url, kind)
        })
        .await
        .unwrap();
        let seen = requests(&out);
        assert_eq!(seen[0].2, 401, "{out}");
        assert_eq!(
            seen[1],
            (
                "GET".to_owned(),
                w.url(&format!("/.well-known/oauth-protected-resource{path}")),
                200
            ),
            "{out}"
        );
        // The Python SDK checks the metadata's issuer against the one we advertise.
        assert_eq!(
            seen[2],
            (
                "GET".to_owned(),
                format!("{}/.well-known/oauth-authorization-server", a.issuer),
                200
            ),
            "{out}"
        );
        assert_eq!(out["authorize"]["resource"], url);
        assert_eq!(out["claims"]["aud"], url);
        assert_eq!(out["echo"], "through oauth");
    }
}

/// With several issuers, the caller's token is exchanged at the issuer that issued it: only
/// that one can vouch for it (and no other issuer ever sees it).
#[tokio::test]
async fn each_token_is_exchanged_at_its_own_issuer() {
    let first = AuthServer::start(&["--any-loopback-resource", "--token-exchange"]);
    let second = AuthServer::start(&["--any-loopback-resource", "--token-exchange"]);
    let downstream = "http://127.0.0.1:9/downstream-api";
    let w = Warden::builder(vec![super::sandbox::probe_bin()])
        .with_auth()
        .env("MCP_WARDEN_EXCHANGE_CLIENT_SECRET", "exchange-secret")
        .args(["--issuer", &first.issuer, "--issuer", &second.issuer])
        .args(["--exchange-client-id", "exchange-client"])
        .args(["--env-exchange", &format!("API_TOKEN={downstream}")])
        .start();
    for asrv in [&second, &first] {
        let caller = asrv.token(&w.mcp_url(), "mcp:tools").await;
        let mut m = mcp_with(w.mcp_url(), &caller);
        let init = m.initialize().await;
        assert!(init["result"].is_object(), "{}: {init}", asrv.issuer);
        let r = m
            .call_tool(
                json!(1),
                "probe",
                json!({"attacks": ["env_hex"], "sidecar": w.pid()}),
            )
            .await;
        let got: std::collections::HashMap<String, String> =
            serde_json::from_str(&text(&r)).unwrap();
        let hex = got["env_hex"]
            .lines()
            .find_map(|l| l.trim_start_matches("ALLOWED: ").strip_prefix("API_TOKEN="))
            .unwrap_or_else(|| panic!("no API_TOKEN: {got:?}"));
        let issued = String::from_utf8(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect(),
        )
        .unwrap();
        use base64::Engine;
        let payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(issued.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(payload["iss"], asrv.issuer, "{payload}");
        assert_eq!(payload["aud"], downstream, "{payload}");
    }
}
