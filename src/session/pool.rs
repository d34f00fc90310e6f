//! Servers for sessionless (2026-07-28) callers. A principal's first request starts a server
//! and initializes it as a session-era client would (the sidecar is that client); the
//! principal's later requests, concurrent ones included, share it, each under an id of the
//! session's own, so answers never cross. A server never serves two principals: the pool is
//! keyed by the principal, and its credentials were injected for that principal. A pooled
//! server is a session like any other (the same caps, sandbox, governance and audit) that
//! no client can name: it ends when idle, when its credentials expire or when the server
//! exits, and the principal's next request starts a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;

use super::{CreateError, Next, Session, SessionStore, Transport};
use crate::auth::Principal;
use crate::governance::Verdict;
use crate::mcp::{self, Envelope, Id, Kind, ProtocolVersion};

/// Principals with a slot in the table before ended servers' slots are pruned.
const PRUNE_ABOVE: usize = 1024;

/// One principal's server, initialized.
#[derive(Debug, Clone)]
pub struct Pooled {
    pub session: Arc<Session>,
    /// The server's `initialize` result (capabilities, serverInfo, instructions).
    pub initialize: Arc<Value>,
}

/// Why no server could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Create(#[from] CreateError),
    /// The server started but did not initialize (a message for the client).
    #[error("the MCP server did not initialize: {0}")]
    Initialize(String),
}

type Slot = Arc<tokio::sync::Mutex<Option<Pooled>>>;

/// The servers of sessionless callers, by principal.
#[derive(Debug)]
pub struct Pool {
    store: SessionStore,
    slots: Mutex<HashMap<Arc<str>, Slot>>,
    next_id: AtomicU64,
}

impl Pool {
    pub fn new(store: SessionStore) -> Pool {
        Pool {
            store,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// An id no other request through the pool has: what a caller's request is known by in
    /// its server's session (callers' own ids repeat across callers).
    pub fn request_id(&self) -> Id {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        Id::Str(format!("mcp-warden-{n}").into())
    }

    /// The principal's server, started and initialized when it has none (one start at a
    /// time per principal: concurrent first requests wait for it). `caller_token` is used
    /// only for the credentials a new server is given.
    pub async fn get(
        &self,
        principal: &Arc<Principal>,
        caller_token: Option<&str>,
    ) -> Result<Pooled, PoolError> {
        let key: Arc<str> = principal.session_key().into();
        let slot = {
            let mut slots = self.slots.lock();
            if slots.len() > PRUNE_ABOVE {
                slots.retain(|_, slot| {
                    slot.try_lock()
                        .map_or(true, |s| s.as_ref().is_some_and(|p| !p.session.is_ended()))
                });
            }
            slots.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(pooled) = slot.as_ref()
            && !pooled.session.is_ended()
        {
            pooled.session.touch();
            return Ok(pooled.clone());
        }
        *slot = None;
        let session = self
            .store
            .create(Transport::Sessionless, principal, caller_token)
            .await?;
        match initialize(&session, principal, &self.request_id()).await {
            Ok(result) => {
                let pooled = Pooled {
                    session,
                    initialize: Arc::new(result),
                };
                *slot = Some(pooled.clone());
                Ok(pooled)
            }
            Err(why) => {
                self.store.terminate(&session, false);
                Err(PoolError::Initialize(why))
            }
        }
    }
}

/// Initializes a new server as a session-era client that offers no client capabilities (it
/// has none to offer: a sessionless caller cannot be asked anything outside its request).
async fn initialize(
    session: &Session,
    principal: &Arc<Principal>,
    id: &Id,
) -> Result<Value, String> {
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.to_value(),
        "method": mcp::method::INITIALIZE,
        "params": {
            "protocolVersion": ProtocolVersion::LATEST.as_str(),
            "capabilities": {},
            "clientInfo": { "name": "mcp-warden", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    let bytes = Bytes::from(serde_json::to_vec(&request).map_err(|e| e.to_string())?);
    let env = Envelope::parse(&bytes).map_err(|e| e.to_string())?;
    let call = match session.admit(principal, &env, &bytes) {
        Verdict::Forward(call) => call,
        Verdict::Refuse(_) => return Err("the policy refuses initialize".into()),
    };
    let stream = session
        .request(
            id.clone(),
            mcp::method::INITIALIZE,
            None,
            None,
            bytes.clone(),
            call,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut cursor = stream
        .attach(Some(0))
        .map_err(|_| "its answer was lost".to_owned())?;
    let answer = loop {
        match cursor.next().await {
            Next::Events { events, .. } => {
                if let Some(e) = events.into_iter().find(|e| e.kind == Kind::Response) {
                    break e.data;
                }
            }
            Next::End | Next::Replaced => return Err("it ended before answering".into()),
        }
    };
    let mut reply: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    let result = match reply.get_mut("result") {
        Some(r) if r.is_object() => r.take(),
        _ => return Err("it answered initialize with an error".into()),
    };
    let initialized = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    session
        .send(Bytes::from_static(initialized))
        .await
        .map_err(|e| e.to_string())?;
    Ok(result)
}
