//! The capacity run: what one sidecar holds, and what each session costs.
//!
//! ```sh
//! ./scripts/capacity                       # 1,000 sessions for 10 minutes, 10,000 SSE streams
//! ./scripts/capacity --sessions 200 --minutes 1 --streams 1000   # a short run
//! ```
//!
//! Three phases against the release binary and the fixture server, default sandbox:
//! 1. **Idle cost**: 100 sessions opened (initialize + one call) and left idle; the sidecar's
//!    RSS growth per session, and its servers' memory per session (PSS, which shares the
//!    pages processes have in common fairly; RSS beside it).
//! 2. **Held sessions**: `--sessions` sessions held `--minutes` minutes, each calling `echo`
//!    about once a second; every answer checked. Per minute: the sidecar's RSS, descriptors,
//!    and CPU. At the end: errors (must be 0), RSS growth after the first minute, and the
//!    sidecar's CPU per 1,000 calls/s.
//! 3. **Idle legacy SSE streams**: `--streams` `GET /sse` connections held open (each a session
//!    with its server, as the transport has it); the sidecar's RSS and descriptors per
//!    stream.
//!
//! Prints the figures and a sizing table. Not part of CI; nothing here is a time assertion.
//! Exits non-zero when a call failed or a stream could not be held.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unreachable_pub
)]

#[path = "support/fixture.rs"]
mod fixture;
#[allow(dead_code)]
#[path = "../tests/support/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../tests/support/proc.rs"]
mod proc;

use fixture::fixture;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use http::{Mcp, SseParser, text};

struct Args {
    sessions: usize,
    minutes: f64,
    streams: usize,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 1000,
        minutes: 10.0,
        streams: 10_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--sessions" => a.sessions = value().parse().expect("--sessions N"),
            "--minutes" => a.minutes = value().parse().expect("--minutes M"),
            "--streams" => a.streams = value().parse().expect("--streams N"),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

struct Sidecar {
    child: Child,
    base: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(max_sessions: usize) -> Sidecar {
    // One uid per session, as many as the run holds at once.
    let uids = format!("40000-{}", 40000 + max_sessions + 64);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-warden"))
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args([
            "--log-format",
            "json",
            "--log-level",
            "warn,mcp_warden::cli=info",
        ])
        .args(["--max-sessions", &max_sessions.to_string()])
        .args(["--sandbox-uids", &uids])
        .args(["--session-idle-timeout", "1h"])
        .arg("--")
        .arg(fixture())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcp-warden");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(l) = v.get("listen").and_then(|l| l.as_str()) {
                let _ = tx.send(l.to_owned());
            } else if v.get("level").and_then(|l| l.as_str()) == Some("ERROR") {
                println!("  sidecar: {line}");
            }
        }
    });
    let listen = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("mcp-warden did not start");
    Sidecar {
        child,
        base: format!("http://{listen}"),
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

const TICKS_PER_SEC: f64 = 100.0;

/// PSS of a process in KiB (`smaps_rollup`), falling back to RSS.
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or_else(|| proc::rss_kib(pid))
}

