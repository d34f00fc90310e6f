//! Inline policy against the real server-everything, driven by the official TypeScript SDK
//! client and by raw HTTP: every rule kind, what reaches the server, what comes back, and
//! the audit log with its verification.
//!
//! What reached the server is read from a copy of its stdin (`tee` in front of it), so "never
//! reached the child" is observed, not inferred.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::{ACCEPT_BOTH, Mcp, final_response, text};
use crate::support::{Warden, everything, node, warden_bin};

const SECRET: &str = "wsk_live_9f8e7d6c5b4a3210";

/// A fresh directory for one test's files.
pub(super) fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("warden-policy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// server-everything with a copy of everything it reads in `log`.
fn teed_everything(log: &Path) -> Vec<String> {
    let cmd = everything()
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        "sh".into(),
        "-c".into(),
        format!("tee -a '{}' | exec {cmd}", log.display()),
    ]
}

/// `--env-file` for [`SECRET`]: a credential injected into every session's server, kept in
/// a directory of its own (the sidecar refuses secret files the server could read).
fn secret_args(dir: &Path) -> Vec<String> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let file = keys.join("secret");
    std::fs::write(&file, SECRET).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    vec![
        "--env-file".into(),
        format!("WARDEN_TEST_SECRET={}", file.display()),
    ]
}

fn start(dir: &Path, config: &str, server: Vec<String>) -> Warden {
    let path = dir.join("warden.toml");
    std::fs::write(&path, config).unwrap();
    Warden::builder(server)
        .args(["--config", path.to_str().unwrap()])
        .args(secret_args(dir))
        .start()
}

/// server-everything behind `tee`, which records its stdin in `stdin`. The copy is the test's
/// instrument, not the system under test: it runs without a sandbox profile (a shell and a
/// log outside the work dir), and so without injected secrets.
fn start_teed(dir: &Path, config: &str, stdin: &Path) -> Warden {
    let path = dir.join("warden.toml");
    std::fs::write(&path, config).unwrap();
    Warden::builder(teed_everything(stdin))
        .args(["--config", path.to_str().unwrap()])
        .args(["--sandbox", "none"])
        .start()
}

/// Runs `steps` with the TypeScript SDK; one result per step.
fn sdk(w: &Warden, transport: &str, steps: Value) -> Vec<Value> {
    let url = if transport == "sse" {
        w.url("/sse")
    } else {
        w.mcp_url()
    };
    let out = node(
        "policy.mjs",
        &[&url, transport, &steps.to_string()],
        Duration::from_secs(60),
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array().unwrap().clone()
}

fn ok_text(step: &Value) -> String {
    let r = step
        .get("ok")
        .unwrap_or_else(|| panic!("step failed: {step}"));
    text(&json!({ "result": r }))
}

fn err(step: &Value) -> &Value {
    step.get("error")
        .unwrap_or_else(|| panic!("step succeeded: {step}"))
}

const TOOLS: &str = r#"
[[rule]]
name = "everyday"
tools = ["echo", "get-sum"]

[[rule]]
name = "no-env"
effect = "deny"
tools = ["get-env"]
message = "the environment is off limits"
"#;

#[test]
fn denied_calls_never_reach_the_server_and_lists_show_only_what_is_allowed() {
    let d = dir("deny");
    let stdin = d.join("stdin.log");
    let w = start_teed(&d, TOOLS, &stdin);
    let r = sdk(
        &w,
        "streamable",
        json!([
            {"op":"listTools"},
            {"op":"call","name":"get-env"},
            {"op":"call","name":"get-tiny-image"},
            {"op":"call","name":"echo","args":{"message":"after the denials"}},
        ]),
    );
    assert_eq!(
        r[0]["ok"],
        json!(["echo", "get-sum"]),
        "list filtered: {}",
        r[0]
    );
    let denied = err(&r[1]);
    assert_eq!(denied["code"], -32003, "{denied}");
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("the environment is off limits")
    );
    assert_eq!(denied["data"]["reason"], "denied_by_rule");
    assert_eq!(
        err(&r[2])["data"]["reason"],
        "not_permitted",
        "default deny"
    );
    assert_eq!(ok_text(&r[3]), "Echo: after the denials");
    // The server answered the echo, so it has read everything sent before it.
    let seen = std::fs::read_to_string(&stdin).unwrap();
    assert!(seen.contains("after the denials"), "{seen}");
    assert!(
        !seen.contains("get-env") && !seen.contains("get-tiny-image"),
        "a denied call reached the server:\n{seen}"
    );
}

