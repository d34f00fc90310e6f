//! The activity page on the admin listener, in a real headless Chromium: a session of the
//! official TypeScript SDK client appears with its client and calls, a refused call with its
//! rule, a redaction; ending the session on the page ends it at the client; no injected
//! secret or argument is ever on the page. And the page's adversaries: a rebinding page, a
//! cross-site form, a frame.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::chromium::{Chromium, Site};
use crate::support::{Warden, everything, node};

const SECRET: &str = "wsk_live_activity_0a1b2c3d4e5f";
const EMAIL: &str = "carol@example.com";

const CONFIG: &str = r#"
[policy]
default = "allow"

[[rule]]
name = "no-sums"
tools = ["get-sum"]
effect = "deny"

[[redact]]
name = "mail"
tools = ["echo"]
detectors = ["email"]
"#;

/// server-everything with [`CONFIG`] (a deny rule, a redaction rule) and `secret` injected
/// as `WARDEN_TEST_SECRET`.
pub(super) fn governed_everything(
    dir: &crate::support::TempDir,
    secret: &str,
) -> crate::support::WardenBuilder {
    let config = dir.path("warden.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let keys = dir.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let file = keys.join("secret");
    std::fs::write(&file, secret).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Warden::builder(everything())
        .args(["--config", config.to_str().unwrap()])
        .args([
            "--env-file".to_owned(),
            format!("WARDEN_TEST_SECRET={}", file.display()),
        ])
}

/// [`governed_everything`] with the activity page.
fn start(dir: &crate::support::TempDir, extra: &[&str]) -> Warden {
    governed_everything(dir, SECRET)
        .args(["--admin-listen", "127.0.0.1:0", "--admin-ui"])
        .args(extra.iter().copied())
        .start()
}

/// Lets the held client go on when the test ends, however it ends.
struct Release(std::path::PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

async fn page(w: &Warden) -> String {
    reqwest::get(w.admin_url("/ui"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The page once it shows every one of `needles` (what the client did is recorded when done).
async fn wait_page(w: &Warden, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let html = page(w).await;
        if needles.iter().all(|n| html.contains(n)) {
            return html;
        }
        assert!(std::time::Instant::now() < deadline, "{html}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_browser_sees_sessions_refusals_and_redactions_and_ends_a_session() {
    let dir = crate::support::TempDir::new("activity");
    let w = start(&dir, &[]);
    let go = dir.path("go");
    let _release = Release(go.clone());
    let steps = json!([
        {"op":"call","name":"echo","args":{"message": format!("mail {EMAIL}")}},
        {"op":"call","name":"get-sum","args":{"a":1,"b":2}},
        {"op":"call","name":"get-env"},
        {"op":"wait","file": go.to_str().unwrap()},
        {"op":"call","name":"echo","args":{"message":"still there?"}},
    ]);
    let url = w.mcp_url();
    let client = tokio::task::spawn_blocking(move || {
        node(
            "policy.mjs",
            &[&url, "streamable", &steps.to_string()],
            Duration::from_secs(90),
        )
    });
    // The three calls are on the page once they are done.
    wait_page(&w, &["get-env", "no-sums"]).await;

    let chrome = Chromium::start().await;
    chrome.goto(&w.admin_url("/ui")).await;
    let text = chrome.text().await;
    // The session, with the client's own name and version and the protocol it agreed.
    assert!(text.contains("mcp-warden-policy-test 1.0.0"), "{text}");
    assert!(text.contains("2025-"), "{text}");
    let live = chrome
        .client
        .find(fantoccini::Locator::Css("#live-sessions"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(live, "1");
    // The refused call, with its rule; the redaction, with its rule.
    assert!(text.contains("refused · denied_by_rule"), "{text}");
    assert!(text.contains("no-sums"), "{text}");
    assert!(text.contains("1× mail"), "{text}");
    assert!(text.contains("1× injected_secret"), "{text}");
    // Neither the secret nor an argument is anywhere in the HTML.
    let html = chrome.client.source().await.unwrap();
    assert!(!html.contains(SECRET), "the injected secret is on the page");
    assert!(!html.contains(EMAIL), "an argument is on the page");
    assert!(!html.contains("still there"));

    // The filter: refused calls only.
    chrome.goto(&w.admin_url("/ui?decision=refused")).await;
    let calls = chrome
        .client
        .find(fantoccini::Locator::Css("#calls tbody"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        calls.contains("get-sum") && !calls.contains("get-env"),
        "{calls}"
    );

    // End the session from the page.
    chrome.click("#sessions button.danger").await;
    // The form's answer leads back to the page, which says so.
    chrome.wait_text("No session is open.").await;
    w.wait_log(
        "session ended from the activity page",
        Duration::from_secs(5),
    );
    chrome.close().await;

    // The client's next call finds its session gone.
    std::fs::write(&go, "").unwrap();
    let out: Vec<Value> = serde_json::from_str(client.await.unwrap().trim()).unwrap();
    assert!(
        out[0]["ok"].is_object() && out[2]["ok"].is_object(),
        "{out:?}"
    );
    assert!(
        out[1].get("error").is_some() || out[1]["ok"]["isError"] == true,
        "{out:?}"
    );
    assert!(out[4].get("error").is_some(), "{out:?}");
}

#[tokio::test]
async fn the_page_refuses_rebinding_cross_site_forms_and_frames() {
    let dir = crate::support::TempDir::new("activity-attacks");
    let w = start(&dir, &["--allowed-host", "ops.internal"]);
    // A session to aim at.
    let url = w.mcp_url();
    let go = dir.path("go");
    let _release = Release(go.clone());
    let steps = json!([{"op":"wait","file": go.to_str().unwrap()}]);
    let client = tokio::task::spawn_blocking(move || {
        node(
            "policy.mjs",
            &[&url, "streamable", &steps.to_string()],
            Duration::from_secs(90),
        )
    });
    let html = wait_page(&w, &["mcp-warden-policy-test"]).await;
    let field = |name: &str| {
        let at = html.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
        html[at..].split('"').next().unwrap().to_owned()
    };
    let (csrf, handle) = (field("csrf"), field("session"));
    let http = reqwest::Client::new();
    let end = w.admin_url("/ui/sessions/end");

    // A rebinding page reaches the listener under its own name.
    let r = http
        .get(w.admin_url("/ui"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A name the operator gave is answered to.
    let r = http
        .get(w.admin_url("/ui"))
        .header("host", "ops.internal:9090")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A form of another page, even one that knew the token.
    for (origin, site) in [
        ("http://attacker.example", "cross-site"),
        ("http://localhost:1", "same-site"),
    ] {
        let r = http
            .post(&end)
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .form(&[("csrf", csrf.as_str()), ("session", handle.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{origin}");
    }
    let r = http
        .post(&end)
        .header("origin", "http://attacker.example")
        .form(&[("csrf", csrf.as_str()), ("session", handle.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Without the token, or with another.
    for token in ["", "00000000000000000000000000000000"] {
        let r = http
            .post(&end)
            .form(&[("csrf", token), ("session", handle.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    // The page may not be framed, and loads nothing from elsewhere.
    let r = http.get(w.admin_url("/ui")).send().await.unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // A malicious page in a real browser posts the form at the listener.
    let site = Site::start().await;
    site.page(
        "/",
        &format!(
            r#"<form id="f" method="post" action="{end}"><input name="csrf" value="{csrf}"><input name="session" value="{handle}"></form><script>document.getElementById("f").submit()</script>"#
        ),
    );
    let chrome = Chromium::start().await;
    chrome.goto(&site.url("/")).await;
    chrome.wait_url(&end).await;
    assert!(chrome.text().await.contains("refused"));
    chrome.close().await;

    // The session lived through all of it.
    let html = page(&w).await;
    assert!(html.contains("mcp-warden-policy-test"), "{html}");
    assert!(!w.logs().contains("session ended from the activity page"));
    std::fs::write(&go, "").unwrap();
    client.await.unwrap();
}

#[tokio::test]
async fn the_page_is_served_only_when_asked_for() {
    let w = Warden::builder(crate::support::fixture())
        .args(["--admin-listen", "127.0.0.1:0"])
        .start();
    let r = reqwest::get(w.admin_url("/ui")).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::Client::new()
        .post(w.admin_url("/ui/sessions/end"))
        .body("csrf=x&session=y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        reqwest::get(w.admin_url("/metrics"))
            .await
            .unwrap()
            .status(),
        200
    );
}
