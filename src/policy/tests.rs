//! Decisions of whole policies, one rule kind at a time.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::*;

fn policy(toml: &str) -> Arc<Policy> {
    crate::config::file::parse(toml, Path::new("t.toml"), Path::new("."), &|_| {
        Err(std::io::ErrorKind::NotFound.into())
    })
    .unwrap()
    .policy
}

struct Call<'a> {
    policy: &'a Policy,
    history: History,
    at: Instant,
}

impl<'a> Call<'a> {
    fn new(policy: &'a Policy) -> Self {
        Call {
            policy,
            history: policy.new_history(),
            at: Instant::now(),
        }
    }

    fn run(&self, who: &Identity, method: &str, params: serde_json::Value) -> Decision {
        let raw = RawValue::from_string(params.to_string()).unwrap();
        self.policy.check(&PolicyInput {
            caller: who,
            method,
            params: Some(&raw),
            history: &self.history,
            session: "s1",
            now: SystemTime::now(),
            instant: self.at,
        })
    }

    fn tool(&self, who: &Identity, name: &str, args: serde_json::Value) -> Decision {
        self.run(who, "tools/call", json!({"name": name, "arguments": args}))
    }
}

fn alice() -> Identity {
    Identity::new("https://as", "alice").with_scopes(["mcp:basic"])
}

fn reason(d: &Decision) -> &'static str {
    d.code()
}

const SCOPED: &str = r#"
[[rule]]
name = "basic"
tools = ["echo", "get-sum"]
scopes = ["mcp:basic"]

[[rule]]
name = "admin"
tools = ["get-env"]
scopes = ["mcp:admin"]
"#;

#[test]
fn scopes_allow_and_missing_scopes_ask_for_step_up() {
    let p = policy(SCOPED);
    let c = Call::new(&p);
    let d = c.tool(&alice(), "echo", json!({"message": "hi"}));
    assert_eq!(
        d,
        Decision::Allow(Allow {
            target: Some(Target {
                kind: TargetKind::Tool,
                name: "echo".into()
            }),
            rule: Some("basic".into())
        })
    );
    match c.tool(&alice(), "get-env", json!({})) {
        Decision::Deny(Deny {
            reason: DenyReason::InsufficientScope { scopes },
            rule,
            ..
        }) => {
            assert_eq!(
                scopes,
                ["mcp:admin", "mcp:basic"],
                "held and needed scopes, in one challenge"
            );
            assert_eq!(rule.as_deref(), Some("admin"));
        }
        other => panic!("{other:?}"),
    }
    let admin = alice().with_scopes(["mcp:basic", "mcp:admin"]);
    assert!(c.tool(&admin, "get-env", json!({})).is_allow());
    // Default deny: a tool no rule names.
    assert_eq!(reason(&c.tool(&admin, "other", json!({}))), "not_permitted");
    // Not governed: lists, pings, initialize.
    assert!(c.run(&alice(), "tools/list", json!({})).is_allow());
    // A call without a name cannot be decided on.
    assert_eq!(
        reason(&c.run(&alice(), "tools/call", json!({}))),
        "invalid_params"
    );
}

