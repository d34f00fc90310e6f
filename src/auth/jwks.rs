//! Verification keys: which JWKs are usable for which algorithm, and the per-issuer key
//! cache (freshness from `Cache-Control` within bounds, at most one refetch per interval
//! for an unknown `kid`, cached keys kept while the issuer is unreachable).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::RwLock;
use serde_json::Value;
use url::Url;

use super::challenge::Rejection;
use super::discovery::{self, Metadata};
use super::fetch::{CacheDirective, FetchError, HttpClient, MAX_DOCUMENT_BYTES};
use super::jwt;

/// What a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

/// A key we verify signatures with.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, when it declares one: then only that algorithm.
    alg: Option<Algorithm>,
    pub key: DecodingKey,
    /// The public key material, to tell whether a refetched set still holds this key.
    material: Vec<u8>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a JWK was left out of the usable set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SkipReason {
    #[error("not a JWK we understand")]
    Unparsable,
    #[error("not for signatures (use/key_ops)")]
    NotForSignatures,
    #[error("symmetric key in a public key set")]
    Symmetric,
    #[error("unsupported key type or curve")]
    Unsupported,
    #[error("RSA key shorter than 2048 bits or with a bad exponent")]
    WeakRsa,
    #[error("declared alg does not fit the key type")]
    AlgMismatch,
    #[error("malformed key parameters")]
    Malformed,
}

const MIN_RSA_BYTES: usize = 2048 / 8;
const MAX_RSA_BYTES: usize = 8192 / 8;

impl VerifyKey {
    /// A key from a JWK of a public key set. Symmetric keys are never taken from one.
    pub(crate) fn from_jwk(value: &Value) -> Result<VerifyKey, SkipReason> {
        let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| SkipReason::Unparsable)?;
        let common = &jwk.common;
        if let Some(u) = &common.public_key_use
            && *u != PublicKeyUse::Signature
        {
            return Err(SkipReason::NotForSignatures);
        }
        if let Some(ops) = &common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err(SkipReason::NotForSignatures);
        }
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| SkipReason::Malformed)
        };
        let (kind, material) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let n = b64(&p.n)?;
                let e = b64(&p.e)?;
                let n_len = n.iter().skip_while(|b| **b == 0).count();
                let e_trim: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
                let e_ok = !e_trim.is_empty()
                    && e_trim.len() <= 4
                    && e_trim.last().is_some_and(|b| b & 1 == 1)
                    && e_trim.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)) >= 3;
                if !(MIN_RSA_BYTES..=MAX_RSA_BYTES).contains(&n_len) || !e_ok {
                    return Err(SkipReason::WeakRsa);
                }
                (KeyKind::Rsa, [n, e].concat())
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let (kind, len) = match p.curve {
                    EllipticCurve::P256 => (KeyKind::P256, 32),
                    EllipticCurve::P384 => (KeyKind::P384, 48),
                    _ => return Err(SkipReason::Unsupported),
                };
                let (x, y) = (b64(&p.x)?, b64(&p.y)?);
                if x.len() != len || y.len() != len {
                    return Err(SkipReason::Malformed);
                }
                (kind, [x, y].concat())
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err(SkipReason::Unsupported);
                }
                let x = b64(&p.x)?;
                if x.len() != 32 {
                    return Err(SkipReason::Malformed);
                }
                (KeyKind::Ed25519, x)
            }
            // An HMAC secret published in a key set would let anyone mint tokens.
            AlgorithmParameters::OctetKey(_) => return Err(SkipReason::Symmetric),
            _ => return Err(SkipReason::Unsupported),
        };
        let alg = match common.key_algorithm {
            None => None,
            Some(a) => {
                let alg = a
                    .to_string()
                    .parse::<Algorithm>()
                    .map_err(|_| SkipReason::AlgMismatch)?;
                if !kind_fits(kind, alg) {
                    return Err(SkipReason::AlgMismatch);
                }
                Some(alg)
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| SkipReason::Malformed)?;
        Ok(VerifyKey {
            kid: common.key_id.clone(),
            kind,
            alg,
            key,
            material,
        })
    }

    /// The configured HMAC secret.
    pub(crate) fn hmac(secret: &[u8]) -> VerifyKey {
        VerifyKey {
            kid: None,
            kind: KeyKind::Hmac,
            alg: None,
            key: DecodingKey::from_secret(secret),
            material: Vec::new(),
        }
    }

    /// Whether this key can verify `alg`: the key type (and curve) must be the one the
    /// algorithm is defined for, and a declared `alg` must be this one.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        kind_fits(self.kind, alg) && self.alg.is_none_or(|a| a == alg)
    }

    fn same_key(&self, other: &VerifyKey) -> bool {
        self.kid == other.kid && self.kind == other.kind && self.material == other.material
    }
}

