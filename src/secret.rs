//! A secret value (client secret, HMAC key, injected credential, exchanged token): shared
//! cheaply, wiped from memory when the last copy goes, never printed.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A secret. Its `Debug` shows nothing of it and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<Zeroizing<Vec<u8>>>);

impl Secret {
    pub fn new(value: impl Into<Vec<u8>>) -> Secret {
        Secret(Arc::new(Zeroizing::new(value.into())))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, for protocols that carry it as text (HTTP Basic, form fields).
    /// Borrowed when it is UTF-8, as every secret read from a flag or text file is.
    pub fn expose_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

/// Takes a buffer that already wipes itself, without copying it.
impl From<Zeroizing<Vec<u8>>> for Secret {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Secret {
        Secret(Arc::new(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_printed() {
        let s = Secret::new("hunter2-longer-value");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), b"hunter2-longer-value");
        assert_eq!(s.expose_str(), "hunter2-longer-value");
        assert!(matches!(s.expose_str(), Cow::Borrowed(_)));
    }
}
