//! Object keys a server could read differently from the sidecar.
//!
//! The sidecar reads a client message's members by their exact names, as the JSON-RPC and
//! MCP texts spell them. Not every server does: Go's `encoding/json` matches a struct field
//! to any key equal to its name under Unicode case folding (`Method`, `NAME`, `paramſ`, with
//! the Kelvin sign for `k`), and of several such keys the last wins. A message holding
//! `"method":"ping","Method":"tools/call"` is then a ping to the policy and a tool call to the
//! server. So a client message is refused when, in any object, two keys are equal under
//! case folding (exact repeats included: parsers disagree on which one counts), or where a
//! key the sidecar reads is spelled in another case than the protocol's.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a client message is ambiguous, or `None` when every key reads the same to any
/// parser. Text that is not JSON is not ambiguous (the envelope parser refuses it).
pub fn ambiguous_key(message: &[u8]) -> Option<&'static str> {
    let mut de = serde_json::Deserializer::from_slice(message);
    (Walk {
        level: Level::Envelope,
    })
    .deserialize(&mut de)
    .unwrap_or_default()
}

/// The members of the objects the sidecar reads, by where they sit in a message.
#[derive(Clone, Copy)]
enum Level {
    Envelope,
    Params,
    Ref,
    Meta,
    Argument,
    Context,
    Error,
    /// Anything else: only repeats are refused.
    Free,
}

impl Level {
    fn members(self) -> &'static [&'static str] {
        match self {
            Level::Envelope => &["jsonrpc", "id", "method", "params", "result", "error"],
            Level::Params => &[
                "name",
                "arguments",
                "uri",
                "ref",
                "_meta",
                "requestId",
                "reason",
                "cursor",
                "argument",
                "context",
                "level",
                "protocolVersion",
                "capabilities",
                "clientInfo",
                "progressToken",
                "task",
            ],
            Level::Ref => &["type", "name", "uri"],
            Level::Meta => &["progressToken"],
            Level::Argument => &["name", "value"],
            Level::Context => &["arguments"],
            Level::Error => &["code", "message", "data"],
            Level::Free => &[],
        }
    }

    fn child(self, key: &str) -> Level {
        match (self, key) {
            (Level::Envelope, "params") => Level::Params,
            (Level::Envelope, "error") => Level::Error,
            (Level::Params, "ref") => Level::Ref,
            (Level::Params, "_meta") => Level::Meta,
            (Level::Params, "argument") => Level::Argument,
            (Level::Params, "context") => Level::Context,
            _ => Level::Free,
        }
    }
}

/// A key under Unicode case folding, as lenient parsers compare them: upper then lower
/// case maps `ſ` to `s`, the Kelvin sign to `k` and `ς` to `σ`. Borrowed when the key is
/// already folded (lower-case ASCII, as most keys are).
pub fn fold_key(key: &str) -> Cow<'_, str> {
    if key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    Cow::Owned(
        key.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

struct Walk {
    level: Level,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // A batch's items are messages; arrays anywhere else hold free values.
        let level = match self.level {
            Level::Envelope => Level::Envelope,
            _ => Level::Free,
        };
        let mut found = None;
        while let Some(f) = seq.next_element_seed(Walk { level })? {
            found = found.or(f);
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let members = self.level.members();
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut found = None;
        while let Some(key) = map.next_key_seed(Key)? {
            let folded: Cow<'de, str> = match &key {
                Cow::Borrowed(k) => fold_key(k),
                Cow::Owned(k) => Cow::Owned(fold_key(k).into_owned()),
            };
            if seen.contains(&folded) {
                found = found.or(Some("an object holds two keys that differ only in case"));
            }
            // Members are ASCII: folded, they are their lower case.
            if members
                .iter()
                .any(|m| *m != key && m.eq_ignore_ascii_case(&folded))
            {
                found = found.or(Some("a member's name is spelled in another case"));
            }
            let child = self.level.child(&key);
            seen.push(folded);
            found = found.or(map.next_value_seed(Walk { level: child })?);
        }
        Ok(found)
    }
}

/// An object key, borrowed from the message unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(s: &str) -> Option<&'static str> {
        ambiguous_key(s.as_bytes())
    }

    #[test]
    fn messages_as_the_protocol_spells_them_are_not_ambiguous() {
        for ok in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","Text2":"b"},"_meta":{"progressToken":"p"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":"v"},"context":{"arguments":{}}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3,"reason":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":"s1","error":{"code":-1,"message":"m","data":{"Code":1}}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}],"Model":"m"}}"#,
        ] {
            assert_eq!(why(ok), None, "{ok}");
        }
    }

    #[test]
    fn a_member_in_another_case_is_refused_where_the_sidecar_reads_it() {
        for bad in [
            // A ping to the sidecar, a tool call to a case-insensitive server.
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"env","arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Arguments":{"path":"/etc"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"file:///secret"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","Name":"p"}}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"RequestId":3}}"#,
            // Unicode folding: long s and the Kelvin sign.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"env"}}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"_meta\":{\"progressToKen\":\"p\"}}}",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"_meta\":{\"progressTo\u{212a}en\":\"p\"}}}",
            // Escapes decode before comparing.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"N\u0061me":"env"}}"#,
        ] {
            assert!(why(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn two_keys_equal_under_folding_are_refused_in_any_object() {
        for bad in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"path":"/ok","Path":"/etc/shadow"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":{"b":1,"B":2}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"list":[{"k":1,"k":2}]}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"na\u006de":"crash"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{ "a" : [1,{"b":2}] , "c":"}" , "a":null }}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping","Method":"tools/call"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"Action":"accept","action":"decline"}}"#,
        ] {
            assert!(why(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn folding_matches_what_lenient_parsers_equate() {
        assert_eq!(fold_key("paramſ"), "params");
        assert_eq!(fold_key("\u{212a}ey"), "key");
        assert_eq!(fold_key("METHOD"), "method");
        assert_ne!(fold_key("name"), fold_key("nam"));
    }
}