fn kind_fits(kind: KeyKind, alg: Algorithm) -> bool {
    use Algorithm::*;
    match kind {
        KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        KeyKind::P256 => alg == ES256,
        KeyKind::P384 => alg == ES384,
        KeyKind::Ed25519 => alg == EdDSA,
        KeyKind::Hmac => jwt::is_hmac(alg),
    }
}

/// A parsed key set and what was left out (for the operator's logs).
#[derive(Debug)]
pub(crate) struct ParsedSet {
    pub keys: Vec<Arc<VerifyKey>>,
    pub skipped: Vec<(Option<String>, SkipReason)>,
}

/// Parses `{"keys": [...]}`; one bad key never spoils the others.
pub(crate) fn parse_set(doc: &serde_json::Map<String, Value>) -> Option<ParsedSet> {
    let items = doc.get("keys")?.as_array()?;
    let mut set = ParsedSet {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for item in items.iter().take(MAX_KEYS) {
        match VerifyKey::from_jwk(item) {
            Ok(k) => set.keys.push(Arc::new(k)),
            Err(reason) => set.skipped.push((
                item.get("kid").and_then(Value::as_str).map(str::to_owned),
                reason,
            )),
        }
    }
    Some(set)
}

/// More keys than this in one set is a misconfiguration (or an attack); the rest is ignored.
const MAX_KEYS: usize = 64;
/// Without a `kid`, at most this many keys of the right type are tried.
const MAX_UNNAMED_CANDIDATES: usize = 4;

/// How long fetched keys are used before they are fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness when the response has no `Cache-Control` max-age.
    pub default_ttl: Duration,
    /// Bounds applied to what `Cache-Control` says (and to `no-store`).
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// At most one fetch per this interval, whatever triggers it (unknown `kid`, expiry,
    /// failed attempts): a flood of bogus `kid`s cannot make us hammer the issuer.
    pub refetch_interval: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            default_ttl: Duration::from_secs(15 * 60),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            refetch_interval: Duration::from_secs(30),
        }
    }
}

impl CachePolicy {
    pub(crate) fn freshness(&self, directive: CacheDirective) -> Duration {
        match directive {
            CacheDirective::Unspecified => self.default_ttl,
            CacheDirective::DoNotCache => self.min_ttl,
            CacheDirective::MaxAge(d) => d,
        }
        .clamp(self.min_ttl, self.max_ttl.max(self.min_ttl))
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// RFC 8414 / OpenID discovery, then the `jwks_uri` it names.
    Discover,
    /// A configured `jwks_uri` (no discovery for keys).
    Jwks(Url),
    /// Keys known at startup (the embedded development issuer).
    Static,
}

#[derive(Debug)]
struct State {
    keys: Arc<[Arc<VerifyKey>]>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Whether the last fetch succeeded.
    last_ok: bool,
    metadata: Option<Arc<Metadata>>,
    last_metadata_attempt: Option<Instant>,
}

/// One trusted issuer and its keys.
#[derive(Debug)]
pub(crate) struct IssuerKeys {
    pub issuer: String,
    source: KeySource,
    policy: CachePolicy,
    http: Option<HttpClient>,
    state: RwLock<State>,
    /// Bumped whenever a fetch drops a key we had: tokens validated with the old set must
    /// be checked again.
    epoch: AtomicU64,
    fetching: tokio::sync::Mutex<()>,
    /// Single flight for discovery (separate: a key fetch may discover first).
    discovering: tokio::sync::Mutex<()>,
}

impl IssuerKeys {
    pub(crate) fn new(
        issuer: String,
        source: KeySource,
        policy: CachePolicy,
        http: Option<HttpClient>,
    ) -> IssuerKeys {
        IssuerKeys {
            issuer,
            source,
            policy,
            http,
            state: RwLock::new(State {
                keys: Arc::from(Vec::new()),
                fresh_until: None,
                last_attempt: None,
                last_ok: false,
                metadata: None,
                last_metadata_attempt: None,
            }),
            epoch: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            discovering: tokio::sync::Mutex::new(()),
        }
    }

