//! Output redaction: what the server sends back is rewritten before the client sees it.
//!
//! Two sources of redaction: the configured `[[redact]]` rules (detectors, patterns, JSON
//! pointers, each limited to the zones it names) and, always, the exact values of the
//! credentials injected into the session's server, anywhere in a message: every key and
//! string value at any depth, the method, a server request's id, members JSON-RPC does not
//! define. Only the envelope's own words (`jsonrpc` and its `"2.0"`, and the keys `id`,
//! `method`, `params`, `result`, `error`) are left alone. Strings are decoded before
//! matching, so escaping (`\u0041…`, `\/`) cannot hide a value, and decoded once more, so a
//! value escaped inside JSON carried in a string cannot either; a lone surrogate escape
//! reads as U+FFFD. A value found in the bytes outside any one string (across tokens) makes
//! the message [`Uninspectable`]. Only edited strings change; every other byte of the
//! message is kept.

use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

use super::detect::{Finding, Scanner};
use super::json::{self, Event, Malformed, Path, Pointer};

/// Label of injected-credential redactions in replacements and audit counts.
pub const INJECTED: &str = "injected_secret";

/// The credentials injected into one session's server: redacted from everything it sends.
#[derive(Clone, Default)]
pub struct Secrets {
    matcher: Option<Arc<AhoCorasick>>,
    /// The values as they may stand in a message's bytes: as they are, and JSON-escaped.
    written: Option<Arc<AhoCorasick>>,
    count: usize,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Secrets")
            .field("count", &self.count)
            .finish()
    }
}

impl Secrets {
    /// No injected credentials.
    pub fn none() -> Secrets {
        Secrets::default()
    }

    /// The given byte strings (empty ones are ignored). Longer values win over values they
    /// contain, so a secret is never half-redacted because a shorter one matched first.
    pub fn new<I, S>(values: I) -> Secrets
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let values: Vec<Vec<u8>> = values
            .into_iter()
            .map(|v| v.as_ref().to_vec())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Secrets::none();
        }
        let count = values.len();
        let build = |patterns: &[Vec<u8>], kind| {
            AhoCorasick::builder()
                .match_kind(kind)
                .build(patterns)
                .ok()
                .map(Arc::new)
        };
        let mut written = values.clone();
        for v in &values {
            if let Ok(text) = std::str::from_utf8(v) {
                let quoted = json::quote(text);
                let escaped = quoted.as_bytes()[1..quoted.len() - 1].to_vec();
                if escaped != *v {
                    written.push(escaped);
                }
            }
        }
        Secrets {
            matcher: build(&values, MatchKind::LeftmostLongest),
            // Every occurrence, overlapping ones too: one inside a token must not hide one
            // that crosses tokens.
            written: build(&written, MatchKind::Standard),
            count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    fn find(&self, s: &str, out: &mut Vec<Hit>) {
        let Some(m) = &self.matcher else { return };
        let before = out.len();
        for found in m.find_iter(s) {
            out.push(Hit {
                range: found.start()..found.end(),
                rule: None,
                finding: None,
            });
        }
        // Escaped once more (JSON carried in a string): the whole string goes.
        if out.len() == before
            && s.contains('\\')
            && m.is_match(json::decode_lossy(s.as_bytes(), "").as_bytes())
        {
            out.push(Hit {
                range: 0..s.len(),
                rule: None,
                finding: None,
            });
        }
    }

    /// A value split by lone surrogate escapes (`raw`, decoded as `s`): a client that drops
    /// what denotes no text reads the value whole, so the whole string goes.
    fn find_split(&self, raw: &[u8], s: &str, out: &mut Vec<Hit>) {
        if out.is_empty()
            && let Some(m) = &self.matcher
            && crate::mcp::has_lone_surrogate(raw)
            && m.is_match(json::decode_lossy(raw, "").as_bytes())
        {
            out.push(Hit {
                range: 0..s.len(),
                rule: None,
                finding: None,
            });
        }
    }

    /// Fails when a value, as it is or JSON-escaped, stands in `message` across tokens (in
    /// no one string, whose text was searched decoded, and in no one number or literal), or
    /// is a whole number: no string edit can take either out. A number that merely holds an
    /// all-digit value among other digits is taken for a coincidence.
    fn check_across_tokens(&self, message: &[u8]) -> Result<(), Uninspectable> {
        let Some(m) = &self.written else {
            return Ok(());
        };
        if !m.is_match(message) {
            return Ok(());
        }
        let mut tokens: Vec<Range<usize>> = Vec::new();
        json::walk(message, |_, ev| match ev {
            Event::Str { span, .. } => tokens.push(span),
            Event::Value { span }
                if !matches!(message.get(span.start), Some(b'{' | b'[' | b'"')) =>
            {
                tokens.push(span)
            }
            Event::Value { .. } => {}
        })?;
        tokens.sort_by_key(|t| t.start);
        for found in m.find_overlapping_iter(message) {
            let i = tokens.partition_point(|t| t.start <= found.start());
            let inside = i > 0 && tokens[i - 1].end >= found.end();
            if !inside {
                return Err(Uninspectable::SecretAcrossTokens);
            }
            let token = &tokens[i - 1];
            let digits = match message.get(token.start) {
                Some(b'"') => continue,
                Some(b'-') => token.start + 1..token.end,
                _ => token.clone(),
            };
            if found.range() == digits {
                return Err(Uninspectable::SecretAsNumber);
            }
        }
        Ok(())
    }

    /// Whether `s` contains any of the values.
    pub fn contained_in(&self, s: &[u8]) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(s))
    }
}

