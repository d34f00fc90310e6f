//! The soak run: N sessions of mixed traffic for M minutes against the release binary and
//! the fault fixture, counting every request's answers and every progress event.
//!
//! ```sh
//! cargo bench --bench soak -- --sessions 16 --minutes 10 [--seed 7] [--every 30]
//! ```
//!
//! Each session loops over: echo; progress streams, some dropped mid-way by the client and
//! resumed with `Last-Event-ID`; sampling round trips (the server's request answered by the
//! client); server crashes (with a slow request pending, which must get an error); deletes;
//! each followed by a new `initialize`. Every `--every` seconds it prints the sidecar's RSS,
//! descriptors, threads, processes and sessions. At the end: lost and duplicated answers and
//! progress events (each must be 0), the error breakdown (expected errors, e.g. the answers
//! of crashed servers, apart), the sidecar's warnings by message, and what it holds once the
//! sessions are gone. Exits non-zero when anything was lost, duplicated or left behind.
//! Not part of CI; nothing here is a time assertion.

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

use fixture::{fixture, target_dir};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use http::{Mcp, SseEvent, SseParser};

/// No single operation may take longer than this: beyond it, its answer counts as lost.
const OP_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    sessions: usize,
    minutes: f64,
    seed: u64,
    every: u64,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 16,
        minutes: 1.0,
        seed: 1,
        every: 30,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--sessions" => a.sessions = value().parse().expect("--sessions N"),
            "--minutes" => a.minutes = value().parse().expect("--minutes M"),
            "--seed" => a.seed = value().parse().expect("--seed S"),
            "--every" => a.every = value().parse().expect("--every SECONDS"),
            // `cargo bench` passes --bench; anything else is a mistake.
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

/// xorshift64*: reproducible choices without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    answered: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    progress_expected: AtomicU64,
    progress_seen: AtomicU64,
    progress_lost: AtomicU64,
    progress_duplicated: AtomicU64,
    resumptions: AtomicU64,
    samplings: AtomicU64,
    crashes: AtomicU64,
    deletes: AtomicU64,
    sessions: AtomicU64,
    /// Unexpected failures, by kind.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Errors the operation expects (the answer of a crashing server), by kind.
    expected: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn error(&self, kind: impl Into<String>) {
        *self.errors.lock().entry(kind.into()).or_default() += 1;
    }

    fn expected(&self, kind: impl Into<String>) {
        *self.expected.lock().entry(kind.into()).or_default() += 1;
    }

    /// Counts the answers one request got: exactly one is right.
    fn answers(&self, what: &str, n: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match n {
            0 => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                self.error(format!("{what}: no answer"));
            }
            1 => {
                self.answered.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.duplicated.fetch_add(n as u64 - 1, Ordering::Relaxed);
                self.error(format!("{what}: {n} answers"));
            }
        }
    }
}

/// The sidecar, its listeners, and its JSON log file.
struct Sidecar {
    child: Child,
    url: String,
    admin: String,
    log: PathBuf,
}

fn start_sidecar(sessions: usize) -> Sidecar {
    let log = target_dir().join("soak-sidecar.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-warden"))
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--max-sessions", &(sessions * 2 + 8).to_string()])
        .args(["--kill-grace", "1s", "--sse-keepalive", "2s"])
        .arg("--")
        .arg(fixture())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcp-warden");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    std::thread::spawn(move || {
        let mut file = std::io::BufWriter::new(file);
        let mut listen = None;
        let mut admin = None;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if listen.is_none() || admin.is_none() {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if let Some(l) = v.get("listen").and_then(Value::as_str) {
                    listen = Some(l.to_owned());
                }
                if let Some(a) = v.get("admin").and_then(Value::as_str) {
                    admin = Some(a.to_owned());
                }
                if let (Some(l), Some(a)) = (&listen, &admin) {
                    let _ = tx.send((l.clone(), a.clone()));
                }
            }
        }
        let _ = file.flush();
    });
    let (listen, admin) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("mcp-warden did not start");
    Sidecar {
        child,
        url: format!("http://{listen}/mcp"),
        admin: format!("http://{admin}"),
        log,
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn sessions_active(admin: &str) -> String {
    let Ok(r) = reqwest::get(format!("{admin}/metrics")).await else {
        return "?".into();
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("mcp_warden_sessions_active "))
        .unwrap_or("?")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// One session's traffic

/// A session of the soak: its client, and the next request id.
struct Session {
    m: Mcp,
    next_id: u64,
}

async fn open(url: &str, st: &Stats) -> Option<Session> {
    let mut m = Mcp::new(url.to_owned());
    let resp = m
        .post(
            &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": m.version, "capabilities": {"sampling": {}},
            "clientInfo": {"name":"soak","version":"1"}}}),
        )
        .await;
    if resp.status() != 200 {
        st.error(format!("initialize: HTTP {}", resp.status().as_u16()));
        return None;
    }
    m.session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answers = messages(resp).await.0;
    st.answers("initialize", count_answers(&answers, &json!(0)));
    m.session.as_ref()?;
    let r = m
        .post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    if r.status() != 202 {
        st.error(format!("initialized: HTTP {}", r.status().as_u16()));
    }
    st.sessions.fetch_add(1, Ordering::Relaxed);
    Some(Session { m, next_id: 1 })
}