#[test]
fn argument_rules_block_credentials_and_patterns_before_the_server() {
    let d = dir("args");
    let stdin = d.join("stdin.log");
    let config = r#"
[[rule]]
name = "echo"
tools = ["echo"]

[[argument]]
name = "no-credentials"
tools = ["*"]
detectors = ["secrets"]

[[argument]]
name = "no-cards"
tools = ["echo"]
pointers = ["/message"]
detectors = ["credit_card"]
"#;
    let w = start_teed(&d, config, &stdin);
    let r = sdk(
        &w,
        "streamable",
        json!([
            {"op":"call","name":"echo","args":{"message":"key AKIAIOSFODNN7EXAMPLE"}},
            {"op":"call","name":"echo","args":{"message":"card 4111 1111 1111 1111"}},
            {"op":"call","name":"echo","args":{"message":"card 4111 1111 1111 1112"}},
        ]),
    );
    assert_eq!(err(&r[0])["data"]["reason"], "argument_blocked");
    assert_eq!(err(&r[1])["data"]["reason"], "argument_blocked");
    assert_eq!(
        ok_text(&r[2]),
        "Echo: card 4111 1111 1111 1112",
        "fails Luhn: not a card"
    );
    let seen = std::fs::read_to_string(&stdin).unwrap();
    assert!(
        !seen.contains("AKIAIOSFODNN7EXAMPLE") && !seen.contains("1111 1111 1111 1111"),
        "{seen}"
    );
}

#[test]
fn a_sequence_rule_denies_after_a_marked_call_in_the_same_session_only() {
    let d = dir("sequence");
    let config = r#"
[policy]
default = "allow"

[[mark]]
name = "secrets-touched"
tools = ["echo"]
when = 'args.message.startsWith("/secrets/")'
set = "secrets"

[[rule]]
name = "no-env-after-secrets"
effect = "deny"
tools = ["get-env"]
when = '"secrets" in session.marks'
"#;
    let w = start(&d, config, everything());
    let r = sdk(
        &w,
        "streamable",
        json!([
            {"op":"call","name":"get-env"},
            {"op":"call","name":"echo","args":{"message":"/home/readme"}},
            {"op":"call","name":"get-env"},
            {"op":"call","name":"echo","args":{"message":"/secrets/db-password"}},
            {"op":"call","name":"get-env"},
            {"op":"call","name":"get-sum","args":{"a":1,"b":2}},
        ]),
    );
    assert!(
        r[0].get("ok").is_some() && r[2].get("ok").is_some(),
        "{r:?}"
    );
    assert_eq!(ok_text(&r[3]), "Echo: /secrets/db-password");
    assert_eq!(err(&r[4])["data"]["reason"], "denied_by_rule");
    assert!(r[5].get("ok").is_some());
    // A new session starts clean.
    let r = sdk(&w, "streamable", json!([{"op":"call","name":"get-env"}]));
    assert!(r[0].get("ok").is_some(), "{r:?}");
}

#[test]
fn an_injected_credential_never_comes_back_on_either_transport() {
    let d = dir("secret");
    let config = "[policy]\ndefault = \"allow\"\n";
    let w = start(&d, config, everything());
    for transport in ["streamable", "sse"] {
        let r = sdk(
            &w,
            transport,
            json!([
                {"op":"call","name":"get-env"},
                {"op":"call","name":"echo","args":{"message":format!("leak {SECRET} now")}},
            ]),
        );
        let env = ok_text(&r[0]);
        assert!(
            env.contains("WARDEN_TEST_SECRET"),
            "the server does hold it: {env}"
        );
        assert!(
            !env.contains(SECRET),
            "{transport}: injected secret leaked:\n{env}"
        );
        assert!(env.contains("[REDACTED:injected_secret]"));
        assert_eq!(ok_text(&r[1]), "Echo: leak [REDACTED:injected_secret] now");
    }
}

