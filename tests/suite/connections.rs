//! Users' upstream connections (`[[connection]]`): a session of a user who has not connected
//! a required one is answered with the URL-elicitation-required error naming a connect link
//! signed for that user; an optional one leaves its variable out; the configuration refuses
//! what cannot work.

use std::process::Command;

use serde_json::{Value, json};

use super::auth::{DevWarden, mcp_with};
use super::policy::dir;
use crate::support::http::text;
use crate::support::warden_bin;

fn config(required: bool) -> std::path::PathBuf {
    let d = dir(&format!("connections-{required}"));
    std::fs::write(d.join("corp-secret"), "corp-client-secret\n").unwrap();
    let file = d.join("warden.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[policy]
default = "allow"

[[connection]]
name = "corp"
authorization_endpoint = "https://corp.example/authorize"
token_endpoint = "https://corp.example/token"
client_id = "warden"
client_secret_file = "corp-secret"
scopes = ["files.read"]
env = "CORP_TOKEN"
required = {required}
"#
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn a_user_without_a_required_connection_is_sent_to_a_connect_link_of_their_own() {
    let file = config(true);
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
    let bob = mcp_with(url, &dev.token("bob", "", "1h"));
    let other: Value = bob
        .post(
            &json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},
            "clientInfo":{"name":"t","version":"1"}}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let bobs = other["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .unwrap();
    assert_ne!(bobs, link);
    // Nothing of the client secret anywhere.
    assert!(!dev.warden.logs().contains("corp-client-secret"));
}

#[tokio::test]
async fn an_optional_connection_not_made_leaves_its_variable_out() {
    let file = config(false);
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
    let file = config(true);
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
