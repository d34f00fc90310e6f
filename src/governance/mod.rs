//! Governance of one session's traffic: the policy decision on each client request, rate
//! limits, list filtering and redaction of what the server sends, and the audit records of
//! all of it. Decisions are `policy`'s (pure) and records are `audit`'s (a sink); this module
//! connects them to a session, which holds its [`SessionGovernance`] as a value. It knows
//! nothing of HTTP: a [`Refusal`] is answered by the transport.

mod call;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

pub use call::{Call, Refusal, Verdict};

use crate::audit::{Activity, AuditEvent, AuditSink, EventKind, Redactions};
use crate::auth::Principal;
use crate::credentials::SecretSet;
use crate::mcp::{Envelope, Kind};
use crate::policy::{Caller, History, Policy, Secrets};
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
        &self.claims
    }
}

/// The delegation chain of a principal for audit records, current actor first.
fn actors(p: &Principal) -> Vec<Arc<str>> {
    p.actors
        .iter()
        .map(|a| Arc::from(a.subject.as_str()))
        .collect()
}

/// Policy and audit: shared by all sessions.
#[derive(Debug)]
pub struct Governance {
    policy: Arc<Policy>,
    audit: AuditSink,
    /// The activity page's rings, when an admin listener serves the page.
    activity: Option<Arc<Activity>>,
    metrics: Arc<Metrics>,
    /// Whether a config file was given. Without one nothing is decided or filtered; only
    /// injected credentials are redacted.
    enforced: bool,
}

impl Governance {
    /// `policy`: from the config file, if any.
    pub fn new(policy: Option<Arc<Policy>>, audit: AuditSink, metrics: Arc<Metrics>) -> Governance {
        Governance {
            enforced: policy.is_some(),
            policy: policy.unwrap_or_else(|| Arc::new(Policy::permissive())),
            audit,
            activity: None,
            metrics,
        }
    }