/// Where in a result a rule's detectors and patterns apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zones {
    /// `text` fields of content blocks, embedded resources, resource contents, prompt
    /// messages, and error messages.
    pub text: bool,
    /// Every string inside `structuredContent`.
    pub structured: bool,
}

/// One compiled `[[redact]]` rule.
#[derive(Debug)]
pub struct RedactRule {
    pub name: Arc<str>,
    pub scanner: Scanner,
    pub zones: Zones,
    /// Values replaced whole, relative to `result`.
    pub pointers: Vec<Pointer>,
    /// Replacement text; `None` means `[REDACTED:<what>]`.
    pub replacement: Option<String>,
}

/// How often one thing was redacted in one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionCount {
    /// The rule, or `None` for injected credentials.
    pub rule: Option<Arc<str>>,
    /// A detector name, `pattern`, `pointer`, or `injected_secret`.
    pub what: &'static str,
    pub count: u32,
}

/// The outcome of redacting one message.
#[derive(Debug, Default)]
pub struct Redacted {
    /// The rewritten message, when anything changed.
    pub bytes: Option<Vec<u8>>,
    pub counts: Vec<RedactionCount>,
}

impl Redacted {
    pub fn total(&self) -> u32 {
        self.counts.iter().map(|c| c.count).sum()
    }
}

#[derive(Debug, Clone)]
struct Hit {
    range: Range<usize>,
    /// Index into the applicable rules; `None` = injected credential.
    rule: Option<usize>,
    finding: Option<Finding>,
}

impl Hit {
    fn what(&self) -> &'static str {
        self.finding.map_or(INJECTED, Finding::label)
    }
}

/// The message could not be inspected: nothing of it may reach a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Uninspectable {
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// An injected credential stands in the bytes across tokens, where no string edit can
    /// take it out.
    #[error("an injected credential outside any one string")]
    SecretAcrossTokens,
    /// An injected credential of digits only is a number of the message.
    #[error("an injected credential written as a number")]
    SecretAsNumber,
}

/// Whether a string is one of the envelope's own words, never redacted: the top-level keys
/// JSON-RPC defines, and the value of `jsonrpc`.
fn envelope_word(path: &Path<'_>, key: bool) -> bool {
    match (path.len(), key) {
        (0, true) => true,
        (1, false) => path.key_is(0, "jsonrpc"),
        _ => false,
    }
}