    /// An issuer whose keys never change.
    pub(crate) fn fixed(issuer: String, keys: Vec<Arc<VerifyKey>>) -> IssuerKeys {
        let me = IssuerKeys::new(issuer, KeySource::Static, CachePolicy::default(), None);
        me.state.write().keys = Arc::from(keys);
        me
    }

    pub(crate) fn is_static(&self) -> bool {
        matches!(self.source, KeySource::Static)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The keys that may verify a token with this `kid` and `alg`: one with a `kid`, a few
    /// of the right type without. Fetches keys when the `kid` is unknown (at most once per
    /// interval) and refreshes expired ones in the background.
    pub(crate) async fn candidates(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<VerifyKey>>, Rejection> {
        let now = Instant::now();
        let (keys, stale, may_fetch, last_ok) = {
            let s = self.state.read();
            (
                s.keys.clone(),
                s.fresh_until.is_none_or(|t| now >= t),
                self.may_fetch(s.last_attempt, now),
                s.last_ok,
            )
        };
        if matches!(self.source, KeySource::Static) {
            return select(&keys, kid, alg);
        }
        match select(&keys, kid, alg) {
            Ok(found) => {
                if stale && may_fetch {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.refresh().await {
                            tracing::warn!(issuer = %me.issuer, error = %e, "cannot refresh signing keys; keeping the cached ones");
                        }
                    });
                }
                Ok(found)
            }
            Err(Rejection::UnknownKey) if may_fetch => match self.refresh().await {
                Ok(()) => {
                    let keys = self.state.read().keys.clone();
                    select(&keys, kid, alg)
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "cannot fetch signing keys");
                    Err(Rejection::IssuerUnavailable)
                }
            },
            // Too soon to fetch again, and the last fetch failed: whether the issuer has this
            // key is unknown, so the token cannot be checked now (not: it is invalid).
            Err(Rejection::UnknownKey) if !last_ok => Err(Rejection::IssuerUnavailable),
            Err(r) => Err(r),
        }
    }

    fn may_fetch(&self, last: Option<Instant>, now: Instant) -> bool {
        last.is_none_or(|t| now.duration_since(t) >= self.policy.refetch_interval)
    }

