//! An `Authorization` header value read as the authentication layer reads it, then the token
//! read as the authenticator does before its signature is checked (split, JOSE header,
//! claims, claimed issuer, registered claims). Never a panic, and:
//! - a bearer token is a `token68` taken from the value, after a case-insensitive `Bearer`;
//! - only the allowed algorithms come out of the header: never `none`, never HMAC without a
//!   configured secret;
//! - claims are accepted only with this issuer, an `exp` still ahead (with the leeway), this
//!   audience and a subject, and then the bound returned is exactly `exp + leeway`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden::auth::fuzzing::read;
use mcp_warden::transport::http::fuzzing::bearer;

const ISSUER: &str = "https://issuer.example";
const NOW: f64 = 1_800_000_000.0;

fuzz_target!(|data: &[u8]| {
    // First byte: header rules and leeway; the rest is the header value (or the token).
    let Some((&flags, value)) = data.split_first() else {
        return;
    };
    let (hmac, untyped) = (flags & 1 != 0, flags & 2 != 0);
    let leeway = f64::from(flags >> 2);
    let audiences = vec!["https://mcp.example/mcp".to_owned()];

    let token = match bearer(value) {
        Some(token) => {
            let text = std::str::from_utf8(value).expect("a token comes from UTF-8");
            assert!(text.len() >= 7 && text[..6].eq_ignore_ascii_case("bearer"));
            assert!(text.ends_with(token), "the token is the end of the value");
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty());
            assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')));
            token
        }
        // Fuzz the token reader with the raw bytes too: tokens also come from introspection
        // and token exchange tests, and most inputs are not valid header values.
        None => match std::str::from_utf8(value) {
            Ok(t) => t,
            Err(_) => return,
        },
    };
    let Some(r) = read(token, hmac, untyped, ISSUER, &audiences, NOW, leeway) else {
        return;
    };
    if let Some(alg) = &r.alg {
        assert!(
            hmac || !alg.starts_with("HS"),
            "HMAC without a secret: {alg}"
        );
        assert_ne!(alg, "none");
    }
    if let (Some(claims), Some(Ok(not_after))) = (&r.claims, r.claims_check) {
        assert_eq!(claims.get("iss").and_then(|v| v.as_str()), Some(ISSUER));
        assert_eq!(r.issuer.as_deref(), Some(ISSUER));
        let exp = claims["exp"].as_f64().expect("exp is a number");
        assert_eq!(not_after, exp + leeway);
        assert!(NOW < not_after, "expired token accepted");
        assert!(
            claims
                .get("sub")
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty())
        );
        assert!(!claims.contains_key("cnf"));
        let aud = &claims["aud"];
        assert!(
            aud.as_str().is_some() || aud.as_array().is_some(),
            "accepted without an audience"
        );
    }
});
