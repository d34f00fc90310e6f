//! Sign-in state that lasts: the store's conformance run on a real PostgreSQL, a restart
//! on SQLite that loses nothing, and two replicas on one PostgreSQL that finish each
//! other's sign-ins and detect each other's refresh-token reuse; and a signing key rotated
//! across restarts without signing anyone out.

use serde_json::Value;

use crate::support::oauth::{self, Browser, Form, pkce, register, token};
use crate::support::postgres::Postgres;
use crate::support::{TempDir, Warden, fixture};

#[tokio::test]
async fn the_store_conforms_on_postgres() {
    let pg = Postgres::start();
    let store = mcp_warden::store::Store::open(&mcp_warden::store::StoreConfig::Postgres {
        url: pg.url(),
        ca_pem: None,
    })
    .await
    .unwrap();
    mcp_warden::store::conformance::run(&store).await;
    // Migrating again (a second replica starting) changes nothing.
    let again = mcp_warden::store::Store::open(&mcp_warden::store::StoreConfig::Postgres {
        url: pg.url(),
        ca_pem: None,
    })
    .await
    .unwrap();
    assert_eq!(again.meta("upstream").await.unwrap().as_deref(), Some("b"));
}

/// The public identity both instances share (a balancer's address in production): URLs
/// the server hands out name it, and the test sends each request to the instance it picks.
const PUBLIC: &str = "http://localhost:1";

fn instance(extra: &[&str], env: &[(&str, &str)]) -> Warden {
    let mut b = Warden::builder(fixture())
        .with_auth()
        .args(["--dev", "--required-scope", "mcp:tools"])
        .args(["--public-url", &format!("{PUBLIC}/mcp")])
        .args(extra.iter().copied());
    for (k, v) in env {
        b = b.env(*k, *v);
    }
    b.start()
}

/// A URL of the public identity, sent to `w`.
fn at(w: &Warden, url: &str) -> String {
    url.replacen(&format!("{PUBLIC}/"), &format!("http://{}/", w.addr), 1)
}

fn form_at(w: &Warden, f: Form) -> Form {
    Form {
        action: at(w, &f.action),
        ..f
    }
}

const CB: &str = "http://127.0.0.1:4000/cb";

#[tokio::test]
async fn sqlite_state_survives_a_restart() {
    let dir = TempDir::new("restart");
    let state = dir.path("state").display().to_string();
    let key = dir.path("dev-key.pem").display().to_string();
    let args = [
        "--state-dir",
        state.as_str(),
        "--dev-key-file",
        key.as_str(),
    ];
    let w = instance(&args, &[]);
    let base = format!("http://{}", w.addr);
    let jwks_before: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client = register(&base, &[CB]).await;
    let p = pkce();
    let mut b = Browser::new();
    let params = [
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", CB),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("scope", "mcp:tools"),
    ];
    let login = b.get(&oauth::authorize_url(&base, &params)).await;
    let next = b
        .submit(&form_at(&w, login.form().set("user", "dana")), PUBLIC)
        .await;
    let consent = b.get(&at(&w, next.location.as_deref().unwrap())).await;
    let done = b
        .submit(
            &form_at(&w, consent.form().add("decision", "allow")),
            PUBLIC,
        )
        .await;
    let code = done.redirect_params()["code"].clone();
    let (_, t) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("redirect_uri", CB),
            ("code", &code),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    drop(w);

    let w = instance(&args, &[]);
    let base = format!("http://{}", w.addr);
    // The same key, the same client, the same refresh token, the same consent.
    let jwks_after: Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_before, jwks_after);
    let (status, t) = token(
        &base,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let at_token = t["access_token"].as_str().unwrap();
    let resp = super::auth::post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {at_token}"))],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let login = b.get(&oauth::authorize_url(&base, &params)).await;
    assert_eq!(
        login.status, 200,
        "the registered client is still known: {}",
        login.body
    );
    let next = b
        .submit(&form_at(&w, login.form().set("user", "dana")), PUBLIC)
        .await;
    assert!(
        next.redirect_params().contains_key("code"),
        "consent remembered across the restart"
    );
}

