//! Servers for sessionless (2026-07-28) callers. A principal's first request starts a server
//! and initializes it as a session-era client would (the sidecar is that client); the
//! principal's later requests, concurrent ones included, share it, each under an id of the
//! session's own, so answers never cross. A server never serves two principals: the pool is
//! keyed by the principal, and its credentials were injected for that principal. A pooled
//! server is a session like any other (the same caps, sandbox, governance and audit) that
//! no client can name: it ends when idle, when its credentials expire or when the server
//! exits, and the principal's next request starts a new one. Callers that may be asked
//! things (sampling, elicitation, roots) get a server initialized with exactly those client
//! capabilities: the pool is keyed by the principal and that set.
//!
//! A server's request during a caller's request travels to the caller in an
//! `InputRequiredResult`; the state the caller must send back ([`Pool::seal`]) is signed with
//! a key of this process, names the principal, the session, the server's request and the
//! caller's pending request, expires with the request, and opens once ([`Pool::open`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use zeroize::Zeroizing;

use super::{CreateError, Next, Session, SessionStore, Transport};
use crate::auth::Principal;
use crate::governance::Verdict;
use crate::mcp::{self, Envelope, Id, Kind, ProtocolVersion, modern};

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

/// Whose server: the principal (issuer and subject), the OAuth client it called through
/// (credentials injected for one client are not another's), and what it may be asked.
type SlotKey = (Arc<str>, Option<String>, u8);

/// Ends a server whose start was abandoned (the caller left before it was pooled): nothing
/// could ever use it, and it would hold a place under the caps until the idle timeout.
struct Starting<'a> {
    store: &'a SessionStore,
    session: Option<Arc<Session>>,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.store.terminate(&session, false);
        }
    }
}

/// The servers of sessionless callers, by principal and the client capabilities they were
/// initialized with.
pub struct Pool {
    store: SessionStore,
    slots: Mutex<HashMap<SlotKey, Slot>>,
    next_id: AtomicU64,
    /// Signs request states; never leaves the process.
    state_key: Zeroizing<[u8; 32]>,
    /// Nonces of request states already opened, until they expire.
    opened: Mutex<HashMap<[u8; 16], SystemTime>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("principals", &self.slots.lock().len())
            .finish_non_exhaustive()
    }
}

/// What a request state holds: where the caller's pending request and the server's question
/// are, so its next round trip can answer and go on reading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingInput {
    /// The principal (its session key) the state was given to.
    pub principal: String,
    pub session: String,
    /// The id the server asked under, and the key of its question in `inputRequests`.
    pub server_request: Value,
    pub key: String,
    /// The id the caller's pending request has in the session, its stream, and how far the
    /// caller has read it.
    pub request: Value,
    pub stream: u32,
    pub seq: u64,
    /// The caller's request method and progress token, to translate what comes next.
    pub method: String,
    pub progress: Option<Value>,
    /// Seconds since the epoch.
    pub expires: u64,
    nonce: [u8; 16],
}

/// Why a request state was refused. Deliberately uninformative to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the requestState is not one this server issued")]
    Forged,
    #[error("the requestState has expired")]
    Expired,
    #[error("the requestState was already used")]
    Replayed,
    #[error("the requestState belongs to another principal")]
    Foreign,
}

