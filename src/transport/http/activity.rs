//! The activity page on the admin listener (`/ui`): live sessions (an operator may end one),
//! recent calls with their decisions and redactions, refusals, server exits, users'
//! connections, and calls per minute. Server-rendered, no JavaScript; read from the
//! governance records' in-memory rings ([`crate::audit::Activity`]) and the session table,
//! so it costs nothing until someone opens it.
//!
//! The admin listener has no authentication: it is protected by where it listens. A page
//! that can end sessions still needs browser protection, because the operator's browser can
//! reach it: a `Host` that is not an IP address, a loopback name or an `--allowed-host` is
//! refused (a rebinding page reaches it under its own name), a form post must come from the
//! page itself (`Origin`, `Sec-Fetch-Site`) and carry its CSRF token, and the page may not
//! be framed.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::AppState;
use super::origin::host_of;
use crate::audit::activity::{self, Snapshot};

/// Where the page lives on the admin listener.
pub(crate) const BASE: &str = "/ui";

/// Calls listed at most (the ring keeps more, for filtering).
const SHOWN_CALLS: usize = 100;
/// Users' connections listed at most.
const SHOWN_CONNECTIONS: usize = 200;

const CSS: &str = include_str!("templates/activity.css");

/// The page's key: signs its CSRF token and the handles of sessions (the page never shows a
/// session id). New for every process.
fn key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        // Without randomness a fixed key would make the token guessable: refuse every form.
        if getrandom::fill(&mut k).is_err() {
            tracing::error!("no randomness for the activity page's key: its forms are refused");
        }
        k
    })
}

fn mac(label: &[u8], value: &[u8]) -> String {
    let k = key();
    if k == &[0u8; 32] {
        return String::new();
    }
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(k) else {
        return String::new();
    };
    m.update(label);
    m.update(&[0]);
    m.update(value);
    m.finalize().into_bytes()[..16]
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn csrf_token() -> String {
    mac(b"csrf", b"activity")
}

fn handle_of(session_id: &str) -> String {
    mac(b"session", session_id.as_bytes())
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Refuses a request whose `Host` does not name this listener (DNS rebinding) or that a
/// browser marks as coming from another site; sends every answer with the page headers.
pub(crate) async fn guard(State(st): State<AppState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_of);
    let known = host.is_some_and(|h| {
        let h = h.trim_matches(['[', ']']);
        h.parse::<std::net::IpAddr>().is_ok()
            || h.eq_ignore_ascii_case("localhost")
            || st
                .config
                .admin_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h))
    });
    if !known {
        return plain(
            StatusCode::FORBIDDEN,
            "this page answers only to the listener's address, localhost or an --allowed-host",
        );
    }
    let foreign = request
        .headers()
        .get_all("sec-fetch-site")
        .iter()
        .any(|v| !matches!(v.to_str().map(str::trim), Ok("same-origin" | "none")));
    if foreign {
        return plain(StatusCode::FORBIDDEN, "cross-site requests are refused");
    }
    let mut response = next.run(request).await;
    page_headers(response.headers_mut());
    response
}

/// The sign-in pages' headers, with this page's policy: nothing but its own stylesheet.
fn page_headers(h: &mut HeaderMap) {
    super::authz::page_headers(h);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    page_headers(r.headers_mut());
    r
}

pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/css"))],
        CSS,
    )
        .into_response()
}

/// The recent-calls filter (query string).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    tool: String,
    /// `allow`, `refused`, or empty for any.
    #[serde(default)]
    decision: String,
    #[serde(default)]
    live: Option<String>,
}

impl Filter {
    fn is_set(&self) -> bool {
        !(self.principal.is_empty() && self.tool.is_empty() && self.decision.is_empty())
    }

    fn keeps(&self, c: &activity::CallRow) -> bool {
        let has = |field: &Option<std::sync::Arc<str>>, want: &str| {
            want.is_empty()
                || field
                    .as_deref()
                    .is_some_and(|v| v.to_lowercase().contains(&want.to_lowercase()))
        };
        let decision = match self.decision.as_str() {
            "allow" => c.decision == "allow",
            "refused" => c.decision != "allow",
            _ => true,
        };
        decision
            && (has(&c.subject, &self.principal) || has(&c.client_id, &self.principal))
            && has(&c.target, &self.tool)
    }

    /// The filter as a query string (without `live`), for the page's own links.
    fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("principal", &self.principal)
            .append_pair("tool", &self.tool)
            .append_pair("decision", &self.decision)
            .finish()
    }
}

struct SessionView {
    short: String,
    handle: String,
    transport: &'static str,
    subject: String,
    client_id: String,
    client: String,
    protocol: String,
    since: String,
    since_utc: String,
    calls: u64,
    last_active: String,
}

struct CallView {
    class: &'static str,
    at: String,
    at_utc: String,
    subject: String,
    method: String,
    target: String,
    decision: String,
    rule: String,
    redactions: String,
    duration: String,
}

struct RefusalView {
    at: String,
    at_utc: String,
    what: &'static str,
    subject: String,
    target: String,
    reason: &'static str,
    rule: String,
    retry: String,
}

