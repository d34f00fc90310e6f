//! The seam to RFC 8693 token exchange: what a session's environment asks
//! ([`TokenExchanger`]), implemented by the authentication layer's client.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::Secret;

/// A token issued by a token exchange.
#[derive(Debug, Clone)]
pub struct ExchangedToken {
    pub access_token: Secret,
    /// `expires_in` of the token response, when given.
    pub expires_in: Option<Duration>,
}

/// One RFC 8693 exchange to perform.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The issuer of the caller's token: the one to exchange it at.
    pub issuer: &'a str,
    /// The caller's access token (`subject_token`).
    pub subject_token: &'a Secret,
    pub audience: &'a str,
    pub scopes: &'a [String],
}

/// Future returned by [`TokenExchanger::exchange`].
pub type ExchangeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ExchangedToken, String>> + Send + 'a>>;

/// Performs token exchanges at the issuer's token endpoint with the sidecar's own client
/// credentials. Implemented by the authentication layer; errors are short reasons without
/// any token.
pub trait TokenExchanger: Send + Sync + fmt::Debug {
    fn exchange<'a>(&'a self, request: ExchangeRequest<'a>) -> ExchangeFuture<'a>;
}

/// Token exchange as the authentication layer performs it.
impl TokenExchanger for crate::auth::exchange::TokenExchangeClient {
    fn exchange<'a>(&'a self, r: ExchangeRequest<'a>) -> ExchangeFuture<'a> {
        Box::pin(async move {
            let subject = std::str::from_utf8(r.subject_token.expose())
                .map_err(|_| "the caller's token is not text".to_owned())?;
            let issued = crate::auth::exchange::TokenExchangeClient::exchange(
                self, r.issuer, subject, r.audience, r.scopes,
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(ExchangedToken {
                access_token: issued.access_token,
                expires_in: issued.expires_in,
            })
        })
    }
}

/// A user's connection token as a session gets it.
#[derive(Debug, Clone)]
pub struct ConnectionToken {
    pub token: Secret,
    /// When the token expires (seconds since the epoch), if the provider said: the session
    /// ends before.
    pub expires_at: Option<i64>,
    /// Which grant it came from (seconds since the epoch): a session whose grant was
    /// revoked or replaced ends.
    pub granted_at: i64,
}

/// Which connection a session was given, to find out later whether it still stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRef {
    pub user: String,
    pub name: String,
    pub granted_at: i64,
}

/// Future returned by [`ConnectionTokens::access_token`].
pub type ConnectionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<ConnectionToken>, String>> + Send + 'a>>;

/// Future returned by [`ConnectionTokens::still_granted`].
pub type GrantedFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// The access tokens of users' upstream connections (implemented by `connections`): the
/// token of `user`'s connection `name`, `None` when the user has no usable one. Errors are
/// short reasons without any token.
pub trait ConnectionTokens: Send + Sync + fmt::Debug {
    /// Whether principals of `issuer` are users with connections (our own sign-in).
    fn serves(&self, issuer: &str) -> bool;
    fn access_token<'a>(&'a self, user: &'a str, name: &'a str) -> ConnectionFuture<'a>;
    /// Whether the grant a session was given is still the user's, unrevoked (an error
    /// reaching the store counts as yes: a store outage ends no session).
    fn still_granted<'a>(&'a self, given: &'a ConnectionRef) -> GrantedFuture<'a>;
}