#[test]
fn default_allow_and_deny_rules() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[rule]]
name = "no-env-for-contractors"
effect = "deny"
tools = ["get-env"]
when = 'has(claims.contractor) && claims.contractor == true'
message = "contractors may not read the environment"
"#,
    );
    let c = Call::new(&p);
    assert!(c.tool(&alice(), "anything", json!({})).is_allow());
    assert!(c.tool(&alice(), "get-env", json!({})).is_allow());
    let mut bob = Identity::new("https://as", "bob");
    bob.claims.insert("contractor".into(), true.into());
    match c.tool(&bob, "get-env", json!({})) {
        Decision::Deny(d) => {
            assert_eq!(d.reason, DenyReason::DeniedByRule);
            assert_eq!(
                d.message.as_deref(),
                Some("contractors may not read the environment")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn conditions_gate_allow_rules_and_fail_closed() {
    let p = policy(
        r#"
[[rule]]
name = "eng-only"
tools = ["deploy"]
when = 'claims.dept == "eng" && args.env != "prod"'

[[rule]]
name = "broken"
tools = ["broken"]
when = 'args.missing.field == 1'
"#,
    );
    let c = Call::new(&p);
    let mut eng = alice();
    eng.claims.insert("dept".into(), "eng".into());
    assert!(c.tool(&eng, "deploy", json!({"env": "staging"})).is_allow());
    assert_eq!(
        reason(&c.tool(&eng, "deploy", json!({"env": "prod"}))),
        "condition_not_met"
    );
    // alice has no dept claim: the condition errors, and errors deny.
    assert_eq!(
        reason(&c.tool(&alice(), "deploy", json!({"env": "dev"}))),
        "condition_error"
    );
    assert_eq!(
        reason(&c.tool(&eng, "broken", json!({}))),
        "condition_error"
    );
}

#[test]
fn argument_rules_by_pointer_and_by_any_string() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[argument]]
name = "no-secrets"
tools = ["*"]
detectors = ["secrets", "credit_card"]

[[argument]]
name = "no-etc"
tools = ["read_file"]
pointers = ["/path"]
patterns = ['^/etc/']
"#,
    );
    let c = Call::new(&p);
    match c.tool(
        &alice(),
        "echo",
        json!({"nested": {"list": ["ok", "AKIAIOSFODNN7EXAMPLE"]}}),
    ) {
        Decision::Deny(d) => {
            assert_eq!(
                d.reason,
                DenyReason::ArgumentBlocked {
                    finding: Finding::Detector(Detector::AwsAccessKey)
                }
            );
            assert_eq!(d.rule.as_deref(), Some("no-secrets"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        reason(&c.tool(&alice(), "pay", json!({"card": "4111-1111-1111-1111"}))),
        "argument_blocked"
    );
    assert!(
        c.tool(&alice(), "pay", json!({"card": "4111-1111-1111-1112"}))
            .is_allow()
    );
    assert_eq!(
        reason(&c.tool(&alice(), "read_file", json!({"path": "/etc/passwd"}))),
        "argument_blocked"
    );
    // A server that reads keys case-insensitively takes these for `path` too.
    for key in ["PATH", "Path", "pAtH"] {
        assert_eq!(
            reason(&c.tool(&alice(), "read_file", json!({ key: "/etc/passwd" }))),
            "argument_blocked",
            "{key}"
        );
    }
    // The pattern applies at its pointer only.
    assert!(
        c.tool(
            &alice(),
            "read_file",
            json!({"path": "/home/a", "note": "/etc/x"})
        )
        .is_allow()
    );
    assert!(
        c.tool(&alice(), "other", json!({"path": "/etc/passwd"}))
            .is_allow()
    );
    // Escaped JSON is decoded before matching.
    let raw = r#"{"name":"read_file","arguments":{"path":"\/etc\/shadow"}}"#;
    let d = p.check(&PolicyInput {
        caller: &alice(),
        method: "tools/call",
        params: Some(&RawValue::from_string(raw.into()).unwrap()),
        history: &c.history,
        session: "s",
        now: SystemTime::now(),
        instant: Instant::now(),
    });
    assert_eq!(reason(&d), "argument_blocked");
}

#[test]
fn sequence_rules_see_what_the_session_did() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[mark]]
name = "read-secrets"
tools = ["read_file"]
when = 'args.path.startsWith("/secrets/")'
set = "secrets"

[[rule]]
name = "no-exfiltration"
effect = "deny"
tools = ["send_email"]
when = '"secrets" in session.marks'

[[rule]]
name = "no-email-after-env"
effect = "deny"
tools = ["send_email"]
when = 'session.calls.exists(c, c.name == "get-env")'
"#,
    );
    let c = Call::new(&p);
    assert!(
        c.tool(&alice(), "send_email", json!({"to": "x"}))
            .is_allow()
    );
    assert!(
        c.tool(&alice(), "read_file", json!({"path": "/home/x"}))
            .is_allow()
    );
    assert!(
        c.tool(&alice(), "send_email", json!({"to": "x"}))
            .is_allow()
    );
    assert!(
        c.tool(&alice(), "read_file", json!({"path": "/secrets/key"}))
            .is_allow()
    );
    match c.tool(&alice(), "send_email", json!({"to": "x"})) {
        Decision::Deny(d) => assert_eq!(d.rule.as_deref(), Some("no-exfiltration")),
        other => panic!("{other:?}"),
    }
    // Another session is unaffected.
    let other = Call::new(&p);
    assert!(other.tool(&alice(), "send_email", json!({})).is_allow());
    assert!(other.tool(&alice(), "get-env", json!({})).is_allow());
    assert_eq!(
        reason(&other.tool(&alice(), "send_email", json!({}))),
        "denied_by_rule"
    );
}