impl Pool {
    pub fn new(store: SessionStore) -> Pool {
        // Without randomness the key stays all zero, and [`Pool::open`] refuses every state:
        // a guessable key would let anyone forge one.
        let mut key = Zeroizing::new([0u8; 32]);
        if getrandom::fill(&mut key[..]).is_err() {
            *key = [0u8; 32];
        }
        Pool {
            store,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            state_key: key,
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// The session of a pooled server, if it is still live and the principal's.
    pub fn session(&self, principal: &Principal, id: &str) -> Option<Arc<Session>> {
        self.store.get(id).filter(|s| {
            s.transport() == Transport::Sessionless && s.owner() == principal.session_key()
        })
    }

    /// Seals a pending input into an opaque state for the caller (base64url JSON, a dot,
    /// base64url HMAC-SHA256 of it).
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &self,
        principal: &Principal,
        session: &Session,
        server_request: Value,
        key: &str,
        request: &Id,
        stream: u32,
        seq: u64,
        method: &str,
        progress: Option<&Id>,
    ) -> String {
        use base64::Engine as _;
        let mut nonce = [0u8; 16];
        if getrandom::fill(&mut nonce).is_err() {
            // Every such state shares the all-zero nonce: after the first is used, the others
            // are refused as replays. Failing closed beats a guessable nonce.
            nonce = [0u8; 16];
        }
        let expires = SystemTime::now() + self.store.config().request_timeout;
        let input = PendingInput {
            principal: principal.session_key().to_owned(),
            session: session.id().to_string(),
            server_request,
            key: key.to_owned(),
            request: request.to_value(),
            stream,
            seq,
            method: method.to_owned(),
            progress: progress.map(Id::to_value),
            expires: expires
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            nonce,
        };
        let body = serde_json::to_vec(&input).unwrap_or_default();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let body = b64.encode(body);
        let mac = b64.encode(self.mac(body.as_bytes()));
        format!("{body}.{mac}")
    }

    /// Opens a state a caller sent back: ours, unexpired, unused, and the caller's. It stays
    /// usable until [`Pool::consume`].
    pub fn open(&self, principal: &Principal, state: &str) -> Result<PendingInput, StateError> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (body, mac) = state.split_once('.').ok_or(StateError::Forged)?;
        let mac = b64.decode(mac).map_err(|_| StateError::Forged)?;
        if *self.state_key == [0u8; 32]
            || aws_lc_rs::constant_time::verify_slices_are_equal(&self.mac(body.as_bytes()), &mac)
                .is_err()
        {
            return Err(StateError::Forged);
        }
        let body = b64.decode(body).map_err(|_| StateError::Forged)?;
        let input: PendingInput = serde_json::from_slice(&body).map_err(|_| StateError::Forged)?;
        if input.principal != principal.session_key() {
            return Err(StateError::Foreign);
        }
        let expires = UNIX_EPOCH + Duration::from_secs(input.expires);
        if SystemTime::now() >= expires || self.opened.lock().contains_key(&input.nonce) {
            return Err(if SystemTime::now() >= expires {
                StateError::Expired
            } else {
                StateError::Replayed
            });
        }
        Ok(input)
    }

    /// Uses a state up: from now on it opens no more. Done once the retry is known to carry
    /// what the state asks for, so a malformed retry does not burn it.
    pub fn consume(&self, input: &PendingInput) -> Result<(), StateError> {
        let now = SystemTime::now();
        let mut opened = self.opened.lock();
        // Expired nonces go in batches, not on every use.
        if opened.len() >= PRUNE_ABOVE {
            opened.retain(|_, until| *until > now);
        }
        let until = UNIX_EPOCH + Duration::from_secs(input.expires);
        if opened.insert(input.nonce, until).is_some() {
            return Err(StateError::Replayed);
        }
        Ok(())
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        use hmac::{Hmac, Mac};
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.state_key[..]) else {
            return Vec::new();
        };
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
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
        asks: u8,
    ) -> Result<Pooled, PoolError> {
        let key = (
            Arc::<str>::from(principal.session_key()),
            principal.client_id.clone(),
            asks,
        );
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
        let mut starting = Starting {
            store: &self.store,
            session: Some(session.clone()),
        };
        let result = initialize(&session, principal, &self.request_id(), asks)
            .await
            .map_err(PoolError::Initialize)?;
        starting.session = None;
        let pooled = Pooled {
            session,
            initialize: Arc::new(result),
        };
        *slot = Some(pooled.clone());
        Ok(pooled)
    }
}

/// Initializes a new server as a session-era client offering the capabilities of `asks`
/// (see [`modern::ASKS`]): what the callers it serves declared.
async fn initialize(
    session: &Session,
    principal: &Arc<Principal>,
    id: &Id,
    asks: u8,
) -> Result<Value, String> {
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.to_value(),
        "method": mcp::method::INITIALIZE,
        "params": {
            "protocolVersion": ProtocolVersion::LATEST.as_str(),
            "capabilities": modern::capabilities_object(asks),
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
