//! What clients see when the wrapped server misbehaves.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::http::{Mcp, text};
use crate::support::proc::{alive, rss_kib};
use crate::support::{Warden, fixture, until};

/// Waits until the sidecar has no process left under it (servers and their supervisors).
async fn no_server_left(w: &Warden) {
    let left = until(Duration::from_secs(10), || {
        crate::support::proc::descendants(w.pid())
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        left.is_some(),
        "processes left: {:?}",
        crate::support::proc::descendants(w.pid())
    );
}

fn fixture_with(flags: &[&str]) -> Vec<String> {
    let mut f = fixture();
    f.extend(flags.iter().map(|s| s.to_string()));
    f
}

#[tokio::test]
async fn a_server_killed_mid_request_answers_with_an_error_at_once_and_the_session_ends() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let pid: i32 = text(&m.call_tool(json!(1), "pid", json!({})).await)
        .parse()
        .unwrap();
    let m2 = m.clone();
    let pending = tokio::spawn(async move { m2.call_tool(json!(2), "hang", json!({})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("no answer")
        .unwrap();
    let answered = killed.elapsed();
    assert_eq!(r["id"], 2);
    assert!(
        r["error"]["message"].as_str().unwrap().contains("exited"),
        "{r}"
    );
    eprintln!("kill -9 → error after {answered:?}");
    // 404 afterwards, for every method.
    let after = m
        .post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}))
        .await;
    assert_eq!(after.status(), 404);
    assert!(
        w.wait_log("MCP server exited", Duration::from_secs(5))
            .contains("SIGKILL")
    );
    no_server_left(&w).await;
}

#[tokio::test]
async fn a_crash_fails_every_pending_request() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let mut pending = Vec::new();
    for i in 0..3 {
        let m = m.clone();
        pending.push(tokio::spawn(async move {
            m.call_tool(json!(i), "hang", json!({})).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crash = m.call_tool(json!("c"), "crash", json!({})).await;
    assert!(crash["error"].is_object());
    for p in pending {
        let r = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .unwrap()
            .unwrap();
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exit code 3"),
            "{r}"
        );
    }
    no_server_left(&w).await;
}

#[tokio::test]
async fn a_server_that_dies_mid_line_answers_with_an_error_not_the_fragment() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        m.call_tool(json!(7), "partial_then_die", json!({})),
    )
    .await
    .expect("an answer within seconds");
    assert_eq!(r["id"], 7, "{r}");
    assert!(
        r["result"].is_null(),
        "the fragment reached the client: {r}"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exit code 4"),
        "{r}"
    );
    let log = w.wait_log("ended without a newline", Duration::from_secs(5));
    assert!(log.contains("bytes"), "{log}");
    no_server_left(&w).await;
}

#[tokio::test]
async fn a_hanging_request_times_out_and_is_cancelled_at_the_server() {
    let w = Warden::builder(fixture())
        .args(["--request-timeout", "500ms"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        m.call_tool(json!(1), "hang", json!({})),
    )
    .await
    .unwrap();
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{r}"
    );
    w.wait_log("request timed out", Duration::from_secs(5));
    // The session survives the timeout.
    assert_eq!(
        text(&m.call_tool(json!(2), "echo", json!({"text":"alive"})).await),
        "alive"
    );
}

#[tokio::test]
async fn garbage_on_stdout_is_dropped_without_killing_the_session() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(
        text(&m.call_tool(json!(1), "garbage", json!({})).await),
        "after garbage"
    );
    w.wait_log("not a JSON-RPC message", Duration::from_secs(5));
    assert_eq!(
        text(&m.call_tool(json!(2), "echo", json!({"text":"fine"})).await),
        "fine"
    );
}

#[tokio::test]
async fn an_oversized_line_is_dropped_and_its_request_fails_fast() {
    let w = Warden::builder(fixture())
        .args(["--max-message-bytes", "1MiB"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        m.call_tool(json!(1), "huge", json!({"bytes": 10 << 20})),
    )
    .await
    .unwrap();
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("size limit"),
        "{r}"
    );
    w.wait_log("dropped an oversized line", Duration::from_secs(5));
    assert_eq!(
        text(&m.call_tool(json!(2), "echo", json!({"text":"fine"})).await),
        "fine"
    );
}

