//! An issuer the test controls: ES256 keys signed with aws-lc-rs directly (not through the
//! code under test), and a loopback HTTP server publishing the key set that can be made
//! slow, made to hang, or taken down, while it counts the fetches it gets. It also answers
//! RFC 7662 introspection (`POST /introspect`) for opaque tokens given their answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 signing key.
pub struct Key {
    pub kid: String,
    pair: EcdsaKeyPair,
}

impl Key {
    pub fn new(kid: &str) -> Key {
        Key {
            kid: kid.into(),
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    /// A signed JWT access token (`typ: at+jwt`) with these claims.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(claims).unwrap())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// Seconds since the epoch, with a fraction.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// How the key set endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Up,
    /// Answers after this long.
    Slow(Duration),
    /// Answers 503.
    Failing,
}

struct State {
    mode: Mode,
    keys: Vec<Value>,
    /// Introspection answers by opaque token; any other token is inactive.
    introspection: std::collections::HashMap<String, Value>,
}

/// The issuer's key set endpoint, `http://127.0.0.1:<port>/jwks`.
pub struct JwksServer {
    pub issuer: String,
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    fetches: Arc<AtomicUsize>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl JwksServer {
    pub async fn start(keys: &[&Key]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = JwksServer {
            issuer: format!("http://{addr}"),
            addr,
            state: Arc::new(Mutex::new(State {
                mode: Mode::Up,
                keys: keys.iter().map(|k| k.jwk()).collect(),
                introspection: std::collections::HashMap::new(),
            })),
            fetches: Arc::new(AtomicUsize::new(0)),
            task: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let (st, count) = (self.state.clone(), self.fetches.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(answer(tcp, st.clone(), count.clone()));
            }
        });
        *self.task.lock() = Some(task);
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The introspection endpoint, `http://127.0.0.1:<port>/introspect`.
    pub fn introspection_uri(&self) -> String {
        format!("{}/introspect", self.issuer)
    }

    /// Introspection of `token` answers `answer` from now on.
    pub fn introspects(&self, token: &str, answer: Value) {
        self.state
            .lock()
            .introspection
            .insert(token.to_owned(), answer);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().mode = mode;
    }

    /// Publishes these keys from now on.
    pub fn publish(&self, keys: &[&Key]) {
        self.state.lock().keys = keys.iter().map(|k| k.jwk()).collect();
    }

    /// Key set requests received so far.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Stops listening: connections are refused.
    pub fn down(&self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn up(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

async fn answer(mut tcp: tokio::net::TcpStream, st: Arc<Mutex<State>>, count: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    if text.starts_with("post /introspect ") {
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = head[end..].to_vec();
        while body.len() < len {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        let token = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let answer = st
            .lock()
            .introspection
            .get(&token)
            .cloned()
            .unwrap_or_else(|| json!({"active": false}));
        return reply(tcp, "200 OK", &answer.to_string()).await;
    }
    count.fetch_add(1, Ordering::SeqCst);
    let (mode, keys) = {
        let s = st.lock();
        (s.mode, s.keys.clone())
    };
    let (status, body) = match mode {
        Mode::Failing => ("503 Service Unavailable", String::new()),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            ("200 OK", json!({"keys": keys}).to_string())
        }
        Mode::Up => ("200 OK", json!({"keys": keys}).to_string()),
    };
    reply(tcp, status, &body).await;
}

async fn reply(mut tcp: tokio::net::TcpStream, status: &str, body: &str) {
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: max-age=1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(reply.as_bytes()).await;
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.down();
    }
}