/// Every JSON-RPC message of a response (JSON body or SSE stream), and the last event id.
async fn messages(resp: reqwest::Response) -> (Vec<Value>, Option<String>) {
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !sse {
        return (resp.json::<Value>().await.into_iter().collect(), None);
    }
    let events: Vec<SseEvent> = http::sse_events(resp).await;
    let last = events.iter().rev().find_map(|e| e.id.clone());
    (
        events
            .iter()
            .filter(|e| !e.data.is_empty())
            .map(SseEvent::json)
            .collect(),
        last,
    )
}

fn is_answer(v: &Value, id: &Value) -> bool {
    v.get("id") == Some(id) && (v.get("result").is_some() || v.get("error").is_some())
}

fn count_answers(msgs: &[Value], id: &Value) -> usize {
    msgs.iter().filter(|v| is_answer(v, id)).count()
}

fn call(id: u64, tool: &str, args: Value, token: Option<&str>) -> Value {
    let mut params = json!({"name": tool, "arguments": args});
    if let Some(t) = token {
        params["_meta"] = json!({"progressToken": t});
    }
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
}

async fn echo(s: &mut Session, st: &Stats, rng: &mut Rng) {
    let id = s.next_id;
    s.next_id += 1;
    let want = format!("echo {id} {}", "x".repeat(rng.below(2048) as usize));
    let resp =
        s.m.post(&call(id, "echo", json!({"text": want}), None))
            .await;
    if resp.status() != 200 {
        st.error(format!("echo: HTTP {}", resp.status().as_u16()));
        return;
    }
    let msgs = messages(resp).await.0;
    let id = json!(id);
    st.answers("echo", count_answers(&msgs, &id));
    if let Some(a) = msgs.iter().find(|v| is_answer(v, &id))
        && http::text(a) != want
    {
        st.error("echo: wrong text");
    }
}

/// A progress stream, dropped by the client after some events with probability 1/2 and
/// resumed with `Last-Event-ID`: every progress event and the answer exactly once.
async fn progress(s: &mut Session, st: &Stats, rng: &mut Rng) {
    let id = s.next_id;
    s.next_id += 1;
    let steps = 5 + rng.below(25);
    let token = format!("p{id}");
    let body = call(
        id,
        "progress",
        json!({"steps": steps, "interval_ms": 5 + rng.below(30)}),
        Some(&token),
    );
    let mut resp = s.m.post(&body).await;
    if resp.status() != 200 {
        st.error(format!("progress: HTTP {}", resp.status().as_u16()));
        return;
    }
    let drop_after = (rng.below(2) == 0).then(|| 1 + rng.below(steps));
    let mut parser = SseParser::default();
    let mut events: Vec<SseEvent> = Vec::new();
    let mut dropped = false;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => events.extend(parser.push(&chunk)),
            Ok(None) => break,
            Err(_) => {
                st.error("progress: stream broke");
                break;
            }
        }
        let seen = events
            .iter()
            .filter(|e| e.json()["method"] == "notifications/progress")
            .count() as u64;
        if drop_after.is_some_and(|n| seen >= n) && events.iter().any(|e| e.id.is_some()) {
            dropped = true;
            break;
        }
    }
    drop(resp);
    let mut msgs: Vec<Value> = events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(SseEvent::json)
        .collect();
    if dropped {
        tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        let last = events.iter().rev().find_map(|e| e.id.clone()).unwrap();
        let resumed = s.m.get_stream(Some(&last)).await;
        if resumed.status() != 200 {
            st.error(format!("resume: HTTP {}", resumed.status().as_u16()));
        } else {
            st.resumptions.fetch_add(1, Ordering::Relaxed);
            msgs.extend(messages(resumed).await.0);
        }
    }
    st.answers("progress", count_answers(&msgs, &json!(id)));
    let mut seen: Vec<u64> = msgs
        .iter()
        .filter(|v| {
            v["method"] == "notifications/progress" && v["params"]["progressToken"] == token
        })
        .filter_map(|v| v["params"]["progress"].as_u64())
        .collect();
    st.progress_expected.fetch_add(steps, Ordering::Relaxed);
    st.progress_seen
        .fetch_add(seen.len() as u64, Ordering::Relaxed);
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    st.progress_duplicated
        .fetch_add((before - seen.len()) as u64, Ordering::Relaxed);
    let missing = (1..=steps)
        .filter(|p| seen.binary_search(p).is_err())
        .count() as u64;
    st.progress_lost.fetch_add(missing, Ordering::Relaxed);
    if missing > 0 {
        st.error("progress: events missing");
    }
}

