//! The token endpoint (authorization_code with PKCE; refresh_token with rotation and reuse
//! detection) and revocation (RFC 7009). Codes and refresh tokens are single-use by the
//! store's atomic updates; a replayed code or refresh token revokes what it issued.

use serde_json::{Map, Value, json};

use super::AuthorizationServer;
use super::rules::{self, Params};
use crate::store::{FamilyRecord, Grant, Redeemed, Rotated, StoreError, UserRecord};

/// An OAuth error answer (RFC 6749 §5.2, RFC 7009, RFC 7591).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub code: &'static str,
    /// A fixed sentence (never internals).
    pub description: &'static str,
    pub status: u16,
    /// The client used HTTP Basic: a 401 carries `WWW-Authenticate: Basic`.
    pub basic_challenge: bool,
}

impl TokenError {
    fn new(code: &'static str, description: &'static str) -> TokenError {
        TokenError {
            code,
            description,
            status: 400,
            basic_challenge: false,
        }
    }
    pub fn invalid_request(description: &'static str) -> TokenError {
        TokenError::new("invalid_request", description)
    }
    fn invalid_grant(description: &'static str) -> TokenError {
        TokenError::new("invalid_grant", description)
    }
    pub fn invalid_metadata(code: &'static str, description: &'static str) -> TokenError {
        TokenError::new(code, description)
    }
    pub fn unavailable() -> TokenError {
        TokenError {
            status: 503,
            ..TokenError::new("temporarily_unavailable", "try again later")
        }
    }
}

pub(super) enum Failure {
    Token(TokenError),
    Store(StoreError),
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Failure {
        Failure::Token(e)
    }
}
impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

fn fresh(prefix: &str) -> Result<String, Failure> {
    rules::secret(prefix)
        .ok_or_else(|| Failure::Store(StoreError::Unavailable("no randomness".into())))
}

/// Identifies the client: HTTP Basic, `client_secret` in the form, or a public client's
/// `client_id` alone. Metadata-document clients are public (their documents may not
/// declare a secret); registered clients with a secret must present it.
async fn client(
    srv: &AuthorizationServer,
    p: &Params,
    basic: Option<(String, String)>,
) -> Result<String, Failure> {
    let used_basic = basic.is_some();
    let invalid = TokenError {
        status: 401,
        basic_challenge: used_basic,
        ..TokenError::new("invalid_client", "client authentication failed")
    };
    let (id, secret) = match (basic, p.get("client_id")) {
        (Some((id, _)), Some(form)) if form != id => {
            return Err(TokenError::invalid_request(
                "client_id differs from the authenticated client",
            )
            .into());
        }
        (Some((id, secret)), _) => (id, Some(secret)),
        (None, Some(id)) => (id.to_owned(), p.get("client_secret").map(str::to_owned)),
        (None, None) => return Err(invalid.into()),
    };
    if id.starts_with("https://") {
        if srv.config.cimd.is_none() || !rules::is_metadata_url(&id) || secret.is_some() {
            return Err(invalid.into());
        }
        return Ok(id);
    }
    let Some(record) = super::registered_client(&srv.store, &id).await? else {
        return Err(invalid.into());
    };
    match (&record.secret_hash, secret) {
        (Some(expected), Some(given)) if rules::same_hash(&rules::hash(&given), expected) => Ok(id),
        (None, None) => Ok(id),
        _ => Err(invalid.into()),
    }
}

pub(super) async fn token(
    srv: &AuthorizationServer,
    body: &[u8],
    basic: Option<(String, String)>,
    now: i64,
) -> Result<Value, Failure> {
    let p = Params::parse(body);
    if p.duplicated().is_some() {
        return Err(TokenError::invalid_request("a parameter was given more than once").into());
    }
    let client_id = client(srv, &p, basic).await?;
    match p.get("grant_type") {
        Some("authorization_code") => authorization_code(srv, &p, &client_id, now).await,
        Some("refresh_token") => refresh(srv, &p, &client_id, now).await,
        Some(_) => {
            Err(TokenError::new("unsupported_grant_type", "grant_type is not supported").into())
        }
        None => Err(TokenError::invalid_request("grant_type is missing").into()),
    }
}

