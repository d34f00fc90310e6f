//! The activity page's memory: bounded in-memory rings of the most recent governance records
//! (calls, refusals, server exits) and per-minute counts for the last hour. Governance hands
//! every record it writes to the audit log here too; the page reads a copy when someone opens
//! it. Only the fields the page shows are kept: never arguments, results or anything the
//! server was given.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

use super::{AuditEvent, EventKind};

/// Calls (allowed and refused) kept for the page.
pub const RECENT_CALLS: usize = 500;
/// Refusals (of calls, sessions and tokens) kept.
pub const RECENT_REFUSALS: usize = 200;
/// Refused tokens kept, apart: anyone can send bad tokens, and they must not push the
/// policy's refusals off the page.
pub const RECENT_TOKEN_REFUSALS: usize = 100;
/// Server exits kept.
pub const RECENT_EXITS: usize = 100;
/// Longest method, tool or resource name kept (client-supplied: bounded).
const MAX_SHOWN: usize = 128;
/// Minutes the chart covers.
pub const MINUTES: usize = 60;

/// One call, as the page lists it.
#[derive(Debug, Clone)]
pub struct CallRow {
    pub at: SystemTime,
    pub session: Option<Arc<str>>,
    pub subject: Option<Arc<str>>,
    pub client_id: Option<Arc<str>>,
    pub method: Option<Arc<str>>,
    /// The tool, prompt or resource the call named.
    pub target: Option<Arc<str>>,
    /// `allow`, or the refusal's reason code.
    pub decision: &'static str,
    pub rule: Option<Arc<str>>,
    /// `ok`, `error`, `tool_error`, `no_response`; none for a refusal.
    pub outcome: Option<&'static str>,
    /// What was redacted from the answer: (rule or kind, count).
    pub redactions: Vec<(Arc<str>, u32)>,
    pub duration: Option<Duration>,
}

/// A refusal: of a call (policy, rate limit), of a new session, or of a token.
#[derive(Debug, Clone)]
pub struct RefusalRow {
    pub at: SystemTime,
    /// `call`, `session` or `token`.
    pub what: &'static str,
    pub subject: Option<Arc<str>>,
    pub client_id: Option<Arc<str>>,
    pub target: Option<Arc<str>>,
    pub reason: &'static str,
    pub rule: Option<Arc<str>>,
    pub retry_after_s: Option<u64>,
}

/// A server process that exited on its own (a crash, or an exit before its session ended).
#[derive(Debug, Clone)]
pub struct ExitRow {
    pub at: SystemTime,
    pub session: Option<Arc<str>>,
    pub subject: Option<Arc<str>>,
    pub status: String,
}

/// Calls and refusals in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    pub calls: u32,
    pub refusals: u32,
}

/// What the page shows, copied out of the rings (newest first).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub calls: Vec<CallRow>,
    pub refusals: Vec<RefusalRow>,
    pub exits: Vec<ExitRow>,
    /// The last [`MINUTES`] minutes up to `now`, oldest first, empty minutes included.
    pub minutes: Vec<Minute>,
    pub redactions: u64,
}

#[derive(Debug, Default)]
struct Rings {
    calls: VecDeque<CallRow>,
    refusals: VecDeque<RefusalRow>,
    tokens: VecDeque<RefusalRow>,
    exits: VecDeque<ExitRow>,
    minutes: VecDeque<Minute>,
    redactions: u64,
}

/// The rings. Recording is a lock and a push; nothing is formatted until the page is read.
#[derive(Debug, Default)]
pub struct Activity {
    rings: Mutex<Rings>,
}

fn push<T>(ring: &mut VecDeque<T>, cap: usize, item: T) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// A client-supplied name as the page may show it: at most [`MAX_SHOWN`] characters, and a
/// URI without what may carry credentials (user info, query, fragment).
fn shown(v: &Option<Arc<str>>) -> Option<Arc<str>> {
    let s = v.as_deref()?;
    if s.len() <= MAX_SHOWN && !s.contains([':', '?', '#', '@']) {
        return v.clone();
    }
    let mut out = match url::Url::parse(s) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => s.to_owned(),
    };
    if out.chars().count() > MAX_SHOWN {
        out = out.chars().take(MAX_SHOWN).collect::<String>() + "…";
    }
    Some(out.into())
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