/// The server asks the client for a sampling (on the request's stream); the client answers.
async fn sample(s: &mut Session, st: &Stats, rng: &mut Rng) {
    let id = s.next_id;
    s.next_id += 1;
    let reply = format!("reply {}", rng.next());
    let mut resp =
        s.m.post(&call(id, "sample", json!({"prompt": "hi"}), None))
            .await;
    if resp.status() != 200 {
        st.error(format!("sample: HTTP {}", resp.status().as_u16()));
        return;
    }
    let mut parser = SseParser::default();
    let mut msgs = Vec::new();
    let mut asked = false;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(_) => {
                st.error("sample: stream broke");
                break;
            }
        };
        for e in parser.push(&chunk) {
            let v = e.json();
            if v["method"] == "sampling/createMessage" {
                if asked {
                    st.error("sample: asked twice");
                }
                asked = true;
                let answer = json!({"jsonrpc":"2.0","id":v["id"],"result":{"role":"assistant",
                    "content":{"type":"text","text":reply},"model":"soak"}});
                let r = s.m.post(&answer).await;
                if r.status() != 202 {
                    st.error(format!("sample answer: HTTP {}", r.status().as_u16()));
                }
            }
            if !e.data.is_empty() {
                msgs.push(v);
            }
        }
    }
    let id = json!(id);
    st.answers("sample", count_answers(&msgs, &id));
    st.samplings.fetch_add(1, Ordering::Relaxed);
    match msgs.iter().find(|v| is_answer(v, &id)) {
        Some(a) if http::text(a) == format!("sampled: {reply}") => {}
        Some(_) => st.error("sample: wrong answer"),
        None => {}
    }
}

/// The server crashes, sometimes with a slow request pending: both get an error answer.
async fn crash(s: &mut Session, st: &Stats, rng: &mut Rng) {
    let pending = (rng.below(2) == 0).then(|| {
        let id = s.next_id;
        s.next_id += 1;
        let m = s.m.clone();
        tokio::spawn(async move {
            let r = m.post(&call(id, "slow", json!({"ms": 30_000}), None)).await;
            (id, r.status().as_u16(), messages(r).await.0)
        })
    });
    if pending.is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = s.next_id;
    s.next_id += 1;
    let resp = s.m.post(&call(id, "crash", json!({}), None)).await;
    st.crashes.fetch_add(1, Ordering::Relaxed);
    let msgs = if resp.status() == 200 {
        messages(resp).await.0
    } else {
        st.error(format!("crash: HTTP {}", resp.status().as_u16()));
        Vec::new()
    };
    let id = json!(id);
    st.answers("crash", count_answers(&msgs, &id));
    if msgs
        .iter()
        .any(|v| is_answer(v, &id) && v.get("error").is_some())
    {
        st.expected("crash: server exited");
    }
    if let Some(p) = pending {
        let (pid, status, msgs) = p.await.unwrap();
        if status != 200 {
            st.error(format!("pending at crash: HTTP {status}"));
        }
        let pid = json!(pid);
        st.answers("pending at crash", count_answers(&msgs, &pid));
        if msgs
            .iter()
            .any(|v| is_answer(v, &pid) && v.get("error").is_some())
        {
            st.expected("pending at crash: server exited");
        }
    }
}

