//! Inline policy per session: asks [`Policy`] about each client request before it can reach
//! a session's server, rewrites what the server sends (list filtering, redaction) before any
//! client stream holds it, and writes the audit records of both. Decisions are `policy`'s and
//! records are `audit`'s; a refusal is answered by `rescue.rs`.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::audit::{Arguments, AuditEvent, AuditSink, EventKind, Redactions};
use crate::auth::Principal;
use crate::child::SecretSet;
use crate::mcp::{Envelope, Id, Kind};
use crate::policy::{
    Allow, Caller, Decision, Deny, DenyReason, History, ListKind, Policy, PolicyInput,
    RedactionCount, Secrets, Target,
};
use crate::session::{Inspect, RequestTag, Session};
use crate::telemetry::Metrics;

impl Caller for Principal {
    fn issuer(&self) -> &str {
        &self.issuer
    }
    fn subject(&self) -> &str {
        &self.subject
    }
    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
    fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }
    fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        principal_claims(self)
    }
}

/// The validated claims of a principal (empty for the anonymous one).
fn principal_claims(p: &Principal) -> &serde_json::Map<String, serde_json::Value> {
    &p.claims
}

/// The delegation chain of a principal for audit records, current actor first.
fn principal_actors(p: &Principal) -> Vec<Arc<str>> {
    p.actors
        .iter()
        .map(|a| Arc::from(a.subject.as_str()))
        .collect()
}

/// Policy and audit: shared by all sessions.
#[derive(Debug)]
pub struct Inspector {
    policy: Arc<Policy>,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    /// Whether a config file was given. Without one nothing is decided or filtered; only
    /// injected credentials are redacted.
    enforced: bool,
}

impl Inspector {
    /// `policy`: from the config file, if any.
    pub fn new(policy: Option<Arc<Policy>>, audit: AuditSink, metrics: Arc<Metrics>) -> Inspector {
        Inspector {
            enforced: policy.is_some(),
            policy: policy.unwrap_or_else(|| Arc::new(Policy::permissive())),
            audit,
            metrics,
        }
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// The inspector of a new session of `principal`, whose server holds `injected`
    /// credentials (redacted from everything it sends).
    pub(crate) fn open_session(
        self: &Arc<Self>,
        principal: &Principal,
        injected: &SecretSet,
    ) -> Arc<SessionInspect> {
        let secrets = Secrets::new(injected.values());
        Arc::new(SessionInspect {
            inspector: self.clone(),
            history: self.policy.new_history(),
            secrets,
            session: OnceLock::new(),
            iss: principal.issuer.as_str().into(),
            sub: principal.subject.as_str().into(),
            client_id: principal.client_id.as_deref().map(Arc::from),
            act: principal_actors(principal),
        })
    }

    /// Records a request refused by authentication: the reason code and, when the token was
    /// valid but lacked scopes, who it was. Never the token.
    pub(crate) fn auth_failure(&self, reason: &'static str, who: Option<&Principal>) {
        if !self.audit.is_enabled() {
            return;
        }
        let mut e = AuditEvent::new(EventKind::AuthFailure, SystemTime::now());
        e.decision = Some(reason);
        if let Some(p) = who {
            e.iss = Some(p.issuer.as_str().into());
            e.sub = Some(p.subject.as_str().into());
            e.client_id = p.client_id.as_deref().map(Arc::from);
            e.act = principal_actors(p);
        }
        self.audit.emit(e);
    }
}

/// One session's view: its history (for sequence rules), the credentials its server holds,
/// who it belongs to.
#[derive(Debug)]
pub(crate) struct SessionInspect {
    inspector: Arc<Inspector>,
    history: History,
    secrets: Secrets,
    /// The session id's last characters (as in logs), once the session exists.
    session: OnceLock<Arc<str>>,
    iss: Arc<str>,
    sub: Arc<str>,
    client_id: Option<Arc<str>>,
    act: Vec<Arc<str>>,
}

impl SessionInspect {
    /// The session exists: remember its id and record its start.
    pub(crate) fn started(&self, session_id: &str) {
        let short = session_id
            .get(session_id.len().saturating_sub(8)..)
            .unwrap_or(session_id);
        let _ = self.session.set(short.into());
        self.emit(self.event(EventKind::SessionStart));
    }

    fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = AuditEvent::new(kind, SystemTime::now());
        e.session = self.session.get().cloned();
        if !self.iss.is_empty() {
            e.iss = Some(self.iss.clone());
        }
        e.sub = Some(self.sub.clone());
        e.client_id = self.client_id.clone();
        e.act = self.act.clone();
        e
    }

    fn emit(&self, e: AuditEvent) {
        self.inspector.audit.emit(e);
    }

    fn audited(&self) -> bool {
        self.inspector.audit.is_enabled()
    }
}

