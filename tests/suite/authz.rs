//! The built-in authorization server, driven over HTTP like a client and a browser drive
//! it: development sign-in, registration, client metadata documents, codes, refresh
//! rotation, and every refusal an attacker should meet (a wrong or partial redirect URI,
//! missing or `plain` PKCE, a wrong verifier, a replayed or expired code, a code or refresh
//! token of another client or resource, forged form posts, hostile documents).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::auth::post_init;
use crate::support::cimd_host::{Answer, CimdHost};
use crate::support::oauth::{self, Browser, Hop, Pkce, authorize_url, pkce, register, token};
use crate::support::postgres::Postgres;
use crate::support::{TempDir, Warden, fixture};

/// A sidecar whose authorization server signs users in by the development page.
pub(super) struct Signin {
    pub(super) warden: Warden,
    pub(super) base: String,
    _dir: Option<TempDir>,
}

impl Signin {
    pub(super) fn dev(extra: &[&str]) -> Signin {
        Signin::dev_with_env(extra, &[])
    }

    /// With variables in the sidecar's environment (a state URL holding a password).
    pub(super) fn dev_with_env(extra: &[&str], env: &[(&str, &str)]) -> Signin {
        let mut b = Warden::builder(fixture())
            .with_auth()
            .args(["--dev", "--required-scope", "mcp:tools"])
            .args(["--scopes-supported", "mcp:tools mcp:admin"])
            .args(extra.iter().copied());
        for (k, v) in env {
            b = b.env(*k, *v);
        }
        let warden = b.start();
        let base = format!("http://{}", warden.addr);
        Signin {
            warden,
            base,
            _dir: None,
        }
    }

    pub(super) fn with_documents(host: &CimdHost, extra: &[&str]) -> Signin {
        let dir = TempDir::new("cimd-ca");
        std::fs::write(dir.path("ca.pem"), &host.ca_pem).unwrap();
        let ca = dir.path("ca.pem").display().to_string();
        let mut args = vec!["--ca-bundle", ca.as_str()];
        args.extend_from_slice(extra);
        let mut s = Signin::dev(&args);
        s._dir = Some(dir);
        s
    }

    pub(super) fn url(&self, params: &[(&str, &str)]) -> String {
        authorize_url(&self.base, params)
    }

    /// The authorization request of a client, with PKCE and state.
    pub(super) fn request<'a>(
        &self,
        client_id: &'a str,
        redirect: &'a str,
        pkce: &'a Pkce,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("state", "st-123"),
            ("scope", "mcp:tools"),
        ]
    }

    /// Signs `user` in through the pages and allows; returns the parameters the client's
    /// redirect URI receives.
    pub(super) async fn sign_in(
        &self,
        b: &mut Browser,
        params: &[(&str, &str)],
        user: &str,
    ) -> HashMap<String, String> {
        let login = b.get(&self.url(params)).await;
        assert_eq!(login.status, 200, "{}", login.body);
        let next = b.submit(&login.form().set("user", user), &self.base).await;
        assert_eq!(next.status, 303, "{}", next.body);
        let loc = next.location.clone().unwrap();
        if !loc.starts_with(&self.base) {
            // A remembered consent: straight back to the client.
            return next.redirect_params();
        }
        let consent = b.get(&loc).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        let done = b
            .submit(&consent.form().add("decision", "allow"), &self.base)
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        done.redirect_params()
    }

    pub(super) async fn code_for(&self, client_id: &str, redirect: &str, p: &Pkce) -> String {
        let mut b = Browser::new();
        let got = self
            .sign_in(&mut b, &self.request(client_id, redirect, p), "alice")
            .await;
        got["code"].clone()
    }

    pub(super) async fn redeem(
        &self,
        client_id: &str,
        redirect: &str,
        code: &str,
        verifier: &str,
    ) -> (u16, Value) {
        token(
            &self.base,
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("redirect_uri", redirect),
                ("code", code),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    pub(super) async fn refresh(&self, client_id: &str, rt: &str) -> (u16, Value) {
        token(
            &self.base,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", rt),
            ],
        )
        .await
    }
}

