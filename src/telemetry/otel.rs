//! OpenTelemetry export by OTLP (gRPC or HTTP/protobuf): a span per HTTP request, per MCP
//! request (the OpenTelemetry MCP semantic conventions) and per server spawn, and the
//! operation and session metrics. Off unless [`init`] ran (`--otlp-endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`); then every span is queued for a batch exporter on a thread
//! of its own, bounded, dropping rather than blocking the request path.
//!
//! Spans carry only what the Prometheus metrics and logs already may: method and tool names,
//! the JSON-RPC request id, the short session id, error codes. Never arguments, results,
//! tokens or anything a server was given.
//!
//! Parents are carried as [`TraceContext`]s: the HTTP span's is the task-local [`current`]
//! of the handler it wraps, an MCP span's parent is the request's `_meta.traceparent` when it
//! has one, else the HTTP span, and the server receives the MCP span's context in
//! `_meta.traceparent`.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

use super::TraceContext;

/// How spans and metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl std::str::FromStr for OtlpProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Err("OTLP http/json is not supported: use http/protobuf or grpc".into()),
            other => Err(format!(
                "unknown OTLP protocol {other:?} (expected grpc or http/protobuf)"
            )),
        }
    }
}

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The collector's base URL (`OTEL_EXPORTER_OTLP_ENDPOINT` semantics): for HTTP the
    /// signal paths `/v1/traces` and `/v1/metrics` are appended.
    pub endpoint: url::Url,
    pub protocol: OtlpProtocol,
    /// `service.instance.id`: the replica id.
    pub instance: String,
    /// Spans waiting for export at most; more are dropped.
    pub queue: usize,
}

/// Spans queued for export at most, by default.
pub const DEFAULT_QUEUE: usize = 4096;

struct Otel {
    tracer: opentelemetry_sdk::trace::Tracer,
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
    instruments: Instruments,
}

struct Instruments {
    operation: opentelemetry::metrics::Histogram<f64>,
    session: opentelemetry::metrics::Histogram<f64>,
    denials: opentelemetry::metrics::Counter<u64>,
    exits: opentelemetry::metrics::Counter<u64>,
}

static OTEL: OnceLock<Otel> = OnceLock::new();

/// Bucket boundaries of the operation histogram (seconds), as the MCP conventions advise.
const SECONDS_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Of the session histogram: a second to a day.
const SESSION_BUCKETS: [f64; 10] = [
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 28_800.0, 86_400.0,
];

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Whether spans are exported (cheap; checked before any work for a span).
pub fn enabled() -> bool {
    OTEL.get().is_some()
}

/// The span of the HTTP request the calling task serves, if one is exported.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Sends exports through the sidecar's own HTTP client (rustls, the configured roots), run
/// on the runtime: the batch exporters call it from threads of their own.
#[derive(Debug)]
struct HttpExport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpExport {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let send = async move {
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut out = opentelemetry_http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, reqwest::Error>(out)
        };
        Ok(self.runtime.spawn(send).await??)
    }
}

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry export: {0}")]
pub struct OtlpError(String);

/// Starts exporting. Must run inside the tokio runtime; once per process.
pub fn init(settings: &OtlpSettings, tls: rustls::ClientConfig) -> Result<(), OtlpError> {
    let err = |e: &dyn std::fmt::Display| OtlpError(e.to_string());
    let mut resource = opentelemetry_sdk::Resource::builder()
        .with_attribute(KeyValue::new(
            "service.instance.id",
            settings.instance.clone(),
        ))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    // OTEL_SERVICE_NAME, when set, names the service (the resource builder reads it).
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("mcp-warden");
    }
    let resource = resource.build();
    let timeout = Duration::from_secs(10);
    let base = settings.endpoint.as_str().trim_end_matches('/').to_owned();
    let (spans, metrics) = match settings.protocol {
        OtlpProtocol::Grpc => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(base.clone())
                .with_timeout(timeout)
                .build()
                .map_err(|e| err(&e))?,
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(base)
                .with_timeout(timeout)
                .build()
                .map_err(|e| err(&e))?,
        ),
        OtlpProtocol::HttpProtobuf => {
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .user_agent(concat!("mcp-warden/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| err(&e))?;
            let http = || HttpExport {
                client: client.clone(),
                runtime: tokio::runtime::Handle::current(),
            };
            (
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(format!("{base}/v1/traces"))
                    .with_http_client(http())
                    .with_timeout(timeout)
                    .build()
                    .map_err(|e| err(&e))?,
                opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(format!("{base}/v1/metrics"))
                    .with_http_client(http())
                    .with_timeout(timeout)
                    .build()
                    .map_err(|e| err(&e))?,
            )
        }
    };
    let processor = BatchSpanProcessor::builder(spans)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(settings.queue.max(1))
                .build(),
        )
        .build();
    let traces = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource.clone())
        .build();
    // The interval: OTEL_METRIC_EXPORT_INTERVAL (ms), else a minute.
    let reader = PeriodicReader::builder(metrics).build();
    let metrics = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    let meter = opentelemetry::metrics::MeterProvider::meter(&metrics, "mcp-warden");
    let instruments = Instruments {
        operation: meter
            .f64_histogram("mcp.server.operation.duration")
            .with_unit("s")
            .with_boundaries(SECONDS_BUCKETS.to_vec())
            .with_description("MCP request duration, from its arrival to its answer")
            .build(),
        session: meter
            .f64_histogram("mcp.server.session.duration")
            .with_unit("s")
            .with_boundaries(SESSION_BUCKETS.to_vec())
            .with_description("MCP session duration")
            .build(),
        denials: meter
            .u64_counter("mcp_warden.policy.denials")
            .with_description("Requests refused by the policy, by rule")
            .build(),
        exits: meter
            .u64_counter("mcp_warden.child.exits")
            .with_description("MCP server processes that ended, by reason")
            .build(),
    };
    let tracer = opentelemetry::trace::TracerProvider::tracer(&traces, "mcp-warden");
    OTEL.set(Otel {
        tracer,
        traces,
        metrics,
        instruments,
    })
    .map_err(|_| OtlpError("already started".into()))
}

