//! Entry points for the fuzz targets in `fuzz/`: the crate-private header checks, reachable
//! without building a request. Hidden from the docs and not a stable API.

use axum::http::{HeaderMap, HeaderValue, header};

/// What the `Accept` header lines `values` admit, as `(json, sse)`. Values that are not valid
/// header values are left out, as the HTTP server would have refused them.
pub fn accepts(values: &[&[u8]]) -> (bool, bool) {
    let mut headers = HeaderMap::new();
    for value in values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(header::ACCEPT, value);
        }
    }
    let a = super::headers::accepts(&headers);
    (a.json, a.sse)
}

/// Whether an `Origin` header value may call us, given the configured origins and whether
/// loopback origins are allowed. `None` when `value` is not a valid header value.
pub fn origin_allowed(value: &[u8], configured: &[String], loopback: bool) -> Option<bool> {
    let value = HeaderValue::from_bytes(value).ok()?;
    // As the middleware does: a value that is not visible ASCII is never allowed.
    Some(
        value
            .to_str()
            .is_ok_and(|o| super::origin::allowed(o, configured, loopback)),
    )
}

/// The token of an `Authorization` header value, as the authentication layer reads it:
/// `None` for another scheme or a value that is not `Bearer <token68>`.
pub fn bearer(value: &[u8]) -> Option<&str> {
    super::authn::bearer(value).ok()
}