    /// Fetches the key set now (single flight: concurrent callers wait for one fetch and
    /// share its result).
    pub(crate) async fn refresh(&self) -> Result<(), KeyError> {
        let observed = self.state.read().last_attempt;
        let _guard = self.fetching.lock().await;
        {
            let s = self.state.read();
            if s.last_attempt != observed {
                // Someone fetched while we waited: share their outcome.
                return if s.last_ok {
                    Ok(())
                } else {
                    Err(KeyError::NotLoaded)
                };
            }
        }
        let result = self.fetch().await;
        let now = Instant::now();
        let mut s = self.state.write();
        s.last_attempt = Some(now);
        s.last_ok = result.is_ok();
        match result {
            Ok((set, directive)) => {
                for (kid, reason) in &set.skipped {
                    tracing::debug!(issuer = %self.issuer, kid = kid.as_deref().unwrap_or(""), %reason, "key ignored");
                }
                let dropped = s
                    .keys
                    .iter()
                    .any(|old| !set.keys.iter().any(|new| new.same_key(old)));
                if dropped {
                    self.epoch.fetch_add(1, Ordering::AcqRel);
                }
                tracing::debug!(issuer = %self.issuer, keys = set.keys.len(), "signing keys fetched");
                s.keys = Arc::from(set.keys);
                s.fresh_until = Some(now + self.policy.freshness(directive));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch(&self) -> Result<(ParsedSet, CacheDirective), KeyError> {
        let http = self.http.as_ref().ok_or(KeyError::NotLoaded)?;
        let uri = match &self.source {
            KeySource::Static => return Err(KeyError::NotLoaded),
            KeySource::Jwks(uri) => uri.clone(),
            KeySource::Discover => self
                .metadata()
                .await?
                .jwks_uri
                .clone()
                .ok_or_else(|| KeyError::NoJwksUri(self.issuer.clone()))?,
        };
        let fetched = http.get_json(&uri, MAX_DOCUMENT_BYTES).await?;
        let set = parse_set(&fetched.body).ok_or_else(|| KeyError::NotAKeySet(uri.to_string()))?;
        Ok((set, fetched.cache))
    }

    /// The issuer's metadata, discovered once (retried at most once per interval).
    /// Concurrent callers wait for the discovery in flight and share its outcome.
    pub(crate) async fn metadata(&self) -> Result<Arc<Metadata>, KeyError> {
        if let Some(m) = &self.state.read().metadata {
            return Ok(m.clone());
        }
        let _guard = self.discovering.lock().await;
        let now = Instant::now();
        {
            let s = self.state.read();
            if let Some(m) = &s.metadata {
                return Ok(m.clone());
            }
            if !self.may_fetch(s.last_metadata_attempt, now) {
                return Err(KeyError::NotLoaded);
            }
        }
        let http = self.http.as_ref().ok_or(KeyError::NotLoaded)?;
        self.state.write().last_metadata_attempt = Some(now);
        let metadata = Arc::new(discovery::discover(http, &self.issuer).await?);
        self.state.write().metadata = Some(metadata.clone());
        Ok(metadata)
    }
}

/// Chooses the keys for a token: with a `kid`, the key(s) of that id that fit `alg`; a
/// `kid` we know only for other algorithms is a mismatch, not a reason to refetch.
fn select(
    keys: &[Arc<VerifyKey>],
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<Vec<Arc<VerifyKey>>, Rejection> {
    match kid {
        Some(kid) => {
            let named: Vec<&Arc<VerifyKey>> = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if named.is_empty() {
                return Err(Rejection::UnknownKey);
            }
            let fitting: Vec<Arc<VerifyKey>> =
                named.into_iter().filter(|k| k.fits(alg)).cloned().collect();
            if fitting.is_empty() {
                Err(Rejection::KeyMismatch)
            } else {
                Ok(fitting)
            }
        }
        None => {
            let fitting: Vec<Arc<VerifyKey>> = keys
                .iter()
                .filter(|k| k.fits(alg))
                .take(MAX_UNNAMED_CANDIDATES)
                .cloned()
                .collect();
            if fitting.is_empty() {
                Err(Rejection::UnknownKey)
            } else {
                Ok(fitting)
            }
        }
    }
}

/// Why keys could not be obtained.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    #[error("the metadata of {0} has no jwks_uri")]
    NoJwksUri(String),
    #[error("{0} is not a JWK set")]
    NotAKeySet(String),
    #[error("keys not loaded yet")]
    NotLoaded,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A real 2048-bit RSA public key (n) and P-256 / Ed25519 points.
    pub(crate) const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn rsa(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"})
    }

    #[test]
    fn key_types_fit_only_their_algorithms() {
        let r = VerifyKey::from_jwk(&rsa("r")).unwrap();
        assert!(r.fits(Algorithm::RS256) && r.fits(Algorithm::PS512));
        assert!(
            !r.fits(Algorithm::ES256) && !r.fits(Algorithm::HS256) && !r.fits(Algorithm::EdDSA)
        );
        let ec =
            VerifyKey::from_jwk(&json!({"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y}))
                .unwrap();
        assert!(
            ec.fits(Algorithm::ES256) && !ec.fits(Algorithm::ES384) && !ec.fits(Algorithm::RS256)
        );
        let ed = VerifyKey::from_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": ED_X})).unwrap();
        assert!(ed.fits(Algorithm::EdDSA) && !ed.fits(Algorithm::ES256));
    }

    #[test]
    fn a_declared_alg_restricts_the_key() {
        let mut jwk = rsa("r");
        jwk["alg"] = json!("PS256");
        let k = VerifyKey::from_jwk(&jwk).unwrap();
        assert!(k.fits(Algorithm::PS256));
        assert!(!k.fits(Algorithm::RS256));
        jwk["alg"] = json!("ES256");
        assert_eq!(
            VerifyKey::from_jwk(&jwk).unwrap_err(),
            SkipReason::AlgMismatch
        );
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let cases = [
            (
                json!({"kty": "oct", "k": "c2VjcmV0"}),
                SkipReason::Symmetric,
            ),
            (
                json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
                SkipReason::WeakRsa,
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQ"}),
                SkipReason::WeakRsa,
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "use": "enc"}),
                SkipReason::NotForSignatures,
            ),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "key_ops": ["encrypt"]}),
                SkipReason::NotForSignatures,
            ),
            (
                json!({"kty": "EC", "crv": "P-521", "x": P256_X, "y": P256_Y}),
                SkipReason::Unsupported,
            ),
            (
                json!({"kty": "EC", "crv": "P-384", "x": P256_X, "y": P256_Y}),
                SkipReason::Malformed,
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": ED_X}),
                SkipReason::Unsupported,
            ),
            (json!({"kty": "RSA"}), SkipReason::Unsupported),
            (
                json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": 5}),
                SkipReason::Unparsable,
            ),
        ];
        for (jwk, reason) in cases {
            assert_eq!(VerifyKey::from_jwk(&jwk).unwrap_err(), reason, "{jwk}");
        }
    }

    #[test]
    fn one_bad_key_does_not_spoil_the_set() {
        let doc = json!({"keys": [{"kty": "RSA"}, rsa("good"), {"kty": "oct", "k": "eA"}]});
        let set = parse_set(doc.as_object().unwrap()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
        assert_eq!(set.skipped.len(), 2);
        assert!(parse_set(json!({"keys": 1}).as_object().unwrap()).is_none());
    }

    #[test]
    fn selection_by_kid_and_algorithm() {
        let keys: Vec<Arc<VerifyKey>> = vec![
            Arc::new(VerifyKey::from_jwk(&rsa("a")).unwrap()),
            Arc::new(VerifyKey::from_jwk(&rsa("b")).unwrap()),
        ];
        assert_eq!(
            select(&keys, Some("b"), Algorithm::RS256).unwrap()[0]
                .kid
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            select(&keys, Some("c"), Algorithm::RS256).unwrap_err(),
            Rejection::UnknownKey
        );
        assert_eq!(
            select(&keys, Some("a"), Algorithm::ES256).unwrap_err(),
            Rejection::KeyMismatch
        );
        assert_eq!(select(&keys, None, Algorithm::RS256).unwrap().len(), 2);
        assert_eq!(
            select(&keys, None, Algorithm::EdDSA).unwrap_err(),
            Rejection::UnknownKey
        );
    }

    #[test]
    fn freshness_is_bounded() {
        let p = CachePolicy {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(30),
        };
        assert_eq!(
            p.freshness(CacheDirective::Unspecified),
            Duration::from_secs(600)
        );
        assert_eq!(
            p.freshness(CacheDirective::DoNotCache),
            Duration::from_secs(60)
        );
        assert_eq!(
            p.freshness(CacheDirective::MaxAge(Duration::from_secs(5))),
            Duration::from_secs(60)
        );
        assert_eq!(
            p.freshness(CacheDirective::MaxAge(Duration::from_secs(86400))),
            Duration::from_secs(3600)
        );
        assert_eq!(
            p.freshness(CacheDirective::MaxAge(Duration::from_secs(900))),
            Duration::from_secs(900)
        );
    }
}
