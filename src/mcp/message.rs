//! Classifying one JSON-RPC message without re-serializing it.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::Id;

/// What a JSON-RPC message is, by the fields it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`: expects a response.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `id` and exactly one of `result` / `error`.
    Response,
}

/// Why bytes are not a single JSON-RPC 2.0 message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Invalid(&'static str),
}

impl ParseError {
    /// The JSON-RPC error code that answers this failure.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Json(_) => super::code::PARSE_ERROR,
            ParseError::Invalid(_) => super::code::INVALID_REQUEST,
        }
    }
}

/// The routing-relevant view of one message; borrows from the message bytes.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub kind: Kind,
    /// The request or response id; `None` for notifications and for responses whose id is
    /// `null` (a peer's answer to a message it could not parse).
    pub id: Option<Id>,
    pub method: Option<Cow<'a, str>>,
    pub params: Option<&'a RawValue>,
    /// For responses: `error` rather than `result`.
    pub is_error: bool,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    // `"id": null` must stay distinguishable from "no id", so the raw value is kept as is.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

impl<'a> Envelope<'a> {
    /// Parses one message. The whole input is validated as JSON (nesting is bounded by
    /// serde_json's recursion limit), duplicate top-level fields are refused, and the shape
    /// must be a JSON-RPC 2.0 request, notification or response with an MCP-valid id.
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, ParseError> {
        // Validating UTF-8 up front covers fields serde would skip without looking.
        let text = std::str::from_utf8(bytes).map_err(|_| ParseError::Json("not UTF-8".into()))?;
        // serde fills a struct from an array by position; a message is an object.
        if first_non_whitespace(bytes) == Some(b'[')
            && serde_json::from_str::<IgnoredAny>(text).is_ok()
        {
            return Err(ParseError::Invalid(
                "expected a JSON object with JSON-RPC fields",
            ));
        }
        let wire: Wire<'a> = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                ParseError::Invalid("expected a JSON object with JSON-RPC fields")
            } else {
                ParseError::Json(e.to_string())
            }
        })?;
        if wire.jsonrpc.as_deref() != Some("2.0") {
            return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let id_text = wire.id.map(RawValue::get);
        match (&wire.method, wire.result, wire.error) {
            (Some(_), None, None) => {
                let id = match id_text {
                    None => None,
                    Some(text) => Some(
                        Id::from_json_text(text)
                            .ok_or(ParseError::Invalid("id must be a string or an integer"))?,
                    ),
                };
                if let Some(params) = wire.params {
                    let first = first_non_whitespace(params.get().as_bytes());
                    if first != Some(b'{') && first != Some(b'[') {
                        return Err(ParseError::Invalid("params must be an object or array"));
                    }
                }
                Ok(Envelope {
                    kind: if id.is_some() {
                        Kind::Request
                    } else {
                        Kind::Notification
                    },
                    id,
                    method: wire.method,
                    params: wire.params,
                    is_error: false,
                })
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                let text = id_text.ok_or(ParseError::Invalid("a response needs an id"))?;
                let id = if text == "null" {
                    None
                } else {
                    Some(
                        Id::from_json_text(text)
                            .ok_or(ParseError::Invalid("id must be a string or an integer"))?,
                    )
                };
                Ok(Envelope {
                    kind: Kind::Response,
                    id,
                    method: None,
                    params: None,
                    is_error: wire.error.is_some(),
                })
            }
            (Some(_), _, _) => Err(ParseError::Invalid(
                "a request cannot carry result or error",
            )),
            (None, Some(_), Some(_)) => Err(ParseError::Invalid("both result and error")),
            (None, None, None) => Err(ParseError::Invalid("neither method nor result nor error")),
        }
    }
}

/// Deepest nesting of arrays and objects a client may send. serde_json skips unknown and raw
/// values without a depth limit, and a deeply nested message could exhaust the stack of the
/// server it reaches, so the bridge checks depth itself.
pub const MAX_DEPTH: usize = 128;

