//! Signing in through GitHub (`--login-provider github`), against a local stand-in of
//! GitHub's wire contract: the numeric id is the subject, the primary address counts only
//! when GitHub says it is verified, organizations and teams are groups when `read:org` is
//! granted, these claims reach the server's environment through `--env-claim`, and GitHub's
//! token reaches no client and no server.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::sandbox::probe_bin;
use crate::support::github::GitHub;
use crate::support::http::text;
use crate::support::oauth::{self, Browser, authorize_url, pkce, register};
use crate::support::{TempDir, Warden, fixture};

const CB: &str = "http://127.0.0.1:4000/cb";

fn users() -> String {
    json!({
        "octo": {"id": 583231, "name": "Mona Octocat", "public_email": "mona@public.example",
            "emails": [
                {"email": "other@elsewhere.example", "primary": false, "verified": true},
                {"email": "mona@corp.example", "primary": true, "verified": true},
            ],
            "orgs": ["acme"], "teams": [["acme", "platform"]]},
        // Claims an address at the allowed domain that GitHub has not verified.
        "newbie": {"id": 42, "public_email": "newbie@corp.example",
            "emails": [
                {"email": "newbie@corp.example", "primary": true, "verified": false},
                {"email": "newbie@elsewhere.example", "primary": false, "verified": true},
            ]},
        "outsider": {"id": 7,
            "emails": [{"email": "o@elsewhere.example", "primary": true, "verified": true}],
            "orgs": ["acme"], "teams": [["acme", "sales"]]},
    })
    .to_string()
}

struct Setup {
    github: GitHub,
    warden: Warden,
    base: String,
    _dir: TempDir,
}

fn start(extra: &[&str]) -> Setup {
    start_around(fixture(), extra)
}

fn start_around(server: Vec<String>, extra: &[&str]) -> Setup {
    let github = GitHub::start("gh-client:gh-secret", &users(), "octo");
    let dir = TempDir::new("github");
    std::fs::write(dir.path("secret"), "gh-secret\n").unwrap();
    let warden = Warden::builder(server)
        .with_auth()
        .args(["--login-provider", "github", "--github-url", &github.base])
        .args(["--github-api-url", &github.api()])
        .args(["--login-client-id", "gh-client"])
        .args([
            "--login-client-secret-file",
            dir.path("secret").to_str().unwrap(),
        ])
        .args(["--state-dir", dir.path("state").to_str().unwrap()])
        .args(extra.iter().copied())
        .start();
    let base = format!("http://{}", warden.addr);
    Setup {
        github,
        warden,
        base,
        _dir: dir,
    }
}

/// Signs the stand-in's next user in; returns our answer to the callback.
async fn sign_in(s: &Setup, b: &mut Browser, client: &str, p: &oauth::Pkce) -> oauth::Hop {
    let url = authorize_url(
        &s.base,
        &[
            ("response_type", "code"),
            ("client_id", client),
            ("redirect_uri", CB),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
            ("state", "gh-state"),
        ],
    );
    let hop = b.follow(&url, &format!("{}/oauth/callback", s.base)).await;
    let cb = hop
        .location
        .unwrap_or_else(|| panic!("did not come back: {} {}", hop.status, hop.body));
    assert!(
        cb.starts_with(&format!("{}/oauth/callback?", s.base)),
        "{cb}"
    );
    b.get(&cb).await
}

