//! The 2026-07-28 (sessionless) protocol era, as far as a gateway to a session-era server
//! needs it: recognizing a modern request, the validation ladder its envelope and routing
//! headers go through, `server/discover` answered from the server's `initialize` result, and
//! the translation of the server's answers (`resultType`, caching hints, error codes); and for
//! a server that speaks the era itself, only the renaming of ids and progress tokens. Pure:
//! bytes and values in, bytes and values out.

use serde_json::{Map, Value};

use super::Id;

/// The one sessionless version this gateway speaks.
pub const VERSION: &str = "2026-07-28";

/// `_meta` keys of the per-request envelope.
pub mod meta {
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    /// The prefix of every key the envelope defines: none of them is for the server.
    pub const PREFIX: &str = "io.modelcontextprotocol/";
}

/// Error codes of the era (schema `HEADER_MISMATCH`, `UNSUPPORTED_PROTOCOL_VERSION`).
pub mod code {
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// The first and last code of the range the specification reserves for itself.
    pub const RESERVED_FIRST: i64 = -32099;
    pub const RESERVED_LAST: i64 = -32020;
    /// Session-era "resource not found", which this era spells as invalid params.
    pub const RESOURCE_NOT_FOUND_2025: i64 = -32002;
}

/// Methods of the session era that this one removed: a modern caller sending one gets
/// "method not found".
pub const REMOVED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Results that carry caching hints (`ttlMs`, `cacheScope`).
const CACHEABLE: &[&str] = &[
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Methods whose `Mcp-Name` header mirrors a body field, and that field.
fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// What the routing headers of a POST say.
#[derive(Debug, Default, Clone, Copy)]
pub struct Headers<'a> {
    pub protocol_version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Why a modern request is refused before it reaches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The envelope lacks a required field, or a field has the wrong type (-32602).
    Envelope(&'static str),
    /// A routing header is missing, malformed, or disagrees with the body (-32020).
    HeaderMismatch(&'static str),
    /// A version this gateway does not speak (-32022, listing ours).
    UnsupportedVersion(String),
}

impl Refusal {
    pub fn code(&self) -> i64 {
        match self {
            Refusal::Envelope(_) => super::code::INVALID_PARAMS,
            Refusal::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Refusal::UnsupportedVersion(_) => code::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }

    /// The JSON-RPC error answering request `id`.
    pub fn to_error(&self, id: Option<&Id>, supported: &[&str]) -> Vec<u8> {
        let (message, data) = match self {
            Refusal::Envelope(why) => (format!("Invalid params: {why}"), None),
            Refusal::HeaderMismatch(why) => (format!("Header mismatch: {why}"), None),
            Refusal::UnsupportedVersion(requested) => (
                "Unsupported protocol version".to_owned(),
                Some(serde_json::json!({ "supported": supported, "requested": requested })),
            ),
        };
        let mut error = Map::new();
        error.insert("code".into(), self.code().into());
        error.insert("message".into(), message.into());
        if let Some(d) = data {
            error.insert("data".into(), d);
        }
        response(id, "error", Value::Object(error))
    }
}

/// Whether a request belongs to the modern era: its `MCP-Protocol-Version` header names a
/// version of this era or later, or (without the header) its `_meta` carries the envelope's
/// protocol version.
pub fn is_modern(header_version: Option<&str>, params: Option<&Value>) -> bool {
    match header_version {
        Some(v) => super::ProtocolVersion::is_modern_era(v),
        None => params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(meta::PROTOCOL_VERSION))
            .is_some(),
    }
}

/// The validation ladder of a modern request; the first failure wins: the envelope's
/// required fields, then each routing header against the body, then the version.
pub fn check(method: &str, params: Option<&Value>, headers: Headers<'_>) -> Result<(), Refusal> {
    let meta = params
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .ok_or(Refusal::Envelope("_meta is required"))?;
    let version = meta
        .get(meta::PROTOCOL_VERSION)
        .ok_or(Refusal::Envelope("_meta lacks the protocol version"))?;
    if !meta
        .get(meta::CLIENT_CAPABILITIES)
        .is_some_and(Value::is_object)
    {
        return Err(Refusal::Envelope("_meta lacks the client capabilities"));
    }
    let version_text = version.as_str();
    match headers.protocol_version {
        None => return Err(Refusal::HeaderMismatch("MCP-Protocol-Version is required")),
        Some(h) if Some(h) != version_text => {
            return Err(Refusal::HeaderMismatch(
                "MCP-Protocol-Version does not match the envelope's protocol version",
            ));
        }
        Some(_) => {}
    }
    if headers.method != Some(method) {
        return Err(Refusal::HeaderMismatch(
            "Mcp-Method does not match the request's method",
        ));
    }
    if let Some(field) = name_field(method) {
        let body = params.and_then(|p| p.get(field)).and_then(Value::as_str);
        let header = headers.name.and_then(decode_header_value);
        if header.is_none() || header.as_deref() != body {
            return Err(Refusal::HeaderMismatch(
                "Mcp-Name does not match the request's name",
            ));
        }
    }
    let version = version_text.ok_or(Refusal::Envelope("the protocol version is not a string"))?;
    if version != VERSION {
        return Err(Refusal::UnsupportedVersion(version.to_owned()));
    }
    Ok(())
}

/// A header value as the client meant it: `=?base64?…?=` carries UTF-8 that is not header-safe.
/// `None` inside when the encoding is broken.
fn decode_header_value(value: &str) -> Option<String> {
    use base64::Engine as _;
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(value.to_owned()),
    }
}

/// The client capabilities a server uses by asking the client, each with the request it
/// asks with: the multi-round-trip requests of the era.
pub const ASKS: [(&str, &str); 3] = [
    ("sampling", "sampling/createMessage"),
    ("elicitation", "elicitation/create"),
    ("roots", "roots/list"),
];

/// Methods whose result may ask the client for input (`InputRequiredResult`).
pub fn may_ask(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// Which of [`ASKS`] the client declares, as a bit set (bit i: `ASKS[i]`).
pub fn asked_capabilities(params: Option<&Value>) -> u8 {
    let Some(caps) = client_capabilities(params) else {
        return 0;
    };
    ASKS.iter()
        .enumerate()
        .filter(|(_, (cap, _))| caps.contains_key(*cap))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The session-era client capabilities of a bit set of [`ASKS`], for `initialize`.
pub fn capabilities_object(bits: u8) -> Value {
    let mut caps = Map::new();
    for (i, (cap, _)) in ASKS.iter().enumerate() {
        if bits & (1 << i) != 0 {
            caps.insert((*cap).into(), Value::Object(Map::new()));
        }
    }
    Value::Object(caps)
}

/// Whether a server request's `method` asks for a capability in `bits`.
pub fn asks_within(method: &str, bits: u8) -> bool {
    ASKS.iter()
        .enumerate()
        .any(|(i, (_, m))| *m == method && bits & (1 << i) != 0)
}

/// The `InputRequiredResult` answering request `id`: the server's request, under `key`, and
/// the state the client must send back with its answer.
pub fn input_required(id: &Id, key: &str, server_request: &Value, state: &str) -> Vec<u8> {
    let mut ask = Map::new();
    if let Some(m) = server_request.get("method") {
        ask.insert("method".into(), m.clone());
    }
    if let Some(p) = server_request.get("params") {
        ask.insert("params".into(), p.clone());
    }
    let mut requests = Map::new();
    requests.insert(key.into(), Value::Object(ask));
    let mut result = Map::new();
    result.insert("resultType".into(), "input_required".into());
    result.insert("inputRequests".into(), Value::Object(requests));
    result.insert("requestState".into(), state.into());
    response(Some(id), "result", Value::Object(result))
}

/// What a `subscriptions/listen` asks for, as far as the server can give it: each list
/// whose changes the server announces (`listChanged` in its capabilities), and the resource
/// subscriptions when it takes them (`resources.subscribe`). Types it cannot give are left
/// out, as the era requires.
pub fn honored(filter: &Map<String, Value>, server: &Value) -> Map<String, Value> {
    let caps = server.get("capabilities");
    let has = |cap: &str, flag: &str| {
        caps.and_then(|c| c.get(cap))
            .and_then(|c| c.get(flag))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let mut out = Map::new();
    for (key, cap) in [
        ("toolsListChanged", "tools"),
        ("promptsListChanged", "prompts"),
        ("resourcesListChanged", "resources"),
    ] {
        if filter.get(key).and_then(Value::as_bool) == Some(true) && has(cap, "listChanged") {
            out.insert(key.into(), true.into());
        }
    }
    if let Some(uris) = filter
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        && has("resources", "subscribe")
    {
        let uris: Vec<Value> = uris.iter().filter(|u| u.is_string()).cloned().collect();
        out.insert("resourceSubscriptions".into(), Value::Array(uris));
    }
    out
}

fn subscription_meta(id: &Id) -> Value {
    let mut meta = Map::new();
    meta.insert(meta::SUBSCRIPTION_ID.into(), id.to_value());
    Value::Object(meta)
}

/// The first message of a listen stream: what is honored, under the subscription's id (the
/// listen request's).
pub fn listen_acknowledged(id: &Id, honored: &Map<String, Value>) -> Vec<u8> {
    let message = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": { "_meta": subscription_meta(id), "notifications": honored },
    });
    serde_json::to_vec(&message).unwrap_or_default()
}

/// Whether a server notification is of a kind a listener may ask for (list changes,
/// resource updates).
pub fn is_listenable(notification: &[u8]) -> bool {
    const KINDS: [&str; 4] = [
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
        "notifications/resources/updated",
    ];
    KINDS
        .iter()
        .any(|k| memchr::memmem::find(notification, k.as_bytes()).is_some())
}

/// The last message of a listen stream the server ends.
pub fn listen_ended(id: &Id) -> Vec<u8> {
    let mut result = Map::new();
    result.insert("resultType".into(), "complete".into());
    result.insert("_meta".into(), subscription_meta(id));
    response(Some(id), "result", Value::Object(result))
}

/// A notification of the server as a listener gets it (its subscription's id in `_meta`), or
/// `None` when the listener did not ask for it.
pub fn for_listener(notification: &[u8], id: &Id, honored: &Map<String, Value>) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(notification).ok()?;
    let method = message.get("method")?.as_str()?;
    let wanted = match method {
        "notifications/tools/list_changed" => honored.contains_key("toolsListChanged"),
        "notifications/prompts/list_changed" => honored.contains_key("promptsListChanged"),
        "notifications/resources/list_changed" => honored.contains_key("resourcesListChanged"),
        "notifications/resources/updated" => {
            let uri = message.get("params")?.get("uri")?.as_str()?;
            honored
                .get("resourceSubscriptions")
                .and_then(Value::as_array)
                .is_some_and(|subs| subs.iter().filter_map(Value::as_str).any(|s| uri == s))
        }
        _ => false,
    };
    if !wanted {
        return None;
    }
    let object = message.as_object_mut()?;
    let params = object
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    meta.insert(meta::SUBSCRIPTION_ID.into(), id.to_value());
    serde_json::to_vec(&message).ok()
}

/// The progress token of a request's `_meta`, if it has one.
pub fn progress_token(params: Option<&Value>) -> Option<Id> {
    let token = params?.get("_meta")?.get("progressToken")?;
    Id::from_json_text(&token.to_string())
}

/// The client capabilities the envelope declares.
pub fn client_capabilities(params: Option<&Value>) -> Option<&Map<String, Value>> {
    params?
        .get("_meta")?
        .get(meta::CLIENT_CAPABILITIES)?
        .as_object()
}

/// The request as the session-era server gets it: the envelope's keys removed from `_meta`
/// (an empty `_meta` with them), and the progress token replaced by `progress_token` when
/// the client gave one. The id stays: the session gives the request one of its own.
pub fn to_server_request(message: &Value, progress_token: Option<&Id>) -> Value {
    let mut message = message.clone();
    if let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) {
        let empty = match params.get_mut("_meta").and_then(Value::as_object_mut) {
            Some(meta) => {
                meta.retain(|k, _| !k.starts_with(meta::PREFIX));
                if let (Some(token), Some(slot)) = (progress_token, meta.get_mut("progressToken")) {
                    *slot = token.to_value();
                }
                meta.is_empty()
            }
            None => false,
        };
        if empty {
            params.remove("_meta");
        }
    }
    message
}

