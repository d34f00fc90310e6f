//! Durable state of the authorization server: registered clients, cached client metadata
//! documents, users, sign-in flows, authorization codes, refresh-token families and
//! consents. One interface, two stores: SQLite under `--state-dir` (one replica) and
//! PostgreSQL with `--state-url` (several replicas).
//!
//! Every secret (codes, refresh tokens, flow ids, cookies, CSRF tokens, client secrets) is
//! kept only as its SHA-256. Single use and rotation are single conditional `UPDATE …
//! RETURNING` statements, so they hold across replicas without explicit transactions. Both
//! stores run the same SQL over two column types only (TEXT and BIGINT), which keeps the
//! logic here, written once, and the backends small.

mod postgres;
mod sqlite;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use postgres::check_url as check_postgres_url;

/// The schema version this binary writes: one per step of [`MIGRATIONS`]. A store with a
/// newer one is refused; an older one is brought up to it, step by step, at open.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The schema, as steps both backends run in order (TEXT and BIGINT only): step `n` takes a
/// store from version `n` to `n + 1`. Steps are never edited once released, only appended.
const MIGRATIONS: &[&[&str]] = &[SCHEMA, CONNECTIONS];

/// Where state lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// In memory: lost on exit (`--dev` without `--state-dir`).
    Memory,
    /// `<dir>/state.db`, created 0600 in a 0700 directory, locked against a second process.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL URL (`postgres://…`), with extra CA certificates for its TLS.
    Postgres {
        url: String,
        ca_pem: Option<Vec<u8>>,
    },
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state store is unavailable: {0}")]
    Unavailable(String),
    #[error("the state store holds data this version cannot read: {0}")]
    Corrupt(String),
    #[error(
        "the state store was written by a newer mcp-warden (schema {found}, this one knows {supported}); run the newer version"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("{0}")]
    Config(String),
}

/// One SQL value: the store uses text and 64-bit integers only.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Text(String),
    Int(i64),
    NullText,
    NullInt,
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_owned())
    }
}
impl From<String> for Val {
    fn from(s: String) -> Val {
        Val::Text(s)
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}
impl From<Option<String>> for Val {
    fn from(s: Option<String>) -> Val {
        s.map_or(Val::NullText, Val::Text)
    }
}
impl From<Option<i64>> for Val {
    fn from(i: Option<i64>) -> Val {
        i.map_or(Val::NullInt, Val::Int)
    }
}

/// A result row.
#[derive(Debug, Clone)]
pub(crate) struct Row(Vec<Val>);

impl Row {
    fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Ok(s.clone()),
            other => Err(StoreError::Corrupt(format!("column {i}: {other:?}"))),
        }
    }
    fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Val::Text(s)) => Some(s.clone()),
            _ => None,
        }
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Val::Int(v)) => Ok(*v),
            other => Err(StoreError::Corrupt(format!("column {i}: {other:?}"))),
        }
    }
    fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Val::Int(v)) => Some(*v),
            _ => None,
        }
    }
    fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(i)?).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Version 1: the authorization server.
const SCHEMA: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE clients (client_id TEXT PRIMARY KEY, metadata TEXT NOT NULL,
        secret_hash TEXT, registered_at BIGINT NOT NULL, last_used_at BIGINT)",
    "CREATE TABLE cimd_cache (url TEXT PRIMARY KEY, document TEXT NOT NULL,
        fingerprint TEXT NOT NULL, fetched_at BIGINT NOT NULL, fresh_until BIGINT NOT NULL,
        first_seen_at BIGINT NOT NULL)",
    "CREATE TABLE users (user_id TEXT PRIMARY KEY, idp TEXT NOT NULL, idp_sub TEXT NOT NULL,
        claims TEXT NOT NULL, created_at BIGINT NOT NULL, last_login_at BIGINT NOT NULL,
        UNIQUE (idp, idp_sub))",
    "CREATE TABLE flows (flow_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, step TEXT NOT NULL,
        browser_hash TEXT NOT NULL, csrf_hash TEXT, upstream_state_hash TEXT UNIQUE,
        upstream_secrets TEXT, request TEXT NOT NULL, user_id TEXT,
        created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)",
    "CREATE TABLE auth_codes (code_hash TEXT PRIMARY KEY, grant_data TEXT NOT NULL,
        created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT, family_id TEXT)",
    "CREATE TABLE refresh_families (family_id TEXT PRIMARY KEY, client_id TEXT NOT NULL,
        user_id TEXT NOT NULL, grant_data TEXT NOT NULL, created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL, revoked_at BIGINT, revoke_reason TEXT)",
    "CREATE TABLE refresh_tokens (token_hash TEXT PRIMARY KEY, family_id TEXT NOT NULL,
        created_at BIGINT NOT NULL, idle_expires_at BIGINT NOT NULL, rotated_at BIGINT)",
    "CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id)",
    "CREATE TABLE consents (user_id TEXT NOT NULL, client_id TEXT NOT NULL,
        resource TEXT NOT NULL, scopes TEXT NOT NULL, client_fingerprint TEXT NOT NULL,
        granted_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, client_id, resource))",
];

