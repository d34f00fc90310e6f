//! The policy sections of the config file, as written, and their compilation into a
//! [`Policy`]. Every error names where it is (line and column) and what is wrong.
//!
//! ```toml
//! [policy]            # defaults for what no rule names, list filtering, history
//! [[rule]]            # allow/deny per tool, prompt, resource; scopes; CEL `when`
//! [[argument]]        # deny calls whose arguments match detectors or patterns
//! [[redact]]          # rewrite matches in results before they reach the client
//! [[mark]]            # label the session when a call happens (for sequence rules)
//! [[rate_limit]]      # token buckets per principal, tool, both, or session
//! ```
//! The annotated reference is `examples/warden.toml`.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSetBuilder};
use serde::Deserialize;
use toml::Spanned;

use super::detect::{Detector, Scanner};
use super::expr::Condition;
use super::json::Pointer;
use super::limit::{Limiter, Per, Rate};
use super::redact::{RedactRule, Zones};
use super::{ArgRule, LimitRule, MarkRule, Policy, Rule, TargetedRedact, Targets};

/// Most buckets kept at once across all rate-limit rules.
const MAX_BUCKETS: usize = 100_000;

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOptions {
    /// What happens to a tool, prompt or resource no rule names.
    #[serde(default = "deny")]
    pub default: Effect,
    /// Hide from list results what the caller may not use.
    #[serde(default = "yes")]
    pub filter_lists: bool,
    /// Also list what the caller could use after a step-up (more scopes).
    #[serde(default)]
    pub list_step_up: bool,
    /// Calls remembered per session for `session.calls` (marks are always kept).
    #[serde(default = "history_len")]
    pub history: usize,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            default: Effect::Deny,
            filter_lists: true,
            list_step_up: false,
            history: history_len(),
        }
    }
}

fn deny() -> Effect {
    Effect::Deny
}
fn allow() -> Effect {
    Effect::Allow
}
fn yes() -> bool {
    true
}
fn history_len() -> usize {
    64
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: Spanned<String>,
    #[serde(default = "allow")]
    pub effect: Effect,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub prompts: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
    /// Every one is required (after the issuer's scope implications).
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    /// Shown to the client when this rule denies.
    pub message: Option<String>,
}

/// `[[argument]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentSpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub prompts: Vec<Spanned<String>>,
    /// JSON pointers into the arguments; empty: every string value.
    #[serde(default)]
    pub pointers: Vec<Spanned<String>>,
    #[serde(default)]
    pub detectors: Vec<Spanned<String>>,
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    pub message: Option<String>,
}

/// Zone names of `[[redact]] in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Text,
    Structured,
}

fn both_zones() -> Vec<Zone> {
    vec![Zone::Text, Zone::Structured]
}

/// `[[redact]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub prompts: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
    #[serde(default)]
    pub detectors: Vec<Spanned<String>>,
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    /// JSON pointers into the result whose values are replaced whole.
    #[serde(default)]
    pub pointers: Vec<Spanned<String>>,
    #[serde(default = "both_zones", rename = "in")]
    pub zones: Vec<Zone>,
    pub replacement: Option<String>,
}

/// `[[mark]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkSpec {
    pub name: Spanned<String>,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub prompts: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
    pub when: Option<Spanned<String>>,
    /// The mark set on the session (`"x" in session.marks`).
    pub set: Spanned<String>,
}

/// How a `[[rate_limit]]` keys its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerSpec {
    Principal,
    Tool,
    PrincipalAndTool,
    Session,
}

/// `[[rate_limit]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub name: Spanned<String>,
    pub per: PerSpec,
    /// `10/s`, `100/min`, `1000/h`, `5000/day`.
    pub rate: Spanned<String>,
    /// Calls allowed at once (default: the rate's count).
    pub burst: Option<u32>,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub prompts: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
}

/// Everything policy reads from the file.
#[derive(Debug, Default)]
pub struct PolicySpec {
    pub options: PolicyOptions,
    pub rules: Vec<RuleSpec>,
    pub arguments: Vec<ArgumentSpec>,
    pub redact: Vec<RedactSpec>,
    pub marks: Vec<MarkSpec>,
    pub rate_limits: Vec<RateLimitSpec>,
}