#[test]
fn rate_limits_per_principal_and_per_tool() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[rate_limit]]
name = "per-user"
per = "principal"
rate = "3/min"

[[rate_limit]]
name = "env-global"
per = "tool"
tools = ["get-env"]
rate = "1/h"
"#,
    );
    let c = Call::new(&p);
    let bob = Identity::new("https://as", "bob");
    assert!(c.tool(&alice(), "get-env", json!({})).is_allow());
    match c.tool(&bob, "get-env", json!({})) {
        Decision::Deny(Deny {
            reason: DenyReason::RateLimited { retry_after },
            rule,
            ..
        }) => {
            assert_eq!(rule.as_deref(), Some("env-global"));
            assert!(retry_after > Duration::from_secs(3000), "{retry_after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(c.tool(&alice(), "echo", json!({})).is_allow());
    assert!(c.tool(&alice(), "echo", json!({})).is_allow());
    assert_eq!(reason(&c.tool(&alice(), "echo", json!({}))), "rate_limited");
    // bob's refused get-env did not consume from his own bucket.
    for _ in 0..3 {
        assert!(c.tool(&bob, "echo", json!({})).is_allow());
    }
}

#[test]
fn prompts_and_resources_by_name_and_uri() {
    let p = policy(
        r#"
[[rule]]
name = "docs"
resources = ["demo://resource/static/*"]

[[rule]]
name = "prompts"
prompts = ["simple-prompt"]
"#,
    );
    let c = Call::new(&p);
    let read = |uri: &str| c.run(&alice(), "resources/read", json!({"uri": uri}));
    assert!(read("demo://resource/static/document/a.md").is_allow());
    assert_eq!(
        reason(&read("demo://resource/dynamic/text/1")),
        "not_permitted"
    );
    assert!(
        c.run(&alice(), "prompts/get", json!({"name": "simple-prompt"}))
            .is_allow()
    );
    assert_eq!(
        reason(&c.run(&alice(), "prompts/get", json!({"name": "args-prompt"}))),
        "not_permitted"
    );
    assert_eq!(
        reason(&c.run(&alice(), "resources/subscribe", json!({"uri": "file:///x"}))),
        "not_permitted"
    );
}

/// A server that normalizes URIs reads another resource than the text a glob matched.
#[test]
fn resource_rules_match_the_uri_a_server_would_read() {
    let p = policy(
        r#"
[policy]
default = "deny"

[[rule]]
name = "docs"
resources = ["file:///docs/*"]

[[rule]]
name = "no-secret"
effect = "deny"
resources = ["file:///docs/secret/*"]
"#,
    );
    let c = Call::new(&p);
    let read = |uri: &str| c.run(&alice(), "resources/read", json!({"uri": uri}));
    assert!(read("file:///docs/readme.md").is_allow());
    assert_eq!(reason(&read("file:///docs/secret/x")), "denied_by_rule");
    // The scheme is compared in lower case: still the denied resource.
    assert_eq!(reason(&read("FILE:///docs/secret/x")), "denied_by_rule");
    // Spellings that leave the allowed tree or dodge the deny rule once normalized.
    for uri in [
        "file:///docs/../../etc/passwd",
        "file:///docs/%2e%2e/etc/passwd",
        "file:///docs//secret/x",
        "file:///docs/./secret/x",
        "file:///docs/%73ecret/x",
    ] {
        assert_eq!(reason(&read(uri)), "invalid_params", "{uri}");
    }
    // Completions and subscriptions name resources the same way.
    assert_eq!(
        reason(&c.run(
            &alice(),
            "resources/subscribe",
            json!({"uri": "file:///docs/../x"})
        )),
        "invalid_params"
    );
    // A server's list shows none of what no read could reach.
    let list = json!({"jsonrpc":"2.0","id":1,"result":{"resources":[
        {"uri":"file:///docs/readme.md"},{"uri":"file:///docs/../etc/passwd"},{"uri":"FILE:///docs/secret/x"}]}})
    .to_string();
    let out = p
        .filter_list(
            &alice(),
            ListKind::Resources,
            list.as_bytes(),
            SystemTime::now(),
        )
        .unwrap()
        .expect("the list is filtered");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["result"]["resources"],
        json!([{"uri":"file:///docs/readme.md"}])
    );
}

#[test]
fn lists_show_what_the_caller_may_use() {
    let p = policy(&format!(
        r#"{SCOPED}
[[rule]]
name = "eng"
tools = ["deploy"]
when = 'claims.dept == "eng"'

[[rule]]
name = "by-args"
tools = ["maybe"]
when = 'args.x == 1'
"#
    ));
    let list = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
        {"name":"echo"},{"name":"get-env"},{"name":"deploy"},{"name":"maybe"},{"name":"unnamed-by-policy"}]}});
    let names = |p: &Policy, who: &Identity| -> Vec<String> {
        let bytes = list.to_string();
        let out = p
            .filter_list(who, ListKind::Tools, bytes.as_bytes(), SystemTime::now())
            .unwrap()
            .unwrap_or_else(|| bytes.into_bytes());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&p, &alice()), ["echo", "maybe"]);
    let mut eng = alice().with_scopes(["mcp:basic", "mcp:admin"]);
    eng.claims.insert("dept".into(), "eng".into());
    assert_eq!(names(&p, &eng), ["echo", "get-env", "deploy", "maybe"]);
    let step_up = policy(&format!("[policy]\nlist_step_up = true\n{SCOPED}"));
    assert_eq!(names(&step_up, &alice()), ["echo", "get-env"]);
    let unfiltered = policy(&format!("[policy]\nfilter_lists = false\n{SCOPED}"));
    assert_eq!(names(&unfiltered, &alice()).len(), 5);
}

