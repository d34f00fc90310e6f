//! Entry points for the fuzz targets in `fuzz/`: everything that reads a token before its
//! signature is checked. Hidden from the docs and not a stable API.

use serde_json::{Map, Value};

use super::jwt::{self, ClaimRules, HeaderRules};

/// What the pre-signature reading of a token found. Each field is `None` when that step
/// refused the token (or was not reached).
#[derive(Debug, Default)]
pub struct Reading {
    /// The JOSE header's algorithm (as `jsonwebtoken` names it) and key id.
    pub alg: Option<String>,
    pub kid: Option<Option<String>>,
    /// The decoded claims, when the payload is a JSON object.
    pub claims: Option<Map<String, Value>>,
    /// The issuer the token claims (used only to pick the keys).
    pub issuer: Option<String>,
    /// `Ok(not_after)` or the refusal's error code, for the claim check against `rules`.
    pub claims_check: Option<Result<f64, &'static str>>,
}

/// Reads `token` as the authenticator does before verifying its signature: split, header
/// (with `hmac`/`untyped` rules), claims, claimed issuer, then the registered-claim check
/// against `issuer`, `audiences` at time `now` with `leeway` seconds.
pub fn read(
    token: &str,
    hmac: bool,
    untyped: bool,
    issuer: &str,
    audiences: &[String],
    now: f64,
    leeway: f64,
) -> Option<Reading> {
    let parts = jwt::split(token)?;
    let mut r = Reading::default();
    if let Ok(h) = jwt::parse_header(parts.header, HeaderRules { hmac, untyped }) {
        r.alg = Some(format!("{:?}", h.alg));
        r.kid = Some(h.kid);
    }
    let Ok(claims) = jwt::decode_json(parts.payload) else {
        return Some(r);
    };
    r.issuer = jwt::claimed_issuer(&claims).ok().map(str::to_owned);
    r.claims_check = Some(
        jwt::check_claims(
            &claims,
            ClaimRules {
                issuer,
                audiences,
                leeway,
            },
            now,
        )
        .map_err(|e| e.code()),
    );
    r.claims = Some(claims);
    Some(r)
}
