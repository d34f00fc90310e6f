//! The session table: creating sessions (the global cap, the principal's limits, the
//! server's environment, the server), finding them by id, the janitor that reaps idle
//! sessions and expired requests, and the drain at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine;
use parking_lot::RwLock;
use tokio::time::Instant;

use super::SessionConfig;
use super::principal_limits::{PrincipalRefusal, Principals};
use super::routing::{EndReason, Opening, Session, SessionLimits, SessionTable, Transport};
use super::spares::{Spare, Spares};
use crate::auth::Principal;
use crate::child::{Child, ChildSink, ProcessTable, SpawnError};
use crate::credentials::{Secret, SessionContext, SessionEnv};
use crate::governance::Governance;
use crate::telemetry::Metrics;

/// Why a new session was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Not admitted: no server was started.
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The server's environment could not be built (a message for the client).
    #[error("{0}")]
    Credentials(&'static str),
    /// The principal has not connected a required upstream connection (its name).
    #[error("the connection {0} is needed")]
    ConnectionNeeded(String),
}

/// Why a new session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the session limit ({0}) is reached")]
    Full(usize),
    #[error("the server is shutting down")]
    Draining,
    /// The principal's own limits (`--max-sessions-per-principal`,
    /// `--session-rate-per-principal`).
    #[error(transparent)]
    Principal(#[from] PrincipalRefusal),
}

impl Refused {
    /// The snake_case code of audit records and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Refused::Full(_) => "session_cap",
            Refused::Draining => "draining",
            Refused::Principal(p) => p.code(),
        }
    }
}

/// The table of live sessions.
#[derive(Debug, Clone)]
pub struct SessionStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
pub(super) struct StoreInner {
    sessions: RwLock<HashMap<Arc<str>, Arc<Session>>>,
    /// Sessions alive or being created; bounded by `max_sessions`.
    count: AtomicUsize,
    draining: AtomicBool,
    /// Sessions held and started per principal.
    principals: Principals,
    config: Arc<SessionConfig>,
    table: ProcessTable,
    metrics: Arc<Metrics>,
    /// Policy and audit, of which each session gets its own part.
    governance: Arc<Governance>,
    /// Servers started ahead of demand (`--spare`).
    spares: Option<Arc<Spares>>,
}

impl StoreInner {
    pub(super) fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub(super) fn process_table(&self) -> &ProcessTable {
        &self.table
    }
}