/// Version 2: users' upstream connections (their provider tokens, sealed by the caller of
/// the store: the store never sees them in the clear).
const CONNECTIONS: &[&str] = &[
    "CREATE TABLE connections (user_id TEXT NOT NULL, name TEXT NOT NULL,
        sealed TEXT NOT NULL, scopes TEXT NOT NULL, state TEXT NOT NULL,
        granted_at BIGINT NOT NULL, expires_at BIGINT, last_used_at BIGINT,
        PRIMARY KEY (user_id, name))",
    // Browsers signed in at the sign-in server (by the hash of their binding cookie): who
    // may complete a connection there.
    "CREATE TABLE web_sessions (browser_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL)",
];

/// A dynamically registered client (RFC 7591).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRecord {
    pub client_id: String,
    /// The registered metadata, as answered to the client.
    pub metadata: serde_json::Value,
    /// SHA-256 (base64url) of the client secret, for confidential clients.
    pub secret_hash: Option<String>,
    pub registered_at: i64,
}

/// A fetched and validated client metadata document.
#[derive(Debug, Clone, PartialEq)]
pub struct CimdRecord {
    pub url: String,
    pub document: serde_json::Value,
    pub fingerprint: String,
    pub fetched_at: i64,
    pub fresh_until: i64,
    pub first_seen_at: i64,
}

/// A user: the upstream issuer and subject, and the claims kept from the last sign-in.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: String,
    pub idp: String,
    pub sub: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Where a sign-in flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStep {
    /// Waiting for the user at the development login page.
    Login,
    /// The browser was sent to the upstream provider.
    Upstream,
    /// Back from the upstream; the callback is being handled.
    Callback,
    /// Waiting for the user's consent.
    Consent,
    /// Allowed; waiting while the user connects required accounts (then the code).
    Connecting,
}

impl FlowStep {
    fn as_str(self) -> &'static str {
        match self {
            FlowStep::Login => "login",
            FlowStep::Upstream => "upstream",
            FlowStep::Callback => "callback",
            FlowStep::Consent => "consent",
            FlowStep::Connecting => "connecting",
        }
    }
    fn parse(s: &str) -> Result<FlowStep, StoreError> {
        Ok(match s {
            "login" => FlowStep::Login,
            "upstream" => FlowStep::Upstream,
            "callback" => FlowStep::Callback,
            "consent" => FlowStep::Consent,
            "connecting" => FlowStep::Connecting,
            other => return Err(StoreError::Corrupt(format!("flow step {other:?}"))),
        })
    }
}

/// A sign-in in progress, bound to the browser that started it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub flow_hash: String,
    /// `authorize` (an MCP client's sign-in); the same table serves other browser flows.
    pub kind: String,
    pub step: FlowStep,
    pub browser_hash: String,
    pub csrf_hash: Option<String>,
    pub upstream_state_hash: Option<String>,
    /// The upstream PKCE verifier and nonce (JSON), useless without the upstream's code.
    pub upstream_secrets: Option<String>,
    /// The client's authorization request (JSON).
    pub request: serde_json::Value,
    pub user_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What a code or a refresh family grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub code_challenge: String,
    pub may_refresh: bool,
    pub auth_time: i64,
}

/// An authorization code.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRecord {
    pub code_hash: String,
    pub grant: Grant,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The outcome of redeeming a code.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed {
    /// First use: the grant, and whether it has expired (an expired code is burnt too).
    Fresh {
        grant: Grant,
        expired: bool,
    },
    /// Already used; the refresh family created from it, if any.
    Used {
        family: Option<String>,
    },
    Unknown,
}

/// A refresh-token family: every token rotated from one authorization.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyRecord {
    pub family_id: String,
    pub grant: Grant,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotated {
    /// The token was live: it is now rotated and `new` is its successor.
    Ok(FamilyRecord),
    /// The token had been rotated before: its family is now revoked.
    Reused {
        family: String,
    },
    /// The token is past its idle lifetime or its family is over.
    Expired,
    Revoked,
    Unknown,
}

