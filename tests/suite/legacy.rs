//! The HTTP+SSE transport (2024-11-05), on the wire.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http::{SseParser, with_timeout};
use crate::support::{Warden, fixture, until};

/// A legacy HTTP+SSE client: the stream, and the endpoint its `endpoint` event named.
pub(super) struct Legacy {
    resp: reqwest::Response,
    parser: SseParser,
    pub(super) endpoint: String,
    pub(super) client: reqwest::Client,
    base: String,
}

impl Legacy {
    pub(super) async fn connect(w: &Warden) -> Legacy {
        let client = reqwest::Client::new();
        let resp = client
            .get(w.url("/sse"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut l = Legacy {
            resp,
            parser: SseParser::default(),
            endpoint: String::new(),
            client,
            base: w.url(""),
        };
        let first = l.next().await;
        assert_eq!(first.0.as_deref(), Some("endpoint"));
        l.endpoint = first.1;
        l
    }

    pub(super) async fn next(&mut self) -> (Option<String>, String) {
        with_timeout(Duration::from_secs(10), async {
            loop {
                let chunk = self.resp.chunk().await.unwrap().expect("stream ended");
                if let Some(e) = self.parser.push(&chunk).into_iter().next() {
                    return (e.event, e.data);
                }
            }
        })
        .await
    }

    pub(super) async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{}", self.base, self.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Posts a request; its answer arrives as a `message` event.
    pub(super) async fn request(&mut self, body: Value) -> Value {
        let r = self.post(&body).await;
        assert_eq!(r.status(), 202);
        loop {
            let (event, data) = self.next().await;
            assert_eq!(event.as_deref(), Some("message"));
            let v: Value = serde_json::from_str(&data).unwrap();
            if v.get("id") == body.get("id")
                && (v.get("result").is_some() || v.get("error").is_some())
            {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn endpoint_event_then_messages_on_the_stream() {
    let w = Warden::start(fixture());
    let mut l = Legacy::connect(&w).await;
    assert!(
        l.endpoint.starts_with("/message?sessionId="),
        "{}",
        l.endpoint
    );
    let init = l
        .request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(
        l.post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await
            .status(),
        202
    );
    let r = l.request(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"via sse"}}})).await;
    assert_eq!(r["result"]["content"][0]["text"], "via sse");
}

#[tokio::test]
async fn the_discovery_probe_is_answered_without_the_server() {
    let w = Warden::start(fixture());
    let mut l = Legacy::connect(&w).await;
    let r = l
        .request(json!({"jsonrpc":"2.0","id":"probe","method":"server/discover","params":{}}))
        .await;
    assert_eq!(r["error"]["code"], -32601);
}

#[tokio::test]
async fn closing_the_stream_ends_the_session_and_its_server() {
    // A vanished client is noticed when a write to it fails: keep-alives make that prompt.
    let w = Warden::builder(fixture())
        .args(["--sse-keepalive", "200ms"])
        .start();
    let mut l = Legacy::connect(&w).await;
    l.request(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})).await;
    let pid: i32 = l.request(json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pid","arguments":{}}})).await["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let endpoint = l.endpoint.clone();
    let client = l.client.clone();
    drop(l);
    assert!(
        until(Duration::from_secs(10), || (!crate::support::proc::alive(
            pid
        ))
        .then_some(()))
        .await
        .is_some()
    );
    let r = client
        .post(w.url(&endpoint))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn message_endpoint_errors() {
    let w = Warden::start(fixture());
    let c = reqwest::Client::new();
    let r = c
        .post(w.url("/message"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no sessionId");
    let r = c
        .post(w.url("/message?sessionId=nope"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let l = Legacy::connect(&w).await;
    let r = c
        .post(w.url(&l.endpoint))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // A legacy session id is not a Streamable HTTP session.
    let id = l.endpoint.split('=').nth(1).unwrap();
    let r = c
        .post(w.mcp_url())
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-session-id", id)
        .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn legacy_transport_can_be_turned_off() {
    let w = Warden::builder(fixture()).arg("--no-legacy-sse").start();
    let r = reqwest::Client::new()
        .get(w.url("/sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A GET that opens an SSE stream with the headers given, and its status.
async fn sse_get(w: &Warden, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = reqwest::Client::new().get(w.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Without authentication, a page on any web site could make visitors' browsers open
/// sessions (each starting a server) with requests that carry no `Origin`: an `<img>`, a
/// `fetch(…, {mode: "no-cors"})` (which may set `Accept`), a link. Browsers mark them
/// `Sec-Fetch-Site: cross-site`; older ones at least do not ask for an event stream.
#[tokio::test]
async fn a_cross_site_page_cannot_open_sessions_on_a_server_without_auth() {
    let w = Warden::builder(fixture())
        .args(["--allowed-origin", "https://app.example.com"])
        .start();
    let no_cors = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
    ];
    // <img src=…/sse>
    let img = [
        no_cors[0],
        no_cors[1],
        ("sec-fetch-dest", "image"),
        ("accept", "image/avif,image/webp,*/*;q=0.8"),
    ];
    assert_eq!(sse_get(&w, "/sse", &img).await, 403);
    // fetch(…/sse, {mode: "no-cors", headers: {Accept: "text/event-stream"}}): Accept is a
    // header a page may set on a no-cors request.
    let fetch = [no_cors[0], no_cors[1], ("accept", "text/event-stream")];
    assert_eq!(sse_get(&w, "/sse", &fetch).await, 403);
    // A link followed to it.
    let navigate = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("accept", "text/html,*/*;q=0.8"),
    ];
    assert_eq!(sse_get(&w, "/sse", &navigate).await, 403);
    // A page on another port of this host is the same site, not the same origin.
    let same_site = [
        ("sec-fetch-site", "same-site"),
        no_cors[1],
        ("accept", "text/event-stream"),
    ];
    assert_eq!(sse_get(&w, "/sse", &same_site).await, 403);
    // A browser that sends no Sec-Fetch headers, with what an <img> or a script asks for.
    assert_eq!(sse_get(&w, "/sse", &[("accept", "*/*")]).await, 406);
    assert_eq!(sse_get(&w, "/sse", &[("accept", "text/*")]).await, 406);
    assert_eq!(sse_get(&w, "/sse", &[]).await, 406);
    // The same refusal on every MCP endpoint, not only where sessions start.
    for (method, path) in [
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("POST", "/message?sessionId=x"),
    ] {
        let r = reqwest::Client::new()
            .request(method.parse().unwrap(), w.url(path))
            .header("sec-fetch-site", "cross-site")
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    assert!(
        !w.logs().contains("session started"),
        "a refused request started a server:\n{}",
        w.logs()
    );
    // A page of an allowed origin (a CORS request, which always names its origin), a page
    // of this server, and a client that is not a browser keep working.
    let allowed = [
        ("origin", "https://app.example.com"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("accept", "text/event-stream"),
    ];
    let same_origin = [
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
        ("accept", "text/event-stream"),
    ];
    for headers in [
        &allowed[..],
        &same_origin[..],
        &[("accept", "text/event-stream")][..],
    ] {
        let mut req = reqwest::Client::new().get(w.url("/sse"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{headers:?}");
        let first = with_timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap();
        assert!(first.starts_with(b"event: endpoint"), "{headers:?}");
    }
}