/// A policy that cannot be compiled: where (a byte span of the file) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl PolicyError {
    fn at<T>(s: &Spanned<T>, message: impl Into<String>) -> PolicyError {
        PolicyError {
            span: Some(s.span()),
            message: message.into(),
        }
    }

    /// `line:column: message` against the file's text.
    pub fn render(&self, source: &str) -> String {
        match &self.span {
            Some(span) => {
                let (line, col) = line_col(source, span.start);
                format!("{line}:{col}: {}", self.message)
            }
            None => self.message.clone(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn globs(
    what: &str,
    kind: &str,
    patterns: &[Spanned<String>],
) -> Result<Option<globset::GlobSet>, PolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        if p.get_ref().is_empty() {
            return Err(PolicyError::at(p, format!("{what}: empty {kind} pattern")));
        }
        let glob = GlobBuilder::new(p.get_ref())
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| PolicyError::at(p, format!("{what}: {kind} pattern: {}", e.kind())))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| PolicyError::at(&patterns[0], format!("{what}: {e}")))
}

fn targets(
    what: &str,
    name: &Spanned<String>,
    tools: &[Spanned<String>],
    prompts: &[Spanned<String>],
    resources: &[Spanned<String>],
    required: bool,
) -> Result<Targets, PolicyError> {
    let t = Targets {
        tools: globs(what, "tool", tools)?,
        prompts: globs(what, "prompt", prompts)?,
        resources: globs(what, "resource", resources)?,
    };
    if required && t.tools.is_none() && t.prompts.is_none() && t.resources.is_none() {
        return Err(PolicyError::at(
            name,
            format!("{what}: name at least one of tools, prompts or resources (\"*\" for all)"),
        ));
    }
    Ok(t)
}

fn condition(what: &str, when: &Option<Spanned<String>>) -> Result<Option<Condition>, PolicyError> {
    when.as_ref()
        .map(|w| {
            Condition::compile(w.get_ref())
                .map_err(|e| PolicyError::at(w, format!("{what}: when: {e}")))
        })
        .transpose()
}

