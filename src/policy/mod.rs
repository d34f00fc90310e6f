//! Inline policy, pure: per-tool/prompt/resource authorization with scopes and CEL
//! conditions, argument rules, rate limits, sequence-aware session marks, list filtering and
//! output redaction. No I/O, no async; time is passed in.
//!
//! A [`Policy`] is compiled once from the config file (`config`), then shared. The
//! transport asks [`Policy::check`] before a request reaches the server and hands every
//! server message to [`Policy::redact`] (and list results to [`Policy::filter_list`]) before
//! it reaches the client. Outcomes are types ([`Decision`], [`DenyReason`]) with stable
//! snake_case codes for audit records and metrics.
//!
//! # Evaluation order of a call
//! 1. Only `tools/call`, `prompts/get`, `resources/read`, `resources/subscribe` and
//!    `completion/complete` are governed; everything else is allowed here (list results are
//!    filtered instead). A completion is decided as the prompt or resource (template) it
//!    completes, with `args` the argument being completed plus those already given
//!    (`context.arguments`); it passes steps 2–4 only (it is not a use of its target, so it
//!    draws on no rate limit and is not in the session's history). A
//!    request that names no target is denied (`invalid_params`), and so is one whose
//!    arguments hold a string that denotes no text (`undecodable_arguments`).
//! 2. `deny` rules matching the target whose condition holds deny (`denied_by_rule`).
//! 3. `allow` rules matching the target, in file order: the first whose condition holds and
//!    whose scopes the caller has allows. If conditions held only where scopes were missing,
//!    the call is denied with `insufficient_scope` naming them (step-up). If no condition
//!    held, `condition_not_met`. If no rule names the target, `[policy] default` decides
//!    (`not_permitted` when it is deny).
//! 4. `[[argument]]` rules for the target (`argument_blocked`).
//! 5. `[[rate_limit]]` buckets, all or nothing (`rate_limited`).
//! 6. `[[mark]]` rules whose condition holds set their mark on the session, and the call is
//!    recorded in the session's history. A condition that fails to evaluate denies
//!    (`condition_error`): the policy fails closed.

pub mod config;
pub mod detect;
mod expr;
mod history;
pub mod json;
mod limit;
pub mod list;
pub mod redact;
pub mod uri;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use globset::{Candidate, GlobSet};
use serde::Deserialize;
use serde_json::value::RawValue;

pub use config::{PolicyError, PolicySpec, compile};
pub use detect::{Detector, Finding};
pub use expr::{Condition, VARIABLES};
pub use history::{CallSummary, History, HistoryState};
pub use json::{Malformed, Pointer};
pub use limit::{Per, Rate};
pub use list::ListKind;
pub use redact::{INJECTED, RedactRule, Redacted, RedactionCount, Secrets, Uninspectable, Zones};

use limit::{Draw, Limiter};

/// What the policy needs to know about the caller. `auth::Principal` implements it; tests
/// use [`Identity`].
pub trait Caller: Send + Sync {
    fn issuer(&self) -> &str;
    fn subject(&self) -> &str;
    fn client_id(&self) -> Option<&str>;
    /// Granted scopes, after scope implications.
    fn scopes(&self) -> &BTreeSet<String>;
    /// The validated token claims (empty without authentication).
    fn claims(&self) -> &serde_json::Map<String, serde_json::Value>;
}

/// A plain [`Caller`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: BTreeSet<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    pub fn new(issuer: &str, subject: &str) -> Identity {
        Identity {
            issuer: issuer.into(),
            subject: subject.into(),
            ..Identity::default()
        }
    }

    pub fn with_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

impl Caller for Identity {
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

/// What kind of thing a governed request targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Tool,
    Prompt,
    Resource,
}

/// `completion/complete`: governed as the prompt or resource it completes.
pub const COMPLETE: &str = "completion/complete";

/// Whether `method` is decided on by [`Policy::check`].
pub fn governs(method: &str) -> bool {
    TargetKind::of_method(method).is_some() || method == COMPLETE
}

impl TargetKind {
    /// The governed method's target kind (not for [`COMPLETE`], whose target kind is in its
    /// params).
    pub fn of_method(method: &str) -> Option<TargetKind> {
        match method {
            "tools/call" => Some(TargetKind::Tool),
            "prompts/get" => Some(TargetKind::Prompt),
            "resources/read" | "resources/subscribe" => Some(TargetKind::Resource),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Tool => "tool",
            TargetKind::Prompt => "prompt",
            TargetKind::Resource => "resource",
        }
    }
}

