//! The cost of checking a bearer token with a warm key cache.
//!
//! `cargo bench --bench auth`. An issuer on loopback serves RSA-2048, P-256 and Ed25519 keys;
//! the authenticator fetches them once, then each scenario times single `authenticate` calls:
//! a full check (signature and claims, token cache off) per algorithm, and a repeated token
//! answered from the cache of validated tokens (what a client's second and later requests
//! cost). For scale, the signature verification alone (aws-lc-rs, called directly) is timed
//! too. Prints p50 / p90 / p99 per call. Nothing asserts on time; the goal is printed as
//! met or not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unreachable_pub
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt;
use mcp_warden::auth::{
    AuthConfig, Authenticator, CachePolicy, IssuerConfig, Resource, Resources, ScopeRules,
};
use serde_json::{Value, json};
use url::Url;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";
const ITERATIONS: usize = 20_000;
const GOAL: Duration = Duration::from_micros(20);

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl Key {
    fn jwk(&self, kid: &str) -> Value {
        match self {
            Key::Rsa(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty":"RSA","kid":kid,"n":b64(&c.n),"e":b64(&c.e)})
            }
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty":"EC","crv":"P-256","kid":kid,"x":b64(&p[1..33]),"y":b64(&p[33..])})
            }
            Key::Ed(k) => {
                json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":b64(k.public_key().as_ref())})
            }
        }
    }

    /// Verifies a token's signature with aws-lc-rs directly, as the floor of a full check.
    fn verify_only(&self, token: &str) -> bool {
        use signature::VerificationAlgorithm as _;
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        match self {
            Key::Rsa(k) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(k.public_key());
                c.verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    input.as_bytes(),
                    &sig,
                )
                .is_ok()
            }
            Key::Ec(k) => signature::ECDSA_P256_SHA256_FIXED
                .verify_sig(k.public_key().as_ref(), input.as_bytes(), &sig)
                .is_ok(),
            Key::Ed(k) => signature::ED25519
                .verify_sig(k.public_key().as_ref(), input.as_bytes(), &sig)
                .is_ok(),
        }
    }

    fn sign(&self, alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Key::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Key::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn config(issuer: &str, token_cache: usize) -> AuthConfig {
    let url = Url::parse(RESOURCE).unwrap();
    AuthConfig {
        resources: Resources {
            streamable: Resource::new(&url, ""),
            legacy: None,
            origin: None,
        },
        extra_audiences: vec![],
        issuers: vec![IssuerConfig {
            issuer: issuer.to_owned(),
            jwks_uri: Some(Url::parse(&format!("{issuer}/jwks")).unwrap()),
        }],
        local: None,
        required_scopes: vec![],
        scopes_supported: vec![],
        scope_rules: ScopeRules::new([("mcp:admin".to_owned(), vec!["mcp:tools".to_owned()])]),
        resource_name: "bench".into(),
        leeway: Duration::from_secs(60),
        max_token_bytes: 8192,
        accept_untyped_jwt: false,
        hmac_secret: None,
        introspection: None,
        jwks: CachePolicy::default(),
        extra_ca_pem: None,
        http_timeout: Duration::from_secs(5),
        token_cache_capacity: token_cache,
    }
}

/// Times `ITERATIONS` single calls; returns sorted per-call durations.
fn measure(auth: &Authenticator, token: &str) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        // With warm keys nothing awaits: the call completes on its first poll.
        let result = auth
            .authenticate(token, mcp_warden::auth::Endpoint::Streamable)
            .now_or_never()
            .expect("no I/O with a warm key cache");
        let elapsed = start.elapsed();
        assert!(result.is_ok());
        samples.push(elapsed);
    }
    samples.sort();
    samples
}

fn pct(s: &[Duration], p: f64) -> Duration {
    s[((s.len() as f64 * p) as usize).min(s.len() - 1)]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys = [
        (
            "RS256",
            "rsa",
            Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()),
        ),
        (
            "ES256",
            "p256",
            Key::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()),
        ),
        ("EdDSA", "ed", Key::Ed(Ed25519KeyPair::generate().unwrap())),
    ];
    let jwks = json!({"keys": keys.iter().map(|(_, kid, k)| k.jwk(kid)).collect::<Vec<_>>()});
    let issuer = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let body = jwks.to_string();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        issuer
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": issuer, "sub": "bench-user", "aud": RESOURCE, "iat": now, "exp": now + 3600,
        "jti": "bench-token-1", "client_id": "bench", "scope": "mcp:admin",
    });

    println!(
        "token check, warm key cache, {ITERATIONS} calls each (goal: p50 well under {GOAL:?})"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "scenario", "p50", "p90", "p99"
    );
    for (alg, kid, key) in &keys {
        let token = key.sign(alg, kid, &claims);
        let mut s: Vec<Duration> = (0..ITERATIONS)
            .map(|_| {
                let start = Instant::now();
                assert!(key.verify_only(&token));
                start.elapsed()
            })
            .collect();
        s.sort();
        println!(
            "{:<44} {:>10.2?} {:>10.2?} {:>10.2?}",
            format!("signature only (aws-lc-rs), {alg}"),
            pct(&s, 0.50),
            pct(&s, 0.90),
            pct(&s, 0.99)
        );
    }
    for (token_cache, label) in [
        (0, "full check"),
        (10_000, "repeat token (cache of validated tokens)"),
    ] {
        let auth = Authenticator::new(config(&issuer, token_cache)).unwrap();
        for (alg, kid, key) in &keys {
            let token = key.sign(alg, kid, &claims);
            // The first call fetches the key set.
            let _guard = runtime.enter();
            runtime
                .block_on(auth.authenticate(&token, mcp_warden::auth::Endpoint::Streamable))
                .unwrap();
            let s = measure(&auth, &token);
            let p50 = pct(&s, 0.50);
            println!(
                "{:<44} {:>10.2?} {:>10.2?} {:>10.2?}{}",
                format!("{label}, {alg}"),
                p50,
                pct(&s, 0.90),
                pct(&s, 0.99),
                if p50 < GOAL { "" } else { "  (goal not met)" }
            );
        }
    }
}
