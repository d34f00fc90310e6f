//! Users' upstream connections: each user's own OAuth tokens at a third-party provider
//! (GitHub, Google, Slack, any OAuth 2.0 / OpenID provider), held by the sidecar and
//! injected into that user's server only. A `[[connection]]` of the config file says which
//! provider, which scopes and which variable; a user connects once, in a browser, and the
//! tokens are sealed ([`vault`]) in the authorization server's store.

pub mod flow;
pub mod vault;

use std::sync::Arc;

use crate::secret::Secret;
use crate::store::{ConnectionState, Store, StoreError};

pub use vault::{Tokens, Vault, VaultError};

/// Where a provider's endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// github.com: its OAuth app endpoints (no discovery, no refresh unless the app expires
    /// tokens).
    GitHub,
    /// An OpenID provider or OAuth 2.0 server found by RFC 8414 / OpenID discovery.
    Issuer(String),
    /// Endpoints given outright.
    Endpoints {
        authorization: String,
        token: String,
        revocation: Option<String>,
    },
}

/// One `[[connection]]`, validated.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// What users and operators call it (`[a-z0-9_-]`, at most 32).
    pub name: String,
    pub provider: Provider,
    pub client_id: String,
    /// The client secret at the provider.
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    /// More parameters of the authorization request (`access_type=offline` at Google).
    pub authorization_params: Vec<(String, String)>,
    /// The variable the access token is injected as.
    pub env: String,
    /// A file in the session's work dir that holds the access token too, for servers that
    /// read credentials from a file.
    pub file: Option<String>,
    /// Whether a session may not start without it.
    pub required: bool,
}

/// How long a connect link can be used.
const LINK_TTL_SECS: i64 = 3600;

/// Whether `name` may name a connection: it appears in URLs and commands.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
}

/// Why a user's connection cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("the provider is unavailable: {0}")]
    Provider(String),
}

/// Why a refresh did not give new tokens.
#[derive(Debug)]
enum Refresh {
    /// The provider answered no: the user must connect again.
    Refused(String),
    /// The provider could not be asked: nothing is decided.
    Unavailable(String),
}

/// The expiry a token answer gives (`expires_in`, RFC 6749 §5.1), as seconds since the
/// epoch (at most ten years away, whatever the provider says).
fn expires_at(answer: &serde_json::Map<String, serde_json::Value>, now: i64) -> Option<i64> {
    const TEN_YEARS: i64 = 10 * 365 * 86_400;
    answer
        .get("expires_in")
        .and_then(serde_json::Value::as_i64)
        .filter(|s| *s > 0)
        .map(|s| now.saturating_add(s.min(TEN_YEARS)))
}

/// The tokens of a token answer, if its access token can be one (RFC 6750 §2.1: visible
/// ASCII; long enough that redacting it cannot blank everything a server says). Without a
/// new refresh token, `previous` is kept (RFC 6749 §6).
fn tokens_of(
    answer: &serde_json::Map<String, serde_json::Value>,
    previous: Option<&String>,
) -> Option<Tokens> {
    let usable = |t: &&str| {
        (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len())
            && t.bytes().all(|b| (0x21..=0x7e).contains(&b))
    };
    let access_token = answer
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(usable)?;
    let refresh_token = answer
        .get("refresh_token")
        .and_then(serde_json::Value::as_str)
        .filter(usable)
        .map(str::to_owned)
        .or_else(|| previous.cloned());
    Some(Tokens {
        access_token: access_token.to_owned(),
        refresh_token,
    })
}

/// Bounds of a provider token accepted for injection.
const MIN_TOKEN_LEN: usize = 8;
const MAX_TOKEN_LEN: usize = 8192;

/// A token expiring sooner than this is refreshed before a session is given it.
pub const REFRESH_MARGIN_SECS: i64 = 300;

/// The connections of every user: the configured ones, their sealed tokens in the store.
#[derive(Debug, Clone)]
pub struct Connections {
    configs: Arc<[ConnectionConfig]>,
    store: Store,
    vault: Arc<Vault>,
    /// Our sign-in server's issuer: its users are the ones with connections.
    issuer: String,
    /// To the providers.
    http: crate::auth::fetch::HttpClient,
    /// Where changes are recorded (audit, metrics), in a sidecar.
    governance: Option<Arc<crate::governance::Governance>>,
    /// Per connection, the lock of its refresh.
    refreshing: Arc<parking_lot::Mutex<RefreshLocks>>,
}