const ENVELOPE_KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// Which part of the message a path is in.
fn top_level(path: &Path<'_>) -> Option<Top> {
    if path.key_is(0, "result") {
        Some(Top::Result)
    } else if path.key_is(0, "error") {
        Some(Top::Error)
    } else if path.key_is(0, "params") {
        Some(Top::Params)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    Result,
    Error,
    Params,
}

/// Redacts `message` (one JSON-RPC message) with `rules` and `secrets`.
pub fn redact(
    message: &[u8],
    rules: &[&RedactRule],
    secrets: &Secrets,
) -> Result<Redacted, Uninspectable> {
    if rules.is_empty() && secrets.is_empty() {
        return Ok(Redacted::default());
    }
    let wants_pointers = rules.iter().any(|r| !r.pointers.is_empty());
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    // What each edit counts, kept beside it: an edit undone by a pointer is not counted.
    let mut edit_counts: Vec<Vec<RedactionCount>> = Vec::new();
    let mut hits: Vec<Hit> = Vec::new();
    let mut found: Vec<(Range<usize>, Finding)> = Vec::new();
    json::walk(message, |path, ev| match ev {
        Event::Str { span, key } => {
            let raw = &message[span.start + 1..span.end - 1];
            if envelope_word(&path, key)
                && (key && ENVELOPE_KEYS.iter().any(|k| raw == k.as_bytes()) || raw == b"2.0")
            {
                return;
            }
            // Rules apply inside result/error/params; injected credentials everywhere.
            let top = top_level(&path);
            let structured = top == Some(Top::Result) && path.key_is(1, "structuredContent");
            let text = !key
                && !structured
                && match top {
                    Some(Top::Result) => path.last_key_is("text"),
                    Some(Top::Error) => {
                        path.len() == 2 && path.key_is(1, "message") || path.key_is(1, "data")
                    }
                    Some(Top::Params) | None => false,
                };
            let rule_zone = |r: &RedactRule| {
                (text && r.zones.text) || (structured && !key && r.zones.structured)
            };
            let any_rule = rules.iter().any(|r| rule_zone(r) && !r.scanner.is_empty());
            if !any_rule && secrets.is_empty() {
                return;
            }
            let s = json::decode_lossy(raw, "\u{fffd}");
            hits.clear();
            secrets.find(&s, &mut hits);
            secrets.find_split(raw, &s, &mut hits);
            for (i, r) in rules.iter().enumerate() {
                if rule_zone(r) {
                    found.clear();
                    r.scanner.find_all(&s, &mut found);
                    hits.extend(found.drain(..).map(|(range, f)| Hit {
                        range,
                        rule: Some(i),
                        finding: Some(f),
                    }));
                }
            }
            if hits.is_empty() {
                return;
            }
            let mut counts = Vec::new();
            let replaced = apply(&s, &mut hits, rules, &mut counts);
            edits.push((span, json::quote(&replaced).into_bytes()));
            edit_counts.push(counts);
        }
        Event::Value { span } => {
            if !wants_pointers || top_level(&path) != Some(Top::Result) {
                return;
            }
            let rel = path.skip(1);
            for r in rules {
                if r.pointers.iter().any(|p| rel.is(p)) {
                    // A whole value replaced: edits inside it are moot.
                    while edits.last().is_some_and(|(e, _)| e.start >= span.start) {
                        edits.pop();
                        edit_counts.pop();
                    }
                    let text = r
                        .replacement
                        .clone()
                        .unwrap_or_else(|| format!("[REDACTED:{}]", r.name));
                    edits.push((span.clone(), json::quote(&text).into_bytes()));
                    let mut counts = Vec::new();
                    count(&mut counts, Some(&r.name), "pointer");
                    edit_counts.push(counts);
                    return;
                }
            }
        }
    })?;
    if edits.is_empty() {
        secrets.check_across_tokens(message)?;
        return Ok(Redacted::default());
    }
    let out = json::splice(message, &edits);
    secrets.check_across_tokens(&out)?;
    let mut counts: Vec<RedactionCount> = Vec::new();
    for c in edit_counts.into_iter().flatten() {
        match counts
            .iter_mut()
            .find(|t| t.what == c.what && t.rule == c.rule)
        {
            Some(t) => t.count += c.count,
            None => counts.push(c),
        }
    }
    Ok(Redacted {
        bytes: Some(out),
        counts,
    })
}

/// Redacts every string of a JSON value (not a message: e.g. captured arguments) with one
/// scanner and the injected credentials; keys only for credentials.
pub fn redact_value(
    value: &[u8],
    scanner: &Scanner,
    secrets: &Secrets,
) -> Result<Option<Vec<u8>>, Malformed> {
    let rule = RedactRule {
        name: "capture".into(),
        scanner: scanner.clone(),
        zones: Zones {
            text: true,
            structured: true,
        },
        pointers: Vec::new(),
        replacement: None,
    };
    let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut hits: Vec<Hit> = Vec::new();
    let mut found: Vec<(Range<usize>, Finding)> = Vec::new();
    let mut counts = Vec::new();
    json::walk(value, |_, ev| {
        let Event::Str { span, key } = ev else { return };
        let raw = &value[span.start + 1..span.end - 1];
        let s = json::decode_lossy(raw, "\u{fffd}");
        hits.clear();
        secrets.find(&s, &mut hits);
        secrets.find_split(raw, &s, &mut hits);
        if !key {
            found.clear();
            rule.scanner.find_all(&s, &mut found);
            hits.extend(found.drain(..).map(|(range, f)| Hit {
                range,
                rule: Some(0),
                finding: Some(f),
            }));
        }
        if !hits.is_empty() {
            let replaced = apply(&s, &mut hits, &[&rule], &mut counts);
            edits.push((span, json::quote(&replaced).into_bytes()));
        }
    })?;
    Ok((!edits.is_empty()).then(|| json::splice(value, &edits)))
}

/// Applies merged hits to `s`, counting each replaced span once under its first hit.
fn apply(
    s: &str,
    hits: &mut [Hit],
    rules: &[&RedactRule],
    counts: &mut Vec<RedactionCount>,
) -> String {
    // Earliest first; at equal starts the longest first, and injected credentials before rules.
    hits.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
            .then(a.rule.is_some().cmp(&b.rule.is_some()))
    });
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    let mut i = 0;
    while i < hits.len() {
        let first = &hits[i];
        let mut end = first.range.end;
        let mut j = i + 1;
        while j < hits.len() && hits[j].range.start < end {
            end = end.max(hits[j].range.end);
            j += 1;
        }
        let start = first.range.start.max(at);
        if start >= end || !s.is_char_boundary(start) || !s.is_char_boundary(end) {
            i = j;
            continue;
        }
        out.push_str(&s[at..start]);
        let rule = first.rule.map(|r| rules[r]);
        match rule.and_then(|r| r.replacement.as_deref()) {
            Some(text) => out.push_str(text),
            None => {
                out.push_str("[REDACTED:");
                out.push_str(match (rule, first.finding) {
                    (Some(r), Some(Finding::Pattern(_))) => &r.name,
                    _ => first.what(),
                });
                out.push(']');
            }
        }
        count(counts, rule.map(|r| &r.name), first.what());
        at = end;
        i = j;
    }
    out.push_str(&s[at..]);
    out
}

