//! Provider tokens at rest: sealed with AES-256-GCM under the key of `--state-key-file`
//! before they reach the store, opened only in this process. The associated data binds a
//! sealed value to its user and connection, so a row copied onto another user's (by whoever
//! can write the database) does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// The first bytes of every sealed value: the format, so a later one can be told apart.
const FORMAT: &str = "v1.";

/// What a provider gave for one connection.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Tokens {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(r) = &mut self.refresh_token {
            r.zeroize();
        }
    }
}

/// Why a key or a sealed value cannot be used. Says nothing of either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the state key must be 32 bytes, written as 64 hexadecimal digits or 44 base64 characters (e.g. `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("a stored connection cannot be opened with this state key (another key, or altered)")]
    Unopenable,
}

/// Seals and opens connection tokens, and signs connect links.
pub struct Vault {
    key: RandomizedNonceKey,
    /// For connect links: derived from the state key, so every replica signs alike.
    link_key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(<key>)")
    }
}

impl Vault {
    /// A vault with the key written in a key file (hex or base64, surrounding whitespace
    /// ignored).
    pub fn from_key_text(text: &Secret) -> Result<Vault, VaultError> {
        let text = text.expose().trim_ascii();
        let key = zeroize::Zeroizing::new(if text.len() == 64 {
            decode_hex(text).ok_or(VaultError::BadKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| VaultError::BadKey)?
        });
        if key.len() != 32 {
            return Err(VaultError::BadKey);
        }
        Vault::with_key(&key)
    }

    fn with_key(key: &[u8]) -> Result<Vault, VaultError> {
        let link_key = zeroize::Zeroizing::new(hmac(key, b"mcp-warden connect link v1"));
        let key = RandomizedNonceKey::new(&AES_256_GCM, key).map_err(|_| VaultError::BadKey)?;
        Ok(Vault { key, link_key })
    }

    /// HMAC-SHA256 of `data` under the link key.
    pub fn sign_link(&self, data: &[u8]) -> [u8; 32] {
        hmac(&self.link_key[..], data)
    }

    /// A vault with a random key that lives as long as the process: for state that does too
    /// (`--dev` without `--state-dir`).
    pub fn ephemeral() -> Result<Vault, VaultError> {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut key[..]).map_err(|_| VaultError::BadKey)?;
        Vault::with_key(&key[..])
    }

    /// `tokens`, sealed for `user`'s connection `name`: text for the store.
    pub fn seal(&self, user: &str, name: &str, tokens: &Tokens) -> Result<String, VaultError> {
        let mut data = zeroize::Zeroizing::new(
            serde_json::to_vec(tokens).map_err(|_| VaultError::Unopenable)?,
        );
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(user, name)), &mut *data)
            .map_err(|_| VaultError::Unopenable)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(format!(
            "{FORMAT}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// The tokens a sealed value holds, if this key sealed it for that user and connection.
    pub fn open(&self, user: &str, name: &str, sealed: &str) -> Result<Tokens, VaultError> {
        let body = sealed.strip_prefix(FORMAT).ok_or(VaultError::Unopenable)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| VaultError::Unopenable)?;
        if raw.len() < NONCE_LEN {
            return Err(VaultError::Unopenable);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Unopenable)?;
        let mut data = zeroize::Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(user, name)), &mut data)
            .map_err(|_| VaultError::Unopenable)?;
        serde_json::from_slice(plain).map_err(|_| VaultError::Unopenable)
    }
}

/// What a sealed value is bound to: the user and the connection (lengths first, so no two
/// pairs give the same bytes).
fn aad(user: &str, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + user.len() + name.len());
    out.extend_from_slice(&(user.len() as u64).to_be_bytes());
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    text.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Vault {
        Vault::from_key_text(&Secret::new(text)).unwrap()
    }

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn tokens() -> Tokens {
        Tokens {
            access_token: "gho_secret-access".into(),
            refresh_token: Some("ghr_secret-refresh".into()),
        }
    }

    #[test]
    fn sealed_tokens_open_only_with_their_key_for_their_user_and_connection() {
        let v = key(HEX);
        let sealed = v.seal("alice", "github", &tokens()).unwrap();
        assert!(!sealed.contains("secret"), "{sealed}");
        assert_eq!(v.open("alice", "github", &sealed).unwrap(), tokens());
        // Sealing twice gives different text (a fresh nonce each time).
        assert_ne!(sealed, v.seal("alice", "github", &tokens()).unwrap());
        for (user, name) in [("bob", "github"), ("alice", "slack"), ("alicegithub", "")] {
            assert_eq!(v.open(user, name, &sealed), Err(VaultError::Unopenable));
        }
        let other = key(&"ab".repeat(32));
        assert_eq!(
            other.open("alice", "github", &sealed),
            Err(VaultError::Unopenable)
        );
        // One flipped bit anywhere and it does not open.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            v.open("alice", "github", &altered),
            Err(VaultError::Unopenable)
        );
        assert_eq!(
            v.open("alice", "github", "v1."),
            Err(VaultError::Unopenable)
        );
    }

    #[test]
    fn a_key_is_32_bytes_in_hex_or_base64() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(Vault::from_key_text(&Secret::new(format!("{b64}\n"))).is_ok());
        assert!(Vault::from_key_text(&Secret::new(HEX)).is_ok());
        for bad in [
            "",
            "short",
            &HEX[..62],
            &format!("{HEX}00"),
            &"zz".repeat(32),
        ] {
            assert_eq!(
                Vault::from_key_text(&Secret::new(bad)).map(drop),
                Err(VaultError::BadKey),
                "{bad:?}"
            );
        }
        let debug = format!("{:?}", tokens());
        assert!(!debug.contains("secret"), "{debug}");
    }
}
