//! A minimal raw MCP-over-HTTP client for protocol-level assertions (the official SDK
//! clients are driven separately, from tests/js and tests/py).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// One SSE event as received.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Incremental SSE parser (comments dropped).
#[derive(Default)]
pub struct SseParser {
    buf: String,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let mut ev = SseEvent::default();
            let mut any = false;
            let mut data: Vec<&str> = Vec::new();
            for line in block.lines() {
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                any = true;
                let (field, value) = line
                    .split_once(':')
                    .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
                match field {
                    "id" => ev.id = Some(value.to_owned()),
                    "event" => ev.event = Some(value.to_owned()),
                    "data" => data.push(value),
                    "retry" => ev.retry = value.parse().ok(),
                    _ => {}
                }
            }
            if any {
                ev.data = data.join("\n");
                out.push(ev);
            }
        }
        out
    }
}

/// Reads a whole SSE body.
pub async fn sse_events(resp: reqwest::Response) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        events.extend(parser.push(&chunk));
    }
    events
}

/// A raw MCP session.
#[derive(Clone)]
pub struct Mcp {
    pub client: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub version: String,
}

impl Mcp {
    pub fn new(url: String) -> Mcp {
        Mcp {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .build()
                .unwrap(),
            url,
            session: None,
            version: "2025-11-25".into(),
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static(ACCEPT_BOTH));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(s) = &self.session {
            h.insert("mcp-session-id", HeaderValue::from_str(s).unwrap());
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_str(&self.version).unwrap(),
            );
        }
        h
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(&self.url)
            .headers(self.headers())
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// initialize + initialized; remembers the session id.
    pub async fn initialize(&mut self) -> Value {
        self.initialize_with(json!({})).await
    }

    pub async fn initialize_with(&mut self, capabilities: Value) -> Value {
        let resp = self
            .post(
                &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion": self.version, "capabilities": capabilities,
                "clientInfo": {"name":"raw-test","version":"1"}}}),
            )
            .await;
        assert_eq!(resp.status(), 200, "initialize failed");
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = final_response(resp).await;
        self.session = sid;
        assert!(self.session.is_some(), "no session id; body {body}");
        let r = self
            .post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(r.status(), 202);
        body
    }

    /// Sends a request and returns its JSON-RPC response (from JSON or SSE).
    pub async fn request(&self, id: Value, method: &str, params: Value) -> Value {
        let resp = self
            .post(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
            .await;
        assert_eq!(resp.status(), 200, "{method} failed");
        final_response(resp).await
    }

    pub async fn call_tool(&self, id: Value, name: &str, args: Value) -> Value {
        self.request(id, "tools/call", json!({"name": name, "arguments": args}))
            .await
    }

    /// Opens the standalone GET stream.
    pub async fn get_stream(&self, last_event_id: Option<&str>) -> reqwest::Response {
        let mut h = self.headers();
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        h.remove("content-type");
        if let Some(id) = last_event_id {
            h.insert("last-event-id", HeaderValue::from_str(id).unwrap());
        }
        self.client.get(&self.url).headers(h).send().await.unwrap()
    }

    pub async fn delete(&self) -> reqwest::Response {
        self.client
            .delete(&self.url)
            .headers(self.headers())
            .send()
            .await
            .unwrap()
    }
}

/// The final JSON-RPC response of a POST answer (JSON body, or the last SSE message).
pub async fn final_response(resp: reqwest::Response) -> Value {
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    if ct.starts_with("text/event-stream") {
        let events = sse_events(resp).await;
        events
            .iter()
            .rev()
            .map(SseEvent::json)
            .find(|v| v.get("result").is_some() || v.get("error").is_some())
            .unwrap_or(Value::Null)
    } else {
        resp.json().await.unwrap_or(Value::Null)
    }
}

/// Text of the first content item of a tool result.
pub fn text(result: &Value) -> String {
    result
        .pointer("/result/content/0/text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

pub async fn with_timeout<F: std::future::Future>(d: Duration, f: F) -> F::Output {
    tokio::time::timeout(d, f).await.expect("timed out")
}
