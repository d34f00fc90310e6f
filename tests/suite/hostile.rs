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
    let lone = br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\ud800"}}}"#.to_vec();
    for (what, body) in [
        ("in a value", in_value),
        ("in a key", in_key),
        ("overlong encoding", overlong),
        ("lone surrogate escape", lone),
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
    // Inside arguments too: conditions read one copy, a server may read the other (parsers
    // differ on first or last, and some match keys ignoring case).
    for body in [
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","text":"b"}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","Text":"b"}}}"#,
    ] {
        let (status, answer) = post_raw(&m, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
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

/// HTTP/2 frames written by hand, so a client can do what no well-behaved library would.
mod h2 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::net::tcp::OwnedReadHalf;

    pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub(super) const DATA: u8 = 0;
    pub(super) const HEADERS: u8 = 1;
    pub(super) const RST_STREAM: u8 = 3;
    pub(super) const SETTINGS: u8 = 4;
    pub(super) const PING: u8 = 6;
    pub(super) const GOAWAY: u8 = 7;
    pub(super) const CONTINUATION: u8 = 9;
    pub(super) const END_STREAM: u8 = 1;
    pub(super) const END_HEADERS: u8 = 4;
    pub(super) const ACK: u8 = 1;
    /// RST_STREAM error codes.
    pub(super) const CANCEL: u32 = 8;
    pub(super) const REFUSED_STREAM: u32 = 7;

    pub(super) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// A literal header field without indexing, its name from the HPACK static table.
    fn literal(out: &mut Vec<u8>, index: u8, value: &str) {
        if index < 15 {
            out.push(index);
        } else {
            out.extend_from_slice(&[0x0f, index - 15]);
        }
        assert!(value.len() < 127);
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }

    /// The header block of `POST /mcp` with JSON in and JSON or SSE out, plus `extra`
    /// (name, value) fields.
    pub(super) fn post_mcp(extra: &[(&str, &str)]) -> Vec<u8> {
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        literal(&mut block, 4, "/mcp"); // :path
        literal(&mut block, 1, "127.0.0.1"); // :authority
        literal(&mut block, 19, super::ACCEPT_BOTH); // accept
        literal(&mut block, 31, "application/json"); // content-type
        for (name, value) in extra {
            block.push(0x00);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    /// What the server sent on a connection.
    #[derive(Debug, Default)]
    pub(super) struct Seen {
        pub goaway: bool,
        pub resets: usize,
        pub refused: usize,
        pub headers: usize,
    }

    /// Connects, sends the preface and empty settings, and acknowledges the server's.
    pub(super) async fn connect(
        addr: std::net::SocketAddr,
    ) -> (OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = tcp.into_split();
        wr.write_all(PREFACE).await.unwrap();
        wr.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        loop {
            let (kind, flags, _, _) = read_frame(&mut rd).await.expect("server settings");
            if kind == SETTINGS && flags & ACK == 0 {
                break;
            }
        }
        wr.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        (rd, wr)
    }

    pub(super) async fn read_frame(rd: &mut OwnedReadHalf) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        rd.read_exact(&mut head).await.ok()?;
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], stream, payload))
    }

    /// Reads (and counts) everything the server sends until it closes the connection.
    pub(super) fn drain(mut rd: OwnedReadHalf) -> tokio::task::JoinHandle<Seen> {
        tokio::spawn(async move {
            let mut seen = Seen::default();
            while let Some((kind, _, _, payload)) = read_frame(&mut rd).await {
                match kind {
                    GOAWAY => seen.goaway = true,
                    HEADERS => seen.headers += 1,
                    RST_STREAM => {
                        seen.resets += 1;
                        if payload.get(..4) == Some(&REFUSED_STREAM.to_be_bytes()[..]) {
                            seen.refused += 1;
                        }
                    }
                    _ => {}
                }
            }
            seen
        })
    }
}

