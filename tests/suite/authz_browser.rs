//! The sign-in pages in a real browser (headless Chromium over WebDriver): a user signs in
//! by the development page and by the identity provider's own page, reads the consent page
//! (the client, where the browser goes next, the scopes, the warning for a client never
//! seen here) and allows, and the client's redirect URI receives the code; a page of
//! another origin can neither frame the consent page nor post it without its CSRF token.
//! And mcp-remote (npm), the bridge stdio-only clients use, signs in on its own with the
//! browser it opens and lists a real server's tools.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::authz::Signin;
use super::authz_clients::Federated;
use crate::support::chromium::{Chromium, Site};
use crate::support::oauth::{self, Pkce, pkce, register};
use crate::support::{TempDir, Warden, everything, node_with_env, until};

const CLIENT: &str = "mcp-warden test client";

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A client's redirect URI on a site of its own; returns (site, redirect URI).
async fn client_site() -> (Site, String) {
    let app = Site::start().await;
    app.page("/cb", "<!doctype html><p>Back in the application.</p>");
    let cb = app.url("/cb");
    (app, cb)
}

fn request<'a>(client: &'a str, cb: &'a str, p: &'a Pkce) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", cb),
        ("code_challenge", &p.challenge),
        ("code_challenge_method", "S256"),
        ("state", "browser-state"),
        ("scope", "mcp:tools"),
    ]
}

/// What the consent page must show a user about this sign-in.
fn assert_consent_names_the_client(text: &str, app: &Site, user: &str) {
    assert!(text.contains("Allow access?"), "{text}");
    assert!(text.contains(&format!("“{CLIENT}”")), "the client: {text}");
    assert!(
        text.contains(&app.addr.to_string()),
        "the redirect host: {text}"
    );
    assert!(text.contains(user), "the user: {text}");
    assert!(text.contains("mcp:tools"), "the scopes: {text}");
    assert!(
        text.contains("not used this application here before"),
        "never seen here: {text}"
    );
}

/// Clicks Allow; returns the parameters the client's redirect URI received.
async fn allow(chrome: &Chromium, app: &Site, cb: &str) -> HashMap<String, String> {
    chrome.click("button[value=allow]").await;
    let back = chrome.wait_url(cb).await;
    let got = query(&back);
    assert!(
        app.seen()
            .iter()
            .any(|t| t.starts_with("/cb?") && t.contains(&got["code"])),
        "the client's redirect URI received the code: {:?}",
        app.seen()
    );
    got
}

#[tokio::test]
async fn a_user_signs_in_by_the_development_page_in_a_real_browser() {
    let s = Signin::dev(&[]);
    let (app, cb) = client_site().await;
    let client = register(&s.base, &[&cb]).await;
    let p = pkce();
    let chrome = Chromium::start().await;
    chrome.goto(&s.url(&request(&client, &cb, &p))).await;
    let login = chrome.text().await;
    assert!(
        login.contains("Sign in") && login.contains(CLIENT),
        "{login}"
    );
    chrome.fill("#user", "dana").await;
    chrome.click("button.primary").await;
    chrome.wait_url(&format!("{}/oauth/consent", s.base)).await;
    assert_consent_names_the_client(&chrome.text().await, &app, "dana");
    let got = allow(&chrome, &app, &cb).await;
    assert_eq!(got["state"], "browser-state");
    assert_eq!(got["iss"], s.base);
    let (status, t) = s.redeem(&client, &cb, &got["code"], &p.verifier).await;
    assert_eq!(status, 200, "{t}");
    let c = oauth::claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some("dana"), Some(client.as_str()))
    );
    chrome.close().await;
}

