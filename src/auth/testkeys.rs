//! Test keys and a token signer that does not use the code under test (aws-lc-rs directly),
//! so forged and well-formed tokens alike come from an independent implementation.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub(crate) enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

pub(crate) struct TestKey {
    pub kid: String,
    /// The public JWK (with `kid`).
    pub jwk: Value,
    signer: Signer,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key(kid: &str) -> TestKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    TestKey {
        kid: kid.into(),
        jwk: json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)}),
        signer: Signer::Rsa(pair),
    }
}

fn ec_key(kid: &str, p384: bool) -> TestKey {
    let (alg, crv, len) = if p384 {
        (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48)
    } else {
        (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
    };
    let pair = EcdsaKeyPair::generate(alg).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    TestKey {
        kid: kid.into(),
        jwk: json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])}),
        signer: Signer::Ec(pair),
    }
}

fn ed_key(kid: &str) -> TestKey {
    let pair = Ed25519KeyPair::generate().unwrap();
    let x = b64(pair.public_key().as_ref());
    TestKey {
        kid: kid.into(),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}),
        signer: Signer::Ed(pair),
    }
}

pub(crate) fn rsa() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| rsa_key("rsa-1"))
}

pub(crate) fn rsa2() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| rsa_key("rsa-2"))
}

pub(crate) fn p256() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| ec_key("ec-256", false))
}

pub(crate) fn p384() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| ec_key("ec-384", true))
}

pub(crate) fn ed25519() -> &'static TestKey {
    static K: OnceLock<TestKey> = OnceLock::new();
    K.get_or_init(|| ed_key("ed-1"))
}

/// `header.payload` of a token.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    )
}

impl TestKey {
    /// Signs with `alg` (which must suit the key) whatever the header says.
    pub(crate) fn sign(&self, alg: &str, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let rng = SystemRandom::new();
        let sig = match &self.signer {
            Signer::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("{other} is not an RSA algorithm"),
                };
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            Signer::Ec(pair) => pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A typed access token header for this key.
    pub(crate) fn header(&self, alg: &str) -> Value {
        json!({"alg": alg, "typ": "at+jwt", "kid": self.kid})
    }
}

/// An HMAC-signed token (any header).
pub(crate) fn sign_hmac(secret: &[u8], alg: &str, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let a = match alg {
        "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        _ => aws_lc_rs::hmac::HMAC_SHA512,
    };
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(a, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// `header.payload.` with an empty signature (`alg: none` style).
pub(crate) fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}
