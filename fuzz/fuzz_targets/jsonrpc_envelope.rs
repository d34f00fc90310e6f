//! A client's POST body, or one line of a server's stdout: the nesting check, batch split and
//! JSON-RPC classification, checked against serde_json's reading of the same bytes.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::fmt;

use libfuzzer_sys::fuzz_target;
use mcp_warden::mcp::{self, Envelope, Id, Kind};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    check_depth(data);
    // As the HTTP layer does: a body starting with `[` is a batch of messages.
    if mcp::first_non_whitespace(data) == Some(b'[')
        && let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(data)
    {
        for item in items {
            check_message(item.get().as_bytes());
        }
    }
    check_message(data);
});

/// `too_deep` must agree with the real nesting of any valid JSON text.
fn check_depth(data: &[u8]) {
    let Ok(Depth(depth)) = serde_json::from_slice::<Depth>(data) else {
        let _ = mcp::too_deep(data, mcp::MAX_DEPTH);
        return;
    };
    for max in [
        0,
        1,
        2,
        depth.saturating_sub(1),
        depth,
        depth + 1,
        mcp::MAX_DEPTH,
    ] {
        assert_eq!(
            mcp::too_deep(data, max),
            depth > max,
            "nesting {depth}, limit {max}"
        );
    }
}

/// The nesting of a JSON text, every value counted (a `Value` keeps only the last of
/// duplicate keys).
struct Depth(usize);

