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

/// `mcp-warden audit verify FILE`: whether it passed, and what it printed.
fn audit_verify(file: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(crate::support::warden_bin())
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

/// One run of the sidecar writing to the audit log in `dir`: a session and a call, then
/// stopped with `signal` once its records are written.
async fn audited_run(dir: &crate::support::TempDir, signal: Signal) {
    let log = dir.path("audit.jsonl");
    let calls_before = std::fs::read_to_string(&log)
        .map(|l| l.matches("\"event\":\"call\"").count())
        .unwrap_or(0);
    let mut w = Warden::builder(fixture())
        .args(["--config", dir.path("warden.toml").to_str().unwrap()])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(
        text(&m.call_tool(json!(1), "echo", json!({"text": "x"})).await),
        "x"
    );
    // The call's record is written (within milliseconds) before the stop.
    crate::support::until(Duration::from_secs(10), || {
        let l = std::fs::read_to_string(&log).ok()?;
        (l.matches("\"event\":\"call\"").count() > calls_before).then_some(())
    })
    .await
    .expect("the call was recorded");
    tokio::task::spawn_blocking(move || w.stop_with(signal, Duration::from_secs(20)))
        .await
        .unwrap();
}

fn audited_dir(tag: &str) -> crate::support::TempDir {
    let dir = crate::support::TempDir::new(tag);
    std::fs::write(
        dir.path("warden.toml"),
        "[policy]\ndefault = \"allow\"\n\n[audit]\noutput = \"audit.jsonl\"\n",
    )
    .unwrap();
    dir
}

/// A run that was killed (its queued records lost with it) leaves a chain that is intact
/// but incomplete: verify says so and fails.
#[tokio::test]
async fn audit_verify_flags_a_killed_run_in_the_middle() {
    let dir = audited_dir("audit-killed");
    audited_run(&dir, Signal::SIGTERM).await;
    audited_run(&dir, Signal::SIGKILL).await;
    audited_run(&dir, Signal::SIGTERM).await;
    let (ok, out) = audit_verify(&dir.path("audit.jsonl"));
    assert!(!ok, "a killed run verified:\n{out}");
    assert!(out.contains("not closed"), "{out}");
}

/// Cutting the log back to an earlier clean stop leaves a valid chain ending in
/// `audit_closed`; the anchor kept beside it (and, once a later run has started, that run's
/// first record) still names the head that was cut away.
#[tokio::test]
async fn audit_verify_flags_a_log_cut_back_to_an_earlier_clean_stop() {
    let dir = audited_dir("audit-cut");
    let log = dir.path("audit.jsonl");
    audited_run(&dir, Signal::SIGTERM).await;
    let first_run = std::fs::read(&log).unwrap().len();
    audited_run(&dir, Signal::SIGTERM).await;
    let (ok, out) = audit_verify(&log);
    assert!(ok, "{out}");
    // Cut back to the end of the first run.
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(first_run as u64).unwrap();
    drop(file);
    let (ok, out) = audit_verify(&log);
    assert!(!ok, "a cut log verified:\n{out}");
    assert!(out.contains("cut"), "{out}");
    // A run started on the cut log does not hide it: it records the head it was told of.
    audited_run(&dir, Signal::SIGTERM).await;
    let (ok, out) = audit_verify(&log);
    assert!(!ok, "a cut log verified after another run:\n{out}");
    assert!(out.contains("cut"), "{out}");
}

/// A sidecar auditing to its stdout, a pipe of one page that nobody reads yet: the audit
/// writer stalls as soon as the page is full, as it would behind a stuck log shipper.
fn stalled_audit(
    tag: &str,
    on_full: Option<&str>,
) -> (crate::support::TempDir, Warden, std::process::ChildStdout) {
    let dir = crate::support::TempDir::new(tag);
    let on_full = on_full
        .map(|m| format!("on_full = \"{m}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.path("warden.toml"),
        format!(
            "[policy]\ndefault = \"allow\"\n\n[audit]\noutput = \"stdout\"\nbuffer = 4\n{on_full}"
        ),
    )
    .unwrap();
    let mut w = Warden::builder(fixture())
        .args(["--config", dir.path("warden.toml").to_str().unwrap()])
        .capture_stdout()
        .start();
    let stdout = w.take_stdout();
    nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    (dir, w, stdout)
}

/// Reads the rest of `stdout` on a thread; the text once the sidecar has exited.
fn drain(mut stdout: std::process::ChildStdout) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    })
}