#[test]
fn injected_credentials_are_redacted_even_without_a_config_file() {
    let d = dir("secret-no-config");
    let w = Warden::builder(everything()).args(secret_args(&d)).start();
    let r = sdk(&w, "streamable", json!([{"op":"call","name":"get-env"}]));
    let env = ok_text(&r[0]);
    assert!(
        env.contains("WARDEN_TEST_SECRET") && !env.contains(SECRET),
        "{env}"
    );
}

#[test]
fn output_redaction_is_targeted_and_counted_in_the_audit_log() {
    let d = dir("redact");
    let config = r#"
[policy]
default = "allow"

[[redact]]
name = "mail"
tools = ["echo"]
detectors = ["email"]

[[redact]]
name = "conditions"
tools = ["get-structured-content"]
pointers = ["/structuredContent/conditions"]
replacement = "[hidden]"

[audit]
output = "audit.jsonl"
"#;
    let mut w = start(&d, config, everything());
    let r = sdk(
        &w,
        "streamable",
        json!([
            {"op":"call","name":"echo","args":{"message":"write to bob@example.com"}},
            {"op":"call","name":"get-sum","args":{"a":1,"b":2}},
            {"op":"call","name":"get-structured-content","args":{"location":"New York"}},
        ]),
    );
    assert_eq!(ok_text(&r[0]), "Echo: write to [REDACTED:email]");
    assert_eq!(ok_text(&r[1]), "The sum of 1 and 2 is 3.");
    assert_eq!(
        r[2]["ok"]["structuredContent"]["conditions"], "[hidden]",
        "{}",
        r[2]
    );
    assert!(r[2]["ok"]["structuredContent"]["temperature"].is_number());
    w.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    let log = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let echo = records
        .iter()
        .find(|r| r["event"] == "call" && r["name"] == "echo")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(
        echo["redactions"],
        json!([{"rule":"mail","what":"email","count":1}])
    );
    assert!(echo["args_hash"].as_str().is_some_and(|h| h.len() == 64));
    assert!(
        !log.contains("bob@example.com"),
        "raw arguments never reach the audit log"
    );
    let sum = records.iter().find(|r| r["name"] == "get-sum").unwrap();
    assert!(
        sum.get("redactions").is_none(),
        "nothing redacted where no rule applies"
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after_and_json_rpc_errors_on_streams() {
    let d = dir("rate");
    let config = r#"
[policy]
default = "allow"

[[rate_limit]]
name = "echo-budget"
per = "principal"
tools = ["echo"]
rate = "2/min"
"#;
    let w = start(&d, config, everything());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut m = Mcp::new(w.mcp_url());
        m.initialize().await;
        for i in 0..2 {
            let r = m.call_tool(json!(i), "echo", json!({"message": "x"})).await;
            assert_eq!(text(&r), "Echo: x");
        }
        let resp = m
            .post(&json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}))
            .await;
        assert_eq!(resp.status(), 429);
        let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32029);
        assert_eq!(body["id"], 9);
        // Other tools are not limited.
        let r = m.call_tool(json!(10), "get-sum", json!({"a": 1, "b": 1})).await;
        assert_eq!(text(&r), "The sum of 1 and 1 is 2.");
    });
    // The legacy transport answers on its stream: the SDK sees a JSON-RPC error.
    let r = sdk(
        &w,
        "sse",
        json!([{"op":"call","name":"echo","args":{"message":"y"}}]),
    );
    assert_eq!(err(&r[0])["code"], -32029, "{r:?}");
    assert!(err(&r[0])["data"]["retryAfter"].as_u64().unwrap() >= 1);
}

