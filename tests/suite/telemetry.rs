//! OpenTelemetry export, received by an OTLP receiver of the test's own that decodes the
//! protobuf: the spans of an SDK session (names, MCP attributes, parents) over HTTP/protobuf,
//! trace context from a caller's `traceparent` down to the server over gRPC, the metrics, and
//! nothing exported that redaction would hide.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::http::{Mcp, final_response, text};
use crate::support::otlp::{Receiver, Span};
use crate::support::{Warden, fixture, node};

const SECRET: &str = "wsk_live_otel_5e4d3c2b1a09";
const EMAIL: &str = "dave@example.com";

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

async fn stop(w: Warden) {
    let mut w = w;
    tokio::task::spawn_blocking(move || w.stop_with(Signal::SIGTERM, Duration::from_secs(20)))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_sdk_session_is_exported_over_http_protobuf_with_mcp_attributes() {
    let receiver = Receiver::http().await;
    let dir = crate::support::TempDir::new("otel-http");
    let w = super::activity::governed_everything(&dir, SECRET)
        .args(["--otlp-endpoint", &receiver.endpoint()])
        .args(["--replica-id", "replica-7"])
        .start();
    let url = w.mcp_url();
    let steps = json!([
        {"op":"call","name":"echo","args":{"message": format!("to {EMAIL}")}},
        {"op":"call","name":"get-sum","args":{"a":1,"b":2}},
        {"op":"call","name":"get-env"},
    ]);
    let out = tokio::task::spawn_blocking(move || {
        node(
            "policy.mjs",
            &[&url, "streamable", &steps.to_string()],
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert!(out.contains("REDACTED"), "{out}");
    // What is queued is exported at shutdown.
    stop(w).await;
    receiver
        .wait_span("tools/call get-env", Duration::from_secs(10))
        .await;
    let spans = receiver.spans();

    let echo = one(&spans, "tools/call echo");
    assert_eq!(echo.kind, 2, "a server span");
    assert_eq!(echo.attributes["mcp.method.name"], "tools/call");
    assert_eq!(echo.attributes["gen_ai.tool.name"], "echo");
    assert_eq!(echo.attributes["gen_ai.operation.name"], "execute_tool");
    assert_eq!(echo.attributes["network.transport"], "tcp");
    assert!(echo.attributes["mcp.protocol.version"].starts_with("20"));
    assert!(!echo.attributes["jsonrpc.request.id"].is_empty());
    assert_eq!(echo.attributes["mcp.session.id"].len(), 8);
    assert_eq!(echo.status, 0, "{echo:?}");
    // Its parent is the HTTP request that carried it, in the same trace.
    let http = spans
        .iter()
        .find(|s| s.span_id == echo.parent)
        .unwrap_or_else(|| panic!("no parent of {echo:?}"));
    assert_eq!(http.name, "POST /mcp");
    assert_eq!(http.trace_id, echo.trace_id);
    assert_eq!(http.attributes["http.response.status_code"], "200");
    assert_eq!(echo.resource["service.name"], "mcp-warden");
    assert_eq!(echo.resource["service.instance.id"], "replica-7");

    // The refused call: an error of the rule's reason.
    let sum = one(&spans, "tools/call get-sum");
    assert_eq!(sum.status, 2);
    assert_eq!(sum.attributes["error.type"], "denied_by_rule");

    // The session's start: initialize, and the server's spawn under the same request.
    let init = one(&spans, "initialize");
    let spawn = one(&spans, "spawn mcp server");
    assert_eq!(spawn.parent, init.parent, "{spawn:?} {init:?}");
    assert_eq!(spawn.attributes["process.executable.name"], "node");
    assert!(spawn.attributes["process.pid"].parse::<u32>().is_ok());

    // The metrics: the operation histogram by method and tool, the denials by rule.
    let points = receiver.points();
    assert!(
        points
            .iter()
            .any(|p| p.metric == "mcp.server.operation.duration"
                && p.attributes.get("gen_ai.tool.name").map(String::as_str) == Some("echo")
                && p.attributes["mcp.method.name"] == "tools/call"),
        "{points:#?}"
    );
    assert!(
        points
            .iter()
            .any(|p| p.metric == "mcp_warden.policy.denials" && p.attributes["rule"] == "no-sums"),
        "{points:#?}"
    );

    // Nothing redaction hides is exported: no argument, no injected secret.
    let raw = String::from_utf8_lossy(&receiver.raw()).into_owned();
    assert!(!raw.contains(SECRET), "the injected secret was exported");
    assert!(!raw.contains(EMAIL), "an argument was exported");
}

#[tokio::test]
async fn a_callers_trace_reaches_the_server_through_our_spans_over_grpc() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CALLER_SPAN: &str = "00f067aa0ba902b7";
    let receiver = Receiver::grpc().await;
    let w = Warden::builder(fixture())
        .args(["--otlp-endpoint", &receiver.endpoint()])
        .args(["--otlp-protocol", "grpc"])
        .start();
    let mut m = Mcp::new(w.mcp_url());
    m.initialize().await;
    let r = m
        .client
        .post(&m.url)
        .headers(m.headers())
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .body(json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"meta","arguments":{}}}).to_string())
        .send()
        .await
        .unwrap();
    let seen: serde_json::Value = serde_json::from_str(&text(&final_response(r).await)).unwrap();
    let tp = seen["traceparent"].as_str().unwrap().to_owned();
    stop(w).await;
    let call = receiver
        .wait_span("tools/call meta", Duration::from_secs(10))
        .await;
    // The server was handed our MCP span, in the caller's trace.
    assert_eq!(tp, format!("00-{TRACE}-{}-01", call.span_id));
    assert_eq!(call.trace_id, TRACE);
    assert_eq!(call.attributes["jsonrpc.request.id"], "call-1");
    // Which is the child of our HTTP span, itself the child of the caller's.
    let spans = receiver.spans();
    let http = spans.iter().find(|s| s.span_id == call.parent).unwrap();
    assert_eq!(http.name, "POST /mcp");
    assert_eq!(http.parent, CALLER_SPAN);
    assert_eq!(http.trace_id, TRACE);
    // Requests without a trace start their own.
    let init = one(&spans, "initialize");
    assert_ne!(init.trace_id, TRACE);
    assert!(!init.parent.is_empty(), "under its HTTP span");
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_the_callers_nothing() {
    // Accepts connections and never answers: every export hangs until it times out.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            held.push(conn);
        }
    });
    for protocol in ["http/protobuf", "grpc"] {
        let w = Warden::builder(fixture())
            .args(["--otlp-endpoint", &endpoint, "--otlp-protocol", protocol])
            // A small queue, soon full: spans beyond it are dropped, never waited for.
            .args(["--otlp-queue", "16"])
            .env("OTEL_METRIC_EXPORT_INTERVAL", "100")
            .start();
        let mut m = Mcp::new(w.mcp_url());
        m.initialize().await;
        for i in 0..200 {
            let r = m.call_tool(json!(i), "echo", json!({"text": "x"})).await;
            assert!(r.get("result").is_some(), "{protocol}: {r}");
        }
        // It exits (stop_with gives it a bound) without waiting for the collector.
        let mut w = w;
        let status = tokio::task::spawn_blocking(move || {
            w.stop_with(Signal::SIGTERM, Duration::from_secs(30))
        })
        .await
        .unwrap();
        assert!(status.success(), "{protocol}: {status}");
    }
}

#[test]
fn the_collectors_credentials_stay_out_of_the_log_and_grpc_is_not_sent_over_https() {
    // Credentials in the endpoint URL (a collector behind basic auth) are not logged.
    let w = Warden::builder(fixture())
        .args(["--otlp-endpoint", "http://otel:s3cr3t-pass@127.0.0.1:9/"])
        .start();
    let line = w.wait_log(
        "exporting traces and metrics by OTLP",
        Duration::from_secs(10),
    );
    assert!(!line.contains("s3cr3t-pass"), "{line}");
    // gRPC would go in the clear to an https:// endpoint: refused at startup.
    let out = std::process::Command::new(crate::support::warden_bin())
        .args(["wrap", "--no-auth", "--listen", "127.0.0.1:0"])
        .args(["--otlp-endpoint", "https://collector.example:4317"])
        .args(["--otlp-protocol", "grpc", "--"])
        .args(fixture())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --otlp-protocol http/protobuf"), "{err}");
}
