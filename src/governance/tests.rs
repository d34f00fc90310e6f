//! Governance in-process: a real compiled policy, a real audit file, no HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::audit::{AuditConfig, OnFull, Output};
use crate::credentials::SecretSet;
use crate::mcp::Id;

const POLICY: &str = r#"
[policy]
default = "deny"

[[rule]]
name = "echo-only"
tools = ["echo"]
"#;

fn policy() -> Arc<Policy> {
    crate::config::file::parse(POLICY, Path::new("t.toml"), Path::new("."), &|_| {
        Err(std::io::ErrorKind::NotFound.into())
    })
    .unwrap()
    .policy
}

fn audit_file(name: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("warden-governance-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(crate::config::file::default_anchor(&path));
    path
}

fn governance(path: &Path) -> Arc<Governance> {
    let audit = AuditSink::start(&AuditConfig {
        output: Output::File(path.to_path_buf()),
        key: None,
        capture_arguments: false,
        buffer: 64,
        on_full: OnFull::Drop,
        anchor: Some(crate::config::file::default_anchor(path)),
    })
    .unwrap();
    Arc::new(Governance::new(Some(policy()), audit, Metrics::new()))
}

fn records(g: &Governance, path: &Path) -> Vec<Value> {
    g.audit().close(Duration::from_secs(5));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn call(id: i64, tool: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    ))
}

fn admit(s: &SessionGovernance, who: &Arc<Principal>, body: &Bytes) -> Verdict {
    s.admit(who, "session-1", &Envelope::parse(body).unwrap(), body)
}

#[test]
fn each_call_is_recorded_once_when_it_is_done_however_it_ends() {
    let path = audit_file("calls");
    let g = governance(&path);
    let who = Arc::new(Principal::new("https://issuer", "alice"));
    let s = g.open_session(&who, &SecretSet::default());
    s.started("session-1");

    let Verdict::Forward(Some(mut answered)) = admit(&s, &who, &call(1, "echo")) else {
        panic!("echo is allowed and governed");
    };
    let reply = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
    assert_eq!(
        s.server_message(Some(&mut answered), Kind::Response, reply.clone()),
        Some(reply)
    );
    let Verdict::Forward(Some(unanswered)) = admit(&s, &who, &call(2, "echo")) else {
        panic!("echo is allowed and governed");
    };
    let Verdict::Refuse(refusal) = admit(&s, &who, &call(3, "rm")) else {
        panic!("rm is not permitted");
    };
    assert_eq!(refusal.id, Id::Int(3));
    assert!(!refusal.wants_status());
    s.finished(answered);
    s.finished(unanswered);
    s.ended("deleted", None);

    let seen: Vec<(String, Option<String>, Option<String>)> = records(&g, &path)
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().map(str::to_owned);
            (text("event").unwrap(), text("decision"), text("outcome"))
        })
        .filter(|(event, ..)| event != "audit_closed" && event != "audit_opened")
        .collect();
    let owned = |e: &str, d: Option<&str>, o: Option<&str>| {
        (e.to_owned(), d.map(str::to_owned), o.map(str::to_owned))
    };
    assert_eq!(
        seen,
        vec![
            owned("session_start", None, None),
            owned("denied", Some("not_permitted"), None),
            owned("call", Some("allow"), Some("ok")),
            owned("call", Some("allow"), Some("no_response")),
            owned("session_end", None, None),
        ]
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn injected_credentials_never_pass_and_ungoverned_traffic_is_not_recorded() {
    let path = audit_file("redact");
    let g = governance(&path);
    let who = Arc::new(Principal::anonymous());
    let injected: SecretSet = [crate::credentials::Secret::new("s3cr3t-value")]
        .into_iter()
        .collect();
    let s = g.open_session(&who, &injected);
    let ping = Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#);
    assert!(matches!(admit(&s, &who, &ping), Verdict::Forward(None)));
    let leak = Bytes::from_static(
        br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"s3cr3t-value"}}"#,
    );
    let out = s.server_message(None, Kind::Notification, leak).unwrap();
    assert!(memchr::memmem::find(&out, b"s3cr3t-value").is_none());
    let events: Vec<Value> = records(&g, &path)
        .into_iter()
        .filter(|r| r["event"] == "redaction")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let _ = std::fs::remove_file(&path);
}