/// The sidecar's servers: (PSS, RSS) in KiB, and how many processes.
fn children(pid: u32) -> (u64, u64, usize) {
    let all = proc::descendants(pid as i32);
    let pss = all.iter().map(|p| pss_kib(*p)).sum();
    let rss = all.iter().map(|p| proc::rss_kib(*p)).sum();
    (pss, rss, all.len())
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

async fn open(base: &str, n: usize) -> Vec<Mcp> {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = format!("{base}/mcp");
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let mut m = Mcp::new(url);
            m.initialize().await;
            let r = m
                .call_tool(json!(0), "echo", json!({"text": "hello"}))
                .await;
            assert_eq!(text(&r), "hello", "{r}");
            m
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn close(sessions: Vec<Mcp>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for m in sessions {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            m.delete().await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

struct Sizing {
    sidecar_per_session_kib: f64,
    server_pss_per_session_kib: f64,
    server_rss_per_session_kib: f64,
    sidecar_idle_kib: u64,
    cores_per_1000_calls: f64,
    sidecar_per_stream_kib: f64,
    fds_per_stream: f64,
}

#[tokio::main]
async fn main() {
    let a = args();
    raise_fd_limit();
    let mut failed = false;
    let max = a.sessions.max(a.streams).max(100) + 32;
    let sidecar = start(max);
    let pid = sidecar.child.id();
    println!(
        "capacity run: {} sessions for {} min, {} idle SSE streams; fixture server, default sandbox",
        a.sessions, a.minutes, a.streams
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Idle cost.
    let idle_kib = proc::rss_kib(pid as i32);
    let idle_n = 100;
    let sessions = open(&sidecar.base, idle_n).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = proc::rss_kib(pid as i32);
    let (pss, rss, procs) = children(pid);
    let sidecar_per_session = (with as f64 - idle_kib as f64) / idle_n as f64;
    println!();
    println!("1. idle sessions ({idle_n})");
    println!(
        "  sidecar RSS: {} idle, {} with them: {:.0} KiB per session",
        mib(idle_kib as f64),
        mib(with as f64),
        sidecar_per_session
    );
    println!(
        "  servers: {procs} processes, PSS {} ({:.0} KiB per session), RSS {} ({:.0} KiB per session)",
        mib(pss as f64),
        pss as f64 / idle_n as f64,
        mib(rss as f64),
        rss as f64 / idle_n as f64
    );
    close(sessions).await;

    // 2. Held sessions with calls.
    println!();
    println!(
        "2. {} sessions held {} min, one call a second each",
        a.sessions, a.minutes
    );
    let sessions = open(&sidecar.base, a.sessions).await;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    for (i, m) in sessions.into_iter().enumerate() {
        let (ok, errors, stop) = (ok.clone(), errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // Spread over the second.
            tokio::time::sleep(Duration::from_millis((i as u64 * 997) % 1000)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 1u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return m,
                }
                let payload = format!("s{i}-{n}");
                let r = tokio::time::timeout(
                    Duration::from_secs(30),
                    m.call_tool(json!(n), "echo", json!({"text": payload})),
                )
                .await;
                match r {
                    Ok(r) if text(&r) == payload => ok.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
                n += 1;
            }
        }));
    }
    let started = Instant::now();
    let ticks0 = cpu_ticks(pid);
    let calls0 = ok.load(Ordering::Relaxed);
    let mut first_minute_rss = None;
    let mut last_rss = 0;
    let minutes = (a.minutes * 60.0).round() as u64;
    let mut t = 0;
    while t < minutes {
        let step = 60.min(minutes - t);
        tokio::time::sleep(Duration::from_secs(step)).await;
        t += step;
        let rss = proc::rss_kib(pid as i32);
        first_minute_rss.get_or_insert(rss);
        last_rss = rss;
        println!(
            "  {:>5.1} min: RSS {}, fds {}, calls {}, errors {}",
            t as f64 / 60.0,
            mib(rss as f64),
            proc::fd_count(pid as i32),
            ok.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed)
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / TICKS_PER_SEC;
    let calls = ok.load(Ordering::Relaxed) - calls0;
    stop.cancel();
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await.unwrap());
    }
    let rate = calls as f64 / elapsed;
    let cores_per_1000 = (cpu / elapsed) / (rate / 1000.0);
    let errs = errors.load(Ordering::Relaxed);
    failed |= errs > 0;
    let growth = last_rss as f64 - first_minute_rss.unwrap_or(last_rss) as f64;
    println!(
        "  {calls} calls ({rate:.0}/s), {errs} errors; sidecar CPU {:.1}% of a core: {:.3} cores per 1,000 calls/s; RSS after the first minute {}{}",
        100.0 * cpu / elapsed,
        cores_per_1000,
        if growth >= 0.0 { "+" } else { "" },
        mib(growth)
    );
    close(held).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. Idle legacy SSE streams.
    println!();
    println!("3. {} idle legacy SSE streams", a.streams);
    let before_rss = proc::rss_kib(pid as i32);
    let before_fds = proc::fd_count(pid as i32);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut opening = Vec::new();
    for _ in 0..a.streams {
        let (client, sem, url) = (client.clone(), sem.clone(), format!("{}/sse", sidecar.base));
        opening.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let mut r = client
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let mut parser = SseParser::default();
            while let Ok(Some(chunk)) = r.chunk().await {
                if parser
                    .push(&chunk)
                    .iter()
                    .any(|e| e.event.as_deref() == Some("endpoint"))
                {
                    return Some(r);
                }
            }
            None
        }));
    }
    let mut streams = Vec::new();
    let mut refused = 0;
    for t in opening {
        match t.await.unwrap() {
            Some(r) => streams.push(r),
            None => refused += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with_rss = proc::rss_kib(pid as i32);
    let with_fds = proc::fd_count(pid as i32);
    let (spss, _, sprocs) = children(pid);
    let held_streams = streams.len().max(1);
    let per_stream = (with_rss as f64 - before_rss as f64) / held_streams as f64;
    let fds_per_stream = (with_fds as f64 - before_fds as f64) / held_streams as f64;
    failed |= refused > 0;
    println!(
        "  held {} ({refused} not): sidecar RSS {} → {} ({per_stream:.0} KiB per stream), fds {before_fds} → {with_fds} ({fds_per_stream:.1} per stream); servers {sprocs}, PSS {}",
        streams.len(),
        mib(before_rss as f64),
        mib(with_rss as f64),
        mib(spss as f64)
    );
    drop(streams);

    let s = Sizing {
        sidecar_per_session_kib: sidecar_per_session,
        server_pss_per_session_kib: pss as f64 / idle_n as f64,
        server_rss_per_session_kib: rss as f64 / idle_n as f64,
        sidecar_idle_kib: idle_kib,
        cores_per_1000_calls: cores_per_1000,
        sidecar_per_stream_kib: per_stream,
        fds_per_stream,
    };
    print_sizing(&s);
    drop(sidecar);
    if failed {
        println!("FAILED: calls failed or streams were refused");
        std::process::exit(1);
    }
}

fn print_sizing(s: &Sizing) {
    println!();
    println!("Sizing (this machine, fixture server; add your server's own footprint):");
    println!();
    println!("| | per idle session | per 1,000 sessions | per 1,000 calls/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| sidecar memory | {:.0} KiB | {} | – |",
        s.sidecar_per_session_kib,
        mib(s.sidecar_per_session_kib * 1000.0)
    );
    println!(
        "| server memory (fixture, PSS / RSS) | {:.0} / {:.0} KiB | {} / {} | – |",
        s.server_pss_per_session_kib,
        s.server_rss_per_session_kib,
        mib(s.server_pss_per_session_kib * 1000.0),
        mib(s.server_rss_per_session_kib * 1000.0)
    );
    println!(
        "| sidecar CPU | – | – | {:.3} cores |",
        s.cores_per_1000_calls
    );
    println!(
        "| legacy SSE stream, sidecar | {:.0} KiB, {:.1} fds | {} | – |",
        s.sidecar_per_stream_kib,
        s.fds_per_stream,
        mib(s.sidecar_per_stream_kib * 1000.0)
    );
    println!("sidecar at rest: {}", mib(s.sidecar_idle_kib as f64));
}

/// The load generator holds thousands of connections.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