/// Whether `bytes` nests arrays/objects deeper than `max`. Strings are skipped with memchr;
/// malformed input is left for the parser to refuse.
pub fn too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        Some(p) if bytes[i + p] == b'\\' => i += p + 2,
                        Some(p) => {
                            i += p + 1;
                            break;
                        }
                        None => return false,
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Whether JSON text holds a `\uXXXX` escape of a UTF-16 surrogate that is not half of a
/// pair (`"\ud800"`). JSON's grammar allows it, but it denotes no Unicode text: strict
/// parsers refuse the string, others replace or drop it, so two readers of the message
/// would disagree on what it says. Expects text that is otherwise valid JSON, where every
/// backslash starts an escape inside a string.
pub fn has_lone_surrogate(json: &[u8]) -> bool {
    let hex = |at: usize| -> Option<u16> {
        let digits = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &json[i.min(json.len())..]) {
        let at = i + p;
        if json.get(at + 1) != Some(&b'u') {
            i = at + 2;
            continue;
        }
        match hex(at + 2) {
            Some(0xD800..=0xDBFF) => {
                let low = (json.get(at + 6..at + 8) == Some(b"\\u"))
                    .then(|| hex(at + 8))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return true;
                }
                i = at + 12;
            }
            Some(0xDC00..=0xDFFF) => return true,
            _ => i = at + 6,
        }
    }
    false
}

/// The first byte that is not JSON whitespace.
pub fn first_non_whitespace(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// The progress token of a request (`params._meta.progressToken`), if it has one.
///
/// Cheap when absent: a substring search rules most messages out before any parsing.
pub fn progress_token(params: Option<&RawValue>) -> Option<Id> {
    let params = params?;
    memchr::memmem::find(params.get().as_bytes(), b"progressToken")?;
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a RawValue>,
    }
    let p: Params<'_> = from_object(params.get())?;
    // Requests carry the token in `_meta`; `notifications/progress` carries it at the top.
    // `_meta` is read as an object too: serde would fill `Meta` from an array by position.
    let meta = p.meta.and_then(|m| from_object::<Meta<'_>>(m.get()));
    let raw = meta.and_then(|m| m.token).or(p.token)?;
    Id::from_raw(raw)
}

/// The `requestId` of a `notifications/cancelled`.
pub fn request_id_of_cancel(params: Option<&RawValue>) -> Option<Id> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "requestId")]
        request_id: Option<&'a RawValue>,
    }
    let p: Params<'_> = from_object(params?.get())?;
    Id::from_raw(p.request_id?)
}

/// Reads a struct from JSON text that is an object. serde's derived structs also accept an
/// array and fill their fields by position (`[0]` has a `requestId` of 0), which no peer
/// means: every struct read from a peer's bytes goes through here.
pub fn from_object<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    if first_non_whitespace(text.as_bytes()) != Some(b'{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The raw text of a top-level key's value in a JSON object, found by skipping the other
/// values without parsing them: cheap even when an argument is large.
pub fn top_level_raw<'a>(object: &'a str, key: &str) -> Option<&'a str> {
    object.get(top_level_span(object.as_bytes(), key)?)
}

/// Where a top-level key's value is in the bytes of a JSON object (the first such key:
/// callers refuse repeated keys).
fn top_level_span(bytes: &[u8], key: &str) -> Option<std::ops::Range<usize>> {
    let mut scanner = Scanner { bytes, pos: 0 };
    scanner.ws();
    scanner.eat(b'{')?;
    loop {
        scanner.ws();
        let (ks, ke) = scanner.string_span()?;
        scanner.ws();
        scanner.eat(b':')?;
        scanner.ws();
        let start = scanner.pos;
        scanner.skip_value()?;
        if key_text(std::str::from_utf8(bytes.get(ks..ke)?).ok()?) == key {
            return Some(start..scanner.pos);
        }
        scanner.ws();
        scanner.eat(b',')?;
    }
}

/// The message with its top-level `id` replaced by `id`; every other byte is kept. `None`
/// when the message has no top-level `id`. For a message whose envelope parsed, so its
/// `id` is not repeated.
pub fn replace_id(message: &[u8], id: &Id) -> Option<Vec<u8>> {
    let span = top_level_span(message, "id")?;
    let id = id.to_json();
    let mut out = Vec::with_capacity(message.len() + id.len());
    out.extend_from_slice(&message[..span.start]);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&message[span.end..]);
    Some(out)
}

/// A key's value from the raw text between its quotes: `"na\u006de"` is the key `name`.
fn key_text(raw: &str) -> Cow<'_, str> {
    if raw.contains('\\')
        && let Ok(s) = serde_json::from_str::<String>(&format!("\"{raw}\""))
    {
        return Cow::Owned(s);
    }
    Cow::Borrowed(raw)
}

/// The string value of a top-level key of a JSON object (e.g. `params.name` of `tools/call`).
pub fn top_level_str<'a>(object: &'a RawValue, key: &str) -> Option<Cow<'a, str>> {
    json_str(top_level_raw(object.get(), key)?)
}