#[test]
fn redaction_rules_are_targeted() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[redact]]
name = "env-keys"
tools = ["get-env"]
detectors = ["secrets"]

[[redact]]
name = "resource-mail"
resources = ["demo://*"]
detectors = ["email"]
"#,
    );
    let env = Target {
        kind: TargetKind::Tool,
        name: "get-env".into(),
    };
    let echo = Target {
        kind: TargetKind::Tool,
        name: "echo".into(),
    };
    let names =
        |rules: Vec<&RedactRule>| rules.iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(p.redact_rules(Some(&env), false)), ["env-keys"]);
    assert!(p.redact_rules(Some(&echo), false).is_empty());
    assert_eq!(
        names(p.redact_rules(None, true)),
        ["env-keys"],
        "task results: every tool rule"
    );
    assert!(p.redact_rules(None, false).is_empty());
    let msg = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"K=AKIAIOSFODNN7EXAMPLE"}]}}).to_string();
    let out = p
        .redact(
            msg.as_bytes(),
            &p.redact_rules(Some(&env), false),
            &Secrets::none(),
        )
        .unwrap();
    assert_eq!(out.total(), 1);
    assert!(
        !String::from_utf8(out.bytes.unwrap())
            .unwrap()
            .contains("AKIA")
    );
    let untouched = p
        .redact(
            msg.as_bytes(),
            &p.redact_rules(Some(&echo), false),
            &Secrets::none(),
        )
        .unwrap();
    assert!(untouched.bytes.is_none());
}

#[test]
fn params_that_are_not_an_object_name_nothing() {
    // serde would fill `name` from an array's first element; a server reads an array
    // differently, if at all, so the policy must not decide on a name it guessed.
    let p = policy("[policy]\ndefault = \"allow\"\n");
    let c = Call::new(&p);
    let d = c.run(&alice(), "tools/call", json!(["get-env"]));
    assert_eq!(reason(&d), "invalid_params");
    let d = c.run(
        &alice(),
        "resources/read",
        json!([null, "file:///etc/passwd"]),
    );
    assert_eq!(reason(&d), "invalid_params");
}