type RefreshLocks =
    std::collections::HashMap<(String, String), std::sync::Weak<tokio::sync::Mutex<()>>>;

impl Connections {
    pub fn new(
        configs: Vec<ConnectionConfig>,
        store: Store,
        vault: Vault,
        issuer: String,
        http: crate::auth::fetch::HttpClient,
    ) -> Connections {
        Connections {
            configs: configs.into(),
            store,
            vault: Arc::new(vault),
            issuer,
            http,
            governance: None,
            refreshing: Arc::default(),
        }
    }

    /// Records changes in `governance`'s audit log and metrics, and keeps the gauge of
    /// connections by state current (until `shutdown`).
    pub fn observed(
        mut self,
        governance: Arc<crate::governance::Governance>,
        metrics: Arc<crate::telemetry::Metrics>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Connections {
        self.governance = Some(governance);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                if let Ok(counts) = store.connection_counts().await {
                    for state in [ConnectionState::Active, ConnectionState::NeedsConsent] {
                        let n = counts
                            .iter()
                            .find(|(s, _)| *s == state)
                            .map_or(0, |(_, n)| *n);
                        metrics.set_connections(state.as_str(), n);
                    }
                }
            }
        });
        self
    }

    /// For the activity page: how many connections are in each state, and the first `limit`
    /// connections by user (no tokens: the sealed values are dropped here).
    pub async fn overview(
        &self,
        limit: usize,
    ) -> (
        Vec<(ConnectionState, i64)>,
        Vec<crate::store::ConnectionRecord>,
    ) {
        let counts = self.store.connection_counts().await.unwrap_or_default();
        let mut rows = self
            .store
            .connections_first(limit)
            .await
            .unwrap_or_default();
        for r in &mut rows {
            r.sealed.clear();
        }
        (counts, rows)
    }

    /// Records a change of `user`'s connection `name`.
    fn record(&self, user: &str, name: &str, what: &'static str) {
        if let Some(g) = &self.governance {
            g.connection(&self.issuer, user, name, what);
        }
    }

    pub fn configs(&self) -> &[ConnectionConfig] {
        &self.configs
    }

    pub fn config(&self, name: &str) -> Option<&ConnectionConfig> {
        self.configs.iter().find(|c| c.name == name)
    }

    /// The access token of `user`'s connection `name`, when the user has a usable one:
    /// refreshed first when it expires within [`REFRESH_MARGIN_SECS`]. A refresh the
    /// provider refuses marks the connection as needing consent again.
    pub async fn access_token(
        &self,
        user: &str,
        name: &str,
        now: i64,
    ) -> Result<Option<crate::credentials::ConnectionToken>, ConnectionError> {
        let Some(mut record) = self.store.connection(user, name).await? else {
            return Ok(None);
        };
        if record.state != ConnectionState::Active {
            return Ok(None);
        }
        let mut tokens = self.vault.open(user, name, &record.sealed)?;
        let near_expiry = |r: &crate::store::ConnectionRecord| {
            r.expires_at
                .is_some_and(|at| at - now < REFRESH_MARGIN_SECS)
        };
        if near_expiry(&record) {
            // One refresh at a time per connection here (a rotating refresh token works
            // once); a refresh done meanwhile, here or on another replica, is used.
            let lock = self.refresh_lock(user, name);
            let _one = lock.lock().await;
            match self.store.connection(user, name).await? {
                Some(current) if current.state == ConnectionState::Active => {
                    if current.sealed != record.sealed {
                        tokens = self.vault.open(user, name, &current.sealed)?;
                    }
                    record = current;
                }
                _ => return Ok(None),
            }
        }
        if near_expiry(&record) {
            match self.refresh(&record, &tokens, now).await {
                Ok(Some((fresh, fresh_record))) => {
                    tokens = fresh;
                    record = fresh_record;
                }
                Ok(None) if record.expires_at.is_some_and(|at| at <= now) => {
                    self.needs_consent(&record, "expired without a refresh token")
                        .await?;
                    return Ok(None);
                }
                Ok(None) => {}
                Err(Refresh::Refused(why)) => {
                    self.needs_consent(&record, &why).await?;
                    return Ok(None);
                }
                Err(Refresh::Unavailable(why)) => {
                    return Err(ConnectionError::Provider(why));
                }
            }
        }
        self.store.touch_connection(user, name, now).await?;
        Ok(Some(crate::credentials::ConnectionToken {
            token: Secret::new(tokens.access_token.as_bytes()),
            expires_at: record.expires_at,
            granted_at: record.granted_at,
        }))
    }

    /// The lock one connection's refreshes take in this process.
    fn refresh_lock(&self, user: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refreshing.lock();
        if locks.len() > 1024 {
            locks.retain(|_, l| l.strong_count() > 0);
        }
        let key = (user.to_owned(), name.to_owned());
        if let Some(l) = locks.get(&key).and_then(std::sync::Weak::upgrade) {
            return l;
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key, Arc::downgrade(&l));
        l
    }

    /// Marks a connection as needing the user's consent again, unless its tokens changed
    /// since `record` was read (a reconnect or another replica's refresh won).
    async fn needs_consent(
        &self,
        record: &crate::store::ConnectionRecord,
        why: &str,
    ) -> Result<(), StoreError> {
        if self
            .store
            .set_connection_state_if(
                &record.user_id,
                &record.name,
                ConnectionState::NeedsConsent,
                &record.sealed,
            )
            .await?
        {
            tracing::warn!(
                connection = %record.name,
                reason = why,
                "a connection needs the user's consent again"
            );
            self.record(&record.user_id, &record.name, "refresh_failed");
        }
        Ok(())
    }

    /// New tokens for a connection (`None`: it has no refresh token). Another replica may
    /// have refreshed it first: then its tokens are used.
    async fn refresh(
        &self,
        record: &crate::store::ConnectionRecord,
        tokens: &Tokens,
        now: i64,
    ) -> Result<Option<(Tokens, crate::store::ConnectionRecord)>, Refresh> {
        let Some(refresh_token) = &tokens.refresh_token else {
            return Ok(None);
        };
        let config = self
            .config(&record.name)
            .ok_or_else(|| Refresh::Refused("the connection is no longer configured".into()))?;
        let endpoints = self.endpoints(config).await.map_err(Refresh::Unavailable)?;
        let answer = self
            .token_request(
                config,
                &endpoints.token,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ],
            )
            .await
            .map_err(|e| match e {
                crate::auth::fetch::FetchError::Status { status, .. }
                    if status < 500 && status != 429 =>
                {
                    Refresh::Refused(format!("the provider refused the refresh ({status})"))
                }
                e => Refresh::Unavailable(e.to_string()),
            })?;
        // Rotated when the provider says so; kept otherwise.
        let fresh = tokens_of(&answer, tokens.refresh_token.as_ref()).ok_or_else(|| {
            Refresh::Refused("the refresh answer has no usable access token".into())
        })?;
        let sealed = self
            .vault
            .seal(&record.user_id, &record.name, &fresh)
            .map_err(|e| Refresh::Unavailable(e.to_string()))?;
        let updated = crate::store::ConnectionRecord {
            sealed,
            expires_at: expires_at(&answer, now),
            ..record.clone()
        };
        if self
            .store
            .refresh_connection(&updated, &record.sealed)
            .await
            .map_err(|e| Refresh::Unavailable(e.to_string()))?
        {
            tracing::info!(connection = %record.name, "a connection was refreshed");
            self.record(&record.user_id, &record.name, "refreshed");
            return Ok(Some((fresh, updated)));
        }
        // Refreshed elsewhere meanwhile: use what is stored now.
        let now_stored = self
            .store
            .connection(&record.user_id, &record.name)
            .await
            .map_err(|e| Refresh::Unavailable(e.to_string()))?
            .filter(|r| r.state == ConnectionState::Active)
            .ok_or_else(|| Refresh::Refused("revoked while refreshing".into()))?;
        let stored = self
            .vault
            .open(&record.user_id, &record.name, &now_stored.sealed)
            .map_err(|e| Refresh::Unavailable(e.to_string()))?;
        Ok(Some((stored, now_stored)))
    }

    /// Whether a grant a session was given still stands.
    pub async fn still_granted(&self, given: &crate::credentials::ConnectionRef) -> bool {
        match self.store.connection(&given.user, &given.name).await {
            Ok(Some(r)) => r.state == ConnectionState::Active && r.granted_at == given.granted_at,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check connections: sessions keep theirs");
                true
            }
        }
    }

    /// Where `user` connects `name`: a page of the sign-in server, with a link signed for
    /// that user and connection that expires after an hour. The page completes it only in a
    /// browser signed in as that user.
    pub fn connect_url(&self, user: &str, name: &str, now: i64) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(
            serde_json::json!({"u": user, "c": name, "e": now + LINK_TTL_SECS}).to_string(),
        );
        let mac = b64.encode(self.vault.sign_link(body.as_bytes()));
        format!(
            "{}/connections/{name}/connect?link={body}.{mac}",
            self.issuer
        )
    }

    /// The user a connect link was signed for, if it is one of ours, for connection `name`,
    /// and unexpired.
    pub fn link_user(&self, link: &str, name: &str, now: i64) -> Option<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (body, mac) = link.split_once('.')?;
        let mac = b64.decode(mac).ok()?;
        aws_lc_rs::constant_time::verify_slices_are_equal(
            &self.vault.sign_link(body.as_bytes()),
            &mac,
        )
        .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(body).ok()?).ok()?;
        let expires = claims.get("e")?.as_i64()?;
        (claims.get("c")?.as_str()? == name && now < expires)
            .then(|| claims.get("u")?.as_str().map(str::to_owned))
            .flatten()
    }

    /// Stores what a provider gave `user` for connection `name`, replacing any earlier
    /// connection of that name.
    pub async fn store_tokens(
        &self,
        user: &str,
        name: &str,
        tokens: &Tokens,
        scopes: Vec<String>,
        expires_at: Option<i64>,
        now: i64,
    ) -> Result<(), ConnectionError> {
        let sealed = self.vault.seal(user, name, tokens)?;
        self.store
            .put_connection(&crate::store::ConnectionRecord {
                user_id: user.to_owned(),
                name: name.to_owned(),
                sealed,
                scopes,
                state: ConnectionState::Active,
                granted_at: now,
                expires_at,
                last_used_at: None,
            })
            .await?;
        Ok(())
    }
}

