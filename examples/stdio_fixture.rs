//! A small STDIO MCP server for tests and benchmarks: fast echo, plus behaviours that real
//! servers show only when they misbehave (crash, hang, garbage, huge lines, closed stdout,
//! ignored EOF or SIGTERM, floods, daemons).
//!
//! Run: `stdio_fixture [--ignore-eof] [--ignore-sigterm] [--exit-on-initialize]
//! [--die-mid-line-on-initialize] [--slow-initialize] [--modern] [--exit-on-discover]
//! [--modern-when=VAR=VALUE]`. Tools are selected by name
//! in `tools/call`; `received` tells what reached the server, `late` ignores cancellation,
//! `raw` writes any bytes.
//!
//! `--modern` makes it a native 2026-07-28 server: it answers `server/discover`, refuses
//! `initialize` and any request without the era's envelope, asks in round trips (`ask`), and
//! serves `subscriptions/listen` (`change` notifies every listener).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Default)]
struct Flags {
    ignore_eof: bool,
    ignore_sigterm: bool,
    exit_on_initialize: bool,
    die_mid_line_on_initialize: bool,
    /// Answers initialize only after a second: a server slow to start.
    slow_initialize: bool,
    /// Speaks the 2026-07-28 era only.
    modern: bool,
    /// Exits when asked `server/discover`: a session-era server that dies of the probe.
    exit_on_discover: bool,
}

/// Set by `--modern`: every result says it is complete, as the era requires.
static MODERN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

const ERA: &str = "2026-07-28";
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

type Out = Arc<Mutex<std::io::Stdout>>;

fn send(out: &Out, v: &Value) {
    let mut v = v.clone();
    if MODERN.load(std::sync::atomic::Ordering::Relaxed)
        && let Some(result) = v.get_mut("result").and_then(Value::as_object_mut)
    {
        result
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
    }
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.push(b'\n');
    if let Ok(mut o) = out.lock() {
        let _ = o.write_all(&line);
        let _ = o.flush();
    }
}

fn text_result(id: &Value, text: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":text}]}})
}

