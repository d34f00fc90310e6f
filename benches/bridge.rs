//! The bridge benchmark: mcp-warden against the raw STDIO floor and a peer, in one run.
//!
//! `cargo bench --bench bridge` (or `./scripts/bench`). Prints one table: every figure, and
//! its ratio to the floor (the load generator talking to the echo server's stdin/stdout
//! directly) and to the peer (supergateway from npm, child per session, when installed in
//! tests/js). The server being wrapped is this binary's own `--echo-server` mode, a small fast
//! STDIO MCP echo server, so the numbers measure the bridges, not the tool.
//!
//! On a machine with two or more CPUs the targets (bridge + its children) run on CPU 0 and the
//! load generator on CPU 1; the output says whether the load generator was the bottleneck.
//! Nothing here asserts on time: goals are printed as met / not met.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unreachable_pub
)]

#[allow(dead_code)]
#[path = "../tests/support/proc.rs"]
mod proc;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, oneshot};

// ---------------------------------------------------------------------------------------------
// The echo server (this binary with --echo-server)

#[derive(Deserialize)]
struct EchoMsg<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a str>,
    #[serde(borrow)]
    params: Option<EchoParams<'a>>,
}

#[derive(Deserialize)]
struct EchoParams<'a> {
    #[serde(borrow, rename = "_meta")]
    meta: Option<EchoMeta<'a>>,
    #[serde(borrow)]
    arguments: Option<EchoArgs<'a>>,
    #[serde(borrow, rename = "protocolVersion")]
    protocol_version: Option<&'a str>,
}

#[derive(Deserialize)]
struct EchoMeta<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EchoArgs<'a> {
    #[serde(borrow)]
    text: Option<&'a RawValue>,
}

fn echo_server() -> ! {
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 17, stdin.lock());
    let mut out = std::io::BufWriter::with_capacity(1 << 17, std::io::stdout().lock());
    let mut line = Vec::with_capacity(1 << 17);
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) => {}
        }
        let Ok(msg) = serde_json::from_slice::<EchoMsg<'_>>(&line) else {
            continue;
        };
        let (Some(method), Some(id)) = (msg.method, msg.id) else {
            continue;
        };
        let id = id.get();
        match method {
            "initialize" => {
                let v = msg
                    .params
                    .as_ref()
                    .and_then(|p| p.protocol_version)
                    .unwrap_or("2025-11-25");
                let _ = write!(
                    out,
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"{v}","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"bench-echo","version":"1"}}}}}}"#
                );
            }
            "tools/call" => {
                let params = msg.params.as_ref();
                if let Some(token) = params
                    .and_then(|p| p.meta.as_ref())
                    .and_then(|m| m.progress_token)
                {
                    let _ = write!(
                        out,
                        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":1,"total":1}}}}"#,
                        token.get()
                    );
                    let _ = out.write_all(b"\n");
                }
                let text = params
                    .and_then(|p| p.arguments.as_ref())
                    .and_then(|a| a.text)
                    .map_or("\"\"", |t| t.get());
                let _ = write!(
                    out,
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":{text}}}]}}}}"#
                );
            }
            "tools/list" => {
                let _ = write!(
                    out,
                    r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"echo","inputSchema":{{"type":"object"}}}}]}}}}"#
                );
            }
            _ => {
                let _ = write!(out, r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
            }
        }
        let _ = out.write_all(b"\n");
        // Flush when no further request is already buffered: one write per batch.
        if input.buffer().is_empty() {
            let _ = out.flush();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

fn init_body(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"bench","version":"1"}}}}}}"#
    )
}

const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The "session" of sessionless (2026-07-28) calls: no session id, the era's headers and
/// envelope instead.
const SESSIONLESS: &str = "(sessionless)";

/// An echo call of the sessionless era.
fn sessionless_call_body(id: u64, text: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    )
}

/// Whether the echo tool's argument is `message` (server-everything) rather than `text`
/// (this binary's echo server).
static ECHO_ARG_MESSAGE: AtomicBool = AtomicBool::new(false);

fn call_body(id: u64, text: &str, progress: bool) -> String {
    let meta = if progress {
        format!(r#","_meta":{{"progressToken":{id}}}"#)
    } else {
        String::new()
    };
    let arg = if ECHO_ARG_MESSAGE.load(Ordering::Relaxed) {
        "message"
    } else {
        "text"
    };
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"{arg}":"{text}"}}{meta}}}}}"#
    )
}

/// The text of an echo payload of about `bytes` bytes, unique per call so misrouting shows.
fn payload(tag: &str, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes);
    s.push_str(tag);
    while s.len() < bytes {
        s.push('x');
    }
    s
}