/// A JSON string's value from its raw text (with quotes); `None` for other values.
pub fn json_str(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// `params._meta.<key>` as a string, if present.
pub fn meta_str<'a>(params: Option<&'a RawValue>, key: &str) -> Option<Cow<'a, str>> {
    let meta = top_level_raw(params?.get(), "_meta")?;
    json_str(top_level_raw(meta, key)?)
}

/// The message with `params._meta.<key>` set to the string `value` (creating `params` and
/// `_meta` as needed). Re-serializes the message, so it is only for messages that must change.
pub fn with_meta(message: &[u8], key: &str, value: &str) -> Option<Vec<u8>> {
    // Every other value is carried as the text it came as (numbers of any size, strings as
    // escaped): only the objects on the way to `_meta` are taken apart.
    type Object = std::collections::BTreeMap<String, Box<RawValue>>;
    fn raw(v: &impl serde::Serialize) -> Option<Box<RawValue>> {
        RawValue::from_string(serde_json::to_string(v).ok()?).ok()
    }
    let mut msg: Object = serde_json::from_slice(message).ok()?;
    let mut params: Object = match msg.get("params") {
        Some(p) => serde_json::from_str(p.get()).ok()?,
        None => Object::new(),
    };
    let mut meta: Object = match params.get("_meta") {
        Some(m) => serde_json::from_str(m.get()).ok()?,
        None => Object::new(),
    };
    meta.insert(key.to_owned(), raw(&value)?);
    params.insert("_meta".to_owned(), raw(&meta)?);
    msg.insert("params".to_owned(), raw(&params)?);
    serde_json::to_vec(&msg).ok()
}

/// A `notifications/cancelled` with `params.requestId` set to `id`. Re-serializes the
/// message, so it is only for messages that must change.
pub fn with_request_id(message: &[u8], id: &Id) -> Option<Vec<u8>> {
    let mut msg: serde_json::Value = serde_json::from_slice(message).ok()?;
    let params = msg.get_mut("params")?.as_object_mut()?;
    params.insert(
        "requestId".to_owned(),
        serde_json::from_str(&id.to_json()).ok()?,
    );
    serde_json::to_vec(&msg).ok()
}

/// A JSON-RPC error response, serialized. `id: None` gives `"id": null`.
pub fn error_response(id: Option<&Id>, code: i64, message: &str) -> Vec<u8> {
    let id = id.map_or_else(|| "null".to_owned(), Id::to_json);
    let message = serde_json::Value::from(message).to_string();
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#)
        .into_bytes()
}

/// Best-effort: the top-level `id` of a message of which only a prefix is known (an
/// oversized line that is being discarded), so its waiter can be failed at once instead of
/// timing out. Returns `None` whenever the prefix does not make the id certain.
pub fn peek_id(prefix: &[u8]) -> Option<Id> {
    let mut scanner = Scanner {
        bytes: prefix,
        pos: 0,
    };
    scanner.ws();
    scanner.eat(b'{')?;
    loop {
        scanner.ws();
        let key = scanner.string_span()?;
        scanner.ws();
        scanner.eat(b':')?;
        scanner.ws();
        if &prefix[key.0..key.1] == b"id" {
            let start = scanner.pos;
            scanner.skip_value()?;
            let text = std::str::from_utf8(&prefix[start..scanner.pos]).ok()?;
            // The value must be followed by a delimiter we saw, or the number may be cut.
            scanner.ws();
            let next = *prefix.get(scanner.pos)?;
            if next != b',' && next != b'}' {
                return None;
            }
            return Id::from_json_text(text);
        }
        scanner.skip_value()?;
        scanner.ws();
        scanner.eat(b',')?;
    }
}

