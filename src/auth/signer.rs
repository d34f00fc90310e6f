//! Our own issuer's keys: one ES256 signing key (in memory, or in a key file so restarts and
//! replicas share it) plus keys that only verify (rotation), their JWKS, and minting of
//! RFC 9068 access tokens. `--dev` and the built-in authorization server both sign with it.

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
pub enum KeyFileError {
    // The io error is part of the message, not a `source`: printed as a chain it would
    // appear twice.
    #[error("cannot read the signing key file {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("cannot write the signing key file {path}: {cause}")]
    Write { path: String, cause: std::io::Error },
    #[error(
        "the signing key file {0} is readable by other users; run `chmod 600 {0}` (it holds a private signing key)"
    )]
    TooOpen(String),
    #[error("{0} does not hold a PKCS#8 P-256 private key (-----BEGIN PRIVATE KEY-----)")]
    NotAKey(String),
    #[error("the system random generator failed")]
    Random,
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// Our issuer: its identifier, signing key and the keys it still vouches for.
#[derive(Clone)]
pub struct LocalIssuer {
    issuer: String,
    kid: String,
    encoding: Arc<EncodingKey>,
    public_jwk: Value,
    /// Public keys that verify but never sign: the previous or next key of a rotation.
    verification: Vec<Value>,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer")
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

impl LocalIssuer {
    /// A fresh key kept only in memory: tokens die with the process.
    pub fn generate(issuer: &str) -> Result<LocalIssuer, KeyFileError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyFileError::Random)?;
        LocalIssuer::from_pkcs8(issuer, pkcs8.as_ref(), "generated key")
    }

    /// The key in `path`, created (mode 0600) if the file does not exist. Returns whether
    /// it was created.
    pub fn load_or_create(issuer: &str, path: &Path) -> Result<(LocalIssuer, bool), KeyFileError> {
        let shown = path.display().to_string();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyFileError::Random)?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                file.write_all(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|cause| KeyFileError::Write {
                        path: shown.clone(),
                        cause,
                    })?;
                Ok((
                    LocalIssuer::from_pkcs8(issuer, pkcs8.as_ref(), &shown)?,
                    true,
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((LocalIssuer::load(issuer, path)?, false))
            }
            Err(cause) => Err(KeyFileError::Write { path: shown, cause }),
        }
    }

    /// The key in an existing `path`, which only its owner may read.
    pub fn load(issuer: &str, path: &Path) -> Result<LocalIssuer, KeyFileError> {
        let shown = path.display().to_string();
        let read_err = |cause| KeyFileError::Read {
            path: shown.clone(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyFileError::TooOpen(shown));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let der =
            unpem("PRIVATE KEY", &text).ok_or_else(|| KeyFileError::NotAKey(shown.clone()))?;
        LocalIssuer::from_pkcs8(issuer, &der, &shown)
    }

    fn from_pkcs8(issuer: &str, der: &[u8], shown: &str) -> Result<LocalIssuer, KeyFileError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| KeyFileError::NotAKey(shown.to_owned()))?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(KeyFileError::NotAKey(shown.to_owned()));
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
        Ok(LocalIssuer {
            issuer: issuer.to_owned(),
            kid,
            encoding: Arc::new(EncodingKey::from_ec_der(der)),
            public_jwk,
            verification: Vec::new(),
        })
    }

    /// Also publishes and accepts the public keys of these key files (never signing with
    /// them): how a key is rotated across replicas.
    pub fn with_verification_keys(
        mut self,
        paths: &[std::path::PathBuf],
    ) -> Result<LocalIssuer, KeyFileError> {
        for path in paths {
            let other = LocalIssuer::load(&self.issuer, path)?;
            if other.kid != self.kid
                && !self
                    .verification
                    .iter()
                    .any(|k| k["kid"] == other.kid.as_str())
            {
                self.verification.push(other.public_jwk);
            }
        }
        Ok(self)
    }

    /// The key id (RFC 7638 thumbprint) of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Every public key, as the validator uses them: the signing key first.
    pub(crate) fn verify_keys(&self) -> Result<Vec<VerifyKey>, KeyFileError> {
        std::iter::once(&self.public_jwk)
            .chain(&self.verification)
            .map(|jwk| {
                VerifyKey::from_jwk(jwk).map_err(|_| KeyFileError::NotAKey(self.kid.clone()))
            })
            .collect()
    }

    /// `{"keys": [<signing key>, <verification keys>...]}`.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = std::iter::once(&self.public_jwk)
            .chain(&self.verification)
            .collect();
        json!({ "keys": keys })
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

    /// An RFC 9068 access token with exactly these claims (`iss` is set to ours).
    pub fn sign_claims(
        &self,
        mut claims: serde_json::Map<String, Value>,
    ) -> Result<String, KeyFileError> {
        claims.insert("iss".into(), Value::String(self.issuer.clone()));
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| KeyFileError::Sign(e.to_string()))
    }

    /// An RFC 9068 access token.
    pub fn mint(&self, req: &TokenRequest<'_>, now: SystemTime) -> Result<String, KeyFileError> {
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| KeyFileError::Random)?;
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
            .map_err(|e| KeyFileError::Sign(e.to_string()))
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
        let Err(err) =
            LocalIssuer::load("http://127.0.0.1:1", Path::new("/nonexistent/dev-key.pem"))
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
        let (a, created) = LocalIssuer::load_or_create("http://127.0.0.1:1", &path).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (b, created) = LocalIssuer::load_or_create("http://127.0.0.1:1", &path).unwrap();
        assert!(!created);
        assert_eq!(a.kid, b.kid);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            LocalIssuer::load("http://127.0.0.1:1", &path),
            Err(KeyFileError::TooOpen(_))
        ));
        std::fs::write(dir.join("bad.pem"), "nope").unwrap();
        std::fs::set_permissions(dir.join("bad.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert!(matches!(
            LocalIssuer::load("http://127.0.0.1:1", &dir.join("bad.pem")),
            Err(KeyFileError::NotAKey(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn metadata_and_jwks_describe_the_key() {
        let d = LocalIssuer::generate("http://127.0.0.1:8080").unwrap();
        let m = d.metadata(&["mcp".into()]);
        assert_eq!(m["issuer"], "http://127.0.0.1:8080");
        assert_eq!(m["jwks_uri"], "http://127.0.0.1:8080/.well-known/jwks.json");
        let jwks = d.jwks();
        assert_eq!(jwks["keys"][0]["kid"], d.kid.as_str());
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "private part never published"
        );
        assert!(d.verify_keys().unwrap()[0].fits(Algorithm::ES256));
    }

    #[test]
    fn verification_keys_are_published_and_accepted_but_never_sign() {
        let dir = std::env::temp_dir().join(format!("mcp-warden-verkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (old, _) =
            LocalIssuer::load_or_create("https://as.example", &dir.join("old.pem")).unwrap();
        let (new, _) =
            LocalIssuer::load_or_create("https://as.example", &dir.join("new.pem")).unwrap();
        let both = new
            .clone()
            .with_verification_keys(&[dir.join("old.pem"), dir.join("new.pem")])
            .unwrap();
        let jwks = both.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        // The signing key first, each key once.
        assert_eq!(kids, vec![new.kid(), old.kid()]);
        assert_eq!(both.verify_keys().unwrap().len(), 2);
        let token = both.sign_claims(serde_json::Map::new()).unwrap();
        let header = token.split('.').next().unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["kid"], new.kid());
        assert_eq!(header["typ"], "at+jwt");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
