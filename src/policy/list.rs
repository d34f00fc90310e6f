//! Filtering of `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` results: each principal sees only what it may use. Entries are dropped from the array in place; the rest of the
//! message keeps its bytes.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use super::json::{self, Event, Malformed, Seg};

/// Which list a response answers, and the field that names each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    /// Resource templates, named by their `uriTemplate`, matched as a resource URI: a
    /// template is listed when the policy would let the caller read a resource of that name
    /// (`demo://docs/*` lets `demo://docs/{name}` through).
    ResourceTemplates,
}

impl ListKind {
    /// The list a request method asks for.
    pub fn of_method(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    fn array(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "uriTemplate")]
    uri_template: Option<Cow<'a, str>>,
}

/// Drops the entries `keep` refuses (it gets the tool/prompt name or the resource URI).
/// Returns `None` when nothing is dropped. Entries without a name are dropped: a policy
/// cannot vouch for what it cannot name.
pub fn filter(
    message: &[u8],
    kind: ListKind,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Option<Vec<u8>>, Malformed> {
    let array = kind.array();
    let mut items: Vec<Range<usize>> = Vec::new();
    let mut whole: Option<Range<usize>> = None;
    json::walk(message, |path, ev| {
        let Event::Value { span } = ev else { return };
        if !(path.key_is(0, "result") && path.key_is(1, array)) {
            return;
        }
        match (path.len(), path.segs.get(2)) {
            (3, Some(Seg::Index(_))) => items.push(span),
            (2, _) if message.get(span.start) == Some(&b'[') => whole = Some(span),
            _ => {}
        }
    })?;
    let Some(whole) = whole else { return Ok(None) };
    let mut kept: Vec<&[u8]> = Vec::with_capacity(items.len());
    for item in &items {
        let bytes = &message[item.clone()];
        let named: Option<Named<'_>> = std::str::from_utf8(bytes)
            .ok()
            .and_then(crate::mcp::from_object);
        let key = named.and_then(|n| match kind {
            ListKind::Resources => n.uri,
            ListKind::ResourceTemplates => n.uri_template,
            ListKind::Tools | ListKind::Prompts => n.name,
        });
        if key.is_some_and(|k| keep(&k)) {
            kept.push(bytes);
        }
    }
    if kept.len() == items.len() {
        return Ok(None);
    }
    let mut array_bytes = Vec::with_capacity(whole.len());
    array_bytes.push(b'[');
    for (i, k) in kept.iter().enumerate() {
        if i > 0 {
            array_bytes.push(b',');
        }
        array_bytes.extend_from_slice(k);
    }
    array_bytes.push(b']');
    Ok(Some(json::splice(message, &[(whole, array_bytes)])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn drops_refused_entries_and_keeps_the_rest() {
        let msg = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"echo","inputSchema":{"type":"object","properties":{"tools":[{"name":"x"}]}}},
            {"name":"get-env","inputSchema":{}},
            {"inputSchema":{}},
            {"name":"get-sum","inputSchema":{}}],"nextCursor":"c"}});
        let bytes = msg.to_string();
        let out = filter(bytes.as_bytes(), ListKind::Tools, |n| n != "get-env")
            .unwrap()
            .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        let names: Vec<&str> = out["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["echo", "get-sum"]);
        assert_eq!(out["result"]["nextCursor"], "c");
        assert_eq!(out["result"]["tools"][0], msg["result"]["tools"][0]);
    }

    #[test]
    fn unchanged_lists_and_other_kinds() {
        let msg =
            br#"{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///a","name":"a"}]}}"#;
        assert_eq!(
            filter(msg, ListKind::Resources, |u| u == "file:///a").unwrap(),
            None
        );
        let out = filter(msg, ListKind::Resources, |_| false)
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            br#"{"jsonrpc":"2.0","id":1,"result":{"resources":[]}}"#
        );
        // An error response has no list to filter.
        let err = br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#;
        assert_eq!(filter(err, ListKind::Tools, |_| false).unwrap(), None);
        assert_eq!(ListKind::of_method("prompts/list"), Some(ListKind::Prompts));
        assert_eq!(ListKind::of_method("tools/call"), None);
    }
}