/// A tiny JSON skipper for [`peek_id`]; it never allocates and never recurses.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.bytes.get(self.pos) == Some(&b)).then(|| self.pos += 1)
    }

    /// Span of a string's contents (without quotes); the cursor ends after the closing quote.
    fn string_span(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            let rel = memchr::memchr2(b'"', b'\\', self.bytes.get(self.pos..)?)?;
            self.pos += rel;
            if self.bytes[self.pos] == b'\\' {
                self.pos += 2;
            } else {
                let end = self.pos;
                self.pos += 1;
                return Some((start, end));
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            self.ws();
            match *self.bytes.get(self.pos)? {
                b'"' => {
                    self.string_span()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                    continue;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    self.pos += 1;
                }
                b',' | b':' if depth > 0 => {
                    self.pos += 1;
                    continue;
                }
                _ => {
                    let start = self.pos;
                    while let Some(b) = self.bytes.get(self.pos) {
                        if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':') {
                            break;
                        }
                        self.pos += 1;
                    }
                    if self.pos == start {
                        return None;
                    }
                }
            }
            if depth == 0 {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Envelope<'_>, ParseError> {
        Envelope::parse(s.as_bytes())
    }

    #[test]
    fn classifies_requests_notifications_responses() {
        let r = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(
            (r.kind, r.id, r.method.as_deref()),
            (Kind::Request, Some(Id::Int(1)), Some("tools/list"))
        );
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind, Kind::Notification);
        let ok = parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(
            (ok.kind, ok.id, ok.is_error),
            (Kind::Response, Some(Id::Str("a".into())), false)
        );
        let err =
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert_eq!(
            (err.kind, err.id, err.is_error),
            (Kind::Response, None, true)
        );
    }

    #[test]
    fn refuses_what_is_not_one_jsonrpc_message() {
        for bad in [
            "",
            "not json",
            "[]",
            "[1]",
            "42",
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            r#"{"jsonrpc":"2.0","result":1}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"x"} trailing"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn deep_nesting_is_detected_without_recursion() {
        let nest = |n: usize| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(too_deep(nest(100_000).as_bytes(), MAX_DEPTH));
        assert!(!too_deep(nest(100).as_bytes(), MAX_DEPTH));
        // Brackets inside strings (and escaped quotes) do not count.
        let s = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(!too_deep(s.as_bytes(), MAX_DEPTH));
        assert!(!too_deep(br#"{"unterminated":"#, MAX_DEPTH));
        assert!(!too_deep(br#"{"a":"\"#, MAX_DEPTH));
    }

    #[test]
    fn progress_tokens_from_requests_and_notifications() {
        let r = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p1"}}}"#).unwrap();
        assert_eq!(progress_token(r.params), Some(Id::Str("p1".into())));
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1}}"#).unwrap();
        assert_eq!(progress_token(n.params), Some(Id::Int(7)));
        let none = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#)
            .unwrap();
        assert_eq!(progress_token(none.params), None);
    }

    #[test]
    fn cancel_request_id() {
        let n = parse(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r9","reason":"x"}}"#).unwrap();
        assert_eq!(request_id_of_cancel(n.params), Some(Id::Str("r9".into())));
    }

    #[test]
    fn fields_are_read_from_objects_only() {
        let nested = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":["p1"]}}"#,
        )
        .unwrap();
        assert_eq!(progress_token(nested.params), None);
        // serde fills a struct from a JSON array by position: `[0]` would be a `requestId`
        // of 0, `["2.0",1,"tools/list"]` a request. Neither is what a peer sent.
        let n =
            parse(r#"{"jsonrpc":"2\u002e0","id":6922337207,"method":"tools\/list","params":[0]}"#)
                .unwrap();
        assert_eq!(request_id_of_cancel(n.params), None);
        let n = parse(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":[{"progressToken":1}]}"#,
        )
        .unwrap();
        assert_eq!(progress_token(n.params), None);
        for array in [
            r#"["2.0",1,"tools/list"]"#,
            r#"["2.0",1,null,null,{}]"#,
            r#" ["2.0",null,"notifications/initialized"]"#,
        ] {
            assert!(parse(array).is_err(), "accepted {array}");
        }
    }

    #[test]
    fn ids_are_replaced_and_nothing_else_changes() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":"client-7","method":"tools/call","params":{"id":1}}"#,
                r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"id":1}}"#,
            ),
            (
                r#"{"result":{"id":"x","s":"\"id\":"} , "i\u0064" : 42 ,"jsonrpc":"2.0"}"#,
                r#"{"result":{"id":"x","s":"\"id\":"} , "i\u0064" : 42 ,"jsonrpc":"2.0"}"#,
            ),
        ];
        for (before, after) in cases {
            assert_eq!(
                replace_id(before.as_bytes(), &Id::Int(42)).as_deref(),
                Some(after.as_bytes()),
                "{before}"
            );
        }
        let back = replace_id(cases[0].1.as_bytes(), &Id::Str("q\"".into())).unwrap();
        assert_eq!(
            Envelope::parse(&back).unwrap().id,
            Some(Id::Str("q\"".into()))
        );
        assert_eq!(
            replace_id(br#"{"jsonrpc":"2.0","method":"x"}"#, &Id::Int(1)),
            None
        );
    }

    #[test]
    fn lone_surrogates_are_found_and_pairs_are_not() {
        for lone in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"x\uDBFFy"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\ud800\ud800\udc00"}"#,
            r#"{"\ud83d":1}"#,
            r#"{"a":"\\\ud800"}"#,
            r#"{"a":"\ud83d"#,
        ] {
            assert!(has_lone_surrogate(lone.as_bytes()), "{lone}");
        }
        for fine in [
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\\ud800"}"#,
            r#"{"a":"\u00e9\n\"\\"}"#,
            r#"{"a":"ud800"}"#,
            "{}",
        ] {
            assert!(!has_lone_surrogate(fine.as_bytes()), "{fine}");
        }
    }

    #[test]
    fn error_responses_are_valid_messages() {
        let bytes = error_response(Some(&Id::Str("q\"".into())), -32001, "timed \"out\"");
        let e = Envelope::parse(&bytes).unwrap();
        assert_eq!(
            (e.kind, e.id, e.is_error),
            (Kind::Response, Some(Id::Str("q\"".into())), true)
        );
        let bytes = error_response(None, -32700, "bad");
        assert_eq!(Envelope::parse(&bytes).unwrap().id, None);
    }

    #[test]
    fn top_level_strings_skip_large_values() {
        let p = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        let big = format!(
            r#"{{"arguments":{{"x":"{}","name":"inner"}},"name":"echo"}}"#,
            "a".repeat(100_000)
        );
        assert_eq!(top_level_str(&p(&big), "name").as_deref(), Some("echo"));
        assert_eq!(
            top_level_str(&p(r#"{"name":"caf\u00e9"}"#), "name").as_deref(),
            Some("café")
        );
        assert_eq!(top_level_str(&p(r#"{"name":3}"#), "name"), None);
        assert_eq!(top_level_str(&p(r#"{"other":"x"}"#), "name"), None);
        assert_eq!(top_level_str(&p(r#"["name"]"#), "name"), None);
        // Keys are compared by value, as every JSON parser reads them.
        assert_eq!(
            top_level_str(&p(r#"{"na\u006de":"crash"}"#), "name").as_deref(),
            Some("crash")
        );
    }

    #[test]
    fn meta_is_read_cheaply_and_written_completely() {
        let p = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        let params = p(r#"{"name":"x","_meta":{"progressToken":1,"traceparent":"00-ab"}}"#);
        assert_eq!(
            meta_str(Some(&params), "traceparent").as_deref(),
            Some("00-ab")
        );
        assert_eq!(meta_str(Some(&p(r#"{"name":"x"}"#)), "traceparent"), None);
        let out = with_meta(
            br#"{"jsonrpc":"2.0","id":1,"method":"m"}"#,
            "traceparent",
            "tp",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["params"]["_meta"]["traceparent"], "tp");
        // Numbers beyond 64 bits and escapes reach the server as they were written.
        let big = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":123456789012345678901234567890,"s":"\u00e9"}}}"#;
        let out = String::from_utf8(with_meta(big, "traceparent", "t").unwrap()).unwrap();
        assert!(
            out.contains(r#""n":123456789012345678901234567890"#),
            "{out}"
        );
        assert!(out.contains(r#""s":"\u00e9""#), "{out}");
        let out = with_meta(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"traceparent":"old","k":1}}}"#, "traceparent", "new").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (
                v["params"]["_meta"]["traceparent"].as_str(),
                v["params"]["_meta"]["k"].as_i64()
            ),
            (Some("new"), Some(1))
        );
    }

    #[test]
    fn peek_id_reads_the_id_of_a_truncated_message() {
        assert_eq!(
            peek_id(br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"text":"aaaa"#),
            Some(Id::Int(42))
        );
        assert_eq!(
            peek_id(br#"{"result":{"a":[1,{"b":"}"}]},"id":"x","jsonrpc":"2.0"}"#),
            Some(Id::Str("x".into()))
        );
        assert_eq!(
            peek_id(br#"{"jsonrpc":"2.0","id":4"#),
            None,
            "a number cut short is not certain"
        );
        assert_eq!(
            peek_id(br#"{"jsonrpc":"2.0","result":{"big":"xxxxxxxx"#),
            None
        );
        assert_eq!(peek_id(b"garbage"), None);
    }
}
