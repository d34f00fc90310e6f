//! Prometheus metrics: OpenTelemetry MCP semantic-convention names where they exist, plus the
//! sidecar's own. No per-user or per-session labels; every label's values are bounded (known
//! methods, reason codes, configured rule names, and at most [`MAX_TOOL_NAMES`] tool names).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Distinct tool names kept as label values; more are reported as `_other`.
pub const MAX_TOOL_NAMES: usize = 256;

/// A label value that is cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(Arc<str>);

impl Label {
    pub fn new(s: &str) -> Label {
        Label(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Label {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    mcp_method_name: Label,
    gen_ai_tool_name: Label,
    error_type: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    rule: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: Label,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: Label,
}

/// MCP methods recorded by name; anything else is `_other` (method names come from clients).
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
];

/// The metrics of one sidecar.
pub struct Metrics {
    registry: Registry,
    operation: Family<OperationLabels, Histogram>,
    session_duration: Histogram,
    sessions_active: Gauge,
    child_exits: Family<ReasonLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    sessions_refused: Family<ReasonLabels, Counter>,
    policy_denials: Family<RuleLabels, Counter>,
    authz_refusals: Family<ReasonLabels, Counter>,
    connection_events: Family<ReasonLabels, Counter>,
    connections: Family<StateLabels, Gauge>,
    draining: Gauge,
    methods: Vec<Label>,
    other: Label,
    none: Label,
    tools: Mutex<HashSet<Label>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Buckets from 100 µs to ~100 s: bridge overhead to slow tools.
fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 21)
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let operation = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(duration_buckets())
        });
        registry.register_with_unit(
            "mcp_server_operation_duration",
            "Duration of MCP requests answered by the wrapped server, as seen by the sidecar",
            Unit::Seconds,
            operation.clone(),
        );
        let session_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.1, 2.0, 20),
        );
        registry.register_with_unit(
            "mcp_server_session_duration",
            "Duration of MCP sessions",
            Unit::Seconds,
            session_duration.clone(),
        );
        let sessions_active = Gauge::default();
        registry.register(
            "mcp_warden_sessions_active",
            "Sessions alive (each runs one server process)",
            sessions_active.clone(),
        );
        let child_exits = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mcp_warden_child_exits",
            "Server processes that exited, by reason",
            child_exits.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mcp_warden_auth_failures",
            "Requests refused by authentication, by reason",
            auth_failures.clone(),
        );
        let sessions_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mcp_warden_sessions_refused",
            "New sessions refused before a server started, by reason",
            sessions_refused.clone(),
        );
        let policy_denials = Family::<RuleLabels, Counter>::default();
        registry.register(
            "mcp_warden_policy_denials",
            "Messages denied by policy, by rule",
            policy_denials.clone(),
        );
        let authz_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mcp_warden_authz_refusals",
            "Sign-in, token and registration requests refused by the authorization server, by reason",
            authz_refusals.clone(),
        );
        let connection_events = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mcp_warden_connection_events",
            "Changes of users' upstream connections (connected, refreshed, refresh_failed, revoked)",
            connection_events.clone(),
        );
        let connections = Family::<StateLabels, Gauge>::default();
        registry.register(
            "mcp_warden_connections",
            "Users' upstream connections in the state store, by state (active, needs_consent)",
            connections.clone(),
        );
        let draining = Gauge::default();
        registry.register(
            "mcp_warden_draining",
            "1 while the sidecar is draining",
            draining.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: Label::new(env!("CARGO_PKG_VERSION")),
            })
            .set(1);
        registry.register("mcp_warden_build_info", "Build information", build_info);
        Arc::new(Metrics {
            registry,
            operation,
            session_duration,
            sessions_active,
            child_exits,
            auth_failures,
            sessions_refused,
            policy_denials,
            authz_refusals,
            connection_events,
            connections,
            draining,
            methods: KNOWN_METHODS.iter().map(|m| Label::new(m)).collect(),
            other: Label::new("_other"),
            none: Label::new(""),
            tools: Mutex::new(HashSet::new()),
        })
    }

    /// The label for a client-supplied method name.
    pub fn method_label(&self, method: &str) -> Label {
        self.methods
            .iter()
            .find(|m| m.as_str() == method)
            .cloned()
            .unwrap_or_else(|| self.other.clone())
    }

    /// The label for a tool name: interned, bounded.
    pub fn tool_label(&self, tool: Option<&str>) -> Label {
        let Some(tool) = tool else {
            return self.none.clone();
        };
        let mut tools = self.tools.lock();
        if let Some(l) = tools.get(tool) {
            return l.clone();
        }
        if tools.len() >= MAX_TOOL_NAMES || tool.len() > 128 {
            return self.other.clone();
        }
        let l = Label::new(tool);
        tools.insert(l.clone());
        l
    }

    /// Records one answered (or failed) request. `error`: `None` for success, else a short
    /// bounded code (`timeout`, a JSON-RPC code, `tool_error`, …).
    pub fn operation(
        &self,
        method: &Label,
        tool: &Label,
        error: Option<&'static str>,
        took: Duration,
    ) {
        let labels = OperationLabels {
            mcp_method_name: method.clone(),
            gen_ai_tool_name: tool.clone(),
            error_type: error.map_or_else(|| self.none.clone(), Label::new),
        };
        self.operation
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        super::otel::operation(method.as_str(), tool.as_str(), error, took);
    }

    pub fn session_started(&self) {
        self.sessions_active.inc();
    }

    pub fn session_ended(&self, lived: Duration) {
        self.sessions_active.dec();
        self.session_duration.observe(lived.as_secs_f64());
        super::otel::session_ended(lived);
    }

    /// `reason`: a stable snake_case code.
    pub fn child_exited(&self, reason: &'static str) {
        super::otel::child_exited(reason);
        self.child_exits
            .get_or_create(&ReasonLabels {
                reason: Label::new(reason),
            })
            .inc();
    }

    /// `reason`: a stable snake_case code.
    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: Label::new(reason),
            })
            .inc();
    }

    /// A request refused by the authorization server. `reason`: a stable snake_case code
    /// (a bounded set).
    pub fn authz_refused(&self, reason: &'static str) {
        self.authz_refusals
            .get_or_create(&ReasonLabels {
                reason: Label::new(reason),
            })
            .inc();
    }

    /// A change of a user's connection (a stable code).
    pub fn connection_event(&self, what: &'static str) {
        self.connection_events
            .get_or_create(&ReasonLabels {
                reason: Label::new(what),
            })
            .inc();
    }

    /// How many connections the store holds in `state`.
    pub fn set_connections(&self, state: &'static str, n: i64) {
        self.connections
            .get_or_create(&StateLabels {
                state: Label::new(state),
            })
            .set(n);
    }

    /// A new session refused before its server started (a cap, a rate, a drain).
    pub fn session_refused(&self, reason: &'static str) {
        self.sessions_refused
            .get_or_create(&ReasonLabels {
                reason: Label::new(reason),
            })
            .inc();
    }

    /// `rule`: a configured rule name or a stable code.
    pub fn policy_denied(&self, rule: &str) {
        super::otel::policy_denied(rule);
        self.policy_denials
            .get_or_create(&RuleLabels {
                rule: Label::new(rule),
            })
            .inc();
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.set(i64::from(draining));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_conventional_names() {
        let m = Metrics::new();
        let method = m.method_label("tools/call");
        let tool = m.tool_label(Some("echo"));
        m.operation(&method, &tool, None, Duration::from_millis(3));
        m.operation(
            &m.method_label("evil/method-name"),
            &m.tool_label(None),
            Some("timeout"),
            Duration::from_secs(1),
        );
        m.session_started();
        m.child_exited("crashed");
        m.auth_failed("expired");
        m.policy_denied("no_shell");
        m.set_draining(true);
        let text = m.render();
        for needle in [
            "mcp_server_operation_duration_seconds_bucket{",
            r#"mcp_method_name="tools/call",gen_ai_tool_name="echo",error_type="""#,
            r#"mcp_method_name="_other",gen_ai_tool_name="",error_type="timeout""#,
            "mcp_server_session_duration_seconds",
            "mcp_warden_sessions_active 1",
            r#"mcp_warden_child_exits_total{reason="crashed"} 1"#,
            r#"mcp_warden_auth_failures_total{reason="expired"} 1"#,
            r#"mcp_warden_policy_denials_total{rule="no_shell"} 1"#,
            "mcp_warden_draining 1",
            "mcp_warden_build_info{version=",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn tool_names_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_TOOL_NAMES {
            assert_eq!(
                m.tool_label(Some(&format!("t{i}"))).as_str(),
                format!("t{i}")
            );
        }
        assert_eq!(m.tool_label(Some("one-too-many")).as_str(), "_other");
        assert_eq!(m.tool_label(Some("t1")).as_str(), "t1");
        assert_eq!(m.tool_label(Some(&"x".repeat(500))).as_str(), "_other");
    }
}