struct ExitView {
    at: String,
    at_utc: String,
    session: String,
    subject: String,
    status: String,
}

struct ConnectionView {
    user: String,
    name: String,
    state: &'static str,
    granted: String,
    last_used: String,
}

struct Bar {
    x: usize,
    label: String,
    calls: u32,
    refusals: u32,
    calls_y: usize,
    calls_h: usize,
    refusals_y: usize,
    refusals_h: usize,
}

struct Chart {
    width: usize,
    height: usize,
    bar: usize,
    max: u32,
    bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "activity.html")]
struct ActivityPage<'a> {
    base: &'static str,
    resource_name: &'a str,
    command: String,
    now: String,
    live: bool,
    query: String,
    csrf: String,
    filter: &'a Filter,
    filtered: bool,
    calls_hour: u32,
    refusals_hour: u32,
    redactions: u64,
    chart: Chart,
    sessions: Vec<SessionView>,
    calls: Vec<CallView>,
    more: usize,
    refusals: Vec<RefusalView>,
    exits: Vec<ExitView>,
    has_connections: bool,
    connection_counts: Vec<(&'static str, i64)>,
    connections: Vec<ConnectionView>,
}

fn utc(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn ago(now: SystemTime, t: SystemTime) -> String {
    let s = now.duration_since(t).unwrap_or_default().as_secs();
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn text(v: &Option<std::sync::Arc<str>>) -> String {
    v.as_deref().unwrap_or("").to_owned()
}

fn millis(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
        .unwrap_or_default()
}

fn chart(s: &Snapshot) -> Chart {
    const BAR: usize = 10;
    const HEIGHT: usize = 80;
    let max = s
        .minutes
        .iter()
        .map(|m| m.calls.max(m.refusals))
        .max()
        .unwrap_or(0);
    let scale = |n: u32| -> usize {
        if max == 0 {
            0
        } else {
            // A minute with any call shows at least a sliver.
            ((n as usize * HEIGHT).div_ceil(max as usize)).min(HEIGHT)
        }
    };
    let bars = s
        .minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (ch, rh) = (scale(m.calls), scale(m.refusals));
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(m.minute * 60);
            Bar {
                x: i * BAR,
                label: chrono::DateTime::<chrono::Utc>::from(at)
                    .format("%H:%M")
                    .to_string(),
                calls: m.calls,
                refusals: m.refusals,
                calls_y: HEIGHT - ch,
                calls_h: ch,
                refusals_y: HEIGHT - rh,
                refusals_h: rh,
            }
        })
        .collect();
    Chart {
        width: s.minutes.len().max(1) * BAR,
        height: HEIGHT,
        bar: BAR - 2,
        max,
        bars,
    }
}

/// `GET /ui`.
pub(crate) async fn page(State(st): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let now = SystemTime::now();
    let snapshot = st
        .governance
        .activity()
        .map(|a| a.snapshot(now))
        .unwrap_or_default();
    let sessions = st
        .store
        .list()
        .iter()
        .map(|s| {
            let (subject, client_id) = s.who();
            let id = s.id();
            SessionView {
                short: id
                    .get(id.len().saturating_sub(8)..)
                    .unwrap_or("")
                    .to_owned(),
                handle: handle_of(id),
                transport: match s.transport() {
                    crate::session::Transport::Streamable => "streamable HTTP",
                    crate::session::Transport::LegacySse => "HTTP+SSE",
                    crate::session::Transport::Sessionless => "sessionless",
                },
                subject: subject.to_owned(),
                client_id: client_id.unwrap_or("").to_owned(),
                client: s
                    .client()
                    .map(|c| format!("{} {}", c.name, c.version))
                    .unwrap_or_default(),
                protocol: s
                    .version()
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
                since: ago(now, s.opened_at()),
                since_utc: utc(s.opened_at()),
                calls: s.calls(),
                last_active: ago(now, s.last_active()),
            }
        })
        .collect();
    let matching: Vec<&activity::CallRow> =
        snapshot.calls.iter().filter(|c| filter.keeps(c)).collect();
    let more = matching.len().saturating_sub(SHOWN_CALLS);
    let calls = matching
        .iter()
        .take(SHOWN_CALLS)
        .map(|c| CallView {
            class: if c.decision == "allow" { "" } else { "refused" },
            at: ago(now, c.at),
            at_utc: utc(c.at),
            subject: text(&c.subject),
            method: text(&c.method),
            target: text(&c.target),
            decision: match (c.decision, c.outcome) {
                ("allow", Some(outcome)) => format!("allowed · {outcome}"),
                ("allow", None) => "allowed".to_owned(),
                (reason, _) => format!("refused · {reason}"),
            },
            rule: text(&c.rule),
            redactions: c
                .redactions
                .iter()
                .map(|(rule, n)| format!("{n}× {rule}"))
                .collect::<Vec<_>>()
                .join(", "),
            duration: millis(c.duration),
        })
        .collect();
    let refusals = snapshot
        .refusals
        .iter()
        .take(SHOWN_CALLS)
        .map(|r| RefusalView {
            at: ago(now, r.at),
            at_utc: utc(r.at),
            what: r.what,
            subject: text(&r.subject),
            target: text(&r.target),
            reason: r.reason,
            rule: text(&r.rule),
            retry: r
                .retry_after_s
                .map(|s| format!("{s} s"))
                .unwrap_or_default(),
        })
        .collect();
    let exits = snapshot
        .exits
        .iter()
        .map(|x| ExitView {
            at: ago(now, x.at),
            at_utc: utc(x.at),
            session: text(&x.session),
            subject: text(&x.subject),
            status: x.status.clone(),
        })
        .collect();
    let (has_connections, connection_counts, connections) = match &st.connections {
        Some(c) => {
            let (counts, rows) = c.overview(SHOWN_CONNECTIONS).await;
            let unix_now = crate::authz::unix_now();
            let rows = rows
                .into_iter()
                .map(|r| ConnectionView {
                    user: r.user_id,
                    name: r.name,
                    state: r.state.as_str(),
                    granted: crate::authz::web::age(unix_now - r.granted_at),
                    last_used: r
                        .last_used_at
                        .map_or("never".to_owned(), |t| crate::authz::web::age(unix_now - t)),
                })
                .collect();
            (
                true,
                counts.into_iter().map(|(s, n)| (s.as_str(), n)).collect(),
                rows,
            )
        }
        None => (false, Vec::new(), Vec::new()),
    };
    let page = ActivityPage {
        base: BASE,
        resource_name: st.resource_name(),
        command: st.store.config().child.display_command(),
        now: utc(now),
        live: filter.live.is_some(),
        query: filter.query(),
        csrf: csrf_token(),
        filtered: filter.is_set(),
        calls_hour: snapshot.minutes.iter().map(|m| m.calls).sum(),
        refusals_hour: snapshot.minutes.iter().map(|m| m.refusals).sum(),
        redactions: snapshot.redactions,
        chart: chart(&snapshot),
        sessions,
        calls,
        more,
        refusals,
        exits,
        has_connections,
        connection_counts,
        connections,
        filter: &filter,
    };
    match page.render() {
        Ok(html) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the activity page");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
        }
    }
}