/// Checks that a response answers `id` and echoes `text`; returns false if it went astray.
fn check_echo(body: &[u8], id: u64, text: &str) -> bool {
    #[derive(Deserialize)]
    struct R<'a> {
        id: Option<u64>,
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    match serde_json::from_slice::<R<'_>>(body) {
        Ok(r) => {
            r.id == Some(id)
                && r.result.is_some_and(|res| {
                    memchr::memmem::find(res.get().as_bytes(), text.as_bytes()).is_some()
                })
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A direct STDIO connection to an echo server: the floor.
struct StdioClient {
    stdin: Mutex<tokio::process::ChildStdin>,
    pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>,
    _child: tokio::process::Child,
}

impl StdioClient {
    async fn spawn(cmd: &[String]) -> StdioClient {
        let mut child = tokio::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let cpu = PIN_CHILDREN.load(Ordering::Relaxed);
        if cpu != u64::MAX
            && let Some(pid) = child.id()
        {
            let mut set = nix::sched::CpuSet::new();
            set.set(cpu as usize).unwrap();
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid as i32), &set);
        }
        let stdout = child.stdout.take().unwrap();
        let pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> = Arc::default();
        let routes = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::with_capacity(1 << 17, stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                if lines.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                #[derive(Deserialize)]
                struct Id {
                    id: Option<u64>,
                }
                if let Ok(Id { id: Some(id) }) = serde_json::from_slice::<Id>(&line)
                    && let Some(tx) = routes.lock().unwrap().remove(&id)
                {
                    let _ = tx.send(Bytes::copy_from_slice(&line));
                }
            }
        });
        StdioClient {
            stdin: Mutex::new(child.stdin.take().unwrap()),
            pending,
            _child: child,
        }
    }

    async fn request(&self, id: u64, body: &str) -> Bytes {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut line = Vec::with_capacity(body.len() + 1);
        line.extend_from_slice(body.as_bytes());
        line.push(b'\n');
        self.stdin.lock().await.write_all(&line).await.unwrap();
        rx.await.unwrap()
    }

    async fn notify(&self, body: &str) {
        let mut s = self.stdin.lock().await;
        s.write_all(body.as_bytes()).await.unwrap();
        s.write_all(b"\n").await.unwrap();
    }
}

/// One HTTP/1.1 connection.
struct Http {
    sender: http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    token: Option<Arc<str>>,
}

impl Http {
    async fn connect(addr: SocketAddr) -> Http {
        Http::connect_as(addr, None).await
    }

    async fn connect_as(addr: SocketAddr, token: Option<Arc<str>>) -> Http {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Http {
            sender,
            addr,
            token,
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        session: Option<&str>,
        body: Bytes,
    ) -> hyper::Request<Full<Bytes>> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        match session {
            Some(SESSIONLESS) => {
                b = b
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "echo");
            }
            Some(s) => {
                b = b
                    .header("mcp-session-id", s)
                    .header("mcp-protocol-version", "2025-11-25");
            }
            None => {}
        }
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Full::new(body)).unwrap()
    }

    /// POSTs and returns (session id header, the JSON-RPC response bytes). SSE answers are
    /// read to their response event.
    async fn post(
        &mut self,
        path: &str,
        session: Option<&str>,
        body: String,
    ) -> (Option<String>, Bytes) {
        let req = self.request("POST", path, session, Bytes::from(body));
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let sse = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let status = resp.status();
        let mut body = resp.into_body();
        if !sse {
            let bytes = body.collect().await.unwrap().to_bytes();
            assert!(
                status.is_success(),
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            return (sid, bytes);
        }
        let mut buf = Vec::new();
        loop {
            let Some(frame) = body.frame().await else {
                break;
            };
            if let Ok(data) = frame.unwrap().into_data() {
                buf.extend_from_slice(&data);
            }
            if let Some(resp) = sse_response(&buf) {
                // Drain the rest of the stream so the connection can be reused.
                while body.frame().await.is_some() {}
                return (sid, resp);
            }
        }
        (sid, Bytes::new())
    }

    async fn delete(&mut self, path: &str, session: &str) {
        let req = self.request("DELETE", path, Some(session), Bytes::new());
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let _ = resp.into_body().collect().await;
    }
}

/// The data of the first SSE event that is a JSON-RPC response, if complete in `buf`.
fn sse_response(buf: &[u8]) -> Option<Bytes> {
    let text = std::str::from_utf8(buf).ok()?;
    for block in text.split("\n\n") {
        for line in block.lines() {
            if let Some(data) = line.strip_prefix("data: ")
                && (data.contains("\"result\"") || data.contains("\"error\""))
                && text.contains(&format!("{block}\n\n"))
            {
                return Some(Bytes::copy_from_slice(data.as_bytes()));
            }
        }
    }
    None
}

/// A legacy HTTP+SSE session: POST to the endpoint, answers on the event stream.
struct LegacyClient {
    post: Http,
    endpoint: String,
    events: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
}