/// One message of the server on a modern request's stream, as the client must see it:
///
/// - the response: `resultType` on a result, caching hints on cacheable results, the
///   server's name in `_meta`; error codes this era does not allow mapped or removed;
/// - progress: the client's own token back in place of the one the server was given.
///
/// `None` for anything else (log messages without a requested level, other notifications):
/// a modern response stream carries only what belongs to its request.
pub fn to_client(
    data: &[u8],
    method: &str,
    client_progress: Option<&Id>,
    server_info: Option<&Value>,
    log_level: Option<&str>,
) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(data).ok()?;
    let object = message.as_object_mut()?;
    if let Some(result) = object.get_mut("result").and_then(Value::as_object_mut) {
        complete(result, method, server_info);
    } else if let Some(error) = object.get_mut("error").and_then(Value::as_object_mut) {
        translate_error(error);
    } else if object.get("method").and_then(Value::as_str) == Some(super::method::PROGRESS) {
        let token = client_progress?;
        let params = object.get_mut("params")?.as_object_mut()?;
        params.insert("progressToken".into(), token.to_value());
    } else if object.get("method").and_then(Value::as_str) == Some("notifications/message") {
        // Only when the request asked for log lines, and at or above its level.
        let wanted = severity(log_level?)?;
        let level = object.get("params")?.get("level")?.as_str()?;
        if severity(level)? < wanted {
            return None;
        }
    } else {
        return None;
    }
    serde_json::to_vec(&message).ok()
}