impl Inspect for SessionInspect {
    fn server_message(
        &self,
        request: Option<&RequestTag>,
        kind: Kind,
        line: Bytes,
    ) -> Option<Bytes> {
        let call = request.and_then(|t| t.downcast_ref::<CallContext>());
        let policy = &self.inspector.policy;
        let mut line = line;
        if let Some(c) = call
            && let Some(list) = c.list
            && kind == Kind::Response
        {
            match policy.filter_list(&*c.principal, list, &line, SystemTime::now()) {
                Ok(Some(filtered)) => line = Bytes::from(filtered),
                Ok(None) => {}
                Err(_) => return uninspectable(&line, kind),
            }
        }
        let rules = match call {
            Some(c) => policy.redact_rules(c.target.as_ref(), c.task_result),
            None => Vec::new(),
        };
        let mut counts = Vec::new();
        if !rules.is_empty() || !self.secrets.is_empty() {
            match policy.redact(&line, &rules, &self.secrets) {
                Ok(r) => {
                    if let Some(bytes) = r.bytes {
                        line = Bytes::from(bytes);
                    }
                    counts = r.counts;
                }
                // Not JSON we can walk (deeper than serde_json parses anyway), or a credential
                // no edit can take out: nothing of it may pass unexamined.
                Err(_) => return uninspectable(&line, kind),
            }
        }
        match call {
            Some(c) if kind == Kind::Response => c.answered(&line, counts),
            _ if !counts.is_empty() && self.audited() => {
                let mut e = self.event(EventKind::Redaction);
                e.method = Envelope::parse(&line)
                    .ok()
                    .and_then(|env| env.method.map(|m| Arc::from(&*m)));
                e.redactions = counts.iter().map(Redactions::from).collect();
                self.emit(e);
            }
            _ => {}
        }
        Some(line)
    }

