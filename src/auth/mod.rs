//! Who is calling: bearer tokens checked as an OAuth 2.1 resource server (JWT access
//! tokens against the issuer's keys, opaque ones by introspection), the resulting
//! [`Principal`], the challenges of a refusal, resource metadata, and the embedded
//! development issuer. The only module that uses `jsonwebtoken`.

mod authenticator;
pub mod challenge;
mod discovery;
pub mod exchange;
pub mod fetch;
#[doc(hidden)]
pub mod fuzzing;
pub mod id_token;
mod introspection;
mod jwks;
mod jwt;
mod principal;
pub mod resource_metadata;
pub mod scopes;
pub mod signer;
#[cfg(test)]
mod testkeys;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testserver;

pub use authenticator::{
    AuthConfig, AuthInitError, Authenticator, Endpoint, IntrospectionConfig, IssuerConfig,
    LocalIssuerConfig, Resources, token_fingerprint,
};
pub use challenge::Rejection;
pub use jwks::CachePolicy;
pub use principal::{Actor, CLIENT_PREFIX, Principal, PrincipalKind};
pub use resource_metadata::Resource;
pub use scopes::ScopeRules;
pub use signer::LocalIssuer;

pub use crate::secret::Secret;