#[tokio::test]
async fn a_user_signs_in_on_the_identity_providers_page_in_a_real_browser() {
    let f = Federated::start_with(
        &["--login-page"],
        &["--allow-email-domain", "corp.example"],
        None,
    );
    let (app, cb) = client_site().await;
    let client = register(&f.base, &[&cb]).await;
    let p = pkce();
    let chrome = Chromium::start().await;
    chrome
        .goto(&oauth::authorize_url(&f.base, &request(&client, &cb, &p)))
        .await;
    // The provider's own page, reached through our redirect.
    chrome
        .wait_url(&format!("{}/interaction/", f.provider.issuer))
        .await;
    assert!(chrome.text().await.contains("Sign in to the provider"));
    chrome.fill("#provider-user", "alice").await;
    chrome.click("#provider-continue").await;
    chrome.wait_url(&format!("{}/oauth/consent", f.base)).await;
    let text = chrome.text().await;
    assert_consent_names_the_client(&text, &app, "alice@corp.example");
    let got = allow(&chrome, &app, &cb).await;
    assert_eq!(got["iss"], f.base);
    // Nothing of the provider's answer reached the client: only our code, state and iss.
    let mut keys: Vec<&str> = got.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "iss", "state"]);
    let (status, t) = oauth::token(
        &f.base,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &client),
            ("redirect_uri", &cb),
            ("code", &got["code"]),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{t}");
    let c = oauth::claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["idp"], f.provider.issuer);
    assert_eq!(c["email"], "alice@corp.example");
    chrome.close().await;
}

/// Signs `user` in through the development page up to the consent page; returns its URL.
async fn to_consent(chrome: &Chromium, s: &Signin, client: &str, cb: &str, p: &Pkce) -> String {
    chrome.goto(&s.url(&request(client, cb, p))).await;
    chrome.fill("#user", "victim").await;
    chrome.click("button.primary").await;
    chrome.wait_url(&format!("{}/oauth/consent", s.base)).await
}

