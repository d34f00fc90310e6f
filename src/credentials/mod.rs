//! Credentials of each session's server: its environment, built from nothing for each
//! session from an allow-list of the sidecar's variables and the credentials injected for
//! that session's principal (static values and files, token claims, RFC 8693 exchanges of
//! the caller's token, the principal's own upstream connections). This module stands between `auth` and `child`: the caller's token
//! comes in here ([`SessionContext`]) and only the finished [`SessionEnv`] goes on to the
//! server's spawn; the token itself is never injected.
//!
//! Values marked secret ([`Secret`]) never reach a log, an error message or a `Debug`
//! output; their bytes are wiped when dropped, and the session keeps the set of them
//! ([`SecretSet`]) so responses can be redacted. `HOME` and `TMPDIR` are set at spawn to the
//! session's work dir and cannot be injected.

mod env;
mod exchange;
mod plan;
mod source;
#[cfg(test)]
mod tests;

pub use self::env::{EnvValue, SecretSet, SessionEnv};
pub use self::exchange::{
    ConnectionFuture, ConnectionRef, ConnectionToken, ConnectionTokens, ExchangeFuture,
    ExchangeRequest, ExchangedToken, GrantedFuture, TokenExchanger,
};
pub use self::plan::{EnvPlan, SessionContext};
pub use self::source::{BASE_ENV_PASS, EnvError, EnvSource, claim_text, is_loader_variable};
pub use crate::secret::Secret;
