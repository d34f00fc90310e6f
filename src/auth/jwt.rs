//! JWT access tokens (RFC 9068): the parts checked before and after the signature.
//! Pure: no I/O, the time is passed in. Signature verification itself is in `verify`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::challenge::Rejection;
use super::resource_metadata::canonical_audience;

/// A JWS in compact serialization, split but not decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compact<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'a str,
}

/// Splits `token` into its three parts if it looks like a JWS at all (three non-empty
/// base64url parts). Anything else may still be an opaque token for introspection.
pub(crate) fn split(token: &str) -> Option<Compact<'_>> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let b64 = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !(b64(header) && b64(payload) && b64(signature)) {
        return None;
    }
    Some(Compact {
        header,
        payload,
        signature,
        signing_input: &token[..header.len() + 1 + payload.len()],
    })
}

/// What the header may say, beyond the algorithm.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderRules {
    /// HMAC algorithms are allowed (a shared secret is configured).
    pub hmac: bool,
    /// Also accept `typ` absent or `JWT`, for servers that do not type their access
    /// tokens (RFC 9068 §4 requires `at+jwt`).
    pub untyped: bool,
}

/// The header fields we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn algorithm(name: &str, rules: HeaderRules) -> Option<Algorithm> {
    let alg = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" if rules.hmac => Algorithm::HS256,
        "HS384" if rules.hmac => Algorithm::HS384,
        "HS512" if rules.hmac => Algorithm::HS512,
        // `none`, `HS*` without a secret, `ES512`, `Ed25519`, anything else.
        _ => return None,
    };
    Some(alg)
}

pub(crate) fn decode_json(part: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::MalformedToken)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::MalformedToken),
    }
}

/// Decodes and checks the JOSE header.
pub(crate) fn parse_header(part: &str, rules: HeaderRules) -> Result<JoseHeader, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::MalformedToken)?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| Rejection::MalformedToken)?;
    if raw.crit.is_some() {
        return Err(Rejection::UnsupportedHeader);
    }
    let alg = algorithm(&raw.alg, rules).ok_or(Rejection::AlgorithmNotAllowed)?;
    // Media type names are case-insensitive; `application/` may be omitted (RFC 7515 §4.1.9).
    let typ = raw.typ.as_deref().map(str::to_ascii_lowercase);
    let typ = typ
        .as_deref()
        .map(|t| t.strip_prefix("application/").unwrap_or(t));
    let typed_ok = match typ {
        Some("at+jwt") => true,
        None | Some("jwt") => rules.untyped,
        Some(_) => false,
    };
    if !typed_ok {
        return Err(Rejection::WrongTokenType);
    }
    Ok(JoseHeader { alg, kid: raw.kid })
}

/// The issuer a token claims, read before its signature is checked, only to pick which
/// issuer's keys verify it. The claim is compared again after verification.
pub(crate) fn claimed_issuer(claims: &Map<String, Value>) -> Result<&str, Rejection> {
    claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(Rejection::MissingClaim("iss"))
}

/// What the claims are checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimRules<'a> {
    pub issuer: &'a str,
    /// Accepted audiences, canonical.
    pub audiences: &'a [String],
    /// Allowed clock skew, seconds.
    pub leeway: f64,
}

/// A NumericDate (RFC 7519 §2: seconds, possibly fractional). Present but not a number is
/// as bad as missing.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or(Rejection::MissingClaim(name)),
    }
}

