//! JSON-RPC ids and progress tokens read from their JSON text: the same answer as a full JSON
//! parse, and a lossless round trip through `to_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::mcp::Id;
use serde_json::Value;
use serde_json::value::RawValue;

fuzz_target!(|text: &str| {
    let id = Id::from_json_text(text);
    assert_eq!(id, reference(text), "{text:?}");
    if let Some(id) = id {
        let json = id.to_json();
        // Valid JSON (RawValue checks the grammar; a Value would refuse huge integers).
        assert!(serde_json::from_str::<&RawValue>(&json).is_ok(), "{json}");
        assert_eq!(Id::from_json_text(&json).as_ref(), Some(&id), "{json}");
        assert_eq!(id.to_string(), json);
    }
});

/// What the text denotes as a JSON value, restricted to what MCP allows as an id.
fn reference(text: &str) -> Option<Id> {
    // Integers by the JSON grammar: serde_json refuses those beyond f64's range, but they are
    // valid JSON and valid ids.
    let lit = text.trim_matches([' ', '\t', '\n', '\r']);
    let digits = lit.strip_prefix('-').unwrap_or(lit);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        return Some(match lit.parse::<i64>() {
            Ok(i) => Id::Int(i),
            Err(_) => Id::BigInt(lit.into()),
        });
    }
    match serde_json::from_str::<Value>(text).ok()? {
        Value::String(s) => Some(Id::Str(s.into())),
        _ => None,
    }
}