/// The tool, prompt or resource a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub kind: TargetKind,
    /// Tool or prompt name, or resource URI.
    pub name: Arc<str>,
}

/// One request to decide on.
#[derive(Debug, Clone, Copy)]
pub struct PolicyInput<'a> {
    pub caller: &'a dyn Caller,
    pub method: &'a str,
    pub params: Option<&'a RawValue>,
    /// The session's history (conditions read it, allowed calls are recorded in it).
    pub history: &'a History,
    /// Bucket key of per-session rate limits.
    pub session: &'a str,
    /// Wall-clock time (`now` in conditions).
    pub now: SystemTime,
    /// Monotonic time (token buckets).
    pub instant: Instant,
}

impl std::fmt::Debug for dyn Caller + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("issuer", &self.issuer())
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}

/// The outcome of [`Policy::check`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Allow),
    Deny(Deny),
}

/// An allowed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    /// What it targets (`None` for requests the policy does not govern).
    pub target: Option<Target>,
    /// The rule that allowed it (`None`: not governed, or the default).
    pub rule: Option<Arc<str>>,
}

/// A denied request.
#[derive(Debug, Clone, PartialEq)]
pub struct Deny {
    pub target: Option<Target>,
    pub reason: DenyReason,
    /// The rule that decided, if one did.
    pub rule: Option<Arc<str>>,
    /// The configured message for the client, if any.
    pub message: Option<Arc<str>>,
}

/// Why a request is denied.
#[derive(Debug, Clone, PartialEq)]
pub enum DenyReason {
    /// An allow rule's condition holds but the token lacks scopes: step-up can help. The
    /// scopes to request: those the caller has plus those the rule requires.
    InsufficientScope { scopes: Vec<String> },
    /// No rule names the target and the default is deny.
    NotPermitted,
    /// A deny rule matched.
    DeniedByRule,
    /// Allow rules name the target but none of their conditions holds.
    ConditionNotMet,
    /// An argument matched an `[[argument]]` rule.
    ArgumentBlocked { finding: Finding },
    /// A rate limit is exhausted; retry after this long.
    RateLimited { retry_after: Duration },
    /// A condition could not be evaluated (fail closed).
    ConditionError,
    /// The request does not name its target (`params.name` / `params.uri` missing).
    InvalidParams,
    /// A string in the arguments holds a lone UTF-16 surrogate escape: it denotes no text,
    /// so conditions and argument rules cannot read what the server would.
    UndecodableArguments,
}

impl DenyReason {
    /// The stable snake_case code used in audit records and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::InsufficientScope { .. } => "insufficient_scope",
            DenyReason::NotPermitted => "not_permitted",
            DenyReason::DeniedByRule => "denied_by_rule",
            DenyReason::ConditionNotMet => "condition_not_met",
            DenyReason::ArgumentBlocked { .. } => "argument_blocked",
            DenyReason::RateLimited { .. } => "rate_limited",
            DenyReason::ConditionError => "condition_error",
            DenyReason::InvalidParams => "invalid_params",
            DenyReason::UndecodableArguments => "undecodable_arguments",
        }
    }
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// `allow` or the deny reason's code.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allow",
            Decision::Deny(d) => d.reason.code(),
        }
    }
}

/// Which names a rule applies to, per kind.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    pub(crate) tools: Option<GlobSet>,
    pub(crate) prompts: Option<GlobSet>,
    pub(crate) resources: Option<GlobSet>,
}

impl Targets {
    fn set(&self, kind: TargetKind) -> Option<&GlobSet> {
        match kind {
            TargetKind::Tool => self.tools.as_ref(),
            TargetKind::Prompt => self.prompts.as_ref(),
            TargetKind::Resource => self.resources.as_ref(),
        }
    }

    /// `name` is prepared once per request ([`Candidate::new`] normalizes and allocates).
    fn matches(&self, kind: TargetKind, name: &Candidate<'_>) -> bool {
        self.set(kind).is_some_and(|s| s.is_match_candidate(name))
    }