impl Rings {
    fn count(&mut self, at: SystemTime, calls: u32, refusals: u32) {
        let minute = minute_of(at);
        match self.minutes.back_mut() {
            Some(m) if m.minute == minute => {
                m.calls += calls;
                m.refusals += refusals;
            }
            // A record may arrive a little after a younger one (a call is recorded when it
            // ends, stamped when it began): it counts in the newest minute.
            Some(m) if m.minute > minute => {
                m.calls += calls;
                m.refusals += refusals;
            }
            _ => push(
                &mut self.minutes,
                MINUTES,
                Minute {
                    minute,
                    calls,
                    refusals,
                },
            ),
        }
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity::default()
    }

    /// Takes note of one governance record.
    pub fn record(&self, e: &AuditEvent) {
        let mut r = self.rings.lock();
        match e.event {
            EventKind::Call | EventKind::Denied => {
                let refused = e.event == EventKind::Denied;
                let decision = if refused {
                    e.decision.unwrap_or("denied")
                } else {
                    "allow"
                };
                r.count(e.time, 1, u32::from(refused));
                let redactions: Vec<(Arc<str>, u32)> = e
                    .redactions
                    .iter()
                    .map(|x| (x.rule.clone().unwrap_or_else(|| Arc::from(x.what)), x.count))
                    .collect();
                r.redactions += redactions.iter().map(|(_, n)| u64::from(*n)).sum::<u64>();
                let row = CallRow {
                    at: e.time,
                    session: e.session.clone(),
                    subject: e.sub.clone(),
                    client_id: e.client_id.clone(),
                    method: shown(&e.method),
                    target: shown(&e.name),
                    decision,
                    rule: e.rule.clone(),
                    outcome: e.outcome,
                    redactions,
                    duration: e.duration,
                };
                push(&mut r.calls, RECENT_CALLS, row);
                if refused {
                    let row = RefusalRow {
                        at: e.time,
                        what: "call",
                        subject: e.sub.clone(),
                        client_id: e.client_id.clone(),
                        target: shown(&e.name).or_else(|| shown(&e.method)),
                        reason: decision,
                        rule: e.rule.clone(),
                        retry_after_s: e.retry_after_s,
                    };
                    push(&mut r.refusals, RECENT_REFUSALS, row);
                }
            }
            EventKind::SessionRefused | EventKind::AuthFailure => {
                r.count(e.time, 0, 1);
                let token = e.event == EventKind::AuthFailure;
                let row = RefusalRow {
                    at: e.time,
                    what: if e.event == EventKind::SessionRefused {
                        "session"
                    } else {
                        "token"
                    },
                    subject: e.sub.clone(),
                    client_id: e.client_id.clone(),
                    target: None,
                    reason: e.decision.unwrap_or("refused"),
                    rule: None,
                    retry_after_s: e.retry_after_s,
                };
                if token {
                    push(&mut r.tokens, RECENT_TOKEN_REFUSALS, row);
                } else {
                    push(&mut r.refusals, RECENT_REFUSALS, row);
                }
            }
            EventKind::ChildExit => {
                let row = ExitRow {
                    at: e.time,
                    session: e.session.clone(),
                    subject: e.sub.clone(),
                    status: e.exit.clone().unwrap_or_default(),
                };
                push(&mut r.exits, RECENT_EXITS, row);
            }
            EventKind::Redaction => {
                r.redactions += e.redactions.iter().map(|x| u64::from(x.count)).sum::<u64>();
            }
            EventKind::AuditOpened
            | EventKind::AuditClosed
            | EventKind::RecordsDropped
            | EventKind::SessionStart
            | EventKind::SessionEnd
            | EventKind::Connection => {}
        }
    }

    /// A copy of what the rings hold, newest first, with the chart's minutes up to `now`.
    pub fn snapshot(&self, now: SystemTime) -> Snapshot {
        let r = self.rings.lock();
        let last = minute_of(now);
        let first = last.saturating_sub(MINUTES as u64 - 1);
        let minutes = (first..=last)
            .map(|minute| {
                r.minutes
                    .iter()
                    .find(|m| m.minute == minute)
                    .copied()
                    .unwrap_or(Minute {
                        minute,
                        ..Minute::default()
                    })
            })
            .collect();
        Snapshot {
            calls: r.calls.iter().rev().cloned().collect(),
            refusals: {
                let mut all: Vec<RefusalRow> =
                    r.refusals.iter().chain(r.tokens.iter()).cloned().collect();
                all.sort_by_key(|r| std::cmp::Reverse(r.at));
                all
            },
            exits: r.exits.iter().rev().cloned().collect(),
            minutes,
            redactions: r.redactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Redactions;

    fn at(minute: u64, second: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(minute * 60 + second)
    }

    fn call(t: SystemTime, tool: &str) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Call, t);
        e.sub = Some("alice".into());
        e.method = Some("tools/call".into());
        e.name = Some(tool.into());
        e.outcome = Some("ok");
        e
    }