/// The registered claims of a verified token. Returns the instant (seconds since the epoch)
/// from which the token is refused: `exp` plus the leeway. A token is accepted while
/// `now < exp + leeway`; a cache of validated tokens must apply exactly this bound.
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    rules: ClaimRules<'_>,
    now: f64,
) -> Result<f64, Rejection> {
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer) {
        return Err(Rejection::UnknownIssuer);
    }
    let exp = numeric_date(claims, "exp")?.ok_or(Rejection::MissingClaim("exp"))?;
    let not_after = exp + rules.leeway;
    if now >= not_after {
        return Err(Rejection::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now + rules.leeway < nbf
    {
        return Err(Rejection::NotYetValid);
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && now + rules.leeway < iat
    {
        return Err(Rejection::NotYetValid);
    }
    check_audience(claims.get("aud"), rules.audiences)?;
    match claims.get("sub").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => {}
        _ => return Err(Rejection::MissingClaim("sub")),
    }
    // A DPoP- or certificate-bound token is only as good as its proof of possession,
    // which a bearer request does not carry (RFC 9449 §7.1, RFC 8705 §3).
    if claims.contains_key("cnf") {
        return Err(Rejection::SenderConstrained);
    }
    Ok(not_after)
}

/// `aud` (a string or an array of strings) must contain one of `accepted` (RFC 8707, RFC
/// 9068 §4), compared in canonical form.
pub(crate) fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), Rejection> {
    let matches = |a: &str| {
        let a = canonical_audience(a);
        accepted.iter().any(|x| *x == *a)
    };
    match aud {
        None => Err(Rejection::MissingClaim("aud")),
        Some(Value::String(a)) => matches(a).then_some(()).ok_or(Rejection::WrongAudience),
        Some(Value::Array(items)) => {
            if items.iter().any(|v| !v.is_string()) {
                return Err(Rejection::MissingClaim("aud"));
            }
            items
                .iter()
                .filter_map(Value::as_str)
                .any(matches)
                .then_some(())
                .ok_or(Rejection::WrongAudience)
        }
        Some(_) => Err(Rejection::MissingClaim("aud")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    const STRICT: HeaderRules = HeaderRules {
        hmac: false,
        untyped: false,
    };

    #[test]
    fn split_requires_three_base64url_parts() {
        let c = split("aGVhZA.cGF5.c2ln").unwrap();
        assert_eq!(c.signing_input, "aGVhZA.cGF5");
        assert_eq!(c.signature, "c2ln");
        for bad in [
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.",
            "a.b.c=",
            "a.b+.c",
            "opaque-token",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn alg_none_and_unsupported_algorithms_are_refused() {
        for alg in ["none", "None", "NONE", "HS256", "ES512", "RSA-OAEP", ""] {
            let h = b64(&json!({"alg": alg, "typ": "at+jwt"}));
            assert_eq!(
                parse_header(&h, STRICT),
                Err(Rejection::AlgorithmNotAllowed),
                "{alg}"
            );
        }
        let h = b64(&json!({"alg": "HS256", "typ": "at+jwt"}));
        let hmac = HeaderRules {
            hmac: true,
            untyped: false,
        };
        assert_eq!(parse_header(&h, hmac).unwrap().alg, Algorithm::HS256);
    }

    #[test]
    fn header_must_be_typed_as_an_access_token() {
        let typ = |t: Option<&str>, untyped: bool| {
            let mut h = json!({"alg": "RS256", "kid": "k1"});
            if let Some(t) = t {
                h["typ"] = json!(t);
            }
            parse_header(
                &b64(&h),
                HeaderRules {
                    hmac: false,
                    untyped,
                },
            )
        };
        assert_eq!(
            typ(Some("at+jwt"), false),
            Ok(JoseHeader {
                alg: Algorithm::RS256,
                kid: Some("k1".into())
            })
        );
        assert!(typ(Some("application/AT+JWT"), false).is_ok());
        assert_eq!(typ(Some("JWT"), false), Err(Rejection::WrongTokenType));
        assert_eq!(typ(None, false), Err(Rejection::WrongTokenType));
        assert!(typ(Some("JWT"), true).is_ok());
        assert!(typ(None, true).is_ok());
        // An ID token's or a logout token's type is never an access token.
        assert_eq!(
            typ(Some("logout+jwt"), true),
            Err(Rejection::WrongTokenType)
        );
    }

    #[test]
    fn critical_extensions_are_refused() {
        let h = b64(&json!({"alg": "RS256", "typ": "at+jwt", "crit": ["b64"], "b64": false}));
        assert_eq!(parse_header(&h, STRICT), Err(Rejection::UnsupportedHeader));
    }

    #[test]
    fn malformed_headers() {
        for h in [
            "!!!",
            &URL_SAFE_NO_PAD.encode("[1]"),
            &b64(&json!({"alg": 5})),
        ] {
            assert_eq!(parse_header(h, STRICT), Err(Rejection::MalformedToken));
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    const AUD: &str = "https://h.example/mcp";

    fn rules(aud: &[String]) -> ClaimRules<'_> {
        ClaimRules {
            issuer: "https://as.example",
            audiences: aud,
            leeway: 60.0,
        }
    }

    fn good() -> Value {
        json!({"iss": "https://as.example", "sub": "alice", "aud": AUD, "exp": 2000, "iat": 1000, "nbf": 1000})
    }

    #[test]
    fn expiry_is_exact_with_leeway() {
        let aud = vec![AUD.to_owned()];
        let c = claims(good());
        assert_eq!(check_claims(&c, rules(&aud), 1500.0), Ok(2060.0));
        assert_eq!(check_claims(&c, rules(&aud), 2059.999), Ok(2060.0));
        assert_eq!(
            check_claims(&c, rules(&aud), 2060.0),
            Err(Rejection::Expired)
        );
        let mut no_exp = good();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check_claims(&claims(no_exp), rules(&aud), 1500.0),
            Err(Rejection::MissingClaim("exp"))
        );
        let mut text_exp = good();
        text_exp["exp"] = json!("2000");
        assert_eq!(
            check_claims(&claims(text_exp), rules(&aud), 1500.0),
            Err(Rejection::MissingClaim("exp"))
        );
    }

    #[test]
    fn not_before_and_issued_at_allow_the_leeway_only() {
        let aud = vec![AUD.to_owned()];
        let c = claims(good());
        assert!(check_claims(&c, rules(&aud), 940.0).is_ok());
        assert_eq!(
            check_claims(&c, rules(&aud), 939.0),
            Err(Rejection::NotYetValid)
        );
        let mut future_iat = good();
        future_iat.as_object_mut().unwrap().remove("nbf");
        future_iat["iat"] = json!(1500);
        assert_eq!(
            check_claims(&claims(future_iat), rules(&aud), 1000.0),
            Err(Rejection::NotYetValid)
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        let aud = vec![AUD.to_owned()];
        for iss in [
            json!("https://as.example/"),
            json!("https://AS.example"),
            json!(null),
            json!(["https://as.example"]),
        ] {
            let mut c = good();
            c["iss"] = iss.clone();
            assert_eq!(
                check_claims(&claims(c), rules(&aud), 1500.0),
                Err(Rejection::UnknownIssuer),
                "{iss}"
            );
        }
    }

    #[test]
    fn audience_must_contain_the_resource() {
        let aud = vec![AUD.to_owned()];
        let with_aud = |a: Value| {
            let mut c = good();
            c["aud"] = a;
            check_claims(&claims(c), rules(&aud), 1500.0)
        };
        assert!(with_aud(json!(["https://other.example", AUD])).is_ok());
        assert!(with_aud(json!("HTTPS://H.EXAMPLE/mcp/")).is_ok());
        assert_eq!(
            with_aud(json!("https://h.example/mcp2")),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(
            with_aud(json!("https://h.example/MCP")),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(
            with_aud(json!("https://h.example")),
            Err(Rejection::WrongAudience)
        );
        assert_eq!(with_aud(json!([])), Err(Rejection::WrongAudience));
        assert_eq!(
            with_aud(json!([AUD, 1])),
            Err(Rejection::MissingClaim("aud"))
        );
        assert_eq!(with_aud(json!(null)), Err(Rejection::MissingClaim("aud")));
    }

    #[test]
    fn subject_is_required_and_bound_tokens_are_refused() {
        let aud = vec![AUD.to_owned()];
        let mut c = good();
        c["sub"] = json!("");
        assert_eq!(
            check_claims(&claims(c), rules(&aud), 1500.0),
            Err(Rejection::MissingClaim("sub"))
        );
        let mut c = good();
        c["cnf"] = json!({"jkt": "abc"});
        assert_eq!(
            check_claims(&claims(c), rules(&aud), 1500.0),
            Err(Rejection::SenderConstrained)
        );
    }
}
