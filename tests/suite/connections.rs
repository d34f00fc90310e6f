//! Users' upstream connections (`[[connection]]`): a session of a user who has not connected
//! a required one is answered with the URL-elicitation-required error naming a connect link
//! signed for that user; an optional one leaves its variable out; the configuration refuses
//! what cannot work.

use std::process::Command;

use serde_json::{Value, json};

use super::auth::{DevWarden, mcp_with};
use super::auth_oidc::AuthServer;
use super::authz::Signin;
use super::policy::dir;
use crate::support::http::text;
use crate::support::oauth::{Browser, pkce, register};
use crate::support::postgres::Postgres;
use crate::support::warden_bin;

/// A config file for `test` (policy allowing everything, then `connection`), with the
/// connection's client secret `secret` beside it as `client-secret`.
fn config_file(test: &str, connection: &str, secret: &str) -> std::path::PathBuf {
    let d = dir(&format!("connections-{test}"));
    std::fs::write(d.join("client-secret"), format!("{secret}\n")).unwrap();
    let file = d.join("warden.toml");
    let text = format!("[policy]\ndefault = \"allow\"\n\n{connection}");
    std::fs::write(&file, text).unwrap();
    file
}

fn config(test: &str, required: bool) -> std::path::PathBuf {
    let connection = format!(
        r#"
[[connection]]
name = "corp"
authorization_endpoint = "https://corp.example/authorize"
token_endpoint = "https://corp.example/token"
client_id = "warden"
client_secret_file = "client-secret"
scopes = ["files.read"]
env = "CORP_TOKEN"
required = {required}
"#
    );
    config_file(test, &connection, "corp-client-secret")
}

#[tokio::test]
async fn a_user_without_a_required_connection_is_sent_to_a_connect_link_of_their_own() {
    let file = config("required", true);
    let dev = DevWarden::start(&["--config", file.to_str().unwrap()]);
    let url = dev.warden.mcp_url();
    let alice = mcp_with(url.clone(), &dev.token("alice", "", "1h"));
    let resp = alice
        .post(
            &json!({"jsonrpc":"2.0","id":7,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},
            "clientInfo":{"name":"t","version":"1"}}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("mcp-session-id").is_none(), "no session");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 7, "{body}");
    assert_eq!(body["error"]["code"], -32042, "{body}");
    let elicitation = &body["error"]["data"]["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    let link = elicitation["url"].as_str().unwrap();
    assert!(
        link.starts_with(&format!(
            "{}/connections/corp/connect?link=",
            dev.warden.url("")
        )),
        "{link}"
    );
    // Clients without URL elicitation show the message, which holds the link.
    assert!(
        body["error"]["message"].as_str().unwrap().contains(link),
        "{body}"
    );
    // Each user's link is their own.
    let bobs = connect_link(&url, &dev.token("bob", "", "1h")).await;
    assert_ne!(bobs, link);
    // Nothing of the client secret anywhere.
    assert!(!dev.warden.logs().contains("corp-client-secret"));
}

#[tokio::test]
async fn an_optional_connection_not_made_leaves_its_variable_out() {
    let file = config("optional", false);
    let dev = DevWarden::start(&["--config", file.to_str().unwrap()]);
    let mut alice = mcp_with(dev.warden.mcp_url(), &dev.token("alice", "", "1h"));
    alice.initialize().await;
    let answer = alice.call_tool(json!(2), "env", json!({})).await;
    let env = text(&answer);
    assert!(!env.is_empty(), "{answer}");
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("CORP_TOKEN"), "{env}");
}

