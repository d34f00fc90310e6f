//! `Origin` checks against DNS rebinding: an origin let in as loopback is, by the WHATWG URL
//! parser browsers use, an http(s) origin whose host is loopback, and nothing is let in when
//! neither a configured origin nor loopback allows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::transport::http::fuzzing::origin_allowed;

fuzz_target!(|data: &[u8]| {
    let Some(loopback) = origin_allowed(data, &[], true) else {
        return; // not a header value: the HTTP server refuses it before us
    };
    assert_eq!(origin_allowed(data, &[], false), Some(false));
    if !loopback {
        return;
    }
    let text = std::str::from_utf8(data).expect("allowed origins are text");
    let url = url::Url::parse(text).unwrap_or_else(|e| panic!("{text:?} is no URL: {e}"));
    assert!(matches!(url.scheme(), "http" | "https"), "{text:?}");
    assert!(
        matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
        "{text:?} has host {:?}",
        url.host_str()
    );
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "{text:?}"
    );
    assert!(
        url.path() == "/" && url.query().is_none() && url.fragment().is_none(),
        "{text:?} is more than an origin"
    );
    // Scheme and host are case-insensitive.
    assert_eq!(
        origin_allowed(&data.to_ascii_uppercase(), &[], true),
        Some(true)
    );
});