/// The rank of a log level (RFC 5424 order, `debug` lowest); `None` for no level.
fn severity(level: &str) -> Option<usize> {
    const LEVELS: [&str; 8] = [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    LEVELS.iter().position(|l| *l == level)
}

/// The log level a request's envelope asks for.
pub fn log_level(params: Option<&Value>) -> Option<&str> {
    params?.get("_meta")?.get(meta::LOG_LEVEL)?.as_str()
}

/// A session-era result made a complete modern one.
fn complete(result: &mut Map<String, Value>, method: &str, server_info: Option<&Value>) {
    // The sidecar decides these, never the (untrusted) server: a server-chosen `public`
    // scope or long TTL would let shared caches serve a policy-filtered list across users,
    // and a server-made `input_required` would ask the client things no policy saw.
    result.insert("resultType".into(), Value::from("complete"));
    result.remove("inputRequests");
    result.remove("requestState");
    if CACHEABLE.contains(&method) {
        // Not cached: the server's answers may change with each call, and each principal
        // has its own server.
        result.insert("ttlMs".into(), Value::from(0));
        result.insert("cacheScope".into(), Value::from("private"));
    } else {
        result.remove("ttlMs");
        result.remove("cacheScope");
    }
    if let Some(info) = server_info {
        let meta = result
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry(meta::SERVER_INFO)
                .or_insert_with(|| info.clone());
        }
    }
}