/// Through consent to the client's code, and the code to tokens.
async fn tokens(
    s: &Setup,
    b: &mut Browser,
    client: &str,
    p: &oauth::Pkce,
    hop: oauth::Hop,
) -> (String, Value) {
    assert_eq!(hop.status, 303, "{}", hop.body);
    let consent = b.get(&hop.location.unwrap()).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let done = b
        .submit(&consent.form().add("decision", "allow"), &s.base)
        .await;
    let q = done.redirect_params();
    let (status, t) = oauth::token(
        &s.base,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("redirect_uri", CB),
            ("code", &q["code"]),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let seen = format!(
        "{} {} {:?} {t}",
        consent.body,
        done.location.clone().unwrap_or_default(),
        q
    );
    (seen, t)
}

#[tokio::test]
async fn github_users_sign_in_by_their_verified_primary_address() {
    let s = start(&["--allow-email-domain", "corp.example"]);
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let mut b = Browser::new();
    let hop = sign_in(&s, &mut b, &client, &p).await;
    let (seen, t) = tokens(&s, &mut b, &client, &p, hop).await;
    let c = oauth::claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["iss"], s.base);
    assert_eq!(c["aud"], s.warden.mcp_url());
    assert_eq!(c["sub"], "583231", "the stable numeric id, not the login");
    assert_eq!(c["idp"], s.github.base);
    assert_eq!(c["email"], "mona@corp.example", "the primary address");
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["preferred_username"], "octo");
    assert_eq!(c["name"], "Mona Octocat");
    assert_eq!(
        c["groups"],
        json!([]),
        "no read:org asked without --allow-group"
    );
    // GitHub's token stays with us.
    let issued = s.github.tokens().await;
    assert!(!issued.is_empty());
    for gho in &issued {
        assert!(
            !seen.contains(gho.as_str()),
            "GitHub's token reached the client"
        );
        assert!(
            !s.warden.logs().contains(gho.as_str()),
            "GitHub's token was logged"
        );
    }
    // An unverified primary address at the allowed domain is refused, even with a
    // verified secondary one and the address public on the profile.
    s.github.next_user("newbie").await;
    let mut b = Browser::new();
    let hop = sign_in(&s, &mut b, &client, &pkce()).await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("not_allowed"), "{}", hop.body);
    assert!(hop.body.contains("error=access_denied"), "{}", hop.body);
    assert!(!hop.body.contains("code="));
}

#[tokio::test]
async fn github_organizations_and_teams_are_groups() {
    let s = start(&["--allow-group", "acme/platform"]);
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let mut b = Browser::new();
    let hop = sign_in(&s, &mut b, &client, &p).await;
    let (_, t) = tokens(&s, &mut b, &client, &p, hop).await;
    let c = oauth::claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["groups"], json!(["acme", "acme/platform"]));
    // In the organization, but not on the team the rule names.
    s.github.next_user("outsider").await;
    let mut b = Browser::new();
    let hop = sign_in(&s, &mut b, &client, &pkce()).await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("not_allowed"));
}

#[tokio::test]
async fn the_servers_environment_gets_the_github_users_claims() {
    let s = start_around(
        vec![probe_bin()],
        &[
            "--allow-email-domain",
            "corp.example",
            "--env-claim",
            "USER_ID=sub",
            "--env-claim",
            "USER_EMAIL=email",
            "--env-claim",
            "USER_LOGIN=preferred_username",
        ],
    );
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let mut b = Browser::new();
    let hop = sign_in(&s, &mut b, &client, &p).await;
    let (_, t) = tokens(&s, &mut b, &client, &p, hop).await;
    let at = t["access_token"].as_str().unwrap();
    let mut m = super::auth::mcp_with(s.warden.mcp_url(), at);
    m.initialize().await;
    let r = m
        .call_tool(
            json!(1),
            "probe",
            json!({"attacks": ["env"], "sidecar": s.warden.pid()}),
        )
        .await;
    let got: HashMap<String, String> =
        serde_json::from_str(&text(&r)).unwrap_or_else(|_| panic!("{r}"));
    let env: HashMap<&str, &str> = got["env"]
        .strip_prefix("ALLOWED: ")
        .unwrap_or_else(|| panic!("{got:?}"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(env["USER_ID"], "583231");
    assert_eq!(env["USER_EMAIL"], "mona@corp.example");
    assert_eq!(env["USER_LOGIN"], "octo");
    for gho in s.github.tokens().await {
        assert!(
            !got["env"].contains(&gho),
            "GitHub's token reached the server"
        );
    }
    assert!(
        !got["env"].contains(at),
        "the caller's token reached the server"
    );
}