impl SessionStore {
    /// Creates the store and starts its janitor. Call inside the runtime.
    pub fn new(
        config: SessionConfig,
        table: ProcessTable,
        metrics: Arc<Metrics>,
        governance: Arc<Governance>,
    ) -> SessionStore {
        let config_spares = config.spares;
        let store = SessionStore {
            inner: Arc::new(StoreInner {
                sessions: RwLock::new(HashMap::new()),
                count: AtomicUsize::new(0),
                draining: AtomicBool::new(false),
                principals: Principals::new(config.per_principal),
                config: Arc::new(config),
                table,
                metrics,
                governance,
                spares: (config_spares > 0).then(|| Spares::new(config_spares)),
            }),
        };
        tokio::spawn(janitor(Arc::downgrade(&store.inner)));
        if let Some(spares) = &store.inner.spares {
            tokio::spawn(spares.clone().run(Arc::downgrade(&store.inner)));
        }
        store
    }

    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    /// Opens a session for `principal` (who alone may use it): admission first (the global
    /// cap, the principal's cap and rate), then its server's environment (which may exchange
    /// `caller_token` at the issuer), then its server. A refused session costs no exchange.
    pub async fn create(
        &self,
        transport: Transport,
        principal: &Principal,
        caller_token: Option<&str>,
    ) -> Result<Arc<Session>, CreateError> {
        let inner = &self.inner;
        let owner: Arc<str> = principal.session_key().into();
        if inner.draining.load(Ordering::Acquire) {
            return Err(Refused::Draining.into());
        }
        let max = inner.config.max_sessions;
        if inner
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refused::Full(max).into());
        }
        // The principal's own limits, once a place is held: a refusal here gives it back.
        if let Err(e) = inner.principals.admit(&owner, std::time::Instant::now()) {
            inner.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Principal(e).into());
        }
        // A warm spare's server already runs, in the environment every session gets.
        let spare = inner.spares.as_ref().and_then(|s| s.take());
        let (env, spare) = match spare {
            Some(Spare { child, sink, env }) => (env, Some((child, sink))),
            None => match self.session_env(principal, caller_token).await {
                Ok(env) => (env, None),
                Err(e) => {
                    inner.count.fetch_sub(1, Ordering::AcqRel);
                    inner.principals.release(&owner);
                    return Err(e);
                }
            },
        };
        let id: Arc<str> = new_session_id(inner.config.replica_id.as_deref()).into();
        let config = &inner.config;
        let session = Session::open(Opening {
            id: id.clone(),
            transport,
            owner,
            env: &env,
            governance: inner.governance.open_session(principal, &env.secrets()),
            limits: SessionLimits {
                request_timeout: config.request_timeout,
                idle_timeout: config.idle_timeout,
                stream_limits: config.stream_limits,
                retained_streams: config.retained_streams,
            },
            metrics: inner.metrics.clone(),
            table: Arc::<StoreInner>::downgrade(inner),
        });
        let span = session.span().clone();
        let command = inner.config.child.display_command();
        let program = command.rsplit('/').next().unwrap_or(&command);
        let mut exported =
            crate::telemetry::otel::spawn_span(program, crate::telemetry::otel::current());
        let spawn = || {
            span.in_scope(|| {
                Child::spawn(
                    &inner.config.child,
                    &inner.table,
                    session.clone() as Arc<dyn ChildSink>,
                    &env,
                )
            })
        };
        let mut warm = false;
        let spawned = match spare {
            Some((child, sink)) => match sink.bind(session.clone() as Arc<dyn ChildSink>) {
                Ok(()) => {
                    warm = true;
                    Ok(child)
                }
                // It stopped talking between the check and now: a fresh one.
                Err(_) => {
                    child.terminate();
                    spawn()
                }
            },
            None => spawn(),
        };
        match spawned {
            Ok(child) => {
                if let Some(mut e) = exported.take() {
                    e.set("process.pid", i64::from(child.pid()));
                    e.set("mcp_warden.warm_spare", warm);
                    e.end();
                }
                span.in_scope(|| {
                    tracing::info!(pid = child.pid(), ?transport, warm, command = %inner.config.child.display_command(), "session started")
                });
                session.attach(Box::new(child));
                inner.sessions.write().insert(id, session.clone());
                inner.metrics.session_started();
                session.started();
                Ok(session)
            }
            Err(e) => {
                if let Some(mut e) = exported.take() {
                    e.fail("spawn_failed");
                    e.end();
                }
                inner.count.fetch_sub(1, Ordering::AcqRel);
                inner.principals.release(session.owner());
                inner.metrics.child_exited("spawn_failed");
                span.in_scope(|| tracing::error!(error = %e, "cannot start the MCP server"));
                Err(e.into())
            }
        }
    }

    /// Builds the environment of a new session's server for `principal`. The error is a
    /// message for the client; the cause (which names a variable, never a value) is logged.
    /// `caller_token` is the caller's access token, used only as the subject of token
    /// exchanges (`--env-exchange`), never injected.
    async fn session_env(
        &self,
        principal: &Principal,
        caller_token: Option<&str>,
    ) -> Result<SessionEnv, CreateError> {
        let subject = caller_token.map(Secret::new);
        let ctx = SessionContext {
            principal,
            subject_token: subject.as_ref(),
        };
        self.inner
            .config
            .env
            .resolve(ctx)
            .await
            .map_err(|e| match e {
                crate::credentials::EnvError::ConnectionNeeded { connection } => {
                    tracing::info!(connection, "a session waits for the user to connect");
                    CreateError::ConnectionNeeded(connection)
                }
                e => {
                    tracing::error!(error = %e, "cannot build the MCP server's environment");
                    CreateError::Credentials(
                        "cannot start the MCP server: its credentials are unavailable",
                    )
                }
            })
    }

    /// A live session by id.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.inner.sessions.read().get(id).cloned()
    }

    /// Warm spares ready now.
    pub fn spares_ready(&self) -> usize {
        self.inner.spares.as_ref().map_or(0, |s| s.len())
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<Arc<Session>> = self.inner.sessions.read().values().cloned().collect();
        all.sort_by_key(|s| s.opened_at());
        all
    }

    /// Ends a session at an operator's request (the activity page). Its client gets 404 from
    /// now on and its streams close.
    pub fn end_by_operator(&self, session: &Session) {
        session.end(EndReason::Ended);
    }

    /// Ends a session at a client's request (DELETE, or its legacy SSE stream closed).
    pub fn terminate(&self, session: &Session, by_stream: bool) {
        session.end(if by_stream {
            EndReason::StreamClosed
        } else {
            EndReason::Deleted
        });
    }

    /// Ends the sessions of `owner` (a principal's session key) whose server was given
    /// `secret`, because it was revoked. How many ended.
    pub fn end_carrying(&self, owner: &str, secret: &[u8]) -> usize {
        let carrying: Vec<Arc<Session>> = self
            .inner
            .sessions
            .read()
            .values()
            .filter(|s| s.owner() == owner && s.secrets().contains(secret))
            .cloned()
            .collect();
        for s in &carrying {
            s.end(EndReason::CredentialRevoked);
        }
        carrying.len()
    }

    pub fn len(&self) -> usize {
        self.inner.sessions.read().len()
    }

    /// Sessions still in use: a request in flight, or client traffic within `quiet`. A drain
    /// waits for this to reach zero, so a conversation between two calls is not cut short.
    pub fn busy_sessions(&self, quiet: Duration) -> usize {
        let sessions: Vec<Arc<Session>> = self.inner.sessions.read().values().cloned().collect();
        let now = Instant::now();
        sessions.iter().filter(|s| s.is_busy(now, quiet)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the session cap leaves room for another session.
    pub fn has_capacity(&self) -> bool {
        self.inner.count.load(Ordering::Acquire) < self.inner.config.max_sessions
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Refuses new sessions from now on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Release);
    }

    /// Ends every session and waits (at most `timeout`) for every server tree to exit.
    pub async fn shutdown(&self, timeout: Duration) {
        self.start_draining();
        let spares = self
            .inner
            .spares
            .as_ref()
            .map(|s| s.stop())
            .unwrap_or_default();
        let sessions: Vec<Arc<Session>> = self.inner.sessions.read().values().cloned().collect();
        for s in &sessions {
            s.end(EndReason::Shutdown);
        }
        let spares_exited = futures_util::future::join_all(spares.iter().map(|s| s.child.wait()));
        let all = futures_util::future::join(
            futures_util::future::join_all(sessions.iter().map(|s| s.child_exited())),
            spares_exited,
        );
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("some MCP servers did not exit in time; killing what is left");
        }
        self.inner.table.sweep_orphans();
    }
}