#[test]
fn resources_and_prompts_follow_their_rules_and_lists() {
    let d = dir("resources");
    let config = r#"
[[rule]]
name = "static-docs"
resources = ["demo://resource/static/*"]

[[rule]]
name = "simple-prompt"
prompts = ["simple-prompt"]
"#;
    let w = start(&d, config, everything());
    let r = sdk(
        &w,
        "streamable",
        json!([
            {"op":"listResources"},
            {"op":"listPrompts"},
            {"op":"prompt","name":"simple-prompt"},
            {"op":"prompt","name":"args-prompt","args":{"city":"Paris"}},
            {"op":"read","uri":"demo://resource/dynamic/text/1"},
        ]),
    );
    let uris = r[0]["ok"].as_array().unwrap();
    assert!(!uris.is_empty(), "{r:?}");
    assert!(
        uris.iter()
            .all(|u| u.as_str().unwrap().starts_with("demo://resource/static/")),
        "{uris:?}"
    );
    assert_eq!(r[1]["ok"], json!(["simple-prompt"]));
    assert!(r[2].get("ok").is_some(), "{}", r[2]);
    assert_eq!(err(&r[3])["data"]["reason"], "not_permitted");
    assert_eq!(err(&r[4])["data"]["reason"], "not_permitted");
    let first = uris[0].as_str().unwrap();
    let r = sdk(&w, "streamable", json!([{"op":"read","uri": first}]));
    assert!(r[0].get("ok").is_some(), "{r:?}");
}

fn verify(file: &Path) -> (bool, String) {
    let out = Command::new(warden_bin())
        .args(["audit", "verify", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_audit_log_records_who_did_what_and_verify_catches_tampering() {
    let d = dir("audit");
    let config = format!("{TOOLS}\n[audit]\noutput = \"audit.jsonl\"\n");
    let mut w = start(&d, &config, everything());
    let r = sdk(
        &w,
        "streamable",
        json!([
            {"op":"call","name":"echo","args":{"message":format!("token {SECRET}")}},
            {"op":"call","name":"get-env"},
        ]),
    );
    assert!(r[0].get("ok").is_some() && r[1].get("error").is_some());
    w.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    let path = d.join("audit.jsonl");
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(!log.contains(SECRET), "no secret in the audit log:\n{log}");
    let events: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for want in [
        "audit_opened",
        "session_start",
        "call",
        "denied",
        "session_end",
        "audit_closed",
    ] {
        assert!(
            events.iter().any(|e| e == want),
            "no {want} record in {events:?}"
        );
    }
    let call: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "call")
        .unwrap();
    assert_eq!(
        (
            call["sub"].as_str(),
            call["name"].as_str(),
            call["outcome"].as_str()
        ),
        (Some("anonymous"), Some("echo"), Some("ok"))
    );
    assert_eq!(call["redactions"][0]["what"], "injected_secret");
    let (ok, out) = verify(&path);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} records", events.len())), "{out}");

    let lines: Vec<&str> = log.lines().collect();
    let tampered = |name: &str, lines: Vec<String>| {
        let p = d.join(name);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        verify(&p)
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut modified = owned(&lines);
    modified[2] = modified[2].replace("\"anonymous\"", "\"somebody-else\"");
    let (ok, out) = tampered("modified.jsonl", modified);
    assert!(
        !ok && out.contains("line 3") && out.contains("modified"),
        "{out}"
    );
    let mut deleted = owned(&lines);
    deleted.remove(3);
    let (ok, out) = tampered("deleted.jsonl", deleted);
    assert!(!ok && out.contains("deleted"), "{out}");
    let mut inserted = owned(&lines);
    inserted.insert(4, lines[2].to_owned());
    let (ok, out) = tampered("inserted.jsonl", inserted);
    assert!(!ok && out.contains("line 5"), "{out}");
}

#[test]
fn configs_are_validated_with_locations_and_a_bad_one_stops_the_sidecar() {
    let d = dir("check");
    let example = crate::support::repo().join("examples/warden.toml");
    let out = Command::new(warden_bin())
        .args(["check-config", example.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"x\"\ntools = [\"echo\"]\nwhen = 'args.message.size() >'\n",
    )
    .unwrap();
    let out = Command::new(warden_bin())
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:8: [[rule]] \"x\": when:"), "{err}");
    let out = Command::new(warden_bin())
        .args([
            "wrap",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--config",
            bad.to_str().unwrap(),
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:4:8"));
}

#[tokio::test]
async fn raw_refusals_keep_the_request_id_and_batches_answer_per_item() {
    let d = dir("raw");
    let w = start(&d, TOOLS, everything());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m.call_tool(json!("a-1"), "get-env", json!({})).await;
    assert_eq!(r["id"], "a-1");
    assert_eq!(r["error"]["code"], -32003);
    // Unknown-method requests are not governed; a tools/call without a name is refused.
    let resp = m
        .post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{}}))
        .await;
    assert_eq!(resp.status(), 200);
    let body = final_response(resp).await;
    assert_eq!(body["error"]["code"], -32602, "{body}");
    let _ = ACCEPT_BOTH;
}

