//! Signing in through the team's identity provider (oidc-provider from npm, playing the
//! provider): the official TypeScript and Python SDK clients, from nothing but the URL, by
//! client metadata document and by dynamic registration; and the refusals at the provider's
//! edge: users outside the allow rules, a forged, foreign or replayed `state`.

use std::time::Duration;

use serde_json::{Value, json};

use super::auth_oidc::AuthServer;
use crate::support::cimd_host::CimdHost;
use crate::support::oauth::{Browser, pkce};
use crate::support::{TempDir, Warden, fixture, node, py};

/// The provider's users.
fn accounts() -> String {
    json!({
        "alice": {"email": "alice@corp.example", "email_verified": true, "name": "Alice", "groups": ["eng"]},
        "bob": {"email": "bob@corp.example", "email_verified": false, "name": "Bob", "groups": ["eng"]},
        "mallory": {"email": "mallory@evil.example", "email_verified": true, "name": "Mallory", "groups": []},
    })
    .to_string()
}

/// mcp-warden signing users in at an oidc-provider.
pub(super) struct Federated {
    pub(super) provider: AuthServer,
    pub(super) warden: Warden,
    pub(super) base: String,
    pub(super) _dir: TempDir,
}

impl Federated {
    pub(super) fn start(extra: &[&str], documents: Option<&CimdHost>) -> Federated {
        Federated::start_with(&[], extra, documents)
    }

    /// With more options for the provider (`--login-page`).
    pub(super) fn start_with(
        provider_extra: &[&str],
        extra: &[&str],
        documents: Option<&CimdHost>,
    ) -> Federated {
        let accounts = accounts();
        let mut provider_args = vec![
            "--upstream-client",
            "warden:warden-secret",
            "--accounts",
            &accounts,
            "--user",
            "alice",
        ];
        provider_args.extend_from_slice(provider_extra);
        let provider = AuthServer::start(&provider_args);
        let dir = TempDir::new("federated");
        std::fs::write(dir.path("secret"), "warden-secret\n").unwrap();
        let state = dir.path("state");
        let mut b = Warden::builder(fixture())
            .with_auth()
            .args([
                "--login-issuer",
                &provider.issuer,
                "--login-client-id",
                "warden",
            ])
            .args([
                "--login-client-secret-file",
                dir.path("secret").to_str().unwrap(),
            ])
            .args(["--login-scope", "groups", "--required-scope", "mcp:tools"])
            .args(["--state-dir", state.to_str().unwrap()])
            .args(extra.iter().copied());
        if let Some(host) = documents {
            std::fs::write(dir.path("ca.pem"), &host.ca_pem).unwrap();
            b = b.args([
                "--ca-bundle",
                dir.path("ca.pem").to_str().unwrap(),
                "--cimd-allow-loopback",
            ]);
        }
        let warden = b.start();
        let base = format!("http://{}", warden.addr);
        Federated {
            provider,
            warden,
            base,
            _dir: dir,
        }
    }

    pub(super) async fn next_user(&self, user: &str) {
        self.provider.next_user(user).await;
    }
}

fn ts_client(url: &str, extra: &[&str]) -> Value {
    let args: Vec<&str> = [url, "streamable"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let out = node("oauth-client.mjs", &args, Duration::from_secs(90));
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{out}"))
}

fn py_client(url: &str, extra: &[&str]) -> Value {
    let args: Vec<&str> = [url, "streamable"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let out = py("oauth_client.py", &args, Duration::from_secs(90));
    serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{out}"))
}

fn paths(out: &Value) -> Vec<String> {
    out["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["url"].as_str().unwrap()
            )
        })
        .collect()
}

/// What every signed-in SDK client must have got: our token, for our endpoint, naming the
/// provider's user, and a call that went through.
fn assert_signed_in(f: &Federated, out: &Value) {
    let c = &out["claims"];
    assert_eq!(c["iss"], f.base, "{out}");
    assert_eq!(c["aud"], f.warden.mcp_url());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["idp"], f.provider.issuer);
    assert_eq!(c["email"], "alice@corp.example");
    assert_eq!(c["groups"], json!(["eng"]));
    assert_eq!(c["scope"], "mcp:tools");
    for upstream in ["id_token", "access_token", "sid", "nonce"] {
        assert!(
            c.get(upstream).is_none(),
            "{upstream} leaked into our token"
        );
    }
    assert_eq!(out["echo"], "through oauth");
    let cb = &out["callback"];
    assert_eq!(cb["iss"], f.base, "RFC 9207 iss");
    assert!(cb["state"].is_string());
}

#[tokio::test]
async fn typescript_sdk_signs_in_through_the_provider_by_registration() {
    let f = Federated::start(&["--allow-email-domain", "corp.example"], None);
    let out = tokio::task::spawn_blocking({
        let url = f.warden.mcp_url();
        move || ts_client(&url, &["--refresh"])
    })
    .await
    .unwrap();
    assert_signed_in(&f, &out);
    assert_eq!(out["callback"]["state"], out["callback"]["expectedState"]);
    assert_eq!(out["registeredClient"], true);
    assert_eq!(out["refreshToken"], true);
    let p = paths(&out);
    assert!(
        p.contains(&format!("POST {}/oauth/register", f.base)),
        "{p:?}"
    );
    assert!(p.contains(&format!("POST {}/oauth/token", f.base)), "{p:?}");
}