impl SessionTable for StoreInner {
    fn remove(&self, id: &str) {
        let removed = self.sessions.write().remove(id);
        if let Some(session) = removed {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.principals.release(session.owner());
        }
    }
}

/// `<replica>.<128 random bits, base64url>`: visible ASCII, unguessable.
fn new_session_id(replica: Option<&str>) -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // The OS CSPRNG does not fail on Linux ≥ 3.17; refuse to invent a weak id anyway.
        std::process::abort();
    }
    let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    match replica {
        Some(r) => format!("{r}.{random}"),
        None => random,
    }
}

async fn janitor(store: Weak<StoreInner>) {
    let tick = {
        let Some(s) = store.upgrade() else { return };
        (s.config.request_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_check = Instant::now();
    loop {
        interval.tick().await;
        let Some(store) = store.upgrade() else { return };
        let sessions: Vec<Arc<Session>> = store.sessions.read().values().cloned().collect();
        let now = Instant::now();
        for s in &sessions {
            s.sweep(now);
        }
        if now.duration_since(last_check) >= CONNECTION_CHECK {
            last_check = now;
            if let Some(connections) = store.config.env.connections().cloned() {
                drop(store);
                end_revoked(&connections, sessions).await;
            }
        }
    }
}

/// How often live sessions' connections are checked against the store: a connection
/// revoked elsewhere (another replica, `mcp-warden connections revoke`) or needing consent
/// again ends the sessions given it within this.
const CONNECTION_CHECK: Duration = Duration::from_secs(10);

/// Ends the sessions whose connection grant no longer stands.
async fn end_revoked(
    connections: &Arc<dyn crate::credentials::ConnectionTokens>,
    sessions: Vec<Arc<Session>>,
) {
    for s in sessions.iter().filter(|s| !s.connections().is_empty()) {
        for given in s.connections() {
            if !connections.still_granted(given).await {
                let _g = s.span().enter();
                tracing::info!(connection = %given.name, "the session's connection was revoked: ending it");
                s.revoked();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random_visible_ascii_with_the_replica_prefix() {
        let a = new_session_id(None);
        let b = new_session_id(Some("w1"));
        assert_eq!(a.len(), 22);
        assert!(b.starts_with("w1.") && b.len() == 25);
        assert!(
            a.bytes()
                .chain(b.bytes())
                .all(|c| (0x21..=0x7e).contains(&c))
        );
        assert_ne!(new_session_id(None), new_session_id(None));
    }
}
