//! An OTLP receiver of the test's own, on 127.0.0.1: gRPC (the collector services, served by
//! tonic) or HTTP/protobuf (`POST /v1/traces`, `/v1/metrics`). It decodes what it receives
//! with the protocol's own generated types (`opentelemetry-proto`) and keeps spans and
//! metric names for the test to assert on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

/// One received span.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent: String,
    /// 1 internal, 2 server.
    pub kind: i32,
    /// 2: error.
    pub status: i32,
    pub attributes: HashMap<String, String>,
    pub resource: HashMap<String, String>,
}

/// One received metric data point's name and attributes.
#[derive(Debug, Clone)]
pub struct Point {
    pub metric: String,
    pub attributes: HashMap<String, String>,
}

#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    points: Vec<Point>,
    /// Raw bodies, to search for what must never be exported.
    raw: Vec<u8>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Received>>,
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn map(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Received {
    fn traces(&mut self, r: ExportTraceServiceRequest) {
        self.raw.extend_from_slice(&r.encode_to_vec());
        for rs in r.resource_spans {
            let resource = rs.resource.map(|r| map(&r.attributes)).unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    self.spans.push(Span {
                        name: s.name,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        kind: s.kind,
                        status: s.status.map(|st| st.code).unwrap_or(0),
                        attributes: map(&s.attributes),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }

    fn metrics(&mut self, r: ExportMetricsServiceRequest) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        self.raw.extend_from_slice(&r.encode_to_vec());
        for rm in r.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let attrs: Vec<HashMap<String, String>> = match &m.data {
                        Some(Data::Histogram(h)) => {
                            h.data_points.iter().map(|p| map(&p.attributes)).collect()
                        }
                        Some(Data::Sum(s)) => {
                            s.data_points.iter().map(|p| map(&p.attributes)).collect()
                        }
                        _ => Vec::new(),
                    };
                    for attributes in attrs {
                        self.points.push(Point {
                            metric: m.name.clone(),
                            attributes,
                        });
                    }
                }
            }
        }
    }
}

struct Grpc(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// An OTLP/gRPC receiver.
    pub async fn grpc() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
        };
        let (traces, metrics) = (Grpc(r.got.clone()), Grpc(r.got.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(traces))
                .add_service(MetricsServiceServer::new(metrics))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        r
    }

    /// An OTLP/HTTP receiver (binary protobuf).
    pub async fn http() -> Receiver {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
        };
        let (t, m) = (r.got.clone(), r.got.clone());
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                post(move |body: axum::body::Bytes| async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    t.lock().unwrap().traces(req);
                    ExportTraceServiceResponse::default().encode_to_vec()
                }),
            )
            .route(
                "/v1/metrics",
                post(move |body: axum::body::Bytes| async move {
                    let req = ExportMetricsServiceRequest::decode(body).unwrap();
                    m.lock().unwrap().metrics(req);
                    ExportMetricsServiceResponse::default().encode_to_vec()
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.got.lock().unwrap().spans.clone()
    }

    pub fn points(&self) -> Vec<Point> {
        self.got.lock().unwrap().points.clone()
    }

    /// Everything received, re-encoded: to search for bytes that must never be exported.
    pub fn raw(&self) -> Vec<u8> {
        self.got.lock().unwrap().raw.clone()
    }

    /// Waits until a span named `name` has arrived.
    pub async fn wait_span(&self, name: &str, timeout: Duration) -> Span {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| s.name == name) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no span {name:?}; received: {:#?}",
                self.spans().iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
