//! The authenticator end to end against a scripted authorization server: every accepted
//! shape, and every attack refused with its reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use url::Url;

use super::testkeys::{self, TestKey};
use super::testserver::{Reply, TestServer};
use super::*;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

fn resources() -> Resources {
    Resources {
        streamable: Resource::new(&Url::parse(RESOURCE).unwrap(), ""),
        legacy: Some(Resource::new(
            &Url::parse("http://127.0.0.1:8080/sse").unwrap(),
            "",
        )),
        origin: None,
    }
}

fn config(issuer: &str, jwks_uri: Option<String>) -> AuthConfig {
    AuthConfig {
        resources: resources(),
        extra_audiences: vec![],
        issuers: vec![IssuerConfig {
            issuer: issuer.to_owned(),
            jwks_uri: jwks_uri.map(|u| Url::parse(&u).unwrap()),
        }],
        local: None,
        required_scopes: vec![],
        scopes_supported: vec![],
        scope_rules: ScopeRules::new([("mcp:admin".to_owned(), vec!["mcp:tools".to_owned()])]),
        resource_name: "test".into(),
        leeway: Duration::from_secs(60),
        max_token_bytes: 8192,
        accept_untyped_jwt: false,
        hmac_secret: None,
        introspection: None,
        jwks: CachePolicy {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            refetch_interval: Duration::from_millis(200),
        },
        extra_ca_pem: None,
        http_timeout: Duration::from_secs(2),
        token_cache_capacity: 1000,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Fixture {
    server: TestServer,
    auth: Authenticator,
    issuer: String,
}

impl Fixture {
    /// An issuer serving `keys` via discovery.
    async fn new(keys: &[&TestKey]) -> Fixture {
        Fixture::with(keys, |c| c).await
    }

    async fn with(keys: &[&TestKey], tweak: impl FnOnce(AuthConfig) -> AuthConfig) -> Fixture {
        let server = TestServer::start().await;
        let issuer = server.base.clone();
        server.route(
            "/.well-known/oauth-authorization-server",
            Reply::json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"), "introspection_endpoint": format!("{issuer}/introspect")})),
        );
        let f = Fixture {
            auth: Authenticator::new(tweak(config(&issuer, None))).unwrap(),
            server,
            issuer,
        };
        f.serve_keys(keys);
        f
    }

    fn serve_keys(&self, keys: &[&TestKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        self.server
            .route("/jwks", Reply::json(json!({ "keys": keys })));
    }

    fn claims(&self) -> Value {
        let t = now();
        json!({
            "iss": self.issuer, "sub": "alice", "aud": RESOURCE, "exp": t + 300, "iat": t,
            "jti": "j-1", "client_id": "cli", "scope": "mcp:admin",
        })
    }

    async fn check(&self, token: &str) -> Result<Arc<Principal>, Rejection> {
        self.auth.authenticate(token, Endpoint::Streamable).await
    }
}

#[tokio::test]
async fn every_supported_algorithm_is_accepted() {
    let f = Fixture::new(&[
        testkeys::rsa(),
        testkeys::p256(),
        testkeys::p384(),
        testkeys::ed25519(),
    ])
    .await;
    let cases: [(&TestKey, &str); 9] = [
        (testkeys::rsa(), "RS256"),
        (testkeys::rsa(), "RS384"),
        (testkeys::rsa(), "RS512"),
        (testkeys::rsa(), "PS256"),
        (testkeys::rsa(), "PS384"),
        (testkeys::rsa(), "PS512"),
        (testkeys::p256(), "ES256"),
        (testkeys::p384(), "ES384"),
        (testkeys::ed25519(), "EdDSA"),
    ];
    for (key, alg) in cases {
        let mut claims = f.claims();
        claims["jti"] = json!(alg);
        let token = key.sign(alg, &key.header(alg), &claims);
        let p = f
            .check(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(p.issuer, f.issuer);
        assert_eq!(p.subject, "alice");
        assert_eq!(p.client_id.as_deref(), Some("cli"));
        assert_eq!(p.token_ref.as_deref(), Some(format!("jti:{alg}").as_str()));
        assert!(
            p.has_scope("mcp:admin") && p.has_scope("mcp:tools"),
            "implied scope"
        );
        assert!(p.expires_at.is_some());
    }
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused() {
    let f = Fixture::new(&[testkeys::rsa(), testkeys::p256()]).await;
    let rsa = testkeys::rsa();
    let good = || f.claims();
    let sign = |claims: &Value| rsa.sign("RS256", &rsa.header("RS256"), claims);
    let t = now();
    let with = |k: &str, v: Value| {
        let mut c = good();
        c[k] = v;
        c
    };

    let valid = sign(&good());
    assert!(f.check(&valid).await.is_ok());

    // Expired, not yet valid, issued in the future (beyond the 60 s leeway).
    assert_eq!(
        f.check(&sign(&with("exp", json!(t - 61))))
            .await
            .unwrap_err(),
        Rejection::Expired
    );
    assert_eq!(
        f.check(&sign(&with("nbf", json!(t + 120))))
            .await
            .unwrap_err(),
        Rejection::NotYetValid
    );
    assert_eq!(
        f.check(&sign(&with("iat", json!(t + 120))))
            .await
            .unwrap_err(),
        Rejection::NotYetValid
    );
    // Within the leeway: accepted.
    assert!(f.check(&sign(&with("exp", json!(t - 30)))).await.is_ok());
    // Wrong issuer, wrong audience, no audience.
    assert_eq!(
        f.check(&sign(&with("iss", json!("https://evil.example"))))
            .await
            .unwrap_err(),
        Rejection::UnknownIssuer
    );
    assert_eq!(
        f.check(&sign(&with("aud", json!("http://127.0.0.1:8080/other"))))
            .await
            .unwrap_err(),
        Rejection::WrongAudience
    );
    let mut no_aud = good();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        f.check(&sign(&no_aud)).await.unwrap_err(),
        Rejection::MissingClaim("aud")
    );
    let mut no_exp = good();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        f.check(&sign(&no_exp)).await.unwrap_err(),
        Rejection::MissingClaim("exp")
    );

    // alg: none, with and without a signature part.
    let none = json!({"alg": "none", "typ": "at+jwt", "kid": rsa.kid});
    assert_eq!(
        f.check(&testkeys::unsigned(&none, &good()))
            .await
            .unwrap_err(),
        Rejection::MalformedToken
    );
    let none_sig = format!("{}.c2ln", testkeys::signing_input(&none, &good()));
    assert_eq!(
        f.check(&none_sig).await.unwrap_err(),
        Rejection::AlgorithmNotAllowed
    );

    // HS256 "signed" with the RSA public key (as JWK and as the modulus): no HMAC secret
    // is configured, so HMAC is not an option at all.
    let hs = json!({"alg": "HS256", "typ": "at+jwt", "kid": rsa.kid});
    for secret in [
        rsa.jwk.to_string().into_bytes(),
        rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let forged = testkeys::sign_hmac(&secret, "HS256", &hs, &good());
        assert_eq!(
            f.check(&forged).await.unwrap_err(),
            Rejection::AlgorithmNotAllowed
        );
    }

    // Tampered payload (signature of another payload) and tampered signature.
    let other = sign(&with("sub", json!("bob")));
    let mut parts: Vec<&str> = valid.split('.').collect();
    let other_payload = other.split('.').nth(1).unwrap();
    parts[1] = other_payload;
    assert_eq!(
        f.check(&parts.join(".")).await.unwrap_err(),
        Rejection::BadSignature
    );
    let sig = valid.rsplit('.').next().unwrap();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    let tampered = format!("{}.{flipped}", &valid[..valid.len() - sig.len() - 1]);
    assert_eq!(
        f.check(&tampered).await.unwrap_err(),
        Rejection::BadSignature
    );

    // A key of the wrong type for the alg: ES256 header naming the RSA key; ES384 naming a
    // P-256 key; RS256 naming the EC key.
    let p256 = testkeys::p256();
    let es_with_rsa_kid = p256.sign(
        "ES256",
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": rsa.kid}),
        &good(),
    );
    assert_eq!(
        f.check(&es_with_rsa_kid).await.unwrap_err(),
        Rejection::KeyMismatch
    );
    let es384_with_p256 = p256.sign(
        "ES256",
        &json!({"alg": "ES384", "typ": "at+jwt", "kid": p256.kid}),
        &good(),
    );
    assert_eq!(
        f.check(&es384_with_p256).await.unwrap_err(),
        Rejection::KeyMismatch
    );
    let rs_with_ec_kid = rsa.sign(
        "RS256",
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": p256.kid}),
        &good(),
    );
    assert_eq!(
        f.check(&rs_with_ec_kid).await.unwrap_err(),
        Rejection::KeyMismatch
    );

    // Signed by a key the issuer never published, under a kid it does publish.
    let stranger = testkeys::rsa2();
    let impostor = stranger.sign("RS256", &rsa.header("RS256"), &good());
    assert_eq!(
        f.check(&impostor).await.unwrap_err(),
        Rejection::BadSignature
    );

    // Untyped or ID-token-typed.
    let jwt_typed = rsa.sign(
        "RS256",
        &json!({"alg": "RS256", "typ": "JWT", "kid": rsa.kid}),
        &good(),
    );
    assert_eq!(
        f.check(&jwt_typed).await.unwrap_err(),
        Rejection::WrongTokenType
    );

    // Oversized.
    let big = sign(&with("pad", json!("x".repeat(9000))));
    assert_eq!(f.check(&big).await.unwrap_err(), Rejection::TokenTooLarge);

    // Garbage, and an opaque token with no introspection configured.
    assert_eq!(
        f.check("a.b.c").await.unwrap_err(),
        Rejection::MalformedToken
    );
    assert_eq!(
        f.check("opaque-token-value").await.unwrap_err(),
        Rejection::MalformedToken
    );

    // Sender-constrained (DPoP-bound) token presented as a bearer token.
    let bound = sign(&with(
        "cnf",
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
    ));
    assert_eq!(
        f.check(&bound).await.unwrap_err(),
        Rejection::SenderConstrained
    );
}

#[tokio::test]
async fn hmac_only_with_the_configured_secret() {
    let secret = "a-shared-secret-of-at-least-32-bytes!!";
    let f = Fixture::with(&[testkeys::rsa()], |mut c| {
        c.hmac_secret = Some(Secret::new(secret));
        c
    })
    .await;
    let hs = json!({"alg": "HS256", "typ": "at+jwt"});
    let ok = testkeys::sign_hmac(secret.as_bytes(), "HS256", &hs, &f.claims());
    assert!(f.check(&ok).await.is_ok());
    // Even with HMAC enabled, the RSA public key is never an HMAC key.
    let rsa = testkeys::rsa();
    let hs_kid = json!({"alg": "HS256", "typ": "at+jwt", "kid": rsa.kid});
    let forged = testkeys::sign_hmac(
        rsa.jwk.to_string().as_bytes(),
        "HS256",
        &hs_kid,
        &f.claims(),
    );
    assert_eq!(f.check(&forged).await.unwrap_err(), Rejection::BadSignature);
}

#[tokio::test]
async fn keys_are_discovered_once_and_cached() {
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let rsa = testkeys::rsa();
    for i in 0..5 {
        let mut c = f.claims();
        c["jti"] = json!(i);
        f.check(&rsa.sign("RS256", &rsa.header("RS256"), &c))
            .await
            .unwrap();
    }
    assert_eq!(f.server.hits("/.well-known/oauth-authorization-server"), 1);
    assert_eq!(f.server.hits("/jwks"), 1);
}

#[tokio::test]
async fn openid_configuration_is_the_fallback() {
    let server = TestServer::start().await;
    let issuer = format!("{}/realms/main", server.base);
    server.route(
        "/realms/main/.well-known/openid-configuration",
        Reply::json(json!({"issuer": issuer, "jwks_uri": format!("{}/certs", server.base)})),
    );
    let rsa = testkeys::rsa();
    server.route("/certs", Reply::json(json!({"keys": [rsa.jwk]})));
    let auth = Authenticator::new(config(&issuer, None)).unwrap();
    let t = now();
    let claims = json!({"iss": issuer, "sub": "a", "aud": RESOURCE, "exp": t + 60});
    auth.authenticate(
        &rsa.sign("RS256", &rsa.header("RS256"), &claims),
        Endpoint::Streamable,
    )
    .await
    .unwrap();
    assert_eq!(
        server.hits("/.well-known/oauth-authorization-server/realms/main"),
        1
    );
    assert_eq!(
        server.hits("/realms/main/.well-known/openid-configuration"),
        1
    );
}

#[tokio::test]
async fn metadata_for_another_issuer_is_refused() {
    let server = TestServer::start().await;
    server.route(
        "/.well-known/oauth-authorization-server",
        Reply::json(
            json!({"issuer": "https://evil.example", "jwks_uri": format!("{}/jwks", server.base)}),
        ),
    );
    let rsa = testkeys::rsa();
    server.route("/jwks", Reply::json(json!({"keys": [rsa.jwk]})));
    let auth = Authenticator::new(config(&server.base, None)).unwrap();
    let claims = json!({"iss": server.base, "sub": "a", "aud": RESOURCE, "exp": now() + 60});
    let r = auth
        .authenticate(
            &rsa.sign("RS256", &rsa.header("RS256"), &claims),
            Endpoint::Streamable,
        )
        .await;
    assert_eq!(r.unwrap_err(), Rejection::IssuerUnavailable);
    assert_eq!(server.hits("/jwks"), 0);
}

#[tokio::test]
async fn rotation_new_key_accepted_and_removed_key_refused() {
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let (old, new) = (testkeys::rsa(), testkeys::rsa2());
    let old_token = old.sign("RS256", &old.header("RS256"), &f.claims());
    f.check(&old_token).await.unwrap();

    // The issuer adds a key; a token with the new kid triggers a refetch (once the
    // refetch interval has passed since the last fetch).
    f.serve_keys(&[old, new]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new_token = new.sign("RS256", &new.header("RS256"), &f.claims());
    f.check(&new_token).await.unwrap();
    assert_eq!(f.server.hits("/jwks"), 2);
    f.check(&old_token).await.unwrap();

    // The issuer drops the old key. Once the keys are fetched again (an unknown kid
    // arrives), the old key's token is refused, even though it was cached as valid.
    f.serve_keys(&[new]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let bogus = old.sign(
        "RS256",
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "nope"}),
        &f.claims(),
    );
    assert_eq!(f.check(&bogus).await.unwrap_err(), Rejection::UnknownKey);
    assert_eq!(f.server.hits("/jwks"), 3);
    assert_eq!(
        f.check(&old_token).await.unwrap_err(),
        Rejection::UnknownKey
    );
    f.check(&new_token).await.unwrap();
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_interval() {
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let rsa = testkeys::rsa();
    f.check(&rsa.sign("RS256", &rsa.header("RS256"), &f.claims()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = f.server.hits("/jwks");
    let started = std::time::Instant::now();
    for i in 0..200 {
        let h = json!({"alg": "RS256", "typ": "at+jwt", "kid": format!("bogus-{i}")});
        assert_eq!(
            f.check(&rsa.sign("RS256", &h, &f.claims()))
                .await
                .unwrap_err(),
            Rejection::UnknownKey
        );
    }
    // 200 unknown kids: one fetch per started interval (200 ms), not one per kid.
    let intervals = (started.elapsed().as_millis() / 200) as usize + 1;
    let fetched = f.server.hits("/jwks") - before;
    assert!(
        fetched >= 1 && fetched <= intervals,
        "{fetched} fetches in {intervals} intervals"
    );
}

#[tokio::test]
async fn issuer_down_keeps_cached_keys_and_fails_closed_on_unknown_ones() {
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let rsa = testkeys::rsa();
    f.check(&rsa.sign("RS256", &rsa.header("RS256"), &f.claims()))
        .await
        .unwrap();
    f.server.set_down(true);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut c = f.claims();
    c["jti"] = json!("another");
    // A known key keeps working.
    f.check(&rsa.sign("RS256", &rsa.header("RS256"), &c))
        .await
        .unwrap();
    // An unknown key cannot be fetched: refused.
    let other = testkeys::rsa2();
    let r = f
        .check(&other.sign("RS256", &other.header("RS256"), &c))
        .await;
    assert_eq!(r.unwrap_err(), Rejection::IssuerUnavailable);
}

#[tokio::test]
async fn an_unknown_key_stays_unavailable_not_invalid_while_the_issuer_is_down() {
    // Between fetch attempts (at most one per refetch interval) the answer for a key we do
    // not have must still be "cannot check now" (503), not "invalid" (401): the last fetch
    // failed, so nothing says the issuer lacks the key.
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let rsa = testkeys::rsa();
    f.check(&rsa.sign("RS256", &rsa.header("RS256"), &f.claims()))
        .await
        .unwrap();
    f.server.set_down(true);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let other = testkeys::rsa2();
    for attempt in 0..3 {
        let mut c = f.claims();
        c["jti"] = json!(format!("attempt-{attempt}"));
        let r = f
            .check(&other.sign("RS256", &other.header("RS256"), &c))
            .await;
        assert_eq!(
            r.unwrap_err(),
            Rejection::IssuerUnavailable,
            "attempt {attempt}"
        );
    }
    // Once a fetch succeeds again, a key the issuer does not have is invalid.
    f.server.set_down(false);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut c = f.claims();
    c["jti"] = json!("after");
    let r = f
        .check(&other.sign("RS256", &other.header("RS256"), &c))
        .await;
    assert_eq!(r.unwrap_err(), Rejection::UnknownKey);
}

#[tokio::test]
async fn issuer_down_from_the_start_refuses_everything() {
    let server = TestServer::start().await;
    server.set_down(true);
    let auth = Authenticator::new(config(&server.base, None)).unwrap();
    let rsa = testkeys::rsa();
    let claims = json!({"iss": server.base, "sub": "a", "aud": RESOURCE, "exp": now() + 60});
    let r = auth
        .authenticate(
            &rsa.sign("RS256", &rsa.header("RS256"), &claims),
            Endpoint::Streamable,
        )
        .await;
    assert_eq!(r.unwrap_err(), Rejection::IssuerUnavailable);
}

#[tokio::test]
async fn explicit_jwks_uri_skips_discovery() {
    let server = TestServer::start().await;
    let rsa = testkeys::rsa();
    server.route("/keys", Reply::json(json!({"keys": [rsa.jwk]})));
    let auth =
        Authenticator::new(config(&server.base, Some(format!("{}/keys", server.base)))).unwrap();
    let claims = json!({"iss": server.base, "sub": "a", "aud": RESOURCE, "exp": now() + 60});
    auth.authenticate(
        &rsa.sign("RS256", &rsa.header("RS256"), &claims),
        Endpoint::Streamable,
    )
    .await
    .unwrap();
    assert_eq!(server.hits("/keys"), 1);
    assert_eq!(server.hits("/.well-known/oauth-authorization-server"), 0);
}

#[tokio::test]
async fn the_token_cache_keeps_expiry_exact() {
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let rsa = testkeys::rsa();
    let t = now();
    let mut c = f.claims();
    c["exp"] = json!(t + 10);
    let token = rsa.sign("RS256", &rsa.header("RS256"), &c);
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let p = f
        .auth
        .authenticate_at(&token, Endpoint::Streamable, at(t))
        .await
        .unwrap();
    // exp + leeway (60 s) is the first refused instant, cached or not.
    assert_eq!(p.expires_at, Some(at(t + 70)));
    assert!(
        f.auth
            .authenticate_at(&token, Endpoint::Streamable, at(t + 69))
            .await
            .is_ok()
    );
    assert_eq!(
        f.auth
            .authenticate_at(&token, Endpoint::Streamable, at(t + 70))
            .await
            .unwrap_err(),
        Rejection::Expired
    );
}

#[tokio::test]
async fn each_endpoint_accepts_its_own_resource_and_the_configured_extras() {
    let f = Fixture::with(&[testkeys::rsa()], |mut c| {
        c.extra_audiences = vec!["api://mcp".into()];
        c
    })
    .await;
    let rsa = testkeys::rsa();
    let token = |aud: &str| {
        let mut c = f.claims();
        c["aud"] = json!(aud);
        c["jti"] = json!(aud);
        rsa.sign("RS256", &rsa.header("RS256"), &c)
    };
    use Endpoint::{Legacy, Streamable};
    for (aud, streamable, legacy) in [
        ("http://127.0.0.1:8080/mcp", true, false),
        ("HTTP://127.0.0.1:8080/mcp/", true, false),
        ("http://127.0.0.1:8080/sse", false, true),
        ("api://mcp", true, true),
        // The origin is every service's on it: not ours unless configured.
        ("http://127.0.0.1:8080", false, false),
    ] {
        let t = token(aud);
        for (endpoint, accepted) in [(Streamable, streamable), (Legacy, legacy)] {
            let got = f.auth.authenticate(&t, endpoint).await;
            match accepted {
                true => assert!(got.is_ok(), "{aud} at {endpoint:?}: {got:?}"),
                false => assert_eq!(got.unwrap_err(), Rejection::WrongAudience, "{aud}"),
            }
        }
    }
    // Where the operator says the origin is ours alone, it opens every endpoint.
    let f = Fixture::with(&[testkeys::rsa()], |mut c| {
        c.resources.origin = Some(Resource::new(
            &Url::parse("http://127.0.0.1:8080").unwrap(),
            "",
        ));
        c
    })
    .await;
    let mut c = f.claims();
    c["aud"] = json!("http://127.0.0.1:8080");
    let t = rsa.sign("RS256", &rsa.header("RS256"), &c);
    assert!(f.auth.authenticate(&t, Streamable).await.is_ok());
    assert!(f.auth.authenticate(&t, Legacy).await.is_ok());
}

#[tokio::test]
async fn delegation_chain_and_hash_reference() {
    let f = Fixture::new(&[testkeys::rsa()]).await;
    let rsa = testkeys::rsa();
    let mut c = f.claims();
    c.as_object_mut().unwrap().remove("jti");
    c["act"] =
        json!({"sub": "agent", "client_id": "a1", "act": {"sub": "gateway", "iss": "https://up"}});
    let token = rsa.sign("RS256", &rsa.header("RS256"), &c);
    let p = f.check(&token).await.unwrap();
    assert_eq!(
        p.actors,
        vec![
            Actor {
                subject: "agent".into(),
                issuer: None,
                client_id: Some("a1".into())
            },
            Actor {
                subject: "gateway".into(),
                issuer: Some("https://up".into()),
                client_id: None
            },
        ]
    );
    let r = p.token_ref.as_deref().unwrap();
    assert!(r.starts_with("sha256:") && r.len() == 19, "{r}");
    assert_eq!(p.claim("client_id"), Some(&json!("cli")));
}

fn intro_config(f: AuthConfig) -> AuthConfig {
    AuthConfig {
        introspection: Some(IntrospectionConfig {
            endpoint: None,
            client_id: "rs client".into(),
            client_secret: Secret::new("s3cret:x"),
            cache_ttl: Duration::from_secs(60),
        }),
        ..f
    }
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached_by_hash() {
    let f = Fixture::with(&[], intro_config).await;
    f.server.route(
        "/introspect",
        Reply::json(json!({"active": true, "sub": "carol", "aud": RESOURCE, "scope": "mcp:tools", "exp": now() + 300, "client_id": "c"})),
    );
    let p = f.check("opaque-1").await.unwrap();
    assert_eq!(
        (p.subject.as_str(), p.issuer.as_str()),
        ("carol", f.issuer.as_str())
    );
    assert!(p.has_scope("mcp:tools"));
    assert!(p.token_ref.as_deref().unwrap().starts_with("sha256:"));
    f.check("opaque-1").await.unwrap();
    assert_eq!(
        f.server.hits("/introspect"),
        1,
        "second use answered from the cache"
    );
    let seen = f
        .server
        .seen()
        .into_iter()
        .find(|s| s.path == "/introspect")
        .unwrap();
    assert_eq!(seen.method, "POST");
    assert!(
        seen.body.contains("token=opaque-1") && seen.body.contains("token_type_hint=access_token")
    );
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("rs+client:s3cret%3Ax");
    assert!(
        seen.head.to_ascii_lowercase().contains(&format!(
            "authorization: basic {}",
            basic.to_ascii_lowercase()
        )),
        "{}",
        seen.head
    );

    f.server
        .route("/introspect", Reply::json(json!({"active": false})));
    assert_eq!(f.check("opaque-2").await.unwrap_err(), Rejection::Inactive);
    assert_eq!(f.check("opaque-2").await.unwrap_err(), Rejection::Inactive);
    assert_eq!(f.server.hits("/introspect"), 2, "refusals are cached too");
}

#[tokio::test]
async fn concurrent_first_requests_share_one_discovery() {
    let f = Fixture::with(&[], intro_config).await;
    f.server.route(
        "/introspect",
        Reply::json(json!({"active": true, "sub": "x", "aud": RESOURCE})),
    );
    f.server.set_delay(Duration::from_millis(300));
    let (a, b) = tokio::join!(f.check("opaque-a"), f.check("opaque-b"));
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(f.server.hits("/.well-known/oauth-authorization-server"), 1);
}

#[tokio::test]
async fn introspection_down_fails_closed() {
    let f = Fixture::with(&[], intro_config).await;
    f.server.route(
        "/introspect",
        Reply {
            status: 500,
            body: "{}".into(),
            headers: vec![],
        },
    );
    assert_eq!(
        f.check("opaque").await.unwrap_err(),
        Rejection::IssuerUnavailable
    );
    f.server.route(
        "/introspect",
        Reply::json(json!({"active": true, "sub": "x", "aud": RESOURCE})),
    );
    // Not remembered as a refusal: the next attempt asks again and succeeds.
    assert!(f.check("opaque").await.is_ok());
}

#[tokio::test]
async fn dev_issuer_tokens_verify() {
    let mut c = config("http://unused.invalid", None);
    c.issuers.clear();
    c.local = Some(LocalIssuerConfig {
        issuer: "http://127.0.0.1:8080".into(),
        key_file: None,
        create_key: false,
        verification_key_files: vec![],
        dev: true,
    });
    let auth = Authenticator::new(c).unwrap();
    let dev = auth.dev_issuer().unwrap();
    let token = dev
        .mint(
            &signer::TokenRequest {
                subject: "dev",
                audience: RESOURCE,
                scopes: &["mcp:tools".into()],
                client_id: "cli",
                lifetime: Duration::from_secs(60),
            },
            SystemTime::now(),
        )
        .unwrap();
    let p = auth
        .authenticate(&token, Endpoint::Streamable)
        .await
        .unwrap();
    assert_eq!(
        (p.issuer.as_str(), p.subject.as_str()),
        ("http://127.0.0.1:8080", "dev")
    );
    assert_eq!(
        auth.authorization_servers(),
        ["http://127.0.0.1:8080".to_owned()]
    );
    // Another dev issuer's key (same issuer name) is not trusted.
    let other = LocalIssuer::generate("http://127.0.0.1:8080").unwrap();
    let forged = other
        .mint(
            &signer::TokenRequest {
                subject: "dev",
                audience: RESOURCE,
                scopes: &[],
                client_id: "c",
                lifetime: Duration::from_secs(60),
            },
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        auth.authenticate(&forged, Endpoint::Streamable)
            .await
            .unwrap_err(),
        Rejection::UnknownKey
    );
}

#[tokio::test]
async fn disabled_authentication_is_anonymous() {
    let auth = Authenticator::disabled();
    assert!(!auth.is_enabled());
    assert_eq!(
        *auth
            .authenticate("anything", Endpoint::Streamable)
            .await
            .unwrap(),
        Principal::anonymous()
    );
}

/// Introspection asks the first issuer: its answer vouches for its own tokens only. An
/// answer naming another trusted issuer would let it speak for that issuer's users.
#[tokio::test]
async fn an_introspection_answer_speaks_only_for_the_issuer_that_gave_it() {
    let f = Fixture::with(&[], |c| {
        let mut c = intro_config(c);
        c.issuers.push(IssuerConfig {
            issuer: "https://other.example".into(),
            jwks_uri: Some(Url::parse("https://other.example/jwks").unwrap()),
        });
        c
    })
    .await;
    f.server.route(
        "/introspect",
        Reply::json(
            json!({"active": true, "iss": "https://other.example", "sub": "bob",
            "aud": RESOURCE, "exp": now() + 300}),
        ),
    );
    assert_eq!(
        f.check("opaque-foreign").await.unwrap_err(),
        Rejection::IssuerMismatch
    );
    // Its own issuer named, or none (RFC 7662 makes `iss` optional): the answering issuer.
    for iss in [json!(f.issuer), Value::Null] {
        let mut answer = json!({"active": true, "sub": "bob", "aud": RESOURCE,
            "exp": now() + 300});
        if !iss.is_null() {
            answer["iss"] = iss.clone();
        }
        f.server.route("/introspect", Reply::json(answer));
        let p = f.check(&format!("opaque-own-{iss}")).await.unwrap();
        assert_eq!(
            (p.issuer.as_str(), p.subject.as_str()),
            (f.issuer.as_str(), "bob")
        );
    }
}

/// A client-credentials answer (no `sub`) names a client acting for itself: never the user
/// whose subject reads like its client id, and no `sub` claim is made up for it (so a claim
/// injected into the server's environment cannot name that user either).
#[tokio::test]
async fn a_client_credentials_answer_is_a_client_not_a_user() {
    let f = Fixture::with(&[], intro_config).await;
    f.server.route(
        "/introspect",
        Reply::json(
            json!({"active": true, "client_id": "alice", "aud": RESOURCE,
            "exp": now() + 300}),
        ),
    );
    let p = f.check("opaque-client").await.unwrap();
    assert_eq!(p.kind, PrincipalKind::Client);
    assert_eq!(p.subject, "client:alice");
    assert_eq!(p.client_id.as_deref(), Some("alice"));
    assert_eq!(p.claim("sub"), None);
    let user = Principal::new(f.issuer.clone(), "alice");
    assert_ne!(p.session_key(), user.session_key());
    // With a `sub`, the subject is the principal, whatever the client.
    f.server.route(
        "/introspect",
        Reply::json(json!({"active": true, "sub": "alice", "client_id": "app",
            "aud": RESOURCE, "exp": now() + 300})),
    );
    let p = f.check("opaque-user").await.unwrap();
    assert_eq!(
        (p.kind, p.subject.as_str()),
        (PrincipalKind::Subject, "alice")
    );
    assert_eq!(p.session_key(), user.session_key());
}