    fn any_tool(&self) -> bool {
        self.tools.is_some()
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) deny: bool,
    pub(crate) targets: Targets,
    pub(crate) scopes: Vec<String>,
    pub(crate) when: Option<Condition>,
    pub(crate) message: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct ArgRule {
    pub(crate) name: Arc<str>,
    pub(crate) targets: Targets,
    pub(crate) pointers: Vec<Pointer>,
    pub(crate) scanner: detect::Scanner,
    pub(crate) message: Option<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct MarkRule {
    pub(crate) targets: Targets,
    pub(crate) when: Option<Condition>,
    pub(crate) set: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct LimitRule {
    pub(crate) name: Arc<str>,
    /// `None`: every governed call counts.
    pub(crate) targets: Option<Targets>,
    pub(crate) per: Per,
}

#[derive(Debug)]
pub(crate) struct TargetedRedact {
    pub(crate) targets: Targets,
    pub(crate) rule: RedactRule,
}

/// A compiled policy. Shared by every session (`Arc<Policy>`); rate-limit state inside.
#[derive(Debug)]
pub struct Policy {
    pub(crate) default_allow: bool,
    pub(crate) filter_lists: bool,
    pub(crate) list_step_up: bool,
    pub(crate) history_len: usize,
    pub(crate) rules: Vec<Rule>,
    pub(crate) arguments: Vec<ArgRule>,
    pub(crate) marks: Vec<MarkRule>,
    pub(crate) limits: Vec<LimitRule>,
    pub(crate) limiter: Limiter,
    pub(crate) redacts: Vec<TargetedRedact>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

impl Policy {
    /// A policy that allows everything and redacts only injected credentials: the
    /// behaviour without a config file.
    pub fn permissive() -> Policy {
        Policy {
            default_allow: true,
            filter_lists: false,
            list_step_up: false,
            history_len: 0,
            rules: Vec::new(),
            arguments: Vec::new(),
            marks: Vec::new(),
            limits: Vec::new(),
            limiter: Limiter::new(Vec::new(), 1),
            redacts: Vec::new(),
        }
    }

    /// One line describing what the policy contains (for `check-config`).
    pub fn summary(&self) -> String {
        let allow = self.rules.iter().filter(|r| !r.deny).count();
        format!(
            "default {}; {} allow and {} deny rules, {} argument rules, {} redaction rules, {} marks, {} rate limits",
            if self.default_allow { "allow" } else { "deny" },
            allow,
            self.rules.len() - allow,
            self.arguments.len(),
            self.redacts.len(),
            self.marks.len(),
            self.limits.len()
        )
    }

    /// A new session history sized for this policy.
    pub fn new_history(&self) -> History {
        History::new(self.history_len)
    }

    /// Decides on one client request. See the module docs for the order.
    pub fn check(&self, input: &PolicyInput<'_>) -> Decision {
        let completion = input.method == COMPLETE;
        let kind = if completion {
            completion_kind(input.params)
        } else {
            TargetKind::of_method(input.method)
        };
        let Some(kind) = kind else {
            if completion {
                return deny(None, DenyReason::InvalidParams, None, None);
            }
            return Decision::Allow(Allow {
                target: None,
                rule: None,
            });
        };
        let params: Option<Params<'_>> = input.params.and_then(|p| {
            if completion {
                completion_params(p.get())
            } else {
                crate::mcp::from_object(p.get())
            }
        });
        let completed: Option<Box<RawValue>> = if completion {
            match input.params.map(|p| completion_args(p.get())) {
                Some(Ok(a)) => Some(a),
                _ => return deny(None, DenyReason::InvalidParams, None, None),
            }
        } else {
            None
        };
        let (name, args) = match (&params, kind) {
            (Some(p), TargetKind::Resource) if !completion => (p.uri.as_deref(), None),
            (Some(p), TargetKind::Resource) => (p.uri.as_deref(), completed.as_deref()),
            (Some(p), _) if completion => (p.name.as_deref(), completed.as_deref()),
            (Some(p), _) => (p.name.as_deref(), p.arguments),
            (None, _) => (None, None),
        };
        let Some(name) = name else {
            return deny(None, DenyReason::InvalidParams, None, None);
        };
        // Resource rules match the URI a server would read (see `uri`).
        let canonical;
        let name = if kind == TargetKind::Resource {
            match uri::canonical(name) {
                Ok(c) => {
                    canonical = c;
                    canonical.as_ref()
                }
                Err(_) => {
                    let target = Some(Target {
                        kind,
                        name: name.into(),
                    });
                    return deny(target, DenyReason::InvalidParams, None, None);
                }
            }
        } else {
            name
        };
        if args.is_some_and(|a| crate::mcp::has_lone_surrogate(a.get().as_bytes())) {
            let target = Some(Target {
                kind,
                name: name.into(),
            });
            return deny(target, DenyReason::UndecodableArguments, None, None);
        }
        let target = || {
            Some(Target {
                kind,
                name: name.into(),
            })
        };
        let cand = Candidate::new(name);
        let mut history = input.history.lock();
        let (tool_name, uri) = match kind {
            TargetKind::Resource => ("", name),
            _ => (name, ""),
        };
        let vars = expr::Vars::new(
            input.caller,
            input.method,
            tool_name,
            uri,
            args,
            Some(&history),
            input.now,
        );

        // 2. Deny rules.
        for rule in self.rules.iter().filter(|r| r.deny) {
            if !rule.targets.matches(kind, &cand) {
                continue;
            }
            match rule.when.as_ref().map(|c| c.eval(&vars)) {
                None | Some(Ok(true)) => {
                    return deny(target(), DenyReason::DeniedByRule, Some(rule), None);
                }
                Some(Ok(false)) => {}
                Some(Err(e)) => return condition_error(target(), rule, &e),
            }
        }

        // 3. Allow rules.
        let mut allowed_by: Option<&Rule> = None;
        let mut named = false;
        let mut step_up: Option<&Rule> = None;
        let mut unmet: Option<&Rule> = None;
        for rule in self.rules.iter().filter(|r| !r.deny) {
            if !rule.targets.matches(kind, &cand) {
                continue;
            }
            named = true;
            match rule.when.as_ref().map(|c| c.eval(&vars)) {
                None | Some(Ok(true)) => {}
                Some(Ok(false)) => {
                    unmet.get_or_insert(rule);
                    continue;
                }
                Some(Err(e)) => return condition_error(target(), rule, &e),
            }
            let scopes = input.caller.scopes();
            if rule.scopes.iter().all(|s| scopes.contains(s)) {
                allowed_by = Some(rule);
                break;
            }
            step_up.get_or_insert(rule);
        }
        if allowed_by.is_none() {
            if let Some(rule) = step_up {
                let mut scopes: BTreeSet<String> = input.caller.scopes().clone();
                scopes.extend(rule.scopes.iter().cloned());
                let reason = DenyReason::InsufficientScope {
                    scopes: scopes.into_iter().collect(),
                };
                return deny(target(), reason, Some(rule), None);
            }
            if let Some(rule) = unmet {
                return deny(target(), DenyReason::ConditionNotMet, Some(rule), None);
            }
            if named || !self.default_allow {
                return deny(target(), DenyReason::NotPermitted, None, None);
            }
        }

        // 4. Arguments.
        if let Some(args) = args {
            for rule in &self.arguments {
                if rule.targets.matches(kind, &cand)
                    && let Some(finding) = scan_args(rule, args.get().as_bytes())
                {
                    let reason = DenyReason::ArgumentBlocked { finding };
                    return deny(target(), reason, None, Some(rule));
                }
            }
        }

        if completion {
            return Decision::Allow(Allow {
                target: target(),
                rule: allowed_by.map(|r| r.name.clone()),
            });
        }

        // 5. Rate limits.
        if !self.limits.is_empty() {
            let mut draws: Vec<Draw<'_>> = Vec::new();
            let mut which: Vec<&LimitRule> = Vec::new();
            for (i, rule) in self.limits.iter().enumerate() {
                if rule
                    .targets
                    .as_ref()
                    .is_some_and(|t| !t.matches(kind, &cand))
                {
                    continue;
                }
                let principal = (input.caller.issuer(), input.caller.subject());
                let key = match rule.per {
                    Per::Principal => (principal.0, principal.1, ""),
                    Per::Tool => ("", "", name),
                    Per::PrincipalAndTool => (principal.0, principal.1, name),
                    Per::Session => (input.session, "", ""),
                };
                draws.push(Draw {
                    rule: i as u16,
                    key,
                });
                which.push(rule);
            }
            if let Err((i, retry_after)) = self.limiter.take(&draws, input.instant) {
                return Decision::Deny(Deny {
                    target: target(),
                    reason: DenyReason::RateLimited { retry_after },
                    rule: which.get(i).map(|r| r.name.clone()),
                    message: None,
                });
            }
        }

        // 6. Marks and history.
        let mut marks: Vec<&Arc<str>> = Vec::new();
        for m in &self.marks {
            if !m.targets.matches(kind, &cand) {
                continue;
            }
            match m.when.as_ref().map(|c| c.eval(&vars)) {
                None | Some(Ok(true)) => marks.push(&m.set),
                Some(Ok(false)) => {}
                // A mark that cannot be evaluated is set: the session is treated as tainted.
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "mark condition failed; setting the mark");
                    marks.push(&m.set);
                }
            }
        }
        drop(vars);
        for m in marks {
            history.mark(m);
        }
        history.record(method_static(input.method), name);
        Decision::Allow(Allow {
            target: target(),
            rule: allowed_by.map(|r| r.name.clone()),
        })
    }