#[tokio::test]
async fn typescript_sdk_signs_in_by_client_metadata_document() {
    let host = CimdHost::start().await;
    let id = host.document(
        "/ts-client.json",
        "mcp-warden oauth test",
        &["http://127.0.0.1:33419/callback"],
    );
    let f = Federated::start(&["--allow-email-domain", "corp.example"], Some(&host));
    let out = tokio::task::spawn_blocking({
        let (url, id) = (f.warden.mcp_url(), id.clone());
        move || ts_client(&url, &["--cimd", &id])
    })
    .await
    .unwrap();
    assert_signed_in(&f, &out);
    assert_eq!(out["claims"]["client_id"], id);
    assert!(
        !paths(&out).iter().any(|p| p.contains("/oauth/register")),
        "no registration"
    );
    assert_eq!(host.hits("/ts-client.json"), 1);
}

#[tokio::test]
async fn python_sdk_signs_in_through_the_provider_by_registration() {
    let f = Federated::start(&["--allow-group", "eng"], None);
    let out = tokio::task::spawn_blocking({
        let url = f.warden.mcp_url();
        move || py_client(&url, &["--refresh"])
    })
    .await
    .unwrap();
    // The SDK itself checks the metadata issuer and the iss of the answer (RFC 9207).
    assert_signed_in(&f, &out);
    assert_eq!(out["registeredClient"], true);
    assert_eq!(
        out["refreshToken"], true,
        "offline_access is advertised, so it asked"
    );
}

#[tokio::test]
async fn python_sdk_signs_in_by_client_metadata_document() {
    let host = CimdHost::start().await;
    let id = host.document(
        "/py-client.json",
        "mcp-warden python oauth test",
        &["http://127.0.0.1:33420/callback"],
    );
    let f = Federated::start(&["--allow-email-domain", "corp.example"], Some(&host));
    let out = tokio::task::spawn_blocking({
        let (url, id) = (f.warden.mcp_url(), id.clone());
        move || py_client(&url, &["--cimd", &id])
    })
    .await
    .unwrap();
    assert_signed_in(&f, &out);
    assert_eq!(out["claims"]["client_id"], id);
    assert_eq!(out["registeredClient"], false);
    assert!(!paths(&out).iter().any(|p| p.contains("/oauth/register")));
}

const CB: &str = "http://127.0.0.1:4000/cb";

/// Starts a sign-in in `b` and follows it through the provider to our callback; returns
/// the callback URL (not yet visited).
async fn to_callback(f: &Federated, b: &mut Browser, client: &str) -> String {
    let p = pkce();
    let url = crate::support::oauth::authorize_url(
        &f.base,
        &[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", CB),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
            ("state", "client-state"),
        ],
    );
    let hop = b.follow(&url, &format!("{}/oauth/callback", f.base)).await;
    hop.location
        .unwrap_or_else(|| panic!("did not come back: {} {}", hop.status, hop.body))
}

#[tokio::test]
async fn only_users_the_allow_rules_admit_sign_in() {
    let f = Federated::start(&["--allow-email-domain", "corp.example"], None);
    let client = crate::support::oauth::register(&f.base, &[CB]).await;
    // A verified address elsewhere, and an unverified one here: both refused, with a way
    // back to the client that says access_denied.
    for user in ["mallory", "bob"] {
        f.next_user(user).await;
        let mut b = Browser::new();
        let cb = to_callback(&f, &mut b, &client).await;
        let hop = b.get(&cb).await;
        assert_eq!(hop.status, 403, "{user}: {}", hop.body);
        assert!(hop.body.contains("not_allowed"));
        assert!(hop.body.contains("error=access_denied"), "{}", hop.body);
        assert!(!hop.body.contains("code="));
    }
    // alice passes.
    f.next_user("alice").await;
    let mut b = Browser::new();
    let cb = to_callback(&f, &mut b, &client).await;
    let hop = b.get(&cb).await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert!(hop.location.unwrap().contains("/oauth/consent"));
}

#[tokio::test]
async fn a_forged_foreign_or_replayed_state_is_refused() {
    let f = Federated::start(&["--allow-any-user"], None);
    let client = crate::support::oauth::register(&f.base, &[CB]).await;
    let mut victim = Browser::new();
    let mut attacker = Browser::new();
    // The attacker's own callback, replayed in the victim's browser (login CSRF): refused,
    // and the flow is spent.
    let cb = to_callback(&f, &mut attacker, &client).await;
    let hop = victim.get(&cb).await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(hop.body.contains("foreign_browser"));
    assert_eq!(
        attacker.get(&cb).await.status,
        400,
        "spent by the foreign attempt"
    );
    // A state nobody issued.
    let mut forged = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let hop = victim.get(forged.as_str()).await;
    assert_eq!(hop.status, 400);
    assert!(hop.body.contains("state_mismatch"));
    // The right browser, once; a replay after that fails.
    let cb = to_callback(&f, &mut victim, &client).await;
    assert_eq!(victim.get(&cb).await.status, 303);
    assert_eq!(victim.get(&cb).await.status, 400);
    // An iss naming another issuer (mix-up).
    let cb = to_callback(&f, &mut victim, &client).await;
    let mixed = cb.replace(
        &format!(
            "iss={}",
            url::form_urlencoded::byte_serialize(f.provider.issuer.as_bytes()).collect::<String>()
        ),
        "iss=https%3A%2F%2Fevil.example",
    );
    assert_ne!(mixed, cb, "the provider sends iss: {cb}");
    let hop = victim.get(&mixed).await;
    assert_eq!(hop.status, 400);
    assert!(hop.body.contains("issuer_mismatch"));
}