    #[test]
    fn keeps_the_newest_records_and_no_more() {
        let a = Activity::new();
        for i in 0..(RECENT_CALLS + 7) {
            a.record(&call(at(1000, 0), &format!("t{i}")));
        }
        let s = a.snapshot(at(1000, 30));
        assert_eq!(s.calls.len(), RECENT_CALLS);
        assert_eq!(
            s.calls[0].target.as_deref(),
            Some(format!("t{}", RECENT_CALLS + 6).as_str())
        );
        assert_eq!(
            s.minutes.last().map(|m| m.calls),
            Some(RECENT_CALLS as u32 + 7)
        );
    }

    #[test]
    fn a_denial_is_a_call_and_a_refusal_with_its_rule() {
        let a = Activity::new();
        let mut e = AuditEvent::new(EventKind::Denied, at(5, 1));
        e.sub = Some("bob".into());
        e.name = Some("delete".into());
        e.decision = Some("rate_limited");
        e.rule = Some("slow-down".into());
        e.retry_after_s = Some(3);
        a.record(&e);
        let s = a.snapshot(at(5, 2));
        assert_eq!(s.calls[0].decision, "rate_limited");
        assert_eq!(s.refusals[0].rule.as_deref(), Some("slow-down"));
        assert_eq!(s.refusals[0].retry_after_s, Some(3));
        let m = s.minutes.last().copied().unwrap_or_default();
        assert_eq!((m.calls, m.refusals), (1, 1));
    }

    #[test]
    fn the_chart_covers_an_hour_with_empty_minutes_filled() {
        let a = Activity::new();
        a.record(&call(at(100, 0), "old"));
        a.record(&call(at(158, 0), "x"));
        a.record(&call(at(159, 10), "y"));
        let s = a.snapshot(at(159, 20));
        assert_eq!(s.minutes.len(), MINUTES);
        assert_eq!(s.minutes[0].minute, 100);
        assert_eq!(s.minutes[0].calls, 1);
        assert_eq!(s.minutes[58].calls, 1);
        assert_eq!(s.minutes[59].calls, 1);
        // An hour later the old minute has left the chart.
        let s = a.snapshot(at(200, 0));
        assert_eq!(s.minutes[0].minute, 141);
        assert_eq!(s.minutes.iter().map(|m| m.calls).sum::<u32>(), 2);
    }

    #[test]
    fn client_names_are_bounded_and_uris_lose_their_credentials() {
        let a = Activity::new();
        let mut e = call(at(1, 0), "x");
        e.method = Some("resources/read".into());
        e.name = Some("postgres://me:hunter2@db/x?sig=s3cr3t#f".into());
        a.record(&e);
        a.record(&call(at(1, 0), &"n".repeat(10_000)));
        let s = a.snapshot(at(1, 1));
        let long = s.calls[0].target.as_deref().unwrap_or("");
        assert_eq!(long.chars().count(), MAX_SHOWN + 1);
        let uri = s.calls[1].target.as_deref().unwrap_or("");
        assert_eq!(uri, "postgres://db/x");
    }

    #[test]
    fn bad_tokens_do_not_push_policy_refusals_out() {
        let a = Activity::new();
        let mut denied = AuditEvent::new(EventKind::Denied, at(1, 0));
        denied.decision = Some("denied_by_rule");
        a.record(&denied);
        for _ in 0..1000 {
            let mut t = AuditEvent::new(EventKind::AuthFailure, at(1, 1));
            t.decision = Some("invalid_token");
            a.record(&t);
        }
        let s = a.snapshot(at(1, 2));
        assert_eq!(s.refusals.len(), RECENT_TOKEN_REFUSALS + 1);
        assert!(s.refusals.iter().any(|r| r.reason == "denied_by_rule"));
    }

    #[test]
    fn redactions_are_counted_by_rule() {
        let a = Activity::new();
        let mut e = call(at(1, 0), "read");
        e.redactions = vec![Redactions {
            rule: Some("keys".into()),
            what: "pattern",
            count: 2,
        }];
        a.record(&e);
        let s = a.snapshot(at(1, 1));
        assert_eq!(s.calls[0].redactions, vec![(Arc::from("keys"), 2)]);
        assert_eq!(s.redactions, 2);
    }
}