    /// Whether a list entry is shown to `caller`: the same rules as a call, with conditions
    /// that depend on arguments or history assumed to possibly hold.
    pub fn visible(
        &self,
        caller: &dyn Caller,
        kind: TargetKind,
        name: &str,
        now: SystemTime,
    ) -> bool {
        // A URI no call could read is not shown; others are matched as calls match them.
        let canonical;
        let name = if kind == TargetKind::Resource {
            match uri::canonical(name) {
                Ok(c) => {
                    canonical = c;
                    canonical.as_ref()
                }
                Err(_) => return false,
            }
        } else {
            name
        };
        let (tool_name, uri) = match kind {
            TargetKind::Resource => ("", name),
            _ => (name, ""),
        };
        let method = match kind {
            TargetKind::Tool => "tools/call",
            TargetKind::Prompt => "prompts/get",
            TargetKind::Resource => "resources/read",
        };
        let vars = expr::Vars::new(caller, method, tool_name, uri, None, None, now);
        let cand = Candidate::new(name);
        // Some(true) holds, Some(false) does not, None unknown until the call. A condition
        // that errors now would deny the call, as it does at call time.
        let holds = |c: &Option<Condition>, on_error: bool| match c {
            None => Some(true),
            Some(c) if c.needs.args || c.needs.session => None,
            Some(c) => Some(c.eval(&vars).unwrap_or(on_error)),
        };
        for rule in self.rules.iter().filter(|r| r.deny) {
            if rule.targets.matches(kind, &cand) && holds(&rule.when, true) == Some(true) {
                return false;
            }
        }
        let mut named = false;
        for rule in self.rules.iter().filter(|r| !r.deny) {
            if !rule.targets.matches(kind, &cand) {
                continue;
            }
            named = true;
            if holds(&rule.when, false) == Some(false) {
                continue;
            }
            if self.list_step_up || rule.scopes.iter().all(|s| caller.scopes().contains(s)) {
                return true;
            }
        }
        !named && self.default_allow
    }

