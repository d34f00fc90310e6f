//! Session lifecycle and the sidecar's own: caps, idle reaping, health, graceful shutdown.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::http::{Mcp, text};
use crate::support::proc::{alive, descendants};
use crate::support::{Warden, fixture, until};

#[tokio::test]
async fn the_session_cap_answers_503_with_retry_after() {
    let w = Warden::builder(fixture())
        .args(["--max-sessions", "2"])
        .start();
    let mut a = Mcp::new(w.mcp_url());
    let mut b = Mcp::new(w.mcp_url());
    a.initialize().await;
    b.initialize().await;
    let c = Mcp::new(w.mcp_url());
    let r = c
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let ready = reqwest::get(w.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready at the cap");
    // Ending one frees a slot.
    a.delete().await;
    let mut d = Mcp::new(w.mcp_url());
    d.initialize().await;
}

#[tokio::test]
async fn idle_sessions_are_reaped_with_their_server() {
    let w = Warden::builder(fixture())
        .args(["--session-idle-timeout", "1s"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let pid: i32 = text(&m.call_tool(json!(1), "pid", json!({})).await)
        .parse()
        .unwrap();
    assert!(
        until(Duration::from_secs(10), || (!alive(pid)).then_some(()))
            .await
            .is_some(),
        "idle server not stopped"
    );
    assert_eq!(
        m.post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let w = Warden::start(fixture());
    let h = reqwest::get(w.url("/healthz")).await.unwrap();
    assert_eq!(h.status(), 200);
    let r = reqwest::get(w.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_leaves_no_process_behind() {
    let mut w = Warden::builder(fixture())
        .args(["--kill-grace", "500ms", "--drain-timeout", "5s"])
        .start();
    let warden_pid = w.pid();
    let mut sessions = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let mut m = Mcp::new(w.mcp_url());
        m.initialize().await;
        pids.push(
            text(&m.call_tool(json!(1), "pid", json!({})).await)
                .parse::<i32>()
                .unwrap(),
        );
        // A double-forked daemon that escaped the server's process group.
        pids.push(
            text(&m.call_tool(json!(2), "spawn_daemon", json!({})).await)
                .parse::<i32>()
                .unwrap(),
        );
        sessions.push(m);
    }
    let tree = descendants(warden_pid);
    assert!(
        tree.len() >= 6,
        "expected helpers, servers and daemons under the sidecar: {tree:?}"
    );
    let slow = {
        let m = sessions[0].clone();
        tokio::spawn(async move { m.call_tool(json!(3), "slow", json!({"ms": 700})).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = w.stop_with(Signal::SIGTERM, Duration::from_secs(20));
        (s, w)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {}", status.0);
    // The request in flight finished normally.
    assert_eq!(text(&slow.await.unwrap()), "slept 700 ms");
    for pid in tree.iter().chain(&pids) {
        assert!(!alive(*pid), "process {pid} survived the sidecar");
    }
}

#[tokio::test]
async fn deleting_a_session_kills_daemons_its_server_left() {
    let w = Warden::builder(fixture())
        .args(["--kill-grace", "300ms"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let daemon: i32 = text(&m.call_tool(json!(1), "spawn_daemon", json!({})).await)
        .parse()
        .unwrap();
    let mut other = Mcp::new(w.mcp_url());
    other.initialize().await;
    let other_daemon: i32 = text(&other.call_tool(json!(1), "spawn_daemon", json!({})).await)
        .parse()
        .unwrap();
    assert!(alive(daemon) && alive(other_daemon));
    m.delete().await;
    assert!(
        until(Duration::from_secs(10), || (!alive(daemon)).then_some(()))
            .await
            .is_some(),
        "daemon survived its session"
    );
    assert!(alive(other_daemon), "another session's daemon was killed");
    let _ = other.delete().await;
}