/// A sidecar with the development issuer around server-everything, with `config`.
pub(super) fn dev_warden(d: &Path, config: &str) -> Warden {
    let path = d.join("warden.toml");
    std::fs::write(&path, config).unwrap();
    Warden::builder(everything())
        .with_auth()
        .args([
            "--dev",
            "--dev-key-file",
            d.join("dev-key.pem").to_str().unwrap(),
        ])
        .args(["--config", path.to_str().unwrap()])
        .start()
}

pub(super) fn dev_token(d: &Path, w: &Warden, sub: &str, scope: &str) -> String {
    let out = Command::new(warden_bin())
        .args([
            "token",
            "--dev-key-file",
            d.join("dev-key.pem").to_str().unwrap(),
        ])
        .args([
            "--listen",
            &w.addr.to_string(),
            "--sub",
            sub,
            "--scope",
            scope,
            "--ttl",
            "10m",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn missing_scopes_get_a_step_up_challenge_and_the_stepped_up_token_continues_the_session() {
    let d = dir("step-up");
    let config = r#"
[[rule]]
name = "everyday"
tools = ["echo"]
scopes = ["mcp:tools"]

[[rule]]
name = "environment"
tools = ["get-env"]
scopes = ["mcp:tools", "mcp:admin"]

[[rule]]
name = "no-sums-for-mallory"
effect = "deny"
tools = ["get-sum"]
when = 'claims.sub == "mallory"'

[[rule]]
name = "sums"
tools = ["get-sum"]

[audit]
output = "audit.jsonl"
"#;
    let w = dev_warden(&d, config);
    let basic = dev_token(&d, &w, "alice", "mcp:tools");
    let mut m = crate::suite::auth::mcp_with(w.mcp_url(), &basic);
    m.initialize().await;
    let list = m.request(json!(1), "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "get-sum"], "what alice may call now");
    assert_eq!(
        text(&m.call_tool(json!(2), "echo", json!({"message":"hi"})).await),
        "Echo: hi"
    );
    let resp = m
        .post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-env","arguments":{}}}))
        .await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            w.url("/.well-known/oauth-protected-resource/mcp")
        )),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp:admin mcp:tools\""),
        "every scope the call needs: {challenge}"
    );
    // The stepped-up token of the same subject continues the same session.
    let admin = dev_token(&d, &w, "alice", "mcp:tools mcp:admin");
    let mut m2 = crate::suite::auth::mcp_with(w.mcp_url(), &admin);
    m2.session = m.session.clone();
    let env = text(&m2.call_tool(json!(4), "get-env", json!({})).await);
    assert!(env.contains("PATH"), "{env}");
    let list = m2.request(json!(5), "tools/list", json!({})).await;
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 3);
    // Claims drive conditions.
    let mallory = dev_token(&d, &w, "mallory", "mcp:tools");
    let mut m3 = crate::suite::auth::mcp_with(w.mcp_url(), &mallory);
    m3.initialize().await;
    let r = m3
        .call_tool(json!(6), "get-sum", json!({"a": 1, "b": 2}))
        .await;
    assert_eq!(r["error"]["data"]["reason"], "denied_by_rule", "{r}");
    assert_eq!(
        text(
            &m.call_tool(json!(7), "get-sum", json!({"a": 1, "b": 2}))
                .await
        ),
        "The sum of 1 and 2 is 3."
    );
    // No token: an auth failure in the audit log, and no token anywhere in it.
    let r = reqwest::Client::new()
        .post(w.mcp_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let log = crate::support::eventually(Duration::from_secs(5), || {
        let log = std::fs::read_to_string(d.join("audit.jsonl")).ok()?;
        log.contains("\"auth_failure\"").then_some(log)
    })
    .expect("auth failure recorded");
    let denied: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "denied" && r["decision"] == "insufficient_scope")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(denied["sub"], "alice");
    assert_eq!(denied["scopes"], json!(["mcp:admin", "mcp:tools"]));
    for t in [&basic, &admin, &mallory] {
        assert!(!log.contains(t.as_str()), "a token in the audit log");
    }
}

