//! The embedded development issuer: one ES256 signing key (in memory, or in a key file so
//! restarts keep it), its JWKS and RFC 8414 metadata, and minting of RFC 9068 access tokens.
//! It has no authorization endpoint: tokens come from its startup banner or from
//! `mcp-warden token`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::jwks::VerifyKey;

/// Path of the development issuer's key set, relative to the issuer.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Why the development key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    // The io error is part of the message, not a `source`: printed as a chain it would
    // appear twice.
    #[error("cannot read the development key file {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("cannot write the development key file {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
    #[error(
        "the development key file {0} is readable by other users; run `chmod 600 {0}` (it holds a private signing key)"
    )]
    TooOpen(String),
    #[error("{0} does not hold a PKCS#8 P-256 private key (-----BEGIN PRIVATE KEY-----)")]
    NotAKey(String),
    #[error("the system random generator failed")]
    Random,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// The development issuer: its identifier and signing key.
#[derive(Clone)]
pub struct DevIssuer {
    issuer: String,
    kid: String,
    encoding: Arc<EncodingKey>,
    public_jwk: Value,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub subject: &'a str,
    pub audience: &'a str,
    pub scopes: &'a [String],
    pub client_id: &'a str,
    pub lifetime: Duration,
}

impl DevIssuer {
    /// A fresh key kept only in memory: tokens die with the process.
    pub fn generate(issuer: &str) -> Result<DevIssuer, DevKeyError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| DevKeyError::Random)?;
        DevIssuer::from_pkcs8(issuer, pkcs8.as_ref(), "generated key")
    }

    /// The key in `path`, created (mode 0600) if the file does not exist. Returns whether
    /// it was created.
    pub fn load_or_create(issuer: &str, path: &Path) -> Result<(DevIssuer, bool), DevKeyError> {
        let shown = path.display().to_string();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| DevKeyError::Random)?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                file.write_all(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|cause| DevKeyError::Write {
                        path: shown.clone(),
                        cause,
                    })?;
                Ok((DevIssuer::from_pkcs8(issuer, pkcs8.as_ref(), &shown)?, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((DevIssuer::load(issuer, path)?, false))
            }
            Err(cause) => Err(DevKeyError::Write { path: shown, cause }),
        }
    }

    /// The key in an existing `path`, which only its owner may read.
    pub fn load(issuer: &str, path: &Path) -> Result<DevIssuer, DevKeyError> {
        let shown = path.display().to_string();
        let read_err = |cause| DevKeyError::Read {
            path: shown.clone(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(DevKeyError::TooOpen(shown));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let der = unpem("PRIVATE KEY", &text).ok_or_else(|| DevKeyError::NotAKey(shown.clone()))?;
        DevIssuer::from_pkcs8(issuer, &der, &shown)
    }

    fn from_pkcs8(issuer: &str, der: &[u8], shown: &str) -> Result<DevIssuer, DevKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| DevKeyError::NotAKey(shown.to_owned()))?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(DevKeyError::NotAKey(shown.to_owned()));
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        // RFC 7638 thumbprint: stable across restarts with the same key file.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
        );
        let public_jwk = json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "alg": "ES256", "use": "sig",
        });
        Ok(DevIssuer {
            issuer: issuer.to_owned(),
            kid,
            encoding: Arc::new(EncodingKey::from_ec_der(der)),
            public_jwk,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key, as the validator uses it.
    pub(crate) fn verify_key(&self) -> Result<VerifyKey, DevKeyError> {
        VerifyKey::from_jwk(&self.public_jwk).map_err(|_| DevKeyError::NotAKey(self.kid.clone()))
    }

    /// `{"keys": [<public key>]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk] })
    }

    /// RFC 8414 metadata. No authorization or token endpoint: this issuer only mints
    /// tokens out of band.
    pub fn metadata(&self, scopes_supported: &[String]) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}{JWKS_PATH}", self.issuer),
            "response_types_supported": [],
            "grant_types_supported": [],
            "scopes_supported": scopes_supported,
            "token_endpoint_auth_methods_supported": ["none"],
        })
    }

    /// An RFC 9068 access token.
    pub fn mint(&self, req: &TokenRequest<'_>, now: SystemTime) -> Result<String, DevKeyError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| DevKeyError::Random)?;
        let claims = json!({
            "iss": self.issuer,
            "sub": req.subject,
            "aud": req.audience,
            "iat": iat,
            "exp": iat.saturating_add(req.lifetime.as_secs()),
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "client_id": req.client_id,
            "scope": req.scopes.join(" "),
        });
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| DevKeyError::Sign(e.to_string()))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unpem(label: &str, text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_file_names_the_cause_once() {
        let Err(err) = DevIssuer::load("http://127.0.0.1:1", Path::new("/nonexistent/dev-key.pem"))
        else {
            panic!("a missing key file loaded");
        };
        // As the command line prints errors: the message, then each cause.
        let shown = format!("{:#}", anyhow::Error::from(err));
        assert!(shown.contains("/nonexistent/dev-key.pem"), "{shown}");
        assert_eq!(shown.matches("os error 2").count(), 1, "{shown}");
    }

    #[test]
    fn pem_round_trips() {
        let der: Vec<u8> = (0..=200).collect();
        let text = pem("PRIVATE KEY", &der);
        assert!(
            text.lines()
                .all(|l| l.len() <= 64 || l.starts_with("-----"))
        );
        assert_eq!(unpem("PRIVATE KEY", &text).unwrap(), der);
        assert!(unpem("PRIVATE KEY", "junk").is_none());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded_with_the_same_kid() {
        let dir = std::env::temp_dir().join(format!("mcp-warden-devkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key.pem");
        let _ = std::fs::remove_file(&path);
        let (a, created) = DevIssuer::load_or_create("http://127.0.0.1:1", &path).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = DevIssuer::load_or_create("http://127.0.0.1:1", &path).unwrap();
        assert!(!created);
        assert_eq!(a.kid, b.kid);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            DevIssuer::load("http://127.0.0.1:1", &path),
            Err(DevKeyError::TooOpen(_))
        ));
        std::fs::write(dir.join("bad.pem"), "nope").unwrap();
        std::fs::set_permissions(dir.join("bad.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert!(matches!(
            DevIssuer::load("http://127.0.0.1:1", &dir.join("bad.pem")),
            Err(DevKeyError::NotAKey(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metadata_and_jwks_describe_the_key() {
        let d = DevIssuer::generate("http://127.0.0.1:8080").unwrap();
        let m = d.metadata(&["mcp".into()]);
        assert_eq!(m["issuer"], "http://127.0.0.1:8080");
        assert_eq!(m["jwks_uri"], "http://127.0.0.1:8080/.well-known/jwks.json");
        let jwks = d.jwks();
        assert_eq!(jwks["keys"][0]["kid"], d.kid.as_str());
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private part never published"
        );
        assert!(d.verify_key().unwrap().fits(Algorithm::ES256));
    }
}