fn count(counts: &mut Vec<RedactionCount>, rule: Option<&Arc<str>>, what: &'static str) {
    if let Some(c) = counts
        .iter_mut()
        .find(|c| c.what == what && c.rule.as_deref() == rule.map(|r| &**r))
    {
        c.count += 1;
    } else {
        counts.push(RedactionCount {
            rule: rule.cloned(),
            what,
            count: 1,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::detect::Detector;
    use serde_json::{Value, json};

    fn rule(
        detectors: &[Detector],
        patterns: &[&str],
        zones: Zones,
        pointers: &[&str],
    ) -> RedactRule {
        RedactRule {
            name: "r".into(),
            scanner: Scanner::new(
                detectors,
                &patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
            zones,
            pointers: pointers
                .iter()
                .map(|p| Pointer::parse(p).unwrap())
                .collect(),
            replacement: None,
        }
    }

    const BOTH: Zones = Zones {
        text: true,
        structured: true,
    };

    fn run(msg: &Value, rules: &[&RedactRule], secrets: &Secrets) -> (Value, Vec<RedactionCount>) {
        let bytes = msg.to_string();
        let r = redact(bytes.as_bytes(), rules, secrets).unwrap();
        let out = r
            .bytes
            .map_or(msg.clone(), |b| serde_json::from_slice(&b).unwrap());
        (out, r.counts)
    }

    #[test]
    fn injected_secrets_go_everywhere_but_the_envelope_words() {
        let secrets = Secrets::new(["s3cr3t-value", "tok\"en"]);
        let msg = json!({"jsonrpc":"2.0","id":"s3cr3t-value","method":"notifications/s3cr3t-value",
            "params":{
            "content":[{"type":"text","text":"env: S=s3cr3t-value and tok\"en"}],
            "structuredContent":{"s3cr3t-value":["x s3cr3t-value"]},
            "_meta":{"note":"s3cr3t-value"}},
            "extra":"s3cr3t-value", "s3cr3t-value": 1});
        let (out, counts) = run(&msg, &[], &secrets);
        let text = out.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok\\\"en"),
            "{text}"
        );
        assert_eq!(out["jsonrpc"], "2.0");
        assert_eq!(out["id"], "[REDACTED:injected_secret]");
        assert_eq!(out["method"], "notifications/[REDACTED:injected_secret]");
        assert_eq!(
            out["params"]["content"][0]["text"],
            "env: S=[REDACTED:injected_secret] and [REDACTED:injected_secret]"
        );
        assert_eq!(
            out["params"]["structuredContent"]["[REDACTED:injected_secret]"][0],
            "x [REDACTED:injected_secret]"
        );
        assert_eq!(out["extra"], "[REDACTED:injected_secret]");
        assert_eq!(out["[REDACTED:injected_secret]"], 1);
        assert_eq!(
            counts,
            vec![RedactionCount {
                rule: None,
                what: INJECTED,
                count: 9
            }]
        );
        // The envelope's own words stay, whatever the credential (a value like `id` is no
        // secret a message can keep).
        let msg = json!({"jsonrpc":"2.0","id":1,"result":{}});
        let r = redact(
            msg.to_string().as_bytes(),
            &[],
            &Secrets::new(["id", "2.0"]),
        )
        .unwrap();
        assert!(r.bytes.is_none());
    }

    #[test]
    fn a_secret_escaped_inside_a_string_or_across_tokens_does_not_pass() {
        let secrets = Secrets::new(["AB\"CD"]);
        // JSON carried in a string, escaped once more: the whole string goes.
        let nested = r#"{"jsonrpc":"2.0","id":1,"result":{"text":"{\"t\":\"\\u0041B\\\"CD\"}"}}"#;
        let v: Value = serde_json::from_str(nested).unwrap();
        assert_eq!(v["result"]["text"], r#"{"t":"\u0041B\"CD"}"#);
        let r = redact(nested.as_bytes(), &[], &secrets).unwrap();
        let out: Value = serde_json::from_slice(&r.bytes.unwrap()).unwrap();
        assert_eq!(out["result"]["text"], "[REDACTED:injected_secret]");
        // Written raw across two strings: no string holds it, the bytes do.
        let across = br#"{"jsonrpc":"2.0","id":1,"result":{"a":"AB","CD":1}}"#;
        let across_secret = Secrets::new([r#"AB","CD"#]);
        assert_eq!(
            redact(across, &[], &across_secret).unwrap_err(),
            Uninspectable::SecretAcrossTokens
        );
        // An all-digit value among other digits of a number is a coincidence, not a leak.
        let count = br#"{"jsonrpc":"2.0","id":142420,"result":{"n":-42421}}"#;
        assert!(
            redact(count, &[], &Secrets::new(["4242"]))
                .unwrap()
                .bytes
                .is_none()
        );
        // The value as a whole number is the value: in a result, an id, negative too.
        for leak in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"n":987654321012}}"#[..],
            br#"{"jsonrpc":"2.0","id":987654321012,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"n":[-987654321012]}}"#,
        ] {
            assert_eq!(
                redact(leak, &[], &Secrets::new(["987654321012"])).unwrap_err(),
                Uninspectable::SecretAsNumber,
                "{}",
                String::from_utf8_lossy(leak)
            );
        }
    }

    #[test]
    fn escaping_does_not_hide_a_secret() {
        let secrets = Secrets::new(["AB/CD"]);
        let raw = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\u0041B\/CD"}]}}"#;
        let r = redact(raw.as_bytes(), &[], &secrets).unwrap();
        let out: Value = serde_json::from_slice(&r.bytes.unwrap()).unwrap();
        assert_eq!(
            out["result"]["content"][0]["text"],
            "[REDACTED:injected_secret]"
        );
    }

    #[test]
    fn rules_apply_only_in_their_zones() {
        let text_only = rule(
            &[Detector::Email],
            &[],
            Zones {
                text: true,
                structured: false,
            },
            &[],
        );
        let msg = json!({"jsonrpc":"2.0","id":1,"result":{
            "content":[{"type":"text","text":"mail a@example.com"}, {"type":"resource","resource":{"uri":"a@example.com","text":"b@example.com"}}],
            "structuredContent":{"email":"c@example.com"}}});
        let (out, counts) = run(&msg, &[&text_only], &Secrets::none());
        assert_eq!(out["result"]["content"][0]["text"], "mail [REDACTED:email]");
        assert_eq!(
            out["result"]["content"][1]["resource"]["text"],
            "[REDACTED:email]"
        );
        assert_eq!(
            out["result"]["content"][1]["resource"]["uri"],
            "a@example.com"
        );
        assert_eq!(out["result"]["structuredContent"]["email"], "c@example.com");
        assert_eq!(counts[0].count, 2);
        let both = rule(&[Detector::Email], &[], BOTH, &[]);
        let (out, _) = run(&msg, &[&both], &Secrets::none());
        assert_eq!(
            out["result"]["structuredContent"]["email"],
            "[REDACTED:email]"
        );
    }

    #[test]
    fn pointers_replace_whole_values_and_patterns_use_the_rule_name() {
        let mut r = rule(
            &[],
            &["(?i)password=\\S+"],
            BOTH,
            &["/structuredContent/token", "/structuredContent/nested"],
        );
        r.name = "pw".into();
        let msg = json!({"jsonrpc":"2.0","id":1,"result":{
            "content":[{"type":"text","text":"password=hunter2 ok"}],
            "structuredContent":{"token":{"a":"password=x"},"nested":42,"keep":"password=y"}}});
        let (out, counts) = run(&msg, &[&r], &Secrets::none());
        assert_eq!(out["result"]["content"][0]["text"], "[REDACTED:pw] ok");
        assert_eq!(out["result"]["structuredContent"]["token"], "[REDACTED:pw]");
        assert_eq!(
            out["result"]["structuredContent"]["nested"],
            "[REDACTED:pw]"
        );
        assert_eq!(out["result"]["structuredContent"]["keep"], "[REDACTED:pw]");
        let pointer = counts.iter().find(|c| c.what == "pointer").unwrap();
        assert_eq!(pointer.count, 2);
        let pattern: u32 = counts
            .iter()
            .filter(|c| c.what == "pattern")
            .map(|c| c.count)
            .sum();
        assert_eq!(
            pattern, 2,
            "the match inside the replaced token is not counted twice: {counts:?}"
        );
    }

    #[test]
    fn overlapping_matches_merge_and_untouched_messages_keep_their_bytes() {
        let r = rule(&[Detector::Jwt, Detector::Email], &["eyJ"], BOTH, &[]);
        let msg = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln."}]}});
        let (out, _) = run(&msg, &[&r], &Secrets::none());
        assert_eq!(out["result"]["content"][0]["text"], "t=[REDACTED:jwt].");
        let clean = br#"{"jsonrpc":"2.0", "id":1, "result":{"content":[{"type":"text","text":"nothing"}]}}"#;
        assert!(
            redact(clean, &[&r], &Secrets::new(["zzz"]))
                .unwrap()
                .bytes
                .is_none()
        );
    }

    #[test]
    fn custom_replacement_and_error_messages() {
        let mut r = rule(&[Detector::AwsAccessKey], &[], BOTH, &[]);
        r.replacement = Some("***".into());
        let msg = json!({"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"bad key AKIAIOSFODNN7EXAMPLE"}});
        let (out, _) = run(&msg, &[&r], &Secrets::none());
        assert_eq!(out["error"]["message"], "bad key ***");
    }
}