    /// Filters a list result for `caller`. `None` when nothing is hidden (or filtering is
    /// off).
    pub fn filter_list(
        &self,
        caller: &dyn Caller,
        list: ListKind,
        message: &[u8],
        now: SystemTime,
    ) -> Result<Option<Vec<u8>>, Malformed> {
        if !self.filter_lists {
            return Ok(None);
        }
        let kind = match list {
            ListKind::Tools => TargetKind::Tool,
            ListKind::Prompts => TargetKind::Prompt,
            ListKind::Resources | ListKind::ResourceTemplates => TargetKind::Resource,
        };
        list::filter(message, list, |name| self.visible(caller, kind, name, now))
    }

    /// The `[[redact]]` rules for a response to a request about `target`. For a response
    /// whose target is unknown (`tasks/result`), every rule that names tools applies.
    pub fn redact_rules(&self, target: Option<&Target>, task_result: bool) -> Vec<&RedactRule> {
        self.redacts
            .iter()
            .filter(|r| match target {
                Some(t) => r.targets.matches(t.kind, &Candidate::new(&*t.name)),
                None => task_result && r.targets.any_tool(),
            })
            .map(|r| &r.rule)
            .collect()
    }

    /// Whether any `[[redact]]` rule exists (if not, only injected credentials are redacted).
    pub fn has_redact_rules(&self) -> bool {
        !self.redacts.is_empty()
    }