/// Sessions the sidecar holds, from its metrics.
async fn sessions_active(w: &Warden) -> u64 {
    let metrics = reqwest::get(w.admin_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_warden_sessions_active "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn http2_rapid_resets_leave_no_session_or_server_behind() {
    // Servers that take a moment to start, so resets land while sessions are being made.
    let mut slow_start = vec!["sh".into(), "-c".into(), "sleep 0.3; exec \"$0\"".into()];
    slow_start.extend(fixture());
    let w = Warden::builder(slow_start)
        .args(["--admin-listen", "127.0.0.1:0", "--kill-grace", "300ms"])
        .start();
    let bystander = Bystander::start(&w).await;
    let tree = crate::support::proc::descendants(w.pid()).len();
    let before = rss_kib(w.pid());
    // CVE-2023-44487: open and reset streams as fast as possible.
    let (rd, mut wr) = h2::connect(w.addr).await;
    let seen = h2::drain(rd);
    let headers = h2::post_mcp(&[("content-length", "0")]);
    let mut sent = 0u32;
    for i in 0..20_000u32 {
        let stream = 2 * i + 1;
        let mut burst = h2::frame(
            h2::HEADERS,
            h2::END_HEADERS | h2::END_STREAM,
            stream,
            &headers,
        );
        burst.extend(h2::frame(
            h2::RST_STREAM,
            0,
            stream,
            &h2::CANCEL.to_be_bytes(),
        ));
        if wr.write_all(&burst).await.is_err() {
            break;
        }
        sent += 1;
    }
    drop(wr);
    let seen = tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("connection not closed")
        .unwrap();
    eprintln!("rapid reset: {sent} streams opened and reset; server: {seen:?}");
    // Initializes reset after the session was made: each session ends with its request.
    let body = init_body();
    let (rd, mut wr) = h2::connect(w.addr).await;
    let seen = h2::drain(rd);
    let headers = h2::post_mcp(&[("content-length", &body.len().to_string())]);
    for i in 0..20u32 {
        let stream = 2 * i + 1;
        let mut request = h2::frame(h2::HEADERS, h2::END_HEADERS, stream, &headers);
        request.extend(h2::frame(h2::DATA, h2::END_STREAM, stream, body.as_bytes()));
        wr.write_all(&request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        wr.write_all(&h2::frame(
            h2::RST_STREAM,
            0,
            stream,
            &h2::CANCEL.to_be_bytes(),
        ))
        .await
        .unwrap();
    }
    drop(wr);
    tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("connection not closed")
        .unwrap();
    let settled = until(Duration::from_secs(20), || {
        (crate::support::proc::descendants(w.pid()).len() <= tree).then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "servers left behind: {:?}",
        crate::support::proc::descendants(w.pid())
    );
    assert_eq!(sessions_active(&w).await, 1, "only the bystander's session");
    let after = rss_kib(w.pid());
    eprintln!("RSS {before} KiB → {after} KiB");
    assert!(after < before + 32 * 1024, "{before} KiB → {after} KiB");
    assert!(bystander.finish().await > 0);
}

#[tokio::test]
async fn http2_stream_continuation_and_ping_floods_are_bounded() {
    let w = Warden::builder(fixture())
        .args(["--body-read-timeout", "1s"])
        .start();
    let bystander = Bystander::start(&w).await;
    let before = rss_kib(w.pid());

    // 1. More concurrent streams than the server allows (128), each waiting for a body.
    let (rd, mut wr) = h2::connect(w.addr).await;
    let seen = h2::drain(rd);
    let headers = h2::post_mcp(&[("content-length", "100")]);
    for i in 0..1000u32 {
        if wr
            .write_all(&h2::frame(
                h2::HEADERS,
                h2::END_HEADERS,
                2 * i + 1,
                &headers,
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    // The streams that were let in time out waiting for their bodies (408 each); the rest
    // are refused, or the connection is ended.
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(wr);
    let seen = tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("connection not closed")
        .unwrap();
    eprintln!("stream flood: {seen:?}");
    assert!(
        seen.goaway || seen.refused > 0,
        "streams beyond the limit were accepted: {seen:?}"
    );
    assert!(
        seen.headers <= 128,
        "more than 128 streams served: {seen:?}"
    );

    // 2. A header block that never ends (CONTINUATION flood), 16 MiB of it.
    let (rd, mut wr) = h2::connect(w.addr).await;
    let seen = h2::drain(rd);
    let mut cut_off = wr
        .write_all(&h2::frame(h2::HEADERS, 0, 1, &h2::post_mcp(&[])))
        .await
        .is_err();
    let junk = {
        let mut block = Vec::new();
        while block.len() < 16_000 {
            block.extend_from_slice(&[0x00, 10]);
            block.extend_from_slice(b"x-padding-");
            block.push(100);
            block.extend_from_slice(&[b'v'; 100]);
        }
        block
    };
    let continuation = h2::frame(h2::CONTINUATION, 0, 1, &junk);
    for _ in 0..1024 {
        if cut_off {
            break;
        }
        let write = wr.write_all(&continuation);
        cut_off = match tokio::time::timeout(Duration::from_secs(5), write).await {
            Ok(r) => r.is_err(),
            // The server stopped reading: as good as closed.
            Err(_) => true,
        };
    }
    drop(wr);
    let seen = tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("connection not closed")
        .unwrap();
    eprintln!("continuation flood: cut off {cut_off}, server {seen:?}");
    assert!(
        cut_off || seen.goaway,
        "16 MiB of header block accepted: {seen:?}"
    );
    assert_eq!(seen.headers, 0, "a request was made of it");

    // 3. Pings (each owes a pong) from a client that never reads.
    let (rd, mut wr) = h2::connect(w.addr).await;
    let ping = h2::frame(h2::PING, 0, 0, &[7u8; 8]);
    let pings: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100_000)
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(10), wr.write_all(&pings)).await;
    drop((rd, wr));

    let after = rss_kib(w.pid());
    eprintln!("RSS {before} KiB → {after} KiB after the HTTP/2 floods");
    assert!(after < before + 64 * 1024, "{before} KiB → {after} KiB");
    assert!(bystander.finish().await > 0);
    // Plain HTTP/2 (prior knowledge) still works.
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert_eq!(
        h2c.get(w.url("/healthz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_connection_flood_past_the_descriptor_limit_recovers_by_itself() {
    // The sidecar gets 256 descriptors; 600 connections that never send a request take them
    // all (the rest wait in the listen backlog) until each is closed for its silence.
    let w = Warden::builder(fixture())
        .via(["prlimit", "--nofile=256:256", "--"])
        .args(["--header-read-timeout", "1s"])
        .start();
    let bystander = Bystander::start(&w).await;
    let mut flood = Vec::new();
    for _ in 0..600 {
        flood.push(TcpStream::connect(w.addr).await.unwrap());
    }
    // A deadline, not a speed: on a loaded machine the connects take a while to land.
    w.wait_log("accept failed", Duration::from_secs(30));
    let started = Instant::now();
    for (i, tcp) in flood.iter_mut().enumerate() {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let (_, closed) = read_until_closed(tcp, left).await;
        assert!(closed, "flood connection {i} never closed");
    }
    eprintln!(
        "600 connections past the limit closed after {:?}",
        started.elapsed()
    );
    drop(flood);
    assert!(bystander.finish().await > 0);
    // New clients and new servers are served again.
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    assert_eq!(
        text(&m.call_tool(json!(1), "echo", json!({"text":"after"})).await),
        "after"
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_however_they_are_sent() {
    let w = Warden::builder(fixture())
        .args(["--max-message-bytes", "64KiB"])
        .start();
    let bystander = Bystander::start(&w).await;
    let before = rss_kib(w.pid());
    // Declared far beyond the limit: refused before any of it is read.
    let head = post_head(1 << 40, "");
    let status = status_of(&w, head.as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // Chunked, with no declared length, 64 MiB of it.
    let mut tcp = TcpStream::connect(w.addr).await.unwrap();
    tcp.write_all(
        format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: {ACCEPT_BOTH}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = format!("10000\r\n{}\r\n", "z".repeat(0x10000));
    for _ in 0..1024 {
        let write = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(chunk.as_bytes()));
        if !matches!(write.await, Ok(Ok(()))) {
            break;
        }
    }
    let (answer, _) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");
    // Over HTTP/2, a stream of 64 MiB.
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let body = futures_util::stream::iter(
        (0..1024).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'z'; 0x10000]))),
    );
    let r = h2c
        .post(w.mcp_url())
        .header("accept", ACCEPT_BOTH)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    let after = rss_kib(w.pid());
    eprintln!("RSS {before} KiB → {after} KiB after 128 MiB of oversized bodies");
    assert!(after < before + 32 * 1024, "{before} KiB → {after} KiB");
    assert_eq!(sessions_started(&w), 1, "only the bystander's");
    assert!(bystander.finish().await > 0);
}
