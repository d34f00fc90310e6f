//! Sessions opened and closed by the thousand, ended every way a session can end, leave
//! nothing behind: the sidecar's descriptors, memory, threads and processes are counted from
//! /proc before and after.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::legacy::Legacy;
use crate::support::http::{ACCEPT_BOTH, Mcp, text};
use crate::support::proc::{Footprint, descendants};
use crate::support::{TempDir, Warden, fixture};

/// Sessions in the measured run (`MCP_WARDEN_CHURN_SESSIONS` overrides, for longer runs).
fn sessions() -> usize {
    std::env::var("MCP_WARDEN_CHURN_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Clients working at once.
const PARALLEL: usize = 8;

/// How a session ends; every way is exercised in turn.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// `DELETE` (the usual way).
    Delete,
    /// The server crashes (exit code 3) while answering.
    Crash,
    /// The server is killed with SIGKILL from outside.
    Killed,
    /// The client drops a request mid-flight, then deletes the session.
    DisconnectMidRequest,
    /// A legacy HTTP+SSE client closes its stream.
    LegacyStreamClosed,
    /// The client sends `initialize` and leaves before the answer.
    LeftDuringInitialize,
}

const ENDINGS: [Ending; 10] = [
    Ending::Delete,
    Ending::Crash,
    Ending::Delete,
    Ending::Killed,
    Ending::Delete,
    Ending::DisconnectMidRequest,
    Ending::Delete,
    Ending::LegacyStreamClosed,
    Ending::Delete,
    Ending::LeftDuringInitialize,
];

async fn one_session(w: &Warden, ending: Ending, n: usize) {
    match ending {
        Ending::LegacyStreamClosed => {
            let mut l = Legacy::connect(w).await;
            let init = l
                .request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"churn","version":"1"}}}))
                .await;
            assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
            let r = l.request(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":format!("legacy {n}")}}})).await;
            assert_eq!(text(&r), format!("legacy {n}"));
            drop(l);
        }
        Ending::LeftDuringInitialize => {
            let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"churn","version":"1"}}}).to_string();
            let mut tcp = tokio::net::TcpStream::connect(w.addr).await.unwrap();
            let req = format!(
                "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{init}",
                init.len()
            );
            tcp.write_all(req.as_bytes()).await.unwrap();
            // Gone before the answer: the session id never reaches anyone.
            drop(tcp);
        }
        _ => {
            let mut m = Mcp::new(w.mcp_url());
            m.initialize().await;
            let want = format!("session {n}");
            let r = m.call_tool(json!(1), "echo", json!({"text": want})).await;
            assert_eq!(text(&r), want);
            match ending {
                Ending::Delete => assert_eq!(m.delete().await.status(), 200),
                Ending::Crash => {
                    let r = m.call_tool(json!(2), "crash", json!({})).await;
                    assert!(r["error"]["message"].is_string(), "{r}");
                }
                Ending::Killed => {
                    let pid: i32 = text(&m.call_tool(json!(2), "pid", json!({})).await)
                        .parse()
                        .unwrap();
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    )
                    .unwrap();
                }
                Ending::DisconnectMidRequest => {
                    let m2 = m.clone();
                    let slow = tokio::spawn(async move {
                        m2.call_tool(json!(2), "slow", json!({"ms": 2000})).await
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    slow.abort();
                    let _ = slow.await;
                    assert_eq!(m.delete().await.status(), 200);
                }
                Ending::LegacyStreamClosed | Ending::LeftDuringInitialize => unreachable!(),
            }
        }
    }
}

/// Runs `count` sessions, `PARALLEL` at a time.
async fn churn(w: &Arc<Warden>, count: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..PARALLEL {
        let (w, next) = (w.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                tokio::time::timeout(
                    Duration::from_secs(30),
                    one_session(&w, ENDINGS[n % ENDINGS.len()], n),
                )
                .await
                .unwrap_or_else(|_| panic!("session {n} ({:?}) hung", ENDINGS[n % 10]));
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

/// Waits until no session, server process or work dir is left, then counts.
async fn settled(w: &Warden, work_root: &TempDir) -> Footprint {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = reqwest::get(w.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dirs = std::fs::read_dir(work_root.dir()).unwrap().count();
        let tree = descendants(w.pid());
        if metrics.contains("mcp_warden_sessions_active 0") && tree.is_empty() && dirs == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {tree:?}, {dirs} work dirs, sessions {:?}",
            metrics
                .lines()
                .find(|l| l.starts_with("mcp_warden_sessions_active"))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Connections the clients dropped are closed on the sidecar's side too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Footprint::of(w.pid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_sessions_opened_and_closed_leak_nothing() {
    let work_root = TempDir::new("churn");
    let w = Arc::new(
        Warden::builder(fixture())
            .args(["--max-sessions", "64", "--kill-grace", "500ms"])
            .args(["--sse-keepalive", "200ms", "--admin-listen", "127.0.0.1:0"])
            .args(["--work-root", work_root.dir().to_str().unwrap()])
            .start(),
    );
    // Warm up: allocator arenas, runtime threads, lazily built state.
    churn(&w, 100).await;
    let before = settled(&w, &work_root).await;
    let count = sessions();
    let started = Instant::now();
    churn(&w, count).await;
    let took = started.elapsed();
    let after = settled(&w, &work_root).await;
    eprintln!(
        "{count} sessions in {took:?} ({:.1}/s); before {before:?}, after {after:?}",
        count as f64 / took.as_secs_f64()
    );
    assert_eq!(after.descendants, 0);
    assert!(
        after.fds <= before.fds + 4,
        "file descriptors grew from {} to {}",
        before.fds,
        after.fds
    );
    assert!(
        after.threads <= before.threads + 8,
        "threads grew from {} to {}",
        before.threads,
        after.threads
    );
    assert!(
        after.rss_kib <= before.rss_kib + 8 * 1024,
        "RSS grew from {} KiB to {} KiB",
        before.rss_kib,
        after.rss_kib
    );
    // Every session counted as ended, and none is still known.
    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mcp_warden_sessions_active 0"),
        "{metrics}"
    );
}
