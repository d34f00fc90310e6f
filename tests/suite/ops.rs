//! Operating the sidecar: admin listener, metrics, drain.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::http::{Mcp, text};
use crate::support::{Warden, fixture};

fn with_admin() -> crate::support::WardenBuilder {
    Warden::builder(fixture()).args(["--admin-listen", "127.0.0.1:0"])
}

#[tokio::test]
async fn the_admin_listener_serves_probes_and_metrics_and_the_mcp_port_does_not_serve_metrics() {
    let w = with_admin().start();
    assert_eq!(
        reqwest::get(w.admin_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(w.admin_url("/readyz")).await.unwrap().status(),
        200
    );
    assert_eq!(reqwest::get(w.url("/metrics")).await.unwrap().status(), 404);
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(
        text(&m.call_tool(json!(1), "echo", json!({"text": "x"})).await),
        "x"
    );
    m.call_tool(json!(2), "nonexistent-tool", json!({})).await;
    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="echo",error_type=""} 1"#,
        r#"mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="nonexistent-tool",error_type="-32602"} 1"#,
        r#"mcp_server_operation_duration_seconds_count{mcp_method_name="initialize",gen_ai_tool_name="",error_type=""} 1"#,
        "mcp_warden_sessions_active 1",
        "mcp_warden_draining 0",
        "mcp_warden_build_info{",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    // No per-session or per-user label anywhere.
    assert!(!metrics.contains(m.session.as_deref().unwrap()));
}

/// What anyone who can reach the MCP port learns from its probes: alive, ready or not. The
/// sandbox layers and session counts (a map of the deployment) are on the admin listener only.
#[tokio::test]
async fn the_mcp_port_says_only_whether_it_is_ready_and_the_admin_listener_has_the_details() {
    let w = with_admin().args(["--max-sessions", "1"]).start();
    let probe = |url: String| async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let leaks = |body: &str| {
        [
            "sandbox", "session", "seccomp", "landlock", "max_", "draining",
        ]
        .iter()
        .filter(|w| body.to_ascii_lowercase().contains(*w))
        .map(|w| (*w).to_owned())
        .collect::<Vec<_>>()
    };
    assert_eq!(probe(w.url("/healthz")).await, (200, "ok\n".to_owned()));
    let (status, body) = probe(w.url("/readyz")).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // At the cap: not ready, and still nothing more.
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let (status, body) = probe(w.url("/readyz")).await;
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    assert!(leaks(&body).is_empty(), "{body}");
    // The admin listener tells the operator why.
    let (status, body) = probe(w.admin_url("/readyz")).await;
    assert_eq!(status, 503);
    let details: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(details["sessions"], 1, "{details}");
    assert_eq!(details["max_sessions"], 1, "{details}");
    assert!(details["sandbox"]["profile"].is_string(), "{details}");
}

#[tokio::test]
async fn a_crashing_server_is_counted_and_does_not_fail_liveness() {
    let w = with_admin().start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m.call_tool(json!(1), "crash", json!({})).await;
    assert!(r["error"].is_object());
    assert_eq!(
        reqwest::get(w.admin_url("/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The exit is recorded when the reaper sees it.
    let mut text = String::new();
    for _ in 0..100 {
        text = reqwest::get(w.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("mcp_warden_child_exits_total") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(r#"mcp_warden_child_exits_total{reason="failed"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"error_type="server_exited""#), "{text}");
    assert!(text.contains("mcp_warden_sessions_active 0"), "{text}");
}

#[tokio::test]
async fn drain_fails_readiness_at_once_and_serves_existing_sessions() {
    let mut w = with_admin()
        .args(["--drain-timeout", "10s", "--kill-grace", "300ms"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let slow = {
        let m = m.clone();
        tokio::spawn(async move { m.call_tool(json!(1), "slow", json!({"ms": 1500})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w.pid()), Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Readiness fails at once, and the gauge says so.
    let ready = reqwest::get(w.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("mcp_warden_draining 1"));
    // No new session…
    let mut late = Mcp::new(w.mcp_url());
    let r = late
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    assert_eq!(r.status(), 503);
    late.session = None;
    // …but the existing session is still served while its request is in flight.
    assert_eq!(
        text(
            &m.call_tool(json!(2), "echo", json!({"text": "during drain"}))
                .await
        ),
        "during drain"
    );
    assert_eq!(text(&slow.await.unwrap()), "slept 1500 ms");
    let status =
        tokio::task::spawn_blocking(move || w.stop_with(Signal::SIGTERM, Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn trace_context_reaches_the_server_as_the_sidecars_span() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let meta = |r: &serde_json::Value| serde_json::from_str::<serde_json::Value>(&text(r)).unwrap();
    // From the HTTP header.
    let r = m
        .client
        .post(&m.url)
        .headers(m.headers())
        .header("traceparent", PARENT)
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"meta","arguments":{}}}).to_string())
        .send()
        .await
        .unwrap();
    let seen = meta(&crate::support::http::final_response(r).await);
    let tp = seen["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "a new span of the sidecar: {tp}"
    );
    // From params._meta, other _meta fields kept.
    let r = m
        .request(json!(2), "tools/call", json!({"name":"meta","arguments":{},"_meta":{"traceparent": PARENT, "progressToken": "p"}}))
        .await;
    let seen = meta(&r);
    assert!(
        seen["traceparent"]
            .as_str()
            .unwrap()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    );
    assert_eq!(seen["progressToken"], "p");
    // No trace: the message is passed on untouched.
    let r = m.call_tool(json!(3), "meta", json!({})).await;
    assert_eq!(text(&r), "null");
}