/// Stops the sidecar cleanly and verifies what it wrote to its stdout.
async fn stop_and_verify(
    dir: &crate::support::TempDir,
    mut w: Warden,
    reader: std::thread::JoinHandle<String>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || w.stop_with(Signal::SIGTERM, Duration::from_secs(20)))
        .await
        .unwrap();
    let log = reader.join().unwrap();
    let file = dir.path("captured.jsonl");
    std::fs::write(&file, &log).unwrap();
    let (ok, out) = audit_verify(&file);
    (ok, out, log)
}

/// By default a writer that cannot keep up costs records, never requests: the records are
/// counted, and the gap they leave is reported by verify.
#[tokio::test]
async fn dropped_audit_records_are_a_gap_that_verify_reports() {
    let (dir, w, stdout) = stalled_audit("audit-drop", None);
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    for i in 0..40 {
        let r = m.call_tool(json!(i), "echo", json!({"text": "x"})).await;
        assert_eq!(
            text(&r),
            "x",
            "requests are served while records are dropped"
        );
    }
    let (ok, out, log) = stop_and_verify(&dir, w, drain(stdout)).await;
    assert!(log.contains("\"event\":\"records_dropped\""), "{log}");
    assert!(!ok, "a log with dropped records verified:\n{out}");
    assert!(out.contains("dropped"), "{out}");
}

/// `on_full = "refuse"`: while the audit log cannot take the records, requests get a clear
/// 503 instead of being served unrecorded; once it drains they are served again, and every
/// served call is in the log, with no gap.
#[tokio::test]
async fn a_complete_audit_refuses_requests_it_cannot_record() {
    let (dir, w, stdout) = stalled_audit("audit-refuse", Some("refuse"));
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let call = |id: usize| {
        let m = m.clone();
        async move {
            m.post(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}))
                .await
        }
    };
    let mut served = 0;
    let mut refused = None;
    for id in 1..=200 {
        let r = call(id).await;
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        served += 1;
    }
    let refused = refused.expect("a stalled audit log never refused a request");
    assert!(refused.headers().get("retry-after").is_some());
    let body: serde_json::Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("audit log"), "{message}");
    // The log drains: requests are served again.
    let reader = drain(stdout);
    let mut id = 1000;
    loop {
        id += 1;
        let r = call(id).await;
        if r.status() == 200 {
            served += 1;
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(id < 1000 + 500, "never served again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, out, log) = stop_and_verify(&dir, w, reader).await;
    assert!(ok, "{out}");
    assert_eq!(log.matches("\"event\":\"call\"").count(), served, "{log}");
}

/// `on_full = "block"`: requests wait for the audit log instead; every call is recorded.
#[tokio::test]
async fn a_blocking_audit_slows_requests_down_and_loses_nothing() {
    let (dir, w, stdout) = stalled_audit("audit-block", Some("block"));
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = {
        let (m, done) = (m.clone(), done.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                let r = m.call_tool(json!(i), "echo", json!({"text": "x"})).await;
                assert_eq!(text(&r), "x");
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    // Far more than the pipe and the queue hold are due; let some through, then drain.
    crate::support::until(Duration::from_secs(10), || {
        (done.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(())
    })
    .await
    .unwrap();
    let reader = drain(stdout);
    crate::support::http::with_timeout(Duration::from_secs(30), calls)
        .await
        .unwrap();
    let (ok, out, log) = stop_and_verify(&dir, w, reader).await;
    assert!(ok, "{out}");
    assert_eq!(log.matches("\"event\":\"call\"").count(), 40);
}