/// Error codes the modern era defines differently or forbids: "resource not found" is
/// invalid params; codes of the range reserved for the specification that this era does
/// not define become internal errors, without their data.
fn translate_error(error: &mut Map<String, Value>) {
    let Some(code) = error.get("code").and_then(Value::as_i64) else {
        return;
    };
    if code == code::RESOURCE_NOT_FOUND_2025 {
        error.insert("code".into(), super::code::INVALID_PARAMS.into());
    } else if (code::RESERVED_FIRST..=code::RESERVED_LAST).contains(&code) {
        error.insert("code".into(), super::code::INTERNAL_ERROR.into());
        error.remove("data");
    }
}

/// The `server/discover` result, from the server's `initialize` result: its capabilities
/// (less the session era's `tasks`), instructions and name.
pub fn discover(id: Option<&Id>, initialize: &Value) -> Vec<u8> {
    let mut result = Map::new();
    result.insert("resultType".into(), "complete".into());
    result.insert("supportedVersions".into(), Value::from(vec![VERSION]));
    let mut capabilities = initialize
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    capabilities.remove("tasks");
    result.insert("capabilities".into(), Value::Object(capabilities));
    if let Some(instructions) = initialize.get("instructions").and_then(Value::as_str) {
        result.insert("instructions".into(), instructions.into());
    }
    result.insert("ttlMs".into(), 0.into());
    result.insert("cacheScope".into(), "private".into());
    if let Some(info) = initialize.get("serverInfo") {
        let mut meta = Map::new();
        meta.insert(meta::SERVER_INFO.into(), info.clone());
        result.insert("_meta".into(), Value::Object(meta));
    }
    response(id, "result", Value::Object(result))
}

