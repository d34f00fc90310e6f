//! Hostile HTTP clients: oversized, slow, malformed, flooding. Each attack gets a clear
//! status or a closed connection, never a crash or unbounded memory, while a bystander
//! session on the same sidecar keeps being answered within a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::http::{ACCEPT_BOTH, Mcp, final_response, text};
use crate::support::proc::{fd_count, rss_kib};
use crate::support::{Warden, fixture, until};

/// How long a bystander's call may take while an attack runs. Generous: it is a bound on
/// starvation, not a latency measurement.
const BOUND: Duration = Duration::from_secs(5);

/// A session that keeps calling `echo` while an attack runs, and fails the test if a call
/// goes unanswered within [`BOUND`].
struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Bystander {
    async fn start(w: &Warden) -> Bystander {
        let mut m = Mcp::new(w.mcp_url());
        m.initialize().await;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut answered = 0usize;
            while !flag.load(Ordering::Relaxed) || answered == 0 {
                let want = format!("bystander {answered}");
                let r = tokio::time::timeout(
                    BOUND,
                    m.call_tool(json!(answered), "echo", json!({"text": want})),
                )
                .await
                .unwrap_or_else(|_| panic!("bystander call {answered} unanswered in {BOUND:?}"));
                assert_eq!(text(&r), want, "{r}");
                answered += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answered
        });
        Bystander { stop, task }
    }

    /// Stops and returns how many calls were answered.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Sessions the sidecar started so far (the bystander's is one).
fn sessions_started(w: &Warden) -> usize {
    w.logs().matches("session started").count()
}

fn init_body() -> String {
    json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string()
}

/// A request head for `POST /mcp` with the usual headers, and `extra` header lines.
fn post_head(len: usize, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n{extra}\r\n"
    )
}

