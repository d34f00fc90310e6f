//! Reading the request headers the transport cares about.

use axum::http::{HeaderMap, HeaderName, header};

pub(crate) static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub(crate) static MCP_PROTOCOL_VERSION: HeaderName =
    HeaderName::from_static("mcp-protocol-version");
pub(crate) static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The W3C `traceparent` header, when present and valid.
pub(crate) fn trace(headers: &HeaderMap) -> Option<crate::telemetry::TraceContext> {
    crate::telemetry::TraceContext::parse(headers.get("traceparent")?.to_str().ok()?)
}

/// Which media types an `Accept` header admits (`*/*` and `type/*` count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepts {
    pub json: bool,
    pub sse: bool,
}

/// For each media type the most specific range that names it decides (RFC 9110, 12.5.1), so
/// `application/json;q=0, */*` refuses JSON; among equally specific ranges a refusal wins.
pub(crate) fn accepts(headers: &HeaderMap) -> Accepts {
    let (mut json, mut sse) = (Verdict::default(), Verdict::default());
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            // A range explicitly weighted q=0 is a refusal.
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            // How specifically the range names each type: 0 not at all, 1 `*/*`,
            // 2 `type/*`, 3 the type itself.
            let is = |m: &str| media.eq_ignore_ascii_case(m);
            let (for_json, for_sse) = if is("*/*") {
                (1, 1)
            } else if is("application/*") {
                (2, 0)
            } else if is("application/json") {
                (3, 0)
            } else if is("text/*") {
                (0, 2)
            } else if is("text/event-stream") {
                (0, 3)
            } else {
                continue;
            };
            json.consider(for_json, !refused);
            sse.consider(for_sse, !refused);
        }
    }
    Accepts {
        json: json.accepted,
        sse: sse.accepted,
    }
}

/// The answer of the most specific ranges seen so far for one media type.
#[derive(Default)]
struct Verdict {
    specificity: u8,
    accepted: bool,
}

impl Verdict {
    fn consider(&mut self, specificity: u8, accepted: bool) {
        if specificity > self.specificity {
            *self = Verdict {
                specificity,
                accepted,
            };
        } else if specificity == self.specificity && specificity > 0 {
            self.accepted &= accepted;
        }
    }
}

/// Whether the body is declared as JSON (`application/json`, any parameters), by one
/// `Content-Type` header: two are ambiguous.
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    single(headers, &header::CONTENT_TYPE)
        .ok()
        .flatten()
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// A single-valued header as text; `Err` when repeated or not visible ASCII.
pub(crate) fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    first.to_str().map(|s| Some(s.trim())).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> Accepts {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        accepts(&h)
    }

    #[test]
    fn accept_parsing() {
        assert_eq!(
            accept("application/json, text/event-stream"),
            Accepts {
                json: true,
                sse: true
            }
        );
        assert_eq!(
            accept("*/*"),
            Accepts {
                json: true,
                sse: true
            }
        );
        assert_eq!(
            accept("application/json"),
            Accepts {
                json: true,
                sse: false
            }
        );
        assert_eq!(
            accept("Text/Event-Stream;q=0.9"),
            Accepts {
                json: false,
                sse: true
            }
        );
        assert_eq!(
            accept("application/json, text/event-stream;q=0"),
            Accepts {
                json: true,
                sse: false
            }
        );
        assert_eq!(accepts(&HeaderMap::new()), Accepts::default());
    }

    #[test]
    fn an_explicit_refusal_beats_a_wildcard() {
        // RFC 9110, 12.5.1: the most specific range that matches a type decides.
        for (value, json, sse) in [
            ("application/json;q=0, */*", false, true),
            ("*/*, text/event-stream;q=0", true, false),
            ("application/*;q=0, application/json", true, false),
            ("text/*;q=0, */*", true, false),
            ("application/json, application/json;q=0", false, false),
        ] {
            assert_eq!(accept(value), Accepts { json, sse }, "{value}");
        }
    }

    #[test]
    fn content_type_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.append(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_json(&h), "repeated");
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }
}
