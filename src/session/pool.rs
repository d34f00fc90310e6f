//! Servers for sessionless (2026-07-28) callers. A principal's first request starts a server
//! and, unless it speaks the era itself (it answers the `server/discover` probe: see
//! [`Pool::start`]), initializes it as a session-era client would (the sidecar is that client); the
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
    /// The server's `initialize` result (capabilities, serverInfo, instructions); for a
    /// native server, its `server/discover` result.
    pub initialize: Arc<Value>,
    /// Whether the server speaks the sessionless era itself: it answered `server/discover`
    /// naming it, and was not initialized. Its callers' requests reach it untranslated.
    pub native: bool,
}

/// What the pool knows of the era a principal's servers speak: unknown until one answers the
/// probe, then kept for the life of the process (the specification's advice for stdio). A
/// probe that times out decides nothing. Kept per principal: servers are untrusted code, and
/// what one principal's server claims must not decide how another's is spoken to.
const ERA_UNKNOWN: u8 = 0;
const ERA_SESSION: u8 = 1;
const ERA_NATIVE: u8 = 2;

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
    /// `ERA_*` by principal (its session key): whether its servers answer
    /// `server/discover` themselves.
    eras: Mutex<HashMap<Arc<str>, u8>>,
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
            eras: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the principal's servers are known to speak the sessionless era themselves
    /// (`None`: none has told yet).
    pub fn native(&self, principal: &Principal) -> Option<bool> {
        match self.era(&principal.session_key()) {
            ERA_SESSION => Some(false),
            ERA_NATIVE => Some(true),
            _ => None,
        }
    }

    fn era(&self, principal: &str) -> u8 {
        self.eras
            .lock()
            .get(principal)
            .copied()
            .unwrap_or(ERA_UNKNOWN)
    }

    /// Records what a principal's server showed; the previous knowledge.
    fn learn(&self, principal: &str, era: u8) -> u8 {
        let mut eras = self.eras.lock();
        // Bounded: forgetting only costs a principal one probe more.
        if eras.len() >= PRUNE_ABOVE * 4 && !eras.contains_key(principal) {
            eras.clear();
        }
        eras.insert(principal.into(), era).unwrap_or(ERA_UNKNOWN)
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
        // A native server is told the caller's capabilities in each request: one server
        // serves the principal whatever they are.
        let asks = if self.native(principal) == Some(true) {
            0
        } else {
            asks
        };
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
        let pooled = loop {
            match self.start(principal, caller_token, asks).await? {
                Started::Ready(pooled) => break pooled,
                // A server that died of the probe is a session-era one, now known as such:
                // the next start asks nothing before `initialize`.
                Started::DiedOfProbe => continue,
            }
        };
        *slot = Some(pooled.clone());
        Ok(pooled)
    }
}

/// How a server start went.
enum Started {
    Ready(Pooled),
    /// The server ended while asked `server/discover` before anything else.
    DiedOfProbe,
}

impl Pool {
    /// Starts a server for the principal and makes it ready: a native server once it has
    /// answered `server/discover`, a session-era one once initialized.
    ///
    /// Until the era is known, the server is first asked `server/discover` (the
    /// specification's probe): a result naming this era makes it native; any other answer,
    /// or none within the request timeout, and it is initialized as a session-era client
    /// would.
    async fn start(
        &self,
        principal: &Arc<Principal>,
        caller_token: Option<&str>,
        asks: u8,
    ) -> Result<Started, PoolError> {
        let session = self
            .store
            .create(Transport::Sessionless, principal, caller_token)
            .await?;
        let mut starting = Starting {
            store: &self.store,
            session: Some(session.clone()),
        };
        let who = principal.session_key();
        let probed = self.era(&who) != ERA_SESSION;
        if probed {
            let probe = serde_json::json!({
                "jsonrpc": "2.0",
                "id": self.request_id().to_value(),
                "method": mcp::method::SERVER_DISCOVER,
                "params": { "_meta": {
                    modern::meta::PROTOCOL_VERSION: modern::VERSION,
                    modern::meta::CLIENT_CAPABILITIES: modern::capabilities_object(asks),
                    modern::meta::CLIENT_INFO: client_info(),
                }},
            });
            let wait = self.store.config().request_timeout;
            match tokio::time::timeout(wait, ask(&session, principal, &probe)).await {
                Ok(Ok(mut reply)) => match reply.get_mut("result") {
                    Some(result) if modern::speaks_this_era(result) => {
                        if self.learn(&who, ERA_NATIVE) != ERA_NATIVE {
                            tracing::info!(
                                "the MCP server speaks 2026-07-28 itself: sessionless requests reach it untranslated"
                            );
                        }
                        starting.session = None;
                        return Ok(Started::Ready(Pooled {
                            session,
                            initialize: Arc::new(result.take()),
                            native: true,
                        }));
                    }
                    _ => {
                        self.learn(&who, ERA_SESSION);
                    }
                },
                Ok(Err(Unanswered::Ended(_))) => {
                    tracing::info!(
                        "the MCP server ended when asked server/discover: it is served as a session-era server"
                    );
                    self.learn(&who, ERA_SESSION);
                    return Ok(Started::DiedOfProbe);
                }
                // The policy's refusal says nothing of the server.
                Ok(Err(Unanswered::Refused(_) | Unanswered::Failed(_))) => {}
                Err(_) => tracing::info!(
                    "the MCP server did not answer server/discover in time: it is initialized as a session-era server"
                ),
            }
        }
        let result = match initialize(&session, principal, &self.request_id(), asks).await {
            Ok(result) => result,
            // The probe's answer was the gateway's, for a server that exited on it.
            Err(Unanswered::Ended(_)) if probed => {
                self.learn(&who, ERA_SESSION);
                return Ok(Started::DiedOfProbe);
            }
            Err(e) => return Err(PoolError::Initialize(e.to_string())),
        };
        self.learn(&who, ERA_SESSION);
        starting.session = None;
        Ok(Started::Ready(Pooled {
            session,
            initialize: Arc::new(result),
            native: false,
        }))
    }
}

