//! The policy evaluator with arbitrary requests and server messages, under the typical policy
//! of the bridge benchmark (scoped tool rules, a CEL condition, argument detectors, marks, a
//! rate limit, output redaction of detectors and of an injected credential). Never a panic,
//! and:
//! - the decision is the same when asked twice (no hidden state besides rate and history,
//!   which this policy lets through);
//! - a denial has a stable snake_case code;
//! - after redaction the injected credential is nowhere in the answer, in its bytes or
//!   once decoded.
#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::{Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use mcp_warden::config::file::parse;
use mcp_warden::policy::{Decision, Identity, Policy, PolicyInput, Secrets};
use serde_json::value::RawValue;

const CREDENTIAL: &str = "Qz-credential-0123456789";
const METHODS: [&str; 7] = [
    "tools/call",
    "resources/read",
    "prompts/get",
    "tools/list",
    "initialize",
    "sampling/createMessage",
    "completion/complete",
];

static POLICY: LazyLock<Arc<Policy>> = LazyLock::new(|| {
    let text = include_str!("../../benches/policy.toml");
    let read = |_: &Path| Err(std::io::Error::other("no files"));
    let config = parse(text, Path::new("policy.toml"), Path::new("."), &read)
        .expect("the benchmark policy loads");
    config.policy
});

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let policy: &Policy = &POLICY;
    let method = METHODS[usize::from(sel) % METHODS.len()];
    let caller = Identity::new("https://issuer.example", "user").with_scopes(if sel & 0x80 != 0 {
        vec!["mcp:admin"]
    } else {
        vec![]
    });
    let history = policy.new_history();
    let params = serde_json::from_str::<&RawValue>(text).ok();
    let input = PolicyInput {
        caller: &caller,
        method,
        params,
        history: &history,
        session: "s",
        now: SystemTime::UNIX_EPOCH,
        instant: Instant::now(),
    };
    let first = policy.check(&input);
    if let Decision::Deny(_) = &first {
        let code = first.code();
        assert!(!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    assert_eq!(
        first.is_allow(),
        policy.check(&input).is_allow(),
        "not deterministic"
    );

    // The bytes (with the credential spliced in) as the `result` of a server's answer: the
    // credential must not survive anywhere, in a key or a value, however the JSON escapes it.
    let secrets = Secrets::new([CREDENTIAL]);
    let rules = policy.redact_rules(None, false);
    let at = usize::from(sel) % (text.len() + 1);
    if !text.is_char_boundary(at) {
        return;
    }
    let value = format!("{}{CREDENTIAL}{}", &text[..at], &text[at..]);
    let message = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{value}}}"#);
    let Ok(sent) = serde_json::from_str::<serde_json::Value>(&message) else {
        return;
    };
    let redacted = policy
        .redact(message.as_bytes(), &rules, &secrets)
        .expect("a JSON message can be redacted");
    let bytes = redacted.bytes.as_deref().unwrap_or(message.as_bytes());
    let out: serde_json::Value = serde_json::from_slice(bytes).expect("redaction keeps JSON");
    assert_eq!(out["id"], sent["id"]);
    assert!(
        !mentions(&out, CREDENTIAL),
        "credential left in a redacted message"
    );
    assert!(
        !String::from_utf8_lossy(bytes).contains(CREDENTIAL),
        "credential left in the bytes"
    );
});

/// Whether any key or string inside `v` contains `needle`.
fn mentions(v: &serde_json::Value, needle: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains(needle),
        serde_json::Value::Array(a) => a.iter().any(|x| mentions(x, needle)),
        serde_json::Value::Object(o) => o
            .iter()
            .any(|(k, x)| k.contains(needle) || mentions(x, needle)),
        _ => false,
    }
}