fn canonical(resource: &str) -> String {
    crate::auth::resource_metadata::canonical_audience(resource).into_owned()
}

async fn authorization_code(
    srv: &AuthorizationServer,
    p: &Params,
    client_id: &str,
    now: i64,
) -> Result<Value, Failure> {
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (p.get("code"), p.get("redirect_uri"), p.get("code_verifier"))
    else {
        return Err(TokenError::invalid_request(
            "code, redirect_uri and code_verifier are required",
        )
        .into());
    };
    let code_hash = rules::hash(code);
    let grant = match srv.store.redeem_code(&code_hash, now).await? {
        Redeemed::Unknown => return Err(TokenError::invalid_grant("the code is not valid").into()),
        Redeemed::Used { family } => {
            // RFC 6749 §4.1.2: revoke what the first redemption issued.
            if let Some(f) = family {
                srv.store.revoke_family(&f, "code_reuse", now).await?;
            }
            tracing::warn!(
                client_id,
                reason = "code_reuse",
                "an authorization code was presented twice"
            );
            return Err(TokenError::invalid_grant("the code is not valid").into());
        }
        // From here the code is spent, whatever follows: a wrong verifier cannot be retried.
        Redeemed::Fresh { grant, expired } => {
            if expired
                || grant.client_id != client_id
                || grant.redirect_uri != redirect_uri
                || !rules::verifier_matches(verifier, &grant.code_challenge)
            {
                return Err(
                    TokenError::invalid_grant("the code is not valid for this request").into(),
                );
            }
            grant
        }
    };
    if p.get("resource")
        .is_some_and(|r| canonical(r) != grant.resource)
    {
        return Err(
            TokenError::new("invalid_target", "the code was issued for another resource").into(),
        );
    }
    let user = allowed_user(srv, &grant).await?;
    let refresh = if grant.may_refresh {
        let token = fresh("mwr_")?;
        let family_id = crate::store::random_id()?;
        srv.store
            .create_family(
                &FamilyRecord {
                    family_id: family_id.clone(),
                    grant: grant.clone(),
                    created_at: now,
                    expires_at: now + srv.config.refresh_token_ttl.as_secs() as i64,
                    revoked_at: None,
                },
                &rules::hash(&token),
                now + idle(srv),
            )
            .await?;
        srv.store.bind_code_family(&code_hash, &family_id).await?;
        Some(token)
    } else {
        None
    };
    answer(srv, &user, &grant, &grant.scopes, refresh, now)
}

fn idle(srv: &AuthorizationServer) -> i64 {
    srv.config
        .refresh_idle_ttl
        .min(srv.config.refresh_token_ttl)
        .as_secs() as i64
}

/// The grant's user, if the allow rules still admit them.
async fn allowed_user(srv: &AuthorizationServer, grant: &Grant) -> Result<UserRecord, Failure> {
    let user = srv
        .store
        .user(&grant.user_id)
        .await?
        .ok_or(TokenError::invalid_grant("the grant is no longer valid"))?;
    if srv.config.allow.check(&user.claims).is_err() {
        return Err(TokenError::invalid_grant("the user may no longer use this server").into());
    }
    Ok(user)
}