/// What the fixture server has read so far: one entry per request or notification, with
/// its method, id and, for calls, tool name.
async fn received(m: &Mcp, id: Value) -> Vec<Value> {
    let r = m.call_tool(id, "received", json!({})).await;
    serde_json::from_str(&text(&r)).unwrap_or_else(|e| panic!("{e}: {r}"))
}

/// Whether the fixture ran the tool `name`.
fn ran(seen: &[Value], name: &str) -> bool {
    seen.iter()
        .any(|m| m["method"] == "tools/call" && m["name"] == name)
}

const NO_ENV: &str = r#"
[policy]
default = "allow"

[[rule]]
name = "no-env"
effect = "deny"
tools = ["env"]
"#;

#[tokio::test]
async fn a_call_without_an_id_is_refused_on_every_path_and_never_reaches_the_server() {
    let d = dir("no-id");
    let w = start(&d, NO_ENV, crate::support::fixture());
    let smuggled =
        json!({"jsonrpc":"2.0","method":"tools/call","params":{"name":"env","arguments":{}}});
    let ping = json!({"jsonrpc":"2.0","method":"ping"});

    // Streamable HTTP: alone, and in a 2025-03-26 batch (refused whole, nothing delivered).
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    for body in [&smuggled, &ping] {
        let r = m.post(body).await;
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("notifications/"),
            "{answer}"
        );
    }
    let mut old = Mcp::new(w.mcp_url());
    old.version = "2025-03-26".into();
    old.initialize().await;
    let batch = json!([
        {"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"A"}}},
        smuggled,
    ]);
    assert_eq!(old.post(&batch).await.status(), 400);

    // Legacy HTTP+SSE: alone and in a batch.
    let mut l = super::legacy::Legacy::connect(&w).await;
    l.request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    assert_eq!(l.post(&smuggled).await.status(), 400);
    assert_eq!(l.post(&json!([smuggled])).await.status(), 400);
    let seen = l
        .request(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"received","arguments":{}}}))
        .await;
    let seen: Vec<Value> = serde_json::from_str(&text(&seen)).unwrap();
    assert!(!ran(&seen, "env"), "legacy: reached the server: {seen:?}");

    for (who, m) in [("streamable", &m), ("batch", &old)] {
        let seen = received(m, json!("r")).await;
        assert!(!ran(&seen, "env"), "{who}: reached the server: {seen:?}");
        assert!(
            !ran(&seen, "echo"),
            "{who}: a refused batch delivered part of itself: {seen:?}"
        );
        assert!(
            seen.iter().all(|s| s["method"] != "ping"),
            "{who}: {seen:?}"
        );
    }
    // Real notifications still pass.
    let r = m
        .post(&json!({"jsonrpc":"2.0","method":"notifications/roots/list_changed"}))
        .await;
    assert_eq!(r.status(), 202);
    let seen = received(&m, json!("r2")).await;
    assert!(
        seen.iter()
            .any(|s| s["method"] == "notifications/roots/list_changed"),
        "{seen:?}"
    );
}