/// Right after signing in, a user connects the required accounts they lack.
impl crate::authz::Chain for Connections {
    fn missing<'a>(&'a self, user: &'a str) -> crate::authz::ChainFuture<'a> {
        Box::pin(async move {
            let made = match self.store.connections(Some(user)).await {
                Ok(made) => made,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read connections: the sign-in goes on without them");
                    return Vec::new();
                }
            };
            self.configs
                .iter()
                .filter(|c| c.required)
                .filter(|c| {
                    !made
                        .iter()
                        .any(|m| m.name == c.name && m.state == ConnectionState::Active)
                })
                .map(|c| c.name.clone())
                .collect()
        })
    }

    fn link(&self, user: &str, name: &str, then: &str) -> String {
        let mut url = self.connect_url(user, name, crate::authz::unix_now());
        url.push_str("&then=");
        url.push_str(&url::form_urlencoded::byte_serialize(then.as_bytes()).collect::<String>());
        url
    }
}

/// The tokens sessions' environments are given.
impl crate::credentials::ConnectionTokens for Connections {
    fn serves(&self, issuer: &str) -> bool {
        issuer == self.issuer
    }

    fn access_token<'a>(
        &'a self,
        user: &'a str,
        name: &'a str,
    ) -> crate::credentials::ConnectionFuture<'a> {
        Box::pin(async move {
            Connections::access_token(self, user, name, crate::authz::unix_now())
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn still_granted<'a>(
        &'a self,
        given: &'a crate::credentials::ConnectionRef,
    ) -> crate::credentials::GrantedFuture<'a> {
        Box::pin(Connections::still_granted(self, given))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> crate::auth::fetch::HttpClient {
        crate::auth::fetch::HttpClient::new(None, std::time::Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn a_token_answer_gives_tokens_only_when_they_can_be_injected() {
        let answer = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let t = tokens_of(
            &answer(
                serde_json::json!({"access_token": "at-12345678", "refresh_token": "rt-12345678"}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(t.refresh_token.as_deref(), Some("rt-12345678"));
        let previous = "rt-previous".to_owned();
        let kept = tokens_of(
            &answer(serde_json::json!({"access_token": "at-12345678"})),
            Some(&previous),
        )
        .unwrap();
        assert_eq!(kept.refresh_token.as_deref(), Some("rt-previous"));
        for bad in [
            "",
            "short",
            "has space 123",
            "nul\u{0}123456",
            &"x".repeat(9000),
        ] {
            assert!(
                tokens_of(&answer(serde_json::json!({"access_token": bad})), None).is_none(),
                "{bad:?}"
            );
        }
        assert_eq!(
            expires_at(&answer(serde_json::json!({"expires_in": i64::MAX})), 100),
            Some(100 + 10 * 365 * 86_400)
        );
        assert_eq!(
            expires_at(&answer(serde_json::json!({"expires_in": -5})), 100),
            None
        );
    }

    #[test]
    fn connection_names_are_short_lowercase_words() {
        for good in ["github", "google-workspace", "slack_2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "GitHub", "a/b", "a b", "..", &"x".repeat(33), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_users_token_is_theirs_alone_and_sealed_in_the_store() {
        let store = Store::open(&crate::store::StoreConfig::Memory)
            .await
            .unwrap();
        let c = Connections::new(
            Vec::new(),
            store.clone(),
            Vault::ephemeral().unwrap(),
            "https://as.example".into(),
            http(),
        );
        let tokens = Tokens {
            access_token: "alice-access".into(),
            refresh_token: None,
        };
        c.store_tokens("alice", "github", &tokens, vec!["repo".into()], None, 10)
            .await
            .unwrap();
        let got = c
            .access_token("alice", "github", 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.token.expose(), b"alice-access");
        assert!(c.access_token("bob", "github", 20).await.unwrap().is_none());
        let row = store.connection("alice", "github").await.unwrap().unwrap();
        assert!(!row.sealed.contains("alice-access"));
        assert_eq!(row.last_used_at, Some(20));
        store
            .set_connection_state("alice", "github", ConnectionState::NeedsConsent)
            .await
            .unwrap();
        assert!(
            c.access_token("alice", "github", 30)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_database_file_holds_no_token_and_opens_with_no_other_key() {
        let dir = std::env::temp_dir().join(format!("mcp-warden-vault-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = crate::store::StoreConfig::Sqlite { dir: dir.clone() };
        let key = Secret::new("ab".repeat(32));
        let tokens = Tokens {
            access_token: "gho_ACCESS-0123456789".into(),
            refresh_token: Some("ghr_REFRESH-0123456789".into()),
        };
        {
            let store = Store::open(&config).await.unwrap();
            let c = Connections::new(
                Vec::new(),
                store,
                Vault::from_key_text(&key).unwrap(),
                "https://as.example".into(),
                http(),
            );
            c.store_tokens("alice", "github", &tokens, vec![], None, 1)
                .await
                .unwrap();
        }
        // Every file of the store, as a copy of the disk would have it.
        let mut bytes = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            bytes.extend(std::fs::read(f.unwrap().path()).unwrap_or_default());
        }
        assert!(
            bytes
                .windows(4)
                .any(|w| w == b"v1.A" || w.starts_with(b"v1."))
        );
        for secret in ["gho_ACCESS", "ghr_REFRESH", "0123456789"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in the database file"
            );
        }
        let store = Store::open(&config).await.unwrap();
        let other = Connections::new(
            Vec::new(),
            store.clone(),
            Vault::from_key_text(&Secret::new("cd".repeat(32))).unwrap(),
            "https://as.example".into(),
            http(),
        );
        assert!(matches!(
            other.access_token("alice", "github", 2).await,
            Err(ConnectionError::Vault(VaultError::Unopenable))
        ));
        let right = Connections::new(
            Vec::new(),
            store,
            Vault::from_key_text(&key).unwrap(),
            "https://as.example".into(),
            http(),
        );
        let got = right
            .access_token("alice", "github", 2)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.token.expose(), b"gho_ACCESS-0123456789");
        drop(right);
        drop(other);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_connect_link_names_its_user_and_connection_and_expires() {
        let store = Store::open(&crate::store::StoreConfig::Memory)
            .await
            .unwrap();
        let c = Connections::new(
            Vec::new(),
            store,
            Vault::ephemeral().unwrap(),
            "https://as.example/p".into(),
            http(),
        );
        let url = c.connect_url("alice", "github", 100);
        let link = url
            .strip_prefix("https://as.example/p/connections/github/connect?link=")
            .unwrap();
        assert_eq!(c.link_user(link, "github", 101).as_deref(), Some("alice"));
        assert_eq!(c.link_user(link, "slack", 101), None, "another connection");
        assert_eq!(
            c.link_user(link, "github", 100 + LINK_TTL_SECS),
            None,
            "expired"
        );
        // Another user's name in the body breaks the signature.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (_, mac) = link.split_once('.').unwrap();
        let forged = b64.encode(r#"{"u":"mallory","c":"github","e":9999999999}"#);
        assert_eq!(c.link_user(&format!("{forged}.{mac}"), "github", 101), None);
        let other = Connections::new(
            Vec::new(),
            Store::open(&crate::store::StoreConfig::Memory)
                .await
                .unwrap(),
            Vault::ephemeral().unwrap(),
            "https://as.example/p".into(),
            http(),
        );
        assert_eq!(other.link_user(link, "github", 101), None, "another key");
    }
}