async fn refresh(
    srv: &AuthorizationServer,
    p: &Params,
    client_id: &str,
    now: i64,
) -> Result<Value, Failure> {
    let token = p
        .get("refresh_token")
        .ok_or(TokenError::invalid_request("refresh_token is required"))?;
    let hash = rules::hash(token);
    let invalid = || Failure::from(TokenError::invalid_grant("the refresh token is not valid"));
    // Checked before rotating, so that a bad request does not spend the token.
    let Some(family) = srv.store.family_of_token(&hash).await? else {
        return Err(invalid());
    };
    if family.grant.client_id != client_id {
        return Err(invalid());
    }
    if p.get("resource")
        .is_some_and(|r| canonical(r) != family.grant.resource)
    {
        return Err(TokenError::new("invalid_target", "the grant is for another resource").into());
    }
    let scopes = match p.get("scope") {
        Some(s) => {
            let asked: Vec<String> = s
                .split(' ')
                .filter(|x| !x.is_empty() && *x != "offline_access")
                .map(str::to_owned)
                .collect();
            if !asked.iter().all(|a| family.grant.scopes.contains(a)) {
                return Err(TokenError::new("invalid_scope", "scope exceeds the grant").into());
            }
            asked
        }
        None => family.grant.scopes.clone(),
    };
    let successor = fresh("mwr_")?;
    match srv
        .store
        .rotate_refresh(&hash, &rules::hash(&successor), now, now + idle(srv))
        .await?
    {
        Rotated::Ok(family) => {
            let user = match allowed_user(srv, &family.grant).await {
                Ok(u) => u,
                Err(e) => {
                    srv.store
                        .revoke_family(&family.family_id, "not_allowed", now)
                        .await?;
                    return Err(e);
                }
            };
            answer(srv, &user, &family.grant, &scopes, Some(successor), now)
        }
        Rotated::Reused { family } => {
            tracing::warn!(client_id, family = %&family[..family.len().min(8)], reason = "refresh_reuse", "a rotated refresh token was presented again; its family is revoked");
            Err(invalid())
        }
        Rotated::Expired | Rotated::Revoked | Rotated::Unknown => Err(invalid()),
    }
}

/// Mints the access token and shapes the token response.
fn answer(
    srv: &AuthorizationServer,
    user: &UserRecord,
    grant: &Grant,
    scopes: &[String],
    refresh: Option<String>,
    now: i64,
) -> Result<Value, Failure> {
    let ttl = srv.config.access_token_ttl.as_secs() as i64;
    let jti = crate::store::random_id()?;
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user.sub));
    claims.insert("aud".into(), json!(grant.resource));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("jti".into(), json!(jti));
    claims.insert("client_id".into(), json!(grant.client_id));
    claims.insert("scope".into(), json!(scopes.join(" ")));
    claims.insert("auth_time".into(), json!(grant.auth_time));
    claims.insert("idp".into(), json!(user.idp));
    for (k, v) in &user.claims {
        if matches!(
            k.as_str(),
            "email" | "email_verified" | "name" | "preferred_username" | "groups"
        ) {
            claims.insert(k.clone(), v.clone());
        }
    }
    let access = srv
        .signer
        .sign_claims(claims)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let mut out = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "scope": scopes.join(" "),
    });
    if let Some(r) = refresh {
        out["refresh_token"] = json!(r);
    }
    Ok(out)
}

pub(super) async fn revoke(
    srv: &AuthorizationServer,
    body: &[u8],
    basic: Option<(String, String)>,
    now: i64,
) -> Result<(), Failure> {
    let p = Params::parse(body);
    let client_id = client(srv, &p, basic).await?;
    let token = p
        .get("token")
        .ok_or(TokenError::invalid_request("token is required"))?;
    if token.starts_with("mwr_") {
        if let Some(family) = srv.store.family_of_token(&rules::hash(token)).await? {
            if family.grant.client_id != client_id {
                return Err(TokenError::new(
                    "unauthorized_client",
                    "the token belongs to another client",
                )
                .into());
            }
            srv.store
                .revoke_family(&family.family_id, "revoked", now)
                .await?;
        }
        return Ok(());
    }
    if token.split('.').count() == 3 {
        // Access tokens are short-lived JWTs the resource checks on its own.
        return Err(TokenError::new(
            "unsupported_token_type",
            "access tokens cannot be revoked; they expire",
        )
        .into());
    }
    // RFC 7009 §2.2: an invalid token is not an error.
    Ok(())
}