/// Where the first frame of the page ended up, and whether a form is in it (from inside
/// the frame, as WebDriver sees it), once it has left `about:blank`.
async fn first_frame(chrome: &Chromium) -> (String, bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        chrome.client.enter_parent_frame().await.unwrap();
        if chrome.client.enter_frame(0).await.is_ok() {
            let v = chrome
                .client
                .execute(
                    "return [location.href, document.querySelector('form') !== null]",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            if let (Some(href), Some(form)) = (v[0].as_str(), v[1].as_bool())
                && href != "about:blank"
                && (form || href.starts_with("chrome-error:"))
            {
                let out = (href.to_owned(), form);
                chrome.client.enter_parent_frame().await.unwrap();
                return out;
            }
        }
        assert!(Instant::now() < deadline, "the frame never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_page_of_another_origin_cannot_frame_the_consent_page() {
    let s = Signin::dev(&[]);
    let (app, cb) = client_site().await;
    let client = register(&s.base, &[&cb]).await;
    let p = pkce();
    let chrome = Chromium::start().await;
    let consent = to_consent(&chrome, &s, &client, &cb, &p).await;
    let evil = Site::start().await;
    // The method's control: a frameable page of the same site shows its form in a frame.
    evil.page(
        "/inner",
        "<!doctype html><form><button>Click</button></form>",
    );
    evil.page(
        "/control",
        "<!doctype html><iframe src=\"/inner\"></iframe>",
    );
    chrome.goto(&evil.url("/control")).await;
    let (href, form) = first_frame(&chrome).await;
    assert_eq!((href.as_str(), form), (evil.url("/inner").as_str(), true));
    // The consent page (the victim's live one) in another origin's frame: not rendered.
    evil.page(
        "/clickjack",
        &format!(
            "<!doctype html><p>Win a prize!</p><iframe src=\"{consent}\" width=800 height=600></iframe>"
        ),
    );
    chrome.goto(&evil.url("/clickjack")).await;
    let (href, form) = first_frame(&chrome).await;
    assert!(!form, "the consent form rendered in a frame at {href}");
    assert!(href.starts_with("chrome-error:"), "{href}");
    // The development sign-in page likewise.
    evil.page(
        "/clickjack-login",
        &format!(
            "<!doctype html><iframe src=\"{}\"></iframe>",
            s.url(&request(&client, &cb, &p))
        ),
    );
    chrome.goto(&evil.url("/clickjack-login")).await;
    let (href, form) = first_frame(&chrome).await;
    assert!(!form && href.starts_with("chrome-error:"), "{href}");
    assert!(
        !app.seen().iter().any(|t| t.contains("code=")),
        "no code was issued"
    );
    chrome.close().await;
}

#[tokio::test]
async fn a_cross_site_form_post_without_the_csrf_token_is_refused() {
    let s = Signin::dev(&[]);
    let (app, cb) = client_site().await;
    let client = register(&s.base, &[&cb]).await;
    let p = pkce();
    let chrome = Chromium::start().await;
    let consent = to_consent(&chrome, &s, &client, &cb, &p).await;
    // Even knowing the victim's flow, the attacker cannot know its CSRF token.
    let flow = query(&consent)["flow"].clone();
    let evil = Site::start().await;
    evil.page(
        "/attack",
        &format!(
            "<!doctype html><form method=post action=\"{}/oauth/consent\">\
             <input type=hidden name=flow value=\"{flow}\">\
             <input type=hidden name=decision value=allow>\
             <input type=hidden name=remember value=on>\
             <button id=go>Claim your prize</button></form>",
            s.base
        ),
    );
    chrome.goto(&evil.url("/attack")).await;
    chrome.click("#go").await;
    chrome.wait_url(&format!("{}/oauth/consent", s.base)).await;
    let text = chrome.text().await;
    assert!(text.contains("Cannot sign in"), "{text}");
    assert!(text.contains("cross_site"), "{text}");
    assert!(
        !app.seen().iter().any(|t| t.contains("code=")),
        "no code reached the client: {:?}",
        app.seen()
    );
    // The refusal changed nothing: the victim can still decide on the genuine page.
    chrome.goto(&consent).await;
    assert_consent_names_the_client(&chrome.text().await, &app, "victim");
    let got = allow(&chrome, &app, &cb).await;
    assert_eq!(got["state"], "browser-state");
    chrome.close().await;
}

#[tokio::test]
async fn mcp_remote_signs_in_by_the_development_page_and_lists_a_real_servers_tools() {
    let warden = Warden::builder(everything())
        .with_auth()
        .arg("--dev")
        .start();
    let base = format!("http://{}", warden.addr);
    let dir = TempDir::new("mcp-remote");
    // mcp-remote opens "the browser" with $BROWSER: this one hands the URL to the test,
    // which drives the real browser.
    let opened = dir.path("opened");
    let opener = dir.path("open-browser");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.path("mcp-remote");
    let (url, browser, config_dir) = (
        warden.mcp_url(),
        opener.display().to_string(),
        config.display().to_string(),
    );
    let bridge = tokio::task::spawn_blocking(move || {
        node_with_env(
            "mcp-remote-client.mjs",
            &[&url],
            &[
                ("BROWSER", browser.as_str()),
                ("MCP_REMOTE_CONFIG_DIR", config_dir.as_str()),
            ],
            Duration::from_secs(150),
        )
    });
    let chrome = Chromium::start().await;
    let authorize = until(Duration::from_secs(90), || {
        std::fs::read_to_string(&opened)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
    })
    .await
    .expect("mcp-remote never opened the browser");
    assert!(
        authorize.starts_with(&format!("{base}/oauth/authorize?")),
        "{authorize}"
    );
    chrome.goto(&authorize).await;
    chrome.fill("#user", "erin").await;
    chrome.click("button.primary").await;
    chrome.wait_url(&format!("{base}/oauth/consent")).await;
    let text = chrome.text().await;
    assert!(
        text.contains("Allow access?") && text.contains("erin"),
        "{text}"
    );
    chrome.click("button[value=allow]").await;
    // Back at mcp-remote's own loopback callback.
    let deadline = Instant::now() + Duration::from_secs(30);
    while chrome.url().await.starts_with(&base) {
        assert!(Instant::now() < deadline, "{}", chrome.text().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = bridge.await.unwrap();
    let got: Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|_| panic!("{out}"));
    let tools: Vec<&str> = got["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"echo"), "{tools:?}");
    assert!(
        got["echo"].as_str().unwrap().contains("through mcp-remote"),
        "{got}"
    );
    // What mcp-remote keeps is our token, for this endpoint, naming the user.
    let token = find_access_token(&config).expect("mcp-remote stored no token");
    let c = oauth::claims(&token);
    assert_eq!(
        (c["sub"].as_str(), c["iss"].as_str()),
        (Some("erin"), Some(base.as_str()))
    );
    assert_eq!(c["aud"], warden.mcp_url());
    chrome.close().await;
}

/// The access token in mcp-remote's `*_tokens.json` under `dir`.
fn find_access_token(dir: &std::path::Path) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(t) = find_access_token(&path) {
                return Some(t);
            }
        } else if path.to_string_lossy().ends_with("_tokens.json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            return v["access_token"].as_str().map(str::to_owned);
        }
    }
    None
}