/// Reads from `tcp` until the server closes it (EOF or reset) or `timeout` passes. Returns
/// what was read, and whether the connection was closed.
async fn read_until_closed(tcp: &mut TcpStream, timeout: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` on a new connection; returns the status line of the answer.
async fn status_of(w: &Warden, bytes: &[u8]) -> String {
    let mut tcp = TcpStream::connect(w.addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        if n == 0 || got.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn connections_that_never_send_a_request_are_closed() {
    let w = Warden::builder(fixture())
        .args(["--header-read-timeout", "1s"])
        .start();
    let bystander = Bystander::start(&w).await;
    let baseline = fd_count(w.pid());
    // Silent connections, a few bytes of the HTTP/2 preface (which keep HTTP version
    // detection waiting), and an HTTP/1.1 head that never ends.
    let mut attackers = Vec::new();
    for i in 0..150 {
        let mut tcp = TcpStream::connect(w.addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
            _ => tcp
                .write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n")
                .await
                .unwrap(),
        }
        attackers.push(tcp);
    }
    let started = Instant::now();
    for (i, tcp) in attackers.iter_mut().enumerate() {
        let left = Duration::from_secs(15).saturating_sub(started.elapsed());
        let (_, closed) = read_until_closed(tcp, left).await;
        assert!(closed, "attacker connection {i} still open after 15 s");
    }
    eprintln!(
        "150 silent connections closed after {:?}",
        started.elapsed()
    );
    assert!(bystander.finish().await > 0);
    assert!(
        until(Duration::from_secs(5), || (fd_count(w.pid())
            <= baseline + 2)
            .then_some(()))
        .await
        .is_some(),
        "descriptors not released: {baseline} before, {} after",
        fd_count(w.pid())
    );
}

#[tokio::test]
async fn slowloris_headers_are_cut_off() {
    let w = Warden::builder(fixture())
        .args(["--header-read-timeout", "1s"])
        .start();
    let bystander = Bystander::start(&w).await;
    let mut tcp = TcpStream::connect(w.addr).await.unwrap();
    let head = post_head(10, "x-filler: abcdefghijklmnopqrstuvwxyz\r\n");
    // One byte every 50 ms: the whole head would take over 8 seconds.
    let started = Instant::now();
    let mut cut_off = false;
    for b in head.as_bytes() {
        if tcp.write_all(&[*b]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut probe = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut probe)).await
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the trickled head was read to the end");
    eprintln!("trickled head cut off after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let w = Warden::builder(fixture())
        .args(["--body-read-timeout", "1s"])
        .start();
    let bystander = Bystander::start(&w).await;
    let body = init_body();
    // Half a body, then nothing; and a body trickled a byte at a time.
    let mut stalled = TcpStream::connect(w.addr).await.unwrap();
    stalled
        .write_all(post_head(body.len(), "").as_bytes())
        .await
        .unwrap();
    stalled
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let mut trickled = TcpStream::connect(w.addr).await.unwrap();
    trickled
        .write_all(post_head(body.len(), "").as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for b in body.as_bytes() {
            if trickled.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        read_until_closed(&mut trickled, Duration::from_secs(10)).await
    });
    let (answer, _) = read_until_closed(&mut stalled, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    let (answer, _) = trickle.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(sessions_started(&w), 1, "no server for a slow body");
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn oversized_headers_get_431_and_memory_stays_bounded() {
    let w = Warden::start(fixture());
    let bystander = Bystander::start(&w).await;
    let before = rss_kib(w.pid());
    let body = init_body();
    // One huge header, then very many small ones.
    let huge = post_head(
        body.len(),
        &format!("x-big: {}\r\n", "a".repeat(100 * 1024)),
    );
    let many_lines: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = post_head(body.len(), &many_lines);
    for _ in 0..20 {
        for head in [&huge, &many] {
            let mut req = head.clone().into_bytes();
            req.extend_from_slice(body.as_bytes());
            let status = status_of(&w, &req).await;
            assert!(status.starts_with("HTTP/1.1 431"), "{status}");
        }
    }
    // A long URI.
    let uri = format!(
        "GET /mcp?{} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        "q".repeat(100 * 1024)
    );
    let status = status_of(&w, uri.as_bytes()).await;
    assert!(
        status.starts_with("HTTP/1.1 431") || status.starts_with("HTTP/1.1 414"),
        "{status}"
    );
    let after = rss_kib(w.pid());
    eprintln!("RSS {before} KiB → {after} KiB after 40 oversized heads");
    assert!(after < before + 32 * 1024, "{before} KiB → {after} KiB");
    assert_eq!(sessions_started(&w), 1, "only the bystander's");
    assert!(bystander.finish().await > 0);
}

/// A session of its own for malformed messages.
async fn session(w: &Warden) -> Mcp {
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    m
}

async fn post_raw(m: &Mcp, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = m
        .client
        .post(&m.url)
        .headers(m.headers())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn invalid_utf8_is_refused_wherever_it_appears() {
    let w = Warden::start(fixture());
    let bystander = Bystander::start(&w).await;
    let m = session(&w).await;
    // Valid JSON structure, invalid UTF-8 inside a string, in a key, and a lone surrogate
    // escape (valid UTF-8 bytes, not a valid string).
    let mut in_value =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"#.to_vec();
    in_value.extend_from_slice(b"\"\xc3\x28\"}}}");
    let mut in_key =
        br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{""#
            .to_vec();
    in_key.extend_from_slice(b"\xff\xfe\":1}}}");
    let overlong = b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"\xc0\xaf\"}}}".to_vec();
    for (what, body) in [
        ("in a value", in_value),
        ("in a key", in_key),
        ("overlong encoding", overlong),
    ] {
        let (status, answer) = post_raw(&m, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], -32700, "{what}: {answer}");
    }
    // In headers the transport reads: refused, not guessed at.
    for (name, value) in [
        ("mcp-session-id", &b"\xff\xfe"[..]),
        ("mcp-protocol-version", b"2025-11-25\xff"),
    ] {
        let mut h = m.headers();
        h.insert(
            reqwest::header::HeaderName::from_static(name),
            reqwest::header::HeaderValue::from_bytes(value).unwrap(),
        );
        let r = m
            .client
            .post(&m.url)
            .headers(h.clone())
            .body(json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name} on POST");
        let r = m.client.get(&m.url).headers(h).send().await.unwrap();
        assert_eq!(r.status(), 400, "{name} on GET");
    }
    let mut h = m.headers();
    h.insert(
        "last-event-id",
        reqwest::header::HeaderValue::from_bytes(b"1-\xff").unwrap(),
    );
    let r = m.client.get(&m.url).headers(h).send().await.unwrap();
    assert_eq!(r.status(), 400, "last-event-id on GET");
    // The session is intact.
    assert_eq!(
        text(&m.call_tool(json!(10), "echo", json!({"text":"ok"})).await),
        "ok"
    );
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn deep_nesting_is_refused_on_every_path() {
    let w = Warden::start(fixture());
    let bystander = Bystander::start(&w).await;
    let m = session(&w).await;
    let deep =
        |open: &str, close: &str, n: usize| format!("{}1{}", open.repeat(n), close.repeat(n));
    let objects = {
        let mut s = String::new();
        for _ in 0..200 {
            s.push_str("{\"a\":");
        }
        s.push('1');
        s.push_str(&"}".repeat(200));
        s
    };
    let bodies = [
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":{}}}}}}}"#,
            deep("[", "]", 200)
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":{objects}}}}}}}"#
        ),
        // An answer to a server request, and a notification.
        format!(r#"{{"jsonrpc":"2.0","id":"s1","result":{}}}"#, objects),
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"x":{}}}}}"#,
            deep("[", "]", 100_000)
        ),
        // Unbalanced: a million openings and nothing else.
        "[".repeat(1_000_000),
    ];
    for body in bodies {
        let (status, answer) = post_raw(&m, body.clone()).await;
        assert_eq!(status, 400, "{}: {answer}", &body[..60.min(body.len())]);
    }
    // The legacy message endpoint too.
    let mut l = super::legacy::Legacy::connect(&w).await;
    l.request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    let r = l
        .client
        .post(w.url(&l.endpoint))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"x":{}}}}}}}"#,
            deep("[", "]", 200)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        text(&m.call_tool(json!(3), "echo", json!({"text":"ok"})).await),
        "ok"
    );
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn huge_numbers_and_ids_get_clear_answers() {
    let w = Warden::builder(fixture())
        .args(["--request-timeout", "2s"])
        .start();
    let bystander = Bystander::start(&w).await;
    let m = session(&w).await;
    let big = "9".repeat(400);
    let call = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x"}}}}}}"#
        )
    };
    // Ids no server could echo back faithfully are refused at once: floats, exponents,
    // integers beyond 64 bits.
    for id in [
        "1e400",
        "-1e400",
        "1.0",
        big.as_str(),
        &format!("-{big}"),
        "9223372036854775808",
        "-9223372036854775809",
    ] {
        let (status, answer) = post_raw(&m, call(id)).await;
        assert_eq!(status, 400, "id {id}: {answer}");
        assert_eq!(answer["error"]["code"], -32600, "id {id}: {answer}");
    }
    // The 64-bit extremes are ids like any other.
    for id in ["9223372036854775807", "-9223372036854775808"] {
        let (status, _) = post_raw(&m, call(id)).await;
        assert_eq!(status, 200, "id {id}");
    }
    // Huge numbers in arguments are the server's business: forwarded untouched, and the
    // client gets an answer (here the fixture cannot parse them and the request times out).
    for n in ["1e400", big.as_str()] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":"n","method":"tools/call","params":{{"name":"echo","arguments":{{"n":{n}}}}}}}"#
        );
        let r = m
            .client
            .post(&m.url)
            .headers(m.headers())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer = tokio::time::timeout(Duration::from_secs(10), final_response(r))
            .await
            .expect("no answer");
        assert_eq!(answer["id"], "n");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn duplicate_keys_are_refused_where_the_sidecar_reads_them() {
    let w = Warden::start(fixture());
    let bystander = Bystander::start(&w).await;
    let m = session(&w).await;
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"crash"}}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"params":{"name":"crash"}}"#,
        // The tool a server would run (the last `name`) is not the one the sidecar sees.
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"crash","arguments":{"text":"x"}}}"#,
    ] {
        let (status, answer) = post_raw(&m, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // Duplicates inside arguments are the server's to interpret.
    let (status, _) = post_raw(
        &m,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","text":"b"}}}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        text(&m.call_tool(json!(3), "echo", json!({"text":"alive"})).await),
        "alive",
        "the server was never asked to crash"
    );
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn wrong_content_types_get_415() {
    let w = Warden::start(fixture());
    let bystander = Bystander::start(&w).await;
    let m = session(&w).await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/jsonx"),
        Some("application/json-patch+json"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("text/event-stream"),
        Some(""),
    ] {
        let mut h = m.headers();
        h.remove("content-type");
        if let Some(ct) = ct {
            h.insert("content-type", ct.parse().unwrap());
        }
        let r = m
            .client
            .post(&m.url)
            .headers(h)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{ct:?}");
    }
    // Two Content-Type headers, one of them JSON: ambiguous, refused.
    let mut h = m.headers();
    h.append("content-type", "text/plain".parse().unwrap());
    let r = m
        .client
        .post(&m.url)
        .headers(h)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(bystander.finish().await > 0);
}
