//! How every session's environment is built ([`EnvPlan`], fixed at startup), and building
//! one for a session ([`SessionContext`] → [`SessionEnv`]).

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::auth::Principal;

use super::Secret;
use super::env::{EnvValue, SessionEnv};
use super::exchange::{ConnectionTokens, ExchangeRequest, TokenExchanger};
use super::source::*;

/// The session a server environment is built for.
#[derive(Debug, Clone, Copy)]
pub struct SessionContext<'a> {
    pub principal: &'a Principal,
    /// The caller's bearer token, needed only by `--env-exchange` (and never injected).
    pub subject_token: Option<&'a Secret>,
}

/// How every session's environment is built, fixed at startup.
#[derive(Debug, Clone)]
pub struct EnvPlan {
    /// Variables copied from the sidecar's environment at startup.
    pass: Vec<(String, OsString)>,
    sources: Vec<EnvSource>,
    exchanger: Option<Arc<dyn TokenExchanger>>,
    connections: Option<Arc<dyn ConnectionTokens>>,
}

impl EnvPlan {
    /// What makes a server's environment depend on its caller, if anything: the option
    /// that does (a claim, a token exchange, a user's connection).
    pub fn depends_on_caller(&self) -> Option<&'static str> {
        self.sources.iter().find_map(|s| match s {
            EnvSource::Claim { .. } => Some("--env-claim"),
            EnvSource::Exchange { .. } => Some("--env-exchange"),
            EnvSource::Connection { .. } => Some("[[connection]]"),
            EnvSource::Value { .. } | EnvSource::Imported { .. } | EnvSource::File { .. } => None,
        })
    }

    /// Validates the sources and captures the passed-through variables (`BASE_ENV_PASS`
    /// plus `pass`) from `lookup`. Loader variables are refused.
    pub fn new(
        pass: &[String],
        lookup: &dyn Fn(&str) -> Option<OsString>,
        sources: Vec<EnvSource>,
        exchanger: Option<Arc<dyn TokenExchanger>>,
    ) -> Result<EnvPlan, EnvError> {
        let mut plan = EnvPlan::allowing_loader(pass, &[], lookup, sources, exchanger.is_some())?;
        plan.exchanger = exchanger;
        Ok(plan)
    }

    /// [`EnvPlan::new`], with the loader variables named in `allow_loader` accepted
    /// (`--env-allow-loader`). `can_exchange`: an exchanger will be attached
    /// ([`EnvPlan::attach_exchanger`]) before the first session.
    pub fn allowing_loader(
        pass: &[String],
        allow_loader: &[String],
        lookup: &dyn Fn(&str) -> Option<OsString>,
        sources: Vec<EnvSource>,
        can_exchange: bool,
    ) -> Result<EnvPlan, EnvError> {
        if let Some(n) = allow_loader.iter().find(|n| !is_loader_variable(n)) {
            return Err(EnvError::NotLoaderVariable(n.clone()));
        }
        let check = |name: &str| {
            check_name(name)?;
            if is_loader_variable(name) && !allow_loader.iter().any(|a| a == name) {
                return Err(EnvError::LoaderVariable(name.to_owned()));
            }
            Ok(())
        };
        let mut names: Vec<&str> = Vec::new();
        for name in pass.iter().map(String::as_str) {
            check(name)?;
        }
        for s in &sources {
            let name = s.name();
            check(name)?;
            if names.contains(&name) {
                return Err(EnvError::Duplicate(name.to_owned()));
            }
            names.push(name);
            if matches!(s, EnvSource::Exchange { .. }) && !can_exchange {
                return Err(EnvError::ExchangeUnavailable(name.to_owned()));
            }
        }
        let mut captured: Vec<(String, OsString)> = Vec::new();
        for name in BASE_ENV_PASS
            .iter()
            .copied()
            .chain(pass.iter().map(String::as_str))
        {
            // An injected variable wins over a passed one of the same name.
            if names.contains(&name) || captured.iter().any(|(k, _)| k == name) {
                continue;
            }
            if let Some(v) = lookup(name) {
                captured.push((name.to_owned(), v));
            }
        }
        Ok(EnvPlan {
            pass: captured,
            sources,
            exchanger: None,
            connections: None,
        })
    }

    /// The client `--env-exchange` variables are obtained with (built by the app).
    pub fn attach_exchanger(&mut self, exchanger: Arc<dyn TokenExchanger>) {
        self.exchanger = Some(exchanger);
    }

    /// Where `[[connection]]` variables' tokens come from (built by the app).
    pub fn attach_connections(&mut self, connections: Arc<dyn ConnectionTokens>) {
        self.connections = Some(connections);
    }

    /// Where `[[connection]]` tokens come from, once attached.
    pub fn connections(&self) -> Option<&Arc<dyn ConnectionTokens>> {
        self.connections.as_ref()
    }

    pub fn sources(&self) -> &[EnvSource] {
        &self.sources
    }

    /// Whether sessions get secret values (files or exchanged tokens).
    pub fn injects_secrets(&self) -> bool {
        self.sources.iter().any(|s| {
            matches!(
                s,
                EnvSource::File { .. }
                    | EnvSource::Exchange { .. }
                    | EnvSource::Imported { .. }
                    | EnvSource::Connection { .. }
            )
        })
    }

    /// The sidecar files holding secrets, for the startup exposure check.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                EnvSource::File { name, path } => {
                    Some((format!("--env-file {name}"), path.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The value of a passed-through variable (`PATH` resolves the command).
    pub fn passed(&self, name: &str) -> Option<&OsStr> {
        self.pass
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_os_str())
    }

    /// Builds one session's environment. Each call reads files and performs exchanges anew:
    /// nothing of one session is reused for another.
    pub async fn resolve(&self, ctx: SessionContext<'_>) -> Result<SessionEnv, EnvError> {
        let mut vars: Vec<(String, EnvValue)> = self
            .pass
            .iter()
            .map(|(k, v)| (k.clone(), EnvValue::Plain(v.clone())))
            .collect();
        let mut expires_at = None;
        let mut connections = Vec::new();
        let mut files = Vec::new();
        for source in &self.sources {
            let value = match source {
                EnvSource::Value { value, .. } => EnvValue::Plain(value.into()),
                EnvSource::Imported { value, .. } => EnvValue::Secret(value.clone()),
                EnvSource::File { name, path } => EnvValue::Secret(read_secret(name, path).await?),
                EnvSource::Claim { name, claim } => match principal_claim(ctx.principal, claim) {
                    Some(v) => EnvValue::Plain(v.into()),
                    None => {
                        return Err(EnvError::MissingClaim {
                            name: name.clone(),
                            claim: claim.clone(),
                        });
                    }
                },
                EnvSource::Exchange {
                    name,
                    audience,
                    scopes,
                } => {
                    let (Some(exchanger), Some(subject_token)) =
                        (&self.exchanger, ctx.subject_token)
                    else {
                        return Err(EnvError::ExchangeUnavailable(name.clone()));
                    };
                    let token = exchanger
                        .exchange(ExchangeRequest {
                            issuer: &ctx.principal.issuer,
                            subject_token,
                            audience,
                            scopes,
                        })
                        .await
                        .map_err(|reason| EnvError::Exchange {
                            name: name.clone(),
                            reason,
                        })?;
                    if let Some(ttl) = token.expires_in {
                        let at = SystemTime::now() + ttl;
                        expires_at = Some(expires_at.map_or(at, |e: SystemTime| e.min(at)));
                    }
                    // The caller's own token must never reach the server, even if an
                    // issuer echoed it back.
                    if token.access_token == *subject_token {
                        return Err(EnvError::Exchange {
                            name: name.clone(),
                            reason: "the issuer returned the subject token itself".into(),
                        });
                    }
                    EnvValue::Secret(token.access_token)
                }
                EnvSource::Connection {
                    connection,
                    required,
                    file,
                    ..
                } => match self
                    .connection_token(ctx.principal, connection)
                    .await
                    .or_else(|e| if *required { Err(e) } else { Ok(None) })?
                {
                    Some(given) => {
                        if let Some(at) = given.expires_at {
                            let at = std::time::UNIX_EPOCH
                                + std::time::Duration::from_secs(at.max(0) as u64);
                            expires_at = Some(expires_at.map_or(at, |e: SystemTime| e.min(at)));
                        }
                        connections.push(super::ConnectionRef {
                            user: ctx.principal.subject.clone(),
                            name: connection.clone(),
                            granted_at: given.granted_at,
                        });
                        if let Some(file) = file {
                            files.push((file.clone(), given.token.clone()));
                        }
                        EnvValue::Secret(given.token)
                    }
                    None if *required => {
                        return Err(EnvError::ConnectionNeeded {
                            connection: connection.clone(),
                        });
                    }
                    None => continue,
                },
            };
            vars.push((source.name().to_owned(), value));
        }
        Ok(SessionEnv {
            vars,
            expires_at,
            connections,
            files,
        })
    }

    /// The token of the principal's connection, if it is a user of our own sign-in with a
    /// usable one.
    async fn connection_token(
        &self,
        principal: &Principal,
        connection: &str,
    ) -> Result<Option<super::ConnectionToken>, EnvError> {
        let Some(connections) = &self.connections else {
            return Ok(None);
        };
        if !connections.serves(&principal.issuer) {
            // Not a user of our sign-in: no link could ever connect them.
            return Err(EnvError::Connection {
                connection: connection.to_owned(),
                reason: "the caller is not a user of this server's sign-in".into(),
            });
        }
        connections
            .access_token(&principal.subject, connection)
            .await
            .map_err(|reason| EnvError::Connection {
                connection: connection.to_owned(),
                reason,
            })
    }
}