/// `POST /ui/sessions/end`: ends the session whose handle the form names.
pub(crate) async fn end_session(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A form of this page names this page's origin; anything else did not come from it.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let ours = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h);
        if ours.is_none() || ours != host {
            return plain(
                StatusCode::FORBIDDEN,
                "the form did not come from this page",
            );
        }
    }
    let mut csrf = None;
    let mut handle = None;
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => csrf = Some(v.into_owned()),
            "session" => handle = Some(v.into_owned()),
            _ => {}
        }
    }
    if !csrf.is_some_and(|c| same(&c, &csrf_token())) {
        return plain(
            StatusCode::FORBIDDEN,
            "the form's token is missing or wrong",
        );
    }
    let Some(handle) = handle else {
        return plain(StatusCode::BAD_REQUEST, "no session named");
    };
    let found = st
        .store
        .list()
        .into_iter()
        .find(|s| same(&handle_of(s.id()), &handle));
    match found {
        Some(session) => {
            let (subject, _) = session.who();
            tracing::info!(session.id = %session.id().get(session.id().len().saturating_sub(8)..).unwrap_or(""), principal = subject, "session ended from the activity page");
            st.store.end_by_operator(&session);
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, HeaderValue::from_static(BASE))],
            )
                .into_response()
        }
        None => plain(StatusCode::NOT_FOUND, "that session has already ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_handles_are_keyed_and_compared_whole() {
        let t = csrf_token();
        assert_eq!(t.len(), 32);
        assert!(same(&t, &csrf_token()));
        assert!(!same(&t, &t[..31]));
        assert!(!same("", ""));
        assert_ne!(handle_of("a.1"), handle_of("a.2"));
        assert!(!handle_of("a.1").contains("a.1"));
    }

    #[test]
    fn the_filter_matches_principal_tool_and_decision() {
        let row = |sub: &str, tool: &str, decision: &'static str| activity::CallRow {
            at: SystemTime::UNIX_EPOCH,
            session: None,
            subject: Some(sub.into()),
            client_id: Some("vscode".into()),
            method: Some("tools/call".into()),
            target: Some(tool.into()),
            decision,
            rule: None,
            outcome: None,
            redactions: Vec::new(),
            duration: None,
        };
        let f = Filter {
            principal: "ALI".into(),
            tool: "echo".into(),
            decision: "refused".into(),
            live: None,
        };
        assert!(f.keeps(&row("alice", "echo", "policy_denied")));
        assert!(!f.keeps(&row("alice", "echo", "allow")));
        assert!(!f.keeps(&row("bob", "echo", "policy_denied")));
        assert!(!f.keeps(&row("alice", "add", "policy_denied")));
        let by_client = Filter {
            principal: "vscode".into(),
            ..Filter::default()
        };
        assert!(by_client.keeps(&row("bob", "add", "allow")));
    }
}