    /// Redacts one server message.
    pub fn redact(
        &self,
        message: &[u8],
        rules: &[&RedactRule],
        secrets: &Secrets,
    ) -> Result<Redacted, Uninspectable> {
        redact::redact(message, rules, secrets)
    }
}

/// The kind of target a completion's `ref` names.
fn completion_kind(params: Option<&RawValue>) -> Option<TargetKind> {
    #[derive(Deserialize)]
    struct Completion<'a> {
        #[serde(borrow, rename = "ref")]
        reference: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Ref<'a> {
        #[serde(borrow, rename = "type")]
        kind: Option<Cow<'a, str>>,
    }
    let c: Completion<'_> = crate::mcp::from_object(params?.get())?;
    let r: Ref<'_> = crate::mcp::from_object(c.reference?.get())?;
    match r.kind.as_deref()? {
        "ref/prompt" => Some(TargetKind::Prompt),
        "ref/resource" => Some(TargetKind::Resource),
        _ => None,
    }
}

/// A completion's `ref` read as the params of the call it completes (`name` or `uri`).
fn completion_params(params: &str) -> Option<Params<'_>> {
    #[derive(Deserialize)]
    struct Completion<'a> {
        #[serde(borrow, rename = "ref")]
        reference: &'a RawValue,
    }
    let c: Completion<'_> = crate::mcp::from_object(params)?;
    crate::mcp::from_object(c.reference.get())
}

/// The arguments a completion's conditions and argument rules see: those already given
/// (`context.arguments`) and the one being completed (`argument.name` = `argument.value`).
fn completion_args(params: &str) -> Result<Box<RawValue>, ()> {
    use serde_json::{Map, Value};
    let v: Map<String, Value> = crate::mcp::from_object(params).ok_or(())?;
    let mut args = match v.get("context").and_then(|c| c.get("arguments")) {
        Some(Value::Object(given)) => given.clone(),
        Some(_) => return Err(()),
        None => Map::new(),
    };
    let argument = v.get("argument").and_then(Value::as_object).ok_or(())?;
    let name = argument.get("name").and_then(Value::as_str).ok_or(())?;
    let value = argument.get("value").cloned().unwrap_or(Value::Null);
    args.insert(name.to_owned(), value);
    serde_json::value::to_raw_value(&Value::Object(args)).map_err(|_| ())
}

fn deny(
    target: Option<Target>,
    reason: DenyReason,
    rule: Option<&Rule>,
    arg: Option<&ArgRule>,
) -> Decision {
    let (name, message) = match (rule, arg) {
        (Some(r), _) => (Some(r.name.clone()), r.message.clone()),
        (None, Some(a)) => (Some(a.name.clone()), a.message.clone()),
        (None, None) => (None, None),
    };
    Decision::Deny(Deny {
        target,
        reason,
        rule: name,
        message,
    })
}

fn condition_error(target: Option<Target>, rule: &Rule, error: &str) -> Decision {
    // The condition's source is config, not user data; the error may quote values, so it
    // goes to the debug log only.
    tracing::debug!(rule = %rule.name, error, "condition failed; denying");
    deny(target, DenyReason::ConditionError, Some(rule), None)
}

/// The `'static` spelling of a governed method (history entries keep no copies).
fn method_static(method: &str) -> &'static str {
    match method {
        "tools/call" => "tools/call",
        "prompts/get" => "prompts/get",
        "resources/read" => "resources/read",
        "resources/subscribe" => "resources/subscribe",
        _ => "other",
    }
}

/// The first finding of an argument rule in raw `arguments`: strings at or under its
/// pointers, or every string value when it has none.
fn scan_args(rule: &ArgRule, args: &[u8]) -> Option<Finding> {
    let mut found = None;
    let _ = json::walk(args, |path, ev| {
        if found.is_some() {
            return;
        }
        let json::Event::Str { span, key: false } = ev else {
            return;
        };
        if !rule.pointers.is_empty() && !rule.pointers.iter().any(|p| path.under(p)) {
            return;
        }
        // Client arguments with strings that denote no text are refused before this; a
        // lossy reading still never skips a string.
        let s = json::decode_lossy(&args[span.start + 1..span.end - 1], "\u{fffd}");
        found = rule.scanner.first(&s);
    });
    found
}

#[cfg(test)]
mod tests;