fn scanner(
    what: &str,
    name: &Spanned<String>,
    detectors: &[Spanned<String>],
    patterns: &[Spanned<String>],
) -> Result<Scanner, PolicyError> {
    let mut ds: Vec<Detector> = Vec::new();
    for d in detectors {
        let resolved = Detector::resolve(d.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
            PolicyError::at(
                d,
                format!(
                    "{what}: unknown detector {:?} (known: {}, or the groups secrets, pii, all)",
                    d.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
        for r in resolved {
            if !ds.contains(&r) {
                ds.push(r);
            }
        }
    }
    for p in patterns {
        regex::Regex::new(p.get_ref())
            .map_err(|e| PolicyError::at(p, format!("{what}: pattern: {e}")))?;
    }
    let pats: Vec<String> = patterns.iter().map(|p| p.get_ref().clone()).collect();
    Scanner::new(&ds, &pats).map_err(|e| PolicyError::at(name, format!("{what}: {e}")))
}

fn pointers(what: &str, ps: &[Spanned<String>]) -> Result<Vec<Pointer>, PolicyError> {
    ps.iter()
        .map(|p| {
            Pointer::parse(p.get_ref()).map_err(|e| PolicyError::at(p, format!("{what}: {e}")))
        })
        .collect()
}

/// Names must be unique within a section and usable as audit labels.
fn unique(
    seen: &mut HashSet<(&'static str, String)>,
    section: &'static str,
    name: &Spanned<String>,
) -> Result<String, PolicyError> {
    let n = name.get_ref();
    if n.is_empty()
        || n.len() > 64
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(PolicyError::at(
            name,
            format!(
                "[[{section}]] name {n:?} must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"
            ),
        ));
    }
    if !seen.insert((section, n.clone())) {
        return Err(PolicyError::at(
            name,
            format!("[[{section}]] name {n:?} is used twice"),
        ));
    }
    Ok(format!("[[{section}]] {n:?}"))
}

/// Compiles the policy sections. Conditions, globs, patterns, pointers and rates are all
/// checked here, so a policy that loads cannot fail for a configuration reason later.
pub fn compile(spec: &PolicySpec) -> Result<Policy, PolicyError> {
    let mut seen = HashSet::new();
    let mut rules = Vec::with_capacity(spec.rules.len());
    for r in &spec.rules {
        let what = unique(&mut seen, "rule", &r.name)?;
        if r.effect == Effect::Deny && !r.scopes.is_empty() {
            return Err(PolicyError::at(
                &r.scopes[0],
                format!(
                    "{what}: scopes apply to allow rules; a deny rule denies whatever the scopes"
                ),
            ));
        }
        for s in &r.scopes {
            let v = s.get_ref();
            if v.is_empty()
                || !v
                    .bytes()
                    .all(|b| b > 0x20 && b < 0x7f && b != b'"' && b != b'\\')
            {
                return Err(PolicyError::at(
                    s,
                    format!("{what}: scope {v:?} is not a valid OAuth scope token"),
                ));
            }
        }
        rules.push(Rule {
            name: r.name.get_ref().as_str().into(),
            deny: r.effect == Effect::Deny,
            targets: targets(&what, &r.name, &r.tools, &r.prompts, &r.resources, true)?,
            scopes: r.scopes.iter().map(|s| s.get_ref().clone()).collect(),
            when: condition(&what, &r.when)?,
            message: r.message.as_deref().map(Arc::from),
        });
    }
    let mut arguments = Vec::with_capacity(spec.arguments.len());
    for a in &spec.arguments {
        let what = unique(&mut seen, "argument", &a.name)?;
        if a.detectors.is_empty() && a.patterns.is_empty() {
            return Err(PolicyError::at(
                &a.name,
                format!("{what}: give detectors or patterns"),
            ));
        }
        arguments.push(ArgRule {
            name: a.name.get_ref().as_str().into(),
            targets: targets(&what, &a.name, &a.tools, &a.prompts, &[], true)?,
            pointers: pointers(&what, &a.pointers)?,
            scanner: scanner(&what, &a.name, &a.detectors, &a.patterns)?,
            message: a.message.as_deref().map(Arc::from),
        });
    }
    let mut redacts = Vec::with_capacity(spec.redact.len());
    for r in &spec.redact {
        let what = unique(&mut seen, "redact", &r.name)?;
        if r.detectors.is_empty() && r.patterns.is_empty() && r.pointers.is_empty() {
            return Err(PolicyError::at(
                &r.name,
                format!("{what}: give detectors, patterns or pointers"),
            ));
        }
        if r.zones.is_empty() && (!r.detectors.is_empty() || !r.patterns.is_empty()) {
            return Err(PolicyError::at(
                &r.name,
                format!("{what}: `in` is empty: detectors and patterns would apply nowhere"),
            ));
        }
        redacts.push(TargetedRedact {
            targets: targets(&what, &r.name, &r.tools, &r.prompts, &r.resources, true)?,
            rule: RedactRule {
                name: r.name.get_ref().as_str().into(),
                scanner: scanner(&what, &r.name, &r.detectors, &r.patterns)?,
                zones: Zones {
                    text: r.zones.contains(&Zone::Text),
                    structured: r.zones.contains(&Zone::Structured),
                },
                pointers: pointers(&what, &r.pointers)?,
                replacement: r.replacement.clone(),
            },
        });
    }
    let mut marks = Vec::with_capacity(spec.marks.len());
    for m in &spec.marks {
        let what = unique(&mut seen, "mark", &m.name)?;
        if m.set.get_ref().is_empty() {
            return Err(PolicyError::at(
                &m.set,
                format!("{what}: set must name a mark"),
            ));
        }
        marks.push(MarkRule {
            targets: targets(&what, &m.name, &m.tools, &m.prompts, &m.resources, true)?,
            when: condition(&what, &m.when)?,
            set: m.set.get_ref().as_str().into(),
        });
    }
    let mut limits = Vec::with_capacity(spec.rate_limits.len());
    let mut rates = Vec::with_capacity(spec.rate_limits.len());
    for l in &spec.rate_limits {
        let what = unique(&mut seen, "rate_limit", &l.name)?;
        let mut rate = Rate::parse(l.rate.get_ref())
            .map_err(|e| PolicyError::at(&l.rate, format!("{what}: {e}")))?;
        if let Some(burst) = l.burst {
            if burst == 0 {
                return Err(PolicyError::at(
                    &l.name,
                    format!("{what}: burst must be at least 1"),
                ));
            }
            rate.capacity = f64::from(burst);
        }
        let t = targets(&what, &l.name, &l.tools, &l.prompts, &l.resources, false)?;
        let any = t.tools.is_some() || t.prompts.is_some() || t.resources.is_some();
        limits.push(LimitRule {
            name: l.name.get_ref().as_str().into(),
            targets: any.then_some(t),
            per: match l.per {
                PerSpec::Principal => Per::Principal,
                PerSpec::Tool => Per::Tool,
                PerSpec::PrincipalAndTool => Per::PrincipalAndTool,
                PerSpec::Session => Per::Session,
            },
        });
        rates.push(rate);
    }
    if limits.len() > usize::from(u16::MAX) {
        return Err(PolicyError {
            span: None,
            message: "too many rate limits".into(),
        });
    }
    Ok(Policy {
        default_allow: spec.options.default == Effect::Allow,
        filter_lists: spec.options.filter_lists,
        list_step_up: spec.options.list_step_up,
        history_len: spec.options.history,
        rules,
        arguments,
        marks,
        limits,
        limiter: Limiter::new(rates, MAX_BUCKETS),
        redacts,
    })
}