/// Whether a `server/discover` result comes from a server that speaks this era itself (a
/// "native" server): it names this version among those it supports.
pub fn speaks_this_era(result: &Value) -> bool {
    result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v.as_str() == Some(VERSION)))
}

/// A modern request as a native server gets it: unchanged but for the progress token, which
/// becomes `progress_token` (the caller's tokens repeat across callers of one server).
pub fn to_native_server(message: &Value, progress_token: Option<&Id>) -> Value {
    let mut message = message.clone();
    if let (Some(token), Some(slot)) = (
        progress_token,
        message.pointer_mut("/params/_meta/progressToken"),
    ) {
        *slot = token.to_value();
    }
    message
}

/// A native server's message on a caller's request stream, under the caller's names: its
/// progress token, and its request's id as the subscription a listen stream's notifications
/// name. Nothing else is translated: the server speaks the era. `None` for a message that
/// is not JSON, and for a log line the caller did not ask for (stdio does not say which
/// request a log line belongs to: it reaches a caller only under the same rule as a
/// session-era server's, see [`to_client`]).
pub fn from_native_server(
    data: &[u8],
    caller: &Id,
    client_progress: Option<&Id>,
    log_level: Option<&str>,
) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(data).ok()?;
    let object = message.as_object_mut()?;
    if object.get("method").and_then(Value::as_str) == Some("notifications/message") {
        let wanted = severity(log_level?)?;
        let level = object.get("params")?.get("level")?.as_str()?;
        if severity(level)? < wanted {
            return None;
        }
    }
    if object.contains_key("result") || object.contains_key("error") {
        object.insert("id".into(), caller.to_value());
    }
    // A listen stream's notifications and its final result name the subscription.
    for part in ["params", "result"] {
        if let Some(meta) = object
            .get_mut(part)
            .and_then(|p| p.get_mut("_meta"))
            .and_then(Value::as_object_mut)
            && meta.contains_key(meta::SUBSCRIPTION_ID)
        {
            meta.insert(meta::SUBSCRIPTION_ID.into(), caller.to_value());
        }
    }
    if object.get("method").and_then(Value::as_str) == Some(super::method::PROGRESS) {
        let token = client_progress?;
        let params = object.get_mut("params")?.as_object_mut()?;
        params.insert("progressToken".into(), token.to_value());
    }
    serde_json::to_vec(&message).ok()
}

/// The subscription a notification of a native server belongs to: the id of the
/// `subscriptions/listen` request that opened it.
pub fn subscription_of(params: Option<&Value>) -> Option<Id> {
    let id = params?.get("_meta")?.get(meta::SUBSCRIPTION_ID)?;
    Id::from_json_text(&id.to_string())
}