#[test]
fn connections_need_the_sign_in_server_and_a_state_key() {
    // `wrap` checks what the file needs of the options, and refuses to start.
    let file = config("needs", true);
    let run = |args: &[&str]| {
        let out = Command::new(warden_bin())
            .args(["wrap", "--listen", "127.0.0.1:0"])
            .args(args)
            .args(["--config", file.to_str().unwrap(), "--", "true"])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["--issuer", "https://idp.example"]);
    assert!(!ok && err.contains("built-in sign-in server"), "{err}");
    let state = dir("connections-state");
    std::fs::write(state.join("login-secret"), "s").unwrap();
    let (ok, err) = run(&[
        "--login-issuer",
        "https://idp.example",
        "--login-client-id",
        "w",
        "--login-client-secret-file",
        state.join("login-secret").to_str().unwrap(),
        "--allow-any-user",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("--state-key-file"), "{err}");
    std::fs::write(state.join("key"), "not a key").unwrap();
    let (ok, err) = run(&[
        "--dev",
        "--state-key-file",
        state.join("key").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("32 bytes"), "{err}");
}

const CB: &str = "http://127.0.0.1:4000/cb";

/// A sidecar whose users connect their accounts at `provider` (the test authorization
/// server's connection client): the connection `corp`, required, injected as `CORP_TOKEN`.
fn connecting_sidecar(provider: &AuthServer, test: &str) -> Signin {
    connecting_sidecar_with(provider, test, &[]).0
}

/// [`connecting_sidecar`] with more options; also returns its config file.
fn connecting_sidecar_with(
    provider: &AuthServer,
    test: &str,
    extra: &[&str],
) -> (Signin, std::path::PathBuf) {
    let connection = format!(
        r#"
[audit]
output = "audit.jsonl"

[[connection]]
name = "corp"
issuer = "{}"
client_id = "conn"
client_secret_file = "client-secret"
scopes = ["openid", "offline_access"]
env = "CORP_TOKEN"
file = "corp-token"
required = true
"#,
        provider.issuer
    );
    let file = config_file(test, &connection, "conn-secret");
    let mut args = vec!["--config", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Signin::dev(&args), file)
}

/// Signs `user` in through the sidecar's pages in `b`, as an MCP client sends its user, and
/// returns the user's access token. Offered to connect required accounts right away, the
/// user says "Not now" (`connect_now` false) or connects them at the provider.
async fn sign_in(s: &Signin, b: &mut Browser, user: &str, connect_now: bool) -> String {
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let login = b.get(&s.url(&s.request(&client, CB, &p))).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let mut next = b.submit(&login.form().set("user", user), &s.base).await;
    let consent = format!("{}/oauth/consent", s.base);
    if next
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with(&consent))
    {
        let page = b.get(next.location.as_deref().unwrap()).await;
        next = b
            .submit(&page.form().add("decision", "allow"), &s.base)
            .await;
    }
    // Each required connection not made yet, then the client's redirect with the code.
    let connect = format!("{}/connections/", s.base);
    while let Some(ask) = next.location.clone().filter(|l| l.starts_with(&connect)) {
        let page = b.get(&ask).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Not now"), "{}", page.body);
        let decision = if connect_now { "connect" } else { "later" };
        next = b
            .submit(&page.form().add("decision", decision), &s.base)
            .await;
        if connect_now {
            next = b.follow(next.location.as_deref().unwrap(), CB).await;
        }
    }
    let got = next.redirect_params();
    let (status, t) = s.redeem(&client, CB, &got["code"], &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    t["access_token"].as_str().unwrap().to_owned()
}

/// [`sign_in`], not connecting anything now.
async fn signed_in(s: &Signin, b: &mut Browser, user: &str) -> String {
    sign_in(s, b, user, false).await
}

/// The connect link an `initialize` of `token`'s user is answered with.
async fn connect_link(url: &str, token: &str) -> String {
    let body: Value = mcp_with(url.to_owned(), token)
        .post(
            &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},
            "clientInfo":{"name":"t","version":"1"}}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], -32042, "{body}");
    body["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Opens a connect link in `b`, confirms on the page, and follows the provider back: the
/// last page.
async fn connect_in(b: &mut Browser, s: &Signin, link: &str) -> crate::support::oauth::Hop {
    let ask = b.get(link).await;
    assert_eq!(ask.status, 200, "{}", ask.body);
    let to_provider = b.submit(&ask.form(), &s.base).await;
    assert_eq!(to_provider.status, 303, "{}", to_provider.body);
    b.follow(to_provider.location.as_deref().unwrap(), "never")
        .await
}

/// What the user's server gets from the provider's UserInfo with the token it was given.
async fn server_sees(s: &Signin, provider: &AuthServer, token: &str) -> String {
    let mut m = mcp_with(s.warden.mcp_url(), token);
    m.initialize().await;
    let me = format!("{}/me", provider.issuer);
    let answer = m
        .call_tool(
            json!(2),
            "http_get",
            json!({"url": me, "var": "CORP_TOKEN"}),
        )
        .await;
    text(&answer)
}

#[tokio::test]
async fn two_users_connect_their_own_accounts_and_each_server_acts_as_its_user() {
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret"]);
    let (mut s, config) =
        connecting_sidecar_with(&provider, "two-users", &["--admin-listen", "127.0.0.1:0"]);
    let url = s.warden.mcp_url();
    let (mut alice_browser, mut bob_browser) = (Browser::new(), Browser::new());
    let alice = signed_in(&s, &mut alice_browser, "alice").await;
    let bob = signed_in(&s, &mut bob_browser, "bob").await;
    let alice_link = connect_link(&url, &alice).await;
    let bob_link = connect_link(&url, &bob).await;

    // Another signed-in user's browser cannot complete alice's link, nor can a browser
    // signed in nowhere: nothing is connected, and the provider is never involved.
    let hop = bob_browser.get(&alice_link).await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("other_user"), "{}", hop.body);
    let hop = Browser::new().get(&alice_link).await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("not_signed_in"), "{}", hop.body);
    // A link altered to name another connection does not open.
    let hop = alice_browser
        .get(&alice_link.replace("/corp/connect", "/other/connect"))
        .await;
    assert_eq!(hop.status, 404, "{}", hop.body);
    let _ = connect_link(&url, &alice).await;

    // The link shows a page that asks; a page of another site cannot post its form (no
    // connection without the user's click), and the page's own form works once.
    let ask = alice_browser.get(&alice_link).await;
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(
        ask.body.contains("Connect corp") && ask.body.contains("alice"),
        "{}",
        ask.body
    );
    let csp = ask
        .header("content-security-policy")
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains(&provider.issuer),
        "{csp}"
    );
    let cross = alice_browser
        .submit(&ask.form(), "https://evil.example")
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);

    // Each connects at the provider as themselves.
    for (browser, link, provider_user) in [
        (&mut alice_browser, &alice_link, "alice-at-corp"),
        (&mut bob_browser, &bob_link, "bob-at-corp"),
    ] {
        provider.next_user(provider_user).await;
        let ask = browser.get(link).await;
        let to_provider = browser.submit(&ask.form(), &s.base).await;
        assert_eq!(to_provider.status, 303, "{}", to_provider.body);
        let at = to_provider.location.clone().unwrap();
        assert!(at.starts_with(&provider.issuer), "{at}");
        assert!(at.contains("code_challenge_method=S256") && at.contains("state="));
        let done = browser.follow(&at, "never").await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("Connected"), "{}", done.body);
        assert!(done.body.contains("corp"), "{}", done.body);
        // The confirmation is used up.
        let again = browser.submit(&ask.form(), &s.base).await;
        assert_eq!(again.status, 400, "{}", again.body);
    }

    // Each server acts at the provider as its own user, with a token nobody else saw.
    let seen = server_sees(&s, &provider, &alice).await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("\"sub\":\"alice-at-corp\""), "{seen}");
    let seen = server_sees(&s, &provider, &bob).await;
    assert!(seen.contains("\"sub\":\"bob-at-corp\""), "{seen}");
    // Whatever the server sends, the token itself never reaches the client.
    let m = {
        let mut m = mcp_with(url.clone(), &alice);
        m.initialize().await;
        m
    };
    let echoed = m
        .call_tool(
            json!(3),
            "raw",
            json!({
                "line": "{\"jsonrpc\":\"2.0\",\"id\":$ID,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"token=$VAR\"}]}}",
                "var": "CORP_TOKEN",
                "answer": false,
            }),
        )
        .await;
    assert_eq!(
        text(&echoed),
        "token=[REDACTED:injected_secret]",
        "{echoed}"
    );
    // The same token in the file the server reads it from (what it read is redacted too).
    let file = m
        .call_tool(json!(6), "read_home", json!({"name": "corp-token"}))
        .await;
    assert_eq!(text(&file), "[REDACTED:injected_secret]", "{file}");

    // Alice's page lists her connection; revoking it there ends her session at once and
    // leaves bob's alone.
    let mut bobs_session = mcp_with(url.clone(), &bob);
    bobs_session.initialize().await;
    let page = alice_browser.get(&format!("{}/connections", s.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("corp") && page.body.contains("connected"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("openid"),
        "the scopes granted: {}",
        page.body
    );
    assert_eq!(
        Browser::new()
            .get(&format!("{}/connections", s.base))
            .await
            .status,
        403
    );
    let revoke = page.form().add("connection", "corp");
    // Not from the page's origin: refused, nothing revoked.
    let mut forged = revoke.clone();
    forged.fields.retain(|(k, _)| k != "csrf");
    let refused = alice_browser.submit(&forged, &s.base).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let done = alice_browser.submit(&revoke, &s.base).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let after = m
        .post(&json!({"jsonrpc":"2.0","id":4,"method":"tools/call",
            "params":{"name":"echo","arguments":{"text":"still?"}}}))
        .await;
    assert_eq!(after.status(), 404, "the session outlived the revocation");
    let _ = connect_link(&url, &alice).await;
    assert_eq!(
        text(
            &bobs_session
                .call_tool(json!(5), "echo", json!({"text": "bob"}))
                .await
        ),
        "bob"
    );
    let page = alice_browser.get(&format!("{}/connections", s.base)).await;
    assert!(page.body.contains("not connected"), "{}", page.body);
    let metrics = reqwest::get(s.warden.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mcp_warden_connection_events_total{reason=\"connected\"} 2"),
        "{metrics}"
    );
    // Stopped, the sidecar has written every audit record (the writer is off the request
    // path).
    s.warden.stop_with(
        nix::sys::signal::Signal::SIGTERM,
        std::time::Duration::from_secs(20),
    );
    let logs = s.warden.logs();
    assert!(logs.contains("a user connected an account"), "{logs}");
    assert!(!logs.contains("conn-secret"), "{logs}");
    // Connects and the revocation are in the audit log, by user and connection.
    let audit = std::fs::read_to_string(config.parent().unwrap().join("audit.jsonl")).unwrap();
    // The provider's tokens, as it issued them: in no log and no audit record. Of those
    // that open UserInfo, only bob's still do: alice's grant was revoked at the provider too.
    let issued: Vec<String> = reqwest::get(format!("{}/__test/issued-tokens", provider.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        issued.len() >= 4,
        "access and refresh tokens of both: {issued:?}"
    );
    let mut working = Vec::new();
    for token in &issued {
        assert!(
            !logs.contains(token.as_str()),
            "a provider token in the logs"
        );
        assert!(
            !audit.contains(token.as_str()),
            "a provider token in the audit log"
        );
        let r = reqwest::Client::new()
            .get(format!("{}/me", provider.issuer))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            let me: Value = r.json().await.unwrap();
            working.push(me["sub"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(working, ["bob-at-corp"]);
    let records: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["event"] == "connection")
        .collect();
    let seen: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["sub"].as_str().unwrap().to_owned(),
                r["decision"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for wanted in [
        ("alice", "connected"),
        ("bob", "connected"),
        ("alice", "revoked"),
    ] {
        assert!(
            seen.contains(&(wanted.0.to_owned(), wanted.1.to_owned())),
            "{wanted:?} not in {seen:?}"
        );
    }
    assert!(records.iter().all(|r| r["name"] == "corp"));
    assert!(!audit.contains("conn-secret"));
}

/// Signs `user` in through the sidecar's pages in `chrome`, as an MCP client sends its user,
/// and allows the client.
async fn chrome_sign_in(
    chrome: &crate::support::chromium::Chromium,
    s: &Signin,
    client: &str,
    cb: &str,
    p: &crate::support::oauth::Pkce,
    user: &str,
) {
    chrome.goto(&s.url(&s.request(client, cb, p))).await;
    chrome.fill("#user", user).await;
    chrome.click("button.primary").await;
    chrome.wait_url(&format!("{}/oauth/consent", s.base)).await;
    chrome.click("button[value=allow]").await;
}

#[tokio::test]
async fn a_user_connects_in_a_real_browser_on_the_providers_own_page() {
    use crate::support::chromium::{Chromium, Site};
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret", "--login-page"]);
    let s = connecting_sidecar(&provider, "browser");
    let app = Site::start().await;
    app.page("/cb", "<!doctype html><p>Back in the application.</p>");
    let cb = app.url("/cb");
    let client = register(&s.base, &[&cb]).await;
    let p = pkce();
    // Signed in at the sidecar, in the browser, as an MCP client sends its user.
    let chrome = Chromium::start().await;
    chrome_sign_in(&chrome, &s, &client, &cb, &p, "dana").await;
    // Right after signing in: the offer to connect the required account, then the
    // provider's own sign-in page, then back to the client with its code.
    chrome
        .wait_url(&format!("{}/connections/corp/connect", s.base))
        .await;
    let ask = chrome.text().await;
    assert!(
        ask.contains("Connect an account?") && ask.contains("dana") && ask.contains("Not now"),
        "{ask}"
    );
    chrome.click("#connect").await;
    chrome
        .wait_url(&format!("{}/interaction/", provider.issuer))
        .await;
    assert!(chrome.text().await.contains("Sign in to the provider"));
    chrome.fill("#provider-user", "dana-at-corp").await;
    chrome.click("#provider-continue").await;
    let back = chrome.wait_url(&cb).await;
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let (status, t) = s.redeem(&client, &cb, &code, &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    let dana = t["access_token"].as_str().unwrap().to_owned();
    // The client's first session has the account.
    let seen = server_sees(&s, &provider, &dana).await;
    assert!(seen.contains("\"sub\":\"dana-at-corp\""), "{seen}");
    // Later, from a connect link (after a revoke on the page): the sidecar's page says what
    // was connected.
    chrome.goto(&format!("{}/connections", s.base)).await;
    assert!(chrome.text().await.contains("connected"));
    chrome.click("button[name=connection]").await;
    // The form answers with the same page: wait for what it says now.
    chrome.wait_text("not connected").await;
    let link = connect_link(&s.warden.mcp_url(), &dana).await;
    chrome.goto(&link).await;
    chrome.click("#connect").await;
    chrome
        .wait_url(&format!("{}/connections/callback", s.base))
        .await;
    let page = chrome.text().await;
    assert!(
        page.contains("Connected") && page.contains("corp"),
        "{page}"
    );
    // Another user, right after signing in, chooses "Not now": back to the client with its
    // code (the page's policy lets its form lead there).
    let p = pkce();
    chrome_sign_in(&chrome, &s, &client, &cb, &p, "ivy").await;
    chrome
        .wait_url(&format!("{}/connections/corp/connect", s.base))
        .await;
    chrome.click("#later").await;
    let back = chrome.wait_url(&cb).await;
    assert!(back.contains("code="), "{back}");
    chrome.close().await;
    let seen = server_sees(&s, &provider, &dana).await;
    assert!(seen.contains("\"sub\":\"dana-at-corp\""), "{seen}");
}

#[tokio::test]
async fn an_operator_lists_and_revokes_a_connection_and_the_users_session_ends() {
    let pg = Postgres::start();
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret"]);
    let d = dir("connections-operator");
    std::fs::write(d.join("url"), pg.url()).unwrap();
    std::fs::write(d.join("key"), format!("{}\n", "5a".repeat(32))).unwrap();
    let (url_file, key_file) = (d.join("url"), d.join("key"));
    let (s, config) = connecting_sidecar_with(
        &provider,
        "operator-sidecar",
        &[
            "--state-url-file",
            url_file.to_str().unwrap(),
            "--state-key-file",
            key_file.to_str().unwrap(),
        ],
    );
    let mut b = Browser::new();
    let alice = signed_in(&s, &mut b, "alice").await;
    let link = connect_link(&s.warden.mcp_url(), &alice).await;
    provider.next_user("alice-at-corp").await;
    let done = connect_in(&mut b, &s, &link).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let mut session = mcp_with(s.warden.mcp_url(), &alice);
    session.initialize().await;

    let cli = |args: &[&str]| {
        let out = Command::new(warden_bin())
            .arg("connections")
            .args(args)
            .args(["--state-url-file", url_file.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = cli(&["list"]);
    assert!(ok, "{err}");
    assert!(
        listed.contains("alice\tcorp\tactive\topenid offline_access"),
        "{listed}"
    );
    let (ok, said, err) = cli(&[
        "revoke",
        "--user",
        "alice",
        "--connection",
        "corp",
        "--state-key-file",
        key_file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(said.contains("revoked corp of alice"), "{said}");
    // The running sidecar ends the session given it within its check interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = session
            .post(&json!({"jsonrpc":"2.0","id":9,"method":"tools/call",
                "params":{"name":"echo","arguments":{"text":"x"}}}))
            .await;
        if r.status() == 404 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived the revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    s.warden.wait_log(
        "connection was revoked: ending it",
        std::time::Duration::from_secs(10),
    );
    let (_, listed, _) = cli(&["list"]);
    assert!(!listed.contains("alice"), "{listed}");
    let _ = connect_link(&s.warden.mcp_url(), &alice).await;
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_and_a_refused_refresh_asks_for_consent_again() {
    // The provider's access tokens live a minute: within the refresh margin at once.
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret", "--ttl", "60"]);
    let s = connecting_sidecar(&provider, "refresh");
    let mut b = Browser::new();
    let alice = signed_in(&s, &mut b, "alice").await;
    let link = connect_link(&s.warden.mcp_url(), &alice).await;
    provider.next_user("alice-at-corp").await;
    assert_eq!(connect_in(&mut b, &s, &link).await.status, 200);
    // The session gets a refreshed token, which the provider accepts.
    let seen = server_sees(&s, &provider, &alice).await;
    assert!(seen.contains("\"sub\":\"alice-at-corp\""), "{seen}");
    s.warden.wait_log(
        "a connection was refreshed",
        std::time::Duration::from_secs(10),
    );
    // The provider no longer honours the refresh token: the next session asks the user to
    // connect again, and the page says so.
    let r = reqwest::Client::new()
        .post(format!("{}/__test/forget-refresh-tokens", provider.issuer))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let _ = connect_link(&s.warden.mcp_url(), &alice).await;
    let page = b.get(&format!("{}/connections", s.base)).await;
    assert!(
        page.body.contains("needs connecting again"),
        "{}",
        page.body
    );
    // Connecting again makes it usable again.
    let link = connect_link(&s.warden.mcp_url(), &alice).await;
    assert_eq!(connect_in(&mut b, &s, &link).await.status, 200);
    let seen = server_sees(&s, &provider, &alice).await;
    assert!(seen.contains("\"sub\":\"alice-at-corp\""), "{seen}");
}

#[tokio::test]
async fn a_cookie_planted_before_sign_in_signs_nobody_else_in() {
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret"]);
    let s = connecting_sidecar(&provider, "fixation");
    // An attacker who could set the browser-binding cookie in the victim's browser (another
    // site on localhost) knows its value; the victim then signs in.
    let planted = "p".repeat(43);
    let mut victim = Browser::new();
    victim
        .cookies
        .insert("mcp-warden-browser".into(), planted.clone());
    let alice = signed_in(&s, &mut victim, "alice").await;
    let mut attacker = Browser::new();
    attacker
        .cookies
        .insert("mcp-warden-browser".into(), planted.clone());
    let page = attacker.get(&format!("{}/connections", s.base)).await;
    assert_eq!(page.status, 403, "{}", page.body);
    let link = connect_link(&s.warden.mcp_url(), &alice).await;
    let hop = attacker.get(&link).await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    // The victim's own browser is signed in.
    assert_eq!(
        victim.get(&format!("{}/connections", s.base)).await.status,
        200
    );
}

#[tokio::test]
async fn a_new_user_connects_required_accounts_right_after_signing_in() {
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret"]);
    let s = connecting_sidecar(&provider, "chained");
    provider.next_user("erin-at-corp").await;
    let mut b = Browser::new();
    // Sign-in, consent, the offer to connect, the provider, and back to the client with the
    // code: the client's first session needs no connect link.
    let erin = sign_in(&s, &mut b, "erin", true).await;
    let seen = server_sees(&s, &provider, &erin).await;
    assert!(seen.contains("\"sub\":\"erin-at-corp\""), "{seen}");
    // Signing in again with the account connected goes straight back to the client.
    let again = sign_in(&s, &mut b, "erin", false).await;
    assert!(!again.is_empty());
}

#[tokio::test]
async fn a_sign_in_resumes_only_once_allowed_and_only_for_its_own_user() {
    let provider = AuthServer::start(&["--connection-client", "conn:conn-secret"]);
    let s = connecting_sidecar(&provider, "resume");
    let mut b = Browser::new();
    // Alice has signed in before ("Not now"): her client can ask for her connect link.
    let alice = signed_in(&s, &mut b, "alice").await;
    let link = connect_link(&s.warden.mcp_url(), &alice).await;
    // A second client's sign-in, stopped at the consent page: not allowed yet.
    let client = register(&s.base, &[CB]).await;
    let p = pkce();
    let login = b.get(&s.url(&s.request(&client, CB, &p))).await;
    let next = b.submit(&login.form().set("user", "alice"), &s.base).await;
    let consent = b.get(next.location.as_deref().unwrap()).await;
    let waiting = consent.form().get("flow").unwrap().to_owned();
    // Its flow id brought to a connect link cannot skip the consent.
    let hop = b.get(&format!("{link}&then={waiting}")).await;
    assert_eq!(hop.status, 400, "{}", hop.body);
    // Allowed, it waits for alice's connection; bob, signing in in the same browser
    // afterwards, cannot finish it with his own link.
    let allowed = b
        .submit(&consent.form().add("decision", "allow"), &s.base)
        .await;
    let ask = allowed.location.clone().unwrap();
    assert!(
        ask.contains("/connections/corp/connect") && ask.contains(&waiting),
        "{ask}"
    );
    let bob = signed_in(&s, &mut b, "bob").await;
    let bobs_link = connect_link(&s.warden.mcp_url(), &bob).await;
    let hop = b.get(&format!("{bobs_link}&then={waiting}")).await;
    assert_eq!(hop.status, 403, "{}", hop.body);
    assert!(hop.body.contains("other_user"), "{}", hop.body);
}