    fn ended(&self, reason: &'static str, exit: Option<String>) {
        if !self.audited() {
            return;
        }
        if let Some(status) = &exit {
            let mut e = self.event(EventKind::ChildExit);
            e.exit = Some(status.clone());
            self.emit(e);
        }
        let mut e = self.event(EventKind::SessionEnd);
        e.detail = Some(reason.to_owned());
        self.emit(e);
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// What replaces a server message that cannot be inspected: an error for the request a
/// response answers; anything else is dropped.
fn uninspectable(line: &[u8], kind: Kind) -> Option<Bytes> {
    tracing::warn!(
        bytes = line.len(),
        "dropped a message of the server that could not be inspected"
    );
    (kind == Kind::Response).then(|| {
        let id = Envelope::parse(line).ok().and_then(|e| e.id);
        Bytes::from(crate::mcp::error_response(
            id.as_ref(),
            crate::mcp::code::INTERNAL_ERROR,
            "the server's message could not be inspected",
        ))
    })
}

/// Kept with an allowed request until it is done; its drop writes the `call` record.
struct CallContext {
    session: Arc<SessionInspect>,
    principal: Arc<Principal>,
    method: Arc<str>,
    target: Option<Target>,
    list: Option<ListKind>,
    task_result: bool,
    /// Whether a `call` record is written (governed methods).
    governed: bool,
    rule: Option<Arc<str>>,
    at: SystemTime,
    started: Instant,
    request_bytes: usize,
    arguments: Option<Bytes>,
    outcome: Mutex<Option<Outcome>>,
}

struct Outcome {
    response_bytes: usize,
    error_code: Option<i64>,
    tool_error: bool,
    redactions: Vec<RedactionCount>,
}

impl CallContext {
    fn answered(&self, line: &[u8], redactions: Vec<RedactionCount>) {
        if !self.governed || !self.session.audited() {
            return;
        }
        let error_code = error_code(line);
        let tool_error =
            error_code.is_none() && memchr::memmem::find(line, b"\"isError\":true").is_some();
        *self.outcome.lock() = Some(Outcome {
            response_bytes: line.len(),
            error_code,
            tool_error,
            redactions,
        });
    }
}

impl Drop for CallContext {
    fn drop(&mut self) {
        if !self.governed || !self.session.audited() {
            return;
        }
        let mut e = self.session.event(EventKind::Call);
        e.time = self.at;
        fill_request(&mut e, &self.method, self.target.as_ref(), &self.principal);
        e.decision = Some("allow");
        e.rule = self.rule.clone();
        e.duration = Some(self.started.elapsed());
        e.request_bytes = Some(self.request_bytes);
        match self.outcome.lock().take() {
            Some(o) => {
                e.outcome = Some(if o.error_code.is_some() {
                    "error"
                } else if o.tool_error {
                    "tool_error"
                } else {
                    "ok"
                });
                e.error_code = o.error_code;
                e.response_bytes = Some(o.response_bytes);
                e.redactions = o.redactions.iter().map(Redactions::from).collect();
            }
            // Timed out, cancelled, or the session ended first.
            None => e.outcome = Some("no_response"),
        }
        e.arguments = self.arguments.take().map(|raw| Arguments {
            raw,
            secrets: self.session.secrets.clone(),
        });
        self.session.emit(e);
    }
}

fn fill_request(e: &mut AuditEvent, method: &str, target: Option<&Target>, p: &Principal) {
    e.method = Some(method.into());
    if let Some(t) = target {
        e.kind = Some(t.kind.name());
        e.name = Some(t.name.clone());
    }
    // The token of this request may differ from the session's first (a step-up).
    e.client_id = p.client_id.as_deref().map(Arc::from);
}

fn error_code(line: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Reply {
        error: Option<Code>,
    }
    #[derive(Deserialize)]
    struct Code {
        code: i64,
    }
    // Most responses are results: skip the parse.
    memchr::memmem::find(line, b"\"error\"")?;
    serde_json::from_slice::<Reply>(line)
        .ok()?
        .error
        .map(|c| c.code)
}

/// The outcome of [`admit`].
pub(crate) enum Admit {
    /// Forward the request, with this tag kept beside it.
    Forward(Option<RequestTag>),
    /// Do not forward it.
    Refuse(Box<Refusal>),
}

/// A request the policy refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) deny: Deny,
    /// The refused request's id.
    pub(crate) id: Id,
    /// Without authentication no token can gain scopes: no step-up challenge.
    pub(crate) anonymous: bool,
}

#[derive(Deserialize)]
struct ArgsOnly<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// Asks the policy about one client request of `session`.
pub(crate) fn admit(
    principal: &Arc<Principal>,
    session: &Session,
    env: &Envelope<'_>,
    body: &Bytes,
) -> Admit {
    let Some(si) = session
        .inspector()
        .cloned()
        .and_then(|i| i.into_any().downcast::<SessionInspect>().ok())
    else {
        return Admit::Forward(None);
    };
    let inspector = &si.inspector;
    if !inspector.enforced || env.kind != Kind::Request {
        return Admit::Forward(None);
    }
    let policy = &inspector.policy;
    let method = env.method.as_deref().unwrap_or_default();
    let governed = crate::policy::governs(method);
    let list = ListKind::of_method(method);
    let task_result = method == "tasks/result" && policy.has_redact_rules();
    if !governed && list.is_none() && !task_result {
        return Admit::Forward(None);
    }
    let at = SystemTime::now();
    let decision = if governed {
        policy.check(&PolicyInput {
            caller: &**principal,
            method,
            params: env.params,
            history: &si.history,
            session: session.id(),
            now: at,
            instant: Instant::now(),
        })
    } else {
        Decision::Allow(Allow {
            target: None,
            rule: None,
        })
    };
    // Arguments go to the audit writer as a zero-copy slice of the body; it hashes them.
    let arguments = || {
        if !governed || !si.audited() {
            return None;
        }
        let raw = env.params?;
        let args = crate::mcp::from_object::<ArgsOnly<'_>>(raw.get())?.arguments?;
        Some(body.slice_ref(args.get().as_bytes()))
    };
    match decision {
        Decision::Allow(a) => Admit::Forward(Some(Box::new(CallContext {
            session: si.clone(),
            principal: principal.clone(),
            method: method.into(),
            target: a.target,
            list,
            task_result,
            governed,
            rule: a.rule,
            at,
            started: Instant::now(),
            request_bytes: body.len(),
            arguments: arguments(),
            outcome: Mutex::new(None),
        }))),
        Decision::Deny(d) => {
            inspector
                .metrics
                .policy_denied(d.rule.as_deref().unwrap_or(d.reason.code()));
            if si.audited() {
                let mut e = si.event(EventKind::Denied);
                e.time = at;
                fill_request(&mut e, method, d.target.as_ref(), principal);
                e.decision = Some(d.reason.code());
                e.rule = d.rule.clone();
                e.request_bytes = Some(body.len());
                match &d.reason {
                    DenyReason::InsufficientScope { scopes } => e.scopes = Some(scopes.clone()),
                    DenyReason::RateLimited { retry_after } => {
                        e.retry_after_s = Some(retry_after.as_secs_f64().ceil() as u64);
                    }
                    _ => {}
                }
                e.arguments = arguments().map(|raw| Arguments {
                    raw,
                    secrets: si.secrets.clone(),
                });
                si.emit(e);
            }
            Admit::Refuse(Box::new(Refusal {
                deny: d,
                id: env.id.clone().unwrap_or(Id::Int(0)),
                anonymous: principal.issuer.is_empty(),
            }))
        }
    }
}

impl Refusal {
    /// Whether an HTTP status answers this refusal best (a step-up challenge, a rate limit),
    /// when the request came alone on Streamable HTTP. Otherwise, and on streams, the answer
    /// is a JSON-RPC error.
    pub(crate) fn wants_status(&self) -> bool {
        match self.deny.reason {
            DenyReason::InsufficientScope { .. } => !self.anonymous,
            DenyReason::RateLimited { .. } => true,
            _ => false,
        }
    }
}
