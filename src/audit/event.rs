//! What one audit record says. Records never carry tokens or raw argument values: arguments
//! are hashed (keyed, when a key is configured) unless capture is switched on, and captured
//! arguments are redacted first.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::chain::Anchor;
use crate::policy::{RedactionCount, Secrets};

/// Which kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The audit log was opened by a starting sidecar.
    AuditOpened,
    /// The audit log was closed by a stopping sidecar (absent after a crash or truncation).
    AuditClosed,
    /// Records were lost because the writer could not keep up or could not write (`count`).
    RecordsDropped,
    SessionStart,
    /// A new session was not admitted (a cap, a rate, a drain): `decision` says which.
    SessionRefused,
    SessionEnd,
    /// A governed request that was allowed: its outcome once answered.
    Call,
    /// A request the policy refused; it never reached the server.
    Denied,
    /// A server message outside any call was redacted (notifications, server requests).
    Redaction,
    /// A request without acceptable credentials.
    AuthFailure,
    /// A session's server process exited.
    ChildExit,
    /// A user's upstream connection changed: `decision` is `connected`, `refreshed`,
    /// `refresh_failed` or `revoked`; `name` the connection.
    Connection,
}

impl EventKind {
    pub fn code(self) -> &'static str {
        match self {
            EventKind::AuditOpened => "audit_opened",
            EventKind::AuditClosed => "audit_closed",
            EventKind::RecordsDropped => "records_dropped",
            EventKind::SessionStart => "session_start",
            EventKind::SessionRefused => "session_refused",
            EventKind::SessionEnd => "session_end",
            EventKind::Call => "call",
            EventKind::Denied => "denied",
            EventKind::Redaction => "redaction",
            EventKind::AuthFailure => "auth_failure",
            EventKind::ChildExit => "child_exit",
            EventKind::Connection => "connection",
        }
    }
}

/// One redaction count as written.
#[derive(Debug, Clone, Serialize)]
pub struct Redactions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Arc<str>>,
    pub what: &'static str,
    pub count: u32,
}

impl From<&RedactionCount> for Redactions {
    fn from(c: &RedactionCount) -> Self {
        Redactions {
            rule: c.rule.clone(),
            what: c.what,
            count: c.count,
        }
    }
}

/// Arguments of a call, handed to the writer thread, which hashes (or redacts and
/// captures) them off the request path.
#[derive(Clone)]
pub struct Arguments {
    pub raw: Bytes,
    pub secrets: Secrets,
}

impl std::fmt::Debug for Arguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arguments")
            .field("len", &self.raw.len())
            .finish()
    }
}

/// One audit event. Fields that do not apply stay `None` and are not written.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub event: EventKind,
    #[serde(skip)]
    pub time: SystemTime,
    /// The last characters of the session id (as in logs): enough to correlate, not to use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Arc<str>>,
    /// The delegation chain (`act` claims), outermost actor first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub act: Vec<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Arc<str>>,
    /// `tool`, `prompt` or `resource`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Tool or prompt name, or resource URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    /// `allow` or a deny reason code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Arc<str>>,
    /// Scopes a step-up would need.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// `ok`, `error` (the server answered with an error), `no_response` (timeout, cancel,
    /// session end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    /// Our own description of a failure (never text from the server or the client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "millis")]
    pub duration: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<Redactions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// In `audit_opened`: the head the anchor named when this run started (see `chain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Anchor>,
    /// In `audit_opened`: this run keeps the head in an anchor file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchored: Option<bool>,
    #[serde(skip)]
    pub arguments: Option<Arguments>,
}

fn millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3),
        None => s.serialize_none(),
    }
}

impl AuditEvent {
    /// An event of `kind` at `time` with nothing else set.
    pub fn new(kind: EventKind, time: SystemTime) -> AuditEvent {
        AuditEvent {
            event: kind,
            time,
            session: None,
            iss: None,
            sub: None,
            client_id: None,
            act: Vec::new(),
            method: None,
            kind: None,
            name: None,
            decision: None,
            rule: None,
            scopes: None,
            retry_after_s: None,
            outcome: None,
            error_code: None,
            detail: None,
            duration: None,
            request_bytes: None,
            response_bytes: None,
            redactions: Vec::new(),
            exit: None,
            count: None,
            anchor: None,
            anchored: None,
            arguments: None,
        }
    }
}