#[tokio::test]
async fn two_replicas_on_postgres_share_sign_ins_and_refresh_families() {
    let pg = Postgres::start();
    let dir = TempDir::new("replicas");
    let key = dir.path("key.pem").display().to_string();
    // Both sign with the same key file (created by the first).
    let a = instance(
        &["--dev-key-file", &key],
        &[("MCP_WARDEN_STATE_URL", &pg.url())],
    );
    let b_ = instance(
        &["--dev-key-file", &key],
        &[("MCP_WARDEN_STATE_URL", &pg.url())],
    );
    let base_a = format!("http://{}", a.addr);
    let base_b = format!("http://{}", b_.addr);
    // Registered at A, known at B.
    let client = register(&base_a, &[CB]).await;
    let p = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", CB),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "s1"),
    ];
    let mut browser = Browser::new();
    // Each step of the sign-in at the other replica.
    let login = browser.get(&oauth::authorize_url(&base_b, &params)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let next = browser
        .submit(&form_at(&a, login.form().set("user", "erin")), PUBLIC)
        .await;
    assert_eq!(next.status, 303, "{}", next.body);
    let consent = browser
        .get(&at(&b_, next.location.as_deref().unwrap()))
        .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let done = browser
        .submit(
            &form_at(&a, consent.form().add("decision", "allow")),
            PUBLIC,
        )
        .await;
    let code = done.redirect_params()["code"].clone();
    let (status, t) = token(
        &base_b,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("redirect_uri", CB),
            ("code", &code),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    // Tokens minted by either replica open both.
    let at_b = t["access_token"].as_str().unwrap().to_owned();
    for w in [&a, &b_] {
        let resp =
            super::auth::post_init(&w.mcp_url(), &[("authorization", format!("Bearer {at_b}"))])
                .await;
        assert_eq!(resp.status(), 200);
    }
    // Refresh at A; the old token replayed at B is reuse, and revokes the family for both.
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let (status, t2) = token(
        &base_a,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt1),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = token(
        &base_b,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt1),
        ],
    )
    .await;
    assert_eq!(status, 400);
    let (status, v) = token(
        &base_a,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt2),
        ],
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    // The code is spent everywhere.
    let (status, _) = token(
        &base_a,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("redirect_uri", CB),
            ("code", &code),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_plaintext_remote_database_is_refused_at_startup() {
    let out = std::process::Command::new(crate::support::warden_bin())
        .args([
            "wrap",
            "--login-issuer",
            "https://accounts.example",
            "--login-client-id",
            "w",
        ])
        .args([
            "--allow-any-user",
            "--signing-key-file",
            "/nonexistent/key.pem",
            "--",
            "true",
        ])
        .env("MCP_WARDEN_LOGIN_CLIENT_SECRET", "s")
        .env(
            "MCP_WARDEN_STATE_URL",
            "postgres://w:hunter2@db.example/w?sslmode=disable",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sslmode=require"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is never printed: {err}"
    );
}

/// Signs `user` in at `w` through the pages and redeems the code; returns the tokens.
async fn tokens_at(w: &Warden, client: &str, user: &str) -> Value {
    let base = format!("http://{}", w.addr);
    let p = pkce();
    let mut b = Browser::new();
    let params = [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", CB),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("scope", "mcp:tools"),
    ];
    let login = b.get(&oauth::authorize_url(&base, &params)).await;
    let next = b
        .submit(&form_at(w, login.form().set("user", user)), PUBLIC)
        .await;
    let consent = b.get(&at(w, next.location.as_deref().unwrap())).await;
    let done = b
        .submit(&form_at(w, consent.form().add("decision", "allow")), PUBLIC)
        .await;
    let code = done.redirect_params()["code"].clone();
    let (status, t) = token(
        &base,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("redirect_uri", CB),
            ("code", &code),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    t
}

fn kid(jwt: &str) -> String {
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwt.split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn published_kids(w: &Warden) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("http://{}/.well-known/jwks.json", w.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(k.get("d").is_none(), "a private key was published");
            k["kid"].as_str().unwrap().to_owned()
        })
        .collect();
    kids.sort();
    kids
}

async fn accepted(w: &Warden, access_token: &str) -> u16 {
    super::auth::post_init(
        &w.mcp_url(),
        &[("authorization", format!("Bearer {access_token}"))],
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn signing_keys_rotate_without_signing_anyone_out() {
    let dir = TempDir::new("rotate");
    let state = dir.path("state").display().to_string();
    let old = dir.path("old.pem").display().to_string();
    let new = dir.path("new.pem").display().to_string();
    let out = std::process::Command::new(crate::support::warden_bin())
        .args(["keygen", &new])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Signing with the old key.
    let w = instance(&["--state-dir", &state, "--dev-key-file", &old], &[]);
    let client = register(&format!("http://{}", w.addr), &[CB]).await;
    let t1 = tokens_at(&w, &client, "erin").await;
    let a1 = t1["access_token"].as_str().unwrap().to_owned();
    let r1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let old_kid = kid(&a1);
    assert_eq!(published_kids(&w).await, std::slice::from_ref(&old_kid));
    drop(w);
    // The new key signs; the old one is published and still verifies.
    let w = instance(
        &[
            "--state-dir",
            &state,
            "--dev-key-file",
            &new,
            "--verification-key-file",
            &old,
        ],
        &[],
    );
    let (status, t2) = token(
        &format!("http://{}", w.addr),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &r1),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t2}");
    let a2 = t2["access_token"].as_str().unwrap().to_owned();
    let new_kid = kid(&a2);
    assert_ne!(new_kid, old_kid, "the new key signs");
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(published_kids(&w).await, both);
    assert_eq!(
        accepted(&w, &a1).await,
        200,
        "the old key's tokens still work"
    );
    assert_eq!(accepted(&w, &a2).await, 200);
    drop(w);
    // The old key retired: its tokens are refused, the new ones are not.
    let w = instance(&["--state-dir", &state, "--dev-key-file", &new], &[]);
    assert_eq!(published_kids(&w).await, [new_kid]);
    assert_eq!(accepted(&w, &a1).await, 401);
    assert_eq!(accepted(&w, &a2).await, 200);
}