impl LegacyClient {
    async fn connect(addr: SocketAddr) -> LegacyClient {
        let mut get = Http::connect(addr).await;
        let req = hyper::Request::builder()
            .method("GET")
            .uri("/sse")
            .header("host", addr.to_string())
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .unwrap();
        get.sender.ready().await.unwrap();
        let resp = get.sender.send_request(req).await.unwrap();
        let mut body = resp.into_body();
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let (etx, erx) = oneshot::channel::<String>();
        tokio::spawn(async move {
            let _keep = get;
            let mut buf = String::new();
            let mut etx = Some(etx);
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut event = "message";
                    let mut payload = String::new();
                    for line in block.lines() {
                        if let Some(e) = line.strip_prefix("event: ") {
                            event = if e == "endpoint" {
                                "endpoint"
                            } else {
                                "message"
                            };
                        } else if let Some(d) = line.strip_prefix("data: ") {
                            payload.push_str(d);
                        }
                    }
                    if event == "endpoint" {
                        if let Some(t) = etx.take() {
                            let _ = t.send(payload);
                        }
                    } else if !payload.is_empty() {
                        let _ = tx.send(Bytes::from(payload));
                    }
                }
            }
        });
        let endpoint = erx.await.unwrap();
        LegacyClient {
            post: Http::connect(addr).await,
            endpoint,
            events,
        }
    }

    async fn request(&mut self, body: String) -> Bytes {
        let req = self
            .post
            .request("POST", &self.endpoint, None, Bytes::from(body));
        self.post.sender.ready().await.unwrap();
        let resp = self.post.sender.send_request(req).await.unwrap();
        let _ = resp.into_body().collect().await;
        loop {
            let msg = self.events.recv().await.unwrap();
            if memchr::memmem::find(&msg, b"\"result\"").is_some() {
                return msg;
            }
        }
    }

    async fn notify(&mut self, body: &str) {
        let req = self
            .post
            .request("POST", &self.endpoint, None, Bytes::from(body.to_owned()));
        self.post.sender.ready().await.unwrap();
        let resp = self.post.sender.send_request(req).await.unwrap();
        let _ = resp.into_body().collect().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Targets and measurements

#[derive(Clone)]
enum Target {
    /// The echo server's own stdin/stdout.
    Floor { cmd: Vec<String> },
    /// A Streamable HTTP endpoint (mcp-warden or the peer); `sse` forces SSE answers.
    Http {
        addr: SocketAddr,
        path: &'static str,
        sse: bool,
        pid: u32,
        /// A bearer token, when the target requires authentication.
        token: Option<Arc<str>>,
    },
    /// The legacy HTTP+SSE transport of mcp-warden.
    Legacy { addr: SocketAddr, pid: u32 },
    /// mcp-warden's Streamable HTTP endpoint, called by sessionless (2026-07-28) clients:
    /// one principal, so every call shares its one pooled server.
    Sessionless { addr: SocketAddr, pid: u32 },
}

impl Target {
    fn pid(&self) -> Option<u32> {
        match self {
            Target::Floor { .. } => None,
            Target::Http { pid, .. }
            | Target::Legacy { pid, .. }
            | Target::Sessionless { pid, .. } => Some(*pid),
        }
    }
}

/// A session on a target, with `lanes` connections for concurrent calls.
enum Session {
    Floor(Arc<StdioClient>),
    Http {
        lanes: Vec<Http>,
        path: &'static str,
        sid: String,
        sse: bool,
    },
    Legacy(LegacyClient),
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static MISROUTED: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

async fn open(target: &Target, lanes: usize) -> Session {
    match target {
        Target::Floor { cmd } => {
            let c = StdioClient::spawn(cmd).await;
            c.request(0, &init_body(0)).await;
            c.notify(INITIALIZED).await;
            Session::Floor(Arc::new(c))
        }
        Target::Http {
            addr,
            path,
            sse,
            token,
            ..
        } => {
            let mut first = Http::connect_as(*addr, token.clone()).await;
            let (sid, _) = first.post(path, None, init_body(0)).await;
            let sid = sid.expect("no session id");
            first.post(path, Some(&sid), INITIALIZED.into()).await;
            let mut all = vec![first];
            for _ in 1..lanes {
                all.push(Http::connect_as(*addr, token.clone()).await);
            }
            Session::Http {
                lanes: all,
                path,
                sid,
                sse: *sse,
            }
        }
        Target::Sessionless { addr, .. } => {
            let mut all = Vec::new();
            for _ in 0..lanes {
                all.push(Http::connect(*addr).await);
            }
            Session::Http {
                lanes: all,
                path: "/mcp",
                sid: SESSIONLESS.to_owned(),
                sse: false,
            }
        }
        Target::Legacy { addr, .. } => {
            let mut c = LegacyClient::connect(*addr).await;
            c.request(init_body(0)).await;
            c.notify(INITIALIZED).await;
            Session::Legacy(c)
        }
    }
}

async fn close(session: Session) {
    if let Session::Http {
        mut lanes,
        path,
        sid,
        ..
    } = session
        && sid != SESSIONLESS
    {
        lanes[0].delete(path, &sid).await;
    }
}

/// One echo call on lane `lane`; returns its round-trip time.
async fn call(session: &mut Session, lane: usize, bytes: usize) -> Duration {
    let id = next_id();
    let text = payload(&format!("c{id}-"), bytes);
    let start = Instant::now();
    let resp = match session {
        Session::Floor(c) => c.request(id, &call_body(id, &text, false)).await,
        Session::Http {
            lanes,
            path,
            sid,
            sse,
        } => {
            let body = if sid == SESSIONLESS {
                sessionless_call_body(id, &text)
            } else {
                call_body(id, &text, *sse)
            };
            lanes[lane].post(path, Some(sid), body).await.1
        }
        Session::Legacy(c) => c.request(call_body(id, &text, false)).await,
    };
    let rtt = start.elapsed();
    if !check_echo(&resp, id, &format!("c{id}-")) {
        MISROUTED.fetch_add(1, Ordering::Relaxed);
    }
    rtt
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the state.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn self_cpu() -> Duration {
    let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    t(r.user_time()) + t(r.system_time())
}

const TICKS_PER_SEC: f64 = 100.0;

#[derive(Default, Clone)]
struct Figures {
    latency_p50: Option<Duration>,
    latency_p99: Option<Duration>,
    throughput: Option<f64>,
    cpu_per_call: Option<Duration>,
    loadgen_busy: Option<f64>,
    big_p50: Option<Duration>,
    setup_p50: Option<Duration>,
    idle_rss_kib: Option<u64>,
    rss_per_session_kib: Option<f64>,
}

struct Plan {
    latency_calls: usize,
    throughput_secs: f64,
    big_calls: usize,
    setups: usize,
    idle_sessions: usize,
}

async fn latency(target: &Target, calls: usize, bytes: usize) -> (Duration, Duration) {
    let mut s = open(target, 1).await;
    for _ in 0..calls / 10 {
        call(&mut s, 0, bytes).await;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        samples.push(call(&mut s, 0, bytes).await);
    }
    close(s).await;
    (
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
    )
}

/// 16 sessions × 4 calls in flight for `secs`: calls/s, target CPU per call, load-gen busy.
async fn throughput(target: &Target, secs: f64) -> (f64, Option<Duration>, f64) {
    const SESSIONS: usize = 16;
    const IN_FLIGHT: usize = 4;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(open(target, IN_FLIGHT).await);
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticks0 = target.pid().map(cpu_ticks);
    let cpu0 = self_cpu();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in sessions {
        match s {
            Session::Floor(c) => {
                for _ in 0..IN_FLIGHT {
                    let (c, done, stop) = (c.clone(), done.clone(), stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut s = Session::Floor(c);
                        while !stop.load(Ordering::Relaxed) {
                            call(&mut s, 0, 64).await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
            }
            Session::Http {
                lanes,
                path,
                sid,
                sse,
            } => {
                for lane in lanes {
                    let (done, stop, sid) = (done.clone(), stop.clone(), sid.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut s = Session::Http {
                            lanes: vec![lane],
                            path,
                            sid,
                            sse,
                        };
                        while !stop.load(Ordering::Relaxed) {
                            call(&mut s, 0, 64).await;
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
            }
            Session::Legacy(_) => unreachable!("throughput runs on Streamable HTTP"),
        }
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    let busy = (self_cpu() - cpu0).as_secs_f64() / elapsed.as_secs_f64();
    let ticks = target.pid().map(|p| cpu_ticks(p) - ticks0.unwrap_or(0));
    for t in tasks {
        let _ = t.await;
    }
    let per_call =
        ticks.map(|t| Duration::from_secs_f64(t as f64 / TICKS_PER_SEC / n.max(1) as f64));
    (n as f64 / elapsed.as_secs_f64(), per_call, busy)
}

async fn setup(target: &Target, n: usize) -> Duration {
    setup_paced(target, n, Duration::ZERO).await
}

/// [`setup`] with `pause` before each session: time for warm spares to be replaced, so each
/// session finds one ready (what a client that opens a session now and then sees).
async fn setup_paced(target: &Target, n: usize, pause: Duration) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let start = Instant::now();
        let mut s = open(target, 1).await;
        call(&mut s, 0, 64).await;
        samples.push(start.elapsed());
        close(s).await;
    }
    percentile(&mut samples, 0.5)
}

/// The floor of a server started ahead of need: the STDIO client spawns it, waits `pause`,
/// and only then times `initialize` and the first call (what a warm spare can at best give).
async fn setup_prestarted(cmd: &[String], n: usize, pause: Duration) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let c = StdioClient::spawn(cmd).await;
        tokio::time::sleep(pause).await;
        let start = Instant::now();
        c.request(0, &init_body(0)).await;
        c.notify(INITIALIZED).await;
        let mut s = Session::Floor(Arc::new(c));
        call(&mut s, 0, 64).await;
        samples.push(start.elapsed());
        close(s).await;
    }
    percentile(&mut samples, 0.5)
}

async fn memory(target: &Target, n: usize) -> (u64, f64) {
    let pid = target.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = proc::rss_kib(pid as i32);
    let mut sessions = Vec::new();
    for _ in 0..n {
        let mut s = open(target, 1).await;
        call(&mut s, 0, 64).await;
        sessions.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with = proc::rss_kib(pid as i32);
    for s in sessions {
        close(s).await;
    }
    (idle, (with as f64 - idle as f64) / n as f64)
}

async fn measure(target: &Target, plan: &Plan, what: &[&str]) -> Figures {
    let mut f = Figures::default();
    if what.contains(&"latency") {
        let (p50, p99) = latency(target, plan.latency_calls, 64).await;
        f.latency_p50 = Some(p50);
        f.latency_p99 = Some(p99);
    }
    if what.contains(&"throughput") {
        let (tps, cpu, busy) = throughput(target, plan.throughput_secs).await;
        f.throughput = Some(tps);
        f.cpu_per_call = cpu;
        f.loadgen_busy = Some(busy);
    }
    if what.contains(&"big") {
        f.big_p50 = Some(latency(target, plan.big_calls, 64 * 1024).await.0);
    }
    if what.contains(&"setup") {
        f.setup_p50 = Some(setup(target, plan.setups).await);
    }
    if what.contains(&"memory") {
        let (idle, per) = memory(target, plan.idle_sessions).await;
        f.idle_rss_kib = Some(idle);
        f.rss_per_session_kib = Some(per);
    }
    f
}

// ---------------------------------------------------------------------------------------------
// Processes under test

struct Proc {
    child: std::process::Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `mcp-warden wrap` on a free port, pinned to the target CPU, and waits for it.
/// The server people publish: server-everything started by `npx` (offline, from
/// `tests/js`). A new session's first tool result: the raw STDIO floor (spawn, initialize,
/// call), mcp-warden without and with warm spares, and the peer, in one run.
async fn spare_table(
    warden: &std::path::Path,
    repo: &std::path::Path,
    peer_js: &std::path::Path,
    plan: &Plan,
    target_cpu: Option<usize>,
    load_cpu: Option<usize>,
) {
    let js = repo.join("tests/js");
    if !js.join("node_modules/.bin/mcp-server-everything").exists() {
        println!("(npx rows skipped: run ./scripts/setup-test-deps)");
        return;
    }
    let npx: Vec<String> = ["npx", "--offline", "mcp-server-everything", "stdio"]
        .map(String::from)
        .to_vec();
    let in_js = |cmd: &[String]| -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!("cd '{}' && exec {}", js.display(), cmd.join(" ")),
        ]
    };
    let cold = (plan.setups / 10).max(3);
    ECHO_ARG_MESSAGE.store(true, Ordering::Relaxed);
    let mut rows: Vec<(&str, Duration)> = Vec::new();
    let floor = setup(&Target::Floor { cmd: in_js(&npx) }, cold).await;
    rows.push(("floor: STDIO, npx", floor));
    let warm_n = (plan.setups / 5).max(5);
    let prestarted = setup_prestarted(&in_js(&npx), warm_n, 3 * floor).await;
    rows.push(("floor: STDIO, npx started ahead", prestarted));
    let cwd = ["--cwd".to_owned(), js.display().to_string()];
    let (w, addr) = start_warden(warden, &npx, &cwd, target_cpu, load_cpu).await;
    let t = Target::Http {
        addr,
        path: "/mcp",
        sse: false,
        pid: w.child.id(),
        token: None,
    };
    rows.push(("mcp-warden, no spares", setup(&t, cold).await));
    drop(w);
    let mut args = cwd.to_vec();
    args.extend(["--spare".to_owned(), "2".to_owned()]);
    let (w, addr) = start_warden(warden, &npx, &args, target_cpu, load_cpu).await;
    let t = Target::Http {
        addr,
        path: "/mcp",
        sse: false,
        pid: w.child.id(),
        token: None,
    };
    // Time for the spares to start, and for a replacement after each session (it waits a
    // second first).
    let warm = setup_paced(&t, warm_n, 3 * floor + Duration::from_secs(1)).await;
    rows.push(("mcp-warden, --spare 2 (warm)", warm));
    drop(w);
    let mut peer = None;
    if peer_js.exists() {
        let (p, t) = start_peer(peer_js, &npx.join(" "), &js, target_cpu, load_cpu).await;
        let d = setup(&t, cold).await;
        rows.push(("peer: supergateway 4.0.0", d));
        peer = Some(d);
        drop(p);
    }
    ECHO_ARG_MESSAGE.store(false, Ordering::Relaxed);
    println!();
    println!("New session → first tool result, server-everything under `npx --offline`:");
    println!();
    println!("| | setup p50 | × floor | × floor started ahead | × peer |");
    println!("|---|---:|---:|---:|---:|");
    for (name, d) in &rows {
        let ratio = |base: Duration| format!("{:.3}", d.as_secs_f64() / base.as_secs_f64());
        println!(
            "| {name} | {:.1} ms | {} | {} | {} |",
            d.as_secs_f64() * 1e3,
            ratio(floor),
            ratio(prestarted),
            peer.map_or("–".into(), ratio)
        );
    }
}

/// The peer (supergateway: Streamable HTTP, stateful, a child per session) wrapping
/// `command`, run from `cwd`; the target to measure it as.
async fn start_peer(
    peer_js: &std::path::Path,
    command: &str,
    cwd: &std::path::Path,
    target_cpu: Option<usize>,
    load_cpu: Option<usize>,
) -> (Proc, Target) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let p = spawn_pinned(
        std::process::Command::new("node")
            .current_dir(cwd)
            .arg(peer_js)
            .args([
                "--stdio",
                command,
                "--outputTransport",
                "streamableHttp",
                "--stateful",
                "--port",
                &port.to_string(),
                "--logLevel",
                "none",
            ]),
        target_cpu,
    );
    if let Some(c) = load_cpu {
        pin(c);
    }
    wait_listening(addr).await;
    let t = Target::Http {
        token: None,
        addr,
        path: "/mcp",
        sse: false,
        pid: p.child.id(),
    };
    (p, t)
}

async fn start_warden(
    warden: &std::path::Path,
    echo: &[String],
    extra: &[String],
    target_cpu: Option<usize>,
    load_cpu: Option<usize>,
) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = std::process::Command::new(warden);
    cmd.args([
        "wrap",
        "--listen",
        &addr.to_string(),
        "--max-sessions",
        "1000",
        "--log-level",
        "warn",
    ]);
    if !extra.iter().any(|a| a == "--dev") {
        cmd.arg("--no-auth");
    }
    cmd.args(extra).arg("--").args(echo);
    let p = spawn_pinned(&mut cmd, target_cpu);
    if let Some(c) = load_cpu {
        pin(c);
    }
    wait_listening(addr).await;
    (p, addr)
}

/// A token of the development issuer for the instance at `addr`.
fn mint_token(warden: &std::path::Path, key: &std::path::Path, addr: SocketAddr) -> Arc<str> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !key.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = std::process::Command::new(warden)
        .args([
            "token",
            "--dev-key-file",
            key.to_str().unwrap(),
            "--sub",
            "bench",
            "--scope",
            "mcp:tools",
        ])
        .args(["--listen", &addr.to_string(), "--ttl", "2h"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Arc::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a process pinned to the target CPU (the mask is inherited by its children).
fn spawn_pinned(cmd: &mut std::process::Command, target_cpu: Option<usize>) -> Proc {
    if let Some(cpu) = target_cpu {
        pin(cpu);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc { child }
}

fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Report

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

struct Row {
    name: String,
    f: Figures,
}

fn print_table(rows: &[Row], floor: &Figures, peer: Option<&Figures>) {
    type Get = fn(&Figures) -> Option<f64>;
    type Column = (&'static str, Get, fn(f64) -> String);
    let cols: [Column; 8] = [
        (
            "p50 64 B",
            |f| f.latency_p50.map(|d| d.as_secs_f64()),
            |v| us(Duration::from_secs_f64(v)),
        ),
        (
            "p99 64 B",
            |f| f.latency_p99.map(|d| d.as_secs_f64()),
            |v| us(Duration::from_secs_f64(v)),
        ),
        ("calls/s 16×4", |f| f.throughput, |v| format!("{v:.0}")),
        (
            "CPU/call",
            |f| f.cpu_per_call.map(|d| d.as_secs_f64()),
            |v| us(Duration::from_secs_f64(v)),
        ),
        (
            "p50 64 KiB",
            |f| f.big_p50.map(|d| d.as_secs_f64()),
            |v| us(Duration::from_secs_f64(v)),
        ),
        (
            "setup p50",
            |f| f.setup_p50.map(|d| d.as_secs_f64()),
            |v| us(Duration::from_secs_f64(v)),
        ),
        (
            "idle RSS",
            |f| f.idle_rss_kib.map(|v| v as f64),
            |v| format!("{:.1} MiB", v / 1024.0),
        ),
        (
            "RSS/session",
            |f| f.rss_per_session_kib,
            |v| format!("{v:.0} KiB"),
        ),
    ];
    println!();
    println!(
        "{:<34} {}",
        "",
        cols.iter()
            .map(|c| format!("{:>14}", c.0))
            .collect::<String>()
    );
    for row in rows {
        let vals: String = cols
            .iter()
            .map(|(_, get, fmt)| format!("{:>14}", get(&row.f).map_or("–".into(), fmt)))
            .collect();
        println!("{:<34} {vals}", row.name);
        let vs = |other: &Figures, label: &str| {
            let r: String = cols
                .iter()
                .map(|(_, get, _)| {
                    format!(
                        "{:>14}",
                        get(&row.f).map_or("".into(), |v| ratio(v, get(other)))
                    )
                })
                .collect();
            println!("{:<34} {r}", format!("  ÷ {label}"));
        };
        if !row.name.starts_with("floor") {
            vs(floor, "floor");
            if let Some(p) = peer
                && !row.name.starts_with("peer")
            {
                vs(p, "peer");
            }
        }
    }
}

fn goal(ok: bool, text: &str) {
    println!("  [{}] {text}", if ok { "met" } else { "NOT met" });
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--echo-server") {
        echo_server();
    }
    // `cargo bench` passes `--bench`; anything else selects a quick run.
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(quick));
}

async fn run(quick: bool) {
    let only_spares = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "spares");
    let plan = if quick {
        Plan {
            latency_calls: 500,
            throughput_secs: 1.0,
            big_calls: 50,
            setups: 10,
            idle_sessions: 20,
        }
    } else {
        Plan {
            latency_calls: 5000,
            throughput_secs: 5.0,
            big_calls: 500,
            setups: 50,
            idle_sessions: 100,
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (target_cpu, load_cpu) = if cpus >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let me = std::env::current_exe().unwrap();
    let echo = vec![me.display().to_string(), "--echo-server".to_owned()];
    let warden = PathBuf::from(env!("CARGO_BIN_EXE_mcp-warden"));
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

    println!("mcp-warden bridge benchmark");
    println!(
        "machine: {} CPUs; targets pinned to CPU {}, load generator to CPU {}",
        cpus,
        target_cpu.map_or("–".into(), |c| c.to_string()),
        load_cpu.map_or("–".into(), |c| c.to_string())
    );
    println!("wrapped server: this binary's --echo-server (STDIO MCP echo)");

    if only_spares {
        let sg = repo.join("tests/js/node_modules/supergateway/dist/index.js");
        spare_table(&warden, &repo, &sg, &plan, target_cpu, load_cpu).await;
        return;
    }
    let mut rows: Vec<Row> = Vec::new();

    // The floor: load generator ↔ echo server stdio, no HTTP.
    let floor_target = Target::Floor { cmd: echo.clone() };
    let floor = measure_floor(&floor_target, &plan, target_cpu, load_cpu).await;
    rows.push(Row {
        name: "floor: STDIO, no HTTP".into(),
        f: floor.clone(),
    });

    // mcp-warden, auth off: JSON answers, SSE answers, legacy SSE.
    let (w, addr) = start_warden(&warden, &echo, &[], target_cpu, load_cpu).await;
    let pid = w.child.id();
    // RSS before any session: the table's idle RSS is taken after all the runs below.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh_rss_kib = proc::rss_kib(pid as i32);
    let http = |sse: bool, pid: u32, addr: SocketAddr, token: Option<Arc<str>>| Target::Http {
        addr,
        path: "/mcp",
        sse,
        pid,
        token,
    };
    let f = measure(
        &http(false, pid, addr, None),
        &plan,
        &["latency", "throughput", "big", "setup", "memory"],
    )
    .await;
    rows.push(Row {
        name: "mcp-warden, JSON answers".into(),
        f,
    });
    let f = measure(
        &http(true, pid, addr, None),
        &plan,
        &["latency", "throughput"],
    )
    .await;
    rows.push(Row {
        name: "mcp-warden, SSE answers".into(),
        f,
    });
    let f = measure(&Target::Legacy { addr, pid }, &plan, &["latency"]).await;
    rows.push(Row {
        name: "mcp-warden, legacy HTTP+SSE".into(),
        f,
    });
    let f = measure(
        &Target::Sessionless { addr, pid },
        &plan,
        &["latency", "throughput", "big"],
    )
    .await;
    rows.push(Row {
        name: "mcp-warden, sessionless (2026-07-28)".into(),
        f,
    });
    drop(w);

    // Auth on (a JWT of the development issuer), then auth + a typical policy: scoped rules,
    // argument detectors, output redaction of detectors and an injected credential, a rate
    // limit, and a hash-chained audit file.
    let work = std::env::temp_dir().join(format!("warden-bench-{}", std::process::id()));
    let keys = work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let dev_key = keys.join("dev-key.pem");
    let policy_file = work.join("policy.toml");
    std::fs::write(
        &policy_file,
        format!(
            "{}\n[audit]\noutput = \"{}\"\n",
            include_str!("policy.toml"),
            work.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    // The injected credential lives apart from anything the server may read.
    let credential = keys.join("credential");
    std::fs::write(&credential, "bench-credential-0123456789").unwrap();
    std::fs::set_permissions(
        &credential,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // One principal opens every session of a run: its per-principal limits would measure
    // refusals, not the bridge.
    let dev = [
        "--dev".to_owned(),
        "--dev-key-file".to_owned(),
        dev_key.display().to_string(),
        "--max-sessions-per-principal".to_owned(),
        "1000".to_owned(),
        "--session-rate-per-principal".to_owned(),
        "off".to_owned(),
    ];
    for (name, policy) in [
        ("mcp-warden, JSON answers, auth", false),
        ("mcp-warden, JSON answers, auth + policy", true),
    ] {
        let mut args: Vec<String> = dev.to_vec();
        if policy {
            args.extend([
                "--env-file".to_owned(),
                format!("BENCH_INJECTED_CREDENTIAL={}", credential.display()),
                "--config".to_owned(),
                policy_file.display().to_string(),
            ]);
        }
        let (w, addr) = start_warden(&warden, &echo, &args, target_cpu, load_cpu).await;
        let token = mint_token(&warden, &dev_key, addr);
        let f = measure(
            &http(false, w.child.id(), addr, Some(token)),
            &plan,
            &["latency", "throughput", "big"],
        )
        .await;
        rows.push(Row {
            name: name.into(),
            f,
        });
        drop(w);
    }
    let _ = std::fs::remove_dir_all(&work);

    // The peer: supergateway (npm), Streamable HTTP, stateful = child per session.
    let sg = repo.join("tests/js/node_modules/supergateway/dist/index.js");
    let mut peer = None;
    if sg.exists() {
        let (p, t) = start_peer(&sg, &echo.join(" "), &repo, target_cpu, load_cpu).await;
        let f = measure(
            &t,
            &plan,
            &["latency", "throughput", "big", "setup", "memory"],
        )
        .await;
        rows.push(Row {
            name: "peer: supergateway 4.0.0".into(),
            f: f.clone(),
        });
        peer = Some(f);
        drop(p);
    } else {
        println!("(peer skipped: run ./scripts/setup-test-deps to install supergateway)");
    }

    // Warm spares with the echo server: a new session's setup once the spares are warm.
    let (w, addr) = start_warden(
        &warden,
        &echo,
        &["--spare".into(), "2".into()],
        target_cpu,
        load_cpu,
    )
    .await;
    let spared = http(false, w.child.id(), addr, None);
    let f = Figures {
        setup_p50: Some(setup_paced(&spared, plan.setups, Duration::from_millis(1100)).await),
        ..Figures::default()
    };
    rows.push(Row {
        name: "mcp-warden, JSON answers, --spare 2".into(),
        f,
    });
    drop(w);

    print_table(&rows, &floor, peer.as_ref());
    spare_table(&warden, &repo, &sg, &plan, target_cpu, load_cpu).await;
    let misrouted = MISROUTED.load(Ordering::Relaxed);
    println!();
    println!(
        "mcp-warden RSS before its first session: {:.1} MiB (the table's idle RSS is after the runs)",
        fresh_rss_kib as f64 / 1024.0
    );
    println!("responses delivered to a request that did not ask for them: {misrouted}");
    let busiest = rows
        .iter()
        .filter_map(|r| r.f.loadgen_busy)
        .fold(0.0f64, f64::max);
    println!(
        "load generator CPU during throughput runs: up to {:.0}% of its core{}",
        busiest * 100.0,
        if busiest > 0.9 {
            " — it may be the bottleneck"
        } else {
            " — not the bottleneck"
        }
    );
    let w = &rows[1].f;
    println!();
    println!("goals (mcp-warden, JSON answers):");
    if let (Some(l), Some(fl)) = (w.latency_p50, floor.latency_p50) {
        goal(
            l.as_secs_f64() <= 2.0 * fl.as_secs_f64(),
            &format!(
                "p50 latency ≤ 2 × floor ({:.2}×)",
                l.as_secs_f64() / fl.as_secs_f64()
            ),
        );
    }
    if let (Some(l), Some(p)) = (w.latency_p50, peer.as_ref().and_then(|p| p.latency_p50)) {
        goal(
            p.as_secs_f64() >= 4.0 * l.as_secs_f64(),
            &format!(
                "p50 latency ≥ 4 × better than the peer ({:.1}×)",
                p.as_secs_f64() / l.as_secs_f64()
            ),
        );
    }
    if let Some(t) = w.throughput {
        goal(
            t >= 50_000.0,
            &format!("throughput ≥ 50 000 calls/s ({t:.0})"),
        );
        if let Some(pt) = peer.as_ref().and_then(|p| p.throughput) {
            goal(
                t >= 15.0 * pt,
                &format!("throughput ≥ 15 × the peer ({:.1}×)", t / pt),
            );
        }
    }
    if let Some(c) = w.cpu_per_call {
        goal(
            c <= Duration::from_micros(20),
            &format!("≤ 20 µs sidecar CPU per call ({})", us(c)),
        );
    }
    if let (Some(b), Some(fb)) = (w.big_p50, floor.big_p50) {
        goal(
            b.as_secs_f64() <= 1.5 * fb.as_secs_f64(),
            &format!(
                "64 KiB p50 ≤ 1.5 × floor ({:.2}×)",
                b.as_secs_f64() / fb.as_secs_f64()
            ),
        );
    }
    if let (Some(s), Some(fs)) = (w.setup_p50, floor.setup_p50) {
        goal(
            s <= fs + Duration::from_millis(1),
            &format!(
                "session setup ≤ floor + 1 ms (+{})",
                us(s.saturating_sub(fs))
            ),
        );
    }
    if let Some(r) = w.idle_rss_kib {
        goal(
            r <= 12 * 1024,
            &format!("idle RSS ≤ 12 MiB ({:.1} MiB)", r as f64 / 1024.0),
        );
    }
    if let Some(r) = w.rss_per_session_kib {
        goal(
            r <= 64.0,
            &format!("≤ 64 KiB RSS per idle session, child excluded ({r:.0} KiB)"),
        );
    }
    // With the load generator saturated, calls/s hides the sidecar's cost: its CPU per call
    // is what auth and policy add to (calls/s of a sidecar bound to one core is 1 / CPU).
    if let Some(p) = rows.iter().find(|r| r.name.ends_with("auth + policy"))
        && let (Some(c), Some(cp)) = (w.cpu_per_call, p.f.cpu_per_call)
    {
        let more = cp.as_secs_f64() / c.as_secs_f64() - 1.0;
        let tput = match (w.throughput, p.f.throughput) {
            (Some(t), Some(tp)) => format!(", calls/s {:+.1}%", 100.0 * (tp / t - 1.0)),
            _ => String::new(),
        };
        goal(
            more <= 0.10,
            &format!(
                "auth + policy cost ≤ 10% of throughput (sidecar CPU per call {:+.1}%{tput})",
                100.0 * more
            ),
        );
    }
    goal(misrouted == 0, "no response delivered to the wrong request");
}

/// The floor needs its echo children on the target CPU and the generator on the other: pin
/// around each spawn.
async fn measure_floor(
    t: &Target,
    plan: &Plan,
    target_cpu: Option<usize>,
    load_cpu: Option<usize>,
) -> Figures {
    // The echo children are spawned by the generator itself (in `open`), so they are moved to
    // the target CPU right after spawning.
    if let Some(c) = load_cpu {
        pin(c);
    }
    PIN_CHILDREN.store(target_cpu.map_or(u64::MAX, |c| c as u64), Ordering::Relaxed);
    let f = measure(t, plan, &["latency", "throughput", "big", "setup"]).await;
    PIN_CHILDREN.store(u64::MAX, Ordering::Relaxed);
    f
}

/// CPU the floor's echo children are moved to after spawning (u64::MAX: none).
static PIN_CHILDREN: AtomicU64 = AtomicU64::new(u64::MAX);