impl<'de> Deserialize<'de> for Depth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Depth, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Depth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Depth, E> {
                Ok(Depth(0))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Depth, E> {
                Ok(Depth(0))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Depth, E> {
                Ok(Depth(0))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Depth, E> {
                Ok(Depth(0))
            }
            fn visit_str<E>(self, _: &str) -> Result<Depth, E> {
                Ok(Depth(0))
            }
            fn visit_unit<E>(self) -> Result<Depth, E> {
                Ok(Depth(0))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Depth, A::Error> {
                let mut max = 0;
                while let Some(Depth(d)) = seq.next_element()? {
                    max = max.max(d);
                }
                Ok(Depth(max + 1))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Depth, A::Error> {
                let mut max = 0;
                while let Some((IgnoredAny, Depth(d))) = map.next_entry()? {
                    max = max.max(d);
                }
                Ok(Depth(max + 1))
            }
        }
        d.deserialize_any(V)
    }
}

fn check_message(bytes: &[u8]) {
    let parsed = Envelope::parse(bytes);
    // The JSON grammar; a `Value` also refuses numbers beyond f64 and nesting beyond 128.
    let grammar =
        std::str::from_utf8(bytes).is_ok_and(|t| serde_json::from_str::<IgnoredAny>(t).is_ok());
    let value = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(t).ok());
    // A lone surrogate escape is the only thing the grammar allows that no string holds.
    if grammar && mcp::has_lone_surrogate(bytes) {
        assert!(
            value.is_none(),
            "a lone surrogate found in text serde_json decodes"
        );
    }
    if value.is_some() {
        assert!(
            !mcp::has_lone_surrogate(bytes),
            "a lone surrogate where there is none"
        );
    }
    match parsed {
        Ok(env) => {
            assert!(grammar, "accepted bytes that are not JSON");
            if let Some(value) = &value {
                agrees(&env, value, bytes);
            }
            followers(&env);
            replaced(&env, bytes);
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
            if let Some(Value::Object(o)) = &value
                && reference_kind(o, raw_field(bytes, &["id"]).as_deref()).is_some()
            {
                assert!(
                    duplicate_top_level_key(bytes),
                    "refused a valid message: {e}"
                );
            }
        }
    }
}

/// The envelope says what serde_json's full parse says.
fn agrees(env: &Envelope<'_>, value: &Value, bytes: &[u8]) {
    let Value::Object(o) = value else {
        panic!("accepted a non-object");
    };
    let id_text = raw_field(bytes, &["id"]);
    assert_eq!(
        Some(env.kind),
        reference_kind(o, id_text.as_deref()),
        "kind"
    );
    let want_id = match o.get("id") {
        None | Some(Value::Null) => None,
        Some(_) => reference_id(id_text.as_deref().expect("a raw id")),
    };
    assert_eq!(env.id, want_id, "id");
    assert_eq!(
        env.method.as_deref(),
        o.get("method").and_then(Value::as_str),
        "method"
    );
    assert_eq!(env.is_error, o.contains_key("error"), "is_error");
    if env.kind != Kind::Response {
        let params = env
            .params
            .map(|p| serde_json::from_str::<Value>(p.get()).expect("params are JSON"));
        assert_eq!(params.as_ref(), o.get("params"), "params");
    }
}

/// The token/request id helpers only ever return what the params really carry.
fn followers(env: &Envelope<'_>) {
    let field = |path: &[&str]| reference_id(&raw_field(env.params?.get().as_bytes(), path)?);
    if let Some(token) = mcp::progress_token(env.params) {
        assert!(
            field(&["_meta", "progressToken"]) == Some(token.clone())
                || field(&["progressToken"]) == Some(token),
            "progress token not in the params"
        );
    }
    if let Some(id) = mcp::request_id_of_cancel(env.params) {
        assert_eq!(field(&["requestId"]), Some(id), "requestId");
    }
    // The bridge answers any request id with an error response the client must read back.
    if let Some(id) = &env.id {
        let reply = mcp::error_response(Some(id), mcp::code::INTERNAL_ERROR, "x\"\n\u{1}");
        let back = Envelope::parse(&reply).expect("error responses parse");
        assert_eq!(back.id.as_ref(), Some(id));
        assert!(back.is_error && back.kind == Kind::Response);
    }
}

/// A message with another id is the same message: only the id differs.
fn replaced(env: &Envelope<'_>, bytes: &[u8]) {
    let Some(id) = &env.id else {
        return;
    };
    let ours = Id::Int(-7);
    let swapped = mcp::replace_id(bytes, &ours).expect("a message with an id");
    let back = Envelope::parse(&swapped).expect("still a message");
    assert_eq!(back.id.as_ref(), Some(&ours));
    assert_eq!((back.kind, &back.method), (env.kind, &env.method));
    let restored = mcp::replace_id(&swapped, id).expect("the id is still there");
    assert_eq!(
        Envelope::parse(&restored).expect("a message").id.as_ref(),
        Some(id)
    );
    if mcp::first_non_whitespace(bytes) == Some(b'{') && !bytes.contains(&b'\\') {
        // Every byte but the id's is kept.
        let kept = swapped.len() - ours.to_json().len();
        assert_eq!(
            kept,
            bytes.len() - raw_id_len(bytes),
            "bytes besides the id changed"
        );
    }
}

/// The length of the raw text of the top-level id.
fn raw_id_len(bytes: &[u8]) -> usize {
    raw_field(bytes, &["id"]).map_or(0, |t| t.len())
}

/// JSON-RPC 2.0 as MCP restricts it, written from the spec over a parsed value.
fn reference_kind(o: &Map<String, Value>, id_text: Option<&str>) -> Option<Kind> {
    if o.get("jsonrpc")? != "2.0" {
        return None;
    }
    // serde reads `"method": null` as no method, like an absent optional field.
    let method = match o.get("method") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m),
        Some(_) => return None,
    };
    let (result, error) = (o.contains_key("result"), o.contains_key("error"));
    let valid_id = |_: &Value| id_text.is_some_and(|t| reference_id(t).is_some());
    match (method, result, error) {
        (Some(_), false, false) => {
            if let Some(p) = o.get("params")
                && !(p.is_object() || p.is_array())
            {
                return None;
            }
            match o.get("id") {
                None => Some(Kind::Notification),
                Some(id) if valid_id(id) => Some(Kind::Request),
                Some(_) => None,
            }
        }
        (None, true, false) | (None, false, true) => match o.get("id")? {
            Value::Null => Some(Kind::Response),
            id if valid_id(id) => Some(Kind::Response),
            _ => None,
        },
        _ => None,
    }
}

/// The id a JSON value's text denotes: a string, or an integer by the JSON grammar
/// (serde_json reads integers beyond u64 as floats, or refuses them beyond f64).
fn reference_id(text: &str) -> Option<Id> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(match text.parse::<i64>() {
            Ok(i) => Id::Int(i),
            Err(_) => Id::BigInt(text.into()),
        });
    }
    match serde_json::from_str::<Value>(text).ok()? {
        Value::String(s) => Some(Id::Str(s.into())),
        _ => None,
    }
}

/// The raw text of a field, following `path` through nested objects.
fn raw_field(bytes: &[u8], path: &[&str]) -> Option<String> {
    let mut text = std::str::from_utf8(bytes).ok()?.to_owned();
    for key in path {
        let fields: HashMap<String, Box<RawValue>> = serde_json::from_str(&text).ok()?;
        text = fields.get(*key)?.get().to_owned();
    }
    Some(text)
}

fn duplicate_top_level_key(bytes: &[u8]) -> bool {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut seen = HashSet::new();
            let mut dup = false;
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                dup |= !seen.insert(k);
            }
            Ok(dup)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(Keys).unwrap_or(false)
}