#[tokio::test]
async fn closed_stdout_ends_the_session_and_stops_the_server() {
    let w = Warden::builder(fixture())
        .args(["--kill-grace", "500ms"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let pid: i32 = text(&m.call_tool(json!(1), "pid", json!({})).await)
        .parse()
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        m.call_tool(json!(2), "close_stdout", json!({})),
    )
    .await
    .unwrap();
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed its output"),
        "{r}"
    );
    assert!(
        until(Duration::from_secs(10), || (!alive(pid)).then_some(()))
            .await
            .is_some(),
        "server still running"
    );
    assert_eq!(
        m.post(&json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_server_that_ignores_eof_and_sigterm_is_killed_after_the_grace() {
    let w = Warden::builder(fixture_with(&["--ignore-eof", "--ignore-sigterm"]))
        .args(["--kill-grace", "300ms"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let pid: i32 = text(&m.call_tool(json!(1), "pid", json!({})).await)
        .parse()
        .unwrap();
    assert_eq!(m.delete().await.status(), 200);
    assert!(
        until(Duration::from_secs(10), || (!alive(pid)).then_some(()))
            .await
            .is_some(),
        "stubborn server survived"
    );
    w.wait_log("killed by SIGKILL", Duration::from_secs(5));
    no_server_left(&w).await;
}

#[tokio::test]
async fn a_server_that_exits_during_initialize_gives_an_initialize_error() {
    for flag in ["--exit-on-initialize", "--die-mid-line-on-initialize"] {
        let w = Warden::start(fixture_with(&[flag]));
        let m = Mcp::new(w.mcp_url());
        let r = m
            .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
            .await;
        assert!(
            r.headers().get("mcp-session-id").is_none(),
            "{flag}: no session for a failed initialize"
        );
        let body = crate::support::http::final_response(r).await;
        assert_eq!(body["id"], 1);
        assert!(
            body["error"]["message"].as_str().unwrap().contains("exit"),
            "{flag}: {body}"
        );
        no_server_left(&w).await;
    }
}

#[tokio::test]
async fn a_server_that_cannot_start_gives_a_clear_initialize_error() {
    let w = Warden::start(vec!["definitely-not-a-command-xyz".into(), "--flag".into()]);
    let m = Mcp::new(w.mcp_url());
    let r = m
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("definitely-not-a-command-xyz") && msg.contains("not found"),
        "{body}"
    );
    assert!(
        w.wait_log("cannot start the MCP server", Duration::from_secs(5))
            .contains("definitely-not-a-command-xyz")
    );
    no_server_left(&w).await;
}

/// A server that cannot start gets one answer on both transports: 502 Bad Gateway with a
/// JSON-RPC error that has no id (the Streamable HTTP transport's answer to input it cannot
/// take; the legacy `GET /sse` has no request to answer in-band).
#[tokio::test]
async fn a_server_that_cannot_start_gets_the_same_answer_on_both_transports() {
    let w = Warden::start(vec!["definitely-not-a-command-xyz".into()]);
    let streamable = Mcp::new(w.mcp_url())
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    let legacy = reqwest::Client::new()
        .get(w.url("/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut answers = Vec::new();
    for r in [streamable, legacy] {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        answers.push((status, body["id"].clone(), body["error"]["code"].clone()));
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("cannot start the MCP server: "),
            "{body}"
        );
    }
    assert_eq!(answers[0], (502, serde_json::Value::Null, json!(-32000)));
    assert_eq!(answers[0], answers[1]);
    no_server_left(&w).await;
}

#[tokio::test]
async fn server_stderr_goes_to_the_logs_capped_and_never_to_clients() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .call_tool(json!(1), "stderr", json!({"lines": 5000}))
        .await;
    assert_eq!(text(&r), "wrote stderr");
    assert!(!r.to_string().contains("stderr line"));
    let logs = w.wait_log("stderr line 0", Duration::from_secs(5));
    assert!(logs.contains("source=\"child\""));
    let logs = w.wait_log("suppressed", Duration::from_secs(5));
    let logged = logs.matches("stderr line ").count();
    assert!(logged < 5000, "rate cap did not apply ({logged} lines)");
}

#[tokio::test]
async fn a_flooding_server_and_a_client_that_never_reads_keep_memory_bounded() {
    let w = Warden::start(fixture());
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    // The client opens its GET stream and never reads it.
    let unread = m.get_stream(None).await;
    assert_eq!(unread.status(), 200);
    let before = rss_kib(w.pid());
    // 20 000 notifications of 8 KiB (160 MiB) go to the standalone stream.
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        m.call_tool(json!(1), "flood", json!({"count": 20000, "bytes": 8192})),
    )
    .await
    .unwrap();
    assert_eq!(text(&r), "flooded");
    let after = rss_kib(w.pid());
    eprintln!("sidecar RSS {before} KiB → {after} KiB after a 160 MiB flood");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    w.wait_log(
        "dropped the oldest undelivered messages",
        Duration::from_secs(5),
    );
    drop(unread);
}

#[tokio::test]
async fn a_client_that_leaves_during_initialize_leaves_no_server_behind() {
    use tokio::io::AsyncWriteExt;
    // A server that takes a second to start, so the client is surely gone before the answer.
    let mut slow_start = vec!["sh".into(), "-c".into(), "sleep 1; exec \"$0\"".into()];
    slow_start.extend(fixture());
    let w = Warden::builder(slow_start)
        .args(["--kill-grace", "300ms"])
        .start();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string();
    let mut tcp = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{init}",
        crate::support::http::ACCEPT_BOTH,
        init.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    w.wait_log("session started", Duration::from_secs(5));
    let tree = crate::support::proc::descendants(w.pid());
    assert!(!tree.is_empty(), "the server was started");
    drop(tcp);
    no_server_left(&w).await;
    // The sidecar is fine and serves the next client.
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(
        text(&m.call_tool(json!(1), "echo", json!({"text":"next"})).await),
        "next"
    );
}