/// `text` with a lone surrogate escape (`\ud800` or `\udc00`) put at `at`: what a server
/// writes when it cuts a string in the middle of an emoji, and what no strict JSON parser
/// turns into a string.
fn with_lone_surrogate(text: &str, at: usize, low: bool) -> String {
    let escape = if low { r"\udc00" } else { r"\ud800" };
    format!("{}{escape}{}", &text[..at], &text[at..])
}

fn raw_call(name: &str, args_json: &str) -> Box<RawValue> {
    RawValue::from_string(format!(r#"{{"name":"{name}","arguments":{args_json}}}"#)).unwrap()
}

#[test]
fn arguments_that_cannot_be_decoded_are_not_waved_through() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[rule]]
name = "no-secrets-dir"
effect = "deny"
tools = ["read_file"]
when = 'has(args.path) && args.path.startsWith("/secrets")'

[[argument]]
name = "no-drop"
tools = ["*"]
patterns = ['(?i)drop\s+table']
"#,
    );
    let c = Call::new(&p);
    let check = |raw: &RawValue| {
        p.check(&PolicyInput {
            caller: &alice(),
            method: "tools/call",
            params: Some(raw),
            history: &c.history,
            session: "s",
            now: SystemTime::now(),
            instant: Instant::now(),
        })
    };
    // Baselines: both rules hold on decodable arguments.
    assert_eq!(
        reason(&check(&raw_call("read_file", r#"{"path":"/secrets/k"}"#))),
        "denied_by_rule"
    );
    assert_eq!(
        reason(&check(&raw_call("q", r#"{"sql":"DROP TABLE users"}"#))),
        "argument_blocked"
    );
    // A lone surrogate anywhere in the arguments: never allowed.
    let path = r#"{"path":"/secrets/k","note":"x"}"#;
    let sql = r#"{"sql":"DROP TABLE users","n":[1,"a"]}"#;
    for (tool, args) in [("read_file", path), ("q", sql)] {
        for at in (1..args.len()).filter(|&i| {
            // Inside a string: after an opening quote's content has begun.
            args[..i].matches('"').count() % 2 == 1
        }) {
            for low in [false, true] {
                let args = with_lone_surrogate(args, at, low);
                let d = check(&raw_call(tool, &args));
                assert!(!d.is_allow(), "{tool} {args}: {d:?}");
            }
        }
    }
}

#[test]
fn server_output_that_cannot_be_decoded_is_still_redacted() {
    let p = policy(
        r#"
[policy]
default = "allow"

[[redact]]
name = "mail"
tools = ["echo"]
detectors = ["email"]
"#,
    );
    let echo = Target {
        kind: TargetKind::Tool,
        name: "echo".into(),
    };
    let rules = p.redact_rules(Some(&echo), false);
    let secrets = Secrets::new(["wsk_live_9f8e7d6c5b4a3210"]);
    let text = "mail bob@example.com key wsk_live_9f8e7d6c5b4a3210 end";
    for at in 0..=text.len() {
        for low in [false, true] {
            let t = with_lone_surrogate(text, at, low);
            let msg = format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{t}"}}]}}}}"#
            );
            let out = p.redact(msg.as_bytes(), &rules, &secrets);
            let out = match out {
                Ok(r) => r.bytes.unwrap_or_else(|| msg.clone().into_bytes()),
                Err(_) => continue, // replaced whole by the caller
            };
            let out = String::from_utf8(out).unwrap();
            // An address cut in two is no address for the detector; the credential is found
            // however it is cut, as a client that drops the escape would read it.
            let cut_mail = (5..20).contains(&at);
            assert!(cut_mail || !out.contains("bob@example.com"), "{t}: {out}");
            let read = out.replace(r"\ud800", "").replace(r"\udc00", "");
            assert!(!read.contains("wsk_live_9f8e7d6c5b4a3210"), "{t}: {out}");
        }
    }
}

#[test]
fn completions_are_governed_as_the_prompt_or_resource_they_complete() {
    let p = policy(
        r#"
[[rule]]
name = "prompts"
prompts = ["simple-prompt", "region-prompt"]

[[rule]]
name = "no-prod"
effect = "deny"
prompts = ["region-prompt"]
when = 'has(args.region) && args.region == "prod"'

[[rule]]
name = "docs"
resources = ["demo://resource/static/*"]

[[rate_limit]]
name = "prompt-budget"
per = "principal"
prompts = ["*"]
rate = "1/min"
"#,
    );
    let c = Call::new(&p);
    let complete = |reference: serde_json::Value, argument: serde_json::Value| {
        c.run(
            &alice(),
            "completion/complete",
            json!({"ref": reference, "argument": argument}),
        )
    };
    let arg = json!({"name": "style", "value": "b"});
    assert_eq!(
        reason(&complete(
            json!({"type": "ref/prompt", "name": "args-prompt"}),
            arg.clone()
        )),
        "not_permitted"
    );
    assert_eq!(
        reason(&complete(
            json!({"type": "ref/resource", "uri": "demo://resource/dynamic/{id}"}),
            arg.clone()
        )),
        "not_permitted"
    );
    // Completions do not use up the prompt's rate limit: they are typed, not calls.
    for _ in 0..3 {
        let d = complete(
            json!({"type": "ref/prompt", "name": "simple-prompt"}),
            arg.clone(),
        );
        assert!(d.is_allow(), "{d:?}");
    }
    assert!(
        complete(
            json!({"type": "ref/resource", "uri": "demo://resource/static/{name}"}),
            arg.clone()
        )
        .is_allow()
    );
    // Conditions read the argument being completed with the ones already given.
    let d = c.run(
        &alice(),
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "region-prompt"},
            "argument": {"name": "zone", "value": "e"},
            "context": {"arguments": {"region": "prod"}}}),
    );
    assert_eq!(reason(&d), "denied_by_rule");
    let d = complete(
        json!({"type": "ref/prompt", "name": "region-prompt"}),
        json!({"name": "region", "value": "prod"}),
    );
    assert_eq!(reason(&d), "denied_by_rule");
    // What names nothing is refused.
    for params in [
        json!({"argument": arg}),
        json!({"ref": {"type": "ref/tool", "name": "x"}, "argument": arg}),
        json!({"ref": {"type": "ref/prompt"}, "argument": arg}),
    ] {
        let d = c.run(&alice(), "completion/complete", params.clone());
        assert_eq!(reason(&d), "invalid_params", "{params}");
    }
    assert!(
        c.run(&alice(), "prompts/get", json!({"name": "simple-prompt"}))
            .is_allow()
    );
    assert_eq!(
        reason(&c.run(&alice(), "prompts/get", json!({"name": "simple-prompt"}))),
        "rate_limited"
    );
}

#[test]
fn resource_templates_are_listed_as_the_resources_they_name() {
    let p = policy(
        r#"
[[rule]]
name = "docs"
resources = ["demo://resource/static/*"]
"#,
    );
    let list = json!({"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[
        {"uriTemplate":"demo://resource/static/{name}","name":"static"},
        {"uriTemplate":"demo://resource/dynamic/{id}","name":"dynamic"},
        {"name":"no-template"}]}});
    let bytes = list.to_string();
    let out = p
        .filter_list(
            &alice(),
            ListKind::ResourceTemplates,
            bytes.as_bytes(),
            SystemTime::now(),
        )
        .unwrap()
        .expect("filtered");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["result"]["resourceTemplates"],
        json!([{"uriTemplate":"demo://resource/static/{name}","name":"static"}])
    );
    assert_eq!(
        ListKind::of_method("resources/templates/list"),
        Some(ListKind::ResourceTemplates)
    );
}

#[test]
fn a_call_matching_many_rate_limits_meets_every_one() {
    let mut config = String::from("[policy]\ndefault = \"allow\"\n");
    for i in 0..9 {
        config.push_str(&format!(
            "\n[[rate_limit]]\nname = \"wide-{i}\"\nper = \"principal\"\nrate = \"100/s\"\n"
        ));
    }
    config.push_str("\n[[rate_limit]]\nname = \"narrow\"\nper = \"tool\"\ntools = [\"echo\"]\nrate = \"1/min\"\n");
    let p = policy(&config);
    let c = Call::new(&p);
    assert!(c.tool(&alice(), "echo", json!({})).is_allow());
    match c.tool(&alice(), "echo", json!({})) {
        Decision::Deny(d) => {
            assert_eq!(d.reason.code(), "rate_limited");
            assert_eq!(d.rule.as_deref(), Some("narrow"));
        }
        other => panic!("{other:?}"),
    }
}
