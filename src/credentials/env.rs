//! A session's finished environment ([`SessionEnv`]): what the server's spawn receives, and
//! the set of its secret values ([`SecretSet`]) responses are redacted of.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use super::Secret;

/// The secret values injected into one session's server, for redaction of its responses.
#[derive(Clone, Default)]
pub struct SecretSet(Arc<[Secret]>);

impl FromIterator<Secret> for SecretSet {
    fn from_iter<I: IntoIterator<Item = Secret>>(values: I) -> SecretSet {
        SecretSet(values.into_iter().collect())
    }
}

impl SecretSet {
    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Secret::expose)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `value` is one of the secrets (compared in constant time).
    pub fn contains(&self, value: &[u8]) -> bool {
        self.values().any(|s| {
            s.len() == value.len()
                && aws_lc_rs::constant_time::verify_slices_are_equal(s, value).is_ok()
        })
    }

    /// Whether `text` contains any of the secrets.
    pub fn found_in(&self, text: &[u8]) -> bool {
        self.values()
            .any(|s| !s.is_empty() && text.windows(s.len()).any(|w| w == s))
    }
}

impl fmt::Debug for SecretSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretSet({} values)", self.0.len())
    }
}

/// One value of a session's environment (`Debug` hides secrets).
#[derive(Debug, Clone)]
pub enum EnvValue {
    Plain(OsString),
    Secret(Secret),
}

impl EnvValue {
    pub fn as_os_str(&self) -> &OsStr {
        match self {
            EnvValue::Plain(v) => v,
            EnvValue::Secret(s) => OsStr::from_bytes(s.expose()),
        }
    }
}

/// One session's server environment (without `HOME`/`TMPDIR`, which the spawn adds).
/// `Debug` lists names only.
#[derive(Clone, Default)]
pub struct SessionEnv {
    pub(super) vars: Vec<(String, EnvValue)>,
    pub(super) expires_at: Option<SystemTime>,
    /// The users' connections it was given.
    pub(super) connections: Vec<super::ConnectionRef>,
    /// Secrets also written to files of the session's work dir (file name, value).
    pub(super) files: Vec<(String, Secret)>,
}

impl SessionEnv {
    /// Name/value pairs in injection order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &OsStr)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str()))
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// The secret values, for redaction of this session's responses.
    pub fn secrets(&self) -> SecretSet {
        SecretSet(
            self.vars
                .iter()
                .filter_map(|(_, v)| match v {
                    EnvValue::Secret(s) if !s.expose().is_empty() => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        )
    }

    /// When the first exchanged credential expires: the session must end then (a server
    /// must never keep using an expired credential silently).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The users' connections the server was given.
    pub fn connections(&self) -> &[super::ConnectionRef] {
        &self.connections
    }

    /// Secrets the server also gets as files of its work dir (plain names).
    pub fn files(&self) -> &[(String, Secret)] {
        &self.files
    }
}

impl fmt::Debug for SessionEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionEnv")
            .field(
                "names",
                &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}