/// Go's encoding/json matches keys case-insensitively (Unicode folding) and takes the last of
/// several: `"method":"ping","Method":"tools/call"` is a ping to the policy and a tool call to
/// such a server. Keys that could read differently are refused before anything is decided.
#[tokio::test]
async fn keys_a_server_could_read_in_another_case_are_refused_on_every_path() {
    let d = dir("case-keys");
    let w = start(&d, NO_ENV, crate::support::fixture());
    let smuggled = [
        json!({"jsonrpc":"2.0","id":11,"method":"ping","Method":"tools/call","params":{"name":"env","arguments":{}}}),
        json!({"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","Name":"env","arguments":{}}}),
        json!({"jsonrpc":"2.0","id":13,"method":"ping","paramſ":{"name":"env"},"METHOD":"tools/call"}),
        json!({"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","TEXT":"DROP TABLE"}}}),
    ];
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    for body in &smuggled {
        let r = m.post(body).await;
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32600, "{answer}");
    }
    let mut l = super::legacy::Legacy::connect(&w).await;
    l.request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    for body in &smuggled {
        assert_eq!(l.post(body).await.status(), 400, "{body}");
    }
    let seen = received(&m, json!("r")).await;
    assert!(!ran(&seen, "env"), "reached the server: {seen:?}");
    assert!(
        seen.iter().all(|s| s["method"] != "ping"),
        "part of a refused message reached the server: {seen:?}"
    );
    // The protocol's own spelling, with free keys in any case, still passes.
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"echo","arguments":{"Text":"A"}}}))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn strings_that_denote_no_text_neither_bypass_rules_nor_hide_output() {
    let d = dir("surrogates");
    let config = r#"
[policy]
default = "allow"

[[rule]]
name = "no-secrets-dir"
effect = "deny"
tools = ["echo"]
when = 'has(args.path) && args.path.startsWith("/secrets")'

[[argument]]
name = "no-drop"
tools = ["*"]
patterns = ['(?i)drop\s+table']

[[redact]]
name = "mail"
tools = ["raw"]
detectors = ["email"]
"#;
    let w = start(&d, config, crate::support::fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    // A client's lone surrogate, in a value or a key, on every path: refused at the door.
    let calls = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/secrets/k","note":"\ud800"}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"DROP TABLE users \udc00"}}}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"\ud83d":"DROP TABLE users"}}}"#,
    ];
    for body in calls {
        let r = m
            .client
            .post(&m.url)
            .headers(m.headers())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32700, "{answer}");
    }
    let mut l = super::legacy::Legacy::connect(&w).await;
    l.request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    let r = l
        .client
        .post(w.url(&l.endpoint))
        .header("content-type", "application/json")
        .body(calls[1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Baselines: the same calls without the escape meet their rules.
    let r = m
        .call_tool(json!(4), "echo", json!({"path":"/secrets/k"}))
        .await;
    assert_eq!(r["error"]["data"]["reason"], "denied_by_rule", "{r}");
    let r = m
        .call_tool(json!(5), "echo", json!({"text":"DROP TABLE users"}))
        .await;
    assert_eq!(r["error"]["data"]["reason"], "argument_blocked", "{r}");
    let seen = received(&m, json!(6)).await;
    assert!(!ran(&seen, "echo"), "reached the server: {seen:?}");

    // The server's: a lone surrogate beside an address and the injected credential.
    let line = r#"{"jsonrpc":"2.0","id":$ID,"result":{"content":[{"type":"text","text":"\ud83d mail bob@example.com key $VAR \udc00"}]}}"#;
    let r = m
        .call_tool(
            json!(7),
            "raw",
            json!({"line": line, "var": "WARDEN_TEST_SECRET", "answer": false}),
        )
        .await;
    assert_eq!(r["id"], 7, "{r}");
    let out = text(&r);
    assert!(out.contains("mail [REDACTED:email]"), "{out}");
    assert!(out.contains("key [REDACTED:injected_secret]"), "{out}");
    assert!(!r.to_string().contains(SECRET), "{r}");
}

/// Every message of a POST's answer (one JSON body, or each SSE event), as raw text.
async fn answer_texts(resp: reqwest::Response) -> Vec<String> {
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    if sse {
        crate::support::http::sse_events(resp)
            .await
            .into_iter()
            .map(|e| e.data)
            .filter(|d| !d.is_empty())
            .collect()
    } else {
        vec![resp.text().await.unwrap()]
    }
}

#[tokio::test]
async fn an_injected_credential_is_redacted_wherever_a_server_writes_it() {
    let d = dir("secret-anywhere");
    let w = start(
        &d,
        "[policy]\ndefault = \"allow\"\n",
        crate::support::fixture(),
    );
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let escaped: String = SECRET
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let lines = [
        // An extra top-level member of a response, raw and escaped.
        (
            r#"{"jsonrpc":"2.0","id":$ID,"result":{"content":[]},"leak":"$VAR","also":"$UVAR"}"#,
            false,
        ),
        // A top-level key.
        (
            r#"{"jsonrpc":"2.0","id":$ID,"result":{"content":[]},"$VAR":1}"#,
            false,
        ),
        // A notification's method, and a server request's id.
        (r#"{"jsonrpc":"2.0","method":"notifications/$VAR"}"#, true),
        (
            r#"{"jsonrpc":"2.0","id":"$VAR","method":"roots/list"}"#,
            true,
        ),
        // JSON inside a string, escaped once more.
        (
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"{\"token\":\"$UVAR\"}"}}"#,
            true,
        ),
    ];
    for (i, (line, answer)) in lines.iter().enumerate() {
        let resp = m
            .post(&json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{
                "name":"raw","arguments":{"line":line,"var":"WARDEN_TEST_SECRET","answer":answer}}}))
            .await;
        assert_eq!(resp.status(), 200);
        let texts = answer_texts(resp).await;
        let all = texts.join("\n");
        assert!(
            texts.iter().any(|t| t.contains("\"result\"")),
            "{line}: no answer: {all}"
        );
        assert!(!all.contains(SECRET), "{line}: leaked: {all}");
        assert!(!all.contains(&escaped), "{line}: leaked escaped: {all}");
        for t in &texts {
            let v: Value = serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}: {t}"));
            assert!(
                !v.to_string().contains(SECRET),
                "{line}: leaked once decoded: {t}"
            );
        }
    }
    // The server's stderr, raw and escaped, reaches the logs redacted.
    for line in ["stderr token=$VAR end", r#"stderr json {"t":"$UVAR"} end"#] {
        let r = m
            .call_tool(
                json!("e"),
                "raw",
                json!({"line": line, "var": "WARDEN_TEST_SECRET", "stderr": true}),
            )
            .await;
        assert_eq!(text(&r), "done");
    }
    let logs = w.wait_log("stderr json", Duration::from_secs(10));
    assert!(
        logs.contains("stderr token=[REDACTED:injected_secret] end"),
        "{logs}"
    );
    assert!(!logs.contains(SECRET) && !logs.contains(&escaped), "{logs}");
}