/// Exports what is queued and stops (blocking: call it off the runtime's workers).
pub fn shutdown() {
    if let Some(o) = OTEL.get() {
        let _ = o.traces.shutdown();
        let _ = o.metrics.shutdown();
    }
}

fn parent_context(parent: Option<TraceContext>) -> Context {
    match parent {
        Some(p) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(p.trace_id),
            SpanId::from_bytes(p.span_id),
            TraceFlags::new(p.flags),
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    }
}

/// A span being recorded; ends (and is queued for export) when [`OtelSpan::end`] is called
/// or it is dropped.
#[derive(Debug)]
pub struct OtelSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl OtelSpan {
    fn start(
        name: String,
        kind: SpanKind,
        parent: Option<TraceContext>,
        attributes: Vec<KeyValue>,
    ) -> Option<OtelSpan> {
        let o = OTEL.get()?;
        let span = o
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&o.tracer, &parent_context(parent));
        Some(OtelSpan { span })
    }

    /// This span as a parent for others (and for the server, in `_meta.traceparent`).
    pub fn context(&self) -> TraceContext {
        let c = self.span.span_context();
        TraceContext {
            trace_id: c.trace_id().to_bytes(),
            span_id: c.span_id().to_bytes(),
            flags: c.trace_flags().to_u8(),
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        self.span.set_attribute(KeyValue::new(key, value.into()));
    }

    /// Marks the span failed with `error_type` (a short, bounded code).
    pub fn fail(&mut self, error_type: &str) {
        self.span
            .set_attribute(KeyValue::new("error.type", error_type.to_owned()));
        self.span.set_status(Status::error(error_type.to_owned()));
    }

    pub fn end(mut self) {
        self.span.end();
    }
}

/// The span of one HTTP request (`{method} {route}`), child of its `traceparent` header.
pub fn http_span(method: &str, route: &str, parent: Option<TraceContext>) -> Option<OtelSpan> {
    if !enabled() {
        return None;
    }
    // Before authentication: only the methods HTTP defines (the semantic conventions'
    // `_OTHER` for the rest).
    let method = match method {
        "GET" | "POST" | "DELETE" | "PUT" | "PATCH" | "HEAD" | "OPTIONS" => method,
        _ => "_OTHER",
    };
    OtelSpan::start(
        format!("{method} {route}"),
        SpanKind::Server,
        parent,
        vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("url.path", route.to_owned()),
        ],
    )
}

/// Runs `f` with `span` as the task's [`current`] span.
pub async fn scope<F: std::future::Future>(span: TraceContext, f: F) -> F::Output {
    CURRENT.scope(span, f).await
}

/// What an MCP request span says (the MCP semantic conventions).
#[derive(Debug)]
pub struct McpRequest<'a> {
    pub method: &'a str,
    /// The tool of a `tools/call`, the prompt of a `prompts/get`.
    pub target: Option<&'a str>,
    /// The JSON-RPC id, as the client sent it.
    pub request_id: String,
    /// The session id's last characters, as in logs and audit records.
    pub session: &'a str,
    pub protocol_version: Option<&'static str>,
}

/// Distinct tool and prompt names exported; others are `_other` (clients choose them).
const MAX_TARGETS: usize = 256;

/// Whether `s` looks like an MCP method, tool or prompt name: short, no spaces or controls.
fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':'))
}

