//! JSON-RPC request ids and progress tokens in a canonical, hashable form.

use std::fmt;

use serde_json::value::RawValue;

/// A JSON-RPC id or an MCP progress token: a string or an integer (never null, never a float).
///
/// Two ids are equal when they denote the same JSON value, whatever escaping or the
/// integer's width: a server that re-serializes `"\u0061"` as `"a"` is still answering `"a"`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer outside `i64`, kept as its decimal digits.
    BigInt(Box<str>),
    /// A string, unescaped.
    Str(Box<str>),
}

impl Id {
    /// Reads an id from its raw JSON text. Returns `None` for `null`, floats, booleans,
    /// objects and arrays, which MCP does not allow as ids.
    pub fn from_raw(raw: &RawValue) -> Option<Id> {
        Self::from_json_text(raw.get())
    }

    /// Reads an id from a JSON value's text (no surrounding whitespace expected). Text that
    /// is not valid JSON is no id, so an id read from a message prefix is never a guess.
    pub fn from_json_text(text: &str) -> Option<Id> {
        let text = text.trim_matches([' ', '\t', '\n', '\r']);
        match text.as_bytes().first()? {
            b'"' => {
                // Fast path: no escapes, the id is the text between the quotes. Raw control
                // characters are not allowed in a JSON string: serde_json refuses them.
                let inner = text.get(1..text.len().checked_sub(1)?)?;
                if text.len() >= 2
                    && text.ends_with('"')
                    && inner.bytes().all(|b| b >= 0x20 && b != b'\\' && b != b'"')
                {
                    return Some(Id::Str(inner.into()));
                }
                serde_json::from_str::<String>(text)
                    .ok()
                    .map(|s| Id::Str(s.into_boxed_str()))
            }
            b'-' | b'0'..=b'9' => {
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None; // floats and exponents are not ids
                }
                if digits.len() > 1 && digits.starts_with('0') {
                    return None; // not valid JSON
                }
                match text.parse::<i64>() {
                    Ok(n) => Some(Id::Int(n)),
                    Err(_) => Some(Id::BigInt(text.into())),
                }
            }
            _ => None,
        }
    }

    /// The id as JSON text, ready to splice into a message.
    /// The id as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Id::Int(n) => (*n).into(),
            // Digits beyond i64 are a JSON number all the same.
            Id::BigInt(s) => serde_json::from_str(s).unwrap_or_else(|_| (&**s).into()),
            Id::Str(s) => (&**s).into(),
        }
    }

    pub fn to_json(&self) -> String {
        match self {
            Id::Int(n) => n.to_string(),
            Id::BigInt(s) => s.to_string(),
            Id::Str(s) => serde_json::Value::from(&**s).to_string(),
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_strings_are_ids() {
        assert_eq!(Id::from_json_text("1"), Some(Id::Int(1)));
        assert_eq!(Id::from_json_text("-7"), Some(Id::Int(-7)));
        assert_eq!(Id::from_json_text("\"a\""), Some(Id::Str("a".into())));
        assert_eq!(
            Id::from_json_text("99999999999999999999999"),
            Some(Id::BigInt("99999999999999999999999".into()))
        );
    }

    #[test]
    fn escaped_strings_compare_by_value() {
        assert_eq!(
            Id::from_json_text(r#""\u0061""#),
            Id::from_json_text(r#""a""#)
        );
        assert_eq!(
            Id::from_json_text(r#""q\"x""#),
            Some(Id::Str("q\"x".into()))
        );
    }

    #[test]
    fn null_float_bool_object_are_not_ids() {
        for text in [
            "null", "1.5", "1e3", "true", "{}", "[]", "", "-", "01", "\"open",
        ] {
            assert_eq!(Id::from_json_text(text), None, "{text}");
        }
    }

    #[test]
    fn only_valid_json_text_is_an_id() {
        // Form feed is not JSON whitespace; raw control characters cannot be in a string.
        for text in ["\u{c}4", "4\u{c}", "\"a\u{1}\"", "\"tab\there\"", "\"\n\""] {
            assert_eq!(Id::from_json_text(text), None, "{text:?}");
        }
        assert_eq!(Id::from_json_text(" \t\r\n4"), Some(Id::Int(4)));
    }

    #[test]
    fn round_trips_to_json() {
        for text in ["1", "-3", "\"x\"", "\"q\\\"x\"", "123456789012345678901234"] {
            let id = Id::from_json_text(text).unwrap();
            assert_eq!(Id::from_json_text(&id.to_json()), Some(id));
        }
    }
}