#[tokio::test]
async fn completions_and_resource_templates_follow_the_rules_of_what_they_name() {
    let d = dir("completion");
    let stdin = d.join("stdin.log");
    let config = r#"
[[rule]]
name = "simple-prompt"
prompts = ["simple-prompt"]

[[rule]]
name = "text-resources"
resources = ["demo://resource/dynamic/text/*"]
"#;
    let w = start_teed(&d, config, &stdin);
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .request(
            json!(1),
            "completion/complete",
            json!({"ref":{"type":"ref/prompt","name":"args-prompt"},"argument":{"name":"city","value":"Pa"}}),
        )
        .await;
    assert_eq!(r["error"]["data"]["reason"], "not_permitted", "{r}");
    let r = m
        .request(
            json!(2),
            "completion/complete",
            json!({"ref":{"type":"ref/prompt","name":"simple-prompt"},"argument":{"name":"x","value":"marker-allowed"}}),
        )
        .await;
    assert!(
        r.get("error").is_none_or(|e| e.get("data").is_none()),
        "{r}"
    );
    // The server lists text and blob templates; this caller may read text resources only.
    let r = m
        .request(json!(3), "resources/templates/list", json!({}))
        .await;
    let templates: Vec<&str> = r["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uriTemplate"].as_str().unwrap())
        .collect();
    assert_eq!(
        templates,
        ["demo://resource/dynamic/text/{resourceId}"],
        "{r}"
    );
    let seen = std::fs::read_to_string(&stdin).unwrap();
    assert!(seen.contains("marker-allowed"), "{seen}");
    assert!(
        !seen.contains("args-prompt"),
        "a denied completion reached the server:\n{seen}"
    );
}