const CB: &str = "http://127.0.0.1:4000/cb";

/// A refused authorization request: an error page, and never a redirect.
fn refused_page(hop: &Hop, reason: &str) {
    assert_eq!(hop.status, 400, "{}", hop.body);
    assert!(hop.location.is_none(), "redirected: {:?}", hop.location);
    assert!(hop.body.contains(reason), "{reason} not in {}", hop.body);
}

#[tokio::test]
async fn metadata_names_the_sign_in_server() {
    let s = Signin::dev(&[]);
    let get = |path: &str| {
        let url = format!("{}{path}", s.base);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let m = get("/.well-known/oauth-authorization-server").await;
    assert_eq!(m["issuer"], s.base);
    assert_eq!(m, get("/.well-known/openid-configuration").await);
    assert_eq!(
        m["authorization_endpoint"],
        format!("{}/oauth/authorize", s.base)
    );
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert!(
        m["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("none"))
    );
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        m["registration_endpoint"],
        format!("{}/oauth/register", s.base)
    );
    assert!(
        m["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("offline_access"))
    );
    let prm = get("/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(prm["authorization_servers"][0], s.base);
    assert!(
        !prm["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("offline_access"))
    );
    let jwks = get("/.well-known/jwks.json").await;
    assert!(jwks["keys"][0].get("d").is_none());
    // With documents and registration off, the metadata says so.
    let s = Signin::dev(&["--no-dcr"]);
    let m: Value = reqwest::get(format!("{}/.well-known/oauth-authorization-server", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(m.get("registration_endpoint").is_none());
}

#[tokio::test]
async fn dev_sign_in_issues_tokens_the_endpoint_accepts_and_remembers_consent() {
    let s = Signin::dev(&[]);
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let mut b = Browser::new();
    let got = s
        .sign_in(&mut b, &s.request(&client, CB, &p), "carol")
        .await;
    assert_eq!(got["state"], "st-123");
    assert_eq!(got["iss"], s.base, "RFC 9207: the issuer names itself");
    let (status, t) = s.redeem(&client, CB, &got["code"], &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    let at = t["access_token"].as_str().unwrap();
    let c = oauth::claims(at);
    assert_eq!(c["iss"], s.base);
    assert_eq!(c["sub"], "carol");
    assert_eq!(c["aud"], s.warden.mcp_url());
    assert_eq!(c["client_id"], client);
    assert_eq!(c["scope"], "mcp:tools");
    assert_eq!(c["idp"], format!("{}#dev", s.base));
    assert_eq!(t["token_type"], "Bearer");
    let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "exactly the token response fields: {keys:?}");
    // The resource side takes it through its normal path.
    let resp = post_init(
        &s.warden.mcp_url(),
        &[("authorization", format!("Bearer {at}"))],
    )
    .await;
    assert_eq!(resp.status(), 200);
    // A second sign-in of the same user and client: no consent page.
    let p2 = pkce();
    let login = b.get(&s.url(&s.request(&client, CB, &p2))).await;
    let next = b.submit(&login.form().set("user", "carol"), &s.base).await;
    let back = next.redirect_params();
    assert!(back.contains_key("code"), "consent remembered: {back:?}");
    // prompt=consent asks again.
    let mut again = s.request(&client, CB, &p2);
    again.push(("prompt", "consent"));
    let login = b.get(&s.url(&again)).await;
    let next = b.submit(&login.form().set("user", "carol"), &s.base).await;
    assert!(
        next.location
            .unwrap()
            .starts_with(&format!("{}/oauth/consent", s.base))
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family() {
    refresh_rotation(Signin::dev(&[])).await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family_on_postgres() {
    let pg = Postgres::start();
    refresh_rotation(Signin::dev_with_env(
        &[],
        &[("MCP_WARDEN_STATE_URL", &pg.url())],
    ))
    .await;
}

async fn refresh_rotation(s: Signin) {
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let code = s.code_for(&client, CB, &p).await;
    let (_, t) = s.redeem(&client, CB, &code, &p.verifier).await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt1.starts_with("mwr_"));
    let (status, t2) = s.refresh(&client, &rt1).await;
    assert_eq!(status, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2, "rotated");
    // Another client cannot use it, and trying does not spend it.
    let other = register(&s.base, &[CB]).await;
    assert_eq!(s.refresh(&other, &rt2).await.1["error"], "invalid_grant");
    // A narrower scope is fine, a wider one is not.
    let (status, narrow) = token(
        &s.base,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt2),
            ("scope", "mcp:admin"),
        ],
    )
    .await;
    assert_eq!(
        (status, narrow["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, _) = token(
        &s.base,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client),
            ("refresh_token", &rt2),
            ("resource", "http://127.0.0.1:1/other"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // The old token again: refused, and the whole family with it.
    assert_eq!(s.refresh(&client, &rt1).await.1["error"], "invalid_grant");
    assert_eq!(s.refresh(&client, &rt2).await.1["error"], "invalid_grant");
    // Concurrent presentations of one token: one answer at most is a token.
    let code = s.code_for(&client, CB, &p).await;
    let (_, t) = s.redeem(&client, CB, &code, &p.verifier).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let tries: Vec<_> = (0..16)
        .map(|_| {
            let (base, client, rt) = (s.base.clone(), client.clone(), rt.clone());
            tokio::spawn(async move {
                token(
                    &base,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", &client),
                        ("refresh_token", &rt),
                    ],
                )
                .await
                .0
            })
        })
        .collect();
    let mut ok = 0;
    for t in tries {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert!(ok <= 1, "{ok} refreshes of one token succeeded");
    // Revocation (RFC 7009): a revoked family refreshes no more; unknown tokens are fine;
    // access tokens cannot be revoked; another client's token is refused.
    let code = s.code_for(&client, CB, &p).await;
    let (_, t) = s.redeem(&client, CB, &code, &p.verifier).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let revoke = |form: Vec<(&'static str, String)>| {
        let url = format!("{}/oauth/revoke", s.base);
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        revoke(vec![("client_id", other.clone()), ("token", rt.into())]).await,
        400
    );
    assert_eq!(
        s.refresh(&client, rt).await.0,
        200,
        "a refusal revokes nothing"
    );
    let (_, t) = s.refresh(&client, rt).await;
    assert_eq!(t["error"], "invalid_grant", "spent by the refresh above");
    let code = s.code_for(&client, CB, &p).await;
    let (_, t) = s.redeem(&client, CB, &code, &p.verifier).await;
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(
        revoke(vec![("client_id", client.clone()), ("token", rt.into())]).await,
        200
    );
    assert_eq!(s.refresh(&client, rt).await.1["error"], "invalid_grant");
    assert_eq!(
        revoke(vec![
            ("client_id", client.clone()),
            ("token", "mwr_nothing".into())
        ])
        .await,
        200
    );
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(
        revoke(vec![("client_id", client.clone()), ("token", at.into())]).await,
        400
    );
}

#[tokio::test]
async fn redirect_uri_must_match_exactly() {
    let s = Signin::dev(&[]);
    let client = register(&s.base, &[CB, "https://app.example/cb"]).await;
    let p = pkce();
    let mut b = Browser::new();
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
        "https://evil.example/cb",
    ] {
        let hop = b.get(&s.url(&s.request(&client, bad, &p))).await;
        refused_page(&hop, "redirect_uri_mismatch");
    }
    // No redirect_uri at all.
    let hop = b
        .get(&s.url(&[("response_type", "code"), ("client_id", &client)]))
        .await;
    refused_page(&hop, "missing_redirect_uri");
    // An unknown client, and one given twice: pages too.
    let hop = b.get(&s.url(&s.request("mcpw_nobody", CB, &p))).await;
    refused_page(&hop, "unknown_client");
    let mut twice = s.request(&client, CB, &p);
    twice.push(("client_id", "mcpw_other"));
    refused_page(&b.get(&s.url(&twice)).await, "duplicate_parameter");
    // The loopback port may differ (RFC 8252 §7.3), and the token request must then name
    // exactly the URI the authorization request did.
    let other_port = "http://127.0.0.1:4999/cb";
    let got = s
        .sign_in(&mut b, &s.request(&client, other_port, &p), "alice")
        .await;
    let (status, t) = s.redeem(&client, CB, &got["code"], &p.verifier).await;
    assert_eq!((status, t["error"].as_str()), (400, Some("invalid_grant")));
    let hop = b
        .get(&s.url(&s.request(&client, "https://app.example/cb", &p)))
        .await;
    assert_eq!(hop.status, 200, "the registered https redirect is fine");
}

#[tokio::test]
async fn pkce_is_required_and_s256_only_and_errors_go_back_with_state_and_iss() {
    let s = Signin::dev(&[]);
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let mut b = Browser::new();
    let base = s.request(&client, CB, &p);
    let without = |names: &[&str]| -> Vec<(&str, &str)> {
        base.iter()
            .filter(|(k, _)| !names.contains(k))
            .copied()
            .collect()
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (without(&["code_challenge"]), "invalid_request"),
        (without(&["code_challenge_method"]), "invalid_request"),
        (
            [
                without(&["code_challenge_method"]),
                vec![("code_challenge_method", "plain")],
            ]
            .concat(),
            "invalid_request",
        ),
        (
            [
                without(&["code_challenge"]),
                vec![("code_challenge", &p.challenge[..42])],
            ]
            .concat(),
            "invalid_request",
        ),
        (
            [
                without(&["response_type"]),
                vec![("response_type", "token")],
            ]
            .concat(),
            "unsupported_response_type",
        ),
        (
            [without(&["scope"]), vec![("scope", "mcp:root")]].concat(),
            "invalid_scope",
        ),
        (
            [
                base.clone(),
                vec![("resource", "https://other.example/mcp")],
            ]
            .concat(),
            "invalid_target",
        ),
        (
            [base.clone(), vec![("prompt", "none")]].concat(),
            "login_required",
        ),
        (
            [base.clone(), vec![("request_uri", "https://x/req")]].concat(),
            "request_not_supported",
        ),
        (
            [base.clone(), vec![("state", "again")]].concat(),
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let hop = b.get(&s.url(&params)).await;
        assert_eq!(hop.status, 303, "{params:?}: {}", hop.body);
        let q = hop.redirect_params();
        assert!(hop.location.as_deref().unwrap().starts_with(CB));
        assert_eq!(
            q.get("error").map(String::as_str),
            Some(error),
            "{params:?}"
        );
        assert_eq!(q["iss"], s.base);
        assert_eq!(q["state"], "st-123");
        assert!(!q.contains_key("code"));
    }
}

// The checks of use run with the default lifetime, so no step of theirs races the clock; a
// second server, whose codes live a second, shows them expiring.
#[tokio::test]
async fn codes_are_single_use_bound_and_short_lived() {
    single_use_codes(Signin::dev(&[])).await;
    expired_codes(Signin::dev(&["--authorization-code-ttl", "1s"])).await;
}

#[tokio::test]
async fn codes_are_single_use_bound_and_short_lived_on_postgres() {
    let pg = Postgres::start();
    single_use_codes(Signin::dev_with_env(
        &[],
        &[("MCP_WARDEN_STATE_URL", &pg.url())],
    ))
    .await;
    expired_codes(Signin::dev_with_env(
        &["--authorization-code-ttl", "1s"],
        &[("MCP_WARDEN_STATE_URL", &pg.url())],
    ))
    .await;
}

async fn expired_codes(s: Signin) {
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let code = s.code_for(&client, CB, &p).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        s.redeem(&client, CB, &code, &p.verifier).await.1["error"],
        "invalid_grant"
    );
}

async fn single_use_codes(s: Signin) {
    let client = register(&s.base, &[CB]).await;
    let other = register(&s.base, &[CB]).await;
    let p = pkce();
    // A wrong verifier burns the code: the right one afterwards fails too.
    let code = s.code_for(&client, CB, &p).await;
    let wrong = pkce();
    assert_eq!(
        s.redeem(&client, CB, &code, &wrong.verifier).await.1["error"],
        "invalid_grant"
    );
    assert_eq!(
        s.redeem(&client, CB, &code, &p.verifier).await.1["error"],
        "invalid_grant"
    );
    // No verifier at all.
    let code = s.code_for(&client, CB, &p).await;
    let (status, _) = token(
        &s.base,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("redirect_uri", CB),
            ("code", &code),
        ],
    )
    .await;
    assert_eq!(status, 400);
    // Another client cannot redeem it.
    let code = s.code_for(&client, CB, &p).await;
    assert_eq!(
        s.redeem(&other, CB, &code, &p.verifier).await.1["error"],
        "invalid_grant"
    );
    // Another resource cannot be named for it.
    let code = s.code_for(&client, CB, &p).await;
    let (status, t) = token(
        &s.base,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("redirect_uri", CB),
            ("code", &code),
            ("code_verifier", &p.verifier),
            ("resource", &s.warden.url("/sse")),
        ],
    )
    .await;
    assert_eq!((status, t["error"].as_str()), (400, Some("invalid_target")));
    // A second redemption fails and revokes what the first one issued.
    let code = s.code_for(&client, CB, &p).await;
    let (status, first) = s.redeem(&client, CB, &code, &p.verifier).await;
    assert_eq!(status, 200);
    assert_eq!(
        s.redeem(&client, CB, &code, &p.verifier).await.1["error"],
        "invalid_grant"
    );
    let rt = first["refresh_token"].as_str().unwrap();
    assert_eq!(s.refresh(&client, rt).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn forged_form_posts_are_refused() {
    let s = Signin::dev(&[]);
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let mut victim = Browser::new();
    let login = victim.get(&s.url(&s.request(&client, CB, &p))).await;
    // Every page is served unframeable and without scripts.
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"));
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    assert_eq!(login.header("referrer-policy"), Some("same-origin"));
    assert!(!login.body.contains("<script"));
    let form = login.form().set("user", "alice");
    let next = victim.submit(&form, &s.base).await;
    let consent_url = next.location.unwrap();
    let consent = victim.get(&consent_url).await;
    let form = consent.form().add("decision", "allow");
    // An attacker's own flow, for its CSRF token.
    let mut attacker = Browser::new();
    let a_login = attacker.get(&s.url(&s.request(&client, CB, &p))).await;
    let a_next = attacker
        .submit(&a_login.form().set("user", "mallory"), &s.base)
        .await;
    let a_consent = attacker.get(&a_next.location.unwrap()).await;
    let a_csrf = a_consent.form().get("csrf").unwrap().to_owned();
    let post = |b: Browser, f: oauth::Form, origin: &'static str, site: &'static str| async move {
        let cookie = b
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(&f.action)
            .header("cookie", cookie)
            .form(&f.fields);
        if !origin.is_empty() {
            r = r.header("origin", origin);
        }
        if !site.is_empty() {
            r = r.header("sec-fetch-site", site);
        }
        r.send().await.unwrap().status().as_u16()
    };
    // No CSRF token, another flow's token, no browser cookie (the attacker's browser),
    // a foreign Origin, a cross-site post: all 403, and nothing changes.
    assert_eq!(
        post(victim.clone(), form.clone().remove("csrf"), "", "").await,
        403
    );
    assert_eq!(
        post(victim.clone(), form.clone().set("csrf", &a_csrf), "", "").await,
        403
    );
    assert_eq!(post(Browser::new(), form.clone(), "", "").await, 403);
    assert_eq!(post(attacker.clone(), form.clone(), "", "").await, 403);
    assert_eq!(
        post(victim.clone(), form.clone(), "http://evil.example", "").await,
        403
    );
    assert_eq!(
        post(victim.clone(), form.clone(), "", "cross-site").await,
        403
    );
    // The genuine post still works.
    let done = victim.submit(&form, &s.base).await;
    assert_eq!(done.status, 303);
    assert!(done.redirect_params().contains_key("code"));
    // A flow is used once.
    assert_eq!(victim.submit(&form, &s.base).await.status, 400);
    // Deny sends access_denied back with state and iss.
    let login = victim
        .get(&s.url(&[s.request(&client, CB, &p), vec![("prompt", "consent")]].concat()))
        .await;
    let next = victim
        .submit(&login.form().set("user", "alice"), &s.base)
        .await;
    let consent = victim.get(&next.location.unwrap()).await;
    let denied = victim
        .submit(&consent.form().add("decision", "deny"), &s.base)
        .await;
    let q = denied.redirect_params();
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str(), q["iss"].as_str()),
        ("access_denied", "st-123", s.base.as_str())
    );
}

#[tokio::test]
async fn registration_is_validated_and_rate_limited() {
    let s = Signin::dev(&["--dcr-rate", "3"]);
    let reg = |body: Value| {
        let url = format!("{}/oauth/register", s.base);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, _, v) = reg(json!({"redirect_uris": ["javascript:alert(1)"]})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_redirect_uri"))
    );
    let (status, _, v) =
        reg(json!({"redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt"})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_client_metadata"))
    );
    let (status, _, v) = reg(json!({"redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback", "https://www.cursor.com/agents/mcp/oauth/callback"], "token_endpoint_auth_method": "none"})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        v["redirect_uris"],
        json!(["https://www.cursor.com/agents/mcp/oauth/callback"])
    );
    let (status, retry, _) = reg(json!({"redirect_uris": [CB]})).await;
    assert_eq!(
        (status, retry),
        (429, true),
        "the fourth registration within the hour"
    );
}

#[tokio::test]
async fn client_metadata_documents_sign_in_and_are_cached() {
    let host = CimdHost::start().await;
    let s = Signin::with_documents(&host, &["--cimd-allow-loopback"]);
    let id = host.document("/client.json", "Doc Client", &["http://127.0.0.1/cb"]);
    host.set("/client.json", Answer::json(&json!({"client_id": id, "client_name": "Doc Client", "redirect_uris": ["http://127.0.0.1/cb"]})).header("cache-control", "max-age=600"));
    let p = pkce();
    let redirect = "http://127.0.0.1:4321/cb";
    let mut b = Browser::new();
    let login = b.get(&s.url(&s.request(&id, redirect, &p))).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(login.body.contains("Doc Client") && login.body.contains("localhost"));
    let next = b.submit(&login.form().set("user", "alice"), &s.base).await;
    let consent = b.get(&next.location.unwrap()).await;
    assert!(
        consent
            .body
            .contains("not used this application here before"),
        "{}",
        consent.body
    );
    assert!(
        consent.body.contains("on this computer"),
        "loopback-only warning"
    );
    assert!(
        consent.body.contains("127.0.0.1:4321"),
        "the redirect host and port"
    );
    let done = b
        .submit(&consent.form().add("decision", "allow"), &s.base)
        .await;
    let q = done.redirect_params();
    let (status, t) = s.redeem(&id, redirect, &q["code"], &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        oauth::claims(t["access_token"].as_str().unwrap())["client_id"],
        id
    );
    // Fetched once for both authorizations (cached for its max-age).
    b.get(&s.url(&s.request(&id, redirect, &p))).await;
    assert_eq!(host.hits("/client.json"), 1);
}

#[tokio::test]
async fn hostile_client_metadata_documents_are_refused() {
    let host = CimdHost::start().await;
    let s = Signin::with_documents(
        &host,
        &[
            "--cimd-allow-loopback",
            "--cimd-timeout",
            "1s",
            "--cimd-min-ttl",
            "0s",
        ],
    );
    let p = pkce();
    let mut b = Browser::new();
    let try_id = |id: String| {
        let (url, mut b) = (s.url(&s.request(&id, "http://127.0.0.1/cb", &p)), b.clone());
        async move { b.get(&url).await }
    };
    let doc = |id: &str| json!({"client_id": id, "client_name": "X", "redirect_uris": ["http://127.0.0.1/cb"]});
    // A document naming another client_id (case, trailing slash): refused and not cached.
    let id = host.url("/mismatch.json");
    host.set("/mismatch.json", Answer::json(&doc(&format!("{id}/"))));
    refused_page(&try_id(id.clone()).await, "cimd_client_id_mismatch");
    refused_page(&try_id(id.clone()).await, "cimd_client_id_mismatch");
    assert_eq!(host.hits("/mismatch.json"), 2, "failures are not cached");
    // Too large.
    let id = host.url("/large.json");
    let mut big = doc(&id);
    big["padding"] = json!("x".repeat(6 * 1024));
    host.set("/large.json", Answer::json(&big));
    refused_page(&try_id(id).await, "cimd_too_large");
    // Slow.
    let id = host.url("/slow.json");
    let mut slow = Answer::json(&doc(&id));
    slow.delay = Duration::from_secs(5);
    host.set("/slow.json", slow);
    let started = std::time::Instant::now();
    refused_page(&try_id(id).await, "cimd_timeout");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A redirect is not followed.
    let id = host.url("/moved.json");
    host.set(
        "/moved.json",
        Answer {
            status: 302,
            headers: vec![("location".into(), host.url("/target.json"))],
            body: vec![],
            delay: Duration::ZERO,
        },
    );
    refused_page(&try_id(id).await, "cimd_redirect");
    assert_eq!(host.hits("/target.json"), 0);
    // Not found, not JSON, a secret in it.
    refused_page(&try_id(host.url("/absent.json")).await, "cimd_status");
    let id = host.url("/html.json");
    host.set(
        "/html.json",
        Answer {
            status: 200,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html>".to_vec(),
            delay: Duration::ZERO,
        },
    );
    refused_page(&try_id(id).await, "cimd_not_json");
    let id = host.url("/secret.json");
    let mut with_secret = doc(&id);
    with_secret["client_secret"] = json!("s");
    host.set("/secret.json", Answer::json(&with_secret));
    refused_page(&try_id(id).await, "cimd_invalid_metadata");
    // Not an https URL with a path.
    refused_page(
        &try_id(format!("https://localhost:{}/", host.addr.port())).await,
        "cimd_bad_url",
    );
    let _ = &mut b;
}

#[tokio::test]
async fn client_metadata_documents_on_special_addresses_are_never_fetched() {
    let host = CimdHost::start().await;
    // Without --cimd-allow-loopback: loopback is as forbidden as any private address.
    let s = Signin::with_documents(&host, &[]);
    let p = pkce();
    let mut b = Browser::new();
    let port = host.addr.port();
    for id in [
        format!("https://127.0.0.1:{port}/client.json"),
        format!("https://localhost:{port}/client.json"),
        format!("https://[::1]:{port}/client.json"),
        format!("https://[::ffff:7f00:1]:{port}/client.json"),
        format!("https://0.0.0.0:{port}/client.json"),
    ] {
        let hop = b
            .get(&s.url(&s.request(&id, "http://127.0.0.1/cb", &p)))
            .await;
        refused_page(&hop, "cimd_forbidden_address");
    }
    assert_eq!(host.hits("/client.json"), 0, "no request reached the host");
}