/// A remembered consent.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    pub user_id: String,
    pub client_id: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub client_fingerprint: String,
    pub granted_at: i64,
    pub expires_at: i64,
}

/// Rows deleted by [`Store::purge_expired`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub flows: u64,
    pub codes: u64,
    pub families: u64,
}

/// How long used codes are kept after they expire, so a late replay is still recognized
/// (and revokes what the code issued).
const CODE_KEEP_SECS: i64 = 600;
/// How long revoked or expired families are kept, so their tokens are still recognized.
const FAMILY_KEEP_SECS: i64 = 86_400;

/// The state store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens (creating when needed) and migrates the store.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let backend = match config {
            StoreConfig::Memory => Backend::Sqlite(sqlite::SqliteStore::memory()?),
            StoreConfig::Sqlite { dir } => Backend::Sqlite(sqlite::SqliteStore::open(dir)?),
            StoreConfig::Postgres { url, ca_pem } => {
                Backend::Postgres(postgres::PgStore::connect(url, ca_pem.as_deref()).await?)
            }
        };
        let store = Store { backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Which backend this is, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.migrate(MIGRATIONS).await,
            Backend::Postgres(p) => p.migrate(MIGRATIONS).await,
        }
    }

    async fn query(&self, sql: &'static str, params: Vec<Val>) -> Result<Vec<Row>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.query(sql, params).await,
            Backend::Postgres(p) => p.query(sql, params).await,
        }
    }

    async fn execute(&self, sql: &'static str, params: Vec<Val>) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.execute(sql, params).await,
            Backend::Postgres(p) => p.execute(sql, params).await,
        }
    }

    async fn one(&self, sql: &'static str, params: Vec<Val>) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    // ------------------------------------------------------------------ meta

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .one("SELECT value FROM meta WHERE key = $1", vec![key.into()])
            .await?;
        row.map(|r| r.text(0)).transpose()
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![key.into(), value.into()],
        )
        .await
        .map(drop)
    }

    // ------------------------------------------------------------------ clients

    pub async fn put_client(&self, c: &ClientRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO clients (client_id, metadata, secret_hash, registered_at)
             VALUES ($1, $2, $3, $4)",
            vec![
                c.client_id.as_str().into(),
                to_json(&c.metadata).into(),
                c.secret_hash.clone().into(),
                c.registered_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    pub async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = self
            .one(
                "SELECT client_id, metadata, secret_hash, registered_at FROM clients
                 WHERE client_id = $1",
                vec![client_id.into()],
            )
            .await?;
        row.map(|r| {
            Ok(ClientRecord {
                client_id: r.text(0)?,
                metadata: r.json(1)?,
                secret_hash: r.opt_text(2),
                registered_at: r.int(3)?,
            })
        })
        .transpose()
    }

    pub async fn count_clients(&self) -> Result<i64, StoreError> {
        let row = self
            .one("SELECT COUNT(*) FROM clients", vec![])
            .await?
            .ok_or_else(|| StoreError::Corrupt("no count".into()))?;
        row.int(0)
    }

    // ------------------------------------------------------------------ CIMD cache

    pub async fn cimd_get(&self, url: &str) -> Result<Option<CimdRecord>, StoreError> {
        let row = self
            .one(
                "SELECT url, document, fingerprint, fetched_at, fresh_until, first_seen_at
                 FROM cimd_cache WHERE url = $1",
                vec![url.into()],
            )
            .await?;
        row.map(|r| {
            Ok(CimdRecord {
                url: r.text(0)?,
                document: r.json(1)?,
                fingerprint: r.text(2)?,
                fetched_at: r.int(3)?,
                fresh_until: r.int(4)?,
                first_seen_at: r.int(5)?,
            })
        })
        .transpose()
    }

    /// Stores a document; `first_seen_at` of an existing entry is kept.
    pub async fn cimd_put(&self, c: &CimdRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO cimd_cache (url, document, fingerprint, fetched_at, fresh_until,
                first_seen_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (url) DO UPDATE SET document = excluded.document,
                fingerprint = excluded.fingerprint, fetched_at = excluded.fetched_at,
                fresh_until = excluded.fresh_until",
            vec![
                c.url.as_str().into(),
                to_json(&c.document).into(),
                c.fingerprint.as_str().into(),
                c.fetched_at.into(),
                c.fresh_until.into(),
                c.first_seen_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    // ------------------------------------------------------------------ users

    /// Records a sign-in of (`idp`, `sub`) with its current claims; returns the user id.
    pub async fn upsert_user(
        &self,
        idp: &str,
        sub: &str,
        claims: &serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> Result<String, StoreError> {
        let fresh_id = random_id()?;
        let row = self
            .one(
                "INSERT INTO users (user_id, idp, idp_sub, claims, created_at, last_login_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (idp, idp_sub) DO UPDATE SET claims = excluded.claims,
                    last_login_at = excluded.last_login_at
                 RETURNING user_id",
                vec![
                    fresh_id.into(),
                    idp.into(),
                    sub.into(),
                    to_json(claims).into(),
                    now.into(),
                ],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("upsert returned nothing".into()))?;
        row.text(0)
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .one(
                "SELECT user_id, idp, idp_sub, claims FROM users WHERE user_id = $1",
                vec![user_id.into()],
            )
            .await?;
        row.map(|r| {
            Ok(UserRecord {
                user_id: r.text(0)?,
                idp: r.text(1)?,
                sub: r.text(2)?,
                claims: r.json(3)?,
            })
        })
        .transpose()
    }

    // ------------------------------------------------------------------ flows

    pub async fn put_flow(&self, f: &FlowRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO flows (flow_hash, kind, step, browser_hash, csrf_hash,
                upstream_state_hash, upstream_secrets, request, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                f.flow_hash.as_str().into(),
                f.kind.as_str().into(),
                f.step.as_str().into(),
                f.browser_hash.as_str().into(),
                f.csrf_hash.clone().into(),
                f.upstream_state_hash.clone().into(),
                f.upstream_secrets.clone().into(),
                to_json(&f.request).into(),
                f.user_id.clone().into(),
                f.created_at.into(),
                f.expires_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    fn flow_row(r: &Row) -> Result<FlowRecord, StoreError> {
        Ok(FlowRecord {
            flow_hash: r.text(0)?,
            kind: r.text(1)?,
            step: FlowStep::parse(&r.text(2)?)?,
            browser_hash: r.text(3)?,
            csrf_hash: r.opt_text(4),
            upstream_state_hash: r.opt_text(5),
            upstream_secrets: r.opt_text(6),
            request: r.json(7)?,
            user_id: r.opt_text(8),
            created_at: r.int(9)?,
            expires_at: r.int(10)?,
        })
    }

    /// A live flow by the hash of its id.
    pub async fn flow(&self, flow_hash: &str, now: i64) -> Result<Option<FlowRecord>, StoreError> {
        let row = self
            .one(
                "SELECT flow_hash, kind, step, browser_hash, csrf_hash, upstream_state_hash,
                    upstream_secrets, request, user_id, created_at, expires_at
                 FROM flows WHERE flow_hash = $1 AND expires_at > $2",
                vec![flow_hash.into(), now.into()],
            )
            .await?;
        row.map(|r| Self::flow_row(&r)).transpose()
    }

    /// Moves a flow from `from` to `to` (compare and set), recording the user, a fresh
    /// CSRF hash and the (amended) request. False when the flow is not (or no longer) at `from`.
    #[allow(clippy::too_many_arguments)]
    pub async fn advance_flow(
        &self,
        flow_hash: &str,
        from: FlowStep,
        to: FlowStep,
        user_id: Option<&str>,
        csrf_hash: Option<&str>,
        request: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE flows SET step = $3, user_id = COALESCE($4, user_id),
                    csrf_hash = COALESCE($5, csrf_hash), request = COALESCE($7, request)
                 WHERE flow_hash = $1 AND step = $2 AND expires_at > $6",
                vec![
                    flow_hash.into(),
                    from.as_str().into(),
                    to.as_str().into(),
                    user_id.map(str::to_owned).into(),
                    csrf_hash.map(str::to_owned).into(),
                    now.into(),
                    request.map(to_json).into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Moves a flow from `from` to `to` and gives it until `expires_at` (a step that waits
    /// for the user elsewhere); false when it was not at `from` or has expired.
    pub async fn advance_flow_until(
        &self,
        flow_hash: &str,
        from: FlowStep,
        to: FlowStep,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE flows SET step = $3, expires_at = $4
                 WHERE flow_hash = $1 AND step = $2 AND expires_at > $5",
                vec![
                    flow_hash.into(),
                    from.as_str().into(),
                    to.as_str().into(),
                    expires_at.into(),
                    now.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Replaces the CSRF hash of a flow at `step` (a page was rendered again).
    pub async fn set_flow_csrf(
        &self,
        flow_hash: &str,
        step: FlowStep,
        csrf_hash: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE flows SET csrf_hash = $3 WHERE flow_hash = $1 AND step = $2",
                vec![flow_hash.into(), step.as_str().into(), csrf_hash.into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Takes the flow waiting for the upstream's answer with this `state`, once: a replayed
    /// `state` finds nothing.
    pub async fn claim_flow_by_upstream_state(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<FlowRecord>, StoreError> {
        let row = self
            .one(
                "UPDATE flows SET step = 'callback', upstream_state_hash = NULL
                 WHERE upstream_state_hash = $1 AND step = 'upstream' AND expires_at > $2
                 RETURNING flow_hash, kind, step, browser_hash, csrf_hash, $1,
                    upstream_secrets, request, user_id, created_at, expires_at",
                vec![state_hash.into(), now.into()],
            )
            .await?;
        row.map(|r| Self::flow_row(&r)).transpose()
    }

    /// Ends a flow at `step`; false when another request ended or moved it first.
    pub async fn finish_flow(&self, flow_hash: &str, step: FlowStep) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "DELETE FROM flows WHERE flow_hash = $1 AND step = $2",
                vec![flow_hash.into(), step.as_str().into()],
            )
            .await?;
        Ok(n == 1)
    }

    // ------------------------------------------------------------------ codes

    pub async fn put_code(&self, c: &CodeRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO auth_codes (code_hash, grant_data, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
            vec![
                c.code_hash.as_str().into(),
                to_json(&c.grant).into(),
                c.created_at.into(),
                c.expires_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    /// Marks a code used, atomically: exactly one caller ever gets [`Redeemed::Fresh`].
    pub async fn redeem_code(&self, code_hash: &str, now: i64) -> Result<Redeemed, StoreError> {
        let row = self
            .one(
                "UPDATE auth_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL
                 RETURNING grant_data, expires_at",
                vec![code_hash.into(), now.into()],
            )
            .await?;
        if let Some(r) = row {
            return Ok(Redeemed::Fresh {
                grant: r.json(0)?,
                expired: r.int(1)? <= now,
            });
        }
        let row = self
            .one(
                "SELECT family_id FROM auth_codes WHERE code_hash = $1",
                vec![code_hash.into()],
            )
            .await?;
        Ok(match row {
            Some(r) => Redeemed::Used {
                family: r.opt_text(0),
            },
            None => Redeemed::Unknown,
        })
    }

    /// Remembers the family a code created, so a replay of the code revokes it.
    pub async fn bind_code_family(&self, code_hash: &str, family: &str) -> Result<(), StoreError> {
        self.execute(
            "UPDATE auth_codes SET family_id = $2 WHERE code_hash = $1",
            vec![code_hash.into(), family.into()],
        )
        .await
        .map(drop)
    }

    // ------------------------------------------------------------------ refresh tokens

    /// Starts a family with its first token.
    pub async fn create_family(
        &self,
        f: &FamilyRecord,
        token_hash: &str,
        idle_expires_at: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO refresh_families (family_id, client_id, user_id, grant_data,
                created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                f.family_id.as_str().into(),
                f.grant.client_id.as_str().into(),
                f.grant.user_id.as_str().into(),
                to_json(&f.grant).into(),
                f.created_at.into(),
                f.expires_at.into(),
            ],
        )
        .await?;
        self.insert_token(&f.family_id, token_hash, f.created_at, idle_expires_at)
            .await
    }

    async fn insert_token(
        &self,
        family: &str,
        token_hash: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, created_at, idle_expires_at)
             VALUES ($1, $2, $3, $4)",
            vec![
                token_hash.into(),
                family.into(),
                now.into(),
                idle_expires_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    async fn family(&self, family_id: &str) -> Result<Option<FamilyRecord>, StoreError> {
        let row = self
            .one(
                "SELECT family_id, grant_data, created_at, expires_at, revoked_at
                 FROM refresh_families WHERE family_id = $1",
                vec![family_id.into()],
            )
            .await?;
        row.map(|r| {
            Ok(FamilyRecord {
                family_id: r.text(0)?,
                grant: r.json(1)?,
                created_at: r.int(2)?,
                expires_at: r.int(3)?,
                revoked_at: r.opt_int(4),
            })
        })
        .transpose()
    }

    /// The family of a refresh token, whatever its state (for revocation).
    pub async fn family_of_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<FamilyRecord>, StoreError> {
        let row = self
            .one(
                "SELECT family_id FROM refresh_tokens WHERE token_hash = $1",
                vec![token_hash.into()],
            )
            .await?;
        match row {
            Some(r) => self.family(&r.text(0)?).await,
            None => Ok(None),
        }
    }

    /// Presents a refresh token: rotates it to `new_hash` when it is live; a second
    /// presentation of a rotated token revokes its whole family (RFC 9700 §4.14.2). Of
    /// concurrent presentations exactly one wins, and the others revoke the family.
    pub async fn rotate_refresh(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        idle_expires_at: i64,
    ) -> Result<Rotated, StoreError> {
        let won = self
            .one(
                "UPDATE refresh_tokens SET rotated_at = $2
                 WHERE token_hash = $1 AND rotated_at IS NULL
                 RETURNING family_id, idle_expires_at",
                vec![old_hash.into(), now.into()],
            )
            .await?;
        let Some(won) = won else {
            let Some(row) = self
                .one(
                    "SELECT family_id FROM refresh_tokens WHERE token_hash = $1",
                    vec![old_hash.into()],
                )
                .await?
            else {
                return Ok(Rotated::Unknown);
            };
            let family = row.text(0)?;
            self.revoke_family(&family, "reuse", now).await?;
            return Ok(Rotated::Reused { family });
        };
        let family_id = won.text(0)?;
        let Some(family) = self.family(&family_id).await? else {
            return Ok(Rotated::Unknown);
        };
        if family.revoked_at.is_some() {
            return Ok(Rotated::Revoked);
        }
        if won.int(1)? <= now || family.expires_at <= now {
            return Ok(Rotated::Expired);
        }
        self.insert_token(
            &family_id,
            new_hash,
            now,
            idle_expires_at.min(family.expires_at),
        )
        .await?;
        Ok(Rotated::Ok(family))
    }

    /// Revokes a family: none of its tokens refreshes again.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE refresh_families SET revoked_at = $2, revoke_reason = $3
             WHERE family_id = $1 AND revoked_at IS NULL",
            vec![family_id.into(), now.into(), reason.into()],
        )
        .await
        .map(drop)
    }

    /// Why a family was revoked, if it was.
    pub async fn family_revoke_reason(
        &self,
        family_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .one(
                "SELECT revoke_reason FROM refresh_families WHERE family_id = $1",
                vec![family_id.into()],
            )
            .await?;
        Ok(row.and_then(|r| r.opt_text(0)))
    }

    // ------------------------------------------------------------------ consents

    pub async fn consent(
        &self,
        user_id: &str,
        client_id: &str,
        resource: &str,
        now: i64,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        let row = self
            .one(
                "SELECT user_id, client_id, resource, scopes, client_fingerprint, granted_at,
                    expires_at FROM consents
                 WHERE user_id = $1 AND client_id = $2 AND resource = $3 AND expires_at > $4",
                vec![
                    user_id.into(),
                    client_id.into(),
                    resource.into(),
                    now.into(),
                ],
            )
            .await?;
        row.map(|r| {
            Ok(ConsentRecord {
                user_id: r.text(0)?,
                client_id: r.text(1)?,
                resource: r.text(2)?,
                scopes: r.json(3)?,
                client_fingerprint: r.text(4)?,
                granted_at: r.int(5)?,
                expires_at: r.int(6)?,
            })
        })
        .transpose()
    }

    pub async fn put_consent(&self, c: &ConsentRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO consents (user_id, client_id, resource, scopes, client_fingerprint,
                granted_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (user_id, client_id, resource) DO UPDATE SET scopes = excluded.scopes,
                client_fingerprint = excluded.client_fingerprint,
                granted_at = excluded.granted_at, expires_at = excluded.expires_at",
            vec![
                c.user_id.as_str().into(),
                c.client_id.as_str().into(),
                c.resource.as_str().into(),
                to_json(&c.scopes).into(),
                c.client_fingerprint.as_str().into(),
                c.granted_at.into(),
                c.expires_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    /// Whether anyone ever allowed this client here (the "new application" warning).
    pub async fn anyone_consented(&self, client_id: &str) -> Result<bool, StoreError> {
        let row = self
            .one(
                "SELECT COUNT(*) FROM consents WHERE client_id = $1",
                vec![client_id.into()],
            )
            .await?;
        Ok(row.map(|r| r.int(0)).transpose()?.unwrap_or(0) > 0)
    }

    // ------------------------------------------------------------------ janitor

    /// Deletes what can no longer be used (idempotent: every replica may run it).
    pub async fn purge_expired(&self, now: i64) -> Result<Purged, StoreError> {
        let flows = self
            .execute("DELETE FROM flows WHERE expires_at <= $1", vec![now.into()])
            .await?;
        let codes = self
            .execute(
                "DELETE FROM auth_codes WHERE expires_at <= $1",
                vec![(now - CODE_KEEP_SECS).into()],
            )
            .await?;
        let gone = now - FAMILY_KEEP_SECS;
        self.execute(
            "DELETE FROM refresh_tokens WHERE family_id IN (SELECT family_id FROM
                refresh_families WHERE expires_at <= $1 OR revoked_at <= $1)",
            vec![gone.into()],
        )
        .await?;
        let families = self
            .execute(
                "DELETE FROM refresh_families WHERE expires_at <= $1 OR revoked_at <= $1",
                vec![gone.into()],
            )
            .await?;
        self.execute(
            "DELETE FROM consents WHERE expires_at <= $1",
            vec![now.into()],
        )
        .await?;
        self.execute(
            "DELETE FROM web_sessions WHERE expires_at <= $1",
            vec![now.into()],
        )
        .await?;
        Ok(Purged {
            flows,
            codes,
            families,
        })
    }
}

/// Whether a user's connection can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Active,
    /// Its refresh failed (or the provider revoked it): the user must connect again.
    NeedsConsent,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Active => "active",
            ConnectionState::NeedsConsent => "needs_consent",
        }
    }
    fn parse(s: &str) -> Result<ConnectionState, StoreError> {
        match s {
            "active" => Ok(ConnectionState::Active),
            "needs_consent" => Ok(ConnectionState::NeedsConsent),
            other => Err(StoreError::Corrupt(format!("connection state {other:?}"))),
        }
    }
}

/// A user's connection to an upstream provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionRecord {
    pub user_id: String,
    /// The `[[connection]]` it was made for.
    pub name: String,
    /// The provider's tokens, sealed by `connections::Vault`: opaque here.
    pub sealed: String,
    pub scopes: Vec<String>,
    pub state: ConnectionState,
    pub granted_at: i64,
    /// When the access token expires, if the provider said.
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

fn connection_row(r: &Row) -> Result<ConnectionRecord, StoreError> {
    Ok(ConnectionRecord {
        user_id: r.text(0)?,
        name: r.text(1)?,
        sealed: r.text(2)?,
        scopes: r.json(3)?,
        state: ConnectionState::parse(&r.text(4)?)?,
        granted_at: r.int(5)?,
        expires_at: r.opt_int(6),
        last_used_at: r.opt_int(7),
    })
}

impl Store {
    // ------------------------------------------------------------------ connections

    /// Stores a connection, replacing the user's earlier one of that name.
    pub async fn put_connection(&self, c: &ConnectionRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO connections (user_id, name, sealed, scopes, state, granted_at,
                expires_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (user_id, name) DO UPDATE SET sealed = excluded.sealed,
                scopes = excluded.scopes, state = excluded.state,
                granted_at = excluded.granted_at, expires_at = excluded.expires_at,
                last_used_at = excluded.last_used_at",
            vec![
                c.user_id.as_str().into(),
                c.name.as_str().into(),
                c.sealed.as_str().into(),
                to_json(&c.scopes).into(),
                c.state.as_str().into(),
                c.granted_at.into(),
                c.expires_at.into(),
                c.last_used_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    /// Replaces the tokens of a connection only if they are still `expected` (the refresh
    /// of one replica does not undo another's). Whether it was replaced.
    pub async fn refresh_connection(
        &self,
        c: &ConnectionRecord,
        expected: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE connections SET sealed = $3, expires_at = $4, state = $5
                 WHERE user_id = $1 AND name = $2 AND sealed = $6",
                vec![
                    c.user_id.as_str().into(),
                    c.name.as_str().into(),
                    c.sealed.as_str().into(),
                    c.expires_at.into(),
                    c.state.as_str().into(),
                    expected.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn connection(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        self.one(
            "SELECT user_id, name, sealed, scopes, state, granted_at, expires_at, last_used_at
             FROM connections WHERE user_id = $1 AND name = $2",
            vec![user_id.into(), name.into()],
        )
        .await?
        .map(|r| connection_row(&r))
        .transpose()
    }

    /// The first `limit` connections of every user, by user and name (for an overview).
    pub async fn connections_first(
        &self,
        limit: usize,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT user_id, name, sealed, scopes, state, granted_at, expires_at,
                    last_used_at FROM connections ORDER BY user_id, name LIMIT $1",
                vec![Val::Int(i64::try_from(limit).unwrap_or(i64::MAX))],
            )
            .await?;
        rows.iter().map(connection_row).collect()
    }

    /// A user's connections (every user's with `None`), by user and name.
    pub async fn connections(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let rows = match user_id {
            Some(u) => {
                self.query(
                    "SELECT user_id, name, sealed, scopes, state, granted_at, expires_at,
                        last_used_at FROM connections WHERE user_id = $1 ORDER BY name",
                    vec![u.into()],
                )
                .await?
            }
            None => {
                self.query(
                    "SELECT user_id, name, sealed, scopes, state, granted_at, expires_at,
                        last_used_at FROM connections ORDER BY user_id, name",
                    vec![],
                )
                .await?
            }
        };
        rows.iter().map(connection_row).collect()
    }

    pub async fn set_connection_state(
        &self,
        user_id: &str,
        name: &str,
        state: ConnectionState,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE connections SET state = $3 WHERE user_id = $1 AND name = $2",
                vec![user_id.into(), name.into(), state.as_str().into()],
            )
            .await?;
        Ok(n == 1)
    }

    /// Sets a connection's state only if its tokens are still `expected`.
    pub async fn set_connection_state_if(
        &self,
        user_id: &str,
        name: &str,
        state: ConnectionState,
        expected: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE connections SET state = $3 WHERE user_id = $1 AND name = $2 AND sealed = $4",
                vec![
                    user_id.into(),
                    name.into(),
                    state.as_str().into(),
                    expected.into(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn touch_connection(
        &self,
        user_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE connections SET last_used_at = $3 WHERE user_id = $1 AND name = $2",
            vec![user_id.into(), name.into(), now.into()],
        )
        .await
        .map(drop)
    }

    /// How many connections there are in each state.
    pub async fn connection_counts(&self) -> Result<Vec<(ConnectionState, i64)>, StoreError> {
        let rows = self
            .query(
                "SELECT state, COUNT(*) FROM connections GROUP BY state",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((ConnectionState::parse(&r.text(0)?)?, r.int(1)?)))
            .collect()
    }

    /// Records that a browser signed in as `user_id`, until `expires_at`.
    pub async fn put_web_session(
        &self,
        browser_hash: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO web_sessions (browser_hash, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (browser_hash) DO UPDATE SET user_id = excluded.user_id,
                created_at = excluded.created_at, expires_at = excluded.expires_at",
            vec![
                browser_hash.into(),
                user_id.into(),
                now.into(),
                expires_at.into(),
            ],
        )
        .await
        .map(drop)
    }

    /// Whom a browser is signed in as, if it is.
    pub async fn web_session(
        &self,
        browser_hash: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.one(
            "SELECT user_id FROM web_sessions WHERE browser_hash = $1 AND expires_at > $2",
            vec![browser_hash.into(), now.into()],
        )
        .await?
        .map(|r| r.text(0))
        .transpose()
    }

    /// Deletes a connection; the record deleted, if there was one.
    pub async fn delete_connection(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let row = self
            .one(
                "DELETE FROM connections WHERE user_id = $1 AND name = $2
                 RETURNING user_id, name, sealed, scopes, state, granted_at, expires_at,
                    last_used_at",
                vec![user_id.into(), name.into()],
            )
            .await?;
        row.map(|r| connection_row(&r)).transpose()
    }
}

/// The migration steps a store at version `found` (`None`: a new store) still needs, each
/// with the version it reaches.
fn steps_after(
    found: Option<i64>,
    steps: &'static [&'static [&'static str]],
) -> Result<Vec<(i64, &'static [&'static str])>, StoreError> {
    let found = found.unwrap_or(0);
    let supported = steps.len() as i64;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    Ok(steps
        .iter()
        .enumerate()
        .skip(found.max(0) as usize)
        .map(|(i, step)| (i as i64 + 1, *step))
        .collect())
}

/// 128 random bits, base64url: ids that are not secrets (users, families).
pub fn random_id() -> Result<String, StoreError> {
    use base64::Engine;
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| StoreError::Unavailable("no randomness".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

#[doc(hidden)]
pub mod conformance;