fn client_info() -> Value {
    serde_json::json!({ "name": "mcp-warden", "version": env!("CARGO_PKG_VERSION") })
}

/// Initializes a new server as a session-era client offering the capabilities of `asks`
/// (see [`modern::ASKS`]): what the callers it serves declared.
async fn initialize(
    session: &Session,
    principal: &Arc<Principal>,
    id: &Id,
    asks: u8,
) -> Result<Value, Unanswered> {
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.to_value(),
        "method": mcp::method::INITIALIZE,
        "params": {
            "protocolVersion": ProtocolVersion::LATEST.as_str(),
            "capabilities": modern::capabilities_object(asks),
            "clientInfo": client_info(),
        },
    });
    let mut reply = ask(session, principal, &request).await?;
    let result = match reply.get_mut("result") {
        Some(r) if r.is_object() => r.take(),
        _ if session.is_ended() => return Err(Unanswered::Ended("it ended".into())),
        _ => return Err(Unanswered::Failed("it answered initialize with an error")),
    };
    let initialized = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    session
        .send(Bytes::from_static(initialized))
        .await
        .map_err(|e| Unanswered::Ended(e.to_string()))?;
    Ok(result)
}

/// Why a request of the sidecar's own got no answer.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error("the policy refuses {0}")]
    Refused(String),
    /// The server (or its session) ended first.
    #[error("{0}")]
    Ended(String),
    /// The server answered, but not as it should have.
    #[error("{0}")]
    Failed(&'static str),
}

/// Sends a request of the sidecar's own to the server, through the session's governance,
/// and waits for the answer (the whole JSON-RPC response).
async fn ask(
    session: &Session,
    principal: &Arc<Principal>,
    request: &Value,
) -> Result<Value, Unanswered> {
    let bytes = Bytes::from(request.to_string());
    let env = Envelope::parse(&bytes).map_err(|e| Unanswered::Refused(e.to_string()))?;
    let method = env.method.as_deref().unwrap_or_default().to_owned();
    let id = env.id.clone().unwrap_or(Id::Int(0));
    let call = match session.admit(principal, &env, &bytes) {
        Verdict::Forward(call) => call,
        Verdict::Refuse(_) => return Err(Unanswered::Refused(method)),
    };
    let ended = |why: &str| Unanswered::Ended(why.to_owned());
    let stream = session
        .request(
            id,
            &method,
            None,
            None,
            bytes.clone(),
            super::Followed { call, span: None },
        )
        .await
        .map_err(|e| Unanswered::Ended(e.to_string()))?;
    let mut cursor = stream
        .attach(Some(0))
        .map_err(|_| ended("its answer was lost"))?;
    let answer = loop {
        match cursor.next().await {
            Next::Events { events, .. } => {
                if let Some(e) = events.into_iter().find(|e| e.kind == Kind::Response) {
                    break e.data;
                }
            }
            Next::End | Next::Replaced => return Err(ended("it ended before answering")),
        }
    };
    serde_json::from_slice(&answer).map_err(|e| Unanswered::Ended(e.to_string()))
}