    /// Also keeps the latest records in `activity`, for the activity page. Calls are then
    /// recorded even without a config file (every call is allowed).
    pub fn watched(mut self, activity: Arc<Activity>) -> Governance {
        self.activity = Some(activity);
        self
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// The activity page's rings, if any.
    pub fn activity(&self) -> Option<&Arc<Activity>> {
        self.activity.as_ref()
    }

    /// Whether records are written anywhere (the audit log, the activity page).
    fn recorded(&self) -> bool {
        self.audit.is_enabled() || self.activity.is_some()
    }

    /// Writes a record to the audit log and shows it on the activity page.
    fn emit(&self, e: AuditEvent) {
        if let Some(a) = &self.activity {
            a.record(&e);
        }
        if self.audit.is_enabled() {
            self.audit.emit(e);
        }
    }

    /// The governance of a new session of `principal`, whose server holds `injected`
    /// credentials (redacted from everything it sends).
    pub fn open_session(
        self: &Arc<Self>,
        principal: &Principal,
        injected: &SecretSet,
    ) -> SessionGovernance {
        SessionGovernance {
            shared: self.clone(),
            history: self.policy.new_history(),
            secrets: Secrets::new(injected.values()),
            session: OnceLock::new(),
            iss: principal.issuer.as_str().into(),
            sub: principal.subject.as_str().into(),
            client_id: principal.client_id.as_deref().map(Arc::from),
            act: actors(principal),
        }
    }

    /// Records a request refused by authentication: the reason code and, when the token was
    /// valid but lacked scopes, who it was. Never the token.
    pub fn auth_failure(&self, reason: &'static str, who: Option<&Principal>) {
        if !self.recorded() {
            return;
        }
        let mut e = AuditEvent::new(EventKind::AuthFailure, SystemTime::now());
        e.decision = Some(reason);
        if let Some(p) = who {
            e.iss = Some(p.issuer.as_str().into());
            e.sub = Some(p.subject.as_str().into());
            e.client_id = p.client_id.as_deref().map(Arc::from);
            e.act = actors(p);
        }
        self.emit(e);
    }

    /// Records a change of `user`'s connection `name` at our issuer `iss` (`what`: see
    /// [`EventKind::Connection`]), and counts it. Never a token.
    pub fn connection(&self, iss: &str, user: &str, name: &str, what: &'static str) {
        self.metrics.connection_event(what);
        if !self.recorded() {
            return;
        }
        let mut e = AuditEvent::new(EventKind::Connection, SystemTime::now());
        e.iss = Some(iss.into());
        e.sub = Some(user.into());
        e.name = Some(name.into());
        e.decision = Some(what);
        self.emit(e);
    }

    /// Records a session that was not admitted (`reason`: the refusal's code), with who
    /// asked and, for a rate, when to retry.
    pub fn session_refused(
        &self,
        principal: &Principal,
        reason: &'static str,
        retry_after: Option<Duration>,
    ) {
        if !self.recorded() {
            return;
        }
        let mut e = AuditEvent::new(EventKind::SessionRefused, SystemTime::now());
        e.decision = Some(reason);
        if !principal.issuer.is_empty() {
            e.iss = Some(principal.issuer.as_str().into());
        }
        e.sub = Some(principal.subject.as_str().into());
        e.client_id = principal.client_id.as_deref().map(Arc::from);
        e.act = actors(principal);
        if let Some(wait) = retry_after {
            e.retry_after_s = Some(wait.as_secs_f64().ceil() as u64);
        }
        self.emit(e);
    }
}

/// One session's governance: its history (for sequence rules and rate limits), the
/// credentials its server holds, who it belongs to.
#[derive(Debug)]
pub struct SessionGovernance {
    shared: Arc<Governance>,
    history: History,
    secrets: Secrets,
    /// The session id's last characters (as in logs), once the session exists.
    session: OnceLock<Arc<str>>,
    iss: Arc<str>,
    sub: Arc<str>,
    client_id: Option<Arc<str>>,
    act: Vec<Arc<str>>,
}

impl SessionGovernance {
    /// The subject and client id of the session's principal.
    pub fn who(&self) -> (&str, Option<&str>) {
        (&self.sub, self.client_id.as_deref())
    }

    /// The session exists: remember its id and record its start.
    pub fn started(&self, session_id: &str) {
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
        self.shared.emit(e);
    }

    /// Whether records of this session are written anywhere.
    fn recorded(&self) -> bool {
        self.shared.recorded()
    }

    /// Whether the audit log is written (it alone keeps a hash of the arguments).
    fn audited(&self) -> bool {
        self.shared.audit.is_enabled()
    }

    /// Every message of the server passes here before any client stream holds it; the
    /// return value is what clients get (and what replay buffers keep), `None` to drop it
    /// (a response is always answered). `call` is the request a response answers.
    pub fn server_message(
        &self,
        call: Option<&mut Call>,
        kind: Kind,
        line: Bytes,
    ) -> Option<Bytes> {
        let policy = &self.shared.policy;
        let mut line = line;
        if let Some(c) = call.as_deref()
            && let Some(list) = c.list
            && kind == Kind::Response
        {
            match policy.filter_list(&*c.principal, list, &line, SystemTime::now()) {
                Ok(Some(filtered)) => line = Bytes::from(filtered),
                Ok(None) => {}
                Err(_) => return uninspectable(&line, kind),
            }
        }
        let rules = match call.as_deref() {
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
                // Not JSON we can walk (deeper than serde_json parses anyway), or a
                // credential no edit can take out: nothing of it may pass unexamined.
                Err(_) => return uninspectable(&line, kind),
            }
        }
        match call {
            Some(c) if kind == Kind::Response && self.recorded() => c.answered(&line, counts),
            _ if !counts.is_empty() && self.recorded() => {
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

    /// The session ended; `reason` is a snake_case code, `exit` the server's exit status
    /// when it exited on its own.
    pub fn ended(&self, reason: &'static str, exit: Option<String>) {
        if !self.recorded() {
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

#[cfg(test)]
mod tests;