fn response(id: Option<&Id>, key: &str, value: Value) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), "2.0".into());
    m.insert("id".into(), id.map_or(Value::Null, Id::to_value));
    m.insert(key.into(), value);
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Option<Value> {
        Some(v)
    }

    fn envelope() -> Value {
        json!({ meta::PROTOCOL_VERSION: VERSION, meta::CLIENT_CAPABILITIES: {} })
    }

    fn headers<'a>(method: &'a str, name: Option<&'a str>) -> Headers<'a> {
        Headers {
            protocol_version: Some(VERSION),
            method: Some(method),
            name,
        }
    }

    #[test]
    fn modern_requests_are_told_apart_by_header_or_envelope() {
        assert!(is_modern(Some("2026-07-28"), None));
        assert!(is_modern(Some("2030-01-01"), None));
        assert!(!is_modern(Some("2025-11-25"), None));
        assert!(!is_modern(Some("garbage"), None));
        assert!(!is_modern(None, params(json!({"name": "x"})).as_ref()));
        assert!(is_modern(
            None,
            params(json!({"_meta": envelope()})).as_ref()
        ));
    }

    #[test]
    fn the_ladder_refuses_in_order() {
        let call = params(json!({"name": "echo", "_meta": envelope()}));
        assert_eq!(
            check(
                "tools/call",
                call.as_ref(),
                headers("tools/call", Some("echo"))
            ),
            Ok(())
        );
        // Envelope first: even with wrong headers.
        let bare = params(json!({"name": "echo"}));
        assert!(matches!(
            check("tools/call", bare.as_ref(), Headers::default()),
            Err(Refusal::Envelope(_))
        ));
        let no_caps = params(json!({"name": "echo", "_meta": {meta::PROTOCOL_VERSION: VERSION}}));
        assert!(matches!(
            check(
                "tools/call",
                no_caps.as_ref(),
                headers("tools/call", Some("echo"))
            ),
            Err(Refusal::Envelope(_))
        ));
        // Then each header against the body.
        for h in [
            Headers {
                protocol_version: None,
                ..headers("tools/call", Some("echo"))
            },
            Headers {
                protocol_version: Some("2025-11-25"),
                ..headers("tools/call", Some("echo"))
            },
            headers("tools/list", Some("echo")),
            headers("tools/call", Some("other")),
            headers("tools/call", None),
        ] {
            let r = check("tools/call", call.as_ref(), h);
            assert!(matches!(r, Err(Refusal::HeaderMismatch(_))), "{h:?}: {r:?}");
        }
        // An encoded name is decoded before it is compared.
        let unicode = params(json!({"name": "héllo", "_meta": envelope()}));
        let encoded = format!("=?base64?{}?=", {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode("héllo")
        });
        assert_eq!(
            check(
                "tools/call",
                unicode.as_ref(),
                headers("tools/call", Some(&encoded))
            ),
            Ok(())
        );
        // Then the version, which the header and the body agree on.
        let future = params(
            json!({"_meta": {meta::PROTOCOL_VERSION: "2030-01-01", meta::CLIENT_CAPABILITIES: {}}}),
        );
        let h = Headers {
            protocol_version: Some("2030-01-01"),
            method: Some("tools/list"),
            name: None,
        };
        assert_eq!(
            check("tools/list", future.as_ref(), h),
            Err(Refusal::UnsupportedVersion("2030-01-01".into()))
        );
        let e: Value = serde_json::from_slice(
            &Refusal::UnsupportedVersion("2030-01-01".into())
                .to_error(Some(&Id::Int(7)), &[VERSION]),
        )
        .unwrap();
        assert_eq!(e["error"]["code"], -32022);
        assert_eq!(e["error"]["data"]["supported"], json!(["2026-07-28"]));
        assert_eq!(e["error"]["data"]["requested"], "2030-01-01");
        assert_eq!(e["id"], 7);
    }

    #[test]
    fn the_server_gets_no_envelope_and_a_progress_token_of_ours() {
        let m = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "x", "_meta": {meta::PROTOCOL_VERSION: VERSION, meta::CLIENT_CAPABILITIES: {}, "progressToken": 5, "traceparent": "t"}}});
        let out = to_server_request(&m, Some(&Id::Str("w-1".into())));
        assert_eq!(
            out["params"]["_meta"],
            json!({"progressToken": "w-1", "traceparent": "t"})
        );
        let bare = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": envelope()}});
        assert_eq!(to_server_request(&bare, None)["params"], json!({}));
    }

    #[test]
    fn answers_become_modern_results() {
        let forged = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"cacheScope":"public","ttlMs":99999999,"resultType":"input_required","requestState":"x","inputRequests":{}}}"#;
        let v: Value =
            serde_json::from_slice(&to_client(forged, "tools/list", None, None, None).unwrap())
                .unwrap();
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(v["result"].get("requestState").is_none());
        assert!(v["result"].get("inputRequests").is_none());
        let info = json!({"name": "srv", "version": "1"});
        let out = to_client(
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            "tools/list",
            None,
            Some(&info),
            None,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["_meta"][meta::SERVER_INFO], info);
        let out = to_client(
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            "tools/call",
            None,
            None,
            None,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["resultType"], "complete");
        assert!(v["result"].get("ttlMs").is_none());
        let out = to_client(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"nf"}}"#,
            "resources/read",
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap()["error"]["code"],
            -32602
        );
        let out = to_client(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32042,"message":"url","data":{"elicitations":[]}}}"#, "tools/call", None, None, None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["code"], -32603);
        assert!(v["error"].get("data").is_none());
        let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"w-1","progress":1}}"#;
        let out = to_client(progress, "tools/call", Some(&Id::Int(5)), None, None).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap()["params"]["progressToken"],
            5
        );
        assert!(to_client(progress, "tools/call", None, None, None).is_none());
        let log = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        assert!(to_client(log, "tools/call", None, None, None).is_none());
        // Log lines at or above the level the request asked for.
        assert!(to_client(log, "tools/call", None, None, Some("info")).is_some());
        assert!(to_client(log, "tools/call", None, None, Some("debug")).is_some());
        assert!(to_client(log, "tools/call", None, None, Some("warning")).is_none());
        assert!(to_client(log, "tools/call", None, None, Some("bogus")).is_none());
    }

    #[test]
    fn asked_capabilities_are_a_bit_set() {
        let p = json!({"_meta": {meta::CLIENT_CAPABILITIES: {"sampling": {}, "roots": {"listChanged": true}}}});
        let bits = asked_capabilities(Some(&p));
        assert_eq!(bits, 0b101);
        assert_eq!(
            capabilities_object(bits),
            json!({"sampling": {}, "roots": {}})
        );
        assert!(asks_within("sampling/createMessage", bits));
        assert!(!asks_within("elicitation/create", bits));
        assert_eq!(asked_capabilities(Some(&json!({"_meta": envelope()}))), 0);
        let ask = json!({"jsonrpc": "2.0", "id": 4, "method": "roots/list"});
        let v: Value =
            serde_json::from_slice(&input_required(&Id::Int(9), "r1", &ask, "st")).unwrap();
        assert_eq!(v["id"], 9);
        assert_eq!(v["result"]["resultType"], "input_required");
        assert_eq!(
            v["result"]["inputRequests"]["r1"],
            json!({"method": "roots/list"})
        );
        assert_eq!(v["result"]["requestState"], "st");
    }

    #[test]
    fn listeners_get_what_they_asked_and_the_server_gives() {
        let server = json!({"capabilities": {"tools": {"listChanged": true}, "resources": {"subscribe": true}}});
        let filter = json!({"toolsListChanged": true, "promptsListChanged": true,
            "resourceSubscriptions": ["demo://r/1"]});
        let honored = honored(filter.as_object().unwrap(), &server);
        assert_eq!(
            Value::Object(honored.clone()),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["demo://r/1"]})
        );
        let id = Id::Str("listen-1".into());
        let ack: Value = serde_json::from_slice(&listen_acknowledged(&id, &honored)).unwrap();
        assert_eq!(ack["params"]["_meta"][meta::SUBSCRIPTION_ID], "listen-1");
        let tools = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        let out: Value =
            serde_json::from_slice(&for_listener(tools, &id, &honored).unwrap()).unwrap();
        assert_eq!(out["params"]["_meta"][meta::SUBSCRIPTION_ID], "listen-1");
        let prompts = br#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#;
        assert!(for_listener(prompts, &id, &honored).is_none());
        let updated = |uri: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{{"uri":"{uri}"}}}}"#
            )
        };
        assert!(for_listener(updated("demo://r/1").as_bytes(), &id, &honored).is_some());
        // Exact URIs only: a subscription to `file://` is not one to every file.
        assert!(for_listener(updated("demo://r/1/part").as_bytes(), &id, &honored).is_none());
        assert!(for_listener(updated("demo://r/10").as_bytes(), &id, &honored).is_none());
        let log =
            br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}"#;
        assert!(for_listener(log, &id, &honored).is_none());
    }

    #[test]
    fn discover_comes_from_the_initialize_result() {
        let init = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": true}, "tasks": {}},
            "serverInfo": {"name": "srv", "version": "2"}, "instructions": "be nice"});
        let v: Value =
            serde_json::from_slice(&discover(Some(&Id::Str("d".into())), &init)).unwrap();
        assert_eq!(v["id"], "d");
        let r = &v["result"];
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(r["capabilities"], json!({"tools": {"listChanged": true}}));
        assert_eq!(r["instructions"], "be nice");
        assert_eq!(r["_meta"][meta::SERVER_INFO]["name"], "srv");
        assert_eq!(
            (r["ttlMs"].clone(), r["cacheScope"].clone()),
            (json!(0), json!("private"))
        );
    }

    #[test]
    fn a_native_server_is_one_that_names_this_era_in_its_discover_result() {
        assert!(speaks_this_era(
            &json!({"supportedVersions": ["2025-11-25", VERSION]})
        ));
        assert!(!speaks_this_era(
            &json!({"supportedVersions": ["2025-11-25"]})
        ));
        assert!(!speaks_this_era(&json!({"protocolVersion": VERSION})));
    }

    #[test]
    fn a_native_server_gets_the_envelope_and_only_the_progress_token_changes() {
        let mut m = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"x","_meta": envelope()}});
        m["params"]["_meta"]["progressToken"] = json!("theirs");
        let out = to_native_server(&m, Some(&Id::Str("ours".into())));
        assert_eq!(out["params"]["_meta"]["progressToken"], "ours");
        assert_eq!(out["params"]["_meta"][meta::PROTOCOL_VERSION], VERSION);
        let untouched = to_native_server(&m, None);
        assert_eq!(untouched, m);
    }

    #[test]
    fn a_native_servers_messages_get_the_callers_names_back() {
        let caller = Id::Str("listen-9".into());
        let ack = br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":17},"notifications":{}}}"#;
        let out: Value =
            serde_json::from_slice(&from_native_server(ack, &caller, None, None).unwrap()).unwrap();
        assert_eq!(out["params"]["_meta"][meta::SUBSCRIPTION_ID], "listen-9");
        assert!(out.get("id").is_none());
        let answer = br#"{"jsonrpc":"2.0","id":17,"result":{"resultType":"complete","ttlMs":5}}"#;
        let out: Value =
            serde_json::from_slice(&from_native_server(answer, &caller, None, None).unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"jsonrpc":"2.0","id":"listen-9","result":{"resultType":"complete","ttlMs":5}})
        );
        let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"ours","progress":1}}"#;
        assert!(from_native_server(progress, &caller, None, None).is_none());
        let mine = Id::Str("mine".into());
        let out: Value = serde_json::from_slice(
            &from_native_server(progress, &caller, Some(&mine), None).unwrap(),
        )
        .unwrap();
        assert_eq!(out["params"]["progressToken"], "mine");
        let log = br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#;
        assert!(
            from_native_server(log, &caller, None, None).is_none(),
            "not asked for"
        );
        assert!(
            from_native_server(log, &caller, None, Some("error")).is_none(),
            "below the level"
        );
        assert!(from_native_server(log, &caller, None, Some("debug")).is_some());
    }
}