async fn worker(url: String, st: Arc<Stats>, until: Instant, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut session = None;
    while Instant::now() < until {
        let Some(s) = session.as_mut() else {
            session = tokio::time::timeout(OP_TIMEOUT, open(&url, &st))
                .await
                .unwrap_or_else(|_| {
                    st.error("initialize: timed out");
                    None
                });
            if session.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        let roll = rng.below(100);
        let op = async {
            match roll {
                0..=44 => echo(s, &st, &mut rng).await,
                45..=74 => progress(s, &st, &mut rng).await,
                75..=89 => sample(s, &st, &mut rng).await,
                90..=94 => {
                    crash(s, &st, &mut rng).await;
                    return true;
                }
                _ => {
                    let r = s.m.delete().await;
                    st.deletes.fetch_add(1, Ordering::Relaxed);
                    if r.status() != 200 {
                        st.error(format!("delete: HTTP {}", r.status().as_u16()));
                    }
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(true) => session = None,
            Ok(false) => {}
            Err(_) => {
                st.lost.fetch_add(1, Ordering::Relaxed);
                st.error(format!("operation {roll} timed out"));
            }
        }
    }
    if let Some(s) = session {
        let _ = s.m.delete().await;
    }
}

fn report_line(start: Instant, pid: i32, st: &Stats, sessions: &str) {
    println!(
        "{:>6.0}s  rss {:>6.1} MiB  fds {:>4}  threads {:>3}  procs {:>4}  sessions {:>4}  requests {:>8}  lost {}  dup {}  progress lost {} dup {}  load {}",
        start.elapsed().as_secs_f64(),
        proc::status_field(pid, "VmRSS") as f64 / 1024.0,
        proc::fd_count(pid),
        proc::status_field(pid, "Threads"),
        proc::descendants(pid).len(),
        sessions,
        st.requests.load(Ordering::Relaxed),
        st.lost.load(Ordering::Relaxed),
        st.duplicated.load(Ordering::Relaxed),
        st.progress_lost.load(Ordering::Relaxed),
        st.progress_duplicated.load(Ordering::Relaxed),
        load_average(),
    );
}

/// Warnings and errors the sidecar logged, by message.
fn log_summary(path: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let level = v["level"].as_str().unwrap_or("");
        if level == "WARN" || level == "ERROR" {
            let msg = v.get("message").and_then(Value::as_str).unwrap_or("?");
            *out.entry(format!("{level} {msg}")).or_default() += 1;
        }
    }
    out
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sidecar = start_sidecar(a.sessions);
    let pid = sidecar.child.id() as i32;
    println!(
        "soak: {} sessions for {} min (seed {}); sidecar pid {pid} on {}; load average {}",
        a.sessions,
        a.minutes,
        a.seed,
        sidecar.url,
        load_average()
    );
    let st = Arc::new(Stats::default());
    let failed = runtime.block_on(async {
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(a.minutes * 60.0);
        report_line(start, pid, &st, &sessions_active(&sidecar.admin).await);
        let first = (proc::status_field(pid, "VmRSS"), proc::fd_count(pid));
        let workers: Vec<_> = (0..a.sessions)
            .map(|i| {
                tokio::spawn(worker(
                    sidecar.url.clone(),
                    st.clone(),
                    until,
                    a.seed + i as u64,
                ))
            })
            .collect();
        let monitor = {
            let (st, admin) = (st.clone(), sidecar.admin.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(a.every)).await;
                    report_line(start, pid, &st, &sessions_active(&admin).await);
                }
            })
        };
        for w in workers {
            w.await.unwrap();
        }
        monitor.abort();
        let ran = start.elapsed();
        // Every session was deleted by its worker: wait for the sidecar to settle.
        let settle = Instant::now();
        while (!proc::descendants(pid).is_empty() || sessions_active(&sidecar.admin).await != "0")
            && settle.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        report_line(start, pid, &st, &sessions_active(&sidecar.admin).await);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!("\nafter {ran:.0?}:");
        println!(
            "  requests {}  answered {}  lost {}  duplicated {}",
            load(&st.requests),
            load(&st.answered),
            load(&st.lost),
            load(&st.duplicated)
        );
        println!(
            "  progress events expected {}  seen {}  lost {}  duplicated {}  (streams resumed {})",
            load(&st.progress_expected),
            load(&st.progress_seen),
            load(&st.progress_lost),
            load(&st.progress_duplicated),
            load(&st.resumptions)
        );
        println!(
            "  sessions {}  sampling round trips {}  crashes {}  deletes {}",
            load(&st.sessions),
            load(&st.samplings),
            load(&st.crashes),
            load(&st.deletes)
        );
        println!(
            "  sidecar RSS {:.1} → {:.1} MiB, fds {} → {}, processes left {}",
            first.0 as f64 / 1024.0,
            proc::status_field(pid, "VmRSS") as f64 / 1024.0,
            first.1,
            proc::fd_count(pid),
            proc::descendants(pid).len()
        );
        println!("  unexpected errors:");
        for (k, v) in st.errors.lock().iter() {
            println!("    {v:>8}  {k}");
        }
        println!("  expected errors:");
        for (k, v) in st.expected.lock().iter() {
            println!("    {v:>8}  {k}");
        }
        println!("  sidecar warnings and errors ({}):", sidecar.log.display());
        for (k, v) in log_summary(&sidecar.log) {
            println!("    {v:>8}  {k}");
        }
        load(&st.lost) > 0
            || load(&st.duplicated) > 0
            || load(&st.progress_lost) > 0
            || load(&st.progress_duplicated) > 0
            || !proc::descendants(pid).is_empty()
    });
    let _ = sidecar.child.kill();
    let _ = sidecar.child.wait();
    if failed {
        println!("\nFAILED: something was lost, duplicated or left behind");
        std::process::exit(1);
    }
}
