//! The official client SDKs, unchanged, against real registry servers through the bridge.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Warden, everything, node, py, time_server};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) fn json(out: &str) -> Value {
    serde_json::from_str(out.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {out}"))
}

fn assert_everything(out: &Value) {
    assert_eq!(out["server"], "mcp-servers/everything", "{out}");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "echo",
        "get-sum",
        "trigger-long-running-operation",
        "trigger-sampling-request",
        "trigger-elicitation-request",
    ] {
        assert!(tools.contains(&t), "{t} missing from {tools:?}");
    }
    assert_eq!(out["echo"], "Echo: hello from ts");
    assert!(out["sum"].as_str().unwrap().contains('5'), "{out}");
    assert!(out["resourceCount"].as_u64().unwrap() > 0);
    assert_eq!(out["resourceRead"], true);
    assert!(out["templates"].as_u64().unwrap() > 0);
    assert!(
        out["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "simple-prompt")
    );
    assert!(out["promptMessages"].as_u64().unwrap() > 0);
    // The TypeScript SDK dispatches notifications in a microtask but responses synchronously,
    // so a last progress notification that arrives in the same read as the response can be
    // dropped by the client itself. The wire order (all progress before the response) is
    // asserted by the bridge suite; here the progress seen must be 1, 2[, 3].
    let progress: Vec<u64> = out["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(
        progress.len() >= 2 && progress.iter().copied().eq(1..=progress.len() as u64),
        "progress notifications reached the client: {out}"
    );
    assert!(out["longRunning"].as_str().unwrap().contains("completed"));
    assert!(
        out["sampling"]
            .as_str()
            .unwrap()
            .contains("sampled-by-ts-client"),
        "sampling round trip: {out}"
    );
    assert_eq!(out["seen"]["sampling"], 1);
    assert!(
        out["elicitation"]
            .as_str()
            .unwrap()
            .contains("Ada Lovelace"),
        "elicitation round trip: {out}"
    );
    assert_eq!(out["seen"]["elicitation"], 1);
    assert_eq!(out["ping"], "{}");
}

#[test]
fn typescript_sdk_over_streamable_http_with_server_everything() {
    let w = Warden::start(everything());
    let out = json(&node(
        "client.mjs",
        &[&w.mcp_url(), "streamable", "everything"],
        CLIENT_TIMEOUT,
    ));
    assert_everything(&out);
    assert_eq!(out["protocolVersion"], "2025-11-25");
    assert!(out["sessionId"].as_str().is_some_and(|s| s.len() >= 22));
    // server-everything asks for roots right after initialization: that request came over the
    // GET stream and was answered by the client.
    assert!(out["seen"]["roots"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["transportErrors"], serde_json::json!([]), "{out}");
    // The session's DELETE ended it.
    w.wait_log("session ended", Duration::from_secs(10));
}

#[test]
fn typescript_sdk_over_legacy_sse_with_server_everything() {
    let w = Warden::start(everything());
    let out = json(&node(
        "client.mjs",
        &[&w.url("/sse"), "sse", "everything"],
        CLIENT_TIMEOUT,
    ));
    assert_everything(&out);
}

#[test]
fn typescript_sdk_with_mcp_server_time() {
    let w = Warden::start(time_server());
    let out = json(&node(
        "client.mjs",
        &[&w.mcp_url(), "streamable", "time"],
        CLIENT_TIMEOUT,
    ));
    assert_eq!(
        out["tools"],
        serde_json::json!(["convert_time", "get_current_time"])
    );
    assert_eq!(out["time"]["timezone"], "UTC");
}

#[test]
fn python_sdk_over_streamable_http_with_mcp_server_time() {
    let w = Warden::start(time_server());
    let out = json(&py(
        "client.py",
        &[&w.mcp_url(), "streamable", "time"],
        CLIENT_TIMEOUT,
    ));
    assert_eq!(out["server"], "mcp-time");
    // mcp-server-time speaks 2026-07-28 itself: the SDK's probe reaches it (through a pooled
    // server, untranslated) and the SDK adopts the era, though it declares sampling.
    assert_eq!(out["protocolVersion"], "2026-07-28");
    assert_eq!(
        out["tools"],
        serde_json::json!(["convert_time", "get_current_time"])
    );
    assert_eq!(out["time"]["timezone"], "UTC");
    assert_eq!(out["convert"]["target"]["timezone"], "Asia/Tokyo");
    // Logged before the answer; read from the sidecar's output as it arrives.
    w.wait_log("speaks 2026-07-28 itself", Duration::from_secs(10));
}

#[test]
fn python_sdk_over_streamable_http_with_server_everything_sampling() {
    let w = Warden::start(everything());
    let out = json(&py(
        "client.py",
        &[&w.mcp_url(), "streamable", "everything"],
        CLIENT_TIMEOUT,
    ));
    assert_eq!(out["echo"], "Echo: hello from python");
    assert!(
        out["sampling"]
            .as_str()
            .unwrap()
            .contains("sampled-by-py-client"),
        "{out}"
    );
    assert_eq!(out["seen"]["sampling"], 1);
}

#[test]
fn python_sdk_over_legacy_sse_with_mcp_server_time() {
    let w = Warden::start(time_server());
    let out = json(&py(
        "client.py",
        &[&w.url("/sse"), "sse", "time"],
        CLIENT_TIMEOUT,
    ));
    assert_eq!(out["server"], "mcp-time");
    assert_eq!(out["time"]["timezone"], "UTC");
}
