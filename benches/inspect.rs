//! Inspection overhead per message: `cargo bench --bench inspect`.
//!
//! Measures what the policy adds on the request path (decide on a `tools/call`) and on the
//! response path (redact a result, filter a list), next to what the bridge already pays per
//! message without a policy (classifying the message). Prints medians of several runs; no
//! thresholds, since timings depend on the machine.

// A benchmark reports on stdout and may stop at a broken setup.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use mcp_warden::mcp::Envelope;
use mcp_warden::policy::{Identity, ListKind, Policy, PolicyInput, Secrets, Target, TargetKind};
use serde_json::json;
use serde_json::value::RawValue;

/// A typical policy: scoped tool rules, a claim condition, a sequence rule, argument
/// detectors on every tool, a per-principal rate limit, a mark, output redaction.
const POLICY: &str = r#"
[[rule]]
name = "tools"
tools = ["echo", "get-sum", "search_*"]
scopes = ["mcp:tools"]

[[rule]]
name = "admin"
tools = ["get-env"]
scopes = ["mcp:admin"]
when = 'claims.dept == "eng"'

[[rule]]
name = "no-mail-after-secrets"
effect = "deny"
tools = ["send_email"]
when = '"secrets" in session.marks'

[[argument]]
name = "no-credentials"
tools = ["*"]
detectors = ["secrets"]

[[mark]]
name = "secrets"
tools = ["read_file"]
when = 'args.path.startsWith("/secrets/")'
set = "secrets"

[[redact]]
name = "credentials-in-output"
tools = ["*"]
detectors = ["secrets"]

[[rate_limit]]
name = "per-principal"
per = "principal"
rate = "1000000000/s"
"#;

fn load(text: &str) -> Policy {
    let cfg =
        mcp_warden::config::file::parse(text, Path::new("bench.toml"), Path::new("."), &|_| {
            Err(std::io::ErrorKind::NotFound.into())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    std::sync::Arc::try_unwrap(cfg.policy).unwrap_or_else(|_| panic!("shared"))
}

/// Median ns per call of `f` over `runs` runs of `iters` calls.
fn time(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn report(name: &str, ns: f64, baseline: Option<f64>) {
    let rel = baseline.map_or(String::new(), |b| {
        format!("  ({:.1}x the classification cost)", ns / b)
    });
    println!("{name:<58} {:>10.2} µs{rel}", ns / 1000.0);
}

fn text_result(size: usize, with: &str) -> Vec<u8> {
    let filler = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(size / 57 + 1);
    let text = format!("{}{with}", &filler[..size.saturating_sub(120 + with.len())]);
    json!({"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":text}],"isError":false}})
        .to_string()
        .into_bytes()
}

fn main() {
    let policy = load(POLICY);
    let mut caller = Identity::new("https://issuer.example", "alice").with_scopes(["mcp:tools"]);
    caller.client_id = Some("client-1".into());
    caller.claims.insert("dept".into(), "eng".into());
    let history = policy.new_history();
    let secrets = Secrets::new([
        "sk-injected-0123456789abcdef",
        "another-injected-credential",
    ]);
    let target = Target {
        kind: TargetKind::Tool,
        name: "echo".into(),
    };

    // A 1 KiB tools/call.
    let message = "hello ".repeat(150);
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":message,"n":3}}}).to_string();
    println!(
        "request: tools/call of {} bytes; typical policy ({})",
        call.len(),
        policy.summary()
    );

    let classify = time(20_000, || {
        let env = Envelope::parse(black_box(call.as_bytes())).unwrap_or_else(|e| panic!("{e}"));
        black_box(env.kind);
    });
    report("classify request (bridge, policy off)", classify, None);

    let env = Envelope::parse(call.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let params: &RawValue = env.params.unwrap_or_else(|| panic!("params"));
    let check = time(20_000, || {
        let d = policy.check(&PolicyInput {
            caller: &caller,
            method: "tools/call",
            params: Some(black_box(params)),
            history: &history,
            session: "s",
            now: SystemTime::now(),
            instant: Instant::now(),
        });
        black_box(d);
    });
    report(
        "check tools/call 1 KiB (rules, detectors, limit)",
        check,
        Some(classify),
    );

    let sensitive = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-env","arguments":{}}}).to_string();
    let sensitive_env = Envelope::parse(sensitive.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let check_cel = time(20_000, || {
        let d = policy.check(&PolicyInput {
            caller: &caller,
            method: "tools/call",
            params: sensitive_env.params,
            history: &history,
            session: "s",
            now: SystemTime::now(),
            instant: Instant::now(),
        });
        black_box(d);
    });
    report(
        "check tools/call with a CEL claim condition",
        check_cel,
        None,
    );

    let rules = policy.redact_rules(Some(&target), false);
    for (label, size) in [("1 KiB", 1024), ("64 KiB", 64 * 1024)] {
        let clean = text_result(size, "");
        let classify_resp = time(if size > 4096 { 500 } else { 20_000 }, || {
            black_box(Envelope::parse(black_box(&clean)).map(|e| e.kind).ok());
        });
        report(
            &format!("classify result {label} (bridge, policy off)"),
            classify_resp,
            None,
        );
        let iters = if size > 4096 { 500 } else { 20_000 };
        let ns = time(iters, || {
            black_box(
                policy
                    .redact(black_box(&clean), &rules, &secrets)
                    .map(|r| r.total())
                    .ok(),
            );
        });
        report(
            &format!("redact result {label}, nothing to redact"),
            ns,
            Some(classify_resp),
        );
        let dirty = text_result(
            size,
            " key=sk-injected-0123456789abcdef AKIAIOSFODNN7EXAMPLE",
        );
        let ns = time(iters, || {
            black_box(
                policy
                    .redact(black_box(&dirty), &rules, &secrets)
                    .map(|r| r.total())
                    .ok(),
            );
        });
        report(
            &format!("redact result {label}, 2 matches"),
            ns,
            Some(classify_resp),
        );
        let secrets_only = time(iters, || {
            black_box(
                policy
                    .redact(black_box(&clean), &[], &secrets)
                    .map(|r| r.total())
                    .ok(),
            );
        });
        report(
            &format!("redact result {label}, injected secrets only"),
            secrets_only,
            Some(classify_resp),
        );
    }

    let tools: Vec<_> = (0..40)
        .map(|i| json!({"name": format!("tool-{i}"), "description":"d","inputSchema":{"type":"object"}}))
        .collect();
    let list = json!({"jsonrpc":"2.0","id":1,"result":{"tools":tools}}).to_string();
    let ns = time(5_000, || {
        black_box(
            policy
                .filter_list(
                    &caller,
                    ListKind::Tools,
                    black_box(list.as_bytes()),
                    SystemTime::now(),
                )
                .ok(),
        );
    });
    report(
        &format!("filter tools/list of 40 tools ({} bytes)", list.len()),
        ns,
        None,
    );
    let _ = Duration::ZERO;
}