fn main() {
    let mut flags = Flags::default();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--ignore-eof" => flags.ignore_eof = true,
            "--ignore-sigterm" => flags.ignore_sigterm = true,
            "--exit-on-initialize" => flags.exit_on_initialize = true,
            "--die-mid-line-on-initialize" => flags.die_mid_line_on_initialize = true,
            "--slow-initialize" => flags.slow_initialize = true,
            "--modern" => flags.modern = true,
            "--exit-on-discover" => flags.exit_on_discover = true,
            // `--modern-when=VAR=VALUE`: native 2026-07-28 only when the environment says
            // so (a server whose behaviour depends on the principal it was started for).
            s if s.starts_with("--modern-when=") => {
                let rule = &s["--modern-when=".len()..];
                if let Some((var, value)) = rule.split_once('=') {
                    flags.modern = std::env::var(var).is_ok_and(|v| v == value);
                }
            }
            other => {
                eprintln!("stdio_fixture: unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    if flags.ignore_sigterm {
        // Ignoring is inherited across exec but needs no handler code.
        let _ = unsafe_free_ignore_sigterm();
    }
    eprintln!("stdio_fixture: ready (pid {})", std::process::id());
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let cancelled: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Responses to our own server→client requests, by id.
    let replies: Arc<Mutex<std::collections::HashMap<String, std::sync::mpsc::Sender<Value>>>> =
        Arc::default();
    let mut next_request = 0u64;
    MODERN.store(flags.modern, std::sync::atomic::Ordering::Relaxed);
    // Open `subscriptions/listen` requests (their ids), with `--modern`.
    let mut listeners: Vec<Value> = Vec::new();
    // Every request and notification read so far, for tests to ask what reached the server.
    let mut received: Vec<Value> = Vec::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            eprintln!("stdio_fixture: not JSON: {} bytes", line.len());
            continue;
        };
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        if method.is_empty() {
            // A response to one of our requests.
            if let Some(tx) = replies
                .lock()
                .ok()
                .and_then(|mut r| r.remove(&id.to_string()))
            {
                let _ = tx.send(msg);
            }
            continue;
        }
        received.push(json!({
            "method": method,
            "id": id,
            "name": msg.pointer("/params/name"),
            "requestId": msg.pointer("/params/requestId"),
        }));
        if flags.exit_on_discover && method == "server/discover" {
            std::process::exit(6);
        }
        if flags.modern && modern(&out, &msg, &method, &id, &mut listeners) {
            continue;
        }
        match method.as_str() {
            "initialize" => {
                if flags.exit_on_initialize {
                    std::process::exit(4);
                }
                if flags.slow_initialize {
                    std::thread::sleep(Duration::from_secs(1));
                }
                if flags.die_mid_line_on_initialize {
                    if let Ok(mut o) = out.lock() {
                        let _ = o.write_all(br#"{"jsonrpc":"2.0","id":"#);
                        let _ = o.flush();
                    }
                    std::process::exit(5);
                }
                let requested = msg
                    .pointer("/params/protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("2025-11-25");
                send(
                    &out,
                    &json!({"jsonrpc":"2.0","id":id,"result":{
                    "protocolVersion": requested,
                    "capabilities": {"tools": {}, "logging": {}},
                    "serverInfo": {"name": "stdio-fixture", "version": "1.0.0"}}}),
                );
            }
            "notifications/initialized" => {}
            "notifications/cancelled" => {
                if let Some(r) = msg.pointer("/params/requestId")
                    && let Ok(mut c) = cancelled.lock()
                {
                    c.insert(r.to_string());
                }
            }
            "ping" => send(&out, &json!({"jsonrpc":"2.0","id":id,"result":{}})),
            "tools/list" => send(
                &out,
                &json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
                {"name":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}]}}),
            ),
            "tools/call" => {
                let name = msg
                    .pointer("/params/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let args = msg
                    .pointer("/params/arguments")
                    .cloned()
                    .unwrap_or(json!({}));
                let token = msg.pointer("/params/_meta/progressToken").cloned();
                let num = |k: &str, d: u64| args.get(k).and_then(Value::as_u64).unwrap_or(d);
                match name.as_str() {
                    "echo" => {
                        let text = args.get("text").and_then(Value::as_str).unwrap_or("");
                        send(&out, &text_result(&id, text));
                    }
                    "pid" => send(&out, &text_result(&id, &std::process::id().to_string())),
                    "received" => {
                        let seen = Value::from(received[..received.len() - 1].to_vec());
                        send(&out, &text_result(&id, &seen.to_string()));
                    }
                    "late" => {
                        // Answers after `ms` whatever happens meanwhile: a server that
                        // ignores cancellation.
                        let text = args.get("text").and_then(Value::as_str).unwrap_or("");
                        let (out, text, ms) = (out.clone(), text.to_owned(), num("ms", 300));
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            send(&out, &text_result(&id, &text));
                        });
                    }
                    "raw" => {
                        // Writes `line` as is (with `$ID` replaced by this request's id and
                        // `$VAR` by the value of the variable `var`) to stdout, or to stderr
                        // with `stderr`, then answers `done` unless `answer` is false: bytes no
                        // JSON library would write.
                        let value = args
                            .get("var")
                            .and_then(Value::as_str)
                            .and_then(|v| std::env::var(v).ok())
                            .unwrap_or_default();
                        let line = args.get("line").and_then(Value::as_str).unwrap_or("");
                        // `$UVAR`: the value with every character `\uXXXX`-escaped.
                        let escaped: String = value
                            .encode_utf16()
                            .map(|u| format!("\\u{u:04x}"))
                            .collect();
                        let line = line
                            .replace("$ID", &id.to_string())
                            .replace("$UVAR", &escaped)
                            .replace("$VAR", &value);
                        if args.get("stderr").and_then(Value::as_bool) == Some(true) {
                            eprintln!("{line}");
                        } else if let Ok(mut o) = out.lock() {
                            let _ = o.write_all(line.as_bytes());
                            let _ = o.write_all(b"\n");
                            let _ = o.flush();
                        }
                        if args.get("answer").and_then(Value::as_bool) != Some(false) {
                            send(&out, &text_result(&id, "done"));
                        }
                    }
                    "http_get" => {
                        // GET `url` (plain http) with `Authorization: Bearer $<var>`: a
                        // server acting on an API with the credential it was given.
                        let url = args.get("url").and_then(Value::as_str).unwrap_or("");
                        let token = args
                            .get("var")
                            .and_then(Value::as_str)
                            .and_then(|v| std::env::var(v).ok());
                        let body = http_get(url, token.as_deref())
                            .unwrap_or_else(|e| format!("request failed: {e}"));
                        send(&out, &text_result(&id, &body));
                    }
                    "read_home" => {
                        // A file of the session's work dir (`$HOME`), as a server reading its
                        // credentials from a file does.
                        let name = args.get("name").and_then(Value::as_str).unwrap_or("");
                        let home = std::env::var("HOME").unwrap_or_default();
                        let text = std::fs::read_to_string(std::path::Path::new(&home).join(name))
                            .unwrap_or_else(|e| format!("cannot read: {e}"));
                        send(&out, &text_result(&id, &text));
                    }
                    "meta" => {
                        let meta = msg.pointer("/params/_meta").cloned().unwrap_or(Value::Null);
                        send(&out, &text_result(&id, &meta.to_string()));
                    }
                    "env" => {
                        let env: Vec<String> =
                            std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                        send(&out, &text_result(&id, &env.join("\n")));
                    }
                    "slow" | "hang" => {
                        let ms = if name == "hang" {
                            u64::MAX / 4
                        } else {
                            num("ms", 100)
                        };
                        let (out, cancelled) = (out.clone(), cancelled.clone());
                        std::thread::spawn(move || {
                            let step = Duration::from_millis(10);
                            let mut waited = 0u64;
                            while waited < ms {
                                std::thread::sleep(step);
                                waited += 10;
                                if cancelled
                                    .lock()
                                    .map(|c| c.contains(&id.to_string()))
                                    .unwrap_or(false)
                                {
                                    return;
                                }
                            }
                            send(&out, &text_result(&id, &format!("slept {ms} ms")));
                        });
                    }
                    "progress" => {
                        let steps = num("steps", 3);
                        let (out, token) = (out.clone(), token.clone());
                        std::thread::spawn(move || {
                            for i in 1..=steps {
                                if let Some(t) = &token {
                                    send(
                                        &out,
                                        &json!({"jsonrpc":"2.0","method":"notifications/progress",
                                        "params":{"progressToken":t,"progress":i,"total":steps}}),
                                    );
                                }
                                std::thread::sleep(Duration::from_millis(num_or(
                                    &args,
                                    "interval_ms",
                                    20,
                                )));
                            }
                            send(&out, &text_result(&id, &format!("done in {steps} steps")));
                        });
                    }
                    "notify" => {
                        for i in 0..num("count", 1) {
                            send(
                                &out,
                                &json!({"jsonrpc":"2.0","method":"notifications/message",
                                "params":{"level":"info","data":format!("note {i}")}}),
                            );
                        }
                        send(&out, &text_result(&id, "notified"));
                    }
                    "flood" => {
                        let payload = "x".repeat(num("bytes", 1024) as usize);
                        for i in 0..num("count", 1000) {
                            send(
                                &out,
                                &json!({"jsonrpc":"2.0","method":"notifications/message",
                                "params":{"level":"info","data":{"i":i,"pad":payload}}}),
                            );
                        }
                        send(&out, &text_result(&id, "flooded"));
                    }
                    "sample" => {
                        let rid = format!("fixture-{next_request}");
                        next_request += 1;
                        let (tx, rx) = std::sync::mpsc::channel();
                        if let Ok(mut r) = replies.lock() {
                            r.insert(Value::from(rid.clone()).to_string(), tx);
                        }
                        send(
                            &out,
                            &json!({"jsonrpc":"2.0","id":rid,"method":"sampling/createMessage","params":{
                            "messages":[{"role":"user","content":{"type":"text","text":args.get("prompt").and_then(Value::as_str).unwrap_or("hi")}}],
                            "maxTokens":10}}),
                        );
                        let out = out.clone();
                        std::thread::spawn(move || {
                            let reply = rx
                                .recv_timeout(Duration::from_secs(30))
                                .unwrap_or(Value::Null);
                            let text = reply
                                .pointer("/result/content/text")
                                .and_then(Value::as_str)
                                .unwrap_or("<no reply>");
                            send(&out, &text_result(&id, &format!("sampled: {text}")));
                        });
                    }
                    "crash" => std::process::exit(3),
                    "partial_then_die" => {
                        // The beginning of this call's answer, never finished.
                        if let Ok(mut o) = out.lock() {
                            let start =
                                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":["#);
                            let _ = o.write_all(start.as_bytes());
                            let _ = o.flush();
                        }
                        std::process::exit(4);
                    }
                    "garbage" => {
                        if let Ok(mut o) = out.lock() {
                            let _ = o.write_all(b"this is not json\n{\"also\": broken\n");
                            let _ = o.flush();
                        }
                        send(&out, &text_result(&id, "after garbage"));
                    }
                    "huge" => {
                        let big = "y".repeat(num("bytes", 10 << 20) as usize);
                        send(&out, &text_result(&id, &big));
                    }
                    "close_stdout" => {
                        // Replace fd 1 with nothing: the bridge sees EOF while we keep running.
                        drop(out.lock().map(|mut o| o.flush()));
                        close_stdout();
                    }
                    "spawn_daemon" => {
                        let child = std::process::Command::new("sh")
                            .args([
                                "-c",
                                "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!",
                            ])
                            .stderr(std::process::Stdio::null())
                            .output();
                        let pid = child
                            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                            .unwrap_or_default();
                        send(&out, &text_result(&id, &pid));
                    }
                    "stderr" => {
                        for i in 0..num("lines", 10) {
                            eprintln!("stderr line {i}");
                        }
                        send(&out, &text_result(&id, "wrote stderr"));
                    }
                    other => send(
                        &out,
                        &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32602,"message":format!("unknown tool {other}")}}),
                    ),
                }
            }
            _ if id.is_null() => {}
            _ => send(
                &out,
                &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"Method not found"}}),
            ),
        }
    }
    if flags.ignore_eof {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// What a native 2026-07-28 server does differently; `true` when the message was handled.
fn modern(out: &Out, msg: &Value, method: &str, id: &Value, listeners: &mut Vec<Value>) -> bool {
    let stamp = |listener: &Value| json!({ SUBSCRIPTION_ID: listener });
    if method == "notifications/cancelled" {
        let cancelled = msg.pointer("/params/requestId");
        listeners.retain(|l| Some(l) != cancelled);
        // The rest of the fixture takes it too (`received`, `slow`).
        return false;
    }
    if id.is_null() {
        return false;
    }
    if method == "initialize" {
        send(
            out,
            &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32022,
            "message":"this server speaks only the 2026-07-28 protocol",
            "data":{"supported":[ERA]}}}),
        );
        return true;
    }
    let version = msg
        .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
        .and_then(Value::as_str);
    if version != Some(ERA) {
        send(
            out,
            &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32602,
            "message":"the request lacks the 2026-07-28 envelope"}}),
        );
        return true;
    }
    let tool = msg.pointer("/params/name").and_then(Value::as_str);
    match (method, tool) {
        ("server/discover", _) => send(
            out,
            &json!({"jsonrpc":"2.0","id":id,"result":{
            "supportedVersions":[ERA],
            "capabilities":{"tools":{"listChanged":true}},
            "instructions":"a native fixture",
            "ttlMs":5000,"cacheScope":"public",
            "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"stdio-fixture-modern","version":"1.0.0"}}}}),
        ),
        ("subscriptions/listen", _) => {
            let filter = msg
                .pointer("/params/notifications")
                .cloned()
                .unwrap_or(json!({}));
            send(
                out,
                &json!({"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged",
                "params":{"_meta":stamp(id),"notifications":filter}}),
            );
            listeners.push(id.clone());
        }
        ("tools/call", Some("change")) => {
            for l in listeners.iter() {
                send(
                    out,
                    &json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed",
                    "params":{"_meta":stamp(l)}}),
                );
            }
            send(out, &text_result(id, &format!("told {}", listeners.len())));
        }
        ("tools/call", Some("ask")) => {
            // The question in the result, its state the server's own; the retry answers it.
            let answer = msg.pointer("/params/inputResponses/colour");
            let state = msg.pointer("/params/requestState").and_then(Value::as_str);
            match (answer, state) {
                (Some(a), Some("fixture-state")) => {
                    let colour = a
                        .pointer("/content/colour")
                        .and_then(Value::as_str)
                        .unwrap_or("none");
                    send(out, &text_result(id, &format!("you chose {colour}")));
                }
                _ => send(
                    out,
                    &json!({"jsonrpc":"2.0","id":id,"result":{
                    "resultType":"input_required",
                    "inputRequests":{"colour":{"method":"elicitation/create","params":{
                        "mode":"form","message":"Pick a colour",
                        "requestedSchema":{"type":"object","properties":{"colour":{"type":"string"}}}}}},
                    "requestState":"fixture-state"}}),
                ),
            }
        }
        _ => return false,
    }
    true
}

/// A minimal HTTP/1.1 GET of an `http://host:port/path` URL: the status line and body.
fn http_get(url: &str, bearer: Option<&str>) -> std::io::Result<String> {
    use std::io::Read;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// URLs"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut tcp = std::net::TcpStream::connect(authority)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = bearer
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        tcp,
        "GET /{path} HTTP/1.1\r\nhost: {authority}\r\n{auth}accept: application/json\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("");
    Ok(format!("{status}\n{body}"))
}

fn num_or(args: &Value, k: &str, d: u64) -> u64 {
    args.get(k).and_then(Value::as_u64).unwrap_or(d)
}

fn unsafe_free_ignore_sigterm() -> nix::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    // Blocking (rather than ignoring) needs no unsafe and has the same effect for a
    // single-threaded process that never unblocks it.
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

fn close_stdout() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}