/// A client-supplied target name, interned and bounded like the metrics' tool labels: a
/// span name must have few values.
fn bounded_target(name: &str) -> &'static str {
    static SEEN: OnceLock<parking_lot::Mutex<std::collections::HashSet<&'static str>>> =
        OnceLock::new();
    if !is_name(name, 128) {
        return "_other";
    }
    let mut seen = SEEN.get_or_init(Default::default).lock();
    if let Some(s) = seen.get(name) {
        return s;
    }
    if seen.len() >= MAX_TARGETS {
        return "_other";
    }
    // Leaked once per distinct name, at most MAX_TARGETS of them.
    let s: &'static str = Box::leak(name.to_owned().into_boxed_str());
    seen.insert(s);
    s
}

/// The span of one MCP request, as the server side sees it: `{method} {target}`.
pub fn mcp_span(r: McpRequest<'_>, parent: Option<TraceContext>) -> Option<OtelSpan> {
    if !enabled() {
        return None;
    }
    let method = if is_name(r.method, 64) {
        r.method
    } else {
        "_other"
    };
    let target = r.target.map(bounded_target);
    let name = match target {
        Some(t) if t != "_other" => format!("{method} {t}"),
        _ => method.to_owned(),
    };
    let mut request_id = r.request_id;
    if request_id.len() > 64 {
        let mut end = 64;
        while !request_id.is_char_boundary(end) {
            end -= 1;
        }
        request_id.truncate(end);
    }
    let mut attributes = vec![
        KeyValue::new("mcp.method.name", method.to_owned()),
        KeyValue::new("jsonrpc.request.id", request_id),
        KeyValue::new("mcp.session.id", r.session.to_owned()),
        KeyValue::new("network.transport", "tcp"),
        KeyValue::new("network.protocol.name", "http"),
    ];
    if let Some(v) = r.protocol_version {
        attributes.push(KeyValue::new("mcp.protocol.version", v));
    }
    match (method, target) {
        ("tools/call", Some(t)) => {
            attributes.push(KeyValue::new("gen_ai.tool.name", t.to_owned()));
            attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        ("prompts/get", Some(t)) => {
            attributes.push(KeyValue::new("gen_ai.prompt.name", t.to_owned()));
        }
        _ => {}
    }
    OtelSpan::start(name, SpanKind::Server, parent, attributes)
}

/// The span of starting one session's server.
pub fn spawn_span(program: &str, parent: Option<TraceContext>) -> Option<OtelSpan> {
    if !enabled() {
        return None;
    }
    OtelSpan::start(
        "spawn mcp server".to_owned(),
        SpanKind::Internal,
        parent,
        vec![KeyValue::new("process.executable.name", program.to_owned())],
    )
}

/// Records one MCP request's duration (`error`: its error type, if it failed).
pub(super) fn operation(method: &str, tool: &str, error: Option<&str>, took: Duration) {
    if let Some(o) = OTEL.get() {
        let mut attributes = vec![KeyValue::new("mcp.method.name", method.to_owned())];
        if !tool.is_empty() {
            attributes.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
        }
        if let Some(e) = error {
            attributes.push(KeyValue::new("error.type", e.to_owned()));
        }
        o.instruments
            .operation
            .record(took.as_secs_f64(), &attributes);
    }
}

pub(super) fn session_ended(lived: Duration) {
    if let Some(o) = OTEL.get() {
        o.instruments.session.record(lived.as_secs_f64(), &[]);
    }
}

pub(super) fn policy_denied(rule: &str) {
    if let Some(o) = OTEL.get() {
        o.instruments
            .denials
            .add(1, &[KeyValue::new("rule", rule.to_owned())]);
    }
}

pub(super) fn child_exited(reason: &'static str) {
    if let Some(o) = OTEL.get() {
        o.instruments
            .exits
            .add(1, &[KeyValue::new("reason", reason)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_the_standard_names() {
        assert_eq!("grpc".parse(), Ok(OtlpProtocol::Grpc));
        assert_eq!("http/protobuf".parse(), Ok(OtlpProtocol::HttpProtobuf));
        assert!("http/json".parse::<OtlpProtocol>().is_err());
        assert!("udp".parse::<OtlpProtocol>().is_err());
    }

    #[test]
    fn client_names_in_span_names_are_bounded() {
        assert_eq!(bounded_target("get-weather"), "get-weather");
        assert_eq!(bounded_target("has space"), "_other");
        assert_eq!(bounded_target(&"x".repeat(200)), "_other");
        for i in 0..(MAX_TARGETS + 10) {
            bounded_target(&format!("t{i}"));
        }
        assert_eq!(bounded_target("never-seen-before"), "_other");
        assert_eq!(bounded_target("get-weather"), "get-weather");
    }

    #[test]
    fn nothing_is_recorded_before_init() {
        assert!(!enabled());
        assert!(http_span("POST", "/mcp", None).is_none());
        assert!(spawn_span("node", None).is_none());
        assert!(current().is_none());
    }
}
