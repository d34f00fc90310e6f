//! One client request under governance: the decision before it reaches the server, and the
//! `call` record written when it is done, however it ends.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::SessionGovernance;
use crate::audit::{Arguments, AuditEvent, EventKind, Redactions};
use crate::auth::Principal;
use crate::mcp::{Envelope, Id, Kind};
use crate::policy::{
    Allow, Decision, Deny, DenyReason, ListKind, PolicyInput, RedactionCount, Target,
};

/// What [`SessionGovernance::admit`] decided about a client request.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the request; the call, when governed, is kept with it until it is done and
    /// handed back to [`SessionGovernance::finished`].
    Forward(Option<Call>),
    /// Do not forward it.
    Refuse(Box<Refusal>),
}

/// A request the policy refused, for the transport to answer.
#[derive(Debug)]
pub struct Refusal {
    pub deny: Deny,
    /// The refused request's id.
    pub id: Id,
    /// Without authentication no token can gain scopes: no step-up challenge.
    pub anonymous: bool,
}

impl Refusal {
    /// Whether an HTTP status answers this refusal best (a step-up challenge, a rate limit),
    /// when the request came alone on Streamable HTTP. Otherwise, and on streams, the answer
    /// is a JSON-RPC error.
    pub fn wants_status(&self) -> bool {
        match self.deny.reason {
            DenyReason::InsufficientScope { .. } => !self.anonymous,
            DenyReason::RateLimited { .. } => true,
            _ => false,
        }
    }
}

/// An allowed request in flight: what its answer is filtered and redacted by, and what its
/// `call` record says.
#[derive(Debug)]
pub struct Call {
    pub(super) principal: Arc<Principal>,
    method: Arc<str>,
    pub(super) target: Option<Target>,
    pub(super) list: Option<ListKind>,
    pub(super) task_result: bool,
    /// Whether a `call` record is written (governed methods).
    governed: bool,
    rule: Option<Arc<str>>,
    at: SystemTime,
    started: Instant,
    request_bytes: usize,
    arguments: Option<Bytes>,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
struct Outcome {
    response_bytes: usize,
    error_code: Option<i64>,
    tool_error: bool,
    redactions: Vec<RedactionCount>,
}

impl Call {
    pub(super) fn answered(&mut self, line: &[u8], redactions: Vec<RedactionCount>) {
        if !self.governed {
            return;
        }
        let error_code = error_code(line);
        let tool_error =
            error_code.is_none() && memchr::memmem::find(line, b"\"isError\":true").is_some();
        self.outcome = Some(Outcome {
            response_bytes: line.len(),
            error_code,
            tool_error,
            redactions,
        });
    }
}

#[derive(Deserialize)]
struct ArgsOnly<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

impl SessionGovernance {
    /// Asks the policy about one client request of the session `session_id`.
    pub fn admit(
        &self,
        principal: &Arc<Principal>,
        session_id: &str,
        env: &Envelope<'_>,
        body: &Bytes,
    ) -> Verdict {
        let shared = &self.shared;
        if (!shared.enforced && shared.activity.is_none()) || env.kind != Kind::Request {
            return Verdict::Forward(None);
        }
        let policy = &shared.policy;
        let method = env.method.as_deref().unwrap_or_default();
        let governed = crate::policy::governs(method);
        // Without a config file nothing is decided, filtered or redacted by rule: calls are
        // only recorded (for the activity page).
        let enforced = shared.enforced;
        let list = ListKind::of_method(method).filter(|_| enforced);
        let task_result = enforced && method == "tasks/result" && policy.has_redact_rules();
        if !governed && list.is_none() && !task_result {
            return Verdict::Forward(None);
        }
        let at = SystemTime::now();
        let decision = if !enforced {
            Decision::Allow(Allow {
                target: observed_target(method, env.params),
                rule: None,
            })
        } else if governed {
            policy.check(&PolicyInput {
                caller: &**principal,
                method,
                params: env.params,
                history: &self.history,
                session: session_id,
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
            if !governed || !self.audited() {
                return None;
            }
            let raw = env.params?;
            let args = crate::mcp::from_object::<ArgsOnly<'_>>(raw.get())?.arguments?;
            Some(body.slice_ref(args.get().as_bytes()))
        };
        match decision {
            Decision::Allow(a) => Verdict::Forward(Some(Call {
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
                outcome: None,
            })),
            Decision::Deny(d) => {
                shared
                    .metrics
                    .policy_denied(d.rule.as_deref().unwrap_or(d.reason.code()));
                if self.recorded() {
                    let mut e = self.event(EventKind::Denied);
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
                        secrets: self.secrets.clone(),
                    });
                    self.emit(e);
                }
                Verdict::Refuse(Box::new(Refusal {
                    deny: d,
                    id: env.id.clone().unwrap_or(Id::Int(0)),
                    anonymous: principal.issuer.is_empty(),
                }))
            }
        }
    }

    /// A forwarded request is done (answered, timed out, cancelled, or its session ended
    /// first): its `call` record is written.
    pub fn finished(&self, mut call: Call) {
        if !call.governed || !self.recorded() {
            return;
        }
        let mut e = self.event(EventKind::Call);
        e.time = call.at;
        fill_request(&mut e, &call.method, call.target.as_ref(), &call.principal);
        e.decision = Some("allow");
        e.rule = call.rule.clone();
        e.duration = Some(call.started.elapsed());
        e.request_bytes = Some(call.request_bytes);
        match call.outcome.take() {
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
            // Cancelled, or never handed to the server.
            None => e.outcome = Some("no_response"),
        }
        e.arguments = call.arguments.take().map(|raw| Arguments {
            raw,
            secrets: self.secrets.clone(),
        });
        self.emit(e);
    }
}

/// What a request names, for the record only (nothing is decided on it): a tool or prompt
/// name, a resource URI.
fn observed_target(method: &str, params: Option<&RawValue>) -> Option<Target> {
    let kind = crate::policy::TargetKind::of_method(method)?;
    let field = match kind {
        crate::policy::TargetKind::Resource => "uri",
        crate::policy::TargetKind::Tool | crate::policy::TargetKind::Prompt => "name",
    };
    let name = crate::mcp::top_level_str(params?, field)?;
    Some(Target {
        kind,
        name: name.as_ref().into(),
    })
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
